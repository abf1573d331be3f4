//! gRPC (h2c) through gateway → sidecar → fake model server, over loopback.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, Request};
use infermesh_tfserving::proto::tensorflow::TensorProto;
use infermesh_tfserving::proto::tensorflow::serving::{
    ModelSpec, PredictRequest, PredictResponse, model_spec,
};
use prost::Message;

use super::*;
use crate::{ERROR_HEADER, VERSION_HEADER};

/// A gRPC answer: headers, messages, trailers.
pub(super) struct Answer {
    pub(super) headers: HeaderMap,
    pub(super) messages: Vec<Bytes>,
    pub(super) trailers: Option<HeaderMap>,
}

impl Answer {
    /// `grpc-status` from the trailers, or from the headers (trailers-only).
    pub(super) fn status(&self) -> String {
        let from = self.trailers.as_ref().unwrap_or(&self.headers);
        from.get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

pub(super) fn predict(model: &str, version: Option<i64>, floats: usize) -> PredictRequest {
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: model.into(),
            signature_name: "serving_default".into(),
            version_choice: version.map(model_spec::VersionChoice::Version),
        }),
        inputs: HashMap::from([(
            "x".to_owned(),
            TensorProto {
                dtype: 1,
                float_val: vec![1.5; floats],
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

pub(super) async fn call(
    addr: std::net::SocketAddr,
    request: &PredictRequest,
    headers: &[(&str, &str)],
) -> Answer {
    let message = request.encode_to_vec();
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    let mut builder = Request::post(format!(
        "http://{addr}/tensorflow.serving.PredictionService/Predict"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = http2()
        .request(builder.body(full(framed.freeze())).unwrap())
        .await
        .expect("grpc call");
    let (parts, mut body) = response.into_parts();
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    let mut messages = Vec::new();
    let mut rest = data.freeze();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        messages.push(rest.slice(5..5 + len));
        rest = rest.slice(5 + len..);
    }
    Answer {
        headers: parts.headers,
        messages,
        trailers,
    }
}

pub(super) fn served_version(answer: &Answer) -> Option<i64> {
    let response =
        PredictResponse::decode(answer.messages.first().cloned().unwrap_or_default()).ok()?;
    match response.model_spec?.version_choice? {
        model_spec::VersionChoice::Version(v) => Some(v),
        _ => None,
    }
}

#[tokio::test]
async fn grpc_unversioned_predict_is_pinned_in_the_model_spec() {
    let mesh = Mesh::start().await;
    let answer = call(
        mesh.gateway,
        &predict("m", None, 10_000),
        &[("x-model-version", "2")],
    )
    .await;
    assert_eq!(answer.status(), "0", "{:?}", answer.headers);
    assert_eq!(served_version(&answer), Some(2));
    assert_eq!(answer.headers[&VERSION_HEADER], "2");
    let seen = mesh.fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].grpc_version, Some(2));
    // The tensors came through verbatim: 10,000 packed floats plus the small rest.
    assert!(seen[0].bytes > 40_000, "{}", seen[0].bytes);

    // Split choice: some version, said in the header and the response.
    let answer = call(mesh.gateway, &predict("m", None, 4), &[]).await;
    let header: i64 = answer.headers[&VERSION_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(served_version(&answer), Some(header));
}

#[tokio::test]
async fn grpc_label_and_explicit_version() {
    let mesh = Mesh::start().await;
    let mut labelled = predict("m", None, 4);
    labelled.model_spec.as_mut().unwrap().version_choice =
        Some(model_spec::VersionChoice::VersionLabel("canary".into()));
    let answer = call(mesh.gateway, &labelled, &[]).await;
    assert_eq!(served_version(&answer), Some(2));
    let answer = call(
        mesh.gateway,
        &predict("m", Some(1), 4),
        &[("x-model-version", "2")],
    )
    .await;
    assert_eq!(served_version(&answer), Some(1));
    assert_eq!(answer.headers[&VERSION_HEADER], "1");
}

#[tokio::test]
async fn grpc_errors_are_trailers_only_with_tf_codes() {
    let mesh = Mesh::start().await;
    let answer = call(mesh.gateway, &predict("foo", None, 4), &[]).await;
    assert!(answer.trailers.is_none() && answer.messages.is_empty());
    assert_eq!(answer.status(), "5");
    assert_eq!(
        answer.headers["grpc-message"],
        "Servable not found for request: Latest(foo)"
    );
    assert_eq!(answer.headers[&ERROR_HEADER], "route");

    let answer = call(
        mesh.gateway,
        &predict("m", None, 4),
        &[("x-model-version", "nope")],
    )
    .await;
    assert_eq!(answer.status(), "3");

    let answer = call(mesh.gateway, &predict("slow", None, 4), &[]).await;
    assert_eq!(answer.status(), "4");
    assert_eq!(answer.headers[&ERROR_HEADER], "timeout");

    mesh.fake.kill();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let answer = call(mesh.gateway, &predict("m", None, 4), &[]).await;
    assert_eq!(answer.status(), "14");
    assert_eq!(answer.headers[&ERROR_HEADER], "upstream-connect");
}
