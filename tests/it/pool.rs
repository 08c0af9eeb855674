//! The pool and its connections: session settings, timeouts, exhaustion, unreachable servers,
//! secrets kept out of errors, the checkout validation window, and what a start-up at head
//! costs the server.

use migrator::Migrate as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use database::config::{DatabaseConfig, DatabaseTarget};
use database::connection::ConnectionManager;
use database::{Database, DbConnection, PoolError};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection as _};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Text};
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
    assert_session_settings(&mut connection, "pool-test");
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

fn backend_pid(connection: &mut DbConnection) -> String {
    setting(connection, "SELECT pg_backend_pid()::text AS value")
}

/// Ends the backend `pid` from another session, as a server restart would, and waits
/// (boundedly) until it is gone.
fn terminate_backend(database: &TestDb, pid: &str) {
    let mut admin = database.connect();
    let pid = pid.parse::<i32>().expect("a pid");
    let terminated: Setting = diesel::sql_query("SELECT pg_terminate_backend($1)::text AS value")
        .bind::<diesel::sql_types::Integer, _>(pid)
        .get_result(&mut admin)
        .expect("terminate");
    assert_eq!(terminated.value, "true");
    let deadline = Instant::now() + Duration::from_secs(10);
    let remaining = |admin: &mut DbConnection| {
        diesel::sql_query("SELECT count(*)::text AS value FROM pg_stat_activity WHERE pid = $1")
            .bind::<diesel::sql_types::Integer, _>(pid)
            .get_result::<Setting>(admin)
            .expect("count the backend")
            .value
    };
    while remaining(&mut admin) != "0" {
        assert!(
            Instant::now() < deadline,
            "backend {pid} still there 10 s after pg_terminate_backend"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A connection the server closed while it was idle past the validation window is pinged at
/// checkout, found closed and replaced: the caller never sees it.
#[test]
fn a_connection_the_server_closed_while_idle_past_the_window_is_replaced_at_checkout() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut config = database.config();
    config.pool.max_size = 1;
    config.pool.validate_idle_after = Duration::from_millis(20);
    let pool = Database::connect(config).expect("pool");
    let first_pid = backend_pid(&mut pool.get().expect("connection"));
    let returned = Instant::now();
    terminate_backend(&database, &first_pid);
    std::thread::sleep(Duration::from_millis(40).saturating_sub(returned.elapsed()));

    let mut connection = pool.get().expect("the pool replaces the dead connection");
    assert_ne!(backend_pid(&mut connection), first_pid);
}

/// A connection the server closed within the validation window is handed out unchecked: the
/// one call on it fails as a closed connection, `mark_lost` (which the repositories call on
/// every `Unavailable`) makes the pool drop it, and the next checkout gets a new session.
#[test]
fn a_connection_the_server_closed_within_the_window_fails_once_and_is_replaced() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut config = database.config();
    config.pool.max_size = 1;
    // Long enough that "within the window" holds on any machine.
    config.pool.validate_idle_after = Duration::from_mins(10);
    let pool = Database::connect(config).expect("pool");
    let first_pid = backend_pid(&mut pool.get().expect("connection"));
    terminate_backend(&database, &first_pid);

    let mut dead = pool.get().expect("the unchecked connection");
    let error = diesel::sql_query("SELECT pg_backend_pid()::text AS value")
        .get_result::<Setting>(&mut *dead)
        .err()
        .expect("the server closed this connection");
    assert!(
        matches!(
            error,
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _
            )
        ),
        "a closed connection, not {error:?}"
    );
    dead.mark_lost();
    drop(dead);
    assert_eq!(pool.state().connections, 0, "the lost connection was dropped");

    let mut connection = pool.get().expect("a new connection");
    assert_ne!(backend_pid(&mut connection), first_pid);
}

#[derive(QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
struct DatabaseStats {
    #[diesel(sql_type = BigInt)]
    sessions: i64,
    #[diesel(sql_type = BigInt)]
    xact_commit: i64,
}

/// `pg_stat_database`'s sessions and commits of `database` once its backends are gone and
/// their statistics flushed: a backend writes them as it exits, a moment after it leaves
/// `pg_stat_activity`, so the figures are read until two readings 100 ms apart agree.
fn settled_stats(admin: &mut PgConnection, database: &str) -> DatabaseStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    let read = |admin: &mut PgConnection| {
        diesel::sql_query(
            "SELECT sessions, xact_commit,
                    (SELECT count(*) FROM pg_stat_activity WHERE datname = $1) AS backends
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind::<Text, _>(database)
        .get_result::<StatsWithBackends>(admin)
        .expect("read pg_stat_database")
    };
    let mut last = read(admin);
    loop {
        assert!(
            Instant::now() < deadline,
            "the statistics of {database} did not settle within 10 s: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = read(admin);
        if now.backends == 0 && now == last {
            return now.stats;
        }
        last = now;
    }
}

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct StatsWithBackends {
    #[diesel(embed)]
    stats: DatabaseStats,
    #[diesel(sql_type = BigInt)]
    backends: i64,
}

/// Start-up at head (`Database::connect`, then `migrate()`) is one server session and one query
/// of this crate's: `connect` hands the connection it opened to the pool (and `min_idle` is 0,
/// so r2d2 opens no spare), the session settings travel in the startup packet, and the runner
/// reads both history tables in one query without a checkout ping (the connection is within its
/// validation window). diesel's own `establish` adds `SET TIME ZONE` and `SET CLIENT_ENCODING`,
/// run before the pool's statement timer is installed and so not counted here.
#[test]
fn start_up_at_head_is_one_session_and_one_query() {
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let name = database.postgres_name().expect("a PostgreSQL database").to_owned();
    let mut admin = TestDb::postgres_admin().expect("an admin connection");
    let before = settled_stats(&mut admin, &name);

    let pool = Database::connect(database.config()).expect("pool");
    let report = pool.migrate().expect("at head");
    assert!(report.was_at_head, "{report:?}");
    let connections = pool.state().connections;
    // Statements of the pool's connections, counted through diesel's instrumentation.
    let statements = pool.metrics().statements;
    let queries: u64 = statements.iter().map(|statement| statement.duration.count).sum();
    drop(pool);

    let after = settled_stats(&mut admin, &name);
    let _ = writeln!(
        std::io::stderr(),
        "start-up at head: {} session(s), {} transaction(s) committed, {queries} quer(ies) of this crate, \
         {connections} pooled connection(s)",
        after.sessions - before.sessions,
        after.xact_commit - before.xact_commit,
    );
    assert_eq!(
        after.sessions - before.sessions,
        1,
        "server sessions opened by start-up at head"
    );
    assert_eq!(connections, 1, "connections in the pool after start-up");
    assert_eq!(
        queries, 1,
        "queries (through diesel's instrumentation) of start-up at head"
    );
}

/// What the stand-in pooler saw: the startup parameters of each connection attempt.
type Startups = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A stand-in for a pooler that refuses session settings in the startup packet, as `PgBouncer`
/// does ("unsupported startup parameter: options"): it declines TLS, answers a startup packet
/// that carries `options` with that FATAL error, and relays any other connection to the real
/// server, where the manager then sets the session up by query.
struct RefusingPooler {
    port: u16,
    startups: Startups,
}

impl RefusingPooler {
    fn start(upstream: Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let startups: Startups = Arc::default();
        let seen = Arc::clone(&startups);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (seen, upstream) = (Arc::clone(&seen), upstream.clone());
                std::thread::spawn(move || serve(client, &seen, &upstream));
            }
        });
        Self { port, startups }
    }

    fn startups(&self) -> Vec<Vec<(String, String)>> {
        self.startups.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Where the real server listens, as the admin connection reports it.
#[derive(Clone)]
enum Upstream {
    Tcp(String),
    Socket(String),
}

fn serve(mut client: TcpStream, seen: &Startups, upstream: &Upstream) {
    let Some(packet) = startup_packet(&mut client) else {
        return;
    };
    let parameters = startup_parameters(&packet);
    let refused = parameters.iter().any(|(key, _)| key == "options");
    seen.lock().unwrap_or_else(PoisonError::into_inner).push(parameters);
    if refused {
        let mut fields = Vec::new();
        for (code, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "08P01"),
            (b'M', "unsupported startup parameter: options"),
        ] {
            fields.push(code);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut message = vec![b'E'];
        message.extend_from_slice(&(u32::try_from(fields.len() + 4).expect("short")).to_be_bytes());
        message.extend_from_slice(&fields);
        let _ = client.write_all(&message);
        return;
    }
    match upstream {
        Upstream::Tcp(address) => {
            let server = TcpStream::connect(address).expect("connect to the real server");
            relay(client, server.try_clone().expect("clone"), server, &packet);
        }
        Upstream::Socket(path) => {
            let server = std::os::unix::net::UnixStream::connect(path).expect("connect to the real server");
            relay(client, server.try_clone().expect("clone"), server, &packet);
        }
    }
}

/// Reads the startup packet, declining TLS and GSS encryption requests on the way.
fn startup_packet(client: &mut TcpStream) -> Option<Vec<u8>> {
    loop {
        let mut length = [0_u8; 4];
        client.read_exact(&mut length).ok()?;
        let length = usize::try_from(u32::from_be_bytes(length)).ok()?;
        let mut body = vec![0_u8; length.checked_sub(4)?];
        client.read_exact(&mut body).ok()?;
        let code = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
        // SSLRequest and GSSENCRequest.
        if code == 80_877_103 || code == 80_877_104 {
            client.write_all(b"N").ok()?;
            continue;
        }
        let mut packet = u32::try_from(length).ok()?.to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        return Some(packet);
    }
}

fn startup_parameters(packet: &[u8]) -> Vec<(String, String)> {
    let strings: Vec<String> = packet[8..]
        .split(|byte| *byte == 0)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    strings
        .chunks(2)
        .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

fn relay<S: Read + Write + Send + 'static>(mut client: TcpStream, mut server_read: S, mut server: S, packet: &[u8]) {
    if server.write_all(packet).is_err() {
        return;
    }
    let mut client_read = client.try_clone().expect("clone");
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server);
    });
    let _ = std::io::copy(&mut server_read, &mut client);
}

/// Behind a pooler that refuses startup options, connections still get their session settings:
/// the refused attempt is retried without them and the settings are applied by query, and the
/// manager remembers it, so later connections go straight to the query.
#[test]
fn a_pooler_that_refuses_startup_options_gets_the_settings_by_query() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut admin = database.connect();
    let upstream = match setting(&mut admin, "SELECT coalesce(host(inet_server_addr()), '') AS value").as_str() {
        "" => Upstream::Socket(format!(
            "{}/.s.PGSQL.{}",
            setting(
                &mut admin,
                "SELECT split_part(current_setting('unix_socket_directories'), ',', 1) AS value"
            )
            .trim(),
            setting(&mut admin, "SELECT current_setting('port') AS value")
        )),
        address => Upstream::Tcp(format!(
            "{address}:{}",
            setting(&mut admin, "SELECT inet_server_port()::text AS value")
        )),
    };
    let user = setting(&mut admin, "SELECT current_user::text AS value");
    let name = database.postgres_name().expect("a PostgreSQL database");
    let pooler = RefusingPooler::start(upstream);

    // The test database's own password, if it has one (a container's does), percent-encoded.
    let password = url::Url::parse(&database.target().expose_connection_string())
        .ok()
        .and_then(|url| url.password().map(|password| format!(":{password}")))
        .unwrap_or_default();
    let url = format!(
        "postgresql://{user}{password}@127.0.0.1:{}/{name}?sslmode=disable",
        pooler.port
    );
    let mut config = DatabaseConfig::new(DatabaseTarget::postgres_url(&url).expect("url"));
    config.session.statement_timeout = Duration::from_millis(1500);
    config.session.lock_timeout = Duration::from_millis(250);
    config.session.application_name = "behind-a-pooler".to_owned();
    let manager = ConnectionManager::new(config.target, config.session, config.pool.connection_timeout);
    for _ in 0..2 {
        let mut connection = manager.establish().expect("a connection through the pooler");
        assert_session_settings(&mut connection, "behind-a-pooler");
    }
    let with_options: Vec<bool> = pooler
        .startups()
        .iter()
        .map(|parameters| parameters.iter().any(|(key, _)| key == "options"))
        .collect();
    assert_eq!(
        with_options,
        [true, false, false],
        "startup packets with options: refused once, then none"
    );
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
    migrator::Migrator::embedded(database.backend(), database::config::MigrationSettings::default())
        .run(connection)
        .expect("migrations apply");
}

/// The session settings the pool tests configure: 1500 ms, 250 ms and `application_name`.
#[track_caller]
fn assert_session_settings(connection: &mut DbConnection, application_name: &str) {
    assert_eq!(
        setting(connection, "SELECT current_setting('statement_timeout') AS value"),
        "1500ms"
    );
    assert_eq!(
        setting(connection, "SELECT current_setting('lock_timeout') AS value"),
        "250ms"
    );
    assert_eq!(
        setting(connection, "SELECT current_setting('application_name') AS value"),
        application_name
    );
}

/// Statements counted per thread by diesel's default instrumentation, which this binary sets once
/// (other tests' statements count under their own threads).
static STARTED_ON_THREAD: Mutex<Vec<(std::thread::ThreadId, usize)>> = Mutex::new(Vec::new());

struct CountStartedOnThread;

impl Instrumentation for CountStartedOnThread {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            let thread = std::thread::current().id();
            let mut counts = STARTED_ON_THREAD.lock().unwrap_or_else(PoisonError::into_inner);
            match counts.iter_mut().find(|(id, _)| *id == thread) {
                Some((_, count)) => *count += 1,
                None => counts.push((thread, 1)),
            }
        }
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "diesel's default instrumentation is a fn returning an Option"
)]
fn count_started_on_thread() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(CountStartedOnThread))
}

fn started_on_this_thread() -> usize {
    let thread = std::thread::current().id();
    STARTED_ON_THREAD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(id, _)| *id == thread)
        .map_or(0, |(_, count)| *count)
}

/// The pool's statement timer takes the place of diesel's default instrumentation on its
/// connections and passes every event on to a default instance, so that a service's own
/// instrumentation (`set_default_instrumentation`) still sees every statement.
fn a_default_instrumentation_still_sees_every_statement(database: &TestDb) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        diesel::connection::set_default_instrumentation(count_started_on_thread)
            .expect("set the default instrumentation");
    });
    let pool = Database::connect(database.config()).expect("pool");
    let mut connection = pool.get().expect("connection");
    let before = started_on_this_thread();
    for _ in 0..3 {
        diesel::sql_query("SELECT 1").execute(&mut *connection).expect("select");
    }
    assert_eq!(
        started_on_this_thread() - before,
        3,
        "the default instrumentation saw each statement"
    );
    drop(connection);
    assert!(pool.metrics().statement(database::StatementKind::Select).duration.count >= 3);
}
on_both_backends!(
    default_instrumentation,
    a_default_instrumentation_still_sees_every_statement
);
