//! The top level of `mesh.yaml`: trust domain, workloads, gateway, limits, outlier
//! detection and DNS refresh, with their defaults; models are in [`crate::models`],
//! issuers in [`crate::issuers`], policies and `authorization` in [`crate::policies`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::addr::{Claim, Sockets, address, check_conflicts, socket};
use crate::model::Address;
use crate::model::{Gateway, Limits, MeshConfig, OutlierDetection, Upstream, Workload};
use crate::read::{
    Cx, Fields, NameRule, bytes, child, duration, index, list, lookup, name, string, uint, uint32,
};
use crate::yaml::{Node, Pos, Value};

pub(crate) const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
pub(crate) const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);

pub(crate) const TOP_KEYS: &[&str] = &[
    "trust_domain",
    "workloads",
    "models",
    "gateway",
    "limits",
    "outlier_detection",
    "dns_refresh",
    "issuers",
    "dev_issuer",
    "istio_files",
    "policies",
    "authorization",
    "telemetry",
    "audit",
    "identity",
];
pub(crate) const WORKLOAD_KEYS: &[&str] = &[
    "name",
    "namespace",
    "service_account",
    "listen",
    "upstream",
    "endpoints",
    "model_server",
    "admin",
    "mtls",
    "allowed_peers",
];
pub(crate) const GATEWAY_KEYS: &[&str] = &["listen", "admin", "tls"];
pub(crate) const UPSTREAM_KEYS: &[&str] = &["rest", "grpc"];
pub(crate) const MODEL_SERVER_KEYS: &[&str] = &["model_config_file"];
pub(crate) const OUTLIER_KEYS: &[&str] = &[
    "consecutive_failures",
    "base_ejection",
    "max_ejection_percent",
];
pub(crate) const LIMIT_KEYS: &[&str] = &[
    "max_request_body_bytes",
    "max_header_bytes",
    "max_concurrent_streams",
    "max_connections",
    "connect_timeout",
    "drain_timeout",
];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: 64 << 20,
            max_header_bytes: 64 << 10,
            max_concurrent_streams: 1024,
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }
}

/// Compiles the whole file; `None` only when the root is not a mapping.
pub(crate) fn mesh(cx: &mut Cx, root: &Node, source: &Path) -> Option<MeshConfig> {
    if matches!(root.value, Value::Null) {
        cx.error(
            root.at,
            "",
            "the file is empty: expected `workloads:` and `models:`",
        );
        return None;
    }
    let top = Fields::read(cx, root, "", TOP_KEYS)?;
    let trust_domain = top
        .opt(cx, "trust_domain", trust_domain)
        .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
    let mut sockets = Sockets::default();
    let base_dir = base_dir(source);
    let gateway = top
        .opt(cx, "gateway", |cx, n, p| {
            gateway(cx, n, p, &mut sockets, &base_dir)
        })
        .unwrap_or(Gateway {
            listen: Vec::new(),
            admin: None,
            tls: None,
        });
    let mut mtls_given = BTreeMap::new();
    let (mut workloads, declared) = match top.get("workloads") {
        Some(n) => workloads(cx, n, "workloads", &base_dir, &mut sockets, &mut mtls_given),
        None => (BTreeMap::new(), Some(Vec::new())),
    };
    check_conflicts(cx, sockets);
    let mut routes_given = BTreeMap::new();
    let mut models = match top.get("models") {
        Some(n) => crate::models::models(cx, n, "models", declared.as_deref(), &mut routes_given),
        None => BTreeMap::new(),
    };
    let declared_models: Vec<String> = models.keys().cloned().collect();
    let scope = crate::policies::Scope {
        naming: crate::policies::Naming::Mesh,
        models: Some(&declared_models),
    };
    let issuers = match top.get("issuers") {
        Some(n) => crate::issuers::issuers(cx, n, "issuers"),
        None => Vec::new(),
    };
    let mut issuers = issuers;
    let mut policies = match top.get("policies") {
        Some(n) => crate::policies::policies(cx, n, "policies", scope),
        None => Vec::new(),
    };
    let mut limits = top.opt(cx, "limits", limits).unwrap_or_default();
    let mut outlier_detection = top
        .opt(cx, "outlier_detection", outlier)
        .unwrap_or_default();
    let mut istio_files = Vec::new();
    if let Some(n) = top.get("istio_files") {
        let line = |n: &Node| (source.display().to_string(), n.at.line);
        let given = crate::istio_apply::Given {
            routes: routes_given
                .into_iter()
                .map(|(m, (at, sticky))| (m, (source.display().to_string(), at.line, sticky)))
                .collect(),
            mtls: mtls_given
                .into_iter()
                .map(|(w, at)| (w, (source.display().to_string(), at.line)))
                .collect(),
            connect_timeout: top
                .get("limits")
                .and_then(|l| lookup(l, "connect_timeout"))
                .map(line),
            outlier: top.get("outlier_detection").map(line),
        };
        let target = crate::istio_apply::Target {
            workloads: &mut workloads,
            models: &mut models,
            limits: &mut limits,
            outlier: &mut outlier_detection,
        };
        istio_files = crate::istio_apply::istio_files(
            cx,
            n,
            &base_dir,
            &mut policies,
            &mut issuers,
            target,
            &given,
        );
    }
    Some(MeshConfig {
        trust_domain,
        workloads,
        models,
        gateway,
        limits,
        outlier_detection,
        dns_refresh: top
            .opt(cx, "dns_refresh", duration)
            .unwrap_or(DEFAULT_DNS_REFRESH),
        issuers,
        dev_issuer: top.opt(cx, "dev_issuer", crate::dev_issuer::dev_issuer),
        policies,
        istio_files,
        authz: top
            .opt(cx, "authorization", crate::policies::authorization)
            .unwrap_or_default(),
        telemetry: top
            .opt(cx, "telemetry", |cx, n, p| {
                crate::telemetry::telemetry(cx, n, p, &base_dir)
            })
            .unwrap_or_default(),
        audit: top.opt(cx, "audit", crate::audit::audit),
        identity: top.opt(cx, "identity", |cx, n, p| {
            crate::mtls::identity(cx, n, p, &base_dir)
        }),
    })
}

/// The directory relative paths start from: the mesh.yaml's own, made absolute.
fn base_dir(source: &Path) -> std::path::PathBuf {
    let dir = match source.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// SPIFFE trust domain: lower-case letters, digits, `.`, `-` and `_`.
fn trust_domain(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let text = string(cx, node, path)?;
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_');
    if text.is_empty() || text.len() > 255 || !text.chars().all(ok) {
        let msg = format!(
            "invalid trust domain {text:?}: use lower-case letters, digits, `.`, `-` and `_` \
             (e.g. `cluster.local`)"
        );
        cx.error(node.at, path, msg);
        return None;
    }
    Some(text)
}

fn gateway(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    sockets: &mut Sockets,
    base_dir: &Path,
) -> Option<Gateway> {
    let f = Fields::read(cx, node, path, GATEWAY_KEYS)?;
    let mut listen = Vec::new();
    if let Some(items) = f.opt(cx, "listen", list) {
        let lpath = f.path_of("listen");
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&lpath, i);
            if let Some(addr) = socket(cx, item, &ipath) {
                sockets.listeners.push(Claim {
                    addr,
                    at: item.at,
                    path: ipath,
                });
                listen.push(addr);
            }
        }
    }
    let admin = f.opt(cx, "admin", socket);
    if let (Some(addr), Some(n)) = (admin, f.get("admin")) {
        sockets.listeners.push(Claim {
            addr,
            at: n.at,
            path: f.path_of("admin"),
        });
    }
    let tls = f.opt(cx, "tls", |cx, n, p| {
        crate::mtls::gateway_tls(cx, n, p, base_dir)
    });
    Some(Gateway { listen, admin, tls })
}

type Workloads = BTreeMap<String, Arc<Workload>>;

/// Returns the valid workloads and every declared name, valid or not (`None` when the
/// list itself is unreadable), so a broken workload does not also make each model it
/// serves an error.
fn workloads(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    base_dir: &Path,
    sockets: &mut Sockets,
    mtls_given: &mut BTreeMap<String, Pos>,
) -> (Workloads, Option<Vec<String>>) {
    let mut out = BTreeMap::new();
    let Some(items) = list(cx, node, path) else {
        return (out, None);
    };
    let mut declared: Vec<(String, Pos)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, WORKLOAD_KEYS) else {
            continue;
        };
        let wname = f.req(cx, "name", name(NameRule::DnsLabel));
        let name_node = f.get("name");
        if let Some(Node {
            value: Value::Str(raw),
            at,
        }) = name_node
        {
            if let Some((_, first)) = declared.iter().find(|(n, _)| n == raw) {
                let msg = format!(
                    "duplicate workload name `{raw}` (first on line {})",
                    first.line
                );
                cx.error(*at, &f.path_of("name"), msg);
                continue;
            }
            declared.push((raw.clone(), *at));
        }
        if let (Some(n), Some(m)) = (&wname, f.get("mtls")) {
            mtls_given.insert(n.clone(), m.at);
        }
        let w = workload(cx, &f, wname.unwrap_or_default(), base_dir, sockets);
        if let Some(w) = w.filter(|w| !w.name.is_empty()) {
            out.insert(w.name.clone(), Arc::new(w));
        }
    }
    (out, Some(declared.into_iter().map(|(n, _)| n).collect()))
}

fn workload(
    cx: &mut Cx,
    f: &Fields<'_>,
    wname: String,
    base_dir: &Path,
    sockets: &mut Sockets,
) -> Option<Workload> {
    let namespace = f.opt(cx, "namespace", name(NameRule::DnsLabel));
    let service_account = f.opt(cx, "service_account", name(NameRule::DnsSubdomain));
    let listen = f.req(cx, "listen", socket);
    let upstream = f.req(cx, "upstream", upstream);
    let endpoints = f.opt(cx, "endpoints", endpoints);
    let model_server = f.opt(cx, "model_server", |cx, n, p| {
        model_server(cx, n, p, base_dir)
    });
    let mtls = f.opt(cx, "mtls", crate::mtls::mode).unwrap_or_default();
    let allowed_peers = f
        .opt(cx, "allowed_peers", crate::mtls::peers)
        .unwrap_or_default();
    if let Some(up) = &upstream {
        upstream_sockets(cx, f, up, model_server.is_some(), sockets);
    }
    let admin = f.opt(cx, "admin", socket);
    if let (Some(addr), Some(n)) = (admin, f.get("admin")) {
        sockets.listeners.push(Claim {
            addr,
            at: n.at,
            path: f.path_of("admin"),
        });
    }
    let listen = listen?;
    if let Some(n) = f.get("listen") {
        sockets.listeners.push(Claim {
            addr: listen,
            at: n.at,
            path: f.path_of("listen"),
        });
        if endpoints.is_none() && f.get("endpoints").is_none() && listen.ip().is_unspecified() {
            let msg = format!(
                "{listen} is not an address gateways can connect to: list the workload's \
                 reachable addresses in `endpoints`"
            );
            cx.error(n.at, &f.path_of("listen"), msg);
        }
    }
    Some(Workload {
        name: wname,
        namespace: namespace.unwrap_or_else(|| "default".to_owned()),
        service_account: service_account.unwrap_or_else(|| "default".to_owned()),
        listen,
        upstream: upstream?,
        endpoints: endpoints.unwrap_or_else(|| vec![Address::Socket(listen)]),
        embedded_model_server: model_server,
        admin,
        mtls,
        allowed_peers,
    })
}

/// An embedded model server listens on its upstream sockets; an external one is a
/// target no mesh listener may take.
fn upstream_sockets(
    cx: &mut Cx,
    f: &Fields<'_>,
    up: &Upstream,
    embedded: bool,
    sockets: &mut Sockets,
) {
    let Some(node) = f.get("upstream") else {
        return;
    };
    for (key, addr) in [("rest", &up.rest), ("grpc", &up.grpc)] {
        let at = lookup(node, key).map_or(node.at, |k| k.at);
        let path = child(&f.path_of("upstream"), key);
        match addr {
            Address::Socket(addr) => {
                let claim = Claim {
                    addr: *addr,
                    at,
                    path,
                };
                if embedded {
                    sockets.listeners.push(claim);
                } else {
                    sockets.targets.push(claim);
                }
            }
            Address::Host { .. } if embedded => {
                let msg = "the embedded model server listens here: use an `ip:port` address";
                cx.error(at, &path, msg);
            }
            Address::Host { .. } => {}
        }
    }
}

fn upstream(cx: &mut Cx, node: &Node, path: &str) -> Option<Upstream> {
    let f = Fields::read(cx, node, path, UPSTREAM_KEYS)?;
    let rest = f.req(cx, "rest", address);
    let grpc = f.req(cx, "grpc", address);
    Some(Upstream {
        rest: rest?,
        grpc: grpc?,
    })
}

fn endpoints(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<Address>> {
    let items = list(cx, node, path)?;
    if items.is_empty() {
        cx.error(
            node.at,
            path,
            "must list at least one address (or leave it out)",
        );
        return None;
    }
    let mut out: Vec<Address> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(a) = address(cx, item, &ipath) else {
            continue;
        };
        if out.contains(&a) {
            cx.error(item.at, &ipath, "this address is listed twice");
            continue;
        }
        out.push(a);
    }
    Some(out)
}

fn model_server(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    base_dir: &Path,
) -> Option<std::path::PathBuf> {
    let f = Fields::read(cx, node, path, MODEL_SERVER_KEYS)?;
    let file = f.req(cx, "model_config_file", string)?;
    if file.trim().is_empty() {
        let at = f.get("model_config_file").map_or(f.at, |n| n.at);
        cx.error(at, &f.path_of("model_config_file"), "must name a file");
        return None;
    }
    Some(base_dir.join(file))
}

fn limits(cx: &mut Cx, node: &Node, path: &str) -> Option<Limits> {
    let f = Fields::read(cx, node, path, LIMIT_KEYS)?;
    let d = Limits::default();
    let usize_of = |v: u64| usize::try_from(v).ok();
    Some(Limits {
        max_request_body_bytes: f
            .opt(cx, "max_request_body_bytes", bytes)
            .unwrap_or(d.max_request_body_bytes),
        max_header_bytes: f
            .opt(cx, "max_header_bytes", bytes)
            .and_then(usize_of)
            .unwrap_or(d.max_header_bytes),
        max_concurrent_streams: f
            .opt(cx, "max_concurrent_streams", uint32(1, u32::MAX))
            .unwrap_or(d.max_concurrent_streams),
        max_connections: f
            .opt(cx, "max_connections", uint(1, u64::MAX))
            .and_then(usize_of)
            .unwrap_or(d.max_connections),
        connect_timeout: f
            .opt(cx, "connect_timeout", duration)
            .unwrap_or(d.connect_timeout),
        drain_timeout: f
            .opt(cx, "drain_timeout", duration)
            .unwrap_or(d.drain_timeout),
    })
}

fn outlier(cx: &mut Cx, node: &Node, path: &str) -> Option<OutlierDetection> {
    let f = Fields::read(cx, node, path, OUTLIER_KEYS)?;
    Some(outlier_from(cx, &f, OUTLIER_KEYS, duration))
}

/// Outlier detection from a mapping whose three keys (consecutive failures, base
/// ejection, max ejection percent) are named `keys` — mesh.yaml's or a
/// DestinationRule's — with durations read by `duration`; absent keys take defaults.
pub(crate) fn outlier_from(
    cx: &mut Cx,
    f: &Fields<'_>,
    keys: &[&str],
    duration: fn(&mut Cx, &Node, &str) -> Option<Duration>,
) -> OutlierDetection {
    let d = OutlierDetection::default();
    OutlierDetection {
        consecutive_failures: f
            .opt(cx, keys[0], uint32(1, u32::MAX))
            .unwrap_or(d.consecutive_failures),
        base_ejection: f.opt(cx, keys[1], duration).unwrap_or(d.base_ejection),
        max_ejection_percent: f
            .opt(cx, keys[2], uint32(0, 100))
            .unwrap_or(d.max_ejection_percent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_start_at_the_mesh_file() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(base_dir(Path::new("mesh.yaml")), cwd);
        assert_eq!(base_dir(Path::new("conf/mesh.yaml")), cwd.join("conf"));
        assert_eq!(
            base_dir(Path::new("/etc/im/mesh.yaml")),
            Path::new("/etc/im")
        );
    }
}
