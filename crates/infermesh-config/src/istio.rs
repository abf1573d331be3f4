//! Istio's own CRD YAML as input: multi-document `AuthorizationPolicy` and
//! `RequestAuthentication` (`security.istio.io/v1` or `v1beta1`), with Istio's
//! camelCase field names, compiled to the same [`Policy`] and [`Issuer`] values as
//! `mesh.yaml`'s `policies:` and `issuers:`.
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

/// Reads Istio `AuthorizationPolicy` / `RequestAuthentication` documents. `source`
/// names the file in errors. Other kinds, and unsupported fields, are errors.
pub fn import_istio(text: &str, source: &Path) -> Result<(Vec<Policy>, Vec<Issuer>), ConfigErrors> {
    let file = source.display().to_string();
    let docs = yaml::parse_multi(text).map_err(|e| {
        ConfigErrors::one(ConfigError {
            file: file.clone(),
            line: e.at.line,
            column: e.at.col,
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        })
    })?;
    let mut cx = Cx::new(file);
    let mut unsupported: Vec<(Pos, String)> = Vec::new();
    let (mut policies, mut issuers) = (Vec::new(), Vec::new());
    for (i, doc) in docs.into_iter().enumerate() {
        let path = format!("document {}", i + 1);
        let doc = strip(doc, &path, &mut unsupported);
        document(&mut cx, &doc, &path, &mut policies, &mut issuers);
    }
    if let Some((first, _)) = unsupported.first() {
        let list: Vec<String> = unsupported
            .iter()
            .map(|(at, p)| format!("{p} (line {})", at.line))
            .collect();
        let msg = format!(
            "unsupported Istio fields (infermesh cannot honour them; remove them or write \
             the policy in mesh.yaml): {}",
            list.join(", ")
        );
        cx.error(*first, "", msg);
    }
    if cx.errors.is_empty() {
        Ok((policies, issuers))
    } else {
        Err(ConfigErrors::new(cx.errors))
    }
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
    policies: &mut Vec<Policy>,
    issuers: &mut Vec<Issuer>,
) {
    let keys = ["apiVersion", "kind", "metadata", "spec", "status"];
    let Some(f) = Fields::read(cx, doc, path, &keys) else {
        return;
    };
    let api = f.req(cx, "apiVersion", string);
    if let (Some(api), Some(n)) = (&api, f.get("apiVersion"))
        && !api.starts_with("security.istio.io/")
    {
        let msg = format!("apiVersion {api:?} is not security.istio.io/v1 or v1beta1");
        cx.error(n.at, &f.path_of("apiVersion"), msg);
        return;
    }
    let Some(kind) = f.req(cx, "kind", string) else {
        return;
    };
    let name = f.req(cx, "metadata", metadata_name);
    let empty = Node {
        at: f.at,
        value: Value::Map(Vec::new()),
    };
    let spec = f.get("spec").unwrap_or(&empty);
    let spath = f.path_of("spec");
    match kind.as_str() {
        "AuthorizationPolicy" => {
            if let Some(p) = authorization_policy(cx, spec, &spath, name) {
                policies.push(p);
            }
        }
        "RequestAuthentication" => {
            let Some(sf) = Fields::read(cx, spec, &spath, &["jwtRules"]) else {
                return;
            };
            let jwt_rules = sf.opt(cx, "jwtRules", list).unwrap_or_default();
            let rpath = sf.path_of("jwtRules");
            for (i, rule) in jwt_rules.iter().enumerate() {
                issuers.extend(jwt_rule(cx, rule, &index(&rpath, i)));
            }
        }
        other => {
            let at = f.get("kind").map_or(f.at, |n| n.at);
            let msg = format!(
                "kind `{other}` is not imported: expected `AuthorizationPolicy` or \
                 `RequestAuthentication`"
            );
            cx.error(at, &f.path_of("kind"), msg);
        }
    }
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
