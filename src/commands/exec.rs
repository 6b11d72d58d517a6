//! `secrets-agent exec [OPTIONS] -- COMMAND [ARGS...]`: resolves the `awssm:` and `awsparam:`
//! placeholders in its own environment (grammar: `placeholder`), then `execve`s COMMAND with the
//! resolved environment: same PID, so signals reach the application directly and its exit code
//! is the process's. Variables without a placeholder pass through unchanged.
//!
//! Values come through a running agent when one answers on the configured address (its cache,
//! its token), else straight from AWS (the init-container case); `--source` forces one. Each
//! distinct (secret, version) is fetched once, all concurrently, within one total timeout.
//!
//! Exit codes before COMMAND runs: 64 a malformed placeholder or bad settings, 78 a placeholder
//! that could not be resolved (one line per problem on stderr, naming the variable and the id,
//! never a value), 126 COMMAND cannot be executed, 127 COMMAND not found.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::placeholder::{extract, Template};
use crate::api::token::Token;
use crate::backend::{AwsBackend, Backend, Key, Kind, Refreshed};
use crate::config::{Config, Env, Listen};
use crate::error::{Error, ServiceErrorKind};
use crate::metrics::Metrics;
use crate::EXIT_USAGE;

/// A placeholder could not be resolved (BSD `EX_CONFIG`).
pub const EXIT_UNRESOLVED: u8 = 78;
/// COMMAND exists but cannot be executed (as a shell answers).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// COMMAND was not found (as a shell answers).
pub const EXIT_NOT_FOUND: u8 = 127;
/// The total time for all fetches when neither `--timeout` nor the variable says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `--timeout` from the environment.
pub const TIMEOUT_VAR: &str = "SECRETS_AGENT_EXEC_TIMEOUT";
/// `--ignore-missing` from the environment (`true`/`false`).
pub const IGNORE_MISSING_VAR: &str = "SECRETS_AGENT_IGNORE_MISSING";

/// Where values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// A running agent if one answers /ping and a token is at hand, else AWS.
    Auto,
    /// Only a running agent (its cache and its token).
    Agent,
    /// Only AWS, with the standard credential chain.
    Aws,
}

/// `exec`'s own flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where values come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceChoice,
    /// Total seconds for all fetches (also SECRETS_AGENT_EXEC_TIMEOUT; default 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// A secret or parameter that does not exist becomes an empty value, with a warning
    /// (also SECRETS_AGENT_IGNORE_MISSING=true).
    #[arg(long)]
    pub ignore_missing: bool,
    /// Print which variables would be resolved from which ids (no values), then exit 0.
    #[arg(long)]
    pub dry_run: bool,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Runs `exec`. Returns only when COMMAND could not be started (the exit code to use).
pub fn run(
    args: Args,
    config: Result<Config, String>,
    env: &Env,
    vars: Vec<(OsString, OsString)>,
) -> u8 {
    let mut templates = Vec::new();
    let mut malformed = Vec::new();
    for (name, value) in &vars {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        match Template::parse(value) {
            Ok(Some(t)) => templates.push((name.to_string(), t)),
            Ok(None) => {}
            Err(e) => malformed.push(format!("{name}: {e}")),
        }
    }
    if !malformed.is_empty() {
        for m in malformed {
            eprintln!("secrets-agent exec: {m}");
        }
        return EXIT_USAGE;
    }
    if args.dry_run {
        for (name, t) in &templates {
            let refs: Vec<String> = t.refs().map(|r| r.to_string()).collect();
            println!("{name} <- {}", refs.join(", "));
        }
        return 0;
    }
    let mut resolved: HashMap<String, String> = HashMap::new();
    if !templates.is_empty() {
        let settings = match config.and_then(|c| Settings::new(&args, c, env)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("secrets-agent exec: {e}");
                return EXIT_USAGE;
            }
        };
        match resolve(&templates, settings, env) {
            Ok(values) => resolved = values,
            Err(problems) => {
                for p in problems {
                    eprintln!("secrets-agent exec: {p}");
                }
                return EXIT_UNRESOLVED;
            }
        }
    }
    let env = vars.into_iter().map(|(name, value)| {
        match name.to_str().and_then(|n| resolved.remove(n)) {
            Some(v) => (name, OsString::from(v)),
            None => (name, value),
        }
    });
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let err = std::process::Command::new(program)
        .args(rest)
        .env_clear()
        .envs(env)
        .exec();
    eprintln!(
        "secrets-agent exec: cannot run {:?}: {err}",
        program.to_string_lossy()
    );
    match err.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXECUTE,
    }
}

struct Settings {
    config: Config,
    timeout: Duration,
    ignore_missing: bool,
    source: SourceChoice,
}

impl Settings {
    fn new(args: &Args, config: Config, env: &Env) -> Result<Settings, String> {
        let timeout = match (args.timeout, env.get(TIMEOUT_VAR)) {
            (Some(s), _) => s,
            (None, Some(v)) => v.trim().parse().map_err(|_| {
                format!("{TIMEOUT_VAR}={v:?} is not a whole number of seconds (e.g. 10)")
            })?,
            (None, None) => DEFAULT_TIMEOUT.as_secs(),
        };
        if timeout == 0 {
            return Err("the exec timeout must be at least 1 second".into());
        }
        let ignore_missing = args.ignore_missing
            || match env
                .get(IGNORE_MISSING_VAR)
                .map(|v| v.trim().to_ascii_lowercase())
            {
                None => false,
                Some(v) if v == "true" || v == "1" => true,
                Some(v) if v == "false" || v == "0" || v.is_empty() => false,
                Some(v) => {
                    return Err(format!("{IGNORE_MISSING_VAR}={v:?}: use true or false"));
                }
            };
        Ok(Settings {
            config,
            timeout: Duration::from_secs(timeout),
            ignore_missing,
            source: args.source,
        })
    }
}

/// Fetches every distinct key once, concurrently, and fills each template. Problems come back
/// one line each, naming the variable and the reference, never a value.
fn resolve(
    templates: &[(String, Template)],
    settings: Settings,
    env: &Env,
) -> Result<HashMap<String, String>, Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start the async runtime: {e}")])?;
    let fetcher = Arc::new(Fetcher::choose(&settings, env).map_err(|e| vec![e])?);
    let mut keys: Vec<Key> = Vec::new();
    for r in templates.iter().flat_map(|(_, t)| t.refs()) {
        if !keys.contains(&r.key) {
            keys.push(r.key.clone());
        }
    }
    let timeout = settings.timeout;
    let bodies = runtime.block_on(fetch_all(fetcher, keys, timeout));
    // Nothing may outlive the fetches: a resolver thread stuck on DNS must not delay the exec.
    runtime.shutdown_background();

    let mut values = HashMap::new();
    let mut problems = Vec::new();
    for (name, t) in templates {
        let filled = t.fill(|r| match bodies.get(&r.key) {
            Some(Ok(body)) => extract(r, body).map_err(|e| format!("{name}: {r}: {e}")),
            Some(Err(e)) if e.is_not_found() && settings.ignore_missing => {
                eprintln!("secrets-agent exec: warning: {name}: {r} not found; empty value (ignore-missing)");
                Ok(String::new())
            }
            Some(Err(e)) => Err(format!("{name}: {r}: {}", describe(e))),
            None => Err(format!(
                "{name}: {r}: no answer within the {} s timeout ({TIMEOUT_VAR} or --timeout sets it)",
                timeout.as_secs()
            )),
        });
        match filled {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// What went wrong, in words an operator can act on.
fn describe(e: &Error) -> String {
    match e {
        Error::Service {
            kind: ServiceErrorKind::NotFound,
            code,
            ..
        } => format!("not found ({code}); --ignore-missing makes it an empty value"),
        Error::Service {
            kind: ServiceErrorKind::AccessDenied,
            code,
            message,
            ..
        } => format!("access denied ({code}: {message})"),
        Error::Timeout { .. } => format!("timed out: {e}"),
        Error::Unreachable { operation, .. } => {
            format!("{operation} could not reach AWS (check the network, the region and the credentials)")
        }
        other => other.to_string(),
    }
}

async fn fetch_all(
    fetcher: Arc<Fetcher>,
    keys: Vec<Key>,
    timeout: Duration,
) -> HashMap<Key, Result<Bytes, Error>> {
    let mut set = tokio::task::JoinSet::new();
    for key in keys {
        let fetcher = fetcher.clone();
        set.spawn(async move {
            let r = fetcher.fetch(&key).await;
            (key, r)
        });
    }
    let mut out = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        if let Ok((key, r)) = joined {
            out.insert(key, r);
        }
    }
    // Keys still missing timed out: the caller says so.
    set.abort_all();
    out
}

enum Fetcher {
    Agent(AgentClient),
    Aws(AwsBackend),
}

impl Fetcher {
    fn choose(settings: &Settings, env: &Env) -> Result<Fetcher, String> {
        let agent = || -> Result<AgentClient, String> {
            crate::runtime::sidecar::health(&settings.config.listen)
                .map_err(|e| format!("no agent answers on {}: {e}", settings.config.listen))?;
            let token = agent_token(&settings.config, env)?;
            let header = settings
                .config
                .ssrf_headers
                .first()
                .cloned()
                .unwrap_or_else(|| "X-Aws-Parameters-Secrets-Token".into());
            Ok(AgentClient {
                listen: settings.config.listen.clone(),
                token,
                header,
            })
        };
        let aws = || {
            let metrics = Arc::new(Metrics::default());
            Fetcher::Aws(AwsBackend::from_environment(&settings.config, metrics))
        };
        match settings.source {
            SourceChoice::Agent => agent().map(Fetcher::Agent),
            SourceChoice::Aws => Ok(aws()),
            SourceChoice::Auto => Ok(agent().map(Fetcher::Agent).unwrap_or_else(|_| aws())),
        }
    }

    async fn fetch(&self, key: &Key) -> Result<Bytes, Error> {
        match self {
            Fetcher::Agent(a) => a.fetch(key).await,
            Fetcher::Aws(b) => match b.fetch(key, None).await? {
                Refreshed::New(f) => Ok(f.body),
                Refreshed::Unchanged => unreachable!("no previous value was given"),
            },
        }
    }
}

/// The token a client of the running agent sends: the agent's own sources, read-only (a
/// configured token file is read, never generated, since the agent writes it).
fn agent_token(config: &Config, env: &Env) -> Result<Token, String> {
    let mut read_only = config.clone();
    let file = read_only.token_file.take();
    match (Token::resolve(&read_only, env), file) {
        (Ok((t, _)), _) => Ok(t),
        (Err(_), Some(path)) => std::fs::read_to_string(&path)
            .map(|t| Token::new(t.trim()))
            .map_err(|e| format!("cannot read the agent's token file {}: {e}", path.display())),
        (Err(e), None) => Err(e.to_string()),
    }
}

/// A client of the running agent's HTTP API: one connection per fetch.
struct AgentClient {
    listen: Listen,
    token: Token,
    header: String,
}

impl AgentClient {
    async fn fetch(&self, key: &Key) -> Result<Bytes, Error> {
        let unreachable = |detail: String| Error::Unreachable {
            operation: "the agent",
            detail,
        };
        let request = http::Request::get(path(key))
            .header(http::header::HOST, "localhost")
            .header(self.header.as_str(), self.token.expose())
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = match &self.listen {
            Listen::Tcp(addr) => {
                let stream =
                    tokio::net::TcpStream::connect(crate::runtime::sidecar::reachable(*addr))
                        .await
                        .map_err(|e| unreachable(e.to_string()))?;
                send(stream, request).await
            }
            Listen::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                send(stream, request).await
            }
        }
        .map_err(unreachable)?;
        let (status, body) = response;
        if status == http::StatusCode::OK {
            return Ok(body);
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            #[serde(rename = "__type")]
            code: String,
            message: String,
        }
        let parsed: ErrorBody = serde_json::from_slice(&body).map_err(|_| {
            unreachable(format!("the agent answered {status} without a JSON error"))
        })?;
        Err(Error::Service {
            kind: crate::backend::kind_for_code(&parsed.code, status.as_u16()),
            status: status.as_u16(),
            code: parsed.code,
            message: parsed.message,
        })
    }
}

async fn send<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The agent's route and query for a key.
fn path(key: &Key) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut p = match key.kind {
        Kind::Secret => format!("/secretsmanager/get?secretId={}", enc(&key.id)),
        Kind::Parameter => format!(
            "/systemsmanager/parameters/get?name={}&withDecryption={}",
            enc(&key.id),
            key.decrypt
        ),
    };
    let (version_param, label_param) = match key.kind {
        Kind::Secret => ("versionId", "versionStage"),
        Kind::Parameter => ("version", "label"),
    };
    if let Some(v) = &key.version {
        p.push_str(&format!("&{version_param}={}", enc(v)));
    }
    if let Some(l) = &key.label {
        p.push_str(&format!("&{label_param}={}", enc(l)));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_paths_carry_every_selector_encoded() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:a/b c";
        assert_eq!(
            path(&Key::secret(arn, None, Some("AWSPREVIOUS".into()))),
            "/secretsmanager/get?secretId=arn%3Aaws%3Asecretsmanager%3Aus%2Deast%2D1%3A1%3Asecret%3Aa%2Fb%20c&versionStage=AWSPREVIOUS"
        );
        assert_eq!(
            path(&Key::secret("s", Some("v1".into()), None)),
            "/secretsmanager/get?secretId=s&versionId=v1"
        );
        assert_eq!(
            path(&Key::parameter("/p", Some("3".into()), None, true)),
            "/systemsmanager/parameters/get?name=%2Fp&withDecryption=true&version=3"
        );
        assert_eq!(
            path(&Key::parameter("/p", None, Some("prod".into()), true)),
            "/systemsmanager/parameters/get?name=%2Fp&withDecryption=true&label=prod"
        );
    }
}
