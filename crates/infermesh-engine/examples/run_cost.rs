//! Measures what a predict costs once its plan is cached: loads a model version
//! directory, runs `serving_default` on `x = [1, 2, 5]` many times (first on one
//! thread, then on every core) and prints the time per run. Informative only.
//!
//! `cargo run --release -p infermesh-engine --example run_cost -- [VERSION_DIR] [RUNS]`
//! (default: the TF Serving half_plus_two test model from shared/testdata).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use infermesh_tfserving::{Tensor, TensorData};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/testdata/tfserving/saved_model_half_plus_two_cpu/00000123"
        ))
    });
    let runs: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(20_000);
    let started = Instant::now();
    let model = infermesh_engine::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    println!("load: {:?}", started.elapsed());
    let input = || {
        let x = Tensor::new(vec![3], TensorData::F32(vec![1.0, 2.0, 5.0])).expect("shape");
        BTreeMap::from([("x".to_string(), x)])
    };
    let started = Instant::now();
    let out = model
        .run("serving_default", input(), &[])
        .expect("first run");
    println!(
        "first run (builds the plan): {:?} -> {:?}",
        started.elapsed(),
        out
    );
    let started = Instant::now();
    for _ in 0..runs {
        model.run("serving_default", input(), &[]).expect("run");
    }
    let per_run = started.elapsed() / runs;
    println!("one thread: {per_run:?} per run over {runs} runs");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..runs {
                    model.run("serving_default", input(), &[]).expect("run");
                }
            });
        }
    });
    let total = runs * threads as u32;
    println!(
        "{threads} threads: {:?} per run ({:.0} runs/s)",
        started.elapsed() / total,
        f64::from(total) / started.elapsed().as_secs_f64()
    );
}
