//! `istio_files:` of mesh.yaml: reading the files ([`crate::istio`]) and resolving
//! their `VirtualService` and `DestinationRule` documents against the mesh: hosts name workloads' Services, subsets name model versions (through the
//! pods' `version` label), and each model served by a VirtualService's host gets
//! its [`Route`] from the routes that apply to it, first match first:
//!
//! * a route without a match, or matching only a model's REST paths
//!   (`/v1/models/<m>`) → the model's split, mirror, timeout and retries;
//! * exact matches of one header whose values are versions or labels → `pin_header`;
//! * REST paths naming a version or label (`/v1/models/<m>/versions/<n>`, `/labels/<l>`)
//!   → checked to go to that version's subset (infermesh routes them so natively).
//!
//! Timeouts, retries and mirrors of header and path routes must be absent or the
//! split's: infermesh has one of each per model. The DestinationRule's
//! `connectTimeout` and `outlierDetection` are mesh-wide settings in infermesh: all
//! given values must agree, with each other and with mesh.yaml's. Each
//! VirtualService is applied in [`crate::istio_vs`]; PeerAuthentications in
//! [`crate::istio_peer`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::error::ConfigError;
use crate::istio_routing::{DestinationRule, VirtualService};
use crate::model::{Limits, Mirror, Model, OutlierDetection, RetryPolicy, Route, Workload};
use crate::read::Cx;
use crate::yaml::Pos;

/// What mesh.yaml itself sets, with where (file, line): Istio files may not set it too.
#[derive(Default)]
pub(crate) struct Given {
    /// Models with a `route:`, and whether it holds only `sticky` (which Istio has no
    /// place for, so it may join a VirtualService's route).
    pub routes: BTreeMap<String, (String, u64, bool)>,
    pub mtls: BTreeMap<String, (String, u64)>,
    pub connect_timeout: Option<(String, u64)>,
    pub outlier: Option<(String, u64)>,
}

/// The mesh parts the Istio files add to.
pub(crate) struct Target<'a> {
    pub workloads: &'a mut BTreeMap<String, Arc<Workload>>,
    pub models: &'a mut BTreeMap<String, Arc<Model>>,
    pub limits: &'a mut Limits,
    pub outlier: &'a mut OutlierDetection,
}

pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    pub fn at(&mut self, file: &str, at: Pos, path: &str, message: String) {
        self.0.push(ConfigError {
            file: file.to_owned(),
            line: at.line,
            column: at.col,
            path: path.to_owned(),
            message,
        });
    }
}

/// The version of each subset name, per workload.
pub(crate) type Subsets = BTreeMap<String, BTreeMap<String, i64>>;

/// A split route: versions and weights, mirror, timeout, retries.
pub(crate) type Split = (
    Vec<(i64, u32)>,
    Option<Mirror>,
    Option<Duration>,
    Option<RetryPolicy>,
);

/// A header or path route: timeout, retries, mirror, position, field path.
pub(crate) type Other = (
    Option<Duration>,
    Option<RetryPolicy>,
    Option<Mirror>,
    Pos,
    String,
);

/// What the routes of one VirtualService say about one model.
pub(crate) struct Acc {
    pub vs: String,
    pub file: String,
    pub at: Pos,
    pub split: Option<Split>,
    pub pin: Option<HeaderName>,
    /// Header and path routes: (timeout, retries, mirror, position, field path).
    pub others: Vec<Other>,
}

/// `istio_files:` Istio YAML files (relative to the mesh.yaml): their policies and
/// issuers join the mesh's own, after them (an issuer repeated identically, as an
/// export per namespace does, counts once); their VirtualServices, DestinationRules
/// and PeerAuthentications set routes and mTLS modes ([`crate::istio_apply`],
/// [`crate::istio_peer`]). Their errors name their own file and line. Returns the
/// entries as written (for `MeshConfig::istio_files`).
pub(crate) fn istio_files(
    cx: &mut Cx,
    node: &crate::yaml::Node,
    base_dir: &Path,
    policies: &mut Vec<crate::security::Policy>,
    issuers: &mut Vec<crate::security::Issuer>,
    target: Target<'_>,
    given: &Given,
) -> Vec<String> {
    let mut names = Vec::new();
    let Some(items) = crate::read::list(cx, node, "istio_files") else {
        return names;
    };
    let mut docs = crate::istio::Documents::default();
    for (i, item) in items.iter().enumerate() {
        let path = crate::read::index("istio_files", i);
        let Some(name) = crate::read::string(cx, item, &path) else {
            continue;
        };
        names.push(name.clone());
        let file = base_dir.join(&name);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                cx.error(
                    item.at,
                    &path,
                    format!("cannot read {}: {e}", file.display()),
                );
                continue;
            }
        };
        let before = docs.issuers.len();
        let errors = crate::istio::read_file(&text, &file.display().to_string(), &mut docs, true);
        cx.errors.extend(errors);
        for issuer in docs.issuers.drain(before..) {
            match issuers.iter().find(|known| known.issuer == issuer.issuer) {
                Some(known) if *known == issuer => {}
                Some(_) => {
                    let msg = format!(
                        "{}: issuer {:?} is already listed in the mesh, differently",
                        file.display(),
                        issuer.issuer
                    );
                    cx.error(item.at, &path, msg);
                }
                None => issuers.push(issuer),
            }
        }
    }
    for p in docs.policies {
        if !policies.contains(&p) {
            policies.push(p);
        }
    }
    crate::istio_peer::apply(
        &docs.peer_authentications,
        target.workloads,
        &given.mtls,
        &mut cx.errors,
    );
    apply(
        &docs.virtual_services,
        &docs.destination_rules,
        target,
        given,
        &mut cx.errors,
    );
    names
}

pub(crate) fn apply(
    vss: &[VirtualService],
    drs: &[DestinationRule],
    target: Target<'_>,
    given: &Given,
    errors: &mut Vec<ConfigError>,
) {
    let mut e = Errors(Vec::new());
    let settings = destination_rules(drs, &target, given, &mut e);
    if let Some(d) = settings.connect_timeout {
        target.limits.connect_timeout = d;
    }
    if let Some(od) = settings.outlier {
        *target.outlier = od;
    }
    let subsets = settings.subsets;
    let mut routed: BTreeMap<String, Acc> = BTreeMap::new();
    for vs in vss {
        crate::istio_vs::virtual_service(
            vs,
            &subsets,
            target.workloads,
            target.models,
            &mut routed,
            &mut e,
        );
    }
    for (name, acc) in routed {
        let Some(model) = target.models.get_mut(&name) else {
            continue;
        };
        let sticky = match given.routes.get(&name) {
            Some((_, _, true)) => model.route.sticky_header.clone(),
            Some((file, line, _)) => {
                let msg = format!(
                    "routes model {name}, whose route {file}:{line} gives too: give it in one \
                     place (mesh.yaml may keep only `sticky` next to a VirtualService)"
                );
                e.at(
                    &acc.file,
                    acc.at,
                    &format!("VirtualService {}", acc.vs),
                    msg,
                );
                continue;
            }
            None => None,
        };
        let Some((split, mirror, timeout, retries)) = acc.split else {
            let msg = format!(
                "routes model {name} by header or path only: add a route for its other \
                 requests (the split)"
            );
            e.at(
                &acc.file,
                acc.at,
                &format!("VirtualService {}", acc.vs),
                msg,
            );
            continue;
        };
        let route = Route {
            split,
            pin_header: acc.pin,
            sticky_header: sticky,
            mirror,
            timeout: timeout.unwrap_or(crate::models::DEFAULT_TIMEOUT),
            retries: retries.unwrap_or_default(),
        };
        for (t, r, m, at, path) in &acc.others {
            let differs = t.is_some_and(|t| t != route.timeout)
                || r.as_ref().is_some_and(|r| *r != route.retries)
                || m.as_ref().is_some_and(|m| Some(m) != route.mirror.as_ref());
            if differs {
                let msg = format!(
                    "a timeout, retries or mirror other than the split route's of model \
                     {name}: infermesh applies one of each to every request of a model"
                );
                e.at(&acc.file, *at, path, msg);
            }
        }
        Arc::make_mut(model).route = route;
    }
    errors.extend(e.0);
}

/// What the DestinationRules say.
struct Settings {
    subsets: Subsets,
    connect_timeout: Option<Duration>,
    outlier: Option<OutlierDetection>,
}

fn destination_rules(
    drs: &[DestinationRule],
    target: &Target<'_>,
    given: &Given,
    e: &mut Errors,
) -> Settings {
    let mut out: Subsets = BTreeMap::new();
    let mut connect: Option<(Duration, String, u64)> = None;
    let mut outlier: Option<(OutlierDetection, String, u64)> = None;
    for dr in drs {
        let (host, at, path) = &dr.host;
        let Some(w) = crate::istio_vs::workload_of(host, dr.namespace.as_deref(), target.workloads)
        else {
            let msg = format!("host {host:?} is not the Service of a workload of the mesh");
            e.at(&dr.file, *at, path, msg);
            continue;
        };
        if out.contains_key(&w) {
            let msg = format!(
                "DestinationRule {}: a second DestinationRule for workload {w}",
                dr.name
            );
            e.at(&dr.file, *at, path, msg);
            continue;
        }
        let mut table = BTreeMap::new();
        for (name, version, at) in &dr.subsets {
            let number = version
                .strip_prefix('v')
                .unwrap_or(version)
                .parse::<i64>()
                .ok()
                .filter(|v| {
                    target
                        .models
                        .values()
                        .any(|m| m.served_by == w && m.versions.contains(v))
                });
            match number {
                Some(v) => {
                    table.insert(name.clone(), v);
                }
                None => {
                    let msg = format!(
                        "subset {name}: label version {version:?} is not a version of a \
                         model workload {w} serves"
                    );
                    e.at(&dr.file, *at, "subsets", msg);
                }
            }
        }
        out.insert(w, table);
        if let Some((d, at)) = dr.connect_timeout {
            agree(
                &mut connect,
                (d, dr.file.clone(), at.line),
                given.connect_timeout.as_ref(),
                target.limits.connect_timeout,
                ("connectTimeout", "limits.connect_timeout"),
                (&dr.file, at),
                e,
            );
        }
        if let Some((od, at)) = &dr.outlier {
            agree(
                &mut outlier,
                (od.clone(), dr.file.clone(), at.line),
                given.outlier.as_ref(),
                target.outlier.clone(),
                ("outlierDetection", "outlier_detection"),
                (&dr.file, *at),
                e,
            );
        }
    }
    Settings {
        subsets: out,
        connect_timeout: connect.map(|(d, _, _)| d),
        outlier: outlier.map(|(o, _, _)| o),
    }
}

/// Checks a mesh-wide value against the ones seen before and mesh.yaml's.
#[allow(clippy::too_many_arguments)]
fn agree<T: PartialEq + Clone + std::fmt::Debug>(
    seen: &mut Option<(T, String, u64)>,
    value: (T, String, u64),
    given: Option<&(String, u64)>,
    mesh: T,
    (field, mesh_field): (&str, &str),
    (file, at): (&str, Pos),
    e: &mut Errors,
) {
    if let Some((first, ffile, fline)) = seen {
        if *first != value.0 {
            let msg = format!(
                "{field} differs from the one in {ffile}:{fline}: infermesh has one {mesh_field} \
                 for the whole mesh"
            );
            e.at(file, at, field, msg);
        }
        return;
    }
    if let Some((gfile, gline)) = given
        && mesh != value.0
    {
        let msg = format!(
            "{field} differs from {mesh_field} in {gfile}:{gline}: infermesh has one for the \
             whole mesh"
        );
        e.at(file, at, field, msg);
        return;
    }
    *seen = Some(value);
}
