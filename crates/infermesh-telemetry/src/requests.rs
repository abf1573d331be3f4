//! What every request adds to the metrics: Istio's four request metrics
//! (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`), the authorization decisions, and
//! the signature names a model has been seen with (capped per model).
//!
//! Counts are kept per recording thread ([`PerThread`]) as plain numbers: a request
//! takes one uncontended lock, where shared counters and histogram locks made each
//! update move a cache line between the worker threads' cores. A thread compares a
//! request's labels with the few label sets it counted last before it hashes them
//! to look the series up. A scrape adds the threads' counts up ([`RequestMetrics`]
//! is a `prometheus-client` collector).

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use crate::per_thread::PerThread;

/// The maps on the request path hash with foldhash: SipHash over a label set's ~20
/// strings was a third of what the metrics cost a request. (Label values come from
/// the config or closed sets, so flooding is not a concern; collisions are handled.)
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Istio's default duration buckets, in milliseconds.
pub(crate) const DURATION_MS_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Istio's byte-size buckets: 1 B to 1 GB by powers of ten.
pub(crate) const BYTES_BUCKETS: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
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

/// The labels of Istio's request metrics, plus the model's (owned: what is kept for
/// each series).
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
/// turned into [`IstioLabels`] only the first time a thread sees a label set.
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
    /// The map key of a label set: each string by a fingerprint (its length and
    /// its first and last eight bytes), not all its bytes. Label sets that share a
    /// key share a map entry's list, where [`LabelRefs::matches`] tells them apart.
    fn key(&self) -> u64 {
        let mut h = foldhash::fast::FixedState::with_seed(0x1e57_1a6e_15e7_1e5d).build_hasher();
        for s in [
            self.reporter,
            self.source_workload,
            self.source_workload_namespace,
            self.source_principal,
            self.destination_workload,
            self.destination_workload_namespace,
            self.destination_principal,
            self.destination_service,
            self.request_protocol,
            self.grpc_response_status,
            self.response_flags,
            self.connection_security_policy,
            self.model_name,
            self.model_signature,
            self.model_api,
        ] {
            h.write_u64(fingerprint(s.as_bytes()));
        }
        h.write_u64(u64::from(self.response_code));
        h.write_u64(self.version.map_or(u64::MAX, |v| v as u64));
        h.write_u8(u8::from(self.version.is_some()));
        h.finish()
    }

    fn matches(&self, l: &IstioLabels) -> bool {
        self.response_code == l.response_code
            && self.version == l.model_version.0
            && same_word(self.reporter, l.reporter)
            && same_word(self.grpc_response_status, l.grpc_response_status)
            && same_word(self.response_flags, l.response_flags)
            && same_word(self.request_protocol, l.request_protocol)
            && same_word(self.model_api, l.model_api)
            && same_word(
                self.connection_security_policy,
                l.connection_security_policy,
            )
            && same(self.model_name, &l.model_name)
            && same(self.model_signature, &l.model_signature)
            && same(self.source_workload, &l.source_workload)
            && same(self.source_workload_namespace, &l.source_workload_namespace)
            && same(self.source_principal, &l.source_principal)
            && same(self.destination_workload, &l.destination_workload)
            && same(
                self.destination_workload_namespace,
                &l.destination_workload_namespace,
            )
            && same(self.destination_principal, &l.destination_principal)
            && same(self.destination_service, &l.destination_service)
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

/// Eight bytes at `at`.
#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A string's length and its first and last eight bytes (all of it when shorter),
/// folded into one word.
#[inline(always)]
fn fingerprint(b: &[u8]) -> u64 {
    let n = b.len();
    let ends = if n >= 8 {
        word(b, 0) ^ word(b, n - 8).rotate_left(32)
    } else {
        b.iter().fold(0, |w, &c| (w << 8) | u64::from(c))
    };
    ends ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// [`same`] for the program's own words (`&'static str`): usually the very same
/// string, found without reading it.
#[inline(always)]
fn same_word(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || same(a, b)
}

/// String equality eight bytes at a time, inline (label values are short: a call
/// to `memcmp` per label cost more than the comparison).
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let half = |b: &[u8], at: usize| {
        let mut w = [0; 4];
        w.copy_from_slice(&b[at..at + 4]);
        u32::from_le_bytes(w)
    };
    match n {
        0 => return true,
        // First, middle and last byte: all of them.
        1..=3 => return a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        // First and last four bytes (overlapping): all of them.
        4..=7 => return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {}
    }
    // Whole words, then the last eight bytes (overlapping the last word).
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// One request's numbers for the Istio metrics.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// A histogram's counts: sum, count, and one count per bucket (the last is `+Inf`).
#[derive(Clone, Copy, Debug)]
struct Buckets<const N: usize> {
    sum: f64,
    count: u64,
    counts: [u64; N],
}

impl<const N: usize> Default for Buckets<N> {
    fn default() -> Self {
        Buckets {
            sum: 0.0,
            count: 0,
            counts: [0; N],
        }
    }
}

impl<const N: usize> Buckets<N> {
    /// Counts `v` in the first bucket whose bound is at least `v` (`bounds` are the
    /// N − 1 finite bounds; above them, and NaN, is `+Inf`), as `prometheus-client`'s
    /// histogram does.
    fn observe(&mut self, bounds: &[f64], v: f64) {
        self.sum += v;
        self.count += 1;
        let i = bounds.iter().position(|&b| b >= v).unwrap_or(N - 1);
        self.counts[i] += 1;
    }

    fn add(&mut self, other: &Self) {
        self.sum += other.sum;
        self.count += other.count;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    fn encode(
        &self,
        bounds: &[f64],
        encoder: &mut prometheus_client::encoding::MetricEncoder,
    ) -> std::fmt::Result {
        let buckets: Vec<(f64, u64)> = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &buckets, None)
    }
}

/// The four Istio series of one label set.
#[derive(Clone, Copy, Debug, Default)]
struct Cells {
    requests: u64,
    duration: Buckets<20>,
    request_bytes: Buckets<11>,
    response_bytes: Buckets<11>,
}

impl Cells {
    fn observe(&mut self, o: &Observation) {
        self.requests += 1;
        self.duration.observe(&DURATION_MS_BUCKETS, o.duration_ms);
        self.request_bytes
            .observe(&BYTES_BUCKETS, o.request_bytes as f64);
        self.response_bytes
            .observe(&BYTES_BUCKETS, o.response_bytes as f64);
    }

    fn add(&mut self, other: &Cells) {
        self.requests += other.requests;
        self.duration.add(&other.duration);
        self.request_bytes.add(&other.request_bytes);
        self.response_bytes.add(&other.response_bytes);
    }
}

/// A series as one thread keeps it.
#[derive(Debug)]
struct Series {
    labels: Arc<IstioLabels>,
    /// The label set's place in [`Known::labels`].
    id: usize,
    cells: Cells,
}

/// One thread's counts.
#[derive(Debug, Default)]
struct Counts {
    /// Every series this thread counts, in the order it first saw them.
    series: Vec<Series>,
    /// Hash of a label set → places in `series` (a list, for hash collisions).
    by_key: FastMap<u64, Vec<usize>>,
    /// Places in `series` of the label sets counted last, most recent first (`None`
    /// until as many were seen): a hop's requests mostly repeat one of a few label
    /// sets, found here by comparing labels, without hashing them.
    recent: [Option<usize>; RECENT],
    /// Policy name (empty: the default) → decisions by (reporter, action), in the
    /// order of [`DECISIONS`].
    decisions: FastMap<Box<str>, [u64; 4]>,
    /// Per model, signature names known to be counted (a cache of
    /// [`Known::signatures`]).
    signatures: FastMap<Box<str>, Vec<Box<str>>>,
}

/// Label sets a thread looks at first (enough for `infermesh up`'s gateway and
/// sidecar, each with a canary, on one thread).
const RECENT: usize = 4;

impl Counts {
    /// The place of `labels`' series in `series`, added when new (its key, a hash,
    /// is computed only when the label set is not one of the recent ones).
    fn series_of(&mut self, metrics: &RequestMetrics, labels: &LabelRefs<'_>) -> usize {
        let series = &self.series;
        let hit = self.recent.iter().position(|at| {
            at.and_then(|at| series.get(at))
                .is_some_and(|s| labels.matches(&s.labels))
        });
        let (at, from) = match hit {
            Some(i) => (self.recent[i].expect("a recent series"), i),
            None => (self.lookup(metrics, labels), RECENT - 1),
        };
        // Most recent first.
        self.recent.copy_within(0..from, 1);
        self.recent[0] = Some(at);
        at
    }

    fn lookup(&mut self, metrics: &RequestMetrics, labels: &LabelRefs<'_>) -> usize {
        let key = labels.key();
        let series = &self.series;
        if let Some(&at) = self.by_key.get(&key).and_then(|places| {
            places
                .iter()
                .find(|&&at| labels.matches(&series[at].labels))
        }) {
            return at;
        }
        let (id, owned) = metrics.known_series(labels, key);
        let at = self.series.len();
        self.series.push(Series {
            labels: owned,
            id,
            cells: Cells::default(),
        });
        self.by_key.entry(key).or_default().push(at);
        at
    }
}

/// The (reporter, action) pairs of a policy's decision counters.
const DECISIONS: [(&str, &str); 4] = [
    ("source", "deny"),
    ("source", "allow"),
    ("destination", "deny"),
    ("destination", "allow"),
];

/// What all threads share, touched only when a thread sees something new.
#[derive(Debug, Default)]
struct Known {
    /// Every label set seen, in the order first seen (a series' id is its place).
    labels: Vec<Arc<IstioLabels>>,
    by_key: FastMap<u64, Vec<usize>>,
    /// Per model, the signature names counted so far (at most 16).
    signatures: FastMap<String, Vec<String>>,
}

/// The request metrics of one process (see the module header).
#[derive(Debug)]
pub(crate) struct RequestMetrics {
    counts: PerThread<Counts>,
    known: Mutex<Known>,
}

/// What a finished request adds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a> {
    pub labels: LabelRefs<'a>,
    /// Model and signature as the request named them, when both are known: the
    /// signature label is the name if it is one of the model's first 16, else `other`.
    pub signature: Option<(&'a str, &'a str)>,
    pub observation: Observation,
    /// Reporter (`source`/`destination`), allowed, deciding policy (`""`: default).
    pub decision: Option<(&'static str, bool, &'a str)>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            counts: PerThread::new(),
            known: Mutex::default(),
        }
    }
}

impl RequestMetrics {
    /// Counts one request: one lock of the calling thread's own counts.
    pub(crate) fn record(&self, r: &Request<'_>) {
        let mut counts = self.counts.mine();
        // The labels as given, unless the signature label is to be set (copied only
        // then: a label set is ~250 bytes).
        let resolved;
        let labels = match r.signature {
            Some((model, signature)) => {
                let counted = self.signature_counted(&mut counts, model, signature);
                resolved = LabelRefs {
                    model_signature: if counted { signature } else { "other" },
                    ..r.labels
                };
                &resolved
            }
            None => &r.labels,
        };
        let at = counts.series_of(self, labels);
        counts.series[at].cells.observe(&r.observation);
        if let Some((reporter, allowed, policy)) = r.decision {
            let index = usize::from(reporter == "destination") * 2 + usize::from(allowed);
            match counts.decisions.get_mut(policy) {
                Some(c) => c[index] += 1,
                None => {
                    let mut c = [0; 4];
                    c[index] = 1;
                    counts.decisions.insert(policy.into(), c);
                }
            }
        }
    }

    /// The id and shared labels of a label set, registered the first time any
    /// thread sees it.
    fn known_series(&self, labels: &LabelRefs<'_>, key: u64) -> (usize, Arc<IstioLabels>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let Known {
            labels: all,
            by_key,
            ..
        } = &mut *known;
        let ids = by_key.entry(key).or_default();
        if let Some(&id) = ids.iter().find(|&&id| labels.matches(&all[id])) {
            return (id, all[id].clone());
        }
        let id = all.len();
        all.push(Arc::new(labels.owned()));
        ids.push(id);
        (id, all[id].clone())
    }

    /// Whether a signature name may be a label value: one of the first 16 names seen
    /// for the model (else the request counts as `other`).
    fn signature_counted(&self, counts: &mut Counts, model: &str, signature: &str) -> bool {
        if counts
            .signatures
            .get(model)
            .is_some_and(|names| names.iter().any(|n| &**n == signature))
        {
            return true;
        }
        let counted = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let names = known.signatures.entry(model.to_owned()).or_default();
            if names.iter().any(|n| n == signature) {
                true
            } else if names.len() < MAX_SIGNATURES_PER_MODEL {
                names.push(signature.to_owned());
                true
            } else {
                false
            }
        };
        if counted {
            counts
                .signatures
                .entry(model.into())
                .or_default()
                .push(signature.into());
        }
        counted
    }

    /// Every series with its counts added up over the threads, in the order first
    /// seen.
    fn totals(&self) -> Vec<(Arc<IstioLabels>, Cells)> {
        let mut sums: Vec<Option<Cells>> = Vec::new();
        self.counts.each(|counts| {
            for series in &counts.series {
                if sums.len() <= series.id {
                    sums.resize(series.id + 1, None);
                }
                sums[series.id]
                    .get_or_insert_with(Cells::default)
                    .add(&series.cells);
            }
        });
        // Read after the threads' counts: every id they hold is registered by now.
        let labels = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .labels
            .clone();
        sums.into_iter()
            .enumerate()
            .filter_map(|(id, cells)| Some((labels.get(id)?.clone(), cells?)))
            .collect()
    }

    /// Decision counts per policy added up over the threads, by policy name.
    fn decision_totals(&self) -> Vec<(Box<str>, [u64; 4])> {
        let mut sums: FastMap<Box<str>, [u64; 4]> = FastMap::default();
        self.counts.each(|counts| {
            for (policy, c) in &counts.decisions {
                let sum = sums.entry(policy.clone()).or_default();
                for (s, n) in sum.iter_mut().zip(c) {
                    *s += n;
                }
            }
        });
        let mut sums: Vec<_> = sums.into_iter().collect();
        sums.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        sums
    }
}

#[derive(Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    reporter: &'static str,
    action: &'static str,
    policy: String,
}

/// One histogram family: `which` of every series' cells.
fn histograms<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    totals: &[(Arc<IstioLabels>, Cells)],
    which: impl Fn(&Cells) -> &Buckets<N>,
    bounds: &[f64],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, cells) in totals {
        let mut series = family.encode_family(&**labels)?;
        which(cells).encode(bounds, &mut series)?;
    }
    Ok(())
}

/// (Help texts end in a full stop, as the registry's own do.)
impl Collector for RequestMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let totals = self.totals();
        if !totals.is_empty() {
            let mut family = encoder.encode_descriptor(
                "istio_requests",
                "Requests handled, by source, destination, response and model (Istio standard metric).",
                None,
                MetricType::Counter,
            )?;
            for (labels, cells) in &totals {
                family
                    .encode_family(&**labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&cells.requests, None)?;
            }
            histograms(
                &mut encoder,
                "istio_request_duration_milliseconds",
                "Request duration in milliseconds from first byte in to last byte out (Istio standard metric).",
                &totals,
                |c| &c.duration,
                &DURATION_MS_BUCKETS,
            )?;
            histograms(
                &mut encoder,
                "istio_request_bytes",
                "Request body size in bytes (Istio standard metric).",
                &totals,
                |c| &c.request_bytes,
                &BYTES_BUCKETS,
            )?;
            histograms(
                &mut encoder,
                "istio_response_bytes",
                "Response body size in bytes (Istio standard metric).",
                &totals,
                |c| &c.response_bytes,
                &BYTES_BUCKETS,
            )?;
        }
        let decisions = self.decision_totals();
        if !decisions.is_empty() {
            let mut family = encoder.encode_descriptor(
                "infermesh_authz_decisions",
                "Authorization decisions by action (allow, deny) and deciding policy (empty: the default).",
                None,
                MetricType::Counter,
            )?;
            for (policy, counts) in &decisions {
                for (&(reporter, action), n) in DECISIONS.iter().zip(counts) {
                    let labels = DecisionLabels {
                        reporter,
                        action,
                        policy: policy.to_string(),
                    };
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(n, None)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    fn labels(code: u16, model: &str) -> LabelRefs<'_> {
        LabelRefs {
            reporter: "destination",
            source_workload: "gateway",
            source_workload_namespace: "ml",
            source_principal: "spiffe://td/ns/ml/sa/gateway",
            destination_workload: "tfserving-a",
            destination_workload_namespace: "ml",
            destination_principal: "spiffe://td/ns/ml/sa/a",
            destination_service: "tfserving-a.ml.svc.cluster.local",
            version: Some(1),
            request_protocol: "http",
            response_code: code,
            grpc_response_status: "",
            response_flags: "-",
            connection_security_policy: "mutual_tls",
            model_name: model,
            model_signature: "",
            model_api: "predict",
        }
    }

    fn request<'a>(labels: LabelRefs<'a>, o: Observation) -> Request<'a> {
        Request {
            labels,
            signature: None,
            observation: o,
            decision: None,
        }
    }

    /// One small request's numbers.
    const ONE: Observation = Observation {
        duration_ms: 1.0,
        request_bytes: 1,
        response_bytes: 1,
    };

    /// Request metrics and a registry that scrapes them.
    fn registered() -> (Arc<RequestMetrics>, Registry) {
        let metrics = Arc::new(RequestMetrics::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics.clone()));
        (metrics, registry)
    }

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, registry).unwrap();
        out
    }

    /// The same observations, recorded per thread here and in `prometheus-client`'s
    /// own counter and histograms in one thread, scrape to the same lines: names,
    /// labels, buckets (bounds included), sums and counts.
    #[test]
    fn per_thread_counts_scrape_like_prometheus_client_metrics() {
        let mut rng = fastrand::Rng::with_seed(7);
        let codes = [200, 404, 503];
        let models = ["m", "n"];
        let durations: Vec<f64> = DURATION_MS_BUCKETS
            .iter()
            .flat_map(|b| [*b, b + 0.25, b - 0.25])
            .chain([0.0, 7e6, 3.5])
            .collect();
        let sizes: Vec<u64> = BYTES_BUCKETS
            .iter()
            .flat_map(|b| [*b as u64, *b as u64 + 1, *b as u64 - 1])
            .chain([0, 5 << 30])
            .collect();
        // Sums stay exact (dyadic values well below 2^53), so the order in which the
        // threads' counts are added cannot change them; NaN gets a series of its own.
        let mut observations: Vec<(u16, &str, Observation)> = (0..3000)
            .map(|_| {
                (
                    codes[rng.usize(..codes.len())],
                    models[rng.usize(..models.len())],
                    Observation {
                        duration_ms: durations[rng.usize(..durations.len())],
                        request_bytes: sizes[rng.usize(..sizes.len())],
                        response_bytes: sizes[rng.usize(..sizes.len())],
                    },
                )
            })
            .collect();
        observations.push((
            200,
            "nan",
            Observation {
                duration_ms: f64::NAN,
                request_bytes: 3,
                response_bytes: 3,
            },
        ));

        // Ours: three threads, a third of the observations each.
        let ours = Arc::new(RequestMetrics::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ours.clone()));
        std::thread::scope(|s| {
            for part in observations.chunks(1000) {
                let ours = &ours;
                s.spawn(move || {
                    for (code, model, o) in part {
                        ours.record(&request(labels(*code, model), *o));
                    }
                });
            }
        });

        // prometheus-client's.
        let mut reference = Registry::default();
        let requests = Family::<IstioLabels, Counter>::default();
        type H = Family<IstioLabels, Histogram, fn() -> Histogram>;
        let duration: H = Family::new_with_constructor(|| Histogram::new(DURATION_MS_BUCKETS));
        let request_bytes: H = Family::new_with_constructor(|| Histogram::new(BYTES_BUCKETS));
        let response_bytes: H = Family::new_with_constructor(|| Histogram::new(BYTES_BUCKETS));
        reference.register(
            "istio_requests",
            "Requests handled, by source, destination, response and model (Istio standard metric)",
            requests.clone(),
        );
        reference.register(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds from first byte in to last byte out (Istio standard metric)",
            duration.clone(),
        );
        reference.register(
            "istio_request_bytes",
            "Request body size in bytes (Istio standard metric)",
            request_bytes.clone(),
        );
        reference.register(
            "istio_response_bytes",
            "Response body size in bytes (Istio standard metric)",
            response_bytes.clone(),
        );
        for (code, model, o) in &observations {
            let l = labels(*code, model).owned();
            requests.get_or_create(&l).inc();
            duration.get_or_create(&l).observe(o.duration_ms);
            request_bytes
                .get_or_create(&l)
                .observe(o.request_bytes as f64);
            response_bytes
                .get_or_create(&l)
                .observe(o.response_bytes as f64);
        }

        let sorted = |t: String| {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        let (ours, reference) = (sorted(text(&registry)), sorted(text(&reference)));
        assert_eq!(ours.len(), reference.len());
        assert!(ours.iter().any(|l| l.contains("le=\"+Inf\"")));
        assert!(ours.iter().any(|l| l.ends_with(" NaN")), "NaN's sum");
        for (a, b) in ours.iter().zip(&reference) {
            assert_eq!(a, b);
        }
    }

    /// The inline string comparison agrees with `==` on strings of every length up
    /// to 40, equal and differing in one byte anywhere; equal strings have equal
    /// fingerprints.
    #[test]
    fn inline_string_equality_agrees_with_eq() {
        let mut rng = fastrand::Rng::with_seed(13);
        for n in 0..40 {
            for _ in 0..200 {
                let a: String = (0..n).map(|_| rng.alphanumeric()).collect();
                assert!(same(&a, &a.clone()));
                assert_eq!(fingerprint(a.as_bytes()), fingerprint(a.clone().as_bytes()));
                if n > 0 {
                    let mut b = a.clone().into_bytes();
                    let i = rng.usize(..n);
                    b[i] = if b[i] == b'x' { b'y' } else { b'x' };
                    let b = String::from_utf8(b).unwrap();
                    assert_eq!(same(&a, &b), a == b, "{a} {b}");
                }
                let shorter = &a[..rng.usize(..=n)];
                assert_eq!(same(&a, shorter), a == shorter);
                let leaked: &'static str = String::leak(a.clone());
                let other: &'static str = String::leak(a.clone());
                assert!(same_word(leaked, other), "equal words at two addresses");
            }
        }
    }

    /// Label sets that come back after others (more than a thread looks at first),
    /// in bursts and alone, count exactly as a tally by the owned labels does:
    /// the recent label sets and the keyed lookup find the same series.
    #[test]
    fn recent_label_sets_count_like_a_fresh_lookup() {
        let mut rng = fastrand::Rng::with_seed(9);
        let models = ["m", "n", "a-longer-model-name"];
        let metrics = RequestMetrics::default();
        let mut tally: std::collections::HashMap<IstioLabels, u64> = Default::default();
        let mut last = labels(200, "m");
        for _ in 0..20_000 {
            if rng.u8(..4) != 0 {
                let mut l = labels([200, 404, 503][rng.usize(..3)], models[rng.usize(..3)]);
                l.version = [None, Some(1), Some(2)][rng.usize(..3)];
                l.reporter = ["source", "destination"][rng.usize(..2)];
                l.source_principal = ["unknown", "spiffe://td/ns/ml/sa/gateway"][rng.usize(..2)];
                last = l;
            }
            metrics.record(&request(last, ONE));
            *tally.entry(last.owned()).or_default() += 1;
        }
        let totals = metrics.totals();
        assert_eq!(totals.len(), tally.len());
        for (labels, cells) in totals {
            assert_eq!(Some(&cells.requests), tally.get(&*labels), "{labels:?}");
        }
    }

    /// Two label sets whose strings differ only in the middle have the same key:
    /// they still count as two series.
    #[test]
    fn label_sets_with_the_same_key_count_apart() {
        let (metrics, registry) = registered();
        let o = ONE;
        let (a, b) = (
            "spiffe://td/ns/aaa/sa/gateway-0",
            "spiffe://td/ns/bbb/sa/gateway-0",
        );
        let with = |principal| LabelRefs {
            source_principal: principal,
            ..labels(200, "m")
        };
        assert_eq!(with(a).key(), with(b).key());
        for _ in 0..3 {
            metrics.record(&request(with(a), o));
        }
        metrics.record(&request(with(b), o));
        let t = text(&registry);
        let count = |principal: &str| {
            t.lines()
                .find(|l| {
                    l.starts_with("istio_requests_total{")
                        && l.contains(&format!("source_principal=\"{principal}\""))
                })
                .unwrap_or_else(|| panic!("{principal} in {t}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!((count(a), count(b)), ("3".to_owned(), "1".to_owned()));
    }

    #[test]
    fn signatures_are_capped_per_model_across_threads() {
        let metrics = RequestMetrics::default();
        let counted = |model: &str, name: &str| {
            std::thread::scope(|s| {
                s.spawn(|| metrics.signature_counted(&mut metrics.counts.mine(), model, name))
                    .join()
                    .unwrap()
            })
        };
        for i in 0..16 {
            assert!(counted("m", &format!("sig{i}")));
        }
        assert!(!counted("m", "sig16"), "the 17th name is `other`");
        assert!(!counted("m", "sig16"), "and stays `other`");
        assert!(counted("m", "sig3"), "known names stay, on any thread");
        assert!(counted("other-model", "sig16"), "the cap is per model");
    }

    #[test]
    fn the_signature_label_is_the_name_or_other() {
        let (metrics, registry) = registered();
        let o = ONE;
        for i in 0..18 {
            let name = format!("sig{i}");
            metrics.record(&Request {
                signature: Some(("m", &name)),
                ..request(labels(200, "m"), o)
            });
        }
        let t = text(&registry);
        assert!(t.contains("model_signature=\"sig15\""), "{t}");
        assert!(!t.contains("model_signature=\"sig16\""), "{t}");
        let other = t
            .lines()
            .find(|l| {
                l.starts_with("istio_requests_total{") && l.contains("model_signature=\"other\"")
            })
            .unwrap_or_else(|| panic!("{t}"));
        assert!(other.ends_with(" 2"), "{other}");
    }

    #[test]
    fn decisions_count_by_reporter_action_and_policy_over_threads() {
        let (metrics, registry) = registered();
        let o = ONE;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for (reporter, allowed, policy) in
                        [("source", true, "p"), ("destination", false, "")]
                    {
                        metrics.record(&Request {
                            decision: Some((reporter, allowed, policy)),
                            ..request(labels(200, "m"), o)
                        });
                    }
                });
            }
        });
        let t = crate::exposition::to_prometheus_text(&text(&registry));
        for line in [
            r#"infermesh_authz_decisions_total{reporter="source",action="allow",policy="p"} 2"#,
            r#"infermesh_authz_decisions_total{reporter="source",action="deny",policy="p"} 0"#,
            r#"infermesh_authz_decisions_total{reporter="destination",action="deny",policy=""} 2"#,
            r#"istio_requests_total{reporter="destination","#,
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
    }
}
