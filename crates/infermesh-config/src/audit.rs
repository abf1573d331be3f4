//! `audit:`: the tamper-evident audit trail (see `docs/audit.md`) — where it is
//! written, how durable a record must be before its request is answered, checkpoint
//! and rotation cadence, which allow decisions are recorded, the signing key, and an
//! optional external sink. Absent: no audit trail. Fixed at start (a change needs a
//! restart).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{one_of, suggest};
use crate::read::{Cx, Fields, bytes, duration, string, uint};
use crate::yaml::Node;

pub(crate) const KEYS: &[&str] = &[
    "dir",
    "durability",
    "flush_interval",
    "checkpoint",
    "rotate",
    "record_allows",
    "signing_key",
    "sink",
];
pub(crate) const DURABILITY: &[&str] = &["strict", "relaxed"];
pub(crate) const ALLOWS: &[&str] = &["all", "audited", "none"];
pub(crate) const PROTOCOLS: &[&str] = &["http", "otlp"];
pub(crate) const CHECKPOINT_KEYS: &[&str] = &["every", "interval"];
pub(crate) const ROTATE_KEYS: &[&str] = &["max_bytes", "max_age"];
pub(crate) const SINK_KEYS: &[&str] = &["url", "protocol", "queue"];

pub const DEFAULT_AUDIT_DIR: &str = ".infermesh/audit";

/// `audit:` of mesh.yaml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// The trail's directory; relative paths start from the working directory of the
    /// process (like the rest of `.infermesh/`).
    pub dir: PathBuf,
    pub durability: AuditDurability,
    pub flush_interval: Duration,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub rotate_bytes: u64,
    pub rotate_age: Duration,
    pub record_allows: RecordAllows,
    /// Default: `<dir>/audit.key`.
    pub signing_key: PathBuf,
    pub sink: Option<AuditSink>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditDurability {
    Strict,
    Relaxed,
}

/// Which allow decisions are recorded (denials always are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordAllows {
    All,
    /// Only requests an `AUDIT` policy matches.
    Audited,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSink {
    /// `http://…`.
    pub url: String,
    /// `otlp`: OTLP/HTTP JSON logs; `http`: JSON lines.
    pub otlp: bool,
    pub queue: u64,
}

pub(crate) fn audit(cx: &mut Cx, node: &Node, path: &str) -> Option<AuditConfig> {
    let f = Fields::read(cx, node, path, KEYS)?;
    let dir = f
        .opt(cx, "dir", non_empty)
        .map_or_else(|| PathBuf::from(DEFAULT_AUDIT_DIR), PathBuf::from);
    let durability = f
        .opt(cx, "durability", |cx, n, p| choice(cx, n, p, DURABILITY))
        .map_or(AuditDurability::Relaxed, |c| match c {
            0 => AuditDurability::Strict,
            _ => AuditDurability::Relaxed,
        });
    let record_allows = f
        .opt(cx, "record_allows", |cx, n, p| choice(cx, n, p, ALLOWS))
        .map_or(RecordAllows::All, |c| match c {
            0 => RecordAllows::All,
            1 => RecordAllows::Audited,
            _ => RecordAllows::None,
        });
    let (checkpoint_every, checkpoint_interval) = f
        .opt(cx, "checkpoint", checkpoint)
        .unwrap_or((1000, Duration::from_secs(10)));
    let (rotate_bytes, rotate_age) = f
        .opt(cx, "rotate", rotate)
        .unwrap_or((64 << 20, Duration::from_secs(24 * 3600)));
    let signing_key = f
        .opt(cx, "signing_key", non_empty)
        .map_or_else(|| dir.join("audit.key"), PathBuf::from);
    Some(AuditConfig {
        flush_interval: f
            .opt(cx, "flush_interval", duration)
            .unwrap_or(Duration::from_secs(1)),
        sink: f.opt(cx, "sink", sink),
        dir,
        durability,
        checkpoint_every,
        checkpoint_interval,
        rotate_bytes,
        rotate_age,
        record_allows,
        signing_key,
    })
}

fn checkpoint(cx: &mut Cx, node: &Node, path: &str) -> Option<(u64, Duration)> {
    let f = Fields::read(cx, node, path, CHECKPOINT_KEYS)?;
    let every = f.opt(cx, "every", uint(1, 1_000_000)).unwrap_or(1000);
    let interval = f
        .opt(cx, "interval", duration)
        .unwrap_or(Duration::from_secs(10));
    Some((every, interval))
}

fn rotate(cx: &mut Cx, node: &Node, path: &str) -> Option<(u64, Duration)> {
    let f = Fields::read(cx, node, path, ROTATE_KEYS)?;
    let max_bytes = f.opt(cx, "max_bytes", bytes).unwrap_or(64 << 20);
    if max_bytes < 4096 {
        let at = f.get("max_bytes").map_or(f.at, |n| n.at);
        cx.error(at, &f.path_of("max_bytes"), "must be at least 4KiB");
    }
    let max_age = f
        .opt(cx, "max_age", duration)
        .unwrap_or(Duration::from_secs(24 * 3600));
    Some((max_bytes, max_age))
}

fn sink(cx: &mut Cx, node: &Node, path: &str) -> Option<AuditSink> {
    let f = Fields::read(cx, node, path, SINK_KEYS)?;
    let url = f.req(cx, "url", non_empty);
    if let (Some(url), Some(n)) = (&url, f.get("url"))
        && !url.starts_with("http://")
    {
        let msg = format!(
            "{url:?}: the sink speaks plain `http://` (ship through a local collector for TLS)"
        );
        cx.error(n.at, &f.path_of("url"), msg);
    }
    let otlp = f
        .opt(cx, "protocol", |cx, n, p| choice(cx, n, p, PROTOCOLS))
        .is_some_and(|c| c == 1);
    let queue = f.opt(cx, "queue", uint(1, 10_000_000)).unwrap_or(10_000);
    Some(AuditSink {
        url: url?,
        otlp,
        queue,
    })
}

/// One of `choices` (case-insensitive): its index.
fn choice(cx: &mut Cx, node: &Node, path: &str, choices: &[&str]) -> Option<usize> {
    let text = string(cx, node, path)?;
    let lower = text.to_ascii_lowercase();
    if let Some(i) = choices.iter().position(|c| *c == lower) {
        return Some(i);
    }
    let msg = match suggest(&lower, choices.iter().copied()) {
        Some(s) => format!("unknown value `{text}`, did you mean `{s}`?"),
        None => format!(
            "unknown value `{text}`, expected {}",
            one_of(choices.iter().copied())
        ),
    };
    cx.error(node.at, path, msg);
    None
}

fn non_empty(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = string(cx, node, path)?;
    if s.is_empty() {
        cx.error(node.at, path, "must not be empty");
        return None;
    }
    Some(s)
}
