//! Shared helpers: build an authorizer from mesh.yaml text and decide one request
//! given as identities plus a `policy check` request line.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};
use infermesh_authz::{Authorizer, AuthzRequest, CheckRequest, Decision};
use infermesh_config::{EscapedSlashes, MeshConfig};

pub const WORKLOAD: &str = "
workloads:
  - {name: w, namespace: ml, listen: 127.0.0.1:15006,
     upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}
";

pub fn config(text: &str) -> MeshConfig {
    match infermesh_config::parse(text, Path::new("mesh.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("test mesh does not parse:\n{e}"),
    }
}

pub fn authorizer(text: &str) -> Authorizer {
    Authorizer::new(&config(text))
}

/// Who is calling, and how.
#[derive(Clone, Default)]
pub struct Who {
    pub peer: Option<&'static str>,
    pub principal: Option<&'static str>,
    pub claims: Option<serde_json::Value>,
    pub audiences: Vec<String>,
    pub ip: Option<IpAddr>,
    pub host: Option<&'static str>,
    pub port: Option<u16>,
    pub headers: HeaderMap,
}

impl Who {
    pub fn jwt(principal: &'static str, claims: serde_json::Value) -> Who {
        Who {
            principal: Some(principal),
            claims: Some(claims),
            ..Who::default()
        }
    }

    pub fn peer(peer: &'static str) -> Who {
        Who {
            peer: Some(peer),
            ..Who::default()
        }
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Who {
        self.headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        self
    }

    pub fn ip(mut self, ip: &str) -> Who {
        self.ip = ip.parse().ok();
        self
    }

    pub fn aud(mut self, aud: &str) -> Who {
        self.audiences.push(aud.to_owned());
        self
    }
}

/// Decides `line` (a `policy check` request line) for `who`.
pub fn decide(a: &Authorizer, who: &Who, line: &str) -> Decision {
    let check = CheckRequest::parse(line, EscapedSlashes::Reject)
        .unwrap_or_else(|e| panic!("bad request line {line:?}: {e}"));
    let base = AuthzRequest {
        peer_principal: who.peer,
        request_principal: who.principal,
        claims: who.claims.as_ref(),
        audiences: &who.audiences,
        source_ip: who.ip,
        host: who.host,
        port: who.port,
        headers: Some(&who.headers),
        ..AuthzRequest::default()
    };
    a.authorize(&check.authz(base))
}
