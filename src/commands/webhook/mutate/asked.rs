//! What a pod's annotations ask for, checked at admission. File annotations go through
//! render's own parser (`annotations::entries_from`, `FileSpec::from_entry`), so a pod admitted
//! is a pod whose files render: every problem render would stop the init container for is a
//! denial here, naming the annotation.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{Mode, Settings};
use crate::commands::render::annotations::{
    entries_and_problems, ATTRIBUTES, DEFAULT_FILES_PATH, PREFIX,
};
use crate::commands::render::files::path_problem;
use crate::commands::render::FileSpec;
use crate::config::FileEntry;

/// What a pod's annotations ask for, checked.
#[derive(Debug)]
pub(super) struct Asked {
    pub(super) modes: BTreeSet<Mode>,
    pub(super) ignore_missing: bool,
    pub(super) region: Option<String>,
    pub(super) image: String,
    pub(super) files_path: String,
    pub(super) env_probes: bool,
    /// `on-rotation`: exec's `--on-rotation` (`restart` or `signal:SIG`), checked by exec's
    /// own parser.
    pub(super) on_rotation: Option<String>,
    /// `run-as-user` / `run-as-group`: who runs what we add (and so owns the files), over the
    /// application's `runAsUser`/`runAsGroup`.
    pub(super) run_as: (Option<u64>, Option<u64>),
    /// The file annotations (`secrets-agent.io/file.<name>`) and whether each gives its mode
    /// and its gid.
    pub(super) files: Vec<(String, bool, bool)>,
    pub(super) resources: Value,
    /// `file.<name>.uid` / `.gid` annotations: (key, "uid"|"gid", value).
    pub(super) owners: Vec<(String, &'static str, u64)>,
}

const KEYS: [&str; 16] = [
    "inject",
    "mode",
    "ignore-missing-secrets",
    "aws-region",
    "image",
    "files-path",
    "env-probes",
    "on-rotation",
    "run-as-user",
    "run-as-group",
    "sidecar-cpu-request",
    "sidecar-memory-request",
    "sidecar-cpu-limit",
    "sidecar-memory-limit",
    "status",
    "file.",
];

impl Asked {
    pub(super) fn from_annotations(
        annotations: &Map<String, Value>,
        settings: &Settings,
    ) -> Result<Asked, Vec<String>> {
        let mut problems = Vec::new();
        let files = file_annotations(annotations, &mut problems);
        let owners = owners_of(&files);
        let get = |k: &str| get(annotations, k);
        let modes = modes_of(get("mode"), &mut problems);
        let ignore_missing = flag(annotations, "ignore-missing-secrets", &mut problems);
        let env_probes = flag(annotations, "env-probes", &mut problems);
        let run_as = (
            id(annotations, "run-as-user", &mut problems),
            id(annotations, "run-as-group", &mut problems),
        );
        let on_rotation = get("on-rotation");
        if let Some(r) = &on_rotation {
            if let Err(e) = crate::commands::exec::OnRotation::parse(r) {
                problems.push(format!("{PREFIX}on-rotation = {e}"));
            } else if !modes.contains(&Mode::Env) {
                problems.push(format!(
                    "{PREFIX}on-rotation is used by mode env (exec); add env to {PREFIX}mode"
                ));
            }
        }
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
        check_files_mode(&modes, &files, &files_path, &mut problems);
        let resources = resources(annotations, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Asked {
            modes,
            ignore_missing,
            region,
            image,
            files_path: files_path.trim_end_matches('/').to_string(),
            env_probes,
            on_rotation,
            run_as,
            files: files
                .iter()
                .map(|(origin, _)| {
                    let given = |a: &str| annotations.contains_key(&format!("{origin}.{a}"));
                    (origin.clone(), given("mode"), given("gid"))
                })
                .collect(),
            resources,
            owners,
        })
    }
}

/// An annotation of ours, trimmed (a value that is not a string reads as empty).
fn get(annotations: &Map<String, Value>, k: &str) -> Option<String> {
    annotations
        .get(&format!("{PREFIX}{k}"))
        .map(|v| v.as_str().unwrap_or("").trim().to_string())
}

/// The file annotations through render's parser (names, attributes, modes, ids, paths absolute
/// without '..', sources), and the keys under our prefix that are not ours.
fn file_annotations(
    annotations: &Map<String, Value>,
    problems: &mut Vec<String>,
) -> Vec<(String, FileEntry)> {
    let mut unknown = Vec::new();
    let mut ours = Vec::new();
    for (key, value) in annotations {
        let Some(k) = key.strip_prefix(PREFIX) else {
            continue;
        };
        ours.push((key.clone(), value.as_str().unwrap_or("").to_string()));
        if !k.starts_with("file.") && !KEYS.contains(&k) {
            unknown.push(key.clone());
        }
    }
    let mut files = Vec::new();
    let (found, more) = entries_and_problems(ours);
    problems.extend(more);
    for (origin, entry) in found {
        match FileSpec::from_entry(&entry, origin.clone()) {
            Ok(_) => files.push((origin, entry)),
            Err(e) => problems.push(e),
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
    files
}

/// The `file.<name>.uid` / `.gid` annotations: (key, "uid"|"gid", value).
fn owners_of(files: &[(String, FileEntry)]) -> Vec<(String, &'static str, u64)> {
    files
        .iter()
        .flat_map(|(origin, e)| {
            [
                e.uid
                    .map(|u| (format!("{origin}.uid"), "uid", u64::from(u))),
                e.gid
                    .map(|g| (format!("{origin}.gid"), "gid", u64::from(g))),
            ]
        })
        .flatten()
        .collect()
}

/// `mode`: a comma list, sidecar when not given.
fn modes_of(mode: Option<String>, problems: &mut Vec<String>) -> BTreeSet<Mode> {
    let mut modes = BTreeSet::new();
    for m in mode.unwrap_or_else(|| "sidecar".into()).split(',') {
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
    modes
}

/// A "true"/"false" annotation, false when not given.
fn flag(annotations: &Map<String, Value>, k: &str, problems: &mut Vec<String>) -> bool {
    match get(annotations, k).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            problems.push(format!(
                "{PREFIX}{k} = {other:?}: use \"true\" or \"false\""
            ));
            false
        }
    }
}

/// A user or group id other than root's.
fn id(annotations: &Map<String, Value>, k: &str, problems: &mut Vec<String>) -> Option<u64> {
    let v = get(annotations, k)?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n < u64::from(u32::MAX) => Some(n),
        _ => {
            problems.push(format!(
                "{PREFIX}{k} = {v:?}: give a numeric id other than 0 (what the webhook \
                 adds never runs as root)"
            ));
            None
        }
    }
}

/// Files mode needs file annotations, each under `files-path`; other modes take none.
fn check_files_mode(
    modes: &BTreeSet<Mode>,
    files: &[(String, FileEntry)],
    files_path: &str,
    problems: &mut Vec<String>,
) {
    // (render's parser named a files-path with '..' or a relative one above)
    let files_path_ok =
        path_problem(std::path::Path::new(files_path)).is_none() && files_path.len() > 1;
    if modes.contains(&Mode::Files) {
        if files.is_empty() && problems.is_empty() {
            problems.push(format!(
                "mode files needs at least one {PREFIX}file.<name> annotation \
                 (e.g. {PREFIX}file.db-password: \"awssm:myapp/db#password\")"
            ));
        }
        let dir = format!("{}/", files_path.trim_end_matches('/'));
        for (origin, entry) in files {
            if files_path_ok && !entry.path.starts_with(&dir) {
                problems.push(format!(
                    "{origin}: the path {} is outside {PREFIX}files-path ({files_path}), \
                     the only memory volume the files are written to; put it under {dir}",
                    entry.path.display()
                ));
            }
        }
    } else if !files.is_empty() {
        problems.push(format!(
            "{PREFIX}file.* annotations are only used by mode files; add files to {PREFIX}mode"
        ));
    }
}

/// The sidecar's resources: ours, with what the `sidecar-*` annotations give.
fn resources(annotations: &Map<String, Value>, problems: &mut Vec<String>) -> Value {
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
        if let Some(q) = get(annotations, key) {
            if is_quantity(&q) {
                resources[section][resource] = json!(q);
            } else {
                problems.push(format!(
                    "{PREFIX}{key} = {q:?}: give a Kubernetes quantity such as 64Mi or 100m"
                ));
            }
        }
    }
    resources
}

/// A Kubernetes quantity, roughly: digits with an optional fraction and suffix (the API server
/// checks the rest).
pub(super) fn is_quantity(q: &str) -> bool {
    let digits = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &q[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
}
