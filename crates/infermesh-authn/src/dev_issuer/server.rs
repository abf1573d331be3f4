//! The dev issuer's HTTP endpoints: `GET /.well-known/openid-configuration`,
//! `GET /jwks`, and `POST /token` (OAuth 2.0 client-credentials grant, RFC 6749
//! §4.4; client authentication with HTTP Basic or `client_id`/`client_secret` in
//! the form; errors as RFC 6749 §5.2 JSON).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;

use super::DevIssuer;

const MAX_FORM_BYTES: usize = 16 * 1024;
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A client allowed to use the client-credentials grant. Its tokens have
/// `sub` = `client_id`, the client's `groups` and `audiences`.
#[derive(Clone, PartialEq, Eq)]
pub struct DevClient {
    pub client_id: String,
    pub client_secret: String,
    pub groups: Vec<String>,
    pub audiences: Vec<String>,
    /// Token lifetime (default 1 h when zero).
    pub ttl: Duration,
}

impl std::fmt::Debug for DevClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("groups", &self.groups)
            .field("audiences", &self.audiences)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl DevIssuer {
    /// Serves discovery, JWKS and the token endpoint on `listener` until
    /// `shutdown` completes; open connections then get up to 5 s to finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        clients: Vec<DevClient>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let clients = Arc::new(clients);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "dev issuer: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let issuer = self.clone();
            let clients = clients.clone();
            let service = hyper::service::service_fn(move |req| {
                let issuer = issuer.clone();
                let clients = clients.clone();
                async move { Ok::<_, Infallible>(handle(&issuer, &clients, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        Ok(())
    }
}

async fn handle(
    issuer: &DevIssuer,
    clients: &[DevClient],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match req.uri().path() {
        "/.well-known/openid-configuration" if get => {
            json_response(StatusCode::OK, issuer.discovery())
        }
        "/jwks" if get => json_response(StatusCode::OK, issuer.jwks()),
        "/token" if req.method() == Method::POST => token(issuer, clients, req).await,
        "/.well-known/openid-configuration" | "/jwks" | "/token" => {
            let mut r = oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method not allowed",
            );
            let allow = if req.uri().path() == "/token" {
                "POST"
            } else {
                "GET, HEAD"
            };
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            r
        }
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    }
}

/// The client-credentials grant.
async fn token(
    issuer: &DevIssuer,
    clients: &[DevClient],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected application/x-www-form-urlencoded",
        );
    }
    let body = match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "request body too large or unreadable",
            );
        }
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if params.iter().any(|(seen, _)| *seen == k) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("parameter {k:?} repeated"),
            );
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let basic = match parts.headers.get(header::AUTHORIZATION) {
        Some(value) => match basic_credentials(value.as_bytes()) {
            Some(c) => Some(c),
            None => return invalid_client(),
        },
        None => None,
    };
    let (client_id, secret) = match (basic, param("client_secret")) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            );
        }
        (Some((id, secret)), None) => {
            if param("client_id").is_some_and(|form_id| form_id != id) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id mismatch",
                );
            }
            (id, secret)
        }
        (None, Some(secret)) => match param("client_id") {
            Some(id) => (id.to_owned(), secret.to_owned()),
            None => return invalid_client(),
        },
        (None, None) => return invalid_client(),
    };
    let Some(client) = clients.iter().find(|c| {
        c.client_id == client_id
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                c.client_secret.as_bytes(),
                secret.as_bytes(),
            )
            .is_ok()
    }) else {
        tracing::info!(client_id = %client_id, "dev issuer: client authentication failed");
        return invalid_client();
    };
    match param("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type missing",
            );
        }
    }
    let ttl = if client.ttl.is_zero() {
        DEFAULT_TOKEN_TTL
    } else {
        client.ttl
    };
    match issuer.mint(&client.client_id, &client.groups, &client.audiences, ttl) {
        Ok(access_token) => {
            let mut r = json_response(
                StatusCode::OK,
                json!({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            r.headers_mut()
                .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "dev issuer: mint failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "token could not be issued",
            )
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let rest = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// 401 with a Basic challenge (RFC 6749 §5.2).
fn invalid_client() -> Response<Full<Bytes>> {
    let mut r = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    );
    let challenge = r#"Basic realm="infermesh-dev-issuer""#;
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    r
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let mut r = json_response(
        status,
        json!({"error": error, "error_description": description}),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
