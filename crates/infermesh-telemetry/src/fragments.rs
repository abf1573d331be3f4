//! [`Fragments`]: the parts of a default access-log line that repeat from request
//! to request, kept per thread as bytes and copied instead of composed anew.
//!
//! Of the default line's 23 fields, two runs usually repeat for every request of a
//! route on a hop: `reporter` … `peer_principal` (fields 3–7: the hop, the
//! method, the path, the mTLS peer) and `model` … `response_flags` (fields 10–18:
//! what was called, the authorization decision, the outcome). A thread keeps the
//! bytes of the last few such runs with the values they were written from (owned
//! copies, compared by content: nothing is assumed from where a string lives), and
//! a line whose values are the same copies them (two copies instead of fifteen
//! fields, with their escape scans and number formatting). [`Addresses`] does the
//! same for the source address, per connection. The other fields — time, ids,
//! request principal, byte counts, durations — are written for every line. A test
//! compares lines through the memo with lines composed field by field, over
//! generated records.

use std::net::SocketAddr;

use crate::json_line::quoted_socket_addr;
use crate::record::{Decision, Protocol, Record, Reporter};

/// Runs kept per thread (replaced in turn once all are used): enough for a few
/// routes per hop, and for `infermesh up`'s gateway and sidecars on one thread.
const ENTRIES: usize = 8;
/// Source addresses kept per thread (a few connections' worth).
const ADDRESSES: usize = 8;

/// The positions (in `ACCESS_LOG_FIELDS`) of the two runs.
pub(crate) const HEAD: std::ops::RangeInclusive<usize> = 3..=7;
pub(crate) const TAIL: std::ops::RangeInclusive<usize> = 10..=18;

/// One thread's remembered runs.
#[derive(Debug, Default)]
pub(crate) struct Fragments {
    entries: Vec<Entry>,
    /// The entry replaced next once all are used.
    next: usize,
}

/// The bytes of both runs (each starting with its `,`) and the values they show.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    key: Key,
    pub(crate) head: Vec<u8>,
    pub(crate) tail: Vec<u8>,
}

/// What the two runs are written from, owned.
#[derive(Debug, Default)]
struct Key {
    reporter: Option<Reporter>,
    protocol: Option<Protocol>,
    method: String,
    path: String,
    peer_principal: Option<String>,
    model: Option<String>,
    version: Option<i64>,
    signature: Option<String>,
    api: Option<&'static str>,
    decision: Option<(bool, Option<String>)>,
    status: u16,
    grpc_status: Option<i32>,
    response_flags: &'static str,
}

impl Fragments {
    /// The runs remembered for `r`'s values, if any.
    pub(crate) fn find(&self, r: &Record<'_>) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key.matches(r))
    }

    /// Remembers the runs written for `r` (replacing the oldest entry when full).
    pub(crate) fn remember(&mut self, r: &Record<'_>, head: &[u8], tail: &[u8]) {
        let entry = if self.entries.len() < ENTRIES {
            self.entries.push(Entry::default());
            self.entries.last_mut().expect("just pushed")
        } else {
            let at = self.next;
            self.next = (at + 1) % ENTRIES;
            &mut self.entries[at]
        };
        // Buffers are reused: a miss allocates only when an entry first grows.
        entry.key.set(r);
        entry.head.clear();
        entry.head.extend_from_slice(head);
        entry.tail.clear();
        entry.tail.extend_from_slice(tail);
    }
}

impl Key {
    /// Whether the runs were written from exactly `r`'s values (cheap comparisons
    /// first).
    fn matches(&self, r: &Record<'_>) -> bool {
        self.status == r.status
            && self.reporter == Some(r.reporter)
            && self.protocol == Some(r.protocol)
            && self.version == r.version
            && self.grpc_status == r.grpc_status
            && self.response_flags == r.response_flags
            && self.api == r.api
            && self.model.as_deref() == r.model
            && self.path == r.path
            && self.method == r.method
            && self.peer_principal.as_deref() == r.mtls.then_some(r.source.principal)
            && self.signature.as_deref() == r.signature
            && match (&self.decision, r.decision) {
                (None, None) => true,
                (
                    Some((allowed, policy)),
                    Some(Decision {
                        allowed: a,
                        policy: p,
                        ..
                    }),
                ) => *allowed == a && policy.as_deref() == p,
                _ => false,
            }
    }

    fn set(&mut self, r: &Record<'_>) {
        self.reporter = Some(r.reporter);
        self.protocol = Some(r.protocol);
        set_str(&mut self.method, r.method);
        set_str(&mut self.path, r.path);
        set_opt(
            &mut self.peer_principal,
            r.mtls.then_some(r.source.principal),
        );
        set_opt(&mut self.model, r.model);
        self.version = r.version;
        set_opt(&mut self.signature, r.signature);
        self.api = r.api;
        self.decision = r.decision.map(|d| (d.allowed, d.policy.map(str::to_owned)));
        self.status = r.status;
        self.grpc_status = r.grpc_status;
        self.response_flags = r.response_flags;
    }
}

fn set_str(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

fn set_opt(s: &mut Option<String>, v: Option<&str>) {
    match (s.as_mut(), v) {
        (Some(s), Some(v)) => set_str(s, v),
        (_, v) => *s = v.map(str::to_owned),
    }
}

/// The source addresses of a thread's last few lines, quoted as written: a
/// connection's requests share one, so it is formatted once per connection (and
/// again only after more than [`ADDRESSES`] others came in between).
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    entries: Vec<(SocketAddr, Vec<u8>)>,
    /// The entry replaced next once all are used.
    next: usize,
}

impl Addresses {
    /// `addr`, quoted as `SocketAddr`'s `Display` writes it.
    pub(crate) fn quoted(&mut self, addr: SocketAddr) -> &[u8] {
        let at = match self.entries.iter().position(|(a, _)| *a == addr) {
            Some(at) => at,
            None => {
                let at = if self.entries.len() < ADDRESSES {
                    self.entries.push((addr, Vec::new()));
                    self.entries.len() - 1
                } else {
                    let at = self.next;
                    self.next = (at + 1) % ADDRESSES;
                    at
                };
                let (a, text) = &mut self.entries[at];
                *a = addr;
                text.clear();
                quoted_socket_addr(text, addr);
                at
            }
        };
        &self.entries[at].1
    }
}

/// What one thread remembers between its access-log lines.
#[derive(Debug, Default)]
pub(crate) struct LineMemo {
    pub(crate) stamps: crate::json_line::Stamps,
    pub(crate) fragments: Fragments,
    pub(crate) addresses: Addresses,
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::context::TraceContext;
    use crate::json_line::{JsonLine, Stamps};
    use crate::record::Peer;

    fn pick<T: Copy>(rng: &mut fastrand::Rng, from: &[T]) -> T {
        from[rng.usize(..from.len())]
    }

    /// A record with every field drawn from a few values (so that lines repeat
    /// runs, and more than `ENTRIES` different runs come and go).
    fn generated(rng: &mut fastrand::Rng, trace: TraceContext) -> Record<'static> {
        const STRS: [&str; 4] = [
            "a",
            "half_plus_two",
            "q\"uo\\te\u{1}",
            "ünï/cödé-long-enough",
        ];
        let opt = |rng: &mut fastrand::Rng| rng.bool().then(|| pick(rng, &STRS));
        let principal = pick(
            rng,
            &["unknown", "spiffe://td/ns/a/sa/b", "spiffe://td/ns/a/sa/c"],
        );
        Record {
            reporter: pick(rng, &[Reporter::Gateway, Reporter::Sidecar]),
            protocol: pick(rng, &[Protocol::Http, Protocol::Grpc]),
            method: pick(rng, &["POST", "GET"]),
            path: pick(rng, &["/v1/models/m:predict", "/p\"a\\th", "/", ""]),
            started: SystemTime::UNIX_EPOCH + Duration::from_micros(rng.u64(..1 << 52)),
            duration: Duration::from_nanos(rng.u64(..1 << 34)),
            upstream: rng.bool().then(|| Duration::from_nanos(rng.u64(..1 << 30))),
            request_id: pick(rng, &["id-1", "6f2d8a9c-3b1e-4c5d-9e7f-0a1b2c3d4e5f"]),
            trace,
            source_address: rng
                .bool()
                .then(|| pick(rng, &["127.0.0.1:1", "[::1]:80"]).parse().unwrap()),
            source: Peer {
                principal,
                ..Peer::UNKNOWN
            },
            destination: Peer::UNKNOWN,
            destination_service: "unknown",
            mtls: rng.bool(),
            request_principal: opt(rng),
            model: opt(rng),
            version: pick(rng, &[None, Some(1), Some(2), Some(-7)]),
            signature: pick(rng, &[None, Some("serving_default"), Some("s\"ig")]),
            api: pick(rng, &[None, Some("predict"), Some("classify")]),
            decision: pick(rng, &[None, Some(false), Some(true)]).map(|allowed| Decision {
                allowed,
                policy: pick(rng, &[None, Some("p"), Some("po\"licy")]),
                rule: None,
            }),
            status: pick(rng, &[200, 404, 503]),
            grpc_status: pick(rng, &[None, Some(0), Some(14)]),
            response_flags: pick(rng, &["-", "NR", "DC"]),
            request_bytes: rng.u64(..),
            response_bytes: rng.u64(..1000),
        }
    }

    /// The default line, field by field with no memo.
    fn fresh(r: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stamps = Stamps::default();
        let mut j = JsonLine::new(&mut out, &mut stamps);
        for index in 0..crate::ACCESS_LOG_FIELDS.len() {
            r.field(&mut j, index);
        }
        j.finish();
        out
    }

    /// Lines written through one thread's memo, over generated records that repeat
    /// some runs and not others, are byte for byte the lines composed afresh field by
    /// field; and the memo is used (most lines of a narrow mix hit it).
    #[test]
    fn lines_through_the_memo_equal_lines_composed_field_by_field() {
        let all: Vec<usize> = (0..crate::ACCESS_LOG_FIELDS.len()).collect();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut memo = LineMemo::default();
        let mut out = Vec::new();
        let mut hits = 0;
        for round in 0..20_000 {
            let trace = TraceContext::extract(&http::HeaderMap::new(), 0.5, &mut rng);
            let mut r = generated(&mut rng, trace);
            if round % 2 == 0 {
                // A narrow mix, as one route's requests are: most runs repeat.
                r = Record {
                    protocol: Protocol::Http,
                    method: "POST",
                    path: "/v1/models/m:predict",
                    model: Some("half_plus_two"),
                    version: Some(1 + i64::from(round % 6 == 0)),
                    api: Some("predict"),
                    mtls: false,
                    signature: None,
                    decision: None,
                    status: 200,
                    grpc_status: None,
                    response_flags: "-",
                    ..r
                };
            }
            hits += usize::from(memo.fragments.find(&r).is_some());
            out.clear();
            r.log_into(&all, &mut out, &mut memo);
            assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                String::from_utf8(fresh(&r)).unwrap(),
                "{r:?}"
            );
            assert!(memo.fragments.entries.len() <= ENTRIES);
        }
        assert!(hits > 5_000, "the memo was hit {hits} times");
    }

    /// Addresses through the memo, with more addresses than it keeps coming and
    /// going, are quoted as `Display` writes them.
    #[test]
    fn remembered_addresses_are_quoted_like_display() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut addresses = Addresses::default();
        for _ in 0..5_000 {
            let addr: SocketAddr = match rng.u8(..3) {
                0 => format!("127.0.0.1:{}", rng.u16(1..20)).parse().unwrap(),
                1 => format!("10.{}.0.255:{}", rng.u8(..3), rng.u16(..))
                    .parse()
                    .unwrap(),
                _ => format!("[fe80::{:x}]:{}", rng.u16(..4), rng.u16(..))
                    .parse()
                    .unwrap(),
            };
            let quoted = String::from_utf8(addresses.quoted(addr).to_vec()).unwrap();
            assert_eq!(quoted, format!("\"{addr}\""));
            assert!(addresses.entries.len() <= ADDRESSES);
        }
    }
}
