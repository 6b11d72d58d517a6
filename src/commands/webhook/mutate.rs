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
//! aws-region              AWS_REGION for what we add, and `exec --region` in env mode
//! image                   the image of what we add (default: the webhook's --image)
//! files-path              where files mode mounts the files (default /run/secrets/app)
//! file.<name>             files mode: a source written to <files-path>/<name>
//! file.<name>.{path,source,mode,uid,gid}   files mode: render's long form
//! env-probes              "true": env mode also wraps the app containers' exec probes
//! on-rotation             env mode: `exec --on-rotation` (restart | signal:SIG)
//! sidecar-cpu-request, sidecar-memory-request, sidecar-cpu-limit, sidecar-memory-limit
//! run-as-user, run-as-group   who runs what we add (and owns the files)
//! status                  set by the webhook: "injected"
//! ```

mod asked;
mod env;

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::commands::render::annotations::PREFIX;
use asked::Asked;

const STATUS_INJECTED: &str = "injected";
/// The seeds' webhook's injection key (kube-secrets-init), accepted as ours with env mode.
const LEGACY_INJECT: &str = "secretsinit.io/inject";

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

    let (outcome, patch, warnings) = decide(request, settings);
    let mut response = json!({ "uid": uid, "allowed": !matches!(outcome, Outcome::Denied(_)) });
    if !warnings.is_empty() {
        // Shown by kubectl; the API server keeps warnings short, so each is one sentence or two.
        response["warnings"] = json!(warnings);
    }
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
) -> (Outcome, Option<json_patch::Patch>, Vec<String>) {
    let is_pod = request.get("kind").is_some_and(|k| {
        k.get("group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && k.get("kind").and_then(Value::as_str) == Some("Pod")
    });
    if !is_pod {
        return (Outcome::Unchanged("not a Pod"), None, vec![]);
    }
    if request.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return (Outcome::Unchanged("not a CREATE"), None, vec![]);
    }
    let namespace = request.get("namespace").and_then(Value::as_str);
    if namespace.is_some() && namespace == settings.namespace.as_deref() {
        return (
            Outcome::Unchanged("the webhook's own namespace"),
            None,
            vec![],
        );
    }
    let Some(pod) = request.get("object").filter(|o| o.is_object()) else {
        return (
            Outcome::Denied("the review's request.object is not a Pod object".into()),
            None,
            vec![],
        );
    };
    let mut annotations = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut warnings: Vec<String> = read_legacy(&mut annotations).into_iter().collect();
    let ours = |key: &str| {
        annotations
            .get(&format!("{PREFIX}{key}"))
            .and_then(Value::as_str)
    };
    match ours("inject") {
        Some("true") => {}
        None | Some("skip") | Some("false") => {
            let why = format!("the pod has no {PREFIX}inject: \"true\"");
            warnings.extend(env::unresolved(pod, &why));
            return (Outcome::Unchanged("not asked"), None, warnings);
        }
        Some(other) => {
            return (
                Outcome::Denied(format!(
                    "annotation {PREFIX}inject = {other:?}: use \"true\" to inject or \"skip\""
                )),
                None,
                warnings,
            )
        }
    }
    if ours("status") == Some(STATUS_INJECTED) {
        return (Outcome::Unchanged("injected already"), None, warnings);
    }
    let denied = |problems: Vec<String>, warnings| {
        (
            Outcome::Denied(format!(
                "secrets-agent cannot inject this pod: {}",
                problems.join("; ")
            )),
            None,
            warnings,
        )
    };
    let asked = match Asked::from_annotations(&annotations, settings) {
        Ok(a) => a,
        Err(problems) => return denied(problems, warnings),
    };
    if !asked.modes.contains(&Mode::Env) {
        let modes: Vec<_> = asked.modes.iter().map(|m| m.name()).collect();
        let why = format!("{PREFIX}mode is {}, without env", modes.join(","));
        warnings.extend(env::unresolved(pod, &why));
    }
    let mut mutated = pod.clone();
    if let Some(a) = mutated
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        // What the legacy key stood for is written as ours: a second review sees it.
        for (k, v) in &annotations {
            if k.starts_with(PREFIX) {
                a.insert(k.clone(), v.clone());
            }
        }
    }
    match asked.apply(&mut mutated, settings) {
        Ok(more) => warnings.extend(more),
        Err(problems) => return denied(problems, warnings),
    }
    let patch = json_patch::diff(pod, &mutated);
    (Outcome::Mutated(asked.modes.clone()), Some(patch), warnings)
}

/// The seeds' webhook's key, read as ours with env mode (what it did), with a warning.
fn read_legacy(annotations: &mut Map<String, Value>) -> Option<String> {
    let legacy = annotations.get(LEGACY_INJECT).cloned()?;
    let ours = format!("{PREFIX}inject");
    if annotations.contains_key(&ours) {
        return Some(format!(
            "{LEGACY_INJECT} is ignored: {ours} is set; remove {LEGACY_INJECT}"
        ));
    }
    let mode = format!("{PREFIX}mode");
    let warning = format!(
        "{LEGACY_INJECT} is read as {ours}{}; rename it to {ours}",
        if annotations.contains_key(&mode) {
            String::new()
        } else {
            annotations.insert(mode.clone(), json!("env"));
            format!(" with {mode}: env")
        }
    );
    annotations.insert(ours, legacy);
    Some(warning)
}

/// Who runs what we add: the run-as-user/-group annotations, else the application's user (its
/// first container's, else the pod's), so the files belong to it; and the pod's fsGroup.
struct Owner {
    user: Option<u64>,
    group: Option<u64>,
    /// Every container of the pod runs with the pod's fsGroup as a supplementary group: render
    /// may give files that group, and they default to it (mode 0440), so containers with other
    /// uids read them.
    fs_group: Option<u64>,
}

/// What the containers we add share.
struct Common<'a> {
    bin: &'a str,
    security: Value,
    /// The resources of the short-lived and the file containers.
    small: Value,
    region_env: Vec<Value>,
}

/// What we add to the pod: volumes, and init containers run before the pod's own.
#[derive(Default)]
struct Added {
    volumes: Vec<Value>,
    containers: Vec<Value>,
}

impl Asked {
    /// Changes `pod` as asked, or says which container cannot be changed and why. Ok holds the
    /// warnings for the answer.
    fn apply(&self, pod: &mut Value, settings: &Settings) -> Result<Vec<String>, Vec<String>> {
        let sidecar = self.modes.contains(&Mode::Sidecar);
        let files = self.modes.contains(&Mode::Files);
        let app_containers = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let owner = self.owner(pod, app_containers.first());
        // Env mode wraps only the containers (the pod's own init containers too) that reach
        // placeholders.
        let plan = if self.modes.contains(&Mode::Env) {
            env::plan(pod, &format!("{PREFIX}mode"))
        } else {
            env::Plan::default()
        };
        let mut problems = plan.problems;
        if files {
            problems.extend(self.files_problems(&app_containers, &owner));
        }
        problems.extend(taken_names(pod));
        if !problems.is_empty() {
            return Err(problems);
        }

        let common = self.common(&settings.binary, &owner);
        let mut added = Added::default();
        if !plan.wrap.is_empty() {
            self.add_install(&common, &mut added);
        }
        if sidecar {
            self.add_sidecar(&common, &mut added);
        }
        if files {
            self.add_files(&common, sidecar, &mut added);
        }
        // The pod's AWS identity, as the EKS identity webhooks gave it to the app: ours run
        // with the same.
        if let Some(app) = app_containers.first() {
            copy_identity(app, &mut added.containers);
        }
        self.insert(pod, added, &plan.wrap)?;
        self.mark(pod, owner.fs_group);
        Ok(plan.warnings)
    }

    /// Who runs what we add, and the pod's fsGroup; root never runs it (our containers run as
    /// non-root).
    fn owner(&self, pod: &Value, app: Option<&Value>) -> Owner {
        let user_of = |pointer: &str| {
            app.and_then(|c| c.pointer(pointer))
                .or_else(|| pod.pointer(&format!("/spec{pointer}")))
                .and_then(Value::as_u64)
                .filter(|u| *u != 0)
        };
        Owner {
            user: self
                .run_as
                .0
                .or_else(|| user_of("/securityContext/runAsUser")),
            group: self
                .run_as
                .1
                .or_else(|| user_of("/securityContext/runAsGroup")),
            fs_group: pod
                .pointer("/spec/securityContext/fsGroup")
                .and_then(Value::as_u64),
        }
    }

    /// Files mode's problems: a mount in the way, owners render cannot give, a files-path over
    /// one of our folders.
    fn files_problems(&self, app_containers: &[Value], owner: &Owner) -> Vec<String> {
        let mut problems = Vec::new();
        for c in app_containers {
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
        // Render runs without CHOWN (all capabilities dropped): it can only give files to the
        // user it runs as, and to its groups (its own and the pod's fsGroup).
        for (key, attr, want) in &self.owners {
            let runs_as = if *attr == "uid" {
                owner.user
            } else {
                owner.group
            };
            let group_ok = *attr == "gid" && owner.fs_group == Some(*want);
            if Some(*want) != runs_as.or(Some(IMAGE_USER)) && !group_ok {
                problems.push(format!(
                    "{key} = {want}: the files are written by a container running as {} \
                     without the CHOWN capability, so they can only belong to it{}; remove \
                     the annotation, or set {PREFIX}run-as-{} to {want}",
                    runs_as.unwrap_or(IMAGE_USER),
                    if *attr == "gid" {
                        " (or to the pod's fsGroup)"
                    } else {
                        ""
                    },
                    if *attr == "uid" { "user" } else { "group" },
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
        problems
    }

    /// What every container we add has: its security context, resources and region.
    fn common<'a>(&self, bin: &'a str, owner: &Owner) -> Common<'a> {
        let mut security = json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        });
        if let Some(u) = owner.user {
            security["runAsUser"] = json!(u);
        }
        if let Some(g) = owner.group {
            security["runAsGroup"] = json!(g);
        }
        let mut region_env = Vec::new();
        if let Some(r) = &self.region {
            region_env.push(json!({ "name": "AWS_REGION", "value": r }));
        }
        Common {
            bin,
            security,
            small: json!({ "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "32Mi" } }),
            region_env,
        }
    }

    /// Env mode: the container that copies the binary to the memory volume `exec` runs from.
    fn add_install(&self, common: &Common, added: &mut Added) {
        added.volumes.push(memory_volume(BIN_VOLUME, "32Mi"));
        added.containers.push(json!({
            "name": INSTALL,
            "image": self.image,
            "command": [common.bin, "install", BIN_DIR],
            "volumeMounts": [{ "name": BIN_VOLUME, "mountPath": BIN_DIR }],
            "resources": common.small,
            "securityContext": common.security,
        }));
    }

    /// Sidecar mode: the agent as a native sidecar (an init container that keeps running).
    fn add_sidecar(&self, common: &Common, added: &mut Added) {
        let bin = common.bin;
        added.volumes.push(memory_volume(TOKEN_VOLUME, "1Mi"));
        let mut env_vars = vec![json!({ "name": "SECRETS_AGENT_TOKEN_FILE", "value": TOKEN_FILE })];
        env_vars.extend(common.region_env.iter().cloned());
        let probe = |period: u32, failures: u32| {
            json!({
                "exec": { "command": [bin, "health"] },
                "periodSeconds": period,
                "timeoutSeconds": 2,
                "failureThreshold": failures,
            })
        };
        added.containers.push(json!({
            "name": SIDECAR,
            "image": self.image,
            "command": [bin],
            "restartPolicy": "Always",
            "env": env_vars,
            "volumeMounts": [{ "name": TOKEN_VOLUME, "mountPath": TOKEN_DIR }],
            "startupProbe": probe(1, 30),
            "livenessProbe": probe(10, 3),
            "resources": self.resources,
            "securityContext": common.security,
        }));
    }

    /// Files mode: render once before the app, and with the sidecar, again on every change.
    fn add_files(&self, common: &Common, sidecar: bool, added: &mut Added) {
        let bin = common.bin;
        // Only what is written counts against the pod's memory; room for certificate chains
        // and the temporary copy each atomic write makes.
        added.volumes.push(memory_volume(FILES_VOLUME, "8Mi"));
        added.volumes.push(json!({
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
        let mut env_vars = common.region_env.clone();
        if sidecar {
            env_vars.push(json!({ "name": "SECRETS_AGENT_TOKEN_FILE", "value": TOKEN_FILE }));
            mounts.push(json!({ "name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true }));
        }
        added.containers.push(json!({
            "name": RENDER,
            "image": self.image,
            "command": [bin, "render", "--once", source, annotations_file],
            "env": env_vars,
            "volumeMounts": mounts,
            "resources": common.small,
            "securityContext": common.security,
        }));
        if sidecar {
            added.containers.push(json!({
                "name": WATCH,
                "image": self.image,
                "command": [bin, "render", source, annotations_file],
                "restartPolicy": "Always",
                "env": env_vars,
                "volumeMounts": mounts,
                "resources": common.small,
                "securityContext": common.security,
            }));
        }
    }

    /// Puts what we add into the pod's spec, and gives the pod's own containers the agent, the
    /// files and (env mode) `exec`.
    fn insert(
        &self,
        pod: &mut Value,
        added: Added,
        wrap: &[env::Place],
    ) -> Result<(), Vec<String>> {
        let sidecar = self.modes.contains(&Mode::Sidecar);
        let files = self.modes.contains(&Mode::Files);
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
        all_volumes.extend(added.volumes);
        spec.insert("volumes".into(), Value::Array(all_volumes));
        // Ours first, and the pod's own init containers see the agent and the files as its
        // containers do; in env mode those that reach placeholders are wrapped as they are.
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
        for (init, list) in [(true, &mut own_init), (false, &mut containers)] {
            for c in list.iter_mut().filter_map(Value::as_object_mut) {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                let place = env::Place {
                    init,
                    name: name.to_string(),
                };
                if wrap.contains(&place) {
                    self.wrap(c);
                }
            }
        }
        let mut init = added.containers;
        init.extend(own_init);
        spec.insert("initContainers".into(), Value::Array(init));

        spec.insert("containers".into(), Value::Array(containers));
        Ok(())
    }

    /// Marks the pod injected; in files mode, files without a mode and gid of their own go to
    /// the fsGroup.
    fn mark(&self, pod: &mut Value, fs_group: Option<u64>) {
        let files = self.modes.contains(&Mode::Files);
        let metadata = pod
            .as_object_mut()
            .map(|p| p.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        if let Some(metadata) = metadata {
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(format!("{PREFIX}status"), json!(STATUS_INJECTED));
                // With an fsGroup, files without their own mode and gid go to that group,
                // readable (render reads these through the downward API).
                for (origin, mode, gid) in self.files.iter().filter(|_| files) {
                    if let (Some(g), false) = (fs_group, *gid) {
                        a.insert(format!("{origin}.gid"), json!(g.to_string()));
                        if !mode {
                            a.insert(format!("{origin}.mode"), json!("0440"));
                        }
                    }
                }
            }
        }
    }

    /// Runs a container's command, and with `env-probes` its exec probes, under `exec` from
    /// the binary's memory volume.
    fn wrap(&self, c: &mut Map<String, Value>) {
        push_mount(c, BIN_VOLUME, BIN_DIR);
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

    /// `command` run under `secrets-agent exec` from the binary's memory volume.
    fn wrapped(&self, command: &[Value]) -> Vec<Value> {
        let mut out = vec![json!(format!("{BIN_DIR}/secrets-agent")), json!("exec")];
        if self.ignore_missing {
            out.push(json!("--ignore-missing"));
        }
        if let Some(r) = &self.on_rotation {
            out.push(json!(format!("--on-rotation={r}")));
        }
        // The region exec reads AWS in, whatever AWS_REGION the app has (that stays the app's).
        if let Some(r) = &self.region {
            out.push(json!(format!("--region={r}")));
        }
        out.push(json!("--"));
        out.extend(command.iter().cloned());
        out
    }
}

/// A pod that already holds a container or volume of ours by name (a hand-written sidecar, say)
/// would be refused by the API server with duplicate names.
fn taken_names(pod: &Value) -> Option<String> {
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
    if taken.is_empty() {
        return None;
    }
    Some(format!(
        "the pod already has {} named {}, which the webhook would add: remove the hand-written \
         secrets-agent parts or the {PREFIX}inject annotation",
        if taken.len() > 1 {
            "containers or volumes"
        } else {
            "a container or volume"
        },
        taken.join(", ")
    ))
}

/// Copies the app container's AWS identity (environment and token mounts) to ours.
fn copy_identity(app: &Value, ours: &mut [Value]) {
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

#[cfg(test)]
mod tests;
