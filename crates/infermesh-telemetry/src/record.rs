//! [`Record`]: what one finished request/response exchange tells telemetry, and how
//! it becomes Istio metric labels, a span and an access-log line.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::context::TraceContext;
use crate::export::{self, SpanData};
use crate::fragments::{Addresses, Fragments, HEAD, LineMemo, TAIL};
use crate::json_line::JsonLine;
use crate::requests::{LabelRefs, Observation, Request};

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

/// Every access-log field, in order: the default line.
const ALL_IN_ORDER: [usize; 23] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
];
const _: () = assert!(ALL_IN_ORDER.len() == crate::ACCESS_LOG_FIELDS.len());

const GRPC_CODES: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

impl Record<'_> {
    /// What the request adds to the metrics.
    pub(crate) fn metrics(&self) -> Request<'_> {
        Request {
            labels: self.labels(),
            signature: self.model.zip(self.signature),
            observation: self.observation(),
            decision: self
                .decision
                .map(|d| (self.reporter.label(), d.allowed, d.policy.unwrap_or(""))),
        }
    }

    /// The Istio labels; the signature is `""` here when the request named a model
    /// and a signature (the metrics decide between the name and `other`).
    fn labels(&self) -> LabelRefs<'_> {
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
            model_signature: "",
            model_api: self.api.unwrap_or("unknown"),
        }
    }

    fn observation(&self) -> Observation {
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
        let mut out = Vec::new();
        self.log_into(fields, &mut out, &mut LineMemo::default());
        String::from_utf8(out).expect("access-log lines are UTF-8")
    }

    /// [`Record::log_line`], appended to `out` (no allocation of its own); `memo` is
    /// what the calling thread remembers from its earlier lines.
    pub(crate) fn log_into(&self, fields: &[usize], out: &mut Vec<u8>, memo: &mut LineMemo) {
        let mut j = JsonLine::new(out, &mut memo.stamps);
        if fields == ALL_IN_ORDER {
            self.default_fields(&mut j, &mut memo.fragments, &mut memo.addresses);
        } else {
            for &index in fields {
                self.field(&mut j, index);
            }
        }
        j.finish();
    }

    /// The default: every field in order, written straight through (no loop and no
    /// dispatch per field), with the runs that repeat from line to line copied
    /// from `fragments`, and the source address from `addresses`, when this thread
    /// wrote them before (tests compare both with the per-field loop).
    #[inline(always)]
    fn default_fields(
        &self,
        j: &mut JsonLine<'_>,
        fragments: &mut Fragments,
        addresses: &mut Addresses,
    ) {
        macro_rules! each {
            ($($i:literal)*) => { $(self.field(j, $i);)* };
        }
        const _: () = assert!(*HEAD.start() == 3 && *HEAD.end() == 7);
        const _: () = assert!(*TAIL.start() == 10 && *TAIL.end() == 18);
        each!(0 1 2);
        // Fields 8 and 9: the source address as the per-field loop writes it.
        let mut middle = |j: &mut JsonLine<'_>| {
            self.field(j, 8);
            match self.source_address {
                Some(a) => j.verbatim(b"\"source_address\":", addresses.quoted(a)),
                None => self.field(j, 9),
            }
        };
        if let Some(runs) = fragments.find(self) {
            j.fragment(&runs.head);
            middle(j);
            j.fragment(&runs.tail);
        } else {
            let head = j.mark();
            each!(3 4 5 6 7);
            let middle_at = j.mark();
            middle(j);
            let tail = j.mark();
            each!(10 11 12 13 14 15 16 17 18);
            let end = j.mark();
            fragments.remember(self, j.between(head..middle_at), j.between(tail..end));
        }
        each!(19 20 21 22);
    }

    /// One field, by its position in ACCESS_LOG_FIELDS (no string comparisons; a
    /// test checks that each position writes its field's name).
    #[inline(always)]
    pub(crate) fn field(&self, j: &mut JsonLine<'_>, index: usize) {
        match index {
            0 => j.time(b"\"time\":", self.started),
            1 => j.str(b"\"request_id\":", self.request_id),
            2 => j.hex16(b"\"trace_id\":", &self.trace.trace_id),
            3 => j.word(b"\"reporter\":", Some(self.reporter.role())),
            4 => j.word(
                b"\"protocol\":",
                Some(match self.protocol {
                    Protocol::Http => "http",
                    Protocol::Grpc => "grpc",
                }),
            ),
            5 => j.str(b"\"method\":", self.method),
            6 => j.str(b"\"path\":", self.path),
            7 => j.opt_str(
                b"\"peer_principal\":",
                self.mtls.then_some(self.source.principal),
            ),
            8 => j.opt_str(b"\"request_principal\":", self.request_principal),
            9 => match self.source_address {
                Some(a) => j.socket_addr(b"\"source_address\":", a),
                None => j.opt_str(b"\"source_address\":", None),
            },
            10 => j.opt_str(b"\"model\":", self.model),
            11 => j.opt_num(b"\"version\":", self.version),
            12 => j.opt_str(b"\"signature\":", self.signature),
            13 => j.word(b"\"api\":", self.api),
            14 => j.word(
                b"\"decision\":",
                self.decision
                    .map(|d| if d.allowed { "allow" } else { "deny" }),
            ),
            15 => j.opt_str(b"\"policy\":", self.decision.and_then(|d| d.policy)),
            16 => j.opt_num(b"\"status\":", Some(self.status)),
            17 => j.opt_num(b"\"grpc_status\":", self.grpc_status),
            18 => j.word(b"\"response_flags\":", Some(self.response_flags)),
            19 => j.opt_num(b"\"request_bytes\":", Some(self.request_bytes)),
            20 => j.opt_num(b"\"response_bytes\":", Some(self.response_bytes)),
            21 => j.opt_ms(b"\"upstream_ms\":", self.upstream),
            22 => j.opt_ms(b"\"duration_ms\":", Some(self.duration)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ACCESS_LOG_FIELDS;

    fn record(trace: TraceContext) -> Record<'static> {
        Record {
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
        }
    }

    #[test]
    fn access_log_lines_are_json_with_escaped_strings_in_field_order() {
        let trace = TraceContext::extract(&http::HeaderMap::new(), 0.0, &mut fastrand::Rng::new());
        let r = record(trace);
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

    /// The default line (all fields, written straight through) is the line the
    /// per-field loop writes, for records with and without each optional part.
    #[test]
    fn the_default_line_equals_the_field_by_field_line() {
        let trace = TraceContext::extract(&http::HeaderMap::new(), 0.0, &mut fastrand::Rng::new());
        let base = record(trace);
        let variants = [
            base.clone(),
            Record {
                source_address: Some("127.0.0.1:1".parse().unwrap()),
                mtls: true,
                upstream: Some(Duration::from_micros(1234)),
                signature: Some("serving_default"),
                ..base.clone()
            },
            Record {
                source_address: Some("[::1]:8080".parse().unwrap()),
                request_principal: None,
                model: None,
                version: None,
                api: None,
                decision: None,
                grpc_status: None,
                ..base.clone()
            },
        ];
        // In reverse order, so the loop runs (the default is only the in-order list).
        let mut reversed = ALL_IN_ORDER;
        reversed.reverse();
        for r in &variants {
            let straight = r.log_line(&ALL_IN_ORDER);
            let parse = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap();
            assert_eq!(parse(&straight), parse(&r.log_line(&reversed)));
            // And field by field, with the loop's own separators.
            let pieces: Vec<String> = ALL_IN_ORDER
                .iter()
                .map(|&i| {
                    let one = r.log_line(&[i]);
                    one[1..one.len() - 2].to_owned()
                })
                .collect();
            assert_eq!(straight, format!("{{{}}}\n", pieces.join(",")));
        }
    }

    #[test]
    fn each_position_writes_its_field_name() {
        let trace = TraceContext::extract(&http::HeaderMap::new(), 0.0, &mut fastrand::Rng::new());
        let r = Record {
            source_address: Some("127.0.0.1:1".parse().unwrap()),
            ..record(trace)
        };
        for (index, name) in ACCESS_LOG_FIELDS.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(&r.log_line(&[index])).unwrap();
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(keys, [name], "position {index}");
        }
    }
}
