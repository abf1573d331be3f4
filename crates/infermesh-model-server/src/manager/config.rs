//! The typed model configuration (`ModelConfig`, `VersionPolicy`) and its one parser:
//! TF Serving's `--model_config_file` text-proto (`tensorflow.serving.ModelServerConfig`),
//! read with `prost-reflect` against the crate's descriptor set, then validated once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use infermesh_tfserving::proto::tensorflow::serving as pb;
use pb::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
use prost_reflect::{DescriptorPool, DynamicMessage};

/// The full name of the config file's top-level message.
const SERVER_CONFIG_MESSAGE: &str = "tensorflow.serving.ModelServerConfig";

/// The platform assumed when a config leaves `model_platform` empty.
pub const DEFAULT_PLATFORM: &str = "tensorflow";

/// One served model: where its versions live and which of them to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    /// The directory holding the numbered version directories (absolute once parsed).
    pub base_path: PathBuf,
    /// `model_platform` (e.g. `tensorflow`); the loader decides what it supports.
    pub platform: String,
    pub policy: VersionPolicy,
    /// `version_labels`: label → version (e.g. `stable` → 1, `canary` → 2).
    pub labels: BTreeMap<String, i64>,
}

/// Which of the version directories found on disk are served
/// (`FileSystemStoragePathSourceConfig.ServableVersionPolicy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The N highest versions (N ≥ 1; TF Serving treats 0 as 1). The default, with 1.
    Latest(u32),
    /// Every version found.
    All,
    /// Exactly these versions, those of them that exist.
    Specific(BTreeSet<i64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl ModelConfig {
    /// The single-model form (`--model_name` / `--model_base_path`): latest version only.
    pub fn single(name: impl Into<String>, base_path: impl Into<PathBuf>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            base_path: base_path.into(),
            platform: DEFAULT_PLATFORM.to_owned(),
            policy: VersionPolicy::default(),
            labels: BTreeMap::new(),
        }
    }
}

/// Why a model config could not be used. Messages name the place that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading model config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not a valid `ModelServerConfig` text proto (syntax, unknown field,
    /// wrong value type). Line and column are 1-based; the column counts characters.
    #[error("model config syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The text parsed but describes something we cannot serve.
    #[error("invalid model config: {0}")]
    Invalid(String),
    /// The compiled-in descriptors are broken (a build problem, not the user's).
    #[error("model config schema unavailable: {0}")]
    Schema(String),
}

/// Reads and parses a `--model_config_file`; relative base paths resolve against the
/// file's directory.
pub fn load_model_config_file(path: &Path) -> Result<Vec<ModelConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    parse_model_config_file(&text, base_dir)
}

/// Parses the text of a `--model_config_file` (`model_config_list { config { … } }`).
/// Relative base paths are joined to `base_dir`. An empty text is an empty list.
pub fn parse_model_config_file(
    text: &str,
    base_dir: &Path,
) -> Result<Vec<ModelConfig>, ConfigError> {
    let pool = DescriptorPool::decode(infermesh_tfserving::proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| ConfigError::Schema(e.to_string()))?;
    let descriptor = pool
        .get_message_by_name(SERVER_CONFIG_MESSAGE)
        .ok_or_else(|| ConfigError::Schema(format!("message {SERVER_CONFIG_MESSAGE} missing")))?;
    let message =
        DynamicMessage::parse_text_format(descriptor, text).map_err(|e| syntax_error(text, &e))?;
    let config: pb::ModelServerConfig = message
        .transcode_to()
        .map_err(|e| ConfigError::Schema(e.to_string()))?;
    model_configs_from_proto(&config, base_dir)
}

/// Converts and validates a `ModelServerConfig` (also what `HandleReloadConfigRequest`
/// carries). Relative base paths are joined to `base_dir`.
pub fn model_configs_from_proto(
    config: &pb::ModelServerConfig,
    base_dir: &Path,
) -> Result<Vec<ModelConfig>, ConfigError> {
    use pb::model_server_config::Config;
    let list = match &config.config {
        None => return Ok(Vec::new()),
        Some(Config::CustomModelConfig(_)) => {
            return Err(ConfigError::Invalid(
                "custom_model_config is not supported; use model_config_list".to_owned(),
            ));
        }
        Some(Config::ModelConfigList(list)) => list,
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.config.len());
    for (index, model) in list.config.iter().enumerate() {
        let parsed = model_config_from_proto(model, base_dir)
            .map_err(|why| ConfigError::Invalid(format!("config #{} {why}", index + 1)))?;
        if !seen.insert(parsed.name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "model {:?} is listed more than once",
                parsed.name
            )));
        }
        out.push(parsed);
    }
    Ok(out)
}

/// One `ModelConfig` entry; the error is a phrase to follow "config #N".
fn model_config_from_proto(
    model: &pb::ModelConfig,
    base_dir: &Path,
) -> Result<ModelConfig, String> {
    if model.name.is_empty() {
        return Err("has an empty name".to_owned());
    }
    let name = &model.name;
    if model.name.contains('/') {
        return Err(format!("(model {name:?}): the name must not contain '/'"));
    }
    if model.base_path.is_empty() {
        return Err(format!("(model {name:?}): base_path is empty"));
    }
    if model.base_path.contains("://") {
        return Err(format!(
            "(model {name:?}): base_path {:?}: only local directories are supported",
            model.base_path
        ));
    }
    let base_path = Path::new(&model.base_path);
    let base_path = if base_path.is_relative() {
        base_dir.join(base_path)
    } else {
        base_path.to_path_buf()
    };
    let policy = match model
        .model_version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref())
    {
        None => VersionPolicy::default(),
        Some(PolicyChoice::Latest(latest)) => VersionPolicy::Latest(latest.num_versions.max(1)),
        Some(PolicyChoice::All(_)) => VersionPolicy::All,
        Some(PolicyChoice::Specific(specific)) => {
            if specific.versions.is_empty() {
                return Err(format!(
                    "(model {name:?}): model_version_policy specific lists no versions"
                ));
            }
            if let Some(v) = specific.versions.iter().find(|v| **v < 0) {
                return Err(format!(
                    "(model {name:?}): model_version_policy specific: version {v} is negative"
                ));
            }
            VersionPolicy::Specific(specific.versions.iter().copied().collect())
        }
    };
    let mut labels = BTreeMap::new();
    for (label, version) in &model.version_labels {
        if label.is_empty() {
            return Err(format!("(model {name:?}): a version label is empty"));
        }
        if *version < 0 {
            return Err(format!(
                "(model {name:?}): version label {label:?} points to negative version {version}"
            ));
        }
        labels.insert(label.clone(), *version);
    }
    let platform = if model.model_platform.is_empty() {
        DEFAULT_PLATFORM.to_owned()
    } else {
        model.model_platform.clone()
    };
    Ok(ModelConfig {
        name: name.clone(),
        base_path,
        platform,
        policy,
        labels,
    })
}

/// Turns a text-format parse error into a `Syntax` error with a 1-based position
/// (the end of the text when the parser reports none, e.g. at an unexpected end).
fn syntax_error(text: &str, error: &prost_reflect::text_format::ParseError) -> ConfigError {
    use miette::Diagnostic;
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(text.len(), |label| label.offset());
    let (line, column) = line_column(text, offset);
    ConfigError::Syntax {
        line,
        column,
        message: error.to_string(),
    }
}

/// The 1-based line and character column of a byte offset (clamped to the text).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
