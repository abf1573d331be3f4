//! `infermesh ext-authz` answers Envoy's `Authorization/Check` with the mesh's
//! policies: a client built from Envoy's public ext_authz protos (the `envoy-types`
//! crate's generated client, not infermesh's server code) sends CheckRequests for
//! allowed and denied model calls, REST and gRPC, as Istio's sidecars would; every
//! decision is in the (strict) audit trail, which verifies.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::mesh::{Proc, free_port};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use infermesh_tfserving::proto::tensorflow::serving::{ModelSpec, PredictRequest, model_spec};
use prost::Message;

const MESH: &str = r#"
workloads:
  - {name: tfserving-a, namespace: ml, service_account: tfserving, listen: 127.0.0.1:15006,
     upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
models:
  - name: half_plus_two
    served_by: tfserving-a
    versions: [{version: 1, label: stable}, {version: 2, label: canary}]
policies:
  - name: pipeline-may-predict-stable
    action: ALLOW
    rules:
      - from: [{principals: [cluster.local/ns/ml/sa/pipeline]}]
        to: [{models: [half_plus_two], versions: [1], apis: [predict]}]
audit: {dir: audit, durability: strict}
"#;

fn peer(principal: &str, port: u32) -> Peer {
    Peer {
        principal: principal.to_owned(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

fn check(principal: &str, path: &str, headers: &[(&str, &str)], raw_body: Vec<u8>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer(principal, 40000)),
            destination: Some(peer("spiffe://cluster.local/ns/ml/sa/tfserving", 15006)),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "POST".into(),
                    path: path.into(),
                    host: "tfserving-a.ml.svc".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                    raw_body,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The same check as a GET.
fn get(mut request: CheckRequest) -> CheckRequest {
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.method = "GET".into();
    request
}

/// A framed gRPC Predict for `version` with `floats` input values, whole or cut to
/// its first `cut` bytes (as Envoy forwards it with `allowPartialMessage`).
fn grpc_predict(version: i64, floats: usize, cut: Option<usize>) -> Vec<u8> {
    use infermesh_tfserving::proto::tensorflow::TensorProto;
    let message = PredictRequest {
        model_spec: Some(ModelSpec {
            name: "half_plus_two".into(),
            version_choice: Some(model_spec::VersionChoice::Version(version)),
            ..Default::default()
        }),
        inputs: HashMap::from([(
            "x".to_owned(),
            TensorProto {
                dtype: 1,
                float_val: vec![1.0; floats],
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    if let Some(cut) = cut {
        framed.truncate(cut);
    }
    framed
}

/// (rpc code, HTTP status when denied, x-infermesh-error when denied) expected.
type Want = (i32, Option<i32>, Option<&'static str>);

/// (rpc code, HTTP status when denied, x-infermesh-error when denied).
fn outcome(r: &CheckResponse) -> (i32, Option<i32>, Option<String>) {
    let code = r.status.as_ref().map_or(-1, |s| s.code);
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            code,
            d.status.as_ref().map(|s| s.code),
            d.headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "x-infermesh-error")
                .map(|h| h.value.clone()),
        ),
        _ => (code, None, None),
    }
}

#[tokio::test]
async fn envoy_checks_get_the_mesh_policies_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mesh.yaml");
    std::fs::write(&config, MESH).unwrap();
    let port = free_port();
    let mut server = Proc::spawn(
        "ext-authz",
        &[
            "ext-authz".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ],
        dir.path(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        match AuthorizationClient::connect(endpoint.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    server.exited().is_none(),
                    "ext-authz exited:\n{}",
                    server.log()
                );
                assert!(
                    Instant::now() < deadline,
                    "ext-authz not up: {e}\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let pipeline = "spiffe://cluster.local/ns/ml/sa/pipeline";
    let other = "spiffe://cluster.local/ns/ml/sa/notebook";
    let json = [("content-type", "application/json")];
    let grpc = [("content-type", "application/grpc")];
    let cases: Vec<(&str, CheckRequest, Want)> = vec![
        (
            "REST v1 by the allowed principal",
            check(
                pipeline,
                "/v1/models/half_plus_two/versions/1:predict",
                &json,
                b"{}".to_vec(),
            ),
            (0, None, None),
        ),
        (
            "REST stable label (version 1) by the allowed principal",
            check(
                pipeline,
                "/v1/models/half_plus_two/labels/stable:predict",
                &json,
                vec![],
            ),
            (0, None, None),
        ),
        (
            "REST canary label (version 2)",
            check(
                pipeline,
                "/v1/models/half_plus_two/labels/canary:predict",
                &json,
                vec![],
            ),
            (7, Some(403), Some("authz")),
        ),
        (
            "REST v2: the policy allows version 1 only",
            check(
                pipeline,
                "/v1/models/half_plus_two/versions/2:predict",
                &json,
                vec![],
            ),
            (7, Some(403), Some("authz")),
        ),
        (
            "REST v1 by another principal",
            check(
                other,
                "/v1/models/half_plus_two/versions/1:predict",
                &json,
                vec![],
            ),
            (7, Some(403), Some("authz")),
        ),
        (
            "REST v1 metadata: not an allowed API",
            get(check(
                pipeline,
                "/v1/models/half_plus_two/versions/1/metadata",
                &json,
                vec![],
            )),
            (7, Some(403), Some("authz")),
        ),
        (
            "REST path with an encoded slash",
            check(
                pipeline,
                "/v1/models/half_plus_two%2Fversions%2F1:predict",
                &json,
                vec![],
            ),
            (3, Some(400), Some("request")),
        ),
        (
            "gRPC v1 (model in the forwarded body)",
            check(
                pipeline,
                "/tensorflow.serving.PredictionService/Predict",
                &grpc,
                grpc_predict(1, 1, None),
            ),
            (0, None, None),
        ),
        (
            "gRPC v2",
            check(
                pipeline,
                "/tensorflow.serving.PredictionService/Predict",
                &grpc,
                grpc_predict(2, 1, None),
            ),
            (7, Some(403), Some("authz")),
        ),
        (
            "gRPC v1, a 100 KB body sent whole",
            check(
                pipeline,
                "/tensorflow.serving.PredictionService/Predict",
                &grpc,
                grpc_predict(1, 25_000, None),
            ),
            (0, None, None),
        ),
        (
            "gRPC v2, a 100 KB body sent whole",
            check(
                pipeline,
                "/tensorflow.serving.PredictionService/Predict",
                &grpc,
                grpc_predict(2, 25_000, None),
            ),
            (7, Some(403), Some("authz")),
        ),
        (
            "gRPC v1 cut to 8 KiB by Envoy (allowPartialMessage): a second ModelSpec could follow, denied",
            check(
                pipeline,
                "/tensorflow.serving.PredictionService/Predict",
                &[
                    ("content-type", "application/grpc"),
                    ("x-envoy-auth-partial-body", "true"),
                ],
                grpc_predict(1, 25_000, Some(8192)),
            ),
            (3, Some(400), Some("request")),
        ),
        (
            "gRPC without the body: the model is unknown, denied",
            check(
                pipeline,
                "/tensorflow.serving.PredictionService/Predict",
                &grpc,
                vec![],
            ),
            (3, Some(400), Some("request")),
        ),
    ];
    let (mut allows, mut denies) = (0, 0);
    for (what, request, want) in cases {
        match want {
            (0, ..) => allows += 1,
            (7, ..) => denies += 1,
            _ => {}
        }
        let answer = client
            .check(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        let got = outcome(&answer);
        assert_eq!(
            (got.0, got.1, got.2.as_deref()),
            want,
            "{what}: {answer:?}\n{}",
            server.log()
        );
    }
    // A clean stop writes the final checkpoint; the trail verifies and holds one
    // decision record per decided check (parse failures are not decisions).
    // Let the client's connection task see the channel dropped and close the
    // connection (graceful shutdown waits for open connections).
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.signal("TERM");
    assert!(
        server.wait_exit(Duration::from_secs(20)).is_some(),
        "{}",
        server.log()
    );
    let trail = dir.path().join("audit/ext-authz");
    let (status, stdout, stderr) = common::mesh::run_to_end(
        &[
            "audit".into(),
            "verify".into(),
            trail.display().to_string(),
            "--public-key".into(),
            dir.path().join("audit/audit.pub").display().to_string(),
        ],
        dir.path(),
        Duration::from_secs(30),
    );
    assert!(status.success(), "audit verify failed:\n{stdout}{stderr}");
    let mut records = String::new();
    for entry in std::fs::read_dir(&trail).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            records.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    let decided = |d: &str| {
        records
            .lines()
            .filter(|l| {
                l.contains(r#""role":"ext-authz""#) && l.contains(&format!(r#""decision":"{d}""#))
            })
            .count()
    };
    assert_eq!(
        (decided("allow"), decided("deny")),
        (allows, denies),
        "{records}"
    );
}
