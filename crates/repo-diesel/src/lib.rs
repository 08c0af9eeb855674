#![doc = include_str!("../README.md")]

pub mod bulk;
pub mod catalog;
pub mod config;
pub mod connection;
pub mod database;
pub mod expressions;
pub mod migrations;
pub mod migrator;
pub mod models;
pub mod repositories;
pub mod schema;
pub mod sql_types;
pub mod transaction;

pub use catalog::Catalog;
pub use config::{Backend, ConfigError, DatabaseConfig, DatabaseTarget};
pub use connection::{ConnectError, DbConnection};
pub use database::{Connection, Database, PoolError};
pub use migrations::{MigrationError, MigrationSet};
pub use migrator::{MigrationReport, MigrationStatus, Migrator, MigratorError};

// Linked for their `bundled` / `vendored` features: they make the workspace build with no system
// libpq, libsqlite3 or OpenSSL (openssl-sys is also initialised in `connection`).
use libsqlite3_sys as _;
use pq_sys as _;

/// Any error this crate returns from opening a database or migrating it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be reached.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A migration could not be read, applied or reverted.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The start-up migration runner refused or failed.
    #[error(transparent)]
    Migrator(#[from] MigratorError),
}
