//! Serving in container mode (ECS, Fargate, EKS, a host under systemd): bind, prefetch, serve
//! (and keep `[[files]]` current, see `commands::render`); on SIGTERM or SIGINT stop accepting,
//! drain, exit 0. Lambda mode is `commands::lambda`.

use crate::api::server;
use crate::config::{Config, Env};
use crate::signals;
use crate::{start, StartError};

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
