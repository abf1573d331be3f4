//! [`PerThread`]: a value kept in several slots, one per recording thread, so that
//! the worker threads that record requests each update their own slot under their
//! own, uncontended lock, on cache lines no other core writes. Readers (a scrape,
//! the access-log writer) visit every slot.
//!
//! Which slot a thread uses is fixed the first time it records: threads are numbered
//! in the order they first record, so a runtime's few worker threads get slots of
//! their own. Sharing a slot (more recording threads than slots) is correct, only
//! slower: every slot is a mutex.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One slot on cache lines of its own (128 bytes: two lines, as adjacent-line
/// prefetching pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot<T>(Mutex<T>);

/// A value per recording thread (see the module header).
#[derive(Debug)]
pub(crate) struct PerThread<T> {
    slots: Box<[Slot<T>]>,
}

/// Numbers threads in the order they first record. This is not program state: it
/// only spreads threads over slots, and any numbering would give the same results.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl<T: Default> PerThread<T> {
    /// Slots for the machine's parallelism, with room for a few threads more than
    /// the runtime's workers (at least 4, at most 64).
    pub(crate) fn new() -> PerThread<T> {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        PerThread::with_slots((2 * cpus).clamp(4, 64))
    }

    pub(crate) fn with_slots(n: usize) -> PerThread<T> {
        PerThread {
            slots: (0..n.max(1)).map(|_| Slot::default()).collect(),
        }
    }
}

impl<T> PerThread<T> {
    /// The calling thread's slot, locked.
    pub(crate) fn mine(&self) -> MutexGuard<'_, T> {
        let i = THREAD.with(|t| *t) % self.slots.len();
        lock(&self.slots[i].0)
    }

    /// Every slot in turn, each locked while `f` looks at it.
    pub(crate) fn each(&self, mut f: impl FnMut(&mut T)) {
        for slot in self.slots.iter() {
            f(&mut lock(&slot.0));
        }
    }
}

/// A poisoned slot is still usable: what it holds is counts and bytes that a
/// panicking recorder left whole or not at all.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `threads` threads each add 1 000 to their slot of a `PerThread` of `slots`.
    fn counted(slots: usize, threads: usize) -> PerThread<u64> {
        let counts = PerThread::<u64>::with_slots(slots);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..1000 {
                        *counts.mine() += 1;
                    }
                });
            }
        });
        counts
    }

    #[test]
    fn each_thread_updates_its_own_slot_and_readers_see_all() {
        let counts = counted(64, 8);
        let mut total = 0;
        let mut used = 0;
        counts.each(|c| {
            total += *c;
            used += usize::from(*c > 0);
        });
        assert_eq!(total, 8000);
        // Threads are numbered as they first record (other tests' threads too), so
        // eight threads spread over several of the 64 slots, not all into one.
        assert!(used > 1, "all eight threads shared one slot");
    }

    #[test]
    fn more_threads_than_slots_share_slots_and_lose_nothing() {
        let mut total = 0;
        counted(2, 6).each(|c| total += *c);
        assert_eq!(total, 6000);
    }
}
