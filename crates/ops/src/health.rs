//! Health checks with warning and critical thresholds, in the shape of `check_postgres` and the
//! monitoring-plugins interface: each check measures one thing, compares it with its thresholds
//! and ends OK, WARNING, CRITICAL or UNKNOWN; a report's status is the worst of its checks.
//!
//! A check that cannot run (a missing privilege or extension, a failed query, a file it cannot
//! read) is UNKNOWN with the reason, never OK. A database that cannot be reached at all gives a
//! report of one `connection` check, CRITICAL, as `check_postgres` reports it. Severity, worst
//! last: OK, UNKNOWN, WARNING, CRITICAL (a measured problem outranks a missing measurement; an
//! UNKNOWN is still never OK).
//!
//! | Check | Backends | Observed | Default warning | Default critical |
//! |---|---|---|---|---|
//! | `connections` | PostgreSQL | % of `max_connections` minus the reserved slots in use by client backends (server-wide) | 80 | 90 |
//! | `long_running` | PostgreSQL | seconds of the longest active statement in this database | 1 s | 60 s |
//! | `slow_statements` | PostgreSQL | seconds of the highest mean execution time in `pg_stat_statements` (this database, at least `min_calls` calls) | 1 s | 5 s |
//! | `growth` | both | % size growth per day against the newest own sample at least 20 h old | 10 | 25 |
//! | `replication_lag` | PostgreSQL | seconds the most lagging replica is behind (`replay_lag`, or how long its replay position has not moved while WAL is pending); CRITICAL with fewer streaming than `HEALTH_REPLICAS_EXPECTED` | 10 s | 60 s |
//! | `backup` | both | age in seconds of the older of the last successful backup and the last successful verification | 26 h | 48 h |
//! | `cache_hit` | PostgreSQL | % of block reads of this database served from shared buffers (alerts **below**) | 99 | 95 |
//! | `invalid_indexes` | PostgreSQL | invalid indexes of this database | none | 1 |
//! | `unused_indexes` | PostgreSQL | non-unique indexes with fewer than `max_scans` (50) scans | 1 | none |
//! | `wraparound` | PostgreSQL | the highest `age(datfrozenxid)` of any database | 1.3e9 | 1.4e9 |
//! | `idle_in_transaction` | PostgreSQL | seconds of the longest idle-in-transaction session of this database | 60 s | 300 s |
//! | `lock_waits` | PostgreSQL | seconds of the longest wait for a lock in this database | 5 s | 30 s |
//! | `migrations` | both | pending migrations (dirty, edited or unknown ones are CRITICAL) | 1 | none |
//! | `integrity` | SQLite | problems `PRAGMA quick_check` reports (a file too damaged to check is CRITICAL) | none | 1 |
//! | `wal_size` | SQLite | bytes of the `-wal` file | 64 MiB | 512 MiB |
//! | `free_pages` | SQLite | % of pages on the free list | 25 | 50 |
//!
//! Privileges, for a monitoring role on PostgreSQL:
//!
//! | Check | Needs |
//! |---|---|
//! | every check | `CONNECT` on the database |
//! | `connections` | `pg_read_all_stats` (in `pg_monitor`) to count: without it other roles' sessions and background processes have a NULL `backend_type`, and the check is UNKNOWN unless the visible connections already pass a threshold |
//! | `lock_waits` | nothing more (`pg_locks` and the `datname` of `pg_stat_activity` are visible to every role) |
//! | `long_running`, `idle_in_transaction` | `pg_read_all_stats` (in `pg_monitor`): without it other roles' sessions of the database have a NULL state and times, and the check is UNKNOWN while there are any (unless a visible one is past a threshold) |
//! | `slow_statements` | `pg_read_all_stats` (in `pg_monitor`) for other roles' statement texts; the extension installed in the database and in `shared_preload_libraries` |
//! | `replication_lag` | `pg_read_all_stats` (in `pg_monitor`): without it the state and positions are NULL and the check is UNKNOWN |
//! | `growth` | `pg_database_size`: `CONNECT` on the database, or `pg_read_all_stats`; a writable `HEALTH_STATE_DIR` |
//! | `cache_hit`, `invalid_indexes`, `unused_indexes`, `wraparound` | nothing more (catalogs and statistics views are public) |
//! | `migrations` | `SELECT` on `__diesel_schema_migrations` and `__migration_state` |
//! | `backup` | no database privilege: read access to `BACKUP_DIR/records.jsonl` |

mod output;
mod postgres;
pub mod samples;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use database::config::MigrationSettings;
use database::connection::ConnectionManager;
use database::{Backend, DatabaseConfig, DatabaseTarget, DbConnection};
use serde::Serialize;

pub use output::{perfdata_line, to_json, to_text};

/// The directory size samples and replica positions are kept in when `HEALTH_STATE_DIR` is not
/// set: beside the embedded database, in a directory git ignores.
pub const DEFAULT_STATE_DIR: &str = "data/health";

/// Every variable [`HealthConfig::from_lookup`] reads besides the per-check thresholds
/// (`HEALTH_<CHECK>_WARNING`, `HEALTH_<CHECK>_CRITICAL`), for `--help`.
pub const VARIABLES: &[&str] = &[
    "HEALTH_<CHECK>_WARNING, HEALTH_<CHECK>_CRITICAL (for example HEALTH_CONNECTIONS_WARNING=75; `none` turns a threshold off)",
    "HEALTH_STATE_DIR (default data/health: size samples for `growth`, replay positions for `replication_lag`)",
    "HEALTH_SLOW_STATEMENTS_MIN_CALLS (default 100)",
    "HEALTH_UNUSED_INDEXES_MAX_SCANS (default 50)",
    "HEALTH_CACHE_HIT_MIN_BLOCKS (default 1000)",
    "HEALTH_REPLICAS_EXPECTED (default unset: no expectation, and a replica that vanished goes unnoticed; fewer streaming is CRITICAL)",
    "BACKUP_DIR (default data/backups: the record of backups and verifications)",
];

/// How a check ended, as the monitoring-plugins interface names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Within the thresholds.
    Ok,
    /// The check could not measure (missing privilege or extension, failed query, too few
    /// samples): never taken for OK.
    Unknown,
    /// Past the warning threshold.
    Warning,
    /// Past the critical threshold, or broken (a failed backup, a dirty migration, an unreachable
    /// database).
    Critical,
}

impl Status {
    /// The process exit code of the monitoring-plugins interface: 0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    #[must_use]
    pub fn nagios_name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// The status of draft-inadarei-api-health-check: `pass`, `warn` (WARNING and UNKNOWN) or
    /// `fail`.
    #[must_use]
    pub fn health_json_name(self) -> &'static str {
        match self {
            Self::Ok => "pass",
            Self::Warning | Self::Unknown => "warn",
            Self::Critical => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.nagios_name())
    }
}

/// What an observed value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A percentage, 0 to 100.
    Percent,
    /// A percentage per day.
    PercentPerDay,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
    /// A number of things (indexes, migrations, transaction ids, problems).
    Count,
}

impl Unit {
    /// The unit of measurement in performance data (`%`, `s`, `B`, or none).
    #[must_use]
    pub fn perfdata_uom(self) -> &'static str {
        match self {
            Self::Percent | Self::PercentPerDay => "%",
            Self::Seconds => "s",
            Self::Bytes => "B",
            Self::Count => "",
        }
    }

    /// The `observedUnit` of the health JSON.
    #[must_use]
    pub fn json_name(self) -> &'static str {
        match self {
            Self::Percent => "percent",
            Self::PercentPerDay => "percent/day",
            Self::Seconds => "s",
            Self::Bytes => "bytes",
            Self::Count => "count",
        }
    }

    /// Parses a threshold in this unit: a number with an optional suffix (`500ms`, `30s`,
    /// `5min`, `26h`, `2d` for seconds; `512KiB`, `64MiB`, `1GiB` (or `kB`, `MB`, `GB`, also
    /// powers of 1024 as in PostgreSQL) for bytes; `%` for percentages).
    fn parse(self, text: &str) -> Result<f64, String> {
        let text = text.trim();
        let split = text
            .find(|character: char| !(character.is_ascii_digit() || matches!(character, '.' | '-' | '+' | 'e')))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a number (with an optional unit)"))?;
        let factor = match (self, suffix.trim()) {
            (_, "") | (Self::Percent | Self::PercentPerDay, "%") | (Self::Seconds, "s") | (Self::Bytes, "B") => 1.0,
            (Self::Seconds, "ms") => 0.001,
            (Self::Seconds, "min") => 60.0,
            (Self::Seconds, "h") => 3600.0,
            (Self::Seconds, "d") => 86_400.0,
            (Self::Bytes, "kB" | "KiB") => 1024.0,
            (Self::Bytes, "MB" | "MiB") => 1024.0 * 1024.0,
            (Self::Bytes, "GB" | "GiB") => 1024.0 * 1024.0 * 1024.0,
            (_, other) => return Err(format!("{other:?} is not a unit of {}", self.json_name())),
        };
        let value = number * factor;
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(format!("{text:?} must be a finite number, zero or more"))
        }
    }
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A value at or above the threshold alerts (most checks).
    Above,
    /// A value below the threshold alerts (`cache_hit`).
    Below,
}

/// A check's warning and critical thresholds, in its [`Unit`]; `None` never alerts at that level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// The warning threshold.
    pub warning: Option<f64>,
    /// The critical threshold.
    pub critical: Option<f64>,
}

impl Thresholds {
    /// Both thresholds.
    #[must_use]
    pub fn new(warning: Option<f64>, critical: Option<f64>) -> Self {
        Self { warning, critical }
    }

    /// The status of `value` against these thresholds, on the bad side `direction` names.
    #[must_use]
    pub fn classify(self, value: f64, direction: Direction) -> Status {
        let past = |threshold: Option<f64>| {
            threshold.is_some_and(|threshold| match direction {
                Direction::Above => value >= threshold,
                Direction::Below => value < threshold,
            })
        };
        if past(self.critical) {
            Status::Critical
        } else if past(self.warning) {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// A warning or a critical threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `--warning`, `HEALTH_<CHECK>_WARNING`.
    Warning,
    /// `--critical`, `HEALTH_<CHECK>_CRITICAL`.
    Critical,
}

macro_rules! check_names {
    ($($variant:ident => $name:literal, $measurement:literal;)*) => {
        /// A health check, by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum CheckName {
            $(
                #[doc = concat!("`", $name, "`: see the module's table.")]
                $variant,
            )*
        }

        impl CheckName {
            /// Every check, with `connection` (the pseudo-check of an unreachable database) first.
            pub const ALL: &[Self] = &[$(Self::$variant),*];

            /// The check's name, as `--check` and the reports spell it.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// The `component:measurement` key of the health JSON.
            #[must_use]
            pub fn json_key(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!($name, ":", $measurement),)*
                }
            }
        }
    };
}

check_names! {
    Connection => "connection", "reachable";
    Connections => "connections", "utilization";
    LongRunning => "long_running", "duration";
    SlowStatements => "slow_statements", "meanTime";
    Growth => "growth", "ratePerDay";
    ReplicationLag => "replication_lag", "lag";
    Backup => "backup", "age";
    CacheHit => "cache_hit", "ratio";
    InvalidIndexes => "invalid_indexes", "count";
    UnusedIndexes => "unused_indexes", "count";
    Wraparound => "wraparound", "xidAge";
    IdleInTransaction => "idle_in_transaction", "duration";
    LockWaits => "lock_waits", "duration";
    Migrations => "migrations", "pending";
    Integrity => "integrity", "problems";
    WalSize => "wal_size", "bytes";
    FreePages => "free_pages", "ratio";
}

impl CheckName {
    /// The checks that run on `backend`, in report order.
    #[must_use]
    pub fn for_backend(backend: Backend) -> &'static [Self] {
        match backend {
            Backend::Postgres => &[
                Self::Connections,
                Self::LongRunning,
                Self::SlowStatements,
                Self::IdleInTransaction,
                Self::LockWaits,
                Self::ReplicationLag,
                Self::CacheHit,
                Self::InvalidIndexes,
                Self::UnusedIndexes,
                Self::Wraparound,
                Self::Growth,
                Self::Migrations,
                Self::Backup,
            ],
            Backend::Sqlite => &[
                Self::Integrity,
                Self::WalSize,
                Self::FreePages,
                Self::Growth,
                Self::Migrations,
                Self::Backup,
            ],
        }
    }

    /// What the observed value counts.
    #[must_use]
    pub fn unit(self) -> Unit {
        match self {
            Self::Connections | Self::CacheHit | Self::FreePages => Unit::Percent,
            Self::Growth => Unit::PercentPerDay,
            Self::LongRunning
            | Self::SlowStatements
            | Self::ReplicationLag
            | Self::Backup
            | Self::IdleInTransaction
            | Self::LockWaits => Unit::Seconds,
            Self::WalSize => Unit::Bytes,
            Self::Connection
            | Self::InvalidIndexes
            | Self::UnusedIndexes
            | Self::Wraparound
            | Self::Migrations
            | Self::Integrity => Unit::Count,
        }
    }

    /// Which side of the thresholds is bad.
    #[must_use]
    pub fn direction(self) -> Direction {
        if self == Self::CacheHit {
            Direction::Below
        } else {
            Direction::Above
        }
    }

    /// The thresholds when neither a flag nor the environment sets them.
    #[must_use]
    pub fn default_thresholds(self) -> Thresholds {
        let (warning, critical) = match self {
            Self::Connections => (Some(80.0), Some(90.0)),
            Self::LongRunning => (Some(1.0), Some(60.0)),
            Self::SlowStatements => (Some(1.0), Some(5.0)),
            Self::Growth => (Some(10.0), Some(25.0)),
            Self::ReplicationLag => (Some(10.0), Some(60.0)),
            Self::Backup => (Some(26.0 * 3600.0), Some(48.0 * 3600.0)),
            Self::CacheHit => (Some(99.0), Some(95.0)),
            Self::Connection | Self::InvalidIndexes | Self::Integrity => (None, Some(1.0)),
            Self::UnusedIndexes | Self::Migrations => (Some(1.0), None),
            Self::Wraparound => (Some(1.3e9), Some(1.4e9)),
            Self::IdleInTransaction => (Some(60.0), Some(300.0)),
            Self::LockWaits => (Some(5.0), Some(30.0)),
            Self::WalSize => (Some(64.0 * 1024.0 * 1024.0), Some(512.0 * 1024.0 * 1024.0)),
            Self::FreePages => (Some(25.0), Some(50.0)),
        };
        Thresholds::new(warning, critical)
    }

    /// The names of the checks of `backend`, comma-separated, for messages.
    #[must_use]
    pub fn names(backend: Backend) -> String {
        Self::for_backend(backend)
            .iter()
            .map(|check| check.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The prefix of this check's threshold variables: `HEALTH_LONG_RUNNING`.
    fn variable_prefix(self) -> String {
        format!("HEALTH_{}", self.as_str().to_ascii_uppercase())
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckName {
    type Err = HealthError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .filter(|check| *check != Self::Connection)
            .find(|check| check.as_str() == name.trim())
            .ok_or_else(|| {
                HealthError::Usage(format!(
                    "no check named {name:?}; PostgreSQL: {}; SQLite: {}",
                    Self::names(Backend::Postgres),
                    Self::names(Backend::Sqlite)
                ))
            })
    }
}

/// A bad health configuration: an unknown check, a threshold that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A check name or a threshold given on the command line or in the environment is wrong.
    #[error("{0}")]
    Usage(String),
}

/// One value of performance data: `'label'=value[UOM];warn;crit;min;max`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfData {
    /// The label, unique in a report (`replication_lag_replica1`).
    pub label: String,
    /// What the value is about, when a check measures several things (a replica's name).
    pub subject: Option<String>,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
    /// The thresholds that apply to it, if any.
    pub thresholds: Option<Thresholds>,
    /// The bad side of the thresholds.
    pub direction: Direction,
    /// The smallest possible value, if any.
    pub min: Option<f64>,
    /// The largest possible value, if any.
    pub max: Option<f64>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// Which check.
    pub name: CheckName,
    /// How it ended.
    pub status: Status,
    /// The measured value, in [`CheckResult::unit`]; `None` when nothing could be measured.
    pub observed: Option<f64>,
    /// What the value counts.
    pub unit: Unit,
    /// The thresholds it was compared with.
    pub thresholds: Thresholds,
    /// One line for people: what was seen, and why it is not OK.
    pub summary: String,
    /// Performance data, the observed value first; per-replica values of `replication_lag` carry
    /// the replica in [`PerfData::subject`].
    pub perfdata: Vec<PerfData>,
}

impl CheckResult {
    /// A check that failed to run (a query error, a missing privilege): UNKNOWN, with the error.
    #[must_use]
    pub fn could_not_run(name: CheckName, thresholds: Thresholds, error: &dyn fmt::Display) -> Self {
        Self::without_value(name, thresholds, Status::Unknown, format!("cannot run {name}: {error}"))
    }

    /// A result with no measurement: UNKNOWN (or CRITICAL for the unreachable database), with
    /// the reason.
    #[must_use]
    pub fn without_value(name: CheckName, thresholds: Thresholds, status: Status, summary: impl Into<String>) -> Self {
        Self {
            name,
            status,
            observed: None,
            unit: name.unit(),
            thresholds,
            summary: summary.into(),
            perfdata: Vec::new(),
        }
    }

    /// A measured value compared with `thresholds`, its perfdata entry labelled with the check's
    /// name.
    #[must_use]
    pub fn measured(name: CheckName, thresholds: Thresholds, value: f64, summary: impl Into<String>) -> Self {
        let (min, max) = match name.unit() {
            Unit::Percent => (Some(0.0), Some(100.0)),
            Unit::Seconds | Unit::Bytes | Unit::Count => (Some(0.0), None),
            Unit::PercentPerDay => (None, None),
        };
        Self {
            name,
            status: thresholds.classify(value, name.direction()),
            observed: Some(value),
            unit: name.unit(),
            thresholds,
            summary: summary.into(),
            perfdata: vec![PerfData {
                label: name.as_str().to_owned(),
                subject: None,
                value,
                unit: name.unit(),
                thresholds: Some(thresholds),
                direction: name.direction(),
                min,
                max,
            }],
        }
    }

    /// This result with its status raised to `status` when that is worse.
    #[must_use]
    pub fn at_least(mut self, status: Status) -> Self {
        self.status = self.status.max(status);
        self
    }
}

/// The results of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The database's engine.
    #[serde(serialize_with = "serialize_backend")]
    pub backend: Backend,
    /// The database, with any password redacted.
    pub target: String,
    /// When the checks ran.
    pub at: DateTime<Utc>,
    /// The results, in the order they ran.
    pub checks: Vec<CheckResult>,
}

impl HealthReport {
    /// The worst status of the checks (OK for none).
    #[must_use]
    pub fn status(&self) -> Status {
        self.checks.iter().map(|check| check.status).max().unwrap_or(Status::Ok)
    }

    /// The process exit code: [`Status::exit_code`] of [`HealthReport::status`].
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        self.status().exit_code()
    }

    /// The result of `name`, when it ran.
    #[must_use]
    pub fn check(&self, name: CheckName) -> Option<&CheckResult> {
        self.checks.iter().find(|check| check.name == name)
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "the signature serde's serialize_with calls"
)]
fn serialize_backend<S: serde::Serializer>(backend: &Backend, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(backend)
}

/// What to check and with which thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Thresholds set by flags or the environment; the others are the checks' defaults.
    pub thresholds: BTreeMap<CheckName, Thresholds>,
    /// `HEALTH_STATE_DIR`: where size samples and replica replay positions are kept.
    pub state_dir: PathBuf,
    /// `BACKUP_DIR`: where the record of backups is.
    pub backup_dir: PathBuf,
    /// Whether `BACKUP_DIR` was set; when it was not and the default directory does not exist,
    /// `backup` is UNKNOWN (backups may be taken by another tool).
    pub backup_dir_configured: bool,
    /// `HEALTH_SLOW_STATEMENTS_MIN_CALLS`: statements called fewer times are not judged.
    pub slow_statements_min_calls: i64,
    /// `HEALTH_UNUSED_INDEXES_MAX_SCANS`: an index scanned fewer times is unused.
    pub unused_indexes_max_scans: i64,
    /// `HEALTH_CACHE_HIT_MIN_BLOCKS`: with fewer block accesses, `cache_hit` does not judge.
    pub cache_hit_min_blocks: i64,
    /// `HEALTH_REPLICAS_EXPECTED`: with fewer standbys streaming, `replication_lag` is CRITICAL;
    /// `None` expects nothing (a replica that vanished is then not noticed).
    pub replicas_expected: Option<usize>,
    /// The checks to run; empty for every check of the backend.
    pub selected: Vec<CheckName>,
    /// Checks not to run.
    pub skipped: Vec<CheckName>,
}

impl HealthConfig {
    /// Default thresholds, samples kept in `state_dir`, backups recorded in `backup_dir`.
    #[must_use]
    pub fn new(state_dir: impl Into<PathBuf>, backup_dir: impl Into<PathBuf>) -> Self {
        Self {
            thresholds: BTreeMap::new(),
            state_dir: state_dir.into(),
            backup_dir: backup_dir.into(),
            backup_dir_configured: true,
            slow_statements_min_calls: 100,
            unused_indexes_max_scans: 50,
            cache_hit_min_blocks: 1000,
            replicas_expected: None,
            selected: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, HealthError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map): `HEALTH_*` and `BACKUP_DIR`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, HealthError> {
        let value = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let backup_dir = value("BACKUP_DIR");
        let mut config = Self::new(
            value("HEALTH_STATE_DIR").unwrap_or_else(|| DEFAULT_STATE_DIR.to_owned()),
            backup_dir
                .clone()
                .unwrap_or_else(|| crate::settings::DEFAULT_BACKUP_DIR.to_owned()),
        );
        config.backup_dir_configured = backup_dir.is_some();
        let count = |name: &str, default: i64| match value(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|count| *count >= 0)
                .ok_or_else(|| HealthError::Usage(format!("{name} must be a whole number, not {text:?}"))),
        };
        config.slow_statements_min_calls = count("HEALTH_SLOW_STATEMENTS_MIN_CALLS", config.slow_statements_min_calls)?;
        config.unused_indexes_max_scans = count("HEALTH_UNUSED_INDEXES_MAX_SCANS", config.unused_indexes_max_scans)?;
        config.cache_hit_min_blocks = count("HEALTH_CACHE_HIT_MIN_BLOCKS", config.cache_hit_min_blocks)?;
        config.replicas_expected = value("HEALTH_REPLICAS_EXPECTED")
            .map(|text| {
                text.parse::<usize>().map_err(|_| {
                    HealthError::Usage(format!("HEALTH_REPLICAS_EXPECTED must be a whole number, not {text:?}"))
                })
            })
            .transpose()?;
        for check in CheckName::ALL
            .iter()
            .copied()
            .filter(|check| *check != CheckName::Connection)
        {
            for (level, suffix) in [(Level::Warning, "WARNING"), (Level::Critical, "CRITICAL")] {
                let name = format!("{}_{suffix}", check.variable_prefix());
                if let Some(text) = value(&name) {
                    config
                        .set_threshold(check, level, &text)
                        .map_err(|HealthError::Usage(problem)| HealthError::Usage(format!("{name}: {problem}")))?;
                }
            }
        }
        Ok(config)
    }

    /// Sets one threshold from its text: a number in the check's unit with an optional suffix,
    /// or `none` to turn it off.
    pub fn set_threshold(&mut self, check: CheckName, level: Level, text: &str) -> Result<(), HealthError> {
        let value = if text.trim().eq_ignore_ascii_case("none") {
            None
        } else {
            Some(
                check
                    .unit()
                    .parse(text)
                    .map_err(|problem| HealthError::Usage(format!("threshold of {check}: {problem}")))?,
            )
        };
        let thresholds = self
            .thresholds
            .entry(check)
            .or_insert_with(|| check.default_thresholds());
        match level {
            Level::Warning => thresholds.warning = value,
            Level::Critical => thresholds.critical = value,
        }
        Ok(())
    }

    /// Sets one threshold from `NAME=VALUE`, as `--warning` and `--critical` take it.
    pub fn set_threshold_assignment(&mut self, level: Level, assignment: &str) -> Result<(), HealthError> {
        let (name, text) = assignment
            .split_once('=')
            .ok_or_else(|| HealthError::Usage(format!("expected CHECK=VALUE, not {assignment:?}")))?;
        self.set_threshold(name.parse()?, level, text)
    }

    /// The thresholds `check` runs with.
    #[must_use]
    pub fn thresholds(&self, check: CheckName) -> Thresholds {
        self.thresholds
            .get(&check)
            .copied()
            .unwrap_or_else(|| check.default_thresholds())
    }

    /// The checks that run on `backend`; an error names a selected check the backend lacks.
    pub fn checks_for(&self, backend: Backend) -> Result<Vec<CheckName>, HealthError> {
        let available = CheckName::for_backend(backend);
        for check in self.selected.iter().chain(&self.skipped) {
            if !available.contains(check) {
                return Err(HealthError::Usage(format!(
                    "{check} is not a check of {backend}; its checks are {}",
                    CheckName::names(backend)
                )));
            }
        }
        Ok(available
            .iter()
            .copied()
            .filter(|check| self.selected.is_empty() || self.selected.contains(check))
            .filter(|check| !self.skipped.contains(check))
            .collect())
    }
}

/// Runs the configured checks on the database `config` names, over one connection of its own
/// (no pool, so the connection count is not inflated). An unreachable database gives a report of
/// one CRITICAL `connection` check; a check the backend lacks is an error before anything runs.
pub fn run(config: &DatabaseConfig, health: &HealthConfig) -> Result<HealthReport, HealthError> {
    let backend = config.target.backend();
    let checks = health.checks_for(backend)?;
    let target = config.target.redacted().to_owned();
    let unreachable = |reason: String| HealthReport {
        backend,
        target: target.clone(),
        at: Utc::now(),
        checks: vec![CheckResult::without_value(
            CheckName::Connection,
            CheckName::Connection.default_thresholds(),
            Status::Critical,
            format!("cannot connect to {target}: {reason}"),
        )],
    };
    if backend == Backend::Sqlite && !config.target.is_in_memory() {
        // Opening a missing file would create an empty database and check that instead.
        match config.target.connection_string() {
            Ok(path) if !std::path::Path::new(path.expose()).exists() => {
                return Ok(unreachable(format!("the file {} does not exist", path.expose())));
            }
            Ok(_) => {}
            Err(error) => return Ok(unreachable(error.to_string())),
        }
    }
    let manager = ConnectionManager::new(
        config.target.clone(),
        config.session.clone(),
        config.pool.connection_timeout,
    );
    let mut connection = match manager.establish() {
        Ok(connection) => connection,
        Err(error) => return Ok(unreachable(error.reason.clone())),
    };
    let mut report = run_checks(
        &mut connection,
        &config.migration,
        health,
        &checks,
        Some(&config.target),
    );
    report.target = target;
    Ok(report)
}

/// Runs the configured checks over `connection` (tests and callers that hold a connection).
/// Without the target, `growth` keys its samples on PostgreSQL by the server's address and port
/// as the server sees them, not by the URL as [`run`] does (see [`samples::target_key`]).
pub fn run_on(
    connection: &mut DbConnection,
    migration: &MigrationSettings,
    health: &HealthConfig,
) -> Result<HealthReport, HealthError> {
    let checks = health.checks_for(connection.backend())?;
    Ok(run_checks(connection, migration, health, &checks, None))
}

/// Runs the configured checks over `connection`, a connection to `config`'s database (a pooled
/// one, say): as [`run`] does, `growth` keys its samples by `config`'s target, so the two share
/// one history.
pub fn run_over(
    connection: &mut DbConnection,
    config: &DatabaseConfig,
    health: &HealthConfig,
) -> Result<HealthReport, HealthError> {
    let checks = health.checks_for(connection.backend())?;
    let mut report = run_checks(connection, &config.migration, health, &checks, Some(&config.target));
    config.target.redacted().clone_into(&mut report.target);
    Ok(report)
}

fn run_checks(
    connection: &mut DbConnection,
    migration: &MigrationSettings,
    health: &HealthConfig,
    checks: &[CheckName],
    target: Option<&DatabaseTarget>,
) -> HealthReport {
    let backend = connection.backend();
    let at = Utc::now();
    let results = checks
        .iter()
        .map(|check| {
            let thresholds = health.thresholds(*check);
            let started = std::time::Instant::now();
            let result = match check {
                CheckName::Migrations => migrations(connection, migration, thresholds),
                CheckName::Backup => backup(health, thresholds, at),
                CheckName::Growth => growth(connection, target, health, thresholds, at),
                _ => match connection {
                    DbConnection::Pg(pg) => postgres::run(pg, *check, health, thresholds, at),
                    DbConnection::Sqlite(sqlite) => sqlite::run(sqlite, *check, thresholds),
                },
            };
            tracing::debug!(check = %check, status = %result.status, elapsed_ms = crate::elapsed_ms(started), "health check");
            result
        })
        .collect();
    HealthReport {
        backend,
        target: String::new(),
        at,
        checks: results,
    }
}

/// A number as `i64` is counted, for observed values (precision loss past 2^53 is irrelevant).
#[expect(clippy::cast_precision_loss, reason = "counts and sizes far below 2^53")]
fn float(value: i64) -> f64 {
    value as f64
}

/// Seconds, in words for summaries: `45 s`, `3.2 min`, `27.0 h`, `2.5 d`.
fn duration_words(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} d", seconds / 86_400.0)
    }
}

/// `migrations`: WARNING while migrations are pending (or the history is missing); CRITICAL when
/// one is dirty, edited since it was applied, or unknown to this code.
fn migrations(connection: &mut DbConnection, settings: &MigrationSettings, thresholds: Thresholds) -> CheckResult {
    let name = CheckName::Migrations;
    let status = match migrator::Migrator::embedded(connection.backend(), settings.clone()).status(connection) {
        Ok(status) => status,
        Err(error) => {
            return CheckResult::without_value(
                name,
                thresholds,
                Status::Unknown,
                format!("cannot read the migration history: {error}"),
            );
        }
    };
    let pending = i64::try_from(status.pending.len()).unwrap_or(i64::MAX);
    let list = |items: Vec<String>| items.join(", ");
    let mut problems = Vec::new();
    if !status.dirty.is_empty() {
        problems.push(format!(
            "dirty: {} (repair the schema, then `dbctl clear-dirty`)",
            list(status.dirty.iter().map(ToString::to_string).collect())
        ));
    }
    if !status.checksum_mismatches.is_empty() {
        problems.push(format!(
            "edited since applied: {}",
            list(
                status
                    .checksum_mismatches
                    .iter()
                    .map(|mismatch| format!("{} ({})", mismatch.migration, mismatch.file))
                    .collect()
            )
        ));
    }
    if !status.unknown.is_empty() {
        problems.push(format!(
            "unknown to this release: {} (the database is newer than the code)",
            list(status.unknown.clone())
        ));
    }
    let mut summary = if status.has_history {
        format!("{} applied, {pending} pending", status.applied.len())
    } else {
        format!("no migration history: {pending} pending")
    };
    if !status.pending.is_empty() {
        let _ = write!(
            summary,
            " ({})",
            list(status.pending.iter().map(ToString::to_string).collect())
        );
    }
    let critical = !problems.is_empty();
    for problem in problems {
        summary.push_str("; ");
        summary.push_str(&problem);
    }
    let mut result = CheckResult::measured(name, thresholds, float(pending), summary);
    if critical {
        result = result.at_least(Status::Critical);
    }
    if !status.has_history {
        result = result.at_least(Status::Warning);
    }
    result
}

/// `backup`: the ages of the last successful backup and the last successful verification in the
/// record of runs, and CRITICAL when the latest backup or verification did not succeed.
fn backup(health: &HealthConfig, thresholds: Thresholds, now: DateTime<Utc>) -> CheckResult {
    use crate::records::{Kind, Outcome};

    let name = CheckName::Backup;
    let directory = crate::manifest::BackupDirectory::new(&health.backup_dir);
    if !health.backup_dir_configured && !health.backup_dir.exists() {
        return CheckResult::without_value(
            name,
            thresholds,
            Status::Unknown,
            format!(
                "BACKUP_DIR is not set and {} does not exist: set BACKUP_DIR to where `dbctl backup` writes",
                health.backup_dir.display()
            ),
        );
    }
    let records = match directory.records() {
        Ok(records) => records,
        Err(error) => return CheckResult::without_value(name, thresholds, Status::Unknown, error.to_string()),
    };
    let latest = |kind: Kind| {
        records
            .iter()
            .filter(|record| record.kind == kind)
            .max_by_key(|record| record.at)
    };
    let latest_ok = |kind: Kind| {
        records
            .iter()
            .filter(|record| record.kind == kind && record.outcome == Outcome::Ok)
            .max_by_key(|record| record.at)
    };
    let age = |at: DateTime<Utc>| float((now - at).num_milliseconds().max(0)) / 1000.0;
    let backup_age = latest_ok(Kind::Backup).map(|record| age(record.at));
    let verify_age = latest_ok(Kind::Verify).map(|record| age(record.at));
    let describe = |what: &str, value: Option<f64>| {
        value.map_or_else(
            || format!("no successful {what} recorded"),
            |seconds| format!("last successful {what} {} ago", duration_words(seconds)),
        )
    };
    let mut summary = format!(
        "{}; {} (in {})",
        describe("backup", backup_age),
        describe("verification", verify_age),
        directory.file(crate::records::RECORDS_FILE).display()
    );
    let mut failed = false;
    for (kind, what) in [(Kind::Backup, "backup"), (Kind::Verify, "verification")] {
        if let Some(record) = latest(kind).filter(|record| record.outcome != Outcome::Ok) {
            failed = true;
            let outcome = if record.outcome == Outcome::Mismatch {
                "found a mismatch"
            } else {
                "failed"
            };
            let _ = write!(
                summary,
                "; the latest {what}{} {outcome} at {}{}",
                record.backup.as_ref().map(|id| format!(" ({id})")).unwrap_or_default(),
                record.at.format("%Y-%m-%d %H:%M:%S UTC"),
                record
                    .detail
                    .as_ref()
                    .map(|detail| format!(": {detail}"))
                    .unwrap_or_default()
            );
        }
    }
    let mut result = match (backup_age, verify_age) {
        (Some(backup), Some(verify)) => {
            let mut result = CheckResult::measured(name, thresholds, backup.max(verify), summary);
            result
                .perfdata
                .push(extra_perfdata("backup_age", backup, thresholds, Unit::Seconds));
            result
                .perfdata
                .push(extra_perfdata("verification_age", verify, thresholds, Unit::Seconds));
            result
        }
        // Never backed up, or never proven by restore: as bad as too old.
        _ => CheckResult::without_value(name, thresholds, Status::Critical, summary),
    };
    if failed {
        result = result.at_least(Status::Critical);
    }
    result
}

/// A perfdata entry besides a check's own.
fn extra_perfdata(label: &str, value: f64, thresholds: Thresholds, unit: Unit) -> PerfData {
    PerfData {
        label: label.to_owned(),
        subject: None,
        value,
        unit,
        thresholds: Some(thresholds),
        direction: Direction::Above,
        min: Some(0.0),
        max: None,
    }
}

/// `growth`: the database's size now against the samples this tool kept for the same target
/// (server and database: [`samples::target_key`]); the current size is kept as a new sample.
fn growth(
    connection: &mut DbConnection,
    target: Option<&DatabaseTarget>,
    health: &HealthConfig,
    thresholds: Thresholds,
    now: DateTime<Utc>,
) -> CheckResult {
    let name = CheckName::Growth;
    let measured = match connection {
        DbConnection::Pg(pg) => postgres::database_size(pg),
        DbConnection::Sqlite(sqlite) => sqlite::database_size(sqlite),
    };
    let (database, bytes) = match measured {
        Ok(measured) => measured,
        Err(error) => {
            return CheckResult::without_value(
                name,
                thresholds,
                Status::Unknown,
                format!("cannot read the database's size: {error}"),
            );
        }
    };
    let key = match (target, &mut *connection) {
        (Some(target), _) => Ok(samples::target_key(target)),
        (None, DbConnection::Pg(pg)) => postgres::server_key(pg),
        (None, DbConnection::Sqlite(_)) => Ok(database.clone()),
    };
    let key = match key {
        Ok(key) => key,
        Err(error) => {
            return CheckResult::without_value(
                name,
                thresholds,
                Status::Unknown,
                format!("cannot tell which server this is: {error}"),
            );
        }
    };
    let store = samples::SampleStore::new(&health.state_dir);
    let sample = samples::SizeSample {
        at: now,
        target: key,
        database,
        bytes,
    };
    let kept = store.record(&sample);
    let mut result = match kept {
        Err(error) => CheckResult::without_value(name, thresholds, Status::Unknown, error),
        Ok(history) => match samples::growth_per_day(&history, &sample) {
            Some(growth) => CheckResult::measured(
                name,
                thresholds,
                growth.percent_per_day,
                format!(
                    "{} bytes now, {} bytes {} ago: {:+.2} % per day",
                    sample.bytes,
                    growth.baseline.bytes,
                    duration_words(growth.elapsed_seconds),
                    growth.percent_per_day
                ),
            ),
            None => CheckResult::without_value(
                name,
                thresholds,
                Status::Unknown,
                format!(
                    "not enough samples yet: growth is measured against a sample at least {} h old \
                     (kept in {}); {} bytes now",
                    samples::MIN_BASELINE_AGE.num_hours(),
                    health.state_dir.display(),
                    sample.bytes
                ),
            ),
        },
    };
    result.perfdata.push(PerfData {
        label: "database_size".to_owned(),
        subject: Some(sample.database.clone()),
        value: float(sample.bytes),
        unit: Unit::Bytes,
        thresholds: None,
        direction: Direction::Above,
        min: Some(0.0),
        max: None,
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_parse(unit: Unit, text: &str, expected: Result<f64, &str>) {
        match (unit.parse(text), expected) {
            (Ok(value), Ok(expected)) => assert!((value - expected).abs() < 1e-9, "{text}: {value}"),
            (Err(error), Err(expected)) => assert!(error.contains(expected), "{text}: {error}"),
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn thresholds_parse_with_units() {
        check_parse(Unit::Seconds, "30", Ok(30.0));
        check_parse(Unit::Seconds, "500ms", Ok(0.5));
        check_parse(Unit::Seconds, "26h", Ok(93_600.0));
        check_parse(Unit::Seconds, "2d", Ok(172_800.0));
        check_parse(Unit::Seconds, "5min", Ok(300.0));
        check_parse(Unit::Bytes, "64MiB", Ok(67_108_864.0));
        check_parse(Unit::Bytes, "1GB", Ok(1_073_741_824.0));
        check_parse(Unit::Percent, "80%", Ok(80.0));
        check_parse(Unit::Count, "1.3e9", Ok(1.3e9));
        check_parse(Unit::Percent, "80 MiB", Err("not a unit of percent"));
        check_parse(Unit::Seconds, "soon", Err("not a number"));
        check_parse(Unit::Seconds, "-5", Err("zero or more"));
    }

    #[test]
    fn statuses_order_by_severity_and_map_to_exit_codes() {
        assert!(
            Status::Ok < Status::Unknown && Status::Unknown < Status::Warning && Status::Warning < Status::Critical
        );
        let codes: Vec<u8> = [Status::Ok, Status::Warning, Status::Critical, Status::Unknown]
            .iter()
            .map(|status| status.exit_code())
            .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }

    #[test]
    fn classify_above_and_below() {
        let above = Thresholds::new(Some(80.0), Some(90.0));
        assert_eq!(above.classify(79.9, Direction::Above), Status::Ok);
        assert_eq!(above.classify(80.0, Direction::Above), Status::Warning);
        assert_eq!(above.classify(95.0, Direction::Above), Status::Critical);
        let below = Thresholds::new(Some(99.0), Some(95.0));
        assert_eq!(below.classify(99.5, Direction::Below), Status::Ok);
        assert_eq!(below.classify(97.0, Direction::Below), Status::Warning);
        assert_eq!(below.classify(90.0, Direction::Below), Status::Critical);
        assert_eq!(Thresholds::new(None, None).classify(1e12, Direction::Above), Status::Ok);
    }

    #[test]
    fn environment_and_assignments_set_thresholds() {
        let variables: BTreeMap<&str, &str> = [
            ("HEALTH_CONNECTIONS_WARNING", "70"),
            ("HEALTH_LONG_RUNNING_CRITICAL", "2min"),
            ("HEALTH_UNUSED_INDEXES_WARNING", "none"),
        ]
        .into_iter()
        .collect();
        let mut config =
            HealthConfig::from_lookup(|name| variables.get(name).map(|value| (*value).to_owned())).expect("valid");
        assert_eq!(
            config.thresholds(CheckName::Connections),
            Thresholds::new(Some(70.0), Some(90.0))
        );
        assert_eq!(
            config.thresholds(CheckName::LongRunning),
            Thresholds::new(Some(1.0), Some(120.0))
        );
        assert_eq!(config.thresholds(CheckName::UnusedIndexes), Thresholds::new(None, None));
        assert!(!config.backup_dir_configured);
        config
            .set_threshold_assignment(Level::Critical, "connections=95")
            .expect("valid");
        assert_eq!(config.thresholds(CheckName::Connections).critical, Some(95.0));
        let error = config
            .set_threshold_assignment(Level::Warning, "no_such=1")
            .expect_err("unknown check");
        assert!(error.to_string().contains("connections, long_running"), "{error}");
        let error = HealthConfig::from_lookup(|name| (name == "HEALTH_WAL_SIZE_WARNING").then(|| "lots".to_owned()))
            .expect_err("bad value");
        assert!(error.to_string().starts_with("HEALTH_WAL_SIZE_WARNING: "), "{error}");
        assert_eq!(config.replicas_expected, None);
        let expecting = HealthConfig::from_lookup(|name| (name == "HEALTH_REPLICAS_EXPECTED").then(|| "2".to_owned()))
            .expect("valid");
        assert_eq!(expecting.replicas_expected, Some(2));
        let error = HealthConfig::from_lookup(|name| (name == "HEALTH_REPLICAS_EXPECTED").then(|| "-1".to_owned()))
            .expect_err("not a count");
        assert!(error.to_string().contains("HEALTH_REPLICAS_EXPECTED"), "{error}");
    }

    #[test]
    fn a_check_of_the_other_backend_is_refused_naming_the_checks() {
        let mut config = HealthConfig::new("state", "backups");
        config.selected = vec![CheckName::Connections];
        let error = config.checks_for(Backend::Sqlite).expect_err("not a SQLite check");
        assert!(error.to_string().contains("integrity, wal_size"), "{error}");
        assert_eq!(
            config.checks_for(Backend::Postgres).expect("valid"),
            [CheckName::Connections]
        );
    }
}
