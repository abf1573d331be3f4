//! The authorize stage: builds the [`AuthzRequest`] from what earlier stages put on
//! the request (connection, identities, the normalized path, the [`ModelRequest`],
//! the version routing chose) and asks the config's [`Authorizer`]. Fails closed:
//! anything unknown is decided by the engine's fail-closed rules, a denial becomes
//! [`Failure::Denied`] (403 / PERMISSION_DENIED, nothing about the policies); the
//! deciding policy and rule go to the debug log.
//!
//! The [`Authorizer`] is compiled once per configuration value ([`Authorizers`]): a
//! request uses the one compiled from the same `Arc<MeshConfig>` it reads, so a
//! swapped config is compiled once, by the first request that sees it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header;
use http::request::Parts;
use infermesh_authz::{Authorizer, AuthzRequest, Decision, ModelOp};
use infermesh_config::MeshConfig;

use crate::body::{ReadUpTo, RequestBody};
use crate::error::Failure;
use crate::identity::{Caller, RequestAuth};
use crate::inspect::{Inspected, Protocol};
use crate::signature::rest_signature;

/// The [`Authorizer`] of the configuration in use, compiled once per config value
/// (keyed by the `Arc`'s identity).
#[derive(Debug)]
pub struct Authorizers(ArcSwap<Compiled>);

#[derive(Debug)]
struct Compiled {
    config: Arc<MeshConfig>,
    authorizer: Arc<Authorizer>,
}

impl Authorizers {
    pub fn new(config: Arc<MeshConfig>) -> Authorizers {
        let authorizer = Arc::new(Authorizer::new(&config));
        Authorizers(ArcSwap::from_pointee(Compiled { config, authorizer }))
    }

    /// The authorizer compiled from `config`; compiles it if the config changed.
    pub fn get(&self, config: &Arc<MeshConfig>) -> Arc<Authorizer> {
        let current = self.0.load();
        if Arc::ptr_eq(&current.config, config) {
            return current.authorizer.clone();
        }
        let authorizer = Arc::new(Authorizer::new(config));
        self.0.store(Arc::new(Compiled {
            config: config.clone(),
            authorizer: authorizer.clone(),
        }));
        authorizer
    }
}

/// The signature the request names, when policies need it: gRPC from its
/// `ModelSpec`; REST from the body's `signature_name`, read whole (up to the body
/// limit) only if some policy tests signatures, else left unknown and streaming.
pub async fn signature(
    authorizer: &Authorizer,
    inspected: &Inspected,
    body: RequestBody,
    limit: u64,
) -> Result<(Option<String>, RequestBody), Failure> {
    let model = &inspected.model;
    if model.protocol == Protocol::Grpc {
        return Ok((model.signature.clone(), body));
    }
    if !authorizer.uses_signatures() || !model.api.is_inference() {
        return Ok((None, body));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (body, read) = body.read_up_to(limit).await.map_err(Failure::client_body)?;
    let signature = match read {
        ReadUpTo::Complete => rest_signature(body.head()),
        ReadUpTo::Partial => None,
    };
    Ok((signature, body))
}

/// The request as policies see it, for `version` (the one routing chose, or the one
/// the request names; `None`: not known).
pub fn request<'a>(
    parts: &'a Parts,
    caller: &'a Caller,
    inspected: &'a Inspected,
    version: Option<i64>,
    signature: Option<&'a str>,
) -> AuthzRequest<'a> {
    let connection = caller.connection.as_ref();
    // Set by the authenticate stage once authn is wired; absent: no principal.
    let auth = parts.extensions.get::<RequestAuth>();
    let model = &inspected.model;
    AuthzRequest {
        peer_principal: caller.peer.as_ref().map(|p| &*p.principal),
        peer_namespace: None,
        request_principal: auth.map(|a| a.principal.as_str()),
        claims: auth.map(|a| &a.claims),
        audiences: auth.map_or(&[], |a| a.audiences.as_slice()),
        source_ip: connection.map(|c| c.peer.ip()),
        host: host(parts),
        port: connection.map(|c| c.local.port()),
        method: parts.method.as_str(),
        path: &inspected.path,
        headers: Some(&parts.headers),
        model: Some(ModelOp {
            name: &model.model,
            version,
            label: model.named_label(),
            signature,
            api: model.api,
        }),
    }
}

/// Asks the authorizer; logs what decided (policy names stay in the log).
pub fn decide(authorizer: &Authorizer, request: &AuthzRequest<'_>) -> Decision {
    let decision = authorizer.authorize(request);
    let deciding = decision.deciding.as_ref();
    tracing::debug!(
        allowed = decision.allowed,
        basis = ?decision.basis,
        policy = deciding.map(|d| &*d.policy),
        rule = deciding.map(|d| d.rule),
        model = request.model.map(|m| m.name),
        version = request.model.and_then(|m| m.version),
        "authorization"
    );
    decision
}

/// `:authority` (HTTP/2, absolute-form) or `Host`, without the port.
fn host(parts: &Parts) -> Option<&str> {
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => parts.headers.get(header::HOST)?.to_str().ok()?,
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(strip_port(authority))
}

fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn hosts_lose_their_port_only() {
        assert_eq!(strip_port("example.com:8501"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8501"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }
}
