//! Stage 5 (gateway): which version of the model serves a request, and whether a copy
//! goes to the mirror. The request's own version or label wins; else the pin header;
//! else the sticky header's hash picks a stable version within the split weights;
//! else a weighted random pick from the split. Pure functions of the config and the
//! request, with the randomness passed in, so the statistics are tested in-process.

use http::HeaderMap;
use infermesh_config::Model;
use infermesh_tfserving::{Status, VersionChoice, messages};

use crate::error::Failure;
use crate::inspect::{Api, ModelRequest};

/// The routing decision for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The version that serves; `None` leaves the choice to the model server
    /// (model status requests without a version).
    pub version: Option<i64>,
    /// The request must be rewritten to name `version` (it named none, or a label).
    pub rewrite: bool,
    /// Also send a copy to this version; its answer is discarded.
    pub mirror: Option<i64>,
}

/// Looks the model up in the config: unknown models get TF Serving's NOT_FOUND.
pub fn model<'c>(
    models: &'c std::collections::BTreeMap<String, std::sync::Arc<Model>>,
    request: &ModelRequest,
) -> Result<&'c Model, Failure> {
    models
        .get(&request.model)
        .map(|m| m.as_ref())
        .ok_or_else(|| {
            Failure::Route(match request.api {
                Api::Status => messages::no_versions(&request.model),
                _ => messages::servable_not_found(&request.model, version_of(&request.version)),
            })
        })
}

fn version_of(choice: &VersionChoice) -> Option<i64> {
    match choice {
        VersionChoice::Version(v) => Some(*v),
        _ => None,
    }
}

/// Decides the version (and mirror) for a request to `model`.
pub fn decide(
    model: &Model,
    request: &ModelRequest,
    headers: &HeaderMap,
    rng: &mut fastrand::Rng,
) -> Result<Decision, Failure> {
    let (version, rewrite) = match &request.version {
        VersionChoice::Version(v) => (Some(*v), false),
        VersionChoice::Label(label) => match model.labels.get(label) {
            Some(v) => (Some(*v), true),
            None => return Err(Failure::Route(messages::unknown_label(label))),
        },
        // Status without a version reports every version: leave it alone.
        VersionChoice::Latest if request.api == Api::Status => (None, false),
        VersionChoice::Latest => (Some(unversioned(model, headers, rng)?), true),
    };
    let mirror = model
        .route
        .mirror
        .as_ref()
        .filter(|m| request.api.is_inference() && Some(m.version) != version)
        .filter(|m| rng.f64() * 100.0 < m.percent)
        .map(|m| m.version);
    Ok(Decision {
        version,
        rewrite,
        mirror,
    })
}

/// The version for a request that named none: pin header, sticky hash, or split.
fn unversioned(
    model: &Model,
    headers: &HeaderMap,
    rng: &mut fastrand::Rng,
) -> Result<i64, Failure> {
    let route = &model.route;
    if let Some(name) = &route.pin_header
        && let Some(value) = headers.get(name)
    {
        return pinned(model, name.as_str(), value.as_bytes());
    }
    let total: u64 = route.split.iter().map(|(_, w)| u64::from(*w)).sum();
    let point = match route.sticky_header.as_ref().and_then(|h| headers.get(h)) {
        Some(value) => fnv1a(value.as_bytes()) % total.max(1),
        None => rng.u64(0..total.max(1)),
    };
    split_pick(&route.split, point).ok_or_else(|| {
        Failure::Route(Status::unavailable(format!(
            "model {} has no version to route to",
            model.name
        )))
    })
}

/// The version a pin header names (a version number or a label of the model).
fn pinned(model: &Model, header: &str, value: &[u8]) -> Result<i64, Failure> {
    let text = std::str::from_utf8(value).unwrap_or("").trim();
    let version = match text.parse::<i64>() {
        Ok(v) => model.versions.contains(&v).then_some(v),
        Err(_) => model.labels.get(text).copied(),
    };
    version.ok_or_else(|| {
        let labels: Vec<&str> = model.labels.keys().map(String::as_str).collect();
        Failure::Route(Status::invalid_argument(format!(
            "Invalid {header} header {:?}: model {} has versions {:?} and labels {:?}",
            String::from_utf8_lossy(value),
            model.name,
            model.versions,
            labels
        )))
    })
}

/// The split entry covering `point` in `[0, total weight)`.
pub fn split_pick(split: &[(i64, u32)], point: u64) -> Option<i64> {
    let mut upto = 0u64;
    for (version, weight) in split {
        upto += u64::from(*weight);
        if point < upto {
            return Some(*version);
        }
    }
    split.last().map(|(v, _)| *v)
}

/// FNV-1a, 64 bit: stable across processes and releases, so every gateway replica
/// sends one caller to the same version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
