//! Turns a SavedModel's `GraphDef` into one tract model per signature: fed tensors
//! become typed Placeholders, the graph is pruned to the data dependencies of the
//! signature's outputs (control edges dropped), `PlaceholderWithDefault` becomes
//! `Identity`, variables become constants from the checkpoint, and any op tract
//! does not know is named before tract sees the graph.

use std::collections::HashMap;
use std::sync::Arc;

use tract_core::internal::{OutletId, Tensor};
use tract_tensorflow::Tensorflow;
use tract_tensorflow::tfpb::tensorflow::attr_value::Value;
use tract_tensorflow::tfpb::tensorflow::{AttrValue, GraphDef, NodeDef};
use tract_tensorflow::tract_hir::prelude::InferenceModel;

use super::variables::Variables;
use crate::error::LoadError;
use crate::program::chain;

/// Prefix of the Placeholder nodes that stand for fed tensors.
const FEED_PREFIX: &str = "infermesh/feed/";
/// Variable ops replaced by their checkpoint value.
const VARIABLE_OPS: [&str; 2] = ["VariableV2", "Variable"];

/// A tensor of the graph, `node:slot` (`node` alone means slot 0).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorRef {
    pub node: String,
    pub slot: usize,
}

impl TensorRef {
    /// Parses a tensor name or a data input; `None` for a control input (`^node`).
    pub fn parse(name: &str) -> Option<TensorRef> {
        if name.starts_with('^') {
            return None;
        }
        match name.rsplit_once(':') {
            Some((node, slot)) if slot.parse::<usize>().is_ok() => Some(TensorRef {
                node: node.to_string(),
                slot: slot.parse().unwrap_or(0),
            }),
            _ => Some(TensorRef {
                node: name.to_string(),
                slot: 0,
            }),
        }
    }
}

/// A tensor the signature feeds, and the TensorFlow dtype of what is fed.
#[derive(Clone, Debug)]
pub struct Feed {
    pub tensor: TensorRef,
    pub dtype: i32,
}

/// A pruned, parsed signature graph.
pub struct Subgraph {
    /// Inputs are the used feeds in feed order, outputs the requested tensors.
    pub model: InferenceModel,
    /// Indices (into the feeds given) of the feeds the outputs depend on.
    pub used_feeds: Vec<usize>,
}

/// The graph of a SavedModel, indexed by node name, with its variables.
pub struct Graph<'a> {
    tf: Tensorflow,
    graph: &'a GraphDef,
    by_name: HashMap<&'a str, usize>,
    variables: Variables,
}

impl<'a> Graph<'a> {
    pub fn new(graph: &'a GraphDef, variables: Variables) -> Graph<'a> {
        let by_name = graph
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        Graph {
            tf: tract_tensorflow::tensorflow(),
            graph,
            by_name,
            variables,
        }
    }

    pub fn node(&self, name: &str) -> Option<&'a NodeDef> {
        self.by_name.get(name).map(|&i| &self.graph.node[i])
    }

    pub fn nodes(&self) -> impl Iterator<Item = &'a NodeDef> {
        self.graph.node.iter()
    }

    /// The value of a constant tensor, following `Identity` and `Reshape` (whose
    /// flat values are those of their first input).
    pub fn const_value(&self, tensor: &TensorRef) -> Result<Tensor, String> {
        let mut current = tensor.clone();
        for _ in 0..16 {
            let node = self
                .node(&current.node)
                .ok_or_else(|| format!("no node {}", current.node))?;
            match node.op.as_str() {
                "Const" => {
                    return node
                        .get_attr_tensor("value")
                        .map_err(|e| format!("node {}: {}", node.name, chain(&e)));
                }
                "Identity" | "Reshape" => {
                    current = node
                        .input
                        .first()
                        .and_then(|i| TensorRef::parse(i))
                        .ok_or_else(|| format!("node {} has no input", node.name))?;
                }
                op => return Err(format!("node {} ({op}) is not a constant", node.name)),
            }
        }
        Err(format!("{} is not a constant", tensor.node))
    }

    /// Builds the tract model of one signature.
    pub fn subgraph(
        &mut self,
        signature: &str,
        feeds: &[Feed],
        outputs: &[TensorRef],
    ) -> Result<Subgraph, LoadError> {
        let fail = |reason: String| LoadError::signature(signature, reason);
        let feed_of: HashMap<&TensorRef, usize> = feeds
            .iter()
            .enumerate()
            .map(|(i, f)| (&f.tensor, i))
            .collect();
        for t in feeds.iter().map(|f| &f.tensor).chain(outputs) {
            if self.node(&t.node).is_none() {
                return Err(fail(format!(
                    "tensor {}:{} is not in the graph",
                    t.node, t.slot
                )));
            }
        }
        // Walk back from the outputs along data edges, stopping at fed tensors.
        let mut used = vec![false; feeds.len()];
        let mut keep = vec![false; self.graph.node.len()];
        let mut stack: Vec<TensorRef> = outputs.to_vec();
        while let Some(t) = stack.pop() {
            if let Some(&f) = feed_of.get(&t) {
                used[f] = true;
                continue;
            }
            let ix = *self
                .by_name
                .get(t.node.as_str())
                .ok_or_else(|| fail(format!("a node refers to missing node {}", t.node)))?;
            if !keep[ix] {
                keep[ix] = true;
                stack.extend(
                    self.graph.node[ix]
                        .input
                        .iter()
                        .filter_map(|i| TensorRef::parse(i)),
                );
            }
        }
        let feed_name = |i: usize| format!("{FEED_PREFIX}{i}");
        let rename = |input: &str| -> Option<String> {
            let t = TensorRef::parse(input)?;
            Some(match feed_of.get(&t) {
                Some(&f) => feed_name(f),
                None => input.to_string(),
            })
        };
        let mut pruned = GraphDef {
            versions: self.graph.versions.clone(),
            ..Default::default()
        };
        let mut variables = Vec::new();
        for (ix, node) in self.graph.node.iter().enumerate().filter(|(i, _)| keep[*i]) {
            let mut node = node.clone();
            node.input = node.input.iter().filter_map(|i| rename(i)).collect();
            node.attr.remove("_output_shapes");
            match node.op.as_str() {
                "Placeholder" => {
                    return Err(fail(format!(
                        "its outputs depend on placeholder {}, which it does not feed",
                        node.name
                    )));
                }
                "PlaceholderWithDefault" => {
                    node.op = "Identity".into();
                    if let Some(dtype) = node.attr.remove("dtype") {
                        node.attr.insert("T".into(), dtype);
                    }
                }
                op if VARIABLE_OPS.contains(&op) => variables.push(ix),
                "NextIteration" => {}
                op if !self.tf.op_register.0.contains_key(op) => {
                    return Err(LoadError::UnsupportedOp {
                        op: op.to_string(),
                        node: node.name.clone(),
                        signature: signature.to_string(),
                    });
                }
                _ => {}
            }
            pruned.node.push(node);
        }
        let used_feeds: Vec<usize> = (0..feeds.len()).filter(|&i| used[i]).collect();
        for &i in &used_feeds {
            let mut node = NodeDef {
                name: feed_name(i),
                op: "Placeholder".into(),
                ..Default::default()
            };
            node.attr.insert(
                "dtype".into(),
                AttrValue {
                    value: Some(Value::Type(feeds[i].dtype)),
                },
            );
            pruned.node.push(node);
        }
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.tf.parse_graph(&pruned)
        }));
        let mut model = match parsed {
            Ok(Ok(parsed)) => parsed.0,
            Ok(Err(e)) => {
                return Err(fail(format!(
                    "the inference engine rejected the graph: {}",
                    chain(&e)
                )));
            }
            Err(_) => {
                return Err(fail(
                    "the inference engine could not parse the graph".into(),
                ));
            }
        };
        for ix in variables {
            let node = &self.graph.node[ix];
            let value: Arc<Tensor> = self.variables.value(node).map_err(|e| match e {
                super::variables::VariableError::Checkpoint(c) => LoadError::Checkpoint(c),
                super::variables::VariableError::Other(reason) => fail(reason),
            })?;
            let konst = tract_tensorflow::tract_hir::ops::konst::Const::new(value)
                .map_err(|e| fail(format!("variable {}: {}", node.name, chain(&e))))?;
            let id = model
                .node_by_name(&node.name)
                .map_err(|e| fail(chain(&e)))?
                .id;
            model.node_mut(id).op = Box::new(konst);
        }
        let outlet = |model: &InferenceModel, t: &TensorRef| -> Result<OutletId, LoadError> {
            let (name, slot) = match feed_of.get(t) {
                Some(&f) => (feed_name(f), 0),
                None => (t.node.clone(), t.slot),
            };
            let node = model.node_by_name(&name).map_err(|e| fail(chain(&e)))?;
            if slot >= node.outputs.len() {
                return Err(fail(format!("node {name} has no output {slot}")));
            }
            Ok(OutletId::new(node.id, slot))
        };
        let input_outlets = used_feeds
            .iter()
            .map(|&i| outlet(&model, &feeds[i].tensor))
            .collect::<Result<Vec<_>, _>>()?;
        let output_outlets = outputs
            .iter()
            .map(|t| outlet(&model, t))
            .collect::<Result<Vec<_>, _>>()?;
        model
            .set_input_outlets(&input_outlets)
            .and_then(|_| model.select_output_outlets(&output_outlets))
            .map_err(|e| fail(chain(&e)))?;
        Ok(Subgraph { model, used_feeds })
    }
}
