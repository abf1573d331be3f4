//! The background watcher and cancelled polls.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;

#[tokio::test]
async fn a_cancelled_poll_is_finished_by_the_next() {
    let f = Fixture::new();
    f.add("m", "1");
    let first = Arc::new(AtomicBool::new(true));
    let inner = fake_loader(f.calls.clone());
    let slow_once: Loader = Arc::new(move |dir: &Path| {
        if first.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(600));
        }
        inner(dir)
    });
    let manager = ModelManager::new(vec![f.config("m", VersionPolicy::Latest(1))], slow_once);
    let cancelled = tokio::time::timeout(Duration::from_millis(150), manager.poll_once()).await;
    assert!(cancelled.is_err(), "the first poll should still be loading");
    manager.poll_once().await;
    assert_eq!(states(&manager, "m"), vec![(1, State::Available)]);
}

#[tokio::test]
async fn the_watcher_picks_up_new_versions() {
    let f = Fixture::new();
    f.add("m", "1");
    let manager = f.manager(vec![f.config("m", VersionPolicy::Latest(1))]);
    let watcher = manager.spawn_watcher(Duration::from_millis(20));
    wait_for(|| {
        manager
            .resolve("m", None, None)
            .is_ok_and(|r| r.version == 1)
    })
    .await;
    f.add("m", "2");
    wait_for(|| {
        manager
            .resolve("m", None, None)
            .is_ok_and(|r| r.version == 2)
    })
    .await;
    watcher.abort();
}

#[tokio::test]
async fn a_zero_interval_watcher_polls_once() {
    let f = Fixture::new();
    f.add("m", "1");
    let manager = f.manager(vec![f.config("m", VersionPolicy::Latest(1))]);
    let watcher = manager.spawn_watcher(Duration::ZERO);
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the one-shot watcher ends")
        .expect("no panic");
    assert_eq!(latest(&manager, "m"), 1);
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}
