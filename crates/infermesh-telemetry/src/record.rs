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
                    Some(a) => j.raw(field, |out| socket_addr_into(out, a)),
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
                21 => j.opt_ms(field, self.upstream),
                22 => j.opt_ms(field, Some(self.duration)),
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

    fn opt_num(&mut self, key: &str, value: Option<impl itoa::Integer>) {
        self.key(key);
        match value {
            Some(v) => self.out.push_str(itoa::Buffer::new().format(v)),
            None => self.out.push_str("null"),
        }
    }

    /// A duration as milliseconds with microsecond precision, the shortest decimal
    /// (`1.5`, `0.18`, `2`): what formatting the `f64` would print, without floats.
    fn opt_ms(&mut self, key: &str, value: Option<Duration>) {
        self.key(key);
        let Some(d) = value else {
            self.out.push_str("null");
            return;
        };
        let micros = d.as_micros();
        self.out.push_str(itoa::Buffer::new().format(micros / 1000));
        let mut frac = (micros % 1000) as u32;
        if frac != 0 {
            self.out.push('.');
            let mut digits = 3;
            while frac.is_multiple_of(10) {
                frac /= 10;
                digits -= 1;
            }
            push_padded(self.out, frac, digits);
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
    while let Some(at) = needs_escape(rest.as_bytes()) {
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

/// The position of the first byte JSON needs escaped (`"`, `\\`, below 0x20).
/// Eight bytes at a time: an access log line is mostly strings with nothing to
/// escape, and this scan was a fifth of the line's cost byte by byte.
fn needs_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // A lane is flagged when it is below 0x20 or equals '"' or '\\' (the
        // classic "has zero/less byte" tricks; a flag can only be a false positive
        // in lanes after a true one, so the exact byte is then found one by one).
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let quote =
            (x ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'"')));
        let slash =
            (x ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'\\')));
        if (below | quote | slash) & HIGH != 0
            && let Some(i) = chunk.iter().position(|&b| special(b))
        {
            return Some(offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| special(b))
        .map(|i| offset + i)
}

/// `n` in decimal with at least `width` digits (zero-padded).
fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// `ip:port` (`[ip]:port` for IPv6), as `SocketAddr`'s `Display` writes it.
fn socket_addr_into(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            let mut buf = itoa::Buffer::new();
            for (i, octet) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(buf.format(*octet));
            }
            out.push(':');
            out.push_str(buf.format(a.port()));
        }
        SocketAddr::V6(a) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{a}");
        }
    }
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
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, m, day) = civil_from_days(days);
    // Years before 0 or after 9999 cannot come from a SystemTime after the epoch
    // within this program's life; clamp rather than print a malformed stamp.
    push_padded(out, y.clamp(0, 9999) as u32, 4);
    for (sep, n, width) in [
        ('-', m, 2),
        ('-', day, 2),
        ('T', rem / 3600, 2),
        (':', rem % 3600 / 60, 2),
        (':', rem % 60, 2),
        ('.', d.subsec_micros(), 6),
    ] {
        out.push(sep);
        push_padded(out, n, width);
    }
    out.push('Z');
}

/// Lowercase hex of `bytes`, appended to `out`.
fn hex_push(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
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
    fn the_word_at_a_time_escape_scan_finds_what_the_byte_scan_finds() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet: &[u8] = b"ab/:._-\"\\\n\x01\x1f\x20\x7f\xc3\xa9\xff";
        for len in 0..40 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        // Mostly plain, sometimes special: first hits at every offset.
                        if rng.u8(..) < 230 {
                            b'a' + rng.u8(..26)
                        } else {
                            alphabet[rng.usize(..alphabet.len())]
                        }
                    })
                    .collect();
                assert_eq!(needs_escape(&bytes), naive(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn milliseconds_print_like_the_float_they_stand_for() {
        for micros in [
            0u64, 1, 10, 100, 180, 999, 1000, 1500, 1234, 60_000_001, 12_345_678,
        ] {
            let mut out = String::new();
            JsonLine::new(&mut out).opt_ms("d", Some(Duration::from_micros(micros)));
            let float = micros as f64 / 1000.0;
            assert_eq!(out, format!("{{\"d\":{float}"), "{micros} µs");
        }
        let mut out = String::new();
        JsonLine::new(&mut out).opt_ms("d", None);
        assert_eq!(out, "{\"d\":null");
    }

    #[test]
    fn socket_addresses_print_like_display() {
        for a in [
            "127.0.0.1:50412",
            "10.0.0.255:1",
            "0.0.0.0:65535",
            "[::1]:8080",
            "[fe80::1]:9",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut out = String::new();
            socket_addr_into(&mut out, addr);
            assert_eq!(out, addr.to_string());
        }
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
