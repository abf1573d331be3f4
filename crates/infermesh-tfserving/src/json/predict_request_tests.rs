//! Tests for predict request decoding: the `util/json_tensor_test.cc` cases listed in
//! TFSERVING-API.md and every error message.

use super::*;
use crate::TensorData;
use crate::servable::method;

fn info(dtype: i32) -> TensorInfo {
    TensorInfo {
        name: "t:0".into(),
        dtype,
        shape: None,
    }
}

fn sig(inputs: &[(&str, i32)]) -> Signature {
    Signature {
        method_name: method::PREDICT.into(),
        inputs: inputs
            .iter()
            .map(|(k, d)| (k.to_string(), info(*d)))
            .collect(),
        outputs: BTreeMap::new(),
    }
}

fn decode(body: &str, s: &Signature) -> Result<PredictJsonRequest, Status> {
    parse_predict_request(body.as_bytes(), |_| Ok(s))
}

fn decode_err(body: &str, s: &Signature) -> String {
    decode(body, s).unwrap_err().message
}

fn one(body: &str, dtype: i32) -> Tensor {
    let s = sig(&[("x", dtype)]);
    let mut r = decode(body, &s).unwrap();
    r.inputs.remove("x").unwrap()
}

#[test]
fn row_int32_matrix() {
    let s = sig(&[("x", 3)]);
    let r = decode(r#"{"instances":[[1,2],[3,4],[5,6]]}"#, &s).unwrap();
    assert_eq!(r.format, RequestFormat::Row);
    assert_eq!(r.signature_name, "serving_default");
    let t = &r.inputs["x"];
    assert_eq!(t.shape, vec![3, 2]);
    assert_eq!(t.data, TensorData::I32(vec![1, 2, 3, 4, 5, 6]));
}

#[test]
fn row_float_vector_mixes_ints_and_doubles() {
    let t = one(r#"{"instances":[1, 2.0, 3, 4, 5.003, 0.007, 0.0]}"#, 1);
    assert_eq!(t.shape, vec![7]);
    assert_eq!(
        t.data,
        TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.003, 0.007, 0.0])
    );
}

#[test]
fn row_b64_strings() {
    let t = one(
        r#"{"instances":[{"b64":"aGVsbG8="},{"b64":"d29ybGQ="}]}"#,
        7,
    );
    assert_eq!(t.shape, vec![2]);
    assert_eq!(
        t.data,
        TensorData::Str(vec![b"hello".to_vec(), b"world".to_vec()])
    );
    let t = one(r#"{"instances":["a", "b"]}"#, 7);
    assert_eq!(t.data, TensorData::Str(vec![b"a".to_vec(), b"b".to_vec()]));
}

#[test]
fn columnar_adds_no_batch_dimension() {
    let s = sig(&[("x", 3)]);
    let r = decode(r#"{"inputs":[[[1,2],[3,4],[5,6]]]}"#, &s).unwrap();
    assert_eq!(r.format, RequestFormat::Columnar);
    assert_eq!(r.inputs["x"].shape, vec![1, 3, 2]);
    let t = one(r#"{"inputs": 3.0}"#, 1);
    assert!(t.shape.is_empty());
    assert_eq!(t.data, TensorData::F32(vec![3.0]));
    let t = one(r#"{"inputs": {"b64": "aGk="}}"#, 7);
    assert_eq!(t.data, TensorData::Str(vec![b"hi".to_vec()]));
}

#[test]
fn columnar_named_inputs() {
    let s = sig(&[("a", 1), ("b", 9)]);
    let r = decode(
        r#"{"signature_name": "serving_default", "inputs": {"a": [1.5], "b": [[1, 2]], "extra": 1}}"#,
        &s,
    )
    .unwrap();
    assert_eq!(r.inputs["a"].data, TensorData::F32(vec![1.5]));
    assert_eq!(r.inputs["b"].shape, vec![1, 2]);
    assert_eq!(r.inputs["b"].data, TensorData::I64(vec![1, 2]));
    assert_eq!(
        decode_err(r#"{"inputs": {"a": [1.5]}}"#, &s),
        "Missing named input: b in 'inputs' object."
    );
    assert_eq!(
        decode_err(r#"{"inputs": [1.5]}"#, &s),
        "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map"
    );
}

#[test]
fn row_named_inputs() {
    let s = sig(&[("a", 1), ("b", 7)]);
    let r = decode(
        r#"{"instances": [{"a": [1, 2], "b": "x"}, {"b": {"b64": "eQ=="}, "a": [3, 4]}]}"#,
        &s,
    )
    .unwrap();
    assert_eq!(r.inputs["a"].shape, vec![2, 2]);
    assert_eq!(
        r.inputs["a"].data,
        TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])
    );
    assert_eq!(r.inputs["b"].shape, vec![2]);
    assert_eq!(
        r.inputs["b"].data,
        TensorData::Str(vec![b"x".to_vec(), b"y".to_vec()])
    );
    assert_eq!(
        decode_err(r#"{"instances": [{"a": 1, "b": "x"}, [3]]}"#, &s),
        "Expecting object but got list at item 1 of input list"
    );
    assert_eq!(
        decode_err(r#"{"instances": [1, 2]}"#, &s),
        "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map"
    );
    assert_eq!(
        decode_err(r#"{"instances": [{"a": 1}]}"#, &s),
        "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": 1\n} must only have keys: a,b"
    );
    assert_eq!(
        decode_err(r#"{"instances": [{"a": 1, "c": 2}]}"#, &s),
        "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not have named input: c"
    );
    let single = sig(&[("x", 1)]);
    assert_eq!(
        decode_err(r#"{"instances": [[1], {"x": [2]}]}"#, &single),
        "Expecting value/list but got object at item 1 of input list"
    );
}

#[test]
fn tensor_size_and_shape_mismatches() {
    let s = sig(&[("x", 3)]);
    assert_eq!(
        decode_err(r#"{"instances":[[1,2],[3,4],[5,6,7]]}"#, &s),
        "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but got: 3"
    );
    assert_eq!(
        decode_err(r#"{"instances":[1,[1]]}"#, &s),
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [] but got: [1]"
    );
    assert_eq!(
        decode_err(r#"{"instances":[[[1,2]],[[3],[4]]]}"#, &s),
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [1,2] but got: [2,1]"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[[1,2],[3]]}"#, &s),
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[[1,2],3]}"#, &s),
        "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[1,[2]]}"#, &s),
        "Encountered list at unexpected level: 1 expected < 1"
    );
}

#[test]
fn value_type_checks() {
    let s = sig(&[("x", 3)]);
    assert_eq!(
        decode_err(r#"{"instances":[[1,2],["a","b"]]}"#, &s),
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"a\" Type: String is not of expected type: int32"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[2.5]}"#, &s),
        "JSON Value: 2.5 Type: Number is not of expected type: int32"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[2147483648]}"#, &s),
        "JSON Value: 2147483648 Type: Number is not of expected type: int32"
    );
    assert_eq!(one(r#"{"inputs":[300]}"#, 4).data, TensorData::U8(vec![44]));
    assert_eq!(one(r#"{"inputs":[-5]}"#, 6).data, TensorData::I8(vec![-5]));
    assert_eq!(
        one(r#"{"inputs":[-9223372036854775808]}"#, 9).data,
        TensorData::I64(vec![i64::MIN])
    );
    assert_eq!(
        one(r#"{"inputs":[18446744073709551615]}"#, 23).data,
        TensorData::U64(vec![u64::MAX])
    );
    assert_eq!(
        one(r#"{"inputs":[4294967295]}"#, 22).data,
        TensorData::U32(vec![u32::MAX])
    );
    let s = sig(&[("x", 22)]);
    assert_eq!(
        decode_err(r#"{"inputs":[-1]}"#, &s),
        "JSON Value: -1 Type: Number is not of expected type: uint32"
    );
    assert_eq!(
        one(r#"{"inputs":[true, false]}"#, 10).data,
        TensorData::Bool(vec![true, false])
    );
    let s = sig(&[("x", 10)]);
    assert_eq!(
        decode_err(r#"{"inputs":[1]}"#, &s),
        "JSON Value: 1 Type: Number is not of expected type: bool"
    );
    let s = sig(&[("x", 1)]);
    assert_eq!(
        decode_err(r#"{"inputs":[null]}"#, &s),
        "JSON Value: null Type: Null is not of expected type: float"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[{"b64": "aGk="}]}"#, &s),
        "JSON Value: {\n    \"b64\": \"aGk=\"\n} Type: Object is not of expected type: float"
    );
}

#[test]
fn float_precision_and_non_finite_inputs() {
    let s = sig(&[("x", 1)]);
    assert_eq!(
        decode_err(r#"{"inputs":[16777217]}"#, &s),
        "Cannot convert JSON value: 16777217 to float without loss of precision."
    );
    assert_eq!(
        one(r#"{"inputs":[16777215]}"#, 1).data,
        TensorData::F32(vec![16777215.0])
    );
    assert_eq!(
        decode_err(r#"{"inputs":[1e39]}"#, &s),
        "Cannot convert JSON value: 1e+39 to float without loss of precision."
    );
    let TensorData::F32(v) = one(r#"{"inputs":[NaN, Infinity, -Infinity]}"#, 1).data else {
        panic!("not f32")
    };
    assert!(v[0].is_nan() && v[1] == f32::INFINITY && v[2] == f32::NEG_INFINITY);
    assert_eq!(
        one(r#"{"inputs":[1e300]}"#, 2).data,
        TensorData::F64(vec![1e300])
    );
}

#[test]
fn base64_errors() {
    let s = sig(&[("x", 7)]);
    assert_eq!(
        decode_err(r#"{"inputs":[{"b64": "!!!"}]}"#, &s),
        "Unable to base64 decode"
    );
    assert_eq!(
        decode_err(r#"{"inputs":[{"b64": "aGk=", "x": 1}]}"#, &s),
        "JSON Value: {\n    \"b64\": \"aGk=\",\n    \"x\": 1\n} not formatted correctly for base64 data"
    );
    assert_eq!(
        one(r#"{"inputs":{"b64": "aGk"}}"#, 7).data,
        TensorData::Str(vec![b"hi".to_vec()])
    );
}

#[test]
fn unsupported_input_dtype() {
    let s = sig(&[("x", 19)]);
    let err = decode(r#"{"inputs":[1]}"#, &s).unwrap_err();
    assert_eq!(err.code, crate::Code::Unimplemented);
    assert_eq!(err.message, "Conversion of JSON Value: 1 to type: half");
}

#[test]
fn document_level_errors() {
    let s = sig(&[("x", 1)]);
    assert_eq!(
        decode_err("", &s),
        "JSON Parse error: The document is empty"
    );
    assert_eq!(
        decode_err("{\"instances\": [1,}", &s),
        "JSON Parse error: Invalid value. at offset: 17"
    );
    assert_eq!(
        decode_err("[1]", &s),
        "JSON Value: [\n    1\n] Is not object"
    );
    assert_eq!(
        decode_err(r#"{"signature_name":5,"instances":[1]}"#, &s),
        "JSON Value: {\n    \"signature_name\": 5,\n    \"instances\": [\n        1\n    ]\n} not formatted correctly. 'signature_name' key must be a string value."
    );
    assert_eq!(
        decode_err(r#"{"instances":[1],"inputs":[1]}"#, &s),
        "JSON Value: {\n    \"instances\": [\n        1\n    ],\n    \"inputs\": [\n        1\n    ]\n} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
    );
    assert_eq!(
        decode_err(r#"{"x":[1]}"#, &s),
        "Missing 'inputs' or 'instances' key"
    );
    assert_eq!(
        decode_err(r#"{"instances":1}"#, &s),
        "JSON Value: {\n    \"instances\": 1\n} Excepting 'instances' to be an list/array"
    );
    assert_eq!(
        decode_err(r#"{"instances":[]}"#, &s),
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    );
    let empty = sig(&[]);
    assert_eq!(
        decode_err(r#"{"instances":[1]}"#, &empty),
        "Failed to get input map for signature: DEFAULT"
    );
    assert_eq!(
        decode_err(r#"{"signature_name": "s", "instances":[1]}"#, &empty),
        "Failed to get input map for signature: s"
    );
}

#[test]
fn signature_lookup() {
    let mut sigs = BTreeMap::new();
    sigs.insert("serving_default".to_string(), sig(&[("x", 1)]));
    sigs.insert("other".to_string(), sig(&[("y", 3)]));
    let r =
        parse_predict_request(br#"{"instances": [1.0]}"#, |n| find_signature(&sigs, n)).unwrap();
    assert_eq!(r.signature_name, "serving_default");
    let r = parse_predict_request(br#"{"signature_name": "other", "instances": [1]}"#, |n| {
        find_signature(&sigs, n)
    })
    .unwrap();
    assert_eq!(r.inputs["y"].data, TensorData::I32(vec![1]));
    let owned = PredictJsonRequest::parse(br#"{"instances": [2.0]}"#, |n| {
        find_signature(&sigs, n).cloned()
    })
    .unwrap();
    assert_eq!(owned.inputs["x"].data, TensorData::F32(vec![2.0]));
    let err = parse_predict_request(br#"{"signature_name": "nope", "instances": [1]}"#, |n| {
        find_signature(&sigs, n)
    })
    .unwrap_err();
    assert_eq!(err.code, crate::Code::InvalidArgument);
    assert_eq!(
        err.message,
        "Serving signature name: \"nope\" not found in signature def"
    );
}

#[test]
fn half_plus_two_request_shapes() {
    let s = sig(&[("x", 1)]);
    let r = decode(r#"{"instances": [[1.0, 2.0], [3.0, 4.0]]}"#, &s).unwrap();
    assert_eq!(r.inputs["x"].shape, vec![2, 2]);
    let r = decode(r#"{"inputs": [3.0, 4.0]}"#, &s).unwrap();
    assert_eq!(r.inputs["x"].shape, vec![2]);
    let r = decode(r#"{"instances": [1.0, 2.0, 5.0]}"#, &s).unwrap();
    assert_eq!(r.inputs["x"].data, TensorData::F32(vec![1.0, 2.0, 5.0]));
}
