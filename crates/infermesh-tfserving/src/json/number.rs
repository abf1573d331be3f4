//! Number formatting as TF Serving writes it.
//!
//! * Tensor values (`WriteDecimal`): printf `%g` with 6 significant digits; if that
//!   does not parse back to the same value, `%.9g` (float) / `%.17g` (double); `.0`
//!   appended when the text has neither `.` nor `e` (`3.0`, but `9e+06` stays);
//!   `NaN`, `Infinity`, `-Infinity` for non-finite values. Most values take a fast
//!   path (shortest round-trip digits, laid out by hand, no allocation); the rest
//!   the exact `%g` path; a test checks both agree.
//! * Doubles inside JSON echoed in error messages: RapidJSON's shortest form
//!   (`2.0`, `0.001`, `1e21`, `1.5e-7`).

/// C's `printf("%.{precision}g", v)` for a finite value.
pub fn format_g(v: f64, precision: usize) -> String {
    let p = precision.max(1);
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{:.*e}", p - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        trim_fraction(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn finish(mut s: String) -> String {
    if !s.contains('.') && !s.contains('e') {
        s.push_str(".0");
    }
    s
}

fn non_finite(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_sign_negative() {
        "-Infinity".into()
    } else {
        "Infinity".into()
    }
}

/// The shortest round-trip decimal of a finite non-zero value: `0.` is not part of
/// it, the value is `±d₁.d₂…dₙ × 10^exp` with `d₁ ≠ 0` and `dₙ ≠ 0`.
struct Shortest {
    negative: bool,
    digits: [u8; 32],
    len: usize,
    exp: i32,
}

impl Shortest {
    /// Reads the text of a shortest-digits formatter in any of its layouts
    /// (`-12.5`, `0.00125`, `1.25e-7`, `1e+30`, `125000000.0`); `None` for zero or
    /// anything unexpected.
    fn read(text: &[u8]) -> Option<Shortest> {
        let (negative, text) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let (mantissa, exp) = match text.iter().position(|&c| c == b'e' || c == b'E') {
            Some(at) => (&text[..at], parse_exp(&text[at + 1..])?),
            None => (text, 0),
        };
        let mut out = Shortest {
            negative,
            digits: [0; 32],
            len: 0,
            exp: 0,
        };
        // Digits seen before the point (leading zeros included) fix the exponent.
        let mut int_digits: i32 = 0;
        let mut seen_point = false;
        let mut leading_zeros: i32 = 0;
        for &c in mantissa {
            match c {
                b'.' if !seen_point => seen_point = true,
                b'0'..=b'9' => {
                    if !seen_point {
                        int_digits += 1;
                    }
                    if out.len == 0 && c == b'0' {
                        leading_zeros += 1;
                    } else {
                        *out.digits.get_mut(out.len)? = c;
                        out.len += 1;
                    }
                }
                _ => return None,
            }
        }
        while out.len > 0 && out.digits[out.len - 1] == b'0' {
            out.len -= 1;
        }
        if out.len == 0 {
            return None;
        }
        out.exp = exp.checked_add(int_digits - 1 - leading_zeros)?;
        Some(out)
    }

    /// `printf("%.6g")` of the value, given it has at most 6 digits.
    fn write_g6(&self, out: &mut Vec<u8>) {
        let digits = &self.digits[..self.len];
        if self.negative {
            out.push(b'-');
        }
        if !(-4..6).contains(&self.exp) {
            out.push(digits[0]);
            if digits.len() > 1 {
                out.push(b'.');
                out.extend_from_slice(&digits[1..]);
            }
            out.push(b'e');
            out.push(if self.exp < 0 { b'-' } else { b'+' });
            let e = self.exp.unsigned_abs();
            if e < 10 {
                out.push(b'0');
            }
            let mut buf = itoa::Buffer::new();
            out.extend_from_slice(buf.format(e).as_bytes());
        } else if self.exp < 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..(-self.exp - 1) {
                out.push(b'0');
            }
            out.extend_from_slice(digits);
        } else {
            // exp in 0..6: the decimal point moves right by `exp` digits.
            let point = self.exp as usize + 1;
            if digits.len() <= point {
                out.extend_from_slice(digits);
                for _ in digits.len()..point {
                    out.push(b'0');
                }
                // `finish`: a whole number gets `.0`.
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..point]);
                out.push(b'.');
                out.extend_from_slice(&digits[point..]);
            }
        }
    }
}

/// The exponent after `e`: optional sign, 1–4 digits.
fn parse_exp(text: &[u8]) -> Option<i32> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    let mut e: i32 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        e = e * 10 + i32::from(c - b'0');
    }
    Some(if negative { -e } else { e })
}

/// Writes `%.6g` (with `finish`) of a normal value when its shortest round-trip
/// form has at most 6 significant digits; returns `false` (nothing written)
/// otherwise.
///
/// The shortest form lies within half an ULP of the value (relative error below
/// 2^-24 for `f32`), far closer than half a step of the 6-digit grid (more than
/// 5·10^-7 relative), so it *is* the value correctly rounded to 6 digits, and it
/// parses back to the value by construction: exactly what [`format_g`] followed by the
/// round-trip check would produce, without exact-precision (bignum) formatting.
/// The digits come from `zmij` (Schubfach), written into a stack buffer.
fn push_short_g6(out: &mut Vec<u8>, shortest: &str) -> bool {
    match Shortest::read(shortest.as_bytes()) {
        Some(s) if s.len <= 6 => {
            s.write_g6(out);
            true
        }
        _ => false,
    }
}

/// `10^k` for `k` in `0..=6`: exact doubles, and `5^k < 2^14`.
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// Whether `n` (finite, `0 < n < 1e6`) is a whole number: `n == n.trunc()` with the
/// truncation done by a conversion, which compiles to one instruction where `trunc`
/// is a libm call on baseline x86-64. Below `2^32` the conversion is exact.
#[inline]
fn is_whole(n: f64) -> bool {
    debug_assert!(n > 0.0 && n < 1e6);
    n == f64::from(n as u32)
}

/// Writes `%.6g` (with `finish`) of a non-zero `f32` whose exact value is `±n / 10^k`
/// with an integer `n < 10^6` and `k ≤ 6`, between `1e-4` and `1e6` (most short
/// decimals a model computes exactly: `2.5`, `3.0`, `0.125`); returns `false`
/// (nothing written) otherwise.
///
/// `|v| · 10^k` is exact in `f64`: the `f32` significand has 24 bits and `5^k` at most
/// 14, and the power of two only moves the exponent. So the smallest `k` that makes it
/// a whole number gives the exact decimal value, with no trailing zero after the point.
/// Its at most 6 significant digits are what `%.6g` prints (no rounding), in fixed
/// notation since the decimal exponent is in `-4..6`, and the text parses back to `v`:
/// what [`push_short_g6`] writes, without producing the shortest digits first.
fn push_exact_short_f32(out: &mut Vec<u8>, v: f32) -> bool {
    let d = f64::from(v).abs();
    if !(d > 0.0 && d < 1e6) {
        return false;
    }
    for (k, p) in POW10.iter().enumerate() {
        let n = d * p;
        if n >= 1e6 {
            // 7 or more significant digits from here on.
            return false;
        }
        if is_whole(n) {
            // Below 1e-4 (`n < 10^(k-4)`) `%g` switches to the exponent form.
            if k > 4 && n < POW10[k - 4] {
                return false;
            }
            if v < 0.0 {
                out.push(b'-');
            }
            let mut buf = itoa::Buffer::new();
            let digits = buf.format(n as u32).as_bytes();
            if k == 0 {
                out.extend_from_slice(digits);
                out.extend_from_slice(b".0");
            } else if digits.len() > k {
                let point = digits.len() - k;
                out.extend_from_slice(&digits[..point]);
                out.push(b'.');
                out.extend_from_slice(&digits[point..]);
            } else {
                out.extend_from_slice(b"0.");
                out.extend(std::iter::repeat_n(b'0', k - digits.len()));
                out.extend_from_slice(digits);
            }
            return true;
        }
    }
    false
}

/// Appends a `DT_FLOAT` value as TF Serving's REST API writes it.
pub fn push_f32(out: &mut Vec<u8>, v: f32) {
    if push_exact_short_f32(out, v) {
        return;
    }
    if v.is_normal() && push_short_g6(out, zmij::Buffer::new().format_finite(v)) {
        return;
    }
    out.extend_from_slice(slow_f32(v).as_bytes());
}

/// Appends a `DT_DOUBLE` value as TF Serving's REST API writes it.
pub fn push_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_normal() && push_short_g6(out, zmij::Buffer::new().format_finite(v)) {
        return;
    }
    out.extend_from_slice(slow_f64(v).as_bytes());
}

/// The exact path: `%.6g`, and `%.9g` when that does not round-trip.
fn slow_f32(v: f32) -> String {
    if !v.is_finite() {
        return non_finite(f64::from(v));
    }
    let short = format_g(f64::from(v), 6);
    if short.parse::<f32>() == Ok(v) {
        finish(short)
    } else {
        finish(format_g(f64::from(v), 9))
    }
}

/// The exact path: `%.6g`, and `%.17g` when that does not round-trip.
fn slow_f64(v: f64) -> String {
    if !v.is_finite() {
        return non_finite(v);
    }
    let short = format_g(v, 6);
    if short.parse::<f64>() == Ok(v) {
        finish(short)
    } else {
        finish(format_g(v, 17))
    }
}

/// A `DT_FLOAT` value as TF Serving's REST API writes it.
pub fn write_f32(v: f32) -> String {
    let mut out = Vec::with_capacity(16);
    push_f32(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// A `DT_DOUBLE` value as TF Serving's REST API writes it.
pub fn write_f64(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    push_f64(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// RapidJSON `Writer::Double`: shortest digits, laid out by its `Prettify` rules.
pub fn rapidjson_double(v: f64) -> String {
    if !v.is_finite() {
        return non_finite(v);
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let len = digits.len() as i32;
    let kk = exp + 1; // value = 0.DIGITS x 10^kk
    let k = kk - len; // value = DIGITS x 10^k
    let body = if (0..=21).contains(&kk) && k >= 0 {
        format!("{digits}{}.0", "0".repeat(k as usize))
    } else if 0 < kk && kk <= 21 {
        let (a, b) = digits.split_at(kk as usize);
        format!("{a}.{b}")
    } else if -6 < kk && kk <= 0 {
        format!("0.{}{digits}", "0".repeat((-kk) as usize))
    } else if len == 1 {
        format!("{digits}e{}", kk - 1)
    } else {
        format!("{}.{}e{}", &digits[..1], &digits[1..], kk - 1)
    };
    if v < 0.0 { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    /// The conversion check agrees with `trunc` on whole numbers, halves, values next
    /// to whole numbers and generated values across `(0, 1e6)`.
    #[test]
    fn whole_check_matches_trunc() {
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut values = vec![f64::MIN_POSITIVE, 0.5, 1.0, 999_999.0, 999_999.5];
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let whole = (x % 1_000_000) as f64;
            values.push(whole.max(1.0));
            values.push((x % 1_000_000_000) as f64 / 1000.0);
            values.push(f64::from_bits(whole.max(1.0).to_bits() + 1));
            values.push(f64::from_bits(whole.max(1.0).to_bits() - 1));
            values.push(f64::from(f32::from_bits(x as u32 & 0x497f_ffff)));
        }
        for v in values {
            if v > 0.0 && v < 1e6 {
                assert_eq!(super::is_whole(v), v == v.trunc(), "{v:e}");
            }
        }
    }

    use super::*;

    #[test]
    fn printf_g() {
        assert_eq!(format_g(9_000_000.0, 6), "9e+06");
        assert_eq!(format_g(999_999.0, 6), "999999");
        assert_eq!(format_g(0.00003, 6), "3e-05");
        assert_eq!(format_g(0.0001, 6), "0.0001");
        assert_eq!(format_g(2.5, 6), "2.5");
        assert_eq!(format_g(-1234567.0, 6), "-1.23457e+06");
        assert_eq!(format_g(1e100, 6), "1e+100");
        assert_eq!(format_g(0.1, 17), "0.10000000000000001");
        assert_eq!(format_g(-0.0, 6), "-0");
    }

    #[test]
    fn tf_serving_float_outputs() {
        assert_eq!(write_f32(9_000_000.0), "9e+06");
        assert_eq!(write_f32(999_999.0), "999999.0");
        assert_eq!(write_f32(0.00003), "3e-05");
        assert_eq!(write_f32(3.0), "3.0");
        assert_eq!(write_f32(2.5), "2.5");
        assert_eq!(write_f32(0.2), "0.2");
        assert_eq!(write_f32(1234567.0), "1234567.0");
        assert_eq!(write_f32(0.1 + 0.2), "0.3");
        assert_eq!(write_f32(1.0 / 3.0), "0.333333343");
        assert_eq!(write_f32(f32::NAN), "NaN");
        assert_eq!(write_f32(f32::INFINITY), "Infinity");
        assert_eq!(write_f32(f32::NEG_INFINITY), "-Infinity");
        assert_eq!(write_f32(-0.0), "-0.0");
        assert_eq!(write_f64(0.1), "0.1");
        assert_eq!(write_f64(1.0 / 3.0), "0.33333333333333331");
        assert_eq!(write_f64(42.0), "42.0");
    }

    /// The shortest-form fast path gives exactly what the exact `%g` path gives.
    #[test]
    fn fast_path_matches_printf_g() {
        let mut values: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.5,
            3.0,
            4.5,
            0.1,
            0.2,
            0.3,
            1e-4,
            9.99999e-5,
            1e-5,
            123456.0,
            999999.0,
            999999.5,
            1e6,
            1234567.0,
            9e6,
            1e38,
            -1e-38,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            0.5,
            100.0,
            0.00012345,
        ];
        // A deterministic spread over all exponents and mantissas (xorshift).
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values.push(f32::from_bits(x));
        }
        // Powers of ten and short multiples: every layout the digit source uses
        // (`0.000…`, `…000.0`, exponent forms).
        for e in -45..39 {
            let p = 10f32.powi(e);
            values.extend([p, 1.5 * p, -2.25 * p, 123_456.0 * p, 1_234_567.0 * p]);
        }
        // Short decimals, whose shortest forms have few digits.
        for i in -2000..2000 {
            values.push(i as f32 / 8.0);
            values.push(i as f32 * 0.001);
            values.push(i as f32 * 1e7);
            values.push(i as f32 * 1e-7);
        }
        for v in values.into_iter().filter(|v| v.is_finite()) {
            assert_eq!(write_f32(v), slow_f32(v), "f32 {v:e}");
            let d = f64::from(v);
            assert_eq!(write_f64(d), slow_f64(d), "f64 {d:e}");
            let d = f64::from(v) * 1.000_000_1;
            assert_eq!(write_f64(d), slow_f64(d), "f64 {d:e}");
        }
        for e in -320..309 {
            let p = 10f64.powi(e);
            for d in [p, 1.5 * p, -2.25 * p, 123_456.0 * p, 1_234_567.0 * p] {
                if d.is_finite() {
                    assert_eq!(write_f64(d), slow_f64(d), "f64 {d:e}");
                }
            }
        }
        let mut y: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            let d = f64::from_bits(y);
            if d.is_finite() {
                assert_eq!(write_f64(d), slow_f64(d), "f64 {d:e}");
            }
        }
    }

    /// The exact-decimal path, whenever it writes, writes what the exact `%g` path
    /// writes; and it does take the common short decimals.
    #[test]
    fn exact_short_f32_matches_printf_g() {
        let mut values: Vec<f32> = vec![
            2.5, 3.0, 4.5, 0.0001, 0.00015, 0.00001, 999_999.0, 999_999.5, 100.0, -0.125,
        ];
        let mut x: u32 = 0x2545_f491;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values.push(f32::from_bits(x));
            // n / 10^k and n / 2^j for short n: exact or not, every layout.
            let n = (x >> 8) % 2_000_000;
            let sign = if x & 1 == 0 { 1.0 } else { -1.0 };
            values.push(sign * n as f32 / 10f32.powi((x % 9) as i32));
            values.push(sign * n as f32 / (1u32 << (x % 24)) as f32);
        }
        let mut hits = 0;
        for v in values {
            let mut out = Vec::new();
            if push_exact_short_f32(&mut out, v) {
                assert_eq!(String::from_utf8(out).unwrap(), slow_f32(v), "f32 {v:e}");
                hits += 1;
            }
        }
        assert!(hits > 30_000, "{hits}");
    }

    #[test]
    fn rapidjson_shortest_doubles() {
        assert_eq!(rapidjson_double(2.0), "2.0");
        assert_eq!(rapidjson_double(5.003), "5.003");
        assert_eq!(rapidjson_double(0.007), "0.007");
        assert_eq!(rapidjson_double(1234e7), "12340000000.0");
        assert_eq!(rapidjson_double(1e21), "1e21");
        assert_eq!(rapidjson_double(1.5e22), "1.5e22");
        assert_eq!(rapidjson_double(0.000001), "0.000001");
        assert_eq!(rapidjson_double(1e-7), "1e-7");
        assert_eq!(rapidjson_double(-2.5e-9), "-2.5e-9");
        assert_eq!(rapidjson_double(0.0), "0.0");
    }
}
