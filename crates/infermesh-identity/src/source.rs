//! Where a workload's certificate comes from:
//!
//! * [`Signer`]: a CA that signs the workload's CSR — the built-in CA in this
//!   process ([`LocalCa`], re-read from its directory when `ca rotate` changes it),
//!   or a CA service reached over the network;
//! * [`CertFiles`]: certificate, key and bundle files an external CA maintains
//!   (a mounted Kubernetes Secret, the cert-manager CSI driver, a SPIRE or Vault
//!   agent), re-read when their contents change.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// The current trust bundle (checked on every renewal tick, so a CA rotation
    /// reaches every identity before the new root signs anything).
    fn bundle(&self) -> Result<Vec<CertificateDer<'static>>, IdentityError>;
}

/// How long a new CA (after `ca rotate`) only joins the trust bundle before it
/// signs: every identity refreshes its bundle within a second, so no peer sees a
/// certificate of a root it does not trust yet.
pub const CA_SWITCH_DELAY: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Loaded {
    /// The files' contents when last read.
    print: Vec<u8>,
    signing: Arc<Ca>,
    /// A new CA read from disk, and when it was first seen.
    next: Option<(Arc<Ca>, Instant)>,
    bundle: Vec<CertificateDer<'static>>,
}

/// The built-in CA of a [`CaStore`] directory, used in this process. The
/// directory is read again when its files change: a new bundle is used at once, a
/// new signing CA after [`CA_SWITCH_DELAY`].
#[derive(Debug)]
pub struct LocalCa {
    store: CaStore,
    loaded: Mutex<Option<Loaded>>,
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

    /// The CA to sign with now and the bundle, re-reading changed files.
    fn current(&self) -> Result<(Arc<Ca>, Vec<CertificateDer<'static>>), IdentityError> {
        let mut guard = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let print = self.store.fingerprint();
        let changed = match (guard.as_ref(), print.as_ref()) {
            (Some(l), Some(p)) => &l.print != p,
            _ => true,
        };
        if changed {
            match self.store.load() {
                Ok((ca, bundle)) => {
                    let ca = Arc::new(ca);
                    let print = print.unwrap_or_default();
                    match guard.as_mut() {
                        None => {
                            *guard = Some(Loaded {
                                print,
                                signing: ca,
                                next: None,
                                bundle,
                            })
                        }
                        Some(l) => {
                            tracing::info!(dir = %self.store.dir().display(), roots = bundle.len(), "CA files changed: new trust bundle in use");
                            if l.signing.root() != ca.root() {
                                l.next = Some((ca, Instant::now()));
                            }
                            l.print = print;
                            l.bundle = bundle;
                        }
                    }
                }
                // Mid-rotation (a new certificate with the old key): keep the last good CA.
                Err(e) if guard.is_some() => {
                    tracing::debug!(error = %e, "CA files unreadable for now: using the last loaded CA");
                }
                Err(e) => return Err(e),
            }
        }
        let Some(l) = guard.as_mut() else {
            return Err(IdentityError::Certificate("no CA loaded".into()));
        };
        if let Some((next, since)) = &l.next
            && since.elapsed() >= CA_SWITCH_DELAY
        {
            tracing::info!(dir = %self.store.dir().display(), "signing with the new CA");
            l.signing = next.clone();
            l.next = None;
        }
        Ok((l.signing.clone(), l.bundle.clone()))
    }
}

impl Signer for LocalCa {
    fn sign(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        lifetime: Duration,
    ) -> Result<Issued, IdentityError> {
        let (ca, bundle) = self.current()?;
        let chain = ca.sign_csr(csr_der, id, lifetime)?;
        Ok(Issued { chain, bundle })
    }

    fn bundle(&self) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        Ok(self.current()?.1)
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
