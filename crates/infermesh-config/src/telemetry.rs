//! `telemetry:`: the access log and trace export of gateways and sidecars (metrics
//! need no settings: they are served on the admin listener). Both are off unless
//! configured; both are read once at start (a change needs a restart).
//!
//! ```yaml
//! telemetry:
//!   access_log: {path: stdout, fields: [time, request_id, model, status]}
//!   tracing:
//!     otlp: http://127.0.0.1:4317     # the collector
//!     protocol: grpc                  # or http (protobuf to <otlp>/v1/traces)
//!     sampling: 1                     # percent of traces no caller decided on
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::read::{Cx, Fields, boolean, duration, index, list, percent, string, uint};
use crate::yaml::Node;

/// Every access-log field, in the order written.
pub const ACCESS_LOG_FIELDS: &[&str] = &[
    "time",
    "request_id",
    "trace_id",
    "reporter",
    "protocol",
    "method",
    "path",
    "peer_principal",
    "request_principal",
    "source_address",
    "model",
    "version",
    "signature",
    "api",
    "decision",
    "policy",
    "status",
    "grpc_status",
    "response_flags",
    "request_bytes",
    "response_bytes",
    "upstream_ms",
    "duration_ms",
];

/// The `telemetry:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    /// Record requests at all (metrics, spans, access log); default on. Off exists
    /// for benchmarking what telemetry costs.
    pub enabled: bool,
    /// One JSON line per request, when set.
    pub access_log: Option<AccessLog>,
    /// OTLP span export, when set (trace context is propagated either way).
    pub tracing: Option<Tracing>,
}

/// Where access-log lines go and which fields they carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLog {
    pub sink: LogSink,
    /// Indices into [`ACCESS_LOG_FIELDS`], in the order written.
    pub fields: Vec<&'static str>,
}

/// An access-log destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    /// Appended to; relative paths start at the mesh file's directory.
    File(PathBuf),
}

/// OTLP trace export.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracing {
    /// The collector's base URL, e.g. `http://127.0.0.1:4317`.
    pub endpoint: http::Uri,
    pub protocol: OtlpProtocol,
    /// Fraction (0..=1) of new traces recorded when the caller did not decide.
    pub sampling: f64,
    /// Spans sent per export request at most.
    pub batch_size: usize,
    /// Spans waiting longer than this are exported even if the batch is not full.
    pub batch_interval: Duration,
    /// Spans held while the collector is slow or down; beyond this they are dropped
    /// (and counted), never waited for.
    pub queue: usize,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// How spans are sent to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies, `POST <endpoint>/v1/traces`.
    Http,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            enabled: true,
            access_log: None,
            tracing: None,
        }
    }
}

pub(crate) const KEYS: &[&str] = &["enabled", "access_log", "tracing"];
pub(crate) const LOG_KEYS: &[&str] = &["path", "fields"];
pub(crate) const TRACE_KEYS: &[&str] = &[
    "otlp",
    "protocol",
    "sampling",
    "batch_size",
    "batch_interval",
    "queue",
    "service_name",
];

pub(crate) fn telemetry(cx: &mut Cx, node: &Node, path: &str, base: &Path) -> Option<Telemetry> {
    let f = Fields::read(cx, node, path, KEYS)?;
    Some(Telemetry {
        enabled: f.opt(cx, "enabled", boolean).unwrap_or(true),
        access_log: f.opt(cx, "access_log", |cx, n, p| access_log(cx, n, p, base)),
        tracing: f.opt(cx, "tracing", tracing),
    })
}

fn access_log(cx: &mut Cx, node: &Node, path: &str, base: &Path) -> Option<AccessLog> {
    let f = Fields::read(cx, node, path, LOG_KEYS)?;
    let sink = match f.opt(cx, "path", string).as_deref() {
        None | Some("stdout") => LogSink::Stdout,
        Some("") => {
            let at = f.get("path").map_or(f.at, |n| n.at);
            cx.error(at, &f.path_of("path"), "must not be empty (use `stdout`)");
            return None;
        }
        Some(file) => LogSink::File(base.join(file)),
    };
    let fields = match f.get("fields") {
        None => ACCESS_LOG_FIELDS.to_vec(),
        Some(n) => log_fields(cx, n, &f.path_of("fields"))?,
    };
    Some(AccessLog { sink, fields })
}

fn log_fields(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for (i, item) in list(cx, node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let Some(name) = string(cx, item, &ipath) else {
            continue;
        };
        match ACCESS_LOG_FIELDS.iter().find(|f| **f == name) {
            Some(known) if out.contains(known) => {
                cx.error(item.at, &ipath, format!("field `{name}` is listed twice"));
            }
            Some(known) => out.push(known),
            None => {
                let msg = match crate::error::suggest(&name, ACCESS_LOG_FIELDS.iter().copied()) {
                    Some(s) => format!("unknown access-log field `{name}`, did you mean `{s}`?"),
                    None => format!(
                        "unknown access-log field `{name}`; the fields are {}",
                        ACCESS_LOG_FIELDS.join(", ")
                    ),
                };
                cx.error(item.at, &ipath, msg);
            }
        }
    }
    if out.is_empty() {
        cx.error(node.at, path, "must list at least one field");
        return None;
    }
    Some(out)
}

fn tracing(cx: &mut Cx, node: &Node, path: &str) -> Option<Tracing> {
    let f = Fields::read(cx, node, path, TRACE_KEYS)?;
    let endpoint = f.req(cx, "otlp", endpoint);
    let protocol = f
        .opt(cx, "protocol", protocol)
        .unwrap_or(OtlpProtocol::Grpc);
    let sampling = f
        .opt(cx, "sampling", |cx, n, p| percent(cx, n, p, true))
        .map_or(0.01, |p| p / 100.0);
    let batch_size = f.opt(cx, "batch_size", uint(1, 10_000)).unwrap_or(512) as usize;
    let batch_interval = f
        .opt(cx, "batch_interval", duration)
        .unwrap_or(Duration::from_secs(1));
    let queue = f.opt(cx, "queue", uint(1, 1_000_000)).unwrap_or(2048) as usize;
    let service_name = f
        .opt(cx, "service_name", string)
        .unwrap_or_else(|| "infermesh".to_owned());
    Some(Tracing {
        endpoint: endpoint?,
        protocol,
        sampling,
        batch_size,
        batch_interval,
        queue: queue.max(batch_size),
        service_name,
    })
}

fn endpoint(cx: &mut Cx, node: &Node, path: &str) -> Option<http::Uri> {
    let text = string(cx, node, path)?;
    let uri: Option<http::Uri> = text.parse().ok();
    match uri {
        Some(u) if u.scheme_str() == Some("http") && u.authority().is_some() => Some(u),
        Some(u) if u.scheme_str() == Some("https") => {
            cx.error(
                node.at,
                path,
                "https collectors are not supported yet: use http:// (a collector on loopback or a local agent)",
            );
            None
        }
        _ => {
            let msg = format!("expected a collector URL like http://127.0.0.1:4317, got {text:?}");
            cx.error(node.at, path, msg);
            None
        }
    }
}

fn protocol(cx: &mut Cx, node: &Node, path: &str) -> Option<OtlpProtocol> {
    match string(cx, node, path)?.as_str() {
        "grpc" => Some(OtlpProtocol::Grpc),
        "http" | "http/protobuf" => Some(OtlpProtocol::Http),
        other => {
            let msg = format!("unknown protocol `{other}`: expected `grpc` or `http`");
            cx.error(node.at, path, msg);
            None
        }
    }
}
