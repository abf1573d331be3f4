//! Tests of REST path normalization and rewriting.

use super::*;

fn rewrite(path: &str, version: i64) -> String {
    let method = if path.contains(':') {
        Method::POST
    } else {
        Method::GET
    };
    let inspected = rest(&method, path).unwrap();
    inspected
        .rewrite(RequestBody::new(Bytes::new(), None, None), version)
        .unwrap()
        .0
}

fn rest(method: &Method, raw: &str) -> Result<Inspected, Failure> {
    inspect_rest(method, raw, EscapedSlashes::Reject)
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
        "/v1/models/a%20b/versions/5:predict"
    );
    assert_eq!(
        rewrite("/v1/models/m/LABELS/x/metadata", 6),
        "/v1/models/m/versions/6/metadata"
    );
}

#[test]
fn rest_requests_parse_with_tf_serving_rules() {
    let i = rest(&Method::POST, "/v1/models/m/labels/canary:predict").unwrap();
    assert_eq!(i.model.model, "m");
    assert_eq!(i.model.version, VersionChoice::Label("canary".into()));
    assert_eq!(i.model.api, Api::Predict);
    assert!(matches!(
        rest(&Method::GET, "/other"),
        Err(Failure::NoRoute)
    ));
    let Err(Failure::Request(s)) = rest(&Method::POST, "/v1/foo") else {
        panic!("expected a request error")
    };
    assert_eq!(s.message, "Malformed request: POST /v1/foo");
}

#[test]
fn rest_paths_are_normalized_before_parsing_and_forwarded_canonical() {
    for (raw, model, forwarded) in [
        ("//v1//models//m:predict", "m", "/v1/models/m:predict"),
        ("/v1/models/x/../m:predict", "m", "/v1/models/m:predict"),
        (
            "/v1/models/%6d:predict?a=%2F",
            "m",
            "/v1/models/m:predict?a=%2F",
        ),
        (
            "/v1/models/m;x=1/versions/2:PREDICT",
            "m",
            "/v1/models/m/versions/2:predict",
        ),
        ("/V1/MODELS/M:PREDICT", "M", "/v1/models/M:predict"),
        (
            "/v1/./models/a%20b:predict",
            "a b",
            "/v1/models/a%20b:predict",
        ),
    ] {
        let i = rest(&Method::POST, raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(i.model.model, model, "{raw}");
        assert_eq!(i.path_and_query, forwarded, "{raw}");
        assert_eq!(i.path, forwarded.split('?').next().unwrap(), "{raw}");
    }
    for raw in [
        "/v1/models/a/..%2F..%2Fmodels/m:predict",
        "/v1/models/m%00:predict",
        "/v1/models/m%zz:predict",
    ] {
        assert!(
            matches!(rest(&Method::POST, raw), Err(Failure::InvalidPath(_))),
            "{raw}"
        );
    }
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
