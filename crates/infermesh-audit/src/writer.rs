//! The writer thread: takes every record waiting in the queue as one batch, chains
//! them (`seq`, `prev`), appends checkpoints when due, and commits: one write and one
//! fsync for the whole batch (group commit) — at once in strict mode, every
//! `flush_interval` in relaxed mode. The fsync runs on a syncer thread (`sync.rs`), so
//! the next batch is written while the previous one is being synced. Rotation starts a new segment after a checkpoint
//! that closes the old one. A failed write (disk full) is rolled back (the file cut
//! back to its last whole record, the chain head restored), its waiters fail, and the
//! next successful write begins with a `gap` record saying how many were lost.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use crate::queue::{Queue, Taken};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Unavailable;
use crate::keys::SigningKey;
use crate::log::{Durability, Msg, Options, Waiter};
use crate::record::{Entry, checkpoint_message, compose_into, hash, kind, timestamp};
use crate::segment::{Head, file_name};
use crate::stats::Counters;
use crate::sync::Syncer;

/// Strict mode under load: the least time between two batches. Records gather for
/// this long and share one write and one fdatasync instead of a sync per handful of
/// records: each sync costs kernel CPU (~70 µs on the benchmark machine) that the
/// requests then lack. Longer gaps save more CPU but make each request wait longer;
/// 1 ms was the best of 0 / 0.5 / 1 / 2 ms across the benchmark's topologies
/// (bench/README.md, "Audit trail"). Only when the previous batch held more than one
/// record: a trail that sees one record at a time commits each at once.
const STRICT_COMMIT_GAP: Duration = Duration::from_millis(1);

pub(crate) struct Writer {
    dir: PathBuf,
    durability: Durability,
    flush_interval: Duration,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    rotate_bytes: u64,
    rotate_age: Duration,
    key: SigningKey,
    counters: Arc<Counters>,
    sink: Option<mpsc::SyncSender<String>>,
    /// Held for the writer's life: one writer per directory.
    _lock: File,

    file: Option<(PathBuf, Arc<File>)>,
    syncer: Syncer,
    len: u64,
    opened: Instant,
    /// The chain head: last `seq` and its hash.
    seq: u64,
    head: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// When the last batch was handed to a syncer, and how many records it held
    /// (strict pacing).
    last_commit: Instant,
    last_batch: u64,

    /// The batch being built, and what to restore if its commit fails.
    buf: Vec<u8>,
    lines: Vec<String>,
    waiters: Vec<Waiter>,
    submitted: u64,
    rollback: Option<(u64, String, u64)>,
    /// Records lost since the trail was last writable: (count, since, error).
    gap: Option<(u64, SystemTime, String)>,
    #[cfg(test)]
    pub(crate) fail: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Writer {
    pub fn new(
        options: &Options,
        key: SigningKey,
        head: Head,
        counters: Arc<Counters>,
        sink: Option<mpsc::SyncSender<String>>,
        lock: File,
        syncer: Syncer,
    ) -> Writer {
        let file = head.file.and_then(|path| {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .ok()
                .map(|f| (path, Arc::new(f)))
        });
        Writer {
            dir: options.dir.clone(),
            durability: options.durability,
            flush_interval: options.flush_interval,
            checkpoint_every: options.checkpoint_every.max(1),
            checkpoint_interval: options.checkpoint_interval,
            rotate_bytes: options.rotate_bytes,
            rotate_age: options.rotate_age,
            key,
            counters,
            sink,
            _lock: lock,
            len: if file.is_some() { head.len } else { 0 },
            file,
            syncer,
            opened: Instant::now(),
            seq: head.seq,
            head: head.hash,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            last_commit: Instant::now(),
            last_batch: 0,
            buf: Vec::new(),
            lines: Vec::new(),
            waiters: Vec::new(),
            submitted: 0,
            rollback: None,
            gap: None,
            #[cfg(test)]
            fail: None,
        }
    }

    pub fn run(mut self, queue: Arc<Queue>, recovery: Option<Entry>) {
        if let Some(entry) = recovery {
            self.append(&entry);
            self.commit();
        }
        loop {
            // Strict under load (the last batch held several records): batches at
            // least `STRICT_COMMIT_GAP` apart, so that records gather and one fdatasync
            // covers many. A trail that sees one record at a time commits each at once.
            if self.durability == Durability::Strict && self.last_batch > 1 {
                let since = self.last_commit.elapsed();
                if since < STRICT_COMMIT_GAP {
                    std::thread::sleep(STRICT_COMMIT_GAP - since);
                }
            }
            let Taken {
                items: batch,
                disconnected,
            } = queue.take(self.next_wake());
            if !batch.is_empty() {
                self.rotate_if_due();
                if let Some((lost, since, error)) = self.gap.take() {
                    let gap = serde_json::json!({
                        "lost": lost, "since": timestamp(since), "error": error,
                    });
                    self.append(&Entry::new(kind::GAP, &gap));
                }
            }
            let mut close = None;
            for msg in batch {
                match msg {
                    Msg::Record(entry, waiter) => {
                        self.append(&entry);
                        self.submitted += 1;
                        self.waiters.extend(waiter);
                    }
                    Msg::Close(stop, ack) => close = Some((stop, ack)),
                }
            }
            if self.since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= self.checkpoint_interval
            {
                self.checkpoint(false);
            }
            if let Some((stop, ack)) = close {
                queue.stop();
                // Records queued after the close are not written: fail their waiters.
                self.refuse(queue.take(Some(Duration::ZERO)).items);
                self.append(&stop);
                self.checkpoint(true);
                self.commit();
                self.syncer.drain();
                // Release the directory lock before saying the trail is closed.
                drop(self);
                let _ = ack.send(());
                return;
            }
            if disconnected {
                queue.stop();
                self.checkpoint(true);
                self.commit();
                self.syncer.drain();
                return;
            }
            // Strict: every batch at once. Relaxed: the writer woke because the flush
            // interval passed (or many records wait): write what it took.
            self.commit();
        }
    }

    fn refuse(&self, items: Vec<Msg>) {
        for msg in items {
            Counters::add(&self.counters.lost, 1);
            self.counters.backlog.fetch_sub(1, Ordering::Relaxed);
            if let Msg::Record(_, Some(waiter)) = msg {
                let _ = waiter.send(Err(Unavailable("the audit trail is closed".into())));
            }
        }
    }

    /// How long the thread may sleep: until the relaxed flush or the timed checkpoint.
    fn next_wake(&self) -> Option<Duration> {
        let flush = (self.durability == Durability::Relaxed).then_some(self.flush_interval);
        let checkpoint = (self.since_checkpoint > 0).then(|| {
            self.checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
        });
        match (flush, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Chains one record into the batch; a checkpoint follows every N records.
    fn append(&mut self, entry: &Entry) {
        self.push_line(&entry.kind, &timestamp(entry.ts), &entry.body);
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint(false);
        }
    }

    /// A signed checkpoint over the chain so far; `last` marks a clean stop.
    fn checkpoint(&mut self, last: bool) {
        let seq = self.seq + 1;
        let ts = timestamp(SystemTime::now());
        let sig = self
            .key
            .sign(&checkpoint_message(seq, &self.head, &ts, last));
        let body = serde_json::json!({
            "key": self.key.id, "sig": sig, "final": last, "covers": self.since_checkpoint,
        });
        self.push_line(kind::CHECKPOINT, &ts, &body.to_string());
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Counters::add(&self.counters.checkpoints, 1);
    }

    fn push_line(&mut self, kind: &str, ts: &str, body: &str) {
        if self.rollback.is_none() {
            self.rollback = Some((self.seq, self.head.clone(), self.since_checkpoint));
        }
        self.seq += 1;
        let start = self.buf.len();
        compose_into(&mut self.buf, self.seq, &self.head, ts, kind, body);
        let line = &self.buf[start..];
        self.head = hash(line);
        if self.sink.is_some() {
            self.lines.push(String::from_utf8_lossy(line).into_owned());
        }
        self.buf.push(b'\n');
    }

    /// Closes the current segment with a checkpoint and starts a new one when it is
    /// too large or too old.
    fn rotate_if_due(&mut self) {
        let due = self.len >= self.rotate_bytes || self.opened.elapsed() >= self.rotate_age;
        if self.file.is_none() || self.len == 0 || !due {
            return;
        }
        self.checkpoint(false);
        if self.commit() {
            self.file = None;
            self.len = 0;
            Counters::add(&self.counters.rotations, 1);
        }
    }

    /// Writes the batch and hands it to a syncer, which completes its waiters once it
    /// is durable. Returns whether the write worked.
    fn commit(&mut self) -> bool {
        let Some((seq_before, head_before, since_before)) = self.rollback.take() else {
            return true;
        };
        let bytes = self.buf.len() as u64;
        let started = Instant::now();
        let result = self.write(seq_before + 1);
        let lines = self.seq - seq_before;
        let submitted = std::mem::take(&mut self.submitted);
        self.counters
            .backlog
            .fetch_sub(submitted, Ordering::Relaxed);
        let ok = match result {
            Ok(file) => {
                self.len += bytes;
                Counters::add(&self.counters.records, lines);
                Counters::add(&self.counters.batches, 1);
                if let Some(sink) = &self.sink {
                    for line in self.lines.drain(..) {
                        if sink.try_send(line).is_err() {
                            Counters::add(&self.counters.sink_dropped, 1);
                        }
                    }
                }
                let waiters = std::mem::take(&mut self.waiters);
                self.syncer.sync(file, waiters, started);
                self.last_commit = Instant::now();
                self.last_batch = submitted;
                true
            }
            Err(e) => {
                // Cut the file back to its last whole record and restore the head.
                if let Some((_, file)) = &self.file {
                    let _ = file.set_len(self.len);
                }
                self.seq = seq_before;
                self.head = head_before;
                self.since_checkpoint = since_before;
                Counters::add(&self.counters.write_failures, 1);
                Counters::add(&self.counters.lost, submitted);
                if !self.counters.unavailable.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        dir = %self.dir.display(),
                        error = %e,
                        "AUDIT TRAIL CANNOT BE WRITTEN (disk full?): strict mode refuses \
                         requests until it can; relaxed mode loses records (counted)"
                    );
                }
                let why = Unavailable(e.to_string());
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(why.clone()));
                }
                let gap = self
                    .gap
                    .get_or_insert_with(|| (0, SystemTime::now(), e.to_string()));
                gap.0 += submitted;
                self.lines.clear();
                false
            }
        };
        self.buf.clear();
        ok
    }

    /// Appends the batch to the current segment (creating it first if needed).
    fn write(&mut self, first_seq: u64) -> std::io::Result<Arc<File>> {
        #[cfg(test)]
        if self
            .fail
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device (injected)",
            ));
        }
        let file = match &self.file {
            Some((_, file)) => file.clone(),
            None => {
                let path = self.dir.join(file_name(first_seq));
                let file = Arc::new(create(&path)?);
                self.opened = Instant::now();
                self.len = 0;
                self.file = Some((path, file.clone()));
                file
            }
        };
        (&*file).write_all(&self.buf)?;
        Ok(file)
    }
}

/// A new segment (0600), and its directory entry made durable.
fn create(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}
