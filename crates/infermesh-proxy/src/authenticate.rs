//! The authenticate stage: verifies the request's JWT with the mesh's issuers
//! (`infermesh-authn`) and puts the verified principal on the request as
//! [`RequestAuth`]. No token: no principal (policies decide). An invalid token:
//! [`Failure::Unauthenticated`] (401 / UNAUTHENTICATED). Headers that carry forwarded
//! claims are removed from what the client sent before the verified values are set,
//! so a client cannot forge them.
//!
//! The [`Authenticator`] (its key cache and refresh tasks) lives as long as the
//! issuers stay the same: a config swap that changes only routes keeps the keys.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::request::Parts;
use infermesh_authn::Authenticator;
use infermesh_config::{Issuer, MeshConfig};
use infermesh_telemetry::Metrics;

use crate::error::Failure;
use crate::identity::RequestAuth;

/// The authenticator of the issuers in use.
pub struct Authenticators(ArcSwap<Current>);

struct Current {
    issuers: Vec<Issuer>,
    authenticator: Arc<Authenticator>,
}

impl std::fmt::Debug for Authenticators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticators")
            .field("issuers", &self.0.load().issuers.len())
            .finish()
    }
}

fn build(issuers: &[Issuer]) -> Arc<Authenticator> {
    let authenticator = Arc::new(Authenticator::new(issuers));
    // The refresh tasks end when the authenticator is dropped.
    drop(authenticator.spawn_refresh());
    authenticator
}

impl Authenticators {
    /// Must be called inside a tokio runtime (it starts the key refresh tasks).
    pub fn new(config: &MeshConfig) -> Authenticators {
        Authenticators(ArcSwap::from_pointee(Current {
            issuers: config.issuers.clone(),
            authenticator: build(&config.issuers),
        }))
    }

    /// The authenticator for `config`'s issuers; rebuilt only when they changed.
    pub fn get(&self, config: &MeshConfig) -> Arc<Authenticator> {
        let current = self.0.load();
        if current.issuers == config.issuers {
            return current.authenticator.clone();
        }
        let authenticator = build(&config.issuers);
        self.0.store(Arc::new(Current {
            issuers: config.issuers.clone(),
            authenticator: authenticator.clone(),
        }));
        authenticator
    }
}

/// Stage 3: who is calling, on whose behalf.
pub async fn authenticate(
    authenticator: &Authenticator,
    request: &mut Parts,
    metrics: &Metrics,
) -> Result<(), Failure> {
    for name in authenticator.forwarded_header_names() {
        request.headers.remove(name);
    }
    match authenticator.authenticate(&request.headers).await {
        Ok(None) => Ok(()),
        Ok(Some(principal)) => {
            // A verified token's issuer is one the config lists.
            let issuer = principal.claims.get("iss").and_then(|v| v.as_str());
            metrics.jwt(issuer.unwrap_or("unknown"), true);
            for (name, value) in &principal.forward_headers {
                request.headers.insert(name.clone(), value.clone());
            }
            request.extensions.insert(RequestAuth {
                principal: principal.principal.clone(),
                audiences: principal.audiences.clone(),
                claims: principal.claims.clone(),
            });
            Ok(())
        }
        Err(error) => {
            // The issuer of a rejected token is not trusted input: not a label.
            metrics.jwt("unknown", false);
            tracing::debug!(%error, kind = error.kind(), "request token rejected");
            Err(Failure::Unauthenticated)
        }
    }
}
