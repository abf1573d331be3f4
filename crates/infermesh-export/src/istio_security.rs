//! Istio security: `PeerAuthentication` (the workloads' mTLS modes: one per namespace,
//! plus one per workload that differs), `RequestAuthentication` (the mesh's issuers)
//! and `AuthorizationPolicy`, in every namespace that holds a workload (the mesh's
//! policies apply to all its workloads; Istio scopes by namespace).
//!
//! Policies Istio can express (principals, request principals, namespaces, IP blocks,
//! hosts, ports, methods, paths, `when` keys) are exported as they are. Model
//! operations (`models`, `versions`, `labels`, `signatures`, `apis`) are invisible to
//! Envoy — the gRPC model is in the body — so when any policy uses one, the whole
//! decision is delegated: a CUSTOM policy sends every request to the infermesh
//! ext_authz server, which evaluates all the mesh's policies. The native policies
//! stay as a coarse outer check that never denies what the mesh allows:
//!
//! * DENY with model operations: not exported natively (dropping the operation would
//!   deny more); ext_authz enforces it.
//! * ALLOW with model operations: exported without them (a superset of what it allows).
//! * CUSTOM / AUDIT with model operations: exported without them, with a note.
//!
//! So `ext_authz ∧ native = mesh decision`. Every exported policy carries the mesh
//! policy it stands for in the `infermesh.io/policies` annotation, and the CUSTOM
//! policy the DENY policies only ext_authz enforces, so that importing the export
//! (`istio_files:`) gives back the same decisions (see `infermesh_config::coarse`).

use infermesh_config::{
    Action, EscapedSlashes, Issuer, JwksSource, MeshConfig, MtlsMode, Operation,
    POLICIES_ANNOTATION, Policy, Rule, Source, uses_model_operations,
};
use serde_json::{Map, Value, json};

use crate::names::{APP_LABEL, object_name, workload_namespaces};
use crate::{Export, Options, object};

const SECURITY: &str = "security.istio.io/v1";

/// Whether some policy uses model operations, so that the export delegates to the
/// infermesh ext_authz provider (a CUSTOM policy per namespace).
pub(crate) fn delegates(config: &MeshConfig) -> bool {
    config.policies.iter().any(uses_model_operations)
}

pub(crate) fn export(config: &MeshConfig, options: &Options, export: &mut Export) {
    let delegate = delegates(config);
    if delegate {
        export.notes.push(mesh_config_note(config, options));
        if config.policies.iter().any(|p| p.action == Action::Custom) {
            export.notes.push(
                "The mesh has CUSTOM policies of its own: Istio allows one ext_authz provider \
                 per workload, so they conflict with the infermesh provider."
                    .into(),
            );
        }
    }
    for policy in config.policies.iter().filter(|p| uses_model_operations(p)) {
        let how = match policy.action {
            Action::Deny => "enforced by the infermesh ext_authz provider only",
            Action::Allow => "exported without them (coarser); ext_authz enforces them",
            Action::Custom | Action::Audit => "exported without them: it matches more requests",
        };
        export.notes.push(format!(
            "policy {}: uses model operations Istio cannot see; {how}.",
            policy.name
        ));
    }
    let has_allow = config.policies.iter().any(|p| p.action == Action::Allow);
    let delegated: Vec<&Policy> = config
        .policies
        .iter()
        .filter(|p| p.action == Action::Deny && uses_model_operations(p))
        .collect();
    for ns in workload_namespaces(config) {
        export.documents.extend(peer_authentications(config, &ns));
        if !config.issuers.is_empty() {
            let mut ra = object(
                SECURITY,
                "RequestAuthentication",
                "infermesh-issuers",
                Some(&ns),
            );
            let rules: Vec<Value> = config.issuers.iter().map(jwt_rule).collect();
            ra["spec"] = json!({"jwtRules": rules});
            export.documents.push(ra);
        }
        if delegate {
            let mut ap = object(
                SECURITY,
                "AuthorizationPolicy",
                "infermesh-ext-authz",
                Some(&ns),
            );
            ap["spec"] = json!({
                "action": "CUSTOM",
                "provider": {"name": options.ext_authz_provider},
                "rules": [{}],
            });
            annotate(&mut ap, &delegated);
            export.documents.push(ap);
        }
        if config.authz.default_deny && !has_allow {
            // Istio allows when no ALLOW policy exists; the mesh denies.
            let mut ap = object(
                SECURITY,
                "AuthorizationPolicy",
                "infermesh-allow-nothing",
                Some(&ns),
            );
            ap["spec"] = json!({});
            export.documents.push(ap);
        }
        for policy in &config.policies {
            if policy.action == Action::Deny && uses_model_operations(policy) {
                continue;
            }
            export.documents.push(authorization_policy(policy, &ns));
        }
    }
}

/// The body Envoy sends to ext_authz: the mesh's body limit, at most 4 MiB (Envoy
/// buffers it; larger requests get 413 from Envoy).
fn ext_authz_body_limit(config: &MeshConfig) -> u64 {
    config.limits.max_request_body_bytes.min(4 << 20)
}

/// What the user adds to Istio's meshConfig (install-time), as a comment.
fn mesh_config_note(config: &MeshConfig, options: &Options) -> String {
    let normalization = match config.authz.escaped_slashes {
        EscapedSlashes::DecodeAndMerge => "DECODE_AND_MERGE_SLASHES",
        EscapedSlashes::Reject | EscapedSlashes::Keep => "MERGE_SLASHES",
    };
    let snippet = json!({"meshConfig": {
        "pathNormalization": {"normalization": normalization},
        "extensionProviders": [{
            "name": options.ext_authz_provider,
            "envoyExtAuthzGrpc": {
                "service": options.ext_authz_host(),
                "port": options.ext_authz_port,
                // The whole gRPC body: a second ModelSpec after a cut would be merged
                // by protobuf, so a partial body is denied (fail closed).
                "includeRequestBodyInCheck": {
                    "maxRequestBytes": ext_authz_body_limit(config),
                    "allowPartialMessage": false,
                    "packAsBytes": true,
                },
            },
        }],
    }});
    let yaml = serde_saphyr::to_string(&snippet).unwrap_or_default();
    format!(
        "Model-aware policies are delegated to the ext_authz provider `{}`. Add to \
         Istio's install options (IstioOperator / Helm values):\n\n{yaml}",
        options.ext_authz_provider
    )
}

/// `PeerAuthentication`s of a namespace: a namespace-wide one with the mode most of
/// its workloads have, and one per workload whose mode differs (selecting its pods
/// by their `app` label).
fn peer_authentications(config: &MeshConfig, ns: &str) -> Vec<Value> {
    let modes: Vec<(&str, MtlsMode)> = config
        .workloads
        .values()
        .filter(|w| w.namespace == ns)
        .map(|w| (w.name.as_str(), w.mtls))
        .collect();
    let order = [MtlsMode::Strict, MtlsMode::Permissive, MtlsMode::Disable];
    let count = |m: &MtlsMode| modes.iter().filter(|(_, wm)| wm == m).count();
    // The most common mode; ties go to the strictest.
    let default = order
        .iter()
        .copied()
        .rev()
        .max_by_key(count)
        .unwrap_or(MtlsMode::Strict);
    let mut pa = object(SECURITY, "PeerAuthentication", "default", Some(ns));
    pa["spec"] = json!({"mtls": {"mode": mode_name(default)}});
    let mut out = vec![pa];
    for (name, mode) in modes.into_iter().filter(|(_, m)| *m != default) {
        let mut pa = object(SECURITY, "PeerAuthentication", name, Some(ns));
        pa["spec"] = json!({
            "selector": {"matchLabels": {APP_LABEL: name}},
            "mtls": {"mode": mode_name(mode)},
        });
        out.push(pa);
    }
    out
}

fn mode_name(mode: MtlsMode) -> &'static str {
    match mode {
        MtlsMode::Strict => "STRICT",
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Disable => "DISABLE",
    }
}

/// The `infermesh.io/policies` annotation: the mesh policies an exported policy
/// stands for, in mesh.yaml's form, so that importing the export gives them back.
fn annotate(object: &mut Value, policies: &[&Policy]) {
    let list: Vec<Value> = policies.iter().map(|p| mesh_form(p)).collect();
    let text = Value::Array(list).to_string();
    object["metadata"]["annotations"] = json!({POLICIES_ANNOTATION: text});
}

/// A policy as mesh.yaml writes it (snake_case, model operations included).
fn mesh_form(policy: &Policy) -> Value {
    let mut p = json!({"name": object_name(&policy.name), "action": action_name(policy.action)});
    if let Some(provider) = &policy.provider {
        p["provider"] = Value::from(provider.as_str());
    }
    let rules: Vec<Value> = policy
        .rules
        .iter()
        .map(|r| {
            let mut m = Map::new();
            let from: Vec<Value> = r.from.iter().map(mesh_source).collect();
            let to: Vec<Value> = r.to.iter().map(mesh_operation).collect();
            let when: Vec<Value> = r.when.iter().map(|c| condition(c, "not_values")).collect();
            for (key, list) in [("from", from), ("to", to), ("when", when)] {
                if !list.is_empty() {
                    m.insert(key.into(), Value::Array(list));
                }
            }
            Value::Object(m)
        })
        .collect();
    p["rules"] = Value::Array(rules);
    p
}

fn mesh_source(s: &Source) -> Value {
    let mut m = Map::new();
    put(&mut m, "principals", &s.principals);
    put(&mut m, "not_principals", &s.not_principals);
    put(&mut m, "request_principals", &s.request_principals);
    put(&mut m, "not_request_principals", &s.not_request_principals);
    put(&mut m, "namespaces", &s.namespaces);
    put(&mut m, "not_namespaces", &s.not_namespaces);
    put(&mut m, "ip_blocks", &s.ip_blocks);
    put(&mut m, "not_ip_blocks", &s.not_ip_blocks);
    Value::Object(m)
}

fn mesh_operation(op: &Operation) -> Value {
    let mut m = operation(op);
    for (key, values) in [
        ("not_hosts", &op.not_hosts),
        ("not_ports", &op.not_ports),
        ("not_methods", &op.not_methods),
        ("not_paths", &op.not_paths),
    ] {
        let camel = match key {
            "not_hosts" => "notHosts",
            "not_ports" => "notPorts",
            "not_methods" => "notMethods",
            _ => "notPaths",
        };
        m.remove(camel);
        put(&mut m, key, values);
    }
    put(&mut m, "models", &op.models);
    put(&mut m, "not_models", &op.not_models);
    put(&mut m, "versions", &op.versions);
    put(&mut m, "not_versions", &op.not_versions);
    put(&mut m, "labels", &op.labels);
    put(&mut m, "not_labels", &op.not_labels);
    put(&mut m, "signatures", &op.signatures);
    put(&mut m, "not_signatures", &op.not_signatures);
    put(&mut m, "apis", &op.apis);
    put(&mut m, "not_apis", &op.not_apis);
    Value::Object(m)
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    }
}

fn jwt_rule(issuer: &Issuer) -> Value {
    let mut rule = json!({"issuer": issuer.issuer});
    match &issuer.jwks {
        JwksSource::Discovery => {} // Istio's default: OIDC discovery from the issuer
        JwksSource::Uri(uri) => rule["jwksUri"] = Value::from(uri.as_str()),
        JwksSource::Inline(jwks) => rule["jwks"] = Value::from(jwks.as_str()),
    }
    if !issuer.audiences.is_empty() {
        rule["audiences"] = json!(issuer.audiences);
    }
    let default_headers = matches!(issuer.from_headers.as_slice(), [(h, p)] if h == "authorization" && p == "Bearer ");
    if !default_headers {
        let headers: Vec<Value> = issuer
            .from_headers
            .iter()
            .map(|(name, prefix)| json!({"name": name.as_str(), "prefix": prefix}))
            .collect();
        rule["fromHeaders"] = Value::Array(headers);
    }
    if !issuer.forward_claims.is_empty() {
        let out: Vec<Value> = issuer
            .forward_claims
            .iter()
            .map(|(claim, header)| json!({"header": header.as_str(), "claim": claim}))
            .collect();
        rule["outputClaimToHeaders"] = Value::Array(out);
    }
    rule
}

fn authorization_policy(policy: &Policy, ns: &str) -> Value {
    let mut ap = object(
        SECURITY,
        "AuthorizationPolicy",
        &object_name(&policy.name),
        Some(ns),
    );
    let mut spec = json!({"action": action_name(policy.action)});
    if let (Action::Custom, Some(provider)) = (policy.action, &policy.provider) {
        spec["provider"] = json!({"name": provider});
    }
    if !policy.rules.is_empty() {
        spec["rules"] = Value::Array(policy.rules.iter().map(rule).collect());
    }
    ap["spec"] = spec;
    annotate(&mut ap, &[policy]);
    ap
}

fn rule(r: &Rule) -> Value {
    let mut out = Map::new();
    if !r.from.is_empty() {
        let from: Vec<Value> = r
            .from
            .iter()
            .map(|s| json!({"source": source(s)}))
            .collect();
        out.insert("from".into(), Value::Array(from));
    }
    let ops: Vec<Map<String, Value>> = r.to.iter().map(operation).collect();
    // An operation left empty by dropping model fields matches every request, and so
    // does the whole `to` list then.
    if !ops.is_empty() && ops.iter().all(|o| !o.is_empty()) {
        let to: Vec<Value> = ops.into_iter().map(|o| json!({"operation": o})).collect();
        out.insert("to".into(), Value::Array(to));
    }
    if !r.when.is_empty() {
        let when: Vec<Value> = r.when.iter().map(|c| condition(c, "notValues")).collect();
        out.insert("when".into(), Value::Array(when));
    }
    Value::Object(out)
}

fn source(s: &Source) -> Value {
    let mut m = Map::new();
    put(&mut m, "principals", &s.principals);
    put(&mut m, "notPrincipals", &s.not_principals);
    put(&mut m, "requestPrincipals", &s.request_principals);
    put(&mut m, "notRequestPrincipals", &s.not_request_principals);
    put(&mut m, "namespaces", &s.namespaces);
    put(&mut m, "notNamespaces", &s.not_namespaces);
    put(&mut m, "ipBlocks", &s.ip_blocks);
    put(&mut m, "notIpBlocks", &s.not_ip_blocks);
    Value::Object(m)
}

/// The Istio part of an operation (model fields dropped).
fn operation(op: &Operation) -> Map<String, Value> {
    let mut m = Map::new();
    put(&mut m, "hosts", &op.hosts);
    put(&mut m, "notHosts", &op.not_hosts);
    put(&mut m, "ports", &op.ports);
    put(&mut m, "notPorts", &op.not_ports);
    put(&mut m, "methods", &op.methods);
    put(&mut m, "notMethods", &op.not_methods);
    put(&mut m, "paths", &op.paths);
    put(&mut m, "notPaths", &op.not_paths);
    m
}

/// A `when` condition; `not_key` is the negated values' key in the target's casing
/// (`notValues` in Istio's spec, `not_values` in mesh.yaml's annotation form).
fn condition(c: &infermesh_config::Condition, not_key: &str) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::from(c.key.as_str()));
    put(&mut m, "values", &c.values);
    put(&mut m, not_key, &c.not_values);
    Value::Object(m)
}

fn put(m: &mut Map<String, Value>, key: &str, values: &[String]) {
    if !values.is_empty() {
        m.insert(key.into(), json!(values));
    }
}
