//! Serving, the binary's default command. The mode is picked from the environment: with
//! `AWS_LAMBDA_RUNTIME_API` set, the Lambda extension (`commands::lambda`); otherwise container
//! mode (ECS, Fargate, EKS, a host under systemd): bind, prefetch, serve (and keep `[[files]]`
//! current, see `commands::render`); on SIGTERM or SIGINT stop accepting, drain, exit 0.

use crate::api::server;
use crate::config::{Config, ConfigError, Env};
use crate::{logging, signals};
use crate::{start, StartError, EXIT_USAGE};

/// Exit code when the async runtime cannot start.
const EXIT_FAILURE: u8 = 1;

/// Sets up logging and the runtime, then serves in the mode the environment picks; returns the
/// process exit code. A bad configuration is reported to Lambda in Lambda mode (its
/// `/extension/init/error`), otherwise printed with exit 64.
pub fn main(config: Result<Config, ConfigError>, env: Env) -> u8 {
    let lambda_mode = env.contains_key("AWS_LAMBDA_RUNTIME_API");
    match &config {
        Ok(c) => {
            logging::init(c, &env, lambda_mode);
            for w in &c.warnings {
                // Warnings name environment variables, whose names may hold any character.
                tracing::warn!("{}", w.escape_debug());
            }
        }
        Err(_) => logging::init(&Config::default(), &env, lambda_mode),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    if lambda_mode {
        return runtime.block_on(crate::commands::lambda::run(config, env));
    }
    let result = match config {
        Ok(config) => runtime.block_on(run(config, env)),
        Err(e) => Err(StartError::Config(e)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            EXIT_USAGE
        }
    }
}

/// Runs until a signal, then drains.
pub async fn run(config: Config, env: Env) -> Result<(), StartError> {
    let started = start(&config, &env).await?;
    let app = started.app.clone();
    let files = crate::commands::render::serve_files(&config, app.cache.clone())
        .map_err(StartError::Files)?
        .map(tokio::spawn);
    server::serve(started.listener, started.app, signals::shutdown()).await;
    if let Some(files) = files {
        files.abort();
    }
    app.cache.shutdown();
    tracing::info!("stopped");
    Ok(())
}
