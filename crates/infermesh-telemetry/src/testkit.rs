//! For tests (feature `testkit`): an OTLP trace receiver on loopback — the collector
//! side of OTLP/gRPC (`TraceService/Export`) and OTLP/HTTP (`POST /v1/traces`,
//! protobuf) — that keeps every span it is sent; and [`sample`], which reads a
//! metric's value out of a Prometheus text scrape.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `http://<addr>`, the endpoint to configure.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An OTLP/gRPC receiver.
    pub async fn grpc() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let service = TraceServiceServer::new(Collector(spans.clone()));
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver { addr, spans, task }
    }

    /// An OTLP/HTTP (protobuf) receiver.
    pub async fn http() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let keep = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let keep = keep.clone();
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let keep = keep.clone();
                    async move {
                        let path_ok = req.uri().path() == "/v1/traces";
                        let body: hyper::body::Incoming = req.into_body();
                        let bytes = body.collect().await.map(|b| b.to_bytes());
                        let status = match (path_ok, bytes) {
                            (true, Ok(bytes)) => match ExportTraceServiceRequest::decode(bytes) {
                                Ok(request) => {
                                    keep_spans(&keep, request);
                                    200
                                }
                                Err(_) => 400,
                            },
                            _ => 404,
                        };
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::from_u16(status).expect("code");
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                );
            }
        });
        Receiver { addr, spans, task }
    }
}

fn keep_spans(keep: &Mutex<Vec<Span>>, request: ExportTraceServiceRequest) {
    let mut spans = keep.lock().unwrap_or_else(|e| e.into_inner());
    for rs in request.resource_spans {
        for ss in rs.scope_spans {
            spans.extend(ss.spans);
        }
    }
}

struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep_spans(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The sum of the samples of `name` in a Prometheus text scrape whose labels include
/// every pair of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
