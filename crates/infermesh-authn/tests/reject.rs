//! Every way a token must be refused (401), and the ways it must be accepted:
//! tokens minted here with `jsonwebtoken`, attack tokens built by hand.

use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use infermesh_authn::testkit::{TestKey, jwks, now};
use infermesh_authn::{Authenticator, AuthnError, MAX_TOKEN_BYTES};
use infermesh_config::{Issuer, JwksSource};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

const ISS: &str = "https://issuer.test";
const AUD: &str = "infermesh";

fn issuer(jwks_doc: String) -> Issuer {
    Issuer {
        issuer: ISS.into(),
        jwks: JwksSource::Inline(jwks_doc),
        audiences: vec![AUD.into()],
        from_headers: vec![],
        forward_claims: vec![],
        clock_skew: Duration::from_secs(60),
        refresh_interval: Duration::from_secs(600),
        min_refresh_interval: Duration::from_secs(30),
    }
}

fn claims() -> Value {
    let t = now();
    json!({"iss": ISS, "sub": "alice", "aud": AUD, "iat": t, "exp": t + 300, "groups": ["ml-eng"]})
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Fixture {
    rsa: TestKey,
    auth: Authenticator,
}

fn fixture() -> Fixture {
    let rsa = TestKey::generate(Algorithm::RS256, "rsa-1");
    let auth = Authenticator::new(&[issuer(jwks(&[&rsa]))]);
    Fixture { rsa, auth }
}

async fn check(auth: &Authenticator, token: &str) -> Result<(), AuthnError> {
    auth.authenticate(&bearer(token)).await.map(|p| {
        assert!(p.is_some());
    })
}

#[tokio::test]
async fn valid_token_of_every_algorithm_is_accepted() {
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let key = TestKey::generate(alg, "k");
        let auth = Authenticator::new(&[issuer(jwks(&[&key]))]);
        let p = auth
            .authenticate(&bearer(&key.sign(&claims())))
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"))
            .expect("principal");
        assert_eq!(p.principal, format!("{ISS}/alice"), "{alg:?}");
        assert_eq!(p.audiences, vec![AUD.to_owned()]);
    }
}

#[tokio::test]
async fn no_token_means_no_principal() {
    let f = fixture();
    assert_eq!(f.auth.authenticate(&HeaderMap::new()).await, Ok(None));
    let mut basic = HeaderMap::new();
    basic.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert_eq!(f.auth.authenticate(&basic).await, Ok(None));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let f = fixture();
    let head = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(claims().to_string().as_bytes());
    for token in [format!("{head}.{body}."), format!("{head}.{body}.c2ln")] {
        let err = check(&f.auth, &token).await.unwrap_err();
        assert!(matches!(err, AuthnError::Algorithm(_)), "{err:?}");
    }
    // Also "None", "NONE" and a missing alg.
    for alg_head in [r#"{"alg":"None"}"#, r#"{"alg":"NONE"}"#, r#"{"typ":"JWT"}"#] {
        let token = format!("{}.{body}.", b64(alg_head.as_bytes()));
        assert!(check(&f.auth, &token).await.is_err());
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let f = fixture();
    let pem = f.rsa.public_pem.clone().unwrap();
    // What a vulnerable verifier would accept: HMAC keyed with the public key text.
    let head = b64(json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
        .to_string()
        .as_bytes());
    let body = b64(claims().to_string().as_bytes());
    let input = format!("{head}.{body}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes());
    let mac = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", b64(mac.as_ref()));
    let err = check(&f.auth, &token).await.unwrap_err();
    assert!(matches!(err, AuthnError::Algorithm(_)), "{err:?}");
    // And an `oct` key in the JWKS is never used.
    let oct = json!({"keys": [{"kty": "oct", "kid": "rsa-1", "k": b64(pem.as_bytes())}]});
    assert!(infermesh_authn::check_jwks(&oct.to_string()).is_err());
}

#[tokio::test]
async fn key_algorithm_is_enforced() {
    // An RSA key published with alg RS256 does not verify a PS256 token.
    let key = TestKey::generate(Algorithm::RS256, "k");
    let doc = json!({"keys": [key.jwk_json(true)]}).to_string();
    let auth = Authenticator::new(&[issuer(doc)]);
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("k".into());
    let err = check(&auth, &key.sign_with(&header, &claims()))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthnError::Algorithm(_)), "{err:?}");
    // An EC P-256 key never verifies ES384 or RS256 tokens.
    let ec = TestKey::generate(Algorithm::ES256, "ec");
    let auth = Authenticator::new(&[issuer(jwks(&[&ec]))]);
    let other = TestKey::generate(Algorithm::ES384, "ec");
    assert!(check(&auth, &other.sign(&claims())).await.is_err());
}

#[tokio::test]
async fn expired_and_not_yet_valid_are_refused() {
    let f = fixture();
    let t = now();
    let mut c = claims();
    c["exp"] = json!(t - 120);
    assert_eq!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::Expired)
    );
    let mut c = claims();
    c["nbf"] = json!(t + 120);
    assert_eq!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::NotYetValid)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::MissingClaim(_))
    ));
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    assert!(check(&f.auth, &f.rsa.sign(&c)).await.is_err());
}

#[tokio::test]
async fn clock_skew_is_tolerated_within_bounds() {
    let f = fixture();
    let t = now();
    // 60 s skew configured: 30 s past exp / 30 s before nbf pass, 90 s do not.
    let mut c = claims();
    c["exp"] = json!(t - 30);
    assert_eq!(check(&f.auth, &f.rsa.sign(&c)).await, Ok(()));
    c["exp"] = json!(t - 90);
    assert_eq!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::Expired)
    );
    let mut c = claims();
    c["nbf"] = json!(t + 30);
    assert_eq!(check(&f.auth, &f.rsa.sign(&c)).await, Ok(()));
    // A configured skew of one hour is capped at five minutes.
    let mut cfg = issuer(jwks(&[&f.rsa]));
    cfg.clock_skew = Duration::from_secs(3600);
    let auth = Authenticator::new(&[cfg]);
    let mut c = claims();
    c["exp"] = json!(t - 200);
    assert_eq!(check(&auth, &f.rsa.sign(&c)).await, Ok(()));
    c["exp"] = json!(t - 400);
    assert_eq!(
        check(&auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::Expired)
    );
}

#[tokio::test]
async fn wrong_issuer_and_audience_are_refused() {
    let f = fixture();
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert!(matches!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::UnknownIssuer(_))
    ));
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::Audience)
    );
    let mut c = claims();
    c["aud"] = json!(["a", AUD]);
    assert_eq!(check(&f.auth, &f.rsa.sign(&c)).await, Ok(()));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        check(&f.auth, &f.rsa.sign(&c)).await,
        Err(AuthnError::MissingClaim(_))
    ));
    // No audiences configured: any audience (Istio).
    let mut cfg = issuer(jwks(&[&f.rsa]));
    cfg.audiences.clear();
    let auth = Authenticator::new(&[cfg]);
    let mut c = claims();
    c["aud"] = json!("whatever");
    assert_eq!(check(&auth, &f.rsa.sign(&c)).await, Ok(()));
}

#[tokio::test]
async fn unknown_kid_and_foreign_key_are_refused() {
    let f = fixture();
    let other = TestKey::generate(Algorithm::RS256, "rsa-2");
    let err = check(&f.auth, &other.sign(&claims())).await.unwrap_err();
    assert!(matches!(err, AuthnError::UnknownKid { .. }), "{err:?}");
    // Right kid, wrong key.
    let impostor = TestKey::generate(Algorithm::RS256, "rsa-1");
    assert_eq!(
        check(&f.auth, &impostor.sign(&claims())).await,
        Err(AuthnError::Signature)
    );
    // No kid: every key of the alg is tried, none matches.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    assert_eq!(
        check(&f.auth, &impostor.sign_with(&header, &claims())).await,
        Err(AuthnError::Signature)
    );
    // No kid, the right key: accepted.
    assert_eq!(
        check(&f.auth, &f.rsa.sign_with(&header, &claims())).await,
        Ok(())
    );
}

#[tokio::test]
async fn altered_payload_is_refused() {
    let f = fixture();
    let token = f.rsa.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(check(&f.auth, &forged).await, Err(AuthnError::Signature));
    // A flipped signature byte too.
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    sig[10] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(check(&f.auth, &forged).await, Err(AuthnError::Signature));
}

#[tokio::test]
async fn oversized_and_malformed_tokens_are_refused() {
    let f = fixture();
    let mut c = claims();
    c["padding"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let err = check(&f.auth, &f.rsa.sign(&c)).await.unwrap_err();
    assert!(matches!(err, AuthnError::TooLarge { .. }), "{err:?}");
    for bad in [
        "x",
        "a.b",
        "a.b.c.d",
        "....",
        "Zm9v.YmFy.YmF6",
        "e30.e30.",
        "!!.??.**",
    ] {
        assert!(check(&f.auth, bad).await.is_err(), "{bad}");
    }
    let mut empty = HeaderMap::new();
    empty.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer "),
    );
    assert!(f.auth.authenticate(&empty).await.is_err());
}

#[tokio::test]
async fn error_is_generic_for_clients() {
    let f = fixture();
    let err = check(&f.auth, "a.b.c").await.unwrap_err();
    assert_eq!(err.client_message(), "Jwt verification fails");
    assert_eq!(err.http_status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(err.grpc_code(), 16);
    assert_eq!(
        infermesh_authn::WWW_AUTHENTICATE,
        r#"Bearer error="invalid_token""#
    );
}

#[tokio::test]
async fn nested_claims_are_kept_and_forwarded() {
    let key = TestKey::generate(Algorithm::ES256, "ec");
    let mut cfg = issuer(jwks(&[&key]));
    cfg.forward_claims = vec![
        ("groups".into(), HeaderName::from_static("x-groups")),
        (
            "realm_access.roles".into(),
            HeaderName::from_static("x-roles"),
        ),
        (
            "https://example.com/team".into(),
            HeaderName::from_static("x-team"),
        ),
        ("missing".into(), HeaderName::from_static("x-missing")),
    ];
    let auth = Authenticator::new(&[cfg]);
    let mut c = claims();
    c["groups"] = json!(["ml-eng", "admins"]);
    c["realm_access"] = json!({"roles": ["predict", "metadata"], "nested": {"deep": [1, 2]}});
    c["https://example.com/team"] = json!("vision");
    let p = auth
        .authenticate(&bearer(&key.sign(&c)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.claims["realm_access"]["nested"]["deep"], json!([1, 2]));
    assert_eq!(
        p.claim("realm_access.roles"),
        Some(&json!(["predict", "metadata"]))
    );
    let fwd: Vec<(String, String)> = p
        .forward_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        fwd,
        vec![
            ("x-groups".into(), "ml-eng,admins".into()),
            ("x-roles".into(), "predict,metadata".into()),
            ("x-team".into(), "vision".into()),
        ]
    );
    assert_eq!(auth.forwarded_header_names().len(), 4);
}

#[tokio::test]
async fn several_issuers_and_token_locations() {
    let a = TestKey::generate(Algorithm::RS256, "a");
    let b = TestKey::generate(Algorithm::ES256, "b");
    let mut second = issuer(jwks(&[&b]));
    second.issuer = "https://second.test".into();
    second.from_headers = vec![(HeaderName::from_static("x-jwt"), String::new())];
    let auth = Authenticator::new(&[issuer(jwks(&[&a])), second]);
    assert_eq!(check(&auth, &a.sign(&claims())).await, Ok(()));
    let mut c = claims();
    c["iss"] = json!("https://second.test");
    let tb = b.sign(&c);
    let mut h = HeaderMap::new();
    h.insert("x-jwt", HeaderValue::from_str(&tb).unwrap());
    let p = auth.authenticate(&h).await.unwrap().unwrap();
    assert_eq!(p.principal, "https://second.test/alice");
    // The second issuer does not read Authorization: its token there is refused.
    assert!(matches!(
        check(&auth, &tb).await,
        Err(AuthnError::UnknownIssuer(_))
    ));
    // Issuer A's key cannot vouch for issuer B's claims.
    assert!(check(&auth, &a.sign(&c)).await.is_err());
}

#[tokio::test]
async fn garbage_never_panics() {
    let f = fixture();
    let samples = [
        "".to_string(),
        ".".repeat(5000),
        format!("{}.{}.{}", b64(b"[]"), b64(b"{}"), b64(b"")),
        format!("{}.{}.x", b64(br#"{"alg":"RS256","kid":7}"#), b64(b"{}")),
        format!(
            "{}.{}.x",
            b64(br#"{"alg":"RS256"}"#),
            b64(br#"{"iss":["x"]}"#)
        ),
        format!(
            "{}.{}.x",
            b64(br#"{"alg":"RS256","crit":["exp"]}"#),
            b64(br#"{"iss":"https://issuer.test"}"#)
        ),
        format!("{}.{}.x", b64(br#"{"alg":"RS256"}"#), b64(&[b'['; 3000])),
    ];
    for s in samples {
        let _ = f.auth.verify(&s).await;
    }
}
