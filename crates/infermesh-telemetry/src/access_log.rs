//! The access log: one JSON line per request with the configured fields, written by a
//! thread of its own behind a bounded queue, so a slow disk or terminal never slows
//! requests (lines beyond the queue are dropped and counted).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use infermesh_config::telemetry::{AccessLog as Config, LogSink};
use serde_json::{Map, Value};

use crate::metrics::Metrics;

/// Lines held while the writer is behind.
const QUEUE: usize = 8192;

/// The sending side of the access log.
#[derive(Debug, Clone)]
pub struct AccessLog {
    fields: Arc<[&'static str]>,
    tx: SyncSender<String>,
    metrics: Arc<Metrics>,
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
        let (tx, rx) = sync_channel(QUEUE);
        let lines = metrics.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out, &lines))?;
        Ok(AccessLog {
            fields: config.fields.clone().into(),
            tx,
            metrics,
        })
    }

    /// Writes one line with the configured fields of `all` (a map of every field).
    pub fn write(&self, all: impl FnOnce(&[&'static str]) -> Map<String, Value>) {
        let object = all(&self.fields);
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.metrics.access_log_dropped.inc();
        }
    }
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>, metrics: &Metrics) {
    let mut out = BufWriter::with_capacity(64 << 10, out);
    let mut failed = false;
    let mut write = |out: &mut BufWriter<_>, line: String| match out.write_all(line.as_bytes()) {
        Ok(()) => {
            metrics.access_log_lines.inc();
            failed = false;
        }
        Err(e) => {
            metrics.access_log_dropped.inc();
            if !failed {
                tracing::warn!("writing the access log failed: {e}");
                failed = true;
            }
        }
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => write(&mut out, line),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Write what else is queued, then flush, so lines appear promptly under light
        // load and in large writes under heavy load.
        while let Ok(line) = rx.try_recv() {
            write(&mut out, line);
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}
