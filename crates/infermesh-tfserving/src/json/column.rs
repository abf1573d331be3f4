//! One input's values as they are read from JSON, accumulated in the signature's
//! element type with TF Serving's checks (`AddValueToTensor`): lossless numbers,
//! wrapping narrow integers, strings or `{"b64": …}` for `DT_STRING`.

use super::predict_request::decode_b64;
use super::value::{Number, Value};
use super::writer::value_to_string;
use crate::tensor::tf_dtype_name;
use crate::{DType, Status, Tensor, TensorData};

/// The values of one input, accumulated in its element type.
pub(super) struct Column {
    dtype: i32,
    data: Option<TensorData>,
}

impl Column {
    pub(super) fn new(dtype: i32) -> Column {
        Column::with_capacity(dtype, 0)
    }

    /// Room for `n` values up front.
    pub(super) fn with_capacity(dtype: i32, n: usize) -> Column {
        let data = DType::from_tf(dtype).and_then(|d| match d {
            DType::Float => Some(TensorData::F32(Vec::with_capacity(n))),
            DType::Double => Some(TensorData::F64(Vec::with_capacity(n))),
            DType::Int32 => Some(TensorData::I32(Vec::with_capacity(n))),
            DType::Int16 => Some(TensorData::I16(Vec::with_capacity(n))),
            DType::Int8 => Some(TensorData::I8(Vec::with_capacity(n))),
            DType::Uint8 => Some(TensorData::U8(Vec::with_capacity(n))),
            DType::String => Some(TensorData::Str(Vec::with_capacity(n))),
            DType::Int64 => Some(TensorData::I64(Vec::with_capacity(n))),
            DType::Bool => Some(TensorData::Bool(Vec::with_capacity(n))),
            DType::Uint32 => Some(TensorData::U32(Vec::with_capacity(n))),
            DType::Uint64 => Some(TensorData::U64(Vec::with_capacity(n))),
            // TF Serving's JSON decoder has no case for uint16.
            DType::Uint16 => None,
        });
        Column { dtype, data }
    }

    fn type_error(&self, v: &Value) -> Status {
        Status::invalid_argument(format!(
            "JSON Value: {} Type: {} is not of expected type: {}",
            value_to_string(v),
            v.type_name(),
            tf_dtype_name(self.dtype)
        ))
    }

    fn lossy(v: &Value, target: &str) -> Status {
        Status::invalid_argument(format!(
            "Cannot convert JSON value: {} to {target} without loss of precision.",
            value_to_string(v)
        ))
    }

    /// Appends one leaf value (`AddValueToTensor`, plus b64 objects for strings).
    pub(super) fn push(&mut self, v: &Value) -> Result<(), Status> {
        let Some(data) = self.data.as_mut() else {
            return Err(Status::unimplemented(format!(
                "Conversion of JSON Value: {} to type: {}",
                value_to_string(v),
                tf_dtype_name(self.dtype)
            )));
        };
        let ok = match (data, v) {
            (TensorData::Str(out), Value::Object(_)) => {
                out.push(decode_b64(v)?);
                true
            }
            (_, Value::Object(_)) => false,
            (TensorData::F32(out), Value::Number(n)) => {
                if !lossless(*n, 24, f64::from(f32::MAX)) {
                    return Err(Column::lossy(v, "float"));
                }
                out.push(n.as_f64() as f32);
                true
            }
            (TensorData::F64(out), Value::Number(n)) => {
                if !lossless(*n, 53, f64::MAX) {
                    return Err(Column::lossy(v, "double"));
                }
                out.push(n.as_f64());
                true
            }
            // Narrow types take any int32 and wrap, as TensorFlow's proto reader does.
            (TensorData::I32(out), _) => v.as_i32().map(|x| out.push(x)).is_some(),
            (TensorData::I16(out), _) => v.as_i32().map(|x| out.push(x as i16)).is_some(),
            (TensorData::I8(out), _) => v.as_i32().map(|x| out.push(x as i8)).is_some(),
            (TensorData::U8(out), _) => v.as_i32().map(|x| out.push(x as u8)).is_some(),
            (TensorData::I64(out), _) => v.as_i64().map(|x| out.push(x)).is_some(),
            (TensorData::U32(out), _) => v.as_u32().map(|x| out.push(x)).is_some(),
            (TensorData::U64(out), _) => v.as_u64().map(|x| out.push(x)).is_some(),
            (TensorData::Bool(out), Value::Bool(b)) => {
                out.push(*b);
                true
            }
            (TensorData::Str(out), Value::String(s)) => {
                out.push(s.clone());
                true
            }
            _ => false,
        };
        if ok { Ok(()) } else { Err(self.type_error(v)) }
    }
}

impl Column {
    /// [`Column::push`] of a number, `None` on any error (its message is the general
    /// path's to write): float columns take it without wrapping it in a `Value`.
    pub(super) fn push_number(&mut self, n: Number) -> Option<()> {
        match self.data.as_mut()? {
            TensorData::F32(out) if lossless(n, 24, f64::from(f32::MAX)) => {
                out.push(n.as_f64() as f32);
                Some(())
            }
            TensorData::F64(out) if lossless(n, 53, f64::MAX) => {
                out.push(n.as_f64());
                Some(())
            }
            _ => self.push(&Value::Number(n)).ok(),
        }
    }
}

/// `IsLosslessDecimal`: integers must fit the mantissa, doubles the range.
fn lossless(n: Number, mantissa_bits: u32, max: f64) -> bool {
    let max_int: u64 = (1u64 << mantissa_bits) - 1;
    match n {
        Number::Double(d) => !d.is_finite() || (-max..=max).contains(&d),
        Number::Int(i) => i.unsigned_abs() <= max_int,
        Number::Uint(u) => u <= max_int,
    }
}

pub(super) fn finish(col: Column, shape: Vec<usize>) -> Result<Tensor, Status> {
    let Some(data) = col.data else {
        return Err(Status::unimplemented(format!(
            "Conversion of JSON to type: {} is not supported",
            tf_dtype_name(col.dtype)
        )));
    };
    Tensor::new(shape, data).map_err(|e| Status::invalid_argument(e.to_string()))
}
