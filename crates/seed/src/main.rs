//! `seed`: brings the configured database to the current schema, then fills it with realistic,
//! reproducible data and prints a summary.
//!
//! With nothing configured it creates the embedded SQLite database; `DATABASE_URL` or the
//! `DATABASE_*` variables point it at PostgreSQL. The operator flags (`--migrate-only`,
//! `--status`, `--baseline`, `--accept-checksum`, `--clear-dirty`) run the start-up migration
//! runner and its operations and stop there, without generating data.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use repo_diesel::config::DEFAULT_SQLITE_PATH;
use repo_diesel::migrator::MigrationStatus;
use repo_diesel::{Database, DatabaseConfig};
use seed::{Clock, SeedConfig};
use tracing_subscriber::EnvFilter;

/// The flags that run the migration runner's operations and stop before generating data.
const OPERATOR_FLAGS: [&str; 5] = ["migrate_only", "status", "baseline", "accept_checksum", "clear_dirty"];

/// Migrates the configured database (the embedded SQLite file when none is configured) and seeds
/// it with realistic data: users with shifts on working days, absences, deactivated and
/// soft-deleted users, and a few open check-ins today. Dates are relative to today (UTC).
#[derive(Debug, Parser)]
#[command(version, about)]
#[expect(clippy::struct_excessive_bools, reason = "command-line flags, parsed by clap")]
struct Options {
    /// How many seed users the database should have; a re-run adds only the missing ones.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        conflicts_with_all = OPERATOR_FLAGS,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=i64::from(seed::MAX_USERS)),
    )]
    users: i64,
    /// Days of attendance history before today.
    #[arg(
        long,
        value_name = "D",
        default_value_t = 90,
        conflicts_with_all = OPERATOR_FLAGS,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=i64::from(seed::MAX_DAYS)),
    )]
    days: i64,
    /// The random seed: the same seed (on the same date) gives the same data.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 42,
        allow_negative_numbers = true,
        conflicts_with_all = OPERATOR_FLAGS
    )]
    seed: u64,
    /// Delete every seed-made user (emails at seed<S>.example, attendance included) and seed
    /// again, in one transaction. Only users whose email is exactly one the generator makes are removed, with all their attendance (also records the application added for them).
    #[arg(long, conflicts_with_all = OPERATOR_FLAGS)]
    reset: bool,
    /// Generate the data and print what would be inserted, without opening, creating,
    /// migrating or writing any database.
    #[arg(long, conflicts_with_all = ["migrate_only", "status", "baseline", "accept_checksum", "clear_dirty", "reset"])]
    dry_run: bool,
    /// Apply pending migrations and exit: a release step for deploy pipelines.
    #[arg(long)]
    migrate_only: bool,
    /// Print the migration status and exit; the exit code is 0 only at head.
    #[arg(long, conflicts_with_all = ["migrate_only", "baseline", "accept_checksum", "clear_dirty"])]
    status: bool,
    /// Record the migration history of a database built without it, after verifying that its
    /// schema is exactly what the migrations create.
    #[arg(long, conflicts_with_all = ["accept_checksum", "clear_dirty"])]
    baseline: bool,
    /// Accept an intended edit of an applied migration by recording its current checksums.
    #[arg(long, value_name = "MIGRATION")]
    accept_checksum: Option<String>,
    /// Clear the dirty marker of a migration that failed outside a transaction, after repairing
    /// the schema by hand; the migration then runs again.
    #[arg(long, value_name = "MIGRATION")]
    clear_dirty: Option<String>,
}

fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match run(&options) {
        Ok(code) => code,
        Err(error) => {
            // The cause chain on one line, without a backtrace even when RUST_BACKTRACE is set;
            // libpq's multi-line messages are joined too.
            let message = format!("{error:#}");
            let message: Vec<&str> = message.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
            let _ = writeln!(std::io::stderr(), "error: {}", message.join(" "));
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> anyhow::Result<ExitCode> {
    // Sizes first: bad input stops the run before anything is opened or created.
    let seed_config = SeedConfig::new(options.users, options.days, options.seed, options.reset)?;
    if options.dry_run {
        let report = seed::dry_run(&seed_config, Clock::system(), seed::progress::for_stderr().as_mut());
        write!(std::io::stdout().lock(), "{report}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = DatabaseConfig::from_env()?;
    if config.target.source() == "default" {
        // The embedded default lives under data/, which a fresh clone does not have yet.
        let directory = Path::new(DEFAULT_SQLITE_PATH).parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(directory).with_context(|| format!("cannot create {}", directory.display()))?;
    }
    let database = Database::connect(config)?;
    let migrator = database.migrator();
    let mut connection = database.get()?;
    let mut out = std::io::stdout().lock();
    let target = &database.config().target;
    writeln!(
        out,
        "database:        {} ({}, from {})",
        target.redacted(),
        target.backend(),
        target.source()
    )?;

    if options.status {
        let status = migrator.status(&mut connection)?;
        print_status(&mut out, &status)?;
        return Ok(if status.is_at_head() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Some(migration) = &options.accept_checksum {
        migrator.accept_checksum(&mut connection, migration)?;
        writeln!(out, "accepted the edited checksums of {migration}")?;
    }
    if let Some(migration) = &options.clear_dirty {
        migrator.clear_dirty(&mut connection, migration)?;
        writeln!(out, "cleared the dirty marker of {migration}; it will run again")?;
    }
    if options.baseline {
        let recorded = migrator.baseline(&mut connection)?;
        writeln!(
            out,
            "baseline:        recorded {} migrations after verifying the schema",
            recorded.len()
        )?;
    }

    let report = migrator.run(&mut connection)?;
    writeln!(out, "applied now:     {}", report.applied.len())?;
    for applied in &report.applied {
        writeln!(
            out,
            "                 {} ({} ms)",
            applied.migration,
            applied.duration.as_millis()
        )?;
    }
    if !report.checksums_recorded.is_empty() {
        writeln!(
            out,
            "checksums:       recorded for {} migrations applied outside the runner",
            report.checksums_recorded.len()
        )?;
    }
    writeln!(
        out,
        "schema version:  {}",
        report.version.map_or_else(
            || "none".to_owned(),
            |migration| format!("{} ({})", migration.version, migration.name)
        )
    )?;
    let operator_operation = options.baseline || options.accept_checksum.is_some() || options.clear_dirty.is_some();
    if options.migrate_only || operator_operation {
        return Ok(ExitCode::SUCCESS);
    }

    // Hashed once per run (argon2id is slow on purpose); every seed user gets this hash.
    let password_hash = test_fixtures::default_password_hash();
    writeln!(
        out,
        "password:        every seed user signs in with \"{}\"",
        test_fixtures::DEFAULT_PASSWORD
    )?;
    out.flush()?;
    let report = seed::seed_database(
        &mut connection,
        &seed_config,
        Clock::system(),
        password_hash.as_phc(),
        seed::progress::for_stderr().as_mut(),
    )
    .context("seeding failed and its transaction was rolled back: no seed data was written (migrations applied before it stay)")?;
    write!(out, "{report}")?;
    Ok(ExitCode::SUCCESS)
}

fn print_status(out: &mut impl std::io::Write, status: &MigrationStatus) -> std::io::Result<()> {
    let names = |list: &[repo_diesel::migrations::MigrationInfo]| {
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
