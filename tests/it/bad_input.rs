//! Bad input, one case per line: each gets its typed error (never a panic, never `Internal`) and
//! leaves the database unchanged. Also the two errors that come from the database's state rather
//! than the input: a busy database is a `Timeout`, an exhausted pool is `Unavailable`.

use migrator::Migrate as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use diesel::connection::SimpleConnection as _;
use domain::{AttendanceId, CheckIn, CheckOut, Email, FullName, NewUser, Password, UserChanges, UserId};
use repo::{Cursor, KeysetRequest, KeysetStart, PageRequest, RepoError, Repositories, Scope, TimeRange, UserFilter};
use repo_diesel::Backend;
use repo_diesel::repositories::DieselStore;
use test_fixtures::TestDb;

use crate::support::{conformance, count_rows, password_hash};

fn store(database: &TestDb, tune: impl FnOnce(&mut repo_diesel::DatabaseConfig)) -> DieselStore {
    let mut config = database.config();
    tune(&mut config);
    let pool = database::Database::connect(config).expect("pool");
    pool.migrate().expect("migrate");
    DieselStore::new(Arc::new(pool))
}

fn new_user(email: &str, name: &str) -> Result<NewUser, RepoError> {
    Ok(NewUser {
        email: Email::parse(email)?,
        full_name: FullName::parse(name)?,
        password_hash: password_hash(),
    })
}

/// A case: its name, the call, and the error it must give.
type Case<'a> = (&'a str, Box<dyn Fn() -> Result<(), RepoError> + 'a>, Expect);

/// What the error must be: its variant and the field or constraint it names.
#[derive(Debug)]
enum Expect {
    Validation(&'static str),
    Conflict(&'static str),
    NotFound,
}

#[track_caller]
fn check(case: &str, outcome: Result<(), RepoError>, expected: &Expect) {
    let error = outcome.expect_err(case);
    let matches = match (expected, &error) {
        (Expect::Validation(field), RepoError::Validation { field: actual, .. }) => actual == field,
        (Expect::Conflict(constraint), RepoError::Conflict { constraint: actual, .. }) => actual == constraint,
        (Expect::NotFound, RepoError::NotFound { .. }) => true,
        _ => false,
    };
    assert!(matches, "{case}: expected {expected:?}, got {error:?}");
}

/// Every row of both tables, every column, and the number of audit entries: what "the database
/// is unchanged" compares (a refused operation leaves no audit entry either).
fn snapshot(store: &DieselStore) -> (Vec<domain::User>, Vec<domain::Attendance>, i64) {
    let all = PageRequest::new(1, repo::MAX_PAGE_SIZE).expect("valid");
    let users = store
        .users()
        .list(
            &UserFilter {
                scope: Scope::WithDeleted,
                search: None,
            },
            all,
        )
        .expect("users")
        .items;
    let attendance = store
        .attendance()
        .list_with_user(Scope::WithDeleted, all)
        .expect("attendance")
        .items;
    let entries = count_rows(&mut store.database().get().expect("a connection"), "audit_log");
    (
        users,
        attendance.into_iter().map(|item| item.attendance).collect(),
        entries,
    )
}

conformance!(bad_input_gets_a_typed_error_and_changes_nothing, bad_input);

#[expect(clippy::too_many_lines, reason = "a data table, one case per entry")]
fn bad_input(database: &TestDb) {
    let store = store(database, |_| {});
    let (users, attendance) = (store.users(), store.attendance());
    let ann = users
        .create(new_user("ann@example.com", "Ann").expect("valid"))
        .expect("ann");
    let bob = users
        .create(new_user("bob@example.com", "Bob").expect("valid"))
        .expect("bob");
    let at = domain::time::now() - TimeDelta::hours(2);
    attendance
        .check_in(CheckIn { user_id: ann.id, at })
        .expect("ann checks in");
    let overlong_unicode = "é".repeat(201);
    let page = |page, size| PageRequest::new(page, size).map(drop);

    let cases: Vec<Case> = vec![
        (
            "empty name",
            Box::new(|| new_user("x@example.com", "").map(drop)),
            Expect::Validation("full_name"),
        ),
        (
            "blank name",
            Box::new(|| new_user("x@example.com", " \t ").map(drop)),
            Expect::Validation("full_name"),
        ),
        (
            "overlong name",
            Box::new(|| new_user("x@example.com", &"x".repeat(201)).map(drop)),
            Expect::Validation("full_name"),
        ),
        (
            "overlong unicode name",
            Box::new(|| new_user("x@example.com", &overlong_unicode).map(drop)),
            Expect::Validation("full_name"),
        ),
        (
            "control character in a name",
            Box::new(|| new_user("x@example.com", "Ann\u{0}").map(drop)),
            Expect::Validation("full_name"),
        ),
        (
            "empty email",
            Box::new(|| new_user("", "X").map(drop)),
            Expect::Validation("email"),
        ),
        (
            "email without @",
            Box::new(|| new_user("example.com", "X").map(drop)),
            Expect::Validation("email"),
        ),
        (
            "email with two @",
            Box::new(|| new_user("a@@example.com", "X").map(drop)),
            Expect::Validation("email"),
        ),
        (
            "email with a quote and space",
            Box::new(|| new_user("o' brien@example.com", "X").map(drop)),
            Expect::Validation("email"),
        ),
        (
            "sql in an email",
            Box::new(|| new_user("x'; DROP TABLE users;--@example.com", "X").map(drop)),
            Expect::Validation("email"),
        ),
        (
            "an email in other case is the same email",
            Box::new(|| {
                new_user("ANN@EXAMPLE.COM", "Ann Again")
                    .and_then(|user| users.create(user))
                    .map(drop)
            }),
            Expect::Conflict("uq_users_email"),
        ),
        (
            "an update to a taken email",
            Box::new(|| {
                users
                    .update(
                        bob.id,
                        UserChanges {
                            email: Some(ann.email.clone()),
                            ..UserChanges::default()
                        },
                    )
                    .map(drop)
            }),
            Expect::Conflict("uq_users_email"),
        ),
        (
            "a short password",
            Box::new(|| Password::parse("short").map(drop).map_err(RepoError::from)),
            Expect::Validation("password"),
        ),
        (
            "check-out before check-in",
            Box::new(|| {
                attendance
                    .check_out(CheckOut {
                        user_id: ann.id,
                        at: at - TimeDelta::minutes(1),
                    })
                    .map(drop)
            }),
            Expect::Validation("check_out_time"),
        ),
        (
            "check-out with nothing open",
            Box::new(|| attendance.check_out(CheckOut { user_id: bob.id, at }).map(drop)),
            Expect::NotFound,
        ),
        (
            "a second open check-in",
            Box::new(|| attendance.check_in(CheckIn { user_id: ann.id, at }).map(drop)),
            Expect::Conflict("uq_attendance_user_id"),
        ),
        (
            "check-in of an unknown user",
            Box::new(|| {
                attendance
                    .check_in(CheckIn {
                        user_id: UserId::new(),
                        at,
                    })
                    .map(drop)
            }),
            Expect::NotFound,
        ),
        (
            "get an unknown user",
            Box::new(|| users.get(UserId::new(), Scope::WithDeleted).map(drop)),
            Expect::NotFound,
        ),
        (
            "update an unknown user",
            Box::new(|| users.update(UserId::new(), UserChanges::default()).map(drop)),
            Expect::NotFound,
        ),
        (
            "deactivate an unknown user",
            Box::new(|| users.set_active(UserId::new(), false).map(drop)),
            Expect::NotFound,
        ),
        (
            "delete an unknown user",
            Box::new(|| users.soft_delete(UserId::new()).map(drop)),
            Expect::NotFound,
        ),
        (
            "restore a live user",
            Box::new(|| users.restore(bob.id).map(drop)),
            Expect::NotFound,
        ),
        (
            "purge an unknown user",
            Box::new(|| users.purge(UserId::new())),
            Expect::NotFound,
        ),
        (
            "get unknown attendance",
            Box::new(|| attendance.get(AttendanceId::new(), Scope::WithDeleted).map(drop)),
            Expect::NotFound,
        ),
        (
            "delete unknown attendance",
            Box::new(|| attendance.soft_delete(AttendanceId::new()).map(drop)),
            Expect::NotFound,
        ),
        (
            "restore unknown attendance",
            Box::new(|| attendance.restore(AttendanceId::new()).map(drop)),
            Expect::NotFound,
        ),
        ("page 0", Box::new(|| page(0, 10)), Expect::Validation("page")),
        ("page size 0", Box::new(|| page(1, 0)), Expect::Validation("per_page")),
        (
            "keyset limit 0",
            Box::new(|| KeysetRequest::new(KeysetStart::First, 0).map(drop)),
            Expect::Validation("limit"),
        ),
        (
            "a garbage cursor",
            Box::new(|| {
                users
                    .list_keyset(
                        &UserFilter::default(),
                        &KeysetRequest::new(KeysetStart::After(Cursor::from_text("%%%")), 10).expect("valid"),
                    )
                    .map(drop)
            }),
            Expect::Validation("cursor"),
        ),
        (
            "sql in a cursor",
            Box::new(|| {
                users
                    .list_keyset(
                        &UserFilter::default(),
                        &KeysetRequest::new(KeysetStart::Before(Cursor::from_text("' OR 1=1 --")), 10).expect("valid"),
                    )
                    .map(drop)
            }),
            Expect::Validation("cursor"),
        ),
        (
            "a reversed time range",
            Box::new(|| TimeRange::new(at, at - TimeDelta::days(1)).map(drop)),
            Expect::Validation("to"),
        ),
    ];
    for (case, run, expected) in cases {
        let before = snapshot(&store);
        check(case, run(), &expected);
        assert_eq!(snapshot(&store), before, "{case}: the database changed");
    }

    // Huge page sizes are clamped, huge page numbers are empty pages: neither is an error.
    let clamped = users
        .list(&UserFilter::default(), PageRequest::new(1, u32::MAX).expect("clamped"))
        .expect("list");
    assert_eq!(clamped.per_page, repo::MAX_PAGE_SIZE);
    let far = users
        .list(&UserFilter::default(), PageRequest::new(u32::MAX, 100).expect("valid"))
        .expect("list");
    assert!(far.items.is_empty() && far.total == repo::Total::Exact(2));

    // Out-of-range instants and NUL characters are typed errors, not database errors.
    assert!(matches!(
        TimeRange::new(chrono::DateTime::<chrono::Utc>::MIN_UTC, at),
        Err(RepoError::Validation { .. })
    ));
    let nul = UserFilter {
        scope: Scope::Live,
        search: Some("\0".into()),
    };
    assert!(matches!(
        users.list(&nul, PageRequest::new(1, 10).expect("valid")),
        Err(RepoError::Validation { .. })
    ));

    // Quotes and SQL metacharacters in every string field are data, stored and read back as given.
    let odd = users
        .create(
            new_user(
                "o'brien+%_x@example.com",
                "Robert'); DROP TABLE users;-- \"Bobby\" 50% _x_ \\n",
            )
            .expect("valid"),
        )
        .expect("create");
    let read = users.get_by_email(&odd.email, Scope::Live).expect("read back");
    assert_eq!(
        (read.email.as_str(), read.full_name.as_str()),
        (
            "o'brien+%_x@example.com",
            "Robert'); DROP TABLE users;-- \"Bobby\" 50% _x_ \\n"
        )
    );
    let found = users.list(
        &UserFilter {
            scope: Scope::Live,
            search: Some("50% _x_".into()),
        },
        PageRequest::new(1, 10).expect("valid"),
    );
    assert_eq!(found.expect("search").items.len(), 1);
}

conformance!(a_busy_database_is_a_timeout, busy_database);

fn busy_database(database: &TestDb) {
    let store = store(database, |config| {
        config.session.lock_timeout = Duration::from_millis(100);
        config.session.sqlite_busy_timeout = Duration::from_millis(100);
    });
    let ann = store
        .users()
        .create(new_user("ann@example.com", "Ann").expect("valid"))
        .expect("ann");
    let mut holder = database.connect();
    holder
        .batch_execute(match database.backend() {
            Backend::Postgres => "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE",
            Backend::Sqlite => "BEGIN IMMEDIATE",
        })
        .expect("hold a lock");
    let error = store.users().set_active(ann.id, false).expect_err("blocked");
    assert!(matches!(error, RepoError::Timeout(_)), "{error:?}");
    holder.batch_execute("ROLLBACK").expect("release");
    assert!(!store.users().set_active(ann.id, false).expect("free again").is_active);

    if database.backend() == Backend::Postgres {
        // With no lock timeout, the statement timeout ends the wait instead: also a Timeout.
        let store = self::store(database, |config| {
            config.session.lock_timeout = Duration::ZERO;
            config.session.statement_timeout = Duration::from_millis(150);
        });
        holder
            .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            .expect("hold a lock");
        let error = store.users().get(ann.id, Scope::Live).expect_err("blocked");
        assert!(
            matches!(&error, RepoError::Timeout(message) if message.contains("statement timeout")),
            "{error:?}"
        );
        holder.batch_execute("ROLLBACK").expect("release");
    }
}

conformance!(an_exhausted_pool_is_unavailable, exhausted_pool);

fn exhausted_pool(database: &TestDb) {
    let store = store(database, |config| {
        config.pool.max_size = 1;
        config.pool.connection_timeout = Duration::from_millis(200);
    });
    let held = store.database().get().expect("the only connection");
    let error = store
        .users()
        .get(UserId::new(), Scope::Live)
        .expect_err("no connection");
    assert!(matches!(error, RepoError::Unavailable(_)), "{error:?}");
    drop(held);
    assert!(matches!(
        store.users().get(UserId::new(), Scope::Live),
        Err(RepoError::NotFound { .. })
    ));
}
