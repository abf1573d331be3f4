//! The TensorFlow Serving wire protocol, shared by the model server and (later) the
//! proxy: the tensor value type, TF status codes and their HTTP/gRPC mapping, the
//! servable interface an inference engine implements, the REST JSON encoding of
//! tensors, REST path parsing, and the gRPC protos. No inference engine lives here.
#![forbid(unsafe_code)]

pub mod api;
pub mod inference;
pub mod json;
pub mod messages;
pub mod model_info;
pub mod proto;
pub mod rest_path;
pub mod servable;
pub mod status;
pub mod tensor;
pub mod tensor_proto;

pub use api::Api;
pub use rest_path::{RestApi, RestRequest, VersionChoice, is_api_path, parse_rest_path};
pub use servable::{DEFAULT_SIGNATURE, Servable, Signature, TensorInfo};
pub use status::{Code, Status};
pub use tensor::{DType, Tensor, TensorData};

pub use proto::FILE_DESCRIPTOR_SET;
