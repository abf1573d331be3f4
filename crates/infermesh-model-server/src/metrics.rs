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

    pub fn record_request(&self, record: &RequestRecord<'_>) {
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
        self.runtime_latency
            .get_or_create(&RuntimeLabels {
                model_name: model.to_string(),
                model_version: version.to_string(),
                API: api.label().to_string(),
                runtime: "tract".to_string(),
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
}
