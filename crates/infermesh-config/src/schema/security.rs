//! Schema of `issuers`, `dev_issuer`, `policies` (rules, `from`, `to`, `when`) and
//! `authorization`. The `from` / `to` fields come from the policy reader's tables
//! (`SOURCE`, `OPERATION`), so their value kinds are the ones the reader checks.

use serde_json::{Value, json};

use super::types::{
    boolean, duration_text, list, non_empty_list, one_of, one_of_any_case, r, text, uint,
};
use super::{Builder, Field, FieldExt};
use crate::conditions::{API_NAMES, CONDITION_KEYS, Kind};
use crate::issuers::{
    DEFAULT_CLOCK_SKEW, DEFAULT_MIN_REFRESH, DEFAULT_REFRESH, FORWARD_CLAIM_KEYS, FROM_HEADER_KEYS,
    ISSUER_KEYS,
};
use crate::policies::{
    ACTIONS, AUTHORIZATION_KEYS, ESCAPED_SLASHES, Naming, OPERATION, POLICY_KEYS, PROVIDER_KEYS,
    RULE_KEYS, SOURCE, Spec, condition_keys, names,
};
use crate::security::AuthzSettings;

/// Top-level keys not described in `schema::mesh`.
pub(super) fn top(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "issuers" => {
            let o = b.object("issuers[]", ISSUER_KEYS, issuer);
            let o = with_one_key_source(o);
            let i = b.def("issuer", "A trusted JWT issuer (Istio jwtRules).", o);
            Field::new(
                list(i),
                "Trusted JWT issuers (Istio RequestAuthentication).",
            )
            .default(json!([]))
        }
        "dev_issuer" => Field::new(
            b.object("dev_issuer", crate::dev_issuer::KEYS, dev_issuer),
            "The development OIDC issuer `infermesh up` runs.",
        ),
        "policies" => {
            let o = b.object("policies[]", POLICY_KEYS, policy);
            let p = b.def(
                "policy",
                "An authorization policy (Istio AuthorizationPolicy semantics).",
                o,
            );
            Field::new(
                list(p),
                "Who may call which model (Istio AuthorizationPolicy); default: deny.",
            )
            .default(json!([]))
        }
        "authorization" => Field::new(
            b.object("authorization", AUTHORIZATION_KEYS, authorization),
            "Default deny and escaped slashes.",
        ),
        _ => super::runtime::top(b, key),
    }
}

/// An issuer gives at most one of `discovery`, `jwks_uri` and `jwks`.
fn with_one_key_source(issuer: Value) -> Value {
    let pairs = [
        ["discovery", "jwks_uri"],
        ["discovery", "jwks"],
        ["jwks_uri", "jwks"],
    ];
    let any_pair: Vec<Value> = pairs.iter().map(|p| json!({ "required": p })).collect();
    super::with(issuer, "not", json!({ "anyOf": any_pair }))
}

fn issuer(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "issuer" => Field::new(text(), "The exact `iss` claim; unique.").required(),
        "discovery" => Field::new(
            boolean(),
            "Keys through <issuer>/.well-known/openid-configuration (the default when \
             neither jwks_uri nor jwks is given).",
        )
        .default(json!(true)),
        "jwks_uri" => Field::new(r("http_url"), "Where the signing keys (JWKS) are fetched."),
        "jwks" => Field::new(
            json!({ "anyOf": [
                { "type": "string" },
                { "type": "object", "required": ["keys"], "properties": { "keys": { "type": "array" } } },
            ] }),
            "The JWKS inline, as JSON text or a mapping; must have a `keys` list.",
        ),
        "audiences" => Field::new(list(text()), "Accepted `aud` values (default: any)."),
        "from_headers" => Field::new(
            non_empty_list(b.object(
                "issuers[].from_headers[]",
                FROM_HEADER_KEYS,
                |_, key| {
                    match key {
                        "name" => {
                            Field::new(r("header_name"), "The header the token is read from.")
                                .required()
                        }
                        "prefix" => Field::new(
                            json!({ "type": "string" }),
                            "Text before the token, e.g. \"Bearer \".",
                        ),
                        _ => None,
                    }
                },
            )),
            "Where the token is read.",
        )
        .default(json!([{ "name": "authorization", "prefix": "Bearer " }])),
        "forward_claims" => Field::new(
            list(b.object(
                "issuers[].forward_claims[]",
                FORWARD_CLAIM_KEYS,
                |_, key| {
                    match key {
                        "claim" => Field::new(text(), "The claim copied.").required(),
                        "header" => {
                            Field::new(r("header_name"), "The upstream request header it goes to.")
                                .required()
                        }
                        _ => None,
                    }
                },
            )),
            "Claims copied to upstream request headers.",
        )
        .default(json!([])),
        "clock_skew" => Field::new(
            r("duration"),
            "Tolerated clock difference for exp / nbf, at most 5m.",
        )
        .default(duration_text(DEFAULT_CLOCK_SKEW)),
        "refresh_interval" => Field::new(r("duration"), "How often the keys are fetched again.")
            .default(duration_text(DEFAULT_REFRESH)),
        "min_refresh_interval" => Field::new(
            r("duration"),
            "An unknown `kid` fetches the keys at most this often.",
        )
        .default(duration_text(DEFAULT_MIN_REFRESH)),
        _ => None,
    }
}

fn dev_issuer(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "listen" => Field::new(
            r("socket_address"),
            "Where it serves; its issuer URL (iss) is http://<listen>.",
        )
        .required(),
        "clients" => Field::new(
            list(b.object(
                "dev_issuer.clients[]",
                crate::dev_issuer::CLIENT_KEYS,
                dev_client,
            )),
            "Clients allowed the client-credentials grant.",
        )
        .default(json!([])),
        _ => None,
    }
}

fn dev_client(_: &mut Builder, key: &str) -> Option<Field> {
    let strings = || list(json!({ "type": "string", "minLength": 1 }));
    match key {
        "client_id" => {
            Field::new(json!({ "type": "string", "minLength": 1 }), "Unique.").required()
        }
        "client_secret" => Field::new(
            json!({ "type": "string", "minLength": 1 }),
            "Sent as form fields or HTTP Basic.",
        )
        .required(),
        "groups" => Field::new(strings(), "The `groups` claim of its tokens.").default(json!([])),
        "audiences" => Field::new(strings(), "The `aud` claim of its tokens.").default(json!([])),
        "ttl" => Field::new(r("duration"), "Token lifetime, at most 7d.").default(json!("1h")),
        _ => None,
    }
}

fn policy(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "name" => Field::new(r("dns_subdomain"), "Unique; a DNS subdomain.").required(),
        "action" => Field::new(
            one_of_any_case(ACTIONS),
            "ALLOW, DENY, AUDIT or CUSTOM (case-insensitive).",
        )
        .default(json!("ALLOW")),
        "provider" => {
            let named = b.object("policies[].provider", PROVIDER_KEYS, |_, key| match key {
                "name" => {
                    Field::new(json!({ "type": "string" }), "The ext_authz provider.").required()
                }
                _ => None,
            });
            Field::new(
                json!({ "anyOf": [{ "type": "string" }, named] }),
                "CUSTOM only, and required there: the ext_authz provider.",
            )
        }
        "rules" => {
            let o = b.object("policies[].rules[]", RULE_KEYS, rule);
            let rule = b.def(
                "rule",
                "Matches when any `from` entry, any `to` entry and every `when` condition \
                 match; a list left out matches everything.",
                o,
            );
            Field::new(
                list(rule),
                "No rules: the policy matches nothing; `rules: [{}]` matches every request.",
            )
            .default(json!([]))
        }
        _ => None,
    }
}

fn rule(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "from" => {
            let keys = names(SOURCE, Naming::Mesh);
            let o = b.object("policies[].rules[].from[]", &keys, source);
            let s = b.def("source", "Who sends the request.", non_empty(o));
            Field::new(non_empty_list(s), "Any entry may match.")
        }
        "to" => {
            let keys = names(OPERATION, Naming::Mesh);
            let o = b.object("policies[].rules[].to[]", &keys, operation);
            let s = b.def("operation", "What the request asks for.", non_empty(o));
            Field::new(non_empty_list(s), "Any entry may match.")
        }
        "when" => {
            let o = b.object(
                "policies[].rules[].when[]",
                &condition_keys(Naming::Mesh),
                condition,
            );
            let o = super::with(
                o,
                "anyOf",
                json!([{ "required": ["values"] }, { "required": ["not_values"] }]),
            );
            let c = b.def("condition", "A condition on a request attribute.", o);
            Field::new(non_empty_list(c), "Every condition must hold.")
        }
        _ => None,
    }
}

/// An entry without fields matches every request: the reader refuses it.
fn non_empty(object: Value) -> Value {
    super::with(object, "minProperties", json!(1))
}

fn source(_: &mut Builder, key: &str) -> Option<Field> {
    let description = match key.strip_prefix("not_").unwrap_or(key) {
        "principals" => "The mTLS peer identity, cluster.local/ns/<ns>/sa/<sa> (no spiffe://).",
        "request_principals" => "<iss>/<sub> of the request's JWT.",
        "namespaces" => "The peer's namespace.",
        "ip_blocks" => "The peer address: a CIDR block or one address (no patterns).",
        _ => return None,
    };
    values_field(SOURCE, key, description)
}

fn operation(_: &mut Builder, key: &str) -> Option<Field> {
    let description = match key.strip_prefix("not_").unwrap_or(key) {
        "hosts" => "The Host / :authority, case-insensitively.",
        "ports" => "The port the request arrived on (numbers, no patterns).",
        "methods" => "GET, POST, ... (upper-case); gRPC is always POST.",
        "paths" => "The normalized path, e.g. /v1/models/m/versions/2:predict.",
        "models" => "The model name; exact names must be models of the mesh.",
        "versions" => "The version the request resolves to.",
        "labels" => "The labels of that version.",
        "signatures" => "The signature name; serving_default when the request names none.",
        "apis" => "predict, classify, regress, multi_inference, metadata, status.",
        _ => return None,
    };
    values_field(OPERATION, key, description)
}

/// A `from` / `to` field: a non-empty list of values of the kind the reader checks.
fn values_field(table: &[Spec], key: &str, description: &'static str) -> Option<Field> {
    let kind = table.iter().find(|s| s.0 == key)?.2;
    let description = if key.starts_with("not_") {
        "Must match none of these values (the negation of the field without not_)."
    } else {
        description
    };
    Field::new(non_empty_list(value_of(kind)), description)
}

fn value_of(kind: Kind) -> Value {
    let number_or_digits = |min: u64, max: u64| json!({ "anyOf": [uint(min, max), { "type": "string", "pattern": "^[0-9]+$" }] });
    match kind {
        Kind::Port => number_or_digits(1, 65_535),
        Kind::Version => json!({ "anyOf": [
            { "type": "integer", "minimum": 0 },
            { "allOf": [r("match_value"), { "pattern": "^\\**[0-9]*\\**$" }] },
        ] }),
        Kind::IpBlock => json!({ "type": "string", "pattern": "^[0-9A-Fa-f.:]+(?:/[0-9]{1,3})?$" }),
        Kind::Api => {
            let mut apis = API_NAMES.to_vec();
            apis.push("*");
            one_of(&apis)
        }
        Kind::Method => json!({ "allOf": [r("match_value"), { "pattern": "^[A-Z*]+$" }] }),
        Kind::Path => json!({ "allOf": [r("match_value"), { "pattern": "^[/*]" }] }),
        Kind::Principal => {
            json!({ "allOf": [r("match_value"), { "not": { "pattern": "^spiffe://" } }] })
        }
        Kind::Any => json!({ "anyOf": [{ "type": "string" }, { "type": "integer" }] }),
        _ => r("match_value"),
    }
}

fn condition(_: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "key" => Field::new(
            condition_key(),
            "The attribute tested, e.g. request.auth.claims[groups], source.ip.",
        )
        .required(),
        "values" => Field::new(
            non_empty_list(value_of(Kind::Any)),
            "The condition holds when the attribute matches any of these.",
        ),
        "not_values" => Field::new(
            non_empty_list(value_of(Kind::Any)),
            "The condition holds when the attribute matches none of these.",
        ),
        _ => None,
    }
}

/// `when[].key`: the reader's [`CONDITION_KEYS`]; `name[<name>]` takes one bracketed
/// name, `name[<name>]…` one or more.
fn condition_key() -> Value {
    let mut exact = Vec::new();
    let mut patterns = Vec::new();
    for key in CONDITION_KEYS {
        match key.split_once('[') {
            None => exact.push(*key),
            Some((prefix, rest)) => {
                let repeat = if rest.ends_with('…') { "+" } else { "" };
                let prefix = prefix.replace('.', "\\.");
                patterns.push(format!("^{prefix}(?:\\[[^\\[\\]]+\\]){repeat}$"));
            }
        }
    }
    let mut any: Vec<Value> = vec![json!({ "enum": exact })];
    any.extend(patterns.into_iter().map(|p| json!({ "pattern": p })));
    json!({ "type": "string", "anyOf": any })
}

fn authorization(_: &mut Builder, key: &str) -> Option<Field> {
    let d = AuthzSettings::default();
    match key {
        "default_deny" => Field::new(
            boolean(),
            "With no ALLOW policy at all: deny every request (true), or allow what no \
             DENY/CUSTOM policy denies (false, Istio's behaviour).",
        )
        .default(json!(d.default_deny)),
        "escaped_slashes" => Field::new(
            one_of(ESCAPED_SLASHES),
            "%2F / %5C in a path: refused with 400, decoded and merged, or kept encoded.",
        )
        .default(json!(ESCAPED_SLASHES[0])),
        _ => None,
    }
}
