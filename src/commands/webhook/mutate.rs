//! One AdmissionReview in, one AdmissionReview out: what the webhook adds to an annotated pod.
//!
//! The pod is changed as JSON, then the JSON Patch is the difference between the pod before and
//! after (`json_patch::diff`), so no patch is assembled by hand. A pod that carries our
//! `status: injected` annotation was mutated already and gets no patch: mutation is idempotent.
//!
//! Annotations (prefix `secrets-agent.io/`):
//!
//! ```text
//! inject                  "true" to mutate; "skip" or "false" (or none) leaves the pod alone
//! mode                    sidecar | env | files, or a comma list (default sidecar)
//! ignore-missing-secrets  "true": env mode runs `exec --ignore-missing`
//! aws-region              AWS_REGION for what we add (and, in env mode, the app's `exec`)
//! image                   the image of what we add (default: the webhook's --image)
//! files-path              where files mode mounts the files (default /run/secrets/app)
//! file.<name>             files mode: a source written to <files-path>/<name>
//! file.<name>.{path,source,mode,uid,gid}   files mode: render's long form
//! env-probes              "true": env mode also wraps the app containers' exec probes
//! sidecar-cpu-request, sidecar-memory-request, sidecar-cpu-limit, sidecar-memory-limit
//! status                  set by the webhook: "injected"
//! ```

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::commands::render::annotations::{is_file_name, ATTRIBUTES, DEFAULT_FILES_PATH, PREFIX};

const STATUS_INJECTED: &str = "injected";

/// Inside the pod: volumes and where they are mounted.
const TOKEN_VOLUME: &str = "secrets-agent-token";
const TOKEN_DIR: &str = "/run/secrets-agent";
const TOKEN_FILE: &str = "/run/secrets-agent/token";
const BIN_VOLUME: &str = "secrets-agent-bin";
const BIN_DIR: &str = "/run/secrets-agent-bin";
const FILES_VOLUME: &str = "secrets-agent-files";
const PODINFO_VOLUME: &str = "secrets-agent-podinfo";
const PODINFO_DIR: &str = "/etc/secrets-agent/podinfo";
const AGENT_URL: &str = "http://127.0.0.1:2773";

/// The containers we add, by name.
pub const SIDECAR: &str = "secrets-agent";
pub const INSTALL: &str = "secrets-agent-install";
pub const RENDER: &str = "secrets-agent-render";
pub const WATCH: &str = "secrets-agent-files";
/// Every container and volume name we add: a pod may not hold one already.
const OUR_NAMES: [&str; 8] = [
    SIDECAR,
    INSTALL,
    RENDER,
    WATCH,
    TOKEN_VOLUME,
    BIN_VOLUME,
    FILES_VOLUME,
    PODINFO_VOLUME,
];
/// The image's user and group (USER 65532:65532).
const IMAGE_USER: u64 = 65532;
/// Credentials the EKS identity webhooks add to the app containers, copied to ours (they may
/// have run before us and not see what we add).
const IDENTITY_ENV: [&str; 6] = [
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_DEFAULT_REGION",
];
const IDENTITY_VOLUMES: [&str; 2] = ["aws-iam-token", "eks-pod-identity-token"];

/// What the webhook was started with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The image of the containers we add, unless a pod names another.
    pub image: String,
    /// The binary's path inside that image.
    pub binary: String,
    /// The webhook's own namespace: its pods are never mutated.
    pub namespace: Option<String>,
}

/// The three things a pod can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Sidecar,
    Env,
    Files,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "sidecar" => Some(Mode::Sidecar),
            "env" => Some(Mode::Env),
            "files" => Some(Mode::Files),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::Env => "env",
            Mode::Files => "files",
        }
    }
}

/// What became of one review, for the answer and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed as it is; the reason is logged.
    Unchanged(&'static str),
    /// Allowed with a patch (which may be empty).
    Mutated(BTreeSet<Mode>),
    /// Refused, with the message the user sees.
    Denied(String),
}

impl Outcome {
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Unchanged(_) => "unchanged",
            Outcome::Mutated(_) => "mutated",
            Outcome::Denied(_) => "denied",
        }
    }

    pub fn modes(&self) -> String {
        match self {
            Outcome::Mutated(m) => m.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
            _ => "none".into(),
        }
    }
}

/// Answers one AdmissionReview body: the response review and what happened, or the reason the
/// body is not a review (a 400).
pub fn review(body: &[u8], settings: &Settings) -> Result<(Value, Outcome), String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not JSON ({e}); send an admission.k8s.io/v1 AdmissionReview")
    })?;
    let api_version = review.get("apiVersion").and_then(Value::as_str);
    let kind = review.get("kind").and_then(Value::as_str);
    if (api_version, kind) != (Some("admission.k8s.io/v1"), Some("AdmissionReview")) {
        return Err(format!(
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {} and {}; \
             set admissionReviewVersions: [\"v1\"] in the MutatingWebhookConfiguration",
            api_version.unwrap_or("none"),
            kind.unwrap_or("none")
        ));
    }
    let request = review
        .get("request")
        .and_then(Value::as_object)
        .ok_or("the AdmissionReview has no request object")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or("request.uid is missing or not a string")?;

    let (outcome, patch) = decide(request, settings);
    let mut response = json!({ "uid": uid, "allowed": !matches!(outcome, Outcome::Denied(_)) });
    match (&outcome, patch) {
        (Outcome::Denied(message), _) => {
            response["status"] = json!({ "code": 400, "reason": "BadRequest", "message": message });
        }
        (_, Some(patch)) if !patch.0.is_empty() => {
            let text = serde_json::to_vec(&patch).map_err(|e| e.to_string())?;
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(aws_smithy_types::base64::encode(text));
        }
        _ => {}
    }
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    Ok((answer, outcome))
}

fn decide(
    request: &Map<String, Value>,
    settings: &Settings,
) -> (Outcome, Option<json_patch::Patch>) {
    let is_pod = request.get("kind").is_some_and(|k| {
        k.get("group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && k.get("kind").and_then(Value::as_str) == Some("Pod")
    });
    if !is_pod {
        return (Outcome::Unchanged("not a Pod"), None);
    }
    if request.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return (Outcome::Unchanged("not a CREATE"), None);
    }
    let namespace = request.get("namespace").and_then(Value::as_str);
    if namespace.is_some() && namespace == settings.namespace.as_deref() {
        return (Outcome::Unchanged("the webhook's own namespace"), None);
    }
    let Some(pod) = request.get("object").filter(|o| o.is_object()) else {
        return (
            Outcome::Denied("the review's request.object is not a Pod object".into()),
            None,
        );
    };
    let annotations = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let ours = |key: &str| {
        annotations
            .get(&format!("{PREFIX}{key}"))
            .and_then(Value::as_str)
    };
    match ours("inject") {
        Some("true") => {}
        None | Some("skip") | Some("false") => return (Outcome::Unchanged("not asked"), None),
        Some(other) => {
            return (
                Outcome::Denied(format!(
                    "annotation {PREFIX}inject = {other:?}: use \"true\" to inject or \"skip\""
                )),
                None,
            )
        }
    }
    if ours("status") == Some(STATUS_INJECTED) {
        return (Outcome::Unchanged("injected already"), None);
    }
    let asked = match Asked::from_annotations(&annotations, settings) {
        Ok(a) => a,
        Err(problems) => {
            return (
                Outcome::Denied(format!(
                    "secrets-agent cannot inject this pod: {}",
                    problems.join("; ")
                )),
                None,
            )
        }
    };
    let mut mutated = pod.clone();
    if let Err(problems) = asked.apply(&mut mutated, settings) {
        return (
            Outcome::Denied(format!(
                "secrets-agent cannot inject this pod: {}",
                problems.join("; ")
            )),
            None,
        );
    }
    let patch = json_patch::diff(pod, &mutated);
    (Outcome::Mutated(asked.modes.clone()), Some(patch))
}

/// What a pod's annotations ask for, checked.
#[derive(Debug)]
struct Asked {
    modes: BTreeSet<Mode>,
    ignore_missing: bool,
    region: Option<String>,
    image: String,
    files_path: String,
    env_probes: bool,
    resources: Value,
    /// `file.<name>.uid` / `.gid` annotations: (key, "uid"|"gid", value).
    owners: Vec<(String, &'static str, u64)>,
}

const KEYS: [&str; 13] = [
    "inject",
    "mode",
    "ignore-missing-secrets",
    "aws-region",
    "image",
    "files-path",
    "env-probes",
    "sidecar-cpu-request",
    "sidecar-memory-request",
    "sidecar-cpu-limit",
    "sidecar-memory-limit",
    "status",
    "file.",
];

impl Asked {
    fn from_annotations(
        annotations: &Map<String, Value>,
        settings: &Settings,
    ) -> Result<Asked, Vec<String>> {
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        let mut files = BTreeSet::new();
        let mut long_paths = Vec::new();
        let mut owners = Vec::new();
        for (key, value) in annotations {
            let Some(k) = key.strip_prefix(PREFIX) else {
                continue;
            };
            if let Some(rest) = k.strip_prefix("file.") {
                let (name, attribute) = rest.split_once('.').unwrap_or((rest, ""));
                if !is_file_name(name) {
                    problems.push(format!(
                        "{key}: the file name {name:?} must be letters, digits, '-' or '_'"
                    ));
                } else if attribute.is_empty() || ATTRIBUTES.contains(&attribute) {
                    files.insert(name.to_string());
                    if attribute == "uid" || attribute == "gid" {
                        match value.as_str().and_then(|v| v.trim().parse::<u64>().ok()) {
                            Some(n) => owners.push((
                                key.clone(),
                                if attribute == "uid" { "uid" } else { "gid" },
                                n,
                            )),
                            None => problems.push(format!("{key}: must be a numeric id")),
                        }
                    }
                    if attribute == "path" {
                        long_paths.push((key.clone(), value.as_str().unwrap_or("").to_string()));
                    }
                } else {
                    unknown.push(key.clone());
                }
            } else if !KEYS.contains(&k) {
                unknown.push(key.clone());
            }
        }
        if !unknown.is_empty() {
            problems.push(format!(
                "unknown annotation{} {}; known keys under {PREFIX}: {}, file.<name>[.{}]",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                KEYS[..KEYS.len() - 1].join(", "),
                ATTRIBUTES.join("|"),
            ));
        }
        let get = |k: &str| {
            annotations
                .get(&format!("{PREFIX}{k}"))
                .map(|v| v.as_str().unwrap_or("").trim().to_string())
        };
        let mut modes = BTreeSet::new();
        for m in get("mode").unwrap_or_else(|| "sidecar".into()).split(',') {
            match Mode::parse(m.trim()) {
                Some(m) => {
                    modes.insert(m);
                }
                None => problems.push(format!(
                    "{PREFIX}mode: {:?} is not a mode; use sidecar, env, files or a comma list",
                    m.trim()
                )),
            }
        }
        let mut flag = |k: &str| match get(k).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                problems.push(format!(
                    "{PREFIX}{k} = {other:?}: use \"true\" or \"false\""
                ));
                false
            }
        };
        let ignore_missing = flag("ignore-missing-secrets");
        let env_probes = flag("env-probes");
        let region = get("aws-region");
        if let Some(r) = &region {
            if r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                problems.push(format!(
                    "{PREFIX}aws-region = {r:?}: give a region name such as us-east-1"
                ));
            }
        }
        let image = get("image").unwrap_or_else(|| settings.image.clone());
        if image.is_empty() || image.contains(char::is_whitespace) {
            problems.push(format!(
                "{PREFIX}image = {image:?}: give an image reference"
            ));
        }
        let files_path = get("files-path").unwrap_or_else(|| DEFAULT_FILES_PATH.into());
        if !files_path.starts_with('/') || files_path.len() < 2 || files_path.contains("..") {
            problems.push(format!(
                "{PREFIX}files-path = {files_path:?}: give an absolute directory such as {DEFAULT_FILES_PATH}"
            ));
        }
        if modes.contains(&Mode::Files) {
            if files.is_empty() {
                problems.push(format!(
                    "mode files needs at least one {PREFIX}file.<name> annotation \
                     (e.g. {PREFIX}file.db-password: \"awssm:myapp/db#password\")"
                ));
            }
            let dir = format!("{}/", files_path.trim_end_matches('/'));
            for (key, path) in long_paths {
                if !path.starts_with(&dir) {
                    problems.push(format!(
                        "{key} = {path:?} is outside {PREFIX}files-path ({files_path}), the \
                         only memory volume the files are written to; put it under {dir}"
                    ));
                }
            }
        } else if !files.is_empty() {
            problems.push(format!(
                "{PREFIX}file.* annotations are only used by mode files; add files to {PREFIX}mode"
            ));
        }
        let mut resources = json!({
            "requests": { "cpu": "10m", "memory": "32Mi" },
            "limits": { "memory": "48Mi" },
        });
        for (key, section, resource) in [
            ("sidecar-cpu-request", "requests", "cpu"),
            ("sidecar-memory-request", "requests", "memory"),
            ("sidecar-cpu-limit", "limits", "cpu"),
            ("sidecar-memory-limit", "limits", "memory"),
        ] {
            if let Some(q) = get(key) {
                if is_quantity(&q) {
                    resources[section][resource] = json!(q);
                } else {
                    problems.push(format!(
                        "{PREFIX}{key} = {q:?}: give a Kubernetes quantity such as 64Mi or 100m"
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Asked {
                modes,
                ignore_missing,
                region,
                image,
                files_path: files_path.trim_end_matches('/').to_string(),
                env_probes,
                resources,
                owners,
            })
        } else {
            Err(problems)
        }
    }

    /// Changes `pod` as asked, or says which container cannot be changed and why.
    fn apply(&self, pod: &mut Value, settings: &Settings) -> Result<(), Vec<String>> {
        let sidecar = self.modes.contains(&Mode::Sidecar);
        let env = self.modes.contains(&Mode::Env);
        let files = self.modes.contains(&Mode::Files);
        let bin = &settings.binary;

        let app_containers = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // The application's user (its first container's, else the pod's) runs what we add, so
        // the files belong to it; root never does (our containers run as non-root).
        let user_of = |pointer: &str| {
            app_containers
                .first()
                .and_then(|c| c.pointer(pointer))
                .or_else(|| pod.pointer(&format!("/spec{pointer}")))
                .and_then(Value::as_u64)
                .filter(|u| *u != 0)
        };
        let pod_user = user_of("/securityContext/runAsUser");
        let pod_group = user_of("/securityContext/runAsGroup");
        let mut problems = Vec::new();
        if env {
            for c in &app_containers {
                let has_command = c
                    .get("command")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if !has_command {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                    problems.push(format!(
                        "container {name:?} has no command, and env mode must start the \
                         image's entrypoint under `secrets-agent exec`; the webhook does not \
                         read images from registries, so set the container's command (and \
                         args) to the image's ENTRYPOINT (and CMD)"
                    ));
                }
            }
        }
        if files {
            for c in &app_containers {
                let clash = c
                    .get("volumeMounts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|m| {
                        m.get("mountPath")
                            .and_then(Value::as_str)
                            .map(|p| p.trim_end_matches('/'))
                            == Some(self.files_path.as_str())
                    });
                if clash {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                    problems.push(format!(
                        "container {name:?} already mounts something at {}; choose another \
                         {PREFIX}files-path",
                        self.files_path
                    ));
                }
            }
        }
        if files {
            // Render runs without CHOWN (all capabilities dropped): it can only give files to
            // the user it runs as.
            for (key, want, runs_as) in self
                .owners
                .iter()
                .map(|(k, attr, v)| (k, v, if *attr == "uid" { pod_user } else { pod_group }))
            {
                if Some(*want) != runs_as.or(Some(IMAGE_USER)) {
                    problems.push(format!(
                        "{key} = {want}: the files are written by a container running as {} \
                         without the CHOWN capability, so they can only belong to it; remove \
                         the annotation, or run the pod's containers as {want}",
                        runs_as.unwrap_or(IMAGE_USER)
                    ));
                }
            }
            let ours = [TOKEN_DIR, BIN_DIR, PODINFO_DIR];
            if ours.iter().any(|p| {
                self.files_path == *p
                    || self.files_path.starts_with(&format!("{p}/"))
                    || p.starts_with(&format!("{}/", self.files_path))
            }) {
                problems.push(format!(
                    "{PREFIX}files-path = {} overlaps a folder the webhook mounts ({}); choose \
                     another",
                    self.files_path,
                    ours.join(", ")
                ));
            }
        }
        // A pod that already holds a container or volume of ours by name (a hand-written
        // sidecar, say) would be refused by the API server with duplicate names.
        let names = |key: &str| -> Vec<String> {
            pod.pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        };
        let taken: Vec<String> = names("initContainers")
            .into_iter()
            .chain(names("containers"))
            .chain(names("volumes"))
            .filter(|n| OUR_NAMES.contains(&n.as_str()))
            .collect();
        if !taken.is_empty() {
            problems.push(format!(
                "the pod already has {} named {}, which the webhook would add: remove the \
                 hand-written secrets-agent parts or the {PREFIX}inject annotation",
                if taken.len() > 1 {
                    "containers or volumes"
                } else {
                    "a container or volume"
                },
                taken.join(", ")
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let mut volumes = Vec::new();
        let mut ours = Vec::new();
        let mut region_env = Vec::new();
        if let Some(r) = &self.region {
            region_env.push(json!({ "name": "AWS_REGION", "value": r }));
        }
        let security = {
            let mut s = json!({
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": { "drop": ["ALL"] },
                "seccompProfile": { "type": "RuntimeDefault" },
            });
            if let Some(u) = pod_user {
                s["runAsUser"] = json!(u);
            }
            if let Some(g) = pod_group {
                s["runAsGroup"] = json!(g);
            }
            s
        };
        let small = json!({ "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "32Mi" } });

        if env {
            volumes.push(memory_volume(BIN_VOLUME, "32Mi"));
            ours.push(json!({
                "name": INSTALL,
                "image": self.image,
                "command": [bin, "install", BIN_DIR],
                "volumeMounts": [{ "name": BIN_VOLUME, "mountPath": BIN_DIR }],
                "resources": small,
                "securityContext": security,
            }));
        }
        if sidecar {
            volumes.push(memory_volume(TOKEN_VOLUME, "1Mi"));
            let mut env_vars =
                vec![json!({ "name": "SECRETS_AGENT_TOKEN_FILE", "value": TOKEN_FILE })];
            env_vars.extend(region_env.iter().cloned());
            let probe = |period: u32, failures: u32| {
                json!({
                    "exec": { "command": [bin, "health"] },
                    "periodSeconds": period,
                    "timeoutSeconds": 2,
                    "failureThreshold": failures,
                })
            };
            ours.push(json!({
                "name": SIDECAR,
                "image": self.image,
                "command": [bin],
                "restartPolicy": "Always",
                "env": env_vars,
                "volumeMounts": [{ "name": TOKEN_VOLUME, "mountPath": TOKEN_DIR }],
                "startupProbe": probe(1, 30),
                "livenessProbe": probe(10, 3),
                "resources": self.resources,
                "securityContext": security,
            }));
        }
        if files {
            // Only what is written counts against the pod's memory; room for certificate chains
            // and the temporary copy each atomic write makes.
            volumes.push(memory_volume(FILES_VOLUME, "8Mi"));
            volumes.push(json!({
                "name": PODINFO_VOLUME,
                "downwardAPI": { "items": [{
                    "path": "annotations",
                    "fieldRef": { "fieldPath": "metadata.annotations" },
                }] },
            }));
            // Through the sidecar when there is one (its cache, its identity), else from AWS.
            let source = if sidecar {
                "--source=auto"
            } else {
                "--source=aws"
            };
            let annotations_file = format!("--from-annotations={PODINFO_DIR}/annotations");
            let mut mounts = vec![
                json!({ "name": FILES_VOLUME, "mountPath": self.files_path }),
                json!({ "name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": true }),
            ];
            let mut env_vars = region_env.clone();
            if sidecar {
                env_vars.push(json!({ "name": "SECRETS_AGENT_TOKEN_FILE", "value": TOKEN_FILE }));
                mounts.push(
                    json!({ "name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true }),
                );
            }
            ours.push(json!({
                "name": RENDER,
                "image": self.image,
                "command": [bin, "render", "--once", source, annotations_file],
                "env": env_vars,
                "volumeMounts": mounts,
                "resources": small,
                "securityContext": security,
            }));
            if sidecar {
                ours.push(json!({
                    "name": WATCH,
                    "image": self.image,
                    "command": [bin, "render", source, annotations_file],
                    "restartPolicy": "Always",
                    "env": env_vars,
                    "volumeMounts": mounts,
                    "resources": small,
                    "securityContext": security,
                }));
            }
        }

        // The pod's AWS identity, as the EKS identity webhooks gave it to the app: ours run
        // with the same.
        if let Some(app) = app_containers.first() {
            let env_of = |key: &str, names: &[&str]| -> Vec<Value> {
                app.get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        e.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| names.contains(&n))
                    })
                    .cloned()
                    .collect()
            };
            let identity_env = env_of("env", &IDENTITY_ENV);
            let identity_mounts = env_of("volumeMounts", &IDENTITY_VOLUMES);
            for c in ours.iter_mut().filter_map(Value::as_object_mut) {
                for (key, items) in [("env", &identity_env), ("volumeMounts", &identity_mounts)] {
                    if items.is_empty() {
                        continue;
                    }
                    let list = c.entry(key).or_insert_with(|| json!([]));
                    if let Some(list) = list.as_array_mut() {
                        for item in items.iter() {
                            let name = item.get("name");
                            if !list.iter().any(|e| e.get("name") == name) {
                                list.push(item.clone());
                            }
                        }
                    }
                }
            }
        }

        let spec = pod
            .as_object_mut()
            .and_then(|p| p.get_mut("spec"))
            .and_then(Value::as_object_mut);
        let Some(spec) = spec else {
            return Err(vec!["the pod has no spec".into()]);
        };
        let list = |spec: &mut Map<String, Value>, key: &str| -> Vec<Value> {
            spec.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut all_volumes = list(spec, "volumes");
        all_volumes.extend(volumes);
        spec.insert("volumes".into(), Value::Array(all_volumes));
        // Ours first, and the pod's own init containers see the agent and the files as its
        // containers do (their commands stay as they are).
        let mut own_init = list(spec, "initContainers");
        let mut containers = list(spec, "containers");
        for c in own_init.iter_mut().chain(containers.iter_mut()) {
            let Some(c) = c.as_object_mut() else { continue };
            if sidecar {
                push_env(c, "SECRETS_AGENT_URL", AGENT_URL);
                push_env(c, "SECRETS_AGENT_TOKEN_FILE", TOKEN_FILE);
                push_mount(c, TOKEN_VOLUME, TOKEN_DIR);
            }
            if files {
                push_mount(c, FILES_VOLUME, &self.files_path);
            }
        }
        let mut init = ours;
        init.extend(own_init);
        spec.insert("initContainers".into(), Value::Array(init));

        for c in &mut containers {
            let Some(c) = c.as_object_mut() else { continue };
            if env {
                push_mount(c, BIN_VOLUME, BIN_DIR);
                if let Some(r) = &self.region {
                    if !c.get("env").and_then(Value::as_array).is_some_and(|e| {
                        e.iter()
                            .any(|v| v.get("name").and_then(Value::as_str) == Some("AWS_REGION"))
                    }) {
                        push_env(c, "AWS_REGION", r);
                    }
                }
                let command = c
                    .get("command")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                c.insert("command".into(), Value::Array(self.wrapped(&command)));
                if self.env_probes {
                    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                        let exec = c
                            .get_mut(probe)
                            .and_then(|p| p.get_mut("exec"))
                            .and_then(Value::as_object_mut);
                        if let Some(exec) = exec {
                            let command = exec
                                .get("command")
                                .and_then(Value::as_array)
                                .cloned()
                                .unwrap_or_default();
                            exec.insert("command".into(), Value::Array(self.wrapped(&command)));
                        }
                    }
                }
            }
        }
        spec.insert("containers".into(), Value::Array(containers));

        let metadata = pod
            .as_object_mut()
            .map(|p| p.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        if let Some(metadata) = metadata {
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(format!("{PREFIX}status"), json!(STATUS_INJECTED));
            }
        }
        Ok(())
    }

    /// `command` run under `secrets-agent exec` from the binary's memory volume.
    fn wrapped(&self, command: &[Value]) -> Vec<Value> {
        let mut out = vec![json!(format!("{BIN_DIR}/secrets-agent")), json!("exec")];
        if self.ignore_missing {
            out.push(json!("--ignore-missing"));
        }
        out.push(json!("--"));
        out.extend(command.iter().cloned());
        out
    }
}

fn memory_volume(name: &str, size: &str) -> Value {
    json!({ "name": name, "emptyDir": { "medium": "Memory", "sizeLimit": size } })
}

fn push_env(container: &mut Map<String, Value>, name: &str, value: &str) {
    let env = container.entry("env").or_insert_with(|| json!([]));
    if let Some(env) = env.as_array_mut() {
        if !env
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            env.push(json!({ "name": name, "value": value }));
        }
    }
}

fn push_mount(container: &mut Map<String, Value>, volume: &str, path: &str) {
    let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
    if let Some(mounts) = mounts.as_array_mut() {
        mounts.push(json!({ "name": volume, "mountPath": path, "readOnly": true }));
    }
}

/// A Kubernetes quantity, roughly: digits with an optional fraction and suffix (the API server
/// checks the rest).
fn is_quantity(q: &str) -> bool {
    let digits = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &q[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
}

#[cfg(test)]
mod tests {
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
        json!([{ "name": "app", "image": "app:1", "command": ["/app"], "args": ["--serve"] }])
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
        let patch = aws_smithy_types::base64::decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap();
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
    fn a_container_without_command_is_denied_in_env_mode() {
        let body = review_of(
            json!({ "secrets-agent.io/inject": "true", "secrets-agent.io/mode": "env" }),
            json!([{ "name": "web", "image": "nginx" }]),
        );
        let (_, outcome) = review(&body, &settings()).unwrap();
        let Outcome::Denied(m) = outcome else {
            panic!()
        };
        assert!(
            m.contains("\"web\"") && m.contains("set the container's command"),
            "{m}"
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
}
