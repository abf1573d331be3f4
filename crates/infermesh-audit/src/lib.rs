//! The tamper-evident audit trail of infermesh: who called which model version, and
//! who changed what was serving when (see `docs/audit.md`).
//!
//! ```text
//! AuditLog::submit / event ──channel──▶ writer thread ──group commit──▶ audit-<seq>.jsonl
//!   (request path, any thread)           seq, prev hash,      (one fsync per batch;
//!                                        signed checkpoints    relaxed: per interval)
//!                                        rotation, recovery          │
//!                                                                    └──▶ sink thread (HTTP / OTLP)
//! verify / read: offline, from the files and the public key.
//! ```
//!
//! * [`record`]: the line format, the hash chain, the checkpoint message.
//! * [`keys`]: the Ed25519 signing key (0600) and its exported public key.
//! * [`AuditLog`]: the handle the proxy and the binary write through.
//! * [`verify()`]: proves a trail intact or names the first bad record.
//! * [`read`]: iterates records across files (query, rollouts).
#![forbid(unsafe_code)]

mod error;
pub mod keys;
mod log;
mod queue;
pub mod read;
pub mod record;
mod segment;
mod sink;
mod stats;
mod sync;
mod verify;
mod writer;

pub use error::{AuditError, Unavailable};
pub use log::{AuditLog, Durability, Options, Pending, SinkOptions, SinkProtocol};
pub use stats::AuditStats;
pub use verify::{Finding, FindingKind, Summary, verify};

#[cfg(test)]
mod tests;
