//! The fast path for the common REST predict body: an object whose members are
//! `"instances"` or `"inputs"` (a number or a dense nested list of numbers) and, at
//! most once, `"signature_name"` (a string without escapes), read straight into
//! numbers without building a [`Value`](super::value::Value) tree.
//!
//! It only ever answers for bodies the general path accepts and decodes the same way:
//! anything else — other or repeated members, strings, objects, `null`, booleans,
//! escapes, empty or ragged lists, deep nesting, trailing bytes, values that do not fit
//! the signature — gives `None`, and the body takes the general path, which also
//! produces every error message. `predict_fast_tests.rs` checks the two agree on many
//! generated bodies.

use std::collections::BTreeMap;

use super::column::{Column, finish};
use super::parse::number_at;
use super::predict_request::RequestFormat;
use super::value::Number;
use crate::{Status, Tensor, TensorInfo};

/// Deeper lists take the general path (its own limit is far higher).
const MAX_DEPTH: usize = 32;

/// A body of the common shape, scanned.
pub(super) struct FastBody<'a> {
    /// The raw `signature_name` bytes; empty when absent.
    pub signature_name: &'a [u8],
    format: RequestFormat,
    /// The dense shape of the `instances` / `inputs` value (`[]` for a number).
    shape: Vec<usize>,
    /// Its numbers in row-major order, as the general parser reads them.
    numbers: Vec<Number>,
}

/// Scans `body`; `None` unless it has the common shape.
pub(super) fn scan(body: &[u8]) -> Option<FastBody<'_>> {
    let mut s = Scanner {
        b: body,
        pos: 0,
        shape: Vec::new(),
        rank: None,
        numbers: Vec::new(),
    };
    let mut signature_name = None;
    let mut format = None;
    s.ws();
    s.expect(b'{')?;
    s.ws();
    loop {
        let key = s.string()?;
        s.ws();
        s.expect(b':')?;
        s.ws();
        match key {
            b"signature_name" if signature_name.is_none() => signature_name = Some(s.string()?),
            b"instances" | b"inputs" if format.is_none() => {
                format = Some(if key == b"instances" {
                    if s.peek() != Some(b'[') {
                        return None;
                    }
                    RequestFormat::Row
                } else {
                    RequestFormat::Columnar
                });
                s.value(0)?;
            }
            _ => return None,
        }
        s.ws();
        match s.take()? {
            b',' => s.ws(),
            b'}' => break,
            _ => return None,
        }
    }
    s.ws();
    if s.pos != body.len() {
        return None;
    }
    let shape = s.shape.into_iter().collect::<Option<Vec<usize>>>()?;
    Some(FastBody {
        signature_name: signature_name.unwrap_or_default(),
        format: format?,
        shape,
        numbers: s.numbers,
    })
}

impl FastBody<'_> {
    /// The input tensors for a signature with these inputs; `None` unless it has
    /// exactly one input and every number fits its element type.
    pub(super) fn into_inputs(
        self,
        infos: &BTreeMap<String, TensorInfo>,
    ) -> Option<(RequestFormat, BTreeMap<String, Tensor>)> {
        let (name, info) = match (infos.len(), infos.iter().next()) {
            (1, Some(first)) => first,
            _ => return None,
        };
        let mut col = Column::with_capacity(info.dtype, self.numbers.len());
        for n in self.numbers {
            col.push_number(n)?;
        }
        let tensor: Result<Tensor, Status> = finish(col, self.shape);
        // One entry: an insert into an empty map, not `from`'s sort and bulk build.
        let mut inputs = BTreeMap::new();
        inputs.insert(name.clone(), tensor.ok()?);
        Some((self.format, inputs))
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    /// Per level, the length of the first list seen there (dense lists: all of them).
    shape: Vec<Option<usize>>,
    /// The level numbers sit at, once the first number is seen.
    rank: Option<usize>,
    numbers: Vec<Number>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn take(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.take()? == c).then_some(())
    }

    /// The same whitespace as the general parser.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A string without escapes or control characters: its raw bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.pos;
        let len = self.b[start..].iter().position(|&c| c == b'"')?;
        let b: &'a [u8] = self.b;
        let text = &b[start..start + len];
        if text.iter().any(|&c| c == b'\\' || c < 0x20) {
            return None;
        }
        self.pos = start + len + 1;
        Some(text)
    }

    /// A number, or a non-empty list whose length matches every other list at its
    /// level and whose items sit at the same depth as every other number.
    fn value(&mut self, level: usize) -> Option<()> {
        if self.peek()? != b'[' {
            if *self.rank.get_or_insert(level) != level {
                return None;
            }
            let (n, end) = number_at(self.b, self.pos)?;
            self.numbers.push(n);
            self.pos = end;
            return Some(());
        }
        if level >= MAX_DEPTH || self.rank.is_some_and(|rank| level >= rank) {
            return None;
        }
        if level == self.shape.len() {
            self.shape.push(None);
        }
        self.pos += 1;
        self.ws();
        let mut len = 0;
        loop {
            self.value(level + 1)?;
            len += 1;
            self.ws();
            match self.take()? {
                b',' => self.ws(),
                b']' => break,
                _ => return None,
            }
        }
        match self.shape[level] {
            None => self.shape[level] = Some(len),
            Some(first) if first == len => {}
            Some(_) => return None,
        }
        Some(())
    }
}

#[cfg(test)]
#[path = "predict_fast_tests.rs"]
mod tests;
