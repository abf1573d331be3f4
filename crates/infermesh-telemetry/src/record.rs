//! [`Record`]: what one finished request/response exchange tells telemetry, and how
//! it becomes Istio metric labels, a span and an access-log line.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::context::TraceContext;
use crate::export::{self, SpanData};
use crate::metrics::{IstioLabels, Metrics, Observation};

/// Which side of a hop reports: the gateway reports as Istio's `source` (the client
/// side of the gateway→sidecar hop), a sidecar as `destination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reporter {
    Gateway,
    Sidecar,
}

impl Reporter {
    pub fn label(self) -> &'static str {
        match self {
            Reporter::Gateway => "source",
            Reporter::Sidecar => "destination",
        }
    }

    fn role(self) -> &'static str {
        match self {
            Reporter::Gateway => "gateway",
            Reporter::Sidecar => "sidecar",
        }
    }
}

/// The protocol of the exchange, as Istio's `request_protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

/// One end of the hop, from config (or `unknown`).
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    pub workload: &'a str,
    pub namespace: &'a str,
    /// `spiffe://...` when known, else `unknown`.
    pub principal: &'a str,
}

impl Peer<'_> {
    pub const UNKNOWN: Peer<'static> = Peer {
        workload: "unknown",
        namespace: "unknown",
        principal: "unknown",
    };
}

/// The authorization decision.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    pub allowed: bool,
    /// The deciding policy (`None`: the default).
    pub policy: Option<&'a str>,
    pub rule: Option<usize>,
}

/// One finished exchange. Model, version and signature are the config's names: the
/// caller passes `None` for anything the config does not list.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    pub reporter: Reporter,
    pub protocol: Protocol,
    pub method: &'a str,
    pub path: &'a str,
    pub started: SystemTime,
    pub duration: Duration,
    /// Time spent waiting for the upstream, when it was called.
    pub upstream: Option<Duration>,
    pub request_id: &'a str,
    pub trace: TraceContext,
    pub source_address: Option<SocketAddr>,
    pub source: Peer<'a>,
    pub destination: Peer<'a>,
    pub destination_service: &'a str,
    /// The request came over mutual TLS (sidecar) / was sent over it (gateway).
    pub mtls: bool,
    pub request_principal: Option<&'a str>,
    pub model: Option<&'a str>,
    pub version: Option<i64>,
    pub signature: Option<&'a str>,
    pub api: Option<&'static str>,
    pub decision: Option<Decision<'a>>,
    pub status: u16,
    pub grpc_status: Option<i32>,
    /// Envoy-style response flags (`-` when none).
    pub response_flags: &'static str,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

const GRPC_CODES: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

impl Record<'_> {
    pub(crate) fn labels(&self, metrics: &Metrics) -> IstioLabels {
        let version = self.version.map(|v| v.to_string());
        let model = self.model.unwrap_or("unknown");
        IstioLabels {
            reporter: self.reporter.label(),
            source_workload: self.source.workload.to_owned(),
            source_workload_namespace: self.source.namespace.to_owned(),
            source_principal: self.source.principal.to_owned(),
            destination_workload: self.destination.workload.to_owned(),
            destination_workload_namespace: self.destination.namespace.to_owned(),
            destination_principal: self.destination.principal.to_owned(),
            destination_service: self.destination_service.to_owned(),
            destination_version: version.clone().unwrap_or_else(|| "unknown".to_owned()),
            request_protocol: match self.protocol {
                Protocol::Http => "http",
                Protocol::Grpc => "grpc",
            },
            response_code: self.status,
            grpc_response_status: self
                .grpc_status
                .and_then(|c| GRPC_CODES.get(usize::try_from(c).ok()?).copied())
                .unwrap_or(""),
            response_flags: self.response_flags,
            connection_security_policy: match (self.reporter, self.mtls) {
                (_, true) => "mutual_tls",
                (Reporter::Gateway, false) => "unknown",
                (Reporter::Sidecar, false) => "none",
            },
            model_name: model.to_owned(),
            model_version: version.unwrap_or_else(|| "unknown".to_owned()),
            model_signature: match (self.model, self.signature) {
                (Some(m), Some(s)) => metrics.signature_label(m, s),
                _ => String::new(),
            },
            model_api: self.api.unwrap_or("unknown"),
        }
    }

    pub(crate) fn observation(&self) -> Observation {
        Observation {
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
        }
    }

    fn failed(&self) -> bool {
        self.status >= 500 || matches!(self.grpc_status, Some(2 | 4 | 8 | 10 | 12 | 13 | 14 | 15))
    }

    pub(crate) fn span(&self) -> SpanData {
        use export::Value::{Bool, Int, Str};
        let model = self.model.unwrap_or("unknown");
        let mut attributes = vec![
            ("infermesh.role", Str(self.reporter.role().to_owned())),
            ("model.name", Str(model.to_owned())),
            ("http.request.method", Str(self.method.to_owned())),
            ("url.path", Str(self.path.to_owned())),
            ("http.response.status_code", Int(i64::from(self.status))),
            ("request.id", Str(self.request_id.to_owned())),
            ("peer.principal", Str(self.source.principal.to_owned())),
            (
                "infermesh.response_flags",
                Str(self.response_flags.to_owned()),
            ),
        ];
        if let Some(v) = self.version {
            attributes.push(("model.version", Int(v)));
        }
        if let Some(s) = self.signature {
            attributes.push(("model.signature", Str(s.to_owned())));
        }
        if let Some(api) = self.api {
            attributes.push(("model.api", Str(api.to_owned())));
        }
        if let Some(p) = self.request_principal {
            attributes.push(("enduser.id", Str(p.to_owned())));
        }
        if let Some(d) = &self.decision {
            attributes.push(("authz.allowed", Bool(d.allowed)));
            attributes.push(("authz.policy", Str(d.policy.unwrap_or("").to_owned())));
        }
        if let Some(c) = self.grpc_status {
            attributes.push(("rpc.grpc.status_code", Int(i64::from(c))));
        }
        SpanData {
            context: self.trace,
            name: format!("{} {model}", self.reporter.role()),
            start: self.started,
            end: self.started + self.duration,
            attributes,
            error: self.failed(),
        }
    }

    /// Every access-log field named in `fields`.
    pub(crate) fn log_fields(&self, fields: &[&'static str]) -> Map<String, Value> {
        let mut m = Map::new();
        for &field in fields {
            let value = match field {
                "time" => Value::String(rfc3339(self.started)),
                "request_id" => self.request_id.into(),
                "trace_id" => self.trace.trace_id_hex().into(),
                "reporter" => self.reporter.role().into(),
                "protocol" => match self.protocol {
                    Protocol::Http => "http",
                    Protocol::Grpc => "grpc",
                }
                .into(),
                "method" => self.method.into(),
                "path" => self.path.into(),
                "peer_principal" => opt(self.mtls.then_some(self.source.principal)),
                "request_principal" => opt(self.request_principal),
                "source_address" => opt(self.source_address.map(|a| a.to_string()).as_deref()),
                "model" => opt(self.model),
                "version" => self.version.map_or(Value::Null, Value::from),
                "signature" => opt(self.signature),
                "api" => opt(self.api),
                "decision" => opt(self
                    .decision
                    .map(|d| if d.allowed { "allow" } else { "deny" })),
                "policy" => opt(self.decision.and_then(|d| d.policy)),
                "status" => self.status.into(),
                "grpc_status" => self.grpc_status.map_or(Value::Null, Value::from),
                "response_flags" => self.response_flags.into(),
                "request_bytes" => self.request_bytes.into(),
                "response_bytes" => self.response_bytes.into(),
                "upstream_ms" => self.upstream.map_or(Value::Null, |d| ms(d).into()),
                "duration_ms" => ms(self.duration).into(),
                _ => continue,
            };
            m.insert(field.to_owned(), value);
        }
        m
    }
}

fn opt(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `2026-11-29T01:02:03.456789Z`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_000_000_123_456);
        assert_eq!(rfc3339(t), "2026-11-30T00:53:20.123456Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
