//! `tensorflow.TensorProto` ↔ [`Tensor`], and [`Signature`] ↔ `tensorflow.SignatureDef`.
//!
//! Reading accepts both encodings TensorFlow allows: little-endian `tensor_content`
//! and the typed `*_val` fields (with the single-value broadcast: one value fills the
//! whole shape). Writing uses the typed fields (`float_val`, `int_val`, …), as TF
//! Serving's predict responses do.

use std::collections::BTreeMap;

use crate::proto::tensorflow as pb;
use crate::tensor::tf_dtype_name;
use crate::{DType, Signature, Status, Tensor, TensorData, TensorInfo};

/// A single typed value may fill at most this many elements: a few bytes of request
/// must not make the server allocate gigabytes.
pub const MAX_BROADCAST_ELEMENTS: usize = 1 << 26;

/// Reads a `TensorProto` into a dense tensor.
pub fn tensor_from_proto(proto: &pb::TensorProto) -> Result<Tensor, Status> {
    let dtype = DType::from_tf(proto.dtype).ok_or_else(|| {
        Status::invalid_argument(format!(
            "Unsupported tensor dtype: {}",
            tf_dtype_name(proto.dtype)
        ))
    })?;
    let shape = shape_from_proto(proto.tensor_shape.as_ref())?;
    let count = element_count(&shape)?;
    let data = if !proto.tensor_content.is_empty() {
        from_content(dtype, &proto.tensor_content, count)?
    } else {
        from_typed_fields(dtype, proto, count)?
    };
    Ok(Tensor { shape, data })
}

/// Writes a tensor as TF Serving does in responses: dtype, shape and the typed field.
pub fn tensor_to_proto(tensor: &Tensor) -> pb::TensorProto {
    let mut proto = pb::TensorProto {
        dtype: tensor.dtype().to_tf(),
        tensor_shape: Some(shape_to_proto(&tensor.shape)),
        ..Default::default()
    };
    match &tensor.data {
        TensorData::F32(v) => proto.float_val = v.clone(),
        TensorData::F64(v) => proto.double_val = v.clone(),
        TensorData::I8(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I16(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I32(v) => proto.int_val = v.clone(),
        TensorData::U8(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::U16(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I64(v) => proto.int64_val = v.clone(),
        TensorData::U32(v) => proto.uint32_val = v.clone(),
        TensorData::U64(v) => proto.uint64_val = v.clone(),
        TensorData::Bool(v) => proto.bool_val = v.clone(),
        TensorData::Str(v) => proto.string_val = v.clone(),
    }
    proto
}

/// A known, non-negative shape from a `TensorShapeProto` (absent means a scalar).
pub fn shape_from_proto(shape: Option<&pb::TensorShapeProto>) -> Result<Vec<usize>, Status> {
    let Some(shape) = shape else {
        return Ok(Vec::new());
    };
    if shape.unknown_rank {
        return Err(Status::invalid_argument(
            "Tensor shape must be fully defined, got unknown rank",
        ));
    }
    shape
        .dim
        .iter()
        .map(|d| {
            usize::try_from(d.size).map_err(|_| {
                Status::invalid_argument(format!(
                    "Tensor shape must be fully defined, got dimension of size {}",
                    d.size
                ))
            })
        })
        .collect()
}

/// A concrete shape as a `TensorShapeProto` (dimension names left empty).
pub fn shape_to_proto(shape: &[usize]) -> pb::TensorShapeProto {
    pb::TensorShapeProto {
        dim: shape
            .iter()
            .map(|&size| pb::tensor_shape_proto::Dim {
                size: i64::try_from(size).unwrap_or(i64::MAX),
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// A signature shape (`-1` unknown, `None` unknown rank) as a `TensorShapeProto`.
pub fn partial_shape_to_proto(shape: Option<&[i64]>) -> pb::TensorShapeProto {
    match shape {
        None => pb::TensorShapeProto {
            dim: Vec::new(),
            unknown_rank: true,
        },
        Some(dims) => pb::TensorShapeProto {
            dim: dims
                .iter()
                .map(|&size| pb::tensor_shape_proto::Dim {
                    size,
                    name: String::new(),
                })
                .collect(),
            unknown_rank: false,
        },
    }
}

/// A signature input/output as `tensorflow.TensorInfo`.
pub fn tensor_info_to_proto(info: &TensorInfo) -> pb::TensorInfo {
    pb::TensorInfo {
        encoding: Some(pb::tensor_info::Encoding::Name(info.name.clone())),
        dtype: info.dtype,
        tensor_shape: Some(partial_shape_to_proto(info.shape.as_deref())),
    }
}

/// A dense `tensorflow.TensorInfo` as a [`TensorInfo`] (sparse/composite ones have no
/// single tensor name and are refused).
pub fn tensor_info_from_proto(info: &pb::TensorInfo) -> Result<TensorInfo, Status> {
    let name = match &info.encoding {
        Some(pb::tensor_info::Encoding::Name(name)) => name.clone(),
        _ => {
            return Err(Status::unimplemented(
                "Only dense TensorInfo (with a tensor name) is supported",
            ));
        }
    };
    let shape = match &info.tensor_shape {
        None => None,
        Some(s) if s.unknown_rank => None,
        Some(s) => Some(s.dim.iter().map(|d| d.size).collect()),
    };
    Ok(TensorInfo {
        name,
        dtype: info.dtype,
        shape,
    })
}

/// A [`Signature`] as `tensorflow.SignatureDef` (no defaults).
pub fn signature_to_proto(signature: &Signature) -> pb::SignatureDef {
    let map = |m: &BTreeMap<String, TensorInfo>| {
        m.iter()
            .map(|(k, v)| (k.clone(), tensor_info_to_proto(v)))
            .collect()
    };
    pb::SignatureDef {
        inputs: map(&signature.inputs),
        outputs: map(&signature.outputs),
        method_name: signature.method_name.clone(),
        defaults: Default::default(),
    }
}

/// A `tensorflow.SignatureDef` as a [`Signature`] (defaults are dropped).
pub fn signature_from_proto(def: &pb::SignatureDef) -> Result<Signature, Status> {
    let map = |m: &std::collections::HashMap<String, pb::TensorInfo>| {
        m.iter()
            .map(|(k, v)| Ok((k.clone(), tensor_info_from_proto(v)?)))
            .collect::<Result<BTreeMap<_, _>, Status>>()
    };
    Ok(Signature {
        method_name: def.method_name.clone(),
        inputs: map(&def.inputs)?,
        outputs: map(&def.outputs)?,
    })
}

fn element_count(shape: &[usize]) -> Result<usize, Status> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Status::invalid_argument(format!("Tensor shape {shape:?} is too large")))
}

fn size_error(dtype: DType, field: &str, got: usize, want: usize) -> Status {
    Status::invalid_argument(format!(
        "TensorProto of type {} has {got} values in {field} but its shape holds {want}",
        dtype.name()
    ))
}

/// Values of a typed field: exact count, or one value broadcast over the shape.
fn expand<T: Clone, U: Clone>(
    values: &[T],
    count: usize,
    dtype: DType,
    field: &str,
    convert: impl Fn(T) -> U,
) -> Result<Vec<U>, Status> {
    if values.len() == count {
        return Ok(values.iter().cloned().map(convert).collect());
    }
    if values.len() == 1 && count == 0 {
        return Ok(Vec::new());
    }
    if values.len() == 1 && count > 1 {
        if count > MAX_BROADCAST_ELEMENTS {
            return Err(Status::invalid_argument(format!(
                "TensorProto of type {} broadcasts one value over {count} elements (limit {MAX_BROADCAST_ELEMENTS})",
                dtype.name()
            )));
        }
        return Ok(vec![convert(values[0].clone()); count]);
    }
    Err(size_error(dtype, field, values.len(), count))
}

fn from_typed_fields(dtype: DType, p: &pb::TensorProto, n: usize) -> Result<TensorData, Status> {
    // Wrapping casts for narrow integers, as TensorFlow's own proto reader does.
    Ok(match dtype {
        DType::Float => TensorData::F32(expand(&p.float_val, n, dtype, "float_val", |x| x)?),
        DType::Double => TensorData::F64(expand(&p.double_val, n, dtype, "double_val", |x| x)?),
        DType::Int32 => TensorData::I32(expand(&p.int_val, n, dtype, "int_val", |x| x)?),
        DType::Int16 => TensorData::I16(expand(&p.int_val, n, dtype, "int_val", |x| x as i16)?),
        DType::Int8 => TensorData::I8(expand(&p.int_val, n, dtype, "int_val", |x| x as i8)?),
        DType::Uint8 => TensorData::U8(expand(&p.int_val, n, dtype, "int_val", |x| x as u8)?),
        DType::Uint16 => TensorData::U16(expand(&p.int_val, n, dtype, "int_val", |x| x as u16)?),
        DType::Int64 => TensorData::I64(expand(&p.int64_val, n, dtype, "int64_val", |x| x)?),
        DType::Uint32 => TensorData::U32(expand(&p.uint32_val, n, dtype, "uint32_val", |x| x)?),
        DType::Uint64 => TensorData::U64(expand(&p.uint64_val, n, dtype, "uint64_val", |x| x)?),
        DType::Bool => TensorData::Bool(expand(&p.bool_val, n, dtype, "bool_val", |x| x)?),
        DType::String => TensorData::Str(expand(&p.string_val, n, dtype, "string_val", |x| x)?),
    })
}

fn chunks<const W: usize, T>(
    bytes: &[u8],
    count: usize,
    dtype: DType,
    f: impl Fn([u8; W]) -> T,
) -> Result<Vec<T>, Status> {
    if Some(bytes.len()) != count.checked_mul(W) {
        return Err(Status::invalid_argument(format!(
            "TensorProto of type {} has {} bytes of tensor_content but its shape needs {count} x {W}",
            dtype.name(),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(W)
        .map(|c| {
            let mut a = [0u8; W];
            a.copy_from_slice(c);
            f(a)
        })
        .collect())
}

fn from_content(dtype: DType, b: &[u8], n: usize) -> Result<TensorData, Status> {
    Ok(match dtype {
        DType::Float => TensorData::F32(chunks(b, n, dtype, f32::from_le_bytes)?),
        DType::Double => TensorData::F64(chunks(b, n, dtype, f64::from_le_bytes)?),
        DType::Int32 => TensorData::I32(chunks(b, n, dtype, i32::from_le_bytes)?),
        DType::Int16 => TensorData::I16(chunks(b, n, dtype, i16::from_le_bytes)?),
        DType::Int8 => TensorData::I8(chunks(b, n, dtype, i8::from_le_bytes)?),
        DType::Uint8 => TensorData::U8(chunks(b, n, dtype, u8::from_le_bytes)?),
        DType::Uint16 => TensorData::U16(chunks(b, n, dtype, u16::from_le_bytes)?),
        DType::Int64 => TensorData::I64(chunks(b, n, dtype, i64::from_le_bytes)?),
        DType::Uint32 => TensorData::U32(chunks(b, n, dtype, u32::from_le_bytes)?),
        DType::Uint64 => TensorData::U64(chunks(b, n, dtype, u64::from_le_bytes)?),
        DType::Bool => TensorData::Bool(chunks(b, n, dtype, |[x]: [u8; 1]| x != 0)?),
        DType::String => {
            return Err(Status::unimplemented(
                "DT_STRING tensors in tensor_content are not supported; use string_val",
            ));
        }
    })
}

#[cfg(test)]
#[path = "tensor_proto_tests.rs"]
mod tests;
