//! Lambda mode end to end: the real `secrets-agent` binary against a Lambda Runtime and
//! Extensions API peer nobody here wrote, the `lambda-simulator` crate, with moto behind the
//! counting proxy of `tests/common` as AWS.
//!
//! Between the agent and the simulator sits `Relay`, a recording pass-through written here. It
//! exists for three things the simulator cannot do: keep every raw request (headers and body),
//! hold the register response while a test probes the agent, and answer
//! `/extension/init/error` and `/extension/exit/error`, which lambda-simulator 0.2 does not
//! implement (it answers 404); the relay answers them as the AWS Extensions API reference says
//! (202 `{"status":"OK"}`). It also plays what the simulator does not model: Lambda Managed
//! Instances refusing an INVOKE registration with 400 (`refuse_invoke_registration`), and
//! scripted event/next answers (`script_next`: a 500, an event type from the future).
//! Everything else (register, event/next, INVOKE, SHUTDOWN and its deadline, the Runtime API
//! the test uses as the function) is the simulator's.
//!
//! `init_overhead` (ignored by default) measures start → registered; see README.md, "Init overhead".

mod common;

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{free_port, Fault, Proxy, TOKEN};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_simulator::{EventType, FreezeMode, ShutdownReason, Simulator};
use tokio::sync::watch;

const REGISTER: &str = "/2020-01-01/extension/register";
const NEXT: &str = "/2020-01-01/extension/event/next";
const INIT_ERROR: &str = "/2020-01-01/extension/init/error";
const EXIT_ERROR: &str = "/2020-01-01/extension/exit/error";
/// How long any awaited condition may take before the test fails; generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// the relay

/// One request the relay saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A recording pass-through in front of the simulator (see the module doc).
#[derive(Clone)]
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    register_open: watch::Sender<bool>,
    /// As Lambda Managed Instances do: a register call that names INVOKE gets 400.
    refuse_invoke: Arc<std::sync::atomic::AtomicBool>,
    /// Answers for the next event/next calls, in order, instead of the simulator's.
    next_script: Arc<Mutex<std::collections::VecDeque<(StatusCode, &'static str)>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let (register_open, _) = watch::channel(true);
        // `forward` does not use `addr`: the handler's copy is made before the bind.
        let mut relay = Relay {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            register_open,
            refuse_invoke: Arc::default(),
            next_script: Arc::default(),
        };
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let r = relay.clone();
        relay.addr =
            common::serve_on_loopback(move |req| r.clone().forward(req, client.clone(), upstream))
                .await;
        relay
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the agent.
    fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// Holds every register request until `release_register`.
    fn hold_register(&self) {
        self.register_open.send_replace(false);
    }

    fn release_register(&self) {
        self.register_open.send_replace(true);
    }

    /// Refuses registrations for INVOKE with 400, as Lambda Managed Instances do.
    fn refuse_invoke_registration(&self) {
        self.refuse_invoke
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answers the next event/next call with `status` and `body` instead of the simulator.
    fn script_next(&self, status: StatusCode, body: &'static str) {
        self.next_script.lock().unwrap().push_back((status, body));
    }

    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    async fn forward(
        self,
        req: Request<Incoming>,
        client: Client<HttpConnector, Full<Bytes>>,
        upstream: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let (parts, body) = req.into_parts();
        let body = common::read_body(body).await?;
        let path = parts.uri.path().to_string();
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            path: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        if path == INIT_ERROR || path == EXIT_ERROR {
            let mut resp = Response::new(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)));
            *resp.status_mut() = StatusCode::ACCEPTED;
            return Ok(resp);
        }
        if path == REGISTER {
            let mut open = self.register_open.subscribe();
            let _ = open.wait_for(|open| *open).await;
            let names_invoke = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["events"].as_array().cloned())
                .is_some_and(|events| events.iter().any(|e| e == "INVOKE"));
            if names_invoke && self.refuse_invoke.load(std::sync::atomic::Ordering::SeqCst) {
                let body = serde_json::json!({
                    "errorMessage": "INVOKE event is not supported on Lambda Managed Instances",
                    "errorType": "InvalidRequest",
                });
                let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                return Ok(resp);
            }
        }
        if path == NEXT {
            let scripted = self.next_script.lock().unwrap().pop_front();
            if let Some((status, body)) = scripted {
                let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *resp.status_mut() = status;
                return Ok(resp);
            }
        }
        match common::send_upstream(&client, parts, body, &format!("http://{upstream}")).await {
            Ok(resp) => Ok(resp),
            Err(_) => {
                // The simulator is gone (after SHUTDOWN): answer as a dead API would.
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                Ok(resp)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the agent process

/// The agent binary: `SECRETS_AGENT_BIN` (e.g. a release build, for `init_overhead`) or the one
/// cargo built for these tests.
fn agent_bin() -> PathBuf {
    std::env::var_os("SECRETS_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_secrets-agent")))
}

/// A running `secrets-agent`; killed on drop, its log printed if the test failed.
struct Agent {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

/// What the agent is started with.
struct Setup<'a> {
    exe: PathBuf,
    runtime_api: String,
    /// The simulator's Lambda environment (region, function name, ...).
    lambda_env: std::collections::HashMap<String, String>,
    aws_endpoint: String,
    vars: Vec<(&'a str, String)>,
    token: bool,
}

impl<'a> Setup<'a> {
    fn new(sim: &Simulator, runtime_api: String, aws_endpoint: &str) -> Setup<'a> {
        Setup {
            exe: agent_bin(),
            runtime_api,
            lambda_env: sim.lambda_env_vars(),
            aws_endpoint: aws_endpoint.to_string(),
            vars: Vec::new(),
            token: true,
        }
    }

    fn var(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.vars.push((k, v.into()));
        self
    }

    fn spawn(self) -> Agent {
        let port = free_port();
        let mut cmd = Command::new(&self.exe);
        // Only what Lambda would give, so nothing from the test's own environment leaks in
        // (e.g. a token variable).
        cmd.env_clear()
            .envs(&self.lambda_env)
            .env("AWS_LAMBDA_RUNTIME_API", &self.runtime_api)
            .env("AWS_ENDPOINT_URL", &self.aws_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string())
            .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug");
        if self.token {
            // As in Lambda: the session token is also the SSRF token.
            cmd.env("AWS_SESSION_TOKEN", TOKEN);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn secrets-agent");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Agent {
            child,
            port,
            log,
            exited: None,
        }
    }
}

impl Agent {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str) -> common::Reply {
        common::get(
            &self.url(path),
            &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
        )
        .await
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn running(&mut self) -> bool {
        self.exited.is_none() && self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, at most `limit`.
    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exited = Some(s);
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- secrets-agent log ----\n{}", self.log());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

async fn simulator() -> Simulator {
    Simulator::builder()
        .function_name("secrets-agent-test")
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("start lambda-simulator")
}

/// Polls `cond` until it holds; fails the test after `PATIENCE`.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `fut`; fails the test after `PATIENCE`.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Secrets Manager read calls the proxy saw.
fn backend_reads(proxy: &Proxy) -> u64 {
    ["BatchGetSecretValue", "GetSecretValue", "DescribeSecret"]
        .iter()
        .map(|op| proxy.count(op))
        .sum()
}

/// Backend calls that completed, from `GET /metrics` (reading it touches no cache entry).
async fn completed_backend_calls(agent: &Agent) -> u64 {
    let reply = agent.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply
        .text()
        .lines()
        .filter(|l| l.starts_with("secrets_agent_backend_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The test plays the function's runtime through the simulator's Runtime API.
struct Runtime {
    base: String,
}

impl Runtime {
    fn new(sim: &Simulator) -> Runtime {
        Runtime {
            base: format!("http://{}", sim.addr()),
        }
    }

    /// `GET /runtime/invocation/next`: the next request id.
    async fn next(&self) -> String {
        let reply = common::get(
            &format!("{}/2018-06-01/runtime/invocation/next", self.base),
            &[],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply
            .header("lambda-runtime-aws-request-id")
            .expect("request id header")
            .to_string()
    }

    async fn respond(&self, request_id: &str) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let req = Request::post(format!(
            "{}/2018-06-01/runtime/invocation/{request_id}/response",
            self.base
        ))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
        .unwrap();
        let resp = client.request(req).await.expect("post invocation response");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
}

fn secret_path(name: &str) -> String {
    format!("/secretsmanager/get?secretId={}", common::enc(name))
}

// ---------------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_its_file_name_for_invoke_and_shutdown() {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    // Lambda names an extension after its file in /opt/extensions: run the binary under
    // another name to see that the name comes from the executable, not from a constant.
    let dir = std::env::temp_dir().join(common::unique("secrets-agent-lambda"));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("renamed-agent");
    std::os::unix::fs::symlink(agent_bin(), &link).unwrap();
    let mut setup = Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9");
    setup.exe = link.clone();
    let mut agent = setup.spawn();

    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;

    let registers = relay.seen("POST", REGISTER);
    assert_eq!(registers.len(), 1, "one register call");
    let reg = &registers[0];
    assert_eq!(reg.header("lambda-extension-name"), Some("renamed-agent"));
    assert!(reg
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(
        reg.json(),
        serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]})
    );
    // The simulator parsed the same thing.
    let exts = sim.get_registered_extensions().await;
    assert_eq!(exts.len(), 1);
    assert_eq!(exts[0].name, "renamed-agent");
    assert_eq!(exts[0].events, vec![EventType::Invoke, EventType::Shutdown]);
    // Then it long-polls for events with the id it was given.
    wait_until("first event/next", || async {
        !relay.seen("GET", NEXT).is_empty()
    })
    .await;
    assert_eq!(
        relay.seen("GET", NEXT)[0].header("lambda-extension-identifier"),
        Some(exts[0].id.as_str())
    );
    assert!(agent.running());

    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_port_and_a_prefetched_secret_before_register_returns() {
    let name = common::unique("lambda-init");
    let value = "init-time-value-5f1c";
    common::create_secret(&name, value).await;
    let proxy = Proxy::start().await;
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.hold_register();
    let agent = Setup::new(&sim, relay.runtime_api(), &proxy.url)
        .var("SECRETS_AGENT_PREFETCH", name.clone())
        .spawn();

    wait_until("the register request", || async {
        !relay.seen("POST", REGISTER).is_empty()
    })
    .await;
    // Register has not returned: the relay holds it, the simulator has not seen it.
    assert_eq!(sim.extension_count().await, 0);

    // Bounded: an agent that serves only after register would never answer here.
    let ping = within("/ping", common::get(&agent.url("/ping"), &[])).await;
    assert_eq!(ping.status, StatusCode::OK);
    assert_eq!(ping.text(), "healthy");

    let reply = within("the secret", agent.get(&secret_path(&name))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["SecretString"], value);
    assert_eq!(reply.json()["Name"], name.as_str());
    // The read joined the prefetch instead of making its own call.
    assert_eq!(backend_reads(&proxy), 1, "only the prefetch reached AWS");
    assert_eq!(
        sim.extension_count().await,
        0,
        "still before register returns"
    );

    relay.release_register();
    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;
    assert!(
        !agent.log().contains(value),
        "the secret value is in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_loop_keeps_serving_and_starts_refresh_ahead_on_invoke() {
    let name = common::unique("lambda-invoke");
    let value = "invoke-value-9a7e";
    common::create_secret(&name, value).await;
    let proxy = Proxy::start().await;
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    // Due for refresh-ahead 0.2 s after each fetch (TTL 2 s × 0.1).
    let mut agent = Setup::new(&sim, relay.runtime_api(), &proxy.url)
        .var("SECRETS_AGENT_PREFETCH", name.clone())
        .var("SECRETS_MANAGER_TTL", "2")
        .var("SECRETS_AGENT_REFRESH_RATIO", "0.1")
        .spawn();
    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;
    let ext_id = sim.get_registered_extensions().await[0].id.clone();
    wait_until("the prefetch to complete", || async {
        completed_backend_calls(&agent).await >= 1
    })
    .await;
    let runtime = Runtime::new(&sim);

    // Nothing reads the secret; only an INVOKE can start its refresh. The process is not frozen
    // here, so the wait shows that no timer refreshes either.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = backend_reads(&proxy);
    assert_eq!(before, 1, "only the prefetch so far");

    const INVOKES: usize = 3;
    for i in 0..INVOKES {
        let request_id = sim.enqueue_payload(serde_json::json!({"n": i})).await;
        let got = runtime.next().await;
        assert_eq!(got, request_id);
        if i == 0 {
            wait_until("a refresh started by the first INVOKE", || async {
                backend_reads(&proxy) > before
            })
            .await;
        }
        // The handler reads the secret through the agent.
        let reply = agent.get(&secret_path(&name)).await;
        assert_eq!(reply.status, StatusCode::OK, "invoke {i}: {}", reply.text());
        assert_eq!(reply.json()["SecretString"], value);
        runtime.respond(&request_id).await;
        sim.wait_for_extensions_ready(&request_id, PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("invoke {i}: the agent did not poll again: {e}"));
    }

    // One poll at init, then one after each INVOKE, all with the registered id.
    let polls = relay.seen("GET", NEXT);
    assert_eq!(polls.len(), 1 + INVOKES, "event/next polls");
    assert!(polls
        .iter()
        .all(|p| p.header("lambda-extension-identifier") == Some(ext_id.as_str())));
    assert!(agent.running());
    assert!(
        !agent.log().contains(value),
        "the secret value is in the log"
    );

    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_exits_zero_before_the_deadline() {
    let name = common::unique("lambda-shutdown");
    common::create_secret(&name, "shutdown-value").await;
    let proxy = Proxy::start().await;
    let sim = simulator().await; // SHUTDOWN deadline: 3 s after the event
    let relay = Relay::start(sim.addr()).await;
    let mut agent = Setup::new(&sim, relay.runtime_api(), &proxy.url).spawn();
    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;
    wait_until("the first event/next", || async {
        !relay.seen("GET", NEXT).is_empty()
    })
    .await;

    // A request that is still waiting for AWS when SHUTDOWN arrives.
    proxy.set_fault(Fault::Delay(Duration::from_millis(700)), None);
    let url = agent.url(&secret_path(&name));
    let in_flight = tokio::spawn(async move {
        common::get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await
    });
    wait_until("the request to reach AWS", || async {
        backend_reads(&proxy) >= 1
    })
    .await;

    let deadline = Instant::now() + Duration::from_secs(3);
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    let exited_at = Instant::now();
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(
        exited_at < deadline,
        "exited {:?} after the SHUTDOWN deadline",
        exited_at - deadline
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(relay.seen("POST", EXIT_ERROR).is_empty(), "no exit error");
}

/// Runs an agent that cannot start and returns what the relay saw and the exit status.
async fn failed_start(setup: impl FnOnce(Setup<'static>) -> Setup<'static>) -> (Seen, String) {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    let mut agent = setup(Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9")).spawn();
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert!(!status.success(), "exit status {status}");
    assert_eq!(status.code(), Some(64), "EX_USAGE");
    // It registered (an error needs an extension id) and then reported.
    let exts = sim.get_registered_extensions().await;
    assert_eq!(exts.len(), 1);
    let errors = relay.seen("POST", INIT_ERROR);
    assert_eq!(
        errors.len(),
        1,
        "one init/error call; log:\n{}",
        agent.log()
    );
    let e = errors[0].clone();
    assert_eq!(
        e.header("lambda-extension-identifier"),
        Some(exts[0].id.as_str())
    );
    assert!(relay.seen("GET", NEXT).is_empty(), "no event loop");
    (e, agent.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_port_is_reported_with_init_error() {
    let (e, _log) = failed_start(|s| s.var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "abc")).await;
    let kind = e.header("lambda-extension-function-error-type").unwrap();
    assert!(kind.starts_with("Extension."), "{kind}");
    assert_eq!(kind, "Extension.InvalidConfiguration");
    let body = e.json();
    assert_eq!(body["errorType"], kind);
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") && message.contains("abc"),
        "the message names the variable and the value: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_is_reported_with_init_error() {
    let (e, _log) = failed_start(|mut s| {
        s.token = false;
        s
    })
    .await;
    let kind = e.header("lambda-extension-function-error-type").unwrap();
    assert!(kind.starts_with("Extension."), "{kind}");
    assert_eq!(kind, "Extension.MissingToken");
    let message = e.json()["errorMessage"].as_str().unwrap().to_string();
    assert!(
        message.contains("AWS_SESSION_TOKEN"),
        "the message says how to give a token: {message}"
    );
}

/// Start → registered, in ms, over 20 runs against the simulator directly (no relay, no
/// prefetch). Run it on a release build:
/// `SECRETS_AGENT_BIN=/work/target-layer/release/secrets-agent cargo test --test lambda -- --ignored --nocapture init_overhead`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; see the README's Init overhead section"]
async fn init_overhead() {
    const RUNS: usize = 20;
    let epoch_ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1e3;
    let mut registered = Vec::new();
    let mut first_next = Vec::new();
    for _ in 0..RUNS {
        let sim = simulator().await;
        let runtime_api = sim.addr().to_string();
        let setup = Setup::new(&sim, runtime_api, "http://127.0.0.1:9")
            .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info");
        let started = epoch_ms(SystemTime::now());
        let mut agent = setup.spawn();
        wait_until("registration", || async {
            sim.extension_count().await == 1
        })
        .await;
        let ext = sim.get_registered_extensions().await.remove(0);
        wait_until("the first event/next", || async {
            sim.first_next_poll_at(&ext.id).await.is_some()
        })
        .await;
        let next_at = sim.first_next_poll_at(&ext.id).await.unwrap();
        registered.push(ext.registered_at.timestamp_micros() as f64 / 1e3 - started);
        first_next.push(next_at.timestamp_micros() as f64 / 1e3 - started);
        sim.graceful_shutdown(ShutdownReason::Spindown).await;
        let status = agent.exit_within(PATIENCE).await.expect("agent exits");
        assert_eq!(status.code(), Some(0));
    }
    let summary = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        format!(
            "median {:.2} ms, min {:.2} ms, max {:.2} ms",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        )
    };
    println!(
        "binary: {}\nspawn -> registered ({RUNS} runs): {}\nspawn -> first event/next: {}",
        Path::new(&agent_bin()).display(),
        summary(registered),
        summary(first_next)
    );
}

/// `AWS_LAMBDA_EXEC_WRAPPER=/opt/secrets-agent-exec`: Lambda starts the runtime as
/// `<wrapper> <runtime command>` with the function's environment, after the extensions have
/// registered. The wrapper resolves the placeholders through the extension (the runtime's own
/// AWS endpoint leads nowhere here) and execs the stand-in runtime, which prints what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_wrapper_gives_the_runtime_values_resolved_through_the_extension() {
    let name = common::unique("lambda-exec");
    common::create_secret(&name, r#"{"password":"wrapped-pw-81c2"}"#).await;
    let proxy = Proxy::start().await;
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    let mut agent = Setup::new(&sim, relay.runtime_api(), &proxy.url).spawn();
    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;

    // /opt as the layer lays it out.
    let opt = std::env::temp_dir().join(common::unique("secrets-agent-opt"));
    std::fs::create_dir_all(opt.join("extensions")).unwrap();
    std::os::unix::fs::symlink(agent_bin(), opt.join("extensions/secrets-agent")).unwrap();
    let wrapper = opt.join("secrets-agent-exec");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("layer/secrets-agent-exec"),
        &wrapper,
    )
    .unwrap();

    let placeholder = format!("awssm:{name}#password");
    let mut runtime = Command::new(&wrapper);
    runtime
        .args(["sh", "-c", r#"printf '%s|%s' "$DB_PASSWORD" "$UNTOUCHED""#])
        .env_clear()
        .envs(sim.lambda_env_vars())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", sim.addr().to_string())
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env(
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
            agent.port.to_string(),
        )
        .env("DB_PASSWORD", &placeholder)
        .env("UNTOUCHED", "plain");
    let out = tokio::task::spawn_blocking(move || runtime.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "wrapped-pw-81c2|plain"
    );
    // The value came from the extension's backend, one read.
    assert_eq!(proxy.count("GetSecretValue"), 1);
    assert!(!agent.log().contains("wrapped-pw-81c2"));

    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let _ = std::fs::remove_dir_all(&opt);
}

// ---------------------------------------------------------------------------------------------
// issue 20: Managed Instances, unexpected Extensions API answers, refresh vs freeze, SnapStart

/// Issue 20.1: on Managed Instances the agent registers for SHUTDOWN only (the relay refuses an
/// INVOKE registration with 400, as the service does), serves, and stops on SHUTDOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_register_for_shutdown_only() {
    let name = common::unique("lambda-lmi");
    common::create_secret(&name, "lmi-value").await;
    let proxy = Proxy::start().await;
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.refuse_invoke_registration();
    let mut agent = Setup::new(&sim, relay.runtime_api(), &proxy.url)
        .var("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
        .spawn();
    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;
    let registers = relay.seen("POST", REGISTER);
    assert_eq!(registers.len(), 1);
    assert_eq!(
        registers[0].json(),
        serde_json::json!({"events": ["SHUTDOWN"]})
    );
    let reply = agent.get(&secret_path(&name)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["SecretString"], "lmi-value");
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
}

/// Issue 20.1: the relay's refusal is real: an agent that asks for INVOKE there cannot start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoke_registration_refused_is_an_exit_1() {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.refuse_invoke_registration();
    let mut agent = Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9").spawn();
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        agent.log().contains("register answered 400"),
        "{}",
        agent.log()
    );
}

/// Issue 20.1: the init-error path registers for SHUTDOWN only too, so a configuration error
/// is reported on Managed Instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_report_init_errors() {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.refuse_invoke_registration();
    let mut agent = Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9")
        .var("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
        .var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "abc")
        .spawn();
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(64), "{}", agent.log());
    let errors = relay.seen("POST", INIT_ERROR);
    assert_eq!(errors.len(), 1, "{}", agent.log());
    assert_eq!(
        errors[0].header("lambda-extension-function-error-type"),
        Some("Extension.InvalidConfiguration")
    );
}

/// Issue 20.7: an event type this version does not know is logged and skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_type_is_skipped() {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.script_next(
        StatusCode::OK,
        r#"{"eventType":"RESTORE","deadlineMs":1,"restoreReason":"future"}"#,
    );
    let mut agent = Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9").spawn();
    wait_until("a second event/next", || async {
        relay.seen("GET", NEXT).len() >= 2
    })
    .await;
    assert!(agent.running());
    assert!(agent.log().contains("RESTORE"), "{}", agent.log());
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(relay.seen("POST", EXIT_ERROR).is_empty());
}

/// Issue 20.7: a 500 from event/next (the API reference: a state the extension cannot recover
/// from) ends the agent with an exit error that says what the answer was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_from_event_next_is_reported_as_such() {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.script_next(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"errorMessage":"State transition failed","errorType":"InvalidStateTransition"}"#,
    );
    let mut agent = Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9").spawn();
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(1));
    let errors = relay.seen("POST", EXIT_ERROR);
    assert_eq!(errors.len(), 1, "{}", agent.log());
    let message = errors[0].json()["errorMessage"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("event/next answered 500"), "{message}");
    assert!(!message.contains("eventType"), "{message}");
}

/// Issue 20.7: other odd answers (here a 502 and a body that is no event) are retried, not
/// fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_odd_answer_from_event_next_is_retried() {
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    relay.script_next(StatusCode::BAD_GATEWAY, "");
    relay.script_next(StatusCode::OK, r#"{"unexpected":true}"#);
    let mut agent = Setup::new(&sim, relay.runtime_api(), "http://127.0.0.1:9").spawn();
    wait_until("the third event/next", || async {
        relay.seen("GET", NEXT).len() >= 3
    })
    .await;
    assert!(agent.running());
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
}

/// Issue 20.3: the refresh an INVOKE starts is finished before the agent asks for the next
/// event (after which Lambda may freeze it): AWS answers the refresh after 700 ms, and the
/// second event/next comes only after that answer. The simulator's freeze mode then stops the
/// agent (SIGSTOP) once the invoke is done, as Lambda does, and thaws it for the next invoke:
/// the refreshed value is a hit and no call failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_waits_for_its_refreshes_before_the_next_poll() {
    let name = common::unique("lambda-freeze");
    common::create_secret(&name, "freeze-value").await;
    let proxy = Proxy::start().await;
    let sim = Simulator::builder()
        .function_name("secrets-agent-test")
        .shutdown_timeout(Duration::from_secs(3))
        .freeze_mode(FreezeMode::Process)
        .build()
        .await
        .expect("start lambda-simulator");
    let relay = Relay::start(sim.addr()).await;
    let agent = Setup::new(&sim, relay.runtime_api(), &proxy.url)
        .var("SECRETS_AGENT_PREFETCH", name.clone())
        .var("SECRETS_MANAGER_TTL", "2")
        .var("SECRETS_AGENT_REFRESH_RATIO", "0.1")
        .spawn();
    wait_until("the first event/next", || async {
        !relay.seen("GET", NEXT).is_empty()
    })
    .await;
    wait_until("the prefetch to complete", || async {
        completed_backend_calls(&agent).await >= 1
    })
    .await;
    wait_until("the first event/next", || async {
        !relay.seen("GET", NEXT).is_empty()
    })
    .await;
    // Past the refresh-ahead point (0.2 s), not the TTL.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_fault(
        Fault::Delay(Duration::from_millis(700)),
        Some("DescribeSecret"),
    );
    let runtime = Runtime::new(&sim);
    let request_id = sim.enqueue_payload(serde_json::json!({})).await;
    assert_eq!(runtime.next().await, request_id);
    wait_until("the second event/next", || async {
        relay.seen("GET", NEXT).len() >= 2
    })
    .await;
    // Read /metrics only now: the refresh had to complete before the poll.
    assert_eq!(proxy.count("DescribeSecret"), 1);
    assert_eq!(
        completed_backend_calls(&agent).await,
        2,
        "prefetch + the refresh, finished before the poll"
    );
    // A read serves the refreshed value as a hit.
    let reply = agent.get(&secret_path(&name)).await;
    assert_eq!(reply.header("x-cache"), Some("hit"));

    // Only the agent is frozen (the test is the runtime and must keep running).
    sim.register_freeze_pid(agent.child.id());
    runtime.respond(&request_id).await;
    sim.wait_for_frozen(PATIENCE)
        .await
        .expect("the simulator freezes the agent after the invoke");
    proxy.clear_fault();
    let request_id = sim.enqueue_payload(serde_json::json!({})).await; // thaws
    assert_eq!(runtime.next().await, request_id);
    let reply = agent.get(&secret_path(&name)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["SecretString"], "freeze-value");
    // Every call AWS got completed well: none timed out across the freeze.
    let metrics = agent.get("/metrics").await.text();
    let calls: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("secrets_agent_backend_calls_total{"))
        .collect();
    assert!(
        calls.iter().any(|l| l.contains("DescribeSecret")),
        "{metrics}"
    );
    assert!(
        calls.iter().all(|l| l.contains("outcome=\"ok\"")),
        "{calls:?}"
    );
    runtime.respond(&request_id).await;
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
}

/// Issue 20.4: SnapStart. The snapshot (taken once the agent asks for its first event) must not
/// capture a prefetch half done; the first INVOKE follows a restore, and every cached value is
/// revalidated before it is a hit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_prefetches_before_the_snapshot_and_revalidates_after_restore() {
    let name = common::unique("lambda-snap");
    common::create_secret(&name, "snap-value").await;
    let proxy = Proxy::start().await;
    proxy.set_fault(
        Fault::Delay(Duration::from_millis(700)),
        Some("BatchGetSecretValue"),
    );
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    let mut agent = Setup::new(&sim, relay.runtime_api(), &proxy.url)
        .var("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
        .var("SECRETS_AGENT_PREFETCH", name.clone())
        .spawn();
    wait_until("the first event/next", || async {
        !relay.seen("GET", NEXT).is_empty()
    })
    .await;
    assert_eq!(
        completed_backend_calls(&agent).await,
        1,
        "the prefetch finished before init ended"
    );
    proxy.clear_fault();

    let runtime = Runtime::new(&sim);
    let request_id = sim.enqueue_payload(serde_json::json!({})).await;
    assert_eq!(runtime.next().await, request_id);
    wait_until("the restore to be handled", || async {
        agent.log().contains("restored from a snapshot")
    })
    .await;
    let reply = agent.get(&secret_path(&name)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["SecretString"], "snap-value");
    assert_eq!(
        reply.header("x-cache"),
        Some("miss"),
        "revalidated, not a hit"
    );
    assert_eq!(proxy.count("DescribeSecret"), 1);
    assert_eq!(proxy.count("GetSecretValue"), 0, "unchanged: no new read");
    let reply = agent.get(&secret_path(&name)).await;
    assert_eq!(reply.header("x-cache"), Some("hit"));
    runtime.respond(&request_id).await;
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
}

// ---------------------------------------------------------------------------------------------
// issue 23: the Rust example function (examples/lambda-rust) as the runtime

/// The example as `make example-rust` builds it (cargo-lambda, x86_64): `SECRETS_AGENT_EXAMPLE_BIN`.
fn example_bin() -> PathBuf {
    let bin = std::env::var_os("SECRETS_AGENT_EXAMPLE_BIN")
        .map(PathBuf::from)
        .expect(
            "SECRETS_AGENT_EXAMPLE_BIN is not set: run `make example-rust-test`, which builds \
         examples/lambda-rust and sets it",
        );
    assert!(
        bin.is_file(),
        "{} does not exist: run `make example-rust`",
        bin.display()
    );
    bin
}

/// Issue 23: Lambda's order, played with the simulator: the extension starts and registers,
/// then the example's `bootstrap` starts as the runtime (`lambda_runtime` polling the
/// simulator's Runtime API) and reads the secret through the extension at init, with the
/// `AWS_SESSION_TOKEN` the agent took as its token; two invocations each read it again. The
/// secret is prefetched (as the CDK example does), so AWS sees one read for all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the example built by cargo-lambda: `make example-rust-test` runs it"]
async fn rust_example_reads_the_secret_at_init_and_on_each_invoke() {
    let bin = example_bin();
    let name = common::unique("lambda-rust-example");
    let value = "rust-example-value-3d8b";
    let arn = common::create_secret(&name, value).await;
    let version = common::secrets_client()
        .await
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .expect("describe the secret")
        .version_ids_to_stages
        .and_then(|v| v.into_keys().next())
        .expect("a version");
    let proxy = Proxy::start().await;
    let sim = simulator().await;
    let relay = Relay::start(sim.addr()).await;
    let mut agent = Setup::new(&sim, relay.runtime_api(), &proxy.url)
        .var("SECRETS_AGENT_PREFETCH", arn.clone())
        .spawn();
    wait_until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;

    // The runtime gets what Lambda gives a function: the simulator's environment, the session
    // token, the port setting shared with the extension; no AWS endpoint (it talks only to the
    // extension).
    let mut runtime = Command::new(&bin)
        .env_clear()
        .envs(sim.lambda_env_vars())
        .env("AWS_LAMBDA_RUNTIME_API", sim.addr().to_string())
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1")
        .env(
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
            agent.port.to_string(),
        )
        .env("SECRET_ID", &arn)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the example's bootstrap");

    for n in 0..2 {
        let id = sim.enqueue_payload(serde_json::json!({ "n": n })).await;
        let state = sim
            .wait_for_invocation_complete(&id, PATIENCE)
            .await
            .expect("the invocation completes");
        assert!(
            state.error.is_none(),
            "invocation {n} failed: {:?}",
            state.error
        );
        let payload = state.response.expect("a response").payload;
        for read in ["init", "invoke"] {
            assert_eq!(payload[read]["readAt"], read, "{payload}");
            assert_eq!(payload[read]["name"], name.as_str(), "{payload}");
            assert_eq!(payload[read]["versionId"], version.as_str(), "{payload}");
            assert_eq!(payload[read]["length"], value.len(), "{payload}");
        }
        assert!(
            !payload.to_string().contains(value),
            "the value is returned"
        );
    }
    // The prefetch was the only read that reached AWS: init and both invokes were served by the
    // extension's cache.
    assert_eq!(backend_reads(&proxy), 1, "{}", agent.log());

    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent.exit_within(PATIENCE).await.expect("agent exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let _ = runtime.kill();
    let out = runtime.wait_with_output().expect("the runtime's output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(value), "the value is in the runtime's log");
    assert!(
        !agent.log().contains(value),
        "the value is in the agent's log"
    );
}
