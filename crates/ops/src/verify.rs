//! Verifying a backup by restoring it: into a scratch database that this code creates and drops
//! (PostgreSQL) or a temporary file (SQLite), then checking the copy against the manifest: the
//! file's size and SHA-256, every table's row count, the schema digest, the migration history,
//! and index integrity (`amcheck`'s `bt_index_check` where the extension can be created,
//! `PRAGMA integrity_check` on SQLite). The result is recorded for health checks.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use chrono::Utc;
use database::config::SessionSettings;
use database::connection::ConnectionManager;
use database::{Backend, Database, DatabaseTarget, DbConnection};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

use crate::manifest::{BackupDirectory, Manifest};
use crate::records::{Kind, Outcome, Record};
use crate::settings::BackupSettings;
use crate::sql::quote_identifier;
use crate::tools::{Running, Tool};
use crate::{BackupError, elapsed_ms, sql};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// The copy matches.
    Passed,
    /// The copy does not match: the backup is bad.
    Failed,
    /// The check could not run here (named with the reason); it is not a pass.
    NotRun,
}

impl CheckOutcome {
    /// `Passed` when the copy matched, `Failed` otherwise.
    #[must_use]
    pub fn of(passed: bool) -> Self {
        if passed { Self::Passed } else { Self::Failed }
    }
}

/// One check of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// What it found.
    pub outcome: CheckOutcome,
    /// The figures or the difference.
    pub detail: String,
}

/// The result of verifying one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The backup.
    pub backup: String,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// How long the restore and the checks took.
    pub duration_ms: u64,
}

impl Verification {
    /// True when no check failed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.outcome != CheckOutcome::Failed)
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let outcome = match check.outcome {
                CheckOutcome::Passed => "ok",
                CheckOutcome::Failed => "FAILED",
                CheckOutcome::NotRun => "not run",
            };
            writeln!(f, "{:<28} {:<8} {}", check.name, outcome, check.detail)?;
        }
        Ok(())
    }
}

/// Verifies backup `id` (the newest when `None`) by restoring it next to `database` and records
/// the result. `Ok` carries the verification whether it passed or not; `Err` means it could not
/// be run to the end.
pub fn verify(database: &Database, settings: &BackupSettings, id: Option<&str>) -> Result<Verification, BackupError> {
    let directory = BackupDirectory::new(&settings.directory);
    let start = Instant::now();
    let manifest = directory.find(id)?;
    let result = run(database, settings, &directory, &manifest);
    let (outcome, detail) = match &result {
        Ok(verification) if verification.passed() => (Outcome::Ok, None),
        Ok(verification) => (
            Outcome::Mismatch,
            Some(
                verification
                    .checks
                    .iter()
                    .filter(|check| check.outcome == CheckOutcome::Failed)
                    .map(|check| format!("{}: {}", check.name, check.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
        Err(error) => (Outcome::Failed, Some(error.to_string())),
    };
    directory.append_record(&Record::finished(
        Kind::Verify,
        Some(manifest.id.clone()),
        outcome,
        start,
        detail,
    ))?;
    result
}

fn run(
    database: &Database,
    settings: &BackupSettings,
    directory: &BackupDirectory,
    manifest: &Manifest,
) -> Result<Verification, BackupError> {
    let start = Instant::now();
    let path = directory.file(&manifest.file.name);
    let mut checks = vec![file_check(&path, manifest)?];
    if checks[0].outcome == CheckOutcome::Passed {
        if manifest.backend != database.backend().to_string() {
            return Err(BackupError::Refused(format!(
                "backup {} is of a {} database; the configured database is {}",
                manifest.id,
                manifest.backend,
                database.backend()
            )));
        }
        match database.backend() {
            Backend::Postgres => verify_postgres(database, settings, manifest, &path, &mut checks)?,
            Backend::Sqlite => verify_sqlite(settings, manifest, &path, &mut checks)?,
        }
    }
    Ok(Verification {
        backup: manifest.id.clone(),
        checks,
        duration_ms: elapsed_ms(start),
    })
}

/// The file's size and SHA-256 against the manifest.
pub(crate) fn file_check(path: &Path, manifest: &Manifest) -> Result<Check, BackupError> {
    let (size, sha256) = match crate::encryption::file_digest(path) {
        Ok(digest) => digest,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(Check {
                name: "file".to_owned(),
                outcome: CheckOutcome::Failed,
                detail: format!("{} is missing", path.display()),
            });
        }
        Err(error) => return Err(BackupError::io(format!("cannot read {}", path.display()), error)),
    };
    let matches = size == manifest.file.size && sha256 == manifest.file.sha256;
    Ok(Check {
        name: "file".to_owned(),
        outcome: CheckOutcome::of(matches),
        detail: if matches {
            format!("{size} bytes, sha256 {}", &sha256[..16])
        } else {
            format!(
                "{size} bytes with sha256 {sha256}; the manifest says {} bytes with sha256 {}",
                manifest.file.size, manifest.file.sha256
            )
        },
    })
}

/// The backup's plaintext, decrypted when it is encrypted.
pub(crate) fn open_backup(
    path: &Path,
    manifest: &Manifest,
    settings: &BackupSettings,
) -> Result<Box<dyn io::Read>, BackupError> {
    let file = File::open(path).map_err(|error| BackupError::io(format!("cannot read {}", path.display()), error))?;
    let file = io::BufReader::with_capacity(1 << 20, file);
    if manifest.encryption.is_some() {
        Ok(Box::new(settings.identities()?.decrypt(file)?))
    } else {
        Ok(Box::new(file))
    }
}

/// Runs `pg_restore` of the backup into `url`, feeding it the (decrypted) archive on stdin.
pub(crate) fn pg_restore(
    settings: &BackupSettings,
    manifest: &Manifest,
    path: &Path,
    url: &str,
    server_major: u32,
    extra: &[&str],
) -> Result<(), BackupError> {
    let tool = Tool::find("pg_restore", settings.pg_bin_dir.as_deref(), server_major)?;
    let dumped_by = manifest
        .tool
        .split(')')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|version| version.split('.').next())
        .and_then(|major| major.parse::<u32>().ok())
        .unwrap_or(server_major);
    tool.require_at_least(dumped_by, "an archive written by pg_dump")?;
    let mut input = open_backup(path, manifest, settings)?;
    let mut command = tool.command(url)?;
    command.args(["--exit-on-error", "--single-transaction"]).args(extra);
    let mut running = Running::spawn(command, "pg_restore", Stdio::piped(), Stdio::null())?;
    let mut stdin = running.child.stdin.take().expect("stdin is piped");
    let copied = io::copy(&mut input, &mut stdin);
    drop(stdin);
    let finished = running.finish();
    // pg_restore's own error explains a broken pipe better than the pipe does.
    finished?;
    copied.map_err(|error| BackupError::io("cannot feed the backup to pg_restore".to_owned(), error))?;
    Ok(())
}

/// A database that exists for one verification and is dropped when this goes out of scope.
struct ScratchDatabase<'a> {
    database: &'a Database,
    name: String,
}

impl Drop for ScratchDatabase<'_> {
    fn drop(&mut self) {
        let dropped = self
            .database
            .get()
            .map_err(|error| error.to_string())
            .and_then(|mut connection| {
                connection
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_identifier(&self.name)
                    ))
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = dropped {
            tracing::error!(database = %self.name, %error, "could not drop the scratch database of a verification: drop it by hand");
        }
    }
}

fn verify_postgres(
    database: &Database,
    settings: &BackupSettings,
    manifest: &Manifest,
    path: &Path,
    checks: &mut Vec<Check>,
) -> Result<(), BackupError> {
    let mut connection = database.get()?;
    let server_major = sql::server_major(&mut connection)?;
    // The pid and the clock: a process that runs as pid 1 in every container still gets a
    // name of its own.
    let name = format!(
        "dbctl_verify_{}_{}_{}",
        manifest.id.to_ascii_lowercase(),
        std::process::id(),
        Utc::now().timestamp_subsec_nanos()
    );
    connection
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            quote_identifier(&name)
        ))
        .map_err(BackupError::database(
            "cannot create the scratch database (the role needs CREATEDB)",
        ))?;
    drop(connection);
    let scratch = ScratchDatabase { database, name };
    let mut url = url::Url::parse(database.config().target.connection_string()?.expose())
        .map_err(|error| BackupError::Settings(format!("the PostgreSQL connection string is not a URL: {error}")))?;
    url.set_path(&format!("/{}", scratch.name));
    let started = Instant::now();
    pg_restore(
        settings,
        manifest,
        path,
        url.as_str(),
        server_major,
        // With the privileges: they are part of the schema the manifest's digest covers (the
        // grants of `dbctl roles setup`), and the roles they name are the server's, so a
        // verification on the same server finds them. `--no-owner`: the copy belongs to the
        // role verifying, and the catalog writes owners as `<owner>`.
        &["--no-owner"],
    )?;
    checks.push(Check {
        name: "restore".to_owned(),
        outcome: CheckOutcome::Passed,
        detail: format!("pg_restore into {} in {} ms", scratch.name, elapsed_ms(started)),
    });
    let target = DatabaseTarget::postgres_url(url.as_str())
        .map_err(|error| BackupError::Settings(format!("the scratch database's URL: {error}")))?;
    let mut copy = ConnectionManager::new(
        target,
        SessionSettings::default(),
        database.config().pool.connection_timeout,
    )
    .establish()
    .map_err(|error| BackupError::Tool(error.to_string()))?;
    copy.batch_execute("SET statement_timeout = 0")
        .map_err(BackupError::database("cannot set up the scratch connection"))?;
    compare(&mut copy, manifest, checks)?;
    checks.push(amcheck(&mut copy));
    drop(copy);
    drop(scratch);
    Ok(())
}

fn verify_sqlite(
    settings: &BackupSettings,
    manifest: &Manifest,
    path: &Path,
    checks: &mut Vec<Check>,
) -> Result<(), BackupError> {
    let scratch = tempfile::Builder::new()
        .prefix("dbctl-verify-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|error| BackupError::io("cannot create a temporary directory".to_owned(), error))?;
    let copy_path = scratch.path().join("restored.sqlite3");
    let started = Instant::now();
    let mut input = open_backup(path, manifest, settings)?;
    let mut output = File::create(&copy_path)
        .map_err(|error| BackupError::io(format!("cannot write {}", copy_path.display()), error))?;
    io::copy(&mut input, &mut output)
        .map_err(|error| BackupError::io(format!("cannot write {}", copy_path.display()), error))?;
    drop(output);
    checks.push(Check {
        name: "restore".to_owned(),
        outcome: CheckOutcome::Passed,
        detail: format!("copied into a temporary file in {} ms", elapsed_ms(started)),
    });
    let mut copy = crate::backup::open_sqlite(&copy_path)?;
    let integrity: Vec<IntegrityRow> =
        diesel::sql_query("PRAGMA integrity_check")
            .load(&mut copy)
            .map_err(|source| BackupError::Database {
                context: "PRAGMA integrity_check failed: the file is not a usable SQLite database".to_owned(),
                source,
            })?;
    let ok = integrity.len() == 1 && integrity[0].integrity_check == "ok";
    compare(&mut copy, manifest, checks)?;
    checks.push(Check {
        name: "integrity (integrity_check)".to_owned(),
        outcome: CheckOutcome::of(ok),
        detail: if ok {
            "ok".to_owned()
        } else {
            integrity
                .iter()
                .take(5)
                .map(|row| row.integrity_check.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        },
    });
    Ok(())
}

#[derive(QueryableByName)]
struct IntegrityRow {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}

/// Row counts, schema digest and migration history of the restored copy against the manifest.
fn compare(copy: &mut DbConnection, manifest: &Manifest, checks: &mut Vec<Check>) -> Result<(), BackupError> {
    let counts = sql::row_counts(copy)?;
    let differences: Vec<String> = manifest
        .row_counts
        .keys()
        .chain(counts.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|table| {
            let expected = manifest.row_counts.get(table);
            let found = counts.get(table);
            (expected != found).then(|| {
                let show = |count: Option<&u64>| count.map_or_else(|| "no table".to_owned(), ToString::to_string);
                format!(
                    "{table}: {} in the copy, {} in the manifest",
                    show(found),
                    show(expected)
                )
            })
        })
        .collect();
    let total: u64 = counts.values().sum();
    checks.push(Check {
        name: "row counts".to_owned(),
        outcome: CheckOutcome::of(differences.is_empty()),
        detail: if differences.is_empty() {
            format!("{} tables, {total} rows, as in the manifest", counts.len())
        } else {
            differences.join("; ")
        },
    });
    let digest = sql::schema_digest(copy)?;
    checks.push(Check {
        name: "schema digest".to_owned(),
        outcome: CheckOutcome::of(digest == manifest.schema_digest),
        detail: if digest == manifest.schema_digest {
            digest[..16].to_owned()
        } else {
            format!("{digest} in the copy, {} in the manifest", manifest.schema_digest)
        },
    });
    let migrations = sql::applied_migrations(copy)?;
    checks.push(Check {
        name: "migration history".to_owned(),
        outcome: CheckOutcome::of(migrations == manifest.migrations),
        detail: if migrations == manifest.migrations {
            format!(
                "{} applied, head {}",
                migrations.len(),
                migrations.last().map_or("none", String::as_str)
            )
        } else {
            format!("{migrations:?} in the copy, {:?} in the manifest", manifest.migrations)
        },
    });
    Ok(())
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = BigInt)]
    oid: i64,
    #[diesel(sql_type = Text)]
    name: String,
}

/// `bt_index_check(index, heapallindexed => true)` on every B-tree index of the restored copy.
/// Where amcheck cannot be created, the check is reported as not run, with the reason.
fn amcheck(copy: &mut DbConnection) -> Check {
    let name = "index integrity (amcheck)".to_owned();
    if let Err(error) = copy.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck") {
        return Check {
            name,
            outcome: CheckOutcome::NotRun,
            detail: format!("amcheck is not available: {error}"),
        };
    }
    let indexes: Vec<IndexRow> = match diesel::sql_query(
        "SELECT c.oid::bigint AS oid, n.nspname || '.' || c.relname AS name FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         WHERE c.relkind = 'i' AND am.amname = 'btree' \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 2",
    )
    .load(copy)
    {
        Ok(indexes) => indexes,
        Err(error) => {
            return Check {
                name,
                outcome: CheckOutcome::NotRun,
                detail: format!("cannot list the indexes: {error}"),
            };
        }
    };
    let mut failures = Vec::new();
    for index in &indexes {
        if let Err(error) =
            diesel::sql_query("SELECT bt_index_check(index => $1::oid::regclass, heapallindexed => true)")
                .bind::<BigInt, _>(index.oid)
                .execute(copy)
        {
            failures.push(format!("{}: {error}", index.name));
        }
    }
    Check {
        name,
        outcome: CheckOutcome::of(failures.is_empty()),
        detail: if failures.is_empty() {
            format!("{} B-tree indexes checked against their tables", indexes.len())
        } else {
            failures.join("; ")
        },
    }
}
