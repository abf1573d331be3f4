//! The fsync stage of group commit, on threads of its own so that it pipelines: while
//! one batch's `fdatasync` is in flight, the writer thread already chains and writes
//! the next batch and hands it to a second syncer. A `fdatasync` makes durable every
//! byte written to the file before it started, so a batch's waiters are completed as
//! soon as a sync that started after the batch was written returns — in whatever
//! order syncs finish. At most [`SYNCERS`] syncs run at once; when all are busy the
//! writer waits, and the records arriving meanwhile make the next batch larger.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Instant;

use crate::error::Unavailable;
use crate::log::Waiter;
use crate::stats::Counters;

/// Syncs in flight at once.
pub(crate) const SYNCERS: usize = 2;

/// One batch to make durable.
struct Job {
    file: Arc<File>,
    waiters: Vec<Waiter>,
    /// When the batch's write began (write + sync time is counted).
    started: Instant,
}

#[derive(Default)]
struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
}

pub(crate) struct Syncer {
    jobs: mpsc::Sender<Job>,
    slots: Arc<Slots>,
}

impl Syncer {
    pub fn start(counters: Arc<Counters>, dir: std::path::PathBuf) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let slots = Arc::new(Slots::default());
        for i in 0..SYNCERS {
            let (rx, slots, counters, dir) =
                (rx.clone(), slots.clone(), counters.clone(), dir.clone());
            std::thread::Builder::new()
                .name(format!("audit-sync-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                            rx.recv()
                        };
                        let Ok(job) = job else { return };
                        run(job, &counters, &dir);
                        let mut busy = slots.busy.lock().unwrap_or_else(|e| e.into_inner());
                        *busy -= 1;
                        slots.freed.notify_all();
                    }
                })?;
        }
        Ok(Syncer { jobs: tx, slots })
    }

    /// Makes everything written to `file` so far durable, then completes `waiters`.
    /// Waits while every syncer is busy.
    pub fn sync(&self, file: Arc<File>, waiters: Vec<Waiter>, started: Instant) {
        {
            let mut busy = self.slots.busy.lock().unwrap_or_else(|e| e.into_inner());
            while *busy >= SYNCERS {
                busy = self
                    .slots
                    .freed
                    .wait(busy)
                    .unwrap_or_else(|e| e.into_inner());
            }
            *busy += 1;
        }
        let job = Job {
            file,
            waiters,
            started,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            for waiter in job.waiters {
                let _ = waiter.send(Err(Unavailable("the audit syncer stopped".into())));
            }
            let mut busy = self.slots.busy.lock().unwrap_or_else(|e| e.into_inner());
            *busy -= 1;
            self.slots.freed.notify_all();
        }
    }

    /// Waits until no sync is in flight.
    pub fn drain(&self) {
        let mut busy = self.slots.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy > 0 {
            busy = self
                .slots
                .freed
                .wait(busy)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn run(job: Job, counters: &Counters, dir: &std::path::Path) {
    let result = job.file.sync_data();
    counters.write_time(job.started.elapsed());
    match result {
        Ok(()) => {
            Counters::add(&counters.fsyncs, 1);
            if counters.unavailable.swap(false, Ordering::Relaxed) {
                tracing::info!(dir = %dir.display(), "audit trail writable again");
            }
            for waiter in job.waiters {
                let _ = waiter.send(Ok(()));
            }
        }
        Err(e) => {
            Counters::add(&counters.write_failures, 1);
            if !counters.unavailable.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    dir = %dir.display(),
                    error = %e,
                    "AUDIT TRAIL CANNOT BE WRITTEN (fsync failed): strict mode refuses \
                     requests until it can"
                );
            }
            let why = Unavailable(e.to_string());
            for waiter in job.waiters {
                let _ = waiter.send(Err(why.clone()));
            }
        }
    }
}
