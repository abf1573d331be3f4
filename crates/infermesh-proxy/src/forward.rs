//! Stage 6: forward one attempt upstream over pooled connections — HTTP/1.1
//! keep-alive for REST, HTTP/2 cleartext (h2c prior knowledge) for gRPC, with the
//! configured connect timeout — and clean hop-by-hop headers both ways. Retries,
//! timeouts and endpoint choice are the caller's ([`crate::attempts`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{self, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;

use infermesh_config::{Limits, MeshConfig};
use infermesh_identity::{SpiffeId, WorkloadIdentity};

use crate::body::{BoxError, ProxyBody};
use crate::error::{Failure, limit_in_chain};
use crate::inspect::Protocol;
use crate::mtls::UpstreamTls;

/// How long an idle upstream connection stays pooled.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The upstream clients: one pool per protocol, and (gateway with an identity) the
/// mTLS pools to sidecars.
#[derive(Clone, Debug)]
pub struct Clients {
    rest: Client<HttpConnector, ProxyBody>,
    grpc: Client<HttpConnector, ProxyBody>,
    connector: HttpConnector,
    tls: Option<Arc<UpstreamTls>>,
}

/// The part of a request every attempt sends again: method, path and cleaned headers.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub protocol: Protocol,
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// The SPIFFE ID the upstream must prove over mTLS; `None`: plaintext.
    pub peer: Option<Arc<SpiffeId>>,
}

/// How one attempt failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: the request never left.
    Connect(String),
    /// The request body went over the size limit while it was sent.
    BodyTooLarge,
    /// The upstream closed the connection while the request was still being written
    /// (a broken pipe, or the connection closed before any response while the body
    /// was not all sent: it answered early or went away). The request never reached
    /// it whole, so it was not served: as safe to retry as a connect failure.
    Refused(String),
    /// The upstream closed or reset the connection after the request was sent whole
    /// and before any response: it may have been served (so it is not retried), but
    /// the upstream is gone or going — 503 like Envoy's "disconnect/reset before
    /// headers", not 502. On a pooled keep-alive connection this is also the race
    /// with an upstream that died while the connection sat idle.
    Reset(String),
    /// The request may have reached the upstream.
    Other(String),
}

impl Clients {
    pub fn new(limits: &Limits) -> Clients {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.set_nodelay(true);
        Clients {
            rest: client_builder(false).build(connector.clone()),
            grpc: client_builder(true).build(connector.clone()),
            connector,
            tls: None,
        }
    }

    /// Calls to upstreams that name a `peer` go over mTLS as `identity`.
    pub fn with_tls(mut self, identity: Arc<WorkloadIdentity>, config: &MeshConfig) -> Clients {
        self.tls = Some(Arc::new(UpstreamTls::new(
            identity,
            config,
            self.connector.clone(),
            client_builder,
        )));
        self
    }

    /// Whether calls to sidecars go over mTLS.
    pub fn tls_on(&self) -> bool {
        self.tls.is_some()
    }

    /// Sends one attempt to the endpoint at `authority` (its address, as the
    /// endpoint wrote it once: see [`crate::endpoints::Picked::authority`]).
    pub async fn send(
        &self,
        authority: Option<Authority>,
        outbound: &Outbound,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, SendError> {
        let scheme = if outbound.peer.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let uri = authority
            .ok_or_else(|| "the endpoint's address is not a URI authority".to_owned())
            .and_then(|a| {
                upstream_uri(scheme, a, &outbound.path_and_query).map_err(|e| e.to_string())
            })
            .map_err(|e| SendError::Other(format!("invalid upstream uri: {e}")))?;
        let (body, sent_whole) = SentWhole::wrap(body);
        let mut request = Request::new(body);
        *request.method_mut() = outbound.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = outbound.headers.clone();
        let (client, version) = match outbound.protocol {
            Protocol::Rest => (&self.rest, Version::HTTP_11),
            Protocol::Grpc => (&self.grpc, Version::HTTP_2),
        };
        *request.version_mut() = version;
        let sent = match (&outbound.peer, &self.tls) {
            (None, _) => client.request(request).await,
            (Some(peer), Some(tls)) => {
                let grpc = outbound.protocol == Protocol::Grpc;
                let client = tls
                    .client(peer, grpc)
                    .map_err(|e| SendError::Connect(format!("mTLS client: {e}")))?;
                client.request(request).await
            }
            // Fail closed: an mTLS hop without an identity to present is not sent.
            (Some(peer), None) => {
                return Err(SendError::Connect(format!(
                    "no workload identity to call {peer} over mTLS"
                )));
            }
        };
        match sent {
            Ok(response) => Ok(response_from_upstream(response)),
            Err(e) if e.is_connect() => Err(SendError::Connect(chain(&e))),
            Err(e) if limit_in_chain(&e) => Err(SendError::BodyTooLarge),
            Err(e) if broken_pipe_in_chain(&e) => Err(SendError::Refused(chain(&e))),
            // The upstream closed the connection before the request body was all
            // sent: it answered early (e.g. a sidecar's 503 when its model server is
            // down, which the close's reset then discards) or went away — either way
            // it did not serve this request.
            Err(e) if closed_in_chain(&e) && !sent_whole.load(Ordering::Relaxed) => {
                Err(SendError::Refused(chain(&e)))
            }
            Err(e) if closed_in_chain(&e) || reset_in_chain(&e) => Err(SendError::Reset(chain(&e))),
            Err(e) => Err(SendError::Other(chain(&e))),
        }
    }
}

fn client_builder(http2: bool) -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(http2);
    b
}

impl SendError {
    pub fn into_failure(self, limit: u64) -> Failure {
        match self {
            SendError::Connect(e) | SendError::Refused(e) => Failure::UpstreamConnect(e),
            SendError::Reset(e) => Failure::UpstreamReset(e),
            SendError::BodyTooLarge => Failure::BodyTooLarge { limit },
            SendError::Other(e) => Failure::Upstream(e),
        }
    }
}

/// Whether a write to the upstream failed because it had closed the connection.
fn broken_pipe_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    io_error_in_chain(e, std::io::ErrorKind::BrokenPipe)
}

/// Whether the upstream reset the connection (`ECONNRESET`).
fn reset_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    io_error_in_chain(e, std::io::ErrorKind::ConnectionReset)
}

/// Whether an I/O error of `kind` is among `e`'s causes.
fn io_error_in_chain(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Whether hyper saw the connection close before a whole response arrived.
fn closed_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// An attempt's request body that notes when it has been sent to its end.
struct SentWhole {
    inner: ProxyBody,
    done: Arc<AtomicBool>,
}

impl SentWhole {
    fn wrap(inner: ProxyBody) -> (ProxyBody, Arc<AtomicBool>) {
        let done = Arc::new(AtomicBool::new(false));
        let body = SentWhole {
            inner,
            done: done.clone(),
        };
        (body.boxed(), done)
    }
}

impl hyper::body::Body for SentWhole {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if polled.is_none() {
            self.done.store(true, Ordering::Relaxed);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.done.store(true, Ordering::Relaxed);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An error and its causes on one line (for clients: no addresses of internals
/// beyond the upstream's socket error).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

fn response_from_upstream(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and the headers it
/// names, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`,
/// `Proxy-Authenticate`, `Proxy-Authorization`; `TE` is kept only as `trailers`,
/// which gRPC needs end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !has_hop_by_hop(headers) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != header::TE {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    headers.remove(header::TE);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether [`strip_hop_by_hop`] has anything to do: one pass over the header names
/// instead of ten lookups, for the usual request that has none of them (or only
/// `te: trailers`, which stays as it is).
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| match name.as_str() {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "transfer-encoding"
        | "upgrade"
        | "proxy-authenticate"
        | "proxy-authorization" => true,
        "te" => {
            let mut values = headers.get_all(header::TE).iter();
            !(values.next().is_some_and(|v| v == "trailers") && values.next().is_none())
        }
        _ => false,
    })
}

/// `scheme://authority` + `path_and_query`, built from its parts (no formatting and
/// re-parsing of the whole URI on every attempt; the authority is the endpoint's,
/// shared, so the clones hyper-util makes of it allocate nothing).
fn upstream_uri(
    scheme: Scheme,
    authority: Authority,
    path_and_query: &str,
) -> Result<Uri, http::Error> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query)?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn upstream_uris_equal_the_formatted_ones() {
        for addr in [
            "127.0.0.1:8501",
            "0.0.0.0:1",
            "255.255.255.255:65535",
            "[::1]:8500",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            for (scheme, name) in [(Scheme::HTTP, "http"), (Scheme::HTTPS, "https")] {
                for pq in ["/", "/v1/models/m/versions/1:predict", "/a?b=c&d=%2F"] {
                    let authority = crate::endpoints::uri_authority(addr).unwrap();
                    let built = upstream_uri(scheme.clone(), authority, pq).unwrap();
                    let formatted: Uri = format!("{name}://{addr}{pq}").parse().unwrap();
                    assert_eq!(built, formatted);
                    assert_eq!(built.to_string(), formatted.to_string());
                }
            }
        }
        let authority = crate::endpoints::uri_authority("127.0.0.1:1".parse().unwrap()).unwrap();
        assert!(upstream_uri(Scheme::HTTP, authority, "no-slash").is_err());
    }

    /// Every combination of a few ordinary and hop-by-hop headers: the early return
    /// is taken exactly when the full strip would change nothing.
    #[test]
    fn the_early_return_is_taken_only_when_nothing_would_change() {
        let choices: [(&str, &str); 12] = [
            ("content-type", "application/json"),
            ("x-request-id", "abc"),
            ("te", "trailers"),
            ("te", "Trailers"),
            ("te", "trailers, deflate"),
            ("connection", "keep-alive"),
            ("connection", "x-drop"),
            ("x-drop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
        ];
        let mut early = 0;
        for mask in 0u32..(1 << choices.len()) {
            let mut headers = HeaderMap::new();
            for (i, (name, value)) in choices.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    headers.append(
                        HeaderName::from_static(name),
                        HeaderValue::from_static(value),
                    );
                }
            }
            let mut stripped = headers.clone();
            strip_hop_by_hop(&mut stripped);
            if !has_hop_by_hop(&headers) {
                early += 1;
                assert_eq!(stripped, headers, "{headers:?}");
            }
            let mut full = headers.clone();
            strip_all(&mut full);
            assert_eq!(stripped, full, "{headers:?}");
        }
        assert!(early > 4, "{early}");
    }

    /// The full strip, without the early return.
    fn strip_all(headers: &mut HeaderMap) {
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("x-forces-the-full-path"),
        );
        strip_hop_by_hop(headers);
    }

    #[test]
    fn hop_by_hop_headers_are_removed_and_te_trailers_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-foo"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h["x-keep"], "yes");
    }
}
