//! Label values derived from the config — each workload's SPIFFE ID and service name,
//! and which workload a peer principal belongs to — computed once per config value,
//! so recording a request formats no strings.

use std::sync::Arc;

use arc_swap::ArcSwap;
use infermesh_config::MeshConfig;

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

/// What one workload is called in metrics.
#[derive(Debug)]
pub struct WorkloadNames {
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
