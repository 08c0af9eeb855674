#![doc = include_str!("../README.md")]

pub mod catalog;
pub mod migrations;
pub mod runner;

pub use catalog::Catalog;
pub use migrations::{MigrationError, MigrationSet};
pub use runner::{
    HISTORY_TABLE, MigrationReport, MigrationStatus, Migrator, MigratorError, STATE_TABLE, ensure_tables,
};

use database::connection::{ConnectError, ConnectionManager};
use database::{Database, DbConnection, PoolError};
use diesel::prelude::*;

/// Any error from migrating a pool's database at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The migration connection (`DATABASE_MIGRATION_URL`) could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The start-up migration runner refused or failed.
    #[error(transparent)]
    Migrator(#[from] MigratorError),
}

/// The name of the database a connection reaches (PostgreSQL), or of its main file (SQLite).
fn current_database(connection: &mut DbConnection) -> Result<String, MigratorError> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let sql = match connection.backend() {
        database::Backend::Postgres => "SELECT current_database()::text AS name",
        database::Backend::Sqlite => "SELECT file AS name FROM pragma_database_list WHERE name = 'main'",
    };
    Ok(diesel::sql_query(sql).get_result::<Name>(connection)?.name)
}

/// The start-up migration runner on a [`Database`]: the call every service makes at start-up.
pub trait Migrate {
    /// Brings the database to the current schema with the embedded migrations. At head it costs
    /// one query, on the connection [`Database::connect`] opened (no checkout ping unless it has
    /// been idle for `validate_idle_after` since).
    fn migrate(&self) -> Result<MigrationReport, Error>;

    /// The start-up migration runner for this database's backend and settings.
    fn migrator(&self) -> Migrator;
}

impl Migrate for Database {
    /// With a migration target (`DATABASE_MIGRATION_URL`), the at-head check runs on this
    /// pool's connection and only pending migrations open a connection as the schema's owner;
    /// without one, everything runs on this pool's connection, and a role that may not change
    /// the schema gets [`MigratorError::NeedsMigrationRole`], naming that setting.
    fn migrate(&self) -> Result<MigrationReport, Error> {
        let mut connection = self.get()?;
        let migrator = self.migrator();
        let Some(target) = &self.config().migration_target else {
            return Ok(migrator.run(&mut connection)?);
        };
        if let Some(report) = migrator.at_head(&mut connection) {
            return Ok(report);
        }
        let config = self.config();
        if let Some(warning) = target.tls_warning() {
            tracing::warn!(database = target.redacted(), "{warning}");
        }
        let mut owner = ConnectionManager::new(target.clone(), config.session.clone(), config.pool.connection_timeout)
            .establish()?;
        let (migration, application) = (current_database(&mut owner)?, current_database(&mut connection)?);
        if migration != application {
            return Err(MigratorError::OtherDatabase { migration, application }.into());
        }
        tracing::info!(database = target.redacted(), "migrating over the migration connection");
        Ok(migrator.run(&mut owner)?)
    }

    fn migrator(&self) -> Migrator {
        Migrator::embedded(self.backend(), self.config().migration.clone())
    }
}
