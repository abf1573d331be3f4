//! One signature's graph, parsed once at load, and the optimized runnable plans
//! built from it on demand: one per (output subset, input types and shapes), with
//! the batch dimension symbolic when the inputs share one, kept in a small bounded
//! cache. A request that hits the cache pays only for the run; the cache lock is
//! held for a lookup, never during inference. The cache key is built straight from
//! the input tensors and hashed with foldhash (the keys are shapes, not secrets).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, RwLock};

use infermesh_tfserving::Status;
use tract_core::internal::{DatumType, TDim, TValue, TVec};
use tract_core::prelude::{IntoRunnable, TractResult};
use tract_tensorflow::tract_hir::prelude::{InferenceFact, InferenceModel, InferenceModelExt};

use crate::plan::Runnable;

type Plan = Arc<Runnable>;

/// Plans kept per program; past this, an arbitrary entry makes room.
const CACHE_CAPACITY: usize = 64;

/// Ready plans a request finds without building a key (the first ones used).
const RECENT_CAPACITY: usize = 4;

/// What a plan is specialised for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    /// Indices into the program outputs, ascending, no duplicates.
    outputs: Vec<usize>,
    /// Element type and shape per input; leading dims are zero when `batch` is set.
    inputs: Vec<(DatumType, Vec<usize>)>,
    /// The leading dimension of every input is one symbolic batch size.
    batch: bool,
}

impl PlanKey {
    /// Whether a request's tensors and outputs would build this key: the key
    /// [`Program::plan_by_key`] uses for them (batch keys only for batched inputs).
    fn matches(&self, inputs: &[TValue], outputs: &[usize], batched: bool) -> bool {
        self.outputs == outputs
            && (!self.batch || batched)
            && self.inputs.len() == inputs.len()
            && self.inputs.iter().zip(inputs).all(|((dt, shape), t)| {
                *dt == t.datum_type()
                    && shape.len() == t.rank()
                    && shape
                        .iter()
                        .zip(t.shape())
                        .enumerate()
                        .all(|(axis, (k, d))| (self.batch && axis == 0) || k == d)
            })
    }
}

enum Entry {
    Ready(Plan),
    /// The symbolic-batch plan could not be built: use exact shapes.
    UseExactShapes,
    /// Building a plan for these exact shapes failed with this message.
    Failed(String),
}

/// A parsed graph whose inputs and outputs are in a fixed order.
pub struct Program {
    /// For messages: `signature 'serving_default'`.
    what: String,
    model: InferenceModel,
    cache: RwLock<HashMap<PlanKey, Entry, foldhash::fast::RandomState>>,
    /// The first few ready plans with their keys, matched against a request's tensors
    /// in place: the usual request (one signature, a few shapes, any batch size) finds
    /// its plan without building and hashing a key. Filled once, never evicted (a plan
    /// stays valid for its key even when the cache drops it).
    recent: RwLock<Vec<(PlanKey, Plan)>>,
}

/// Runs `f`, turning a panic inside tract into an error.
fn guard<T>(f: impl FnOnce() -> TractResult<T>) -> Result<TractResult<T>, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// The whole error chain of a tract error, on one line.
pub fn chain(e: &tract_core::prelude::TractError) -> String {
    format!("{e:#}")
}

impl Program {
    /// `model` must have its inputs and outputs set in the order callers use.
    pub fn new(what: String, model: InferenceModel) -> Program {
        Program {
            what,
            model,
            cache: RwLock::new(HashMap::default()),
            recent: RwLock::new(Vec::new()),
        }
    }

    /// Runs the graph on `inputs` (program input order) and returns the program
    /// outputs listed in `outputs` (ascending indices), in that order.
    pub fn run(&self, inputs: TVec<TValue>, outputs: &[usize]) -> Result<TVec<TValue>, Status> {
        let plan = self.plan(&inputs, outputs)?;
        match guard(|| plan.run(inputs)) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(Status::invalid_argument(format!(
                "{} failed: {}",
                self.what,
                chain(&e)
            ))),
            Err(panic) => Err(Status::internal(format!(
                "{} failed: inference engine panicked: {panic}",
                self.what
            ))),
        }
    }

    /// Per cached entry: (symbolic batch, holds a ready plan).
    #[cfg(test)]
    pub fn cached(&self) -> Vec<(bool, bool)> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<(bool, bool)> = cache
            .iter()
            .map(|(k, e)| (k.batch, matches!(e, Entry::Ready(_))))
            .collect();
        entries.sort();
        entries
    }

    /// How many recent plans there are, and whether each is the cache's plan for its key.
    #[cfg(test)]
    pub fn recent(&self) -> (usize, bool) {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let all = recent.iter().all(
            |(key, plan)| matches!(cache.get(key), Some(Entry::Ready(p)) if Arc::ptr_eq(p, plan)),
        );
        (recent.len(), all)
    }

    fn lookup(&self, key: &PlanKey) -> Option<Result<Plan, Option<String>>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.get(key).map(|entry| match entry {
            Entry::Ready(plan) => Ok(plan.clone()),
            Entry::UseExactShapes => Err(None),
            Entry::Failed(message) => Err(Some(message.clone())),
        })
    }

    fn remember(&self, key: PlanKey, entry: Entry) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY
            && !cache.contains_key(&key)
            && let Some(victim) = cache.keys().next().cloned()
        {
            cache.remove(&victim);
        }
        cache.insert(key, entry);
    }

    fn plan(&self, inputs: &[TValue], outputs: &[usize]) -> Result<Plan, Status> {
        let first = inputs.first().and_then(|t| t.shape().first().copied());
        let batched = first.is_some() && inputs.iter().all(|t| t.shape().first().copied() == first);
        if let Some(plan) = self.recent_plan(inputs, outputs, batched) {
            return Ok(plan);
        }
        let plan = self.plan_by_key(inputs, outputs, batched)?;
        let full = self.recent.read().unwrap_or_else(|p| p.into_inner()).len() >= RECENT_CAPACITY;
        if !full && let Some(key) = self.key_of(&plan) {
            let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
            if recent.len() < RECENT_CAPACITY && !recent.iter().any(|(k, _)| *k == key) {
                recent.push((key, plan.clone()));
            }
        }
        Ok(plan)
    }

    /// A recent plan whose key these tensors match.
    fn recent_plan(&self, inputs: &[TValue], outputs: &[usize], batched: bool) -> Option<Plan> {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .find(|(key, _)| key.matches(inputs, outputs, batched))
            .map(|(_, plan)| plan.clone())
    }

    /// The cache key a ready plan is stored under.
    fn key_of(&self, plan: &Plan) -> Option<PlanKey> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.iter().find_map(|(key, entry)| match entry {
            Entry::Ready(p) if Arc::ptr_eq(p, plan) => Some(key.clone()),
            _ => None,
        })
    }

    /// The plan for these tensors through the keyed cache (building it on a miss).
    fn plan_by_key(
        &self,
        inputs: &[TValue],
        outputs: &[usize],
        batched: bool,
    ) -> Result<Plan, Status> {
        if batched {
            let key = PlanKey {
                outputs: outputs.to_vec(),
                inputs: inputs
                    .iter()
                    .map(|t| {
                        let mut shape = t.shape().to_vec();
                        shape[0] = 0;
                        (t.datum_type(), shape)
                    })
                    .collect(),
                batch: true,
            };
            match self.lookup(&key) {
                Some(Ok(plan)) => return Ok(plan),
                Some(Err(_)) => {}
                None => match self.build(&key) {
                    Ok(plan) => {
                        self.remember(key, Entry::Ready(plan.clone()));
                        return Ok(plan);
                    }
                    Err(message) => {
                        tracing::debug!(what = %self.what, %message, "no symbolic-batch plan, using exact shapes");
                        self.remember(key, Entry::UseExactShapes);
                    }
                },
            }
        }
        let key = PlanKey {
            outputs: outputs.to_vec(),
            inputs: inputs
                .iter()
                .map(|t| (t.datum_type(), t.shape().to_vec()))
                .collect(),
            batch: false,
        };
        let result = match self.lookup(&key) {
            Some(Ok(plan)) => return Ok(plan),
            Some(Err(message)) => Err(message.unwrap_or_default()),
            None => {
                let built = self.build(&key);
                let entry = match &built {
                    Ok(plan) => Entry::Ready(plan.clone()),
                    Err(message) => Entry::Failed(message.clone()),
                };
                self.remember(key.clone(), entry);
                built
            }
        };
        result.map_err(|message| {
            let shapes: Vec<String> = key
                .inputs
                .iter()
                .map(|(dt, s)| format!("{dt:?}{s:?}"))
                .collect();
            Status::invalid_argument(format!(
                "{} cannot run on inputs [{}]: {message}",
                self.what,
                shapes.join(", ")
            ))
        })
    }

    /// Specialises and optimizes the graph for `key`: the expensive step.
    fn build(&self, key: &PlanKey) -> Result<Plan, String> {
        let result = guard(|| {
            let mut model = self.model.clone();
            let batch = model.sym("batch");
            for (ix, (dt, shape)) in key.inputs.iter().enumerate() {
                let dims: TVec<TDim> = shape
                    .iter()
                    .enumerate()
                    .map(|(axis, &d)| {
                        if key.batch && axis == 0 {
                            TDim::from(batch.clone())
                        } else {
                            TDim::from(d)
                        }
                    })
                    .collect();
                model.set_input_fact(ix, InferenceFact::dt_shape(*dt, dims))?;
            }
            let all = model.output_outlets()?.to_vec();
            let wanted: Vec<_> = key.outputs.iter().map(|&o| all[o]).collect();
            model.select_output_outlets(&wanted)?;
            Runnable::new(model.into_optimized()?.into_runnable()?).map(Arc::new)
        });
        match result {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(e)) => Err(chain(&e)),
            Err(panic) => Err(format!("inference engine panicked: {panic}")),
        }
    }
}
