//! Configuration, parsed once into typed values from (lowest to highest precedence) built-in
//! defaults, a TOML file, environment variables and command-line flags.
//!
//! The TOML file takes the AWS Secrets Manager Agent's keys in both of its layouts (flat keys at
//! the root, or the nested `[logging]` / `[capabilities.secrets_manager]` tables). The
//! environment takes the AWS Parameters and Secrets Lambda Extension's variables and our own
//! `SECRETS_AGENT_*` ones. Every problem is collected and reported at once, each naming the key,
//! the value and what is allowed. The environment is passed in as a map, so tests never touch
//! the process environment.

pub mod arn;
mod aws;
mod cache;
mod environment;
mod file;
mod logs;
mod prefetch;
mod roles;
mod server;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use environment::{env_settings, AWS_EXTENSION_ENV};
use file::{tag_keys, toml_settings};
use roles::{check_roles, role_setting};
use values::{Problems, Raw, Setting};

/// The environment as the agent sees it: a snapshot taken once in `main`.
pub type Env = HashMap<String, String>;

pub const DEFAULT_PORT: u16 = 2773;
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// A safe cap where the AWS extension would wait forever (`*_TIMEOUT_MILLIS=0`).
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TTL_SECONDS: u64 = 86_400;
/// Default byte budget of cached values. Sized for the shipped limits: the ECS sidecar's 64 MiB
/// and the EKS sidecar's 48 Mi hold the agent's own ~10 MiB plus this budget with room for the
/// allocator's slack, and a 128 MB Lambda function keeps most of its memory.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The smallest byte budget: one maximum-size secret (64 KiB) with room to spare.
const MIN_CACHE_MAX_BYTES: u64 = 1024 * 1024;
/// The largest byte budget (4 GiB).
const MAX_CACHE_MAX_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Log levels of the AWS agent and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl LogLevel {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "debug" | "trace" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "none" | "off" => Some(LogLevel::None),
            _ => None,
        }
    }

    pub fn as_filter(self) -> tracing_subscriber::filter::LevelFilter {
        use tracing_subscriber::filter::LevelFilter;
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::None => LevelFilter::OFF,
        }
    }
}

/// Where the HTTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    pub fn is_loopback(&self) -> bool {
        match self {
            Listen::Tcp(addr) => addr.ip().is_loopback(),
            Listen::Unix(_) => true,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "{addr}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Everything the agent needs to know, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_level: LogLevel,
    /// Accepted for compatibility with the AWS agent; logs always go to stderr.
    pub log_to_file: bool,
    pub listen: Listen,
    pub secrets_ttl: Duration,
    pub parameters_ttl: Duration,
    /// Entries across secrets and parameters; 0 disables caching.
    pub cache_size: usize,
    /// Bytes of cached values (bodies, keys and a fixed overhead per entry); the least recently
    /// read value is evicted when this or `cache_size` is passed.
    pub cache_max_bytes: usize,
    pub ssrf_headers: Vec<String>,
    pub ssrf_env_variables: Vec<String>,
    pub path_prefix: String,
    pub max_conn: usize,
    /// Concurrent calls to AWS (the extension's `MAX_CONNECTIONS`).
    pub max_backend_calls: usize,
    pub region: Option<String>,
    pub ignore_transient_errors: bool,
    pub validate_credentials: bool,
    pub secrets_timeout: Duration,
    pub parameters_timeout: Duration,
    /// Share of the TTL after which a read triggers a background refresh.
    pub refresh_ratio: f64,
    /// How long past its TTL a value may be served while AWS fails.
    pub max_stale: Duration,
    /// How long a "not found" answer is remembered.
    pub negative_ttl: Duration,
    pub prefetch_secrets: Vec<String>,
    pub prefetch_parameters: Vec<String>,
    pub prefetch_jitter: Duration,
    /// Share of `cache_size` the prefetch may fill (the AWS provider's `cache_buffer_ratio`):
    /// ids past `max(1, cache_size × share)` are not prefetched.
    pub prefetch_cache_share: f64,
    /// Tag keys: every secret carrying one of them is prefetched at start (3.x `filter_tags`).
    pub prefetch_tags: Vec<String>,
    /// AWS credentials from this file (standard credentials-file format, `[default]` profile),
    /// re-read when it changes, instead of the SDK's default chain (3.x
    /// `credentials_file_path`).
    pub credentials_file: Option<PathBuf>,
    /// Generate a random token and write it here (mode 0444).
    pub token_file: Option<PathBuf>,
    pub header_timeout: Duration,
    /// A fresh connection that sends nothing for this long is closed.
    pub first_byte_timeout: Duration,
    /// A keep-alive connection idle for this long is closed.
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long closes its connection.
    pub write_timeout: Duration,
    pub drain_timeout: Duration,
    /// Problems that do not stop the agent (unknown variables with our prefixes, ignored keys).
    pub warnings: Vec<String>,
    /// `[[files]]`: files kept on a memory filesystem (`render`, or the serving agent).
    pub files: Vec<FileEntry>,
    /// Roles held at once for `roleArn` reads; a new role past it is refused.
    pub max_roles: usize,
    /// Roles callers may name in `roleArn` (exact ARNs); empty: any role.
    pub allowed_roles: Vec<String>,
    /// RoleSessionName of every AssumeRole.
    pub role_session_name: String,
    /// Prefetch entries that name a `role_arn`: role → secret ids, read as that role.
    pub prefetch_role_secrets: BTreeMap<String, Vec<String>>,
    /// Tag filters that name a `role_arn`: role → tag keys, the tagged secrets read as that role.
    pub prefetch_role_tags: BTreeMap<String, Vec<String>>,
}

/// The mode of a rendered file unless told otherwise: readable by its owner only.
pub const DEFAULT_FILE_MODE: u32 = 0o400;

/// One `[[files]]` entry. The placeholders are checked by `render`, which parses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute target path.
    pub path: PathBuf,
    pub content: FileContent,
    /// Permission bits (no setuid, setgid or sticky bit).
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Write even where the filesystem is not tmpfs or ramfs.
    pub allow_disk: bool,
}

/// What goes in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// A placeholder (`awssm:db#password`) or text with `${awssm:...}` in it.
    Source(String),
    /// A template file whose `${awssm:...}` placeholders are filled.
    Template(PathBuf),
}

/// A file mode in octal (`0400`, `440`, `0o640`).
pub fn parse_file_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "{s:?} is not a file mode: give octal permission bits from 0000 to 0777, e.g. 0400"
        )),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: LogLevel::Info,
            log_to_file: false,
            listen: Listen::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_PORT,
            )),
            secrets_ttl: DEFAULT_TTL,
            parameters_ttl: DEFAULT_TTL,
            cache_size: 1000,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            ssrf_headers: vec![
                "X-Aws-Parameters-Secrets-Token".into(),
                "X-Vault-Token".into(),
            ],
            ssrf_env_variables: vec![
                "AWS_TOKEN".into(),
                "AWS_SESSION_TOKEN".into(),
                "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
            ],
            path_prefix: "/v1/".into(),
            max_conn: 800,
            max_backend_calls: 3,
            region: None,
            ignore_transient_errors: true,
            validate_credentials: true,
            secrets_timeout: DEFAULT_BACKEND_TIMEOUT,
            parameters_timeout: DEFAULT_BACKEND_TIMEOUT,
            refresh_ratio: 0.8,
            max_stale: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(5),
            prefetch_secrets: Vec::new(),
            prefetch_parameters: Vec::new(),
            prefetch_jitter: Duration::ZERO,
            prefetch_cache_share: 0.8,
            prefetch_tags: Vec::new(),
            credentials_file: None,
            token_file: None,
            header_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(5),
            // Longer than the usual client pool idle time (Python's urllib3 and the AWS SDKs
            // keep connections for up to about 60 s), so a client closes first and never
            // reuses a connection we are closing.
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            warnings: Vec::new(),
            files: Vec::new(),
            // The AWS Workload Credentials Provider 3.x default.
            max_roles: 20,
            allowed_roles: Vec::new(),
            role_session_name: arn::DEFAULT_SESSION_NAME.into(),
            prefetch_role_secrets: BTreeMap::new(),
            prefetch_role_tags: BTreeMap::new(),
        }
    }
}

/// Command-line overrides (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    /// As given on the command line; checked with the other settings.
    pub port: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// Every problem found, each naming what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Concurrent AWS calls used at most, whatever MAX_CONNECTIONS says.
const MAX_BACKEND_CALLS: u64 = 10_000;

/// What the settings decide together once all are read: the port and address make the listen
/// address, and `cache_enabled = false` sets the cache size to 0.
struct Pending {
    port: u16,
    address: Option<(String, String)>,
    cache_enabled: bool,
}

impl Config {
    /// Builds the configuration from the environment and command-line overrides, reading the
    /// TOML file they name (`--config` or `SECRETS_AGENT_CONFIG`).
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        if overrides
            .config_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError(vec![
                "--config is empty: give the path of a TOML file, or leave the flag out".into(),
            ]));
        }
        // An empty variable means the default (no file), as for every other variable.
        let path = overrides.config_file.clone().or_else(|| {
            env.get("SECRETS_AGENT_CONFIG")
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        });
        let text = match &path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    return Err(ConfigError(vec![format!(
                        "config file {}: cannot be read: {e}",
                        p.display()
                    )]))
                }
            },
            None => None,
        };
        Config::from_sources(text.as_deref(), overrides, env)
    }

    /// Builds the configuration from TOML text (if any), the environment and overrides.
    pub fn from_sources(
        toml_text: Option<&str>,
        overrides: &Overrides,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let mut config = Config::default();
        let mut settings = Vec::new();
        if let Some(text) = toml_text {
            toml_settings(text, &mut settings, &mut config.files, &mut problems);
        }
        env_settings(env, &mut settings, &mut config.warnings);
        if let Some(listen) = &overrides.listen {
            settings.push(Setting {
                key: "listen_address".into(),
                shown: "--listen".into(),
                raw: Raw::Str(listen.clone()),
            });
        }
        if let Some(port) = &overrides.port {
            settings.push(Setting {
                key: "http_port".into(),
                shown: "--port".into(),
                raw: Raw::Str(port.clone()),
            });
        }
        if let Some(token_file) = &overrides.token_file {
            settings.push(Setting {
                key: "token_file".into(),
                shown: "--token-file".into(),
                raw: Raw::Str(token_file.display().to_string()),
            });
        }

        let mut at = Pending {
            port: DEFAULT_PORT,
            address: None,
            cache_enabled: true,
        };
        for setting in &settings {
            let p = &mut problems;
            // Each section takes its own keys; the AWS extension's variables are clamped where it
            // clamps them, our own keys (TOML, SECRETS_AGENT_*) keep strict ranges.
            let taken = role_setting(&mut config, &setting.key, &setting.shown, &setting.raw, p)
                || logs::apply(&mut config, &mut at, setting, p)
                || server::apply(&mut config, &mut at, setting, p)
                || cache::apply(&mut config, &mut at, setting, p)
                || aws::apply(&mut config, &mut at, setting, p)
                || prefetch::apply(&mut config, &mut at, setting, p);
            if !taken {
                p.push(format!(
                    "{}: unknown key {:?}; see the README's settings table for the keys \
                     secrets-agent understands",
                    setting.shown, setting.key
                ));
            }
        }
        if !at.cache_enabled {
            config.cache_size = 0;
        }
        check_roles(&mut config, &settings, env, &mut problems);
        config.listen = match at.address {
            None => Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), at.port)),
            Some((name, s)) => match parse_listen(&s, at.port) {
                Ok(l) => l,
                Err(why) => {
                    problems.push(format!("{name} = {s:?}: {why}"));
                    config.listen.clone()
                }
            },
        };
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems.0))
        }
    }

    /// True when nothing may be cached (`cache_size = 0` or caching disabled).
    pub fn caching_disabled(&self) -> bool {
        self.cache_size == 0
    }

    /// How many entries the prefetch may fill, per set of credentials (the agent's own, each
    /// role), as 3.x's warm-up limit: `max(1, cache_size × cache_buffer_ratio)`.
    pub fn prefetch_limit(&self) -> usize {
        ((self.cache_size as f64 * self.prefetch_cache_share) as usize).max(1)
    }

    /// The secrets and parameters to prefetch with the agent's own credentials, cut to
    /// [`Config::prefetch_limit`] (secrets first), and how many were left out.
    pub fn prefetch_ids(&self) -> (Vec<String>, Vec<String>, usize) {
        let limit = self.prefetch_limit();
        let secrets: Vec<String> = self.prefetch_secrets.iter().take(limit).cloned().collect();
        let parameters: Vec<String> = (self.prefetch_parameters.iter())
            .take(limit - secrets.len())
            .cloned()
            .collect();
        let left_out = self.prefetch_secrets.len() + self.prefetch_parameters.len()
            - secrets.len()
            - parameters.len();
        (secrets, parameters, left_out)
    }
}

/// `127.0.0.1`, `::1`, `[::1]:2773`, `0.0.0.0:8080` or `unix:/path/to.sock`.
fn parse_listen(s: &str, port: u16) -> Result<Listen, &'static str> {
    let s = s.trim();
    if let Some(path) = s.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err("a unix socket path must be absolute, e.g. unix:/run/secrets-agent.sock");
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Listen::Tcp(addr));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| Listen::Tcp(SocketAddr::new(ip, port)))
        .map_err(|_| {
            "must be an IP address (127.0.0.1, ::1), an address:port, or unix:/absolute/path"
        })
}

/// An environment from pairs, for tests.
#[cfg(test)]
pub(crate) fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests;
