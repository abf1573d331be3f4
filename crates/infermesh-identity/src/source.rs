//! Where a workload's certificate comes from:
//!
//! * [`Signer`]: a CA that signs the workload's CSR — the built-in CA in this
//!   process ([`LocalCa`], re-read from its directory when `ca rotate` changes it),
//!   or a CA service reached over the network;
//! * [`CertFiles`]: certificate, key and bundle files an external CA maintains
//!   (a mounted Kubernetes Secret, the cert-manager CSI driver, a SPIRE or Vault
//!   agent), re-read when their contents change.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::ca::Ca;
use crate::error::IdentityError;
use crate::spiffe::SpiffeId;
use crate::store::CaStore;

/// A signed certificate chain (leaf first) and the trust bundle to verify peers with.
#[derive(Clone, Debug)]
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub bundle: Vec<CertificateDer<'static>>,
}

/// A CA that signs CSRs for an identity the caller has already been authenticated as.
pub trait Signer: Send + Sync + std::fmt::Debug {
    fn sign(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        lifetime: Duration,
    ) -> Result<Issued, IdentityError>;
}

/// A loaded CA and its trust bundle.
type Loaded = std::sync::Arc<(Ca, Vec<CertificateDer<'static>>)>;

/// The built-in CA of a [`CaStore`] directory, used in this process. The
/// directory is read again when its files change (CA rotation).
#[derive(Debug)]
pub struct LocalCa {
    store: CaStore,
    loaded: Mutex<Option<(Vec<u8>, Loaded)>>,
}

impl LocalCa {
    /// Loads the CA of `store` (which must exist).
    pub fn open(store: CaStore) -> Result<LocalCa, IdentityError> {
        let ca = LocalCa {
            store,
            loaded: Mutex::new(None),
        };
        ca.current()?;
        Ok(ca)
    }

    fn current(&self) -> Result<Loaded, IdentityError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let print = self.store.fingerprint();
        if let (Some((seen, ca)), Some(print)) = (loaded.as_ref(), print.as_ref())
            && seen == print
        {
            return Ok(ca.clone());
        }
        match self.store.load() {
            Ok(pair) => {
                let pair = std::sync::Arc::new(pair);
                if loaded.is_some() {
                    tracing::info!(dir = %self.store.dir().display(), roots = pair.1.len(), "CA files changed: signing with the CA now on disk");
                }
                *loaded = Some((print.unwrap_or_default(), pair.clone()));
                Ok(pair)
            }
            // Mid-rotation (a new certificate with the old key): keep the last good CA.
            Err(e) => match loaded.as_ref() {
                Some((_, ca)) => {
                    tracing::debug!(error = %e, "CA files unreadable for now: using the last loaded CA");
                    Ok(ca.clone())
                }
                None => Err(e),
            },
        }
    }
}

impl Signer for LocalCa {
    fn sign(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        lifetime: Duration,
    ) -> Result<Issued, IdentityError> {
        let pair = self.current()?;
        let chain = pair.0.sign_csr(csr_der, id, lifetime)?;
        Ok(Issued {
            chain,
            bundle: pair.1.clone(),
        })
    }
}

/// Certificate files kept up to date by an external CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The workload certificate (leaf first, then intermediates), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The roots to trust, PEM.
    pub bundle: PathBuf,
}

impl CertFiles {
    /// The three files' contents (`None` while one is unreadable).
    pub(crate) fn read(&self) -> Option<[Vec<u8>; 3]> {
        Some([
            std::fs::read(&self.cert).ok()?,
            std::fs::read(&self.key).ok()?,
            std::fs::read(&self.bundle).ok()?,
        ])
    }
}
