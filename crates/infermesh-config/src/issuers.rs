//! `issuers:`: the trusted JWT issuers (Istio `RequestAuthentication.jwtRules`):
//! where their keys come from, accepted audiences, where tokens are read and which
//! claims are forwarded, with bounded clock skew and key refresh intervals.

use std::time::Duration;

use http::HeaderName;

use crate::read::{Cx, Fields, duration, header_name, index, list, string};
use crate::security::{Issuer, JwksSource};
use crate::yaml::{Node, Pos, Value};

pub(crate) const FROM_HEADER_KEYS: &[&str] = &["name", "prefix"];
pub(crate) const FORWARD_CLAIM_KEYS: &[&str] = &["claim", "header"];
pub(crate) const ISSUER_KEYS: &[&str] = &[
    "issuer",
    "discovery",
    "jwks_uri",
    "jwks",
    "audiences",
    "from_headers",
    "forward_claims",
    "clock_skew",
    "refresh_interval",
    "min_refresh_interval",
];

pub(crate) const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_secs(600);
pub(crate) const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);

pub(crate) fn issuers(cx: &mut Cx, node: &Node, path: &str) -> Vec<Issuer> {
    let mut out: Vec<Issuer> = Vec::new();
    let mut seen: Vec<(String, Pos)> = Vec::new();
    for (i, item) in list(cx, node, path).unwrap_or_default().iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, ISSUER_KEYS) else {
            continue;
        };
        let Some(issuer) = issuer(cx, &f) else {
            continue;
        };
        let at = f.get("issuer").map_or(f.at, |n| n.at);
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == issuer.issuer) {
            let msg = format!(
                "issuer {:?} is listed twice (first on line {})",
                issuer.issuer, first.line
            );
            cx.error(at, &f.path_of("issuer"), msg);
            continue;
        }
        seen.push((issuer.issuer.clone(), at));
        out.push(issuer);
    }
    out
}

fn issuer(cx: &mut Cx, f: &Fields<'_>) -> Option<Issuer> {
    let iss = f.req(cx, "issuer", non_empty);
    let jwks = jwks_source(cx, f, iss.as_deref());
    let audiences = f.opt(cx, "audiences", strings).unwrap_or_default();
    let from_headers = f.opt(cx, "from_headers", from_headers);
    let forward_claims = f
        .opt(cx, "forward_claims", forward_claims)
        .unwrap_or_default();
    let clock_skew = f.opt(cx, "clock_skew", duration);
    if let (Some(skew), Some(n)) = (clock_skew, f.get("clock_skew"))
        && skew > MAX_CLOCK_SKEW
    {
        cx.error(n.at, &f.path_of("clock_skew"), "must be at most 5m");
    }
    let refresh = f
        .opt(cx, "refresh_interval", duration)
        .unwrap_or(DEFAULT_REFRESH);
    let min_refresh = f
        .opt(cx, "min_refresh_interval", duration)
        .unwrap_or(DEFAULT_MIN_REFRESH.min(refresh));
    if min_refresh > refresh {
        let at = f.get("min_refresh_interval").map_or(f.at, |n| n.at);
        let msg = "must not be longer than `refresh_interval`";
        cx.error(at, &f.path_of("min_refresh_interval"), msg);
    }
    Some(Issuer {
        issuer: iss?,
        jwks: jwks?,
        audiences,
        from_headers: from_headers.unwrap_or_else(default_from_headers),
        forward_claims,
        clock_skew: clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW).min(MAX_CLOCK_SKEW),
        refresh_interval: refresh,
        min_refresh_interval: min_refresh.min(refresh),
    })
}

/// `[("authorization", "Bearer ")]`: the default token location.
pub(crate) fn default_from_headers() -> Vec<(HeaderName, String)> {
    vec![(http::header::AUTHORIZATION, "Bearer ".to_owned())]
}

/// One of `jwks_uri`, `jwks` (inline) or discovery (the default).
fn jwks_source(cx: &mut Cx, f: &Fields<'_>, iss: Option<&str>) -> Option<JwksSource> {
    let given: Vec<&str> = ["discovery", "jwks_uri", "jwks"]
        .into_iter()
        .filter(|k| f.get(k).is_some())
        .collect();
    if given.len() > 1 {
        let at = f.get(given[1]).map_or(f.at, |n| n.at);
        let msg = format!(
            "give only one of `discovery`, `jwks_uri` and `jwks` (found `{}` and `{}`)",
            given[0], given[1]
        );
        cx.error(at, &f.path_of(given[1]), msg);
        return None;
    }
    if let Some(uri) = f.opt(cx, "jwks_uri", http_url) {
        return Some(JwksSource::Uri(uri));
    }
    if let Some(n) = f.get("jwks") {
        return inline_jwks(cx, n, &f.path_of("jwks")).map(JwksSource::Inline);
    }
    if f.opt(cx, "discovery", crate::read::boolean) == Some(false) {
        let at = f.get("discovery").map_or(f.at, |n| n.at);
        let msg = "without discovery, give the keys with `jwks_uri` or `jwks`";
        cx.error(at, &f.path_of("discovery"), msg);
        return None;
    }
    if let Some(iss) = iss
        && !is_http_url(iss)
    {
        let at = f.get("issuer").map_or(f.at, |n| n.at);
        let msg = format!(
            "discovery needs an http(s) issuer URL, not {iss:?}: give the keys with \
             `jwks_uri` or `jwks`"
        );
        cx.error(at, &f.path_of("issuer"), msg);
        return None;
    }
    Some(JwksSource::Discovery)
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

pub(crate) fn http_url(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = string(cx, node, path)?;
    if !is_http_url(&s) {
        cx.error(
            node.at,
            path,
            format!("{s:?} is not an http:// or https:// URL"),
        );
        return None;
    }
    Some(s)
}

/// A JWKS document: JSON text, or the same written as YAML; must have a `keys` list.
pub(crate) fn inline_jwks(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let doc = match &node.value {
        Value::Str(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => v,
            Err(e) => {
                cx.error(node.at, path, format!("not a JSON JWKS document: {e}"));
                return None;
            }
        },
        Value::Map(_) => to_json(node),
        _ => return cx.expected(node, path, "a JWKS document (JSON text or a mapping)"),
    };
    if !doc.get("keys").is_some_and(serde_json::Value::is_array) {
        cx.error(node.at, path, "a JWKS document needs a `keys` list");
        return None;
    }
    Some(doc.to_string())
}

/// A YAML tree as JSON (for inline documents).
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => i64::try_from(*i).map_or_else(|_| J::String(i.to_string()), J::from),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.value.scalar_text()?, to_json(v))))
                .collect(),
        ),
    }
}

pub(crate) fn non_empty(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = string(cx, node, path)?;
    if s.trim().is_empty() {
        cx.error(node.at, path, "must not be empty");
        return None;
    }
    Some(s)
}

pub(crate) fn strings(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = list(cx, node, path)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(s) = non_empty(cx, item, &index(path, i)) {
            out.push(s);
        }
    }
    Some(out)
}

fn from_headers(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<(HeaderName, String)>> {
    let items = list(cx, node, path)?;
    if items.is_empty() {
        cx.error(
            node.at,
            path,
            "must list at least one header (or leave it out)",
        );
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, FROM_HEADER_KEYS) else {
            continue;
        };
        let name = f.req(cx, "name", header_name);
        let prefix = f.opt(cx, "prefix", string).unwrap_or_default();
        if let Some(name) = name {
            out.push((name, prefix));
        }
    }
    Some(out)
}

fn forward_claims(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<(String, HeaderName)>> {
    let items = list(cx, node, path)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, FORWARD_CLAIM_KEYS) else {
            continue;
        };
        let claim = f.req(cx, "claim", non_empty);
        let header = f.req(cx, "header", header_name);
        if let (Some(c), Some(h)) = (claim, header) {
            out.push((c, h));
        }
    }
    Some(out)
}
