//! Manager behaviour on temporary directories with a fake servable and loader: the
//! fixture here, the cases in `polling` (policies, loads, unloads, failures,
//! readiness), `lookup` (labels, error messages, reload) and `watching` (the watcher).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use infermesh_tfserving::{Servable, Signature, Status, Tensor};

use super::*;

mod lookup;
mod polling;
mod watching;

/// Answers `run` with nothing; its one signature, `dir`, names (as its method) the
/// directory it was loaded from.
struct FakeServable {
    signatures: BTreeMap<String, Signature>,
}

impl Servable for FakeServable {
    fn signatures(&self) -> &BTreeMap<String, Signature> {
        &self.signatures
    }

    fn run(
        &self,
        _signature: &str,
        _inputs: BTreeMap<String, Tensor>,
        _output_filter: &[String],
    ) -> Result<BTreeMap<String, Tensor>, Status> {
        Ok(BTreeMap::new())
    }
}

/// A loader that fails when the version directory holds a file `broken` (its text is
/// the error), panics when it holds `panic`, and counts its calls.
fn fake_loader(calls: Arc<AtomicUsize>) -> Loader {
    Arc::new(move |dir: &Path| {
        calls.fetch_add(1, Ordering::SeqCst);
        if dir.join("panic").exists() {
            panic!("loader panic (expected by the test)");
        }
        if let Ok(why) = std::fs::read_to_string(dir.join("broken")) {
            return Err(why);
        }
        let signature = Signature {
            method_name: dir.display().to_string(),
            ..Signature::default()
        };
        let servable: Arc<dyn Servable> = Arc::new(FakeServable {
            signatures: BTreeMap::from([("dir".to_owned(), signature)]),
        });
        Ok(servable)
    })
}

struct Fixture {
    root: tempfile::TempDir,
    calls: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            root: tempfile::tempdir().expect("temp dir"),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn base(&self, model: &str) -> std::path::PathBuf {
        self.root.path().join(model)
    }

    fn add(&self, model: &str, dir: &str) {
        let path = self.base(model).join(dir);
        std::fs::create_dir_all(&path).expect("create version dir");
        std::fs::write(path.join("saved_model.pb"), b"fake").expect("write model file");
    }

    fn break_version(&self, model: &str, dir: &str, why: &str) {
        std::fs::write(self.base(model).join(dir).join("broken"), why).expect("write broken");
    }

    fn remove(&self, model: &str, dir: &str) {
        std::fs::remove_dir_all(self.base(model).join(dir)).expect("remove version dir");
    }

    fn config(&self, model: &str, policy: VersionPolicy) -> ModelConfig {
        ModelConfig {
            policy,
            ..ModelConfig::single(model, self.base(model))
        }
    }

    fn manager(&self, configs: Vec<ModelConfig>) -> Arc<ModelManager> {
        ModelManager::new(configs, fake_loader(self.calls.clone()))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn states(manager: &ModelManager, model: &str) -> Vec<(i64, State)> {
    manager
        .status(model, None, None)
        .expect("status")
        .into_iter()
        .map(|s| (s.version, s.state))
        .collect()
}

fn available(manager: &ModelManager, model: &str) -> Vec<i64> {
    let mut v: Vec<i64> = states(manager, model)
        .into_iter()
        .filter(|(_, s)| *s == State::Available)
        .map(|(v, _)| v)
        .collect();
    v.sort();
    v
}

fn latest(manager: &ModelManager, model: &str) -> i64 {
    manager
        .resolve(model, None, None)
        .expect("resolve latest")
        .version
}
