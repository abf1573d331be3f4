//! JWT verification cost with cached keys, per algorithm: the whole
//! `Authenticator::authenticate` path (header lookup, peek, key lookup, signature,
//! claim checks, principal) on a current-thread runtime. Targets: ≤ 50 µs per
//! RS256, ≤ 100 µs per ES256.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use infermesh_authn::Authenticator;
use infermesh_authn::testkit::{TestKey, jwks, now};
use infermesh_config::{Issuer, JwksSource};
use jsonwebtoken::Algorithm;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("jwt_verify");
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let key = TestKey::generate(alg, "bench");
        let auth = Authenticator::new(&[Issuer {
            issuer: "https://issuer.bench".into(),
            jwks: JwksSource::Inline(jwks(&[&key])),
            audiences: vec!["infermesh".into()],
            from_headers: vec![],
            forward_claims: vec![],
            clock_skew: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
        }]);
        let t = now();
        let token = key.sign(&json!({
            "iss": "https://issuer.bench", "sub": "alice", "aud": "infermesh",
            "iat": t, "exp": t + 86400, "groups": ["ml-eng"],
        }));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        assert!(
            rt.block_on(auth.authenticate(&headers))
                .is_ok_and(|p| p.is_some())
        );
        group.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| rt.block_on(auth.authenticate(&headers)))
        });
    }
    group.finish();
}

/// The bare signature checks (aws-lc-rs, no JWT around them): the floor that the
/// numbers above sit on, measured in the same run (this VM is shared; compare the
/// ratio, not only the absolute time).
fn primitives(c: &mut Criterion) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self as sig, KeyPair as _};
    let rng = SystemRandom::new();
    let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    let mut group = c.benchmark_group("signature_only");

    let ec = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
    let ec_sig = ec.sign(&rng, msg).expect("sign");
    let ec_pub = sig::UnparsedPublicKey::new(
        &sig::ECDSA_P256_SHA256_FIXED,
        ec.public_key().as_ref().to_vec(),
    );
    assert!(ec_pub.verify(msg, ec_sig.as_ref()).is_ok());
    group.bench_function("ES256", |b| b.iter(|| ec_pub.verify(msg, ec_sig.as_ref())));

    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let mut rsa_sig = vec![0u8; rsa.public_modulus_len()];
    rsa.sign(&sig::RSA_PKCS1_SHA256, &rng, msg, &mut rsa_sig)
        .expect("sign");
    let rsa_pub = sig::UnparsedPublicKey::new(
        &sig::RSA_PKCS1_2048_8192_SHA256,
        rsa.public_key().as_ref().to_vec(),
    );
    assert!(rsa_pub.verify(msg, &rsa_sig).is_ok());
    group.bench_function("RS256", |b| b.iter(|| rsa_pub.verify(msg, &rsa_sig)));
    group.finish();
}

criterion_group!(benches, bench, primitives);
criterion_main!(benches);
