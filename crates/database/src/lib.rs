#![doc = include_str!("../README.md")]

pub mod config;
pub mod connection;
pub mod metrics;
pub mod pool;
pub mod sql_types;
pub mod transaction;

pub use config::{Backend, ConfigError, DatabaseConfig, DatabaseTarget};
pub use connection::{ConnectError, DbConnection};
pub use metrics::{Metrics, MetricsSnapshot, StatementKind};
pub use pool::{Connection, Database, PoolError};

// Linked for their `bundled` / `vendored` features: they make the workspace build with no system
// libpq, libsqlite3 or OpenSSL (openssl-sys is also initialised in `connection`).
use libsqlite3_sys as _;
use pq_sys as _;

/// Any error from reading the configuration and opening a pool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be reached.
    #[error(transparent)]
    Pool(#[from] PoolError),
}
