//! Decisions for Istio/Envoy: the same stages as the sidecar's pipeline — parse the
//! model request (REST path, or the gRPC body when Envoy sends it), authenticate the
//! bearer token, authorize — for a request described by Envoy's ext_authz
//! `CheckRequest` instead of received. The gRPC service itself (Envoy's
//! `envoy.service.auth.v3.Authorization/Check`) is in the binary
//! (`infermesh ext-authz`); this is what it asks.
//!
//! Like the sidecar, a request is decided for the version it names (path or
//! `ModelSpec`); one that names none is decided with no version. Anything that cannot
//! be parsed is denied with the status the sidecar would answer (fail closed).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use infermesh_authz::Decision;
use infermesh_config::MeshConfig;
use infermesh_telemetry::Metrics;

use crate::audit::ProxyAudit;
use crate::authenticate::{self, Authenticators};
use crate::authorize::{self, Authorizers};
use crate::body::RequestBody;
use crate::error::Failure;
use crate::identity::{Caller, Connection, PeerIdentity, RequestAuth};
use crate::inspect::{self, ModelRequest, Protocol};
use crate::respond;

/// One request as Envoy describes it.
#[derive(Debug)]
pub struct CheckInput {
    pub method: Method,
    /// Path and query as the client sent them.
    pub path: String,
    pub headers: HeaderMap,
    /// The request body Envoy forwarded (`with_request_body`), possibly empty.
    pub body: Bytes,
    /// The mTLS peer's principal (`spiffe://…` or the Istio form), as Envoy saw it.
    pub peer_principal: Option<String>,
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

/// The answer for Envoy.
#[derive(Debug)]
pub struct CheckAnswer {
    pub allowed: bool,
    /// When denied: the status the client gets.
    pub status: StatusCode,
    /// When denied: what the client is told (no policy contents).
    pub message: String,
    /// The `x-infermesh-error` kind when denied.
    pub kind: &'static str,
    /// The policy decision, when the request got that far.
    pub decision: Option<Decision>,
    pub model: Option<ModelRequest>,
    /// The verified request principal, if any.
    pub request_principal: Option<String>,
}

/// Decides ext_authz checks with the mesh's current config.
#[derive(Debug)]
pub struct ExtAuthz {
    config: Arc<ArcSwap<MeshConfig>>,
    authorizers: Authorizers,
    authenticators: Authenticators,
    metrics: Arc<Metrics>,
    /// Where decisions are recorded (role `ext-authz`), if auditing is on.
    audit: Option<ProxyAudit>,
}

impl ExtAuthz {
    /// Must be called inside a tokio runtime (the key refresh tasks start).
    pub fn new(config: Arc<ArcSwap<MeshConfig>>, metrics: Arc<Metrics>) -> ExtAuthz {
        let authorizers = Authorizers::new(config.load_full());
        let authenticators = Authenticators::new(&config.load());
        ExtAuthz {
            config,
            authorizers,
            authenticators,
            metrics,
            audit: None,
        }
    }

    /// Records every decision in `audit`; in strict mode a check is answered only
    /// once its record is durable (else it is denied: 503 / UNAVAILABLE).
    pub fn with_audit(mut self, audit: ProxyAudit) -> ExtAuthz {
        self.audit = Some(audit);
        self
    }

    pub async fn check(&self, input: CheckInput) -> CheckAnswer {
        let mut model = None;
        let mut principal = None;
        match self.decide(input, &mut model, &mut principal).await {
            Ok(decision) if decision.allowed => CheckAnswer {
                allowed: true,
                status: StatusCode::OK,
                message: String::new(),
                kind: "",
                decision: Some(decision),
                model,
                request_principal: principal,
            },
            Ok(decision) => denied(&Failure::Denied, Some(decision), model, principal),
            Err(failure) => denied(&failure, None, model, principal),
        }
    }

    async fn decide(
        &self,
        input: CheckInput,
        model: &mut Option<ModelRequest>,
        principal: &mut Option<String>,
    ) -> Result<Decision, Failure> {
        let config = self.config.load_full();
        let authorizer = self.authorizers.get(&config);
        let limit = config.limits.max_request_body_bytes;
        let uri: http::Uri = input
            .path
            .parse()
            .map_err(|_| Failure::InvalidPath(format!("invalid request path {:?}", input.path)))?;
        let mut request = http::Request::new(());
        *request.method_mut() = input.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = input.headers;
        let (mut parts, ()) = request.into_parts();
        let caller = Caller {
            connection: match (input.source, input.destination) {
                (Some(peer), Some(local)) => Some(Connection { peer, local }),
                _ => None,
            },
            peer: input.peer_principal.map(|peer| PeerIdentity {
                principal: peer.strip_prefix("spiffe://").unwrap_or(&peer).into(),
            }),
        };
        let protocol = Protocol::of(&parts.headers);
        let body = RequestBody::new(input.body, None, None);
        let (inspected, body) = inspect::inspect(
            &parts.method,
            &parts.uri,
            protocol,
            body,
            limit,
            authorizer.escaped_slashes(),
        )
        .await?;
        *model = Some(inspected.model.clone());
        let authenticator = self.authenticators.get(&config);
        authenticate::authenticate(&authenticator, &mut parts, &self.metrics).await?;
        *principal = parts
            .extensions
            .get::<RequestAuth>()
            .map(|a| a.principal.clone());
        let (signature, _) = authorize::signature(&authorizer, &inspected, body, limit).await?;
        let version = inspected.model.named_version();
        let request =
            authorize::request(&parts, &caller, &inspected, version, signature.as_deref());
        let decision = authorize::decide(&authorizer, &request);
        if let Some(audit) = &self.audit {
            let who = ("ext-authz", None);
            let pending = audit.decision_as(
                who,
                (&parts, &caller),
                &inspected,
                version,
                &decision,
                false,
            );
            if let Some(pending) = pending {
                if let Some(refused) = pending.refused() {
                    return Err(Failure::AuditUnavailable(refused.0.clone()));
                }
                pending
                    .durable()
                    .await
                    .map_err(|e| Failure::AuditUnavailable(e.0))?;
            }
        }
        Ok(decision)
    }
}

fn denied(
    failure: &Failure,
    decision: Option<Decision>,
    model: Option<ModelRequest>,
    request_principal: Option<String>,
) -> CheckAnswer {
    let (status, kind, message) = respond::describe(failure);
    CheckAnswer {
        allowed: false,
        status,
        message,
        kind,
        decision,
        model,
        request_principal,
    }
}
