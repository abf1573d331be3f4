//! The table of bad mesh files: each `tests/bad/NAME.yaml` must fail with exactly the
//! text in `tests/bad/NAME.err` (what a user sees, one error per line).
//! `INFERMESH_BLESS=1 cargo test -p infermesh-config --test bad` rewrites the `.err`
//! files from the current output; review the diff before keeping it.

use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/bad exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bad_file_fails_with_its_exact_message() {
    let bless = std::env::var_os("INFERMESH_BLESS").is_some();
    let cases = cases();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for yaml in &cases {
        let text = std::fs::read_to_string(yaml).expect("readable case");
        let name = yaml.file_name().expect("file name");
        let actual = match infermesh_config::parse(&text, Path::new(name)) {
            Ok(_) => "(parsed without error)".to_owned(),
            Err(e) => e.to_string(),
        };
        let err_file = yaml.with_extension("err");
        if bless {
            std::fs::write(&err_file, format!("{actual}\n")).expect("writable .err");
            continue;
        }
        let expected = std::fs::read_to_string(&err_file).unwrap_or_default();
        if expected.trim_end() != actual {
            failures.push(format!(
                "{}:\n--- expected\n{}\n--- actual\n{actual}\n",
                yaml.display(),
                expected.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn load_names_the_file_and_reads_relative_to_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let path = dir.join("unknown_keys.yaml");
    let err = infermesh_config::load(&path).unwrap_err();
    let first = &err.errors()[0];
    assert_eq!(first.file, path.display().to_string());
    assert_eq!((first.line, first.column), (1, 1));

    let missing = dir.join("does-not-exist.yaml");
    let err = infermesh_config::load(&missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );
}
