//! TF Serving's client-visible error messages, in one place, so the model server and
//! the proxy say exactly what TF Serving says.

use crate::Status;

/// TF Serving's name for a servable request: `Latest(foo)` or `Specific(foo, 50)`.
pub fn servable_request(model: &str, version: Option<i64>) -> String {
    match version {
        None => format!("Latest({model})"),
        Some(v) => format!("Specific({model}, {v})"),
    }
}

/// NOT_FOUND `Servable not found for request: Latest(foo)` (predict, classify, …).
pub fn servable_not_found(model: &str, version: Option<i64>) -> Status {
    Status::not_found(format!(
        "Servable not found for request: {}",
        servable_request(model, version)
    ))
}

/// NOT_FOUND `Could not find any versions of model foo` (model status).
pub fn no_versions(model: &str) -> Status {
    Status::not_found(format!("Could not find any versions of model {model}"))
}

/// NOT_FOUND `Could not find version 50 of model foo` (model status).
pub fn version_not_found(model: &str, version: i64) -> Status {
    Status::not_found(format!("Could not find version {version} of model {model}"))
}

/// INVALID_ARGUMENT `Unrecognized servable version label: X`.
pub fn unknown_label(label: &str) -> Status {
    Status::invalid_argument(format!("Unrecognized servable version label: {label}"))
}

/// REST: INVALID_ARGUMENT `Serving signature name: "X" not found in signature def`.
pub fn rest_signature_not_found(signature: &str) -> Status {
    Status::invalid_argument(format!(
        "Serving signature name: \"{signature}\" not found in signature def"
    ))
}

/// gRPC: FAILED_PRECONDITION `Serving signature key "X" not found.`
pub fn grpc_signature_not_found(signature: &str) -> Status {
    Status::failed_precondition(format!("Serving signature key \"{signature}\" not found."))
}

/// INVALID_ARGUMENT `Malformed request: POST /v1/foo`.
pub fn malformed_request(method: &str, path: &str) -> Status {
    Status::invalid_argument(format!("Malformed request: {method} {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn messages_match_tf_serving() {
        let s = servable_not_found("foo", None);
        assert_eq!(s.code, Code::NotFound);
        assert_eq!(s.message, "Servable not found for request: Latest(foo)");
        assert_eq!(
            servable_not_found("foo", Some(50)).message,
            "Servable not found for request: Specific(foo, 50)"
        );
        assert_eq!(
            no_versions("foo").message,
            "Could not find any versions of model foo"
        );
        assert_eq!(
            version_not_found("foo", 50).message,
            "Could not find version 50 of model foo"
        );
        let s = unknown_label("canary");
        assert_eq!((s.code, s.http_status()), (Code::InvalidArgument, 400));
        assert_eq!(s.message, "Unrecognized servable version label: canary");
        assert_eq!(
            rest_signature_not_found("x").message,
            "Serving signature name: \"x\" not found in signature def"
        );
        let s = grpc_signature_not_found("x");
        assert_eq!(s.code, Code::FailedPrecondition);
        assert_eq!(s.message, "Serving signature key \"x\" not found.");
        assert_eq!(
            malformed_request("POST", "/v1/foo").message,
            "Malformed request: POST /v1/foo"
        );
    }
}
