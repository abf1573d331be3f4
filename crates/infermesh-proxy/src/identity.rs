//! Who is calling, as typed request extensions, set once by the stage that knows and
//! read by authorization (and later telemetry and audit); nothing downstream re-parses
//! headers, tokens or certificates.
//!
//! * [`Connection`]: the TCP peer and the local address it connected to (listener).
//! * [`PeerIdentity`]: the mTLS peer's SPIFFE identity. Set by the accept stage once
//!   TLS termination lands; absent today (policies on `principals` / `namespaces`
//!   then do not match, `not_principals` does).
//! * [`RequestAuth`]: the verified JWT of the request. Set by the authenticate stage
//!   (`seams::authenticate`) once `infermesh-authn` is wired; absent today.

use std::net::SocketAddr;
use std::sync::Arc;

/// The connection a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The client's address (`source.ip`, `ip_blocks`).
    pub peer: SocketAddr,
    /// The listener address the client connected to (`destination.port`, `ports`).
    pub local: SocketAddr,
}

/// The verified identity of the mTLS peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Istio form `<trust-domain>/ns/<namespace>/sa/<service-account>` (no
    /// `spiffe://`), what `principals` patterns match. Shared: every request of the
    /// connection carries it.
    pub principal: Arc<str>,
}

/// The verified request principal (from a JWT bearer token), what
/// `request_principals` and `request.auth.*` conditions match.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestAuth {
    /// `<iss>/<sub>`.
    pub principal: String,
    /// The token's `aud` values.
    pub audiences: Vec<String>,
    /// Every claim of the token (a JSON object).
    pub claims: serde_json::Value,
}
