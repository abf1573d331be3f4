//! The loaded model as a [`Servable`]: its signatures as stored, and per signature a
//! [`Runner`] that maps request tensors to program inputs (directly, or through
//! parsed `tf.Example` features) and program outputs back to output keys.

use std::collections::{BTreeMap, HashMap};

use infermesh_tfserving::{DType, Servable, Signature, Status, Tensor, TensorData};
use tract_core::internal::{IntoTValue, TValue, TVec};

use crate::convert;
use crate::program::Program;
use crate::savedmodel::example::{self, DenseFeature, Example};

/// Where one program input comes from.
pub enum Source {
    /// The request tensor of a signature input, as is.
    Tensor { key: String, dtype: DType },
    /// A dense feature parsed from the serialized `tf.Example`s of a signature input.
    Feature { key: String, feature: DenseFeature },
}

/// How one signature runs.
pub struct Runner {
    pub program: Program,
    /// Per program input, in program order.
    pub sources: Vec<Source>,
    /// Per output key, the program output that holds it.
    pub outputs: BTreeMap<String, usize>,
    /// The program outputs of all keys, ascending, each once (no output filter).
    all_outputs: Vec<usize>,
}

/// A loaded model version.
pub struct Engine {
    signatures: BTreeMap<String, Signature>,
    /// Looked up per request (foldhash: the keys come from the model, not the request).
    runners: HashMap<String, Runner, foldhash::fast::RandomState>,
}

impl Engine {
    pub fn new(
        signatures: BTreeMap<String, Signature>,
        runners: HashMap<String, Runner>,
    ) -> Engine {
        Engine {
            signatures,
            runners: runners.into_iter().collect(),
        }
    }
}

#[cfg(test)]
impl Engine {
    pub fn runner(&self, signature: &str) -> &Runner {
        &self.runners[signature]
    }
}

fn keys<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    keys.map(String::as_str).collect::<Vec<_>>().join(",")
}

impl Runner {
    pub fn new(program: Program, sources: Vec<Source>, outputs: BTreeMap<String, usize>) -> Runner {
        let mut all_outputs: Vec<usize> = outputs.values().copied().collect();
        all_outputs.sort_unstable();
        all_outputs.dedup();
        Runner {
            program,
            sources,
            outputs,
            all_outputs,
        }
    }

    fn outputs_for(&self, filter: &[String]) -> Result<Vec<(String, usize)>, Status> {
        if filter.is_empty() {
            return Ok(self.outputs.iter().map(|(k, &i)| (k.clone(), i)).collect());
        }
        let mut wanted = Vec::with_capacity(filter.len());
        for key in filter {
            let ix = self.outputs.get(key).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "output tensor alias not found in signature: {key} Outputs expected to be in the set {{{}}}.",
                    keys(self.outputs.keys())
                ))
            })?;
            if !wanted.iter().any(|(k, _)| k == key) {
                wanted.push((key.clone(), *ix));
            }
        }
        Ok(wanted)
    }

    fn inputs(&self, mut inputs: BTreeMap<String, Tensor>) -> Result<TVec<TValue>, Status> {
        // Parsed `tf.Example`s per input key: a list, not a map — a signature has one
        // or two such keys, and a plain tensor request then builds no hasher at all.
        let mut parsed: Vec<(&str, Vec<Example>)> = Vec::new();
        let mut values = TVec::with_capacity(self.sources.len());
        for (ix, source) in self.sources.iter().enumerate() {
            match source {
                Source::Tensor { key, dtype } => {
                    let tensor = inputs
                        .remove(key)
                        .ok_or_else(|| missing(key, &self.sources))?;
                    if tensor.dtype() != *dtype {
                        return Err(Status::invalid_argument(format!(
                            "Expects arg[{ix}] to be {dtype} but {} is provided",
                            tensor.dtype()
                        )));
                    }
                    values.push(convert::to_tract(tensor)?.into_tvalue());
                }
                Source::Feature { key, feature } => {
                    let at = match parsed.iter().position(|(k, _)| *k == key.as_str()) {
                        Some(at) => at,
                        None => {
                            let tensor =
                                inputs.get(key).ok_or_else(|| missing(key, &self.sources))?;
                            let TensorData::Str(serialized) = &tensor.data else {
                                return Err(Status::invalid_argument(format!(
                                    "input {key} takes serialized tf.Example strings, got {}",
                                    tensor.dtype()
                                )));
                            };
                            parsed.push((key, example::decode(serialized)?));
                            parsed.len() - 1
                        }
                    };
                    values.push(example::dense_tensor(&parsed[at].1, feature)?.into_tvalue());
                }
            }
        }
        Ok(values)
    }
}

fn missing(key: &str, sources: &[Source]) -> Status {
    let mut names: Vec<&String> = sources
        .iter()
        .map(|s| match s {
            Source::Tensor { key, .. } | Source::Feature { key, .. } => key,
        })
        .collect();
    names.sort();
    names.dedup();
    Status::invalid_argument(format!(
        "input tensor alias not found in signature: {key}. Inputs expected to be in the set {{{}}}.",
        keys(names.into_iter())
    ))
}

impl Servable for Engine {
    fn signatures(&self) -> &BTreeMap<String, Signature> {
        &self.signatures
    }

    fn run(
        &self,
        signature: &str,
        inputs: BTreeMap<String, Tensor>,
        output_filter: &[String],
    ) -> Result<BTreeMap<String, Tensor>, Status> {
        let runner = self.runners.get(signature).ok_or_else(|| {
            Status::failed_precondition(format!("Serving signature key \"{signature}\" not found."))
        })?;
        if output_filter.is_empty() {
            // Every key: the program outputs are known up front, no list to build.
            let values = runner.inputs(inputs)?;
            let results = runner.program.run(values, &runner.all_outputs)?;
            let mut outputs = BTreeMap::new();
            for (key, ix) in &runner.outputs {
                let at = runner
                    .all_outputs
                    .binary_search(ix)
                    .map_err(|_| Status::internal("output bookkeeping error"))?;
                outputs.insert(key.clone(), convert::from_tract(&results[at])?);
            }
            return Ok(outputs);
        }
        let wanted = runner.outputs_for(output_filter)?;
        let mut program_outputs: Vec<usize> = wanted.iter().map(|(_, ix)| *ix).collect();
        program_outputs.sort_unstable();
        program_outputs.dedup();
        let values = runner.inputs(inputs)?;
        let results = runner.program.run(values, &program_outputs)?;
        let mut outputs = BTreeMap::new();
        for (key, ix) in wanted {
            let at = program_outputs
                .binary_search(&ix)
                .map_err(|_| Status::internal("output bookkeeping error"))?;
            outputs.insert(key, convert::from_tract(&results[at])?);
        }
        Ok(outputs)
    }
}
