//! Stage 1: accept connections, terminate TLS per the listener's [`Inbound`] mode
//! (`mtls.rs`), and serve HTTP/1.1 and HTTP/2 (h2c with prior knowledge, or h2 over
//! TLS) on the same port, so TF Serving REST and gRPC clients both work. The mTLS
//! peer's verified identity goes on every request of the connection.
//! Applies the connection, header and stream limits, and shuts down gracefully: stop
//! accepting, let in-flight requests finish up to the drain timeout, then close.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::error::ProxyError;
use crate::identity::{Caller, Connection, PeerIdentity};
use crate::mtls::{Accepted as Terminated, Inbound};
use crate::pipeline::Proxy;

/// hyper refuses HTTP/1 read buffers smaller than this.
const MIN_HTTP1_BUFFER: usize = 8192;

type Accepted = (TcpStream, OwnedSemaphorePermit);

/// Serves `listeners` until `shutdown` completes, then drains.
pub async fn serve(
    listeners: Vec<TcpListener>,
    proxy: Arc<Proxy>,
    inbound: Inbound,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let limits = proxy.config.load().limits.clone();
    let builder = builder(&limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (tx, mut accepted) = mpsc::channel::<Accepted>(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept(listener, permits.clone(), tx.clone()));
    }
    drop(tx);

    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = accepted.recv() => {
                let Some((stream, permit)) = next else { break };
                let proxy = proxy.clone();
                let connection = match (stream.peer_addr(), stream.local_addr()) {
                    (Ok(peer), Ok(local)) => Some(Connection { peer, local }),
                    _ => None,
                };
                let inbound = inbound.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                connections.spawn(async move {
                    match inbound.accept(stream).await {
                        Ok(Terminated::Plain(stream)) => {
                            serve_io(stream, builder, proxy, connection, None, watcher).await;
                        }
                        Ok(Terminated::Tls(stream, peer)) => {
                            serve_io(stream, builder, proxy, connection, peer, watcher).await;
                        }
                        Err(()) => {}
                    }
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    // Stop accepting, then let in-flight requests finish up to the drain timeout.
    acceptors.shutdown().await;
    drop(accepted);
    let drain = limits.drain_timeout;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            open = connections.len(),
            "drain timeout: closing connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Serves HTTP on one accepted (and, with TLS, terminated) connection.
async fn serve_io<I>(
    io: I,
    builder: auto::Builder<TokioExecutor>,
    proxy: Arc<Proxy>,
    connection: Option<Connection>,
    peer: Option<PeerIdentity>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = Arc::new(Caller { connection, peer });
    let service = service_fn(move |request: hyper::Request<_>| {
        let proxy = proxy.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request, &caller).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Accepts while a connection slot is free; errors (e.g. out of file descriptors)
/// are logged and retried after a pause, never fatal.
async fn accept(listener: TcpListener, permits: Arc<Semaphore>, tx: mpsc::Sender<Accepted>) {
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                if tx.send((stream, permit)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn builder(limits: &infermesh_config::Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUFFER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}
