//! One optimized tract plan and how it runs: through tract's executor, with its
//! nodes' fast forms (see [`crate::scalar_bin`]) and a small pool of run states so a
//! request does not build and drop tract's per-run `SimpleState` (value table, symbol
//! table, per-node op states) every time.
//!
//! A state is pooled only when it cannot carry anything from one run to the next:
//! every op of the plan keeps no state between runs (`EvalOp::state` is `None`) and no
//! op keys scratch on the state's session (in tract 0.23, `OptMatMul` alone does, in a
//! thread-local map that only the dropping thread cleans). After a successful run tract
//! has already cleared every computed value and the resolved symbols; [`scrub`] also
//! clears the symbol scenario and the model inputs' values, so a pooled state is the
//! state of a fresh one. A run that fails or panics drops its state.

use std::sync::{Arc, Mutex};

use tract_core::internal::{TValue, TVec};
use tract_core::model::{TypedRunnableModel, TypedSimpleState};
use tract_core::ops::matmul::optimized::OptMatMul;
use tract_core::plan::eval;
use tract_core::prelude::TractResult;

use crate::scalar_bin::ScalarBin;

/// Idle states kept per plan: about the number of runs in flight at once.
const POOL_CAPACITY: usize = 8;

/// A plan ready to run, with what makes its runs cheaper.
pub struct Runnable {
    plan: Arc<TypedRunnableModel>,
    /// Per node id, its fast evaluation when it has one.
    fast: Vec<Option<ScalarBin>>,
    /// Idle states, when the plan's states can be reused (see the module doc). Boxed:
    /// taking one out and giving it back moves a pointer, not the whole state (hence
    /// the boxes clippy's `vec_box` would remove).
    #[allow(clippy::vec_box)]
    pool: Option<Mutex<Vec<Box<TypedSimpleState>>>>,
}

impl Runnable {
    pub fn new(plan: Arc<TypedRunnableModel>) -> TractResult<Runnable> {
        let model = plan.model();
        let fast: Vec<Option<ScalarBin>> = model
            .nodes()
            .iter()
            .map(|node| ScalarBin::for_node(model, node))
            .collect();
        let state = plan.spawn()?;
        let reusable = state.op_states.iter().all(Option::is_none)
            && !model.nodes().iter().any(|n| n.op_is::<OptMatMul>());
        let pool = reusable.then(|| Mutex::new(vec![Box::new(state)]));
        Ok(Runnable { plan, fast, pool })
    }

    /// Runs the plan on `inputs` (model input order) through tract's executor, with
    /// the fast node forms and a pooled state; the outputs in model order.
    pub fn run(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut state = match self.take_state() {
            Some(state) => state,
            None => Box::new(self.plan.spawn()?),
        };
        let fast = &self.fast;
        let outputs = state.run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
            if op_state.is_none()
                && let Some(Some(op)) = fast.get(node.id)
            {
                match op.eval(inputs) {
                    Ok(outputs) => return Ok(outputs),
                    Err(inputs) => return eval(ctx, op_state, node, inputs),
                }
            }
            eval(ctx, op_state, node, inputs)
        })?;
        self.give_back(state);
        Ok(outputs)
    }

    /// Runs without the fast node forms and without the pool: tract's own
    /// `SimplePlan::run`, what [`Runnable::run`] must match.
    #[cfg(test)]
    pub fn run_plain(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.plan.run(inputs)
    }

    /// How many nodes have a fast form, and whether states are pooled.
    #[cfg(test)]
    pub fn shortcuts(&self) -> (usize, bool) {
        (self.fast.iter().flatten().count(), self.pool.is_some())
    }

    /// The idle states, for tests that check what a pooled state holds.
    #[cfg(test)]
    pub fn idle_states(&self) -> Vec<TypedSimpleState> {
        self.pool
            .as_ref()
            .map(|pool| std::mem::take(&mut *pool.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default()
            .into_iter()
            .map(|state| *state)
            .collect()
    }

    fn take_state(&self) -> Option<Box<TypedSimpleState>> {
        let pool = self.pool.as_ref()?;
        pool.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give_back(&self, mut state: Box<TypedSimpleState>) {
        let Some(pool) = &self.pool else { return };
        scrub(&mut state, &self.plan);
        let mut idle = pool.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_CAPACITY {
            idle.push(state);
        }
    }
}

/// After a successful run: what tract's end-of-run reset (computed values and resolved
/// symbols cleared) leaves behind that a fresh state does not have — the symbol
/// scenario, and the values of model inputs the plan's order does not reach (inputs
/// that only outputs not asked for need).
fn scrub(state: &mut TypedSimpleState, plan: &TypedRunnableModel) {
    let turn = &mut state.turn_state;
    turn.scenario = None;
    for input in &plan.model().inputs {
        if let Some(value) = turn.values.get_mut(input.node) {
            *value = None;
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
