//! Trace context: W3C `traceparent`/`tracestate` (and Zipkin B3, single `b3` or
//! multi `x-b3-*` headers) read from a request, a new span id for this hop, and the
//! headers the next hop gets. Request ids (`x-request-id`) are generated here too.
//!
//! An invalid `traceparent` is ignored as the W3C spec says (a new trace starts);
//! it never fails the request.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The longest `x-request-id` passed on as sent; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// One hop's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span, when the request carried a trace context.
    pub parent: Option<[u8; 8]>,
    /// This hop's span.
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Where a trace context came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    W3c,
    B3Single,
    B3Multi,
    None,
}

impl TraceContext {
    /// The context of this hop: the caller's trace (W3C first, then B3) with a new
    /// span id, or a new trace sampled with probability `sampling`.
    pub fn extract(headers: &HeaderMap, sampling: f64, rng: &mut fastrand::Rng) -> TraceContext {
        let (found, _) = read(headers);
        Self::of(found, sampling, rng)
    }

    /// [`TraceContext::extract`] then [`TraceContext::inject`], reading the
    /// caller's headers once: what a hop does with a request that arrives.
    pub fn continue_from(
        headers: &mut HeaderMap,
        sampling: f64,
        rng: &mut fastrand::Rng,
    ) -> TraceContext {
        let (found, format) = read(headers);
        let cx = Self::of(found, sampling, rng);
        cx.inject_as(headers, format);
        cx
    }

    fn of(found: Found, sampling: f64, rng: &mut fastrand::Rng) -> TraceContext {
        let span_id = nonzero_id8(rng);
        match found {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                parent: Some(parent),
                span_id,
                sampled: sampled.unwrap_or_else(|| rng.f64() < sampling),
            },
            None => TraceContext {
                trace_id: nonzero_id16(rng),
                parent: None,
                span_id,
                sampled: sampling > 0.0 && rng.f64() < sampling,
            },
        }
    }

    /// Sets the headers the next hop reads: `traceparent` naming this hop's span
    /// (`tracestate` passes unchanged), and the B3 headers rewritten the same way
    /// when the caller used B3.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let (_, format) = read(headers);
        self.inject_as(headers, format);
    }

    /// [`TraceContext::inject`] for headers whose caller context was `format`.
    fn inject_as(&self, headers: &mut HeaderMap, format: Format) {
        headers.insert(TRACEPARENT, self.traceparent());
        match format {
            Format::B3Single => {
                let value = format!(
                    "{}-{}-{}",
                    hex(&self.trace_id),
                    hex(&self.span_id),
                    if self.sampled { '1' } else { '0' }
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(B3, v);
                }
            }
            Format::B3Multi => {
                for (name, value) in [
                    (B3_TRACE, hex(&self.trace_id)),
                    (B3_SPAN, hex(&self.span_id)),
                    (B3_PARENT, self.parent.map(|p| hex(&p)).unwrap_or_default()),
                    (
                        B3_SAMPLED,
                        (if self.sampled { "1" } else { "0" }).to_owned(),
                    ),
                ] {
                    if value.is_empty() {
                        headers.remove(&name);
                    } else if let Ok(v) = HeaderValue::from_str(&value) {
                        headers.insert(name, v);
                    }
                }
            }
            Format::W3c | Format::None => {}
        }
    }

    /// `00-<trace id>-<this span>-<flags>`.
    pub fn traceparent(&self) -> HeaderValue {
        let mut b = [b'-'; 55];
        b[..2].copy_from_slice(b"00");
        hex_into(&self.trace_id, &mut b[3..35]);
        hex_into(&self.span_id, &mut b[36..52]);
        b[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        HeaderValue::from_bytes(&b).expect("hex digits and dashes are a valid header value")
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// The request's `x-request-id`, or a new UUID v4 when it has none (or an unusable
/// one); the value is set on `headers` so it travels to the next hop.
pub fn request_id(headers: &mut HeaderMap, rng: &mut fastrand::Rng) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID)
        && !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.to_str().is_ok()
    {
        return v.clone();
    }
    let mut id = rng.u128(..).to_be_bytes();
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    // 8-4-4-4-12 hex digits.
    let mut b = [b'-'; 36];
    hex_into(&id[0..4], &mut b[0..8]);
    hex_into(&id[4..6], &mut b[9..13]);
    hex_into(&id[6..8], &mut b[14..18]);
    hex_into(&id[8..10], &mut b[19..23]);
    hex_into(&id[10..16], &mut b[24..36]);
    let value = HeaderValue::from_bytes(&b).expect("a UUID is a valid header value");
    headers.insert(REQUEST_ID, value.clone());
    value
}

type Found = Option<([u8; 16], [u8; 8], Option<bool>)>;

fn read(headers: &HeaderMap) -> (Found, Format) {
    // One pass over the names tells which of the three forms the request has (most
    // have none, or only `traceparent`), instead of looking each one up.
    let (mut w3c, mut b3, mut b3_multi) = (false, false, false);
    for name in headers.keys() {
        match name.as_str() {
            "traceparent" => w3c = true,
            "b3" => b3 = true,
            "x-b3-traceid" => b3_multi = true,
            _ => {}
        }
    }
    if w3c && let Some(v) = headers.get(&TRACEPARENT) {
        let found = match traceparent_00(v.as_bytes()) {
            Some(found) => Some(found),
            None => v.to_str().ok().and_then(parse_traceparent),
        };
        return match found {
            Some(found) => (Some(found), Format::W3c),
            None => (None, Format::None),
        };
    }
    if b3 && let Some(v) = headers.get(&B3) {
        return (v.to_str().ok().and_then(parse_b3_single), Format::B3Single);
    }
    if b3_multi {
        return (parse_b3_multi(headers), Format::B3Multi);
    }
    (None, Format::None)
}

/// The usual `traceparent`: version 00, exactly `00-<32 hex>-<16 hex>-<2 hex>`,
/// decoded in one pass. `None` for anything else, which [`parse_traceparent`] then
/// judges (a test checks that both agree wherever this one answers).
fn traceparent_00(v: &[u8]) -> Found {
    if v.len() != 55 || !v.starts_with(b"00-") || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id: [u8; 16] = unhex_bytes(&v[3..35])?;
    let parent: [u8; 8] = unhex_bytes(&v[36..52])?;
    let [flags]: [u8; 1] = unhex_bytes(&v[53..55])?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, Some(flags & 1 == 1)))
}

/// Lowercase hex (exactly `2 * N` digits) to bytes; `None` on any other byte.
fn unhex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        bad |= (high | low) & 0x80;
        *byte = high << 4 | (low & 0x0f);
    }
    (bad == 0).then_some(out)
}

/// The value of each lowercase hex digit; 0xff for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// `version-traceid-parentid-flags`; versions above 00 may append fields.
fn parse_traceparent(s: &str) -> Found {
    let s = s.trim();
    let mut parts = s.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
        return None;
    }
    if version == "00" && rest.is_some() {
        return None;
    }
    if flags.len() != 2 || !is_lower_hex(flags) || !is_lower_hex(trace) || !is_lower_hex(parent) {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?;
    let parent: [u8; 8] = unhex(parent)?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, parent, Some(flags & 1 == 1)))
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]` or a bare sampling state.
fn parse_b3_single(s: &str) -> Found {
    let mut parts = s.trim().split('-');
    let trace = parts.next()?;
    let span = parts.next()?;
    let sampled = parts.next().and_then(b3_sampled);
    Some((
        b3_trace_id(trace)?,
        unhex(&span.to_ascii_lowercase())?,
        sampled,
    ))
}

fn parse_b3_multi(headers: &HeaderMap) -> Found {
    let get = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let trace = b3_trace_id(get(&B3_TRACE)?)?;
    let span = unhex(&get(&B3_SPAN)?.trim().to_ascii_lowercase())?;
    let sampled = if get(&B3_FLAGS) == Some("1") {
        Some(true)
    } else {
        get(&B3_SAMPLED).and_then(b3_sampled)
    };
    Some((trace, span, sampled))
}

fn b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// B3 trace ids are 64 or 128 bits; a 64-bit one is left-padded with zeros.
fn b3_trace_id(s: &str) -> Option<[u8; 16]> {
    let s = s.trim().to_ascii_lowercase();
    let id = match s.len() {
        32 => unhex::<16>(&s)?,
        16 => {
            let low: [u8; 8] = unhex(&s)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    Some(out)
}

/// The value of a lowercase hex digit (checked by the caller).
fn nibble(digit: u8) -> u8 {
    match digit {
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.wrapping_sub(b'0'),
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Lowercase hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

fn nonzero_id16(rng: &mut fastrand::Rng) -> [u8; 16] {
    loop {
        let id = rng.u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn nonzero_id8(rng: &mut fastrand::Rng) -> [u8; 8] {
    loop {
        let id = rng.u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_parent_is_continued_with_a_new_span() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut h = headers(&[("traceparent", TP), ("tracestate", "congo=t61rcWkgMzE")]);
        let cx = TraceContext::extract(&h, 0.0, &mut rng);
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            cx.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(cx.sampled, "the caller's sampled flag wins over sampling 0");
        cx.inject(&mut h);
        let sent = h["traceparent"].to_str().unwrap().to_owned();
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(sent.ends_with("-01"));
        assert_ne!(sent, TP, "the next hop's parent is this hop's span");
        assert_eq!(&sent[36..52], hex(&cx.span_id));
        assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
    }

    #[test]
    fn unsampled_parent_stays_unsampled() {
        let mut rng = fastrand::Rng::with_seed(2);
        let tp = TP.replace("-01", "-00");
        let cx = TraceContext::extract(&headers(&[("traceparent", &tp)]), 1.0, &mut rng);
        assert!(!cx.sampled);
    }

    /// Every single-byte change of a valid traceparent (to a digit, an upper-case or
    /// non-hex letter, a dash, a space, a zero): wherever the one-pass decoder
    /// answers, it answers what the general parser does; on the valid value too.
    #[test]
    fn the_one_pass_decoder_agrees_with_the_parser() {
        let valid = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut answered = 0;
        let mut values = vec![valid.to_vec()];
        for at in 0..valid.len() {
            for b in [b'0', b'7', b'a', b'f', b'A', b'F', b'g', b'-', b' ', b'z'] {
                let mut v = valid.to_vec();
                v[at] = b;
                values.push(v);
            }
        }
        let mut zeros = valid.to_vec();
        zeros[3..35].fill(b'0');
        values.push(zeros);
        for v in &values {
            if let Some(found) = traceparent_00(v) {
                answered += 1;
                let general = parse_traceparent(std::str::from_utf8(v).unwrap());
                assert_eq!(Some(found), general, "{}", String::from_utf8_lossy(v));
            } else if let Ok(text) = std::str::from_utf8(v) {
                // Declined: only values that are not the plain version-00 form.
                let plain = v.len() == 55
                    && v.starts_with(b"00-")
                    && v[35] == b'-'
                    && v[52] == b'-'
                    && parse_traceparent(text).is_some();
                assert!(!plain, "declined a plain value: {text}");
            }
        }
        assert!(answered > 150, "{answered}");
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let mut rng = fastrand::Rng::with_seed(3);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let cx = TraceContext::extract(&headers(&[("traceparent", bad)]), 0.0, &mut rng);
            assert_eq!(cx.parent, None, "{bad}");
            assert_ne!(
                cx.trace_id_hex(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
        }
        // A future version may append fields.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        let cx = TraceContext::extract(&headers(&[("traceparent", future)]), 0.0, &mut rng);
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn b3_single_and_multi_are_accepted_and_rewritten() {
        let mut rng = fastrand::Rng::with_seed(4);
        let mut h = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]);
        let cx = TraceContext::extract(&h, 0.0, &mut rng);
        assert_eq!(cx.trace_id_hex(), "80f198ee56343ba864fe8b2a57d3eff7");
        assert!(cx.sampled);
        cx.inject(&mut h);
        assert!(h.contains_key("traceparent"));
        let b3 = h["b3"].to_str().unwrap();
        assert!(b3.starts_with("80f198ee56343ba864fe8b2a57d3eff7-"), "{b3}");
        assert!(b3.contains(&hex(&cx.span_id)));

        let mut h = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "0"),
        ]);
        let cx = TraceContext::extract(&h, 1.0, &mut rng);
        assert_eq!(cx.trace_id_hex(), "0000000000000000a3ce929d0e0e4736");
        assert!(!cx.sampled);
        cx.inject(&mut h);
        assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(h["x-b3-spanid"].to_str().unwrap(), hex(&cx.span_id));
    }

    #[test]
    fn sampling_applies_to_new_traces_only() {
        let mut rng = fastrand::Rng::with_seed(5);
        let sampled = (0..10_000)
            .filter(|_| TraceContext::extract(&HeaderMap::new(), 0.1, &mut rng).sampled)
            .count();
        assert!((800..1200).contains(&sampled), "{sampled} of 10000 at 10%");
        assert!(!TraceContext::extract(&HeaderMap::new(), 0.0, &mut rng).sampled);
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let mut rng = fastrand::Rng::with_seed(6);
        let mut h = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(request_id(&mut h, &mut rng), "abc-123");
        let mut h = HeaderMap::new();
        let id = request_id(&mut h, &mut rng);
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "UUID version 4: {s}");
        assert_eq!(h["x-request-id"], id);
        let mut h = headers(&[("x-request-id", &"x".repeat(500))]);
        assert_eq!(
            request_id(&mut h, &mut rng).len(),
            36,
            "oversized ids are replaced"
        );
    }

    #[test]
    fn continuing_a_request_is_extract_then_inject() {
        let cases: &[&[(&'static str, &str)]] = &[
            &[],
            &[("traceparent", TP), ("tracestate", "congo=t61rcWkgMzE")],
            &[("traceparent", "garbage")],
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            &[("b3", "80F198EE56343BA864FE8B2A57D3EFF7-E457B5A2E4D86BD1-0")],
            &[
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-sampled", "1"),
            ],
            &[("x-b3-traceid", "a3ce929d0e0e4736")],
        ];
        for (seed, case) in cases.iter().enumerate() {
            let (mut once, mut twice) = (headers(case), headers(case));
            let mut rng = fastrand::Rng::with_seed(seed as u64);
            let a = TraceContext::continue_from(&mut once, 0.5, &mut rng);
            let mut rng = fastrand::Rng::with_seed(seed as u64);
            let b = TraceContext::extract(&twice, 0.5, &mut rng);
            b.inject(&mut twice);
            assert_eq!(a, b, "{case:?}");
            assert_eq!(once, twice, "{case:?}");
        }
    }

    #[test]
    fn hex_ids_read_like_from_str_radix() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let s: String = (0..16)
                .map(|_| char::from(b"0123456789abcdefABCDEFgx-"[rng.usize(..25)]))
                .collect();
            let want: Option<[u8; 8]> = is_lower_hex(&s).then(|| {
                std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            });
            assert_eq!(unhex::<8>(&s), want, "{s}");
        }
        assert_eq!(unhex::<8>("00f067aa0ba902b"), None, "too short");
    }
}
