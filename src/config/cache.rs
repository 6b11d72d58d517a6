//! The cache: TTLs, bounds, refresh-ahead, staleness, the negative cache.

use super::*;

/// Applies `setting` if it is one of this section's keys; false if it is not.
pub(super) fn apply(
    config: &mut Config,
    at: &mut Pending,
    setting: &Setting,
    p: &mut Problems,
) -> bool {
    let (key, name, raw) = (setting.key.as_str(), setting.shown.as_str(), &setting.raw);
    let warnings = &mut config.warnings;
    match key {
        "ttl_seconds" | "secrets_ttl_seconds" => {
            let v = p.int_or_clamped(name, raw, 0, MAX_TTL_SECONDS, warnings);
            if let Some(v) = v {
                config.secrets_ttl = Duration::from_secs(v);
                if key == "ttl_seconds" {
                    config.parameters_ttl = Duration::from_secs(v);
                }
            }
        }
        "parameters_ttl_seconds" => {
            let v = p.int_or_clamped(name, raw, 0, MAX_TTL_SECONDS, warnings);
            if let Some(v) = v {
                config.parameters_ttl = Duration::from_secs(v);
            }
        }
        "cache_size" => {
            let min = if name.starts_with("PARAMETERS_") {
                0
            } else {
                1
            };
            if let Some(v) = p.int(name, raw, min, 1000) {
                config.cache_size = v as usize;
            }
        }
        "cache_max_bytes" => {
            if let Some(v) = p.int(name, raw, MIN_CACHE_MAX_BYTES, MAX_CACHE_MAX_BYTES) {
                config.cache_max_bytes = usize::try_from(v).unwrap_or(usize::MAX);
            }
        }
        "cache_enabled" => {
            if let Some(b) = p.boolean(name, raw) {
                at.cache_enabled = b;
            }
        }
        "ignore_transient_errors" => {
            if let Some(b) = p.boolean(name, raw) {
                config.ignore_transient_errors = b;
            }
        }
        "refresh_ratio" => {
            if let Some(v) = p.float(name, raw, 0.1, 1.0) {
                config.refresh_ratio = v;
            }
        }
        "max_stale_seconds" => {
            if let Some(v) = p.int(name, raw, 0, 7 * 86_400) {
                config.max_stale = Duration::from_secs(v);
            }
        }
        "negative_cache_seconds" => {
            if let Some(v) = p.int(name, raw, 0, 3600) {
                config.negative_ttl = Duration::from_secs(v);
            }
        }
        _ => return false,
    }
    true
}
