//! `infermesh up`: the quickstart on one machine. For now the embedded model server
//! with the example models on the quickstart ports (REST 127.0.0.1:8501, gRPC
//! 127.0.0.1:8500); the mesh in front of it comes with the data-plane work, without
//! changing how it is started.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use infermesh_model_server::{ModelServer, ServerConfig};

use crate::cli::UpArgs;
use crate::model_server::{engine_loader, read_model_config_file};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Finds the model config: as given, else relative to the source tree (so `cargo run`
/// works from any directory of a checkout).
fn locate(path: &PathBuf) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.clone();
    }
    let in_tree = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    if in_tree.exists() {
        in_tree
    } else {
        path.clone()
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let config_file = locate(&args.model_config_file);
    let models = read_model_config_file(&config_file)?;
    let config = ServerConfig {
        grpc_addr: SocketAddr::new(LOOPBACK, 8500),
        rest_addr: SocketAddr::new(LOOPBACK, 8501),
        rest_timeout: Duration::from_secs(30),
        max_body_bytes: 64 * 1024 * 1024,
        poll_wait: Duration::from_secs(1),
        max_concurrent_runs: 0,
        drain_timeout: Duration::from_secs(10),
    };
    let server = ModelServer::bind(config, models, engine_loader())
        .await
        .context("starting the quickstart model server")?;
    let rest = server.rest_addr();
    let grpc = server.grpc_addr();
    println!(
        "infermesh up: serving models from {}",
        config_file.display()
    );
    println!("  REST (TF Serving API): http://{rest}");
    println!("  gRPC (TF Serving API): {grpc}");
    println!("  metrics:               http://{rest}/monitoring/prometheus/metrics");
    println!("Try:");
    println!(
        "  curl -s -X POST http://{rest}/v1/models/half_plus_two/versions/1:predict -d '{{\"instances\": [1.0, 2.0, 5.0]}}'"
    );
    println!("Stop with Ctrl-C.");
    server.run(crate::shutdown::signal()).await?;
    println!("infermesh up: stopped");
    Ok(())
}
