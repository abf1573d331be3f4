//! Path normalization before any matching, as Istio documents it
//! (<https://istio.io/latest/docs/reference/config/security/normalization/>), and the
//! canonical form of TF Serving REST paths. The proxy must forward the path returned
//! here — the one that was authorized — never the raw one.
//!
//! In order:
//! 1. The query (`?…`) is split off; it is not matched and is forwarded as it came.
//! 2. Raw bytes outside visible ASCII (controls, spaces, non-ASCII) and `#` are refused.
//! 3. Percent escapes are decoded **once** (`%252e` stays `%252e`): unreserved
//!    characters (`A-Z a-z 0-9 - . _ ~`) are decoded, `%00` is refused, `%2F`/`%5C`
//!    follow [`EscapedSlashes`] (refused by default), every other escape is kept with
//!    upper-case hex digits. An invalid escape is refused.
//! 4. `\` becomes `/` (Istio `BASE`).
//! 5. Per segment, `;` parameters are removed (`/a;x=1/b` → `/a/b`, `..;/` → `..`).
//! 6. Empty segments are merged (`//` → `/`, Istio `MERGE_SLASHES`), and `.` and `..`
//!    segments are resolved (RFC 3986 §5.2.4); `..` never climbs above `/`.
//! 7. The fully decoded path must be UTF-8.
//!
//! For TF Serving API paths (`(?i)/v1/…`), the result is then parsed with TF
//! Serving's own, case-insensitive rules and rebuilt in canonical form
//! (`/V1/MODELS/m/VERSIONS/007:PREDICT` → `/v1/models/m/versions/7:predict`), so that
//! path policies see one spelling per model request.

use infermesh_config::EscapedSlashes;
use infermesh_tfserving::{
    RestApi, RestRequest, Status, VersionChoice, is_api_path, parse_rest_path,
};

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PathError {
    /// The path cannot be normalized safely: answer 400 (gRPC `INVALID_ARGUMENT`).
    #[error("invalid request path: {0}")]
    Invalid(&'static str),
    /// A TF Serving API path TF Serving itself refuses (its own status and message).
    #[error("{0:?}")]
    Rest(Status),
}

/// A normalized path and the query it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath {
    /// What policies match and what is forwarded.
    pub path: String,
    /// The raw query, without `?`.
    pub query: Option<String>,
}

/// A normalized REST request: the canonical path and the model request parsed from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedRequest {
    /// Canonical for API paths; forward this (plus the query).
    pub path: String,
    pub query: Option<String>,
    /// `None` for paths outside TF Serving's API (`/v1/…`).
    pub rest: Option<RestRequest>,
}

impl NormalizedPath {
    /// `path?query`, for the request URI to forward.
    pub fn path_and_query(&self) -> String {
        join(&self.path, self.query.as_deref())
    }
}

impl NormalizedRequest {
    /// `path?query`, for the request URI to forward.
    pub fn path_and_query(&self) -> String {
        join(&self.path, self.query.as_deref())
    }
}

fn join(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes a request target's path (`raw` is `path[?query]`, origin form).
pub fn normalize_path(raw: &str, escaped: EscapedSlashes) -> Result<NormalizedPath, PathError> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let visible = |s: &str| s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'#');
    if !visible(path) || !query.is_none_or(visible) {
        return Err(PathError::Invalid(
            "characters that must be percent-encoded, or a fragment",
        ));
    }
    if !path.starts_with(['/', '\\']) {
        return Err(PathError::Invalid("the path must start with `/`"));
    }
    let path = if is_normal(path) {
        // Nothing to decode, merge or resolve: the usual request.
        path.to_owned()
    } else {
        normalize_general(path, escaped)?
    };
    Ok(NormalizedPath {
        path,
        query: query.map(str::to_owned),
    })
}

/// Steps 3 to 6 on a visible-ASCII path that starts with `/` or `\\`.
fn normalize_general(path: &str, escaped: EscapedSlashes) -> Result<String, PathError> {
    let decoded = decode_once(path.as_bytes(), escaped)?;
    let merged = resolve_segments(&decoded);
    if !decodes_to_utf8(merged.as_bytes()) {
        return Err(PathError::Invalid("the path does not decode to UTF-8 text"));
    }
    Ok(merged)
}

/// Whether steps 3 to 6 leave a visible-ASCII path starting with `/` as it is: no
/// escape (`%`), no `\\`, no `;` parameters, no empty segment but the last (`//`),
/// no `.` or `..` segment. Checked in one pass, so the usual request skips the
/// allocations of the general path (a test compares the two on generated paths).
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    // Each segment, without its leading `/`; the last one may be empty (`/a/`).
    let mut segments = bytes[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let plain = seg.iter().all(|&b| !matches!(b, b'%' | b'\\' | b';'));
        let dots = matches!(seg, b"." | b"..");
        if !plain || dots || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Step 3 and 4: one pass of percent-decoding, `\` → `/`.
fn decode_once(path: &[u8], escaped: EscapedSlashes) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        if b == b'\\' {
            out.push('/');
            i += 1;
            continue;
        }
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::Invalid("an invalid percent escape"));
        };
        i += 3;
        let byte = h * 16 + l;
        match byte {
            0 => return Err(PathError::Invalid("an encoded NUL (%00)")),
            b'/' | b'\\' => match escaped {
                EscapedSlashes::Reject => {
                    return Err(PathError::Invalid("an encoded slash (%2F or %5C)"));
                }
                EscapedSlashes::DecodeAndMerge => out.push('/'),
                EscapedSlashes::Keep => out.push_str(if byte == b'/' { "%2F" } else { "%5C" }),
            },
            b if is_unreserved(b) => out.push(char::from(b)),
            b => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    Ok(out)
}

/// Steps 5 and 6 on a path that starts with `/`.
fn resolve_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for raw in path.split('/').skip(1) {
        let seg = raw.split(';').next().unwrap_or("");
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if segments.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// Whether every remaining escape decodes, with the rest, to UTF-8.
fn decodes_to_utf8(path: &[u8]) -> bool {
    if !path.contains(&b'%') {
        return true;
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        let escape = (b == b'%')
            .then(|| Some(hex(*path.get(i + 1)?)? * 16 + hex(*path.get(i + 2)?)?))
            .flatten();
        match escape {
            Some(v) => {
                bytes.push(v);
                i += 3;
            }
            None => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&bytes).is_ok()
}

/// Normalizes a REST request's path and, for TF Serving API paths, parses it with TF
/// Serving's rules and rebuilds it in canonical form.
pub fn normalize_rest(
    method: &str,
    raw: &str,
    escaped: EscapedSlashes,
) -> Result<NormalizedRequest, PathError> {
    let n = normalize_path(raw, escaped)?;
    if !is_api_path(&n.path) {
        return Ok(NormalizedRequest {
            path: n.path,
            query: n.query,
            rest: None,
        });
    }
    let rest = parse_rest_path(method, &n.path).map_err(PathError::Rest)?;
    Ok(NormalizedRequest {
        path: canonical_rest_path(&rest),
        query: n.query,
        rest: Some(rest),
    })
}

/// The canonical TF Serving path of a parsed REST request.
pub fn canonical_rest_path(r: &RestRequest) -> String {
    let mut p = String::with_capacity(64);
    p.push_str("/v1/models/");
    encode_into(&mut p, &r.model);
    match &r.version {
        VersionChoice::Latest => {}
        VersionChoice::Version(v) => {
            p.push_str("/versions/");
            p.push_str(itoa::Buffer::new().format(*v));
        }
        VersionChoice::Label(l) => {
            p.push_str("/labels/");
            encode_into(&mut p, l);
        }
    }
    p.push_str(match r.api {
        RestApi::Predict => ":predict",
        RestApi::Classify => ":classify",
        RestApi::Regress => ":regress",
        RestApi::Metadata => "/metadata",
        RestApi::Status => "",
    });
    p
}

/// Percent-encodes everything but unreserved characters (upper-case hex).
fn encode_into(out: &mut String, s: &str) {
    if s.bytes().all(is_unreserved) {
        // The usual model name or label: nothing to encode.
        out.push_str(s);
        return;
    }
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths made of segments that exercise every rule (escapes, `\\`, `;`, dots,
    /// empty segments), one to three segments long: wherever the one-pass check says
    /// a path is already normal, the general steps give it back unchanged.
    #[test]
    fn normal_paths_are_what_the_general_steps_make_of_them() {
        let parts = [
            "",
            ".",
            "..",
            "a",
            "v1",
            "models",
            "x.y",
            "...",
            "a;b",
            "%41",
            "%2F",
            "%2f",
            "a\\b",
            "half_plus_two:predict",
            "~-_",
            "%zz",
            "%C3%A9",
            "%FF",
        ];
        let mut checked = 0;
        let mut normal = 0;
        let mut paths = vec![String::from("/")];
        for depth in 1..=3 {
            let mut next = Vec::new();
            for p in paths.iter().filter(|p| p.matches('/').count() == depth) {
                for part in parts {
                    next.push(format!("{p}{part}/"));
                    next.push(format!("{p}{part}"));
                }
            }
            paths.extend(next);
        }
        for path in &paths {
            for escaped in [
                EscapedSlashes::Reject,
                EscapedSlashes::DecodeAndMerge,
                EscapedSlashes::Keep,
            ] {
                checked += 1;
                if is_normal(path) {
                    normal += 1;
                    assert_eq!(
                        normalize_general(path, escaped).as_deref(),
                        Ok(path.as_str()),
                        "{path}"
                    );
                }
            }
        }
        // Both kinds occur often: the check is neither always nor never true.
        assert!(
            normal > 1000 && checked > 3 * normal,
            "{normal} of {checked}"
        );
    }

    #[test]
    fn canonical_paths_encode_only_what_needs_it() {
        let rest = |model: &str, version| RestRequest {
            model: model.into(),
            version,
            api: RestApi::Predict,
        };
        assert_eq!(
            canonical_rest_path(&rest("half_plus_two", VersionChoice::Version(123))),
            "/v1/models/half_plus_two/versions/123:predict"
        );
        assert_eq!(
            canonical_rest_path(&rest("a b/é", VersionChoice::Label("x y".into()))),
            "/v1/models/a%20b%2F%C3%A9/labels/x%20y:predict"
        );
        assert_eq!(
            canonical_rest_path(&rest("m", VersionChoice::Version(-1))),
            "/v1/models/m/versions/-1:predict"
        );
    }
}
