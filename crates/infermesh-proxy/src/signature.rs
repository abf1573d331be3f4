//! The signature a TF Serving REST request body names (`"signature_name"`, a
//! top-level JSON string; absent means the default, `serving_default`), read only when
//! a policy tests signatures. The scan skips every other value without building it.
//!
//! Whatever the model server could read differently is reported as unknown, so
//! policies on signatures fail closed: a body that is not one JSON object, a
//! `signature_name` that is not a string, or one given twice (JSON parsers disagree
//! on which of two duplicate keys wins).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The signature of a REST body: `Some("")` for the default, `Some(name)`, or `None`
/// when it cannot be known for sure.
pub fn rest_signature(body: &[u8]) -> Option<String> {
    let Scan(found) = serde_json::from_slice(body).ok()?;
    Some(found.unwrap_or_default())
}

/// The `signature_name` of one JSON object, if it has one.
struct Scan(Option<String>);

impl<'de> de::Deserialize<'de> for Scan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scan, D::Error> {
        d.deserialize_map(ScanVisitor)
    }
}

struct ScanVisitor;

impl<'de> Visitor<'de> for ScanVisitor {
    type Value = Scan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "signature_name" {
                map.next_value::<IgnoredAny>()?;
            } else if found.is_some() {
                return Err(de::Error::custom("signature_name given twice"));
            } else {
                found = Some(map.next_value::<String>()?);
            }
        }
        Ok(Scan(found))
    }
}

#[cfg(test)]
mod tests {
    use super::rest_signature;

    #[test]
    fn the_top_level_signature_name_or_the_default() {
        let sig = |s: &str| rest_signature(s.as_bytes());
        assert_eq!(sig(r#"{"instances": [1.0]}"#).as_deref(), Some(""));
        assert_eq!(
            sig(r#"{"signature_name": "admin", "instances": [1]}"#).as_deref(),
            Some("admin")
        );
        assert_eq!(
            sig(r#"{"inputs": {"signature_name": "x"}, "signature_name": "y"}"#).as_deref(),
            Some("y")
        );
        assert_eq!(
            sig(r#"{"signature\u005fname": "escaped"}"#).as_deref(),
            Some("escaped")
        );
    }

    #[test]
    fn anything_ambiguous_is_unknown() {
        let sig = |s: &str| rest_signature(s.as_bytes());
        assert_eq!(
            sig(r#"{"signature_name": "a", "signature_name": "b"}"#),
            None
        );
        assert_eq!(sig(r#"{"signature_name": 1}"#), None);
        assert_eq!(sig(r#"{"signature_name": null}"#), None);
        assert_eq!(sig(r#"[{"signature_name": "a"}]"#), None);
        assert_eq!(sig(r#"{"signature_name": "a"} trailing"#), None);
        assert_eq!(sig(""), None);
    }
}
