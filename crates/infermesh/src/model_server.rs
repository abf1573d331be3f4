//! `infermesh model-server`: turns the TF-Serving-style flags into a server config,
//! wires the tract engine in as the model loader, and serves until Ctrl-C/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use infermesh_model_server::manager::load_model_config_file;
use infermesh_model_server::{Loader, ModelConfig, ModelServer, ServerConfig};

use crate::cli::ModelServerArgs;
use crate::error::InvalidConfig;

/// The model configs the flags name: a config file, or one model by name and path.
pub fn model_configs(args: &ModelServerArgs) -> anyhow::Result<Vec<ModelConfig>> {
    if let Some(file) = &args.model_config_file {
        return read_model_config_file(file);
    }
    let Some(base_path) = &args.model_base_path else {
        return Err(InvalidConfig::error(
            "either --model-base-path (with --model-name) or --model-config-file is required",
        ));
    };
    let base_path = std::path::absolute(base_path).unwrap_or_else(|_| base_path.clone());
    Ok(vec![ModelConfig::single(&args.model_name, base_path)])
}

pub fn read_model_config_file(file: &Path) -> anyhow::Result<Vec<ModelConfig>> {
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    load_model_config_file(&file)
        .map_err(|e| InvalidConfig::error(format!("model config file {}: {e}", file.display())))
}

pub fn server_config(args: &ModelServerArgs) -> ServerConfig {
    ServerConfig {
        grpc_addr: SocketAddr::new(args.bind_address, args.port),
        rest_addr: SocketAddr::new(args.bind_address, args.rest_api_port),
        rest_timeout: Duration::from_millis(args.rest_api_timeout_in_ms.max(1)),
        max_body_bytes: args.max_body_bytes,
        poll_wait: Duration::from_secs(args.file_system_poll_wait_seconds),
        max_concurrent_runs: args.max_concurrent_runs,
        drain_timeout: Duration::from_secs(10),
    }
}

/// The tract engine, as the model manager's loader.
pub fn engine_loader() -> Loader {
    Arc::new(|dir: &Path| infermesh_engine::load(dir).map_err(|e| e.to_string()))
}

pub async fn run(args: ModelServerArgs) -> anyhow::Result<()> {
    let models = model_configs(&args)?;
    let server = ModelServer::bind(server_config(&args), models, engine_loader())
        .await
        .context("starting the model server")?;
    tracing::info!(
        rest = %server.rest_addr(),
        grpc = %server.grpc_addr(),
        "model server listening"
    );
    server.run(crate::shutdown::signal()).await?;
    tracing::info!("model server stopped");
    Ok(())
}
