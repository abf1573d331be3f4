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

/// A plain-data tensor: copied straight into tract's aligned storage (what
/// [`array`] ends up doing too, without the ndarray in between); a shape that does
/// not cover the data gets [`array`]'s error.
fn plain<T: Datum + Copy>(shape: &[usize], values: Vec<T>) -> Result<TractTensor, Status> {
    if shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) == Some(values.len())
        && let Ok(tensor) = TractTensor::from_shape(shape, &values)
    {
        return Ok(tensor);
    }
    array(shape, values)
}

/// Moves a wire tensor into a tract tensor (no copy for numeric data).
pub fn to_tract(tensor: Tensor) -> Result<TractTensor, Status> {
    let shape = tensor.shape;
    match tensor.data {
        TensorData::F32(v) => plain(&shape, v),
        TensorData::F64(v) => plain(&shape, v),
        TensorData::I8(v) => plain(&shape, v),
        TensorData::I16(v) => plain(&shape, v),
        TensorData::I32(v) => plain(&shape, v),
        TensorData::I64(v) => plain(&shape, v),
        TensorData::U8(v) => plain(&shape, v),
        TensorData::U16(v) => plain(&shape, v),
        TensorData::U32(v) => plain(&shape, v),
        TensorData::U64(v) => plain(&shape, v),
        TensorData::Bool(v) => plain(&shape, v),
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
    // Plain storage in RAM: one copy of the slice, no ndarray view.
    if let Some(plain) = tensor.as_plain_ram()
        && let Ok(slice) = plain.as_slice::<T>()
        && slice.len() == tensor.len()
    {
        return Ok(slice.to_vec());
    }
    values_of_view(tensor)
}

/// The general path: through an ndarray view.
fn values_of_view<T: Datum + Clone>(tensor: &TractTensor) -> Result<Vec<T>, Status> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes of every rank up to 4, with zero-sized and mismatched ones.
    fn shapes() -> Vec<Vec<usize>> {
        let mut out = vec![
            vec![],
            vec![0],
            vec![1],
            vec![3],
            vec![2, 0],
            vec![usize::MAX, 2],
        ];
        for a in 1..4 {
            for b in 1..4 {
                out.push(vec![a, b]);
                out.push(vec![a, b, 2]);
                out.push(vec![2, a, 1, b]);
            }
        }
        out
    }

    fn check<T: Datum + Copy>(make: fn(usize) -> T) {
        for shape in shapes() {
            for len in [0usize, 1, 3, 6, 12, 18, 36] {
                let data: Vec<T> = (0..len).map(make).collect();
                let fast = plain(&shape, data.clone());
                let general = array(&shape, data);
                match (&fast, &general) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a, b, "{shape:?} {len}");
                        let out: Vec<T> = values_of_view(a).unwrap();
                        assert_eq!(values::<T>(a).unwrap(), out, "{shape:?} {len}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b),
                    _ => panic!("{shape:?} {len}: {fast:?} vs {general:?}"),
                }
            }
        }
    }

    #[test]
    fn plain_tensors_match_the_ndarray_path() {
        check(|i| i as f32 * 0.5);
        check(|i| -(i as f64));
        check(|i| i as i8);
        check(|i| i as i16);
        check(|i| i as i32 - 7);
        check(|i| i as i64);
        check(|i| i as u8);
        check(|i| i as u16);
        check(|i| i as u32);
        check(|i| i as u64);
        check(|i| i % 3 == 0);
    }
}
