//! Round trip: intent → `export_istio` → Istio YAML → `istio_files:` import, next to a
//! mesh.yaml that keeps only what Istio has no place for (addresses, listeners, the
//! gateway, models' names and versions, authorization settings; `sticky`). The
//! imported mesh must route every model the same way (same compiled routes, and the
//! proxy's own version choice agrees on a corpus of requests), give every workload
//! the same mTLS mode, and make the same authorization decision (the authz engine) on
//! a corpus of REST and gRPC requests. The exported YAML validates against Istio's
//! CRD schemas. The whole stream is imported, the ext_authz server's Kubernetes
//! objects included (the import skips them).

mod common;

use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderValue};
use infermesh_authz::{Authorizer, AuthzRequest, CheckRequest};
use infermesh_config::{MeshConfig, Model, RetryPolicy};
use infermesh_export::{Options, export_istio};
use infermesh_proxy::{ModelRequest, Protocol, route};
use infermesh_tfserving::VersionChoice;
use serde_json::Value;

/// Two models on one workload (split + pin + mirror + retries + timeout, labels,
/// sticky), a model with retries off, workloads in two namespaces with different
/// mTLS modes, mesh-wide connect timeout and outlier detection, and ALLOW / DENY /
/// AUDIT policies over principals, request principals, paths, models, versions and
/// labels.
const RICH: &str = r#"
workloads:
  - {name: tfs, namespace: ml, service_account: tfs, listen: 0.0.0.0:15006, mtls: STRICT,
     upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500},
     endpoints: [tfs.ml.svc.cluster.local:15006]}
  - {name: tfs-b, namespace: ml, listen: 0.0.0.0:15008, mtls: STRICT,
     upstream: {rest: 127.0.0.1:9701, grpc: 127.0.0.1:9700},
     endpoints: [tfs-b.ml.svc.cluster.local:15008]}
  - {name: legacy, namespace: ml, listen: 0.0.0.0:15009, mtls: DISABLE,
     upstream: {rest: 127.0.0.1:9801, grpc: 127.0.0.1:9800},
     endpoints: [legacy.ml.svc.cluster.local:15009]}
  - {name: other, namespace: team-b, listen: 0.0.0.0:15007,
     upstream: {rest: 127.0.0.1:9601, grpc: 127.0.0.1:9600},
     endpoints: [other.team-b.svc.cluster.local:15007]}
models:
  - name: half_plus_two
    served_by: tfs
    versions: [{version: 1, label: stable}, {version: 2, label: canary}, 3]
    route:
      split: {stable: 80, canary: 15, 3: 5}
      pin_header: x-model-version
      mirror: {to: 3, percent: 2.5}
      timeout: 1500ms
      retries: {attempts: 3, on: [connect-failure, unavailable], idempotent: true}
  - name: resnet.v2
    served_by: tfs
    versions: [{version: 7, label: prod}, 8]
    route:
      split: {prod: 50, 8: 50}
      sticky: {header: x-user}
      pin_header: x-resnet-version
      timeout: 250ms
      retries: {attempts: 1, on: [unavailable], idempotent: true}
  - {name: bert, served_by: other, versions: [1], route: {retries: {attempts: 0}}}
  - {name: gpt, served_by: tfs-b, versions: [4, 5], route: {mirror: {to: 4, percent: 100}}}
gateway: {listen: [0.0.0.0:8500, 0.0.0.0:8501], admin: 0.0.0.0:15020}
limits: {connect_timeout: 250ms}
outlier_detection: {consecutive_failures: 3, base_ejection: 10s, max_ejection_percent: 20}
issuers:
  - issuer: https://idp.example.com
    jwks_uri: https://idp.example.com/keys
    audiences: [infermesh]
policies:
  - name: no-canary-for-interns
    action: DENY
    rules:
      - to: [{labels: [canary]}, {versions: ["2"]}]
        when: [{key: "request.auth.claims[groups]", values: [interns]}]
  - name: no-bert-from-team-c
    action: DENY
    rules:
      - from: [{namespaces: [team-c]}]
        to: [{paths: ["/v1/models/bert*"]}]
  - name: admins-anything
    action: ALLOW
    rules:
      - from: [{principals: ["cluster.local/ns/ops/sa/admin"], not_ip_blocks: [10.0.0.0/8]}]
        to: [{methods: [GET, POST], not_paths: ["/v1/models/gpt*"]}]
  - name: callers-predict
    action: ALLOW
    rules:
      - from: [{request_principals: ["https://idp.example.com/*"]}]
        to: [{models: [half_plus_two, resnet.v2], apis: [predict]}, {paths: ["/v1/models/bert*"]}]
  - name: gpt-v5-for-ml-eng
    action: ALLOW
    rules:
      - to: [{models: [gpt], versions: ["5"]}]
        when: [{key: "request.auth.claims[groups]", values: [ml-eng]}]
  - name: audit-canary
    action: AUDIT
    rules:
      - to: [{labels: [canary]}]
"#;

fn examples() -> Vec<(String, String)> {
    ["quickstart", "kubernetes"]
        .iter()
        .map(|name| {
            let path = common::repo().join(format!("examples/{name}/mesh.yaml"));
            (name.to_string(), std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

#[test]
fn export_then_import_keeps_routes_modes_and_decisions() {
    let mut cases = examples();
    cases.push(("rich".into(), RICH.into()));
    for (name, text) in cases {
        let dir = scratch(&name);
        let original = load(&dir, "mesh.yaml", &text);
        let export = export_istio(&original, &Options::default());
        if let Some(crds) = common::crds() {
            for doc in common::istio_documents(&export.documents) {
                let errors = common::errors(&crds, doc);
                assert!(errors.is_empty(), "{name}: {errors:#?}\n{doc:#}");
            }
        }
        let delegates = export
            .documents
            .iter()
            .any(|d| d["spec"]["action"] == "CUSTOM");
        let server = export.documents.iter().any(|d| d["kind"] == "Deployment");
        assert_eq!(delegates, server, "{name}: ext_authz server iff delegated");
        std::fs::write(dir.join("istio.yaml"), export.to_yaml().unwrap()).unwrap();
        let reduced = reduce(&text);
        let imported = load(&dir, "reduced.yaml", &reduced);
        assert_same(&name, &original, &imported);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "infermesh-round-trip-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(dir: &Path, file: &str, text: &str) -> MeshConfig {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    infermesh_config::load(&path).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"))
}

/// The mesh.yaml without what the Istio export carries: issuers, policies, routes
/// (but `sticky`), workloads' mTLS modes, the connect timeout and outlier detection.
fn reduce(text: &str) -> String {
    let mut mesh: Value = serde_saphyr::from_str(text).unwrap();
    let top = mesh.as_object_mut().unwrap();
    for key in ["issuers", "policies", "outlier_detection"] {
        top.remove(key);
    }
    if let Some(limits) = top.get_mut("limits").and_then(Value::as_object_mut) {
        limits.remove("connect_timeout");
    }
    for w in top["workloads"].as_array_mut().unwrap() {
        w.as_object_mut().unwrap().remove("mtls");
    }
    for m in top["models"].as_array_mut().unwrap() {
        let m = m.as_object_mut().unwrap();
        let sticky = m.get("route").and_then(|r| r.get("sticky")).cloned();
        m.remove("route");
        if let Some(sticky) = sticky {
            m.insert("route".into(), serde_json::json!({"sticky": sticky}));
        }
    }
    top.insert("istio_files".into(), serde_json::json!(["istio.yaml"]));
    serde_saphyr::to_string(&mesh).unwrap()
}

fn assert_same(case: &str, a: &MeshConfig, b: &MeshConfig) {
    // (a) The compiled routes, model by model.
    assert_eq!(
        a.models.keys().collect::<Vec<_>>(),
        b.models.keys().collect::<Vec<_>>()
    );
    for (name, ma) in &a.models {
        let mb = &b.models[name];
        let (ra, rb) = (&ma.route, &mb.route);
        let what = format!("{case}: model {name}");
        assert_eq!(ma.versions, mb.versions, "{what}");
        assert_eq!(ma.labels, mb.labels, "{what}");
        assert_eq!(ra.split, rb.split, "{what}: split");
        assert_eq!(ra.pin_header, rb.pin_header, "{what}: pin header");
        assert_eq!(ra.sticky_header, rb.sticky_header, "{what}: sticky");
        assert_eq!(ra.mirror, rb.mirror, "{what}: mirror");
        assert_eq!(ra.timeout, rb.timeout, "{what}: timeout");
        assert_eq!(
            effective(&ra.retries),
            effective(&rb.retries),
            "{what}: retries"
        );
        routing_corpus(&what, ma, mb);
    }
    // mTLS modes, mesh-wide settings and issuers.
    for (name, wa) in &a.workloads {
        assert_eq!(wa.mtls, b.workloads[name].mtls, "{case}: mtls of {name}");
    }
    if !a.models.is_empty() {
        assert_eq!(a.limits, b.limits, "{case}: limits");
        assert_eq!(a.outlier_detection, b.outlier_detection, "{case}: outlier");
    }
    assert_eq!(a.issuers, b.issuers, "{case}: issuers");
    // (b) Authorization decisions on the corpus.
    decision_corpus(case, a, b);
}

/// What a retry policy does: conditions only matter with attempts; UNAVAILABLE is
/// only retried for idempotent routes.
fn effective(p: &RetryPolicy) -> (u32, bool, bool, u64, u32) {
    let unavailable = p.on_unavailable && p.idempotent;
    let budget = (p.budget_ratio * 1000.0).round() as u64;
    if p.attempts == 0 || !(p.on_connect_failure || unavailable) {
        return (0, false, false, budget, p.min_retries_per_second);
    }
    (
        p.attempts,
        p.on_connect_failure,
        unavailable,
        budget,
        p.min_retries_per_second,
    )
}

/// The proxy's version choice (and mirror) for requests naming no version, a
/// version, a label, with pin and sticky headers, REST and gRPC, same random seed.
fn routing_corpus(what: &str, a: &Model, b: &Model) {
    let mut choices = vec![VersionChoice::Latest];
    choices.extend(a.versions.iter().map(|v| VersionChoice::Version(*v)));
    choices.extend(a.labels.keys().map(|l| VersionChoice::Label(l.clone())));
    choices.push(VersionChoice::Label("nope".into()));
    let mut header_sets = vec![HeaderMap::new()];
    let mut values: Vec<String> = a.versions.iter().map(i64::to_string).collect();
    values.extend(a.labels.keys().cloned());
    values.push("99".into());
    for name in [&a.route.pin_header, &a.route.sticky_header]
        .into_iter()
        .flatten()
    {
        for v in &values {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_str(v).unwrap());
            header_sets.push(h);
        }
    }
    for protocol in [Protocol::Rest, Protocol::Grpc] {
        for version in &choices {
            let request = ModelRequest {
                protocol,
                model: a.name.clone(),
                version: version.clone(),
                api: infermesh_proxy::Api::Predict,
                signature: None,
            };
            for headers in &header_sets {
                for seed in 0..50 {
                    let da =
                        route::decide(a, &request, headers, &mut fastrand::Rng::with_seed(seed));
                    let db =
                        route::decide(b, &request, headers, &mut fastrand::Rng::with_seed(seed));
                    assert_eq!(
                        format!("{da:?}"),
                        format!("{db:?}"),
                        "{what}: {request:?} {headers:?}"
                    );
                }
            }
        }
    }
}

/// Peer principal, request principal, JWT claims, source IP.
type Caller<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a Value>, &'a str);

/// Who calls, and the requests they send.
fn decision_corpus(case: &str, a: &MeshConfig, b: &MeshConfig) {
    let (za, zb) = (Authorizer::new(a), Authorizer::new(b));
    let mut lines: Vec<String> = vec![
        "GET /healthz".into(),
        "POST /v1/models/unknown:predict".into(),
    ];
    for m in a.models.values() {
        let n = &m.name;
        lines.push(format!("POST /v1/models/{n}:predict"));
        lines.push(format!("POST /v1/models/{n}:classify"));
        lines.push(format!("GET /v1/models/{n}/metadata"));
        lines.push(format!("GET /v1/models/{n}"));
        lines.push(format!("grpc Predict {n}"));
        lines.push(format!("grpc GetModelMetadata {n}"));
        for v in &m.versions {
            lines.push(format!("POST /v1/models/{n}/versions/{v}:predict"));
            lines.push(format!("grpc Predict {n}/versions/{v}"));
        }
        for l in m.labels.keys() {
            lines.push(format!("POST /v1/models/{n}/labels/{l}:predict"));
            lines.push(format!("grpc Predict {n}/labels/{l}"));
        }
    }
    let claims = |groups: &[&str]| serde_json::json!({"groups": groups});
    let (interns, ml_eng, none) = (claims(&["interns"]), claims(&["ml-eng"]), claims(&[]));
    let callers: Vec<Caller<'_>> = vec![
        (None, None, None, "192.168.1.1"),
        (
            Some("cluster.local/ns/infermesh/sa/gateway"),
            None,
            None,
            "192.168.1.1",
        ),
        (
            Some("cluster.local/ns/ops/sa/admin"),
            None,
            None,
            "192.168.1.1",
        ),
        (
            Some("cluster.local/ns/ops/sa/admin"),
            None,
            None,
            "10.1.2.3",
        ),
        (
            Some("cluster.local/ns/team-c/sa/x"),
            None,
            None,
            "192.168.1.1",
        ),
        (
            None,
            Some("https://idp.example.com/alice"),
            Some(&interns),
            "192.168.1.1",
        ),
        (
            None,
            Some("https://idp.example.com/bob"),
            Some(&ml_eng),
            "192.168.1.1",
        ),
        (
            None,
            Some("http://127.0.0.1:8900/ml-pipeline"),
            Some(&ml_eng),
            "192.168.1.1",
        ),
        (
            None,
            Some("https://issuer.example.com/carol"),
            Some(&ml_eng),
            "192.168.1.1",
        ),
        (
            None,
            Some("https://other.example.com/eve"),
            Some(&none),
            "192.168.1.1",
        ),
    ];
    let (mut allowed, mut denied) = (0, 0);
    for line in &lines {
        let check = CheckRequest::parse(line, a.authz.escaped_slashes)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        for (peer, principal, claims, ip) in &callers {
            for port in [8500u16, 8501] {
                let base = AuthzRequest {
                    peer_principal: *peer,
                    peer_namespace: None,
                    request_principal: *principal,
                    claims: *claims,
                    audiences: &[],
                    source_ip: ip.parse().ok(),
                    host: Some("gateway.example.com"),
                    port: Some(port),
                    method: "",
                    path: "",
                    headers: None,
                    model: None,
                };
                let request = check.authz(base);
                let (da, db) = (za.authorize(&request), zb.authorize(&request));
                let who = format!("{case}: {line} from {peer:?} {principal:?} {ip}:{port}");
                assert_eq!(da.allowed, db.allowed, "{who}: {da:?} vs {db:?}");
                assert_eq!(da.audit, db.audit, "{who}: audit");
                if da.allowed {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
    }
    if !a.policies.is_empty() {
        assert!(
            allowed > 0 && denied > 0,
            "{case}: {allowed} allowed, {denied} denied"
        );
    }
}
