//! Compiles one mesh intent ([`MeshConfig`]) into the resources of other
//! environments, so that the same `mesh.yaml` runs on a laptop, on Kubernetes and on
//! an existing Istio mesh:
//!
//! ```text
//! MeshConfig ──export_istio──▶ DestinationRule, VirtualService        (istio_routing)
//!            │                 RequestAuthentication, PeerAuthentication,
//!            │                 AuthorizationPolicy (+ CUSTOM → infermesh) (istio_security)
//!            │                 + when delegating, the ext_authz server: ServiceAccount,
//!            │                 ConfigMap, Deployment, Service, PDB     (istio_ext_authz)
//!            └─export_k8s────▶ Namespace, ServiceAccount, ConfigMap, Deployment,
//!                              Service, HPA, PDB, NetworkPolicy        (k8s, k8s_pods)
//! ```
//!
//! Every resource is a `serde_json::Value` (what the Kubernetes API speaks); [`Export`]
//! writes them as one multi-document YAML stream, with what the user must still do by
//! hand (and what could not be expressed) as `#` comments on top. Conventions (pod
//! labels, ports, volumes) are documented in `docs/istio.md` and `docs/kubernetes.md`.
#![forbid(unsafe_code)]

mod istio_ext_authz;
mod istio_routing;
mod istio_security;
mod k8s;
mod k8s_pods;
mod names;

use infermesh_config::MeshConfig;
use serde_json::Value;

pub use names::{service_host, subset_name};

/// Knobs of both exports; [`Options::default`] suits the quickstart.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cluster's DNS domain (`<svc>.<ns>.svc.<cluster_domain>`).
    pub cluster_domain: String,
    /// Istio: the `extensionProviders[].name` of the infermesh ext_authz server.
    pub ext_authz_provider: String,
    /// Istio: the ext_authz server's Service host; `None`: the Service the Istio
    /// export writes, `infermesh-ext-authz.<system_namespace>.svc.<cluster_domain>`
    /// (see [`Options::ext_authz_host`]). Another host means the server runs elsewhere,
    /// and the export does not write one.
    pub ext_authz_service: Option<String>,
    /// Istio: the ext_authz server's gRPC port (the provider's, the Service's and the
    /// server's `--listen` port).
    pub ext_authz_port: u16,
    /// The namespace of the gateway (Kubernetes) and of the ext_authz server (Istio).
    pub system_namespace: String,
    /// The infermesh image (built from the repository's `Dockerfile`) of the pods both
    /// exports write.
    pub image: String,
    /// Kubernetes: TensorFlow Serving's public image.
    pub tfserving_image: String,
    /// The mesh.yaml text, put verbatim into the `infermesh-mesh` ConfigMaps.
    pub config_text: String,
    /// The other files mesh.yaml reads (its `istio_files`): the name it gives each
    /// (relative to its directory, without `..`) and the text. They go into the same
    /// ConfigMaps and are mounted beside mesh.yaml under those names.
    pub files: Vec<(String, String)>,
    /// Kubernetes: gateway replicas (also the HPA minimum) and the HPA maximum.
    pub gateway_replicas: u32,
    pub gateway_max_replicas: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cluster_domain: "cluster.local".into(),
            ext_authz_provider: EXT_AUTHZ.into(),
            ext_authz_service: None,
            ext_authz_port: 9191,
            system_namespace: "infermesh".into(),
            image: "infermesh:0.1.0".into(),
            tfserving_image: "tensorflow/serving:2.18.0".into(),
            config_text: String::new(),
            files: Vec::new(),
            gateway_replicas: 2,
            gateway_max_replicas: 10,
        }
    }
}

impl Options {
    /// The host of the ext_authz provider: `ext_authz_service`, else the Service the
    /// Istio export writes.
    pub fn ext_authz_host(&self) -> String {
        self.ext_authz_service
            .clone()
            .unwrap_or_else(|| self.exported_ext_authz_host())
    }

    /// `infermesh-ext-authz.<system_namespace>.svc.<cluster_domain>`.
    pub(crate) fn exported_ext_authz_host(&self) -> String {
        format!(
            "{EXT_AUTHZ}.{}.svc.{}",
            self.system_namespace, self.cluster_domain
        )
    }
}

/// The name of the ext_authz server's Deployment, Service, ServiceAccount and PDB
/// (and the default provider name).
pub const EXT_AUTHZ: &str = "infermesh-ext-authz";

/// Exported resources, plus notes for the reader (written as `#` comments).
#[derive(Clone, Debug, Default)]
pub struct Export {
    pub documents: Vec<Value>,
    /// What the user must add by hand, and what the target cannot express.
    pub notes: Vec<String>,
}

/// A serialization failure of the YAML writer.
#[derive(Debug)]
pub struct YamlError(pub String);

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write YAML: {}", self.0)
    }
}

impl std::error::Error for YamlError {}

impl Export {
    /// One YAML stream: the notes as `#` comment lines, then every document, separated
    /// by `---`.
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        let mut out = String::new();
        for note in &self.notes {
            for line in note.lines() {
                out.push_str(if line.is_empty() { "#" } else { "# " });
                out.push_str(line);
                out.push('\n');
            }
        }
        let body = serde_saphyr::to_string_multiple(&self.documents)
            .map_err(|e| YamlError(e.to_string()))?;
        if !self.documents.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&body);
        Ok(out)
    }
}

/// Istio resources for the mesh's routing and security, for a cluster where Istio's
/// sidecars sit in front of TF Serving pods labelled `app: <workload>` and
/// `version: "<n>"` (see `docs/istio.md`); and, when model-aware policies are
/// delegated to the ext_authz provider, the Kubernetes objects that run that server.
pub fn export_istio(config: &MeshConfig, options: &Options) -> Export {
    let mut export = Export::default();
    istio_routing::export(config, options, &mut export);
    istio_security::export(config, options, &mut export);
    if istio_security::delegates(config) {
        istio_ext_authz::export(options, &mut export);
    }
    export
}

/// Kubernetes manifests that run the mesh itself: a sidecar next to each TF Serving
/// pod, the gateway, and what they need (see `docs/kubernetes.md`).
pub fn export_k8s(config: &MeshConfig, options: &Options) -> Export {
    let mut export = Export::default();
    k8s::export(config, options, &mut export);
    export
}

/// `apiVersion`, `kind` and `metadata` of a resource; `namespace` when namespaced.
pub(crate) fn object(api_version: &str, kind: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut metadata = serde_json::json!({
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "infermesh"},
    });
    if let Some(ns) = namespace {
        metadata["namespace"] = Value::from(ns);
    }
    serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": metadata})
}
