#![doc = include_str!("../README.md")]

pub mod catalog;
pub mod migrations;
pub mod runner;

pub use catalog::Catalog;
pub use migrations::{MigrationError, MigrationSet};
pub use runner::{MigrationReport, MigrationStatus, Migrator, MigratorError};

use database::{Database, PoolError};

/// Any error from migrating a pool's database at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The start-up migration runner refused or failed.
    #[error(transparent)]
    Migrator(#[from] MigratorError),
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
    fn migrate(&self) -> Result<MigrationReport, Error> {
        let mut connection = self.get()?;
        Ok(self.migrator().run(&mut connection)?)
    }

    fn migrator(&self) -> Migrator {
        Migrator::embedded(self.backend(), self.config().migration.clone())
    }
}
