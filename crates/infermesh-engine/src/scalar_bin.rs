//! A direct evaluation of tract's element-wise `Add`, `Sub`, `Mul` and `Div` (f32 or
//! f64) when one operand is a constant holding a single value: a loop over the other
//! operand's values, in place. tract's optimizer only turns such a node into its
//! by-scalar kernel when it can prove at least 32 values per scalar, so a graph built
//! for a symbolic batch keeps the generic `TypedBinOp`, whose broadcasting set-up
//! (ndarray views, `multi_broadcast`) costs far more than the arithmetic on a small
//! tensor. Anything outside the checked case — another op, dtype or layout, a constant
//! of several values, a rank mismatch — goes back to tract's own eval, unchanged.

use std::sync::Arc;

use tract_core::internal::{DatumType, IntoArcTensor, TValue, TVec, tvec};
use tract_core::model::{TypedModel, TypedNode};
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::konst::Const;
use tract_core::ops::math::{Add, Div, Mul, Sub, SubF};

/// Which arithmetic, with tract's operand order: `a op b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Sub,
    /// `b - a`.
    SubF,
    Mul,
    Div,
}

/// The constant operand's single value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    F32(f32),
    F64(f64),
}

/// A binary node with a one-value constant operand, ready to run as a loop.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarBin {
    kind: Kind,
    scalar: Scalar,
    /// The constant is operand `a` (input 0); otherwise it is `b` (input 1).
    scalar_is_a: bool,
    /// The constant's rank: tract requires both operands to have the same rank.
    rank: usize,
}

impl ScalarBin {
    /// The fast form of `node`, when it is such a node of `model`.
    pub fn for_node(model: &TypedModel, node: &TypedNode) -> Option<ScalarBin> {
        let op = node.op_as::<TypedBinOp>()?;
        let mini = &op.0;
        let kind = if mini.is::<Add>() {
            Kind::Add
        } else if mini.is::<Sub>() {
            Kind::Sub
        } else if mini.is::<SubF>() {
            Kind::SubF
        } else if mini.is::<Mul>() {
            Kind::Mul
        } else if mini.is::<Div>() {
            Kind::Div
        } else {
            return None;
        };
        let [a, b] = node.inputs.as_slice() else {
            return None;
        };
        let konst = |outlet: &tract_core::model::OutletId| {
            model
                .node(outlet.node)
                .op_as::<Const>()
                .map(|k| k.val().clone())
        };
        let (value, scalar_is_a) = match (konst(a), konst(b)) {
            (None, Some(v)) => (v, false),
            (Some(v), None) => (v, true),
            _ => return None,
        };
        if value.len() != 1 || !value.is_plain() {
            return None;
        }
        let dt = value.datum_type();
        let scalar = match dt {
            DatumType::F32 => Scalar::F32(
                *value
                    .try_as_plain_ram()
                    .ok()?
                    .as_slice::<f32>()
                    .ok()?
                    .first()?,
            ),
            DatumType::F64 => Scalar::F64(
                *value
                    .try_as_plain_ram()
                    .ok()?
                    .as_slice::<f64>()
                    .ok()?
                    .first()?,
            ),
            _ => return None,
        };
        // The result has the operands' type: no override, and tract's output fact agrees.
        if op.1.is_some_and(|c| c != dt) || node.outputs.first()?.fact.datum_type != dt {
            return None;
        }
        Some(ScalarBin {
            kind,
            scalar,
            scalar_is_a,
            rank: value.rank(),
        })
    }

    /// `x op s` (or `s op x`) on every value of `t`, in place; `false` (untouched)
    /// unless `t` holds plain values of the node's type.
    fn apply_in(&self, t: &mut tract_core::internal::Tensor) -> bool {
        match (t.as_plain_ram_mut(), self.scalar) {
            (Some(mut plain), Scalar::F32(s)) => plain
                .as_slice_mut::<f32>()
                .map(|values| apply(self.kind, self.scalar_is_a, values, s))
                .is_ok(),
            (Some(mut plain), Scalar::F64(s)) => plain
                .as_slice_mut::<f64>()
                .map(|values| apply(self.kind, self.scalar_is_a, values, s))
                .is_ok(),
            (None, _) => false,
        }
    }

    /// Evaluates the node on `inputs`, or hands them back when they are outside the
    /// fast case (the caller then runs tract's eval on them).
    pub fn eval(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, TVec<TValue>> {
        // The operand that is not the constant.
        let at = usize::from(self.scalar_is_a);
        let Some(x) = inputs.get(at).filter(|_| inputs.len() == 2) else {
            return Err(inputs);
        };
        let natural = x.rank() == self.rank
            && x.shape().iter().product::<usize>() == x.len()
            && has_natural_strides(x.shape(), x.strides())
            && x.is_plain();
        let dt_ok = matches!(
            (self.scalar, x.datum_type()),
            (Scalar::F32(_), DatumType::F32) | (Scalar::F64(_), DatumType::F64)
        );
        if !natural || !dt_ok {
            return Err(inputs);
        }
        let mut inputs = inputs;
        // Two operands: taking one out leaves the constant, at the other place. The
        // values are changed in place when no one else holds them (the usual case:
        // the plan has let go of its own copy), else in a copy, as tract does.
        let mut arc = inputs.swap_remove(at).into_arc_tensor();
        let done = self.apply_in(Arc::make_mut(&mut arc));
        let value = TValue::from_const(arc);
        if done {
            Ok(tvec!(value))
        } else {
            // Not reached after the checks above; hand the operands back in order.
            inputs.insert(at, value);
            Err(inputs)
        }
    }
}

/// Whether `strides` are the natural (row-major, contiguous) strides of `shape`: what
/// comparing with `Tensor::natural_strides(shape)` says, without building that list
/// (a small vector per node and run). The last stride is 1 and each one before is the
/// next one times the next dimension, with the same wrapping arithmetic.
fn has_natural_strides(shape: &[usize], strides: &[isize]) -> bool {
    if shape.len() != strides.len() {
        return false;
    }
    let mut expected: isize = 1;
    for (&dim, &stride) in shape.iter().zip(strides).rev() {
        if stride != expected {
            return false;
        }
        expected = expected.wrapping_mul(dim as isize);
    }
    true
}

/// `x = x op s` (the constant is `b`) or `x = s op x` (it is `a`), for every value.
fn apply<T>(kind: Kind, scalar_is_a: bool, values: &mut [T], s: T)
where
    T: Copy
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>,
{
    macro_rules! each {
        (|$x:ident| $e:expr) => {
            values.iter_mut().for_each(|v| {
                let $x = *v;
                *v = $e
            })
        };
    }
    match (kind, scalar_is_a) {
        (Kind::Add, false) => each!(|x| x + s),
        (Kind::Add, true) => each!(|x| s + x),
        (Kind::Sub, false) | (Kind::SubF, true) => each!(|x| x - s),
        (Kind::Sub, true) | (Kind::SubF, false) => each!(|x| s - x),
        (Kind::Mul, false) => each!(|x| x * s),
        (Kind::Mul, true) => each!(|x| s * x),
        (Kind::Div, false) => each!(|x| x / s),
        (Kind::Div, true) => each!(|x| s / x),
    }
}

#[cfg(test)]
mod tests {
    use super::has_natural_strides;
    use tract_core::internal::Tensor;

    /// The in-place check agrees with comparing against tract's natural strides, on
    /// shapes of rank 0 to 6 (with zero and one dimensions) and on strides that are
    /// natural, off by one somewhere, of another length, or of another shape.
    #[test]
    fn natural_stride_check_matches_tract() {
        let mut x: u32 = 0x2545_f491;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize
        };
        for case in 0..20_000 {
            let shape: Vec<usize> = (0..next() % 7).map(|_| next() % 5).collect();
            let natural = Tensor::natural_strides(&shape).to_vec();
            let mut strides = natural.clone();
            match next() % 5 {
                0 => {}
                1 if !strides.is_empty() => {
                    let at = next() % strides.len();
                    strides[at] += [1, -1][next() % 2];
                }
                2 => strides.push(1),
                3 => {
                    strides.pop();
                }
                _ => {
                    let other: Vec<usize> = (0..shape.len()).map(|_| next() % 5).collect();
                    strides = Tensor::natural_strides(&other).to_vec();
                }
            }
            assert_eq!(
                has_natural_strides(&shape, &strides),
                strides == natural,
                "case {case}: {shape:?} {strides:?}"
            );
        }
    }
}
