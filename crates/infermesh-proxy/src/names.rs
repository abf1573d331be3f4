//! Label values derived from the config — each workload's SPIFFE ID and service name,
//! and which workload a peer principal belongs to — computed once per config value,
//! so recording a request formats no strings, and the identity the gateway requires
//! of each workload's sidecars, so forwarding builds none.

use std::sync::Arc;

use arc_swap::ArcSwap;
use infermesh_config::MeshConfig;
use infermesh_identity::SpiffeId;

use crate::FastMap;

/// The names of one config value.
#[derive(Debug)]
pub struct Names {
    config: Arc<MeshConfig>,
    /// Workload name → its names.
    pub workloads: FastMap<String, WorkloadNames>,
    /// Istio principal (`<td>/ns/<ns>/sa/<sa>`) → workload name.
    pub by_principal: FastMap<String, String>,
    /// The gateway's names (its identity: `identity.gateway`, or the defaults).
    pub gateway: GatewayNames,
}

/// What the gateway is called in metrics.
#[derive(Debug)]
pub struct GatewayNames {
    pub namespace: String,
    /// Istio form, as a sidecar sees its mTLS peer.
    pub principal: String,
    pub spiffe: String,
}

/// What one workload is called in metrics, and the identity its sidecars prove.
#[derive(Debug)]
pub struct WorkloadNames {
    /// The SPIFFE ID the gateway requires of its sidecars over mTLS, made once per
    /// config (not per request); `None` if the config's names make no valid one.
    pub id: Option<Arc<SpiffeId>>,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub spiffe: String,
    /// `<name>.<namespace>.svc.cluster.local`.
    pub service: String,
}

impl Names {
    fn of(config: Arc<MeshConfig>) -> Names {
        let td = &config.trust_domain;
        let mut workloads = FastMap::default();
        let mut by_principal = FastMap::default();
        let identity = config.identity.clone().unwrap_or_default();
        let principal = format!(
            "{td}/ns/{}/sa/{}",
            identity.gateway_namespace, identity.gateway_service_account
        );
        let gateway = GatewayNames {
            namespace: identity.gateway_namespace.clone(),
            spiffe: format!("spiffe://{principal}"),
            principal,
        };
        for w in config.workloads.values() {
            let principal = format!("{td}/ns/{}/sa/{}", w.namespace, w.service_account);
            workloads.insert(
                w.name.clone(),
                WorkloadNames {
                    id: SpiffeId::new(td, &w.namespace, &w.service_account)
                        .ok()
                        .map(Arc::new),
                    spiffe: format!("spiffe://{principal}"),
                    service: format!("{}.{}.svc.cluster.local", w.name, w.namespace),
                },
            );
            by_principal
                .entry(principal)
                .or_insert_with(|| w.name.clone());
        }
        Names {
            config,
            workloads,
            by_principal,
            gateway,
        }
    }
}

/// The [`Names`] of the config value in use, rebuilt when it changes.
#[derive(Debug)]
pub struct NameCache(ArcSwap<Names>);

impl NameCache {
    pub fn new(config: Arc<MeshConfig>) -> NameCache {
        NameCache(ArcSwap::from_pointee(Names::of(config)))
    }

    pub fn get(&self, config: &Arc<MeshConfig>) -> Arc<Names> {
        let current = self.0.load_full();
        if Arc::ptr_eq(&current.config, config) {
            return current;
        }
        let names = Arc::new(Names::of(config.clone()));
        self.0.store(names.clone());
        names
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use infermesh_config::MtlsMode;

    use super::NameCache;
    use crate::mtls::{expected_upstream, workload_id};

    /// The identity the gateway requires of a workload's sidecars comes from the
    /// names made once per config: the same SPIFFE ID `workload_id` builds, none
    /// when mTLS is off at the gateway or disabled for the workload.
    #[test]
    fn the_expected_upstream_identity_is_the_workloads_spiffe_id() {
        let mut config = crate::tests::mesh(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let config_arc = Arc::new(config.clone());
        let names = NameCache::new(config_arc.clone()).get(&config_arc);
        assert!(!config.workloads.is_empty());
        for w in config.workloads.values() {
            let want = workload_id(&config, w).unwrap();
            let got = expected_upstream(&names, w, true).expect("an identity");
            assert_eq!(*got, want);
            assert_eq!(got.to_string(), names.workloads[&w.name].spiffe);
            assert!(expected_upstream(&names, w, false).is_none());
        }
        for w in config.workloads.values_mut() {
            Arc::make_mut(w).mtls = MtlsMode::Disable;
        }
        let disabled = Arc::new(config);
        let names = NameCache::new(disabled.clone()).get(&disabled);
        for w in disabled.workloads.values() {
            assert!(expected_upstream(&names, w, true).is_none());
        }
    }
}
