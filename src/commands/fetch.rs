//! Where the commands get values from, shared by `exec` and `render`: a running agent (its cache,
//! its token), AWS directly, or a cache of our own over AWS (`render` watching files). Each
//! distinct key is fetched once, all concurrently, within one total timeout; failures are put
//! in words an operator can act on, never with a value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::api::token::Token;
use crate::backend::{AwsBackend, Backend, Key, Kind, Refreshed};
use crate::cache::Cache;
use crate::config::{Config, Env, Listen};
use crate::error::{Error, ServiceErrorKind};
use crate::metrics::Metrics;

/// Where values come from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// A running agent if one answers /ping and a token is at hand, else AWS.
    #[default]
    Auto,
    /// Only a running agent (its cache and its token).
    Agent,
    /// Only AWS, with the standard credential chain.
    Aws,
}

impl SourceChoice {
    /// A running agent serves no ACM certificate (the command exports those itself): with one
    /// among `keys`, `auto` means AWS and `agent` is refused.
    pub fn for_keys<'a>(self, mut keys: impl Iterator<Item = &'a Key>) -> Result<Self, String> {
        if !keys.any(|k| k.kind == Kind::Certificate) {
            return Ok(self);
        }
        match self {
            SourceChoice::Agent => Err("--source agent: a running agent does not serve ACM \
                 certificates (awsacm:); use --source aws, or auto, which picks AWS for them"
                .into()),
            _ => Ok(SourceChoice::Aws),
        }
    }
}

/// What went wrong, in words an operator can act on (`ignore_missing_hint`: the command has
/// an `--ignore-missing`).
pub fn describe(e: &Error, ignore_missing_hint: bool) -> String {
    match e {
        Error::Service {
            kind: ServiceErrorKind::NotFound,
            code,
            ..
        } if ignore_missing_hint => {
            format!("not found ({code}); --ignore-missing makes it an empty value")
        }
        Error::Service {
            kind: ServiceErrorKind::NotFound,
            code,
            ..
        } => format!("not found ({code})"),
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

/// Fetches every key once, concurrently. A key missing from the answer had no answer within
/// `timeout`.
pub async fn fetch_all(
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

/// Where values come from.
pub enum Fetcher {
    /// A running agent's HTTP API.
    Agent(AgentClient),
    /// AWS, one call per fetch.
    Aws(AwsBackend),
    /// A cache over AWS: reads past the refresh-ahead point or the TTL refresh it, as the
    /// agent's own readers do.
    Cached(Cache<AwsBackend>),
}

impl Fetcher {
    /// The agent on the configured address, or AWS, as `source` says.
    pub fn choose(source: SourceChoice, config: &Config, env: &Env) -> Result<Fetcher, String> {
        let agent = || -> Result<AgentClient, String> {
            crate::runtime::sidecar::health(&config.listen)
                .map_err(|e| format!("no agent answers on {}: {e}", config.listen))?;
            let token = agent_token(config, env)?;
            let header = config
                .ssrf_headers
                .first()
                .cloned()
                .unwrap_or_else(|| "X-Aws-Parameters-Secrets-Token".into());
            Ok(AgentClient {
                listen: config.listen.clone(),
                token,
                header,
            })
        };
        let aws = || {
            let metrics = Arc::new(Metrics::default());
            Fetcher::Aws(AwsBackend::from_environment(config, metrics))
        };
        match source {
            SourceChoice::Agent => agent().map(Fetcher::Agent),
            SourceChoice::Aws => Ok(aws()),
            SourceChoice::Auto => Ok(agent().map(Fetcher::Agent).unwrap_or_else(|_| aws())),
        }
    }

    /// The answer body for `key`, as the agent would serve it.
    pub async fn fetch(&self, key: &Key) -> Result<Bytes, Error> {
        match self {
            Fetcher::Agent(a) => a.fetch(key).await,
            Fetcher::Aws(b) => match b.fetch(key, None).await? {
                Refreshed::New(f) => Ok(f.body),
                Refreshed::Unchanged => unreachable!("no previous value was given"),
            },
            Fetcher::Cached(c) => c.get(key.clone(), false).await.map(|a| a.body),
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
        (Err(_), Some(path)) => crate::api::token::read_agent_token_file(&path),
        (Err(e), None) => Err(e.to_string()),
    }
}

/// A client of the running agent's HTTP API: one connection per fetch.
pub struct AgentClient {
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
        let Some(path) = path(key) else {
            return Err(Error::Service {
                kind: ServiceErrorKind::Other,
                status: 400,
                code: "UnsupportedSource".into(),
                message: "a running agent does not serve ACM certificates; read them from AWS \
                          (--source aws)"
                    .into(),
            });
        };
        let request = http::Request::get(path)
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

/// The agent's route and query for a key (it has none for certificates).
fn path(key: &Key) -> Option<String> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut p = match key.kind {
        Kind::Secret => format!("/secretsmanager/get?secretId={}", enc(&key.id)),
        Kind::Parameter => format!(
            "/systemsmanager/parameters/get?name={}&withDecryption={}",
            enc(&key.id),
            key.decrypt
        ),
        Kind::Certificate => return None,
    };
    let (version_param, label_param) = match key.kind {
        Kind::Secret => ("versionId", "versionStage"),
        _ => ("version", "label"),
    };
    if let Some(v) = &key.version {
        p.push_str(&format!("&{version_param}={}", enc(v)));
    }
    if let Some(l) = &key.label {
        p.push_str(&format!("&{label_param}={}", enc(l)));
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_paths_carry_every_selector_encoded() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:a/b c";
        assert_eq!(
            path(&Key::secret(arn, None, Some("AWSPREVIOUS".into()))).unwrap(),
            "/secretsmanager/get?secretId=arn%3Aaws%3Asecretsmanager%3Aus%2Deast%2D1%3A1%3Asecret%3Aa%2Fb%20c&versionStage=AWSPREVIOUS"
        );
        assert_eq!(
            path(&Key::secret("s", Some("v1".into()), None)).unwrap(),
            "/secretsmanager/get?secretId=s&versionId=v1"
        );
        assert_eq!(
            path(&Key::parameter("/p", Some("3".into()), None, true)).unwrap(),
            "/systemsmanager/parameters/get?name=%2Fp&withDecryption=true&version=3"
        );
        assert_eq!(
            path(&Key::parameter("/p", None, Some("prod".into()), true)).unwrap(),
            "/systemsmanager/parameters/get?name=%2Fp&withDecryption=true&label=prod"
        );
        assert_eq!(
            path(&Key::certificate("arn:aws:acm:us-east-1:1:certificate/x")),
            None
        );
    }

    #[test]
    fn certificates_are_read_from_aws() {
        let cert = [Key::certificate("arn:aws:acm:us-east-1:1:certificate/x")];
        let secret = [Key::secret("s", None, None)];
        assert_eq!(
            SourceChoice::Auto.for_keys(cert.iter()),
            Ok(SourceChoice::Aws)
        );
        assert_eq!(
            SourceChoice::Auto.for_keys(secret.iter()),
            Ok(SourceChoice::Auto)
        );
        let e = SourceChoice::Agent.for_keys(cert.iter()).unwrap_err();
        assert!(e.contains("--source aws"), "{e}");
    }
}
