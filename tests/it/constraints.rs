//! The database itself rejects bad rows: every constraint, one case each, on both backends.

use database::DbConnection;
use diesel::RunQueryDsl as _;
use diesel::connection::SimpleConnection as _;
use diesel::result::{DatabaseErrorKind, Error};
use test_fixtures::TestDb;

use crate::support::{AttendanceRow, UserRow, count_rows, insert_attendance, insert_user, migrated, on_both_backends};

/// 201 characters, one over the limit.
const LONG_NAME: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// 255 characters, one over the limit.
const LONG_EMAIL: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com";

/// A row to write after the fixture (user 1, live), and what the database must say.
enum Row {
    User(UserRow),
    Attendance(AttendanceRow),
    /// A statement that is the same on both backends.
    Update(&'static str),
}

enum RowKind {
    Insert,
    Update,
}

/// `Ok` when the row must be accepted; otherwise the constraint (or, for NOT NULL, the column)
/// that must reject it, as
/// PostgreSQL names it, and as SQLite's message says it.
type Expected = Result<(), (&'static str, &'static str)>;

const fn user(email: &'static str) -> UserRow {
    UserRow::new(10, email)
}

#[expect(clippy::too_many_lines, reason = "a data table, one case per entry")]
fn cases() -> Vec<(&'static str, Vec<Row>, Expected)> {
    let check = |name: &'static str| Err((name, name));
    vec![
        (
            "batch id without deleted_at",
            vec![Row::Update("UPDATE users SET deletion_batch_id = id")],
            check("chk_users_deletion_pair"),
        ),
        (
            "deleted_at without batch id",
            vec![Row::Update("UPDATE users SET deleted_at = updated_at")],
            check("chk_users_deletion_pair"),
        ),
        (
            "updated before created",
            vec![Row::Update(
                "UPDATE users SET updated_at = '2000-01-01T00:00:00.000000Z'",
            )],
            check("chk_users_updated_after_created"),
        ),
        (
            "missing name",
            vec![Row::Update("UPDATE users SET full_name = NULL")],
            Err(("full_name", "NOT NULL constraint failed: users.full_name")),
        ),
        (
            "missing check-in",
            vec![
                Row::Attendance(AttendanceRow::open(20, 1)),
                Row::Update("UPDATE attendance SET check_in_time = NULL"),
            ],
            Err(("check_in_time", "NOT NULL constraint failed: attendance.check_in_time")),
        ),
        (
            "attendance batch id without deleted_at",
            vec![
                Row::Attendance(AttendanceRow::open(20, 1)),
                Row::Update("UPDATE attendance SET deletion_batch_id = id"),
            ],
            check("chk_attendance_deletion_pair"),
        ),
        ("valid user", vec![Row::User(user("zoe@example.com"))], Ok(())),
        (
            "upper-case email",
            vec![Row::User(user("Zoe@Example.com"))],
            check("chk_users_email_lowercase"),
        ),
        (
            "overlong email",
            vec![Row::User(user(LONG_EMAIL))],
            check("chk_users_email_length"),
        ),
        (
            "email without @",
            vec![Row::User(user("zoe.example.com"))],
            check("chk_users_email_format"),
        ),
        (
            "email with two @",
            vec![Row::User(user("zoe@@example.com"))],
            check("chk_users_email_format"),
        ),
        (
            "email with a space",
            vec![Row::User(user("zoe x@example.com"))],
            check("chk_users_email_format"),
        ),
        (
            "empty name",
            vec![Row::User(UserRow {
                full_name: "",
                ..user("zoe@example.com")
            })],
            check("chk_users_full_name_length"),
        ),
        (
            "overlong name",
            vec![Row::User(UserRow {
                full_name: LONG_NAME,
                ..user("zoe@example.com")
            })],
            check("chk_users_full_name_length"),
        ),
        (
            "untrimmed name",
            vec![Row::User(UserRow {
                full_name: " Zoe",
                ..user("zoe@example.com")
            })],
            check("chk_users_full_name_trimmed"),
        ),
        (
            "quotes in a name",
            vec![Row::User(UserRow {
                full_name: "Zoë O'Brien \"; DROP TABLE users; --",
                ..user("zoe@example.com")
            })],
            Ok(()),
        ),
        (
            "clear-text password",
            vec![Row::User(UserRow {
                hashed_password: "hunter2",
                ..user("zoe@example.com")
            })],
            check("chk_users_hashed_password_format"),
        ),
        (
            "duplicate live email",
            vec![Row::User(user("ann@example.com"))],
            Err(("uq_users_email", "UNIQUE constraint failed: users.email")),
        ),
        (
            "email of a soft-deleted user",
            vec![
                Row::User(UserRow {
                    deleted_at: Some("2026-01-01T00:00:00.000000Z"),
                    ..UserRow::new(11, "gone@example.com")
                }),
                Row::User(user("gone@example.com")),
            ],
            Ok(()),
        ),
        (
            "check-out before check-in",
            vec![Row::Attendance(AttendanceRow {
                check_out_time: Some("2026-01-05T08:00:00.000000Z"),
                ..AttendanceRow::open(20, 1)
            })],
            check("chk_attendance_check_out_after_check_in"),
        ),
        (
            "check-out at check-in",
            vec![Row::Attendance(AttendanceRow {
                check_out_time: Some("2026-01-05T09:00:00.000000Z"),
                ..AttendanceRow::open(20, 1)
            })],
            check("chk_attendance_check_out_after_check_in"),
        ),
        (
            "one open attendance",
            vec![Row::Attendance(AttendanceRow::open(20, 1))],
            Ok(()),
        ),
        (
            "second open attendance",
            vec![
                Row::Attendance(AttendanceRow::open(20, 1)),
                Row::Attendance(AttendanceRow {
                    check_in_time: "2026-01-06T09:00:00.000000Z",
                    ..AttendanceRow::open(21, 1)
                }),
            ],
            Err(("uq_attendance_user_id", "UNIQUE constraint failed: attendance.user_id")),
        ),
        (
            "open attendance after a closed one",
            vec![
                Row::Attendance(AttendanceRow {
                    check_out_time: Some("2026-01-05T17:00:00.000000Z"),
                    ..AttendanceRow::open(20, 1)
                }),
                Row::Attendance(AttendanceRow {
                    check_in_time: "2026-01-06T09:00:00.000000Z",
                    ..AttendanceRow::open(21, 1)
                }),
            ],
            Ok(()),
        ),
        (
            "open attendance beside a soft-deleted open one",
            vec![
                Row::Attendance(AttendanceRow {
                    deleted_at: Some("2026-01-05T10:00:00.000000Z"),
                    ..AttendanceRow::open(20, 1)
                }),
                Row::Attendance(AttendanceRow {
                    check_in_time: "2026-01-06T09:00:00.000000Z",
                    ..AttendanceRow::open(21, 1)
                }),
            ],
            Ok(()),
        ),
        (
            "attendance of an unknown user",
            vec![Row::Attendance(AttendanceRow::open(20, 999))],
            Err(("fk_attendance_users", "FOREIGN KEY constraint failed")),
        ),
    ]
}

on_both_backends!(constraints_reject_bad_rows, constraints_reject_bad_rows);

fn constraints_reject_bad_rows(database: &TestDb) {
    let mut connection = migrated(database);
    insert_user(&mut connection, UserRow::new(1, "ann@example.com")).expect("fixture user");
    for (case, rows, expected) in cases() {
        connection.batch_execute("BEGIN").expect("begin");
        let before = count_rows(&mut connection, "users") + count_rows(&mut connection, "attendance");
        let mut outcome = Ok(());
        let mut written: usize = 0;
        for row in rows {
            let row_kind = if matches!(row, Row::Update(_)) {
                RowKind::Update
            } else {
                RowKind::Insert
            };
            // A savepoint per row, so that the database stays usable after a rejected one.
            connection.batch_execute("SAVEPOINT row_start").expect("savepoint");
            outcome = match row {
                Row::User(row) => insert_user(&mut connection, row),
                Row::Attendance(row) => insert_attendance(&mut connection, row),
                Row::Update(statement) => diesel::sql_query(statement).execute(&mut connection).map(|_| 0),
            }
            .map(drop);
            if outcome.is_err() {
                connection
                    .batch_execute("ROLLBACK TO SAVEPOINT row_start")
                    .expect("rollback to savepoint");
                break;
            }
            connection
                .batch_execute("RELEASE SAVEPOINT row_start")
                .expect("release");
            written += usize::from(!matches!(row_kind, RowKind::Update));
        }
        match (&outcome, expected) {
            (Ok(()), Ok(())) => {}
            (Err(error), Err((postgres_name, sqlite_message))) => {
                let Error::DatabaseError(kind, info) = error else {
                    panic!("{case}: not a database error: {error}")
                };
                assert!(
                    matches!(
                        kind,
                        DatabaseErrorKind::CheckViolation
                            | DatabaseErrorKind::UniqueViolation
                            | DatabaseErrorKind::ForeignKeyViolation
                            | DatabaseErrorKind::NotNullViolation
                    ),
                    "{case}: unexpected kind {kind:?}: {error}"
                );
                match &connection {
                    DbConnection::Pg(_) => assert_eq!(
                        info.constraint_name().or(info.column_name()),
                        Some(postgres_name),
                        "{case}: {error}"
                    ),
                    DbConnection::Sqlite(_) => assert!(info.message().contains(sqlite_message), "{case}: {error}"),
                }
            }
            (outcome, expected) => panic!("{case}: expected {expected:?}, got {outcome:?}"),
        }
        // The rejected row left nothing behind; the rows before it were written.
        let after = count_rows(&mut connection, "users") + count_rows(&mut connection, "attendance");
        assert_eq!(
            after,
            before + i64::try_from(written).expect("few rows"),
            "{case}: row counts"
        );
        connection.batch_execute("ROLLBACK").expect("rollback");
    }
}

on_both_backends!(purging_a_user_cascades_to_attendance, purging_cascades);

fn purging_cascades(database: &TestDb) {
    let mut connection = migrated(database);
    insert_user(&mut connection, UserRow::new(1, "ann@example.com")).expect("user");
    insert_user(&mut connection, UserRow::new(2, "bob@example.com")).expect("user");
    insert_attendance(&mut connection, AttendanceRow::open(20, 1)).expect("attendance");
    insert_attendance(&mut connection, AttendanceRow::open(21, 2)).expect("attendance");
    connection
        .batch_execute("DELETE FROM users WHERE email = 'ann@example.com'")
        .expect("purge");
    assert_eq!(
        count_rows(&mut connection, "attendance"),
        1,
        "ann's attendance went with her, bob's stayed"
    );
}

#[test]
fn sqlite_holds_writers_to_its_storage_format() {
    let database = TestDb::sqlite_file();
    let mut connection = migrated(&database);
    insert_user(&mut connection, UserRow::new(1, "ann@example.com")).expect("user");
    for (case, statement) in [
        (
            "a 15-byte id",
            "UPDATE users SET id = X'000000000000000000000000000001'",
        ),
        (
            "a timestamp without microseconds",
            "UPDATE users SET created_at = '2026-01-01T00:00:00Z'",
        ),
        (
            "a timestamp with a space",
            "UPDATE users SET deleted_at = '2026-01-01 00:00:00.000000Z', deletion_batch_id = id",
        ),
        ("a boolean 2", "UPDATE users SET is_active = 2"),
    ] {
        let error = connection.batch_execute(statement).expect_err(case);
        assert!(
            error.to_string().contains("chk_users_storage_format"),
            "{case}: {error}"
        );
    }
    let error = connection
        .batch_execute("UPDATE users SET email = X'00'")
        .expect_err("STRICT");
    assert!(
        error.to_string().contains("cannot store BLOB value in TEXT column"),
        "{error}"
    );
}
