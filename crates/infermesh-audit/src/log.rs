//! [`AuditLog`]: the handle the request path and the binary write through. Submitting
//! never blocks and never waits for the disk: the record goes to the writer thread;
//! in strict mode the returned [`Pending`] resolves once the record is on disk (fsync,
//! shared by every record of the same group-commit batch), so a caller submits right
//! after its decision and awaits just before answering.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::error::{AuditError, Unavailable};
use crate::queue::Queue;
use crate::record::Entry;
use crate::stats::{AuditStats, Counters};
use crate::{keys, segment, sink, writer};

/// When a record counts as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A request is answered only once its decision record is fsynced (group commit);
    /// if it cannot be, the request is refused.
    Strict,
    /// Records are written and fsynced every `flush_interval`; requests never wait.
    Relaxed,
}

/// Where records are copied for a SIEM, besides the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkOptions {
    /// `http://host:port/path`.
    pub url: String,
    pub protocol: SinkProtocol,
    /// Records waiting to be shipped before new ones are dropped (and counted).
    pub queue: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkProtocol {
    /// POST of the records as JSON lines (`application/x-ndjson`).
    Http,
    /// OTLP/HTTP JSON logs (`/v1/logs`), one log record per audit record.
    Otlp,
}

/// A trail's settings (from `audit:` in mesh.yaml).
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Relaxed mode: the longest a record waits in memory before it is written.
    pub flush_interval: Duration,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or this long after the first record not yet covered by one.
    pub checkpoint_interval: Duration,
    /// A new segment file once the current one is this large…
    pub rotate_bytes: u64,
    /// …or this old.
    pub rotate_age: Duration,
    pub signing_key: PathBuf,
    pub sink: Option<SinkOptions>,
    /// Records submitted and not yet written beyond which new ones are refused
    /// (strict) or dropped and counted (relaxed): bounded memory.
    pub max_backlog: u64,
}

pub(crate) type Waiter = oneshot::Sender<Result<(), Unavailable>>;

#[derive(Debug)]
pub(crate) enum Msg {
    Record(Entry, Option<Waiter>),
    /// Write this stop record and a final checkpoint, then stop.
    Close(Entry, oneshot::Sender<()>),
}

/// The handle of an open trail; cheap to clone. The writer stops (with a final
/// checkpoint) on [`AuditLog::close`] or when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    durability: Durability,
    max_backlog: u64,
    dir: PathBuf,
    public_key: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle: the writer writes a final checkpoint and stops.
        self.queue.disconnect();
    }
}

/// A submitted record: [`Pending::durable`] resolves once it is on disk (strict), at
/// once (relaxed).
#[derive(Debug)]
pub struct Pending {
    state: State,
    counters: Arc<Counters>,
}

#[derive(Debug)]
enum State {
    Ready(Result<(), Unavailable>),
    Waiting(oneshot::Receiver<Result<(), Unavailable>>),
}

impl Pending {
    /// Already known to have failed (backlog full, trail closed): refuse before
    /// doing the work.
    pub fn refused(&self) -> Option<&Unavailable> {
        match &self.state {
            State::Ready(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// Waits until the record is durable, or fails.
    pub async fn durable(self) -> Result<(), Unavailable> {
        let result = match self.state {
            State::Ready(r) => r,
            State::Waiting(rx) => rx
                .await
                .unwrap_or_else(|_| Err(Unavailable("the audit writer stopped".into()))),
        };
        if result.is_err() {
            Counters::add(&self.counters.refused, 1);
        }
        result
    }
}

impl AuditLog {
    /// Opens (creating if needed) the trail in `options.dir`: takes the directory's
    /// lock, loads or creates the signing key, repairs a torn last record, and starts
    /// the writer. A recovery record is written first if the previous writer did not
    /// stop cleanly.
    pub fn open(options: Options) -> Result<AuditLog, AuditError> {
        AuditLog::start(
            options,
            #[cfg(test)]
            None,
        )
    }

    fn start(
        options: Options,
        #[cfg(test)] fail: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<AuditLog, AuditError> {
        let lock = segment::lock(&options.dir)?;
        let key = keys::load_or_create(&options.signing_key)?;
        let head = segment::recover(&options.dir)?;
        let counters = Arc::new(Counters::default());
        let sink = match &options.sink {
            Some(s) => Some(sink::spawn(s.clone(), counters.clone())?),
            None => None,
        };
        let queue = Arc::new(Queue::default());
        let rx = queue.clone();
        let recovery = (!head.clean).then(|| {
            Entry::new(
                crate::record::kind::RECOVERY,
                &serde_json::json!({
                    "reason": "the previous writer did not stop cleanly (no final checkpoint)",
                    "last_seq": head.seq,
                    "torn_bytes": head.torn_bytes,
                }),
            )
        });
        let syncer = crate::sync::Syncer::start(counters.clone(), options.dir.clone()).map_err(
            |source| AuditError::Dir {
                dir: options.dir.clone(),
                source,
            },
        )?;
        #[cfg_attr(not(test), allow(unused_mut))]
        let mut writer =
            writer::Writer::new(&options, key, head, counters.clone(), sink, lock, syncer);
        #[cfg(test)]
        {
            writer.fail = fail;
        }
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx, recovery))
            .map_err(|source| AuditError::Dir {
                dir: options.dir.clone(),
                source,
            })?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                queue,
                counters,
                durability: options.durability,
                max_backlog: options.max_backlog,
                public_key: keys::public_path(&options.signing_key),
                dir: options.dir,
            }),
        })
    }

    /// Submits a record; never blocks.
    pub fn submit(&self, entry: Entry) -> Pending {
        let inner = &self.inner;
        let ready = |r| Pending {
            state: State::Ready(r),
            counters: inner.counters.clone(),
        };
        let backlog = inner.counters.backlog.fetch_add(1, Ordering::Relaxed);
        if backlog >= inner.max_backlog {
            inner.counters.backlog.fetch_sub(1, Ordering::Relaxed);
            let lost = inner.counters.lost.fetch_add(1, Ordering::Relaxed);
            if lost.is_multiple_of(10_000) {
                tracing::error!(
                    backlog,
                    lost = lost + 1,
                    "audit trail backlog full: records are not being written fast enough"
                );
            }
            return ready(Err(Unavailable("the audit backlog is full".into())));
        }
        let (waiter, state) = match inner.durability {
            Durability::Strict => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), State::Waiting(rx))
            }
            Durability::Relaxed => (None, State::Ready(Ok(()))),
        };
        let urgent = inner.durability == Durability::Strict;
        if inner
            .queue
            .push(Msg::Record(entry, waiter), urgent)
            .is_err()
        {
            inner.counters.backlog.fetch_sub(1, Ordering::Relaxed);
            Counters::add(&inner.counters.lost, 1);
            return ready(Err(Unavailable("the audit trail is closed".into())));
        }
        Pending {
            state,
            counters: inner.counters.clone(),
        }
    }

    /// Records an event of any kind (e.g. `certificate` for an issued or rotated
    /// certificate) with the fields of `body` (a JSON object).
    pub fn event(&self, kind: &str, body: &impl Serialize) -> Pending {
        self.submit(Entry::new(kind, body))
    }

    /// Writes `stop` and a final signed checkpoint, then stops the writer. Waits up
    /// to `timeout`.
    pub async fn close(&self, stop: &impl Serialize, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        let stop = Entry::new(crate::record::kind::STOP, stop);
        if self.inner.queue.push(Msg::Close(stop, tx), true).is_ok()
            && tokio::time::timeout(timeout, rx).await.is_err()
        {
            tracing::error!("audit trail: the final checkpoint was not written within {timeout:?}");
        }
    }

    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// The exported public key that verifies this trail's checkpoints.
    pub fn public_key_path(&self) -> &std::path::Path {
        &self.inner.public_key
    }

    /// A trail whose writes fail while `fail` is set (disk-full tests).
    #[cfg(test)]
    pub(crate) fn open_failing(
        options: Options,
        fail: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<AuditLog, AuditError> {
        AuditLog::start(options, Some(fail))
    }

    /// Counters and gauges: write latency, backlog, failures, `unavailable`, fsyncs.
    pub fn stats(&self) -> AuditStats {
        self.inner.counters.snapshot()
    }
}
