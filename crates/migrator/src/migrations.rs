//! Migration sets: the two embedded trees, or a directory read at run time, with checksums of
//! the exact SQL each migration runs.
//!
//! `migrations/postgres` and `migrations/sqlite` hold the same migrations under the same names (a
//! test keeps them in lockstep); a connection runs the tree of its own backend. The start-up
//! runner that applies them safely lives in [`crate::runner`].

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use diesel::backend::Backend as DieselBackend;
use diesel::migration::{self, Migration, MigrationMetadata, MigrationName, MigrationVersion};
use diesel_migrations::MigrationHarness;
use sha2::{Digest, Sha256};

use database::Backend;
use database::DbConnection;

mod embedded {
    pub(crate) struct EmbeddedMigration {
        pub(crate) name: &'static str,
        pub(crate) up: &'static str,
        pub(crate) down: &'static str,
        pub(crate) run_in_transaction: bool,
    }

    include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));
}

/// One migration: its SQL in both directions and whether it runs inside a transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlMigration {
    name: Cow<'static, str>,
    version: String,
    up: Cow<'static, str>,
    down: Cow<'static, str>,
    run_in_transaction: bool,
    // Computed once: the runner compares them at every start-up.
    up_checksum: String,
    down_checksum: String,
}

impl SqlMigration {
    /// A migration named like a diesel migration folder, `2026-11-22-000100_create_users`: the
    /// version is the part before the first `_` without its dashes, as diesel records it.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        up: impl Into<Cow<'static, str>>,
        down: impl Into<Cow<'static, str>>,
        run_in_transaction: bool,
    ) -> Result<Self, MigrationError> {
        let name = name.into();
        let version = version_of(&name);
        if version.is_empty() || !version.bytes().all(|byte| byte.is_ascii_digit()) || !name.contains('_') {
            return Err(MigrationError::InvalidName(name.into_owned()));
        }
        let (up, down) = (up.into(), down.into());
        let (up_checksum, down_checksum) = (checksum(&up), checksum(&down));
        Ok(Self {
            name,
            version,
            up,
            down,
            run_in_transaction,
            up_checksum,
            down_checksum,
        })
    }

    /// The folder name, for example `2026-11-22-000100_create_users`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version diesel records, for example `20261122000100`.
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The SQL of `up.sql`.
    #[must_use]
    pub fn up_sql(&self) -> &str {
        &self.up
    }

    /// The SQL of `down.sql`.
    #[must_use]
    pub fn down_sql(&self) -> &str {
        &self.down
    }

    /// False when `metadata.toml` says `run_in_transaction = false`.
    #[must_use]
    pub fn run_in_transaction(&self) -> bool {
        self.run_in_transaction
    }

    /// Checksum of `up.sql`, see [`checksum`].
    #[must_use]
    pub fn up_checksum(&self) -> &str {
        &self.up_checksum
    }

    /// Checksum of `down.sql`, see [`checksum`].
    #[must_use]
    pub fn down_checksum(&self) -> &str {
        &self.down_checksum
    }

    /// Version and name, for reports.
    #[must_use]
    pub fn info(&self) -> MigrationInfo {
        MigrationInfo {
            version: self.version.clone(),
            name: self.name.to_string(),
        }
    }
}

impl fmt::Debug for SqlMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlMigration")
            .field("name", &self.name)
            .field("run_in_transaction", &self.run_in_transaction)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SqlMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl MigrationName for SqlMigration {
    fn version(&self) -> MigrationVersion<'_> {
        MigrationVersion::from(self.version.as_str())
    }
}

impl MigrationMetadata for SqlMigration {
    fn run_in_transaction(&self) -> bool {
        self.run_in_transaction
    }
}

impl<DB: DieselBackend> Migration<DB> for SqlMigration {
    fn run(&self, connection: &mut dyn diesel::connection::BoxableConnection<DB>) -> migration::Result<()> {
        connection.batch_execute(&self.up).map_err(Into::into)
    }

    fn revert(&self, connection: &mut dyn diesel::connection::BoxableConnection<DB>) -> migration::Result<()> {
        connection.batch_execute(&self.down).map_err(Into::into)
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        self
    }

    fn name(&self) -> &dyn MigrationName {
        self
    }
}

/// The checksum the runner records for a migration file: SHA-256 (hex) of its text after
/// removing a UTF-8 byte-order mark and turning CRLF and lone CR line endings into LF, so that a
/// checkout on another platform does not count as an edit.
#[must_use]
pub fn checksum(sql: &str) -> String {
    let text = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    format!("{:x}", Sha256::digest(normalised.as_bytes()))
}

/// The version diesel records for a migration folder name: the part before the first `_`,
/// without its dashes (`2026-11-22-000100_create_users` is `20261122000100`).
#[must_use]
pub fn version_of(name: &str) -> String {
    name.split('_').next().unwrap_or_default().replace('-', "")
}

/// Version and folder name of a migration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct MigrationInfo {
    /// The version recorded in `__diesel_schema_migrations`, for example `20261122000100`.
    pub version: String,
    /// The folder name, for example `2026-11-22-000100_create_users`.
    pub name: String,
}

impl fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            f.write_str(&self.version)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// An ordered set of migrations for one backend.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Vec<SqlMigration>,
}

impl MigrationSet {
    /// The migrations embedded at build time for `backend`.
    #[must_use]
    pub fn embedded(backend: Backend) -> Self {
        let files = match backend {
            Backend::Postgres => embedded::POSTGRES,
            Backend::Sqlite => embedded::SQLITE,
        };
        let migrations = files
            .iter()
            .map(|file| {
                SqlMigration::new(file.name, file.up, file.down, file.run_in_transaction)
                    .expect("build.rs embeds only migration folders with valid names")
            })
            .collect();
        Self::new(migrations).expect("build.rs embeds no two migrations with one version")
    }

    /// Reads a directory of diesel migration folders (`<version>_<name>/up.sql`, `down.sql`,
    /// optional `metadata.toml`) at run time.
    pub fn from_dir(directory: impl AsRef<Path>) -> Result<Self, MigrationError> {
        let directory = directory.as_ref();
        let io = |path: &Path, error: std::io::Error| MigrationError::Read(format!("{}: {error}", path.display()));
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(directory).map_err(|error| io(directory, error))? {
            let path = entry.map_err(|error| io(directory, error))?.path();
            let hidden = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'));
            if path.is_dir() && !hidden {
                folders.push(path);
            }
        }
        folders.sort();
        let mut migrations = Vec::new();
        for folder in folders {
            let read =
                |file: &str| std::fs::read_to_string(folder.join(file)).map_err(|error| io(&folder.join(file), error));
            let run_in_transaction = match std::fs::read_to_string(folder.join("metadata.toml")) {
                Ok(text) => !text
                    .lines()
                    .any(|line| line.replace(' ', "") == "run_in_transaction=false"),
                Err(_) => true,
            };
            let name = folder
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            migrations.push(SqlMigration::new(
                name,
                read("up.sql")?,
                read("down.sql")?,
                run_in_transaction,
            )?);
        }
        Self::new(migrations)
    }

    /// A set of the given migrations, sorted by version. Two migrations with one version are an
    /// error: diesel records versions only, so one of them would silently never run.
    pub fn new(mut migrations: Vec<SqlMigration>) -> Result<Self, MigrationError> {
        migrations.sort_by(|a, b| a.version.cmp(&b.version));
        if let Some(pair) = migrations.windows(2).find(|pair| pair[0].version == pair[1].version) {
            return Err(MigrationError::DuplicateVersion(
                pair[0].name().to_owned(),
                pair[1].name().to_owned(),
            ));
        }
        Ok(Self { migrations })
    }

    /// The migrations, oldest first.
    #[must_use]
    pub fn migrations(&self) -> &[SqlMigration] {
        &self.migrations
    }

    /// The migration with this version or folder name.
    #[must_use]
    pub fn find(&self, version_or_name: &str) -> Option<&SqlMigration> {
        self.migrations
            .iter()
            .find(|migration| migration.version == version_or_name || migration.name == version_or_name)
    }

    /// The newest migration.
    #[must_use]
    pub fn head(&self) -> Option<&SqlMigration> {
        self.migrations.last()
    }
}

/// A migration could not be read, applied or reverted.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A migration folder's name does not start with a version.
    #[error("migration folder {0:?} is not named <version>_<name>")]
    InvalidName(String),
    /// A migration file could not be read.
    #[error("cannot read migration file {0}")]
    Read(String),
    /// Two migrations share a version.
    #[error("migrations {0} and {1} have the same version")]
    DuplicateVersion(String, String),
    /// No migration in the set has this version or name.
    #[error("no migration named {0}")]
    Unknown(String),
    /// diesel reported an error while applying, reverting or listing.
    #[error("migration {migration} failed: {source}")]
    Failed {
        /// The migration's name, or what was being done when it was not one migration.
        migration: String,
        /// diesel's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Applies one migration of `set` (by version or name) the way `diesel migration run` does:
/// in a transaction unless it opts out, recording it in diesel's history table. The start-up
/// runner, [`crate::runner::Migrator`], adds locking and checksums on top.
pub fn apply_migration(
    connection: &mut DbConnection,
    set: &MigrationSet,
    migration: &str,
) -> Result<(), MigrationError> {
    let migration = lookup(set, migration)?;
    match connection {
        DbConnection::Pg(pg) => apply_with(pg, migration),
        DbConnection::Sqlite(sqlite) => apply_with(sqlite, migration),
    }
    .map_err(failure(migration))
}

/// Reverts one applied migration by running its `down.sql`, as `diesel migration revert` does.
pub fn revert_migration(
    connection: &mut DbConnection,
    set: &MigrationSet,
    migration: &str,
) -> Result<(), MigrationError> {
    let migration = lookup(set, migration)?;
    match connection {
        DbConnection::Pg(pg) => pg.revert_migration(migration).map(drop),
        DbConnection::Sqlite(sqlite) => sqlite.revert_migration(migration).map(drop),
    }
    .map_err(failure(migration))
}

/// The migration named `name` (or with that version) in `set`.
fn lookup<'s>(set: &'s MigrationSet, name: &str) -> Result<&'s SqlMigration, MigrationError> {
    set.find(name).ok_or_else(|| MigrationError::Unknown(name.to_owned()))
}

/// Wraps diesel's error of running `migration`.
fn failure(migration: &SqlMigration) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> MigrationError + '_ {
    move |source| MigrationError::Failed {
        migration: migration.name().to_owned(),
        source,
    }
}

fn apply_with<DB, C>(connection: &mut C, migration: &SqlMigration) -> migration::Result<()>
where
    DB: DieselBackend,
    C: MigrationHarness<DB>,
{
    // Creates diesel's history table on a new database, as `diesel migration run` does.
    connection.applied_migrations()?;
    connection.run_migration(migration).map(drop)
}

/// The versions in diesel's history table, oldest first.
pub fn applied_versions(connection: &mut DbConnection) -> Result<Vec<String>, MigrationError> {
    let failed = |source| MigrationError::Failed {
        migration: "(history)".into(),
        source,
    };
    let versions = match connection {
        DbConnection::Pg(pg) => pg.applied_migrations(),
        DbConnection::Sqlite(sqlite) => sqlite.applied_migrations(),
    }
    .map_err(failed)?;
    let mut versions: Vec<String> = versions.iter().map(ToString::to_string).collect();
    versions.sort();
    Ok(versions)
}

/// The newest applied migration, named from `set` when it knows the version.
pub fn schema_version(
    connection: &mut DbConnection,
    set: &MigrationSet,
) -> Result<Option<MigrationInfo>, MigrationError> {
    Ok(applied_versions(connection)?
        .pop()
        .map(|version| match set.find(&version) {
            Some(migration) => migration.info(),
            None => MigrationInfo {
                version,
                name: String::new(),
            },
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_ignore_line_endings_and_byte_order_marks_only() {
        let plain = checksum("CREATE TABLE t (id int);\nDROP TABLE t;\n");
        assert_eq!(checksum("CREATE TABLE t (id int);\r\nDROP TABLE t;\r\n"), plain);
        assert_eq!(checksum("\u{feff}CREATE TABLE t (id int);\nDROP TABLE t;\n"), plain);
        assert_eq!(checksum("CREATE TABLE t (id int);\rDROP TABLE t;\r"), plain);
        assert_ne!(
            checksum("CREATE TABLE t (id int);\nDROP TABLE t;"),
            plain,
            "a removed newline is an edit"
        );
        assert_ne!(checksum("CREATE TABLE t (id bigint);\nDROP TABLE t;\n"), plain);
        assert_eq!(plain.len(), 64);
    }

    #[test]
    fn versions_follow_diesel() {
        let migration = SqlMigration::new("2026-11-22-000100_create_users", "", "", true).expect("valid");
        assert_eq!(migration.version(), "20261122000100");
        assert!(SqlMigration::new("create_users", "", "", true).is_err());
        assert!(SqlMigration::new("2026-11-22", "", "", true).is_err());
    }

    #[test]
    fn embedded_trees_match_by_name() {
        let names = |backend| -> Vec<String> {
            MigrationSet::embedded(backend)
                .migrations()
                .iter()
                .map(|migration| migration.name().to_owned())
                .collect()
        };
        assert!(!names(Backend::Postgres).is_empty());
        assert_eq!(names(Backend::Postgres), names(Backend::Sqlite));
    }
}
