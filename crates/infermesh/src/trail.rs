//! The running process's audit trail: opened from `audit:` of mesh.yaml at start
//! (`infermesh up` and `infermesh gateway` write to `audit.dir`, `infermesh sidecar
//! --workload W` to `audit.dir/sidecar-W`), with a `start` record naming what serves
//! each model, a `config` record per reload that takes effect (what changed per
//! model — versions, labels, split — and which policies were added, removed or
//! changed; the new file's SHA-256; what triggered it), and a `stop` record plus the
//! final signed checkpoint at shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use infermesh_audit::record::kind;
use infermesh_audit::{AuditLog, Durability, Options, SinkOptions, SinkProtocol};
use infermesh_config::{AuditConfig, AuditDurability, MeshConfig, Model};
use serde_json::{Value, json};

use crate::reload::Role;

/// Records submitted and not yet written beyond which new ones are refused.
const MAX_BACKLOG: u64 = 100_000;
/// How long shutdown waits for the final checkpoint.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Gateway => "gateway",
        Role::Sidecar { .. } => "sidecar",
        Role::Up => "up",
        Role::ExtAuthz => "ext-authz",
    }
}

/// The trail's options for this process.
pub fn options(config: &AuditConfig, role: &Role) -> Options {
    let dir = match role {
        Role::Sidecar { workload } => config.dir.join(format!("sidecar-{workload}")),
        Role::ExtAuthz => config.dir.join("ext-authz"),
        Role::Gateway | Role::Up => config.dir.clone(),
    };
    Options {
        dir,
        durability: match config.durability {
            AuditDurability::Strict => Durability::Strict,
            AuditDurability::Relaxed => Durability::Relaxed,
        },
        flush_interval: config.flush_interval,
        checkpoint_every: config.checkpoint_every,
        checkpoint_interval: config.checkpoint_interval,
        rotate_bytes: config.rotate_bytes,
        rotate_age: config.rotate_age,
        signing_key: config.signing_key.clone(),
        sink: config.sink.as_ref().map(|s| SinkOptions {
            url: s.url.clone(),
            protocol: if s.otlp {
                SinkProtocol::Otlp
            } else {
                SinkProtocol::Http
            },
            queue: usize::try_from(s.queue).unwrap_or(usize::MAX),
        }),
        max_backlog: MAX_BACKLOG,
    }
}

/// Opens the trail if the mesh has `audit:`, and records the start.
pub fn open(
    config: &MeshConfig,
    role: &Role,
    file: &Path,
    digest: &str,
) -> anyhow::Result<Option<AuditLog>> {
    let Some(audit) = &config.audit else {
        return Ok(None);
    };
    let options = options(audit, role);
    let log = AuditLog::open(options.clone())?;
    let workload = match role {
        Role::Sidecar { workload } => Some(workload.as_str()),
        _ => None,
    };
    log.event(
        kind::START,
        &json!({
            "role": role_name(role),
            "workload": workload,
            "pid": std::process::id(),
            "infermesh": env!("CARGO_PKG_VERSION"),
            "durability": format!("{:?}", options.durability).to_lowercase(),
            "config": {"file": file.display().to_string(), "sha256": digest},
            "models": models(config),
        }),
    );
    tracing::info!(
        dir = %log.dir().display(),
        durability = ?options.durability,
        public_key = %log.public_key_path().display(),
        "audit trail open"
    );
    Ok(Some(log))
}

/// Records the stop and the final checkpoint.
pub async fn close(log: &AuditLog, role: &Role) {
    log.close(
        &json!({"role": role_name(role), "pid": std::process::id()}),
        CLOSE_TIMEOUT,
    )
    .await;
    let s = log.stats();
    tracing::info!(
        records = s.records,
        fsyncs = s.fsyncs,
        checkpoints = s.checkpoints,
        write_failures = s.write_failures,
        lost = s.lost,
        refused = s.refused,
        write_ms_max = s.write_time_max.as_millis() as u64,
        "audit trail closed"
    );
}

/// What serves each model: versions, labels, split, mirror, workload.
pub fn models(config: &MeshConfig) -> Value {
    let map: serde_json::Map<String, Value> = config
        .models
        .iter()
        .map(|(name, model)| (name.clone(), model_state(model)))
        .collect();
    Value::Object(map)
}

fn model_state(model: &Model) -> Value {
    let split: serde_json::Map<String, Value> = model
        .route
        .split
        .iter()
        .map(|(v, w)| (v.to_string(), json!(w)))
        .collect();
    json!({
        "served_by": model.served_by,
        "versions": model.versions,
        "labels": model.labels,
        "split": split,
        "mirror": model.route.mirror.as_ref().map(|m| json!({"version": m.version, "percent": m.percent})),
    })
}

/// Why and by what the file was re-read.
#[derive(Debug)]
pub struct Change<'a> {
    pub trigger: &'a str,
    pub file: &'a Path,
    pub digest: &'a str,
    pub previous: &'a str,
    pub summary: &'a str,
    pub restart_needed: &'a [String],
}

/// The `config` record of a reload that took effect: per model its state before and
/// after, policies added / removed / changed, the new digest, the trigger.
pub fn change_record(old: &MeshConfig, new: &MeshConfig, change: &Change<'_>) -> Value {
    let mut models = Vec::new();
    for (name, model) in &new.models {
        match old.models.get(name) {
            None => models.push(json!({"model": name, "change": "added", "before": null, "after": model_state(model)})),
            Some(was) if was == model => {}
            Some(was) => models.push(json!({
                "model": name, "change": "changed",
                "before": model_state(was), "after": model_state(model),
            })),
        }
    }
    for (name, was) in &old.models {
        if !new.models.contains_key(name) {
            models.push(json!({"model": name, "change": "removed", "before": model_state(was), "after": null}));
        }
    }
    let old_policies: BTreeMap<&str, _> =
        old.policies.iter().map(|p| (p.name.as_str(), p)).collect();
    let new_policies: BTreeMap<&str, _> =
        new.policies.iter().map(|p| (p.name.as_str(), p)).collect();
    let added: Vec<&str> = new_policies
        .keys()
        .filter(|n| !old_policies.contains_key(*n))
        .copied()
        .collect();
    let removed: Vec<&str> = old_policies
        .keys()
        .filter(|n| !new_policies.contains_key(*n))
        .copied()
        .collect();
    let changed: Vec<&str> = new_policies
        .iter()
        .filter(|(n, p)| old_policies.get(*n).is_some_and(|o| o != *p))
        .map(|(n, _)| *n)
        .collect();
    let owner = file_owner(change.file);
    json!({
        "trigger": change.trigger,
        "by": {"trigger": change.trigger, "file": change.file.display().to_string(), "file_owner_uid": owner},
        "sha256": change.digest,
        "previous_sha256": change.previous,
        "summary": change.summary,
        "models": models,
        "policies": {"added": added, "removed": removed, "changed": changed},
        "authorization_changed": old.authz != new.authz,
        "issuers_changed": old.issuers != new.issuers,
        "restart_needed": change.restart_needed,
    })
}

#[cfg(unix)]
fn file_owner(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
}

#[cfg(not(unix))]
fn file_owner(_: &Path) -> Option<u32> {
    None
}
