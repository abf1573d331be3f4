//! The request-stream guard for unary TF Serving gRPC calls: checks, chunk by chunk
//! and without buffering, that the stream is exactly one well-formed message whose
//! `ModelSpec` (field 1) occurs once.
//!
//! Protobuf parsers *merge* repeated occurrences of an embedded-message field, so a
//! second `model_spec` appended after the one the proxy read would make the model
//! server run another model than the one routed and authorized. [`StreamGuard`]
//! therefore follows the top-level fields of the message to its end — tag varint,
//! wire type, then the value: varints and fixed32/fixed64 by size, length-delimited
//! payloads (the tensors) skipped by count — across any chunk boundaries, and fails
//! on a second field 1, on groups or invalid wire types, on a field that overruns
//! the length the frame header declares, on a stream that ends inside the message,
//! and on any byte of a second message. The caller stops forwarding at the failing
//! chunk, so the model server never receives a complete offending message.

use infermesh_tfserving::Status;

use crate::grpc::{FRAME_HEADER, Field1, bad, message_len};

/// The message clients get when a request carries `model_spec` more than once.
pub const DUPLICATE_MODEL_SPEC: &str = "duplicate model_spec in request";

/// Longest varint of a tag (field number and wire type fit in 32 bits).
const TAG_MAX_BYTES: u32 = 5;
/// Longest varint of a length (protobuf sizes are below 2 GiB).
const LEN_MAX_BYTES: u32 = 5;
/// Longest varint value.
const VARINT_MAX_BYTES: u32 = 10;

/// Follows the top-level fields of one protobuf message of known length, fed in
/// pieces of any size.
#[derive(Clone, Debug)]
pub struct FieldScan {
    /// Bytes of the message not yet fed.
    left: u64,
    step: Step,
    /// How often field 1 occurred so far.
    field1: u32,
    /// Whether field 1 may occur at most once (a `ModelSpec`; MultiInference tasks
    /// repeat).
    single: bool,
}

/// Where the scan is inside the current field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Reading a tag varint: the value so far and the bytes read.
    Tag(u64, u32),
    /// Skipping a varint value: the bytes read.
    Varint(u32),
    /// Reading a length varint: the value so far and the bytes read.
    Len(u64, u32),
    /// Skipping this many bytes of a fixed-size or length-delimited value.
    Skip(u64),
}

/// At a field boundary: nothing of the next field read yet.
const BOUNDARY: Step = Step::Tag(0, 0);

/// Checks a unary request stream: one frame, one message, field 1 per [`Field1`].
#[derive(Clone, Debug)]
pub struct StreamGuard {
    kind: Field1,
    phase: Phase,
}

#[derive(Clone, Debug)]
enum Phase {
    /// Reading the 5-byte frame header.
    Header([u8; FRAME_HEADER], usize),
    /// Inside the message.
    Message(FieldScan),
    /// The one message is complete; the stream must end.
    Done,
}

/// The status for a second `model_spec`.
pub fn duplicate() -> Status {
    Status::invalid_argument(DUPLICATE_MODEL_SPEC)
}

impl FieldScan {
    /// A scan of a message of `len` bytes; `single`: field 1 at most once.
    pub fn new(len: u64, single: bool) -> FieldScan {
        FieldScan {
            left: len,
            step: BOUNDARY,
            field1: 0,
            single,
        }
    }

    /// Checks a whole message at once.
    pub fn check(message: &[u8], single: bool) -> Result<(), Status> {
        let mut scan = FieldScan::new(message.len() as u64, single);
        scan.feed(message)?;
        Ok(())
    }

    /// Whether every byte of the message was fed (and it ended on a field boundary).
    pub fn is_complete(&self) -> bool {
        self.left == 0
    }

    /// Feeds the next bytes; returns how many belonged to the message (all of
    /// `bytes`, or fewer when the message ends inside them).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, Status> {
        let mut pos = 0;
        while pos < bytes.len() && self.left > 0 {
            if let Step::Skip(n) = self.step {
                // n <= left always: it was checked when the size became known.
                let take = n.min((bytes.len() - pos) as u64);
                pos += take as usize;
                self.left -= take;
                self.step = if take == n {
                    BOUNDARY
                } else {
                    Step::Skip(n - take)
                };
            } else {
                let byte = bytes[pos];
                pos += 1;
                self.left -= 1;
                self.byte(byte)?;
            }
        }
        if self.left == 0 && self.step != BOUNDARY {
            return Err(bad("a field overruns the message"));
        }
        Ok(pos)
    }

    /// One byte of a tag, a varint value or a length.
    fn byte(&mut self, byte: u8) -> Result<(), Status> {
        let more = byte & 0x80 != 0;
        let bits = u64::from(byte & 0x7f);
        self.step = match self.step {
            Step::Tag(value, n) => {
                let value = value | bits << (7 * n);
                if more {
                    if n + 1 == TAG_MAX_BYTES {
                        return Err(bad("invalid field tag"));
                    }
                    Step::Tag(value, n + 1)
                } else {
                    return self.field(value);
                }
            }
            Step::Varint(n) => match (more, n + 1 == VARINT_MAX_BYTES) {
                (false, _) => BOUNDARY,
                (true, false) => Step::Varint(n + 1),
                (true, true) => return Err(bad("varint longer than 10 bytes")),
            },
            Step::Len(value, n) => {
                let value = value | bits << (7 * n);
                if more {
                    if n + 1 == LEN_MAX_BYTES {
                        return Err(bad("invalid field length"));
                    }
                    Step::Len(value, n + 1)
                } else {
                    self.value(value)?
                }
            }
            Step::Skip(_) => unreachable!("skipped bytes are not read one by one"),
        };
        Ok(())
    }

    /// A complete tag: checks the field and sets up reading its value.
    fn field(&mut self, tag: u64) -> Result<(), Status> {
        if tag > u64::from(u32::MAX) {
            return Err(bad("invalid field tag"));
        }
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err(bad("field number 0"));
        }
        if field == 1 {
            if wire != 2 {
                return Err(bad("field 1 has the wrong wire type"));
            }
            self.field1 += 1;
            if self.single && self.field1 > 1 {
                return Err(duplicate());
            }
        }
        self.step = match wire {
            0 => Step::Varint(0),
            1 => self.value(8)?,
            2 => Step::Len(0, 0),
            5 => self.value(4)?,
            3 | 4 => return Err(bad("groups are not supported")),
            _ => return Err(bad("invalid wire type")),
        };
        Ok(())
    }

    /// A value of `size` bytes follows: it must fit in the message.
    fn value(&self, size: u64) -> Result<Step, Status> {
        if size > self.left {
            return Err(bad("a field overruns the message"));
        }
        Ok(if size == 0 {
            BOUNDARY
        } else {
            Step::Skip(size)
        })
    }
}

impl StreamGuard {
    /// A guard from the first byte of the request stream (the frame header).
    pub fn new(kind: Field1) -> StreamGuard {
        StreamGuard {
            kind,
            phase: Phase::Header([0; FRAME_HEADER], 0),
        }
    }

    /// Feeds the next bytes of the stream. After an error the stream must not be
    /// forwarded further (the failing bytes included).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Status> {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Header(header, have) => {
                    let take = (FRAME_HEADER - *have).min(bytes.len());
                    header[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == FRAME_HEADER {
                        let len = message_len(header)? as u64;
                        let scan = FieldScan::new(len, self.kind == Field1::ModelSpec);
                        self.phase = if len == 0 {
                            Phase::Done
                        } else {
                            Phase::Message(scan)
                        };
                    }
                }
                Phase::Message(scan) => {
                    let n = scan.feed(bytes)?;
                    bytes = &bytes[n..];
                    if scan.is_complete() {
                        self.phase = Phase::Done;
                    }
                }
                Phase::Done => {
                    return Err(Status::invalid_argument(
                        "Malformed gRPC request: more than one message on a unary call",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the one message is complete (the stream may end now).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The stream ended: it must have carried the whole message.
    pub fn finish(&self) -> Result<(), Status> {
        if self.is_done() {
            Ok(())
        } else {
            Err(bad("the stream ended inside the message"))
        }
    }
}

#[cfg(test)]
#[path = "grpc_scan_tests.rs"]
mod tests;
