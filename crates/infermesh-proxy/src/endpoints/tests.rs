//! Tests of picking (P2C, in-flight accounting) and outlier detection, on fixed
//! socket addresses with a manual clock and a fixed RNG seed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use infermesh_config::{Address, OutlierDetection};

use super::clock::{self, ManualClock};
use super::{EndpointSet, Outcome, Picked, TokioResolver};

const BASE: Duration = Duration::from_secs(30);
const NANO: Duration = Duration::from_nanos(1);

pub(super) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(super) fn outlier(consecutive_failures: u32, max_ejection_percent: u32) -> OutlierDetection {
    OutlierDetection {
        consecutive_failures,
        base_ejection: BASE,
        max_ejection_percent,
    }
}

fn fixed_set(ports: &[u16], outlier: OutlierDetection) -> (Arc<EndpointSet>, ManualClock) {
    let (clock, hand) = clock::manual();
    let addresses = ports.iter().map(|p| Address::Socket(addr(*p))).collect();
    let set = EndpointSet::build(
        addresses,
        outlier,
        Duration::from_secs(30),
        Arc::new(TokioResolver),
        clock,
        42,
    );
    (set, hand)
}

/// A guard on the endpoint at `port`, as if the pick had chosen it.
pub(super) fn hold(set: &EndpointSet, port: u16) -> Picked {
    let endpoints = set.shared.endpoints.load();
    let endpoint = endpoints.iter().find(|e| e.addr == addr(port));
    let Some(endpoint) = endpoint else {
        panic!("no endpoint on port {port}");
    };
    Picked::new(endpoint.clone(), set.shared.clone())
}

pub(super) fn fail(set: &EndpointSet, port: u16, times: u32) {
    for _ in 0..times {
        hold(set, port).report(Outcome::ServerError);
    }
}

/// How often each address is picked in `n` picks, each released at once.
fn histogram(set: &EndpointSet, n: usize) -> HashMap<SocketAddr, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let picked = set.pick().map(|p| p.addr());
        *counts.entry(picked.unwrap_or(addr(0))).or_default() += 1;
    }
    counts
}

fn ejected(set: &EndpointSet) -> Vec<u16> {
    let status = set.status();
    status
        .iter()
        .filter(|s| s.ejected)
        .map(|s| s.addr.port())
        .collect()
}

#[test]
fn picks_none_from_an_empty_set() {
    let (set, _) = fixed_set(&[], outlier(5, 50));
    assert!(set.is_empty());
    assert!(set.pick().is_none());
}

#[test]
fn a_single_endpoint_is_always_picked() {
    let (set, _) = fixed_set(&[1], outlier(5, 50));
    let counts = histogram(&set, 50);
    assert_eq!(counts.get(&addr(1)), Some(&50));
}

#[test]
fn duplicate_socket_addresses_are_one_endpoint() {
    let (set, _) = fixed_set(&[1, 2, 1], outlier(5, 50));
    assert_eq!(set.addrs(), vec![addr(1), addr(2)]);
}

#[test]
fn p2c_never_picks_the_more_loaded_of_two() {
    let (set, _) = fixed_set(&[1, 2], outlier(5, 50));
    let _busy = [hold(&set, 1), hold(&set, 1), hold(&set, 2)];
    let counts = histogram(&set, 200);
    assert_eq!(counts.get(&addr(2)), Some(&200));
}

#[test]
fn p2c_avoids_a_heavily_loaded_endpoint() {
    let (set, _) = fixed_set(&[1, 2, 3], outlier(5, 50));
    let _busy: Vec<Picked> = (0..10).map(|_| hold(&set, 1)).collect();
    let counts = histogram(&set, 300);
    assert_eq!(counts.get(&addr(1)), None);
    assert!(counts.get(&addr(2)).is_some_and(|n| *n > 50), "{counts:?}");
    assert!(counts.get(&addr(3)).is_some_and(|n| *n > 50), "{counts:?}");
}

#[test]
fn idle_endpoints_share_the_picks() {
    let (set, _) = fixed_set(&[1, 2, 3, 4], outlier(5, 50));
    let counts = histogram(&set, 2000);
    for port in 1..=4 {
        assert!(
            counts.get(&addr(port)).is_some_and(|n| *n > 300),
            "{counts:?}"
        );
    }
}

#[test]
fn held_picks_stay_balanced_and_release_to_zero() {
    let (set, _) = fixed_set(&[1, 2, 3, 4], outlier(5, 50));
    let held: Vec<Picked> = (0..40).filter_map(|_| set.pick()).collect();
    assert_eq!(held.len(), 40);
    let loads: Vec<usize> = set.status().iter().map(|s| s.in_flight).collect();
    assert_eq!(loads.iter().sum::<usize>(), 40);
    let (min, max) = (loads.iter().min(), loads.iter().max());
    assert!(
        max.zip(min).is_some_and(|(max, min)| max - min <= 3),
        "{loads:?}"
    );

    let mut held = held.into_iter();
    for picked in held.by_ref().take(20) {
        picked.report(Outcome::Success);
    }
    drop(held);
    assert!(set.status().iter().all(|s| s.in_flight == 0));
}

#[test]
fn consecutive_failures_eject_until_the_time_is_up() {
    let (set, clock) = fixed_set(&[1, 2, 3, 4], outlier(3, 50));
    fail(&set, 1, 2);
    assert!(ejected(&set).is_empty());
    fail(&set, 1, 1);
    assert_eq!(ejected(&set), vec![1]);
    assert_eq!(histogram(&set, 300).get(&addr(1)), None);

    clock.advance(BASE - NANO);
    assert_eq!(ejected(&set), vec![1]);
    clock.advance(NANO);
    assert!(ejected(&set).is_empty());
    assert!(histogram(&set, 300).get(&addr(1)).is_some_and(|n| *n > 0));
}

#[test]
fn a_success_resets_the_failure_count() {
    let (set, _) = fixed_set(&[1, 2], outlier(3, 50));
    fail(&set, 1, 2);
    hold(&set, 1).report(Outcome::Success);
    fail(&set, 1, 1);
    hold(&set, 1).report(Outcome::ConnectFailure);
    assert!(ejected(&set).is_empty());
    hold(&set, 1).report(Outcome::ConnectFailure);
    assert_eq!(ejected(&set), vec![1]);
}

#[test]
fn a_guard_dropped_without_report_counts_nothing() {
    let (set, _) = fixed_set(&[1, 2], outlier(1, 50));
    drop(hold(&set, 1));
    assert!(ejected(&set).is_empty());
    assert_eq!(
        set.status().first().map(|s| s.consecutive_failures),
        Some(0)
    );
}

#[test]
fn zero_consecutive_failures_disables_ejection() {
    let (set, _) = fixed_set(&[1, 2], outlier(0, 100));
    fail(&set, 1, 20);
    assert!(ejected(&set).is_empty());
}

#[test]
fn ejections_grow_by_base_each_time_up_to_ten_times() {
    let (set, clock) = fixed_set(&[1, 2], outlier(2, 50));
    for times in 1..=12u32 {
        fail(&set, 1, 2);
        assert_eq!(ejected(&set), vec![1], "ejection {times}");
        clock.advance(BASE * times.min(10) - NANO);
        assert_eq!(ejected(&set), vec![1], "ejection {times}");
        clock.advance(NANO);
        assert!(ejected(&set).is_empty(), "ejection {times}");
    }
    assert_eq!(set.status().first().map(|s| s.ejections), Some(12));

    // Healthy for the longest ejection time: the next ejection is short again.
    clock.advance(BASE * 10);
    fail(&set, 1, 2);
    clock.advance(BASE);
    assert!(ejected(&set).is_empty());
    assert_eq!(set.status().first().map(|s| s.ejections), Some(1));
}

#[test]
fn failures_while_ejected_do_not_extend_the_ejection() {
    let (set, clock) = fixed_set(&[1, 2], outlier(2, 50));
    let in_flight = [hold(&set, 1), hold(&set, 1), hold(&set, 1)];
    fail(&set, 1, 2);
    for picked in in_flight {
        picked.report(Outcome::ConnectFailure);
    }
    clock.advance(BASE);
    assert!(ejected(&set).is_empty());
    assert_eq!(set.status().first().map(|s| s.ejections), Some(1));
}

#[test]
fn max_ejection_percent_bounds_the_ejected_share() {
    let (set, clock) = fixed_set(&[1, 2, 3, 4], outlier(3, 50));
    for port in 1..=3 {
        fail(&set, port, 3);
    }
    assert_eq!(ejected(&set), vec![1, 2]);
    // Endpoint 3 keeps failing; it goes out once endpoint 1 and 2 are back.
    clock.advance(BASE);
    fail(&set, 3, 1);
    assert_eq!(ejected(&set), vec![3]);
}

#[test]
fn a_percentage_below_one_endpoint_ejects_none() {
    let (set, _) = fixed_set(&[1, 2, 3, 4], outlier(1, 20));
    fail(&set, 1, 5);
    assert!(ejected(&set).is_empty());
}

#[test]
fn all_ejected_still_picks_among_all() {
    let (set, _) = fixed_set(&[1, 2, 3], outlier(1, 100));
    for port in 1..=3 {
        fail(&set, port, 1);
    }
    assert_eq!(ejected(&set), vec![1, 2, 3]);
    let counts = histogram(&set, 300);
    assert_eq!(counts.values().sum::<usize>(), 300);
    assert_eq!(counts.get(&addr(0)), None);
    assert_eq!(counts.len(), 3, "{counts:?}");
    // Load still decides between ejected endpoints.
    let _busy: Vec<Picked> = (0..10).map(|_| hold(&set, 1)).collect();
    assert_eq!(histogram(&set, 100).get(&addr(1)), None);
}

#[test]
fn a_single_healthy_endpoint_takes_everything() {
    let (set, _) = fixed_set(&[1, 2, 3], outlier(1, 100));
    fail(&set, 1, 1);
    fail(&set, 3, 1);
    assert_eq!(histogram(&set, 100).get(&addr(2)), Some(&100));
}
