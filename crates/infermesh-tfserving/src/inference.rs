//! Classify and regress without a wire format: checking a signature can serve them,
//! turning the request `Input` (tf.Examples, optional shared context) into the
//! serialized-example `DT_STRING` tensor a model consumes, and turning the model's
//! output tensors into `ClassificationResult` / `RegressionResult` with TF Serving's
//! rules and messages (`servables/tensorflow/{classifier,regressor,util}.cc`).

use std::collections::BTreeMap;

use prost::Message as _;

use crate::proto::tensorflow::Example;
use crate::proto::tensorflow::serving::{
    Class, ClassificationResult, Classifications, Input, Regression, RegressionResult, input,
};
use crate::servable::method;
use crate::tensor::tf_dtype_enum_name;
use crate::{Signature, Status, Tensor, TensorData};

/// The input key of classify and regress signatures.
pub const INPUTS: &str = "inputs";
/// Classify output keys.
pub const CLASSES: &str = "classes";
pub const SCORES: &str = "scores";
/// The regress output key.
pub const OUTPUTS: &str = "outputs";

/// Checks that a signature can serve Classify.
pub fn check_classify_signature(sig: &Signature) -> Result<(), Status> {
    if sig.method_name != method::CLASSIFY {
        return Err(Status::invalid_argument(format!(
            "Expected classification signature method_name to be {}. Was: {}",
            method::CLASSIFY,
            sig.method_name
        )));
    }
    if sig.inputs.len() != 1 {
        return Err(Status::invalid_argument("Expected one input Tensor."));
    }
    if sig.outputs.len() != 1 && sig.outputs.len() != 2 {
        return Err(Status::invalid_argument(format!(
            "Expected one or two output Tensors, found {}",
            sig.outputs.len()
        )));
    }
    if !sig.inputs.contains_key(INPUTS) {
        return Err(Status::failed_precondition(
            "No classification inputs found in SignatureDef",
        ));
    }
    if !sig.outputs.contains_key(CLASSES) && !sig.outputs.contains_key(SCORES) {
        return Err(Status::failed_precondition(
            "Expected classification signature outputs to contain \"classes\" and/or \"scores\".",
        ));
    }
    Ok(())
}

/// Checks that a signature can serve Regress.
pub fn check_regress_signature(sig: &Signature) -> Result<(), Status> {
    if sig.method_name != method::REGRESS {
        return Err(Status::invalid_argument(format!(
            "Expected regression signature method_name to be {}. Was: {}",
            method::REGRESS,
            sig.method_name
        )));
    }
    if sig.inputs.len() != 1 {
        return Err(Status::invalid_argument("Expected one input Tensor."));
    }
    if sig.outputs.len() != 1 {
        return Err(Status::invalid_argument("Expected one output Tensor."));
    }
    if !sig.inputs.contains_key(INPUTS) {
        return Err(Status::failed_precondition(
            "No regression inputs found in SignatureDef",
        ));
    }
    if !sig.outputs.contains_key(OUTPUTS) {
        return Err(Status::failed_precondition(
            "No regression outputs found in SignatureDef",
        ));
    }
    Ok(())
}

/// The examples of an `Input`, each with the context's features merged in (an
/// example's own feature wins over a context feature of the same name).
pub fn input_examples(input: &Input) -> Result<Vec<Example>, Status> {
    let examples = match &input.kind {
        Some(input::Kind::ExampleList(list)) => list.examples.clone(),
        Some(input::Kind::ExampleListWithContext(list)) => {
            let context = list
                .context
                .as_ref()
                .and_then(|c| c.features.as_ref())
                .map(|f| f.feature.clone())
                .unwrap_or_default();
            list.examples
                .iter()
                .map(|e| {
                    let mut features = context.clone();
                    if let Some(own) = &e.features {
                        features.extend(own.feature.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    Example {
                        features: Some(crate::proto::tensorflow::Features { feature: features }),
                    }
                })
                .collect()
        }
        None => Vec::new(),
    };
    if examples.is_empty() {
        return Err(Status::invalid_argument("Input is empty."));
    }
    Ok(examples)
}

/// The serialized examples as a `DT_STRING` tensor of shape `[N]`.
pub fn examples_tensor(examples: &[Example]) -> Tensor {
    Tensor {
        shape: vec![examples.len()],
        data: TensorData::Str(examples.iter().map(|e| e.encode_to_vec()).collect()),
    }
}

/// [`input_examples`] then [`examples_tensor`]; also returns the example count.
pub fn input_to_examples_tensor(input: &Input) -> Result<(Tensor, usize), Status> {
    let examples = input_examples(input)?;
    Ok((examples_tensor(&examples), examples.len()))
}

fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}

/// A `[batch, num_classes]` output checked against the batch size.
fn matrix<'a>(t: &'a Tensor, what: &str, want: i32, n: usize) -> Result<&'a Tensor, Status> {
    if t.shape.len() != 2 {
        return Err(Status::invalid_argument(format!(
            "Expected Tensor shape: [batch_size num_classes] but got {}",
            shape_string(&t.shape)
        )));
    }
    if t.dtype().to_tf() != want {
        return Err(Status::invalid_argument(format!(
            "Expected {what} Tensor of {}. Got: {}",
            tf_dtype_enum_name(want),
            tf_dtype_enum_name(t.dtype().to_tf())
        )));
    }
    if t.shape[0] != n {
        return Err(Status::invalid_argument(format!(
            "Expected {what} output batch size of {n}. Got: {}",
            t.shape[0]
        )));
    }
    Ok(t)
}

/// Builds the classification result from the `classes` and/or `scores` outputs;
/// without `classes` labels are empty, without `scores` scores are 0.
pub fn classification_result(
    outputs: &BTreeMap<String, Tensor>,
    num_examples: usize,
) -> Result<ClassificationResult, Status> {
    let classes = outputs
        .get(CLASSES)
        .map(|t| matrix(t, "classes", 7, num_examples))
        .transpose()?;
    let scores = outputs
        .get(SCORES)
        .map(|t| matrix(t, "scores", 1, num_examples))
        .transpose()?;
    let num_classes = match (classes, scores) {
        (Some(c), Some(s)) if c.shape[1] != s.shape[1] => {
            return Err(Status::invalid_argument(format!(
                "Tensors class and score should match in dim_size(1). Got {} vs. {}",
                c.shape[1], s.shape[1]
            )));
        }
        (Some(c), _) => c.shape[1],
        (None, Some(s)) => s.shape[1],
        (None, None) => {
            return Err(Status::invalid_argument(
                "Expected classification outputs to contain \"classes\" and/or \"scores\".",
            ));
        }
    };
    let labels = match classes.map(|c| &c.data) {
        Some(TensorData::Str(v)) => Some(v),
        _ => None,
    };
    let values = match scores.map(|s| &s.data) {
        Some(TensorData::F32(v)) => Some(v),
        _ => None,
    };
    let mut result = ClassificationResult::default();
    for i in 0..num_examples {
        let mut c = Classifications::default();
        for j in 0..num_classes {
            let k = i * num_classes + j;
            let label = labels
                .and_then(|l| l.get(k))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let score = values.and_then(|s| s.get(k)).copied().unwrap_or_default();
            c.classes.push(Class { label, score });
        }
        result.classifications.push(c);
    }
    Ok(result)
}

/// Builds the regression result from the `outputs` tensor (`[batch]` or `[batch, 1]`).
pub fn regression_result(
    outputs: &BTreeMap<String, Tensor>,
    num_examples: usize,
) -> Result<RegressionResult, Status> {
    let t = outputs
        .get(OUTPUTS)
        .or_else(|| {
            (outputs.len() == 1)
                .then(|| outputs.values().next())
                .flatten()
        })
        .ok_or_else(|| Status::invalid_argument("Expected one output Tensor."))?;
    let TensorData::F32(values) = &t.data else {
        return Err(Status::invalid_argument(format!(
            "Expected output Tensor of DT_FLOAT.  Got: {}",
            tf_dtype_enum_name(t.dtype().to_tf())
        )));
    };
    let shape_ok = t.shape.len() == 1 || (t.shape.len() == 2 && t.shape[1] == 1);
    if !shape_ok {
        return Err(Status::invalid_argument(format!(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {}",
            shape_string(&t.shape)
        )));
    }
    if t.shape[0] != num_examples {
        return Err(Status::invalid_argument(format!(
            "Input batch size did not match output batch size: {num_examples} vs. {}",
            t.shape[0]
        )));
    }
    Ok(RegressionResult {
        regressions: values.iter().map(|&value| Regression { value }).collect(),
    })
}

#[cfg(test)]
#[path = "inference_tests.rs"]
mod tests;
