//! The vocabulary of policy values, shared by the `mesh.yaml` reader, the Istio
//! import and the authorization engine: `when` keys ([`ConditionKey`]), IP blocks
//! ([`IpBlock`]), model APIs ([`API_NAMES`]) and the per-field value checks.

use std::net::IpAddr;

use http::HeaderName;

/// The model APIs a policy may name (`to[].apis`).
pub const API_NAMES: &[&str] = &[
    "predict",
    "classify",
    "regress",
    "multi_inference",
    "metadata",
    "status",
];

/// A parsed `when[].key` (Istio's authorization policy conditions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[<name>]`; repeated headers are joined with `,` (as Istio).
    Header(HeaderName),
    /// `source.ip`: the peer address (CIDR values).
    SourceIp,
    /// `source.namespace`: from the peer certificate.
    SourceNamespace,
    /// `source.principal`: the peer identity, `<td>/ns/<ns>/sa/<sa>`.
    SourcePrincipal,
    /// `request.auth.principal`: `<iss>/<sub>` of the request's JWT.
    RequestPrincipal,
    /// `request.auth.audiences`: the JWT's `aud` values.
    Audiences,
    /// `request.auth.presenter`: the JWT's `azp` claim.
    Presenter,
    /// `request.auth.claims[a][b]…`: a (nested) claim; each `[…]` is one object key,
    /// taken literally (`[cognito:groups]`, `[https://example.com/roles]`).
    Claim(Vec<String>),
    /// `destination.port`: the port the request arrived on.
    DestinationPort,
}

/// The keys `when` accepts, for messages.
pub const CONDITION_KEYS: &[&str] = &[
    "request.headers[<name>]",
    "source.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[<name>]…",
    "destination.port",
];

impl ConditionKey {
    /// Parses a key as Istio writes it; the error says what is wrong.
    pub fn parse(key: &str) -> Result<ConditionKey, String> {
        match key {
            "source.ip" => return Ok(ConditionKey::SourceIp),
            "source.namespace" => return Ok(ConditionKey::SourceNamespace),
            "source.principal" => return Ok(ConditionKey::SourcePrincipal),
            "request.auth.principal" => return Ok(ConditionKey::RequestPrincipal),
            "request.auth.audiences" => return Ok(ConditionKey::Audiences),
            "request.auth.presenter" => return Ok(ConditionKey::Presenter),
            "destination.port" => return Ok(ConditionKey::DestinationPort),
            "remote.ip" | "destination.ip" | "connection.sni" => {
                return Err(format!("condition `{key}` is not supported yet"));
            }
            _ => {}
        }
        if let Some(rest) = key.strip_prefix("request.headers") {
            let parts = brackets(rest).ok_or_else(|| bracket_error(key))?;
            let [name] = parts.as_slice() else {
                return Err(format!(
                    "`{key}`: name exactly one header: request.headers[x-team]"
                ));
            };
            return HeaderName::from_bytes(name.as_bytes())
                .map(ConditionKey::Header)
                .map_err(|_| format!("`{key}`: {name:?} is not a valid HTTP header name"));
        }
        if let Some(rest) = key.strip_prefix("request.auth.claims") {
            let parts = brackets(rest).ok_or_else(|| bracket_error(key))?;
            if parts.is_empty() {
                return Err(bracket_error(key));
            }
            return Ok(ConditionKey::Claim(parts));
        }
        Err(format!(
            "unknown condition key `{key}`, expected one of {}",
            CONDITION_KEYS.join(", ")
        ))
    }
}

fn bracket_error(key: &str) -> String {
    format!(
        "`{key}`: write the name in brackets, e.g. request.auth.claims[groups] or, for a \
         nested claim, request.auth.claims[realm_access][roles]"
    )
}

/// `[a][b]` → `["a", "b"]`; `None` when malformed or a part is empty.
fn brackets(mut s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let inner = s.strip_prefix('[')?;
        let end = inner.find(']')?;
        let part = &inner[..end];
        if part.is_empty() || part.contains('[') {
            return None;
        }
        out.push(part.to_owned());
        s = &inner[end + 1..];
    }
    Some(out)
}

/// A CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpBlock {
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(IpBlock { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What one policy field holds: decides which values are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Principal,
    RequestPrincipal,
    Namespace,
    IpBlock,
    Host,
    Port,
    Method,
    Path,
    Model,
    Version,
    Label,
    Signature,
    Api,
    /// `when` values of keys without a more specific check.
    Any,
}

/// The problem with a string pattern (exact, `prefix*`, `*suffix` or `*`), if any.
pub(crate) fn pattern_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("must not be empty");
    }
    let stars = s.matches('*').count();
    let ok = stars == 0 || s == "*" || (stars == 1 && (s.starts_with('*') || s.ends_with('*')));
    (!ok).then_some("`*` may only start or end a pattern: exact, `prefix*`, `*suffix` or `*`")
}

/// Checks one value of a field of `kind`; the error says what is wrong.
pub(crate) fn check_value(kind: Kind, v: &str) -> Result<(), String> {
    let exact_only = matches!(kind, Kind::IpBlock | Kind::Port);
    if exact_only {
        if kind == Kind::IpBlock {
            return IpBlock::parse(v).map(|_| ());
        }
        return match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(()),
            _ => Err(format!("{v:?} is not a port number (1 to 65535)")),
        };
    }
    if kind == Kind::Path && v.contains(['{', '}']) {
        return Err(format!(
            "{v:?}: path templates (`{{*}}`, `{{**}}`) are not supported yet"
        ));
    }
    if let Some(p) = pattern_problem(v) {
        return Err(format!("{v:?}: {p}"));
    }
    let lit = v.trim_matches('*');
    let bad = match kind {
        Kind::Principal if v.starts_with("spiffe://") => Some(
            "write peer principals without `spiffe://`, as Istio does: \
             `cluster.local/ns/<namespace>/sa/<service-account>`",
        ),
        Kind::Namespace
            if !lit
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
        {
            Some("namespaces use lower-case letters, digits and `-`")
        }
        Kind::Method if !lit.chars().all(|c| c.is_ascii_uppercase()) => {
            Some("methods are upper-case (`GET`, `POST`); requests with other methods are refused")
        }
        Kind::Path if !v.starts_with('/') && !v.starts_with('*') => Some("paths start with `/`"),
        Kind::Path if !is_normal_path(lit) => Some(
            "write paths in normalized form (no `//`, `.` or `..` segments, `\\`, `?`, `#` or \
             `;`): requests are normalized before matching, so this could never match",
        ),
        Kind::Model | Kind::Label
            if !lit
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
        {
            Some("use letters, digits, `_`, `-` and `.`")
        }
        Kind::Version if !lit.chars().all(|c| c.is_ascii_digit()) => {
            Some("versions are whole numbers")
        }
        Kind::Api if v != "*" && !API_NAMES.contains(&v) => {
            return Err(format!(
                "unknown API `{v}`, expected one of {}",
                API_NAMES.join(", ")
            ));
        }
        Kind::Host if lit.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some("host names have no spaces")
        }
        _ => None,
    };
    match bad {
        Some(why) => Err(format!("{v:?}: {why}")),
        None => Ok(()),
    }
}

fn is_normal_path(lit: &str) -> bool {
    !lit.contains("//")
        && !lit.contains(['\\', '?', '#', ';'])
        && !lit.split('/').any(|seg| seg == "." || seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        assert_eq!(
            ConditionKey::parse("request.auth.claims[realm_access][roles]"),
            Ok(ConditionKey::Claim(vec![
                "realm_access".into(),
                "roles".into()
            ]))
        );
        assert_eq!(
            ConditionKey::parse("request.auth.claims[cognito:groups]"),
            Ok(ConditionKey::Claim(vec!["cognito:groups".into()]))
        );
        assert!(ConditionKey::parse("request.auth.claims[]").is_err());
        assert!(ConditionKey::parse("request.auth.claims").is_err());
        assert!(ConditionKey::parse("request.auth.claims[a]x").is_err());
        assert!(ConditionKey::parse("request.headers[a][b]").is_err());
        assert!(ConditionKey::parse("remote.ip").is_err());
        assert!(matches!(
            ConditionKey::parse("request.headers[X-Team]"),
            Ok(ConditionKey::Header(h)) if h == "x-team"
        ));
    }

    #[test]
    fn ip_blocks() {
        let b = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.200.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            IpBlock::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(IpBlock::parse("10.0.0.0/33").is_err());
        assert!(IpBlock::parse("nope").is_err());
        let one = IpBlock::parse("2001:db8::1").unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn patterns() {
        assert_eq!(pattern_problem("a*"), None);
        assert_eq!(pattern_problem("*a"), None);
        assert_eq!(pattern_problem("*"), None);
        assert!(pattern_problem("a*b").is_some());
        assert!(pattern_problem("*a*").is_some());
        assert!(check_value(Kind::Path, "/v1/models/../x").is_err());
        assert!(check_value(Kind::Path, "/v1/models/m*").is_ok());
        assert!(check_value(Kind::Api, "predcit").is_err());
    }
}
