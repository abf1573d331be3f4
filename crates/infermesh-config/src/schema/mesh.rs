//! Schema of the top level, `workloads`, `gateway`, `limits`, `outlier_detection` and
//! `models` (with `route` and `retries`): one `match` per reader key list.

use serde_json::{Value, json};

use super::types::{
    boolean, duration_text, list, non_empty_list, one_of, r, size_text, text, uint,
};
use super::{Builder, Field, FieldExt};
use crate::mesh::{
    DEFAULT_DNS_REFRESH, DEFAULT_TRUST_DOMAIN, GATEWAY_KEYS, LIMIT_KEYS, MODEL_SERVER_KEYS,
    OUTLIER_KEYS, UPSTREAM_KEYS, WORKLOAD_KEYS,
};
use crate::model::{Limits, OutlierDetection, RetryPolicy};
use crate::models::{MODEL_KEYS, RETRY_KEYS, ROUTE_KEYS};
use crate::mtls::{GATEWAY_TLS_KEYS, MTLS_MODES};

/// `models[].versions[]` as a mapping. The reader (models.rs) lists these inline;
/// `tests::inline_key_lists_match_the_reader` checks they agree.
pub(super) const VERSION_KEYS: &[&str] = &["version", "label"];
/// `route.sticky` (inline in models.rs, checked the same way).
pub(super) const STICKY_KEYS: &[&str] = &["header"];
/// `route.mirror` (inline in models.rs, checked the same way).
pub(super) const MIRROR_KEYS: &[&str] = &["to", "percent"];
/// `retries.on` values (models.rs `RETRY_ON`, checked the same way).
pub(super) const RETRY_ON: &[&str] = &["connect-failure", "unavailable"];
/// The route timeout when none is given (models.rs `DEFAULT_TIMEOUT`).
const DEFAULT_TIMEOUT: &str = "30s";

pub(super) fn top(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "trust_domain" => Field::new(
            json!({ "type": "string", "pattern": "^[a-z0-9._-]{1,255}$" }),
            "SPIFFE trust domain: lower-case letters, digits, `.`, `-`, `_`; identities are \
             spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>.",
        )
        .default(json!(DEFAULT_TRUST_DOMAIN)),
        "workloads" => {
            let o = b.object("workloads[]", WORKLOAD_KEYS, workload);
            let w = b.def(
                "workload",
                "A model server with its own sidecar and identity.",
                o,
            );
            Field::new(list(w), "Model servers, each with a sidecar in front.").default(json!([]))
        }
        "models" => {
            let o = b.object("models[]", MODEL_KEYS, model);
            let m = b.def("model", "A model, its versions and its route.", o);
            Field::new(
                list(m),
                "The models served, and how their traffic is routed.",
            )
            .default(json!([]))
        }
        "gateway" => Field::new(
            b.object("gateway", GATEWAY_KEYS, gateway),
            "Where the gateway accepts client traffic (default: no listeners).",
        ),
        "limits" => Field::new(
            b.object("limits", LIMIT_KEYS, limits),
            "Resource limits for gateways and sidecars alike.",
        ),
        "outlier_detection" => Field::new(
            b.object("outlier_detection", OUTLIER_KEYS, outlier),
            "Passive ejection of failing endpoints.",
        ),
        "dns_refresh" => Field::new(
            r("duration"),
            "How often host-name addresses are resolved again.",
        )
        .default(duration_text(DEFAULT_DNS_REFRESH)),
        "istio_files" => Field::new(
            list(text()),
            "Istio YAML files to add, relative to this file: AuthorizationPolicy, \
             RequestAuthentication, PeerAuthentication, VirtualService and DestinationRule \
             (docs/istio.md, \"Istio YAML as input\").",
        )
        .default(json!([])),
        _ => super::security::top(b, key),
    }
}

fn workload(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "name" => Field::new(
            r("dns_label"),
            "Unique workload name: a DNS label (a-z, 0-9, -), at most 63 characters.",
        )
        .required(),
        "namespace" => Field::new(
            r("dns_label"),
            "Kubernetes namespace, part of the identity.",
        )
        .default(json!("default")),
        "service_account" => Field::new(
            r("dns_subdomain"),
            "Kubernetes service account, part of the identity.",
        )
        .default(json!("default")),
        "listen" => Field::new(
            r("socket_address"),
            "Where this workload's sidecar listens (REST and gRPC on one port).",
        )
        .required(),
        "upstream" => Field::new(
            b.object("workloads[].upstream", UPSTREAM_KEYS, upstream),
            "The model server's TF Serving ports.",
        )
        .required(),
        "endpoints" => Field::new(
            json!({ "type": "array", "items": r("address"), "minItems": 1, "uniqueItems": true }),
            "Where gateways reach this workload's sidecars (default: [listen]), e.g. the \
             headless service tfserving-a.ml.svc:15006.",
        ),
        "model_server" => Field::new(
            b.object(
                "workloads[].model_server",
                MODEL_SERVER_KEYS,
                |_, key| match key {
                    "model_config_file" => Field::new(
                        text(),
                        "The TF Serving --model_config_file the embedded model server serves, \
                     relative to this file.",
                    )
                    .required(),
                    _ => None,
                },
            ),
            "For `infermesh up`: run the embedded model server on the upstream addresses.",
        ),
        "admin" => Field::new(
            r("socket_address"),
            "The sidecar's admin listener when it runs on its own: /healthz, /readyz, /metrics.",
        ),
        "mtls" => Field::new(
            one_of(MTLS_MODES),
            "Peer authentication of this workload's sidecar, as Istio's PeerAuthentication.",
        )
        .default(json!("PERMISSIVE")),
        "allowed_peers" => Field::new(
            list(json!({
                "type": "string",
                "pattern": "^(?:[^/*]+/ns/[^/*]+/sa/[^/*]+|[^*]*\\*)$",
                "not": { "pattern": "^spiffe://" },
            })),
            "The mTLS callers the sidecar accepts: <trust_domain>/ns/<namespace>/sa/<service_account>, \
             or a prefix ending in `*` (default: any identity of the trust domain).",
        ),
        _ => None,
    }
}

fn upstream(_: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "rest" => Field::new(r("address"), "The model server's TF Serving REST port.").required(),
        "grpc" => Field::new(r("address"), "The model server's TF Serving gRPC port.").required(),
        _ => None,
    }
}

fn gateway(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "listen" => Field::new(
            list(r("socket_address")),
            "The gateway listeners; each serves TF Serving REST (HTTP/1.1) and gRPC (HTTP/2).",
        )
        .default(json!([])),
        "admin" => Field::new(
            r("socket_address"),
            "The gateway's admin listener: /healthz, /readyz, /metrics, POST /reload. No \
             authentication: keep it on loopback.",
        ),
        "tls" => Field::new(
            b.object("gateway.tls", GATEWAY_TLS_KEYS, gateway_tls),
            "Serve TLS on every client-facing listener.",
        ),
        _ => None,
    }
}

fn gateway_tls(_: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "cert" => Field::new(text(), "The certificate chain (PEM, leaf first).").required(),
        "key" => Field::new(text(), "Its private key (PEM: PKCS#8, SEC1 or PKCS#1).").required(),
        "client_ca" => Field::new(
            text(),
            "CA certificates (PEM) that client certificates are verified against.",
        ),
        "require_client_cert" => Field::new(
            boolean(),
            "Refuse clients without a valid client certificate; needs client_ca.",
        )
        .default(json!(false)),
        _ => None,
    }
}

fn limits(_: &mut Builder, key: &str) -> Option<Field> {
    let d = Limits::default();
    match key {
        "max_request_body_bytes" => Field::new(r("size"), "Larger request bodies are refused.")
            .default(size_text(d.max_request_body_bytes)),
        "max_header_bytes" => Field::new(r("size"), "The limit on a request's headers.")
            .default(size_text(d.max_header_bytes as u64)),
        "max_concurrent_streams" => {
            Field::new(uint(1, u32::MAX.into()), "HTTP/2 streams per connection.")
                .default(json!(d.max_concurrent_streams))
        }
        "max_connections" => Field::new(uint(1, u64::MAX), "Open client connections.")
            .default(json!(d.max_connections)),
        "connect_timeout" => Field::new(
            r("duration"),
            "The time allowed to connect to an endpoint or model server.",
        )
        .default(duration_text(d.connect_timeout)),
        "drain_timeout" => Field::new(
            r("duration"),
            "How long in-flight requests may finish at shutdown.",
        )
        .default(duration_text(d.drain_timeout)),
        _ => None,
    }
}

fn outlier(_: &mut Builder, key: &str) -> Option<Field> {
    let d = OutlierDetection::default();
    match key {
        "consecutive_failures" => Field::new(
            uint(1, u32::MAX.into()),
            "This many connect failures or 5xx answers in a row eject an endpoint.",
        )
        .default(json!(d.consecutive_failures)),
        "base_ejection" => Field::new(
            r("duration"),
            "An ejection lasts this long times the number of ejections in a row, at most 10x.",
        )
        .default(duration_text(d.base_ejection)),
        "max_ejection_percent" => Field::new(
            uint(0, 100),
            "Never eject more than this share of a workload's endpoints (0 turns ejection off).",
        )
        .default(json!(d.max_ejection_percent)),
        _ => None,
    }
}

fn model(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "name" => Field::new(
            r("model_name"),
            "The TF Serving model name, unique: letters, digits, `_`, `-` and `.`.",
        )
        .required(),
        "served_by" => Field::new(text(), "The name of the workload that serves it.").required(),
        "versions" => {
            let entry = b.object("models[].versions[]", VERSION_KEYS, version);
            Field::new(
                non_empty_list(json!({
                    "anyOf": [{ "type": "integer", "minimum": 0 }, entry],
                })),
                "The versions served: numbers (`1`) or `{version: 1, label: stable}`.",
            )
            .required()
        }
        "route" => {
            let o = b.object("models[].route", ROUTE_KEYS, route);
            let route = b.def(
                "route",
                "How requests are routed between a model's versions (default: all to the \
                 highest version, 30s timeout, default retries).",
                o,
            );
            Field::new(route, "How requests are routed between the versions.")
        }
        _ => None,
    }
}

fn version(_: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "version" => Field::new(
            json!({ "type": "integer", "minimum": 0 }),
            "The version number.",
        )
        .required(),
        "label" => Field::new(
            json!({ "allOf": [r("model_name"), { "not": { "pattern": "^[0-9]+$" } }] }),
            "The TF Serving version label, unique within the model; not all digits.",
        ),
        _ => None,
    }
}

/// A version number (`1`, `"1"`) or label (`canary`).
fn version_ref() -> Value {
    json!({ "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "string", "minLength": 1 }] })
}

fn route(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "split" => Field::new(
            json!({
                "type": "object",
                "additionalProperties": uint(0, 100),
                "propertyNames": { "minLength": 1 },
            }),
            "Weights (0-100, adding up to 100) per version number or label, for requests that \
             name no version (default: the highest version, 100).",
        ),
        "pin_header" => Field::new(
            r("header_name"),
            "A request header whose value, a version number or label, picks the version.",
        ),
        "sticky" => Field::new(
            b.object("models[].route.sticky", STICKY_KEYS, |_, key| match key {
                "header" => Field::new(
                    r("header_name"),
                    "Keeps each caller on one version of the split, by a hash of this header.",
                )
                .required(),
                _ => None,
            }),
            "Keeps each caller on one version of the split.",
        ),
        "mirror" => Field::new(
            b.object("models[].route.mirror", MIRROR_KEYS, |_, key| match key {
                "to" => Field::new(
                    version_ref(),
                    "The version (number or label) that gets a copy; its answer is discarded.",
                )
                .required(),
                "percent" => Field::new(
                    json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 100 }),
                    "The share of requests copied: more than 0, at most 100.",
                )
                .required(),
                _ => None,
            }),
            "Sends a copy of some requests to another version (Istio's mirror).",
        ),
        "timeout" => Field::new(
            r("duration"),
            "The limit for the whole request at the gateway, retries included.",
        )
        .default(json!(DEFAULT_TIMEOUT)),
        "retries" => {
            let o = b.object("models[].route.retries", RETRY_KEYS, retries);
            let retries = b.def("retries", "When a failed attempt is tried again.", o);
            Field::new(retries, "When a failed attempt is tried again.")
        }
        _ => None,
    }
}

fn retries(_: &mut Builder, key: &str) -> Option<Field> {
    let d = RetryPolicy::default();
    match key {
        "attempts" => Field::new(
            uint(0, 10),
            "Attempts after the first; 0 turns retries off.",
        )
        .default(json!(d.attempts)),
        "on" => {
            let on: Vec<&str> = [
                (RETRY_ON[0], d.on_connect_failure),
                (RETRY_ON[1], d.on_unavailable),
            ]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
            Field::new(
                list(one_of(RETRY_ON)),
                "Which failures are retried; `unavailable` only when idempotent: true.",
            )
            .default(json!(on))
        }
        "idempotent" => Field::new(
            boolean(),
            "Running this route's requests twice is safe (e.g. a pure predict).",
        )
        .default(json!(d.idempotent)),
        "budget_percent" => Field::new(
            r("percent"),
            "Retries may add at most this share of the route's recent requests...",
        )
        .default(json!((d.budget_ratio * 100.0).round() as u64)),
        "min_retries_per_second" => Field::new(
            uint(0, u32::MAX.into()),
            "...plus this many retries per second.",
        )
        .default(json!(d.min_retries_per_second)),
        _ => None,
    }
}
