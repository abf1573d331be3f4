//! The endpoints of one workload as a gateway sees them, and the choice of one per
//! attempt.
//!
//! * Socket addresses from the config are fixed endpoints; host names are resolved
//!   ([`EndpointSet::refresh`]) and re-resolved every `dns_refresh` by
//!   [`EndpointSet::spawn_refresh`]: each resolved address is one endpoint. A failed
//!   lookup keeps the host's last known addresses (`dns.rs`).
//! * [`EndpointSet::pick`] balances by power of two choices on requests in flight
//!   (`p2c.rs`) and skips ejected endpoints unless all are ejected.
//! * [`Picked::report`] feeds passive outlier detection (`outlier.rs`).
//!
//! The pick path takes no lock: the endpoint list is an `ArcSwap` replaced whole by
//! DNS refreshes, and each endpoint's load and outlier state are atomics.

mod clock;
mod dns;
#[cfg(test)]
mod dns_tests;
mod endpoint;
mod outlier;
mod p2c;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use infermesh_config::{Address, OutlierDetection};

use self::clock::Clock;
use self::dns::Dns;
use self::endpoint::Endpoint;

pub use self::dns::{Resolve, TokioResolver};
#[cfg(test)]
pub(crate) use self::endpoint::uri_authority;
pub use self::endpoint::{EndpointStatus, Outcome, Picked};

/// Step between per-pick RNG seeds (the golden-ratio Weyl increment): successive
/// seeds differ in many bits, so successive draws are independent enough for P2C.
const SEED_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// The endpoints of one workload. Shared as `Arc<EndpointSet>`.
#[derive(Debug)]
pub struct EndpointSet {
    shared: Arc<Shared>,
    /// Seed of the next pick's RNG: no global or thread-local random state, and a
    /// test can fix it.
    seed: AtomicU64,
    dns: Dns,
}

/// What a [`Picked`] needs after the pick: the current list (to bound ejections)
/// and the outlier settings.
#[derive(Debug)]
pub(crate) struct Shared {
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    outlier: OutlierDetection,
    clock: Clock,
    /// Serializes ejection decisions (rare) so `max_ejection_percent` holds.
    eject_lock: Mutex<()>,
}

impl EndpointSet {
    /// A set over `addresses`, resolving host names with tokio's resolver. Host
    /// names contribute no endpoint until the first [`refresh`](Self::refresh):
    /// await it (or let [`spawn_refresh`](Self::spawn_refresh) do it) before serving.
    pub fn new(
        addresses: Vec<Address>,
        outlier: OutlierDetection,
        dns_refresh: Duration,
    ) -> Arc<Self> {
        Self::with_resolver(addresses, outlier, dns_refresh, Arc::new(TokioResolver))
    }

    /// As [`new`](Self::new), resolving host names with `resolver`.
    pub fn with_resolver(
        addresses: Vec<Address>,
        outlier: OutlierDetection,
        dns_refresh: Duration,
        resolver: Arc<dyn Resolve>,
    ) -> Arc<Self> {
        Self::build(
            addresses,
            outlier,
            dns_refresh,
            resolver,
            Clock::system(),
            fastrand::u64(..),
        )
    }

    fn build(
        addresses: Vec<Address>,
        outlier: OutlierDetection,
        dns_refresh: Duration,
        resolver: Arc<dyn Resolve>,
        clock: Clock,
        seed: u64,
    ) -> Arc<Self> {
        let dns = Dns::new(addresses, resolver, dns_refresh);
        let endpoints = dns
            .fixed()
            .iter()
            .map(|addr| Arc::new(Endpoint::new(*addr)))
            .collect();
        Arc::new(Self {
            shared: Arc::new(Shared {
                endpoints: ArcSwap::from_pointee(endpoints),
                outlier,
                clock,
                eject_lock: Mutex::new(()),
            }),
            seed: AtomicU64::new(seed),
            dns,
        })
    }

    /// An endpoint for one attempt: the less loaded of two drawn at random among
    /// those not ejected (among all when every one is ejected). `None` only when the
    /// set is empty (no fixed address and no host resolved yet).
    pub fn pick(&self) -> Option<Picked> {
        let endpoints = self.shared.endpoints.load();
        let now = self.shared.clock.now();
        let seed = self.seed.fetch_add(SEED_STEP, Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let index = p2c::choose(&endpoints, now, &mut rng)?;
        let endpoint = endpoints.get(index)?.clone();
        Some(Picked::new(endpoint, self.shared.clone()))
    }

    /// Number of endpoints (ejected ones included).
    pub fn len(&self) -> usize {
        self.shared.endpoints.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoints' addresses: fixed ones first, then resolved ones.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .endpoints
            .load()
            .iter()
            .map(|e| e.addr)
            .collect()
    }

    /// Load and outlier state of every endpoint.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let now = self.shared.clock.now();
        let endpoints = self.shared.endpoints.load();
        endpoints.iter().map(|e| e.status(now)).collect()
    }
}
