//! The Secrets Manager HTTP API end to end: agent in process, moto behind a counting proxy.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

#[tokio::test]
async fn ping_needs_no_token() {
    let agent = TestAgent::start(|_| {}).await;
    let r = get(&format!("{}/ping", agent.base), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "healthy");
    agent.stop().await;
}

#[tokio::test]
async fn secret_by_name_and_arn_with_agent_field_names() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api/by-name");
    let arn = create_secret(&name, r#"{"user":"u","password":"p"}"#).await;

    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&name)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.header("age"), Some("0"));
    let v = r.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ARN",
            "CreatedDate",
            "Name",
            "SecretString",
            "VersionId",
            "VersionStages"
        ],
        "exact field names"
    );
    assert_eq!(v["ARN"], arn.as_str());
    assert_eq!(v["Name"], name.as_str());
    assert_eq!(v["SecretString"], r#"{"user":"u","password":"p"}"#);
    assert_eq!(v["VersionStages"][0], "AWSCURRENT");
    let created: f64 = v["CreatedDate"].as_str().unwrap().parse().unwrap();
    assert!(created > 1.6e9);

    // Body bytes keep the agent's field order.
    let text = r.text();
    assert!(text.starts_with(r#"{"ARN":"#), "{text}");

    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&arn)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["Name"], name.as_str());

    // The second read by name is a hit.
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&name)))
        .await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    // The same id unescaped is the same entry ('/' may stay as is in a query).
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={name}"))
        .await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(r.json()["Name"], name.as_str());
    // A cached id does not let anything else in the query through.
    for bad in ["&bogus=1", "&secretId=b", "&refreshNow=maybe"] {
        let r = agent
            .get(&format!("/secretsmanager/get?secretId={}{bad}", enc(&name)))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
    }
    assert_eq!(
        agent.proxy.count("GetSecretValue"),
        2,
        "one per distinct id"
    );
    agent.stop().await;
}

#[tokio::test]
async fn path_prefix_route_decodes_the_id() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api/path+route");
    create_secret(&name, "v").await;
    let r = agent.get(&format!("/v1/{}", enc(&name))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "v");
    // secretId is not a parameter of the path route.
    let r = agent.get(&format!("/v1/{}?secretId=x", enc(&name))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("secretId"));
    let r = agent.get("/v1/").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    agent.stop().await;
}

#[tokio::test]
async fn binary_secret_is_base64() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-binary");
    secrets_client()
        .await
        .create_secret()
        .name(&name)
        .secret_binary(aws_smithy_types::Blob::new(vec![0u8, 1, 2, 250, 255]))
        .send()
        .await
        .unwrap();
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={name}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["SecretBinary"], "AAEC+v8=");
    assert!(v.get("SecretString").is_none());
    agent.stop().await;
}

#[tokio::test]
async fn value_route_answers_the_value_or_one_key_from_the_same_entry() {
    let agent = TestAgent::start(|_| {}).await;
    let json = unique("api-value");
    create_secret(
        &json,
        r#"{"user":"app","password":"pw-9","port":5432,"o":{"a":[1]}}"#,
    )
    .await;
    let plain = unique("api-value-plain");
    create_secret(&plain, "just text").await;
    let binary = unique("api-value-binary");
    secrets_client()
        .await
        .create_secret()
        .name(&binary)
        .secret_binary(aws_smithy_types::Blob::new(vec![0u8, 1, 250, 255]))
        .send()
        .await
        .unwrap();
    let value = |id: &str, extra: &str| format!("/secretsmanager/value?secretId={id}{extra}");

    // The compatible route fills the entry; the value route reads the same one.
    assert_eq!(
        agent
            .get(&format!("/secretsmanager/get?secretId={json}"))
            .await
            .status,
        StatusCode::OK
    );
    for (extra, want) in [
        ("&key=password", "pw-9"),
        ("&key=port", "5432"),
        ("&key=o", r#"{"a":[1]}"#),
        (
            "",
            r#"{"user":"app","password":"pw-9","port":5432,"o":{"a":[1]}}"#,
        ),
    ] {
        let r = agent.get(&value(&json, extra)).await;
        assert_eq!(r.status, StatusCode::OK, "{extra}: {}", r.text());
        assert_eq!(r.text(), want);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("x-cache"), Some("hit"));
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 1);

    let r = agent.get(&value(&json, "&key=nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["__type"], "KeyNotFoundException");
    assert!(r.json()["message"].as_str().unwrap().contains("'nope'"));
    assert!(!r.text().contains("pw-9"), "no value in an error");

    let r = agent.get(&value(&plain, "")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, "just text".to_string())
    );
    let r = agent.get(&value(&plain, "&key=k")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.text().contains("just text"), "no value in an error");

    let r = agent.get(&value(&binary, "")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body.as_ref(), &[0u8, 1, 250, 255]);

    let r = agent.get(&value(&json, "&keys=password")).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "unknown parameters are named"
    );
    agent.stop().await;
}

#[tokio::test]
async fn version_stage_and_version_id_select_versions() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-versions");
    create_secret(&name, "one").await;
    let v2 = put_secret(&name, "two").await;

    let r = agent
        .get(&format!(
            "/secretsmanager/get?secretId={name}&versionStage=AWSPREVIOUS"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "one");

    let r = agent
        .get(&format!(
            "/secretsmanager/get?secretId={name}&versionId={v2}"
        ))
        .await;
    assert_eq!(r.json()["SecretString"], "two");

    // No stage and AWSCURRENT share one entry.
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={name}"))
        .await;
    assert_eq!(r.json()["SecretString"], "two");
    let r = agent
        .get(&format!(
            "/secretsmanager/get?secretId={name}&versionStage=AWSCURRENT"
        ))
        .await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(agent.proxy.count("GetSecretValue"), 3);
    agent.stop().await;
}

#[tokio::test]
async fn token_rules() {
    let agent = TestAgent::start(|_| {}).await;
    let url = format!("{}/secretsmanager/get?secretId=x", agent.base);
    let r = get(&url, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("missing SSRF token"));
    let r = get(&url, &[("X-Aws-Parameters-Secrets-Token", "wrong")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["message"].as_str().unwrap().contains("wrong"));
    // The second default header works too.
    let r = get(
        &format!(
            "{}/secretsmanager/get?secretId={}",
            agent.base,
            unique("none")
        ),
        &[("X-Vault-Token", TOKEN)],
    )
    .await;
    assert!(
        r.status.is_client_error() && r.status != StatusCode::FORBIDDEN,
        "token accepted, secret missing"
    );
    assert_eq!(r.json()["__type"], "ResourceNotFoundException");
    // The token is never echoed back.
    assert!(!r.text().contains(TOKEN));
    // Hostile round 2, item 9: one right value among wrong ones is refused (it allowed many
    // guesses per request); the token sent twice, right both times, is fine.
    let missing = format!(
        "{}/secretsmanager/get?secretId={}",
        agent.base,
        unique("none")
    );
    for headers in [
        [
            ("X-Aws-Parameters-Secrets-Token", "guess-1"),
            ("X-Aws-Parameters-Secrets-Token", TOKEN),
        ],
        [
            ("X-Aws-Parameters-Secrets-Token", TOKEN),
            ("X-Vault-Token", "guess-2"),
        ],
    ] {
        let r = get(&missing, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("send the token once"),
            "{}",
            r.text()
        );
    }
    let r = get(
        &missing,
        &[
            ("X-Aws-Parameters-Secrets-Token", TOKEN),
            ("X-Vault-Token", TOKEN),
        ],
    )
    .await;
    assert_eq!(r.json()["__type"], "ResourceNotFoundException");
    agent.stop().await;
}

#[tokio::test]
async fn request_errors_are_json_and_name_the_problem() {
    let agent = TestAgent::start(|_| {}).await;
    let cases: &[(&str, StatusCode, &str, &str)] = &[
        (
            "/secretsmanager/get",
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "missing required query parameter secretId",
        ),
        (
            "/secretsmanager/get?secretId=a&bogus=1",
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "unknown query parameter bogus",
        ),
        (
            "/secretsmanager/get?secretId=a&secretId=b",
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "more than once",
        ),
        (
            "/secretsmanager/get?secretId=a&refreshNow=maybe",
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "refreshNow",
        ),
        (
            "/secretsmanager/get?secretId=a&roleArn=arn",
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "roleArn",
        ),
        (
            "/nothing/here",
            StatusCode::NOT_FOUND,
            "NotFoundException",
            "no route /nothing/here",
        ),
    ];
    for (path, status, kind, message) in cases {
        let r = agent.get(path).await;
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let v = r.json();
        assert_eq!(v["__type"], *kind, "{path}");
        assert!(
            v["message"].as_str().unwrap().contains(message),
            "{path}: {v}"
        );
    }
    assert_eq!(
        agent.proxy.count("GetSecretValue"),
        0,
        "bad requests never reach AWS"
    );
    agent.stop().await;
}

/// The AWS agent's order of checks: forwarding headers and the token (both skipped for `/ping`),
/// then the method.
#[tokio::test]
async fn forwarding_token_and_method_checks_in_the_aws_agents_order() {
    let agent = TestAgent::start(|_| {}).await;
    let url = format!("{}/secretsmanager/get?secretId=a", agent.base);
    let with_token = ("X-Aws-Parameters-Secrets-Token", TOKEN);
    for (header, value) in [
        ("X-Forwarded-For", "10.0.0.1"),
        ("Forwarded", "for=10.0.0.1;proto=http"),
        ("X-Real-IP", "10.0.0.1"),
        ("Via", "1.1 proxy.example"),
    ] {
        let r = get(&url, &[with_token, (header, value)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{header}");
        assert_eq!(r.json()["__type"], "InvalidRequestException", "{header}");
        assert!(
            r.json()["message"].as_str().unwrap().contains(header),
            "{header}: {}",
            r.text()
        );
        // A health check through a local proxy still works.
        let r = get(&format!("{}/ping", agent.base), &[(header, value)]).await;
        assert_eq!(r.status, StatusCode::OK, "/ping with {header}");
    }
    // A non-GET request: 403 without the token, 405 with it (and Allow: GET).
    let r = request("POST", &url, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = request("POST", &url, &[with_token]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(r.json()["__type"], "MethodNotAllowedException");
    let r = request("DELETE", &format!("{}/ping", agent.base), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    agent.stop().await;
}

#[tokio::test]
async fn aws_errors_keep_their_code() {
    let agent = TestAgent::start(|_| {}).await;
    let r = agent
        .get(&format!(
            "/secretsmanager/get?secretId={}",
            unique("missing")
        ))
        .await;
    // The status is the one AWS sent (moto: 404, AWS: 400); the code is kept as is.
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(r.json()["__type"], "ResourceNotFoundException");
    assert!(r.json()["message"].as_str().unwrap().len() > 5);
    agent.stop().await;
}

#[tokio::test]
async fn backend_unreachable_is_502_and_timeout_is_504() {
    let agent = TestAgent::start(|c| c.secrets_timeout = Duration::from_millis(300)).await;
    agent.proxy.set_fault(Fault::Drop, None);
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", unique("down")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!(r.json()["__type"], "BadGatewayException");
    // A short, stable message: the class of failure and where to look, not the SDK's dump.
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("GetSecretValue: "), "{message}");
    assert!(message.contains("agent's log"), "{message}");
    for internal in [
        "hyper",
        "dispatch",
        "io error",
        "connection closed",
        "127.0.0.1",
    ] {
        assert!(!message.contains(internal), "{message}");
    }

    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_secs(3)), None);
    let started = std::time::Instant::now();
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", unique("slow")))
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("timed out after 300 ms"));
    // Behaviour, not speed: the answer came before the injected delay was over.
    assert!(started.elapsed() < Duration::from_secs(3));
    agent.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_cold_requests_make_one_call() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-storm");
    create_secret(&name, "storm").await;
    // Slow the backend so all 50 requests arrive while the first fetch is in flight.
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_millis(300)), None);
    let url = format!("{}/secretsmanager/get?secretId={name}", agent.base);
    for r in concurrent_gets(&url, 50).await {
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["SecretString"], "storm");
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 1);
    agent.stop().await;
}

#[tokio::test]
async fn expiry_with_unchanged_version_only_describes() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-expiry");
    create_secret(&name, "same").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.header("x-cache"), Some("miss"));
    agent.proxy.reset_counts();

    agent.clock.advance(Duration::from_secs(120));
    let r = agent.get(&path).await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(r.header("age"), Some("120"));

    agent.clock.advance(Duration::from_secs(181)); // past the 300 s TTL
    let r = agent.get(&path).await;
    assert_eq!(r.json()["SecretString"], "same");
    assert_eq!(agent.proxy.count("DescribeSecret"), 1);
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    agent.stop().await;
}

#[tokio::test]
async fn expiry_after_rotation_serves_the_new_value() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-rotate");
    create_secret(&name, "old").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.json()["SecretString"], "old");
    put_secret(&name, "new").await;
    // Within the TTL the cached value is served.
    assert_eq!(agent.get(&path).await.json()["SecretString"], "old");
    agent.clock.advance(Duration::from_secs(301));
    let r = agent.get(&path).await;
    assert_eq!(r.json()["SecretString"], "new");
    assert_eq!(r.header("x-cache"), Some("miss"));
    agent.stop().await;
}

#[tokio::test]
async fn refresh_now_fetches_now() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-refresh-now");
    create_secret(&name, "a").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    agent.get(&path).await;
    put_secret(&name, "b").await;
    let r = agent.get(&format!("{path}&refreshNow=true")).await;
    assert_eq!(r.json()["SecretString"], "b");
    assert_eq!(r.header("x-cache"), Some("miss"));
    // The entry was replaced.
    let r = agent.get(&path).await;
    assert_eq!(r.json()["SecretString"], "b");
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(agent.proxy.count("GetSecretValue"), 2);
    agent.stop().await;
}

/// The AWS agent's other forms: `refreshNow=1` refreshes, `refreshNow=0` reads the cache.
#[tokio::test]
async fn refresh_now_accepts_one_and_zero() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("api-refresh-1");
    create_secret(&name, "a").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    agent.get(&path).await;
    put_secret(&name, "b").await;
    let r = agent.get(&format!("{path}&refreshNow=0")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "a");
    assert_eq!(r.header("x-cache"), Some("hit"));
    let r = agent.get(&format!("/v1/{name}?refreshNow=1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "b");
    assert_eq!(r.header("x-cache"), Some("miss"));
    agent.stop().await;
}

#[tokio::test]
async fn lru_evicts_the_least_recently_read() {
    let agent = TestAgent::start(|c| c.cache_size = 2).await;
    let names: Vec<String> = (0..3).map(|i| unique(&format!("api-lru{i}"))).collect();
    for n in &names {
        create_secret(n, n).await;
    }
    let path = |n: &str| format!("/secretsmanager/get?secretId={n}");
    agent.get(&path(&names[0])).await;
    agent.get(&path(&names[1])).await;
    agent.get(&path(&names[0])).await; // 0 is now more recent than 1
    agent.get(&path(&names[2])).await; // evicts 1
    assert_eq!(
        agent.get(&path(&names[0])).await.header("x-cache"),
        Some("hit")
    );
    assert_eq!(
        agent.get(&path(&names[2])).await.header("x-cache"),
        Some("hit")
    );
    assert_eq!(
        agent.get(&path(&names[1])).await.header("x-cache"),
        Some("miss")
    );
    assert_eq!(agent.proxy.count("GetSecretValue"), 4);
    agent.stop().await;
}

/// Issue 20.5: 64 KiB secrets (the Secrets Manager maximum) under a 1 MiB byte budget. The
/// agent's own count stays under the budget, the newest values are hits, and the oldest were
/// evicted (a miss, one more GetSecretValue).
#[tokio::test]
async fn byte_budget_bounds_the_cache_with_large_secrets() {
    const BUDGET: usize = 1024 * 1024;
    let agent = TestAgent::start(|c| c.cache_max_bytes = BUDGET).await;
    let big = "s".repeat(64 * 1024);
    let names: Vec<String> = (0..24).map(|i| unique(&format!("api-big{i}"))).collect();
    for n in &names {
        create_secret(n, &big).await;
    }
    let path = |n: &str| format!("/secretsmanager/get?secretId={n}");
    for n in &names {
        let r = agent.get(&path(n)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.json()["SecretString"].as_str().map(str::len),
            Some(64 * 1024)
        );
    }
    let metrics = agent.get("/metrics").await.text();
    let gauge = |name: &str| -> usize {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (entries, bytes) = (
        gauge("secrets_agent_cache_entries"),
        gauge("secrets_agent_cache_bytes"),
    );
    assert!(bytes <= BUDGET, "{bytes} bytes counted");
    assert_eq!(
        entries, 15,
        "1 MiB holds 15 values of 64 KiB and their JSON"
    );
    assert_eq!(
        agent.get(&path(&names[23])).await.header("x-cache"),
        Some("hit")
    );
    assert_eq!(
        agent.get(&path(&names[0])).await.header("x-cache"),
        Some("miss")
    );
    assert_eq!(agent.proxy.count("GetSecretValue"), 25);
    agent.stop().await;
}

#[tokio::test]
async fn ttl_zero_disables_caching() {
    let agent = TestAgent::start(|c| c.secrets_ttl = Duration::ZERO).await;
    let name = unique("api-nocache");
    create_secret(&name, "x").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    for _ in 0..3 {
        assert_eq!(agent.get(&path).await.header("x-cache"), Some("miss"));
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 3);
    agent.stop().await;
}

/// 429 is for when every connection is busy (tests/connections.rs); silent connections at the
/// limit make room instead.
#[tokio::test]
async fn connections_past_max_conn_make_room_or_get_429() {
    let agent = TestAgent::start(|c| c.max_conn = 2).await;
    let addr = agent.base.trim_start_matches("http://").to_string();
    // Two silent connections hold both permits; the oldest gives way.
    let _a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = get(&format!("{}/ping", agent.base), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(agent.app.connections_open().0 <= 2);
    agent.stop().await;
}

/// Sends raw bytes on a fresh connection and reads until the agent closes it.
async fn raw_exchange(agent: &TestAgent, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = agent.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Requests hyper refuses before our handler sees them get JSON errors too, and an over-long
/// request target is 414.
#[tokio::test]
async fn requests_the_parser_refuses_get_json_errors() {
    let agent = TestAgent::start(|_| {}).await;
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: a\r\n")).collect();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "GET /ping HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
            "400",
            "InvalidRequestException",
        ),
        (
            "GET /ping HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n".into(),
            "400",
            "InvalidRequestException",
        ),
        (
            "GET /pi\0ng HTTP/1.1\r\n\r\n".into(),
            "400",
            "InvalidRequestException",
        ),
        (
            format!("GET /ping HTTP/1.1\r\n{many_headers}\r\n"),
            "431",
            "RequestHeaderFieldsTooLargeException",
        ),
        (
            format!(
                "GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(17_000)
            ),
            "431",
            "RequestHeaderFieldsTooLargeException",
        ),
        (
            format!(
                "GET /secretsmanager/get?secretId={} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(64 * 1024)
            ),
            "414",
            "UriTooLongException",
        ),
    ];
    for (request, status, kind) in &cases {
        let shown = &request[..request.len().min(60)];
        let reply = raw_exchange(&agent, request.as_bytes()).await;
        let (head, body) = reply
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{shown:?}: no answer: {reply:?}"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{shown:?}: {head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{shown:?}: not JSON ({e}): {body:?}"));
        assert_eq!(v["__type"], *kind, "{shown:?}");
        assert!(v["message"].as_str().unwrap().len() > 20, "{v}");
    }
    // In a pipelined batch, the good request is answered and the bad one gets JSON.
    let reply = raw_exchange(
        &agent,
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    let second = &reply[reply.find("healthy").unwrap() + "healthy".len()..];
    assert!(second.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(
        second.contains("\"__type\":\"InvalidRequestException\""),
        "{reply}"
    );
    // The agent still serves others.
    assert_eq!(
        get(&format!("{}/ping", agent.base), &[]).await.status,
        StatusCode::OK
    );
    agent.stop().await;
}

/// Rotation as a rotation function does it: the new version is put under AWSPENDING, then
/// UpdateSecretVersionStage moves AWSCURRENT to it (AWSPREVIOUS follows to the old one).
/// Returns (old version id, new version id).
async fn rotate_by_stage_move(name: &str, value: &str) -> (String, String) {
    let sm = secrets_client().await;
    let old = sm
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .unwrap()
        .version_ids_to_stages
        .unwrap()
        .into_iter()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .unwrap()
        .0;
    let new = sm
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    sm.update_secret_version_stage()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&new)
        .remove_from_version_id(&old)
        .send()
        .await
        .unwrap();
    (old, new)
}

#[tokio::test]
async fn rotation_by_stage_move_is_seen_through_every_stage() {
    for refresh_now in [true, false] {
        let agent = TestAgent::start(|_| {}).await;
        let name = unique("api-stage-move");
        create_secret(&name, "v1").await;
        let agent_ref = &agent;
        let read = |stage: Option<&str>| {
            let mut path = format!("/secretsmanager/get?secretId={}", enc(&name));
            if let Some(s) = stage {
                path.push_str(&format!("&versionStage={s}"));
            }
            if refresh_now {
                path.push_str("&refreshNow=true");
            }
            async move {
                let r = agent_ref.get(&path).await;
                assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
                r.json()["SecretString"].as_str().unwrap().to_string()
            }
        };
        assert_eq!(read(Some("AWSCURRENT")).await, "v1");
        assert_eq!(read(None).await, "v1");

        let (_, new) = rotate_by_stage_move(&name, "v2").await;
        if !refresh_now {
            agent.clock.advance(Duration::from_secs(301)); // past the TTL
        }
        assert_eq!(
            read(Some("AWSCURRENT")).await,
            "v2",
            "refreshNow={refresh_now}"
        );
        assert_eq!(read(None).await, "v2", "the same entry");
        assert_eq!(read(Some("AWSPENDING")).await, "v2");
        assert_eq!(read(Some("AWSPREVIOUS")).await, "v1");
        let r = agent
            .get(&format!(
                "/secretsmanager/get?secretId={}&versionStage=AWSCURRENT",
                enc(&name)
            ))
            .await;
        assert_eq!(r.json()["VersionId"], new.as_str());
        agent.stop().await;
    }
}

fn batch_path(ids: &[&str]) -> String {
    let query: Vec<String> = ids
        .iter()
        .map(|id| format!("secretId={}", enc(id)))
        .collect();
    format!("/secretsmanager/batch?{}", query.join("&"))
}

/// `SecretValues` by name, and `Errors` as (SecretId, ErrorCode).
fn batch_parts(r: &Reply) -> (Vec<serde_json::Value>, Vec<(String, String)>) {
    let v = r.json();
    let values = v["SecretValues"].as_array().expect("SecretValues").clone();
    let errors = v["Errors"]
        .as_array()
        .expect("Errors")
        .iter()
        .map(|e| {
            assert!(e["Message"].is_string(), "{e}");
            (
                e["SecretId"].as_str().unwrap().to_string(),
                e["ErrorCode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (values, errors)
}

/// Issue 22.4: several secrets in one request, in BatchGetSecretValue's output shape; what the
/// cache holds is served from it, the misses come from one BatchGetSecretValue, and a missing
/// id is an entry of `Errors`.
#[tokio::test]
async fn batch_route_serves_hits_and_fetches_misses_with_one_call() {
    let agent = TestAgent::start(|_| {}).await;
    let names: Vec<String> = (0..3).map(|i| unique(&format!("api/batch{i}"))).collect();
    for (i, n) in names.iter().enumerate() {
        create_secret(n, &format!("value-{i}")).await;
    }
    let single = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&names[0])))
        .await;
    assert_eq!(single.status, StatusCode::OK);
    agent.proxy.reset_counts();

    let missing = unique("api/batch-missing");
    let ids = [&names[0], &names[1], &names[2], &missing, &names[1]];
    let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
    let r = agent.get(&batch_path(&ids)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    let (values, errors) = batch_parts(&r);
    let got: Vec<(&str, &str)> = values
        .iter()
        .map(|v| {
            (
                v["Name"].as_str().unwrap(),
                v["SecretString"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (names[0].as_str(), "value-0"),
            (names[1].as_str(), "value-1"),
            (names[2].as_str(), "value-2")
        ],
        "in request order, a repeated id once"
    );
    // The cached entry, byte for byte, as /secretsmanager/get serves it.
    assert_eq!(values[0], single.json());
    assert_eq!(
        errors,
        vec![(missing.clone(), "ResourceNotFoundException".to_string())]
    );
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);

    // Now all from the cache (the missing id from the negative cache).
    let r = agent.get(&batch_path(&ids)).await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(batch_parts(&r).0.len(), 3);
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&names[2])))
        .await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    agent.stop().await;
}

/// Single flight holds across the routes: single reads of an id the batch is fetching join
/// that fetch, and a batch joins a single read in flight.
#[tokio::test]
async fn batch_route_and_single_reads_share_fetches() {
    let agent = TestAgent::start(|_| {}).await;
    let a = unique("api/batch-sf-a");
    let b = unique("api/batch-sf-b");
    create_secret(&a, "A").await;
    create_secret(&b, "B").await;
    agent.proxy.reset_counts();

    agent.proxy.set_fault(
        Fault::Delay(Duration::from_millis(300)),
        Some("BatchGetSecretValue"),
    );
    let url = format!("{}{}", agent.base, batch_path(&[&a, &b]));
    let batch =
        tokio::spawn(async move { get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await });
    while agent.proxy.count("BatchGetSecretValue") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let singles = concurrent_gets(
        &format!("{}/secretsmanager/get?secretId={}", agent.base, enc(&a)),
        10,
    )
    .await;
    assert!(singles.iter().all(|r| r.json()["SecretString"] == "A"));
    let batch = batch.await.unwrap();
    assert_eq!(batch_parts(&batch).0.len(), 2);
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);

    // The other way round: a single read in flight, then a batch that names its id.
    let c = unique("api/batch-sf-c");
    create_secret(&c, "C").await;
    agent.proxy.reset_counts();
    agent.proxy.set_fault(
        Fault::Delay(Duration::from_millis(300)),
        Some("GetSecretValue"),
    );
    let url = format!("{}/secretsmanager/get?secretId={}", agent.base, enc(&c));
    let single =
        tokio::spawn(async move { get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await });
    while agent.proxy.count("GetSecretValue") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = agent.get(&batch_path(&[&c, &a])).await;
    let (values, errors) = batch_parts(&r);
    assert_eq!((values.len(), errors.len()), (2, 0), "{}", r.text());
    assert_eq!(values[0]["SecretString"], "C");
    assert_eq!(single.await.unwrap().json()["SecretString"], "C");
    assert_eq!(agent.proxy.count("GetSecretValue"), 1);
    assert_eq!(
        agent.proxy.count("BatchGetSecretValue"),
        0,
        "nothing left to fetch"
    );
    agent.stop().await;
}

/// A role without secretsmanager:BatchGetSecretValue: the batch route reads each secret with
/// GetSecretValue, and does not try the batch call again.
#[tokio::test]
async fn batch_route_falls_back_to_single_reads_without_permission() {
    let agent = TestAgent::start(|_| {}).await;
    let names: Vec<String> = (0..4)
        .map(|i| unique(&format!("api/batch-denied{i}")))
        .collect();
    for n in &names {
        create_secret(n, "v").await;
    }
    agent.proxy.reset_counts();
    agent.proxy.set_fault(
        Fault::Error(400, "AccessDeniedException"),
        Some("BatchGetSecretValue"),
    );
    for pair in names.chunks(2) {
        let r = agent.get(&batch_path(&[&pair[0], &pair[1]])).await;
        let (values, errors) = batch_parts(&r);
        assert_eq!((values.len(), errors.len()), (2, 0), "{}", r.text());
    }
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(agent.proxy.count("GetSecretValue"), 4);
    agent.stop().await;
}

#[tokio::test]
async fn batch_route_refuses_bad_requests_by_name() {
    let agent = TestAgent::start(|_| {}).await;
    let many: Vec<String> = (0..21).map(|i| format!("s{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (path, status, says) in [
        (
            "/secretsmanager/batch".to_string(),
            400,
            "missing required query parameter secretId",
        ),
        (batch_path(&many), 400, "at most 20 per request"),
        (
            "/secretsmanager/batch?secretId=a&secretId=".to_string(),
            400,
            "secretId is empty",
        ),
        (
            "/secretsmanager/batch?secretId=a&versionStage=AWSPREVIOUS".to_string(),
            400,
            "unknown query parameter versionStage",
        ),
    ] {
        let r = agent.get(&path).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {}", r.text());
        assert!(
            r.json()["message"].as_str().unwrap().contains(says),
            "{path}: {}",
            r.text()
        );
    }
    // Twenty is allowed (all missing here: answered in Errors).
    let r = agent.get(&batch_path(&many[..20])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(batch_parts(&r).1.len(), 20);
    // The token, as on every route.
    let r = get(&format!("{}{}", agent.base, batch_path(&["a"])), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    agent.stop().await;
}
