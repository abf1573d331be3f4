//! TF Serving REST routing: which paths are API paths, and what an API path asks for
//! (model, version choice, API), with TF Serving's regexes and error messages. Free of
//! any server so the proxy can route and authorize on the same parse.

use std::sync::LazyLock;

use percent_encoding::percent_decode_str;
use regex::Regex;

use crate::Status;
use crate::messages::malformed_request;
use crate::proto::tensorflow::serving::{ModelSpec, model_spec};

/// Which REST API a request calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestApi {
    Predict,
    Classify,
    Regress,
    /// `GET /v1/models/{m}[…]`
    Status,
    /// `GET /v1/models/{m}[…]/metadata`
    Metadata,
}

/// Which version of a model a request wants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionChoice {
    Latest,
    Version(i64),
    Label(String),
}

/// A parsed REST API path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestRequest {
    /// URL-decoded; empty only when it is an error (see [`parse_rest_path`]).
    pub model: String,
    pub version: VersionChoice,
    pub api: RestApi,
}

// `(?-u:\d)`: ASCII digits only, as in RE2.
static API_PATH: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)/v1/.*"));
static POST_PATH: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)/v1/models/([^/:]+)(?:(?:/versions/((?-u:\d)+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    )
});
static GET_PATH: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/((?-u:\d)+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    )
});

/// The name the model server uses for a parsed path.
pub type RestRoute = RestRequest;

/// Anchors a pattern for a full match, as RE2::FullMatch does.
fn compile(pattern: &str) -> Regex {
    match Regex::new(&format!("^(?:{pattern})$")) {
        Ok(re) => re,
        Err(e) => unreachable!("constant regex {pattern} does not compile: {e}"),
    }
}

/// Whether TF Serving treats the path as an API path (`(?i)/v1/.*`); other paths get
/// a plain 404 without a JSON body. `path` excludes the query string.
pub fn is_api_path(path: &str) -> bool {
    if path.is_ascii() {
        // `(?i)/v1/.*` on ASCII: the prefix, then anything but a line feed.
        return strip_prefix_ignore_ascii_case(path, "/v1/")
            .is_some_and(|rest| !rest.contains('\n'));
    }
    API_PATH.is_match(path)
}

/// `s` without `prefix`, compared ASCII case-insensitively. Inlined, like the
/// comparison below, so the constant prefix becomes a few word compares.
#[inline]
fn strip_prefix_ignore_ascii_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    eq_ignore_ascii_case(head, prefix).then(|| &s[prefix.len()..])
}

/// `a.eq_ignore_ascii_case(b)`, trying the exact match first: paths are nearly always
/// written in the case of the spelling here, and a byte comparison is a few word
/// compares where the case-folding loop goes byte by byte.
#[inline]
fn eq_ignore_ascii_case(a: &str, b: &str) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

/// The groups of [`POST_PATH`] (model, version, label, API) for an ASCII path, by hand:
/// the same full match as the regex, without running it. On ASCII text `(?i)` is plain
/// ASCII case folding (its only non-ASCII folds, like `ſ` for `s`, cannot occur), and the
/// pattern is deterministic: `[^/:]+` ends at the first `/` or `:`, and `/versions/` and
/// `/labels/` exclude each other.
fn post_groups_ascii(path: &str) -> Option<[Option<&str>; 4]> {
    debug_assert!(path.is_ascii());
    let rest = strip_prefix_ignore_ascii_case(path, "/v1/models/")?;
    let end = slash_or_colon(rest)?;
    if end == 0 {
        return None;
    }
    let model = &rest[..end];
    let mut rest = &rest[end..];
    let (mut version, mut label) = (None, None);
    if let Some(r) = strip_prefix_ignore_ascii_case(rest, "/versions/") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        version = Some(&r[..n]);
        rest = &r[n..];
    } else if let Some(r) = strip_prefix_ignore_ascii_case(rest, "/labels/") {
        let n = slash_or_colon(r).unwrap_or(r.len());
        if n == 0 {
            return None;
        }
        label = Some(&r[..n]);
        rest = &r[n..];
    }
    let api = rest.strip_prefix(':')?;
    ["classify", "regress", "predict"]
        .iter()
        .any(|word| eq_ignore_ascii_case(api, word))
        .then_some([Some(model), version, label, Some(api)])
}

/// The first `/` or `:` (a byte scan: on ASCII text the byte index is the char
/// index `str::find` gives).
fn slash_or_colon(s: &str) -> Option<usize> {
    s.bytes().position(|b| b == b'/' || b == b':')
}

/// The groups of [`POST_PATH`] by the regex itself.
fn post_groups_regex(path: &str) -> Option<[Option<&str>; 4]> {
    let c = POST_PATH.captures(path)?;
    let group = |i: usize| c.get(i).map(|m| m.as_str());
    Some([group(1), group(2), group(3), group(4)])
}

fn post_groups(path: &str) -> Option<[Option<&str>; 4]> {
    if path.is_ascii() {
        post_groups_ascii(path)
    } else {
        post_groups_regex(path)
    }
}

fn get_groups(path: &str) -> Option<[Option<&str>; 4]> {
    let c = GET_PATH.captures(path)?;
    let group = |i: usize| c.get(i).map(|m| m.as_str());
    Some([group(1), group(2), group(3), group(4)])
}

fn decode(part: &str, method: &str, path: &str) -> Result<String, Status> {
    if !part.contains('%') {
        // Nothing to decode (and `part` is already UTF-8): the usual model name.
        return Ok(part.to_string());
    }
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| malformed_request(method, path))
}

fn version_choice(
    version: Option<&str>,
    label: Option<&str>,
    method: &str,
    path: &str,
) -> Result<VersionChoice, Status> {
    if let Some(v) = version {
        return v.parse::<i64>().map(VersionChoice::Version).map_err(|_| {
            Status::invalid_argument(format!("Failed to convert version: {v} to numeric."))
        });
    }
    match label {
        Some(l) => Ok(VersionChoice::Label(decode(l, method, path)?)),
        None => Ok(VersionChoice::Latest),
    }
}

/// Parses an API path (`path` excludes the query string). Errors (all 400):
/// `Malformed request: POST /v1/foo` for anything that does not match (a version and a
/// label together never match), `Missing model name in request.` for `GET /v1/models`,
/// `Failed to convert version: N to numeric.` when the version overflows `i64`.
pub fn parse_rest_path(method: &str, path: &str) -> Result<RestRequest, Status> {
    let (groups, post) = match method {
        "POST" => (post_groups(path), true),
        "GET" => (get_groups(path), false),
        _ => return Err(malformed_request(method, path)),
    };
    let Some([model, version, label, api]) = groups else {
        return Err(malformed_request(method, path));
    };
    let version = version_choice(version, label, method, path)?;
    let model = decode(model.unwrap_or(""), method, path)?;
    let api = if post {
        match api {
            Some(a) if eq_ignore_ascii_case(a, "classify") => RestApi::Classify,
            Some(a) if eq_ignore_ascii_case(a, "regress") => RestApi::Regress,
            _ => RestApi::Predict,
        }
    } else {
        if model.is_empty() {
            return Err(Status::invalid_argument("Missing model name in request."));
        }
        if api.is_some() {
            RestApi::Metadata
        } else {
            RestApi::Status
        }
    };
    Ok(RestRequest {
        model,
        version,
        api,
    })
}

/// Routes a request: `Ok(None)` for non-API paths (answer a plain 404), otherwise
/// [`parse_rest_path`].
pub fn parse(method: &str, path: &str) -> Result<Option<RestRequest>, Status> {
    if !is_api_path(path) {
        return Ok(None);
    }
    parse_rest_path(method, path).map(Some)
}

impl RestRequest {
    /// The version number asked for, if any.
    pub fn version(&self) -> Option<i64> {
        match self.version {
            VersionChoice::Version(v) => Some(v),
            _ => None,
        }
    }

    /// The version label asked for, if any.
    pub fn label(&self) -> Option<&str> {
        match &self.version {
            VersionChoice::Label(l) => Some(l),
            _ => None,
        }
    }
}

impl VersionChoice {
    /// The choice a gRPC `ModelSpec` makes.
    pub fn from_model_spec(spec: &ModelSpec) -> VersionChoice {
        match &spec.version_choice {
            Some(model_spec::VersionChoice::Version(v)) => VersionChoice::Version(*v),
            Some(model_spec::VersionChoice::VersionLabel(l)) => VersionChoice::Label(l.clone()),
            None => VersionChoice::Latest,
        }
    }

    /// The `ModelSpec.version_choice` for this choice.
    pub fn to_model_spec_choice(&self) -> Option<model_spec::VersionChoice> {
        match self {
            VersionChoice::Latest => None,
            VersionChoice::Version(v) => Some(model_spec::VersionChoice::Version(*v)),
            VersionChoice::Label(l) => Some(model_spec::VersionChoice::VersionLabel(l.clone())),
        }
    }
}

#[cfg(test)]
#[path = "rest_path_tests.rs"]
mod tests;
