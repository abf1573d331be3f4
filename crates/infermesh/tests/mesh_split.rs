//! The weighted canary split, measured through the real binary: 10,000 unversioned REST
//! predicts on a 90/10 split land within ±2 percentage points, counted both by the
//! `x-infermesh-model-version` header and by the answer itself.

mod common;

use std::thread;
use std::time::Instant;

use common::compact;
use common::mesh::{ERROR_HEADER, Mesh, MeshSpec, VERSION_HEADER};

const REQUESTS: usize = 10_000;
/// Concurrent keep-alive connections.
const WORKERS: usize = 4;
const PER_WORKER: usize = REQUESTS / WORKERS;
const _: () = assert!(REQUESTS.is_multiple_of(WORKERS));

#[derive(Default, Debug)]
struct Counts {
    /// By the version header: [v1, v2].
    header: [usize; 2],
    /// By the answer value: [0.5x+2, 0.5x+3].
    answer: [usize; 2],
}

#[test]
fn ninety_ten_split_holds_over_ten_thousand_requests() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 90, canary: 10}, timeout: 30s",
    ));
    let url = mesh.gateway_url("/v1/models/half_plus_two:predict");
    let started = Instant::now();
    let counts: Vec<Counts> = thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let url = url.clone();
                let mesh = &mesh;
                s.spawn(move || {
                    // One agent per worker: one keep-alive connection to the gateway.
                    let agent = common::http_agent();
                    let mut c = Counts::default();
                    for i in 0..PER_WORKER {
                        let r = common::http_call(
                            &agent,
                            "POST",
                            &url,
                            Some(br#"{"instances": [1.0]}"#),
                            &[],
                        )
                        .unwrap_or_else(|e| panic!("worker {w} request {i}: {e}\n{}", mesh.logs()));
                        assert_eq!(
                            (r.status, r.header(ERROR_HEADER)),
                            (200, None),
                            "worker {w} request {i}: {r:?}"
                        );
                        let header = r.header(VERSION_HEADER);
                        let answer = compact(&r.body);
                        match (header, answer.as_str()) {
                            (Some("1"), r#"{"predictions":[2.5]}"#) => {
                                c.header[0] += 1;
                                c.answer[0] += 1;
                            }
                            (Some("2"), r#"{"predictions":[3.5]}"#) => {
                                c.header[1] += 1;
                                c.answer[1] += 1;
                            }
                            other => panic!(
                                "worker {w} request {i}: header and answer disagree or are \
                                 unknown: {other:?}"
                            ),
                        }
                    }
                    c
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let total = counts.iter().fold(Counts::default(), |mut acc, c| {
        for i in 0..2 {
            acc.header[i] += c.header[i];
            acc.answer[i] += c.answer[i];
        }
        acc
    });
    eprintln!(
        "{REQUESTS} requests over {WORKERS} connections in {elapsed:?}: by header {:?}, by answer {:?}",
        total.header, total.answer
    );
    assert_eq!(total.header.iter().sum::<usize>(), REQUESTS);
    assert_eq!(total.answer.iter().sum::<usize>(), REQUESTS);
    for (what, [v1, v2]) in [("header", total.header), ("answer", total.answer)] {
        let canary = 100.0 * v2 as f64 / REQUESTS as f64;
        assert!(
            (8.0..=12.0).contains(&canary),
            "by {what}: canary got {canary:.2}% ({v2} of {REQUESTS}, stable {v1}); want 10 ± 2"
        );
    }

    // The model server saw the same split (request_count by model_version).
    let (v1, v2) = mesh.request_counts();
    assert!(
        v1 >= total.answer[0] as f64 && v2 >= total.answer[1] as f64,
        "model server request_count v1 {v1} v2 {v2}, mesh counted {:?}",
        total.answer
    );
}
