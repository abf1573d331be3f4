//! `dev_issuer:`: the embedded development OIDC issuer of `infermesh up` — its
//! listen address and the clients allowed the client-credentials grant.

use std::time::Duration;

use crate::addr::socket;
use crate::read::{Cx, Fields, duration, index, list, string};
use crate::security::{DevClientConfig, DevIssuerConfig};
use crate::yaml::Node;

pub(crate) const KEYS: &[&str] = &["listen", "clients"];
pub(crate) const CLIENT_KEYS: &[&str] =
    &["client_id", "client_secret", "groups", "audiences", "ttl"];
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) fn dev_issuer(cx: &mut Cx, node: &Node, path: &str) -> Option<DevIssuerConfig> {
    let f = Fields::read(cx, node, path, KEYS)?;
    let listen = f.req(cx, "listen", socket);
    let clients = f.opt(cx, "clients", clients).unwrap_or_default();
    Some(DevIssuerConfig {
        listen: listen?,
        clients,
    })
}

fn clients(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<DevClientConfig>> {
    let mut out: Vec<DevClientConfig> = Vec::new();
    for (i, item) in list(cx, node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, CLIENT_KEYS) else {
            continue;
        };
        let id = f.req(cx, "client_id", non_empty);
        let secret = f.req(cx, "client_secret", non_empty);
        let groups = f.opt(cx, "groups", strings).unwrap_or_default();
        let audiences = f.opt(cx, "audiences", strings).unwrap_or_default();
        let ttl = f.opt(cx, "ttl", duration).unwrap_or(DEFAULT_TTL);
        if ttl > MAX_TTL {
            let at = f.get("ttl").map_or(f.at, |n| n.at);
            cx.error(at, &f.path_of("ttl"), "must be at most 7d");
        }
        let (Some(client_id), Some(client_secret)) = (id, secret) else {
            continue;
        };
        if out.iter().any(|c| c.client_id == client_id) {
            let at = f.get("client_id").map_or(f.at, |n| n.at);
            let msg = format!("client {client_id:?} is listed twice");
            cx.error(at, &f.path_of("client_id"), msg);
            continue;
        }
        out.push(DevClientConfig {
            client_id,
            client_secret,
            groups,
            audiences,
            ttl,
        });
    }
    Some(out)
}

fn non_empty(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = string(cx, node, path)?;
    if s.is_empty() {
        cx.error(node.at, path, "must not be empty");
        return None;
    }
    Some(s)
}

fn strings(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = list(cx, node, path)?;
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| non_empty(cx, n, &index(path, i)))
            .collect(),
    )
}
