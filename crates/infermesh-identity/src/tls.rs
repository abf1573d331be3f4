//! rustls configurations for mesh hops: the workload's current certificate for
//! each new handshake (resolvers over [`WorkloadIdentity`]), the peer's chain
//! verified against the current trust bundle, and the peer's SPIFFE ID checked —
//! on the client side against the identity the destination must have, on the server
//! side against the trust domain and, when configured, a list of allowed peers.
//! TLS 1.3 only unless 1.2 is allowed; ALPN h2 and http/1.1.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::bundle::{TrustBundle, provider};
use crate::cert::inspect;
use crate::error::IdentityError;
use crate::spiffe::SpiffeId;
use crate::workload::WorkloadIdentity;

/// ALPN protocols offered and accepted on mesh hops.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The lowest TLS version a hop accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinTls {
    #[default]
    V13,
    V12,
}

fn versions(min: MinTls) -> &'static [&'static SupportedProtocolVersion] {
    static V13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static V12: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    match min {
        MinTls::V13 => &V13,
        MinTls::V12 => &V12,
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// Who may call a server, beyond a valid chain.
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    /// Istio principals (`<td>/ns/<ns>/sa/<sa>`); a trailing `*` matches a prefix.
    /// Empty: any identity of the server's trust domain.
    pub allowed: Vec<String>,
}

impl PeerPolicy {
    fn allows(&self, principal: &str) -> bool {
        self.allowed.is_empty()
            || self.allowed.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => principal.starts_with(prefix),
                None => p == principal,
            })
    }
}

/// The verified SPIFFE ID of a peer's leaf certificate.
pub fn peer_id(leaf: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    inspect(leaf)?.spiffe_id()
}

fn refuse(reason: String) -> rustls::Error {
    rustls::Error::General(reason)
}

#[derive(Debug)]
struct ServerResolver(Arc<WorkloadIdentity>);

impl ResolvesServerCert for ServerResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.certified_key()
    }
}

#[derive(Debug)]
struct ClientResolver(Arc<WorkloadIdentity>);

impl ResolvesClientCert for ClientResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.certified_key()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Server side: chain to the current bundle, then the peer's SPIFFE ID.
#[derive(Debug)]
struct PeerVerifier {
    identity: Arc<WorkloadIdentity>,
    policy: PeerPolicy,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bundle = self.identity.bundle();
        if let Err(e) = bundle
            .client_chain
            .verify_client_cert(end_entity, intermediates, now)
        {
            tracing::warn!(error = %e, "mTLS peer refused: its certificate does not verify against the trust bundle");
            return Err(e);
        }
        let id = peer_id(end_entity).map_err(|e| {
            tracing::warn!(error = %e, "mTLS peer refused: no SPIFFE ID");
            refuse(e.to_string())
        })?;
        let own = self.identity.id().trust_domain();
        if id.trust_domain() != own {
            let why = format!("mTLS peer {id} refused: not in trust domain {own}");
            tracing::warn!("{why}");
            return Err(refuse(why));
        }
        if !self.policy.allows(&id.principal()) {
            let why = format!(
                "mTLS peer {id} refused: not an allowed peer of {} (allowed: {})",
                self.identity.id(),
                self.policy.allowed.join(", ")
            );
            tracing::warn!("{why}");
            return Err(refuse(why));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Client side: chain to the current bundle, then exactly the expected SPIFFE ID
/// (the DNS name or address dialled does not matter: SVIDs carry none).
#[derive(Debug)]
struct ExpectedServer {
    roots: Roots,
    expected: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Where a verifier takes its trust bundle from.
#[derive(Debug)]
enum Roots {
    /// The workload's current bundle.
    Identity(Arc<WorkloadIdentity>),
    /// A fixed bundle (e.g. the bootstrap bundle of a CA service's clients).
    Fixed(Arc<TrustBundle>),
}

impl Roots {
    fn bundle(&self) -> Arc<TrustBundle> {
        match self {
            Roots::Identity(identity) => identity.bundle(),
            Roots::Fixed(bundle) => bundle.clone(),
        }
    }
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bundle = self.roots.bundle();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &bundle.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let id = peer_id(end_entity).map_err(|e| refuse(e.to_string()))?;
        if id != self.expected {
            let why = format!("upstream presented {id}, expected {}", self.expected);
            tracing::warn!("{why}");
            return Err(refuse(why));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A server config for a mesh listener: the workload's certificate, a required
/// client certificate from the bundle whose SPIFFE ID `policy` allows.
pub fn server_config(
    identity: Arc<WorkloadIdentity>,
    policy: PeerPolicy,
    min: MinTls,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let verifier = Arc::new(PeerVerifier {
        identity: identity.clone(),
        policy,
        algorithms: algorithms(),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ServerResolver(identity)));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client config for calls to a peer that must be `expected`, presenting the
/// workload's certificate. `alpn`: what to offer (e.g. only `h2` for gRPC).
pub fn client_config(
    identity: Arc<WorkloadIdentity>,
    expected: SpiffeId,
    min: MinTls,
    alpn: &[&[u8]],
) -> Result<ClientConfig, IdentityError> {
    let verifier = Arc::new(ExpectedServer {
        roots: Roots::Identity(identity.clone()),
        expected,
        algorithms: algorithms(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(ClientResolver(identity)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server config that authenticates itself as `identity` and asks no client
/// certificate (callers authenticate otherwise, e.g. the CA service's bearer tokens).
pub fn server_config_without_client_auth(
    identity: Arc<WorkloadIdentity>,
    min: MinTls,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ServerResolver(identity)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config with no certificate of its own that requires the server to be
/// `expected`, verified against `bundle`.
pub fn client_config_for_bundle(
    bundle: Arc<TrustBundle>,
    expected: SpiffeId,
    min: MinTls,
) -> Result<ClientConfig, IdentityError> {
    let verifier = Arc::new(ExpectedServer {
        roots: Roots::Fixed(bundle),
        expected,
        algorithms: algorithms(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
