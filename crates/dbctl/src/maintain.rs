//! `dbctl maintain`: the database's routine upkeep, meant for a schedule (cron). In order:
//!
//! 1. `lock`: on PostgreSQL a session advisory lock ([`LOCK_KEY`], "maintain" in ASCII), tried
//!    once with `pg_try_advisory_lock`: when another `maintain` holds it, nothing is done and the
//!    exit code is [`BUSY`]. SQLite needs none: the purge is one write transaction
//!    (`BEGIN IMMEDIATE`), which waits for another writer up to `DATABASE_SQLITE_BUSY_TIMEOUT_MS`,
//!    and `ANALYZE` / `PRAGMA optimize` / `PRAGMA incremental_vacuum` are safe to repeat.
//! 2. `retention_purge`: users soft-deleted before now less the retention (`--retention-days`,
//!    `USER_RETENTION_DAYS`) are deleted for good through `repo-diesel`'s
//!    `UserRepository::purge_deleted_before`, in a unit of work on behalf of the operator, so each
//!    gets its `user.retention_purge` audit entry in the same transaction. Without a retention,
//!    nobody is purged: deleting people's data is never a default.
//! 3. `analyze`: fresh planner statistics. On PostgreSQL `ANALYZE` of the tables of schema
//!    `public` (the application's and the migration history) that the connected role may analyze
//!    (it owns them, or the database); on SQLite `ANALYZE`, then `PRAGMA optimize`.
//! 4. `incremental_vacuum` (SQLite): returns free pages to the file system when the database has
//!    `auto_vacuum = INCREMENTAL`; otherwise reported as not applicable (turning it on needs a
//!    full `VACUUM`, which this command never runs by itself: see docs/RUNBOOK.md).
//!
//! A SQLite file must exist: `maintain` refuses a missing one and creates nothing. `--dry-run`
//! reads what each step would do (the users it would purge, the statements it would run) and
//! changes nothing; on SQLite it reads over one read-only connection (`mode=ro`), without the
//! pool's session setup (which switches a file to WAL), so the file stays byte for byte as it
//! was. A run holds two connections (its session and the purge's unit of work), so its pool has
//! at least two whatever `DATABASE_POOL_MAX_SIZE` says. Each step reports its outcome, duration
//! and counts; a failed step is reported and the others still run (exit code 1).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, SubsecRound as _, Utc};
use clap::Args;
use database::sql_types::{DbTimestamp, Instant as SqlInstant};
use database::{Backend, Database, DatabaseConfig, DbConnection};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::sqlite::SqliteConnection;
use domain::{Actor, AuditContext, CorrelationId};
use repo::{RepoError, UnitOfWorkExt as _};
use repo_diesel::DieselStore;
use security::OperatorContext;
use serde::Serialize;

/// The PostgreSQL session advisory lock that keeps two runs of `maintain` on one database apart:
/// "maintain" in ASCII (the migration runner's is "migrator", the roles setup's "roles").
pub const LOCK_KEY: i64 = 0x6d61_696e_7461_696e;

/// The exit code of a run that found another `maintain` holding [`LOCK_KEY`] and did nothing.
pub const BUSY: u8 = 6;

/// The longest retention `--retention-days` takes: a hundred years.
const MAX_RETENTION_DAYS: i64 = 36_500;

/// The arguments of `dbctl maintain`.
#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// Purge users soft-deleted more than this many days ago (1 to 36500), each audited as
    /// `user.retention_purge`. Without it (and without `USER_RETENTION_DAYS`) nobody is purged.
    #[arg(long, env = "USER_RETENTION_DAYS", value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(1..=MAX_RETENTION_DAYS))]
    pub retention_days: Option<u32>,
    /// Report what would be done (the users that would be purged, the statements) and change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a run did, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainReport {
    /// `postgres` or `sqlite`.
    pub backend: String,
    /// Whether this was a `--dry-run`.
    pub dry_run: bool,
    /// The retention, in days, when one was configured.
    pub retention_days: Option<u32>,
    /// Users soft-deleted before this instant are purged (with a retention).
    pub cutoff: Option<DateTime<Utc>>,
    /// The steps, in the order they ran.
    pub steps: Vec<Step>,
    /// The whole run, in milliseconds.
    pub duration_ms: u64,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `lock`, `retention_purge`, `analyze`, `optimize` or `incremental_vacuum`.
    pub name: &'static str,
    /// What became of it.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What it counted: `users` purged (or that would be), `tables` analyzed, free pages.
    pub counts: BTreeMap<&'static str, u64>,
    /// The statements it ran (or, in a dry run, would run).
    pub statements: Vec<String>,
    /// Why it was skipped, not applicable or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What became of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran.
    Done,
    /// A dry run: it would run.
    WouldRun,
    /// It was not configured (no retention), or had nothing it could act on.
    Skipped,
    /// It does not apply to this database (SQLite without incremental auto-vacuum).
    NotApplicable,
    /// Another `maintain` holds the lock: nothing was done.
    Busy,
    /// It failed; the note says why.
    Failed,
}

impl Step {
    fn new(name: &'static str, outcome: Outcome, started: Instant) -> Self {
        Self {
            name,
            outcome,
            duration_ms: millis(started),
            counts: BTreeMap::new(),
            statements: Vec::new(),
            note: None,
        }
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    fn count(mut self, name: &'static str, value: u64) -> Self {
        self.counts.insert(name, value);
        self
    }

    fn statements(mut self, statements: Vec<String>) -> Self {
        self.statements = statements;
        self
    }

    /// The step `name` as it went: its result, or failed with the error's causes.
    fn from_result(name: &'static str, started: Instant, result: anyhow::Result<Self>) -> Self {
        result.unwrap_or_else(|error| Self::new(name, Outcome::Failed, started).note(format!("{error:#}")))
    }
}

/// Runs `dbctl maintain`: connects as every operator command does (`DATABASE_MIGRATION_URL`
/// when set), prints the report and returns the exit code: 0 when every step ran or was skipped,
/// 1 when one failed, [`BUSY`] when another run holds the lock.
///
/// A SQLite file must exist: `maintain` never creates a database (nor its directory). A dry run
/// on SQLite reads the file over one read-only connection and leaves it byte for byte as it was
/// (the pool's sessions would switch a rollback-journal file to WAL).
pub fn run(cli: &crate::Cli, arguments: &MaintainArgs) -> anyhow::Result<u8> {
    let operator = crate::operator(cli)?;
    let config = DatabaseConfig::from_env()?.for_migrations();
    let report = if config.target.backend() == Backend::Sqlite {
        // Opened first in every run: it refuses a missing file before anything creates one.
        let mut read_only = open_sqlite_read_only(&config)?;
        if arguments.dry_run {
            maintain(&mut read_only, None, &operator, arguments)?
        } else {
            drop(read_only);
            maintain_on_pool(config, &operator, arguments)?
        }
    } else {
        maintain_on_pool(config, &operator, arguments)?
    };
    crate::report(cli.json, &report, |out| print(out, &report))?;
    Ok(if report.steps.iter().any(|step| step.outcome == Outcome::Busy) {
        BUSY
    } else if report.steps.iter().any(|step| step.outcome == Outcome::Failed) {
        crate::exit::FAILED
    } else {
        0
    })
}

/// The connections a run holds at once: its session (the advisory lock's, for the whole run)
/// and the purge's unit of work, which `DieselStore` checks out of the pool. A pool smaller than
/// this (`DATABASE_POOL_MAX_SIZE=1`) would make the purge wait out the connection timeout.
const SESSIONS: u32 = 2;

/// A run over a pool opened with `config`, made at least [`SESSIONS`] connections large.
fn maintain_on_pool(
    mut config: DatabaseConfig,
    operator: &OperatorContext,
    arguments: &MaintainArgs,
) -> anyhow::Result<MaintainReport> {
    config.pool.max_size = config.pool.max_size.max(SESSIONS);
    let database = Arc::new(crate::connect(config)?);
    // Held for the whole run: the lock is this session's.
    let mut session = database.get().context("connecting for the maintenance lock")?;
    maintain(&mut session, Some(&database), operator, arguments)
}

/// Opens the SQLite file of `config` read-only (an SQLite URI with `mode=ro`, without the
/// pool's session setup), with the configured busy timeout; a missing file is an error.
fn open_sqlite_read_only(config: &DatabaseConfig) -> anyhow::Result<DbConnection> {
    let target = &config.target;
    if target.is_in_memory() {
        anyhow::bail!(
            "{} names an in-memory SQLite database, which starts empty: there is nothing to maintain",
            target.source()
        );
    }
    let connection_string = target.connection_string()?;
    let file = connection_string.expose();
    let uri = if file.starts_with("file:") {
        // An SQLite URI already: its last `mode` wins (its fragment, which SQLite ignores, is
        // dropped).
        let uri = file.split_once('#').map_or(file, |(uri, _)| uri);
        let separator = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{separator}mode=ro")
    } else {
        let path = std::path::Path::new(file);
        let exists = path
            .try_exists()
            .with_context(|| format!("cannot check the SQLite database file {}", target.redacted()))?;
        anyhow::ensure!(
            exists,
            "the SQLite database file {} ({}) does not exist: maintain works on an existing database \
             and creates none (check the path, or run `dbctl migrate` to create it)",
            target.redacted(),
            if target.source() == "default" {
                "the default: DATABASE_URL is not set".to_owned()
            } else {
                format!("set by {}", target.source())
            }
        );
        sqlite_uri(file)
    };
    let mut sqlite = SqliteConnection::establish(&uri).with_context(|| {
        format!(
            "cannot open the SQLite database file {} (set by {}) read-only",
            target.redacted(),
            target.source()
        )
    })?;
    // PRAGMA takes no bound parameters; the only interpolated value is an integer. The busy
    // timeout is the connection's own: nothing is written to the file.
    sqlite
        .batch_execute(&format!(
            "PRAGMA busy_timeout = {}",
            config.session.sqlite_busy_timeout.as_millis()
        ))
        .context("setting the busy timeout")?;
    Ok(DbConnection::Sqlite(sqlite))
}

/// A read-only SQLite URI for the file `path`: `%`, `?` and `#` escaped, and an absolute path
/// behind an empty authority (`file:///…`), so that none of it is read as URI syntax.
fn sqlite_uri(path: &str) -> String {
    let mut uri = String::from(if path.starts_with('/') { "file://" } else { "file:" });
    for character in path.chars() {
        match character {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            other => uri.push(other),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// The steps of one run over `session`, on behalf of `operator`. `database` is the pool the
/// purge's unit of work runs on; only a dry run, which purges nobody, goes without one.
fn maintain(
    session: &mut DbConnection,
    database: Option<&Arc<Database>>,
    operator: &OperatorContext,
    arguments: &MaintainArgs,
) -> anyhow::Result<MaintainReport> {
    let started = Instant::now();
    let backend = session.backend();
    let cutoff = arguments
        .retention_days
        .map(|days| (Utc::now() - chrono::TimeDelta::days(i64::from(days))).trunc_subsecs(6));
    let mut report = MaintainReport {
        backend: backend.to_string(),
        dry_run: arguments.dry_run,
        retention_days: arguments.retention_days,
        cutoff,
        steps: Vec::new(),
        duration_ms: 0,
    };
    let lock_started = Instant::now();
    let locked = match backend {
        Backend::Postgres if !arguments.dry_run => {
            let locked = try_lock(session)?;
            let step = Step::new("lock", if locked { Outcome::Done } else { Outcome::Busy }, lock_started)
                .statements(vec![format!("SELECT pg_try_advisory_lock({LOCK_KEY})")]);
            report.steps.push(if locked {
                step
            } else {
                step.note("another maintain is running on this database (it holds the advisory lock): nothing done")
            });
            locked
        }
        Backend::Postgres => {
            report.steps.push(
                Step::new("lock", Outcome::Skipped, lock_started).note("a dry run changes nothing: it takes no lock"),
            );
            false
        }
        Backend::Sqlite => {
            report
                .steps
                .push(Step::new("lock", Outcome::NotApplicable, lock_started).note(
                    "SQLite serialises writers: the purge is one write transaction, which waits for another \
                 up to DATABASE_SQLITE_BUSY_TIMEOUT_MS",
                ));
            false
        }
    };
    if report.steps.iter().any(|step| step.outcome == Outcome::Busy) {
        report.duration_ms = millis(started);
        return Ok(report);
    }
    report
        .steps
        .push(retention_purge(database, session, operator, cutoff, arguments.dry_run));
    match backend {
        Backend::Postgres => {
            let step_started = Instant::now();
            report.steps.push(Step::from_result(
                "analyze",
                step_started,
                analyze_postgres(session, arguments.dry_run, step_started),
            ));
        }
        Backend::Sqlite => report.steps.extend(sqlite_steps(session, arguments.dry_run)),
    }
    if locked {
        let unlocked: Fact = diesel::sql_query("SELECT pg_advisory_unlock($1) AS value")
            .bind::<BigInt, _>(LOCK_KEY)
            .get_result(session)
            .context("releasing the maintenance lock")?;
        if !unlocked.value {
            tracing::warn!("the maintenance lock was not held at the end of the run");
        }
    }
    report.duration_ms = millis(started);
    Ok(report)
}

/// `ANALYZE`, `PRAGMA optimize` and the incremental vacuum of a SQLite file.
fn sqlite_steps(session: &mut DbConnection, dry_run: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    for (name, statement) in [("analyze", "ANALYZE"), ("optimize", "PRAGMA optimize")] {
        let started = Instant::now();
        let result = if dry_run {
            Ok(Step::new(name, Outcome::WouldRun, started).statements(vec![statement.to_owned()]))
        } else {
            session
                .batch_execute(statement)
                .with_context(|| format!("running {statement}"))
                .map(|()| Step::new(name, Outcome::Done, started).statements(vec![statement.to_owned()]))
                .and_then(|step| {
                    if name == "analyze" {
                        // The tables with statistics now (a table without rows gets none).
                        let tables = read_number(session, "SELECT count(DISTINCT tbl) AS value FROM sqlite_stat1")?;
                        Ok(step.count("tables", tables))
                    } else {
                        Ok(step)
                    }
                })
        };
        steps.push(Step::from_result(name, started, result));
    }
    let started = Instant::now();
    steps.push(Step::from_result(
        "incremental_vacuum",
        started,
        incremental_vacuum(session, dry_run, started),
    ));
    steps
}

#[derive(QueryableByName)]
struct Fact {
    #[diesel(sql_type = Bool)]
    value: bool,
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Tries the maintenance lock once: a waiter would hold a snapshot for as long as it waits, and a
/// second run right after the first has nothing left to do.
fn try_lock(session: &mut DbConnection) -> anyhow::Result<bool> {
    let locked: Fact = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS value")
        .bind::<BigInt, _>(LOCK_KEY)
        .get_result(session)
        .context("trying the maintenance lock")?;
    Ok(locked.value)
}

/// The audit context of the operator: the same actor and correlation id `dbctl audit purge`
/// writes (`OperatorContext` checks the rules of `domain`'s `Actor` and `CorrelationId`).
fn audit_context(operator: &OperatorContext) -> anyhow::Result<AuditContext> {
    let context = AuditContext::new(Actor::from_stored(operator.actor().to_owned()));
    Ok(match operator.correlation_id() {
        Some(id) => context.with_correlation_id(CorrelationId::parse(id)?),
        None => context,
    })
}

fn retention_purge(
    database: Option<&Arc<Database>>,
    session: &mut DbConnection,
    operator: &OperatorContext,
    cutoff: Option<DateTime<Utc>>,
    dry_run: bool,
) -> Step {
    const NAME: &str = "retention_purge";
    let started = Instant::now();
    let Some(cutoff) = cutoff else {
        return Step::new(NAME, Outcome::Skipped, started)
            .note("no retention configured (--retention-days or USER_RETENTION_DAYS): no user is purged");
    };
    Step::from_result(
        NAME,
        started,
        purge_before(database, session, operator, cutoff, dry_run, started),
    )
}

/// Purges the users soft-deleted before `cutoff`, or counts them in a dry run.
fn purge_before(
    database: Option<&Arc<Database>>,
    session: &mut DbConnection,
    operator: &OperatorContext,
    cutoff: DateTime<Utc>,
    dry_run: bool,
    started: Instant,
) -> anyhow::Result<Step> {
    const NAME: &str = "retention_purge";
    if dry_run {
        let expired: Number = diesel::sql_query("SELECT count(*) AS value FROM users WHERE deleted_at < $1")
            .bind::<SqlInstant, _>(DbTimestamp(cutoff))
            .get_result(session)
            .context("counting the users soft-deleted before the cutoff")?;
        return Ok(Step::new(NAME, Outcome::WouldRun, started)
            .count("users", u64::try_from(expired.value).unwrap_or(0))
            .statements(vec![purge_statement(cutoff)]));
    }
    let database = database.context("a purge needs the pool, which only a dry run goes without")?;
    let context = audit_context(operator)?;
    let store = DieselStore::new(Arc::clone(database));
    let purged = store
        .transact::<u64, RepoError>(&context, |repositories| {
            repositories.users().purge_deleted_before(cutoff)
        })
        .context("purging the users soft-deleted before the cutoff")?;
    Ok(Step::new(NAME, Outcome::Done, started)
        .count("users", purged)
        .statements(vec![purge_statement(cutoff)]))
}

fn purge_statement(cutoff: DateTime<Utc>) -> String {
    format!(
        "UserRepository::purge_deleted_before({}): DELETE FROM users WHERE deleted_at < the cutoff, one \
         user.retention_purge audit entry per user, in one transaction",
        cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// `ANALYZE` of the tables of schema `public` the connected role may analyze, quoted by the
/// server (`format('%I.%I')`).
fn analyze_postgres(session: &mut DbConnection, dry_run: bool, started: Instant) -> anyhow::Result<Step> {
    const NAME: &str = "analyze";
    let tables: Vec<String> = diesel::sql_query(
        "SELECT format('%I.%I', n.nspname, c.relname) AS value
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')
           AND (pg_has_role(c.relowner, 'USAGE')
                OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE'))
         ORDER BY 1",
    )
    .load::<Name>(session)
    .context("listing the tables to analyze")?
    .into_iter()
    .map(|name| name.value)
    .collect();
    let others: Number = diesel::sql_query(
        "SELECT count(*) AS value FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')",
    )
    .get_result(session)
    .context("counting the tables")?;
    let skipped = u64::try_from(others.value)
        .unwrap_or(0)
        .saturating_sub(tables.len() as u64);
    if tables.is_empty() {
        return Ok(Step::new(NAME, Outcome::Skipped, started)
            .count("tables_skipped", skipped)
            .note("the connected role may analyze no table: connect as the schema's owner (DATABASE_MIGRATION_URL)"));
    }
    let statement = format!("ANALYZE {}", tables.join(", "));
    if !dry_run {
        session.batch_execute(&statement).context("running ANALYZE")?;
    }
    let step = Step::new(NAME, if dry_run { Outcome::WouldRun } else { Outcome::Done }, started)
        .count("tables", tables.len() as u64)
        .count("tables_skipped", skipped)
        .statements(vec![statement]);
    Ok(if skipped > 0 {
        step.note("tables the connected role does not own were skipped: connect as the schema's owner")
    } else {
        step
    })
}

/// `PRAGMA incremental_vacuum` when the file has `auto_vacuum = INCREMENTAL` (2).
fn incremental_vacuum(session: &mut DbConnection, dry_run: bool, started: Instant) -> anyhow::Result<Step> {
    const NAME: &str = "incremental_vacuum";
    let mode = read_number(session, "SELECT auto_vacuum AS value FROM pragma_auto_vacuum")?;
    let free_before = read_number(session, FREE_PAGES)?;
    if mode != 2 {
        let mode = if mode == 1 { "FULL" } else { "NONE" };
        return Ok(Step::new(NAME, Outcome::NotApplicable, started)
            .count("free_pages", free_before)
            .note(format!(
                "auto_vacuum is {mode}, not INCREMENTAL: free pages stay in the file (reused by later writes). \
                 To enable it: PRAGMA auto_vacuum = INCREMENTAL, then one full VACUUM, in a maintenance \
                 window (see docs/RUNBOOK.md, Maintenance)"
            )));
    }
    let statement = "PRAGMA incremental_vacuum".to_owned();
    if dry_run {
        return Ok(Step::new(NAME, Outcome::WouldRun, started)
            .count("free_pages", free_before)
            .statements(vec![statement]));
    }
    session
        .batch_execute(&statement)
        .context("running PRAGMA incremental_vacuum")?;
    let free_after = read_number(session, FREE_PAGES)?;
    Ok(Step::new(NAME, Outcome::Done, started)
        .count("free_pages", free_before)
        .count("pages_freed", free_before.saturating_sub(free_after))
        .statements(vec![statement]))
}

/// The free pages of a SQLite file.
const FREE_PAGES: &str = "SELECT freelist_count AS value FROM pragma_freelist_count";

/// A number read by `sql` (no parameters) in a column `value`.
fn read_number(session: &mut DbConnection, sql: &str) -> anyhow::Result<u64> {
    let number: Number = diesel::sql_query(sql)
        .get_result(session)
        .with_context(|| format!("reading {sql}"))?;
    Ok(u64::try_from(number.value).unwrap_or(0))
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The human form of the report.
fn print(out: &mut dyn Write, report: &MaintainReport) -> std::io::Result<()> {
    writeln!(
        out,
        "maintain on {}{} ({} ms)",
        report.backend,
        if report.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        report.duration_ms
    )?;
    match (report.retention_days, report.cutoff) {
        (Some(days), Some(cutoff)) => writeln!(
            out,
            "retention: {days} days (users soft-deleted before {})",
            cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?,
        _ => writeln!(out, "retention: not configured (no user is purged)")?,
    }
    for step in &report.steps {
        let outcome = match step.outcome {
            Outcome::Done => "done",
            Outcome::WouldRun => "would run",
            Outcome::Skipped => "skipped",
            Outcome::NotApplicable => "not applicable",
            Outcome::Busy => "busy",
            Outcome::Failed => "FAILED",
        };
        let counts: Vec<String> = step
            .counts
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        writeln!(
            out,
            "  {:<19} {:<15} {:>6} ms  {}",
            step.name,
            outcome,
            step.duration_ms,
            counts.join(" ")
        )?;
        if report.dry_run {
            for statement in &step.statements {
                writeln!(out, "      would run: {statement}")?;
            }
        }
        if let Some(note) = &step.note {
            writeln!(out, "      {note}")?;
        }
    }
    Ok(())
}
