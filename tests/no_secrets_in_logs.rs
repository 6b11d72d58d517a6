//! Runs the binary at DEBUG through every path a value takes (miss, hit, refresh, versions,
//! binary, SecureString, errors, outage, shutdown) and greps its whole log for every value.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;
use common::*;
use http::StatusCode;

#[tokio::test]
async fn no_secret_value_reaches_the_log() {
    let proxy = Proxy::start().await;
    let mut values: Vec<String> = Vec::new();
    let mut value = |tag: &str| {
        let v = format!("VALUE-{tag}-{}", unique("s3cr3t"));
        values.push(v.clone());
        v
    };
    let s1 = unique("log-secret");
    create_secret(&s1, &value("one")).await;
    put_secret(&s1, &value("two")).await;
    let bin_name = unique("log-binary");
    let bin_value = value("binary");
    secrets_client()
        .await
        .create_secret()
        .name(&bin_name)
        .secret_binary(aws_smithy_types::Blob::new(bin_value.as_bytes()))
        .send()
        .await
        .unwrap();
    let p1 = format!("/{}/secure", unique("log"));
    put_parameter(&p1, &value("param"), ParameterType::SecureString).await;
    let prefetched = unique("log-prefetch");
    create_secret(&prefetched, &value("prefetch")).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_secrets-agent"))
        .env_clear()
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_TOKEN", TOKEN)
        .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug")
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string())
        .env("SECRETS_MANAGER_TIMEOUT_MILLIS", "300")
        .env("SECRETS_MANAGER_TTL", "1")
        .env("SECRETS_AGENT_PREFETCH", &prefetched)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up);
    let auth = [("X-Aws-Parameters-Secrets-Token", TOKEN)];
    let paths = [
        format!("/secretsmanager/get?secretId={s1}"),
        format!("/secretsmanager/get?secretId={s1}"),
        format!("/secretsmanager/get?secretId={s1}&versionStage=AWSPREVIOUS"),
        format!("/secretsmanager/get?secretId={s1}&refreshNow=true"),
        format!("/v1/{bin_name}"),
        format!("/secretsmanager/get?secretId={prefetched}"),
        format!("/systemsmanager/parameters/get?name={p1}&withDecryption=true"),
        format!("/systemsmanager/parameters/get?name={p1}"),
        format!("/secretsmanager/get?secretId={}", unique("log-missing")),
        "/metrics".to_string(),
    ];
    for p in &paths {
        get(&format!("{base}{p}"), &auth).await;
    }
    // Expiry, then an outage and a slow backend while values are cached.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get(&format!("{base}{}", paths[0]), &auth).await;
    proxy.set_fault(Fault::Drop, None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(&format!("{base}{}", paths[0]), &auth).await;
    assert_eq!(r.status, StatusCode::OK);
    proxy.set_fault(Fault::Delay(Duration::from_secs(1)), None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get(&format!("{base}{}", paths[4]), &auth).await;
    proxy.clear_fault();

    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("DEBUG"), "the log was at debug level:\n{log}");
    assert!(
        log.contains("backend call failed"),
        "the outage was logged:\n{log}"
    );
    let b64 = aws_smithy_types::base64::encode(bin_value.as_bytes());
    for v in values.iter().chain(std::iter::once(&b64)) {
        assert!(
            !log.contains(v.as_str()),
            "a secret value is in the log: {v}\n{log}"
        );
    }
    assert!(!log.contains(TOKEN), "the token is in the log");
}
