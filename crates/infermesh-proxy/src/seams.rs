//! The pipeline stages that are still empty, as named seams with their final
//! signatures, so authentication, authorization and telemetry plug in without
//! reshaping the pipeline:
//!
//! * [`authenticate`] (stage 3) will verify the JWT bearer token / the peer's SPIFFE
//!   certificate and put `RequestPrincipal` / `PeerIdentity` into the request
//!   extensions. Today: no-op.
//! * [`authorize`] (stage 4) will evaluate policy over those identities and the
//!   [`ModelRequest`] extension; it must fail closed. Today: allows everything.
//! * [`record`] (stage 7) will feed metrics, traces, the access log and the audit
//!   trail from one [`Exchange`]. Today: a debug log line.

use std::time::Instant;

use http::request::Parts;

use crate::error::Failure;
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
            failure: None,
            status: 0,
        }
    }
}

/// Stage 3: who is calling. No-op seam.
pub async fn authenticate(_request: &mut Parts) -> Result<(), Failure> {
    Ok(())
}

/// Stage 4: may they call this model? No-op seam (allows).
pub async fn authorize(_request: &Parts) -> Result<(), Failure> {
    Ok(())
}

/// Stage 7: record the exchange.
pub fn record(exchange: &Exchange) {
    tracing::debug!(
        protocol = ?exchange.protocol,
        model = exchange.model.as_ref().map(|m| m.model.as_str()),
        version = exchange.version,
        status = exchange.status,
        failure = exchange.failure.as_deref(),
        elapsed_us = exchange.started.elapsed().as_micros() as u64,
        "request"
    );
}
