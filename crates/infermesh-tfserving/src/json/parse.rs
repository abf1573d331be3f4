//! A small JSON parser that behaves like RapidJSON with `kParseNanAndInfFlag`, the
//! parser TF Serving uses: `NaN`, `Inf`, `Infinity` (optionally signed) are numbers,
//! and errors read `JSON Parse error: <RapidJSON message> at offset: <N>` with
//! RapidJSON's messages and offsets. Nesting is capped (RapidJSON would overflow its
//! stack instead).

use super::value::{Number, Value};
use crate::Status;

/// Deeper documents are refused rather than risking the stack.
pub const MAX_DEPTH: usize = 256;

/// Parses a request body. An empty body gets TF Serving's own message.
pub fn parse(body: &[u8]) -> Result<Value, Status> {
    if body.is_empty() {
        return Err(Status::invalid_argument(
            "JSON Parse error: The document is empty",
        ));
    }
    let mut p = Parser { b: body, pos: 0 };
    p.skip_ws();
    if p.peek() == 0 {
        return Err(p.error("The document is empty.", p.pos));
    }
    let value = p.value(0)?;
    p.skip_ws();
    if p.peek() != 0 {
        return Err(p.error(
            "The document root must not be followed by other values.",
            p.pos,
        ));
    }
    Ok(value)
}

/// The number starting at `pos`, read exactly as [`parse`] reads it, and the offset
/// just past it; `None` where [`parse`] would fail.
pub(super) fn number_at(body: &[u8], pos: usize) -> Option<(Number, usize)> {
    let mut p = Parser { b: body, pos };
    let n = p.number().ok()?;
    Some((n, p.pos))
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// The next byte; 0 at the end (RapidJSON treats NUL as the end too).
    fn peek(&self) -> u8 {
        self.b.get(self.pos).copied().unwrap_or(0)
    }

    fn take(&mut self) -> u8 {
        let c = self.peek();
        if self.pos < self.b.len() {
            self.pos += 1;
        }
        c
    }

    fn consume(&mut self, c: u8) -> bool {
        if self.peek() == c && c != 0 {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    fn error(&self, message: &str, offset: usize) -> Status {
        Status::invalid_argument(format!("JSON Parse error: {message} at offset: {offset}"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Status> {
        if depth >= MAX_DEPTH {
            return Err(self.error("Nesting too deep.", self.pos));
        }
        match self.peek() {
            b'n' => self.literal(b"null", Value::Null),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'"' => Ok(Value::String(self.string()?)),
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            _ => self.number().map(Value::Number),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, Status> {
        self.take();
        for &c in &word[1..] {
            if !self.consume(c) {
                return Err(self.error("Invalid value.", self.pos));
            }
        }
        Ok(value)
    }

    fn object(&mut self, depth: usize) -> Result<Value, Status> {
        self.take();
        self.skip_ws();
        let mut members = Vec::new();
        if self.consume(b'}') {
            return Ok(Value::Object(members));
        }
        loop {
            if self.peek() != b'"' {
                return Err(self.error("Missing a name for object member.", self.pos));
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.consume(b':') {
                return Err(self.error("Missing a colon after a name of object member.", self.pos));
            }
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                b',' => {
                    self.take();
                    self.skip_ws();
                }
                b'}' => {
                    self.take();
                    return Ok(Value::Object(members));
                }
                _ => {
                    return Err(
                        self.error("Missing a comma or '}' after an object member.", self.pos)
                    );
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Status> {
        self.take();
        self.skip_ws();
        let mut items = Vec::new();
        if self.consume(b']') {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                b',' => {
                    self.take();
                    self.skip_ws();
                }
                b']' => {
                    self.take();
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(
                        self.error("Missing a comma or ']' after an array element.", self.pos)
                    );
                }
            }
        }
    }

    fn hex4(&mut self, escape_at: usize) -> Result<u32, Status> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    return Err(
                        self.error("Incorrect hex digit after \\u escape in string.", escape_at)
                    );
                }
            };
            v = (v << 4) | u32::from(d);
            self.take();
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<Vec<u8>, Status> {
        self.take();
        let mut out = Vec::new();
        loop {
            let c = self.peek();
            if c == b'\\' {
                let escape_at = self.pos;
                self.take();
                let e = self.take();
                match e {
                    b'"' | b'\\' | b'/' => out.push(e),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let mut cp = self.hex4(escape_at)?;
                        if (0xD800..=0xDBFF).contains(&cp) {
                            if !(self.consume(b'\\') && self.consume(b'u')) {
                                return Err(self
                                    .error("The surrogate pair in string is invalid.", escape_at));
                            }
                            let low = self.hex4(escape_at)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return Err(self
                                    .error("The surrogate pair in string is invalid.", escape_at));
                            }
                            cp = (((cp - 0xD800) << 10) | (low - 0xDC00)) + 0x10000;
                        }
                        push_utf8(&mut out, cp);
                    }
                    _ => {
                        return Err(self.error("Invalid escape character in string.", escape_at));
                    }
                }
            } else if c == b'"' {
                self.take();
                return Ok(out);
            } else if c == 0 {
                return Err(self.error("Missing a closing quotation mark in string.", self.pos));
            } else if c < 0x20 {
                return Err(self.error("Invalid encoding in string.", self.pos));
            } else {
                out.push(c);
                self.take();
            }
        }
    }

    fn digits(&mut self) {
        while self.peek().is_ascii_digit() {
            self.take();
        }
    }

    fn number(&mut self) -> Result<Number, Status> {
        let start = self.pos;
        let minus = self.consume(b'-');
        let int_start = self.pos;
        match self.peek() {
            b'0' => {
                self.take();
            }
            b'1'..=b'9' => self.digits(),
            b'N' | b'I' => return self.nan_or_inf(minus),
            _ => return Err(self.error("Invalid value.", self.pos)),
        }
        let int_end = self.pos;
        let mut is_double = false;
        if self.consume(b'.') {
            if !self.peek().is_ascii_digit() {
                return Err(self.error("Miss fraction part in number.", self.pos));
            }
            self.digits();
            is_double = true;
        }
        if self.consume(b'e') || self.consume(b'E') {
            if !self.consume(b'+') {
                self.consume(b'-');
            }
            if !self.peek().is_ascii_digit() {
                return Err(self.error("Miss exponent in number.", self.pos));
            }
            self.digits();
            is_double = true;
        }
        if is_double && let Some(d) = short_decimal(minus, &self.b[int_start..self.pos]) {
            return Ok(Number::Double(d));
        }
        let text = std::str::from_utf8(&self.b[start..self.pos]).unwrap_or("0");
        if !is_double {
            let digits = std::str::from_utf8(&self.b[int_start..int_end]).unwrap_or("0");
            if let Ok(magnitude) = digits.parse::<u64>() {
                if !minus {
                    return Ok(match i64::try_from(magnitude) {
                        Ok(i) => Number::Int(i),
                        Err(_) => Number::Uint(magnitude),
                    });
                }
                if let Ok(i) = i64::try_from(-i128::from(magnitude)) {
                    return Ok(Number::Int(i));
                }
            }
        }
        match text.parse::<f64>() {
            Ok(d) if d.is_finite() => Ok(Number::Double(d)),
            _ => Err(self.error("Number too big to be stored in double.", start)),
        }
    }

    fn nan_or_inf(&mut self, minus: bool) -> Result<Number, Status> {
        if self.consume(b'N') {
            if self.consume(b'a') && self.consume(b'N') {
                return Ok(Number::Double(f64::NAN));
            }
        } else if self.consume(b'I') && self.consume(b'n') && self.consume(b'f') {
            if self.peek() == b'i' {
                for &c in b"inity" {
                    if !self.consume(c) {
                        return Err(self.error("Invalid value.", self.pos));
                    }
                }
            }
            let inf = if minus {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            return Ok(Number::Double(inf));
        }
        Err(self.error("Invalid value.", self.pos))
    }
}

/// `digits` (`123.456`: integer part, `.`, fraction; no exponent) as the nearest
/// double, when it has at most 15 digits in all; `None` otherwise (and for any other
/// text). Clinger's fast path: the digits as an integer (below 10^15 < 2^53) and
/// 10^(fraction length) (at most 10^14 ≤ 10^22) are both exact doubles, so their
/// IEEE quotient is the correctly rounded value, which is what `str::parse` returns.
fn short_decimal(minus: bool, digits: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut count = 0u32;
    let mut fraction: Option<u32> = None;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
                if let Some(f) = fraction.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            _ => return None,
        }
        if count > 15 {
            return None;
        }
    }
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let value = mantissa as f64 / POW10[fraction? as usize];
    Some(if minus { -value } else { value })
}

/// UTF-8 encoding of any code point below 0x110000, lone surrogates included (as
/// RapidJSON writes them).
fn push_utf8(out: &mut Vec<u8>, cp: u32) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else if cp < 0x10000 {
        out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
