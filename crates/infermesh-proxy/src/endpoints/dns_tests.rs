//! Tests of host-name endpoints: the system resolver on `localhost`, and a fake
//! resolver for failures, removals and the refresh task.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use infermesh_config::Address;

use super::tests::{addr, fail, hold, outlier};
use super::{EndpointSet, Outcome, Resolve, clock};

/// Answers every lookup with the current answer; `None` is a resolution failure.
#[derive(Default)]
struct FakeResolver {
    answer: Mutex<Option<Vec<SocketAddr>>>,
    lookups: AtomicUsize,
}

impl FakeResolver {
    fn answer(&self, ports: Option<&[u16]>) {
        let answer = ports.map(|ports| ports.iter().map(|p| addr(*p)).collect());
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = answer;
    }
}

impl Resolve for FakeResolver {
    fn lookup(&self, _host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move { answer.ok_or_else(|| io::Error::other("SERVFAIL")) })
    }
}

fn host() -> Address {
    Address::Host {
        host: "model.ns.svc".into(),
        port: 8500,
    }
}

fn host_set(extra: Vec<Address>, period: Duration) -> (Arc<EndpointSet>, Arc<FakeResolver>) {
    let fake = Arc::new(FakeResolver::default());
    let mut addresses = extra;
    addresses.push(host());
    let (clock, _) = clock::manual();
    let set = EndpointSet::build(addresses, outlier(2, 50), period, fake.clone(), clock, 7);
    (set, fake)
}

fn ports(set: &EndpointSet) -> Vec<u16> {
    set.addrs().iter().map(SocketAddr::port).collect()
}

/// Waits (real time, at most 5 s) until the set holds `want`.
async fn until_ports(set: &EndpointSet, want: &[u16]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ports(set) != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ports(set), want);
}

#[tokio::test]
async fn localhost_resolves_to_loopback_endpoints() {
    let address = Address::Host {
        host: "localhost".into(),
        port: 8501,
    };
    let set = EndpointSet::new(vec![address], outlier(5, 50), Duration::from_secs(30));
    assert!(set.pick().is_none(), "nothing before the first resolution");
    set.refresh().await;
    let addrs = set.addrs();
    assert!(!addrs.is_empty());
    assert!(
        addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8501),
        "{addrs:?}"
    );
    assert!(set.pick().is_some_and(|p| p.addr().ip().is_loopback()));
}

#[tokio::test]
async fn failed_or_empty_lookups_keep_the_last_known_addresses() {
    let (set, fake) = host_set(Vec::new(), Duration::from_secs(30));
    fake.answer(None);
    set.refresh().await;
    assert!(set.is_empty(), "no address known yet");

    fake.answer(Some(&[2, 1, 2]));
    set.refresh().await;
    assert_eq!(ports(&set), vec![1, 2]);

    fake.answer(None);
    set.refresh().await;
    assert_eq!(ports(&set), vec![1, 2]);

    fake.answer(Some(&[]));
    set.refresh().await;
    assert_eq!(ports(&set), vec![1, 2]);

    fake.answer(Some(&[2, 3]));
    set.refresh().await;
    assert_eq!(ports(&set), vec![2, 3]);
}

#[tokio::test]
async fn fixed_addresses_come_first_and_are_not_duplicated() {
    let (set, fake) = host_set(vec![Address::Socket(addr(9))], Duration::from_secs(30));
    assert_eq!(ports(&set), vec![9], "fixed endpoints need no resolution");
    fake.answer(Some(&[1, 9]));
    set.refresh().await;
    assert_eq!(ports(&set), vec![9, 1]);
    fake.answer(None);
    set.refresh().await;
    assert_eq!(ports(&set), vec![9, 1]);
}

#[tokio::test]
async fn removed_endpoints_finish_their_requests_and_kept_ones_keep_their_state() {
    let (set, fake) = host_set(Vec::new(), Duration::from_secs(30));
    fake.answer(Some(&[1, 2, 3, 4]));
    set.refresh().await;
    fail(&set, 2, 2);
    assert!(set.status().iter().any(|s| s.addr == addr(2) && s.ejected));
    let on_removed = hold(&set, 1);

    fake.answer(Some(&[2, 3, 4]));
    set.refresh().await;
    assert_eq!(ports(&set), vec![2, 3, 4]);
    // Still ejected: the endpoint object survived the refresh.
    assert!(set.status().iter().any(|s| s.addr == addr(2) && s.ejected));

    // The request on the removed endpoint completes; its failure ejects nothing.
    assert_eq!(on_removed.addr(), addr(1));
    on_removed.report(Outcome::ServerError);
    assert_eq!(set.status().iter().filter(|s| s.ejected).count(), 1);
    assert!(set.status().iter().all(|s| s.in_flight == 0));
}

#[tokio::test]
async fn the_refresh_task_follows_dns_and_ends_with_the_set() {
    let (set, fake) = host_set(Vec::new(), Duration::from_millis(20));
    fake.answer(Some(&[1]));
    let task = set.spawn_refresh();
    until_ports(&set, &[1]).await;

    fake.answer(None);
    let before = fake.lookups.load(Ordering::Relaxed);
    while fake.lookups.load(Ordering::Relaxed) < before + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ports(&set), vec![1], "a failed refresh keeps the endpoints");

    fake.answer(Some(&[1, 2]));
    until_ports(&set, &[1, 2]).await;

    drop(set);
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test]
async fn the_refresh_task_waits_a_period_after_a_complete_resolution() {
    let (set, fake) = host_set(Vec::new(), Duration::from_secs(3600));
    fake.answer(Some(&[1]));
    set.refresh().await;
    let task = set.spawn_refresh();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fake.lookups.load(Ordering::Relaxed), 1);
    drop(set);
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test]
async fn without_host_names_the_refresh_task_ends_at_once() {
    let set = EndpointSet::new(
        vec![Address::Socket(addr(1))],
        outlier(5, 50),
        Duration::from_secs(30),
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), set.spawn_refresh()).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    set.refresh().await;
    assert_eq!(set.addrs(), vec![addr(1)]);
}
