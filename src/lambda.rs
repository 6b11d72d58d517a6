//! Lambda mode: an external extension that speaks the Extensions API itself.
//!
//! Order matters: bind the port and start the prefetch, then register for INVOKE and SHUTDOWN
//! (the extension name is the executable's file name), then run the event loop while the server
//! runs. The function's init code can therefore call the agent as soon as it starts; a read of a
//! secret that is still being prefetched waits for that fetch.
//!
//! INVOKE starts refresh-ahead of due entries (no timer runs while Lambda freezes the process).
//! SHUTDOWN stops the server and drains within the event's deadline. A start-up failure is
//! reported with `/extension/init/error` and a non-zero exit.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_extension::{service_fn, Extension, LambdaEvent, NextEvent};
use tokio::sync::watch;

use crate::config::{Config, ConfigError, Env, Overrides};
use crate::{server, start, StartError};

const EVENTS: &[&str] = &["INVOKE", "SHUTDOWN"];
/// Time kept back from the SHUTDOWN deadline for the process to exit.
const EXIT_MARGIN: Duration = Duration::from_millis(200);

/// Runs the extension; returns the process exit code.
pub async fn run(config: Result<Config, ConfigError>, env: Env) -> u8 {
    let config = match config {
        Ok(c) => c,
        Err(e) => return report_init_error(&StartError::Config(e)).await,
    };
    let started = match start(&config, &env, None).await {
        Ok(s) => s,
        Err(e) => return report_init_error(&e).await,
    };
    let app = started.app.clone();
    // The SHUTDOWN event sends how long the server may drain.
    let (stop_tx, mut stop_rx) = watch::channel::<Option<Duration>>(None);
    let server_app = started.app.clone();
    let listener = started.listener;
    let mut server = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.wait_for(Option::is_some).await;
        };
        server::serve(listener, server_app, stop).await;
    });

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
                    let left = Duration::from_millis(e.deadline_ms)
                        .saturating_sub(since_epoch())
                        .saturating_sub(EXIT_MARGIN);
                    let _ = stop_tx.send(Some(left));
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
            tracing::error!(error = %e, "cannot register with the Extensions API");
            return 1;
        }
    };
    tracing::info!(extension_id = %registered.extension_id, "registered");
    let code = tokio::select! {
        result = registered.run() => match result {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "Extensions API loop failed");
                1
            }
        },
        _ = &mut server => 0,
    };
    app.cache.shutdown();
    code
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Registers (the API needs an extension id for it), reports the error with
/// `/extension/init/error`, and returns the exit code.
async fn report_init_error(err: &StartError) -> u8 {
    tracing::error!(error = %err, "cannot start");
    let registered = Extension::new().with_events(EVENTS).register().await;
    match registered {
        Ok(r) => {
            let message = err.to_string();
            let body = lambda_extension::requests::ErrorRequest {
                error_message: &message,
                error_type: err.lambda_error_type(),
                stack_trace: Vec::new(),
            };
            let sent = async {
                let client = lambda_runtime_api_client::Client::builder().build()?;
                let req = lambda_extension::requests::init_error(
                    &r.extension_id,
                    err.lambda_error_type(),
                    Some(body),
                )?;
                client.call(req).await?;
                Ok::<(), lambda_extension::Error>(())
            };
            if let Err(e) = sent.await {
                tracing::error!(error = %e, "cannot report the init error to Lambda");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot register with the Extensions API"),
    }
    crate::EXIT_USAGE
}

/// Loads the configuration for Lambda mode.
pub fn load_config(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
    Config::load(overrides, env)
}

#[allow(dead_code)]
fn _assert_send(app: Arc<crate::server::App<crate::backend::AwsBackend>>) -> impl Send {
    app
}
