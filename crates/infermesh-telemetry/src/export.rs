//! OTLP span export: finished spans go into a bounded queue (never waited on: when it
//! is full the span is dropped and counted), and one task sends them in batches to
//! the collector over OTLP/gRPC or OTLP/HTTP (protobuf). A slow or absent collector
//! costs dropped spans, never request latency or unbounded memory.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use infermesh_config::telemetry::{OtlpProtocol, Tracing};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use tokio::sync::mpsc;

use crate::context::TraceContext;
use crate::metrics::Metrics;

/// How long one export request may take before its spans count as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// One finished span of one hop.
#[derive(Clone, Debug)]
pub struct SpanData {
    pub context: TraceContext,
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Value)>,
    /// The hop failed (5xx, or a gRPC error other than a client error).
    pub error: bool,
}

/// The sending side of the span queue.
#[derive(Debug, Clone)]
pub struct SpanExporter {
    tx: mpsc::Sender<SpanData>,
    metrics: Arc<Metrics>,
}

impl SpanExporter {
    /// Starts the export task. Call inside a tokio runtime.
    pub fn start(config: &Tracing, metrics: Arc<Metrics>) -> SpanExporter {
        let (tx, rx) = mpsc::channel(config.queue);
        let sender = Sender::new(config);
        tokio::spawn(run(rx, sender, config.clone(), metrics.clone()));
        SpanExporter { tx, metrics }
    }

    /// Queues a span; drops it (counted) when the queue is full.
    pub fn submit(&self, span: SpanData) {
        if let Err(e) = self.tx.try_send(span) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "exporter_stopped",
            };
            self.metrics.spans_dropped(reason, 1);
        }
    }
}

impl Metrics {
    pub(crate) fn spans_dropped(&self, reason: &'static str, n: u64) {
        self.spans_dropped
            .get_or_create(&crate::metrics::DropLabels { reason })
            .inc_by(n);
    }
}

enum Sender {
    Grpc(TraceServiceClient<tonic::transport::Channel>),
    Http(Box<HttpSender>),
}

struct HttpSender {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: http::Uri,
}

impl Sender {
    fn new(config: &Tracing) -> Sender {
        let base = config.endpoint.to_string();
        let base = base.trim_end_matches('/');
        match config.protocol {
            OtlpProtocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(base.to_owned())
                    .expect("the config reader accepted this URL")
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(EXPORT_TIMEOUT);
                Sender::Grpc(TraceServiceClient::new(endpoint.connect_lazy()))
            }
            OtlpProtocol::Http => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(Duration::from_secs(1)));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new()).build(connector);
                let uri = format!("{base}/v1/traces")
                    .parse()
                    .expect("a valid base URL plus a path is valid");
                Sender::Http(Box::new(HttpSender { client, uri }))
            }
        }
    }

    async fn send(&mut self, request: ExportTraceServiceRequest) -> Result<(), String> {
        match self {
            Sender::Grpc(client) => client
                .export(request)
                .await
                .map(|_| ())
                .map_err(|s| format!("{}: {}", s.code(), s.message())),
            Sender::Http(http) => {
                let HttpSender { client, uri } = &**http;
                let body = Full::new(Bytes::from(request.encode_to_vec()));
                let req = http::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body)
                    .map_err(|e| e.to_string())?;
                let call = client.request(req);
                let response = tokio::time::timeout(EXPORT_TIMEOUT, call)
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", response.status()))
                }
            }
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<SpanData>,
    mut sender: Sender,
    config: Tracing,
    metrics: Arc<Metrics>,
) {
    let resource = Resource {
        attributes: vec![kv("service.name", Value::Str(config.service_name.clone()))],
        ..Default::default()
    };
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.batch_interval;
        while batch.len() < config.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "infermesh".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    spans: batch.into_iter().map(to_proto).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        match sender.send(request).await {
            Ok(()) => {
                metrics.spans_exported.inc_by(n);
                if failing {
                    tracing::info!("trace export to {} works again", config.endpoint);
                    failing = false;
                }
            }
            Err(e) => {
                metrics.spans_dropped("export_failed", n);
                if !failing {
                    tracing::warn!(
                        "trace export to {} failed ({e}); spans are dropped until it works",
                        config.endpoint
                    );
                    failing = true;
                }
            }
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kv(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn to_proto(span: SpanData) -> Span {
    let cx = span.context;
    Span {
        trace_id: cx.trace_id.to_vec(),
        span_id: cx.span_id.to_vec(),
        parent_span_id: cx.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: span.name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: nanos(span.start),
        end_time_unix_nano: nanos(span.end),
        attributes: span.attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: Some(Status {
            code: if span.error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            ..Default::default()
        }),
        flags: u32::from(cx.sampled),
        ..Default::default()
    }
}
