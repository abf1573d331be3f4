//! What runs the ext_authz provider the Istio export delegates model-aware decisions
//! to: `infermesh ext-authz` in the system namespace (`--namespace`), as
//!
//! * `Namespace` (unless the export already has it), `ServiceAccount`
//!   `infermesh-ext-authz`, the `infermesh-mesh` ConfigMap (the mesh.yaml text, as the
//!   Kubernetes export writes it);
//! * `Deployment` `infermesh-ext-authz`: 2 replicas listening on `0.0.0.0:<port>`,
//!   TCP probes, the Kubernetes export's security context and resources;
//! * `Service` `infermesh-ext-authz`: port `grpc` (appProtocol `grpc`) = the
//!   provider's port; `PodDisruptionBudget` `minAvailable: 1`.
//!
//! Written only when the export delegates (a CUSTOM policy exists) and the provider
//! points at this Service: with `--ext-authz-service` naming another host, the server
//! runs elsewhere and only a note says so.

use serde_json::json;

use crate::k8s::{disruption_budget, infermesh_deployment};
use crate::k8s_pods;
use crate::names::APP_LABEL;
use crate::{EXT_AUTHZ, Export, Options, object};

const REPLICAS: u32 = 2;

pub(crate) fn export(options: &Options, export: &mut Export) {
    let host = options.ext_authz_host();
    let exported = options.exported_ext_authz_host();
    if host != exported {
        export.notes.push(format!(
            "The ext_authz provider points at {host} (--ext-authz-service), not at \
             {exported}: no ext_authz server is exported; run `infermesh ext-authz` \
             there, or every request the CUSTOM policy covers is denied."
        ));
        return;
    }
    let ns = options.system_namespace.as_str();
    let port = options.ext_authz_port;
    export.notes.push(format!(
        "The ext_authz server is the Deployment {EXT_AUTHZ} in namespace {ns} (image {}, \
         --image). Istio denies every request the CUSTOM policy covers while no replica \
         answers (fail closed): apply it, and have the image pullable, before the policies.",
        options.image
    ));
    let has_namespace = export
        .documents
        .iter()
        .any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == ns);
    if !has_namespace {
        export.documents.push(object("v1", "Namespace", ns, None));
    }
    let docs = &mut export.documents;
    docs.push(object("v1", "ServiceAccount", EXT_AUTHZ, Some(ns)));
    docs.push(k8s_pods::mesh_configmap(ns, options));
    let container = k8s_pods::ext_authz(port, options);
    docs.push(infermesh_deployment(
        EXT_AUTHZ, options, REPLICAS, container,
    ));
    let mut svc = object("v1", "Service", EXT_AUTHZ, Some(ns));
    svc["spec"] = json!({
        "selector": {APP_LABEL: EXT_AUTHZ},
        "ports": [{
            "name": "grpc",
            "port": port,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }],
    });
    docs.push(svc);
    docs.push(disruption_budget(EXT_AUTHZ, ns));
}
