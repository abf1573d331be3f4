//! One poll of every model, serialized by the poller lock:
//!
//! 1. scan each base path on a blocking thread (`scan`);
//! 2. mark the versions to load `LOADING`, load them on blocking threads (a few at
//!    a time) and publish each as it finishes: `AVAILABLE`, or `END` with the error;
//! 3. unload versions the policy no longer selects, preserving availability as TF
//!    Serving does: while no selected version serves, the newest old one stays;
//! 4. publish the result.
//!
//! A failed version is retried only after its directory's stamp changes.

use super::timed;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use infermesh_tfserving::{Code, Servable, Status};

use super::ModelManager;
use super::config::ModelConfig;
use super::events::{ManagerEvent, emit};
use super::scan::{DirStamp, Scan, scan_model};
use super::state::{Snapshot, State, VersionSlot};

/// The poller's memory between polls (guarded by `ModelManager::poller`).
pub(crate) struct Poller {
    configs: Vec<ModelConfig>,
    books: BTreeMap<String, Book>,
}

/// Per-model bookkeeping that requests don't need.
#[derive(Default)]
struct Book {
    /// Failed versions and the stamp their directory had when they failed.
    failed: BTreeMap<i64, Option<DirStamp>>,
    /// The warnings last given, so each is logged once, not every poll.
    notes: Vec<String>,
}

/// One version to load.
struct LoadJob {
    model: String,
    version: i64,
    path: PathBuf,
    stamp: Option<DirStamp>,
}

type LoadResult = Result<Arc<dyn Servable>, String>;

impl Poller {
    pub(crate) fn new(configs: Vec<ModelConfig>) -> Poller {
        Poller {
            configs,
            books: BTreeMap::new(),
        }
    }

    pub(crate) fn set_configs(&mut self, configs: Vec<ModelConfig>) {
        self.configs = configs;
    }
}

impl ModelManager {
    /// Scans every base path once and loads / unloads versions to match the policies.
    /// Returns when this poll's loads and unloads are done.
    pub async fn poll_once(&self) {
        let mut poller = self.poller.lock().await;
        let poller = &mut *poller;
        let current = self.live.load_full();

        let jobs: Vec<(ModelConfig, BTreeSet<i64>)> = poller
            .configs
            .iter()
            .map(|c| (c.clone(), serving_versions(&current, &c.name)))
            .collect();
        let scans = match tokio::task::spawn_blocking(move || {
            jobs.iter()
                .map(|(config, serving)| scan_model(config, serving))
                .collect::<Vec<_>>()
        })
        .await
        {
            Ok(scans) => scans,
            Err(e) => {
                tracing::error!("scanning model directories failed: {e}");
                return;
            }
        };

        let mut work = (*current).clone();
        drop(current);
        let configured: BTreeSet<String> = poller.configs.iter().map(|c| c.name.clone()).collect();
        self.forget_unconfigured(&mut work, &configured);
        poller.books.retain(|name, _| configured.contains(name));

        // Plan: which versions to load; remember each model's selection.
        let mut loads = Vec::new();
        let mut selections: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for (config, scan) in poller.configs.iter().zip(scans) {
            let book = poller.books.entry(config.name.clone()).or_default();
            let view = work
                .models
                .entry(Arc::from(config.name.as_str()))
                .or_default();
            view.labels = config.labels.clone();
            let scan = match scan {
                Ok(scan) => scan,
                Err(error) => {
                    note_once(book, vec![error]);
                    view.gave_up = false;
                    continue;
                }
            };
            let Scan {
                found,
                aspired,
                notes,
            } = scan;
            note_once(book, notes);
            book.failed.retain(|v, _| found.contains_key(v));
            for (version, (path, stamp)) in &aspired {
                let load = match view.versions.get(version) {
                    None => true,
                    Some(slot) => match slot.state {
                        State::Available => false,
                        State::End if slot.error.is_some() => {
                            book.failed.get(version) != Some(stamp)
                        }
                        // Unloaded and selected again, or left `LOADING` by a
                        // cancelled poll (polls are serialized, so none is running).
                        State::End
                        | State::Unknown
                        | State::Start
                        | State::Loading
                        | State::Unloading => true,
                    },
                };
                if load {
                    view.versions.insert(*version, VersionSlot::loading());
                    loads.push(LoadJob {
                        model: config.name.clone(),
                        version: *version,
                        path: path.clone(),
                        stamp: *stamp,
                    });
                }
            }
            // A cancelled poll's `LOADING` leftovers that are no longer selected.
            for (version, slot) in view.versions.iter_mut() {
                if matches!(slot.state, State::Start | State::Loading)
                    && !aspired.contains_key(version)
                {
                    *slot = VersionSlot::ended(None);
                }
            }
            selections.insert(config.name.clone(), aspired.into_keys().collect());
        }
        if !loads.is_empty() {
            self.publish(&work);
        }

        // Load, publishing each version as soon as it is done.
        let mut results = futures::stream::iter(loads.into_iter().map(|job| self.load(job)))
            .buffer_unordered(self.max_concurrent_loads.max(1));
        while let Some((job, result, took)) = results.next().await {
            let book = poller.books.entry(job.model.clone()).or_default();
            let view = work
                .models
                .entry(Arc::from(job.model.as_str()))
                .or_default();
            match result {
                Ok(servable) => {
                    view.versions
                        .insert(job.version, VersionSlot::available(servable));
                    book.failed.remove(&job.version);
                    emit(
                        self.hook.as_ref(),
                        ManagerEvent::Loaded {
                            model: job.model,
                            version: job.version,
                            took,
                        },
                    );
                }
                Err(error) => {
                    let status = Status::new(Code::Unknown, error.clone());
                    view.versions
                        .insert(job.version, VersionSlot::ended(Some(status)));
                    book.failed.insert(job.version, job.stamp);
                    emit(
                        self.hook.as_ref(),
                        ManagerEvent::LoadFailed {
                            model: job.model,
                            version: job.version,
                            error,
                            took,
                        },
                    );
                }
            }
            self.publish(&work);
        }
        drop(results);

        // Unload what the policy no longer selects; settle readiness.
        for (name, selected) in &selections {
            let Some(view) = work.models.get_mut(name.as_str()) else {
                continue;
            };
            let serves = |v: &i64| view.versions.get(v).is_some_and(|s| s.servable.is_some());
            let selected_serving = selected.iter().any(serves);
            let mut old_serving: Vec<i64> = view
                .versions
                .iter()
                .filter(|(v, s)| s.servable.is_some() && !selected.contains(v))
                .map(|(v, _)| *v)
                .collect();
            if !selected.is_empty() && !selected_serving {
                old_serving.pop(); // Keep the newest old version until a selected one serves.
            }
            for version in old_serving {
                view.versions.insert(version, VersionSlot::ended(None));
                emit(
                    self.hook.as_ref(),
                    ManagerEvent::Unloaded {
                        model: name.clone(),
                        version,
                    },
                );
            }
            view.gave_up = !selected.is_empty()
                && selected.iter().all(|v| {
                    view.versions
                        .get(v)
                        .is_some_and(|s| s.state == State::End && s.error.is_some())
                });
        }
        work.polled = true;
        self.publish(&work);
    }

    /// Runs the loader for one version on a blocking thread; a panic is an error.
    async fn load(&self, job: LoadJob) -> (LoadJob, LoadResult, std::time::Duration) {
        let loader = Arc::clone(&self.loader);
        let path = job.path.clone();
        let started = Instant::now();
        let result = match tokio::task::spawn_blocking(move || {
            loader(&path).map(timed::Timed::wrap)
        })
        .await
        {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err("the model loader panicked".to_owned()),
            Err(_) => Err("the load was cancelled".to_owned()),
        };
        (job, result, started.elapsed())
    }

    /// Drops models that are no longer configured, unloading their versions.
    fn forget_unconfigured(&self, work: &mut Snapshot, configured: &BTreeSet<String>) {
        let gone: Vec<String> = work
            .models
            .keys()
            .filter(|name| !configured.contains(&***name))
            .map(|name| name.to_string())
            .collect();
        for name in gone {
            let Some(view) = work.models.remove(name.as_str()) else {
                continue;
            };
            for (version, slot) in view.versions {
                if slot.servable.is_some() {
                    emit(
                        self.hook.as_ref(),
                        ManagerEvent::Unloaded {
                            model: name.clone(),
                            version,
                        },
                    );
                }
            }
        }
    }

    /// Makes `work` what requests see. The replaced snapshot may hold the last
    /// reference to an unloaded servable: it is freed on a blocking thread.
    fn publish(&self, work: &Snapshot) {
        let old = self.live.swap(Arc::new(work.clone()));
        drop(tokio::task::spawn_blocking(move || drop(old)));
    }
}

/// The versions of a model that serve now (no stamp needed for them).
fn serving_versions(snapshot: &Snapshot, name: &str) -> BTreeSet<i64> {
    snapshot
        .models
        .get(name)
        .map(|m| {
            m.versions
                .iter()
                .filter(|(_, s)| s.servable.is_some())
                .map(|(v, _)| *v)
                .collect()
        })
        .unwrap_or_default()
}

/// Logs the warnings that are new since the last poll; remembers the current set.
fn note_once(book: &mut Book, notes: Vec<String>) {
    for note in notes.iter().filter(|n| !book.notes.contains(n)) {
        tracing::warn!("{note}");
    }
    book.notes = notes;
}
