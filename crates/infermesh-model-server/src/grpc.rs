//! The gRPC API: `tensorflow.serving.PredictionService` and
//! `tensorflow.serving.ModelService`, translating protos to and from the
//! protocol-independent core in `service`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use infermesh_tfserving::proto::tensorflow::TensorProto;
use infermesh_tfserving::proto::tensorflow::serving as pb;
use infermesh_tfserving::proto::tensorflow::serving::model_service_server::ModelService;
use infermesh_tfserving::proto::tensorflow::serving::prediction_service_server::PredictionService;
use infermesh_tfserving::{Status, Tensor, inference, model_info, tensor_proto};
use tonic::{Request, Response};

use crate::metrics::{Api, Entrypoint};
use crate::service::{ModelSpec, Models, RunOutput};

/// Both gRPC services over one model set.
#[derive(Clone)]
pub struct Grpc {
    models: Models,
}

impl Grpc {
    pub fn new(models: Models) -> Grpc {
        Grpc { models }
    }

    /// Runs one call, recording its metrics, and maps errors to gRPC statuses.
    async fn call<T, F>(&self, spec: Option<&ModelSpec>, api: Api, f: F) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<(T, Option<i64>), Status>>,
    {
        let started = Instant::now();
        let result = f.await;
        match result {
            Ok((value, version)) => {
                self.models
                    .record(spec, version, api, Entrypoint::Grpc, Ok(()), started);
                Ok(value)
            }
            Err(status) => {
                self.models
                    .record(spec, None, api, Entrypoint::Grpc, Err(&status), started);
                Err(status.to_grpc())
            }
        }
    }
}

/// tonic refuses a message above `max_decoding_message_size` with OUT_OF_RANGE
/// before any handler runs; TF Serving (and our CLI contract) answer
/// RESOURCE_EXHAUSTED, so that one trailers-only answer gets its code rewritten.
pub fn over_limit_is_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let over_limit = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("decoded%20message%20length%20too%20large"));
    if over_limit {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::ResourceExhausted as i32),
        );
    }
    response
}

/// Reads the `ModelSpec` of a request; a missing spec is INVALID_ARGUMENT.
fn model_spec(spec: Option<&pb::ModelSpec>) -> Result<(ModelSpec, String), Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("Missing ModelSpec"))?;
    let (version, label) = match &spec.version_choice {
        Some(pb::model_spec::VersionChoice::Version(v)) => (Some(*v), None),
        Some(pb::model_spec::VersionChoice::VersionLabel(l)) => (None, Some(l.clone())),
        None => (None, None),
    };
    Ok((
        ModelSpec {
            name: spec.name.clone(),
            version,
            label,
        },
        spec.signature_name.clone(),
    ))
}

fn spec_of(spec: Option<&pb::ModelSpec>) -> Option<ModelSpec> {
    model_spec(spec).ok().map(|(s, _)| s)
}

fn tensors_from(inputs: HashMap<String, TensorProto>) -> Result<BTreeMap<String, Tensor>, Status> {
    inputs
        .into_iter()
        .map(|(key, proto)| {
            tensor_proto::tensor_from_proto(&proto)
                .map(|t| (key.clone(), t))
                .map_err(|e| Status::invalid_argument(format!("input tensor {key}: {}", e.message)))
        })
        .collect()
}

impl Grpc {
    /// Classify and regress: the examples as a string tensor into the signature's
    /// one input; returns the run and the number of examples.
    async fn run_examples(
        &self,
        spec: &ModelSpec,
        signature_name: &str,
        api: Api,
        input: Option<&pb::Input>,
    ) -> Result<(RunOutput, String, usize), Status> {
        let input = input.ok_or_else(|| Status::invalid_argument("Input is empty"))?;
        let (tensor, n) = inference::input_to_examples_tensor(input)?;
        let resolved = self.models.resolve(spec)?;
        let (key, signature) =
            Models::signature(resolved.servable.as_ref(), signature_name, Entrypoint::Grpc)?;
        if api == Api::Classify {
            inference::check_classify_signature(signature)?;
        } else {
            inference::check_regress_signature(signature)?;
        }
        let mut inputs = BTreeMap::new();
        inputs.insert(inference::INPUTS.to_string(), tensor);
        let output = self
            .models
            .run(&resolved, &key, api, Entrypoint::Grpc, inputs, Vec::new())
            .await?;
        Ok((output, resolved.name.to_string(), n))
    }
}

#[tonic::async_trait]
impl PredictionService for Grpc {
    async fn predict(
        &self,
        request: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, tonic::Status> {
        let request = request.into_inner();
        let spec = spec_of(request.model_spec.as_ref());
        self.call(spec.as_ref(), Api::Predict, async {
            let (spec, signature_name) = model_spec(request.model_spec.as_ref())?;
            let resolved = self.models.resolve(&spec)?;
            let inputs = tensors_from(request.inputs)?;
            let output = self
                .models
                .run(
                    &resolved,
                    &signature_name,
                    Api::Predict,
                    Entrypoint::Grpc,
                    inputs,
                    request.output_filter,
                )
                .await?;
            let outputs = output
                .outputs
                .iter()
                .map(|(k, t)| (k.clone(), tensor_proto::tensor_to_proto(t)))
                .collect();
            let response = pb::PredictResponse {
                model_spec: Some(model_info::model_spec(
                    &resolved.name,
                    output.version,
                    &output.signature_name,
                )),
                outputs,
            };
            Ok((Response::new(response), Some(output.version)))
        })
        .await
    }

    async fn get_model_metadata(
        &self,
        request: Request<pb::GetModelMetadataRequest>,
    ) -> Result<Response<pb::GetModelMetadataResponse>, tonic::Status> {
        let request = request.into_inner();
        let spec = spec_of(request.model_spec.as_ref());
        self.call(spec.as_ref(), Api::GetModelMetadata, async {
            let (spec, _) = model_spec(request.model_spec.as_ref())?;
            model_info::check_metadata_fields(&request.metadata_field)?;
            let resolved = self.models.resolve(&spec)?;
            let response = model_info::model_metadata_response(
                &resolved.name,
                resolved.version,
                resolved.servable.signatures(),
            );
            Ok((Response::new(response), Some(resolved.version)))
        })
        .await
    }

    async fn classify(
        &self,
        request: Request<pb::ClassificationRequest>,
    ) -> Result<Response<pb::ClassificationResponse>, tonic::Status> {
        let request = request.into_inner();
        let spec = spec_of(request.model_spec.as_ref());
        self.call(spec.as_ref(), Api::Classify, async {
            let (spec, signature_name) = model_spec(request.model_spec.as_ref())?;
            let (output, name, n) = self
                .run_examples(
                    &spec,
                    &signature_name,
                    Api::Classify,
                    request.input.as_ref(),
                )
                .await?;
            let result = inference::classification_result(&output.outputs, n)?;
            let response = pb::ClassificationResponse {
                model_spec: Some(model_info::model_spec(
                    &name,
                    output.version,
                    &output.signature_name,
                )),
                result: Some(result),
            };
            Ok((Response::new(response), Some(output.version)))
        })
        .await
    }

    async fn regress(
        &self,
        request: Request<pb::RegressionRequest>,
    ) -> Result<Response<pb::RegressionResponse>, tonic::Status> {
        let request = request.into_inner();
        let spec = spec_of(request.model_spec.as_ref());
        self.call(spec.as_ref(), Api::Regress, async {
            let (spec, signature_name) = model_spec(request.model_spec.as_ref())?;
            let (output, name, n) = self
                .run_examples(&spec, &signature_name, Api::Regress, request.input.as_ref())
                .await?;
            let result = inference::regression_result(&output.outputs, n)?;
            let response = pb::RegressionResponse {
                model_spec: Some(model_info::model_spec(
                    &name,
                    output.version,
                    &output.signature_name,
                )),
                result: Some(result),
            };
            Ok((Response::new(response), Some(output.version)))
        })
        .await
    }

    async fn multi_inference(
        &self,
        _request: Request<pb::MultiInferenceRequest>,
    ) -> Result<Response<pb::MultiInferenceResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "MultiInference is not supported by the infermesh model server",
        ))
    }
}

#[tonic::async_trait]
impl ModelService for Grpc {
    async fn get_model_status(
        &self,
        request: Request<pb::GetModelStatusRequest>,
    ) -> Result<Response<pb::GetModelStatusResponse>, tonic::Status> {
        let request = request.into_inner();
        let spec = spec_of(request.model_spec.as_ref());
        self.call(spec.as_ref(), Api::GetModelStatus, async {
            let (spec, _) = model_spec(request.model_spec.as_ref())?;
            let statuses = self.models.status(&spec)?;
            let response = model_info::model_status_response(&statuses);
            Ok((Response::new(response), None))
        })
        .await
    }

    async fn handle_reload_config_request(
        &self,
        _request: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "HandleReloadConfigRequest is not supported: edit the model config file instead",
        ))
    }
}
