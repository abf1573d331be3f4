//! Keys fetched over HTTP: discovery, caching through a JWKS outage, rotation
//! picked up on an unknown `kid`, the refetch rate limit, periodic refresh.

use std::time::Duration;

use infermesh_authn::testkit::{JwksServer, TestKey, jwks, now};
use infermesh_authn::{Authenticator, AuthnError};
use infermesh_config::{Issuer, JwksSource};
use jsonwebtoken::Algorithm;
use serde_json::json;

fn remote(issuer: &str, source: JwksSource, min_refresh: Duration) -> Issuer {
    Issuer {
        issuer: issuer.into(),
        jwks: source,
        audiences: vec![],
        from_headers: vec![],
        forward_claims: vec![],
        clock_skew: Duration::from_secs(60),
        refresh_interval: Duration::from_secs(600),
        min_refresh_interval: min_refresh,
    }
}

fn token(key: &TestKey, iss: &str) -> String {
    let t = now();
    key.sign(&json!({"iss": iss, "sub": "svc", "exp": t + 300}))
}

#[tokio::test]
async fn discovery_then_outage_keeps_cached_keys() {
    let k1 = TestKey::generate(Algorithm::ES256, "k1");
    let mut server = JwksServer::start(jwks(&[&k1])).await;
    let iss = server.url.clone();
    let auth = Authenticator::new(&[remote(&iss, JwksSource::Discovery, Duration::ZERO)]);
    let status = auth.load_keys().await;
    assert_eq!(status[0].keys, 1, "{status:?}");
    assert!(auth.verify(&token(&k1, &iss)).await.is_ok());

    server.stop().await;
    // Outage: cached keys keep verifying, a refresh fails without losing them.
    assert!(auth.verify(&token(&k1, &iss)).await.is_ok());
    let status = auth.load_keys().await;
    assert_eq!(status[0].keys, 1);
    assert!(status[0].error.is_some());
    assert!(auth.verify(&token(&k1, &iss)).await.is_ok());
    // An unknown kid during the outage is refused, not waited on forever.
    let k2 = TestKey::generate(Algorithm::ES256, "k2");
    let err = auth.verify(&token(&k2, &iss)).await.unwrap_err();
    assert!(matches!(err, AuthnError::UnknownKid { .. }), "{err:?}");
    assert!(auth.verify(&token(&k1, &iss)).await.is_ok());
}

#[tokio::test]
async fn first_use_fetches_keys_and_no_keys_fails_closed() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let mut server = JwksServer::start(jwks(&[&k1])).await;
    let iss = "https://idp.test";
    let auth = Authenticator::new(&[remote(
        iss,
        JwksSource::Uri(server.jwks_uri()),
        Duration::ZERO,
    )]);
    assert!(auth.verify(&token(&k1, iss)).await.is_ok());
    assert_eq!(server.hits(), 1);
    // Cached: no further fetch.
    assert!(auth.verify(&token(&k1, iss)).await.is_ok());
    assert_eq!(server.hits(), 1);
    server.stop().await;

    let dead = Authenticator::new(&[remote(
        iss,
        JwksSource::Uri(server.jwks_uri()),
        Duration::ZERO,
    )]);
    let err = dead.verify(&token(&k1, iss)).await.unwrap_err();
    assert!(matches!(err, AuthnError::KeysUnavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn rotation_is_picked_up_on_unknown_kid() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let iss = "https://idp.test";
    let auth = Authenticator::new(&[remote(
        iss,
        JwksSource::Uri(server.jwks_uri()),
        Duration::ZERO,
    )]);
    auth.load_keys().await;
    assert_eq!(auth.cached_kids(iss), vec!["k1".to_owned()]);

    let k2 = TestKey::generate(Algorithm::ES256, "k2");
    server.set(jwks(&[&k2, &k1]));
    let before = server.hits();
    assert!(auth.verify(&token(&k2, iss)).await.is_ok());
    assert_eq!(server.hits(), before + 1);
    assert_eq!(
        auth.cached_kids(iss),
        vec!["k2".to_owned(), "k1".to_owned()]
    );
    // Both keys verify from the cache now.
    assert!(auth.verify(&token(&k1, iss)).await.is_ok());
    assert_eq!(server.hits(), before + 1);
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let k1 = TestKey::generate(Algorithm::ES256, "k1");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let iss = "https://idp.test";
    let auth = Authenticator::new(&[remote(
        iss,
        JwksSource::Uri(server.jwks_uri()),
        Duration::from_secs(30),
    )]);
    assert!(auth.verify(&token(&k1, iss)).await.is_ok());
    assert_eq!(server.hits(), 1);
    // A flood of unknown kids does not turn into a flood of fetches.
    let stranger = TestKey::generate(Algorithm::ES256, "nope");
    for _ in 0..20 {
        assert!(auth.verify(&token(&stranger, iss)).await.is_err());
    }
    assert_eq!(server.hits(), 1);
    // Concurrent misses share the fetch as well.
    let auth = std::sync::Arc::new(Authenticator::new(&[remote(
        iss,
        JwksSource::Uri(server.jwks_uri()),
        Duration::from_secs(30),
    )]));
    let tokens: Vec<String> = (0..16).map(|_| token(&stranger, iss)).collect();
    let mut tasks = Vec::new();
    for t in tokens {
        let a = auth.clone();
        tasks.push(tokio::spawn(async move { a.verify(&t).await.is_err() }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn periodic_refresh_runs_and_stops_with_the_authenticator() {
    let k1 = TestKey::generate(Algorithm::EdDSA, "k1");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let iss = "https://idp.test";
    let mut cfg = remote(
        iss,
        JwksSource::Uri(server.jwks_uri()),
        Duration::from_secs(30),
    );
    cfg.refresh_interval = Duration::from_secs(1);
    let auth = std::sync::Arc::new(Authenticator::new(&[cfg]));
    let handles = auth.spawn_refresh();
    assert_eq!(handles.len(), 1);
    let k2 = TestKey::generate(Algorithm::EdDSA, "k2");
    server.set(jwks(&[&k2]));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(server.hits() >= 2, "hits {}", server.hits());
    assert_eq!(auth.cached_kids(iss), vec!["k2".to_owned()]);
    drop(auth);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(3), h)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn discovery_with_mismatched_issuer_is_refused() {
    let k1 = TestKey::generate(Algorithm::ES256, "k1");
    let server = JwksServer::start(jwks(&[&k1])).await;
    // The server's discovery names its own URL; configured issuer differs.
    let iss = format!("{}/other", server.url);
    let auth = Authenticator::new(&[remote(&iss, JwksSource::Discovery, Duration::ZERO)]);
    let status = auth.load_keys().await;
    assert_eq!(status[0].keys, 0);
    assert!(
        status[0].error.as_deref().unwrap_or("").contains("issuer"),
        "{status:?}"
    );
}
