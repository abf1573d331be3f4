//! Stage 2 of the pipeline: what model request is this? REST requests are read from
//! the path with TF Serving's own rules (`infermesh_tfserving::rest_path`); gRPC
//! requests from the `ModelSpec` at the front of the first message ([`crate::grpc`]),
//! and the rest of the call is guarded as it streams: one message, one `ModelSpec`
//! ([`crate::grpc_scan`]).
//! The result is a typed [`ModelRequest`], put into the request extensions for every
//! later stage, plus what is needed to rewrite the request to another version.

use bytes::Bytes;
use http::{HeaderMap, Method, header};
use infermesh_tfserving::proto::tensorflow::serving::ModelSpec;
use infermesh_tfserving::{RestApi, Status, VersionChoice, rest_path};

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

/// Which TF Serving API a request calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    Predict,
    Classify,
    Regress,
    MultiInference,
    Metadata,
    Status,
}

/// The model request, parsed once; later stages read it from the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRequest {
    pub protocol: Protocol,
    pub model: String,
    /// What the client asked for (before routing).
    pub version: VersionChoice,
    pub api: Api,
    /// gRPC `ModelSpec.signature_name` (empty: default); REST carries it in the body.
    pub signature: Option<String>,
}

/// A parsed request and what is needed to rewrite it to a chosen version.
#[derive(Debug)]
pub struct Inspected {
    pub model: ModelRequest,
    rewrite: Rewrite,
}

#[derive(Debug)]
enum Rewrite {
    /// Replace `path[range]` (empty or a `/versions/N` / `/labels/L` segment).
    RestPath(std::ops::Range<usize>),
    /// Replace field 1 of the first gRPC message.
    Grpc(Located),
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

impl Api {
    /// Whether the API runs the model (candidates for version splits and mirroring).
    pub fn is_inference(self) -> bool {
        !matches!(self, Api::Metadata | Api::Status)
    }

    fn of_grpc_path(path: &str) -> Option<Api> {
        Some(match path {
            "/tensorflow.serving.PredictionService/Predict" => Api::Predict,
            "/tensorflow.serving.PredictionService/Classify" => Api::Classify,
            "/tensorflow.serving.PredictionService/Regress" => Api::Regress,
            "/tensorflow.serving.PredictionService/MultiInference" => Api::MultiInference,
            "/tensorflow.serving.PredictionService/GetModelMetadata" => Api::Metadata,
            "/tensorflow.serving.ModelService/GetModelStatus" => Api::Status,
            _ => return None,
        })
    }

    fn of_rest(api: RestApi) -> Api {
        match api {
            RestApi::Predict => Api::Predict,
            RestApi::Classify => Api::Classify,
            RestApi::Regress => Api::Regress,
            RestApi::Status => Api::Status,
            RestApi::Metadata => Api::Metadata,
        }
    }
}

/// Parses the model request. REST reads nothing of the body; gRPC reads the frame
/// header and field 1 of the first message (all of that message if field 1 is not
/// first), at most `max_body` bytes, and returns the body guarded: the rest must
/// complete that one message without another field 1, or it is cut off.
pub async fn inspect(
    method: &Method,
    path: &str,
    protocol: Protocol,
    body: RequestBody,
    max_body: u64,
) -> Result<(Inspected, RequestBody), Failure> {
    match protocol {
        Protocol::Rest => Ok((inspect_rest(method, path)?, body)),
        Protocol::Grpc => inspect_grpc(method, path, body, max_body).await,
    }
}

fn inspect_rest(method: &Method, path: &str) -> Result<Inspected, Failure> {
    let parsed = rest_path::parse(method.as_str(), path)
        .map_err(Failure::Request)?
        .ok_or(Failure::NoRoute)?;
    let model = ModelRequest {
        protocol: Protocol::Rest,
        model: parsed.model,
        version: parsed.version,
        api: Api::of_rest(parsed.api),
        signature: None,
    };
    Ok(Inspected {
        model,
        rewrite: Rewrite::RestPath(version_segment(path)),
    })
}

/// The byte range of the version or label segment after the model name in a path
/// `rest_path` accepted (`/v1/models/{name}[/versions/N|/labels/L]...`); empty at the
/// end of the name when there is none.
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
    path: &str,
    mut body: RequestBody,
    max_body: u64,
) -> Result<(Inspected, RequestBody), Failure> {
    let Some(api) = Api::of_grpc_path(path) else {
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
        signature: Some(spec.signature_name.clone()),
    };
    Ok((
        Inspected {
            model,
            rewrite: Rewrite::Grpc(located),
        },
        body,
    ))
}

impl Inspected {
    /// Points the request at `version`: the REST path gets `/versions/N` (replacing
    /// any label), the gRPC `ModelSpec` gets `version = N` (frame length fixed).
    /// Returns the new path and body; `path` and `body` are what [`inspect`] saw.
    pub fn rewrite(
        &self,
        path_and_query: &str,
        body: RequestBody,
        version: i64,
    ) -> Result<(String, RequestBody), Failure> {
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
