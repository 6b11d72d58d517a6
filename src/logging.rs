//! The one tracing set-up. Logs go to stderr; JSON when asked; no timestamps in Lambda, where
//! CloudWatch adds them.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, Env, LogLevel};

/// Installs the global subscriber. In Lambda, `AWS_LAMBDA_LOG_LEVEL` and
/// `AWS_LAMBDA_LOG_FORMAT` apply unless the extension's own log level is set.
pub fn init(config: &Config, env: &Env, lambda: bool) {
    let mut level = config.log_level;
    if lambda && !env.contains_key("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL") {
        if let Some(l) = env.get("AWS_LAMBDA_LOG_LEVEL") {
            level = match l.to_ascii_lowercase().as_str() {
                "trace" | "debug" => LogLevel::Debug,
                "warn" => LogLevel::Warn,
                "error" | "fatal" => LogLevel::Error,
                _ => LogLevel::Info,
            };
        }
    }
    let json = if lambda {
        env.get("AWS_LAMBDA_LOG_FORMAT")
            .is_some_and(|f| f.eq_ignore_ascii_case("json"))
    } else {
        env.get("SECRETS_AGENT_LOG_FORMAT")
            .is_some_and(|f| f.eq_ignore_ascii_case("json"))
    };
    // Our crate at the chosen level; the SDK's chatter only from warn up.
    let filter = EnvFilter::new(format!("warn,secrets_agent={lvl}", lvl = level.as_filter()));
    let filter = if level == LogLevel::None {
        EnvFilter::new("off")
    } else {
        filter
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let result = match (json, lambda) {
        (true, true) => builder.json().without_time().try_init(),
        (true, false) => builder.json().try_init(),
        (false, true) => builder.without_time().try_init(),
        (false, false) => builder.try_init(),
    };
    // A subscriber already set (tests) is fine.
    let _ = result;
}
