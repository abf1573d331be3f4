//! Decoding a REST predict body (`{"signature_name"?, "instances" | "inputs"}`) into
//! input tensors, with TF Serving's checks and error messages (`util/json_tensor.cc`).
//! The element type of each input comes from the signature's `TensorInfo`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::parse::parse;
use super::value::Value;
use super::writer::value_to_string;
use crate::tensor::tf_dtype_name;
use crate::{DEFAULT_SIGNATURE, DType, Signature, Status, Tensor, TensorData, TensorInfo};

/// Which layout a predict request used; the response uses the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFormat {
    /// `"instances"` in, `"predictions"` out.
    Row,
    /// `"inputs"` in, `"outputs"` out.
    Columnar,
}

/// A decoded REST predict request.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictJsonRequest {
    /// The signature key, `serving_default` when the request named none.
    pub signature_name: String,
    pub format: RequestFormat,
    /// Input tensors keyed by the signature's input keys.
    pub inputs: BTreeMap<String, Tensor>,
}

/// Decodes a predict body. `find_signature` is called once with the signature key
/// (already defaulted); see [`crate::json::find_signature`] for TF Serving's lookup.
///
/// The lookup may return the signature borrowed or owned (anything that
/// `Borrow<Signature>`).
pub fn parse_predict_request<F, S>(
    body: &[u8],
    find_signature: F,
) -> Result<PredictJsonRequest, Status>
where
    F: FnOnce(&str) -> Result<S, Status>,
    S: Borrow<Signature>,
{
    let doc = parse_object(body)?;
    let raw_name = signature_name(&doc)?;
    let signature_name = if raw_name.is_empty() {
        DEFAULT_SIGNATURE.to_string()
    } else {
        raw_name.clone()
    };
    let signature = find_signature(&signature_name)?;
    let infos = &signature.borrow().inputs;
    if infos.is_empty() {
        let shown = if raw_name.is_empty() {
            "DEFAULT"
        } else {
            &raw_name
        };
        return Err(Status::invalid_argument(format!(
            "Failed to get input map for signature: {shown}"
        )));
    }
    let (format, inputs) = match (doc.member("instances"), doc.member("inputs")) {
        (Some(_), Some(_)) => {
            return Err(format_error(
                &doc,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
            ));
        }
        (Some(instances), None) => {
            let Value::Array(items) = instances else {
                return Err(format_error(
                    &doc,
                    "Excepting 'instances' to be an list/array",
                ));
            };
            if items.is_empty() {
                return Err(format_error(&doc, "No values in 'instances' array"));
            }
            (RequestFormat::Row, from_instances(items, infos)?)
        }
        (None, Some(inputs)) => (RequestFormat::Columnar, from_inputs(inputs, infos)?),
        (None, None) => {
            return Err(Status::invalid_argument(
                "Missing 'inputs' or 'instances' key",
            ));
        }
    };
    Ok(PredictJsonRequest {
        signature_name,
        format,
        inputs,
    })
}

impl PredictJsonRequest {
    /// Same as [`parse_predict_request`].
    pub fn parse<F, S>(body: &[u8], find_signature: F) -> Result<PredictJsonRequest, Status>
    where
        F: FnOnce(&str) -> Result<S, Status>,
        S: Borrow<Signature>,
    {
        parse_predict_request(body, find_signature)
    }
}

/// Parses a body that must be a JSON object (`JSON Value: … Is not object`).
pub(crate) fn parse_object(body: &[u8]) -> Result<Value, Status> {
    let doc = parse(body)?;
    if !doc.is_object() {
        return Err(format_error(&doc, "Is not object"));
    }
    Ok(doc)
}

/// The optional `signature_name` (must be a string); empty when absent.
pub(crate) fn signature_name(doc: &Value) -> Result<String, Status> {
    match doc.member("signature_name") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(String::from_utf8_lossy(s).into_owned()),
        Some(_) => Err(format_error(
            doc,
            "not formatted correctly. 'signature_name' key must be a string value.",
        )),
    }
}

/// `JSON Value: <value> <message>`.
pub(crate) fn format_error(v: &Value, message: &str) -> Status {
    Status::invalid_argument(format!("JSON Value: {} {message}", value_to_string(v)))
}

/// How a nested status is quoted inside another message (`absl::Status::ToString`).
fn quoted(status: &Status) -> String {
    format!("{}: {}", status.code.name(), status.message)
}

/// Decodes `{"b64": "..."}` (standard alphabet, padding optional).
pub(crate) fn decode_b64(v: &Value) -> Result<Vec<u8>, Status> {
    let (true, Some(Value::String(text))) = (v.is_b64_object(), v.member("b64")) else {
        return Err(Status::invalid_argument(format!(
            "JSON Value: {} not formatted correctly for base64 data",
            value_to_string(v)
        )));
    };
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine
        .decode(text)
        .map_err(|_| Status::invalid_argument("Unable to base64 decode"))
}

/// The values of one input, accumulated in its element type.
struct Column {
    dtype: i32,
    data: Option<TensorData>,
}

impl Column {
    fn new(dtype: i32) -> Column {
        let data = DType::from_tf(dtype).and_then(|d| match d {
            DType::Float => Some(TensorData::F32(Vec::new())),
            DType::Double => Some(TensorData::F64(Vec::new())),
            DType::Int32 => Some(TensorData::I32(Vec::new())),
            DType::Int16 => Some(TensorData::I16(Vec::new())),
            DType::Int8 => Some(TensorData::I8(Vec::new())),
            DType::Uint8 => Some(TensorData::U8(Vec::new())),
            DType::String => Some(TensorData::Str(Vec::new())),
            DType::Int64 => Some(TensorData::I64(Vec::new())),
            DType::Bool => Some(TensorData::Bool(Vec::new())),
            DType::Uint32 => Some(TensorData::U32(Vec::new())),
            DType::Uint64 => Some(TensorData::U64(Vec::new())),
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
    fn push(&mut self, v: &Value) -> Result<(), Status> {
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

/// `IsLosslessDecimal`: integers must fit the mantissa, doubles the range.
fn lossless(n: super::value::Number, mantissa_bits: u32, max: f64) -> bool {
    use super::value::Number;
    let max_int: u64 = (1u64 << mantissa_bits) - 1;
    match n {
        Number::Double(d) => !d.is_finite() || (-max..=max).contains(&d),
        Number::Int(i) => i.unsigned_abs() <= max_int,
        Number::Uint(u) => u <= max_int,
    }
}

/// The shape a nested list implies, following first elements (`GetDenseTensorShape`).
fn dense_shape(v: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Value::Array(items) = cur {
        shape.push(items.len());
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    shape
}

fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}

/// Walks a nested list, checking it is dense with `shape` (`FillTensorProto`).
fn fill(
    v: &Value,
    level: usize,
    shape: &[usize],
    col: &mut Column,
    n: &mut usize,
) -> Result<(), Status> {
    let rank = shape.len();
    let Value::Array(items) = v else {
        if level != rank {
            return Err(Status::invalid_argument(format!(
                "JSON Value: {} found at incorrect level: {} in the JSON DOM. Expected at level: {rank}",
                value_to_string(v),
                level + 1
            )));
        }
        col.push(v)?;
        *n += 1;
        return Ok(());
    };
    if level >= rank {
        return Err(Status::invalid_argument(format!(
            "Encountered list at unexpected level: {level} expected < {rank}"
        )));
    }
    if items.len() != shape[level] {
        return Err(Status::invalid_argument(format!(
            "Encountered list at unexpected size: {} at level: {level} expected size: {}",
            items.len(),
            shape[level]
        )));
    }
    for item in items {
        fill(item, level + 1, shape, col, n)?;
    }
    Ok(())
}

fn finish(col: Column, shape: Vec<usize>) -> Result<Tensor, Status> {
    let Some(data) = col.data else {
        return Err(Status::unimplemented(format!(
            "Conversion of JSON to type: {} is not supported",
            tf_dtype_name(col.dtype)
        )));
    };
    Tensor::new(shape, data).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// One named input of the columnar format.
fn column_tensor(v: &Value, info: &TensorInfo) -> Result<Tensor, Status> {
    let shape = dense_shape(v);
    let mut col = Column::new(info.dtype);
    let mut n = 0;
    fill(v, 0, &shape, &mut col, &mut n)?;
    finish(col, shape)
}

fn from_inputs(
    v: &Value,
    infos: &BTreeMap<String, TensorInfo>,
) -> Result<BTreeMap<String, Tensor>, Status> {
    let mut out = BTreeMap::new();
    if !v.is_object() || v.is_b64_object() {
        let (name, info) = match (infos.len(), infos.iter().next()) {
            (1, Some(first)) => first,
            _ => {
                return Err(Status::invalid_argument(
                    "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map",
                ));
            }
        };
        out.insert(name.clone(), column_tensor(v, info)?);
        return Ok(out);
    }
    for (name, info) in infos {
        let item = v.member(name).ok_or_else(|| {
            Status::invalid_argument(format!("Missing named input: {name} in 'inputs' object."))
        })?;
        out.insert(name.clone(), column_tensor(item, info)?);
    }
    Ok(out)
}

/// One input's values across the instances, with the first instance's shape.
struct Batch {
    col: Column,
    shape: Vec<usize>,
    size: usize,
}

fn add_instance_item(
    v: &Value,
    name: &str,
    infos: &BTreeMap<String, TensorInfo>,
    batches: &mut BTreeMap<String, Batch>,
) -> Result<(), Status> {
    let info = infos.get(name).ok_or_else(|| {
        Status::invalid_argument(format!("JSON object: does not have named input: {name}"))
    })?;
    let shape = dense_shape(v);
    let batch = batches.entry(name.to_string()).or_insert_with(|| Batch {
        col: Column::new(info.dtype),
        shape: Vec::new(),
        size: usize::MAX,
    });
    let mut size = 0;
    fill(v, 0, &shape, &mut batch.col, &mut size)?;
    if batch.size == usize::MAX {
        batch.size = size;
        batch.shape = shape;
    } else if batch.size != size {
        return Err(Status::invalid_argument(format!(
            "Expecting tensor size: {} but got: {size}",
            batch.size
        )));
    } else if batch.shape != shape {
        return Err(Status::invalid_argument(format!(
            "Expecting shape {} but got: {}",
            shape_string(&batch.shape),
            shape_string(&shape)
        )));
    }
    Ok(())
}

fn is_element_object(v: &Value) -> bool {
    v.is_object() && !v.is_b64_object()
}

fn from_instances(
    items: &[Value],
    infos: &BTreeMap<String, TensorInfo>,
) -> Result<BTreeMap<String, Tensor>, Status> {
    let first = &items[0];
    if !first.is_object() && infos.len() > 1 {
        return Err(Status::invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map",
        ));
    }
    let objects = is_element_object(first);
    let names: BTreeSet<&str> = infos.keys().map(String::as_str).collect();
    let mut batches = BTreeMap::new();
    for (i, elem) in items.iter().enumerate() {
        if objects {
            let members = match elem {
                Value::Object(members) if !elem.is_b64_object() => members,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "Expecting object but got list at item {i} of input list"
                    )));
                }
            };
            let mut keys = BTreeSet::new();
            for (key, value) in members {
                let key = String::from_utf8_lossy(key);
                add_instance_item(value, &key, infos, &mut batches).map_err(|e| {
                    Status::invalid_argument(format!(
                        "Failed to process element: {i} key: {key} of 'instances' list. Error: {}",
                        quoted(&e)
                    ))
                })?;
                keys.insert(key);
            }
            if keys.iter().map(|k| k.as_ref()).ne(names.iter().copied()) {
                let joined: Vec<&str> = names.iter().copied().collect();
                return Err(Status::invalid_argument(format!(
                    "Failed to process element: {i} of 'instances' list. JSON object: {} must only have keys: {}",
                    value_to_string(elem),
                    joined.join(",")
                )));
            }
        } else {
            if is_element_object(elem) {
                return Err(Status::invalid_argument(format!(
                    "Expecting value/list but got object at item {i} of input list"
                )));
            }
            let name = infos.keys().next().map(String::as_str).unwrap_or_default();
            add_instance_item(elem, name, infos, &mut batches).map_err(|e| {
                Status::invalid_argument(format!(
                    "Failed to process element: {i} of 'instances' list. Error: {}",
                    quoted(&e)
                ))
            })?;
        }
    }
    let mut out = BTreeMap::new();
    for (name, batch) in batches {
        let mut shape = Vec::with_capacity(batch.shape.len() + 1);
        shape.push(items.len());
        shape.extend_from_slice(&batch.shape);
        out.insert(name, finish(batch.col, shape)?);
    }
    Ok(out)
}

/// TF Serving's REST signature lookup: empty means `serving_default`; unknown is
/// `Serving signature name: "X" not found in signature def` (INVALID_ARGUMENT).
pub fn find_signature<'a>(
    signatures: &'a BTreeMap<String, Signature>,
    name: &str,
) -> Result<&'a Signature, Status> {
    let name = if name.is_empty() {
        DEFAULT_SIGNATURE
    } else {
        name
    };
    signatures
        .get(name)
        .ok_or_else(|| crate::messages::rest_signature_not_found(name))
}

#[cfg(test)]
#[path = "predict_request_tests.rs"]
mod tests;
