//! The config parser: any TOML text and environment give a config or a list of problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_agent::config::{Config, Env, Overrides};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::from_sources(Some(&text), &Overrides::default(), &Env::new());
    // The same text as the values of the extension's variables.
    let mut env = Env::new();
    for (i, var) in [
        "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE",
        "SECRETS_MANAGER_TTL",
        "SECRETS_AGENT_LISTEN",
        "SECRETS_AGENT_REFRESH_RATIO",
    ]
    .iter()
    .enumerate()
    {
        let part: String = text.chars().skip(i * 8).take(16).collect();
        env.insert(var.to_string(), part);
    }
    let _ = Config::from_sources(None, &Overrides::default(), &env);
});
