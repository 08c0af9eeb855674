#![doc = include_str!("../README.md")]

#[cfg(feature = "tokio")]
pub mod async_store;
pub mod bulk;
mod cancellation;
pub mod expressions;
pub mod models;
pub mod repositories;
pub mod schema;

// What a service needs to build a store, from the crates that own it.
#[cfg(feature = "tokio")]
pub use async_store::AsyncStore;
pub use database::{Backend, ConfigError, Database, DatabaseConfig, DatabaseTarget, PoolError};
pub use migrator::{Migrate, MigrationReport, Migrator};
pub use repositories::DieselStore;

/// The root README's Rust examples, compiled by `cargo test -p repo-diesel --doc` so that they
/// keep up with the API (`no_run`: they would open the configured database).
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
