//! Lambda mode: an external extension that speaks the Extensions API itself.
//!
//! Order matters: bind the port and start the prefetch, then register for INVOKE and SHUTDOWN
//! (the extension name is the executable's file name, as Lambda requires), then run the event
//! loop while the server runs. The function's init code can therefore call the agent as soon as
//! it starts; a read of a secret that is still being prefetched waits for that fetch.
//!
//! - INVOKE starts refresh-ahead of due entries: Lambda freezes the process between invokes, so
//!   no timer can be trusted to have run; TTLs are wall-clock.
//! - SHUTDOWN stops accepting, drains in-flight requests within the event's `deadlineMs` (less a
//!   margin to exit) and exits 0, whatever the Extensions API does afterwards.
//! - A start-up failure (bad configuration, no token, port taken) registers, reports with
//!   `/extension/init/error` and an `Extension.*` type, and exits 64.
//! - A failure after init (the event loop or the server dies) is reported with
//!   `/extension/exit/error` and exits 1.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_extension::requests::{exit_error, init_error, ErrorRequest};
use lambda_extension::{service_fn, Extension, LambdaEvent, NextEvent};
use tokio::sync::watch;

use crate::api::server;
use crate::config::{Config, ConfigError, Env};
use crate::{start, StartError};

const EVENTS: &[&str] = &["INVOKE", "SHUTDOWN"];
/// Time kept back from the SHUTDOWN deadline for the process to exit.
const EXIT_MARGIN: Duration = Duration::from_millis(200);
/// Exit code for a failure after init.
const EXIT_FAILURE: u8 = 1;

/// Runs the extension; returns the process exit code.
pub async fn run(config: Result<Config, ConfigError>, env: Env) -> u8 {
    let config = match config {
        Ok(c) => c,
        Err(e) => return report_init_error(&StartError::Config(e)).await,
    };
    let started = match start(&config, &env).await {
        Ok(s) => s,
        Err(e) => return report_init_error(&e).await,
    };
    let app = started.app.clone();

    // `Some(budget)` once SHUTDOWN arrived: the server stops accepting and drains; the budget is
    // what is left until the deadline.
    let (stop_tx, stop_rx) = watch::channel::<Option<Duration>>(None);
    let mut server = {
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(server::serve(started.listener, started.app, async move {
            let _ = stop_rx.wait_for(Option::is_some).await;
        }))
    };

    let cache = app.cache.clone();
    let processor = service_fn(move |event: LambdaEvent| {
        let cache = cache.clone();
        let stop_tx = stop_tx.clone();
        async move {
            match event.next {
                NextEvent::Invoke(_) => {
                    let n = cache.refresh_due();
                    if n > 0 {
                        tracing::debug!(entries = n, "refresh-ahead started on INVOKE");
                    }
                }
                NextEvent::Shutdown(e) => {
                    tracing::info!(reason = %e.shutdown_reason, "SHUTDOWN received");
                    let _ = stop_tx.send(Some(budget_until(e.deadline_ms)));
                }
            }
            Ok::<(), lambda_extension::Error>(())
        }
    });
    let registered = match Extension::new()
        .with_events(EVENTS)
        .with_events_processor(processor)
        .register()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // Without an extension id there is nobody to report to.
            tracing::error!(error = %e, "cannot register with the Extensions API");
            server.abort();
            app.cache.shutdown();
            return EXIT_FAILURE;
        }
    };
    let extension_id = registered.extension_id.clone();
    tracing::info!(extension_id = %extension_id, "registered");

    let events = registered.run();
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
            tracing::error!(error = %message, "exiting after init");
            report(Phase::Exit, &extension_id, "Extension.Failed", &message).await;
            server.abort();
            EXIT_FAILURE
        }
    };
    if code == 0 {
        tracing::info!("stopped");
    }
    app.cache.shutdown();
    code
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
async fn report_init_error(err: &StartError) -> u8 {
    tracing::error!(error = %err, "cannot start");
    match Extension::new().with_events(EVENTS).register().await {
        Ok(r) => {
            report(
                Phase::Init,
                &r.extension_id,
                err.lambda_error_type(),
                &err.to_string(),
            )
            .await
        }
        Err(e) => tracing::error!(error = %e, "cannot register with the Extensions API"),
    }
    crate::EXIT_USAGE
}

/// What ended the wait after registration.
enum Ended {
    Shutdown,
    EventLoop(String),
    Server,
}

#[derive(Clone, Copy)]
enum Phase {
    Init,
    Exit,
}

/// POSTs `/extension/{init,exit}/error`; failures are logged, the caller exits anyway.
async fn report(phase: Phase, extension_id: &str, error_type: &str, message: &str) {
    let body = ErrorRequest {
        error_message: message,
        error_type,
        stack_trace: Vec::new(),
    };
    let sent = async {
        let client = lambda_runtime_api_client::Client::builder().build()?;
        let req = match phase {
            Phase::Init => init_error(extension_id, error_type, Some(body))?,
            Phase::Exit => exit_error(extension_id, error_type, Some(body))?,
        };
        let resp = client.call(req).await?;
        Ok::<_, lambda_extension::Error>(resp.status())
    };
    match sent.await {
        Ok(status) if status.is_success() => {
            tracing::info!(error_type, "error reported to the Extensions API")
        }
        Ok(status) => tracing::error!(
            status = status.as_u16(),
            "the Extensions API refused the error report"
        ),
        Err(e) => tracing::error!(error = %e, "cannot report the error to the Extensions API"),
    }
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
    fn a_deadline_already_past_leaves_no_budget() {
        assert_eq!(budget_until(0), Duration::ZERO);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(budget_until(now + 100), Duration::ZERO);
    }
}
