//! `AttendanceRepository` and the unit of work, on both backends: check-in and check-out rules,
//! concurrency, scopes, daily totals computed in SQL, joins in one query, transactions.

use domain::AuditContext;
use migrator::Migrate as _;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use domain::{CheckIn, CheckOut, Email, User, UserId};
use repo::{
    AttendanceRepository, PageRequest, RepoError, Repositories, Scope, TimeRange, Total, TotalMode, UnitOfWork,
    UserRepository,
};
use repo_diesel::repositories::{DieselAttendanceRepository, DieselStore, DieselUserRepository};
use test_fixtures::TestDb;

use crate::support::{conformance, count_queries, migrated, new_user as named_user};

fn new_user(email: &str) -> domain::NewUser {
    named_user(email, "Test User")
}

/// A migrated database behind a pool, and the store over it. (An in-memory database lives as
/// long as its pool.)
fn store(database: &TestDb) -> DieselStore {
    let pool = database.database();
    pool.migrate().expect("migrate");
    DieselStore::new(Arc::new(pool))
}

/// 09:00 UTC `days` days ago.
fn morning(days: i64) -> DateTime<Utc> {
    let today = domain::time::now()
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .expect("valid")
        .and_utc();
    today - TimeDelta::days(days)
}

/// Half an hour ago: a check-in time that is never in the future.
fn a_moment_ago() -> DateTime<Utc> {
    domain::time::now() - TimeDelta::minutes(30)
}

fn day_of(instant: DateTime<Utc>) -> NaiveDate {
    instant.date_naive()
}

conformance!(check_in_and_check_out_follow_the_rules, check_in_and_out);

fn check_in_and_out(database: &TestDb) {
    let store = store(database);
    let (users, attendance) = (store.users(), store.attendance());
    let ann = users.create(new_user("ann@example.com")).expect("user");
    let at = morning(1);

    let open = attendance.check_in(CheckIn { user_id: ann.id, at }).expect("check in");
    assert!(open.is_open() && open.check_in_time == at && open.user_id == ann.id);
    let second = attendance
        .check_in(CheckIn {
            user_id: ann.id,
            at: at + TimeDelta::hours(1),
        })
        .expect_err("second");
    assert!(
        matches!(&second, RepoError::Conflict { constraint, .. } if constraint == "uq_attendance_user_id"),
        "{second}"
    );

    let early = attendance
        .check_out(CheckOut {
            user_id: ann.id,
            at: at - TimeDelta::hours(1),
        })
        .expect_err("early");
    assert!(
        matches!(&early, RepoError::Validation { field, .. } if field == "check_out_time"),
        "{early}"
    );
    let same = attendance
        .check_out(CheckOut { user_id: ann.id, at })
        .expect_err("same instant");
    assert!(matches!(same, RepoError::Validation { .. }));

    let closed = attendance
        .check_out(CheckOut {
            user_id: ann.id,
            at: at + TimeDelta::hours(8),
        })
        .expect("check out");
    assert_eq!(closed.check_out_time, Some(at + TimeDelta::hours(8)));
    assert_eq!(attendance.get(open.id, Scope::Live).expect("get"), closed);
    assert!(matches!(
        attendance.check_out(CheckOut {
            user_id: ann.id,
            at: at + TimeDelta::hours(9)
        }),
        Err(RepoError::NotFound { .. })
    ));
    attendance
        .check_in(CheckIn {
            user_id: ann.id,
            at: a_moment_ago(),
        })
        .expect("a new day, a new record");

    for unknown in [UserId::new(), {
        let bob = users.create(new_user("bob@example.com")).expect("user");
        users.soft_delete(bob.id).expect("delete");
        bob.id
    }] {
        let error = attendance
            .check_in(CheckIn { user_id: unknown, at })
            .expect_err("no such live user");
        assert!(matches!(error, RepoError::NotFound { .. }), "{error}");
    }
}

conformance!(concurrent_check_ins_open_one_record, concurrent_check_ins);

fn concurrent_check_ins(database: &TestDb) {
    let store = store(database);
    let ann = store.users().create(new_user("ann@example.com")).expect("user");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                store.attendance().check_in(CheckIn {
                    user_id: ann.id,
                    at: a_moment_ago() + TimeDelta::seconds(n.try_into().expect("small")),
                })
            })
        })
        .collect();
    let outcomes: Vec<Result<_, RepoError>> = handles
        .into_iter()
        .map(|handle| handle.join().expect("thread"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    for outcome in outcomes.iter().filter_map(|outcome| outcome.as_ref().err()) {
        assert!(
            matches!(outcome, RepoError::Conflict { constraint, .. } if constraint == "uq_attendance_user_id"),
            "{outcome}"
        );
    }
}

conformance!(attendance_reads_scopes_and_totals, reads_and_totals);

#[expect(
    clippy::too_many_lines,
    reason = "one scenario over the same rows: reads, totals, then deletes and joins"
)]
fn reads_and_totals(database: &TestDb) {
    let store = store(database);
    let (users, attendance) = (store.users(), store.attendance());
    let ann = users.create(new_user("ann@example.com")).expect("user");
    let bob = users.create(new_user("bob@example.com")).expect("user");
    let mut records = Vec::new();
    for (days, hours, minutes) in [(3, 8, 0), (2, 7, 30), (1, 4, 15)] {
        let at = morning(days);
        attendance.check_in(CheckIn { user_id: ann.id, at }).expect("in");
        records.push(
            attendance
                .check_out(CheckOut {
                    user_id: ann.id,
                    at: at + TimeDelta::hours(hours) + TimeDelta::minutes(minutes),
                })
                .expect("out"),
        );
    }
    // Two records on one day add up.
    let evening = morning(1) + TimeDelta::hours(6);
    attendance
        .check_in(CheckIn {
            user_id: ann.id,
            at: evening,
        })
        .expect("in");
    attendance
        .check_out(CheckOut {
            user_id: ann.id,
            at: evening + TimeDelta::hours(1),
        })
        .expect("out");
    let open = attendance
        .check_in(CheckIn {
            user_id: ann.id,
            at: a_moment_ago(),
        })
        .expect("open today");
    attendance
        .check_in(CheckIn {
            user_id: bob.id,
            at: a_moment_ago(),
        })
        .expect("bob open");

    let range = TimeRange::new(morning(3) - TimeDelta::hours(1), morning(0) + TimeDelta::hours(12)).expect("range");
    assert_eq!(
        attendance
            .list_for_user(ann.id, range, Scope::Live)
            .expect("list")
            .len(),
        5
    );
    let totals = attendance.daily_totals(ann.id, range).expect("totals");
    let expected = vec![
        (day_of(morning(3)), 8 * 3600),
        (day_of(morning(2)), 7 * 3600 + 30 * 60),
        (day_of(morning(1)), 4 * 3600 + 15 * 60 + 3600),
    ];
    assert_eq!(
        totals
            .iter()
            .map(|total| (total.day, total.seconds))
            .collect::<Vec<_>>(),
        expected,
        "open records do not count"
    );

    let checked_in = attendance.currently_checked_in().expect("current");
    let mut who: Vec<UserId> = checked_in.iter().map(|item| item.user.id).collect();
    who.sort();
    let mut expected_who = vec![ann.id, bob.id];
    expected_who.sort();
    assert_eq!(who, expected_who);

    // Soft delete and restore of one record; a deleted record leaves totals and live lists.
    let deleted = attendance.soft_delete(records[0].id).expect("delete");
    assert!(deleted.deleted_at.is_some());
    assert!(matches!(
        attendance.get(records[0].id, Scope::Live),
        Err(RepoError::NotFound { .. })
    ));
    assert_eq!(
        attendance
            .list_for_user(ann.id, range, Scope::OnlyDeleted)
            .expect("deleted")
            .len(),
        1
    );
    assert_eq!(attendance.daily_totals(ann.id, range).expect("totals").len(), 2);
    attendance.restore(records[0].id).expect("restore");
    assert_eq!(attendance.daily_totals(ann.id, range).expect("totals").len(), 3);
    assert!(
        matches!(attendance.restore(records[0].id), Err(RepoError::NotFound { .. })),
        "not deleted"
    );

    // Rows deleted with their user come back only with the user; they never leak into joins.
    users.soft_delete(bob.id).expect("delete bob");
    let bobs = attendance
        .list_for_user(bob.id, range, Scope::OnlyDeleted)
        .expect("bob's")
        .remove(0);
    let error = attendance.restore(bobs.id).expect_err("deleted with the user");
    assert!(matches!(error, RepoError::Conflict { .. }), "{error}");
    assert!(
        attendance
            .currently_checked_in()
            .expect("current")
            .iter()
            .all(|item| item.user.id != bob.id)
    );
    let page = attendance
        .list_with_user(Scope::Live, PageRequest::new(1, 100).expect("valid"))
        .expect("page");
    assert!(
        page.items
            .iter()
            .all(|item| item.user.deleted_at.is_none() && item.attendance.deleted_at.is_none())
    );
    assert_eq!(page.total, Total::Exact(5), "ann's five records; bob's went with him");
    assert!(page.items.iter().any(|item| item.attendance.id == open.id));
}

conformance!(
    a_page_of_attendance_with_its_user_takes_one_query_and_its_total_one_more,
    attendance_with_user_query_count
);

fn attendance_with_user_query_count(database: &TestDb) {
    let mut connection = migrated(database);
    let queries = count_queries(&mut connection);
    let connection = RefCell::new(connection);
    let users = DieselUserRepository::new(&connection);
    let attendance = DieselAttendanceRepository::new(&connection);
    for n in 0..12 {
        let user = users.create(new_user(&format!("user{n}@example.com"))).expect("user");
        attendance
            .check_in(CheckIn {
                user_id: user.id,
                at: morning(1),
            })
            .expect("in");
    }
    // One query for the page with its users, and one more for an exact total when the page
    // does not show where the list ends.
    for (per_page, mode, expected_queries, expected_total) in [
        (3, TotalMode::Skip, 1, Total::NotCounted),
        (3, TotalMode::Exact, 2, Total::Exact(12)),
        (12, TotalMode::Exact, 1, Total::Exact(12)),
    ] {
        queries.store(0, Ordering::SeqCst);
        let page = attendance
            .list_with_user(
                Scope::Live,
                PageRequest::new(1, per_page).expect("valid").with_total(mode),
            )
            .expect("page");
        assert_eq!(
            queries.load(Ordering::SeqCst),
            expected_queries,
            "queries for a page of {per_page} with {mode:?}"
        );
        assert_eq!(
            (page.items.len(), page.total),
            (usize::try_from(per_page).expect("small"), expected_total)
        );
        assert!(page.items.iter().all(|item| item.attendance.user_id == item.user.id));
    }
}

conformance!(a_unit_of_work_commits_or_rolls_back_as_one, unit_of_work);

fn unit_of_work(database: &TestDb) {
    let store = store(database);
    // Commit: a user and a check-in, together.
    let mut created: Option<User> = None;
    store
        .transaction(&AuditContext::unattributed(), &mut |repositories: &dyn Repositories| {
            let user = repositories.users().create(new_user("ann@example.com"))?;
            repositories.attendance().check_in(CheckIn {
                user_id: user.id,
                at: a_moment_ago(),
            })?;
            created = Some(user);
            Ok(())
        })
        .expect("commit");
    let ann = created.expect("created");
    assert_eq!(store.attendance().currently_checked_in().expect("current").len(), 1);

    // Roll back: the first write is undone when a later step fails.
    let error = store
        .transaction(&AuditContext::unattributed(), &mut |repositories: &dyn Repositories| {
            repositories.users().create(new_user("bob@example.com"))?;
            repositories.users().soft_delete(ann.id)?; // a transaction of its own inside: a savepoint
            repositories.attendance().check_in(CheckIn {
                user_id: UserId::new(),
                at: a_moment_ago(),
            })?;
            Ok(())
        })
        .expect_err("the check-in of an unknown user fails");
    assert!(matches!(error, RepoError::NotFound { .. }), "{error}");
    assert!(
        store
            .users()
            .get_by_email(&Email::parse("bob@example.com").expect("valid"), Scope::WithDeleted)
            .is_err(),
        "rolled back"
    );
    assert!(
        store.users().get(ann.id, Scope::Live).is_ok(),
        "the soft delete was rolled back too"
    );
}

conformance!(attendance_edges_hold_on_both_backends, attendance_edges);

fn attendance_edges(database: &TestDb) {
    let store = store(database);
    let (users, attendance) = (store.users(), store.attendance());
    let ann = users.create(new_user("ann@example.com")).expect("user");

    // Times in the future or outside four-digit years are refused before the database.
    let future = domain::time::now() + TimeDelta::hours(1);
    let year_10000 = NaiveDate::from_ymd_opt(10_000, 1, 1)
        .expect("valid")
        .and_hms_opt(0, 0, 0)
        .expect("valid")
        .and_utc();
    for at in [future, year_10000, DateTime::<Utc>::MIN_UTC] {
        let error = attendance
            .check_in(CheckIn { user_id: ann.id, at })
            .expect_err("refused");
        assert!(
            matches!(&error, RepoError::Validation { field, .. } if field == "at"),
            "{error}"
        );
    }
    assert!(TimeRange::new(DateTime::<Utc>::MIN_UTC, domain::time::now()).is_err());

    // A deactivated user cannot check in, whoever calls the repository.
    users.set_active(ann.id, false).expect("deactivate");
    let error = attendance
        .check_in(CheckIn {
            user_id: ann.id,
            at: a_moment_ago(),
        })
        .expect_err("inactive");
    assert!(
        matches!(&error, RepoError::Conflict { constraint, .. } if constraint == "users.is_active"),
        "{error}"
    );
    users.set_active(ann.id, true).expect("reactivate");

    // Durations are rounded from exact microseconds, the same on both backends.
    let base = morning(5);
    for (offset, micros, expected) in [(0, 1_499_600, 1), (1, 1_500_000, 2), (2, 3_600_000_400, 3_600)] {
        let at = base + TimeDelta::hours(offset);
        attendance.check_in(CheckIn { user_id: ann.id, at }).expect("in");
        attendance
            .check_out(CheckOut {
                user_id: ann.id,
                at: at + TimeDelta::microseconds(micros),
            })
            .expect("out");
        let range = TimeRange::new(at, at + TimeDelta::minutes(1)).expect("range");
        let totals = attendance.daily_totals(ann.id, range).expect("totals");
        assert_eq!(
            totals.iter().map(|total| total.seconds).collect::<Vec<_>>(),
            vec![expected],
            "{micros} µs"
        );
    }

    // A record deleted on its own, whose user was deleted later, stays deleted with the user.
    let at = morning(4);
    let record = attendance.check_in(CheckIn { user_id: ann.id, at }).expect("in");
    attendance
        .check_out(CheckOut {
            user_id: ann.id,
            at: at + TimeDelta::hours(1),
        })
        .expect("out");
    attendance.soft_delete(record.id).expect("delete the record");
    users.soft_delete(ann.id).expect("delete the user");
    let error = attendance.restore(record.id).expect_err("user deleted");
    assert!(
        matches!(&error, RepoError::Conflict { constraint, .. } if constraint == "users.deleted_at"),
        "{error}"
    );
    users.restore(ann.id).expect("restore the user");
    attendance.restore(record.id).expect("now the record can come back");

    // A page past the end still knows the total.
    let page = attendance
        .list_with_user(Scope::Live, PageRequest::new(50, 10).expect("valid"))
        .expect("page");
    assert!(page.items.is_empty());
    assert_eq!(page.total, Total::Exact(4));
}

conformance!(
    a_check_in_racing_the_users_deletion_does_not_outlive_it,
    check_in_races_deletion
);

fn check_in_races_deletion(database: &TestDb) {
    let store = store(database);
    let ann = store.users().create(new_user("ann@example.com")).expect("user");
    let deleting = Arc::new(Barrier::new(2));
    let deleter = {
        let (store, deleting) = (store.clone(), Arc::clone(&deleting));
        std::thread::spawn(move || {
            store.transaction(&AuditContext::unattributed(), &mut |repositories: &dyn Repositories| {
                repositories.users().soft_delete(ann.id)?;
                deleting.wait(); // the deletion is written, not committed
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
        })
    };
    deleting.wait();
    let outcome = store.attendance().check_in(CheckIn {
        user_id: ann.id,
        at: a_moment_ago(),
    });
    deleter.join().expect("thread").expect("deleted");
    assert!(matches!(outcome, Err(RepoError::NotFound { .. })), "{outcome:?}");
    let range = TimeRange::new(a_moment_ago() - TimeDelta::days(1), domain::time::now()).expect("range");
    assert!(
        store
            .attendance()
            .list_for_user(ann.id, range, Scope::Live)
            .expect("list")
            .is_empty()
    );
}
