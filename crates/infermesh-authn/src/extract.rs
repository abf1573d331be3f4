//! Finding the token in a request (`from_headers` locations, `Authorization:
//! Bearer` by default) and peeking at its unverified header and `iss`, only to
//! pick the issuer and key; nothing read here is trusted before the signature checks.

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use jsonwebtoken::{Algorithm, Header};

use crate::error::AuthnError;

/// Largest token accepted (bytes of the header value); larger → 401.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Algorithms a token may name; everything else (`none`, `HS*`, unknown) is refused
/// before any key is looked at.
pub(crate) const ACCEPTED_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The token found in the request and the index of the location it came from.
pub(crate) struct Found<'a> {
    pub(crate) token: &'a str,
    pub(crate) location: usize,
}

/// The first location (in configured order) holding a value with its prefix.
/// A header without the prefix (`Authorization: Basic ...`) is not a token.
pub(crate) fn find_token<'a>(
    headers: &'a HeaderMap,
    locations: &[(HeaderName, String)],
) -> Result<Option<Found<'a>>, AuthnError> {
    for (location, (name, prefix)) in locations.iter().enumerate() {
        for value in headers.get_all(name) {
            let bytes = value.as_bytes();
            if bytes.len() > MAX_TOKEN_BYTES + prefix.len() {
                return Err(AuthnError::TooLarge {
                    len: bytes.len(),
                    max: MAX_TOKEN_BYTES,
                });
            }
            // The auth scheme is case-insensitive (RFC 7235 §2.1).
            if bytes.len() < prefix.len()
                || !bytes[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            {
                continue;
            }
            let token = std::str::from_utf8(&bytes[prefix.len()..])
                .map_err(|_| AuthnError::Malformed("token is not ASCII".into()))?
                .trim();
            if token.len() > MAX_TOKEN_BYTES {
                return Err(AuthnError::TooLarge {
                    len: token.len(),
                    max: MAX_TOKEN_BYTES,
                });
            }
            if token.is_empty() {
                return Err(AuthnError::Malformed("empty token".into()));
            }
            return Ok(Some(Found { token, location }));
        }
    }
    Ok(None)
}

/// The unverified header (with an accepted algorithm) and `iss` of a compact JWS.
pub(crate) fn peek(token: &str) -> Result<(Header, String), AuthnError> {
    let mut parts = token.split('.');
    let (Some(head), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthnError::Malformed(
            "not three dot-separated parts".into(),
        ));
    };
    let head_json = decode_json(head, "header")?;
    let alg = head_json
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or_else(|| AuthnError::Malformed("header has no alg".into()))?;
    let accepted = alg
        .parse::<Algorithm>()
        .is_ok_and(|a| ACCEPTED_ALGS.contains(&a));
    if !accepted {
        return Err(AuthnError::Algorithm(alg.chars().take(16).collect()));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| AuthnError::Malformed(format!("header: {e}")))?;
    let claims = decode_json(payload, "payload")?;
    let iss = claims
        .get("iss")
        .and_then(|v| v.as_str())
        .ok_or_else(|| AuthnError::MissingClaim("iss".into()))?;
    Ok((header, iss.to_owned()))
}

fn decode_json(part: &str, what: &str) -> Result<serde_json::Value, AuthnError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthnError::Malformed(format!("{what} is not base64url")))?;
    let value: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|_| AuthnError::Malformed(format!("{what} is not JSON")))?;
    if !value.is_object() {
        return Err(AuthnError::Malformed(format!(
            "{what} is not a JSON object"
        )));
    }
    Ok(value)
}
