//! Role settings (`allowed_roles`, `max_roles`, `role_session_name`, prefetch per role), checked
//! against each other once every source is read.

use super::*;

/// The role settings (`max_roles`, `allowed_roles`, `role_session_name`, prefetch entries
/// with a `role_arn`); false when `key` is not one of them.
pub(super) fn role_setting(
    config: &mut Config,
    key: &str,
    name: &str,
    raw: &Raw,
    p: &mut Problems,
) -> bool {
    match key {
        "max_roles" => {
            if let Some(v) = p.int(name, raw, 1, 1000) {
                config.max_roles = v as usize;
            }
        }
        "allowed_roles" => {
            if let Some(roles) = p.strings(name, raw) {
                for role in &roles {
                    if let Err(why) = arn::check_role_arn(role) {
                        p.push(format!("{name}: {role:?} {why}"));
                    }
                }
                config.allowed_roles = roles;
            }
        }
        "role_session_name" => {
            if let Some(s) = p.string(name, raw) {
                match arn::check_session_name(&s) {
                    Ok(()) => config.role_session_name = s,
                    Err(why) => p.push(format!("{name} = {raw}: {why}")),
                }
            }
        }
        "prefetch_roles" => {
            for (role, id) in role_pairs(raw) {
                match arn::check_role_arn(role) {
                    Ok(()) => config
                        .prefetch_role_secrets
                        .entry(role.clone())
                        .or_default()
                        .push(id.clone()),
                    Err(why) => p.push(format!("{name}: role_arn = {role:?}: {why}")),
                }
            }
        }
        "prefetch_role_tags" => {
            for (role, key) in role_pairs(raw) {
                if let Err(why) = arn::check_role_arn(role) {
                    p.push(format!("{name}: role_arn = {role:?}: {why}"));
                } else if tag_keys(name, vec![key.clone()], p).is_some() {
                    let held = config.prefetch_role_tags.entry(role.clone()).or_default();
                    if !held.contains(key) {
                        held.push(key.clone());
                    }
                }
            }
        }
        _ => return false,
    }
    true
}

/// The (role, id or tag key) pairs that `prefetch_from_toml` and `filter_tags_from_toml` set
/// aside for entries naming a `role_arn`.
pub(super) fn role_pairs(raw: &Raw) -> impl Iterator<Item = (&String, &String)> {
    let pairs = match raw {
        Raw::List(pairs) => pairs.as_slice(),
        _ => &[],
    };
    pairs.iter().filter_map(|pair| match pair {
        Raw::List(pair) => match pair.as_slice() {
            [Raw::Str(role), Raw::Str(item)] => Some((role, item)),
            _ => None,
        },
        _ => None,
    })
}

/// Checks the role settings against each other once all are read, and takes the session name
/// from `AWS_ROLE_SESSION_NAME` (the SDKs' standard variable) when no key gave one.
pub(super) fn check_roles(
    config: &mut Config,
    settings: &[Setting],
    env: &Env,
    problems: &mut Problems,
) {
    let named = settings.iter().any(|s| s.key == "role_session_name");
    if let Some(v) = env
        .get("AWS_ROLE_SESSION_NAME")
        .filter(|v| !named && !v.is_empty())
    {
        match arn::check_session_name(v) {
            Ok(()) => config.role_session_name = v.clone(),
            Err(why) => problems.push(format!("AWS_ROLE_SESSION_NAME = {v:?}: {why}")),
        }
    }
    let named = (config.prefetch_role_secrets.keys().map(|r| ("prefetch", r)))
        .chain(config.prefetch_role_tags.keys().map(|r| ("filter_tags", r)));
    let mut roles = std::collections::BTreeSet::new();
    for (setting, role) in named {
        if !config.allowed_roles.is_empty() && !config.allowed_roles.contains(role) {
            problems.push(format!(
                "{setting}: role_arn = {role:?} is not in allowed_roles; add it there or remove \
                 the entry"
            ));
        }
        roles.insert(role);
    }
    let roles = roles.len();
    if roles > config.max_roles {
        problems.push(format!(
            "prefetch names {roles} roles but max_roles = {}; raise max_roles to at least {roles}",
            config.max_roles
        ));
    }
}
