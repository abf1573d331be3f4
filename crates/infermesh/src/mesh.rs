//! `infermesh gateway` and `infermesh sidecar`: load and validate `mesh.yaml` (exit 64
//! with file:line errors if it is invalid), then run one data-plane role until
//! Ctrl-C/SIGTERM, reloading the file when it changes or on SIGHUP (`reload.rs`), and
//! writing the audit trail when the mesh has `audit:` (`trail.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::Ordering;

use infermesh_proxy::{Gateway, ProxyAudit, Sidecar};
use infermesh_telemetry::{Kind, Telemetry};

use crate::cli::{GatewayArgs, SidecarArgs};
use crate::identity::DEFAULT_CA_DIR;
use crate::reload;

/// A path given on the command line, or else the same path in this source tree (so
/// `cargo run -- up` works from any directory of a checkout).
pub fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let in_tree = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    if in_tree.exists() {
        in_tree
    } else {
        path.to_path_buf()
    }
}

pub async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let mut reloader = reload::load(&args.config, reload::Role::Gateway)?;
    let telemetry = start_telemetry(&reloader)?;
    let mut gateway =
        Gateway::bind(reloader.config(), telemetry.clone())?.with_reload(reloader.admin_sender());
    let audit = reloader.open_audit()?;
    if let Some(log) = &audit {
        audit_metrics(&telemetry, log);
        gateway = gateway.with_audit(proxy_audit(&reloader, log));
    }
    let mesh = reloader.config().load_full();
    match crate::identity::Provider::new(&mesh, Path::new(DEFAULT_CA_DIR), false, false)? {
        Some(provider) => {
            let identity = provider.start(provider.gateway_id()?)?;
            tracing::info!(spiffe_id = %identity.id(), "gateway identity: mTLS to sidecars");
            crate::identity::observe(std::slice::from_ref(&identity), &telemetry, audit.as_ref());
            gateway = gateway
                .with_ready_check(crate::identity::ready_check(&identity))
                .with_identity(identity);
        }
        None => tracing::warn!(
            "no `identity:` in the mesh file: gateway → sidecar traffic is plaintext"
        ),
    }
    let _reload = reloader.spawn();
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening (TF Serving REST and gRPC)");
    }
    if let Some(addr) = gateway.admin_addr() {
        tracing::info!(%addr, "admin listening (/healthz, /readyz, /metrics)");
    }
    let result = gateway.run(crate::shutdown::signal()).await;
    if let Some(log) = &audit {
        crate::trail::close(log, &reload::Role::Gateway).await;
    }
    result?;
    tracing::info!("gateway stopped");
    Ok(())
}

pub async fn run_sidecar(args: SidecarArgs) -> anyhow::Result<()> {
    let role = reload::Role::Sidecar {
        workload: args.workload.clone(),
    };
    let mut reloader = reload::load(&args.config, role.clone())?;
    let telemetry = start_telemetry(&reloader)?;
    let mut sidecar = Sidecar::bind(reloader.config(), &args.workload, telemetry.clone())?
        .with_reload(reloader.admin_sender());
    let audit = reloader.open_audit()?;
    if let Some(log) = &audit {
        audit_metrics(&telemetry, log);
        sidecar = sidecar.with_audit(proxy_audit(&reloader, log));
    }
    let mesh = reloader.config().load_full();
    match crate::identity::Provider::new(&mesh, Path::new(DEFAULT_CA_DIR), false, false)? {
        Some(provider) => {
            let workload = &mesh.workloads[&args.workload];
            let identity = provider.start(provider.workload_id(workload)?)?;
            tracing::info!(spiffe_id = %identity.id(), mode = ?workload.mtls, "sidecar identity");
            crate::identity::observe(std::slice::from_ref(&identity), &telemetry, audit.as_ref());
            sidecar = sidecar
                .with_ready_check(crate::identity::ready_check(&identity))
                .with_identity(&args.workload, identity)?;
        }
        None => {
            tracing::warn!("no `identity:` in the mesh file: the sidecar accepts plaintext only")
        }
    }
    let _reload = reloader.spawn();
    for addr in sidecar.local_addrs() {
        tracing::info!(%addr, workload = %args.workload, "sidecar listening");
    }
    if let Some(addr) = sidecar.admin_addr() {
        tracing::info!(%addr, "admin listening (/healthz, /readyz, /metrics)");
    }
    let result = sidecar.run(crate::shutdown::signal()).await;
    if let Some(log) = &audit {
        crate::trail::close(log, &role).await;
    }
    result?;
    tracing::info!("sidecar stopped");
    Ok(())
}

/// The process's telemetry (metrics always; access log and span export as
/// `telemetry:` says), with the reloader's counts among the metrics. Call inside the
/// tokio runtime.
pub fn start_telemetry(reloader: &reload::Reloader) -> anyhow::Result<Arc<Telemetry>> {
    let telemetry = Telemetry::start(&reloader.config().load().telemetry)
        .map_err(|e| anyhow::anyhow!("starting the access log failed: {e}"))?;
    let stats = reloader.stats();
    let applied = stats.clone();
    telemetry.metrics.external(
        "infermesh_config_reloads_applied",
        "Reloads of mesh.yaml that took effect",
        Kind::Counter,
        move || applied.applied.load(Ordering::Relaxed) as f64,
    );
    telemetry.metrics.external(
        "infermesh_config_reloads_rejected",
        "Reloads of mesh.yaml rejected as invalid (the previous config kept serving)",
        Kind::Counter,
        move || stats.rejected.load(Ordering::Relaxed) as f64,
    );
    Ok(Arc::new(telemetry))
}

/// The proxies' view of the trail: the log and which allows it records.
pub fn proxy_audit(reloader: &reload::Reloader, log: &infermesh_audit::AuditLog) -> ProxyAudit {
    let allows = reloader
        .config()
        .load()
        .audit
        .as_ref()
        .map_or(infermesh_config::RecordAllows::All, |a| a.record_allows);
    ProxyAudit::new(log.clone(), allows)
}

/// The audit trail's counters on `/metrics` (read at every scrape).
pub fn audit_metrics(telemetry: &Telemetry, log: &infermesh_audit::AuditLog) {
    let m = &telemetry.metrics;
    let stat = |read: fn(&infermesh_audit::AuditStats) -> f64| {
        let log = log.clone();
        move || read(&log.stats())
    };
    m.external(
        "infermesh_audit_records",
        "Audit records written (checkpoints included)",
        Kind::Counter,
        stat(|s| s.records as f64),
    );
    m.external(
        "infermesh_audit_fsyncs",
        "fsyncs of the audit trail (group commit: fewer than records)",
        Kind::Counter,
        stat(|s| s.fsyncs as f64),
    );
    m.external(
        "infermesh_audit_write_failures",
        "Audit batches whose write or fsync failed (disk full, I/O error)",
        Kind::Counter,
        stat(|s| s.write_failures as f64),
    );
    m.external(
        "infermesh_audit_lost_records",
        "Audit records that never reached the file",
        Kind::Counter,
        stat(|s| s.lost as f64),
    );
    m.external(
        "infermesh_audit_refused_requests",
        "Requests refused because their audit record could not be made durable (strict)",
        Kind::Counter,
        stat(|s| s.refused as f64),
    );
    m.external(
        "infermesh_audit_backlog_records",
        "Audit records submitted and not yet written",
        Kind::Gauge,
        stat(|s| s.backlog as f64),
    );
    m.external(
        "infermesh_audit_unavailable",
        "1 while the audit trail cannot be written (strict mode refuses requests)",
        Kind::Gauge,
        stat(|s| f64::from(u8::from(s.unavailable))),
    );
    m.external(
        "infermesh_audit_write_seconds",
        "Time spent writing and syncing audit batches",
        Kind::Counter,
        stat(|s| s.write_time_total.as_secs_f64()),
    );
    m.external(
        "infermesh_audit_write_max_seconds",
        "The longest write and sync of one audit batch so far",
        Kind::Gauge,
        stat(|s| s.write_time_max.as_secs_f64()),
    );
    m.external(
        "infermesh_audit_sink_dropped_records",
        "Audit records dropped before the external sink (relaxed mode never waits for it)",
        Kind::Counter,
        stat(|s| s.sink_dropped as f64),
    );
}
