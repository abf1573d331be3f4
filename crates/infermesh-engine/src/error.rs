//! Why a model version could not be loaded, worded for the operator who reads it in
//! the model status and the logs.

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;

/// A model version that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0} holds neither saved_model.pb nor model.onnx")]
    NoModel(PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid model: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "op {op} is not supported by the inference engine (node {node}, signature {signature})"
    )]
    UnsupportedOp {
        op: String,
        node: String,
        signature: String,
    },
    #[error("signature {signature}: {reason}")]
    Signature { signature: String, reason: String },
}

impl LoadError {
    pub(crate) fn signature(signature: &str, reason: impl Into<String>) -> LoadError {
        LoadError::Signature {
            signature: signature.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LoadError {
        LoadError::Io {
            path: path.into(),
            source,
        }
    }
}
