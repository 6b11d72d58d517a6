//! The webhook's review of single pods, without a socket.

use super::asked::is_quantity;
use super::*;

fn settings() -> Settings {
    Settings {
        image: "secrets-agent:test".into(),
        binary: "/usr/local/bin/secrets-agent".into(),
        namespace: Some("secrets-agent".into()),
    }
}

fn review_of(annotations: Value, containers: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "operation": "CREATE",
            "namespace": "default",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "p", "annotations": annotations },
                "spec": { "containers": containers },
            },
        },
    }))
    .unwrap()
}

fn app() -> Value {
    json!([{ "name": "app", "image": "app:1", "command": ["/app"], "args": ["--serve"],
             "env": [{ "name": "DB", "value": "awssm:db#password" }] }])
}

#[test]
fn unknown_keys_are_denied_by_name() {
    let body = review_of(
        json!({ "secrets-agent.io/inject": "true", "secrets-agent.io/moed": "env" }),
        app(),
    );
    let (answer, outcome) = review(&body, &settings()).unwrap();
    assert_eq!(answer["response"]["allowed"], json!(false));
    let Outcome::Denied(m) = outcome else {
        panic!()
    };
    assert!(m.contains("secrets-agent.io/moed"), "{m}");
}

#[test]
fn env_mode_wraps_the_command_and_keeps_args() {
    let body = review_of(
        json!({ "secrets-agent.io/inject": "true", "secrets-agent.io/mode": "env",
                "secrets-agent.io/ignore-missing-secrets": "true" }),
        app(),
    );
    let (answer, outcome) = review(&body, &settings()).unwrap();
    assert_eq!(outcome, Outcome::Mutated([Mode::Env].into()));
    let patch =
        aws_smithy_types::base64::decode(answer["response"]["patch"].as_str().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod: Value =
        serde_json::from_slice::<Value>(&body).unwrap()["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        json!([
            "/run/secrets-agent-bin/secrets-agent",
            "exec",
            "--ignore-missing",
            "--",
            "/app"
        ])
    );
    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["--serve"]));
    assert_eq!(pod["spec"]["initContainers"][0]["name"], json!(INSTALL));
}

#[test]
fn a_container_with_placeholders_and_no_command_is_denied_in_env_mode() {
    let body = review_of(
        json!({ "secrets-agent.io/inject": "true", "secrets-agent.io/mode": "env" }),
        json!([
            { "name": "web", "image": "nginx", "env": [{ "name": "P", "value": "awssm:db" }] },
            { "name": "mesh-proxy", "image": "envoy" },
        ]),
    );
    let (_, outcome) = review(&body, &settings()).unwrap();
    let Outcome::Denied(m) = outcome else {
        panic!()
    };
    assert!(
        m.contains("container \"web\" has placeholders in P")
            && m.contains("set the container's command"),
        "{m}"
    );
    assert!(!m.contains("mesh-proxy"), "{m}");
}

#[test]
fn pods_not_asking_with_placeholders_get_a_warning() {
    let body = review_of(json!({}), app());
    let (answer, outcome) = review(&body, &settings()).unwrap();
    assert_eq!(outcome, Outcome::Unchanged("not asked"));
    let w = answer["response"]["warnings"][0].as_str().unwrap();
    assert!(
        w.contains("container \"app\" has placeholders in DB")
            && w.contains("secrets-agent.io/inject"),
        "{w}"
    );
}

#[test]
fn pods_not_asking_and_other_objects_are_left_alone() {
    let body = review_of(json!({}), app());
    let (answer, outcome) = review(&body, &settings()).unwrap();
    assert_eq!(outcome, Outcome::Unchanged("not asked"));
    assert!(answer["response"].get("patch").is_none());
    let skip = review_of(
        json!({ "secrets-agent.io/inject": "skip", "secrets-agent.io/x": "1" }),
        app(),
    );
    assert_eq!(
        review(&skip, &settings()).unwrap().1,
        Outcome::Unchanged("not asked")
    );
}

#[test]
fn malformed_reviews_are_errors_that_say_what_to_send() {
    assert!(review(b"{", &settings()).unwrap_err().contains("not JSON"));
    let e = review(
        br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
        &settings(),
    )
    .unwrap_err();
    assert!(e.contains("admissionReviewVersions"), "{e}");
    let e = review(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
        &settings(),
    )
    .unwrap_err();
    assert!(e.contains("uid"), "{e}");
}

#[test]
fn quantities() {
    for ok in ["64Mi", "100m", "1", "0.5", "2Gi"] {
        assert!(is_quantity(ok), "{ok}");
    }
    for bad in ["", "Mi", "64 Mi", "64MB", "-1"] {
        assert!(!is_quantity(bad), "{bad}");
    }
}
