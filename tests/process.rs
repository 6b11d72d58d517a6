//! The binary as a container runs it: signals, drain, health, token bootstrap, Unix socket,
//! start-up errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-agent");

/// The binary with a clean environment pointing at `endpoint`; stderr collected.
fn command(endpoint: &str) -> Command {
    let mut c = agent_command(endpoint);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// A running agent whose stderr is collected.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("spawn secrets-agent");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Running { child, log }
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.log.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never said {needle:?}:\n{}", self.log.lock().unwrap());
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "did not exit within {limit:?}:\n{}",
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent with no reachable AWS serving on a free port with `token` (a value or
/// `file://PATH`), once it says so; and the port.
fn serving(token: &str) -> (Running, u16) {
    let port = free_port();
    let mut cmd = command("http://127.0.0.1:9");
    cmd.env("AWS_TOKEN", token)
        .arg("--port")
        .arg(port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    (agent, port)
}

fn run_to_end(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run secrets-agent");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let proxy = Proxy::start().await;
    let name = unique("proc-drain");
    create_secret(&name, "drained").await;
    let port = free_port();
    let mut cmd = command(&proxy.url);
    cmd.env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let mut agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");

    proxy.set_fault(Fault::Delay(Duration::from_millis(1500)), None);
    let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId={name}");
    let slow =
        tokio::spawn(async move { get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await });
    // Wait until the request reached the backend, then ask the agent to stop.
    while proxy.count("GetSecretValue") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.signal("-TERM");
    agent.wait_for_log("stopped accepting connections");
    // New connections are refused once the signal is handled.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let r = slow.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["SecretString"], "drained");
    let status = tokio::task::spawn_blocking(move || agent.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sigint_with_idle_connections_exits_0() {
    let (mut agent, port) = serving(TOKEN);
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    agent.signal("-INT");
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

/// Hostile round 2, item 2: SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM killed the serving agent with
/// no log line. Each is logged and ignored; the agent serves on and SIGTERM still stops it.
#[tokio::test]
async fn stray_signals_are_logged_and_ignored() {
    let (mut agent, port) = serving(TOKEN);
    let ping = format!("http://127.0.0.1:{port}/ping");
    for sig in ["HUP", "USR1", "USR2", "ALRM", "HUP"] {
        agent.signal(&format!("-{sig}"));
        agent.wait_for_log(&format!("SIG{sig} received and ignored"));
        assert!(
            agent.child.try_wait().unwrap().is_none(),
            "SIG{sig} killed it"
        );
        assert_eq!(get(&ping, &[]).await.status, StatusCode::OK);
    }
    agent.signal("-TERM");
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

/// Hostile round 2, items 8 and 9: a token file edited while the agent runs puts its new token
/// in force and the old one is refused; a short token is accepted with a warning.
#[tokio::test]
async fn a_token_file_edited_while_running_replaces_the_token() {
    let dir = std::env::temp_dir().join(unique("sa-token-edit"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, "short\n").unwrap();
    let (agent, port) = serving(&format!("file://{}", path.display()));
    agent.wait_for_log("the SSRF token has only 5 characters");
    let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=a");
    let with = |t: &'static str| [("X-Aws-Parameters-Secrets-Token", t)];
    // 502: the token passed, and the backend (nobody on port 9) did not answer.
    assert_ne!(
        get(&url, &with("short")).await.status,
        StatusCode::FORBIDDEN
    );

    let tmp = dir.join("token.tmp");
    std::fs::write(&tmp, "a-new-token-of-forty-characters-abcdefgh").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    agent.wait_for_log("SSRF token file changed");
    assert_ne!(
        get(&url, &with("a-new-token-of-forty-characters-abcdefgh"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&url, &with("short")).await.status,
        StatusCode::FORBIDDEN
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn health_exits_0_when_up_and_1_when_not() {
    let port = free_port();
    let (code, err) = run_to_end({
        let mut c = command("http://127.0.0.1:9");
        c.args(["health", "--port", &port.to_string()]);
        c
    });
    assert_eq!(code, Some(1));
    assert!(err.contains("unhealthy"), "{err}");

    let mut cmd = command("http://127.0.0.1:9");
    cmd.env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let (code, _) = run_to_end({
        let mut c = command("http://127.0.0.1:9");
        c.env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string())
            .arg("health");
        c
    });
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn generated_token_file_is_0444_and_accepted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(unique("sa-token"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let port = free_port();
    // Over TLS to moto, the test CA trusted through SSL_CERT_FILE.
    let mut cmd = command(&moto_tls().url);
    cmd.env("SSL_CERT_FILE", &moto_tls().ca);
    cmd.env("SECRETS_AGENT_TOKEN_FILE", &path)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444);
    // The token is not written to the log.
    assert!(!agent.log.lock().unwrap().contains(&token));

    let name = unique("proc-token");
    create_secret(&name, "ok").await;
    let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId={name}");
    let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", &token)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", "guess")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_existing_token_variable_wins_over_the_token_file() {
    let dir = std::env::temp_dir().join(unique("sa-token-env"));
    let path = dir.join("token");
    let port = free_port();
    let mut cmd = command(moto_url());
    cmd.env("SECRETS_AGENT_TOKEN_FILE", &path)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN)
        .arg("--port")
        .arg(port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    assert!(!path.exists());
    let r = get(
        &format!("http://127.0.0.1:{port}/metrics"),
        &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn unix_socket_serves_a_secret_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("proc-unix");
    create_secret(&name, "over-a-socket").await;
    let dir = std::env::temp_dir().join(unique("sa-sock"));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("agent.sock");
    let mut cmd = command(moto_url());
    cmd.env("AWS_TOKEN", TOKEN)
        .env("SECRETS_AGENT_LISTEN", format!("unix:{}", sock.display()));
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let sock2 = sock.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock2).unwrap();
        write!(
            s,
            "GET /secretsmanager/get?secretId={name} HTTP/1.1\r\nHost: localhost\r\n\
             X-Aws-Parameters-Secrets-Token: {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("over-a-socket"));

    let (code, err) = run_to_end({
        let mut c = command(moto_url());
        c.env("SECRETS_AGENT_LISTEN", format!("unix:{}", sock.display()))
            .arg("health");
        c
    });
    assert_eq!(code, Some(0), "{err}");
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The token file and the Unix socket replace only what the agent itself left there: anything
/// else stops the start with exit 64, names the path, and is left as it was.
#[test]
fn token_file_and_socket_paths_never_replace_other_files() {
    let dir = std::env::temp_dir().join(unique("sa-paths"));
    std::fs::create_dir_all(&dir).unwrap();
    let precious = dir.join("precious");
    std::fs::write(&precious, "not a token\n").unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&precious, &link).unwrap();

    let cases = [
        ("--token-file", precious.clone()),
        ("--token-file", link.clone()),
        ("--token-file", dir.join("no-such-folder").join("token")),
    ];
    for (flag, path) in &cases {
        let (code, err) = run_to_end({
            let mut c = command("http://127.0.0.1:9");
            c.arg(flag)
                .arg(path)
                .arg("--port")
                .arg(free_port().to_string());
            c
        });
        assert_eq!(code, Some(64), "{flag} {}: {err}", path.display());
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    assert!(!dir.join("no-such-folder").exists());
    let (code, err) = run_to_end({
        let mut c = command("http://127.0.0.1:9");
        c.env("AWS_TOKEN", TOKEN)
            .arg("--listen")
            .arg(format!("unix:{}", precious.display()));
        c
    });
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("is a regular file"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "not a token\n");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_exits_64_listing_every_problem() {
    let dir = std::env::temp_dir().join(unique("sa-conf"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agent.toml");
    std::fs::write(&file, "http_port = 99999\nttl_secondz = 5\n").unwrap();
    let (code, err) = run_to_end({
        let mut c = command("http://127.0.0.1:9");
        c.env("AWS_TOKEN", TOKEN)
            .env("SECRETS_MANAGER_TTL", "forever")
            .arg("--config")
            .arg(&file);
        c
    });
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("http_port = 99999: must be a whole number from 1 to 65535"),
        "{err}"
    );
    assert!(err.contains("ttl_secondz: unknown key"), "{err}");
    assert!(err.contains("SECRETS_MANAGER_TTL = \"forever\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flags are checked with the other settings: a bad one is exit 64 naming it, not the argument
/// parser's exit 2; an empty SECRETS_AGENT_CONFIG means "no file", as the README says.
#[test]
fn bad_flags_exit_64_and_an_empty_config_variable_is_the_default() {
    for (args, says) in [
        (
            vec!["--port", "70000"],
            "--port = \"70000\": must be a whole number from 1 to 65535",
        ),
        (
            vec!["--port", "abc"],
            "--port = \"abc\": must be a whole number from 1 to 65535",
        ),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ] {
        let (code, err) = run_to_end({
            let mut c = command("http://127.0.0.1:9");
            c.env("AWS_TOKEN", TOKEN).args(&args);
            c
        });
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, out) = {
        let out = Command::new(BIN).arg("--help").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0));
    assert!(out.contains("--token-file"), "{out}");

    let port = free_port();
    let mut cmd = command("http://127.0.0.1:9");
    cmd.env("AWS_TOKEN", TOKEN)
        .env("SECRETS_AGENT_CONFIG", "")
        .arg("--port")
        .arg(port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
}

/// With no AWS credentials anywhere, a read gets a short 502 that says so; the SDK's account of
/// every provider it tried goes to the log only.
#[tokio::test]
async fn no_credentials_give_a_short_502_and_the_detail_in_the_log() {
    let port = free_port();
    let mut cmd = command(moto_url());
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let r = get(
        &format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=any"),
        &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let v = r.json();
    assert_eq!(v["__type"], "BadGatewayException");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("no credentials"), "{message}");
    assert!(r.body.len() < 400, "{} bytes: {message}", r.body.len());
    for internal in ["Environment", "Profile", "IMDS", "AWS_", "provider"] {
        assert!(!message.contains(internal), "{message}");
    }
    agent.wait_for_log("request failed");
    let log = agent.log.lock().unwrap().clone();
    assert!(log.contains("could not be sent"), "{log}");
}

#[tokio::test]
async fn an_untrusted_aws_certificate_is_a_502_that_says_so_and_names_the_host() {
    let port = free_port();
    let tls = moto_tls();
    // A bundle that does not hold the test CA (the test's own, not the CA's).
    let other = std::env::temp_dir().join(unique("other-ca.pem"));
    let debian = "/etc/ssl/certs/ca-certificates.crt";
    std::fs::copy(debian, &other).unwrap_or_else(|e| panic!("{debian}: {e}"));
    let mut cmd = command(&tls.url);
    cmd.env("AWS_CA_BUNDLE", &other)
        .env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let r = get(
        &format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=any"),
        &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
    )
    .await;
    let _ = std::fs::remove_file(&other);
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let v = r.json();
    assert_eq!(v["__type"], "BadGatewayException");
    let message = v["message"].as_str().unwrap();
    let host = tls.url.trim_start_matches("https://");
    assert!(
        message.contains(&format!("the TLS certificate of {host} is not trusted")),
        "{message}"
    );
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(
        message.contains(&format!("AWS_CA_BUNDLE {}", other.display())),
        "{message}"
    );
}

/// Issue 19: `credentials_file_path` (the AWS agent 2.1 / 3.x key, in the nested layout here).
/// The agent starts without the file; calls fail, unsent, until it appears; then each call
/// signs with the keys the file holds now: a rewrite is used by the next call. A file open to
/// others is warned about.
#[tokio::test]
async fn credentials_come_from_the_file_and_follow_its_rewrites() {
    use std::os::unix::fs::PermissionsExt;
    let proxy = Proxy::start().await;
    let name = unique("creds-file");
    create_secret(&name, "file-creds-value").await;
    let dir = std::env::temp_dir().join(unique("sa-credfile"));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("credentials");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[capabilities.secrets_manager]\ncredentials_file_path = {:?}\n",
            creds.display().to_string()
        ),
    )
    .unwrap();
    let write = |key: &str, mode: u32| {
        // As IAM Roles Anywhere's helper does: a new file renamed over the old one.
        let tmp = dir.join("credentials.tmp");
        std::fs::write(
            &tmp,
            format!(
                "[default]\naws_access_key_id = {key}\naws_secret_access_key = s3cr3t\n\
                 aws_session_token = token-{key}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&tmp, &creds).unwrap();
    };
    let port = free_port();
    let mut cmd = command(&proxy.url);
    cmd.arg("--config")
        .arg(&config)
        .env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("credentials_file_path does not exist yet");
    agent.wait_for_log("secrets-agent is serving");
    let url = |refresh: bool| {
        format!("http://127.0.0.1:{port}/secretsmanager/get?secretId={name}&refreshNow={refresh}")
    };
    let read = |refresh: bool| {
        let u = url(refresh);
        async move { get(&u, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await }
    };

    let r = read(false).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!(proxy.count("GetSecretValue"), 0, "nothing is sent unsigned");

    write("AKIDFIRSTFILE", 0o644);
    let r = read(true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "file-creds-value");
    assert_eq!(
        proxy.count_by_key("GetSecretValue"),
        vec![("AKIDFIRSTFILE".to_string(), 1)]
    );
    agent.wait_for_log("open to others than its owner");

    write("AKIDSECONDFILE", 0o600);
    let r = read(true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The next call signed with the new keys; the environment's (AWS_ACCESS_KEY_ID=testing)
    // were never used.
    assert_eq!(
        proxy.count_by_key("GetSecretValue"),
        vec![
            ("AKIDFIRSTFILE".to_string(), 1),
            ("AKIDSECONDFILE".to_string(), 1)
        ]
    );
    let log = agent.log.lock().unwrap().clone();
    assert!(
        !log.contains("s3cr3t") && !log.contains("token-AKID"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ids and query-parameter names arrive percent-decoded; in the log they are escaped, so `%0A`
/// cannot forge a log line and ESC sequences never reach a terminal. Text and JSON formats.
#[tokio::test]
async fn request_text_is_escaped_in_the_log() {
    for format in ["text", "json"] {
        let port = free_port();
        let mut cmd = command("http://127.0.0.1:9");
        cmd.env("AWS_TOKEN", TOKEN)
            .env("SECRETS_AGENT_LOG_FORMAT", format)
            .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug")
            .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
        let agent = Running::spawn(cmd);
        agent.wait_for_log("secrets-agent is serving");
        let base = format!("http://127.0.0.1:{port}");
        let token = [("X-Aws-Parameters-Secrets-Token", TOKEN)];
        // Backend down: WARN lines that carry the id.
        let r = get(
            &format!("{base}/secretsmanager/get?secretId=a%0Aforged-by-id%1B%5B31m"),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{format}");
        let r = get(&format!("{base}/v1/b%0D%0Aforged-by-path%07"), &token).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{format}");
        // A refused request: a DEBUG line that carries the parameter name.
        let r = get(
            &format!("{base}/secretsmanager/get?secretId=c&x%0Aforged-by-name=1"),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{format}");
        agent.wait_for_log("request refused");
        let log = agent.log.lock().unwrap().clone();
        for line in log.lines() {
            assert!(!line.starts_with("forged"), "{format}: forged line:\n{log}");
            if format == "json" {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            }
        }
        assert!(
            !log.contains(['\u{1b}', '\u{7}', '\r']),
            "{format}: raw control characters:\n{log:?}"
        );
        // Still findable, escaped.
        assert!(log.contains("forged-by-id"), "{format}:\n{log}");
        assert!(log.contains("forged-by-path"), "{format}:\n{log}");
        assert!(log.contains("forged-by-name"), "{format}:\n{log}");
    }
}

#[test]
fn no_token_exits_64_and_says_how_to_give_one() {
    let (code, err) = run_to_end(command("http://127.0.0.1:9"));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("no SSRF token"), "{err}");
    assert!(err.contains("AWS_TOKEN"), "{err}");
}

#[test]
fn unknown_prefixed_variables_are_warned_by_name() {
    let port = free_port();
    let mut cmd = command("http://127.0.0.1:9");
    cmd.env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_AND_SECRETS_EXTENSION_CACHE_SIZE", "10")
        .arg("--port")
        .arg(port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let log = agent.log.lock().unwrap().clone();
    assert!(
        log.contains("PARAMETERS_AND_SECRETS_EXTENSION_CACHE_SIZE"),
        "{log}"
    );
}

#[test]
fn listening_beyond_loopback_is_said_loudly() {
    let port = free_port();
    let mut cmd = command("http://127.0.0.1:9");
    cmd.env("AWS_TOKEN", TOKEN)
        .env("SECRETS_AGENT_LISTEN", format!("0.0.0.0:{port}"));
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    assert!(agent
        .log
        .lock()
        .unwrap()
        .contains("LISTENING BEYOND LOOPBACK"));
}

/// The AWS SDK is set up after the agent serves: with region discovery stuck on an instance
/// metadata endpoint that never answers, `/ping` is answered before the SDK is ready.
#[tokio::test]
async fn ping_answers_while_the_aws_setup_is_still_waiting() {
    use std::net::{TcpListener, TcpStream};
    let imds = TcpListener::bind("127.0.0.1:0").unwrap();
    let imds_url = format!("http://{}", imds.local_addr().unwrap());
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in imds.incoming().map_while(Result::ok) {
            holder.lock().unwrap().push(stream);
        }
    });
    let port = free_port();
    let mut cmd = command(moto_url());
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url)
        .env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug")
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
    let agent = Running::spawn(cmd);
    // The SDK is asking the metadata endpoint for the region.
    while held.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let r = get(&format!("http://127.0.0.1:{port}/ping"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"healthy");
    let log = agent.log.lock().unwrap().clone();
    assert!(
        !log.contains("AWS clients ready"),
        "/ping was answered only after the SDK was set up:\n{log}"
    );
    // Once the SDK gives up on the metadata endpoint, it is ready (without a region).
    agent.wait_for_log("AWS clients ready");
}

/// A unit file or task definition written for the AWS Workload Credentials Provider 3.x runs
/// us unchanged: `sm start -c FILE` with its nested config, roles in the prefetch list and on
/// requests.
#[tokio::test]
async fn the_3x_command_line_serves_its_config_with_roles() {
    const ROLE: &str = "arn:aws:iam::333333333333:role/prefetched";
    let proxy = Proxy::start().await;
    let name = unique("process/3x");
    // The secret lives in the role's account.
    let base = sdk_config(moto_url()).await;
    let c = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("test-setup")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let as_role = base
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    None,
                    "test",
                ),
            ),
        )
        .build();
    aws_sdk_secretsmanager::Client::new(&as_role)
        .create_secret()
        .name(&name)
        .secret_string("cross-account")
        .send()
        .await
        .unwrap();

    let port = free_port();
    let dir = std::env::temp_dir().join(unique("3x-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[logging]
log_level = "info"
log_to_file = false

[capabilities.secrets_manager]
enabled = true
http_port = {port}
max_roles = 5

[[capabilities.secrets_manager.prefetch.secrets]]
secret_id = "{name}"
role_arn = "{ROLE}"
"#
        ),
    )
    .unwrap();
    let mut cmd = command(&proxy.url);
    cmd.env("AWS_TOKEN", TOKEN)
        .args(["sm", "start", "-c"])
        .arg(&file);
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let url = format!(
        "http://127.0.0.1:{port}/secretsmanager/get?secretId={}&roleArn={}",
        enc(&name),
        enc(ROLE)
    );
    // The prefetch may still be on its way: a read waits for it.
    let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "cross-account");
    assert_eq!(proxy.count("AssumeRole"), 1);
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(proxy.count("GetSecretValue"), 0, "served from the prefetch");
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Proxy-Authorization` for `user:password`, as a client sends it.
fn basic(user_password: &str) -> String {
    format!("Basic {}", aws_smithy_types::base64::encode(user_password))
}

/// Issue 22.5: with HTTP_PROXY set, AWS calls go through the proxy with its credentials, the
/// log names the proxy by host and port only, and `health` (the local listener) never uses it.
#[tokio::test]
async fn aws_calls_go_through_the_proxy_and_its_credentials_stay_out_of_the_log() {
    let fp = ForwardProxy::start();
    let name = unique("proc-proxy");
    create_secret(&name, "via-proxy").await;
    let port = free_port();
    let mut cmd = command(moto_url());
    cmd.env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug")
        .env(
            "HTTP_PROXY",
            format!("http://proxyuser:pr0xy-pa55@127.0.0.1:{}", fp.port),
        )
        .arg("--port")
        .arg(port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId={name}");
    let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "via-proxy");

    let seen = fp.seen().await;
    let reads: Vec<&Proxied> = seen
        .iter()
        .filter(|p| p.operation == "GetSecretValue")
        .collect();
    assert_eq!(reads.len(), 1, "{seen:?}");
    assert_eq!(reads[0].method, "POST");
    assert!(reads[0].target.starts_with(moto_url()), "{seen:?}");
    let auth = basic("proxyuser:pr0xy-pa55");
    assert_eq!(reads[0].proxy_authorization.as_deref(), Some(auth.as_str()));

    // The local listener is never reached through the proxy.
    let (code, _) = run_to_end({
        let mut c = command(moto_url());
        c.env("HTTP_PROXY", format!("http://127.0.0.1:{}", fp.port))
            .args(["health", "--port", &port.to_string()]);
        c
    });
    assert_eq!(code, Some(0));
    let after = fp.seen().await;
    assert_eq!(after.len(), seen.len(), "{after:?}");
    assert!(!after.iter().any(|p| p.target.contains(&port.to_string())));

    let log = agent.log.lock().unwrap().clone();
    assert!(log.contains("AWS calls go through a proxy"), "{log}");
    assert!(
        log.contains(&format!("http://127.0.0.1:{}", fp.port)),
        "{log}"
    );
    for leak in ["pr0xy-pa55", "proxyuser", auth.trim_start_matches("Basic ")] {
        assert!(!log.contains(leak), "{leak} in the log:\n{log}");
    }
}

/// Both cases of the variables are read, and NO_PROXY sends a host direct (curl's rules; no
/// built-in exception hides 127.0.0.1).
#[tokio::test]
async fn no_proxy_excludes_a_host_and_lower_case_variables_count() {
    let fp = ForwardProxy::start();
    let name = unique("proc-no-proxy");
    create_secret(&name, "direct").await;
    for (no_proxy, through_proxy) in [(None, 1), (Some("localhost, 127.0.0.1"), 0)] {
        let port = free_port();
        let mut cmd = command(moto_url());
        cmd.env("AWS_TOKEN", TOKEN)
            .env("http_proxy", format!("127.0.0.1:{}", fp.port))
            .arg("--port")
            .arg(port.to_string());
        if let Some(list) = no_proxy {
            cmd.env("no_proxy", list);
        }
        let before = fp.seen().await.len();
        let agent = Running::spawn(cmd);
        agent.wait_for_log("secrets-agent is serving");
        let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId={name}");
        let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let seen = fp.seen().await;
        let reads = seen[before..]
            .iter()
            .filter(|p| p.operation == "GetSecretValue")
            .count();
        assert_eq!(reads, through_proxy, "no_proxy={no_proxy:?}: {seen:?}");
    }
}

/// HTTPS goes through a CONNECT tunnel with the proxy's credentials. (moto speaks plain HTTP, so
/// the TLS handshake inside the tunnel fails: what is checked is the tunnel.)
#[tokio::test]
async fn https_calls_open_a_connect_tunnel() {
    let fp = ForwardProxy::start();
    let moto = moto_url().trim_start_matches("http://").to_string();
    let port = free_port();
    let mut cmd = command(&format!("https://{moto}"));
    cmd.env("AWS_TOKEN", TOKEN)
        .env(
            "HTTPS_PROXY",
            format!("http://tunnel:t0p-secret@127.0.0.1:{}", fp.port),
        )
        .arg("--port")
        .arg(port.to_string());
    let agent = Running::spawn(cmd);
    agent.wait_for_log("secrets-agent is serving");
    let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=any");
    let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let seen = fp.seen().await;
    assert!(!seen.is_empty());
    let auth = basic("tunnel:t0p-secret");
    for p in &seen {
        assert_eq!(p.method, "CONNECT", "{seen:?}");
        assert_eq!(p.target, moto);
        assert_eq!(p.proxy_authorization.as_deref(), Some(auth.as_str()));
    }
    let log = agent.log.lock().unwrap().clone();
    assert!(!log.contains("t0p-secret"), "{log}");
}

/// Issue 22.6: `AWS_USE_FIPS_ENDPOINT=true` makes the SDK's resolver pick the FIPS endpoint. Seen
/// through the proxy: the CONNECT target is the endpoint the agent resolved (AWS itself is not
/// reached from the tests; the call fails after the tunnel, which is all this checks).
#[tokio::test]
async fn fips_endpoints_come_from_the_sdk_resolver() {
    let fp = ForwardProxy::start();
    for (fips, host) in [
        (None, "secretsmanager.us-east-1.amazonaws.com:443"),
        (
            Some("true"),
            "secretsmanager-fips.us-east-1.amazonaws.com:443",
        ),
    ] {
        let port = free_port();
        let mut cmd = command(moto_url());
        cmd.env_remove("AWS_ENDPOINT_URL")
            .env("AWS_TOKEN", TOKEN)
            .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", fp.port))
            .env("SECRETS_MANAGER_TIMEOUT_MILLIS", "5000")
            .arg("--port")
            .arg(port.to_string());
        if let Some(v) = fips {
            cmd.env("AWS_USE_FIPS_ENDPOINT", v);
        }
        let before = fp.seen().await.len();
        let agent = Running::spawn(cmd);
        agent.wait_for_log("secrets-agent is serving");
        let url = format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=any");
        let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await;
        assert_ne!(r.status, StatusCode::OK);
        let seen = fp.seen().await;
        let targets: Vec<&str> = seen[before..].iter().map(|p| p.target.as_str()).collect();
        assert!(
            !targets.is_empty(),
            "fips={fips:?}: nothing reached the proxy"
        );
        assert!(
            targets.iter().all(|t| *t == host),
            "fips={fips:?}: {targets:?}"
        );
    }
}
