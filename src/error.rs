//! One error type for everything a request can run into, and the one place where an error
//! becomes an HTTP status and a JSON body.
//!
//! AWS SDK errors are classified where the SDK is called (see `backend`); this module only
//! knows the classes. Messages never contain a secret value: they carry ids, parameter names
//! and AWS's own error message, nothing the backend returned as data.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// What went wrong, in the classes a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The caller sent something we cannot serve: a bad or missing query parameter, a bad path.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The SSRF token is missing or wrong, or the request looks forwarded.
    #[error("{0}")]
    Forbidden(String),
    /// No such route.
    #[error("{0}")]
    RouteNotFound(String),
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
    /// AWS answered with an error of its own (not found, access denied, validation, ...).
    /// `status` is the HTTP status AWS sent; `code` AWS's error code, kept as is.
    #[error("{code}: {message}")]
    Service {
        kind: ServiceErrorKind,
        status: u16,
        code: String,
        message: String,
    },
    /// The backend did not answer within the configured timeout.
    #[error("{operation} timed out after {millis} ms")]
    Timeout {
        operation: &'static str,
        millis: u64,
    },
    /// The backend could not be reached or did not answer usably (DNS, connect, TLS, a dropped
    /// connection, an unreadable answer). `detail` goes to the log, never to the caller.
    #[error("{operation} failed: {detail}")]
    Unreachable {
        operation: &'static str,
        detail: String,
    },
    /// The request could not be sent at all: no credentials, region or endpoint could be
    /// resolved. `detail` (the SDK's account of every provider it tried) goes to the log only.
    #[error("{operation} could not be sent: {detail}")]
    NotSent {
        operation: &'static str,
        detail: String,
    },
}

/// The classes of AWS service errors that change what the cache does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// ResourceNotFoundException, ParameterNotFound, ParameterVersionNotFound: a "no".
    NotFound,
    /// AccessDeniedException, KMS decryption failures: a "no".
    AccessDenied,
    /// ThrottlingException, TooManyUpdates, rate exceeded: transient.
    Throttled,
    /// A 5xx from AWS (InternalServiceError, ...): transient.
    ServerError,
    /// Anything else AWS refused (validation, invalid request): a "no".
    Other,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    message: String,
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest {
            code: "InvalidParameterException",
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    /// True for failures that say nothing about the secret itself: the cached value may still be
    /// served (stale-if-error) and the call retried later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Unreachable { .. } | Error::NotSent { .. } => true,
            Error::Service { kind, .. } => {
                matches!(
                    kind,
                    ServiceErrorKind::Throttled | ServiceErrorKind::ServerError
                )
            }
            _ => false,
        }
    }

    /// True for the "it does not exist" answers that the negative cache remembers.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Service {
                kind: ServiceErrorKind::NotFound,
                ..
            }
        )
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "bad_request",
            Error::Forbidden(_) => "forbidden",
            Error::RouteNotFound(_) => "route_not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::MalformedRequest => "malformed_request",
            Error::HeadersTooLarge => "headers_too_large",
            Error::TargetTooLong => "target_too_long",
            Error::TooManyConnections(_) => "too_many_connections",
            Error::Service { kind, .. } => match kind {
                ServiceErrorKind::NotFound => "not_found",
                ServiceErrorKind::AccessDenied => "access_denied",
                ServiceErrorKind::Throttled => "throttled",
                ServiceErrorKind::ServerError => "server_error",
                ServiceErrorKind::Other => "service_error",
            },
            Error::Timeout { .. } => "timeout",
            Error::Unreachable { .. } => "unreachable",
            Error::NotSent { .. } => "not_sent",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::MalformedRequest => StatusCode::BAD_REQUEST,
            Error::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::TargetTooLong => StatusCode::URI_TOO_LONG,
            Error::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Service { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Unreachable { .. } | Error::NotSent { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    fn type_name(&self) -> &str {
        match self {
            Error::BadRequest { code, .. } => code,
            Error::Forbidden(_) => "AccessDeniedException",
            Error::RouteNotFound(_) => "NotFoundException",
            Error::MethodNotAllowed(_) => "MethodNotAllowedException",
            Error::MalformedRequest => "InvalidRequestException",
            Error::HeadersTooLarge => "RequestHeaderFieldsTooLargeException",
            Error::TargetTooLong => "UriTooLongException",
            Error::TooManyConnections(_) => "TooManyRequestsException",
            Error::Service { code, .. } => code,
            Error::Timeout { .. } => "GatewayTimeoutException",
            Error::Unreachable { .. } | Error::NotSent { .. } => "BadGatewayException",
        }
    }

    /// The JSON body: `{"__type": "...", "message": "..."}`. For a backend that could not be
    /// reached or asked, a short, stable message that says which class of failure and where to
    /// look; the SDK's own account (addresses, providers tried, environment) stays in the log.
    pub fn body(&self) -> Bytes {
        let message = match self {
            Error::Service { message, .. } => message.clone(),
            Error::Unreachable { operation, .. } => format!(
                "{operation}: no usable answer from AWS (the connection failed or was cut, or \
                 the agent is stopping); check the network path to the AWS endpoint. The \
                 agent's log has the cause"
            ),
            Error::NotSent { operation, .. } => format!(
                "{operation}: the request could not be sent to AWS because no credentials, \
                 region or endpoint could be resolved; check the role of the task or function \
                 and the AWS settings. The agent's log has the cause"
            ),
            other => other.to_string(),
        };
        let body = Body {
            kind: self.type_name(),
            message,
        };
        // Serializing two strings cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_escaped_json_with_type_and_message() {
        let err = Error::bad_request("secretId \"a\nb\" is bad");
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["__type"], "InvalidParameterException");
        assert_eq!(v["message"], "secretId \"a\nb\" is bad");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn service_errors_keep_aws_code_and_status() {
        let err = Error::Service {
            kind: ServiceErrorKind::NotFound,
            status: 400,
            code: "ResourceNotFoundException".into(),
            message: "Secrets Manager can't find the specified secret.".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["__type"], "ResourceNotFoundException");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.is_not_found());
        assert!(!err.is_transient());
    }

    #[test]
    fn transient_classes() {
        let timeout = Error::Timeout {
            operation: "GetSecretValue",
            millis: 10,
        };
        assert!(timeout.is_transient());
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let down = Error::Unreachable {
            operation: "GetSecretValue",
            detail: "connection refused".into(),
        };
        assert!(down.is_transient());
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
                },
                "connection failed",
            ),
            (
                Error::NotSent {
                    operation: "GetSecretValue",
                    detail: "the credential provider was not enabled: EnvironmentVariable... \
                             ImdsCredentialsProvider..."
                        .into(),
                },
                "no credentials",
            ),
        ] {
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
            assert!(err.is_transient());
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        }
    }

    fn err_detail(e: &Error) -> String {
        match e {
            Error::Unreachable { detail, .. } | Error::NotSent { detail, .. } => detail.clone(),
            _ => String::new(),
        }
    }
}
