//! Test helper: runs the start-up migration runner once, as its own process, so that tests can
//! start many runners at once. Usage: `migrate <postgres URL or SQLite path> <migrations dir>`.
//! With `START_AT_MS` (milliseconds since the Unix epoch) it waits until then, so that processes
//! spawned one after another begin together. Prints `applied: <names>` and exits 0, or prints
//! the error and exits 1.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use database::config::{DatabaseConfig, DatabaseTarget};
use database::connection::ConnectionManager;
use migrator::{MigrationSet, Migrator};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [database, directory] = arguments.as_slice() else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: migrate <postgres URL or SQLite path> <migrations dir>"
        );
        return ExitCode::FAILURE;
    };
    if let Some(start) = std::env::var("START_AT_MS")
        .ok()
        .and_then(|value| value.parse::<u128>().ok())
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(start, |elapsed| elapsed.as_millis());
        std::thread::sleep(Duration::from_millis(
            u64::try_from(start.saturating_sub(now)).unwrap_or(0),
        ));
    }
    match run(database, directory) {
        Ok(applied) => {
            let _ = writeln!(std::io::stdout(), "applied: {}", applied.join(","));
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(database: &str, directory: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let target = if database.starts_with("postgres") {
        DatabaseTarget::postgres_url(database)?
    } else {
        DatabaseTarget::sqlite_file(database)
    };
    let config = DatabaseConfig::new(target);
    let mut connection = ConnectionManager::new(
        config.target.clone(),
        config.session.clone(),
        config.pool.connection_timeout,
    )
    .establish()?;
    let migrator = Migrator::new(MigrationSet::from_dir(directory)?, config.migration);
    let report = migrator.run(&mut connection)?;
    Ok(report
        .applied
        .iter()
        .map(|applied| applied.migration.name.clone())
        .collect())
}
