//! The pool's and the statements' metrics (`database::metrics`): counts that follow checkouts,
//! timeouts and closings; statement kinds; the slow-query log, which never holds a bound value
//! or the connection URL; and the Prometheus text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use database::metrics::{MetricsSnapshot, StatementKind};
use database::{Database, PoolError};
use diesel::prelude::*;
use diesel::sql_types::{Double, Integer, Text};
use migrator::Migrate as _;
use repo::Repositories as _;
use repo_diesel::DieselStore;
use test_fixtures::TestDb;

use crate::support::{Captured, conformance, new_user, on_both_backends};

/// A value no log line and no metric may hold.
const PERSONAL: &str = "hunter2-personal@example.com";

fn statements(snapshot: &MetricsSnapshot, kind: StatementKind) -> u64 {
    snapshot.statement(kind).duration.count
}

fn pool_counts_follow_checkouts_timeouts_and_closings(database: &TestDb) {
    let mut config = database.config();
    config.pool.max_size = 2;
    config.pool.connection_timeout = Duration::from_millis(200);
    config.pool.max_lifetime = Duration::from_millis(300);
    let pool = Database::connect(config).expect("pool");
    let idle = pool.metrics();
    assert_eq!((idle.pool.max_size, idle.pool.in_use, idle.pool.checkouts), (2, 0, 0));

    let first = pool.get().expect("first");
    let mut second = pool.get().expect("second");
    let busy = pool.metrics();
    assert_eq!(
        (busy.pool.open, busy.pool.in_use, busy.pool.idle),
        (2, 2, 0),
        "{busy:#?}"
    );
    assert_eq!(busy.pool.checkouts, 2);

    // The pool is exhausted: a timeout, told apart from a connection error.
    let Err(PoolError::Unavailable { .. }) = pool.get() else {
        panic!("a third checkout from a pool of two must time out");
    };
    let exhausted = pool.metrics();
    assert_eq!(exhausted.pool.checkout_timeouts, 1);
    assert_eq!(exhausted.pool.connection_errors, 0);
    assert_eq!(exhausted.pool.checkouts, 2, "a timeout is not a checkout");
    assert_eq!(exhausted.pool.wait.count, 3, "every checkout and the timeout waited");
    assert!(exhausted.pool.wait.sum_seconds >= 0.2, "the timeout waited 200 ms");

    second.mark_lost();
    drop(second);
    let lost = pool.metrics();
    assert_eq!(
        (lost.pool.open, lost.pool.in_use, lost.pool.idle),
        (1, 1, 0),
        "{lost:#?}"
    );
    assert_eq!(lost.pool.closed.lost, 1);
    assert_eq!(lost.pool.use_time.count, 1, "one connection came back");

    std::thread::sleep(Duration::from_millis(350));
    drop(first);
    let expired = pool.metrics();
    assert_eq!(
        expired.pool.closed.expired, 1,
        "past DATABASE_POOL_MAX_LIFETIME_MS: {expired:#?}"
    );
    assert_eq!((expired.pool.open, expired.pool.in_use), (0, 0));
    assert_eq!(expired.pool.closed.total(), expired.pool.opened);
}
on_both_backends!(pool_counts, pool_counts_follow_checkouts_timeouts_and_closings);

/// A connection its server closed fails the checkout's ping: counted as closed (invalid) and as
/// a connection error, and the pool opens another.
#[test]
fn a_connection_closed_by_the_server_is_counted_invalid() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut config = database.config();
    config.pool.validate_idle_after = Duration::ZERO;
    let pool = Database::connect(config).expect("pool");
    let pid: i32 = diesel::dsl::sql::<Integer>("SELECT pg_backend_pid()")
        .get_result(&mut *pool.get().expect("connection"))
        .expect("pid");
    let mut admin = TestDb::postgres_admin().expect("an administrator connection");
    let terminated: bool = diesel::sql_query("SELECT pg_terminate_backend($1) AS value")
        .bind::<Integer, _>(pid)
        .get_result::<Flag>(&mut admin)
        .expect("terminate")
        .value;
    assert!(terminated);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let gone: bool = diesel::sql_query("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1) AS value")
            .bind::<Integer, _>(pid)
            .get_result::<Flag>(&mut admin)
            .expect("activity")
            .value;
        if gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut connection = pool.get().expect("the pool replaces the closed connection");
    let other: i32 = diesel::dsl::sql::<Integer>("SELECT pg_backend_pid()")
        .get_result(&mut *connection)
        .expect("pid");
    assert_ne!(other, pid);
    let snapshot = pool.metrics();
    assert_eq!(snapshot.pool.closed.invalid, 1, "{snapshot:#?}");
    assert!(snapshot.pool.connection_errors >= 1);
    assert_eq!(snapshot.pool.checkout_timeouts, 0);
    assert_eq!(snapshot.pool.opened, 2);
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    value: bool,
}

fn statements_are_timed_by_kind(database: &TestDb) {
    let pool = database.database();
    pool.migrate().expect("migrate");
    let pool = Arc::new(pool);
    let store = DieselStore::new(Arc::clone(&pool));
    let before = pool.metrics();
    let user = store
        .users()
        .create(new_user("kinds@example.com", "Kind Counter"))
        .expect("create");
    store.users().get(user.id, repo::Scope::Live).expect("get");
    let duplicate = store.users().create(new_user("kinds@example.com", "Kind Counter"));
    assert!(duplicate.is_err(), "the email is taken");
    let after = pool.metrics();
    let delta = |kind| statements(&after, kind) - statements(&before, kind);
    assert!(delta(StatementKind::Select) >= 1, "{after:#?}");
    assert!(
        delta(StatementKind::Insert) >= 2,
        "the user and its audit entry, twice tried"
    );
    assert!(delta(StatementKind::Transaction) >= 2, "BEGIN and COMMIT");
    assert!(
        after.statement(StatementKind::Insert).errors > before.statement(StatementKind::Insert).errors,
        "the duplicate INSERT failed"
    );
    assert_eq!(after.statement(StatementKind::Update).errors, 0);
    let select = &after.statement(StatementKind::Select).duration;
    assert_eq!(
        select.buckets.last().map(|(_, count)| *count),
        Some(select.count),
        "no point read took 10 s"
    );
    assert!(select.sum_seconds > 0.0);

    // Off, statements are not timed; the pool is still counted.
    let mut config = database.config();
    config.metrics.query_metrics = false;
    let quiet = Database::connect(config).expect("pool");
    diesel::dsl::sql::<Integer>("SELECT 1")
        .get_result::<i32>(&mut *quiet.get().expect("connection"))
        .expect("select");
    let snapshot = quiet.metrics();
    assert_eq!(statements(&snapshot, StatementKind::Select), 0);
    assert_eq!(snapshot.pool.checkouts, 1);
}
conformance!(statement_kinds, statements_are_timed_by_kind);

/// Runs `work` and returns what it logged at WARN and above.
fn logged(work: impl FnOnce()) -> String {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, work);
    captured.text()
}

/// A select that binds `PERSONAL` and, on PostgreSQL, sleeps `seconds`.
fn select_personal(pool: &Database, seconds: f64) {
    let mut connection = pool.get().expect("connection");
    let echoed: String = match &mut *connection {
        database::DbConnection::Pg(pg) => {
            diesel::sql_query("SELECT $1::text AS value FROM (SELECT pg_sleep($2)) AS slept")
                .bind::<Text, _>(PERSONAL)
                .bind::<Double, _>(seconds)
                .get_result::<Echo>(pg)
                .expect("select")
                .value
        }
        database::DbConnection::Sqlite(sqlite) => {
            diesel::sql_query("SELECT ? AS value")
                .bind::<Text, _>(PERSONAL)
                .get_result::<Echo>(sqlite)
                .expect("select")
                .value
        }
    };
    assert_eq!(echoed, PERSONAL);
}

#[derive(QueryableByName)]
struct Echo {
    #[diesel(sql_type = Text)]
    value: String,
}

fn slow_statements_are_logged_without_their_values(database: &TestDb) {
    let postgres = database.backend() == database::Backend::Postgres;
    let (threshold, slow_seconds) = if postgres {
        (Duration::from_millis(500), 1.0)
    } else {
        // SQLite has no sleep: a threshold of a nanosecond makes every statement slow.
        (Duration::from_nanos(1), 0.0)
    };
    let mut config = database.config();
    config.metrics.slow_query = threshold;
    // No checkout ping between the statements below: with a threshold of a nanosecond it would
    // be a slow select too.
    config.pool.validate_idle_after = Duration::from_hours(1);
    let url = config.target.expose_connection_string();
    let pool = Database::connect(config).expect("pool");
    select_personal(&pool, 0.0);
    let before = pool.metrics().statement(StatementKind::Select).slow;

    let log = logged(|| select_personal(&pool, slow_seconds));
    assert!(log.contains("WARN") && log.contains("slow query"), "{log}");
    assert!(
        log.contains("statement=\"select\"") || log.contains("statement=select"),
        "{log}"
    );
    assert!(
        log.contains("sql=SELECT") || log.contains("sql=\"SELECT"),
        "the SQL text is logged: {log}"
    );
    assert!(!log.contains(PERSONAL), "a bound value was logged: {log}");
    assert!(!log.contains(&url), "the connection URL was logged: {log}");
    assert_eq!(pool.metrics().statement(StatementKind::Select).slow, before + 1);

    // A statement that holds a secret in its text (a password verifier) is logged without it.
    let log = logged(|| {
        let mut connection = pool.get().expect("connection");
        database::metrics::statements_with_secrets(|| {
            diesel::sql_query(if postgres {
                "SELECT 'SCRAM-SHA-256$4096:secret-verifier' AS value, pg_sleep(1.0)"
            } else {
                "SELECT 'SCRAM-SHA-256$4096:secret-verifier' AS value"
            })
            .execute(&mut *connection)
            .expect("select");
        });
    });
    assert!(log.contains(database::metrics::WITHHELD_SQL), "{log}");
    assert!(
        !log.contains("secret-verifier"),
        "a secret in the SQL text was logged: {log}"
    );

    if postgres {
        // Under the threshold: nothing logged, nothing counted.
        let log = logged(|| select_personal(&pool, 0.0));
        assert!(!log.contains("slow query"), "{log}");
        assert_eq!(pool.metrics().statement(StatementKind::Select).slow, before + 2);
    }
}
on_both_backends!(slow_query_log, slow_statements_are_logged_without_their_values);

fn prometheus_text_matches_the_snapshot(database: &TestDb) {
    let mut config = database.config();
    "metrics-test".clone_into(&mut config.session.application_name);
    let pool = Database::connect(config).expect("pool");
    let held = pool.get().expect("connection");
    select_personal(&pool, 0.0);
    let text = pool.metrics_collector().render_prometheus();
    let snapshot = pool.metrics();

    let mut typed = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            typed.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let name = series.split('{').next().expect("a name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| typed.get(*base).is_some_and(|kind| kind == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "{name} has no # TYPE line:\n{text}");
        if typed[family] == "counter" {
            assert!(name.ends_with("_total"), "counter {name} must end in _total");
        }
        assert!(series.contains("pool_name=\"metrics-test\""), "{line}");
    }
    // Counts print as whole numbers.
    let sample = |series: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {series}:\n{text}"))
    };
    assert_eq!(
        sample("db_client_connection_count{pool_name=\"metrics-test\",state=\"used\"}"),
        1,
        "one connection is held"
    );
    assert_eq!(sample("db_client_connection_max{pool_name=\"metrics-test\"}"), 20);
    assert_eq!(
        sample("db_client_connection_checkouts_total{pool_name=\"metrics-test\"}"),
        snapshot.pool.checkouts
    );
    let selects =
        sample("db_client_operation_duration_seconds_count{pool_name=\"metrics-test\",db_operation_name=\"select\"}");
    assert!(selects >= 1);
    assert_eq!(
        sample(
            "db_client_operation_duration_seconds_bucket{pool_name=\"metrics-test\",db_operation_name=\"select\",le=\"+Inf\"}"
        ),
        selects
    );
    assert!(!text.contains(PERSONAL));
    assert_eq!(
        text.matches("db_operation_name=\"select\",le=\"+Inf\"}").count(),
        1,
        "one +Inf bucket per series"
    );

    // In a service's own registry, encoded as OpenMetrics: every histogram has its +Inf bucket.
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(pool.metrics_collector()));
    let mut open_metrics = String::new();
    prometheus_client::encoding::text::encode(&mut open_metrics, &registry).expect("encodes");
    for family in [
        "db_client_connection_wait_time_seconds",
        "db_client_connection_use_time_seconds",
        "db_client_operation_duration_seconds",
    ] {
        let counts = open_metrics.matches(&format!("{family}_count{{")).count();
        let infinite = open_metrics
            .lines()
            .filter(|line| line.starts_with(&format!("{family}_bucket{{")) && line.contains("le=\"+Inf\""))
            .count();
        assert!(
            counts > 0 && infinite == counts,
            "{family}: {counts} series, {infinite} +Inf buckets:\n{open_metrics}"
        );
    }
    assert!(open_metrics.ends_with("# EOF\n"));
    drop(held);
}
on_both_backends!(prometheus_text, prometheus_text_matches_the_snapshot);
