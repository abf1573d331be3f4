//! REST through gateway → sidecar → fake model server, over loopback.

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::*;
use crate::{ERROR_HEADER, VERSION_HEADER};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn unversioned_predict_is_rewritten_and_says_which_version() {
    let mesh = Mesh::start().await;
    let client = http1();
    let (head, body) = rest(&client, post(mesh.gateway, "/v1/models/m:predict", &[])).await;
    assert_eq!(head.status(), 200, "{body}");
    let version = head.headers()[&VERSION_HEADER].to_str().unwrap().to_owned();
    assert!(version == "1" || version == "2");
    assert_eq!(
        json(&body)["path"],
        format!("/v1/models/m/versions/{version}:predict")
    );
}

#[tokio::test]
async fn pin_header_label_and_explicit_version() {
    let mesh = Mesh::start().await;
    let client = http1();
    let cases = [
        (
            "/v1/models/m:predict",
            vec![("x-model-version", "2")],
            "/v1/models/m/versions/2:predict",
        ),
        (
            "/v1/models/m:predict",
            vec![("x-model-version", "stable")],
            "/v1/models/m/versions/1:predict",
        ),
        (
            "/v1/models/m/labels/canary:regress",
            vec![],
            "/v1/models/m/versions/2:regress",
        ),
        (
            "/v1/models/m/versions/1:predict",
            vec![("x-model-version", "2")],
            "/v1/models/m/versions/1:predict",
        ),
    ];
    for (path, headers, expected) in cases {
        let (head, body) = rest(&client, post(mesh.gateway, path, &headers)).await;
        assert_eq!(head.status(), 200, "{path}: {body}");
        assert_eq!(json(&body)["path"], expected, "{path}");
        let version = expected
            .split('/')
            .nth(5)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert_eq!(head.headers()[&VERSION_HEADER], version);
    }
    let (head, body) = rest(
        &client,
        post(
            mesh.gateway,
            "/v1/models/m:predict",
            &[("x-model-version", "7")],
        ),
    )
    .await;
    assert_eq!(head.status(), 400);
    assert_eq!(head.headers()[&ERROR_HEADER], "route");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("x-model-version")
    );
}

#[tokio::test]
async fn unknown_model_is_404_with_tf_wording() {
    let mesh = Mesh::start().await;
    let (head, body) = rest(&http1(), post(mesh.gateway, "/v1/models/foo:predict", &[])).await;
    assert_eq!(head.status(), 404);
    assert_eq!(head.headers()[&ERROR_HEADER], "route");
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(
        json(&body),
        serde_json::json!({"error": "Servable not found for request: Latest(foo)"})
    );
    let (head, body) = rest(&http1(), post(mesh.gateway, "/v1/foo", &[])).await;
    assert_eq!(head.status(), 400);
    assert_eq!(json(&body)["error"], "Malformed request: POST /v1/foo");
}

#[tokio::test]
async fn split_over_the_wire_lands_near_90_10() {
    let mesh = Mesh::start().await;
    let client = http1();
    let mut canary = 0;
    for _ in 0..300 {
        let (head, _) = rest(&client, post(mesh.gateway, "/v1/models/m:predict", &[])).await;
        if head.headers()[&VERSION_HEADER] == "2" {
            canary += 1;
        }
    }
    // Binomial(300, 0.1): mean 30, sd 5.2; this band is > 4 sd wide each side.
    assert!(
        (8..=55).contains(&canary),
        "canary answered {canary} of 300"
    );
}

#[tokio::test]
async fn mirror_reaches_the_mirror_version_and_leaves_answers_alone() {
    let mesh = Mesh::start_with(|c| {
        let mut m = model("m", "w");
        m.route.mirror = Some(infermesh_config::Mirror {
            version: 2,
            percent: 100.0,
        });
        c.models.insert("m".into(), Arc::new(m));
    })
    .await;
    let client = http1();
    for _ in 0..5 {
        let (head, body) = rest(
            &client,
            post(
                mesh.gateway,
                "/v1/models/m:predict",
                &[("x-model-version", "1")],
            ),
        )
        .await;
        assert_eq!(head.status(), 200);
        assert_eq!(json(&body)["path"], "/v1/models/m/versions/1:predict");
        assert!(!head.headers().contains_key(crate::MIRROR_HEADER));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mirrored: Vec<_> = mesh.fake.seen().into_iter().filter(|s| s.mirror).collect();
        if mirrored.len() == 5 {
            assert!(
                mirrored
                    .iter()
                    .all(|s| s.path == "/v1/models/m/versions/2:predict")
            );
            assert!(
                mirrored.iter().all(|s| s.bytes > 0),
                "mirror carries the body"
            );
            break;
        }
        assert!(Instant::now() < deadline, "mirrored: {mirrored:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mesh.gateway_stats.mirrored(), 5);
}

#[tokio::test]
async fn dead_model_server_is_503_quickly() {
    let mesh = Mesh::start().await;
    mesh.fake.kill();
    // Let the aborted accept loop drop its listener.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let (head, body) = rest(&http1(), post(mesh.gateway, "/v1/models/m:predict", &[])).await;
    assert_eq!(head.status(), 503, "{body}");
    assert_eq!(head.headers()[&ERROR_HEADER], "upstream-connect");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("upstream connect error: ")
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dead_sidecar_is_503_after_retries() {
    let mesh = Mesh::start_with(|c| {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut w = (*c.workloads["w"]).clone();
        w.endpoints = vec![infermesh_config::Address::Socket(dead)];
        c.workloads.insert("w".into(), Arc::new(w));
    })
    .await;
    let started = Instant::now();
    let (head, _) = rest(&http1(), post(mesh.gateway, "/v1/models/m:predict", &[])).await;
    assert_eq!(head.status(), 503);
    assert_eq!(head.headers()[&ERROR_HEADER], "upstream-connect");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// An upstream that takes the whole request and closes the connection without an
/// answer (it died mid-request, or the pooled connection's peer was already gone): 503
/// like Envoy's "reset before headers", not 502, and not retried — the predict may have
/// been served.
#[tokio::test]
async fn upstream_closing_before_an_answer_is_503_and_not_retried() {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                // Read the head and the (small) body, then hang up.
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&seen).contains("\r\n\r\n{") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    let mesh = Mesh::start_with(|c| {
        let mut w = (*c.workloads["w"]).clone();
        w.endpoints = vec![infermesh_config::Address::Socket(addr)];
        c.workloads.insert("w".into(), Arc::new(w));
    })
    .await;
    let (head, body) = rest(&http1(), post(mesh.gateway, "/v1/models/m:predict", &[])).await;
    assert_eq!(head.status(), 503, "{body}");
    assert_eq!(head.headers()[&ERROR_HEADER], "upstream");
    let error = json(&body)["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("upstream reset before response: "),
        "{error}"
    );
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a request that may have been served is not sent again"
    );
    server.abort();
}

#[tokio::test]
async fn slow_model_server_is_504_at_the_route_timeout() {
    let mesh = Mesh::start().await;
    let started = Instant::now();
    let (head, body) = rest(&http1(), post(mesh.gateway, "/v1/models/slow:predict", &[])).await;
    let elapsed = started.elapsed();
    assert_eq!(head.status(), 504, "{body}");
    assert_eq!(head.headers()[&ERROR_HEADER], "timeout");
    assert!(json(&body)["error"].as_str().unwrap().contains("timeout"));
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
}

fn chunked(total: usize) -> TestBody {
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    let frames = (0..total / chunk.len())
        .map(move |_| Ok::<_, crate::body::BoxError>(Frame::data(chunk.clone())));
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

#[tokio::test]
async fn ten_megabytes_stream_through() {
    let mesh = Mesh::start().await;
    let total = 10 << 20;
    let request = Request::post(format!(
        "http://{}/v1/models/m/versions/1:predict",
        mesh.gateway
    ))
    .body(chunked(total))
    .unwrap();
    let (head, body) = rest(&http1(), request).await;
    assert_eq!(head.status(), 200, "{body}");
    assert_eq!(json(&body)["bytes"], total);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let mesh = Mesh::start_with(|c| c.limits.max_request_body_bytes = 1 << 20).await;
    let url = format!("http://{}/v1/models/m/versions/1:predict", mesh.gateway);
    // Declared length: refused before reading.
    let request = Request::post(&url).body(full(vec![b'x'; 2 << 20])).unwrap();
    let (head, body) = rest(&http1(), request).await;
    assert_eq!(head.status(), 413, "{body}");
    assert_eq!(head.headers()[&ERROR_HEADER], "limit");
    // Streamed: refused when the limit is crossed.
    let request = Request::post(&url).body(chunked(2 << 20)).unwrap();
    let (head, body) = rest(&http1(), request).await;
    assert_eq!(head.status(), 413, "{body}");
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut mesh = Mesh::start_with(|c| {
        c.models
            .insert("sleepy".into(), Arc::new(model("sleepy", "w")));
    })
    .await;
    let gateway = mesh.gateway;
    let in_flight = tokio::spawn(async move {
        rest(&http1(), post(gateway, "/v1/models/sleepy:predict", &[])).await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let tasks = mesh.shutdown();
    let (head, _) = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("in-flight request finishes")
        .unwrap();
    assert_eq!(head.status(), 200);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run returns after draining")
            .unwrap()
            .unwrap();
    }
    assert!(
        tokio::net::TcpStream::connect(gateway).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn sidecar_forwards_without_rewriting() {
    let mesh = Mesh::start().await;
    let (head, body) = rest(
        &http1(),
        post(
            mesh.sidecar,
            "/v1/models/m:predict",
            &[("x-model-version", "2")],
        ),
    )
    .await;
    assert_eq!(head.status(), 200, "{body}");
    assert_eq!(json(&body)["path"], "/v1/models/m:predict");
    assert!(!head.headers().contains_key(&VERSION_HEADER));
}

#[tokio::test]
async fn config_swap_applies_to_the_next_request() {
    let mesh = Mesh::start().await;
    let mut config = (**mesh.config.load()).clone();
    let mut m = (*config.models["m"]).clone();
    m.route.split = vec![(2, 100)];
    config.models.insert("m".into(), Arc::new(m));
    mesh.config.store(Arc::new(config));
    for _ in 0..20 {
        let (head, _) = rest(&http1(), post(mesh.gateway, "/v1/models/m:predict", &[])).await;
        assert_eq!(head.headers()[&VERSION_HEADER], "2");
    }
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_endpoint() {
    let mesh = Mesh::start_with(|c| {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut w = (*c.workloads["w"]).clone();
        w.endpoints
            .insert(0, infermesh_config::Address::Socket(dead));
        c.workloads.insert("w".into(), Arc::new(w));
    })
    .await;
    let client = http1();
    for _ in 0..20 {
        let (head, body) = rest(
            &client,
            post(mesh.gateway, "/v1/models/m/versions/1:predict", &[]),
        )
        .await;
        assert_eq!(head.status(), 200, "{body}");
        assert!(json(&body)["bytes"].as_u64().unwrap() > 0, "body replayed");
    }
}

#[tokio::test]
async fn unavailable_is_retried_only_on_idempotent_routes() {
    for (idempotent, expected_tries) in [(false, 1), (true, 3)] {
        let mesh = Mesh::start_with(|c| {
            let mut m = model("unavailable", "w");
            m.route.retries.idempotent = idempotent;
            c.models.insert("unavailable".into(), Arc::new(m));
        })
        .await;
        let (head, _) = rest(
            &http1(),
            post(mesh.gateway, "/v1/models/unavailable:predict", &[]),
        )
        .await;
        assert_eq!(head.status(), 503);
        assert!(
            !head.headers().contains_key(&ERROR_HEADER),
            "the model server's answer"
        );
        assert_eq!(
            mesh.fake.seen().len(),
            expected_tries,
            "idempotent: {idempotent}"
        );
    }
}
