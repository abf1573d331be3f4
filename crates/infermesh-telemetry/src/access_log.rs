//! The access log: one JSON line per request with the configured fields. Requests
//! compose their line straight into a shared in-memory buffer (no allocation and no
//! wake-up per line); a thread of
//! its own writes the buffer out every 100 ms, or sooner once it holds 256 KiB. When
//! the sink falls behind and the buffer reaches 8 MiB, lines are dropped and counted
//! rather than slowing requests.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use infermesh_config::telemetry::{AccessLog as Config, LogSink};

use crate::metrics::Metrics;

/// Buffered bytes at which the writer is woken early.
const WAKE_AT: usize = 256 << 10;
/// Buffered bytes beyond which lines are dropped.
const MAX_BUFFERED: usize = 8 << 20;
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

#[derive(Debug, Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Buffer {
    /// Whole lines (UTF-8 JSON), composed in place.
    bytes: Vec<u8>,
    lines: u64,
    /// The sending side is gone: write what is left and stop.
    closed: bool,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // The last clone closes the log (the writer thread holds the other reference).
        if Arc::strong_count(&self.shared) == 2 {
            let mut b = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            b.closed = true;
            self.shared.wake.notify_one();
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
        let shared = Arc::new(Shared::default());
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
    /// into the shared buffer: no allocation per line.
    pub fn write(&self, line: impl FnOnce(&[usize], &mut Vec<u8>)) {
        let mut b = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let start = b.bytes.len();
        line(&self.fields, &mut b.bytes);
        if b.bytes.len() > MAX_BUFFERED {
            b.bytes.truncate(start);
            drop(b);
            self.metrics.access_log_dropped.inc();
            return;
        }
        b.lines += 1;
        if b.bytes.len() >= WAKE_AT {
            self.shared.wake.notify_one();
        }
    }
}

fn write_out(shared: &Shared, mut out: Box<dyn Write + Send>, metrics: &Metrics) {
    let mut spare = Vec::new();
    let mut failed = false;
    loop {
        let (bytes, lines, closed) = {
            let mut b = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if b.bytes.len() < WAKE_AT && !b.closed {
                b = shared
                    .wake
                    .wait_timeout(b, INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let lines = std::mem::take(&mut b.lines);
            (
                std::mem::replace(&mut b.bytes, std::mem::take(&mut spare)),
                lines,
                b.closed,
            )
        };
        if !bytes.is_empty() {
            match out.write_all(&bytes).and_then(|()| out.flush()) {
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
        spare = bytes;
        spare.clear();
        if closed {
            return;
        }
    }
}
