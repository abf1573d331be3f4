//! The schema describes every reader key, is a valid draft 2020-12 schema, accepts
//! every good mesh file of the repository and refuses the bad files whose mistake a
//! schema can express (unknown field, wrong type, bad enum value, missing field).
//! Files are turned into JSON by the reader's own YAML parser (YAML 1.2, anchors and
//! merge keys expanded), so the schema sees what the reader sees.

use std::path::{Path, PathBuf};

use super::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// YAML text as the JSON the schema validates; `None` for a YAML syntax error.
fn as_json(text: &str) -> Option<Value> {
    crate::yaml::parse(text)
        .ok()
        .map(|node| crate::issuers::to_json(&node))
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&json_schema()).unwrap_or_else(|e| panic!("schema: {e}"))
}

/// Every schema error of `text`, one per line; empty when valid.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> String {
    let Some(json) = as_json(text) else {
        return "not YAML".into();
    };
    validator
        .iter_errors(&json)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The bodies of string literals in `source` that start after `open` and end at `close`.
fn literals(source: &str, open: &str, close: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(close) else { break };
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

/// Every good mesh file in the repository: the examples, the YAML blocks of the docs
/// and README.md (those the reader loads: others are Istio or Kubernetes YAML) and the
/// mesh texts of tests/good.rs.
fn good_files() -> Vec<(String, String)> {
    let root = root();
    let mut files = Vec::new();
    let examples = std::fs::read_dir(root.join("examples")).expect("examples/");
    let mut dirs: Vec<PathBuf> = examples.map(|e| e.expect("entry").path()).collect();
    dirs.sort();
    for dir in dirs {
        let mesh = dir.join("mesh.yaml");
        if mesh.is_file() {
            files.push((mesh.display().to_string(), read(&mesh)));
        }
    }
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.push(root.join("README.md"));
    for doc in docs {
        let name = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
        for (i, block) in literals(&read(&doc), "```yaml\n", "```")
            .into_iter()
            .enumerate()
        {
            files.push((format!("{name} yaml block {}", i + 1), block));
        }
    }
    let good = read(&root.join("crates/infermesh-config/tests/good.rs"));
    let texts = [
        literals(&good, ": &str = \"", "\";"),
        literals(&good, "ok(\"", "\")"),
        literals(&good, "ok(r#\"", "\"#)"),
    ];
    for (i, text) in texts.into_iter().flatten().enumerate() {
        files.push((format!("tests/good.rs mesh text {}", i + 1), text));
    }
    files
}

#[test]
fn every_reader_key_is_described() {
    let (_, unknown) = build();
    assert!(unknown.is_empty(), "keys without a schema arm: {unknown:?}");
}

#[test]
fn is_a_valid_draft_2020_12_schema() {
    if let Err(e) = jsonschema::meta::validate(&json_schema()) {
        panic!("{e}");
    }
}

#[test]
fn good_files_are_valid() {
    let validator = validator();
    let files = good_files();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, text) in &files {
        if let Err(e) = crate::parse(text, Path::new("mesh.yaml")) {
            // Docs blocks the reader refuses are other YAML, not mesh files.
            let doc = name.starts_with("docs/") || name.starts_with("README");
            assert!(doc, "{name} does not load:\n{e}");
            continue;
        }
        checked += 1;
        let errors = schema_errors(&validator, text);
        if !errors.is_empty() {
            failures.push(format!("{name}:\n{errors}"));
        }
    }
    assert!(checked >= 12, "only {checked} good files found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Bad files whose mistakes only the reader finds (cross-field checks, references,
/// ranges of parsed values): the schema accepts them, as its description says.
const READER_ONLY: &[&str] = &[
    "duplicate_keys",       // a key given twice: JSON has one value per key
    "duplicate_names",      // unique names across list entries
    "listen_conflicts",     // two listeners on one socket
    "model_server_sockets", // an embedded model server's upstreams must be ip:port
    "served_by",            // names a workload that is not declared
    "split_refs",           // names versions and labels that are not declared
];

/// Bad files that are not YAML at all.
const NOT_YAML: &[&str] = &["syntax"];

#[test]
fn bad_files_fail_when_the_schema_can_tell() {
    let validator = validator();
    let dir = root().join("crates/infermesh-config/tests/bad");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/bad")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    names.sort();
    let mut wrong = Vec::new();
    for name in &names {
        let text = read(&dir.join(format!("{name}.yaml")));
        let errors = schema_errors(&validator, &text);
        let verdict = match errors.as_str() {
            "not YAML" => "not-yaml",
            "" => "valid",
            _ => "invalid",
        };
        let expected = if NOT_YAML.contains(&name.as_str()) {
            "not-yaml"
        } else if READER_ONLY.contains(&name.as_str()) {
            "valid"
        } else {
            "invalid"
        };
        if verdict != expected {
            wrong.push(format!(
                "{name}: schema says {verdict}, expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The backticked names after "expected" in a reader message.
fn expected_names(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The key and value lists that models.rs writes inline (the schema cannot iterate
/// them): the reader's own "expected ..." messages must name exactly these.
#[test]
fn inline_key_lists_match_the_reader() {
    let base = "
workloads:
  - {name: w, listen: 127.0.0.1:15006, upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - name: m
    served_by: w
";
    let cases: [(&str, &[&str]); 4] = [
        (
            "    versions: [{version: 1, qqqqqqqq: 1}]\n",
            mesh::VERSION_KEYS,
        ),
        (
            "    versions: [1]\n    route: {sticky: {qqqqqqqq: 1}}\n",
            mesh::STICKY_KEYS,
        ),
        (
            "    versions: [1]\n    route: {mirror: {to: 1, percent: 5, qqqqqqqq: 1}}\n",
            mesh::MIRROR_KEYS,
        ),
        (
            "    versions: [1]\n    route: {retries: {on: [qqqqqqqq]}}\n",
            mesh::RETRY_ON,
        ),
    ];
    for (tail, schema_list) in cases {
        let text = format!("{base}{tail}");
        let errors = match crate::parse(&text, Path::new("mesh.yaml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        let line = errors
            .lines()
            .find(|l| l.contains("qqqqqqqq"))
            .unwrap_or_else(|| panic!("no error names the unknown key:\n{errors}"));
        assert_eq!(expected_names(line), schema_list, "{line}");
    }
}

#[test]
fn names_come_from_the_reader_lists() {
    let schema = json_schema();
    let top: Vec<&String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .collect();
    assert_eq!(top.len(), crate::mesh::TOP_KEYS.len());
    assert_eq!(schema["additionalProperties"], json!(false));
    let workload = &schema["$defs"]["workload"];
    assert_eq!(workload["required"], json!(["name", "listen", "upstream"]));
    let action = &schema["$defs"]["policy"]["properties"]["action"];
    assert_eq!(action["anyOf"][0]["enum"], json!(crate::policies::ACTIONS));
}

/// Enum values the readers match inline (no list to iterate): each one the schema
/// offers loads, and a value outside the list does not.
#[test]
fn inline_enum_values_are_the_readers() {
    fn workload(mtls: &str) -> String {
        format!(
            "workloads:\n  - {{name: w, listen: 127.0.0.1:15006, mtls: {mtls}, \
             upstream: {{rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}}}\n"
        )
    }
    fn tracing(protocol: &str) -> String {
        format!("telemetry: {{tracing: {{otlp: http://c:4317, protocol: {protocol}}}}}\n")
    }
    type Case = (&'static [&'static str], fn(&str) -> String);
    let cases: [Case; 2] = [
        (crate::mtls::MTLS_MODES, workload),
        (runtime::OTLP_PROTOCOLS, tracing),
    ];
    for (values, text) in cases {
        for value in values.iter().copied().chain(["qqqqqqqq"]) {
            let loads = crate::parse(&text(value), Path::new("mesh.yaml")).is_ok();
            assert_eq!(loads, value != "qqqqqqqq", "{}", text(value));
        }
    }
}
