//! ONNX models (`model.onnx`) on tract-onnx, served as one synthesized
//! `serving_default` predict signature whose inputs and outputs are the graph's,
//! by name, with TF dtype numbers and `-1` for symbolic dimensions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use infermesh_tfserving::servable::{DEFAULT_SIGNATURE, method};
use infermesh_tfserving::{Signature, TensorInfo};
use tract_onnx::prelude::{Framework, InferenceFact, InferenceModelExt};
use tract_onnx::tract_hir::infer::Factoid;

use crate::convert;
use crate::error::LoadError;
use crate::program::{Program, chain};
use crate::servable::{Engine, Runner, Source};

fn info(name: &str, fact: &InferenceFact) -> Result<TensorInfo, String> {
    let datum = fact
        .datum_type
        .concretize()
        .ok_or_else(|| format!("{name} has no known element type"))?;
    let dtype = convert::dtype_of(datum).ok_or_else(|| {
        format!("{name} has element type {datum:?}, which infermesh cannot carry")
    })?;
    let shape = (!fact.shape.is_open()).then(|| {
        fact.shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.to_i64().ok()).unwrap_or(-1))
            .collect()
    });
    Ok(TensorInfo {
        name: name.to_string(),
        dtype: dtype.to_tf(),
        shape,
    })
}

/// Loads `model.onnx`.
pub fn load(path: &Path) -> Result<Engine, LoadError> {
    let onnx = tract_onnx::onnx();
    let invalid = |reason: String| LoadError::invalid(path, reason);
    let proto = onnx
        .proto_model_for_path(path)
        .map_err(|e| invalid(format!("cannot decode ONNX model: {}", chain(&e))))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| invalid("the model has no graph".into()))?;
    for node in &graph.node {
        if !onnx.op_register.0.contains_key(&node.op_type) {
            return Err(LoadError::UnsupportedOp {
                op: node.op_type.clone(),
                node: node.name.clone(),
                signature: DEFAULT_SIGNATURE.into(),
            });
        }
    }
    let model = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        onnx.model_for_proto_model(&proto)
    }))
    .map_err(|_| invalid("the inference engine could not parse the model".into()))?
    .map_err(|e| {
        invalid(format!(
            "the inference engine rejected the model: {}",
            chain(&e)
        ))
    })?;
    // Facts of the outputs come from analysis (ONNX output types are optional);
    // a graph that cannot be fully analysed without real shapes still loads.
    let mut analysed = model.clone();
    if let Err(e) = analysed.analyse(true) {
        tracing::debug!(path = %path.display(), error = %chain(&e), "partial ONNX analysis");
    }
    let mut signature = Signature {
        method_name: method::PREDICT.into(),
        ..Default::default()
    };
    let mut sources = Vec::new();
    let fact_of = |outlet| analysed.outlet_fact(outlet).map_err(|e| invalid(chain(&e)));
    for &outlet in model.input_outlets().map_err(|e| invalid(chain(&e)))? {
        let name = model.node(outlet.node).name.clone();
        let info = info(&name, fact_of(outlet)?).map_err(invalid)?;
        let dtype = infermesh_tfserving::DType::from_tf(info.dtype).expect("mapped above");
        sources.push(Source::Tensor {
            key: name.clone(),
            dtype,
        });
        signature.inputs.insert(name, info);
    }
    let mut outputs = BTreeMap::new();
    for (ix, &outlet) in model
        .output_outlets()
        .map_err(|e| invalid(chain(&e)))?
        .iter()
        .enumerate()
    {
        let name = model
            .outlet_label(outlet)
            .map(str::to_string)
            .unwrap_or_else(|| model.node(outlet.node).name.clone());
        signature.outputs.insert(
            name.clone(),
            info(&name, fact_of(outlet)?).map_err(invalid)?,
        );
        outputs.insert(name, ix);
    }
    let runner = Runner::new(
        Program::new(format!("model {}", path.display()), model),
        sources,
        outputs,
    );
    let signatures = BTreeMap::from([(DEFAULT_SIGNATURE.to_string(), signature)]);
    let runners = HashMap::from([(DEFAULT_SIGNATURE.to_string(), runner)]);
    Ok(Engine::new(signatures, runners))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use infermesh_tfserving::{Code, Tensor, TensorData};
    use prost::Message;

    fn example(version: u32) -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/models/half_plus_two"
        ))
        .join(version.to_string())
    }

    fn x(values: &[f32]) -> BTreeMap<String, Tensor> {
        let t = Tensor::new(vec![values.len()], TensorData::F32(values.to_vec())).unwrap();
        BTreeMap::from([("x".to_string(), t)])
    }

    #[test]
    fn example_models_predict() {
        for (version, expected) in [(1, [2.5, 3.0, 4.5]), (2, [3.5, 4.0, 5.5])] {
            let model = crate::load(&example(version)).unwrap();
            let out = model
                .run("serving_default", x(&[1.0, 2.0, 5.0]), &[])
                .unwrap();
            assert_eq!(
                out["y"].data,
                TensorData::F32(expected.to_vec()),
                "version {version}"
            );
            assert_eq!(out["y"].shape, vec![3]);
        }
    }

    #[test]
    fn example_signature_is_synthesized() {
        let model = crate::load(&example(1)).unwrap();
        let sig = &model.signatures()["serving_default"];
        assert_eq!(sig.method_name, "tensorflow/serving/predict");
        assert_eq!(sig.inputs["x"].name, "x");
        assert_eq!(sig.inputs["x"].dtype, 1);
        assert_eq!(sig.inputs["x"].shape, Some(vec![-1]));
        assert_eq!(sig.outputs["y"].dtype, 1);
        assert_eq!(sig.outputs["y"].shape, Some(vec![-1]));
        let ints = Tensor::new(vec![1], TensorData::I64(vec![1])).unwrap();
        let err = model
            .run(
                "serving_default",
                BTreeMap::from([("x".to_string(), ints)]),
                &[],
            )
            .unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
    }

    #[test]
    fn unsupported_onnx_op_fails_load_naming_it() {
        let bytes = std::fs::read(example(1).join("model.onnx")).unwrap();
        let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        proto.graph.as_mut().unwrap().node[1].op_type = "NotARealOp".into();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), proto.encode_to_vec()).unwrap();
        let err = crate::load(dir.path())
            .err()
            .expect("load must fail")
            .to_string();
        assert!(
            err.contains("op NotARealOp is not supported by the inference engine (node y"),
            "{err}"
        );
    }
}
