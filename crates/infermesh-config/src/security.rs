//! The compiled request-authentication and authorization sections of the mesh:
//! issuers (Istio `RequestAuthentication`) and policies (Istio `AuthorizationPolicy`
//! plus model operations). Plain data: the authn and authz crates compile these
//! further into their own matchers.

use std::time::Duration;

use http::HeaderName;

/// Where an issuer's signing keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
    Discovery,
    /// A JWKS URL.
    Uri(String),
    /// A JWKS document given inline (JSON text).
    Inline(String),
}

/// One trusted token issuer (`RequestAuthentication.jwtRules[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer {
    /// The exact `iss` claim value.
    pub issuer: String,
    pub jwks: JwksSource,
    /// Accepted `aud` values; empty accepts any audience.
    pub audiences: Vec<String>,
    /// Where the token is read: (header, value prefix). Default:
    /// `[("authorization", "Bearer ")]`.
    pub from_headers: Vec<(HeaderName, String)>,
    /// Claims copied to upstream request headers: (claim path, header).
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Tolerated clock difference for `exp`/`nbf` (default 60 s, at most 5 min).
    pub clock_skew: Duration,
    /// How often the keys are refetched (default 10 min); an unknown `kid` triggers
    /// a refetch at most once per `min_refresh_interval`.
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
}

/// `AuthorizationPolicy.action`, evaluated CUSTOM → DENY → ALLOW; AUDIT only marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Custom,
    Deny,
    Allow,
    Audit,
}

/// One policy (`AuthorizationPolicy`): a named action over rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub action: Action,
    /// A policy with no rules: ALLOW matches nothing, DENY matches nothing (Istio: an
    /// ALLOW policy with an empty `rules` list allows nothing; `rules: [{}]` matches all).
    pub rules: Vec<Rule>,
    /// Only for CUSTOM: the ext_authz provider name.
    pub provider: Option<String>,
}

/// A rule matches when any `from` matches AND any `to` matches AND every `when`
/// holds; an empty list matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rule {
    pub from: Vec<Source>,
    pub to: Vec<Operation>,
    pub when: Vec<Condition>,
}

/// Istio string match patterns: exact, `prefix*`, `*suffix`, or `*` (present).
pub type Patterns = Vec<String>;

/// `rules[].from[].source`: every non-empty field must match (AND); within a field
/// any value (OR); `not_*` must not match.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Source {
    /// Peer identities, Istio form `<trust-domain>/ns/<ns>/sa/<sa>`.
    pub principals: Patterns,
    pub not_principals: Patterns,
    /// `<iss>/<sub>` of the request's JWT.
    pub request_principals: Patterns,
    pub not_request_principals: Patterns,
    pub namespaces: Patterns,
    pub not_namespaces: Patterns,
    /// CIDRs or single addresses.
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
}

/// `rules[].to[].operation`, plus infermesh's model operations.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Operation {
    pub hosts: Patterns,
    pub not_hosts: Patterns,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Patterns,
    pub not_methods: Patterns,
    /// Matched against the normalized path.
    pub paths: Patterns,
    pub not_paths: Patterns,
    /// Model names (REST path or gRPC `ModelSpec.name`).
    pub models: Patterns,
    pub not_models: Patterns,
    /// Model versions (as decimal strings) the request resolves to.
    pub versions: Patterns,
    pub not_versions: Patterns,
    /// Version labels named by the request (`stable`, `canary`).
    pub labels: Patterns,
    pub not_labels: Patterns,
    /// Signature names (`serving_default` when the request names none).
    pub signatures: Patterns,
    pub not_signatures: Patterns,
    /// `predict`, `classify`, `regress`, `metadata`, `status`.
    pub apis: Patterns,
    pub not_apis: Patterns,
}

/// `rules[].when[]`: `key` (e.g. `request.auth.claims[groups]`,
/// `request.headers[x-team]`, `source.ip`) must match one of `values` and none of
/// `not_values`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Condition {
    pub key: String,
    pub values: Patterns,
    pub not_values: Patterns,
}

/// How paths are normalized before policies match them (Istio's
/// `pathNormalization` options, plus its handling of escaped slashes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// `%2F` / `%5C` in a path: request rejected with 400 (safest; default).
    #[default]
    Reject,
    /// Decoded to `/` and `\` and then normalized.
    DecodeAndMerge,
    /// Left as they are (the path segment keeps `%2F`).
    Keep,
}

/// Authorization settings that are not policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthzSettings {
    /// When the mesh has no ALLOW policy at all: deny every request (true, default)
    /// or allow what no DENY/CUSTOM policy denies (false, Istio's behaviour). Once any
    /// ALLOW policy exists, a request must match one (Istio), whatever this says.
    pub default_deny: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        AuthzSettings {
            default_deny: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// The embedded development OIDC issuer that `infermesh up` runs (`dev_issuer:`);
/// production meshes leave it out and list their real issuers under `issuers:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevIssuerConfig {
    /// Where it serves discovery, JWKS and the token endpoint; its issuer URL is
    /// `http://<listen>`.
    pub listen: std::net::SocketAddr,
    /// Clients allowed the client-credentials grant.
    pub clients: Vec<DevClientConfig>,
}

/// A client of the dev issuer's token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevClientConfig {
    pub client_id: String,
    pub client_secret: String,
    /// `groups` claim of its tokens.
    pub groups: Vec<String>,
    /// `aud` of its tokens (empty: none).
    pub audiences: Vec<String>,
    /// Token lifetime (default 1 h).
    pub ttl: Duration,
}

impl DevIssuerConfig {
    /// The issuer URL (`iss` claim) of the tokens it signs.
    pub fn issuer_url(&self) -> String {
        format!("http://{}", self.listen)
    }
}
