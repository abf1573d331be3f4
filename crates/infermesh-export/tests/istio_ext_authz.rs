//! The ext_authz server the Istio export writes when it delegates model-aware
//! policies: its objects (kinds, names, namespace), the Deployment's command line,
//! the Service port = the provider port of the meshConfig comment = the server's
//! `--listen` port, the ConfigMap holding the mesh text; none when nothing is
//! delegated or the provider points elsewhere. That the args parse with the real CLI
//! is checked in `crates/infermesh` (`export::tests`).

mod common;

use std::path::Path;

use infermesh_export::{Export, Options, export_istio};
use serde_json::{Value, json};

fn quickstart() -> (infermesh_config::MeshConfig, String) {
    let path = common::repo().join("examples/quickstart/mesh.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    (infermesh_config::parse(&text, &path).expect("valid"), text)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn core(export: &Export) -> Vec<(String, String, String)> {
    export
        .documents
        .iter()
        .filter(|d| !common::is_istio(d))
        .map(|d| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let m = &d["metadata"];
            (s(&d["kind"]), s(&m["namespace"]), s(&m["name"]))
        })
        .collect()
}

/// The `envoyExtAuthzGrpc` entry of the meshConfig note (the YAML after its intro).
fn provider(export: &Export) -> Value {
    let note = export
        .notes
        .iter()
        .find(|n| n.contains("envoyExtAuthzGrpc"))
        .expect("meshConfig note");
    let (_, yaml) = note.split_once("\n\n").unwrap();
    let snippet: Value = serde_saphyr::from_str(yaml).unwrap();
    snippet["meshConfig"]["extensionProviders"][0].clone()
}

#[test]
fn a_delegating_export_runs_the_ext_authz_server() {
    let (config, text) = quickstart();
    let options = Options {
        config_text: text.clone(),
        image: "registry.example/infermesh:1.2.3".into(),
        ..Options::default()
    };
    let export = export_istio(&config, &options);
    let sys = |kind: &str, name: &str| (kind.to_owned(), "infermesh".into(), name.to_owned());
    assert_eq!(
        core(&export),
        [
            ("Namespace".into(), String::new(), "infermesh".into()),
            sys("ServiceAccount", "infermesh-ext-authz"),
            sys("ConfigMap", "infermesh-mesh"),
            sys("Deployment", "infermesh-ext-authz"),
            sys("Service", "infermesh-ext-authz"),
            sys("PodDisruptionBudget", "infermesh-ext-authz"),
        ]
    );
    let docs = &export.documents;
    let cm = find(docs, "ConfigMap", "infermesh-mesh");
    assert_eq!(cm["data"]["mesh.yaml"], text.as_str());

    let deploy = find(docs, "Deployment", "infermesh-ext-authz");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["app"], "infermesh-ext-authz");
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"]["app"],
        "infermesh-ext-authz"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "infermesh-ext-authz");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let volumes = json!([
        {"name": "mesh", "configMap": {"name": "infermesh-mesh"}},
        {"name": "state", "emptyDir": {}},
    ]);
    assert_eq!(spec["volumes"], volumes);
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "registry.example/infermesh:1.2.3");
    assert_eq!(c["command"], json!(["infermesh"]));
    assert_eq!(
        c["args"],
        json!([
            "ext-authz",
            "--config",
            "/etc/infermesh/mesh.yaml",
            "--listen",
            "0.0.0.0:9191"
        ])
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/infermesh");
    assert_eq!(
        c["ports"],
        json!([{"name": "grpc", "containerPort": 9191, "protocol": "TCP"}])
    );
    // No admin listener and no gRPC health service: TCP probes on the gRPC port.
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], 9191);
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], 9191);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    let svc = find(docs, "Service", "infermesh-ext-authz");
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "infermesh-ext-authz"})
    );
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["name"], "grpc");
    assert_eq!(port["appProtocol"], "grpc");
    assert_eq!(port["targetPort"], "grpc");
    // The provider Istio calls is this Service, on this port.
    let grpc = &provider(&export)["envoyExtAuthzGrpc"];
    assert_eq!(
        grpc["service"],
        "infermesh-ext-authz.infermesh.svc.cluster.local"
    );
    assert_eq!(grpc["port"], port["port"]);
    let pdb = find(docs, "PodDisruptionBudget", "infermesh-ext-authz");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app"],
        "infermesh-ext-authz"
    );
    assert!(export.notes.iter().any(|n| n.contains("fail closed")));
}

#[test]
fn namespace_port_and_domain_flags_agree_everywhere() {
    let (config, _) = quickstart();
    let options = Options {
        system_namespace: "mesh-system".into(),
        ext_authz_port: 9292,
        cluster_domain: "corp.internal".into(),
        ..Options::default()
    };
    let export = export_istio(&config, &options);
    let grpc = &provider(&export)["envoyExtAuthzGrpc"];
    assert_eq!(
        grpc["service"],
        "infermesh-ext-authz.mesh-system.svc.corp.internal"
    );
    assert_eq!(grpc["port"], 9292);
    let svc = find(&export.documents, "Service", "infermesh-ext-authz");
    assert_eq!(svc["metadata"]["namespace"], "mesh-system");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9292);
    let deploy = find(&export.documents, "Deployment", "infermesh-ext-authz");
    assert_eq!(deploy["metadata"]["namespace"], "mesh-system");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][4], "0.0.0.0:9292");
    assert_eq!(c["ports"][0]["containerPort"], 9292);
    for (kind, ns, _) in core(&export) {
        if kind != "Namespace" {
            assert_eq!(ns, "mesh-system", "{kind}");
        }
    }
    find(&export.documents, "Namespace", "mesh-system");
}

#[test]
fn no_server_without_delegation_or_for_a_provider_elsewhere() {
    let native = r#"
workloads:
  - {name: tfs, namespace: ml, listen: 127.0.0.1:15006,
     upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - {name: m, served_by: tfs, versions: [1]}
policies:
  - name: ops-only
    action: ALLOW
    rules: [{from: [{namespaces: [ops]}]}]
"#;
    let config = infermesh_config::parse(native, Path::new("native.yaml")).unwrap();
    let export = export_istio(&config, &Options::default());
    assert_eq!(core(&export), []);
    assert!(
        !export
            .documents
            .iter()
            .any(|d| d["spec"]["action"] == "CUSTOM")
    );

    let (config, _) = quickstart();
    let options = Options {
        ext_authz_service: Some("authz.security.svc.cluster.local".into()),
        ..Options::default()
    };
    let export = export_istio(&config, &options);
    assert_eq!(core(&export), []);
    let grpc = &provider(&export)["envoyExtAuthzGrpc"];
    assert_eq!(grpc["service"], "authz.security.svc.cluster.local");
    let notes = export.notes.join("\n");
    assert!(notes.contains("no ext_authz server is exported"), "{notes}");
}

#[test]
fn the_exported_host_given_explicitly_still_gets_the_server() {
    let (config, _) = quickstart();
    let options = Options {
        ext_authz_service: Some("infermesh-ext-authz.infermesh.svc.cluster.local".into()),
        ..Options::default()
    };
    let export = export_istio(&config, &options);
    find(&export.documents, "Deployment", "infermesh-ext-authz");
}
