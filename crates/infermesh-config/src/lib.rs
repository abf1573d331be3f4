//! The `mesh.yaml` intent file: its schema, validation with errors that name file,
//! line and field, and the compiled immutable structures ([`model`]) the proxy reads.
#![forbid(unsafe_code)]

pub mod model;

pub use model::*;
