//! The compiled, validated mesh configuration: what every other crate reads. Built
//! once from `mesh.yaml` by [`crate::load`] / [`crate::parse`], immutable afterwards,
//! swapped whole on reload. No field here needs checking again on the request path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

/// The whole mesh.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// SPIFFE trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Workloads by name.
    pub workloads: BTreeMap<String, Arc<Workload>>,
    /// Models by name.
    pub models: BTreeMap<String, Arc<Model>>,
    pub gateway: Gateway,
    pub limits: Limits,
    pub outlier_detection: OutlierDetection,
    /// How often host-name endpoints are re-resolved (Kubernetes headless services).
    pub dns_refresh: Duration,
    /// Trusted JWT issuers (request authentication). Empty: no request principals.
    pub issuers: Vec<crate::security::Issuer>,
    /// The embedded development issuer `infermesh up` runs, if any.
    pub dev_issuer: Option<crate::security::DevIssuerConfig>,
    /// Authorization policies, in file order.
    pub policies: Vec<crate::security::Policy>,
    /// The `istio_files` entries as written (relative to the mesh file's directory,
    /// or absolute), in file order: what `export` carries into the ConfigMap.
    pub istio_files: Vec<String>,
    pub authz: crate::security::AuthzSettings,
    /// Access log and trace export (`telemetry:`).
    pub telemetry: crate::telemetry::Telemetry,
    /// The audit trail (`audit:`); `None`: none is written.
    pub audit: Option<crate::AuditConfig>,
    /// Workload identity and mTLS (`identity:`); `None`: not configured (separate
    /// gateway and sidecar processes then talk plaintext; `infermesh up` uses the
    /// defaults with its own built-in CA).
    pub identity: Option<crate::mtls::IdentityConfig>,
}

/// An address: an IP socket address, or a host name re-resolved periodically.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Socket(SocketAddr),
    Host { host: String, port: u16 },
}

/// Which protocol a workload's upstream (the model server) speaks on an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// TF Serving REST port of the model server.
    pub rest: Address,
    /// TF Serving gRPC port of the model server.
    pub grpc: Address,
}

/// One workload: a model server with its sidecar in front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    /// Where this workload's sidecar listens (REST and gRPC on one port).
    pub listen: SocketAddr,
    /// Where the sidecar forwards to (the model server, normally on loopback).
    pub upstream: Upstream,
    /// Where gateways reach this workload's sidecars; default `[listen]`. Host names
    /// are re-resolved every `dns_refresh`, each resolved address is one endpoint.
    pub endpoints: Vec<Address>,
    /// For `infermesh up`: run the embedded model server for this workload on the
    /// upstream addresses, serving this TF Serving model config file (absolute once
    /// compiled; relative paths in the YAML start at the mesh.yaml's directory).
    pub embedded_model_server: Option<std::path::PathBuf>,
    /// The sidecar's admin listener (`/healthz`, `/readyz`, `/metrics`) when it runs
    /// on its own (`infermesh sidecar`); `infermesh up` serves one admin listener, the
    /// gateway's, for the whole process.
    pub admin: Option<SocketAddr>,
    /// Peer authentication of this workload's sidecar (when identity is on).
    pub mtls: crate::mtls::MtlsMode,
    /// mTLS peers the sidecar accepts (Istio principals, `*` suffix); empty: any
    /// identity of the trust domain.
    pub allowed_peers: Vec<String>,
}

/// A model served by one workload, with its versions and route.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    /// Name of the workload that serves it (validated to exist).
    pub served_by: String,
    /// Versions served, ascending.
    pub versions: Vec<i64>,
    /// Version labels (`stable` → 1); label names are unique per model.
    pub labels: BTreeMap<String, i64>,
    pub route: Route,
}

/// How requests for a model are routed between its versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Weighted split for requests that name no version: (version, weight), weights
    /// > 0, at least one entry. Default: the highest version, weight 100.
    pub split: Vec<(i64, u32)>,
    /// A request header whose value (a version number or label) pins the version.
    pub pin_header: Option<HeaderName>,
    /// Keep one caller on one version of the split: hash of this header's value.
    pub sticky_header: Option<HeaderName>,
    /// Copy a share of the requests to another version; its answer is discarded.
    pub mirror: Option<Mirror>,
    /// Whole-request timeout at the gateway (504 / DEADLINE_EXCEEDED after it).
    pub timeout: Duration,
    pub retries: RetryPolicy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    pub version: i64,
    /// 0 < percent ≤ 100.
    pub percent: f64,
}

/// When a failed attempt is tried again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0: no retries).
    pub attempts: u32,
    /// Retry when the connection could not be made (the request never left).
    pub on_connect_failure: bool,
    /// Retry on UNAVAILABLE / HTTP 503 answers — only applied when `idempotent`,
    /// since the model may have run.
    pub on_unavailable: bool,
    /// The route's requests may safely run twice (e.g. pure predict).
    pub idempotent: bool,
    /// Retries may add at most this fraction of the route's recent requests
    /// (e.g. 0.2), plus `min_retries_per_second`.
    pub budget_ratio: f64,
    pub min_retries_per_second: u32,
}

/// The gateway's listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// Each listener serves TF Serving REST (HTTP/1.1) and gRPC (HTTP/2) alike.
    pub listen: Vec<SocketAddr>,
    /// Admin listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin: Option<SocketAddr>,
    /// TLS on the client-facing listeners.
    pub tls: Option<crate::mtls::GatewayTls>,
}

/// Resource limits, applied by gateways and sidecars alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_request_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_concurrent_streams: u32,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// How long in-flight requests may finish at shutdown.
    pub drain_timeout: Duration,
}

/// Passive outlier detection per endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive connect failures / 5xx that eject an endpoint.
    pub consecutive_failures: u32,
    /// An ejection lasts this long times the number of times the endpoint was
    /// ejected in a row (as Envoy), at most 10×.
    pub base_ejection: Duration,
    /// Never eject more than this share of a workload's endpoints (0–100).
    pub max_ejection_percent: u32,
}

impl MeshConfig {
    /// The workload serving a model (always present in a validated config).
    pub fn workload_of(&self, model: &Model) -> Option<&Arc<Workload>> {
        self.workloads.get(&model.served_by)
    }
}
