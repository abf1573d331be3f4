//! Tests for the status and metadata bodies, including the golden half_plus_two
//! metadata file from TF Serving.

use super::*;
use crate::Status;
use crate::model_info::VersionState;
use crate::servable::method;

#[test]
fn status_body_matches_tf_serving() {
    let body = model_status_json(&[VersionStatus {
        version: 123,
        state: VersionState::Available,
        error: None,
    }]);
    assert_eq!(
        body,
        "{\n \"model_version_status\": [\n  {\n   \"version\": \"123\",\n   \"state\": \"AVAILABLE\",\n   \"status\": {\n    \"error_code\": \"OK\",\n    \"error_message\": \"\"\n   }\n  }\n ]\n}\n"
    );
    let compact: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        compact,
        serde_json::json!({"model_version_status":[{"version":"123","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]})
    );
    let body = model_status_json(&[VersionStatus {
        version: 5,
        state: VersionState::End,
        error: Some(Status::not_found("gone \"away\"")),
    }]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model_version_status"][0]["state"], "END");
    assert_eq!(
        v["model_version_status"][0]["status"]["error_code"],
        "NOT_FOUND"
    );
    assert_eq!(
        v["model_version_status"][0]["status"]["error_message"],
        "gone \"away\""
    );
}

fn info(name: &str, dtype: i32, shape: Option<Vec<i64>>) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype,
        shape,
    }
}

fn signature(method: &str, input: (&str, TensorInfo), output: (&str, TensorInfo)) -> Signature {
    Signature {
        method_name: method.into(),
        inputs: BTreeMap::from([(input.0.to_string(), input.1)]),
        outputs: BTreeMap::from([(output.0.to_string(), output.1)]),
    }
}

/// The signatures of TF Serving's `saved_model_half_plus_two` test models.
fn half_plus_two_signatures() -> BTreeMap<String, Signature> {
    let col = || Some(vec![-1, 1]);
    let example = || info("tf_example:0", 7, None);
    BTreeMap::from([
        (
            "serving_default".to_string(),
            signature(
                method::PREDICT,
                ("x", info("x:0", 1, col())),
                ("y", info("y:0", 1, col())),
            ),
        ),
        (
            "regress_x_to_y".to_string(),
            signature(
                method::REGRESS,
                ("inputs", example()),
                ("outputs", info("y:0", 1, col())),
            ),
        ),
        (
            "regress_x_to_y2".to_string(),
            signature(
                method::REGRESS,
                ("inputs", example()),
                ("outputs", info("y2:0", 1, col())),
            ),
        ),
        (
            "regress_x2_to_y3".to_string(),
            signature(
                method::REGRESS,
                ("inputs", info("x2:0", 1, col())),
                ("outputs", info("y3:0", 1, col())),
            ),
        ),
        (
            "classify_x_to_y".to_string(),
            signature(
                method::CLASSIFY,
                ("inputs", example()),
                ("scores", info("y:0", 1, col())),
            ),
        ),
        (
            "classify_x2_to_y3".to_string(),
            signature(
                method::CLASSIFY,
                ("inputs", info("x2:0", 1, col())),
                ("scores", info("y3:0", 1, col())),
            ),
        ),
    ])
}

#[test]
fn metadata_matches_golden_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/testdata/tfserving/saved_model_half_plus_two_2_versions_metadata.json",
    );
    let golden = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            println!(
                "skipping metadata_matches_golden_file: cannot read {} ({e}); the golden file lives in the shared test data outside this repository",
                path.display()
            );
            return;
        }
    };
    let ours = model_metadata_json(
        "saved_model_half_plus_two_2_versions",
        123,
        &half_plus_two_signatures(),
    );
    let golden: serde_json::Value = serde_json::from_str(&golden).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&ours).unwrap();
    assert_eq!(parsed, golden);
}

#[test]
fn metadata_layout_is_protobuf_style() {
    let sigs = BTreeMap::from([(
        "serving_default".to_string(),
        signature(
            method::PREDICT,
            ("x", info("x:0", 1, Some(vec![-1]))),
            ("y", info("y:0", 7, None)),
        ),
    )]);
    let body = model_metadata_json("m", 1, &sigs);
    assert!(body.starts_with(
        "{\n \"model_spec\": {\n  \"name\": \"m\",\n  \"signature_name\": \"\",\n  \"version\": \"1\"\n },\n \"metadata\": {\n  \"signature_def\": {\n   \"signature_def\": {\n    \"serving_default\": {\n     \"inputs\": {\n      \"x\": {\n       \"dtype\": \"DT_FLOAT\",\n       \"tensor_shape\": {\n        \"dim\": [\n         {\n          \"size\": \"-1\",\n          \"name\": \"\"\n         }\n        ],\n        \"unknown_rank\": false\n       },\n       \"name\": \"x:0\"\n      }\n     },"
    ), "{body}");
    assert!(
        body.contains("\"dim\": [],\n        \"unknown_rank\": true"),
        "{body}"
    );
    assert!(
        body.ends_with("\"defaults\": {}\n    }\n   }\n  }\n }\n}\n"),
        "{body}"
    );
}
