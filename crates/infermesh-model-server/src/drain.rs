//! Graceful drain of served connections: when the server stops, every open
//! connection is told to finish its request in flight and close (HTTP/1 closes idle
//! keep-alive connections at once, HTTP/2 sends GOAWAY), and the server waits until
//! all of them are gone.
//!
//! What `hyper_util::server::graceful` does, at a lower price per request: it polls
//! a `watch` channel's `changed()` future every time the connection is polled (a
//! lock and a waker update, ~500 instructions per REST request). Here a connection
//! registers its task's waker once (again only if the task's waker changes) and then
//! reads one atomic flag per poll; stopping sets the flag and wakes every registered
//! task. The order — a connection stores its waker under the lock, then reads the
//! flag; stopping sets the flag, then takes the lock to wake — means a connection
//! either sees the flag or is woken, never neither.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use hyper_util::server::conn::auto;

/// A connection that can be asked to finish what it is doing and close.
pub trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

/// The REST listener's connections (HTTP/1.1 and h2c on one port).
impl<I, S, E, B> Graceful for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// The server's side: hands out watchers, then stops them all.
pub struct Drain {
    shared: Arc<Shared>,
    /// Each watched connection holds a receiver; `closed()` resolves when the last
    /// one is dropped.
    open: tokio::sync::watch::Sender<()>,
}

struct Shared {
    stopping: AtomicBool,
    wakers: Mutex<Wakers>,
}

/// The wakers of watched connections' tasks, by slot.
#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    /// Slots of connections that have ended, for the next ones.
    free: Vec<usize>,
}

impl Shared {
    fn wakers(&self) -> MutexGuard<'_, Wakers> {
        // A panic while holding the lock leaves a plain list of wakers behind:
        // nothing half-updated to guard against.
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Drain {
    fn default() -> Drain {
        Drain::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            shared: Arc::new(Shared {
                stopping: AtomicBool::new(false),
                wakers: Mutex::default(),
            }),
            open: tokio::sync::watch::Sender::new(()),
        }
    }

    /// Serves `conn` to its end; once [`Drain::shutdown`] is called, asks it to
    /// shut down gracefully (at once if that happened before it started).
    pub fn watch<C: Graceful>(&self, conn: C) -> impl Future<Output = C::Output> + use<C> {
        let mut slot = Slot {
            shared: self.shared.clone(),
            index: None,
            waker: None,
            _open: self.open.subscribe(),
        };
        async move {
            let mut conn = std::pin::pin!(conn);
            let mut told = false;
            std::future::poll_fn(|cx| {
                if !told && slot.stopping(cx) {
                    told = true;
                    conn.as_mut().graceful_shutdown();
                }
                conn.as_mut().poll(cx)
            })
            .await
        }
    }

    /// Connections watched and not yet finished.
    pub fn count(&self) -> usize {
        self.open.receiver_count()
    }

    /// Tells every watched connection to shut down gracefully, then waits until all
    /// of them have finished.
    pub async fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self
            .shared
            .wakers()
            .slots
            .iter()
            .flatten()
            .cloned()
            .collect();
        for waker in wakers {
            waker.wake();
        }
        self.open.closed().await;
    }
}

/// One connection's registration: its waker slot, and its share of `open`.
struct Slot {
    shared: Arc<Shared>,
    index: Option<usize>,
    /// The waker last stored in the slot (to skip storing the same one again).
    waker: Option<Waker>,
    _open: tokio::sync::watch::Receiver<()>,
}

impl Slot {
    /// Whether the server is stopping; makes sure the task is woken when it starts to.
    fn stopping(&mut self, cx: &Context<'_>) -> bool {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let waker = cx.waker().clone();
            let mut wakers = self.shared.wakers();
            let i = *self.index.get_or_insert_with(|| {
                wakers.free.pop().unwrap_or_else(|| {
                    wakers.slots.push(None);
                    wakers.slots.len() - 1
                })
            });
            wakers.slots[i] = Some(waker.clone());
            drop(wakers);
            self.waker = Some(waker);
        }
        // After the store above (under the lock): if `shutdown` took the lock
        // before it, this load sees the flag; if after, it wakes the stored waker.
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            let mut wakers = self.shared.wakers();
            wakers.slots[i] = None;
            wakers.free.push(i);
        }
    }
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;
