//! Hot reload of `mesh.yaml` for `infermesh gateway`, `infermesh sidecar` and
//! `infermesh up`.
//!
//! The file is polled every second (inode, size and mtime; a file modified within the
//! last two seconds is re-read and hashed every time, since a same-size rewrite within
//! one mtime tick changes neither) and re-read on SIGHUP (always, even when unchanged:
//! that also re-reads the `istio_files` it lists, which are not polled). The new text
//! is validated as at start, with the same file:line errors.
//!
//! * Triggers: the file changed (polled every second), `SIGHUP`, or `POST /reload`
//!   on the admin listener (answered with what changed, or the errors).
//! * Valid: swapped atomically into the shared `ArcSwap` the gateway and sidecars read
//!   once per request; one info line with the file's digest and what changed.
//! * Invalid: the old config keeps serving; a warning with every error and the count
//!   of rejections so far. The same rejected text is reported once, not every second.
//! * Fields that cannot change in a running process (listen addresses, a running
//!   sidecar's upstream, `limits`, `outlier_detection`, `dns_refresh`, `telemetry`,
//!   `dev_issuer`, a sidecar's `admin`,
//!   the embedded model servers) keep their running values in the swapped config; a
//!   warning names them and says a restart is needed; the rest is applied. `audit` is
//!   one of them.
//! * With an audit trail, a reload that takes effect is recorded (`trail.rs`) before
//!   it is swapped in: what changed per model and policy, the new digest, the trigger.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use infermesh_config::{MeshConfig, Model, Workload};
use infermesh_proxy::ReloadRequest;
use tokio::sync::mpsc;

use crate::error::InvalidConfig;

/// How often the file is checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A file modified less than this long ago is re-read on every poll (its mtime may
/// not move on a same-size rewrite within the filesystem's timestamp granularity).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What [`describe`] says when nothing that applies changed.
const NO_CHANGE: &str = "no effective change";

/// Which processes share the config, so which fields are fixed at start.
#[derive(Clone, Debug)]
pub enum Role {
    Gateway,
    Sidecar {
        workload: String,
    },
    /// `infermesh up`: the gateway, a sidecar per workload, the embedded model
    /// servers and the dev issuer.
    Up,
    /// `infermesh ext-authz`: decisions only; it listens where its flag says.
    ExtAuthz,
}

/// What the poller compares between ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    /// Modified so recently that an equal stamp does not prove equal content.
    fn racy(&self) -> bool {
        self.modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < RACY_WINDOW)
    }
}

/// The file being served and how to re-read it.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    role: Role,
    config: Arc<ArcSwap<MeshConfig>>,
    /// Digest of the text in use.
    digest: String,
    stamp: Option<Stamp>,
    /// Digest (or read error) of the last rejected text, reported once.
    last_rejected: Option<String>,
    stats: Arc<ReloadStats>,
    /// Reload requests from the admin endpoint (`POST /reload`).
    requests: mpsc::Receiver<ReloadRequest>,
    sender: mpsc::Sender<ReloadRequest>,
    /// Where reloads that take effect are recorded.
    audit: Option<infermesh_audit::AuditLog>,
}

/// How many reloads took effect and how many were rejected.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
}

/// What one reload did, as the admin endpoint reports it.
#[derive(Debug)]
enum Outcome {
    Unchanged,
    Applied(String),
    Rejected(String),
}

/// Why the file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Poll,
    Sighup,
    Admin,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Poll => "file changed",
            Trigger::Sighup => "SIGHUP",
            Trigger::Admin => "admin POST /reload",
        }
    }
}

/// Reads the file's text; errors worded as [`infermesh_config::load`] words them.
fn read(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| match infermesh_config::load(path) {
        // `load` names the line and column of the first byte that is not UTF-8.
        Err(errors) => errors.to_string(),
        Ok(_) => format!("{}: the file is not UTF-8 text", path.display()),
    })
}

/// Reads and validates the file at start (exit 64 with file:line errors if invalid);
/// the returned [`Reloader`] keeps it current once [`Reloader::spawn`]ed.
pub fn load(path: &Path, role: Role) -> anyhow::Result<Reloader> {
    let invalid = |errors: &dyn std::fmt::Display| {
        InvalidConfig::error(format!("invalid mesh config:\n{errors}"))
    };
    let stamp = Stamp::of(path);
    let text = read(path).map_err(|e| invalid(&e))?;
    let config = infermesh_config::parse(&text, path).map_err(|e| invalid(&e))?;
    let (sender, requests) = mpsc::channel(8);
    Ok(Reloader {
        path: path.to_path_buf(),
        role,
        config: Arc::new(ArcSwap::from_pointee(config)),
        digest: infermesh_config::digest(&text),
        stamp,
        last_rejected: None,
        stats: Arc::default(),
        requests,
        sender,
        audit: None,
    })
}

impl Reloader {
    /// The shared config the proxies read.
    pub fn config(&self) -> Arc<ArcSwap<MeshConfig>> {
        self.config.clone()
    }

    /// Where the admin endpoint sends `POST /reload` requests.
    pub fn admin_sender(&self) -> mpsc::Sender<ReloadRequest> {
        self.sender.clone()
    }

    /// Reloads applied and rejected so far (exported as metrics).
    pub fn stats(&self) -> Arc<ReloadStats> {
        self.stats.clone()
    }

    /// Opens the audit trail of `audit:` (if any) for this role, records the start,
    /// and records every reload that takes effect from now on.
    pub fn open_audit(&mut self) -> anyhow::Result<Option<infermesh_audit::AuditLog>> {
        let config = self.config.load_full();
        let log = crate::trail::open(&config, &self.role, &self.path, &self.digest)?;
        self.audit = log.clone();
        Ok(log)
    }

    /// Starts watching: polls every second and listens for SIGHUP (registered before
    /// this returns, so a SIGHUP no longer stops the process). Call inside a tokio
    /// runtime; the task ends with the runtime.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads by polling only");
                None
            }
        };
        tracing::info!(
            file = %self.path.display(),
            digest = %self.digest,
            "watching the mesh config for changes (polled every second, and on SIGHUP)"
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let sighup = async {
                    match hangup.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let sighup = std::future::pending::<()>();
                let (trigger, reply) = tokio::select! {
                    _ = tick.tick() => (Trigger::Poll, None),
                    () = sighup => (Trigger::Sighup, None),
                    Some(request) = self.requests.recv() => (Trigger::Admin, Some(request.reply)),
                };
                let outcome = self.check(trigger);
                if let Some(reply) = reply {
                    let answer = match outcome {
                        Outcome::Unchanged => (200, format!("unchanged ({})\n", self.digest)),
                        Outcome::Applied(changes) => {
                            (200, format!("reloaded ({}): {changes}\n", self.digest))
                        }
                        Outcome::Rejected(errors) => (
                            422,
                            format!("rejected; the previous config keeps serving:\n{errors}\n"),
                        ),
                    };
                    let _ = reply.send(answer);
                }
            }
        })
    }

    /// One check: re-reads the file when it (may have) changed, or always on SIGHUP
    /// and admin requests.
    fn check(&mut self, trigger: Trigger) -> Outcome {
        let stamp = Stamp::of(&self.path);
        if trigger == Trigger::Poll {
            let unchanged = stamp == self.stamp && !stamp.as_ref().is_some_and(Stamp::racy);
            if unchanged {
                return Outcome::Unchanged;
            }
        }
        if trigger != Trigger::Poll {
            tracing::info!(
                file = %self.path.display(),
                "{}: re-reading the mesh config",
                trigger.as_str()
            );
        }
        self.stamp = stamp;
        let text = match read(&self.path) {
            Ok(text) => text,
            Err(error) => {
                self.reject(trigger, error.clone(), &error);
                return Outcome::Rejected(error);
            }
        };
        let digest = infermesh_config::digest(&text);
        if trigger == Trigger::Poll && digest == self.digest {
            // Touched, or rewritten with the same text.
            self.last_rejected = None;
            return Outcome::Unchanged;
        }
        match infermesh_config::parse(&text, &self.path) {
            Ok(new) => {
                self.last_rejected = None;
                Outcome::Applied(self.apply(trigger, new, digest))
            }
            Err(errors) => {
                let errors = errors.to_string();
                self.reject(trigger, digest, &errors);
                Outcome::Rejected(errors)
            }
        }
    }

    fn reject(&mut self, trigger: Trigger, key: String, errors: &str) {
        if trigger == Trigger::Poll && self.last_rejected.as_ref() == Some(&key) {
            return;
        }
        self.last_rejected = Some(key);
        let rejected = self.stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            file = %self.path.display(),
            trigger = trigger.as_str(),
            rejected_total = rejected,
            serving = %self.digest,
            "mesh config reload rejected; the previous config keeps serving:\n{errors}"
        );
    }

    /// Swaps `new` in; returns what changed.
    fn apply(&mut self, trigger: Trigger, new: MeshConfig, digest: String) -> String {
        let old = self.config.load_full();
        let (applied, restart) = keep_fixed(&self.role, &old, new);
        let changes = describe(&old, &applied);
        if let Some(log) = &self.audit
            && changes != NO_CHANGE
        {
            let change = crate::trail::Change {
                trigger: trigger.as_str(),
                file: &self.path,
                digest: &digest,
                previous: &self.digest,
                summary: &changes,
                restart_needed: &restart,
            };
            let record = crate::trail::change_record(&old, &applied, &change);
            let _ = log.event(infermesh_audit::record::kind::CONFIG, &record);
        }
        self.config.store(Arc::new(applied));
        let previous = std::mem::replace(&mut self.digest, digest);
        tracing::info!(
            file = %self.path.display(),
            trigger = trigger.as_str(),
            digest = %self.digest,
            previous = %previous,
            "mesh config reloaded: {changes}"
        );
        if !restart.is_empty() {
            tracing::warn!(
                file = %self.path.display(),
                digest = %self.digest,
                "mesh config: these changes need a restart and are not applied (the running \
                 values stay in use; everything else is applied): {}",
                restart.join("; ")
            );
        }
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        if restart.is_empty() {
            changes
        } else {
            format!(
                "{changes} (not applied, need a restart: {})",
                restart.join("; ")
            )
        }
    }
}

/// The new config with the fields this process fixed at start put back to their
/// running values, and a description of each such change.
fn keep_fixed(role: &Role, old: &MeshConfig, mut new: MeshConfig) -> (MeshConfig, Vec<String>) {
    let mut restart = Vec::new();
    if old.limits != new.limits {
        restart.push("limits".to_string());
        new.limits = old.limits.clone();
    }
    if old.outlier_detection != new.outlier_detection {
        restart.push("outlier_detection".to_string());
        new.outlier_detection = old.outlier_detection.clone();
    }
    if old.dns_refresh != new.dns_refresh {
        restart.push("dns_refresh".to_string());
        new.dns_refresh = old.dns_refresh;
    }
    if old.telemetry != new.telemetry {
        restart.push("telemetry".to_string());
        new.telemetry = old.telemetry.clone();
    }
    if old.audit != new.audit {
        restart.push("audit".to_string());
        new.audit = old.audit.clone();
    }
    // Certificates name the trust domain and were issued under `identity`.
    if old.identity != new.identity {
        restart.push("identity".to_string());
        new.identity = old.identity.clone();
    }
    if old.trust_domain != new.trust_domain {
        restart.push("trust_domain".to_string());
        new.trust_domain = old.trust_domain.clone();
    }
    if matches!(role, Role::Gateway | Role::Up) && old.gateway != new.gateway {
        restart.push(format!(
            "gateway listeners {:?} → {:?}",
            old.gateway.listen, new.gateway.listen
        ));
        new.gateway = old.gateway.clone();
    }
    let running: Vec<&str> = match role {
        Role::Gateway | Role::ExtAuthz => Vec::new(),
        Role::Sidecar { workload } => vec![workload.as_str()],
        Role::Up => old.workloads.keys().map(String::as_str).collect(),
    };
    for name in running {
        let Some(was) = old.workloads.get(name) else {
            continue;
        };
        let Some(now) = new.workloads.get(name) else {
            restart.push(format!(
                "workload {name} removed (its sidecar keeps serving it)"
            ));
            new.workloads.insert(name.to_owned(), was.clone());
            continue;
        };
        let mut kept = Workload::clone(now);
        if kept.listen != was.listen {
            restart.push(format!(
                "workload {name} listen {} → {}",
                was.listen, kept.listen
            ));
            kept.listen = was.listen;
            if matches!(role, Role::Up) {
                // Gateways keep reaching the sidecar `up` runs.
                kept.endpoints = was.endpoints.clone();
            }
        }
        if kept.upstream != was.upstream {
            restart.push(format!("workload {name} upstream"));
            kept.upstream = was.upstream.clone();
        }
        if kept.admin != was.admin {
            restart.push(format!("workload {name} admin"));
            kept.admin = was.admin;
        }
        let identity = (
            &was.namespace,
            &was.service_account,
            was.mtls,
            &was.allowed_peers,
        );
        if identity
            != (
                &kept.namespace,
                &kept.service_account,
                kept.mtls,
                &kept.allowed_peers,
            )
        {
            restart.push(format!(
                "workload {name} identity (namespace, service_account, mtls, allowed_peers)"
            ));
            kept.namespace = was.namespace.clone();
            kept.service_account = was.service_account.clone();
            kept.mtls = was.mtls;
            kept.allowed_peers = was.allowed_peers.clone();
        }
        if matches!(role, Role::Up) && kept.embedded_model_server != was.embedded_model_server {
            restart.push(format!("workload {name} model_server"));
            kept.embedded_model_server = was.embedded_model_server.clone();
        }
        new.workloads.insert(name.to_owned(), Arc::new(kept));
    }
    if matches!(role, Role::Up) {
        for name in new.workloads.keys() {
            if !old.workloads.contains_key(name) {
                restart.push(format!(
                    "workload {name} added (no sidecar or model server runs for it)"
                ));
            }
        }
        if old.dev_issuer != new.dev_issuer {
            restart.push("dev_issuer".to_string());
            new.dev_issuer = old.dev_issuer.clone();
        }
    }
    (new, restart)
}

/// What changed, at a high level: per model its split (and other route fields),
/// models and workloads added or removed, policies, issuers, authorization settings.
fn describe(old: &MeshConfig, new: &MeshConfig) -> String {
    let mut parts = Vec::new();
    for (name, model) in &new.models {
        match old.models.get(name) {
            None => parts.push(format!("model {name} added, split {}", split(model))),
            Some(was) if was.as_ref() == model.as_ref() => {}
            Some(was) => {
                let mut what = Vec::new();
                if was.route.split != model.route.split || was.labels != model.labels {
                    what.push(format!("split {} → {}", split(was), split(model)));
                }
                if was.versions != model.versions {
                    what.push(format!(
                        "versions {:?} → {:?}",
                        was.versions, model.versions
                    ));
                }
                if was.route.mirror != model.route.mirror {
                    what.push("mirror".to_string());
                }
                if was.route.timeout != model.route.timeout {
                    what.push(format!(
                        "timeout {} → {}",
                        humantime::format_duration(was.route.timeout),
                        humantime::format_duration(model.route.timeout)
                    ));
                }
                if was.route.retries != model.route.retries {
                    what.push("retries".to_string());
                }
                if was.route.pin_header != model.route.pin_header
                    || was.route.sticky_header != model.route.sticky_header
                {
                    what.push("pin/sticky header".to_string());
                }
                if was.served_by != model.served_by {
                    what.push(format!("served_by {} → {}", was.served_by, model.served_by));
                }
                parts.push(format!("model {name}: {}", what.join(", ")));
            }
        }
    }
    for name in old.models.keys() {
        if !new.models.contains_key(name) {
            parts.push(format!("model {name} removed"));
        }
    }
    diff_keys("workload", &old.workloads, &new.workloads, &mut parts);
    if old.policies != new.policies {
        parts.push(format!(
            "policies ({} → {})",
            old.policies.len(),
            new.policies.len()
        ));
    }
    if old.issuers != new.issuers {
        parts.push(format!(
            "issuers ({} → {})",
            old.issuers.len(),
            new.issuers.len()
        ));
    }
    if old.authz != new.authz {
        parts.push("authorization settings".to_string());
    }
    if old.trust_domain != new.trust_domain {
        parts.push(format!(
            "trust_domain {} → {}",
            old.trust_domain, new.trust_domain
        ));
    }
    if parts.is_empty() {
        NO_CHANGE.to_string()
    } else {
        parts.join("; ")
    }
}

fn diff_keys<T: PartialEq>(
    what: &str,
    old: &BTreeMap<String, Arc<T>>,
    new: &BTreeMap<String, Arc<T>>,
    parts: &mut Vec<String>,
) {
    for (name, value) in new {
        match old.get(name) {
            None => parts.push(format!("{what} {name} added")),
            Some(was) if was != value => parts.push(format!("{what} {name} changed")),
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            parts.push(format!("{what} {name} removed"));
        }
    }
}

/// `{stable(1): 100}`: the versions with traffic, labelled where they have a label.
fn split(model: &Model) -> String {
    let mut out = String::from("{");
    for (i, (version, weight)) in model.route.split.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match model.labels.iter().find(|(_, v)| *v == version) {
            Some((label, _)) => write!(out, "{label}({version}): {weight}"),
            None => write!(out, "{version}: {weight}"),
        }
        .expect("writing to a String");
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(split: &str, listen: u16, limits: &str) -> MeshConfig {
        let text = format!(
            "workloads:\n  - {{name: a, listen: 127.0.0.1:{listen}, upstream: {{rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}}}\n\
             models:\n  - {{name: m, served_by: a, versions: [{{version: 1, label: stable}}, {{version: 2, label: canary}}], route: {{split: {split}}}}}\n\
             gateway: {{listen: [127.0.0.1:8501]}}\nlimits: {{{limits}}}\n"
        );
        infermesh_config::parse(&text, Path::new("mesh.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn split_changes_are_described() {
        let old = mesh("{stable: 100, canary: 0}", 15006, "");
        let new = mesh("{stable: 0, canary: 100}", 15006, "");
        assert_eq!(
            describe(&old, &new),
            "model m: split {stable(1): 100} → {canary(2): 100}"
        );
        assert_eq!(describe(&old, &old), "no effective change");
    }

    #[test]
    fn fixed_fields_keep_running_values_and_the_rest_applies() {
        let old = mesh("{stable: 100, canary: 0}", 15006, "");
        let new = mesh("{stable: 0, canary: 100}", 15007, "max_connections: 5");
        let role = Role::Sidecar {
            workload: "a".into(),
        };
        let (applied, restart) = keep_fixed(&role, &old, new.clone());
        assert_eq!(applied.workloads["a"].listen, old.workloads["a"].listen);
        assert_eq!(applied.limits, old.limits);
        assert_eq!(applied.models["m"].route.split, new.models["m"].route.split);
        assert_eq!(restart.len(), 2, "{restart:?}");
        // The gateway runs no sidecar: a workload's listen is only its endpoints there.
        let (applied, restart) = keep_fixed(&Role::Gateway, &old, new.clone());
        assert_eq!(applied.workloads["a"].listen, new.workloads["a"].listen);
        assert_eq!(restart, vec!["limits".to_string()]);
    }
}
