//! The interface between the model server and an inference engine: a loaded model
//! version ("servable", in TF Serving's words) exposes its signatures and runs them.

use std::collections::BTreeMap;

use crate::{Status, Tensor};

/// The method names TF Serving gives signatures (`SignatureDef.method_name`).
pub mod method {
    pub const PREDICT: &str = "tensorflow/serving/predict";
    pub const CLASSIFY: &str = "tensorflow/serving/classify";
    pub const REGRESS: &str = "tensorflow/serving/regress";
}

/// The signature used when a request names none.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// One input or output of a signature (`tensorflow.TensorInfo`, dense case).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The graph tensor the key is bound to, e.g. `x:0`.
    pub name: String,
    /// The `tensorflow.DataType` number (kept raw so metadata shows any type).
    pub dtype: i32,
    /// Dimensions, `-1` for unknown; `None` when the rank itself is unknown.
    pub shape: Option<Vec<i64>>,
}

/// A signature (`tensorflow.SignatureDef`): named inputs and outputs and a method.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Signature {
    pub method_name: String,
    pub inputs: BTreeMap<String, TensorInfo>,
    pub outputs: BTreeMap<String, TensorInfo>,
}

/// A loaded model version that can run its signatures.
///
/// `run` is synchronous and may take CPU time; callers decide on which thread it runs.
pub trait Servable: Send + Sync + 'static {
    /// Signatures by key (`serving_default`, `regress_x_to_y`, …).
    fn signatures(&self) -> &BTreeMap<String, Signature>;

    /// Runs a signature. `inputs` are keyed by the signature's input keys and already
    /// checked against it by the caller; `output_filter` names the output keys wanted
    /// (empty: all). For classify and regress signatures fed by serialized
    /// `tf.Example`s, the single input holds the serialized examples as `DT_STRING`.
    fn run(
        &self,
        signature: &str,
        inputs: BTreeMap<String, Tensor>,
        output_filter: &[String],
    ) -> Result<BTreeMap<String, Tensor>, Status>;

    /// Runs a signature as [`Servable::run`] does and says how long the run took. The
    /// default times `run`; a wrapper that times its runs anyway overrides it, so a
    /// caller that wants the duration too reads the clock once, not twice.
    fn run_timed(
        &self,
        signature: &str,
        inputs: BTreeMap<String, Tensor>,
        output_filter: &[String],
    ) -> (
        Result<BTreeMap<String, Tensor>, Status>,
        std::time::Duration,
    ) {
        let started = std::time::Instant::now();
        let result = self.run(signature, inputs, output_filter);
        (result, started.elapsed())
    }

    /// The typical duration of one `run` so far, if known. Callers may run cheap
    /// servables inline instead of handing them to a blocking thread.
    fn typical_run_time(&self) -> Option<std::time::Duration> {
        None
    }
}
