//! Tests of ModelSpec location and rewrite on raw gRPC frames.

use std::collections::HashMap;

use infermesh_tfserving::proto::tensorflow::TensorProto;
use infermesh_tfserving::proto::tensorflow::serving::{
    GetModelStatusRequest, InferenceTask, MultiInferenceRequest, PredictRequest, model_spec,
};

use super::*;

fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn predict(version: Option<i64>, floats: usize) -> PredictRequest {
    let mut inputs = HashMap::new();
    inputs.insert(
        "x".to_owned(),
        TensorProto {
            dtype: 1,
            float_val: (0..floats).map(|i| i as f32).collect(),
            ..Default::default()
        },
    );
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: "half_plus_two".into(),
            signature_name: "serving_default".into(),
            version_choice: version.map(model_spec::VersionChoice::Version),
        }),
        inputs,
        output_filter: vec!["y".into()],
        ..Default::default()
    }
}

/// Feeds `bytes` one at a time until `locate` decides; returns how many it read.
fn locate_incrementally(bytes: &[u8]) -> (usize, Vec<Range<usize>>) {
    let mut have = 0;
    loop {
        match locate(&bytes[..have], Field1::ModelSpec).unwrap() {
            Locate::Need(n) => {
                assert!(n > have, "progress: need {n} with {have}");
                have = n.min(bytes.len());
            }
            Locate::Found(records) => return (have, records),
        }
    }
}

#[test]
fn reads_only_the_prefix_up_to_field_1() {
    let bytes = frame(&predict(None, 100_000));
    let (read, records) = locate_incrementally(&bytes);
    assert!(read < 64, "read {read} of {} bytes", bytes.len());
    let located = decode(&bytes[..read], records, Field1::ModelSpec).unwrap();
    assert_eq!(located.spec.name, "half_plus_two");
    assert_eq!(located.spec.version_choice, None);
}

#[test]
fn rewrite_sets_version_and_keeps_the_rest_verbatim() {
    let original = predict(None, 1000);
    let bytes = frame(&original);
    let (read, records) = locate_incrementally(&bytes);
    let located = decode(&bytes[..read], records, Field1::ModelSpec).unwrap();
    let spec = ModelSpec {
        version_choice: Some(model_spec::VersionChoice::Version(7)),
        ..located.spec.clone()
    };
    let mut out = located.rewrite(&bytes[..read], &spec).unwrap().to_vec();
    out.extend_from_slice(&bytes[read..]);
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len, out.len() - FRAME_HEADER);
    let decoded = PredictRequest::decode(&out[FRAME_HEADER..]).unwrap();
    assert_eq!(decoded.model_spec, Some(spec));
    assert_eq!(decoded.inputs, original.inputs);
    assert_eq!(decoded.output_filter, original.output_filter);
}

#[test]
fn field_1_not_first_buffers_the_message() {
    // Hand-made: output_filter (field 3) before model_spec (field 1).
    let spec = ModelSpec {
        name: "m".into(),
        ..Default::default()
    };
    let mut body = vec![0x1A, 1, b'y', 0x0A, spec.encoded_len() as u8];
    spec.encode(&mut body).unwrap();
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    assert_eq!(
        locate(&bytes[..6], Field1::ModelSpec).unwrap(),
        Locate::Need(bytes.len())
    );
    let Locate::Found(records) = locate(&bytes, Field1::ModelSpec).unwrap() else {
        panic!("not found")
    };
    let located = decode(&bytes, records, Field1::ModelSpec).unwrap();
    assert_eq!(located.spec.name, "m");
    let pinned = ModelSpec {
        version_choice: Some(model_spec::VersionChoice::Version(2)),
        ..spec
    };
    let out = located.rewrite(&bytes, &pinned).unwrap();
    let decoded = PredictRequest::decode(&out[FRAME_HEADER..]).unwrap();
    assert_eq!(decoded.model_spec, Some(pinned));
    assert_eq!(decoded.output_filter, vec!["y".to_owned()]);
}

#[test]
fn status_and_multi_inference_are_located() {
    let status = GetModelStatusRequest {
        model_spec: Some(ModelSpec {
            name: "s".into(),
            ..Default::default()
        }),
    };
    let bytes = frame(&status);
    let (read, records) = locate_incrementally(&bytes);
    assert_eq!(
        decode(&bytes[..read], records, Field1::ModelSpec)
            .unwrap()
            .spec
            .name,
        "s"
    );

    let task = |name: &str| InferenceTask {
        model_spec: Some(ModelSpec {
            name: name.into(),
            ..Default::default()
        }),
        method_name: "tensorflow/serving/classify".into(),
    };
    let mut second = task("a");
    if let Some(spec) = second.model_spec.as_mut() {
        spec.signature_name = "regress_x_to_y".into();
    }
    let multi = MultiInferenceRequest {
        tasks: vec![task("a"), second],
        input: None,
    };
    let bytes = frame(&multi);
    let Locate::Found(records) = locate(&bytes, Field1::Tasks).unwrap() else {
        panic!("not found")
    };
    let located = decode(&bytes, records.clone(), Field1::Tasks).unwrap();
    assert_eq!(located.spec.name, "a");
    let pinned = ModelSpec {
        version_choice: Some(model_spec::VersionChoice::Version(3)),
        ..located.spec.clone()
    };
    let out = located.rewrite(&bytes, &pinned).unwrap();
    let decoded = MultiInferenceRequest::decode(&out[FRAME_HEADER..]).unwrap();
    assert_eq!(decoded.tasks.len(), 2);
    for (t, signature) in decoded.tasks.iter().zip(["", "regress_x_to_y"]) {
        let want = ModelSpec {
            signature_name: signature.into(),
            ..pinned.clone()
        };
        assert_eq!(
            t.model_spec,
            Some(want),
            "each task keeps its own signature"
        );
    }

    let mixed = MultiInferenceRequest {
        tasks: vec![task("a"), task("b")],
        input: None,
    };
    let bytes = frame(&mixed);
    let Locate::Found(records) = locate(&bytes, Field1::Tasks).unwrap() else {
        panic!("not found")
    };
    assert!(decode(&bytes, records, Field1::Tasks).is_err());
}

#[test]
fn bad_frames_are_clear_errors() {
    let mut compressed = frame(&predict(None, 1));
    compressed[0] = 1;
    let e = locate(&compressed, Field1::ModelSpec).unwrap_err();
    assert_eq!(e.code, infermesh_tfserving::Code::Unimplemented);
    // Field 1 claims more bytes than the message has.
    let bytes = [0u8, 0, 0, 0, 3, 0x0A, 50, 1];
    assert!(locate(&bytes, Field1::ModelSpec).is_err());
    // Wire type 3 (groups) is refused.
    let bytes = [0u8, 0, 0, 0, 2, 0x13, 0];
    assert!(locate(&bytes, Field1::ModelSpec).is_err());
    // Empty message: no field 1, nothing to read.
    assert_eq!(
        locate(&[0, 0, 0, 0, 0], Field1::ModelSpec).unwrap(),
        Locate::Found(vec![])
    );
    // Overlong varint.
    let bytes = [
        0u8, 0, 0, 0, 12, 0x0A, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1,
    ];
    assert!(locate(&bytes, Field1::ModelSpec).is_err());
}

#[test]
fn repeated_model_specs_are_refused_on_the_buffered_path() {
    let record = |name: &str| {
        let spec = ModelSpec {
            name: name.into(),
            ..Default::default()
        };
        let mut out = vec![FIELD1_LEN, spec.encoded_len() as u8];
        spec.encode(&mut out).unwrap();
        out
    };
    // Field 1 not first (buffered), then again at the end.
    let mut body = vec![0x1A, 1, b'y'];
    body.extend(record("allowed"));
    body.extend([0x1A, 1, b'z']);
    body.extend(record("secret"));
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    let Locate::Found(records) = locate(&bytes, Field1::ModelSpec).unwrap() else {
        panic!("not found")
    };
    assert_eq!(records.len(), 2);
    let e = decode(&bytes, records, Field1::ModelSpec).unwrap_err();
    assert_eq!(e.message, "duplicate model_spec in request");

    // MultiInference: tasks repeat, but each task's model_spec is once.
    let task = InferenceTask {
        model_spec: Some(ModelSpec {
            name: "a".into(),
            ..Default::default()
        }),
        method_name: "tensorflow/serving/classify".into(),
    };
    let mut smuggling = task.encode_to_vec();
    smuggling.extend(record("b"));
    let mut body = Vec::new();
    for t in [task.encode_to_vec(), smuggling] {
        body.push(FIELD1_LEN);
        body.push(t.len() as u8);
        body.extend(t);
    }
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    let Locate::Found(records) = locate(&bytes, Field1::Tasks).unwrap() else {
        panic!("not found")
    };
    let e = decode(&bytes, records, Field1::Tasks).unwrap_err();
    assert_eq!(e.message, "duplicate model_spec in request");
}
