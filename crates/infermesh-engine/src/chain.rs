//! A plan made only of model inputs, constants and [`ScalarBin`] nodes (element-wise
//! arithmetic by a one-value constant), run without tract's executor: check the
//! inputs against the model's input facts, then evaluate the nodes in the plan's
//! order in a plain value table. tract's per-run work — binding symbols through its
//! symbol table, matching facts, building an evaluation context per node, resetting
//! the turn — is most of such a small plan's cost.
//!
//! What it checks is what lets every node run: each input's element type, rank and
//! fixed dimensions as its fact says, one value per symbol across all inputs (`batch`),
//! and a plain tensor in natural layout; inputs it cannot vouch for go to tract, which
//! also writes the error. A value is moved rather than shared at its last use, so an
//! operation changes it in place as tract's own flushing allows.

use tract_core::internal::format_err;
use tract_core::internal::{DatumType, Symbol, TDim, TValue, TVec, Tensor, tvec};
use tract_core::model::TypedModel;
use tract_core::ops::konst::Const;
use tract_core::prelude::TractResult;

use crate::scalar_bin::ScalarBin;

/// One dimension of an input fact.
#[derive(Debug)]
enum Dim {
    Fixed(usize),
    /// Index into the chain's symbols.
    Sym(usize),
}

/// A model input: its node and fact.
#[derive(Debug)]
struct Input {
    node: usize,
    dt: DatumType,
    dims: Vec<Dim>,
}

/// One node: `op` applied to the value in slot `x` (the constant operand is in `op`),
/// into slot `node` (node ids while the chain is built).
#[derive(Debug)]
struct Step {
    node: usize,
    op: ScalarBin,
    x: usize,
    /// Move the value out of the table: this is its last use and it is no output.
    take: bool,
}

/// A plan the chain runner can run.
#[derive(Debug)]
pub struct Chain {
    inputs: Vec<Input>,
    symbols: usize,
    steps: Vec<Step>,
    /// Per model output, the slot holding it.
    outputs: Vec<usize>,
    /// Size of the value table: inputs, then steps.
    slots: usize,
}

impl Chain {
    /// The chain form of a plan over `model` evaluating `order` (no constants), when
    /// every node is an input or has a fast form in `fast` (by node id).
    pub fn new(model: &TypedModel, order: &[usize], fast: &[Option<ScalarBin>]) -> Option<Chain> {
        let mut symbols: Vec<Symbol> = Vec::new();
        let mut inputs = Vec::new();
        for outlet in model.input_outlets().ok()? {
            let node = model.node(outlet.node);
            if outlet.slot != 0 || !node.inputs.is_empty() {
                return None;
            }
            let fact = model.outlet_fact(*outlet).ok()?;
            let mut dims = Vec::new();
            for d in fact.shape.iter() {
                dims.push(match d {
                    TDim::Val(v) => Dim::Fixed(usize::try_from(*v).ok()?),
                    TDim::Sym(s) => Dim::Sym(match symbols.iter().position(|x| x == s) {
                        Some(i) => i,
                        None => {
                            symbols.push(s.clone());
                            symbols.len() - 1
                        }
                    }),
                    _ => return None,
                });
            }
            inputs.push(Input {
                node: outlet.node,
                dt: fact.datum_type,
                dims,
            });
        }
        let is_input = |id: usize| inputs.iter().any(|i| i.node == id);
        let outputs: Vec<usize> = model
            .output_outlets()
            .ok()?
            .iter()
            .map(|o| (o.slot == 0).then_some(o.node))
            .collect::<Option<_>>()?;
        // Uses of each value still to come, outputs counted as never ending.
        let mut uses = vec![0usize; model.nodes().len()];
        let mut computed: Vec<usize> = Vec::new();
        let mut steps = Vec::new();
        for &id in order {
            if is_input(id) {
                computed.push(id);
                continue;
            }
            let node = model.node(id);
            let op = fast.get(id)?.clone()?;
            let [a, b] = node.inputs.as_slice() else {
                return None;
            };
            if node.outputs.len() != 1 || a.slot != 0 || b.slot != 0 {
                return None;
            }
            // Same type and rank on both sides and out: what the fast form assumes.
            let (fa, fb) = (model.outlet_fact(*a).ok()?, model.outlet_fact(*b).ok()?);
            let out = &node.outputs[0].fact;
            if fa.datum_type != out.datum_type
                || fb.datum_type != out.datum_type
                || fa.rank() != out.rank()
                || fb.rank() != out.rank()
            {
                return None;
            }
            let (k, x) = if op.const_input() == 0 {
                (a, b)
            } else {
                (b, a)
            };
            if !model.node(k.node).op_is::<Const>() || !computed.contains(&x.node) {
                return None;
            }
            uses[x.node] += 1;
            steps.push(Step {
                node: id,
                op,
                x: x.node,
                take: false,
            });
            computed.push(id);
        }
        if !outputs.iter().all(|o| computed.contains(o)) {
            return None;
        }
        // Mark each value's last use (not for outputs, which are read at the end).
        for step in steps.iter_mut() {
            uses[step.x] -= 1;
            step.take = uses[step.x] == 0 && !outputs.contains(&step.x);
        }
        // Values live in a small table: the inputs in model order, then the steps.
        let slots: Vec<usize> = inputs
            .iter()
            .map(|i| i.node)
            .chain(steps.iter().map(|s| s.node))
            .collect();
        let slot = |node: usize| slots.iter().position(|&s| s == node);
        for (i, step) in steps.iter_mut().enumerate() {
            step.x = slot(step.x)?;
            step.node = inputs.len() + i;
        }
        let outputs = outputs.into_iter().map(slot).collect::<Option<_>>()?;
        Some(Chain {
            inputs,
            symbols: symbols.len(),
            steps,
            outputs,
            slots: slots.len(),
        })
    }

    /// Whether `inputs` are what the model's input facts say, in a form every step
    /// can run on.
    pub fn accepts(&self, inputs: &[TValue]) -> bool {
        if inputs.len() != self.inputs.len() {
            return false;
        }
        let mut bound: TVec<Option<usize>> = tvec![None; self.symbols];
        for (t, spec) in inputs.iter().zip(&self.inputs) {
            if t.datum_type() != spec.dt || t.rank() != spec.dims.len() || !natural(t) {
                return false;
            }
            for (&d, dim) in t.shape().iter().zip(&spec.dims) {
                let ok = match dim {
                    Dim::Fixed(v) => d == *v,
                    Dim::Sym(s) => *bound[*s].get_or_insert(d) == d,
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }

    /// Runs on inputs [`Chain::accepts`]; the outputs in model order.
    pub fn run(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut values: TVec<Option<TValue>> = inputs.into_iter().map(Some).collect();
        values.resize(self.slots, None);
        for step in &self.steps {
            let x = if step.take {
                values[step.x].take()
            } else {
                values[step.x].clone()
            };
            let x = x.ok_or_else(|| format_err!("chain: slot {} has no value", step.x))?;
            // Checked inputs, and steps that keep type, shape and layout: it applies.
            let y = step.op.apply_to(x).ok_or_else(|| {
                format_err!("chain: step into slot {} refused its operand", step.node)
            })?;
            values[step.node] = Some(y);
        }
        self.outputs
            .iter()
            .map(|&n| {
                values[n]
                    .clone()
                    .ok_or_else(|| format_err!("chain: output {n} missing"))
            })
            .collect()
    }
}

/// A plain tensor in natural (row-major, dense) layout.
fn natural(t: &Tensor) -> bool {
    t.is_plain()
        && t.shape().iter().product::<usize>() == t.len()
        && t.strides() == &*Tensor::natural_strides(t.shape())
}
