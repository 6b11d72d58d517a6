//! secrets-agent: AWS Secrets Manager secrets and SSM parameters from an in-memory cache on a
//! loopback HTTP port, as a Lambda extension or a container sidecar.
//!
//! Where things are, top to bottom: a module may use the ones declared below it in this file,
//! never one above it (`tests/layering.rs` holds every module to this order).
//! - `commands`: what the binary does, one file each: `serve` (container mode), `lambda` (the
//!   Lambda lifecycle, with `extensions_api` for its calls), `health`, `exec`, `render`,
//!   `webhook`, `install`, and `fetch` (where their values come from).
//! - `api`: the HTTP face: `server` (the route table, auth, the connection loop), `error` (the
//!   one place any error becomes a status and JSON), `conn` (per-connection timeouts),
//!   `listener` (TCP or Unix socket), `token` (the SSRF token), `rejection` (requests hyper
//!   refuses itself, answered in JSON).
//! - `placeholder`: the `awssm:` grammar and how a fetched answer fills a reference (`exec`,
//!   `render`, the webhook and the value route).
//! - `cache`: single flight, TTL, LRU, refresh-ahead, stale-if-error.
//! - `backend`: the AWS side: Secrets Manager, SSM and ACM behind one trait; SDK errors
//!   classified; `roles` (roles assumed for callers, `roleArn`), `credentials_file`
//!   (credentials from a file re-read when it changes), `acm` (an exported certificate and its
//!   key decrypted), `tls` (the HTTPS client's trust roots: `AWS_CA_BUNDLE`, the system's, else
//!   built-in Mozilla roots; certificate errors that name the host).
//! - `logging`, `config`: log set-up; settings from defaults, TOML, environment and flags
//!   (`config::arn`: role ARNs and session names).
//! - `metrics`, `clock`, `error`, `signals`: counters; wall-clock time behind a trait; what a
//!   backend call can fail with, knowing no HTTP (`api::error` maps it); the shutdown future and
//!   the signals that are logged and ignored.
//!
//! The items at the root (`start`, `build_app`) wire the layers for `commands` and the tests.

#![forbid(unsafe_code)]

pub mod commands;
pub mod api;
pub mod placeholder;
pub mod cache;
pub mod backend;
pub mod logging;
pub mod config;
pub mod metrics;
pub mod clock;
pub mod error;
pub mod signals;

use std::sync::Arc;

use api::listener::Listener;
use api::server::App;
use api::token::{Token, TokenSource};
use backend::AwsBackend;
use cache::{Cache, Clock, Settings, SystemClock};
use config::{Config, Env};
use metrics::Metrics;

/// Exit code for bad configuration or a missing token (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Token(#[from] api::token::TokenError),
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: String,
        source: std::io::Error,
    },
    /// A `[[files]]` entry the serving agent cannot keep.
    #[error("[[files]]: {0}")]
    Files(String),
}

impl StartError {
    /// The Lambda `Extension.*` error type for `/extension/init/error`.
    pub fn lambda_error_type(&self) -> &'static str {
        match self {
            StartError::Config(_) => "Extension.InvalidConfiguration",
            StartError::Token(_) => "Extension.MissingToken",
            StartError::Bind { .. } => "Extension.BindFailed",
            StartError::Files(_) => "Extension.InvalidConfiguration",
        }
    }
}

/// A bound listener and the app that will serve it.
pub struct Started {
    pub listener: Listener,
    pub app: Arc<App<AwsBackend>>,
}

/// Resolves the token, binds the port and builds the cache; the AWS SDK is set up in the
/// background (a read waits for it), so the agent answers `/ping` as soon as it serves.
/// Starts the prefetch.
pub async fn start(config: &Config, env: &Env) -> Result<Started, StartError> {
    let (token, source) = Token::resolve(config, env)?;
    let listener = Listener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Bind {
            listen: config.listen.to_string(),
            source,
        })?;
    let local = listener.local();
    if !local.is_loopback() {
        tracing::warn!(
            listen = %local,
            "LISTENING BEYOND LOOPBACK: any host that can reach this address and knows the \
             token can read secrets; use 127.0.0.1 unless you really mean it"
        );
    }
    let chars = token.char_count();
    if chars < api::token::SHORT_TOKEN_CHARS {
        tracing::warn!(
            chars,
            "the SSRF token has only {chars} characters: any process on this host that guesses \
             it reads every secret; use {} or more random characters (or let the agent generate \
             one with --token-file)",
            api::token::SHORT_TOKEN_CHARS
        );
    }
    if let Some(watch) = token.watch() {
        tokio::spawn(watch);
    }
    match &source {
        TokenSource::Env(var) => {
            tracing::info!(from = ?var, "SSRF token taken from the environment")
        }
        TokenSource::File(path) => tracing::info!(file = ?path, "SSRF token read from file"),
        TokenSource::Generated(path) => {
            tracing::info!(file = ?path, "SSRF token generated and written (mode 0444)")
        }
        TokenSource::Kept(path) => {
            tracing::info!(file = ?path, "SSRF token kept from the previous run (mode 0444)")
        }
    }
    let metrics = Arc::new(Metrics::default());
    let backend = AwsBackend::from_environment(config, metrics.clone());
    backend.warm_up();
    let app = assemble(config, backend, metrics, token, Arc::new(SystemClock));
    let (secrets, parameters, mut left_out) = config.prefetch_ids();
    let limit = config.prefetch_limit();
    for ids in config.prefetch_role_secrets.values() {
        left_out += ids.len().saturating_sub(limit);
    }
    if left_out > 0 {
        tracing::warn!(
            left_out,
            cache_size = config.cache_size,
            cache_buffer_ratio = config.prefetch_cache_share,
            "prefetch list longer than the share of the cache it may fill; the last ids are \
             fetched on first read instead (raise cache_buffer_ratio or cache_size)"
        );
    }
    // Tagged secrets fill what the listed ids leave of the prefetch's share, as in 3.x.
    let tag_limit = limit.saturating_sub(secrets.len() + parameters.len());
    app.cache
        .prefetch(secrets, parameters, config.prefetch_jitter);
    for (role, ids) in &config.prefetch_role_secrets {
        let ids = ids.iter().take(limit).cloned().collect();
        app.cache
            .prefetch_as(role.as_str().into(), ids, config.prefetch_jitter);
    }
    let jitter = config.prefetch_jitter;
    app.cache
        .prefetch_tagged(None, config.prefetch_tags.clone(), tag_limit, jitter);
    // A role's tagged secrets fill what its listed ids leave of its own share.
    for (role, keys) in &config.prefetch_role_tags {
        let listed = config.prefetch_role_secrets.get(role).map_or(0, Vec::len);
        let role_limit = limit.saturating_sub(listed);
        let role = Some(role.as_str().into());
        app.cache
            .prefetch_tagged(role, keys.clone(), role_limit, jitter);
    }
    tracing::info!(listen = %local, "secrets-agent is serving");
    Ok(Started { listener, app })
}

/// The app over the AWS backend with a given SDK configuration and clock (tests pass moto's
/// endpoint and a manual clock).
pub fn build_app(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    token: Token,
    clock: Arc<dyn Clock>,
) -> Arc<App<AwsBackend>> {
    let metrics = Arc::new(Metrics::default());
    let backend = AwsBackend::new(sdk, config, metrics.clone()).with_clock(clock.clone());
    assemble(config, backend, metrics, token, clock)
}

fn assemble(
    config: &Config,
    backend: AwsBackend,
    metrics: Arc<Metrics>,
    token: Token,
    clock: Arc<dyn Clock>,
) -> Arc<App<AwsBackend>> {
    let cache = Cache::new(backend, Settings::from_config(config), clock, metrics);
    Arc::new(App::new(config, cache, token))
}
