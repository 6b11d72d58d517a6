//! The AWS Parameters and Secrets Lambda Extension's parameter endpoint, against moto.

mod common;

use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;
use common::*;
use http::StatusCode;

fn path(name: &str, extra: &str) -> String {
    format!("/systemsmanager/parameters/get?name={}{extra}", enc(name))
}

#[tokio::test]
async fn string_and_string_list_in_the_extension_shape() {
    let agent = TestAgent::start(|_| {}).await;
    let name = format!("/{}/plain", unique("p"));
    put_parameter(&name, "hello", ParameterType::String).await;
    let r = agent.get(&path(&name, "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    let v = r.json();
    let p = &v["Parameter"];
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ARN",
            "DataType",
            "LastModifiedDate",
            "Name",
            "Selector",
            "SourceResult",
            "Type",
            "Value",
            "Version"
        ]
    );
    assert_eq!(p["Name"], name.as_str());
    assert_eq!(p["Type"], "String");
    assert_eq!(p["Value"], "hello");
    assert_eq!(p["Version"], 1);
    assert!(p["ARN"].as_str().unwrap().starts_with("arn:aws:ssm:"));
    assert!(p["LastModifiedDate"].as_str().unwrap().ends_with('Z'));
    assert!(v["ResultMetadata"].is_object());

    let list = format!("/{}/list", unique("p"));
    put_parameter(&list, "a,b,c", ParameterType::StringList).await;
    let r = agent.get(&path(&list, "")).await;
    assert_eq!(r.json()["Parameter"]["Type"], "StringList");
    assert_eq!(r.json()["Parameter"]["Value"], "a,b,c");
    agent.stop().await;
}

#[tokio::test]
async fn secure_string_needs_with_decryption() {
    let agent = TestAgent::start(|_| {}).await;
    let name = format!("/{}/secure", unique("p"));
    put_parameter(&name, "s3cr3t", ParameterType::SecureString).await;
    let r = agent.get(&path(&name, "")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["Parameter"]["Type"], "SecureString");
    assert_ne!(
        r.json()["Parameter"]["Value"],
        "s3cr3t",
        "encrypted form without decryption"
    );
    let r = agent.get(&path(&name, "&withDecryption=true")).await;
    assert_eq!(r.json()["Parameter"]["Value"], "s3cr3t");
    // Decrypted and encrypted answers are separate entries.
    assert_eq!(agent.proxy.count("GetParameter"), 2);
    agent.stop().await;
}

#[tokio::test]
async fn version_and_label_select() {
    let agent = TestAgent::start(|_| {}).await;
    let name = format!("/{}/versioned", unique("p"));
    put_parameter(&name, "v1", ParameterType::String).await;
    put_parameter(&name, "v2", ParameterType::String).await;
    ssm_client()
        .await
        .label_parameter_version()
        .name(&name)
        .parameter_version(1)
        .labels("stable")
        .send()
        .await
        .unwrap();
    let r = agent.get(&path(&name, "&version=1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["Parameter"]["Value"], "v1");
    assert_eq!(r.json()["Parameter"]["Version"], 1);
    let r = agent.get(&path(&name, "&label=stable")).await;
    assert_eq!(r.json()["Parameter"]["Value"], "v1");
    let r = agent.get(&path(&name, "")).await;
    assert_eq!(r.json()["Parameter"]["Value"], "v2");

    let r = agent.get(&path(&name, "&version=1&label=stable")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("version and label"));
    let r = agent.get(&path(&name, "&version=abc")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("version"));
    agent.stop().await;
}

#[tokio::test]
async fn arn_and_encoded_names() {
    let agent = TestAgent::start(|_| {}).await;
    let name = format!("/{}/with.dots_and-dashes", unique("p"));
    put_parameter(&name, "x", ParameterType::String).await;
    let first = agent.get(&path(&name, "")).await.json();
    let arn = first["Parameter"]["ARN"].as_str().unwrap().to_string();
    let r = agent.get(&path(&arn, "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["Parameter"]["Value"], "x");
    // Unencoded slashes work as well.
    let r = agent
        .get(&format!("/systemsmanager/parameters/get?name={name}"))
        .await;
    assert_eq!(r.json()["Parameter"]["Value"], "x");
    agent.stop().await;
}

#[tokio::test]
async fn secrets_manager_reference_path() {
    let agent = TestAgent::start(|_| {}).await;
    let secret = unique("ref-secret");
    create_secret(&secret, "through-ssm").await;
    let name = format!("/aws/reference/secretsmanager/{secret}");
    let r = agent.get(&path(&name, "&withDecryption=true")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["Parameter"]["Value"], "through-ssm");
    agent.stop().await;
}

#[tokio::test]
async fn errors() {
    let agent = TestAgent::start(|_| {}).await;
    let r = agent
        .get(&path(&format!("/{}/missing", unique("p")), ""))
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(r.json()["__type"], "ParameterNotFound");
    let r = agent.get("/systemsmanager/parameters/get").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("name"));
    let r = agent.get(&path("/x", "&withDecryption=yes")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("withDecryption"));
    let r = agent.get(&path("/x", "&secretId=a")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("unknown query parameter secretId"));
    agent.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_cold_requests_make_one_get_parameter() {
    let agent = TestAgent::start(|_| {}).await;
    let name = format!("/{}/hot", unique("p"));
    put_parameter(&name, "hot", ParameterType::String).await;
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_millis(300)), None);
    let url = format!("{}{}", agent.base, path(&name, ""));
    for r in concurrent_gets(&url, 50).await {
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["Parameter"]["Value"], "hot");
    }
    assert_eq!(agent.proxy.count("GetParameter"), 1);
    agent.stop().await;
}

#[tokio::test]
async fn parameter_ttl_is_its_own() {
    let agent = TestAgent::start(|c| {
        c.parameters_ttl = Duration::from_secs(10);
        c.secrets_ttl = Duration::from_secs(1000);
        c.refresh_ratio = 1.0; // no refresh-ahead: this test is about expiry
    })
    .await;
    let name = format!("/{}/ttl", unique("p"));
    put_parameter(&name, "one", ParameterType::String).await;
    agent.get(&path(&name, "")).await;
    put_parameter(&name, "two", ParameterType::String).await;
    agent.clock.advance(Duration::from_secs(9));
    assert_eq!(
        agent.get(&path(&name, "")).await.json()["Parameter"]["Value"],
        "one"
    );
    agent.clock.advance(Duration::from_secs(2));
    let r = agent.get(&path(&name, "")).await;
    assert_eq!(r.json()["Parameter"]["Value"], "two");
    assert_eq!(agent.proxy.count("GetParameter"), 2);
    agent.stop().await;
}

#[tokio::test]
async fn slow_ssm_answers_504_at_the_configured_timeout() {
    let agent = TestAgent::start(|c| c.parameters_timeout = Duration::from_millis(200)).await;
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_secs(3)), Some("GetParameter"));
    let r = agent
        .get(&path(&format!("/{}/slow", unique("p")), ""))
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("GetParameter timed out after 200 ms"));
    agent.stop().await;
}
