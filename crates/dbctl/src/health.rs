//! `dbctl health`: the checks of `ops::health` in one pass, printed as Nagios text with
//! performance data (or health JSON with `--json`), exiting with the monitoring-plugins codes of
//! the worst check and with nothing else: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. A bad
//! configuration or usage is UNKNOWN (3); an unreachable database is CRITICAL (2).

use std::fmt::Write as _;
use std::io::Write as _;

use clap::Args;
use database::DatabaseConfig;
use ops::health::{CheckName, HealthConfig, HealthError, Level, Status};
use serde_json::json;

/// The arguments of `dbctl health`. Values are parsed here, not by clap (and a missing value is
/// an empty one), so that a bad one is UNKNOWN (3) rather than clap's usage code 2, which a
/// monitoring system reads as CRITICAL.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Run only this check; repeat it for several (default: every check of the backend).
    #[arg(long = "check", value_name = "NAME", allow_hyphen_values = true, num_args = 0..=1, default_missing_value = "")]
    checks: Vec<String>,
    /// Do not run this check; repeat it for several.
    #[arg(long = "skip", value_name = "NAME", allow_hyphen_values = true, num_args = 0..=1, default_missing_value = "")]
    skip: Vec<String>,
    /// Set a warning threshold, in the check's unit with an optional suffix (`connections=75`,
    /// `long_running=30s`, `backup=30h`, `wal_size=128MiB`, `unused_indexes=none`); repeatable.
    #[arg(long = "warning", value_name = "CHECK=VALUE", allow_hyphen_values = true, num_args = 0..=1, default_missing_value = "")]
    warning: Vec<String>,
    /// Set a critical threshold, as --warning does.
    #[arg(long = "critical", value_name = "CHECK=VALUE", allow_hyphen_values = true, num_args = 0..=1, default_missing_value = "")]
    critical: Vec<String>,
    /// Anything else on the command line: refused as UNKNOWN (3), not by clap's code 2.
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    unexpected: Vec<String>,
}

/// The `--help` text after the options: the checks, the thresholds' variables, the exit codes.
pub fn after_help() -> String {
    let mut text = String::from("Checks:\n");
    let _ = write!(
        text,
        "  PostgreSQL: {}\n  SQLite:     {}\n",
        CheckName::names(database::Backend::Postgres),
        CheckName::names(database::Backend::Sqlite)
    );
    text.push_str("  Default thresholds (warning / critical):\n");
    for check in CheckName::ALL.iter().filter(|check| **check != CheckName::Connection) {
        let thresholds = check.default_thresholds();
        let show = |value: Option<f64>| value.map_or_else(|| "none".to_owned(), |value| format!("{value}"));
        let _ = writeln!(
            text,
            "    {:<20} {} / {} ({}{})",
            check.as_str(),
            show(thresholds.warning),
            show(thresholds.critical),
            check.unit().json_name(),
            if check.direction() == ops::health::Direction::Below {
                ", alerts below"
            } else {
                ""
            }
        );
    }
    text.push_str(
        "  Flags override the environment, which overrides the defaults. Seconds take ms, s, min, h, d;\n  \
         bytes take KiB, MiB, GiB; `none` turns a threshold off.\n\nEnvironment:\n",
    );
    for variable in database::config::VARIABLES
        .iter()
        .filter(|name| !(name.starts_with("DATABASE_MIGRATION_") && name.ends_with("_MS")))
        .chain(ops::health::VARIABLES)
    {
        text.push_str("  ");
        text.push_str(variable);
        text.push('\n');
    }
    text.push_str(
        "\nExit codes (monitoring plugins; health uses no other):\n  \
         0  OK: every check within its thresholds\n  \
         1  WARNING: the worst check is past its warning threshold\n  \
         2  CRITICAL: the worst check is past its critical threshold or broken, or the database cannot be reached\n  \
         3  UNKNOWN: a check could not measure (and none is WARNING or CRITICAL), or the configuration or usage is bad",
    );
    text
}

/// Runs the checks and prints the report; returns the exit code, never an error.
pub fn run(json: bool, arguments: &HealthArgs) -> u8 {
    match configure(arguments)
        .and_then(|(config, health)| ops::health::run(&config, &health).map_err(|HealthError::Usage(problem)| problem))
    {
        Ok(report) => {
            let text = if json {
                let mut text = serde_json::to_string_pretty(&ops::health::to_json(&report)).unwrap_or_default();
                text.push('\n');
                text
            } else {
                ops::health::to_text(&report)
            };
            print(&text);
            report.exit_code()
        }
        Err(problem) => {
            let status = Status::Unknown;
            let text = if json {
                format!(
                    "{}\n",
                    json!({
                        "status": status.health_json_name(),
                        "nagiosStatus": status.nagios_name(),
                        "exitCode": status.exit_code(),
                        "output": problem,
                        "checks": {},
                    })
                )
            } else {
                format!("HEALTH UNKNOWN - {problem}\n")
            };
            print(&text);
            status.exit_code()
        }
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The database's configuration and the checks', from the environment and the arguments.
pub(crate) fn configure(arguments: &HealthArgs) -> Result<(DatabaseConfig, HealthConfig), String> {
    if !arguments.unexpected.is_empty() {
        return Err(format!(
            "unexpected arguments: {} (see dbctl health --help)",
            arguments.unexpected.join(" ")
        ));
    }
    // DATABASE_URL, never the owner's DATABASE_MIGRATION_URL: monitoring runs with the least
    // privilege it needs (the `_monitor` role), whatever else the environment holds.
    let config = DatabaseConfig::from_env().map_err(|error| format!("bad database configuration: {error}"))?;
    let usage = |HealthError::Usage(problem)| problem;
    let mut health = HealthConfig::from_env().map_err(usage)?;
    for (level, assignments) in [
        (Level::Warning, &arguments.warning),
        (Level::Critical, &arguments.critical),
    ] {
        for assignment in assignments {
            health.set_threshold_assignment(level, assignment).map_err(usage)?;
        }
    }
    let names = |list: &[String]| {
        list.iter()
            .map(|name| name.parse::<CheckName>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(usage)
    };
    health.selected = names(&arguments.checks)?;
    health.skipped = names(&arguments.skip)?;
    Ok((config, health))
}
