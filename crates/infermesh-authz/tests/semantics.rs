//! The edges of Istio's semantics: default deny, empty rules, `[{}]`, hosts, ports,
//! methods, paths, headers, `explain`, and Istio CRD input deciding like mesh.yaml.

mod common;

use std::path::Path;

use common::{WORKLOAD, Who, authorizer, config, decide};
use infermesh_authz::{Authorizer, AuthzRequest, Basis, CheckRequest, Outcome};
use infermesh_config::EscapedSlashes;
use serde_json::json;

const MODELS: &str = "
models:
  - {name: m, served_by: w, versions: [1]}
  - {name: other, served_by: w, versions: [1]}
";

fn mesh(extra: &str) -> Authorizer {
    authorizer(&format!("{WORKLOAD}{MODELS}{extra}"))
}

#[test]
fn default_deny_unless_the_file_says_otherwise() {
    let who = Who::default();
    let d = decide(&mesh(""), &who, "grpc Predict m");
    assert!(!d.allowed);
    assert_eq!(d.basis, Basis::Default);
    let open = mesh("authorization: {default_deny: false}");
    let d = decide(&open, &who, "grpc Predict m");
    assert!(d.allowed);
    // Istio: "If there are no ALLOW policies for the workload, allow the request" —
    // but once any ALLOW policy exists, the request must match one.
    let some = mesh(
        "authorization: {default_deny: false}
policies: [{name: only-m, action: ALLOW, rules: [{to: [{models: [m]}]}]}]",
    );
    assert!(decide(&some, &who, "grpc Predict m").allowed);
    let d = decide(&some, &who, "grpc Predict other");
    assert!(!d.allowed);
    assert_eq!(d.basis, Basis::NoAllowMatched);
    // A DENY alone does not count as an ALLOW policy.
    let deny_only = mesh(
        "authorization: {default_deny: false}
policies: [{name: no-m, action: DENY, rules: [{to: [{models: [m]}]}]}]",
    );
    assert!(!decide(&deny_only, &who, "grpc Predict m").allowed);
    assert!(decide(&deny_only, &who, "grpc Predict other").allowed);
}

#[test]
fn empty_rules_match_nothing_and_an_empty_rule_matches_everything() {
    let who = Who::default();
    // Istio: an ALLOW policy without rules allows nothing ("allow-nothing").
    let nothing = mesh(
        "authorization: {default_deny: false}
policies: [{name: allow-nothing, action: ALLOW}]",
    );
    assert!(!decide(&nothing, &who, "grpc Predict m").allowed);
    // A DENY policy without rules denies nothing.
    let deny_nothing = mesh(
        "policies:
  - {name: deny-nothing, action: DENY, rules: []}
  - {name: allow-all, action: ALLOW, rules: [{}]}",
    );
    let d = decide(&deny_nothing, &who, "grpc Predict m");
    assert!(d.allowed);
    assert_eq!(
        d.deciding.map(|x| x.policy.to_string()),
        Some("allow-all".into())
    );
}

#[test]
fn hosts_ports_methods_paths_and_headers() {
    let a = mesh(
        "policies:
  - name: p
    action: ALLOW
    rules:
      - to: [{hosts: ['*.example.com'], ports: ['8501'], methods: [GET], paths: ['/v1/models/m/*']}]
      - to: [{not_methods: [GET], models: [m]}]
        when: [{key: 'request.headers[x-team]', values: [ml, 'data-*'], not_values: [data-x]}]",
    );
    let mut who = Who {
        host: Some("API.Example.COM"),
        port: Some(8501),
        ..Who::default()
    };
    // Hosts compare case-insensitively (Istio fixed GHSA-7774-7vr3-cc8j).
    assert!(decide(&a, &who, "GET /v1/models/m/metadata").allowed);
    who.port = Some(8500);
    assert!(!decide(&a, &who, "GET /v1/models/m/metadata").allowed);
    who.port = Some(8501);
    // `paths` see the canonical path, whatever the spelling.
    assert!(decide(&a, &who, "GET /V1/MODELS/m/METADATA").allowed);
    assert!(!decide(&a, &who, "GET /v1/models/other/metadata").allowed);
    // Header names are case-insensitive; repeated headers join with `,`.
    let team = |v: &'static str| Who::default().header("x-team", v);
    assert!(decide(&a, &team("ml"), "grpc Predict m").allowed);
    assert!(decide(&a, &team("data-y"), "grpc Predict m").allowed);
    assert!(!decide(&a, &team("data-x"), "grpc Predict m").allowed);
    assert!(!decide(&a, &Who::default(), "grpc Predict m").allowed);
    let twice = Who::default().header("x-team", "ml").header("x-team", "x");
    assert!(
        !decide(&a, &twice, "grpc Predict m").allowed,
        "`ml,x` is not `ml`"
    );
}

#[test]
fn explain_names_the_deciding_rule_and_why_others_did_not_match() {
    let a = mesh(
        "policies:
  - name: deny-other
    action: DENY
    rules: [{to: [{models: [other]}]}]
  - name: ml-eng
    action: ALLOW
    rules:
      - from: [{request_principals: ['http://127.0.0.1:8900/*']}]
        to: [{models: [m]}]
        when: [{key: 'request.auth.claims[groups]', values: [ml-eng]}]
  - {name: empty, action: ALLOW}",
    );
    let claims = json!({"groups": ["sales"]});
    let check = CheckRequest::parse(
        "POST /v1/models/m/versions/1:predict",
        EscapedSlashes::Reject,
    )
    .expect("request line");
    let req = check.authz(AuthzRequest {
        request_principal: Some("http://127.0.0.1:8900/bob"),
        claims: Some(&claims),
        ..AuthzRequest::default()
    });
    let e = a.explain(&req);
    assert!(!e.decision.allowed);
    let text = e.to_string();
    assert!(text.starts_with("DENY\n"), "{text}");
    assert!(
        text.contains("ALLOW policies exist and none matched"),
        "{text}"
    );
    assert!(
        text.contains("deny-other (DENY): not matched: rule 0: `models` does not match \"m\""),
        "{text}"
    );
    assert!(text.contains("ml-eng (ALLOW): not matched: rule 0: `request.auth.claims[groups]` does not match `values`"), "{text}");
    assert!(
        text.contains("empty (ALLOW): no rules: matches nothing"),
        "{text}"
    );
    assert_eq!(e.decision.reasons.len(), 3);

    let claims = json!({"groups": ["ml-eng"]});
    let req = check.authz(AuthzRequest {
        request_principal: Some("http://127.0.0.1:8900/alice"),
        claims: Some(&claims),
        ..AuthzRequest::default()
    });
    let e = a.explain(&req);
    assert!(e.decision.allowed);
    assert!(
        e.to_string()
            .contains("decided by: ALLOW policy `ml-eng`, rule 0"),
        "{e}"
    );
    assert_eq!(
        e.policies[1].outcome,
        Outcome::Matched {
            rule: 0,
            uncertain: false
        }
    );
}

#[test]
fn istio_crds_decide_like_mesh_yaml() {
    let istio = "
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ml}
spec:
  jwtRules:
    - issuer: https://kc.example.com/realms/ml
      jwksUri: https://kc.example.com/realms/ml/protocol/openid-connect/certs
      outputClaimToHeaders: [{header: x-user, claim: sub}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: ml}
spec:
  action: ALLOW
  rules:
    - from:
        - source: {requestPrincipals: ['https://kc.example.com/realms/ml/*']}
      to:
        - operation: {methods: [POST], notPaths: ['/v1/models/other*']}
      when:
        - key: request.auth.claims[realm_access][roles]
          values: [model-admin]
";
    let (policies, issuers) = infermesh_config::import_istio(istio, Path::new("istio.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(issuers.len(), 1);
    assert_eq!(issuers[0].forward_claims[0].0, "sub");
    assert_eq!(policies[0].name, "ml/admins");
    let mut c = config(&format!("{WORKLOAD}{MODELS}"));
    c.policies = policies;
    let a = Authorizer::new(&c);
    let admin = Who::jwt(
        "https://kc.example.com/realms/ml/kate",
        json!({"realm_access": {"roles": ["model-admin"]}}),
    );
    assert!(decide(&a, &admin, "POST /v1/models/m:predict").allowed);
    assert!(
        decide(&a, &admin, "grpc Predict other").allowed,
        "gRPC path is not /v1/…"
    );
    assert!(!decide(&a, &admin, "POST /v1/models/other:predict").allowed);
    assert!(!decide(&a, &admin, "GET /v1/models/m").allowed);

    let bad = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x}
spec:
  selector: {matchLabels: {app: tf}}
  rules:
    - from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
";
    let e = infermesh_config::import_istio(bad, Path::new("istio.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported Istio fields"), "{e}");
    assert!(e.contains("document 1.spec.selector (line 6)"), "{e}");
    assert!(e.contains("remoteIpBlocks (line 8)"), "{e}");
    assert!(e.contains("apiVersion \"networking.istio.io/v1\""), "{e}");
}
