//! Istio `PeerAuthentication` as input: each workload's `mtls` mode. A policy in the
//! root namespace `istio-system` without a selector applies mesh-wide, one in a
//! workload's namespace without a selector to every workload there, one whose
//! `selector.matchLabels` is `{app: <workload>}` (the pod label `infermesh export
//! k8s` sets) to that workload; the most specific wins, as in Istio. `UNSET` (or no
//! `mtls`) inherits. `portLevelMtls` and other selectors are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::ConfigError;
use crate::istio::{Refused, istio_fields};
use crate::model::Workload;
use crate::mtls::MtlsMode;
use crate::read::{Cx, string};
use crate::yaml::{Node, Pos, Value};

/// Istio's root namespace: policies there without a selector apply mesh-wide.
pub(crate) const ROOT_NAMESPACE: &str = "istio-system";

/// One `PeerAuthentication`.
pub(crate) struct PeerAuthentication {
    pub file: String,
    pub at: Pos,
    pub name: String,
    pub namespace: Option<String>,
    /// The `app` label of `selector.matchLabels`.
    pub app: Option<String>,
    /// `None`: UNSET (inherit).
    pub mode: Option<MtlsMode>,
}

pub(crate) fn read(
    cx: &mut Cx,
    spec: &Node,
    path: &str,
    meta: (String, Option<String>),
    refused: &mut Refused,
) -> Option<PeerAuthentication> {
    let f = istio_fields(cx, spec, path, &["selector", "mtls"], refused)?;
    let app = f.opt(cx, "selector", |cx, n, p| {
        let sf = istio_fields(cx, n, p, &["matchLabels"], refused)?;
        sf.req(cx, "matchLabels", |cx, n, p| {
            let lf = istio_fields(cx, n, p, &["app"], refused)?;
            lf.req(cx, "app", string)
        })
    });
    let mode = f.opt(cx, "mtls", |cx, n, p| {
        let mf = istio_fields(cx, n, p, &["mode"], refused)?;
        let Some(m) = mf.get("mode") else {
            return Some(None);
        };
        match &m.value {
            Value::Str(s) if s == "UNSET" => Some(None),
            _ => crate::mtls::mode(cx, m, &mf.path_of("mode")).map(Some),
        }
    });
    Some(PeerAuthentication {
        file: String::new(),
        at: spec.at,
        name: meta.0,
        namespace: meta.1,
        app,
        mode: mode.flatten(),
    })
}

/// Sets each workload's `mtls` from the policies. `given`: workloads whose mode
/// mesh.yaml sets (file, line) — an Istio policy may not also set it.
pub(crate) fn apply(
    docs: &[PeerAuthentication],
    workloads: &mut BTreeMap<String, Arc<Workload>>,
    given: &BTreeMap<String, (String, u64)>,
    errors: &mut Vec<ConfigError>,
) {
    let error = |pa: &PeerAuthentication, message: String| ConfigError {
        file: pa.file.clone(),
        line: pa.at.line,
        column: pa.at.col,
        path: format!("PeerAuthentication {}", pa.name),
        message,
    };
    // Per level (0 mesh, 1 namespace, 2 workload) and key: the policy.
    let mut levels: BTreeMap<(u8, String), &PeerAuthentication> = BTreeMap::new();
    for pa in docs {
        let Some(ns) = &pa.namespace else {
            errors.push(error(
                pa,
                "needs `metadata.namespace` (the namespace it applies to)".into(),
            ));
            continue;
        };
        let key = match &pa.app {
            Some(app) => {
                let known = workloads.get(app).is_some_and(|w| &w.namespace == ns);
                if !known {
                    let msg =
                        format!("selects `app: {app}` in namespace {ns}: no workload of the mesh");
                    errors.push(error(pa, msg));
                    continue;
                }
                (2, app.clone())
            }
            None if ns == ROOT_NAMESPACE => (0, String::new()),
            None => (1, ns.clone()),
        };
        if let Some(first) = levels.get(&key) {
            let msg = format!(
                "applies to the same workloads as PeerAuthentication {} ({}:{})",
                first.name, first.file, first.at.line
            );
            errors.push(error(pa, msg));
            continue;
        }
        levels.insert(key, pa);
    }
    for (name, workload) in workloads.iter_mut() {
        let applies = [
            (2, name.clone()),
            (1, workload.namespace.clone()),
            (0, String::new()),
        ];
        let Some(pa) = applies
            .iter()
            .filter_map(|k| levels.get(k))
            .find(|pa| pa.mode.is_some())
        else {
            continue;
        };
        if let Some((file, line)) = given.get(name) {
            let msg = format!(
                "sets the mtls mode of workload {name}, which {file}:{line} sets too: give it \
                 in one place"
            );
            errors.push(error(pa, msg));
            continue;
        }
        if let Some(mode) = pa.mode {
            Arc::make_mut(workload).mtls = mode;
        }
    }
}
