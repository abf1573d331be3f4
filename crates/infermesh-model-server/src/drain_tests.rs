//! Tests of the graceful drain: every connection is told, whenever it was watched or
//! first polled, and shutdown waits for the last one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::{Drain, Graceful};

/// A connection that runs until it is told to shut down, then finishes once
/// `linger` more polls have passed (each one woken at once).
struct Conn {
    told: Arc<AtomicUsize>,
    linger: usize,
    shutting: bool,
}

impl Conn {
    fn new(told: &Arc<AtomicUsize>, linger: usize) -> Conn {
        Conn {
            told: told.clone(),
            linger,
            shutting: false,
        }
    }
}

impl Future for Conn {
    type Output = Result<(), ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.shutting {
            return Poll::Pending;
        }
        if self.linger == 0 {
            return Poll::Ready(Ok(()));
        }
        self.linger -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Graceful for Conn {
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        assert!(!self.shutting, "told twice");
        self.shutting = true;
        self.told.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts its wake-ups.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

#[tokio::test]
async fn connections_polled_before_the_stop_are_woken_and_told() {
    let drain = Drain::new();
    let told = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|i| tokio::spawn(drain.watch(Conn::new(&told, i % 3))))
        .collect();
    // Let every task poll its connection (and register) before stopping.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(drain.count(), 20);
    assert_eq!(told.load(Ordering::SeqCst), 0);
    tokio::time::timeout(Duration::from_secs(10), drain.shutdown())
        .await
        .expect("shutdown returns once every connection has finished");
    assert_eq!(told.load(Ordering::SeqCst), 20);
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(()));
    }
}

#[test]
fn a_connection_first_polled_after_the_stop_is_told_at_once() {
    let drain = Drain::new();
    let told = Arc::new(AtomicUsize::new(0));
    let mut conn = Box::pin(drain.watch(Conn::new(&told, 0)));
    let mut stopping = Box::pin(drain.shutdown());
    let (_, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    assert!(stopping.as_mut().poll(&mut cx).is_pending(), "one is open");
    assert_eq!(conn.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(told.load(Ordering::SeqCst), 1);
    drop(conn);
    assert!(stopping.as_mut().poll(&mut cx).is_ready());
}

#[test]
fn the_stop_wakes_the_waker_of_the_latest_poll() {
    let drain = Drain::new();
    let told = Arc::new(AtomicUsize::new(0));
    let mut conn = Box::pin(drain.watch(Conn::new(&told, 0)));
    let (first, first_waker) = counting();
    let (second, second_waker) = counting();
    assert!(
        conn.as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    // Polled again with the same waker: nothing to update; then with another.
    assert!(
        conn.as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        conn.as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending()
    );
    let mut stopping = Box::pin(drain.shutdown());
    let (_, waker) = counting();
    assert!(
        stopping
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert_eq!(told.load(Ordering::SeqCst), 0, "told when it is polled");
    assert_eq!(
        conn.as_mut().poll(&mut Context::from_waker(&second_waker)),
        Poll::Ready(Ok(()))
    );
    assert_eq!(told.load(Ordering::SeqCst), 1);
}

#[test]
fn shutdown_waits_for_connections_that_are_never_polled_until_they_are_dropped() {
    let drain = Drain::new();
    let told = Arc::new(AtomicUsize::new(0));
    let conns: Vec<_> = (0..3).map(|_| drain.watch(Conn::new(&told, 0))).collect();
    assert_eq!(drain.count(), 3);
    let mut stopping = Box::pin(drain.shutdown());
    let (_, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    assert!(stopping.as_mut().poll(&mut cx).is_pending());
    drop(conns);
    assert!(stopping.as_mut().poll(&mut cx).is_ready());
    assert_eq!(told.load(Ordering::SeqCst), 0);
}

#[test]
fn slots_of_finished_connections_are_reused() {
    let drain = Drain::new();
    let told = Arc::new(AtomicUsize::new(0));
    let (_, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..100 {
        let mut a = Box::pin(drain.watch(Conn::new(&told, 0)));
        let mut b = Box::pin(drain.watch(Conn::new(&told, 0)));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(drain.shared.wakers().slots.len(), 2);
    assert_eq!(drain.count(), 0);
}

/// Connections start, poll and end on two worker threads while the stop comes at
/// a random moment: every connection that is still open is told and finishes, and
/// shutdown returns (bounded: 50 rounds of 40 connections, 10 s each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_racing_with_connections_reaches_every_one() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..50 {
        let drain = Drain::new();
        let told = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let conn = drain.watch(Conn::new(&told, i % 4));
            tasks.push(tokio::spawn(conn));
            if rng.u8(..8) == 0 {
                tokio::task::yield_now().await;
            }
        }
        if rng.bool() {
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(Duration::from_secs(10), drain.shutdown())
            .await
            .expect("every connection was told and finished");
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(()));
        }
        assert_eq!(told.load(Ordering::SeqCst), 40);
    }
}
