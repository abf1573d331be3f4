//! Stage 2 of the pipeline: what model request is this? REST paths are first
//! normalized (`infermesh_authz::normalize_rest`: percent-decoding, `..`, `//`, `;`,
//! escapes, then TF Serving's own, case-insensitive path rules) into one canonical
//! path, which is what policies match and what is forwarded — the raw path never
//! goes upstream. gRPC requests are matched by their exact method path, and their
//! model is read from the `ModelSpec` at the front of the first message
//! ([`crate::grpc`]); the rest of the call is guarded as it streams: one message, one
//! `ModelSpec` ([`crate::grpc_scan`]).
//! The result is a typed [`ModelRequest`], put into the request extensions for every
//! later stage, plus what is needed to rewrite the request to another version.

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, header};
use infermesh_authz::{PathError, normalize_rest};
use infermesh_config::EscapedSlashes;
pub use infermesh_tfserving::Api;
use infermesh_tfserving::proto::tensorflow::serving::ModelSpec;
use infermesh_tfserving::{Status, VersionChoice};

use crate::body::RequestBody;
use crate::error::Failure;
use crate::grpc::{self, Field1, Locate, Located};
use crate::grpc_scan::StreamGuard;

/// The wire protocol of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TF Serving REST (JSON over HTTP/1.1 or HTTP/2).
    Rest,
    /// TF Serving gRPC (`content-type: application/grpc*`).
    Grpc,
}

/// The model request, parsed once; later stages read it from the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRequest {
    pub protocol: Protocol,
    pub model: String,
    /// What the client asked for (before routing).
    pub version: VersionChoice,
    pub api: Api,
    /// gRPC `ModelSpec.signature_name` (empty: default; `None` when MultiInference
    /// tasks name different ones); REST carries it in the body (read by the
    /// authorize stage when policies need it).
    pub signature: Option<String>,
}

/// A parsed request and what is needed to rewrite it to a chosen version.
#[derive(Debug)]
pub struct Inspected {
    pub model: ModelRequest,
    /// What policies match: the normalized, canonical REST path (no query), or the
    /// gRPC method path as it came (one of the exact method names).
    pub path: String,
    /// What is forwarded: the canonical REST path plus the query as it came, or the
    /// gRPC request target as it came.
    pub path_and_query: String,
    rewrite: Rewrite,
}

#[derive(Debug)]
enum Rewrite {
    /// Replace `path_and_query[range]` (empty or a `/versions/N` / `/labels/L`
    /// segment).
    RestPath(std::ops::Range<usize>),
    /// Replace field 1 of the first gRPC message.
    Grpc(Located),
}

impl ModelRequest {
    /// The version number the request names itself (not a label, not routed).
    pub fn named_version(&self) -> Option<i64> {
        match self.version {
            VersionChoice::Version(v) => Some(v),
            _ => None,
        }
    }

    /// The label the request names itself.
    pub fn named_label(&self) -> Option<&str> {
        match &self.version {
            VersionChoice::Label(l) => Some(l),
            _ => None,
        }
    }
}

impl Protocol {
    pub fn of(headers: &HeaderMap) -> Protocol {
        let grpc = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"));
        if grpc { Protocol::Grpc } else { Protocol::Rest }
    }
}

/// Parses the model request. REST reads nothing of the body; gRPC reads the frame
/// header and field 1 of the first message (all of that message if field 1 is not
/// first), at most `max_body` bytes, and returns the body guarded: the rest must
/// complete that one message without another field 1, or it is cut off.
pub async fn inspect(
    method: &Method,
    uri: &Uri,
    protocol: Protocol,
    body: RequestBody,
    max_body: u64,
    escaped: EscapedSlashes,
) -> Result<(Inspected, RequestBody), Failure> {
    match protocol {
        Protocol::Rest => {
            let raw = uri.path_and_query().map_or("/", |pq| pq.as_str());
            Ok((inspect_rest(method, raw, escaped)?, body))
        }
        Protocol::Grpc => inspect_grpc(method, uri, body, max_body).await,
    }
}

/// Normalizes `raw` (`path[?query]`) and parses the canonical path; paths that cannot
/// be normalized are refused (400), paths outside the API get a plain 404.
fn inspect_rest(method: &Method, raw: &str, escaped: EscapedSlashes) -> Result<Inspected, Failure> {
    let normalized = normalize_rest(method.as_str(), raw, escaped).map_err(|e| match e {
        PathError::Invalid(_) => Failure::InvalidPath(e.to_string()),
        PathError::Rest(status) => Failure::Request(status),
    })?;
    let path_and_query = normalized.path_and_query();
    let parsed = normalized.rest.ok_or(Failure::NoRoute)?;
    let model = ModelRequest {
        protocol: Protocol::Rest,
        model: parsed.model,
        version: parsed.version,
        api: Api::from_rest(parsed.api),
        signature: None,
    };
    Ok(Inspected {
        model,
        rewrite: Rewrite::RestPath(version_segment(&normalized.path)),
        path: normalized.path,
        path_and_query,
    })
}

/// The byte range of the version or label segment after the model name in a
/// canonical path (`/v1/models/{name}[/versions/N|/labels/L]...`); empty at the end
/// of the name when there is none.
fn version_segment(path: &str) -> std::ops::Range<usize> {
    const PREFIX: usize = "/v1/models/".len();
    let segment_end = |from: usize| {
        path[from..]
            .find(['/', ':'])
            .map_or(path.len(), |i| from + i)
    };
    let name_end = segment_end(PREFIX.min(path.len()));
    let rest = path[name_end..].to_ascii_lowercase();
    for keyword in ["/versions/", "/labels/"] {
        if rest.starts_with(keyword) {
            return name_end..segment_end(name_end + keyword.len());
        }
    }
    name_end..name_end
}

async fn inspect_grpc(
    method: &Method,
    uri: &Uri,
    mut body: RequestBody,
    max_body: u64,
) -> Result<(Inspected, RequestBody), Failure> {
    let path = uri.path();
    let Some(api) = Api::from_grpc_path(path) else {
        return Err(Failure::Request(Status::unimplemented(format!(
            "Method not found: {path}"
        ))));
    };
    if method != Method::POST {
        return Err(Failure::Request(Status::invalid_argument(
            "gRPC requests must use POST",
        )));
    }
    let kind = match api {
        Api::MultiInference => Field1::Tasks,
        _ => Field1::ModelSpec,
    };
    let records = loop {
        match grpc::locate(body.head(), kind).map_err(Failure::Request)? {
            Locate::Found(records) => break records,
            Locate::Need(n) if n as u64 > max_body => {
                return Err(Failure::BodyTooLarge { limit: max_body });
            }
            Locate::Need(_) if body.is_complete() => {
                return Err(Failure::Request(Status::invalid_argument(
                    "Malformed gRPC request: the stream ended inside the first message",
                )));
            }
            Locate::Need(n) => body = body.read_up_to(n).await.map_err(Failure::client_body)?.0,
        }
    };
    let located = grpc::decode(body.head(), records, kind).map_err(Failure::Request)?;
    let mut guard = StreamGuard::new(kind);
    guard.feed(body.head()).map_err(Failure::Request)?;
    if body.is_complete() {
        guard.finish().map_err(Failure::Request)?;
    }
    let body = body.guarded(guard);
    let spec = &located.spec;
    let model = ModelRequest {
        protocol: Protocol::Grpc,
        model: spec.name.clone(),
        version: VersionChoice::from_model_spec(spec),
        api,
        signature: grpc_signature(&located),
    };
    Ok((
        Inspected {
            model,
            path: path.to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or(path, |pq| pq.as_str())
                .to_owned(),
            rewrite: Rewrite::Grpc(located),
        },
        body,
    ))
}

/// The signature a gRPC request names (empty: the default). MultiInference tasks
/// agree on model and version but each names its own signature: when they differ,
/// the signature is not one thing, and policies testing signatures fail closed.
fn grpc_signature(located: &Located) -> Option<String> {
    let canonical = |s: &str| if s.is_empty() { "serving_default" } else { s }.to_owned();
    let name = canonical(&located.spec.signature_name);
    let differs = located
        .tasks
        .iter()
        .any(|t| canonical(t.model_spec.as_ref().map_or("", |s| &s.signature_name)) != name);
    (!differs).then_some(name)
}

impl Inspected {
    /// Points the request at `version`: the REST path gets `/versions/N` (replacing
    /// any label), the gRPC `ModelSpec` gets `version = N` (frame length fixed).
    /// Returns the new path and query and body; `body` is what [`inspect`] returned.
    pub fn rewrite(
        &self,
        body: RequestBody,
        version: i64,
    ) -> Result<(String, RequestBody), Failure> {
        let path_and_query = self.path_and_query.as_str();
        match &self.rewrite {
            Rewrite::RestPath(range) => {
                let mut out = String::with_capacity(path_and_query.len() + 24);
                out.push_str(&path_and_query[..range.start]);
                out.push_str(&format!("/versions/{version}"));
                out.push_str(&path_and_query[range.end..]);
                Ok((out, body))
            }
            Rewrite::Grpc(located) => {
                let spec = ModelSpec {
                    version_choice: VersionChoice::Version(version).to_model_spec_choice(),
                    ..located.spec.clone()
                };
                let head: Bytes = located
                    .rewrite(body.head(), &spec)
                    .map_err(Failure::Request)?;
                Ok((path_and_query.to_owned(), body.with_head(head)))
            }
        }
    }
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
