//! The one tracing set-up. Logs go to stderr; JSON when asked; no timestamps in Lambda, where
//! CloudWatch adds them.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    let filter = targets(level);
    let builder = tracing_subscriber::fmt()
        // The builder's own maximum (INFO by default) would hide DEBUG; `filter` decides.
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let result = match (json, lambda) {
        (true, true) => builder
            .json()
            .without_time()
            .finish()
            .with(filter)
            .try_init(),
        (true, false) => builder.json().finish().with(filter).try_init(),
        (false, true) => builder.without_time().finish().with(filter).try_init(),
        (false, false) => builder.finish().with(filter).try_init(),
    };
    // A subscriber already set (tests) is fine.
    let _ = result;
}

/// Our crate at the chosen level; the SDK's chatter only from warn up (never above our level).
fn targets(level: LogLevel) -> Targets {
    let level = level.as_filter();
    Targets::new()
        .with_default(LevelFilter::WARN.min(level))
        .with_target("secrets_agent", level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn our_crate_logs_at_the_chosen_level_and_the_sdk_from_warn() {
        let debug = targets(LogLevel::Debug);
        assert!(debug.would_enable("secrets_agent::cache", &Level::DEBUG));
        assert!(!debug.would_enable("aws_smithy_runtime::client", &Level::INFO));
        assert!(debug.would_enable("aws_smithy_runtime::client", &Level::WARN));
        let error = targets(LogLevel::Error);
        assert!(!error.would_enable("secrets_agent", &Level::WARN));
        assert!(!error.would_enable("hyper", &Level::WARN));
        let none = targets(LogLevel::None);
        assert!(!none.would_enable("secrets_agent", &Level::ERROR));
        assert!(!none.would_enable("hyper", &Level::ERROR));
    }
}
