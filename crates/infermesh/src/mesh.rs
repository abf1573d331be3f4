//! `infermesh gateway` and `infermesh sidecar`: load and validate `mesh.yaml` (exit 64
//! with file:line errors if it is invalid), then run one data-plane role until
//! Ctrl-C/SIGTERM, reloading the file when it changes or on SIGHUP (`reload.rs`).

use std::path::{Path, PathBuf};

use infermesh_proxy::{Gateway, Sidecar};

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
    let reloader = reload::load(&args.config, reload::Role::Gateway)?;
    let mut gateway = Gateway::bind(reloader.config())?;
    let mesh = reloader.config().load_full();
    match crate::identity::Provider::new(&mesh, Path::new(DEFAULT_CA_DIR), false, false)? {
        Some(provider) => {
            let identity = provider.start(provider.gateway_id()?)?;
            tracing::info!(spiffe_id = %identity.id(), "gateway identity: mTLS to sidecars");
            gateway = gateway.with_identity(identity);
        }
        None => tracing::warn!(
            "no `identity:` in the mesh file: gateway → sidecar traffic is plaintext"
        ),
    }
    let _reload = reloader.spawn();
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening (TF Serving REST and gRPC)");
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
    let mut sidecar = Sidecar::bind(reloader.config(), &args.workload)?;
    let mesh = reloader.config().load_full();
    match crate::identity::Provider::new(&mesh, Path::new(DEFAULT_CA_DIR), false, false)? {
        Some(provider) => {
            let workload = &mesh.workloads[&args.workload];
            let identity = provider.start(provider.workload_id(workload)?)?;
            tracing::info!(spiffe_id = %identity.id(), mode = ?workload.mtls, "sidecar identity");
            sidecar = sidecar.with_identity(&args.workload, identity)?;
        }
        None => {
            tracing::warn!("no `identity:` in the mesh file: the sidecar accepts plaintext only")
        }
    }
    let _reload = reloader.spawn();
    for addr in sidecar.local_addrs() {
        tracing::info!(%addr, workload = %args.workload, "sidecar listening");
    }
    sidecar.run(crate::shutdown::signal()).await?;
    tracing::info!("sidecar stopped");
    Ok(())
}
