//! What a hostile or broken AWS side cannot do to the agent: answers AWS never sends (empty,
//! HTML, cut short, endless, oversized, redirects) are refused as unusable and the cached value
//! is served; a secret scheduled for deletion stops being served within one TTL; a dropped
//! connection is reported as one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

const GARBAGE: [Garbage; 6] = [
    Garbage::Empty,
    Garbage::Html,
    Garbage::Truncated,
    Garbage::Endless,
    Garbage::Oversized,
    Garbage::Redirect,
];

#[tokio::test]
async fn answers_aws_never_sends_are_refused_and_the_cached_value_served() {
    let agent = TestAgent::start(|_| {}).await;
    for g in GARBAGE {
        let cached = unique("garbage-cached");
        create_secret(&cached, "good-value").await;
        let cached_path = format!("/secretsmanager/get?secretId={cached}");
        assert_eq!(agent.get(&cached_path).await.status, StatusCode::OK);
        let fresh = unique("garbage-new");
        create_secret(&fresh, "never-served").await;
        let fresh_path = format!("/secretsmanager/get?secretId={fresh}");

        agent.proxy.set_fault(Fault::Garbage(g), None);
        agent.clock.advance(Duration::from_secs(301)); // the cached one expired

        // The good value is served stale, and stays cached.
        for _ in 0..2 {
            let r = agent.get(&cached_path).await;
            assert_eq!(r.status, StatusCode::OK, "{g:?}: {}", r.text());
            assert_eq!(r.header("x-cache"), Some("stale"), "{g:?}");
            assert_eq!(r.json()["SecretString"], "good-value", "{g:?}");
        }
        // With nothing cached: 502 naming the id and the class of failure, never a 200 of
        // garbage, never a timeout spent reading an endless body.
        let r = agent.get(&fresh_path).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{g:?}: {}", r.text());
        let body = r.json();
        assert_eq!(body["__type"], "BadGatewayException", "{g:?}");
        let message = body["message"].as_str().unwrap();
        if g == Garbage::Truncated {
            // Cut on the wire: reported as a cut connection.
            assert!(message.contains("was cut"), "{g:?}: {message}");
        } else {
            assert!(message.contains(&fresh), "{g:?}: {message}");
            assert!(message.contains("could not be used"), "{g:?}: {message}");
        }
        assert!(!message.contains("credentials"), "{g:?}: {message}");
        assert!(!message.contains("never-served"), "{g:?}: {message}");

        agent.proxy.clear_fault();
        agent.clock.advance(Duration::from_secs(120)); // past the backoff
        let r = agent.get(&fresh_path).await;
        assert_eq!(r.json()["SecretString"], "never-served", "{g:?}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_is_reported_as_one() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("dropped");
    create_secret(&name, "v").await;
    agent.proxy.set_fault(Fault::Drop, None);
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={name}"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("connection failed or was cut"),
        "{message}"
    );
    assert!(!message.contains("credentials"), "{message}");
    agent.stop().await;
}

/// AWS refuses GetSecretValue for a secret scheduled for deletion; DescribeSecret still answers
/// (with a DeletedDate and the same version). The agent stops serving it at the next expiry.
#[tokio::test]
async fn a_secret_scheduled_for_deletion_is_refused_within_one_ttl() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("deleted");
    create_secret(&name, "old-credential").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);
    secrets_client()
        .await
        .delete_secret()
        .secret_id(&name)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    // Within the TTL the cached value is still what the agent may serve.
    assert_eq!(agent.get(&path).await.header("x-cache"), Some("hit"));
    agent.clock.advance(Duration::from_secs(301));
    for _ in 0..2 {
        let r = agent.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let body = r.json();
        assert_eq!(body["__type"], "InvalidRequestException");
        // AWS: "...because it was marked for deletion."; moto: "...currently marked deleted."
        assert!(
            body["message"].as_str().unwrap().contains("marked"),
            "{body}"
        );
        assert!(!r.text().contains("old-credential"));
    }
    agent.stop().await;
}

/// Something that is not HTTP at all answers on the AWS endpoint (an SSH banner): the read is
/// refused as an unusable answer, not blamed on credentials.
#[tokio::test]
async fn an_answer_that_is_not_http_is_unusable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
        }
    });
    let sdk = sdk_config(&format!("http://{addr}")).await;
    let app = secrets_agent::build_app(
        &test_config(),
        &sdk,
        secrets_agent::api::token::Token::new(TOKEN),
        Arc::new(secrets_agent::cache::ManualClock::new()),
    );
    let err = app
        .cache
        .get(
            secrets_agent::backend::Key::secret("not-http", None, None),
            false,
        )
        .await
        .unwrap_err();
    match &err {
        secrets_agent::error::Error::Unusable { id, detail, .. } => {
            assert_eq!(id, "not-http");
            assert!(detail.contains("not HTTP"), "{detail}");
        }
        other => panic!("expected an unusable answer, got {other:?}"),
    }
}
