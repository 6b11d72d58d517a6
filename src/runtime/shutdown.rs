//! Signals. SIGTERM and SIGINT stop the agent (the shutdown future for container mode). SIGHUP,
//! SIGUSR1, SIGUSR2 and SIGALRM, whose default action kills a process, are logged and ignored:
//! a stray `kill -HUP` (log rotation scripts, a terminal closing) must not take down every
//! application's secrets, and a death by SIGHUP is not restarted by systemd's
//! `Restart=on-failure`. SIGHUP is kept for reloading the configuration. The other signals keep
//! their default action (README, "Signals"): SIGQUIT dumps core on purpose, SIGKILL and SIGSTOP
//! cannot be caught, SIGPIPE is ignored by Rust's runtime.

/// Resolves on the first SIGTERM or SIGINT; logs and ignores the signals of [`ignore_stray`]
/// meanwhile.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
                    _ = ignore_stray() => {}
                }
            }
            _ => {
                tracing::warn!("cannot install signal handlers; stop the agent with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs and ignores SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM for as long as it is polled (never
/// resolves). Where a handler cannot be installed the signal keeps its default action, and a
/// warning says so.
pub async fn ignore_stray() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        let kinds = [
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
            (SignalKind::alarm(), "SIGALRM"),
        ];
        let mut streams: Vec<(Signal, &'static str)> = Vec::with_capacity(kinds.len());
        for (kind, name) in kinds {
            match signal(kind) {
                Ok(s) => streams.push((s, name)),
                Err(e) => tracing::warn!(
                    signal = name,
                    error = %e,
                    "cannot handle {name}; it would stop the agent"
                ),
            }
        }
        loop {
            let name = std::future::poll_fn(|cx| {
                for (s, name) in streams.iter_mut() {
                    if s.poll_recv(cx).is_ready() {
                        return std::task::Poll::Ready(*name);
                    }
                }
                std::task::Poll::Pending
            })
            .await;
            if name == "SIGHUP" {
                tracing::warn!(
                    signal = name,
                    "SIGHUP received and ignored: this version does not reload its \
                     configuration; restart the agent to apply a change"
                );
            } else {
                tracing::warn!(
                    signal = name,
                    "{name} received and ignored: it means nothing to the agent \
                     (SIGTERM or SIGINT stop it)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}
