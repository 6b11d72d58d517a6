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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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

/// The AWS extension's own variables: clamped rather than refused where it clamps or sets no
/// maximum.
const AWS_EXTENSION_ENV: &[&str] = &[
    "SECRETS_MANAGER_TTL",
    "SSM_PARAMETER_STORE_TTL",
    "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS",
    "SECRETS_MANAGER_TIMEOUT_MILLIS",
    "SSM_PARAMETER_STORE_TIMEOUT_MILLIS",
];

/// Concurrent AWS calls used at most, whatever MAX_CONNECTIONS says.
const MAX_BACKEND_CALLS: u64 = 10_000;

/// The environment variables we own or recognise, for the "unknown variable" warning.
const KNOWN_ENV: &[&str] = &[
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

const WATCHED_PREFIXES: &[&str] = &[
    "PARAMETERS_SECRETS_",
    "PARAMETERS_AND_SECRETS_",
    "SECRETS_MANAGER_",
    "SSM_PARAMETER_STORE_",
    "SECRETS_AGENT_",
];

/// The nested layout of the AWS agent, mapped onto the flat keys.
const NESTED_KEYS: &[(&str, &str)] = &[
    ("logging.log_level", "log_level"),
    ("logging.log_to_file", "log_to_file"),
    ("capabilities.secrets_manager.enabled", "enabled"),
    ("capabilities.secrets_manager.http_port", "http_port"),
    ("capabilities.secrets_manager.http_address", "http_address"),
    ("capabilities.secrets_manager.region", "region"),
    ("capabilities.secrets_manager.path_prefix", "path_prefix"),
    ("capabilities.secrets_manager.max_conn", "max_conn"),
    ("capabilities.secrets_manager.max_roles", "max_roles"),
    (
        "capabilities.secrets_manager.allowed_roles",
        "allowed_roles",
    ),
    (
        "capabilities.secrets_manager.role_session_name",
        "role_session_name",
    ),
    (
        "capabilities.secrets_manager.ignore_transient_errors",
        "ignore_transient_errors",
    ),
    (
        "capabilities.secrets_manager.validate_credentials",
        "validate_credentials",
    ),
    (
        "capabilities.secrets_manager.cache.ttl_seconds",
        "ttl_seconds",
    ),
    (
        "capabilities.secrets_manager.cache.cache_size",
        "cache_size",
    ),
    (
        "capabilities.secrets_manager.cache.cache_max_bytes",
        "cache_max_bytes",
    ),
    (
        "capabilities.secrets_manager.security.ssrf_headers",
        "ssrf_headers",
    ),
    (
        "capabilities.secrets_manager.security.ssrf_env_variables",
        "ssrf_env_variables",
    ),
    (
        "capabilities.secrets_manager.cache.refresh_ratio",
        "refresh_ratio",
    ),
    (
        "capabilities.secrets_manager.prefetch.cache_buffer_ratio",
        "cache_buffer_ratio",
    ),
    (
        "capabilities.secrets_manager.prefetch.max_jitter_seconds",
        "max_jitter_seconds",
    ),
    ("capabilities.secrets_manager.prefetch.secrets", "prefetch"),
    (
        "capabilities.secrets_manager.prefetch.filter_tags",
        "filter_tags",
    ),
    // 3.x's flat layout keeps its prefetch settings in a root `[prefetch]` table.
    ("prefetch.cache_buffer_ratio", "cache_buffer_ratio"),
    ("prefetch.max_jitter_seconds", "max_jitter_seconds"),
    ("prefetch.secrets", "prefetch"),
    ("prefetch.filter_tags", "filter_tags"),
    (
        "capabilities.secrets_manager.credentials_file_path",
        "credentials_file_path",
    ),
];

/// Collects problems while values are parsed.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, p: String) {
        self.0.push(p);
    }

    fn int(&mut self, name: &str, raw: &Raw, min: u64, max: u64) -> Option<u64> {
        let parsed = match raw {
            Raw::Int(i) => u64::try_from(*i).ok(),
            Raw::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.push(format!(
                    "{name} = {raw}: must be a whole number from {min} to {max}"
                ));
                None
            }
        }
    }

    /// Like [`Problems::int`], but a value above `max` is used as `max` with a warning: how the
    /// AWS extension treats its own variables (it clamps `SECRETS_MANAGER_TTL` to its cap), so a
    /// function configured for it starts here too.
    fn int_clamped(
        &mut self,
        name: &str,
        raw: &Raw,
        min: u64,
        max: u64,
        warnings: &mut Vec<String>,
    ) -> Option<u64> {
        let parsed = match raw {
            Raw::Int(i) => u64::try_from(*i).ok(),
            Raw::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if v > max => {
                warnings.push(format!(
                    "{name} = {raw} is above the maximum secrets-agent allows; using {max}"
                ));
                Some(max)
            }
            Some(v) if v >= min => Some(v),
            _ => {
                self.push(format!(
                    "{name} = {raw}: must be a whole number of at least {min} (values above \
                     {max} are used as {max})"
                ));
                None
            }
        }
    }

    fn float(&mut self, name: &str, raw: &Raw, min: f64, max: f64) -> Option<f64> {
        let parsed = match raw {
            Raw::Int(i) => Some(*i as f64),
            Raw::Float(f) => Some(*f),
            Raw::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if v >= min && v <= max => Some(v),
            _ => {
                self.push(format!(
                    "{name} = {raw}: must be a number from {min} to {max}"
                ));
                None
            }
        }
    }

    fn boolean(&mut self, name: &str, raw: &Raw) -> Option<bool> {
        let parsed = match raw {
            Raw::Bool(b) => Some(*b),
            Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.push(format!("{name} = {raw}: must be true or false"));
        }
        parsed
    }

    fn string(&mut self, name: &str, raw: &Raw) -> Option<String> {
        match raw {
            Raw::Str(s) => Some(s.clone()),
            _ => {
                self.push(format!("{name} = {raw}: must be a string"));
                None
            }
        }
    }

    fn strings(&mut self, name: &str, raw: &Raw) -> Option<Vec<String>> {
        match raw {
            Raw::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Raw::Str(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => {
                            self.push(format!(
                                "{name} = {raw}: must be a list of non-empty strings"
                            ));
                            return None;
                        }
                    }
                }
                Some(out)
            }
            // The environment gives lists as comma-separated strings.
            Raw::Str(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            _ => {
                self.push(format!("{name} = {raw}: must be a list of strings"));
                None
            }
        }
    }
}

/// A value as it came from TOML or the environment, before it is typed.
#[derive(Debug, Clone)]
enum Raw {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Raw>),
    Table(String),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Str(s) => write!(f, "{s:?}"),
            Raw::Int(i) => write!(f, "{i}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Raw::Table(t) => write!(f, "{{{t}}}"),
        }
    }
}

impl From<&toml::Value> for Raw {
    fn from(v: &toml::Value) -> Self {
        match v {
            toml::Value::String(s) => Raw::Str(s.clone()),
            toml::Value::Integer(i) => Raw::Int(*i),
            toml::Value::Float(x) => Raw::Float(*x),
            toml::Value::Boolean(b) => Raw::Bool(*b),
            toml::Value::Array(items) => Raw::List(items.iter().map(Raw::from).collect()),
            toml::Value::Table(t) => Raw::Table(
                t.iter()
                    .map(|(k, v)| format!("{k} = {}", Raw::from(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            toml::Value::Datetime(d) => Raw::Str(d.to_string()),
        }
    }
}

/// One setting from one source: the flat key it sets, the name to show in messages, the value.
struct Setting {
    key: String,
    shown: String,
    raw: Raw,
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

        let mut port = DEFAULT_PORT;
        let mut address: Option<(String, String)> = None;
        let mut cache_enabled = true;
        for Setting { key, shown, raw } in &settings {
            let name = shown.as_str();
            let p = &mut problems;
            // The AWS extension's variables are clamped where it clamps them; our own keys
            // (TOML, SECRETS_AGENT_*) keep strict ranges.
            let aws_extension_var = AWS_EXTENSION_ENV.contains(&name);
            if role_setting(&mut config, key, name, raw, p) {
                continue;
            }
            let warnings = &mut config.warnings;
            match key.as_str() {
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
                "http_port" => {
                    if let Some(v) = p.int(name, raw, 1, 65535) {
                        port = v as u16;
                    }
                }
                "http_address" | "listen_address" => {
                    if let Some(s) = p.string(name, raw) {
                        address = Some((name.to_string(), s));
                    }
                }
                "region" => {
                    if let Some(s) = p.string(name, raw) {
                        config.region = Some(s).filter(|s| !s.is_empty());
                    }
                }
                "ttl_seconds" | "secrets_ttl_seconds" => {
                    let v = if aws_extension_var {
                        p.int_clamped(name, raw, 0, MAX_TTL_SECONDS, warnings)
                    } else {
                        p.int(name, raw, 0, MAX_TTL_SECONDS)
                    };
                    if let Some(v) = v {
                        config.secrets_ttl = Duration::from_secs(v);
                        if key == "ttl_seconds" {
                            config.parameters_ttl = Duration::from_secs(v);
                        }
                    }
                }
                "parameters_ttl_seconds" => {
                    let v = if aws_extension_var {
                        p.int_clamped(name, raw, 0, MAX_TTL_SECONDS, warnings)
                    } else {
                        p.int(name, raw, 0, MAX_TTL_SECONDS)
                    };
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
                        cache_enabled = b;
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
                "max_backend_calls" => {
                    // The AWS extension documents no maximum for MAX_CONNECTIONS; past this
                    // many concurrent calls AWS throttles anyway.
                    let v = if aws_extension_var {
                        p.int_clamped(name, raw, 1, MAX_BACKEND_CALLS, warnings)
                    } else {
                        p.int(name, raw, 1, MAX_BACKEND_CALLS)
                    };
                    if let Some(v) = v {
                        config.max_backend_calls = v as usize;
                    }
                }
                "ignore_transient_errors" => {
                    if let Some(b) = p.boolean(name, raw) {
                        config.ignore_transient_errors = b;
                    }
                }
                "validate_credentials" => {
                    if let Some(b) = p.boolean(name, raw) {
                        config.validate_credentials = b;
                    }
                }
                "secrets_timeout_millis" | "parameters_timeout_millis" => {
                    let v = if aws_extension_var {
                        p.int_clamped(name, raw, 0, 600_000, warnings)
                    } else {
                        p.int(name, raw, 0, 600_000)
                    };
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
                "token_file" => {
                    if let Some(s) = p.string(name, raw) {
                        if s.is_empty() {
                            p.push(format!("{name} = {raw}: must be a file path"));
                        } else {
                            config.token_file = Some(PathBuf::from(s));
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
                "filter_tags" | "prefetch_tags" => {
                    if let Some(v) = p.strings(name, raw) {
                        if let Some(tags) = tag_keys(name, v, p) {
                            config.prefetch_tags = tags;
                        }
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
                other => p.push(format!(
                    "{name}: unknown key {other:?}; see the README's settings table for the keys \
                     secrets-agent understands"
                )),
            }
        }

        if !cache_enabled {
            config.cache_size = 0;
        }
        check_roles(&mut config, &settings, env, &mut problems);
        config.listen = match address {
            None => Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            Some((name, s)) => match parse_listen(&s, port) {
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

fn toml_settings(
    text: &str,
    settings: &mut Vec<Setting>,
    files: &mut Vec<FileEntry>,
    problems: &mut Problems,
) {
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("config file is not valid TOML: {}", e.message()));
            return;
        }
    };
    if let Some(value) = table.remove("files") {
        *files = files_from_toml(&value, problems);
    }
    let mut flat = BTreeMap::new();
    flatten("", &table, &mut flat);
    for (path, value) in flat {
        let key = if path.contains('.') {
            match NESTED_KEYS.iter().find(|(nested, _)| *nested == path) {
                Some((_, flat_key)) => flat_key.to_string(),
                None => {
                    problems.push(format!(
                        "{path}: unknown key; nested keys live under [logging], [prefetch] and \
                         [capabilities.secrets_manager] (see the README)"
                    ));
                    continue;
                }
            }
        } else {
            path.clone()
        };
        let by_role = match key.as_str() {
            "prefetch" => Some(("prefetch_roles", prefetch_from_toml(&path, value, problems))),
            "filter_tags" => Some((
                "prefetch_role_tags",
                filter_tags_from_toml(&path, value, problems),
            )),
            _ => None,
        };
        let raw = if let Some((role_key, parsed)) = by_role {
            let Some((own, by_role)) = parsed else {
                continue;
            };
            if let Some(by_role) = by_role {
                settings.push(Setting {
                    key: role_key.into(),
                    shown: path.clone(),
                    raw: by_role,
                });
            }
            own
        } else {
            Raw::from(value)
        };
        settings.push(Setting {
            key,
            shown: path,
            raw,
        });
    }
}

/// Flattens nested tables to dotted paths, stopping at known leaves.
fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut BTreeMap<String, &'a toml::Value>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !NESTED_KEYS.iter().any(|(n, _)| *n == path) => {
                flatten(&path, t, out)
            }
            _ => {
                out.insert(path, v);
            }
        }
    }
}

/// `[[files]]` tables: `path`, one of `source` or `template`, and optional `mode`, `uid`,
/// `gid`, `allow_disk`.
fn files_from_toml(value: &toml::Value, problems: &mut Problems) -> Vec<FileEntry> {
    let Some(items) = value.as_array() else {
        problems.push(
            "files: must be an array of tables ([[files]] with path = ... and source = ...)".into(),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("[[files]] #{}", i + 1);
        let Some(t) = item.as_table() else {
            problems.push(format!(
                "{at}: must be a table with path = ... and source = ..."
            ));
            continue;
        };
        let before = problems.0.len();
        let string = |key: &str, problems: &mut Problems| match t.get(key) {
            None => None,
            Some(toml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v) => {
                problems.push(format!(
                    "{at}: {key} = {}: must be a non-empty string",
                    Raw::from(v)
                ));
                None
            }
        };
        let id = |key: &str, problems: &mut Problems| match t.get(key) {
            None => None,
            Some(toml::Value::Integer(n)) if (0..=i64::from(u32::MAX - 1)).contains(n) => {
                Some(*n as u32)
            }
            Some(v) => {
                problems.push(format!(
                    "{at}: {key} = {}: must be a numeric id from 0 to {}",
                    Raw::from(v),
                    u32::MAX - 1
                ));
                None
            }
        };
        for key in t.keys() {
            if ![
                "path",
                "source",
                "template",
                "mode",
                "uid",
                "gid",
                "allow_disk",
            ]
            .contains(&key.as_str())
            {
                problems.push(format!(
                    "{at}: unknown key {key:?}; allowed: path, source, template, mode, uid, gid, \
                     allow_disk"
                ));
            }
        }
        let path = string("path", problems).map(PathBuf::from);
        match &path {
            None if problems.0.len() == before => {
                problems.push(format!("{at}: path = \"/absolute/target\" is required"))
            }
            Some(p) if !p.is_absolute() => problems.push(format!(
                "{at}: path = {:?}: must be an absolute path",
                p.display().to_string()
            )),
            _ => {}
        }
        let content = match (string("source", problems), string("template", problems)) {
            (Some(s), None) => Some(FileContent::Source(s)),
            (None, Some(t)) => Some(FileContent::Template(PathBuf::from(t))),
            (Some(_), Some(_)) => {
                problems.push(format!("{at}: give source or template, not both"));
                None
            }
            (None, None) => {
                problems.push(format!(
                    "{at}: needs source = \"awssm:<id>[#<key>]\" (or awsparam:...) or \
                     template = \"/path/to/template\""
                ));
                None
            }
        };
        let mode = match t.get("mode") {
            None => Some(DEFAULT_FILE_MODE),
            Some(toml::Value::String(s)) => parse_file_mode(s)
                .map_err(|e| problems.push(format!("{at}: mode: {e}")))
                .ok(),
            Some(toml::Value::Integer(n)) if (0..=0o777).contains(n) => Some(*n as u32),
            Some(v) => {
                problems.push(format!(
                    "{at}: mode = {}: must be an octal string such as \"0400\" (or 0o400)",
                    Raw::from(v)
                ));
                None
            }
        };
        let uid = id("uid", problems);
        let gid = id("gid", problems);
        let allow_disk = match t.get("allow_disk") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(v) => {
                problems.push(format!(
                    "{at}: allow_disk = {}: must be true or false",
                    Raw::from(v)
                ));
                false
            }
        };
        if problems.0.len() == before {
            if let (Some(path), Some(content), Some(mode)) = (path, content, mode) {
                out.push(FileEntry {
                    path,
                    content,
                    mode,
                    uid,
                    gid,
                    allow_disk,
                });
            }
        }
    }
    out
}

/// `prefetch = ["a", "b"]` or `secrets = [{ secret_id = "a", role_arn = "..." }, ...]`: the
/// ids read with the agent's own credentials, and the (role, id) pairs of entries that name a
/// role (`None` when there are none).
fn prefetch_from_toml(
    path: &str,
    value: &toml::Value,
    problems: &mut Problems,
) -> Option<(Raw, Option<Raw>)> {
    let Some(items) = value.as_array() else {
        problems.push(format!("{path} = {}: must be a list", Raw::from(value)));
        return None;
    };
    let mut ids = Vec::new();
    let mut by_role = Vec::new();
    for item in items {
        match item {
            toml::Value::String(s) => ids.push(Raw::Str(s.clone())),
            toml::Value::Table(t) => {
                let (id, role) =
                    entry_with_role(path, "a prefetch entry", "secret_id", t, problems)?;
                match role {
                    None => ids.push(Raw::Str(id)),
                    Some(role) => by_role.push(Raw::List(vec![Raw::Str(role), Raw::Str(id)])),
                }
            }
            other => {
                problems.push(format!(
                    "{path}: entry {} must be a string or {{ secret_id = \"...\" }}",
                    Raw::from(other)
                ));
                return None;
            }
        }
    }
    let by_role = (!by_role.is_empty()).then_some(Raw::List(by_role));
    Some((Raw::List(ids), by_role))
}

/// The role settings (`max_roles`, `allowed_roles`, `role_session_name`, prefetch entries
/// with a `role_arn`); false when `key` is not one of them.
fn role_setting(config: &mut Config, key: &str, name: &str, raw: &Raw, p: &mut Problems) -> bool {
    match key {
        "max_roles" => {
            if let Some(v) = p.int(name, raw, 1, 1000) {
                config.max_roles = v as usize;
            }
        }
        "allowed_roles" => {
            if let Some(roles) = p.strings(name, raw) {
                for role in &roles {
                    if let Err(why) = arn::check_role_arn(role) {
                        p.push(format!("{name}: {role:?} {why}"));
                    }
                }
                config.allowed_roles = roles;
            }
        }
        "role_session_name" => {
            if let Some(s) = p.string(name, raw) {
                match arn::check_session_name(&s) {
                    Ok(()) => config.role_session_name = s,
                    Err(why) => p.push(format!("{name} = {raw}: {why}")),
                }
            }
        }
        "prefetch_roles" => {
            for (role, id) in role_pairs(raw) {
                match arn::check_role_arn(role) {
                    Ok(()) => config
                        .prefetch_role_secrets
                        .entry(role.clone())
                        .or_default()
                        .push(id.clone()),
                    Err(why) => p.push(format!("{name}: role_arn = {role:?}: {why}")),
                }
            }
        }
        "prefetch_role_tags" => {
            for (role, key) in role_pairs(raw) {
                if let Err(why) = arn::check_role_arn(role) {
                    p.push(format!("{name}: role_arn = {role:?}: {why}"));
                } else if tag_keys(name, vec![key.clone()], p).is_some() {
                    let held = config.prefetch_role_tags.entry(role.clone()).or_default();
                    if !held.contains(key) {
                        held.push(key.clone());
                    }
                }
            }
        }
        _ => return false,
    }
    true
}

/// The (role, id or tag key) pairs that `prefetch_from_toml` and `filter_tags_from_toml` set
/// aside for entries naming a `role_arn`.
fn role_pairs(raw: &Raw) -> impl Iterator<Item = (&String, &String)> {
    let pairs = match raw {
        Raw::List(pairs) => pairs.as_slice(),
        _ => &[],
    };
    pairs.iter().filter_map(|pair| match pair {
        Raw::List(pair) => match pair.as_slice() {
            [Raw::Str(role), Raw::Str(item)] => Some((role, item)),
            _ => None,
        },
        _ => None,
    })
}

/// Checks the role settings against each other once all are read, and takes the session name
/// from `AWS_ROLE_SESSION_NAME` (the SDKs' standard variable) when no key gave one.
fn check_roles(config: &mut Config, settings: &[Setting], env: &Env, problems: &mut Problems) {
    let named = settings.iter().any(|s| s.key == "role_session_name");
    if let Some(v) = env
        .get("AWS_ROLE_SESSION_NAME")
        .filter(|v| !named && !v.is_empty())
    {
        match arn::check_session_name(v) {
            Ok(()) => config.role_session_name = v.clone(),
            Err(why) => problems.push(format!("AWS_ROLE_SESSION_NAME = {v:?}: {why}")),
        }
    }
    let named = (config.prefetch_role_secrets.keys().map(|r| ("prefetch", r)))
        .chain(config.prefetch_role_tags.keys().map(|r| ("filter_tags", r)));
    let mut roles = std::collections::BTreeSet::new();
    for (setting, role) in named {
        if !config.allowed_roles.is_empty() && !config.allowed_roles.contains(role) {
            problems.push(format!(
                "{setting}: role_arn = {role:?} is not in allowed_roles; add it there or remove \
                 the entry"
            ));
        }
        roles.insert(role);
    }
    let roles = roles.len();
    if roles > config.max_roles {
        problems.push(format!(
            "prefetch names {roles} roles but max_roles = {}; raise max_roles to at least {roles}",
            config.max_roles
        ));
    }
}

/// `filter_tags = [{ key = "Team" }, { key = "Env", role_arn = "..." }, ...]` (3.x) or
/// `["Team", ...]`: the keys read with the agent's own credentials, and the (role, key) pairs
/// of filters that name a role (`None` when there are none).
fn filter_tags_from_toml(
    path: &str,
    value: &toml::Value,
    problems: &mut Problems,
) -> Option<(Raw, Option<Raw>)> {
    let Some(items) = value.as_array() else {
        problems.push(format!(
            "{path} = {}: must be a list such as [{{ key = \"Team\" }}]",
            Raw::from(value)
        ));
        return None;
    };
    let mut keys = Vec::new();
    let mut by_role = Vec::new();
    for item in items {
        match item {
            toml::Value::String(s) => keys.push(Raw::Str(s.clone())),
            toml::Value::Table(t) => {
                let (key, role) = entry_with_role(path, "a tag filter", "key", t, problems)?;
                match role {
                    None => keys.push(Raw::Str(key)),
                    Some(role) => by_role.push(Raw::List(vec![Raw::Str(role), Raw::Str(key)])),
                }
            }
            other => {
                problems.push(format!(
                    "{path}: entry {} must be a string or {{ key = \"...\" }}",
                    Raw::from(other)
                ));
                return None;
            }
        }
    }
    let by_role = (!by_role.is_empty()).then_some(Raw::List(by_role));
    Some((Raw::List(keys), by_role))
}

/// `{ FIELD = "...", role_arn = "..." }`, an entry of `prefetch` (`secret_id`) or `filter_tags`
/// (`key`): the field's value and the role when one is named.
fn entry_with_role(
    path: &str,
    what: &str,
    field: &str,
    t: &toml::Table,
    problems: &mut Problems,
) -> Option<(String, Option<String>)> {
    if let Some(unknown) = t.keys().find(|k| *k != field && *k != "role_arn") {
        problems.push(format!(
            "{path}: unknown key {unknown:?} in {what}; allowed: {field}, role_arn"
        ));
        return None;
    }
    let role = match t.get("role_arn") {
        None => None,
        Some(toml::Value::String(r)) => Some(r.clone()),
        Some(other) => {
            problems.push(format!(
                "{path}: role_arn = {}: must be a role ARN string",
                Raw::from(other)
            ));
            return None;
        }
    };
    match t.get(field).and_then(|v| v.as_str()) {
        Some(v) => Some((v.to_string(), role)),
        None => {
            problems.push(format!("{path}: each entry needs {field} = \"...\""));
            None
        }
    }
}

/// Tag keys as Secrets Manager's `tag-key` filter takes them: 1 to 512 characters of its
/// pattern. A leading `!` (the filter's negation) is refused: it would prefetch every secret
/// *without* the tag.
fn tag_keys(name: &str, keys: Vec<String>, p: &mut Problems) -> Option<Vec<String>> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || " :_@/+=.-".contains(c);
    for k in &keys {
        if k.starts_with('!') {
            p.push(format!(
                "{name}: tag key {k:?} starts with '!', which Secrets Manager reads as \
                 \"without this tag\"; give the tag key itself"
            ));
            return None;
        }
        if k.len() > 512 || !k.chars().all(allowed) {
            p.push(format!(
                "{name}: tag key {k:?} is not one Secrets Manager can filter by: use at most \
                 512 letters, digits, spaces and : _ @ / + = . -"
            ));
            return None;
        }
    }
    let mut unique = Vec::with_capacity(keys.len());
    for k in keys {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    Some(unique)
}

/// The environment variables of the AWS extension and our own.
fn env_settings(env: &Env, settings: &mut Vec<Setting>, warnings: &mut Vec<String>) {
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

/// An environment from pairs, for tests.
#[cfg(test)]
pub(crate) fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: Option<&str>, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(toml, &Overrides::default(), &env(pairs))
    }

    #[test]
    fn defaults_match_the_aws_agent() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2773");
        assert_eq!(c.secrets_ttl, Duration::from_secs(300));
        assert_eq!(c.cache_size, 1000);
        assert_eq!(c.max_conn, 800);
        assert_eq!(c.path_prefix, "/v1/");
        assert_eq!(c.ssrf_headers.len(), 2);
        assert_eq!(c.ssrf_env_variables[1], "AWS_SESSION_TOKEN");
    }

    #[test]
    fn flat_layout_loads_with_numbers_or_numeric_strings() {
        let c = load(
            Some(
                r#"
                log_level = "DEBUG"
                http_port = "2775"
                ttl_seconds = 60
                cache_size = "10"
                ssrf_headers = ["X-Token"]
                ssrf_env_variables = ["MY_TOKEN"]
                path_prefix = "/secrets/"
                max_conn = 20
                region = "eu-west-1"
                validate_credentials = false
                ignore_transient_errors = false
                log_to_file = false
                "#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.listen.to_string(), "127.0.0.1:2775");
        assert_eq!(c.secrets_ttl, Duration::from_secs(60));
        assert_eq!(c.parameters_ttl, Duration::from_secs(60));
        assert_eq!(c.cache_size, 10);
        assert_eq!(c.ssrf_headers, vec!["X-Token"]);
        assert_eq!(c.path_prefix, "/secrets/");
        assert_eq!(c.max_conn, 20);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert!(!c.ignore_transient_errors);
    }

    #[test]
    fn nested_layout_loads() {
        let c = load(
            Some(
                r#"
                [logging]
                log_level = "warn"
                [capabilities.secrets_manager]
                enabled = true
                http_port = 2999
                max_conn = 50
                [capabilities.secrets_manager.cache]
                ttl_seconds = 1800
                cache_size = 200
                [capabilities.secrets_manager.security]
                ssrf_headers = ["X-Custom"]
                ssrf_env_variables = ["MY_TOKEN"]
                [capabilities.secrets_manager.prefetch]
                cache_buffer_ratio = 0.5
                [[capabilities.secrets_manager.prefetch.secrets]]
                secret_id = "db-password"
                [[capabilities.secrets_manager.prefetch.secrets]]
                secret_id = "api-key"
                "#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.listen.to_string(), "127.0.0.1:2999");
        assert_eq!(c.secrets_ttl, Duration::from_secs(1800));
        assert_eq!(c.cache_size, 200);
        assert_eq!(c.ssrf_env_variables, vec!["MY_TOKEN"]);
        assert_eq!(c.prefetch_cache_share, 0.5);
        assert_eq!(
            c.refresh_ratio, 0.8,
            "cache_buffer_ratio is not the refresh share"
        );
        assert_eq!(c.prefetch_secrets, vec!["db-password", "api-key"]);
    }

    /// Issue 22.1: `cache_buffer_ratio` and `max_jitter_seconds` mean what they mean in the AWS
    /// Workload Credentials Provider 3.x (prefetch's share of the cache, 0.1–1.0; jitter before
    /// the prefetch, 0–10 s) in its flat `[prefetch]` table and in the nested layout; our
    /// refresh-ahead share is `refresh_ratio` in both.
    #[test]
    fn aws_prefetch_keys_keep_their_meaning_in_both_layouts() {
        let flat = r#"
            refresh_ratio = 0.6
            cache_size = 10
            [prefetch]
            cache_buffer_ratio = 0.3
            max_jitter_seconds = 10
            secrets = [{ secret_id = "a" }, { secret_id = "b" }]
        "#;
        let nested = r#"
            [capabilities.secrets_manager.cache]
            refresh_ratio = 0.6
            cache_size = 10
            [capabilities.secrets_manager.prefetch]
            cache_buffer_ratio = 0.3
            max_jitter_seconds = 10
            secrets = [{ secret_id = "a" }, { secret_id = "b" }]
        "#;
        for toml in [flat, nested] {
            let c = load(Some(toml), &[]).unwrap();
            assert_eq!(c.refresh_ratio, 0.6, "{toml}");
            assert_eq!(c.prefetch_cache_share, 0.3, "{toml}");
            assert_eq!(c.prefetch_jitter, Duration::from_secs(10), "{toml}");
            assert_eq!(c.prefetch_secrets, vec!["a", "b"], "{toml}");
        }
        for (prefix, table) in [
            ("prefetch", "[prefetch]"),
            (
                "capabilities.secrets_manager.prefetch",
                "[capabilities.secrets_manager.prefetch]",
            ),
        ] {
            for (line, allowed) in [
                (
                    "cache_buffer_ratio = 0.09",
                    "must be a number from 0.1 to 1",
                ),
                ("cache_buffer_ratio = 1.1", "must be a number from 0.1 to 1"),
                (
                    "max_jitter_seconds = 11",
                    "must be a whole number from 0 to 10",
                ),
            ] {
                let err = load(Some(&format!("{table}\n{line}")), &[]).unwrap_err();
                assert_eq!(err.0, vec![format!("{prefix}.{line}: {allowed}")]);
            }
        }
        // Our own key keeps its own, wider range.
        let c = load(Some("prefetch_jitter_seconds = 60"), &[]).unwrap();
        assert_eq!(c.prefetch_jitter, Duration::from_secs(60));
        let c = load(None, &[("SECRETS_AGENT_REFRESH_RATIO", "0.5")]).unwrap();
        assert_eq!((c.refresh_ratio, c.prefetch_cache_share), (0.5, 0.8));
    }

    /// The prefetch fills at most `max(1, cache_size × cache_buffer_ratio)` entries, secrets
    /// first, as the AWS provider's warm-up limit.
    #[test]
    fn prefetch_is_cut_to_its_share_of_the_cache() {
        let ids = |n: usize| (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
        let mut c = load(
            Some("cache_size = 10\n[prefetch]\ncache_buffer_ratio = 0.5"),
            &[],
        )
        .unwrap();
        c.prefetch_secrets = ids(4);
        c.prefetch_parameters = ids(3);
        let (secrets, parameters, left_out) = c.prefetch_ids();
        assert_eq!(
            (secrets.len(), parameters, left_out),
            (4, vec!["s0".into()], 2)
        );
        c.prefetch_secrets = ids(7);
        assert_eq!(c.prefetch_ids().0, ids(5));
        c.cache_size = 1;
        c.prefetch_cache_share = 0.1;
        assert_eq!(c.prefetch_ids(), (ids(1), vec![], 9));
        c.cache_size = 1000;
        c.prefetch_cache_share = 0.8;
        assert_eq!(c.prefetch_ids(), (ids(7), ids(3), 0));
    }

    /// Each bad input, alone, gives exactly one problem that names it and what is allowed.
    #[test]
    fn invalid_values_are_reported_by_name() {
        let cases: &[(&str, &str)] = &[
            ("http_port = 70000", "http_port = 70000: must be a whole number from 1 to 65535"),
            ("http_port = \"abc\"", "http_port = \"abc\": must be a whole number from 1 to 65535"),
            ("ttl_seconds = -1", "ttl_seconds = -1: must be a whole number from 0 to 86400"),
            ("cache_size = 0", "cache_size = 0: must be a whole number from 1 to 1000"),
            ("cache_size = 1001", "cache_size = 1001: must be a whole number from 1 to 1000"),
            ("max_conn = 0", "max_conn = 0: must be a whole number from 1 to 1000"),
            ("log_level = \"loud\"", "log_level = \"loud\": must be one of debug, info, warn, error, none"),
            ("path_prefix = \"v1\"", "path_prefix = \"v1\": must start with /"),
            ("ssrf_headers = []", "ssrf_headers = []: must name at least one header"),
            ("ssrf_env_variables = []", "ssrf_env_variables = []: must name at least one environment variable"),
            ("ignore_transient_errors = \"maybe\"", "ignore_transient_errors = \"maybe\": must be true or false"),
            ("refresh_ratio = 1.5", "refresh_ratio = 1.5: must be a number from 0.1 to 1"),
            ("listen_address = \"localhost:x\"", "listen_address = \"localhost:x\": must be an IP address"),
            ("listen_address = \"unix:relative.sock\"", "must be absolute"),
            ("ttl_secondz = 5", "ttl_secondz: unknown key \"ttl_secondz\""),
            ("[capabilities.secrets_manager.cache]\nttl = 5", "capabilities.secrets_manager.cache.ttl: unknown key"),
            ("[[capabilities.secrets_manager.prefetch.secrets]]\nsecret_id = \"a\"\nrole_arn = \"arn:aws:iam::1:role/x\"", "must be an IAM role ARN"),
            ("this is not toml", "config file is not valid TOML"),
        ];
        for (toml, expected) in cases {
            let err = load(Some(toml), &[]).expect_err(toml);
            assert_eq!(err.0.len(), 1, "{toml}: {err}");
            assert!(err.0[0].contains(expected), "{toml}: got {:?}", err.0[0]);
        }
    }

    /// Issue 19: prefetch entries and tag filters (3.x `filter_tags = [{ key, role_arn }]`) that
    /// name a role are grouped by role, kept apart from the agent's own.
    #[test]
    fn role_settings_load_in_both_layouts_and_group_prefetch_by_role() {
        const A: &str = "arn:aws:iam::111111111111:role/a";
        const B: &str = "arn:aws:iam::222222222222:role/b";
        let nested = format!(
            r#"
            [capabilities.secrets_manager]
            max_roles = 5
            allowed_roles = ["{A}", "{B}"]
            role_session_name = "my-agent"
            [capabilities.secrets_manager.prefetch]
            filter_tags = [{{ key = "Own" }}, {{ key = "Team", role_arn = "{A}" }},
                           {{ key = "Env", role_arn = "{A}" }}, {{ key = "Team", role_arn = "{B}" }}]
            [[capabilities.secrets_manager.prefetch.secrets]]
            secret_id = "own"
            [[capabilities.secrets_manager.prefetch.secrets]]
            secret_id = "db"
            role_arn = "{A}"
            [[capabilities.secrets_manager.prefetch.secrets]]
            secret_id = "api"
            role_arn = "{A}"
            [[capabilities.secrets_manager.prefetch.secrets]]
            secret_id = "db"
            role_arn = "{B}"
            "#
        );
        // 3.x's flat layout: root keys and a root [prefetch] table.
        let flat = format!(
            r#"
            max_roles = "5"
            allowed_roles = ["{A}", "{B}"]
            role_session_name = "my-agent"
            [prefetch]
            max_jitter_seconds = 2
            secrets = [{{ secret_id = "own" }}, {{ secret_id = "db", role_arn = "{A}" }},
                       {{ secret_id = "api", role_arn = "{A}" }}, {{ secret_id = "db", role_arn = "{B}" }}]
            filter_tags = [{{ key = "Own" }}, {{ key = "Team", role_arn = "{A}" }},
                           {{ key = "Env", role_arn = "{A}" }}, {{ key = "Team", role_arn = "{A}" }},
                           {{ key = "Team", role_arn = "{B}" }}]
            "#
        );
        for text in [nested, flat] {
            let c = load(Some(&text), &[]).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.max_roles, 5);
            assert_eq!(c.allowed_roles, vec![A, B]);
            assert_eq!(c.role_session_name, "my-agent");
            assert_eq!(c.prefetch_secrets, vec!["own"]);
            assert_eq!(c.prefetch_role_secrets[A], vec!["db", "api"]);
            assert_eq!(c.prefetch_role_secrets[B], vec!["db"]);
            assert_eq!(c.prefetch_tags, vec!["Own"]);
            assert_eq!(c.prefetch_role_tags[A], vec!["Team", "Env"]);
            assert_eq!(c.prefetch_role_tags[B], vec!["Team"]);
        }
        let c = load(None, &[]).unwrap();
        assert_eq!(c.max_roles, 20, "3.x's default");
        assert!(c.allowed_roles.is_empty(), "any role");
        assert_eq!(c.role_session_name, "secrets-manager-provider");
        let c = load(
            None,
            &[
                ("AWS_ROLE_SESSION_NAME", "from-env"),
                ("SECRETS_AGENT_ALLOWED_ROLES", &format!("{A},{B}")),
                ("SECRETS_AGENT_MAX_ROLES", "2"),
            ],
        )
        .unwrap();
        assert_eq!(c.role_session_name, "from-env");
        assert_eq!(c.allowed_roles, vec![A, B]);
        assert_eq!(c.max_roles, 2);
    }

    #[test]
    fn role_settings_are_checked_against_each_other() {
        const A: &str = "arn:aws:iam::111111111111:role/a";
        const B: &str = "arn:aws:iam::222222222222:role/b";
        let cases = [
            (
                format!("allowed_roles = [\"{A}\"]\n[[prefetch.secrets]]\nsecret_id = \"x\"\nrole_arn = \"{B}\""),
                "is not in allowed_roles",
            ),
            (
                format!("max_roles = 1\nprefetch = [{{ secret_id = \"x\", role_arn = \"{A}\" }}, {{ secret_id = \"x\", role_arn = \"{B}\" }}]"),
                "prefetch names 2 roles but max_roles = 1",
            ),
            (
                format!("allowed_roles = [\"{A}\"]\n[prefetch]\nfilter_tags = [{{ key = \"T\", role_arn = \"{B}\" }}]"),
                "filter_tags: role_arn = \"arn:aws:iam::222222222222:role/b\" is not in allowed_roles",
            ),
            (
                format!("max_roles = 1\nprefetch = [{{ secret_id = \"x\", role_arn = \"{A}\" }}]\nfilter_tags = [{{ key = \"T\", role_arn = \"{B}\" }}, {{ key = \"U\", role_arn = \"{A}\" }}]"),
                "prefetch names 2 roles but max_roles = 1",
            ),
            ("allowed_roles = [\"reader\"]".into(), "\"reader\" must be an IAM role ARN"),
            ("role_session_name = \"has space\"".into(), "must be 2 to 64 characters"),
            ("max_roles = 0".into(), "max_roles = 0: must be a whole number from 1 to 1000"),
        ];
        for (text, expected) in cases {
            let err = load(Some(&text), &[]).expect_err(&text);
            assert_eq!(err.0.len(), 1, "{text}: {err}");
            assert!(err.0[0].contains(expected), "{text}: got {:?}", err.0[0]);
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load(Some("http_port = 0\ncache_size = 0\nbogus = 1"), &[]).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn extension_env_vars_apply() {
        let c = load(
            None,
            &[
                ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "50"),
                ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2800"),
                ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "error"),
                ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "7"),
                ("SECRETS_MANAGER_TTL", "120"),
                ("SSM_PARAMETER_STORE_TTL", "30"),
                ("SECRETS_MANAGER_TIMEOUT_MILLIS", "250"),
                ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "0"),
            ],
        )
        .unwrap();
        assert_eq!(c.cache_size, 50);
        assert_eq!(c.listen.to_string(), "127.0.0.1:2800");
        assert_eq!(c.log_level, LogLevel::Error);
        assert_eq!(c.max_backend_calls, 7);
        assert_eq!(c.secrets_ttl, Duration::from_secs(120));
        assert_eq!(c.parameters_ttl, Duration::from_secs(30));
        assert_eq!(c.secrets_timeout, Duration::from_millis(250));
        assert_eq!(c.parameters_timeout, DEFAULT_BACKEND_TIMEOUT);
    }

    #[test]
    fn cache_max_bytes_from_file_or_env_within_its_range() {
        assert_eq!(
            load(None, &[]).unwrap().cache_max_bytes,
            DEFAULT_CACHE_MAX_BYTES
        );
        let c = load(Some("cache_max_bytes = 33554432"), &[]).unwrap();
        assert_eq!(c.cache_max_bytes, 32 * 1024 * 1024);
        let c = load(None, &[("SECRETS_AGENT_CACHE_MAX_BYTES", "2097152")]).unwrap();
        assert_eq!(c.cache_max_bytes, 2 * 1024 * 1024);
        let err = load(None, &[("SECRETS_AGENT_CACHE_MAX_BYTES", "1000")]).unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "SECRETS_AGENT_CACHE_MAX_BYTES = \"1000\": must be a whole number from 1048576 \
                  to 4294967296"
                    .to_string()
            ]
        );
    }

    /// Issue 20.6: what the AWS extension accepts starts here too; above our caps the value is
    /// clamped with a warning naming the variable and the value used.
    #[test]
    fn aws_extension_variables_are_clamped_not_refused() {
        let c = load(
            None,
            &[
                ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "5000"),
                ("SECRETS_MANAGER_TTL", "100000"),
                ("SSM_PARAMETER_STORE_TTL", "3600"),
                ("SECRETS_MANAGER_TIMEOUT_MILLIS", "900000"),
            ],
        )
        .unwrap();
        assert_eq!(c.max_backend_calls, 5000);
        assert_eq!(c.secrets_ttl, Duration::from_secs(MAX_TTL_SECONDS));
        assert_eq!(c.parameters_ttl, Duration::from_secs(3600));
        assert_eq!(c.secrets_timeout, Duration::from_secs(600));
        let mut w = c.warnings.clone();
        w.sort();
        assert_eq!(
            w,
            vec![
                "SECRETS_MANAGER_TIMEOUT_MILLIS = \"900000\" is above the maximum secrets-agent \
                 allows; using 600000",
                "SECRETS_MANAGER_TTL = \"100000\" is above the maximum secrets-agent allows; \
                 using 86400",
            ]
        );
        let c = load(
            None,
            &[("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "99999999")],
        )
        .unwrap();
        assert_eq!(c.max_backend_calls, MAX_BACKEND_CALLS as usize);
        // Our own keys keep their strict ranges.
        let err = load(Some("ttl_seconds = 100000"), &[]).unwrap_err();
        assert!(err.0[0].contains("from 0 to 86400"), "{err}");
    }

    #[test]
    fn cache_disabled_by_env() {
        let c = load(
            None,
            &[("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "false")],
        )
        .unwrap();
        assert!(c.caching_disabled());
        let c = load(None, &[("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "0")]).unwrap();
        assert!(c.caching_disabled());
    }

    #[test]
    fn env_beats_file_and_flags_beat_env() {
        let toml = "http_port = 2801\nttl_seconds = 10";
        let c = load(
            Some(toml),
            &[("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2802")],
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2802");
        assert_eq!(c.secrets_ttl, Duration::from_secs(10));
        let overrides = Overrides {
            port: Some("2803".into()),
            ..Overrides::default()
        };
        let c = Config::from_sources(
            Some(toml),
            &overrides,
            &env(&[("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2802")]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2803");
    }

    #[test]
    fn a_bad_port_flag_is_reported_like_any_setting() {
        for bad in ["70000", "abc", "0", ""] {
            let overrides = Overrides {
                port: Some(bad.into()),
                ..Overrides::default()
            };
            let err = Config::from_sources(None, &overrides, &env(&[])).unwrap_err();
            assert_eq!(
                err.0,
                vec![format!(
                    "--port = {bad:?}: must be a whole number from 1 to 65535"
                )]
            );
        }
    }

    #[test]
    fn an_empty_config_variable_means_no_file() {
        let c = Config::load(
            &Overrides::default(),
            &env(&[("SECRETS_AGENT_CONFIG", ""), ("SECRETS_MANAGER_TTL", "7")]),
        )
        .unwrap();
        assert_eq!(c.secrets_ttl, Duration::from_secs(7));
        let overrides = Overrides {
            config_file: Some(PathBuf::new()),
            ..Overrides::default()
        };
        let err = Config::load(&overrides, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("--config is empty"), "{err}");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED",
                "yes",
                "must be true or false",
            ),
            (
                "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE",
                "1001",
                "from 0 to 1000",
            ),
            (
                "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                "0",
                "from 1 to 65535",
            ),
            (
                "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL",
                "verbose",
                "must be one of",
            ),
            (
                "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS",
                "0",
                "of at least 1",
            ),
            ("SECRETS_MANAGER_TTL", "-5", "of at least 0"),
            ("SSM_PARAMETER_STORE_TTL", "ten", "of at least 0"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "1.5", "of at least 0"),
            ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "x", "of at least 0"),
            ("SECRETS_AGENT_LISTEN", "nowhere", "must be an IP address"),
        ];
        for (var, value, expected) in cases {
            let err = load(None, &[(var, value)]).expect_err(var);
            assert_eq!(err.0.len(), 1);
            assert!(
                err.0[0].starts_with(&format!("{var} = \"{value}\"")),
                "{}",
                err.0[0]
            );
            assert!(err.0[0].contains(expected), "{}", err.0[0]);
        }
    }

    #[test]
    fn unknown_prefixed_env_vars_are_warned_by_name() {
        let c = load(
            None,
            &[
                ("PARAMETERS_AND_SECRETS_EXTENSION_CACHE_SIZE", "5"),
                ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZ", "5"),
                ("SECRETS_MANAGER_TTL_SECONDS", "5"),
                ("SSM_PARAMETER_STORE_TIME", "5"),
                ("SECRETS_MANAGER_TTL", "5"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("PARAMETERS_AND_SECRETS_EXTENSION_CACHE_SIZE"));
        assert!(c.warnings.iter().all(|w| w.contains("is ignored")));
    }

    #[test]
    fn files_entries_load_and_bad_ones_are_named() {
        let c = load(
            Some(
                r#"
ttl_seconds = 60
[[files]]
path = "/run/secrets/db"
source = "awssm:db#password"
[[files]]
path = "/run/secrets/app.conf"
template = "/etc/app.conf.tmpl"
mode = "0440"
uid = 1000
gid = 2000
allow_disk = true
[[files]]
path = "/run/secrets/x"
source = "awsparam:/x"
mode = 0o600
"#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.files.len(), 3);
        assert_eq!(c.files[0].mode, 0o400);
        assert_eq!(
            c.files[0].content,
            FileContent::Source("awssm:db#password".into())
        );
        assert_eq!(
            c.files[1],
            FileEntry {
                path: "/run/secrets/app.conf".into(),
                content: FileContent::Template("/etc/app.conf.tmpl".into()),
                mode: 0o440,
                uid: Some(1000),
                gid: Some(2000),
                allow_disk: true,
            }
        );
        assert_eq!(c.files[2].mode, 0o600);

        let e = load(
            Some(
                r#"
[[files]]
source = "awssm:a"
[[files]]
path = "relative"
source = "awssm:a"
template = "/t"
[[files]]
path = "/a"
mode = "9"
uid = -1
colour = "red"
"#,
            ),
            &[],
        )
        .unwrap_err()
        .to_string();
        for want in [
            "[[files]] #1: path = \"/absolute/target\" is required",
            "[[files]] #2: path = \"relative\": must be an absolute path",
            "[[files]] #2: give source or template, not both",
            "[[files]] #3: needs source",
            "[[files]] #3: mode: \"9\" is not a file mode",
            "[[files]] #3: uid = -1: must be a numeric id",
            "[[files]] #3: unknown key \"colour\"",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }

    #[test]
    fn file_modes_are_octal() {
        assert_eq!(parse_file_mode("0400"), Ok(0o400));
        assert_eq!(parse_file_mode("644"), Ok(0o644));
        assert_eq!(parse_file_mode("0o640"), Ok(0o640));
        for bad in ["", "0o", "8", "4755", "rw-r--r--", "-1"] {
            assert!(parse_file_mode(bad).is_err(), "{bad}");
        }
    }

    /// Issue 19: tag prefetch in the 3.x nested and flat layouts, our flat key and variable.
    #[test]
    fn prefetch_tags_in_every_layout() {
        let nested = load(
            Some(
                r#"
                [capabilities.secrets_manager.prefetch]
                filter_tags = [{ key = "Team" }, { key = "Env" }, { key = "Team" }]
                "#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(nested.prefetch_tags, vec!["Team", "Env"]);
        let tables = load(
            Some(
                r#"
                [[capabilities.secrets_manager.prefetch.filter_tags]]
                key = "Team"
                "#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(tables.prefetch_tags, vec!["Team"]);
        // The 3.x flat layout: a root [prefetch] table.
        let flat = load(
            Some(
                r#"
                http_port = 2775
                [prefetch]
                max_jitter_seconds = 2
                secrets = [{ secret_id = "db" }]
                filter_tags = [{ key = "Env" }]
                "#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(flat.prefetch_tags, vec!["Env"]);
        assert_eq!(flat.prefetch_secrets, vec!["db"]);
        assert_eq!(flat.prefetch_jitter, Duration::from_secs(2));
        let ours = load(Some(r#"prefetch_tags = ["a:b", "c"]"#), &[]).unwrap();
        assert_eq!(ours.prefetch_tags, vec!["a:b", "c"]);
        let env_var = load(None, &[("SECRETS_AGENT_PREFETCH_TAGS", "x, y")]).unwrap();
        assert_eq!(env_var.prefetch_tags, vec!["x", "y"]);
    }

    #[test]
    fn bad_tag_filters_are_named() {
        for (toml, expect) in [
            (r#"prefetch_tags = ["!Team"]"#, "starts with '!'"),
            (r#"prefetch_tags = ["a#b"]"#, "not one Secrets Manager can filter by"),
            (
                "[capabilities.secrets_manager.prefetch]\nfilter_tags = [{ key = \"T\", role_arn = \"arn:aws:iam::1:role/r\" }]",
                "role_arn = \"arn:aws:iam::1:role/r\": must be an IAM role ARN",
            ),
            (
                "[prefetch]\nfilter_tags = [{ key = \"!T\", role_arn = \"arn:aws:iam::111111111111:role/r\" }]",
                "starts with '!'",
            ),
            (
                "[prefetch]\nfilter_tags = [{ key = \"T\", role_arn = 7 }]",
                "role_arn = 7: must be a role ARN string",
            ),
            (
                "[capabilities.secrets_manager.prefetch]\nfilter_tags = [{ name = \"T\" }]",
                "unknown key \"name\" in a tag filter",
            ),
            (
                "[capabilities.secrets_manager.prefetch]\nfilter_tags = \"T\"",
                "must be a list",
            ),
        ] {
            let e = load(Some(toml), &[]).unwrap_err();
            assert_eq!(e.0.len(), 1, "{toml}: {e}");
            assert!(e.0[0].contains(expect), "{toml}: {e}");
        }
    }

    /// Issue 19: `credentials_file_path` in both layouts (it stopped the agent at start before).
    #[test]
    fn credentials_file_path_in_both_layouts() {
        let flat = load(Some(r#"credentials_file_path = "/run/creds""#), &[]).unwrap();
        assert_eq!(flat.credentials_file, Some(PathBuf::from("/run/creds")));
        let nested = load(
            Some("[capabilities.secrets_manager]\ncredentials_file_path = \"/run/c2\""),
            &[],
        )
        .unwrap();
        assert_eq!(nested.credentials_file, Some(PathBuf::from("/run/c2")));
        let e = load(Some(r#"credentials_file_path = """#), &[]).unwrap_err();
        assert!(e.0[0].contains("must be the path"), "{e}");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("::1", 2773).unwrap().to_string(), "[::1]:2773");
        assert_eq!(parse_listen("[::1]", 80).unwrap().to_string(), "[::1]:80");
        assert_eq!(
            parse_listen("0.0.0.0:9", 1).unwrap().to_string(),
            "0.0.0.0:9"
        );
        assert_eq!(
            parse_listen("unix:/run/a.sock", 1).unwrap(),
            Listen::Unix("/run/a.sock".into())
        );
        assert!(!parse_listen("0.0.0.0", 1).unwrap().is_loopback());
    }
}
