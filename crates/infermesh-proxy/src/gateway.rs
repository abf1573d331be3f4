//! The gateway and the sidecar: the two listeners of the mesh, built on the same
//! pipeline with a different route stage.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use infermesh_config::MeshConfig;
use tokio::net::TcpListener;

use crate::admin;
use crate::error::ProxyError;
use crate::listener;
use crate::mtls::Inbound;
use crate::pipeline::{Proxy, ProxyStats, Role};
use infermesh_identity::WorkloadIdentity;

/// The mesh's entry point: routes TF Serving REST and gRPC requests by model and
/// version to the sidecars of the workloads serving them.
#[derive(Debug)]
pub struct Gateway {
    listeners: Vec<TcpListener>,
    /// The admin listener (`gateway.admin`), if configured.
    admin: Option<TcpListener>,
    proxy: Arc<Proxy>,
    /// Client-facing TLS (`gateway.tls`), else plaintext.
    inbound: Inbound,
}

/// The proxy in front of one workload's model server.
#[derive(Debug)]
pub struct Sidecar {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    /// The workload's peer authentication mode; plaintext until an identity is given.
    inbound: Inbound,
}

/// Binds a socket address (call inside a tokio runtime).
fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    let std =
        std::net::TcpListener::bind(addr).map_err(|source| ProxyError::Bind { addr, source })?;
    std.set_nonblocking(true)?;
    Ok(TcpListener::from_std(std)?)
}

fn local_addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect()
}

impl Gateway {
    /// Binds every `gateway.listen` address. Call inside a tokio runtime.
    pub fn bind(config: Arc<ArcSwap<MeshConfig>>) -> Result<Gateway, ProxyError> {
        let addrs = config.load().gateway.listen.clone();
        let listeners = addrs.into_iter().map(bind).collect::<Result<Vec<_>, _>>()?;
        let admin = config.load().gateway.admin.map(bind).transpose()?;
        let mut gateway = Gateway::from_listeners(config, listeners)?;
        gateway.admin = admin;
        Ok(gateway)
    }

    /// Where the admin endpoints (`/healthz`, `/readyz`) listen, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A gateway on already bound listeners (tests bind port 0).
    pub fn from_listeners(
        config: Arc<ArcSwap<MeshConfig>>,
        listeners: Vec<TcpListener>,
    ) -> Result<Gateway, ProxyError> {
        if listeners.is_empty() {
            return Err(ProxyError::NoListener);
        }
        let inbound = Inbound::gateway(&config.load()).map_err(ProxyError::Tls)?;
        Ok(Gateway {
            listeners,
            admin: None,
            proxy: Arc::new(Proxy::new(Role::Gateway, config)),
            inbound,
        })
    }

    /// Calls to sidecars go over mTLS as `identity` (the gateway's), each sidecar
    /// required to prove its workload's SPIFFE ID (not for `mtls: DISABLE`
    /// workloads). Before [`Gateway::run`].
    pub fn with_identity(mut self, identity: Arc<WorkloadIdentity>) -> Gateway {
        if let Some(proxy) = Arc::get_mut(&mut self.proxy) {
            proxy.set_upstream_tls(identity);
        }
        self
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.listeners)
    }

    /// Counters (mirrored and skipped mirror requests, requests handled).
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.proxy.stats.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight
    /// requests finish for up to `limits.drain_timeout`. From the moment shutdown
    /// begins, `/readyz` answers 503.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let readiness = Arc::new(admin::Readiness::default());
        let admin_task = self
            .admin
            .map(|listener| tokio::spawn(admin::serve(listener, readiness.clone())));
        let draining = async move {
            shutdown.await;
            readiness.set_draining();
        };
        let result = listener::serve(self.listeners, self.proxy, self.inbound, draining).await;
        if let Some(task) = admin_task {
            task.abort();
        }
        result
    }
}

impl Sidecar {
    /// Binds the workload's `listen` address. Call inside a tokio runtime.
    pub fn bind(config: Arc<ArcSwap<MeshConfig>>, workload: &str) -> Result<Sidecar, ProxyError> {
        let addr = config
            .load()
            .workloads
            .get(workload)
            .map(|w| w.listen)
            .ok_or_else(|| ProxyError::UnknownWorkload(workload.to_owned()))?;
        Sidecar::from_listener(config, workload, bind(addr)?)
    }

    /// A sidecar on an already bound listener (tests bind port 0).
    pub fn from_listener(
        config: Arc<ArcSwap<MeshConfig>>,
        workload: &str,
        listener: TcpListener,
    ) -> Result<Sidecar, ProxyError> {
        if !config.load().workloads.contains_key(workload) {
            return Err(ProxyError::UnknownWorkload(workload.to_owned()));
        }
        let role = Role::Sidecar {
            workload: workload.to_owned(),
        };
        Ok(Sidecar {
            listener,
            proxy: Arc::new(Proxy::new(role, config)),
            inbound: Inbound::Plain,
        })
    }

    /// Terminates mTLS as `identity` (the workload's) per the workload's `mtls`
    /// mode (STRICT, PERMISSIVE, DISABLE). Before [`Sidecar::run`].
    pub fn with_identity(
        mut self,
        workload: &str,
        identity: Arc<WorkloadIdentity>,
    ) -> Result<Sidecar, ProxyError> {
        let config = self.proxy.config.load_full();
        let w = config
            .workloads
            .get(workload)
            .ok_or_else(|| ProxyError::UnknownWorkload(workload.to_owned()))?;
        self.inbound = Inbound::sidecar(&config, w, identity).map_err(ProxyError::Tls)?;
        Ok(self)
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(std::slice::from_ref(&self.listener))
    }

    pub fn stats(&self) -> Arc<ProxyStats> {
        self.proxy.stats.clone()
    }

    /// As [`Gateway::run`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        listener::serve(vec![self.listener], self.proxy, self.inbound, shutdown).await
    }
}
