//! `policies:` and `authorization:`: Istio `AuthorizationPolicy` rules plus model
//! operations, read either with `mesh.yaml`'s snake_case names or, for the Istio
//! import ([`crate::istio`]), with Istio's camelCase names and `source`/`operation`
//! wrappers. Every value is checked here; the authz crate only compiles.

use crate::conditions::{ConditionKey, Kind, check_value};
use crate::error::{one_of, suggest};
use crate::read::{Cx, Fields, NameRule, boolean, index, list, name, string};
use crate::security::{
    Action, AuthzSettings, Condition, EscapedSlashes, Operation, Policy, Rule, Source,
};
use crate::yaml::{Node, Pos, Value};

/// Which spelling of the field names is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Naming {
    /// `mesh.yaml`: `not_principals`, model operations allowed.
    Mesh,
    /// Istio CRDs: `notPrincipals`, `from[].source`, no model operations.
    Istio,
}

/// (snake_case, camelCase, kind, mesh only).
pub(crate) type Spec = (&'static str, &'static str, Kind, bool);

pub(crate) const SOURCE: &[Spec] = &[
    ("principals", "principals", Kind::Principal, false),
    ("not_principals", "notPrincipals", Kind::Principal, false),
    (
        "request_principals",
        "requestPrincipals",
        Kind::RequestPrincipal,
        false,
    ),
    (
        "not_request_principals",
        "notRequestPrincipals",
        Kind::RequestPrincipal,
        false,
    ),
    ("namespaces", "namespaces", Kind::Namespace, false),
    ("not_namespaces", "notNamespaces", Kind::Namespace, false),
    ("ip_blocks", "ipBlocks", Kind::IpBlock, false),
    ("not_ip_blocks", "notIpBlocks", Kind::IpBlock, false),
];

pub(crate) const OPERATION: &[Spec] = &[
    ("hosts", "hosts", Kind::Host, false),
    ("not_hosts", "notHosts", Kind::Host, false),
    ("ports", "ports", Kind::Port, false),
    ("not_ports", "notPorts", Kind::Port, false),
    ("methods", "methods", Kind::Method, false),
    ("not_methods", "notMethods", Kind::Method, false),
    ("paths", "paths", Kind::Path, false),
    ("not_paths", "notPaths", Kind::Path, false),
    ("models", "", Kind::Model, true),
    ("not_models", "", Kind::Model, true),
    ("versions", "", Kind::Version, true),
    ("not_versions", "", Kind::Version, true),
    ("labels", "", Kind::Label, true),
    ("not_labels", "", Kind::Label, true),
    ("signatures", "", Kind::Signature, true),
    ("not_signatures", "", Kind::Signature, true),
    ("apis", "", Kind::Api, true),
    ("not_apis", "", Kind::Api, true),
];

pub(crate) const ACTIONS: &[&str] = &["ALLOW", "DENY", "AUDIT", "CUSTOM"];
pub(crate) const POLICY_KEYS: &[&str] = &["name", "action", "provider", "rules"];
/// `provider: {name: ...}` (the Istio form; a plain string works too).
pub(crate) const PROVIDER_KEYS: &[&str] = &["name"];
pub(crate) const RULE_KEYS: &[&str] = &["from", "to", "when"];
pub(crate) const AUTHORIZATION_KEYS: &[&str] = &["default_deny", "escaped_slashes"];
pub(crate) const ESCAPED_SLASHES: &[&str] = &["reject", "decode_and_merge", "keep"];

/// The names a table spells in `naming`.
pub(crate) fn names(table: &[Spec], naming: Naming) -> Vec<&'static str> {
    table
        .iter()
        .filter(|s| naming == Naming::Mesh || !s.3)
        .map(|s| if naming == Naming::Mesh { s.0 } else { s.1 })
        .collect()
}

/// What the readers need besides the node: the spelling and the declared models
/// (`None`: not known, exact model names are then not checked).
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub naming: Naming,
    pub models: Option<&'a [String]>,
}

pub(crate) fn policies(cx: &mut Cx, node: &Node, path: &str, scope: Scope<'_>) -> Vec<Policy> {
    let mut out = Vec::new();
    let mut seen: Vec<(String, Pos)> = Vec::new();
    for (i, item) in list(cx, node, path).unwrap_or_default().iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, POLICY_KEYS) else {
            continue;
        };
        let pname = f.req(cx, "name", name(NameRule::DnsSubdomain));
        if let (Some(n), Some(at)) = (&pname, f.get("name").map(|n| n.at)) {
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == n) {
                let msg = format!("duplicate policy name `{n}` (first on line {})", first.line);
                cx.error(at, &f.path_of("name"), msg);
            }
            seen.push((n.clone(), at));
        }
        let action = f.opt(cx, "action", action).unwrap_or(Action::Allow);
        let provider = policy_provider(cx, &f, "provider", action);
        let rules = f.opt(cx, "rules", |cx, n, p| rules(cx, n, p, scope));
        if let (Some(name), Some(provider)) = (pname, provider) {
            out.push(Policy {
                name,
                action,
                rules: rules.unwrap_or_default(),
                provider,
            });
        }
    }
    out
}

/// `provider` (mesh) or `provider.name` (Istio): required for CUSTOM, refused otherwise.
pub(crate) fn policy_provider(
    cx: &mut Cx,
    f: &Fields<'_>,
    key: &str,
    action: Action,
) -> Option<Option<String>> {
    let provider = f.opt(cx, key, |cx, n, p| match &n.value {
        Value::Map(_) => Fields::read(cx, n, p, PROVIDER_KEYS)?.req(cx, "name", string),
        _ => string(cx, n, p),
    });
    match (action, provider, f.get(key)) {
        (Action::Custom, Some(p), _) => Some(Some(p)),
        (Action::Custom, None, None) => {
            let msg = "a CUSTOM policy names its ext_authz `provider`";
            cx.error(f.at, &f.path_of(key), msg);
            None
        }
        (Action::Custom, None, Some(_)) => None,
        (_, _, Some(n)) => {
            cx.error(
                n.at,
                &f.path_of(key),
                "only CUSTOM policies have a provider",
            );
            None
        }
        (_, _, None) => Some(None),
    }
}

pub(crate) fn action(cx: &mut Cx, node: &Node, path: &str) -> Option<Action> {
    let text = string(cx, node, path)?;
    match text.to_ascii_uppercase().as_str() {
        "ALLOW" => Some(Action::Allow),
        "DENY" => Some(Action::Deny),
        "AUDIT" => Some(Action::Audit),
        "CUSTOM" => Some(Action::Custom),
        _ => {
            let msg = match suggest(&text.to_ascii_uppercase(), ACTIONS.iter().copied()) {
                Some(s) => format!("unknown action `{text}`, did you mean `{s}`?"),
                None => format!(
                    "unknown action `{text}`, expected {}",
                    one_of(ACTIONS.iter().copied())
                ),
            };
            cx.error(node.at, path, msg);
            None
        }
    }
}

/// `rules:`: a list of rules; `[]` matches nothing, `[{}]` matches everything.
pub(crate) fn rules(cx: &mut Cx, node: &Node, path: &str, scope: Scope<'_>) -> Option<Vec<Rule>> {
    let items = list(cx, node, path)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, RULE_KEYS) else {
            continue;
        };
        let (wrap_from, wrap_to) = match scope.naming {
            Naming::Mesh => (None, None),
            Naming::Istio => (Some("source"), Some("operation")),
        };
        let from = f.opt(cx, "from", |cx, n, p| {
            entries(cx, n, p, wrap_from, |cx, n, p| {
                let mut s = Source::default();
                for (key, values) in fields(cx, n, p, SOURCE, scope)? {
                    if let Some(slot) = source_slot(&mut s, key) {
                        *slot = values;
                    }
                }
                Some(s)
            })
        });
        let to = f.opt(cx, "to", |cx, n, p| {
            entries(cx, n, p, wrap_to, |cx, n, p| {
                let mut o = Operation::default();
                for (key, values) in fields(cx, n, p, OPERATION, scope)? {
                    if let Some(slot) = operation_slot(&mut o, key) {
                        *slot = values;
                    }
                }
                Some(o)
            })
        });
        let when = f.opt(cx, "when", |cx, n, p| {
            entries(cx, n, p, None, |cx, n, p| condition(cx, n, p, scope.naming))
        });
        out.push(Rule {
            from: from.unwrap_or_default(),
            to: to.unwrap_or_default(),
            when: when.unwrap_or_default(),
        });
    }
    Some(out)
}

/// A list of entries, each optionally wrapped in `{<wrap>: …}` (Istio's `source:`).
fn entries<T>(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    wrap: Option<&str>,
    mut read: impl FnMut(&mut Cx, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let items = list(cx, node, path)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let got = match wrap {
            None => read(cx, item, &ipath),
            Some(key) => Fields::read(cx, item, &ipath, &[key])
                .and_then(|f| f.req(cx, key, |cx, n, p| read(cx, n, p))),
        };
        out.extend(got);
    }
    Some(out)
}

/// Reads a source or operation mapping: (snake_case field, values) pairs; `None`
/// when anything was wrong or the mapping is empty (which Istio refuses too).
fn fields(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    table: &[Spec],
    scope: Scope<'_>,
) -> Option<Vec<(&'static str, Vec<String>)>> {
    let known = names(table, scope.naming);
    let errors = cx.errors.len();
    let f = Fields::read(cx, node, path, &known)?;
    let mut out = Vec::new();
    for spec in table
        .iter()
        .filter(|s| scope.naming == Naming::Mesh || !s.3)
    {
        let key = if scope.naming == Naming::Mesh {
            spec.0
        } else {
            spec.1
        };
        if let Some(v) = f.opt(cx, key, |cx, n, p| values(cx, n, p, spec.2, scope)) {
            out.push((spec.0, v));
        }
    }
    if out.is_empty() && cx.errors.len() == errors {
        let msg = "an empty entry matches every request: leave the list out instead";
        cx.error(node.at, path, msg);
    }
    (!out.is_empty() && cx.errors.len() == errors).then_some(out)
}

fn source_slot<'s>(s: &'s mut Source, key: &str) -> Option<&'s mut Vec<String>> {
    Some(match key {
        "principals" => &mut s.principals,
        "not_principals" => &mut s.not_principals,
        "request_principals" => &mut s.request_principals,
        "not_request_principals" => &mut s.not_request_principals,
        "namespaces" => &mut s.namespaces,
        "not_namespaces" => &mut s.not_namespaces,
        "ip_blocks" => &mut s.ip_blocks,
        "not_ip_blocks" => &mut s.not_ip_blocks,
        _ => return None,
    })
}

fn operation_slot<'s>(o: &'s mut Operation, key: &str) -> Option<&'s mut Vec<String>> {
    Some(match key {
        "hosts" => &mut o.hosts,
        "not_hosts" => &mut o.not_hosts,
        "ports" => &mut o.ports,
        "not_ports" => &mut o.not_ports,
        "methods" => &mut o.methods,
        "not_methods" => &mut o.not_methods,
        "paths" => &mut o.paths,
        "not_paths" => &mut o.not_paths,
        "models" => &mut o.models,
        "not_models" => &mut o.not_models,
        "versions" => &mut o.versions,
        "not_versions" => &mut o.not_versions,
        "labels" => &mut o.labels,
        "not_labels" => &mut o.not_labels,
        "signatures" => &mut o.signatures,
        "not_signatures" => &mut o.not_signatures,
        "apis" => &mut o.apis,
        "not_apis" => &mut o.not_apis,
        _ => return None,
    })
}

/// A non-empty list of values of `kind` (numbers allowed for ports and versions).
fn values(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    kind: Kind,
    scope: Scope<'_>,
) -> Option<Vec<String>> {
    let items = list(cx, node, path)?;
    if items.is_empty() {
        cx.error(
            node.at,
            path,
            "must list at least one value (or leave it out)",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let text = match (&item.value, kind) {
            (Value::Int(n), Kind::Port | Kind::Version | Kind::Any) => n.to_string(),
            (Value::Str(s), _) => s.clone(),
            _ => {
                ok = false;
                cx.expected::<()>(item, &ipath, "a string");
                continue;
            }
        };
        let checked = check_value(kind, &text).and_then(|()| declared(kind, &text, scope));
        match checked {
            Ok(()) => out.push(text),
            Err(msg) => {
                ok = false;
                cx.error(item.at, &ipath, msg);
            }
        }
    }
    ok.then_some(out)
}

/// An exact model name must be a model of the mesh (a typo would silently never match).
fn declared(kind: Kind, text: &str, scope: Scope<'_>) -> Result<(), String> {
    let (Kind::Model, Some(models)) = (kind, scope.models) else {
        return Ok(());
    };
    if text.contains('*') || models.iter().any(|m| m == text) {
        return Ok(());
    }
    Err(match suggest(text, models.iter().map(String::as_str)) {
        Some(s) => format!("no model named `{text}`, did you mean `{s}`?"),
        None => format!("no model named `{text}` in `models:`"),
    })
}

fn condition(cx: &mut Cx, node: &Node, path: &str, naming: Naming) -> Option<Condition> {
    let keys = condition_keys(naming);
    let not_key = keys[2];
    let f = Fields::read(cx, node, path, &keys)?;
    let key_text = f.req(cx, "key", string)?;
    let key = match ConditionKey::parse(&key_text) {
        Ok(k) => k,
        Err(msg) => {
            let at = f.get("key").map_or(f.at, |n| n.at);
            cx.error(at, &f.path_of("key"), msg);
            return None;
        }
    };
    let kind = match key {
        ConditionKey::SourceIp => Kind::IpBlock,
        ConditionKey::DestinationPort => Kind::Port,
        ConditionKey::SourceNamespace => Kind::Namespace,
        ConditionKey::SourcePrincipal => Kind::Principal,
        _ => Kind::Any,
    };
    let scope = Scope {
        naming,
        models: None,
    };
    let values_ = f.opt(cx, "values", |cx, n, p| values(cx, n, p, kind, scope));
    let not_values = f.opt(cx, not_key, |cx, n, p| values(cx, n, p, kind, scope));
    if f.get("values").is_none() && f.get(not_key).is_none() {
        let msg = format!("a condition needs `values` or `{not_key}`");
        cx.error(f.at, path, msg);
        return None;
    }
    Some(Condition {
        key: key_text,
        values: values_.unwrap_or_default(),
        not_values: not_values.unwrap_or_default(),
    })
}

/// The fields of a `when` condition: `key`, `values` and the negated values.
pub(crate) fn condition_keys(naming: Naming) -> [&'static str; 3] {
    match naming {
        Naming::Mesh => ["key", "values", "not_values"],
        Naming::Istio => ["key", "values", "notValues"],
    }
}

pub(crate) fn authorization(cx: &mut Cx, node: &Node, path: &str) -> Option<AuthzSettings> {
    let f = Fields::read(cx, node, path, AUTHORIZATION_KEYS)?;
    let d = AuthzSettings::default();
    Some(AuthzSettings {
        default_deny: f.opt(cx, "default_deny", boolean).unwrap_or(d.default_deny),
        escaped_slashes: f
            .opt(cx, "escaped_slashes", escaped_slashes)
            .unwrap_or(d.escaped_slashes),
    })
}

fn escaped_slashes(cx: &mut Cx, node: &Node, path: &str) -> Option<EscapedSlashes> {
    let text = string(cx, node, path)?;
    match text.as_str() {
        "reject" => Some(EscapedSlashes::Reject),
        "decode_and_merge" => Some(EscapedSlashes::DecodeAndMerge),
        "keep" => Some(EscapedSlashes::Keep),
        _ => {
            let msg = match suggest(&text, ESCAPED_SLASHES.iter().copied()) {
                Some(s) => format!("unknown value `{text}`, did you mean `{s}`?"),
                None => format!(
                    "unknown value `{text}`, expected {}",
                    one_of(ESCAPED_SLASHES.iter().copied())
                ),
            };
            cx.error(node.at, path, msg);
            None
        }
    }
}
