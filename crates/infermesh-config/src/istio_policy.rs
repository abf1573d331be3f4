//! The `infermesh.io/policies` annotation: how an exported Istio
//! `AuthorizationPolicy` carries the mesh policies it stands for, so importing the
//! export gives back the same decisions.
//!
//! Istio cannot see model operations (`models`, `versions`, `labels`, `signatures`,
//! `apis`), so `infermesh export istio` writes a coarser native policy (or, for a DENY,
//! none) and delegates the decision to the infermesh ext_authz server. The exported
//! objects carry the full policies as JSON in mesh.yaml's own form:
//!
//! * an exported policy: a list of one, the policy whose coarse form the spec is;
//! * the CUSTOM `infermesh-ext-authz` policy (`rules: [{}]`): the DENY policies with
//!   model operations that only ext_authz enforces.
//!
//! Import checks the spec against the annotation (an edited spec with a stale
//! annotation is an error) and keeps the full policies; without the annotation the
//! spec keeps its Istio meaning. Identical policies (one per exported namespace) are
//! kept once.

use crate::istio::Metadata;
use crate::policies::{Naming, Scope};
use crate::read::Cx;
use crate::security::{Action, Operation, Policy, Rule};

pub const ANNOTATION: &str = "infermesh.io/policies";

/// Adds the policies `spec` (read from the Istio spec) stands for to `out`.
pub(crate) fn recover(cx: &mut Cx, spec: Policy, meta: &Metadata, out: &mut Vec<Policy>) {
    let Some((text, at)) = &meta.policies else {
        out.push(spec);
        return;
    };
    let mut sub = Cx::new(String::new());
    let full = match crate::yaml::parse(text) {
        Ok(node) => {
            let scope = Scope {
                naming: Naming::Mesh,
                models: None,
            };
            crate::policies::policies(&mut sub, &node, "", scope)
        }
        Err(e) => {
            let msg = format!("annotation {ANNOTATION}: invalid JSON: {}", e.message);
            cx.error(*at, "metadata.annotations", msg);
            return;
        }
    };
    if let Some(e) = sub.errors.first() {
        let msg = format!("annotation {ANNOTATION}: {}{}", prefix(&e.path), e.message);
        cx.error(*at, "metadata.annotations", msg);
        return;
    }
    let delegating = spec.action == Action::Custom && spec.rules == [Rule::default()];
    let consistent = if delegating {
        full.iter()
            .all(|p| p.action == Action::Deny && uses_model_operations(p))
    } else {
        matches!(full.as_slice(), [p] if same(&coarse(p), &spec))
    };
    if !consistent {
        let msg = format!(
            "the spec is not what `infermesh export istio` writes for the policies in its \
             {ANNOTATION} annotation (edited after export?): remove the annotation to import \
             the spec with its Istio meaning, or export again"
        );
        cx.error(*at, "metadata.annotations", msg);
        return;
    }
    for p in full {
        if !out.contains(&p) {
            out.push(p);
        }
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn same(a: &Policy, b: &Policy) -> bool {
    a.action == b.action && a.rules == b.rules && a.provider == b.provider
}

/// Whether a policy uses operations only infermesh can see.
pub fn uses_model_operations(policy: &Policy) -> bool {
    policy
        .rules
        .iter()
        .any(|r| r.to.iter().any(|o| *o != istio_part(o)))
}

/// What Istio can match of an operation: the model fields dropped.
fn istio_part(op: &Operation) -> Operation {
    Operation {
        hosts: op.hosts.clone(),
        not_hosts: op.not_hosts.clone(),
        ports: op.ports.clone(),
        not_ports: op.not_ports.clone(),
        methods: op.methods.clone(),
        not_methods: op.not_methods.clone(),
        paths: op.paths.clone(),
        not_paths: op.not_paths.clone(),
        ..Operation::default()
    }
}

/// The native Istio form of a policy, as the export writes it: model fields dropped;
/// an operation left empty matches every request, and so does its whole `to` list.
pub fn coarse(policy: &Policy) -> Policy {
    let rules = policy
        .rules
        .iter()
        .map(|r| {
            let to: Vec<Operation> = r.to.iter().map(istio_part).collect();
            let matches_all = to.iter().any(|o| *o == Operation::default());
            Rule {
                from: r.from.clone(),
                to: if matches_all { Vec::new() } else { to },
                when: r.when.clone(),
            }
        })
        .collect();
    Policy {
        rules,
        ..policy.clone()
    }
}
