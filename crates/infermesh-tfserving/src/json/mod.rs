//! TF Serving's REST JSON, byte-compatible where it matters: predict requests and
//! responses (row and columnar), classify/regress requests and results, model status
//! and metadata bodies. Parsing follows RapidJSON (NaN/Infinity accepted, its error
//! messages and offsets); output follows RapidJSON's `PrettyWriter` and TF Serving's
//! float formatting.

pub mod classify;
mod column;
pub mod model_info;
pub mod number;
pub mod parse;
mod predict_fast;
pub mod predict_request;
pub mod predict_response;
mod proto_json;
pub mod value;
pub mod writer;

pub use classify::{
    ClassifyRegressJsonRequest, encode_classification_result, encode_regression_result,
    parse_classify_regress_request,
};
pub use model_info::{model_metadata_json, model_status_json};
pub use predict_request::{
    PredictJsonRequest, RequestFormat, find_signature, parse_predict_request,
};
pub use predict_response::{encode_predict_response, encode_predict_response_bytes};
