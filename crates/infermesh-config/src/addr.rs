//! Addresses in `mesh.yaml`: `ip:port` socket addresses for listeners, `ip:port` or
//! `host:port` for the places the mesh connects to, and the check that no two
//! listeners claim the same port.

use std::net::SocketAddr;

use crate::model::Address;
use crate::read::{Cx, dns_subdomain_problem, string};
use crate::yaml::{Node, Pos};

/// A listener address: `ip:port` (`[::1]:15006` for IPv6), port not 0.
pub(crate) fn socket(cx: &mut Cx, node: &Node, path: &str) -> Option<SocketAddr> {
    let text = string(cx, node, path)?;
    match text.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            cx.error(node.at, path, format!("{text:?}: port 0 is not allowed"));
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            let msg = format!("{text:?} is not an `ip:port` address (e.g. `127.0.0.1:15006`)");
            cx.error(node.at, path, msg);
            None
        }
    }
}

/// An address to connect to: `ip:port`, or `host:port` with a DNS host name.
pub(crate) fn address(cx: &mut Cx, node: &Node, path: &str) -> Option<Address> {
    let text = string(cx, node, path)?;
    match parse_address(text.trim()) {
        Ok(a) => Some(a),
        Err(why) => {
            cx.error(
                node.at,
                path,
                format!("{text:?} is not a valid address: {why}"),
            );
            None
        }
    }
}

fn parse_address(text: &str) -> Result<Address, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err("port 0 is not allowed".into());
        }
        return Ok(Address::Socket(a));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("expected `host:port` or `ip:port`".into());
    };
    let port = match port.parse::<u16>() {
        Ok(0) => return Err("port 0 is not allowed".into()),
        Ok(p) => p,
        Err(_) => return Err(format!("{port:?} is not a port number (1 to 65535)")),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.starts_with('[') || host.contains(':') {
        return Err("IPv6 addresses are written `[::1]:port`".into());
    }
    if host
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    if let Some(problem) = dns_subdomain_problem(&host) {
        return Err(format!("host name {host:?}: {problem}"));
    }
    Ok(Address::Host { host, port })
}

/// One socket address named somewhere in the file.
pub(crate) struct Claim {
    pub addr: SocketAddr,
    pub at: Pos,
    pub path: String,
}

/// The sockets the file names: what mesh processes listen on, and the external model
/// servers sidecars forward to.
#[derive(Default)]
pub(crate) struct Sockets {
    /// Gateway and admin listeners, sidecars, embedded model servers.
    pub listeners: Vec<Claim>,
    /// Upstreams of workloads without an embedded model server.
    pub targets: Vec<Claim>,
}

/// Reports every listener whose port is already claimed earlier in the file (same
/// IP, or either side the unspecified address `0.0.0.0` / `[::]`), and every listener
/// on an external model server's address.
pub(crate) fn check_conflicts(cx: &mut Cx, mut sockets: Sockets) {
    sockets.listeners.sort_by_key(|c| c.at);
    let listeners = &sockets.listeners;
    for (i, later) in listeners.iter().enumerate() {
        if let Some(first) = listeners[..i].iter().find(|c| overlaps(c.addr, later.addr)) {
            let msg = format!(
                "{} is already used by `{}` (line {})",
                later.addr, first.path, first.at.line
            );
            cx.error(later.at, &later.path, msg);
        }
    }
    for listener in listeners {
        if let Some(target) = sockets
            .targets
            .iter()
            .find(|t| overlaps(t.addr, listener.addr))
        {
            let msg = format!(
                "{} is also the model server address `{}` (line {}): requests would loop",
                listener.addr, target.path, target.at.line
            );
            cx.error(listener.at, &listener.path, msg);
        }
    }
}

fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockets_and_host_names() {
        let sock: SocketAddr = "127.0.0.1:9500".parse().unwrap();
        assert_eq!(parse_address("127.0.0.1:9500"), Ok(Address::Socket(sock)));
        assert_eq!(
            parse_address("TFServing-A.ml.svc.:15006"),
            Ok(Address::Host {
                host: "tfserving-a.ml.svc".into(),
                port: 15006
            })
        );
        assert!(parse_address("[::1]:80").is_ok());
        for bad in [
            "localhost",
            "localhost:0",
            "localhost:http",
            "::1:80",
            "300.1.1.1:80",
            "under_score:80",
            ":80",
            "a..b:80",
        ] {
            assert!(parse_address(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unspecified_overlaps_same_family_only() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.1:81")));
        assert!(!overlaps(a("[::]:80"), a("127.0.0.1:80")));
    }
}
