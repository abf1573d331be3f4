//! The workload identities this process runs as: where their certificates come
//! from (the built-in CA in a directory, created by `infermesh up` if missing, or an
//! external CA's files) and starting one [`WorkloadIdentity`] per gateway or
//! sidecar, each renewed in the background.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use infermesh_config::{CaSource, IdentityConfig, MeshConfig, Workload};
use infermesh_identity::{
    CaStore, CertFiles, IdentityEvent, Init, LocalCa, RemoteCa, Rotation, Source, SpiffeId,
    WorkloadIdentity,
};

use crate::error::InvalidConfig;

/// Where this process's certificates come from.
#[derive(Debug)]
pub struct Provider {
    config: IdentityConfig,
    trust_domain: String,
    /// The built-in CA, shared by every identity of the process.
    ca: Option<Arc<LocalCa>>,
}

/// The CA directory `gateway` and `sidecar` use when `identity.dir` is not set.
pub const DEFAULT_CA_DIR: &str = ".infermesh/ca";

impl Provider {
    /// The provider for `config`. `None` when the file has no `identity:` section and
    /// `default_on` is false (separate gateway/sidecar processes: plaintext).
    /// `create`: make the built-in CA if its directory holds none (`infermesh up`).
    pub fn new(
        config: &MeshConfig,
        default_dir: &Path,
        default_on: bool,
        create: bool,
    ) -> anyhow::Result<Option<Provider>> {
        let identity = match (&config.identity, default_on) {
            (Some(i), _) => i.clone(),
            (None, true) => IdentityConfig::default(),
            (None, false) => return Ok(None),
        };
        let ca = match &identity.ca {
            CaSource::Builtin { dir } => {
                let dir = dir.clone().unwrap_or_else(|| default_dir.to_path_buf());
                let store = CaStore::new(&dir);
                if create {
                    match store
                        .init(&config.trust_domain, None)
                        .with_context(|| format!("creating the CA in {}", dir.display()))?
                    {
                        Init::Created => {
                            tracing::info!(dir = %dir.display(), "created the mesh CA (files 0600)")
                        }
                        Init::Imported | Init::AlreadyThere => {}
                    }
                } else if !store.exists() {
                    return Err(InvalidConfig::error(format!(
                        "no CA in {}: run `infermesh ca init --dir {}` first (or set identity.dir)",
                        dir.display(),
                        dir.display()
                    )));
                }
                let ca = LocalCa::open(store)
                    .with_context(|| format!("loading the CA in {}", dir.display()))?;
                Some(Arc::new(ca))
            }
            CaSource::Files { .. } | CaSource::Service { .. } => None,
        };
        Ok(Some(Provider {
            config: identity,
            trust_domain: config.trust_domain.clone(),
            ca,
        }))
    }

    /// The gateway's identity.
    pub fn gateway_id(&self) -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::new(
            &self.trust_domain,
            &self.config.gateway_namespace,
            &self.config.gateway_service_account,
        )?)
    }

    /// A workload's identity.
    pub fn workload_id(&self, workload: &Workload) -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::new(
            &self.trust_domain,
            &workload.namespace,
            &workload.service_account,
        )?)
    }

    /// Issues (or reads) the first certificate of `id` and keeps it renewed.
    pub fn start(&self, id: SpiffeId) -> anyhow::Result<Arc<WorkloadIdentity>> {
        let source = match (&self.ca, &self.config.ca) {
            (Some(ca), _) => Source::Ca(ca.clone()),
            (None, CaSource::Files { cert, key, bundle }) => Source::Files(CertFiles {
                cert: expand(cert, &id),
                key: expand(key, &id),
                bundle: expand(bundle, &id),
            }),
            (
                None,
                CaSource::Service {
                    address,
                    token_file,
                    bundle,
                },
            ) => {
                let server = SpiffeId::new(
                    &self.trust_domain,
                    crate::ca_serve::CA_SERVICE_NS,
                    crate::ca_serve::CA_SERVICE_SA,
                )?;
                let pem = std::fs::read(bundle).with_context(|| {
                    format!("reading the CA service bundle {}", bundle.display())
                })?;
                let min = match self.config.min_tls {
                    infermesh_config::TlsVersion::Tls12 => infermesh_identity::MinTls::V12,
                    infermesh_config::TlsVersion::Tls13 => infermesh_identity::MinTls::V13,
                };
                let remote =
                    RemoteCa::new(address.clone(), server, expand(token_file, &id), &pem, min)?;
                Source::Ca(Arc::new(remote))
            }
            (None, CaSource::Builtin { .. }) => anyhow::bail!("the built-in CA is not loaded"),
        };
        let rotation = Rotation {
            lifetime: self.config.cert_ttl,
            renew_fraction: self.config.renew_at,
        };
        let identity = WorkloadIdentity::start(id.clone(), source, rotation)
            .with_context(|| format!("workload certificate for {id}"))?;
        spawn_event_log(&identity);
        Ok(identity)
    }
}

/// `{namespace}` and `{service_account}` in a file path, for one process serving
/// several identities from files (`infermesh up` with `ca: files`).
fn expand(path: &Path, id: &SpiffeId) -> PathBuf {
    let text = path.to_string_lossy();
    if !text.contains('{') {
        return path.to_path_buf();
    }
    PathBuf::from(
        text.replace("{namespace}", id.namespace())
            .replace("{service_account}", id.service_account()),
    )
}

/// Logs identity events at debug (the audit trail subscribes the same way, with
/// [`WorkloadIdentity::subscribe`]).
fn spawn_event_log(identity: &Arc<WorkloadIdentity>) {
    let mut events = identity.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(IdentityEvent {
                    kind, spiffe_id, ..
                }) => tracing::debug!(?kind, %spiffe_id, "identity event"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
}

/// Makes `identities` observable: their certificates' expiry on `/metrics`
/// (`infermesh_certificate_expiration_timestamp_seconds{identity=...}`) and every
/// certificate event — issued, rotated, bundle changed (CA rotation), renewal failed,
/// expiring, expired — in the audit trail, when there is one.
pub fn observe(
    identities: &[Arc<WorkloadIdentity>],
    telemetry: &infermesh_telemetry::Telemetry,
    audit: Option<&infermesh_audit::AuditLog>,
) {
    let watched: Vec<Arc<WorkloadIdentity>> = identities.to_vec();
    telemetry.metrics.external_samples(
        "infermesh_certificate_expiration_timestamp_seconds",
        "When the workload certificate in use expires, in seconds since the Unix epoch",
        infermesh_telemetry::Kind::Gauge,
        move || {
            watched
                .iter()
                .filter_map(|i| {
                    let at = i.not_after()?.duration_since(std::time::UNIX_EPOCH).ok()?;
                    Some((vec![("identity", i.id().to_string())], at.as_secs() as f64))
                })
                .collect()
        },
    );
    let Some(log) = audit else {
        return;
    };
    for identity in identities {
        // The certificate in use now (its `issued` event came before this subscription).
        let _ = log.event(
            infermesh_audit::record::kind::CERTIFICATE,
            &serde_json::json!({
                "event": "in_use",
                "spiffe_id": identity.id().to_string(),
                "not_after": identity.not_after().map(unix_seconds),
            }),
        );
        let mut events = identity.subscribe();
        let log = log.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let _ = log.event(
                            infermesh_audit::record::kind::CERTIFICATE,
                            &serde_json::json!({
                                "event": format!("{:?}", e.kind).to_lowercase(),
                                "spiffe_id": e.spiffe_id,
                                "fingerprint": e.fingerprint,
                                "not_after": e.not_after.map(unix_seconds),
                                "detail": e.detail,
                            }),
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "audit: identity events were missed");
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A `/readyz` check: `identity`'s certificate is present and not expired.
pub fn ready_check(identity: &Arc<WorkloadIdentity>) -> infermesh_proxy::ReadyCheck {
    let watched = identity.clone();
    infermesh_proxy::ReadyCheck {
        name: format!("certificate {}", identity.id()),
        check: Arc::new(move || match watched.not_after() {
            Some(at) => match at.duration_since(std::time::SystemTime::now()) {
                Ok(left) => Ok(format!("expires in {}s", left.as_secs())),
                Err(_) => Err("expired".to_owned()),
            },
            None => Err("no certificate".to_owned()),
        }),
    }
}
