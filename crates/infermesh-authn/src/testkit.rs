//! Test and benchmark helpers (feature `test-util`): signing keys of every
//! supported algorithm with their JWKs, token minting, and a stoppable loopback
//! JWKS / discovery server whose document can be swapped and whose hits are
//! counted. Not for production use.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A signing key for tests.
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    /// Public JWK with `kid` (and no `alg`).
    pub jwk: Jwk,
    /// RSA keys: the public key as SPKI PEM (for key-confusion attacks).
    pub public_pem: Option<String>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl TestKey {
    /// Generates a key for `alg` (RS*, PS*, ES256, ES384, EdDSA). Panics on other
    /// algorithms: test code only.
    pub fn generate(alg: Algorithm, kid: &str) -> TestKey {
        crate::ensure_crypto_provider();
        let rng = SystemRandom::new();
        let (encoding, public_pem) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("rsa keygen");
                let der =
                    aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
                        .expect("pkcs8");
                let public = kp.public_key().as_der().expect("spki");
                let enc = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", der.as_ref()).as_bytes())
                    .expect("rsa pem");
                (enc, Some(pem("PUBLIC KEY", public.as_ref())))
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let curve = if alg == Algorithm::ES256 {
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &sig::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let doc = sig::EcdsaKeyPair::generate_pkcs8(curve, &rng).expect("ec keygen");
                (EncodingKey::from_ec_der(doc.as_ref()), None)
            }
            Algorithm::EdDSA => {
                let doc = sig::Ed25519KeyPair::generate_pkcs8v1(&rng).expect("ed keygen");
                (EncodingKey::from_ed_der(doc.as_ref()), None)
            }
            other => panic!("no test key for {other:?}"),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.key_algorithm = None;
        TestKey {
            alg,
            kid: kid.to_owned(),
            encoding,
            jwk,
            public_pem,
        }
    }

    /// The JWK as JSON, with `alg` set when `with_alg`.
    pub fn jwk_json(&self, with_alg: bool) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.jwk).unwrap_or_default();
        if with_alg {
            v["alg"] = serde_json::to_value(self.alg).unwrap_or_default();
        }
        v
    }

    /// A token with header `{alg, kid, typ: JWT}` over `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        self.sign_with(&header, claims)
    }

    /// A token with the given header.
    pub fn sign_with(&self, header: &Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign")
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&TestKey]) -> String {
    let keys: Vec<serde_json::Value> = keys.iter().map(|k| k.jwk_json(false)).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A loopback server for `/jwks` and `/.well-known/openid-configuration`.
pub struct JwksServer {
    /// `http://127.0.0.1:<port>`: use it as the issuer for discovery.
    pub url: String,
    doc: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JwksServer {
    pub async fn start(doc: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let doc = Arc::new(Mutex::new(doc));
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (d, h, u) = (doc.clone(), hits.clone(), url.clone());
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let (d, h, u) = (d.clone(), h.clone(), u.clone());
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let body = if req.uri().path() == "/jwks" {
                        h.fetch_add(1, Ordering::SeqCst);
                        d.lock().map(|g| g.clone()).unwrap_or_default()
                    } else {
                        serde_json::json!({"issuer": u, "jwks_uri": format!("{u}/jwks")})
                            .to_string()
                    };
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JwksServer {
            url,
            doc,
            hits,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// Replaces the served JWKS.
    pub fn set(&self, doc: String) {
        if let Ok(mut g) = self.doc.lock() {
            *g = doc;
        }
    }

    /// How many times `/jwks` was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops listening (connections are refused afterwards).
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
