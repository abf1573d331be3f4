//! The admin listener (`gateway.admin`, 127.0.0.1:15020 in the quickstart; a
//! sidecar's `workloads[].admin` when it runs on its own):
//!
//! * `GET /healthz` — the process serves (200 `ok`);
//! * `GET /readyz` — it takes traffic: 200 when its upstreams accept connections
//!   (the gateway: at least one sidecar endpoint of every workload that serves a
//!   model; a sidecar: its model server's REST and gRPC ports), 503 with the failing
//!   checks otherwise, and 503 `draining` from the moment shutdown begins, so a load
//!   balancer or Kubernetes stops sending before the listeners close; other
//!   components add checks (the workload certificate is valid);
//! * `GET /metrics` — the process's metrics, Prometheus text 0.0.4, or OpenMetrics
//!   when the `Accept` header asks for it;
//! * `POST /reload` — re-read `mesh.yaml` now: 200 with what changed (or `unchanged`),
//!   422 with the file:line errors when the file is invalid (the running config keeps
//!   serving). The admin listener has no authentication: bind it to loopback or a
//!   pod-internal address.
//!
//! Anything else is 404.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use infermesh_config::{Address, MeshConfig};
use infermesh_telemetry::{Telemetry, exposition};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::Role;

/// How long a readiness probe waits for an upstream to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether the process still takes new traffic.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A `POST /reload` handed to whoever watches the config file: it answers with an
/// HTTP status and a text body.
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: oneshot::Sender<(u16, String)>,
}

/// How long `POST /reload` waits for the reload to finish.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct Admin {
    pub readiness: Arc<Readiness>,
    pub telemetry: Arc<Telemetry>,
    pub config: Arc<ArcSwap<MeshConfig>>,
    pub role: Role,
    /// Where `POST /reload` goes (none: the config is not reloadable here).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// More readiness checks (e.g. the workload certificate is valid).
    pub checks: Vec<ReadyCheck>,
}

/// A readiness check another component provides: its name, and `Ok(detail)` or
/// `Err(why)`.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: String,
    pub check: Arc<dyn Fn() -> Result<String, String> + Send + Sync>,
}

impl std::fmt::Debug for ReadyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyCheck")
            .field("name", &self.name)
            .finish()
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn answer(admin: &Admin, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == "/reload" {
        if request.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
        }
        return reload(admin).await;
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => ready(admin).await,
        "/metrics" => {
            let accept = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let metrics = &admin.telemetry.metrics;
            let (body, content_type) = if exposition::wants_openmetrics(accept) {
                (metrics.openmetrics(), exposition::OPENMETRICS)
            } else {
                (metrics.prometheus_text(), exposition::PROMETHEUS_TEXT)
            };
            let mut response = text(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn reload(admin: &Admin) -> Response<Full<Bytes>> {
    let Some(sender) = &admin.reload else {
        return text(
            StatusCode::NOT_FOUND,
            "this process does not reload its config\n",
        );
    };
    let (reply, answer) = oneshot::channel();
    if sender.send(ReloadRequest { reply }).await.is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the config watcher has stopped\n",
        );
    }
    match tokio::time::timeout(RELOAD_TIMEOUT, answer).await {
        Ok(Ok((status, body))) => text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        ),
        Ok(Err(_)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the config watcher has stopped\n",
        ),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            "the reload did not finish in time\n",
        ),
    }
}

/// The upstream checks of `/readyz`: (what, addresses — one must accept).
fn checks(config: &MeshConfig, role: &Role) -> Vec<(String, Vec<SocketAddr>)> {
    let sockets = |addrs: &[Address]| -> Vec<SocketAddr> {
        addrs
            .iter()
            .filter_map(|a| match a {
                Address::Socket(s) => Some(*s),
                // Host names are resolved by the endpoint sets; not probed here.
                Address::Host { .. } => None,
            })
            .collect()
    };
    match role {
        Role::Gateway => config
            .workloads
            .values()
            .filter(|w| config.models.values().any(|m| m.served_by == w.name))
            .map(|w| {
                (
                    format!("workload {} sidecar", w.name),
                    sockets(&w.endpoints),
                )
            })
            .filter(|(_, addrs)| !addrs.is_empty())
            .collect(),
        Role::Sidecar { workload } => match config.workloads.get(workload) {
            Some(w) => vec![
                (
                    "model server REST".to_owned(),
                    sockets(std::slice::from_ref(&w.upstream.rest)),
                ),
                (
                    "model server gRPC".to_owned(),
                    sockets(std::slice::from_ref(&w.upstream.grpc)),
                ),
            ]
            .into_iter()
            .filter(|(_, addrs)| !addrs.is_empty())
            .collect(),
            None => Vec::new(),
        },
    }
}

async fn reachable(addrs: &[SocketAddr]) -> bool {
    for addr in addrs {
        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await {
            return true;
        }
    }
    false
}

pub(crate) async fn ready(admin: &Admin) -> Response<Full<Bytes>> {
    if admin.readiness.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let config = admin.config.load_full();
    let checks = checks(&config, &admin.role);
    let results = futures::future::join_all(checks.iter().map(|(_, addrs)| reachable(addrs))).await;
    let mut body = String::new();
    let mut all = true;
    for ((what, addrs), ok) in checks.iter().zip(results) {
        all &= ok;
        let state = if ok { "ok" } else { "unreachable" };
        let _ = writeln!(body, "{what}: {state} ({addrs:?})");
    }
    for check in &admin.checks {
        match (check.check)() {
            Ok(detail) => {
                let _ = writeln!(body, "{}: ok ({detail})", check.name);
            }
            Err(why) => {
                all = false;
                let _ = writeln!(body, "{}: failing ({why})", check.name);
            }
        }
    }
    if all {
        text(StatusCode::OK, format!("ready\n{body}"))
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{body}"),
        )
    }
}

/// Serves the admin endpoints until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let admin = admin.clone();
            async move { Ok::<_, Infallible>(answer(&admin, &request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("admin connection ended: {e}");
            }
        });
    }
}
