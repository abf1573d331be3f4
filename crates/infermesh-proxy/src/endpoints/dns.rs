//! Host-name endpoints: resolution, periodic re-resolution and the swap of the
//! endpoint list.
//!
//! Every address a host resolves to is one endpoint (a Kubernetes headless service
//! lists its ready pods). Addresses that disappear leave the list; requests already
//! on them finish, since each [`Picked`](super::Picked) owns its endpoint. A lookup
//! that fails, times out or answers nothing keeps the host's last known addresses
//! and logs a warning: a DNS hiccup never empties the set. Endpoints that stay keep
//! their load and outlier state across refreshes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use infermesh_config::Address;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::EndpointSet;
use super::endpoint::Endpoint;

/// A lookup slower than this counts as failed (the last known addresses stay).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Floor of the refresh period, against a busy loop on a zero `dns_refresh`.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Resolves a host name to socket addresses. [`TokioResolver`] in production; tests
/// inject fakes.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, each with `port`.
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver through `tokio::net::lookup_host` (getaddrinfo on tokio's
/// blocking pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioResolver;

impl Resolve for TokioResolver {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// The set's addresses as configured, and what the host names resolved to.
pub(crate) struct Dns {
    fixed: Vec<SocketAddr>,
    hosts: Vec<(String, u16)>,
    resolver: Arc<dyn Resolve>,
    period: Duration,
    /// Last known addresses of each host (same order as `hosts`), sorted. Held for a
    /// whole refresh, so refreshes never interleave.
    known: Mutex<Vec<Vec<SocketAddr>>>,
    /// Every host has resolved at least once.
    resolved_all: AtomicBool,
    /// Dropped with the set, which ends its refresh tasks at once.
    closed: watch::Sender<()>,
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("fixed", &self.fixed)
            .field("hosts", &self.hosts)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Dns {
    pub(crate) fn new(
        addresses: Vec<Address>,
        resolver: Arc<dyn Resolve>,
        period: Duration,
    ) -> Self {
        let mut fixed = Vec::new();
        let mut hosts = Vec::new();
        for address in addresses {
            match address {
                Address::Socket(addr) if !fixed.contains(&addr) => fixed.push(addr),
                Address::Host { host, port } if !hosts.contains(&(host.clone(), port)) => {
                    hosts.push((host, port));
                }
                _ => {}
            }
        }
        let known = Mutex::new(vec![Vec::new(); hosts.len()]);
        Self {
            fixed,
            hosts,
            resolver,
            period,
            known,
            resolved_all: AtomicBool::new(false),
            closed: watch::channel(()).0,
        }
    }

    pub(crate) fn fixed(&self) -> &[SocketAddr] {
        &self.fixed
    }
}

impl EndpointSet {
    /// Resolves every host name once and swaps the endpoint list if it changed.
    /// Hosts whose lookup fails keep their last known addresses.
    pub async fn refresh(&self) {
        let dns = &self.dns;
        if dns.hosts.is_empty() {
            return;
        }
        let mut known = dns.known.lock().await;
        let lookups = dns.hosts.iter().map(|(host, port)| {
            let lookup = dns.resolver.lookup(host, *port);
            tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        });
        let answers = futures::future::join_all(lookups).await;
        for (((host, port), last), answer) in dns.hosts.iter().zip(known.iter_mut()).zip(answers) {
            let failure = match answer {
                Ok(Ok(mut addrs)) if !addrs.is_empty() => {
                    addrs.sort_unstable();
                    addrs.dedup();
                    *last = addrs;
                    continue;
                }
                Ok(Ok(_)) => "no address".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("timed out after {LOOKUP_TIMEOUT:?}"),
            };
            tracing::warn!(
                host = %host,
                port,
                error = %failure,
                kept = last.len(),
                "endpoint lookup failed; keeping the last known addresses"
            );
        }
        dns.resolved_all.store(
            known.iter().all(|addrs| !addrs.is_empty()),
            Ordering::Relaxed,
        );
        let mut wanted = dns.fixed.clone();
        for addr in known.iter().flatten() {
            if !wanted.contains(addr) {
                wanted.push(*addr);
            }
        }
        // Still under `known`'s lock: list swaps are serialized too.
        self.replace(&wanted);
    }

    /// Spawns the task that re-resolves host names every `dns_refresh` (at once if
    /// some host has never resolved). It ends when the set is dropped; with no host
    /// names it ends at once. Call it inside a tokio runtime (it uses `tokio::spawn`).
    pub fn spawn_refresh(self: &Arc<Self>) -> JoinHandle<()> {
        let set = Arc::downgrade(self);
        let mut closed = self.dns.closed.subscribe();
        let period = self.dns.period.max(MIN_PERIOD);
        let has_hosts = !self.dns.hosts.is_empty();
        let mut due = !self.dns.resolved_all.load(Ordering::Relaxed);
        tokio::spawn(async move {
            if !has_hosts {
                return;
            }
            loop {
                if due {
                    let Some(set) = set.upgrade() else { return };
                    set.refresh().await;
                }
                due = true;
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    _ = closed.changed() => return,
                }
            }
        })
    }

    /// Makes `wanted` the endpoint list, keeping the existing endpoint (and its
    /// state) for every address that stays.
    fn replace(&self, wanted: &[SocketAddr]) {
        let current = self.shared.endpoints.load_full();
        if current.iter().map(|e| e.addr).eq(wanted.iter().copied()) {
            return;
        }
        let next: Vec<Arc<Endpoint>> = wanted
            .iter()
            .map(|addr| {
                current
                    .iter()
                    .find(|e| e.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*addr)))
            })
            .collect();
        let added: Vec<SocketAddr> = wanted
            .iter()
            .filter(|addr| !current.iter().any(|e| e.addr == **addr))
            .copied()
            .collect();
        let removed: Vec<SocketAddr> = current
            .iter()
            .map(|e| e.addr)
            .filter(|addr| !wanted.contains(addr))
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                ?added,
                ?removed,
                endpoints = next.len(),
                "endpoints changed"
            );
        }
        self.shared.endpoints.store(Arc::new(next));
    }
}
