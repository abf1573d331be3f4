//! Workload identity and mutual TLS settings: the `identity:` section (where
//! certificates come from, their lifetime, renewal, TLS version, the gateway's
//! identity), a workload's `mtls` mode and `allowed_peers` (Istio
//! `PeerAuthentication`), and `gateway.tls` (the client-facing listener's TLS).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::read::{Cx, Fields, NameRule, boolean, duration, index, list, name, string};
use crate::yaml::{Node, Value};

/// Where workload certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// The built-in CA, kept in this directory (`None`: `.infermesh/ca` under the
    /// working directory, or `up`'s state directory).
    Builtin { dir: Option<PathBuf> },
    /// Files an external CA keeps current (`{namespace}` and `{service_account}` in
    /// a path are replaced by the workload's).
    Files {
        cert: PathBuf,
        key: PathBuf,
        bundle: PathBuf,
    },
    /// The CA service (`infermesh ca serve`) at `address` (`host:port`), called with
    /// the bearer token in `token_file`, its certificate verified against `bundle`.
    Service {
        address: String,
        token_file: PathBuf,
        bundle: PathBuf,
    },
}

/// The lowest TLS version mesh hops accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    #[default]
    Tls13,
    Tls12,
}

/// `identity:`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityConfig {
    pub ca: CaSource,
    /// Lifetime of issued certificates (built-in CA).
    pub cert_ttl: Duration,
    /// Renew at this fraction of the lifetime.
    pub renew_at: f64,
    pub min_tls: TlsVersion,
    /// The gateway's identity (namespace, service account).
    pub gateway_namespace: String,
    pub gateway_service_account: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            ca: CaSource::Builtin { dir: None },
            cert_ttl: DEFAULT_TTL,
            renew_at: 0.5,
            min_tls: TlsVersion::Tls13,
            gateway_namespace: "infermesh".into(),
            gateway_service_account: "gateway".into(),
        }
    }
}

/// A workload's peer authentication mode (Istio `PeerAuthentication`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MtlsMode {
    /// mTLS required.
    Strict,
    /// mTLS and plaintext on one port.
    #[default]
    Permissive,
    /// Plaintext only.
    Disable,
}

/// `gateway.tls`: TLS on the client-facing listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates client certificates are verified against.
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate.
    pub require_client_cert: bool,
}

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
const MIN_TTL: Duration = Duration::from_secs(2);
const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
pub(crate) const FILES_KEYS: &[&str] = &["cert", "key", "bundle"];
pub(crate) const SERVICE_KEYS: &[&str] = &["address", "token_file", "bundle"];
pub(crate) const GATEWAY_IDENTITY_KEYS: &[&str] = &["namespace", "service_account"];
pub(crate) const GATEWAY_TLS_KEYS: &[&str] = &["cert", "key", "client_ca", "require_client_cert"];
/// Where certificates come from (`identity.ca`).
pub(crate) const CA_KINDS: &[&str] = &["builtin", "files", "service"];
/// `workloads[].mtls`.
pub(crate) const MTLS_MODES: &[&str] = &["STRICT", "PERMISSIVE", "DISABLE"];
pub(crate) const IDENTITY_KEYS: &[&str] = &[
    "ca", "dir", "files", "service", "cert_ttl", "renew_at", "min_tls", "gateway",
];

pub(crate) fn identity(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    base: &Path,
) -> Option<IdentityConfig> {
    let f = Fields::read(cx, node, path, IDENTITY_KEYS)?;
    let d = IdentityConfig::default();
    let kind = f.opt(cx, "ca", string).unwrap_or_else(|| "builtin".into());
    let dir = f.opt(cx, "dir", |cx, n, p| path_of(cx, n, p, base));
    let files = f.opt(cx, "files", |cx, n, p| files(cx, n, p, base));
    let service = f.opt(cx, "service", |cx, n, p| service(cx, n, p, base));
    for (key, wanted) in [
        ("dir", "builtin"),
        ("files", "files"),
        ("service", "service"),
    ] {
        if let Some(n) = f.get(key)
            && kind != wanted
            && CA_KINDS.contains(&kind.as_str())
        {
            cx.error(n.at, &f.path_of(key), format!("only with `ca: {wanted}`"));
        }
    }
    let ca = match kind.as_str() {
        "builtin" => CaSource::Builtin { dir },
        "files" => {
            if f.get("files").is_none() {
                cx.error(f.at, path, "`ca: files` needs `files: {cert, key, bundle}`");
            }
            files.unwrap_or(CaSource::Builtin { dir: None })
        }
        "service" => {
            if f.get("service").is_none() {
                let msg = "`ca: service` needs `service: {address, token_file, bundle}`";
                cx.error(f.at, path, msg);
            }
            service.unwrap_or(CaSource::Builtin { dir: None })
        }
        other => {
            let at = f.get("ca").map_or(f.at, |n| n.at);
            let msg = format!("unknown CA `{other}`, expected `builtin`, `files` or `service`");
            cx.error(at, &f.path_of("ca"), msg);
            CaSource::Builtin { dir: None }
        }
    };
    let cert_ttl = f.opt(cx, "cert_ttl", duration).unwrap_or(d.cert_ttl);
    if !(MIN_TTL..=MAX_TTL).contains(&cert_ttl) {
        let at = f.get("cert_ttl").map_or(f.at, |n| n.at);
        cx.error(at, &f.path_of("cert_ttl"), "must be from 2s to 90d");
    }
    let renew_at = f.opt(cx, "renew_at", fraction).unwrap_or(d.renew_at);
    let min_tls = f.opt(cx, "min_tls", tls_version).unwrap_or_default();
    let gateway = f.opt(cx, "gateway", gateway_identity);
    let (gateway_namespace, gateway_service_account) =
        gateway.unwrap_or((d.gateway_namespace, d.gateway_service_account));
    Some(IdentityConfig {
        ca,
        cert_ttl,
        renew_at,
        min_tls,
        gateway_namespace,
        gateway_service_account,
    })
}

fn path_of(cx: &mut Cx, node: &Node, path: &str, base: &Path) -> Option<PathBuf> {
    let s = string(cx, node, path)?;
    if s.trim().is_empty() {
        cx.error(node.at, path, "must name a file");
        return None;
    }
    Some(base.join(s))
}

fn files(cx: &mut Cx, node: &Node, path: &str, base: &Path) -> Option<CaSource> {
    let f = Fields::read(cx, node, path, FILES_KEYS)?;
    let read = |cx: &mut Cx, n: &Node, p: &str| path_of(cx, n, p, base);
    let cert = f.req(cx, "cert", read);
    let key = f.req(cx, "key", read);
    let bundle = f.req(cx, "bundle", read);
    Some(CaSource::Files {
        cert: cert?,
        key: key?,
        bundle: bundle?,
    })
}

fn service(cx: &mut Cx, node: &Node, path: &str, base: &Path) -> Option<CaSource> {
    let f = Fields::read(cx, node, path, SERVICE_KEYS)?;
    let read = |cx: &mut Cx, n: &Node, p: &str| path_of(cx, n, p, base);
    let address = f.req(cx, "address", |cx, n, p| {
        let a = crate::addr::address(cx, n, p)?;
        Some(match a {
            crate::model::Address::Socket(s) => s.to_string(),
            crate::model::Address::Host { host, port } => format!("{host}:{port}"),
        })
    });
    let token_file = f.req(cx, "token_file", read);
    let bundle = f.req(cx, "bundle", read);
    Some(CaSource::Service {
        address: address?,
        token_file: token_file?,
        bundle: bundle?,
    })
}

fn fraction(cx: &mut Cx, node: &Node, path: &str) -> Option<f64> {
    let v = match node.value {
        Value::Float(f) => f,
        Value::Int(i) => i as f64,
        _ => return cx.expected(node, path, "a fraction (e.g. 0.5)"),
    };
    if !(v > 0.0 && v <= 0.9) {
        cx.error(
            node.at,
            path,
            format!("must be above 0 and at most 0.9, not {v}"),
        );
        return None;
    }
    Some(v)
}

fn tls_version(cx: &mut Cx, node: &Node, path: &str) -> Option<TlsVersion> {
    let text = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Float(f) => f.to_string(),
        _ => return cx.expected(node, path, "\"1.3\" or \"1.2\""),
    };
    match text.as_str() {
        "1.3" => Some(TlsVersion::Tls13),
        "1.2" => Some(TlsVersion::Tls12),
        _ => {
            cx.error(
                node.at,
                path,
                format!("must be \"1.3\" or \"1.2\", not {text}"),
            );
            None
        }
    }
}

fn gateway_identity(cx: &mut Cx, node: &Node, path: &str) -> Option<(String, String)> {
    let f = Fields::read(cx, node, path, GATEWAY_IDENTITY_KEYS)?;
    let ns = f.opt(cx, "namespace", name(NameRule::DnsLabel));
    let sa = f.opt(cx, "service_account", name(NameRule::DnsSubdomain));
    Some((
        ns.unwrap_or_else(|| "infermesh".into()),
        sa.unwrap_or_else(|| "gateway".into()),
    ))
}

/// `workloads[].mtls`.
pub(crate) fn mode(cx: &mut Cx, node: &Node, path: &str) -> Option<MtlsMode> {
    let s = string(cx, node, path)?;
    match s.as_str() {
        "STRICT" => Some(MtlsMode::Strict),
        "PERMISSIVE" => Some(MtlsMode::Permissive),
        "DISABLE" => Some(MtlsMode::Disable),
        _ => {
            let msg = format!("unknown mode `{s}`, expected STRICT, PERMISSIVE or DISABLE");
            cx.error(node.at, path, msg);
            None
        }
    }
}

/// `workloads[].allowed_peers`: Istio principals, `<td>/ns/<ns>/sa/<sa>`, or a
/// prefix ending in `*`.
pub(crate) fn peers(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for (i, item) in list(cx, node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let Some(p) = string(cx, item, &ipath) else {
            continue;
        };
        let parts: Vec<&str> = p.split('/').collect();
        let exact = matches!(parts.as_slice(), [td, "ns", ns, "sa", sa]
            if !td.is_empty() && !ns.is_empty() && !sa.is_empty() && !p.contains('*'));
        let prefix = p.ends_with('*') && !p[..p.len() - 1].contains('*');
        if !(exact || prefix) || p.starts_with("spiffe://") {
            let msg = format!(
                "`{p}` is not a principal: expected <trust-domain>/ns/<namespace>/sa/<service-account> or a prefix ending in `*`"
            );
            cx.error(item.at, &ipath, msg);
            continue;
        }
        out.push(p);
    }
    Some(out)
}

/// `gateway.tls`.
pub(crate) fn gateway_tls(cx: &mut Cx, node: &Node, path: &str, base: &Path) -> Option<GatewayTls> {
    let f = Fields::read(cx, node, path, GATEWAY_TLS_KEYS)?;
    let read = |cx: &mut Cx, n: &Node, p: &str| path_of(cx, n, p, base);
    let cert = f.req(cx, "cert", read);
    let key = f.req(cx, "key", read);
    let client_ca = f.opt(cx, "client_ca", read);
    let require = f.opt(cx, "require_client_cert", boolean).unwrap_or(false);
    if require && client_ca.is_none() && f.get("client_ca").is_none() {
        let at = f.get("require_client_cert").map_or(f.at, |n| n.at);
        let msg = "needs `client_ca`, the CA certificates client certificates are checked against";
        cx.error(at, &f.path_of("require_client_cert"), msg);
    }
    Some(GatewayTls {
        cert: cert?,
        key: key?,
        client_ca,
        require_client_cert: require,
    })
}
