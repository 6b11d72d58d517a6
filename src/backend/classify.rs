//! The one place that looks inside SDK errors: what failed, in the classes the cache and the
//! commands act on (`crate::error::Error`).

use super::*;

/// Maps an SDK error to our classes. This is the only place that looks inside SDK errors. `id`
/// names what the call was for (secret, parameter, certificate, role), for the caller's message.
pub(crate) fn classify<E>(
    operation: &'static str,
    timeout: Duration,
    id: &str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // A TLS handshake that refused the certificate (`tls` named the host).
    if let SdkError::DispatchFailure(_) = &err {
        if let Some(c) = super::tls::certificate_error(&err) {
            return Error::Certificate {
                operation,
                host: c.host.clone(),
                reason: c.reason.clone(),
            };
        }
    }
    let unusable = |what: String| Error::Unusable {
        operation,
        id: id.to_string(),
        detail: format!("{what}: {}", detail(&err)),
    };
    match &err {
        // AWS sends its errors with a 4xx or 5xx status. Anything else that did not parse (an
        // HTML or truncated 200, a redirect) did not come from AWS.
        SdkError::ServiceError(ctx) if !(400..600).contains(&ctx.raw().status().as_u16()) => {
            unusable(format!(
                "an HTTP {} answer that is not AWS's",
                ctx.raw().status().as_u16()
            ))
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let meta = ctx.err();
            let code = meta.code().unwrap_or("UnknownError").to_string();
            let message = meta.message().unwrap_or("").to_string();
            Error::Service {
                kind: kind_for_code(&code, status),
                status,
                code,
                message,
            }
        }
        SdkError::TimeoutError(_) => Error::Timeout {
            operation,
            millis: timeout.as_millis() as u64,
        },
        // The answer's body could not be read whole: cut short, or over the limit.
        SdkError::ResponseError(_) => unusable("the answer could not be read".into()),
        SdkError::DispatchFailure(f) => match hyper_error(&err) {
            Some(h) if h.is_parse() => unusable("the answer is not HTTP".into()),
            // hyper failed on the wire (closed or cut connections are io errors or these).
            Some(_) => Error::Unreachable {
                operation,
                detail: detail(&err),
            },
            None if f.is_io() || f.is_timeout() => Error::Unreachable {
                operation,
                detail: detail(&err),
            },
            // Not a network failure: credentials, region or endpoint could not be resolved
            // (the SDK reports those as a dispatch failure of kind "other").
            None => Error::NotSent {
                operation,
                detail: detail(&err),
            },
        },
        SdkError::ConstructionFailure(_) => Error::NotSent {
            operation,
            detail: detail(&err),
        },
        _ => Error::Unreachable {
            operation,
            detail: detail(&err),
        },
    }
}

/// The HTTP client's own error behind an SDK error, if the failure happened on the wire.
fn hyper_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        next = e.source();
    }
    None
}

/// The SDK's whole account of an error, for the log (never for a response body).
fn detail(err: &(dyn std::error::Error + 'static)) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

/// The class of an AWS error code (also used for the agent's own JSON error bodies).
pub(crate) fn kind_for_code(code: &str, status: u16) -> ServiceErrorKind {
    match code {
        "ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound" => {
            ServiceErrorKind::NotFound
        }
        "AccessDeniedException"
        | "AccessDenied"
        | "DecryptionFailure"
        | "UnrecognizedClientException"
        | "InvalidKeyId"
        | "KMSAccessDeniedException"
        | "ExpiredTokenException"
        | "ExpiredToken" => ServiceErrorKind::AccessDenied,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RateExceeded" => ServiceErrorKind::Throttled,
        _ if status >= 500 => ServiceErrorKind::ServerError,
        _ if status == 429 => ServiceErrorKind::Throttled,
        _ => ServiceErrorKind::Other,
    }
}
