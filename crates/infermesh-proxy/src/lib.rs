//! The data plane: the gateway and the sidecar that proxy TensorFlow Serving REST and
//! gRPC traffic with model-aware routing and policy. One pipeline serves both (see
//! `docs/pipeline.md`):
//!
//! ```text
//! accept → parse model request → authenticate → route decision → authorize → forward → record
//! listener   inspect / grpc       authenticate   route (gateway)   authorize   attempts   record
//!            (paths normalized)                                    signature   forward
//!                                                                              mirror
//! ```
//!
//! Failures from every stage become responses in one place, [`respond`]. The config
//! is read from an `ArcSwap<MeshConfig>` once per request, so it can be swapped live;
//! its policies are compiled once per config value.
#![forbid(unsafe_code)]

mod admin;
mod attempts;
mod audit;
mod authenticate;
mod authorize;
mod body;
pub mod budget;
mod end_user;
pub mod endpoints;
mod error;
pub mod ext_authz;
mod forward;
mod gateway;
mod grpc;
mod grpc_scan;
pub mod identity;
mod inspect;
mod listener;
mod mirror;
pub mod mtls;
mod names;
mod pipeline;
mod record;
pub mod respond;
pub mod route;
mod signature;
mod upstream;

pub use admin::{ReadyCheck, ReloadRequest};
pub use audit::ProxyAudit;
pub use end_user::END_USER_HEADER;
pub use error::{Failure, ProxyError};
pub use gateway::{Gateway, Sidecar};
pub use identity::{Connection, PeerIdentity, RequestAuth};
pub use inspect::{Api, ModelRequest, Protocol};
pub use mirror::MIRROR_HEADER;
pub use pipeline::{MIRROR_BODY_MAX, ProxyStats};
pub use respond::{ERROR_HEADER, VERSION_HEADER};

/// Maps looked up per request whose keys come from the config or from verified
/// identities, never chosen by clients: a fast hash instead of SipHash.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests;
