//! The fast node forms and the state pool against tract's own `SimplePlan::run`, on
//! generated graphs and values.

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::konst::Const;
use tract_core::ops::math;

use super::Runnable;

/// A seeded generator (`fastrand`) with the value shapes these tests want.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// Mostly ordinary values, sometimes special ones (zeros, infinities, NaNs,
    /// subnormals, extremes), sometimes any bit pattern.
    fn f64(&mut self) -> f64 {
        const SPECIAL: [f64; 10] = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE / 4.0,
            f64::MAX,
            1e-300,
        ];
        match self.next() % 8 {
            0 => SPECIAL[(self.next() % SPECIAL.len() as u64) as usize],
            1 => f64::from_bits(self.next()),
            _ => (self.next() % 20_000) as f64 / 100.0 - 100.0,
        }
    }

    fn f32(&mut self) -> f32 {
        match self.next() % 8 {
            0 => f32::from_bits(self.next() as u32),
            1 => f32::MIN_POSITIVE / 8.0,
            _ => self.f64() as f32,
        }
    }
}

fn tensor(dt: DatumType, shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    if dt == DatumType::F32 {
        Tensor::from_shape(shape, &(0..n).map(|_| rng.f32()).collect::<Vec<_>>()).unwrap()
    } else if dt == DatumType::F64 {
        Tensor::from_shape(shape, &(0..n).map(|_| rng.f64()).collect::<Vec<_>>()).unwrap()
    } else {
        let v: Vec<i32> = (0..n).map(|_| (rng.next() % 200) as i32 - 100).collect();
        let v: Vec<i32> = v.into_iter().map(|x| if x == 0 { 7 } else { x }).collect();
        Tensor::from_shape(shape, &v)
            .unwrap()
            .cast_to_dt(dt)
            .unwrap()
            .into_owned()
    }
}

/// Shape and value bits, so NaNs compare by payload and -0.0 differs from 0.0.
fn bits(t: &TValue) -> (Vec<usize>, Vec<u64>) {
    let plain = t.as_plain_ram().unwrap();
    let values = match t.datum_type() {
        DatumType::F32 => plain
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits() as u64)
            .collect(),
        DatumType::F64 => plain
            .as_slice::<f64>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        _ => t
            .cast_to::<i64>()
            .unwrap()
            .as_plain_ram()
            .unwrap()
            .as_slice::<i64>()
            .unwrap()
            .iter()
            .map(|&v| v as u64)
            .collect(),
    };
    (t.shape().to_vec(), values)
}

/// `x op k` or `k op x` over a source of shape `[batch, rest..]`, plus a second,
/// unused source (its value must not stay in a pooled state).
fn model(op: TypedBinOp, dt: DatumType, rest: &[usize], k: Tensor, k_first: bool) -> TypedModel {
    let mut model = TypedModel::default();
    let batch = model.sym("batch");
    let mut dims: TVec<TDim> = tvec![batch.into()];
    dims.extend(rest.iter().map(|&d| d.to_dim()));
    let x = model.add_source("x", dt.fact(dims)).unwrap();
    model.add_source("unused", dt.fact([2])).unwrap();
    let k = model.add_const("k", k).unwrap();
    let inputs = if k_first { [k, x] } else { [x, k] };
    let y = model.wire_node("y", op, &inputs).unwrap();
    model.select_output_outlets(&y).unwrap();
    model
}

type MakeOp = fn() -> TypedBinOp;

#[test]
fn fast_binary_nodes_and_pool_match_tract() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let ops: [(&str, MakeOp); 5] = [
        ("add", math::add),
        ("sub", math::sub),
        ("subf", math::subf),
        ("mul", math::mul),
        ("div", math::div),
    ];
    let mut runs = 0;
    for (name, op) in ops {
        for dt in [DatumType::F32, DatumType::F64, DatumType::I32] {
            for rest in [&[][..], &[3], &[2, 1]] {
                for k_first in [false, true] {
                    // One value (the fast case), or one per column (tract's path).
                    for k_len in [1, 2] {
                        let mut k_shape = vec![1; rest.len() + 1];
                        if k_len == 2 {
                            k_shape[0] = 2;
                        }
                        let k = tensor(dt, &k_shape, &mut rng);
                        let m = model(op(), dt, rest, k, k_first);
                        let runnable = Runnable::new(m.into_runnable().unwrap()).unwrap();
                        let fast = dt != DatumType::I32 && k_len == 1;
                        let what =
                            format!("{name} {dt:?} rest {rest:?} k first {k_first} k {k_shape:?}");
                        assert_eq!(runnable.shortcuts(), (usize::from(fast), true), "{what}");
                        for round in 0..40 {
                            let batch = if k_len == 2 {
                                2
                            } else {
                                (rng.next() % 6) as usize
                            };
                            let mut shape = vec![batch];
                            shape.extend_from_slice(rest);
                            let x = tensor(dt, &shape, &mut rng).into_tvalue();
                            let unused = tensor(dt, &[2], &mut rng).into_tvalue();
                            let sent = bits(&x);
                            // Every other round the caller still holds the input:
                            // it must come out unchanged.
                            let held = (round % 2 == 0).then(|| x.clone());
                            let inputs: TVec<TValue> = tvec![x, unused];
                            let want = runnable.run_plain(inputs.clone()).unwrap();
                            let got = runnable.run(inputs).unwrap();
                            assert_eq!(got.len(), want.len());
                            assert_eq!(bits(&got[0]), bits(&want[0]), "{what} round {round}");
                            if let Some(held) = held {
                                assert_eq!(bits(&held), sent, "{what} round {round}");
                            }
                            runs += 1;
                        }
                        // What is idle in the pool is what a fresh state holds.
                        let idle = runnable.idle_states();
                        assert!(!idle.is_empty(), "{what}");
                        for state in idle {
                            let turn = &state.turn_state;
                            assert_eq!(turn.scenario, None, "{what}");
                            assert_eq!(turn.resolved_symbols.get(&m_sym(&state)), None, "{what}");
                            for (id, value) in turn.values.iter().enumerate() {
                                let is_const = state.model().node(id).op_is::<Const>();
                                assert_eq!(value.is_some(), is_const, "{what}: node {id}");
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(runs, 5 * 3 * 3 * 2 * 2 * 40);
}

fn m_sym(state: &TypedSimpleState) -> Symbol {
    state.model().sym("batch")
}

/// A failed run (an input of the wrong rank) does not put its state back, and the
/// next run is still right.
#[test]
fn failed_run_leaves_the_pool_clean() {
    let mut rng = Rng::new(7);
    let k = tensor(DatumType::F32, &[1, 1], &mut rng);
    let runnable = Runnable::new(
        model(math::mul(), DatumType::F32, &[3], k, false)
            .into_runnable()
            .unwrap(),
    )
    .unwrap();
    let bad: TVec<TValue> = tvec![
        tensor(DatumType::F32, &[3], &mut rng).into_tvalue(),
        tensor(DatumType::F32, &[2], &mut rng).into_tvalue()
    ];
    assert!(runnable.run(bad).is_err());
    let good: TVec<TValue> = tvec![
        tensor(DatumType::F32, &[4, 3], &mut rng).into_tvalue(),
        tensor(DatumType::F32, &[2], &mut rng).into_tvalue()
    ];
    let want = runnable.run_plain(good.clone()).unwrap();
    assert_eq!(bits(&runnable.run(good).unwrap()[0]), bits(&want[0]));
}

/// Generated graphs of one-value-constant arithmetic over one or two inputs, with
/// outputs read from anywhere (inputs, values also used later, the same one twice):
/// tract's executor with the fast forms and the pool, and tract alone agree bit for
/// bit; inputs that disagree on the batch size fail on both.
#[test]
fn generated_scalar_graphs_match_tract() {
    let mut rng = Rng::new(0x0123_4567_89AB_CDEF);
    let ops: [MakeOp; 5] = [math::add, math::sub, math::subf, math::mul, math::div];
    let (mut graphs, mut runs, mut refused) = (0, 0, 0);
    for case in 0..300 {
        let dt = if rng.next().is_multiple_of(2) {
            DatumType::F32
        } else {
            DatumType::F64
        };
        let rest: Vec<usize> = match rng.next() % 3 {
            0 => vec![],
            1 => vec![2],
            _ => vec![1, 3],
        };
        let mut model = TypedModel::default();
        let batch = model.sym("batch");
        let batch_dims = |lead: TDim| -> TVec<TDim> {
            let mut dims: TVec<TDim> = tvec![lead];
            dims.extend(rest.iter().map(|&d| d.to_dim()));
            dims
        };
        let mut values = vec![
            model
                .add_source("a", dt.fact(batch_dims(batch.clone().into())))
                .unwrap(),
        ];
        // A second input sharing the batch symbol, or with a fixed leading dimension.
        let second = match rng.next() % 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        };
        if let Some(shared) = second {
            let lead = if shared {
                batch.clone().into()
            } else {
                2.to_dim()
            };
            values.push(model.add_source("b", dt.fact(batch_dims(lead))).unwrap());
        }
        for i in 0..1 + rng.next() % 6 {
            let x = values[(rng.next() % values.len() as u64) as usize];
            let k = tensor(dt, &vec![1; rest.len() + 1], &mut rng);
            let k = model.add_const(format!("k{i}"), k).unwrap();
            let op = ops[(rng.next() % 5) as usize]();
            let inputs = if rng.next().is_multiple_of(2) {
                [x, k]
            } else {
                [k, x]
            };
            values.push(model.wire_node(format!("n{i}"), op, &inputs).unwrap()[0]);
        }
        let outputs: Vec<OutletId> = (0..1 + rng.next() % 3)
            .map(|_| values[(rng.next() % values.len() as u64) as usize])
            .collect();
        model.select_output_outlets(&outputs).unwrap();
        let runnable = Runnable::new(model.into_runnable().unwrap()).unwrap();
        assert!(runnable.shortcuts().0 > 0, "case {case}: no fast node");
        graphs += 1;
        for round in 0..12 {
            let b = (rng.next() % 5) as usize;
            let mut inputs: TVec<TValue> = TVec::new();
            let mut shape = vec![b];
            shape.extend_from_slice(&rest);
            inputs.push(tensor(dt, &shape, &mut rng).into_tvalue());
            if let Some(shared) = second {
                // Now and then a batch size that disagrees with the first input's.
                shape[0] = if shared && round % 4 == 3 {
                    b + 1
                } else if shared {
                    b
                } else {
                    2
                };
                inputs.push(tensor(dt, &shape, &mut rng).into_tvalue());
            }
            let want = runnable.run_plain(inputs.clone());
            let got = runnable.run(inputs);
            match want {
                Ok(want) => {
                    let got = got.unwrap();
                    assert_eq!(got.len(), want.len(), "case {case}");
                    for (w, g) in want.iter().zip(&got) {
                        assert_eq!(bits(g), bits(w), "case {case} round {round}");
                    }
                    runs += 1;
                }
                Err(_) => {
                    assert!(got.is_err(), "case {case} round {round}");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(graphs, 300);
    assert!(
        runs > 3000 && refused > 50,
        "{runs} runs, {refused} refused"
    );
}
