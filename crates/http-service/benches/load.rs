//! Load test of the reference service (issue 15), in one run: `wrk` on loopback against the
//! service started in this process (a tokio runtime, `serve` on 127.0.0.1:0) on a fresh
//! PostgreSQL database, pool `max_size` 8, 2,000 users, at 16 connections (2 × the pool):
//!
//! - `GET /users/{id}` (a user and their last 30 days of attendance), cycling over the users;
//! - check-ins: `POST /users/{id}/check-in`, then on the user's next turn `/check-out`, each
//!   wrk thread over its own slice of the users, a user skipped while a request for them is in
//!   flight (`load.lua`), so that no answer is a conflict of the load generator's making.
//!
//! Each against the same operation called directly, synchronously, from 16 threads for as long,
//! on the same pool and the same `Api` the handlers call (`users().get` then
//! `attendance().list_for_user`, as the handler does; the service's `check_in` / `check_out`):
//! the ratio HTTP / direct is what the HTTP layer, the async facade and the load generator's
//! share of the 2 cores cost. Samples alternate (HTTP, direct, then direct, HTTP), open records
//! are closed between check-in samples; ratios are per round, printed as median and min–max.
//! Nothing asserts on time; any error (a non-2xx answer, a socket error, a failed direct call)
//! fails the run after the figures are printed. The service runs without a log subscriber, so
//! writing logs is not in the figures.
//!
//! `cargo bench -p http-service --bench load` (needs `wrk`, Debian's `apt-get install -y wrk`,
//! and PostgreSQL: `TEST_DATABASE_URL`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use database::sql_types::DbTimestamp;
use diesel::prelude::*;
use domain::{Actor, AuditContext, UserId};
use http_service::{Api, AppState, Settings};
use repo::{Repositories as _, Scope, TimeRange};
use repo_diesel::schema::attendance;
use repo_diesel::{Database, Migrate as _};
use test_fixtures::TestDb;
use test_fixtures::bench::Spread;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const POOL_SIZE: u32 = 8;
/// wrk's connections and the direct side's threads: twice the pool.
const CONCURRENCY: usize = 2 * POOL_SIZE as usize;
const WRK_THREADS: usize = 2;
const USERS: usize = 2_000;
const ROUNDS: usize = 3;
/// One sample per side and round; wrk takes whole seconds.
const SAMPLE_SECONDS: u64 = 5;
const WARM_UP_SECONDS: u64 = 1;

fn main() {
    let started = Instant::now();
    let load_average_at_start = load_average();
    check_wrk();
    let test_db = TestDb::postgres_migrated().expect("the load bench needs PostgreSQL: set TEST_DATABASE_URL");
    let mut config = test_db.config();
    config.pool.max_size = POOL_SIZE;
    let database = Arc::new(Database::connect(config).expect("the database opens"));
    database.migrate().expect("the migrations run");
    let ids = test_fixtures::bench::insert_users(&database, USERS, "load");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let ids_file = directory.path().join("ids.txt");
    let lines: Vec<String> = ids.iter().map(ToString::to_string).collect();
    std::fs::write(&ids_file, lines.join("\n")).expect("the ids file");

    let state = AppState::new(Arc::clone(&database));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let address = listener.local_addr().expect("the bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn({
        let state = state.clone();
        async move {
            let settings = Settings::default();
            http_service::serve(listener, state, &settings, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let wrk = Wrk {
        url: format!("http://{address}"),
        ids_file,
    };
    let api = state.api.inner();
    println!(
        "load: wrk -t{WRK_THREADS} -c{CONCURRENCY} against the service in this process ({} tokio workers), \
         PostgreSQL pool max_size {POOL_SIZE}, {USERS} users, {ROUNDS} rounds of {SAMPLE_SECONDS} s per side",
        runtime.metrics().num_workers()
    );

    let mut failures = Vec::new();
    let reads = compare(&wrk, "read", &mut failures, None, || direct_reads(api, &ids));
    let check_ins = compare(&wrk, "check-in", &mut failures, Some(&database), || {
        direct_check_ins(api, &ids)
    });
    reads.print("GET /users/{id}");
    check_ins.print("check-in / check-out");

    let _ = stop.send(());
    runtime
        .block_on(server)
        .expect("the server task")
        .expect("the server stops cleanly");
    println!(
        "\ntotal run time {:.0} s; load average {load_average_at_start} at the start, {} at the end",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    assert!(failures.is_empty(), "errors under load:\n{}", failures.join("\n"));
}

/// One operation's samples, per round.
struct Comparison {
    http: Vec<Sample>,
    direct: Vec<Sample>,
}

/// One side's figures over one sample.
#[derive(Clone, Copy)]
struct Sample {
    operations: u64,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

impl Comparison {
    fn print(&self, operation: &str) {
        println!(
            "\n{operation}: {:>5} {:>10} {:>8} {:>8} {:>6} | {:>10} {:>8} {:>8} {:>6} | {:>11}",
            "round",
            "HTTP req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "direct/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "HTTP/direct"
        );
        let indent = " ".repeat(operation.len() + 1);
        for (round, (http, direct)) in self.http.iter().zip(&self.direct).enumerate() {
            println!(
                "{indent} {:>5} {} | {} | {:>11.3}",
                round + 1,
                http.show(),
                direct.show(),
                http.per_second / direct.per_second
            );
        }
        let ratios: Vec<f64> = self
            .http
            .iter()
            .zip(&self.direct)
            .map(|(http, direct)| http.per_second / direct.per_second)
            .collect();
        let ratio = Spread::of(&ratios);
        let median = |samples: &[Sample], value: fn(&Sample) -> f64| {
            Spread::of(&samples.iter().map(value).collect::<Vec<_>>()).median
        };
        println!(
            "{indent} median: HTTP {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; direct {:.0}/s, p50 {:.2} ms, p99 {:.2} \
             ms; HTTP/direct {:.3} [{:.3}–{:.3}]; errors {}",
            median(&self.http, |sample| sample.per_second),
            median(&self.http, |sample| millis(sample.p50)),
            median(&self.http, |sample| millis(sample.p99)),
            median(&self.direct, |sample| sample.per_second),
            median(&self.direct, |sample| millis(sample.p50)),
            median(&self.direct, |sample| millis(sample.p99)),
            ratio.median,
            ratio.min,
            ratio.max,
            self.http
                .iter()
                .chain(&self.direct)
                .map(|sample| sample.errors)
                .sum::<u64>()
        );
    }
}

impl Sample {
    fn show(&self) -> String {
        format!(
            "{:>10.0} {:>8.2} {:>8.2} {:>6}",
            self.per_second,
            millis(self.p50),
            millis(self.p99),
            self.errors
        )
    }
}

/// Runs `mode` through wrk and `direct` alternately, `ROUNDS` times after a warm-up of each;
/// with `reset`, closes the open records after every sample.
fn compare(
    wrk: &Wrk,
    mode: &str,
    failures: &mut Vec<String>,
    reset: Option<&Database>,
    direct: impl Fn() -> (Sample, Vec<String>),
) -> Comparison {
    let mut record = |label: &str, sample: Sample, errors: Vec<String>| {
        if sample.errors > 0 {
            failures.push(format!(
                "{mode} {label}: {} errors: {}",
                sample.errors,
                errors.join("; ")
            ));
        }
        if let Some(database) = reset {
            close_open_records(database);
        }
        sample
    };
    let run_http = |seconds: u64| {
        let rows_before = reset.map(attendance_rows);
        let (sample, errors) = wrk.run(mode, seconds);
        if let (Some(database), Some(before)) = (reset, rows_before) {
            check_rows(database, before, &sample);
        }
        (sample, errors)
    };
    let (sample, errors) = run_http(WARM_UP_SECONDS);
    record("HTTP warm-up", sample, errors);
    let (sample, errors) = direct();
    record("direct warm-up", sample, errors);
    let mut comparison = Comparison {
        http: Vec::with_capacity(ROUNDS),
        direct: Vec::with_capacity(ROUNDS),
    };
    for round in 0..ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let (sample, errors) = run_http(SAMPLE_SECONDS);
                comparison.http.push(record("HTTP", sample, errors));
            } else {
                let (sample, errors) = direct();
                comparison.direct.push(record("direct", sample, errors));
            }
        }
    }
    comparison
}

/// wrk, pointed at the service and the ids file.
struct Wrk {
    url: String,
    ids_file: PathBuf,
}

impl Wrk {
    /// One run of `load.lua` in `mode` for `seconds`; its figures, and what went wrong.
    fn run(&self, mode: &str, seconds: u64) -> (Sample, Vec<String>) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("load.lua");
        let output = Command::new("wrk")
            .arg("--latency")
            .arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{CONCURRENCY}"))
            .arg(format!("-d{seconds}s"))
            .arg("-s")
            .arg(&script)
            .arg(&self.url)
            .env("LOAD_IDS_FILE", &self.ids_file)
            .env("LOAD_MODE", mode)
            .env("LOAD_THREADS", WRK_THREADS.to_string())
            .output()
            .unwrap_or_else(|error| panic!("wrk did not start: {error}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "wrk failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("load-bench "))
            .unwrap_or_else(|| panic!("wrk printed no load-bench line:\n{stdout}"));
        let value = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .and_then(|text| text.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in wrk's line {line:?}"))
        };
        let requests = value("requests");
        let kinds = ["connect", "read", "write", "status", "timeout"];
        let mut errors: Vec<String> = kinds
            .iter()
            .filter(|kind| value(kind) > 0)
            .map(|kind| format!("{} {kind}", value(kind)))
            .collect();
        if let Some(statuses) = line
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix("statuses="))
            .filter(|statuses| *statuses != "-")
        {
            errors.push(format!("statuses {statuses}"));
        }
        let sample = Sample {
            operations: requests,
            per_second: count(requests) / Duration::from_micros(value("duration_us")).as_secs_f64(),
            p50: Duration::from_micros(value("p50_us")),
            p99: Duration::from_micros(value("p99_us")),
            errors: kinds.iter().map(|kind| value(kind)).sum(),
        };
        (sample, errors)
    }
}

/// What the read handler does, from `CONCURRENCY` threads for a sample's length.
fn direct_reads(api: &Api, ids: &[UserId]) -> (Sample, Vec<String>) {
    direct_sample(|thread, deadline, latencies, errors| {
        let mut index = thread * ids.len() / CONCURRENCY;
        while Instant::now() < deadline {
            let id = ids[index % ids.len()];
            index += 1;
            let started = Instant::now();
            let now = domain::time::now();
            let range = TimeRange::new(now - TimeDelta::days(30), now).expect("a valid range");
            let result = api.store.users().get(id, Scope::Live).and_then(|user| {
                let records = api.store.attendance().list_for_user(id, range, Scope::Live)?;
                Ok((user, records))
            });
            latencies.push(started.elapsed());
            match result {
                Ok((user, _)) if user.id == id => {}
                Ok((user, _)) => errors.push(format!("read {id} found {}", user.id)),
                Err(error) => errors.push(format!("read {id}: {error}")),
            }
        }
    })
}

/// Check-ins and check-outs through the service, each thread on its own slice of the users, in
/// the order `load.lua` sends them.
fn direct_check_ins(api: &Api, ids: &[UserId]) -> (Sample, Vec<String>) {
    let context = AuditContext::new(Actor::service("http").expect("a valid actor"));
    let slice = ids.len() / CONCURRENCY;
    direct_sample(|thread, deadline, latencies, errors| {
        let users = &ids[thread * slice..(thread + 1) * slice];
        let mut k = 0;
        while Instant::now() < deadline {
            let id = users[k % users.len()];
            let check_in = (k / users.len()).is_multiple_of(2);
            k += 1;
            let started = Instant::now();
            let result = if check_in {
                api.service.check_in(&context, id, domain::time::now())
            } else {
                api.service.check_out(&context, id, domain::time::now())
            };
            latencies.push(started.elapsed());
            if let Err(error) = result {
                errors.push(format!(
                    "{} {id}: {error}",
                    if check_in { "check-in" } else { "check-out" }
                ));
            }
        }
    })
}

/// Runs `work(thread, deadline, latencies, errors)` on `CONCURRENCY` threads for a sample's
/// length; operations per second, latency percentiles and errors.
fn direct_sample(work: impl Fn(usize, Instant, &mut Vec<Duration>, &mut Vec<String>) + Sync) -> (Sample, Vec<String>) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(SAMPLE_SECONDS);
    let work = &work;
    let per_thread: Vec<(Vec<Duration>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CONCURRENCY)
            .map(|thread| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = Vec::new();
                    work(thread, deadline, &mut latencies, &mut errors);
                    (latencies, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a direct thread"))
            .collect()
    });
    let elapsed = started.elapsed();
    let (mut latencies, errors): (Vec<Duration>, Vec<String>) = per_thread.into_iter().fold(
        (Vec::new(), Vec::new()),
        |(mut latencies, mut errors), (thread_latencies, thread_errors)| {
            latencies.extend(thread_latencies);
            errors.extend(thread_errors);
            (latencies, errors)
        },
    );
    latencies.sort();
    let percentile = |percent: usize| latencies[(latencies.len() * percent / 100).min(latencies.len() - 1)];
    let sample = Sample {
        operations: latencies.len() as u64,
        per_second: count(latencies.len() as u64) / elapsed.as_secs_f64(),
        p50: percentile(50),
        p99: percentile(99),
        errors: errors.len() as u64,
    };
    (sample, errors.into_iter().take(5).collect())
}

/// Closes every open attendance record (not timed): the next sample starts with every user out.
fn close_open_records(database: &Database) {
    let now = DbTimestamp(Utc::now());
    let mut connection = database.get().expect("a connection");
    diesel::update(attendance::table.filter(attendance::check_out_time.is_null()))
        .set((attendance::check_out_time.eq(Some(now)), attendance::updated_at.eq(now)))
        .execute(&mut *connection)
        .expect("the open records close");
}

fn attendance_rows(database: &Database) -> i64 {
    let mut connection = database.get().expect("a connection");
    attendance::table
        .count()
        .get_result(&mut *connection)
        .expect("the attendance count")
}

/// A check-in run made about one record per two answered requests: wrk's count misses only the
/// requests in flight at its end, and a thread's last pass over its slice may be all check-ins.
fn check_rows(database: &Database, before: i64, sample: &Sample) {
    let requests = i64::try_from(sample.operations).expect("fewer than 2^63 requests");
    let added = attendance_rows(database) - before;
    let slack = i64::try_from(USERS + CONCURRENCY).expect("few users");
    assert!(
        (added - requests / 2).abs() <= slack,
        "{requests} check-in and check-out requests answered, but {added} records were made"
    );
}

/// Fails the run with a clear message when wrk is not installed.
fn check_wrk() {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => {}
        Err(error) => panic!("the load bench needs wrk (Debian: apt-get install -y wrk): {error}"),
    }
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`): others share it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn count(value: u64) -> f64 {
    f64::from(u32::try_from(value).expect("fewer than 2^32 requests per sample"))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
