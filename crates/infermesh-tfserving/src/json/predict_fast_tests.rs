//! The fast path against the general path: on many generated bodies and signatures,
//! [`parse_predict_request`] (fast path first) and [`parse_general`] (the `Value`
//! tree only) give the same result, errors included.

use std::collections::BTreeMap;

use super::scan;
use crate::json::predict_request::{parse_general, parse_predict_request};
use crate::servable::method;
use crate::{Signature, Status, TensorInfo};

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2.5",
    "3.0",
    "0.5",
    "1e3",
    "1E+2",
    "-2.5e-3",
    "0.1",
    "127",
    "128",
    "255",
    "256",
    "-128",
    "-129",
    "300",
    "65535",
    "16777215",
    "16777216",
    "-16777217",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "3.4028235e38",
    "3.5e38",
    "-1e39",
    "1e-46",
    "1e308",
    "1.7976931348623157e308",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "Inf",
    "-Inf",
    "1.5e-7",
    "123456.789",
];

/// Numbers every integer type holds, and numbers only float types take.
const SMALL_INTS: &[&str] = &["0", "1", "2", "7", "100", "127"];
const DECIMALS: &[&str] = &["2.5", "0.1", "-1.5e-3", "3.0", "1E2", "-0.0"];

/// Leaves that are not plain numbers, or malformed ones.
const ODD_LEAVES: &[&str] = &[
    "true",
    "false",
    "null",
    "\"s\"",
    "{\"b64\": \"aGk=\"}",
    "{}",
    "01",
    "1.",
    ".5",
    "- 1",
    "1e",
    "+1",
    "Nan",
    "Infinit",
    "1e400",
    "\"a\\nb\"",
];

const WS: &[&str] = &["", "", "", " ", "\n", "\t ", "\r\n  "];

/// A nested list of numbers: usually dense, sometimes ragged, empty or odd.
fn value(rng: &mut Rng, numbers: &[&str], shape: &[usize], out: &mut String) {
    let ws = rng.pick(WS);
    out.push_str(ws);
    if shape.is_empty() || rng.below(150) == 0 {
        if rng.below(100) == 0 {
            out.push_str(rng.pick(ODD_LEAVES));
        } else {
            out.push_str(rng.pick(numbers));
        }
    } else {
        out.push('[');
        let mut len = shape[0];
        if rng.below(80) == 0 {
            len = rng.below(3);
        }
        for i in 0..len {
            if i > 0 {
                out.push_str(rng.pick(WS));
                out.push(',');
            }
            if rng.below(100) == 0 {
                value(rng, numbers, &shape[..shape.len() - 1], out);
            } else {
                value(rng, numbers, &shape[1..], out);
            }
        }
        out.push_str(rng.pick(WS));
        out.push(']');
    }
    out.push_str(rng.pick(WS));
}

fn body(rng: &mut Rng) -> String {
    let mut members: Vec<String> = Vec::new();
    let rank = rng.below(4);
    let shape: Vec<usize> = (0..rank).map(|_| 1 + rng.below(3)).collect();
    let mut data = String::new();
    let numbers = [NUMBERS, SMALL_INTS, DECIMALS][rng.below(3)];
    value(rng, numbers, &shape, &mut data);
    let key = rng.pick(&[
        "instances",
        "instances",
        "instances",
        "inputs",
        "inputs",
        "instance",
    ]);
    members.push(format!("\"{key}\":{data}"));
    match rng.below(12) {
        0 => members.push(format!(
            "\"signature_name\": {}",
            rng.pick(&[
                "\"serving_default\"",
                "\"\"",
                "\"other\"",
                "\"missing\"",
                "\"serving\\u005fdefault\"",
                "5",
                "\"\u{e9}\"",
                "\"a\u{1}\"",
            ])
        )),
        1 => members.push("\"foo\": 1".to_string()),
        2 => members.push(format!("\"{key}\": [1]")),
        3 => members.push("\"inputs\": [2]".to_string()),
        _ => {}
    }
    if rng.below(2) == 0 {
        members.reverse();
    }
    let mut text = format!("{}{{{}", rng.pick(WS), rng.pick(WS));
    text.push_str(&members.join(","));
    text.push('}');
    if rng.below(10) == 0 {
        text.push_str(rng.pick(&["x", "\0", "}", "{}"]));
    } else {
        text.push_str(rng.pick(WS));
    }
    text
}

fn signature(inputs: &[(&str, i32)]) -> Signature {
    Signature {
        method_name: method::PREDICT.into(),
        inputs: inputs
            .iter()
            .map(|(k, dtype)| {
                let info = TensorInfo {
                    name: format!("{k}:0"),
                    dtype: *dtype,
                    shape: None,
                };
                (k.to_string(), info)
            })
            .collect(),
        outputs: BTreeMap::new(),
    }
}

/// Known signature names answer; others fail as the lookup would.
fn lookup<'a>(sig: &'a Signature, name: &str) -> Result<&'a Signature, Status> {
    match name {
        "serving_default" | "other" | "\u{e9}" => Ok(sig),
        _ => Err(Status::invalid_argument(format!("no signature {name}"))),
    }
}

#[test]
fn fast_path_agrees_with_general_path() {
    let dtypes = [1, 2, 3, 4, 5, 6, 7, 9, 10, 17, 22, 23, 14];
    let mut signatures: Vec<Signature> = dtypes.iter().map(|&d| signature(&[("x", d)])).collect();
    signatures.push(signature(&[]));
    signatures.push(signature(&[("a", 1), ("b", 1)]));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut scanned, mut fast_ok, mut total) = (0, 0, 0);
    for _ in 0..40_000 {
        let text = body(&mut rng);
        let sig = &signatures[rng.below(signatures.len())];
        let fast = parse_predict_request(text.as_bytes(), |name| lookup(sig, name));
        let general = parse_general(text.as_bytes(), |name| lookup(sig, name));
        // Debug text: NaN equals NaN, and -0.0 differs from 0.0.
        assert_eq!(format!("{fast:?}"), format!("{general:?}"), "body {text:?}");
        total += 1;
        if scan(text.as_bytes()).is_some() {
            scanned += 1;
            if fast.is_ok() {
                fast_ok += 1;
            }
        }
    }
    // The generator must exercise the fast path, its fallbacks and the general path.
    assert!(scanned > total / 4, "{scanned} of {total} scanned");
    assert!(fast_ok > total / 10, "{fast_ok} of {total} decoded fast");
    assert!(scanned < total * 9 / 10, "{scanned} of {total} scanned");
}

#[test]
fn scans_the_common_bodies() {
    for body in [
        r#"{"instances": [1.0, 2.0, 5.0]}"#,
        r#"{"signature_name": "serving_default", "instances": [[1], [2]]}"#,
        r#"{"inputs": 3}"#,
        "{\"inputs\": [[1, 2], [3, 4]]}\n",
    ] {
        assert!(scan(body.as_bytes()).is_some(), "{body}");
    }
    for body in [
        r#"{"instances": []}"#,
        r#"{"instances": [[1], [2, 3]]}"#,
        r#"{"instances": [[1], 2]}"#,
        r#"{"instances": [1, [2]]}"#,
        r#"{"instances": 1}"#,
        r#"{"instances": [1], "instances": [2]}"#,
        r#"{"instances": ["a"]}"#,
        r#"{"instances": [1]} x"#,
        r#"{"signature_name": "a\"b", "instances": [1]}"#,
    ] {
        assert!(scan(body.as_bytes()).is_none(), "{body}");
    }
}

/// Lists nested up to and past the fast path's depth limit: the fast path scans
/// those within it (its per-level lengths kept inline), and both paths agree on all.
#[test]
fn deep_lists_agree_with_the_general_path() {
    let sig = signature(&[("x", 1)]);
    for depth in 1..=40 {
        for (key, open) in [("instances", depth), ("inputs", depth)] {
            let inner = format!("{}7{}", "[".repeat(open), "]".repeat(open));
            let twice = format!("{}[7, 8]{}", "[".repeat(open - 1), "]".repeat(open - 1));
            for value in [inner, twice] {
                let text = format!("{{\"{key}\": {value}}}");
                let fast = parse_predict_request(text.as_bytes(), |name| lookup(&sig, name));
                let general = parse_general(text.as_bytes(), |name| lookup(&sig, name));
                assert_eq!(format!("{fast:?}"), format!("{general:?}"), "body {text:?}");
                assert_eq!(
                    scan(text.as_bytes()).is_some(),
                    depth <= super::MAX_DEPTH,
                    "depth {depth}: {text}"
                );
            }
        }
    }
}
