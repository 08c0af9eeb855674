//! The PostgreSQL fault suite ("no acknowledged write is ever lost"): writes acknowledged across
//! fast, immediate and kill -9 restarts are all stored, a COMMIT that fails is an error, the
//! pool recovers when the server ends every connection, a full disk is `StorageFull` and keeps
//! what was acknowledged, and errors keep their types (but one) under German server messages.

use domain::AuditContext;
use migrator::Migrate as _;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use database::sql_types::{DbTimestamp, DbUuid};
use database::{Database, DatabaseConfig, DatabaseTarget, DbConnection};
use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use domain::{AttendanceId, CheckIn, RegisterUser, UserId};
use repo::{RepoError, Repositories as _, Scope, UnitOfWorkExt as _};
use repo_diesel::bulk::{NewAttendanceRow, NewUserRow};
use repo_diesel::repositories::DieselStore;
use service::{AttendanceService, ServiceError};
use test_fixtures::TestDb;

use crate::cluster::PrivateCluster;
use crate::support::new_user;

const WRITER_THREADS: usize = 4;
const USERS_PER_THREAD: usize = 8;
/// The restarts, interleaved: 4 fast, 3 immediate, 3 kill -9 of the postmaster.
const SCHEDULE: [Restart; 10] = [
    Restart::Fast,
    Restart::Immediate,
    Restart::Kill,
    Restart::Fast,
    Restart::Kill,
    Restart::Immediate,
    Restart::Fast,
    Restart::Kill,
    Restart::Immediate,
    Restart::Fast,
];
/// How long the writers get after a restart before giving up on them (the schedule goes on).
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);
/// A bound on the writers whatever happens to the thread that would stop them.
const WRITERS_LIMIT: Duration = Duration::from_mins(10);
/// Pause after a failed call, so that a writer does not spin while the server is down.
const BACKOFF: Duration = Duration::from_millis(10);
/// Free space the full-disk test leaves on its tmpfs after migrating, so that the users table
/// fills it in a few hundred creates.
const FREE_SPACE_LEFT: u64 = 256 * 1024;
/// A bound on the creates of the full-disk test (the disk fills in a few hundred).
const MAX_CREATES: usize = 100_000;

#[test]
fn acknowledged_writes_survive_restarts_with_the_checkout_ping() {
    acknowledged_writes_survive_restarts(true);
}

#[test]
fn acknowledged_writes_survive_restarts_without_the_checkout_ping() {
    acknowledged_writes_survive_restarts(false);
}

#[test]
fn a_commit_that_fails_in_a_deferred_trigger_is_an_error() {
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    // The trigger is a schema change: the owner's. The application's login runs the writes.
    let mut connection = database.connect_as_owner();
    connection
        .batch_execute(
            "CREATE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 RAISE EXCEPTION 'test_fail_at_commit: refused at commit';
             END
             $$;
             CREATE CONSTRAINT TRIGGER trg_test_fail_at_commit AFTER INSERT ON attendance
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_at_commit();",
        )
        .expect("create the deferred trigger");
    let store = DieselStore::new(Arc::new(database.database()));
    let service = AttendanceService::new(store.clone());
    let user = service
        .register(
            &AuditContext::unattributed(),
            &RegisterUser {
                email: "deferred@example.com".into(),
                full_name: "Deferred Trigger".into(),
                password: test_fixtures::DEFAULT_PASSWORD.into(),
            },
        )
        .expect("register a user (no trigger on users)");

    let through_the_service = service.check_in(&AuditContext::unattributed(), user.id, domain::time::now());
    let rows_after_the_service = attendance_rows_of(&mut connection, user.id);
    let through_the_unit_of_work = store.transact(&AuditContext::unattributed(), |repositories| {
        repositories.attendance().check_in(CheckIn {
            user_id: user.id,
            at: domain::time::now(),
        })
    });
    let rows_after_the_unit_of_work = attendance_rows_of(&mut connection, user.id);
    let _ = writeln!(
        std::io::stderr(),
        "deferred trigger: service check_in -> {through_the_service:?}, rows {rows_after_the_service}; \
         transact check_in -> {through_the_unit_of_work:?}, rows {rows_after_the_unit_of_work}"
    );

    assert!(
        through_the_service.is_err(),
        "the COMMIT failed in the deferred trigger, yet the service acknowledged the check-in: \
         {through_the_service:?}"
    );
    assert_eq!(
        rows_after_the_service, 0,
        "a check-in whose COMMIT failed left rows behind"
    );
    assert!(
        through_the_unit_of_work.is_err(),
        "the COMMIT failed in the deferred trigger, yet transact returned the check-in: {through_the_unit_of_work:?}"
    );
    assert_eq!(
        rows_after_the_unit_of_work, 0,
        "a unit of work whose COMMIT failed left rows behind"
    );
}

/// Connections used within the validation window are handed out without a ping: each of the
/// pool's terminated connections fails exactly one call, with `Unavailable`, and is dropped. The
/// window is 10 minutes here so that "within" holds on a machine of any speed; the default
/// 500 ms behaves the same for a connection used less than 500 ms ago.
#[test]
fn terminated_connections_used_within_the_validation_window_fail_one_call_each() {
    the_pool_recovers_after_every_connection_is_terminated(Validation::Window(Duration::from_mins(10)));
}

/// With the default settings, connections idle past the validation window (500 ms) are pinged
/// before they are handed out: the terminated ones are found and replaced, and no call fails.
#[test]
fn terminated_connections_idle_past_the_validation_window_fail_no_call() {
    the_pool_recovers_after_every_connection_is_terminated(Validation::Window(
        database::config::PoolSettings::default().validate_idle_after,
    ));
}

/// `DATABASE_POOL_TEST_ON_CHECKOUT=false`: no ping at all, so each terminated connection fails
/// exactly one call, however long it was idle.
#[test]
fn terminated_connections_without_the_checkout_ping_fail_one_call_each() {
    the_pool_recovers_after_every_connection_is_terminated(Validation::Off);
}

/// How a restart takes the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Restart {
    /// `pg_ctl restart -m fast`.
    Fast,
    /// `pg_ctl stop -m immediate`, then start: crash recovery on the way up.
    Immediate,
    /// `kill -9` of the postmaster, then start.
    Kill,
}

impl Restart {
    fn name(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
            Self::Kill => "kill -9",
        }
    }

    fn apply(self, cluster: &PrivateCluster) {
        match self {
            Self::Fast => cluster.restart_fast(),
            Self::Immediate => cluster.restart_immediate(),
            Self::Kill => cluster.kill_postmaster(),
        }
    }
}

/// A write the service acknowledged, with what it returned.
#[derive(Debug, Clone, Copy)]
enum Acknowledged {
    CheckIn {
        id: AttendanceId,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    CheckOut {
        id: AttendanceId,
        at: DateTime<Utc>,
    },
}

/// What one writer thread saw.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<Acknowledged>,
    /// Failed calls by error variant, with the first message of each.
    errors: BTreeMap<&'static str, (usize, String)>,
    /// `NotFound` from a check-out whose user's state was unknown: the earlier failed
    /// check-out had committed after all. Not a loss.
    expected_consequences: usize,
    panics: usize,
}

impl Ledger {
    fn record_error(&mut self, error: &ServiceError) {
        let entry = self
            .errors
            .entry(service_error_kind(error))
            .or_insert_with(|| (0, error.to_string()));
        entry.0 += 1;
    }
}

/// What a writer knows about one of its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserState {
    /// No open record: check in next.
    Closed,
    /// An acknowledged open record: check out next.
    Open,
    /// A call failed and may or may not have committed: check out next, and a `NotFound`
    /// then means there was nothing open.
    Unknown,
}

/// One restart of the schedule, as it happened.
struct RestartRecord {
    mode: Restart,
    /// When the restart was begun.
    begun: Instant,
    /// When the server accepted connections again.
    ready: Instant,
    /// The first successful service call after `ready`, if one came within `RECOVERY_LIMIT`.
    recovered: Option<Instant>,
}

/// Sets the flag when dropped, so that the writers stop even when the schedule panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A row as the server stores it, read back without the repositories.
#[derive(QueryableByName)]
struct StoredAttendance {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Timestamptz)]
    check_in_time: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    check_out_time: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Terminated {
    #[diesel(sql_type = Bool)]
    terminated: bool,
}

/// A restart run as it happened: what the writers saw, the restarts, every success.
struct Run {
    ledger: Ledger,
    restarts: Vec<RestartRecord>,
    /// The moment of every successful service call, in order.
    successes: Vec<Instant>,
}

/// The acknowledged writes checked against the table.
struct Verification {
    check_ins: usize,
    check_outs: usize,
    /// One line per acknowledged write that is missing or different.
    lost: Vec<String>,
}

fn acknowledged_writes_survive_restarts(test_on_check_out: bool) {
    let started = Instant::now();
    let cluster = PrivateCluster::start();
    cluster
        .admin()
        .batch_execute("CREATE DATABASE app")
        .expect("create database app");
    let url = cluster.url("app");
    let mut config = DatabaseConfig::new(DatabaseTarget::postgres_url(&url).expect("a valid PostgreSQL URL"));
    config.pool.test_on_check_out = test_on_check_out;
    config.pool.max_size = 8;
    config.pool.connection_timeout = Duration::from_secs(1);
    let database = Database::connect(config).expect("a pool on the private cluster");
    database.migrate().expect("migrations apply");
    let store = DieselStore::new(Arc::new(database));
    let service = AttendanceService::new(store.clone());
    let users = register_writers_users(&service);

    let run = write_through_the_schedule(&cluster, &service, &users);
    let verification = verify(&url, &run.ledger);

    // The default validation window: connections in use by the writers are not pinged.
    let ping = if test_on_check_out {
        format!(
            "on for connections idle {} ms",
            database::config::PoolSettings::default()
                .validate_idle_after
                .as_millis()
        )
    } else {
        "off".to_owned()
    };
    let report = report(&ping, &run, &verification, started.elapsed());
    let _ = write!(std::io::stderr(), "{report}");

    let error_count = |kind: &str| run.ledger.errors.get(kind).map_or(0, |(count, _)| *count);
    let unexpected_errors: usize = run
        .ledger
        .errors
        .iter()
        .filter(|(kind, _)| !matches!(**kind, "unavailable" | "timeout"))
        .map(|(_, (count, _))| count)
        .sum();
    let unrecovered: Vec<String> = run
        .restarts
        .iter()
        .enumerate()
        .filter(|(_, restart)| restart.recovered.is_none())
        .map(|(index, restart)| format!("#{} ({})", index + 1, restart.mode.name()))
        .collect();
    let lost = &verification.lost;
    assert_eq!(run.ledger.panics, 0, "writer panics; {report}");
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, first: {:?}; {report}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        error_count("internal"),
        0,
        "errors while the server restarts must be Unavailable or Timeout, not Internal; {report}"
    );
    assert_eq!(
        unexpected_errors, 0,
        "errors other than Unavailable and Timeout; {report}"
    );
    assert!(
        unrecovered.is_empty(),
        "the writers had no success within {RECOVERY_LIMIT:?} after restarts {unrecovered:?}; {report}"
    );
    assert!(
        verification.check_ins > 0 && verification.check_outs > 0,
        "the writers wrote nothing; {report}"
    );
}

/// `USERS_PER_THREAD` users for each writer thread.
fn register_writers_users(service: &AttendanceService<DieselStore>) -> Vec<Vec<UserId>> {
    (0..WRITER_THREADS)
        .map(|thread| {
            (0..USERS_PER_THREAD)
                .map(|user| {
                    let input = RegisterUser {
                        email: format!("writer{thread}-user{user}@example.com"),
                        full_name: format!("Writer {thread} User {user}"),
                        password: test_fixtures::DEFAULT_PASSWORD.into(),
                    };
                    service
                        .register(&AuditContext::unattributed(), &input)
                        .expect("register a writer's user")
                        .id
                })
                .collect()
        })
        .collect()
}

/// Runs the writers, one thread per list of users, while the cluster goes through `SCHEDULE`.
fn write_through_the_schedule(
    cluster: &PrivateCluster,
    service: &AttendanceService<DieselStore>,
    users: &[Vec<UserId>],
) -> Run {
    let stop = AtomicBool::new(false);
    let successes: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let writers_deadline = Instant::now() + WRITERS_LIMIT;
    let mut restarts: Vec<RestartRecord> = Vec::new();
    let joined: Vec<thread::Result<Ledger>> = thread::scope(|scope| {
        let (stop, successes) = (&stop, &successes);
        let handles: Vec<_> = users
            .iter()
            .map(|own_users| {
                scope.spawn(move || write_until_stopped(service, own_users, stop, successes, writers_deadline))
            })
            .collect();
        let stop_guard = StopOnDrop(stop);
        thread::sleep(write_window(SCHEDULE.len()));
        for (index, mode) in SCHEDULE.into_iter().enumerate() {
            let begun = Instant::now();
            mode.apply(cluster);
            let ready = cluster.wait_ready();
            let recovered = first_success_after(successes, ready, RECOVERY_LIMIT);
            restarts.push(RestartRecord {
                mode,
                begun,
                ready,
                recovered,
            });
            thread::sleep(write_window(index));
        }
        drop(stop_guard);
        handles.into_iter().map(thread::ScopedJoinHandle::join).collect()
    });

    let mut ledger = Ledger::default();
    for outcome in joined {
        match outcome {
            Ok(thread_ledger) => {
                ledger.acknowledged.extend(thread_ledger.acknowledged);
                for (kind, (count, message)) in thread_ledger.errors {
                    ledger.errors.entry(kind).or_insert((0, message)).0 += count;
                }
                ledger.expected_consequences += thread_ledger.expected_consequences;
                ledger.panics += thread_ledger.panics;
            }
            Err(_) => ledger.panics += 1,
        }
    }
    Run {
        ledger,
        restarts,
        successes: successes.into_inner().unwrap_or_else(PoisonError::into_inner),
    }
}

/// Checks every acknowledged write against what the server stored, on a fresh connection and
/// without the repositories under test.
fn verify(url: &str, ledger: &Ledger) -> Verification {
    let mut connection = PgConnection::establish(url).expect("a fresh connection to the private cluster");
    let stored: HashMap<String, StoredAttendance> = diesel::sql_query(
        "SELECT id::text AS id, user_id::text AS user_id, check_in_time, check_out_time FROM attendance",
    )
    .load::<StoredAttendance>(&mut connection)
    .expect("read back the attendance table")
    .into_iter()
    .map(|row| (row.id.clone(), row))
    .collect();
    let mut verification = Verification {
        check_ins: 0,
        check_outs: 0,
        lost: Vec::new(),
    };
    for write in &ledger.acknowledged {
        match *write {
            Acknowledged::CheckIn { id, user_id, at } => {
                verification.check_ins += 1;
                match stored.get(&id.to_string()) {
                    Some(row) if row.user_id == user_id.to_string() && row.check_in_time == at => {}
                    Some(row) => verification.lost.push(format!(
                        "check-in {id}: acknowledged user {user_id} at {at}, stored user {} at {}",
                        row.user_id, row.check_in_time
                    )),
                    None => verification
                        .lost
                        .push(format!("check-in {id} of user {user_id} at {at}: no row")),
                }
            }
            Acknowledged::CheckOut { id, at } => {
                verification.check_outs += 1;
                match stored.get(&id.to_string()) {
                    Some(row) if row.check_out_time == Some(at) => {}
                    Some(row) => verification.lost.push(format!(
                        "check-out {id}: acknowledged at {at}, stored {:?}",
                        row.check_out_time
                    )),
                    None => verification.lost.push(format!("check-out {id} at {at}: no row")),
                }
            }
        }
    }
    verification
}

/// The figures of a run, one per line, under `fault suite (checkout ping on|off):`.
fn report(ping: &str, run: &Run, verification: &Verification, elapsed: Duration) -> String {
    let mut restarts_by_mode: BTreeMap<Restart, usize> = BTreeMap::new();
    for restart in &run.restarts {
        *restarts_by_mode.entry(restart.mode).or_default() += 1;
    }
    let recovery_ms: Vec<u128> = run
        .restarts
        .iter()
        .filter_map(|restart| restart.recovered.map(|at| at.duration_since(restart.ready).as_millis()))
        .collect();
    // `pg_ctl -w` and `pg_isready` notice readiness late (pg_ctl polls ten times a second), so
    // writers can succeed before `ready`; the outage, the longest time with no success around
    // the restart, is measured from the writers' side only.
    let outage_ms: Vec<u128> = run
        .restarts
        .iter()
        .filter_map(|restart| {
            restart
                .recovered
                .map(|recovered| longest_gap(&run.successes, restart.begun, recovered))
        })
        .collect();
    let join = |parts: Vec<String>| {
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    };
    let mut report = String::new();
    let _ = writeln!(report, "fault suite (checkout ping {ping}):");
    let _ = writeln!(
        report,
        "  restarts by mode: {}",
        join(
            restarts_by_mode
                .iter()
                .map(|(mode, count)| format!("{} {count}", mode.name()))
                .collect()
        )
    );
    let _ = writeln!(report, "  acknowledged check-ins: {}", verification.check_ins);
    let _ = writeln!(report, "  acknowledged check-outs: {}", verification.check_outs);
    let _ = writeln!(report, "  lost: {}", verification.lost.len());
    let _ = writeln!(report, "  panics: {}", run.ledger.panics);
    let _ = writeln!(
        report,
        "  errors by variant: {}",
        join(
            run.ledger
                .errors
                .iter()
                .map(|(kind, (count, first))| format!("{kind} {count} (first: {})", one_line(first)))
                .collect()
        )
    );
    let _ = writeln!(
        report,
        "  expected consequences (check-out NotFound after an unknown outcome): {}",
        run.ledger.expected_consequences
    );
    let _ = writeln!(
        report,
        "  recovery after ready, per restart (ms): {}",
        join(
            run.restarts
                .iter()
                .map(|restart| {
                    let recovery = restart.recovered.map_or_else(
                        || "none".to_owned(),
                        |at| at.duration_since(restart.ready).as_millis().to_string(),
                    );
                    format!("{} {recovery}", restart.mode.name())
                })
                .collect()
        )
    );
    let _ = writeln!(
        report,
        "  recovery after ready, min / median / max (ms): {}",
        min_median_max(recovery_ms)
    );
    let _ = writeln!(
        report,
        "  write outage (longest time without a success around a restart), min / median / max (ms): {}",
        min_median_max(outage_ms)
    );
    let _ = writeln!(report, "  test time: {:.1} s", elapsed.as_secs_f64());
    report
}

/// 0.5, 1.0 or 1.5 s of writing, by position in the schedule.
fn write_window(index: usize) -> Duration {
    let step = u64::try_from(index % 3).expect("a small index");
    Duration::from_millis(500 + 500 * step)
}

/// One writer: cycles over its users, checking each in and out, until told to stop.
fn write_until_stopped(
    service: &AttendanceService<DieselStore>,
    users: &[UserId],
    stop: &AtomicBool,
    successes: &Mutex<Vec<Instant>>,
    deadline: Instant,
) -> Ledger {
    let mut ledger = Ledger::default();
    let mut states = vec![UserState::Closed; users.len()];
    let mut index = 0;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let slot = index % users.len();
        index += 1;
        let (user_id, state) = (users[slot], states[slot]);
        let checking_in = state == UserState::Closed;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if checking_in {
                service.check_in(&AuditContext::unattributed(), user_id, domain::time::now())
            } else {
                service.check_out(&AuditContext::unattributed(), user_id, domain::time::now())
            }
        }));
        states[slot] = match outcome {
            Err(_) => {
                ledger.panics += 1;
                UserState::Unknown
            }
            Ok(Ok(attendance)) => {
                successes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Instant::now());
                if checking_in {
                    ledger.acknowledged.push(Acknowledged::CheckIn {
                        id: attendance.id,
                        user_id: attendance.user_id,
                        at: attendance.check_in_time,
                    });
                    UserState::Open
                } else {
                    match attendance.check_out_time {
                        Some(at) => ledger
                            .acknowledged
                            .push(Acknowledged::CheckOut { id: attendance.id, at }),
                        None => ledger.record_error(&ServiceError::Repo(RepoError::Internal(format!(
                            "check-out of {} returned no check_out_time",
                            attendance.id
                        )))),
                    }
                    UserState::Closed
                }
            }
            // Nothing is open: the failed check-in had not committed, or the failed check-out had.
            // (A check-in is only tried from `Closed`, so a `Conflict` is never expected here.)
            Ok(Err(ServiceError::Repo(RepoError::NotFound { .. }))) if state == UserState::Unknown => {
                ledger.expected_consequences += 1;
                UserState::Closed
            }
            Ok(Err(error)) => {
                ledger.record_error(&error);
                thread::sleep(BACKOFF);
                UserState::Unknown
            }
        };
    }
    ledger
}

/// The longest time between two successes from the last one before `begun` to `recovered`.
fn longest_gap(successes: &[Instant], begun: Instant, recovered: Instant) -> u128 {
    let first = successes.partition_point(|at| *at < begun).saturating_sub(1);
    let last = successes.partition_point(|at| *at <= recovered);
    successes
        .get(first..last)
        .unwrap_or_default()
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]).as_millis())
        .max()
        .unwrap_or(0)
}

/// `message` with every run of whitespace (the server's multi-line messages) made one space.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `min / median / max` of some milliseconds, `-` for none.
fn min_median_max(mut values: Vec<u128>) -> String {
    values.sort_unstable();
    match (values.first(), values.get(values.len() / 2), values.last()) {
        (Some(min), Some(median), Some(max)) => format!("{min} / {median} / {max}"),
        _ => "- / - / -".to_owned(),
    }
}

/// Waits, at most `limit`, for a successful service call at or after `ready`.
fn first_success_after(successes: &Mutex<Vec<Instant>>, ready: Instant, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let successes = successes.lock().unwrap_or_else(PoisonError::into_inner);
            // Pushed under the lock, so in order.
            let first = successes.partition_point(|at| *at < ready);
            if let Some(at) = successes.get(first) {
                return Some(*at);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn service_error_kind(error: &ServiceError) -> &'static str {
    match error {
        ServiceError::Repo(error) => repo_error_kind(error),
        ServiceError::Inactive(_) => "service inactive",
        ServiceError::WrongPassword => "service wrong_password",
        ServiceError::InvalidCredentials => "service invalid_credentials",
        _ => "service error of a kind this suite does not know",
    }
}

fn repo_error_kind(error: &RepoError) -> &'static str {
    match error {
        RepoError::Unavailable(_) => "unavailable",
        RepoError::Timeout(_) => "timeout",
        RepoError::Internal(_) => "internal",
        RepoError::NotFound { .. } => "not_found",
        RepoError::Conflict { .. } => "conflict",
        RepoError::Validation { .. } => "validation",
        RepoError::StorageFull(_) => "storage_full",
        _ => "repository error of a kind this suite does not know",
    }
}

/// Attendance rows of `user_id`, soft-deleted or not.
fn attendance_rows_of(connection: &mut DbConnection, user_id: UserId) -> i64 {
    let DbConnection::Pg(connection) = connection else {
        panic!("the deferred-trigger test runs on PostgreSQL");
    };
    diesel::sql_query("SELECT count(*) AS count FROM attendance WHERE user_id = $1::text::uuid")
        .bind::<Text, _>(user_id.to_string())
        .get_result::<Count>(connection)
        .expect("count the user's attendance")
        .count
}

/// How the pool of `the_pool_recovers_after_every_connection_is_terminated` validates.
#[derive(Debug, Clone, Copy)]
enum Validation {
    /// `test_on_check_out` with this `validate_idle_after`.
    Window(Duration),
    /// `test_on_check_out` off.
    Off,
}

/// Terminates every connection of a pool of `POOL_SIZE` idle connections, then makes `CALLS`
/// reads one after another. `min_idle` is 0, so the pool opens no spare behind the test's back:
/// r2d2 hands out its idle connections last in, first out, and opens a new one only when none is
/// left, which makes the count of failures exact. With the window a short one (the default),
/// the test waits until every connection has been idle that long, and then no call may fail;
/// otherwise the first `POOL_SIZE` calls each fail with `Unavailable` and the rest succeed.
fn the_pool_recovers_after_every_connection_is_terminated(validation: Validation) {
    const POOL_SIZE: u32 = 4;
    const CALLS: usize = 12;
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let name = database
        .postgres_name()
        .expect("a PostgreSQL database has a name")
        .to_owned();
    let mut config = database.config();
    config.pool.max_size = POOL_SIZE;
    config.pool.min_idle = 0;
    match validation {
        Validation::Window(window) => {
            config.pool.test_on_check_out = true;
            config.pool.validate_idle_after = window;
        }
        Validation::Off => config.pool.test_on_check_out = false,
    }
    let window = config.pool.validate_idle_after;
    let store = DieselStore::new(Arc::new(Database::connect(config).expect("a pool")));
    let user = store
        .users()
        .create(new_user("pool-recovery@example.com", "Pool Recovery"))
        .expect("create a user");

    // Every pooled connection open and used once.
    let held: Vec<_> = (0..POOL_SIZE)
        .map(|_| store.database().get().expect("a pooled connection"))
        .collect();
    drop(held);
    let returned = Instant::now();
    assert_eq!(
        store.database().state().connections,
        POOL_SIZE,
        "the pool's connections"
    );

    let mut admin = TestDb::postgres_admin().expect("an admin connection to the shared server");
    let terminated = terminate_backends_of(&mut admin, &name);
    let idle_past_the_window = matches!(validation, Validation::Window(window) if window < Duration::from_mins(1));
    if idle_past_the_window {
        // Every connection came back at `returned`: wait until each is idle past the window.
        thread::sleep(window.saturating_sub(returned.elapsed()) + Duration::from_millis(50));
    }

    let outcomes: Vec<Result<(), RepoError>> = (0..CALLS)
        .map(|_| store.users().get(user.id, Scope::Live).map(|_| ()))
        .collect();
    let failures: Vec<(usize, &RepoError)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(call, outcome)| outcome.as_ref().err().map(|error| (call, error)))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "pool recovery ({validation:?}, idle past the window: {idle_past_the_window}): terminated {terminated} \
         backends; {} of {CALLS} calls failed: {failures:?}",
        failures.len()
    );

    assert_eq!(
        terminated,
        usize::try_from(POOL_SIZE).expect("a small pool"),
        "the pool's connections, and only they, were terminated"
    );
    for (call, error) in &failures {
        assert!(
            matches!(error, RepoError::Unavailable(_)),
            "call {call} on a terminated connection failed with {} instead of Unavailable: {error:?}",
            repo_error_kind(error)
        );
    }
    let failed_calls: Vec<usize> = failures.iter().map(|(call, _)| *call).collect();
    let expected: Vec<usize> = if idle_past_the_window {
        Vec::new()
    } else {
        (0..usize::try_from(POOL_SIZE).expect("a small pool")).collect()
    };
    assert_eq!(
        failed_calls, expected,
        "the calls that failed ({validation:?}): one per terminated connection handed out unchecked"
    );
    assert_eq!(
        store.database().state().connections,
        1,
        "the terminated connections are dropped and one new connection serves the later calls"
    );
}

/// A full tablespace is `StorageFull` (nothing of the failed call written), every create that
/// was acknowledged before it is stored and reads back, and a unit of work that runs into the
/// full disk is `StorageFull` and rolled back as a whole.
#[test]
fn a_full_disk_on_postgres_is_storage_full_and_keeps_the_data() {
    let started = Instant::now();
    // Declared before the cluster, so that the cluster stops before the disk is unmounted, also
    // when the test panics.
    let disk = test_fixtures::SmallDisk::mount("8m", "postgres:postgres");
    let location = disk.path().to_str().expect("a UTF-8 temporary path").to_owned();
    assert!(
        location
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '/' | '_' | '-')),
        "the tablespace location {location:?} is formatted into SQL: only [A-Za-z0-9/_-] are allowed"
    );
    let cluster = PrivateCluster::start();
    let mut admin = cluster.admin();
    admin
        .batch_execute(&format!("CREATE TABLESPACE small LOCATION '{location}'"))
        .expect("create the tablespace on the small disk");
    admin
        .batch_execute("CREATE DATABASE app TABLESPACE small")
        .expect("create database app on the small disk");
    drop(admin);
    let url = cluster.url("app");
    let database = Database::connect(DatabaseConfig::new(
        DatabaseTarget::postgres_url(&url).expect("a valid PostgreSQL URL"),
    ))
    .expect("a pool on the private cluster");
    database.migrate().expect("migrations apply");
    let store = DieselStore::new(Arc::new(database));
    let filler = disk.fill_leaving(FREE_SPACE_LEFT);

    let (acknowledged, failure) = create_until_full(&store);
    let RepoError::StorageFull(message) = &failure else {
        panic!(
            "a create on the full disk, after {} acknowledged creates, is not StorageFull: {failure:?}",
            acknowledged.len()
        );
    };
    let mut connection = PgConnection::establish(&url).expect("a fresh connection to the private cluster");
    let stored = user_rows(&mut connection);
    let unreadable: Vec<String> = acknowledged
        .iter()
        .filter_map(|id| match store.users().get(*id, Scope::Live) {
            Ok(user) if user.id == *id => None,
            Ok(user) => Some(format!("{id}: read back as {}", user.id)),
            Err(error) => Some(format!("{id}: {error:?}")),
        })
        .collect();

    let in_a_unit_of_work = store.transact(&AuditContext::unattributed(), |repositories| {
        for index in 0..MAX_CREATES {
            repositories.users().create(new_user(
                &format!("full-disk-transaction-{index}@example.com"),
                &long_name(index),
            ))?;
        }
        Ok(())
    });
    let stored_after_the_unit_of_work = user_rows(&mut connection);
    let _ = writeln!(
        std::io::stderr(),
        "full disk on PostgreSQL: {} KiB free after migrating (filler {} KiB); {} creates acknowledged, then \
         {failure:?}; {stored} rows stored; unreadable: {}; unit of work -> {in_a_unit_of_work:?}, rows after it \
         {stored_after_the_unit_of_work}; {:.1} s",
        FREE_SPACE_LEFT / 1024,
        filler / 1024,
        acknowledged.len(),
        unreadable.len(),
        started.elapsed().as_secs_f64()
    );

    assert!(
        message.contains("No space left on device"),
        "StorageFull without the server's cause: {message}"
    );
    assert!(!acknowledged.is_empty(), "not one create fitted on the disk");
    assert_eq!(
        usize::try_from(stored).expect("a row count"),
        acknowledged.len(),
        "rows stored against creates acknowledged"
    );
    assert!(
        unreadable.is_empty(),
        "acknowledged users that do not read back: {unreadable:?}"
    );
    assert!(
        matches!(in_a_unit_of_work, Err(RepoError::StorageFull(_))),
        "a unit of work on the full disk is not StorageFull: {in_a_unit_of_work:?}"
    );
    assert_eq!(
        stored_after_the_unit_of_work, stored,
        "the unit of work that failed on the full disk left rows behind"
    );
    drop(connection);
    drop(store);
    // Stopped before the disk is unmounted.
    drop(cluster);
    drop(disk);
}

/// The server's messages follow `lc_messages`. `map_error` classifies unique, check and
/// foreign-key violations and lost connections by diesel's error kind (from the SQLSTATE, or
/// the connection's state), so they keep their types under German messages; timeouts and a full
/// disk it recognises by English message text (diesel exposes no SQLSTATE), so under German a
/// lock timeout is `Internal`: the documented known gap, asserted exactly so that this test
/// fails when the classification changes.
#[test]
fn errors_keep_their_types_when_the_server_speaks_german() {
    assert!(
        german_locale_installed(),
        "the de_DE.UTF-8 locale is not installed (`locale -a` lists no de_DE.utf8): install it with \
         `apt-get install locales`, add the line `de_DE.UTF-8 UTF-8` to /etc/locale.gen and run `locale-gen`"
    );
    // A new postmaster, started after the locale was generated, can switch to it.
    let cluster = PrivateCluster::start();
    let mut admin = cluster.admin();
    let (store, url) = german_app(&cluster, &mut admin);
    let user = store
        .users()
        .create(new_user("german@example.com", "Deutsche Meldungen"))
        .expect("create a user");

    // The messages really are German: the setting, and one raw message.
    let mut raw = PgConnection::establish(&url).expect("a raw connection to database app");
    let lc_messages = diesel::sql_query("SHOW lc_messages")
        .get_result::<LcMessages>(&mut raw)
        .expect("SHOW lc_messages")
        .lc_messages;
    let raw_duplicate = diesel::sql_query(
        "INSERT INTO users (id, email, full_name, hashed_password)
         VALUES (gen_random_uuid(), 'german@example.com', 'Raw Duplicate', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA')",
    )
    .execute(&mut raw);
    let raw_message = match raw_duplicate {
        Err(diesel::result::Error::DatabaseError(_, information)) => information.message().to_owned(),
        other => panic!("a raw duplicate insert is not a database error: {other:?}"),
    };

    let duplicate = store.users().create(new_user("german@example.com", "Zweite Anmeldung"));
    let (check_violation, foreign_key_violation) = bulk_violations(&store);

    // A lock timeout: another session holds users in ACCESS EXCLUSIVE mode.
    let mut holder = PgConnection::establish(&url).expect("a connection that holds the lock");
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock the users table");
    let lock_timeout = store.users().get(user.id, Scope::Live);
    holder.batch_execute("ROLLBACK").expect("release the lock");

    // A lost connection: every backend of the database terminated, no checkout ping.
    let held: Vec<_> = (0..2)
        .map(|_| store.database().get().expect("a pooled connection"))
        .collect();
    drop(held);
    drop(raw);
    drop(holder);
    terminate_backends_of(&mut admin, "app");
    let lost_connection = store.users().get(user.id, Scope::Live);
    let _ = writeln!(
        std::io::stderr(),
        "German messages: lc_messages = {lc_messages}; raw duplicate: {raw_message:?}\n  duplicate email -> \
         {duplicate:?}\n  check violation -> {check_violation:?}\n  foreign-key violation -> \
         {foreign_key_violation:?}\n  lock timeout -> {lock_timeout:?}\n  lost connection -> {lost_connection:?}"
    );

    assert_eq!(lc_messages, "de_DE.UTF-8");
    assert!(
        raw_message.contains("doppelter Schlüsselwert"),
        "the server's messages are not German: {raw_message:?}"
    );
    assert!(
        matches!(&duplicate, Err(RepoError::Conflict { constraint, .. }) if constraint == "uq_users_email"),
        "a duplicate email under German messages: {duplicate:?}"
    );
    assert!(
        matches!(&check_violation, Err(RepoError::Validation { field, .. }) if field == "email"),
        "a check violation under German messages: {check_violation:?}"
    );
    assert!(
        matches!(&foreign_key_violation, Err(RepoError::Conflict { constraint, .. })
            if constraint == "fk_attendance_users"),
        "a foreign-key violation under German messages: {foreign_key_violation:?}"
    );
    assert!(
        matches!(&lost_connection, Err(RepoError::Unavailable(_))),
        "a lost connection under German messages: {lost_connection:?}"
    );
    // The known gap: `map_error` recognises a lock timeout by the English "lock timeout", so the
    // German message makes it `Internal`. When the classification no longer depends on the
    // language, this assertion fails: make it `Timeout` then.
    assert!(
        matches!(&lock_timeout, Err(RepoError::Internal(message))
            if message == "storniere Anfrage wegen Zeitüberschreitung einer Sperre"),
        "a lock timeout under German messages (known gap: expected Internal with the German message): \
         {lock_timeout:?}"
    );
}

/// Database `app` on `cluster` with German server messages, migrated, and a store on it with a
/// lock timeout of 100 ms, no checkout ping and two connections.
fn german_app(cluster: &PrivateCluster, admin: &mut PgConnection) -> (DieselStore, String) {
    admin.batch_execute("CREATE DATABASE app").expect("create database app");
    admin
        .batch_execute("ALTER DATABASE app SET lc_messages = 'de_DE.UTF-8'")
        .expect("German messages in database app");
    let url = cluster.url("app");
    let mut config = DatabaseConfig::new(DatabaseTarget::postgres_url(&url).expect("a valid PostgreSQL URL"));
    config.session.lock_timeout = Duration::from_millis(100);
    config.pool.test_on_check_out = false;
    config.pool.max_size = 2;
    let database = Database::connect(config).expect("a pool on the private cluster");
    database.migrate().expect("migrations apply");
    (DieselStore::new(Arc::new(database)), url)
}

/// A user whose email breaks `chk_users_email_lowercase` and a record of a user that does not
/// exist, each written with the bulk loader (the repositories validate both in Rust first).
fn bulk_violations(store: &DieselStore) -> (Result<usize, RepoError>, Result<usize, RepoError>) {
    let check_violation = {
        let mut connection = store.database().get().expect("a pooled connection");
        let now = DbTimestamp(domain::time::now());
        repo_diesel::bulk::insert_users(
            &mut connection,
            &[NewUserRow {
                id: DbUuid(uuid::Uuid::now_v7()),
                email: "Upper.Case@Example.com".into(),
                full_name: "Grossbuchstaben".into(),
                hashed_password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                is_active: true,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                deletion_batch_id: None,
            }],
        )
    };
    let foreign_key_violation = {
        let mut connection = store.database().get().expect("a pooled connection");
        let now = DbTimestamp(domain::time::now());
        repo_diesel::bulk::insert_attendance(
            &mut connection,
            &[NewAttendanceRow {
                id: DbUuid(uuid::Uuid::now_v7()),
                user_id: DbUuid(uuid::Uuid::now_v7()),
                check_in_time: now,
                check_out_time: None,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                deletion_batch_id: None,
            }],
        )
    };
    (check_violation, foreign_key_violation)
}

/// Creates users with 200-character names until a create fails: the acknowledged ids and the
/// error.
fn create_until_full(store: &DieselStore) -> (Vec<UserId>, RepoError) {
    let mut acknowledged: Vec<UserId> = Vec::new();
    for index in 0..MAX_CREATES {
        match store
            .users()
            .create(new_user(&format!("full-disk-{index}@example.com"), &long_name(index)))
        {
            Ok(user) => acknowledged.push(user.id),
            Err(error) => return (acknowledged, error),
        }
    }
    panic!("{MAX_CREATES} creates fitted on the small disk");
}

#[derive(QueryableByName)]
struct LcMessages {
    #[diesel(sql_type = Text)]
    lc_messages: String,
}

/// A valid name of the longest length, 200 characters.
fn long_name(index: usize) -> String {
    format!("{:x<200}", format!("Full Disk User {index:06} "))
}

fn user_rows(connection: &mut PgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS count FROM users")
        .get_result::<Count>(connection)
        .expect("count the users")
        .count
}

/// Whether `locale -a` lists `de_DE.UTF-8` (as `de_DE.utf8`).
fn german_locale_installed() -> bool {
    let output = Command::new("locale").arg("-a").output().expect("locale -a runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| matches!(line.trim().to_ascii_lowercase().as_str(), "de_de.utf8" | "de_de.utf-8"))
}

/// Terminates every backend of `database` and waits (at most 10 s) until they are gone.
/// Terminates every backend of `database` and waits (boundedly) until they are gone; returns how
/// many were terminated.
fn terminate_backends_of(admin: &mut PgConnection, database: &str) -> usize {
    let terminated = diesel::sql_query(
        "SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind::<Text, _>(database)
    .load::<Terminated>(admin)
    .expect("terminate the database's backends");
    let terminated = terminated.iter().filter(|row| row.terminated).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining = diesel::sql_query("SELECT count(*) AS count FROM pg_stat_activity WHERE datname = $1")
            .bind::<Text, _>(database)
            .get_result::<Count>(admin)
            .expect("count the database's backends")
            .count;
        if remaining == 0 {
            return terminated;
        }
        assert!(
            Instant::now() < deadline,
            "{remaining} backends of {database} still there 10 s after pg_terminate_backend"
        );
        thread::sleep(Duration::from_millis(10));
    }
}
