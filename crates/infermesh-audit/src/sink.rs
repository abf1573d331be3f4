//! Shipping records to an external sink (a SIEM's HTTP intake or an OTLP/HTTP logs
//! endpoint) from a thread of its own. The writer hands it each record after the
//! record is written, with a non-blocking send into a bounded queue: a full queue
//! drops the record from the shipment (counted as `sink_dropped`; the file keeps it),
//! so the sink never slows the request path. Batches of up to 512 records are POSTed;
//! a batch that fails three times is dropped and counted as `sink_failures`.

use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::AuditError;
use crate::log::{SinkOptions, SinkProtocol};
use crate::stats::Counters;

const BATCH: usize = 512;
const LINGER: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 3;

/// Starts the shipping thread; returns the queue the writer feeds.
pub(crate) fn spawn(
    options: SinkOptions,
    counters: Arc<Counters>,
) -> Result<mpsc::SyncSender<String>, AuditError> {
    if !options.url.starts_with("http://") {
        return Err(AuditError::Sink(format!(
            "{}: only http:// URLs are supported (ship through a local collector for TLS)",
            options.url
        )));
    }
    let (tx, rx) = mpsc::sync_channel(options.queue.max(1));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    std::thread::Builder::new()
        .name("audit-sink".into())
        .spawn(move || run(&options, &agent, &rx, &counters))
        .map_err(|e| AuditError::Sink(e.to_string()))?;
    Ok(tx)
}

fn run(
    options: &SinkOptions,
    agent: &ureq::Agent,
    rx: &mpsc::Receiver<String>,
    counters: &Counters,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let (body, content_type) = match options.protocol {
            SinkProtocol::Http => (batch.join("\n") + "\n", "application/x-ndjson"),
            SinkProtocol::Otlp => (otlp(&batch), "application/json"),
        };
        let mut sent = false;
        for attempt in 0..ATTEMPTS {
            match agent
                .post(&options.url)
                .header("content-type", content_type)
                .send(body.as_bytes())
            {
                Ok(_) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(url = %options.url, error = %e, attempt, "audit sink: POST failed");
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                }
            }
        }
        let n = batch.len() as u64;
        if sent {
            Counters::add(&counters.sink_sent, n);
        } else {
            Counters::add(&counters.sink_failures, n);
        }
    }
}

/// An OTLP/HTTP JSON `ExportLogsServiceRequest`: one log record per audit record,
/// the record line as its body, `audit.kind` and `audit.seq` as attributes.
fn otlp(lines: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let time = v["ts"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(now, |d| d.as_nanos());
            serde_json::json!({
                "timeUnixNano": time.to_string(),
                "observedTimeUnixNano": now.to_string(),
                "severityText": "INFO",
                "body": {"stringValue": line},
                "attributes": [
                    {"key": "audit.kind", "value": {"stringValue": v["kind"].as_str().unwrap_or("")}},
                    {"key": "audit.seq", "value": {"intValue": v["seq"].as_u64().unwrap_or(0).to_string()}},
                ],
            })
        })
        .collect();
    serde_json::json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "infermesh"}},
            ]},
            "scopeLogs": [{"scope": {"name": "infermesh.audit"}, "logRecords": records}],
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_bodies_carry_each_record_line() {
        let line = r#"{"seq":3,"prev":"x","ts":"2026-01-01T00:00:00.000Z","kind":"decision"}"#;
        let v: serde_json::Value = serde_json::from_str(&otlp(&[line.to_string()])).unwrap();
        let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(rec["body"]["stringValue"], line);
        assert_eq!(rec["timeUnixNano"], "1767225600000000000");
        assert_eq!(rec["attributes"][1]["value"]["intValue"], "3");
    }
}
