//! The audit stage of the pipeline: one decision record per authorization decision
//! (gateway and sidecar alike), submitted right after the decision. In strict mode the
//! record's durability is awaited just before the response is returned (`pipeline.rs`),
//! so the fsync overlaps the upstream call; if it cannot be made durable the request
//! is answered 503 / `UNAVAILABLE` (`audit-unavailable`) instead.
//!
//! A record names the decision, both principals (peer from [`PeerIdentity`], request
//! from [`RequestAuth`]), the model, version, label, API, the deciding policy and
//! rule, the request id (`x-request-id`) and the trace id (from `traceparent`).

use http::request::Parts;
use infermesh_audit::record::{Entry, kind};
use infermesh_audit::{AuditLog, Pending};
use infermesh_authz::{Basis, Decision};
use infermesh_config::RecordAllows;
use serde::Serialize;

use crate::identity::{Caller, RequestAuth};
use crate::inspect::{Inspected, Protocol};
use crate::pipeline::Role;

/// Longest request id kept (longer ones are cut).
const MAX_REQUEST_ID: usize = 128;

/// The trail a gateway or sidecar records its decisions in.
#[derive(Clone, Debug)]
pub struct ProxyAudit {
    log: AuditLog,
    allows: RecordAllows,
}

/// A decision record's fields (after `seq`, `prev`, `ts`, `kind`).
#[derive(Serialize)]
struct DecisionRecord<'a> {
    decision: &'static str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<&'a str>,
    /// A mirror copy's decision (not answered to anyone).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mirror: bool,
    peer: Option<&'a str>,
    principal: Option<&'a str>,
    source: Option<String>,
    model: &'a str,
    version: Option<i64>,
    label: Option<&'a str>,
    api: &'static str,
    protocol: &'static str,
    method: &'a str,
    path: &'a str,
    policy: Option<&'a str>,
    rule: Option<usize>,
    basis: &'static str,
    request_id: Option<&'a str>,
    trace_id: Option<&'a str>,
}

impl ProxyAudit {
    pub fn new(log: AuditLog, allows: RecordAllows) -> ProxyAudit {
        ProxyAudit { log, allows }
    }

    /// Submits the record of `decision`, unless `record_allows` leaves this allow out.
    pub fn decision(
        &self,
        role: &Role,
        request: (&Parts, &Caller),
        inspected: &Inspected,
        version: Option<i64>,
        decision: &Decision,
        mirror: bool,
    ) -> Option<Pending> {
        let who = match role {
            Role::Gateway => ("gateway", None),
            Role::Sidecar { workload } => ("sidecar", Some(workload.as_str())),
        };
        self.decision_as(who, request, inspected, version, decision, mirror)
    }

    /// As [`ProxyAudit::decision`], for a decision made as `(role, workload)` — e.g.
    /// `("ext-authz", None)` for Envoy's checks.
    pub fn decision_as(
        &self,
        (role, workload): (&'static str, Option<&str>),
        (parts, caller): (&Parts, &Caller),
        inspected: &Inspected,
        version: Option<i64>,
        decision: &Decision,
        mirror: bool,
    ) -> Option<Pending> {
        let recorded = !decision.allowed
            || match self.allows {
                RecordAllows::All => true,
                RecordAllows::Audited => decision.audit,
                RecordAllows::None => false,
            };
        if !recorded {
            return None;
        }
        let model = &inspected.model;
        let deciding = decision.deciding.as_ref();
        let record = DecisionRecord {
            decision: if decision.allowed { "allow" } else { "deny" },
            role,
            workload,
            mirror,
            peer: caller.peer.as_ref().map(|p| &*p.principal),
            principal: parts
                .extensions
                .get::<RequestAuth>()
                .map(|a| a.principal.as_str()),
            source: caller.connection.map(|c| c.peer.ip().to_string()),
            model: &model.model,
            version,
            label: model.named_label(),
            api: model.api.as_str(),
            protocol: match model.protocol {
                Protocol::Rest => "rest",
                Protocol::Grpc => "grpc",
            },
            method: parts.method.as_str(),
            path: &inspected.path,
            policy: deciding.map(|d| &*d.policy),
            rule: deciding.map(|d| d.rule),
            basis: basis(decision.basis),
            request_id: header(parts, "x-request-id").map(cut),
            trace_id: header(parts, "traceparent").and_then(trace_id),
        };
        Some(self.log.submit(Entry::new(kind::DECISION, &record)))
    }
}

fn basis(basis: Basis) -> &'static str {
    match basis {
        Basis::CustomUnavailable => "custom-unavailable",
        Basis::DenyMatched => "deny-matched",
        Basis::AllowMatched => "allow-matched",
        Basis::NoAllowMatched => "no-allow-matched",
        Basis::Default => "default",
    }
}

fn header<'p>(parts: &'p Parts, name: &str) -> Option<&'p str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn cut(id: &str) -> &str {
    match id.char_indices().nth(MAX_REQUEST_ID) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.trim().split('-');
    let (_version, trace) = (fields.next()?, fields.next()?);
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("garbage"), None);
    }

    #[test]
    fn request_ids_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        assert_eq!(cut(&long).chars().count(), MAX_REQUEST_ID);
        assert_eq!(cut("abc"), "abc");
    }
}
