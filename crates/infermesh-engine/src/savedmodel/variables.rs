//! The values of a SavedModel's variables: which checkpoint key restores each
//! variable node (read from the graph's `RestoreV2` → `Assign` wiring, defaulting to
//! the node name), read from the checkpoint once and shared by every signature.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tract_core::internal::Tensor;
use tract_tensorflow::tfpb::tensorflow::attr_value::Value;
use tract_tensorflow::tfpb::tensorflow::{GraphDef, NodeDef};

use super::graph::TensorRef;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::convert;

/// Why a variable has no value.
#[derive(Debug)]
pub enum VariableError {
    Checkpoint(CheckpointError),
    Other(String),
}

/// Variable values, loaded on first use.
pub struct Variables {
    /// `<version dir>/variables/variables`.
    prefix: PathBuf,
    checkpoint: Option<Checkpoint>,
    keys: HashMap<String, String>,
    values: HashMap<String, Arc<Tensor>>,
}

/// `RestoreV2` → `Assign(variable, RestoreV2:i)`: variable node → checkpoint key.
fn restore_keys(graph: &GraphDef) -> HashMap<String, String> {
    let by_name: HashMap<&str, &NodeDef> =
        graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut keys = HashMap::new();
    for assign in graph.node.iter().filter(|n| n.op == "Assign") {
        let (Some(var), Some(src)) = (
            assign.input.first().and_then(|i| TensorRef::parse(i)),
            assign.input.get(1).and_then(|i| TensorRef::parse(i)),
        ) else {
            continue;
        };
        let Some(restore) = by_name
            .get(src.node.as_str())
            .filter(|n| n.op == "RestoreV2")
        else {
            continue;
        };
        let names = restore
            .input
            .get(1)
            .and_then(|i| TensorRef::parse(i))
            .and_then(|t| by_name.get(t.node.as_str()))
            .and_then(|n| n.attr.get("value"))
            .and_then(|v| match v.value.as_ref() {
                Some(Value::Tensor(t)) => t.string_val.get(src.slot).cloned(),
                _ => None,
            });
        if let Some(Ok(key)) = names.map(String::from_utf8) {
            keys.insert(var.node, key);
        }
    }
    keys
}

impl Variables {
    pub fn new(graph: &GraphDef, prefix: PathBuf) -> Variables {
        Variables {
            prefix,
            checkpoint: None,
            keys: restore_keys(graph),
            values: HashMap::new(),
        }
    }

    fn checkpoint(&mut self) -> Result<&Checkpoint, VariableError> {
        if self.checkpoint.is_none() {
            let opened = Checkpoint::open(&self.prefix).map_err(VariableError::Checkpoint)?;
            self.checkpoint = Some(opened);
        }
        Ok(self.checkpoint.as_ref().expect("opened above"))
    }

    /// The value of a variable node (`VariableV2`), checked against its dtype and shape.
    pub fn value(&mut self, node: &NodeDef) -> Result<Arc<Tensor>, VariableError> {
        if let Some(v) = self.values.get(&node.name) {
            return Ok(v.clone());
        }
        let key = self
            .keys
            .get(&node.name)
            .cloned()
            .unwrap_or_else(|| node.name.clone());
        let checkpoint = self.checkpoint()?;
        if !checkpoint.contains(&key) {
            return Err(VariableError::Other(format!(
                "variable {} has no value in the checkpoint (key {key:?}, {} tensors stored)",
                node.name,
                checkpoint.len()
            )));
        }
        let tensor = checkpoint.read(&key).map_err(VariableError::Checkpoint)?;
        if let Some(Value::Type(dtype)) = node.attr.get("dtype").and_then(|a| a.value.as_ref()) {
            let expected = infermesh_tfserving::DType::from_tf(*dtype).map(convert::datum_type);
            if expected != Some(tensor.datum_type()) {
                return Err(VariableError::Other(format!(
                    "variable {} is declared with dtype {dtype} but the checkpoint holds {:?}",
                    node.name,
                    tensor.datum_type()
                )));
            }
        }
        if let Some(Value::Shape(shape)) = node.attr.get("shape").and_then(|a| a.value.as_ref()) {
            let declared: Vec<i64> = shape.dim.iter().map(|d| d.size).collect();
            let stored: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
            let compatible = shape.unknown_rank
                || (declared.len() == stored.len()
                    && declared.iter().zip(&stored).all(|(d, s)| *d < 0 || d == s));
            if !compatible {
                return Err(VariableError::Other(format!(
                    "variable {} is declared with shape {declared:?} but the checkpoint holds {stored:?}",
                    node.name
                )));
            }
        }
        let value = Arc::new(tensor);
        self.values.insert(node.name.clone(), value.clone());
        Ok(value)
    }
}
