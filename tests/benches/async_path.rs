//! Benchmark of issue 15's async path, on PostgreSQL and SQLite (a file), in one run:
//!
//! 1. A point read (`users().get(id, Scope::Live)`) through `AsyncStore::run` (tasks on a
//!    multi-thread tokio runtime) / the same call made synchronously (as many OS threads), at 1, 2
//!    and 16 concurrent callers: what moving the work to tokio's blocking pool costs. Both sides
//!    share one store (pool `max_size` 20, the default, above every concurrency here).
//! 2. Pool sizing: 16 async tasks reading through facades whose pools hold 1, 2, 4, 8 and 16
//!    connections: reads per second against the best size (the plateau), and the most work
//!    that ran at once, which the facade keeps at or below `max_size` (checked: a larger peak
//!    fails the run).
//!
//! Samples alternate (A, B, then B, A in the next round, so that a noisy machine slows both
//! alike); ratios are per round, printed as median and min–max. Nothing here asserts on time;
//! every read is checked (the right user, no error) instead.
//!
//! `cargo bench -p tests --bench async_path` (PostgreSQL with `TEST_DATABASE_URL`, required then).

#![expect(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use migrator::Migrate as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use database::{Backend, Database, DatabaseConfig, DbConnection};
use diesel::prelude::*;
use diesel::sql_types::Text;
use domain::UserId;
use repo::{Repositories as _, Scope};
use repo_diesel::{AsyncStore, DieselStore};
use test_fixtures::TestDb;
use test_fixtures::bench::Spread;
use tokio::runtime::Runtime;

const USERS: usize = 10_000;
/// Concurrent callers of figure 1.
const CONCURRENCY: [usize; 3] = [1, 2, 16];
/// Pool sizes of figure 2, and its callers.
const POOL_SIZES: [u32; 5] = [1, 2, 4, 8, 16];
const POOL_SIZING_TASKS: usize = 16;
/// Rounds of interleaved samples per figure.
const ROUNDS: usize = 5;
const POOL_ROUNDS: usize = 3;
/// One throughput sample, and the warm-up before a figure (opens the connections, starts the
/// blocking threads).
const SAMPLE: Duration = Duration::from_millis(500);
const WARM_UP: Duration = Duration::from_millis(300);

fn main() {
    let started = Instant::now();
    let load_average_at_start = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let workers = runtime.metrics().num_workers();
    let mut databases = Vec::new();
    if let Some(postgres) = TestDb::postgres_migrated() {
        databases.push(("postgres", postgres));
    }
    databases.push(("sqlite (file)", TestDb::sqlite_file()));

    println!(
        "async path: tokio multi-thread runtime, {workers} worker threads, blocking threads up to 512 (tokio's \
         default); {USERS} users; samples of {} ms, interleaved",
        SAMPLE.as_millis()
    );
    let mut sizing = Vec::new();
    for (label, test_db) in &databases {
        let database = Arc::new(test_db.database());
        database.migrate().expect("the migrations run");
        let ids: Arc<[UserId]> = test_fixtures::bench::insert_users(&database, USERS, "async.path").into();
        let store = DieselStore::new(database);
        point_reads(&runtime, label, &store, &ids);
        sizing.push((*label, test_db, ids));
    }
    for (label, test_db, ids) in &sizing {
        pool_sizing(&runtime, label, &test_db.config(), ids);
    }
    println!(
        "\nrule: the facade runs at most max_size blocking tasks per pool (peak column), so tokio's blocking pool \
         (512) is never the limit; size the pool at the plateau, and keep the sum of max_size over every process \
         below the server's max_connections"
    );
    println!(
        "total run time {:.0} s; load average {load_average_at_start} at the start, {} at the end",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

/// Figure 1: async / sync point reads at each concurrency.
fn point_reads(runtime: &Runtime, label: &str, store: &DieselStore, ids: &Arc<[UserId]>) {
    let facade = AsyncStore::new(store.clone());
    async_reads(runtime, &facade, ids, 16, WARM_UP);
    sync_reads(store, ids, 16, WARM_UP);
    println!(
        "\n{label}: point read, {ROUNDS} rounds\n{:>6} {:>14} {:>14} {:>28}",
        "tasks", "async reads/s", "sync reads/s", "async/sync median [min–max]"
    );
    for callers in CONCURRENCY {
        let mut asynchronous = Vec::with_capacity(ROUNDS);
        let mut synchronous = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                asynchronous.push(async_reads(runtime, &facade, ids, callers, SAMPLE));
                synchronous.push(sync_reads(store, ids, callers, SAMPLE));
            } else {
                synchronous.push(sync_reads(store, ids, callers, SAMPLE));
                asynchronous.push(async_reads(runtime, &facade, ids, callers, SAMPLE));
            }
        }
        let ratios: Vec<f64> = asynchronous.iter().zip(&synchronous).map(|(a, s)| a / s).collect();
        println!(
            "{callers:>6} {:>14.0} {:>14.0} {:>28}",
            Spread::of(&asynchronous).median,
            Spread::of(&synchronous).median,
            Spread::of(&ratios).show(3)
        );
    }
}

/// Figure 2: 16 async tasks over pools of each size.
fn pool_sizing(runtime: &Runtime, label: &str, config: &DatabaseConfig, ids: &Arc<[UserId]>) {
    let facades: Vec<(u32, AsyncStore<DieselStore>, Peak)> = POOL_SIZES
        .iter()
        .map(|&max_size| {
            let mut config = config.clone();
            config.pool.max_size = max_size;
            let database = Database::connect(config).expect("the database opens");
            (
                max_size,
                AsyncStore::new(DieselStore::new(Arc::new(database))),
                Peak::default(),
            )
        })
        .collect();
    let max_connections = max_connections(&facades[0].1);
    for (_, facade, peak) in &facades {
        counted_reads(runtime, facade, peak, ids, WARM_UP);
    }
    let mut rates = vec![Vec::with_capacity(POOL_ROUNDS); facades.len()];
    for round in 0..POOL_ROUNDS {
        // Each round starts at another size, so that no size always follows the same one.
        for offset in 0..facades.len() {
            let index = (round + offset) % facades.len();
            let (_, facade, peak) = &facades[index];
            rates[index].push(counted_reads(runtime, facade, peak, ids, SAMPLE));
        }
    }
    let medians: Vec<f64> = rates.iter().map(|samples| Spread::of(samples).median).collect();
    let best = medians.iter().copied().fold(0.0, f64::max);
    println!(
        "\n{label}: pool sizing, {POOL_SIZING_TASKS} async tasks, {POOL_ROUNDS} rounds{}\n{:>9} {:>26} {:>9} {:>28}",
        max_connections.map_or_else(String::new, |max| format!(" (server max_connections {max})")),
        "max_size",
        "reads/s median [min–max]",
        "/ best",
        "peak work at once (≤ size)"
    );
    for ((max_size, _, peak), (samples, median)) in facades.iter().zip(rates.iter().zip(&medians)) {
        let peak = peak.highest.load(Ordering::Relaxed);
        assert!(
            peak <= *max_size as usize,
            "{peak} blocking tasks ran at once on a pool of {max_size}"
        );
        println!(
            "{max_size:>9} {:>26} {:>9.2} {peak:>28}",
            Spread::of(samples).show(0),
            median / best
        );
    }
}

/// Reads per second of `tasks` tasks reading through `facade` for `length`.
fn async_reads(
    runtime: &Runtime,
    facade: &AsyncStore<DieselStore>,
    ids: &Arc<[UserId]>,
    tasks: usize,
    length: Duration,
) -> f64 {
    runtime.block_on(async {
        let started = Instant::now();
        let deadline = started + length;
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let facade = facade.clone();
                let ids = Arc::clone(ids);
                tokio::spawn(async move {
                    let mut reads = 0;
                    let mut index = task * ids.len() / tasks;
                    while Instant::now() < deadline {
                        let id = ids[index % ids.len()];
                        let user = facade
                            .run(move |store| store.users().get(id, Scope::Live))
                            .await
                            .expect("a point read");
                        assert_eq!(user.id, id, "the read found another user");
                        reads += 1;
                        index += 1;
                    }
                    reads
                })
            })
            .collect();
        let mut reads = 0;
        for handle in handles {
            reads += handle.await.expect("a reading task");
        }
        per_second(reads, started.elapsed())
    })
}

/// Reads per second of `threads` OS threads calling `store` for `length`.
fn sync_reads(store: &DieselStore, ids: &[UserId], threads: usize, length: Duration) -> f64 {
    let started = Instant::now();
    let deadline = started + length;
    let reads: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut reads = 0;
                    let mut index = thread * ids.len() / threads;
                    while Instant::now() < deadline {
                        let id = ids[index % ids.len()];
                        let user = store.users().get(id, Scope::Live).expect("a point read");
                        assert_eq!(user.id, id, "the read found another user");
                        reads += 1;
                        index += 1;
                    }
                    reads
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a reading thread"))
            .sum()
    });
    per_second(reads, started.elapsed())
}

/// Work running at once inside a facade, and the most seen.
#[derive(Default)]
struct Peak {
    running: Arc<AtomicUsize>,
    highest: Arc<AtomicUsize>,
}

/// As [`async_reads`] with `POOL_SIZING_TASKS` tasks, counting the work running at once.
fn counted_reads(
    runtime: &Runtime,
    facade: &AsyncStore<DieselStore>,
    peak: &Peak,
    ids: &Arc<[UserId]>,
    length: Duration,
) -> f64 {
    runtime.block_on(async {
        let started = Instant::now();
        let deadline = started + length;
        let handles: Vec<_> = (0..POOL_SIZING_TASKS)
            .map(|task| {
                let facade = facade.clone();
                let ids = Arc::clone(ids);
                let running = Arc::clone(&peak.running);
                let highest = Arc::clone(&peak.highest);
                tokio::spawn(async move {
                    let mut reads = 0;
                    let mut index = task * ids.len() / POOL_SIZING_TASKS;
                    while Instant::now() < deadline {
                        let id = ids[index % ids.len()];
                        let running = Arc::clone(&running);
                        let highest = Arc::clone(&highest);
                        let user = facade
                            .run(move |store| {
                                let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                                highest.fetch_max(now, Ordering::AcqRel);
                                let user = store.users().get(id, Scope::Live);
                                running.fetch_sub(1, Ordering::AcqRel);
                                user
                            })
                            .await
                            .expect("a point read");
                        assert_eq!(user.id, id, "the read found another user");
                        reads += 1;
                        index += 1;
                    }
                    reads
                })
            })
            .collect();
        let mut reads = 0;
        for handle in handles {
            reads += handle.await.expect("a reading task");
        }
        per_second(reads, started.elapsed())
    })
}

/// The PostgreSQL server's `max_connections`; `None` on SQLite.
fn max_connections(facade: &AsyncStore<DieselStore>) -> Option<String> {
    let database = facade.inner().database();
    if database.config().target.backend() != Backend::Postgres {
        return None;
    }
    let mut connection = database.get().expect("a connection");
    let DbConnection::Pg(connection) = &mut *connection else {
        return None;
    };
    diesel::select(diesel::dsl::sql::<Text>("current_setting('max_connections')"))
        .get_result(connection)
        .ok()
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`): others share it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    f64::from(u32::try_from(count).expect("fewer than 2^32 reads per sample")) / elapsed.as_secs_f64()
}
