//! Taking a backup: PostgreSQL through `pg_dump` in its custom format, inside an exported
//! snapshot that the manifest's row counts are read in too; SQLite through `VACUUM INTO`, whose
//! copy the manifest is read from. The file is written under a temporary name, synced and
//! renamed; the manifest after it. A failed backup leaves no file that looks complete.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::Stdio;
use std::time::Instant;

use chrono::Utc;
use database::{Backend, Database, DbConnection};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::encryption::HashingWriter;
use crate::manifest::{BackupDirectory, BackupFile, Encryption, MANIFEST_FORMAT, Manifest};
use crate::records::{Kind, Outcome, Record};
use crate::settings::BackupSettings;
use crate::tools::{Running, Tool};
use crate::{BackupError, elapsed_ms, sql};

/// Backups, manifests and the record hold the data: only their owner may read them.
pub(crate) const PRIVATE: u32 = 0o600;

#[derive(QueryableByName)]
struct Snapshot {
    #[diesel(sql_type = Text)]
    snapshot: String,
}

/// Takes a backup of `database` into the backup directory, records the run (success or
/// failure) in its record, and returns the manifest.
pub fn backup(database: &Database, settings: &BackupSettings) -> Result<Manifest, BackupError> {
    let directory = BackupDirectory::new(&settings.directory);
    let start = Instant::now();
    let result = take(database, settings, &directory);
    let record = Record::finished(
        Kind::Backup,
        result.as_ref().ok().map(|manifest| manifest.id.clone()),
        if result.is_ok() { Outcome::Ok } else { Outcome::Failed },
        start,
        result.as_ref().err().map(ToString::to_string),
    );
    if let Err(error) = directory.append_record(&record) {
        tracing::error!(%error, "cannot record the backup run");
        if result.is_ok() {
            return Err(error);
        }
    }
    match &result {
        Ok(manifest) => tracing::info!(
            backup = %manifest.id,
            bytes = manifest.file.size,
            duration_ms = manifest.duration_ms,
            encrypted = manifest.encryption.is_some(),
            "backup taken"
        ),
        Err(error) => tracing::error!(%error, "backup failed"),
    }
    result
}

fn take(database: &Database, settings: &BackupSettings, directory: &BackupDirectory) -> Result<Manifest, BackupError> {
    directory.create()?;
    let start = Instant::now();
    let taken_at = Utc::now();
    let id = taken_at.format("%Y%m%dT%H%M%S%3fZ").to_string();
    if directory.manifest_path(&id).exists() {
        return Err(BackupError::Refused(format!("a backup named {id} exists already")));
    }
    let (name, format) = match database.backend() {
        Backend::Postgres => (format!("{id}.dump{}", encrypted_suffix(settings)), "pg_dump custom"),
        Backend::Sqlite => (format!("{id}.sqlite3{}", encrypted_suffix(settings)), "sqlite database"),
    };
    // Claimed by creating it (empty, private): a second backup in the same millisecond fails
    // here and leaves this one's file alone. VACUUM INTO accepts an empty target.
    let partial = directory.partial(&name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .open(&partial)
        .map_err(|error| {
            BackupError::io(
                format!("cannot claim {} (is another backup running?)", partial.display()),
                error,
            )
        })?;
    let mut connection = database.get()?;
    let result = match database.backend() {
        Backend::Postgres => dump_postgres(&mut connection, database, settings, &partial),
        Backend::Sqlite => copy_sqlite(&mut connection, settings, &partial),
    };
    let contents = finish_partial(result, &partial)?;
    drop(connection);
    directory.commit(&directory.partial(&name), &name)?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id,
        taken_at,
        backend: database.backend().to_string(),
        database: database.config().target.redacted().to_owned(),
        server_version: contents.server_version,
        tool: contents.tool,
        migrations: contents.migrations,
        row_counts: contents.row_counts,
        schema_digest: contents.schema_digest,
        file: BackupFile {
            name,
            size: contents.size,
            sha256: contents.sha256,
            format: format.to_owned(),
        },
        encryption: settings.recipients.as_ref().map(|recipients| Encryption {
            scheme: "age".to_owned(),
            recipients: recipients.to_strings(),
        }),
        duration_ms: elapsed_ms(start),
    };
    if let Err(error) = directory.write_manifest(&manifest) {
        // Without its manifest the file is not a backup: remove it rather than leave it.
        let _ = std::fs::remove_file(directory.file(&manifest.file.name));
        return Err(error);
    }
    Ok(manifest)
}

/// What a backup file holds, read in its own snapshot.
struct Contents {
    server_version: String,
    tool: String,
    migrations: Vec<String>,
    row_counts: std::collections::BTreeMap<String, u64>,
    schema_digest: String,
    size: u64,
    sha256: String,
}

fn encrypted_suffix(settings: &BackupSettings) -> &'static str {
    if settings.recipients.is_some() { ".age" } else { "" }
}

/// Removes the temporary file of a backup that failed.
fn finish_partial(result: Result<Contents, BackupError>, partial: &std::path::Path) -> Result<Contents, BackupError> {
    if result.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    result
}

/// `pg_dump --snapshot` of a snapshot this connection exported, with the manifest's facts read
/// in that same snapshot. The snapshot's transaction stays open until `pg_dump` has finished.
fn dump_postgres(
    connection: &mut DbConnection,
    database: &Database,
    settings: &BackupSettings,
    partial: &std::path::Path,
) -> Result<Contents, BackupError> {
    let server_major = sql::server_major(connection)?;
    let pg_dump = Tool::find("pg_dump", settings.pg_bin_dir.as_deref(), server_major)?;
    pg_dump.require_at_least(server_major, "a PostgreSQL server of version")?;
    // The snapshot stays open, idle, while pg_dump runs, and the counts may take long on big
    // tables: neither the server's idle timeout nor the pool's statement timeout may end it
    // (pg_dump turns both off for its own session too).
    connection
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL statement_timeout = 0; \
             SET LOCAL idle_in_transaction_session_timeout = 0",
        )
        .map_err(BackupError::database("cannot start the backup's snapshot"))?;
    let result = (|| -> Result<Contents, BackupError> {
        let snapshot: Snapshot = diesel::sql_query("SELECT pg_export_snapshot() AS snapshot")
            .get_result(connection)
            .map_err(BackupError::database("cannot export a snapshot"))?;
        let server_version = sql::server_version(connection)?;
        let migrations = sql::applied_migrations(connection)?;
        let row_counts = sql::row_counts(connection)?;
        let schema_digest = sql::schema_digest(connection)?;
        let mut command = pg_dump.command(database.config().target.connection_string()?.expose())?;
        command.args(["--format=custom", &format!("--snapshot={}", snapshot.snapshot)]);
        let mut running = Running::spawn(command, "pg_dump", Stdio::null(), Stdio::piped())?;
        let mut output = running.child.stdout.take().expect("stdout is piped");
        let (size, sha256) = write_file(partial, settings, &mut output)?;
        running.finish()?;
        Ok(Contents {
            server_version,
            tool: pg_dump.version.clone(),
            migrations,
            row_counts,
            schema_digest,
            size,
            sha256,
        })
    })();
    // Read only: ending it either way changes nothing.
    let end = connection.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let contents = result?;
    end.map_err(BackupError::database("cannot end the backup's snapshot"))?;
    Ok(contents)
}

/// `VACUUM INTO` a plain copy, the manifest's facts read from that copy (it is the snapshot),
/// then the copy encrypted into the backup file when recipients are set.
fn copy_sqlite(
    connection: &mut DbConnection,
    settings: &BackupSettings,
    partial: &std::path::Path,
) -> Result<Contents, BackupError> {
    // An encrypted backup's plain copy goes to a private temporary directory (0700), never
    // into the backup directory, and goes when this returns.
    let scratch = if settings.recipients.is_some() {
        Some(
            tempfile::Builder::new()
                .prefix("dbctl-backup-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir()
                .map_err(|error| BackupError::io("cannot create a private temporary directory".to_owned(), error))?,
        )
    } else {
        None
    };
    let plain = scratch
        .as_ref()
        .map_or_else(|| partial.to_path_buf(), |scratch| scratch.path().join("plain.sqlite3"));
    let result = (|| -> Result<Contents, BackupError> {
        diesel::sql_query("VACUUM INTO ?")
            .bind::<Text, _>(plain.to_string_lossy())
            .execute(connection)
            .map_err(BackupError::database("VACUUM INTO failed"))?;
        std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(PRIVATE))
            .map_err(|error| BackupError::io(format!("cannot restrict {}", plain.display()), error))?;
        let mut copy = open_sqlite(&plain)?;
        let server_version = sql::server_version(&mut copy)?;
        let migrations = sql::applied_migrations(&mut copy)?;
        let row_counts = sql::row_counts(&mut copy)?;
        let schema_digest = sql::schema_digest(&mut copy)?;
        drop(copy);
        let (size, sha256) = if settings.recipients.is_some() {
            let mut source = File::open(&plain)
                .map_err(|error| BackupError::io(format!("cannot read {}", plain.display()), error))?;
            write_file(partial, settings, &mut source)?
        } else {
            File::open(&plain)
                .and_then(|file| file.sync_all())
                .map_err(|error| BackupError::io(format!("cannot sync {}", plain.display()), error))?;
            crate::encryption::file_digest(&plain)
                .map_err(|error| BackupError::io(format!("cannot read {}", plain.display()), error))?
        };
        Ok(Contents {
            server_version: server_version.clone(),
            tool: format!("VACUUM INTO (SQLite {server_version})"),
            migrations,
            row_counts,
            schema_digest,
            size,
            sha256,
        })
    })();
    drop(scratch);
    result
}

/// Opens a SQLite file outside any pool, for reading a copy.
pub(crate) fn open_sqlite(path: &std::path::Path) -> Result<DbConnection, BackupError> {
    let connection = SqliteConnection::establish(&path.to_string_lossy())
        .map_err(|error| BackupError::Tool(format!("cannot open {}: {error}", path.display())))?;
    Ok(DbConnection::Sqlite(connection))
}

/// Writes `input` to `path` (encrypted when recipients are set), syncs it, and returns the size
/// and SHA-256 of what is on disk.
fn write_file(
    path: &std::path::Path,
    settings: &BackupSettings,
    input: &mut impl io::Read,
) -> Result<(u64, String), BackupError> {
    let context = || format!("cannot write {}", path.display());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE)
        .open(path)
        .map_err(|error| BackupError::io(context(), error))?;
    let mut hashing = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    match &settings.recipients {
        Some(recipients) => {
            let mut encrypting = recipients.encrypt(&mut hashing)?;
            io::copy(input, &mut encrypting).map_err(|error| BackupError::io(context(), error))?;
            encrypting.finish().map_err(|error| BackupError::io(context(), error))?;
        }
        None => {
            io::copy(input, &mut hashing).map_err(|error| BackupError::io(context(), error))?;
        }
    }
    let (mut buffered, size, sha256) = hashing.finish();
    buffered.flush().map_err(|error| BackupError::io(context(), error))?;
    let file = buffered
        .into_inner()
        .map_err(|error| BackupError::io(context(), error.into_error()))?;
    file.sync_all().map_err(|error| BackupError::io(context(), error))?;
    Ok((size, sha256))
}

/// Copies a backup and its manifest to the object store, checks each copy's size and SHA-256,
/// and records the run.
pub fn copy_offsite(
    config: &crate::offsite::OffsiteConfig,
    settings: &BackupSettings,
    manifest: &Manifest,
) -> Result<Vec<crate::offsite::Uploaded>, BackupError> {
    let directory = BackupDirectory::new(&settings.directory);
    let start = Instant::now();
    let file = directory.file(&manifest.file.name);
    let manifest_file = directory.manifest_path(&manifest.id);
    let result = crate::offsite::upload(config, &[file.as_path(), manifest_file.as_path()]).map_err(BackupError::from);
    directory.append_record(&Record::finished(
        Kind::Offsite,
        Some(manifest.id.clone()),
        if result.is_ok() { Outcome::Ok } else { Outcome::Failed },
        start,
        Some(match &result {
            Ok(uploaded) => uploaded
                .iter()
                .map(|copy| copy.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            Err(error) => error.to_string(),
        }),
    ))?;
    if let Ok(uploaded) = &result {
        tracing::info!(backup = %manifest.id, copies = uploaded.len(), "copied off-site and checked");
    }
    result
}

/// The object keys of a backup's off-site copies.
#[must_use]
pub fn offsite_keys(config: &crate::offsite::OffsiteConfig, manifest: &Manifest) -> Vec<String> {
    let key = |name: String| {
        if config.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", config.prefix)
        }
    };
    vec![
        key(manifest.file.name.clone()),
        key(format!("{}.manifest.json", manifest.id)),
    ]
}

/// The step the start-up migration runner calls before it applies pending migrations
/// (`Migrator::before_applying`): a backup of the database, verified by restoring it. It opens a
/// pool of its own for `config`, only when migrations are pending. `dbctl migrate` installs it
/// unless told `--no-backup`; a service can install it the same way.
pub fn before_migrating(
    config: database::DatabaseConfig,
    settings: BackupSettings,
) -> impl Fn(&[migrator::migrations::MigrationInfo]) -> Result<String, String> + Send + Sync + 'static {
    move |pending| {
        let database = Database::connect(config.clone())
            .map_err(|error| format!("the backup before migrating could not connect: {error}"))?;
        let manifest =
            backup(&database, &settings).map_err(|error| format!("the backup before migrating failed: {error}"))?;
        let verification = crate::verify(&database, &settings, Some(&manifest.id)).map_err(|error| {
            format!(
                "the backup before migrating, {}, could not be verified: {error}",
                manifest.id
            )
        })?;
        if !verification.passed() {
            return Err(format!(
                "the backup before migrating, {}, does not match its manifest",
                manifest.id
            ));
        }
        Ok(format!(
            "backup {} taken and verified before applying {} migration(s)",
            manifest.id,
            pending.len()
        ))
    }
}
