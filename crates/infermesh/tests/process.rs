//! The process as an operator sees it: clean stop on SIGTERM, exit code 64 with a message
//! for an invalid configuration.

mod common;

use std::time::Duration;

use common::{ONNX_MODEL, Server, onnx_models, run_to_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut s = Server::builder(onnx_models())
        .wait_for(ONNX_MODEL, &[1, 2])
        .start();
    s.post_ok(
        "/v1/models/half_plus_two/versions/1:predict",
        r#"{"instances": [1.0]}"#,
    );
    let status = s.terminate(Duration::from_secs(15));
    let status = status.unwrap_or_else(|| panic!("still running 15 s after SIGTERM\n{}", s.log()));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        s.log()
    );
}

#[test]
fn missing_config_file_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.config");
    let missing = missing.to_str().unwrap();
    let (code, out) = run_to_exit(
        &[
            "model-server",
            "--port",
            "0",
            "--rest-api-port",
            "0",
            "--model-config-file",
            missing,
        ],
        EXIT_TIMEOUT,
    );
    assert_eq!(code, Some(64), "output:\n{out}");
    assert!(
        out.contains("no-such.config"),
        "the message should name the file:\n{out}"
    );
}

#[test]
fn malformed_config_file_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.config");
    std::fs::write(&cfg, "model_config_list { config { name: \"m\" base_path: ").unwrap();
    let (code, out) = run_to_exit(
        &[
            "model-server",
            "--port",
            "0",
            "--rest-api-port",
            "0",
            "--model-config-file",
            cfg.to_str().unwrap(),
        ],
        EXIT_TIMEOUT,
    );
    assert_eq!(code, Some(64), "output:\n{out}");
    assert!(!out.trim().is_empty(), "an invalid config needs a message");
}
