//! The TOML file: the AWS Secrets Manager Agent's flat keys and its nested layout (mapped to the
//! flat keys by `NESTED_KEYS`), and the tables that are more than one value (`[[files]]`,
//! prefetch lists with roles, tag filters).

use super::*;

/// The nested layout of the AWS agent, mapped onto the flat keys.
pub(super) const NESTED_KEYS: &[(&str, &str)] = &[
    ("logging.log_level", "log_level"),
    ("logging.log_to_file", "log_to_file"),
    ("capabilities.secrets_manager.enabled", "enabled"),
    ("capabilities.secrets_manager.http_port", "http_port"),
    ("capabilities.secrets_manager.http_address", "http_address"),
    ("capabilities.secrets_manager.region", "region"),
    ("capabilities.secrets_manager.path_prefix", "path_prefix"),
    ("capabilities.secrets_manager.max_conn", "max_conn"),
    ("capabilities.secrets_manager.max_roles", "max_roles"),
    (
        "capabilities.secrets_manager.allowed_roles",
        "allowed_roles",
    ),
    (
        "capabilities.secrets_manager.role_session_name",
        "role_session_name",
    ),
    (
        "capabilities.secrets_manager.ignore_transient_errors",
        "ignore_transient_errors",
    ),
    (
        "capabilities.secrets_manager.validate_credentials",
        "validate_credentials",
    ),
    (
        "capabilities.secrets_manager.cache.ttl_seconds",
        "ttl_seconds",
    ),
    (
        "capabilities.secrets_manager.cache.cache_size",
        "cache_size",
    ),
    (
        "capabilities.secrets_manager.cache.cache_max_bytes",
        "cache_max_bytes",
    ),
    (
        "capabilities.secrets_manager.security.ssrf_headers",
        "ssrf_headers",
    ),
    (
        "capabilities.secrets_manager.security.ssrf_env_variables",
        "ssrf_env_variables",
    ),
    (
        "capabilities.secrets_manager.cache.refresh_ratio",
        "refresh_ratio",
    ),
    (
        "capabilities.secrets_manager.prefetch.cache_buffer_ratio",
        "cache_buffer_ratio",
    ),
    (
        "capabilities.secrets_manager.prefetch.max_jitter_seconds",
        "max_jitter_seconds",
    ),
    ("capabilities.secrets_manager.prefetch.secrets", "prefetch"),
    (
        "capabilities.secrets_manager.prefetch.filter_tags",
        "filter_tags",
    ),
    // 3.x's flat layout keeps its prefetch settings in a root `[prefetch]` table.
    ("prefetch.cache_buffer_ratio", "cache_buffer_ratio"),
    ("prefetch.max_jitter_seconds", "max_jitter_seconds"),
    ("prefetch.secrets", "prefetch"),
    ("prefetch.filter_tags", "filter_tags"),
    (
        "capabilities.secrets_manager.credentials_file_path",
        "credentials_file_path",
    ),
];

pub(super) fn toml_settings(
    text: &str,
    settings: &mut Vec<Setting>,
    files: &mut Vec<FileEntry>,
    problems: &mut Problems,
) {
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("config file is not valid TOML: {}", e.message()));
            return;
        }
    };
    if let Some(value) = table.remove("files") {
        *files = files_from_toml(&value, problems);
    }
    let mut flat = BTreeMap::new();
    flatten("", &table, &mut flat);
    for (path, value) in flat {
        let key = if path.contains('.') {
            match NESTED_KEYS.iter().find(|(nested, _)| *nested == path) {
                Some((_, flat_key)) => flat_key.to_string(),
                None => {
                    problems.push(format!(
                        "{path}: unknown key; nested keys live under [logging], [prefetch] and \
                         [capabilities.secrets_manager] (see the README)"
                    ));
                    continue;
                }
            }
        } else {
            path.clone()
        };
        let by_role = match key.as_str() {
            "prefetch" => Some(("prefetch_roles", prefetch_from_toml(&path, value, problems))),
            "filter_tags" => Some((
                "prefetch_role_tags",
                filter_tags_from_toml(&path, value, problems),
            )),
            _ => None,
        };
        let raw = if let Some((role_key, parsed)) = by_role {
            let Some((own, by_role)) = parsed else {
                continue;
            };
            if let Some(by_role) = by_role {
                settings.push(Setting {
                    key: role_key.into(),
                    shown: path.clone(),
                    raw: by_role,
                });
            }
            own
        } else {
            Raw::from(value)
        };
        settings.push(Setting {
            key,
            shown: path,
            raw,
        });
    }
}

/// Flattens nested tables to dotted paths, stopping at known leaves.
pub(super) fn flatten<'a>(
    prefix: &str,
    table: &'a toml::Table,
    out: &mut BTreeMap<String, &'a toml::Value>,
) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !NESTED_KEYS.iter().any(|(n, _)| *n == path) => {
                flatten(&path, t, out)
            }
            _ => {
                out.insert(path, v);
            }
        }
    }
}

/// `[[files]]` tables: `path`, one of `source` or `template`, and optional `mode`, `uid`,
/// `gid`, `allow_disk`.
pub(super) fn files_from_toml(value: &toml::Value, problems: &mut Problems) -> Vec<FileEntry> {
    let Some(items) = value.as_array() else {
        problems.push(
            "files: must be an array of tables ([[files]] with path = ... and source = ...)".into(),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("[[files]] #{}", i + 1);
        let Some(t) = item.as_table() else {
            problems.push(format!(
                "{at}: must be a table with path = ... and source = ..."
            ));
            continue;
        };
        out.extend(file_from_table(&at, t, problems));
    }
    out
}

/// One `[[files]]` table (`at` names it in problems); None when it has a problem.
fn file_from_table(
    at: &str,
    t: &toml::map::Map<String, toml::Value>,
    problems: &mut Problems,
) -> Option<FileEntry> {
    let before = problems.0.len();
    let string = |key: &str, problems: &mut Problems| match t.get(key) {
        None => None,
        Some(toml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(v) => {
            problems.push(format!(
                "{at}: {key} = {}: must be a non-empty string",
                Raw::from(v)
            ));
            None
        }
    };
    let id = |key: &str, problems: &mut Problems| match t.get(key) {
        None => None,
        Some(toml::Value::Integer(n)) if (0..=i64::from(u32::MAX - 1)).contains(n) => {
            Some(*n as u32)
        }
        Some(v) => {
            problems.push(format!(
                "{at}: {key} = {}: must be a numeric id from 0 to {}",
                Raw::from(v),
                u32::MAX - 1
            ));
            None
        }
    };
    for key in t.keys() {
        if ![
            "path",
            "source",
            "template",
            "mode",
            "uid",
            "gid",
            "allow_disk",
        ]
        .contains(&key.as_str())
        {
            problems.push(format!(
                "{at}: unknown key {key:?}; allowed: path, source, template, mode, uid, gid, \
                     allow_disk"
            ));
        }
    }
    let path = string("path", problems).map(PathBuf::from);
    match &path {
        None if problems.0.len() == before => {
            problems.push(format!("{at}: path = \"/absolute/target\" is required"))
        }
        Some(p) if !p.is_absolute() => problems.push(format!(
            "{at}: path = {:?}: must be an absolute path",
            p.display().to_string()
        )),
        _ => {}
    }
    let content = match (string("source", problems), string("template", problems)) {
        (Some(s), None) => Some(FileContent::Source(s)),
        (None, Some(t)) => Some(FileContent::Template(PathBuf::from(t))),
        (Some(_), Some(_)) => {
            problems.push(format!("{at}: give source or template, not both"));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{at}: needs source = \"awssm:<id>[#<key>]\" (or awsparam:...) or \
                     template = \"/path/to/template\""
            ));
            None
        }
    };
    let mode = match t.get("mode") {
        None => Some(DEFAULT_FILE_MODE),
        Some(toml::Value::String(s)) => parse_file_mode(s)
            .map_err(|e| problems.push(format!("{at}: mode: {e}")))
            .ok(),
        Some(toml::Value::Integer(n)) if (0..=0o777).contains(n) => Some(*n as u32),
        Some(v) => {
            problems.push(format!(
                "{at}: mode = {}: must be an octal string such as \"0400\" (or 0o400)",
                Raw::from(v)
            ));
            None
        }
    };
    let uid = id("uid", problems);
    let gid = id("gid", problems);
    let allow_disk = match t.get("allow_disk") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(v) => {
            problems.push(format!(
                "{at}: allow_disk = {}: must be true or false",
                Raw::from(v)
            ));
            false
        }
    };
    if problems.0.len() != before {
        return None;
    }
    Some(FileEntry {
        path: path?,
        content: content?,
        mode: mode?,
        uid,
        gid,
        allow_disk,
    })
}

/// `prefetch = ["a", "b"]` or `secrets = [{ secret_id = "a", role_arn = "..." }, ...]`: the
/// ids read with the agent's own credentials, and the (role, id) pairs of entries that name a
/// role (`None` when there are none).
pub(super) fn prefetch_from_toml(
    path: &str,
    value: &toml::Value,
    problems: &mut Problems,
) -> Option<(Raw, Option<Raw>)> {
    let Some(items) = value.as_array() else {
        problems.push(format!("{path} = {}: must be a list", Raw::from(value)));
        return None;
    };
    let mut ids = Vec::new();
    let mut by_role = Vec::new();
    for item in items {
        match item {
            toml::Value::String(s) => ids.push(Raw::Str(s.clone())),
            toml::Value::Table(t) => {
                let (id, role) =
                    entry_with_role(path, "a prefetch entry", "secret_id", t, problems)?;
                match role {
                    None => ids.push(Raw::Str(id)),
                    Some(role) => by_role.push(Raw::List(vec![Raw::Str(role), Raw::Str(id)])),
                }
            }
            other => {
                problems.push(format!(
                    "{path}: entry {} must be a string or {{ secret_id = \"...\" }}",
                    Raw::from(other)
                ));
                return None;
            }
        }
    }
    let by_role = (!by_role.is_empty()).then_some(Raw::List(by_role));
    Some((Raw::List(ids), by_role))
}

/// `filter_tags = [{ key = "Team" }, { key = "Env", role_arn = "..." }, ...]` (3.x) or
/// `["Team", ...]`: the keys read with the agent's own credentials, and the (role, key) pairs
/// of filters that name a role (`None` when there are none).
pub(super) fn filter_tags_from_toml(
    path: &str,
    value: &toml::Value,
    problems: &mut Problems,
) -> Option<(Raw, Option<Raw>)> {
    let Some(items) = value.as_array() else {
        problems.push(format!(
            "{path} = {}: must be a list such as [{{ key = \"Team\" }}]",
            Raw::from(value)
        ));
        return None;
    };
    let mut keys = Vec::new();
    let mut by_role = Vec::new();
    for item in items {
        match item {
            toml::Value::String(s) => keys.push(Raw::Str(s.clone())),
            toml::Value::Table(t) => {
                let (key, role) = entry_with_role(path, "a tag filter", "key", t, problems)?;
                match role {
                    None => keys.push(Raw::Str(key)),
                    Some(role) => by_role.push(Raw::List(vec![Raw::Str(role), Raw::Str(key)])),
                }
            }
            other => {
                problems.push(format!(
                    "{path}: entry {} must be a string or {{ key = \"...\" }}",
                    Raw::from(other)
                ));
                return None;
            }
        }
    }
    let by_role = (!by_role.is_empty()).then_some(Raw::List(by_role));
    Some((Raw::List(keys), by_role))
}

/// `{ FIELD = "...", role_arn = "..." }`, an entry of `prefetch` (`secret_id`) or `filter_tags`
/// (`key`): the field's value and the role when one is named.
pub(super) fn entry_with_role(
    path: &str,
    what: &str,
    field: &str,
    t: &toml::Table,
    problems: &mut Problems,
) -> Option<(String, Option<String>)> {
    if let Some(unknown) = t.keys().find(|k| *k != field && *k != "role_arn") {
        problems.push(format!(
            "{path}: unknown key {unknown:?} in {what}; allowed: {field}, role_arn"
        ));
        return None;
    }
    let role = match t.get("role_arn") {
        None => None,
        Some(toml::Value::String(r)) => Some(r.clone()),
        Some(other) => {
            problems.push(format!(
                "{path}: role_arn = {}: must be a role ARN string",
                Raw::from(other)
            ));
            return None;
        }
    };
    match t.get(field).and_then(|v| v.as_str()) {
        Some(v) => Some((v.to_string(), role)),
        None => {
            problems.push(format!("{path}: each entry needs {field} = \"...\""));
            None
        }
    }
}

/// Tag keys as Secrets Manager's `tag-key` filter takes them: 1 to 512 characters of its
/// pattern. A leading `!` (the filter's negation) is refused: it would prefetch every secret
/// *without* the tag.
pub(super) fn tag_keys(name: &str, keys: Vec<String>, p: &mut Problems) -> Option<Vec<String>> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || " :_@/+=.-".contains(c);
    for k in &keys {
        if k.starts_with('!') {
            p.push(format!(
                "{name}: tag key {k:?} starts with '!', which Secrets Manager reads as \
                 \"without this tag\"; give the tag key itself"
            ));
            return None;
        }
        if k.len() > 512 || !k.chars().all(allowed) {
            p.push(format!(
                "{name}: tag key {k:?} is not one Secrets Manager can filter by: use at most \
                 512 letters, digits, spaces and : _ @ / + = . -"
            ));
            return None;
        }
    }
    let mut unique = Vec::with_capacity(keys.len());
    for k in keys {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    Some(unique)
}
