//! TensorFlow SavedModels (TF1 graphs, as TF Serving's test models): decodes
//! `saved_model.pb`, takes the `serve` MetaGraphDef, exposes every SignatureDef as
//! stored, and builds one pruned, variable-frozen program per signature.

pub mod example;
mod graph;
mod parse_spec;
#[cfg(test)]
mod tests;
mod variables;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use infermesh_tfserving::{DType, Signature, TensorInfo};
use prost::Message;
use tract_tensorflow::tfpb::tensorflow::{
    MetaGraphDef, SavedModel, SignatureDef, TensorInfo as TfTensorInfo, tensor_info,
};

use self::graph::{Feed, Graph, TensorRef};
use crate::error::LoadError;
use crate::program::Program;
use crate::servable::{Engine, Runner, Source};

/// The tag set TF Serving loads by default.
const SERVE_TAG: &str = "serve";

/// Loads the SavedModel in version directory `dir`.
pub fn load(dir: &Path) -> Result<Engine, LoadError> {
    let path = dir.join(crate::SAVED_MODEL_FILE);
    let bytes = std::fs::read(&path).map_err(|e| LoadError::io(&path, e))?;
    let saved = SavedModel::decode(bytes.as_slice())
        .map_err(|e| LoadError::invalid(&path, format!("cannot decode SavedModel: {e}")))?;
    let meta = serve_meta_graph(&saved)
        .ok_or_else(|| LoadError::invalid(&path, "no MetaGraphDef is tagged \"serve\""))?;
    let graph_def = meta
        .graph_def
        .as_ref()
        .ok_or_else(|| LoadError::invalid(&path, "the serve MetaGraphDef has no graph"))?;
    let variables = variables::Variables::new(graph_def, dir.join("variables").join("variables"));
    let mut graph = Graph::new(graph_def, variables);
    let mut signatures = BTreeMap::new();
    let mut runners = HashMap::new();
    for (key, def) in sorted(&meta.signature_def) {
        signatures.insert(key.clone(), signature(def));
        runners.insert(key.clone(), runner(&mut graph, key, def)?);
    }
    tracing::debug!(path = %path.display(), signatures = signatures.len(), "loaded SavedModel");
    Ok(Engine::new(signatures, runners))
}

fn sorted<V>(map: &HashMap<String, V>) -> BTreeMap<&String, &V> {
    map.iter().collect()
}

/// The MetaGraphDef tagged exactly `serve`, else the first one carrying `serve`.
fn serve_meta_graph(saved: &SavedModel) -> Option<&MetaGraphDef> {
    let tags = |m: &MetaGraphDef| {
        m.meta_info_def
            .as_ref()
            .map(|i| i.tags.clone())
            .unwrap_or_default()
    };
    saved
        .meta_graphs
        .iter()
        .find(|m| tags(m) == [SERVE_TAG])
        .or_else(|| {
            saved
                .meta_graphs
                .iter()
                .find(|m| tags(m).iter().any(|t| t == SERVE_TAG))
        })
}

fn tensor_name(info: &TfTensorInfo) -> Option<&str> {
    match &info.encoding {
        Some(tensor_info::Encoding::Name(name)) => Some(name),
        _ => None,
    }
}

fn tensor_info(info: &TfTensorInfo) -> TensorInfo {
    TensorInfo {
        name: tensor_name(info).unwrap_or_default().to_string(),
        dtype: info.dtype,
        shape: info
            .tensor_shape
            .as_ref()
            .filter(|s| !s.unknown_rank)
            .map(|s| s.dim.iter().map(|d| d.size).collect()),
    }
}

/// The signature as TF Serving's metadata shows it.
fn signature(def: &SignatureDef) -> Signature {
    Signature {
        method_name: def.method_name.clone(),
        inputs: def
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), tensor_info(v)))
            .collect(),
        outputs: def
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), tensor_info(v)))
            .collect(),
    }
}

fn dense_tensor(name: &str, key: &str, info: &TfTensorInfo) -> Result<TensorRef, LoadError> {
    tensor_name(info).and_then(TensorRef::parse).ok_or_else(|| {
        LoadError::signature(
            name,
            format!("{key} is not a dense tensor (sparse and composite tensors are not supported)"),
        )
    })
}

/// Builds the runner of one signature: which tensors it feeds (the signature's
/// inputs, or the dense features of the Examples it takes), its program, outputs.
fn runner(graph: &mut Graph, name: &str, def: &SignatureDef) -> Result<Runner, LoadError> {
    let mut feeds = Vec::new();
    let mut sources = Vec::new();
    for (key, info) in sorted(&def.inputs) {
        let tensor = dense_tensor(name, key, info)?;
        let features = parse_spec::example_features(graph, &tensor)
            .map_err(|reason| LoadError::signature(name, reason))?;
        for (output, feature) in features {
            feeds.push(Feed {
                tensor: output,
                dtype: feature.dtype.to_tf(),
            });
            sources.push(Source::Feature {
                key: key.clone(),
                feature,
            });
        }
        // The tensor itself is fed too; it stays only if something besides the
        // ParseExample nodes reads it.
        let dtype = DType::from_tf(info.dtype).ok_or_else(|| {
            LoadError::signature(
                name,
                format!(
                    "input {key} has type {}, which infermesh cannot carry",
                    infermesh_tfserving::tensor::tf_dtype_enum_name(info.dtype)
                ),
            )
        })?;
        feeds.push(Feed {
            tensor,
            dtype: dtype.to_tf(),
        });
        sources.push(Source::Tensor {
            key: key.clone(),
            dtype,
        });
    }
    let mut tensors: Vec<TensorRef> = Vec::new();
    let mut outputs = BTreeMap::new();
    for (key, info) in sorted(&def.outputs) {
        let tensor = dense_tensor(name, key, info)?;
        let ix = match tensors.iter().position(|t| *t == tensor) {
            Some(ix) => ix,
            None => {
                tensors.push(tensor);
                tensors.len() - 1
            }
        };
        outputs.insert(key.clone(), ix);
    }
    let sub = graph.subgraph(name, &feeds, &tensors)?;
    let mut sources: Vec<Option<Source>> = sources.into_iter().map(Some).collect();
    let sources = sub
        .used_feeds
        .iter()
        .map(|&i| sources[i].take().expect("each feed is used once"))
        .collect();
    Ok(Runner::new(
        Program::new(format!("signature '{name}'"), sub.model),
        sources,
        outputs,
    ))
}
