//! The tensor value that travels between the wire formats (REST JSON, gRPC
//! `TensorProto`) and the inference engine. Row-major, dense, owned.

use std::fmt;

/// TensorFlow `DataType` numbers (`tensorflow/core/framework/types.proto`) for the
/// element types infermesh can carry as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Float,
    Double,
    Int32,
    Uint8,
    Int16,
    Int8,
    String,
    Int64,
    Bool,
    Uint16,
    Uint32,
    Uint64,
}

impl DType {
    /// The `tensorflow.DataType` enum number.
    pub fn to_tf(self) -> i32 {
        match self {
            DType::Float => 1,
            DType::Double => 2,
            DType::Int32 => 3,
            DType::Uint8 => 4,
            DType::Int16 => 5,
            DType::Int8 => 6,
            DType::String => 7,
            DType::Int64 => 9,
            DType::Bool => 10,
            DType::Uint16 => 17,
            DType::Uint32 => 22,
            DType::Uint64 => 23,
        }
    }

    /// Maps a `tensorflow.DataType` number (a `_REF` type counts as its base type).
    pub fn from_tf(value: i32) -> Option<DType> {
        let base = if value > 100 { value - 100 } else { value };
        Some(match base {
            1 => DType::Float,
            2 => DType::Double,
            3 => DType::Int32,
            4 => DType::Uint8,
            5 => DType::Int16,
            6 => DType::Int8,
            7 => DType::String,
            9 => DType::Int64,
            10 => DType::Bool,
            17 => DType::Uint16,
            22 => DType::Uint32,
            23 => DType::Uint64,
            _ => return None,
        })
    }

    /// TensorFlow's lower-case type name, as used in its error messages (`int32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Float => "float",
            DType::Double => "double",
            DType::Int32 => "int32",
            DType::Uint8 => "uint8",
            DType::Int16 => "int16",
            DType::Int8 => "int8",
            DType::String => "string",
            DType::Int64 => "int64",
            DType::Bool => "bool",
            DType::Uint16 => "uint16",
            DType::Uint32 => "uint32",
            DType::Uint64 => "uint64",
        }
    }
}

/// The `DT_*` name of any `tensorflow.DataType` number, as proto3 JSON writes it.
pub fn tf_dtype_enum_name(value: i32) -> &'static str {
    const NAMES: [&str; 34] = [
        "DT_INVALID",
        "DT_FLOAT",
        "DT_DOUBLE",
        "DT_INT32",
        "DT_UINT8",
        "DT_INT16",
        "DT_INT8",
        "DT_STRING",
        "DT_COMPLEX64",
        "DT_INT64",
        "DT_BOOL",
        "DT_QINT8",
        "DT_QUINT8",
        "DT_QINT32",
        "DT_BFLOAT16",
        "DT_QINT16",
        "DT_QUINT16",
        "DT_UINT16",
        "DT_COMPLEX128",
        "DT_HALF",
        "DT_RESOURCE",
        "DT_VARIANT",
        "DT_UINT32",
        "DT_UINT64",
        "DT_FLOAT8_E5M2",
        "DT_FLOAT8_E4M3FN",
        "DT_FLOAT8_E4M3FNUZ",
        "DT_FLOAT8_E4M3B11FNUZ",
        "DT_FLOAT8_E5M2FNUZ",
        "DT_INT4",
        "DT_UINT4",
        "DT_INT2",
        "DT_UINT2",
        "DT_FLOAT4_E2M1FN",
    ];
    const REF_NAMES: [&str; 24] = [
        "DT_INVALID",
        "DT_FLOAT_REF",
        "DT_DOUBLE_REF",
        "DT_INT32_REF",
        "DT_UINT8_REF",
        "DT_INT16_REF",
        "DT_INT8_REF",
        "DT_STRING_REF",
        "DT_COMPLEX64_REF",
        "DT_INT64_REF",
        "DT_BOOL_REF",
        "DT_QINT8_REF",
        "DT_QUINT8_REF",
        "DT_QINT32_REF",
        "DT_BFLOAT16_REF",
        "DT_QINT16_REF",
        "DT_QUINT16_REF",
        "DT_UINT16_REF",
        "DT_COMPLEX128_REF",
        "DT_HALF_REF",
        "DT_RESOURCE_REF",
        "DT_VARIANT_REF",
        "DT_UINT32_REF",
        "DT_UINT64_REF",
    ];
    match value {
        0..=33 => NAMES[value as usize],
        101..=123 => REF_NAMES[(value - 100) as usize],
        _ => "DT_INVALID",
    }
}

/// TensorFlow's `DataTypeString` for any `tensorflow.DataType` number (`float`,
/// `half`, `float_ref`, …), as its error messages print types.
pub fn tf_dtype_name(value: i32) -> String {
    const NAMES: [&str; 34] = [
        "INVALID",
        "float",
        "double",
        "int32",
        "uint8",
        "int16",
        "int8",
        "string",
        "complex64",
        "int64",
        "bool",
        "qint8",
        "quint8",
        "qint32",
        "bfloat16",
        "qint16",
        "quint16",
        "uint16",
        "complex128",
        "half",
        "resource",
        "variant",
        "uint32",
        "uint64",
        "float8_e5m2",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e4m3b11fnuz",
        "float8_e5m2fnuz",
        "int4",
        "uint4",
        "int2",
        "uint2",
        "float4_e2m1fn",
    ];
    match value {
        0..=33 => NAMES[value as usize].to_string(),
        101..=133 => format!("{}_ref", NAMES[(value - 100) as usize]),
        _ => format!("unknown dtype enum ({value})"),
    }
}

/// The elements of a tensor, one vector per element type.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    /// `DT_STRING`: arbitrary bytes per element.
    Str(Vec<Vec<u8>>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::Float,
            TensorData::F64(_) => DType::Double,
            TensorData::I8(_) => DType::Int8,
            TensorData::I16(_) => DType::Int16,
            TensorData::I32(_) => DType::Int32,
            TensorData::I64(_) => DType::Int64,
            TensorData::U8(_) => DType::Uint8,
            TensorData::U16(_) => DType::Uint16,
            TensorData::U32(_) => DType::Uint32,
            TensorData::U64(_) => DType::Uint64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::Str(_) => DType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// A shape whose element count does not match the data it was given.
#[derive(Debug, thiserror::Error)]
#[error("tensor shape {shape:?} holds {expected} elements, data has {actual}")]
pub struct ShapeMismatch {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub actual: usize,
}

impl Tensor {
    /// Builds a tensor, checking that the shape covers exactly the data.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, ShapeMismatch> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(ShapeMismatch {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_numbers_round_trip() {
        for n in 0..130 {
            if let Some(d) = DType::from_tf(n) {
                assert_eq!(d.to_tf(), if n > 100 { n - 100 } else { n });
            }
        }
        assert_eq!(tf_dtype_enum_name(1), "DT_FLOAT");
        assert_eq!(tf_dtype_enum_name(7), "DT_STRING");
        assert_eq!(tf_dtype_enum_name(101), "DT_FLOAT_REF");
    }

    #[test]
    fn shape_must_cover_data() {
        assert!(Tensor::new(vec![2, 2], TensorData::F32(vec![1.0; 4])).is_ok());
        let err = Tensor::new(vec![3], TensorData::F32(vec![1.0; 4])).unwrap_err();
        assert_eq!(err.expected, 3);
    }
}
