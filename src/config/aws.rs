//! The AWS side: region, credentials file, timeouts, concurrent calls.

use super::*;

/// Applies `setting` if it is one of this section's keys; false if it is not.
pub(super) fn apply(
    config: &mut Config,
    _at: &mut Pending,
    setting: &Setting,
    p: &mut Problems,
) -> bool {
    let (key, name, raw) = (setting.key.as_str(), setting.shown.as_str(), &setting.raw);
    let warnings = &mut config.warnings;
    match key {
        "region" => {
            if let Some(s) = p.string(name, raw) {
                config.region = Some(s).filter(|s| !s.is_empty());
            }
        }
        "max_backend_calls" => {
            // The AWS extension documents no maximum for MAX_CONNECTIONS; past this
            // many concurrent calls AWS throttles anyway.
            let v = p.int_or_clamped(name, raw, 1, MAX_BACKEND_CALLS, warnings);
            if let Some(v) = v {
                config.max_backend_calls = v as usize;
            }
        }
        "validate_credentials" => {
            if let Some(b) = p.boolean(name, raw) {
                config.validate_credentials = b;
            }
        }
        "secrets_timeout_millis" | "parameters_timeout_millis" => {
            let v = p.int_or_clamped(name, raw, 0, 600_000, warnings);
            if let Some(v) = v {
                let d = if v == 0 {
                    DEFAULT_BACKEND_TIMEOUT
                } else {
                    Duration::from_millis(v)
                };
                if key.starts_with("secrets") {
                    config.secrets_timeout = d;
                } else {
                    config.parameters_timeout = d;
                }
            }
        }
        "enabled" => {
            if p.boolean(name, raw) == Some(false) {
                p.push(format!(
                    "{name} = false: secrets-agent only serves Secrets Manager and SSM; \
                     remove the key or set it to true"
                ));
            }
        }
        "credentials_file_path" => {
            if let Some(s) = p.string(name, raw) {
                if s.trim().is_empty() {
                    p.push(format!(
                        "{name} = {raw}: must be the path of an AWS credentials file"
                    ));
                } else {
                    config.credentials_file = Some(PathBuf::from(s));
                }
            }
        }
        _ => return false,
    }
    true
}
