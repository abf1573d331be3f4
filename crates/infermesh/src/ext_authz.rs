//! `infermesh ext-authz`: Envoy's external authorization gRPC service
//! (`envoy.service.auth.v3.Authorization/Check`), so Istio's sidecars and gateways
//! can ask infermesh for model-aware decisions with the mesh's own policies
//! (an Istio `AuthorizationPolicy` with `action: CUSTOM` and an `extensionProviders`
//! entry of type `envoyExtAuthzGrpc`; see docs/istio.md).
//!
//! Each `CheckRequest` becomes the request the sidecar would have seen: method, path,
//! headers, the body Envoy forwards (`with_request_body`; needed for gRPC, where the
//! model is in the body), the peer's principal and addresses. Allowed: status OK.
//! Denied: PERMISSION_DENIED (or UNAUTHENTICATED) with the HTTP status, body and
//! `x-infermesh-error` header the sidecar would answer with. The config is reloaded
//! as for the other roles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, Method};
use infermesh_proxy::ext_authz::{CheckInput, ExtAuthz};

use crate::reload;

#[derive(Debug, Args)]
pub struct ExtAuthzArgs {
    /// The mesh intent file whose policies and issuers decide.
    #[arg(long, default_value = "examples/quickstart/mesh.yaml")]
    pub config: PathBuf,
    /// Where the gRPC service listens.
    #[arg(long, default_value = "127.0.0.1:9191")]
    pub listen: SocketAddr,
}

pub async fn run(args: ExtAuthzArgs) -> anyhow::Result<()> {
    let path = crate::mesh::locate(&args.config);
    let mut reloader = reload::load(&path, reload::Role::ExtAuthz)?;
    let drain = reloader.config().load().limits.drain_timeout;
    let telemetry = crate::mesh::start_telemetry(&reloader)?;
    let mut decider = ExtAuthz::new(reloader.config(), telemetry.metrics.clone());
    let audit = reloader.open_audit()?;
    if let Some(log) = &audit {
        crate::mesh::audit_metrics(&telemetry, log);
        decider = decider.with_audit(crate::mesh::proxy_audit(&reloader, log));
    }
    let service = Service(decider);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let _reload = reloader.spawn();
    tracing::info!(addr = %args.listen, "ext_authz listening (envoy.service.auth.v3.Authorization)");
    // Envoy keeps its connections open: after the shutdown signal, in-flight checks
    // get `limits.drain_timeout` to finish, then the server stops regardless.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let server = tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(service))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                crate::shutdown::signal().await;
                signalled.notify_one();
            },
        );
    let result = tokio::select! {
        result = server => result,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(?drain, "ext_authz: connections still open after the drain timeout; stopping");
            Ok(())
        }
    };
    if let Some(log) = &audit {
        crate::trail::close(log, &reload::Role::ExtAuthz).await;
    }
    result?;
    tracing::info!("ext_authz stopped");
    Ok(())
}

struct Service(ExtAuthz);

fn socket(
    peer: Option<&envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer>,
) -> Option<SocketAddr> {
    let address = peer?.address.as_ref()?.address.as_ref()?;
    let address::Address::SocketAddress(s) = address else {
        return None;
    };
    let ip = s.address.parse().ok()?;
    let port = match s.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(p).ok()?,
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The `CheckRequest` as the request the sidecar would have seen.
fn input(check: CheckRequest) -> Result<CheckInput, String> {
    let attributes = check.attributes.unwrap_or_default();
    let http = attributes
        .request
        .and_then(|r| r.http)
        .ok_or("the CheckRequest has no HTTP request attributes")?;
    let method = Method::from_bytes(http.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", http.method))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &http.headers {
        // Pseudo-headers (`:path`, `:authority`) are given as fields of their own.
        if name.starts_with(':') {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            return Err(format!("invalid header {name:?}"));
        };
        headers.append(name, value);
    }
    if !http.host.is_empty()
        && !headers.contains_key(http::header::HOST)
        && let Ok(host) = http::HeaderValue::from_str(&http.host)
    {
        headers.insert(http::header::HOST, host);
    }
    let body = if http.raw_body.is_empty() {
        Bytes::from(http.body.into_bytes())
    } else {
        Bytes::from(http.raw_body)
    };
    let peer_principal = attributes
        .source
        .as_ref()
        .map(|p| p.principal.clone())
        .filter(|p| !p.is_empty());
    Ok(CheckInput {
        method,
        path: http.path,
        headers,
        body,
        peer_principal,
        source: socket(attributes.source.as_ref()),
        destination: socket(attributes.destination.as_ref()),
    })
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn denied(
    code: tonic::Code,
    http_status: u16,
    kind: &str,
    message: &str,
    grpc: bool,
) -> CheckResponse {
    let mut headers = vec![header("x-infermesh-error", kind)];
    let body = if grpc {
        headers.push(header("grpc-status", &(code as i32).to_string()));
        headers.push(header("grpc-message", message));
        headers.push(header("content-type", "application/grpc"));
        String::new()
    } else {
        headers.push(header("content-type", "application/json"));
        serde_json::json!({ "error": message }).to_string()
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message: message.to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(http_status),
            }),
            headers,
            body,
        })),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for Service {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let input = match input(request.into_inner()) {
            Ok(input) => input,
            Err(why) => {
                tracing::debug!(%why, "ext_authz: unusable CheckRequest; denied");
                let response = denied(tonic::Code::InvalidArgument, 400, "request", &why, false);
                return Ok(tonic::Response::new(response));
            }
        };
        let grpc = infermesh_proxy::Protocol::of(&input.headers) == infermesh_proxy::Protocol::Grpc;
        // A cut body could hide a second ModelSpec after the cut (protobuf merges it):
        // deciding on the prefix could authorize one model and serve another.
        let partial = input
            .headers
            .get("x-envoy-auth-partial-body")
            .is_some_and(|v| v == "true");
        if grpc && partial {
            let why = "ext_authz got a partial gRPC body: configure the provider's \
                       includeRequestBodyInCheck with allowPartialMessage: false and a \
                       maxRequestBytes above the largest request";
            tracing::warn!("{why}; denied");
            let response = denied(tonic::Code::InvalidArgument, 400, "request", why, true);
            return Ok(tonic::Response::new(response));
        }
        let answer = self.0.check(input).await;
        let model = answer.model.as_ref().map(|m| m.model.as_str());
        let deciding = answer.decision.as_ref().and_then(|d| d.deciding.as_ref());
        tracing::debug!(
            allowed = answer.allowed,
            model,
            policy = deciding.map(|d| &*d.policy),
            status = answer.status.as_u16(),
            "ext_authz check"
        );
        let response = if answer.allowed {
            CheckResponse {
                status: Some(rpc::Status::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
                ..Default::default()
            }
        } else {
            let code = match answer.status.as_u16() {
                401 => tonic::Code::Unauthenticated,
                503 => tonic::Code::Unavailable,
                403 => tonic::Code::PermissionDenied,
                400 | 413 => tonic::Code::InvalidArgument,
                404 => tonic::Code::NotFound,
                _ => tonic::Code::PermissionDenied,
            };
            denied(
                code,
                answer.status.as_u16(),
                answer.kind,
                &answer.message,
                grpc,
            )
        };
        Ok(tonic::Response::new(response))
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ext_authz service")
    }
}
