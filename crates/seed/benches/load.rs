//! Benchmark of the seed's bulk load, as ratios measured in one run (`cargo bench -p seed --bench load`).
//!
//! - PostgreSQL (needs `TEST_DATABASE_URL` and `psql` on `PATH`): the release `seed` binary on a
//!   new database, with sizes that make about a million attendance records; its wall time and
//!   peak RSS. Then the same rows exported and loaded with psql's `\copy` (after `TRUNCATE`, in
//!   one transaction like the seed), from CSV and, as the ceiling, from PostgreSQL's binary
//!   format; then a sample loaded with one `INSERT` per row through diesel into another new
//!   database, also in one transaction.
//! - SQLite: the seed binary on a new file with the same sizes; wall time and peak RSS.
//!
//! Peak RSS comes from `getrusage(RUSAGE_CHILDREN)` in a helper process (this binary run with
//! `--measure-child`) whose only child is the measured command, so no other child's memory
//! counts. Targets: at least 1.5 times the `\copy` rate, peak RSS under 100 MiB at a million
//! records, SQLite under 15 s.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use repo_diesel::models::{AttendanceRow, UserRow};
use repo_diesel::schema::{attendance, users};

/// About a million attendance records: 4,830 users with a year of history make 1,006,952 today
/// (the exact count is printed).
const USERS: &str = "4830";
const DAYS: &str = "365";
const SEED: &str = "42";
/// Rows inserted one at a time.
const ONE_BY_ONE_SAMPLE: i64 = 20_000;
const MEASURE: &str = "--measure-child";
const MIB: f64 = 1024.0 * 1024.0;

/// What the helper reports about its child.
struct Measured {
    wall: Duration,
    peak_rss_bytes: u64,
    stdout: String,
}

struct Row {
    what: String,
    rows: i64,
    seconds: f64,
    peak_rss: Option<u64>,
    note: String,
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.get(1).map(String::as_str) == Some(MEASURE) {
        return measure_child(&arguments[2..]);
    }
    let mut table = Vec::new();
    match std::env::var("TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        None => say("PostgreSQL rows SKIPPED: TEST_DATABASE_URL is not set"),
        Some(_) if Command::new("psql").arg("--version").output().is_err() => {
            say("PostgreSQL rows SKIPPED: psql is not on PATH");
        }
        Some(server) => {
            if let Err(error) = postgres(&server, &mut table) {
                say(&format!("PostgreSQL benchmark failed: {error}"));
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(error) = sqlite(&mut table) {
        say(&format!("SQLite benchmark failed: {error}"));
        return ExitCode::FAILURE;
    }
    print_table(&table);
    ExitCode::SUCCESS
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Helper mode: runs the command, waits, and reports wall time and the child's peak RSS.
fn measure_child(command: &[String]) -> ExitCode {
    let Some((program, arguments)) = command.split_first() else {
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let status = Command::new(program).args(arguments).stdin(Stdio::null()).status();
    let wall = started.elapsed();
    let Ok(status) = status else {
        return ExitCode::FAILURE;
    };
    // ru_maxrss is in KiB on Linux.
    let peak =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).map_or(0, |usage| usage.max_rss());
    say(&format!("@@measured wall_us={} peak_rss_kib={peak}", wall.as_micros()));
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `program arguments` under the helper with `environment`.
fn measured(program: &str, arguments: &[&str], environment: &[(&str, &str)]) -> Result<Measured> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg(MEASURE).arg(program).args(arguments);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("DATABASE_")) {
        command.env_remove(name);
    }
    command.envs(environment.iter().copied()).stderr(Stdio::piped());
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last_lines: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!("{program} {arguments:?} failed: {stdout} {}", last_lines.join(" | ")).into());
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("@@measured "))
        .ok_or("no measurement")?;
    let field = |name: &str| -> Result<u64> {
        let value = line
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name))
            .ok_or("missing field")?;
        Ok(value.parse()?)
    };
    Ok(Measured {
        wall: Duration::from_micros(field("wall_us=")?),
        peak_rss_bytes: field("peak_rss_kib=")? * 1024,
        stdout,
    })
}

fn seed_binary() -> &'static str {
    env!("CARGO_BIN_EXE_seed")
}

/// Brings a scratch database to head with the start-up runner, as the seed does first.
fn migrate(url: &str) -> Result<()> {
    use migrator::Migrate as _;
    let target = database::DatabaseTarget::postgres_url(url)?;
    database::Database::connect(database::DatabaseConfig::new(target))?.migrate()?;
    Ok(())
}

fn seed_arguments() -> [&'static str; 6] {
    ["--users", USERS, "--days", DAYS, "--seed", SEED]
}

/// A new database on the server, dropped when this value is.
struct ScratchPg {
    server: String,
    name: String,
    url: String,
}

impl ScratchPg {
    fn create(server: &str, purpose: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        // Identifiers cannot be bound; the name is made of [a-z0-9_] only.
        let name = format!("bench_seed_{purpose}_{}_{nanos}", std::process::id());
        let mut url = url::Url::parse(server)?;
        PgConnection::establish(server)?.batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))?;
        url.set_path(&name);
        Ok(Self {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    fn connect(&self) -> Result<PgConnection> {
        Ok(PgConnection::establish(&self.url)?)
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.server) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
        }
    }
}

/// Flushes dirty pages before a timed load so that no load pays for the previous one's
/// checkpoint (needs a superuser or `pg_checkpoint`; skipped otherwise).
fn checkpoint(connection: &mut PgConnection) {
    let _ = connection.batch_execute("CHECKPOINT");
}

fn count_pg(connection: &mut PgConnection) -> Result<(i64, i64)> {
    Ok((
        users::table.count().get_result(connection)?,
        attendance::table.count().get_result(connection)?,
    ))
}

fn psql(url: &str, commands: &[String]) -> Result<Duration> {
    let mut command = Command::new("psql");
    command.args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url]);
    for sql in commands {
        command.arg("-c").arg(sql);
    }
    let started = Instant::now();
    let output = command.output()?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(format!("psql failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(elapsed)
}

fn postgres(server: &str, table: &mut Vec<Row>) -> Result<()> {
    let database = ScratchPg::create(server, "copy")?;
    let mut connection = database.connect()?;
    // Migrate first, so that the timed run does what a seed of a migrated database does.
    migrate(&database.url)?;
    checkpoint(&mut connection);
    let seeded = measured(
        seed_binary(),
        &seed_arguments(),
        &[("DATABASE_URL", &database.url), ("RUST_LOG", "warn")],
    )?;
    let (n_users, n_attendance) = count_pg(&mut connection)?;
    let rows = n_users + n_attendance;
    say(&format!(
        "seed on PostgreSQL: {n_users} users + {n_attendance} attendance records\n{}",
        seeded
            .stdout
            .lines()
            .filter(|line| !line.starts_with("@@"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    let seed_seconds = seeded.wall.as_secs_f64();
    table.push(Row {
        what: "seed → PostgreSQL (binary COPY, one transaction)".into(),
        rows,
        seconds: seed_seconds,
        peak_rss: Some(seeded.peak_rss_bytes),
        note: format!(
            "peak RSS target < 100 MiB: {}",
            if seeded.peak_rss_bytes < 100 * 1024 * 1024 {
                "met"
            } else {
                "missed"
            }
        ),
    });

    copy_same_rows(&database, &mut connection, (n_users, n_attendance), seed_seconds, table)?;
    one_row_at_a_time(server, &mut connection, rows, seed_seconds, table)
}

/// The same rows through psql's `\copy`, in the order the seed wrote them.
fn copy_same_rows(
    database: &ScratchPg,
    connection: &mut PgConnection,
    (n_users, n_attendance): (i64, i64),
    seed_seconds: f64,
    table: &mut Vec<Row>,
) -> Result<()> {
    let rows = n_users + n_attendance;
    // The same rows through psql's \copy, in the order the seed wrote them: CSV (the
    // comparison the issue asks for) and binary (the ceiling for any client of this server).
    let directory = tempfile::tempdir()?;
    let file = |name: &str| directory.path().join(name).to_string_lossy().into_owned();
    for (format, option) in [("CSV", "CSV"), ("binary", "(FORMAT binary)")] {
        let (users_file, attendance_file) = (file(&format!("users.{format}")), file(&format!("attendance.{format}")));
        psql(
            &database.url,
            &[
                format!("\\copy users TO '{users_file}' {option}"),
                format!("\\copy attendance TO '{attendance_file}' {option}"),
            ],
        )?;
        connection.batch_execute("TRUNCATE attendance, users")?;
        checkpoint(connection);
        let copy_time = psql(
            &database.url,
            &[
                format!("\\copy users FROM '{users_file}' {option}"),
                format!("\\copy attendance FROM '{attendance_file}' {option}"),
            ],
        )?;
        if count_pg(connection)? != (n_users, n_attendance) {
            return Err("\\copy loaded a different number of rows".into());
        }
        let copy_seconds = copy_time.as_secs_f64();
        let ratio = copy_seconds / seed_seconds;
        table.push(Row {
            what: format!("psql `\\copy ... FROM ... {option}`, same rows, one transaction"),
            rows,
            seconds: copy_seconds,
            peak_rss: None,
            note: if format == "CSV" {
                format!(
                    "seed is {ratio:.2}x this rate (target ≥ 1.5x: {})",
                    if ratio >= 1.5 { "met" } else { "missed" }
                )
            } else {
                format!("seed is {ratio:.2}x this rate")
            },
        });
    }

    Ok(())
}

/// One INSERT per row: a sample of the same rows into a new database.
fn one_row_at_a_time(
    server: &str,
    connection: &mut PgConnection,
    rows: i64,
    seed_seconds: f64,
    table: &mut Vec<Row>,
) -> Result<()> {
    let single = ScratchPg::create(server, "single")?;
    migrate(&single.url)?;
    let sample_users: Vec<UserRow> = users::table
        .order(users::id)
        .limit(ONE_BY_ONE_SAMPLE / 200)
        .select(UserRow::as_select())
        .load(connection)?;
    let ids: Vec<_> = sample_users.iter().map(|user| user.id).collect();
    let sample_attendance: Vec<AttendanceRow> = attendance::table
        .filter(attendance::user_id.eq_any(&ids))
        .order(attendance::id)
        .limit(ONE_BY_ONE_SAMPLE - i64::try_from(sample_users.len())?)
        .select(AttendanceRow::as_select())
        .load(connection)?;
    let mut target = single.connect()?;
    checkpoint(&mut target);
    let started = Instant::now();
    target.transaction::<_, diesel::result::Error, _>(|target| {
        for user in &sample_users {
            diesel::insert_into(users::table).values(user).execute(target)?;
        }
        for record in &sample_attendance {
            diesel::insert_into(attendance::table).values(record).execute(target)?;
        }
        Ok(())
    })?;
    let single_seconds = started.elapsed().as_secs_f64();
    let sample = i64::try_from(sample_users.len() + sample_attendance.len())?;
    #[expect(clippy::cast_precision_loss, reason = "rates for people to read")]
    let ratio = (rows as f64 / seed_seconds) / (sample as f64 / single_seconds);
    table.push(Row {
        what: format!("one INSERT per row (diesel, one transaction), sample of {sample} rows"),
        rows: sample,
        seconds: single_seconds,
        peak_rss: None,
        note: format!("seed is {ratio:.1}x this rate"),
    });
    Ok(())
}

fn sqlite(table: &mut Vec<Row>) -> Result<()> {
    let directory = tempfile::tempdir()?;
    let file = directory.path().join("bench.sqlite3");
    let url = file.to_string_lossy().into_owned();
    let seeded = measured(
        seed_binary(),
        &seed_arguments(),
        &[("DATABASE_URL", &url), ("RUST_LOG", "warn")],
    )?;
    let mut connection = SqliteConnection::establish(&url)?;
    let n_users: i64 = users::table.count().get_result(&mut connection)?;
    let n_attendance: i64 = attendance::table.count().get_result(&mut connection)?;
    let seconds = seeded.wall.as_secs_f64();
    table.push(Row {
        what: "seed → SQLite (multi-row INSERT, one transaction)".into(),
        rows: n_users + n_attendance,
        seconds,
        peak_rss: Some(seeded.peak_rss_bytes),
        note: format!(
            "{n_attendance} attendance records in {seconds:.1} s (target < 15 s): {}",
            if seconds < 15.0 { "met" } else { "missed" }
        ),
    });
    drop(connection);
    remove(directory.path());
    Ok(())
}

fn remove(directory: &Path) {
    let _ = std::fs::remove_dir_all(directory);
}

#[expect(clippy::cast_precision_loss, reason = "rates and sizes for people to read")]
fn print_table(table: &[Row]) {
    say(&format!(
        "\nseed --users {USERS} --days {DAYS} --seed {SEED} (wall time of the whole process: start-up, migration \
         check, password hash, generation, load)\n"
    ));
    say("| load | rows | seconds | rows/s | peak RSS | |");
    say("|---|---:|---:|---:|---:|---|");
    for row in table {
        let rss = row.peak_rss.map_or_else(String::new, |bytes| {
            let mib = bytes as f64 / MIB;
            format!("{mib:.1} MiB{}", if mib < 100.0 { "" } else { " (over 100)" })
        });
        say(&format!(
            "| {} | {} | {:.2} | {:.0} | {rss} | {} |",
            row.what,
            row.rows,
            row.seconds,
            row.rows as f64 / row.seconds,
            row.note
        ));
    }
}
