//! Tests for `tensor_proto`: both input encodings, broadcast, errors, output fields.

use super::*;
use crate::proto::tensorflow::{TensorProto, TensorShapeProto, tensor_shape_proto::Dim};

fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims
            .iter()
            .map(|&size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    })
}

#[test]
fn reads_float_val() {
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[2, 2]),
        float_val: vec![1.0, 2.0, 3.0, 4.0],
        ..Default::default()
    };
    let t = tensor_from_proto(&p).unwrap();
    assert_eq!(t.shape, vec![2, 2]);
    assert_eq!(t.data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn reads_tensor_content_little_endian() {
    let mut content = Vec::new();
    for v in [1.5f32, -2.0, 3.25] {
        content.extend_from_slice(&v.to_le_bytes());
    }
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[3]),
        tensor_content: content,
        ..Default::default()
    };
    assert_eq!(
        tensor_from_proto(&p).unwrap().data,
        TensorData::F32(vec![1.5, -2.0, 3.25])
    );
    let mut content = Vec::new();
    for v in [7i64, -9] {
        content.extend_from_slice(&v.to_le_bytes());
    }
    let p = TensorProto {
        dtype: 9,
        tensor_shape: shape(&[2]),
        tensor_content: content,
        ..Default::default()
    };
    assert_eq!(
        tensor_from_proto(&p).unwrap().data,
        TensorData::I64(vec![7, -9])
    );
}

#[test]
fn tensor_content_size_must_match() {
    let p = TensorProto {
        dtype: 3,
        tensor_shape: shape(&[2]),
        tensor_content: vec![0; 7],
        ..Default::default()
    };
    let err = tensor_from_proto(&p).unwrap_err();
    assert_eq!(err.code, crate::Code::InvalidArgument);
    assert!(err.message.contains("tensor_content"), "{}", err.message);
}

#[test]
fn single_value_broadcasts() {
    let p = TensorProto {
        dtype: 3,
        tensor_shape: shape(&[2, 3]),
        int_val: vec![7],
        ..Default::default()
    };
    assert_eq!(
        tensor_from_proto(&p).unwrap().data,
        TensorData::I32(vec![7; 6])
    );
}

#[test]
fn huge_broadcast_is_refused() {
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[1 << 40]),
        float_val: vec![1.0],
        ..Default::default()
    };
    assert!(tensor_from_proto(&p).is_err());
}

#[test]
fn mismatched_counts_are_errors() {
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[3]),
        float_val: vec![1.0, 2.0],
        ..Default::default()
    };
    let err = tensor_from_proto(&p).unwrap_err();
    assert!(err.message.contains("float_val"), "{}", err.message);
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[2]),
        ..Default::default()
    };
    assert!(tensor_from_proto(&p).is_err());
}

#[test]
fn unsupported_dtype_and_bad_shapes_are_errors() {
    let p = TensorProto {
        dtype: 19,
        tensor_shape: shape(&[1]),
        half_val: vec![1],
        ..Default::default()
    };
    let err = tensor_from_proto(&p).unwrap_err();
    assert_eq!(err.message, "Unsupported tensor dtype: half");
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[-1]),
        float_val: vec![1.0],
        ..Default::default()
    };
    assert!(tensor_from_proto(&p).is_err());
    let p = TensorProto {
        dtype: 1,
        tensor_shape: shape(&[i64::MAX, i64::MAX]),
        float_val: vec![1.0],
        ..Default::default()
    };
    assert!(tensor_from_proto(&p).is_err());
}

#[test]
fn scalar_without_shape() {
    let p = TensorProto {
        dtype: 7,
        string_val: vec![b"hi".to_vec()],
        ..Default::default()
    };
    let t = tensor_from_proto(&p).unwrap();
    assert!(t.shape.is_empty());
    assert_eq!(t.data, TensorData::Str(vec![b"hi".to_vec()]));
}

#[test]
fn narrow_ints_use_int_val() {
    let t = Tensor::new(vec![2], TensorData::U8(vec![1, 255])).unwrap();
    let p = tensor_to_proto(&t);
    assert_eq!(p.dtype, 4);
    assert_eq!(p.int_val, vec![1, 255]);
    assert_eq!(tensor_from_proto(&p).unwrap(), t);
}

#[test]
fn writes_typed_fields_and_round_trips() {
    let cases = vec![
        Tensor::new(vec![2], TensorData::F32(vec![2.5, 3.0])).unwrap(),
        Tensor::new(vec![1], TensorData::F64(vec![1e300])).unwrap(),
        Tensor::new(vec![2], TensorData::I64(vec![i64::MIN, 5])).unwrap(),
        Tensor::new(vec![1], TensorData::U64(vec![u64::MAX])).unwrap(),
        Tensor::new(vec![1], TensorData::U32(vec![u32::MAX])).unwrap(),
        Tensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap(),
        Tensor::new(vec![1, 1], TensorData::I8(vec![-3])).unwrap(),
        Tensor::new(vec![1], TensorData::I16(vec![-300])).unwrap(),
        Tensor::new(vec![1], TensorData::U16(vec![65535])).unwrap(),
        Tensor::new(vec![], TensorData::Str(vec![vec![0, 255]])).unwrap(),
    ];
    for t in cases {
        let p = tensor_to_proto(&t);
        assert!(p.tensor_content.is_empty());
        assert_eq!(tensor_from_proto(&p).unwrap(), t);
    }
    let p = tensor_to_proto(&Tensor::new(vec![2], TensorData::F32(vec![1.0, 2.0])).unwrap());
    assert_eq!(p.float_val, vec![1.0, 2.0]);
    assert_eq!(p.tensor_shape.unwrap().dim[0].size, 2);
}

#[test]
fn signature_round_trips_through_signature_def() {
    let mut sig = Signature {
        method_name: crate::servable::method::PREDICT.into(),
        ..Default::default()
    };
    sig.inputs.insert(
        "x".into(),
        TensorInfo {
            name: "x:0".into(),
            dtype: 1,
            shape: Some(vec![-1, 1]),
        },
    );
    sig.outputs.insert(
        "y".into(),
        TensorInfo {
            name: "y:0".into(),
            dtype: 7,
            shape: None,
        },
    );
    let def = signature_to_proto(&sig);
    assert_eq!(def.method_name, "tensorflow/serving/predict");
    let y = &def.outputs["y"];
    assert!(y.tensor_shape.as_ref().unwrap().unknown_rank);
    assert_eq!(
        y.encoding,
        Some(pb::tensor_info::Encoding::Name("y:0".into()))
    );
    assert_eq!(signature_from_proto(&def).unwrap(), sig);
}
