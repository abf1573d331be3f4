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

/// A `DT_FLOAT` value as TF Serving's REST API writes it.
pub fn write_f32(v: f32) -> String {
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

/// A `DT_DOUBLE` value as TF Serving's REST API writes it.
pub fn write_f64(v: f64) -> String {
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
