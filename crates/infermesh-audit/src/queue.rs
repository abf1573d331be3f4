//! The hand-off between submitters and the writer thread: a mutex-protected list and a
//! condition variable. A submitter wakes the writer only when it sleeps and the record
//! needs it now (strict mode, closing, or relaxed mode's early-flush threshold), so
//! under load a whole batch costs one wake-up, not one per record — records that
//! arrive while the writer is writing or fsyncing simply join the next batch.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::log::Msg;

/// Relaxed mode wakes a sleeping writer early once this many records wait.
pub(crate) const RELAXED_WAKE: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    items: Vec<Msg>,
    /// The writer waits on the condition variable.
    sleeping: bool,
    /// Every handle is gone: the writer closes the trail.
    disconnected: bool,
    /// The writer has stopped: nothing more is accepted.
    stopped: bool,
}

/// What the writer gets: the waiting messages, and whether the handles are gone.
pub(crate) struct Taken {
    pub items: Vec<Msg>,
    pub disconnected: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message; `Err` gives it back when the writer has stopped.
    pub fn push(&self, msg: Msg, urgent: bool) -> Result<(), Msg> {
        let mut state = self.lock();
        if state.stopped {
            return Err(msg);
        }
        state.items.push(msg);
        if state.sleeping && (urgent || state.items.len() >= RELAXED_WAKE) {
            state.sleeping = false;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The handles are gone.
    pub fn disconnect(&self) {
        let mut state = self.lock();
        state.disconnected = true;
        self.wake.notify_one();
    }

    /// The writer has stopped; later pushes fail.
    pub fn stop(&self) {
        self.lock().stopped = true;
    }

    /// Everything waiting; sleeps first (up to `wait`, or until woken) if nothing is.
    pub fn take(&self, wait: Option<Duration>) -> Taken {
        let mut state = self.lock();
        if state.items.is_empty() && !state.disconnected {
            state.sleeping = true;
            state = match wait {
                Some(wait) => {
                    self.wake
                        .wait_timeout_while(state, wait, |s| s.sleeping && !s.disconnected)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .wake
                    .wait_while(state, |s| s.sleeping && !s.disconnected)
                    .unwrap_or_else(|e| e.into_inner()),
            };
            state.sleeping = false;
        }
        Taken {
            items: std::mem::take(&mut state.items),
            disconnected: state.disconnected,
        }
    }
}
