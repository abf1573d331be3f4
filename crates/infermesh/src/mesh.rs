//! `infermesh gateway` and `infermesh sidecar`: load and validate `mesh.yaml` once
//! (exit 64 with file:line errors if it is invalid), then run one data-plane role
//! until Ctrl-C/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use infermesh_config::MeshConfig;
use infermesh_proxy::{Gateway, Sidecar};

use crate::cli::{GatewayArgs, SidecarArgs};
use crate::error::InvalidConfig;

/// Reads and validates the intent file; every error names file, line and field.
pub fn load(path: &Path) -> anyhow::Result<Arc<ArcSwap<MeshConfig>>> {
    let config = infermesh_config::load(path)
        .map_err(|errors| InvalidConfig::error(format!("invalid mesh config:\n{errors}")))?;
    Ok(Arc::new(ArcSwap::from_pointee(config)))
}

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
    let config = load(&args.config)?;
    let gateway = Gateway::bind(config)?;
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening (TF Serving REST and gRPC)");
    }
    gateway.run(crate::shutdown::signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

pub async fn run_sidecar(args: SidecarArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let sidecar = Sidecar::bind(config, &args.workload)?;
    for addr in sidecar.local_addrs() {
        tracing::info!(%addr, workload = %args.workload, "sidecar listening");
    }
    sidecar.run(crate::shutdown::signal()).await?;
    tracing::info!("sidecar stopped");
    Ok(())
}
