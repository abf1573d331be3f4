//! TF Serving REST through the mesh (gateway → sidecar → model server, the real binary on
//! loopback) answers exactly as the model server does directly: predictions, status,
//! metadata and errors; the pin header picks a version unless the request names one;
//! a ~10 MB predict streams through.

mod common;

use std::collections::BTreeSet;

use common::mesh::{
    ERROR_HEADER, Mesh, MeshSpec, PREDICT_BODY, V1_ANSWER, V2_ANSWER, VERSION_HEADER, raw_post,
};
use common::{Resp, compact};

const M: &str = "/v1/models/half_plus_two";

/// Asserts the gateway's answer equals the direct one: status, content type and body
/// bytes.
fn assert_same(what: &str, via: &Resp, direct: &Resp) {
    assert_eq!(
        (via.status, &via.content_type, &via.body),
        (direct.status, &direct.content_type, &direct.body),
        "{what}: through the mesh vs direct to the model server"
    );
}

/// The version the gateway says served, as a number.
fn served_version(what: &str, r: &Resp) -> i64 {
    let v = r
        .header(VERSION_HEADER)
        .unwrap_or_else(|| panic!("{what}: no {VERSION_HEADER}: {r:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{what}: {VERSION_HEADER} is {v:?}"))
}

#[test]
fn rest_through_gateway_and_sidecar_equals_direct() {
    // Three processes: model-server, sidecar, gateway.
    let mesh = Mesh::separate(&MeshSpec::route(
        "split: {stable: 50, canary: 50}, timeout: 20s",
    ));
    let row = PREDICT_BODY;
    let col = r#"{"inputs": [1.0, 2.0, 5.0]}"#;

    // (method, path, body, the version the gateway reports, x-infermesh-error):
    // requests that name their version or label go where they say; the proxy makes
    // the answer itself only for what it can decide alone.
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, String, Option<&str>, Option<&str>, Option<&str>)] = &[
        // Predict by version and by label, row and columnar.
        (
            "POST",
            format!("{M}/versions/1:predict"),
            Some(row),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/2:predict"),
            Some(row),
            Some("2"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/1:predict"),
            Some(col),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/labels/stable:predict"),
            Some(row),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/labels/canary:predict"),
            Some(col),
            Some("2"),
            None,
        ),
        // TF Serving's path rules: case-insensitive keywords, a leading zero, a query,
        // a percent-encoded name.
        (
            "POST",
            "/V1/MODELS/half_plus_two/VERSIONS/1:PREDICT".into(),
            Some(row),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/01:predict"),
            Some(row),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/2:predict?debug=1"),
            Some(row),
            Some("2"),
            None,
        ),
        (
            "POST",
            "/v1/models/half%5Fplus_two/versions/2:predict".into(),
            Some(row),
            Some("2"),
            None,
        ),
        // Status: unversioned lists every version and is not routed.
        ("GET", M.to_string(), None, None, None),
        ("GET", format!("{M}/versions/1"), None, Some("1"), None),
        ("GET", format!("{M}/labels/canary"), None, Some("2"), None),
        // Metadata.
        (
            "GET",
            format!("{M}/versions/1/metadata"),
            None,
            Some("1"),
            None,
        ),
        (
            "GET",
            format!("{M}/labels/canary/metadata"),
            None,
            Some("2"),
            None,
        ),
        // Errors of the model server pass through unchanged.
        (
            "POST",
            format!("{M}/versions/1:predict"),
            Some(r#"{"instances": [1.0,"#),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/2:predict"),
            Some(r#"{"instances": ["a"]}"#),
            Some("2"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/1:predict"),
            Some(r#"{"nothing": 1}"#),
            Some("1"),
            None,
        ),
        (
            "POST",
            format!("{M}/versions/7:predict"),
            Some(row),
            None,
            None,
        ),
        ("GET", format!("{M}/versions/7"), None, None, None),
        (
            "POST",
            format!("{M}/versions/1:regress"),
            Some(r#"{"examples": [{"x": 1.0}]}"#),
            Some("1"),
            None,
        ),
        // Errors the proxy answers itself, in TF Serving's words.
        (
            "POST",
            "/v1/models/nope:predict".into(),
            Some(row),
            None,
            Some("route"),
        ),
        (
            "POST",
            "/v1/models/nope/versions/3:predict".into(),
            Some(row),
            None,
            Some("route"),
        ),
        ("GET", "/v1/models/nope".into(), None, None, Some("route")),
        (
            "GET",
            "/v1/models/nope/metadata".into(),
            None,
            None,
            Some("route"),
        ),
        (
            "POST",
            format!("{M}/labels/nope:predict"),
            Some(row),
            None,
            Some("route"),
        ),
        (
            "POST",
            format!("{M}:frobnicate"),
            Some(row),
            None,
            Some("request"),
        ),
        ("GET", "/v1/models".into(), None, None, Some("request")),
        ("GET", "/not-an-api".into(), None, None, Some("route")),
        (
            "POST",
            format!("{M}/versions/-1:predict"),
            Some(row),
            None,
            Some("request"),
        ),
        (
            "POST",
            format!("{M}/versions/99999999999999999999:predict"),
            Some(row),
            None,
            Some("request"),
        ),
        (
            "POST",
            format!("{M}/versions/1:predict/"),
            Some(row),
            None,
            Some("request"),
        ),
        (
            "POST",
            "/v1/models/Half_Plus_Two:predict".into(),
            Some(row),
            None,
            Some("route"),
        ),
    ];
    for (method, path, body, version, error) in cases {
        let what = format!("{method} {path} {body:?}");
        let via = mesh.gateway_req(method, path, body.map(str::as_bytes), &[]);
        let direct = mesh.direct_req(method, path, body.map(str::as_bytes));
        assert_same(&what, &via, &direct);
        assert_eq!(via.header(ERROR_HEADER), *error, "{what}: {via:?}");
        if error.is_none() {
            // A version the request named is reported even on errors; unversioned
            // status is not routed.
            if let Some(v) = version {
                assert_eq!(via.header(VERSION_HEADER), Some(*v), "{what}: {via:?}");
            }
        }
    }
    // Paths the gateway normalizes (docs/pipeline.md: `//` merged, `.` resolved, leading
    // zeros and keyword case canonical) are forwarded in canonical form: they answer as
    // the canonical path does directly.
    for (raw, canonical) in [
        (
            "//v1/models/half_plus_two/versions/1:predict",
            "/v1/models/half_plus_two/versions/1:predict",
        ),
        (
            "/v1/models/half_plus_two/./versions/02:PREDICT",
            "/v1/models/half_plus_two/versions/2:predict",
        ),
    ] {
        let via = mesh.gateway_req("POST", raw, Some(row.as_bytes()), &[]);
        let direct = mesh.direct_req("POST", canonical, Some(row.as_bytes()));
        assert_eq!(direct.status, 200, "{canonical}: {direct:?}");
        assert_same(&format!("POST {raw} (normalized)"), &via, &direct);
    }
    // The proxy's own not-found answers match TF Serving's exactly.
    let r = mesh.gateway_req("POST", "/v1/models/nope:predict", Some(row.as_bytes()), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "Servable not found for request: Latest(nope)");

    // Unversioned predict and metadata: routed by the 50/50 split; each answer equals
    // the direct answer of the version the gateway reports.
    let mut seen = BTreeSet::new();
    for i in 0..400 {
        let (path, direct_path) = if i % 2 == 0 {
            (format!("{M}:predict"), "{M}/versions/{v}:predict")
        } else {
            (format!("{M}/metadata"), "{M}/versions/{v}/metadata")
        };
        let body = (i % 2 == 0).then_some(row.as_bytes());
        let via = mesh.gateway_req(
            if body.is_some() { "POST" } else { "GET" },
            &path,
            body,
            &[],
        );
        let v = served_version(&path, &via);
        let direct_path = direct_path.replace("{M}", M).replace("{v}", &v.to_string());
        let direct = mesh.direct_req(
            if body.is_some() { "POST" } else { "GET" },
            &direct_path,
            body,
        );
        assert_eq!(direct.status, 200, "{direct_path}: {direct:?}");
        assert_same(&format!("{path} (served by v{v})"), &via, &direct);
        seen.insert((i % 2, v));
        if seen.len() == 4 && i >= 20 {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        4,
        "unversioned predict and metadata should each reach both versions: {seen:?}"
    );
}

#[test]
fn pin_header_picks_the_version_unless_the_request_names_one() {
    // The split sends everything to version 1, so a version 2 answer can only come
    // from the pin header.
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 100, canary: 0}, pin_header: x-model-version, timeout: 20s",
    ));
    let predict = format!("{M}:predict");
    // (path, pin header value, expected version)
    let cases: &[(String, Option<&str>, i64)] = &[
        (predict.clone(), None, 1),
        (predict.clone(), Some("2"), 2),
        (predict.clone(), Some("canary"), 2),
        (predict.clone(), Some("1"), 1),
        (predict.clone(), Some("stable"), 1),
        (predict.clone(), Some(" 2 "), 2),
        // The request's own version or label wins over the header.
        (format!("{M}/versions/1:predict"), Some("2"), 1),
        (format!("{M}/versions/1:predict"), Some("canary"), 1),
        (format!("{M}/labels/stable:predict"), Some("canary"), 1),
        (format!("{M}/versions/2:predict"), Some("stable"), 2),
        (format!("{M}/labels/canary:predict"), Some("1"), 2),
    ];
    for (path, pin, want) in cases {
        for _ in 0..5 {
            let headers: Vec<(&str, &str)> = pin.iter().map(|p| ("x-model-version", *p)).collect();
            let r = mesh.gateway_req("POST", path, Some(PREDICT_BODY.as_bytes()), &headers);
            let what = format!("{path} with pin {pin:?}");
            assert_eq!(r.status, 200, "{what}: {r:?}");
            assert_eq!(served_version(&what, &r), *want, "{what}");
            let answer = if *want == 1 { V1_ANSWER } else { V2_ANSWER };
            assert_eq!(compact(&r.body), answer, "{what}");
        }
    }
    // Header names are case-insensitive.
    let r = mesh.gateway_req(
        "POST",
        &predict,
        Some(PREDICT_BODY.as_bytes()),
        &[("X-Model-Version", "canary")],
    );
    assert_eq!((r.status, compact(&r.body)), (200, V2_ANSWER.to_string()));

    // Metadata follows the pin too; unversioned status is not routed.
    let r = mesh.gateway_req(
        "GET",
        &format!("{M}/metadata"),
        None,
        &[("x-model-version", "2")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["model_spec"]["version"], "2", "{}", r.body);
    let via = mesh.gateway_req("GET", M, None, &[("x-model-version", "2")]);
    assert_same("status with a pin", &via, &mesh.direct_req("GET", M, None));

    // A pin naming no version of the model is the client's error, answered by the proxy.
    for bad in ["7", "beta", ""] {
        let r = mesh.gateway_req(
            "POST",
            &predict,
            Some(PREDICT_BODY.as_bytes()),
            &[("x-model-version", bad)],
        );
        assert_eq!(r.status, 400, "pin {bad:?}: {r:?}");
        assert_eq!(r.header(ERROR_HEADER), Some("route"), "pin {bad:?}");
        assert!(
            r.error().contains("x-model-version"),
            "pin {bad:?}: {}",
            r.body
        );
    }
}

/// `{"instances": [...]}` with `n` distinct floats of up to 8 digits (~10 bytes each).
fn big_predict_body(n: usize) -> String {
    let mut body = String::with_capacity(n * 11 + 32);
    body.push_str(r#"{"instances": ["#);
    for i in 0..n {
        if i > 0 {
            body.push_str(", ");
        }
        body.push_str(&format!("{}.{:02}", (i * 7919) % 100_000, i % 100));
    }
    body.push_str("]}");
    body
}

#[test]
fn ten_megabyte_predict_streams_through() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 50, canary: 50}, timeout: 120s",
    ));
    let n = 1_000_000;
    let body = big_predict_body(n);
    assert!(body.len() > 9_000_000, "body is {} bytes", body.len());

    let path = format!("{M}/versions/1:predict");
    let direct = mesh.direct_req("POST", &path, Some(body.as_bytes()));
    assert_eq!(
        direct.status,
        200,
        "direct: {}",
        &direct.body[..direct.body.len().min(300)]
    );
    let via = mesh.gateway_req("POST", &path, Some(body.as_bytes()), &[]);
    assert_eq!(
        via.header(ERROR_HEADER),
        None,
        "{}",
        &via.body[..via.body.len().min(300)]
    );
    assert_same("10 MB predict on version 1", &via, &direct);
    let predictions = direct.json()["predictions"].as_array().map(Vec::len);
    assert_eq!(predictions, Some(n));

    // Unversioned: the rewritten request carries the whole body too.
    let via = mesh.gateway_req("POST", &format!("{M}:predict"), Some(body.as_bytes()), &[]);
    let v = served_version("10 MB unversioned predict", &via);
    let direct = if v == 1 {
        direct
    } else {
        mesh.direct_req(
            "POST",
            &format!("{M}/versions/{v}:predict"),
            Some(body.as_bytes()),
        )
    };
    assert_same(&format!("10 MB unversioned predict (v{v})"), &via, &direct);
}

fn post_chunked(port: u16, path: &str, body: &[u8]) -> (u16, Option<String>, String) {
    let a = raw_post(port, path, body, true);
    let status = a
        .status
        .unwrap_or_else(|| panic!("no HTTP answer to a chunked POST {path}: {a:?}"));
    (status, a.error_kind, a.body)
}

#[test]
fn body_limit_applies_through_the_mesh() {
    let mesh = Mesh::up(
        &MeshSpec::route("split: {stable: 100, canary: 0}, timeout: 20s")
            .limits("max_request_body_bytes: 64KiB"),
    );
    let path = format!("{M}:predict");
    // A JSON body padded with spaces to `len` bytes: only the size matters.
    let padded = |len: usize| {
        let mut b = PREDICT_BODY.as_bytes().to_vec();
        b.resize(len, b' ');
        b
    };
    // Declared Content-Length over the limit.
    let r = mesh.gateway_req("POST", &path, Some(&padded(100_000)), &[]);
    assert_eq!(
        (r.status, r.header(ERROR_HEADER)),
        (413, Some("limit")),
        "{r:?}"
    );
    assert!(r.error().contains("65536"), "{}", r.body);
    // Chunked, crossing the limit while streaming.
    let (status, kind, body) = post_chunked(mesh.ports.gateway, &path, &padded(200_000));
    assert_eq!((status, kind.as_deref()), (413, Some("limit")), "{body}");
    // Under the limit, both ways.
    let r = mesh.gateway_req("POST", &path, Some(&padded(60_000)), &[]);
    assert_eq!(
        (r.status, compact(&r.body)),
        (200, V1_ANSWER.to_string()),
        "{r:?}"
    );
    let (status, kind, body) = post_chunked(mesh.ports.gateway, &path, &padded(60_000));
    assert_eq!((status, kind), (200, None), "{body}");
    assert!(body.contains("2.5"), "{body}");
}
