//! `infermesh gateway` and `infermesh sidecar`: load and validate `mesh.yaml` (exit 64
//! with file:line errors if it is invalid), then run one data-plane role until
//! Ctrl-C/SIGTERM, reloading the file when it changes or on SIGHUP (`reload.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::Ordering;

use infermesh_proxy::{Gateway, Sidecar};
use infermesh_telemetry::{Kind, Telemetry};

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
    let reloader = reload::load(&args.config, reload::Role::Gateway)?;
    let telemetry = start_telemetry(&reloader)?;
    let gateway = Gateway::bind(reloader.config(), telemetry)?.with_reload(reloader.admin_sender());
    let _reload = reloader.spawn();
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening (TF Serving REST and gRPC)");
    }
    if let Some(addr) = gateway.admin_addr() {
        tracing::info!(%addr, "admin listening (/healthz, /readyz, /metrics)");
    }
    gateway.run(crate::shutdown::signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

pub async fn run_sidecar(args: SidecarArgs) -> anyhow::Result<()> {
    let role = reload::Role::Sidecar {
        workload: args.workload.clone(),
    };
    let reloader = reload::load(&args.config, role)?;
    let telemetry = start_telemetry(&reloader)?;
    let sidecar = Sidecar::bind(reloader.config(), &args.workload, telemetry)?
        .with_reload(reloader.admin_sender());
    let _reload = reloader.spawn();
    for addr in sidecar.local_addrs() {
        tracing::info!(%addr, workload = %args.workload, "sidecar listening");
    }
    if let Some(addr) = sidecar.admin_addr() {
        tracing::info!(%addr, "admin listening (/healthz, /readyz, /metrics)");
    }
    sidecar.run(crate::shutdown::signal()).await?;
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
