//! Good mesh files compile to exactly the expected structures; defaults apply where
//! fields are left out; the shipped quickstart loads.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use infermesh_config::{
    Address, CaSource, Gateway, IdentityConfig, Limits, MeshConfig, Mirror, MtlsMode,
    OutlierDetection, RetryPolicy, TlsVersion, parse,
};

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ok(text: &str) -> MeshConfig {
    match parse(text, Path::new("/etc/infermesh/mesh.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

const MINIMAL: &str = "
workloads:
  - {name: w, listen: 127.0.0.1:15006, upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - {name: m, served_by: w, versions: [3, 1]}
";

#[test]
fn quickstart_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/mesh.yaml");
    let c = infermesh_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.trust_domain, "cluster.local");
    assert_eq!(
        c.gateway,
        Gateway {
            listen: vec![sock("127.0.0.1:8500"), sock("127.0.0.1:8501")],
            admin: Some(sock("127.0.0.1:15020")),
            tls: None,
        }
    );
    let w = &c.workloads["tfserving-a"];
    assert_eq!(
        (w.namespace.as_str(), w.service_account.as_str()),
        ("ml", "tfserving")
    );
    assert_eq!(w.listen, sock("127.0.0.1:15006"));
    assert_eq!(w.upstream.rest, Address::Socket(sock("127.0.0.1:9501")));
    assert_eq!(w.upstream.grpc, Address::Socket(sock("127.0.0.1:9500")));
    assert_eq!(w.endpoints, vec![Address::Socket(sock("127.0.0.1:15006"))]);
    assert_eq!(w.mtls, MtlsMode::Strict);
    assert_eq!(c.identity, Some(IdentityConfig::default()));
    let models_config = w
        .embedded_model_server
        .as_ref()
        .expect("embedded model server");
    assert!(models_config.is_absolute(), "{}", models_config.display());
    assert!(models_config.is_file(), "{}", models_config.display());

    let m = &c.models["half_plus_two"];
    assert_eq!(m.served_by, "tfserving-a");
    assert_eq!(
        c.workload_of(m).map(|w| w.name.as_str()),
        Some("tfserving-a")
    );
    assert_eq!(m.versions, vec![1, 2]);
    assert_eq!(m.labels.get("stable"), Some(&1));
    assert_eq!(m.labels.get("canary"), Some(&2));
    assert_eq!(m.route.split, vec![(1, 90), (2, 10)]);
    assert_eq!(
        m.route.pin_header.as_ref().map(|h| h.as_str()),
        Some("x-model-version")
    );
    assert_eq!(m.route.sticky_header, None);
    assert_eq!(m.route.mirror, None);
    assert_eq!(m.route.timeout, Duration::from_secs(2));
    assert_eq!(
        m.route.retries,
        RetryPolicy {
            attempts: 2,
            on_connect_failure: true,
            on_unavailable: false,
            idempotent: false,
            budget_ratio: 0.2,
            min_retries_per_second: 10,
        }
    );
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.outlier_detection, OutlierDetection::default());
}

#[test]
fn defaults_fill_what_is_left_out() {
    let c = ok(MINIMAL);
    assert_eq!(c.trust_domain, "cluster.local");
    assert_eq!(
        c.gateway,
        Gateway {
            listen: vec![],
            admin: None,
            tls: None,
        }
    );
    assert_eq!(c.dns_refresh, Duration::from_secs(5));
    assert_eq!(
        c.limits,
        Limits {
            max_request_body_bytes: 67_108_864,
            max_header_bytes: 65_536,
            max_concurrent_streams: 1024,
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
        }
    );
    assert_eq!(
        c.outlier_detection,
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    );
    let w = &c.workloads["w"];
    assert_eq!(
        (w.namespace.as_str(), w.service_account.as_str()),
        ("default", "default")
    );
    assert_eq!(w.embedded_model_server, None);
    let m = &c.models["m"];
    assert_eq!(m.versions, vec![1, 3]);
    assert!(m.labels.is_empty());
    assert_eq!(m.route.split, vec![(3, 100)], "highest version takes all");
    assert_eq!(m.route.timeout, Duration::from_secs(30));
    assert_eq!(m.route.retries, RetryPolicy::default());
    assert_eq!(
        (m.route.pin_header.clone(), m.route.mirror.clone()),
        (None, None)
    );
}

#[test]
fn every_field_compiles() {
    let c = ok("
trust_domain: prod.example.com
workloads:
  - name: tfserving-a
    namespace: ml
    service_account: tf.serving
    listen: '[::1]:15006'
    upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}
    endpoints: [tfserving-a.ml.svc.cluster.local:15006, '[::1]:15006']
    model_server: {model_config_file: models/models.config}
  - name: remote
    listen: 127.0.0.1:15007
    upstream: {rest: model-server:9501, grpc: model-server.:9500}
models:
  - name: half_plus_two
    served_by: tfserving-a
    versions: [{version: 1, label: stable}, {version: 2, label: canary}, 7]
    route:
      split: {stable: 80, canary: 20, 7: 0}
      pin_header: X-Model-Version
      sticky: {header: x-user}
      mirror: {to: 7, percent: 2.5}
      timeout: 1m 30s
      retries: {attempts: 3, on: [unavailable], idempotent: true, budget_percent: 5,
                min_retries_per_second: 0}
gateway: {listen: [0.0.0.0:8500], admin: 127.0.0.1:15020}
limits: {max_request_body_bytes: 1MiB, max_header_bytes: 8KiB, max_concurrent_streams: 8,
         max_connections: 64, connect_timeout: 250ms, drain_timeout: 1s}
outlier_detection: {consecutive_failures: 3, base_ejection: 10s, max_ejection_percent: 0}
dns_refresh: 30s
");
    assert_eq!(c.trust_domain, "prod.example.com");
    let w = &c.workloads["tfserving-a"];
    assert_eq!(w.service_account, "tf.serving");
    assert_eq!(w.listen, sock("[::1]:15006"));
    let remote = &c.workloads["remote"].upstream;
    let host = |port| Address::Host {
        host: "model-server".into(),
        port,
    };
    assert_eq!((&remote.rest, &remote.grpc), (&host(9501), &host(9500)));
    assert_eq!(
        w.endpoints,
        vec![
            Address::Host {
                host: "tfserving-a.ml.svc.cluster.local".into(),
                port: 15006
            },
            Address::Socket(sock("[::1]:15006")),
        ]
    );
    assert_eq!(
        w.embedded_model_server.as_deref(),
        Some(Path::new("/etc/infermesh/models/models.config"))
    );
    let m = &c.models["half_plus_two"];
    assert_eq!(m.versions, vec![1, 2, 7]);
    assert_eq!(
        m.route.split,
        vec![(1, 80), (2, 20)],
        "zero weights are dropped"
    );
    assert_eq!(
        m.route.pin_header.as_ref().map(|h| h.as_str()),
        Some("x-model-version")
    );
    assert_eq!(
        m.route.sticky_header.as_ref().map(|h| h.as_str()),
        Some("x-user")
    );
    assert_eq!(
        m.route.mirror,
        Some(Mirror {
            version: 7,
            percent: 2.5
        })
    );
    assert_eq!(m.route.timeout, Duration::from_secs(90));
    assert_eq!(
        m.route.retries,
        RetryPolicy {
            attempts: 3,
            on_connect_failure: false,
            on_unavailable: true,
            idempotent: true,
            budget_ratio: 0.05,
            min_retries_per_second: 0,
        }
    );
    assert_eq!(c.gateway.listen, vec![sock("0.0.0.0:8500")]);
    assert_eq!(
        c.limits,
        Limits {
            max_request_body_bytes: 1 << 20,
            max_header_bytes: 8 << 10,
            max_concurrent_streams: 8,
            max_connections: 64,
            connect_timeout: Duration::from_millis(250),
            drain_timeout: Duration::from_secs(1),
        }
    );
    assert_eq!(c.outlier_detection.max_ejection_percent, 0);
    assert_eq!(c.dns_refresh, Duration::from_secs(30));
}

#[test]
fn version_keys_may_be_numbers_or_quoted_and_mirror_may_target_the_split() {
    let c = ok("
workloads:
  - {name: w, listen: 127.0.0.1:15006, upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - name: m
    served_by: w
    versions: [1, 2]
    route: {split: {'2': 100}, mirror: {to: 2, percent: 100}}
");
    let m = &c.models["m"];
    assert_eq!(m.route.split, vec![(2, 100)]);
    assert_eq!(
        m.route.mirror,
        Some(Mirror {
            version: 2,
            percent: 100.0
        })
    );
}

#[test]
fn anchors_and_merge_keys_are_expanded() {
    let c = ok("
workloads:
  - {name: w, listen: 127.0.0.1:15006, upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - name: a
    served_by: w
    versions: [1]
    route: &fast {timeout: 500ms, retries: {attempts: 0}}
  - name: b
    served_by: w
    versions: [1]
    route:
      <<: *fast
      pin_header: x-v
");
    assert_eq!(c.models["a"].route.timeout, Duration::from_millis(500));
    assert_eq!(c.models["b"].route.timeout, Duration::from_millis(500));
    assert_eq!(c.models["b"].route.retries.attempts, 0);
    assert!(c.models["b"].route.pin_header.is_some());
}

#[test]
fn digest_is_sha256_hex() {
    assert_eq!(
        infermesh_config::digest(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        infermesh_config::digest("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// Truncated and corrupted files give errors, never panics.
#[test]
fn no_input_panics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/mesh.yaml");
    let text = std::fs::read_to_string(path).expect("quickstart readable");
    let source = Path::new("mesh.yaml");
    for (end, _) in text.char_indices() {
        if let Err(e) = parse(&text[..end], source) {
            assert!(!e.is_empty() && !e.to_string().is_empty());
        }
    }
    // Deterministic corruption: overwrite one byte with a YAML-significant one.
    let specials = b"{}[]:,-#&*!|>'\"%@`? \t\n0";
    let mut seed: u64 = 0x5eed;
    for _ in 0..3000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut bytes = text.clone().into_bytes();
        let at = (seed >> 33) as usize % bytes.len();
        bytes[at] = specials[(seed >> 13) as usize % specials.len()];
        if let Ok(t) = String::from_utf8(bytes) {
            let _ = parse(&t, source);
        }
    }
    let deep = format!("models: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse(&deep, source).is_err());
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n";
    assert!(parse(bomb, source).is_err());
}

/// docs/config.md walks through the shipped quickstart: keep the two identical.
#[test]
fn docs_show_the_shipped_quickstart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = std::fs::read_to_string(root.join("docs/config.md")).expect("docs");
    let shipped =
        std::fs::read_to_string(root.join("examples/quickstart/mesh.yaml")).expect("quickstart");
    let body: String = shipped
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let start = docs.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = docs[start..].find("```").expect("closed block");
    assert_eq!(&docs[start..start + len], body);
}

#[test]
fn security_sections_compile() {
    use infermesh_config::{Action, EscapedSlashes, JwksSource};
    let c = ok(r#"
workloads:
  - {name: w, listen: 127.0.0.1:15006, upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - {name: m, served_by: w, versions: [{version: 1, label: stable}]}
issuers:
  - issuer: http://127.0.0.1:8900
  - issuer: https://kc.example.com/realms/ml
    jwks_uri: https://kc.example.com/realms/ml/certs
    audiences: [infermesh]
    from_headers: [{name: x-token}]
    forward_claims: [{claim: sub, header: x-user}]
    clock_skew: 30s
    refresh_interval: 5m
    min_refresh_interval: 10s
  - issuer: test
    jwks: {keys: [{kty: EC, crv: P-256, x: abc, y: def}]}
policies:
  - name: p
    action: deny
    rules:
      - from: [{principals: ['cluster.local/ns/ml/*'], not_ip_blocks: [10.0.0.0/8, '::1']}]
        to: [{models: [m, 'x*'], versions: [1, '2'], labels: [stable], signatures: [serving_default],
              apis: [predict], ports: [8501], methods: [POST], paths: ['/v1/models/m*'], hosts: ['*']}]
        when: [{key: 'request.auth.claims[cognito:groups]', values: [a], not_values: [b]},
               {key: source.ip, values: [10.1.0.0/16]}]
  - {name: ext, action: CUSTOM, provider: opa, rules: [{}]}
  - {name: allow-nothing}
authorization: {default_deny: false, escaped_slashes: decode_and_merge}
"#);
    assert_eq!(c.issuers.len(), 3);
    assert_eq!(c.issuers[0].jwks, JwksSource::Discovery);
    assert_eq!(c.issuers[0].clock_skew, Duration::from_secs(60));
    assert_eq!(c.issuers[0].from_headers[0].0, "authorization");
    assert_eq!(c.issuers[0].from_headers[0].1, "Bearer ");
    let kc = &c.issuers[1];
    assert_eq!(
        kc.jwks,
        JwksSource::Uri("https://kc.example.com/realms/ml/certs".into())
    );
    assert_eq!(
        (kc.from_headers[0].0.as_str(), kc.from_headers[0].1.as_str()),
        ("x-token", "")
    );
    assert_eq!(kc.forward_claims[0].0, "sub");
    assert_eq!(
        (kc.clock_skew, kc.refresh_interval, kc.min_refresh_interval),
        (
            Duration::from_secs(30),
            Duration::from_secs(300),
            Duration::from_secs(10)
        )
    );
    assert!(matches!(&c.issuers[2].jwks, JwksSource::Inline(j) if j.contains("\"kty\":\"EC\"")));
    let p = &c.policies[0];
    assert_eq!((p.name.as_str(), p.action), ("p", Action::Deny));
    let to = &p.rules[0].to[0];
    assert_eq!(to.versions, ["1", "2"]);
    assert_eq!(to.ports, ["8501"]);
    assert_eq!(p.rules[0].from[0].not_ip_blocks, ["10.0.0.0/8", "::1"]);
    assert_eq!(
        p.rules[0].when[0].key,
        "request.auth.claims[cognito:groups]"
    );
    assert_eq!(c.policies[1].provider.as_deref(), Some("opa"));
    assert_eq!(c.policies[1].rules.len(), 1);
    assert_eq!(
        (c.policies[2].action, c.policies[2].rules.len()),
        (Action::Allow, 0)
    );
    assert!(!c.authz.default_deny);
    assert_eq!(c.authz.escaped_slashes, EscapedSlashes::DecodeAndMerge);
    // Without the sections: no issuers, no policies, default deny, escaped slashes refused.
    let c = ok(MINIMAL);
    assert!(c.issuers.is_empty() && c.policies.is_empty());
    assert!(c.authz.default_deny);
    assert_eq!(c.authz.escaped_slashes, EscapedSlashes::Reject);
}

#[test]
fn quickstart_allows_ml_eng_through_the_dev_issuer() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/mesh.yaml");
    let c = infermesh_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.issuers[0].issuer, "http://127.0.0.1:8900");
    let p = &c.policies[0];
    assert_eq!(
        p.rules[0].from[0].request_principals,
        ["http://127.0.0.1:8900/*"]
    );
    assert_eq!(p.rules[0].to[0].apis, ["predict", "metadata", "status"]);
    assert_eq!(p.rules[0].when[0].values, ["ml-eng"]);
    assert!(c.authz.default_deny);
    // The dev issuer `up` runs is the issuer the mesh trusts.
    let dev = c.dev_issuer.as_ref().expect("quickstart has a dev_issuer");
    assert_eq!(dev.issuer_url(), c.issuers[0].issuer);
    assert_eq!(dev.clients[0].client_id, "ml-pipeline");
    assert_eq!(dev.clients[0].groups, ["ml-eng"]);
    assert_eq!(dev.clients[0].ttl, std::time::Duration::from_secs(3600));
}

#[test]
fn dev_issuer_errors_name_the_field() {
    let text = "workloads: []\nmodels: []\ndev_issuer:\n  listen: nowhere\n  clients:\n    - {client_id: a}\n";
    let errors = infermesh_config::parse(text, Path::new("m.yaml")).unwrap_err();
    let shown = errors.to_string();
    assert!(shown.contains("m.yaml:4:11: dev_issuer.listen:"), "{shown}");
    assert!(
        shown.contains("dev_issuer.clients[0]: missing field `client_secret`"),
        "{shown}"
    );
}

#[test]
fn istio_files_join_the_mesh_policies_and_issuers() {
    let dir = std::env::temp_dir().join(format!("infermesh-istio-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let istio = "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ml}
spec:
  jwtRules:
    - issuer: https://kc.example.com/realms/ml
      jwksUri: https://kc.example.com/realms/ml/protocol/openid-connect/certs
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: ml}
spec:
  action: ALLOW
  rules:
    - from:
        - source: {requestPrincipals: ['https://kc.example.com/realms/ml/*']}
";
    std::fs::write(dir.join("istio.yaml"), istio).unwrap();
    let mesh = "workloads: []\nmodels: []\npolicies:\n  - {name: local, action: DENY, rules: [{}]}\nistio_files: [istio.yaml]\n";
    std::fs::write(dir.join("mesh.yaml"), mesh).unwrap();
    let c = infermesh_config::load(&dir.join("mesh.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["local", "ml/admins"]);
    assert_eq!(c.issuers[0].issuer, "https://kc.example.com/realms/ml");

    // An unsupported Istio field is an error naming the Istio file.
    std::fs::write(
        dir.join("istio.yaml"),
        istio.replace(
            "action: ALLOW",
            "action: ALLOW\n  selector: {matchLabels: {app: x}}",
        ),
    )
    .unwrap();
    let err = infermesh_config::load(&dir.join("mesh.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("istio.yaml:"), "{err}");
    assert!(err.contains("selector"), "{err}");
    // A missing file is an error at the mesh.yaml line that names it.
    std::fs::remove_file(dir.join("istio.yaml")).unwrap();
    let err = infermesh_config::load(&dir.join("mesh.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mesh.yaml:5:"), "{err}");
    assert!(err.contains("istio_files[0]: cannot read"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn audit_defaults_and_every_field() {
    use infermesh_config::{AuditConfig, AuditDurability, AuditSink, RecordAllows};
    assert_eq!(ok(MINIMAL).audit, None, "no `audit:`, no trail");
    let c = ok(&format!("{MINIMAL}audit: {{}}\n"));
    assert_eq!(
        c.audit,
        Some(AuditConfig {
            dir: ".infermesh/audit".into(),
            durability: AuditDurability::Relaxed,
            flush_interval: Duration::from_secs(1),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            rotate_bytes: 64 << 20,
            rotate_age: Duration::from_secs(86400),
            record_allows: RecordAllows::All,
            signing_key: ".infermesh/audit/audit.key".into(),
            sink: None,
        })
    );
    let c = ok(&format!(
        "{MINIMAL}audit:\n  dir: /var/lib/infermesh/audit\n  durability: strict\n  \
         flush_interval: 200ms\n  checkpoint: {{every: 50, interval: 2s}}\n  \
         rotate: {{max_bytes: 1MiB, max_age: 1h}}\n  record_allows: audited\n  \
         signing_key: /etc/infermesh/audit.key\n  \
         sink: {{url: http://127.0.0.1:4318/v1/logs, protocol: otlp, queue: 100}}\n"
    ));
    let a = c.audit.expect("audit");
    assert_eq!(a.durability, AuditDurability::Strict);
    assert_eq!(a.flush_interval, Duration::from_millis(200));
    assert_eq!(
        (a.checkpoint_every, a.checkpoint_interval),
        (50, Duration::from_secs(2))
    );
    assert_eq!(
        (a.rotate_bytes, a.rotate_age),
        (1 << 20, Duration::from_secs(3600))
    );
    assert_eq!(a.record_allows, RecordAllows::Audited);
    assert_eq!(a.signing_key, Path::new("/etc/infermesh/audit.key"));
    assert_eq!(
        a.sink,
        Some(AuditSink {
            url: "http://127.0.0.1:4318/v1/logs".into(),
            otlp: true,
            queue: 100
        })
    );
}

#[test]
fn identity_settings_compile() {
    let c = ok(&format!(
        "{MINIMAL}identity:\n  ca: files\n  files: {{cert: certs/c.pem, key: /k.pem, bundle: b.pem}}\n  \
         cert_ttl: 10s\n  renew_at: 0.25\n  min_tls: \"1.2\"\n  gateway: {{namespace: edge}}\n"
    ));
    let i = c.identity.expect("identity");
    assert_eq!(
        i.ca,
        CaSource::Files {
            cert: "/etc/infermesh/certs/c.pem".into(),
            key: "/k.pem".into(),
            bundle: "/etc/infermesh/b.pem".into(),
        }
    );
    assert_eq!((i.cert_ttl, i.renew_at), (Duration::from_secs(10), 0.25));
    assert_eq!(i.min_tls, TlsVersion::Tls12);
    assert_eq!(
        (
            i.gateway_namespace.as_str(),
            i.gateway_service_account.as_str()
        ),
        ("edge", "gateway")
    );
    // Left out: no identity section, workloads PERMISSIVE, any peer.
    let d = ok(MINIMAL);
    assert_eq!(d.identity, None);
    assert_eq!(d.workloads["w"].mtls, MtlsMode::Permissive);
    assert!(d.workloads["w"].allowed_peers.is_empty());
}
