//! `infermesh gateway` and `infermesh sidecar`: load and validate `mesh.yaml` (exit 64
//! with file:line errors if it is invalid), then run one data-plane role until
//! Ctrl-C/SIGTERM, reloading the file when it changes or on SIGHUP (`reload.rs`), and
//! writing the audit trail when the mesh has `audit:` (`trail.rs`).

use std::path::{Path, PathBuf};

use infermesh_proxy::{Gateway, ProxyAudit, Sidecar};

use crate::cli::{GatewayArgs, SidecarArgs};
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
    let mut gateway = Gateway::bind(reloader.config())?;
    let audit = reloader.open_audit()?;
    if let Some(log) = &audit {
        gateway = gateway.with_audit(proxy_audit(&reloader, log));
    }
    let _reload = reloader.spawn();
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening (TF Serving REST and gRPC)");
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
    let mut sidecar = Sidecar::bind(reloader.config(), &args.workload)?;
    let audit = reloader.open_audit()?;
    if let Some(log) = &audit {
        sidecar = sidecar.with_audit(proxy_audit(&reloader, log));
    }
    let _reload = reloader.spawn();
    for addr in sidecar.local_addrs() {
        tracing::info!(%addr, workload = %args.workload, "sidecar listening");
    }
    let result = sidecar.run(crate::shutdown::signal()).await;
    if let Some(log) = &audit {
        crate::trail::close(log, &role).await;
    }
    result?;
    tracing::info!("sidecar stopped");
    Ok(())
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
