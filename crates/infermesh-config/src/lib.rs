//! The `mesh.yaml` intent file: its schema, validation with errors that name file,
//! line and field, and the compiled immutable structures ([`model`]) the proxy reads.
//!
//! ```text
//! text ──serde-saphyr──▶ positioned YAML tree (yaml) ──schema readers──▶ MeshConfig
//!                                                      (mesh, models, addr, read)
//! ```
//!
//! Every problem is collected as a [`ConfigError`]; only YAML syntax errors stop early.
//! [`ConfigErrors`] prints one per line:
//!
//! ```text
//! mesh.yaml:12:7: models[0].route: unknown field `splt`, did you mean `split`?
//! ```
//!
//! The schema and its defaults are documented in `docs/config.md`.
//! [`json_schema`] builds the file's JSON Schema from the same field lists the readers
//! check with, for editors (`infermesh schema`, `docs/mesh.schema.json`).
#![forbid(unsafe_code)]

mod addr;
mod audit;
pub mod conditions;
mod dev_issuer;
mod error;
mod issuers;
mod istio;
mod istio_apply;
mod istio_peer;
mod istio_policy;
mod istio_routing;
mod istio_vs;
mod mesh;
pub mod model;
mod models;
pub mod mtls;
mod policies;
mod read;
mod schema;
pub mod security;
pub mod telemetry;
mod yaml;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use audit::{AuditConfig, AuditDurability, AuditSink, DEFAULT_AUDIT_DIR, RecordAllows};
pub use conditions::{API_NAMES, ConditionKey, IpBlock};
pub use error::{ConfigError, ConfigErrors};
pub use istio::import_istio;
pub use istio_policy::{ANNOTATION as POLICIES_ANNOTATION, coarse, uses_model_operations};
pub use model::*;
pub use mtls::{CaSource, GatewayTls, IdentityConfig, MtlsMode, TlsVersion};
pub use schema::{json_schema, json_schema_text};
pub use security::*;

/// Parses and validates a mesh file's text. `source` names the file in errors and is
/// where relative paths in it (e.g. `model_server.model_config_file`) start from.
pub fn parse(text: &str, source: &Path) -> Result<MeshConfig, ConfigErrors> {
    let file = source.display().to_string();
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            return Err(ConfigErrors::one(ConfigError {
                file,
                line: e.at.line,
                column: e.at.col,
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
            }));
        }
    };
    let mut cx = read::Cx::new(file);
    let config = mesh::mesh(&mut cx, &root, source);
    match config {
        Some(config) if cx.errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors::new(cx.errors)),
    }
}

/// Reads and validates a mesh file.
pub fn load(path: &Path) -> Result<MeshConfig, ConfigErrors> {
    let file = path.display().to_string();
    let error = |line, column, message: String| {
        ConfigErrors::one(ConfigError {
            file: file.clone(),
            line,
            column,
            path: String::new(),
            message,
        })
    };
    let bytes = std::fs::read(path).map_err(|e| error(0, 0, format!("cannot read: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(text) => parse(&text, path),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let valid = String::from_utf8_lossy(valid);
            let line = valid.matches('\n').count() as u64 + 1;
            let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
            Err(error(line, column, "the file is not UTF-8 text".into()))
        }
    }
}

/// The SHA-256 of a mesh file's text, lower-case hex: identifies the configuration
/// in audit records and on the admin endpoint.
pub fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
