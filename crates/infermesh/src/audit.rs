//! `infermesh audit`: offline commands over a trail's files (see `docs/audit.md`).
//!
//! * `verify FILE|DIR... --public-key K [--open]`: proves the trail intact, or names
//!   the first record changed, removed, reordered or inserted, and detects truncation.
//!   Exit 0 intact, 1 tampered, 64 for unusable input.
//! * `rollouts --model M [DIR|FILE...]`: what served the model over time (versions,
//!   labels, split) and who or what changed it, when.
//! * `query [filters] [DIR|FILE...]`: the records matching every filter, as JSON lines.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use infermesh_audit::keys::PublicKey;
use infermesh_audit::read;
use infermesh_audit::record::{Parsed, kind};
use serde_json::Value;

use crate::error::InvalidConfig;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prove a trail intact, or name the first record changed, removed, reordered or
    /// inserted; detect truncation after the last checkpoint. Exits 0 when intact, 1
    /// when not, 64 when the input cannot be used.
    Verify(VerifyArgs),
    /// The timeline of what served a model: versions, labels, split, and who changed
    /// them when.
    Rollouts(RolloutsArgs),
    /// Print the records (JSON lines) matching every filter given.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trail: its directory, or its `audit-*.jsonl` files in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The exported public key (`audit.pub` beside the signing key).
    #[arg(long)]
    pub public_key: PathBuf,
    /// Accept a trail that does not end with a final checkpoint (its writer is still
    /// running); report how many records no checkpoint covers yet.
    #[arg(long)]
    pub open: bool,
}

#[derive(Debug, Args)]
pub struct RolloutsArgs {
    /// The model.
    #[arg(long)]
    pub model: String,
    /// The trail: its directory or files.
    #[arg(default_value = infermesh_config::DEFAULT_AUDIT_DIR)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Request principal (`<iss>/<sub>`) or peer principal; `*` at the end matches a prefix.
    #[arg(long)]
    pub principal: Option<String>,
    /// Model name.
    #[arg(long)]
    pub model: Option<String>,
    /// `allow` or `deny` (decision records only).
    #[arg(long, value_parser = ["allow", "deny"])]
    pub decision: Option<String>,
    /// Record kind: decision, config, start, stop, checkpoint, recovery, gap, …
    #[arg(long)]
    pub kind: Option<String>,
    /// The `x-request-id` of a request.
    #[arg(long)]
    pub request_id: Option<String>,
    /// From this time: RFC 3339 (`2026-05-01T12:00:00Z`) or a duration ago (`15m`).
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// The trail: its directory or files.
    #[arg(default_value = infermesh_config::DEFAULT_AUDIT_DIR)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Rollouts(a) => rollouts(a),
        AuditCommand::Query(a) => query(a),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let key = PublicKey::read(&args.public_key).map_err(InvalidConfig::error)?;
    match infermesh_audit::verify(&args.files, &key, args.open) {
        Ok(s) => {
            let end = if s.closed {
                format!(
                    "the last (seq {}) is final: the writer stopped cleanly",
                    s.last_checkpoint
                )
            } else {
                format!(
                    "the last is seq {}; the trail is open ({} record(s) after it, not yet signed)",
                    s.last_checkpoint, s.unsigned_tail
                )
            };
            println!(
                "OK: {} records (seq {}..{}) in {} file(s), chain intact; {} checkpoint(s) signed by key {}; {end}",
                s.records,
                s.first_seq,
                s.last_seq,
                s.files,
                s.checkpoints,
                key.id()
            );
            Ok(())
        }
        Err(f) if f.kind == infermesh_audit::FindingKind::Unreadable => {
            Err(InvalidConfig::error(f.message))
        }
        Err(f) => {
            println!("FAILED ({:?}): {f}", f.kind);
            anyhow::bail!("the audit trail does not verify: {f}")
        }
    }
}

fn records(files: &[PathBuf]) -> anyhow::Result<Vec<Parsed>> {
    read::records(files).map_err(InvalidConfig::error)
}

fn rollouts(args: RolloutsArgs) -> anyhow::Result<()> {
    let mut seen = false;
    println!("timeline of model {}:", args.model);
    for r in records(&args.files)? {
        let v = &r.value;
        match r.kind.as_str() {
            kind::START => {
                let Some(state) = v["models"].get(&args.model) else {
                    continue;
                };
                seen = true;
                println!(
                    "{}  start   {} (pid {}, config sha256 {})  serving {}",
                    r.ts,
                    v["role"].as_str().unwrap_or("?"),
                    v["pid"],
                    short(&v["config"]["sha256"]),
                    describe(state)
                );
            }
            kind::CONFIG => {
                let Some(m) = v["models"]
                    .as_array()
                    .and_then(|ms| ms.iter().find(|m| m["model"] == args.model.as_str()))
                else {
                    continue;
                };
                seen = true;
                let by = &v["by"];
                let owner = by["file_owner_uid"]
                    .as_u64()
                    .map(|u| format!(", file owner uid {u}"))
                    .unwrap_or_default();
                println!(
                    "{}  {:<7} by {} ({}{owner}; new config sha256 {})\n    {} → {}",
                    r.ts,
                    m["change"].as_str().unwrap_or("change"),
                    by["trigger"].as_str().unwrap_or("?"),
                    by["file"].as_str().unwrap_or("?"),
                    short(&v["sha256"]),
                    describe(&m["before"]),
                    describe(&m["after"])
                );
            }
            kind::STOP | kind::RECOVERY if seen => {
                println!("{}  {}", r.ts, r.kind);
            }
            _ => {}
        }
    }
    if !seen {
        anyhow::bail!("no start or change record names model {:?}", args.model);
    }
    Ok(())
}

fn short(digest: &Value) -> String {
    digest
        .as_str()
        .map_or("?".into(), |d| d.chars().take(12).collect())
}

/// `versions [1, 2] (stable=1, canary=2), split stable(1)=90 canary(2)=10`.
fn describe(state: &Value) -> String {
    if state.is_null() {
        return "(none)".into();
    }
    let labels = state["labels"].as_object();
    let label_of = |version: &str| {
        labels
            .and_then(|l| {
                l.iter()
                    .find(|(_, v)| v.as_i64().map(|n| n.to_string()).as_deref() == Some(version))
            })
            .map(|(name, _)| name.clone())
    };
    let versions: Vec<String> = state["versions"]
        .as_array()
        .map(|vs| vs.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    let split: Vec<String> = state["split"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(version, weight)| match label_of(version) {
                    Some(label) => format!("{label}({version})={weight}"),
                    None => format!("{version}={weight}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!(
        "versions [{}], split {}",
        versions.join(", "),
        split.join(" ")
    );
    if let Some(m) = state["mirror"].as_object() {
        out.push_str(&format!(", mirror {}% to {}", m["percent"], m["version"]));
    }
    if let Some(w) = state["served_by"].as_str() {
        out.push_str(&format!(", served by {w}"));
    }
    out
}

fn query(args: QueryArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(time).transpose()?;
    let until = args.until.as_deref().map(time).transpose()?;
    let files = read::expand(&args.files).map_err(InvalidConfig::error)?;
    for line in read::lines(&files).map_err(InvalidConfig::error)? {
        let Ok(r) = &line.parsed else {
            continue;
        };
        let v = &r.value;
        let keep = args.kind.as_ref().is_none_or(|k| &r.kind == k)
            && args.model.as_ref().is_none_or(|m| v["model"] == m.as_str())
            && args
                .decision
                .as_ref()
                .is_none_or(|d| v["decision"] == d.as_str())
            && args
                .request_id
                .as_ref()
                .is_none_or(|id| v["request_id"] == id.as_str())
            && args.principal.as_ref().is_none_or(|p| {
                matches(p, v["principal"].as_str()) || matches(p, v["peer"].as_str())
            })
            && (since.is_none() && until.is_none()
                || r.time()
                    .is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)));
        if keep {
            println!("{}", String::from_utf8_lossy(&line.bytes));
        }
    }
    Ok(())
}

fn matches(pattern: &str, value: Option<&str>) -> bool {
    match (pattern.strip_suffix('*'), value) {
        (_, None) => false,
        (Some(prefix), Some(v)) => v.starts_with(prefix),
        (None, Some(v)) => v == pattern,
    }
}

/// RFC 3339, or a duration before now.
fn time(text: &str) -> anyhow::Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(InvalidConfig::error(format!(
            "invalid time {text:?}: use RFC 3339 (`2026-05-01T12:00:00Z`) or a duration ago (`15m`)"
        ))),
    }
}
