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
    // domain's `insecure-test-hash` is refused by release builds; a debug build that has it
    // (a test dependency unified in) must not serve either: its hashes would be cheap to crack.
    anyhow::ensure!(
        !domain::PasswordHash::dummy().needs_rehash(),
        "this build hashes passwords with domain's insecure-test-hash parameters: build without that feature"
    );
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
    // Requests in flight end within the request timeout; the drain waits that long and a little
    // more (a slow client's request that has not reached a handler has no timeout of its own).
    let drain = settings.request_timeout + DRAIN_MARGIN;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stopping.send(true);
        };
        tokio::select! {
            served = http_service::serve(listener, state, &settings, shutdown) => served,
            () = async {
                let _ = stopped.wait_for(|stopping| *stopping).await;
                tokio::time::sleep(drain).await;
            } => {
                tracing::warn!(drain_ms = drain.as_millis(), "requests still in flight after the drain: dropped");
                Ok(())
            }
        }
    })?;
    // Blocking work of requests answered 504 may still run: wait for it, then the pool is the
    // last holder of its connections.
    runtime.shutdown_timeout(drain);
    if let Some(database) = Arc::into_inner(database) {
        let open = database.state().connections;
        drop(database);
        tracing::info!(connections_closed = open, "requests drained; the pool is closed");
    } else {
        tracing::warn!("blocking work still holds the pool after the drain; it closes when that ends");
    }
    Ok(())
}

/// How much longer than the request timeout the drain waits.
const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

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
