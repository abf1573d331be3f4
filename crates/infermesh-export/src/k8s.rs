//! Kubernetes manifests that run the mesh: namespaces, service accounts, the mesh.yaml
//! ConfigMap (one per namespace: a pod mounts ConfigMaps of its own namespace), and
//!
//! * per workload: a Deployment (TF Serving + the infermesh sidecar in one pod), a
//!   headless Service for the sidecar port (the gateway resolves it to every pod), a
//!   NetworkPolicy letting only the sidecar port be reached, and the TF Serving
//!   model config ConfigMap;
//! * the gateway: a Deployment (stateless, 2 replicas), a Service, a
//!   HorizontalPodAutoscaler (CPU) and a PodDisruptionBudget.
//!
//! Kubernetes is the distributed engine: replicas, scheduling and DNS are its; the
//! gateways share nothing and scale out.

use std::collections::BTreeSet;

use infermesh_config::{Address, MeshConfig, Model, Workload};
use serde_json::{Value, json};

use crate::k8s_pods;
use crate::names::{APP_LABEL, workload_namespaces};
use crate::{Export, Options, object};

const GATEWAY: &str = "infermesh-gateway";

pub(crate) fn export(config: &MeshConfig, options: &Options, export: &mut Export) {
    let sys = options.system_namespace.as_str();
    let mut namespaces = workload_namespaces(config);
    namespaces.insert(sys.to_owned());
    for ns in &namespaces {
        export.documents.push(object("v1", "Namespace", ns, None));
    }
    let mut accounts: BTreeSet<(String, String)> = config
        .workloads
        .values()
        .filter(|w| w.service_account != "default")
        .map(|w| (w.namespace.clone(), w.service_account.clone()))
        .collect();
    accounts.insert((sys.to_owned(), GATEWAY.to_owned()));
    for (ns, sa) in &accounts {
        export
            .documents
            .push(object("v1", "ServiceAccount", sa, Some(ns)));
    }
    for ns in &namespaces {
        export.documents.push(k8s_pods::mesh_configmap(ns, options));
    }
    for w in config.workloads.values() {
        let models: Vec<&Model> = config
            .models
            .values()
            .filter(|m| m.served_by == w.name)
            .map(|m| m.as_ref())
            .collect();
        workload(w, &models, options, export);
    }
    gateway(config, options, export);
}

fn labels(name: &str) -> Value {
    json!({APP_LABEL: name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "infermesh"})
}

fn workload(w: &Workload, models: &[&Model], options: &Options, export: &mut Export) {
    let ns = Some(w.namespace.as_str());
    let in_pod = k8s_pods::model_server_in_pod(w);
    if w.listen.ip().is_loopback() {
        export.notes.push(format!(
            "workload {}: the sidecar listens on {}, which other pods cannot reach; listen on \
             0.0.0.0:{} in the cluster's mesh.yaml.",
            w.name,
            w.listen,
            w.listen.port()
        ));
    }
    if w.endpoints
        .iter()
        .any(|e| matches!(e, Address::Socket(s) if s.ip().is_loopback()))
    {
        export.notes.push(format!(
            "workload {}: set `endpoints: [{}.{}.svc.{}:{}]` (the headless Service) so that \
             gateways find every pod.",
            w.name,
            w.name,
            w.namespace,
            options.cluster_domain,
            w.listen.port()
        ));
    }
    let mut containers = vec![k8s_pods::sidecar(w, options)];
    if in_pod {
        containers.push(k8s_pods::tfserving(w, models, options));
        let mut cm = object("v1", "ConfigMap", &format!("{}-tfserving", w.name), ns);
        cm["data"] = json!({"models.config": k8s_pods::models_config(models)});
        export.documents.push(cm);
    } else {
        export.notes.push(format!(
            "workload {}: its model server is not on loopback, so the pod runs the sidecar \
             only, forwarding to the upstream addresses of mesh.yaml.",
            w.name
        ));
    }
    let mut deploy = object("apps/v1", "Deployment", &w.name, ns);
    deploy["spec"] = json!({
        "replicas": 1,
        "selector": {"matchLabels": {APP_LABEL: w.name}},
        "template": {
            "metadata": {"labels": labels(&w.name)},
            "spec": {
                "serviceAccountName": w.service_account,
                "automountServiceAccountToken": false,
                "securityContext": k8s_pods::pod_security(),
                "containers": containers,
                "volumes": k8s_pods::workload_volumes(w, in_pod, options),
            },
        },
    });
    export.documents.push(deploy);
    let port = w.listen.port();
    let mut svc = object("v1", "Service", &w.name, ns);
    svc["spec"] = json!({
        "clusterIP": "None",
        "selector": {APP_LABEL: w.name},
        "ports": [{"name": "sidecar", "port": port, "targetPort": port, "protocol": "TCP"}],
    });
    export.documents.push(svc);
    let mut np = object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        &format!("{}-sidecar-only", w.name),
        ns,
    );
    np["spec"] = json!({
        "podSelector": {"matchLabels": {APP_LABEL: w.name}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"port": port, "protocol": "TCP"}]}],
    });
    export.documents.push(np);
}

/// Port names: TF Serving's 8500 is `grpc`, 8501 `http`; both speak both here.
fn port_name(port: u16) -> String {
    match port {
        8500 => "grpc".into(),
        8501 => "http".into(),
        p => format!("tcp-{p}"),
    }
}

fn gateway(config: &MeshConfig, options: &Options, export: &mut Export) {
    let ns = Some(options.system_namespace.as_str());
    let gw = &config.gateway;
    if gw.listen.is_empty() {
        export
            .notes
            .push("the mesh has no gateway listeners: no gateway is exported.".into());
        return;
    }
    if gw
        .listen
        .iter()
        .chain(&gw.admin)
        .any(|a| a.ip().is_loopback())
    {
        export.notes.push(
            "gateway: listeners on loopback cannot be reached through the Service; listen on \
             0.0.0.0 in the cluster's mesh.yaml."
                .into(),
        );
    }
    let ports: Vec<(String, u16)> = gw
        .listen
        .iter()
        .map(|a| (port_name(a.port()), a.port()))
        .collect();
    let admin = gw.admin.map(|a| a.port());
    let mut all_ports = ports.clone();
    all_ports.extend(admin.map(|p| ("admin".to_owned(), p)));
    let container = k8s_pods::gateway(&all_ports, admin, options);
    export.documents.push(infermesh_deployment(
        GATEWAY,
        options,
        options.gateway_replicas,
        container,
    ));
    let svc_ports: Vec<Value> = all_ports
        .iter()
        .map(|(name, p)| json!({"name": name, "port": p, "targetPort": p, "protocol": "TCP"}))
        .collect();
    let mut svc = object("v1", "Service", GATEWAY, ns);
    svc["spec"] = json!({"selector": {APP_LABEL: GATEWAY}, "ports": svc_ports});
    export.documents.push(svc);
    let mut hpa = object("autoscaling/v2", "HorizontalPodAutoscaler", GATEWAY, ns);
    hpa["spec"] = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY},
        "minReplicas": options.gateway_replicas,
        "maxReplicas": options.gateway_max_replicas.max(options.gateway_replicas),
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
    });
    export.documents.push(hpa);
    export
        .documents
        .push(disruption_budget(GATEWAY, &options.system_namespace));
}

/// A Deployment `name` in the system namespace running one infermesh `container`
/// (stateless: the mesh ConfigMap and an emptyDir), as the ServiceAccount `name`.
pub(crate) fn infermesh_deployment(
    name: &str,
    options: &Options,
    replicas: u32,
    container: Value,
) -> Value {
    let mut deploy = object(
        "apps/v1",
        "Deployment",
        name,
        Some(&options.system_namespace),
    );
    deploy["spec"] = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {APP_LABEL: name}},
        "template": {
            "metadata": {"labels": labels(name)},
            "spec": {
                "serviceAccountName": name,
                "automountServiceAccountToken": false,
                "securityContext": k8s_pods::pod_security(),
                "containers": [container],
                "volumes": k8s_pods::mesh_volumes(options),
            },
        },
    });
    deploy
}

/// `minAvailable: 1` for the pods labelled `app: <name>`.
pub(crate) fn disruption_budget(name: &str, namespace: &str) -> Value {
    let mut pdb = object("policy/v1", "PodDisruptionBudget", name, Some(namespace));
    pdb["spec"] = json!({"minAvailable": 1, "selector": {"matchLabels": {APP_LABEL: name}}});
    pdb
}
