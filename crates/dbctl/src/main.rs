//! `dbctl`: the operator CLI. Migrations (`migrate`, `status`, `baseline`, `accept-checksum`,
//! `clear-dirty`), backups proven by restore (`backup`, `verify`, `restore`, `backups`, `prune`)
//! and point-in-time recovery (`base-backup`, `restore --to-time`), on the database that
//! `DATABASE_URL` or the `DATABASE_*` variables configure (the embedded SQLite file when none is).
//!
//! Exit codes: 0 done (at head, for `status`); 1 failed; 2 bad usage; 3 `status`: migrations are
//! pending; 4 `status`: a migration is dirty, edited or unknown and needs an operator; 5 `verify`
//! (or `backup`'s verification): the backup does not match its manifest.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use database::{Database, DatabaseConfig};
use migrator::{Migrate as _, MigrationStatus};
use ops::offsite::OffsiteConfig;
use ops::retention::Candidate;
use ops::{BackupDirectory, BackupSettings};
use secrecy::SecretString;
use security::{OperatorContext, RoleNames, SecretDirectory, SetupOptions};
use serde::Serialize;
use serde_json::json;
use tracing_subscriber::EnvFilter;

mod health;
mod maintain;
mod metrics;

/// The process exit codes, as documented in the README and `--help`.
mod exit {
    pub const FAILED: u8 = 1;
    pub const PENDING: u8 = 3;
    pub const NEEDS_OPERATOR: u8 = 4;
    pub const BACKUP_MISMATCH: u8 = 5;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done (status: the database is at head)
  1  the command failed; the message on stderr says why
  2  bad usage
  3  status: migrations are pending (run `dbctl migrate`)
  4  status: a migration is dirty, edited or unknown and needs an operator
  5  verify (or backup's verification): the backup does not match its manifest";

/// Runs the database's operations: migrations, backups proven by restore, retention,
/// point-in-time recovery, roles and credentials, and the audit log's retention. Logs go to
/// stderr (`RUST_LOG`, default `info`), without colour when stderr is not a terminal; reports go
/// to stdout, as JSON with `--json`. Every command but `roles`, `health` and `metrics` connects
/// with `DATABASE_MIGRATION_URL` when it is set (the schema's owner), else with `DATABASE_URL`.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = after_help(&[Env::Database, Env::Log]))]
struct Cli {
    /// Print the report as one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Who runs the command, for the audit log (default: the USER of the environment).
    #[arg(long, global = true, env = "DBCTL_ACTOR", value_name = "NAME")]
    actor: Option<String>,
    /// The change request the command belongs to (a ticket, a pipeline run), for the audit log.
    #[arg(long, global = true, env = "DBCTL_CORRELATION_ID", value_name = "ID")]
    correlation_id: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations: a release step for deploy pipelines. When migrations are
    /// pending, a backup of the database is taken (and verified) first, unless --no-backup.
    #[command(after_long_help = after_help(&[Env::Database, Env::Migration, Env::Backup, Env::Log]))]
    Migrate {
        /// Apply the migrations without taking a backup first.
        #[arg(long)]
        no_backup: bool,
    },
    /// Print the migration status. Exit code 0 at head, 3 when migrations are pending, 4 when
    /// one needs an operator.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    Status,
    /// Record the migration history of a database built without it, after verifying that its
    /// schema is exactly what the migrations create.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    Baseline,
    /// Accept an intended edit of an applied migration by recording its current checksums.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    AcceptChecksum {
        /// The migration's version or folder name.
        migration: String,
    },
    /// Clear the dirty marker of a migration that failed outside a transaction, after repairing
    /// the schema by hand; the migration then runs again.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    ClearDirty {
        /// The migration's version or folder name.
        migration: String,
    },
    /// Take a backup (the custom format of `pg_dump`, or `VACUUM INTO` on SQLite) with its manifest, then
    /// verify it by restoring it, and copy both off-site when `BACKUP_S3_BUCKET` is set.
    #[command(after_long_help = after_help(&[Env::Database, Env::Backup, Env::Offsite, Env::Log]))]
    Backup {
        /// Do not restore the new backup to verify it.
        #[arg(long)]
        no_verify: bool,
        /// Do not copy the backup off-site even when `BACKUP_S3_BUCKET` is set.
        #[arg(long)]
        no_offsite: bool,
    },
    /// Restore a backup into a scratch database (or a temporary SQLite file) and check it
    /// against its manifest: row counts, schema digest, migration history, index integrity.
    #[command(after_long_help = after_help(&[Env::Database, Env::Backup, Env::Log]))]
    Verify {
        /// The backup's id (default: the newest).
        backup: Option<String>,
    },
    /// Restore a backup into the configured database, or prepare a point-in-time recovery
    /// from a base backup and a WAL archive (--to-time).
    #[command(after_long_help = after_help(&[Env::Database, Env::Backup, Env::Log]))]
    Restore(RestoreArgs),
    /// List the backups, with their last verification.
    #[command(after_long_help = after_help(&[Env::BackupDir, Env::Log]))]
    Backups,
    /// Remove backups that the retention policy (7 daily, 4 weekly, 12 monthly by default) no
    /// longer keeps, with their off-site copies when `BACKUP_S3_BUCKET` is set; the newest
    /// verified backup is always kept.
    #[command(after_long_help = after_help(&[Env::Backup, Env::Offsite, Env::Log]))]
    Prune {
        /// List what would be removed and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take a base backup for point-in-time recovery (`pg_basebackup`, checked by
    /// `pg_verifybackup`) into DIRECTORY, which must not exist or be empty.
    #[command(after_long_help = after_help(&[Env::Database, Env::PgBin, Env::Log]))]
    BaseBackup {
        /// Where the base backup goes.
        directory: PathBuf,
    },
    /// PostgreSQL roles with least privilege, and the rotation of the application's
    /// credential. Connects with `DATABASE_URL` as a superuser, or a role with `CREATEROLE` and `CREATEDB` that owns the database.
    #[command(subcommand)]
    Roles(RolesCommand),
    /// The audit log's retention.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Routine upkeep, for a schedule: the retention purge of soft-deleted users (audited; only
    /// with --retention-days or `USER_RETENTION_DAYS`), fresh planner statistics (ANALYZE), and on
    /// SQLite PRAGMA optimize and the incremental vacuum. Exit code 6: another maintain is
    /// running on the database (PostgreSQL), nothing was done.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    Maintain(maintain::MaintainArgs),
    /// Health checks with warning and critical thresholds (connections, long-running and slow
    /// statements, replication lag, growth, backups, cache hits, indexes, wraparound, idle
    /// transactions, lock waits, migrations; on SQLite integrity, WAL size, free pages), as
    /// Nagios text with performance data or health JSON. Exit codes 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN, and no other.
    #[command(after_long_help = health::after_help())]
    Health(health::HealthArgs),
    /// The health checks (status, observed value and thresholds of each) and the pool and
    /// statement metrics of this run, once, in the Prometheus text format: for a script or
    /// the textfile collector of the Prometheus node exporter. Takes health's options. Exit code 0 when printed,
    /// whatever the checks found; 3 on a bad configuration or usage.
    #[command(after_long_help = health::after_help())]
    Metrics(health::HealthArgs),
}

#[derive(Debug, Subcommand)]
enum RolesCommand {
    /// Create (or bring back to least privilege) the owner, application, login and read-only
    /// roles of the database, its grants and default privileges; idempotent, in one
    /// transaction, audited.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    Setup {
        /// The roles' prefix: `<prefix>_owner`, `<prefix>_app`, `<prefix>_app_blue`,
        /// `<prefix>_app_green`, `<prefix>_readonly`, `<prefix>_monitor` (default: the
        /// database's name).
        #[arg(long)]
        prefix: Option<String>,
        /// Set the owner's password to the contents of this file.
        #[arg(long, value_name = "FILE")]
        owner_password_file: Option<PathBuf>,
        /// Set the read-only role's password to the contents of this file.
        #[arg(long, value_name = "FILE")]
        readonly_password_file: Option<PathBuf>,
        /// Set the monitoring role's password to the contents of this file.
        #[arg(long, value_name = "FILE")]
        monitor_password_file: Option<PathBuf>,
    },
    /// Rotate the application's credential: a new password on the idle login, the secret
    /// directory switched to it, then (after the grace period) the other login's password
    /// removed. Point `DATABASE_USER_FILE` at `DIR/user` and `DATABASE_PASSWORD_FILE` at
    /// `DIR/password`.
    #[command(after_long_help = after_help(&[Env::Database, Env::Log]))]
    Rotate {
        /// The secret directory the application reads.
        #[arg(long, value_name = "DIR")]
        secret_dir: PathBuf,
        /// The roles' prefix (default: the database's name).
        #[arg(long)]
        prefix: Option<String>,
        /// How long connections that read the old secret just before the switch have to log in
        /// before the old login's password is removed.
        #[arg(long, value_name = "MS", default_value_t = 5000)]
        grace_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Remove audit entries older than the retention (the only way entries leave the log; it
    /// is audited itself). Run as the table's owner.
    #[command(after_long_help = after_help(&[Env::Database, Env::Audit, Env::Log]))]
    Purge {
        /// Keep this many days of entries (at least 1).
        #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than_days: u32,
    },
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The backup's id (default: the newest).
    #[arg(conflicts_with = "to_time")]
    backup: Option<String>,
    /// Restore into a target that holds tables: on PostgreSQL the backup's objects are dropped
    /// and recreated (objects the backup lacks stay; recreate the database for an exact copy),
    /// on SQLite the file is replaced whole.
    #[arg(long, conflicts_with = "to_time")]
    replace: bool,
    /// Prepare a point-in-time recovery to this moment (RFC 3339, for example
    /// 2026-12-01T17:30:00+00:00) instead of restoring a backup.
    #[arg(long, value_name = "TIME", requires_all = ["base_backup", "wal_archive", "data_dir"])]
    to_time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The base backup taken by `dbctl base-backup` (with --to-time).
    #[arg(long, value_name = "DIR")]
    base_backup: Option<PathBuf>,
    /// The WAL archive that `archive_command` fills (with --to-time).
    #[arg(long, value_name = "DIR")]
    wal_archive: Option<PathBuf>,
    /// The new data directory to recover into; it must not exist or be empty (with --to-time).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The port the recovered server listens on, so that it does not collide with the server
    /// the base backup came from (with --to-time; default: the backup's own).
    #[arg(long, value_name = "PORT", requires = "to_time")]
    port: Option<u16>,
}

/// Groups of environment variables, for each command's `--help`.
#[derive(Debug, Clone, Copy)]
enum Env {
    Database,
    Migration,
    Backup,
    Offsite,
    PgBin,
    BackupDir,
    Audit,
    Log,
}

/// The runner's settings (`DATABASE_MIGRATION_LOCK_WAIT_MS` …), as opposed to the migration
/// connection (`DATABASE_MIGRATION_URL`, its password file), which every command may use.
fn is_migration_setting(name: &str) -> bool {
    name.starts_with("DATABASE_MIGRATION_") && name.ends_with("_MS")
}

fn after_help(groups: &[Env]) -> String {
    let mut text = String::from("Environment:\n");
    for group in groups {
        let variables: Vec<&str> = match group {
            Env::Database => database::config::VARIABLES
                .iter()
                .copied()
                .filter(|name| !is_migration_setting(name))
                .collect(),
            Env::Migration => database::config::VARIABLES
                .iter()
                .copied()
                .filter(|name| is_migration_setting(name))
                .collect(),
            Env::Backup => ops::settings::VARIABLES.to_vec(),
            Env::Offsite => OffsiteConfig::VARIABLES.to_vec(),
            Env::PgBin => vec!["BACKUP_PG_BIN_DIR"],
            Env::BackupDir => vec!["BACKUP_DIR"],
            Env::Audit => vec!["AUDIT_RETENTION_DAYS (default 400)"],
            Env::Log => vec![
                "RUST_LOG (default info; for example RUST_LOG=debug or RUST_LOG=ops=debug)",
                "DBCTL_ACTOR, DBCTL_CORRELATION_ID (who runs the command and why, for the audit log)",
            ],
        };
        for variable in variables {
            text.push_str("  ");
            text.push_str(variable);
            text.push('\n');
        }
    }
    text.push('\n');
    text.push_str(EXIT_CODES);
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stderr_is_terminal = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal)
        .init();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // The cause chain on one line; libpq's multi-line messages are joined too.
            let message = format!("{error:#}");
            let message: Vec<&str> = message.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
            let message = message.join(" ");
            if cli.json {
                // A script reading stdout gets a JSON document either way.
                let _ = writeln!(std::io::stdout(), "{}", json!({ "error": message }));
            }
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// Prints `value` as JSON with `--json`, or the human form otherwise.
fn report(
    json: bool,
    value: &impl Serialize,
    human: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
    } else {
        human(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// The database as the operator commands reach it: over `DATABASE_MIGRATION_URL` when it is set
/// (the schema's owner), else `DATABASE_URL`.
fn open() -> anyhow::Result<Database> {
    connect(DatabaseConfig::from_env()?.for_migrations())
}

fn connect(config: DatabaseConfig) -> anyhow::Result<Database> {
    let database = Database::connect(config)?;
    let target = &database.config().target;
    tracing::info!(database = %target.redacted(), backend = %target.backend(), source = target.source(), "connected");
    Ok(database)
}

/// Who runs the command: `--actor`, else `DBCTL_ACTOR`, else the environment's `USER`.
fn operator(cli: &Cli) -> anyhow::Result<OperatorContext> {
    let name = cli
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|name| !name.is_empty())
        .context("name the operator with --actor or DBCTL_ACTOR (USER is not set)")?;
    let context = OperatorContext::operator(&name)?;
    Ok(match &cli.correlation_id {
        Some(id) => context.with_correlation_id(id)?,
        None => context,
    })
}

/// The role names for `prefix`, or for the database's own name.
fn role_names(database: &Database, prefix: Option<&str>) -> anyhow::Result<RoleNames> {
    let prefix = if let Some(prefix) = prefix {
        prefix.to_owned()
    } else {
        let mut connection = database.get()?;
        security::database_name(&mut connection)?
    };
    RoleNames::with_prefix(&prefix).with_context(|| {
        format!("the roles are named after the database ({prefix:?}): give a valid prefix with --prefix")
    })
}

fn read_password_file(path: Option<&PathBuf>, flag: &'static str) -> anyhow::Result<Option<SecretString>> {
    // The rules of DATABASE_PASSWORD_FILE: the last line break dropped, nothing else.
    Ok(path
        .map(|path| database::config::read_secret_file(path, flag))
        .transpose()?
        .map(SecretString::from))
}

fn roles(cli: &Cli, command: &RolesCommand) -> anyhow::Result<u8> {
    // An administrator's connection: DATABASE_URL, never the migration connection.
    let database = connect(DatabaseConfig::from_env()?)?;
    let context = operator(cli)?;
    match command {
        RolesCommand::Setup {
            prefix,
            owner_password_file,
            readonly_password_file,
            monitor_password_file,
        } => {
            let names = role_names(&database, prefix.as_deref())?;
            let options = SetupOptions {
                owner_password: read_password_file(owner_password_file.as_ref(), "--owner-password-file")?,
                readonly_password: read_password_file(readonly_password_file.as_ref(), "--readonly-password-file")?,
                monitor_password: read_password_file(monitor_password_file.as_ref(), "--monitor-password-file")?,
                context,
            };
            let report = security::setup_roles(&mut *database.get()?, &names, &options)?;
            self::report(cli.json, &report, |out| {
                writeln!(out, "roles of database {}:", report.database)?;
                writeln!(out, "  owner:     {} (owns the schema, runs migrations)", names.owner)?;
                writeln!(out, "  app:       {} (DML only; cannot log in)", names.app)?;
                writeln!(
                    out,
                    "  logins:    {}, {} (members of {}, alternated by `dbctl roles rotate`)",
                    names.app_logins[0], names.app_logins[1], names.app
                )?;
                writeln!(out, "  read-only: {}", names.readonly)?;
                writeln!(
                    out,
                    "  monitor:   {} (pg_monitor and the migration history; no table data)",
                    names.monitor
                )?;
                writeln!(out, "created: {}", list(&report.created))?;
                writeln!(out, "changed: {}", list(&report.changed))?;
                for note in &report.notes {
                    writeln!(out, "note:    {note}")?;
                }
                writeln!(
                    out,
                    "audited: {}",
                    if report.audited {
                        "yes"
                    } else {
                        "no (no audit_log yet: migrate, then run again)"
                    }
                )
            })?;
        }
        RolesCommand::Rotate {
            secret_dir,
            prefix,
            grace_ms,
        } => {
            let names = role_names(&database, prefix.as_deref())?;
            let secrets = SecretDirectory::new(secret_dir);
            let report = security::rotate_credentials(
                &mut *database.get()?,
                &names,
                &secrets,
                std::time::Duration::from_millis(*grace_ms),
                &context,
            )?;
            self::report(cli.json, &report, |out| {
                writeln!(
                    out,
                    "the application now logs in as {} (secret in {})",
                    report.current,
                    report.secret_directory.display()
                )?;
                match &report.expired {
                    Some(expired) => writeln!(out, "{expired} lost its password after the grace period"),
                    None => writeln!(out, "first credential: nothing to expire"),
                }
            })?;
        }
    }
    Ok(0)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        items.join("; ")
    }
}

fn audit(cli: &Cli, command: &AuditCommand) -> anyhow::Result<u8> {
    match command {
        AuditCommand::Purge { older_than_days } => {
            let database = open()?;
            let before = chrono::Utc::now() - chrono::TimeDelta::days(i64::from(*older_than_days));
            let report = security::purge_audit_log(&mut *database.get()?, before, &operator(cli)?)?;
            self::report(cli.json, &report, |out| {
                writeln!(
                    out,
                    "removed {} audit entries from before {}",
                    report.purged,
                    report.before.to_rfc3339()
                )
            })?;
        }
    }
    Ok(0)
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Roles(command) => roles(cli, command),
        Command::Audit(command) => audit(cli, command),
        Command::Maintain(arguments) => maintain::run(cli, arguments),
        Command::Health(arguments) => Ok(health::run(cli.json, arguments)),
        Command::Metrics(arguments) => Ok(metrics::run(arguments)),
        Command::Migrate { no_backup } => migrate(cli.json, *no_backup),
        Command::Status => status(cli.json),
        Command::Baseline => {
            let database = open()?;
            let recorded = database.migrator().baseline(&mut *database.get()?)?;
            report(cli.json, &json!({ "recorded": recorded }), |out| {
                writeln!(
                    out,
                    "baseline: recorded {} migrations after verifying the schema",
                    recorded.len()
                )
            })?;
            Ok(0)
        }
        Command::AcceptChecksum { migration } => {
            let database = open()?;
            database.migrator().accept_checksum(&mut *database.get()?, migration)?;
            report(cli.json, &json!({ "accepted": migration }), |out| {
                writeln!(out, "accepted the edited checksums of {migration}")
            })?;
            Ok(0)
        }
        Command::ClearDirty { migration } => {
            let database = open()?;
            database.migrator().clear_dirty(&mut *database.get()?, migration)?;
            report(cli.json, &json!({ "cleared": migration }), |out| {
                writeln!(out, "cleared the dirty marker of {migration}; it will run again")
            })?;
            Ok(0)
        }
        Command::Backup { no_verify, no_offsite } => backup(cli.json, *no_verify, *no_offsite),
        Command::Verify { backup } => {
            let database = open()?;
            let settings = BackupSettings::from_env()?;
            let verification = ops::verify(&database, &settings, backup.as_deref())?;
            report(cli.json, &verification, |out| {
                writeln!(out, "backup {} ({} ms)", verification.backup, verification.duration_ms)?;
                write!(out, "{verification}")
            })?;
            Ok(if verification.passed() {
                0
            } else {
                exit::BACKUP_MISMATCH
            })
        }
        Command::Restore(arguments) => restore(cli.json, arguments),
        Command::Backups => backups(cli.json),
        Command::Prune { dry_run } => prune(cli.json, *dry_run),
        Command::BaseBackup { directory } => {
            let config = DatabaseConfig::from_env()?.for_migrations();
            let settings = BackupSettings::from_env()?;
            let base = ops::pitr::base_backup(
                settings.pg_bin_dir.as_deref(),
                config.target.connection_string()?.expose(),
                directory,
            )?;
            let value = json!({
                "path": base.path,
                "size_bytes": base.size_bytes,
                "duration_ms": base.duration.as_millis(),
                "start_time": base.start_time_label,
            });
            report(cli.json, &value, |out| {
                writeln!(
                    out,
                    "base backup in {} ({} bytes, {} ms), started {}",
                    base.path.display(),
                    base.size_bytes,
                    base.duration.as_millis(),
                    base.start_time_label
                )
            })?;
            Ok(0)
        }
    }
}

fn status_code(status: &MigrationStatus) -> u8 {
    if !status.dirty.is_empty() || !status.checksum_mismatches.is_empty() || !status.unknown.is_empty() {
        exit::NEEDS_OPERATOR
    } else if status.is_at_head() {
        0
    } else {
        exit::PENDING
    }
}

fn status(json: bool) -> anyhow::Result<u8> {
    let database = open()?;
    let status = database.migrator().status(&mut *database.get()?)?;
    report(
        json,
        &json!({ "at_head": status.is_at_head(), "status": status }),
        |out| print_status(out, &status),
    )?;
    Ok(status_code(&status))
}

fn migrate(json: bool, no_backup: bool) -> anyhow::Result<u8> {
    let database = open()?;
    let mut migrator = database.migrator();
    if !no_backup {
        // Called by the runner holding its lock, only when migrations are pending on a database
        // that has applied ones: one backup per release, however many processes run this.
        migrator = migrator.before_applying(ops::backup::before_migrating(
            database.config().clone(),
            BackupSettings::from_env()?,
        ));
    }
    let report_value = migrator.run(&mut *database.get()?)?;
    let backup = report_value.before_applying.clone();
    let value = json!({ "backup": backup, "report": report_value });
    report(json, &value, |out| write!(out, "{report_value}"))?;
    Ok(0)
}

fn backup(json: bool, no_verify: bool, no_offsite: bool) -> anyhow::Result<u8> {
    let database = open()?;
    let settings = BackupSettings::from_env()?;
    let offsite = if no_offsite { None } else { OffsiteConfig::from_env()? };
    let manifest = ops::backup(&database, &settings)?;
    let verification = if no_verify {
        None
    } else {
        Some(ops::verify(&database, &settings, Some(&manifest.id))?)
    };
    // A backup that failed its verification is not copied off-site.
    let verified = verification.as_ref().is_none_or(ops::Verification::passed);
    let offsite_result = match &offsite {
        Some(config) if verified => Some(ops::backup::copy_offsite(config, &settings, &manifest)),
        _ => None,
    };
    let (uploaded, offsite_error) = match offsite_result {
        Some(Ok(uploaded)) => (Some(uploaded), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    let value = json!({
        "manifest": manifest,
        "verification": verification,
        "offsite": uploaded,
        "offsite_error": offsite_error.as_ref().map(ToString::to_string),
    });
    report(json, &value, |out| {
        writeln!(
            out,
            "backup {} ({} bytes{}, {} ms) in {}",
            manifest.id,
            manifest.file.size,
            if manifest.encryption.is_some() {
                ", encrypted with age"
            } else {
                ""
            },
            manifest.duration_ms,
            settings.directory.display()
        )?;
        if let Some(verification) = &verification {
            writeln!(out, "verified by restore ({} ms):", verification.duration_ms)?;
            write!(out, "{verification}")?;
        }
        if let Some(uploaded) = &uploaded {
            for copy in uploaded {
                writeln!(out, "off-site copy {} ({} bytes, sha256 checked)", copy.key, copy.size)?;
            }
        }
        Ok(())
    })?;
    if let Some(error) = offsite_error {
        // The report above (with `offsite_error` in its JSON) is the one document on stdout.
        let _ = writeln!(
            std::io::stderr(),
            "error: backup {} was taken{}, but its off-site copy failed: {error}",
            manifest.id,
            if verification.is_some() { " and verified" } else { "" }
        );
        return Ok(exit::FAILED);
    }
    Ok(match verification {
        Some(verification) if !verification.passed() => exit::BACKUP_MISMATCH,
        _ => 0,
    })
}

fn restore(json: bool, arguments: &RestoreArgs) -> anyhow::Result<u8> {
    if let Some(target_time) = arguments.to_time {
        let plan = ops::pitr::RecoveryPlan {
            base_backup: arguments.base_backup.clone().context("--to-time needs --base-backup")?,
            wal_archive: arguments.wal_archive.clone().context("--to-time needs --wal-archive")?,
            data_dir: arguments.data_dir.clone().context("--to-time needs --data-dir")?,
            target_time,
            port: arguments.port,
        };
        let prepared = ops::pitr::prepare_recovery(&plan)?;
        let value = json!({
            "data_dir": prepared.data_dir,
            "copied_bytes": prepared.copied_bytes,
            "settings": prepared.settings,
            "next_steps": prepared.next_steps.iter().map(ops::pitr::NextStep::command_line).collect::<Vec<_>>(),
            "notes": prepared.notes,
        });
        report(json, &value, |out| {
            writeln!(
                out,
                "prepared {} to recover to {target_time} ({} bytes copied); settings:",
                prepared.data_dir.display(),
                prepared.copied_bytes
            )?;
            for setting in &prepared.settings {
                writeln!(out, "  {setting}")?;
            }
            writeln!(out, "next:")?;
            for step in &prepared.next_steps {
                writeln!(out, "  {step}")?;
            }
            for note in &prepared.notes {
                writeln!(out, "note: {note}")?;
            }
            Ok(())
        })?;
        return Ok(0);
    }
    let config = DatabaseConfig::from_env()?.for_migrations();
    let settings = BackupSettings::from_env()?;
    let restored = ops::restore(&config, &settings, arguments.backup.as_deref(), arguments.replace)?;
    report(json, &restored, |out| {
        writeln!(
            out,
            "restored backup {} into {}{} ({} ms)",
            restored.backup,
            restored.target,
            if restored.replaced { ", over its tables" } else { "" },
            restored.duration_ms
        )?;
        print_status(out, &restored.status)
    })?;
    Ok(0)
}

fn backups(json: bool) -> anyhow::Result<u8> {
    let settings = BackupSettings::from_env()?;
    let directory = BackupDirectory::new(&settings.directory);
    let manifests = directory.list()?;
    let records = directory.records()?;
    let last_verification = |id: &str| {
        records
            .iter()
            .rev()
            .find(|record| record.kind == ops::records::Kind::Verify && record.backup.as_deref() == Some(id))
    };
    let rows: Vec<serde_json::Value> = manifests
        .iter()
        .map(|manifest| {
            json!({
                "id": manifest.id,
                "taken_at": manifest.taken_at,
                "backend": manifest.backend,
                "size": manifest.file.size,
                "encrypted": manifest.encryption.is_some(),
                "rows": manifest.row_counts.values().sum::<u64>(),
                "head": manifest.migrations.last(),
                "last_verification": last_verification(&manifest.id),
            })
        })
        .collect();
    report(
        json,
        &json!({ "directory": settings.directory, "backups": rows }),
        |out| {
            writeln!(out, "{} backups in {}", manifests.len(), settings.directory.display())?;
            for manifest in &manifests {
                let verified = last_verification(&manifest.id).map_or_else(
                    || "never verified".to_owned(),
                    |record| {
                        let outcome = serde_json::to_value(record.outcome).ok();
                        let outcome = outcome
                            .as_ref()
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("unknown");
                        format!("verify {outcome} at {}", record.at.format("%Y-%m-%d %H:%M"))
                    },
                );
                writeln!(
                    out,
                    "{}  {:<8} {:>12} bytes{}  {}",
                    manifest.id,
                    manifest.backend,
                    manifest.file.size,
                    if manifest.encryption.is_some() { " age" } else { "    " },
                    verified
                )?;
            }
            Ok(())
        },
    )?;
    Ok(0)
}

fn prune(json: bool, dry_run: bool) -> anyhow::Result<u8> {
    let settings = BackupSettings::from_env()?;
    let offsite = OffsiteConfig::from_env()?;
    let directory = BackupDirectory::new(&settings.directory);
    let start = std::time::Instant::now();
    let manifests = directory.list()?;
    // Only a verified backup whose file is still there, at its size, can be the safety net.
    let verified: std::collections::BTreeSet<String> = directory
        .verified()?
        .into_iter()
        .filter(|id| {
            manifests.iter().any(|manifest| {
                &manifest.id == id
                    && std::fs::metadata(directory.file(&manifest.file.name))
                        .is_ok_and(|metadata| metadata.len() == manifest.file.size)
            })
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = manifests
        .iter()
        .map(|manifest| Candidate {
            id: &manifest.id,
            taken_at: manifest.taken_at,
            verified: verified.contains(&manifest.id),
        })
        .collect();
    let plan = ops::retention::plan(&candidates, settings.retention);
    let removed: Vec<&ops::retention::Decision> = plan.iter().filter(|decision| !decision.keep).collect();
    if !dry_run {
        for decision in &removed {
            let manifest = manifests
                .iter()
                .find(|manifest| manifest.id == decision.id)
                .expect("every decision is about a listed backup");
            directory.remove(manifest)?;
            if let Some(config) = &offsite {
                ops::offsite::delete(config, &ops::backup::offsite_keys(config, manifest))?;
            }
        }
        directory.append_record(&ops::records::Record::finished(
            ops::records::Kind::Prune,
            None,
            ops::records::Outcome::Ok,
            start,
            Some(format!("removed {} of {} backups", removed.len(), plan.len())),
        ))?;
    }
    let value = json!({ "dry_run": dry_run, "policy": settings.retention, "decisions": plan });
    report(json, &value, |out| {
        writeln!(
            out,
            "{} {} of {} backups (keep {} daily, {} weekly, {} monthly)",
            if dry_run { "would remove" } else { "removed" },
            removed.len(),
            plan.len(),
            settings.retention.daily,
            settings.retention.weekly,
            settings.retention.monthly
        )?;
        for decision in &plan {
            let reasons: Vec<String> = decision.reasons.iter().map(ToString::to_string).collect();
            writeln!(
                out,
                "{}  {}  {}",
                decision.id,
                if decision.keep { "keep  " } else { "remove" },
                reasons.join(", ")
            )?;
        }
        Ok(())
    })?;
    Ok(0)
}

fn print_status(out: &mut dyn Write, status: &MigrationStatus) -> std::io::Result<()> {
    let names = |list: &[migrator::migrations::MigrationInfo]| {
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    writeln!(out, "at head:         {}", status.is_at_head())?;
    writeln!(out, "applied:         {}", status.applied.len())?;
    writeln!(out, "pending:         {}", names(&status.pending))?;
    writeln!(out, "dirty:           {}", names(&status.dirty))?;
    let edited: Vec<String> = status
        .checksum_mismatches
        .iter()
        .map(|mismatch| format!("{} ({})", mismatch.migration, mismatch.file))
        .collect();
    writeln!(
        out,
        "edited:          {}",
        if edited.is_empty() {
            "none".to_owned()
        } else {
            edited.join(", ")
        }
    )?;
    writeln!(out, "no checksum yet: {}", names(&status.unrecorded))?;
    if !status.unknown.is_empty() {
        writeln!(
            out,
            "unknown:         {} (the database is newer than this code)",
            status.unknown.join(", ")
        )?;
    }
    Ok(())
}
