//! A workload's identity at run time: its current X.509-SVID and trust bundle,
//! renewed in the background. The certificate lives in an `ArcSwap`: each new TLS
//! handshake takes the one current then, while connections already open keep the
//! one they were made with. Renewal happens at a fraction of the lifetime (a new key
//! and CSR each time; the key never leaves this process); a warning is logged at 80 %
//! of the lifetime without a successful renewal; an expired or missing certificate
//! makes every handshake fail (fail closed, one clear log line), never plaintext.
//!
//! Issue, renewal, bundle changes and failures are sent to [`WorkloadIdentity::subscribe`]
//! receivers (the audit trail's hook).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::bundle::{TrustBundle, provider};
use crate::ca::new_key_and_csr;
use crate::cert::{certs_from_pem, inspect, key_from_pem};
use crate::error::IdentityError;
use crate::source::{CertFiles, Signer};
use crate::spiffe::SpiffeId;

/// Default certificate lifetime.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Default renewal point, as a fraction of the lifetime.
pub const DEFAULT_RENEW_FRACTION: f64 = 0.5;
/// Past this fraction of its lifetime without a renewal, a certificate is warned about.
pub const WARN_FRACTION: f64 = 0.8;

/// When certificates are renewed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rotation {
    pub lifetime: Duration,
    /// 0 < fraction < 1.
    pub renew_fraction: f64,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            lifetime: DEFAULT_LIFETIME,
            renew_fraction: DEFAULT_RENEW_FRACTION,
        }
    }
}

/// Where the certificate comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Ca(Arc<dyn Signer>),
    Files(CertFiles),
}

/// What happened to a workload's identity (for the audit trail and metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The first certificate.
    Issued,
    /// A new certificate replaced the previous one.
    Rotated,
    /// The trust bundle changed (CA rotation).
    BundleChanged,
    /// A renewal or a file reload failed; the previous certificate stays.
    RenewalFailed,
    /// Past 80 % of its lifetime without renewal.
    ExpiringSoon,
    /// Expired: handshakes fail until a new one arrives.
    Expired,
}

#[derive(Clone, Debug)]
pub struct IdentityEvent {
    pub kind: EventKind,
    /// `spiffe://…`
    pub spiffe_id: String,
    /// SHA-256 of the leaf certificate (hex), when there is one.
    pub fingerprint: Option<String>,
    pub not_after: Option<SystemTime>,
    pub detail: String,
}

struct Current {
    key: Arc<CertifiedKey>,
    /// Where its lifetime starts for renewal and warnings: when it was issued here
    /// (CA), or its `notBefore` (files).
    since: SystemTime,
    not_after: SystemTime,
    fingerprint: String,
    warned: AtomicBool,
}

/// One workload's identity.
pub struct WorkloadIdentity {
    id: SpiffeId,
    source: Source,
    rotation: Rotation,
    current: ArcSwapOption<Current>,
    bundle: ArcSwap<TrustBundle>,
    /// Content hash of the files last loaded (files mode).
    files_seen: std::sync::Mutex<Option<Vec<u8>>>,
    expired_logged: AtomicBool,
    events: broadcast::Sender<IdentityEvent>,
}

impl std::fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("id", &self.id.uri())
            .field("not_after", &self.not_after())
            .finish()
    }
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl WorkloadIdentity {
    /// Gets the first certificate (an error if it cannot), then keeps it renewed in
    /// a background task that ends when the identity is dropped. Call inside a
    /// tokio runtime.
    pub fn start(
        id: SpiffeId,
        source: Source,
        rotation: Rotation,
    ) -> Result<Arc<WorkloadIdentity>, IdentityError> {
        let (events, _) = broadcast::channel(64);
        let (chain, key, bundle) = match &source {
            Source::Ca(signer) => issue(signer.as_ref(), &id, rotation.lifetime)?,
            Source::Files(files) => {
                let bytes = files.read().ok_or_else(|| {
                    IdentityError::Certificate(format!(
                        "cannot read {}, {} and {}",
                        files.cert.display(),
                        files.key.display(),
                        files.bundle.display()
                    ))
                })?;
                parse_files(&bytes, &id)?
            }
        };
        let identity = Arc::new(WorkloadIdentity {
            id,
            source,
            rotation,
            current: ArcSwapOption::empty(),
            bundle: ArcSwap::from_pointee(TrustBundle::new(bundle)?),
            files_seen: std::sync::Mutex::new(None),
            expired_logged: AtomicBool::new(false),
            events,
        });
        if let Source::Files(files) = &identity.source {
            *identity
                .files_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = files.read().map(|b| b.concat());
        }
        identity.install(chain, key, EventKind::Issued)?;
        let weak = Arc::downgrade(&identity);
        tokio::spawn(run(weak));
        Ok(identity)
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The current certificate's expiry (for the expiry gauge).
    pub fn not_after(&self) -> Option<SystemTime> {
        self.current.load().as_ref().map(|c| c.not_after)
    }

    /// The current leaf certificate (DER), if any.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current
            .load()
            .as_ref()
            .and_then(|c| c.key.cert.first().cloned())
    }

    /// Issue/rotation/expiry events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<IdentityEvent> {
        self.events.subscribe()
    }

    pub(crate) fn bundle(&self) -> Arc<TrustBundle> {
        self.bundle.load_full()
    }

    /// The certificate and key for a new handshake; `None` (and one error line)
    /// when it has expired or is missing — the handshake then fails.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        let current = self.current.load();
        match current.as_ref() {
            Some(c) if c.not_after > SystemTime::now() => Some(c.key.clone()),
            _ => {
                if !self.expired_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        spiffe_id = %self.id,
                        "workload certificate expired or missing: refusing mTLS handshakes until a new one is issued (no plaintext fallback)"
                    );
                    self.emit(EventKind::Expired, "certificate expired or missing".into());
                }
                None
            }
        }
    }

    fn emit(&self, kind: EventKind, detail: String) {
        let current = self.current.load();
        let _ = self.events.send(IdentityEvent {
            kind,
            spiffe_id: self.id.uri(),
            fingerprint: current.as_ref().map(|c| c.fingerprint.clone()),
            not_after: current.as_ref().map(|c| c.not_after),
            detail,
        });
    }

    fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        kind: EventKind,
    ) -> Result<(), IdentityError> {
        if self.leaf().as_ref() == chain.first() {
            return Ok(()); // the same certificate (e.g. only the bundle file changed)
        }
        let info = inspect(&chain[0])?;
        let certified = CertifiedKey::from_der(chain.clone(), key, &provider())?;
        let fp = fingerprint(&chain[0]);
        self.current.store(Some(Arc::new(Current {
            key: Arc::new(certified),
            since: match self.source {
                Source::Ca(_) => SystemTime::now(),
                Source::Files(_) => info.not_before,
            },
            not_after: info.not_after,
            fingerprint: fp.clone(),
            warned: AtomicBool::new(false),
        })));
        self.expired_logged.store(false, Ordering::Relaxed);
        let left = info
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tracing::info!(
            spiffe_id = %self.id,
            fingerprint = %&fp[..16],
            valid_for = ?Duration::from_secs(left.as_secs()),
            "workload certificate {}",
            if kind == EventKind::Issued { "issued" } else { "rotated" }
        );
        self.emit(kind, String::new());
        Ok(())
    }

    fn set_bundle(&self, certs: Vec<CertificateDer<'static>>) -> Result<(), IdentityError> {
        if self.bundle.load().certs == certs {
            return Ok(());
        }
        let n = certs.len();
        self.bundle.store(Arc::new(TrustBundle::new(certs)?));
        tracing::info!(spiffe_id = %self.id, roots = n, "trust bundle changed");
        self.emit(EventKind::BundleChanged, format!("{n} roots"));
        Ok(())
    }

    /// How long until the next check.
    fn poll_interval(&self) -> Duration {
        let life = match &self.source {
            Source::Ca(_) => self.rotation.lifetime,
            Source::Files(_) => Duration::from_secs(10),
        };
        (life / 20).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// One check: renew (CA) or reload changed files, then warn about expiry.
    fn tick(&self) {
        let now = SystemTime::now();
        let result = match &self.source {
            Source::Ca(signer) => {
                let due = match self.current.load().as_ref() {
                    Some(c) => {
                        let life = c.not_after.duration_since(c.since).unwrap_or_default();
                        let renew_at = c.since + life.mul_f64(self.rotation.renew_fraction);
                        now >= renew_at
                    }
                    None => true,
                };
                if let Ok(bundle) = signer.bundle()
                    && let Err(e) = self.set_bundle(bundle)
                {
                    tracing::warn!(spiffe_id = %self.id, error = %e, "unusable trust bundle: keeping the current one");
                }
                if due {
                    issue(signer.as_ref(), &self.id, self.rotation.lifetime).and_then(
                        |(chain, key, bundle)| {
                            self.set_bundle(bundle)?;
                            self.install(chain, key, EventKind::Rotated)
                        },
                    )
                } else {
                    Ok(())
                }
            }
            Source::Files(files) => self.reload_files(files),
        };
        if let Err(e) = result {
            tracing::warn!(spiffe_id = %self.id, error = %e, "certificate renewal failed: keeping the current certificate, retrying");
            self.emit(EventKind::RenewalFailed, e.to_string());
        }
        self.check_expiry(now);
    }

    fn reload_files(&self, files: &CertFiles) -> Result<(), IdentityError> {
        let Some(bytes) = files.read() else {
            return Err(IdentityError::Certificate(format!(
                "cannot read {} / {} / {}",
                files.cert.display(),
                files.key.display(),
                files.bundle.display()
            )));
        };
        let joined = bytes.concat();
        let mut seen = self.files_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.as_deref() == Some(joined.as_slice()) {
            return Ok(());
        }
        let result = parse_files(&bytes, &self.id).and_then(|(chain, key, bundle)| {
            self.set_bundle(bundle)?;
            self.install(chain, key, EventKind::Rotated)
        });
        // A half-written set is tried again at the next change only when it parsed;
        // a failure is retried on every poll until the files are consistent.
        if result.is_ok() {
            *seen = Some(joined);
        }
        result
    }

    fn check_expiry(&self, now: SystemTime) {
        let current = self.current.load();
        let Some(c) = current.as_ref() else { return };
        if c.not_after <= now {
            let _ = self.certified_key(); // logs once
            return;
        }
        let life = c.not_after.duration_since(c.since).unwrap_or_default();
        if now >= c.since + life.mul_f64(WARN_FRACTION) && !c.warned.swap(true, Ordering::Relaxed) {
            let left = c.not_after.duration_since(now).unwrap_or_default();
            tracing::warn!(spiffe_id = %self.id, expires_in = ?Duration::from_secs(left.as_secs()), "workload certificate expires soon and has not been renewed");
            self.emit(EventKind::ExpiringSoon, format!("{}s left", left.as_secs()));
        }
    }
}

type Material = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Vec<CertificateDer<'static>>,
);

/// A new key, a CSR, the CA's signature.
fn issue(
    signer: &dyn Signer,
    id: &SpiffeId,
    lifetime: Duration,
) -> Result<Material, IdentityError> {
    let (key, csr) = new_key_and_csr(id)?;
    let issued = signer.sign(&csr, id, lifetime)?;
    let Some(leaf) = issued.chain.first() else {
        return Err(IdentityError::Signing(
            "the CA returned no certificate".into(),
        ));
    };
    let named = inspect(leaf)?.spiffe_id()?;
    if &named != id {
        return Err(IdentityError::Signing(format!(
            "the CA issued a certificate for {named}, not {id}"
        )));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((issued.chain, key, issued.bundle))
}

/// Certificate, key and bundle file contents, checked: the leaf names `id`, is not
/// a CA, and has not expired.
fn parse_files(bytes: &[Vec<u8>; 3], id: &SpiffeId) -> Result<Material, IdentityError> {
    let chain = certs_from_pem(&bytes[0], "certificate file")?;
    let key = key_from_pem(&bytes[1], "key file")?;
    let bundle = certs_from_pem(&bytes[2], "bundle file")?;
    let info = inspect(&chain[0])?;
    let got = info.spiffe_id()?;
    if &got != id {
        return Err(IdentityError::Certificate(format!(
            "the certificate names {got}, this workload is {id}"
        )));
    }
    if info.is_ca {
        return Err(IdentityError::Certificate(
            "the workload certificate is a CA certificate".into(),
        ));
    }
    if info.not_after <= SystemTime::now() {
        return Err(IdentityError::Certificate(
            "the workload certificate has expired".into(),
        ));
    }
    Ok((chain, key, bundle))
}

async fn run(weak: Weak<WorkloadIdentity>) {
    loop {
        let wait = match weak.upgrade() {
            Some(me) => me.poll_interval(),
            None => return,
        };
        tokio::time::sleep(wait).await;
        let Some(me) = weak.upgrade() else { return };
        // Signing and file reads are short and blocking.
        let _ = tokio::task::spawn_blocking(move || me.tick()).await;
    }
}
