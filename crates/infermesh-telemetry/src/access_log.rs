//! The access log: one JSON line per request with the configured fields. Requests
//! compose their line straight into an in-memory buffer of their thread's own
//! ([`PerThread`]: no allocation, no wake-up and no shared lock per line); a thread
//! of its own writes the buffers out every 100 ms, or sooner once one holds 1 MiB
//! (large enough that under load the timer, not a wake-up from a worker, is what
//! usually starts a write). Within a buffer lines are in the order requests
//! finished; buffers of different threads are written one after the other, so the
//! file is in time order per write, not line by line (each line has its `time`).
//! When the sink falls behind and a thread's buffer reaches 4 MiB, that thread's
//! lines are dropped and counted rather than slowing requests.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use infermesh_config::telemetry::{AccessLog as Config, LogSink};

use crate::fragments::LineMemo;
use crate::metrics::Metrics;
use crate::per_thread::PerThread;

/// Bytes in one thread's buffer at which the writer is woken early.
const WAKE_AT: usize = 1 << 20;
/// Bytes in one thread's buffer beyond which its lines are dropped.
const MAX_BUFFERED: usize = 4 << 20;
/// How often the writer writes what has been buffered.
const INTERVAL: Duration = Duration::from_millis(100);

/// The sending side of the access log.
#[derive(Debug, Clone)]
pub struct AccessLog {
    /// The configured fields, as positions in `ACCESS_LOG_FIELDS`.
    fields: Arc<[usize]>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct Shared {
    buffers: PerThread<Buffer>,
    wake: Mutex<Wake>,
    signal: Condvar,
}

#[derive(Debug, Default)]
struct Buffer {
    /// Whole lines (UTF-8 JSON), composed in place.
    bytes: Vec<u8>,
    lines: u64,
    /// The writer has been asked to come early for this buffer.
    woken: bool,
    /// This thread's last time stamp and repeated runs of fields.
    memo: LineMemo,
}

#[derive(Debug, Default)]
struct Wake {
    /// A buffer is full enough to be written now.
    requested: bool,
    /// The sending side is gone: write what is left and stop.
    closed: bool,
}

impl Shared {
    fn wake(&self) -> MutexGuard<'_, Wake> {
        self.wake.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // The last clone closes the log (the writer thread holds the other reference).
        if Arc::strong_count(&self.shared) == 2 {
            self.shared.wake().closed = true;
            self.shared.signal.notify_one();
        }
    }
}

impl AccessLog {
    /// Opens the sink (a file is created or appended to) and starts the writer thread.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &config.sink {
            LogSink::Stdout => Box::new(std::io::stdout()),
            LogSink::File(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Box::new(file)
            }
        };
        let shared = Arc::new(Shared {
            buffers: PerThread::new(),
            wake: Mutex::default(),
            signal: Condvar::new(),
        });
        let (writer, lines) = (shared.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_out(&writer, out, &lines))?;
        let fields: Vec<usize> = config
            .fields
            .iter()
            .filter_map(|f| crate::ACCESS_LOG_FIELDS.iter().position(|k| k == f))
            .collect();
        Ok(AccessLog {
            fields: fields.into(),
            shared,
            metrics,
        })
    }

    /// Queues one line, composed by `line` (from the configured fields) straight
    /// into the calling thread's buffer: no allocation per line.
    pub(crate) fn write(&self, line: impl FnOnce(&[usize], &mut Vec<u8>, &mut LineMemo)) {
        let mut guard = self.shared.buffers.mine();
        let b = &mut *guard;
        let start = b.bytes.len();
        line(&self.fields, &mut b.bytes, &mut b.memo);
        if b.bytes.len() > MAX_BUFFERED {
            b.bytes.truncate(start);
            drop(guard);
            self.metrics.access_log_dropped.inc();
            return;
        }
        b.lines += 1;
        if b.bytes.len() >= WAKE_AT && !b.woken {
            b.woken = true;
            drop(guard);
            self.shared.wake().requested = true;
            self.shared.signal.notify_one();
        }
    }
}

fn write_out(shared: &Shared, mut out: Box<dyn Write + Send>, metrics: &Metrics) {
    // Emptied buffers, handed back to the threads (their capacity is kept).
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut failed = false;
    loop {
        let closed = {
            let mut w = shared.wake();
            if !w.requested && !w.closed {
                w = shared
                    .signal
                    .wait_timeout(w, INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            w.requested = false;
            w.closed
        };
        let mut lines = 0;
        shared.buffers.each(|b| {
            if !b.bytes.is_empty() {
                batch.push(std::mem::replace(
                    &mut b.bytes,
                    spare.pop().unwrap_or_default(),
                ));
                lines += std::mem::take(&mut b.lines);
            }
            b.woken = false;
        });
        if !batch.is_empty() {
            let written = batch
                .iter()
                .try_for_each(|bytes| out.write_all(bytes))
                .and_then(|()| out.flush());
            match written {
                Ok(()) => {
                    metrics.access_log_lines.inc_by(lines);
                    failed = false;
                }
                Err(e) => {
                    metrics.access_log_dropped.inc_by(lines);
                    if !failed {
                        tracing::warn!("writing the access log failed: {e}");
                        failed = true;
                    }
                }
            }
        }
        for mut bytes in batch.drain(..) {
            bytes.clear();
            spare.push(bytes);
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use infermesh_config::telemetry::{AccessLog as Config, LogSink};

    use super::*;

    /// Lines from several threads, enough to fill buffers many times over: every line
    /// reaches the file whole, each thread's in its order, and closing the log writes
    /// what is left.
    #[test]
    fn every_line_from_every_thread_reaches_the_file_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Arc::new(Metrics::new());
        let config = Config {
            sink: LogSink::File(path.clone()),
            fields: vec!["status"],
        };
        let log = AccessLog::start(&config, metrics.clone()).unwrap();
        const THREADS: usize = 4;
        const LINES: usize = 20_000;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..LINES {
                        log.write(|fields, out, _| {
                            assert_eq!(fields, [16]);
                            writeln!(
                                out,
                                "{{\"thread\":{t},\"line\":{i},\"pad\":\"{}\"}}",
                                "x".repeat(i % 50)
                            )
                            .unwrap();
                        });
                    }
                });
            }
        });
        drop(log);
        let expected = THREADS * LINES;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let counted = format!("infermesh_access_log_lines_total {expected}\n");
        // The writer counts lines once they are written: wait for both.
        let (text, scrape) = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let scrape = metrics.prometheus_text();
            let done = text.lines().count() >= expected && scrape.contains(&counted);
            if done || std::time::Instant::now() > deadline {
                break (text, scrape);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut next = [0usize; THREADS];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (t, i) = (
                v["thread"].as_u64().unwrap() as usize,
                v["line"].as_u64().unwrap() as usize,
            );
            assert_eq!(i, next[t], "thread {t}'s lines in order");
            next[t] += 1;
        }
        assert_eq!(next, [LINES; THREADS], "every line written");
        assert!(scrape.contains(&counted), "{scrape}");
    }
}
