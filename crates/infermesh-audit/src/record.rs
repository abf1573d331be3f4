//! The record format: one JSON object per line, fields `seq`, `prev`, `ts`, `kind`
//! first, then the kind's own fields. `prev` is the lower-case hex SHA-256 of the
//! previous record's line (its bytes without the newline); the first record of a
//! trail has [`GENESIS`]. A checkpoint is a record (`kind: checkpoint`) whose Ed25519
//! signature covers its own `seq`, `prev` and `ts` ([`checkpoint_message`]), so it
//! signs the whole chain before it.

use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `prev` of the first record of a trail.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Record kinds written by infermesh.
pub mod kind {
    /// An authorization decision (allow or deny).
    pub const DECISION: &str = "decision";
    /// A configuration change that took effect.
    pub const CONFIG: &str = "config";
    /// A process started writing the trail.
    pub const START: &str = "start";
    /// A process stopped (written before the final checkpoint).
    pub const STOP: &str = "stop";
    /// A signed checkpoint.
    pub const CHECKPOINT: &str = "checkpoint";
    /// Written at start when the previous writer did not stop cleanly.
    pub const RECOVERY: &str = "recovery";
    /// Records could not be written for a while (disk full): how many were lost.
    pub const GAP: &str = "gap";
    /// A workload certificate was issued or rotated (recorded by the identity code
    /// through [`crate::AuditLog::event`]).
    pub const CERTIFICATE: &str = "certificate";
}

/// A record before it joins the chain: the writer adds `seq`, `prev` and `ts`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub ts: SystemTime,
    pub kind: String,
    /// The kind's own fields: a JSON object's text (`{...}`).
    pub body: String,
}

impl Entry {
    /// An entry of `kind` with the fields of `body` (which must serialize to a JSON
    /// object; anything else is recorded under `"value"`).
    pub fn new(kind: &str, body: &impl Serialize) -> Entry {
        let text = serde_json::to_string(body).unwrap_or_else(|_| "null".into());
        let body = if text.starts_with('{') {
            text
        } else {
            format!("{{\"value\":{text}}}")
        };
        Entry {
            ts: SystemTime::now(),
            kind: kind.to_owned(),
            body,
        }
    }
}

/// Lower-case hex SHA-256 of a record line (without its newline).
pub fn hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(ts: SystemTime) -> String {
    humantime::format_rfc3339_millis(ts).to_string()
}

/// The line of a record (no newline).
pub fn compose(seq: u64, prev: &str, ts: &str, kind: &str, body: &str) -> String {
    let mut out = Vec::with_capacity(body.len() + 160);
    compose_into(&mut out, seq, prev, ts, kind, body);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the line of a record (no newline) to `out`.
pub fn compose_into(out: &mut Vec<u8>, seq: u64, prev: &str, ts: &str, kind: &str, body: &str) {
    use std::io::Write as _;
    let rest = body.trim().strip_prefix('{').unwrap_or("}");
    let _ = write!(
        out,
        "{{\"seq\":{seq},\"prev\":\"{prev}\",\"ts\":\"{ts}\",\"kind\":"
    );
    let _ = serde_json::to_writer(&mut *out, kind);
    if !rest.trim_start().starts_with('}') {
        out.push(b',');
    }
    out.extend_from_slice(rest.as_bytes());
}

/// What a checkpoint's signature covers.
pub fn checkpoint_message(seq: u64, prev: &str, ts: &str, last: bool) -> Vec<u8> {
    format!("infermesh-audit-checkpoint/v1\n{seq}\n{prev}\n{ts}\n{last}").into_bytes()
}

/// The chain fields of a parsed record, and the whole object.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub seq: u64,
    pub prev: String,
    pub ts: String,
    pub kind: String,
    pub value: serde_json::Value,
}

impl Parsed {
    /// Parses one line; the error says what is wrong with it.
    pub fn parse(line: &[u8]) -> Result<Parsed, String> {
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("not a JSON record: {e}"))?;
        let seq = value["seq"].as_u64().ok_or("no numeric `seq` field")?;
        let prev = value["prev"]
            .as_str()
            .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("no 64-hex-digit `prev` field")?
            .to_owned();
        let ts = value["ts"].as_str().ok_or("no `ts` field")?.to_owned();
        let kind = value["kind"].as_str().ok_or("no `kind` field")?.to_owned();
        Ok(Parsed {
            seq,
            prev,
            ts,
            kind,
            value,
        })
    }

    /// The time of the record, if `ts` is RFC 3339.
    pub fn time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.ts).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_put_chain_fields_first_and_parse_back() {
        let line = compose(
            7,
            GENESIS,
            "2026-01-01T00:00:00.000Z",
            "start",
            r#"{"a":1}"#,
        );
        assert_eq!(
            line,
            format!(
                r#"{{"seq":7,"prev":"{GENESIS}","ts":"2026-01-01T00:00:00.000Z","kind":"start","a":1}}"#
            )
        );
        let p = Parsed::parse(line.as_bytes()).unwrap();
        assert_eq!(
            (p.seq, p.kind.as_str(), p.value["a"].as_i64()),
            (7, "start", Some(1))
        );
        let empty = compose(1, GENESIS, "t", "stop", "{}");
        assert!(Parsed::parse(empty.as_bytes()).is_ok(), "{empty}");
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
