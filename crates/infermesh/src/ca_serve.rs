//! `infermesh ca serve`: the built-in CA as a service. A CSR-signing endpoint
//! (`POST /v1/sign`, body: a DER CSR) over TLS, served with the CA service's own
//! certificate (`spiffe://<trust_domain>/ns/infermesh/sa/ca`, from the same CA). The
//! caller authenticates with a bearer token verified like any JWT with the mesh's
//! `issuers` (e.g. a Kubernetes projected service-account token checked against the
//! cluster's OIDC discovery and JWKS); its subject
//! `system:serviceaccount:<namespace>:<service-account>` becomes the SPIFFE ID of the
//! certificate, whatever the CSR asked for. The answer is JSON: `chain` and `bundle`
//! (PEM). The caller's key never leaves it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use infermesh_authn::Authenticator;
use infermesh_config::{MeshConfig, TlsVersion};
use infermesh_identity::{
    CaStore, LocalCa, MinTls, Rotation, SIGN_PATH, Signer, Source, SpiffeId, WorkloadIdentity,
    answer, server_config_without_client_auth,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cli::CaServeArgs;
use crate::error::InvalidConfig;

/// Largest CSR accepted.
const MAX_CSR: usize = 16 << 10;
/// The CA service's own identity (namespace, service account).
pub const CA_SERVICE_NS: &str = "infermesh";
pub const CA_SERVICE_SA: &str = "ca";

struct Service {
    ca: Arc<LocalCa>,
    authenticator: Arc<Authenticator>,
    trust_domain: String,
    max_lifetime: Duration,
}

pub async fn serve(args: CaServeArgs) -> anyhow::Result<()> {
    let path = crate::mesh::locate(&args.config);
    let mesh: MeshConfig =
        infermesh_config::load(&path).map_err(|e| InvalidConfig::error(e.to_string()))?;
    if mesh.issuers.is_empty() {
        return Err(InvalidConfig::error(
            "`ca serve` verifies callers' bearer tokens with the mesh's `issuers:`; it lists none",
        ));
    }
    let store = CaStore::new(&args.dir);
    if !store.exists() {
        return Err(InvalidConfig::error(format!(
            "no CA in {}: run `infermesh ca init --dir {}` first",
            args.dir.display(),
            args.dir.display()
        )));
    }
    let ca = Arc::new(LocalCa::open(store).context("loading the CA")?);
    let settings = mesh.identity.clone().unwrap_or_default();
    let id = SpiffeId::new(&mesh.trust_domain, CA_SERVICE_NS, CA_SERVICE_SA)?;
    let rotation = Rotation {
        lifetime: settings.cert_ttl,
        renew_fraction: settings.renew_at,
    };
    let identity = WorkloadIdentity::start(id.clone(), Source::Ca(ca.clone()), rotation)?;
    let min = match settings.min_tls {
        TlsVersion::Tls12 => MinTls::V12,
        TlsVersion::Tls13 => MinTls::V13,
    };
    let acceptor = TlsAcceptor::from(server_config_without_client_auth(identity, min)?);
    let authenticator = Arc::new(Authenticator::new(&mesh.issuers));
    let _refresh = authenticator.spawn_refresh();
    let service = Arc::new(Service {
        ca,
        authenticator,
        trust_domain: mesh.trust_domain.clone(),
        max_lifetime: settings.cert_ttl,
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, spiffe_id = %id, dir = %args.dir.display(), "CA service listening (POST {SIGN_PATH})");
    let shutdown = crate::shutdown::signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => {
                        tracing::debug!(%peer, "CA service: TLS handshake failed");
                        return;
                    }
                };
            let handler = service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), handler)
                .await;
        });
    }
    tracing::info!("CA service stopped");
    Ok(())
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

impl Service {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != SIGN_PATH {
            return reply(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != http::Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "POST a DER CSR\n");
        }
        let principal = match self.authenticator.authenticate(req.headers()).await {
            Ok(Some(p)) => p,
            Ok(None) => return reply(StatusCode::UNAUTHORIZED, "a bearer token is required\n"),
            Err(e) => {
                tracing::info!(error = %e, "CA service: token refused");
                return reply(StatusCode::UNAUTHORIZED, "invalid token\n");
            }
        };
        let id = match SpiffeId::from_k8s_subject(&self.trust_domain, &principal.subject) {
            Ok(id) => id,
            Err(e) => {
                tracing::info!(subject = %principal.subject, "CA service: not a service-account token");
                return reply(StatusCode::FORBIDDEN, format!("{e}\n"));
            }
        };
        let lifetime = requested_ttl(req.uri().query())
            .map_or(self.max_lifetime, |t| t.min(self.max_lifetime));
        let body = match Limited::new(req.into_body(), MAX_CSR).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "CSR too large\n"),
        };
        let ca = self.ca.clone();
        let signed = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || ca.sign(&body, &id, lifetime)).await
        };
        match signed {
            Ok(Ok(issued)) => {
                tracing::info!(spiffe_id = %id, issuer = %principal.issuer, ?lifetime, "CA service: certificate issued");
                let mut r = reply(StatusCode::OK, answer(&issued));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Ok(Err(e)) => reply(StatusCode::BAD_REQUEST, format!("{e}\n")),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "signing failed\n"),
        }
    }
}

/// `ttl=<seconds>` from the query (capped by `identity.cert_ttl`).
fn requested_ttl(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("ttl="))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}
