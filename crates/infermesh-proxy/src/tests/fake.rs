//! A fake TF-Serving-ish model server: REST answers `{"path": ..., "bytes": N}` (the
//! path it saw, the body size it streamed); gRPC answers a `PredictResponse` whose
//! `model_spec` is the request's. Paths or model names containing `slow` wait 2 s,
//! `sleepy` 500 ms. Every request is recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use infermesh_tfserving::proto::tensorflow::serving::{PredictRequest, PredictResponse};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

use super::TestBody;

/// One request the fake saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub mirror: bool,
    pub bytes: usize,
    /// gRPC: the ModelSpec version it got.
    pub grpc_version: Option<i64>,
    /// The request headers it got.
    pub headers: HeaderMap,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let handles = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let record = record.clone();
                        async move { Ok::<_, Infallible>(answer(req, record).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                handles.lock().unwrap().push(connection.abort_handle());
            }
        });
        Fake {
            addr,
            seen,
            task,
            connections,
        }
    }

    /// Stops accepting and closes every connection.
    pub fn kill(&self) {
        self.task.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(req: Request<Incoming>, record: Arc<Mutex<Vec<Seen>>>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    let mirror = req.headers().contains_key(crate::MIRROR_HEADER);
    let grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let headers = req.headers().clone();
    let mut body = req.into_body();
    let mut bytes = 0usize;
    let mut kept = BytesMut::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            bytes += data.len();
            if grpc {
                kept.extend_from_slice(&data);
            }
        }
    }
    let spec = grpc
        .then(|| PredictRequest::decode(kept.get(5..).unwrap_or_default()).ok())
        .flatten()
        .and_then(|r| r.model_spec);
    let name = spec.as_ref().map_or(path.as_str(), |s| s.name.as_str());
    let delay = if name.contains("slow") {
        Duration::from_secs(2)
    } else if name.contains("sleepy") {
        Duration::from_millis(500)
    } else {
        Duration::ZERO
    };
    let grpc_version = spec.as_ref().and_then(|s| match s.version_choice {
        Some(
            infermesh_tfserving::proto::tensorflow::serving::model_spec::VersionChoice::Version(v),
        ) => Some(v),
        _ => None,
    });
    record.lock().unwrap().push(Seen {
        path: path.clone(),
        mirror,
        bytes,
        grpc_version,
        headers,
    });
    tokio::time::sleep(delay).await;
    if grpc {
        let response = PredictResponse {
            model_spec: spec,
            ..Default::default()
        };
        let message = response.encode_to_vec();
        let mut framed = BytesMut::new();
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.extend_from_slice(&message);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames: Vec<Result<Frame<Bytes>, crate::body::BoxError>> = vec![
            Ok(Frame::data(framed.freeze())),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures::stream::iter(frames)).boxed();
        return Response::builder()
            .header("content-type", "application/grpc")
            .body(body)
            .unwrap();
    }
    let status = if path.contains("unavailable") {
        503
    } else {
        200
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(super::full(
            serde_json::json!({"path": path, "bytes": bytes}).to_string(),
        ))
        .unwrap()
}
