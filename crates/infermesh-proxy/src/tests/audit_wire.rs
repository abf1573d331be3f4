//! The audit stage through the real listeners: in strict mode the decision record is
//! on disk by the time the response arrives; a record that cannot be accepted turns
//! the answer into 503 `audit-unavailable` and nothing is forwarded; `record_allows`.

use std::path::Path;

use infermesh_audit::{AuditLog, Durability, Options};
use infermesh_config::RecordAllows;

use super::*;
use crate::{ERROR_HEADER, ProxyAudit};

fn options(dir: &Path, durability: Durability, max_backlog: u64) -> Options {
    Options {
        dir: dir.to_path_buf(),
        durability,
        flush_interval: Duration::from_secs(60),
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        rotate_bytes: 1 << 30,
        rotate_age: Duration::from_secs(86_400),
        signing_key: dir.join("audit.key"),
        sink: None,
        max_backlog,
    }
}

/// A gateway (auditing into `audit`) in front of a sidecar in front of the fake.
async fn start(audit: ProxyAudit) -> (SocketAddr, Fake, oneshot::Sender<()>) {
    let fake = Fake::start().await;
    let sidecar_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway_listener.local_addr().unwrap();
    let config = mesh(sidecar_listener.local_addr().unwrap(), fake.addr);
    let config = Arc::new(ArcSwap::from_pointee(config));
    let telemetry = Arc::new(infermesh_telemetry::Telemetry::default());
    let sidecar =
        Sidecar::from_listener(config.clone(), "w", sidecar_listener, telemetry.clone()).unwrap();
    let proxy = Gateway::from_listeners(config, vec![gateway_listener], telemetry)
        .unwrap()
        .with_audit(audit);
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(sidecar.run(std::future::pending()));
    tokio::spawn(proxy.run(async move {
        let _ = rx.await;
    }));
    (gateway, fake, stop)
}

fn trail_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            out.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn strict_records_are_on_disk_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(options(dir.path(), Durability::Strict, 1000)).unwrap();
    let (gateway, _fake, _stop) = start(ProxyAudit::new(log.clone(), RecordAllows::All)).await;
    for i in 0..3 {
        let id = format!("req-{i}");
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = [("x-request-id", id.as_str()), ("traceparent", traceparent)];
        let (head, _) = rest(
            &http1(),
            post(gateway, "/v1/models/m/versions/1:predict", &headers),
        )
        .await;
        assert_eq!(head.status(), 200);
        // No waiting: strict mode answered only after the fsync.
        let text = trail_text(dir.path());
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"request_id\":\"{id}\"")))
            .unwrap_or_else(|| panic!("no record of {id} when its answer arrived:\n{text}"));
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["kind"], "decision");
        assert_eq!(record["decision"], "allow");
        assert_eq!(record["role"], "gateway");
        assert_eq!(record["model"], "m");
        assert_eq!(record["version"], 1);
        assert_eq!(record["api"], "predict");
        assert_eq!(record["basis"], "default");
        assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    assert!(log.stats().fsyncs >= 1);
}

#[tokio::test]
async fn a_record_that_cannot_be_accepted_refuses_the_request_unforwarded() {
    let dir = tempfile::tempdir().unwrap();
    // No room in the backlog: every record is refused, as on a trail that cannot keep up.
    let log = AuditLog::open(options(dir.path(), Durability::Strict, 0)).unwrap();
    let (gateway, fake, _stop) = start(ProxyAudit::new(log.clone(), RecordAllows::All)).await;
    let (head, body) = rest(
        &http1(),
        post(gateway, "/v1/models/m/versions/1:predict", &[]),
    )
    .await;
    assert_eq!(head.status(), 503);
    assert_eq!(head.headers()[&ERROR_HEADER], "audit-unavailable");
    assert!(body.contains("audit trail"), "{body}");
    assert!(fake.seen().is_empty(), "refused requests are not served");
    let stats = log.stats();
    assert_eq!((stats.refused, stats.lost), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn record_allows_none_keeps_allows_out_of_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(options(dir.path(), Durability::Strict, 1000)).unwrap();
    let (gateway, _fake, _stop) = start(ProxyAudit::new(log.clone(), RecordAllows::None)).await;
    let headers = [("x-request-id", "not-recorded")];
    let (head, _) = rest(
        &http1(),
        post(gateway, "/v1/models/m/versions/1:predict", &headers),
    )
    .await;
    assert_eq!(head.status(), 200);
    // A later strict record is durable once it returns; the allow is not there.
    log.event("marker", &serde_json::json!({}))
        .durable()
        .await
        .unwrap();
    let text = trail_text(dir.path());
    assert!(text.contains("\"kind\":\"marker\""));
    assert!(!text.contains("not-recorded"), "{text}");
}
