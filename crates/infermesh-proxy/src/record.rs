//! Stage 7, record: what one exchange leaves behind — Istio metrics, a span, an
//! access-log line (`infermesh-telemetry`). The request's trace context and request
//! id are set when it arrives ([`Exchange::start`]); the record is made when the
//! response body has been sent ([`Recorded`]), so durations and byte counts cover
//! the whole exchange and a gRPC status in trailers is seen.
//!
//! Label values come from the config: a model, version or workload the config does
//! not list is `unknown`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use infermesh_authz::Decision;
use infermesh_config::MeshConfig;
use infermesh_telemetry::{Peer, Record, Reporter, TraceContext, context};

use crate::body::{BoxError, ProxyBody};
use crate::identity::{Caller, Connection, RequestAuth};
use crate::inspect::{ModelRequest, Protocol};
use crate::pipeline::{Proxy, Role};

/// The workload name the gateway reports as (Istio's `source_workload` for requests
/// it sends); its namespace is its identity's (`identity.gateway.namespace`).
pub const GATEWAY_WORKLOAD: &str = "infermesh-gateway";

/// What the record stage learns about one request/response exchange.
#[derive(Debug)]
pub struct Exchange {
    pub protocol: Protocol,
    pub started: Instant,
    pub started_at: SystemTime,
    pub method: Method,
    /// The request target as it came (its path is logged and traced).
    pub uri: http::Uri,
    pub request_id: HeaderValue,
    pub trace: TraceContext,
    pub connection: Option<Connection>,
    /// The mTLS peer (Istio principal form), when the connection had one.
    pub peer: Option<Arc<str>>,
    /// Declared request body size (`content-length`), when given.
    pub request_bytes: u64,
    /// Set once the model request was parsed.
    pub model: Option<ModelRequest>,
    /// The version routed to, when one was chosen.
    pub version: Option<i64>,
    /// The authorization decision, once made.
    pub authz: Option<Decision>,
    pub request_principal: Option<String>,
    /// Time from sending upstream to its response headers, when it was called.
    pub upstream: Option<Duration>,
    /// The upstream hop was mTLS (the gateway required the sidecar's SPIFFE ID).
    pub upstream_mtls: bool,
    /// The `x-infermesh-error` kind when the proxy answered itself.
    pub failure: Option<String>,
    pub status: u16,
}

impl Exchange {
    /// Starts the exchange of a request that just arrived: takes (or creates) its
    /// `x-request-id` and trace context, and sets the headers the next hop reads.
    ///
    /// Boxed: the exchange (~550 bytes) moves from the request path into the
    /// response body that records it, and a box moves as one pointer.
    pub fn start(request: &mut Request<Incoming>, caller: &Caller, sampling: f64) -> Box<Exchange> {
        let mut rng = fastrand::Rng::new();
        let headers = request.headers_mut();
        let request_id = context::request_id(headers, &mut rng);
        let trace = TraceContext::continue_from(headers, sampling, &mut rng);
        let request_bytes = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Box::new(Exchange {
            protocol: Protocol::of(request.headers()),
            started: Instant::now(),
            started_at: SystemTime::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id,
            trace,
            connection: caller.connection,
            peer: caller.peer.as_ref().map(|p| p.principal.clone()),
            request_bytes,
            model: None,
            version: None,
            authz: None,
            request_principal: None,
            upstream: None,
            upstream_mtls: false,
            failure: None,
            status: 0,
        })
    }

    /// Notes the verified request principal once authentication ran.
    pub fn authenticated(&mut self, extensions: &http::Extensions) {
        self.request_principal = extensions.get::<RequestAuth>().map(|a| a.principal.clone());
    }
}

/// Wraps a response so that the exchange is recorded when its body ends (or the
/// client goes away first: response flag `DC`).
pub fn recorded(
    response: Response<ProxyBody>,
    exchange: Box<Exchange>,
    proxy: Arc<Proxy>,
    config: Arc<MeshConfig>,
) -> Response<ProxyBody> {
    // A gRPC status in the headers (a trailers-only answer); REST answers have none.
    let grpc_status = match exchange.protocol {
        Protocol::Grpc => grpc_status(response.headers()),
        Protocol::Rest => None,
    };
    let (parts, body) = response.into_parts();
    let body = Recorded {
        inner: body,
        finish: Some(Finish {
            exchange,
            proxy,
            config,
        }),
        bytes: 0,
        grpc_status,
    };
    Response::from_parts(parts, http_body_util::BodyExt::boxed(body))
}

struct Finish {
    exchange: Box<Exchange>,
    proxy: Arc<Proxy>,
    config: Arc<MeshConfig>,
}

/// A response body that counts what it sends and records the exchange at its end.
/// (It is boxed as a `ProxyBody`, so what it finishes with is held inline: one
/// allocation per response, not two.)
pub struct Recorded {
    inner: ProxyBody,
    finish: Option<Finish>,
    bytes: u64,
    grpc_status: Option<i32>,
}

impl Recorded {
    fn finish(&mut self, end: End) {
        // Taken before recording: whatever happens in `record`, it runs once (`Finish`
        // is three pointers since the exchange is boxed, so the move is cheap).
        if let Some(f) = self.finish.take() {
            record(&f, self.bytes, self.grpc_status, end);
        }
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    self.grpc_status = grpc_status(trailers).or(self.grpc_status);
                }
            }
            // The upstream's body failed mid-stream.
            Some(Err(_)) => self.finish(End::UpstreamFailed),
            None => self.finish(End::Complete),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let ended = self.inner.is_end_stream();
        self.finish(if ended {
            End::Complete
        } else {
            End::ClientGone
        });
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get(crate::respond::GRPC_STATUS)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Complete,
    /// Dropped before its end: the client went away (`DC`).
    ClientGone,
    /// The upstream's body failed mid-stream (`UC`).
    UpstreamFailed,
}

fn record(f: &Finish, response_bytes: u64, grpc_status: Option<i32>, end: End) {
    let x = &f.exchange;
    let config = &f.config;
    let model = x.model.as_ref().and_then(|m| config.models.get(&m.model));
    let version = match (model, x.version) {
        (Some(m), Some(v)) if m.versions.contains(&v) => Some(v),
        _ => None,
    };
    let signature = x.model.as_ref().and_then(|m| m.signature.as_deref());
    let signature = match signature {
        Some("") => Some("serving_default"),
        s => s,
    };
    let names = f.proxy.names.get(config);
    // The peer's SPIFFE ID: precomputed for configured workloads, else formatted.
    let caller = x
        .peer
        .as_deref()
        .and_then(|p| names.by_principal.get(p))
        .and_then(|name| config.workloads.get(name));
    let from_gateway = x.peer.as_deref() == Some(names.gateway.principal.as_str());
    // Formatted only for a peer the config does not name.
    let unknown_peer = match (x.peer.as_deref(), caller) {
        (Some(p), None) if !from_gateway => Some(format!("spiffe://{p}")),
        _ => None,
    };
    let source_principal = match (caller, &unknown_peer) {
        (Some(w), _) => names.workloads.get(&w.name).map(|n| n.spiffe.as_str()),
        (None, _) if from_gateway => Some(names.gateway.spiffe.as_str()),
        (None, Some(p)) => Some(p.as_str()),
        (None, None) => None,
    };
    let (reporter, destination, source) = match &f.proxy.role {
        Role::Gateway => {
            let destination = model.and_then(|m| config.workload_of(m));
            let source = Peer {
                workload: GATEWAY_WORKLOAD,
                namespace: &names.gateway.namespace,
                principal: if x.upstream_mtls {
                    &names.gateway.spiffe
                } else {
                    "unknown"
                },
            };
            (Reporter::Gateway, destination, source)
        }
        Role::Sidecar { workload } => {
            let destination = config.workloads.get(workload);
            // The caller, from its verified certificate: a configured workload, else
            // unknown.
            let source = match caller {
                Some(w) => Peer {
                    workload: &w.name,
                    namespace: &w.namespace,
                    principal: source_principal.unwrap_or("unknown"),
                },
                None if from_gateway => Peer {
                    workload: GATEWAY_WORKLOAD,
                    namespace: &names.gateway.namespace,
                    principal: source_principal.unwrap_or("unknown"),
                },
                None => Peer {
                    principal: source_principal.unwrap_or("unknown"),
                    ..Peer::UNKNOWN
                },
            };
            (Reporter::Sidecar, destination, source)
        }
    };
    // The sidecar knows its caller's certificate; the gateway, whether it required
    // the sidecar's SPIFFE ID on the upstream connection.
    let mtls = match f.proxy.role {
        Role::Sidecar { .. } => x.peer.is_some(),
        Role::Gateway => x.upstream_mtls,
    };
    let dest_names = destination.and_then(|w| names.workloads.get(&w.name));
    let dest = match (destination, dest_names) {
        (Some(w), Some(n)) => Peer {
            workload: &w.name,
            namespace: &w.namespace,
            principal: if mtls { &n.spiffe } else { "unknown" },
        },
        _ => Peer::UNKNOWN,
    };
    let dest_service = dest_names.map_or("unknown", |n| n.service.as_str());
    let flags = match (end, x.failure.as_deref()) {
        (End::ClientGone, _) => "DC",
        (End::UpstreamFailed, _) => "UC",
        (End::Complete, Some("route")) => "NR",
        (End::Complete, Some("upstream-connect")) => "UF",
        (End::Complete, Some("upstream")) => "UC",
        (End::Complete, Some("timeout")) => "UT",
        _ => "-",
    };
    let decision = x.authz.as_ref().map(|d| infermesh_telemetry::Decision {
        allowed: d.allowed,
        policy: d.deciding.as_ref().map(|p| &*p.policy),
        rule: d.deciding.as_ref().map(|p| p.rule),
    });
    let record = Record {
        reporter,
        protocol: match x.protocol {
            Protocol::Rest => infermesh_telemetry::Protocol::Http,
            Protocol::Grpc => infermesh_telemetry::Protocol::Grpc,
        },
        method: x.method.as_str(),
        path: x.uri.path(),
        started: x.started_at,
        duration: x.started.elapsed(),
        upstream: x.upstream,
        request_id: x.request_id.to_str().unwrap_or(""),
        trace: x.trace,
        source_address: x.connection.map(|c| c.peer),
        source,
        destination: dest,
        destination_service: dest_service,
        mtls,
        request_principal: x.request_principal.as_deref(),
        model: model.map(|m| m.name.as_str()),
        version,
        signature: model.and(signature),
        api: x.model.as_ref().map(|m| m.api.as_str()),
        decision,
        status: x.status,
        grpc_status,
        response_flags: flags,
        request_bytes: x.request_bytes,
        response_bytes,
    };
    f.proxy.telemetry.record(&record);
    tracing::debug!(
        protocol = ?x.protocol,
        model = record.model,
        version = record.version,
        allowed = x.authz.as_ref().map(|d| d.allowed),
        status = x.status,
        failure = x.failure.as_deref(),
        elapsed_us = x.started.elapsed().as_micros() as u64,
        "request"
    );
}
