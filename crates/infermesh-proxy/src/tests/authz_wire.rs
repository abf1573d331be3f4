//! Authorization through the real listeners (gateway → sidecar → fake model server):
//! default deny, allow by model and API, deny by version (including the version
//! routing picks for a request that named none), deny over allow, signatures, path
//! spellings that must never reach a denied model, gRPC PERMISSION_DENIED.

use super::grpc_wire::{call, predict};
use super::*;
use crate::{ERROR_HEADER, VERSION_HEADER};

const DENIED: &str = r#"{"error":"RBAC: access denied"}"#;

/// Models `m`, `slow`, `allowed`, `secret` with `fragment`'s policies.
async fn start(fragment: &str) -> Mesh {
    start_with(fragment, |_| {}).await
}

async fn start_with(fragment: &str, edit: impl FnOnce(&mut MeshConfig)) -> Mesh {
    let fragment = fragment.to_owned();
    Mesh::start_with(move |c| {
        for name in ["allowed", "secret"] {
            c.models.insert(name.into(), Arc::new(model(name, "w")));
        }
        edit(c);
        set_policies(c, &fragment);
    })
    .await
}

async fn post_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (head, body) = rest(&http1(), post(addr, path, headers)).await;
    if head.status() == 403 {
        assert_eq!(head.headers()[&ERROR_HEADER], "authz");
        assert_eq!(body, DENIED, "a denial reveals nothing else");
    }
    (head.status().as_u16(), body)
}

async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(full(""))
        .unwrap();
    rest(&http1(), request).await.0.status().as_u16()
}

fn paths_seen(mesh: &Mesh) -> Vec<String> {
    mesh.fake.seen().into_iter().map(|s| s.path).collect()
}

#[tokio::test]
async fn without_allow_policies_the_default_denies_everything() {
    let mesh = start("authorization: {default_deny: true}\n").await;
    for path in ["/v1/models/m:predict", "/v1/models/m/versions/1:predict"] {
        assert_eq!(post_status(mesh.gateway, path, &[]).await.0, 403, "{path}");
    }
    assert_eq!(get_status(mesh.gateway, "/v1/models/m/metadata").await, 403);
    // The sidecar decides on its own, too.
    let (status, _) = post_status(mesh.sidecar, "/v1/models/m/versions/1:predict", &[]).await;
    assert_eq!(status, 403);
    assert!(paths_seen(&mesh).is_empty());
}

#[tokio::test]
async fn allow_by_model_and_api() {
    let mesh = start(
        "policies: [{name: predict-m, action: ALLOW, \
         rules: [{to: [{models: [m], apis: [predict]}]}]}]\n",
    )
    .await;
    let (status, body) = post_status(mesh.gateway, "/v1/models/m:predict", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        post_status(mesh.gateway, "/v1/models/m:classify", &[])
            .await
            .0,
        403
    );
    assert_eq!(get_status(mesh.gateway, "/v1/models/m/metadata").await, 403);
    assert_eq!(
        post_status(mesh.gateway, "/v1/models/slow:predict", &[])
            .await
            .0,
        403
    );
    assert_eq!(paths_seen(&mesh).len(), 1);
}

#[tokio::test]
async fn deny_by_version_covers_the_version_routing_picks() {
    let mesh = start_with(
        "authorization: {default_deny: false}\n\
         policies: [{name: no-canary, action: DENY, \
         rules: [{to: [{models: [m], versions: ['2']}]}]}]\n",
        |c| {
            let mut m = (*c.models["m"]).clone();
            m.route.split = vec![(2, 100)];
            c.models.insert("m".into(), Arc::new(m));
        },
    )
    .await;
    for (path, headers) in [
        ("/v1/models/m/versions/2:predict", &[][..]),
        ("/v1/models/m/labels/canary:predict", &[]),
        // Named no version: the split sends it to 2, so 2 is what is authorized.
        ("/v1/models/m:predict", &[]),
        ("/v1/models/m:predict", &[("x-model-version", "2")]),
        ("/v1/models/m:predict", &[("x-model-version", "canary")]),
    ] {
        let (status, _) = post_status(mesh.gateway, path, headers).await;
        assert_eq!(status, 403, "{path} {headers:?}");
    }
    let (head, _) = rest(
        &http1(),
        post(
            mesh.gateway,
            "/v1/models/m:predict",
            &[("x-model-version", "1")],
        ),
    )
    .await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[&VERSION_HEADER], "1");
    assert_eq!(paths_seen(&mesh), ["/v1/models/m/versions/1:predict"]);
}

#[tokio::test]
async fn deny_wins_over_allow() {
    let mesh = start(
        "policies:\n\
         - {name: all, action: ALLOW, rules: [{}]}\n\
         - {name: no-m-predict, action: DENY, rules: [{to: [{models: [m], apis: [predict]}]}]}\n",
    )
    .await;
    assert_eq!(
        post_status(mesh.gateway, "/v1/models/m:predict", &[])
            .await
            .0,
        403
    );
    assert_eq!(get_status(mesh.gateway, "/v1/models/m/metadata").await, 200);
    assert_eq!(
        post_status(mesh.gateway, "/v1/models/allowed/versions/1:predict", &[])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn path_spellings_never_reach_a_denied_model() {
    let mesh = start(
        "policies: [{name: only-allowed, action: ALLOW, \
         rules: [{to: [{models: [allowed]}]}]}]\n",
    )
    .await;
    for (path, want) in [
        // An encoded slash cannot be normalized safely: refused outright.
        ("/v1/models/allowed/..%2F..%2Fmodels/secret:predict", 400),
        ("/v1/models/allowed%2F..%2Fsecret:predict", 400),
        ("/v1/models/secret%00:predict", 400),
        ("//v1//models//secret:predict", 403),
        ("/v1/models/allowed/../secret:predict", 403),
        ("/v1/models/allowed/./../secret/versions/1:predict", 403),
        ("/v1/models/%73ecret:predict", 403),
        ("/v1/models/%73%65%63%72%65%74:predict", 403),
        // `;` parameters are cut from the segment (Istio), `:predict` with them.
        ("/v1/models/secret;allowed:predict", 400),
        // TF Serving model names are case-sensitive: `SECRET` is another (unknown)
        // model, and the caller learns that only if policy allows it.
        ("/V1/MODELS/SECRET:PREDICT", 403),
        ("/V1/MODELS/secret:PREDICT", 403),
    ] {
        for addr in [mesh.gateway, mesh.sidecar] {
            let (status, body) = post_status(addr, path, &[]).await;
            assert_eq!(status, want, "{path}: {body}");
        }
    }
    assert!(paths_seen(&mesh).is_empty());
    // What is allowed is forwarded in its canonical spelling, the one authorized (the
    // fake records the path without the query, which is kept as it came).
    let (head, body) = rest(
        &http1(),
        post(
            mesh.gateway,
            "//V1//models/./allowed/versions/1:PREDICT?x=1",
            &[],
        ),
    )
    .await;
    assert_eq!(head.status(), 200, "{body}");
    assert_eq!(paths_seen(&mesh), ["/v1/models/allowed/versions/1:predict"]);
}

#[tokio::test]
async fn signatures_are_read_from_rest_bodies_and_grpc_model_specs() {
    let mesh = start(
        "authorization: {default_deny: false}\n\
         policies: [{name: no-admin, action: DENY, rules: [{to: [{signatures: [admin]}]}]}]\n",
    )
    .await;
    let url = format!("http://{}/v1/models/m/versions/1:predict", mesh.gateway);
    for (body, want) in [
        (r#"{"instances": [1.0]}"#, 200),
        (
            r#"{"signature_name": "serving_default", "instances": [1.0]}"#,
            200,
        ),
        (r#"{"signature_name": "admin", "instances": [1.0]}"#, 403),
        // Ambiguous (parsers disagree on which duplicate wins): fails closed.
        (r#"{"signature_name": "x", "signature_name": "admin"}"#, 403),
    ] {
        let request = Request::post(&url).body(full(body)).unwrap();
        let (head, text) = rest(&http1(), request).await;
        assert_eq!(head.status(), want, "{body}: {text}");
    }
    let mut admin = predict("m", Some(1), 1);
    admin.model_spec.as_mut().unwrap().signature_name = "admin".into();
    let answer = call(mesh.gateway, &admin, &[]).await;
    assert_eq!(answer.status(), "7");
    assert_eq!(answer.headers[&ERROR_HEADER], "authz");
    assert_eq!(answer.headers["grpc-message"], "RBAC: access denied");
    let answer = call(mesh.gateway, &predict("m", Some(1), 1), &[]).await;
    assert_eq!(answer.status(), "0");
}

/// A MultiInference call whose tasks name `signatures` (model `m`, version 1).
async fn multi_inference(addr: SocketAddr, signatures: &[&str]) -> http::HeaderMap {
    use bytes::{BufMut, BytesMut};
    use infermesh_tfserving::proto::tensorflow::serving::{
        InferenceTask, ModelSpec, MultiInferenceRequest, model_spec,
    };
    use prost::Message;
    let tasks = signatures
        .iter()
        .map(|s| InferenceTask {
            model_spec: Some(ModelSpec {
                name: "m".into(),
                signature_name: (*s).into(),
                version_choice: Some(model_spec::VersionChoice::Version(1)),
            }),
            method_name: "tensorflow/serving/classify".into(),
        })
        .collect();
    let message = MultiInferenceRequest { tasks, input: None }.encode_to_vec();
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    let request = Request::post(format!(
        "http://{addr}/tensorflow.serving.PredictionService/MultiInference"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(full(framed.freeze()))
    .unwrap();
    http2()
        .request(request)
        .await
        .expect("grpc call")
        .into_parts()
        .0
        .headers
}

#[tokio::test]
async fn multi_inference_tasks_with_different_signatures_fail_closed() {
    let mesh = start(
        "authorization: {default_deny: false}\n\
         policies: [{name: no-admin, action: DENY, rules: [{to: [{signatures: [admin]}]}]}]\n",
    )
    .await;
    let headers = multi_inference(mesh.gateway, &["serving_default", "admin"]).await;
    assert_eq!(headers["grpc-status"], "7");
    assert_eq!(headers[&ERROR_HEADER], "authz");
    let headers = multi_inference(mesh.gateway, &["admin", "admin"]).await;
    assert_eq!(headers["grpc-status"], "7");
    let headers = multi_inference(mesh.gateway, &["serving_default", "other"]).await;
    assert_eq!(headers["grpc-status"], "7", "not one signature: unknown");
    let headers = multi_inference(mesh.gateway, &["serving_default", ""]).await;
    assert!(!headers.contains_key(&ERROR_HEADER), "{headers:?}");
}

#[tokio::test]
async fn grpc_denials_are_permission_denied() {
    let mesh = start(
        "policies: [{name: m-v1, action: ALLOW, \
         rules: [{to: [{models: [m], versions: ['1']}]}]}]\n",
    )
    .await;
    let answer = call(mesh.gateway, &predict("m", Some(1), 4), &[]).await;
    assert_eq!(answer.status(), "0");
    for (model, version, headers) in [
        ("m", Some(2), &[][..]),
        ("m", None, &[("x-model-version", "2")][..]),
        ("secret", Some(1), &[]),
        ("unknown", None, &[]),
    ] {
        let answer = call(mesh.gateway, &predict(model, version, 4), headers).await;
        assert_eq!(answer.status(), "7", "{model} {version:?} {headers:?}");
        assert!(answer.trailers.is_none(), "trailers-only");
        assert_eq!(answer.headers[&ERROR_HEADER], "authz");
    }
    assert_eq!(mesh.fake.seen().len(), 1);
}

#[tokio::test]
async fn source_address_is_what_ip_blocks_match() {
    let allowed = start(
        "policies: [{name: loopback, action: ALLOW, rules: [{from: [{ip_blocks: [127.0.0.0/8]}]}]}]\n",
    )
    .await;
    let (status, _) = post_status(allowed.gateway, "/v1/models/m:predict", &[]).await;
    assert_eq!(status, 200);
    let denied = start(
        "policies: [{name: ten, action: ALLOW, rules: [{from: [{ip_blocks: [10.0.0.0/8]}]}]}]\n",
    )
    .await;
    let (status, _) = post_status(denied.gateway, "/v1/models/m:predict", &[]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_mirror_to_a_denied_version_is_not_sent() {
    let mesh = start_with(
        "authorization: {default_deny: false}\n\
         policies: [{name: no-canary, action: DENY, rules: [{to: [{versions: ['2']}]}]}]\n",
        |c| {
            let mut m = (*c.models["m"]).clone();
            m.route.split = vec![(1, 100)];
            m.route.mirror = Some(infermesh_config::Mirror {
                version: 2,
                percent: 100.0,
            });
            c.models.insert("m".into(), Arc::new(m));
        },
    )
    .await;
    for _ in 0..5 {
        let (status, _) = post_status(mesh.gateway, "/v1/models/m:predict", &[]).await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mesh.gateway_stats.mirrored(), 0);
    assert!(mesh.fake.seen().iter().all(|s| !s.mirror));
}

#[tokio::test]
async fn a_swapped_config_is_authorized_with_its_own_policies() {
    let mesh = start("authorization: {default_deny: false}\n").await;
    let (status, _) = post_status(mesh.gateway, "/v1/models/m:predict", &[]).await;
    assert_eq!(status, 200);
    let mut config = (**mesh.config.load()).clone();
    config.authz.default_deny = true;
    mesh.config.store(Arc::new(config));
    let (status, _) = post_status(mesh.gateway, "/v1/models/m:predict", &[]).await;
    assert_eq!(status, 403);
}
