//! `models:`: each model's versions, labels and route (split, pin header, sticky
//! header, mirror, timeout, retries), checked against each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{all_of, one_of, suggest};
use crate::model::{Mirror, Model, RetryPolicy, Route};
use crate::read::{
    Cx, Fields, NameRule, boolean, child, duration, header_name, index, list, name, percent,
    string, uint, uint32,
};
use crate::yaml::{Node, Pos, Value};

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// More retries than this multiply load on a failing server rather than mask a blip.
const MAX_ATTEMPTS: u32 = 10;

pub(crate) const MODEL_KEYS: &[&str] = &["name", "served_by", "versions", "route"];
pub(crate) const ROUTE_KEYS: &[&str] = &[
    "split",
    "pin_header",
    "sticky",
    "mirror",
    "timeout",
    "retries",
];
pub(crate) const RETRY_KEYS: &[&str] = &[
    "attempts",
    "on",
    "idempotent",
    "budget_percent",
    "min_retries_per_second",
];
const RETRY_ON: &[&str] = &["connect-failure", "unavailable"];

impl Default for RetryPolicy {
    /// Two retries of connection failures (the request never left), within a budget
    /// of 20% of recent requests plus 10 per second.
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            on_connect_failure: true,
            on_unavailable: false,
            idempotent: false,
            budget_ratio: 0.2,
            min_retries_per_second: 10,
        }
    }
}

/// A model's versions and labels, as declared.
struct Versions {
    /// Ascending.
    numbers: Vec<i64>,
    labels: BTreeMap<String, i64>,
    /// False when the versions could not be read: references are then not checked.
    known: bool,
}

impl Versions {
    const UNKNOWN: Versions = Versions {
        numbers: Vec::new(),
        labels: BTreeMap::new(),
        known: false,
    };
}

/// `workloads`: the declared workload names, `None` when they could not be read.
/// `routes` receives the models given a `route:`, where, and whether it holds only
/// `sticky` (the Istio import may supply the rest).
pub(crate) fn models(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    workloads: Option<&[String]>,
    routes: &mut BTreeMap<String, (Pos, bool)>,
) -> BTreeMap<String, Arc<Model>> {
    let mut out = BTreeMap::new();
    let mut seen: Vec<(String, Pos)> = Vec::new();
    for (i, item) in list(cx, node, path).unwrap_or_default().iter().enumerate() {
        let ipath = index(path, i);
        let Some(f) = Fields::read(cx, item, &ipath, MODEL_KEYS) else {
            continue;
        };
        let mname = f.req(cx, "name", name(NameRule::Model));
        if let (Some(n), Some(at)) = (&mname, f.get("name").map(|n| n.at)) {
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == n) {
                let msg = format!("duplicate model name `{n}` (first on line {})", first.line);
                cx.error(at, &f.path_of("name"), msg);
                continue;
            }
            seen.push((n.clone(), at));
        }
        let served_by = f.req(cx, "served_by", |cx, n, p| served_by(cx, n, p, workloads));
        let versions = f.req(cx, "versions", versions);
        // Check the route even when the versions are broken; references to versions
        // are then not checked (`Versions::unknown`).
        let unknown = Versions::UNKNOWN;
        let known = versions.as_ref().unwrap_or(&unknown);
        let display_name = mname.as_deref().unwrap_or("?");
        if let (Some(n), Some(r)) = (&mname, f.get("route")) {
            let only_sticky = match &r.value {
                Value::Map(entries) => entries
                    .iter()
                    .all(|(k, _)| matches!(&k.value, Value::Str(s) if s == "sticky")),
                _ => false,
            };
            routes.insert(n.clone(), (r.at, only_sticky));
        }
        let route = match f.get("route") {
            Some(n) => route(cx, n, &f.path_of("route"), display_name, known),
            None => Some(default_route(known)),
        };
        let (Some(mname), Some(served_by), Some(versions), Some(route)) =
            (mname, served_by, versions, route)
        else {
            continue;
        };
        let model = Model {
            name: mname.clone(),
            served_by,
            versions: versions.numbers,
            labels: versions.labels,
            route,
        };
        out.insert(mname, Arc::new(model));
    }
    out
}

fn served_by(cx: &mut Cx, node: &Node, path: &str, workloads: Option<&[String]>) -> Option<String> {
    let w = string(cx, node, path)?;
    let Some(workloads) = workloads else {
        return Some(w);
    };
    if workloads.contains(&w) {
        return Some(w);
    }
    let names = workloads.iter().map(String::as_str);
    let msg = match suggest(&w, names.clone()) {
        Some(s) => format!("no workload named `{w}`, did you mean `{s}`?"),
        None if workloads.is_empty() => {
            format!("no workload named `{w}` (no workloads are declared)")
        }
        None => format!("no workload named `{w}` (workloads: {})", all_of(names)),
    };
    cx.error(node.at, path, msg);
    None
}

/// `[1, 2]` or `[{version: 1, label: stable}, ...]`.
fn versions(cx: &mut Cx, node: &Node, path: &str) -> Option<Versions> {
    let items = list(cx, node, path)?;
    if items.is_empty() {
        cx.error(node.at, path, "a model needs at least one version");
        return None;
    }
    let mut seen: Vec<(i64, Pos)> = Vec::new();
    let mut labels: BTreeMap<String, i64> = BTreeMap::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let (number, vnode, vpath, label) = match &item.value {
            Value::Int(_) => (version_number(cx, item, &ipath), item, ipath.clone(), None),
            Value::Map(_) => {
                let Some(f) = Fields::read(cx, item, &ipath, &["version", "label"]) else {
                    ok = false;
                    continue;
                };
                let label = f.opt(cx, "label", label_name).zip(f.get("label"));
                let number = f.req(cx, "version", version_number);
                let vnode = f.get("version").unwrap_or(item);
                (number, vnode, f.path_of("version"), label)
            }
            _ => {
                ok = false;
                cx.expected::<()>(
                    item,
                    &ipath,
                    "a version number or `{version: N, label: NAME}`",
                );
                continue;
            }
        };
        let Some(number) = number else {
            ok = false;
            continue;
        };
        let at = vnode.at;
        if let Some((_, first)) = seen.iter().find(|(v, _)| *v == number) {
            let msg = format!(
                "version {number} is listed twice (first on line {})",
                first.line
            );
            cx.error(at, &vpath, msg);
            ok = false;
            continue;
        }
        seen.push((number, at));
        if let Some((label, lnode)) = label {
            if let Some(other) = labels.get(&label) {
                let msg = format!("label `{label}` is already given to version {other}");
                cx.error(lnode.at, &child(&ipath, "label"), msg);
                ok = false;
                continue;
            }
            labels.insert(label, number);
        }
    }
    let mut numbers: Vec<i64> = seen.into_iter().map(|(v, _)| v).collect();
    numbers.sort_unstable();
    ok.then_some(Versions {
        numbers,
        labels,
        known: true,
    })
}

fn version_number(cx: &mut Cx, node: &Node, path: &str) -> Option<i64> {
    let v = uint(0, i64::MAX as u64)(cx, node, path)?;
    i64::try_from(v).ok()
}

/// A version label: a model-style name that is not a number.
fn label_name(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let label = name(NameRule::Model)(cx, node, path)?;
    if label.chars().all(|c| c.is_ascii_digit()) {
        let msg = format!("label {label:?} looks like a version number; labels need a letter");
        cx.error(node.at, path, msg);
        return None;
    }
    Some(label)
}

fn default_route(v: &Versions) -> Route {
    Route {
        split: default_split(v),
        pin_header: None,
        sticky_header: None,
        mirror: None,
        timeout: DEFAULT_TIMEOUT,
        retries: RetryPolicy::default(),
    }
}

/// All traffic to the highest version.
fn default_split(v: &Versions) -> Vec<(i64, u32)> {
    v.numbers
        .last()
        .map(|&n| vec![(n, 100)])
        .unwrap_or_default()
}

fn route(cx: &mut Cx, node: &Node, path: &str, model: &str, v: &Versions) -> Option<Route> {
    let f = Fields::read(cx, node, path, ROUTE_KEYS)?;
    let split = f.opt(cx, "split", |cx, n, p| split(cx, n, p, model, v));
    let sticky_header = f.opt(cx, "sticky", |cx, n, p| {
        Fields::read(cx, n, p, &["header"])?.req(cx, "header", header_name)
    });
    let mirror = f.opt(cx, "mirror", |cx, n, p| mirror(cx, n, p, model, v));
    Some(Route {
        split: split.unwrap_or_else(|| default_split(v)),
        pin_header: f.opt(cx, "pin_header", header_name),
        sticky_header,
        mirror,
        timeout: f.opt(cx, "timeout", duration).unwrap_or(DEFAULT_TIMEOUT),
        retries: f.opt(cx, "retries", retries).unwrap_or_default(),
    })
}

/// `{stable: 90, canary: 10}` or `{1: 90, 2: 10}`: weights summing to 100.
fn split(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    model: &str,
    v: &Versions,
) -> Option<Vec<(i64, u32)>> {
    let Value::Map(entries) = &node.value else {
        return cx.expected(node, path, "a mapping of version or label to weight");
    };
    let mut out: Vec<(i64, u32, &Node)> = Vec::new();
    let mut ok = true;
    let mut total: u64 = 0;
    for (key, weight) in entries {
        let kpath = child(path, &key.value.scalar_text().unwrap_or_default());
        let version = version_ref(cx, key, &kpath, model, v);
        let weight = uint32(0, 100)(cx, weight, &kpath);
        let (Some(version), Some(weight)) = (version, weight) else {
            ok = false;
            continue;
        };
        if let Some((_, _, first)) = out.iter().find(|(n, _, _)| *n == version) {
            let as_text = first.value.scalar_text().unwrap_or_default();
            let line = first.at.line;
            let msg = format!("version {version} is already weighted as `{as_text}` (line {line})");
            cx.error(key.at, &kpath, msg);
            ok = false;
            continue;
        }
        total += u64::from(weight);
        out.push((version, weight, key));
    }
    if ok && total != 100 {
        cx.error(
            node.at,
            path,
            format!("weights add up to {total}; they must add up to 100"),
        );
        return None;
    }
    let mut split: Vec<(i64, u32)> = out
        .into_iter()
        .filter(|(_, w, _)| *w > 0)
        .map(|(v, w, _)| (v, w))
        .collect();
    split.sort_unstable();
    ok.then_some(split)
}

/// A version number (`1`, `"1"`) or label (`canary`) of this model.
fn version_ref(cx: &mut Cx, node: &Node, path: &str, model: &str, v: &Versions) -> Option<i64> {
    let (text, number) = match &node.value {
        Value::Int(i) => (i.to_string(), i64::try_from(*i).ok()),
        Value::Str(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
            (s.clone(), s.parse().ok())
        }
        Value::Str(s) => {
            if let Some(&n) = v.labels.get(s) {
                return Some(n);
            }
            (s.clone(), None)
        }
        _ => return cx.expected(node, path, "a version number or label"),
    };
    if let Some(n) = number.filter(|n| v.numbers.contains(n)) {
        return Some(n);
    }
    if !v.known {
        return None;
    }
    let numbers: Vec<String> = v.numbers.iter().map(i64::to_string).collect();
    let mut has = format!("it has versions {}", numbers.join(", "));
    if !v.labels.is_empty() {
        let labels = v.labels.keys().map(String::as_str);
        has = format!("{has} and labels {}", all_of(labels));
    }
    let hint = match suggest(&text, v.labels.keys().map(String::as_str)) {
        Some(s) => format!(", did you mean `{s}`?"),
        None => format!(" ({has})"),
    };
    let kind = if number.is_some() {
        "version"
    } else {
        "version label"
    };
    cx.error(
        node.at,
        path,
        format!("model `{model}` has no {kind} `{text}`{hint}"),
    );
    None
}

fn mirror(cx: &mut Cx, node: &Node, path: &str, model: &str, v: &Versions) -> Option<Mirror> {
    let f = Fields::read(cx, node, path, &["to", "percent"])?;
    let version = f.req(cx, "to", |cx, n, p| version_ref(cx, n, p, model, v));
    let percent = f.req(cx, "percent", |cx, n, p| percent(cx, n, p, false));
    Some(Mirror {
        version: version?,
        percent: percent?,
    })
}

fn retries(cx: &mut Cx, node: &Node, path: &str) -> Option<RetryPolicy> {
    let f = Fields::read(cx, node, path, RETRY_KEYS)?;
    let d = RetryPolicy::default();
    let on = f.opt(cx, "on", retry_on);
    Some(RetryPolicy {
        attempts: f
            .opt(cx, "attempts", uint32(0, MAX_ATTEMPTS))
            .unwrap_or(d.attempts),
        on_connect_failure: on.map_or(d.on_connect_failure, |(c, _)| c),
        on_unavailable: on.map_or(d.on_unavailable, |(_, u)| u),
        idempotent: f.opt(cx, "idempotent", boolean).unwrap_or(d.idempotent),
        budget_ratio: f
            .opt(cx, "budget_percent", |cx, n, p| percent(cx, n, p, true))
            .map_or(d.budget_ratio, |p| p / 100.0),
        min_retries_per_second: f
            .opt(cx, "min_retries_per_second", uint32(0, u32::MAX))
            .unwrap_or(d.min_retries_per_second),
    })
}

/// `[connect-failure, unavailable]` → (on connect failure, on unavailable).
fn retry_on(cx: &mut Cx, node: &Node, path: &str) -> Option<(bool, bool)> {
    let (mut connect, mut unavailable) = (false, false);
    for (i, item) in list(cx, node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let Some(cond) = string(cx, item, &ipath) else {
            continue;
        };
        match cond.as_str() {
            "connect-failure" => connect = true,
            "unavailable" => unavailable = true,
            other => {
                let msg = match suggest(other, RETRY_ON.iter().copied()) {
                    Some(s) => format!("unknown retry condition `{other}`, did you mean `{s}`?"),
                    None => format!(
                        "unknown retry condition `{other}`, expected {}",
                        one_of(RETRY_ON.iter().copied())
                    ),
                };
                cx.error(item.at, &ipath, msg);
            }
        }
    }
    Some((connect, unavailable))
}
