//! The gateway and the sidecar: the two listeners of the mesh, built on the same
//! pipeline with a different route stage.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use infermesh_config::MeshConfig;
use infermesh_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::admin::{self, ReadyCheck, ReloadRequest};
use crate::audit::ProxyAudit;
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
    /// Where the admin's `POST /reload` goes.
    reload: Option<mpsc::Sender<ReloadRequest>>,
    /// More `/readyz` checks.
    checks: Vec<ReadyCheck>,
    proxy: Arc<Proxy>,
    /// Client-facing TLS (`gateway.tls`), else plaintext.
    inbound: Inbound,
}

/// The proxy in front of one workload's model server.
#[derive(Debug)]
pub struct Sidecar {
    listener: TcpListener,
    /// The admin listener (`workloads[].admin`), if configured.
    admin: Option<TcpListener>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    checks: Vec<ReadyCheck>,
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
    pub fn bind(
        config: Arc<ArcSwap<MeshConfig>>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Gateway, ProxyError> {
        let addrs = config.load().gateway.listen.clone();
        let listeners = addrs.into_iter().map(bind).collect::<Result<Vec<_>, _>>()?;
        let admin = config.load().gateway.admin.map(bind).transpose()?;
        let mut gateway = Gateway::from_listeners(config, listeners, telemetry)?;
        gateway.admin = admin;
        Ok(gateway)
    }

    /// Where the admin endpoints (`/healthz`, `/readyz`, `/metrics`) listen, if
    /// configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A gateway on already bound listeners (tests bind port 0).
    pub fn from_listeners(
        config: Arc<ArcSwap<MeshConfig>>,
        listeners: Vec<TcpListener>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Gateway, ProxyError> {
        if listeners.is_empty() {
            return Err(ProxyError::NoListener);
        }
        let inbound = Inbound::gateway(&config.load()).map_err(ProxyError::Tls)?;
        Ok(Gateway {
            listeners,
            admin: None,
            reload: None,
            checks: Vec::new(),
            proxy: Arc::new(Proxy::new(Role::Gateway, config, telemetry)),
            inbound,
        })
    }

    /// Serves the admin endpoints on `listener` too (tests bind port 0).
    pub fn with_admin(mut self, listener: TcpListener) -> Gateway {
        self.admin = Some(listener);
        self
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

    /// Lets the admin's `POST /reload` ask `reload` to re-read the config.
    pub fn with_reload(mut self, reload: mpsc::Sender<ReloadRequest>) -> Gateway {
        self.reload = Some(reload);
        self
    }

    /// Adds a `/readyz` check.
    pub fn with_ready_check(mut self, check: ReadyCheck) -> Gateway {
        self.checks.push(check);
        self
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.listeners)
    }

    /// Counters (mirrored and skipped mirror requests, requests handled).
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.proxy.stats.clone()
    }

    /// Records every authorization decision in `audit` (see `audit.rs`). Before
    /// [`Gateway::run`].
    pub fn with_audit(mut self, audit: ProxyAudit) -> Gateway {
        if let Some(proxy) = Arc::get_mut(&mut self.proxy) {
            proxy.audit = Some(audit);
        }
        self
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight
    /// requests finish for up to `limits.drain_timeout`. From the moment shutdown
    /// begins, `/readyz` answers 503.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        run(
            self.listeners,
            (self.admin, self.reload, self.checks),
            (self.proxy, self.inbound),
            shutdown,
        )
        .await
    }
}

/// Serves `listeners` (and the admin listener) until `shutdown`; `/readyz` turns 503
/// from the moment shutdown begins.
async fn run(
    listeners: Vec<TcpListener>,
    (admin, reload, checks): (
        Option<TcpListener>,
        Option<mpsc::Sender<ReloadRequest>>,
        Vec<ReadyCheck>,
    ),
    (proxy, inbound): (Arc<Proxy>, Inbound),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let readiness = Arc::new(admin::Readiness::default());
    let admin_task = admin.map(|listener| {
        let state = admin::Admin {
            readiness: readiness.clone(),
            telemetry: proxy.telemetry.clone(),
            config: proxy.config.clone(),
            role: proxy.role.clone(),
            reload,
            checks,
        };
        tokio::spawn(admin::serve(listener, Arc::new(state)))
    });
    let draining = async move {
        shutdown.await;
        readiness.set_draining();
    };
    let result = listener::serve(listeners, proxy, inbound, draining).await;
    if let Some(task) = admin_task {
        task.abort();
    }
    result
}

impl Sidecar {
    /// Binds the workload's `listen` address (and its `admin`, if set). Call inside
    /// a tokio runtime.
    pub fn bind(
        config: Arc<ArcSwap<MeshConfig>>,
        workload: &str,
        telemetry: Arc<Telemetry>,
    ) -> Result<Sidecar, ProxyError> {
        let (addr, admin) = config
            .load()
            .workloads
            .get(workload)
            .map(|w| (w.listen, w.admin))
            .ok_or_else(|| ProxyError::UnknownWorkload(workload.to_owned()))?;
        let admin = admin.map(bind).transpose()?;
        let mut sidecar = Sidecar::from_listener(config, workload, bind(addr)?, telemetry)?;
        sidecar.admin = admin;
        Ok(sidecar)
    }

    /// Where the admin endpoints listen, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// As [`Gateway::with_reload`].
    pub fn with_reload(mut self, reload: mpsc::Sender<ReloadRequest>) -> Sidecar {
        self.reload = Some(reload);
        self
    }

    /// As [`Gateway::with_ready_check`].
    pub fn with_ready_check(mut self, check: ReadyCheck) -> Sidecar {
        self.checks.push(check);
        self
    }

    /// A sidecar on an already bound listener (tests bind port 0).
    pub fn from_listener(
        config: Arc<ArcSwap<MeshConfig>>,
        workload: &str,
        listener: TcpListener,
        telemetry: Arc<Telemetry>,
    ) -> Result<Sidecar, ProxyError> {
        if !config.load().workloads.contains_key(workload) {
            return Err(ProxyError::UnknownWorkload(workload.to_owned()));
        }
        let role = Role::Sidecar {
            workload: workload.to_owned(),
        };
        Ok(Sidecar {
            listener,
            admin: None,
            reload: None,
            checks: Vec::new(),
            proxy: Arc::new(Proxy::new(role, config, telemetry)),
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

    /// As [`Gateway::with_audit`].
    pub fn with_audit(mut self, audit: ProxyAudit) -> Sidecar {
        if let Some(proxy) = Arc::get_mut(&mut self.proxy) {
            proxy.audit = Some(audit);
        }
        self
    }

    /// As [`Gateway::run`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        run(
            vec![self.listener],
            (self.admin, self.reload, self.checks),
            (self.proxy, self.inbound),
            shutdown,
        )
        .await
    }
}
