//! YAML text → a tree of positioned nodes. `serde-saphyr` does the parsing (panic-free,
//! with budgets against alias bombs and deep nesting); this module only keeps each
//! node's line and column so every later error can point at it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Options, Spanned, UserMessageFormatter};

/// A 1-based line and column (in characters); 0:0 when unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: u64,
    pub col: u64,
}

/// One YAML node and where it starts.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub at: Pos,
    pub value: Value,
}

/// YAML 1.2 core-schema values (`on`/`yes` stay strings).
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept so they can be reported.
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error (or a document the parser refuses, e.g. too deeply nested).
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub at: Pos,
    pub message: String,
}

/// Parses one YAML document.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    serde_saphyr::from_str_with_options::<Spanned<Value>>(text, options())
        .map(Node::from)
        .map_err(syntax_error)
}

/// Parses every document of a multi-document stream (`---` separated); empty
/// documents are skipped.
pub(crate) fn parse_multi(text: &str) -> Result<Vec<Node>, SyntaxError> {
    serde_saphyr::from_multiple_with_options::<Spanned<Value>>(text, options())
        .map(|docs| docs.into_iter().map(Node::from).collect())
        .map_err(syntax_error)
}

fn options() -> Options {
    let mut options = Options::default();
    // YAML 1.2 booleans only: `on: [connect-failure]` is a key named "on".
    options.strict_booleans = true;
    // Duplicates reach us, so they are reported with their field path.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    options
}

fn syntax_error(e: serde_saphyr::Error) -> SyntaxError {
    let at = e.location().map_or(Pos { line: 0, col: 0 }, |l| Pos {
        line: l.line(),
        col: l.column(),
    });
    let raw = UserMessageFormatter.format_message(e.without_snippet());
    let message: String = raw.chars().filter(|c| !c.is_control()).collect();
    SyntaxError { at, message }
}

impl From<Spanned<Value>> for Node {
    fn from(s: Spanned<Value>) -> Self {
        Node {
            at: Pos {
                line: s.referenced.line(),
                col: s.referenced.column(),
            },
            value: s.value,
        }
    }
}

impl Value {
    /// How the value is named in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "nothing".into(),
            Value::Bool(b) => format!("boolean `{b}`"),
            Value::Int(i) => format!("integer `{i}`"),
            Value::Float(f) => format!("number `{f}`"),
            Value::Str(s) => format!("string {s:?}"),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }

    /// The text of a scalar, for keys that may be written as numbers (`1: 90`).
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Int(u.into()))
    }

    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        Ok(Value::Int(i))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node::from(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((Node::from(key), Node::from(value)));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_yaml12_scalars() {
        let root = parse("a: 1\nb: [on, 2s, -3, 0.5, ~]\n").unwrap();
        let Value::Map(entries) = root.value else {
            panic!("not a map")
        };
        let (key, seq) = &entries[1];
        assert_eq!(key.at, Pos { line: 2, col: 1 });
        let Value::Seq(items) = &seq.value else {
            panic!("not a seq")
        };
        let kinds: Vec<String> = items.iter().map(|n| n.value.describe()).collect();
        assert_eq!(
            kinds,
            [
                "string \"on\"",
                "string \"2s\"",
                "integer `-3`",
                "number `0.5`",
                "nothing"
            ]
        );
        assert_eq!(items[1].at, Pos { line: 2, col: 9 });
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(e.at, Pos { line: 3, col: 2 });
        assert!(!e.message.is_empty());
    }

    #[test]
    fn keeps_duplicate_keys() {
        let root = parse("a: 1\na: 2\n").unwrap();
        let Value::Map(entries) = root.value else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
    }
}
