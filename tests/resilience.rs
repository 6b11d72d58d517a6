//! Failure behaviour, with faults injected by the proxy between the agent and moto: outage,
//! throttling, slow backend, refresh-ahead, rotation, negative cache, prefetch, slow clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

async fn cached(agent: &TestAgent, value: &str) -> String {
    let name = unique("res");
    create_secret(&name, value).await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);
    path
}

/// Backend calls of any kind seen by the proxy.
fn calls(agent: &TestAgent) -> u64 {
    ["GetSecretValue", "DescribeSecret"]
        .iter()
        .map(|op| agent.proxy.count(op))
        .sum()
}

/// Serves stale through a long outage with backend attempts bounded by the backoff schedule,
/// then fresh values once AWS is back.
async fn outage_with(fault: Fault) {
    let agent = TestAgent::start(|_| {}).await;
    let path = cached(&agent, "before").await;
    agent.proxy.reset_counts();
    agent.proxy.set_fault(fault, None);
    agent.clock.advance(Duration::from_secs(301)); // expired

    // Ten minutes of outage, one request per second.
    for _ in 0..600 {
        let r = agent.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-cache"), Some("stale"));
        assert_eq!(r.json()["SecretString"], "before");
        agent.clock.advance(Duration::from_secs(1));
        // Let a background attempt fail before the next step.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Backoff doubles from 1 s to a 60 s cap with jitter in [step/2, step]: at most about 7
    // attempts to reach the cap, then one per 30 s at most: under 30 attempts in 10 minutes,
    // each at most 2 calls (one SDK retry). Without backoff it would be 600.
    let attempts = calls(&agent);
    assert!(attempts >= 5, "the backend was retried: {attempts}");
    assert!(
        attempts <= 60,
        "backend calls bounded by backoff: {attempts}"
    );

    // AWS comes back with a rotated secret.
    let name = path.rsplit('=').next().unwrap().to_string();
    agent.proxy.clear_fault();
    put_secret(&name, "after").await;
    agent.clock.advance(Duration::from_secs(61)); // past any backoff step
    let mut fresh = None;
    for _ in 0..200 {
        let r = agent.get(&path).await;
        assert_eq!(r.status, StatusCode::OK);
        if r.json()["SecretString"] == "after" {
            fresh = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fresh = fresh.expect("the fresh value returns after recovery");
    assert_ne!(fresh.header("x-cache"), Some("stale"));
    agent.stop().await;
}

#[tokio::test]
async fn outage_serves_stale_with_bounded_retries() {
    outage_with(Fault::Drop).await;
}

#[tokio::test]
async fn throttling_storm_serves_stale_with_bounded_retries() {
    outage_with(Fault::Error(400, "ThrottlingException")).await;
}

#[tokio::test]
async fn server_errors_serve_stale_with_bounded_retries() {
    outage_with(Fault::Error(500, "InternalServiceError")).await;
}

#[tokio::test]
async fn no_answers_are_not_masked() {
    let agent = TestAgent::start(|_| {}).await;
    let path = cached(&agent, "v").await;
    agent
        .proxy
        .set_fault(Fault::Error(400, "AccessDeniedException"), None);
    agent.clock.advance(Duration::from_secs(301));
    let r = agent.get(&path).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["__type"], "AccessDeniedException");
    agent.stop().await;
}

#[tokio::test]
async fn stale_serving_can_be_turned_off() {
    let agent = TestAgent::start(|c| c.ignore_transient_errors = false).await;
    let path = cached(&agent, "v").await;
    agent.proxy.set_fault(Fault::Drop, None);
    agent.clock.advance(Duration::from_secs(301));
    assert_eq!(agent.get(&path).await.status, StatusCode::BAD_GATEWAY);
    agent.stop().await;
}

#[tokio::test]
async fn stale_stops_at_max_staleness() {
    let agent = TestAgent::start(|c| c.max_stale = Duration::from_secs(60)).await;
    let path = cached(&agent, "v").await;
    agent.proxy.set_fault(Fault::Drop, None);
    agent.clock.advance(Duration::from_secs(330));
    assert_eq!(agent.get(&path).await.header("x-cache"), Some("stale"));
    agent.clock.advance(Duration::from_secs(40)); // 70 s past the TTL
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(agent.get(&path).await.status, StatusCode::BAD_GATEWAY);
    agent.stop().await;
}

#[tokio::test]
async fn slow_backend_504_for_new_keys_and_stale_for_cached() {
    let agent = TestAgent::start(|c| c.secrets_timeout = Duration::from_millis(300)).await;
    let path = cached(&agent, "cached").await;
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_secs(2)), None);
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", unique("never")))
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    agent.clock.advance(Duration::from_secs(301));
    let r = agent.get(&path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-cache"), Some("stale"));
    assert_eq!(r.json()["SecretString"], "cached");
    // Later reads do not wait for the slow backend at all.
    let started = Instant::now();
    let r = agent.get(&path).await;
    assert_eq!(r.header("x-cache"), Some("stale"));
    assert!(started.elapsed() < Duration::from_millis(300));
    agent.stop().await;
}

/// With a slow backend and continuous reads, nobody after the first read waits on the backend,
/// and a rotation shows up within one TTL with no error.
#[tokio::test]
async fn refresh_ahead_keeps_readers_off_the_backend() {
    // A refresh after rotation is two calls (DescribeSecret, GetSecretValue): 2 × 300 ms of
    // real time, 12 steps of 50 ms, well inside the 20 s between the refresh point (80 s) and
    // expiry (100 s).
    const DELAY: Duration = Duration::from_millis(300);
    let agent = TestAgent::start(|c| c.secrets_ttl = Duration::from_secs(100)).await;
    let name = unique("res-ahead");
    create_secret(&name, "v1").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.header("x-cache"), Some("miss"));
    agent.proxy.set_fault(Fault::Delay(DELAY), None);
    let mut rotated_at = None;
    let mut saw_new = false;
    // Two TTLs of reads, one per (clock) second, 50 ms of real time apart.
    for second in 1..=200 {
        if second == 30 {
            put_secret(&name, "v2").await;
            rotated_at = Some(second);
        }
        agent.clock.advance(Duration::from_secs(1));
        let started = Instant::now();
        let r = agent.get(&path).await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-cache"), Some("hit"), "second {second}");
        assert!(took < DELAY, "second {second}: a reader waited {took:?}");
        if r.json()["SecretString"] == "v2" && !saw_new {
            saw_new = true;
            assert!(
                second - rotated_at.unwrap() <= 100,
                "new value within one TTL"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_new, "rotation was picked up");
    assert!(agent.proxy.count("DescribeSecret") >= 2);
    agent.stop().await;
}

#[tokio::test]
async fn not_found_is_cached_briefly() {
    let agent = TestAgent::start(|c| c.negative_ttl = Duration::from_secs(5)).await;
    let path = format!("/secretsmanager/get?secretId={}", unique("res-missing"));
    for _ in 0..20 {
        assert_eq!(
            agent.get(&path).await.json()["__type"],
            "ResourceNotFoundException"
        );
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 1);
    agent.clock.advance(Duration::from_secs(6));
    agent.get(&path).await;
    assert_eq!(agent.proxy.count("GetSecretValue"), 2);
    agent.stop().await;
}

#[tokio::test]
async fn prefetch_batches_secrets_and_reads_wait_for_it() {
    let agent = TestAgent::start(|_| {}).await;
    let mut names = Vec::new();
    for i in 0..25 {
        let n = unique(&format!("res-pre{i}"));
        create_secret(&n, &format!("value-{i}")).await;
        names.push(n);
    }
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_millis(200)), None);
    agent
        .app
        .cache
        .prefetch(names.clone(), vec![], Duration::ZERO);
    // A read during the prefetch waits for it instead of fetching on its own.
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", names[3]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["SecretString"], "value-3");
    for (i, n) in names.iter().enumerate() {
        let r = agent
            .get(&format!("/secretsmanager/get?secretId={n}"))
            .await;
        assert_eq!(r.json()["SecretString"], format!("value-{i}"));
        assert_eq!(r.header("x-cache"), Some("hit"));
    }
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 2, "20 + 5");
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    agent.stop().await;
}

/// Creates a string secret carrying `tag_keys` (each with the value "v").
async fn create_tagged(name: &str, value: &str, tag_keys: &[&str]) {
    let mut req = secrets_client()
        .await
        .create_secret()
        .name(name)
        .secret_string(value);
    for k in tag_keys {
        req = req.tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(*k)
                .value("v")
                .build(),
        );
    }
    req.send().await.expect("create tagged secret");
}

/// A tag key no other test's key starts with (AWS matches tag keys by prefix).
fn unique_tag(prefix: &str) -> String {
    format!("{}-end", unique(prefix))
}

/// Issue 19: of 30 secrets, the 10 carrying the tag key are cached before the first read, by
/// one BatchGetSecretValue page; reading them calls no GetSecretValue.
#[tokio::test]
async fn tag_prefetch_caches_only_the_tagged_secrets() {
    let agent = TestAgent::start(|_| {}).await;
    let tag = unique_tag("team");
    let mut names = Vec::new();
    for i in 0..30 {
        let n = unique(&format!("res-tag{i}"));
        let tags: &[&str] = if i % 3 == 0 { &[tag.as_str()] } else { &[] };
        create_tagged(&n, &format!("value-{i}"), tags).await;
        names.push(n);
    }
    agent
        .app
        .cache
        .prefetch_tagged(None, vec![tag], 800, Duration::ZERO);
    assert!(agent.app.cache.settle(Duration::from_secs(30)).await);
    assert_eq!(
        agent.proxy.count("BatchGetSecretValue"),
        1,
        "10 secrets: one page"
    );
    for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let r = agent
            .get(&format!("/secretsmanager/get?secretId={n}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["SecretString"], format!("value-{i}"));
        assert_eq!(r.header("x-cache"), Some("hit"), "{n}");
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    // An untagged secret was not prefetched.
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", names[1]))
        .await;
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(agent.proxy.count("GetSecretValue"), 1);
    agent.stop().await;
}

/// Issue 19: two tag keys are two paginated sequences (AWS ANDs the filters of one call): 25
/// secrets under one key are 2 pages (20 + 5), 3 under the other 1 page; a secret with both
/// keys is cached once.
#[tokio::test]
async fn tag_prefetch_follows_pages_for_each_key() {
    let agent = TestAgent::start(|_| {}).await;
    let (a, b) = (unique_tag("app"), unique_tag("env"));
    let mut names = Vec::new();
    for i in 0..26 {
        let n = unique(&format!("res-page{i}"));
        let tags: Vec<&str> = match i {
            0..=22 => vec![a.as_str()],
            23 | 24 => vec![a.as_str(), b.as_str()],
            _ => vec![b.as_str()],
        };
        create_tagged(&n, &format!("value-{i}"), &tags).await;
        names.push(n);
    }
    agent
        .app
        .cache
        .prefetch_tagged(None, vec![a, b], 800, Duration::ZERO);
    assert!(agent.app.cache.settle(Duration::from_secs(30)).await);
    assert_eq!(
        agent.proxy.count("BatchGetSecretValue"),
        3,
        "2 pages + 1 page"
    );
    for n in &names {
        let r = agent
            .get(&format!("/secretsmanager/get?secretId={n}"))
            .await;
        assert_eq!(r.header("x-cache"), Some("hit"), "{n}");
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    agent.stop().await;
}

#[tokio::test]
async fn slow_clients_do_not_block_others_and_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start(|c| c.header_timeout = Duration::from_secs(1)).await;
    let addr = agent.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /pi").await.unwrap();
        slow.push(s);
    }
    // Keep dribbling one byte at a time while others are served.
    let started = Instant::now();
    for _ in 0..5 {
        for s in slow.iter_mut() {
            let _ = s.write_all(b"n").await;
        }
        let r = get(&format!("{}/ping", agent.base), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the header timeout the slow connections are closed by the agent.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    let mut closed = 0;
    for mut s in slow {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, 50);
    agent.stop().await;
}

#[tokio::test]
async fn metrics_count_hits_misses_and_calls() {
    let agent = TestAgent::start(|_| {}).await;
    let path = cached(&agent, "m").await;
    agent.get(&path).await;
    agent.get(&path).await;
    let r = agent.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(text.contains("secrets_agent_cache_hits_total 2"), "{text}");
    assert!(
        text.contains("secrets_agent_cache_misses_total 1"),
        "{text}"
    );
    assert!(text.contains(
        "secrets_agent_backend_calls_total{operation=\"GetSecretValue\",outcome=\"ok\"} 1"
    ));
    assert!(text
        .contains("secrets_agent_backend_latency_seconds_count{operation=\"GetSecretValue\"} 1"));
    assert!(text.contains("secrets_agent_cache_entries 1"));
    // Metrics need the token.
    let r = get(&format!("{}/metrics", agent.base), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    agent.stop().await;
}

#[tokio::test]
async fn a_busy_connection_outlives_the_header_timeout() {
    let agent = TestAgent::start(|c| c.header_timeout = Duration::from_millis(500)).await;
    let name = unique("res-busy");
    create_secret(&name, "patience").await;
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_millis(1500)), None);
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={name}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["SecretString"], "patience");
    agent.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_serves_again() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start(|c| c.header_timeout = Duration::from_millis(500)).await;
    let addr = agent.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = vec![0u8; 1024];
    for round in 0..2 {
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        // Idle for longer than the header timeout: that timeout is for a request's head, not
        // for the wait between requests.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    agent.stop().await;
}

/// Issue 20.2: a role that allows only GetSecretValue (all the AWS extension needs). The
/// DescribeSecret probe at expiry is denied: the caller never sees it, the value is read again
/// with GetSecretValue, and the probe is not tried again.
#[tokio::test]
async fn a_denied_describe_secret_falls_back_to_get_secret_value() {
    let agent = TestAgent::start(|_| {}).await;
    agent.proxy.set_fault(
        Fault::Error(400, "AccessDeniedException"),
        Some("DescribeSecret"),
    );
    let path = cached(&agent, "least-privilege").await;
    for round in 1..=3 {
        agent.clock.advance(Duration::from_secs(301));
        let r = agent.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.text());
        assert_eq!(r.json()["SecretString"], "least-privilege");
    }
    assert_eq!(
        agent.proxy.count("DescribeSecret"),
        1,
        "denied once, then skipped"
    );
    assert_eq!(
        agent.proxy.count("GetSecretValue"),
        4,
        "first read + one per expiry"
    );
    let metrics = agent.get("/metrics").await.text();
    assert!(
        metrics.contains("secrets_agent_read_errors_total 0"),
        "{metrics}"
    );
    agent.stop().await;
}

/// Issue 20.2: prefetch with BatchGetSecretValue denied reads each secret on its own, and does
/// not try the batch again on the next prefetch.
#[tokio::test]
async fn a_denied_batch_prefetch_falls_back_to_single_reads() {
    let agent = TestAgent::start(|_| {}).await;
    agent.proxy.set_fault(
        Fault::Error(400, "AccessDeniedException"),
        Some("BatchGetSecretValue"),
    );
    let names: Vec<String> = (0..3).map(|i| unique(&format!("res-batch{i}"))).collect();
    for n in &names {
        create_secret(n, n).await;
    }
    agent
        .app
        .cache
        .prefetch(names[..2].to_vec(), Vec::new(), Duration::ZERO);
    for n in &names[..2] {
        let r = agent
            .get(&format!("/secretsmanager/get?secretId={n}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["SecretString"], n.as_str());
    }
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(agent.proxy.count("GetSecretValue"), 2);
    agent
        .app
        .cache
        .prefetch(names[2..].to_vec(), Vec::new(), Duration::ZERO);
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", names[2]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        agent.proxy.count("BatchGetSecretValue"),
        1,
        "not tried again"
    );
    assert_eq!(agent.proxy.count("GetSecretValue"), 3);
    agent.stop().await;
}
