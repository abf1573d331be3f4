//! The data plane: the gateway and the sidecar that proxy TensorFlow Serving REST and
//! gRPC traffic with model-aware routing. One pipeline serves both (see
//! `docs/pipeline.md`):
//!
//! ```text
//! accept → parse model request → authenticate → authorize → route → forward → record
//! listener   inspect / grpc       seams          seams       route     attempts   seams
//!                                                            pipeline  forward
//!                                                                      mirror
//! ```
//!
//! Failures from every stage become responses in one place, [`respond`]. The config
//! is read from an `ArcSwap<MeshConfig>` once per request, so it can be swapped live.
#![forbid(unsafe_code)]

mod attempts;
mod body;
pub mod budget;
pub mod endpoints;
mod error;
mod forward;
mod gateway;
mod grpc;
mod grpc_scan;
mod inspect;
mod listener;
mod mirror;
mod pipeline;
pub mod respond;
pub mod route;
mod seams;
mod upstream;

pub use error::{Failure, ProxyError};
pub use gateway::{Gateway, Sidecar};
pub use inspect::{Api, ModelRequest, Protocol};
pub use mirror::MIRROR_HEADER;
pub use pipeline::{MIRROR_BODY_MAX, ProxyStats};
pub use respond::{ERROR_HEADER, VERSION_HEADER};

#[cfg(test)]
mod tests;
