//! Passive outlier detection, as Envoy's `consecutive_5xx`: `consecutive_failures`
//! connect failures / server errors in a row eject an endpoint for
//! `base_ejection × times ejected` (at most 10×); a success resets the count; an
//! ejection ends by time alone (nothing to sweep: picks compare the deadline with
//! the clock). At most `max_ejection_percent` of the endpoints are ejected at once.
//!
//! Differences from Envoy, on purpose: the percentage is strict (Envoy always allows
//! one ejection even past it; with two endpoints and 10 % we eject none), and the
//! multiplier starts again at 1× once an endpoint has stayed in for the longest
//! ejection time (10 × base) instead of decaying one step per interval.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::Shared;
use super::clock::nanos;
use super::endpoint::{Endpoint, Outcome};

/// Longest ejection, in multiples of `base_ejection`.
const MAX_MULTIPLIER: u32 = 10;

impl Shared {
    /// Feeds one outcome of `endpoint` to outlier detection.
    pub(crate) fn record(&self, endpoint: &Endpoint, outcome: Outcome) {
        match outcome {
            Outcome::Success => endpoint.failures.store(0, Ordering::Relaxed),
            Outcome::ConnectFailure | Outcome::ServerError => {
                let failures = endpoint
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let threshold = self.outlier.consecutive_failures;
                if threshold > 0 && failures >= threshold {
                    self.try_eject(endpoint);
                }
            }
        }
    }

    /// Ejects `endpoint` unless it is already out, no longer in the set, or ejecting
    /// it would exceed `max_ejection_percent`. Ejections are rare: one short lock
    /// makes the count-then-eject decision atomic across threads.
    fn try_eject(&self, endpoint: &Endpoint) {
        let _decide = self
            .eject_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        if endpoint.is_ejected(now) {
            // Requests that were in flight when it was ejected are still failing.
            return;
        }
        let endpoints = self.endpoints.load();
        if !endpoints
            .iter()
            .any(|e| std::ptr::eq(Arc::as_ptr(e), endpoint))
        {
            return;
        }
        let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
        let allowed = u64::from(self.outlier.max_ejection_percent);
        let total = u64::try_from(endpoints.len()).unwrap_or(u64::MAX);
        let after = u64::try_from(ejected + 1).unwrap_or(u64::MAX);
        if after.saturating_mul(100) > total.saturating_mul(allowed) {
            tracing::debug!(
                endpoint = %endpoint.addr,
                ejected,
                total,
                max_ejection_percent = allowed,
                "endpoint failing but not ejected: too many endpoints already out"
            );
            return;
        }

        let base = nanos(self.outlier.base_ejection);
        let longest = base.saturating_mul(u64::from(MAX_MULTIPLIER));
        let previous_end = endpoint.ejected_until.load(Ordering::Relaxed);
        let mut ejections = endpoint.ejections.load(Ordering::Relaxed);
        if ejections > 0 && now >= previous_end.saturating_add(longest) {
            ejections = 0;
        }
        let ejections = ejections.saturating_add(1);
        let duration = base.saturating_mul(u64::from(ejections.min(MAX_MULTIPLIER)));
        endpoint.ejections.store(ejections, Ordering::Relaxed);
        endpoint
            .ejected_until
            .store(now.saturating_add(duration), Ordering::Relaxed);
        endpoint.failures.store(0, Ordering::Relaxed);
        tracing::warn!(
            endpoint = %endpoint.addr,
            ejections,
            ejection_ms = duration / 1_000_000,
            "endpoint ejected after consecutive failures"
        );
    }
}
