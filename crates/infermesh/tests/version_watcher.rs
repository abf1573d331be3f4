//! The version watcher, end to end: versions added to or removed from a model's base path
//! are loaded or unloaded while the server runs (`--file-system-poll-wait-seconds 1`).

mod common;

use std::fs;
use std::path::Path;

use common::{
    ModelCfg, ONNX_MODEL, Policy, Server, ServerBuilder, WATCH_TIMEOUT, compact, copy_dir,
    example_model_dir, version_states,
};

/// Copies a version directory next to the base path, then renames it in, so the watcher
/// never sees a half-copied version (as one deploys with TF Serving too).
fn add_version(src: &Path, base: &Path, version_dir: &str) {
    let staging = base
        .parent()
        .unwrap()
        .join(format!("staging-{version_dir}"));
    copy_dir(src, &staging);
    fs::rename(&staging, base.join(version_dir)).expect("rename version into place");
}

fn predictions(s: &Server, path: &str) -> Option<String> {
    let r = s.post(path, r#"{"instances": [1.0, 2.0, 5.0]}"#);
    (r.status == 200).then(|| compact(&r.body))
}

fn state_of(s: &Server, model: &str, version: i64) -> Option<String> {
    let r = s.get(&format!("/v1/models/{model}"));
    if r.status != 200 {
        return None;
    }
    version_states(&r.json())
        .into_iter()
        .find(|(v, _)| *v == version)
        .map(|(_, st)| st)
}

const V1: &str = r#"{"predictions":[2.5,3.0,4.5]}"#;
const V2: &str = r#"{"predictions":[3.5,4.0,5.5]}"#;

#[test]
fn latest_policy_follows_added_and_removed_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("models/half_plus_two");
    fs::create_dir_all(&base).unwrap();
    let examples = example_model_dir();
    copy_dir(&examples.join("1"), &base.join("1"));

    let s = ServerBuilder::single(ONNX_MODEL, &base)
        .arg("--file-system-poll-wait-seconds")
        .arg("1")
        .wait_for(ONNX_MODEL, &[1])
        .start();
    assert_eq!(
        predictions(&s, "/v1/models/half_plus_two:predict").as_deref(),
        Some(V1)
    );

    add_version(&examples.join("2"), &base, "2");
    s.wait_until("version 2 to be served as latest", WATCH_TIMEOUT, || {
        predictions(&s, "/v1/models/half_plus_two:predict").as_deref() == Some(V2)
    });
    assert_eq!(state_of(&s, ONNX_MODEL, 2).as_deref(), Some("AVAILABLE"));
    assert_eq!(
        predictions(&s, "/v1/models/half_plus_two/versions/2:predict").as_deref(),
        Some(V2)
    );

    fs::remove_dir_all(base.join("2")).unwrap();
    s.wait_until("version 2 to be unloaded", WATCH_TIMEOUT, || {
        predictions(&s, "/v1/models/half_plus_two/versions/2:predict").is_none()
    });
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two/versions/2:predict",
        Some(r#"{"instances": [1.0]}"#),
        404,
        "Servable not found for request: Specific(half_plus_two, 2)",
    );
    assert_ne!(state_of(&s, ONNX_MODEL, 2).as_deref(), Some("AVAILABLE"));
    // With version 2 gone, version 1 is the latest again and is served.
    s.wait_until("version 1 to be served again", WATCH_TIMEOUT, || {
        predictions(&s, "/v1/models/half_plus_two:predict").as_deref() == Some(V1)
    });
}

#[test]
fn all_policy_loads_and_unloads_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("models/m");
    fs::create_dir_all(&base).unwrap();
    let examples = example_model_dir();
    // Version directory names are integers; leading zeros are allowed, others ignored.
    copy_dir(&examples.join("1"), &base.join("0001"));
    fs::create_dir_all(base.join("not-a-version")).unwrap();

    let s = Server::builder(vec![ModelCfg::onnx("m", &base).policy(Policy::All)])
        .arg("--file-system-poll-wait-seconds")
        .arg("1")
        .wait_for("m", &[1])
        .start();

    add_version(&examples.join("2"), &base, "2");
    s.wait_until("version 2 to become AVAILABLE", WATCH_TIMEOUT, || {
        state_of(&s, "m", 2).as_deref() == Some("AVAILABLE")
    });
    assert_eq!(state_of(&s, "m", 1).as_deref(), Some("AVAILABLE"));
    assert_eq!(
        predictions(&s, "/v1/models/m/versions/1:predict").as_deref(),
        Some(V1)
    );
    assert_eq!(
        predictions(&s, "/v1/models/m/versions/2:predict").as_deref(),
        Some(V2)
    );
    assert_eq!(predictions(&s, "/v1/models/m:predict").as_deref(), Some(V2));

    fs::remove_dir_all(base.join("2")).unwrap();
    s.wait_until("version 2 to be unloaded", WATCH_TIMEOUT, || {
        state_of(&s, "m", 2).as_deref() != Some("AVAILABLE")
            && predictions(&s, "/v1/models/m/versions/2:predict").is_none()
    });
    assert_eq!(state_of(&s, "m", 1).as_deref(), Some("AVAILABLE"));
    assert_eq!(predictions(&s, "/v1/models/m:predict").as_deref(), Some(V1));
}

#[test]
fn tf_saved_model_version_added_and_removed() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("models/tf");
    fs::create_dir_all(&base).unwrap();
    let src = shared.join("saved_model_half_plus_two_2_versions");
    copy_dir(&src.join("00000123"), &base.join("00000123"));

    let s = Server::builder(vec![ModelCfg::tensorflow("tf", &base).policy(Policy::All)])
        .arg("--file-system-poll-wait-seconds")
        .arg("1")
        .wait_for("tf", &[123])
        .start();
    add_version(&src.join("00000124"), &base, "00000124");
    s.wait_until("version 124 to become AVAILABLE", WATCH_TIMEOUT, || {
        state_of(&s, "tf", 124).as_deref() == Some("AVAILABLE")
    });
    assert_eq!(
        predictions(&s, "/v1/models/tf/versions/124:predict").as_deref(),
        Some(V1)
    );

    fs::remove_dir_all(base.join("00000124")).unwrap();
    s.wait_until("version 124 to be unloaded", WATCH_TIMEOUT, || {
        predictions(&s, "/v1/models/tf/versions/124:predict").is_none()
    });
    assert_ne!(state_of(&s, "tf", 124).as_deref(), Some("AVAILABLE"));
    assert_eq!(
        predictions(&s, "/v1/models/tf/versions/123:predict").as_deref(),
        Some(V1)
    );
}
