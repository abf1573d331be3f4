//! Shadow traffic: a copy of a request, already rewritten to the mirror version, sent
//! in its own task with its own timeout. Its answer is read and dropped; nothing about
//! it reaches, delays or changes the caller's answer.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http_body_util::BodyExt;
use infermesh_telemetry::Metrics;

use crate::body::RequestBody;
use crate::endpoints::{EndpointSet, Outcome};
use crate::forward::{Clients, Outbound};

/// Marks mirrored requests for the sidecar and the model server's logs.
pub const MIRROR_HEADER: &str = "x-infermesh-mirror";

/// One mirrored request.
#[derive(Debug)]
pub struct Mirror {
    pub clients: Clients,
    pub endpoints: Arc<EndpointSet>,
    pub outbound: Outbound,
    /// The whole body (mirrors are only made of complete bodies).
    pub body: RequestBody,
    pub timeout: Duration,
    /// Counts the result (`infermesh_mirror_requests`).
    pub metrics: Arc<Metrics>,
    /// The mirrored model (a configured name).
    pub model: String,
}

/// Sends the copy in the background.
pub fn spawn(mut mirror: Mirror) {
    mirror
        .outbound
        .headers
        .insert(MIRROR_HEADER, HeaderValue::from_static("true"));
    tokio::spawn(async move {
        let timeout = mirror.timeout;
        let (metrics, model) = (mirror.metrics.clone(), mirror.model.clone());
        let result = match tokio::time::timeout(timeout, send(mirror)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(?timeout, "mirror request timed out");
                "failed"
            }
        };
        metrics.mirror(&model, result);
    });
}

/// Sends the copy; `sent` once its answer was read, else `failed`.
async fn send(mirror: Mirror) -> &'static str {
    let Some(picked) = mirror.endpoints.pick() else {
        tracing::debug!("mirror: no endpoint");
        return "failed";
    };
    match mirror
        .clients
        .send(picked.authority(), &mirror.outbound, mirror.body.attempt())
        .await
    {
        Ok(response) => {
            let outcome = if response.status().is_server_error() {
                Outcome::ServerError
            } else {
                Outcome::Success
            };
            picked.report(outcome);
            let status = response.status();
            let _ = response.into_body().collect().await;
            tracing::debug!(%status, "mirror answered");
            "sent"
        }
        Err(e) => {
            tracing::debug!(?e, "mirror failed");
            "failed"
        }
    }
}
