//! Who is calling, set once by the stage that knows and read by authorization,
//! telemetry and audit; nothing downstream re-parses headers, tokens or certificates.
//!
//! * [`Caller`]: what the listener knows about the connection — [`Connection`] (the
//!   TCP peer and the local address it connected to) and [`PeerIdentity`] (the mTLS
//!   peer's SPIFFE identity, when TLS terminated with a client certificate). Made once
//!   per connection and passed to each of its requests.
//! * [`RequestAuth`]: the verified JWT of the request, a request extension set by the
//!   authenticate stage (or, at a sidecar, from the gateway's end-user header).

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

/// What the listener knows about the caller of every request on one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The TCP addresses (absent when the socket could not tell them).
    pub connection: Option<Connection>,
    /// The verified mTLS peer; absent for plaintext and for TLS without a client
    /// certificate (policies on `principals` / `namespaces` then do not match,
    /// `not_principals` does).
    pub peer: Option<PeerIdentity>,
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
