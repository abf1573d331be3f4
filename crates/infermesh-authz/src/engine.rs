//! The [`Authorizer`]: every policy of the mesh compiled once, indexed by an attribute
//! each rule requires (`index.rs`), and evaluated in Istio's order:
//!
//! 1. CUSTOM: a matching CUSTOM policy would ask its ext_authz provider; providers are
//!    not implemented yet, so a match **denies** (fail closed).
//! 2. DENY: any matching DENY policy denies.
//! 3. ALLOW: when the mesh has at least one ALLOW policy, the request must match one
//!    (policies in `mesh.yaml` apply mesh-wide, like Istio policies in the root
//!    namespace, so "the workload has ALLOW policies" means "the mesh has any").
//! 4. No ALLOW policy at all: `authorization.default_deny` decides (Istio allows;
//!    infermesh denies unless the file says `default_deny: false`).
//!
//! AUDIT policies only mark the decision (`audit: true`). Attributes that are not
//! known (an unresolved version, an uninspected signature) fail closed: a rule that
//! tests them counts as matching for CUSTOM, DENY and AUDIT and as not matching for
//! ALLOW.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use infermesh_config::{Action, EscapedSlashes, MeshConfig};

use crate::index::ActionIndex;
use crate::pattern::{Tri, Why};
use crate::request::{AuthzRequest, Basis, Deciding, Decision};
use crate::rule::{CompiledRule, Derived};

/// Looked up on every request, keyed by config values (not by clients): a fast hash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) struct Entry {
    pub policy: usize,
    pub rule: usize,
    pub compiled: CompiledRule,
}

pub(crate) struct PolicyInfo {
    pub name: Arc<str>,
    pub action: Action,
    pub rules: usize,
}

/// A model's labels both ways.
#[derive(Default)]
struct Labels {
    by_label: FastMap<String, i64>,
    by_version: FastMap<i64, Vec<String>>,
}

/// The compiled policies of one configuration; immutable, cheap to share.
pub struct Authorizer {
    pub(crate) policies: Vec<PolicyInfo>,
    pub(crate) entries: Vec<Entry>,
    custom: ActionIndex,
    deny: ActionIndex,
    allow: ActionIndex,
    audit: ActionIndex,
    has_allow: bool,
    default_deny: bool,
    escaped_slashes: EscapedSlashes,
    labels: FastMap<String, Labels>,
    uses_signatures: bool,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policies", &self.policies.len())
            .field("rules", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Compiles the policies of a validated configuration.
    pub fn new(config: &MeshConfig) -> Authorizer {
        let mut a = Authorizer {
            policies: Vec::new(),
            entries: Vec::new(),
            custom: ActionIndex::default(),
            deny: ActionIndex::default(),
            allow: ActionIndex::default(),
            audit: ActionIndex::default(),
            has_allow: false,
            default_deny: config.authz.default_deny,
            escaped_slashes: config.authz.escaped_slashes,
            labels: FastMap::default(),
            uses_signatures: false,
        };
        for (pi, p) in config.policies.iter().enumerate() {
            a.has_allow |= p.action == Action::Allow;
            a.uses_signatures |= p
                .rules
                .iter()
                .flat_map(|r| &r.to)
                .any(|o| !o.signatures.is_empty() || !o.not_signatures.is_empty());
            a.policies.push(PolicyInfo {
                name: p.name.as_str().into(),
                action: p.action,
                rules: p.rules.len(),
            });
            for (ri, r) in p.rules.iter().enumerate() {
                let compiled = CompiledRule::compile(r);
                let at = a.entries.len() as u32;
                let index = match p.action {
                    Action::Custom => &mut a.custom,
                    Action::Deny => &mut a.deny,
                    Action::Allow => &mut a.allow,
                    Action::Audit => &mut a.audit,
                };
                index.add(&compiled, at);
                a.entries.push(Entry {
                    policy: pi,
                    rule: ri,
                    compiled,
                });
            }
        }
        for (name, m) in &config.models {
            let mut l = Labels::default();
            for (label, &v) in &m.labels {
                l.by_label.insert(label.clone(), v);
                l.by_version.entry(v).or_default().push(label.clone());
            }
            a.labels.insert(name.clone(), l);
        }
        a
    }

    /// How `%2F` / `%5C` in paths are treated ([`crate::normalize`]).
    pub fn escaped_slashes(&self) -> EscapedSlashes {
        self.escaped_slashes
    }

    /// Whether any policy tests signatures: REST requests then need their body's
    /// `signature_name` read before authorizing, or such rules fail closed.
    pub fn uses_signatures(&self) -> bool {
        self.uses_signatures
    }

    /// Decides one request. Never panics; every uncertainty denies.
    pub fn authorize(&self, req: &AuthzRequest<'_>) -> Decision {
        let d = self.derive(req);
        let mut why = Why::off();
        let audit = self.first(&self.audit, &d, true, &mut why).is_some();
        if let Some(e) = self.first(&self.custom, &d, true, &mut why) {
            return self.decided(false, Basis::CustomUnavailable, e, audit);
        }
        if let Some(e) = self.first(&self.deny, &d, true, &mut why) {
            return self.decided(false, Basis::DenyMatched, e, audit);
        }
        if self.has_allow {
            if let Some(e) = self.first(&self.allow, &d, false, &mut why) {
                return self.decided(true, Basis::AllowMatched, e, audit);
            }
            return undecided(false, Basis::NoAllowMatched, audit);
        }
        undecided(!self.default_deny, Basis::Default, audit)
    }

    pub(crate) fn derive<'a>(&'a self, req: &'a AuthzRequest<'a>) -> Derived<'a> {
        let namespace = req.peer_namespace.or_else(|| {
            let p = req.peer_principal?;
            let (_, rest) = p.split_once("/ns/")?;
            Some(rest.split_once("/sa/").map_or(rest, |(ns, _)| ns))
        });
        let (mut version, mut version_labels) = (None, &[][..]);
        if let Some(m) = &req.model {
            let known = self.labels.get(m.name);
            version = m.version.or_else(|| {
                let label = m.label?;
                known?.by_label.get(label).copied()
            });
            if let Some(v) = version {
                let of_version = known.and_then(|k| k.by_version.get(&v));
                version_labels = of_version.map_or(&[][..], Vec::as_slice);
            }
        }
        Derived {
            req,
            namespace,
            version,
            version_labels,
            version_text: OnceCell::new(),
            port_text: OnceCell::new(),
        }
    }

    /// The first rule of `index` (in file order) that matches; `Unknown` counts as a
    /// match when `unknown_matches`.
    fn first(
        &self,
        index: &ActionIndex,
        d: &Derived<'_>,
        unknown_matches: bool,
        why: &mut Why,
    ) -> Option<&Entry> {
        for next in index.candidates(d) {
            let e = self.entries.get(next as usize)?;
            match e.compiled.eval(d, why) {
                Tri::Yes => return Some(e),
                Tri::Unknown if unknown_matches => return Some(e),
                _ => {}
            }
        }
        None
    }

    fn decided(&self, allowed: bool, basis: Basis, e: &Entry, audit: bool) -> Decision {
        let p = &self.policies[e.policy];
        Decision {
            allowed,
            basis,
            deciding: Some(Deciding {
                policy: p.name.clone(),
                rule: e.rule,
                action: p.action,
            }),
            audit,
            reasons: Vec::new(),
        }
    }
}

fn undecided(allowed: bool, basis: Basis, audit: bool) -> Decision {
    Decision {
        allowed,
        basis,
        deciding: None,
        audit,
        reasons: Vec::new(),
    }
}
