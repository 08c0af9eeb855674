//! The start-up migration runner: the one function every service and the seed binary call to
//! bring the database to the current schema, safely when many processes start at once.
//!
//! - At head it reads the history in one query and returns, taking no lock.
//! - Otherwise it takes the runner lock, polling with a bounded wait (PostgreSQL: a session
//!   advisory lock tried with `pg_try_advisory_lock`, so a waiter holds no snapshot that
//!   `CREATE INDEX CONCURRENTLY` would wait for; SQLite: an exclusive lock on a file beside the
//!   database), reads the history again and applies what is pending, each migration in its own
//!   transaction together with its history rows.
//! - It refuses to start on a migration whose file changed since it was applied (checksums of
//!   `up.sql` and `down.sql`, normalised for line endings and byte-order marks), on a migration
//!   that ran outside a transaction and failed (the dirty marker), and on a database that has
//!   tables but no history (until an operator records a verified baseline).
//!
//! History lives in diesel's `__diesel_schema_migrations` (so the diesel CLI agrees about what
//! is applied) and in `__migration_state` (checksums, dirty markers, durations).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::MigrationHarness;

use crate::catalog::Catalog;
use crate::migrations::{MigrationInfo, MigrationSet, SqlMigration};
use database::DbConnection;
use database::config::{Backend, MigrationSettings};

/// The PostgreSQL advisory lock key of the runner: "migrator" in ASCII.
pub const LOCK_KEY: i64 = 0x6d69_6772_6174_6f72;

/// The runner's own bookkeeping table.
pub const STATE_TABLE: &str = "__migration_state";

/// diesel's history table.
pub const HISTORY_TABLE: &str = "__diesel_schema_migrations";

/// Why the runner did not bring the database to the current schema.
#[derive(Debug, thiserror::Error)]
pub enum MigratorError {
    /// Another runner held the lock for longer than the configured wait.
    #[error(
        "timed out after {waited_ms} ms waiting for the migration lock, held by {}",
        holder.as_deref().unwrap_or("an unknown process")
    )]
    LockTimeout {
        /// How long this runner waited.
        waited_ms: u128,
        /// The holder: `pid 1234 (application "seed")` on PostgreSQL; `None` when the engine cannot tell.
        holder: Option<String>,
    },
    /// A migration failed; the database is at the previous version (or, for a migration outside
    /// a transaction, marked dirty).
    #[error("migration {migration} failed after {duration_ms} ms: {source}")]
    Failed {
        /// The failing migration.
        migration: String,
        /// How long it ran.
        duration_ms: u128,
        /// What the database said.
        source: diesel::result::Error,
    },
    /// An applied migration's file was edited afterwards.
    #[error(
        "migration {migration} was edited after it was applied ({file} differs from the recorded checksum): \
         restore the file, or accept the edit with `dbctl accept-checksum {migration}`"
    )]
    ChecksumMismatch {
        /// The edited migration.
        migration: String,
        /// `up.sql` or `down.sql`.
        file: &'static str,
    },
    /// A migration that runs outside a transaction started and did not finish.
    #[error(
        "migration {migration} ran outside a transaction and did not finish, so the schema may be half-changed: \
         repair it by hand, then clear the marker with `dbctl clear-dirty {migration}` (the migration then runs again)"
    )]
    Dirty {
        /// The dirty migration.
        migration: String,
    },
    /// The database has tables but no migration history.
    #[error(
        "the database has tables ({}) but no migration history: if these migrations built it, record a \
         verified baseline with `dbctl baseline`",
        tables.join(", ")
    )]
    NeedsBaseline {
        /// The tables found.
        tables: Vec<String>,
    },
    /// A baseline was asked for, but the live schema is not what the migrations would create.
    #[error("the live schema differs from what the migrations create, so no baseline was recorded:\n{}", differences.join("\n"))]
    BaselineMismatch {
        /// One line per difference.
        differences: Vec<String>,
    },
    /// The step before applying migrations (a backup) failed; nothing was applied.
    #[error("no migration was applied: {0}")]
    BeforeApplying(String),
    /// A baseline was asked for a database that already has a history.
    #[error("the database already has a migration history; a baseline is only for databases without one")]
    HistoryExists,
    /// An operator operation named a migration the runner does not know or that is not in the
    /// state it needs.
    #[error("{0}")]
    Operation(String),
    /// Migrations are pending and the role of this connection may not apply them: the
    /// application connects as a role without DDL rights (`dbctl roles setup`).
    #[error(
        "{pending} migrations are pending, and role \"{role}\" may not apply them ({reason}): give the connection \
         of the schema's owner in DATABASE_MIGRATION_URL (its password in DATABASE_MIGRATION_PASSWORD_FILE), or run \
         `dbctl migrate` with it before starting this process"
    )]
    NeedsMigrationRole {
        /// The role connected.
        role: String,
        /// How many migrations are pending.
        pending: usize,
        /// Why it may not: no `CREATE` on the schema, or tables it does not own.
        reason: String,
    },
    /// The migration connection (`DATABASE_MIGRATION_URL`) reaches another database than the
    /// application's.
    #[error(
        "DATABASE_MIGRATION_URL reaches database \"{migration}\", but the application's connection reaches \"{application}\""
    )]
    OtherDatabase {
        /// What the migration connection reaches.
        migration: String,
        /// What the application's connection reaches.
        application: String,
    },
    /// A bookkeeping query failed.
    #[error("migration bookkeeping failed: {0}")]
    Database(#[from] diesel::result::Error),
}

/// A migration applied by this run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedMigration {
    /// Which migration.
    pub migration: MigrationInfo,
    /// How long its `up.sql` took.
    pub duration: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    /// Migrations this process applied, in order (another process may have applied others).
    pub applied: Vec<AppliedMigration>,
    /// Migrations found applied without a recorded checksum (for example by the diesel CLI),
    /// whose checksums this run recorded.
    pub checksums_recorded: Vec<MigrationInfo>,
    /// The newest applied migration afterwards.
    pub version: Option<MigrationInfo>,
    /// True when the database was already at head and the run took the one-query path.
    pub was_at_head: bool,
    /// What the [`BeforeApplying`] step did, when it ran.
    pub before_applying: Option<String>,
}

/// The report as the seed and `dbctl migrate` print it, one `label:  value` line per fact.
impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(done) = &self.before_applying {
            writeln!(f, "before:          {done}")?;
        }
        writeln!(f, "applied now:     {}", self.applied.len())?;
        for applied in &self.applied {
            writeln!(
                f,
                "                 {} ({} ms)",
                applied.migration,
                applied.duration.as_millis()
            )?;
        }
        if !self.checksums_recorded.is_empty() {
            writeln!(
                f,
                "checksums:       recorded for {} migrations applied outside the runner",
                self.checksums_recorded.len()
            )?;
        }
        match &self.version {
            Some(migration) => writeln!(f, "schema version:  {} ({})", migration.version, migration.name),
            None => writeln!(f, "schema version:  none"),
        }
    }
}

/// A recorded checksum that no longer matches the migration's file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChecksumMismatch {
    /// The edited migration.
    pub migration: MigrationInfo,
    /// `up.sql` or `down.sql`.
    pub file: &'static str,
}

/// The migration status of a database, as data: for the operations CLI and health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    /// Whether the history tables exist at all.
    pub has_history: bool,
    /// Applied migrations, oldest first (unknown versions have an empty name).
    pub applied: Vec<MigrationInfo>,
    /// Migrations of the set not applied yet, oldest first.
    pub pending: Vec<MigrationInfo>,
    /// Applied migrations whose files changed since.
    pub checksum_mismatches: Vec<ChecksumMismatch>,
    /// Migrations that ran outside a transaction and did not finish.
    pub dirty: Vec<MigrationInfo>,
    /// Applied migrations with no recorded checksum yet (applied by the diesel CLI).
    pub unrecorded: Vec<MigrationInfo>,
    /// Applied versions this code does not know: the database is newer than the code.
    pub unknown: Vec<String>,
}

impl MigrationStatus {
    /// True when nothing is pending, dirty or edited: what a readiness check wants.
    #[must_use]
    pub fn is_at_head(&self) -> bool {
        self.has_history && self.pending.is_empty() && self.dirty.is_empty() && self.checksum_mismatches.is_empty()
    }
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Bool)]
    in_history: bool,
    #[diesel(sql_type = Nullable<Text>)]
    up_checksum: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    down_checksum: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    state: Option<String>,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    value: bool,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    application_name: String,
}

#[derive(QueryableByName)]
struct SavedSettings {
    #[diesel(sql_type = Text)]
    statement_timeout: String,
    #[diesel(sql_type = Text)]
    lock_timeout: String,
}

/// What the runner calls before it applies pending migrations to a database that already has
/// applied ones (for example, a backup): it runs holding the runner's lock, gets the pending
/// migrations, and returns what it did, which the runner logs and reports. An error stops the
/// run with nothing applied.
pub type BeforeApplying = Arc<dyn Fn(&[MigrationInfo]) -> Result<String, String> + Send + Sync>;

/// The start-up migration runner for one migration set.
#[derive(Clone)]
pub struct Migrator {
    set: MigrationSet,
    settings: MigrationSettings,
    before_applying: Option<BeforeApplying>,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("set", &self.set)
            .field("settings", &self.settings)
            .field("before_applying", &self.before_applying.is_some())
            .finish()
    }
}

impl Migrator {
    /// A runner for `set`.
    #[must_use]
    pub fn new(set: MigrationSet, settings: MigrationSettings) -> Self {
        Self {
            set,
            settings,
            before_applying: None,
        }
    }

    /// Calls `step` before applying pending migrations to a database that has applied ones; see
    /// [`BeforeApplying`]. `dbctl migrate` takes and verifies a backup there.
    #[must_use]
    pub fn before_applying(
        mut self,
        step: impl Fn(&[MigrationInfo]) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.before_applying = Some(Arc::new(step));
        self
    }

    /// A runner for the migrations embedded for `backend`.
    #[must_use]
    pub fn embedded(backend: Backend, settings: MigrationSettings) -> Self {
        Self::new(MigrationSet::embedded(backend), settings)
    }

    /// The migration set this runner applies.
    #[must_use]
    pub fn set(&self) -> &MigrationSet {
        &self.set
    }

    /// Brings the database to the newest migration of the set. See the module documentation.
    ///
    /// On PostgreSQL, a role that may not create objects in the schema, or that does not own
    /// its tables, gets [`MigratorError::NeedsMigrationRole`] when migrations are pending
    /// instead of a half-applied run.
    pub fn run(&self, connection: &mut DbConnection) -> Result<MigrationReport, MigratorError> {
        if let Some(report) = self.at_head(connection) {
            return Ok(report);
        }
        self.check_may_migrate(connection)?;
        self.with_lock(connection, Self::run_locked)
    }

    /// The fast path of [`Self::run`]: one query, no lock, no writes; `Some` when the database
    /// is at head (nothing pending, dirty, edited or without a checksum). It fails quietly on a
    /// database without the history tables, which the locked path creates.
    pub fn at_head(&self, connection: &mut DbConnection) -> Option<MigrationReport> {
        let status = self.read_status(connection).ok()?;
        if !(status.is_at_head() && status.unrecorded.is_empty()) {
            return None;
        }
        warn_unknown(&status);
        Some(MigrationReport {
            version: status.applied.last().cloned(),
            was_at_head: true,
            ..MigrationReport::default()
        })
    }

    /// On PostgreSQL: refuses a role that may not change the schema, with the setting to give.
    fn check_may_migrate(&self, connection: &mut DbConnection) -> Result<(), MigratorError> {
        #[derive(QueryableByName)]
        struct Rights {
            #[diesel(sql_type = Text)]
            role: String,
            #[diesel(sql_type = Bool)]
            may_create: bool,
            #[diesel(sql_type = Nullable<Text>)]
            not_owned: Option<String>,
        }
        if connection.backend() != Backend::Postgres {
            return Ok(());
        }
        let rights: Rights = diesel::sql_query(
            "SELECT current_user::text AS role,
                    coalesce(has_schema_privilege(current_schema(), 'CREATE'), false) AS may_create,
                    (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
                     WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
                       AND c.relkind IN ('r', 'p') AND NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS not_owned",
        )
        .get_result(connection)?;
        let reason = if !rights.may_create {
            "it has no CREATE privilege on the schema".to_owned()
        } else if let Some(tables) = rights.not_owned {
            format!("it does not own the tables {tables}")
        } else {
            return Ok(());
        };
        let pending = self
            .read_status(connection)
            .map_or(self.set.migrations().len(), |status| status.pending.len());
        Err(MigratorError::NeedsMigrationRole {
            role: rights.role,
            pending,
            reason,
        })
    }

    /// The database's migration status, read without taking the lock or writing anything.
    pub fn status(&self, connection: &mut DbConnection) -> Result<MigrationStatus, MigratorError> {
        self.read_status(connection)
    }

    /// Records the history of a database that has the schema but no history, after checking
    /// that its live schema is exactly what the migrations create.
    pub fn baseline(&self, connection: &mut DbConnection) -> Result<Vec<MigrationInfo>, MigratorError> {
        let work = |migrator: &Self, connection: &mut DbConnection| {
            ensure_tables(connection)?;
            if !migrator.read_status(connection)?.applied.is_empty() {
                return Err(MigratorError::HistoryExists);
            }
            let live = Catalog::read(connection)?;
            let expected = migrator.expected_catalog(connection)?;
            let differences = catalog_differences(&live, &expected);
            if !differences.is_empty() {
                return Err(MigratorError::BaselineMismatch { differences });
            }
            transaction(connection, |connection| {
                for migration in migrator.set.migrations() {
                    record_history(connection, migration)?;
                    record_state(connection, migration, "applied", None)?;
                }
                Ok(())
            })?;
            tracing::info!(
                migrations = migrator.set.migrations().len(),
                "recorded a verified baseline"
            );
            Ok(migrator.set.migrations().iter().map(SqlMigration::info).collect())
        };
        self.with_lock(connection, work)
    }

    /// Accepts an intended edit of an applied migration: records the current checksums. Takes
    /// the runner lock, so it cannot race a runner.
    pub fn accept_checksum(&self, connection: &mut DbConnection, migration: &str) -> Result<(), MigratorError> {
        let migration = self.known(migration)?.clone();
        self.with_lock(connection, |_, connection| {
            let updated = diesel::sql_query(
                "UPDATE __migration_state SET up_checksum = $1, down_checksum = $2 WHERE version = $3 AND state = 'applied'",
            )
            .bind::<Text, _>(migration.up_checksum())
            .bind::<Text, _>(migration.down_checksum())
            .bind::<Text, _>(migration.version())
            .execute(connection)?;
            if updated == 0 {
                return Err(MigratorError::Operation(format!("migration {migration} has no recorded checksum to accept")));
            }
            tracing::warn!(%migration, "accepted an edit of an applied migration");
            Ok(())
        })
    }

    /// Clears the dirty marker of a migration that ran outside a transaction and failed, after
    /// an operator repaired the schema; the migration is pending again. Takes the runner lock, so
    /// a migration that is still running cannot be cleared. Accepts a version this code does not
    /// know (a marker left by another release).
    pub fn clear_dirty(&self, connection: &mut DbConnection, migration: &str) -> Result<(), MigratorError> {
        let version = match self.set.find(migration) {
            Some(known) => known.version().to_owned(),
            None => crate::migrations::version_of(migration),
        };
        self.with_lock(connection, |_, connection| {
            let cleared = diesel::sql_query("DELETE FROM __migration_state WHERE version = $1 AND state = 'dirty'")
                .bind::<Text, _>(&version)
                .execute(connection)?;
            if cleared == 0 {
                return Err(MigratorError::Operation(format!(
                    "migration {migration} is not marked dirty"
                )));
            }
            tracing::warn!(%migration, "cleared a dirty marker; the migration is pending again");
            Ok(())
        })
    }

    fn known(&self, migration: &str) -> Result<&SqlMigration, MigratorError> {
        self.set
            .find(migration)
            .ok_or_else(|| MigratorError::Operation(format!("no migration named {migration}")))
    }

    /// The status in one query over both history tables; when they do not both exist, from
    /// whichever does.
    fn read_status(&self, connection: &mut DbConnection) -> Result<MigrationStatus, MigratorError> {
        let joined = diesel::sql_query(
            "SELECT d.version AS version, (1 = 1) AS in_history, s.up_checksum AS up_checksum,
                    s.down_checksum AS down_checksum, s.state AS state
             FROM __diesel_schema_migrations d LEFT JOIN __migration_state s ON s.version = d.version
             UNION ALL
             SELECT s.version, (1 = 0), s.up_checksum, s.down_checksum, s.state
             FROM __migration_state s
             WHERE NOT EXISTS (SELECT 1 FROM __diesel_schema_migrations d WHERE d.version = s.version)",
        )
        .load::<StateRow>(connection);
        match joined {
            Ok(rows) => Ok(self.analyse(&rows)),
            Err(error) => {
                let (history, state) = history_tables(connection)?;
                if history && state {
                    return Err(error.into());
                }
                if !history {
                    return Ok(MigrationStatus {
                        pending: self.set.migrations().iter().map(SqlMigration::info).collect(),
                        ..MigrationStatus::default()
                    });
                }
                // Migrated by the diesel CLI only: every applied migration lacks a checksum.
                let rows = diesel::sql_query(
                    "SELECT version, (1 = 1) AS in_history, NULL AS up_checksum, NULL AS down_checksum, NULL AS state
                     FROM __diesel_schema_migrations",
                )
                .load::<StateRow>(connection)?;
                Ok(self.analyse(&rows))
            }
        }
    }

    fn analyse(&self, rows: &[StateRow]) -> MigrationStatus {
        let mut status = MigrationStatus {
            has_history: true,
            ..MigrationStatus::default()
        };
        let mut seen = BTreeSet::new();
        let mut applied_rows: Vec<&StateRow> = rows.iter().collect();
        applied_rows.sort_by(|a, b| a.version.cmp(&b.version));
        for row in applied_rows {
            let migration = self.set.find(&row.version);
            let info = migration.map_or_else(
                || MigrationInfo {
                    version: row.version.clone(),
                    name: String::new(),
                },
                SqlMigration::info,
            );
            if row.state.as_deref() == Some("dirty") {
                seen.insert(row.version.clone());
                status.dirty.push(info);
                continue;
            }
            if !row.in_history {
                // A state row whose history row is gone: the diesel CLI reverted the migration,
                // so it is pending again (applying it replaces the stale row).
                continue;
            }
            seen.insert(row.version.clone());
            status.applied.push(info.clone());
            let Some(migration) = migration else {
                status.unknown.push(row.version.clone());
                continue;
            };
            match (&row.up_checksum, &row.down_checksum) {
                (Some(up), Some(down)) => {
                    if *up != migration.up_checksum() {
                        status.checksum_mismatches.push(ChecksumMismatch {
                            migration: info,
                            file: "up.sql",
                        });
                    } else if *down != migration.down_checksum() {
                        status.checksum_mismatches.push(ChecksumMismatch {
                            migration: info,
                            file: "down.sql",
                        });
                    }
                }
                _ => status.unrecorded.push(info),
            }
        }
        status.pending = self
            .set
            .migrations()
            .iter()
            .filter(|migration| !seen.contains(migration.version()))
            .map(SqlMigration::info)
            .collect();
        status
    }

    /// The locked part of a run, shared by both backends' locking schemes.
    fn run_locked(&self, connection: &mut DbConnection) -> Result<MigrationReport, MigratorError> {
        ensure_tables(connection)?;
        let mut report = MigrationReport::default();
        // The step before applying runs once, before the first migration of this run, and only
        // for a database that had applied migrations when the run began.
        let mut before_applying = self.before_applying.as_ref();
        loop {
            let status = self.read_status(connection)?;
            Self::refuse_blockers(connection, &status)?;
            for info in &status.unrecorded {
                let migration = self.known(&info.version)?;
                record_state(connection, migration, "applied", None)?;
                tracing::warn!(migration = %info, "recorded the checksum of a migration applied outside the runner");
                report.checksums_recorded.push(info.clone());
            }
            let Some(next) = status.pending.first() else {
                report.version = status.applied.last().cloned();
                warn_unknown(&status);
                return Ok(report);
            };
            if let Some(step) = before_applying.take()
                && !status.applied.is_empty()
            {
                let done = step(&status.pending).map_err(MigratorError::BeforeApplying)?;
                tracing::info!(done = %done, pending = status.pending.len(), "before applying migrations");
                report.before_applying = Some(done);
            }
            let migration = self.known(&next.version)?;
            report.applied.push(apply(connection, migration)?);
        }
    }

    fn refuse_blockers(connection: &mut DbConnection, status: &MigrationStatus) -> Result<(), MigratorError> {
        if let Some(dirty) = status.dirty.first() {
            return Err(MigratorError::Dirty {
                migration: dirty.to_string(),
            });
        }
        if let Some(mismatch) = status.checksum_mismatches.first() {
            return Err(MigratorError::ChecksumMismatch {
                migration: mismatch.migration.to_string(),
                file: mismatch.file,
            });
        }
        if status.applied.is_empty() {
            let tables: Vec<String> = Catalog::read(connection)?
                .tables
                .into_iter()
                .map(|table| table.name)
                .collect();
            if !tables.is_empty() {
                return Err(MigratorError::NeedsBaseline { tables });
            }
        }
        Ok(())
    }

    /// Runs `work` holding the runner lock of the connection's backend.
    fn with_lock<T>(
        &self,
        connection: &mut DbConnection,
        work: impl FnOnce(&Self, &mut DbConnection) -> Result<T, MigratorError>,
    ) -> Result<T, MigratorError> {
        match connection.backend() {
            Backend::Postgres => self.with_postgres_lock(connection, work),
            Backend::Sqlite => {
                let _lock = SqliteRunnerLock::acquire(connection, &self.settings)?;
                work(self, connection)
            }
        }
    }

    /// Runs `work` holding the PostgreSQL advisory lock, with the migration session timeouts,
    /// restoring the connection's own settings afterwards.
    fn with_postgres_lock<T>(
        &self,
        connection: &mut DbConnection,
        work: impl FnOnce(&Self, &mut DbConnection) -> Result<T, MigratorError>,
    ) -> Result<T, MigratorError> {
        let saved: SavedSettings = diesel::sql_query(
            "SELECT current_setting('statement_timeout') AS statement_timeout,
                    current_setting('lock_timeout') AS lock_timeout,
                    set_config('statement_timeout', $1, false) AS set_statement,
                    set_config('lock_timeout', $2, false) AS set_lock",
        )
        .bind::<Text, _>(format!("{}ms", self.settings.statement_timeout.as_millis()))
        .bind::<Text, _>(format!("{}ms", self.settings.lock_timeout.as_millis()))
        .get_result(connection)?;
        let outcome = acquire_postgres_lock(connection, &self.settings).and_then(|()| {
            // A panic in `work` must not leave the lock held by a connection that goes back to a
            // pool: release it, then let the panic go on.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(self, connection)));
            let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1) AS value")
                .bind::<BigInt, _>(LOCK_KEY)
                .get_result::<Flag>(connection);
            if let Err(error) = unlocked {
                tracing::warn!(%error, "could not release the migration lock; it ends with the session");
            }
            outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        let restored = diesel::sql_query(
            "SELECT set_config('statement_timeout', $1, false) AS statement_timeout,
                    set_config('lock_timeout', $2, false) AS lock_timeout",
        )
        .bind::<Text, _>(&saved.statement_timeout)
        .bind::<Text, _>(&saved.lock_timeout)
        .get_result::<SavedSettings>(connection);
        if let Err(error) = restored {
            tracing::warn!(%error, "could not restore the session's timeouts after migrating");
        }
        outcome
    }

    /// The catalog the migrations create, built where it cannot disturb the live schema: a
    /// scratch PostgreSQL schema (dropped afterwards) or a scratch in-memory SQLite database.
    fn expected_catalog(&self, connection: &mut DbConnection) -> Result<Catalog, MigratorError> {
        match connection {
            DbConnection::Pg(_) => {
                let schema = format!("__baseline_probe_{}", std::process::id());
                // Identifiers cannot be bound; the name is generated from digits.
                connection.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                ))?;
                let saved: SearchPath = diesel::sql_query(
                    "SELECT current_setting('search_path') AS saved, set_config('search_path', $1, false) AS value",
                )
                .bind::<Text, _>(&schema)
                .get_result(connection)?;
                let built = self.build_schema(connection);
                let catalog = built.and_then(|()| Catalog::read(connection).map_err(MigratorError::from));
                diesel::sql_query("SELECT set_config('search_path', $1, false) AS value")
                    .bind::<Text, _>(&saved.saved)
                    .execute(connection)?;
                connection.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
                catalog
            }
            DbConnection::Sqlite(_) => {
                let scratch = SqliteConnection::establish(":memory:").map_err(|error| {
                    MigratorError::Operation(format!("cannot open a scratch SQLite database: {error}"))
                })?;
                let mut scratch = DbConnection::Sqlite(scratch);
                self.build_schema(&mut scratch)?;
                Ok(Catalog::read(&mut scratch)?)
            }
        }
    }

    fn build_schema(&self, connection: &mut DbConnection) -> Result<(), MigratorError> {
        for migration in self.set.migrations() {
            if migration.run_in_transaction() {
                transaction(connection, |connection| {
                    run_migration_sql(connection, migration).map(drop)
                })?;
            } else {
                run_migration_sql(connection, migration)?;
            }
        }
        Ok(())
    }
}

#[derive(QueryableByName)]
struct SearchPath {
    #[diesel(sql_type = Text)]
    saved: String,
    #[diesel(sql_type = Text)]
    #[expect(dead_code, reason = "set_config returns the new value; only its success matters")]
    value: String,
}

fn warn_unknown(status: &MigrationStatus) {
    if !status.unknown.is_empty() {
        tracing::warn!(versions = ?status.unknown, "the database has migrations this code does not know: it is newer than the code");
    }
}

fn log_applied(applied: &AppliedMigration) {
    tracing::info!(
        migration = %applied.migration,
        duration_ms = u64::try_from(applied.duration.as_millis()).unwrap_or(u64::MAX),
        "applied migration"
    );
}

/// Whether diesel's history table and the runner's state table exist.
fn history_tables(connection: &mut DbConnection) -> Result<(bool, bool), MigratorError> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        history: bool,
        #[diesel(sql_type = Bool)]
        state: bool,
    }
    let sql = match connection.backend() {
        Backend::Postgres => {
            "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS history,
                    to_regclass('__migration_state') IS NOT NULL AS state"
        }
        Backend::Sqlite => {
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '__diesel_schema_migrations') AS history,
                    EXISTS (SELECT 1 FROM sqlite_master WHERE name = '__migration_state') AS state"
        }
    };
    let exists: Exists = diesel::sql_query(sql).get_result(connection)?;
    Ok((exists.history, exists.state))
}

/// Creates the history tables if they are missing: `__diesel_schema_migrations` and
/// `__migration_state`, owned by the role that runs this (the role setup runs it as the schema's
/// owner, before it grants the application read access to them).
pub fn ensure_tables(connection: &mut DbConnection) -> Result<(), MigratorError> {
    let history = match connection {
        DbConnection::Pg(pg) => pg.applied_migrations().map(drop),
        DbConnection::Sqlite(sqlite) => sqlite.applied_migrations().map(drop),
    };
    history.map_err(|error| MigratorError::Operation(format!("cannot create diesel's history table: {error}")))?;
    connection.batch_execute(match connection.backend() {
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS __migration_state (
                version text PRIMARY KEY,
                up_checksum text NOT NULL,
                down_checksum text NOT NULL,
                state text NOT NULL CHECK (state IN ('applied', 'dirty')),
                recorded_at timestamptz NOT NULL DEFAULT now(),
                duration_ms bigint
            )"
        }
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS __migration_state (
                version TEXT PRIMARY KEY NOT NULL,
                up_checksum TEXT NOT NULL,
                down_checksum TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('applied', 'dirty')),
                recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                duration_ms INTEGER
            ) STRICT"
        }
    })?;
    Ok(())
}

fn acquire_postgres_lock(connection: &mut DbConnection, settings: &MigrationSettings) -> Result<(), MigratorError> {
    let started = Instant::now();
    loop {
        let locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS value")
            .bind::<BigInt, _>(LOCK_KEY)
            .get_result::<Flag>(connection)?
            .value;
        if locked {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= settings.lock_wait {
            let holder = diesel::sql_query(
                "SELECT a.pid AS pid, coalesce(a.application_name, '') AS application_name
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .bind::<BigInt, _>(LOCK_KEY)
            .get_result::<Holder>(connection)
            .optional()?;
            return Err(MigratorError::LockTimeout {
                waited_ms: waited.as_millis(),
                holder: holder
                    .map(|holder| format!("pid {} (application \"{}\")", holder.pid, holder.application_name)),
            });
        }
        std::thread::sleep(
            settings
                .lock_poll_interval
                .min(settings.lock_wait.saturating_sub(waited)),
        );
    }
}

/// The SQLite runner lock: an exclusive lock on a file beside the database,
/// `<database>.migrate-lock`, polled like the PostgreSQL advisory lock and held for the whole
/// run (SQLite's own write lock cannot be held across a migration that runs outside a
/// transaction). The holder writes its pid and name into the file, so a waiter that gives up can
/// name it. An in-memory database belongs to one process and needs no lock.
struct SqliteRunnerLock {
    _file: Option<std::fs::File>,
}

impl SqliteRunnerLock {
    fn acquire(connection: &mut DbConnection, settings: &MigrationSettings) -> Result<Self, MigratorError> {
        use std::io::{Read as _, Seek as _, Write as _};

        #[derive(QueryableByName)]
        struct DatabaseFile {
            #[diesel(sql_type = Text)]
            file: String,
        }
        let path = diesel::sql_query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .get_result::<DatabaseFile>(connection)?
            .file;
        if path.is_empty() {
            return Ok(Self { _file: None });
        }
        let lock_path = format!("{path}.migrate-lock");
        let io =
            |error: std::io::Error| MigratorError::Operation(format!("cannot use the lock file {lock_path}: {error}"));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(error)) => return Err(io(error)),
            }
            let waited = started.elapsed();
            if waited >= settings.lock_wait {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(MigratorError::LockTimeout {
                    waited_ms: waited.as_millis(),
                    holder: (!holder.is_empty()).then(|| holder.to_owned()),
                });
            }
            std::thread::sleep(
                settings
                    .lock_poll_interval
                    .min(settings.lock_wait.saturating_sub(waited)),
            );
        }
        let name = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
            .unwrap_or_default();
        file.set_len(0).and_then(|()| file.rewind()).map_err(io)?;
        write!(file, "pid {} (application \"{name}\")", std::process::id()).map_err(io)?;
        Ok(Self { _file: Some(file) })
    }
}

/// Runs `work` in a transaction (`BEGIN IMMEDIATE` on SQLite, which takes the write lock at
/// once rather than failing on the upgrade), committing on success and rolling back on error.
fn transaction<T>(
    connection: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, MigratorError>,
) -> Result<T, MigratorError> {
    connection.batch_execute(match connection.backend() {
        Backend::Postgres => "BEGIN",
        Backend::Sqlite => "BEGIN IMMEDIATE",
    })?;
    match work(connection) {
        Ok(value) => match connection.batch_execute("COMMIT") {
            Ok(()) => Ok(value),
            Err(error) => {
                // PostgreSQL ends a transaction whose COMMIT failed; SQLite may leave it open.
                let _ = connection.batch_execute("ROLLBACK");
                Err(error.into())
            }
        },
        Err(error) => {
            if let Err(rollback) = connection.batch_execute("ROLLBACK") {
                tracing::warn!(%rollback, "rollback after a failed migration step failed");
            }
            Err(error)
        }
    }
}

/// Applies one migration under the PostgreSQL lock.
fn apply(connection: &mut DbConnection, migration: &SqlMigration) -> Result<AppliedMigration, MigratorError> {
    if !migration.run_in_transaction() {
        record_state(connection, migration, "dirty", None)?;
        return finish_outside_transaction(connection, migration);
    }
    let applied = transaction(connection, |connection| {
        let applied = run_migration_sql(connection, migration)?;
        record_history(connection, migration)?;
        record_state(connection, migration, "applied", Some(applied.duration))?;
        Ok(applied)
    })?;
    log_applied(&applied);
    Ok(applied)
}

/// Runs a migration that opted out of transactions, whose dirty marker is already recorded, and
/// clears the marker when it succeeds.
fn finish_outside_transaction(
    connection: &mut DbConnection,
    migration: &SqlMigration,
) -> Result<AppliedMigration, MigratorError> {
    tracing::info!(%migration, "running a migration outside a transaction; it stays marked dirty until it finishes");
    let applied = run_migration_sql(connection, migration)?;
    transaction(connection, |connection| {
        record_history(connection, migration)?;
        record_state(connection, migration, "applied", Some(applied.duration))
    })?;
    log_applied(&applied);
    Ok(applied)
}

fn run_migration_sql(
    connection: &mut DbConnection,
    migration: &SqlMigration,
) -> Result<AppliedMigration, MigratorError> {
    tracing::info!(%migration, "applying migration");
    let started = Instant::now();
    connection
        .batch_execute(migration.up_sql())
        .map_err(|source| MigratorError::Failed {
            migration: migration.name().to_owned(),
            duration_ms: started.elapsed().as_millis(),
            source,
        })?;
    Ok(AppliedMigration {
        migration: migration.info(),
        duration: started.elapsed(),
    })
}

fn record_history(connection: &mut DbConnection, migration: &SqlMigration) -> Result<(), MigratorError> {
    diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ($1)")
        .bind::<Text, _>(migration.version())
        .execute(connection)?;
    Ok(())
}

fn record_state(
    connection: &mut DbConnection,
    migration: &SqlMigration,
    state: &str,
    duration: Option<Duration>,
) -> Result<(), MigratorError> {
    let duration_ms = duration.map(|duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
    diesel::sql_query("DELETE FROM __migration_state WHERE version = $1")
        .bind::<Text, _>(migration.version())
        .execute(connection)?;
    diesel::sql_query(
        "INSERT INTO __migration_state (version, up_checksum, down_checksum, state, duration_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind::<Text, _>(migration.version())
    .bind::<Text, _>(migration.up_checksum())
    .bind::<Text, _>(migration.down_checksum())
    .bind::<Text, _>(state)
    .bind::<Nullable<BigInt>, _>(duration_ms)
    .execute(connection)?;
    Ok(())
}

/// One line per object that only one of the two catalogs has.
fn catalog_differences(live: &Catalog, expected: &Catalog) -> Vec<String> {
    fn lines<T: std::fmt::Debug>(items: &[T]) -> BTreeSet<String> {
        items.iter().map(|item| format!("{item:?}")).collect()
    }
    let mut differences = Vec::new();
    let pairs = [
        ("table", lines(&live.tables), lines(&expected.tables)),
        ("index", lines(&live.indexes), lines(&expected.indexes)),
        ("constraint", lines(&live.constraints), lines(&expected.constraints)),
        ("trigger", lines(&live.triggers), lines(&expected.triggers)),
        ("routine", lines(&live.routines), lines(&expected.routines)),
        ("object", lines(&live.objects), lines(&expected.objects)),
    ];
    for (kind, live, expected) in pairs {
        for extra in live.difference(&expected) {
            differences.push(format!("  live only {kind}: {extra}"));
        }
        for missing in expected.difference(&live) {
            differences.push(format!("  missing {kind}: {missing}"));
        }
    }
    differences
}
