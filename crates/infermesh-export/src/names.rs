//! Naming conventions shared by both exports: service host names, subset names, the
//! pod labels, and durations in the form Kubernetes and Istio read.

use std::collections::BTreeSet;
use std::time::Duration;

use infermesh_config::{MeshConfig, Workload};

use crate::Options;

/// The pod label naming the workload (Deployment selector, Service selector).
pub(crate) const APP_LABEL: &str = "app";
/// The pod label carrying the model version a pod serves (Istio subsets).
pub(crate) const VERSION_LABEL: &str = "version";

/// `<workload>.<namespace>.svc.<cluster domain>`: the workload's Service.
pub fn service_host(workload: &Workload, options: &Options) -> String {
    format!(
        "{}.{}.svc.{}",
        workload.name, workload.namespace, options.cluster_domain
    )
}

/// The DestinationRule subset of a model version: `v<n>`.
pub fn subset_name(version: i64) -> String {
    format!("v{version}")
}

/// The namespaces holding workloads, sorted, each once.
pub(crate) fn workload_namespaces(config: &MeshConfig) -> BTreeSet<String> {
    config
        .workloads
        .values()
        .map(|w| w.namespace.clone())
        .collect()
}

/// A duration as Istio and protobuf JSON write it: seconds with up to 9 decimals
/// (`2s`, `0.5s`).
pub(crate) fn duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{}s", d.as_secs());
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
}

/// A policy name as a Kubernetes object name: imported Istio policies are named
/// `<namespace>/<name>`, and `/` is not allowed in object names.
pub(crate) fn object_name(name: &str) -> String {
    name.replace('/', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds() {
        assert_eq!(duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration(Duration::from_millis(500)), "0.5s");
        assert_eq!(duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(duration(Duration::from_nanos(1)), "0.000000001s");
    }

    #[test]
    fn object_names_have_no_slash() {
        assert_eq!(object_name("ml/allow-x"), "ml.allow-x");
    }
}
