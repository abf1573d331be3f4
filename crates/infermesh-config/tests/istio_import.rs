//! Istio routing and peer authentication written by hand (not by `infermesh export
//! istio`), listed under `istio_files:`: what each maps to, and the errors for what
//! infermesh cannot honour.

use std::path::PathBuf;
use std::time::Duration;

use infermesh_config::{MeshConfig, Mirror, MtlsMode, RetryPolicy};

const MESH: &str = r#"
workloads:
  - {name: tfs, namespace: ml, listen: 127.0.0.1:15006,
     upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
  - {name: legacy, namespace: ml, listen: 127.0.0.1:15007,
     upstream: {rest: 127.0.0.1:9601, grpc: 127.0.0.1:9600}}
  - {name: other, namespace: team-b, listen: 127.0.0.1:15008,
     upstream: {rest: 127.0.0.1:9701, grpc: 127.0.0.1:9700}}
models:
  - name: half_plus_two
    served_by: tfs
    versions: [{version: 1, label: stable}, {version: 2, label: canary}]
  - name: resnet
    served_by: tfs
    versions: [1, {version: 2, label: canary}]
    route: {sticky: {header: x-user}}
  - {name: bert, served_by: other, versions: [1]}
istio_files: [istio.yaml]
"#;

const ISTIO: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: tfs, namespace: ml}
spec:
  host: tfs
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 500ms}}
  subsets:
    - {name: stable, labels: {version: v1}}
    - {name: canary, labels: {version: "2"}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: tfs, namespace: ml}
spec:
  hosts: [tfs.ml.svc.cluster.local]
  http:
    - match: [{headers: {x-canary: {exact: canary}}}]
      route: [{destination: {host: tfs, subset: canary}}]
    - match: [{uri: {prefix: /v1/models/half_plus_two/versions/1}}]
      route: [{destination: {host: tfs, subset: stable}}]
    - route:
        - {destination: {host: tfs.ml, subset: stable, port: {number: 8501}}, weight: 75}
        - {destination: {host: tfs.ml, subset: canary}, weight: 25}
      mirror: {host: tfs, subset: canary}
      mirrorPercentage: {value: 10}
      timeout: 3s
      retries: {attempts: 4, retryOn: "connect-failure,503"}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: ml}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy, namespace: ml}
spec:
  selector: {matchLabels: {app: legacy}}
  mtls: {mode: DISABLE}
"#;

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infermesh-istio-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `mesh` with `istio` as its `istio.yaml`; errors with the directory removed.
fn load(name: &str, mesh: &str, istio: &str) -> Result<MeshConfig, String> {
    let dir = dir(name);
    std::fs::write(dir.join("istio.yaml"), istio).unwrap();
    std::fs::write(dir.join("mesh.yaml"), mesh).unwrap();
    let result = infermesh_config::load(&dir.join("mesh.yaml"))
        .map_err(|e| e.to_string().replace(&format!("{}/", dir.display()), ""));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[test]
fn hand_written_routing_and_peer_authentication_map_onto_the_mesh() {
    let c = load("good", MESH, ISTIO).unwrap_or_else(|e| panic!("{e}"));
    let route = &c.models["half_plus_two"].route;
    assert_eq!(route.split, [(1, 75), (2, 25)]);
    assert_eq!(
        route.pin_header.as_ref().map(|h| h.as_str()),
        Some("x-canary")
    );
    assert_eq!(
        route.mirror,
        Some(Mirror {
            version: 2,
            percent: 10.0
        })
    );
    assert_eq!(route.timeout, Duration::from_secs(3));
    assert_eq!(
        route.retries,
        RetryPolicy {
            attempts: 4,
            on_connect_failure: true,
            on_unavailable: true,
            idempotent: true,
            ..RetryPolicy::default()
        }
    );
    // A route without a model-specific match routes every model of the host; the
    // mesh's `sticky` joins it.
    let resnet = &c.models["resnet"].route;
    assert_eq!(resnet.split, route.split);
    assert_eq!(resnet.pin_header, route.pin_header);
    assert_eq!(
        resnet.sticky_header.as_ref().map(|h| h.as_str()),
        Some("x-user")
    );
    // A model no VirtualService routes keeps mesh.yaml's default route.
    assert_eq!(c.models["bert"].route.split, [(1, 100)]);
    assert_eq!(c.limits.connect_timeout, Duration::from_millis(500));
    // Workload selector > namespace > mesh-wide (istio-system).
    assert_eq!(c.workloads["tfs"].mtls, MtlsMode::Strict);
    assert_eq!(c.workloads["legacy"].mtls, MtlsMode::Disable);
    assert_eq!(c.workloads["other"].mtls, MtlsMode::Permissive);
}

#[test]
fn a_route_given_in_mesh_yaml_and_by_a_virtual_service_is_an_error() {
    let mesh = MESH.replace(
        "    route: {sticky: {header: x-user}}",
        "    route: {timeout: 1s}",
    );
    let e = load("twice", &mesh, ISTIO).unwrap_err();
    assert!(
        e.contains(
            "istio.yaml:17:3: VirtualService ml/tfs: routes model resnet, whose route \
             mesh.yaml:16 gives too: give it in one place"
        ),
        "{e}"
    );
    let mesh = MESH.replace(
        "listen: 127.0.0.1:15007,",
        "listen: 127.0.0.1:15007, mtls: STRICT,",
    );
    let e = load("mtls", &mesh, ISTIO).unwrap_err();
    assert!(
        e.contains("sets the mtls mode of workload legacy, which mesh.yaml:5"),
        "{e}"
    );
}

#[test]
fn wrong_versions_and_headers_are_errors() {
    let istio = ISTIO
        .replace("{version: \"2\"}", "{version: \"9\"}")
        .replace("{exact: canary}", "{exact: stable}");
    let e = load("wrong", MESH, &istio).unwrap_err();
    assert!(
        e.contains("subset canary: label version \"9\" is not a version of a model"),
        "{e}"
    );
    assert!(
        e.contains("no DestinationRule subset canary for workload tfs"),
        "{e}"
    );
}

const UNSUPPORTED: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tfs, namespace: ml}
spec:
  hosts: [tfs]
  gateways: [mesh]
  http:
    - match:
        - uri: {exact: /v1/models/half_plus_two:predict}
        - queryParams: {debug: {exact: "1"}}
        - headers: {x-team: {prefix: ml}}
        - uri: {regex: /v1/models/.*}
      fault: {abort: {httpStatus: 500}}
      corsPolicy: {allowOrigins: [{exact: "*"}]}
      rewrite: {uri: /}
      route: [{destination: {host: tfs, subset: stable}, headers: {request: {set: {x: y}}}}]
      retries: {attempts: 2, retryOn: "5xx", perTryTimeout: 1s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tfs, namespace: ml}
spec:
  host: tfs
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s}
  subsets:
    - {name: stable, labels: {version: "1", track: blue}, trafficPolicy: {}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ml}
spec:
  mtls: {mode: STRICT}
  portLevelMtls: {"8080": {mode: DISABLE}}
"#;

#[test]
fn unsupported_fields_are_listed_in_one_error_with_their_lines() {
    let e = load("unsupported", MESH, UNSUPPORTED).unwrap_err();
    let expected = "istio.yaml:6:3: unsupported Istio fields (infermesh cannot honour them; \
        remove them or write this in mesh.yaml): document 1.spec.gateways (line 6), \
        document 1.spec.http[0].match[0].uri.exact (line 9), \
        document 1.spec.http[0].match[1].queryParams (line 10), \
        document 1.spec.http[0].match[2].headers.x-team (only `exact` header matches) (line 11), \
        document 1.spec.http[0].match[3].uri.regex \"/v1/models/.*\" (not a model, version or \
        label path) (line 12), \
        document 1.spec.http[0].fault (line 13), \
        document 1.spec.http[0].corsPolicy (line 14), \
        document 1.spec.http[0].rewrite (line 15), \
        document 1.spec.http[0].route[0].headers (line 16), \
        document 1.spec.http[0].retries.retryOn `5xx` (line 17), \
        document 1.spec.http[0].retries.perTryTimeout (line 17), \
        document 2.spec.trafficPolicy.loadBalancer (line 25), \
        document 2.spec.trafficPolicy.outlierDetection.interval (line 26), \
        document 2.spec.subsets[0].labels.track (line 28), \
        document 2.spec.subsets[0].trafficPolicy (line 28), \
        document 3.spec.portLevelMtls (line 35)";
    assert_eq!(e, expected);
}

/// What `infermesh export istio` writes to run the ext_authz server is skipped, so the
/// export imports as it is; the same kinds without infermesh's label are still errors.
#[test]
fn the_exported_ext_authz_server_is_skipped_other_kubernetes_objects_refused() {
    let server = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: infermesh-mesh, namespace: infermesh,
           labels: {app.kubernetes.io/managed-by: infermesh}}
data: {mesh.yaml: "workloads: []"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: infermesh-ext-authz, namespace: infermesh,
           labels: {app.kubernetes.io/managed-by: infermesh}}
spec: {replicas: 2}
"#;
    let istio = format!("{ISTIO}---{server}");
    let c = load("server", MESH, &istio).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.models["half_plus_two"].route.split, [(1, 75), (2, 25)]);

    let foreign = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: ml}\n";
    let e = load("foreign", MESH, &format!("{ISTIO}---\n{foreign}")).unwrap_err();
    assert!(
        e.contains(": apiVersion \"apps/v1\" is not security.istio.io/v1"),
        "{e}"
    );
    // An Istio kind keeps its meaning whatever its labels (the DestinationRule here).
    let labelled = ISTIO.replacen(
        "metadata: {name: tfs, namespace: ml}",
        "metadata: {name: tfs, namespace: ml, labels: {app.kubernetes.io/managed-by: infermesh}}",
        1,
    );
    let c = load("labelled", MESH, &labelled).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.limits.connect_timeout, Duration::from_millis(500));
}
