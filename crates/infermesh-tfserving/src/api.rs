//! Which TF Serving API a request calls — one vocabulary for REST and gRPC, shared by
//! request inspection, routing and authorization.

use crate::rest_path::RestApi;

/// A TF Serving API, whatever the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    Predict,
    Classify,
    Regress,
    MultiInference,
    Metadata,
    Status,
}

impl Api {
    /// The name policies use (`apis: [predict]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Predict => "predict",
            Api::Classify => "classify",
            Api::Regress => "regress",
            Api::MultiInference => "multi_inference",
            Api::Metadata => "metadata",
            Api::Status => "status",
        }
    }

    /// Whether the API runs the model (status and metadata do not).
    pub fn is_inference(self) -> bool {
        !matches!(self, Api::Metadata | Api::Status)
    }

    pub fn from_rest(api: RestApi) -> Api {
        match api {
            RestApi::Predict => Api::Predict,
            RestApi::Classify => Api::Classify,
            RestApi::Regress => Api::Regress,
            RestApi::Status => Api::Status,
            RestApi::Metadata => Api::Metadata,
        }
    }

    /// The API of a gRPC method path, if it is one of TF Serving's.
    pub fn from_grpc_path(path: &str) -> Option<Api> {
        [
            Api::Predict,
            Api::Classify,
            Api::Regress,
            Api::MultiInference,
            Api::Metadata,
            Api::Status,
        ]
        .into_iter()
        .find(|api| api.grpc_path() == path)
    }

    /// The gRPC method path of this API.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Api::Predict => "/tensorflow.serving.PredictionService/Predict",
            Api::Classify => "/tensorflow.serving.PredictionService/Classify",
            Api::Regress => "/tensorflow.serving.PredictionService/Regress",
            Api::MultiInference => "/tensorflow.serving.PredictionService/MultiInference",
            Api::Metadata => "/tensorflow.serving.PredictionService/GetModelMetadata",
            Api::Status => "/tensorflow.serving.ModelService/GetModelStatus",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_round_trip() {
        for api in [
            Api::Predict,
            Api::Classify,
            Api::Regress,
            Api::MultiInference,
            Api::Metadata,
            Api::Status,
        ] {
            assert_eq!(Api::from_grpc_path(api.grpc_path()), Some(api));
        }
        assert_eq!(
            Api::from_grpc_path("/tensorflow.serving.PredictionService/Nope"),
            None
        );
        assert_eq!(Api::from_grpc_path("/other.Service/Predict"), None);
    }
}
