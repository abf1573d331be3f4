//! `--model_config_file` parsing: every policy, labels, paths, and the errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Vec<ModelConfig>, ConfigError> {
    parse_model_config_file(text, Path::new("/etc/infermesh"))
}

fn parse_one(text: &str) -> ModelConfig {
    let mut configs = parse(text).expect("valid config");
    assert_eq!(configs.len(), 1);
    configs.remove(0)
}

fn invalid(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid(message)) => message,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn a_full_file_parses() {
    let text = r#"
# Two models, as in TF Serving's docs.
model_config_list {
  config {
    name: "half_plus_two"
    base_path: "/models/half_plus_two"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config: {
    name: 'resnet',
    base_path: '/models/resnet',
    model_platform: 'tensorflow',
  }
}
"#;
    let configs = parse(text).expect("valid config");
    assert_eq!(
        configs,
        vec![
            ModelConfig {
                name: "half_plus_two".to_owned(),
                base_path: "/models/half_plus_two".into(),
                platform: "tensorflow".to_owned(),
                policy: VersionPolicy::Specific(BTreeSet::from([1, 2])),
                labels: BTreeMap::from([("stable".to_owned(), 1), ("canary".to_owned(), 2)]),
            },
            ModelConfig::single("resnet", "/models/resnet"),
        ]
    );
}

#[test]
fn each_policy() {
    let with = |policy: &str| {
        parse_one(&format!(
            r#"model_config_list {{ config {{ name: "m" base_path: "/m" {policy} }} }}"#
        ))
        .policy
    };
    assert_eq!(with(""), VersionPolicy::Latest(1));
    assert_eq!(with("model_version_policy {}"), VersionPolicy::Latest(1));
    assert_eq!(
        with("model_version_policy { latest {} }"),
        VersionPolicy::Latest(1)
    );
    assert_eq!(
        with("model_version_policy { latest { num_versions: 0 } }"),
        VersionPolicy::Latest(1)
    );
    assert_eq!(
        with("model_version_policy { latest { num_versions: 3 } }"),
        VersionPolicy::Latest(3)
    );
    assert_eq!(with("model_version_policy { all {} }"), VersionPolicy::All);
    assert_eq!(
        with("model_version_policy { specific { versions: [7, 3] } }"),
        VersionPolicy::Specific(BTreeSet::from([3, 7]))
    );
}

#[test]
fn relative_base_paths_join_the_config_directory() {
    let config = parse_one(r#"model_config_list { config { name: "m" base_path: "models/m" } }"#);
    assert_eq!(config.base_path, Path::new("/etc/infermesh/models/m"));
    let config = parse_one(r#"model_config_list { config { name: "m" base_path: "/abs/m" } }"#);
    assert_eq!(config.base_path, Path::new("/abs/m"));
}

#[test]
fn empty_configs_are_empty_lists() {
    assert_eq!(parse("").expect("empty file"), vec![]);
    assert_eq!(parse("model_config_list {}").expect("empty list"), vec![]);
}

#[test]
fn a_syntax_error_has_its_position() {
    let text = "model_config_list {\n  config {\n    name: \"m\"\n    base_path \"/m\"\n  }\n}\n";
    match parse(text) {
        Err(ConfigError::Syntax {
            line,
            column,
            message,
        }) => {
            assert_eq!((line, column), (4, 15), "{message}");
            assert!(message.contains("expected"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn an_unfinished_file_points_at_its_end() {
    let text = "model_config_list {\n  config {\n";
    match parse(text) {
        Err(ConfigError::Syntax { line, column, .. }) => assert_eq!((line, column), (3, 1)),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn an_unknown_field_is_named_with_its_position() {
    let text = "model_config_list {\n  config {\n    name: \"m\"\n    base_pth: \"/m\"\n  }\n}\n";
    let error = parse(text).expect_err("unknown field");
    let shown = error.to_string();
    match error {
        ConfigError::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!((line, column), (4, 5));
            assert!(message.contains("base_pth"), "{message}");
            assert!(
                message.contains("tensorflow.serving.ModelConfig"),
                "{message}"
            );
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(
        shown.starts_with("model config syntax error at line 4, column 5: "),
        "{shown}"
    );
}

#[test]
fn a_wrong_value_type_is_a_syntax_error() {
    let text = r#"model_config_list { config { name: "m" base_path: "/m" model_version_policy { specific { versions: "one" } } } }"#;
    assert!(matches!(
        parse(text),
        Err(ConfigError::Syntax { line: 1, .. })
    ));
}

#[test]
fn invalid_models_are_rejected_with_their_place() {
    assert_eq!(
        invalid(r#"model_config_list { config { base_path: "/m" } }"#),
        "config #1 has an empty name"
    );
    assert_eq!(
        invalid(
            r#"model_config_list { config { name: "a" base_path: "/a" } config { name: "b" } }"#
        ),
        "config #2 (model \"b\"): base_path is empty"
    );
    assert_eq!(
        invalid(
            r#"model_config_list { config { name: "a" base_path: "/a" } config { name: "a" base_path: "/b" } }"#
        ),
        "model \"a\" is listed more than once"
    );
    assert_eq!(
        invalid(
            r#"model_config_list { config { name: "m" base_path: "/m" model_version_policy { specific {} } } }"#
        ),
        "config #1 (model \"m\"): model_version_policy specific lists no versions"
    );
    assert!(
        invalid(r#"model_config_list { config { name: "m" base_path: "gs://bucket/m" } }"#)
            .contains("only local directories")
    );
    assert!(invalid(r#"model_config_list { config { name: "m" base_path: "/m" version_labels { key: "x" value: -1 } } }"#)
        .contains("negative"));
    assert!(invalid(r#"custom_model_config { }"#).contains("custom_model_config"));
}

#[test]
fn the_config_file_is_read_relative_to_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("models.config");
    std::fs::write(
        &path,
        r#"model_config_list { config { name: "m" base_path: "m" } }"#,
    )
    .expect("write");
    let configs = load_model_config_file(&path).expect("load");
    assert_eq!(configs[0].base_path, dir.path().join("m"));
    let missing = load_model_config_file(&dir.path().join("nope")).expect_err("missing");
    assert!(matches!(missing, ConfigError::Io { .. }));
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_column("ab\ncé\nx", 0), (1, 1));
    assert_eq!(line_column("ab\ncé\nx", 3), (2, 1));
    assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
    assert_eq!(line_column("ab\ncé\nx", 6), (2, 3));
    assert_eq!(line_column("ab", 99), (1, 3));
}
