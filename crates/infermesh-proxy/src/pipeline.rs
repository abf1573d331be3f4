//! The request pipeline, top to bottom. Gateway:
//!
//! ```text
//! accept → parse model request → authenticate → route decision → authorize → forward → record
//! ```
//!
//! Sidecar (the request already names a version, after the gateway's rewrite):
//!
//! ```text
//! accept → parse model request → authenticate → authorize → forward → record
//! ```
//!
//! With auditing on, the authorize stage also submits the decision record (`audit.rs`);
//! in strict mode `handle` awaits its durability just before answering.
//!
//! [`Proxy::handle`] is the whole request path; each stage is one call into its
//! module (see `docs/pipeline.md`). The route decision is pure (it picks a version,
//! sends nothing), so the version that will serve is the one authorized. Failures
//! from any stage become the response in one place (`respond.rs`). One config
//! snapshot, and the authorizer compiled from it, is read per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::request::Parts;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Limited;
use hyper::body::Incoming;
use infermesh_config::{MeshConfig, RetryPolicy};

use infermesh_audit::Pending;
use infermesh_config::Model;
use infermesh_telemetry::Telemetry;
use infermesh_telemetry::context::REQUEST_ID;

use crate::attempts::{Attempts, Target};
use crate::audit::ProxyAudit;
use crate::authenticate::{self, Authenticators};
use crate::authorize::{self, Authorizers};
use crate::body::{ProxyBody, RequestBody};
use crate::endpoints::EndpointSet;
use crate::error::Failure;
use crate::forward::{Clients, Outbound, strip_hop_by_hop};
use crate::identity::Caller;
use crate::inspect::{self, Inspected, Protocol};
use crate::names::NameCache;
use crate::record::{self, Exchange};
use crate::respond::{self, VERSION_HEADER};
use crate::upstream::Upstreams;
use crate::{mirror, route};

/// Requests are mirrored only when their whole body fits in this much memory.
pub const MIRROR_BODY_MAX: usize = 1 << 20;
/// Bodies up to this size are buffered when a route may retry answered requests.
const REPLAY_BODY_MAX: usize = 64 << 10;
/// Sidecar timeout for requests to models the config does not list.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which side of the mesh this proxy is.
#[derive(Clone, Debug)]
pub enum Role {
    /// Routes by model and version to the workloads' sidecars.
    Gateway,
    /// Fronts one workload's model server.
    Sidecar { workload: String },
}

/// Counters kept until the telemetry crate takes over.
#[derive(Debug, Default)]
pub struct ProxyStats {
    requests: AtomicU64,
    mirrored: AtomicU64,
    mirror_skipped: AtomicU64,
}

impl ProxyStats {
    /// Requests handled (answered by the upstream or by the proxy).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests copied to a mirror.
    pub fn mirrored(&self) -> u64 {
        self.mirrored.load(Ordering::Relaxed)
    }

    /// Requests chosen for mirroring but not copied: the body was too large.
    pub fn mirror_skipped(&self) -> u64 {
        self.mirror_skipped.load(Ordering::Relaxed)
    }
}

/// Everything a request needs, shared by all connections of a gateway or sidecar.
#[derive(Debug)]
pub struct Proxy {
    pub role: Role,
    pub config: Arc<ArcSwap<MeshConfig>>,
    /// The authorizer of the config value in use, compiled once per value.
    authorizers: Authorizers,
    /// The JWT verifier of the configured issuers (keys cached across swaps).
    authenticators: Authenticators,
    clients: Clients,
    upstreams: Upstreams,
    pub stats: Arc<ProxyStats>,
    /// Metrics, spans and access log of the process.
    pub telemetry: Arc<Telemetry>,
    /// Label values derived from the config in use.
    pub names: NameCache,
    /// Where decisions are recorded, if auditing is on.
    pub(crate) audit: Option<ProxyAudit>,
}

/// The result of the route stage: what to send where, under which policy.
struct Plan {
    outbound: Outbound,
    body: RequestBody,
    endpoints: Arc<EndpointSet>,
    /// `Some(kind)`: the sidecar's model server address (`rest`, `grpc`); `None`: the
    /// workload's sidecars.
    model_server: Option<&'static str>,
    /// The destination workload (metric label).
    workload: Option<String>,
    version: Option<i64>,
    timeout: Duration,
    retries: RetryPolicy,
    budget: Option<Arc<crate::budget::RetryBudget>>,
}

impl Proxy {
    pub fn new(role: Role, config: Arc<ArcSwap<MeshConfig>>, telemetry: Arc<Telemetry>) -> Proxy {
        let clients = Clients::new(&config.load().limits);
        let authorizers = Authorizers::new(config.load_full());
        let authenticators = Authenticators::new(&config.load());
        let names = NameCache::new(config.load_full());
        Proxy {
            role,
            config,
            authorizers,
            authenticators,
            clients,
            upstreams: Upstreams::default(),
            stats: Arc::default(),
            telemetry,
            names,
            audit: None,
        }
    }

    /// Calls to sidecars go over mTLS as `identity` (gateway).
    pub fn set_upstream_tls(&mut self, identity: Arc<infermesh_identity::WorkloadIdentity>) {
        let config = self.config.load();
        self.clients = self.clients.clone().with_tls(identity, &config);
    }

    /// The request path. Never fails: failures are answered by `respond`.
    pub async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        caller: &Caller,
    ) -> Response<ProxyBody> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let config = self.config.load_full();
        // 0. trace context and request id, passed on to the next hop.
        let mut exchange = Exchange::start(&mut request, caller, self.telemetry.sampling());
        let mut audited = None;
        let result = self
            .pipeline(&config, request, caller, &mut exchange, &mut audited)
            .await;
        // Strict audit: no answer before the decision record is durable.
        let result = match (audited.map(Pending::durable), result) {
            (Some(durable), result) => match durable.await {
                Ok(()) => result,
                Err(e) => {
                    tracing::error!(error = %e, "refusing a request: its audit record is not durable");
                    Err(Failure::AuditUnavailable(e.0))
                }
            },
            (None, result) => result,
        };
        let mut response = match result {
            Ok(response) => response,
            Err(failure) => {
                let failure = failure.with_limit(config.limits.max_request_body_bytes);
                tracing::debug!(%failure, "answering from the proxy");
                let response = respond::failure(exchange.protocol, &failure);
                exchange.failure = response
                    .headers()
                    .get(respond::ERROR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                response
            }
        };
        if let Some(version) = exchange.version {
            response
                .headers_mut()
                .insert(VERSION_HEADER, HeaderValue::from(version));
        }
        exchange.status = response.status().as_u16();
        response
            .headers_mut()
            .insert(REQUEST_ID, exchange.request_id.clone());
        // 7. record, once the response body has been sent.
        if !self.telemetry.enabled() {
            return response;
        }
        record::recorded(response, exchange, self, config)
    }

    async fn pipeline(
        &self,
        config: &Arc<MeshConfig>,
        request: Request<Incoming>,
        caller: &Caller,
        exchange: &mut Exchange,
        audited: &mut Option<Pending>,
    ) -> Result<Response<ProxyBody>, Failure> {
        let authorizer = self.authorizers.get(config);

        // 1. accept: apply the body limit (the connection limits are the listener's).
        let limit = config.limits.max_request_body_bytes;
        let (mut parts, body) = request.into_parts();
        check_declared_length(&parts, limit)?;
        let body = RequestBody::streaming(Limited::new(
            body,
            usize::try_from(limit).unwrap_or(usize::MAX),
        ));

        // 2. parse the model request; REST paths are normalized first, and the
        // canonical path is what is authorized and forwarded.
        let (inspected, body) = inspect::inspect(
            &parts.method,
            &parts.uri,
            exchange.protocol,
            body,
            limit,
            authorizer.escaped_slashes(),
        )
        .await?;
        exchange.model = Some(inspected.model.clone());
        // A gRPC body refused later (a second model_spec, a second message) fails
        // whatever stage is reading it; it is answered as the refusal.
        let verdict = body.verdict();

        // 3. authenticate: a valid JWT becomes the request principal (`RequestAuth`);
        // an invalid one is refused here (401), no token leaves it to the policies.
        let authenticator = self.authenticators.get(config);
        authenticate::authenticate(&authenticator, &mut parts, &self.telemetry.metrics).await?;
        exchange.authenticated(&parts.extensions);
        crate::end_user::carry(&self.role, config, &mut parts, caller.peer.as_ref());

        // 4. route decision (gateway): pure; picks the version, sends nothing.
        let routed = match &self.role {
            Role::Gateway => Routed::Gateway(route_decision(config, &parts, &inspected)),
            Role::Sidecar { workload } => Routed::Sidecar(workload),
        };

        // 5. authorize what will be sent: the version routing chose (or the one the
        // request names, when routing failed: the caller learns nothing before policy
        // allows it), the signature when policies test it.
        let (signature, body) = authorize::signature(&authorizer, &inspected, body, limit)
            .await
            .map_err(|failure| verdict.explain(failure))?;
        let version = match &routed {
            Routed::Gateway(Ok((_, decision))) => decision.version,
            _ => inspected.model.named_version(),
        };
        let signature = signature.as_deref();
        let authz = authorize::request(&parts, caller, &inspected, version, signature);
        let decision = authorize::decide(&authorizer, &authz);
        let allowed = decision.allowed;
        if let Some(audit) = &self.audit {
            *audited = audit.decision(
                &self.role,
                (&parts, caller),
                &inspected,
                version,
                &decision,
                false,
            );
            if let Some(refused) = audited.as_ref().and_then(Pending::refused) {
                return Err(Failure::AuditUnavailable(refused.0.clone()));
            }
        }
        exchange.authz = Some(decision);
        if !allowed {
            return Err(Failure::Denied);
        }

        // 6. forward: the route's plan (endpoints, rewrite, mirror), then the attempts.
        let plan = match routed {
            Routed::Gateway(routed) => {
                let (model, mut decision) = routed?;
                if let Some(mirror) = decision.mirror {
                    let copy =
                        authorize::request(&parts, caller, &inspected, Some(mirror), signature);
                    let copy = authorize::decide(&authorizer, &copy);
                    if let Some(audit) = &self.audit {
                        // Recorded, not awaited: nobody is answered from the mirror.
                        let mirror = Some(mirror);
                        let request = (&parts, caller);
                        let _ =
                            audit.decision(&self.role, request, &inspected, mirror, &copy, true);
                    }
                    if !copy.allowed {
                        tracing::debug!(mirror, "mirror version not authorized: not mirrored");
                        self.telemetry.metrics.mirror(&model.name, "denied");
                        decision.mirror = None;
                    }
                }
                self.route_gateway(config, &mut parts, &inspected, body, model, decision)
                    .await
            }
            Routed::Sidecar(workload) => {
                self.route_sidecar(config, &mut parts, &inspected, body, workload)
            }
        }
        .map_err(|failure| verdict.explain(failure))?;
        exchange.version = plan.version;
        exchange.upstream_mtls = plan.outbound.peer.is_some();
        let attempts = Attempts {
            clients: &self.clients,
            endpoints: &plan.endpoints,
            target: match plan.model_server {
                Some(kind) => Target::ModelServer(kind),
                None => Target::Workload(plan.workload.as_deref().unwrap_or("unknown")),
            },
            retries: &plan.retries,
            budget: plan.budget.as_deref(),
            timeout: plan.timeout,
            max_body: limit,
            counts: Default::default(),
        };
        let sent = std::time::Instant::now();
        let response = attempts.send(&plan.outbound, &plan.body).await;
        exchange.upstream = Some(sent.elapsed());
        let (retries, connect_failures) = attempts.counts.get();
        if retries + connect_failures > 0 {
            let reporter = self.reporter();
            let target = plan.workload.as_deref().unwrap_or("unknown");
            (self.telemetry.metrics).upstream(reporter, target, retries, connect_failures);
        }
        response.map_err(|failure| verdict.explain(failure))
        // 7. record: in `handle`, for answers and failures alike.
    }

    /// Istio's `reporter` label of this proxy.
    fn reporter(&self) -> &'static str {
        match self.role {
            Role::Gateway => "source",
            Role::Sidecar { .. } => "destination",
        }
    }

    /// Gateway forwarding plan for a routing decision: the serving workload's
    /// endpoints, the rewrite to the chosen version, the mirror copy (spawned here).
    async fn route_gateway(
        &self,
        config: &Arc<MeshConfig>,
        parts: &mut Parts,
        inspected: &Inspected,
        body: RequestBody,
        model: &Model,
        decision: route::Decision,
    ) -> Result<Plan, Failure> {
        let request = &inspected.model;
        let workload = config.workload_of(model).ok_or_else(|| {
            Failure::UpstreamConnect(format!("workload {} is not configured", model.served_by))
        })?;
        let endpoints = self
            .upstreams
            .workload(&workload.name, &workload.endpoints, config);
        let retries = &model.route.retries;
        let mut body = body;
        let buffer = if decision.mirror.is_some() {
            MIRROR_BODY_MAX
        } else if retries.attempts > 0 && retries.idempotent && retries.on_unavailable {
            REPLAY_BODY_MAX
        } else {
            0
        };
        if buffer > 0 {
            body = body
                .read_up_to(buffer)
                .await
                .map_err(Failure::client_body)?
                .0;
        }
        let mut outbound = outbound(parts, inspected);
        let names = self.names.get(config);
        outbound.peer = crate::mtls::expected_upstream(&names, workload, self.clients.tls_on());
        if let Some(mirror_version) = decision.mirror {
            if body.is_complete() {
                let (path, mirror_body) = inspected.rewrite(body.clone(), mirror_version)?;
                let mut mirror_out = outbound.clone();
                mirror_out.path_and_query = path;
                mirror::spawn(mirror::Mirror {
                    clients: self.clients.clone(),
                    endpoints: endpoints.clone(),
                    outbound: mirror_out,
                    body: mirror_body,
                    timeout: model.route.timeout,
                    metrics: self.telemetry.metrics.clone(),
                    model: model.name.clone(),
                });
                self.stats.mirrored.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.mirror_skipped.fetch_add(1, Ordering::Relaxed);
                self.telemetry.metrics.mirror(&model.name, "skipped");
            }
        }
        if let (true, Some(version)) = (decision.rewrite, decision.version) {
            let (path, rewritten) = inspected.rewrite(body, version)?;
            outbound.path_and_query = path;
            body = rewritten;
            if request.protocol == Protocol::Grpc {
                outbound.headers.remove(header::CONTENT_LENGTH);
            }
        }
        Ok(Plan {
            outbound,
            body,
            endpoints,
            model_server: None,
            workload: Some(workload.name.clone()),
            version: decision.version,
            timeout: model.route.timeout,
            retries: retries.clone(),
            budget: Some(self.upstreams.budget(model)),
        })
    }

    /// Sidecar routing: REST to the model server's REST address, gRPC to its gRPC
    /// address; no version choice, no rewrite, no retries.
    fn route_sidecar(
        &self,
        config: &MeshConfig,
        parts: &mut Parts,
        inspected: &Inspected,
        body: RequestBody,
        workload: &str,
    ) -> Result<Plan, Failure> {
        let request = &inspected.model;
        let workload = config.workloads.get(workload).ok_or_else(|| {
            Failure::UpstreamConnect(format!("workload {workload} is no longer configured"))
        })?;
        let (kind, address) = match request.protocol {
            Protocol::Rest => ("rest", &workload.upstream.rest),
            Protocol::Grpc => ("grpc", &workload.upstream.grpc),
        };
        let endpoints = self.upstreams.model_server(kind, address, config);
        let timeout = config
            .models
            .get(&request.model)
            .map_or(DEFAULT_TIMEOUT, |m| m.route.timeout);
        Ok(Plan {
            outbound: outbound(parts, inspected),
            body,
            endpoints,
            model_server: Some(kind),
            workload: Some(workload.name.clone()),
            version: request.named_version(),
            timeout,
            retries: no_retries(),
            budget: None,
        })
    }
}

/// Which side routes, and (gateway) the routing decision: the model and the version.
enum Routed<'c> {
    Gateway(Result<(&'c Model, route::Decision), Failure>),
    Sidecar(&'c str),
}

/// The gateway's routing decision, pure: the model (unknown → NOT_FOUND) and the
/// version (request, label, pin header, sticky hash or split) and mirror.
fn route_decision<'c>(
    config: &'c MeshConfig,
    parts: &Parts,
    inspected: &Inspected,
) -> Result<(&'c Model, route::Decision), Failure> {
    let model = route::model(&config.models, &inspected.model)?;
    let decision = route::decide(
        model,
        &inspected.model,
        &parts.headers,
        &mut fastrand::Rng::new(),
    )?;
    Ok((model, decision))
}

/// What goes upstream of a request's head: method, the path and query that was
/// authorized (canonical for REST), headers without hop-by-hop ones.
/// What every attempt sends. Takes the request's headers: nothing reads them after
/// routing.
fn outbound(parts: &mut Parts, inspected: &Inspected) -> Outbound {
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    Outbound {
        protocol: inspected.model.protocol,
        method: parts.method.clone(),
        path_and_query: inspected.path_and_query.clone(),
        headers,
        peer: None,
    }
}

/// A declared `Content-Length` over the limit fails before anything is read.
fn check_declared_length(parts: &Parts, limit: u64) -> Result<(), Failure> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(Failure::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

fn no_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 0,
        on_connect_failure: false,
        on_unavailable: false,
        idempotent: false,
        budget_ratio: 0.0,
        min_retries_per_second: 0,
    }
}
