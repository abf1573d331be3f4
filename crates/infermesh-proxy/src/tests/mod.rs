//! Loopback tests of the whole pipeline: a fake TF-Serving-ish upstream (REST answers
//! with the path it saw and the body size; gRPC echoes the `ModelSpec` it got), a
//! sidecar in front of it and a gateway in front of the sidecar, all on port 0.

mod audit_wire;
mod authz_wire;
mod fake;
mod grpc_smuggle;
mod grpc_wire;
mod rest_wire;
mod telemetry_wire;
mod tls_wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use infermesh_config::{
    Address, AuthzSettings, Gateway as GatewayConfig, Limits, MeshConfig, Model, OutlierDetection,
    RetryPolicy, Route, Upstream, Workload,
};
use infermesh_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::body::BoxError;
use crate::{Gateway, ProxyStats, Sidecar};

pub use fake::Fake;

/// A model `name` served by `workload`: versions 1 (stable) and 2 (canary), split
/// 90/10, pin header `x-model-version`, 2 s timeout, retries on connect failure.
pub fn model(name: &str, workload: &str) -> Model {
    Model {
        name: name.into(),
        served_by: workload.into(),
        versions: vec![1, 2],
        labels: BTreeMap::from([("stable".into(), 1), ("canary".into(), 2)]),
        route: Route {
            split: vec![(1, 90), (2, 10)],
            pin_header: Some(HeaderName::from_static("x-model-version")),
            sticky_header: None,
            mirror: None,
            timeout: Duration::from_secs(2),
            retries: RetryPolicy {
                attempts: 2,
                on_connect_failure: true,
                on_unavailable: true,
                idempotent: false,
                budget_ratio: 0.2,
                min_retries_per_second: 10,
            },
        },
    }
}

/// A mesh with workload `w` (sidecar at `sidecar`, model server at `upstream`) and
/// models `m` and `slow` (300 ms timeout); no policies and `default_deny: false`, so
/// routing tests see every request through (authorization tests add policies with
/// [`set_policies`]).
pub fn mesh(sidecar: SocketAddr, upstream: SocketAddr) -> MeshConfig {
    let workload = Workload {
        name: "w".into(),
        namespace: "ml".into(),
        service_account: "tfserving".into(),
        listen: sidecar,
        upstream: Upstream {
            rest: Address::Socket(upstream),
            grpc: Address::Socket(upstream),
        },
        endpoints: vec![Address::Socket(sidecar)],
        embedded_model_server: None,
        admin: None,
        mtls: Default::default(),
        allowed_peers: Vec::new(),
    };
    let mut slow = model("slow", "w");
    slow.route.timeout = Duration::from_millis(300);
    MeshConfig {
        trust_domain: "cluster.local".into(),
        workloads: BTreeMap::from([("w".into(), Arc::new(workload))]),
        models: BTreeMap::from([
            ("m".into(), Arc::new(model("m", "w"))),
            ("slow".into(), Arc::new(slow)),
        ]),
        gateway: GatewayConfig {
            listen: vec![],
            admin: None,
            tls: None,
        },
        limits: Limits {
            max_request_body_bytes: 16 << 20,
            max_header_bytes: 16 << 10,
            max_concurrent_streams: 100,
            max_connections: 1000,
            connect_timeout: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(5),
        },
        outlier_detection: OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection_percent: 50,
        },
        dns_refresh: Duration::from_secs(30),
        issuers: Vec::new(),
        dev_issuer: None,
        policies: Vec::new(),
        istio_files: Vec::new(),
        authz: AuthzSettings {
            default_deny: false,
            ..AuthzSettings::default()
        },
        telemetry: Default::default(),
        audit: None,
        identity: None,
    }
}

/// Replaces the policies and `authorization` settings of `config` with those of a
/// `mesh.yaml` fragment (`policies: ...` and optionally `authorization: ...`),
/// checked by the config crate against the config's models (versions 1 and 2).
pub fn set_policies(config: &mut MeshConfig, fragment: &str) {
    let mut text = String::from(
        "workloads:\n  - {name: w, namespace: ml, listen: 127.0.0.1:1, \
         upstream: {rest: 127.0.0.1:2, grpc: 127.0.0.1:3}}\nmodels:\n",
    );
    for name in config.models.keys() {
        text.push_str(&format!(
            "  - {{name: {name}, served_by: w, versions: [{{version: 1, label: stable}}, \
             {{version: 2, label: canary}}]}}\n"
        ));
    }
    text.push_str(fragment);
    let parsed = infermesh_config::parse(&text, std::path::Path::new("policies.yaml"))
        .unwrap_or_else(|e| panic!("test policies do not parse:\n{e}\n{text}"));
    config.policies = parsed.policies;
    config.authz = parsed.authz;
}

/// A running gateway → sidecar → fake upstream.
pub struct Mesh {
    pub gateway: SocketAddr,
    pub sidecar: SocketAddr,
    pub fake: Fake,
    pub gateway_stats: Arc<ProxyStats>,
    pub config: Arc<ArcSwap<MeshConfig>>,
    /// The gateway's admin listener.
    pub admin: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<Result<(), crate::ProxyError>>>,
}

impl Mesh {
    pub async fn start() -> Mesh {
        Mesh::start_with(|_| {}).await
    }

    /// Starts with the config changed by `edit` (addresses are already filled in).
    pub async fn start_with(edit: impl FnOnce(&mut MeshConfig)) -> Mesh {
        Mesh::start_with_telemetry(edit, Arc::default()).await
    }

    /// As [`Mesh::start_with`], recording into `telemetry`.
    pub async fn start_with_telemetry(
        edit: impl FnOnce(&mut MeshConfig),
        telemetry: Arc<Telemetry>,
    ) -> Mesh {
        let fake = Fake::start().await;
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let sidecar_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sidecar = sidecar_listener.local_addr().unwrap();
        let gateway = gateway_listener.local_addr().unwrap();
        let mut config = mesh(sidecar, fake.addr);
        config.gateway.listen = vec![gateway];
        edit(&mut config);
        let config = Arc::new(ArcSwap::from_pointee(config));
        let sidecar_proxy =
            Sidecar::from_listener(config.clone(), "w", sidecar_listener, telemetry.clone())
                .unwrap();
        let gateway_proxy =
            Gateway::from_listeners(config.clone(), vec![gateway_listener], telemetry.clone())
                .unwrap()
                .with_admin(admin_listener);
        let gateway_stats = gateway_proxy.stats();
        let (stop_sidecar, rx_sidecar) = oneshot::channel::<()>();
        let (stop_gateway, rx_gateway) = oneshot::channel::<()>();
        let tasks = vec![
            tokio::spawn(sidecar_proxy.run(async move {
                let _ = rx_sidecar.await;
            })),
            tokio::spawn(gateway_proxy.run(async move {
                let _ = rx_gateway.await;
            })),
        ];
        Mesh {
            gateway,
            sidecar,
            fake,
            gateway_stats,
            config,
            admin,
            stop: vec![stop_sidecar, stop_gateway],
            tasks,
        }
    }

    /// Triggers graceful shutdown of gateway and sidecar; returns their run tasks.
    pub fn shutdown(&mut self) -> Vec<JoinHandle<Result<(), crate::ProxyError>>> {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        std::mem::take(&mut self.tasks)
    }
}

pub type TestBody = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An HTTP/1.1 client (REST).
pub fn http1() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge client (gRPC).
pub fn http2() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A REST call; returns the response head and the body as text.
pub async fn rest(
    client: &Client<HttpConnector, TestBody>,
    request: Request<TestBody>,
) -> (Response<()>, String) {
    let response = client.request(request).await.expect("request");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// `POST {addr}{path}` with a JSON body and extra headers.
pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut builder =
        Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(full(r#"{"instances": [1.0, 2.0, 5.0]}"#))
        .unwrap()
}
