//! One imported `VirtualService` applied to the models its hosts serve: each route
//! classified by its matches (split, header pin, version path), its destinations
//! resolved through the DestinationRule subsets to model versions, and what it says
//! about each model collected for [`crate::istio_apply`] to check and compile.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;

use crate::istio_apply::{Acc, Errors, Subsets};
use crate::istio_routing::{Destination, HttpRoute, UriTarget, VirtualService};
use crate::model::{Model, Workload};
use crate::yaml::Pos;

/// The workload whose Service `host` names: `<w>`, `<w>.<ns>` or
/// `<w>.<ns>.svc[.<domain>]`; a short name is in `namespace` when given.
pub(crate) fn workload_of(
    host: &str,
    namespace: Option<&str>,
    workloads: &BTreeMap<String, Arc<Workload>>,
) -> Option<String> {
    let parts: Vec<&str> = host.split('.').collect();
    let (name, ns) = match parts.as_slice() {
        [w] => (*w, namespace),
        [w, ns] => (*w, Some(*ns)),
        [w, ns, "svc", ..] => (*w, Some(*ns)),
        _ => return None,
    };
    let w = workloads.get(name)?;
    ns.is_none_or(|ns| ns == w.namespace)
        .then(|| name.to_owned())
}

/// How a route's matches select requests.
enum Kind {
    /// Split: every request (of these models; `None`: of every model of the host).
    Split(Option<Vec<String>>),
    /// Header pin: (models or all, header, value) per match.
    Pin(Vec<(Option<String>, HeaderName, String)>),
    /// Version and label paths: (model, target, written as a prefix) per match.
    Path(Vec<(String, UriTarget, bool)>),
}

fn kind(route: &HttpRoute) -> Result<Kind, String> {
    if route.matches.is_empty() {
        return Ok(Kind::Split(None));
    }
    let (mut split, mut pin, mut path) = (Vec::new(), Vec::new(), Vec::new());
    let mut all = false;
    for m in &route.matches {
        match (&m.uri, &m.header) {
            (None, None) => all = true,
            (Some(u), None) if u.target == UriTarget::Model => split.push(u.model.clone()),
            (Some(u), None) => path.push((u.model.clone(), u.target.clone(), u.prefix)),
            (None, Some((h, v))) => pin.push((None, h.clone(), v.clone())),
            (Some(u), Some((h, v))) if u.target == UriTarget::Model => {
                pin.push((Some(u.model.clone()), h.clone(), v.clone()))
            }
            (Some(_), Some(_)) => {
                return Err("a version or label path together with a header match".into());
            }
        }
    }
    match (all || !split.is_empty(), !pin.is_empty(), !path.is_empty()) {
        (true, false, false) => Ok(Kind::Split((!all).then_some(split))),
        (false, true, false) => Ok(Kind::Pin(pin)),
        (false, false, true) => Ok(Kind::Path(path)),
        _ => Err(
            "matches of different kinds (model paths, header pins, version paths) in \
                  one route: infermesh routes each kind on its own"
                .into(),
        ),
    }
}

pub(crate) fn virtual_service(
    vs: &VirtualService,
    subsets: &Subsets,
    workloads: &BTreeMap<String, Arc<Workload>>,
    models: &BTreeMap<String, Arc<Model>>,
    routed: &mut BTreeMap<String, Acc>,
    e: &mut Errors,
) {
    let ns = vs.namespace.as_deref();
    let mut hosts = Vec::new();
    for (host, at, path) in &vs.hosts {
        match workload_of(host, ns, workloads) {
            Some(w) => hosts.push(w),
            None => {
                let msg = format!("host {host:?} is not the Service of a workload of the mesh");
                e.at(&vs.file, *at, path, msg);
            }
        }
    }
    let served: Vec<&Model> = models
        .values()
        .filter(|m| hosts.contains(&m.served_by))
        .map(|m| m.as_ref())
        .collect();
    for m in &served {
        if let Some(acc) = routed.get(&m.name) {
            let msg = format!(
                "routes model {} too, as VirtualService {} ({}:{}) does",
                m.name, acc.vs, acc.file, acc.at.line
            );
            e.at(&vs.file, vs.at, "spec.hosts", msg);
            return;
        }
    }
    let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
    let find = |name: &str, at: Pos, path: &str, e: &mut Errors| -> Option<&Model> {
        let m = served.iter().find(|m| m.name == name).copied();
        if m.is_none() {
            let msg = format!("model {name} is not served by this VirtualService's hosts");
            e.at(&vs.file, at, path, msg);
        }
        m
    };
    for route in &vs.http {
        let kind = match kind(route) {
            Ok(k) => k,
            Err(msg) => {
                e.at(&vs.file, route.at, &route.path, msg);
                continue;
            }
        };
        let mirror = route.mirror.as_ref().map(|(d, _)| d);
        match kind {
            Kind::Split(names) => {
                let targets: Vec<&Model> = match &names {
                    None => served
                        .iter()
                        .filter(|m| accs.get(&m.name).is_none_or(|a| a.split.is_none()))
                        .copied()
                        .collect(),
                    Some(names) => names
                        .iter()
                        .filter_map(|n| find(n, route.at, &route.path, e))
                        .collect(),
                };
                for model in targets {
                    if let Some(u) = prefix_problem(route, model, &served) {
                        e.at(&vs.file, route.at, &route.path, u);
                        continue;
                    }
                    let entry = entry(&mut accs, vs, &model.name);
                    if entry.split.is_some() {
                        let msg = format!(
                            "never reached for model {}: an earlier route takes its requests",
                            model.name
                        );
                        e.at(&vs.file, route.at, &route.path, msg);
                        continue;
                    }
                    let Some(split) = weights(vs, route, model, workloads, subsets, e) else {
                        continue;
                    };
                    let m = match mirror {
                        Some(d) => match version(vs, d, model, workloads, subsets, e) {
                            Some(v) => Some(route.mirror_of(v)),
                            None => continue,
                        },
                        None => None,
                    };
                    entry.split = Some((split, m, route.timeout, route.retries.clone()));
                }
            }
            Kind::Pin(matches) => {
                for (name, header, value) in matches {
                    let targets: Vec<&Model> = match &name {
                        None => served.clone(),
                        Some(n) => find(n, route.at, &route.path, e).into_iter().collect(),
                    };
                    for model in targets {
                        if let Some(u) = prefix_problem(route, model, &served) {
                            e.at(&vs.file, route.at, &route.path, u);
                            continue;
                        }
                        let Some(v) = single(vs, route, model, workloads, subsets, e) else {
                            continue;
                        };
                        let named = match value.parse::<i64>() {
                            Ok(n) => model.versions.contains(&n).then_some(n),
                            Err(_) => model.labels.get(&value).copied(),
                        };
                        if named != Some(v) {
                            let msg = format!(
                                "header {header}: {value:?} is not version {v} or one of its \
                                 labels in model {} (infermesh pins the version a header names)",
                                model.name
                            );
                            e.at(&vs.file, route.at, &route.path, msg);
                            continue;
                        }
                        let entry = entry(&mut accs, vs, &model.name);
                        if !reachable(entry, model, route, vs, e) {
                            continue;
                        }
                        match &entry.pin {
                            Some(h) if *h != header => {
                                let msg = format!(
                                    "a second pin header `{header}` for model {} (it has `{h}`)",
                                    model.name
                                );
                                e.at(&vs.file, route.at, &route.path, msg);
                            }
                            _ => entry.pin = Some(header.clone()),
                        }
                        other(entry, route, model, vs, workloads, subsets, e);
                    }
                }
            }
            Kind::Path(matches) => {
                for (name, target, prefix) in matches {
                    let Some(model) = find(&name, route.at, &route.path, e) else {
                        continue;
                    };
                    let Some(v) = single(vs, route, model, workloads, subsets, e) else {
                        continue;
                    };
                    let (named, text) = match &target {
                        UriTarget::Version(t) => (
                            t.parse::<i64>().ok().filter(|n| model.versions.contains(n)),
                            format!("version {t}"),
                        ),
                        UriTarget::Label(l) => (model.labels.get(l).copied(), format!("label {l}")),
                        UriTarget::Model => (None, String::new()),
                    };
                    if let Some(msg) = prefix.then(|| longer(model, &target)).flatten() {
                        e.at(&vs.file, route.at, &route.path, msg);
                        continue;
                    }
                    if named != Some(v) {
                        let msg = format!(
                            "the path of {text} of model {} goes to version {v}: infermesh \
                             serves a path naming a version or label by that version",
                            model.name
                        );
                        e.at(&vs.file, route.at, &route.path, msg);
                        continue;
                    }
                    let entry = entry(&mut accs, vs, &model.name);
                    if reachable(entry, model, route, vs, e) {
                        other(entry, route, model, vs, workloads, subsets, e);
                    }
                }
            }
        }
    }
    for m in served.iter().filter(|m| !accs.contains_key(&m.name)) {
        let msg = format!(
            "no route matches the requests of model {} (Istio would answer 404): add one, \
             e.g. a route without `match`",
            m.name
        );
        e.at(&vs.file, vs.at, "spec.http", msg);
    }
    routed.extend(accs);
}

fn entry<'a>(accs: &'a mut BTreeMap<String, Acc>, vs: &VirtualService, name: &str) -> &'a mut Acc {
    accs.entry(name.to_owned()).or_insert_with(|| Acc {
        vs: vs.name.clone(),
        file: vs.file.clone(),
        at: vs.at,
        split: None,
        pin: None,
        others: Vec::new(),
    })
}

/// A header or path route after the model's split route never matches.
fn reachable(
    acc: &Acc,
    model: &Model,
    route: &HttpRoute,
    vs: &VirtualService,
    e: &mut Errors,
) -> bool {
    if acc.split.is_some() {
        let msg = format!(
            "never reached for model {}: an earlier route takes its requests",
            model.name
        );
        e.at(&vs.file, route.at, &route.path, msg);
        return false;
    }
    true
}

/// Records a header or path route's timeout, retries and mirror for the check
/// against the split's.
fn other(
    acc: &mut Acc,
    route: &HttpRoute,
    model: &Model,
    vs: &VirtualService,
    workloads: &BTreeMap<String, Arc<Workload>>,
    subsets: &Subsets,
    e: &mut Errors,
) {
    let mirror = match &route.mirror {
        Some((d, _)) => match version(vs, d, model, workloads, subsets, e) {
            Some(v) => Some(route.mirror_of(v)),
            None => return,
        },
        None => None,
    };
    acc.others.push((
        route.timeout,
        route.retries.clone(),
        mirror,
        route.at,
        route.path.clone(),
    ));
}

/// A `prefix` URI match that also matches another model's paths is ambiguous.
fn prefix_problem(route: &HttpRoute, model: &Model, served: &[&Model]) -> Option<String> {
    let prefixed = route.matches.iter().any(|m| {
        m.uri
            .as_ref()
            .is_some_and(|u| u.prefix && u.model == model.name)
    });
    let other = served
        .iter()
        .find(|o| o.name != model.name && o.name.starts_with(&model.name))?;
    prefixed.then(|| {
        format!(
            "the prefix /v1/models/{} also matches model {}: use the regex \
             `/v1/models/{}([:/].*)?`",
            model.name,
            other.name,
            model.name.replace('.', "\\.")
        )
    })
}

/// A version or label `prefix` that also matches a longer version or label.
fn longer(model: &Model, target: &UriTarget) -> Option<String> {
    let (kind, text, others): (&str, &str, Vec<String>) = match target {
        UriTarget::Version(t) => (
            "versions",
            t,
            model.versions.iter().map(i64::to_string).collect(),
        ),
        UriTarget::Label(l) => ("labels", l, model.labels.keys().cloned().collect()),
        UriTarget::Model => return None,
    };
    let other = others.iter().find(|o| *o != text && o.starts_with(text))?;
    Some(format!(
        "the prefix /v1/models/{m}/{kind}/{text} also matches {kind}/{other} of model {m}: \
         use the regex `/v1/models/{m}/{kind}/{text}([:/].*)?`",
        m = model.name
    ))
}

/// The only destination of a header or path route, as a version of `model`.
fn single(
    vs: &VirtualService,
    route: &HttpRoute,
    model: &Model,
    workloads: &BTreeMap<String, Arc<Workload>>,
    subsets: &Subsets,
    e: &mut Errors,
) -> Option<i64> {
    match route.destinations.as_slice() {
        [d] if d.weight.is_none_or(|w| w == 100) => version(vs, d, model, workloads, subsets, e),
        _ => {
            let msg = "a header or version-path route goes to one subset (infermesh pins one \
                       version)";
            e.at(&vs.file, route.at, &route.path, msg.into());
            None
        }
    }
}

/// The split of a route: versions and weights summing to 100, zero weights dropped.
fn weights(
    vs: &VirtualService,
    route: &HttpRoute,
    model: &Model,
    workloads: &BTreeMap<String, Arc<Workload>>,
    subsets: &Subsets,
    e: &mut Errors,
) -> Option<Vec<(i64, u32)>> {
    let single = route.destinations.len() == 1;
    let mut out: Vec<(i64, u32)> = Vec::new();
    let mut total = 0u32;
    for d in &route.destinations {
        let v = version(vs, d, model, workloads, subsets, e)?;
        let w = match d.weight {
            Some(w) => w,
            None if single => 100,
            None => {
                let msg = "every destination of a split needs a `weight`";
                e.at(&vs.file, d.at, &d.path, msg.into());
                return None;
            }
        };
        if out.iter().any(|(o, _)| *o == v) {
            let msg = format!("version {v} of model {} is weighted twice", model.name);
            e.at(&vs.file, d.at, &d.path, msg);
            return None;
        }
        total += w;
        out.push((v, w));
    }
    if total != 100 {
        let msg = format!("weights add up to {total}; they must add up to 100");
        e.at(&vs.file, route.at, &route.path, msg);
        return None;
    }
    out.retain(|(_, w)| *w > 0);
    out.sort_unstable();
    Some(out)
}

/// The version of `model` a destination's subset selects.
fn version(
    vs: &VirtualService,
    d: &Destination,
    model: &Model,
    workloads: &BTreeMap<String, Arc<Workload>>,
    subsets: &Subsets,
    e: &mut Errors,
) -> Option<i64> {
    let mut fail = |msg: String| {
        e.at(&vs.file, d.at, &d.path, msg);
        None
    };
    let w = workload_of(&d.host, vs.namespace.as_deref(), workloads);
    if w.as_deref() != Some(model.served_by.as_str()) {
        return fail(format!(
            "host {:?} is not the Service of workload {}, which serves model {}",
            d.host, model.served_by, model.name
        ));
    }
    let Some(subset) = &d.subset else {
        return fail("needs a `subset`: infermesh routes to model versions".into());
    };
    let Some(v) = subsets.get(&model.served_by).and_then(|t| t.get(subset)) else {
        return fail(format!(
            "no DestinationRule subset {subset} for workload {}",
            model.served_by
        ));
    };
    if !model.versions.contains(v) {
        return fail(format!(
            "subset {subset} selects version {v}, which model {} does not have",
            model.name
        ));
    }
    Some(*v)
}
