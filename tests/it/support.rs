//! Helpers shared by the test modules: running a test on both backends, and writing rows with
//! bound parameters before the repositories exist.

use database::DbConnection;
use database::config::MigrationSettings;
use diesel::prelude::*;
use diesel::sql_types::{Binary, Nullable, Text};
use migrator::Migrator;
use test_fixtures::TestDb;

/// Defines `mod $name { fn postgres(); fn sqlite(); }`, each calling `$body` with a scratch
/// database of its backend (the PostgreSQL one returns early, loudly, without a server).
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn postgres() {
                if let Some(database) = test_fixtures::TestDb::postgres() {
                    super::$body(&database);
                }
            }

            #[test]
            fn sqlite() {
                super::$body(&test_fixtures::TestDb::sqlite_file());
            }
        }
    };
}
pub(crate) use on_both_backends;

/// Like `on_both_backends!`, for the repository conformance suite, written once: on a PostgreSQL
/// database copied from the migrated template, and on the fast in-memory SQLite database.
macro_rules! conformance {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn postgres() {
                if let Some(database) = test_fixtures::TestDb::postgres_migrated() {
                    super::$body(&database);
                }
            }

            #[test]
            fn sqlite_in_memory() {
                super::$body(&test_fixtures::TestDb::sqlite_in_memory());
            }
        }
    };
}
pub(crate) use conformance;

/// Opens a connection and applies every migration through the start-up runner.
pub fn migrated(database: &TestDb) -> DbConnection {
    let mut connection = database.connect();
    Migrator::embedded(database.backend(), MigrationSettings::default())
        .run(&mut connection)
        .expect("migrations apply");
    connection
}

/// A user row, written with every value bound.
#[derive(Clone, Copy)]
pub struct UserRow {
    pub id: u128,
    pub email: &'static str,
    pub full_name: &'static str,
    pub hashed_password: &'static str,
    pub deleted_at: Option<&'static str>,
}

impl UserRow {
    pub const fn new(id: u128, email: &'static str) -> Self {
        Self {
            id,
            email,
            full_name: "Ann Example",
            hashed_password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            deleted_at: None,
        }
    }
}

/// An attendance row, written with every value bound.
#[derive(Clone, Copy)]
pub struct AttendanceRow {
    pub id: u128,
    pub user_id: u128,
    pub check_in_time: &'static str,
    pub check_out_time: Option<&'static str>,
    pub deleted_at: Option<&'static str>,
}

impl AttendanceRow {
    pub const fn open(id: u128, user_id: u128) -> Self {
        Self {
            id,
            user_id,
            check_in_time: "2026-01-05T09:00:00.000000Z",
            check_out_time: None,
            deleted_at: None,
        }
    }
}

/// The 16 bytes of a test id; `deletion_batch_id` reuses the row's id when the row is deleted.
fn id_bytes(id: u128) -> Vec<u8> {
    uuid::Uuid::from_u128(id).as_bytes().to_vec()
}

pub fn insert_user(connection: &mut DbConnection, row: UserRow) -> QueryResult<usize> {
    let batch = row.deleted_at.map(|_| row.id);
    match connection {
        DbConnection::Pg(pg) => diesel::sql_query(
            "INSERT INTO users (id, email, full_name, hashed_password, deleted_at, deletion_batch_id)
             VALUES ($1::text::uuid, $2, $3, $4, $5::timestamptz, $6::text::uuid)",
        )
        .bind::<Text, _>(uuid::Uuid::from_u128(row.id).to_string())
        .bind::<Text, _>(row.email)
        .bind::<Text, _>(row.full_name)
        .bind::<Text, _>(row.hashed_password)
        .bind::<Nullable<Text>, _>(row.deleted_at)
        .bind::<Nullable<Text>, _>(batch.map(|id| uuid::Uuid::from_u128(id).to_string()))
        .execute(pg),
        DbConnection::Sqlite(sqlite) => diesel::sql_query(
            "INSERT INTO users (id, email, full_name, hashed_password, deleted_at, deletion_batch_id)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind::<Binary, _>(id_bytes(row.id))
        .bind::<Text, _>(row.email)
        .bind::<Text, _>(row.full_name)
        .bind::<Text, _>(row.hashed_password)
        .bind::<Nullable<Text>, _>(row.deleted_at)
        .bind::<Nullable<Binary>, _>(batch.map(id_bytes))
        .execute(sqlite),
    }
}

pub fn insert_attendance(connection: &mut DbConnection, row: AttendanceRow) -> QueryResult<usize> {
    let batch = row.deleted_at.map(|_| row.id);
    match connection {
        DbConnection::Pg(pg) => diesel::sql_query(
            "INSERT INTO attendance (id, user_id, check_in_time, check_out_time, deleted_at, deletion_batch_id)
             VALUES ($1::text::uuid, $2::text::uuid, $3::timestamptz, $4::timestamptz, $5::timestamptz, $6::text::uuid)",
        )
        .bind::<Text, _>(uuid::Uuid::from_u128(row.id).to_string())
        .bind::<Text, _>(uuid::Uuid::from_u128(row.user_id).to_string())
        .bind::<Text, _>(row.check_in_time)
        .bind::<Nullable<Text>, _>(row.check_out_time)
        .bind::<Nullable<Text>, _>(row.deleted_at)
        .bind::<Nullable<Text>, _>(batch.map(|id| uuid::Uuid::from_u128(id).to_string()))
        .execute(pg),
        DbConnection::Sqlite(sqlite) => diesel::sql_query(
            "INSERT INTO attendance (id, user_id, check_in_time, check_out_time, deleted_at, deletion_batch_id)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind::<Binary, _>(id_bytes(row.id))
        .bind::<Binary, _>(id_bytes(row.user_id))
        .bind::<Text, _>(row.check_in_time)
        .bind::<Nullable<Text>, _>(row.check_out_time)
        .bind::<Nullable<Text>, _>(row.deleted_at)
        .bind::<Nullable<Binary>, _>(batch.map(id_bytes))
        .execute(sqlite),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

/// Rows in `table` (a name from this test suite, never input).
pub fn count_rows(connection: &mut DbConnection, table: &str) -> i64 {
    let sql = match table {
        "users" => "SELECT count(*) AS count FROM users",
        "attendance" => "SELECT count(*) AS count FROM attendance",
        "audit_log" => "SELECT count(*) AS count FROM audit_log",
        other => panic!("no count query for table {other}"),
    };
    diesel::sql_query(sql)
        .get_result::<Count>(connection)
        .expect("count")
        .count
}

/// One argon2id hash shared by every test user (of `test_fixtures::DEFAULT_PASSWORD`).
pub fn password_hash() -> domain::PasswordHash {
    test_fixtures::default_password_hash()
}

/// A valid new user with the shared password hash.
pub fn new_user(email: &str, name: &str) -> domain::NewUser {
    domain::NewUser {
        email: domain::Email::parse(email).expect("valid email"),
        full_name: domain::FullName::parse(name).expect("valid name"),
        password_hash: password_hash(),
    }
}

/// Counts the queries `connection` starts from now on (through diesel's instrumentation).
pub fn count_queries(connection: &mut DbConnection) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use diesel::connection::{Connection as _, InstrumentationEvent};

    let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&queries);
    connection.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    queries
}

/// Log lines written by a `tracing` subscriber, for a test to read.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl tracing_subscriber::fmt::MakeWriter<'_> for Captured {
    type Writer = Self;

    fn make_writer(&self) -> Self {
        self.clone()
    }
}
