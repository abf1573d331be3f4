//! Tests for the RapidJSON-compatible parser: values, NaN/Infinity, error messages
//! and offsets.

use super::*;

fn err(s: &str) -> String {
    parse(s.as_bytes()).unwrap_err().message
}

#[test]
fn parses_values() {
    let v = parse(br#" {"a": [1, -2, 3.5, true, false, null, "x\n\u00e9\ud83d\ude00"]} "#).unwrap();
    let Value::Object(members) = v else {
        panic!("not an object")
    };
    assert_eq!(members[0].0, b"a");
    let Value::Array(items) = &members[0].1 else {
        panic!("not an array")
    };
    assert_eq!(items[0], Value::Number(Number::Int(1)));
    assert_eq!(items[1], Value::Number(Number::Int(-2)));
    assert_eq!(items[2], Value::Number(Number::Double(3.5)));
    assert_eq!(items[3], Value::Bool(true));
    assert_eq!(items[5], Value::Null);
    assert_eq!(items[6], Value::String("x\né😀".as_bytes().to_vec()));
}

#[test]
fn integers_and_doubles_are_told_apart() {
    assert_eq!(parse(b"2.0").unwrap(), Value::Number(Number::Double(2.0)));
    assert_eq!(parse(b"1e2").unwrap(), Value::Number(Number::Double(100.0)));
    assert_eq!(parse(b"-0").unwrap(), Value::Number(Number::Int(0)));
    assert_eq!(
        parse(b"18446744073709551615").unwrap(),
        Value::Number(Number::Uint(u64::MAX))
    );
    assert_eq!(
        parse(b"-9223372036854775808").unwrap(),
        Value::Number(Number::Int(i64::MIN))
    );
    assert_eq!(
        parse(b"18446744073709551616").unwrap(),
        Value::Number(Number::Double(18446744073709551616.0))
    );
}

#[test]
fn accepts_nan_and_infinity() {
    let Value::Array(items) = parse(b"[NaN, Infinity, -Infinity, Inf, -Inf, -NaN]").unwrap() else {
        panic!("not an array")
    };
    let f: Vec<f64> = items
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64(),
            _ => panic!("not a number"),
        })
        .collect();
    assert!(f[0].is_nan() && f[5].is_nan());
    assert_eq!(f[1], f64::INFINITY);
    assert_eq!(f[2], f64::NEG_INFINITY);
    assert_eq!(f[3], f64::INFINITY);
    assert_eq!(f[4], f64::NEG_INFINITY);
}

#[test]
fn empty_documents() {
    assert_eq!(err(""), "JSON Parse error: The document is empty");
    assert_eq!(
        err("  \n"),
        "JSON Parse error: The document is empty. at offset: 3"
    );
}

#[test]
fn error_messages_and_offsets_match_rapidjson() {
    assert_eq!(err("x"), "JSON Parse error: Invalid value. at offset: 0");
    assert_eq!(
        err(r#"{"instances": [1, 2,]}"#),
        "JSON Parse error: Invalid value. at offset: 20"
    );
    assert_eq!(err("nul"), "JSON Parse error: Invalid value. at offset: 3");
    assert_eq!(
        err("Infinit"),
        "JSON Parse error: Invalid value. at offset: 7"
    );
    assert_eq!(err("NaX"), "JSON Parse error: Invalid value. at offset: 2");
    assert_eq!(
        err("{} {}"),
        "JSON Parse error: The document root must not be followed by other values. at offset: 3"
    );
    assert_eq!(
        err("{1:2}"),
        "JSON Parse error: Missing a name for object member. at offset: 1"
    );
    assert_eq!(
        err(r#"{"a" 1}"#),
        "JSON Parse error: Missing a colon after a name of object member. at offset: 5"
    );
    assert_eq!(
        err(r#"{"a":1 "b":2}"#),
        "JSON Parse error: Missing a comma or '}' after an object member. at offset: 7"
    );
    assert_eq!(
        err("[1 2]"),
        "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"
    );
    assert_eq!(
        err(r#""abc"#),
        "JSON Parse error: Missing a closing quotation mark in string. at offset: 4"
    );
    assert_eq!(
        err(r#""a\x""#),
        "JSON Parse error: Invalid escape character in string. at offset: 2"
    );
    assert_eq!(
        err(r#""\u12x4""#),
        "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 1"
    );
    assert_eq!(
        err(r#""\ud800x""#),
        "JSON Parse error: The surrogate pair in string is invalid. at offset: 1"
    );
    assert_eq!(
        err("\"a\u{1}\""),
        "JSON Parse error: Invalid encoding in string. at offset: 2"
    );
    assert_eq!(
        err("1."),
        "JSON Parse error: Miss fraction part in number. at offset: 2"
    );
    assert_eq!(
        err("1e"),
        "JSON Parse error: Miss exponent in number. at offset: 2"
    );
    assert_eq!(
        err("[1e400]"),
        "JSON Parse error: Number too big to be stored in double. at offset: 1"
    );
    assert_eq!(err("-"), "JSON Parse error: Invalid value. at offset: 1");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(err(&deep).starts_with("JSON Parse error: Nesting too deep."));
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(parse(ok.as_bytes()).is_ok());
}

#[test]
fn raw_bytes_are_kept_in_strings() {
    assert_eq!(
        parse(b"\"\xff\xfe\"").unwrap(),
        Value::String(vec![0xff, 0xfe])
    );
}

/// Short decimals take the exact-division fast path; it must give what
/// `str::parse` gives, for every digit count, point position and sign.
#[test]
fn short_decimals_parse_like_str_parse() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut checked = 0;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 17) as usize;
        let digits: String = (0..len)
            .map(|i| char::from(b'0' + ((x >> (i * 3)) % 10) as u8))
            .collect();
        let int_len = 1 + ((x >> 40) as usize % len);
        let (int, frac) = digits.split_at(int_len);
        // JSON integer parts have no leading zeros (other than a lone 0).
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let frac = if frac.is_empty() { "0" } else { frac };
        let minus = (x >> 60) & 1 == 1;
        let text = format!("{}{int}.{frac}", if minus { "-" } else { "" });
        let want: f64 = text.parse().unwrap();
        let got = match parse(text.as_bytes()).unwrap() {
            Value::Number(Number::Double(d)) => d,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        if short_decimal(minus, text.trim_start_matches('-').as_bytes()).is_some() {
            checked += 1;
        }
    }
    assert!(checked > 100_000, "{checked} took the fast path");
}
