//! The benchmark's ceiling: the least an HTTP server on the same stack as infermesh
//! (tokio multi-thread + hyper 1, HTTP/1.1 and h2c on one port) can do per request.
//!
//! It reads each request body in full and answers with a fixed half_plus_two answer:
//! * any request: `200`, `Content-Type: application/json`, `{"predictions": [2.5, 3.0, 4.5]}`;
//! * a request with `Content-Type: application/grpc*`: `200`, `content-type: application/grpc`,
//!   the framed PredictResponse from `bench/grpc/predict_response.grpc`, then the trailer
//!   `grpc-status: 0` — the ceiling for gRPC Predict.
//!
//! No routing, no parsing, no model: what infermesh adds on top of this is its own cost.
//!
//! Usage: `ceiling [--port PORT] [--threads N] [--blocking-handoff]` (binds 127.0.0.1;
//! port 0 picks a free one; threads default to the CPUs this process may run on). Prints
//! `listening on ADDR`. `--blocking-handoff` is a diagnostic, not the ceiling: each request
//! also awaits an empty `tokio::task::spawn_blocking` closure, the hop infermesh makes to
//! run a model, so its cost can be measured on its own (see bench/README.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const JSON_BODY: &[u8] = br#"{"predictions": [2.5, 3.0, 4.5]}"#;
const GRPC_BODY: &[u8] = include_bytes!("../../grpc/predict_response.grpc");

static BLOCKING_HANDOFF: AtomicBool = AtomicBool::new(false);

type TrailersReady = std::future::Ready<Option<Result<HeaderMap, Infallible>>>;
type Body =
    Either<Full<Bytes>, http_body_util::combinators::WithTrailers<Full<Bytes>, TrailersReady>>;

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // Read the whole request, as any real server must.
    req.into_body().collect().await?;
    if BLOCKING_HANDOFF.load(Ordering::Relaxed) {
        tokio::task::spawn_blocking(|| ())
            .await
            .expect("empty blocking task");
    }
    let response = if grpc {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let body = Full::new(Bytes::from_static(GRPC_BODY))
            .with_trailers(std::future::ready(Some(Ok(trailers))));
        Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(Either::Right(body))
    } else {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Either::Left(Full::new(Bytes::from_static(JSON_BODY))))
    };
    Ok(response.expect("static response parts are valid"))
}

fn usage() -> ! {
    eprintln!("usage: ceiling [--port PORT] [--threads N] [--blocking-handoff]");
    std::process::exit(2)
}

fn main() {
    let mut port: u16 = 0;
    let mut threads: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--blocking-handoff" {
            BLOCKING_HANDOFF.store(true, Ordering::Relaxed);
            continue;
        }
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--port" => port = value.parse().unwrap_or_else(|_| usage()),
            "--threads" => threads = Some(value.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let runtime = builder.build().expect("tokio runtime");
    runtime.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port))));
}

async fn serve(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    println!(
        "listening on {}",
        listener.local_addr().expect("local addr")
    );
    let mut shutdown = std::pin::pin!(tokio::signal::ctrl_c());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            },
            _ = &mut shutdown => break,
            _ = term.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // HTTP/1.1 or h2c by prior knowledge, told apart by the HTTP/2 preface.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
