//! The errors of the HTTP face, and the one place where any error becomes an HTTP status and a
//! JSON body `{"__type": "...", "message": "..."}`: the caller's mistakes and the agent's limits
//! here, and a backend error (`crate::error::Error`) carried as `Backend`.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::error::Error;

/// What a request can run into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The caller sent something we cannot serve: a bad or missing query parameter, a bad path.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The SSRF token is missing or wrong, or the request looks forwarded.
    #[error("{0}")]
    Forbidden(String),
    /// No such route.
    #[error("{0}")]
    RouteNotFound(String),
    /// `/secretsmanager/value`: the secret has no such top-level key.
    #[error("{0}")]
    KeyNotFound(String),
    /// The route exists but only answers GET.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request is not valid HTTP/1.1 (hyper refused to parse it).
    #[error(
        "the request is not valid HTTP/1.1 (a malformed request line or header, conflicting \
         Content-Length, a folded header line, or a control character); send a plain GET request"
    )]
    MalformedRequest,
    /// The request head has more than 100 header fields or more than 16 KiB of headers.
    #[error("request headers too large: send at most 100 header fields and 16 KiB in all")]
    HeadersTooLarge,
    /// The request line does not fit in the 16 KiB head buffer.
    #[error("request target too long: the request line must fit in 16 KiB")]
    TargetTooLong,
    /// More connections than `max_conn` are open.
    #[error("too many connections: the agent serves at most {0} at once; retry shortly")]
    TooManyConnections(usize),
    /// The backend call behind the answer failed.
    #[error(transparent)]
    Backend(#[from] Error),
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "InvalidParameterException",
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(message.into())
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RouteNotFound(_) => "route_not_found",
            ApiError::KeyNotFound(_) => "key_not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::MalformedRequest => "malformed_request",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::TargetTooLong => "target_too_long",
            ApiError::TooManyConnections(_) => "too_many_connections",
            ApiError::Backend(e) => e.label(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RouteNotFound(_) | ApiError::KeyNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MalformedRequest => StatusCode::BAD_REQUEST,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TargetTooLong => StatusCode::URI_TOO_LONG,
            ApiError::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Backend(Error::Service { status, .. }) => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::Backend(Error::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Backend(
                Error::Unreachable { .. }
                | Error::Certificate { .. }
                | Error::Unusable { .. }
                | Error::NotSent { .. },
            ) => StatusCode::BAD_GATEWAY,
        }
    }

    fn type_name(&self) -> &str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Forbidden(_) => "AccessDeniedException",
            ApiError::RouteNotFound(_) => "NotFoundException",
            ApiError::KeyNotFound(_) => "KeyNotFoundException",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowedException",
            ApiError::MalformedRequest => "InvalidRequestException",
            ApiError::HeadersTooLarge => "RequestHeaderFieldsTooLargeException",
            ApiError::TargetTooLong => "UriTooLongException",
            ApiError::TooManyConnections(_) => "TooManyRequestsException",
            ApiError::Backend(Error::Service { code, .. }) => code,
            ApiError::Backend(Error::Timeout { .. }) => "GatewayTimeoutException",
            ApiError::Backend(
                Error::Unreachable { .. }
                | Error::Certificate { .. }
                | Error::Unusable { .. }
                | Error::NotSent { .. },
            ) => "BadGatewayException",
        }
    }

    /// The JSON body (see [`ApiError::code_and_message`]).
    pub fn body(&self) -> Bytes {
        let (kind, message) = self.code_and_message();
        let body = Body { kind, message };
        // Serializing two strings cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The error code (`__type`) and message a caller sees. For a backend that could not be
    /// reached or asked, a short, stable message that says which class of failure and where to
    /// look; the SDK's own account (addresses, providers tried, environment) stays in the log.
    pub fn code_and_message(&self) -> (&str, String) {
        let message = match self {
            ApiError::Backend(Error::Service { message, .. }) => message.clone(),
            ApiError::Backend(Error::Unreachable { operation, .. }) => format!(
                "{operation}: no usable answer from AWS (the connection failed or was cut, or \
                 the agent is stopping); check the network path to the AWS endpoint. The \
                 agent's log has the cause"
            ),
            ApiError::Backend(Error::Unusable { operation, id, .. }) => format!(
                "{operation} of {id:?}: the answer could not be used (larger than AWS allows, \
                 empty, cut short or not AWS's format); a proxy or endpoint other than AWS may \
                 be answering. The agent's log has the cause"
            ),
            ApiError::Backend(Error::NotSent { operation, .. }) => format!(
                "{operation}: the request could not be sent to AWS because no credentials, \
                 region or endpoint could be resolved; check the role of the task or function \
                 and the AWS settings. The agent's log has the cause"
            ),
            other => other.to_string(),
        };
        (self.type_name(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServiceErrorKind;

    #[test]
    fn body_is_escaped_json_with_type_and_message() {
        let err = ApiError::bad_request("secretId \"a\nb\" is bad");
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["__type"], "InvalidParameterException");
        assert_eq!(v["message"], "secretId \"a\nb\" is bad");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn service_errors_keep_aws_code_and_status() {
        let err = ApiError::Backend(Error::Service {
            kind: ServiceErrorKind::NotFound,
            status: 400,
            code: "ResourceNotFoundException".into(),
            message: "Secrets Manager can't find the specified secret.".into(),
        });
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["__type"], "ResourceNotFoundException");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn timeouts_are_504_and_unreachable_502() {
        let timeout = ApiError::Backend(Error::Timeout {
            operation: "GetSecretValue",
            millis: 10,
        });
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let down = ApiError::Backend(Error::Unreachable {
            operation: "GetSecretValue",
            detail: "connection refused".into(),
        });
        assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    }
    #[test]
    fn unreachable_bodies_are_short_and_keep_the_detail_out() {
        let detail = "dispatch failure: io error: client error (Connect): tcp connect error: \
                      Connection refused (os error 111); hyper_util::client::legacy::Error";
        for (err, class) in [
            (
                Error::Unreachable {
                    operation: "GetSecretValue",
                    detail: detail.into(),
                }
                .into(),
                "connection failed",
            ),
            (
                Error::NotSent {
                    operation: "GetSecretValue",
                    detail: "the credential provider was not enabled: EnvironmentVariable... \
                             ImdsCredentialsProvider..."
                        .into(),
                }
                .into(),
                "no credentials",
            ),
        ] {
            let err: ApiError = err;
            let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
            assert_eq!(v["__type"], "BadGatewayException");
            let msg = v["message"].as_str().unwrap();
            assert!(msg.starts_with("GetSecretValue: "), "{msg}");
            assert!(msg.contains(class), "{msg}");
            assert!(msg.contains("log"), "{msg}");
            for leak in ["hyper", "dispatch", "os error", "Provider", "Environment"] {
                assert!(!msg.contains(leak), "{msg}");
            }
            // The log line (Display) keeps the detail.
            assert!(err.to_string().contains(&err_detail(&err)));
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        }
    }

    fn err_detail(e: &ApiError) -> String {
        match e {
            ApiError::Backend(
                Error::Unreachable { detail, .. } | Error::NotSent { detail, .. },
            ) => detail.clone(),
            _ => String::new(),
        }
    }
}
