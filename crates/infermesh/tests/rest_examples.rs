//! REST API of `infermesh model-server` on our ONNX example models
//! (`examples/models/half_plus_two`: v1 = 0.5x+2, v2 = 0.5x+3). Always runs.

mod common;

use common::{
    ModelCfg, ONNX_MODEL, Policy, Server, ServerBuilder, assert_json_content_type, compact,
    example_model_dir, onnx_models, request_count_samples,
};
use serde_json::{Value, json};

const V1: &str = "[2.5,3.0,4.5]";
const V2: &str = "[3.5,4.0,5.5]";

fn start_onnx() -> Server {
    Server::builder(onnx_models())
        .wait_for(ONNX_MODEL, &[1, 2])
        .start()
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
fn predict_row_and_columnar_by_version_and_label() {
    let s = start_onnx();
    let body = r#"{"instances": [1.0, 2.0, 5.0]}"#;
    let cases = [
        // Latest of versions {1, 2} is 2.
        ("/v1/models/half_plus_two:predict", V2),
        ("/v1/models/half_plus_two/versions/1:predict", V1),
        ("/v1/models/half_plus_two/versions/2:predict", V2),
        ("/v1/models/half_plus_two/labels/stable:predict", V1),
        ("/v1/models/half_plus_two/labels/canary:predict", V2),
    ];
    for (path, want) in cases {
        assert_eq!(
            predict_text(&s, path, body),
            format!(r#"{{"predictions":{want}}}"#),
            "row predict {path}"
        );
        assert_eq!(
            predict_text(&s, path, r#"{"inputs": [1.0, 2.0, 5.0]}"#),
            format!(r#"{{"outputs":{want}}}"#),
            "columnar predict {path}"
        );
    }
    // Explicit default signature and a batch in [N, 1] form.
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two/versions/1:predict",
            r#"{"signature_name": "serving_default", "instances": [[1.0], [2.0], [5.0]]}"#
        ),
        r#"{"predictions":[[2.5],[3.0],[4.5]]}"#
    );
    // Path parts are case-insensitive like TF Serving's (?i) patterns.
    assert_eq!(
        predict_text(&s, "/V1/MODELS/half_plus_two/VERSIONS/1:PREDICT", body),
        format!(r#"{{"predictions":{V1}}}"#)
    );
}

#[test]
fn predict_number_formatting_and_non_finite_values() {
    let s = start_onnx();
    let path = "/v1/models/half_plus_two/versions/1:predict";
    // %g with 6 significant digits: 0.5*0.1+2 in f32 prints as 2.05, whole numbers as
    // 3.0 and 999999.0, 9000000 as 9e+06 (TF Serving's json_tensor rules).
    assert_eq!(
        predict_text(
            &s,
            path,
            r#"{"instances": [0.1, 2.0, 17999996.0, 1999994.0]}"#
        ),
        r#"{"predictions":[2.05,3.0,9e+06,999999.0]}"#
    );
    // NaN and the infinities are accepted on input and written back the same way.
    assert_eq!(
        predict_text(&s, path, r#"{"instances": [NaN, Infinity, -Infinity]}"#),
        r#"{"predictions":[NaN,Infinity,-Infinity]}"#
    );
}

#[test]
fn predict_named_inputs_by_row_and_column() {
    let s = start_onnx();
    let meta = s.get_ok("/v1/models/half_plus_two/versions/1/metadata");
    let input =
        only_key(&meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]);
    let row = json!({"instances": [{ input.clone(): 1.0 }, { input.clone(): 5.0 }]}).to_string();
    assert_eq!(
        predict_text(&s, "/v1/models/half_plus_two/versions/1:predict", &row),
        r#"{"predictions":[2.5,4.5]}"#
    );
    let col = json!({"inputs": { input.clone(): [1.0, 5.0] }}).to_string();
    assert_eq!(
        predict_text(&s, "/v1/models/half_plus_two/versions/2:predict", &col),
        r#"{"outputs":[3.5,5.5]}"#
    );
}

fn only_key(v: &Value) -> String {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"));
    assert_eq!(obj.len(), 1, "expected one entry: {v}");
    obj.keys().next().unwrap().clone()
}

fn status_of(version: &str) -> Value {
    json!({"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}})
}

fn sorted_status(mut v: Value) -> Value {
    if let Some(a) = v["model_version_status"].as_array_mut() {
        a.sort_by_key(|s| {
            s["version"]
                .as_str()
                .unwrap_or("")
                .parse::<i64>()
                .unwrap_or(0)
        });
    }
    v
}

#[test]
fn model_status_json() {
    let s = start_onnx();
    // TF Serving lists versions newest first; the set is what matters to a user.
    assert_eq!(
        sorted_status(s.get_ok("/v1/models/half_plus_two")),
        json!({"model_version_status": [status_of("1"), status_of("2")]})
    );
    for (path, v) in [
        ("/v1/models/half_plus_two/versions/1", "1"),
        ("/v1/models/half_plus_two/versions/2", "2"),
        ("/v1/models/half_plus_two/labels/stable", "1"),
        ("/v1/models/half_plus_two/labels/canary", "2"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert_json_content_type(&r);
        assert_eq!(
            r.json(),
            json!({"model_version_status": [status_of(v)]}),
            "GET {path}"
        );
    }
}

#[test]
fn single_model_flags_serve_latest_version_only() {
    let dir = example_model_dir();
    let s = ServerBuilder::single(ONNX_MODEL, &dir)
        .wait_for(ONNX_MODEL, &[2])
        .start();
    assert_eq!(
        s.get_ok("/v1/models/half_plus_two"),
        json!({"model_version_status": [status_of("2")]})
    );
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two:predict",
            r#"{"instances": [1.0, 2.0, 5.0]}"#
        ),
        format!(r#"{{"predictions":{V2}}}"#)
    );
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two/versions/1:predict",
        Some(r#"{"instances": [1.0]}"#),
        404,
        "Servable not found for request: Specific(half_plus_two, 1)",
    );
}

#[test]
fn specific_version_policy() {
    let s = Server::builder(vec![
        ModelCfg::onnx(ONNX_MODEL, example_model_dir()).policy(Policy::Specific(vec![1])),
    ])
    .wait_for(ONNX_MODEL, &[1])
    .start();
    assert_eq!(
        s.get_ok("/v1/models/half_plus_two"),
        json!({"model_version_status": [status_of("1")]})
    );
    assert_eq!(
        predict_text(
            &s,
            "/v1/models/half_plus_two:predict",
            r#"{"instances": [1.0, 2.0, 5.0]}"#
        ),
        format!(r#"{{"predictions":{V1}}}"#)
    );
}

#[test]
fn metadata_describes_the_predict_signature() {
    let s = start_onnx();
    for (path, version) in [
        ("/v1/models/half_plus_two/versions/1/metadata", "1"),
        ("/v1/models/half_plus_two/labels/canary/metadata", "2"),
        ("/v1/models/half_plus_two/metadata", "2"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert_json_content_type(&r);
        let m = r.json();
        assert_eq!(
            m["model_spec"],
            json!({"name": "half_plus_two", "signature_name": "", "version": version}),
            "{path}"
        );
        let sig = &m["metadata"]["signature_def"]["signature_def"]["serving_default"];
        assert_eq!(
            sig["method_name"], "tensorflow/serving/predict",
            "{path}: {m}"
        );
        for side in ["inputs", "outputs"] {
            let tensors = sig[side]
                .as_object()
                .unwrap_or_else(|| panic!("{side} in {m}"));
            assert_eq!(tensors.len(), 1, "{path}: one {side} expected: {m}");
            let info = tensors.values().next().unwrap();
            assert_eq!(info["dtype"], "DT_FLOAT", "{path}: {m}");
            assert!(
                info["tensor_shape"].is_object(),
                "{path}: tensor_shape: {m}"
            );
        }
    }
}

#[test]
fn prometheus_request_count_has_model_version() {
    let s = start_onnx();
    let body = r#"{"instances": [1.0]}"#;
    for path in [
        "/v1/models/half_plus_two/versions/1:predict",
        "/v1/models/half_plus_two/versions/1:predict",
        "/v1/models/half_plus_two/versions/2:predict",
    ] {
        s.post_ok(path, body);
    }
    let r = s.get("/monitoring/prometheus/metrics");
    assert_eq!(r.status, 200, "metrics: {}", r.body);
    let samples = request_count_samples(&r.body);
    let count = |version: &str| -> f64 {
        samples
            .iter()
            .filter(|(labels, _)| {
                labels.contains(r#"model_name="half_plus_two""#)
                    && labels.contains(&format!(r#"model_version="{version}""#))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert!(
        count("1") >= 2.0 && count("2") >= 1.0,
        "request_count by model_version: v1 {} v2 {}; samples {samples:?}\n--- metrics ---\n{}",
        count("1"),
        count("2"),
        r.body
    );
}

#[test]
fn rest_errors() {
    let s = start_onnx();
    let ok = r#"{"instances": [1.0]}"#;
    let m = "/v1/models/half_plus_two";
    let predict = "/v1/models/half_plus_two/versions/1:predict";

    // Unknown models, versions, labels.
    s.expect_error(
        "POST",
        "/v1/models/nope:predict",
        Some(ok),
        404,
        "Servable not found for request: Latest(nope)",
    );
    s.expect_error(
        "POST",
        "/v1/models/nope/versions/50:predict",
        Some(ok),
        404,
        "Servable not found for request: Specific(nope, 50)",
    );
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two/versions/50:predict",
        Some(ok),
        404,
        "Servable not found for request: Specific(half_plus_two, 50)",
    );
    s.expect_error(
        "GET",
        "/v1/models/nope",
        None,
        404,
        "Could not find any versions of model nope",
    );
    s.expect_error(
        "GET",
        "/v1/models/half_plus_two/versions/50",
        None,
        404,
        "Could not find version 50 of model half_plus_two",
    );
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two/labels/nope:predict",
        Some(ok),
        400,
        "Unrecognized servable version label: nope",
    );

    // Routing.
    s.expect_error(
        "POST",
        "/v1/foo",
        Some(ok),
        400,
        "Malformed request: POST /v1/foo",
    );
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two:explode",
        Some(ok),
        400,
        "Malformed request: POST /v1/models/half_plus_two:explode",
    );
    s.expect_error(
        "GET",
        "/v1/models/half_plus_two:predict",
        None,
        400,
        "Malformed request: GET /v1/models/half_plus_two:predict",
    );
    s.expect_error(
        "DELETE",
        m,
        None,
        400,
        "Malformed request: DELETE /v1/models/half_plus_two",
    );
    s.expect_error(
        "GET",
        "/v1/models",
        None,
        400,
        "Missing model name in request.",
    );
    s.expect_error(
        "GET",
        "/v1/models/half_plus_two/versions/99999999999999999999",
        None,
        400,
        "Failed to convert version: 99999999999999999999 to numeric.",
    );
    s.expect_error(
        "POST",
        "/v1/models/half_plus_two/versions/99999999999999999999:predict",
        Some(ok),
        400,
        "Failed to convert version: 99999999999999999999 to numeric.",
    );
    let both = s.get("/v1/models/half_plus_two/versions/1/labels/stable");
    assert_eq!(
        both.status, 400,
        "version and label together: {}",
        both.body
    );
    assert!(!both.error().is_empty());
    // Outside /v1/ there is no API: a plain 404.
    assert_eq!(s.get("/nope").status, 404);
    assert_eq!(s.post("/v2/models/half_plus_two:predict", ok).status, 404);

    // Bodies. TF Serving prefixes some messages with the pretty-printed request
    // ("JSON Value: {...} Not formatted correctly ..."), so those are matched by their text.
    s.expect_error(
        "POST",
        predict,
        Some(""),
        400,
        "JSON Parse error: The document is empty",
    );
    s.expect_error(
        "POST",
        predict,
        Some(r#"{"instances": [1.0, x]}"#),
        400,
        "JSON Parse error: Invalid value. at offset: 20",
    );
    s.expect_error_containing(
        "POST",
        predict,
        Some(r#"{"instances": [1.0], "inputs": [1.0]}"#),
        400,
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
    );
    s.expect_error(
        "POST",
        predict,
        Some(r#"{"signature_name": "serving_default"}"#),
        400,
        "Missing 'inputs' or 'instances' key",
    );
    s.expect_error_containing(
        "POST",
        predict,
        Some(r#"{"signature_name": 5, "instances": [1.0]}"#),
        400,
        "'signature_name' key must be a string value.",
    );
    s.expect_error(
        "POST",
        predict,
        Some(r#"{"signature_name": "nope", "instances": [1.0]}"#),
        400,
        r#"Serving signature name: "nope" not found in signature def"#,
    );
    s.expect_error_containing(
        "POST",
        predict,
        Some(r#"{"instances": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0, 7.0]]}"#),
        400,
        "Expecting tensor size",
    );
    s.expect_error_containing(
        "POST",
        predict,
        Some(r#"{"instances": [1.0, [1.0]]}"#),
        400,
        "Expecting shape",
    );
    s.expect_error_containing(
        "POST",
        predict,
        Some(r#"{"instances": [["a"], ["b"]]}"#),
        400,
        "is not of expected type: float",
    );
    let r = s.post(predict, r#"{"instances": []}"#);
    assert_eq!(r.status, 400, "empty instances: {}", r.body);
    assert!(!r.error().is_empty());

    // Objects and lists mixed in one instances list.
    let meta = s.get_ok("/v1/models/half_plus_two/versions/1/metadata");
    let input =
        only_key(&meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]);
    let mixed = json!({"instances": [{ input: 1.0 }, [2.0]]}).to_string();
    s.expect_error_containing(
        "POST",
        predict,
        Some(&mixed),
        400,
        "Expecting object but got list at item 1 of input list",
    );

    // Classify/regress need a classify/regress signature; the ONNX model has none.
    for verb in ["classify", "regress"] {
        let r = s.post(
            &format!("/v1/models/half_plus_two/versions/1:{verb}"),
            r#"{"examples": [{"x": 1.0}]}"#,
        );
        assert_eq!(r.status, 400, "{verb} on a predict signature: {}", r.body);
        assert_json_content_type(&r);
        assert!(!r.error().is_empty());
    }
}

#[test]
fn body_above_limit_is_413() {
    let limit = 1024 * 1024;
    let s = Server::builder(onnx_models())
        .arg("--max-body-bytes")
        .arg(limit.to_string())
        .wait_for(ONNX_MODEL, &[1, 2])
        .start();
    let path = "/v1/models/half_plus_two/versions/1:predict";
    let (status, body) = s.post_large(path, 2 * limit);
    assert_eq!(status, 413, "a body of twice --max-body-bytes: {body:.200}");
    assert!(
        body.contains("\"error\""),
        "413 without a JSON error: {body:.200}"
    );
    // A body under the limit (padded with spaces) is served, and the server is still fine.
    let (status, body) = s.post_large(path, limit / 2);
    assert_eq!(status, 200, "a body of half --max-body-bytes: {body:.200}");
    s.post_ok(path, r#"{"instances": [1.0]}"#);
}

#[test]
fn concurrent_predicts_all_answer() {
    // Bounded load: 4 clients x 25 requests, each checked.
    let s = start_onnx();
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..25u32 {
                    let x = f64::from(t * 100 + i);
                    let body = json!({"instances": [x]}).to_string();
                    let path = if i % 2 == 0 {
                        "/v1/models/half_plus_two/versions/1:predict"
                    } else {
                        "/v1/models/half_plus_two/versions/2:predict"
                    };
                    let want = if i % 2 == 0 {
                        0.5 * x + 2.0
                    } else {
                        0.5 * x + 3.0
                    };
                    let got = s.post_ok(path, &body);
                    common::assert_close(&got["predictions"], &[want]);
                }
            });
        }
    });
}
