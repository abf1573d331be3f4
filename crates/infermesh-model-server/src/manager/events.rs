//! What the manager tells the outside world about version changes: a `tracing` line
//! for each, and an optional hook (metrics, tests) called with the same event.

use std::sync::Arc;
use std::time::Duration;

/// A version changed state. Emitted by the poller, in order, for each model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerEvent {
    /// The version now serves.
    Loaded {
        model: String,
        version: i64,
        took: Duration,
    },
    /// The loader failed (or panicked); the version is `END` with this error.
    LoadFailed {
        model: String,
        version: i64,
        error: String,
        took: Duration,
    },
    /// The version stopped serving (in-flight requests holding it still finish).
    Unloaded { model: String, version: i64 },
}

/// Called on the poller's task for every event; keep it quick.
pub type EventHook = Arc<dyn Fn(&ManagerEvent) + Send + Sync>;

/// Logs an event and passes it to the hook.
pub(crate) fn emit(hook: Option<&EventHook>, event: ManagerEvent) {
    match &event {
        ManagerEvent::Loaded {
            model,
            version,
            took,
        } => tracing::info!(
            model = %model,
            version,
            "loaded model {model} version {version} in {} ms",
            took.as_millis()
        ),
        ManagerEvent::LoadFailed {
            model,
            version,
            error,
            took,
        } => tracing::warn!(
            model = %model,
            version,
            "failed to load model {model} version {version} after {} ms: {error}",
            took.as_millis()
        ),
        ManagerEvent::Unloaded { model, version } => {
            tracing::info!(model = %model, version, "unloaded model {model} version {version}")
        }
    }
    if let Some(hook) = hook {
        hook(&event);
    }
}
