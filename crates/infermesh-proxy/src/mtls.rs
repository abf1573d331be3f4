//! mTLS on mesh hops, for the proxy: the accept side (TLS termination per the
//! workload's mode — STRICT: TLS with a required client certificate; PERMISSIVE:
//! the first byte decides, 0x16 a TLS handshake, anything else plaintext, on one
//! port; DISABLE: plaintext — and the gateway's client-facing TLS from files), the
//! verified peer identity as [`PeerIdentity`], and the gateway's outbound mTLS
//! clients, one per expected sidecar identity.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use infermesh_config::{GatewayTls, IdentityConfig, MeshConfig, MtlsMode, TlsVersion, Workload};
use infermesh_identity::{
    IdentityError, MinTls, PeerPolicy, SpiffeId, WorkloadIdentity, certs_from_pem, client_config,
    key_from_pem, peer_id, provider, server_config,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::FastMap;
use crate::body::ProxyBody;
use crate::identity::PeerIdentity;
use crate::names::Names;

/// How long a client has to finish the TLS handshake (or send its first byte).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The TLS record type of a handshake: the first byte of every TLS connection.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a listener does with a new connection.
#[derive(Clone, Default)]
pub enum Inbound {
    /// Plaintext only.
    #[default]
    Plain,
    /// mTLS required.
    Strict(TlsAcceptor),
    /// mTLS or plaintext, told apart by the first byte.
    Permissive(TlsAcceptor),
    /// The gateway's client-facing TLS (client certificates as configured).
    Tls(TlsAcceptor),
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inbound::Plain => "Plain",
            Inbound::Strict(_) => "Strict",
            Inbound::Permissive(_) => "Permissive",
            Inbound::Tls(_) => "Tls",
        })
    }
}

/// An accepted connection, after TLS termination.
pub enum Accepted {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>, Option<PeerIdentity>),
}

fn min_tls(identity: Option<&IdentityConfig>) -> MinTls {
    match identity.map(|i| i.min_tls) {
        Some(TlsVersion::Tls12) => MinTls::V12,
        _ => MinTls::V13,
    }
}

/// The identity config in force: the file's, or the defaults (`infermesh up`
/// without an `identity:` section).
pub fn identity_config(config: &MeshConfig) -> IdentityConfig {
    config.identity.clone().unwrap_or_default()
}

/// The gateway's SPIFFE ID under `config`.
pub fn gateway_id(config: &MeshConfig) -> Result<SpiffeId, IdentityError> {
    let i = identity_config(config);
    SpiffeId::new(
        &config.trust_domain,
        &i.gateway_namespace,
        &i.gateway_service_account,
    )
}

/// A workload's SPIFFE ID under `config`.
pub fn workload_id(config: &MeshConfig, workload: &Workload) -> Result<SpiffeId, IdentityError> {
    SpiffeId::new(
        &config.trust_domain,
        &workload.namespace,
        &workload.service_account,
    )
}

impl Inbound {
    /// A sidecar's inbound side for its workload's mode.
    pub fn sidecar(
        config: &MeshConfig,
        workload: &Workload,
        identity: Arc<WorkloadIdentity>,
    ) -> Result<Inbound, IdentityError> {
        let policy = PeerPolicy {
            allowed: workload.allowed_peers.clone(),
        };
        let tls = || -> Result<TlsAcceptor, IdentityError> {
            let cfg = server_config(
                identity.clone(),
                policy.clone(),
                min_tls(config.identity.as_ref()),
            )?;
            Ok(TlsAcceptor::from(cfg))
        };
        Ok(match workload.mtls {
            MtlsMode::Strict => Inbound::Strict(tls()?),
            MtlsMode::Permissive => Inbound::Permissive(tls()?),
            MtlsMode::Disable => Inbound::Plain,
        })
    }

    /// The gateway's client-facing side: TLS from `gateway.tls`'s files, or plaintext.
    pub fn gateway(config: &MeshConfig) -> Result<Inbound, IdentityError> {
        match &config.gateway.tls {
            Some(tls) => Ok(Inbound::Tls(TlsAcceptor::from(gateway_server_config(
                tls,
                min_tls(config.identity.as_ref()),
            )?))),
            None => Ok(Inbound::Plain),
        }
    }

    /// TLS termination of one connection. `Err`: refused (already logged).
    pub async fn accept(&self, stream: TcpStream) -> Result<Accepted, ()> {
        let peer = stream.peer_addr().ok();
        let acceptor = match self {
            Inbound::Plain => return Ok(Accepted::Plain(stream)),
            Inbound::Strict(a) | Inbound::Tls(a) => a,
            Inbound::Permissive(a) => {
                let mut first = [0u8; 1];
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => a,
                    Ok(Ok(_)) => return Ok(Accepted::Plain(stream)),
                    _ => return Err(()),
                }
            }
        };
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::warn!(peer = ?peer, error = %e, "TLS handshake refused");
                return Err(());
            }
            Err(_) => {
                tracing::warn!(peer = ?peer, "TLS handshake timed out");
                return Err(());
            }
        };
        let identity = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| peer_id(leaf).ok())
            .map(|id| PeerIdentity {
                principal: id.principal().into(),
            });
        if let Some(id) = &identity {
            tracing::debug!(peer = ?peer, principal = %id.principal, "mTLS peer");
        }
        Ok(Accepted::Tls(Box::new(tls), identity))
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|e| IdentityError::Pem(format!("{}: {e}", path.display())))
}

fn gateway_server_config(
    tls: &GatewayTls,
    min: MinTls,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let chain = certs_from_pem(&read(&tls.cert)?, &tls.cert.display().to_string())?;
    let key = key_from_pem(&read(&tls.key)?, &tls.key.display().to_string())?;
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinTls::V13 => &[&rustls::version::TLS13],
        MinTls::V12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs_from_pem(&read(ca)?, &ca.display().to_string())? {
                roots
                    .add(c)
                    .map_err(|e| IdentityError::Certificate(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if tls.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| IdentityError::Tls(e.to_string()))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type TlsClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// The gateway's mTLS clients to sidecars: REST (HTTP/1.1) and gRPC (h2) pools per
/// expected sidecar identity, all presenting the gateway's certificate.
pub struct UpstreamTls {
    identity: Arc<WorkloadIdentity>,
    min: MinTls,
    http: HttpConnector,
    build: fn(bool) -> hyper_util::client::legacy::Builder,
    clients: Mutex<FastMap<SpiffeId, (TlsClient, TlsClient)>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("identity", &self.identity.id().uri())
            .finish()
    }
}

impl UpstreamTls {
    pub(crate) fn new(
        identity: Arc<WorkloadIdentity>,
        config: &MeshConfig,
        http: HttpConnector,
        build: fn(bool) -> hyper_util::client::legacy::Builder,
    ) -> UpstreamTls {
        let mut http = http;
        http.enforce_http(false);
        UpstreamTls {
            identity,
            min: min_tls(config.identity.as_ref()),
            http,
            build,
            clients: Mutex::new(FastMap::default()),
        }
    }

    /// The client for calls to a peer that must be `expected` (`grpc`: h2 only).
    pub(crate) fn client(
        &self,
        expected: &SpiffeId,
        grpc: bool,
    ) -> Result<TlsClient, IdentityError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rest, grpc_client)) = clients.get(expected) {
            return Ok(if grpc {
                grpc_client.clone()
            } else {
                rest.clone()
            });
        }
        let make = |h2: bool| -> Result<TlsClient, IdentityError> {
            let cfg = client_config(self.identity.clone(), expected.clone(), self.min, &[])?;
            let b = HttpsConnectorBuilder::new()
                .with_tls_config(cfg)
                .https_only();
            let connector = if h2 {
                b.enable_http2().wrap_connector(self.http.clone())
            } else {
                b.enable_http1().wrap_connector(self.http.clone())
            };
            Ok((self.build)(h2).build(connector))
        };
        let pair = (make(false)?, make(true)?);
        let out = if grpc { pair.1.clone() } else { pair.0.clone() };
        clients.insert(expected.clone(), pair);
        Ok(out)
    }
}

/// The identity the gateway requires of `workload`'s sidecars, when the hop is
/// mTLS (identity on at the gateway, the workload not DISABLE).
pub fn expected_upstream(
    names: &Names,
    workload: &Workload,
    tls_on: bool,
) -> Option<Arc<SpiffeId>> {
    if !tls_on || workload.mtls == MtlsMode::Disable {
        return None;
    }
    names.workloads.get(&workload.name)?.id.clone()
}
