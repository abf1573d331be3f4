//! Istio security: `PeerAuthentication` (STRICT mTLS), `RequestAuthentication` (the
//! mesh's issuers) and `AuthorizationPolicy`, in every namespace that holds a workload
//! (the mesh's policies apply to all its workloads; Istio scopes by namespace).
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
//! So `ext_authz ∧ native = mesh decision`.

use infermesh_config::{
    Action, EscapedSlashes, Issuer, JwksSource, MeshConfig, Operation, Policy, Rule, Source,
};
use serde_json::{Map, Value, json};

use crate::names::{object_name, workload_namespaces};
use crate::{Export, Options, object};

const SECURITY: &str = "security.istio.io/v1";

pub(crate) fn export(config: &MeshConfig, options: &Options, export: &mut Export) {
    let delegate = config.policies.iter().any(uses_model_operations);
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
    for ns in workload_namespaces(config) {
        let mut pa = object(SECURITY, "PeerAuthentication", "default", Some(&ns));
        pa["spec"] = json!({"mtls": {"mode": "STRICT"}});
        export.documents.push(pa);
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
                "service": options.ext_authz_service,
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

fn uses_model_operations(policy: &Policy) -> bool {
    policy
        .rules
        .iter()
        .any(|r| r.to.iter().any(has_model_fields))
}

fn has_model_fields(op: &Operation) -> bool {
    [
        &op.models,
        &op.not_models,
        &op.versions,
        &op.not_versions,
        &op.labels,
        &op.not_labels,
        &op.signatures,
        &op.not_signatures,
        &op.apis,
        &op.not_apis,
    ]
    .iter()
    .any(|f| !f.is_empty())
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
    let action = match policy.action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    };
    let mut spec = json!({"action": action});
    if let (Action::Custom, Some(provider)) = (policy.action, &policy.provider) {
        spec["provider"] = json!({"name": provider});
    }
    if !policy.rules.is_empty() {
        spec["rules"] = Value::Array(policy.rules.iter().map(rule).collect());
    }
    ap["spec"] = spec;
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
        let when: Vec<Value> = r
            .when
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("key".into(), Value::from(c.key.as_str()));
                put(&mut m, "values", &c.values);
                put(&mut m, "notValues", &c.not_values);
                Value::Object(m)
            })
            .collect();
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

fn put(m: &mut Map<String, Value>, key: &str, values: &[String]) {
    if !values.is_empty() {
        m.insert(key.into(), json!(values));
    }
}
