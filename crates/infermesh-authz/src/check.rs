//! The request line of `infermesh policy check --request '…'`, REST or gRPC, turned
//! into the same model request the proxy would authorize:
//!
//! ```text
//! POST /v1/models/half_plus_two/versions/2:predict [signature=NAME]
//! GET /v1/models/half_plus_two/metadata
//! grpc Predict half_plus_two[/versions/2 | /labels/canary] [signature=NAME]
//! grpc /tensorflow.serving.ModelService/GetModelStatus half_plus_two
//! ```
//!
//! REST bodies are not given, so a REST request's signature is unknown unless
//! `signature=` names it; a gRPC request without `signature=` uses the default.

use infermesh_config::EscapedSlashes;
use infermesh_tfserving::VersionChoice;

use crate::normalize::normalize_rest;
use crate::request::{Api, AuthzRequest, ModelOp};

/// A parsed request line (owned, so `policy check` can build an [`AuthzRequest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRequest {
    pub grpc: bool,
    pub method: String,
    /// Normalized (canonical for TF Serving API paths); the gRPC method path for gRPC.
    pub path: String,
    pub model: Option<CheckModel>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckModel {
    pub name: String,
    pub version: Option<i64>,
    pub label: Option<String>,
    pub signature: Option<String>,
    pub api: Api,
}

const GRPC_METHODS: &[(&str, Api)] = &[
    ("Predict", Api::Predict),
    ("Classify", Api::Classify),
    ("Regress", Api::Regress),
    ("MultiInference", Api::MultiInference),
    ("GetModelMetadata", Api::Metadata),
    ("GetModelStatus", Api::Status),
];

impl CheckRequest {
    /// Parses a request line; the error says what is wrong.
    pub fn parse(line: &str, escaped: EscapedSlashes) -> Result<CheckRequest, String> {
        let mut words = line.split_whitespace();
        let first = words
            .next()
            .ok_or("an empty request: write e.g. `POST /v1/models/m:predict`")?;
        let target = words
            .next()
            .ok_or("the request needs a path (or a gRPC method)")?;
        let mut rest: Vec<&str> = words.collect();
        let signature = rest
            .iter()
            .position(|w| w.starts_with("signature="))
            .map(|i| rest.remove(i).trim_start_matches("signature=").to_owned());
        if first.eq_ignore_ascii_case("grpc") {
            let [model] = rest.as_slice() else {
                return Err(
                    "a gRPC request names a method and a model: `grpc Predict m[/versions/2]`"
                        .into(),
                );
            };
            return grpc(target, model, signature);
        }
        if let Some(extra) = rest.first() {
            return Err(format!("unexpected {extra:?} after the path"));
        }
        let n = normalize_rest(first, target, escaped).map_err(|e| e.to_string())?;
        let model = n.rest.map(|r| CheckModel {
            version: r.version(),
            label: r.label().map(str::to_owned),
            api: Api::from_rest(r.api),
            name: r.model,
            signature,
        });
        Ok(CheckRequest {
            grpc: false,
            method: first.to_owned(),
            path: n.path,
            model,
        })
    }

    /// The request to authorize; identity fields come from `base`.
    pub fn authz<'a>(&'a self, base: AuthzRequest<'a>) -> AuthzRequest<'a> {
        AuthzRequest {
            method: &self.method,
            path: &self.path,
            model: self.model.as_ref().map(|m| ModelOp {
                name: &m.name,
                version: m.version,
                label: m.label.as_deref(),
                signature: m.signature.as_deref(),
                api: m.api,
            }),
            ..base
        }
    }
}

fn grpc(method: &str, model: &str, signature: Option<String>) -> Result<CheckRequest, String> {
    let api = GRPC_METHODS
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, api)| *api)
        .or_else(|| Api::from_grpc_path(method))
        .ok_or_else(|| {
            let names: Vec<&str> = GRPC_METHODS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown gRPC method {method:?}, expected one of {}",
                names.join(", ")
            )
        })?;
    let (name, choice) = match model.split_once('/') {
        None => (model, VersionChoice::Latest),
        Some((name, spec)) => match spec.split_once('/') {
            Some(("versions", v)) => (
                name,
                VersionChoice::Version(v.parse().map_err(|_| format!("invalid version {v:?}"))?),
            ),
            Some(("labels", l)) if !l.is_empty() => (name, VersionChoice::Label(l.to_owned())),
            _ => {
                return Err(format!(
                    "write the model as `m`, `m/versions/N` or `m/labels/L`, not {model:?}"
                ));
            }
        },
    };
    if name.is_empty() {
        return Err("the model name is empty".into());
    }
    Ok(CheckRequest {
        grpc: true,
        method: "POST".into(),
        path: api.grpc_path().into(),
        model: Some(CheckModel {
            name: name.to_owned(),
            version: match choice {
                VersionChoice::Version(v) => Some(v),
                _ => None,
            },
            label: match choice {
                VersionChoice::Label(l) => Some(l),
                _ => None,
            },
            signature: Some(signature.unwrap_or_default()),
            api,
        }),
    })
}
