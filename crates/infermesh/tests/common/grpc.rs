//! A TF Serving gRPC client for the integration tests, built from the project's own
//! protos (the tonic clients generated in `infermesh-tfserving`), and request builders
//! for the example model `half_plus_two` (input `x`, one float output).

use std::collections::HashMap;
use std::time::Duration;

use infermesh_tfserving::proto::tensorflow::TensorProto;
use infermesh_tfserving::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use infermesh_tfserving::proto::tensorflow::serving::model_spec::VersionChoice;
use infermesh_tfserving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use infermesh_tfserving::proto::tensorflow::serving::{
    GetModelMetadataRequest, GetModelStatusRequest, ModelSpec, PredictRequest, PredictResponse,
};
use infermesh_tfserving::tensor_proto::{tensor_from_proto, tensor_to_proto};
use infermesh_tfserving::{Tensor, TensorData};
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use super::ONNX_MODEL;

/// Upper bound for one RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest message the clients accept (a 1M-float answer is ~4 MB, tonic's default).
pub const MAX_MESSAGE: usize = 256 << 20;

/// The PredictionService and ModelService clients over one HTTP/2 connection.
pub struct Clients {
    pub predict: PredictionServiceClient<Channel>,
    pub model: ModelServiceClient<Channel>,
}

/// Connects to `endpoint` (`http://127.0.0.1:<port>`).
pub async fn clients(endpoint: String) -> Clients {
    let channel = Endpoint::from_shared(endpoint.clone())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(RPC_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {endpoint}: {e}"));
    Clients {
        predict: PredictionServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        model: ModelServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    }
}

/// A `ModelSpec` of `half_plus_two`: a version, a label, or neither (latest / routed).
pub fn spec(version: Option<i64>, label: Option<&str>) -> ModelSpec {
    spec_of(ONNX_MODEL, version, label)
}

pub fn spec_of(name: &str, version: Option<i64>, label: Option<&str>) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        signature_name: String::new(),
        version_choice: match (version, label) {
            (Some(v), _) => Some(VersionChoice::Version(v)),
            (None, Some(l)) => Some(VersionChoice::VersionLabel(l.to_string())),
            (None, None) => None,
        },
    }
}

/// A 1-D float tensor.
pub fn floats(values: &[f32]) -> TensorProto {
    tensor_to_proto(&Tensor::new(vec![values.len()], TensorData::F32(values.to_vec())).unwrap())
}

/// Predict of `x = values`.
pub fn predict_of(spec: ModelSpec, values: &[f32]) -> PredictRequest {
    PredictRequest {
        model_spec: Some(spec),
        inputs: HashMap::from([("x".to_string(), floats(values))]),
        ..Default::default()
    }
}

/// Predict of `x = [1, 2, 5]`.
pub fn predict_request(spec: ModelSpec) -> PredictRequest {
    predict_of(spec, &[1.0, 2.0, 5.0])
}

pub fn metadata_request(spec: ModelSpec) -> GetModelMetadataRequest {
    GetModelMetadataRequest {
        model_spec: Some(spec),
        metadata_field: vec!["signature_def".into()],
    }
}

pub fn status_request(spec: ModelSpec) -> GetModelStatusRequest {
    GetModelStatusRequest {
        model_spec: Some(spec),
    }
}

/// `req` with a metadata entry (e.g. the pin header).
pub fn with_header<T>(req: T, header: Option<(&'static str, &str)>) -> Request<T> {
    let mut r = Request::new(req);
    if let Some((k, v)) = header {
        r.metadata_mut().insert(k, v.parse().unwrap());
    }
    r
}

/// A metadata value as text.
pub fn header<'a>(md: &'a tonic::metadata::MetadataMap, name: &str) -> Option<&'a str> {
    md.get(name).and_then(|v| v.to_str().ok())
}

/// The version an answer names in its `model_spec`.
pub fn answer_version(r: &PredictResponse) -> Option<i64> {
    match r.model_spec.as_ref()?.version_choice.as_ref()? {
        VersionChoice::Version(v) => Some(*v),
        VersionChoice::VersionLabel(_) => None,
    }
}

/// The one output of a predict answer, as floats.
pub fn output(r: &PredictResponse) -> Vec<f32> {
    assert_eq!(r.outputs.len(), 1, "outputs: {:?}", r.outputs.keys());
    let t = tensor_from_proto(r.outputs.values().next().unwrap()).unwrap();
    match t.data {
        TensorData::F32(v) => v,
        other => panic!("output is {:?}", other.dtype()),
    }
}

/// `half_plus_two`'s answer to `x = [1, 2, 5]` by version.
pub fn expected_output(version: i64) -> Vec<f32> {
    match version {
        1 => vec![2.5, 3.0, 4.5],
        2 => vec![3.5, 4.0, 5.5],
        v => panic!("no version {v}"),
    }
}
