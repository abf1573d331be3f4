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
use tract_core::model::{OutletId, TypedModel};
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

/// Where an operand comes from.
#[derive(Debug)]
enum Operand {
    /// The value of an input or an earlier step; `take` at its last use.
    Value {
        node: usize,
        take: bool,
    },
    Const(TValue),
}

#[derive(Debug)]
struct Step {
    node: usize,
    op: ScalarBin,
    operands: [Operand; 2],
}

/// A plan the chain runner can run.
#[derive(Debug)]
pub struct Chain {
    inputs: Vec<Input>,
    symbols: usize,
    steps: Vec<Step>,
    /// Per model output, the node holding it.
    outputs: Vec<usize>,
    nodes: usize,
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
            let operand = |o: &OutletId| -> Option<Operand> {
                if let Some(k) = model.node(o.node).op_as::<Const>() {
                    Some(Operand::Const(TValue::from_const(k.val().clone())))
                } else {
                    computed.contains(&o.node).then_some(Operand::Value {
                        node: o.node,
                        take: false,
                    })
                }
            };
            let operands = [operand(a)?, operand(b)?];
            for o in &operands {
                if let Operand::Value { node, .. } = o {
                    uses[*node] += 1;
                }
            }
            steps.push(Step {
                node: id,
                op,
                operands,
            });
            computed.push(id);
        }
        if !outputs.iter().all(|o| computed.contains(o)) {
            return None;
        }
        // Mark each value's last use (not for outputs, which are read at the end).
        for step in steps.iter_mut() {
            for o in step.operands.iter_mut() {
                if let Operand::Value { node, take } = o {
                    uses[*node] -= 1;
                    *take = uses[*node] == 0 && !outputs.contains(node);
                }
            }
        }
        Some(Chain {
            inputs,
            symbols: symbols.len(),
            steps,
            outputs,
            nodes: model.nodes().len(),
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
        let mut values: Vec<Option<TValue>> = vec![None; self.nodes];
        for (t, spec) in inputs.into_iter().zip(&self.inputs) {
            values[spec.node] = Some(t);
        }
        for step in &self.steps {
            let mut operands: TVec<TValue> = TVec::new();
            for o in &step.operands {
                operands.push(
                    match o {
                        Operand::Const(k) => Some(k.clone()),
                        Operand::Value { node, take: true } => values[*node].take(),
                        Operand::Value { node, take: false } => values[*node].clone(),
                    }
                    .ok_or_else(|| format_err!("chain: node {} has no value", step.node))?,
                );
            }
            // Checked inputs and steps that keep type, shape and layout: it accepts.
            let out = step
                .op
                .eval(operands)
                .map_err(|_| format_err!("chain: node {} refused its operands", step.node))?;
            values[step.node] = out.into_iter().next();
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
