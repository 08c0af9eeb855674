//! Scratch databases: one new, empty database per test, on PostgreSQL or SQLite.

use std::io::Write as _;
use std::sync::Once;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use repo_diesel::{Backend, Database, DatabaseConfig, DatabaseTarget, DbConnection};
use tempfile::TempDir;

/// A new, empty database that is removed when this value is dropped.
pub struct ScratchDatabase {
    target: DatabaseTarget,
    cleanup: Cleanup,
}

enum Cleanup {
    DropPostgres { server_url: String, name: String },
    RemoveDirectory(#[expect(dead_code, reason = "held only so the directory lives as long as the database")] TempDir),
    Nothing,
}

impl ScratchDatabase {
    /// A new database on the PostgreSQL server of `TEST_DATABASE_URL`; `None` (after saying so)
    /// when it is unset, unless `REQUIRE_POSTGRES=1`, which makes a missing server a failure.
    ///
    /// # Panics
    /// When the server cannot be reached, or is missing while required.
    #[must_use]
    pub fn postgres() -> Option<Self> {
        let Some(server_url) = std::env::var("TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
            assert!(
                std::env::var("REQUIRE_POSTGRES").map_or(true, |value| value != "1"),
                "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set: the PostgreSQL tests cannot run"
            );
            report_postgres_not_run();
            return None;
        };
        let name = format!("scratch_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::establish(&server_url)
            .unwrap_or_else(|error| panic!("cannot connect to TEST_DATABASE_URL: {error}"));
        // Identifiers cannot be bound parameters; the name is generated from [a-z0-9_] only.
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
            .unwrap_or_else(|error| panic!("cannot create scratch database {name}: {error}"));
        let mut url = url::Url::parse(&server_url).expect("TEST_DATABASE_URL is a valid URL");
        url.set_path(&name);
        let target = DatabaseTarget::postgres_url(url.as_str()).expect("scratch database URL is valid");
        Some(Self {
            target,
            cleanup: Cleanup::DropPostgres { server_url, name },
        })
    }

    /// A new SQLite file in its own temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn sqlite_file() -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let target = DatabaseTarget::sqlite_file(directory.path().join("scratch.sqlite3"));
        Self {
            target,
            cleanup: Cleanup::RemoveDirectory(directory),
        }
    }

    /// A private in-memory SQLite database, alive while a [`Database`] opened on it is.
    #[must_use]
    pub fn sqlite_in_memory() -> Self {
        Self {
            target: DatabaseTarget::sqlite_in_memory(),
            cleanup: Cleanup::Nothing,
        }
    }

    /// Which engine the database runs on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.target.backend()
    }

    /// Where the database is.
    #[must_use]
    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// A configuration for this database with default settings.
    #[must_use]
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig::new(self.target.clone())
    }

    /// Opens a pool on this database.
    ///
    /// # Panics
    /// When the database cannot be opened.
    #[must_use]
    pub fn database(&self) -> Database {
        Database::connect(self.config()).unwrap_or_else(|error| panic!("cannot open scratch database: {error}"))
    }

    /// Opens one connection, set up as the pool would.
    ///
    /// # Panics
    /// When the database cannot be opened.
    #[must_use]
    pub fn connect(&self) -> DbConnection {
        let config = self.config();
        repo_diesel::connection::ConnectionManager::new(config.target, config.session, config.pool.connection_timeout)
            .establish()
            .unwrap_or_else(|error| panic!("cannot open scratch database: {error}"))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Cleanup::DropPostgres { server_url, name } = &self.cleanup
            && let Ok(mut admin) = PgConnection::establish(server_url)
            && let Err(error) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop scratch database {name}: {error}"
            );
        }
    }
}

fn report_postgres_not_run() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Written to the process's stderr, not through eprintln!, so the test harness's output
        // capture does not hide it behind a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** PostgreSQL tests NOT RUN: TEST_DATABASE_URL is not set. They returned early and \
             count as passed here; set TEST_DATABASE_URL (and REQUIRE_POSTGRES=1 to fail without it). ***\n"
        );
    });
}
