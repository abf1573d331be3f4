//! The embedded development issuer: key persistence and rotation, minted tokens
//! verified by the Authenticator through discovery, and the token endpoint.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use base64::Engine as _;
use infermesh_authn::{Authenticator, DevClient, DevIssuer};
use infermesh_config::{Issuer, JwksSource};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn issuer_cfg(url: &str) -> Issuer {
    Issuer {
        issuer: url.into(),
        jwks: JwksSource::Discovery,
        audiences: vec!["infermesh".into()],
        from_headers: vec![],
        forward_claims: vec![],
        clock_skew: Duration::from_secs(60),
        refresh_interval: Duration::from_secs(600),
        min_refresh_interval: Duration::ZERO,
    }
}

#[test]
fn keys_persist_with_0600_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let a = DevIssuer::open(dir.path(), "http://127.0.0.1:8900").unwrap();
    let kid = a.kid();
    let path = dir.path().join("issuer/current.p8");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("issuer"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Reopened: the same key.
    let b = DevIssuer::open(dir.path(), "http://127.0.0.1:8900").unwrap();
    assert_eq!(b.kid(), kid);
    // Rotation: new kid, old one still published; persisted.
    let new = b.rotate().unwrap();
    assert_ne!(new, kid);
    let kids: Vec<String> = b.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, vec![new.clone(), kid.clone()]);
    let c = DevIssuer::open(dir.path(), "http://127.0.0.1:8900").unwrap();
    assert_eq!(c.kid(), new);
    assert_eq!(
        std::fs::metadata(dir.path().join("issuer/previous.p8"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // No private material in the JWKS.
    let text = c.jwks().to_string();
    assert!(!text.contains("\"d\""), "{text}");
    assert!(c.mint("", &[], &[], Duration::from_secs(60)).is_err());
    assert!(
        c.mint("a", &[], &[], Duration::from_secs(30 * 24 * 3600))
            .is_err()
    );
}

async fn post(addr: &str, headers: &str, body: &str) -> (u16, serde_json::Value, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /token HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or_default(),
        head.to_lowercase(),
    )
}

#[tokio::test]
async fn served_issuer_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let url = format!("http://{addr}");
    let dev = DevIssuer::open(dir.path(), &url).unwrap();
    let clients = vec![DevClient {
        client_id: "batch-job".into(),
        client_secret: "s3cret:with%chars".into(),
        groups: vec!["ml-eng".into()],
        audiences: vec!["infermesh".into()],
        ttl: Duration::ZERO,
    }];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let dev = dev.clone();
        tokio::spawn(async move {
            dev.serve(listener, clients, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let auth = Authenticator::new(&[issuer_cfg(&url)]);

    // `infermesh token` path: mint directly.
    let t = dev
        .mint(
            "alice",
            &["ml-eng".into()],
            &["infermesh".into()],
            Duration::from_secs(600),
        )
        .unwrap();
    let p = auth.verify(&t).await.unwrap();
    assert_eq!(p.principal, format!("{url}/alice"));
    assert_eq!(p.claims["groups"], serde_json::json!(["ml-eng"]));

    // Client credentials, form post.
    let form =
        "grant_type=client_credentials&client_id=batch-job&client_secret=s3cret%3Awith%25chars";
    let ct = "content-type: application/x-www-form-urlencoded\r\n";
    let (status, body, head) = post(&addr, ct, form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(head.contains("cache-control: no-store"));
    let p = auth
        .verify(body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(p.subject, "batch-job");

    // HTTP Basic (RFC 6749 §2.3.1: form-encoded id and secret).
    let basic = base64::engine::general_purpose::STANDARD.encode("batch-job:s3cret%3Awith%25chars");
    let (status, body, _) = post(
        &addr,
        &format!("{ct}authorization: Basic {basic}\r\n"),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Errors.
    let (status, body, head) = post(
        &addr,
        ct,
        "grant_type=client_credentials&client_id=batch-job&client_secret=nope",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(head.contains("www-authenticate: basic"));
    let (status, body, _) = post(
        &addr,
        ct,
        "grant_type=password&client_id=batch-job&client_secret=s3cret%3Awith%25chars",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body, _) = post(
        &addr,
        ct,
        "client_id=batch-job&client_secret=s3cret%3Awith%25chars",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body, _) = post(&addr, "content-type: application/json\r\n", "{}").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _, _) = post(
        &addr,
        ct,
        "grant_type=client_credentials&grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 400);

    // Rotation: the new kid is picked up by the authenticator on first sight.
    dev.rotate().unwrap();
    let t2 = dev
        .mint(
            "alice",
            &[],
            &["infermesh".into()],
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(auth.verify(&t2).await.is_ok());
    assert!(
        auth.verify(&t).await.is_ok(),
        "the previous key stays published"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
