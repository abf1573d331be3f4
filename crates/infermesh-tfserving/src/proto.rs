//! The generated TensorFlow / TF Serving protobuf types and gRPC services (prost +
//! tonic), from the `.proto` files under `proto/`, nested by package:
//! `proto::tensorflow` (tensors, tf.Example, SignatureDef), `proto::tensorflow::error`
//! (canonical codes) and `proto::tensorflow::serving` (requests, responses, services,
//! model server config).
#![allow(clippy::all, missing_docs)]

/// Package `tensorflow`.
pub mod tensorflow {
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));

    /// Package `tensorflow.error`.
    pub mod error {
        include!(concat!(env!("OUT_DIR"), "/tensorflow.error.rs"));
    }

    /// Package `tensorflow.serving`.
    pub mod serving {
        include!(concat!(env!("OUT_DIR"), "/tensorflow.serving.rs"));
    }
}

/// The encoded `FileDescriptorSet` of every proto above (for reflection, e.g.
/// parsing text-format config files with `prost-reflect`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

#[cfg(test)]
#[path = "proto_tests.rs"]
mod tests;
