//! One compiled rule: `from` (any source) AND `to` (any operation) AND every `when`,
//! each field matched with Istio's semantics, evaluated three-valued so that
//! attributes that are not known fail closed.

use std::borrow::Cow;
use std::cell::OnceCell;

use infermesh_config::{Condition, ConditionKey, IpBlock, Operation, Rule, Source};

use crate::index::Key;
use crate::pattern::{Field, Pat, Pats, Tri, Val, Why};
use crate::request::AuthzRequest;

/// Per-request values derived once and shared by every rule.
pub(crate) struct Derived<'a> {
    pub req: &'a AuthzRequest<'a>,
    pub namespace: Option<&'a str>,
    /// The version the request resolves to, when known.
    pub version: Option<i64>,
    /// The labels `models:` gives that version (empty when it is not known).
    pub version_labels: &'a [String],
    /// `version` and `destination.port` as text, written when a rule first tests them.
    pub version_text: OnceCell<String>,
    pub port_text: OnceCell<String>,
}

impl Derived<'_> {
    fn version_text(&self) -> Option<&str> {
        let v = self.version?;
        Some(self.version_text.get_or_init(|| v.to_string()))
    }

    fn port_text(&self) -> Option<&str> {
        let p = self.req.port?;
        Some(self.port_text.get_or_init(|| p.to_string()))
    }
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
    models: Field,
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

    /// The patterns of `key` the rule requires one of: every `from` source (or every
    /// `to` operation) tests the attribute; `None` when some does not.
    pub fn required(&self, key: Key) -> Option<Vec<&Pat>> {
        let fields: Vec<&Field> = match key {
            Key::RequestPrincipal | Key::Principal | Key::Namespace => self
                .from
                .iter()
                .map(|s| s.field(key))
                .collect::<Option<_>>()?,
            _ => self
                .to
                .iter()
                .map(|o| o.field(key))
                .collect::<Option<_>>()?,
        };
        if fields.is_empty() || fields.iter().any(|f| !f.pos.is_set()) {
            return None;
        }
        Some(fields.iter().flat_map(|f| f.pos.pats()).collect())
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
    fn field(&self, key: Key) -> Option<&Field> {
        match key {
            Key::RequestPrincipal => Some(&self.request_principals),
            Key::Principal => Some(&self.principals),
            Key::Namespace => Some(&self.namespaces),
            _ => None,
        }
    }

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
    fn field(&self, key: Key) -> Option<&Field> {
        match key {
            Key::Model => Some(&self.models),
            Key::Path => Some(&self.paths),
            Key::Method => Some(&self.methods),
            Key::Api => Some(&self.apis),
            _ => None,
        }
    }

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
        if self.versions.is_set() {
            let version = match (m, d.version) {
                (None, _) => Val::Known(None),
                (Some(_), Some(_)) => Val::Known(d.version_text()),
                (Some(_), None) => Val::Unknown,
            };
            t = t.and(self.versions.eval(version, why));
        }
        // The labels are known when the version is, or when the request names one.
        t = t.and(match m {
            None => self.labels.eval(Val::Known(None), why),
            Some(m) if d.version.is_some() || m.label.is_some() => {
                let of_version = d.version_labels.iter().map(String::as_str);
                self.labels
                    .eval_many(m.label.into_iter().chain(of_version), why)
            }
            Some(_) => self.labels.eval(Val::Unknown, why),
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
            ConditionKey::DestinationPort => one(d.port_text(), why),
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
