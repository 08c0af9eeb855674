//! Restoring a backup into a target database: the file is checked against its manifest first, a
//! target that holds tables is refused unless the caller asks to replace it, and the migration
//! status of the restored database is returned.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Instant;

use database::config::SessionSettings;
use database::connection::ConnectionManager;
use database::{Backend, DatabaseConfig, DbConnection};
use migrator::{MigrationStatus, Migrator};
use serde::Serialize;

use crate::manifest::{BackupDirectory, Manifest};
use crate::records::{Kind, Outcome, Record};
use crate::settings::BackupSettings;
use crate::verify::{CheckOutcome, file_check, open_backup, pg_restore};
use crate::{BackupError, elapsed_ms, sql};

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: String,
    /// The target, redacted.
    pub target: String,
    /// Whether the target held tables that the restore replaced.
    pub replaced: bool,
    /// The migration status of the restored database.
    pub status: MigrationStatus,
    /// How long it took.
    pub duration_ms: u64,
}

/// Restores backup `id` (the newest when `None`) into the database `config` points at. On
/// SQLite the file is replaced whole: stop every process that has it open first.
pub fn restore(
    config: &DatabaseConfig,
    settings: &BackupSettings,
    id: Option<&str>,
    replace: bool,
) -> Result<RestoreReport, BackupError> {
    let directory = BackupDirectory::new(&settings.directory);
    let start = Instant::now();
    let manifest = directory.find(id)?;
    let result = run(config, settings, &directory, &manifest, replace);
    directory.append_record(&Record::finished(
        Kind::Restore,
        Some(manifest.id.clone()),
        if result.is_ok() { Outcome::Ok } else { Outcome::Failed },
        start,
        Some(match &result {
            Ok(report) => format!("into {}", report.target),
            Err(error) => error.to_string(),
        }),
    ))?;
    result
}

fn run(
    config: &DatabaseConfig,
    settings: &BackupSettings,
    directory: &BackupDirectory,
    manifest: &Manifest,
    replace: bool,
) -> Result<RestoreReport, BackupError> {
    let start = Instant::now();
    let backend = config.target.backend();
    if manifest.backend != backend.to_string() {
        return Err(BackupError::Refused(format!(
            "backup {} is of a {} database and cannot be restored into {backend}",
            manifest.id, manifest.backend
        )));
    }
    let path = directory.file(&manifest.file.name);
    let check = file_check(&path, manifest)?;
    if check.outcome != CheckOutcome::Passed {
        return Err(BackupError::Damaged(format!(
            "backup {} is damaged: {}",
            manifest.id, check.detail
        )));
    }
    let connect = || {
        ConnectionManager::new(
            config.target.clone(),
            SessionSettings::default(),
            config.pool.connection_timeout,
        )
        .establish()
        .map_err(|error| BackupError::Tool(error.to_string()))
    };
    let target = config.target.redacted().to_owned();
    let refuse = || {
        BackupError::Refused(format!(
            "{target} holds tables: restoring would mix two databases; pass --replace to restore over them"
        ))
    };
    let replaced = match backend {
        Backend::Postgres => {
            let mut connection = connect()?;
            let has_tables = sql::has_tables(&mut connection)?;
            if has_tables && !replace {
                return Err(refuse());
            }
            let server_major = sql::server_major(&mut connection)?;
            drop(connection);
            let extra: &[&str] = if has_tables {
                &["--no-owner", "--clean", "--if-exists"]
            } else {
                &["--no-owner"]
            };
            pg_restore(
                settings,
                manifest,
                &path,
                config.target.connection_string()?.expose(),
                server_major,
                extra,
            )?;
            has_tables
        }
        Backend::Sqlite => {
            let text = config.target.connection_string()?;
            let text = text.expose();
            if config.target.is_in_memory() || text.starts_with("file:") {
                return Err(BackupError::Refused(format!(
                    "{target} is not a plain SQLite file path: restore into a file named by its path"
                )));
            }
            let file = Path::new(text);
            let has_tables = file.exists() && sql::has_tables(&mut crate::backup::open_sqlite(file)?)?;
            if has_tables && !replace {
                return Err(refuse());
            }
            replace_sqlite_file(file, &path, manifest, settings)?;
            has_tables
        }
    };
    let mut restored: DbConnection = connect()?;
    let status = Migrator::embedded(backend, config.migration.clone())
        .status(&mut restored)
        .map_err(|error| BackupError::Manifest(format!("restored, but cannot read the migration status: {error}")))?;
    Ok(RestoreReport {
        backup: manifest.id.clone(),
        target,
        replaced,
        status,
        duration_ms: elapsed_ms(start),
    })
}

/// Writes the backup beside `file`, syncs it, removes the old file's WAL and shared-memory files
/// (a stale WAL would be replayed into the new file) and renames it into place.
fn replace_sqlite_file(
    file: &Path,
    backup: &Path,
    manifest: &Manifest,
    settings: &BackupSettings,
) -> Result<(), BackupError> {
    let directory = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)
        .map_err(|error| BackupError::io(format!("cannot create {}", directory.display()), error))?;
    let partial = directory.join(format!(
        ".{}.restore.partial",
        file.file_name()
            .map_or_else(|| "database".into(), |name| name.to_string_lossy())
    ));
    let written = (|| {
        let mut input = open_backup(backup, manifest, settings)?;
        let mut output = File::create(&partial)
            .map_err(|error| BackupError::io(format!("cannot write {}", partial.display()), error))?;
        io::copy(&mut input, &mut output)
            .map_err(|error| BackupError::io(format!("cannot write {}", partial.display()), error))?;
        output
            .sync_all()
            .map_err(|error| BackupError::io(format!("cannot sync {}", partial.display()), error))
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = file.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(&side) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(BackupError::io(
                    format!("cannot remove {}", Path::new(&side).display()),
                    error,
                ));
            }
            _ => {}
        }
    }
    std::fs::rename(&partial, file).map_err(|error| {
        BackupError::io(
            format!("cannot rename {} to {}", partial.display(), file.display()),
            error,
        )
    })?;
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| BackupError::io(format!("cannot sync {}", directory.display()), error))
}
