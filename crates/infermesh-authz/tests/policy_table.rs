//! The policy table: (caller, model request) → decision, as Istio's documented
//! AuthorizationPolicy semantics give it
//! (<https://istio.io/latest/docs/reference/config/security/authorization-policy/>,
//! conditions: <https://istio.io/latest/docs/reference/config/security/conditions/>).
//! Every case runs twice, as gRPC and as the equivalent REST request, and must decide
//! the same way — including which policy and rule decided.

mod common;

use common::{WORKLOAD, Who, authorizer, decide};
use serde_json::json;

const MESH: &str = "
models:
  - {name: half_plus_two, served_by: w,
     versions: [{version: 1, label: stable}, {version: 2, label: canary}]}
  - {name: secret, served_by: w, versions: [1]}
  - {name: open, served_by: w, versions: [1]}
  - {name: fraud, served_by: w, versions: [1, 2]}
policies:
  - name: deny-canary-to-interns
    action: DENY
    rules:
      - to: [{models: [half_plus_two], labels: [canary]}]
        when: [{key: 'request.auth.claims[groups]', values: [interns]}]
  - name: deny-secret-outside-ml
    action: DENY
    rules:
      - from: [{not_namespaces: [ml]}]
        to: [{models: [secret]}]
  - name: ml-eng-predict
    action: ALLOW
    rules:
      - from: [{request_principals: ['http://127.0.0.1:8900/*']}]
        to: [{models: [half_plus_two], apis: [predict, metadata, status]}]
        when: [{key: 'request.auth.claims[groups]', values: [ml-eng]}]
  - name: keycloak-admins
    action: ALLOW
    rules:
      - from: [{request_principals: ['https://kc.example.com/realms/ml/*']}]
        when: [{key: 'request.auth.claims[realm_access][roles]', values: [model-admin]}]
  - name: cognito-fraud
    action: ALLOW
    rules:
      - to: [{models: [fraud], versions: ['2']}]
        when: [{key: 'request.auth.claims[cognito:groups]', values: [fraud-analysts]}]
  - name: mesh-peers
    action: ALLOW
    rules:
      - from: [{principals: ['cluster.local/ns/ml/sa/*']}]
        to: [{models: [open, secret]}]
  - name: audit-secret
    action: AUDIT
    rules: [{to: [{models: [secret]}]}]
  - name: ext
    action: CUSTOM
    provider: opa
    rules:
      - to: [{models: [fraud]}]
        when: [{key: 'request.headers[x-ext]', values: ['*']}]
  - name: block-net
    action: DENY
    rules: [{from: [{ip_blocks: [203.0.113.0/24]}]}]
  - name: no-export
    action: DENY
    rules: [{to: [{models: [open], signatures: [export]}]}]
  - name: reporting-audience
    action: ALLOW
    rules:
      - to: [{models: [open]}]
        when: [{key: request.auth.audiences, values: [reporting]}]
";

fn alice() -> Who {
    Who::jwt("http://127.0.0.1:8900/alice", json!({"groups": ["ml-eng"]}))
}
fn intern() -> Who {
    Who::jwt(
        "http://127.0.0.1:8900/ivan",
        json!({"groups": ["ml-eng", "interns"]}),
    )
}
fn bob() -> Who {
    Who::jwt("http://127.0.0.1:8900/bob", json!({"groups": ["sales"]}))
}
fn keycloak(roles: serde_json::Value) -> Who {
    Who::jwt(
        "https://kc.example.com/realms/ml/kate",
        json!({"realm_access": {"roles": roles}}),
    )
}
fn cognito() -> Who {
    Who::jwt(
        "https://cognito-idp.eu-west-1.amazonaws.com/pool/carl",
        json!({"cognito:groups": ["fraud-analysts"], "cognito:username": "carl"}),
    )
}
fn anon() -> Who {
    Who::default()
}
fn ml_peer() -> Who {
    Who::peer("cluster.local/ns/ml/sa/client")
}
fn web_peer() -> Who {
    Who::peer("cluster.local/ns/web/sa/frontend")
}

/// (what it shows, caller, gRPC form, allowed, deciding policy and rule).
type Case = (
    &'static str,
    Who,
    &'static str,
    bool,
    Option<(&'static str, usize)>,
);

fn cases() -> Vec<Case> {
    let d = |p, r| Some((p, r));
    vec![
        // "If any of the ALLOW policies match the request, allow the request."
        (
            "allow: principal, model, api and claim all match",
            alice(),
            "Predict half_plus_two",
            true,
            d("ml-eng-predict", 0),
        ),
        (
            "allow: explicit version",
            alice(),
            "Predict half_plus_two/versions/1",
            true,
            d("ml-eng-predict", 0),
        ),
        (
            "allow: metadata is listed",
            alice(),
            "GetModelMetadata half_plus_two",
            true,
            d("ml-eng-predict", 0),
        ),
        (
            "allow: status is listed",
            alice(),
            "GetModelStatus half_plus_two/labels/stable",
            true,
            d("ml-eng-predict", 0),
        ),
        // Rule semantics: `to` must match; values within a field are ORed.
        (
            "deny: classify is not in apis",
            alice(),
            "Classify half_plus_two",
            false,
            None,
        ),
        (
            "deny: regress is not in apis",
            alice(),
            "Regress half_plus_two",
            false,
            None,
        ),
        // "Deny the request." (ALLOW policies exist, none matched)
        (
            "deny: when claim value not present",
            bob(),
            "Predict half_plus_two",
            false,
            None,
        ),
        (
            "deny: no JWT, request_principals needs one",
            anon(),
            "Predict half_plus_two",
            false,
            None,
        ),
        (
            "deny: right claims, other issuer (prefix match on iss/sub)",
            Who::jwt(
                "https://evil.example.com/alice",
                json!({"groups": ["ml-eng"]}),
            ),
            "Predict half_plus_two",
            false,
            None,
        ),
        (
            "deny: claim values are case-sensitive",
            Who::jwt("http://127.0.0.1:8900/al", json!({"groups": ["ML-ENG"]})),
            "Predict half_plus_two",
            false,
            None,
        ),
        (
            "allow: string claim matches like a one-item list",
            Who::jwt("http://127.0.0.1:8900/al", json!({"groups": "ml-eng"})),
            "Predict half_plus_two",
            true,
            d("ml-eng-predict", 0),
        ),
        // "If there are any DENY policies that match the request, deny the request."
        (
            "deny beats allow: canary label for interns",
            intern(),
            "Predict half_plus_two/labels/canary",
            false,
            d("deny-canary-to-interns", 0),
        ),
        (
            "deny: version 2 carries the canary label",
            intern(),
            "Predict half_plus_two/versions/2",
            false,
            d("deny-canary-to-interns", 0),
        ),
        (
            "deny: status of the canary too",
            intern(),
            "GetModelStatus half_plus_two/labels/canary",
            false,
            d("deny-canary-to-interns", 0),
        ),
        (
            "allow: interns on stable by version",
            intern(),
            "Predict half_plus_two/versions/1",
            true,
            d("ml-eng-predict", 0),
        ),
        (
            "allow: interns on stable by label",
            intern(),
            "Predict half_plus_two/labels/stable",
            true,
            d("ml-eng-predict", 0),
        ),
        (
            "deny: unresolved version fails closed for a DENY on labels",
            intern(),
            "Predict half_plus_two",
            false,
            d("deny-canary-to-interns", 0),
        ),
        (
            "allow: unresolved version is fine when no rule tests it",
            alice(),
            "Predict half_plus_two",
            true,
            d("ml-eng-predict", 0),
        ),
        // `not_namespaces` holds for a request without a peer namespace.
        (
            "deny: not_namespaces matches callers without mTLS",
            keycloak(json!(["model-admin"])),
            "Predict secret",
            false,
            d("deny-secret-outside-ml", 0),
        ),
        (
            "deny: other namespace",
            web_peer(),
            "Predict secret",
            false,
            d("deny-secret-outside-ml", 0),
        ),
        (
            "deny: namespaces match exactly, not by prefix",
            Who::peer("cluster.local/ns/mlx/sa/y"),
            "Predict secret",
            false,
            d("deny-secret-outside-ml", 0),
        ),
        (
            "allow: peer principal prefix, namespace from the principal",
            ml_peer(),
            "Predict secret",
            true,
            d("mesh-peers", 0),
        ),
        // Nested claims: request.auth.claims[realm_access][roles] (Keycloak).
        (
            "allow: nested Keycloak role, no `to` = any model",
            keycloak(json!(["model-admin"])),
            "Predict fraud/versions/1",
            true,
            d("keycloak-admins", 0),
        ),
        (
            "allow: nested claim as a string",
            keycloak(json!("model-admin")),
            "Classify fraud/versions/1",
            true,
            d("keycloak-admins", 0),
        ),
        (
            "deny: nested claim without the role",
            keycloak(json!(["viewer"])),
            "Predict fraud/versions/1",
            false,
            None,
        ),
        (
            "deny: non-string claims never match",
            keycloak(json!(7)),
            "Predict fraud/versions/1",
            false,
            None,
        ),
        (
            "deny: missing nested object",
            Who::jwt(
                "https://kc.example.com/realms/ml/kate",
                json!({"roles": ["model-admin"]}),
            ),
            "Predict fraud/versions/1",
            false,
            None,
        ),
        // A claim name with a colon (Cognito).
        (
            "allow: cognito:groups on fraud v2",
            cognito(),
            "Predict fraud/versions/2",
            true,
            d("cognito-fraud", 0),
        ),
        (
            "deny: cognito:groups on fraud v1",
            cognito(),
            "Predict fraud/versions/1",
            false,
            None,
        ),
        (
            "deny: ALLOW on versions fails closed on an unresolved version",
            cognito(),
            "Predict fraud",
            false,
            None,
        ),
        (
            "deny: unknown label leaves the version unknown",
            cognito(),
            "Predict fraud/labels/beta",
            false,
            None,
        ),
        // CUSTOM is evaluated first; without a provider it fails closed.
        (
            "deny: CUSTOM match denies (no ext_authz yet)",
            cognito().header("x-ext", "1"),
            "Predict fraud/versions/2",
            false,
            d("ext", 0),
        ),
        (
            "deny: CUSTOM before DENY and ALLOW",
            keycloak(json!(["model-admin"])).header("x-ext", "yes"),
            "Predict fraud/versions/1",
            false,
            d("ext", 0),
        ),
        // Peers and IP blocks.
        (
            "allow: ml peer on open",
            ml_peer(),
            "Predict open",
            true,
            d("mesh-peers", 0),
        ),
        (
            "deny: web peer on open",
            web_peer(),
            "Predict open",
            false,
            None,
        ),
        (
            "deny: ip_blocks DENY for any model",
            ml_peer().ip("203.0.113.7"),
            "Predict open",
            false,
            d("block-net", 0),
        ),
        (
            "allow: outside the blocked network",
            ml_peer().ip("203.0.114.7"),
            "Predict open",
            true,
            d("mesh-peers", 0),
        ),
        (
            "deny: ip block also catches IPv4-mapped IPv6",
            ml_peer().ip("::ffff:203.0.113.9"),
            "Predict open",
            false,
            d("block-net", 0),
        ),
        // Signatures.
        (
            "deny: named signature",
            ml_peer(),
            "Predict open signature=export",
            false,
            d("no-export", 0),
        ),
        (
            "allow: default signature",
            ml_peer(),
            "Predict open",
            true,
            d("mesh-peers", 0),
        ),
        (
            "allow: other signature",
            ml_peer(),
            "Predict open signature=serving_default",
            true,
            d("mesh-peers", 0),
        ),
        // request.auth.audiences
        (
            "allow: audience condition",
            bob().aud("reporting"),
            "Predict open",
            true,
            d("reporting-audience", 0),
        ),
        (
            "deny: other audience",
            bob().aud("billing"),
            "Predict open",
            false,
            None,
        ),
        (
            "deny: unknown model, nobody allows it",
            alice(),
            "Predict nope",
            false,
            None,
        ),
        (
            "allow: metadata of open for ml peer",
            ml_peer(),
            "GetModelMetadata open",
            true,
            d("mesh-peers", 0),
        ),
    ]
}

/// The REST request line of a gRPC case (`None` for MultiInference).
fn rest_form(grpc: &str) -> Option<String> {
    let mut words = grpc.split_whitespace();
    let (method, model) = (words.next()?, words.next()?);
    let signature = words.next().unwrap_or("signature=");
    let (verb, suffix) = match method {
        "Predict" => ("POST", ":predict"),
        "Classify" => ("POST", ":classify"),
        "Regress" => ("POST", ":regress"),
        "GetModelMetadata" => ("GET", "/metadata"),
        "GetModelStatus" => ("GET", ""),
        _ => return None,
    };
    Some(format!("{verb} /v1/models/{model}{suffix} {signature}"))
}

#[test]
fn decisions_follow_istio_semantics_for_grpc_and_rest() {
    let a = authorizer(&format!("{WORKLOAD}{MESH}"));
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (what, who, grpc, allowed, by) in &cases {
        let rest = rest_form(grpc).expect("every case has a REST form");
        for line in [format!("grpc {grpc}"), rest] {
            let d = decide(&a, who, &line);
            let got_by = d.deciding.as_ref().map(|x| (x.policy.to_string(), x.rule));
            let want_by = by.map(|(p, r)| (p.to_owned(), r));
            if d.allowed != *allowed || got_by != want_by {
                failures.push(format!(
                    "{what}: `{line}` → allowed={} by {got_by:?}, want allowed={allowed} by {want_by:?}",
                    d.allowed
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn audit_marks_without_deciding() {
    let a = authorizer(&format!("{WORKLOAD}{MESH}"));
    let d = decide(&a, &ml_peer(), "grpc Predict secret");
    assert!(d.allowed && d.audit);
    let d = decide(&a, &web_peer(), "POST /v1/models/secret:predict");
    assert!(!d.allowed && d.audit);
    let d = decide(&a, &ml_peer(), "grpc Predict open");
    assert!(d.allowed && !d.audit);
    assert!(d.reasons.is_empty(), "authorize() never fills reasons");
}
