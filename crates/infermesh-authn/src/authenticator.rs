//! The `Authenticator`: Istio `RequestAuthentication` over several issuers. The
//! verification hot path reads an `ArcSwap`ped key set and never waits on the
//! network while the token's key is cached; an unknown `kid` (or an empty cache)
//! triggers one rate-limited, single-flight refetch; a failed fetch keeps the
//! cached keys.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName};
use infermesh_config::{Issuer, JwksSource};
use jsonwebtoken::{Algorithm, Header, Validation};
use tokio::task::JoinHandle;

use crate::error::AuthnError;
use crate::extract;
use crate::fetch::Fetcher;
use crate::jwks::{KeySet, VerifyKey};
use crate::principal::RequestPrincipal;

/// Upper bound on the tolerated clock difference, whatever the config says.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Time limit of one discovery or JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_PERIODIC_REFRESH: Duration = Duration::from_secs(1);

/// Verifies bearer tokens against the configured issuers. Cheap to share
/// (`Arc<Authenticator>`); immutable except for the cached keys.
pub struct Authenticator {
    issuers: Vec<IssuerState>,
    /// Distinct token locations, each with the issuers that read it.
    locations: Vec<(HeaderName, String)>,
    location_issuers: Vec<Vec<usize>>,
    fetcher: Result<Fetcher, String>,
}

struct IssuerState {
    cfg: Issuer,
    keys: ArcSwap<KeySet>,
    validation: Validation,
    refresh: tokio::sync::Mutex<RefreshState>,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

/// The key-loading status of one issuer (for logs and readiness).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub issuer: String,
    /// Keys cached now.
    pub keys: usize,
    /// The last fetch's error, if it failed.
    pub error: Option<String>,
}

impl Authenticator {
    /// Compiles the issuers. Inline JWKS are parsed now (an unusable one leaves the
    /// issuer with no keys: its tokens fail, closed); remote keys are fetched by
    /// [`Authenticator::load_keys`], [`Authenticator::spawn_refresh`] or on first use.
    pub fn new(issuers: &[Issuer]) -> Authenticator {
        crate::ensure_crypto_provider();
        let mut locations: Vec<(HeaderName, String)> = Vec::new();
        let mut location_issuers: Vec<Vec<usize>> = Vec::new();
        let mut states = Vec::with_capacity(issuers.len());
        for (i, cfg) in issuers.iter().enumerate() {
            let mut from = cfg.from_headers.clone();
            if from.is_empty() {
                from.push((http::header::AUTHORIZATION, "Bearer ".to_owned()));
            }
            for loc in from {
                match locations.iter().position(|l| *l == loc) {
                    Some(p) => location_issuers[p].push(i),
                    None => {
                        locations.push(loc);
                        location_issuers.push(vec![i]);
                    }
                }
            }
            let keys = match &cfg.jwks {
                JwksSource::Inline(doc) => KeySet::parse(doc.as_bytes()).unwrap_or_else(|e| {
                    tracing::error!(issuer = %cfg.issuer, error = %e, "inline JWKS unusable");
                    KeySet::default()
                }),
                _ => KeySet::default(),
            };
            states.push(IssuerState {
                validation: validation_for(cfg),
                cfg: cfg.clone(),
                keys: ArcSwap::from_pointee(keys),
                refresh: tokio::sync::Mutex::new(RefreshState::default()),
            });
        }
        Authenticator {
            issuers: states,
            locations,
            location_issuers,
            fetcher: Fetcher::new(FETCH_TIMEOUT),
        }
    }

    /// Authenticates a request: `Ok(None)` when it carries no token (policies
    /// decide), `Ok(Some(_))` for a valid token, `Err` (→ 401 / UNAUTHENTICATED) for a
    /// token that is present but not valid.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<RequestPrincipal>, AuthnError> {
        let Some(found) = extract::find_token(headers, &self.locations)? else {
            return Ok(None);
        };
        let allowed = &self.location_issuers[found.location];
        self.verify_for(found.token, allowed).await.map(Some)
    }

    /// Verifies one token against every configured issuer.
    pub async fn verify(&self, token: &str) -> Result<RequestPrincipal, AuthnError> {
        if token.len() > extract::MAX_TOKEN_BYTES {
            return Err(AuthnError::TooLarge {
                len: token.len(),
                max: extract::MAX_TOKEN_BYTES,
            });
        }
        let all: Vec<usize> = (0..self.issuers.len()).collect();
        self.verify_for(token, &all).await
    }

    async fn verify_for(
        &self,
        token: &str,
        allowed: &[usize],
    ) -> Result<RequestPrincipal, AuthnError> {
        let (header, iss) = extract::peek(token)?;
        let Some(state) = allowed
            .iter()
            .map(|i| &self.issuers[*i])
            .find(|s| s.cfg.issuer == iss)
        else {
            return Err(AuthnError::UnknownIssuer(iss.chars().take(200).collect()));
        };
        match state.verify_cached(token, &header) {
            Err(Miss) => {}
            Ok(result) => return result,
        }
        // Unknown kid or no keys yet: one rate-limited refetch, then a last try.
        let fetched = self.refresh(state, false).await;
        match state.verify_cached(token, &header) {
            Ok(result) => result,
            Err(Miss) => Err(state.miss_error(&header, fetched.err())),
        }
    }

    /// Fetches every remote issuer's keys once, now (not rate-limited); for startup
    /// and readiness. Inline issuers report their parsed keys.
    pub async fn load_keys(&self) -> Vec<KeyStatus> {
        let mut out = Vec::with_capacity(self.issuers.len());
        for state in &self.issuers {
            let error = self.refresh(state, true).await.err();
            out.push(KeyStatus {
                issuer: state.cfg.issuer.clone(),
                keys: state.keys.load().len(),
                error,
            });
        }
        out
    }

    /// Starts one task per remote issuer that refetches its keys every
    /// `refresh_interval` (first fetch at once; retries after
    /// `min_refresh_interval` while it has no keys). The tasks end when the
    /// `Authenticator` is dropped; abort the handles to stop them earlier.
    pub fn spawn_refresh(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        for (i, state) in self.issuers.iter().enumerate() {
            if matches!(state.cfg.jwks, JwksSource::Inline(_)) {
                continue;
            }
            let weak: Weak<Authenticator> = Arc::downgrade(self);
            let every = state.cfg.refresh_interval.max(MIN_PERIODIC_REFRESH);
            let retry = state.cfg.min_refresh_interval.max(MIN_PERIODIC_REFRESH);
            handles.push(tokio::spawn(async move {
                loop {
                    let Some(this) = weak.upgrade() else { return };
                    let state = &this.issuers[i];
                    let ok = this.refresh(state, true).await.is_ok();
                    let wait = if ok || state.keys.load().len() > 0 {
                        every
                    } else {
                        retry.min(every)
                    };
                    drop(this);
                    tokio::time::sleep(wait).await;
                }
            }));
        }
        handles
    }

    /// The header names every issuer forwards claims into: the proxy removes
    /// client-sent values of these before forwarding.
    pub fn forwarded_header_names(&self) -> Vec<HeaderName> {
        let mut names: Vec<HeaderName> = Vec::new();
        for s in &self.issuers {
            for (_, h) in &s.cfg.forward_claims {
                if !names.contains(h) {
                    names.push(h.clone());
                }
            }
        }
        names
    }

    /// Where tokens are read from: (header, prefix), in lookup order.
    pub fn token_locations(&self) -> &[(HeaderName, String)] {
        &self.locations
    }

    /// The `kid`s cached now for `issuer` (diagnostics, tests).
    pub fn cached_kids(&self, issuer: &str) -> Vec<String> {
        self.issuers
            .iter()
            .find(|s| s.cfg.issuer == issuer)
            .map(|s| s.keys.load().kids())
            .unwrap_or_default()
    }

    /// Refetches one issuer's keys. Single-flight: callers that queued behind a
    /// fetch that started after them reuse its result. Unless `force`, at most one
    /// fetch per `min_refresh_interval`. A failure keeps the cached keys.
    async fn refresh(&self, state: &IssuerState, force: bool) -> Result<(), String> {
        let queued_at = Instant::now();
        let mut guard = state.refresh.lock().await;
        if let Some(last) = guard.last_attempt {
            if last >= queued_at {
                return Ok(());
            }
            if !force && last.elapsed() < state.cfg.min_refresh_interval {
                return Err("refetch rate-limited".into());
            }
        }
        let fetcher = match &state.cfg.jwks {
            JwksSource::Inline(_) => return Ok(()),
            _ => self.fetcher.as_ref().map_err(Clone::clone)?,
        };
        guard.last_attempt = Some(Instant::now());
        let uri = match &state.cfg.jwks {
            JwksSource::Uri(u) => u.clone(),
            JwksSource::Inline(_) => return Ok(()),
            JwksSource::Discovery => {
                // Rediscover on periodic refreshes; on a kid miss reuse the known URI.
                match (&guard.jwks_uri, force) {
                    (Some(u), false) => u.clone(),
                    (known, _) => match fetcher.discover_jwks_uri(&state.cfg.issuer).await {
                        Ok(u) => {
                            guard.jwks_uri = Some(u.clone());
                            u
                        }
                        Err(e) => match known {
                            Some(u) => {
                                tracing::warn!(issuer = %state.cfg.issuer, error = %e, "OIDC discovery failed; using the known jwks_uri");
                                u.clone()
                            }
                            None => {
                                tracing::warn!(issuer = %state.cfg.issuer, error = %e, "OIDC discovery failed");
                                return Err(e);
                            }
                        },
                    },
                }
            }
        };
        match fetcher.fetch_jwks(&uri).await {
            Ok(set) => {
                tracing::debug!(issuer = %state.cfg.issuer, keys = set.len(), "JWKS refreshed");
                state.keys.store(Arc::new(set));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %state.cfg.issuer, error = %e, cached = state.keys.load().len(), "JWKS fetch failed; keeping cached keys");
                Err(e)
            }
        }
    }
}

/// The cache has no key for this token (unknown kid, or none for its alg).
struct Miss;

impl IssuerState {
    /// Verifies with cached keys only: no network.
    fn verify_cached(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<Result<RequestPrincipal, AuthnError>, Miss> {
        let keys = self.keys.load();
        let alg = header.alg;
        match &header.kid {
            Some(kid) => {
                let key = keys.by_kid(kid).ok_or(Miss)?;
                if !key.algs.contains(&alg) {
                    return Ok(Err(AuthnError::Algorithm(format!(
                        "{alg:?} not allowed for key {kid:?}"
                    ))));
                }
                Ok(self.check(token, key, alg))
            }
            None => {
                let mut last = None;
                for key in keys.for_alg(alg) {
                    match self.check(token, key, alg) {
                        Err(AuthnError::Signature) => last = Some(AuthnError::Signature),
                        other => return Ok(other),
                    }
                }
                last.map(Err).ok_or(Miss)
            }
        }
    }

    fn check(
        &self,
        token: &str,
        key: &VerifyKey,
        alg: Algorithm,
    ) -> Result<RequestPrincipal, AuthnError> {
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| AuthnError::from_jwt(&e))?;
        Ok(RequestPrincipal::new(data.claims, &self.cfg.forward_claims))
    }

    fn miss_error(&self, header: &Header, fetch_error: Option<String>) -> AuthnError {
        let issuer = self.cfg.issuer.clone();
        if self.keys.load().len() == 0 {
            return AuthnError::KeysUnavailable {
                issuer,
                reason: fetch_error.unwrap_or_else(|| "JWKS has no usable key".into()),
            };
        }
        match &header.kid {
            Some(kid) => AuthnError::UnknownKid {
                issuer,
                kid: kid.chars().take(100).collect(),
            },
            None => AuthnError::NoMatchingKey {
                issuer,
                alg: format!("{:?}", header.alg),
            },
        }
    }
}

fn validation_for(cfg: &Issuer) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = cfg.clock_skew.min(MAX_CLOCK_SKEW).as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[cfg.issuer.as_str()]);
    let mut required = vec!["exp", "iss"];
    if cfg.audiences.is_empty() {
        // Istio: no audiences configured → any audience.
        v.validate_aud = false;
    } else {
        v.set_audience(&cfg.audiences);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}
