//! Request authentication for infermesh (Istio `RequestAuthentication` semantics):
//! JWT bearer tokens from several issuers verified against keys from OIDC discovery,
//! a JWKS URL or an inline JWKS; only the algorithms of each key; `iss`, `aud`,
//! `exp`, `nbf` checked with a bounded clock skew; keys cached, refreshed
//! periodically and on an unknown `kid` (rate-limited), kept through JWKS outages.
//! Also the embedded development OIDC issuer of the quickstart ([`DevIssuer`]).
//!
//! ```text
//! Authenticator::new(&issuers) ─ spawn_refresh() ─ authenticate(&headers)
//!   Ok(None)            no token: no request principal, policies decide
//!   Ok(Some(principal)) RequestPrincipal { principal: "iss/sub", claims, forward_headers, .. }
//!   Err(AuthnError)     401 + WWW-Authenticate: Bearer error="invalid_token" / UNAUTHENTICATED
//! ```
//!
//! Wiring: build one `Arc<Authenticator>` per config snapshot, `load_keys().await`
//! before reporting ready (its `KeyStatus` list says which issuers have keys), then
//! `spawn_refresh()`; in the pipeline, remove client-sent
//! [`Authenticator::forwarded_header_names`], call `authenticate`, put the principal
//! into the request extensions and its `forward_headers` on the upstream request.
//! Errors answer with [`CLIENT_MESSAGE`] and [`WWW_AUTHENTICATE`]; log
//! [`AuthnError`]'s `Display` and `kind()` (never the token).
//!
//! Dev issuer: `DevIssuer::open(state_dir, "http://127.0.0.1:8900")`, then
//! `serve(listener, clients, shutdown)` for `up`, or `mint(sub, groups, aud, ttl)` for
//! `infermesh token`.
#![forbid(unsafe_code)]

mod authenticator;
mod dev_issuer;
mod error;
mod extract;
mod fetch;
mod jwks;
mod principal;

pub use authenticator::{Authenticator, FETCH_TIMEOUT, KeyStatus, MAX_CLOCK_SKEW};
pub use dev_issuer::{DevClient, DevIssuer, DevIssuerError, MAX_TTL};
pub use error::{AuthnError, CLIENT_MESSAGE, WWW_AUTHENTICATE};
pub use extract::MAX_TOKEN_BYTES;
pub use jwks::{JwksError, check_jwks};
pub use principal::RequestPrincipal;

/// jsonwebtoken picks its crypto backend from its features; install ours
/// explicitly so that another crate enabling a second backend cannot leave it
/// undecided (it would panic on first use).
pub(crate) fn ensure_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

#[cfg(feature = "test-util")]
pub mod testkit;
