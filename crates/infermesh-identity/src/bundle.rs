//! A trust bundle: the roots a workload accepts peers from (several during a CA
//! rotation), with the rustls client-certificate verifier built from them once.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;

use crate::error::IdentityError;

/// The roots, and verifiers over them.
#[derive(Debug)]
pub struct TrustBundle {
    pub(crate) certs: Vec<CertificateDer<'static>>,
    pub(crate) roots: Arc<RootCertStore>,
    /// Verifies a client chain up to one of the roots (identity checked after).
    pub(crate) client_chain: Arc<dyn ClientCertVerifier>,
}

/// The crypto provider every identity config uses (aws-lc-rs, as the workspace).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TrustBundle {
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Result<TrustBundle, IdentityError> {
        let mut roots = RootCertStore::empty();
        for c in &certs {
            roots
                .add(c.clone())
                .map_err(|e| IdentityError::Certificate(format!("bad trust bundle root: {e}")))?;
        }
        if roots.is_empty() {
            return Err(IdentityError::Certificate("empty trust bundle".into()));
        }
        let roots = Arc::new(roots);
        let client_chain = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
        Ok(TrustBundle {
            certs,
            roots,
            client_chain,
        })
    }

    /// The roots, DER.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}
