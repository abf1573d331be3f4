//! The metrics registry of one process (no global registry): Istio's standard request
//! metrics with Istio's names, types, buckets and labels — so the Istio dashboards
//! people run keep working — plus model labels, and infermesh's own counters.
//!
//! Every label value comes from the config or a closed set (an unknown model is
//! `unknown`, signatures are capped per model), so cardinality is bounded.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::requests::{Request, RequestMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JwtLabels {
    issuer: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    reporter: &'static str,
    destination_workload: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    model_name: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    pub(crate) reason: &'static str,
}

/// Every metric of the process; shared by its gateway and sidecars.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Istio's request metrics and the authorization decisions, counted per thread
    /// (a collector in `registry`).
    requests: Arc<RequestMetrics>,
    jwt: Family<JwtLabels, Counter>,
    retries: Family<UpstreamLabels, Counter>,
    connect_failures: Family<UpstreamLabels, Counter>,
    mirrors: Family<MirrorLabels, Counter>,
    pub(crate) spans_exported: Counter,
    pub(crate) spans_dropped: Family<DropLabels, Counter>,
    pub(crate) access_log_dropped: Counter,
    pub(crate) access_log_lines: Counter<u64, AtomicU64>,
    /// Values other components own (the audit trail, certificates), read at scrape.
    external: Mutex<Vec<External>>,
}

/// The kind of an externally owned metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Samples of an externally owned metric: label pairs and value.
pub type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// A metric whose value another component keeps, read when metrics are scraped.
struct External {
    /// Without `_total` for counters (it is added).
    name: &'static str,
    help: &'static str,
    kind: Kind,
    read: Box<dyn Fn() -> Samples + Send + Sync>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("name", &self.name)
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Arc::new(RequestMetrics::default());
        registry.register_collector(Box::new(requests.clone()));
        let jwt = Family::<JwtLabels, Counter>::default();
        registry.register(
            "infermesh_jwt_validations",
            "Bearer tokens checked, by issuer and result (valid, invalid)",
            jwt.clone(),
        );
        let retries = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "infermesh_upstream_retries",
            "Upstream attempts after the first, by destination workload",
            retries.clone(),
        );
        let connect_failures = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "infermesh_upstream_connect_failures",
            "Upstream connection attempts that failed, by destination workload",
            connect_failures.clone(),
        );
        let mirrors = Family::<MirrorLabels, Counter>::default();
        registry.register(
            "infermesh_mirror_requests",
            "Mirrored copies by model and result (sent, skipped: body too large, denied)",
            mirrors.clone(),
        );
        let spans_exported = Counter::default();
        registry.register(
            "infermesh_trace_spans_exported",
            "Spans accepted by the OTLP collector",
            spans_exported.clone(),
        );
        let spans_dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "infermesh_trace_spans_dropped",
            "Spans not exported, by reason (queue_full: the collector is slow or down; export_failed)",
            spans_dropped.clone(),
        );
        let access_log_lines = Counter::default();
        registry.register(
            "infermesh_access_log_lines",
            "Access-log lines written",
            access_log_lines.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "infermesh_access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            jwt,
            retries,
            connect_failures,
            mirrors,
            spans_exported,
            spans_dropped,
            access_log_dropped,
            access_log_lines,
            external: Mutex::default(),
        }
    }

    /// Adds a metric another component keeps (e.g. the audit trail's backlog): `read`
    /// is called at every scrape. `name` follows Prometheus naming; counters get
    /// `_total` appended.
    pub fn external(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.external_samples(name, help, kind, move || vec![(Vec::new(), read())]);
    }

    /// As [`Metrics::external`], for a metric with labels: `read` returns every
    /// sample (label values must come from config, not from requests).
    pub fn external_samples(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        read: impl Fn() -> Samples + Send + Sync + 'static,
    ) {
        self.external
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(External {
                name,
                help,
                kind,
                read: Box::new(read),
            });
    }

    /// Counts one finished request: Istio's four metrics, its signature name and
    /// its authorization decision.
    pub(crate) fn request(&self, r: &Request<'_>) {
        self.requests.record(r);
    }

    /// `issuer` must be a configured issuer (or `unknown`), never the token's claim.
    pub fn jwt(&self, issuer: &str, valid: bool) {
        let labels = JwtLabels {
            issuer: issuer.to_owned(),
            result: if valid { "valid" } else { "invalid" },
        };
        self.jwt.get_or_create(&labels).inc();
    }

    pub fn upstream(&self, reporter: &'static str, workload: &str, retries: u32, failures: u32) {
        let labels = UpstreamLabels {
            reporter,
            destination_workload: workload.to_owned(),
        };
        if retries > 0 {
            self.retries
                .get_or_create(&labels)
                .inc_by(u64::from(retries));
        }
        if failures > 0 {
            self.connect_failures
                .get_or_create(&labels)
                .inc_by(u64::from(failures));
        }
    }

    pub fn mirror(&self, model: &str, result: &'static str) {
        let labels = MirrorLabels {
            model_name: model.to_owned(),
            result,
        };
        self.mirrors.get_or_create(&labels).inc();
    }

    /// The registry in OpenMetrics text (`# EOF` terminated).
    pub fn openmetrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
        {
            tracing::warn!("encoding metrics failed: {e}");
        }
        for m in self
            .external
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let (kind, sample) = match m.kind {
                Kind::Counter => ("counter", format!("{}_total", m.name)),
                Kind::Gauge => ("gauge", m.name.to_owned()),
            };
            let _ = write!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} {kind}\n",
                name = m.name,
                help = m.help,
            );
            for (labels, value) in (m.read)() {
                out.push_str(&sample);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let v = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        let _ = write!(out, "{k}=\"{v}\"");
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out.push_str("# EOF\n");
        out
    }

    /// The registry in the Prometheus text format 0.0.4.
    pub fn prometheus_text(&self) -> String {
        crate::exposition::to_prometheus_text(&self.openmetrics())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn external_metrics_are_read_at_every_scrape() {
        let metrics = Metrics::new();
        let backlog = Arc::new(AtomicU64::new(3));
        let b = backlog.clone();
        metrics.external(
            "infermesh_test_backlog_records",
            "Records waiting",
            Kind::Gauge,
            move || b.load(Ordering::Relaxed) as f64,
        );
        metrics.external("infermesh_test_failures", "Failures", Kind::Counter, || 2.0);
        metrics.external_samples("infermesh_test_expiry", "Expiry", Kind::Gauge, || {
            vec![
                (
                    vec![("identity", "spiffe://td/ns/a/sa/\"b\"".to_owned())],
                    5.0,
                ),
                (vec![("identity", "x".to_owned())], 6.0),
            ]
        });
        let om = metrics.openmetrics();
        assert!(
            om.contains(
                "# TYPE infermesh_test_backlog_records gauge\ninfermesh_test_backlog_records 3\n"
            ),
            "{om}"
        );
        assert!(
            om.contains(
                "# TYPE infermesh_test_failures counter\ninfermesh_test_failures_total 2\n"
            ),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"));
        assert!(
            om.contains("infermesh_test_expiry{identity=\"spiffe://td/ns/a/sa/\\\"b\\\"\"} 5\ninfermesh_test_expiry{identity=\"x\"} 6\n"),
            "{om}"
        );
        backlog.store(7, Ordering::Relaxed);
        let text = metrics.prometheus_text();
        assert!(
            text.contains("infermesh_test_backlog_records 7\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE infermesh_test_failures_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }
}
