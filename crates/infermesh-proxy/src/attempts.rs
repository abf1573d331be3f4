//! Stage 6, the policy part: pick an endpoint per attempt, send, report the outcome
//! to outlier detection, and retry only when it is safe — on connect failure (the
//! request never left), or on 503 / UNAVAILABLE when the route is idempotent — within
//! the attempts limit, the retry budget, and only while the body can be replayed.
//! The whole exchange up to the response headers runs under the route timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Response, StatusCode};
use infermesh_config::RetryPolicy;

use crate::body::{ProxyBody, RequestBody};
use crate::budget::RetryBudget;
use crate::endpoints::{EndpointSet, Outcome, Picked};
use crate::error::Failure;
use crate::forward::{Clients, Outbound, SendError};

/// How often a retry draws again to avoid an endpoint the request already tried.
const REPICKS: usize = 8;

/// Where and how to send one request.
#[derive(Debug)]
pub struct Attempts<'a> {
    pub clients: &'a Clients,
    pub endpoints: &'a EndpointSet,
    /// Names the target in errors (`workload foo`, `model server rest`).
    pub target: Target<'a>,
    pub retries: &'a RetryPolicy,
    /// `None`: no retries at all.
    pub budget: Option<&'a RetryBudget>,
    pub timeout: Duration,
    pub max_body: u64,
    /// What the attempts did, for metrics.
    pub counts: Counts,
}

/// What a request is sent to, as errors and logs name it.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A workload's sidecars (the gateway's upstream).
    Workload(&'a str),
    /// The model server's `rest` or `grpc` address (the sidecar's upstream).
    ModelServer(&'static str),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Workload(name) => write!(f, "workload {name}"),
            Target::ModelServer(kind) => write!(f, "model server {kind}"),
        }
    }
}

/// Retries made and connection attempts that failed, for one request.
#[derive(Debug, Default)]
pub struct Counts {
    retries: AtomicU32,
    connect_failures: AtomicU32,
}

impl Counts {
    /// (retries, connect failures).
    pub fn get(&self) -> (u32, u32) {
        (
            self.retries.load(Ordering::Relaxed),
            self.connect_failures.load(Ordering::Relaxed),
        )
    }
}

impl Attempts<'_> {
    /// Sends `body` with retries; a [`Failure::Timeout`] once `timeout` has passed
    /// without response headers.
    pub async fn send(
        &self,
        outbound: &Outbound,
        body: &RequestBody,
    ) -> Result<Response<ProxyBody>, Failure> {
        match tokio::time::timeout(self.timeout, self.attempts(outbound, body)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout(self.timeout)),
        }
    }

    async fn attempts(
        &self,
        outbound: &Outbound,
        body: &RequestBody,
    ) -> Result<Response<ProxyBody>, Failure> {
        if let Some(budget) = self.budget {
            budget.record_request();
        }
        let mut attempt = 0u32;
        let mut tried = Vec::new();
        loop {
            attempt += 1;
            let Some(picked) = self.pick_avoiding(&tried) else {
                return Err(Failure::UpstreamConnect(format!(
                    "no endpoint for {}",
                    self.target
                )));
            };
            tried.push(picked.addr());
            let result = self
                .clients
                .send(picked.authority(), outbound, body.attempt())
                .await;
            let retry_allowed = match &result {
                Ok(response) => {
                    let unavailable = is_unavailable(response);
                    let outcome = if unavailable || response.status().is_server_error() {
                        Outcome::ServerError
                    } else {
                        Outcome::Success
                    };
                    picked.report(outcome);
                    unavailable && self.retries.idempotent && self.retries.on_unavailable
                }
                Err(SendError::Connect(_) | SendError::Refused(_)) => {
                    picked.report(Outcome::ConnectFailure);
                    self.counts.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.retries.on_connect_failure
                }
                Err(SendError::BodyTooLarge) => false,
                Err(SendError::Reset(_) | SendError::Other(_)) => {
                    // An upload the request guard cut (the client's fault) says
                    // nothing about the endpoint: leave its outlier state alone.
                    if body.verdict().get().is_none() {
                        picked.report(Outcome::ServerError);
                    }
                    false
                }
            };
            let retry = retry_allowed
                && attempt <= self.retries.attempts
                && body.is_replayable()
                && self.budget.is_some_and(RetryBudget::try_withdraw);
            if !retry {
                return result.map_err(|e| e.into_failure(self.max_body));
            }
            self.counts.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(attempt, target = %self.target, "retrying upstream request");
        }
    }
}

impl Attempts<'_> {
    /// An endpoint, preferring one not tried yet by this request (a retry should
    /// not go back to the endpoint that just failed while others exist).
    fn pick_avoiding(&self, tried: &[SocketAddr]) -> Option<Picked> {
        let mut picked = self.endpoints.pick()?;
        for _ in 0..REPICKS {
            if !tried.contains(&picked.addr()) {
                break;
            }
            picked = self.endpoints.pick()?;
        }
        Some(picked)
    }
}

/// HTTP 503, or a gRPC trailers-only UNAVAILABLE.
fn is_unavailable(response: &Response<ProxyBody>) -> bool {
    response.status() == StatusCode::SERVICE_UNAVAILABLE
        || response
            .headers()
            .get(crate::respond::GRPC_STATUS)
            .is_some_and(|v| v.as_bytes() == b"14")
}
