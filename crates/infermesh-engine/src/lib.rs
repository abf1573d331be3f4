//! The inference engine behind infermesh's embedded model server: loads one model
//! version directory (a TensorFlow SavedModel, `saved_model.pb` + `variables/`, or an
//! ONNX file, `model.onnx`) onto tract and serves it through
//! [`infermesh_tfserving::Servable`]. SavedModel signatures are exposed exactly as
//! stored; each is pruned to what its outputs need, its variables frozen from the
//! checkpoint, and its optimized plans cached so a request pays only for the run.
#![forbid(unsafe_code)]

mod checkpoint;
mod convert;
mod error;
mod onnx;
mod plan;
mod program;
mod savedmodel;
mod scalar_bin;
mod servable;
#[cfg(test)]
mod test_support;

use std::path::Path;
use std::sync::Arc;

use infermesh_tfserving::Servable;

pub use checkpoint::CheckpointError;
pub use error::LoadError;

/// File name of a TensorFlow SavedModel inside a version directory.
pub const SAVED_MODEL_FILE: &str = "saved_model.pb";
/// File name of an ONNX model inside a version directory.
pub const ONNX_MODEL_FILE: &str = "model.onnx";

/// Loads the model version in `dir` (e.g. `.../half_plus_two/00000123`).
///
/// Loading parses, prunes and checks every signature, so an unsupported op or a
/// corrupt checkpoint fails here, not on the first request.
pub fn load(dir: &Path) -> Result<Arc<dyn Servable>, LoadError> {
    if dir.join(SAVED_MODEL_FILE).is_file() {
        Ok(Arc::new(savedmodel::load(dir)?))
    } else if dir.join(ONNX_MODEL_FILE).is_file() {
        Ok(Arc::new(onnx::load(&dir.join(ONNX_MODEL_FILE))?))
    } else {
        Err(LoadError::NoModel(dir.to_path_buf()))
    }
}
