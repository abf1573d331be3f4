//! The live view of every model: an immutable `Snapshot` of versions, their states and
//! loaded servables, and the request-side lookups on it (`resolve`, `status`) with TF
//! Serving's exact error messages. The poller builds new snapshots; nothing here blocks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use infermesh_tfserving::{Servable, Status};

pub use infermesh_tfserving::model_info::{VersionState as State, VersionStatus};

/// A request's target: the model, the concrete version chosen, and its servable.
#[derive(Clone)]
pub struct Resolved {
    /// The configured name, shared with the snapshot (no copy per request).
    pub name: Arc<str>,
    pub version: i64,
    pub servable: Arc<dyn Servable>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Everything requests can see, swapped whole by the poller.
#[derive(Clone, Default)]
pub(crate) struct Snapshot {
    /// Keyed by configured name; the keys are shared with every [`Resolved`].
    pub(crate) models: BTreeMap<Arc<str>, ModelView>,
    /// Set once the first poll has finished.
    pub(crate) polled: bool,
}

/// One model in a snapshot.
#[derive(Clone, Default)]
pub(crate) struct ModelView {
    pub(crate) labels: BTreeMap<String, i64>,
    pub(crate) versions: BTreeMap<i64, VersionSlot>,
    /// Every version the policy selects has failed to load, so waiting won't help
    /// (until the files change): counts as settled for readiness.
    pub(crate) gave_up: bool,
}

/// One version in a snapshot. `servable` is `Some` exactly when `state` is `Available`.
#[derive(Clone)]
pub(crate) struct VersionSlot {
    pub(crate) state: State,
    pub(crate) error: Option<Status>,
    pub(crate) servable: Option<Arc<dyn Servable>>,
}

impl VersionSlot {
    pub(crate) fn loading() -> VersionSlot {
        VersionSlot {
            state: State::Loading,
            error: None,
            servable: None,
        }
    }

    pub(crate) fn available(servable: Arc<dyn Servable>) -> VersionSlot {
        VersionSlot {
            state: State::Available,
            error: None,
            servable: Some(servable),
        }
    }

    pub(crate) fn ended(error: Option<Status>) -> VersionSlot {
        VersionSlot {
            state: State::End,
            error,
            servable: None,
        }
    }
}

impl ModelView {
    /// The highest version that can serve, with its servable.
    pub(crate) fn latest_available(&self) -> Option<(i64, &Arc<dyn Servable>)> {
        self.versions
            .iter()
            .rev()
            .find_map(|(v, slot)| slot.servable.as_ref().map(|s| (*v, s)))
    }
}

fn unrecognized_label(label: &str) -> Status {
    Status::invalid_argument(format!("Unrecognized servable version label: {label}"))
}

impl Snapshot {
    /// A request's servable. `version` wins over `label` when both are given (the
    /// REST and gRPC front ends reject that combination before asking).
    pub(crate) fn resolve(
        &self,
        name: &str,
        version: Option<i64>,
        label: Option<&str>,
    ) -> Result<Resolved, Status> {
        let entry = self.models.get_key_value(name);
        let model = entry.map(|(_, m)| m);
        let wanted = match (version, label) {
            (Some(v), _) => Some(v),
            (None, Some(label)) => Some(
                *model
                    .and_then(|m| m.labels.get(label))
                    .ok_or_else(|| unrecognized_label(label))?,
            ),
            (None, None) => None,
        };
        let found = match wanted {
            None => model.and_then(ModelView::latest_available),
            Some(v) => model
                .and_then(|m| m.versions.get(&v))
                .and_then(|slot| slot.servable.as_ref().map(|s| (v, s))),
        };
        match (found, entry) {
            (Some((version, servable)), Some((key, _))) => Ok(Resolved {
                name: Arc::clone(key),
                version,
                servable: Arc::clone(servable),
            }),
            _ => Err(Status::not_found(match wanted {
                None => format!("Servable not found for request: Latest({name})"),
                Some(v) => format!("Servable not found for request: Specific({name}, {v})"),
            })),
        }
    }

    /// The status rows of a model (highest version first), of one version, or of
    /// the version a label points to.
    pub(crate) fn status(
        &self,
        name: &str,
        version: Option<i64>,
        label: Option<&str>,
    ) -> Result<Vec<VersionStatus>, Status> {
        let model = self.models.get(name);
        let wanted = match (version, label) {
            (Some(v), _) => Some(v),
            (None, Some(label)) => Some(
                *model
                    .and_then(|m| m.labels.get(label))
                    .ok_or_else(|| unrecognized_label(label))?,
            ),
            (None, None) => None,
        };
        let row = |(v, slot): (&i64, &VersionSlot)| VersionStatus {
            version: *v,
            state: slot.state,
            error: slot.error.clone(),
        };
        match wanted {
            Some(v) => model
                .and_then(|m| m.versions.get_key_value(&v))
                .map(|found| vec![row(found)])
                .ok_or_else(|| {
                    Status::not_found(format!("Could not find version {v} of model {name}"))
                }),
            None => {
                let rows: Vec<VersionStatus> = model
                    .map(|m| m.versions.iter().rev().map(row).collect())
                    .unwrap_or_default();
                if rows.is_empty() {
                    Err(Status::not_found(format!(
                        "Could not find any versions of model {name}"
                    )))
                } else {
                    Ok(rows)
                }
            }
        }
    }

    /// Ready: the first poll is done, and every model can serve or has given up.
    pub(crate) fn is_ready(&self) -> bool {
        self.polled
            && self
                .models
                .values()
                .all(|m| m.gave_up || m.latest_available().is_some())
    }
}
