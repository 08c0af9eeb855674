//! `http-service`: the reference HTTP service. Configured by the environment (`DATABASE_*` as
//! every binary of the workspace, `HTTP_*`), it migrates the database at start-up, serves until
//! SIGINT or SIGTERM, then drains the requests in flight and closes the pool.

use std::process::ExitCode;
use std::sync::Arc;

use http_service::{AppState, Settings};
use repo_diesel::{Database, Migrate as _};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    // Connecting and migrating block: done before the runtime starts.
    let database = Database::from_env()?;
    let report = database.migrate()?;
    tracing::info!(
        database = database.config().target.redacted(),
        applied = report.applied.len(),
        "database at head"
    );
    let database = Arc::new(database);
    let state = AppState::new(Arc::clone(&database));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        http_service::serve(listener, state, &settings, shutdown_signal()).await
    })?;
    let state = database.state();
    drop(database);
    tracing::info!(
        connections_open_at_close = state.connections,
        "requests drained; the pool is closed"
    );
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (`docker stop`, systemd, Kubernetes).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "SIGTERM cannot be watched; only Ctrl-C stops the service");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: no new connections; draining the requests in flight");
}
