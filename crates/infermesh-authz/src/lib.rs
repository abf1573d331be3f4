//! Authorization for the mesh: Istio `AuthorizationPolicy` semantics (CUSTOM → DENY →
//! ALLOW, AUDIT marks) over peer and request principals, namespaces, IP blocks, hosts,
//! ports, methods, paths and `when` conditions (JWT claims, nested claims, headers,
//! …), plus model operations (model, version, label, signature, API) — for REST and
//! gRPC alike — and the path normalization that runs before any matching.
//!
//! ```text
//! MeshConfig.policies ──Authorizer::new──▶ compiled rules, indexed by model, principal, path, …
//! raw path ──normalize_rest──▶ canonical path + RestRequest ─┐
//! identities, claims, ModelOp ───────────────────────────────┴─▶ AuthzRequest
//!          ──authorize──▶ Decision (allowed, deciding policy/rule, audit)
//!          ──explain────▶ Explanation (every policy: matched, or why not)
//! ```
//!
//! The evaluation order and the fail-closed rules are in [`engine`]; the
//! normalization steps in [`normalize`]. Denials carry no policy contents: the
//! `reasons` of a [`Decision`] are for operators (`infermesh policy check`) only.
#![forbid(unsafe_code)]

mod check;
pub mod engine;
mod explain;
mod index;
pub mod normalize;
mod pattern;
mod request;
mod rule;

pub use check::{CheckModel, CheckRequest};
pub use engine::Authorizer;
pub use explain::{Explanation, Outcome, PolicyResult};
pub use normalize::{
    NormalizedPath, NormalizedRequest, PathError, canonical_rest_path, normalize_path,
    normalize_rest,
};
pub use request::{Api, AuthzRequest, Basis, Deciding, Decision, ModelOp};
