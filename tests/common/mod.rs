//! Test harness: a real moto server, a counting and fault-injecting proxy between the agent and
//! moto, an in-process agent on 127.0.0.1:0, and a small HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use secrets_agent::api::listener::Listener;
use secrets_agent::api::server::{self, App};
use secrets_agent::api::token::Token;
use secrets_agent::backend::AwsBackend;
use secrets_agent::cache::ManualClock;
use secrets_agent::config::{Config, Env, Listen, Overrides};
use tokio::net::TcpListener;

pub const TOKEN: &str = "test-token-0123456789";

// ---------------------------------------------------------------------------------------------
// moto

struct Moto {
    url: String,
    tls: MotoTls,
    _child: Child,
    _stdin: ChildStdin,
}

/// moto's HTTPS face: the same state as `moto_url()`, a certificate for 127.0.0.1 and
/// localhost issued by a test CA (tests/support/tls_moto.py).
pub struct MotoTls {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The test CA's PEM file, to trust as a user adds a corporate CA.
    pub ca: std::path::PathBuf,
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

/// The moto server for this test binary (plain HTTP), started on first use. It exits when this
/// process does (its stdin closes).
pub fn moto_url() -> &'static str {
    &moto().url
}

/// The same moto over TLS, as AWS is reached: for the tests of the real path.
pub fn moto_tls() -> &'static MotoTls {
    &moto().tls
}

fn python() -> String {
    if let Ok(p) = std::env::var("MOTO_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if std::path::Path::new(venv).exists() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}

fn start_moto() -> Moto {
    let (child, stdin, port, mut out) = start_support_server("moto_server.py");
    // "TLS_PORT <n> <ca.pem>"
    let mut line = String::new();
    out.read_line(&mut line).expect("read moto's TLS port");
    let mut words = line.split_whitespace().skip(1);
    let (Some(tls_port), Some(ca)) = (words.next(), words.next()) else {
        panic!("moto_server.py did not print its TLS port: {line:?}");
    };
    Moto {
        url: format!("http://127.0.0.1:{port}"),
        tls: MotoTls {
            url: format!("https://127.0.0.1:{tls_port}"),
            ca: ca.into(),
        },
        _child: child,
        _stdin: stdin,
    }
}

/// Starts a server script of tests/support that prints "PORT <n>" and runs until its stdin
/// closes; returns it with its stdin, port and the rest of its output.
fn start_support_server(
    script: &str,
) -> (Child, ChildStdin, u16, BufReader<std::process::ChildStdout>) {
    let path = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python())
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script} (`make test` installs its Python): {e}"));
    let stdin = child.stdin.take().expect("server stdin");
    let stdout = child.stdout.take().expect("server stdout");
    let mut line = String::new();
    let mut stdout = BufReader::new(stdout);
    stdout.read_line(&mut line).expect("read the server's port");
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} did not print its port: {line:?}"));
    (child, stdin, port, stdout)
}

/// A forward HTTP proxy (tests/support/forward_proxy.py) that records what passes through it:
/// absolute-form requests and CONNECT tunnels. It stops when dropped.
pub struct ForwardProxy {
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
}

/// One request the forward proxy saw.
#[derive(Debug, serde::Deserialize)]
pub struct Proxied {
    pub method: String,
    /// `http://host:port/path` for a forwarded request, `host:port` for CONNECT.
    pub target: String,
    /// The `X-Amz-Target` operation, e.g. "GetSecretValue".
    pub operation: String,
    pub proxy_authorization: Option<String>,
}

impl ForwardProxy {
    pub fn start() -> ForwardProxy {
        let (child, stdin, port, _) = start_support_server("forward_proxy.py");
        ForwardProxy {
            port,
            child,
            _stdin: stdin,
        }
    }

    /// Everything that passed through so far.
    pub async fn seen(&self) -> Vec<Proxied> {
        let r = get(&format!("http://127.0.0.1:{}/__seen", self.port), &[]).await;
        serde_json::from_slice(&r.body).expect("the proxy's record")
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK configuration for `endpoint` with dummy credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(secrets_agent::backend::https_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// A Secrets Manager client talking to moto directly (not through the proxy).
pub async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config(moto_url()).await)
}

pub async fn ssm_client() -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&sdk_config(moto_url()).await)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates a string secret and returns its ARN.
pub async fn create_secret(name: &str, value: &str) -> String {
    secrets_client()
        .await
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn")
}

/// Puts (or overwrites) an SSM parameter.
pub async fn put_parameter(name: &str, value: &str, kind: aws_sdk_ssm::types::ParameterType) {
    ssm_client()
        .await
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(true)
        .send()
        .await
        .expect("put parameter");
}

/// Puts a new AWSCURRENT version and returns its version id.
pub async fn put_secret(name: &str, value: &str) -> String {
    secrets_client()
        .await
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .expect("put secret value")
        .version_id
        .expect("version id")
}

/// The agent binary with a clean environment: PATH, test credentials, and `endpoint` as AWS.
pub fn agent_command(endpoint: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_secrets-agent"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null());
    c
}

/// The agent binary pointed at moto over TLS, trusting the test CA as a user trusts a corporate
/// one: `SSL_CERT_FILE` (the system roots' setting) or `AWS_CA_BUNDLE` (the AWS SDKs').
pub fn agent_command_tls(trust: &str) -> std::process::Command {
    let tls = moto_tls();
    let mut c = agent_command(&tls.url);
    c.env(trust, &tls.ca);
    c
}

// ---------------------------------------------------------------------------------------------
// the proxy

/// What the proxy does to requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward as is.
    None,
    /// Wait, then forward.
    Delay(Duration),
    /// Answer with an AWS-style error of this status and code without asking moto.
    Error(u16, &'static str),
    /// Close the connection without answering.
    Drop,
    /// Answer with something AWS never sends, without asking moto.
    Garbage(Garbage),
}

/// Answers that did not come from AWS: what a broken proxy or a fake endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Garbage {
    /// 200 with no body.
    Empty,
    /// 200 with an HTML page (a captive portal, a proxy's error page).
    Html,
    /// 200 with half of a GetSecretValue body, then the connection cut.
    Truncated,
    /// 200 with a chunked body that never ends.
    Endless,
    /// 200 with a well-formed GetSecretValue body whose SecretString is 1 MiB (AWS's limit is
    /// 64 KiB).
    Oversized,
    /// 307 to another address.
    Redirect,
}

/// The proxy's answers: moto's, read whole, or a streamed garbage body.
pub type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A chunked body of `chunks` (each sent as it is), then an error (`cut`) or its end.
fn chunked(chunks: impl Iterator<Item = Bytes> + Send + Sync + 'static, cut: bool) -> ProxyBody {
    let frames = chunks
        .map(|c| Ok(hyper::body::Frame::data(c)))
        .chain(cut.then(|| Err(std::io::Error::other("cut by the test proxy"))));
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn garbage(g: Garbage) -> Response<ProxyBody> {
    let json = "application/x-amz-json-1.1";
    let (status, content_type, body) = match g {
        Garbage::Empty => (200, json, full(Bytes::new())),
        Garbage::Html => (
            200,
            "text/html",
            full("<html><body><h1>Sign in to continue</h1></body></html>"),
        ),
        Garbage::Truncated => (
            200,
            json,
            chunked(
                std::iter::once(Bytes::from_static(
                    br#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:x","Name":"x","VersionId":"v","SecretStr"#,
                )),
                true,
            ),
        ),
        Garbage::Endless => (
            200,
            json,
            chunked(
                std::iter::once(Bytes::from_static(br#"{"SecretString":""#))
                    .chain(std::iter::repeat(Bytes::from(vec![b'a'; 64 * 1024]))),
                false,
            ),
        ),
        Garbage::Oversized => {
            let body = serde_json::json!({
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:big-AbCdEf",
                "Name": "big",
                "VersionId": "00000000-0000-0000-0000-000000000001",
                "SecretString": "x".repeat(1024 * 1024),
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1.7e9,
            });
            (200, json, full(body.to_string()))
        }
        Garbage::Redirect => (307, "text/html", full("<a href=\"http://127.0.0.1:9/\">moved</a>")),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    if g == Garbage::Redirect {
        resp.headers_mut()
            .insert("location", "http://127.0.0.1:9/".parse().unwrap());
    }
    resp
}

#[derive(Default)]
struct ProxyState {
    counts: HashMap<String, u64>,
    /// Requests by (operation, access key id of the signature).
    by_key: HashMap<(String, String), u64>,
    fault: Option<(Fault, Option<String>)>,
    /// Roles whose AssumeRole is answered AccessDenied (moto checks no trust policy).
    denied_roles: Vec<String>,
    /// Text replaced in request bodies before they reach moto: (from, to).
    rewrites: Vec<(String, String)>,
}

/// A pass-through proxy to moto that counts requests by operation (`X-Amz-Target`, or the
/// query protocol's `Action` for STS) and by signing access key, and injects faults.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let upstream = moto_url().to_string();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        let addr = serve_on_loopback(move |req| {
            forward(req, st.clone(), client.clone(), upstream.clone())
        })
        .await;
        Proxy {
            url: format!("http://{addr}"),
            state,
        }
    }

    /// Requests seen for `operation` (e.g. "GetSecretValue"), faulted ones included.
    pub fn count(&self, operation: &str) -> u64 {
        let st = self.state.lock().unwrap();
        st.counts.get(operation).copied().unwrap_or(0)
    }

    /// From now on, `from` in a request body is sent to moto as `to`: with two ACM certificate
    /// ARNs, calls for the first are answered for the second, as after an ACM renewal (the same
    /// ARN, a new certificate), which moto does not do (it has no RenewCertificate).
    pub fn rewrite(&self, from: &str, to: &str) {
        self.state
            .lock()
            .unwrap()
            .rewrites
            .push((from.to_string(), to.to_string()));
    }

    pub fn reset_counts(&self) {
        let mut st = self.state.lock().unwrap();
        st.counts.clear();
        st.by_key.clear();
    }

    /// Requests for `operation` signed with each access key id, sorted by key.
    pub fn count_by_key(&self, operation: &str) -> Vec<(String, u64)> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<(String, u64)> = st
            .by_key
            .iter()
            .filter(|((op, _), _)| op == operation)
            .map(|((_, key), n)| (key.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Answers AssumeRole of `role_arn` as AWS does when the role's trust policy does not let
    /// the caller assume it: 403 AccessDenied in STS's XML. moto assumes any role, existing or
    /// not, so the test adds what AWS documents.
    pub fn deny_role(&self, role_arn: &str) {
        self.state
            .lock()
            .unwrap()
            .denied_roles
            .push(role_arn.to_string());
    }

    /// Applies `fault` to every request, or only to `operation`'s.
    pub fn set_fault(&self, fault: Fault, operation: Option<&str>) {
        self.state.lock().unwrap().fault = Some((fault, operation.map(String::from)));
    }

    pub fn clear_fault(&self) {
        self.state.lock().unwrap().fault = None;
    }
}

async fn forward(
    req: Request<Incoming>,
    state: Arc<Mutex<ProxyState>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = read_body(body).await?;
    // STS speaks the query protocol: the operation is the form's Action.
    let form: HashMap<String, String> = if parts.headers.contains_key("x-amz-target") {
        HashMap::new()
    } else {
        url_decoded_form(&body)
    };
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .or(form.get("Action").map(String::as_str))
        .unwrap_or("unknown")
        .to_string();
    // `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...`
    let access_key = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_string();
    let denied = op == "AssumeRole"
        && form
            .get("RoleArn")
            .is_some_and(|r| state.lock().unwrap().denied_roles.contains(r));
    if denied {
        state
            .lock()
            .unwrap()
            .counts
            .entry(op.clone())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let role = &form["RoleArn"];
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
             <Type>Sender</Type><Code>AccessDenied</Code><Message>User: \
             arn:aws:iam::123456789012:user/moto is not authorized to perform: sts:AssumeRole \
             on resource: {role}</Message></Error><RequestId>test</RequestId></ErrorResponse>"
        );
        let mut resp = Response::new(full(body));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut()
            .insert("content-type", "text/xml".parse().unwrap());
        return Ok(resp);
    }
    let (fault, rewrites) = {
        let mut st = state.lock().unwrap();
        *st.counts.entry(op.clone()).or_default() += 1;
        *st.by_key.entry((op.clone(), access_key)).or_default() += 1;
        let rewrites = st.rewrites.clone();
        let fault = match &st.fault {
            Some((f, None)) => f.clone(),
            Some((f, Some(only))) if *only == op => f.clone(),
            _ => Fault::None,
        };
        (fault, rewrites)
    };
    match fault {
        Fault::None => {}
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Error(status, code) => {
            let body = serde_json::json!({"__type": code, "message": "injected by the test proxy"});
            let mut resp = Response::new(full(body.to_string()));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            resp.headers_mut().insert(
                "content-type",
                "application/x-amz-json-1.1".parse().unwrap(),
            );
            resp.headers_mut()
                .insert("x-amzn-errortype", code.parse().unwrap());
            return Ok(resp);
        }
        Fault::Drop => {
            return Err(std::io::Error::other("dropped by the test proxy"));
        }
        Fault::Garbage(g) => return Ok(garbage(g)),
    }
    let (mut parts, mut body) = (parts, body);
    if !rewrites.is_empty() {
        let mut text = String::from_utf8_lossy(&body).into_owned();
        for (from, to) in &rewrites {
            text = text.replace(from.as_str(), to);
        }
        body = Bytes::from(text);
        parts
            .headers
            .insert("content-length", body.len().to_string().parse().unwrap());
    }
    let resp = send_upstream(&client, parts, body, &upstream).await?;
    Ok(resp.map(|b| b.map_err(|never| match never {}).boxed()))
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn url_decoded_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// The whole body of a request or response.
pub async fn read_body(
    body: impl hyper::body::Body<Error = hyper::Error>,
) -> Result<Bytes, std::io::Error> {
    Ok(body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes())
}

/// Sends a request (its body already read) to `upstream` (`http://host:port`) with the same
/// path and query, and reads the whole answer. Serves the fault proxy and the Lambda relay.
pub async fn send_upstream(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    mut parts: http::request::Parts,
    body: Bytes,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("{upstream}{path}").parse().unwrap();
    let resp = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = resp.into_parts();
    let body = read_body(body).await?;
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// Serves `handler` over HTTP/1 on 127.0.0.1:0 until the test process ends; returns the address.
pub async fn serve_on_loopback<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, std::io::Error>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// the agent, in process

pub struct TestAgent {
    pub base: String,
    pub proxy: Proxy,
    pub clock: Arc<ManualClock>,
    pub app: Arc<App<AwsBackend>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestAgent {
    /// An agent on 127.0.0.1:0 with the default config changed by `tweak`, talking to moto
    /// through a fresh proxy.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestAgent {
        let mut config = test_config();
        tweak(&mut config);
        let proxy = Proxy::start().await;
        let sdk = sdk_config(&proxy.url).await;
        let clock = Arc::new(ManualClock::new());
        let app = secrets_agent::build_app(&config, &sdk, Token::new(TOKEN), clock.clone());
        let listener = Listener::bind(&config.listen).await.unwrap();
        let Listen::Tcp(addr) = listener.local() else {
            panic!("tcp expected")
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, app.clone(), async move {
            let _ = rx.await;
        }));
        TestAgent {
            base: format!("http://{addr}"),
            proxy,
            clock,
            app,
            stop: Some(tx),
            server: Some(server),
        }
    }

    /// GET `path` with the token.
    pub async fn get(&self, path: &str) -> Reply {
        get(
            &format!("{}{path}", self.base),
            &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
        )
        .await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

/// Defaults, on an ephemeral port.
pub fn test_config() -> Config {
    let mut config = Config::from_sources(None, &Overrides::default(), &Env::new()).unwrap();
    config.listen = Listen::Tcp("127.0.0.1:0".parse::<SocketAddr>().unwrap());
    config.max_backend_calls = 64;
    // Generous: moto on a loaded 2-core machine can be slow. Tests of timeouts set their own.
    config.secrets_timeout = Duration::from_secs(30);
    config.parameters_timeout = Duration::from_secs(30);
    config
}

// ---------------------------------------------------------------------------------------------
// HTTP client

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers).await
}

pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    // One client per call: each #[tokio::test] has its own runtime, and pooled connections
    // must not outlive it.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .expect("request to the agent");
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// `n` concurrent GETs of `url` with the token, all started before any is answered.
pub async fn concurrent_gets(url: &str, n: usize) -> Vec<Reply> {
    let reads: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(
                async move { get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await },
            )
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for r in reads {
        replies.push(r.await.expect("request task"));
    }
    replies
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
