//! What the engine decides on ([`AuthzRequest`], [`ModelOp`]) and what it answers
//! ([`Decision`]). Borrowed views: the proxy builds one per request from what earlier
//! stages parsed, without copying.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use infermesh_config::Action;

pub use infermesh_tfserving::Api;

/// The model operation of a request: the same for REST and gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelOp<'a> {
    pub name: &'a str,
    /// The version the request resolves to, when known: the one it names, the one its
    /// label names (the engine resolves labels through `models:` itself), or the one
    /// routing picked. `None` with no label: unknown, and policies that test versions
    /// or labels then fail closed (a DENY matches, an ALLOW does not).
    pub version: Option<i64>,
    /// The label the request names (`/labels/canary`, `ModelSpec.version_label`).
    /// When it names a version instead, the label `models:` gives that version counts.
    pub label: Option<&'a str>,
    /// The signature name; `Some("")` means the default (`serving_default`). `None`:
    /// not known (a REST body not inspected): policies testing signatures fail closed.
    pub signature: Option<&'a str>,
    pub api: Api,
}

/// Everything a policy can test about one request.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthzRequest<'a> {
    /// The peer's identity from its mTLS certificate, Istio form
    /// `<trust-domain>/ns/<namespace>/sa/<service-account>` (no `spiffe://`).
    pub peer_principal: Option<&'a str>,
    /// The peer's namespace; derived from `peer_principal` when `None`.
    pub peer_namespace: Option<&'a str>,
    /// `<iss>/<sub>` of the verified JWT.
    pub request_principal: Option<&'a str>,
    /// The verified JWT's claims (a JSON object).
    pub claims: Option<&'a serde_json::Value>,
    /// The verified JWT's `aud` values.
    pub audiences: &'a [String],
    /// The peer address (`source.ip`, `ip_blocks`).
    pub source_ip: Option<IpAddr>,
    /// `:authority` / `Host`, without the port; compared case-insensitively.
    pub host: Option<&'a str>,
    /// The port the request arrived on (`ports`, `destination.port`).
    pub port: Option<u16>,
    /// `GET`, `POST`, …; gRPC is always `POST`.
    pub method: &'a str,
    /// The normalized path ([`crate::normalize`]), without the query; for gRPC the
    /// method path.
    pub path: &'a str,
    pub headers: Option<&'a HeaderMap>,
    /// `None` for requests that are not model requests.
    pub model: Option<ModelOp<'a>>,
}

/// Why a decision came out as it did (safe to log; never sent to clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// A CUSTOM policy matched; its ext_authz provider is not implemented yet, so the
    /// request is denied (fail closed).
    CustomUnavailable,
    /// A DENY policy matched.
    DenyMatched,
    /// An ALLOW policy matched.
    AllowMatched,
    /// ALLOW policies exist and none matched.
    NoAllowMatched,
    /// No ALLOW policy exists: `authorization.default_deny` decided.
    Default,
}

/// The policy and rule that decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deciding {
    pub policy: Arc<str>,
    /// Index into the policy's `rules`.
    pub rule: usize,
    pub action: Action,
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub basis: Basis,
    /// The policy and rule that decided (`None` for [`Basis::NoAllowMatched`] and
    /// [`Basis::Default`]).
    pub deciding: Option<Deciding>,
    /// An AUDIT policy matched: record the request in the audit trail.
    pub audit: bool,
    /// Human-readable reasons, filled only by [`crate::Authorizer::explain`]; never
    /// sent to clients (they reveal policy contents).
    pub reasons: Vec<String>,
}
