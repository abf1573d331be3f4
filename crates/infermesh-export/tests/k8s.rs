//! The Kubernetes export: the structure of the manifests (kinds, names, ports, the
//! sidecar's command line, security context). Schema validation of core kinds is left
//! to `tests/interop/k8s/validate.sh` (kubernetes-validate).

use std::path::Path;

use infermesh_export::{Options, export_k8s};
use serde_json::{Value, json};

fn cluster_mesh() -> (infermesh_config::MeshConfig, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes/mesh.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    (infermesh_config::parse(&text, &path).expect("valid"), text)
}

fn find<'a>(docs: &'a [Value], kind: &str, ns: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && (ns.is_empty() || d["metadata"]["namespace"] == ns)
        })
        .unwrap_or_else(|| panic!("no {kind} {ns}/{name}"))
}

#[test]
fn manifests_run_tfserving_with_a_sidecar_and_a_gateway() {
    let (config, text) = cluster_mesh();
    let options = Options {
        config_text: text.clone(),
        ..Options::default()
    };
    let export = export_k8s(&config, &options);
    let docs = &export.documents;
    assert!(export.notes.is_empty(), "{:#?}", export.notes);
    find(docs, "Namespace", "", "ml");
    find(docs, "Namespace", "", "infermesh");
    find(docs, "ServiceAccount", "ml", "tfserving");
    find(docs, "ServiceAccount", "infermesh", "infermesh-gateway");
    for ns in ["ml", "infermesh"] {
        let cm = find(docs, "ConfigMap", ns, "infermesh-mesh");
        assert_eq!(cm["data"]["mesh.yaml"], text.as_str());
    }
    let models = find(docs, "ConfigMap", "ml", "tfserving-a-tfserving");
    let models = models["data"]["models.config"].as_str().unwrap();
    assert!(models.contains("name: \"half_plus_two\""), "{models}");
    assert!(
        models.contains("version_labels { key: \"canary\" value: 2 }"),
        "{models}"
    );

    let deploy = find(docs, "Deployment", "ml", "tfserving-a");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tfserving");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    let sidecar = &containers[0];
    assert_eq!(sidecar["command"], json!(["infermesh"]));
    assert_eq!(
        sidecar["args"],
        json!([
            "sidecar",
            "--config",
            "/etc/infermesh/mesh.yaml",
            "--workload",
            "tfserving-a"
        ])
    );
    assert_eq!(sidecar["ports"][0]["containerPort"], 15006);
    let tfs = &containers[1];
    assert!(
        tfs["image"]
            .as_str()
            .unwrap()
            .starts_with("tensorflow/serving:")
    );
    assert_eq!(tfs["args"][0], "--port=9500");
    assert_eq!(tfs["args"][1], "--rest_api_port=9501");
    for c in containers {
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
    }
    let svc = find(docs, "Service", "ml", "tfserving-a");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["ports"][0]["port"], 15006);
    let np = find(docs, "NetworkPolicy", "ml", "tfserving-a-sidecar-only");
    assert_eq!(
        np["spec"]["ingress"],
        json!([{"ports": [{"port": 15006, "protocol": "TCP"}]}])
    );

    let gw = find(docs, "Deployment", "infermesh", "infermesh-gateway");
    assert_eq!(gw["spec"]["replicas"], 2);
    let c = &gw["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["args"],
        json!(["gateway", "--config", "/etc/infermesh/mesh.yaml"])
    );
    let svc = find(docs, "Service", "infermesh", "infermesh-gateway");
    let ports: Vec<u64> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [8500, 8501, 15020]);
    let hpa = find(
        docs,
        "HorizontalPodAutoscaler",
        "infermesh",
        "infermesh-gateway",
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    find(
        docs,
        "PodDisruptionBudget",
        "infermesh",
        "infermesh-gateway",
    );
}

#[test]
fn the_laptop_quickstart_gets_notes_about_loopback() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/mesh.yaml");
    let config = infermesh_config::load(&path).unwrap();
    let export = export_k8s(&config, &Options::default());
    let notes = export.notes.join("\n");
    assert!(notes.contains("0.0.0.0:15006"), "{notes}");
    assert!(
        notes.contains("tfserving-a.ml.svc.cluster.local:15006"),
        "{notes}"
    );
    assert!(notes.contains("gateway: listeners on loopback"), "{notes}");
}
