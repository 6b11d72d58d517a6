//! The Lambda Extensions API calls the agent makes: register, event/next, init/error and
//! exit/error, each an HTTP/1.1 request over hyper's connection API (the four requests are all
//! the agent needs of `lambda-extension`, so it is not a dependency). Our own client rather than
//! `lambda-extension`'s run loop, because the agent must decide what an odd answer means: the status of every answer is checked before its body,
//! an event type we do not know is logged and skipped (a future event must not kill the
//! function), and the agent chooses when to ask for the next event (after the refreshes an
//! INVOKE started, so a freeze does not catch them mid-flight).
//!
//! What the API reference says, and what we do:
//! - register: 200 with the id in `Lambda-Extension-Identifier`; anything else is fatal
//!   (Managed Instances answer 4xx to an INVOKE registration, so there we register for
//!   SHUTDOWN only).
//! - event/next: 200 with the event; 403 and 500 mean a state the extension cannot recover
//!   from: it exits. Other statuses and unreadable bodies are retried a few times with a short
//!   backoff, then treated as fatal.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

const REGISTER: &str = "/2020-01-01/extension/register";
const NEXT: &str = "/2020-01-01/extension/event/next";
const ID_HEADER: &str = "Lambda-Extension-Identifier";
const NAME_HEADER: &str = "Lambda-Extension-Name";
const ERROR_TYPE_HEADER: &str = "Lambda-Extension-Function-Error-Type";
/// Consecutive unusable event/next answers tolerated before giving up.
const NEXT_ATTEMPTS: u32 = 5;

/// What went wrong talking to the Extensions API.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionsApiError {
    #[error("AWS_LAMBDA_RUNTIME_API = {0:?} is not a host:port")]
    Endpoint(String),
    #[error("{call} could not be sent: {detail}")]
    Transport { call: &'static str, detail: String },
    #[error("{call} answered {status}: {body}")]
    Status {
        call: &'static str,
        status: u16,
        body: String,
    },
    #[error("{call} answered 200 without a usable body: {detail}")]
    Body { call: &'static str, detail: String },
}

impl ExtensionsApiError {
    /// An answer the API reference says the extension cannot recover from.
    fn is_fatal(&self) -> bool {
        matches!(self, ExtensionsApiError::Status { status, .. } if *status == 403 || *status == 500)
    }
}

/// One event from event/next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Invoke {
        request_id: String,
        deadline_ms: u64,
    },
    Shutdown {
        reason: String,
        deadline_ms: u64,
    },
    /// A type this version does not know (logged and skipped).
    Other(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_type: String,
    #[serde(default)]
    deadline_ms: u64,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    shutdown_reason: String,
}

/// Parses an event/next body. Only the fields we use are required of a known type.
pub fn parse_event(body: &[u8]) -> Result<Event, String> {
    let raw: RawEvent = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(match raw.event_type.as_str() {
        "INVOKE" => Event::Invoke {
            request_id: raw.request_id,
            deadline_ms: raw.deadline_ms,
        },
        "SHUTDOWN" => Event::Shutdown {
            reason: raw.shutdown_reason,
            deadline_ms: raw.deadline_ms,
        },
        other => Event::Other(other.to_string()),
    })
}

/// A client for one extension: a connection per call to `host:port` (a handful of calls per
/// invoke, on the loopback).
pub struct ExtensionsApi {
    authority: String,
}

/// Which phase an error report belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Init,
    Exit,
}

impl ExtensionsApi {
    /// A client for `runtime_api` (the value of `AWS_LAMBDA_RUNTIME_API`, `host:port`).
    pub fn new(runtime_api: &str) -> Result<Self, ExtensionsApiError> {
        let uri: http::Uri = format!("http://{runtime_api}")
            .parse()
            .map_err(|_| ExtensionsApiError::Endpoint(runtime_api.to_string()))?;
        match uri.authority() {
            Some(a) if uri.path() == "/" && a.port_u16().is_some() => Ok(ExtensionsApi {
                authority: a.to_string(),
            }),
            _ => Err(ExtensionsApiError::Endpoint(runtime_api.to_string())),
        }
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.authority.as_str())
    }

    /// Registers `name` for `events`; returns the extension id.
    pub async fn register(
        &self,
        name: &str,
        events: &[&str],
    ) -> Result<String, ExtensionsApiError> {
        const CALL: &str = "register";
        let body = serde_json::json!({ "events": events }).to_string();
        let req = self
            .request(Method::POST, REGISTER)
            .header(NAME_HEADER, name)
            .header("Lambda-Extension-Accept-Feature", "accountId")
            .header("Content-Type", "application/json")
            .body(Full::from(body));
        let (status, headers, body) = self.send(CALL, req).await?;
        if status != StatusCode::OK {
            return Err(status_error(CALL, status, &body));
        }
        headers
            .get(ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .ok_or_else(|| ExtensionsApiError::Body {
                call: CALL,
                detail: format!("no {ID_HEADER} header"),
            })
    }

    /// The next event, retrying answers that are neither an event nor fatal.
    pub async fn next_event(&self, extension_id: &str) -> Result<Event, ExtensionsApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.next_once(extension_id).await {
                Ok(event) => return Ok(event),
                Err(e) if e.is_fatal() || attempt >= NEXT_ATTEMPTS => return Err(e),
                Err(e) => e,
            };
            let delay = Duration::from_millis(50 << attempt);
            tracing::warn!(error = ?err.to_string(), attempt, retry_in_ms = delay.as_millis() as u64,
                "unexpected answer from the Extensions API; asking again");
            tokio::time::sleep(delay).await;
        }
    }

    async fn next_once(&self, extension_id: &str) -> Result<Event, ExtensionsApiError> {
        const CALL: &str = "event/next";
        let req = self
            .request(Method::GET, NEXT)
            .header(ID_HEADER, extension_id)
            .body(Full::default());
        let (status, _, body) = self.send(CALL, req).await?;
        if status != StatusCode::OK {
            return Err(status_error(CALL, status, &body));
        }
        parse_event(&body).map_err(|detail| ExtensionsApiError::Body { call: CALL, detail })
    }

    /// POSTs `/extension/{init,exit}/error`; failures are logged, the caller exits anyway.
    pub async fn report(&self, phase: Phase, extension_id: &str, error_type: &str, message: &str) {
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        });
        let path = match phase {
            Phase::Init => "/2020-01-01/extension/init/error",
            Phase::Exit => "/2020-01-01/extension/exit/error",
        };
        let req = self
            .request(Method::POST, path)
            .header(ID_HEADER, extension_id)
            .header(ERROR_TYPE_HEADER, error_type)
            .header("Content-Type", "application/json")
            .body(Full::from(body.to_string()));
        match self.send("error report", req).await {
            Ok((status, _, _)) if status.is_success() => {
                tracing::info!(error_type, "error reported to the Extensions API")
            }
            Ok((status, _, _)) => tracing::error!(
                status = status.as_u16(),
                "the Extensions API refused the error report"
            ),
            Err(e) => {
                tracing::error!(error = ?e.to_string(), "cannot report the error to the Extensions API")
            }
        }
    }

    async fn send(
        &self,
        call: &'static str,
        req: Result<Request<Full<Bytes>>, http::Error>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), ExtensionsApiError> {
        let transport = |detail: String| ExtensionsApiError::Transport { call, detail };
        let req = req.map_err(|e| transport(e.to_string()))?;
        let stream = tokio::net::TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| transport(format!("connect to {}: {e}", self.authority)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(conn);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

fn status_error(call: &'static str, status: StatusCode, body: &[u8]) -> ExtensionsApiError {
    // The API's error bodies are short JSON; keep a bounded, printable excerpt.
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    ExtensionsApiError::Status {
        call,
        status: status.as_u16(),
        body: if text.is_empty() {
            "(empty body)".into()
        } else {
            text
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_and_unknown_types_kept_by_name() {
        let invoke = br#"{"eventType":"INVOKE","deadlineMs":1700000000000,"requestId":"r1",
            "invokedFunctionArn":"arn:x","tracing":{"type":"X-Amzn-Trace-Id","value":"v"}}"#;
        assert_eq!(
            parse_event(invoke).unwrap(),
            Event::Invoke {
                request_id: "r1".into(),
                deadline_ms: 1_700_000_000_000
            }
        );
        let shutdown = br#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":5}"#;
        assert_eq!(
            parse_event(shutdown).unwrap(),
            Event::Shutdown {
                reason: "spindown".into(),
                deadline_ms: 5
            }
        );
        assert_eq!(
            parse_event(br#"{"eventType":"RESTORE","deadlineMs":5}"#).unwrap(),
            Event::Other("RESTORE".into())
        );
        assert!(parse_event(br#"{"errorMessage":"boom"}"#)
            .unwrap_err()
            .contains("eventType"));
    }

    #[test]
    fn only_403_and_500_are_fatal() {
        let status = |status| ExtensionsApiError::Status {
            call: "event/next",
            status,
            body: String::new(),
        };
        assert!(status(500).is_fatal());
        assert!(status(403).is_fatal());
        assert!(!status(502).is_fatal());
        assert!(!status(429).is_fatal());
        let e = status(500);
        assert_eq!(e.to_string(), "event/next answered 500: ");
    }
}
