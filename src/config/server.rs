//! The HTTP face: where it listens (`http_port`, `listen_address`), the token (`ssrf_headers`,
//! `ssrf_env_variables`, `token_file`), `path_prefix` and `max_conn`.

use super::*;

/// Applies `setting` if it is one of this section's keys; false if it is not.
pub(super) fn apply(
    config: &mut Config,
    at: &mut Pending,
    setting: &Setting,
    p: &mut Problems,
) -> bool {
    let (key, name, raw) = (setting.key.as_str(), setting.shown.as_str(), &setting.raw);
    match key {
        "http_port" => {
            if let Some(v) = p.int(name, raw, 1, 65535) {
                at.port = v as u16;
            }
        }
        "http_address" | "listen_address" => {
            if let Some(s) = p.string(name, raw) {
                at.address = Some((name.to_string(), s));
            }
        }
        "ssrf_headers" => {
            if let Some(v) = p.strings(name, raw) {
                if v.is_empty() {
                    p.push(format!("{name} = {raw}: must name at least one header"));
                } else if let Some(bad) = v
                    .iter()
                    .find(|h| http::HeaderName::try_from(h.as_str()).is_err())
                {
                    p.push(format!("{name}: {bad:?} is not a valid HTTP header name"));
                } else {
                    config.ssrf_headers = v;
                }
            }
        }
        "ssrf_env_variables" => {
            if let Some(v) = p.strings(name, raw) {
                if v.is_empty() {
                    p.push(format!(
                        "{name} = {raw}: must name at least one environment variable"
                    ));
                } else {
                    config.ssrf_env_variables = v;
                }
            }
        }
        "path_prefix" => {
            if let Some(s) = p.string(name, raw) {
                if !s.starts_with('/') || s.len() < 2 {
                    p.push(format!(
                        "{name} = {raw}: must start with / and not be / alone, e.g. \"/v1/\""
                    ));
                } else {
                    config.path_prefix = s;
                }
            }
        }
        "max_conn" => {
            if let Some(v) = p.int(name, raw, 1, 1000) {
                config.max_conn = v as usize;
            }
        }
        "token_file" => {
            if let Some(s) = p.string(name, raw) {
                if s.is_empty() {
                    p.push(format!("{name} = {raw}: must be a file path"));
                } else {
                    config.token_file = Some(PathBuf::from(s));
                }
            }
        }
        _ => return false,
    }
    true
}
