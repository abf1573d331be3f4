//! gRPC model inspection without decoding tensors: find the `ModelSpec` in the first
//! message of a TF Serving call by reading only the 5-byte frame header and the
//! protobuf prefix up to the end of field 1, and rewrite that field (with the frame
//! length fixed) while every other byte of the message stays verbatim.
//!
//! Field 1 is the `ModelSpec` of `PredictRequest`, `ClassificationRequest`,
//! `RegressionRequest`, `GetModelMetadataRequest` and `GetModelStatusRequest`, and the
//! repeated `InferenceTask` (each holding a `ModelSpec` in its field 1) of
//! `MultiInferenceRequest`. Encoders write field 1 first; when it is not first, the
//! whole first message is buffered (up to the body limit) and scanned.
//!
//! A `ModelSpec` field 1 must occur exactly once: parsers merge repeats, so a later
//! one would change the model the server runs. [`decode`] refuses repeats in what
//! was read; the rest of the stream is checked as it flows by
//! [`crate::grpc_scan::StreamGuard`].

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use infermesh_tfserving::Status;
use infermesh_tfserving::proto::tensorflow::serving::{InferenceTask, ModelSpec};
use prost::Message;

use crate::grpc_scan::{FieldScan, duplicate};

/// gRPC frame header: compressed flag (1 byte) and message length (4 bytes, BE).
pub const FRAME_HEADER: usize = 5;

/// The tag byte of field 1 with wire type LEN.
const FIELD1_LEN: u8 = 0x0A;

/// What the first message's field 1 holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field1 {
    /// A `ModelSpec`.
    ModelSpec,
    /// Repeated `InferenceTask`s (MultiInference).
    Tasks,
}

/// Where field 1 lies in the buffered start of a gRPC stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Locate {
    /// At least this many bytes (from the stream start) are needed to decide.
    Need(usize),
    /// Every field-1 record (tag, length, payload) as byte ranges from the stream
    /// start; empty when the message has no field 1.
    Found(Vec<Range<usize>>),
}

/// The decoded field 1 of the first message, and where it was.
#[derive(Debug)]
pub struct Located {
    pub spec: ModelSpec,
    /// For MultiInference: every task (their specs agree on model and version).
    pub tasks: Vec<InferenceTask>,
    records: Vec<Range<usize>>,
    message_len: usize,
}

pub(crate) fn bad(what: &str) -> Status {
    Status::invalid_argument(format!("Malformed gRPC request: {what}"))
}

/// Reads a varint at `pos`: `Ok(None)` if `buf` ends inside it.
fn varint(buf: &[u8], pos: usize) -> Result<Option<(u64, usize)>, Status> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(pos + i) else {
            return Ok(None);
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

/// The message length from the frame header (`buf` holds at least 5 bytes).
pub(crate) fn message_len(buf: &[u8]) -> Result<usize, Status> {
    match buf[0] {
        0 => {}
        1 => {
            return Err(Status::unimplemented(
                "infermesh cannot route compressed gRPC messages; send them uncompressed",
            ));
        }
        _ => return Err(bad("invalid frame compression flag")),
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    Ok(len as usize)
}

/// Decides where field 1 is, from the first bytes of the stream. A repeated field 1
/// ([`Field1::Tasks`]) needs the whole message.
pub fn locate(buf: &[u8], kind: Field1) -> Result<Locate, Status> {
    if buf.len() < FRAME_HEADER {
        return Ok(Locate::Need(FRAME_HEADER));
    }
    let end = FRAME_HEADER + message_len(buf)?;
    if kind == Field1::ModelSpec && buf.len() == FRAME_HEADER && end > FRAME_HEADER {
        return Ok(Locate::Need(FRAME_HEADER + 1));
    }
    // Fast path: field 1 is the first field; it is all we need.
    if kind == Field1::ModelSpec && buf.get(FRAME_HEADER) == Some(&FIELD1_LEN) {
        let Some((len, n)) = varint(&buf[..end.min(buf.len())], FRAME_HEADER + 1)? else {
            if buf.len() >= end {
                return Err(bad("truncated field 1"));
            }
            return Ok(Locate::Need(buf.len() + 1));
        };
        let record_end = (FRAME_HEADER + 1 + n).saturating_add(len as usize);
        if record_end > end {
            return Err(bad("field 1 overruns the message"));
        }
        if buf.len() < record_end {
            return Ok(Locate::Need(record_end));
        }
        return Ok(Locate::Found(
            std::iter::once(FRAME_HEADER..record_end).collect(),
        ));
    }
    if buf.len() < end {
        return Ok(Locate::Need(end));
    }
    scan(&buf[..end]).map(Locate::Found)
}

/// Scans a whole message (after the frame header) for every field-1 record.
fn scan(frame: &[u8]) -> Result<Vec<Range<usize>>, Status> {
    let mut records = Vec::new();
    let mut pos = FRAME_HEADER;
    while pos < frame.len() {
        let start = pos;
        let (key, n) = varint(frame, pos)?.ok_or_else(|| bad("truncated field tag"))?;
        pos += n;
        let (field, wire) = (key >> 3, key & 7);
        let skip = match wire {
            0 => {
                varint(frame, pos)?
                    .ok_or_else(|| bad("truncated varint"))?
                    .1
            }
            1 => 8,
            5 => 4,
            2 => {
                let (len, n) = varint(frame, pos)?.ok_or_else(|| bad("truncated length"))?;
                n.saturating_add(len as usize)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        pos = pos.saturating_add(skip);
        if pos > frame.len() {
            return Err(bad("field overruns the message"));
        }
        match (field, wire) {
            (1, 2) => records.push(start..pos),
            (1, _) => return Err(bad("field 1 has the wrong wire type")),
            _ => {}
        }
    }
    Ok(records)
}

/// The payload of a field-1 record (after its tag and length).
fn payload(record: &[u8]) -> &[u8] {
    let n = match varint(record, 1) {
        Ok(Some((_, n))) => n,
        _ => 0,
    };
    &record[(1 + n).min(record.len())..]
}

/// Decodes field 1 from the ranges [`locate`] found in `buf`. A `ModelSpec` must
/// occur once, and so must each task's (its field 1): repeats would be merged.
pub fn decode(buf: &[u8], records: Vec<Range<usize>>, kind: Field1) -> Result<Located, Status> {
    let message_len = message_len(buf)?;
    if kind == Field1::ModelSpec && records.len() > 1 {
        return Err(duplicate());
    }
    let mut spec = ModelSpec::default();
    let mut tasks = Vec::new();
    for r in &records {
        let bytes = payload(&buf[r.clone()]);
        match kind {
            Field1::ModelSpec => {
                spec = ModelSpec::decode(bytes)
                    .map_err(|e| bad(&format!("invalid ModelSpec: {e}")))?;
            }
            Field1::Tasks => {
                FieldScan::check(bytes, true)?;
                tasks.push(
                    InferenceTask::decode(bytes)
                        .map_err(|e| bad(&format!("invalid InferenceTask: {e}")))?,
                );
            }
        }
    }
    if kind == Field1::Tasks {
        spec = tasks_spec(&tasks)?;
    }
    Ok(Located {
        spec,
        tasks,
        records,
        message_len,
    })
}

/// The one spec all MultiInference tasks agree on (model name and version choice).
fn tasks_spec(tasks: &[InferenceTask]) -> Result<ModelSpec, Status> {
    let mut specs = tasks
        .iter()
        .map(|t| t.model_spec.clone().unwrap_or_default());
    let Some(first) = specs.next() else {
        return Err(Status::invalid_argument("Inference task list is empty"));
    };
    for s in specs {
        if s.name != first.name || s.version_choice != first.version_choice {
            return Err(Status::invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name and version",
            ));
        }
    }
    Ok(first)
}

impl Located {
    /// The buffered stream start with field 1 replaced by `spec` applied to every
    /// spec it held (MultiInference tasks keep their own `signature_name`); the frame length is fixed, all other bytes kept verbatim. `buf`
    /// is what [`locate`] saw (it may hold more than the first message).
    pub fn rewrite(&self, buf: &[u8], spec: &ModelSpec) -> Result<Bytes, Status> {
        let mut field = BytesMut::new();
        if self.tasks.is_empty() {
            push_record(&mut field, spec);
        } else {
            for task in &self.tasks {
                // The routed name and version; each task keeps its own signature.
                let own = task.model_spec.clone().unwrap_or_default();
                let task = InferenceTask {
                    model_spec: Some(ModelSpec {
                        signature_name: own.signature_name,
                        ..spec.clone()
                    }),
                    ..task.clone()
                };
                push_record(&mut field, &task);
            }
        }
        let removed: usize = self.records.iter().map(|r| r.len()).sum();
        let new_len = (self.message_len - removed).saturating_add(field.len());
        let new_len = u32::try_from(new_len).map_err(|_| bad("message too large"))?;
        let mut out = BytesMut::with_capacity(buf.len() + field.len());
        out.put_u8(0);
        out.put_u32(new_len);
        out.extend_from_slice(&field);
        let mut pos = FRAME_HEADER;
        for r in &self.records {
            out.extend_from_slice(&buf[pos..r.start]);
            pos = r.end;
        }
        out.extend_from_slice(&buf[pos..]);
        Ok(out.freeze())
    }
}

fn push_record(out: &mut BytesMut, message: &impl Message) {
    out.put_u8(FIELD1_LEN);
    prost::encoding::encode_varint(message.encoded_len() as u64, out);
    message.encode_raw(out);
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
