//! Reading typed values out of the positioned YAML tree while collecting every error
//! with its position and field path. Readers return `None` after recording an error,
//! so callers fall back to a default and keep checking the rest of the file.

use std::time::Duration;

use http::HeaderName;

use crate::error::{ConfigError, one_of, suggest};
use crate::yaml::{Node, Pos, Value};

/// Longest duration accepted anywhere (keeps `Instant + d` far from overflow).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Headers a route may not be keyed on: connection-level or rewritten by proxies.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The error collector for one file.
pub(crate) struct Cx {
    file: String,
    pub errors: Vec<ConfigError>,
}

impl Cx {
    pub fn new(file: String) -> Self {
        Cx {
            file,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, at: Pos, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: at.line,
            column: at.col,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Records "expected X, found Y" at `node`; always `None`.
    pub fn expected<T>(&mut self, node: &Node, path: &str, what: &str) -> Option<T> {
        let found = node.value.describe();
        self.error(node.at, path, format!("expected {what}, found {found}"));
        None
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A mapping whose keys were checked against the schema's field names.
pub(crate) struct Fields<'n> {
    pub at: Pos,
    pub path: String,
    entries: Vec<(&'n str, &'n Node)>,
    /// Known keys that an unknown key was reported as a likely typo of: their
    /// absence is not reported again as "missing".
    suggested: Vec<String>,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a mapping with exactly the keys in `known` (any may be absent):
    /// reports unknown keys (with the nearest known one), duplicates and non-text keys.
    pub fn read(cx: &mut Cx, node: &'n Node, path: &str, known: &[&str]) -> Option<Self> {
        let Value::Map(map) = &node.value else {
            return cx.expected(node, path, "a mapping");
        };
        let mut entries: Vec<(&'n str, &'n Node)> = Vec::new();
        let mut first_at: Vec<Pos> = Vec::new();
        let mut suggested = Vec::new();
        for (key, value) in map {
            let Value::Str(name) = &key.value else {
                cx.expected::<()>(key, path, "a field name");
                continue;
            };
            if !known.contains(&name.as_str()) {
                let msg = match (suggest(name, known.iter().copied()), known) {
                    (Some(s), _) => {
                        suggested.push(s.to_owned());
                        format!("unknown field `{name}`, did you mean `{s}`?")
                    }
                    (None, [only]) => format!("unknown field `{name}`, expected `{only}`"),
                    _ => format!(
                        "unknown field `{name}`, expected one of {}",
                        one_of(known.iter().copied())
                    ),
                };
                cx.error(key.at, path, msg);
                continue;
            }
            if let Some(i) = entries.iter().position(|(k, _)| k == name) {
                let first = first_at[i].line;
                cx.error(
                    key.at,
                    path,
                    format!("duplicate field `{name}` (first given on line {first})"),
                );
                continue;
            }
            entries.push((name.as_str(), value));
            first_at.push(key.at);
        }
        Some(Fields {
            at: node.at,
            path: path.to_owned(),
            entries,
            suggested,
        })
    }

    /// The value of `key`, if given (`key: ~` counts as not given).
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, v)| *k == key && !matches!(v.value, Value::Null))
            .map(|(_, v)| *v)
    }

    /// The field path of `key` inside this mapping.
    pub fn path_of(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// Reads an optional field with `read`; `None` when absent or invalid.
    pub fn opt<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = self.get(key)?;
        read(cx, node, &self.path_of(key))
    }

    /// Reads a required field; records "missing field" when absent.
    pub fn req<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        if self.get(key).is_none() {
            if !self.suggested.iter().any(|s| s == key) {
                cx.error(self.at, &self.path, format!("missing field `{key}`"));
            }
            return None;
        }
        self.opt(cx, key, read)
    }
}

/// The value of `key` in a mapping node, without checking anything.
pub(crate) fn lookup<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let is_key = |k: &Node| matches!(&k.value, Value::Str(s) if s == key);
    entries.iter().find(|(k, _)| is_key(k)).map(|(_, v)| v)
}

/// The items of a list.
pub(crate) fn list<'n>(cx: &mut Cx, node: &'n Node, path: &str) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => cx.expected(node, path, "a list"),
    }
}

pub(crate) fn string(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => cx.expected(node, path, "a string"),
    }
}

pub(crate) fn boolean(cx: &mut Cx, node: &Node, path: &str) -> Option<bool> {
    match node.value {
        Value::Bool(b) => Some(b),
        _ => cx.expected(node, path, "`true` or `false`"),
    }
}

/// A whole number in `min..=max`.
pub(crate) fn uint(min: u64, max: u64) -> impl Fn(&mut Cx, &Node, &str) -> Option<u64> {
    move |cx, node, path| {
        let Value::Int(i) = node.value else {
            return cx.expected(node, path, "a whole number");
        };
        match u64::try_from(i) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ if i < i128::from(min) => {
                cx.error(node.at, path, format!("must be at least {min}, not {i}"));
                None
            }
            _ => {
                cx.error(node.at, path, format!("must be at most {max}, not {i}"));
                None
            }
        }
    }
}

/// A whole number in `min..=max` that fits a `u32`.
pub(crate) fn uint32(min: u32, max: u32) -> impl Fn(&mut Cx, &Node, &str) -> Option<u32> {
    let read = uint(min.into(), max.into());
    move |cx, node, path| read(cx, node, path).and_then(|v| u32::try_from(v).ok())
}

/// A percentage: any number in `0..=100`; `0` itself only when `zero_ok`.
pub(crate) fn percent(cx: &mut Cx, node: &Node, path: &str, zero_ok: bool) -> Option<f64> {
    let p = match node.value {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        _ => return cx.expected(node, path, "a percentage (a number from 0 to 100)"),
    };
    let ok = if zero_ok {
        (0.0..=100.0).contains(&p)
    } else {
        p > 0.0 && p <= 100.0
    };
    if !ok {
        let range = if zero_ok {
            "from 0 to 100"
        } else {
            "above 0 and at most 100"
        };
        cx.error(node.at, path, format!("must be {range}, not {p}"));
        return None;
    }
    Some(p)
}

/// A positive duration such as `500ms`, `2s`, `1m` or `1h 30m`.
pub(crate) fn duration(cx: &mut Cx, node: &Node, path: &str) -> Option<Duration> {
    let Value::Str(text) = &node.value else {
        return cx.expected(
            node,
            path,
            "a duration with a unit, like `500ms`, `2s` or `1m`",
        );
    };
    let d = match humantime::parse_duration(text) {
        Ok(d) => d,
        Err(e) => {
            let why = match e {
                humantime::DurationError::UnknownUnit { unit, .. } if !unit.is_empty() => {
                    format!("unknown time unit {unit:?}")
                }
                humantime::DurationError::NumberOverflow => "the number is too large".into(),
                other => other.to_string(),
            };
            let msg = format!("invalid duration {text:?}: {why}; write e.g. `500ms`, `2s` or `1m`");
            cx.error(node.at, path, msg);
            return None;
        }
    };
    if d.is_zero() {
        cx.error(node.at, path, "must be longer than zero");
        return None;
    }
    if d > MAX_DURATION {
        cx.error(node.at, path, "must be at most 365 days");
        return None;
    }
    Some(d)
}

/// A byte size: a whole number, or one with a `KiB`, `MiB` or `GiB` suffix. At least 1.
pub(crate) fn bytes(cx: &mut Cx, node: &Node, path: &str) -> Option<u64> {
    let (n, unit) = match &node.value {
        Value::Int(i) => (*i, 1),
        Value::Str(s) => match parse_size(s) {
            Some(parsed) => parsed,
            None => {
                let msg =
                    format!("invalid size {s:?}: use bytes, or a number with KiB, MiB or GiB");
                cx.error(node.at, path, msg);
                return None;
            }
        },
        _ => return cx.expected(node, path, "a size in bytes (e.g. `65536` or `64MiB`)"),
    };
    if n < 1 {
        cx.error(node.at, path, format!("must be at least 1 byte, not {n}"));
        return None;
    }
    let total = n.checked_mul(unit).and_then(|t| u64::try_from(t).ok());
    if total.is_none() {
        cx.error(node.at, path, "is too large");
    }
    total
}

fn parse_size(s: &str) -> Option<(i128, i128)> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    Some((digits.parse().ok()?, unit))
}

/// An HTTP header name usable for routing (lower-cased).
pub(crate) fn header_name(cx: &mut Cx, node: &Node, path: &str) -> Option<HeaderName> {
    let text = string(cx, node, path)?;
    let Ok(name) = HeaderName::from_bytes(text.as_bytes()) else {
        let msg = format!("{text:?} is not a valid HTTP header name (letters, digits and `-`)");
        cx.error(node.at, path, msg);
        return None;
    };
    if RESERVED_HEADERS.contains(&name.as_str()) {
        let msg = format!("`{name}` is a connection-level header and cannot steer routing");
        cx.error(node.at, path, msg);
        return None;
    }
    Some(name)
}

/// What kind of name a [`name`] check applies.
#[derive(Clone, Copy)]
pub(crate) enum NameRule {
    /// RFC 1123 label: `a-z0-9-`, at most 63, starts and ends alphanumeric.
    DnsLabel,
    /// RFC 1123 subdomain: dot-separated labels, at most 253.
    DnsSubdomain,
    /// TF Serving model names and version labels: `A-Za-z0-9_.-`, at most 253.
    Model,
}

pub(crate) fn name(rule: NameRule) -> impl Fn(&mut Cx, &Node, &str) -> Option<String> {
    move |cx, node, path| {
        let text = string(cx, node, path)?;
        let problem = match rule {
            NameRule::DnsLabel => dns_label_problem(&text),
            NameRule::DnsSubdomain => dns_subdomain_problem(&text),
            NameRule::Model => model_name_problem(&text),
        };
        match problem {
            Some(p) => {
                cx.error(node.at, path, format!("invalid name {text:?}: {p}"));
                None
            }
            None => Some(text),
        }
    }
}

pub(crate) fn dns_label_problem(s: &str) -> Option<&'static str> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if s.is_empty() || s.len() > 63 {
        Some("must be 1 to 63 characters")
    } else if !s.chars().all(ok_char) {
        Some("use lower-case letters, digits and `-` only")
    } else if s.starts_with('-') || s.ends_with('-') {
        Some("must start and end with a letter or digit")
    } else {
        None
    }
}

pub(crate) fn dns_subdomain_problem(s: &str) -> Option<&'static str> {
    if s.len() > 253 {
        return Some("must be at most 253 characters");
    }
    if s.split('.').any(str::is_empty) {
        return Some("has an empty part between dots");
    }
    s.split('.').find_map(dns_label_problem)
}

fn model_name_problem(s: &str) -> Option<&'static str> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if s.is_empty() || s.len() > 253 {
        Some("must be 1 to 253 characters")
    } else if !s.chars().all(ok_char) {
        Some("use letters, digits, `_`, `-` and `.` only")
    } else if s.chars().all(|c| c == '.') {
        Some("`.` and `..` are not names")
    } else {
        None
    }
}
