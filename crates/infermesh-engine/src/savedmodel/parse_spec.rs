//! Reads what a `ParseExample` / `ParseExampleV2` node would parse (dense keys,
//! types, shapes, defaults) so that signatures fed serialized `tf.Example`s can be
//! served: the Examples are parsed in Rust and the dense features fed at the
//! node's outputs. Sparse and ragged outputs are not produced; a signature that
//! needs them keeps the ParseExample node and is reported as unsupported.

use infermesh_tfserving::DType;
use tract_core::internal::{Blob, Datum, Tensor};
use tract_tensorflow::tfpb::tensorflow::NodeDef;
use tract_tensorflow::tfpb::tensorflow::attr_value::{ListValue, Value};

use super::example::{DenseFeature, Values};
use super::graph::{Graph, TensorRef};

fn int_attr(node: &NodeDef, name: &str) -> Result<usize, String> {
    match node.attr.get(name).and_then(|a| a.value.as_ref()) {
        Some(Value::I(i)) => usize::try_from(*i).map_err(|_| format!("attribute {name} is {i}")),
        _ => Err(format!("missing attribute {name}")),
    }
}

fn list_attr<'n>(node: &'n NodeDef, name: &str) -> Result<&'n ListValue, String> {
    match node.attr.get(name).and_then(|a| a.value.as_ref()) {
        Some(Value::List(l)) => Ok(l),
        _ => Err(format!("missing attribute {name}")),
    }
}

fn input(node: &NodeDef, ix: usize) -> Result<TensorRef, String> {
    node.input
        .get(ix)
        .and_then(|i| TensorRef::parse(i))
        .ok_or_else(|| format!("missing input {ix}"))
}

fn strings(t: &Tensor) -> Result<Vec<String>, String> {
    let view = t
        .to_plain_array_view::<Blob>()
        .map_err(|_| format!("expected strings, found {:?}", t.datum_type()))?;
    view.iter()
        .map(|b| {
            String::from_utf8(b.as_bytes().to_vec()).map_err(|_| "key is not UTF-8".to_string())
        })
        .collect()
}

fn flat<T: Datum + Clone>(t: &Tensor) -> Result<Vec<T>, String> {
    let view = t
        .to_plain_array_view::<T>()
        .map_err(|_| format!("default has type {:?}", t.datum_type()))?;
    Ok(view.iter().cloned().collect())
}

fn default_values(t: &Tensor, dtype: DType, count: usize) -> Result<Option<Values>, String> {
    if t.volume() == 0 {
        return Ok(None);
    }
    let mut values = match dtype {
        DType::Float => Values::Float(flat(t)?),
        DType::Int64 => Values::Int64(flat(t)?),
        _ => Values::Bytes(
            flat::<Blob>(t)?
                .iter()
                .map(|b| b.as_bytes().to_vec())
                .collect(),
        ),
    };
    let len = t.volume();
    if len == 1 && count != 1 {
        values = match values {
            Values::Float(v) => Values::Float(vec![v[0]; count]),
            Values::Int64(v) => Values::Int64(vec![v[0]; count]),
            Values::Bytes(v) => Values::Bytes(vec![v[0].clone(); count]),
        };
    } else if len != count {
        return Err(format!("default has {len} values for {count} expected"));
    }
    Ok(Some(values))
}

/// The dense features of one ParseExample node and the outputs that carry them.
fn node_features(graph: &Graph, node: &NodeDef) -> Result<Vec<(TensorRef, DenseFeature)>, String> {
    let v2 = node.op == "ParseExampleV2";
    let nsparse = int_attr(node, if v2 { "num_sparse" } else { "Nsparse" })?;
    let types = &list_attr(node, "Tdense")?.r#type;
    let shapes = &list_attr(node, "dense_shapes")?.shape;
    let ndense = types.len();
    if shapes.len() != ndense {
        return Err("dense_shapes and Tdense differ in length".into());
    }
    let keys: Vec<String> = if v2 {
        strings(&graph.const_value(&input(node, 3)?)?)?
    } else {
        (0..ndense)
            .map(|j| {
                let key = strings(&graph.const_value(&input(node, 2 + nsparse + j)?)?)?;
                key.into_iter()
                    .next()
                    .ok_or_else(|| "empty dense key".to_string())
            })
            .collect::<Result<_, _>>()?
    };
    if keys.len() != ndense {
        return Err(format!(
            "{} dense keys for {ndense} dense types",
            keys.len()
        ));
    }
    let first_default = if v2 { 5 } else { 2 + nsparse + ndense };
    let mut features = Vec::with_capacity(ndense);
    for (j, key) in keys.into_iter().enumerate() {
        let dtype = match types[j] {
            1 => DType::Float,
            9 => DType::Int64,
            7 => DType::String,
            other => return Err(format!("feature {key} has unsupported type {other}")),
        };
        let shape = shapes[j]
            .dim
            .iter()
            .map(|d| usize::try_from(d.size))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| format!("variable-length feature {key} is not supported"))?;
        let count = shape.iter().product();
        let default = graph
            .const_value(&input(node, first_default + j)?)
            .and_then(|t| default_values(&t, dtype, count))
            .map_err(|e| format!("default of feature {key}: {e}"))?;
        let output = TensorRef {
            node: node.name.clone(),
            slot: 3 * nsparse + j,
        };
        features.push((
            output,
            DenseFeature {
                key,
                dtype,
                shape,
                default,
            },
        ));
    }
    Ok(features)
}

/// The dense features parsed from the serialized Examples in `tensor`, by the
/// ParseExample nodes that read it directly. Empty when no such node exists.
pub fn example_features(
    graph: &Graph,
    tensor: &TensorRef,
) -> Result<Vec<(TensorRef, DenseFeature)>, String> {
    let mut features = Vec::new();
    for node in graph.nodes() {
        if (node.op == "ParseExample" || node.op == "ParseExampleV2")
            && node
                .input
                .first()
                .and_then(|i| TensorRef::parse(i))
                .as_ref()
                == Some(tensor)
        {
            let found = node_features(graph, node)
                .map_err(|e| format!("{} node {}: {e}", node.op, node.name))?;
            features.extend(found);
        }
    }
    Ok(features)
}
