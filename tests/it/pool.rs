//! The pool and its connections: session settings, timeouts, exhaustion, unreachable servers
//! and secrets kept out of errors.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::Text;
use repo_diesel::config::{DatabaseConfig, DatabaseTarget};
use repo_diesel::{Database, DbConnection, PoolError};
use test_fixtures::TestDb;

use crate::support::{migrated, on_both_backends};

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

fn setting(connection: &mut DbConnection, sql: &str) -> String {
    diesel::sql_query(sql)
        .get_result::<Setting>(connection)
        .expect(sql)
        .value
}

#[test]
fn postgres_sessions_get_timeouts_and_application_name() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut config = database.config();
    config.session.statement_timeout = Duration::from_millis(1500);
    config.session.lock_timeout = Duration::from_millis(250);
    config.session.application_name = "pool-test".to_owned();
    let pool = Database::connect(config).expect("pool");
    let mut connection = pool.get().expect("connection");
    assert_eq!(
        setting(&mut connection, "SELECT current_setting('statement_timeout') AS value"),
        "1500ms"
    );
    assert_eq!(
        setting(&mut connection, "SELECT current_setting('lock_timeout') AS value"),
        "250ms"
    );
    assert_eq!(
        setting(&mut connection, "SELECT current_setting('application_name') AS value"),
        "pool-test"
    );
}

#[test]
fn sqlite_sessions_get_pragmas() {
    let database = TestDb::sqlite_file();
    let mut config = database.config();
    config.session.sqlite_busy_timeout = Duration::from_millis(1234);
    let pool = Database::connect(config).expect("pool");
    let mut connection = pool.get().expect("connection");
    let pragma = |connection: &mut DbConnection, name: &str| {
        let sql = match name {
            "foreign_keys" => "SELECT CAST(foreign_keys AS TEXT) AS value FROM pragma_foreign_keys",
            "journal_mode" => "SELECT journal_mode AS value FROM pragma_journal_mode",
            "synchronous" => "SELECT CAST(synchronous AS TEXT) AS value FROM pragma_synchronous",
            "busy_timeout" => "SELECT CAST(timeout AS TEXT) AS value FROM pragma_busy_timeout",
            other => panic!("unknown pragma {other}"),
        };
        setting(connection, sql)
    };
    assert_eq!(pragma(&mut connection, "foreign_keys"), "1");
    assert_eq!(pragma(&mut connection, "journal_mode"), "wal");
    assert_eq!(pragma(&mut connection, "synchronous"), "1", "NORMAL");
    assert_eq!(pragma(&mut connection, "busy_timeout"), "1234");
}

#[test]
fn statement_and_lock_timeouts_cancel_queries() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    drop(migrated(&database));
    let mut config = database.config();
    config.session.statement_timeout = Duration::from_millis(200);
    config.session.lock_timeout = Duration::from_millis(100);
    let pool = Database::connect(config).expect("pool");

    let mut connection = pool.get().expect("connection");
    let error = connection
        .batch_execute("SELECT pg_sleep(5)")
        .expect_err("statement timeout");
    assert!(error.to_string().contains("statement timeout"), "{error}");

    let mut holder = pool.get().expect("connection");
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let error = connection
        .batch_execute("SELECT count(*) FROM users")
        .expect_err("lock timeout");
    assert!(error.to_string().contains("lock timeout"), "{error}");
    holder.batch_execute("ROLLBACK").expect("rollback");
    connection
        .batch_execute("SELECT count(*) FROM users")
        .expect("works once the lock is gone");
}

#[test]
fn a_connection_the_server_closed_is_replaced() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut config = database.config();
    config.pool.max_size = 1;
    let pool = Database::connect(config).expect("pool");
    let backend_pid = |connection: &mut DbConnection| setting(connection, "SELECT pg_backend_pid()::text AS value");
    let first_pid = backend_pid(&mut pool.get().expect("connection"));

    // Another session ends the pooled connection's backend, as a server restart would.
    let mut admin = database.connect();
    let terminated: Setting = diesel::sql_query("SELECT pg_terminate_backend($1)::text AS value")
        .bind::<diesel::sql_types::Integer, _>(first_pid.parse::<i32>().expect("a pid"))
        .get_result(&mut admin)
        .expect("terminate");
    let terminated = terminated.value;
    assert_eq!(terminated, "true");

    let mut connection = pool.get().expect("the pool replaces the dead connection");
    assert_ne!(backend_pid(&mut connection), first_pid);
}

on_both_backends!(an_exhausted_pool_reports_unavailable, exhausted_pool);

fn exhausted_pool(database: &TestDb) {
    let mut config = database.config();
    config.pool.max_size = 2;
    config.pool.connection_timeout = Duration::from_millis(300);
    let pool = Database::connect(config).expect("pool");
    let first = pool.get().expect("first");
    let second = pool.get().expect("second");
    let started = Instant::now();
    let error = pool.get().err().expect("a third connection exceeds max_size");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited the connection timeout"
    );
    assert!(
        matches!(error, PoolError::Unavailable { timeout_ms: 300, .. }),
        "{error}"
    );
    drop(first);
    drop(second);
    pool.get().expect("a returned connection is handed out again");
}

#[test]
fn in_memory_sqlite_is_shared_by_the_pool_and_private_to_it() {
    let database = TestDb::sqlite_in_memory();
    let pool = database.database();
    let mut writer = pool.get().expect("connection");
    writer
        .batch_execute("CREATE TABLE shared (n INTEGER); INSERT INTO shared VALUES (7)")
        .expect("write");
    let mut reader = pool.get().expect("second connection");
    assert_eq!(setting(&mut reader, "SELECT CAST(n AS TEXT) AS value FROM shared"), "7");

    let other = TestDb::sqlite_in_memory().database();
    let error = other
        .get()
        .expect("connection")
        .batch_execute("SELECT n FROM shared")
        .expect_err("private");
    assert!(error.to_string().contains("no such table"), "{error}");
}

#[test]
fn a_refused_connection_names_the_variable_and_hides_the_password() {
    // A port on loopback that nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://app:s3cr3t%40pw@127.0.0.1:{port}/app");
    let error = Database::connect(DatabaseConfig::new(DatabaseTarget::postgres_url(&url).expect("url")))
        .err()
        .expect("nothing listens there");
    let message = error.to_string();
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(message.contains("app:***@127.0.0.1"), "{message}");
    assert!(
        !message.contains("s3cr3t") && !format!("{error:?}").contains("s3cr3t"),
        "{message}"
    );
}

#[test]
fn a_silent_server_fails_within_the_connection_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never answers: a hung host.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let vars = [
        ("DATABASE_HOST", "127.0.0.1".to_owned()),
        ("DATABASE_PORT", port.to_string()),
        ("DATABASE_USER", "app".to_owned()),
        ("DATABASE_PASSWORD", "p@ss:w/o?r#d%".to_owned()),
        ("DATABASE_POOL_CONNECTION_TIMEOUT_MS", "2000".to_owned()),
    ];
    let config = DatabaseConfig::from_lookup(|name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("valid configuration");
    let started = Instant::now();
    let error = Database::connect(config).err().expect("the server never answers");
    let elapsed = started.elapsed();
    let message = error.to_string();
    // libpq's connect_timeout is whole seconds and at least 2; generous slack for a busy machine.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}: {message}");
    assert!(
        message.contains("DATABASE_HOST") && message.contains("timeout"),
        "{message}"
    );
    assert!(!message.contains("p@ss") && !message.contains("p%40ss"), "{message}");
    drop(listener);
}

/// Connections set up before the migrations ran, used while another connection holds the write
/// lock, see the tables and wait for the lock. On SQLite's memdb VFS (the in-memory database of
/// earlier releases) readers wait for a writer, and a connection that had read the schema before
/// the migrations could not re-check it: "no such table" (a required test failed at random).
#[test]
fn in_memory_connections_opened_before_the_migrations_see_the_tables_under_a_write_lock() {
    let database = TestDb::sqlite_in_memory();
    let mut config = database.config();
    config.pool.max_size = 3;
    config.pool.min_idle = 3;
    config.session.sqlite_busy_timeout = Duration::from_millis(100);
    let pool = Database::connect(config).expect("pool");
    // Every connection exists, set up, before the schema does.
    let mut early = [pool.get().expect("first"), pool.get().expect("second")];
    let mut migrator = pool.get().expect("third");
    migrated_on(&mut migrator, &database);
    let mut holder = database.connect();
    holder.batch_execute("BEGIN IMMEDIATE").expect("hold the write lock");
    for connection in &mut early {
        let error = connection
            .batch_execute("UPDATE users SET is_active = 1")
            .expect_err("the write lock is held");
        assert!(error.to_string().contains("locked"), "{error}");
    }
    holder.batch_execute("ROLLBACK").expect("release");
    for connection in &mut early {
        connection
            .batch_execute("UPDATE users SET is_active = 1")
            .expect("free again");
    }
}

fn migrated_on(connection: &mut DbConnection, database: &TestDb) {
    repo_diesel::Migrator::embedded(database.backend(), repo_diesel::config::MigrationSettings::default())
        .run(connection)
        .expect("migrations apply");
}
