//! The arm64 (aarch64) binaries we ship, run in an emulated arm64 machine: qemu's user-mode
//! emulator (`qemu-aarch64-static`, Debian's qemu-user-static) runs the aarch64 executable as a
//! process of this host, so it talks to moto, the counting proxy and lambda-simulator on this
//! host's loopback exactly as the x86_64 binary does in `tests/lambda.rs` and `tests/process.rs`.
//!
//! - the layer's binary (`layer/build/arm64/extensions/secrets-agent`) through the Lambda
//!   lifecycle against lambda-simulator: register for INVOKE and SHUTDOWN under its file name,
//!   serve a secret from moto while an INVOKE is in progress, exit 0 on SHUTDOWN;
//! - the image's binary (`image/build/arm64/secrets-agent`, what `make image` puts in the arm64
//!   image) as a container runs it: serve a secret, exit 0 on SIGTERM.
//!
//! Both are ignored by a plain `cargo test`: they need the arm64 release binary and qemu, which
//! `make arm64-test` builds and installs before it runs them with `--ignored`. They read the
//! binaries from `SECRETS_AGENT_ARM64_LAYER_BIN` and `SECRETS_AGENT_ARM64_IMAGE_BIN`, and the
//! emulator from `SECRETS_AGENT_QEMU` (default `qemu-aarch64-static`).
//!
//! Only static binaries are run this way: under Debian 12's qemu-user 7.2 a dynamically linked
//! aarch64 program that starts threads spins before its first thread runs, while static ones
//! (which both of ours are) run; `aarch64_elf` refuses a dynamic one with that reason.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Proxy, TOKEN};
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_simulator::{EventType, ShutdownReason, Simulator};

/// How long any awaited condition may take: emulation is several times slower than the host.
const PATIENCE: Duration = Duration::from_secs(60);

/// The arm64 binary named by `var`, checked to be a static aarch64 ELF executable (so the test
/// cannot pass by running an x86_64 binary natively).
fn aarch64_elf(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: `make arm64-test` builds and names it"));
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&elf[..4], b"\x7fELF", "{}: not an ELF file", path.display());
    // e_machine (little-endian u16 at offset 18): 183 = EM_AARCH64.
    let machine = u16::from_le_bytes([elf[18], elf[19]]);
    assert_eq!(
        machine,
        183,
        "{}: e_machine {machine}, not aarch64",
        path.display()
    );
    // A dynamic executable names its interpreter (PT_INTERP, type 3) in a program header.
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([elf[54], elf[55]]) as usize;
    let phnum = u16::from_le_bytes([elf[56], elf[57]]) as usize;
    let interp = (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    });
    assert!(
        !interp,
        "{}: dynamically linked; qemu-user 7.2 hangs on threaded dynamic aarch64 programs, and \
         the binaries we ship are static (release/build.sh)",
        path.display()
    );
    path
}

/// `qemu-aarch64-static BIN` with an empty environment.
fn emulated(bin: &PathBuf) -> Command {
    let qemu =
        std::env::var_os("SECRETS_AGENT_QEMU").unwrap_or_else(|| "qemu-aarch64-static".into());
    let mut cmd = Command::new(qemu);
    cmd.arg(bin)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The emulated agent; killed on drop, its log printed if the test failed.
struct Emulated {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Emulated {
    fn spawn(mut cmd: Command) -> Emulated {
        let mut child = cmd
            .spawn()
            .expect("spawn qemu-aarch64-static (make arm64-test installs it)");
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
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
        Emulated { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Emulated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- secrets-agent (arm64) log ----\n{}", self.log());
        }
    }
}

/// Polls `cond` until it holds; fails the test after `PATIENCE`.
async fn wait_until<F, Fut>(what: &str, agent: &Emulated, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The function's answer to an invocation, as its runtime posts it.
async fn respond(url: &str) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
        .unwrap();
    let resp = client
        .request(req)
        .await
        .expect("post the invocation response");
    assert!(resp.status().is_success(), "{}", resp.status());
}

fn secret_url(port: u16, name: &str) -> String {
    format!(
        "http://127.0.0.1:{port}/secretsmanager/get?secretId={}",
        common::enc(name)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the arm64 layer binary and qemu-user: `make arm64-test` builds, installs and runs it"]
async fn arm64_layer_binary_registers_serves_during_invoke_and_exits_0_on_shutdown() {
    let bin = aarch64_elf("SECRETS_AGENT_ARM64_LAYER_BIN");
    let name = common::unique("arm64-lambda");
    let value = "arm64-invoke-value-71c2";
    common::create_secret(&name, value).await;
    let proxy = Proxy::start().await;
    let sim = Simulator::builder()
        .function_name("secrets-agent-arm64")
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("start lambda-simulator");
    let port = common::free_port();
    let mut cmd = emulated(&bin);
    cmd.envs(sim.lambda_env_vars())
        .env("AWS_LAMBDA_RUNTIME_API", sim.addr().to_string())
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string())
        .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug");
    let mut agent = Emulated::spawn(cmd);

    wait_until("registration", &agent, || async {
        sim.extension_count().await == 1
    })
    .await;
    let exts = sim.get_registered_extensions().await;
    // Lambda names an extension after its file in /opt/extensions.
    assert_eq!(exts[0].name, "secrets-agent");
    assert_eq!(exts[0].events, vec![EventType::Invoke, EventType::Shutdown]);

    // The function's runtime takes an invocation: Lambda sends INVOKE to the extension, and the
    // handler reads the secret through it.
    let request_id = sim
        .enqueue_payload(serde_json::json!({"arch": "arm64"}))
        .await;
    let base = format!("http://{}/2018-06-01/runtime", sim.addr());
    let next = common::get(&format!("{base}/invocation/next"), &[]).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    assert_eq!(
        next.header("lambda-runtime-aws-request-id"),
        Some(request_id.as_str())
    );
    let reply = common::get(
        &secret_url(port, &name),
        &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["SecretString"], value);
    assert_eq!(reply.json()["Name"], name.as_str());
    assert_eq!(reply.header("x-cache"), Some("miss"));
    assert_eq!(proxy.count("GetSecretValue"), 1, "one read reached AWS");
    respond(&format!("{base}/invocation/{request_id}/response")).await;
    sim.wait_for_extensions_ready(&request_id, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("the agent did not poll again after INVOKE: {e}"));

    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = agent
        .exit_within(PATIENCE)
        .await
        .expect("the agent exits after SHUTDOWN");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(
        !agent.log().contains(value),
        "the secret value is in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the arm64 image binary and qemu-user: `make arm64-test` builds, installs and runs it"]
async fn arm64_image_binary_serves_a_secret_and_exits_0_on_sigterm() {
    let bin = aarch64_elf("SECRETS_AGENT_ARM64_IMAGE_BIN");
    let name = common::unique("arm64-container");
    let value = "arm64-container-value-0d4e";
    common::create_secret(&name, value).await;
    let proxy = Proxy::start().await;
    let port = common::free_port();
    let mut cmd = emulated(&bin);
    cmd.env("AWS_ENDPOINT_URL", &proxy.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let started = Instant::now();
    let mut agent = Emulated::spawn(cmd);
    let ping = format!("http://127.0.0.1:{port}/ping");
    wait_until("/ping", &agent, || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::get(&ping, &[]).await.status == StatusCode::OK
    })
    .await;
    // A sanity figure, not a benchmark: emulation is many times slower than the hardware.
    eprintln!(
        "arm64 under qemu-user: start to first /ping {} ms",
        started.elapsed().as_millis()
    );

    let reply = common::get(
        &secret_url(port, &name),
        &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["SecretString"], value);
    assert_eq!(proxy.count("GetSecretValue"), 1, "one read reached AWS");

    // qemu-user delivers the signal to the emulated process, whose handler drains and exits.
    let sent = Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM: {sent}");
    let status = agent
        .exit_within(PATIENCE)
        .await
        .expect("the agent exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(
        !agent.log().contains(value),
        "the secret value is in the log"
    );
}
