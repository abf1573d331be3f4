//! Fetching signing keys: OIDC discovery (`<issuer>/.well-known/openid-configuration`
//! → `jwks_uri`) and JWKS documents, over http (loopback, tests) or https (rustls
//! with the system trust store). Every fetch is bounded in time and size.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::jwks::{KeySet, MAX_JWKS_BYTES};

/// Largest discovery document accepted (bytes).
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// A small HTTP client for discovery and JWKS documents.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl Fetcher {
    /// A client with rustls (aws-lc-rs) and the system trust store; without system
    /// roots, https fetches fail (loudly) while http keeps working.
    pub(crate) fn new(timeout: Duration) -> Result<Fetcher, String> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system trust roots; https JWKS fetches will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS client config: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        // No pooling: fetches are minutes apart, and a pooled connection the IdP has
        // since closed would fail the very refetch an unknown kid needs.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Fetcher { client, timeout })
    }

    /// GET `url`, expecting 200 and at most `limit` bytes of body.
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(format!("URL {url:?} is not http(s)")),
        }
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "infermesh-authn")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if resp.status() != http::StatusCode::OK {
                return Err(format!("GET {url}: status {}", resp.status()));
            }
            let body = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| format!("GET {url}: body: {e}"))?;
            Ok(body.to_bytes())
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("GET {url}: timed out after {:?}", self.timeout)),
        }
    }

    /// The `jwks_uri` from the issuer's discovery document; its `issuer` must be
    /// exactly the configured one (OIDC Discovery §4.3).
    pub(crate) async fn discover_jwks_uri(&self, issuer: &str) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get(&url, MAX_DISCOVERY_BYTES).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("discovery document: {e}"))?;
        let found = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
        if found != issuer {
            return Err(format!(
                "discovery document names issuer {found:?}, expected {issuer:?}"
            ));
        }
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| "discovery document has no jwks_uri".to_owned())
    }

    pub(crate) async fn fetch_jwks(&self, uri: &str) -> Result<KeySet, String> {
        let body = self.get(uri, MAX_JWKS_BYTES).await?;
        KeySet::parse(&body).map_err(|e| format!("{uri}: {e}"))
    }
}
