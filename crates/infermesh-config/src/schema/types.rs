//! The value types of `mesh.yaml` as schema fragments (docs/config.md, "Value types"):
//! durations, sizes, addresses, header names, percentages and names, kept once under
//! `$defs` and referenced from every field that uses them.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::read::RESERVED_HEADERS;

/// humantime's units (`humantime::parse_duration`), longest first.
const DURATION_UNITS: &str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|\
minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|\
years|year|yrs|yr|y";

/// `{"$ref": "#/$defs/<name>"}`.
pub(crate) fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{name}") })
}

/// A list of `items`.
pub(crate) fn list(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// A list of at least one of `items`.
pub(crate) fn non_empty_list(items: Value) -> Value {
    json!({ "type": "array", "items": items, "minItems": 1 })
}

/// A whole number in `min..=max`.
pub(crate) fn uint(min: u64, max: u64) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max })
}

pub(crate) fn boolean() -> Value {
    json!({ "type": "boolean" })
}

/// Any string with a non-blank character (paths, ids, secrets).
pub(crate) fn text() -> Value {
    json!({ "type": "string", "pattern": "\\S" })
}

/// One of `values`, exactly as written.
pub(crate) fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

/// One of `values`, in any letter case (the reader folds case): the `enum` gives
/// editors the completions, the pattern accepts `allow` as well as `ALLOW`.
pub(crate) fn one_of_any_case(values: &[&str]) -> Value {
    json!({
        "type": "string",
        "anyOf": [{ "enum": values }, { "pattern": any_case(values) }],
    })
}

/// `^(?:[aA][bB]|...)$` for `values`.
fn any_case(values: &[&str]) -> String {
    let alternatives: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| match (c.to_ascii_lowercase(), c.to_ascii_uppercase()) {
                    (l, u) if l != u => format!("[{l}{u}]"),
                    _ if ".^$*+?()[]{}|\\/".contains(c) => format!("\\{c}"),
                    _ => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// A duration as the schema's `default`: `500ms`, `30s`, `10m`, `24h`, `7d`.
pub(crate) fn duration_text(d: Duration) -> Value {
    let s = d.as_secs();
    let text = match s {
        _ if d.subsec_nanos() != 0 => format!("{}ms", d.as_millis()),
        0 => "0s".to_owned(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    };
    json!(text)
}

/// A size as the schema's `default`: `64MiB`, `64KiB`, or bytes.
pub(crate) fn size_text(bytes: u64) -> Value {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return json!(format!("{}{unit}", bytes >> shift));
        }
    }
    json!(bytes)
}

/// The shared value types, for `$defs`.
pub(crate) fn defs() -> Map<String, Value> {
    let ip_port =
        "(?:[0-9]{1,3}(?:\\.[0-9]{1,3}){3}|\\[[0-9A-Fa-f:.]+(?:%[0-9A-Za-z]+)?\\]):[0-9]{1,5}";
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";
    let reserved: Vec<&str> = RESERVED_HEADERS.to_vec();
    let defs = json!({
        "duration": {
            "description": "A duration with a unit (humantime syntax): `500ms`, `2s`, `1m`, \
                `1h 30m`; longer than zero, at most 365 days.",
            "type": "string",
            "pattern": format!("^\\s*(?:[0-9]+(?:\\.[0-9]+)?\\s*(?:{DURATION_UNITS})\\s*)+$"),
        },
        "size": {
            "description": "A size: bytes (`65536`), or a number with `KiB`, `MiB` or `GiB` \
                (`64MiB`); at least 1.",
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^\\s*[0-9]{1,20}\\s*(?:B|KiB|MiB|GiB)?\\s*$" },
            ],
        },
        "socket_address": {
            "description": "A socket address, IP and port: `127.0.0.1:15006`, `[::1]:15006`; \
                port 0 is not allowed.",
            "type": "string",
            "pattern": format!("^\\s*{ip_port}\\s*$"),
        },
        "address": {
            "description": "A socket address (`ip:port`) or `host:port` with a DNS host name, \
                resolved again every `dns_refresh`.",
            "type": "string",
            "pattern": format!("^\\s*(?:{ip_port}|{label}(?:\\.{label})*\\.?:[0-9]{{1,5}})\\s*$"),
        },
        "header_name": {
            "description": "An HTTP header name, matched case-insensitively; connection-level \
                headers are refused.",
            "type": "string",
            "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
            "not": { "pattern": any_case(&reserved) },
        },
        "percent": {
            "description": "A percentage: a number from 0 to 100.",
            "type": "number",
            "minimum": 0,
            "maximum": 100,
        },
        "dns_label": {
            "description": "A DNS label: `a-z`, `0-9` and `-`, at most 63 characters, starting \
                and ending with a letter or digit.",
            "type": "string",
            "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        },
        "dns_subdomain": {
            "description": "A DNS subdomain: dot-separated DNS labels, at most 253 characters.",
            "type": "string",
            "maxLength": 253,
            "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$",
        },
        "model_name": {
            "description": "A TF Serving model name or version label: letters, digits, `_`, \
                `-` and `.`, at most 253 characters.",
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "pattern": "^[A-Za-z0-9_.-]+$",
            "not": { "pattern": "^\\.+$" },
        },
        "http_url": {
            "description": "An `http://` or `https://` URL.",
            "type": "string",
            "pattern": "^https?://[^/\\s]\\S*$",
        },
        "match_value": {
            "description": "An Istio string pattern: exact, `prefix*`, `*suffix` or `*`.",
            "type": "string",
            "pattern": "^(?:\\*|\\*[^*]+|[^*]+\\*?)$",
        },
    });
    match defs {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_written_as_in_the_docs() {
        assert_eq!(duration_text(Duration::from_secs(30)), json!("30s"));
        assert_eq!(duration_text(Duration::from_secs(600)), json!("10m"));
        assert_eq!(duration_text(Duration::from_secs(86_400)), json!("1d"));
        assert_eq!(duration_text(Duration::from_millis(1500)), json!("1500ms"));
        assert_eq!(size_text(64 << 20), json!("64MiB"));
        assert_eq!(size_text(1000), json!(1000));
    }

    #[test]
    fn any_case_matches_every_spelling() {
        assert_eq!(
            any_case(&["ALLOW", "te"]),
            "^(?:[aA][lL][lL][oO][wW]|[tT][eE])$"
        );
        assert_eq!(
            any_case(&["keep-alive", "1.3"]),
            "^(?:[kK][eE][eE][pP]-[aA][lL][iI][vV][eE]|1\\.3)$"
        );
    }
}
