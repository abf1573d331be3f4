//! Schema of the sections fixed at start: `identity`, `telemetry` and `audit`.

use serde_json::{Value, json};

use super::types::{boolean, duration_text, one_of, one_of_any_case, r, size_text, text, uint};
use super::{Builder, Field, FieldExt};
use crate::audit::{ALLOWS, CHECKPOINT_KEYS, DURABILITY, PROTOCOLS, ROTATE_KEYS, SINK_KEYS};
use crate::mtls::{
    CA_KINDS, FILES_KEYS, GATEWAY_IDENTITY_KEYS, IDENTITY_KEYS, IdentityConfig, SERVICE_KEYS,
};
use crate::telemetry::{ACCESS_LOG_FIELDS, LOG_KEYS, TRACE_KEYS};

/// `tracing.protocol` values the reader accepts (`http/protobuf` is `http`).
pub(super) const OTLP_PROTOCOLS: &[&str] = &["grpc", "http", "http/protobuf"];

/// Top-level keys not described in `schema::mesh` or `schema::security`.
pub(super) fn top(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "identity" => {
            let o = b.object("identity", IDENTITY_KEYS, identity);
            Field::new(
                with_ca_rules(o),
                "Workload certificates and mTLS between gateway and sidecars.",
            )
        }
        "telemetry" => Field::new(
            b.object("telemetry", crate::telemetry::KEYS, telemetry),
            "Access log and OTLP trace export (metrics need no settings).",
        ),
        "audit" => Field::new(
            b.object("audit", crate::audit::KEYS, audit),
            "The tamper-evident audit trail; without it no trail is written.",
        ),
        _ => None,
    }
}

/// `files` only (and always) with `ca: files`, `service` with `ca: service`, `dir`
/// only with the built-in CA.
fn with_ca_rules(identity: Value) -> Value {
    let ca_is =
        |kind: &str| json!({ "required": ["ca"], "properties": { "ca": { "const": kind } } });
    let rules = json!([
        { "if": ca_is("files"), "then": { "required": ["files"] } },
        { "if": ca_is("service"), "then": { "required": ["service"] } },
        { "if": { "required": ["files"] }, "then": ca_is("files") },
        { "if": { "required": ["service"] }, "then": ca_is("service") },
        { "if": { "required": ["dir"] }, "then": { "properties": { "ca": { "const": "builtin" } } } },
    ]);
    super::with(identity, "allOf", rules)
}

fn identity(b: &mut Builder, key: &str) -> Option<Field> {
    let d = IdentityConfig::default();
    match key {
        "ca" => Field::new(
            one_of(CA_KINDS),
            "Where certificates come from: the built-in CA, files an external CA keeps \
             current, or the CA service (infermesh ca serve).",
        )
        .default(json!(CA_KINDS[0])),
        "dir" => Field::new(
            text(),
            "ca: builtin: the CA directory (default .infermesh/ca), relative to this file.",
        ),
        "files" => Field::new(
            b.object("identity.files", FILES_KEYS, |_, key| match key {
                "cert" => {
                    Field::new(text(), "The workload certificate (PEM, leaf first).").required()
                }
                "key" => Field::new(text(), "Its private key (PEM).").required(),
                "bundle" => {
                    Field::new(text(), "The roots to trust (PEM, several allowed).").required()
                }
                _ => None,
            }),
            "ca: files: certificate, key and bundle files; {namespace} and {service_account} \
             are replaced by the identity's own.",
        ),
        "service" => Field::new(
            b.object("identity.service", SERVICE_KEYS, |_, key| match key {
                "address" => Field::new(r("address"), "The CA service, host:port.").required(),
                "token_file" => Field::new(
                    text(),
                    "The bearer token sent with each CSR, read again at each renewal.",
                )
                .required(),
                "bundle" => Field::new(
                    text(),
                    "Roots (PEM) to verify the CA service's certificate with.",
                )
                .required(),
                _ => None,
            }),
            "ca: service: the CA service and how to authenticate to it.",
        ),
        "cert_ttl" => Field::new(
            r("duration"),
            "Lifetime of certificates the built-in CA issues, from 2s to 90d.",
        )
        .default(duration_text(d.cert_ttl)),
        "renew_at" => Field::new(
            json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 0.9 }),
            "Renew a certificate at this fraction of its lifetime (above 0, at most 0.9).",
        )
        .default(json!(d.renew_at)),
        "min_tls" => Field::new(
            json!({ "enum": ["1.3", "1.2", 1.3, 1.2] }),
            "The lowest TLS version mesh hops and the gateway's TLS listeners accept.",
        )
        .default(json!("1.3")),
        "gateway" => Field::new(
            b.object("identity.gateway", GATEWAY_IDENTITY_KEYS, gateway_identity),
            "The gateway's identity: the only one that may forward the end user's identity.",
        ),
        _ => None,
    }
}

fn gateway_identity(_: &mut Builder, key: &str) -> Option<Field> {
    let d = IdentityConfig::default();
    match key {
        "namespace" => Field::new(r("dns_label"), "The gateway's namespace.")
            .default(json!(d.gateway_namespace)),
        "service_account" => Field::new(r("dns_subdomain"), "The gateway's service account.")
            .default(json!(d.gateway_service_account)),
        _ => None,
    }
}

fn telemetry(b: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "enabled" => Field::new(
            boolean(),
            "false records nothing (no metrics, spans or access log) - for measuring what \
             telemetry costs.",
        )
        .default(json!(true)),
        "access_log" => Field::new(
            b.object("telemetry.access_log", LOG_KEYS, |_, key| match key {
                "path" => Field::new(
                    json!({ "type": "string", "minLength": 1 }),
                    "stdout, or a file appended to (relative to this file).",
                )
                .default(json!("stdout")),
                "fields" => Field::new(
                    json!({
                        "type": "array",
                        "items": one_of(ACCESS_LOG_FIELDS),
                        "minItems": 1,
                        "uniqueItems": true,
                    }),
                    "Which fields each line carries, in this order (default: all).",
                ),
                _ => None,
            }),
            "The one-JSON-line-per-request access log.",
        ),
        "tracing" => Field::new(
            b.object("telemetry.tracing", TRACE_KEYS, tracing),
            "OTLP span export.",
        ),
        _ => None,
    }
}

fn tracing(_: &mut Builder, key: &str) -> Option<Field> {
    match key {
        "otlp" => Field::new(
            json!({ "type": "string", "pattern": "^http://[^/\\s]+" }),
            "The OpenTelemetry collector, http://host:port (https is not supported yet).",
        )
        .required(),
        "protocol" => Field::new(
            one_of(OTLP_PROTOCOLS),
            "OTLP/gRPC, or OTLP/HTTP with protobuf bodies to <otlp>/v1/traces.",
        )
        .default(json!("grpc")),
        "sampling" => {
            Field::new(r("percent"), "Share of new traces recorded, in percent.").default(json!(1))
        }
        "batch_size" => {
            Field::new(uint(1, 10_000), "Spans per export request at most.").default(json!(512))
        }
        "batch_interval" => Field::new(
            r("duration"),
            "A span waits at most this long for its batch.",
        )
        .default(json!("1s")),
        "queue" => Field::new(
            uint(1, 1_000_000),
            "Spans held while the collector is slow or down; more are dropped and counted.",
        )
        .default(json!(2048)),
        "service_name" => Field::new(
            json!({ "type": "string" }),
            "The service.name resource attribute.",
        )
        .default(json!("infermesh")),
        _ => None,
    }
}

fn audit(b: &mut Builder, key: &str) -> Option<Field> {
    let non_empty = || json!({ "type": "string", "minLength": 1 });
    match key {
        "dir" => Field::new(
            non_empty(),
            "Where the trail's files go, relative to the working directory.",
        )
        .default(json!(crate::audit::DEFAULT_AUDIT_DIR)),
        "durability" => Field::new(
            one_of_any_case(DURABILITY),
            "strict: no answer before its decision record is on disk; relaxed: fsync every \
             flush_interval.",
        )
        .default(json!("relaxed")),
        "flush_interval" => Field::new(
            r("duration"),
            "relaxed: the longest a record waits in memory before it is written and fsynced.",
        )
        .default(json!("1s")),
        "checkpoint" => Field::new(
            b.object("audit.checkpoint", CHECKPOINT_KEYS, |_, key| match key {
                "every" => Field::new(
                    uint(1, 1_000_000),
                    "A signed checkpoint after this many records...",
                )
                .default(json!(1000)),
                "interval" => Field::new(
                    r("duration"),
                    "...or this long after the first record no checkpoint covers yet.",
                )
                .default(json!("10s")),
                _ => None,
            }),
            "When signed checkpoints are written.",
        ),
        "rotate" => Field::new(
            b.object("audit.rotate", ROTATE_KEYS, |_, key| match key {
                "max_bytes" => Field::new(
                    r("size"),
                    "A new file once the current one is this large (at least 4KiB)...",
                )
                .default(size_text(64 << 20)),
                "max_age" => Field::new(
                    r("duration"),
                    "...or once this process has written to it this long.",
                )
                .default(json!("24h")),
                _ => None,
            }),
            "When a new trail file is started.",
        ),
        "record_allows" => Field::new(
            one_of_any_case(ALLOWS),
            "Which allowed requests get a decision record; denials are always recorded.",
        )
        .default(json!("all")),
        "signing_key" => Field::new(
            non_empty(),
            "The Ed25519 checkpoint key, PKCS#8 PEM (default <dir>/audit.key).",
        ),
        "sink" => Field::new(
            b.object("audit.sink", SINK_KEYS, |_, key| match key {
                "url" => Field::new(
                    json!({ "type": "string", "pattern": "^http://" }),
                    "Also ship every record to this plain http:// endpoint.",
                )
                .required(),
                "protocol" => Field::new(
                    one_of_any_case(PROTOCOLS),
                    "http: POST batches as JSON lines; otlp: OTLP/HTTP JSON logs.",
                )
                .default(json!("http")),
                "queue" => Field::new(
                    uint(1, 10_000_000),
                    "Records waiting to be shipped before new ones are dropped from the \
                     shipment.",
                )
                .default(json!(10_000)),
                _ => None,
            }),
            "Ship every record to a SIEM intake or OpenTelemetry collector.",
        ),
        _ => None,
    }
}
