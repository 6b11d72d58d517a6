//! Logging: `log_level`, `log_to_file`.

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
        "log_level" => {
            if let Some(s) = p.string(name, raw) {
                match LogLevel::parse(&s) {
                    Some(l) => config.log_level = l,
                    None => p.push(format!(
                        "{name} = {raw}: must be one of debug, info, warn, error, none"
                    )),
                }
            }
        }
        "log_to_file" => {
            if let Some(b) = p.boolean(name, raw) {
                config.log_to_file = b;
            }
        }
        _ => return false,
    }
    true
}
