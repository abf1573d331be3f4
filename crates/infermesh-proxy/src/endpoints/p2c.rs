//! Power of two choices: draw two distinct endpoints at random among those not
//! ejected and take the one with fewer requests in flight. Near least-loaded
//! balancing at O(1) choices, without herding onto one "best" endpoint. When every
//! endpoint is ejected it draws among all of them (Envoy's panic mode): a degraded
//! endpoint beats a certain failure.

use std::sync::Arc;

use super::endpoint::Endpoint;

/// Index in `endpoints` of the endpoint to use, `None` only when there are none.
pub(crate) fn choose(
    endpoints: &[Arc<Endpoint>],
    now: u64,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let total = endpoints.len();
    if total <= 1 {
        return (total == 1).then_some(0);
    }
    let healthy = endpoints.iter().filter(|e| !e.is_ejected(now)).count();
    let (pool, all) = match healthy {
        0 => (total, true),
        h => (h, h == total),
    };
    let index = |rank: usize| -> usize {
        if all {
            return rank;
        }
        // An ejection ending or starting between the count and this scan can make
        // the rank overshoot: any endpoint then does.
        endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_ejected(now))
            .nth(rank)
            .map_or(rank % total, |(i, _)| i)
    };
    if pool == 1 {
        return Some(index(0));
    }
    let first = rng.usize(..pool);
    let mut second = rng.usize(..pool - 1);
    if second >= first {
        second += 1;
    }
    let (a, b) = (index(first), index(second));
    let less_loaded = match (endpoints.get(a), endpoints.get(b)) {
        (Some(ea), Some(eb)) if eb.load() < ea.load() => b,
        _ => a,
    };
    Some(less_loaded)
}
