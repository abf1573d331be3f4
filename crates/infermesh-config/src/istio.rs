//! Istio's own CRD YAML as input: multi-document `AuthorizationPolicy` and
//! `RequestAuthentication` (`security.istio.io/v1` or `v1beta1`), with Istio's
//! camelCase field names, compiled to the same [`Policy`] and [`Issuer`] values as
//! `mesh.yaml`'s `policies:` and `issuers:`; through `istio_files:` also
//! `PeerAuthentication`, `VirtualService` and `DestinationRule`, read here
//! ([`crate::istio_routing`], [`crate::istio_peer`]) and resolved against the mesh's
//! workloads and models in [`crate::istio_apply`]. Kubernetes objects labelled
//! `app.kubernetes.io/managed-by: infermesh` (the ext_authz server `infermesh export
//! istio` writes) are skipped, so that the export imports as it is.
//!
//! Scope: infermesh policies apply mesh-wide, like Istio policies in the root
//! namespace. Fields infermesh cannot honour (`selector`, `targetRef`,
//! `remoteIpBlocks`, `fromParams`, …) are refused, all listed in one error, rather
//! than silently dropped: dropping a selector or a condition changes what a policy
//! allows.

use std::path::Path;

use crate::error::{ConfigError, ConfigErrors};
use crate::issuers::{
    DEFAULT_CLOCK_SKEW, DEFAULT_MIN_REFRESH, DEFAULT_REFRESH, default_from_headers, http_url,
    inline_jwks, non_empty, strings,
};
use crate::istio_peer::PeerAuthentication;
use crate::istio_routing::{DestinationRule, VirtualService};
use crate::policies::{Naming, Scope, action, policy_provider, rules};
use crate::read::{Cx, Fields, header_name, index, list, lookup, string};
use crate::security::{Action, Issuer, JwksSource, Policy};
use crate::yaml::{self, Node, Pos, Value};

/// Istio fields infermesh refuses, wherever they appear in a document.
const UNSUPPORTED: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "fromParams",
    "fromCookies",
    "outputPayloadToHeader",
    "forwardOriginalToken",
    "timeout",
];

/// Fields of Istio routing documents infermesh does not read: listed in one error.
pub(crate) struct Refused {
    items: Vec<(Pos, String)>,
}

impl Refused {
    pub fn push(&mut self, at: Pos, what: String) {
        self.items.push((at, what));
    }

    /// One error listing every refused field of the file, at the first one.
    fn report(mut self, cx: &mut Cx) {
        self.items.sort_by_key(|(at, _)| (at.line, at.col));
        let Some((first, _)) = self.items.first() else {
            return;
        };
        let list: Vec<String> = self
            .items
            .iter()
            .map(|(at, p)| format!("{p} (line {})", at.line))
            .collect();
        let msg = format!(
            "unsupported Istio fields (infermesh cannot honour them; remove them or write \
             this in mesh.yaml): {}",
            list.join(", ")
        );
        cx.error(*first, "", msg);
    }
}

/// Reads a mapping of an Istio routing document: keys outside `supported` are
/// recorded in `refused` (not reported as unknown).
pub(crate) fn istio_fields<'n>(
    cx: &mut Cx,
    node: &'n Node,
    path: &str,
    supported: &[&str],
    refused: &mut Refused,
) -> Option<Fields<'n>> {
    let mut known: Vec<&str> = supported.to_vec();
    if let Value::Map(entries) = &node.value {
        for (k, _) in entries {
            if let Value::Str(name) = &k.value
                && !supported.contains(&name.as_str())
            {
                refused.push(k.at, crate::read::child(path, name));
                known.push(name.as_str());
            }
        }
    }
    Fields::read(cx, node, path, &known)
}

/// Everything read from Istio files, before routing and peer authentication are
/// resolved against the mesh's workloads and models ([`crate::istio_apply`]).
#[derive(Default)]
pub(crate) struct Documents {
    pub policies: Vec<Policy>,
    pub issuers: Vec<Issuer>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub peer_authentications: Vec<PeerAuthentication>,
}

/// Reads Istio `AuthorizationPolicy` / `RequestAuthentication` documents. `source`
/// names the file in errors. Other kinds (but infermesh's own Kubernetes objects,
/// skipped), and unsupported fields, are errors:
/// `VirtualService`, `DestinationRule` and `PeerAuthentication` need the mesh's
/// workloads and models, so they are read through `istio_files:` in mesh.yaml.
pub fn import_istio(text: &str, source: &Path) -> Result<(Vec<Policy>, Vec<Issuer>), ConfigErrors> {
    let file = source.display().to_string();
    let mut docs = Documents::default();
    let errors = read_file(text, &file, &mut docs, false);
    if errors.is_empty() {
        Ok((docs.policies, docs.issuers))
    } else {
        Err(ConfigErrors::new(errors))
    }
}

/// Reads one file's documents into `docs`; `routing`: VirtualService,
/// DestinationRule and PeerAuthentication are accepted too. Returns the errors.
pub(crate) fn read_file(
    text: &str,
    file: &str,
    docs: &mut Documents,
    routing: bool,
) -> Vec<ConfigError> {
    let nodes = match yaml::parse_multi(text) {
        Ok(nodes) => nodes,
        Err(e) => {
            return vec![ConfigError {
                file: file.to_owned(),
                line: e.at.line,
                column: e.at.col,
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
            }];
        }
    };
    let mut cx = Cx::new(file.to_owned());
    let mut unsupported: Vec<(Pos, String)> = Vec::new();
    let mut refused = Refused { items: Vec::new() };
    let (vs, dr, pa) = (
        docs.virtual_services.len(),
        docs.destination_rules.len(),
        docs.peer_authentications.len(),
    );
    for (i, doc) in nodes.into_iter().enumerate() {
        if runs_the_mesh(&doc) {
            continue;
        }
        let path = format!("document {}", i + 1);
        let security = matches!(
            lookup(&doc, "kind")
                .and_then(|k| k.value.scalar_text())
                .as_deref(),
            Some("AuthorizationPolicy" | "RequestAuthentication")
        );
        let doc = if security {
            strip(doc, &path, &mut unsupported)
        } else {
            doc
        };
        document(&mut cx, &doc, &path, docs, &mut refused, routing);
    }
    for (at, p) in unsupported {
        refused.push(at, p);
    }
    refused.report(&mut cx);
    for v in &mut docs.virtual_services[vs..] {
        v.file = file.to_owned();
    }
    for d in &mut docs.destination_rules[dr..] {
        d.file = file.to_owned();
    }
    for p in &mut docs.peer_authentications[pa..] {
        p.file = file.to_owned();
    }
    cx.errors
}

/// A Kubernetes object (not of an `*.istio.io` group) labelled
/// `app.kubernetes.io/managed-by: infermesh`: what `infermesh export istio` writes to
/// run the ext_authz server (Deployment, Service, ConfigMap, …). It runs the mesh
/// rather than describes it, so importing the export skips it; other kinds are errors.
fn runs_the_mesh(doc: &Node) -> bool {
    let text = |node: Option<&Node>| node.and_then(|n| n.value.scalar_text());
    let api = text(lookup(doc, "apiVersion")).unwrap_or_default();
    let istio = api
        .split_once('/')
        .is_some_and(|(group, _)| group.ends_with(".istio.io"));
    let managed_by = lookup(doc, "metadata")
        .and_then(|m| lookup(m, "labels"))
        .and_then(|l| lookup(l, "app.kubernetes.io/managed-by"));
    !istio && text(managed_by).as_deref() == Some("infermesh")
}

/// Removes [`UNSUPPORTED`] keys below `spec`, recording where they were.
fn strip(node: Node, path: &str, found: &mut Vec<(Pos, String)>) -> Node {
    let value = match node.value {
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .filter_map(|(k, v)| {
                    let name = k.value.scalar_text().unwrap_or_default();
                    let child = crate::read::child(path, &name);
                    if UNSUPPORTED.contains(&name.as_str()) && path.contains(".spec") {
                        found.push((k.at, child));
                        return None;
                    }
                    Some((k, strip(v, &child, found)))
                })
                .collect(),
        ),
        Value::Seq(items) => Value::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| strip(v, &index(path, i), found))
                .collect(),
        ),
        other => other,
    };
    Node { at: node.at, value }
}

fn document(
    cx: &mut Cx,
    doc: &Node,
    path: &str,
    docs: &mut Documents,
    refused: &mut Refused,
    routing: bool,
) {
    let keys = ["apiVersion", "kind", "metadata", "spec", "status"];
    let Some(f) = Fields::read(cx, doc, path, &keys) else {
        return;
    };
    let api = f.req(cx, "apiVersion", string);
    let Some(kind) = f.req(cx, "kind", string) else {
        return;
    };
    let (group, wanted): (&str, &[&str]) = match kind.as_str() {
        "VirtualService" | "DestinationRule" => {
            ("networking.istio.io", &["v1", "v1beta1", "v1alpha3"])
        }
        _ => ("security.istio.io", &["v1", "v1beta1"]),
    };
    if let (Some(api), Some(n)) = (&api, f.get("apiVersion")) {
        let ok = api
            .split_once('/')
            .is_some_and(|(g, v)| g == group && wanted.contains(&v));
        let routing_kind = matches!(
            kind.as_str(),
            "VirtualService" | "DestinationRule" | "PeerAuthentication"
        );
        if !ok || (!routing && routing_kind) {
            let versions: Vec<String> = wanted.iter().map(|v| format!("{group}/{v}")).collect();
            let msg = if ok {
                format!(
                    "apiVersion {api:?}: {kind} needs the mesh's workloads and models; list \
                     the file under `istio_files:` in mesh.yaml"
                )
            } else {
                format!("apiVersion {api:?} is not {}", versions.join(" or "))
            };
            cx.error(n.at, &f.path_of("apiVersion"), msg);
            return;
        }
    }
    let meta = f.req(cx, "metadata", metadata);
    let empty = Node {
        at: f.at,
        value: Value::Map(Vec::new()),
    };
    let spec = f.get("spec").unwrap_or(&empty);
    let spath = f.path_of("spec");
    let Some(meta) = meta else {
        return;
    };
    match kind.as_str() {
        "AuthorizationPolicy" => {
            if let Some(p) = authorization_policy(cx, spec, &spath, Some(meta.name.clone())) {
                crate::istio_policy::recover(cx, p, &meta, &mut docs.policies);
            }
        }
        "RequestAuthentication" => {
            let Some(sf) = Fields::read(cx, spec, &spath, &["jwtRules"]) else {
                return;
            };
            let jwt_rules = sf.opt(cx, "jwtRules", list).unwrap_or_default();
            let rpath = sf.path_of("jwtRules");
            for (i, rule) in jwt_rules.iter().enumerate() {
                docs.issuers.extend(jwt_rule(cx, rule, &index(&rpath, i)));
            }
        }
        "VirtualService" => {
            let m = (meta.name, meta.namespace);
            docs.virtual_services
                .extend(crate::istio_routing::virtual_service(
                    cx, spec, &spath, m, refused,
                ));
        }
        "DestinationRule" => {
            let m = (meta.name, meta.namespace);
            docs.destination_rules
                .extend(crate::istio_routing::destination_rule(
                    cx, spec, &spath, m, refused,
                ));
        }
        "PeerAuthentication" => {
            let m = (meta.name, meta.namespace);
            docs.peer_authentications
                .extend(crate::istio_peer::read(cx, spec, &spath, m, refused));
        }
        other => {
            let at = f.get("kind").map_or(f.at, |n| n.at);
            let msg = format!(
                "kind `{other}` is not imported: expected `AuthorizationPolicy`, \
                 `RequestAuthentication`, `PeerAuthentication`, `VirtualService` or \
                 `DestinationRule`"
            );
            cx.error(at, &f.path_of("kind"), msg);
        }
    }
}

/// An object's `metadata`: name, namespace and the infermesh annotation.
pub(crate) struct Metadata {
    /// `<namespace>/<name>` when a namespace is given.
    pub name: String,
    pub namespace: Option<String>,
    /// The `infermesh.io/policies` annotation and where it is.
    pub policies: Option<(String, Pos)>,
}

fn metadata(cx: &mut Cx, node: &Node, path: &str) -> Option<Metadata> {
    let name = metadata_name(cx, node, path)?;
    let namespace = lookup(node, "namespace").and_then(|n| n.value.scalar_text());
    let policies = lookup(node, "annotations")
        .and_then(|a| lookup(a, crate::istio_policy::ANNOTATION))
        .and_then(|n| Some((n.value.scalar_text()?, n.at)));
    Some(Metadata {
        name,
        namespace,
        policies,
    })
}

/// `metadata.name`, as `<namespace>/<name>` when a namespace is given.
fn metadata_name(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let name = match lookup(node, "name") {
        Some(n) => non_empty(cx, n, &crate::read::child(path, "name"))?,
        None => return cx.expected(node, path, "metadata with a `name`"),
    };
    match lookup(node, "namespace") {
        Some(n) => Some(format!(
            "{}/{name}",
            non_empty(cx, n, &crate::read::child(path, "namespace"))?
        )),
        None => Some(name),
    }
}

fn authorization_policy(
    cx: &mut Cx,
    spec: &Node,
    path: &str,
    name: Option<String>,
) -> Option<Policy> {
    let f = Fields::read(cx, spec, path, &["action", "provider", "rules"])?;
    let action = f.opt(cx, "action", action).unwrap_or(Action::Allow);
    let provider = policy_provider(cx, &f, "provider", action);
    let scope = Scope {
        naming: Naming::Istio,
        models: None,
    };
    let rules = f.opt(cx, "rules", |cx, n, p| rules(cx, n, p, scope));
    Some(Policy {
        name: name?,
        action,
        rules: rules.unwrap_or_default(),
        provider: provider?,
    })
}

fn jwt_rule(cx: &mut Cx, node: &Node, path: &str) -> Option<Issuer> {
    let keys = [
        "issuer",
        "audiences",
        "jwksUri",
        "jwks",
        "fromHeaders",
        "outputClaimToHeaders",
    ];
    let f = Fields::read(cx, node, path, &keys)?;
    let issuer = f.req(cx, "issuer", non_empty);
    let jwks = match (f.get("jwksUri"), f.get("jwks")) {
        (Some(_), Some(n)) => {
            cx.error(
                n.at,
                &f.path_of("jwks"),
                "give only one of `jwksUri` and `jwks`",
            );
            None
        }
        (Some(_), None) => f.opt(cx, "jwksUri", http_url).map(JwksSource::Uri),
        (None, Some(_)) => f.opt(cx, "jwks", inline_jwks).map(JwksSource::Inline),
        (None, None) => Some(JwksSource::Discovery),
    };
    let audiences = f.opt(cx, "audiences", strings).unwrap_or_default();
    let from_headers = f.opt(cx, "fromHeaders", |cx, n, p| {
        pairs(cx, n, p, ["name", "prefix"], true).map(|v| {
            v.into_iter()
                .filter_map(|(name, prefix)| Some((name?, prefix)))
                .collect::<Vec<_>>()
        })
    });
    let forward = f.opt(cx, "outputClaimToHeaders", |cx, n, p| {
        pairs(cx, n, p, ["header", "claim"], false).map(|v| {
            v.into_iter()
                .filter_map(|(header, claim)| Some((claim, header?)))
                .collect::<Vec<_>>()
        })
    });
    Some(Issuer {
        issuer: issuer?,
        jwks: jwks?,
        audiences,
        from_headers: from_headers
            .filter(|h| !h.is_empty())
            .unwrap_or_else(default_from_headers),
        forward_claims: forward.unwrap_or_default(),
        clock_skew: DEFAULT_CLOCK_SKEW,
        refresh_interval: DEFAULT_REFRESH,
        min_refresh_interval: DEFAULT_MIN_REFRESH,
    })
}

/// `[{<header key>: h, <text key>: t}]` → (header name, text); the text may be
/// optional (`prefix`).
fn pairs(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    [hkey, tkey]: [&str; 2],
    text_optional: bool,
) -> Option<Vec<(Option<http::HeaderName>, String)>> {
    let mut out = Vec::new();
    for (i, item) in list(cx, node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, &[hkey, tkey]) else {
            continue;
        };
        let h = f.req(cx, hkey, header_name);
        let t = if text_optional {
            f.opt(cx, tkey, string).unwrap_or_default()
        } else {
            f.req(cx, tkey, non_empty).unwrap_or_default()
        };
        out.push((h, t));
    }
    Some(out)
}
