//! Tests for REST classify/regress: example decoding, error messages, result layout,
//! and the half_plus_two handler cases end to end (with a stand-in model).

use std::collections::BTreeMap;

use prost::Message as _;

use super::*;
use crate::inference::{classification_result, input_to_examples_tensor, regression_result};
use crate::{Tensor, TensorData};

fn feature<'a>(e: &'a Example, name: &str) -> &'a Option<Kind> {
    &e.features.as_ref().unwrap().feature[name].kind
}

fn err(body: &str) -> String {
    parse_classify_regress_request(body.as_bytes())
        .unwrap_err()
        .message
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn decodes_examples_of_every_kind() {
    let r = parse_classify_regress_request(
        br#"{"signature_name": "s", "context": {"q": "pizza"}, "examples": [
            {"f": 1.5, "i": 3, "b": true, "s": ["a", {"b64": "aGk="}], "l": [1, 2], "e": []}
        ]}"#,
    )
    .unwrap();
    assert_eq!(r.signature_key(), "s");
    let e = &r.examples[0];
    assert_eq!(
        feature(e, "f"),
        &Some(Kind::FloatList(FloatList { value: vec![1.5] }))
    );
    assert_eq!(
        feature(e, "i"),
        &Some(Kind::Int64List(Int64List { value: vec![3] }))
    );
    assert_eq!(
        feature(e, "b"),
        &Some(Kind::Int64List(Int64List { value: vec![1] }))
    );
    assert_eq!(
        feature(e, "s"),
        &Some(Kind::BytesList(BytesList {
            value: vec![b"a".to_vec(), b"hi".to_vec()]
        }))
    );
    assert_eq!(
        feature(e, "l"),
        &Some(Kind::Int64List(Int64List { value: vec![1, 2] }))
    );
    assert_eq!(feature(e, "e"), &None);
    let ctx = r.context.as_ref().unwrap();
    assert_eq!(
        feature(ctx, "q"),
        &Some(Kind::BytesList(BytesList {
            value: vec![b"pizza".to_vec()]
        }))
    );
    assert!(matches!(
        r.to_input().kind,
        Some(input::Kind::ExampleListWithContext(_))
    ));
    let serialized = r.serialized_examples();
    assert_eq!(serialized.len(), 1);
    let merged = Example::decode(serialized[0].as_slice()).unwrap();
    assert_eq!(feature(&merged, "q"), feature(ctx, "q"));
    assert_eq!(feature(&merged, "f"), feature(e, "f"));
    let r = parse_classify_regress_request(br#"{"examples": [{}]}"#).unwrap();
    assert_eq!(r.signature_key(), "serving_default");
    assert!(matches!(
        r.to_input().kind,
        Some(input::Kind::ExampleList(_))
    ));
}

#[test]
fn request_errors() {
    assert_eq!(err(""), "JSON Parse error: The document is empty");
    assert_eq!(
        err(r#"{"signature_name": 1, "examples": [{}]}"#),
        "JSON Value: {\n    \"signature_name\": 1,\n    \"examples\": [\n        {}\n    ]\n} not formatted correctly. 'signature_name' key must be a string value."
    );
    assert_eq!(
        err(r#"{"x": 1}"#),
        "JSON Value: {\n    \"x\": 1\n} When method is classify, key 'examples' is expected and was not found"
    );
    assert_eq!(
        err(r#"{"examples": 1}"#),
        "JSON Value: {\n    \"examples\": 1\n} Expecting 'examples' value to be an list/array"
    );
    assert_eq!(
        err(r#"{"examples": []}"#),
        "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"
    );
    assert_eq!(
        err(r#"{"examples": [1]}"#),
        "Example must be JSON object but got JSON Number"
    );
    assert_eq!(
        err(r#"{"context": [], "examples": [{}]}"#),
        "Example must be JSON object but got JSON Array"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": [1, "a"]}]}"#),
        "Unexpected element type in feature: x expecting type: int64"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": ["a", 1.5]}]}"#),
        "Unexpected element type in feature: x expecting type: bytes"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": [1.5, 1]}]}"#),
        "Unexpected element type in feature: x expecting type: float"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": null}]}"#),
        "Feature: x has element with unexpected JSON type: Null"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": [[1]]}]}"#),
        "Feature: x has element with unexpected JSON type: Array"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": {"a": 1}}]}"#),
        "Feature: x has element with unexpected JSON type: Object"
    );
    assert_eq!(
        err(r#"{"examples": [{"x": 18446744073709551615}]}"#),
        "Feature: x has uint64 element. Only int64 is supported."
    );
    assert_eq!(
        err(r#"{"examples": [{"x": 1e300}]}"#),
        "Cannot convert JSON value: 1e+300 to float without loss of precision."
    );
}

/// half_plus_two's regress/classify signatures: y = 0.5 * x + 2 over feature `x`.
fn model(examples: &Tensor) -> Tensor {
    let TensorData::Str(serialized) = &examples.data else {
        panic!("not strings")
    };
    let ys: Vec<f32> = serialized
        .iter()
        .map(|bytes| {
            let e = Example::decode(bytes.as_slice()).unwrap();
            match feature(&e, "x") {
                Some(Kind::FloatList(l)) => 0.5 * l.value[0] + 2.0,
                other => panic!("unexpected feature {other:?}"),
            }
        })
        .collect();
    Tensor::new(vec![ys.len(), 1], TensorData::F32(ys)).unwrap()
}

#[test]
fn half_plus_two_regress() {
    let r = parse_classify_regress_request(
        br#"{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}"#,
    )
    .unwrap();
    assert_eq!(r.signature_key(), "regress_x_to_y");
    let (tensor, n) = input_to_examples_tensor(&r.to_input()).unwrap();
    let outputs = BTreeMap::from([("outputs".to_string(), model(&tensor))]);
    let out = encode_regression_result(&regression_result(&outputs, n).unwrap()).unwrap();
    assert_eq!(out, "{\n    \"results\": [42.0]\n}");
    assert_eq!(json(&out), json(r#"{"results": [42.0]}"#));
    assert_eq!(json(&out)["results"][0].as_f64(), Some(42.0));
}

#[test]
fn half_plus_two_classify() {
    let r = parse_classify_regress_request(
        br#"{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}"#,
    )
    .unwrap();
    let (tensor, n) = input_to_examples_tensor(&r.to_input()).unwrap();
    let outputs = BTreeMap::from([("scores".to_string(), model(&tensor))]);
    let out = encode_classification_result(&classification_result(&outputs, n).unwrap()).unwrap();
    assert_eq!(out, "{\n    \"results\": [[[\"\", 12.0]]\n    ]\n}");
    let v = json(&out);
    assert_eq!(v["results"][0][0][0], "");
    assert_eq!(v["results"][0][0][1].as_f64(), Some(12.0));
}

#[test]
fn result_layout_with_several_examples() {
    use crate::proto::tensorflow::serving::{Class, Classifications, Regression};
    let result = ClassificationResult {
        classifications: vec![
            Classifications {
                classes: vec![
                    Class {
                        label: "a".into(),
                        score: 0.25,
                    },
                    Class {
                        label: "b".into(),
                        score: 0.75,
                    },
                ],
            },
            Classifications {
                classes: vec![Class {
                    label: "c".into(),
                    score: 1.0,
                }],
            },
        ],
    };
    assert_eq!(
        encode_classification_result(&result).unwrap(),
        "{\n    \"results\": [[[\"a\", 0.25], [\"b\", 0.75]], [[\"c\", 1.0]]\n    ]\n}"
    );
    let result = RegressionResult {
        regressions: vec![Regression { value: 1.0 }, Regression { value: 9_000_000.0 }],
    };
    assert_eq!(
        encode_regression_result(&result).unwrap(),
        "{\n    \"results\": [1.0, 9e+06]\n}"
    );
    assert_eq!(
        encode_regression_result(&RegressionResult::default())
            .unwrap_err()
            .message,
        "Cannot convert empty RegressionResults to JSON"
    );
    assert_eq!(
        encode_classification_result(&ClassificationResult::default())
            .unwrap_err()
            .message,
        "Cannot convert empty ClassificationResults to JSON"
    );
}
