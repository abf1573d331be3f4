//! Number formatting as TF Serving writes it.
//!
//! * Tensor values (`WriteDecimal`): printf `%g` with 6 significant digits; if that
//!   does not parse back to the same value, `%.9g` (float) / `%.17g` (double); `.0`
//!   appended when the text has neither `.` nor `e` (`3.0`, but `9e+06` stays);
//!   `NaN`, `Infinity`, `-Infinity` for non-finite values.
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

/// `%.6g` of a normal (not subnormal, not zero) value, from its shortest round-trip form `sci` (Rust's `{:e}`
/// of the same type), when that form has at most 6 significant digits; `None`
/// otherwise.
///
/// The shortest form lies within half an ULP of the value (relative error below
/// 2^-24 for `f32`), far closer than half a step of the 6-digit grid (more than
/// 5·10^-7 relative), so it *is* the value correctly rounded to 6 digits, and it
/// parses back to the value by construction: exactly what [`format_g`] followed by the
/// round-trip check would produce, without exact-precision (bignum) formatting.
fn shortest_as_g6(sci: String) -> Option<String> {
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.len() != 1 || int == "0" || 1 + frac.len() > 6 {
        // Zero (formatted by `format_g` itself) or more than 6 digits.
        return None;
    }
    let mut out = String::with_capacity(16);
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(int);
        out.push_str(frac);
    } else {
        // exp in 0..6: the decimal point moves right by `exp` digits.
        let digits = [int, frac].concat();
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    Some(out)
}

/// A `DT_FLOAT` value as TF Serving's REST API writes it.
pub fn write_f32(v: f32) -> String {
    if !v.is_finite() {
        return non_finite(f64::from(v));
    }
    if v.is_normal()
        && let Some(short) = shortest_as_g6(format!("{v:e}"))
    {
        return finish(short);
    }
    let short = format_g(f64::from(v), 6);
    if short.parse::<f32>() == Ok(v) {
        finish(short)
    } else {
        finish(format_g(f64::from(v), 9))
    }
}

/// A `DT_DOUBLE` value as TF Serving's REST API writes it.
pub fn write_f64(v: f64) -> String {
    if !v.is_finite() {
        return non_finite(v);
    }
    if v.is_normal()
        && let Some(short) = shortest_as_g6(format!("{v:e}"))
    {
        return finish(short);
    }
    let short = format_g(v, 6);
    if short.parse::<f64>() == Ok(v) {
        finish(short)
    } else {
        finish(format_g(v, 17))
    }
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
        fn slow_f32(v: f32) -> String {
            let short = format_g(f64::from(v), 6);
            if short.parse::<f32>() == Ok(v) {
                finish(short)
            } else {
                finish(format_g(f64::from(v), 9))
            }
        }
        fn slow_f64(v: f64) -> String {
            let short = format_g(v, 6);
            if short.parse::<f64>() == Ok(v) {
                finish(short)
            } else {
                finish(format_g(v, 17))
            }
        }
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
