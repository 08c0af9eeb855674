//! Health checks (`ops::health`) driven into WARNING and CRITICAL on real databases: a private
//! cluster with `max_connections = 10` filled with sessions, a private cluster with
//! `pg_stat_statements` and tiny shared buffers, a streaming replica made by `pg_basebackup` whose
//! replay is paused while the primary is idle (where `replay_lag` stays NULL), sleeping
//! statements, an open transaction and a session queued behind its lock, an index left invalid by
//! a failed `CREATE INDEX CONCURRENTLY`, backup records made old, a dirty migration, old size
//! samples, and SQLite files with a large WAL, many free pages and damaged pages.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use database::{Backend, DatabaseConfig, DatabaseTarget};
use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Double, Nullable};
use ops::health::samples::{SampleStore, SizeSample};
use ops::health::{CheckName, CheckResult, HealthConfig, HealthReport, Status, Thresholds};
use ops::manifest::BackupDirectory;
use ops::records::{Kind, Outcome, Record};
use tempfile::TempDir;
use test_fixtures::TestDb;

use crate::cluster::PrivateCluster;
use crate::support::{migrated, on_both_backends};

/// How long a test polls for a status before it fails.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// A health configuration whose state and backup directories live in a temporary directory.
struct Setup {
    directory: TempDir,
    health: HealthConfig,
}

impl Setup {
    fn new() -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let health = HealthConfig::new(directory.path().join("state"), directory.path().join("backups"));
        Self { directory, health }
    }

    /// Runs only `check`, with `thresholds` when given.
    fn with(&self, check: CheckName, thresholds: Option<Thresholds>) -> HealthConfig {
        let mut health = self.health.clone();
        health.selected = vec![check];
        if let Some(thresholds) = thresholds {
            health.thresholds.insert(check, thresholds);
        }
        health
    }
}

fn thresholds(warning: f64, critical: f64) -> Thresholds {
    Thresholds::new(Some(warning), Some(critical))
}

fn run(config: &DatabaseConfig, health: &HealthConfig) -> HealthReport {
    ops::health::run(config, health).expect("the checks exist on the backend")
}

/// The result of the one check `health` selects.
fn result(config: &DatabaseConfig, health: &HealthConfig) -> CheckResult {
    let report = run(config, health);
    assert_eq!(report.checks.len(), 1, "{report:#?}");
    report.checks.into_iter().next().expect("one check")
}

#[track_caller]
fn assert_status(result: &CheckResult, status: Status) {
    assert_eq!(result.status, status, "{result:#?}");
}

/// Polls `check` until it reports `status`; returns the result and when it first did.
#[track_caller]
fn wait_for(config: &DatabaseConfig, health: &HealthConfig, status: Status) -> (CheckResult, Instant) {
    let deadline = Instant::now() + WAIT;
    loop {
        let result = result(config, health);
        if result.status == status {
            return (result, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no {status} within {WAIT:?}; last: {result:#?}"
        );
        thread::sleep(POLL);
    }
}

fn postgres_config(url: &str) -> DatabaseConfig {
    DatabaseConfig::new(DatabaseTarget::postgres_url(url).expect("a PostgreSQL URL"))
}

fn url_of(database: &TestDb) -> String {
    database.target().expose_connection_string()
}

fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "health: {text}");
}

// ---------------------------------------------------------------------------------------------
// Connections, on a private cluster with a low max_connections

#[test]
fn connections_warn_at_80_and_go_critical_at_90_percent_of_a_low_max_connections_on_postgres() {
    let cluster = PrivateCluster::start_with_settings(&[("max_connections", "10")]);
    let config = postgres_config(&cluster.url("postgres"));
    let setup = Setup::new();
    let health = setup.with(CheckName::Connections, None);
    // 10 slots, 3 reserved for superusers: 7 for ordinary roles. The check's own session counts.
    let first = result(&config, &health);
    assert_status(&first, Status::Ok);
    assert!(first.summary.contains("1 of 7 connections"), "{first:#?}");
    let mut held: Vec<PgConnection> = (0..5).map(|_| cluster.admin()).collect();
    let warning = result(&config, &health);
    assert_status(&warning, Status::Warning);
    assert!(
        warning
            .observed
            .is_some_and(|percent| (percent - 600.0 / 7.0).abs() < 0.01),
        "6 of 7: {warning:#?}"
    );
    held.push(cluster.admin());
    let critical = result(&config, &health);
    assert_status(&critical, Status::Critical);
    assert!(critical.summary.contains("7 of 7 connections"), "{critical:#?}");
    assert_eq!(critical.perfdata[1].label, "connections_used");
    drop(held);
    wait_for(&config, &health, Status::Ok);
}

// ---------------------------------------------------------------------------------------------
// pg_stat_statements and the cache hit ratio, on a private cluster

#[test]
fn slow_statements_and_a_low_cache_hit_ratio_on_a_cluster_with_pg_stat_statements_on_postgres() {
    let cluster = PrivateCluster::start_with_settings(&[
        ("shared_preload_libraries", "pg_stat_statements"),
        ("shared_buffers", "1MB"),
        ("max_connections", "20"),
    ]);
    let mut admin = cluster.admin();
    admin
        .batch_execute("CREATE DATABASE without_statements")
        .expect("a database without the extension");
    let config = postgres_config(&cluster.url("postgres"));
    let setup = Setup::new();

    let missing = result(
        &postgres_config(&cluster.url("without_statements")),
        &setup.with(CheckName::SlowStatements, None),
    );
    assert_status(&missing, Status::Unknown);
    assert!(
        missing.summary.contains("pg_stat_statements is not installed"),
        "{missing:#?}"
    );

    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .expect("the extension");
    for _ in 0..3 {
        admin.batch_execute("SELECT pg_sleep(0.3)").expect("a slow statement");
    }
    let mut health = setup.with(CheckName::SlowStatements, None);
    health.slow_statements_min_calls = 3;
    assert_status(&result(&config, &health), Status::Ok);
    health
        .thresholds
        .insert(CheckName::SlowStatements, Thresholds::new(Some(0.2), Some(1.0)));
    let warning = result(&config, &health);
    assert_status(&warning, Status::Warning);
    assert!(warning.summary.contains("pg_sleep"), "{warning:#?}");
    health
        .thresholds
        .insert(CheckName::SlowStatements, Thresholds::new(Some(0.2), Some(0.25)));
    assert_status(&result(&config, &health), Status::Critical);
    health.slow_statements_min_calls = 4;
    assert_status(&result(&config, &health), Status::Ok);

    // A table 20 times the size of shared buffers, scanned through the ring buffer: reads, not hits.
    admin
        .batch_execute(
            "CREATE TABLE cold AS SELECT g AS id, repeat('x', 200) AS filler FROM generate_series(1, 100000) g;
             SELECT count(*) FROM cold; SELECT count(*) FROM cold; SELECT count(*) FROM cold;",
        )
        .expect("a table larger than shared buffers");
    // Statistics are flushed when the session ends.
    drop(admin);
    let (low, _) = wait_for(&config, &setup.with(CheckName::CacheHit, None), Status::Critical);
    assert!(low.observed.is_some_and(|ratio| ratio < 95.0), "{low:#?}");
    assert_status(
        &result(&config, &setup.with(CheckName::CacheHit, Some(thresholds(100.0, 1.0)))),
        Status::Warning,
    );
    assert_status(
        &result(&config, &setup.with(CheckName::CacheHit, Some(thresholds(1.0, 0.5)))),
        Status::Ok,
    );
}

// ---------------------------------------------------------------------------------------------
// Replication lag, on a streaming replica

#[derive(QueryableByName, Debug)]
struct ReplayLag {
    #[diesel(sql_type = Nullable<Double>)]
    replay_lag: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    bytes_behind: Option<f64>,
}

fn replay_lag(primary: &mut PgConnection) -> Option<ReplayLag> {
    diesel::sql_query(
        "SELECT extract(epoch FROM replay_lag)::float8 AS replay_lag,
                pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS bytes_behind
         FROM pg_stat_replication WHERE state = 'streaming'",
    )
    .get_result(primary)
    .optional()
    .expect("pg_stat_replication")
}

/// Waits until the replica has caught up and the primary is idle: `replay_lag` turns NULL once
/// the standby has replied twice at the end.
fn wait_until_caught_up_and_idle(primary: &mut PgConnection) {
    let deadline = Instant::now() + WAIT;
    loop {
        let lag = replay_lag(primary);
        if lag
            .as_ref()
            .is_some_and(|lag| lag.replay_lag.is_none() && lag.bytes_behind == Some(0.0))
        {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not catch up: {lag:?}");
        thread::sleep(POLL);
    }
}

/// A replica of `primary` made by `pg_basebackup -R` (as `postgres`) and started on its own port.
fn start_replica(primary: &PrivateCluster) -> PrivateCluster {
    let directory = PrivateCluster::scratch_directory();
    let data = directory.path().join("data");
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(primary.bin_dir().join("pg_basebackup"))
        .args(["-h", "127.0.0.1", "-p", &primary.port().to_string(), "-U", "postgres"])
        .arg("-D")
        .arg(&data)
        .args(["-R", "-X", "stream", "--checkpoint=fast"])
        .output()
        .expect("pg_basebackup runs");
    assert!(
        output.status.success(),
        "pg_basebackup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PrivateCluster::start_on_data_dir(directory, data)
}

/// A `pg_basebackup --wal-method=stream` throttled to its slowest rate, so that it is still
/// running while the checks look at it; killed on drop if the test fails first.
struct BaseBackupInProgress {
    child: Child,
    _directory: TempDir,
}

#[derive(QueryableByName, Debug)]
struct BaseBackupSenders {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    backups: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    wal_streams: i64,
}

impl BaseBackupInProgress {
    /// Starts the backup and waits until both its walsenders are in `pg_stat_replication`, the
    /// WAL stream having reported how far it flushed.
    fn start(primary: &PrivateCluster, admin: &mut PgConnection) -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let child = Command::new(primary.bin_dir().join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &primary.port().to_string(), "-U", "postgres"])
            .arg("-D")
            .arg(directory.path().join("backup"))
            .args(["-X", "stream", "--max-rate=32k", "--checkpoint=fast", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pg_basebackup starts");
        let backup = Self {
            child,
            _directory: directory,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let senders: BaseBackupSenders = diesel::sql_query(
                "SELECT count(*) FILTER (WHERE state = 'backup') AS backups,
                        count(*) FILTER (WHERE state = 'streaming' AND flush_lsn IS NOT NULL AND replay_lsn IS NULL)
                          AS wal_streams
                 FROM pg_stat_replication WHERE application_name = 'pg_basebackup'",
            )
            .get_result(admin)
            .expect("pg_stat_replication");
            if senders.backups == 1 && senders.wal_streams == 1 {
                return backup;
            }
            assert!(Instant::now() < deadline, "no base backup streaming WAL: {senders:?}");
            thread::sleep(POLL);
        }
    }

    /// Ends the backup by terminating its walsenders, and waits for `pg_basebackup` to exit.
    fn stop(mut self, admin: &mut PgConnection) {
        admin
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'pg_basebackup'",
            )
            .expect("terminate the base backup");
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().expect("pg_basebackup's status").is_none() {
            assert!(Instant::now() < deadline, "pg_basebackup did not exit");
            thread::sleep(POLL);
        }
    }
}

impl Drop for BaseBackupInProgress {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn a_replica_paused_while_the_primary_is_idle_goes_warning_then_critical_on_postgres() {
    // The standby replies every second, so that the primary clears replay_lag soon after it
    // catches up (a base backup carries this setting to the replica).
    let primary = PrivateCluster::start_with_settings(&[("wal_receiver_status_interval", "1")]);
    let mut admin = primary.admin();
    let config = postgres_config(&primary.url("postgres"));
    let setup = Setup::new();
    let health = setup.with(CheckName::ReplicationLag, Some(thresholds(1.0, 6.0)));

    let none = result(&config, &health);
    assert_status(&none, Status::Ok);
    assert!(
        none.summary.contains("no replicas") && none.summary.contains("only with HEALTH_REPLICAS_EXPECTED"),
        "{none:#?}"
    );
    let expecting = |count: usize| {
        let mut expecting = health.clone();
        expecting.replicas_expected = Some(count);
        expecting
    };
    // The replica that should be there is missing: CRITICAL, not "no replicas".
    let missing = result(&config, &expecting(1));
    assert_status(&missing, Status::Critical);
    assert!(
        missing
            .summary
            .contains("1 replica(s) expected (HEALTH_REPLICAS_EXPECTED), 0 streaming"),
        "{missing:#?}"
    );

    let replica = start_replica(&primary);
    wait_until_caught_up_and_idle(&mut admin);
    let idle = result(&config, &health);
    assert_status(&idle, Status::Ok);
    assert_eq!(
        idle.perfdata.len(),
        3,
        "the check's own value and two per replica: {idle:#?}"
    );
    assert_status(&result(&config, &expecting(1)), Status::Ok);
    let short = result(&config, &expecting(2));
    assert_status(&short, Status::Critical);
    assert!(short.summary.contains("2 replica(s) expected"), "{short:#?}");

    // A base backup with its WAL streamed: two walsenders without a replay position (one in
    // state `backup`, one streaming WAL it never replays), neither of them a replica.
    let backup = BaseBackupInProgress::start(&primary, &mut admin);
    let during = result(&config, &health);
    assert_status(&during, Status::Ok);
    assert!(during.summary.contains("not replicas, skipped"), "{during:#?}");
    assert_status(&result(&config, &expecting(1)), Status::Ok);
    assert_status(&result(&config, &expecting(2)), Status::Critical);
    backup.stop(&mut admin);

    replica
        .admin()
        .batch_execute("SELECT pg_wal_replay_pause()")
        .expect("pause replay");
    admin
        .batch_execute("CREATE TABLE lag_probe AS SELECT generate_series(1, 10000) AS id")
        .expect("WAL for the paused replica");
    let written = Instant::now();
    let behind = replay_lag(&mut admin);
    note(&format!(
        "after the write on the idle primary, pg_stat_replication says {behind:?}"
    ));

    let (warning, warned) = wait_for(&config, &health, Status::Warning);
    let (critical, critical_at) = wait_for(&config, &health, Status::Critical);
    note(&format!(
        "WARNING after {:?}: {}; CRITICAL after {:?}: {}",
        warned - written,
        warning.summary,
        critical_at - written,
        critical.summary
    ));
    assert!(
        critical_at - written >= Duration::from_secs(6),
        "CRITICAL at 6 s of lag needs 6 s of real waiting, not {:?}",
        critical_at - written
    );
    assert!(critical.observed.is_some_and(|lag| lag >= 6.0), "{critical:#?}");
    // Timed by the replay position standing still, not only by replay_lag, which lags behind
    // (interpolated from the standby's replies) or stays NULL.
    assert!(critical.summary.contains("replay stalled at"), "{critical:#?}");
    let replica_lag = critical
        .perfdata
        .iter()
        .find(|data| data.label.starts_with("replication_lag_"))
        .expect("a per-replica value");
    assert!(
        replica_lag.subject.is_some() && replica_lag.value >= 6.0,
        "{replica_lag:#?}"
    );
    let bytes = critical
        .perfdata
        .iter()
        .find(|data| data.label.starts_with("replication_bytes_"))
        .expect("bytes behind");
    assert!(bytes.value > 0.0, "{bytes:#?}");

    replica
        .admin()
        .batch_execute("SELECT pg_wal_replay_resume()")
        .expect("resume replay");
    wait_for(&config, &health, Status::Ok);
}

// ---------------------------------------------------------------------------------------------
// Sessions: long statements, idle transactions, lock waits

#[test]
fn a_long_statement_goes_warning_then_critical_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    // Windows of seconds, wide enough for a loaded machine: WARNING from 1 s to 6 s, CRITICAL
    // from 6 s to the end of the statement at 12 s.
    let health = setup.with(CheckName::LongRunning, Some(thresholds(1.0, 6.0)));
    assert_status(&result(&config, &health), Status::Ok);
    let url = url_of(&database);
    let sleeper = thread::spawn(move || {
        let mut connection = PgConnection::establish(&url).expect("a second session");
        connection.batch_execute("SELECT pg_sleep(12)")
    });
    let started = Instant::now();
    let (warning, _) = wait_for(&config, &health, Status::Warning);
    assert!(warning.summary.contains("pid "), "{warning:#?}");
    let (_, critical_at) = wait_for(&config, &health, Status::Critical);
    assert!(critical_at - started >= Duration::from_secs(6));
    sleeper.join().expect("the sleeper").expect("pg_sleep");
    assert_status(&result(&config, &health), Status::Ok);
}

#[test]
fn an_idle_transaction_and_a_session_waiting_for_its_lock_go_warning_then_critical_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let url = url_of(&database);
    let setup = Setup::new();
    // WARNING from 1 s to 8 s, CRITICAL after: windows wide enough for a loaded machine.
    let idle = setup.with(CheckName::IdleInTransaction, Some(thresholds(1.0, 8.0)));
    let waits = setup.with(CheckName::LockWaits, Some(thresholds(1.0, 8.0)));
    let mut holder = PgConnection::establish(&url).expect("a session");
    holder
        .batch_execute("CREATE TABLE locked (id integer)")
        .expect("a table");
    // Its own call: in one query string, BEGIN would take the CREATE TABLE into the transaction.
    holder
        .batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE;")
        .expect("a transaction holding a lock");
    wait_for(&config, &idle, Status::Warning);
    // The waiter starts once the idle transaction is seen, so that each check's window starts
    // when the test looks for it.
    let waiter_url = url.clone();
    let waiter = thread::spawn(move || {
        let mut connection = PgConnection::establish(&waiter_url).expect("a second session");
        connection.batch_execute("SELECT count(*) FROM locked")
    });
    let (lock_warning, _) = wait_for(&config, &waits, Status::Warning);
    assert!(lock_warning.summary.contains("wait for a lock"), "{lock_warning:#?}");
    let (idle_critical, _) = wait_for(&config, &idle, Status::Critical);
    assert!(idle_critical.observed.is_some_and(|seconds| seconds >= 8.0));
    wait_for(&config, &waits, Status::Critical);
    holder.batch_execute("ROLLBACK").expect("release the lock");
    waiter
        .join()
        .expect("the waiter")
        .expect("the count, once the lock is released");
    assert_status(&result(&config, &idle), Status::Ok);
    assert_status(&result(&config, &waits), Status::Ok);
}

/// The password of the roles [`MonitoringRoles`] makes (servers with password authentication
/// ask for one). Not a secret.
const ROLE_PASSWORD: &str = "health-test-password";

/// Two login roles for one test, dropped on drop even when the test fails: one with only
/// `CONNECT` on the database, one in `pg_monitor`.
struct MonitoringRoles {
    unprivileged: String,
    monitor: String,
}

impl MonitoringRoles {
    fn create(database: &str) -> Self {
        let pid = std::process::id();
        let roles = Self {
            unprivileged: format!("health_unprivileged_{pid}"),
            monitor: format!("health_monitor_{pid}"),
        };
        let mut admin = TestDb::postgres_admin().expect("the test server");
        roles.drop_roles(&mut admin);
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{unprivileged}\" LOGIN PASSWORD '{ROLE_PASSWORD}';
                 CREATE ROLE \"{monitor}\" LOGIN PASSWORD '{ROLE_PASSWORD}' IN ROLE pg_monitor;
                 GRANT CONNECT ON DATABASE \"{database}\" TO \"{unprivileged}\", \"{monitor}\";",
                unprivileged = roles.unprivileged,
                monitor = roles.monitor,
            ))
            .expect("the roles");
        roles
    }

    fn drop_roles(&self, admin: &mut PgConnection) {
        for role in [&self.unprivileged, &self.monitor] {
            // DROP OWNED revokes the grant on the database (a shared object) from any database;
            // it fails for a role that does not exist, which is fine.
            let _ = admin.batch_execute(&format!("DROP OWNED BY \"{role}\""));
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""));
        }
    }
}

impl Drop for MonitoringRoles {
    fn drop(&mut self) {
        if let Some(mut admin) = TestDb::postgres_admin() {
            self.drop_roles(&mut admin);
        }
    }
}

/// `url` as `role`: libpq's `user` and `password` parameters win over the URL's own.
fn url_as(url: &str, role: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}user={role}&password={ROLE_PASSWORD}")
}

#[test]
fn sessions_hidden_from_a_role_without_pg_read_all_stats_make_the_checks_unknown_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let name = database.postgres_name().expect("a PostgreSQL database").to_owned();
    let roles = MonitoringRoles::create(&name);
    let url = url_of(&database);
    let unprivileged = postgres_config(&url_as(&url, &roles.unprivileged));
    let monitor = postgres_config(&url_as(&url, &roles.monitor));
    let setup = Setup::new();
    let long = setup.with(CheckName::LongRunning, Some(thresholds(1.0, 600.0)));
    let idle = setup.with(CheckName::IdleInTransaction, Some(thresholds(1.0, 600.0)));
    // No other session: nothing to hide.
    assert_status(&result(&unprivileged, &long), Status::Ok);
    // The server's other sessions (background processes at least) hide their backend type from
    // this role: it cannot count connections, and says so; the monitoring role can.
    let connections = setup.with(CheckName::Connections, None);
    let hidden = result(&unprivileged, &connections);
    assert_status(&hidden, Status::Unknown);
    assert!(hidden.summary.contains("pg_read_all_stats"), "{hidden:#?}");
    assert_ne!(result(&monitor, &connections).status, Status::Unknown);

    // Another role's statement, running for 6 s.
    let sleeper_url = url.clone();
    let sleeper = thread::spawn(move || {
        let mut connection = PgConnection::establish(&sleeper_url).expect("a session of another role");
        connection.batch_execute("SELECT pg_sleep(6)")
    });
    let (seen, _) = wait_for(&monitor, &long, Status::Warning);
    assert!(
        seen.summary.contains("pid ") && !seen.summary.contains("hidden"),
        "{seen:#?}"
    );
    let hidden = result(&unprivileged, &long);
    assert_status(&hidden, Status::Unknown);
    assert!(
        hidden.summary.contains("hidden from this role") && hidden.summary.contains("pg_read_all_stats"),
        "{hidden:#?}"
    );
    // Its own statement past the threshold is WARNING, hidden sessions or not.
    let own_url = url_as(&url, &roles.unprivileged);
    let own = thread::spawn(move || {
        let mut connection = PgConnection::establish(&own_url).expect("a session of the unprivileged role");
        connection.batch_execute("SELECT pg_sleep(2)")
    });
    let (own_warning, _) = wait_for(&unprivileged, &long, Status::Warning);
    assert!(
        own_warning.summary.contains("hidden from this role"),
        "{own_warning:#?}"
    );
    own.join().expect("its own sleeper").expect("pg_sleep");
    sleeper.join().expect("the sleeper").expect("pg_sleep");

    // Another role's transaction left idle.
    let mut holder = PgConnection::establish(&url).expect("a session of another role");
    holder.batch_execute("BEGIN; SELECT 1;").expect("an open transaction");
    wait_for(&monitor, &idle, Status::Warning);
    let hidden = result(&unprivileged, &idle);
    assert_status(&hidden, Status::Unknown);
    assert!(hidden.summary.contains("pg_read_all_stats"), "{hidden:#?}");
    drop(holder);
    wait_for(&unprivileged, &idle, Status::Ok);
    wait_for(&unprivileged, &long, Status::Ok);
}

// ---------------------------------------------------------------------------------------------
// Indexes, wraparound, pg_stat_statements missing

#[test]
fn an_index_left_invalid_by_a_failed_concurrent_build_is_critical_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let mut connection = PgConnection::establish(&url_of(&database)).expect("a session");
    connection
        .batch_execute(
            "CREATE TABLE dupes (email text); INSERT INTO dupes VALUES ('a@example.com'), ('a@example.com');",
        )
        .expect("duplicates");
    assert_status(
        &result(&config, &setup.with(CheckName::InvalidIndexes, None)),
        Status::Ok,
    );
    connection
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dupes_email ON dupes (email)")
        .expect_err("the unique build fails on duplicates");
    let critical = result(&config, &setup.with(CheckName::InvalidIndexes, None));
    assert_status(&critical, Status::Critical);
    assert!(critical.summary.contains("public.dupes_email"), "{critical:#?}");
    assert_status(
        &result(
            &config,
            &setup.with(CheckName::InvalidIndexes, Some(thresholds(1.0, 2.0))),
        ),
        Status::Warning,
    );
}

#[test]
fn indexes_scanned_fewer_than_50_times_are_named_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    assert_status(
        &result(&config, &setup.with(CheckName::UnusedIndexes, None)),
        Status::Ok,
    );
    let mut connection = PgConnection::establish(&url_of(&database)).expect("a session");
    connection
        .batch_execute(
            "CREATE TABLE things (id integer PRIMARY KEY, code text UNIQUE, note text);
             CREATE INDEX things_note ON things (note);",
        )
        .expect("indexes");
    let warning = result(&config, &setup.with(CheckName::UnusedIndexes, None));
    assert_status(&warning, Status::Warning);
    assert_eq!(
        warning.observed,
        Some(1.0),
        "primary and unique indexes enforce something: {warning:#?}"
    );
    assert!(warning.summary.contains("public.things_note (0 scans)"), "{warning:#?}");
    assert_status(
        &result(
            &config,
            &setup.with(CheckName::UnusedIndexes, Some(thresholds(1.0, 1.0))),
        ),
        Status::Critical,
    );
}

#[test]
fn transaction_id_age_against_its_thresholds_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let natural = result(&config, &setup.with(CheckName::Wraparound, None));
    assert_status(&natural, Status::Ok);
    let age = natural.observed.expect("an age");
    assert!(age >= 1.0, "{natural:#?}");
    // The real thresholds need 1.3 billion transactions: thresholds below the age stand in.
    assert_status(
        &result(&config, &setup.with(CheckName::Wraparound, Some(thresholds(1.0, 1e12)))),
        Status::Warning,
    );
    assert_status(
        &result(&config, &setup.with(CheckName::Wraparound, Some(thresholds(1.0, 1.0)))),
        Status::Critical,
    );
}

#[test]
fn cache_hit_with_too_few_block_accesses_is_unknown_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let mut health = setup.with(CheckName::CacheHit, None);
    health.cache_hit_min_blocks = 1_000_000_000_000;
    let unknown = result(&config, &health);
    assert_status(&unknown, Status::Unknown);
    assert_eq!(unknown.observed, None, "{unknown:#?}");
    assert!(
        unknown.summary.contains("too few block accesses to judge (") && unknown.summary.contains(" of 1000000000000)"),
        "{unknown:#?}"
    );
}

#[test]
fn slow_statements_are_unknown_without_pg_stat_statements_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let report = run(&config, &Setup::new().health);
    let slow = report.check(CheckName::SlowStatements).expect("the check ran");
    assert_status(slow, Status::Unknown);
    assert!(
        slow.summary.contains("pg_stat_statements is not installed"),
        "{slow:#?}"
    );
    assert!(report.status() >= Status::Unknown, "{report:#?}");
}

// ---------------------------------------------------------------------------------------------
// Both backends: migrations, growth

on_both_backends!(pending_migrations_warn_and_a_dirty_one_is_critical, migrations);

fn migrations(database: &TestDb) {
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let health = setup.with(CheckName::Migrations, None);
    // The file exists (the check never creates one), with no table yet.
    drop(database.connect());
    let fresh = result(&config, &health);
    assert_status(&fresh, Status::Warning);
    assert!(fresh.summary.contains("no migration history"), "{fresh:#?}");
    let mut connection = migrated(database);
    assert_status(&result(&config, &health), Status::Ok);
    // The newest migration reverted by hand (diesel CLI style): pending again.
    connection
        .batch_execute(
            "DELETE FROM __diesel_schema_migrations WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
        )
        .expect("forget the newest migration");
    let pending = result(&config, &health);
    assert_status(&pending, Status::Warning);
    assert_eq!(pending.observed, Some(1.0), "{pending:#?}");
    connection
        .batch_execute(
            "INSERT INTO __migration_state (version, up_checksum, down_checksum, state) \
             VALUES ('20990101000000', 'x', 'x', 'dirty')",
        )
        .expect("a dirty marker");
    let dirty = result(&config, &health);
    assert_status(&dirty, Status::Critical);
    assert!(dirty.summary.contains("dirty: 20990101000000"), "{dirty:#?}");
}

on_both_backends!(growth_against_a_day_old_sample_warns_and_goes_critical, growth);

fn growth(database: &TestDb) {
    drop(migrated(database));
    let config = DatabaseConfig::new(database.target().clone());
    let first = Setup::new();
    let health = first.with(CheckName::Growth, None);
    let unknown = result(&config, &health);
    assert_status(&unknown, Status::Unknown);
    assert!(unknown.summary.contains("not enough samples yet"), "{unknown:#?}");
    let samples = SampleStore::new(&health.state_dir).read().expect("the samples");
    assert_eq!(samples.len(), 1, "each run keeps a sample: {samples:?}");
    let now = samples[0].clone();
    // A sample an hour old is not a baseline.
    assert_status(&result(&config, &health), Status::Unknown);

    for (ratio, status) in [(1.15, Status::Warning), (2.0, Status::Critical), (1.0, Status::Ok)] {
        let setup = Setup::new();
        let health = setup.with(CheckName::Growth, None);
        let store = SampleStore::new(&health.state_dir);
        #[expect(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "test sizes")]
        let bytes = (now.bytes as f64 / ratio) as i64;
        store
            .append(&SizeSample {
                at: Utc::now() - TimeDelta::hours(24),
                target: now.target.clone(),
                database: now.database.clone(),
                bytes,
            })
            .expect("an old sample");
        store
            .append(&SizeSample {
                at: Utc::now() - TimeDelta::days(30),
                target: now.target.clone(),
                database: now.database.clone(),
                bytes: 1,
            })
            .expect("a sample past retention");
        let measured = result(&config, &health);
        assert_status(&measured, status);
        let kept = store.read().expect("the samples");
        assert_eq!(
            kept.len(),
            2,
            "the 30-day-old sample is pruned, the new one kept: {kept:?}"
        );
    }
}

#[test]
fn growth_never_compares_with_a_database_of_the_same_name_on_another_server_on_postgres() {
    let Some(database) = TestDb::postgres() else { return };
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let health = setup.with(CheckName::Growth, None);
    let store = SampleStore::new(&health.state_dir);
    let name = database.postgres_name().expect("a PostgreSQL database").to_owned();
    let key = ops::health::samples::target_key(&config.target);
    assert!(key.ends_with(&format!("/{name}")) && !key.contains('@'), "{key}");
    let day_ago = Utc::now() - TimeDelta::hours(24);
    // A day ago, a database of the same name on another server sharing HEALTH_STATE_DIR was tiny;
    // a line written before samples named their server says the same.
    for target in [format!("elsewhere.example:5432/{name}"), String::new()] {
        store
            .append(&SizeSample {
                at: day_ago,
                target,
                database: name.clone(),
                bytes: 1000,
            })
            .expect("another server's sample");
    }
    let unknown = result(&config, &health);
    assert_status(&unknown, Status::Unknown);
    assert!(unknown.summary.contains("not enough samples yet"), "{unknown:#?}");
    let own = store.read().expect("the samples").pop().expect("the sample just kept");
    assert_eq!(own.target, key);
    store
        .append(&SizeSample {
            at: day_ago,
            target: key,
            database: name,
            bytes: own.bytes,
        })
        .expect("its own sample");
    let measured = result(&config, &health);
    assert_status(&measured, Status::Ok);
    assert!(
        measured.observed.is_some_and(|growth| growth.abs() < 5.0),
        "{measured:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Backups, from the record of runs

fn record(directory: &BackupDirectory, kind: Kind, outcome: Outcome, hours_ago: i64) {
    directory
        .append_record(&Record {
            at: Utc::now() - TimeDelta::hours(hours_ago),
            kind,
            backup: Some(format!("backup-{hours_ago}")),
            outcome,
            duration_ms: 10,
            detail: (outcome != Outcome::Ok).then(|| "pg_dump: connection refused".to_owned()),
        })
        .expect("a record");
}

#[test]
fn old_or_failed_backups_and_verifications_warn_and_go_critical() {
    let database = TestDb::sqlite_file();
    drop(database.connect());
    let config = DatabaseConfig::new(database.target().clone());
    let check = |setup: &Setup| result(&config, &setup.with(CheckName::Backup, None));
    let backups = |setup: &Setup| BackupDirectory::new(&setup.health.backup_dir);

    let mut unset = Setup::new();
    unset.health.backup_dir_configured = false;
    let unknown = check(&unset);
    assert_status(&unknown, Status::Unknown);
    assert!(unknown.summary.contains("BACKUP_DIR is not set"), "{unknown:#?}");

    let never = Setup::new();
    assert_status(&check(&never), Status::Critical);

    for (hours, status) in [(1, Status::Ok), (27, Status::Warning), (49, Status::Critical)] {
        let setup = Setup::new();
        record(&backups(&setup), Kind::Backup, Outcome::Ok, hours);
        record(&backups(&setup), Kind::Verify, Outcome::Ok, hours);
        let result = check(&setup);
        assert_status(&result, status);
        assert_eq!(result.perfdata.len(), 3, "{result:#?}");
    }

    let unverified = Setup::new();
    record(&backups(&unverified), Kind::Backup, Outcome::Ok, 1);
    record(&backups(&unverified), Kind::Verify, Outcome::Ok, 30);
    assert_status(&check(&unverified), Status::Warning);

    let failed_verification = Setup::new();
    record(&backups(&failed_verification), Kind::Backup, Outcome::Ok, 2);
    record(&backups(&failed_verification), Kind::Verify, Outcome::Ok, 2);
    record(&backups(&failed_verification), Kind::Verify, Outcome::Mismatch, 1);
    let critical = check(&failed_verification);
    assert_status(&critical, Status::Critical);
    assert!(critical.summary.contains("latest verification"), "{critical:#?}");

    let failed_backup = Setup::new();
    record(&backups(&failed_backup), Kind::Backup, Outcome::Ok, 2);
    record(&backups(&failed_backup), Kind::Verify, Outcome::Ok, 2);
    record(&backups(&failed_backup), Kind::Backup, Outcome::Failed, 1);
    let critical = check(&failed_backup);
    assert_status(&critical, Status::Critical);
    assert!(critical.summary.contains("connection refused"), "{critical:#?}");
}

// ---------------------------------------------------------------------------------------------
// SQLite files

#[test]
fn sqlite_wal_size_and_free_pages_warn_and_go_critical() {
    let database = TestDb::sqlite_file();
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let mut connection = migrated(&database);
    assert_status(&result(&config, &setup.with(CheckName::FreePages, None)), Status::Ok);
    connection
        .batch_execute(
            "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
             INSERT INTO blobs SELECT i, zeroblob(16384) FROM n;",
        )
        .expect("about 800 pages of blobs");

    let wal = result(&config, &setup.with(CheckName::WalSize, None));
    assert_status(&wal, Status::Ok);
    let bytes = wal.observed.expect("a WAL size");
    assert!(bytes > 1_048_576.0, "{wal:#?}");
    // The natural thresholds are 64 MiB and 512 MiB: thresholds below this WAL stand in.
    assert_status(
        &result(
            &config,
            &setup.with(CheckName::WalSize, Some(thresholds(1_048_576.0, 1e12))),
        ),
        Status::Warning,
    );
    assert_status(
        &result(
            &config,
            &setup.with(CheckName::WalSize, Some(thresholds(1_048_576.0, 1_048_576.0))),
        ),
        Status::Critical,
    );

    connection
        .batch_execute("DELETE FROM blobs WHERE id <= 80")
        .expect("free two fifths of the blobs");
    let warning = result(&config, &setup.with(CheckName::FreePages, None));
    assert_status(&warning, Status::Warning);
    connection.batch_execute("DELETE FROM blobs").expect("free the rest");
    let critical = result(&config, &setup.with(CheckName::FreePages, None));
    assert_status(&critical, Status::Critical);
    assert!(critical.summary.contains("reclaimable by VACUUM"), "{critical:#?}");
    connection.batch_execute("VACUUM").expect("vacuum");
    assert_status(&result(&config, &setup.with(CheckName::FreePages, None)), Status::Ok);
}

#[test]
fn a_damaged_sqlite_file_fails_quick_check_as_critical() {
    let database = TestDb::sqlite_file();
    let config = DatabaseConfig::new(database.target().clone());
    let setup = Setup::new();
    let health = setup.with(CheckName::Integrity, None);
    {
        let mut connection = migrated(&database);
        connection
            .batch_execute(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
                 CREATE INDEX notes_body ON notes (body);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
                 INSERT INTO notes SELECT i, printf('note number %08d of the damaged file', i) FROM n;
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .expect("a multi-page table and index");
    }
    let ok = result(&config, &health);
    assert_status(&ok, Status::Ok);
    assert_eq!(ok.observed, Some(0.0));
    damage(Path::new(&database.target().expose_connection_string()));
    let damaged = result(&config, &health);
    assert_status(&damaged, Status::Critical);
    note(&format!("quick_check on the damaged file: {}", damaged.summary));
}

/// Overwrites pages in the second half of a SQLite file (not page 1, the header and schema)
/// with a pattern that is no valid B-tree page.
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).expect("the database file");
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let pages = bytes.len() / page;
    assert!(pages > 20, "{pages} pages");
    for number in (pages / 2)..(pages / 2 + 4) {
        bytes[number * page..(number + 1) * page].fill(0x5a);
    }
    std::fs::write(path, bytes).expect("write the damaged file");
}

// ---------------------------------------------------------------------------------------------
// A whole run

#[test]
fn an_unreachable_database_is_critical_and_every_sqlite_check_runs() {
    let config = postgres_config("postgres://nobody@127.0.0.1:1/nothing");
    let report = run(&config, &Setup::new().health);
    assert_eq!(report.status(), Status::Critical);
    assert_eq!(report.exit_code(), 2);
    assert_eq!(report.checks[0].name, CheckName::Connection);
    assert!(report.checks[0].summary.contains("cannot connect"), "{report:#?}");

    let missing = DatabaseConfig::new(DatabaseTarget::sqlite_file("/nonexistent/health.sqlite3"));
    assert_eq!(run(&missing, &Setup::new().health).status(), Status::Critical);

    let database = TestDb::sqlite_file();
    drop(migrated(&database));
    let setup = Setup::new();
    let report = run(&DatabaseConfig::new(database.target().clone()), &setup.health);
    let names: Vec<CheckName> = report.checks.iter().map(|check| check.name).collect();
    assert_eq!(names, CheckName::for_backend(Backend::Sqlite));
    // No backup recorded: CRITICAL, whatever else is fine.
    assert_eq!(report.status(), Status::Critical, "{report:#?}");
    let text = ops::health::to_text(&report);
    assert!(
        text.starts_with("HEALTH CRITICAL - ")
            && text
                .lines()
                .next()
                .is_some_and(|line| line.contains(" | 'integrity'=0;;1;0")),
        "{text}"
    );
    let json = ops::health::to_json(&report);
    assert_eq!(json["status"], "fail");
    assert_eq!(json["nagiosStatus"], "CRITICAL");
    assert_eq!(json["checks"]["integrity:problems"][0]["status"], "pass");
    assert!(setup.directory.path().join("state").join("size-samples.jsonl").exists());
}

/// The monitoring login that the role setup makes (`<prefix>_monitor`, in `pg_monitor`, with the
/// history tables and no data) runs every PostgreSQL check: none is UNKNOWN for want of a
/// privilege, and the migration state reads the history.
#[test]
fn the_monitoring_login_of_the_role_setup_runs_every_check_on_postgres() {
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let monitor = TestDb::roles().monitor;
    let target = database.target_as(&monitor).expect("a migrated PostgreSQL database");
    let setup = Setup::new();
    let report = run(&DatabaseConfig::new(target), &setup.health);
    assert_eq!(
        report.checks.len(),
        CheckName::for_backend(Backend::Postgres).len(),
        "{report:#?}"
    );
    for check in &report.checks {
        let summary = check.summary.to_lowercase();
        assert!(
            !summary.contains("permission denied") && !summary.contains("pg_read_all_stats"),
            "{} lacks a privilege as {monitor}: {check:#?}",
            check.name
        );
        if check.status == Status::Unknown {
            // What a fresh database cannot judge yet, whoever asks.
            assert!(
                matches!(
                    check.name,
                    CheckName::Growth | CheckName::SlowStatements | CheckName::Backup | CheckName::CacheHit
                ),
                "{check:#?}"
            );
        }
    }
    let migrations = report.check(CheckName::Migrations).expect("the migration check");
    assert_status(migrations, Status::Ok);
}
