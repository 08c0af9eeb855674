//! What a unit of work and a write mean, the same on both backends: a failed call inside a unit
//! of work leaves it usable, write transactions wait for the write lock, timestamps hold against
//! concurrent writers and skewed clocks, and hostile instants, searches and a full database get
//! typed errors.

use domain::AuditContext;
use migrator::Migrate as _;
use std::io::Write as _;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use database::{Backend, DbConnection};
use diesel::prelude::*;
use diesel::sql_types::{Binary, Text};
use domain::{CheckIn, CheckOut, UserId};
use repo::{MAX_SEARCH_CHARS, PageRequest, RepoError, Repositories as _, Scope, UnitOfWorkExt as _, UserFilter};
use repo_diesel::repositories::DieselStore;
use test_fixtures::TestDb;

use crate::support::{conformance, count_rows, new_user};

fn store(database: &TestDb) -> DieselStore {
    let pool = database.database();
    pool.migrate().expect("migrate");
    DieselStore::new(Arc::new(pool))
}

conformance!(a_unit_of_work_carries_on_after_a_typed_error, carries_on_after_an_error);

/// Catching a `Conflict` and doing something else is a normal use of a typed error: the calls
/// that succeeded commit, the one that failed leaves nothing, on both backends.
fn carries_on_after_an_error(database: &TestDb) {
    let store = store(database);
    let ann = store.users().create(new_user("ann@example.com", "Ann")).expect("ann");
    let (bob, conflict, carol) = store
        .transact(&AuditContext::unattributed(), |repositories| {
            let bob = repositories.users().create(new_user("bob@example.com", "Bob"))?;
            let conflict = repositories
                .users()
                .create(new_user("ann@example.com", "Ann Again"))
                .expect_err("ann's address is taken");
            // "Already checked in, so check out": the transaction is still usable.
            let carol = repositories.users().create(new_user("carol@example.com", "Carol"))?;
            repositories.attendance().check_in(CheckIn {
                user_id: carol.id,
                at: domain::time::now() - TimeDelta::hours(1),
            })?;
            let again = repositories.attendance().check_in(CheckIn {
                user_id: carol.id,
                at: domain::time::now(),
            });
            assert!(matches!(again, Err(RepoError::Conflict { .. })), "{again:?}");
            repositories.attendance().check_out(CheckOut {
                user_id: carol.id,
                at: domain::time::now(),
            })?;
            Ok::<_, RepoError>((bob, conflict, carol))
        })
        .expect("the unit of work commits");
    assert!(
        matches!(&conflict, RepoError::Conflict { constraint, .. } if constraint == "uq_users_email"),
        "{conflict:?}"
    );
    for user in [&ann, &bob, &carol] {
        assert_eq!(
            store.users().get(user.id, Scope::Live).expect("committed").email,
            user.email
        );
    }
    let records = store
        .attendance()
        .list_for_user(
            carol.id,
            repo::TimeRange::new(domain::time::now() - TimeDelta::days(1), domain::time::now()).expect("range"),
            Scope::Live,
        )
        .expect("list");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(!records[0].is_open());

    // An error the work returns still rolls everything back.
    let refused: Result<(), RepoError> = store.transact(&AuditContext::unattributed(), |repositories| {
        repositories.users().create(new_user("dave@example.com", "Dave"))?;
        Err(RepoError::validation("work", "changed its mind"))
    });
    assert!(matches!(refused, Err(RepoError::Validation { .. })), "{refused:?}");
    let dave = store.users().get_by_email(
        &domain::Email::parse("dave@example.com").expect("valid"),
        Scope::WithDeleted,
    );
    assert!(matches!(dave, Err(RepoError::NotFound { .. })), "{dave:?}");
}

conformance!(write_transactions_wait_for_the_write_lock, write_transactions_wait);

/// 8 threads, each on its own user, 120 rounds of: a restore (a transaction that reads, then
/// writes) and a unit of work that reads, then writes. SQLite used to fail at once with "database
/// is locked" when a deferred `BEGIN` could not upgrade its lock; `BEGIN IMMEDIATE` waits.
fn write_transactions_wait(database: &TestDb) {
    const THREADS: usize = 8;
    const ROUNDS: usize = 120;
    // What this guards is that a write transaction waits for the lock instead of failing at once
    // (a deferred BEGIN fails at once whatever the busy timeout). SQLite's busy handler is not
    // fair: with the whole suite running beside it on two cores (private clusters, a replica), a
    // writer was once starved past the default 5 s. A longer wait keeps the guarantee tested.
    let mut config = database.config();
    config.session.sqlite_busy_timeout = Duration::from_mins(1);
    let pool = database::Database::connect(config).expect("pool");
    pool.migrate().expect("migrate");
    let store = DieselStore::new(Arc::new(pool));
    let users: Vec<UserId> = (0..THREADS)
        .map(|thread| {
            store
                .users()
                .create(new_user(&format!("writer{thread}@example.com"), "Writer"))
                .expect("user")
                .id
        })
        .collect();
    let start = Barrier::new(THREADS);
    let errors: Vec<RepoError> = std::thread::scope(|scope| {
        let workers: Vec<_> = users
            .iter()
            .map(|&user| {
                let (store, start) = (&store, &start);
                scope.spawn(move || {
                    let mut errors = Vec::new();
                    start.wait();
                    for _ in 0..ROUNDS {
                        let deleted = store.users().soft_delete(user);
                        let restored = store.users().restore(user);
                        let toggled = store.transact(&AuditContext::unattributed(), |repositories| {
                            let current = repositories.users().get(user, Scope::Live)?;
                            repositories.users().set_active(user, !current.is_active)
                        });
                        errors.extend(deleted.err());
                        errors.extend(restored.err());
                        errors.extend(toggled.err());
                    }
                    errors
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("no panic"))
            .collect()
    });
    assert!(
        errors.is_empty(),
        "{} of {} calls failed, first: {:?}",
        errors.len(),
        THREADS * ROUNDS * 3,
        errors.first()
    );
}

conformance!(timestamps_hold_against_skewed_clocks_and_racing_writers, skewed_clocks);

/// Rows written by an instance whose clock runs an hour ahead are changed by this one: every
/// write keeps `updated_at` at or after `created_at` and never moves it back.
fn skewed_clocks(database: &TestDb) {
    let store = store(database);
    let ann = store.users().create(new_user("ann@example.com", "Ann")).expect("ann");
    let open = store
        .attendance()
        .check_in(CheckIn {
            user_id: ann.id,
            at: domain::time::now() - TimeDelta::hours(2),
        })
        .expect("check in");
    let ahead = domain::time::now() + TimeDelta::hours(1);
    let mut connection = database.connect();
    set_created_at(&mut connection, "users", *ann.id.as_uuid(), ahead);
    set_created_at(&mut connection, "attendance", *open.id.as_uuid(), ahead);

    let changed = store.users().set_active(ann.id, false).expect("deactivate");
    assert!(changed.updated_at >= ahead, "{changed:?}");
    store.users().set_active(ann.id, true).expect("reactivate");
    let renamed = store
        .users()
        .update(
            ann.id,
            domain::UserChanges {
                full_name: Some(domain::FullName::parse("Ann Renamed").expect("valid")),
                ..domain::UserChanges::default()
            },
        )
        .expect("update");
    assert!(renamed.updated_at >= ahead);
    let closed = store
        .attendance()
        .check_out(CheckOut {
            user_id: ann.id,
            at: domain::time::now(),
        })
        .expect("check out");
    assert!(closed.updated_at >= closed.created_at, "{closed:?}");
    store.users().soft_delete(ann.id).expect("soft delete cascades");
    store.users().restore(ann.id).expect("restore");
    store.attendance().soft_delete(open.id).expect("delete the record");
    let restored = store.attendance().restore(open.id).expect("restore the record");
    assert!(restored.updated_at >= restored.created_at);

    // Only updated_at ahead (the last writer's clock ran ahead): it never moves back, whether the
    // write path or the trigger sets it.
    let dan = store.users().create(new_user("dan@example.com", "Dan")).expect("dan");
    set_updated_at(&mut connection, *dan.id.as_uuid(), ahead);
    let changed = store.users().set_active(dan.id, false).expect("deactivate");
    assert!(changed.updated_at >= ahead, "updated_at moved back: {changed:?}");

    // A check-in racing the user's deletion: the deletion's clock was read before the check-in
    // committed. Allowed outcomes: the check-in is refused (NotFound) or goes with the deletion.
    for round in 0..50 {
        let user = store
            .users()
            .create(new_user(&format!("race{round}@example.com"), "Racer"))
            .expect("user");
        let start = Barrier::new(2);
        let (checked_in, deleted) = std::thread::scope(|scope| {
            let check_in = scope.spawn(|| {
                start.wait();
                store.attendance().check_in(CheckIn {
                    user_id: user.id,
                    at: domain::time::now(),
                })
            });
            let delete = scope.spawn(|| {
                start.wait();
                store.users().soft_delete(user.id)
            });
            (check_in.join().expect("no panic"), delete.join().expect("no panic"))
        });
        assert!(deleted.is_ok(), "round {round}: {deleted:?}");
        assert!(
            matches!(checked_in, Ok(_) | Err(RepoError::NotFound { .. })),
            "round {round}: {checked_in:?}"
        );
    }
    assert_eq!(count_live_attendance_of_deleted_users(&mut connection), 0);
}

/// Sets `created_at` and `updated_at` of one row, as a writer with a clock at `at` would have.
fn set_created_at(connection: &mut DbConnection, table: &str, id: uuid::Uuid, at: DateTime<Utc>) {
    let sql = match (table, connection.backend()) {
        ("users", Backend::Postgres) => {
            "UPDATE users SET created_at = $1::timestamptz, updated_at = $1::timestamptz WHERE id = $2::text::uuid"
        }
        ("attendance", Backend::Postgres) => {
            "UPDATE attendance SET created_at = $1::timestamptz, updated_at = $1::timestamptz WHERE id = $2::text::uuid"
        }
        ("users", Backend::Sqlite) => "UPDATE users SET created_at = ?1, updated_at = ?1 WHERE id = ?2",
        ("attendance", Backend::Sqlite) => "UPDATE attendance SET created_at = ?1, updated_at = ?1 WHERE id = ?2",
        (other, _) => panic!("no update for table {other}"),
    };
    let at = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let updated = match connection {
        DbConnection::Pg(pg) => diesel::sql_query(sql)
            .bind::<Text, _>(at)
            .bind::<Text, _>(id.to_string())
            .execute(pg),
        DbConnection::Sqlite(sqlite) => diesel::sql_query(sql)
            .bind::<Text, _>(at)
            .bind::<Binary, _>(id.as_bytes().to_vec())
            .execute(sqlite),
    };
    assert_eq!(updated.expect("update"), 1);
}

/// Sets only `updated_at` of a user, as a last writer with a clock at `at` would have.
fn set_updated_at(connection: &mut DbConnection, id: uuid::Uuid, at: DateTime<Utc>) {
    let at = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let updated = match connection {
        DbConnection::Pg(pg) => {
            diesel::sql_query("UPDATE users SET updated_at = $1::timestamptz WHERE id = $2::text::uuid")
                .bind::<Text, _>(at)
                .bind::<Text, _>(id.to_string())
                .execute(pg)
        }
        DbConnection::Sqlite(sqlite) => diesel::sql_query("UPDATE users SET updated_at = ?1 WHERE id = ?2")
            .bind::<Text, _>(at)
            .bind::<Binary, _>(id.as_bytes().to_vec())
            .execute(sqlite),
    };
    assert_eq!(updated.expect("update"), 1);
}

conformance!(
    a_record_restore_racing_its_users_deletion_is_refused,
    restore_racing_deletion
);

/// A record deleted on its own is restored while a unit of work deletes its user: the restore
/// waits for the deletion and refuses, so no live record is left under a deleted user.
fn restore_racing_deletion(database: &TestDb) {
    let store = store(database);
    let ann = store.users().create(new_user("ann@example.com", "Ann")).expect("ann");
    let record = store
        .attendance()
        .check_in(CheckIn {
            user_id: ann.id,
            at: domain::time::now() - TimeDelta::hours(1),
        })
        .expect("check in");
    store
        .attendance()
        .soft_delete(record.id)
        .expect("delete the record alone");
    let deleting = Barrier::new(2);
    let (deleted, restored) = std::thread::scope(|scope| {
        let deletion = scope.spawn(|| {
            store.transact(&AuditContext::unattributed(), |repositories| {
                let deleted = repositories.users().soft_delete(ann.id)?;
                deleting.wait();
                // The restore runs now, before this transaction commits.
                std::thread::sleep(Duration::from_millis(300));
                Ok::<_, RepoError>(deleted)
            })
        });
        let restore = scope.spawn(|| {
            deleting.wait();
            store.attendance().restore(record.id)
        });
        (deletion.join().expect("no panic"), restore.join().expect("no panic"))
    });
    assert!(deleted.is_ok(), "{deleted:?}");
    assert!(
        matches!(&restored, Err(RepoError::Conflict { constraint, .. }) if constraint == "users.deleted_at"),
        "{restored:?}"
    );
    assert!(store.attendance().get(record.id, Scope::OnlyDeleted).is_ok());
    let mut connection = database.connect();
    assert_eq!(count_live_attendance_of_deleted_users(&mut connection), 0);
}

/// PostgreSQL only (SQLite runs one write transaction at a time, so the two cannot interleave):
/// a deadlock is a `Conflict` to retry, not `Internal`; a read-only database is `Unavailable`.
#[test]
fn deadlocks_and_read_only_databases_get_typed_errors_on_postgres() {
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let store = store(&database);
    let first = store
        .users()
        .create(new_user("first@example.com", "First"))
        .expect("first");
    let second = store
        .users()
        .create(new_user("second@example.com", "Second"))
        .expect("second");
    let halfway = Barrier::new(2);
    let outcomes: Vec<Result<(), RepoError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = [(first.id, second.id), (second.id, first.id)]
            .into_iter()
            .map(|(one, other)| {
                let (store, halfway) = (&store, &halfway);
                scope.spawn(move || {
                    store.transact(&AuditContext::unattributed(), |repositories| {
                        repositories.users().set_active(one, false)?;
                        halfway.wait();
                        repositories.users().set_active(other, false)?;
                        Ok(())
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("no panic"))
            .collect()
    });
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|outcome| matches!(outcome, Err(RepoError::Conflict { constraint, .. }) if constraint == "deadlock")),
        "{outcomes:?}"
    );

    let name = database.postgres_name().expect("a PostgreSQL database");
    let mut admin = TestDb::postgres_admin().expect("the server");
    // An identifier cannot be bound; the name is generated as test_<hex>.
    assert!(
        name.chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_')
    );
    diesel::connection::SimpleConnection::batch_execute(
        &mut admin,
        &format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"),
    )
    .expect("make the database read-only");
    let read_only = DieselStore::new(Arc::new(database.database()));
    let refused = read_only.users().create(new_user("third@example.com", "Third"));
    assert!(
        matches!(&refused, Err(RepoError::Unavailable(message)) if message.contains("read-only")),
        "{refused:?}"
    );
    assert!(read_only.users().get(first.id, Scope::Live).is_ok(), "reads still work");
}

fn count_live_attendance_of_deleted_users(connection: &mut DbConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS count FROM attendance JOIN users ON users.id = attendance.user_id
         WHERE attendance.deleted_at IS NULL AND users.deleted_at IS NOT NULL",
    )
    .get_result::<Count>(connection)
    .expect("count")
    .count
}

conformance!(instants_outside_the_storable_range_are_refused_alike, storable_range);

fn storable_range(database: &TestDb) {
    let store = store(database);
    let ann = store.users().create(new_user("ann@example.com", "Ann")).expect("ann");
    store.users().soft_delete(ann.id).expect("delete");
    let year_10000 = chrono::NaiveDate::from_ymd_opt(10_000, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .expect("a valid instant")
        .and_utc();
    for cutoff in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC, year_10000] {
        let purged = store.users().purge_deleted_before(cutoff);
        assert!(
            matches!(&purged, Err(RepoError::Validation { field, .. }) if field == "cutoff"),
            "{cutoff:?}: {purged:?}"
        );
    }
    assert!(store.users().get(ann.id, Scope::OnlyDeleted).is_ok(), "nothing purged");
    let end_of_9999 = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
        .expect("valid")
        .to_utc();
    assert_eq!(store.users().purge_deleted_before(end_of_9999), Ok(1));

    // A leap second: what the write returns is what a read returns.
    let bob = store.users().create(new_user("bob@example.com", "Bob")).expect("bob");
    let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
        .and_then(|day| day.and_hms_micro_opt(23, 59, 59, 1_500_000))
        .expect("a leap second")
        .and_utc();
    let written = store
        .attendance()
        .check_in(CheckIn {
            user_id: bob.id,
            at: leap,
        })
        .expect("check in");
    let read = store.attendance().get(written.id, Scope::Live).expect("read");
    assert_eq!(read, written);
    let out = store
        .attendance()
        .check_out(CheckOut {
            user_id: bob.id,
            at: leap + TimeDelta::hours(1),
        })
        .expect("check out");
    assert_eq!(store.attendance().get(out.id, Scope::Live).expect("read"), out);
}

conformance!(searches_are_bounded_and_find_every_substring, unicode_search);

fn unicode_search(database: &TestDb) {
    let store = store(database);
    let names = [
        "ΟΔΥΣΣΕΥΣ Papadopoulos",
        "İlker Yılmaz",
        "Øyvind Ærø",
        "Ирина Шевченко",
        "Zoë O'Brien_50%",
    ];
    for (index, name) in names.iter().enumerate() {
        store
            .users()
            .create(new_user(&format!("person{index}@example.com"), name))
            .expect("user");
    }
    let folds_unicode = database_folds_unicode(database);
    let found = |search: &str| -> Vec<String> {
        store
            .users()
            .list(
                &UserFilter {
                    scope: Scope::Live,
                    search: Some(search.to_owned()),
                },
                PageRequest::new(1, 100).expect("valid"),
            )
            .unwrap_or_else(|error| panic!("search {search:?}: {error:?}"))
            .items
            .into_iter()
            .map(|user| user.full_name.as_str().to_owned())
            .collect()
    };
    let mut searches = 0;
    for name in names {
        let characters: Vec<char> = name.chars().collect();
        for start in 0..characters.len() {
            for end in start + 1..=characters.len().min(start + 6) {
                let substring: String = characters[start..end].iter().collect();
                if substring.trim().is_empty() {
                    continue;
                }
                let mut variants = vec![substring.clone()];
                if folds_unicode || substring.is_ascii() {
                    variants.push(database::sql_types::fold_case(&substring));
                    variants.push(per_character_upper(&substring));
                }
                for variant in variants {
                    searches += 1;
                    assert!(
                        found(&variant).iter().any(|found| found == name),
                        "{name:?} not found by {variant:?} ({:?})",
                        database.backend()
                    );
                }
            }
        }
    }
    assert!(searches > 500, "{searches}");
    assert_eq!(found("ΟΔΥΣΣΕΥΣ"), ["ΟΔΥΣΣΕΥΣ Papadopoulos"]);
    assert_eq!(found("İlker"), ["İlker Yılmaz"]);
    if folds_unicode {
        assert_eq!(found("ilker"), ["İlker Yılmaz"]);
        assert_eq!(found("οδυσσευσ"), ["ΟΔΥΣΣΕΥΣ Papadopoulos"]);
    }
    assert!(found("50%_").is_empty(), "% and _ are literal");

    let longest = "%".repeat(MAX_SEARCH_CHARS);
    assert_eq!(found(&longest), Vec::<String>::new());
    for too_long in [
        "x".repeat(MAX_SEARCH_CHARS + 1),
        "%".repeat(30_000),
        "ab".repeat(30_000),
    ] {
        let refused = store.users().list(
            &UserFilter {
                scope: Scope::Live,
                search: Some(too_long),
            },
            PageRequest::new(1, 10).expect("valid"),
        );
        assert!(
            matches!(&refused, Err(RepoError::Validation { field, .. }) if field == "search"),
            "{refused:?}"
        );
    }
}

/// Upper-cases each character that has a one-character upper case folding back to it.
fn per_character_upper(text: &str) -> String {
    text.chars()
        .map(|character| {
            let mut upper = character.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(single), None)
                    if database::sql_types::fold_case(&single.to_string())
                        == database::sql_types::fold_case(&character.to_string()) =>
                {
                    single
                }
                _ => character,
            }
        })
        .collect()
}

/// PostgreSQL's `lower` folds only ASCII under a `C` or `POSIX` `LC_CTYPE`; SQLite's (ours)
/// always folds Unicode.
fn database_folds_unicode(database: &TestDb) -> bool {
    #[derive(QueryableByName)]
    struct Ctype {
        #[diesel(sql_type = Text)]
        ctype: String,
    }
    let mut connection = database.connect();
    match &mut connection {
        DbConnection::Pg(pg) => {
            let ctype =
                diesel::sql_query("SELECT datctype AS ctype FROM pg_database WHERE datname = current_database()")
                    .get_result::<Ctype>(pg)
                    .expect("ctype")
                    .ctype;
            !matches!(ctype.as_str(), "C" | "POSIX")
        }
        DbConnection::Sqlite(_) => true,
    }
}

#[test]
fn a_full_sqlite_database_is_storage_full_and_keeps_its_data() {
    let database = TestDb::sqlite_file();
    let mut config = database.config();
    // One connection, so the page limit set below applies to every call.
    config.pool.max_size = 1;
    config.pool.min_idle = 0;
    let pool = database::Database::connect(config).expect("pool");
    pool.migrate().expect("migrate");
    let store = DieselStore::new(Arc::new(pool));
    store
        .users()
        .create(new_user("first@example.com", "First"))
        .expect("first");
    {
        let mut connection = store.database().get().expect("connection");
        // SQLite's page limit gives the error a full disk gives: SQLITE_FULL.
        limit_pages(&mut connection);
    }
    let long_name = "N".repeat(200);
    let mut created = 1;
    let error = (0..5_000)
        .find_map(|index| {
            match store
                .users()
                .create(new_user(&format!("filler{index}@example.com"), &long_name))
            {
                Ok(_) => {
                    created += 1;
                    None
                }
                Err(error) => Some(error),
            }
        })
        .expect("the database fills up");
    assert!(
        matches!(&error, RepoError::StorageFull(message) if message.contains("full")),
        "{error:?}"
    );
    let mut connection = store.database().get().expect("connection");
    assert_eq!(count_rows(&mut connection, "users"), created);
    drop(connection);

    // A unit of work that fills the database rolls back whole and says why.
    let filled: Result<(), RepoError> = store.transact(&AuditContext::unattributed(), |repositories| {
        for index in 0..5_000 {
            repositories
                .users()
                .create(new_user(&format!("unit{index}@example.com"), &long_name))?;
        }
        Ok(())
    });
    assert!(matches!(filled, Err(RepoError::StorageFull(_))), "{filled:?}");
    let mut connection = store.database().get().expect("connection");
    assert_eq!(
        count_rows(&mut connection, "users"),
        created,
        "nothing of the unit of work stays"
    );
}

/// `PRAGMA max_page_count = <page_count>` on this connection: no page can be added.
fn limit_pages(connection: &mut DbConnection) {
    #[derive(QueryableByName)]
    struct Pages {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        page_count: i64,
    }
    let pages = diesel::sql_query("PRAGMA page_count")
        .get_result::<Pages>(connection)
        .expect("page count")
        .page_count;
    // PRAGMA takes no bound parameter; the value is an integer read just above.
    diesel::connection::SimpleConnection::batch_execute(connection, &format!("PRAGMA max_page_count = {pages}"))
        .expect("limit the database to the pages it has");
}

conformance!(a_unit_of_work_costs_two_statements_per_call, statements_per_call);

/// Each repository call inside a unit of work runs in a savepoint: `SAVEPOINT` before it and
/// `RELEASE SAVEPOINT` after it, two statements (on PostgreSQL two round trips) on top of the
/// call's own, plus `BEGIN` and `COMMIT` once per unit of work.
fn statements_per_call(database: &TestDb) {
    let mut config = database.config();
    config.pool.max_size = 1;
    config.pool.min_idle = 0;
    // No checkout ping: count only what the unit of work sends.
    config.pool.test_on_check_out = false;
    let pool = database::Database::connect(config).expect("pool");
    pool.migrate().expect("migrate");
    let store = DieselStore::new(Arc::new(pool));
    let ann = store.users().create(new_user("ann@example.com", "Ann")).expect("ann");
    let statements = {
        let mut connection = store.database().get().expect("the pool's only connection");
        crate::support::count_queries(&mut connection)
    };
    let counted = || statements.load(std::sync::atomic::Ordering::SeqCst);

    let before = counted();
    store.users().get(ann.id, Scope::Live).expect("get");
    let outside = counted() - before;

    let before = counted();
    store
        .transact(&AuditContext::unattributed(), |repositories| {
            repositories.users().get(ann.id, Scope::Live)
        })
        .expect("one call");
    let one_call = counted() - before;

    let before = counted();
    store
        .transact(&AuditContext::unattributed(), |repositories| {
            repositories.users().get(ann.id, Scope::Live)?;
            repositories.users().get(ann.id, Scope::Live)?;
            repositories.users().get(ann.id, Scope::Live)
        })
        .expect("three calls");
    let three_calls = counted() - before;

    let _ = writeln!(
        std::io::stderr(),
        "unit of work ({:?}): a get alone {outside} statement(s); in a unit of work: 1 call {one_call}, 3 calls {three_calls}",
        database.backend()
    );
    assert_eq!(outside, 1);
    // BEGIN, SAVEPOINT, SELECT, RELEASE, COMMIT.
    assert_eq!(one_call, 5);
    // Each further call: SAVEPOINT, SELECT, RELEASE.
    assert_eq!(three_calls, 2 + 3 * 3);
}
