//! The environment: the AWS Parameters and Secrets Lambda Extension's variables and ours
//! (`SECRETS_AGENT_*`), mapped to the flat keys; unknown ones with a known prefix are warned
//! about by name.

use super::*;

/// The AWS extension's own variables: clamped rather than refused where it clamps or sets no
/// maximum.
pub(super) const AWS_EXTENSION_ENV: &[&str] = &[
    "SECRETS_MANAGER_TTL",
    "SSM_PARAMETER_STORE_TTL",
    "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS",
    "SECRETS_MANAGER_TIMEOUT_MILLIS",
    "SSM_PARAMETER_STORE_TIMEOUT_MILLIS",
];

/// The environment variables we own or recognise, for the "unknown variable" warning.
pub(super) const KNOWN_ENV: &[&str] = &[
    "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED",
    "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE",
    "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
    "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL",
    "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS",
    "SECRETS_MANAGER_TTL",
    "SSM_PARAMETER_STORE_TTL",
    "SECRETS_MANAGER_TIMEOUT_MILLIS",
    "SSM_PARAMETER_STORE_TIMEOUT_MILLIS",
    "SECRETS_AGENT_CONFIG",
    "SECRETS_AGENT_LISTEN",
    "SECRETS_AGENT_TOKEN_FILE",
    "SECRETS_AGENT_PREFETCH",
    "SECRETS_AGENT_PREFETCH_PARAMETERS",
    "SECRETS_AGENT_PREFETCH_TAGS",
    "SECRETS_AGENT_REFRESH_RATIO",
    "SECRETS_AGENT_MAX_STALE_SECONDS",
    "SECRETS_AGENT_NEGATIVE_CACHE_SECONDS",
    "SECRETS_AGENT_CACHE_MAX_BYTES",
    "SECRETS_AGENT_LOG_FORMAT",
    "SECRETS_AGENT_MAX_ROLES",
    "SECRETS_AGENT_ALLOWED_ROLES",
    "SECRETS_AGENT_ROLE_SESSION_NAME",
];

pub(super) const WATCHED_PREFIXES: &[&str] = &[
    "PARAMETERS_SECRETS_",
    "PARAMETERS_AND_SECRETS_",
    "SECRETS_MANAGER_",
    "SSM_PARAMETER_STORE_",
    "SECRETS_AGENT_",
];

/// The environment variables of the AWS extension and our own.
pub(super) fn env_settings(env: &Env, settings: &mut Vec<Setting>, warnings: &mut Vec<String>) {
    const MAP: &[(&str, &str)] = &[
        (
            "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED",
            "cache_enabled",
        ),
        ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "cache_size"),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "http_port"),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "log_level"),
        (
            "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS",
            "max_backend_calls",
        ),
        ("SECRETS_MANAGER_TTL", "secrets_ttl_seconds"),
        ("SSM_PARAMETER_STORE_TTL", "parameters_ttl_seconds"),
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "secrets_timeout_millis"),
        (
            "SSM_PARAMETER_STORE_TIMEOUT_MILLIS",
            "parameters_timeout_millis",
        ),
        ("SECRETS_AGENT_LISTEN", "listen_address"),
        ("SECRETS_AGENT_TOKEN_FILE", "token_file"),
        ("SECRETS_AGENT_PREFETCH", "prefetch"),
        ("SECRETS_AGENT_PREFETCH_PARAMETERS", "prefetch_parameters"),
        ("SECRETS_AGENT_PREFETCH_TAGS", "prefetch_tags"),
        ("SECRETS_AGENT_REFRESH_RATIO", "refresh_ratio"),
        ("SECRETS_AGENT_MAX_STALE_SECONDS", "max_stale_seconds"),
        (
            "SECRETS_AGENT_NEGATIVE_CACHE_SECONDS",
            "negative_cache_seconds",
        ),
        ("SECRETS_AGENT_CACHE_MAX_BYTES", "cache_max_bytes"),
        ("SECRETS_AGENT_MAX_ROLES", "max_roles"),
        ("SECRETS_AGENT_ALLOWED_ROLES", "allowed_roles"),
        ("SECRETS_AGENT_ROLE_SESSION_NAME", "role_session_name"),
    ];
    for (var, key) in MAP {
        // An unset or empty variable means "use the default", as in the AWS extension.
        if let Some(value) = env.get(*var).filter(|v| !v.trim().is_empty()) {
            settings.push(Setting {
                key: key.to_string(),
                shown: var.to_string(),
                raw: Raw::Str(value.clone()),
            });
        }
    }
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|k| WATCHED_PREFIXES.iter().any(|p| k.starts_with(p)))
        .filter(|k| !KNOWN_ENV.contains(&k.as_str()))
        .collect();
    unknown.sort();
    for var in unknown {
        warnings.push(format!(
            "environment variable {var} is not a setting secrets-agent knows and is ignored; \
             check its spelling against the README's settings table"
        ));
    }
}
