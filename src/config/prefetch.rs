//! Prefetch: ids, parameters, tag filters, jitter and the share of the cache it may fill.

use super::*;

/// Applies `setting` if it is one of this section's keys; false if it is not.
pub(super) fn apply(
    config: &mut Config,
    _at: &mut Pending,
    setting: &Setting,
    p: &mut Problems,
) -> bool {
    let (key, name, raw) = (setting.key.as_str(), setting.shown.as_str(), &setting.raw);
    match key {
        "prefetch" => {
            if let Some(v) = p.strings(name, raw) {
                config.prefetch_secrets = v;
            }
        }
        "prefetch_parameters" => {
            if let Some(v) = p.strings(name, raw) {
                config.prefetch_parameters = v;
            }
        }
        "prefetch_jitter_seconds" => {
            if let Some(v) = p.int(name, raw, 0, 60) {
                config.prefetch_jitter = Duration::from_secs(v);
            }
        }
        // The AWS provider's keys, with its meaning and ranges.
        "max_jitter_seconds" => {
            if let Some(v) = p.int(name, raw, 0, 10) {
                config.prefetch_jitter = Duration::from_secs(v);
            }
        }
        "cache_buffer_ratio" => {
            if let Some(v) = p.float(name, raw, 0.1, 1.0) {
                config.prefetch_cache_share = v;
            }
        }
        "filter_tags" | "prefetch_tags" => {
            if let Some(v) = p.strings(name, raw) {
                if let Some(tags) = tag_keys(name, v, p) {
                    config.prefetch_tags = tags;
                }
            }
        }
        _ => return false,
    }
    true
}
