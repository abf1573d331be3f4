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
    /// See [`key_ordered`].
    key_ordered: bool,
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
        let key_ordered = key_ordered(&sources);
        Runner {
            program,
            sources,
            outputs,
            all_outputs,
            key_ordered,
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

    fn inputs(&self, inputs: BTreeMap<String, Tensor>) -> Result<TVec<TValue>, Status> {
        if self.key_ordered && holds_exactly(&self.sources, &inputs) {
            return inputs_in_key_order(&self.sources, inputs);
        }
        inputs_by_key(&self.sources, inputs)
    }
}

/// Whether every source is a plain tensor and their keys ascend in program order: then
/// a request map holding exactly those keys iterates in program order.
fn key_ordered(sources: &[Source]) -> bool {
    let mut previous: Option<&String> = None;
    sources.iter().all(|source| match source {
        Source::Tensor { key, .. } => {
            let ascending = previous.is_none_or(|p| p < key);
            previous = Some(key);
            ascending
        }
        Source::Feature { .. } => false,
    })
}

/// Whether `inputs` holds exactly the sources' keys (for [`key_ordered`] sources: in
/// the same order).
fn holds_exactly(sources: &[Source], inputs: &BTreeMap<String, Tensor>) -> bool {
    inputs.len() == sources.len()
        && inputs.keys().zip(sources).all(|(k, source)| match source {
            Source::Tensor { key, .. } => key == k,
            Source::Feature { .. } => false,
        })
}

/// [`inputs_by_key`] for [`key_ordered`] sources and a request [`holds_exactly`] their
/// keys: the tensors are taken in map order, without a removal per key.
fn inputs_in_key_order(
    sources: &[Source],
    inputs: BTreeMap<String, Tensor>,
) -> Result<TVec<TValue>, Status> {
    let mut values = TVec::with_capacity(sources.len());
    for (ix, (source, tensor)) in sources.iter().zip(inputs.into_values()).enumerate() {
        let Source::Tensor { dtype, .. } = source else {
            return Err(Status::internal("input bookkeeping error"));
        };
        values.push(tensor_value(ix, *dtype, tensor)?);
    }
    Ok(values)
}

/// A request tensor as program input `ix`, which takes `dtype`.
fn tensor_value(ix: usize, dtype: DType, tensor: Tensor) -> Result<TValue, Status> {
    if tensor.dtype() != dtype {
        return Err(Status::invalid_argument(format!(
            "Expects arg[{ix}] to be {dtype} but {} is provided",
            tensor.dtype()
        )));
    }
    Ok(convert::to_tract(tensor)?.into_tvalue())
}

/// The program inputs, source by source: tensors looked up by key, features parsed
/// from the serialized `tf.Example`s of their key.
fn inputs_by_key(
    sources: &[Source],
    mut inputs: BTreeMap<String, Tensor>,
) -> Result<TVec<TValue>, Status> {
    // Parsed `tf.Example`s per input key: a list, not a map — a signature has one
    // or two such keys, and a plain tensor request then builds no hasher at all.
    let mut parsed: Vec<(&str, Vec<Example>)> = Vec::new();
    let mut values = TVec::with_capacity(sources.len());
    for (ix, source) in sources.iter().enumerate() {
        match source {
            Source::Tensor { key, dtype } => {
                let tensor = inputs.remove(key).ok_or_else(|| missing(key, sources))?;
                values.push(tensor_value(ix, *dtype, tensor)?);
            }
            Source::Feature { key, feature } => {
                let at = match parsed.iter().position(|(k, _)| *k == key.as_str()) {
                    Some(at) => at,
                    None => {
                        let tensor = inputs.get(key).ok_or_else(|| missing(key, sources))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Vec<tract_core::internal::Tensor>, Status>;

    fn outcome(result: Result<TVec<TValue>, Status>) -> Outcome {
        result.map(|values| values.iter().map(|v| (**v).clone()).collect())
    }

    /// Generated tensor sources (one to three keys, in or out of key order, repeated
    /// keys, several dtypes) and requests (exact keys, missing, extra, wrong dtype or
    /// shape): taking tensors in map order gives what looking each key up gives,
    /// whenever `Runner::inputs` would take it.
    #[test]
    fn key_order_path_matches_lookup_by_key() {
        let pool = ["a", "b", "c", "x"];
        let dtypes = [DType::Float, DType::Int32];
        let mut x: u32 = 0x0bad_cafe;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize
        };
        let mut fast_cases = 0;
        for case in 0..5_000 {
            let sources: Vec<Source> = (0..1 + next() % 3)
                .map(|_| Source::Tensor {
                    key: pool[next() % 3].to_string(),
                    dtype: dtypes[next() % 2],
                })
                .collect();
            // Half the requests hold the sources' keys, the rest any of the pool.
            let exact = next() % 2 == 0;
            let mut inputs = BTreeMap::new();
            for key in pool {
                let wanted = sources
                    .iter()
                    .any(|s| matches!(s, Source::Tensor { key: k, .. } if k == key));
                if (exact && !wanted) || (!exact && next() % 4 == 0) {
                    continue;
                }
                let tensor = match next() % 4 {
                    0 => Tensor::new(vec![2], TensorData::I32(vec![1, 2])),
                    1 => Tensor::new(vec![2, 1], TensorData::F32(vec![0.5, 1.5])),
                    _ => Tensor::new(vec![3], TensorData::F32(vec![1.0, 2.0, 5.0])),
                };
                inputs.insert(key.to_string(), tensor.unwrap());
            }
            let general = outcome(inputs_by_key(&sources, inputs.clone()));
            if key_ordered(&sources) && holds_exactly(&sources, &inputs) {
                fast_cases += 1;
                let fast = outcome(inputs_in_key_order(&sources, inputs));
                assert_eq!(fast, general, "case {case}");
            }
        }
        assert!(fast_cases > 500, "{fast_cases}");
    }

    #[test]
    fn key_order_needs_ascending_tensor_keys() {
        let tensor = |key: &str| Source::Tensor {
            key: key.into(),
            dtype: DType::Float,
        };
        assert!(key_ordered(&[]));
        assert!(key_ordered(&[tensor("a")]));
        assert!(key_ordered(&[tensor("a"), tensor("b")]));
        assert!(!key_ordered(&[tensor("b"), tensor("a")]));
        assert!(!key_ordered(&[tensor("a"), tensor("a")]));
    }
}
