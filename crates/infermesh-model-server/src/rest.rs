//! The REST API (TF Serving's `/v1/models/...` paths and
//! `/monitoring/prometheus/metrics`): the listener loop with graceful shutdown, body
//! limits and the request timeout, then one handler per API over `service`.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::Either;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use infermesh_tfserving::rest_path::{self, RestApi, RestRoute, VersionChoice};
use std::collections::BTreeMap;

use infermesh_tfserving::{Status, inference, json};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::metrics::{Api, Entrypoint, Served};
use crate::service::{ModelSpec, Models};

const METRICS_PATH: &str = "/monitoring/prometheus/metrics";

/// Shared state of the REST handlers.
#[derive(Clone)]
pub struct Rest {
    models: Models,
    registry: Arc<Registry>,
    timeout: Duration,
    max_body_bytes: usize,
}

impl Rest {
    pub fn new(
        models: Models,
        registry: Arc<Registry>,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Rest {
        Rest {
            models,
            registry,
            timeout,
            max_body_bytes,
        }
    }
}

/// Accepts connections until `stop` turns true, then drains open ones for up to
/// `drain`.
pub async fn serve(
    listener: TcpListener,
    state: Rest,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain_timeout: Duration,
) -> Result<(), std::io::Error> {
    // One allocation shared by every request: a request clones a pointer, not the state.
    let state = Arc::new(state);
    let drain = crate::drain::Drain::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("REST accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| handle(&state, req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = drain.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("REST connection ended: {e}");
                    }
                });
            }
            _ = crate::stopped(&mut stop) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, drain.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("REST: in-flight requests still running after {drain_timeout:?}; closing");
    }
    Ok(())
}

/// One REST request. What its head answers (metrics, unknown paths, bad API paths)
/// is answered at once; an API call reads the body and runs, bounded by the timeout.
///
/// A plain function returning one of two futures, not an `async fn`: the future
/// hyper stores and moves per request then holds only what the call needs (the body,
/// not the whole request), which keeps it small — every move of it is a copy.
fn handle(
    state: &Arc<Rest>,
    req: Request<Incoming>,
) -> Either<Ready<Handled>, impl Future<Output = Handled> + use<>> {
    match Call::start(state, req) {
        Start::Answered(response) => Either::Left(std::future::ready(Ok(response))),
        Start::Call(call) => {
            let timeout = state.timeout;
            // The deadline counts from the call's start (one clock read for both); a
            // timeout too long to add to the clock (`ServerConfig` takes any
            // `Duration`) is a deadline decades away, as `tokio::time::timeout`
            // makes it.
            let started = tokio::time::Instant::from_std(call.started);
            let deadline = started
                .checked_add(timeout)
                .unwrap_or_else(|| started + FAR_FUTURE);
            // A combinator, not an `async` block awaiting it: that would hold the
            // timed future twice (captured, and as the awaited value).
            Either::Right(
                tokio::time::timeout_at(deadline, call.answer()).map(move |answered| {
                    Ok(answered.unwrap_or_else(|_| {
                        error(&Status::deadline_exceeded(format!(
                            "Request timed out after {} ms",
                            timeout.as_millis()
                        )))
                    }))
                }),
            )
        }
    }
}

/// The deadline of a call whose timeout cannot be added to the clock.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// What hyper gets for a request.
type Handled = Result<Response<Full<Bytes>>, Infallible>;

/// A request, from its head: answered already, or a call to make.
enum Start {
    Answered(Response<Full<Bytes>>),
    Call(Call),
}

/// An API call, from its request head: what the path asks for and the body to read.
struct Call {
    state: Arc<Rest>,
    body: Incoming,
    /// The declared `Content-Length` is above the limit: answered 413 unread.
    declared_too_large: bool,
    route_api: RestApi,
    spec: ModelSpec,
    api: Api,
    started: Instant,
}

impl Call {
    /// The call a request makes, or the answer its head already gives.
    fn start(state: &Arc<Rest>, req: Request<Incoming>) -> Start {
        let path = req.uri().path();
        if req.method() == Method::GET && path == METRICS_PATH {
            return Start::Answered(metrics(state));
        }
        let route = match rest_path::parse(req.method().as_str(), path) {
            Ok(Some(route)) => route,
            Ok(None) => return Start::Answered(not_found()),
            Err(status) => return Start::Answered(error(&status)),
        };
        let started = Instant::now();
        let declared_too_large = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > state.max_body_bytes as u64);
        let route_api = route.api;
        Start::Call(Call {
            state: state.clone(),
            body: req.into_body(),
            declared_too_large,
            route_api,
            spec: model_spec(route),
            api: api_of(route_api),
            started,
        })
    }

    /// Reads the body, runs the API, records the request and answers.
    async fn answer(self) -> Response<Full<Bytes>> {
        // Fields are used in place, not moved into locals: each would be stored
        // again in this future.
        let limit = self.state.max_body_bytes;
        let read = if self.declared_too_large {
            Err(BodyError::TooLarge(too_large(limit)))
        } else {
            read_body(self.body, limit).await
        };
        let (result, http_status) = match read {
            Ok(body) => (
                dispatch(&self.state, self.route_api, &self.spec, self.api, &body).await,
                None,
            ),
            Err(BodyError::TooLarge(status)) => (Err(status), Some(StatusCode::PAYLOAD_TOO_LARGE)),
            Err(BodyError::Read(status)) => (Err(status), None),
        };
        let record = |version, outcome, served| {
            self.state.models.record_in(
                Some(&self.spec),
                version,
                self.api,
                Entrypoint::Rest,
                outcome,
                self.started,
                served,
            )
        };
        match result {
            Ok(Answer {
                body,
                version,
                metrics,
            }) => {
                record(Some(version), Ok(()), metrics.as_deref());
                json_response(StatusCode::OK, body)
            }
            Err(status) => {
                record(None, Err(&status), None);
                let code = http_status.unwrap_or_else(|| {
                    StatusCode::from_u16(status.http_status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                });
                json_response(code, status.to_json_body().into_bytes())
            }
        }
    }
}

/// What the path asks for, moved out of the parsed route (no copies).
fn model_spec(route: RestRoute) -> ModelSpec {
    let (version, label) = match route.version {
        VersionChoice::Latest => (None, None),
        VersionChoice::Version(v) => (Some(v), None),
        VersionChoice::Label(l) => (None, Some(l)),
    };
    ModelSpec {
        name: route.model,
        version,
        label,
    }
}

fn api_of(api: RestApi) -> Api {
    match api {
        RestApi::Predict => Api::Predict,
        RestApi::Classify => Api::Classify,
        RestApi::Regress => Api::Regress,
        RestApi::Metadata => Api::GetModelMetadata,
        RestApi::Status => Api::GetModelStatus,
    }
}

/// What a successful API call answers.
struct Answer {
    /// The JSON body, as bytes: it goes out as the HTTP body.
    body: Vec<u8>,
    /// The version that answered.
    version: i64,
    /// Its metric handles, when a run looked them up already.
    metrics: Option<Arc<Served>>,
}

impl Answer {
    fn new(body: Vec<u8>, version: i64) -> Answer {
        Answer {
            body,
            version,
            metrics: None,
        }
    }
}

/// Runs one API call.
async fn dispatch(
    state: &Rest,
    route_api: RestApi,
    spec: &ModelSpec,
    api: Api,
    body: &[u8],
) -> Result<Answer, Status> {
    let models = &state.models;
    match route_api {
        RestApi::Status => {
            let statuses = models.status(spec)?;
            let version = statuses.first().map_or(0, |s| s.version);
            Ok(Answer::new(
                json::model_status_json(&statuses).into_bytes(),
                version,
            ))
        }
        RestApi::Metadata => {
            let resolved = models.resolve(spec)?;
            let body = json::model_metadata_json(
                &resolved.name,
                resolved.version,
                resolved.servable.signatures(),
            );
            Ok(Answer::new(body.into_bytes(), resolved.version))
        }
        RestApi::Predict => {
            let resolved = models.resolve(spec)?;
            let request = json::parse_predict_request(body, |name| {
                json::find_signature(resolved.servable.signatures(), name)
            })?;
            let output = models
                .run(
                    &resolved,
                    &request.signature_name,
                    api,
                    Entrypoint::Rest,
                    request.inputs,
                    Vec::new(),
                )
                .await?;
            let body = json::encode_predict_response_bytes(&output.outputs, request.format)?;
            Ok(Answer {
                body,
                version: output.version,
                metrics: Some(output.metrics),
            })
        }
        RestApi::Classify | RestApi::Regress => {
            let request = json::parse_classify_regress_request(body)?;
            let resolved = models.resolve(spec)?;
            let (tensor, n) = inference::input_to_examples_tensor(&request.to_input())?;
            let mut inputs = BTreeMap::new();
            inputs.insert(inference::INPUTS.to_string(), tensor);
            let output = models
                .run(
                    &resolved,
                    request.signature_key(),
                    api,
                    Entrypoint::Rest,
                    inputs,
                    Vec::new(),
                )
                .await?;
            let body = if route_api == RestApi::Classify {
                json::encode_classification_result(&inference::classification_result(
                    &output.outputs,
                    n,
                )?)?
            } else {
                json::encode_regression_result(&inference::regression_result(&output.outputs, n)?)?
            };
            Ok(Answer {
                body: body.into_bytes(),
                version: output.version,
                metrics: Some(output.metrics),
            })
        }
    }
}

/// Why a request body could not be read.
enum BodyError {
    /// Above the limit: answered with 413, counted as RESOURCE_EXHAUSTED.
    TooLarge(Status),
    /// The client went away or broke the stream.
    Read(Status),
}

/// Reads the whole body, refusing more than `limit` bytes.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match collect(Limited::new(body, limit)).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge(too_large(limit)))
        }
        Err(e) => Err(BodyError::Read(Status::new(
            infermesh_tfserving::Code::Cancelled,
            format!("Failed to read request body: {e}"),
        ))),
    }
}

/// A body's data frames, joined (trailers are dropped): what
/// `BodyExt::collect` then `to_bytes` give, without their buffer list. The usual body
/// is one frame, kept as it came.
async fn collect<B>(mut body: B) -> Result<Bytes, B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut first = Bytes::new();
    let mut joined: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match &mut joined {
            Some(buf) => buf.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut buf = Vec::with_capacity(first.len() + data.len());
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(first, Bytes::from))
}

fn too_large(limit: usize) -> Status {
    Status::new(
        infermesh_tfserving::Code::ResourceExhausted,
        format!("Request body too large: the limit is {limit} bytes"),
    )
}

fn metrics(state: &Rest) -> Response<Full<Bytes>> {
    let text = crate::metrics::render(&state.registry);
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// An error as TF Serving answers it: mapped status, `{"error": "..."}`.
fn error(status: &Status) -> Response<Full<Bytes>> {
    let code =
        StatusCode::from_u16(status.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, status.to_json_body().into_bytes())
}

fn not_found() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::manager::ModelManager;
    use crate::service::Models;

    /// A running test server: its address, the switch that stops it, its task.
    type TestServer = (
        std::net::SocketAddr,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<Result<(), std::io::Error>>,
    );

    /// A REST server with no models on a loopback port, and the switch that stops it.
    async fn server() -> TestServer {
        server_with(Duration::from_secs(5), 1 << 20).await
    }

    /// [`server`] with this request timeout and body limit.
    async fn server_with(timeout: Duration, max_body_bytes: usize) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        let loader: crate::manager::Loader = Arc::new(|_| Err("no models here".into()));
        let models = Models::new(ModelManager::new(Vec::new(), loader), metrics, 2);
        let state = super::Rest::new(models, Arc::new(registry), timeout, max_body_bytes);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(super::serve(
            listener,
            state,
            stop_rx,
            Duration::from_secs(5),
        ));
        (addr, stop, server)
    }

    /// Sends `request` on a new connection, then half-closes it unless `hold` (a body
    /// still owed); the whole answer (the server closes: `connection: close`).
    async fn exchange(addr: std::net::SocketAddr, request: &str, hold: bool) -> String {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        if !hold {
            conn.shutdown().await.unwrap();
        }
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("answered and closed within 10 s")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// What the request head settles is answered without a call; a call's body is
    /// bounded by the limit (declared or streamed) and its time by the timeout.
    #[tokio::test]
    async fn heads_calls_body_limit_and_timeout() {
        let (addr, stop, server) = server_with(Duration::from_millis(300), 64).await;
        let head = |method: &str, path: &str, extra: &str| {
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n")
        };

        let metrics = exchange(addr, &head("GET", super::METRICS_PATH, ""), false).await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");

        let other = exchange(addr, &head("GET", "/v2/other", ""), false).await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        assert!(other.ends_with("\r\n\r\n"), "no body: {other}");

        let bad = exchange(
            addr,
            &head("POST", "/v1/models/m:explain", "content-length: 0\r\n"),
            false,
        )
        .await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        assert!(
            bad.contains(r#"{"error":"Malformed request: POST /v1/models/m:explain"}"#),
            "{bad}"
        );

        // Declared above the limit: answered before any body byte is sent.
        let declared = exchange(
            addr,
            &head("POST", "/v1/models/m:predict", "content-length: 65\r\n"),
            true,
        )
        .await;
        assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
        assert!(
            declared.contains("Request body too large: the limit is 64 bytes"),
            "{declared}"
        );

        // Streamed above the limit (chunked, no length declared).
        let chunk = "x".repeat(40);
        let streamed = format!(
            "{}28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n",
            head(
                "POST",
                "/v1/models/m:predict",
                "transfer-encoding: chunked\r\n"
            )
        );
        let streamed = exchange(addr, &streamed, false).await;
        assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");
        assert!(streamed.contains("Request body too large"), "{streamed}");

        // A body that stops arriving: the call times out.
        let slow = format!(
            "{}{{\"inst",
            head("POST", "/v1/models/m:predict", "content-length: 20\r\n")
        );
        let slow = exchange(addr, &slow, true).await;
        assert!(slow.starts_with("HTTP/1.1 504"), "{slow}");
        assert!(slow.contains("Request timed out after 300 ms"), "{slow}");

        // Within the limit and complete: the call runs (no such model here).
        let body = r#"{"instances": [1.0]}"#;
        let ok = format!(
            "{}{body}",
            head(
                "POST",
                "/v1/models/m:predict",
                &format!("content-length: {}\r\n", body.len())
            )
        );
        let ok = exchange(addr, &ok, false).await;
        assert!(ok.starts_with("HTTP/1.1 404"), "{ok}");
        assert!(ok.contains("Servable not found for request"), "{ok}");

        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A timeout too long to add to the clock (`ServerConfig` takes any
    /// `Duration`) is no timeout, not a panic.
    #[tokio::test]
    async fn the_longest_timeout_is_no_timeout() {
        let (addr, stop, server) = server_with(Duration::MAX, 64).await;
        let body = r#"{"instances": [1.0]}"#;
        let request = format!(
            "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = exchange(addr, &request, false).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(
            answer.contains("Servable not found for request"),
            "{answer}"
        );
        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
    }

    /// Stopping the server: an idle keep-alive connection is closed, a request whose
    /// body is still arriving is answered in full and its connection then closed, and
    /// `serve` returns once both connections are gone.
    #[tokio::test]
    async fn stopping_closes_idle_connections_and_finishes_requests_in_flight() {
        let (addr, stop, server) = server().await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /v1/models/m HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 404"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );

        let mut busy = TcpStream::connect(addr).await.unwrap();
        let body = br#"{"instances": [1.0]}"#;
        let head = format!(
            "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        busy.write_all(head.as_bytes()).await.unwrap();
        busy.write_all(&body[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        stop.send(true).unwrap();
        // The idle connection is closed by the server (EOF), not left open.
        let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "idle connection not closed: {closed:?}"
        );
        // The request in flight gets its whole answer, then the connection closes.
        busy.write_all(&body[5..]).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut answer))
            .await
            .expect("the in-flight request is answered and its connection closed")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(
            answer.contains("Servable not found for request"),
            "{answer}"
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once its connections are gone")
            .unwrap()
            .unwrap();
    }
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::HeaderMap;
    use http_body::Frame;
    use http_body_util::{BodyExt, Limited};

    /// A body of the given frames (`None`: a trailers frame).
    struct Frames(VecDeque<Option<Bytes>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|f| {
                Ok(match f {
                    Some(data) => Frame::data(data),
                    None => Frame::trailers(HeaderMap::new()),
                })
            }))
        }
    }

    /// Generated frame lists (empty frames, trailers between and after, one to six
    /// frames), with and without a limit: the same bytes or the same error kind as
    /// `collect` + `to_bytes`.
    #[tokio::test]
    async fn collect_matches_body_ext() {
        let mut x: u32 = 0x1234_5678;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for case in 0..2_000 {
            let frames: VecDeque<Option<Bytes>> = (0..next() % 7)
                .map(|_| match next() % 6 {
                    0 => None,
                    1 => Some(Bytes::new()),
                    _ => {
                        let len = (next() % 40) as usize;
                        Some((0..len).map(|_| next() as u8).collect::<Vec<u8>>().into())
                    }
                })
                .collect();
            let want = Frames(frames.clone()).collect().await.unwrap().to_bytes();
            assert_eq!(
                super::collect(Frames(frames.clone())).await.unwrap(),
                want,
                "case {case}"
            );
            let limit = (next() % 80) as usize;
            let want = Limited::new(Frames(frames.clone()), limit)
                .collect()
                .await
                .map(|c| c.to_bytes());
            let got = super::collect(Limited::new(Frames(frames), limit)).await;
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "case {case}"),
                (Err(got), Err(want)) => assert_eq!(
                    got.is::<http_body_util::LengthLimitError>(),
                    want.is::<http_body_util::LengthLimitError>(),
                    "case {case}"
                ),
                (got, want) => panic!("case {case}: {got:?} vs {want:?}"),
            }
        }
    }
}
