//! SavedModel tests on the TF Serving test models (skipped without shared/): predict,
//! regress and classify answers, metadata, plan caching, and load failures.

use std::collections::BTreeMap;
use std::path::Path;

use infermesh_tfserving::proto::tensorflow::{
    Example, Feature, Features, FloatList, feature::Kind,
};
use infermesh_tfserving::{Code, Servable, Tensor, TensorData};
use prost::Message;

use crate::test_support::{half_plus_two, tfserving_testdata};

fn floats(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), TensorData::F32(values.to_vec())).unwrap()
}

fn predict(servable: &dyn Servable, signature: &str, key: &str, input: Tensor) -> Tensor {
    let inputs = BTreeMap::from([(key.to_string(), input)]);
    let mut out = servable.run(signature, inputs, &[]).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    out.pop_first().unwrap().1
}

fn load(dir: &Path) -> std::sync::Arc<dyn Servable> {
    crate::load(dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

#[test]
fn half_plus_two_predicts() {
    let Some(dir) = half_plus_two() else { return };
    let model = load(&dir);
    // Instances [1, 2, 5] arrive as shape [3] although x is declared [-1, 1].
    let y = predict(
        &*model,
        "serving_default",
        "x",
        floats(&[1.0, 2.0, 5.0], &[3]),
    );
    assert_eq!(y, floats(&[2.5, 3.0, 4.5], &[3]));
    let y = predict(
        &*model,
        "serving_default",
        "x",
        floats(&[1.0, 2.0, 3.0, 4.0], &[2, 2]),
    );
    assert_eq!(y, floats(&[2.5, 3.0, 3.5, 4.0], &[2, 2]));
    let y3 = predict(
        &*model,
        "regress_x2_to_y3",
        "inputs",
        floats(&[1.0, 2.0, 5.0], &[3, 1]),
    );
    assert_eq!(y3, floats(&[3.5, 4.0, 5.5], &[3, 1]));
    // Same shapes again: served from the cached plan.
    let y = predict(
        &*model,
        "serving_default",
        "x",
        floats(&[1.0, 2.0, 5.0], &[3]),
    );
    assert_eq!(y, floats(&[2.5, 3.0, 4.5], &[3]));
}

#[test]
fn half_plus_three_predicts() {
    let Some(data) = tfserving_testdata() else {
        return;
    };
    let model = load(&data.join("saved_model_half_plus_three/00000123"));
    let y = predict(
        &*model,
        "serving_default",
        "x",
        floats(&[1.0, 2.0, 5.0], &[3]),
    );
    assert_eq!(y, floats(&[3.5, 4.0, 5.5], &[3]));
}

#[test]
fn two_versions_both_load_and_predict() {
    let Some(data) = tfserving_testdata() else {
        return;
    };
    for version in ["00000123", "00000124"] {
        let model = load(
            &data
                .join("saved_model_half_plus_two_2_versions")
                .join(version),
        );
        let y = predict(
            &*model,
            "serving_default",
            "x",
            floats(&[1.0, 2.0, 5.0], &[3]),
        );
        assert_eq!(y, floats(&[2.5, 3.0, 4.5], &[3]), "version {version}");
    }
}

#[test]
fn signatures_match_tf_serving_metadata() {
    let Some(data) = tfserving_testdata() else {
        return;
    };
    let model = load(&data.join("saved_model_half_plus_two_2_versions/00000123"));
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("saved_model_half_plus_two_2_versions_metadata.json")).unwrap(),
    )
    .unwrap();
    let golden = &golden["metadata"]["signature_def"]["signature_def"];
    let sigs = model.signatures();
    assert_eq!(sigs.len(), golden.as_object().unwrap().len());
    for (name, sig) in sigs {
        let g = &golden[name];
        assert_eq!(sig.method_name, g["method_name"], "{name}");
        for (side, infos) in [("inputs", &sig.inputs), ("outputs", &sig.outputs)] {
            assert_eq!(
                infos.len(),
                g[side].as_object().unwrap().len(),
                "{name} {side}"
            );
            for (key, info) in infos {
                let gi = &g[side][key];
                assert_eq!(info.name, gi["name"], "{name} {key}");
                let dtype = infermesh_tfserving::tensor::tf_dtype_enum_name(info.dtype);
                assert_eq!(dtype, gi["dtype"], "{name} {key}");
                let shape = &gi["tensor_shape"];
                match &info.shape {
                    None => assert_eq!(shape["unknown_rank"], true, "{name} {key}"),
                    Some(dims) => {
                        let g: Vec<i64> = shape["dim"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| d["size"].as_str().unwrap().parse().unwrap())
                            .collect();
                        assert_eq!(dims, &g, "{name} {key}");
                    }
                }
            }
        }
    }
}

fn example(x: f32) -> Vec<u8> {
    let feature = Feature {
        kind: Some(Kind::FloatList(FloatList { value: vec![x] })),
    };
    Example {
        features: Some(Features {
            feature: [("x".to_string(), feature)].into_iter().collect(),
        }),
    }
    .encode_to_vec()
}

fn examples(xs: &[f32]) -> Tensor {
    let serialized = xs.iter().map(|&x| example(x)).collect();
    Tensor::new(vec![xs.len()], TensorData::Str(serialized)).unwrap()
}

#[test]
fn regress_and_classify_parse_examples() {
    let Some(dir) = half_plus_two() else { return };
    let model = load(&dir);
    let y = predict(&*model, "regress_x_to_y", "inputs", examples(&[80.0]));
    assert_eq!(y, floats(&[42.0], &[1, 1]));
    let y2 = predict(&*model, "regress_x_to_y2", "inputs", examples(&[80.0, 2.0]));
    assert_eq!(y2, floats(&[43.0, 4.0], &[2, 1]));
    let scores = predict(&*model, "classify_x_to_y", "inputs", examples(&[20.0]));
    assert_eq!(scores, floats(&[12.0], &[1, 1]));
    // An unknown output key in the filter is rejected.
    let inputs = BTreeMap::from([("inputs".to_string(), examples(&[1.0]))]);
    let err = model
        .run("regress_x_to_y", inputs, &["nope".into()])
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
}

#[test]
fn half_plus_three_example_signature_loads() {
    let Some(data) = tfserving_testdata() else {
        return;
    };
    let model = load(&data.join("saved_model_half_plus_three/00000123"));
    let y = predict(
        &*model,
        "tensorflow/serving/regress",
        "inputs",
        examples(&[4.0]),
    );
    assert_eq!(y.data, TensorData::F32(vec![5.0]));
}

#[test]
fn bad_requests_get_invalid_argument() {
    let Some(dir) = half_plus_two() else { return };
    let model = load(&dir);
    let ints = Tensor::new(vec![2], TensorData::I32(vec![1, 2])).unwrap();
    let err = model
        .run(
            "serving_default",
            BTreeMap::from([("x".to_string(), ints)]),
            &[],
        )
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err}");
    assert!(err.message.contains("float"), "{err}");
    let err = model
        .run("serving_default", BTreeMap::new(), &[])
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err}");
    let err = model
        .run(
            "regress_x_to_y",
            BTreeMap::from([("inputs".to_string(), floats(&[1.0], &[1]))]),
            &[],
        )
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err}");
    let garbage = Tensor::new(vec![1], TensorData::Str(vec![vec![0xff; 3]])).unwrap();
    let err = model
        .run(
            "regress_x_to_y",
            BTreeMap::from([("inputs".to_string(), garbage)]),
            &[],
        )
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err}");
    let err = model.run("nope", BTreeMap::new(), &[]).unwrap_err();
    assert_eq!(err.code, Code::FailedPrecondition, "{err}");
}

/// Copies a version directory so a test can alter it.
fn copy_model(src: &Path, dst: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&to).unwrap();
            copy_model(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

#[test]
fn unsupported_op_fails_load_naming_it() {
    use tract_tensorflow::tfpb::tensorflow::SavedModel;
    let Some(src) = half_plus_two() else { return };
    let dir = tempfile::tempdir().unwrap();
    copy_model(&src, dir.path());
    let pb = dir.path().join("saved_model.pb");
    let mut saved = SavedModel::decode(std::fs::read(&pb).unwrap().as_slice()).unwrap();
    let graph = saved.meta_graphs[0].graph_def.as_mut().unwrap();
    let node = graph.node.iter_mut().find(|n| n.name == "Add").unwrap();
    node.op = "StringToHashBucketFast".into();
    std::fs::write(&pb, saved.encode_to_vec()).unwrap();
    let err = crate::load(dir.path())
        .err()
        .expect("load must fail")
        .to_string();
    assert!(
        err.contains(
            "op StringToHashBucketFast is not supported by the inference engine (node Add"
        ),
        "{err}"
    );
}

#[test]
fn corrupt_checkpoint_fails_load_cleanly() {
    let Some(src) = half_plus_two() else { return };
    let dir = tempfile::tempdir().unwrap();
    copy_model(&src, dir.path());
    let data = dir.path().join("variables/variables.data-00000-of-00001");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[5] ^= 0x40;
    std::fs::write(&data, bytes).unwrap();
    let err = crate::load(dir.path()).err().expect("load must fail");
    assert!(matches!(err, crate::LoadError::Checkpoint(_)), "{err:?}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    std::fs::remove_file(dir.path().join("variables/variables.index")).unwrap();
    let err = crate::load(dir.path())
        .err()
        .expect("load must fail")
        .to_string();
    assert!(err.contains("variables.index"), "{err}");
}

#[test]
fn missing_model_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = crate::load(dir.path())
        .err()
        .expect("load must fail")
        .to_string();
    assert!(
        err.contains("neither saved_model.pb nor model.onnx"),
        "{err}"
    );
    std::fs::write(dir.path().join("saved_model.pb"), b"\xff\xff not a proto").unwrap();
    let err = crate::load(dir.path())
        .err()
        .expect("load must fail")
        .to_string();
    assert!(err.contains("cannot decode SavedModel"), "{err}");
}

#[test]
fn plans_are_cached_with_a_symbolic_batch() {
    let Some(dir) = half_plus_two() else { return };
    let engine = super::load(&dir).unwrap();
    for n in [1, 3, 7, 3] {
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y = predict(&engine, "serving_default", "x", floats(&values, &[n, 1]));
        let expected: Vec<f32> = values.iter().map(|v| 0.5 * v + 2.0).collect();
        assert_eq!(y, floats(&expected, &[n, 1]));
    }
    // One plan for every batch size of [N, 1].
    assert_eq!(
        engine.runner("serving_default").program.cached(),
        vec![(true, true)]
    );
}

#[test]
fn runs_concurrently() {
    let Some(dir) = half_plus_two() else { return };
    let model = load(&dir);
    std::thread::scope(|s| {
        for t in 0..8 {
            let model = model.clone();
            s.spawn(move || {
                for i in 0..50 {
                    let x = (t * 100 + i) as f32;
                    let y = predict(&*model, "serving_default", "x", floats(&[x], &[1]));
                    assert_eq!(y, floats(&[0.5 * x + 2.0], &[1]));
                }
            });
        }
    });
}

#[test]
fn odd_shapes_never_panic() {
    let Some(dir) = half_plus_two() else { return };
    let model = load(&dir);
    let run = |t: Tensor| {
        model.run(
            "serving_default",
            BTreeMap::from([("x".to_string(), t)]),
            &[],
        )
    };
    let y = run(floats(&[], &[0])).expect("empty batch");
    assert_eq!(y["y"].shape, vec![0]);
    let y = run(floats(&[4.0], &[])).expect("scalar");
    assert_eq!(y["y"], floats(&[4.0], &[]));
    let y = run(floats(&[1.0, 2.0], &[2, 1, 1])).expect("rank 3");
    assert_eq!(y["y"], floats(&[2.5, 3.0], &[2, 1, 1]));
    let strings = Tensor::new(vec![1], TensorData::Str(vec![b"a".to_vec()])).unwrap();
    assert_eq!(run(strings).unwrap_err().code, Code::InvalidArgument);
    let none = Tensor::new(vec![0], TensorData::Str(vec![])).unwrap();
    let out = model.run(
        "regress_x_to_y",
        BTreeMap::from([("inputs".to_string(), none)]),
        &[],
    );
    assert!(out.is_ok() || out.unwrap_err().code == Code::InvalidArgument);
}

/// No output filter gives what a filter naming every output key gives (the engine
/// runs the unfiltered case without building the key list), for every float-input
/// signature of the test models.
#[test]
fn unfiltered_outputs_match_the_all_keys_filter() {
    let Some(data) = tfserving_testdata() else {
        return;
    };
    let mut checked = 0;
    for dir in [
        "saved_model_half_plus_two_cpu/00000123",
        "saved_model_half_plus_two_2_versions/00000123",
        "saved_model_half_plus_two_2_versions/00000124",
    ] {
        let model = load(&data.join(dir));
        for (name, sig) in model.signatures() {
            if sig.inputs.values().any(|info| info.dtype != 1) {
                continue;
            }
            let inputs = || {
                sig.inputs
                    .iter()
                    .map(|(key, info)| {
                        let shape: Vec<usize> = match &info.shape {
                            Some(dims) => dims
                                .iter()
                                .map(|&d| if d < 0 { 3 } else { d as usize })
                                .collect(),
                            None => vec![3],
                        };
                        let n = shape.iter().product::<usize>();
                        let values: Vec<f32> = (0..n).map(|i| i as f32 * 1.5 - 2.0).collect();
                        (key.clone(), floats(&values, &shape))
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            let all: Vec<String> = sig.outputs.keys().rev().cloned().collect();
            let unfiltered = model.run(name, inputs(), &[]);
            let filtered = model.run(name, inputs(), &all);
            assert_eq!(unfiltered, filtered, "{dir} {name}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked}");
}

/// A generated sequence of shapes (any batch size, other ranks, some refused) through
/// one engine: every answer is what a freshly loaded engine gives for that request
/// alone, so the recent-plan shortcut never picks another key's plan.
#[test]
fn recent_plans_answer_like_a_fresh_engine() {
    let Some(dir) = half_plus_two() else { return };
    let engine = super::load(&dir).unwrap();
    let shapes: [&[usize]; 8] = [
        &[3, 1],
        &[1, 1],
        &[3],
        &[],
        &[2, 1, 1],
        &[0, 1],
        &[5, 2],
        &[4],
    ];
    let mut x: u32 = 0x5eed;
    for case in 0..80 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut shape = shapes[x as usize % shapes.len()].to_vec();
        if let Some(first) = shape.first_mut()
            && *first > 0
        {
            *first = 1 + (x >> 8) as usize % 6;
        }
        let n = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..n).map(|i| i as f32 - 1.5).collect();
        let inputs = || BTreeMap::from([("x".to_string(), floats(&values, &shape))]);
        let got = engine.run("serving_default", inputs(), &[]);
        let fresh = super::load(&dir)
            .unwrap()
            .run("serving_default", inputs(), &[]);
        assert_eq!(got, fresh, "case {case}: shape {shape:?}");
    }
    let (recent, cached) = engine.runner("serving_default").program.recent();
    assert!(
        recent > 0 && cached,
        "{recent} recent plans, all cached: {cached}"
    );
}
