//! Why a request's token was refused. The variants are for logs and metrics; what
//! the client sees is generic (`Jwt verification fails`, like Istio), a 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`, or gRPC `UNAUTHENTICATED`.

use thiserror::Error;

/// The message every client gets, whatever the cause (Istio's wording).
pub const CLIENT_MESSAGE: &str = "Jwt verification fails";

/// The `WWW-Authenticate` value for a refused token (RFC 6750 §3).
pub const WWW_AUTHENTICATE: &str = r#"Bearer error="invalid_token""#;

/// A presented token was refused. Never contains the token or key material.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthnError {
    #[error("token of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("token issuer {0:?} is not configured")]
    UnknownIssuer(String),
    #[error("issuer {issuer}: no key with kid {kid:?}")]
    UnknownKid { issuer: String, kid: String },
    #[error("issuer {issuer}: no key accepts algorithm {alg}")]
    NoMatchingKey { issuer: String, alg: String },
    #[error("issuer {issuer}: no signing keys available ({reason})")]
    KeysUnavailable { issuer: String, reason: String },
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("token audience not accepted")]
    Audience,
    #[error("required claim {0:?} missing")]
    MissingClaim(String),
    #[error("claim {0:?} has a bad format")]
    ClaimFormat(String),
    #[error("token rejected: {0}")]
    Other(String),
}

impl AuthnError {
    /// What the client is told: always the same generic text.
    pub fn client_message(&self) -> &'static str {
        CLIENT_MESSAGE
    }

    /// A short, bounded label for metrics and access logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthnError::TooLarge { .. } => "too_large",
            AuthnError::Malformed(_) => "malformed",
            AuthnError::Algorithm(_) => "algorithm",
            AuthnError::UnknownIssuer(_) => "unknown_issuer",
            AuthnError::UnknownKid { .. } => "unknown_kid",
            AuthnError::NoMatchingKey { .. } => "no_matching_key",
            AuthnError::KeysUnavailable { .. } => "keys_unavailable",
            AuthnError::Signature => "signature",
            AuthnError::Expired => "expired",
            AuthnError::NotYetValid => "not_yet_valid",
            AuthnError::Audience => "audience",
            AuthnError::MissingClaim(_) => "missing_claim",
            AuthnError::ClaimFormat(_) => "claim_format",
            AuthnError::Other(_) => "other",
        }
    }

    /// HTTP status for this error: always 401.
    pub fn http_status(&self) -> http::StatusCode {
        http::StatusCode::UNAUTHORIZED
    }

    /// gRPC status code for this error: always 16 (`UNAUTHENTICATED`).
    pub fn grpc_code(&self) -> i32 {
        16
    }

    pub(crate) fn from_jwt(err: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match err.kind() {
            K::InvalidSignature => AuthnError::Signature,
            K::ExpiredSignature => AuthnError::Expired,
            K::ImmatureSignature => AuthnError::NotYetValid,
            K::InvalidAudience => AuthnError::Audience,
            K::InvalidIssuer => AuthnError::UnknownIssuer("(mismatch)".into()),
            K::MissingRequiredClaim(c) => AuthnError::MissingClaim(c.clone()),
            K::InvalidClaimFormat(c) => AuthnError::ClaimFormat(c.clone()),
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                AuthnError::Algorithm("mismatch".into())
            }
            K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                AuthnError::Malformed(err.to_string())
            }
            _ => AuthnError::Other(err.to_string()),
        }
    }
}
