//! The protocol-independent core of the model server: find the servable a request
//! names, check the request against the signature, run it within the concurrency
//! limit, and record metrics. REST and gRPC front ends both call this; neither runs a
//! model itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use infermesh_tfserving::model_info::VersionStatus;
use infermesh_tfserving::servable::DEFAULT_SIGNATURE;
use infermesh_tfserving::{Servable, Signature, Status, Tensor, TensorInfo, inference};
use tokio::sync::Semaphore;

use crate::manager::{ModelManager, Resolved};
use crate::metrics::{Api, Entrypoint, Metrics, RequestRecord, Served};

/// Servables whose typical run takes at most this long run inline on the request's
/// thread; slower (or not yet measured) ones run on the blocking pool, bounded by the
/// concurrency limit.
pub const INLINE_RUN_MAX: std::time::Duration = std::time::Duration::from_micros(200);

/// What a request names: a model and, optionally, a version or a label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    pub version: Option<i64>,
    pub label: Option<String>,
}

/// A signature run's result and which version served it.
#[derive(Debug)]
pub struct RunOutput {
    pub version: i64,
    /// Borrowed when it is the default name (no copy per request).
    pub signature_name: Cow<'static, str>,
    pub outputs: BTreeMap<String, Tensor>,
    /// The metric handles of the version that served it, for recording the request.
    pub(crate) metrics: Arc<Served>,
}

/// The model server's shared state: the model set, metrics and limits.
#[derive(Clone)]
pub struct Models {
    manager: Arc<ModelManager>,
    metrics: Metrics,
    /// Bounds concurrent inference runs; waiting requests stay bounded by the timeout.
    runs: Arc<Semaphore>,
}

impl Models {
    pub fn new(manager: Arc<ModelManager>, metrics: Metrics, max_concurrent_runs: usize) -> Models {
        Models {
            manager,
            metrics,
            runs: Arc::new(Semaphore::new(max_concurrent_runs.max(1))),
        }
    }

    pub fn manager(&self) -> &Arc<ModelManager> {
        &self.manager
    }

    /// Finds the servable for a request (TF Serving's messages on failure).
    pub fn resolve(&self, spec: &ModelSpec) -> Result<Resolved, Status> {
        self.manager
            .resolve(&spec.name, spec.version, spec.label.as_deref())
    }

    /// Model status for a model, optionally one version or label.
    pub fn status(&self, spec: &ModelSpec) -> Result<Vec<VersionStatus>, Status> {
        self.manager
            .status(&spec.name, spec.version, spec.label.as_deref())
    }

    /// Picks a signature by name (empty: `serving_default`), with the error message
    /// of the entrypoint that asked.
    pub fn signature<'a>(
        servable: &'a dyn Servable,
        name: &str,
        entrypoint: Entrypoint,
    ) -> Result<(Cow<'static, str>, &'a Signature), Status> {
        // The default name, spelled out or not, is borrowed: no copy per request.
        let (name, key) = if name.is_empty() || name == DEFAULT_SIGNATURE {
            (DEFAULT_SIGNATURE, Cow::Borrowed(DEFAULT_SIGNATURE))
        } else {
            (name, Cow::Owned(name.to_string()))
        };
        match servable.signatures().get(name) {
            Some(signature) => Ok((key, signature)),
            None => Err(match entrypoint {
                Entrypoint::Rest => Status::invalid_argument(format!(
                    "Serving signature name: \"{name}\" not found in signature def"
                )),
                Entrypoint::Grpc => Status::failed_precondition(format!(
                    "Serving signature key \"{name}\" not found."
                )),
            }),
        }
    }

    /// Runs a signature of a resolved servable after checking inputs and method.
    pub async fn run(
        &self,
        resolved: &Resolved,
        signature_name: &str,
        api: Api,
        entrypoint: Entrypoint,
        inputs: BTreeMap<String, Tensor>,
        output_filter: Vec<String>,
    ) -> Result<RunOutput, Status> {
        let (signature_name, signature) =
            Self::signature(resolved.servable.as_ref(), signature_name, entrypoint)?;
        match api {
            Api::Classify => inference::check_classify_signature(signature)?,
            Api::Regress => inference::check_regress_signature(signature)?,
            _ => {}
        }
        check_inputs(signature, &inputs)?;
        for key in &output_filter {
            if !signature.outputs.contains_key(key) {
                return Err(Status::invalid_argument(format!(
                    "output tensor alias not found in signature: {key} Outputs expected to be in the set {{{}}}.",
                    signature
                        .outputs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(",")
                )));
            }
        }
        let servable = &resolved.servable;
        let (outputs, took) = if servable
            .typical_run_time()
            .is_some_and(|t| t <= INLINE_RUN_MAX)
        {
            // Cheap model: a hand-off to the blocking pool would cost more than the
            // run itself, and the run cannot hold this worker for long. The servable
            // times the run (its wrapper does anyway): one pair of clock reads.
            let (outputs, took) = servable.run_timed(&signature_name, inputs, &output_filter);
            (outputs?, took)
        } else {
            let started = Instant::now();
            let servable = servable.clone();
            let sig = signature_name.clone();
            let permit = self
                .runs
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Status::unavailable("model server is shutting down"))?;
            let outputs = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                servable.run(&sig, inputs, &output_filter)
            })
            .await
            .map_err(|e| Status::internal(format!("inference task failed: {e}")))??;
            // The wait for a permit and the hand-off count, as they always have.
            (outputs, started.elapsed())
        };
        let metrics = self.metrics.served(&resolved.name, resolved.version);
        self.metrics.record_runtime_in(
            &metrics,
            &resolved.name,
            resolved.version,
            api,
            took.as_secs_f64() * 1e6,
        );
        Ok(RunOutput {
            version: resolved.version,
            signature_name,
            outputs,
            metrics,
        })
    }

    /// Records a finished request. `model` is the configured name, when known.
    pub fn record(
        &self,
        spec: Option<&ModelSpec>,
        version: Option<i64>,
        api: Api,
        entrypoint: Entrypoint,
        result: Result<(), &Status>,
        started: Instant,
    ) {
        self.record_in(spec, version, api, entrypoint, result, started, None);
    }

    /// [`Models::record`] with the metric handles of a [`RunOutput`] for the model and
    /// version that answered (the spec's model and `version`), when there is one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_in(
        &self,
        spec: Option<&ModelSpec>,
        version: Option<i64>,
        api: Api,
        entrypoint: Entrypoint,
        result: Result<(), &Status>,
        started: Instant,
        served: Option<&Served>,
    ) {
        // A request that succeeded found its model: the name is a configured one.
        let model = spec
            .map(|s| s.name.as_str())
            .filter(|name| result.is_ok() || self.manager.has_model(name));
        let record = RequestRecord {
            model,
            version,
            api,
            entrypoint,
            status: match result {
                Ok(()) => "OK",
                Err(status) => status.code.name(),
            },
            latency_us: started.elapsed().as_secs_f64() * 1e6,
        };
        self.metrics
            .record_request_in(&record, served.filter(|_| result.is_ok()));
    }
}

/// The inputs must be exactly the signature's input keys, with its dtypes.
fn check_inputs(signature: &Signature, inputs: &BTreeMap<String, Tensor>) -> Result<(), Status> {
    // Both maps are sorted: the usual case (the same keys) is one pass side by side,
    // comparing keys and dtypes together. A dtype error is kept until every key is
    // known to match, since a key mismatch is the error to report then.
    if inputs.len() == signature.inputs.len() {
        let mut dtype_error = None;
        let same_keys =
            inputs
                .iter()
                .zip(&signature.inputs)
                .all(|((key, tensor), (expected, info))| {
                    if dtype_error.is_none() && key == expected {
                        dtype_error = check_dtype(key, tensor, info).err();
                    }
                    key == expected
                });
        if same_keys {
            return dtype_error.map_or(Ok(()), Err);
        }
    }
    check_inputs_by_key(signature, inputs)
}

/// [`check_inputs`] key by key, with the message for missing and extra keys.
fn check_inputs_by_key(
    signature: &Signature,
    inputs: &BTreeMap<String, Tensor>,
) -> Result<(), Status> {
    let extra: Vec<&str> = inputs
        .keys()
        .filter(|k| !signature.inputs.contains_key(*k))
        .map(String::as_str)
        .collect();
    let missing: Vec<&str> = signature
        .inputs
        .keys()
        .filter(|k| !inputs.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() || !missing.is_empty() {
        return Err(Status::invalid_argument(format!(
            "input size does not match signature: {}!={} len({{{}}}) != len({{{}}}). Sent extra: {{{}}}. Missing but required: {{{}}}.",
            inputs.len(),
            signature.inputs.len(),
            inputs.keys().cloned().collect::<Vec<_>>().join(","),
            signature
                .inputs
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            extra.join(","),
            missing.join(","),
        )));
    }
    for (key, tensor) in inputs {
        check_dtype(key, tensor, &signature.inputs[key])?;
    }
    Ok(())
}

/// A tensor must have its signature input's dtype (or the `_REF` of it).
fn check_dtype(key: &str, tensor: &Tensor, info: &TensorInfo) -> Result<(), Status> {
    if tensor.dtype().to_tf() != info.dtype && info.dtype % 100 != tensor.dtype().to_tf() {
        return Err(Status::invalid_argument(format!(
            "Expects arg[{key}] to be {} but {} is provided",
            infermesh_tfserving::tensor::tf_dtype_enum_name(info.dtype)
                .trim_start_matches("DT_")
                .to_lowercase(),
            tensor.dtype().name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermesh_tfserving::TensorData;
    use infermesh_tfserving::servable::method;

    fn sig() -> Signature {
        let mut s = Signature {
            method_name: method::PREDICT.into(),
            ..Default::default()
        };
        s.inputs.insert(
            "x".into(),
            TensorInfo {
                name: "x:0".into(),
                dtype: 1,
                shape: Some(vec![-1, 1]),
            },
        );
        s
    }

    #[test]
    fn inputs_must_match_signature_keys_and_types() {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "x".to_string(),
            Tensor::new(vec![1], TensorData::F32(vec![1.0])).unwrap(),
        );
        assert!(check_inputs(&sig(), &inputs).is_ok());
        inputs.insert(
            "z".to_string(),
            Tensor::new(vec![1], TensorData::F32(vec![1.0])).unwrap(),
        );
        let err = check_inputs(&sig(), &inputs).unwrap_err();
        assert!(err.message.contains("Sent extra: {z}"), "{}", err.message);
        let mut wrong = BTreeMap::new();
        wrong.insert(
            "x".to_string(),
            Tensor::new(vec![1], TensorData::I32(vec![1])).unwrap(),
        );
        let err = check_inputs(&sig(), &wrong).unwrap_err();
        assert_eq!(
            err.message,
            "Expects arg[x] to be float but int32 is provided"
        );
    }

    /// The default signature key is borrowed whether the request left it empty or
    /// spelled it out; other names are copied; the same signature and errors either way.
    #[test]
    fn signature_keys_borrowed_only_for_the_default() {
        struct Sigs(BTreeMap<String, Signature>);
        impl Servable for Sigs {
            fn signatures(&self) -> &BTreeMap<String, Signature> {
                &self.0
            }
            fn run(
                &self,
                _: &str,
                _: BTreeMap<String, Tensor>,
                _: &[String],
            ) -> Result<BTreeMap<String, Tensor>, Status> {
                Ok(BTreeMap::new())
            }
        }
        let servable: Arc<dyn Servable> = Arc::new(Sigs(BTreeMap::from([
            (DEFAULT_SIGNATURE.to_string(), sig()),
            ("other".to_string(), Signature::default()),
        ])));
        for entrypoint in [Entrypoint::Rest, Entrypoint::Grpc] {
            for name in ["", DEFAULT_SIGNATURE, "other", "missing", "serving_defaul"] {
                let got = Models::signature(servable.as_ref(), name, entrypoint);
                let wanted_key = if name.is_empty() {
                    DEFAULT_SIGNATURE
                } else {
                    name
                };
                match got {
                    Ok((key, signature)) => {
                        assert_eq!(key, wanted_key);
                        assert_eq!(
                            matches!(key, Cow::Borrowed(_)),
                            wanted_key == DEFAULT_SIGNATURE
                        );
                        assert_eq!(signature, &servable.signatures()[wanted_key]);
                    }
                    Err(e) => {
                        assert!(!servable.signatures().contains_key(wanted_key));
                        assert!(e.message.contains(wanted_key), "{}", e.message);
                    }
                }
            }
        }
    }

    /// The side-by-side pass gives what the key-by-key check gives, for every
    /// combination of keys (subsets of three) and dtypes on both sides.
    #[test]
    fn side_by_side_check_matches_key_by_key() {
        let keys = ["a", "b", "c"];
        let dtypes = [1, 3, 101];
        let mut cases = 0;
        for sig_mask in 0..8u32 {
            for in_mask in 0..8u32 {
                for sig_dt in dtypes {
                    for (i, in_dt) in [TensorData::F32(vec![1.0]), TensorData::I32(vec![1])]
                        .into_iter()
                        .enumerate()
                    {
                        let mut sig = sig();
                        sig.inputs.clear();
                        let mut inputs = BTreeMap::new();
                        for (bit, key) in keys.iter().enumerate() {
                            if sig_mask & (1 << bit) != 0 {
                                let dtype = if bit == 1 { sig_dt } else { 1 };
                                sig.inputs.insert(
                                    key.to_string(),
                                    TensorInfo {
                                        name: format!("{key}:0"),
                                        dtype,
                                        shape: None,
                                    },
                                );
                            }
                            if in_mask & (1 << bit) != 0 {
                                let data = if bit == 1 {
                                    in_dt.clone()
                                } else {
                                    TensorData::F32(vec![2.0])
                                };
                                inputs.insert(key.to_string(), Tensor::new(vec![1], data).unwrap());
                            }
                        }
                        assert_eq!(
                            check_inputs(&sig, &inputs),
                            check_inputs_by_key(&sig, &inputs),
                            "signature {sig_mask:03b}/{sig_dt}, inputs {in_mask:03b}/{i}"
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 384);
    }
}
