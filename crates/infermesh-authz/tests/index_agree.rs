//! The rule index never changes a decision: on a seeded random corpus of policies ×
//! requests, `authorize` (which checks only the rules the index selects) decides
//! exactly as a naive evaluation of every rule in file order — built here from
//! `explain`, which evaluates every rule of every policy without the index.

mod common;

use common::{WORKLOAD, config};
use http::{HeaderMap, HeaderName, HeaderValue};
use infermesh_authz::{
    Api, Authorizer, AuthzRequest, Basis, Deciding, Decision, Explanation, ModelOp, Outcome,
};
use infermesh_config::Action;
use serde_json::json;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// `None` (the attribute is absent) about one time in `1 + items.len()`.
    fn maybe<'a>(&mut self, items: &[&'a str]) -> Option<&'a str> {
        let i = self.below(items.len() + 1);
        items.get(i).copied()
    }
}

const MODELS: &str = "
models:
  - {name: m, served_by: w, versions: [{version: 1, label: stable}, {version: 2, label: canary}]}
  - {name: mx, served_by: w, versions: [1]}
  - {name: n, served_by: w, versions: [1, 2]}
";

const REQ_PRINCIPALS: &[&str] = &[
    "https://a.example/alice",
    "https://a.example/bob",
    "https://ab.example/alice",
    "https://b.example/carol",
];
const PEERS: &[&str] = &[
    "cluster.local/ns/ml/sa/x",
    "cluster.local/ns/web/sa/y",
    "cluster.local/ns/ml2/sa/x",
];
const MODEL_NAMES: &[&str] = &["m", "mx", "n", "zz"];
const METHODS: &[&str] = &["GET", "POST", "PUT"];
const PATHS: &[&str] = &[
    "/v1/models/m:predict",
    "/v1/models/n/metadata",
    "/admin",
    "/admin/x",
];
const APIS: &[Api] = &[Api::Predict, Api::Metadata, Api::Status, Api::Classify];
const GROUPS: &[&str] = &["eng", "ops", "eng-lead"];

/// Field → (value patterns, used with and without `not_`).
const FIELDS: &[(&str, &[&str])] = &[
    (
        "request_principals",
        &[
            "https://a.example/alice",
            "https://a.example/*",
            "https://a*",
            "https://ab.example/*",
            "*/alice",
            "*",
        ],
    ),
    (
        "principals",
        &[
            "cluster.local/ns/ml/sa/x",
            "cluster.local/ns/ml*",
            "*/sa/y",
            "*",
        ],
    ),
    ("namespaces", &["ml", "web", "ml*", "*"]),
    ("ip_blocks", &["10.0.0.0/8", "192.0.2.1"]),
];
const OP_FIELDS: &[(&str, &[&str])] = &[
    ("models", &["m", "mx", "n", "m*", "*x", "*"]),
    ("apis", &["predict", "metadata", "status", "*"]),
    ("methods", &["GET", "POST", "P*", "*"]),
    (
        "paths",
        &[
            "/admin",
            "/admin*",
            "/v1/*",
            "*:predict",
            "/v1/models/m:predict",
        ],
    ),
    ("hosts", &["a.example.com", "*.example.com"]),
    ("ports", &["8080", "9000"]),
    ("versions", &["1", "2", "*"]),
    ("labels", &["stable", "canary", "*"]),
    ("signatures", &["serving_default", "other"]),
];
const CONDITIONS: &[(&str, &[&str])] = &[
    ("request.auth.claims[groups]", &["eng", "ops", "eng*", "*"]),
    ("request.auth.principal", &["https://a.example/*", "*/bob"]),
    ("source.namespace", &["ml", "web"]),
    ("request.headers[x-a]", &["1", "*"]),
    ("destination.port", &["8080"]),
];

fn list(rng: &mut Rng, values: &[&str]) -> String {
    let n = 1 + rng.below(2);
    let picked: Vec<String> = (0..n).map(|_| format!("'{}'", rng.pick(values))).collect();
    format!("[{}]", picked.join(", "))
}

/// `{field: [...], not_field: [...]}` with one to three fields of `table`.
fn fields(rng: &mut Rng, table: &[(&str, &[&str])], bias: usize) -> String {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(3) {
        // Bias towards the first (indexable) fields so that most rules are indexed.
        let (name, values) = table[rng.below(bias.min(table.len()))];
        let not = if rng.chance(25) { "not_" } else { "" };
        let field = format!("{not}{name}: ");
        if !out.iter().any(|f: &String| f.starts_with(&field)) {
            out.push(format!("{field}{}", list(rng, values)));
        }
    }
    format!("{{{}}}", out.join(", "))
}

fn rule(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    if rng.chance(70) {
        let n = 1 + rng.below(2);
        let s: Vec<String> = (0..n).map(|_| fields(rng, FIELDS, 4)).collect();
        parts.push(format!("from: [{}]", s.join(", ")));
    }
    if rng.chance(70) {
        let n = 1 + rng.below(2);
        let bias = if rng.chance(50) { 4 } else { OP_FIELDS.len() };
        let o: Vec<String> = (0..n).map(|_| fields(rng, OP_FIELDS, bias)).collect();
        parts.push(format!("to: [{}]", o.join(", ")));
    }
    if rng.chance(40) {
        let (key, values) = CONDITIONS[rng.below(CONDITIONS.len())];
        let which = if rng.chance(25) {
            "not_values"
        } else {
            "values"
        };
        parts.push(format!(
            "when: [{{key: '{key}', {which}: {}}}]",
            list(rng, values)
        ));
    }
    format!("{{{}}}", parts.join(", "))
}

fn mesh(rng: &mut Rng) -> (String, bool) {
    let default_deny = rng.chance(50);
    let mut y = format!("{WORKLOAD}{MODELS}authorization: {{default_deny: {default_deny}}}\n");
    y.push_str("policies:\n");
    for p in 0..1 + rng.below(12) {
        let (action, provider) = match rng.below(10) {
            0..=4 => ("ALLOW", ""),
            5..=7 => ("DENY", ""),
            8 => ("AUDIT", ""),
            _ => ("CUSTOM", ", provider: opa"),
        };
        let rules: Vec<String> = (0..rng.below(4)).map(|_| rule(rng)).collect();
        y.push_str(&format!(
            "  - {{name: p{p}, action: {action}{provider}, rules: [{}]}}\n",
            rules.join(", ")
        ));
    }
    (y, default_deny)
}

/// The decision as Istio's order gives it from every policy's own outcome.
fn naive(ex: &Explanation, default_deny: bool) -> (bool, Basis, Option<Deciding>, bool) {
    let first = |action: Action| {
        ex.policies.iter().find_map(|p| match p.outcome {
            Outcome::Matched { rule, .. } if p.action == action => Some(Deciding {
                policy: p.name.clone(),
                rule,
                action,
            }),
            _ => None,
        })
    };
    let audit = first(Action::Audit).is_some();
    if let Some(d) = first(Action::Custom) {
        return (false, Basis::CustomUnavailable, Some(d), audit);
    }
    if let Some(d) = first(Action::Deny) {
        return (false, Basis::DenyMatched, Some(d), audit);
    }
    if ex.policies.iter().any(|p| p.action == Action::Allow) {
        return match first(Action::Allow) {
            Some(d) => (true, Basis::AllowMatched, Some(d), audit),
            None => (false, Basis::NoAllowMatched, None, audit),
        };
    }
    (!default_deny, Basis::Default, None, audit)
}

#[test]
fn indexed_and_naive_evaluation_agree() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut decisions, mut allowed) = (0, 0);
    for _ in 0..300 {
        let (text, default_deny) = mesh(&mut rng);
        let a = Authorizer::new(&config(&text));
        for _ in 0..60 {
            let claims = json!({"groups": [rng.pick(GROUPS), rng.pick(GROUPS)]});
            let mut headers = HeaderMap::new();
            if rng.chance(50) {
                let v = HeaderValue::from_static(if rng.chance(50) { "1" } else { "2" });
                headers.append(HeaderName::from_static("x-a"), v);
            }
            let model = rng.maybe(MODEL_NAMES).map(|name| ModelOp {
                name,
                version: [None, Some(1), Some(2), Some(3)][rng.below(4)],
                label: rng.maybe(&["stable", "canary", "nope"]),
                signature: rng.maybe(&["", "serving_default", "other"]),
                api: APIS[rng.below(APIS.len())],
            });
            let req = AuthzRequest {
                peer_principal: rng.maybe(PEERS),
                peer_namespace: None,
                request_principal: rng.maybe(REQ_PRINCIPALS),
                claims: rng.chance(80).then_some(&claims),
                source_ip: ["10.1.2.3", "192.0.2.1"][rng.below(2)].parse().ok(),
                host: rng.maybe(&["a.example.com", "B.Example.com", "c.org"]),
                port: [None, Some(8080), Some(9000)][rng.below(3)],
                method: rng.pick(METHODS),
                path: rng.pick(PATHS),
                headers: Some(&headers),
                model,
                ..AuthzRequest::default()
            };
            let ex = a.explain(&req);
            let d = &ex.decision;
            let got = (d.allowed, d.basis, d.deciding.clone(), d.audit);
            assert_eq!(
                got,
                naive(&ex, default_deny),
                "mesh:\n{text}\nrequest: {req:?}"
            );
            // `explain` reuses `authorize`; check it is the plain decision too.
            let plain = Decision {
                reasons: Vec::new(),
                ..d.clone()
            };
            assert_eq!(a.authorize(&req), plain);
            decisions += 1;
            allowed += usize::from(d.allowed);
        }
    }
    // The corpus exercises both outcomes.
    assert!(
        allowed > decisions / 20 && allowed < decisions * 19 / 20,
        "{allowed}/{decisions}"
    );
}
