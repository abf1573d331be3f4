//! Shadow traffic through the real binary: with all of the split on version 1 and
//! `mirror: {to: canary}`, callers only ever get version 1's answers while the model
//! server's `:tensorflow:serving:request_count` for version 2 grows by the mirrored
//! share.

mod common;

use std::time::Duration;

use common::compact;
use common::mesh::{ERROR_HEADER, Mesh, MeshSpec, VERSION_HEADER};

/// Bound for mirrored copies to reach the model server after the last answer.
const MIRROR_WAIT: Duration = Duration::from_secs(30);

/// Sends `n` unversioned predicts; every answer must be version 1's.
fn send_unversioned(mesh: &Mesh, n: usize) {
    for i in 0..n {
        let r = mesh.gateway_req(
            "POST",
            "/v1/models/half_plus_two:predict",
            Some(br#"{"instances": [1.0]}"#),
            &[],
        );
        assert_eq!(
            (r.status, r.header(ERROR_HEADER), r.header(VERSION_HEADER)),
            (200, None, Some("1")),
            "request {i}: {r:?}"
        );
        assert_eq!(
            compact(&r.body),
            r#"{"predictions":[2.5]}"#,
            "request {i}: only version 1 answers callers"
        );
        assert_eq!(r.header("x-infermesh-mirror"), None, "request {i}");
    }
}

#[test]
fn mirror_100_percent_copies_every_request_to_canary() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 100, canary: 0}, mirror: {to: canary, percent: 100}, timeout: 20s",
    ));
    let n = 100;
    let (b1, b2) = mesh.request_counts();
    send_unversioned(&mesh, n);
    mesh.wait_until(
        "version 2's request_count to grow by every mirrored copy",
        MIRROR_WAIT,
        || mesh.request_counts().1 - b2 >= n as f64,
    );
    let (v1, v2) = mesh.settled_request_counts(MIRROR_WAIT);
    assert_eq!(
        (v1 - b1, v2 - b2),
        (n as f64, n as f64),
        "request_count growth of (v1, v2) after {n} requests with a 100% mirror"
    );

    // A request for version 2 itself is not mirrored to version 2 again.
    let r = mesh.gateway_req(
        "POST",
        "/v1/models/half_plus_two/versions/2:predict",
        Some(br#"{"instances": [1.0]}"#),
        &[],
    );
    assert_eq!(
        (r.status, compact(&r.body)),
        (200, r#"{"predictions":[3.5]}"#.into())
    );
    let (w1, w2) = mesh.settled_request_counts(MIRROR_WAIT);
    assert_eq!(
        (w1 - v1, w2 - v2),
        (0.0, 1.0),
        "after one predict on version 2"
    );

    // Metadata is not inference: routed by the split (version 1), never mirrored.
    for _ in 0..10 {
        let r = mesh.gateway_req("GET", "/v1/models/half_plus_two/metadata", None, &[]);
        assert_eq!(
            (r.status, r.header(VERSION_HEADER)),
            (200, Some("1")),
            "{r:?}"
        );
    }
    let (x1, x2) = mesh.settled_request_counts(MIRROR_WAIT);
    assert_eq!(
        (x1 - w1, x2 - w2),
        (10.0, 0.0),
        "after 10 metadata requests"
    );
}

#[test]
fn body_over_one_mebibyte_is_served_but_not_mirrored() {
    // Mirrors are made only of bodies that fit in 1 MiB; a larger one is read up to that
    // point, then the buffered part and the streamed rest go to the caller's version.
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 100, canary: 0}, mirror: {to: canary, percent: 100}, timeout: 60s",
    ));
    let mut body = String::from(r#"{"instances": ["#);
    let n = 300_000;
    for i in 0..n {
        if i > 0 {
            body.push_str(", ");
        }
        body.push_str(&format!("{}.5", i % 1000));
    }
    body.push_str("]}");
    assert!(body.len() > 1 << 20, "body is {} bytes", body.len());
    let (b1, b2) = mesh.request_counts();
    let via = mesh.gateway_req(
        "POST",
        "/v1/models/half_plus_two:predict",
        Some(body.as_bytes()),
        &[],
    );
    let direct = mesh.direct_req(
        "POST",
        "/v1/models/half_plus_two/versions/1:predict",
        Some(body.as_bytes()),
    );
    assert_eq!(
        (
            via.status,
            via.header(ERROR_HEADER),
            via.header(VERSION_HEADER)
        ),
        (200, None, Some("1")),
        "{}",
        &via.body[..via.body.len().min(300)]
    );
    assert!(
        via.body == direct.body,
        "a {} byte predict differs from direct",
        body.len()
    );
    let (v1, v2) = mesh.settled_request_counts(MIRROR_WAIT);
    assert_eq!(
        (v1 - b1, v2 - b2),
        (2.0, 0.0),
        "request_count growth of (v1, v2): the caller's and the direct request, no mirror"
    );
    // Small bodies are still mirrored.
    send_unversioned(&mesh, 5);
    mesh.wait_until("small bodies to be mirrored", MIRROR_WAIT, || {
        mesh.request_counts().1 - v2 >= 5.0
    });
}

#[test]
fn mirror_50_percent_copies_about_half() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 100, canary: 0}, mirror: {to: canary, percent: 50}, timeout: 20s",
    ));
    let n = 400;
    let (b1, b2) = mesh.request_counts();
    send_unversioned(&mesh, n);
    let (v1, v2) = mesh.settled_request_counts(MIRROR_WAIT);
    let mirrored = v2 - b2;
    eprintln!("{n} requests, 50% mirror: version 2 got {mirrored} copies");
    assert_eq!(v1 - b1, n as f64, "version 1 serves every caller once");
    // Binomial(400, 0.5): mean 200, sd 10; ±60 is 6 sd.
    assert!(
        (140.0..=260.0).contains(&mirrored),
        "version 2 got {mirrored} mirrored copies of {n}; want about half"
    );
}
