//! Benchmark: what the start-up migration runner costs on a database already at head, the state
//! of every start-up but a release's first. Prints, per backend, the runner's round trips (queries
//! counted through diesel's instrumentation), its time against one `SELECT 1` round trip on the
//! same connection (the physical anchor, measured in the same run), and the whole start-up of a
//! process: opening the pool and migrating.
//!
//! `cargo bench -p tests --bench migrator_at_head` (PostgreSQL with `TEST_DATABASE_URL`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use migrator::Migrate as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use database::config::MigrationSettings;
use database::{Database, DbConnection};
use diesel::connection::{Connection as _, InstrumentationEvent, SimpleConnection as _};
use migrator::Migrator;
use test_fixtures::TestDb;

const RUNS: usize = 300;
const STARTUPS: usize = 30;

fn main() {
    let mut databases = vec![("sqlite (file)", TestDb::sqlite_file())];
    if let Some(postgres) = TestDb::postgres() {
        databases.insert(0, ("postgres", postgres));
    }
    println!(
        "{:<14} {:>12} {:>14} {:>14} {:>10} {:>18}",
        "backend", "round trips", "at head (ms)", "SELECT 1 (ms)", "ratio", "process start (ms)"
    );
    for (label, database) in &databases {
        let mut connection = database.connect();
        let migrator = Migrator::embedded(database.backend(), MigrationSettings::default());
        migrator.run(&mut connection).expect("first run migrates");

        let queries = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queries);
        connection.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let at_head = median(RUNS, || {
            let report = migrator.run(&mut connection).expect("at head");
            assert!(report.was_at_head);
        });
        let round_trips = f64::from(u32::try_from(queries.load(Ordering::Relaxed)).expect("few queries"))
            / f64::from(u32::try_from(RUNS).expect("few runs"));
        let anchor = median(RUNS, || select_one(&mut connection));
        let startup = median(STARTUPS, || {
            let pool = Database::connect(database.config()).expect("pool");
            assert!(pool.migrate().expect("migrate").was_at_head);
        });
        println!(
            "{label:<14} {round_trips:>12.1} {:>14.3} {:>14.3} {:>10.2} {:>18.2}",
            millis(at_head),
            millis(anchor),
            at_head.as_secs_f64() / anchor.as_secs_f64(),
            millis(startup)
        );
    }
    println!("ratio = runner at head / one SELECT 1 round trip; process start = Database::connect + migrate()");
}

fn select_one(connection: &mut DbConnection) {
    connection.batch_execute("SELECT 1").expect("SELECT 1");
}

fn median(runs: usize, mut work: impl FnMut()) -> Duration {
    work(); // warm-up
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
