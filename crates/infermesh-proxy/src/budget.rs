//! Retry budget (as linkerd's and Finagle's): retries may add at most `ratio` of
//! the requests of the last ~10 seconds, plus a reserve of `min_per_second` retries
//! per second of that window so that quiet routes can still retry. A budget caps
//! the extra load retries put on a struggling workload, where a per-request attempt
//! count alone would multiply it.
//!
//! The window is ten one-second buckets of atomics; each bucket word packs the
//! second it counts (high 32 bits) with its count (low 32 bits), so a stale bucket
//! is recognised and restarted in the same compare-and-swap that counts. Nothing
//! locks and nothing allocates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Buckets of one second in the sliding window.
const WINDOW_SECS: u64 = 10;
const BUCKETS: usize = WINDOW_SECS as usize;
const COUNT_MASK: u64 = 0xFFFF_FFFF;

/// Shared by all requests of one route (`Arc<RetryBudget>`).
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    /// `min_per_second × WINDOW_SECS`: retries the window always allows.
    reserve: u64,
    epoch: Instant,
    requests: [AtomicU64; BUCKETS],
    retries: [AtomicU64; BUCKETS],
}

impl RetryBudget {
    /// `ratio` retries per request (0.2: one retry per five requests; negative or
    /// not finite counts as 0), plus `min_per_second`.
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        let ratio = if ratio.is_finite() && ratio > 0.0 {
            ratio
        } else {
            0.0
        };
        Self {
            ratio,
            reserve: u64::from(min_per_second) * WINDOW_SECS,
            epoch: Instant::now(),
            requests: Default::default(),
            retries: Default::default(),
        }
    }

    /// Counts one original request (not a retry) towards the budget.
    pub fn record_request(&self) {
        self.record_request_at(self.now());
    }

    /// Takes one retry from the budget; `false` when the budget is spent and the
    /// failure must be returned as is.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(self.now())
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn record_request_at(&self, second: u64) {
        bump(&self.requests, second, |_| true);
    }

    fn try_withdraw_at(&self, second: u64) -> bool {
        let requests = window_sum(&self.requests, second);
        // The epsilon keeps e.g. 0.2 × 100 at 20 whatever the rounding.
        let earned = (self.ratio * requests as f64 + 1e-9).floor() as u64;
        let allowed = earned.saturating_add(self.reserve);
        let earlier =
            window_sum(&self.retries, second).saturating_sub(count_at(&self.retries, second));
        bump(&self.retries, second, |current| {
            earlier.saturating_add(current).saturating_add(1) <= allowed
        })
    }
}

fn slot(buckets: &[AtomicU64; BUCKETS], second: u64) -> Option<&AtomicU64> {
    buckets.get(usize::try_from(second % WINDOW_SECS).ok()?)
}

fn tag(second: u64) -> u64 {
    second & COUNT_MASK
}

/// The count `word` holds for `second` (0 if the bucket counts another second).
fn count_of(word: u64, second: u64) -> u64 {
    if word >> 32 == tag(second) {
        word & COUNT_MASK
    } else {
        0
    }
}

fn count_at(buckets: &[AtomicU64; BUCKETS], second: u64) -> u64 {
    slot(buckets, second).map_or(0, |s| count_of(s.load(Ordering::Relaxed), second))
}

/// Sum of the counts of the window ending at `second` (this second included).
fn window_sum(buckets: &[AtomicU64; BUCKETS], second: u64) -> u64 {
    (0..WINDOW_SECS.min(second.saturating_add(1)))
        .map(|back| count_at(buckets, second - back))
        .sum()
}

/// Adds one to `second`'s bucket if `admit(count so far this second)`; whether it
/// did. A bucket still holding an older second restarts at 1.
fn bump(buckets: &[AtomicU64; BUCKETS], second: u64, admit: impl Fn(u64) -> bool) -> bool {
    let Some(slot) = slot(buckets, second) else {
        return false;
    };
    slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
        let count = count_of(word, second);
        (count < COUNT_MASK && admit(count)).then(|| (tag(second) << 32) | (count + 1))
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn withdrawals(budget: &RetryBudget, second: u64) -> usize {
        (0..1000)
            .take_while(|_| budget.try_withdraw_at(second))
            .count()
    }

    #[test]
    fn allows_the_ratio_of_requests_and_refuses_beyond() {
        let budget = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            budget.record_request_at(3);
        }
        assert_eq!(withdrawals(&budget, 3), 20);
        assert!(!budget.try_withdraw_at(3));
        // Five more requests earn exactly one more retry.
        for _ in 0..5 {
            budget.record_request_at(4);
        }
        assert!(budget.try_withdraw_at(4));
        assert!(!budget.try_withdraw_at(4));
    }

    #[test]
    fn no_requests_and_no_reserve_allow_no_retry() {
        let budget = RetryBudget::new(0.5, 0);
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn min_per_second_is_a_reserve_over_the_window() {
        let budget = RetryBudget::new(0.2, 2);
        assert_eq!(withdrawals(&budget, 0), 20);
        // Requests add to the reserve.
        for _ in 0..10 {
            budget.record_request_at(1);
        }
        assert_eq!(withdrawals(&budget, 1), 2);
    }

    #[test]
    fn the_window_slides() {
        let budget = RetryBudget::new(1.0, 0);
        for _ in 0..10 {
            budget.record_request_at(100);
        }
        assert_eq!(withdrawals(&budget, 100), 10);
        // Second 109 still sees second 100's requests and retries.
        assert!(!budget.try_withdraw_at(109));
        // At 110 both have left the window: nothing earned, nothing spent.
        assert!(!budget.try_withdraw_at(110));
        budget.record_request_at(110);
        assert!(budget.try_withdraw_at(110));
        assert!(!budget.try_withdraw_at(110));
        // Second 100's bucket is reused by second 110, not added to it.
        assert_eq!(window_sum(&budget.requests, 110), 1);
    }

    #[test]
    fn retries_stay_in_the_window_after_their_requests_leave() {
        let budget = RetryBudget::new(1.0, 0);
        for _ in 0..10 {
            budget.record_request_at(100);
        }
        assert_eq!(withdrawals(&budget, 105), 10);
        for _ in 0..10 {
            budget.record_request_at(110);
        }
        // Second 105's retries still count at 110, second 100's requests no more.
        assert!(!budget.try_withdraw_at(110));
        assert_eq!(withdrawals(&budget, 115), 10);
    }

    #[test]
    fn invalid_ratios_count_as_zero() {
        for ratio in [f64::NAN, -1.0, f64::INFINITY] {
            let budget = RetryBudget::new(ratio, 0);
            budget.record_request();
            assert!(!budget.try_withdraw(), "ratio {ratio}");
        }
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let budget = Arc::new(RetryBudget::new(0.1, 0));
        for _ in 0..1000 {
            budget.record_request_at(7);
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || withdrawals(&budget, 7))
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(granted, 100);
    }
}
