//! Errors: [`ProxyError`] for starting and running listeners, and [`Failure`] — every
//! reason the proxy answers a request itself. `respond.rs` is the one place that
//! turns a [`Failure`] into an HTTP status, a gRPC code and a body.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::LengthLimitError;
use infermesh_tfserving::Status;

use crate::body::BoxError;

/// Starting or running a gateway or sidecar failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("workload {0:?} is not in the mesh config")]
    UnknownWorkload(String),
    #[error("the gateway has no listen address")]
    NoListener,
    #[error("TLS: {0}")]
    Tls(infermesh_identity::IdentityError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why the proxy answered a request itself instead of the model server.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request is malformed; the status carries TF Serving's own wording.
    #[error("{0}")]
    Request(Status),
    /// The request path cannot be normalized safely (an encoded slash or NUL, an
    /// invalid escape, …): 400 / INVALID_ARGUMENT; the message says which.
    #[error("{0}")]
    InvalidPath(String),
    /// A REST path outside `/v1/`: a plain 404, as TF Serving answers.
    #[error("not an API path")]
    NoRoute,
    /// The request carried a token that failed verification (bad signature, expired,
    /// unknown issuer, …): 401 / UNAUTHENTICATED with a generic message; why is logged.
    #[error("invalid token")]
    Unauthenticated,
    /// Policy denied the request. Carries nothing about the policies: the deciding
    /// policy and rule are logged where the decision is made, never answered.
    #[error("denied by policy")]
    Denied,
    /// No route for the model or version (unknown model, label, bad pin header).
    #[error("{0}")]
    Route(Status),
    /// The request body exceeds `limits.max_request_body_bytes`.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// Reading the client's body failed (client went away, protocol error).
    #[error("client body error: {0}")]
    ClientBody(String),
    /// No connection could be made to any upstream endpoint.
    #[error("upstream connect error: {0}")]
    UpstreamConnect(String),
    /// The upstream closed or reset the connection after the request was sent and
    /// before any response.
    #[error("upstream reset before response: {0}")]
    UpstreamReset(String),
    /// The upstream failed after the request was sent.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// No answer from the upstream within the route's timeout.
    #[error("upstream request timeout after {0:?}")]
    Timeout(Duration),
    /// Strict audit: the request's decision record could not be made durable (disk
    /// full, I/O error, backlog full), so it is refused rather than served unaudited.
    #[error("audit trail unavailable: {0}")]
    AuditUnavailable(String),
}

impl Failure {
    /// Classifies an error from reading the client body.
    pub fn client_body(e: BoxError) -> Failure {
        if limit_in_chain(e.as_ref()) {
            Failure::BodyTooLarge { limit: 0 }
        } else {
            Failure::ClientBody(e.to_string())
        }
    }

    /// Sets the configured limit on a [`Failure::BodyTooLarge`].
    pub fn with_limit(self, max: u64) -> Failure {
        match self {
            Failure::BodyTooLarge { .. } => Failure::BodyTooLarge { limit: max },
            other => other,
        }
    }
}

/// Whether the size limit is somewhere in an error's cause chain.
pub fn limit_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<LengthLimitError>() {
            return true;
        }
        next = e.source();
    }
    false
}
