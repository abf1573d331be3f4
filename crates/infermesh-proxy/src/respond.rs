//! The one place that maps a [`Failure`] to what the client sees: an HTTP status, a
//! gRPC code, a message, and the `x-infermesh-error` kind that tells the proxy's own
//! errors apart from the model server's. REST errors look like TF Serving's
//! (`{"error": "..."}` JSON); gRPC errors are trailers-only responses. The message is
//! meant for clients; internals go to the log, not here.

use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use infermesh_tfserving::{Code, Status};

use crate::body::{self, ProxyBody};
use crate::error::Failure;
use crate::inspect::Protocol;

/// Set on every response the proxy generates itself: the kind of failure.
pub const ERROR_HEADER: HeaderName = HeaderName::from_static("x-infermesh-error");

/// Set on responses to model requests: the model version that served.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("x-infermesh-model-version");

/// gRPC's status, in trailers or in a trailers-only response's headers (a parsed name:
/// looking it up by `&str` would parse and validate the name on every request).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What a denied request is told, REST and gRPC alike: Istio's wording, nothing
/// about the policies.
pub const DENIED_MESSAGE: &str = "RBAC: access denied";

/// What a request refused for want of a durable audit record is told (the cause is
/// logged, not answered).
pub const AUDIT_UNAVAILABLE_MESSAGE: &str =
    "The audit trail cannot be written; the request was refused rather than served unaudited";

/// A failure, classified.
struct Answer {
    /// The `x-infermesh-error` value.
    kind: &'static str,
    http: StatusCode,
    status: Status,
}

fn classify(failure: &Failure) -> Answer {
    let (kind, status, http) = match failure {
        Failure::Request(s) => ("request", s.clone(), None),
        Failure::InvalidPath(why) => ("request", Status::invalid_argument(why.clone()), None),
        Failure::NoRoute => ("route", Status::not_found("Not found"), None),
        Failure::Unauthenticated => (
            "authn",
            Status::new(Code::Unauthenticated, infermesh_authn::CLIENT_MESSAGE),
            Some(StatusCode::UNAUTHORIZED),
        ),
        Failure::Denied => (
            "authz",
            Status::new(Code::PermissionDenied, DENIED_MESSAGE),
            Some(StatusCode::FORBIDDEN),
        ),
        Failure::Route(s) => ("route", s.clone(), None),
        Failure::BodyTooLarge { limit } => (
            "limit",
            Status::new(
                Code::ResourceExhausted,
                format!("Request body exceeds the limit of {limit} bytes"),
            ),
            Some(StatusCode::PAYLOAD_TOO_LARGE),
        ),
        Failure::ClientBody(e) => (
            "client",
            Status::new(Code::Cancelled, format!("Reading the request failed: {e}")),
            Some(StatusCode::BAD_REQUEST),
        ),
        Failure::UpstreamConnect(e) => (
            "upstream-connect",
            Status::unavailable(format!("upstream connect error: {e}")),
            None,
        ),
        // Envoy's "upstream connect error or disconnect/reset before headers": 503.
        Failure::UpstreamReset(e) => (
            "upstream",
            Status::unavailable(format!("upstream reset before response: {e}")),
            Some(StatusCode::SERVICE_UNAVAILABLE),
        ),
        Failure::Upstream(e) => (
            "upstream",
            Status::unavailable(format!("upstream error: {e}")),
            Some(StatusCode::BAD_GATEWAY),
        ),
        Failure::Timeout(after) => (
            "timeout",
            Status::deadline_exceeded(format!("upstream request timeout after {after:?}")),
            None,
        ),
        Failure::AuditUnavailable(_) => (
            "audit-unavailable",
            Status::unavailable(AUDIT_UNAVAILABLE_MESSAGE),
            Some(StatusCode::SERVICE_UNAVAILABLE),
        ),
    };
    let http = http.unwrap_or_else(|| {
        StatusCode::from_u16(status.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    });
    Answer { kind, http, status }
}

/// What a failure is answered with, for answers made elsewhere (ext_authz): the HTTP
/// status, the `x-infermesh-error` kind and the client message.
pub fn describe(failure: &Failure) -> (StatusCode, &'static str, String) {
    let answer = classify(failure);
    (answer.http, answer.kind, answer.status.message.clone())
}

/// The response for a request the proxy answers itself.
pub fn failure(protocol: Protocol, failure: &Failure) -> Response<ProxyBody> {
    let answer = classify(failure);
    let mut response = match (protocol, failure) {
        (Protocol::Grpc, _) => grpc_trailers_only(&answer.status),
        (Protocol::Rest, Failure::NoRoute) => plain(answer.http),
        (Protocol::Rest, _) => json(answer.http, &answer.status),
    };
    let headers = response.headers_mut();
    headers.insert(ERROR_HEADER, HeaderValue::from_static(answer.kind));
    if matches!(failure, Failure::Unauthenticated) {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(infermesh_authn::WWW_AUTHENTICATE),
        );
    }
    response
}

fn plain(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, error: &Status) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(error.to_json_body()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A gRPC trailers-only response: HTTP 200, `grpc-status` and `grpc-message` in the
/// headers, no body.
fn grpc_trailers_only(error: &Status) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS, HeaderValue::from(error.code as i32));
    let message = error.to_grpc().message().to_owned();
    if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_errors_are_tf_json_with_kind() {
        let r = failure(
            Protocol::Rest,
            &Failure::Route(infermesh_tfserving::messages::servable_not_found(
                "foo", None,
            )),
        );
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[&ERROR_HEADER], "route");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = failure(Protocol::Rest, &Failure::BodyTooLarge { limit: 10 });
        assert_eq!(r.status(), 413);
        let r = failure(
            Protocol::Rest,
            &Failure::Timeout(std::time::Duration::from_millis(5)),
        );
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()[&ERROR_HEADER], "timeout");
    }

    #[test]
    fn grpc_errors_are_trailers_only() {
        let r = failure(
            Protocol::Grpc,
            &Failure::UpstreamConnect("connection refused".into()),
        );
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(
            r.headers()["grpc-message"],
            "upstream connect error: connection refused"
        );
        assert_eq!(r.headers()[&ERROR_HEADER], "upstream-connect");
        let r = failure(Protocol::Grpc, &Failure::BodyTooLarge { limit: 1 });
        assert_eq!(r.headers()["grpc-status"], "8");
    }

    #[test]
    fn denials_say_rbac_access_denied_and_nothing_else() {
        let r = failure(Protocol::Rest, &Failure::Denied);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[&ERROR_HEADER], "authz");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = failure(Protocol::Grpc, &Failure::Denied);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "RBAC: access denied");
        assert_eq!(r.headers()[&ERROR_HEADER], "authz");
        let r = failure(
            Protocol::Rest,
            &Failure::InvalidPath("invalid request path: an encoded NUL (%00)".into()),
        );
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[&ERROR_HEADER], "request");
    }

    #[test]
    fn audit_unavailable_is_503_and_grpc_unavailable() {
        let f = Failure::AuditUnavailable("No space left on device".into());
        let r = failure(Protocol::Rest, &f);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[&ERROR_HEADER], "audit-unavailable");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = failure(Protocol::Grpc, &f);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], AUDIT_UNAVAILABLE_MESSAGE);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a%b\nc é"), "a%25b%0Ac %C3%A9");
    }
}
