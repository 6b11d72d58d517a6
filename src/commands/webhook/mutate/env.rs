//! Env mode's view of a pod: which containers reference placeholders, read with `exec`'s own
//! parser, so what admission lets through is what `exec` resolves.
//!
//! A container is wrapped under `secrets-agent exec` when its environment holds a placeholder
//! (`env[].value`), or may hold one the webhook cannot read (`envFrom`, `valueFrom` of a
//! ConfigMap or a Secret: the webhook has no API access). Containers with neither (a log
//! shipper, a mesh proxy) are left as they are, with or without a `command`.

use serde_json::Value;

use crate::placeholder::{Template, SECRET_PREFIX};

/// A container of the pod: which list it is in, and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub init: bool,
    pub name: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.init {
            "init container"
        } else {
            "container"
        };
        write!(f, "{kind} {:?}", self.name)
    }
}

/// What env mode does with the pod's containers.
#[derive(Debug, Default)]
pub struct Plan {
    /// The containers to run under `exec`.
    pub wrap: Vec<Place>,
    /// Containers that reach placeholders and cannot be wrapped, or malformed placeholders.
    pub problems: Vec<String>,
    /// What the user should know (the answer's `warnings`).
    pub warnings: Vec<String>,
}

/// Where a container's placeholders come from.
#[derive(Debug, Default)]
struct Refs {
    /// Variables whose value holds a placeholder.
    direct: Vec<String>,
    /// ConfigMaps and Secrets the environment is fed from.
    indirect: Vec<String>,
}

/// Every container of the pod (its own init containers first), with its place.
pub fn containers(pod: &Value) -> impl Iterator<Item = (Place, &Value)> {
    [("initContainers", true), ("containers", false)]
        .into_iter()
        .flat_map(move |(key, init)| {
            pod.pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |c| {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                    (
                        Place {
                            init,
                            name: name.to_string(),
                        },
                        c,
                    )
                })
        })
}

fn scan(place: &Place, c: &Value, problems: &mut Vec<String>) -> Refs {
    let mut refs = Refs::default();
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(value) = e.get("value").and_then(Value::as_str) {
            if let Some(rest) = value.strip_prefix("awssm://") {
                problems.push(format!(
                    "{place} env {name}: \"awssm://...\" is the old prefix; write \
                     \"{SECRET_PREFIX}{rest}\" (no //)"
                ));
                continue;
            }
            match Template::parse(value) {
                Ok(Some(_)) => refs.direct.push(name.to_string()),
                Ok(None) => {}
                Err(err) => problems.push(format!("{place} env {name}: {err}")),
            }
        } else if let Some(from) = e.get("valueFrom") {
            for (key, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
                if let Some(r) = from.get(key) {
                    let of = r.get("name").and_then(Value::as_str).unwrap_or("?");
                    refs.indirect.push(format!("{kind} {of:?}"));
                }
            }
        }
    }
    for from in c
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (key, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            if let Some(r) = from.get(key) {
                let of = r.get("name").and_then(Value::as_str).unwrap_or("?");
                refs.indirect.push(format!("{kind} {of:?}"));
            }
        }
    }
    refs.indirect.sort();
    refs.indirect.dedup();
    refs
}

fn has_command(c: &Value) -> bool {
    c.get("command")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Env mode asked: which containers to wrap, and why others cannot be.
pub fn plan(pod: &Value, mode_key: &str) -> Plan {
    let mut plan = Plan::default();
    for (place, c) in containers(pod) {
        let refs = scan(&place, c, &mut plan.problems);
        if refs.direct.is_empty() && refs.indirect.is_empty() {
            continue;
        }
        if has_command(c) {
            plan.wrap.push(place);
        } else if !refs.direct.is_empty() {
            plan.problems.push(format!(
                "{place} has placeholders in {} and no command, and env mode must start its \
                 command under `secrets-agent exec`; the webhook does not read images from \
                 registries, so set the container's command (and args) to the image's \
                 ENTRYPOINT (and CMD)",
                refs.direct.join(", ")
            ));
        } else {
            plan.warnings.push(format!(
                "{place} is not wrapped by {mode_key}=env: it takes its environment from {}, \
                 which the webhook cannot read, and has no command; if that holds awssm: or \
                 awsparam: placeholders, set its command",
                refs.indirect.join(", ")
            ));
        }
    }
    if plan.wrap.is_empty() && plan.problems.is_empty() {
        plan.warnings.push(format!(
            "{mode_key} includes env, but no container references a placeholder (awssm:, \
             awsparam:, awsacm: in env, or envFrom/valueFrom), so none is wrapped"
        ));
    }
    plan
}

/// Env mode not asked: placeholders in the environment would reach the application as text.
/// `why` says what the pod lacks.
pub fn unresolved(pod: &Value, why: &str) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut warnings = Vec::new();
    for (place, c) in containers(pod) {
        let refs = scan(&place, c, &mut ignored);
        if !refs.direct.is_empty() {
            warnings.push(format!(
                "{place} has placeholders in {} that nothing resolves: {why}; the application \
                 would read the placeholder text",
                refs.direct.join(", ")
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_indirect_and_none() {
        let pod = json!({ "spec": {
            "initContainers": [
                { "name": "migrate", "command": ["/m"], "env": [{ "name": "DB", "value": "awssm:db#pw" }] },
            ],
            "containers": [
                { "name": "app", "command": ["/app"], "envFrom": [{ "secretRef": { "name": "s" } }] },
                { "name": "proxy", "image": "envoy" },
                { "name": "logs", "envFrom": [{ "configMapRef": { "name": "c" } }] },
                { "name": "bad", "command": ["/b"], "env": [
                    { "name": "X", "value": "awssm:a#b#c#d" },
                    { "name": "Y", "value": "awssm://old" },
                ] },
            ],
        }});
        let plan = plan(&pod, "secrets-agent.io/mode");
        let wrapped: Vec<_> = plan.wrap.iter().map(|p| p.to_string()).collect();
        assert_eq!(wrapped, ["init container \"migrate\"", "container \"app\""]);
        assert_eq!(plan.problems.len(), 2, "{:?}", plan.problems);
        assert!(plan.problems[0].starts_with("container \"bad\" env X: "));
        assert!(
            plan.problems[1].contains("container \"bad\" env Y")
                && plan.problems[1].contains("write \"awssm:old\""),
            "{:?}",
            plan.problems
        );
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0].contains("container \"logs\"")
                && plan.warnings[0].contains("ConfigMap \"c\"")
        );
    }
}
