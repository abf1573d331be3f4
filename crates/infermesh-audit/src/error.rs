//! Errors: [`AuditError`] opening a trail, [`Unavailable`] when a record could not be
//! made durable (strict mode refuses the request).

use std::path::PathBuf;

/// Opening the trail failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "audit directory {0} is in use by another infermesh process (it holds {0}/LOCK); \
         give each process its own `audit.dir`"
    )]
    Locked(PathBuf),
    #[error("audit signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(
        "audit file {file} line {line} is corrupt before its end ({why}); only a torn last \
         record is repaired automatically: check it with `infermesh audit verify` and move \
         the file aside to start a new trail"
    )]
    Corrupt {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("audit file {file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("audit sink: {0}")]
    Sink(String),
}

/// The record could not be written (disk full, I/O error, backlog full, trail
/// closed): in strict mode the request is refused rather than served unaudited.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot be written: {0}")]
pub struct Unavailable(pub String);
