//! One authorization decision at 1, 100 and 1,000 rules (target: ≤ 5 µs at 1,000).
//!
//! * `indexed`: 90% of the rules name their models (the usual shape, found through the
//!   model index), 10% are mesh-wide DENY rules every request is checked against;
//!   the request matches the last ALLOW rule.
//! * `unindexed`: no rule names a model (all apply to every model); each is found
//!   through its request-principal prefix instead (before that index: every rule was
//!   evaluated).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use infermesh_authz::{Api, Authorizer, AuthzRequest, ModelOp};
use serde_json::json;

fn mesh(rules: usize, indexed: bool) -> String {
    let models = (rules / 3).max(1);
    let mut y = String::from(
        "workloads:\n  - {name: w, listen: 127.0.0.1:15006, \
         upstream: {rest: 127.0.0.1:9501, grpc: 127.0.0.1:9500}}\nmodels:\n",
    );
    for m in 0..models {
        y.push_str(&format!(
            "  - {{name: m{m}, served_by: w, versions: [1, 2]}}\n"
        ));
    }
    y.push_str("policies:\n");
    for i in 0..rules {
        let generic_deny = indexed && i % 10 == 5;
        if generic_deny {
            y.push_str(&format!(
                "  - {{name: d{i}, action: DENY, rules: [{{from: [{{ip_blocks: [198.51.{}.0/24]}}]}}]}}\n",
                i % 250
            ));
            continue;
        }
        let to = if indexed {
            format!(
                "to: [{{models: [m{}], apis: [predict, metadata]}}], ",
                i % models
            )
        } else {
            "to: [{apis: [predict, metadata]}], ".to_owned()
        };
        y.push_str(&format!(
            "  - {{name: p{i}, action: ALLOW, rules: [{{from: [{{request_principals: \
             ['https://issuer{i}.example.com/*']}}], {to}when: [{{key: \
             'request.auth.claims[realm_access][roles]', values: [role{i}]}}]}}]}}\n"
        ));
    }
    y
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("authorize");
    for indexed in [true, false] {
        for rules in [1usize, 100, 1000] {
            let text = mesh(rules, indexed);
            let config = infermesh_config::parse(&text, Path::new("bench.yaml"))
                .unwrap_or_else(|e| panic!("{e}"));
            let a = Authorizer::new(&config);
            let last = (0..rules)
                .rev()
                .find(|i| !(indexed && i % 10 == 5))
                .unwrap_or(0);
            let principal = format!("https://issuer{last}.example.com/alice");
            let claims = json!({"realm_access": {"roles": ["viewer", format!("role{last}")]}});
            let model = format!("m{}", last % (rules / 3).max(1));
            let req = AuthzRequest {
                request_principal: Some(&principal),
                claims: Some(&claims),
                source_ip: "10.0.0.1".parse().ok(),
                method: "POST",
                path: "/v1/models/m/versions/1:predict",
                model: Some(ModelOp {
                    name: &model,
                    version: Some(1),
                    label: None,
                    signature: Some(""),
                    api: Api::Predict,
                }),
                ..AuthzRequest::default()
            };
            assert!(
                a.authorize(&req).allowed,
                "the bench request must be allowed"
            );
            let name = format!("{}/{rules}", if indexed { "indexed" } else { "unindexed" });
            g.bench_function(name, |b| b.iter(|| black_box(a.authorize(black_box(&req)))));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
