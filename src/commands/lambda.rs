//! Lambda mode: an external extension that speaks the Extensions API itself.
//!
//! Order matters: bind the port and start the prefetch, then register (the extension name is
//! the executable's file name, as Lambda requires), then run the event loop while the server
//! runs. The function's init code can therefore call the agent as soon as it starts; a read of
//! a secret that is still being prefetched waits for that fetch.
//!
//! `AWS_LAMBDA_INITIALIZATION_TYPE` picks the flavour:
//! - on-demand and provisioned-concurrency: register for INVOKE and SHUTDOWN. The process is
//!   frozen between invokes, so no timer can be trusted to have run (TTLs are wall-clock) and a
//!   read never starts a background refresh: each INVOKE starts the refresh-ahead of due
//!   entries and waits for those fetches (at most until the invoke's deadline, less a margin)
//!   before asking for the next event, so a freeze never catches one mid-flight.
//! - `lambda-managed-instances`: the Extensions API refuses INVOKE there; register for SHUTDOWN
//!   only (the init-error path too). The environment is not frozen and serves invokes
//!   concurrently: refresh-ahead runs on reads, as in a container.
//! - `snap-start`: before the snapshot (taken once every extension asks for its first event),
//!   wait for the prefetch. The first INVOKE always follows a restore: it builds new AWS clients
//!   (pooled connections are dead, credentials may be stale) and marks every cached value for
//!   revalidation before it is served as a hit again.
//!
//! - SHUTDOWN stops accepting, drains in-flight requests within the event's `deadlineMs` (less a
//!   margin to exit) and exits 0, whatever the Extensions API does afterwards.
//! - An event type we do not know is logged and skipped. event/next answering 403 or 500 (what
//!   the API reference calls unrecoverable), or failing five times in a row, ends the agent.
//! - A start-up failure (bad configuration, no token, port taken) registers, reports with
//!   `/extension/init/error` and an `Extension.*` type, and exits 64.
//! - A failure after init (the event loop or the server dies) is reported with
//!   `/extension/exit/error` and exits 1.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::api::server;
use crate::backend::AwsBackend;
use crate::cache::Cache;
use crate::config::{Config, ConfigError, Env};
pub mod extensions_api;

use crate::{start, StartError};
use extensions_api::{Event, ExtensionsApi, Phase};

/// Time kept back from the SHUTDOWN deadline for the process to exit.
const EXIT_MARGIN: Duration = Duration::from_millis(200);
/// Exit code for a failure after init.
const EXIT_FAILURE: u8 = 1;
/// SnapStart: how long init waits for the prefetch before letting the snapshot be taken.
const SNAPSHOT_PREFETCH_LIMIT: Duration = Duration::from_secs(10);

/// The Lambda flavour, from `AWS_LAMBDA_INITIALIZATION_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// on-demand, provisioned-concurrency (or unset).
    Classic,
    ManagedInstances,
    SnapStart,
}

impl Flavour {
    pub fn from_env(env: &Env) -> Flavour {
        match env.get("AWS_LAMBDA_INITIALIZATION_TYPE").map(|s| s.trim()) {
            Some("lambda-managed-instances") => Flavour::ManagedInstances,
            Some("snap-start") => Flavour::SnapStart,
            _ => Flavour::Classic,
        }
    }

    /// The events to register for.
    pub fn events(self) -> &'static [&'static str] {
        match self {
            // The Extensions API refuses an INVOKE registration on Managed Instances.
            Flavour::ManagedInstances => &["SHUTDOWN"],
            Flavour::Classic | Flavour::SnapStart => &["INVOKE", "SHUTDOWN"],
        }
    }
}

/// Runs the extension; returns the process exit code.
pub async fn run(config: Result<Config, ConfigError>, env: Env) -> u8 {
    let flavour = Flavour::from_env(&env);
    let runtime_api = env
        .get("AWS_LAMBDA_RUNTIME_API")
        .cloned()
        .unwrap_or_default();
    let api = match ExtensionsApi::new(&runtime_api) {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(error = ?e.to_string(), "cannot reach the Extensions API");
            return EXIT_FAILURE;
        }
    };
    let name = extension_name();
    let config = match config {
        Ok(c) => c,
        Err(e) => return report_init_error(&api, &name, flavour, &StartError::Config(e)).await,
    };
    let started = match start(&config, &env).await {
        Ok(s) => s,
        Err(e) => return report_init_error(&api, &name, flavour, &e).await,
    };
    let app = started.app.clone();
    let cache = app.cache.clone();
    // Lambda stops the agent with SHUTDOWN; a stray signal must not kill it.
    tokio::spawn(crate::signals::ignore_stray());
    if flavour != Flavour::ManagedInstances {
        cache.set_refresh_on_read(false);
    }

    // `Some(budget)` once SHUTDOWN arrived: the server stops accepting and drains; the budget is
    // what is left until the deadline.
    let (stop_tx, stop_rx) = watch::channel::<Option<Duration>>(None);
    let mut server = {
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(server::serve(started.listener, started.app, async move {
            let _ = stop_rx.wait_for(Option::is_some).await;
        }))
    };

    let extension_id = match api.register(&name, flavour.events()).await {
        Ok(id) => id,
        Err(e) => {
            // Without an extension id there is nobody to report to.
            tracing::error!(error = ?e.to_string(), "cannot register with the Extensions API");
            server.abort();
            cache.shutdown();
            return EXIT_FAILURE;
        }
    };
    tracing::info!(extension_id = %extension_id, flavour = ?flavour, events = ?flavour.events(), "registered");
    if flavour == Flavour::SnapStart && !cache.settle(SNAPSHOT_PREFETCH_LIMIT).await {
        tracing::warn!(
            limit_s = SNAPSHOT_PREFETCH_LIMIT.as_secs(),
            "prefetch not finished before the snapshot; those reads start again after restore"
        );
    }

    let events = event_loop(&api, &extension_id, &cache, flavour, &stop_tx);
    tokio::pin!(events);
    let mut shutdown = stop_rx.clone();
    let ended = tokio::select! {
        biased;
        _ = shutdown.wait_for(Option::is_some) => Ended::Shutdown,
        result = &mut events => Ended::EventLoop(match result {
            Ok(()) => "the Extensions API event loop ended".to_string(),
            Err(e) => format!("the Extensions API event loop failed: {e}"),
        }),
        _ = &mut server => Ended::Server,
    };
    // Once SHUTDOWN has arrived, whatever else ended is expected: the server stops by itself
    // and Lambda may tear the API down under the event loop.
    let budget = *stop_rx.borrow();
    let code = match (budget, ended) {
        (Some(_), Ended::Server) => 0,
        (Some(budget), _) => {
            if tokio::time::timeout(budget, &mut server).await.is_err() {
                tracing::warn!(
                    budget_ms = budget.as_millis() as u64,
                    "drain did not finish before the SHUTDOWN deadline; exiting"
                );
                server.abort();
            }
            0
        }
        (None, ended) => {
            let message = match ended {
                Ended::EventLoop(m) => m,
                _ => "the HTTP server stopped".to_string(),
            };
            tracing::error!(error = ?message, "exiting after init");
            api.report(Phase::Exit, &extension_id, "Extension.Failed", &message)
                .await;
            server.abort();
            EXIT_FAILURE
        }
    };
    if code == 0 {
        tracing::info!("stopped");
    }
    cache.shutdown();
    code
}

/// Asks for events until SHUTDOWN (`Ok`) or an unrecoverable answer (`Err`).
async fn event_loop(
    api: &ExtensionsApi,
    extension_id: &str,
    cache: &Cache<AwsBackend>,
    flavour: Flavour,
    stop_tx: &watch::Sender<Option<Duration>>,
) -> Result<(), extensions_api::ExtensionsApiError> {
    // Under SnapStart the first INVOKE is the first thing a restored process sees.
    let mut restored = flavour == Flavour::SnapStart;
    loop {
        match api.next_event(extension_id).await? {
            Event::Invoke {
                request_id,
                deadline_ms,
            } => {
                if std::mem::take(&mut restored) {
                    let marked = cache.after_restore();
                    tracing::info!(
                        values = marked,
                        "restored from a snapshot: new AWS clients; cached values are \
                         revalidated before they are served as hits"
                    );
                }
                let started = cache.refresh_due();
                if started > 0 {
                    // Ask for the next event (after which Lambda may freeze us) only once the
                    // refreshes are done, or the invoke's deadline is near.
                    let finished = cache.settle(budget_until(deadline_ms)).await;
                    tracing::debug!(
                        request_id = ?request_id,
                        entries = started,
                        finished,
                        "refresh-ahead on INVOKE"
                    );
                }
            }
            Event::Shutdown {
                reason,
                deadline_ms,
            } => {
                tracing::info!(reason = ?reason, "SHUTDOWN received");
                let _ = stop_tx.send(Some(budget_until(deadline_ms)));
                return Ok(());
            }
            Event::Other(event_type) => tracing::warn!(
                event_type = ?event_type,
                "event type unknown to this version of secrets-agent; ignored"
            ),
        }
    }
}

/// The executable's file name: Lambda requires it as the extension name.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "secrets-agent".to_string())
}

/// Time left until `deadline_ms` (Unix epoch milliseconds), less the exit margin.
fn budget_until(deadline_ms: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_millis(deadline_ms)
        .saturating_sub(now)
        .saturating_sub(EXIT_MARGIN)
}

/// Registers (the API needs an extension id to accept an error), reports `err` with
/// `/extension/init/error`, and returns the exit code.
async fn report_init_error(
    api: &ExtensionsApi,
    name: &str,
    flavour: Flavour,
    err: &StartError,
) -> u8 {
    tracing::error!(error = %err, "cannot start");
    match api.register(name, flavour.events()).await {
        Ok(id) => {
            api.report(Phase::Init, &id, err.lambda_error_type(), &err.to_string())
                .await
        }
        Err(e) => {
            tracing::error!(error = ?e.to_string(), "cannot register with the Extensions API")
        }
    }
    crate::EXIT_USAGE
}

/// What ended the wait after registration.
enum Ended {
    Shutdown,
    EventLoop(String),
    Server,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_the_time_to_the_deadline_less_the_margin() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let b = budget_until(now + 2_000);
        assert!(b <= Duration::from_millis(1_800), "{b:?}");
        assert!(b >= Duration::from_millis(1_500), "{b:?}");
    }

    #[test]
    fn the_flavour_picks_the_events() {
        let flavour = |v: &str| {
            Flavour::from_env(&crate::config::env(&[(
                "AWS_LAMBDA_INITIALIZATION_TYPE",
                v,
            )]))
        };
        assert_eq!(flavour("lambda-managed-instances").events(), ["SHUTDOWN"]);
        assert_eq!(flavour("snap-start"), Flavour::SnapStart);
        assert_eq!(flavour("on-demand").events(), ["INVOKE", "SHUTDOWN"]);
        assert_eq!(Flavour::from_env(&Env::new()), Flavour::Classic);
    }

    #[test]
    fn a_deadline_already_past_leaves_no_budget() {
        assert_eq!(budget_until(0), Duration::ZERO);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(budget_until(now + 100), Duration::ZERO);
    }
}
