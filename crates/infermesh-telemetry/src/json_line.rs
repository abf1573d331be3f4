//! One access-log line: a JSON object appended field by field to a byte buffer.
//!
//! This runs twice per request through `infermesh up` (gateway and sidecar), so it is
//! written for the request path: the line's room is reserved once, every key is a
//! literal copied inline (no `memcpy` call), fixed-width values (the time stamp, the
//! trace id, an IPv4 address) are composed on the stack and copied once, the
//! program's own words are not scanned, and other strings are scanned for what JSON
//! must escape eight bytes at a time. The bytes are always UTF-8: keys and numbers are
//! ASCII, strings are copied from `&str`s with only ASCII escapes inserted.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// Room reserved for a line before writing it (a default line is ~500 bytes; longer
/// ones grow the buffer as usual).
const LINE_ROOM: usize = 1024;

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 15]];
        b += 1;
    }
    pairs
};

/// A JSON object written field by field into one buffer.
pub(crate) struct JsonLine<'o> {
    out: &'o mut Vec<u8>,
    stamps: &'o mut Stamps,
    first: bool,
}

/// The time stamp last written by one thread: lines within the same second reuse
/// its calendar part, and only the microseconds are written anew.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// Seconds since the epoch of `quoted`, when it holds a stamp.
    secs: Option<u64>,
    quoted: [u8; 29],
}

impl Stamps {
    /// `"2026-11-29T01:02:03.456789Z"` (with the quotes) for `t`.
    fn quoted(&mut self, t: SystemTime) -> &[u8; 29] {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.secs == Some(d.as_secs()) {
            let mut n = d.subsec_micros();
            for b in self.quoted[21..27].iter_mut().rev() {
                *b = b'0' + (n % 10) as u8;
                n /= 10;
            }
        } else {
            self.quoted = rfc3339_quoted(d);
            self.secs = Some(d.as_secs());
        }
        &self.quoted
    }
}

impl<'o> JsonLine<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>, stamps: &'o mut Stamps) -> JsonLine<'o> {
        out.reserve(LINE_ROOM);
        out.push(b'{');
        JsonLine {
            out,
            stamps,
            first: true,
        }
    }

    /// `key` is the field's `"name":`, a literal: its length is known where this
    /// is inlined, so the copy is a few moves instead of a `memcpy` call.
    #[inline(always)]
    fn key<const N: usize>(&mut self, key: &[u8; N]) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(key);
    }

    pub(crate) fn str<const N: usize>(&mut self, key: &[u8; N], value: &str) {
        self.key(key);
        escape_into(self.out, value);
    }

    /// One of the program's own fixed words (`sidecar`, `http`, `predict`, `UF`…):
    /// nothing to escape, so no scan (checked in debug builds).
    pub(crate) fn word<const N: usize>(&mut self, key: &[u8; N], value: Option<&'static str>) {
        self.key(key);
        match value {
            Some(v) => {
                debug_assert_eq!(needs_escape(v.as_bytes()), None, "{v:?}");
                self.out.push(b'"');
                self.out.extend_from_slice(v.as_bytes());
                self.out.push(b'"');
            }
            None => self.out.extend_from_slice(b"null"),
        }
    }

    pub(crate) fn opt_str<const N: usize>(&mut self, key: &[u8; N], value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    pub(crate) fn opt_num<const N: usize>(
        &mut self,
        key: &[u8; N],
        value: Option<impl itoa::Integer>,
    ) {
        self.key(key);
        match value {
            Some(v) => self
                .out
                .extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    /// A duration as milliseconds with microsecond precision, the shortest decimal
    /// (`1.5`, `0.18`, `2`): what formatting the `f64` would print, without floats.
    pub(crate) fn opt_ms<const N: usize>(&mut self, key: &[u8; N], value: Option<Duration>) {
        self.key(key);
        let Some(d) = value else {
            self.out.extend_from_slice(b"null");
            return;
        };
        // Whole milliseconds and the microseconds past them, without `u128` division.
        let whole = d.as_secs().saturating_mul(1000) + u64::from(d.subsec_millis());
        self.out
            .extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
        let frac = d.subsec_micros() % 1000;
        if frac != 0 {
            let digits = [
                b'.',
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ];
            // Trailing zeros dropped: `.500` → `.5`.
            let len = if frac.is_multiple_of(100) {
                2
            } else if frac.is_multiple_of(10) {
                3
            } else {
                4
            };
            self.out.extend_from_slice(&digits[..len]);
        }
    }

    /// `2026-11-29T01:02:03.456789Z`, quoted.
    pub(crate) fn time<const N: usize>(&mut self, key: &[u8; N], t: SystemTime) {
        self.key(key);
        self.out.extend_from_slice(self.stamps.quoted(t));
    }

    /// Lowercase hex of `bytes` (a trace id), quoted.
    /// (A byte's two digits come from one table entry.)
    pub(crate) fn hex16<const N: usize>(&mut self, key: &[u8; N], bytes: &[u8; 16]) {
        self.key(key);
        let mut quoted = [b'"'; 34];
        for (i, b) in bytes.iter().enumerate() {
            let pair = HEX_PAIRS[usize::from(*b)];
            quoted[1 + 2 * i] = pair[0];
            quoted[2 + 2 * i] = pair[1];
        }
        self.out.extend_from_slice(&quoted);
    }

    /// `ip:port` (`[ip]:port` for IPv6) as `SocketAddr`'s `Display` writes it, quoted.
    pub(crate) fn socket_addr<const N: usize>(&mut self, key: &[u8; N], addr: SocketAddr) {
        self.key(key);
        quoted_socket_addr(self.out, addr);
    }

    /// A field whose value was written before by [`quoted_socket_addr`] (or is
    /// otherwise already JSON), copied as it is.
    pub(crate) fn verbatim<const N: usize>(&mut self, key: &[u8; N], value: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(value);
    }

    /// Bytes written before by this writer for the same fields (a run of whole
    /// fields after the first, so starting with its `,`), copied as they are.
    pub(crate) fn fragment(&mut self, bytes: &[u8]) {
        debug_assert!(!self.first && bytes.first() == Some(&b','));
        self.out.extend_from_slice(bytes);
    }

    /// The end of what has been written so far (to take a run's bytes after it).
    pub(crate) fn mark(&self) -> usize {
        self.out.len()
    }

    /// What was written between two marks.
    pub(crate) fn between(&self, marks: std::ops::Range<usize>) -> &[u8] {
        &self.out[marks]
    }

    pub(crate) fn finish(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

/// `addr` as `SocketAddr`'s `Display` writes it, quoted, appended to `out`.
pub(crate) fn quoted_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            // `"255.255.255.255:65535"` is 23 bytes.
            let mut buf = [0u8; 24];
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            };
            put(b"\"");
            let mut digits = itoa::Buffer::new();
            for (i, octet) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    put(b".");
                }
                put(digits.format(*octet).as_bytes());
            }
            put(b":");
            put(digits.format(a.port()).as_bytes());
            put(b"\"");
            out.extend_from_slice(&buf[..at]);
        }
        SocketAddr::V6(a) => escape_into(out, &a.to_string()),
    }
}

/// `value` as a JSON string literal (RFC 8259 escaping: `"`, `\\` and control
/// characters; everything else, UTF-8 included, as is).
fn escape_into(out: &mut Vec<u8>, value: &str) {
    let mut rest = value.as_bytes();
    out.push(b'"');
    // The bytes to escape are ASCII; UTF-8 continuation bytes never match them, so
    // splitting at them keeps the text UTF-8.
    while let Some(at) = needs_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        match rest[at] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(DIGITS[usize::from(c >> 4)]);
                out.push(DIGITS[usize::from(c & 15)]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// The position of the first byte JSON needs escaped (`"`, `\\`, below 0x20).
/// Eight bytes at a time: an access log line is mostly strings with nothing to
/// escape, and this scan was a fifth of the line's cost byte by byte.
pub(crate) fn needs_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let special = |b: &u8| *b == b'"' || *b == b'\\' || *b < 0x20;
    // A lane is flagged when it is below 0x20 or equals '"' or '\\' (the classic
    // "has zero/less byte" tricks; a flag can only be a false positive in lanes after
    // a true one, so the exact byte is then found one by one).
    let flagged = |at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        let x = u64::from_le_bytes(w);
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let quote =
            (x ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'"')));
        let slash =
            (x ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'\\')));
        (below | quote | slash) & HIGH != 0
    };
    let n = bytes.len();
    if n < 8 {
        return bytes.iter().position(special);
    }
    // Whole words, then the last eight bytes (overlapping bytes already found clean,
    // so the first flagged byte there is still the first of the string).
    let mut at = 0;
    while at + 8 < n {
        if flagged(at)
            && let Some(i) = bytes[at..at + 8].iter().position(special)
        {
            return Some(at + i);
        }
        at += 8;
    }
    if flagged(n - 8) {
        return bytes[n - 8..].iter().position(special).map(|i| n - 8 + i);
    }
    None
}

/// `"2026-11-29T01:02:03.456789Z"` (with the quotes), `d` after the epoch.
fn rfc3339_quoted(d: Duration) -> [u8; 29] {
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, m, day) = civil_from_days(days);
    // Years before 0 or after 9999 cannot come from a SystemTime after the epoch
    // within this program's life; clamp rather than print a malformed stamp.
    let y = y.clamp(0, 9999) as u32;
    let mut s = *b"\"0000-00-00T00:00:00.000000Z\"";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            s[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(1, 4, y);
    put(6, 2, m);
    put(9, 2, day);
    put(12, 2, rem / 3600);
    put(15, 2, rem % 3600 / 60);
    put(18, 2, rem % 60);
    put(21, 6, d.subsec_micros());
    s
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

    fn line(write: impl FnOnce(&mut JsonLine<'_>)) -> String {
        let mut out = Vec::new();
        let mut stamps = Stamps::default();
        let mut j = JsonLine::new(&mut out, &mut stamps);
        write(&mut j);
        j.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_like_serde_json_escapes_them() {
        let mut rng = fastrand::Rng::with_seed(5);
        let alphabet = [
            'a', '/', '"', '\\', '\n', '\r', '\t', '\u{1}', '\u{1f}', ' ', '\u{7f}', 'é', 'ü', '€',
            '😀',
        ];
        for len in 0..40 {
            for _ in 0..100 {
                let s: String = (0..len)
                    .map(|_| alphabet[rng.usize(..alphabet.len())])
                    .collect();
                let got = line(|j| j.str(b"\"s\":", &s));
                let want = format!("{{\"s\":{}}}\n", serde_json::to_string(&s).unwrap());
                assert_eq!(got, want, "{s:?}");
            }
        }
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
            0u64, 1, 10, 100, 180, 999, 1000, 1500, 1234, 1010, 1200, 60_000_001, 12_345_678,
        ] {
            let got = line(|j| j.opt_ms(b"\"d\":", Some(Duration::from_micros(micros))));
            let float = micros as f64 / 1000.0;
            assert_eq!(got, format!("{{\"d\":{float}}}\n"), "{micros} µs");
        }
        assert_eq!(line(|j| j.opt_ms(b"\"d\":", None)), "{\"d\":null}\n");
        // Any duration (nanoseconds are cut, not rounded): whole milliseconds and up
        // to three decimals, as the microseconds' integer arithmetic gives them.
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..20_000 {
            let bits = rng.u32(1..40);
            let d = Duration::new(rng.u64(..1 << bits), rng.u32(..1_000_000_000));
            let micros = d.as_micros();
            let want = match micros % 1000 {
                0 => format!("{}", micros / 1000),
                frac => format!("{}.{:03}", micros / 1000, frac)
                    .trim_end_matches('0')
                    .to_owned(),
            };
            let got = line(|j| j.opt_ms(b"\"d\":", Some(d)));
            assert_eq!(got, format!("{{\"d\":{want}}}\n"), "{d:?}");
        }
    }

    #[test]
    fn socket_addresses_print_like_display() {
        for a in [
            "127.0.0.1:50412",
            "10.0.0.255:1",
            "0.0.0.0:65535",
            "255.255.255.255:65535",
            "[::1]:8080",
            "[fe80::1]:9",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let got = line(|j| j.socket_addr(b"\"a\":", addr));
            assert_eq!(got, format!("{{\"a\":\"{addr}\"}}\n"));
        }
    }

    #[test]
    fn rfc3339_times() {
        let stamp = |t: SystemTime| {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            String::from_utf8(rfc3339_quoted(d).to_vec()).unwrap()
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_000_000_123_456);
        assert_eq!(stamp(t), "\"2026-11-30T00:53:20.123456Z\"");
        assert_eq!(
            stamp(SystemTime::UNIX_EPOCH),
            "\"1970-01-01T00:00:00.000000Z\""
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(stamp(leap), "\"2000-02-29T00:00:00.000000Z\"");
    }

    /// A thread's stamps, for times in and out of order, within a second and across
    /// seconds, days and years: the same as computing each one afresh.
    #[test]
    fn cached_stamps_equal_fresh_ones() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut stamps = Stamps::default();
        let mut t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        for _ in 0..50_000 {
            let step = match rng.u8(..4) {
                0 => Duration::from_nanos(rng.u64(..1_000_000)),
                1 => Duration::from_micros(rng.u64(..3_000_000)),
                2 => Duration::from_secs(rng.u64(..400 * 86_400)),
                _ => Duration::ZERO,
            };
            t = if rng.bool() || t < SystemTime::UNIX_EPOCH + step {
                t + step
            } else {
                t - step
            };
            let fresh = rfc3339_quoted(t.duration_since(SystemTime::UNIX_EPOCH).unwrap());
            assert_eq!(stamps.quoted(t), &fresh, "{t:?}");
        }
    }

    #[test]
    fn trace_ids_are_lowercase_hex() {
        let id: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        let got = line(|j| j.hex16(b"\"t\":", &id));
        assert_eq!(got, "{\"t\":\"00112233445566778899aabbccddeeff\"}\n");
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..1000 {
            let id: [u8; 16] = std::array::from_fn(|_| rng.u8(..));
            let want: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let got = line(|j| j.hex16(b"\"t\":", &id));
            assert_eq!(got, format!("{{\"t\":\"{want}\"}}\n"));
        }
    }

    #[test]
    fn fields_are_separated_by_commas_after_the_first() {
        let got = line(|j| {
            j.opt_num(b"\"a\":", Some(1u16));
            j.opt_str(b"\"b\":", None);
            j.str(b"\"c\":", "x");
        });
        assert_eq!(got, "{\"a\":1,\"b\":null,\"c\":\"x\"}\n");
    }
}
