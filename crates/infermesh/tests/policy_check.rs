//! `infermesh policy check` against the shipped quickstart mesh: its one ALLOW policy
//! lets request principals of the dev issuer in group `ml-eng` call `half_plus_two`
//! (predict, metadata, status). The binary runs as users run it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn quickstart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/mesh.yaml")
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infermesh"))
        .args(["policy", "check", "--config"])
        .arg(quickstart())
        .args(args)
        .output()
        .expect("run infermesh policy check")
}

/// Runs a check that must succeed; returns stdout.
fn stdout(args: &[&str]) -> String {
    let out = check(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The first decision line of a report.
fn first_decision(report: &str) -> &str {
    report
        .lines()
        .find(|l| *l == "ALLOW" || *l == "DENY")
        .unwrap_or_else(|| panic!("no decision in:\n{report}"))
}

const ISSUER: &str = "http://127.0.0.1:8900";

#[test]
fn alice_in_ml_eng_may_predict() {
    let report = stdout(&[
        "--request-principal",
        &format!("{ISSUER}/alice"),
        "--claims",
        r#"{"groups": ["ml-eng"]}"#,
        "--request",
        "POST /v1/models/half_plus_two/versions/2:predict",
    ]);
    assert_eq!(first_decision(&report), "ALLOW", "{report}");
    assert!(
        report.contains("decided by: ALLOW policy `ml-eng-may-predict`, rule 0"),
        "{report}"
    );
}

#[test]
fn bob_outside_ml_eng_is_denied_and_told_why() {
    let report = stdout(&[
        "--claims",
        &format!(r#"{{"iss": "{ISSUER}", "sub": "bob", "groups": ["sales"]}}"#),
        "--request",
        "grpc Predict half_plus_two/versions/1",
    ]);
    assert_eq!(first_decision(&report), "DENY", "{report}");
    assert!(
        report.contains("request principal http://127.0.0.1:8900/bob"),
        "{report}"
    );
    assert!(
        report.contains("ALLOW policies exist and none matched"),
        "{report}"
    );
    assert!(
        report.contains("ml-eng-may-predict (ALLOW): not matched"),
        "{report}"
    );
}

#[test]
fn no_token_is_denied() {
    let report = stdout(&[
        "--request",
        "POST /v1/models/half_plus_two/versions/1:predict",
    ]);
    assert_eq!(first_decision(&report), "DENY", "{report}");
    assert!(
        report.contains("`request_principals` does not match"),
        "{report}"
    );
}

#[test]
fn an_unversioned_request_is_decided_for_every_version_routing_may_pick() {
    let report = stdout(&[
        "--request-principal",
        &format!("{ISSUER}/alice"),
        "--claims",
        r#"{"groups": ["ml-eng"]}"#,
        "--request",
        "POST /v1/models/half_plus_two:predict",
    ]);
    assert!(
        report.contains("== version 1 (label stable; split 90%)"),
        "{report}"
    );
    assert!(
        report.contains("== version 2 (label canary; split 10%)"),
        "{report}"
    );
    assert!(
        report.contains("summary: ALLOW for version 1; ALLOW for version 2"),
        "{report}"
    );
    // Classify is not among the allowed APIs.
    let report = stdout(&[
        "--request-principal",
        &format!("{ISSUER}/alice"),
        "--claims",
        r#"{"groups": ["ml-eng"]}"#,
        "--request",
        "POST /v1/models/half_plus_two:classify",
    ]);
    assert!(
        report.contains("summary: DENY for version 1; DENY for version 2"),
        "{report}"
    );
}

#[test]
fn invalid_input_exits_64() {
    for args in [
        &["--request", "FETCH /v1/models/half_plus_two:predict"][..],
        &["--request", "grpc Predict"],
        &["--request", "POST /v1/models/a%2Fb:predict"],
        &["--claims", "[1]", "--request", "grpc Predict half_plus_two"],
        &[
            "--header",
            "no-equals",
            "--request",
            "grpc Predict half_plus_two",
        ],
        &[
            "--source-ip",
            "nope",
            "--request",
            "grpc Predict half_plus_two",
        ],
    ] {
        let out = check(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
