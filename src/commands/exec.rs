//! `secrets-agent exec [OPTIONS] -- COMMAND [ARGS...]`: resolves the `awssm:` and `awsparam:`
//! placeholders in its own environment (grammar: `placeholder`), then `execve`s COMMAND with the
//! resolved environment: same PID, so signals reach the application directly and its exit code
//! is the process's. Variables without a placeholder pass through unchanged.
//!
//! Values come through a running agent when one answers on the configured address (its cache,
//! its token), else straight from AWS (the init-container case); `--source` forces one. Each
//! distinct (secret, version) is fetched once, all concurrently, within one total timeout.
//!
//! Exit codes before COMMAND runs: 64 a malformed placeholder or bad settings, 78 a placeholder
//! that could not be resolved or whose value the kernel cannot pass (one line per problem on
//! stderr, naming the variable and the id, never a value), 126 COMMAND cannot be executed, 127
//! COMMAND not found.
//!
//! With `--on-rotation`, exec stays the parent of COMMAND instead (see `supervise`).

mod supervise;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;

pub use super::fetch::SourceChoice;
use super::fetch::{describe, fetch_all, Fetcher};
use crate::backend::Key;
use crate::config::{Config, Env};
use crate::error::Error;
use crate::placeholder::{extract, Template};
use crate::EXIT_USAGE;
pub use supervise::OnRotation;

/// A placeholder could not be resolved (BSD `EX_CONFIG`).
pub const EXIT_UNRESOLVED: u8 = 78;
/// COMMAND exists but cannot be executed (as a shell answers).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// COMMAND was not found (as a shell answers).
pub const EXIT_NOT_FOUND: u8 = 127;
/// The total time for all fetches when neither `--timeout` nor the variable says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `--timeout` from the environment.
pub const TIMEOUT_VAR: &str = "SECRETS_AGENT_EXEC_TIMEOUT";
/// `--ignore-missing` from the environment (`true`/`false`).
pub const IGNORE_MISSING_VAR: &str = "SECRETS_AGENT_IGNORE_MISSING";

/// `exec`'s own flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where values come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceChoice,
    /// Total seconds for all fetches (also SECRETS_AGENT_EXEC_TIMEOUT; default 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// A secret or parameter that does not exist becomes an empty value, with a warning
    /// (also SECRETS_AGENT_IGNORE_MISSING=true).
    #[arg(long)]
    pub ignore_missing: bool,
    /// Print which variables would be resolved from which ids (no values), then exit 0.
    #[arg(long)]
    pub dry_run: bool,
    /// The region exec reads AWS in (over AWS_REGION and the config's `region`); COMMAND's
    /// environment is left as it is. The webhook's aws-region annotation sets it.
    #[arg(long)]
    pub region: Option<String>,
    /// Stay the parent of COMMAND and act when a referenced secret or parameter gets a new
    /// version: `restart` (with the new values) or `signal:SIG` (e.g. signal:HUP).
    #[arg(long, value_name = "restart|signal:SIG", value_parser = OnRotation::parse)]
    pub on_rotation: Option<OnRotation>,
    /// With --on-rotation: at least this many seconds between two actions (default 60).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub min_interval: u64,
    /// With --on-rotation: wait a random 0..SECONDS before acting, so a fleet does not restart
    /// at once (default 30).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub jitter: u64,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Runs `exec`. Returns only when COMMAND could not be started (the exit code to use).
pub fn run(
    args: Args,
    config: Result<Config, String>,
    env: &Env,
    vars: Vec<(OsString, OsString)>,
) -> u8 {
    let mut templates = Vec::new();
    let mut malformed = Vec::new();
    for (name, value) in &vars {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        match Template::parse(value) {
            Ok(Some(t)) => templates.push((name.to_string(), t)),
            Ok(None) => {}
            Err(e) => malformed.push(format!("{name}: {e}")),
        }
    }
    if !malformed.is_empty() {
        for m in malformed {
            eprintln!("secrets-agent exec: {m}");
        }
        return EXIT_USAGE;
    }
    if args.dry_run {
        for (name, t) in &templates {
            let refs: Vec<String> = t.refs().map(|r| r.to_string()).collect();
            println!("{name} <- {}", refs.join(", "));
        }
        return 0;
    }
    if args.on_rotation.is_some() {
        let settings = match config.and_then(|c| Resolving::new(&args, c, env)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("secrets-agent exec: {e}");
                return EXIT_USAGE;
            }
        };
        return supervise::run(args, templates, settings, env, vars);
    }
    let mut resolved: HashMap<String, String> = HashMap::new();
    if !templates.is_empty() {
        let settings = match config.and_then(|c| Resolving::new(&args, c, env)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("secrets-agent exec: {e}");
                return EXIT_USAGE;
            }
        };
        match resolve(&templates, settings, env) {
            Ok(values) => resolved = values,
            Err(problems) => {
                for p in problems {
                    eprintln!("secrets-agent exec: {p}");
                }
                return EXIT_UNRESOLVED;
            }
        }
    }
    let sizes: Vec<(String, usize)> = resolved.iter().map(|(n, v)| (n.clone(), v.len())).collect();
    let env = vars.into_iter().map(|(name, value)| {
        match name.to_str().and_then(|n| resolved.remove(n)) {
            Some(v) => (name, OsString::from(v)),
            None => (name, value),
        }
    });
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let err = std::process::Command::new(program)
        .args(rest)
        .env_clear()
        .envs(env)
        .exec();
    if err.raw_os_error() == Some(E2BIG) {
        // The kernel's limit on arguments and environment together: a resolved value made
        // them too large. Name the largest, never a value.
        let mut sizes = sizes;
        sizes.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
        let largest: Vec<String> = sizes
            .iter()
            .take(3)
            .map(|(n, len)| format!("{n} ({len} bytes)"))
            .collect();
        eprintln!(
            "secrets-agent exec: cannot run {:?}: its arguments and environment together are \
             larger than the kernel allows (E2BIG); the largest resolved variables: {}. Read \
             large secrets from a file (secrets-agent render) instead",
            program.to_string_lossy(),
            largest.join(", ")
        );
        return EXIT_UNRESOLVED;
    }
    eprintln!(
        "secrets-agent exec: cannot run {:?}: {err}",
        program.to_string_lossy()
    );
    match err.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXECUTE,
    }
}

/// `E2BIG` (Linux, and every Unix the agent runs on): argument list too long.
const E2BIG: i32 = 7;

/// The longest `NAME=value` string Linux passes to a new program (`MAX_ARG_STRLEN`, 32 pages),
/// its closing NUL included.
const MAX_VARIABLE_BYTES: usize = 32 * 4096;

/// Why `value` cannot be passed as variable `name`, if it cannot: an environment string ends
/// at its first NUL byte, and the kernel passes at most [`MAX_VARIABLE_BYTES`] for one. Names
/// the variable, never the value.
fn unpassable(name: &str, value: &str) -> Option<String> {
    if value.contains('\0') {
        return Some(format!(
            "{name}: the resolved value contains a NUL byte, which an environment variable \
             cannot carry; read this secret from a file (secrets-agent render) instead"
        ));
    }
    (name.len() + 1 + value.len() + 1 > MAX_VARIABLE_BYTES).then(|| {
        format!(
            "{name}: the resolved value is {} bytes; the kernel passes at most {} bytes per \
             variable (NAME=value); read this secret from a file (secrets-agent render) instead",
            value.len(),
            MAX_VARIABLE_BYTES - name.len() - 2
        )
    })
}

/// How exec resolves: the configuration, the total timeout, --ignore-missing and the source.
struct Resolving {
    config: Config,
    timeout: Duration,
    ignore_missing: bool,
    source: SourceChoice,
}

impl Resolving {
    fn new(args: &Args, mut config: Config, env: &Env) -> Result<Resolving, String> {
        if let Some(r) = &args.region {
            config.region = Some(r.clone());
        }
        let timeout = match (args.timeout, env.get(TIMEOUT_VAR)) {
            (Some(s), _) => s,
            (None, Some(v)) => v.trim().parse().map_err(|_| {
                format!("{TIMEOUT_VAR}={v:?} is not a whole number of seconds (e.g. 10)")
            })?,
            (None, None) => DEFAULT_TIMEOUT.as_secs(),
        };
        if timeout == 0 {
            return Err("the exec timeout must be at least 1 second".into());
        }
        let ignore_missing = args.ignore_missing
            || match env
                .get(IGNORE_MISSING_VAR)
                .map(|v| v.trim().to_ascii_lowercase())
            {
                None => false,
                Some(v) if v == "true" || v == "1" => true,
                Some(v) if v == "false" || v == "0" || v.is_empty() => false,
                Some(v) => {
                    return Err(format!("{IGNORE_MISSING_VAR}={v:?}: use true or false"));
                }
            };
        Ok(Resolving {
            config,
            timeout: Duration::from_secs(timeout),
            ignore_missing,
            source: args.source,
        })
    }
}

/// Fetches every distinct key once, concurrently, and fills each template. Problems come back
/// one line each, naming the variable and the reference, never a value.
fn resolve(
    templates: &[(String, Template)],
    settings: Resolving,
    env: &Env,
) -> Result<HashMap<String, String>, Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start the async runtime: {e}")])?;
    let keys = keys(templates);
    let source = settings.source.for_keys(keys.iter()).map_err(|e| vec![e])?;
    let fetcher = Arc::new(Fetcher::choose(source, &settings.config, env).map_err(|e| vec![e])?);
    let bodies = runtime.block_on(fetch_all(fetcher, keys, settings.timeout));
    // Nothing may outlive the fetches: a resolver thread stuck on DNS must not delay the exec.
    runtime.shutdown_background();
    fill(templates, &bodies, &settings)
}

/// Every distinct key the templates reference, in order.
fn keys(templates: &[(String, Template)]) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    for r in templates.iter().flat_map(|(_, t)| t.refs()) {
        if !keys.contains(&r.key) {
            keys.push(r.key.clone());
        }
    }
    keys
}

/// Fills each template from the fetched bodies (a key missing from `bodies` timed out).
fn fill(
    templates: &[(String, Template)],
    bodies: &HashMap<Key, Result<bytes::Bytes, Error>>,
    settings: &Resolving,
) -> Result<HashMap<String, String>, Vec<String>> {
    let timeout = settings.timeout;
    let mut values = HashMap::new();
    let mut problems = Vec::new();
    for (name, t) in templates {
        let filled = t.fill(|r| match bodies.get(&r.key) {
            Some(Ok(body)) => extract(r, body).map_err(|e| format!("{name}: {r}: {e}")),
            Some(Err(e)) if e.is_not_found() && settings.ignore_missing => {
                eprintln!("secrets-agent exec: warning: {name}: {r} not found; empty value (ignore-missing)");
                Ok(String::new())
            }
            Some(Err(e)) => Err(format!("{name}: {r}: {}", describe(e, true))),
            None => Err(format!(
                "{name}: {r}: no answer within the {} s timeout ({TIMEOUT_VAR} or --timeout sets it)",
                timeout.as_secs()
            )),
        });
        match filled.map(|v| (unpassable(name, &v), v)) {
            Ok((None, v)) => {
                values.insert(name.clone(), v);
            }
            Ok((Some(p), _)) | Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}
