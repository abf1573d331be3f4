//! TF Serving's monitoring metrics (`/monitoring/prometheus/metrics`), with the names
//! TF Serving uses plus a `model_version` label (tensorflow/serving#1970).
//!
//! TF Serving writes `:tensorflow:serving:request_count` without the `_total` suffix
//! that OpenMetrics counters get; dashboards query that exact name, so the counter is
//! exported untyped, which keeps the name. Label values come from the model config,
//! never from raw request input: an unknown model is counted as `unknown`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// Which API a request used, as TF Serving's `API` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Predict,
    Classify,
    Regress,
    GetModelMetadata,
    GetModelStatus,
}

impl Api {
    const ALL: usize = 5;

    fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Api::Predict => "predict",
            Api::Classify => "classify",
            Api::Regress => "regress",
            Api::GetModelMetadata => "metadata",
            Api::GetModelStatus => "status",
        }
    }
}

/// Where a request came in (`entrypoint` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entrypoint {
    Rest,
    Grpc,
}

impl Entrypoint {
    fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Entrypoint::Rest => "REST",
            Entrypoint::Grpc => "GRPC",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CountLabels {
    model_name: String,
    model_version: String,
    status: String,
}

// `API` is TF Serving's label name, upper case.
#[allow(non_snake_case)]
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    model_name: String,
    model_version: String,
    API: String,
    entrypoint: String,
}

#[allow(non_snake_case)]
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    model_name: String,
    model_version: String,
    API: String,
    runtime: String,
}

/// A counter exported without a type, so its name stays exactly as given.
#[derive(Clone, Debug, Default)]
struct Untyped(Counter);

impl TypedMetric for Untyped {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for Untyped {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0.get() as i64))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

fn latency_histogram() -> Histogram {
    // Microseconds, 10 µs to about 50 s, as TF Serving's latency buckets span.
    Histogram::new(exponential_buckets(10.0, 1.8, 27))
}

/// The handles request handlers record into.
#[derive(Clone, Debug)]
pub struct Metrics {
    request_count: Family<CountLabels, Untyped>,
    request_latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    runtime_latency: Family<RuntimeLabels, Histogram, fn() -> Histogram>,
    /// The families' metrics for served (model, version) pairs, looked up once: a
    /// request then records without building and hashing label sets. Each slot is
    /// filled on first use, so a label set appears in the families exactly when it
    /// would without the cache.
    served: Arc<RwLock<ServedByModel>>,
}

/// Model name → version → handles. Hashed with foldhash: the names come from the
/// model config, and this is looked up twice per request.
type ServedByModel = HashMap<String, HashMap<i64, Arc<Served>, FoldHash>, FoldHash>;
type FoldHash = foldhash::fast::RandomState;

/// Handles into the families for one served (model, version).
#[derive(Debug, Default)]
pub(crate) struct Served {
    /// `request_count` with status `OK`.
    ok_count: OnceLock<Untyped>,
    /// `request_latency` by API and entrypoint.
    request_latency: [OnceLock<Histogram>; Api::ALL * 2],
    /// `runtime_latency` by API.
    runtime_latency: [OnceLock<Histogram>; Api::ALL],
}

/// One finished request, as the metrics see it.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    /// The configured model name, or `None` when the request named an unknown model.
    pub model: Option<&'a str>,
    pub version: Option<i64>,
    pub api: Api,
    pub entrypoint: Entrypoint,
    /// `OK` or the TF error code name.
    pub status: &'static str,
    pub latency_us: f64,
}

impl Metrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            request_count: Family::default(),
            request_latency: Family::new_with_constructor(latency_histogram),
            runtime_latency: Family::new_with_constructor(latency_histogram),
            served: Arc::default(),
        };
        registry.register(
            ":tensorflow:serving:request_count",
            "The total number of requests",
            metrics.request_count.clone(),
        );
        registry.register(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request",
            metrics.request_latency.clone(),
        );
        registry.register(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime",
            metrics.runtime_latency.clone(),
        );
        metrics
    }

    /// The cached handles of a served (model, version).
    pub(crate) fn served(&self, model: &str, version: i64) -> Arc<Served> {
        if let Ok(served) = self.served.read()
            && let Some(handles) = served
                .get(model)
                .and_then(|by_version| by_version.get(&version))
        {
            return handles.clone();
        }
        let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
        served
            .entry(model.to_string())
            .or_default()
            .entry(version)
            .or_default()
            .clone()
    }

    pub fn record_request(&self, record: &RequestRecord<'_>) {
        self.record_request_in(record, None);
    }

    /// [`Metrics::record_request`], with the handles of the record's model and version
    /// when the caller has them already (from [`Metrics::served`]): one lookup per
    /// request instead of two.
    pub(crate) fn record_request_in(&self, record: &RequestRecord<'_>, served: Option<&Served>) {
        if let (Some(model), Some(version), "OK") = (record.model, record.version, record.status) {
            let looked_up;
            let served = match served {
                Some(served) => served,
                None => {
                    looked_up = self.served(model, version);
                    &looked_up
                }
            };
            served
                .ok_count
                .get_or_init(|| {
                    self.request_count
                        .get_or_create(&CountLabels {
                            model_name: model.to_string(),
                            model_version: version.to_string(),
                            status: record.status.to_string(),
                        })
                        .clone()
                })
                .0
                .inc();
            served.request_latency[record.api.index() * 2 + record.entrypoint.index()]
                .get_or_init(|| {
                    self.request_latency
                        .get_or_create(&LatencyLabels {
                            model_name: model.to_string(),
                            model_version: version.to_string(),
                            API: record.api.label().to_string(),
                            entrypoint: record.entrypoint.label().to_string(),
                        })
                        .clone()
                })
                .observe(record.latency_us);
            return;
        }
        let model_name = record.model.unwrap_or("unknown").to_string();
        let model_version = record.version.map(|v| v.to_string()).unwrap_or_default();
        self.request_count
            .get_or_create(&CountLabels {
                model_name: model_name.clone(),
                model_version: model_version.clone(),
                status: record.status.to_string(),
            })
            .0
            .inc();
        self.request_latency
            .get_or_create(&LatencyLabels {
                model_name,
                model_version,
                API: record.api.label().to_string(),
                entrypoint: record.entrypoint.label().to_string(),
            })
            .observe(record.latency_us);
    }

    pub fn record_runtime(&self, model: &str, version: i64, api: Api, latency_us: f64) {
        self.record_runtime_in(
            &self.served(model, version),
            model,
            version,
            api,
            latency_us,
        );
    }

    /// [`Metrics::record_runtime`] into the handles of `model` and `version`.
    pub(crate) fn record_runtime_in(
        &self,
        served: &Served,
        model: &str,
        version: i64,
        api: Api,
        latency_us: f64,
    ) {
        served.runtime_latency[api.index()]
            .get_or_init(|| {
                self.runtime_latency
                    .get_or_create(&RuntimeLabels {
                        model_name: model.to_string(),
                        model_version: version.to_string(),
                        API: api.label().to_string(),
                        runtime: "tract".to_string(),
                    })
                    .clone()
            })
            .observe(latency_us);
    }
}

/// Renders a registry in the Prometheus text format (0.0.4), as TF Serving serves it.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recording through handles looked up once gives the same metrics as looking
    /// them up per record, for generated runs and requests over two models and
    /// versions, both APIs' entrypoints, successes and failures.
    #[test]
    fn recording_through_handles_matches_lookups() {
        let mut with = Registry::default();
        let mut without = Registry::default();
        let (a, b) = (
            Metrics::register(&mut with),
            Metrics::register(&mut without),
        );
        let mut x: u32 = 0x2468_ace1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize
        };
        let apis = [Api::Predict, Api::Classify, Api::GetModelStatus];
        for _ in 0..500 {
            let model = ["m", "n"][next() % 2];
            let version = 1 + (next() % 2) as i64;
            let api = apis[next() % 3];
            let entrypoint = [Entrypoint::Rest, Entrypoint::Grpc][next() % 2];
            let us = (next() % 10_000) as f64;
            let served = a.served(model, version);
            a.record_runtime_in(&served, model, version, api, us);
            b.record_runtime(model, version, api, us);
            let ok = next() % 4 != 0;
            let record = RequestRecord {
                model: Some(model),
                version: ok.then_some(version),
                api,
                entrypoint,
                status: if ok { "OK" } else { "NOT_FOUND" },
                latency_us: us * 2.0,
            };
            a.record_request_in(&record, ok.then_some(&*served));
            b.record_request(&record);
        }
        // Label sets come out in hash order: compare the sorted lines.
        let lines = |registry: &Registry| {
            let mut lines: Vec<String> = render(registry).lines().map(String::from).collect();
            lines.sort();
            lines
        };
        assert_eq!(lines(&with), lines(&without));
    }

    #[test]
    fn request_count_keeps_tf_serving_name_and_adds_version() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.record_request(&RequestRecord {
            model: Some("half_plus_two"),
            version: Some(123),
            api: Api::Predict,
            entrypoint: Entrypoint::Rest,
            status: "OK",
            latency_us: 250.0,
        });
        metrics.record_request(&RequestRecord {
            model: None,
            version: None,
            api: Api::Predict,
            entrypoint: Entrypoint::Grpc,
            status: "NOT_FOUND",
            latency_us: 20.0,
        });
        let text = render(&registry);
        assert!(
            text.contains(
                ":tensorflow:serving:request_count{model_name=\"half_plus_two\",model_version=\"123\",status=\"OK\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("model_name=\"unknown\""), "{text}");
        assert!(!text.contains("request_count_total"), "{text}");
        assert!(
            text.contains(":tensorflow:serving:request_latency_count{model_name=\"half_plus_two\",model_version=\"123\",API=\"predict\",entrypoint=\"REST\"} 1"),
            "{text}"
        );
    }

    /// Cached handles count into the same series, and create a series only when it is
    /// first recorded.
    #[test]
    fn cached_handles_share_the_family_series() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let ok = |api, entrypoint| RequestRecord {
            model: Some("m"),
            version: Some(1),
            api,
            entrypoint,
            status: "OK",
            latency_us: 30.0,
        };
        metrics.record_runtime("m", 1, Api::Predict, 5.0);
        assert!(!render(&registry).contains("request_count"));
        for _ in 0..3 {
            metrics.record_request(&ok(Api::Predict, Entrypoint::Rest));
        }
        metrics.record_request(&ok(Api::Classify, Entrypoint::Grpc));
        metrics.record_runtime("m", 1, Api::Predict, 5.0);
        let text = render(&registry);
        assert!(
            text.contains(":tensorflow:serving:request_count{model_name=\"m\",model_version=\"1\",status=\"OK\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(":tensorflow:serving:request_latency_count{model_name=\"m\",model_version=\"1\",API=\"predict\",entrypoint=\"REST\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(":tensorflow:serving:request_latency_count{model_name=\"m\",model_version=\"1\",API=\"classify\",entrypoint=\"GRPC\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(":tensorflow:serving:runtime_latency_count{model_name=\"m\",model_version=\"1\",API=\"predict\",runtime=\"tract\"} 2"),
            "{text}"
        );
        assert!(!text.contains("API=\"regress\""), "{text}");
        assert!(!text.contains("entrypoint=\"GRPC\"} 0"), "{text}");
    }
}
