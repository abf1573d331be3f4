//! Serialized `tf.Example`s at run time: decoding them and building the dense
//! feature tensors a `ParseExample` op would have produced, with TensorFlow's
//! wording for missing, mistyped or mis-sized features.

use infermesh_tfserving::proto::tensorflow::feature::Kind;
use infermesh_tfserving::{DType, Status};
use prost::Message;
use tract_core::internal::{Blob, Datum, tract_ndarray};

pub use infermesh_tfserving::proto::tensorflow::Example;

type TractTensor = tract_core::internal::Tensor;

/// Flat values of one feature for one example.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Float(Vec<f32>),
    Int64(Vec<i64>),
    Bytes(Vec<Vec<u8>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }
}

/// A fixed-length feature as `ParseExample` declares it (`dense_keys`, `Tdense`,
/// `dense_shapes`, `dense_defaults`).
#[derive(Clone, Debug, PartialEq)]
pub struct DenseFeature {
    pub key: String,
    /// Float, Int64 or String.
    pub dtype: DType,
    /// Shape of one example's value; the batch dimension comes first in the tensor.
    pub shape: Vec<usize>,
    /// `None` when the feature is required.
    pub default: Option<Values>,
}

impl DenseFeature {
    fn count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Decodes serialized `tf.Example`s.
pub fn decode(serialized: &[Vec<u8>]) -> Result<Vec<Example>, Status> {
    serialized
        .iter()
        .map(|bytes| {
            Example::decode(bytes.as_slice()).map_err(|_| {
                Status::invalid_argument(format!(
                    "Could not parse example input, value: '{}'",
                    String::from_utf8_lossy(bytes)
                ))
            })
        })
        .collect()
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::FloatList(_) => "float",
        Kind::Int64List(_) => "int64",
        Kind::BytesList(_) => "string",
    }
}

/// The values of `feature` in one example, or its default, checked against its
/// type and size.
fn example_values(
    example: &Example,
    index: usize,
    feature: &DenseFeature,
) -> Result<Values, Status> {
    let kind = example
        .features
        .as_ref()
        .and_then(|f| f.feature.get(&feature.key))
        .and_then(|f| f.kind.as_ref());
    let values = match (kind, feature.dtype) {
        (None, _) => {
            return feature.default.clone().ok_or_else(|| {
                Status::invalid_argument(format!(
                    "Name: <unknown>, Feature: {} (data type: {}) is required but could not be found.",
                    feature.key, feature.dtype
                ))
            });
        }
        (Some(Kind::FloatList(l)), DType::Float) => Values::Float(l.value.clone()),
        (Some(Kind::Int64List(l)), DType::Int64) => Values::Int64(l.value.clone()),
        (Some(Kind::BytesList(l)), DType::String) => Values::Bytes(l.value.clone()),
        (Some(kind), expected) => {
            return Err(Status::invalid_argument(format!(
                "Name: <unknown>, Feature: {}.  Data types don't match. Data type: {} but expected type: {expected}",
                feature.key,
                kind_name(kind)
            )));
        }
    };
    if values.len() != feature.count() {
        return Err(Status::invalid_argument(format!(
            "Name: <unknown>, Key: {}, Index: {index}.  Number of {} values != expected.  Values size: {} but output shape: {:?}",
            feature.key,
            feature.dtype,
            values.len(),
            feature.shape
        )));
    }
    Ok(values)
}

fn tensor<T: Datum>(shape: Vec<usize>, values: Vec<T>) -> Result<TractTensor, Status> {
    tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&shape), values)
        .map(TractTensor::from)
        .map_err(|e| Status::internal(format!("building feature tensor: {e}")))
}

/// The `[batch, ...shape]` tensor of `feature` over all examples.
pub fn dense_tensor(examples: &[Example], feature: &DenseFeature) -> Result<TractTensor, Status> {
    let mut shape = Vec::with_capacity(feature.shape.len() + 1);
    shape.push(examples.len());
    shape.extend_from_slice(&feature.shape);
    let total = examples.len() * feature.count();
    match feature.dtype {
        DType::Float => {
            let mut all = Vec::with_capacity(total);
            for (i, e) in examples.iter().enumerate() {
                if let Values::Float(v) = example_values(e, i, feature)? {
                    all.extend(v);
                }
            }
            tensor(shape, all)
        }
        DType::Int64 => {
            let mut all = Vec::with_capacity(total);
            for (i, e) in examples.iter().enumerate() {
                if let Values::Int64(v) = example_values(e, i, feature)? {
                    all.extend(v);
                }
            }
            tensor(shape, all)
        }
        _ => {
            let mut all = Vec::with_capacity(total);
            for (i, e) in examples.iter().enumerate() {
                if let Values::Bytes(v) = example_values(e, i, feature)? {
                    for b in v {
                        all.push(
                            Blob::from_bytes(&b).map_err(|e| Status::internal(e.to_string()))?,
                        );
                    }
                }
            }
            tensor(shape, all)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermesh_tfserving::proto::tensorflow::{Feature, Features, FloatList, Int64List};

    fn example(key: &str, kind: Kind) -> Vec<u8> {
        let feature = Feature { kind: Some(kind) };
        Example {
            features: Some(Features {
                feature: [(key.to_string(), feature)].into_iter().collect(),
            }),
        }
        .encode_to_vec()
    }

    fn x() -> DenseFeature {
        DenseFeature {
            key: "x".into(),
            dtype: DType::Float,
            shape: vec![1],
            default: None,
        }
    }

    #[test]
    fn builds_batch_tensor() {
        let examples = decode(&[
            example("x", Kind::FloatList(FloatList { value: vec![80.0] })),
            example("x", Kind::FloatList(FloatList { value: vec![2.0] })),
        ])
        .unwrap();
        let t = dense_tensor(&examples, &x()).unwrap();
        assert_eq!(t.shape(), &[2, 1]);
        assert_eq!(
            t.to_plain_array_view::<f32>().unwrap().as_slice().unwrap(),
            &[80.0, 2.0]
        );
    }

    #[test]
    fn uses_default_and_reports_missing() {
        let examples = decode(&[example(
            "y",
            Kind::FloatList(FloatList { value: vec![1.0] }),
        )])
        .unwrap();
        let err = dense_tensor(&examples, &x()).unwrap_err();
        assert!(
            err.message
                .contains("Feature: x (data type: float) is required"),
            "{err}"
        );
        let with_default = DenseFeature {
            default: Some(Values::Float(vec![7.0])),
            ..x()
        };
        let t = dense_tensor(&examples, &with_default).unwrap();
        assert_eq!(
            t.to_plain_array_view::<f32>().unwrap().as_slice().unwrap(),
            &[7.0]
        );
    }

    #[test]
    fn rejects_wrong_type_size_and_garbage() {
        let wrong_type =
            decode(&[example("x", Kind::Int64List(Int64List { value: vec![1] }))]).unwrap();
        let err = dense_tensor(&wrong_type, &x()).unwrap_err();
        assert!(err.message.contains("Data types don't match"), "{err}");
        let wrong_size = decode(&[example(
            "x",
            Kind::FloatList(FloatList {
                value: vec![1.0, 2.0],
            }),
        )])
        .unwrap();
        let err = dense_tensor(&wrong_size, &x()).unwrap_err();
        assert!(err.message.contains("Values size: 2"), "{err}");
        let err = decode(&[vec![0xff, 0xff, 0xff]]).unwrap_err();
        assert_eq!(err.code, infermesh_tfserving::Code::InvalidArgument);
    }
}
