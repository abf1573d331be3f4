//! REST API of `infermesh model-server` on TensorFlow Serving's own test SavedModels
//! (`../shared/testdata/tfserving`); every test prints a reason and returns when they are
//! not beside the repository.

mod common;

use std::path::Path;

use common::{Server, TF_TWO_VERSIONS, assert_close, assert_json_content_type, compact, tf_models};
use serde_json::{Value, json};

fn start_tf(shared: &Path) -> Server {
    Server::builder(tf_models(shared))
        .wait_for("half_plus_two", &[123])
        .wait_for("half_plus_three", &[123])
        .wait_for(TF_TWO_VERSIONS, &[123, 124])
        .start()
}

fn golden(shared: &Path) -> Value {
    let path = shared.join("saved_model_half_plus_two_2_versions_metadata.json");
    let text = std::fs::read_to_string(&path).expect("golden metadata");
    serde_json::from_str(&text).expect("golden metadata is JSON")
}

fn predict_text(s: &Server, path: &str, body: &str) -> String {
    let r = s.post(path, body);
    assert_eq!(
        r.status, 200,
        "POST {path} {body} -> {} {}",
        r.status, r.body
    );
    assert_json_content_type(&r);
    compact(&r.body)
}

#[test]
fn predict_half_plus_two_and_half_plus_three() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    let three = r#"{"instances": [1.0, 2.0, 5.0]}"#;
    assert_eq!(
        predict_text(&s, "/v1/models/half_plus_two:predict", three),
        r#"{"predictions":[2.5,3.0,4.5]}"#
    );
    assert_eq!(
        predict_text(&s, "/v1/models/half_plus_three:predict", three),
        r#"{"predictions":[3.5,4.0,5.5]}"#
    );
    // TF Serving's own REST handler test cases for half_plus_two.
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two:predict",
            r#"{"instances": [[1.0, 2.0], [3.0, 4.0]]}"#
        ),
        r#"{"predictions":[[2.5,3.0],[3.5,4.0]]}"#
    );
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two:predict",
            r#"{"inputs": [3.0, 4.0]}"#
        ),
        r#"{"outputs":[3.5,4.0]}"#
    );
    // Named row and column forms; [N, 1] batches as in the signature.
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two:predict",
            r#"{"instances": [{"x": [1.0]}, {"x": [5.0]}]}"#
        ),
        r#"{"predictions":[[2.5],[4.5]]}"#
    );
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two/versions/123:predict",
            r#"{"signature_name": "serving_default", "inputs": {"x": [[1.0], [5.0]]}}"#
        ),
        r#"{"outputs":[[2.5],[4.5]]}"#
    );
    // Another signature of the same model through predict: y3 = 0.5*x2 + 3.
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two:predict",
            r#"{"signature_name": "regress_x2_to_y3", "instances": [1.0, 2.0, 5.0]}"#
        ),
        r#"{"predictions":[3.5,4.0,5.5]}"#
    );
}

#[test]
fn two_versions_by_version_and_label() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    let body = r#"{"instances": [1.0, 2.0, 5.0]}"#;
    for path in [
        "/v1/models/saved_model_half_plus_two_2_versions:predict",
        "/v1/models/saved_model_half_plus_two_2_versions/versions/123:predict",
        "/v1/models/saved_model_half_plus_two_2_versions/versions/124:predict",
        "/v1/models/saved_model_half_plus_two_2_versions/labels/stable:predict",
        "/v1/models/saved_model_half_plus_two_2_versions/labels/canary:predict",
    ] {
        assert_eq!(
            predict_text(&s, path, body),
            r#"{"predictions":[2.5,3.0,4.5]}"#,
            "{path}"
        );
    }
    s.expect_error(
        "POST",
        "/v1/models/saved_model_half_plus_two_2_versions/versions/125:predict",
        Some(body),
        404,
        "Servable not found for request: Specific(saved_model_half_plus_two_2_versions, 125)",
    );
}

fn available(version: &str) -> Value {
    json!({"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}})
}

#[test]
fn model_status_json() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    let r = s.get("/v1/models/half_plus_two");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_json_content_type(&r);
    assert_eq!(
        compact(&r.body),
        r#"{"model_version_status":[{"version":"123","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}"#
    );
    // Both versions AVAILABLE (TF Serving lists them newest first; compared as a set).
    let mut all = s.get_ok("/v1/models/saved_model_half_plus_two_2_versions");
    all["model_version_status"]
        .as_array_mut()
        .expect("model_version_status")
        .sort_by_key(|v| v["version"].as_str().unwrap_or("").to_string());
    assert_eq!(
        all,
        json!({"model_version_status": [available("123"), available("124")]})
    );
    for (path, v) in [
        (
            "/v1/models/saved_model_half_plus_two_2_versions/versions/124",
            "124",
        ),
        (
            "/v1/models/saved_model_half_plus_two_2_versions/labels/stable",
            "123",
        ),
        (
            "/v1/models/saved_model_half_plus_two_2_versions/labels/canary",
            "124",
        ),
    ] {
        assert_eq!(
            s.get_ok(path),
            json!({"model_version_status": [available(v)]}),
            "{path}"
        );
    }
    s.expect_error(
        "GET",
        "/v1/models/half_plus_two/versions/50",
        None,
        404,
        "Could not find version 50 of model half_plus_two",
    );
}

#[test]
fn metadata_equals_golden() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    let want = golden(&shared);
    for path in [
        "/v1/models/saved_model_half_plus_two_2_versions/versions/123/metadata",
        "/v1/models/saved_model_half_plus_two_2_versions/labels/stable/metadata",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert_json_content_type(&r);
        assert_eq!(
            r.json(),
            want,
            "GET {path}\n got: {}\nwant: {}",
            r.body,
            want
        );
    }
    let mut want124 = want.clone();
    want124["model_spec"]["version"] = json!("124");
    assert_eq!(
        s.get_ok("/v1/models/saved_model_half_plus_two_2_versions/versions/124/metadata"),
        want124
    );
    // half_plus_two_cpu has the same signatures except classify_x2_to_y3 (see
    // shared/testdata/tfserving/README.md); each must equal its golden counterpart.
    let m = s.get_ok("/v1/models/half_plus_two/metadata");
    assert_eq!(
        m["model_spec"],
        json!({"name": "half_plus_two", "signature_name": "", "version": "123"})
    );
    let sigs = m["metadata"]["signature_def"]["signature_def"]
        .as_object()
        .unwrap_or_else(|| panic!("signature_def map: {m}"));
    let mut names: Vec<&str> = sigs.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "classify_x_to_y",
            "regress_x2_to_y3",
            "regress_x_to_y",
            "regress_x_to_y2",
            "serving_default"
        ]
    );
    for (name, sig) in sigs {
        assert_eq!(
            sig, &want["metadata"]["signature_def"]["signature_def"][name],
            "signature {name}"
        );
    }
}

#[test]
fn classify_and_regress() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    // TF Serving's handler tests: regress x=80 -> 42, classify x=20 -> ("", 12).
    let r = s.post_ok(
        "/v1/models/half_plus_two:regress",
        r#"{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}"#,
    );
    assert_close(&r["results"], &[42.0]);
    let r = s.post_ok(
        "/v1/models/half_plus_two:regress",
        r#"{"signature_name": "regress_x_to_y2", "examples": [{"x": 80.0}, {"x": [0.0]}]}"#,
    );
    assert_close(&r["results"], &[43.0, 3.0]);
    // Context features are merged into every example.
    let r = s.post_ok(
        "/v1/models/half_plus_two/versions/123:regress",
        r#"{"signature_name": "regress_x_to_y", "context": {"x": 2.0}, "examples": [{}, {}]}"#,
    );
    assert_close(&r["results"], &[3.0, 3.0]);
    let r = s.post_ok(
        "/v1/models/half_plus_two:classify",
        r#"{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": 2.0}]}"#,
    );
    let results = r["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results: {r}"));
    assert_eq!(results.len(), 2, "{r}");
    for (res, score) in results.iter().zip([12.0, 3.0]) {
        assert_eq!(
            res.as_array().map(Vec::len),
            Some(1),
            "one class per example: {r}"
        );
        assert_eq!(res[0][0], json!(""), "empty label: {r}");
        assert_close(&res[0][1], &[score]);
    }
    // The default signature is a predict signature: classify/regress must refuse it.
    for verb in ["classify", "regress"] {
        let r = s.post(
            &format!("/v1/models/half_plus_two:{verb}"),
            r#"{"examples": [{"x": 1.0}]}"#,
        );
        assert_eq!(r.status, 400, "{verb} on serving_default: {}", r.body);
        assert!(!r.error().is_empty());
    }
}

#[test]
fn errors_on_tf_models() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two:predict",
        Some(r#"{"signature_name": "nope", "instances": [1.0]}"#),
        400,
        r#"Serving signature name: "nope" not found in signature def"#,
    );
    s.expect_error(
        "POST",
        "/v1/models/saved_model_half_plus_two_2_versions/labels/nope:predict",
        Some(r#"{"instances": [1.0]}"#),
        400,
        "Unrecognized servable version label: nope",
    );
    s.expect_error_containing(
        "POST",
        "/v1/models/half_plus_two:predict",
        Some(r#"{"instances": [{"x": [1.0]}, [2.0]]}"#),
        400,
        "Expecting object but got list at item 1 of input list",
    );
    s.expect_error_containing(
        "POST",
        "/v1/models/half_plus_two:predict",
        Some(r#"{"instances": [["a"], ["b"]]}"#),
        400,
        "is not of expected type: float",
    );
}

/// A serialized `tf.Example` with one float feature `x`, built by hand (protobuf wire
/// format: Example.features(1) -> Features.feature(1) map entry {key(1) "x",
/// value(2) Feature.float_list(2) -> FloatList.value(1) packed f32}).
fn example_x(x: f32) -> Vec<u8> {
    let mut b = vec![0x0a, 15, 0x0a, 13, 0x0a, 1, b'x', 0x12, 8, 0x12, 6, 0x0a, 4];
    b.extend_from_slice(&x.to_le_bytes());
    b
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn predict_with_b64_string_input() {
    let shared = require_shared!();
    let s = start_tf(&shared);
    // classify_x_to_y takes serialized tf.Examples (DT_STRING): {"b64": ...} values.
    let body = json!({
        "signature_name": "classify_x_to_y",
        "instances": [{"b64": base64(&example_x(20.0))}, {"b64": base64(&example_x(2.0))}],
    })
    .to_string();
    assert_eq!(
        predict_text(&s, "/v1/models/half_plus_two:predict", &body),
        r#"{"predictions":[[12.0],[3.0]]}"#
    );
    // A b64 object needs exactly the one key.
    let bad = json!({
        "signature_name": "classify_x_to_y",
        "instances": [{"b64": base64(&example_x(20.0)), "extra": 1}],
    })
    .to_string();
    let r = s.post("/v1/models/half_plus_two:predict", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
}
