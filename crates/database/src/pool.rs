//! The connection pool: the one entry point that services and binaries open.

use std::ops::{Deref, DerefMut};
use std::path::Path;

use diesel::r2d2::{HandleError, Pool, PooledConnection};

use crate::config::{Backend, DEFAULT_SQLITE_PATH, DatabaseConfig, DatabaseTarget};
use crate::connection::{CloseCounter, ConnectError, ConnectionManager, DbConnection};
use crate::metrics::{Metrics, MetricsSnapshot};

/// A pooled connection borrowed from a [`Database`]; it derefs to the [`DbConnection`] and goes
/// back to the pool when dropped.
pub struct Connection(PooledConnection<ConnectionManager>);

impl Connection {
    /// Tells the pool that this connection is lost (its server closed it): the pool drops it
    /// when it comes back instead of handing it out again. The repositories call it on every
    /// `Unavailable` error; code that uses the connection directly may too.
    pub fn mark_lost(&mut self) {
        self.0.lost = true;
    }
}

impl Deref for Connection {
    type Target = DbConnection;

    fn deref(&self) -> &DbConnection {
        &self.0.connection
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.0.connection
    }
}

/// The pool could not be built or could not hand out a connection.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The database could not be reached or the connection could not be set up.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// No connection became available within the configured connection timeout: the database
    /// is unreachable, refuses the connection, or every pooled connection is in use.
    #[error("no database connection from {target} (set by {source_variable}) within {timeout_ms} ms: {reason}")]
    Unavailable {
        /// The redacted connection string.
        target: String,
        /// The variable that chose the database.
        source_variable: &'static str,
        /// `DATABASE_POOL_CONNECTION_TIMEOUT_MS`.
        timeout_ms: u128,
        /// r2d2's report, with the last connection error if there was one, scrubbed of passwords.
        reason: String,
    },
}

/// A pool of connections to one database, PostgreSQL or SQLite.
pub struct Database {
    pool: Pool<ConnectionManager>,
    config: DatabaseConfig,
    metrics: Metrics,
}

impl Database {
    /// Opens a pool for `config` after opening one connection directly, so that a bad URL, an
    /// unreachable host or a refused password fails here with the driver's own error. That
    /// connection becomes the pool's first: opening a pool and migrating it at head is one
    /// server session (with the default `min_idle` of 0; r2d2 opens `min_idle` spares besides).
    ///
    /// The embedded default's directory (`data/`, which a fresh clone lacks) is created first; a
    /// SQLite file configured explicitly must be in a directory that exists.
    pub fn connect(config: DatabaseConfig) -> Result<Self, PoolError> {
        if config.target.source() == "default" {
            create_default_directory(&config.target)?;
        }
        let settings = &config.pool;
        let metrics = Metrics::new(
            &config.session.application_name,
            settings.max_size,
            config.metrics.slow_query,
        );
        let manager = ConnectionManager::new(
            config.target.clone(),
            config.session.clone(),
            settings.connection_timeout,
        )
        .validate_idle_after(settings.validate_idle_after)
        .max_lifetime(settings.max_lifetime)
        .metrics(metrics.clone(), config.metrics.query_metrics);
        if let Some(warning) = config.target.tls_warning() {
            tracing::warn!(database = config.target.redacted(), "{warning}");
        }
        let first = manager.establish()?;
        manager.hand_over(first);
        let pool = Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(settings.min_idle))
            .idle_timeout(Some(settings.idle_timeout))
            .max_lifetime(Some(settings.max_lifetime))
            .connection_timeout(settings.connection_timeout)
            .test_on_check_out(settings.test_on_check_out)
            .error_handler(Box::new(TracingErrorHandler(metrics.clone())))
            .event_handler(Box::new(metrics.pool_events()))
            .connection_customizer(Box::new(CloseCounter(metrics.clone())))
            .build_unchecked(manager);
        Ok(Self { pool, config, metrics })
    }

    /// Reads the configuration from the environment and connects.
    pub fn from_env() -> Result<Self, crate::Error> {
        Ok(Self::connect(DatabaseConfig::from_env()?)?)
    }

    /// Borrows a connection, waiting at most the configured connection timeout.
    pub fn get(&self) -> Result<Connection, PoolError> {
        checkout(&self.pool, &self.config.target)
    }

    /// Which engine the pool talks to.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.config.target.backend()
    }

    /// The configuration the pool was opened with.
    #[must_use]
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// What the pool and its connections measured so far: connections in use and idle,
    /// checkouts, waits and timeouts, connections opened and closed and why, and statement
    /// durations by kind. Read from atomic counters, without the pool's lock: cheap enough for
    /// every scrape or request.
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The pool's measurements themselves: [`Metrics::render_prometheus`] gives the Prometheus
    /// text format, and a service registers them in its own `prometheus_client` registry with
    /// `registry.register_collector(Box::new(database.metrics_collector()))`.
    #[must_use]
    pub fn metrics_collector(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Connections open and idle right now, as r2d2 counts them: the connection
    /// [`Database::connect`] opened counts from the pool's first checkout (or, with `min_idle`
    /// above 0, from the moment the pool takes it).
    #[must_use]
    pub fn state(&self) -> diesel::r2d2::State {
        self.pool.state()
    }
}

fn create_default_directory(target: &DatabaseTarget) -> Result<(), ConnectError> {
    let directory = Path::new(DEFAULT_SQLITE_PATH).parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory).map_err(|error| ConnectError {
        target: target.redacted().to_owned(),
        source_variable: target.source(),
        reason: format!("cannot create {}: {error}", directory.display()),
    })
}

fn checkout(pool: &Pool<ConnectionManager>, target: &DatabaseTarget) -> Result<Connection, PoolError> {
    pool.get().map(Connection).map_err(|error| PoolError::Unavailable {
        target: target.redacted().to_owned(),
        source_variable: target.source(),
        timeout_ms: pool.connection_timeout().as_millis(),
        reason: target.scrub(&error.to_string()),
    })
}

/// Logs and counts connection errors that r2d2 meets in the background (its default handler
/// uses `log`).
#[derive(Debug)]
struct TracingErrorHandler(Metrics);

impl HandleError<ConnectError> for TracingErrorHandler {
    fn handle_error(&self, error: ConnectError) {
        self.0.connection_error();
        tracing::warn!(%error, "database connection error in pool");
    }
}
