//! The embedded migrations of both backends, and the functions that apply and revert them.
//!
//! `migrations/postgres` and `migrations/sqlite` hold the same migrations under the same names
//! (a test keeps them in lockstep); each connection runs the set of its own backend.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::{Migration, MigrationSource};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::Backend;
use crate::connection::DbConnection;

/// The PostgreSQL migrations, embedded at build time.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// The SQLite migrations, embedded at build time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// One migration: its version (the number diesel records) and its full folder name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MigrationInfo {
    /// The version recorded in `__diesel_schema_migrations`, for example `20261122000100`.
    pub version: String,
    /// The folder name, for example `2026-11-22-000100_create_users`.
    pub name: String,
}

/// A migration could not be listed, applied or reverted.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// No embedded migration has this version or name.
    #[error("no migration named {0}")]
    Unknown(String),
    /// diesel reported an error while listing, applying or reverting.
    #[error("migration {migration} failed: {source}")]
    Failed {
        /// The migration's name, or `(all)` when listing failed.
        migration: String,
        /// diesel's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The embedded migrations of `backend`, oldest first.
pub fn migrations(backend: Backend) -> Result<Vec<MigrationInfo>, MigrationError> {
    fn infos<DB: DieselBackend>(source: &EmbeddedMigrations) -> Result<Vec<MigrationInfo>, MigrationError>
    where
        EmbeddedMigrations: MigrationSource<DB>,
    {
        Ok(list::<DB>(source)?
            .iter()
            .map(|migration| info(migration.as_ref()))
            .collect())
    }
    match backend {
        Backend::Postgres => infos::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS),
        Backend::Sqlite => infos::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS),
    }
}

/// Applies every pending migration, each in its own transaction, and returns what it applied.
pub fn run_pending_migrations(connection: &mut DbConnection) -> Result<Vec<MigrationInfo>, MigrationError> {
    let before = applied_migrations(connection)?;
    let failed = |source| MigrationError::Failed {
        migration: "(pending)".into(),
        source,
    };
    match connection {
        DbConnection::Pg(pg) => pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop),
        DbConnection::Sqlite(sqlite) => sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(drop),
    }
    .map_err(failed)?;
    let after = applied_migrations(connection)?;
    Ok(after
        .into_iter()
        .filter(|migration| !before.contains(migration))
        .collect())
}

/// The migrations recorded as applied, oldest first. Versions that no embedded migration has
/// (a database migrated by a newer release) appear with an empty name.
pub fn applied_migrations(connection: &mut DbConnection) -> Result<Vec<MigrationInfo>, MigrationError> {
    let failed = |source| MigrationError::Failed {
        migration: "(history)".into(),
        source,
    };
    let versions = match connection {
        DbConnection::Pg(pg) => pg.applied_migrations(),
        DbConnection::Sqlite(sqlite) => sqlite.applied_migrations(),
    }
    .map_err(failed)?;
    let known = migrations(connection.backend())?;
    let mut applied: Vec<MigrationInfo> = versions
        .iter()
        .map(|version| {
            let version = version.to_string();
            known
                .iter()
                .find(|migration| migration.version == version)
                .cloned()
                .unwrap_or(MigrationInfo {
                    version,
                    name: String::new(),
                })
        })
        .collect();
    applied.sort();
    Ok(applied)
}

/// The newest applied migration, or `None` for a database with no history.
pub fn schema_version(connection: &mut DbConnection) -> Result<Option<MigrationInfo>, MigrationError> {
    Ok(applied_migrations(connection)?.pop())
}

/// Applies one migration, named by version or folder name, in its own transaction.
pub fn apply_migration(connection: &mut DbConnection, migration: &str) -> Result<(), MigrationError> {
    match connection {
        DbConnection::Pg(pg) => step(pg, &POSTGRES_MIGRATIONS, migration, Direction::Up),
        DbConnection::Sqlite(sqlite) => step(sqlite, &SQLITE_MIGRATIONS, migration, Direction::Up),
    }
}

/// Reverts one applied migration, named by version or folder name, by running its `down.sql`.
pub fn revert_migration(connection: &mut DbConnection, migration: &str) -> Result<(), MigrationError> {
    match connection {
        DbConnection::Pg(pg) => step(pg, &POSTGRES_MIGRATIONS, migration, Direction::Down),
        DbConnection::Sqlite(sqlite) => step(sqlite, &SQLITE_MIGRATIONS, migration, Direction::Down),
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

fn list<DB: DieselBackend>(source: &EmbeddedMigrations) -> Result<Vec<Box<dyn Migration<DB>>>, MigrationError>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    let mut migrations = MigrationSource::<DB>::migrations(source).map_err(|source| MigrationError::Failed {
        migration: "(all)".into(),
        source,
    })?;
    migrations.sort_by_key(|migration| migration.name().version().to_string());
    Ok(migrations)
}

fn info<DB: DieselBackend>(migration: &dyn Migration<DB>) -> MigrationInfo {
    MigrationInfo {
        version: migration.name().version().to_string(),
        name: migration.name().to_string(),
    }
}

fn step<DB, C>(
    connection: &mut C,
    source: &EmbeddedMigrations,
    wanted: &str,
    direction: Direction,
) -> Result<(), MigrationError>
where
    DB: DieselBackend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    // Creates diesel's history table on a new database, as run_pending_migrations does.
    connection
        .applied_migrations()
        .map_err(|source| MigrationError::Failed {
            migration: wanted.to_owned(),
            source,
        })?;
    let migrations = list::<DB>(source)?;
    let migration = migrations
        .iter()
        .find(|migration| {
            let info = info(migration.as_ref());
            info.version == wanted || info.name == wanted
        })
        .ok_or_else(|| MigrationError::Unknown(wanted.to_owned()))?;
    let failed = |source| MigrationError::Failed {
        migration: migration.name().to_string(),
        source,
    };
    match direction {
        Direction::Up => connection.run_migration(migration.as_ref()).map(drop),
        Direction::Down => connection.revert_migration(migration.as_ref()).map(drop),
    }
    .map_err(failed)
}
