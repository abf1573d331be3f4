//! [`Record`]: what one finished request/response exchange tells telemetry, and how
//! it becomes Istio metric labels, a span and an access-log line.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::ACCESS_LOG_FIELDS;
use crate::context::TraceContext;
use crate::export::{self, SpanData};
use crate::metrics::{LabelRefs, Metrics, Observation};

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
    pub(crate) fn labels(&self, metrics: &Metrics) -> LabelRefs<'_> {
        LabelRefs {
            reporter: self.reporter.label(),
            source_workload: self.source.workload,
            source_workload_namespace: self.source.namespace,
            source_principal: self.source.principal,
            destination_workload: self.destination.workload,
            destination_workload_namespace: self.destination.namespace,
            destination_principal: self.destination.principal,
            destination_service: self.destination_service,
            version: self.version,
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
            model_name: self.model.unwrap_or("unknown"),
            model_signature: match (self.model, self.signature) {
                (Some(m), Some(s)) if metrics.signature_counted(m, s) => s,
                (Some(_), Some(_)) => "other",
                _ => "",
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

    /// One access-log line (a JSON object with the fields named in `fields`, in
    /// that order, and a newline), written straight into one string.
    #[cfg(test)]
    pub(crate) fn log_line(&self, fields: &[usize]) -> String {
        let mut out = String::new();
        self.log_into(fields, &mut out);
        out
    }

    /// [`Record::log_line`], appended to `out` (no allocation of its own).
    pub(crate) fn log_into(&self, fields: &[usize], out: &mut String) {
        let mut j = JsonLine::new(out);
        for &index in fields {
            let Some(&field) = ACCESS_LOG_FIELDS.get(index) else {
                continue;
            };
            // Matched by position in ACCESS_LOG_FIELDS (no string comparisons).
            match index {
                0 => j.raw(field, |out| rfc3339_into(out, self.started)),
                1 => j.str(field, self.request_id),
                2 => j.raw(field, |out| hex_push(out, &self.trace.trace_id)),
                3 => j.str(field, self.reporter.role()),
                4 => j.str(
                    field,
                    match self.protocol {
                        Protocol::Http => "http",
                        Protocol::Grpc => "grpc",
                    },
                ),
                5 => j.str(field, self.method),
                6 => j.str(field, self.path),
                7 => j.opt_str(field, self.mtls.then_some(self.source.principal)),
                8 => j.opt_str(field, self.request_principal),
                9 => match self.source_address {
                    Some(a) => j.raw(field, |out| {
                        use std::fmt::Write as _;
                        let _ = write!(out, "{a}");
                    }),
                    None => j.opt_str(field, None),
                },
                10 => j.opt_str(field, self.model),
                11 => j.opt_num(field, self.version),
                12 => j.opt_str(field, self.signature),
                13 => j.opt_str(field, self.api),
                14 => j.opt_str(
                    field,
                    self.decision
                        .map(|d| if d.allowed { "allow" } else { "deny" }),
                ),
                15 => j.opt_str(field, self.decision.and_then(|d| d.policy)),
                16 => j.opt_num(field, Some(self.status)),
                17 => j.opt_num(field, self.grpc_status),
                18 => j.str(field, self.response_flags),
                19 => j.opt_num(field, Some(self.request_bytes)),
                20 => j.opt_num(field, Some(self.response_bytes)),
                21 => j.opt_num(field, self.upstream.map(ms)),
                22 => j.opt_num(field, Some(ms(self.duration))),
                _ => {}
            }
        }
        j.finish();
    }
}

/// A JSON object written field by field into one string.
struct JsonLine<'o> {
    out: &'o mut String,
    first: bool,
}

impl JsonLine<'_> {
    fn new(out: &mut String) -> JsonLine<'_> {
        out.push('{');
        JsonLine { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        escape_into(self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => {
                self.key(key);
                self.out.push_str("null");
            }
        }
    }

    fn opt_num(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        use std::fmt::Write as _;
        self.key(key);
        match value {
            Some(v) => {
                let _ = write!(self.out, "{v}");
            }
            None => self.out.push_str("null"),
        }
    }

    fn finish(self) {
        self.out.push_str("}\n");
    }

    /// A field whose value is written by `value` (digits and ASCII only: no escaping).
    fn raw(&mut self, key: &str, value: impl FnOnce(&mut String)) {
        self.key(key);
        self.out.push('"');
        value(self.out);
        self.out.push('"');
    }
}

/// `value` as a JSON string literal (RFC 8259 escaping: `"`, `\\` and control
/// characters; everything else, UTF-8 included, as is).
fn escape_into(out: &mut String, value: &str) {
    use std::fmt::Write as _;
    out.push('"');
    let mut rest = value;
    // The bytes to escape are ASCII; UTF-8 continuation bytes never match them.
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().expect("found at a char boundary");
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `2026-11-29T01:02:03.456789Z`.
#[cfg(test)]
fn rfc3339(t: SystemTime) -> String {
    let mut out = String::new();
    rfc3339_into(&mut out, t);
    out
}

/// `2026-11-29T01:02:03.456789Z`, appended to `out`.
fn rfc3339_into(out: &mut String, t: SystemTime) {
    use std::fmt::Write as _;
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    );
}

/// Lowercase hex of `bytes`, appended to `out`.
fn hex_push(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
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
    fn access_log_lines_are_json_with_escaped_strings_in_field_order() {
        let trace = TraceContext::extract(&http::HeaderMap::new(), 0.0, &mut fastrand::Rng::new());
        let r = Record {
            reporter: Reporter::Sidecar,
            protocol: Protocol::Grpc,
            method: "POST",
            path: "/weird\"path\\\u{1}",
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_micros(1500),
            upstream: None,
            request_id: "id-1",
            trace,
            source_address: None,
            source: Peer::UNKNOWN,
            destination: Peer::UNKNOWN,
            destination_service: "unknown",
            mtls: false,
            request_principal: Some("iss/ünïcode"),
            model: Some("m"),
            version: Some(3),
            signature: None,
            api: Some("predict"),
            decision: Some(Decision {
                allowed: false,
                policy: Some("p"),
                rule: Some(0),
            }),
            status: 200,
            grpc_status: Some(7),
            response_flags: "-",
            request_bytes: 10,
            response_bytes: 20,
        };
        let all: Vec<usize> = (0..ACCESS_LOG_FIELDS.len()).collect();
        let line = r.log_line(&all);
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/weird\"path\\\u{1}");
        assert_eq!(v["request_principal"], "iss/ünïcode");
        assert_eq!(v["version"], 3);
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["grpc_status"], 7);
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["peer_principal"], serde_json::Value::Null);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), crate::ACCESS_LOG_FIELDS.len());
        let only = r.log_line(&[16, 10]);
        assert_eq!(only, "{\"status\":200,\"model\":\"m\"}\n");
    }

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
