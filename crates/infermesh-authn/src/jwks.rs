//! A parsed JWKS: the verification keys of one issuer, each bound to the algorithms
//! its own type allows (RSA → RS*/PS*, P-256 → ES256, P-384 → ES384, Ed25519 →
//! EdDSA, or only the JWK's `alg` when it names one). Symmetric (`oct`) keys,
//! encryption keys and RSA keys under 2048 bits are dropped, so HMAC and
//! `alg: none` can never verify.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use thiserror::Error;

/// Largest JWKS document accepted (bytes).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
pub const MAX_KEYS: usize = 64;
const MIN_RSA_BITS: usize = 2048;

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A JWKS document could not be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("JWKS is not a JSON object with a \"keys\" array: {0}")]
    Json(String),
    #[error("JWKS of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("JWKS has no usable signature verification key ({0} skipped)")]
    NoUsableKey(usize),
}

/// One verification key.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) algs: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerifyKey>,
}

impl KeySet {
    /// Parses a JWKS document, skipping keys that cannot verify signatures.
    pub(crate) fn parse(doc: &[u8]) -> Result<KeySet, JwksError> {
        if doc.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge(doc.len()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(doc).map_err(|e| JwksError::Json(e.to_string()))?;
        let Some(entries) = value.get("keys").and_then(|k| k.as_array()) else {
            return Err(JwksError::Json("missing \"keys\" array".into()));
        };
        let mut keys = Vec::new();
        let mut skipped = 0;
        for entry in entries {
            if keys.len() == MAX_KEYS {
                skipped += 1;
                continue;
            }
            // One bad or foreign key must not spoil the others.
            let parsed = serde_json::from_value::<Jwk>(entry.clone())
                .ok()
                .and_then(|jwk| verify_key(&jwk));
            match parsed {
                Some(k) => keys.push(k),
                None => skipped += 1,
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(skipped));
        }
        Ok(KeySet { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key named `kid`, if any.
    pub(crate) fn by_kid(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys that accept `alg` (for tokens without a `kid`).
    pub(crate) fn for_alg(&self, alg: Algorithm) -> impl Iterator<Item = &VerifyKey> {
        self.keys.iter().filter(move |k| k.algs.contains(&alg))
    }

    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }
}

/// The algorithms a key type allows, narrowed to the JWK's own `alg` if present.
fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.n.trim_end_matches('='))
                .ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return None;
            }
            RSA_ALGS.to_vec()
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        // `oct` (HMAC secrets) and unknown key types never verify tokens.
        _ => return None,
    };
    let algs = match jwk.common.key_algorithm {
        None => by_type,
        Some(ka) => {
            let alg = key_alg(ka)?;
            if !by_type.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        algs,
        key,
    })
}

fn key_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Checks a JWKS document the way the authenticator will use it (for config
/// validation of inline JWKS); returns the number of usable keys.
pub fn check_jwks(doc: &str) -> Result<usize, JwksError> {
    KeySet::parse(doc.as_bytes()).map(|s| s.len())
}
