//! Telemetry of the real binary, checked with the real Prometheus tools: after mixed
//! REST and gRPC traffic through `infermesh up`, the admin `/metrics` scrape passes
//! `promtool check metrics` (except the one complaint Istio's own metric name earns),
//! its counts match the traffic sent, a real Prometheus server scraping it answers a
//! PromQL query for per-version request rates, and every query of Istio's own Grafana
//! dashboards (`../shared/dashboards/istio`) evaluates, with the request panels
//! showing data.
//!
//! Needs `promtool` and `prometheus` (Debian package `prometheus`, installed by
//! `.ci/run`). Without them the test says that it skips and why — except under CI
//! (`CI` set), where a missing tool fails it.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::grpc::{clients, header, predict_request, spec};
use common::mesh::{Mesh, MeshSpec, Proc, VERSION_HEADER, free_port};
use infermesh_telemetry::testkit::sample;

/// The one complaint `promtool check metrics` may make: Istio's name, kept so that
/// existing dashboards keep working.
const ALLOWED_LINT: &str = r#"istio_request_duration_milliseconds use base unit "seconds""#;

fn tool(name: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; .ci/run installs Debian's prometheus package"
        );
        eprintln!("SKIPPED: {name} not found (install Debian's `prometheus` package)");
    }
    found
}

fn get(url: &str) -> (u16, String) {
    let agent = common::http_agent();
    match agent.get(url).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// REST predicts through the gateway (unversioned: split 50/50); returns the count
/// per version the gateway reported.
fn rest_traffic(mesh: &Mesh, n: usize, counts: &mut BTreeMap<String, f64>) {
    let body = br#"{"instances": [1.0, 2.0]}"#;
    for _ in 0..n {
        let r = mesh.gateway_req("POST", "/v1/models/half_plus_two:predict", Some(body), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let version = r
            .headers
            .iter()
            .find(|(k, _)| k == VERSION_HEADER)
            .map(|(_, v)| v.clone())
            .expect("version header");
        *counts.entry(version).or_default() += 1.0;
    }
}

async fn grpc_traffic(mesh: &Mesh, n: usize, counts: &mut BTreeMap<String, f64>) {
    let mut c = clients(mesh.grpc_endpoint()).await;
    for _ in 0..n {
        let r = c
            .predict
            .predict(predict_request(spec(None, None)))
            .await
            .unwrap();
        let version = header(r.metadata(), VERSION_HEADER).unwrap().to_owned();
        *counts.entry(version).or_default() += 1.0;
    }
}

fn promtool_check(promtool: &str, scrape: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(ALLOWED_LINT))
        .collect();
    assert!(
        complaints.is_empty(),
        "promtool check metrics complained:\n{text}\n--- scrape ---\n{scrape}"
    );
    assert!(
        text.contains(ALLOWED_LINT),
        "expected promtool's complaint about Istio's milliseconds name; got:\n{text}"
    );
}

/// A Prometheus server scraping `admin` every second; stopped when dropped.
fn start_prometheus(prometheus: &str, admin: u16, dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: infermesh\n    static_configs:\n      \
             - targets: ['127.0.0.1:{admin}']\n"
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn_program(
        "prometheus",
        prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://127.0.0.1:{port}/-/ready")).0 != 200 {
        assert!(
            proc.exited().is_none(),
            "prometheus exited:\n{}",
            proc.log()
        );
        assert!(
            Instant::now() < deadline,
            "prometheus not ready:\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (proc, port)
}

/// Runs an instant PromQL query; the `data.result` array.
fn query(port: u16, promql: &str) -> Result<Vec<serde_json::Value>, String> {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        form_urlencoded::byte_serialize(promql.as_bytes()).collect::<String>()
    );
    let (status, body) = get(&url);
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Every `expr` in a Grafana dashboard, with its template variables filled in.
fn dashboard_queries(path: &Path) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) if !e.is_empty() => {
                            out.push(e.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    walk(&json, &mut exprs);
    exprs.sort();
    exprs.dedup();
    let vars = template_vars();
    exprs
        .into_iter()
        .map(|e| {
            let mut e = e;
            for (from, to) in &vars {
                e = e.replace(from, to);
            }
            // Any other variable matches everything.
            let mut out = String::new();
            let mut chars = e.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '$' {
                    while chars
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        chars.next();
                    }
                    out.push_str(".*");
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

fn template_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("$__rate_interval", "30s"),
        ("$__interval", "30s"),
        ("${__rate_interval}", "30s"),
        ("$qrep", "source|destination"),
        ("$service", "tfserving-a.ml.svc.cluster.local"),
        ("$workload", "tfserving-a"),
        ("$namespace", "ml"),
        ("$model", ".*"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_istio_metrics_that_istio_dashboards_can_read() {
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        return;
    };
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 50, canary: 50}, timeout: 20s",
    ));
    let admin = mesh.ports.admin;
    let mut sent_rest = BTreeMap::new();
    let mut sent_grpc = BTreeMap::new();
    rest_traffic(&mesh, 30, &mut sent_rest);
    grpc_traffic(&mesh, 20, &mut sent_grpc).await;
    let r = mesh.gateway_req("POST", "/v1/models/nosuch:predict", Some(b"{}"), &[]);
    assert_eq!(r.status, 404);

    // Counts match the traffic (records land as bodies end: poll briefly).
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    let deadline = Instant::now() + Duration::from_secs(5);
    let scrape = loop {
        let (status, text) = get(&metrics_url);
        assert_eq!(status, 200);
        let total = sample(&text, "istio_requests_total", &[("reporter", "source")]);
        if total >= 51.0 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (protocol, sent) in [("http", &sent_rest), ("grpc", &sent_grpc)] {
        for (version, n) in sent {
            for reporter in ["source", "destination"] {
                let labels = [
                    ("reporter", reporter),
                    ("request_protocol", protocol),
                    ("model_name", "half_plus_two"),
                    ("model_version", version.as_str()),
                    ("model_api", "predict"),
                    ("response_code", "200"),
                ];
                let counted = sample(&scrape, "istio_requests_total", &labels);
                assert_eq!(counted, *n, "{reporter} {protocol} v{version}\n{scrape}");
            }
        }
    }
    let unknown = [("model_name", "unknown"), ("response_code", "404")];
    assert_eq!(sample(&scrape, "istio_requests_total", &unknown), 1.0);

    // `up` runs mTLS between gateway and sidecar: both ends say so, with the
    // identities the certificates carry.
    let gateway_spiffe = "spiffe://cluster.local/ns/infermesh/sa/gateway";
    let sidecar_spiffe = "spiffe://cluster.local/ns/ml/sa/tfserving";
    let mtls_labels = |reporter| {
        [
            ("reporter", reporter),
            ("model_name", "half_plus_two"),
            ("connection_security_policy", "mutual_tls"),
            ("source_workload", "infermesh-gateway"),
            ("source_workload_namespace", "infermesh"),
            ("source_principal", gateway_spiffe),
            ("destination_principal", sidecar_spiffe),
        ]
    };
    for reporter in ["source", "destination"] {
        let n = sample(&scrape, "istio_requests_total", &mtls_labels(reporter));
        assert!(n >= 50.0, "{reporter}: {n} mTLS requests\n{scrape}");
    }
    // Certificate expiry per identity, in the future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for identity in [gateway_spiffe, sidecar_spiffe] {
        let expiry = sample(
            &scrape,
            "infermesh_certificate_expiration_timestamp_seconds",
            &[("identity", identity)],
        );
        assert!(expiry > now, "{identity} expires at {expiry}\n{scrape}");
    }
    let (status, ready) = get(&format!("http://127.0.0.1:{admin}/readyz"));
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains(&format!("certificate {sidecar_spiffe}: ok")),
        "{ready}"
    );

    promtool_check(&promtool, &scrape);

    let dir = tempfile::tempdir().unwrap();
    let (mut prom, port) = start_prometheus(&prometheus, admin, dir.path());
    // Traffic while Prometheus scrapes, so rates are above zero.
    let rate = r#"sum by (model_version) (rate(istio_requests_total{reporter="source",model_name="half_plus_two"}[10s]))"#;
    let deadline = Instant::now() + Duration::from_secs(40);
    let per_version = loop {
        let mut ignored = BTreeMap::new();
        rest_traffic(&mesh, 20, &mut ignored);
        std::thread::sleep(Duration::from_millis(300));
        let result = query(port, rate).unwrap();
        let versions: BTreeMap<String, f64> = result
            .iter()
            .map(|r| {
                let v = r["metric"]["model_version"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                (v, r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        if versions.get("1").is_some_and(|r| *r > 0.0)
            && versions.get("2").is_some_and(|r| *r > 0.0)
        {
            break versions;
        }
        assert!(
            Instant::now() < deadline,
            "no per-version rates from Prometheus: {result:?}\n{}",
            prom.log()
        );
    };
    eprintln!("per-version request rates (req/s): {per_version:?}");

    // Our dashboard (deploy/grafana): every query evaluates; the model panels show
    // data for both versions.
    let ours = common::repo_root().join("deploy/grafana/infermesh-models.json");
    let queries = dashboard_queries(&ours);
    assert_eq!(queries.len(), 10, "{queries:#?}");
    for q in &queries {
        let result = query(port, q).unwrap_or_else(|e| panic!("{q}\n{e}"));
        let model_panel = q.contains("istio_");
        if model_panel {
            let versions: Vec<&str> = result
                .iter()
                .filter_map(|r| r["metric"]["model_version"].as_str())
                .collect();
            let by_version = q.contains("model_version");
            assert!(
                !result.is_empty()
                    && (!by_version || versions.contains(&"1") && versions.contains(&"2")),
                "infermesh-models.json: no data for both versions: {q}\n{result:?}"
            );
        }
    }

    // Istio's own dashboards: every query evaluates; the request panels have data.
    let Some(shared) = common::shared_models().map(|m| m.join("../../dashboards/istio")) else {
        eprintln!("SKIPPED: the Istio dashboard queries (../shared/dashboards/istio is missing)");
        return;
    };
    for name in [
        "istio-mesh-dashboard.gen.json",
        "istio-service-dashboard.json",
        "istio-workload-dashboard.json",
    ] {
        let queries = dashboard_queries(&shared.join(name));
        assert!(!queries.is_empty(), "{name}: no queries found");
        let mut with_data = Vec::new();
        for q in &queries {
            match query(port, q) {
                Ok(result) if !result.is_empty() => with_data.push(q.clone()),
                Ok(_) => {}
                Err(e) => panic!("{name}: query failed: {q}\n{e}"),
            }
        }
        let requests: Vec<&String> = with_data
            .iter()
            .filter(|q| q.contains("istio_requests_total"))
            .collect();
        assert!(
            !requests.is_empty(),
            "{name}: no istio_requests_total panel shows data ({} of {} queries had data)",
            with_data.len(),
            queries.len()
        );
        let latency = with_data
            .iter()
            .any(|q| q.contains("istio_request_duration_milliseconds_bucket"));
        assert!(latency, "{name}: no latency panel shows data");
        eprintln!(
            "{name}: {} queries evaluate, {} show data",
            queries.len(),
            with_data.len()
        );
    }
    prom.kill();
}

#[test]
fn alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = common::repo_root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "infermesh-alerts.yaml"],
        vec!["test", "rules", "infermesh-alerts.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
