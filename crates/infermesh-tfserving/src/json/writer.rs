//! A JSON writer that lays text out exactly like RapidJSON's `PrettyWriter` (4-space
//! indent, optional single-line arrays), which TF Serving uses for predict, classify
//! and regress responses and for values echoed in error messages — so our bodies
//! match TF Serving's byte for byte, e.g. `{\n    "predictions": [2.5, 3.0\n    ]\n}`.

use super::number::{push_f32, push_f64, rapidjson_double, write_f32, write_f64};
use super::value::{Number, Value};

struct Level {
    in_array: bool,
    count: usize,
}

/// The writer; [`PrettyWriter::finish`] returns the text.
#[derive(Default)]
pub struct PrettyWriter {
    out: Vec<u8>,
    stack: Vec<Level>,
    single_line: bool,
    /// A string with a byte outside ASCII was written: the text may not be UTF-8.
    /// Everything else the writer writes is ASCII or a `&str`.
    unchecked: bool,
}

impl PrettyWriter {
    pub fn new() -> PrettyWriter {
        PrettyWriter::default()
    }

    /// A writer with room for `bytes` of text (it grows past that as needed).
    pub fn with_capacity(bytes: usize) -> PrettyWriter {
        PrettyWriter {
            out: Vec::with_capacity(bytes),
            stack: Vec::with_capacity(8),
            single_line: false,
            unchecked: false,
        }
    }

    /// RapidJSON `kFormatSingleLineArray` on or off.
    pub fn set_single_line_arrays(&mut self, on: bool) {
        self.single_line = on;
    }

    fn indent(&mut self) {
        let n = self.stack.len() * 4;
        self.out.extend(std::iter::repeat_n(b' ', n));
    }

    fn prefix(&mut self) {
        let single_line = self.single_line;
        let Some(level) = self.stack.last_mut() else {
            return;
        };
        let count = level.count;
        level.count += 1;
        if level.in_array {
            if count > 0 {
                self.out.push(b',');
                if single_line {
                    self.out.push(b' ');
                }
            }
            if !single_line {
                self.out.push(b'\n');
                self.indent();
            }
        } else {
            if count == 0 {
                self.out.push(b'\n');
            } else if count % 2 == 0 {
                self.out.extend_from_slice(b",\n");
            } else {
                self.out.extend_from_slice(b": ");
            }
            if count % 2 == 0 {
                self.indent();
            }
        }
    }

    pub fn start_object(&mut self) {
        self.prefix();
        self.stack.push(Level {
            in_array: false,
            count: 0,
        });
        self.out.push(b'{');
    }

    pub fn end_object(&mut self) {
        let empty = self.stack.pop().is_none_or(|l| l.count == 0);
        if !empty {
            self.out.push(b'\n');
            self.indent();
        }
        self.out.push(b'}');
    }

    pub fn start_array(&mut self) {
        self.prefix();
        self.stack.push(Level {
            in_array: true,
            count: 0,
        });
        self.out.push(b'[');
    }

    pub fn end_array(&mut self) {
        let empty = self.stack.pop().is_none_or(|l| l.count == 0);
        if !empty && !self.single_line {
            self.out.push(b'\n');
            self.indent();
        }
        self.out.push(b']');
    }

    /// An object key (RapidJSON writes keys as strings).
    pub fn key(&mut self, key: &[u8]) {
        self.string(key);
    }

    /// A string value, escaped as RapidJSON does; other bytes are copied unchanged.
    pub fn string(&mut self, s: &[u8]) {
        self.prefix();
        self.unchecked |= !s.is_ascii();
        self.out.push(b'"');
        // The run before the first byte that needs escaping goes over as it is.
        let plain = s
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .unwrap_or(s.len());
        self.out.extend_from_slice(&s[..plain]);
        for &c in &s[plain..] {
            match c {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                8 => self.out.extend_from_slice(b"\\b"),
                9 => self.out.extend_from_slice(b"\\t"),
                10 => self.out.extend_from_slice(b"\\n"),
                12 => self.out.extend_from_slice(b"\\f"),
                13 => self.out.extend_from_slice(b"\\r"),
                c if c < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(HEX[usize::from(c >> 4)]);
                    self.out.push(HEX[usize::from(c & 15)]);
                }
                c => self.out.push(c),
            }
        }
        self.out.push(b'"');
    }

    /// A value already formatted as JSON text (numbers).
    pub fn raw(&mut self, text: &str) {
        self.prefix();
        self.out.extend_from_slice(text.as_bytes());
    }

    pub fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }

    pub fn f32(&mut self, v: f32) {
        self.prefix();
        push_f32(&mut self.out, v);
    }

    pub fn f64(&mut self, v: f64) {
        self.prefix();
        push_f64(&mut self.out, v);
    }

    /// The text; bytes that are not UTF-8 (from binary strings) become U+FFFD.
    pub fn finish(self) -> String {
        match String::from_utf8(self.out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// The bytes of [`PrettyWriter::finish`]'s text, for a body that is sent as bytes
    /// anyway: when every string written was ASCII the text is already valid UTF-8
    /// and goes out without the check.
    pub fn finish_bytes(self) -> Vec<u8> {
        if self.unchecked {
            self.finish().into_bytes()
        } else {
            self.out
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.raw("null"),
            Value::Bool(b) => self.bool(*b),
            Value::Number(Number::Int(i)) => self.raw(&i.to_string()),
            Value::Number(Number::Uint(u)) => self.raw(&u.to_string()),
            Value::Number(Number::Double(d)) => self.raw(&rapidjson_double(*d)),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.start_array();
                for item in items {
                    self.value(item);
                }
                self.end_array();
            }
            Value::Object(members) => {
                self.start_object();
                for (k, item) in members {
                    self.key(k);
                    self.value(item);
                }
                self.end_object();
            }
        }
    }
}

/// A value as TF Serving echoes it in error messages (`JsonValueToString`): pretty
/// printed; a top-level double is written like a tensor value.
pub fn value_to_string(v: &Value) -> String {
    match v {
        Value::Number(Number::Double(d)) if d.abs() <= f64::from(f32::MAX) => write_f32(*d as f32),
        Value::Number(Number::Double(d)) => write_f64(*d),
        _ => {
            let mut w = PrettyWriter::new();
            w.value(v);
            w.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn dump(s: &str) -> String {
        value_to_string(&parse(s.as_bytes()).unwrap())
    }

    #[test]
    fn pretty_prints_like_rapidjson() {
        assert_eq!(
            dump(r#"{"signature_name":5,"instances":[[1,2.0],[]],"o":{}}"#),
            "{\n    \"signature_name\": 5,\n    \"instances\": [\n        [\n            1,\n            2.0\n        ],\n        []\n    ],\n    \"o\": {}\n}"
        );
        assert_eq!(dump(r#""a\"b\u0001""#), r#""a\"b\u0001""#);
        assert_eq!(dump("2.5"), "2.5");
        assert_eq!(dump("1e300"), "1e+300");
        assert_eq!(dump("NaN"), "NaN");
        assert_eq!(dump("[NaN]"), "[\n    NaN\n]");
    }

    /// Strings with and without escapes, anywhere: the same text as escaping byte by
    /// byte.
    #[test]
    fn string_escapes_match_byte_by_byte() {
        let mut x: u32 = 0xdead_beef;
        for case in 0..20_000 {
            let len = (case % 24) as usize;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    match x % 5 {
                        0 => (x >> 8) as u8 % 0x20,
                        1 => b"\"\\\x7f\xc3\xa9"[(x >> 8) as usize % 5],
                        _ => b'a' + (x >> 8) as u8 % 26,
                    }
                })
                .collect();
            let mut want = vec![b'"'];
            for &c in &s {
                match c {
                    b'"' => want.extend_from_slice(b"\\\""),
                    b'\\' => want.extend_from_slice(b"\\\\"),
                    8 => want.extend_from_slice(b"\\b"),
                    9 => want.extend_from_slice(b"\\t"),
                    10 => want.extend_from_slice(b"\\n"),
                    12 => want.extend_from_slice(b"\\f"),
                    13 => want.extend_from_slice(b"\\r"),
                    c if c < 0x20 => want.extend_from_slice(format!("\\u{c:04X}").as_bytes()),
                    c => want.push(c),
                }
            }
            want.push(b'"');
            let mut w = PrettyWriter::new();
            w.string(&s);
            assert_eq!(w.out, want, "case {case}: {s:?}");
        }
    }

    /// `finish_bytes` gives `finish`'s bytes for generated documents whose strings
    /// are ASCII, UTF-8 beyond ASCII, or not UTF-8 at all, among numbers and nesting.
    #[test]
    fn finish_bytes_matches_finish() {
        let pieces: [&[u8]; 6] = [
            b"plain",
            b"a\"b",
            "\u{e9}t\u{e9}".as_bytes(),
            b"\xff\xfe",
            b"\xc3",
            b"",
        ];
        fn build(seed: u32, pieces: &[&[u8]]) -> PrettyWriter {
            let mut x = seed;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as usize
            };
            let mut w = PrettyWriter::new();
            w.start_object();
            for _ in 0..next() % 4 {
                w.key(pieces[next() % pieces.len()]);
                w.start_array();
                for _ in 0..next() % 4 {
                    match next() % 3 {
                        0 => w.string(pieces[next() % pieces.len()]),
                        1 => w.f32(next() as f32 / 7.0),
                        _ => w.raw("\u{2603}"),
                    }
                }
                w.end_array();
            }
            w.end_object();
            w
        }
        for seed in 1..5_000u32 {
            assert_eq!(
                build(seed, &pieces).finish_bytes(),
                build(seed, &pieces).finish().into_bytes(),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn single_line_arrays() {
        let mut w = PrettyWriter::new();
        w.start_object();
        w.key(b"predictions");
        w.start_array();
        for v in [2.5f32, 3.0, 4.5] {
            w.set_single_line_arrays(true);
            w.f32(v);
            w.set_single_line_arrays(false);
        }
        w.end_array();
        w.end_object();
        assert_eq!(
            w.finish(),
            "{\n    \"predictions\": [2.5, 3.0, 4.5\n    ]\n}"
        );
    }
}
