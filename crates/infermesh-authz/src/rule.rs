//! One compiled rule: `from` (any source) AND `to` (any operation) AND every `when`,
//! each field matched with Istio's semantics, evaluated three-valued so that
//! attributes that are not known fail closed.

use std::borrow::Cow;

use infermesh_config::{Condition, ConditionKey, IpBlock, Operation, Rule, Source};

use crate::pattern::{Field, Pats, Tri, Val, Why};
use crate::request::AuthzRequest;

/// Per-request values derived once and shared by every rule.
pub(crate) struct Derived<'a> {
    pub req: &'a AuthzRequest<'a>,
    pub namespace: Option<&'a str>,
    pub version: Option<String>,
    pub version_known: bool,
    /// The labels of the resolved version (and the one the request names), `Err(())`
    /// when the version is not known.
    pub labels: Result<Vec<&'a str>, ()>,
}

pub(crate) struct CompiledSource {
    principals: Field,
    request_principals: Field,
    namespaces: Field,
    ip_blocks: Vec<IpBlock>,
    not_ip_blocks: Vec<IpBlock>,
}

pub(crate) struct CompiledOperation {
    hosts: Field,
    ports: Vec<u16>,
    not_ports: Vec<u16>,
    methods: Field,
    paths: Field,
    pub models: Field,
    versions: Field,
    labels: Field,
    signatures: Field,
    apis: Field,
}

pub(crate) struct CompiledCondition {
    text: String,
    key: Option<ConditionKey>,
    values: Pats,
    not_values: Pats,
    ip_values: Vec<IpBlock>,
    not_ip_values: Vec<IpBlock>,
}

pub(crate) struct CompiledRule {
    pub from: Vec<CompiledSource>,
    pub to: Vec<CompiledOperation>,
    when: Vec<CompiledCondition>,
}

/// Invalid blocks cannot occur in a validated config; they are dropped, which for
/// `ip_blocks` matches nothing (and so never widens an ALLOW).
fn blocks(v: &[String]) -> Vec<IpBlock> {
    v.iter().filter_map(|b| IpBlock::parse(b).ok()).collect()
}

fn ports(v: &[String]) -> Vec<u16> {
    v.iter().filter_map(|p| p.parse().ok()).collect()
}

impl CompiledRule {
    pub fn compile(r: &Rule) -> CompiledRule {
        CompiledRule {
            from: r.from.iter().map(source).collect(),
            to: r.to.iter().map(operation).collect(),
            when: r.when.iter().map(condition).collect(),
        }
    }

    /// The exact model names this rule can only match, if it is restricted to them.
    pub fn model_index(&self) -> Option<Vec<&str>> {
        if self.to.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for op in &self.to {
            if !op.models.pos.is_set() {
                return None;
            }
            out.extend(op.models.pos.exact_names()?);
        }
        Some(out)
    }

    pub fn eval(&self, d: &Derived<'_>, why: &mut Why) -> Tri {
        let mut result = Tri::Yes;
        if !self.from.is_empty() {
            let mut any = Tri::No;
            for s in &self.from {
                any = any.or(s.eval(d, why));
                if any == Tri::Yes {
                    break;
                }
            }
            result = result.and(any);
            if result == Tri::No {
                return result;
            }
        }
        if !self.to.is_empty() {
            let mut any = Tri::No;
            for o in &self.to {
                any = any.or(o.eval(d, why));
                if any == Tri::Yes {
                    break;
                }
            }
            result = result.and(any);
            if result == Tri::No {
                return result;
            }
        }
        for c in &self.when {
            result = result.and(c.eval(d, why));
            if result == Tri::No {
                return result;
            }
        }
        result
    }
}

fn source(s: &Source) -> CompiledSource {
    CompiledSource {
        principals: Field::compile("principals", &s.principals, &s.not_principals, false),
        request_principals: Field::compile(
            "request_principals",
            &s.request_principals,
            &s.not_request_principals,
            false,
        ),
        namespaces: Field::compile("namespaces", &s.namespaces, &s.not_namespaces, false),
        ip_blocks: blocks(&s.ip_blocks),
        not_ip_blocks: blocks(&s.not_ip_blocks),
    }
}

fn operation(o: &Operation) -> CompiledOperation {
    CompiledOperation {
        hosts: Field::compile("hosts", &o.hosts, &o.not_hosts, true),
        ports: ports(&o.ports),
        not_ports: ports(&o.not_ports),
        methods: Field::compile("methods", &o.methods, &o.not_methods, false),
        paths: Field::compile("paths", &o.paths, &o.not_paths, false),
        models: Field::compile("models", &o.models, &o.not_models, false),
        versions: Field::compile("versions", &o.versions, &o.not_versions, false),
        labels: Field::compile("labels", &o.labels, &o.not_labels, false),
        signatures: Field::compile("signatures", &o.signatures, &o.not_signatures, false),
        apis: Field::compile("apis", &o.apis, &o.not_apis, false),
    }
}

fn condition(c: &Condition) -> CompiledCondition {
    let key = ConditionKey::parse(&c.key).ok();
    let ip = matches!(key, Some(ConditionKey::SourceIp));
    CompiledCondition {
        text: c.key.clone(),
        key,
        values: Pats::compile(&c.values, false),
        not_values: Pats::compile(&c.not_values, false),
        ip_values: if ip { blocks(&c.values) } else { Vec::new() },
        not_ip_values: if ip {
            blocks(&c.not_values)
        } else {
            Vec::new()
        },
    }
}

fn ip_field(pos: &[IpBlock], neg: &[IpBlock], d: &Derived<'_>, why: &mut Why) -> Tri {
    if pos.is_empty() && neg.is_empty() {
        return Tri::Yes;
    }
    let ip = d.req.source_ip;
    let inside = |list: &[IpBlock]| ip.is_some_and(|ip| list.iter().any(|b| b.contains(ip)));
    if !pos.is_empty() && !inside(pos) {
        why.note(|| format!("source ip {ip:?} not in `ip_blocks`"));
        return Tri::No;
    }
    if inside(neg) {
        why.note(|| format!("source ip {ip:?} is in `not_ip_blocks`"));
        return Tri::No;
    }
    Tri::Yes
}

impl CompiledSource {
    fn eval(&self, d: &Derived<'_>, why: &mut Why) -> Tri {
        let r = d.req;
        let mut t = self
            .request_principals
            .eval(Val::Known(r.request_principal), why);
        if t != Tri::No {
            t = t.and(self.principals.eval(Val::Known(r.peer_principal), why));
        }
        if t != Tri::No {
            t = t.and(self.namespaces.eval(Val::Known(d.namespace), why));
        }
        if t != Tri::No {
            t = t.and(ip_field(&self.ip_blocks, &self.not_ip_blocks, d, why));
        }
        t
    }
}

impl CompiledOperation {
    fn eval(&self, d: &Derived<'_>, why: &mut Why) -> Tri {
        let r = d.req;
        let m = r.model.as_ref();
        let mut t = self.hosts.eval(Val::Known(r.host), why);
        if t == Tri::No {
            return t;
        }
        if !self.ports.is_empty() && !r.port.is_some_and(|p| self.ports.contains(&p)) {
            why.note(|| format!("port {:?} not in `ports`", r.port));
            return Tri::No;
        }
        if r.port.is_some_and(|p| self.not_ports.contains(&p)) {
            why.note(|| format!("port {:?} is in `not_ports`", r.port));
            return Tri::No;
        }
        for (field, value) in [
            (&self.models, m.map(|m| m.name)),
            (&self.apis, m.map(|m| m.api.as_str())),
            (&self.methods, Some(r.method)),
            (&self.paths, Some(r.path)),
        ] {
            t = t.and(field.eval(Val::Known(value), why));
            if t == Tri::No {
                return t;
            }
        }
        let version = match (m, d.version_known) {
            (None, _) => Val::Known(None),
            (Some(_), true) => Val::Known(d.version.as_deref()),
            (Some(_), false) => Val::Unknown,
        };
        t = t.and(self.versions.eval(version, why));
        t = t.and(match (m, &d.labels) {
            (None, _) => self.labels.eval(Val::Known(None), why),
            (Some(_), Ok(labels)) => self.labels.eval_many(labels.iter().copied(), why),
            (Some(_), Err(())) => self.labels.eval(Val::Unknown, why),
        });
        let signature = match m.map(|m| m.signature) {
            None => Val::Known(None),
            Some(Some("")) => Val::Known(Some(infermesh_tfserving::DEFAULT_SIGNATURE)),
            Some(Some(s)) => Val::Known(Some(s)),
            Some(None) => Val::Unknown,
        };
        t.and(self.signatures.eval(signature, why))
    }
}

impl CompiledCondition {
    fn eval(&self, d: &Derived<'_>, why: &mut Why) -> Tri {
        let r = d.req;
        let Some(key) = &self.key else {
            why.note(|| {
                format!(
                    "condition `{}` cannot be evaluated (fails closed)",
                    self.text
                )
            });
            return Tri::Unknown;
        };
        let one = |v: Option<&str>, why: &mut Why| self.check(v.into_iter(), why);
        match key {
            ConditionKey::SourceIp => ip_field(&self.ip_values, &self.not_ip_values, d, why),
            ConditionKey::SourceNamespace => one(d.namespace, why),
            ConditionKey::SourcePrincipal => one(r.peer_principal, why),
            ConditionKey::RequestPrincipal => one(r.request_principal, why),
            ConditionKey::Audiences => self.check(r.audiences.iter().map(String::as_str), why),
            ConditionKey::Presenter => one(claim(r, &["azp"]).and_then(|v| v.as_str()), why),
            ConditionKey::DestinationPort => {
                let port = r.port.map(|p| p.to_string());
                one(port.as_deref(), why)
            }
            ConditionKey::Claim(path) => match claim(r, path) {
                None => one(None, why),
                Some(serde_json::Value::String(s)) => one(Some(s), why),
                Some(serde_json::Value::Array(items)) => {
                    self.check(items.iter().filter_map(|v| v.as_str()), why)
                }
                // Istio matches string and list-of-string claims only.
                Some(_) => one(None, why),
            },
            ConditionKey::Header(name) => match header(r, name) {
                Ok(v) => one(v.as_deref(), why),
                Err(()) => {
                    why.note(|| format!("header `{name}` is not text (fails closed)"));
                    Tri::Unknown
                }
            },
        }
    }

    /// `values`: one of the attribute's values matches; `not_values`: none does.
    fn check<'v>(&self, values: impl Iterator<Item = &'v str> + Clone, why: &mut Why) -> Tri {
        if self.values.is_set() && !values.clone().any(|v| self.values.any(v)) {
            why.note(|| format!("`{}` does not match `values`", self.text));
            return Tri::No;
        }
        if self.not_values.is_set() && values.clone().any(|v| self.not_values.any(v)) {
            why.note(|| format!("`{}` matches `not_values`", self.text));
            return Tri::No;
        }
        Tri::Yes
    }
}

/// A (nested) claim: each part is one object key.
fn claim<'a>(r: &AuthzRequest<'a>, path: &[impl AsRef<str>]) -> Option<&'a serde_json::Value> {
    let mut v = r.claims?;
    for part in path {
        v = v.as_object()?.get(part.as_ref())?;
    }
    Some(v)
}

/// A header's value, repeated headers joined with `,` (as Istio); `Err` when a value
/// is not visible ASCII text.
fn header<'a>(r: &AuthzRequest<'a>, name: &http::HeaderName) -> Result<Option<Cow<'a, str>>, ()> {
    let Some(headers) = r.headers else {
        return Ok(None);
    };
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let first = first.to_str().map_err(|_| ())?;
    let mut joined: Option<String> = None;
    for more in values {
        let s = joined.get_or_insert_with(|| first.to_owned());
        s.push(',');
        s.push_str(more.to_str().map_err(|_| ())?);
    }
    Ok(Some(joined.map_or(Cow::Borrowed(first), Cow::Owned)))
}
