//! The model manager: which models and versions exist, loading and unloading them as
//! their directories change, and answering "which servable serves this request?".
//!
//! * `config` — the typed `ModelConfig` and the `--model_config_file` parser.
//! * `scan` — the file-system side of a poll (numbered version directories, policy).
//! * `poll` — one poll: scan, load new versions on blocking threads, unload old ones.
//! * `state` — the immutable snapshot requests read, and the lookups on it.
//! * `events` — log lines and an optional hook for each load, failure and unload.
//!
//! The live state is an `Arc<Snapshot>` swapped atomically (`arc-swap`): a request
//! never waits for a load, and a request holding a servable keeps it alive even after
//! its version is unloaded.

mod config;
mod events;
mod poll;
mod scan;
mod state;
mod timed;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use infermesh_tfserving::{Servable, Status};
use tokio::task::JoinHandle;

pub use config::{
    ConfigError, DEFAULT_PLATFORM, ModelConfig, VersionPolicy, load_model_config_file,
    model_configs_from_proto, parse_model_config_file,
};
pub use events::{EventHook, ManagerEvent};
pub use state::{Resolved, State, VersionStatus};

use poll::Poller;
use state::{ModelView, Snapshot};

/// Loads one version directory into a servable (the binary passes the inference
/// engine's loader; tests pass fakes). Runs on a blocking thread; the error message
/// becomes the version's status.
pub type Loader = Arc<dyn Fn(&Path) -> Result<Arc<dyn Servable>, String> + Send + Sync>;

/// Owns every configured model's versions. Cheap to query from any task.
pub struct ModelManager {
    loader: Loader,
    hook: Option<EventHook>,
    live: ArcSwap<Snapshot>,
    poller: tokio::sync::Mutex<Poller>,
    max_concurrent_loads: usize,
}

impl ModelManager {
    /// A manager for these models; nothing is loaded until the first poll
    /// (`poll_once` or `spawn_watcher`).
    pub fn new(configs: Vec<ModelConfig>, loader: Loader) -> Arc<ModelManager> {
        ModelManager::build(configs, loader, None)
    }

    /// Like `new`, and calls `hook` for every load, failed load and unload.
    pub fn with_event_hook(
        configs: Vec<ModelConfig>,
        loader: Loader,
        hook: EventHook,
    ) -> Arc<ModelManager> {
        ModelManager::build(configs, loader, Some(hook))
    }

    fn build(
        configs: Vec<ModelConfig>,
        loader: Loader,
        hook: Option<EventHook>,
    ) -> Arc<ModelManager> {
        let configs = dedupe(configs);
        let snapshot = Snapshot {
            models: configs
                .iter()
                .map(|c| {
                    let view = ModelView {
                        labels: c.labels.clone(),
                        ..ModelView::default()
                    };
                    (Arc::from(c.name.as_str()), view)
                })
                .collect(),
            polled: false,
        };
        let max_concurrent_loads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(ModelManager {
            loader,
            hook,
            live: ArcSwap::from_pointee(snapshot),
            poller: tokio::sync::Mutex::new(Poller::new(configs)),
            max_concurrent_loads,
        })
    }

    /// The servable for a request: `version` if given, else the version `label`
    /// points to, else the highest available version. Errors are TF Serving's:
    /// NOT_FOUND `Servable not found for request: Latest(m)` / `Specific(m, v)`,
    /// INVALID_ARGUMENT `Unrecognized servable version label: l`.
    pub fn resolve(
        &self,
        name: &str,
        version: Option<i64>,
        label: Option<&str>,
    ) -> Result<Resolved, Status> {
        self.live.load().resolve(name, version, label)
    }

    /// Version states of a model (highest first), of one version, or of a label's
    /// version. NOT_FOUND `Could not find any versions of model m` /
    /// `Could not find version v of model m`; unknown label as in `resolve`.
    pub fn status(
        &self,
        name: &str,
        version: Option<i64>,
        label: Option<&str>,
    ) -> Result<Vec<VersionStatus>, Status> {
        self.live.load().status(name, version, label)
    }

    /// The configured model names, sorted (a bounded set: use it for metric labels).
    pub fn model_names(&self) -> Vec<String> {
        self.live
            .load()
            .models
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Whether `name` is a configured model (loaded or not).
    pub fn has_model(&self, name: &str) -> bool {
        self.live.load().models.contains_key(name)
    }

    /// Ready once the first poll is done and every model has an available version or
    /// has given up (every version its policy selects failed to load). A model whose
    /// base path is missing or holds no version yet keeps the server unready.
    pub fn is_ready(&self) -> bool {
        self.live.load().is_ready()
    }

    /// Polls now, then every `every` (zero: only this first poll, as TF Serving's
    /// `--file_system_poll_wait_seconds=0`). The task ends when the manager is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(manager) = weak.upgrade() else {
                return;
            };
            manager.poll_once().await;
            drop(manager);
            if every.is_zero() {
                return;
            }
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // The first tick is immediate.
            loop {
                ticker.tick().await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                manager.poll_once().await;
            }
        })
    }

    /// Replaces the model list (e.g. `HandleReloadConfigRequest`) and polls at once:
    /// new models load, removed models unload, changed policies and labels apply.
    pub async fn reload(&self, configs: Vec<ModelConfig>) {
        self.poller.lock().await.set_configs(dedupe(configs));
        self.poll_once().await;
    }
}

/// Keeps the first config of each name (the parser already rejects duplicates).
fn dedupe(configs: Vec<ModelConfig>) -> Vec<ModelConfig> {
    let mut seen = BTreeSet::new();
    configs
        .into_iter()
        .filter(|c| {
            let first = seen.insert(c.name.clone());
            if !first {
                tracing::warn!(model = %c.name, "model {} configured twice; using the first", c.name);
            }
            first
        })
        .collect()
}

#[cfg(test)]
mod tests;
