//! Istio routing: one `DestinationRule` (a subset per model version, pods labelled
//! `version: "<n>"`) and one `VirtualService` per workload that serves models.
//!
//! Routes of a workload's VirtualService, first match wins:
//! 1. REST paths naming a version or label (`/v1/models/m/versions/2…`,
//!    `/v1/models/m/labels/canary…`) → that version's subset;
//! 2. the model's `pin_header` with a version number or label → that subset;
//! 3. the model's split (weighted subsets), mirror, retries and timeout.
//!
//! Every route of a model carries its timeout, retries and mirror (infermesh applies
//! them to every request of the model), so `istio_files:` can import the export back.
//!
//! A workload serving one model needs no path match in 2 and 3, so gRPC requests
//! follow the pin header and the split too. With several models on one workload only
//! REST requests can be told apart (the gRPC model name is in the body); gRPC requests
//! take the first model's route, and a note says so.

use infermesh_config::{MeshConfig, Model, Route, Workload};
use serde_json::{Value, json};

use crate::names::{VERSION_LABEL, duration, service_host, subset_name};
use crate::{Export, Options, object};

const NETWORKING: &str = "networking.istio.io/v1";

pub(crate) fn export(config: &MeshConfig, options: &Options, export: &mut Export) {
    let mut grpc_version_note = false;
    for workload in config.workloads.values() {
        let models: Vec<&Model> = config
            .models
            .values()
            .filter(|m| m.served_by == workload.name)
            .map(|m| m.as_ref())
            .collect();
        if models.is_empty() {
            continue;
        }
        grpc_version_note = true;
        let host = service_host(workload, options);
        export
            .documents
            .push(destination_rule(config, workload, &host, &models));
        export
            .documents
            .push(virtual_service(workload, &host, &models));
        if models.len() > 1 {
            export.notes.push(format!(
                "workload {}: serves {} models; Istio cannot read the model name of a gRPC \
                 request (it is in the body), so gRPC requests follow the route of model {}.",
                workload.name,
                models.len(),
                models[0].name
            ));
        }
        for model in &models {
            if model.route.sticky_header.is_some() {
                export.notes.push(format!(
                    "model {}: route.sticky is not exported (Istio hashes to endpoints, not \
                     to subsets); the split applies per request.",
                    model.name
                ));
            }
        }
    }
    if grpc_version_note {
        export.notes.push(
            "Routing: gRPC requests that name a version in ModelSpec are routed by the pin \
             header and the split, not by that version (Envoy cannot read the body); REST \
             paths naming a version or label are routed to its subset. Retry budgets are \
             not exported."
                .into(),
        );
    }
}

fn destination_rule(
    config: &MeshConfig,
    workload: &Workload,
    host: &str,
    models: &[&Model],
) -> Value {
    let mut versions: Vec<i64> = models.iter().flat_map(|m| m.versions.clone()).collect();
    versions.sort_unstable();
    versions.dedup();
    let subsets: Vec<Value> = versions
        .iter()
        .map(|v| json!({"name": subset_name(*v), "labels": {VERSION_LABEL: v.to_string()}}))
        .collect();
    let mut traffic = json!({
        "connectionPool": {"tcp": {"connectTimeout": duration(config.limits.connect_timeout)}},
    });
    // Always written (maxEjectionPercent 0: no ejection), so an import reads the
    // mesh's settings back rather than its defaults.
    let od = &config.outlier_detection;
    traffic["outlierDetection"] = json!({
        "consecutive5xxErrors": od.consecutive_failures,
        "baseEjectionTime": duration(od.base_ejection),
        "maxEjectionPercent": od.max_ejection_percent,
    });
    let mut dr = object(
        NETWORKING,
        "DestinationRule",
        &workload.name,
        Some(&workload.namespace),
    );
    dr["spec"] = json!({"host": host, "trafficPolicy": traffic, "subsets": subsets});
    dr
}

fn virtual_service(workload: &Workload, host: &str, models: &[&Model]) -> Value {
    let single = models.len() == 1;
    let mut http = Vec::new();
    for model in models {
        http.extend(path_routes(model, host));
    }
    for model in models {
        http.extend(pin_routes(model, host, single));
    }
    for model in models.iter().filter(|_| !single) {
        let mut route = split_route(model, host);
        route["name"] = Value::from(format!("{}-split", model.name));
        route["match"] = json!([{"uri": model_uri(model, "")}]);
        http.push(route);
    }
    let mut fallback = split_route(models[0], host);
    fallback["name"] = Value::from(format!("{}-split-default", models[0].name));
    http.push(fallback);
    let mut vs = object(
        NETWORKING,
        "VirtualService",
        &workload.name,
        Some(&workload.namespace),
    );
    vs["spec"] = json!({"hosts": [host], "http": http});
    vs
}

/// A regex over the REST paths of a model, with `rest` after the model name.
fn model_uri(model: &Model, rest: &str) -> Value {
    let name = escape(&model.name);
    json!({"regex": format!("/v1/models/{name}{rest}([:/].*)?")})
}

fn escape(s: &str) -> String {
    s.replace('.', "\\.")
}

fn labels_of(model: &Model, version: i64) -> impl Iterator<Item = &String> {
    model
        .labels
        .iter()
        .filter(move |(_, v)| **v == version)
        .map(|(l, _)| l)
}

fn destination(host: &str, version: i64) -> Value {
    json!({"host": host, "subset": subset_name(version)})
}

/// Per version: REST paths naming it or one of its labels → its subset.
fn path_routes(model: &Model, host: &str) -> Vec<Value> {
    model
        .versions
        .iter()
        .map(|&v| {
            let mut matches = vec![json!({"uri": model_uri(model, &format!("/versions/{v}"))})];
            for label in labels_of(model, v) {
                let rest = format!("/labels/{}", escape(label));
                matches.push(json!({"uri": model_uri(model, &rest)}));
            }
            let mut r = json!({
                "name": format!("{}-{}-path", model.name, subset_name(v)),
                "match": matches,
                "route": [{"destination": destination(host, v)}],
                "timeout": duration(model.route.timeout),
                "retries": retries(&model.route),
            });
            add_mirror(&mut r, &model.route, host, Some(v));
            r
        })
        .collect()
}

/// Routes for the pin header: per version, the number and every label of it.
fn pin_routes(model: &Model, host: &str, single: bool) -> Vec<Value> {
    let Some(header) = &model.route.pin_header else {
        return Vec::new();
    };
    let header = header.as_str();
    model
        .versions
        .iter()
        .map(|&v| {
            let values = std::iter::once(v.to_string()).chain(labels_of(model, v).cloned());
            let matches: Vec<Value> = values
                .map(|value| {
                    let mut m = json!({"headers": {header: {"exact": value}}});
                    if !single {
                        m["uri"] = model_uri(model, "");
                    }
                    m
                })
                .collect();
            let mut r = json!({
                "name": format!("{}-{}-pin", model.name, subset_name(v)),
                "match": matches,
                "route": [{"destination": destination(host, v)}],
                "timeout": duration(model.route.timeout),
                "retries": retries(&model.route),
            });
            add_mirror(&mut r, &model.route, host, Some(v));
            r
        })
        .collect()
}

/// The split: weighted subsets, mirror, retries, timeout.
fn split_route(model: &Model, host: &str) -> Value {
    let route = &model.route;
    let weighted: Vec<Value> = route
        .split
        .iter()
        .map(|(v, w)| json!({"destination": destination(host, *v), "weight": w}))
        .collect();
    let mut r = json!({
        "route": weighted,
        "timeout": duration(route.timeout),
        "retries": retries(route),
    });
    add_mirror(&mut r, route, host, None);
    r
}

/// The mirror, as infermesh applies it: to every inference request of the model
/// except those already served by the mirror's version.
fn add_mirror(r: &mut Value, route: &Route, host: &str, serving: Option<i64>) {
    if let Some(mirror) = route.mirror.as_ref().filter(|m| Some(m.version) != serving) {
        r["mirror"] = destination(host, mirror.version);
        r["mirrorPercentage"] = json!({"value": mirror.percent});
    }
}

/// `retries`: Istio's `attempts` are retries after the first try, as in the mesh.
fn retries(route: &Route) -> Value {
    let p = &route.retries;
    let mut on = Vec::new();
    if p.on_connect_failure {
        on.push("connect-failure");
    }
    if p.on_unavailable && p.idempotent {
        // gRPC UNAVAILABLE, and HTTP 503 for REST (Istio reads status codes here).
        on.extend(["unavailable", "503"]);
    }
    if p.attempts == 0 || on.is_empty() {
        return json!({"attempts": 0});
    }
    json!({"attempts": p.attempts, "retryOn": on.join(",")})
}
