//! One connection type for both backends, and how a new connection is opened and set up.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;

use crate::config::{Backend, DatabaseTarget, SessionSettings};

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
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    target: DatabaseTarget,
    session: SessionSettings,
    connect_timeout: Duration,
}

impl ConnectionManager {
    /// A manager for `target`, setting up each connection with `session`. A PostgreSQL
    /// connection attempt gives up after `connect_timeout` (libpq counts whole seconds, at least
    /// 2) unless the URL sets its own `connect_timeout`.
    #[must_use]
    pub fn new(target: DatabaseTarget, session: SessionSettings, connect_timeout: Duration) -> Self {
        Self {
            target,
            session,
            connect_timeout,
        }
    }

    /// Opens and sets up one connection outside any pool.
    pub fn establish(&self) -> Result<DbConnection, ConnectError> {
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
        let connection_string = self.target.expose_connection_string();
        let mut connection = match self.target.backend() {
            Backend::Postgres => {
                let url = with_connect_timeout(connection_string, self.connect_timeout);
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

/// A connection as the pool keeps it: the connection, and whether a call found it lost.
///
/// diesel reports a connection as broken only when its transaction state is, so a connection
/// whose server went away (restart, failover, `pg_terminate_backend`) would go back into the pool
/// and fail every later call. A call that gets `Unavailable` from the connection marks it lost,
/// and the pool drops it instead of handing it out again.
pub struct PooledDb {
    pub(crate) connection: DbConnection,
    pub(crate) lost: bool,
}

impl ManageConnection for ConnectionManager {
    type Connection = PooledDb;
    type Error = ConnectError;

    fn connect(&self) -> Result<PooledDb, ConnectError> {
        Ok(PooledDb {
            connection: self.establish()?,
            lost: false,
        })
    }

    fn is_valid(&self, pooled: &mut PooledDb) -> Result<(), ConnectError> {
        pooled.connection.ping().map_err(|query_error| ConnectError {
            target: self.target.redacted().to_owned(),
            source_variable: self.target.source(),
            reason: self.target.scrub(&query_error.to_string()),
        })
    }

    fn has_broken(&self, pooled: &mut PooledDb) -> bool {
        pooled.lost || pooled.connection.is_broken()
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
    let started = std::time::Instant::now();
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
