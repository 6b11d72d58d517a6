//! What runs after a round that changed files: a signal to the application (by pid file, or by
//! process name in a shared process namespace) and shell commands. Signals are sent with `nix`'s
//! safe `kill`, so they work in an image without a `kill` executable; `--on-change` commands need
//! a shell in the image.

use std::path::{Path, PathBuf};

/// Signals `--notify` may send.
const SIGNALS: [&str; 9] = [
    "HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "ALRM", "WINCH", "CONT",
];

/// Sends SIG`signal` (a name from `SIGNALS`) to `pid` (digits).
fn send(signal: &str, pid: &str) -> Result<(), String> {
    use nix::sys::signal::{kill, Signal};
    let sig: Signal = format!("SIG{signal}")
        .parse()
        .map_err(|e| format!("signal {signal}: {e}"))?;
    let pid: i32 = pid
        .parse()
        .map_err(|_| format!("not a process id: {pid}"))?;
    kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|e| e.to_string())
}

/// Whom a signal goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The pid written in this file, read at each change.
    PidFile(PathBuf),
    /// Every process whose name (`/proc/<pid>/comm`) is this, but us.
    Name(String),
}

/// The hooks to run after a change; `Default` is none.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// (signal name without `SIG`, recipient)
    pub notify: Vec<(String, Recipient)>,
    /// Run with `sh -c`.
    pub on_change: Vec<String>,
}

impl Hooks {
    /// From `--notify SIGNAL:PIDFILE|NAME` and `--on-change CMD` values; every problem at once.
    pub fn new(notify: &[String], on_change: &[String]) -> Result<Hooks, Vec<String>> {
        let mut problems = Vec::new();
        let mut parsed = Vec::new();
        for n in notify {
            let Some((sig, to)) = n.split_once(':').filter(|(_, to)| !to.trim().is_empty()) else {
                problems.push(format!(
                    "--notify {n:?}: expected SIGNAL:PIDFILE or SIGNAL:NAME, e.g. \
                     SIGHUP:/run/app/app.pid or SIGHUP:nginx"
                ));
                continue;
            };
            let upper = sig.trim().to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper).to_string();
            if !SIGNALS.contains(&name.as_str()) {
                problems.push(format!(
                    "--notify {n:?}: unknown signal {sig:?}; use one of SIG{}",
                    SIGNALS.join(", SIG")
                ));
                continue;
            }
            let recipient = if to.starts_with('/') {
                Recipient::PidFile(PathBuf::from(to))
            } else if to.len() <= 15 && !to.contains('/') {
                Recipient::Name(to.to_string())
            } else {
                problems.push(format!(
                    "--notify {n:?}: give an absolute pid file path, or a process name of at \
                     most 15 characters (as /proc/<pid>/comm shows it)"
                ));
                continue;
            };
            parsed.push((name, recipient));
        }
        if on_change.iter().any(|c| c.trim().is_empty()) {
            problems.push("--on-change: the command is empty".into());
        }
        if problems.is_empty() {
            Ok(Hooks {
                notify: parsed,
                on_change: on_change.to_vec(),
            })
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.notify.is_empty() && self.on_change.is_empty()
    }

    /// Signals, then commands, one after the other (the watcher waits for them); failures are
    /// logged, not fatal.
    pub async fn run(&self, changed: &[&Path]) {
        let hooks = self.clone();
        let changed: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        let _ = tokio::task::spawn_blocking(move || hooks.run_blocking(&changed)).await;
    }

    fn run_blocking(&self, changed: &[String]) {
        for (signal, to) in &self.notify {
            let pids = match to {
                Recipient::PidFile(file) => match std::fs::read_to_string(file) {
                    Ok(p) if is_pid(p.trim()) => vec![p.trim().to_string()],
                    Ok(_) => {
                        tracing::warn!(pidfile = ?file, "the pid file holds no process id; no signal sent");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(pidfile = ?file, error = %e, "cannot read the pid file; no signal sent");
                        continue;
                    }
                },
                Recipient::Name(name) => {
                    let pids = pids_named(Path::new("/proc"), name, std::process::id());
                    if pids.is_empty() {
                        tracing::warn!(process = ?name, "no process by that name (is the process namespace shared?); no signal sent");
                        continue;
                    }
                    pids
                }
            };
            for pid in pids {
                match send(signal, &pid) {
                    Ok(()) => {
                        tracing::info!(signal = %signal, pid = %pid, "files changed; process signalled")
                    }
                    Err(e) => {
                        tracing::warn!(signal = %signal, pid = %pid, error = %e, "cannot signal the process")
                    }
                }
            }
        }
        for cmd in &self.on_change {
            match std::process::Command::new("sh")
                .args(["-c", cmd])
                .env("SECRETS_AGENT_CHANGED_FILES", changed.join("\n"))
                .stdin(std::process::Stdio::null())
                .status()
            {
                Ok(s) if s.success() => {
                    tracing::info!(command = ?cmd, "files changed; on-change command ran")
                }
                Ok(s) => {
                    tracing::warn!(command = ?cmd, status = %s, "the on-change command failed")
                }
                Err(e) => {
                    tracing::warn!(command = ?cmd, error = %e, "cannot run the on-change command")
                }
            }
        }
    }
}

fn is_pid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The pids under `proc` whose `comm` is `name`, but `me`.
fn pids_named(proc: &Path, name: &str, me: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| is_pid(pid) && *pid != me.to_string())
        .filter(|pid| {
            std::fs::read_to_string(proc.join(pid).join("comm"))
                .is_ok_and(|comm| comm.trim_end_matches('\n') == name)
        })
        .collect();
    pids.sort();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_we_accept_can_be_sent() {
        for name in SIGNALS {
            let sig: Result<nix::sys::signal::Signal, _> = format!("SIG{name}").parse();
            assert!(sig.is_ok(), "{name}");
        }
        // A process that does not exist: an error, not a panic.
        assert!(send("HUP", "2147483646").is_err());
    }

    #[test]
    fn notify_values_parse() {
        let h = Hooks::new(
            &["SIGHUP:/run/app.pid".into(), "usr1:nginx".into()],
            &["echo hi".into()],
        )
        .unwrap();
        assert_eq!(
            h.notify,
            [
                ("HUP".into(), Recipient::PidFile("/run/app.pid".into())),
                ("USR1".into(), Recipient::Name("nginx".into())),
            ]
        );
        for bad in [
            "HUP",
            "HUP:",
            "SIGFOO:/p",
            "HUP:rel/path",
            "HUP:a-name-longer-than-15",
        ] {
            assert!(Hooks::new(&[bad.into()], &[]).is_err(), "{bad}");
        }
        assert!(Hooks::new(&[], &[" ".into()]).is_err());
    }

    #[test]
    fn processes_are_found_by_comm() {
        let root = std::env::temp_dir().join(format!("sa-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, comm) in [
            ("10", "nginx\n"),
            ("11", "nginx\n"),
            ("12", "sh\n"),
            ("99", "nginx\n"),
        ] {
            std::fs::create_dir_all(root.join(pid)).unwrap();
            std::fs::write(root.join(pid).join("comm"), comm).unwrap();
        }
        std::fs::create_dir_all(root.join("self")).unwrap();
        assert_eq!(pids_named(&root, "nginx", 99), ["10", "11"]);
        assert!(pids_named(&root, "missing", 99).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
