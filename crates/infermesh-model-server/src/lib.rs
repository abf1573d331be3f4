//! The embedded TensorFlow-Serving-compatible model server: the model manager (version
//! directories in step with the disk), the REST and gRPC APIs over it, and TF
//! Serving's monitoring metrics. The inference engine is injected as a `Loader`, so
//! this crate does not depend on it.
#![forbid(unsafe_code)]

pub mod drain;
pub mod grpc;
pub mod manager;
pub mod metrics;
pub mod rest;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use infermesh_tfserving::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use infermesh_tfserving::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use manager::{Loader, ModelConfig, ModelManager, VersionPolicy};

/// How the server listens and its limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub grpc_addr: SocketAddr,
    pub rest_addr: SocketAddr,
    /// Every REST request is answered within this time (504 after it).
    pub rest_timeout: Duration,
    /// Largest request body (REST) or message (gRPC) accepted.
    pub max_body_bytes: usize,
    /// Seconds between version-directory scans; zero scans only at start.
    pub poll_wait: Duration,
    /// Inference runs at once; zero means twice the CPUs.
    pub max_concurrent_runs: usize,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({api}): {source}")]
    Bind {
        api: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving {api} failed: {source}")]
    Serve {
        api: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A bound, loaded model server, ready to run.
pub struct ModelServer {
    config: ServerConfig,
    rest: TcpListener,
    grpc: TcpListener,
    models: service::Models,
    registry: Arc<Registry>,
}

impl ModelServer {
    /// Binds both ports (so a busy port fails at once), then loads every model's
    /// versions once before answering.
    pub async fn bind(
        config: ServerConfig,
        models: Vec<ModelConfig>,
        loader: Loader,
    ) -> Result<ModelServer, StartError> {
        let rest = bind("REST", config.rest_addr).await?;
        let grpc = bind("gRPC", config.grpc_addr).await?;
        let mut registry = Registry::default();
        let metrics = metrics::Metrics::register(&mut registry);
        let manager = ModelManager::new(models, loader);
        manager.poll_once().await;
        let runs = if config.max_concurrent_runs == 0 {
            2 * std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.max_concurrent_runs
        };
        Ok(ModelServer {
            models: service::Models::new(manager, metrics, runs),
            registry: Arc::new(registry),
            config,
            rest,
            grpc,
        })
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.rest.local_addr().unwrap_or(self.config.rest_addr)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc_addr)
    }

    pub fn manager(&self) -> &Arc<ModelManager> {
        self.models.manager()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight
    /// requests finish (up to the drain timeout).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let watcher = if self.config.poll_wait.is_zero() {
            None
        } else {
            Some(self.models.manager().spawn_watcher(self.config.poll_wait))
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        let grpc_service = grpc::Grpc::new(self.models.clone());
        let max = self.config.max_body_bytes;
        let mut grpc_stop = stop_rx.clone();
        let grpc_server = tonic::transport::Server::builder()
            .layer(tower::util::MapResponseLayer::new(
                grpc::over_limit_is_resource_exhausted,
            ))
            .add_service(
                PredictionServiceServer::new(grpc_service.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(ModelServiceServer::new(grpc_service).max_decoding_message_size(max))
            .serve_with_incoming_shutdown(
                // TCP_NODELAY, as on the REST side: a proxy multiplexes many gRPC calls
                // over one HTTP/2 connection, and Nagle's algorithm would hold small
                // responses back for milliseconds.
                tonic::transport::server::TcpIncoming::from(self.grpc).with_nodelay(Some(true)),
                async move { stopped(&mut grpc_stop).await },
            );

        let rest_state = rest::Rest::new(
            self.models.clone(),
            self.registry.clone(),
            self.config.rest_timeout,
            max,
        );
        let rest_server = rest::serve(self.rest, rest_state, stop_rx, self.config.drain_timeout);

        let (grpc_result, rest_result) = tokio::join!(grpc_server, rest_server);
        if let Some(w) = watcher {
            w.abort();
        }
        grpc_result.map_err(|e| StartError::Serve {
            api: "gRPC",
            source: Box::new(e),
        })?;
        rest_result.map_err(|e| StartError::Serve {
            api: "REST",
            source: Box::new(e),
        })
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn bind(api: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { api, addr, source })
}
