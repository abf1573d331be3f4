//! Tests of REST path rewriting.

use super::*;

fn rewrite(path: &str, version: i64) -> String {
    let method = if path.contains(':') {
        Method::POST
    } else {
        Method::GET
    };
    let inspected = inspect_rest(&method, path.split('?').next().unwrap_or(path)).unwrap();
    inspected
        .rewrite(path, RequestBody::new(Bytes::new(), None, None), version)
        .unwrap()
        .0
}

#[test]
fn rest_paths_are_pinned_to_a_version() {
    assert_eq!(
        rewrite("/v1/models/m:predict", 2),
        "/v1/models/m/versions/2:predict"
    );
    assert_eq!(
        rewrite("/v1/models/m/labels/canary:classify", 2),
        "/v1/models/m/versions/2:classify"
    );
    assert_eq!(
        rewrite("/v1/models/m/versions/1:predict?x=1", 3),
        "/v1/models/m/versions/3:predict?x=1"
    );
    assert_eq!(
        rewrite("/v1/models/m/metadata", 4),
        "/v1/models/m/versions/4/metadata"
    );
    assert_eq!(
        rewrite("/V1/Models/a%20b:predict", 5),
        "/V1/Models/a%20b/versions/5:predict"
    );
    assert_eq!(
        rewrite("/v1/models/m/LABELS/x/metadata", 6),
        "/v1/models/m/versions/6/metadata"
    );
}

#[test]
fn rest_requests_parse_with_tf_serving_rules() {
    let i = inspect_rest(&Method::POST, "/v1/models/m/labels/canary:predict").unwrap();
    assert_eq!(i.model.model, "m");
    assert_eq!(i.model.version, VersionChoice::Label("canary".into()));
    assert_eq!(i.model.api, Api::Predict);
    assert!(matches!(
        inspect_rest(&Method::GET, "/other"),
        Err(Failure::NoRoute)
    ));
    let Err(Failure::Request(s)) = inspect_rest(&Method::POST, "/v1/foo") else {
        panic!("expected a request error")
    };
    assert_eq!(s.message, "Malformed request: POST /v1/foo");
}

#[test]
fn grpc_content_type_selects_grpc() {
    let mut h = HeaderMap::new();
    assert_eq!(Protocol::of(&h), Protocol::Rest);
    h.insert(
        header::CONTENT_TYPE,
        "application/grpc+proto".parse().unwrap(),
    );
    assert_eq!(Protocol::of(&h), Protocol::Grpc);
}
