//! The verified identity of a request (`RequestPrincipal`, Istio's
//! `request.auth.*`) and the claims copied into upstream headers.

use http::{HeaderName, HeaderValue};

/// Who a verified token says the caller is. Put into the request extensions once;
/// nothing downstream re-reads the token.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestPrincipal {
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `sub` (empty when the token has none).
    pub subject: String,
    /// `<iss>/<sub>`: what `request_principals` patterns match.
    pub principal: String,
    /// The token's `aud` values.
    pub audiences: Vec<String>,
    /// Every claim of the payload, nested values preserved
    /// (`request.auth.claims[...]`).
    pub claims: serde_json::Value,
    /// Headers to set on the upstream request (`forward_claims`); the proxy removes
    /// client-sent headers of the same names first.
    pub forward_headers: Vec<(HeaderName, HeaderValue)>,
}

impl RequestPrincipal {
    pub(crate) fn new(
        claims: serde_json::Value,
        forward: &[(String, HeaderName)],
    ) -> RequestPrincipal {
        let issuer = str_claim(&claims, "iss");
        let subject = str_claim(&claims, "sub");
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let forward_headers = forward
            .iter()
            .filter_map(|(path, name)| {
                let value = header_value(claim(&claims, path)?)?;
                Some((name.clone(), value))
            })
            .collect();
        RequestPrincipal {
            principal: format!("{issuer}/{subject}"),
            issuer,
            subject,
            audiences,
            claims,
            forward_headers,
        }
    }

    /// A claim by name or dotted path (`groups`, `realm_access.roles`); a claim whose
    /// own name contains dots (`https://example.com/groups`) is found first.
    pub fn claim(&self, path: &str) -> Option<&serde_json::Value> {
        claim(&self.claims, path)
    }
}

fn str_claim(claims: &serde_json::Value, name: &str) -> String {
    claims
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

/// Strings as they are, numbers and booleans as text, arrays of those joined with
/// `,`; objects and values that are not valid header text are not forwarded.
fn header_value(v: &serde_json::Value) -> Option<HeaderValue> {
    let text = match v {
        serde_json::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
            parts?.join(",")
        }
        other => scalar(other)?,
    };
    HeaderValue::from_str(&text).ok()
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
