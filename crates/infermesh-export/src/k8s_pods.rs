//! Pod templates of the Kubernetes export: the infermesh sidecar, TensorFlow Serving
//! (public image) and the gateway containers — and the ext_authz server's, which the
//! Istio export writes — with their volumes, probes, resources and the restricted
//! security context (non-root, read-only root file system, no capabilities). Also the
//! `infermesh-mesh` ConfigMap they mount, and the TF Serving `--model_config_file`
//! derived from the models.
//!
//! Volumes of a workload pod (the gateway and ext_authz pods have `mesh` and `state`):
//!
//! | volume | mounted at | from |
//! |---|---|---|
//! | `mesh` | `/etc/infermesh` | ConfigMap `infermesh-mesh` (`mesh.yaml`) |
//! | `tfserving-config` | `/etc/tfserving` | ConfigMap `<workload>-tfserving` (`models.config`) |
//! | `models` | `/models` (read-only) | PVC `<workload>-models`: `/models/<model>/<version>/` |
//! | `tmp`, `state` | `/tmp`, `/var/lib/infermesh` | emptyDir |

use infermesh_config::{Address, Model, Workload};
use serde_json::{Value, json};

use crate::{Options, object};

pub(crate) const MESH_CONFIGMAP: &str = "infermesh-mesh";
pub(crate) const MESH_PATH: &str = "/etc/infermesh/mesh.yaml";
const STATE_DIR: &str = "/var/lib/infermesh";
/// The non-root user every container runs as.
const UID: u32 = 65532;

/// The pod-level security context.
pub(crate) fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The `infermesh-mesh` ConfigMap of a namespace: the mesh.yaml text, verbatim, and
/// the files it names (`istio_files`) under keys of their own.
pub(crate) fn mesh_configmap(namespace: &str, options: &Options) -> Value {
    let mut cm = object("v1", "ConfigMap", MESH_CONFIGMAP, Some(namespace));
    let mut data = serde_json::Map::new();
    data.insert("mesh.yaml".into(), json!(options.config_text));
    for (i, (name, text)) in options.files.iter().enumerate() {
        data.insert(file_key(i, name), json!(text));
    }
    cm["data"] = Value::Object(data);
    cm
}

/// The ConfigMap key of the `i`th extra file: keys allow only `[-._a-zA-Z0-9]`, and
/// the index keeps `a/b.yaml` and `a_b.yaml` apart.
fn file_key(i: usize, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' => c,
            _ => '_',
        })
        .collect();
    format!("file-{i}-{safe}")
}

/// The volumes every infermesh pod has: `mesh` (the ConfigMap: mesh.yaml, and each
/// extra file at the path mesh.yaml names it by) and `state` (emptyDir).
pub(crate) fn mesh_volumes(options: &Options) -> Vec<Value> {
    let mut config_map = json!({"name": MESH_CONFIGMAP});
    if !options.files.is_empty() {
        let mut items = vec![json!({"key": "mesh.yaml", "path": "mesh.yaml"})];
        for (i, (name, _)) in options.files.iter().enumerate() {
            items.push(json!({"key": file_key(i, name), "path": name}));
        }
        config_map["items"] = Value::Array(items);
    }
    vec![
        json!({"name": "mesh", "configMap": config_map}),
        json!({"name": "state", "emptyDir": {}}),
    ]
}

/// Where an infermesh container mounts [`mesh_volumes`].
fn mesh_mounts() -> Value {
    json!([
        {"name": "mesh", "mountPath": "/etc/infermesh", "readOnly": true},
        {"name": "state", "mountPath": STATE_DIR},
    ])
}

fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn resources(cpu: (&str, &str), memory: (&str, &str)) -> Value {
    json!({
        "requests": {"cpu": cpu.0, "memory": memory.0},
        "limits": {"cpu": cpu.1, "memory": memory.1},
    })
}

fn port_of(a: &Address) -> u16 {
    match a {
        Address::Socket(s) => s.port(),
        Address::Host { port, .. } => *port,
    }
}

/// Whether the workload's model server runs in the pod: both upstreams on loopback.
pub(crate) fn model_server_in_pod(w: &Workload) -> bool {
    let local = |a: &Address| matches!(a, Address::Socket(s) if s.ip().is_loopback());
    local(&w.upstream.rest) && local(&w.upstream.grpc)
}

/// `infermesh sidecar --config /etc/infermesh/mesh.yaml --workload NAME`.
pub(crate) fn sidecar(w: &Workload, options: &Options) -> Value {
    let port = w.listen.port();
    json!({
        "name": "infermesh",
        "image": options.image,
        "command": ["infermesh"],
        "args": ["sidecar", "--config", MESH_PATH, "--workload", w.name],
        "workingDir": STATE_DIR,
        "ports": [{"name": "sidecar", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10},
        "resources": resources(("100m", "1"), ("64Mi", "256Mi")),
        "securityContext": container_security(),
        "volumeMounts": mesh_mounts(),
    })
}

/// TensorFlow Serving from its public image, on the workload's upstream ports.
pub(crate) fn tfserving(w: &Workload, models: &[&Model], options: &Options) -> Value {
    let (rest, grpc) = (port_of(&w.upstream.rest), port_of(&w.upstream.grpc));
    let readiness = match models.first() {
        // TF Serving answers 200 on a model's status once a version is available.
        Some(m) => json!({"httpGet": {"path": format!("/v1/models/{}", m.name), "port": rest}}),
        None => json!({"tcpSocket": {"port": rest}}),
    };
    json!({
        "name": "tfserving",
        "image": options.tfserving_image,
        "command": ["tensorflow_model_server"],
        "args": [
            format!("--port={grpc}"),
            format!("--rest_api_port={rest}"),
            "--model_config_file=/etc/tfserving/models.config",
            "--model_config_file_poll_wait_seconds=60",
        ],
        "ports": [
            {"name": "tfs-grpc", "containerPort": grpc, "protocol": "TCP"},
            {"name": "tfs-rest", "containerPort": rest, "protocol": "TCP"},
        ],
        "readinessProbe": readiness,
        "livenessProbe": {"tcpSocket": {"port": grpc}, "periodSeconds": 10},
        "resources": resources(("500m", "2"), ("1Gi", "4Gi")),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tfserving-config", "mountPath": "/etc/tfserving", "readOnly": true},
            {"name": "models", "mountPath": "/models", "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    })
}

/// The volumes of a workload pod (see the module table).
pub(crate) fn workload_volumes(w: &Workload, with_model_server: bool, options: &Options) -> Value {
    let mut volumes = mesh_volumes(options);
    if with_model_server {
        volumes.extend([
            json!({"name": "tfserving-config", "configMap": {"name": format!("{}-tfserving", w.name)}}),
            json!({"name": "models", "persistentVolumeClaim": {
                "claimName": format!("{}-models", w.name), "readOnly": true}}),
            json!({"name": "tmp", "emptyDir": {}}),
        ]);
    }
    Value::Array(volumes)
}

/// `infermesh gateway --config /etc/infermesh/mesh.yaml`.
pub(crate) fn gateway(ports: &[(String, u16)], admin: Option<u16>, options: &Options) -> Value {
    let container_ports: Vec<Value> = ports
        .iter()
        .map(|(name, port)| json!({"name": name, "containerPort": port, "protocol": "TCP"}))
        .collect();
    let mut c = json!({
        "name": "gateway",
        "image": options.image,
        "command": ["infermesh"],
        "args": ["gateway", "--config", MESH_PATH],
        "workingDir": STATE_DIR,
        "ports": container_ports,
        "resources": resources(("250m", "2"), ("128Mi", "512Mi")),
        "securityContext": container_security(),
        "volumeMounts": mesh_mounts(),
    });
    if let Some(admin) = admin {
        c["readinessProbe"] =
            json!({"httpGet": {"path": "/readyz", "port": admin}, "periodSeconds": 5});
        c["livenessProbe"] =
            json!({"httpGet": {"path": "/healthz", "port": admin}, "periodSeconds": 10});
    } else if let Some((_, port)) = ports.first() {
        c["readinessProbe"] = json!({"tcpSocket": {"port": port}, "periodSeconds": 5});
    }
    c
}

/// `infermesh ext-authz --config /etc/infermesh/mesh.yaml --listen 0.0.0.0:PORT`.
/// The server has no admin listener and no gRPC health service: the probes are TCP,
/// and the port is bound only once the mesh file has loaded.
pub(crate) fn ext_authz(port: u16, options: &Options) -> Value {
    json!({
        "name": "ext-authz",
        "image": options.image,
        "command": ["infermesh"],
        "args": ext_authz_args(port),
        "workingDir": STATE_DIR,
        "ports": [{"name": "grpc", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10},
        "resources": resources(("250m", "2"), ("128Mi", "512Mi")),
        "securityContext": container_security(),
        "volumeMounts": mesh_mounts(),
    })
}

/// The arguments of the ext_authz container (after the `infermesh` command).
pub(crate) fn ext_authz_args(port: u16) -> Vec<String> {
    let listen = format!("0.0.0.0:{port}");
    ["ext-authz", "--config", MESH_PATH, "--listen", &listen]
        .map(String::from)
        .to_vec()
}

/// TF Serving's `--model_config_file` (text protobuf) for the models of a workload:
/// each model under `/models/<name>`, its versions pinned, its labels declared.
pub(crate) fn models_config(models: &[&Model]) -> String {
    let mut out = String::from("model_config_list {\n");
    for m in models {
        out.push_str("  config {\n");
        out.push_str(&format!("    name: \"{}\"\n", m.name));
        out.push_str(&format!("    base_path: \"/models/{}\"\n", m.name));
        out.push_str("    model_platform: \"tensorflow\"\n");
        let versions: Vec<String> = m
            .versions
            .iter()
            .map(|v| format!("versions: {v}"))
            .collect();
        out.push_str(&format!(
            "    model_version_policy {{ specific {{ {} }} }}\n",
            versions.join(" ")
        ));
        for (label, v) in &m.labels {
            out.push_str(&format!(
                "    version_labels {{ key: \"{label}\" value: {v} }}\n"
            ));
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}
