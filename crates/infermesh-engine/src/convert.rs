//! Conversions between the wire tensor (`infermesh_tfserving::Tensor`) and tract's
//! tensor, and between TensorFlow `DataType` numbers and tract's `DatumType`.

use infermesh_tfserving::{DType, Status, Tensor, TensorData};
use tract_core::internal::{Blob, Datum, DatumType, tract_ndarray};

type TractTensor = tract_core::internal::Tensor;

/// tract's element type for a wire dtype.
pub fn datum_type(dtype: DType) -> DatumType {
    match dtype {
        DType::Float => DatumType::F32,
        DType::Double => DatumType::F64,
        DType::Int32 => DatumType::I32,
        DType::Uint8 => DatumType::U8,
        DType::Int16 => DatumType::I16,
        DType::Int8 => DatumType::I8,
        DType::String => DatumType::Blob,
        DType::Int64 => DatumType::I64,
        DType::Bool => DatumType::Bool,
        DType::Uint16 => DatumType::U16,
        DType::Uint32 => DatumType::U32,
        DType::Uint64 => DatumType::U64,
    }
}

/// The wire dtype for a tract element type, when there is one.
pub fn dtype_of(datum: DatumType) -> Option<DType> {
    Some(match datum {
        DatumType::F32 => DType::Float,
        DatumType::F64 => DType::Double,
        DatumType::I32 => DType::Int32,
        DatumType::U8 => DType::Uint8,
        DatumType::I16 => DType::Int16,
        DatumType::I8 => DType::Int8,
        DatumType::Blob | DatumType::String => DType::String,
        DatumType::I64 | DatumType::TDim => DType::Int64,
        DatumType::Bool => DType::Bool,
        DatumType::U16 => DType::Uint16,
        DatumType::U32 => DType::Uint32,
        DatumType::U64 => DType::Uint64,
        _ => return None,
    })
}

fn array<T: Datum>(shape: &[usize], values: Vec<T>) -> Result<TractTensor, Status> {
    tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), values)
        .map(TractTensor::from)
        .map_err(|e| Status::invalid_argument(format!("tensor of shape {shape:?}: {e}")))
}

/// Moves a wire tensor into a tract tensor (no copy for numeric data).
pub fn to_tract(tensor: Tensor) -> Result<TractTensor, Status> {
    let shape = tensor.shape;
    match tensor.data {
        TensorData::F32(v) => array(&shape, v),
        TensorData::F64(v) => array(&shape, v),
        TensorData::I8(v) => array(&shape, v),
        TensorData::I16(v) => array(&shape, v),
        TensorData::I32(v) => array(&shape, v),
        TensorData::I64(v) => array(&shape, v),
        TensorData::U8(v) => array(&shape, v),
        TensorData::U16(v) => array(&shape, v),
        TensorData::U32(v) => array(&shape, v),
        TensorData::U64(v) => array(&shape, v),
        TensorData::Bool(v) => array(&shape, v),
        TensorData::Str(v) => {
            let blobs = v
                .iter()
                .map(|s| Blob::from_bytes(s))
                .collect::<Result<Vec<Blob>, _>>()
                .map_err(|e| Status::internal(format!("string tensor: {e}")))?;
            array(&shape, blobs)
        }
    }
}

fn values<T: Datum + Clone>(tensor: &TractTensor) -> Result<Vec<T>, Status> {
    let view = tensor
        .to_plain_array_view::<T>()
        .map_err(|e| Status::internal(format!("reading output tensor: {e}")))?;
    Ok(match view.as_slice() {
        Some(slice) => slice.to_vec(),
        None => view.iter().cloned().collect(),
    })
}

/// Copies a tract tensor out into a wire tensor.
pub fn from_tract(tensor: &TractTensor) -> Result<Tensor, Status> {
    let shape = tensor.shape().to_vec();
    let data = match tensor.datum_type() {
        DatumType::F32 => TensorData::F32(values(tensor)?),
        DatumType::F64 => TensorData::F64(values(tensor)?),
        DatumType::I8 => TensorData::I8(values(tensor)?),
        DatumType::I16 => TensorData::I16(values(tensor)?),
        DatumType::I32 => TensorData::I32(values(tensor)?),
        DatumType::I64 => TensorData::I64(values(tensor)?),
        DatumType::U8 => TensorData::U8(values(tensor)?),
        DatumType::U16 => TensorData::U16(values(tensor)?),
        DatumType::U32 => TensorData::U32(values(tensor)?),
        DatumType::U64 => TensorData::U64(values(tensor)?),
        DatumType::Bool => TensorData::Bool(values(tensor)?),
        DatumType::Blob => TensorData::Str(
            values::<Blob>(tensor)?
                .iter()
                .map(|b| b.as_bytes().to_vec())
                .collect(),
        ),
        DatumType::String => TensorData::Str(
            values::<String>(tensor)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        DatumType::TDim => {
            let cast = tensor
                .cast_to::<i64>()
                .map_err(|e| Status::internal(format!("output dimension tensor: {e}")))?;
            TensorData::I64(values(&cast)?)
        }
        other => {
            return Err(Status::internal(format!(
                "output element type {other:?} cannot be returned"
            )));
        }
    };
    Tensor::new(shape, data).map_err(|e| Status::internal(e.to_string()))
}
