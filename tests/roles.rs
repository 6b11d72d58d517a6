//! `roleArn`: roles assumed with STS, end to end against moto behind the counting proxy.
//!
//! moto serves STS and answers requests signed with an assumed role's credentials from the
//! role's own account, so the same secret name in two accounts holds two values, as in a real
//! cross-account set-up. moto assumes any role (it checks no trust policy): the proxy answers
//! AssumeRole AccessDenied for the roles a test denies, as AWS does.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

const ROLE_A: &str = "arn:aws:iam::111111111111:role/reader-a";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/reader-b";

/// SDK configuration signing as `role` on moto directly (the test's own writes).
async fn as_role(role: &str) -> aws_config::SdkConfig {
    let base = sdk_config(moto_url()).await;
    let out = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(role)
        .role_session_name("test-setup")
        .send()
        .await
        .expect("assume role on moto");
    let c = out.credentials.expect("credentials");
    base.to_builder()
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
        .build()
}

/// Creates `name` with `value` in the account of `role`.
async fn create_secret_as(role: &str, name: &str, value: &str) {
    create_tagged_as(role, name, value, None).await;
}

/// Creates `name` with `value` in the account of `role`, carrying `tag_key` when given.
async fn create_tagged_as(role: &str, name: &str, value: &str, tag_key: Option<&str>) {
    let tag = tag_key.map(|k| {
        aws_sdk_secretsmanager::types::Tag::builder()
            .key(k)
            .value("v")
            .build()
    });
    aws_sdk_secretsmanager::Client::new(&as_role(role).await)
        .create_secret()
        .name(name)
        .secret_string(value)
        .set_tags(tag.map(|t| vec![t]))
        .send()
        .await
        .expect("create secret in the role's account");
}

fn get_as(name: &str, role: &str) -> String {
    format!(
        "/secretsmanager/get?secretId={}&roleArn={}",
        enc(name),
        enc(role)
    )
}

#[tokio::test]
async fn the_same_secret_id_under_two_roles_is_two_entries_read_with_each_roles_keys() {
    let agent = TestAgent::start(|_| {}).await;
    let name = unique("roles/db");
    create_secret(&name, "own").await;
    create_secret_as(ROLE_A, &name, "in-a").await;
    create_secret_as(ROLE_B, &name, "in-b").await;

    for _ in 0..2 {
        let own = agent
            .get(&format!("/secretsmanager/get?secretId={}", enc(&name)))
            .await;
        assert_eq!(own.json()["SecretString"], "own");
        let a = agent.get(&get_as(&name, ROLE_A)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.json()["SecretString"], "in-a");
        assert!(a.json()["ARN"].as_str().unwrap().contains(":111111111111:"));
        let b = agent
            .get(&format!("/v1/{}?roleArn={}", enc(&name), enc(ROLE_B)))
            .await;
        assert_eq!(b.status, StatusCode::OK, "{}", b.text());
        assert_eq!(b.json()["SecretString"], "in-b");
    }
    let b = agent
        .get(&format!(
            "/secretsmanager/value?secretId={}&roleArn={}",
            enc(&name),
            enc(ROLE_B)
        ))
        .await;
    assert_eq!(b.text(), "in-b");
    assert_eq!(b.header("x-cache"), Some("hit"), "the same entry as /v1/");

    // One AssumeRole per role; one GetSecretValue per (role, secret), each signed with its
    // own access key: the agent's ("testing") and one per assumed role.
    assert_eq!(agent.proxy.count("AssumeRole"), 2);
    let per_key = agent.proxy.count_by_key("GetSecretValue");
    assert_eq!(per_key.len(), 3, "{per_key:?}");
    assert!(per_key.iter().all(|(_, n)| *n == 1), "{per_key:?}");
    assert!(per_key.iter().any(|(k, _)| k == "testing"), "{per_key:?}");
    let assume_keys = agent.proxy.count_by_key("AssumeRole");
    assert_eq!(
        assume_keys,
        vec![("testing".to_string(), 2)],
        "STS is called as the agent"
    );
    agent.stop().await;
}

#[tokio::test]
async fn parameters_are_read_as_the_role_too() {
    let agent = TestAgent::start(|_| {}).await;
    let name = format!("/{}", unique("roles/param"));
    aws_sdk_ssm::Client::new(&as_role(ROLE_A).await)
        .put_parameter()
        .name(&name)
        .value("param-in-a")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let r = agent
        .get(&format!(
            "/systemsmanager/parameters/get?name={}&roleArn={}",
            enc(&name),
            enc(ROLE_A)
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["Parameter"]["Value"], "param-in-a");
    // Not in the agent's own account.
    let own = agent
        .get(&format!(
            "/systemsmanager/parameters/get?name={}",
            enc(&name)
        ))
        .await;
    assert_eq!(own.status, StatusCode::BAD_REQUEST, "{}", own.text());
    assert_eq!(own.json()["__type"], "ParameterNotFound");
    agent.stop().await;
}

#[tokio::test]
async fn role_credentials_are_renewed_five_minutes_before_they_expire() {
    // moto's credentials last STS's default hour. TTL 0: every read goes to AWS.
    let agent = TestAgent::start(|c| c.secrets_ttl = Duration::ZERO).await;
    let name = unique("roles/renew");
    create_secret_as(ROLE_A, &name, "v").await;
    let path = get_as(&name, ROLE_A);
    let read = || agent.get(&path);

    assert_eq!(read().await.status, StatusCode::OK);
    agent.clock.advance(Duration::from_secs(3200)); // before the renewal point (~3300 s)
    assert_eq!(read().await.status, StatusCode::OK);
    assert_eq!(
        agent.proxy.count("AssumeRole"),
        1,
        "still the first credentials"
    );
    agent.clock.advance(Duration::from_secs(200)); // past it, before expiry
    assert_eq!(read().await.status, StatusCode::OK);
    assert_eq!(read().await.status, StatusCode::OK);
    assert_eq!(agent.proxy.count("AssumeRole"), 2, "renewed once");

    // Reads before the renewal used the first key, those after it the second.
    let per_key = agent.proxy.count_by_key("GetSecretValue");
    let counts: Vec<u64> = per_key.iter().map(|(_, n)| *n).collect();
    assert_eq!(per_key.len(), 2, "{per_key:?}");
    assert_eq!(counts.iter().sum::<u64>(), 4, "{per_key:?}");
    assert!(counts.contains(&2), "{per_key:?}");
    agent.stop().await;
}

#[tokio::test]
async fn allowed_roles_refuses_any_other_role_without_calling_sts() {
    let agent = TestAgent::start(|c| c.allowed_roles = vec![ROLE_A.to_string()]).await;
    let name = unique("roles/allowed");
    create_secret_as(ROLE_A, &name, "a").await;

    let r = agent.get(&get_as(&name, ROLE_B)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["__type"], "AccessDeniedException");
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(ROLE_B) && msg.contains("allowed_roles"),
        "{msg}"
    );
    assert_eq!(agent.proxy.count("AssumeRole"), 0);

    let r = agent.get(&get_as(&name, ROLE_A)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Not a role ARN at all: 400 naming the parameter.
    let r = agent.get(&get_as(&name, "arn:aws:iam::1:user/x")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("roleArn"));
    agent.stop().await;
}

#[tokio::test]
async fn sts_access_denied_is_a_403_naming_the_role_and_holds_no_place() {
    let agent = TestAgent::start(|c| c.max_roles = 1).await;
    let name = unique("roles/denied");
    create_secret_as(ROLE_B, &name, "b").await;
    agent.proxy.deny_role(ROLE_A);

    let r = agent.get(&get_as(&name, ROLE_A)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["__type"], "AccessDeniedException");
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(ROLE_A) && msg.contains("AccessDenied") && msg.contains("trust policy"),
        "{msg}"
    );
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);

    // The refused role took no place: with max_roles = 1 another role still works.
    let r = agent.get(&get_as(&name, ROLE_B)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    agent.stop().await;
}

#[tokio::test]
async fn past_max_roles_a_new_role_is_refused_and_held_roles_keep_working() {
    let agent = TestAgent::start(|c| c.max_roles = 1).await;
    let name = unique("roles/max");
    create_secret_as(ROLE_A, &name, "a").await;

    assert_eq!(
        agent.get(&get_as(&name, ROLE_A)).await.status,
        StatusCode::OK
    );
    let r = agent.get(&get_as(&name, ROLE_B)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["__type"], "MaxRolesExceeded");
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(ROLE_B) && msg.contains("max_roles = 1"),
        "{msg}"
    );

    let r = agent
        .get(&format!("{}&refreshNow=true", get_as(&name, ROLE_A)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(agent.proxy.count("AssumeRole"), 1);
    agent.stop().await;
}

#[tokio::test]
async fn prefetch_reads_each_roles_secrets_in_one_batch_signed_as_that_role() {
    let agent = TestAgent::start(|_| {}).await;
    let names: Vec<String> = (0..3).map(|i| unique(&format!("roles/pre{i}"))).collect();
    for n in &names {
        create_secret_as(ROLE_A, n, "pre-a").await;
        create_secret_as(ROLE_B, n, "pre-b").await;
    }
    agent
        .app
        .cache
        .prefetch_as(ROLE_A.into(), names.clone(), Duration::ZERO);
    agent
        .app
        .cache
        .prefetch_as(ROLE_B.into(), names.clone(), Duration::ZERO);
    assert!(agent.app.cache.settle(Duration::from_secs(30)).await);

    let batches = agent.proxy.count_by_key("BatchGetSecretValue");
    assert_eq!(batches.len(), 2, "one batch per role: {batches:?}");
    assert!(batches.iter().all(|(_, n)| *n == 1), "{batches:?}");
    for n in &names {
        let r = agent.get(&get_as(n, ROLE_B)).await;
        assert_eq!(r.header("x-cache"), Some("hit"));
        assert_eq!(r.json()["SecretString"], "pre-b");
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    agent.stop().await;
}

/// Issue 19: a tag filter naming a role (3.x `filter_tags = [{ key, role_arn }]`) prefetches
/// the tagged secrets of the role's account only, in one BatchGetSecretValue signed as the
/// role, cached under the role: reads with that roleArn are hits; the same names under the
/// other role and the agent's own credentials are separate entries, left to be read on demand.
#[tokio::test]
async fn a_tag_filter_with_a_role_prefetches_the_roles_tagged_secrets_signed_as_it() {
    let agent = TestAgent::start(|_| {}).await;
    let tag = format!("{}-end", unique("roles-team"));
    let names: Vec<String> = (0..6).map(|i| unique(&format!("roles/tag{i}"))).collect();
    for (i, n) in names.iter().enumerate() {
        let tagged = (i % 2 == 0).then_some(tag.as_str());
        create_tagged_as(ROLE_A, n, &format!("a-{i}"), tagged).await;
        create_tagged_as(ROLE_B, n, &format!("b-{i}"), tagged).await;
    }
    create_secret(&names[0], "own").await;
    agent
        .app
        .cache
        .prefetch_tagged(Some(ROLE_A.into()), vec![tag], 800, Duration::ZERO);
    assert!(agent.app.cache.settle(Duration::from_secs(30)).await);

    assert_eq!(
        agent.proxy.count_by_key("AssumeRole"),
        vec![("testing".to_string(), 1)],
        "one AssumeRole, as the agent"
    );
    let batches = agent.proxy.count_by_key("BatchGetSecretValue");
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_ne!(batches[0].0, "testing", "signed as the role: {batches:?}");
    assert_eq!(batches[0].1, 1, "3 secrets: one page");
    for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let r = agent.get(&get_as(n, ROLE_A)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["SecretString"], format!("a-{i}"));
        assert_eq!(r.header("x-cache"), Some("hit"), "{n}");
    }
    assert_eq!(agent.proxy.count("GetSecretValue"), 0);
    // Untagged, another role, the agent's own: not prefetched, each read once, on demand.
    let untagged = agent.get(&get_as(&names[1], ROLE_A)).await;
    assert_eq!(untagged.header("x-cache"), Some("miss"));
    let other_role = agent.get(&get_as(&names[0], ROLE_B)).await;
    assert_eq!(other_role.json()["SecretString"], "b-0");
    assert_eq!(other_role.header("x-cache"), Some("miss"));
    let own = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&names[0])))
        .await;
    assert_eq!(own.json()["SecretString"], "own");
    assert_eq!(own.header("x-cache"), Some("miss"));
    assert_eq!(agent.proxy.count("GetSecretValue"), 3);
    assert_eq!(agent.proxy.count("AssumeRole"), 2);
    agent.stop().await;
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_current_credentials_until_they_expire() {
    let agent = TestAgent::start(|c| c.secrets_ttl = Duration::ZERO).await;
    let name = unique("roles/renew-fails");
    create_secret_as(ROLE_A, &name, "v").await;
    let path = get_as(&name, ROLE_A);

    assert_eq!(agent.get(&path).await.status, StatusCode::OK);
    // The trust policy changes: renewals are refused from now on.
    agent.proxy.deny_role(ROLE_A);
    agent.clock.advance(Duration::from_secs(3400)); // past the renewal point
    let r = agent.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(agent.proxy.count("AssumeRole"), 2, "one refused renewal");
    // Not retried on every read: the next try is up to 30 s later.
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);
    assert_eq!(agent.proxy.count("AssumeRole"), 2);
    agent.clock.advance(Duration::from_secs(31));
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);
    assert_eq!(agent.proxy.count("AssumeRole"), 3);

    agent.clock.advance(Duration::from_secs(300)); // past expiry
    let r = agent.get(&path).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains(ROLE_A));
    agent.stop().await;
}

/// Issue 22.4 with roles: `/secretsmanager/batch?...&roleArn=` reads every id as the role, in one
/// BatchGetSecretValue, into the role's own cache entries (a single read as the role is a hit).
#[tokio::test]
async fn the_batch_route_reads_as_the_role() {
    let agent = TestAgent::start(|_| {}).await;
    let a = unique("roles/batch-a");
    let b = unique("roles/batch-b");
    for n in [&a, &b] {
        create_secret(n, "own").await;
        create_secret_as(ROLE_A, n, "in-a").await;
    }
    agent.proxy.reset_counts();
    let r = agent
        .get(&format!(
            "/secretsmanager/batch?secretId={}&secretId={}&roleArn={}",
            enc(&a),
            enc(&b),
            enc(ROLE_A)
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let values = r.json()["SecretValues"].as_array().unwrap().clone();
    assert_eq!(values.len(), 2, "{}", r.text());
    assert!(values.iter().all(|v| v["SecretString"] == "in-a"));
    assert_eq!(agent.proxy.count("AssumeRole"), 1);
    assert_eq!(agent.proxy.count("BatchGetSecretValue"), 1);
    let single = agent.get(&get_as(&a, ROLE_A)).await;
    assert_eq!(single.header("x-cache"), Some("hit"));
    let own = agent
        .get(&format!("/secretsmanager/get?secretId={}", enc(&a)))
        .await;
    assert_eq!(
        own.json()["SecretString"],
        "own",
        "the agent's own entry is apart"
    );
    agent.stop().await;
}
