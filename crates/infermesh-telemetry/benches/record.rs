//! What telemetry costs one hop, in CPU: the work a gateway or sidecar does per
//! request — take/generate `x-request-id` and trace context and set the next hop's
//! headers (`context`), then record the finished exchange (`record`) with metrics
//! only (the default), or with the access log (to a file) and tracing at 1% too
//! (`record_all`). A request through `infermesh up` passes two hops.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use infermesh_config::telemetry::{AccessLog, LogSink, OtlpProtocol, Telemetry as Config, Tracing};
use infermesh_telemetry::{
    Decision, Peer, Protocol, Record, Reporter, Telemetry, TraceContext, context,
};

fn record<'a>(trace: TraceContext) -> Record<'a> {
    Record {
        reporter: Reporter::Gateway,
        protocol: Protocol::Http,
        method: "POST",
        path: "/v1/models/half_plus_two:predict",
        started: SystemTime::now(),
        duration: Duration::from_micros(180),
        upstream: Some(Duration::from_micros(150)),
        request_id: "6f2d8a9c-3b1e-4c5d-9e7f-0a1b2c3d4e5f",
        trace,
        source_address: Some("127.0.0.1:50412".parse().unwrap()),
        source: Peer {
            workload: "infermesh-gateway",
            namespace: "infermesh",
            principal: "unknown",
        },
        destination: Peer {
            workload: "tfserving-a",
            namespace: "ml",
            principal: "unknown",
        },
        destination_service: "tfserving-a.ml.svc.cluster.local",
        mtls: false,
        request_principal: Some("http://127.0.0.1:8900/alice"),
        model: Some("half_plus_two"),
        version: Some(1),
        signature: None,
        api: Some("predict"),
        decision: Some(Decision {
            allowed: true,
            policy: Some("ml-eng-may-predict"),
            rule: Some(0),
        }),
        status: 200,
        grpc_status: None,
        response_flags: "-",
        request_bytes: 30,
        response_bytes: 33,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut rng = fastrand::Rng::with_seed(7);

    c.bench_function("context: request id + traceparent extract/inject", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            let id = context::request_id(&mut headers, &mut rng);
            let cx = TraceContext::extract(&headers, 0.01, &mut rng);
            cx.inject(&mut headers);
            black_box((id, headers))
        })
    });

    let metrics_only = Telemetry::start(&Config::default()).unwrap();
    let trace = TraceContext::extract(&HeaderMap::new(), 0.0, &mut rng);
    c.bench_function("record: metrics", |b| {
        b.iter(|| metrics_only.record(black_box(&record(trace))))
    });

    let dir = tempfile::tempdir().unwrap();
    let all = Telemetry::start(&Config {
        enabled: true,
        access_log: Some(AccessLog {
            sink: LogSink::File(dir.path().join("access.log")),
            fields: infermesh_telemetry::ACCESS_LOG_FIELDS.to_vec(),
        }),
        tracing: Some(Tracing {
            // Nothing listens: 1% of spans are queued, then dropped after failed
            // exports — the request path's cost is the same.
            endpoint: "http://127.0.0.1:9".parse().unwrap(),
            protocol: OtlpProtocol::Http,
            sampling: 0.01,
            batch_size: 512,
            batch_interval: Duration::from_secs(1),
            queue: 2048,
            service_name: "bench".into(),
        }),
    })
    .unwrap();
    c.bench_function("record: metrics + access log + 1% traced", |b| {
        b.iter(|| {
            let trace = TraceContext::extract(&HeaderMap::new(), 0.01, &mut rng);
            all.record(black_box(&record(trace)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
