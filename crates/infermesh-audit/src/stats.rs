//! Counters and gauges of a trail, read through [`crate::AuditLog::stats`] (the
//! admin listener turns them into Prometheus metrics; see `docs/audit.md`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Shared between the handle, the writer and the sink; all monotonic unless noted.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records: AtomicU64,
    pub fsyncs: AtomicU64,
    pub batches: AtomicU64,
    pub checkpoints: AtomicU64,
    pub write_failures: AtomicU64,
    pub lost: AtomicU64,
    pub refused: AtomicU64,
    pub backlog: AtomicU64,
    pub unavailable: AtomicBool,
    pub write_micros_total: AtomicU64,
    pub write_micros_max: AtomicU64,
    pub rotations: AtomicU64,
    pub sink_sent: AtomicU64,
    pub sink_dropped: AtomicU64,
    pub sink_failures: AtomicU64,
}

/// A snapshot of a trail's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records written to the files (checkpoints included).
    pub records: u64,
    /// `fsync`s (fdatasync) of the trail: fewer than records under concurrency.
    pub fsyncs: u64,
    /// Group-commit batches written.
    pub batches: u64,
    pub checkpoints: u64,
    /// Batches whose write or fsync failed (disk full, I/O error).
    pub write_failures: u64,
    /// Records that never reached the file (write failures, backlog full, closed).
    pub lost: u64,
    /// Requests refused because their record could not be made durable (strict).
    pub refused: u64,
    /// Records submitted and not yet written (gauge).
    pub backlog: u64,
    /// The last write failed and none succeeded since (gauge): strict mode refuses.
    pub unavailable: bool,
    /// Total and worst time spent writing and syncing a batch.
    pub write_time_total: Duration,
    pub write_time_max: Duration,
    /// Segment files started by rotation.
    pub rotations: u64,
    /// Records delivered to / dropped before / failed at the external sink.
    pub sink_sent: u64,
    pub sink_dropped: u64,
    pub sink_failures: u64,
}

impl Counters {
    pub fn snapshot(&self) -> AuditStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AuditStats {
            records: get(&self.records),
            fsyncs: get(&self.fsyncs),
            batches: get(&self.batches),
            checkpoints: get(&self.checkpoints),
            write_failures: get(&self.write_failures),
            lost: get(&self.lost),
            refused: get(&self.refused),
            backlog: get(&self.backlog),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            write_time_total: Duration::from_micros(get(&self.write_micros_total)),
            write_time_max: Duration::from_micros(get(&self.write_micros_max)),
            rotations: get(&self.rotations),
            sink_sent: get(&self.sink_sent),
            sink_dropped: get(&self.sink_dropped),
            sink_failures: get(&self.sink_failures),
        }
    }

    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    pub fn write_time(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.write_micros_total.fetch_add(us, Ordering::Relaxed);
        self.write_micros_max.fetch_max(us, Ordering::Relaxed);
    }
}
