//! Model status and metadata as TF Serving reports them, built from plain values:
//! the gRPC responses (`GetModelStatusResponse`, `GetModelMetadataResponse` with the
//! `SignatureDefMap` packed in an `Any`) and the checks on metadata requests. The
//! REST JSON forms are in [`crate::json::model_info`].

use std::collections::BTreeMap;

use prost::Message as _;

use crate::proto::tensorflow::serving::{
    GetModelMetadataResponse, GetModelStatusResponse, ModelSpec, ModelVersionStatus,
    SignatureDefMap, StatusProto, model_spec,
};
use crate::tensor_proto::signature_to_proto;
use crate::{Signature, Status};

pub use crate::proto::tensorflow::serving::model_version_status::State as VersionState;

/// The only metadata field TF Serving supports.
pub const SIGNATURE_DEF_FIELD: &str = "signature_def";

/// The `Any` type URL of the packed `SignatureDefMap`.
pub const SIGNATURE_DEF_MAP_TYPE_URL: &str =
    "type.googleapis.com/tensorflow.serving.SignatureDefMap";

/// The state of one model version.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionStatus {
    pub version: i64,
    pub state: VersionState,
    /// Why the version failed to load or ended; `None` means OK.
    pub error: Option<Status>,
}

/// `GetModelStatusResponse` for the given versions (in the given order).
pub fn model_status_response(versions: &[VersionStatus]) -> GetModelStatusResponse {
    GetModelStatusResponse {
        model_version_status: versions
            .iter()
            .map(|v| ModelVersionStatus {
                version: v.version,
                state: v.state as i32,
                status: Some(StatusProto {
                    error_code: v.error.as_ref().map_or(0, |e| e.code as i32),
                    error_message: v
                        .error
                        .as_ref()
                        .map(|e| e.message.clone())
                        .unwrap_or_default(),
                }),
            })
            .collect(),
    }
}

/// A `ModelSpec` naming a resolved version (as responses carry it).
pub fn model_spec(name: &str, version: i64, signature_name: &str) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        version_choice: Some(model_spec::VersionChoice::Version(version)),
        signature_name: signature_name.to_string(),
    }
}

/// Checks `GetModelMetadataRequest.metadata_field` as TF Serving does.
pub fn check_metadata_fields(fields: &[String]) -> Result<(), Status> {
    if fields.is_empty() {
        return Err(Status::invalid_argument(
            "GetModelMetadataRequest must specify at least one metadata_field",
        ));
    }
    match fields.iter().find(|f| *f != SIGNATURE_DEF_FIELD) {
        Some(other) => Err(Status::invalid_argument(format!(
            "Metadata field {other} is not supported"
        ))),
        None => Ok(()),
    }
}

/// The signatures as `tensorflow.serving.SignatureDefMap`.
pub fn signature_def_map(signatures: &BTreeMap<String, Signature>) -> SignatureDefMap {
    SignatureDefMap {
        signature_def: signatures
            .iter()
            .map(|(k, s)| (k.clone(), signature_to_proto(s)))
            .collect(),
    }
}

/// `GetModelMetadataResponse` with the `signature_def` entry.
pub fn model_metadata_response(
    name: &str,
    version: i64,
    signatures: &BTreeMap<String, Signature>,
) -> GetModelMetadataResponse {
    let any = prost_types::Any {
        type_url: SIGNATURE_DEF_MAP_TYPE_URL.to_string(),
        value: signature_def_map(signatures).encode_to_vec(),
    };
    GetModelMetadataResponse {
        model_spec: Some(model_spec(name, version, "")),
        metadata: [(SIGNATURE_DEF_FIELD.to_string(), any)]
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_response() {
        let r = model_status_response(&[
            VersionStatus {
                version: 123,
                state: VersionState::Available,
                error: None,
            },
            VersionStatus {
                version: 124,
                state: VersionState::End,
                error: Some(Status::not_found("gone")),
            },
        ]);
        assert_eq!(r.model_version_status[0].state, 30);
        assert_eq!(
            r.model_version_status[1]
                .status
                .as_ref()
                .unwrap()
                .error_code,
            5
        );
    }

    #[test]
    fn metadata_fields() {
        assert_eq!(
            check_metadata_fields(&[]).unwrap_err().message,
            "GetModelMetadataRequest must specify at least one metadata_field"
        );
        assert!(check_metadata_fields(&["signature_def".into()]).is_ok());
        assert_eq!(
            check_metadata_fields(&["x".into()]).unwrap_err().message,
            "Metadata field x is not supported"
        );
    }

    #[test]
    fn metadata_any_decodes() {
        let mut sigs = BTreeMap::new();
        sigs.insert("serving_default".to_string(), Signature::default());
        let r = model_metadata_response("m", 7, &sigs);
        let any = &r.metadata["signature_def"];
        assert_eq!(any.type_url, SIGNATURE_DEF_MAP_TYPE_URL);
        let map = SignatureDefMap::decode(any.value.as_slice()).unwrap();
        assert!(map.signature_def.contains_key("serving_default"));
        assert_eq!(
            r.model_spec.unwrap().version_choice,
            Some(model_spec::VersionChoice::Version(7))
        );
    }
}
