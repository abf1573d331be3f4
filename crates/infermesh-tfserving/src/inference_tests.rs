//! Tests for `inference`: signature checks, context merging, result building.

use std::collections::HashMap;

use super::*;
use crate::proto::tensorflow::serving::{ExampleList, ExampleListWithContext};
use crate::proto::tensorflow::{Feature, Features, FloatList, feature::Kind};
use crate::{TensorInfo, servable::method};

fn float_feature(v: f32) -> Feature {
    Feature {
        kind: Some(Kind::FloatList(FloatList { value: vec![v] })),
    }
}

fn example(pairs: &[(&str, f32)]) -> Example {
    Example {
        features: Some(Features {
            feature: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), float_feature(*v)))
                .collect::<HashMap<_, _>>(),
        }),
    }
}

fn t(shape: &[usize], data: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn info() -> TensorInfo {
    TensorInfo {
        name: "t:0".into(),
        dtype: 7,
        shape: None,
    }
}

#[test]
fn context_is_merged_into_every_example() {
    let input = Input {
        kind: Some(input::Kind::ExampleListWithContext(
            ExampleListWithContext {
                examples: vec![
                    example(&[("x", 1.0), ("shared", 9.0)]),
                    example(&[("x", 2.0)]),
                ],
                context: Some(example(&[("shared", 5.0), ("c", 3.0)])),
            },
        )),
    };
    let examples = input_examples(&input).unwrap();
    let f = |i: usize, k: &str| examples[i].features.as_ref().unwrap().feature[k].clone();
    assert_eq!(f(0, "shared"), float_feature(9.0), "the example wins");
    assert_eq!(f(1, "shared"), float_feature(5.0));
    assert_eq!(f(1, "c"), float_feature(3.0));
    let (tensor, n) = input_to_examples_tensor(&input).unwrap();
    assert_eq!(n, 2);
    assert_eq!(tensor.shape, vec![2]);
    assert_eq!(tensor.dtype(), crate::DType::String);
}

#[test]
fn empty_input_is_an_error() {
    assert_eq!(
        input_examples(&Input::default()).unwrap_err().message,
        "Input is empty."
    );
    let empty = Input {
        kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![] })),
    };
    assert_eq!(
        input_examples(&empty).unwrap_err().message,
        "Input is empty."
    );
}

#[test]
fn signature_checks() {
    let mut sig = Signature {
        method_name: method::REGRESS.into(),
        inputs: BTreeMap::from([(INPUTS.to_string(), info())]),
        outputs: BTreeMap::from([(OUTPUTS.to_string(), info())]),
    };
    assert!(check_regress_signature(&sig).is_ok());
    assert_eq!(
        check_classify_signature(&sig).unwrap_err().message,
        "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/regress"
    );
    sig.method_name = method::CLASSIFY.into();
    assert_eq!(
        check_classify_signature(&sig).unwrap_err().code,
        crate::Code::FailedPrecondition
    );
    sig.outputs = BTreeMap::from([(SCORES.to_string(), info())]);
    assert!(check_classify_signature(&sig).is_ok());
    sig.method_name = method::PREDICT.into();
    assert!(check_regress_signature(&sig).is_err());
}

#[test]
fn classification_with_classes_and_scores() {
    let outputs = BTreeMap::from([
        (
            CLASSES.to_string(),
            t(
                &[2, 2],
                TensorData::Str(vec![
                    b"a".to_vec(),
                    b"b".to_vec(),
                    b"c".to_vec(),
                    b"d".to_vec(),
                ]),
            ),
        ),
        (
            SCORES.to_string(),
            t(&[2, 2], TensorData::F32(vec![0.1, 0.9, 0.5, 0.5])),
        ),
    ]);
    let r = classification_result(&outputs, 2).unwrap();
    assert_eq!(r.classifications.len(), 2);
    assert_eq!(r.classifications[1].classes[0].label, "c");
    assert_eq!(r.classifications[0].classes[1].score, 0.9);
    // Classes only: scores are 0.
    let only = BTreeMap::from([(CLASSES.to_string(), outputs[CLASSES].clone())]);
    assert_eq!(
        classification_result(&only, 2).unwrap().classifications[0].classes[0].score,
        0.0
    );
}

#[test]
fn classification_errors() {
    let err = |outputs: BTreeMap<String, Tensor>, n| {
        classification_result(&outputs, n).unwrap_err().message
    };
    assert_eq!(
        err(
            BTreeMap::from([(SCORES.to_string(), t(&[2], TensorData::F32(vec![1.0, 2.0])))]),
            2
        ),
        "Expected Tensor shape: [batch_size num_classes] but got [2]"
    );
    assert_eq!(
        err(
            BTreeMap::from([(SCORES.to_string(), t(&[1, 1], TensorData::F64(vec![1.0])))]),
            1
        ),
        "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"
    );
    assert_eq!(
        err(
            BTreeMap::from([(SCORES.to_string(), t(&[1, 1], TensorData::F32(vec![1.0])))]),
            2
        ),
        "Expected scores output batch size of 2. Got: 1"
    );
    assert_eq!(
        err(
            BTreeMap::from([
                (
                    CLASSES.to_string(),
                    t(&[1, 2], TensorData::Str(vec![vec![], vec![]]))
                ),
                (SCORES.to_string(), t(&[1, 1], TensorData::F32(vec![1.0]))),
            ]),
            1
        ),
        "Tensors class and score should match in dim_size(1). Got 2 vs. 1"
    );
}

#[test]
fn regression_shapes() {
    let ok = BTreeMap::from([(
        OUTPUTS.to_string(),
        t(&[2], TensorData::F32(vec![1.0, 2.0])),
    )]);
    assert_eq!(regression_result(&ok, 2).unwrap().regressions.len(), 2);
    let bad = BTreeMap::from([(
        OUTPUTS.to_string(),
        t(&[1, 2], TensorData::F32(vec![1.0, 2.0])),
    )]);
    assert_eq!(
        regression_result(&bad, 1).unwrap_err().message,
        "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [1,2]"
    );
    assert_eq!(
        regression_result(&ok, 3).unwrap_err().message,
        "Input batch size did not match output batch size: 3 vs. 2"
    );
    let ints = BTreeMap::from([(OUTPUTS.to_string(), t(&[1], TensorData::I32(vec![1])))]);
    assert_eq!(
        regression_result(&ints, 1).unwrap_err().message,
        "Expected output Tensor of DT_FLOAT.  Got: DT_INT32"
    );
}
