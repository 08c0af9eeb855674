//! `seed`: brings the configured database to the current schema, then fills it with realistic,
//! reproducible data and prints a summary.
//!
//! With nothing configured it creates the embedded SQLite database; `DATABASE_URL` or the
//! `DATABASE_*` variables point it at PostgreSQL. Like any service it runs the start-up migration
//! runner first; the runner's operator commands live on the operator binary, `dbctl`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use database::{Database, DatabaseConfig};
use migrator::Migrate as _;
use seed::{Clock, SeedConfig};
use tracing_subscriber::EnvFilter;

/// Migrates the configured database (the embedded SQLite file when none is configured) and seeds
/// it with realistic data: users with shifts on working days, absences, deactivated and
/// soft-deleted users, and a few open check-ins today. Dates are relative to today (UTC).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Options {
    /// How many seed users the database should have; a re-run adds only the missing ones.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=i64::from(seed::MAX_USERS)),
    )]
    users: i64,
    /// Days of attendance history before today.
    #[arg(
        long,
        value_name = "D",
        default_value_t = 90,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=i64::from(seed::MAX_DAYS)),
    )]
    days: i64,
    /// The random seed: the same seed (on the same date) gives the same data.
    #[arg(long, value_name = "S", default_value_t = 42, allow_negative_numbers = true)]
    seed: u64,
    /// Delete every seed-made user (emails at seed<S>.example, attendance included) and seed
    /// again, in one transaction. Only users whose email is exactly one the generator makes are removed, with all their attendance (also records the application added for them).
    #[arg(long)]
    reset: bool,
    /// Generate the data and print what would be inserted, without opening, creating,
    /// migrating or writing any database.
    #[arg(long, conflicts_with = "reset")]
    dry_run: bool,
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
    let database = Database::connect(config)?;
    let mut out = std::io::stdout().lock();
    let target = &database.config().target;
    writeln!(
        out,
        "database:        {} ({}, from {})",
        target.redacted(),
        target.backend(),
        target.source()
    )?;

    let report = database.migrate()?;
    write!(out, "{report}")?;

    let mut connection = database.get()?;
    // Hashed once per run (argon2id is slow on purpose); every seed user gets this hash.
    let password_hash = seed::seed_password_hash()?;
    writeln!(
        out,
        "password:        every seed user signs in with \"{}\"",
        seed::SEED_PASSWORD
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
