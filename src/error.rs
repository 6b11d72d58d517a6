//! What a call to AWS can fail with, in the classes its callers act on (the cache's
//! stale-if-error and negative cache, `exec`'s messages). It knows no HTTP: the HTTP face maps it
//! to a status and a JSON body in one place (`api::error`), the commands to their exit codes.
//!
//! AWS SDK errors are classified where the SDK is called (see `backend`). Messages never
//! contain a secret value: they carry ids, parameter names and AWS's own error message, nothing
//! the backend returned as data.

/// What went wrong with a backend call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
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
    /// The TLS handshake refused the server's certificate (an untrusted issuer, a wrong name,
    /// expired). `host` is where the call went; `reason` says why and which roots were used.
    #[error(
        "{operation}: the TLS certificate of {host} is not trusted ({reason}); if the \
             endpoint or a proxy uses a private CA, give its bundle with AWS_CA_BUNDLE or \
             SSL_CERT_FILE"
    )]
    Certificate {
        operation: &'static str,
        host: String,
        reason: String,
    },
    /// Something answered, but not with anything AWS sends: a body larger than AWS's own limits
    /// allow (see `backend::limits`), an empty or unparsable 200, a redirect, an answer cut
    /// short. The cached value may still be served. `detail` goes to the log, never to the
    /// caller.
    #[error("{operation} of {id}: {detail}")]
    Unusable {
        operation: &'static str,
        /// The secret, parameter, certificate or role the call was for.
        id: String,
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

impl Error {
    /// True for failures that say nothing about the secret itself: the cached value may still be
    /// served (stale-if-error) and the call retried later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. }
            | Error::Unreachable { .. }
            | Error::Certificate { .. }
            | Error::Unusable { .. }
            | Error::NotSent { .. } => true,
            Error::Service { kind, .. } => {
                matches!(
                    kind,
                    ServiceErrorKind::Throttled | ServiceErrorKind::ServerError
                )
            }
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
            Error::Service { kind, .. } => match kind {
                ServiceErrorKind::NotFound => "not_found",
                ServiceErrorKind::AccessDenied => "access_denied",
                ServiceErrorKind::Throttled => "throttled",
                ServiceErrorKind::ServerError => "server_error",
                ServiceErrorKind::Other => "service_error",
            },
            Error::Timeout { .. } => "timeout",
            Error::Unreachable { .. } => "unreachable",
            Error::Certificate { .. } => "certificate",
            Error::Unusable { .. } => "unusable_answer",
            Error::NotSent { .. } => "not_sent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_not_found_classes() {
        let timeout = Error::Timeout {
            operation: "GetSecretValue",
            millis: 10,
        };
        assert!(timeout.is_transient() && !timeout.is_not_found());
        let down = Error::Unreachable {
            operation: "GetSecretValue",
            detail: "connection refused".into(),
        };
        assert!(down.is_transient());
        let service = |kind| Error::Service {
            kind,
            status: 400,
            code: "X".into(),
            message: String::new(),
        };
        assert!(service(ServiceErrorKind::Throttled).is_transient());
        assert!(service(ServiceErrorKind::ServerError).is_transient());
        assert!(!service(ServiceErrorKind::AccessDenied).is_transient());
        assert!(service(ServiceErrorKind::NotFound).is_not_found());
        assert!(!service(ServiceErrorKind::NotFound).is_transient());
    }
}
