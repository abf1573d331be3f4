//! One endpoint (one socket address of a workload's sidecar) and the guard a request
//! holds while it uses it. All per-endpoint state is atomics, so the pick path reads
//! it without locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use http::uri::Authority;

use super::Shared;

/// How one attempt on an endpoint ended, as far as outlier detection cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered (any answer that is not a server error).
    Success,
    /// No connection could be made (refused, reset during connect, connect timeout).
    ConnectFailure,
    /// The endpoint answered with a server error (HTTP 5xx, gRPC UNAVAILABLE/INTERNAL).
    ServerError,
}

/// A snapshot of one endpoint, for the admin listener and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub addr: SocketAddr,
    /// Requests currently using it.
    pub in_flight: usize,
    /// Failures since its last success or ejection.
    pub consecutive_failures: u32,
    /// Ejected from load balancing right now.
    pub ejected: bool,
    /// Times it has been ejected (the current ejection multiplier).
    pub ejections: u32,
}

/// One endpoint with its load and outlier state.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// `addr` as a URI authority, written once: every attempt's URI clones it, and
    /// so do hyper-util's pool key and request line, sharing one buffer. `None`
    /// only if the address could not be written as one (a socket address always
    /// can); attempts then fail as an invalid upstream URI.
    authority: Option<Authority>,
    /// Requests holding a [`Picked`] for it.
    pub(crate) in_flight: AtomicUsize,
    /// Consecutive connect failures / server errors.
    pub(crate) failures: AtomicU32,
    /// Times ejected; reset when it stayed healthy for the longest ejection time.
    pub(crate) ejections: AtomicU32,
    /// End of its latest ejection (clock nanoseconds); in the past once it is back.
    pub(crate) ejected_until: AtomicU64,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            authority: uri_authority(addr).ok(),
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    pub(crate) fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn status(&self, now: u64) -> EndpointStatus {
        EndpointStatus {
            addr: self.addr,
            in_flight: self.load(),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            ejected: self.is_ejected(now),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }
}

/// An endpoint chosen for one attempt. Counts as in flight on it until dropped;
/// [`Picked::report`] also feeds the outcome to outlier detection.
#[derive(Debug)]
pub struct Picked {
    endpoint: Arc<Endpoint>,
    shared: Arc<Shared>,
}

impl Picked {
    /// Takes an in-flight slot on `endpoint`.
    pub(crate) fn new(endpoint: Arc<Endpoint>, shared: Arc<Shared>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { endpoint, shared }
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// The endpoint's address as a URI authority (a shared buffer: cloning it
    /// allocates nothing); `None` if it could not be written as one.
    pub fn authority(&self) -> Option<Authority> {
        self.endpoint.authority.clone()
    }

    /// Records how the attempt ended and releases the in-flight slot. An endpoint
    /// removed from the set meanwhile (DNS) still counts its failures but is never
    /// ejected: it no longer takes traffic anyway.
    pub fn report(self, outcome: Outcome) {
        self.shared.record(&self.endpoint, outcome);
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `addr` as a URI authority: `a.b.c.d:port`, or `[v6]:port` as `SocketAddr` prints it.
pub(crate) fn uri_authority(addr: SocketAddr) -> Result<Authority, http::uri::InvalidUri> {
    let SocketAddr::V4(v4) = addr else {
        return Authority::try_from(addr.to_string());
    };
    // `255.255.255.255:65535` is 21 bytes.
    let mut buf = [0u8; 21];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().iter().enumerate() {
        if i > 0 {
            put(b".");
        }
        put(digits.format(*octet).as_bytes());
    }
    put(b":");
    put(digits.format(v4.port()).as_bytes());
    Authority::try_from(&buf[..len])
}
