//! A second `model_spec` smuggled after the one the proxy read, over the wire: the
//! gateway (and a sidecar on its own) must cut the stream so the model server never
//! gets the complete message, and answer INVALID_ARGUMENT; a normal 1 MB Predict
//! still streams through byte for byte. The model server here is a recorder that
//! keeps every byte it got and whether the request stream ended cleanly.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use futures::channel::mpsc;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use infermesh_tfserving::proto::tensorflow::TensorProto;
use infermesh_tfserving::proto::tensorflow::serving::{
    ModelSpec, PredictRequest, PredictResponse, model_spec,
};
use prost::Message;

use super::*;
use crate::ERROR_HEADER;

const PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";

/// What the recording model server got in one request.
#[derive(Clone, Debug)]
struct Received {
    bytes: Bytes,
    /// The request stream ended normally (not reset).
    clean: bool,
}

/// A gRPC model server that records what it receives.
struct Recorder {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Bytes received so far over all requests, counted as they arrive.
    progress: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(AtomicUsize::new(0));
        let (record, count) = (received.clone(), progress.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (record, count) = (record.clone(), count.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (record, count) = (record.clone(), count.clone());
                        async move { Ok::<_, Infallible>(answer(req, record, count).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder {
            addr,
            received,
            progress,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    record: Arc<Mutex<Vec<Received>>>,
    count: Arc<AtomicUsize>,
) -> Response<TestBody> {
    let mut body = req.into_body();
    let mut bytes = BytesMut::new();
    let clean = loop {
        match body.frame().await {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    count.fetch_add(data.len(), Ordering::SeqCst);
                    bytes.extend_from_slice(&data);
                }
            }
        }
    };
    let bytes = bytes.freeze();
    record.lock().unwrap().push(Received {
        bytes: bytes.clone(),
        clean,
    });
    let spec = PredictRequest::decode(bytes.get(5..).unwrap_or_default())
        .ok()
        .and_then(|r| r.model_spec);
    let mut trailers = HeaderMap::new();
    let status = if clean && spec.is_some() { "0" } else { "13" };
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    let message = PredictResponse {
        model_spec: spec,
        ..Default::default()
    };
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(frame(&message.encode_to_vec()))),
        Ok(Frame::trailers(trailers)),
    ];
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures::stream::iter(frames)).boxed())
        .unwrap()
}

fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 5);
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.extend_from_slice(message);
    out.freeze()
}

/// A gateway → sidecar → recorder mesh.
async fn mesh_with_recorder() -> (Mesh, Recorder) {
    let recorder = Recorder::start().await;
    let addr = recorder.addr;
    let mesh = Mesh::start_with(|c| {
        let mut workload = (*c.workloads["w"]).clone();
        workload.upstream.grpc = infermesh_config::Address::Socket(addr);
        c.workloads.insert("w".into(), Arc::new(workload));
    })
    .await;
    (mesh, recorder)
}

fn spec_record(name: &str, version: Option<i64>) -> Vec<u8> {
    let spec = ModelSpec {
        name: name.into(),
        version_choice: version.map(model_spec::VersionChoice::Version),
        ..Default::default()
    };
    let mut out = vec![0x0A];
    prost::encoding::encode_varint(spec.encoded_len() as u64, &mut out);
    spec.encode(&mut out).unwrap();
    out
}

/// A Predict of `m` with `floats` packed floats (4 bytes each).
fn predict(version: Option<i64>, floats: usize) -> Vec<u8> {
    let mut message = spec_record("m", version);
    let inputs = PredictRequest {
        inputs: HashMap::from([(
            "x".to_owned(),
            TensorProto {
                dtype: 1,
                float_val: vec![1.5; floats],
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    inputs.encode(&mut message).unwrap();
    message
}

/// A gRPC answer: status and message from the trailers or trailers-only headers.
struct Answer {
    headers: HeaderMap,
    status: String,
    message: String,
}

/// Sends `first`, waits (up to 2 s) for the model server to see bytes when `wait`,
/// then sends `rest` in 16 KiB chunks; returns the answer.
async fn call(addr: SocketAddr, first: Bytes, rest: Bytes, wait: Option<&Recorder>) -> Answer {
    let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let request = Request::post(format!("http://{addr}{PREDICT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(rx).boxed())
        .unwrap();
    let response = tokio::spawn(http2().request(request));
    tx.send(Ok(Frame::data(first))).await.unwrap();
    if let Some(recorder) = wait {
        let deadline = Instant::now() + Duration::from_secs(2);
        while recorder.progress.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            recorder.progress.load(Ordering::SeqCst) > 0,
            "nothing streamed"
        );
    }
    // The proxy may stop reading: send the rest on the side.
    tokio::spawn(async move {
        for chunk in rest.chunks(16 << 10) {
            if tx
                .send(Ok(Frame::data(rest.slice_ref(chunk))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answer in time")
        .unwrap()
        .expect("response");
    let (parts, body) = response.into_parts();
    let trailers = body
        .collect()
        .await
        .ok()
        .and_then(|c| c.trailers().cloned());
    let from = trailers.as_ref().unwrap_or(&parts.headers);
    let get = |name: &str| {
        from.get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    Answer {
        status: get("grpc-status"),
        message: get("grpc-message"),
        headers: parts.headers,
    }
}

/// Waits until the recorder has recorded `n` requests (or 2 s have passed).
async fn settle(recorder: &Recorder, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while recorder.received().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    recorder.received()
}

#[tokio::test]
async fn a_smuggled_second_model_spec_never_reaches_the_model_server_whole() {
    let (mesh, recorder) = mesh_with_recorder().await;
    // model_spec{m} first, 1 MB of tensor, then model_spec{secret} at the end.
    let mut message = predict(None, 1 << 18);
    message.extend(spec_record("secret", Some(1)));
    let stream = frame(&message);
    for (n, addr) in [mesh.gateway, mesh.sidecar].into_iter().enumerate() {
        let started = Instant::now();
        let answer = call(
            addr,
            stream.slice(..64 << 10),
            stream.slice(64 << 10..),
            Some(&recorder),
        )
        .await;
        assert_eq!(answer.status, "3", "{:?}", answer.headers);
        assert_eq!(answer.message, "duplicate model_spec in request");
        assert_eq!(answer.headers[&ERROR_HEADER], "request");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // The model server saw the start streamed, never the whole message.
        let received = settle(&recorder, n + 1).await;
        assert_eq!(received.len(), n + 1);
        let got = &received[n];
        assert!(!got.clean, "the upstream stream must be reset");
        assert!(got.bytes.len() > 5 && got.bytes.len() < stream.len());
        let declared = u32::from_be_bytes([got.bytes[1], got.bytes[2], got.bytes[3], got.bytes[4]]);
        assert!(
            got.bytes.len() < declared as usize + 5,
            "a complete message got through"
        );
        recorder.progress.store(0, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn buffered_duplicates_and_second_messages_are_refused() {
    let (mesh, recorder) = mesh_with_recorder().await;
    // Field 1 not first: the message is buffered and refused before any upstream.
    let mut message = vec![0x1A, 1, b'y'];
    message.extend(spec_record("m", Some(1)));
    message.extend(spec_record("secret", Some(1)));
    let answer = call(mesh.gateway, frame(&message), Bytes::new(), None).await;
    assert_eq!(
        (answer.status.as_str(), answer.message.as_str()),
        ("3", "duplicate model_spec in request")
    );
    // A second message on a unary call, sent after the first one streamed.
    let one = frame(&predict(Some(1), 1 << 16));
    let answer = call(mesh.gateway, one.clone(), one.clone(), Some(&recorder)).await;
    assert_eq!(answer.status, "3", "{:?}", answer.headers);
    assert!(
        answer.message.contains("more than one message"),
        "{}",
        answer.message
    );
    let received = settle(&recorder, 1).await;
    assert_eq!(
        received.len(),
        1,
        "only the second call reached the model server"
    );
    assert!(!received[0].clean);
}

#[tokio::test]
async fn a_normal_one_megabyte_predict_streams_through_unchanged() {
    let (mesh, recorder) = mesh_with_recorder().await;
    let stream = frame(&predict(Some(1), 1 << 18));
    assert!(stream.len() > 1 << 20);
    let answer = call(
        mesh.gateway,
        stream.slice(..64 << 10),
        stream.slice(64 << 10..),
        Some(&recorder),
    )
    .await;
    assert_eq!(answer.status, "0", "{:?}", answer.headers);
    let received = settle(&recorder, 1).await;
    assert_eq!(received.len(), 1);
    assert!(received[0].clean);
    assert!(received[0].bytes == stream, "the bytes changed on the way");
}
