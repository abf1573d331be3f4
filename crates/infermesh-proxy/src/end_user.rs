//! The end user's identity across the gateway → sidecar hop. The gateway puts the
//! verified request principal (and its audiences and claims) in
//! `x-infermesh-end-user` (base64url JSON), after removing any copy the client
//! sent. A sidecar believes that header only when the mTLS peer is the configured
//! gateway identity; from anyone else it is dropped. The sidecar then knows both who
//! called ([`PeerIdentity`], from mTLS) and on whose behalf ([`RequestAuth`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use http::request::Parts;
use infermesh_config::MeshConfig;

use crate::identity::{PeerIdentity, RequestAuth};
use crate::pipeline::Role;

/// The header the gateway forwards the end user's identity in.
pub const END_USER_HEADER: &str = "x-infermesh-end-user";

/// After authentication: the gateway sets the header from the verified principal
/// (never from the client); the sidecar turns a gateway's header into
/// [`RequestAuth`] when it verified no token of its own.
pub fn carry(role: &Role, config: &MeshConfig, parts: &mut Parts, peer: Option<&PeerIdentity>) {
    let forwarded = parts.headers.remove(END_USER_HEADER);
    match role {
        Role::Gateway => {
            if let Some(auth) = parts.extensions.get::<RequestAuth>()
                && let Some(value) = encode(auth)
            {
                parts.headers.insert(END_USER_HEADER, value);
            }
        }
        Role::Sidecar { .. } => {
            let Some(value) = forwarded else { return };
            let from_gateway = match (peer, crate::mtls::gateway_id(config)) {
                (Some(peer), Ok(gateway)) => *peer.principal == *gateway.principal(),
                _ => false,
            };
            if !from_gateway {
                tracing::debug!("end-user header not from the gateway identity: dropped");
                return;
            }
            if parts.extensions.get::<RequestAuth>().is_none() {
                match decode(&value) {
                    Some(auth) => {
                        parts.extensions.insert(auth);
                    }
                    None => tracing::warn!("unreadable end-user header from the gateway: ignored"),
                }
            }
        }
    }
}

fn encode(auth: &RequestAuth) -> Option<HeaderValue> {
    let json = serde_json::json!({
        "principal": auth.principal,
        "audiences": auth.audiences,
        "claims": auth.claims,
    });
    let text = URL_SAFE_NO_PAD.encode(json.to_string());
    HeaderValue::from_str(&text).ok()
}

fn decode(value: &HeaderValue) -> Option<RequestAuth> {
    let bytes = URL_SAFE_NO_PAD.decode(value.as_bytes()).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(RequestAuth {
        principal: json.get("principal")?.as_str()?.to_owned(),
        audiences: json
            .get("audiences")?
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        claims: json.get("claims")?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        http::Request::new(()).into_parts().0
    }

    fn config() -> MeshConfig {
        crate::tests::mesh(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
    }

    fn auth() -> RequestAuth {
        RequestAuth {
            principal: "https://issuer/alice".into(),
            audiences: vec!["infermesh".into()],
            claims: serde_json::json!({"sub": "alice", "groups": ["ml-eng"]}),
        }
    }

    #[test]
    fn the_gateway_replaces_a_client_copy_with_the_verified_principal() {
        let config = config();
        let mut p = parts();
        p.headers
            .insert(END_USER_HEADER, HeaderValue::from_static("forged"));
        carry(&Role::Gateway, &config, &mut p, None);
        assert!(
            p.headers.get(END_USER_HEADER).is_none(),
            "no principal: no header"
        );
        p.extensions.insert(auth());
        p.headers
            .insert(END_USER_HEADER, HeaderValue::from_static("forged"));
        carry(&Role::Gateway, &config, &mut p, None);
        let value = p.headers[END_USER_HEADER].clone();
        assert_eq!(decode(&value), Some(auth()));
    }

    #[test]
    fn a_sidecar_believes_only_the_gateway_identity() {
        let config = config();
        let sidecar = Role::Sidecar {
            workload: "w".into(),
        };
        let value = encode(&auth()).unwrap();
        for (peer, believed) in [
            (None, false),
            (Some("cluster.local/ns/ml/sa/intruder"), false),
            (Some("cluster.local/ns/infermesh/sa/gateway"), true),
        ] {
            let mut p = parts();
            p.headers.insert(END_USER_HEADER, value.clone());
            let peer_identity = peer.map(|principal| PeerIdentity {
                principal: principal.into(),
            });
            carry(&sidecar, &config, &mut p, peer_identity.as_ref());
            assert_eq!(
                p.extensions.get::<RequestAuth>().is_some(),
                believed,
                "{peer:?}"
            );
            assert!(p.headers.get(END_USER_HEADER).is_none());
        }
    }
}
