//! Decoding a REST predict body (`{"signature_name"?, "instances" | "inputs"}`) into
//! input tensors, with TF Serving's checks and error messages (`util/json_tensor.cc`).
//! The element type of each input comes from the signature's `TensorInfo`.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::column::{Column, finish};
use super::parse::parse;
use super::predict_fast;
use super::value::Value;
use super::writer::value_to_string;
use crate::{DEFAULT_SIGNATURE, Signature, Status, Tensor, TensorInfo};

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
    /// The signature key, `serving_default` when the request named none (then
    /// borrowed: no copy of the usual name per request).
    pub signature_name: Cow<'static, str>,
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
    if let Some(fast) = predict_fast::scan(body) {
        // A well-formed body of the common shape: no Value tree unless its values do
        // not fit the signature (then the general path below finds the error).
        let raw_name = String::from_utf8_lossy(fast.signature_name).into_owned();
        let signature_name = default_name(&raw_name);
        let signature = find_signature(&signature_name)?;
        let infos = &signature.borrow().inputs;
        if let Some((format, inputs)) = fast.into_inputs(infos) {
            return Ok(PredictJsonRequest {
                signature_name,
                format,
                inputs,
            });
        }
        let doc = parse_object(body)?;
        return decode(&doc, &raw_name, signature_name, infos);
    }
    parse_general(body, find_signature)
}

/// [`parse_predict_request`] without the fast path: the body as a [`Value`] tree.
pub(super) fn parse_general<F, S>(
    body: &[u8],
    find_signature: F,
) -> Result<PredictJsonRequest, Status>
where
    F: FnOnce(&str) -> Result<S, Status>,
    S: Borrow<Signature>,
{
    let doc = parse_object(body)?;
    let raw_name = signature_name(&doc)?;
    let signature_name = default_name(&raw_name);
    let signature = find_signature(&signature_name)?;
    decode(&doc, &raw_name, signature_name, &signature.borrow().inputs)
}

/// The signature key a request names: `serving_default` when it names none.
fn default_name(raw_name: &str) -> Cow<'static, str> {
    if raw_name.is_empty() {
        Cow::Borrowed(DEFAULT_SIGNATURE)
    } else {
        Cow::Owned(raw_name.to_string())
    }
}

/// The general path after the signature lookup: the inputs from the parsed body.
fn decode(
    doc: &Value,
    raw_name: &str,
    signature_name: Cow<'static, str>,
    infos: &BTreeMap<String, TensorInfo>,
) -> Result<PredictJsonRequest, Status> {
    if infos.is_empty() {
        let shown = if raw_name.is_empty() {
            "DEFAULT"
        } else {
            raw_name
        };
        return Err(Status::invalid_argument(format!(
            "Failed to get input map for signature: {shown}"
        )));
    }
    let (format, inputs) = match (doc.member("instances"), doc.member("inputs")) {
        (Some(_), Some(_)) => {
            return Err(format_error(
                doc,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
            ));
        }
        (Some(instances), None) => {
            let Value::Array(items) = instances else {
                return Err(format_error(
                    doc,
                    "Excepting 'instances' to be an list/array",
                ));
            };
            if items.is_empty() {
                return Err(format_error(doc, "No values in 'instances' array"));
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
