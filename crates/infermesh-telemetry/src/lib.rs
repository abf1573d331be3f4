//! Telemetry for the data plane: what every request leaves behind, from one
//! [`Record`] handed over when its response is finished —
//!
//! * metrics ([`metrics`]): Istio's standard request metrics with Istio's names,
//!   buckets and labels plus model labels, and infermesh's own counters; served on
//!   the admin listener in Prometheus text or OpenMetrics ([`exposition`]);
//! * a span per hop ([`context`], [`export`]): W3C `traceparent` (B3 accepted)
//!   continued hop to hop, exported over OTLP through a bounded queue;
//! * an access-log line ([`access_log`]).
//!
//! One [`Telemetry`] serves a whole process (gateway and sidecars of `infermesh up`
//! share it); there is no global state.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod context;
pub mod export;
pub mod exposition;
mod fragments;
mod json_line;
pub mod metrics;
mod per_thread;
mod record;
mod requests;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::sync::Arc;

pub use context::TraceContext;
pub use infermesh_config::telemetry::ACCESS_LOG_FIELDS;
pub use metrics::{Kind, Metrics, Samples};
pub use record::{Decision, Peer, Protocol, Record, Reporter};

/// The telemetry of one process.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    spans: Option<export::SpanExporter>,
    access_log: Option<access_log::AccessLog>,
    /// Fraction of new traces sampled (0 when no exporter is configured).
    sampling: f64,
    /// `telemetry.enabled`: when false nothing is recorded.
    enabled: bool,
}

impl Default for Telemetry {
    /// Metrics only: no spans exported, no access log.
    fn default() -> Self {
        Telemetry {
            metrics: Arc::default(),
            spans: None,
            access_log: None,
            sampling: 0.0,
            enabled: true,
        }
    }
}

impl Telemetry {
    /// Starts what `config` asks for: the span exporter task and the access-log
    /// writer. Call inside a tokio runtime.
    pub fn start(config: &infermesh_config::telemetry::Telemetry) -> std::io::Result<Telemetry> {
        let metrics = Arc::new(Metrics::new());
        let spans = config
            .tracing
            .as_ref()
            .map(|t| export::SpanExporter::start(t, metrics.clone()));
        let access_log = match &config.access_log {
            Some(c) => Some(access_log::AccessLog::start(c, metrics.clone())?),
            None => None,
        };
        Ok(Telemetry {
            metrics,
            spans,
            sampling: config.tracing.as_ref().map_or(0.0, |t| t.sampling),
            access_log,
            enabled: config.enabled,
        })
    }

    /// Whether requests are recorded at all (`telemetry.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The probability with which a request without a trace decision is sampled.
    pub fn sampling(&self) -> f64 {
        self.sampling
    }

    /// Records one finished exchange in metrics, trace and access log.
    pub fn record(&self, r: &Record<'_>) {
        self.metrics.request(&r.metrics());
        if let (Some(spans), true) = (&self.spans, r.trace.sampled) {
            spans.submit(r.span());
        }
        if let Some(log) = &self.access_log {
            log.write(|fields, out, memo| r.log_into(fields, out, memo));
        }
    }
}
