//! Writes the example ONNX models of the quickstart:
//! `examples/models/half_plus_two/1/model.onnx` (y = 0.5·x + 2) and
//! `examples/models/half_plus_two/2/model.onnx` (y = 0.5·x + 3), each with one
//! float input `x` of shape `[batch]` and one output `y` of the same shape, so that
//! predict `{"instances": [1.0, 2.0, 5.0]}` on version 1 answers `[2.5, 3.0, 4.5]`.
//!
//! The files are committed; run `scripts/make-example-models` (which runs this with
//! `cargo run --example make_example_models`) only to regenerate them. An optional
//! argument names another output directory instead of `examples/models`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, type_proto,
};

/// A float tensor of shape `[batch]`.
fn vector(name: &str) -> ValueInfoProto {
    let batch = Dimension {
        value: Some(dimension::Value::DimParam("batch".into())),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim: vec![batch] }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn scalar(name: &str, value: f32) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: DataType::Float as i32,
        float_data: vec![value],
        ..Default::default()
    }
}

fn node(op: &str, inputs: [&str; 2], output: &str) -> NodeProto {
    NodeProto {
        name: output.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// y = 0.5·x + offset.
fn half_plus(offset: f32) -> ModelProto {
    ModelProto {
        ir_version: 7,
        producer_name: "infermesh".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "half_plus".into(),
            node: vec![
                node("Mul", ["x", "half"], "half_x"),
                node("Add", ["half_x", "offset"], "y"),
            ],
            initializer: vec![scalar("half", 0.5), scalar("offset", offset)],
            input: vec![vector("x")],
            output: vec![vector("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/models"
            ))
        });
    for (version, offset) in [(1, 2.0), (2, 3.0)] {
        let dir = root.join("half_plus_two").join(version.to_string());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("model.onnx");
        std::fs::write(&path, half_plus(offset).encode_to_vec())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
