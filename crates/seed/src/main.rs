//! `seed`: brings the configured database to the current schema and reports its version.
//!
//! With nothing configured it creates the embedded SQLite database; `DATABASE_URL` or the
//! `DATABASE_*` variables point it at PostgreSQL. Realistic data generation comes with the seed
//! issue; today the binary applies migrations and prints the schema version.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use repo_diesel::config::DEFAULT_SQLITE_PATH;
use repo_diesel::{Database, DatabaseConfig, migrations};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line of cause chain, without a backtrace even when RUST_BACKTRACE is set.
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    let config = DatabaseConfig::from_env()?;
    if config.target.source() == "default" {
        // The embedded default lives under data/, which a fresh clone does not have yet.
        let directory = std::path::Path::new(DEFAULT_SQLITE_PATH)
            .parent()
            .unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(directory).with_context(|| format!("cannot create {}", directory.display()))?;
    }
    let database = Database::connect(config)?;
    let mut connection = database.get()?;
    let applied = migrations::run_pending_migrations(&mut connection)?;
    let version = migrations::schema_version(&mut connection)?;

    let target = &database.config().target;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "database:        {} ({}, from {})",
        target.redacted(),
        target.backend(),
        target.source()
    )?;
    writeln!(out, "applied now:     {}", applied.len())?;
    for migration in &applied {
        writeln!(out, "                 {}", migration.name)?;
    }
    writeln!(
        out,
        "schema version:  {}",
        version.map_or_else(
            || "none".to_owned(),
            |migration| format!("{} ({})", migration.version, migration.name)
        )
    )?;
    Ok(())
}
