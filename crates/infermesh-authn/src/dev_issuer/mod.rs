//! The embedded development OIDC issuer of the quickstart: an ES256 signing key
//! persisted under `<state>/issuer/` (rotatable; the previous key stays published
//! for overlap), token minting for `infermesh token`, and an HTTP server with
//! discovery, JWKS and a client-credentials token endpoint (`server.rs`).
//! For development only: production points the mesh at a real issuer.

mod server;
mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::rand::SecureRandom as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use thiserror::Error;

pub use server::DevClient;

/// Longest lifetime a minted token may have.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The dev issuer failed (state directory, key material, bad mint request).
#[derive(Debug, Error)]
pub enum DevIssuerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key: {0}")]
    Crypto(String),
    #[error("invalid token request: {0}")]
    Invalid(String),
}

impl DevIssuerError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DevIssuerError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The development issuer. Clones share the keys (rotation is seen by all).
#[derive(Clone)]
pub struct DevIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    dir: PathBuf,
    keys: ArcSwap<Keys>,
    rotating: Mutex<()>,
}

struct Keys {
    current: SigningKey,
    previous: Option<SigningKey>,
}

/// A signing key; deliberately not `Debug`.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: Jwk,
}

impl SigningKey {
    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, DevIssuerError> {
        store::check(der)?;
        let encoding = EncodingKey::from_ec_der(der);
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| DevIssuerError::Crypto(e.to_string()))?;
        let kid = public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| DevIssuerError::Crypto(e.to_string()))?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        public.common.key_algorithm = Some(KeyAlgorithm::ES256);
        Ok(SigningKey {
            kid,
            encoding,
            public,
        })
    }
}

impl DevIssuer {
    /// Opens the issuer whose keys live in `<state_dir>/issuer/`, generating the
    /// signing key on first use. `issuer_url` is the `iss` of its tokens
    /// (quickstart: `http://127.0.0.1:8900`).
    pub fn open(state_dir: &Path, issuer_url: &str) -> Result<DevIssuer, DevIssuerError> {
        crate::ensure_crypto_provider();
        let dir = store::key_dir(state_dir)?;
        let current_path = dir.join(store::CURRENT);
        let current = match store::read(&current_path)? {
            Some(der) => der,
            None => store::create_if_absent(&current_path, &store::generate()?)?,
        };
        let previous = store::read(&dir.join(store::PREVIOUS))?;
        let keys = Keys {
            current: SigningKey::from_pkcs8(&current)?,
            previous: previous
                .as_deref()
                .map(SigningKey::from_pkcs8)
                .transpose()?,
        };
        Ok(DevIssuer {
            inner: Arc::new(Inner {
                issuer: issuer_url.trim_end_matches('/').to_owned(),
                dir,
                keys: ArcSwap::from_pointee(keys),
                rotating: Mutex::new(()),
            }),
        })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `kid` tokens are signed with now.
    pub fn kid(&self) -> String {
        self.inner.keys.load().current.kid.clone()
    }

    /// Replaces the signing key with a new one; the old one stays in the JWKS
    /// (until the next rotation) so tokens it signed keep verifying. Returns the new
    /// `kid`.
    pub fn rotate(&self) -> Result<String, DevIssuerError> {
        let _one_at_a_time = self
            .inner
            .rotating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let der = store::generate()?;
        let new = SigningKey::from_pkcs8(&der)?;
        store::rotate(&self.inner.dir, &der)?;
        let old = self.inner.keys.load();
        let kid = new.kid.clone();
        let previous = SigningKey {
            kid: old.current.kid.clone(),
            encoding: old.current.encoding.clone(),
            public: old.current.public.clone(),
        };
        self.inner.keys.store(Arc::new(Keys {
            current: new,
            previous: Some(previous),
        }));
        tracing::info!(kid = %kid, "dev issuer signing key rotated");
        Ok(kid)
    }

    /// Mints a token: `sub`, `groups`, `aud` (omitted when empty), `iat`/`nbf` now,
    /// `exp` after `ttl` (1 s ..= 7 days), a random `jti`.
    pub fn mint(
        &self,
        sub: &str,
        groups: &[String],
        aud: &[String],
        ttl: Duration,
    ) -> Result<String, DevIssuerError> {
        if sub.is_empty() {
            return Err(DevIssuerError::Invalid("empty subject".into()));
        }
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
            return Err(DevIssuerError::Invalid(format!(
                "ttl {ttl:?} outside 1s..={MAX_TTL:?}"
            )));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| DevIssuerError::Crypto("random source failed".into()))?;
        let mut claims = json!({
            "iss": self.inner.issuer,
            "sub": sub,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        });
        match aud {
            [] => {}
            [one] => claims["aud"] = json!(one),
            many => claims["aud"] = json!(many),
        }
        let keys = self.inner.keys.load();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = Some(keys.current.kid.clone());
        jsonwebtoken::encode(&header, &claims, &keys.current.encoding)
            .map_err(|e| DevIssuerError::Crypto(e.to_string()))
    }

    /// The public keys (current, then previous) as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.inner.keys.load();
        let mut set = JwkSet {
            keys: vec![keys.current.public.clone()],
        };
        if let Some(prev) = &keys.previous {
            set.keys.push(prev.public.clone());
        }
        serde_json::to_value(&set).unwrap_or_else(|_| json!({"keys": []}))
    }

    /// The OIDC discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> serde_json::Value {
        let iss = &self.inner.issuer;
        json!({
            "issuer": iss,
            "jwks_uri": format!("{iss}/jwks"),
            "token_endpoint": format!("{iss}/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}
