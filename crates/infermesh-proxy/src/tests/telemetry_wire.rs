//! Telemetry through the real listeners: Istio metrics on the admin listener checked
//! against the traffic sent, trace context and request ids passed to the upstream,
//! spans received by an OTLP receiver (gRPC and HTTP), the access log, `/readyz`.

use std::time::Duration;

use infermesh_config::telemetry::{
    AccessLog, LogSink, OtlpProtocol, Telemetry as TelemetryConfig, Tracing,
};
use infermesh_telemetry::testkit::{Receiver, sample};

use super::grpc_wire::{call, predict};
use super::*;

/// `GET http://{addr}{path}` with an optional `Accept`; (status, content type, body).
async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut builder = Request::get(format!("http://{addr}{path}"));
    if let Some(a) = accept {
        builder = builder.header("accept", a);
    }
    let (head, body) = rest(&http1(), builder.body(full("")).unwrap()).await;
    let content_type = head
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (head.status().as_u16(), content_type, body)
}

/// Polls `/metrics` until `check` holds (records are made as response bodies end,
/// a moment after the client has them); panics with the last scrape after 5 s.
async fn metrics_until(admin: SocketAddr, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, text) = get(admin, "/metrics", None).await;
        if check(&text) {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("metrics never matched; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn istio_metrics_count_the_traffic_per_model_version_and_code() {
    let mesh = Mesh::start().await;
    let client = http1();
    for _ in 0..5 {
        let req = post(
            mesh.gateway,
            "/v1/models/m:predict",
            &[("x-model-version", "1")],
        );
        assert_eq!(rest(&client, req).await.0.status(), 200);
    }
    for _ in 0..3 {
        let req = post(
            mesh.gateway,
            "/v1/models/m:predict",
            &[("x-model-version", "2")],
        );
        assert_eq!(rest(&client, req).await.0.status(), 200);
    }
    for _ in 0..2 {
        let req = post(mesh.gateway, "/v1/models/nosuch:predict", &[]);
        assert_eq!(rest(&client, req).await.0.status(), 404);
    }
    for _ in 0..4 {
        let answer = call(mesh.gateway, &predict("m", Some(2), 3), &[]).await;
        assert_eq!(answer.status(), "0");
    }
    let total = "istio_requests_total";
    let text = metrics_until(mesh.admin, |t| {
        sample(t, total, &[("reporter", "destination")]) >= 12.0
            && sample(t, total, &[("reporter", "source")]) >= 14.0
    })
    .await;
    let rest_labels = |reporter, version| {
        [
            ("reporter", reporter),
            ("model_name", "m"),
            ("model_version", version),
            ("destination_version", version),
            ("response_code", "200"),
            ("request_protocol", "http"),
            ("model_api", "predict"),
            ("destination_workload", "w"),
            ("destination_workload_namespace", "ml"),
            ("destination_service", "w.ml.svc.cluster.local"),
        ]
    };
    for reporter in ["source", "destination"] {
        let v1 = rest_labels(reporter, "1");
        assert_eq!(sample(&text, total, &v1), 5.0, "{reporter} v1\n{text}");
        let v2 = rest_labels(reporter, "2");
        assert_eq!(sample(&text, total, &v2), 3.0, "{reporter} v2\n{text}");
        let grpc = [
            ("reporter", reporter),
            ("model_name", "m"),
            ("model_version", "2"),
            ("request_protocol", "grpc"),
            ("grpc_response_status", "0"),
            ("model_signature", "serving_default"),
        ];
        assert_eq!(sample(&text, total, &grpc), 4.0, "{reporter} grpc\n{text}");
    }
    // An unknown model is counted under `unknown`, never under its raw name, and
    // only at the gateway (nothing was forwarded).
    let unknown = [("model_name", "unknown"), ("response_code", "404")];
    assert_eq!(sample(&text, total, &unknown), 2.0, "{text}");
    assert!(
        !text.contains("nosuch"),
        "a raw model name became a label\n{text}"
    );
    // Histograms carry the same labels; their counts match the counter.
    let count = sample(
        &text,
        "istio_request_duration_milliseconds_count",
        &[
            ("reporter", "source"),
            ("model_version", "1"),
            ("request_protocol", "http"),
        ],
    );
    assert_eq!(count, 5.0);
    let bytes = sample(
        &text,
        "istio_response_bytes_sum",
        &[
            ("reporter", "source"),
            ("model_version", "1"),
            ("request_protocol", "http"),
        ],
    );
    assert!(bytes > 0.0, "response bytes are counted\n{text}");
    // Policy decisions (no policies: the default allows).
    assert!(
        sample(
            &text,
            "infermesh_authz_decisions_total",
            &[("action", "allow")]
        ) >= 12.0
    );
}

#[tokio::test]
async fn metrics_speak_prometheus_text_and_openmetrics() {
    let mesh = Mesh::start().await;
    let req = post(mesh.gateway, "/v1/models/m:predict", &[]);
    assert_eq!(rest(&http1(), req).await.0.status(), 200);
    metrics_until(mesh.admin, |t| t.contains("istio_requests_total{")).await;
    let (status, content_type, text) = get(mesh.admin, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        text.contains("# TYPE istio_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    let (status, content_type, text) = get(
        mesh.admin,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.contains("# TYPE istio_requests counter"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn trace_context_and_request_id_reach_the_upstream() {
    let mesh = Mesh::start().await;
    let client = http1();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = post(
        mesh.gateway,
        "/v1/models/m:predict",
        &[("traceparent", tp), ("x-request-id", "req-42")],
    );
    let (head, _) = rest(&client, req).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-request-id"], "req-42");
    let req = post(mesh.gateway, "/v1/models/m:predict", &[]);
    let (head, _) = rest(&client, req).await;
    let generated = head.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let seen = mesh.fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let sent = seen[0].headers["traceparent"].to_str().unwrap();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(sent.ends_with("-01"), "{sent}");
    assert_ne!(
        &sent[36..52],
        "00f067aa0ba902b7",
        "each hop is its own span"
    );
    assert_eq!(seen[0].headers["x-request-id"], "req-42");
    assert_eq!(seen[1].headers["x-request-id"].to_str().unwrap(), generated);
    let new_trace = seen[1].headers["traceparent"].to_str().unwrap();
    assert_eq!(new_trace.len(), 55, "{new_trace}");
    assert!(
        new_trace.ends_with("-00"),
        "sampling 0: not sampled: {new_trace}"
    );
}

fn tracing_config(endpoint: &str, protocol: OtlpProtocol, queue: usize) -> TelemetryConfig {
    TelemetryConfig {
        enabled: true,
        access_log: None,
        tracing: Some(Tracing {
            endpoint: endpoint.parse().unwrap(),
            protocol,
            sampling: 0.0,
            batch_size: 64,
            batch_interval: Duration::from_millis(50),
            queue,
            service_name: "infermesh-test".into(),
        }),
    }
}

async fn spans_on_every_hop(protocol: OtlpProtocol) {
    let receiver = match protocol {
        OtlpProtocol::Grpc => Receiver::grpc().await,
        OtlpProtocol::Http => Receiver::http().await,
    };
    let config = tracing_config(&receiver.endpoint(), protocol, 1024);
    let telemetry = Arc::new(Telemetry::start(&config).unwrap());
    let mesh = Mesh::start_with_telemetry(|_| {}, telemetry).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let req = post(mesh.gateway, "/v1/models/m:predict", &[("traceparent", tp)]);
    assert_eq!(rest(&http1(), req).await.0.status(), 200);
    let answer = call(
        mesh.gateway,
        &predict("m", Some(1), 2),
        &[("traceparent", tp)],
    )
    .await;
    assert_eq!(answer.status(), "0");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.spans().len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        4,
        "gateway + sidecar spans of two requests: {spans:#?}"
    );
    let trace_id = infermesh_telemetry::context::TraceContext::extract(
        &[(
            http::header::HeaderName::from_static("traceparent"),
            tp.parse().unwrap(),
        )]
        .into_iter()
        .collect(),
        0.0,
        &mut fastrand::Rng::new(),
    )
    .trace_id;
    let client_span = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];
    for span in &spans {
        assert_eq!(span.trace_id, trace_id, "one trace id on every hop");
    }
    let gateways: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("gateway"))
        .collect();
    let sidecars: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("sidecar"))
        .collect();
    assert_eq!((gateways.len(), sidecars.len()), (2, 2), "{spans:#?}");
    for g in &gateways {
        assert_eq!(
            g.parent_span_id, client_span,
            "the gateway continues the client's span"
        );
        assert!(
            sidecars.iter().any(|s| s.parent_span_id == g.span_id),
            "a sidecar span is the child of gateway span {:?}",
            g.span_id
        );
        let attr = |k: &str| g.attributes.iter().find(|a| a.key == k).cloned();
        assert!(attr("model.name").is_some() && attr("model.version").is_some());
        assert!(attr("authz.allowed").is_some());
    }
}

#[tokio::test]
async fn spans_reach_an_otlp_grpc_collector_from_every_hop() {
    spans_on_every_hop(OtlpProtocol::Grpc).await;
}

#[tokio::test]
async fn spans_reach_an_otlp_http_collector_from_every_hop() {
    spans_on_every_hop(OtlpProtocol::Http).await;
}

#[tokio::test]
async fn a_stuck_or_missing_collector_costs_dropped_spans_not_requests() {
    // A collector that accepts connections and never answers: exports hang (until
    // their timeout) and the queue, 8 spans, fills.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", stuck.local_addr().unwrap());
    let config = tracing_config(&endpoint, OtlpProtocol::Grpc, 8);
    let telemetry = Arc::new(Telemetry::start(&config).unwrap());
    let mesh = Mesh::start_with_telemetry(|_| {}, telemetry.clone()).await;
    let client = http1();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for _ in 0..100 {
        let req = post(mesh.gateway, "/v1/models/m:predict", &[("traceparent", tp)]);
        assert_eq!(rest(&client, req).await.0.status(), 200);
    }
    let text = metrics_until(mesh.admin, |t| {
        sample(
            t,
            "infermesh_trace_spans_dropped_total",
            &[("reason", "queue_full")],
        ) >= 128.0
    })
    .await;
    // All but what the queue (8) and the batch in flight (64) hold was dropped.
    assert_eq!(
        sample(&text, "infermesh_trace_spans_exported_total", &[]),
        0.0
    );
    let full = sample(
        &text,
        "infermesh_trace_spans_dropped_total",
        &[("reason", "queue_full")],
    );
    assert!(full >= 200.0 - 8.0 - 64.0, "{text}");
    drop(stuck);

    // No collector at all: exports fail at once; requests are just as unaffected.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = tracing_config(&endpoint, OtlpProtocol::Http, 8);
    let telemetry = Arc::new(Telemetry::start(&config).unwrap());
    let mesh = Mesh::start_with_telemetry(|_| {}, telemetry).await;
    for _ in 0..20 {
        let req = post(mesh.gateway, "/v1/models/m:predict", &[("traceparent", tp)]);
        assert_eq!(rest(&client, req).await.0.status(), 200);
    }
    metrics_until(mesh.admin, |t| {
        sample(
            t,
            "infermesh_trace_spans_dropped_total",
            &[("reason", "export_failed")],
        ) >= 40.0
    })
    .await;
}

#[tokio::test]
async fn access_log_lines_carry_the_configured_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let config = TelemetryConfig {
        enabled: true,
        access_log: Some(AccessLog {
            sink: LogSink::File(path.clone()),
            fields: vec![
                "request_id",
                "trace_id",
                "model",
                "version",
                "status",
                "reporter",
            ],
        }),
        tracing: None,
    };
    let telemetry = Arc::new(Telemetry::start(&config).unwrap());
    let mesh = Mesh::start_with_telemetry(|_| {}, telemetry).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = post(
        mesh.gateway,
        "/v1/models/m:predict",
        &[
            ("x-request-id", "log-me"),
            ("x-model-version", "2"),
            ("traceparent", tp),
        ],
    );
    assert_eq!(rest(&http1(), req).await.0.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if lines.len() >= 2 || tokio::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 2, "one line per hop: {lines:?}");
    for line in &lines {
        let object = line.as_object().unwrap();
        assert_eq!(object.len(), 6, "only the configured fields: {line}");
        assert_eq!(line["request_id"], "log-me");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["model"], "m");
        assert_eq!(line["version"], 2);
        assert_eq!(line["status"], 200);
    }
    let reporters: Vec<&str> = lines
        .iter()
        .map(|l| l["reporter"].as_str().unwrap())
        .collect();
    assert!(
        reporters.contains(&"gateway") && reporters.contains(&"sidecar"),
        "{reporters:?}"
    );
}

#[tokio::test]
async fn readyz_reports_unreachable_upstreams() {
    let mesh = Mesh::start().await;
    let (status, _, body) = get(mesh.admin, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("workload w sidecar: ok"), "{body}");
    assert_eq!(get(mesh.admin, "/healthz", None).await.0, 200);
    assert_eq!(get(mesh.admin, "/nope", None).await.0, 404);

    // A second workload whose sidecar is down makes the gateway not ready.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let mut config = MeshConfig::clone(&mesh.config.load());
    let mut workload = Workload::clone(&config.workloads["w"]);
    workload.name = "dead".into();
    workload.endpoints = vec![Address::Socket(dead)];
    config.workloads.insert("dead".into(), Arc::new(workload));
    config
        .models
        .insert("d".into(), Arc::new(model("d", "dead")));
    mesh.config.store(Arc::new(config));
    let (status, _, body) = get(mesh.admin, "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("workload dead sidecar: unreachable"),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_turns_503_once_draining_begins() {
    let mesh = Mesh::start().await;
    let admin = crate::admin::Admin {
        readiness: Arc::default(),
        telemetry: Arc::default(),
        config: mesh.config.clone(),
        role: crate::pipeline::Role::Gateway,
        reload: None,
        checks: Vec::new(),
    };
    assert_eq!(crate::admin::ready(&admin).await.status(), 200);
    admin.readiness.set_draining();
    let response = crate::admin::ready(&admin).await;
    assert_eq!(response.status(), 503);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"draining\n");
}
