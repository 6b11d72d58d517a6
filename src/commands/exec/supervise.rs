//! `exec --on-rotation restart|signal:SIG`: instead of replacing itself with COMMAND, exec stays
//! its parent, as PID 1 of a container must be: every signal it can catch is passed on to
//! COMMAND, it reaps every child that ends (it registers as the child subreaper, so orphans of
//! COMMAND come to it too), and it exits with COMMAND's exit code (128 + N after signal N).
//!
//! Meanwhile it reads the referenced secrets and parameters again every watch interval (through
//! the running agent, or through a cache of its own over AWS, which asks DescribeSecret first)
//! and compares their versions. A new version, after a random 0..`jitter` delay and at least
//! `min_interval` after the last action, either restarts COMMAND with the new values (SIGTERM,
//! SIGKILL after `STOP_GRACE`, then started again) or sends it the signal. A read that brings the
//! same version back does nothing. COMMAND ending on its own ends exec with its code: it is not
//! restarted.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{fill, keys, Args, Resolving, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_UNRESOLVED};
use crate::backend::{Key, Kind};
use crate::commands::fetch::{fetch_all, Fetcher};
use crate::config::Env;
use crate::error::Error;
use crate::placeholder::Template;
use crate::EXIT_USAGE;

/// How long a restarted COMMAND has to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Signals passed on to COMMAND (SIGKILL and SIGSTOP cannot be caught; SIGCHLD is ours).
const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGALRM,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// What a new version makes exec do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRotation {
    /// Stop COMMAND and start it again with the new values.
    Restart,
    /// Send COMMAND this signal (it reads its secrets again itself).
    Signal(Signal),
}

impl OnRotation {
    /// `restart` or `signal:SIG` (`signal:HUP`, `signal:SIGUSR1`).
    pub fn parse(s: &str) -> Result<OnRotation, String> {
        if s == "restart" {
            return Ok(OnRotation::Restart);
        }
        let usage = "use restart or signal:SIG, e.g. signal:HUP";
        let Some(name) = s.strip_prefix("signal:") else {
            return Err(format!("{s:?}: {usage}"));
        };
        let upper = name.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        match full.parse::<Signal>() {
            Ok(sig) if FORWARDED.contains(&sig) => Ok(OnRotation::Signal(sig)),
            _ => Err(format!(
                "{s:?}: {name:?} is not a signal exec can send; use one of {}",
                FORWARDED
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Runs COMMAND as a child and watches its values until it exits; returns the exit code.
pub fn run(
    args: Args,
    templates: Vec<(String, Template)>,
    settings: Resolving,
    env: &Env,
    vars: Vec<(OsString, OsString)>,
) -> u8 {
    crate::logging::init(&settings.config, env, false);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("secrets-agent exec: cannot start the async runtime: {e}");
            return EXIT_CANNOT_EXECUTE;
        }
    };
    let refs = templates.iter().flat_map(|(_, t)| t.refs()).map(|r| &r.key);
    let source = match settings.source.for_keys(refs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("secrets-agent exec: {e}");
            return EXIT_USAGE;
        }
    };
    let code = runtime.block_on(async {
        let fetcher = match Fetcher::choose(source, &settings.config, env) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("secrets-agent exec: {e}");
                return EXIT_UNRESOLVED;
            }
        };
        // Watching AWS directly reads through a cache of our own, as `render` does: expiry
        // asks DescribeSecret first, so an unchanged secret costs no GetSecretValue.
        let fetcher = Arc::new(match fetcher {
            Fetcher::Aws(backend) => Fetcher::Cached(crate::cache::Cache::new(
                backend,
                crate::cache::Settings::from_config(&settings.config),
                Arc::new(crate::cache::SystemClock),
                Arc::new(crate::metrics::Metrics::default()),
            )),
            f => f,
        });
        let mut sup = Supervisor {
            args,
            templates,
            keys: Vec::new(),
            vars,
            fetcher,
            settings,
            child: None,
            versions: HashMap::new(),
        };
        sup.keys = keys(&sup.templates);
        sup.run().await
    });
    runtime.shutdown_background();
    code
}

struct Supervisor {
    args: Args,
    templates: Vec<(String, Template)>,
    keys: Vec<Key>,
    /// The environment exec was started with, placeholders unresolved.
    vars: Vec<(OsString, OsString)>,
    fetcher: Arc<Fetcher>,
    settings: Resolving,
    child: Option<Pid>,
    /// The version each key had when COMMAND was last started or signalled.
    versions: HashMap<Key, String>,
}

/// What the main loop is waiting for besides signals.
enum Phase {
    /// COMMAND runs; a new version was seen and the action is due at this instant.
    Running { due: Option<Instant> },
    /// COMMAND was asked to stop for a restart with this environment.
    Restarting {
        env: HashMap<String, String>,
        kill_at: Instant,
    },
    /// exec was asked to stop: it waits for COMMAND's exit.
    Stopping,
}

impl Supervisor {
    async fn run(&mut self) -> u8 {
        // Before the first fork: a child that exits at once must still be reaped by us.
        let mut signals = match listen_for_signals() {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("secrets-agent exec: cannot install signal handlers: {e}");
                return EXIT_CANNOT_EXECUTE;
            }
        };
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %e, "cannot become the child subreaper; orphans of the command are reaped by init");
        }
        let bodies = fetch_all(
            self.fetcher.clone(),
            self.keys.clone(),
            self.settings.timeout,
        )
        .await;
        let env = match fill(&self.templates, &bodies, &self.settings) {
            Ok(env) => env,
            Err(problems) => {
                for p in problems {
                    eprintln!("secrets-agent exec: {p}");
                }
                return EXIT_UNRESOLVED;
            }
        };
        self.versions = versions(&bodies);
        if let Err(code) = self.start(env) {
            return code;
        }
        let interval = crate::commands::render::watch_interval(&self.settings.config);
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            keys = self.keys.len(),
            "watching for new versions"
        );
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut phase = Phase::Running { due: None };
        let mut last_action: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let deadline = match &phase {
                Phase::Running { due: Some(at) } => *at,
                Phase::Restarting { kill_at, .. } => *kill_at,
                _ => far(),
            };
            tokio::select! {
                Some(sig) = signals.recv() => {
                    if sig != Signal::SIGCHLD {
                        self.send(sig);
                        if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) {
                            phase = Phase::Stopping;
                        }
                        continue;
                    }
                    let Some(code) = self.reap() else { continue };
                    match std::mem::replace(&mut phase, Phase::Running { due: None }) {
                        Phase::Restarting { env, .. } => {
                            tracing::info!("command stopped; starting it with the new values");
                            if let Err(code) = self.start(env) {
                                return code;
                            }
                        }
                        _ => return code,
                    }
                }
                _ = ticker.tick(), if matches!(phase, Phase::Running { .. }) => {
                    if let Phase::Running { due: None } = phase {
                        if self.changed().await {
                            let earliest = last_action.map_or(Instant::now(), |t| t + Duration::from_secs(self.args.min_interval));
                            let jitter = Duration::from_secs(self.args.jitter)
                                .mul_f64(crate::cache::random_unit());
                            let at = earliest.max(Instant::now()) + jitter;
                            tracing::info!(in_ms = (at - Instant::now()).as_millis() as u64, "new version seen; acting after the minimum interval and jitter");
                            phase = Phase::Running { due: Some(at) };
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    match std::mem::replace(&mut phase, Phase::Running { due: None }) {
                        Phase::Running { due: Some(_) } => {
                            last_action = Some(Instant::now());
                            phase = self.act().await;
                        }
                        Phase::Restarting { env, .. } => {
                            tracing::warn!(grace_s = STOP_GRACE.as_secs(), "command did not stop after SIGTERM; sending SIGKILL");
                            self.send(Signal::SIGKILL);
                            phase = Phase::Restarting { env, kill_at: far() };
                        }
                        other => phase = other,
                    }
                }
            }
        }
    }

    /// Reads every key again; true when any version differs from the ones COMMAND has. Keys
    /// that cannot be read now keep their version (the next round tries again).
    async fn changed(&self) -> bool {
        let bodies = fetch_all(
            self.fetcher.clone(),
            self.keys.clone(),
            self.settings.timeout,
        )
        .await;
        let now = versions(&bodies);
        now.iter().any(|(key, v)| self.versions.get(key) != Some(v))
    }

    /// Carries out the action for a new version; returns the phase that follows.
    async fn act(&mut self) -> Phase {
        let bodies = fetch_all(
            self.fetcher.clone(),
            self.keys.clone(),
            self.settings.timeout,
        )
        .await;
        let new = versions(&bodies);
        match self.args.on_rotation {
            Some(OnRotation::Signal(sig)) => {
                tracing::info!(signal = sig.as_str(), "new version; signalling the command");
                self.versions.extend(new);
                self.send(sig);
                Phase::Running { due: None }
            }
            _ => match fill(&self.templates, &bodies, &self.settings) {
                Ok(env) => {
                    tracing::info!("new version; stopping the command to restart it");
                    self.versions.extend(new);
                    self.send(Signal::SIGTERM);
                    Phase::Restarting {
                        env,
                        kill_at: Instant::now() + STOP_GRACE,
                    }
                }
                Err(problems) => {
                    // The command keeps its values; the new version is not tried again until
                    // another one appears.
                    for p in problems {
                        tracing::warn!(problem = ?p, "new version cannot be used; the command keeps running");
                    }
                    self.versions.extend(new);
                    Phase::Running { due: None }
                }
            },
        }
    }

    /// Starts COMMAND with the exec environment, placeholders replaced by `resolved`.
    fn start(&mut self, mut resolved: HashMap<String, String>) -> Result<(), u8> {
        let env = self.vars.iter().map(|(name, value)| {
            match name.to_str().and_then(|n| resolved.remove(n)) {
                Some(v) => (name.clone(), OsString::from(v)),
                None => (name.clone(), value.clone()),
            }
        });
        let (program, rest) = self
            .args
            .command
            .split_first()
            .expect("clap requires a command");
        // The `Child` handle is dropped without waiting: exec reaps with waitpid(-1).
        match std::process::Command::new(program)
            .args(rest)
            .env_clear()
            .envs(env)
            .spawn()
        {
            Ok(child) => {
                let pid = Pid::from_raw(child.id() as i32);
                tracing::info!(pid = pid.as_raw(), "command started");
                self.child = Some(pid);
                Ok(())
            }
            Err(err) => {
                eprintln!(
                    "secrets-agent exec: cannot run {:?}: {err}",
                    program.to_string_lossy()
                );
                Err(match err.kind() {
                    std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                    _ => EXIT_CANNOT_EXECUTE,
                })
            }
        }
    }

    fn send(&self, sig: Signal) {
        if let Some(pid) = self.child {
            if let Err(e) = kill(pid, sig) {
                tracing::debug!(signal = sig.as_str(), error = %e, "cannot signal the command");
            }
        }
    }

    /// Reaps every child that ended; COMMAND's exit code if it was among them.
    fn reap(&mut self) -> Option<u8> {
        let mut code = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, c)) if Some(pid) == self.child => {
                    code = Some(c as u8);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if Some(pid) == self.child => {
                    code = Some(128u8.wrapping_add(sig as u8));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                // An orphan of COMMAND, or a stop/continue report: nothing to keep.
                Ok(_) => {}
            }
        }
        if code.is_some() {
            self.child = None;
        }
        code
    }
}

/// The version of each key that was read: a secret's VersionId, a parameter's Version, a
/// certificate's Serial.
fn versions(bodies: &HashMap<Key, Result<Bytes, Error>>) -> HashMap<Key, String> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "VersionId")]
        version_id: Option<String>,
        #[serde(rename = "Parameter")]
        parameter: Option<Parameter>,
        #[serde(rename = "Serial")]
        serial: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Parameter {
        #[serde(rename = "Version")]
        version: Option<i64>,
    }
    bodies
        .iter()
        .filter_map(|(key, r)| {
            let body: Body = serde_json::from_slice(r.as_ref().ok()?).ok()?;
            let version = match key.kind {
                Kind::Secret => body.version_id?,
                Kind::Parameter => body.parameter?.version?.to_string(),
                Kind::Certificate => body.serial?,
            };
            Some((key.clone(), version))
        })
        .collect()
}

/// A channel that receives every forwarded signal and SIGCHLD.
fn listen_for_signals() -> std::io::Result<mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = mpsc::unbounded_channel();
    for sig in FORWARDED.into_iter().chain([Signal::SIGCHLD]) {
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    return;
                }
            }
        });
    }
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_rotation_values() {
        assert_eq!(OnRotation::parse("restart"), Ok(OnRotation::Restart));
        for s in ["signal:HUP", "signal:hup", "signal:SIGHUP"] {
            assert_eq!(
                OnRotation::parse(s),
                Ok(OnRotation::Signal(Signal::SIGHUP)),
                "{s}"
            );
        }
        assert!(OnRotation::parse("signal:KILL")
            .unwrap_err()
            .contains("SIGHUP, SIGINT"));
        assert!(OnRotation::parse("signal:").is_err());
        assert!(OnRotation::parse("reload")
            .unwrap_err()
            .contains("use restart or signal:SIG"));
    }

    #[test]
    fn versions_of_secrets_and_parameters() {
        let s = Key::secret("s", None, None);
        let p = Key::parameter("/p", None, None, true);
        let gone = Key::secret("gone", None, None);
        let bodies = HashMap::from([
            (
                s.clone(),
                Ok(Bytes::from_static(br#"{"Name":"s","VersionId":"v2"}"#)),
            ),
            (
                p.clone(),
                Ok(Bytes::from_static(
                    br#"{"Parameter":{"Name":"/p","Version":7}}"#,
                )),
            ),
            (
                gone.clone(),
                Err(Error::Timeout {
                    operation: "GetSecretValue",
                    millis: 1,
                }),
            ),
        ]);
        let v = versions(&bodies);
        assert_eq!(v.get(&s).map(String::as_str), Some("v2"));
        assert_eq!(v.get(&p).map(String::as_str), Some("7"));
        assert!(!v.contains_key(&gone));
    }
}
