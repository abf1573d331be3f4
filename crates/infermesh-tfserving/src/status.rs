//! TensorFlow's canonical error codes (`tensorflow/core/protobuf/error_codes.proto`)
//! and their one mapping to HTTP statuses (as TF Serving's REST API does it) and to
//! gRPC statuses (the code numbers are the same).

use std::fmt;

/// `tensorflow.error.Code`; equal in number to the gRPC status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// The HTTP status TF Serving's REST API answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Ok => 200,
            Code::Cancelled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        }
    }

    /// The upper-case name proto3 JSON uses (`"OK"`, `"NOT_FOUND"`).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    pub fn from_i32(value: i32) -> Code {
        match value {
            0 => Code::Ok,
            1 => Code::Cancelled,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            6 => Code::AlreadyExists,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            9 => Code::FailedPrecondition,
            10 => Code::Aborted,
            11 => Code::OutOfRange,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            15 => Code::DataLoss,
            16 => Code::Unauthenticated,
            _ => Code::Unknown,
        }
    }
}

/// An error as TF Serving reports it: a code and a message meant for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

/// gRPC messages are cut to this many bytes, as TF Serving does.
const GRPC_MESSAGE_LIMIT: usize = 1024;

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Status {
        Status::new(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Status {
        Status::new(Code::NotFound, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Status {
        Status::new(Code::FailedPrecondition, message)
    }

    pub fn unimplemented(message: impl Into<String>) -> Status {
        Status::new(Code::Unimplemented, message)
    }

    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(Code::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(Code::Unavailable, message)
    }

    pub fn deadline_exceeded(message: impl Into<String>) -> Status {
        Status::new(Code::DeadlineExceeded, message)
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The REST error body: `{"error": "<message>"}`.
    pub fn to_json_body(&self) -> String {
        serde_json::json!({ "error": self.message }).to_string()
    }

    /// The gRPC status, with the message cut at 1024 bytes plus `...TRUNCATED`.
    pub fn to_grpc(&self) -> tonic::Status {
        let message = if self.message.len() > GRPC_MESSAGE_LIMIT {
            let mut cut = GRPC_MESSAGE_LIMIT;
            while !self.message.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...TRUNCATED", &self.message[..cut])
        } else {
            self.message.clone()
        };
        tonic::Status::new(tonic::Code::from_i32(self.code as i32), message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl From<Status> for tonic::Status {
    fn from(status: Status) -> tonic::Status {
        status.to_grpc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_mapping_follows_tf_serving() {
        assert_eq!(Code::Cancelled.http_status(), 499);
        assert_eq!(Code::FailedPrecondition.http_status(), 400);
        assert_eq!(Code::DeadlineExceeded.http_status(), 504);
        assert_eq!(Code::ResourceExhausted.http_status(), 429);
        assert_eq!(Code::Unimplemented.http_status(), 501);
        assert_eq!(Code::DataLoss.http_status(), 500);
    }

    #[test]
    fn grpc_messages_are_truncated() {
        let long = Status::invalid_argument("x".repeat(2000));
        let grpc = long.to_grpc();
        assert_eq!(grpc.code(), tonic::Code::InvalidArgument);
        assert_eq!(grpc.message().len(), 1024 + "...TRUNCATED".len());
        assert!(grpc.message().ends_with("...TRUNCATED"));
    }

    #[test]
    fn json_body_escapes_message() {
        let s = Status::not_found("Servable not found for request: Latest(\"x\")");
        let v: serde_json::Value = serde_json::from_str(&s.to_json_body()).unwrap();
        assert_eq!(v["error"], "Servable not found for request: Latest(\"x\")");
    }
}
