//! One connection type for both backends, and how a new connection is opened and set up.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;
use percent_encoding::utf8_percent_encode;

use crate::config::{
    Backend, COMPONENT, DatabaseTarget, PoolSettings, SessionSettings, last_query_parameter, percent_decode,
};
use crate::metrics::{CloseReason, Metrics};

pub use multi::{DbConnection, MultiBackend};

#[expect(
    missing_docs,
    reason = "diesel's MultiConnection derive generates undocumented items"
)]
mod multi {
    use diesel::pg::PgConnection;
    use diesel::sqlite::SqliteConnection;

    /// A connection to PostgreSQL or SQLite. Queries written once against this type run on both.
    #[derive(diesel::MultiConnection)]
    pub enum DbConnection {
        /// PostgreSQL.
        Pg(PgConnection),
        /// SQLite.
        Sqlite(SqliteConnection),
    }
}

/// Runs `$body` with `$inner` bound to the connection of `$connection`'s own backend
/// (`&mut PgConnection` or `&mut SqliteConnection`); `$body` is written once and compiled for
/// each. A query run there skips the multi-backend enum, whose wrapper builds the query's SQL
/// again on every call: a plain (not boxed) query then costs its SQL only once per connection,
/// kept by type in the backend's statement cache.
#[macro_export]
macro_rules! on_its_backend {
    ($connection:expr, |$inner:ident| $body:expr) => {
        match $connection {
            $crate::connection::DbConnection::Pg($inner) => $body,
            $crate::connection::DbConnection::Sqlite($inner) => $body,
        }
    };
}
pub use on_its_backend;

impl DbConnection {
    /// Which engine this connection talks to.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Self::Pg(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// A connection could not be opened or set up. The message is scrubbed of passwords.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to {target} (set by {source_variable}): {reason}")]
pub struct ConnectError {
    /// The redacted connection string.
    pub target: String,
    /// The variable that chose the database.
    pub source_variable: &'static str,
    /// What the driver said, without the password.
    pub reason: String,
}

/// Opens connections for the r2d2 pool: picks the driver from the configured backend (never by
/// trial, which would hide the real error or create a stray SQLite file) and applies the session
/// settings to every new connection.
///
/// On PostgreSQL the settings travel in the startup packet (libpq's `options` and
/// `application_name` parameters), so a new connection costs no query of this crate's own. A
/// pooler that refuses startup options (`PgBouncer`: "unsupported startup parameter") gets them
/// by `set_config` after connecting instead, from then on for every connection of the manager.
pub struct ConnectionManager {
    target: DatabaseTarget,
    session: SessionSettings,
    connect_timeout: Duration,
    validate_idle_after: Duration,
    max_lifetime: Duration,
    /// A connection opened before the pool (by `Database::connect`), with the moment it was
    /// opened: the first `connect` of the pool returns it instead of opening another session.
    first: Mutex<Option<(DbConnection, Instant)>>,
    /// Set once a server refused the session settings in the startup packet.
    settings_by_query: Arc<AtomicBool>,
    /// Where the connections' closings and (when `query_metrics`) statements are counted.
    metrics: Metrics,
    query_metrics: bool,
}

impl ConnectionManager {
    /// A manager for `target`, setting up each connection with `session`. A PostgreSQL
    /// connection attempt gives up after `connect_timeout` (libpq counts whole seconds, at least
    /// 2) unless the URL sets its own `connect_timeout`. Pooled connections are validated after
    /// the default [`PoolSettings::validate_idle_after`].
    #[must_use]
    pub fn new(target: DatabaseTarget, session: SessionSettings, connect_timeout: Duration) -> Self {
        let session_name = session.application_name.clone();
        Self {
            target,
            session,
            connect_timeout,
            validate_idle_after: PoolSettings::default().validate_idle_after,
            max_lifetime: PoolSettings::default().max_lifetime,
            first: Mutex::new(None),
            settings_by_query: Arc::new(AtomicBool::new(false)),
            metrics: Metrics::new(&session_name, 0, Duration::ZERO),
            query_metrics: false,
        }
    }

    /// Counts closed connections into `metrics` and, when `time_statements`, sets every new
    /// connection up to time its statements into them (diesel's instrumentation).
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics, time_statements: bool) -> Self {
        self.metrics = metrics;
        self.query_metrics = time_statements;
        self
    }

    /// Pings a pooled connection before it is handed out (when the pool tests on checkout) only
    /// if it has been back in the pool for at least `window`; `Duration::ZERO` pings every time.
    #[must_use]
    pub fn validate_idle_after(mut self, window: Duration) -> Self {
        self.validate_idle_after = window;
        self
    }

    /// Closes a connection that comes back to the pool once it is `lifetime` old, so that a
    /// session opened with a credential that was rotated since ends without failing a call.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Keeps `connection`, opened by [`ConnectionManager::establish`], for the pool's first
    /// `connect`, so that opening a pool after checking the configuration costs no second
    /// session.
    pub(crate) fn hand_over(&self, connection: DbConnection) {
        *self.first.lock().unwrap_or_else(PoisonError::into_inner) = Some((connection, Instant::now()));
    }

    /// Opens and sets up one connection outside any pool.
    pub fn establish(&self) -> Result<DbConnection, ConnectError> {
        let mut connection = self.open()?;
        if self.query_metrics {
            connection.set_instrumentation(self.metrics.query_timer());
        }
        Ok(connection)
    }

    fn open(&self) -> Result<DbConnection, ConnectError> {
        // libpq's TLS runs on the vendored OpenSSL. Initialise it the way rust-openssl does, with
        // OPENSSL_INIT_NO_ATEXIT: otherwise OpenSSL's exit-time cleanup can run while an r2d2
        // worker thread is still opening a TLS connection, and the process crashes on exit
        // (reproduced: 6 of 120 short-lived `seed --migrate-only` runs segfaulted).
        openssl_sys::init();
        let error = |reason: String| ConnectError {
            target: self.target.redacted().to_owned(),
            source_variable: self.target.source(),
            reason: self.target.scrub(reason.trim()),
        };
        let connection_string = self
            .target
            .connection_string()
            .map_err(|config| error(config.to_string()))?;
        let connection_string = connection_string.expose();
        let mut connection = match self.target.backend() {
            Backend::Postgres => {
                let url = with_connect_timeout(connection_string, self.connect_timeout);
                if !self.settings_by_query.load(Ordering::Relaxed) {
                    let pgoptions = std::env::var("PGOPTIONS").ok();
                    match PgConnection::establish(&with_startup_settings(&url, &self.session, pgoptions)) {
                        Ok(pg) => return Ok(DbConnection::Pg(pg)),
                        Err(refused) if refused.to_string().contains("unsupported startup parameter") => {
                            tracing::warn!(
                                database = self.target.redacted(),
                                reason = self.target.scrub(refused.to_string().trim()),
                                "the server refused session settings in the startup packet (a pooler?): \
                                 setting them by query on every new connection"
                            );
                            self.settings_by_query.store(true, Ordering::Relaxed);
                        }
                        Err(connection_error) => return Err(error(connection_error.to_string())),
                    }
                }
                PgConnection::establish(&url).map(DbConnection::Pg)
            }
            Backend::Sqlite => {
                check_sqlite_directory(connection_string).map_err(error)?;
                SqliteConnection::establish(connection_string).map(DbConnection::Sqlite)
            }
        }
        .map_err(|connection_error| error(connection_error.to_string()))?;
        apply_session_settings(&mut connection, &self.session)
            .map_err(|query_error| error(format!("session setup failed: {query_error}")))?;
        Ok(connection)
    }
}

impl Clone for ConnectionManager {
    /// A manager for the same database; a connection kept for the first `connect` stays with
    /// the original.
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            session: self.session.clone(),
            connect_timeout: self.connect_timeout,
            validate_idle_after: self.validate_idle_after,
            max_lifetime: self.max_lifetime,
            first: Mutex::new(None),
            settings_by_query: Arc::clone(&self.settings_by_query),
            metrics: self.metrics.clone(),
            query_metrics: self.query_metrics,
        }
    }
}

impl fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("target", &self.target)
            .field("session", &self.session)
            .field("connect_timeout", &self.connect_timeout)
            .field("validate_idle_after", &self.validate_idle_after)
            .field("max_lifetime", &self.max_lifetime)
            .field("settings_by_query", &self.settings_by_query.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A connection as the pool keeps it: the connection, whether a call found it lost, and when it
/// was last known to work.
///
/// diesel reports a connection as broken only when its transaction state is, so a connection
/// whose server went away (restart, failover, `pg_terminate_backend`) would go back into the pool
/// and fail every later call. A call that gets `Unavailable` from the connection marks it lost,
/// and the pool drops it instead of handing it out again.
pub struct PooledDb {
    pub(crate) connection: DbConnection,
    pub(crate) lost: bool,
    /// When the connection was opened or last came back to the pool not lost: the checkout
    /// validation pings only connections idle longer than the manager's window since then.
    pub(crate) last_used: Instant,
    /// Why the manager gave the connection up, for the metrics; `None` until it does (a
    /// connection r2d2's reaper closes keeps `None`: it was idle).
    pub(crate) closing: Option<CloseReason>,
    /// When the connection was opened: it is closed on its return once older than the
    /// manager's `max_lifetime`.
    pub(crate) opened_at: Instant,
}

impl ManageConnection for ConnectionManager {
    type Connection = PooledDb;
    type Error = ConnectError;

    fn connect(&self) -> Result<PooledDb, ConnectError> {
        let first = self.first.lock().unwrap_or_else(PoisonError::into_inner).take();
        let (connection, last_used) = match first {
            Some(kept) => kept,
            None => (self.establish()?, Instant::now()),
        };
        Ok(PooledDb {
            connection,
            lost: false,
            last_used,
            opened_at: last_used,
            closing: None,
        })
    }

    /// Called by r2d2 before a checkout when `test_on_check_out` is on. A connection used within
    /// the window is handed out without a round trip; if its server closed it meanwhile, the one
    /// call on it fails with `Unavailable` and marks it lost.
    fn is_valid(&self, pooled: &mut PooledDb) -> Result<(), ConnectError> {
        if pooled.last_used.elapsed() < self.validate_idle_after {
            return Ok(());
        }
        pooled.connection.ping().map_err(|query_error| {
            pooled.closing = Some(CloseReason::Invalid);
            ConnectError {
                target: self.target.redacted().to_owned(),
                source_variable: self.target.source(),
                reason: self.target.scrub(&query_error.to_string()),
            }
        })
    }

    /// Called by r2d2 whenever a connection comes back: a lost or broken one is dropped, and so
    /// is one older than `max_lifetime` (r2d2 itself closes only idle ones, every 30 s); any
    /// other was used just now, which starts its validation window again.
    fn has_broken(&self, pooled: &mut PooledDb) -> bool {
        pooled.last_used = Instant::now();
        if pooled.lost || pooled.connection.is_broken() {
            pooled.closing = Some(CloseReason::Lost);
            true
        } else if pooled.opened_at.elapsed() >= self.max_lifetime {
            pooled.closing = Some(CloseReason::Expired);
            true
        } else {
            false
        }
    }
}

/// Switches a new database to WAL (the mode is stored in the file, so later connections find it
/// set). The switch needs the database to itself and SQLite reports "database is locked" at once,
/// without waiting `busy_timeout`, when other connections open it at the same moment: retry
/// within the busy timeout.
fn use_write_ahead_log(sqlite: &mut SqliteConnection, busy_timeout: Duration) -> QueryResult<()> {
    #[derive(QueryableByName)]
    struct JournalMode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }
    let started = Instant::now();
    loop {
        let mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result::<JournalMode>(sqlite)?
            .journal_mode;
        if mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory") {
            return Ok(());
        }
        match diesel::sql_query("PRAGMA journal_mode = WAL").get_result::<JournalMode>(sqlite) {
            Ok(_) => return Ok(()),
            Err(error) if error.to_string().contains("locked") && started.elapsed() < busy_timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error),
        }
    }
}

/// `url` with the PostgreSQL session settings as startup parameters: `statement_timeout` and
/// `lock_timeout` as `-c` switches in libpq's `options` (whole milliseconds, so nothing needs
/// the backslash escapes of that string), after any `options` the URL or `PGOPTIONS` already
/// gives (libpq reads `PGOPTIONS` only when the URL has none, and the last `options` of a URL
/// wins, so the settings of both are kept, with this crate's last), and `application_name`.
/// Each value is percent-encoded. `pgoptions` is the environment's `PGOPTIONS`.
fn with_startup_settings(url: &str, session: &SessionSettings, pgoptions: Option<String>) -> String {
    let settings = format!(
        "-c statement_timeout={} -c lock_timeout={}",
        session.statement_timeout.as_millis(),
        session.lock_timeout.as_millis()
    );
    let given = last_query_parameter(url, "options")
        .map(percent_decode)
        .or(pgoptions)
        .filter(|options| !options.trim().is_empty());
    let options = match given {
        Some(given) => format!("{given} {settings}"),
        None => settings,
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}options={}&application_name={}",
        utf8_percent_encode(&options, COMPONENT),
        utf8_percent_encode(&session.application_name, COMPONENT)
    )
}

/// Without `connect_timeout`, libpq waits for the operating system's TCP timeout (minutes) when
/// a host does not answer.
fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let seconds = timeout.as_secs_f64().ceil().max(2.0);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={seconds}")
}

/// SQLite creates a missing file but not a missing directory, and then reports only "unable to
/// open database file": say which directory is missing instead.
fn check_sqlite_directory(path: &str) -> Result<(), String> {
    if path.starts_with("file:") {
        return Ok(());
    }
    let directory = std::path::Path::new(path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty());
    match directory {
        Some(directory) if !directory.is_dir() => Err(format!("directory {} does not exist", directory.display())),
        _ => Ok(()),
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    #[expect(dead_code, reason = "set_config returns the new value; only its success matters")]
    value: String,
}

/// Sets a new connection up: the PRAGMAs and functions of SQLite; on PostgreSQL, the session
/// settings by query, for a server that refused them in the startup packet.
fn apply_session_settings(connection: &mut DbConnection, session: &SessionSettings) -> QueryResult<()> {
    match connection {
        DbConnection::Pg(pg) => {
            // set_config takes bound parameters, unlike SET.
            diesel::sql_query(
                "SELECT set_config('statement_timeout', $1, false) AS value \
                 UNION ALL SELECT set_config('lock_timeout', $2, false) \
                 UNION ALL SELECT set_config('application_name', $3, false)",
            )
            .bind::<Text, _>(format!("{}ms", session.statement_timeout.as_millis()))
            .bind::<Text, _>(format!("{}ms", session.lock_timeout.as_millis()))
            .bind::<Text, _>(&session.application_name)
            .load::<Setting>(pg)?;
        }
        DbConnection::Sqlite(sqlite) => {
            // PRAGMA takes no bound parameters; the only interpolated value is an integer.
            sqlite.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                session.sqlite_busy_timeout.as_millis()
            ))?;
            use_write_ahead_log(sqlite, session.sqlite_busy_timeout)?;
            crate::sql_types::lower_utils::register_impl(sqlite, |text: String| crate::sql_types::fold_case(&text))?;
            crate::sql_types::greatest_text_utils::register_impl(sqlite, |a: String, b: String| a.max(b))?;
        }
    }
    Ok(())
}

/// Counts each connection the pool closes under its reason, when r2d2 hands it over to be
/// dropped.
#[derive(Debug)]
pub(crate) struct CloseCounter(pub(crate) Metrics);

impl diesel::r2d2::CustomizeConnection<PooledDb, ConnectError> for CloseCounter {
    fn on_release(&self, connection: PooledDb) {
        self.0.connection_closed(connection.closing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(url: &str, pgoptions: Option<&str>, expected: &str) {
        let session = SessionSettings {
            statement_timeout: Duration::from_millis(1500),
            lock_timeout: Duration::ZERO,
            sqlite_busy_timeout: Duration::from_secs(5),
            application_name: "billing & co=1".to_owned(),
        };
        assert_eq!(
            with_startup_settings(url, &session, pgoptions.map(str::to_owned)),
            expected,
            "{url}"
        );
    }

    #[test]
    fn session_settings_become_percent_encoded_startup_parameters() {
        let ours =
            "options=-c%20statement_timeout%3D1500%20-c%20lock_timeout%3D0&application_name=billing%20%26%20co%3D1";
        check("postgres://db/app", None, &format!("postgres://db/app?{ours}"));
        check(
            "postgres://db/app?sslmode=require",
            None,
            &format!("postgres://db/app?sslmode=require&{ours}"),
        );
        // The URL's own options (its last, as libpq reads them) come first; ours win.
        check(
            "postgres://db/app?options=-c%20work_mem%3D8MB&options=-c%20search_path%3Dx",
            Some("-c search_path=ignored"),
            "postgres://db/app?options=-c%20work_mem%3D8MB&options=-c%20search_path%3Dx\
             &options=-c%20search_path%3Dx%20-c%20statement_timeout%3D1500%20-c%20lock_timeout%3D0\
             &application_name=billing%20%26%20co%3D1",
        );
        // PGOPTIONS counts only when the URL has no options, as in libpq.
        check(
            "postgres://db/app",
            Some("-c search_path=a\\ b"),
            "postgres://db/app?options=-c%20search_path%3Da%5C%20b%20-c%20statement_timeout%3D1500\
             %20-c%20lock_timeout%3D0&application_name=billing%20%26%20co%3D1",
        );
        check("postgres://db/app", Some("  "), &format!("postgres://db/app?{ours}"));
    }
}
