//! The HTTP API on loopback.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ping` | 200 `healthy`, no token needed |
//! | `GET /secretsmanager/get?secretId=ID[&versionId=V][&versionStage=S][&refreshNow=true]` | 200 GetSecretValue JSON |
//! | `GET {path_prefix}ID[?versionId=V][&versionStage=S][&refreshNow=true]` | same; ID percent-decoded |
//! | `GET /secretsmanager/value?secretId=ID[&key=K][&versionId=V][&versionStage=S][&refreshNow=true]` | 200 the value itself (ours): the SecretString or its top-level key K as `text/plain`, a SecretBinary's bytes as `application/octet-stream`; a missing key → 404 `KeyNotFoundException` |
//! | `GET /secretsmanager/batch?secretId=A&secretId=B...` (1 to 20 ids) | 200 BatchGetSecretValue's output (ours): `SecretValues` (GetSecretValue objects) and `Errors` (`SecretId`, `ErrorCode`, `Message`); misses fetched together by BatchGetSecretValue |
//! | `GET /systemsmanager/parameters/get?name=N[&version=V or &label=L][&withDecryption=true]` | 200 `{"Parameter": {...}}` |
//! | `GET /metrics` | 200 Prometheus text |
//!
//! Every secret and parameter route also takes `roleArn=ARN`: read as that role (STS
//! AssumeRole on the agent's own credentials; see `roles`), a cache entry of its own. Not an IAM
//! role ARN → 400; not in `allowed_roles` → 403; STS refuses → 403 `AccessDeniedException`
//! naming the role; past `max_roles` → 400 `MaxRolesExceeded`.
//!
//! Checks, in order (the AWS agent's): except for `/ping`, a forwarding header
//! (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`, `Via`) → 400 and a token missing, or wrong in
//! any configured header it is sent in → 403; method not GET → 405 with `Allow: GET`; unknown route → 404; a missing,
//! unknown, repeated or malformed query parameter → 400 naming it. Backend errors keep AWS's
//! code and status; unreachable or not sent → 502 (a short message; the SDK's detail goes to the
//! log), timeout → 504. Secret answers carry `X-Cache: hit|miss|stale` and `Age`. Every error body is
//! `{"__type": ..., "message": ...}` with `Content-Type: application/json`, also for the requests
//! hyper refuses itself (400, 431, and 414 for an over-long target; see `rejection`).
//!
//! Connections (`serve`, timeouts and eviction in `conn`): at most `max_conn` are served. At the
//! limit a new connection takes the place of the oldest one that is silent, still sending its
//! head, or idle in keep-alive; a connection serving a request is never closed for this. When
//! all `max_conn` are busy, a reserve of `RESERVE` more connections answers `/ping` with 200 and
//! anything else with 429, one request each.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AGE, ALLOW, CONNECTION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use percent_encoding::percent_decode_str;

use crate::api::conn::{self, Admission, Counters, Pool, Seat, Timed, Timeouts};
use crate::api::error::ApiError;
use crate::api::listener::{AcceptErrors, Listener, Stream};
use crate::api::rejection::JsonRejections;
use crate::api::token::Token;
use crate::backend::{Backend, Key, KeyRef};
use crate::cache::{Answer, Cache, CacheStatus};
use crate::commands::placeholder::{extract_bytes, ExtractError, Ref};
use crate::config::Config;
use crate::roles::check_role_arn;

pub type Body = Full<Bytes>;

// Header names built once, not parsed from a string on every request.
/// Headers a proxy adds when it forwards a request, with their usual spelling for messages: any
/// of them means the request did not come straight from a process on this host (the SSRF guard).
const FORWARDING_HEADERS: [(HeaderName, &str); 4] = [
    (
        HeaderName::from_static("x-forwarded-for"),
        "X-Forwarded-For",
    ),
    (HeaderName::from_static("forwarded"), "Forwarded"),
    (HeaderName::from_static("x-real-ip"), "X-Real-IP"),
    (HeaderName::from_static("via"), "Via"),
];
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Largest request head (request line and headers) we read.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Connections past `max_conn` that answer `/ping` (and 429 to anything else) while every
/// served connection is busy, so a health check passes while the agent is merely saturated.
pub const RESERVE: usize = 8;

/// What the request handler needs; shared by every connection.
pub struct App<B> {
    pub cache: Cache<B>,
    token: Token,
    ssrf_headers: Vec<HeaderName>,
    path_prefix: String,
    max_conn: usize,
    timeouts: Timeouts,
    drain_timeout: Duration,
    /// The `max_conn` served connections.
    pool: Pool,
    /// Connections past the limit while all served ones are busy: `/ping` or 429.
    reserve: Pool,
    counters: Counters,
    /// Roles callers may name in `roleArn`; empty: any.
    allowed_roles: Vec<Arc<str>>,
}

impl<B: Backend> App<B> {
    pub fn new(config: &Config, cache: Cache<B>, token: Token) -> Self {
        App {
            cache,
            token,
            ssrf_headers: config
                .ssrf_headers
                .iter()
                .filter_map(|h| HeaderName::try_from(h.as_str()).ok())
                .collect(),
            path_prefix: config.path_prefix.clone(),
            max_conn: config.max_conn,
            timeouts: Timeouts {
                first_byte: config.first_byte_timeout,
                head: config.header_timeout,
                idle: config.idle_timeout,
                write: config.write_timeout,
            },
            drain_timeout: config.drain_timeout,
            pool: Pool::new(config.max_conn),
            reserve: Pool::new(RESERVE),
            counters: Counters::default(),
            allowed_roles: config
                .allowed_roles
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
        }
    }

    /// Connections open now: served ones, and those in the reserve.
    pub fn connections_open(&self) -> (usize, usize) {
        (self.pool.open(), self.reserve.open())
    }

    /// Answers one request. Never fails: errors become responses here.
    pub async fn handle<T>(&self, req: Request<T>) -> Response<Body> {
        match self.route(&req).await {
            Ok(resp) => resp,
            Err(e) => {
                // Debug form (`?`): ids and parameter names come percent-decoded from the
                // request, so control characters are escaped, never written raw to the log.
                let path = req.uri().path();
                if e.status().is_server_error() {
                    tracing::warn!(path = ?path, error = ?e.to_string(), "request failed");
                } else {
                    tracing::debug!(path = ?path, error = ?e.to_string(), "request refused");
                }
                error_response(&e)
            }
        }
    }

    async fn route<T>(&self, req: &Request<T>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path();
        // The AWS agent's order: `/ping` skips the forwarding and token checks (it reveals
        // nothing, and health checks may pass through a local proxy); the method is checked
        // after the token, so a request without the token learns nothing about the routes.
        let ping = path == "/ping";
        if !ping {
            if let Some(shown) = forwarded(req) {
                return Err(ApiError::BadRequest {
                    code: "InvalidRequestException",
                    message: format!(
                        "{shown} header is not allowed: the agent only serves requests made \
                         directly from this host, not through a proxy"
                    ),
                });
            }
            self.authorize(req)?;
        }
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed(format!(
                "method {} is not allowed; use GET",
                req.method()
            )));
        }
        if ping {
            return Ok(text(StatusCode::OK, "healthy"));
        }
        let raw_query = req.uri().query().unwrap_or("");
        let query = if path == "/secretsmanager/batch" {
            Query::parse_repeating(raw_query, "secretId")?
        } else {
            Query::parse(raw_query)?
        };
        match path {
            "/secretsmanager/get" => {
                query.only(&[
                    "secretId",
                    "versionId",
                    "versionStage",
                    "refreshNow",
                    "roleArn",
                ])?;
                let id = query.required("secretId")?;
                self.secret(id, query).await
            }
            "/secretsmanager/value" => {
                query.only(&[
                    "secretId",
                    "key",
                    "versionId",
                    "versionStage",
                    "refreshNow",
                    "roleArn",
                ])?;
                let id = query.required("secretId")?;
                self.secret_value(id, query).await
            }
            "/secretsmanager/batch" => self.batch(query).await,
            "/systemsmanager/parameters/get" => self.parameter(query).await,
            "/metrics" => {
                query.only(&[])?;
                let mut body = self.cache.metrics().render(self.cache.oldest_age());
                conn::render_metrics(&mut body, &self.pool, &self.reserve, &self.counters);
                Ok(response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    Bytes::from(body),
                ))
            }
            p if p.starts_with(&self.path_prefix) => {
                let raw = &p[self.path_prefix.len()..];
                let id = decode("secret id in the path", raw)?;
                if id.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "secret id missing: call GET {}<secret id>",
                        self.path_prefix
                    )));
                }
                query.only(&["versionId", "versionStage", "refreshNow", "roleArn"])?;
                self.secret(id.into_owned(), query).await
            }
            _ => Err(ApiError::RouteNotFound(format!(
                "no route {path}; use /secretsmanager/get, /secretsmanager/value, \
                 /secretsmanager/batch, {}<secret id>, /systemsmanager/parameters/get or /ping",
                self.path_prefix
            ))),
        }
    }

    /// The most common read, a `GET /secretsmanager/get?secretId=ID` with nothing else, with
    /// the token and no forwarding header, when the cache holds a fresh value: answered at once,
    /// without building the query or an owned key. `None` for anything else, including every
    /// request [`App::handle`] refuses, which then answers it (and gives the errors).
    ///
    /// Called by the connection before it hands the request to `handle`: a request answered
    /// here is dropped before hyper reads the connection again, so hyper reuses its read buffer
    /// (the request's bytes live in it) instead of allocating a new one per request.
    pub fn answer_now<T>(&self, req: &Request<T>) -> Option<Response<Body>> {
        if req.method() != Method::GET || req.uri().path() != "/secretsmanager/get" {
            return None;
        }
        if forwarded(req).is_some() || self.authorize(req).is_err() {
            return None;
        }
        let raw_id = req.uri().query()?.strip_prefix("secretId=")?;
        if raw_id.is_empty() {
            return None;
        }
        // One pass over a short id (memchr's set-up costs more than it saves there): another
        // parameter goes the general way; an escape is decoded.
        let mut escaped = false;
        for b in raw_id.bytes() {
            match b {
                b'&' => return None,
                b'%' => escaped = true,
                _ => {}
            }
        }
        let id = if escaped {
            decode("secretId", raw_id).ok()?
        } else {
            Cow::Borrowed(raw_id)
        };
        let answer = self.cache.hit(&KeyRef::current_secret(&id))?;
        Some(answer_response(answer))
    }

    /// Every token header the request carries must hold the token: one right value among
    /// wrong ones would let a caller try many guesses per request.
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), ApiError> {
        let (mut seen, mut wrong) = (0usize, 0usize);
        // One pass over the request's few headers rather than a hashed lookup per token
        // header: cheaper on every request.
        for (name, value) in req.headers() {
            if self.ssrf_headers.contains(name) {
                seen += 1;
                if !self.token.matches(value.as_bytes()) {
                    wrong += 1;
                }
            }
        }
        if seen > 0 && wrong == 0 {
            return Ok(());
        }
        let names: Vec<&str> = self.ssrf_headers.iter().map(HeaderName::as_str).collect();
        Err(ApiError::forbidden(if seen > 1 {
            format!(
                "{wrong} of the {seen} SSRF token values sent in {} are wrong; send the token \
                 once",
                names.join(" / ")
            )
        } else if seen == 1 {
            format!("the SSRF token in {} is wrong", names.join(" / "))
        } else {
            format!(
                "missing SSRF token: send it in the {} header",
                names.join(" or ")
            )
        }))
    }

    /// The value itself, from the same cache entry as `/secretsmanager/get`: by `exec`'s rules
    /// (a JSON string as is, a number or boolean as its JSON text, an object or array as compact
    /// JSON), or a SecretBinary's bytes when no key is asked for.
    async fn secret_value(&self, id: String, query: Query<'_>) -> Result<Response<Body>, ApiError> {
        let json_key = query.optional("key")?;
        let key = Key::secret(
            id,
            query.optional("versionId")?,
            query.optional("versionStage")?,
        )
        .with_role(self.role(&query)?);
        let answer = self
            .cache
            .get(key.clone(), query.flag("refreshNow")?)
            .await?;
        let binary = json_key.is_none() && is_binary(&answer.body);
        let r = Ref { key, json_key };
        let value = extract_bytes(&r, &answer.body).map_err(|e| match e {
            ExtractError::KeyMissing(k) => {
                ApiError::KeyNotFound(format!("key '{k}' is not in secret '{}'", r.key.id))
            }
            ExtractError::NotAnObject(k) => ApiError::BadRequest {
                code: "InvalidRequestException",
                message: format!(
                    "secret '{}' is not a JSON object, so key '{k}' cannot be taken from it; \
                     leave out key= for the whole value",
                    r.key.id
                ),
            },
            other => ApiError::BadRequest {
                code: "InvalidRequestException",
                message: format!("secret '{}': {other}", r.key.id),
            },
        })?;
        let content_type = if binary {
            "application/octet-stream"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut resp = response(StatusCode::OK, content_type, Bytes::from(value));
        let h = resp.headers_mut();
        h.insert(X_CACHE, HeaderValue::from_static(answer.status.as_str()));
        h.insert(AGE, age_header(answer.age.as_secs()));
        Ok(resp)
    }

    /// `roleArn`, checked: an IAM role ARN (else 400), one `allowed_roles` lets callers name
    /// (else 403: any holder of the token could otherwise make the agent assume any role its own
    /// role may assume).
    fn role(&self, query: &Query<'_>) -> Result<Option<Arc<str>>, ApiError> {
        let Some(arn) = query.optional("roleArn")? else {
            return Ok(None);
        };
        if let Err(why) = check_role_arn(&arn) {
            return Err(ApiError::bad_request(format!("roleArn = {arn:?}: {why}")));
        }
        if !self.allowed_roles.is_empty() && !self.allowed_roles.iter().any(|r| **r == *arn) {
            return Err(ApiError::forbidden(format!(
                "roleArn {arn} is not in the agent's allowed_roles; ask its operator to add it, \
                 or leave roleArn out to read with the agent's own role"
            )));
        }
        Ok(Some(arn.into()))
    }

    /// A secret read; the caller has checked which query parameters its route allows.
    async fn secret(&self, id: String, query: Query<'_>) -> Result<Response<Body>, ApiError> {
        let key = Key::secret(
            id,
            query.optional("versionId")?,
            query.optional("versionStage")?,
        )
        .with_role(self.role(&query)?);
        let refresh = query.flag("refreshNow")?;
        let answer = self.cache.get(key, refresh).await?;
        Ok(answer_response(answer))
    }

    /// Several secrets at once, in BatchGetSecretValue's output shape. Each id is answered as
    /// `/secretsmanager/get?secretId=ID` would be, from the same cache entries; a failure of one
    /// id is an entry of `Errors`, not a failure of the request.
    async fn batch(&self, query: Query<'_>) -> Result<Response<Body>, ApiError> {
        query.only(&["secretId", "roleArn"])?;
        let role = self.role(&query)?;
        let mut ids: Vec<String> = Vec::new();
        for id in query.all("secretId")? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err(ApiError::bad_request(
                "missing required query parameter secretId: give 1 to 20, e.g. \
                 ?secretId=a&secretId=b",
            ));
        }
        if ids.len() > MAX_BATCH {
            return Err(ApiError::bad_request(format!(
                "{} different secretId values given; at most {MAX_BATCH} per request \
                 (BatchGetSecretValue's limit): split them over several requests",
                ids.len()
            )));
        }
        let answers = self.cache.get_secrets(role, ids).await;
        let mut out = BatchBody {
            secret_values: Vec::new(),
            errors: Vec::new(),
        };
        let (mut status, mut age) = (CacheStatus::Hit, Duration::ZERO);
        for (id, answer) in &answers {
            match answer {
                Ok(a) => {
                    // Our own serialization: always JSON.
                    if let Ok(value) = serde_json::from_slice(&a.body) {
                        out.secret_values.push(value);
                    }
                    age = age.max(a.age);
                    status = match (status, a.status) {
                        (CacheStatus::Miss, _) | (_, CacheStatus::Miss) => CacheStatus::Miss,
                        (CacheStatus::Stale, _) | (_, CacheStatus::Stale) => CacheStatus::Stale,
                        _ => CacheStatus::Hit,
                    };
                }
                Err(e) => {
                    let e = ApiError::Backend(e.clone());
                    let (code, message) = e.code_and_message();
                    out.errors.push(BatchError {
                        secret_id: id,
                        error_code: code.to_string(),
                        message,
                    });
                }
            }
        }
        // Borrowed JSON and strings: serializing cannot fail.
        let body = serde_json::to_vec(&out).unwrap_or_default();
        let mut resp = response(StatusCode::OK, "application/json", Bytes::from(body));
        let h = resp.headers_mut();
        h.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
        h.insert(AGE, age_header(age.as_secs()));
        Ok(resp)
    }

    async fn parameter(&self, query: Query<'_>) -> Result<Response<Body>, ApiError> {
        query.only(&["name", "version", "label", "withDecryption", "roleArn"])?;
        let name = query.required("name")?;
        let version = query.optional("version")?;
        let label = query.optional("label")?;
        if version.is_some() && label.is_some() {
            return Err(ApiError::bad_request(
                "version and label cannot be used together; give one of them",
            ));
        }
        if let Some(v) = &version {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::bad_request(format!(
                    "version = {v:?}: must be a whole number, e.g. version=3"
                )));
            }
        }
        let decrypt = query.flag("withDecryption")?;
        let answer = self
            .cache
            .get(
                Key::parameter(name, version, label, decrypt).with_role(self.role(&query)?),
                false,
            )
            .await?;
        Ok(answer_response(answer))
    }
}

/// Ids `/secretsmanager/batch` takes at once: BatchGetSecretValue's limit.
pub const MAX_BATCH: usize = 20;

/// BatchGetSecretValue's output (without `NextToken`: every id is answered at once).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchBody<'a> {
    secret_values: Vec<&'a serde_json::value::RawValue>,
    errors: Vec<BatchError<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchError<'a> {
    secret_id: &'a str,
    error_code: String,
    message: String,
}

/// The query string, decoded, with each name at most once. Borrows from the request where
/// nothing needed decoding (the usual case), so a cache hit copies only the id it looks up.
#[derive(Debug)]
pub struct Query<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Query<'a> {
    /// Splits and percent-decodes a raw query string; refuses repeated names and bad UTF-8.
    pub fn parse(raw: &'a str) -> Result<Query<'a>, ApiError> {
        Query::parse_repeating(raw, "")
    }

    /// As [`Query::parse`], but `repeating` may be given more than once (read it with
    /// [`Query::all`]).
    pub fn parse_repeating(raw: &'a str, repeating: &str) -> Result<Query<'a>, ApiError> {
        let mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = decode("query parameter name", k)?;
            let v = decode(&k, v)?;
            if k != repeating && pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {k} is given more than once; give it once"
                )));
            }
            pairs.push((k, v));
        }
        Ok(Query(pairs))
    }

    /// Refuses any parameter not in `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if let Some((k, _)) = self.0.iter().find(|(k, _)| !allowed.contains(&k.as_ref())) {
            let hint = if allowed.is_empty() {
                String::new()
            } else {
                format!("; allowed here: {}", allowed.join(", "))
            };
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k}{hint}"
            )));
        }
        Ok(())
    }

    fn optional(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) if v.is_empty() => Err(ApiError::bad_request(format!(
                "query parameter {name} is empty; give a value or leave it out"
            ))),
            Some((_, v)) => Ok(Some(v.to_string())),
        }
    }

    /// Every value of a repeating parameter, in order; an empty one is refused.
    fn all(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let mut values = Vec::new();
        for (_, v) in self.0.iter().filter(|(k, _)| k == name) {
            if v.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name} is empty; give a value or leave it out"
                )));
            }
            values.push(v.to_string());
        }
        Ok(values)
    }

    fn required(&self, name: &str) -> Result<String, ApiError> {
        self.optional(name)?.ok_or_else(|| {
            ApiError::bad_request(format!("missing required query parameter {name}"))
        })
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.optional(name)? {
            None => Ok(false),
            // The AWS agent's forms: true/false in any case, or 1/0.
            Some(v) if v == "1" || v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v == "0" || v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "query parameter {name} = {v:?}: must be true or false (or 1 or 0)"
            ))),
        }
    }
}

/// The first forwarding header of `req`, as the error names it: one pass over the request's
/// few headers, not one lookup per forwarding header.
fn forwarded<T>(req: &Request<T>) -> Option<&'static str> {
    req.headers().keys().find_map(|k| {
        FORWARDING_HEADERS
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, shown)| *shown)
    })
}

/// Percent-decodes a path or query part. `+` stays `+`: it is a valid character in secret
/// names, and no secret or parameter name may contain a space.
fn decode<'a>(what: &str, raw: &'a str) -> Result<Cow<'a, str>, ApiError> {
    if !raw.contains('%') {
        // Nothing to decode, and `raw` is already UTF-8.
        return Ok(Cow::Borrowed(raw));
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("{what} is not valid percent-encoded UTF-8")))
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    response(status, "text/plain", Bytes::from_static(body.as_bytes()))
}

/// The one place an error becomes a response.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = response(e.status(), "application/json", e.body());
    if let ApiError::MethodNotAllowed(_) = e {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}

/// True when a GetSecretValue body holds a SecretBinary rather than a SecretString.
fn is_binary(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Fields {
        #[serde(rename = "SecretBinary")]
        binary: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Fields>(body).is_ok_and(|f| f.binary.is_some())
}

fn answer_response(a: Answer) -> Response<Body> {
    let mut resp = response(StatusCode::OK, "application/json", a.body);
    let h = resp.headers_mut();
    h.insert(X_CACHE, HeaderValue::from_static(a.status.as_str()));
    h.insert(AGE, age_header(a.age.as_secs()));
    resp
}

/// `Age`: values below 1000 s are sliced from one string formatted once, so a hit copies a
/// pointer instead of formatting and allocating.
fn age_header(secs: u64) -> HeaderValue {
    // "0123456789101112...999": where a number starts follows from how many digits it has.
    static AGES: LazyLock<String> = LazyLock::new(|| (0..1000u64).map(|n| n.to_string()).collect());
    let (at, len) = match secs {
        0..=9 => (secs, 1),
        10..=99 => (10 + (secs - 10) * 2, 2),
        100..=999 => (10 + 90 * 2 + (secs - 100) * 3, 3),
        _ => return HeaderValue::from(secs),
    };
    let (at, len) = (at as usize, len as usize);
    HeaderValue::from_static(&AGES[at..at + len])
}

/// Serves connections until `shutdown` resolves, then drains in-flight requests for at most
/// the drain timeout. New connections are not accepted after `shutdown`.
pub async fn serve<B: Backend>(
    listener: Listener,
    app: Arc<App<B>>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            s = listener.accept_or_wait(&mut accept_errors, &app.counters.accept_errors) => s,
        };
        let watcher = graceful.watcher();
        let app = app.clone();
        match app.pool.admit() {
            Admission::Now(seat) => {
                tokio::spawn(serve_connection(app, stream, seat, watcher));
            }
            Admission::AfterEviction => {
                tokio::spawn(async move {
                    // The evicted connection closes at its next poll; if it turned busy
                    // meanwhile, wait at most a head timeout for a permit.
                    match app.pool.wait(app.timeouts.head).await {
                        Some(seat) => serve_connection(app, stream, seat, watcher).await,
                        None => overflow(app, stream).await,
                    }
                });
            }
            Admission::Full => {
                tokio::spawn(overflow(app, stream));
            }
        }
        // Let the connection just spawned read before the next accept: under a flood of
        // connections, accepts succeed at once and the loop would otherwise admit (and evict
        // for) up to a whole scheduler budget of connections before any of them reads, evicting
        // clients that had sent their request with the connect.
        tokio::task::yield_now().await;
    }
    drop(listener);
    tracing::info!("stopped accepting connections; draining in-flight requests");
    if tokio::time::timeout(app.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = app.drain_timeout.as_millis() as u64,
            "drain timed out; closing remaining connections"
        );
    }
}

/// Serves one connection with a permit of the main pool until it closes or is evicted.
async fn serve_connection<B: Backend>(
    app: Arc<App<B>>,
    stream: Stream,
    seat: Seat,
    watcher: Watcher,
) {
    let slot = seat.slot.clone();
    let io = Timed::new(stream, slot.clone(), app.timeouts);
    let conn = builder().serve_connection(
        TokioIo::new(JsonRejections::new(io)),
        service_fn(move |req: Request<Incoming>| {
            // A hit is answered here and its request dropped now (see `answer_now`).
            let busy = slot.enter();
            let work = match app.answer_now(&req) {
                Some(resp) => Ok(resp),
                None => Err((app.clone(), req, slot.clone())),
            };
            drop(busy);
            // Busy only while the handler runs, not from here: hyper polls this future only
            // once the previous answer is written, and a pipelining client that never reads
            // would otherwise hold a busy, never evicted connection.
            async move {
                let resp = match work {
                    Ok(resp) => resp,
                    Err((app, req, slot)) => {
                        let _busy = slot.enter();
                        app.handle(req).await
                    }
                };
                Ok::<_, Infallible>(resp)
            }
        }),
    );
    seat.slot.serve(watcher.watch(conn)).await;
}

fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    // Head and idle timeouts are ours (`conn::Timed`); hyper's would also close idle
    // keep-alive connections.
    b.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    b
}

/// A connection past the limit while every served one is busy: a seat in the reserve answers
/// one request, `/ping` normally and anything else 429; with no room there either, the
/// connection is closed unanswered.
async fn overflow<B: Backend>(app: Arc<App<B>>, stream: Stream) {
    let seat = match app.reserve.admit() {
        Admission::Now(seat) => Some(seat),
        Admission::AfterEviction => app.reserve.wait(app.timeouts.head).await,
        Admission::Full => None,
    };
    let Some(seat) = seat else {
        app.counters
            .dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    let slot = seat.slot.clone();
    let io = Timed::new(stream, slot.clone(), app.timeouts);
    let mut b = builder();
    b.keep_alive(false);
    let svc = service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        let slot = slot.clone();
        async move {
            // Busy only while the handler runs (see `serve_connection`).
            let guard = slot.enter();
            let resp = if req.uri().path() == "/ping" {
                app.handle(req).await
            } else {
                app.counters
                    .refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut resp = error_response(&ApiError::TooManyConnections(app.max_conn));
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                resp
            };
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });
    seat.slot
        .serve(b.serve_connection(TokioIo::new(JsonRejections::new(io)), svc))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_header_is_the_number_of_seconds() {
        for secs in [
            0, 1, 9, 10, 11, 57, 99, 100, 101, 300, 998, 999, 1000, 86_400,
        ] {
            assert_eq!(age_header(secs).to_str().unwrap(), secs.to_string());
        }
    }

    #[test]
    fn query_parsing_rules() {
        let q = Query::parse("secretId=a%2Fb%2Bc&versionStage=AWSPREVIOUS").unwrap();
        assert_eq!(q.required("secretId").unwrap(), "a/b+c");
        assert!(q.only(&["secretId", "versionStage"]).is_ok());
        let err = q.only(&["secretId"]).unwrap_err();
        assert!(err
            .to_string()
            .contains("unknown query parameter versionStage"));

        let q = Query::parse("secretId=a+b").unwrap();
        assert_eq!(q.required("secretId").unwrap(), "a+b");

        let err = Query::parse("secretId=a&secretId=b").unwrap_err();
        assert!(err.to_string().contains("more than once"));
        let err = Query::parse("secretId=%FF").unwrap_err();
        assert!(err.to_string().contains("secretId is not valid"));

        let q = Query::parse("refreshNow=yes").unwrap();
        assert!(q
            .flag("refreshNow")
            .unwrap_err()
            .to_string()
            .contains("true or false"));
        // The AWS agent's forms.
        for (raw, want) in [("1", true), ("0", false), ("TRUE", true), ("False", false)] {
            let query = format!("refreshNow={raw}");
            let q = Query::parse(&query).unwrap();
            assert_eq!(q.flag("refreshNow").unwrap(), want, "{raw}");
        }
        assert!(Query::parse("refreshNow=2")
            .unwrap()
            .flag("refreshNow")
            .is_err());
        let q = Query::parse("secretId=").unwrap();
        assert!(q
            .required("secretId")
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        let q = Query::parse("").unwrap();
        assert!(q
            .required("secretId")
            .unwrap_err()
            .to_string()
            .contains("missing required query parameter secretId"));
    }
}
