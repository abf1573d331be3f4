//! The metrics registry of one process (no global registry): Istio's standard request
//! metrics with Istio's names, types, buckets and labels — so the Istio dashboards
//! people run keep working — plus model labels, and infermesh's own counters.
//!
//! Every label value comes from the config or a closed set (an unknown model is
//! `unknown`, signatures are capped per model), so cardinality is bounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The maps on the request path hash with foldhash: SipHash over a label set's ~20
/// strings was a third of what the metrics cost a request. (Label values come from
/// the config or closed sets, so flooding is not a concern; collisions are handled.)
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Istio's default duration buckets, in milliseconds.
const DURATION_MS_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Istio's byte-size buckets: 1 B to 1 GB by powers of ten.
const BYTES_BUCKETS: &[f64] = &[1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Distinct signature names counted per model; later ones count as `other`.
const MAX_SIGNATURES_PER_MODEL: usize = 16;

/// A model version as a label value: the number, or `unknown`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct VersionLabel(pub Option<i64>);

impl EncodeLabelValue for VersionLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        match self.0 {
            Some(v) => write!(encoder, "{v}"),
            None => encoder.write_str("unknown"),
        }
    }
}

/// The labels of Istio's request metrics, plus the model's (owned: what the registry
/// keeps for each series).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IstioLabels {
    pub reporter: &'static str,
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_service: String,
    pub destination_version: VersionLabel,
    pub request_protocol: &'static str,
    pub response_code: u16,
    pub grpc_response_status: &'static str,
    pub response_flags: &'static str,
    pub connection_security_policy: &'static str,
    pub model_name: String,
    pub model_version: VersionLabel,
    pub model_signature: String,
    pub model_api: &'static str,
}

/// The same labels borrowed, as a request has them: looked up without allocating;
/// turned into [`IstioLabels`] only the first time a label set is seen.
#[derive(Clone, Copy, Debug)]
pub struct LabelRefs<'a> {
    pub reporter: &'static str,
    pub source_workload: &'a str,
    pub source_workload_namespace: &'a str,
    pub source_principal: &'a str,
    pub destination_workload: &'a str,
    pub destination_workload_namespace: &'a str,
    pub destination_principal: &'a str,
    pub destination_service: &'a str,
    pub version: Option<i64>,
    pub request_protocol: &'static str,
    pub response_code: u16,
    pub grpc_response_status: &'static str,
    pub response_flags: &'static str,
    pub connection_security_policy: &'static str,
    pub model_name: &'a str,
    pub model_signature: &'a str,
    pub model_api: &'static str,
}

impl LabelRefs<'_> {
    fn key(&self) -> u64 {
        let mut h = foldhash::fast::FixedState::with_seed(0x1e57_1a6e_15e7_1e5d).build_hasher();
        (
            self.reporter,
            self.source_workload,
            self.source_workload_namespace,
        )
            .hash(&mut h);
        (self.source_principal, self.destination_workload).hash(&mut h);
        (
            self.destination_workload_namespace,
            self.destination_principal,
        )
            .hash(&mut h);
        (
            self.destination_service,
            self.version,
            self.request_protocol,
        )
            .hash(&mut h);
        (
            self.response_code,
            self.grpc_response_status,
            self.response_flags,
        )
            .hash(&mut h);
        (self.connection_security_policy, self.model_name).hash(&mut h);
        (self.model_signature, self.model_api).hash(&mut h);
        h.finish()
    }

    fn matches(&self, l: &IstioLabels) -> bool {
        self.reporter == l.reporter
            && self.response_code == l.response_code
            && self.version == l.model_version.0
            && self.grpc_response_status == l.grpc_response_status
            && self.response_flags == l.response_flags
            && self.request_protocol == l.request_protocol
            && self.model_api == l.model_api
            && self.connection_security_policy == l.connection_security_policy
            && self.model_name == l.model_name
            && self.model_signature == l.model_signature
            && self.source_workload == l.source_workload
            && self.source_workload_namespace == l.source_workload_namespace
            && self.source_principal == l.source_principal
            && self.destination_workload == l.destination_workload
            && self.destination_workload_namespace == l.destination_workload_namespace
            && self.destination_principal == l.destination_principal
            && self.destination_service == l.destination_service
    }

    fn owned(self) -> IstioLabels {
        IstioLabels {
            reporter: self.reporter,
            source_workload: self.source_workload.to_owned(),
            source_workload_namespace: self.source_workload_namespace.to_owned(),
            source_principal: self.source_principal.to_owned(),
            destination_workload: self.destination_workload.to_owned(),
            destination_workload_namespace: self.destination_workload_namespace.to_owned(),
            destination_principal: self.destination_principal.to_owned(),
            destination_service: self.destination_service.to_owned(),
            destination_version: VersionLabel(self.version),
            request_protocol: self.request_protocol,
            response_code: self.response_code,
            grpc_response_status: self.grpc_response_status,
            response_flags: self.response_flags,
            connection_security_policy: self.connection_security_policy,
            model_name: self.model_name.to_owned(),
            model_version: VersionLabel(self.version),
            model_signature: self.model_signature.to_owned(),
            model_api: self.model_api,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    reporter: &'static str,
    action: &'static str,
    policy: String,
}

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

/// The four Istio series of one label set (clones share the registered values).
#[derive(Clone, Debug)]
struct Series {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl Series {
    fn observe(&self, o: &Observation) {
        self.requests.inc();
        self.duration.observe(o.duration_ms);
        self.request_bytes.observe(o.request_bytes as f64);
        self.response_bytes.observe(o.response_bytes as f64);
    }
}

/// One request's numbers for the Istio metrics.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// Every metric of the process; shared by its gateway and sidecars.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<IstioLabels, Counter>,
    duration: Histograms,
    request_bytes: Histograms,
    response_bytes: Histograms,
    /// Hash of a label set → its series (a list, for hash collisions), so a request
    /// costs one lookup without allocating, not four.
    series: RwLock<FastMap<u64, Vec<(IstioLabels, Series)>>>,
    /// Per model, the signature names counted so far (at most 16).
    signatures: RwLock<FastMap<String, Vec<String>>>,
    decisions: Family<DecisionLabels, Counter>,
    /// Policy name → its decision counters by (reporter, action), found without
    /// allocating.
    decision_counters: RwLock<FastMap<String, [Counter; 4]>>,
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

type Histograms = Family<IstioLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_MS_BUCKETS.iter().copied())
}

fn bytes_histogram() -> Histogram {
    Histogram::new(BYTES_BUCKETS.iter().copied())
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<IstioLabels, Counter>::default();
        let duration: Histograms = Family::new_with_constructor(duration_histogram);
        let request_bytes: Histograms = Family::new_with_constructor(bytes_histogram);
        let response_bytes: Histograms = Family::new_with_constructor(bytes_histogram);
        registry.register(
            "istio_requests",
            "Requests handled, by source, destination, response and model (Istio standard metric)",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds from first byte in to last byte out (Istio standard metric)",
            duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body size in bytes (Istio standard metric)",
            request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body size in bytes (Istio standard metric)",
            response_bytes.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "infermesh_authz_decisions",
            "Authorization decisions by action (allow, deny) and deciding policy (empty: the default)",
            decisions.clone(),
        );
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
            duration,
            request_bytes,
            response_bytes,
            series: RwLock::default(),
            signatures: RwLock::default(),
            decisions,
            decision_counters: RwLock::default(),
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

    /// Counts one request in Istio's four metrics.
    pub fn observe(&self, labels: &LabelRefs<'_>, o: Observation) {
        let key = labels.key();
        {
            // The common case: a known series, updated under the read lock (no clone
            // of its four handles: eight reference-count updates on cache lines that
            // both worker threads share).
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, series)) = map
                .get(&key)
                .and_then(|list| list.iter().find(|(l, _)| labels.matches(l)))
            {
                series.observe(&o);
                return;
            }
        }
        // A new label set: its four series are created once (the families own them).
        let owned = labels.owned();
        let series = Series {
            requests: self.requests.get_or_create(&owned).clone(),
            duration: self.duration.get_or_create(&owned).clone(),
            request_bytes: self.request_bytes.get_or_create(&owned).clone(),
            response_bytes: self.response_bytes.get_or_create(&owned).clone(),
        };
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(key).or_default();
        if !list.iter().any(|(l, _)| labels.matches(l)) {
            list.push((owned, series.clone()));
        }
        drop(map);
        series.observe(&o);
    }

    /// Whether a request's signature name may be a label value: one of the first 16
    /// names seen for the model (else the request counts as `other`).
    pub fn signature_counted(&self, model: &str, signature: &str) -> bool {
        {
            let seen = self.signatures.read().unwrap_or_else(|e| e.into_inner());
            if let Some(names) = seen.get(model) {
                if names.iter().any(|n| n == signature) {
                    return true;
                }
                if names.len() >= MAX_SIGNATURES_PER_MODEL {
                    return false;
                }
            }
        }
        let mut seen = self.signatures.write().unwrap_or_else(|e| e.into_inner());
        let names = seen.entry(model.to_owned()).or_default();
        if names.iter().any(|n| n == signature) {
            return true;
        }
        if names.len() < MAX_SIGNATURES_PER_MODEL {
            names.push(signature.to_owned());
            return true;
        }
        false
    }

    pub fn decision(&self, reporter: &'static str, allowed: bool, policy: Option<&str>) {
        let policy = policy.unwrap_or("");
        let index = usize::from(reporter == "destination") * 2 + usize::from(allowed);
        if let Some(counters) = self
            .decision_counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(policy)
        {
            counters[index].inc();
            return;
        }
        let counter = |reporter, action| {
            let labels = DecisionLabels {
                reporter,
                action,
                policy: policy.to_owned(),
            };
            self.decisions.get_or_create(&labels).clone()
        };
        let counters = [
            counter("source", "deny"),
            counter("source", "allow"),
            counter("destination", "deny"),
            counter("destination", "allow"),
        ];
        counters[index].inc();
        self.decision_counters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(policy.to_owned())
            .or_insert(counters);
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
    fn signatures_are_capped_per_model() {
        let metrics = Metrics::new();
        for i in 0..16 {
            assert!(metrics.signature_counted("m", &format!("sig{i}")));
        }
        assert!(
            !metrics.signature_counted("m", "sig16"),
            "the 17th name is `other`"
        );
        assert!(metrics.signature_counted("m", "sig3"), "known names stay");
        assert!(
            metrics.signature_counted("other-model", "sig16"),
            "the cap is per model"
        );
    }

    #[test]
    fn decisions_count_by_reporter_action_and_policy() {
        let metrics = Metrics::new();
        metrics.decision("source", true, Some("p"));
        metrics.decision("source", true, Some("p"));
        metrics.decision("destination", false, None);
        let text = metrics.prometheus_text();
        assert!(
            text.contains(
                r#"infermesh_authz_decisions_total{reporter="source",action="allow",policy="p"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"infermesh_authz_decisions_total{reporter="destination",action="deny",policy=""} 1"#), "{text}");
    }

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
