//! A client of the CA service (`infermesh ca serve`): each renewal sends the CSR
//! over TLS, authenticated with a bearer token read from a file each time (a
//! Kubernetes projected service-account token is rotated by the kubelet); the server
//! must prove the CA service's SPIFFE ID against a bootstrap trust bundle. Blocking
//! I/O with timeouts: renewals run on a blocking thread.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName};

use crate::bundle::TrustBundle;
use crate::cert::{certs_from_pem, certs_to_pem};
use crate::error::IdentityError;
use crate::source::{Issued, Signer};
use crate::spiffe::SpiffeId;
use crate::tls::{MinTls, client_config_for_bundle};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the CA service.
const MAX_ANSWER: u64 = 1 << 20;
/// The path of the signing endpoint.
pub const SIGN_PATH: &str = "/v1/sign";

/// The CA service, seen from a workload.
pub struct RemoteCa {
    address: String,
    token_file: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    /// The bundle of the last answer (the bootstrap bundle before the first).
    bundle: Mutex<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for RemoteCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCa")
            .field("address", &self.address)
            .finish()
    }
}

impl RemoteCa {
    /// `address` is `host:port`; `server` the CA service's SPIFFE ID; `bundle` the
    /// roots to verify it with (PEM).
    pub fn new(
        address: String,
        server: SpiffeId,
        token_file: PathBuf,
        bundle_pem: &[u8],
        min: MinTls,
    ) -> Result<RemoteCa, IdentityError> {
        let roots = certs_from_pem(bundle_pem, "CA service bundle")?;
        let trust = Arc::new(TrustBundle::new(roots.clone())?);
        let tls = Arc::new(client_config_for_bundle(trust, server, min)?);
        Ok(RemoteCa {
            address,
            token_file,
            tls,
            bundle: Mutex::new(roots),
        })
    }

    fn call(&self, csr_der: &[u8], lifetime: Duration) -> Result<(u16, Vec<u8>), IdentityError> {
        let io =
            |e: std::io::Error| IdentityError::Signing(format!("CA service {}: {e}", self.address));
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| IdentityError::io(&self.token_file, e))?;
        let token = token.trim();
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| {
                IdentityError::Signing(format!("{} resolves to nothing", self.address))
            })?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        // The name is not checked (the SPIFFE ID is): any valid name will do.
        let name =
            ServerName::try_from("infermesh-ca").map_err(|e| IdentityError::Tls(e.to_string()))?;
        let conn = ClientConnection::new(self.tls.clone(), name)?;
        let mut tls = StreamOwned::new(conn, tcp);
        let head = format!(
            "POST {SIGN_PATH}?ttl={} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/pkcs10\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            lifetime.as_secs(),
            self.address,
            csr_der.len()
        );
        tls.write_all(head.as_bytes()).map_err(io)?;
        tls.write_all(csr_der).map_err(io)?;
        tls.flush().map_err(io)?;
        let mut raw = Vec::new();
        if let Err(e) = (&mut tls).take(MAX_ANSWER).read_to_end(&mut raw)
            && raw.is_empty()
        {
            return Err(io(e));
        }
        let text_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| IdentityError::Signing("CA service: no HTTP answer".into()))?;
        let head = String::from_utf8_lossy(&raw[..text_end]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| IdentityError::Signing("CA service: no HTTP status".into()))?;
        Ok((status, raw[text_end + 4..].to_vec()))
    }
}

impl Signer for RemoteCa {
    fn sign(
        &self,
        csr_der: &[u8],
        _id: &SpiffeId,
        lifetime: Duration,
    ) -> Result<Issued, IdentityError> {
        let (status, body) = self.call(csr_der, lifetime)?;
        let text = String::from_utf8_lossy(&body);
        if status != 200 {
            return Err(IdentityError::Signing(format!(
                "CA service answered {status}: {}",
                text.trim()
            )));
        }
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| IdentityError::Signing(format!("CA service answer: {e}")))?;
        let field = |name: &str| -> Result<Vec<CertificateDer<'static>>, IdentityError> {
            let pem = json.get(name).and_then(|v| v.as_str()).ok_or_else(|| {
                IdentityError::Signing(format!("CA service answer without `{name}`"))
            })?;
            certs_from_pem(pem.as_bytes(), name)
        };
        let issued = Issued {
            chain: field("chain")?,
            bundle: field("bundle")?,
        };
        *self.bundle.lock().unwrap_or_else(|p| p.into_inner()) = issued.bundle.clone();
        Ok(issued)
    }

    fn bundle(&self) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        Ok(self
            .bundle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }
}

/// The CA service's answer to a signed CSR.
pub fn answer(issued: &Issued) -> String {
    serde_json::json!({
        "chain": certs_to_pem(&issued.chain),
        "bundle": certs_to_pem(&issued.bundle),
    })
    .to_string()
}
