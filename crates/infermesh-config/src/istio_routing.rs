//! Reading Istio `VirtualService` and `DestinationRule` documents
//! (`networking.istio.io/v1`, `v1beta1`, `v1alpha3`) into plain positioned values.
//! Nothing here knows the mesh's workloads or models: [`crate::istio_apply`] resolves
//! hosts, subsets and versions. Every field infermesh cannot honour, and every match
//! that is not one infermesh routes on, is recorded in [`Refused`] so the file fails
//! with one error listing them all.

use std::time::Duration;

use http::HeaderName;

use crate::istio::{Refused, istio_fields};
use crate::model::{Mirror, RetryPolicy};
use crate::read::{Cx, child, header_name, index, list, lookup, percent, string, uint32};
use crate::yaml::{Node, Pos, Value};

/// More retries than this are refused, as in `mesh.yaml`.
const MAX_ATTEMPTS: u32 = 10;

/// One `VirtualService`.
pub(crate) struct VirtualService {
    pub file: String,
    pub at: Pos,
    /// `<namespace>/<name>` (or `<name>`), for messages.
    pub name: String,
    pub namespace: Option<String>,
    pub hosts: Vec<(String, Pos, String)>,
    pub http: Vec<HttpRoute>,
}

/// One `spec.http[]` entry.
pub(crate) struct HttpRoute {
    pub at: Pos,
    pub path: String,
    pub matches: Vec<Match>,
    pub destinations: Vec<Destination>,
    pub mirror: Option<(Destination, Option<f64>)>,
    pub timeout: Option<Duration>,
    pub retries: Option<RetryPolicy>,
}

/// One `match[]` entry: what infermesh routes on.
pub(crate) struct Match {
    pub uri: Option<Uri>,
    /// One header with an exact value.
    pub header: Option<(HeaderName, String)>,
}

/// A URI match naming a model, one of its versions, or one of its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Uri {
    pub model: String,
    pub target: UriTarget,
    /// Written as a `prefix` (which also matches longer names).
    pub prefix: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UriTarget {
    Model,
    Version(String),
    Label(String),
}

/// A `destination` (weighted or mirrored).
pub(crate) struct Destination {
    pub at: Pos,
    pub path: String,
    pub host: String,
    pub subset: Option<String>,
    pub weight: Option<u32>,
}

/// One `DestinationRule`.
pub(crate) struct DestinationRule {
    pub file: String,
    pub name: String,
    pub namespace: Option<String>,
    pub host: (String, Pos, String),
    /// (subset name, version text, position).
    pub subsets: Vec<(String, String, Pos)>,
    pub connect_timeout: Option<(Duration, Pos)>,
    pub outlier: Option<(crate::model::OutlierDetection, Pos)>,
}

pub(crate) fn virtual_service(
    cx: &mut Cx,
    spec: &Node,
    path: &str,
    meta: (String, Option<String>),
    refused: &mut Refused,
) -> Option<VirtualService> {
    let f = istio_fields(cx, spec, path, &["hosts", "http"], refused)?;
    let mut hosts = Vec::new();
    if let Some(items) = f.req(cx, "hosts", list) {
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&f.path_of("hosts"), i);
            if let Some(h) = string(cx, item, &ipath) {
                hosts.push((h, item.at, ipath));
            }
        }
    }
    let mut http = Vec::new();
    if let Some(items) = f.opt(cx, "http", list) {
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&f.path_of("http"), i);
            http.extend(http_route(cx, item, &ipath, refused));
        }
    }
    Some(VirtualService {
        file: String::new(),
        at: spec.at,
        name: meta.0,
        namespace: meta.1,
        hosts,
        http,
    })
}

fn http_route(cx: &mut Cx, node: &Node, path: &str, refused: &mut Refused) -> Option<HttpRoute> {
    let keys = [
        "name",
        "match",
        "route",
        "timeout",
        "retries",
        "mirror",
        "mirrorPercentage",
    ];
    let f = istio_fields(cx, node, path, &keys, refused)?;
    let mut matches = Vec::new();
    if let Some(items) = f.opt(cx, "match", list) {
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&f.path_of("match"), i);
            matches.extend(route_match(cx, item, &ipath, refused));
        }
    }
    let mut destinations = Vec::new();
    if let Some(items) = f.req(cx, "route", list) {
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&f.path_of("route"), i);
            let Some(rf) = istio_fields(cx, item, &ipath, &["destination", "weight"], refused)
            else {
                continue;
            };
            let weight = rf.opt(cx, "weight", uint32(0, 100));
            if let Some(mut d) =
                rf.req(cx, "destination", |cx, n, p| destination(cx, n, p, refused))
            {
                d.weight = weight;
                destinations.push(d);
            }
        }
    }
    let mirror = f.opt(cx, "mirror", |cx, n, p| destination(cx, n, p, refused));
    let percent = f.opt(cx, "mirrorPercentage", |cx, n, p| {
        istio_fields(cx, n, p, &["value"], refused)?
            .req(cx, "value", |cx, n, p| percent(cx, n, p, true))
    });
    if let (None, Some(n)) = (&mirror, f.get("mirrorPercentage")) {
        cx.error(n.at, &f.path_of("mirrorPercentage"), "only with `mirror`");
    }
    Some(HttpRoute {
        at: node.at,
        path: path.to_owned(),
        matches,
        destinations,
        // `mirrorPercentage: {value: 0}` mirrors nothing.
        mirror: mirror
            .map(|m| (m, percent))
            .filter(|(_, p)| *p != Some(0.0)),
        timeout: f.opt(cx, "timeout", istio_duration),
        retries: f.opt(cx, "retries", |cx, n, p| retries(cx, n, p, refused)),
    })
}

fn route_match(cx: &mut Cx, node: &Node, path: &str, refused: &mut Refused) -> Option<Match> {
    let f = istio_fields(cx, node, path, &["name", "uri", "headers"], refused)?;
    let uri = f.opt(cx, "uri", |cx, n, p| {
        let uf = istio_fields(cx, n, p, &["prefix", "regex"], refused)?;
        let (key, prefix) = match (uf.get("prefix"), uf.get("regex")) {
            (Some(_), None) => ("prefix", true),
            (None, Some(_)) => ("regex", false),
            // Only refused keys (`exact`): already listed.
            (None, None) if matches!(&n.value, Value::Map(m) if !m.is_empty()) => return None,
            _ => return cx.expected(n, p, "one of `prefix` and `regex`"),
        };
        let text = uf.req(cx, key, string)?;
        let node = uf.get(key)?;
        let parsed = if prefix {
            parse_prefix(&text)
        } else {
            parse_regex(&text)
        };
        if parsed.is_none() {
            refused.push(
                node.at,
                format!(
                    "{} {text:?} (not a model, version or label path)",
                    uf.path_of(key)
                ),
            );
        }
        parsed
    });
    let header = f.opt(cx, "headers", |cx, n, p| {
        let Value::Map(entries) = &n.value else {
            return cx.expected(n, p, "a mapping of header name to match");
        };
        let [(key, value)] = entries.as_slice() else {
            refused.push(n.at, format!("{p} (more than one header in one match)"));
            return None;
        };
        let hpath = child(p, &key.value.scalar_text().unwrap_or_default());
        let name = header_name(cx, key, &hpath)?;
        let exact = match lookup(value, "exact") {
            Some(v) if matches!(&value.value, Value::Map(m) if m.len() == 1) => v,
            _ => {
                refused.push(value.at, format!("{hpath} (only `exact` header matches)"));
                return None;
            }
        };
        Some((name, string(cx, exact, &child(&hpath, "exact"))?))
    });
    Some(Match { uri, header })
}

fn destination(cx: &mut Cx, node: &Node, path: &str, refused: &mut Refused) -> Option<Destination> {
    // `port` selects a port of the Service; the sidecar serves REST and gRPC on one.
    let f = istio_fields(cx, node, path, &["host", "subset", "port"], refused)?;
    Some(Destination {
        at: node.at,
        path: path.to_owned(),
        host: f.req(cx, "host", string)?,
        subset: f.opt(cx, "subset", string),
        weight: None,
    })
}

/// `retries`: `attempts` and `retryOn` conditions infermesh retries on.
fn retries(cx: &mut Cx, node: &Node, path: &str, refused: &mut Refused) -> Option<RetryPolicy> {
    let f = istio_fields(cx, node, path, &["attempts", "retryOn"], refused)?;
    let attempts = f.req(cx, "attempts", uint32(0, MAX_ATTEMPTS))?;
    let mut policy = RetryPolicy {
        attempts,
        on_connect_failure: false,
        on_unavailable: false,
        idempotent: false,
        ..RetryPolicy::default()
    };
    let Some(on) = f.opt(cx, "retryOn", string) else {
        if attempts > 0 {
            let msg = format!(
                "{path}.attempts without `retryOn` (Istio's default conditions include \
                 refused-stream, cancelled and retriable-status-codes, which infermesh does \
                 not retry: list `retryOn: connect-failure,unavailable`)"
            );
            refused.push(f.get("attempts").map_or(node.at, |n| n.at), msg);
        }
        return Some(policy);
    };
    let at = f.get("retryOn").map_or(node.at, |n| n.at);
    for cond in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match cond {
            "connect-failure" => policy.on_connect_failure = true,
            // Istio retries these whatever the method: the requests are idempotent.
            "unavailable" | "503" => {
                policy.on_unavailable = true;
                policy.idempotent = true;
            }
            other => refused.push(at, format!("{path}.retryOn `{other}`")),
        }
    }
    Some(policy)
}

pub(crate) fn destination_rule(
    cx: &mut Cx,
    spec: &Node,
    path: &str,
    meta: (String, Option<String>),
    refused: &mut Refused,
) -> Option<DestinationRule> {
    let f = istio_fields(
        cx,
        spec,
        path,
        &["host", "subsets", "trafficPolicy"],
        refused,
    )?;
    let host = f.req(cx, "host", string);
    let host_at = f.get("host").map_or(spec.at, |n| n.at);
    let mut subsets = Vec::new();
    if let Some(items) = f.opt(cx, "subsets", list) {
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&f.path_of("subsets"), i);
            subsets.extend(subset(cx, item, &ipath, refused));
        }
    }
    let mut connect_timeout = None;
    let mut outlier = None;
    if let Some(tp) = f.get("trafficPolicy") {
        let tpath = f.path_of("trafficPolicy");
        if let Some(tf) = istio_fields(
            cx,
            tp,
            &tpath,
            &["connectionPool", "outlierDetection"],
            refused,
        ) {
            connect_timeout = tf.opt(cx, "connectionPool", |cx, n, p| {
                let cf = istio_fields(cx, n, p, &["tcp"], refused)?;
                let tcp = cf.get("tcp")?;
                let tf = istio_fields(cx, tcp, &cf.path_of("tcp"), &["connectTimeout"], refused)?;
                let at = tf.get("connectTimeout")?.at;
                Some((tf.opt(cx, "connectTimeout", istio_duration)?, at))
            });
            outlier = tf.opt(cx, "outlierDetection", |cx, n, p| {
                let keys = [
                    "consecutive5xxErrors",
                    "baseEjectionTime",
                    "maxEjectionPercent",
                ];
                let of = istio_fields(cx, n, p, &keys, refused)?;
                let od = crate::mesh::outlier_from(cx, &of, &keys, istio_duration);
                Some((od, n.at))
            });
        }
    }
    Some(DestinationRule {
        file: String::new(),
        name: meta.0,
        namespace: meta.1,
        host: (host?, host_at, f.path_of("host")),
        subsets,
        connect_timeout,
        outlier,
    })
}

/// A subset: its name and the `version` label its pods carry (`"2"` or `"v2"`).
fn subset(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    refused: &mut Refused,
) -> Option<(String, String, Pos)> {
    let f = istio_fields(cx, node, path, &["name", "labels"], refused)?;
    let name = f.req(cx, "name", string);
    let labels = f.req(cx, "labels", |cx, n, p| {
        istio_fields(cx, n, p, &["version"], refused)?.req(cx, "version", |cx, n, p| {
            match &n.value {
                Value::Int(i) => Some(i.to_string()),
                _ => string(cx, n, p),
            }
            .map(|v| (v, n.at))
        })
    });
    let (version, at) = labels?;
    Some((name?, version, at))
}

/// A duration as Istio writes it: protobuf seconds (`2s`, `0.5s`) or Go-style
/// (`500ms`, `1m`).
pub(crate) fn istio_duration(cx: &mut Cx, node: &Node, path: &str) -> Option<Duration> {
    if let Value::Str(text) = &node.value
        && let Some(secs) = text.strip_suffix('s')
        && secs.contains('.')
        && let Some((whole, frac)) = secs.split_once('.')
        && !frac.is_empty()
        && frac.len() <= 9
        && frac.chars().all(|c| c.is_ascii_digit())
        && let Ok(whole) = whole.parse::<u64>()
        && let Ok(nanos) = format!("{frac:0<9}").parse::<u32>()
    {
        let d = Duration::new(whole, nanos);
        if d.is_zero() {
            cx.error(node.at, path, "must be longer than zero");
            return None;
        }
        // The same bound as mesh.yaml's durations (keeps `Instant + d` far from overflow).
        if d > Duration::from_secs(365 * 24 * 3600) {
            cx.error(node.at, path, "must be at most 365 days");
            return None;
        }
        return Some(d);
    }
    crate::read::duration(cx, node, path)
}

/// `/v1/models/<m>`, `/v1/models/<m>/versions/<n>` or `/v1/models/<m>/labels/<l>`.
fn parse_prefix(text: &str) -> Option<Uri> {
    let rest = text.strip_prefix("/v1/models/")?;
    let (model, target) = split_target(rest)?;
    Some(Uri {
        model,
        target,
        prefix: true,
    })
}

/// The regexes infermesh exports: `/v1/models/<m>[/versions/<n>|/labels/<l>]([:/].*)?`,
/// with `.` escaped as `\.`.
fn parse_regex(text: &str) -> Option<Uri> {
    let rest = text
        .strip_prefix("/v1/models/")?
        .strip_suffix("([:/].*)?")?;
    let unescaped = rest.replace("\\.", ".");
    if unescaped.contains('\\') {
        return None;
    }
    let (model, target) = split_target(&unescaped)?;
    Some(Uri {
        model,
        target,
        prefix: false,
    })
}

fn split_target(rest: &str) -> Option<(String, UriTarget)> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (model, target) = match parts.as_slice() {
        [m] => (*m, UriTarget::Model),
        [m, "versions", v] if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() => {
            (*m, UriTarget::Version((*v).to_owned()))
        }
        [m, "labels", l] if plain(l) => (*m, UriTarget::Label((*l).to_owned())),
        _ => return None,
    };
    plain(model).then(|| (model.to_owned(), target))
}

impl HttpRoute {
    /// The mirror as the mesh models it (Istio's default share is 100%).
    pub fn mirror_of(&self, version: i64) -> Mirror {
        let percent = self.mirror.as_ref().and_then(|(_, p)| *p).unwrap_or(100.0);
        Mirror { version, percent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_model_paths() {
        let v = |m: &str, t| {
            Some(Uri {
                model: m.into(),
                target: t,
                prefix: false,
            })
        };
        assert_eq!(
            parse_regex("/v1/models/half_plus_two([:/].*)?"),
            v("half_plus_two", UriTarget::Model)
        );
        assert_eq!(
            parse_regex("/v1/models/m\\.x/versions/2([:/].*)?"),
            v("m.x", UriTarget::Version("2".into()))
        );
        assert_eq!(
            parse_regex("/v1/models/m/labels/canary([:/].*)?"),
            v("m", UriTarget::Label("canary".into()))
        );
        assert_eq!(parse_regex("/v1/models/.*"), None);
        assert_eq!(parse_regex("/v1/models/m/versions/x([:/].*)?"), None);
        assert_eq!(parse_prefix("/api/m"), None);
        assert!(parse_prefix("/v1/models/m").is_some_and(|u| u.prefix));
    }

    #[test]
    fn reads_protobuf_and_go_durations_within_bounds() {
        let read = |text: &str| {
            let mut cx = Cx::new("f".into());
            let node = Node {
                at: Pos { line: 1, col: 1 },
                value: Value::Str(text.into()),
            };
            (istio_duration(&mut cx, &node, "t"), cx.errors.len())
        };
        assert_eq!(read("1.25s"), (Some(Duration::from_millis(1250)), 0));
        assert_eq!(read("500ms"), (Some(Duration::from_millis(500)), 0));
        assert_eq!(read("0.000000001s"), (Some(Duration::from_nanos(1)), 0));
        assert_eq!(read("0.0s"), (None, 1));
        assert_eq!(read("99999999999999.5s"), (None, 1));
    }
}
