//! The pipeline stage that is still nearly empty, as a named seam with its final
//! signature, so telemetry and audit plug in without reshaping the pipeline
//! (authentication is `authenticate.rs`, authorization `authorize.rs`):
//!
//! * [`record`] (stage 7) will feed metrics, traces, the access log and the audit
//!   trail from one [`Exchange`]. Today: a debug log line.

use std::time::Instant;

use infermesh_authz::Decision;

use crate::inspect::{ModelRequest, Protocol};

/// What the record stage learns about one request/response exchange.
#[derive(Debug)]
pub struct Exchange {
    pub protocol: Protocol,
    pub started: Instant,
    /// Set once the model request was parsed.
    pub model: Option<ModelRequest>,
    /// The version routed to, when one was chosen.
    pub version: Option<i64>,
    /// The authorization decision, once made (for the audit trail).
    pub authz: Option<Decision>,
    /// The `x-infermesh-error` kind when the proxy answered itself.
    pub failure: Option<String>,
    pub status: u16,
}

impl Exchange {
    pub fn new(protocol: Protocol) -> Exchange {
        Exchange {
            protocol,
            started: Instant::now(),
            model: None,
            version: None,
            authz: None,
            failure: None,
            status: 0,
        }
    }
}

/// Stage 7: record the exchange.
pub fn record(exchange: &Exchange) {
    tracing::debug!(
        protocol = ?exchange.protocol,
        model = exchange.model.as_ref().map(|m| m.model.as_str()),
        version = exchange.version,
        allowed = exchange.authz.as_ref().map(|d| d.allowed),
        status = exchange.status,
        failure = exchange.failure.as_deref(),
        elapsed_us = exchange.started.elapsed().as_micros() as u64,
        "request"
    );
}
