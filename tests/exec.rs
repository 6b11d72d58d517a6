//! `secrets-agent exec`: placeholders resolved against moto (straight through the SDK, or
//! through a running agent), counted at the proxy; errors, exit codes and exec semantics.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;
use common::*;

/// `secrets-agent exec ARGS` with a clean environment pointing at `endpoint`, plus `vars`.
fn exec(endpoint: &str, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = agent_command(endpoint);
    c.arg("exec").args(args).envs(vars.iter().copied());
    c
}

async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("run secrets-agent exec"))
        .await
        .unwrap()
}

/// Runs `env` under exec and returns the environment the application saw.
async fn app_env(endpoint: &str, vars: &[(&str, &str)], args: &[&str]) -> HashMap<String, String> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--", "env", "-0"]);
    let out = output(exec(endpoint, vars, &all)).await;
    assert!(
        out.status.success(),
        "exec failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const DB: &str =
    r#"{"user":"app","password":"s3cr3t-pw","port":5432,"tls":true,"opts":{"a":[1,"b"]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grammar_form_resolves_straight_from_aws() {
    let db = unique("exec/db");
    let arn = create_secret(&db, DB).await;
    // The first value becomes AWSPREVIOUS; its version id is kept to ask for it by id.
    let first_version = secrets_client()
        .await
        .get_secret_value()
        .secret_id(&db)
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    put_secret(&db, r#"{"user":"app","password":"rotated-pw"}"#).await;
    let plain = unique("exec/plain");
    create_secret(&plain, "just text").await;
    let param = unique("/exec/param");
    let secure = unique("/exec/secure");
    put_parameter(&param, r#"{"url":"https://x"}"#, ParameterType::String).await;
    put_parameter(&secure, "decrypted-text", ParameterType::SecureString).await;

    let whole = format!("awssm:{plain}");
    let user = format!("awssm:{db}#user");
    let current = format!("awssm:{db}#password");
    let previous = format!("awssm:{db}#password#AWSPREVIOUS");
    let by_id = format!("awssm:{db}#password#{first_version}");
    let by_arn = format!("awssm:{arn}#user");
    let port = format!("awssm:{db}#port#AWSPREVIOUS");
    let tls = format!("awssm:{db}#tls#AWSPREVIOUS");
    let opts = format!("awssm:{db}#opts#AWSPREVIOUS");
    let url =
        format!("postgres://${{awssm:{db}#user}}:${{awssm:{db}#password}}@host/${{awssm:{plain}}}");
    let p_key = format!("awsparam:{param}#url");
    let p_secure = format!("awsparam:{secure}");
    let p_embedded = format!("flag=${{awsparam:{secure}}};");
    // Over TLS, the test CA trusted as a user adds a corporate CA.
    let moto = moto_tls();
    let ca = moto.ca.display().to_string();
    let seen = app_env(
        &moto.url,
        &[
            ("SSL_CERT_FILE", &ca),
            ("WHOLE", &whole),
            ("USER", &user),
            ("CURRENT", &current),
            ("PREVIOUS", &previous),
            ("BY_ID", &by_id),
            ("BY_ARN", &by_arn),
            ("PORT", &port),
            ("TLS", &tls),
            ("OPTS", &opts),
            ("URL", &url),
            ("P_KEY", &p_key),
            ("P_SECURE", &p_secure),
            ("P_EMBEDDED", &p_embedded),
            ("UNTOUCHED", "awssm-like but not: ${HOME} awssm"),
        ],
        &["--source", "aws"],
    )
    .await;
    let want = [
        ("WHOLE", "just text"),
        ("USER", "app"),
        ("CURRENT", "rotated-pw"),
        ("PREVIOUS", "s3cr3t-pw"),
        ("BY_ID", "s3cr3t-pw"),
        ("BY_ARN", "app"),
        ("PORT", "5432"),
        ("TLS", "true"),
        ("OPTS", r#"{"a":[1,"b"]}"#),
        ("URL", "postgres://app:rotated-pw@host/just text"),
        ("P_KEY", "https://x"),
        ("P_SECURE", "decrypted-text"),
        ("P_EMBEDDED", "flag=decrypted-text;"),
        ("UNTOUCHED", "awssm-like but not: ${HOME} awssm"),
        ("AWS_REGION", "us-east-1"),
    ];
    for (k, v) in want {
        assert_eq!(seen.get(k).map(String::as_str), Some(v), "{k}");
    }
}

/// 30 variables over 3 secrets.
fn thirty_vars(names: &[String]) -> Vec<(String, String)> {
    (0..30)
        .map(|i| {
            let name = &names[i % 3];
            let value = match i % 3 {
                0 => format!("awssm:{name}#user"),
                1 => format!("awssm:{name}#password"),
                _ => format!("x-${{awssm:{name}#port}}-y"),
            };
            (format!("VAR_{i}"), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_variables_over_three_secrets_make_three_calls() {
    let names: Vec<String> = (0..3).map(|_| unique("exec/three")).collect();
    for n in &names {
        create_secret(n, DB).await;
    }
    let vars = thirty_vars(&names);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // Straight from AWS: one GetSecretValue per secret.
    let proxy = Proxy::start().await;
    let seen = app_env(&proxy.url, &vars, &["--source", "aws"]).await;
    assert_eq!(seen["VAR_0"], "app");
    assert_eq!(seen["VAR_2"], "x-5432-y");
    assert_eq!(proxy.count("GetSecretValue"), 3);

    // Through a running agent: 3 calls at the agent's backend, then none once cached.
    let agent = TestAgent::start(|_| {}).await;
    let listen = agent.base.trim_start_matches("http://").to_string();
    let mut with_token = vars.clone();
    with_token.push(("AWS_TOKEN", TOKEN));
    let args = ["--source", "agent", "--listen", &listen];
    let seen = app_env("http://127.0.0.1:9", &with_token, &args).await;
    assert_eq!(seen["VAR_1"], "s3cr3t-pw");
    assert_eq!(agent.proxy.count("GetSecretValue"), 3);
    let seen = app_env("http://127.0.0.1:9", &with_token, &args).await;
    assert_eq!(seen["VAR_1"], "s3cr3t-pw");
    assert_eq!(
        agent.proxy.count("GetSecretValue"),
        3,
        "the second start is served from the cache"
    );

    // auto picks the agent when it answers (the endpoint given cannot be reached at all).
    let seen = app_env("http://127.0.0.1:9", &with_token, &["--listen", &listen]).await;
    assert_eq!(seen["VAR_0"], "app");
    agent.stop().await;
}

/// Runs exec expecting failure; returns (code, stderr).
async fn failing(endpoint: &str, vars: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--", "env"]);
    let out = output(exec(endpoint, vars, &all)).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.stdout.is_empty(), "the command must not run: {stderr}");
    (out.status.code().expect("an exit code"), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_certificate_failure_naming_the_host() {
    let db = unique("exec/tls");
    create_secret(&db, DB).await;
    let tls = moto_tls();
    let host = tls.url.trim_start_matches("https://");
    let var = format!("awssm:{db}#password");
    // No CA bundle at all (SSL_CERT_FILE names an empty one), as in an application image
    // FROM scratch: the built-in Mozilla roots are used, and they do not know the test CA.
    let empty = std::env::temp_dir().join(unique("no-roots.pem"));
    std::fs::write(&empty, "").unwrap();
    let (code, err) = failing(
        &tls.url,
        &[("DB", &var), ("SSL_CERT_FILE", empty.to_str().unwrap())],
        &["--source", "aws"],
    )
    .await;
    std::fs::remove_file(&empty).unwrap();
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!("the TLS certificate of {host} is not trusted")),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("Mozilla roots built into secrets-agent"),
        "{err}"
    );
    assert!(err.contains("AWS_CA_BUNDLE"), "says how to fix it: {err}");
    assert!(!err.contains("check the network"), "{err}");

    // AWS_CA_BUNDLE holding the CA: trusted.
    let ca = tls.ca.display().to_string();
    let seen = app_env(
        &tls.url,
        &[("DB", &var), ("AWS_CA_BUNDLE", &ca)],
        &["--source", "aws"],
    )
    .await;
    assert_eq!(seen["DB"], "s3cr3t-pw");
    // ... and left as it was for the application: exec does not change it.
    assert_eq!(seen["AWS_CA_BUNDLE"], ca);
    assert!(!seen.contains_key("SSL_CERT_FILE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_reads_aws_there_and_leaves_the_apps_aws_region() {
    // moto keeps secrets per region: this one exists in us-east-1 only.
    let db = unique("exec/region");
    create_secret(&db, DB).await;
    let var = format!("awssm:{db}#password");
    let vars = [("DB", var.as_str()), ("AWS_REGION", "eu-west-1")];
    let (code, err) = failing(moto_url(), &vars, &["--source", "aws"]).await;
    assert_eq!(code, 78, "not in eu-west-1: {err}");
    let seen = app_env(
        moto_url(),
        &vars,
        &["--source", "aws", "--region", "us-east-1"],
    )
    .await;
    assert_eq!(seen["DB"], "s3cr3t-pw");
    assert_eq!(
        seen["AWS_REGION"], "eu-west-1",
        "the app's own region is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_arn_is_read_in_its_own_region() {
    // Created in eu-west-1; exec (and the agent's backend) runs in us-east-1.
    let name = unique("exec/arn-region");
    let sdk = sdk_config(moto_url()).await;
    let conf = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .region(aws_config::Region::new("eu-west-1"))
        .build();
    let arn = aws_sdk_secretsmanager::Client::from_conf(conf)
        .create_secret()
        .name(&name)
        .secret_string(DB)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    assert!(arn.contains(":eu-west-1:"), "{arn}");
    let by_arn = format!("awssm:{arn}#password");
    let by_name = format!("awssm:{name}#password");
    let seen = app_env(moto_url(), &[("DB", &by_arn)], &["--source", "aws"]).await;
    assert_eq!(seen["DB"], "s3cr3t-pw");
    assert_eq!(seen["AWS_REGION"], "us-east-1");
    // By name it is looked up in the agent's region, where it is not.
    let (code, err) = failing(moto_url(), &[("DB", &by_name)], &["--source", "aws"]).await;
    assert_eq!(code, 78, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_placeholders_stop_the_start_naming_the_variable_never_a_value() {
    let db = unique("exec/err");
    create_secret(&db, DB).await;
    let missing = unique("exec/missing");
    let good = format!("awssm:{db}#password");
    let gone = format!("awssm:{missing}");
    let no_key = format!("awssm:{db}#nope");

    let (code, err) = failing(
        moto_url(),
        &[("GOOD", &good), ("GONE", &gone), ("NO_KEY", &no_key)],
        &["--source", "aws"],
    )
    .await;
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!("GONE: secret '{missing}': not found")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "NO_KEY: secret '{db}' key 'nope': key 'nope' is not in the secret"
        )),
        "{err}"
    );
    assert!(!err.contains("GOOD"), "{err}");
    assert!(
        !err.contains("s3cr3t-pw") && !err.contains("5432"),
        "no value in: {err}"
    );

    // --ignore-missing: a missing secret becomes empty, with a warning; the rest still resolves.
    let out = output(exec(
        moto_url(),
        &[("GOOD", &good), ("GONE", &gone)],
        &["--source", "aws", "--ignore-missing", "--", "env"],
    ))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "GONE="), "{stdout}");
    assert!(stdout.lines().any(|l| l == "GOOD=s3cr3t-pw"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: GONE"));

    // Access denied, injected at the proxy as AWS answers it.
    let proxy = Proxy::start().await;
    proxy.set_fault(
        Fault::Error(400, "AccessDeniedException"),
        Some("GetSecretValue"),
    );
    let (code, err) = failing(&proxy.url, &[("GOOD", &good)], &["--source", "aws"]).await;
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!(
            "GOOD: secret '{db}' key 'password': access denied"
        )),
        "{err}"
    );

    // A backend slower than the total timeout.
    proxy.set_fault(
        Fault::Delay(Duration::from_secs(20)),
        Some("GetSecretValue"),
    );
    let (code, err) = failing(
        &proxy.url,
        &[("GOOD", &good), ("SECRETS_AGENT_EXEC_TIMEOUT", "1")],
        &["--source", "aws"],
    )
    .await;
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("GOOD") && err.contains("1 s timeout"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64_and_show_the_grammar() {
    let (code, err) = failing(moto_url(), &[("BAD", "awssm:")], &[]).await;
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("BAD: malformed placeholder") && err.contains("expected awssm:<secret-id>"),
        "{err}"
    );

    let (code, err) = failing(
        moto_url(),
        &[("X", "awssm:a"), ("SECRETS_AGENT_IGNORE_MISSING", "maybe")],
        &[],
    )
    .await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("SECRETS_AGENT_IGNORE_MISSING"), "{err}");

    // --source agent with no agent listening says so.
    let port = free_port().to_string();
    let (code, err) = failing(
        moto_url(),
        &[("X", "awssm:a"), ("AWS_TOKEN", TOKEN)],
        &["--source", "agent", "--port", &port],
    )
    .await;
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("no agent answers"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_names_ids_and_fetches_nothing() {
    let proxy = Proxy::start().await;
    let out = output(exec(
        &proxy.url,
        &[
            ("DB", "awssm:db#password#AWSPREVIOUS"),
            ("P", "u=${awsparam:/a/b}"),
        ],
        &["--dry-run", "--", "env"],
    ))
    .await;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("DB <- secret 'db' key 'password' (AWSPREVIOUS)"),
        "{stdout}"
    );
    assert!(stdout.contains("P <- parameter '/a/b'"), "{stdout}");
    assert!(
        !stdout.contains("PATH="),
        "the command must not run: {stdout}"
    );
    assert_eq!(
        proxy.count("GetSecretValue") + proxy.count("GetParameter"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_gets_the_pid_the_exit_code_and_the_signals() {
    // Same PID: the shell prints its own PID, which is the one we spawned.
    let mut c = exec(moto_url(), &[], &["--", "sh", "-c", "echo $$"]);
    c.stdout(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pid.to_string());

    // Its exit code is the process's.
    let out = output(exec(moto_url(), &[], &["--", "sh", "-c", "exit 7"])).await;
    assert_eq!(out.status.code(), Some(7));

    // A signal sent to the PID reaches the application (here: ends `sleep`).
    let mut child = exec(moto_url(), &[], &["--", "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let cmdline = format!("/proc/{pid}/cmdline");
    for _ in 0..200 {
        if std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sleep")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status:?}");

    // A command that does not exist.
    let out = output(exec(moto_url(), &[], &["--", "no-such-command-here"])).await;
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command-here"));
}

/// Waits until `path` has at least `n` lines; returns them.
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..1000 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} never had {n} lines: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

async fn exit_code(child: std::process::Child) -> Option<i32> {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().status.code())
        .await
        .unwrap()
}

/// Issue 22.2: `--on-rotation restart`: a new version restarts the command with the new value
/// (a new process); reads that bring the same version back restart nothing; SIGTERM to exec
/// reaches the command and exec exits with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rotation_restart_starts_the_command_again_with_the_new_value() {
    let proxy = Proxy::start().await;
    let name = unique("exec/rotating");
    create_secret(&name, "v1").await;
    let dir = std::env::temp_dir().join(unique("exec-rotation"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let placeholder = format!("awssm:{name}");
    let mut c = exec(
        &proxy.url,
        &[
            ("DB", placeholder.as_str()),
            ("OUT", out.to_str().unwrap()),
            // Refresh every second, so the watcher sees new versions soon.
            ("SECRETS_MANAGER_TTL", "1"),
        ],
        &[
            "--source",
            "aws",
            "--on-rotation",
            "restart",
            "--min-interval",
            "0",
            "--jitter",
            "0",
            "--",
            "sh",
            "-c",
            r#"echo "$$ $DB" >> "$OUT"; exec sleep 60"#,
        ],
    );
    c.stderr(Stdio::piped());
    let agent = c.spawn().unwrap();
    let first = lines(&out, 1).await;
    let (pid1, value) = first[0].split_once(' ').unwrap();
    assert_eq!(value, "v1");
    assert_ne!(
        pid1,
        agent.id().to_string(),
        "the command is a child, not exec itself"
    );

    // Refreshes that find the same version: no restart.
    while proxy.count("DescribeSecret") < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines(&out, 1).await.len(), 1);
    assert_eq!(proxy.count("GetSecretValue"), 1);

    put_secret(&name, "v2").await;
    let after = lines(&out, 2).await;
    let (pid2, value) = after[1].split_once(' ').unwrap();
    assert_eq!(value, "v2");
    assert_ne!(pid2, pid1);

    signal(agent.id(), "-TERM");
    assert_eq!(
        exit_code(agent).await,
        Some(128 + 15),
        "sleep ended by the forwarded SIGTERM"
    );
    assert_eq!(lines(&out, 2).await.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--on-rotation signal:HUP` signals the running command instead (same process); every other
/// signal is forwarded; orphans of the command are reaped by exec; exec exits with the
/// command's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rotation_signal_forwards_signals_reaps_orphans_and_keeps_the_exit_code() {
    let proxy = Proxy::start().await;
    let name = unique("exec/signalled");
    create_secret(&name, "v1").await;
    let dir = std::env::temp_dir().join(unique("exec-signal"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let orphan = dir.join("orphan");
    let placeholder = format!("awssm:{name}");
    let script = r#"
        trap 'echo hup >> "$OUT"' HUP
        trap 'echo usr1 >> "$OUT"' USR1
        trap 'echo term >> "$OUT"; exit 7' TERM
        sh -c 'sleep 1 & echo $! > "$ORPHAN"'
        echo "$$ $DB" >> "$OUT"
        while :; do sleep 0.05; done
    "#;
    let agent = exec(
        &proxy.url,
        &[
            ("DB", placeholder.as_str()),
            ("OUT", out.to_str().unwrap()),
            ("ORPHAN", orphan.to_str().unwrap()),
            ("SECRETS_MANAGER_TTL", "1"),
        ],
        &[
            "--source",
            "aws",
            "--on-rotation",
            "signal:HUP",
            "--min-interval",
            "0",
            "--jitter",
            "0",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .spawn()
    .unwrap();
    let first = lines(&out, 1).await;
    assert!(first[0].ends_with(" v1"), "{first:?}");

    // The orphan came to exec (the subreaper) and is reaped when it ends: no zombie is left.
    let orphan_pid = std::fs::read_to_string(&orphan).unwrap().trim().to_string();
    let stat = format!("/proc/{orphan_pid}/stat");
    let ppid = |s: &str| {
        s.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .map(String::from)
    };
    if let Ok(s) = std::fs::read_to_string(&stat) {
        assert_eq!(ppid(&s), Some(agent.id().to_string()), "{s}");
    }
    let mut gone = false;
    for _ in 0..500 {
        if !std::path::Path::new(&stat).exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gone,
        "the orphan was not reaped: {:?}",
        std::fs::read_to_string(&stat)
    );

    signal(agent.id(), "-USR1");
    assert_eq!(lines(&out, 2).await[1], "usr1");

    put_secret(&name, "v2").await;
    assert_eq!(lines(&out, 3).await[2], "hup", "signalled, not restarted");

    signal(agent.id(), "-TERM");
    assert_eq!(exit_code(agent).await, Some(7));
    assert_eq!(lines(&out, 4).await[3], "term");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hostile round 2, item 7: a value the kernel cannot pass (a NUL byte; over 128 KiB in one
/// variable; all variables together over the argument limit) stopped exec with 126. It is 78,
/// naming the variable and never the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_kernel_cannot_pass_exit_78_naming_the_variable() {
    let nul = unique("exec/nul");
    create_secret(&nul, "before\u{0}after").await;
    let big = unique("exec/big");
    create_secret(&big, &"b".repeat(60_000)).await;
    let whole_nul = format!("awssm:{nul}");
    let three = format!("${{awssm:{big}}}${{awssm:{big}}}${{awssm:{big}}}");
    let (code, err) = failing(
        moto_url(),
        &[("WITH_NUL", &whole_nul), ("TOO_LONG", &three)],
        &["--source", "aws"],
    )
    .await;
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("WITH_NUL: the resolved value contains a NUL byte"),
        "{err}"
    );
    assert!(
        err.contains("TOO_LONG: the resolved value is 180000 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("before") && !err.contains("bbbb"),
        "no value in: {err}"
    );

    // Each under the per-variable limit, together (7.2 MB) over the kernel's limit for a new
    // program (a quarter of the stack limit, at most 6 MB).
    let two = format!("${{awssm:{big}}}${{awssm:{big}}}");
    let names: Vec<String> = (0..60).map(|i| format!("PART_{i:02}")).collect();
    let vars: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), two.as_str())).collect();
    let (code, err) = failing(moto_url(), &vars, &["--source", "aws"]).await;
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("larger than the kernel allows (E2BIG)"),
        "{err}"
    );
    assert!(err.contains("(120000 bytes)"), "{err}");
    assert!(!err.contains("bbbb"), "no value in: {err}");
}
