//! Benchmark of issue 11, "fast at any size": a million users with a few days of attendance each,
//! on PostgreSQL and on SQLite, and ratios measured in this one run against anchors measured
//! beside them (pgbench, bare diesel, the first page), each over interleaved samples (A, B, A, B,
//! so that a noisy machine slows both alike), printed as median and min–max of the per-round
//! ratios, with the target and whether it is met.
//!
//! `cargo bench -p tests --bench scale` (PostgreSQL: `TEST_DATABASE_URL`, else the local server;
//! needs `pgbench`, and the `seed` binary built, for `dbctl migrate`). Nothing here asserts
//! on time (absolute times move 40 % between runs on shared machines); every operation's result
//! is checked instead, so a wrong page fails the run rather than being timed.
//!
//! 1. Point read through `DieselStore` (default settings) / pgbench `-S -M prepared`, and / bare
//!    diesel on one `PgConnection` per thread, at 1 and 2 clients (targets ≥ 0.9 and ≥ 0.8).
//!    Also through `DieselStore` / the same with `DATABASE_QUERY_METRICS=off` (issue 14: the
//!    statement metrics' overhead, target ≥ 0.95).
//! 2. Client instructions per point read / bare diesel + r2d2 (defaults) (target ≤ 1.2): this
//!    binary re-runs itself as a worker doing K reads under `perf stat` or callgrind, for two K.
//!    Also / the store with `DATABASE_QUERY_METRICS=off` (target ≤ 1.05).
//! 3. SQLite point read through `DieselStore` / bare diesel `SqliteConnection` (target ≥ 0.9), and
//!    / the store with `DATABASE_QUERY_METRICS=off` (target ≥ 0.95).
//! 4. Keyset page at 90 % depth / first page, forward and backward (target ≤ 1.5).
//! 5. Offset page with each kind of total / keyset first page, at page 1 and at 90 % depth.
//! 6. N+1 / eager page of 100 users with their attendance (target ≥ 5).
//! 7. Substring search (common and rare 3 letters), keyset first page / without search.
//! 8. `dbctl migrate` at head: server sessions (target 1), round trips through a counting
//!    loopback proxy (target ≤ 2, the handshake counted apart), transactions.
//! 9. Backup and verify of the million-user database (`ops::backup`, `ops::verify`), plain and
//!    encrypted with age, on both backends, after the other figures: size against the
//!    database's own, times, rows in the manifest; a verification that fails fails the run.
//!
//! The data is the seed's (`seed::seed_database`, binary `COPY` on PostgreSQL, multi-row
//! `INSERT`s on SQLite), loaded on both backends at once with the migrations' secondary indexes
//! dropped and rebuilt afterwards, as a restore does (the rebuilt schema is checked against the
//! migrated one), then `VACUUM ANALYZE` / `ANALYZE`. The PostgreSQL databases
//! (`bench_scale_<pid>` and `bench_scale_<pid>_pgbench`) and the SQLite file are removed at the
//! end, also when a check fails.

#![expect(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use migrator::Migrate as _;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{Datelike as _, NaiveDate, Utc};
use database::sql_types::{DbTimestamp, DbUuid};
use database::{Database, DatabaseConfig, DatabaseTarget, DbConnection};
use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use domain::{User, UserId};
use migrator::Catalog;
use repo::{
    Cursor, Direction, KeysetRequest, KeysetStart, PageRequest, Position, Repositories as _, Scope, TimeRange, Total,
    TotalMode, UserFilter,
};
use repo_diesel::models::UserRow;
use repo_diesel::repositories::DieselStore;
use repo_diesel::schema::users;
use secrecy::ExposeSecret as _;
use test_fixtures::bench::Spread;
use uuid::Uuid;

const USERS: i64 = 1_000_000;
/// Working days (Monday to Friday) in the history: about a million attendance records each.
const WORKING_DAYS: u32 = 3;
const SEED: u64 = 42;
/// Items per page, the largest page the repositories return.
const PAGE: u32 = 100;
const PAGE_ITEMS: usize = PAGE as usize;
/// Rounds of interleaved samples, and for the slow operations (a second or more each).
const ROUNDS: usize = 5;
const SLOW_ROUNDS: usize = 3;
/// One throughput sample on PostgreSQL (pgbench's `-T` takes whole seconds) and on SQLite.
const PG_SAMPLE_SECONDS: u64 = 2;
const SQLITE_SAMPLE: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_millis(500);
/// A timed sample of a page repeats the call for about this long.
const SAMPLE_BUDGET: Duration = Duration::from_millis(40);
/// About 5 % of the seed's users have it in their name or email; the rare one about 0.03 %.
const COMMON_SEARCH: &str = "son";
const RARE_SEARCH: &str = "zit";
/// Point reads per worker process for the instruction counts; the difference removes start-up.
const WORKER_READS: [u64; 2] = [200, 1_200];
const WORKER_IDS: usize = 200;
/// Environment of a worker process (this binary, re-run for figure 2).
const WORKER_VAR: &str = "BENCH_SCALE_WORKER";
const WORKER_URL_VAR: &str = "BENCH_SCALE_URL";
const WORKER_READS_VAR: &str = "BENCH_SCALE_READS";
const WORKER_IDS_VAR: &str = "BENCH_SCALE_IDS";
/// Bytes in a mebibyte, for figure 9's sizes.
const MIB: f64 = 1_048_576.0;
/// Tried in order when `TEST_DATABASE_URL` is unset: TCP, as pgbench is run.
const LOCAL_SERVERS: [&str; 3] = [
    "postgresql://localhost/postgres",
    "postgresql://postgres@localhost/postgres",
    "postgresql://postgres@127.0.0.1/postgres",
];

diesel::define_sql_function! {
    /// SQL `lower(text)`: on the project's SQLite connections, its Unicode `fold_case`.
    fn lower(text: Text) -> Text;
}

fn main() {
    if let Ok(kind) = std::env::var(WORKER_VAR) {
        worker(&kind);
        return;
    }
    let started = Instant::now();
    let load_average_at_start = load_average();
    let (server, server_source) = server_url();
    // What the figures need besides the databases, checked before the long load.
    let dbctl_binary = dbctl_binary();
    let pgbench_version = Command::new("pgbench")
        .arg("--version")
        .output()
        .unwrap_or_else(|error| panic!("pgbench (postgresql-client) must be installed: {error}"));
    assert!(pgbench_version.status.success(), "pgbench --version failed");
    let today = Utc::now().date_naive();
    let days = days_holding(WORKING_DAYS, today);
    let pid = std::process::id();
    let app = ScratchDatabase::create(&server, format!("bench_scale_{pid}"));
    let pgbench = ScratchDatabase::create(&server, format!("bench_scale_{pid}_pgbench"));
    let directory = tempfile::tempdir().expect("a temporary directory");
    let sqlite_path = directory.path().join("scale.sqlite3");
    let pg_target = DatabaseTarget::postgres_url(&app.url).expect("a valid URL");
    let sqlite_target = DatabaseTarget::sqlite_file(&sqlite_path);

    eprintln!("loading {USERS} users with {days} days of history into PostgreSQL and SQLite at once");
    let loading = Instant::now();
    let (pg_load, sqlite_load, pgbench_init) = std::thread::scope(|scope| {
        let postgres = scope.spawn(|| {
            let load = load(&pg_target, days);
            (load, pgbench_init(&pgbench.url))
        });
        let sqlite = scope.spawn(|| load(&sqlite_target, days));
        let (pg_load, pgbench_init) = postgres.join().expect("the PostgreSQL load");
        (pg_load, sqlite.join().expect("the SQLite load"), pgbench_init)
    });
    let load_wall = loading.elapsed();
    assert_eq!(
        (pg_load.users, pg_load.attendance, pg_load.live_users),
        (sqlite_load.users, sqlite_load.attendance, sqlite_load.live_users),
        "the seed writes the same rows on both backends"
    );
    print_setup(&Setup {
        server: &server,
        server_source,
        today,
        days,
        loads: [("PostgreSQL", &pg_load), ("SQLite", &sqlite_load)],
        load_wall,
        pgbench_init,
        dbctl_binary: &dbctl_binary,
        load_average: load_average_at_start.clone(),
    });

    let mut report = Report::default();
    let range = attendance_range(today, days);
    {
        let store = open_store(&pg_target);
        let ids = live_ids(&store);
        eprintln!("figure 1: PostgreSQL point reads");
        postgres_point_reads(&mut report, &store, &app.url, &pgbench.url, &ids);
        eprintln!("figure 2: client instructions per point read");
        client_instructions(&mut report, &app.url, &ids[..WORKER_IDS]);
        eprintln!("figures 4 to 7 on PostgreSQL");
        pages(&mut report, "postgres", &store, range);
    }
    eprintln!("figure 8: dbctl migrate at head");
    migrate_only(&mut report, &dbctl_binary, &server, &app);
    {
        let store = open_store(&sqlite_target);
        let ids = live_ids(&store);
        eprintln!("figure 3: SQLite point reads");
        sqlite_point_reads(&mut report, &store, &sqlite_path, &ids);
        eprintln!("figures 4 to 7 on SQLite");
        pages(&mut report, "sqlite", &store, range);
    }
    eprintln!("figure 9: backup and verify on PostgreSQL");
    backup_and_verify(&mut report, "postgres", &pg_target, None);
    eprintln!("figure 9: backup and verify on SQLite");
    backup_and_verify(&mut report, "sqlite", &sqlite_target, Some(&sqlite_path));
    report.print();
    println!(
        "\ntotal run time {:.0} s (load {:.0} s); load average {load_average_at_start} at the start, {} at the end",
        started.elapsed().as_secs_f64(),
        load_wall.as_secs_f64(),
        load_average()
    );
}

// ---------------------------------------------------------------------------------------------
// Databases and the load

/// A PostgreSQL database of this run, dropped with this value (also when a panic unwinds).
struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    fn create(server: &str, name: String) -> Self {
        // Identifiers cannot be bound parameters; the name is made of [a-z0-9_] only. One
        // statement per call: libpq runs a multi-statement string as one transaction.
        let mut admin = admin(server);
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\" TEMPLATE template0"),
        ] {
            admin
                .batch_execute(&sql)
                .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        }
        let mut url = url::Url::parse(server).expect("the server URL is a URL");
        url.set_path(&name);
        Self {
            server: server.to_owned(),
            name,
            url: url.into(),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let dropped = PgConnection::establish(&self.server)
            .map_err(|error| error.to_string())
            .and_then(|mut admin| {
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = dropped {
            eprintln!("warning: could not drop database {}: {error}", self.name);
        }
    }
}

fn admin(server: &str) -> PgConnection {
    PgConnection::establish(server).unwrap_or_else(|error| panic!("cannot connect to {server}: {error}"))
}

/// `TEST_DATABASE_URL`, else the first local server that takes a connection, and which it was.
fn server_url() -> (String, &'static str) {
    if let Some(url) = std::env::var("TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        return (url, "TEST_DATABASE_URL");
    }
    for candidate in LOCAL_SERVERS {
        if PgConnection::establish(&format!("{candidate}?connect_timeout=2")).is_ok() {
            return (candidate.to_owned(), "the local server");
        }
    }
    panic!("no PostgreSQL server: set TEST_DATABASE_URL (tried {LOCAL_SERVERS:?})");
}

/// Days of history before `today` that hold `working` weekdays, so that the number of records
/// is about the same whatever day the benchmark runs.
fn days_holding(working: u32, today: NaiveDate) -> u32 {
    let (mut days, mut found) = (0, 0);
    while found < working {
        days += 1;
        if (today - chrono::Days::new(u64::from(days)))
            .weekday()
            .number_from_monday()
            <= 5
        {
            found += 1;
        }
    }
    days
}

/// From the first day of the history to a day after now: every record the seed made.
fn attendance_range(today: NaiveDate, days: u32) -> TimeRange {
    let from = (today - chrono::Days::new(u64::from(days) + 1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    TimeRange::new(from, Utc::now() + chrono::Duration::days(1)).expect("a valid range")
}

/// What a load wrote and how long its parts took.
struct Load {
    users: u64,
    live_users: u64,
    attendance: u64,
    seed: Duration,
    indexes: Duration,
    analyze: Duration,
}

/// An index of `users` or `attendance` that no constraint owns: dropped for the load, rebuilt
/// after it.
#[derive(QueryableByName)]
struct SecondaryIndex {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
    #[diesel(sql_type = Nullable<Text>)]
    comment: Option<String>,
}

/// Migrates the database, then seeds it with its secondary indexes dropped, rebuilds them and
/// analyzes, on a pool of its own (its session settings end with it).
fn load(target: &DatabaseTarget, days: u32) -> Load {
    let database = Database::connect(DatabaseConfig::new(target.clone())).expect("the database opens");
    database.migrate().expect("the migrations apply");
    let mut connection = database.get().expect("a connection");
    let migrated = Catalog::read(&mut connection).expect("the catalog");
    let indexes = secondary_indexes(&mut connection);
    for index in &indexes {
        execute(&mut connection, &format!("DROP INDEX \"{}\"", index.name));
    }
    let config = seed::SeedConfig::new(USERS, days.into(), SEED, false).expect("valid sizes");
    let password_hash = test_fixtures::default_password_hash();
    let started = Instant::now();
    let report = seed::seed_database(
        &mut connection,
        &config,
        seed::Clock::system(),
        password_hash.as_phc(),
        &mut seed::progress::Silent,
    )
    .expect("the seed loads");
    let seed = started.elapsed();
    let backend = target.backend();
    eprintln!(
        "{backend}: seeded in {:.1} s; rebuilding {} indexes",
        seed.as_secs_f64(),
        indexes.len()
    );

    let started = Instant::now();
    let postgres = matches!(*connection, DbConnection::Pg(_));
    // More memory for sorting the index entries, and no statement timeout for building them
    // (a trigram index on a million users takes about half a minute): this pool's sessions only.
    let settings = if postgres {
        "SET maintenance_work_mem = '256MB'; SET statement_timeout = 0"
    } else {
        "PRAGMA cache_size = -262144"
    };
    execute(&mut connection, settings);
    for index in &indexes {
        execute(&mut connection, &index.definition);
        if let Some(comment) = &index.comment {
            execute(&mut connection, comment);
        }
    }
    let index_time = started.elapsed();
    assert_eq!(
        Catalog::read(&mut connection).expect("the catalog"),
        migrated,
        "the rebuilt indexes give back the migrated schema"
    );
    let started = Instant::now();
    if postgres {
        execute(&mut connection, "VACUUM ANALYZE");
        // Flushes the load's dirty pages now rather than during a measurement (superuser or
        // pg_checkpoint only; harmless without).
        let _ = connection.batch_execute("CHECKPOINT");
    } else {
        execute(&mut connection, "ANALYZE");
    }
    let analyze = started.elapsed();
    eprintln!(
        "{backend}: indexes rebuilt in {:.1} s, analyzed in {:.1} s",
        index_time.as_secs_f64(),
        analyze.as_secs_f64()
    );

    let users_count: i64 = users::table.count().get_result(&mut *connection).expect("a count");
    let live: i64 = users::table
        .filter(users::deleted_at.is_null())
        .count()
        .get_result(&mut *connection)
        .expect("a count");
    let attendance_count: i64 = repo_diesel::schema::attendance::table
        .count()
        .get_result(&mut *connection)
        .expect("a count");
    let load = Load {
        users: u64::try_from(users_count).expect("a count"),
        live_users: u64::try_from(live).expect("a count"),
        attendance: u64::try_from(attendance_count).expect("a count"),
        seed,
        indexes: index_time,
        analyze,
    };
    assert_eq!(
        (load.users, load.attendance),
        (report.users.rows, report.attendance.rows),
        "the tables hold what the seed wrote"
    );
    assert_eq!(load.users, u64::try_from(USERS).expect("positive"));
    assert!(load.attendance >= load.users, "a few days of attendance per user");
    load
}

/// The secondary indexes of the two tables, with the statements that rebuild them exactly.
fn secondary_indexes(connection: &mut DbConnection) -> Vec<SecondaryIndex> {
    let indexes = match connection {
        DbConnection::Pg(pg) => diesel::sql_query(
            "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS definition, \
                    CASE WHEN d.description IS NOT NULL \
                      THEN format('COMMENT ON INDEX %I IS %L', c.relname, d.description) END AS comment \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             LEFT JOIN pg_description d \
               ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0 \
             WHERE i.indrelid IN ('users'::regclass, 'attendance'::regclass) \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
             ORDER BY 1",
        )
        .load(pg),
        DbConnection::Sqlite(sqlite) => diesel::sql_query(
            "SELECT name, sql AS definition, NULL AS comment FROM sqlite_master \
             WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ('users', 'attendance') ORDER BY 1",
        )
        .load(sqlite),
    };
    let indexes = indexes.expect("the index definitions");
    assert!(!indexes.is_empty(), "the migrations create secondary indexes");
    indexes
}

fn execute(connection: &mut DbConnection, sql: &str) {
    connection
        .batch_execute(sql)
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// `pgbench -i -s 10`: a million accounts, like the million users.
fn pgbench_init(url: &str) -> Duration {
    let started = Instant::now();
    let output = Command::new("pgbench")
        .args(["-i", "-s", "10", "-q", url])
        .output()
        .unwrap_or_else(|error| panic!("pgbench (postgresql-client) must be installed: {error}"));
    assert!(
        output.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn open_store(target: &DatabaseTarget) -> DieselStore {
    let database = Database::connect(DatabaseConfig::new(target.clone())).expect("the database opens");
    DieselStore::new(Arc::new(database))
}

/// A store whose statements are not timed (`DATABASE_QUERY_METRICS=off`): the baseline of the
/// statement metrics' overhead.
fn open_unmetered_store(target: &DatabaseTarget) -> DieselStore {
    let mut config = DatabaseConfig::new(target.clone());
    config.metrics.query_metrics = false;
    DieselStore::new(Arc::new(Database::connect(config).expect("the database opens")))
}

/// Every live user's id, in id order.
fn live_ids(store: &DieselStore) -> Vec<Uuid> {
    let mut connection = store.database().get().expect("a connection");
    let ids: Vec<DbUuid> = users::table
        .filter(users::deleted_at.is_null())
        .select(users::id)
        .order(users::id)
        .load(&mut *connection)
        .expect("the live ids");
    ids.into_iter().map(|id| id.0).collect()
}

/// The `dbctl` binary of this target directory (the newer of release and debug).
fn dbctl_binary() -> PathBuf {
    let executable = std::env::current_exe().expect("this executable");
    // <target>/<profile>/deps/scale-<hash>
    let target = executable
        .ancestors()
        .nth(3)
        .expect("the benchmark runs from a target directory");
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("dbctl"))
        .filter(|path| path.is_file())
        .max_by_key(|path| path.metadata().and_then(|metadata| metadata.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no dbctl binary in {}/{{release,debug}}: build it first with `cargo build -p dbctl`",
                target.display()
            )
        })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

struct Setup<'a> {
    server: &'a str,
    server_source: &'static str,
    today: NaiveDate,
    days: u32,
    loads: [(&'static str, &'a Load); 2],
    load_wall: Duration,
    pgbench_init: Duration,
    dbctl_binary: &'a Path,
    load_average: String,
}

fn print_setup(setup: &Setup<'_>) {
    let (_, load) = setup.loads[0];
    println!(
        "data: {} users ({} live), {} attendance records: seed {SEED}, {} days before {} ({WORKING_DAYS} working days)",
        load.users, load.live_users, load.attendance, setup.days, setup.today
    );
    println!(
        "PostgreSQL: {} (from {}); pgbench -i -s 10 in {:.1} s",
        url::Url::parse(setup.server).map_or_else(|_| "?".to_owned(), |url| redacted(&url)),
        setup.server_source,
        setup.pgbench_init.as_secs_f64()
    );
    for (backend, load) in setup.loads {
        println!(
            "load on {backend}: seed {:.1} s ({:.0} rows/s), indexes rebuilt in {:.1} s, analyze {:.1} s",
            load.seed.as_secs_f64(),
            float(load.users + load.attendance) / load.seed.as_secs_f64(),
            load.indexes.as_secs_f64(),
            load.analyze.as_secs_f64()
        );
    }
    println!("point reads: the stores, bare diesel and pgbench use the same URL (TCP, libpq's default sslmode)");
    println!(
        "both loads ran at once: {:.1} s wall; seed binary for figure 8: {}; {} cores, load average {}",
        setup.load_wall.as_secs_f64(),
        setup.dbctl_binary.display(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        setup.load_average
    );
}

fn redacted(url: &url::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.into()
}

// ---------------------------------------------------------------------------------------------
// Figures 1 to 3: point reads

#[track_caller]
fn store_get(store: &DieselStore, id: Uuid) {
    let user = store
        .users()
        .get(UserId::from_uuid(id), Scope::Live)
        .unwrap_or_else(|error| panic!("read of {id}: {error}"));
    assert_eq!(*user.id.as_uuid(), id, "the read returns the user asked for");
}

/// The read the repository's `get` makes, on a bare diesel connection:
/// `users.filter(id.eq(..)).filter(deleted_at.is_null()).select(UserRow::as_select())`.
trait BareRead {
    fn bare_get(&mut self, id: Uuid);
}

macro_rules! bare_read {
    ($($connection:ty),*) => {$(
        impl BareRead for $connection {
            #[track_caller]
            fn bare_get(&mut self, id: Uuid) {
                let row: UserRow = users::table
                    .filter(users::id.eq(DbUuid(id)))
                    .filter(users::deleted_at.is_null())
                    .select(UserRow::as_select())
                    .get_result(self)
                    .unwrap_or_else(|error| panic!("bare read of {id}: {error}"));
                assert_eq!(row.id.0, id, "the read returns the user asked for");
            }
        }
    )*};
}

bare_read!(PgConnection, SqliteConnection);

/// A small, fast pseudo-random stream (`SplitMix64`) for picking ids.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let length = u64::try_from(items.len()).expect("a length");
        items[usize::try_from(self.next() % length).expect("an index")]
    }
}

/// Reads per second of `threads` threads calling `read(thread, random)` for `duration`.
fn reads_per_second(threads: usize, duration: Duration, read: &(impl Fn(usize, &mut Random) + Sync)) -> f64 {
    let barrier = Barrier::new(threads);
    let seed = u64::from(Utc::now().timestamp_subsec_nanos());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut random = Random(seed ^ (u64::try_from(thread).expect("a thread index") << 32));
                    barrier.wait();
                    let started = Instant::now();
                    let mut reads = 0_u64;
                    while started.elapsed() < duration {
                        read(thread, &mut random);
                        reads += 1;
                    }
                    float(reads) / started.elapsed().as_secs_f64()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a reader thread"))
            .sum()
    })
}

/// pgbench `-S -M prepared`: its transactions per second without connection set-up.
fn pgbench_tps(url: &str, clients: usize, seconds: u64) -> f64 {
    let (clients, seconds) = (clients.to_string(), seconds.to_string());
    let output = Command::new("pgbench")
        .args([
            "-n", "-S", "-M", "prepared", "-c", &clients, "-j", &clients, "-T", &seconds, url,
        ])
        .output()
        .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tps = stdout
        .lines()
        .filter(|line| line.contains("without initial connection time") || line.contains("excluding connections"))
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {stdout}"));
    assert!(tps > 0.0, "pgbench ran no transactions: {stdout}");
    tps
}

fn postgres_point_reads(report: &mut Report, store: &DieselStore, url: &str, pgbench_url: &str, ids: &[Uuid]) {
    let sample = Duration::from_secs(PG_SAMPLE_SECONDS);
    for (clients, target) in [(1, 0.9), (2, 0.8)] {
        let bare: Vec<Mutex<PgConnection>> = (0..clients).map(|_| Mutex::new(admin(url))).collect();
        let ours = |duration: Duration| {
            reads_per_second(clients, duration, &|_, random: &mut Random| {
                store_get(store, random.pick(ids));
            })
        };
        let unmetered_store = open_unmetered_store(&DatabaseTarget::postgres_url(url).expect("a valid URL"));
        let unmetered = |duration: Duration| {
            reads_per_second(clients, duration, &|_, random: &mut Random| {
                store_get(&unmetered_store, random.pick(ids));
            })
        };
        let plain = |duration: Duration| {
            reads_per_second(clients, duration, &|thread, random: &mut Random| {
                lock(&bare[thread]).bare_get(random.pick(ids));
            })
        };
        ours(WARM_UP);
        plain(WARM_UP);
        unmetered(WARM_UP);
        let [pgbench_rate, store_rate, bare_rate, unmetered_rate] = interleaved(
            ROUNDS,
            &mut [
                &mut || pgbench_tps(pgbench_url, clients, PG_SAMPLE_SECONDS),
                &mut || ours(sample),
                &mut || plain(sample),
                &mut || unmetered(sample),
            ],
        );
        let what = |text: &str| {
            format!(
                "point read, {clients} client{}: {text}",
                if clients == 1 { "" } else { "s" }
            )
        };
        report.ratio(
            Measure::new("1", "postgres", what("DieselStore / pgbench -S -M prepared")).target(Target::AtLeast(target)),
            &store_rate,
            &pgbench_rate,
            Unit::ReadsPerSecond,
        );
        report.ratio(
            Measure::new("1", "postgres", what("DieselStore / bare diesel PgConnection")),
            &store_rate,
            &bare_rate,
            Unit::ReadsPerSecond,
        );
        report.ratio(
            Measure::new("1", "postgres", what("bare diesel PgConnection / pgbench")),
            &bare_rate,
            &pgbench_rate,
            Unit::ReadsPerSecond,
        );
        report.ratio(
            Measure::new(
                "1",
                "postgres",
                what("DieselStore / DieselStore with DATABASE_QUERY_METRICS=off (the metrics' overhead)"),
            )
            .target(Target::AtLeast(0.95)),
            &store_rate,
            &unmetered_rate,
            Unit::ReadsPerSecond,
        );
    }
}

fn sqlite_point_reads(report: &mut Report, store: &DieselStore, path: &Path, ids: &[Uuid]) {
    let path = path.to_str().expect("a UTF-8 path");
    for clients in [1, 2] {
        let bare: Vec<Mutex<SqliteConnection>> = (0..clients)
            .map(|_| Mutex::new(SqliteConnection::establish(path).expect("the SQLite file opens")))
            .collect();
        let ours = |duration: Duration| {
            reads_per_second(clients, duration, &|_, random: &mut Random| {
                store_get(store, random.pick(ids));
            })
        };
        let plain = |duration: Duration| {
            reads_per_second(clients, duration, &|thread, random: &mut Random| {
                lock(&bare[thread]).bare_get(random.pick(ids));
            })
        };
        let unmetered_store = open_unmetered_store(&DatabaseTarget::sqlite_file(path));
        let unmetered = |duration: Duration| {
            reads_per_second(clients, duration, &|_, random: &mut Random| {
                store_get(&unmetered_store, random.pick(ids));
            })
        };
        ours(WARM_UP);
        plain(WARM_UP);
        unmetered(WARM_UP);
        let [store_rate, bare_rate, unmetered_rate] = interleaved(
            ROUNDS,
            &mut [&mut || ours(SQLITE_SAMPLE), &mut || plain(SQLITE_SAMPLE), &mut || {
                unmetered(SQLITE_SAMPLE)
            }],
        );
        report.ratio(
            Measure::new(
                "3",
                "sqlite",
                format!(
                    "point read, {clients} thread{}: DieselStore / DieselStore with DATABASE_QUERY_METRICS=off \
                     (the metrics' overhead)",
                    if clients == 1 { "" } else { "s" }
                ),
            )
            .target(Target::AtLeast(0.95)),
            &store_rate,
            &unmetered_rate,
            Unit::ReadsPerSecond,
        );
        report.ratio(
            Measure::new(
                "3",
                "sqlite",
                format!(
                    "point read, {clients} thread{}: DieselStore / bare diesel SqliteConnection",
                    if clients == 1 { "" } else { "s" }
                ),
            )
            .target(Target::AtLeast(0.9)),
            &store_rate,
            &bare_rate,
            Unit::ReadsPerSecond,
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Figure 2: instructions this process's user space runs per point read, store against bare
/// diesel with an r2d2 pool, from worker processes doing two numbers of reads.
fn client_instructions(report: &mut Report, url: &str, ids: &[Uuid]) {
    let measure = Measure::new(
        "2",
        "postgres",
        "client instructions per point read: DieselStore / bare diesel + r2d2 (its defaults)",
    )
    .target(Target::AtMost(1.2));
    let counter = match InstructionCounter::find() {
        Ok(counter) => counter,
        Err(reason) => {
            report.not_measured(measure, reason);
            return;
        }
    };
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let ids = ids.join(",");
    let run = |kind: &str, reads: u64| counter.count(kind, reads, url, &ids);
    let [few, many] = WORKER_READS;
    let [
        store_few,
        store_many,
        bare_few,
        bare_many,
        unmetered_few,
        unmetered_many,
    ] = interleaved(
        SLOW_ROUNDS,
        &mut [
            &mut || run("store", few),
            &mut || run("store", many),
            &mut || run("r2d2", few),
            &mut || run("r2d2", many),
            &mut || run("store-unmetered", few),
            &mut || run("store-unmetered", many),
        ],
    );
    let per_read = |few: &[f64], many: &[f64]| -> Vec<f64> {
        let reads = float(WORKER_READS[1] - WORKER_READS[0]);
        let per_read: Vec<f64> = few.iter().zip(many).map(|(few, many)| (many - few) / reads).collect();
        assert!(
            per_read.iter().all(|count| *count > 0.0),
            "more reads must cost more instructions: {few:?} {many:?}"
        );
        per_read
    };
    let store = per_read(&store_few, &store_many);
    report.ratio(
        measure.note(counter.name()),
        &store,
        &per_read(&bare_few, &bare_many),
        Unit::Instructions,
    );
    report.ratio(
        Measure::new(
            "2",
            "postgres",
            "client instructions per point read: DieselStore / DieselStore with DATABASE_QUERY_METRICS=off \
             (the statement metrics' overhead)",
        )
        .target(Target::AtMost(1.05))
        .note(counter.name()),
        &store,
        &per_read(&unmetered_few, &unmetered_many),
        Unit::Instructions,
    );
}

/// How instructions of a child process are counted.
enum InstructionCounter {
    Perf,
    Callgrind,
}

impl InstructionCounter {
    /// `perf stat -e instructions:u` where the machine exposes the counter, else callgrind.
    fn find() -> Result<Self, String> {
        let perf = Self::Perf.run(&Command::new("true"));
        if perf.is_ok() {
            return Ok(Self::Perf);
        }
        let callgrind = Self::Callgrind.run(&Command::new("true"));
        if callgrind.is_ok() {
            return Ok(Self::Callgrind);
        }
        Err(format!(
            "perf: {}; valgrind: {}",
            perf.err().unwrap_or_default(),
            callgrind.err().unwrap_or_default()
        ))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Perf => "perf stat -e instructions:u",
            Self::Callgrind => "valgrind --tool=callgrind (perf has no instructions:u counter here)",
        }
    }

    /// Instructions of a worker doing `reads` point reads of `kind`.
    fn count(&self, kind: &str, reads: u64, url: &str, ids: &str) -> f64 {
        let executable = std::env::current_exe().expect("this executable");
        let mut command = Command::new(executable);
        command
            .env(WORKER_VAR, kind)
            .env(WORKER_URL_VAR, url)
            .env(WORKER_READS_VAR, reads.to_string())
            .env(WORKER_IDS_VAR, ids);
        self.run(&command)
            .unwrap_or_else(|error| panic!("the {kind} worker ({reads} reads): {error}"))
    }

    /// Runs `command` under the counter and returns its count.
    fn run(&self, command: &Command) -> Result<f64, String> {
        let mut counted = match self {
            Self::Perf => {
                let mut perf = Command::new("perf");
                perf.args(["stat", "-x,", "-e", "instructions:u", "--"]);
                perf
            }
            Self::Callgrind => {
                let mut valgrind = Command::new("valgrind");
                valgrind.args(["--tool=callgrind", "--callgrind-out-file=/dev/null", "--"]);
                valgrind
            }
        };
        counted.arg(command.get_program()).args(command.get_args());
        for (name, value) in command.get_envs() {
            if let Some(value) = value {
                counted.env(name, value);
            }
        }
        let output = counted.output().map_err(|error| error.to_string())?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            return Err(format!("exit status {}: {}", output.status, tail.join(" | ")));
        }
        let count = match self {
            // "<count>,<unit>,instructions:u,..."; "<not supported>" where there is no counter.
            Self::Perf => stderr
                .lines()
                .find(|line| line.contains("instructions"))
                .and_then(|line| line.split(',').next()?.parse::<f64>().ok()),
            // "==<pid>== Collected : <count>"
            Self::Callgrind => stderr
                .lines()
                .find_map(|line| line.split_once("Collected :")?.1.trim().parse::<f64>().ok()),
        };
        count.ok_or_else(|| {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            format!("no instruction count: {}", tail.join(" | "))
        })
    }
}

/// Worker mode: `BENCH_SCALE_READS` point reads of the ids in `BENCH_SCALE_IDS`, through the
/// store (`store`) or bare diesel with an r2d2 pool of its defaults (`r2d2`).
fn worker(kind: &str) {
    let variable = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for a worker"));
    let url = variable(WORKER_URL_VAR);
    let reads: usize = variable(WORKER_READS_VAR).parse().expect("a number of reads");
    let ids: Vec<Uuid> = variable(WORKER_IDS_VAR)
        .split(',')
        .map(|id| id.parse().expect("a UUID"))
        .collect();
    let ids = ids.iter().copied().cycle().take(reads);
    match kind {
        "store" => {
            let store = open_store(&DatabaseTarget::postgres_url(&url).expect("a valid URL"));
            ids.for_each(|id| store_get(&store, id));
        }
        "store-unmetered" => {
            let store = open_unmetered_store(&DatabaseTarget::postgres_url(&url).expect("a valid URL"));
            ids.for_each(|id| store_get(&store, id));
        }
        "r2d2" => {
            let pool = diesel::r2d2::Pool::builder()
                .build(diesel::r2d2::ConnectionManager::<PgConnection>::new(url))
                .expect("the pool opens");
            ids.for_each(|id| pool.get().expect("a connection").bare_get(id));
        }
        other => panic!("unknown worker {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Figures 4 to 7: pages

/// `(created_at, id)` of a user in list order.
type ListPosition = (DbTimestamp, DbUuid);

/// What the pages of one backend are checked against, read by SQL.
struct Expected {
    live: u64,
    /// The first 100 live users.
    head: Vec<Uuid>,
    /// Offset of the 90 % position, a multiple of the page size.
    depth: u64,
    /// The users from `depth - 100` to `depth + 100`, both included.
    window: Vec<ListPosition>,
}

impl Expected {
    fn read(store: &DieselStore, live: u64) -> Self {
        let mut connection = store.database().get().expect("a connection");
        let page = u64::from(PAGE);
        let depth = live * 9 / 10 / page * page;
        let head = positions(&mut connection, 0, page)
            .into_iter()
            .map(|(_, id)| id.0)
            .collect();
        let window = positions(&mut connection, depth - page, 2 * page + 1);
        Self {
            live,
            head,
            depth,
            window,
        }
    }

    fn ids(&self, range: std::ops::Range<usize>) -> Vec<Uuid> {
        self.window[range].iter().map(|(_, id)| id.0).collect()
    }

    /// The list position at 90 % depth, as a cursor pointing `direction`.
    fn cursor(&self, direction: Direction) -> Cursor {
        let (created_at, id) = self.window[PAGE_ITEMS];
        // The list's identity as `list_context` in repo-diesel's users.rs builds it for the
        // live list without search; a cursor for another list is refused, which fails the run.
        let context = format!("users|{:?}|", Scope::Live);
        Cursor::encode(
            Position {
                created_at: created_at.0,
                id: id.0,
                direction,
            },
            &context,
        )
    }
}

fn positions(connection: &mut DbConnection, offset: u64, count: u64) -> Vec<ListPosition> {
    users::table
        .filter(users::deleted_at.is_null())
        .order((users::created_at.asc(), users::id.asc()))
        .offset(i64::try_from(offset).expect("an offset"))
        .limit(i64::try_from(count).expect("a count"))
        .select((users::created_at, users::id))
        .load(connection)
        .expect("list positions")
}

#[track_caller]
fn check_items(what: &str, items: &[User], expected: &[Uuid]) {
    let ids: Vec<Uuid> = items.iter().map(|user| *user.id.as_uuid()).collect();
    assert!(
        ids == expected,
        "{what}: got {} users, expected {} (first {:?}, expected {:?})",
        ids.len(),
        expected.len(),
        ids.first(),
        expected.first()
    );
}

fn pages(report: &mut Report, backend: &'static str, store: &DieselStore, range: TimeRange) {
    let live = {
        let mut connection = store.database().get().expect("a connection");
        let live: i64 = users::table
            .filter(users::deleted_at.is_null())
            .count()
            .get_result(&mut *connection)
            .expect("a count");
        u64::try_from(live).expect("a count")
    };
    let expected = Expected::read(store, live);
    keyset_pages(report, backend, store, &expected);
    offset_pages(report, backend, store, &expected);
    eager_loading(report, backend, store, range);
    searches(report, backend, store, &expected);
}

fn keyset_request(start: KeysetStart) -> KeysetRequest {
    KeysetRequest::new(start, PAGE).expect("a valid page size")
}

/// Seconds per call of `operation`, repeated for about [`SAMPLE_BUDGET`] per sample; two first
/// calls warm up and set the repetitions.
fn timed(mut operation: impl FnMut()) -> impl FnMut() -> f64 {
    operation();
    let started = Instant::now();
    operation();
    let one = started.elapsed().as_nanos().max(1);
    let calls = u32::try_from((SAMPLE_BUDGET.as_nanos() / one).clamp(1, 1_000)).expect("at most 1,000");
    move || {
        let started = Instant::now();
        for _ in 0..calls {
            operation();
        }
        started.elapsed().as_secs_f64() / f64::from(calls)
    }
}

/// Figure 4: keyset pages at 90 % depth against the first page, both ways.
fn keyset_pages(report: &mut Report, backend: &'static str, store: &DieselStore, expected: &Expected) {
    let users = store.users();
    let filter = UserFilter::default();
    let page = |what: &str, request: &KeysetRequest, ids: &[Uuid]| {
        let page = users
            .list_keyset(&filter, request)
            .unwrap_or_else(|error| panic!("{what}: {error}"));
        check_items(what, &page.items, ids);
        page
    };
    let size = PAGE_ITEMS;
    let first = keyset_request(KeysetStart::First);
    let first_page = page("keyset first page", &first, &expected.head);
    let second = page(
        "keyset second page",
        &keyset_request(KeysetStart::After(first_page.next.expect("a next cursor"))),
        &positions(
            &mut store.database().get().expect("a connection"),
            u64::from(PAGE),
            u64::from(PAGE),
        )
        .into_iter()
        .map(|(_, id)| id.0)
        .collect::<Vec<_>>(),
    );
    // The first page again, read backward from the second page's cursor.
    let first_backward = keyset_request(KeysetStart::Before(second.previous.expect("a previous cursor")));
    let deep_forward = keyset_request(KeysetStart::After(expected.cursor(Direction::Forward)));
    let deep_backward = keyset_request(KeysetStart::Before(expected.cursor(Direction::Backward)));
    let (after, before) = (expected.ids(size + 1..2 * size + 1), expected.ids(0..size));
    let [first_forward, deep_forward, first_backward, deep_backward] = interleaved(
        ROUNDS,
        &mut [
            &mut timed(|| {
                page("keyset first page", &first, &expected.head);
            }),
            &mut timed(|| {
                page("keyset page after 90 %", &deep_forward, &after);
            }),
            &mut timed(|| {
                page("keyset first page backward", &first_backward, &expected.head);
            }),
            &mut timed(|| {
                page("keyset page before 90 %", &deep_backward, &before);
            }),
        ],
    );
    report.ratio(
        Measure::new("4", backend, "keyset page at 90 % depth / first page, forward (After)")
            .target(Target::AtMost(1.5)),
        &deep_forward,
        &first_forward,
        Unit::Seconds,
    );
    report.ratio(
        Measure::new(
            "4",
            backend,
            "keyset page at 90 % depth / first page, backward (Before)",
        )
        .target(Target::AtMost(1.5)),
        &deep_backward,
        &first_backward,
        Unit::Seconds,
    );
}

#[track_caller]
fn check_total(what: &str, total: Total, mode: TotalMode, live: u64) {
    let plausible = |estimate: u64| (live / 2..=live * 2).contains(&estimate);
    let ok = match (mode, total) {
        // SQLite keeps no estimates and counts exactly.
        (TotalMode::Exact | TotalMode::Estimate, Total::Exact(exact)) => exact == live,
        (TotalMode::Estimate, Total::Estimate(estimate)) => plausible(estimate),
        (TotalMode::Skip, Total::NotCounted) => true,
        _ => false,
    };
    assert!(ok, "{what}: total {total:?} for {mode:?} of {live} live users");
}

/// Figure 5: offset pages with each kind of total against the keyset first page, at page 1
/// and at 90 % depth.
fn offset_pages(report: &mut Report, backend: &'static str, store: &DieselStore, expected: &Expected) {
    let users = store.users();
    let filter = &UserFilter::default();
    let first = keyset_request(KeysetStart::First);
    let keyset = || {
        let page = users.list_keyset(filter, &first).expect("keyset first page");
        check_items("keyset first page", &page.items, &expected.head);
    };
    let deep_page = u32::try_from(expected.depth / u64::from(PAGE) + 1).expect("a page number");
    let deep_ids = expected.ids(PAGE_ITEMS..2 * PAGE_ITEMS);
    for (number, ids, rounds) in [(1, &expected.head, ROUNDS), (deep_page, &deep_ids, SLOW_ROUNDS)] {
        let offset = |mode: TotalMode| {
            let what = format!("offset page {number} with {mode:?} total");
            timed(move || {
                let request = PageRequest::new(number, PAGE).expect("a valid page").with_total(mode);
                let page = users
                    .list(filter, request)
                    .unwrap_or_else(|error| panic!("{what}: {error}"));
                check_items(&what, &page.items, ids);
                check_total(&what, page.total, mode, expected.live);
                assert!(page.has_next, "{what}: more pages follow");
            })
        };
        let [mut exact, mut estimate, mut skip] = [TotalMode::Exact, TotalMode::Estimate, TotalMode::Skip].map(offset);
        let [keyset, exact, estimate, skip] =
            interleaved(rounds, &mut [&mut timed(keyset), &mut exact, &mut estimate, &mut skip]);
        let depth = if number == 1 {
            "page 1".to_owned()
        } else {
            format!("page {number} (90 % depth, informational)")
        };
        for (mode, samples) in [("Exact", &exact), ("Estimate", &estimate), ("Skip", &skip)] {
            report.ratio(
                Measure::new(
                    "5",
                    backend,
                    format!("offset {depth}, total {mode} / keyset first page"),
                ),
                samples,
                &keyset,
                Unit::Seconds,
            );
        }
    }
}

/// A page of users with their attendance ids, as the comparison sees it.
type UsersWithAttendance = Vec<(UserId, Vec<domain::AttendanceId>)>;

/// Figure 6: a page of users with their attendance, one query per user against the eager load.
fn eager_loading(report: &mut Report, backend: &'static str, store: &DieselStore, range: TimeRange) {
    let filter = UserFilter::default();
    for (mode, rounds) in [(TotalMode::Skip, ROUNDS), (TotalMode::Exact, SLOW_ROUNDS)] {
        let request = PageRequest::new(1, PAGE).expect("a valid page").with_total(mode);
        let n_plus_one = || -> UsersWithAttendance {
            let page = store.users().list(&filter, request).expect("a page of users");
            page.items
                .iter()
                .map(|user| {
                    let records = store
                        .attendance()
                        .list_for_user(user.id, range, Scope::Live)
                        .expect("a user's attendance");
                    (user.id, records.iter().map(|record| record.id).collect())
                })
                .collect()
        };
        let eager = || -> UsersWithAttendance {
            let page = store
                .users()
                .list_with_attendance(&filter, request, range)
                .expect("a page of users with attendance");
            page.items
                .iter()
                .map(|item| (item.user.id, item.attendance.iter().map(|record| record.id).collect()))
                .collect()
        };
        let loaded = eager();
        let records: usize = loaded.iter().map(|(_, records)| records.len()).sum();
        assert_eq!(loaded.len(), PAGE_ITEMS, "a full page of users");
        assert!(
            records >= loaded.len(),
            "the page's users have attendance to load ({records})"
        );
        let [n_plus_one, eager] = interleaved(
            rounds,
            &mut [
                &mut timed(|| assert!(n_plus_one() == loaded, "N+1 loads what the eager load does")),
                &mut timed(|| assert!(eager() == loaded, "the eager load is stable")),
            ],
        );
        let measure = Measure::new(
            "6",
            backend,
            format!("N+1 / eager, {PAGE} users with their attendance, total {mode:?}"),
        )
        .note(format!("{records} records"));
        report.ratio(
            if mode == TotalMode::Skip {
                measure.target(Target::AtLeast(5.0))
            } else {
                measure
            },
            &n_plus_one,
            &eager,
            Unit::Seconds,
        );
    }
}

/// The live users whose email or name holds `search`: how many, and the first page's ids.
fn matching(store: &DieselStore, search: &str) -> (i64, Vec<Uuid>) {
    let mut connection = store.database().get().expect("a connection");
    let pattern = format!("%{search}%");
    let matches = || {
        users::table.filter(users::deleted_at.is_null()).filter(
            lower(users::email)
                .like(pattern.clone())
                .or(lower(users::full_name).like(pattern.clone())),
        )
    };
    let count: i64 = matches().count().get_result(&mut *connection).expect("a count");
    let first: Vec<DbUuid> = matches()
        .order((users::created_at.asc(), users::id.asc()))
        .limit(i64::from(PAGE))
        .select(users::id)
        .load(&mut *connection)
        .expect("the first matches");
    (count, first.into_iter().map(|id| id.0).collect())
}

/// Figure 7: the keyset first page of a substring search against the first page without one.
fn searches(report: &mut Report, backend: &'static str, store: &DieselStore, expected: &Expected) {
    let users = store.users();
    let first = keyset_request(KeysetStart::First);
    let page = |search: Option<&str>, ids: &[Uuid]| {
        let filter = UserFilter {
            search: search.map(str::to_owned),
            ..UserFilter::default()
        };
        let page = users.list_keyset(&filter, &first).expect("a search page");
        check_items(&format!("search {search:?}"), &page.items, ids);
    };
    let (common_count, common) = matching(store, COMMON_SEARCH);
    let (rare_count, rare) = matching(store, RARE_SEARCH);
    assert_eq!(common.len(), PAGE_ITEMS, "{COMMON_SEARCH:?} fills a page");
    assert!(rare_count > 0, "{RARE_SEARCH:?} matches someone");
    let [plain, common_samples, rare_samples] = interleaved(
        ROUNDS,
        &mut [
            &mut timed(|| page(None, &expected.head)),
            &mut timed(|| page(Some(COMMON_SEARCH), &common)),
            &mut timed(|| page(Some(RARE_SEARCH), &rare)),
        ],
    );
    for (search, count, samples) in [
        (COMMON_SEARCH, common_count, &common_samples),
        (RARE_SEARCH, rare_count, &rare_samples),
    ] {
        report.ratio(
            Measure::new(
                "7",
                backend,
                format!("search {search:?}, keyset first page / without search"),
            )
            .note(format!("{count} of {} live users match", expected.live)),
            samples,
            &plain,
            Unit::Seconds,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 8: dbctl migrate at head

#[derive(QueryableByName, Debug, Clone, Copy)]
struct DatabaseStats {
    #[diesel(sql_type = BigInt)]
    sessions: i64,
    #[diesel(sql_type = BigInt)]
    xact_commit: i64,
    #[diesel(sql_type = BigInt)]
    backends: i64,
}

fn database_stats(admin: &mut PgConnection, name: &str) -> DatabaseStats {
    diesel::sql_query(
        "SELECT sessions, xact_commit, numbackends::bigint AS backends FROM pg_stat_database WHERE datname = $1",
    )
    .bind::<Text, _>(name)
    .get_result(admin)
    .expect("pg_stat_database (PostgreSQL 14 or later)")
}

/// Polls the statistics until `settled` holds (the server writes a session's counts when it ends).
fn settled_stats(admin: &mut PgConnection, name: &str, settled: impl Fn(&DatabaseStats) -> bool) -> DatabaseStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = database_stats(admin, name);
        if settled(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "pg_stat_database of {name} did not settle: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn migrate_only(report: &mut Report, dbctl: &Path, server: &str, database: &ScratchDatabase) {
    let url = url::Url::parse(&database.url).expect("a URL");
    let upstream = (
        url.host_str().expect("a PostgreSQL server on TCP").to_owned(),
        url.port().unwrap_or(5432),
    );
    let mut admin = admin(server);
    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..SLOW_ROUNDS {
        let before = settled_stats(&mut admin, &database.name, |stats| stats.backends == 0);
        let proxy = Proxy::start(upstream.clone());
        let mut proxied = url.clone();
        proxied.set_host(Some("127.0.0.1")).expect("a host");
        proxied.set_port(Some(proxy.port)).expect("a port");
        // Plain text, so that the proxy can tell the handshake from the queries.
        proxied
            .query_pairs_mut()
            .append_pair("sslmode", "disable")
            .append_pair("gssencmode", "disable");
        let mut command = Command::new(dbctl);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("DATABASE_")) {
            command.env_remove(name);
        }
        let output = command
            .arg("migrate")
            .env("DATABASE_URL", proxied.as_str())
            .env("RUST_LOG", "warn")
            .output()
            .expect("the dbctl binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "dbctl migrate failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout
                .lines()
                .any(|line| line.split_whitespace().eq(["applied", "now:", "0"])),
            "the database is at head: {stdout}"
        );
        let traffic = proxy.finish();
        let after = settled_stats(&mut admin, &database.name, |stats| {
            stats.backends == 0 && stats.sessions - before.sessions >= i64::from(traffic.connections)
        });
        assert_eq!(
            after.sessions - before.sessions,
            i64::from(traffic.connections),
            "every session the server counted went through the proxy"
        );
        for (sample, value) in samples.iter_mut().zip([
            float(traffic.connections.into()),
            float(traffic.round_trips.into()),
            float(traffic.handshake_round_trips.into()),
            float(u64::try_from(after.xact_commit - before.xact_commit).expect("commits only grow")),
        ]) {
            sample.push(value);
        }
    }
    let [sessions, round_trips, handshake, commits] = samples;
    let what = |text: &str| format!("dbctl migrate at head: {text}");
    report.count(
        Measure::new("8", "postgres", what("server sessions (pg_stat_database.sessions)"))
            .target(Target::AtMost(1.0))
            .note("the proxy relayed as many connections"),
        &sessions,
    );
    report.count(
        Measure::new(
            "8",
            "postgres",
            what("round trips after the handshake, all sessions (loopback proxy)"),
        )
        .target(Target::AtMost(2.0)),
        &round_trips,
    );
    report.count(
        Measure::new(
            "8",
            "postgres",
            what("handshake round trips, all sessions (startup, authentication; TLS off)"),
        ),
        &handshake,
    );
    report.count(
        Measure::new("8", "postgres", what("transactions (pg_stat_database.xact_commit)")),
        &commits,
    );
}

/// What went through the proxy.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    connections: u32,
    /// Client requests answered by the server up to its first `ReadyForQuery`.
    handshake_round_trips: u32,
    /// Client requests answered by the server after it.
    round_trips: u32,
    /// Connections that ended before their handshake did.
    unfinished: u32,
}

/// A loopback TCP proxy in front of the server that counts round trips: a burst of client
/// sends followed by a reply of the server is one.
struct Proxy {
    port: u16,
    traffic: Arc<Mutex<Traffic>>,
    open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("the port").port();
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let open = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (traffic, open, stop) = (Arc::clone(&traffic), Arc::clone(&open), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).expect("a blocking socket");
                            open.fetch_add(1, Ordering::SeqCst);
                            let (traffic, open, upstream) = (Arc::clone(&traffic), Arc::clone(&open), upstream.clone());
                            std::thread::spawn(move || {
                                relay(&client, &upstream, &traffic);
                                open.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(error) => panic!("the proxy cannot accept: {error}"),
                    }
                }
            })
        };
        Self {
            port,
            traffic,
            open,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Waits for every relayed connection to close, stops, and returns what went through.
    fn finish(mut self) -> Traffic {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "proxied connections stayed open");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop_accepting();
        let traffic = *lock(&self.traffic);
        assert!(traffic.connections > 0, "the seed connected through the proxy");
        assert_eq!(traffic.unfinished, 0, "every proxied connection finished its handshake");
        traffic
    }

    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// One connection's count: whether the client has sent since the server last answered, and
/// where the server's byte stream is in its messages (type byte, length, body).
#[derive(Default)]
struct Flow {
    client_sent: bool,
    header: [u8; 5],
    header_bytes: usize,
    body_left: usize,
    ready: bool,
    handshake_round_trips: u32,
    round_trips: u32,
}

impl Flow {
    /// Server bytes: counts the round trip they answer and notes the first `ReadyForQuery`.
    fn server_sent(&mut self, mut bytes: &[u8]) {
        if std::mem::take(&mut self.client_sent) {
            if self.ready {
                self.round_trips += 1;
            } else {
                self.handshake_round_trips += 1;
            }
        }
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(bytes.len());
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            let taken = (5 - self.header_bytes).min(bytes.len());
            self.header[self.header_bytes..self.header_bytes + taken].copy_from_slice(&bytes[..taken]);
            self.header_bytes += taken;
            bytes = &bytes[taken..];
            if self.header_bytes == 5 {
                let length = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                self.body_left = usize::try_from(length.saturating_sub(4)).expect("a length");
                self.ready |= self.header[0] == b'Z';
                self.header_bytes = 0;
            }
        }
    }
}

/// Copies both ways between `client` and a new connection to `upstream` until both close.
fn relay(client: &TcpStream, upstream: &(String, u16), traffic: &Mutex<Traffic>) {
    let server = TcpStream::connect((upstream.0.as_str(), upstream.1)).expect("the proxy reaches the server");
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let flow = Mutex::new(Flow::default());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            copy(client, &server, |_| lock(&flow).client_sent = true);
        });
        copy(&server, client, |bytes| lock(&flow).server_sent(bytes));
    });
    let flow = flow.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut traffic = lock(traffic);
    traffic.connections += 1;
    traffic.handshake_round_trips += flow.handshake_round_trips;
    traffic.round_trips += flow.round_trips;
    traffic.unfinished += u32::from(!flow.ready);
}

/// Copies `from` to `to`, calling `seen` with each read before forwarding it, then closes
/// `to`'s sending side.
fn copy(mut from: &TcpStream, mut to: &TcpStream, seen: impl Fn(&[u8])) {
    let mut buffer = [0_u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                seen(&buffer[..read]);
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------------------
// Figure 9: backup and verify

#[derive(QueryableByName)]
struct DatabaseSize {
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

/// The database's own size and how it was measured: `pg_database_size` on PostgreSQL; on SQLite
/// the file's size after a checkpoint that empties the WAL into it (plus what is left in the WAL).
fn database_size(database: &Database, sqlite_file: Option<&Path>) -> (u64, &'static str) {
    let mut connection = database.get().expect("a connection");
    match (&mut *connection, sqlite_file) {
        (DbConnection::Pg(pg), None) => {
            let size: DatabaseSize = diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
                .get_result(pg)
                .expect("pg_database_size");
            (
                u64::try_from(size.bytes).expect("a size"),
                "pg_database_size(current_database())",
            )
        }
        (DbConnection::Sqlite(_), Some(path)) => {
            execute(&mut connection, "PRAGMA wal_checkpoint(TRUNCATE)");
            let size = |path: &Path| std::fs::metadata(path).map_or(0, |metadata| metadata.len());
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let file = std::fs::metadata(path)
                .unwrap_or_else(|error| panic!("the size of {}: {error}", path.display()))
                .len();
            (
                file + size(Path::new(&wal)),
                "the file (and its WAL) after wal_checkpoint(TRUNCATE)",
            )
        }
        _ => panic!("a SQLite database is measured by its file, a PostgreSQL one by the server"),
    }
}

/// Figure 9: `ops::backup` then `ops::verify` of that backup, plain and encrypted with age to a
/// key made for this run, each once (a million rows: seconds to a minute each), with the backups
/// in a temporary directory removed at the end. A verification that does not pass fails the run.
fn backup_and_verify(report: &mut Report, backend: &'static str, target: &DatabaseTarget, sqlite_file: Option<&Path>) {
    let database = Database::connect(DatabaseConfig::new(target.clone())).expect("the database opens");
    let (database_bytes, measured_by) = database_size(&database, sqlite_file);
    report.value(
        Measure::new("9", backend, "database size, MiB (for comparison)"),
        float(database_bytes) / MIB,
        1,
        format!("{database_bytes} bytes; {measured_by}"),
    );
    let scratch = tempfile::Builder::new()
        .prefix("bench-scale-backups-")
        .tempdir()
        .expect("a temporary directory for the backups");
    let identity = age::x25519::Identity::generate();
    let identity_file = scratch.path().join("bench.key");
    std::fs::write(&identity_file, identity.to_string().expose_secret()).expect("the age key is written");
    let recipients =
        ops::encryption::Recipients::parse("bench", &identity.to_public().to_string()).expect("the age public key");
    for (variant, encrypted) in [("plain", false), ("age", true)] {
        let mut settings = ops::BackupSettings::in_directory(scratch.path().join(variant));
        if encrypted {
            settings.recipients = Some(recipients.clone());
            settings.identity_file = Some(identity_file.clone());
        }
        backup_variant(report, backend, &database, &settings, variant, database_bytes);
    }
    drop(database);
    scratch
        .close()
        .expect("the temporary directory of the backups is removed");
}

/// One backup of figure 9 (`variant`: plain, or age when `settings` has recipients) and its
/// verification, each timed, and their rows of the report.
fn backup_variant(
    report: &mut Report,
    backend: &'static str,
    database: &Database,
    settings: &ops::BackupSettings,
    variant: &str,
    database_bytes: u64,
) {
    let what = |text: &str| format!("backup and verify of the 1,000,000-user database, {variant}: {text}");
    eprintln!("{backend}, {variant}: backup");
    let started = Instant::now();
    let manifest = ops::backup(database, settings)
        .unwrap_or_else(|error| panic!("the {variant} backup of the {backend} database failed: {error}"));
    let backup_time = started.elapsed();
    let path = settings.directory.join(&manifest.file.name);
    let on_disk = std::fs::metadata(&path)
        .unwrap_or_else(|error| panic!("the backup file {}: {error}", path.display()))
        .len();
    assert_eq!(
        on_disk,
        manifest.file.size,
        "the manifest gives the size of {}",
        path.display()
    );
    assert_eq!(
        manifest.encryption.is_some(),
        settings.recipients.is_some(),
        "the {variant} backup of {backend} is encrypted exactly when recipients are set"
    );
    assert_eq!(
        manifest.row_counts.get("users").copied(),
        Some(u64::try_from(USERS).expect("positive")),
        "the {variant} backup of {backend} holds every user: {:?}",
        manifest.row_counts
    );
    eprintln!(
        "{backend}, {variant}: backup {} of {on_disk} bytes in {:.1} s; verify",
        manifest.id,
        backup_time.as_secs_f64()
    );
    let started = Instant::now();
    let verification = ops::verify(database, settings, Some(&manifest.id))
        .unwrap_or_else(|error| panic!("the verification of the {variant} {backend} backup could not run: {error}"));
    let verify_time = started.elapsed();
    eprint!("{verification}");
    assert!(
        verification.passed(),
        "the {variant} backup {} of the {backend} database failed its verification:\n{verification}",
        manifest.id
    );
    report.value(
        Measure::new("9", backend, what("backup size, MiB")),
        float(on_disk) / MIB,
        1,
        format!("{on_disk} bytes; {}", manifest.file.format),
    );
    report.ratio(
        Measure::new("9", backend, what("backup size / database size")),
        &[float(on_disk)],
        &[float(database_bytes)],
        Unit::Bytes,
    );
    report.value(
        Measure::new("9", backend, what("backup time, s")),
        backup_time.as_secs_f64(),
        1,
        format!("manifest: {} ms; {}", manifest.duration_ms, manifest.tool),
    );
    report.value(
        Measure::new("9", backend, what("verify time, s")),
        verify_time.as_secs_f64(),
        1,
        checks_passed(&verification),
    );
    report.value(
        Measure::new("9", backend, what("rows in the manifest")),
        float(manifest.row_counts.values().sum()),
        0,
        format!(
            "{} tables: {}",
            manifest.row_counts.len(),
            manifest
                .row_counts
                .iter()
                .map(|(table, count)| format!("{table} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}

/// A passed verification in brief: its checks, those that could not run, and the restore's time.
fn checks_passed(verification: &ops::Verification) -> String {
    let not_run: Vec<&str> = verification
        .checks
        .iter()
        .filter(|check| check.outcome == ops::CheckOutcome::NotRun)
        .map(|check| check.name.as_str())
        .collect();
    let restore = verification
        .checks
        .iter()
        .find(|check| check.name == "restore")
        .map_or("no restore", |check| check.detail.as_str());
    format!(
        "passed, {} checks{}; restore: {restore}; verification: {} ms",
        verification.checks.len(),
        if not_run.is_empty() {
            String::new()
        } else {
            format!(" (not run: {})", not_run.join(", "))
        },
        verification.duration_ms
    )
}

// ---------------------------------------------------------------------------------------------
// Sampling and the report

/// Runs each operation once per round, in the same order every round (A, B, C, A, B, C, ...),
/// so that the slow phases of a shared machine fall on all of them alike, and returns each
/// operation's samples in round order.
fn interleaved<const N: usize>(rounds: usize, operations: &mut [&mut dyn FnMut() -> f64; N]) -> [Vec<f64>; N] {
    let mut samples: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    for _ in 0..rounds {
        for (operation, samples) in operations.iter_mut().zip(&mut samples) {
            samples.push(operation());
        }
    }
    samples
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn float(count: u64) -> f64 {
    count as f64
}

/// A figure's target, as the issue states it.
#[derive(Debug, Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Self::AtLeast(bound) => value >= bound,
            Self::AtMost(bound) => value <= bound,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(bound) => write!(f, "≥ {bound}"),
            Self::AtMost(bound) => write!(f, "≤ {bound}"),
        }
    }
}

/// What the samples of a ratio's two sides measure.
#[derive(Debug, Clone, Copy)]
enum Unit {
    ReadsPerSecond,
    Seconds,
    Instructions,
    Bytes,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Self::ReadsPerSecond => format!("{value:.0} reads/s"),
            Self::Seconds if value < 0.01 => format!("{:.3} ms", value * 1e3),
            Self::Seconds => format!("{:.1} ms", value * 1e3),
            Self::Instructions => format!("{:.0}k instructions", value / 1e3),
            Self::Bytes => format!("{:.1} MiB", value / MIB),
        }
    }
}

/// What a row of the report is about.
struct Measure {
    figure: &'static str,
    backend: &'static str,
    what: String,
    target: Option<Target>,
    note: String,
}

impl Measure {
    fn new(figure: &'static str, backend: &'static str, what: impl Into<String>) -> Self {
        Self {
            figure,
            backend,
            what: what.into(),
            target: None,
            note: String::new(),
        }
    }

    fn target(self, target: Target) -> Self {
        Self {
            target: Some(target),
            ..self
        }
    }

    fn note(self, note: impl Into<String>) -> Self {
        Self {
            note: note.into(),
            ..self
        }
    }
}

struct Row {
    measure: Measure,
    /// The spread and its decimals, or why it was not measured.
    value: Result<(Spread, usize), String>,
    /// Samples behind the spread: a single one has no range.
    runs: usize,
    detail: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// `numerator / denominator`, round by round.
    fn ratio(&mut self, measure: Measure, numerator: &[f64], denominator: &[f64], unit: Unit) {
        assert_eq!(numerator.len(), denominator.len(), "one sample of each side per round");
        let ratios: Vec<f64> = numerator.iter().zip(denominator).map(|(a, b)| a / b).collect();
        let detail = format!(
            "{} / {}",
            unit.show(Spread::of(numerator).median),
            unit.show(Spread::of(denominator).median)
        );
        self.rows.push(Row {
            measure,
            value: Ok((Spread::of(&ratios), 2)),
            runs: ratios.len(),
            detail,
        });
    }

    fn count(&mut self, measure: Measure, values: &[f64]) {
        self.rows.push(Row {
            measure,
            value: Ok((Spread::of(values), 0)),
            runs: values.len(),
            detail: format!("{} runs", values.len()),
        });
    }

    /// One measured value, shown with `decimals`.
    fn value(&mut self, measure: Measure, value: f64, decimals: usize, detail: String) {
        self.rows.push(Row {
            measure,
            value: Ok((Spread::of(&[value]), decimals)),
            runs: 1,
            detail,
        });
    }

    fn not_measured(&mut self, measure: Measure, reason: String) {
        self.rows.push(Row {
            measure,
            value: Err(reason),
            runs: 0,
            detail: String::new(),
        });
    }

    fn print(&self) {
        println!(
            "\nmedian and min–max over interleaved rounds ({ROUNDS}, or {SLOW_ROUNDS} for slow operations) of \
             per-round ratios (figure 8: counts per run; figure 9: one run, no range); met/missed judges the median; detail: medians of \
             both sides\n"
        );
        println!("| # | measure | backend | median | min–max | target | | detail |");
        println!("|---|---|---|---:|---|---|---|---|");
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|row| row.measure.figure);
        for row in rows {
            let measure = &row.measure;
            let target = measure
                .target
                .map_or_else(|| "—".to_owned(), |target| target.to_string());
            let (median, range, verdict) = match &row.value {
                Ok((spread, decimals)) => (
                    format!("{:.*}", decimals, spread.median),
                    if row.runs > 1 {
                        format!("{:.*}–{:.*}", decimals, spread.min, decimals, spread.max)
                    } else {
                        "—".to_owned()
                    },
                    measure
                        .target
                        .map_or("", |target| if target.met(spread.median) { "met" } else { "missed" }),
                ),
                Err(reason) => (format!("not measured: {reason}"), String::new(), ""),
            };
            let detail = [row.detail.as_str(), measure.note.as_str()]
                .into_iter()
                .filter(|text| !text.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            println!(
                "| {} | {} | {} | {median} | {range} | {target} | {verdict} | {detail} |",
                measure.figure, measure.what, measure.backend
            );
        }
    }
}
