//! `UserRepository` conformance on both backends: every method, scope, error and pagination edge.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use chrono::{DateTime, TimeDelta, Utc};

use database::sql_types::{DbTimestamp, DbUuid};
use database::{Backend, DbConnection};
use diesel::prelude::*;
use domain::{Email, FullName, UserChanges, UserId};
use repo::{
    Cursor, KeysetRequest, KeysetStart, PageRequest, RepoError, Scope, TimeRange, Total, TotalMode, UserFilter,
    UserRepository,
};
use repo_diesel::models::{AttendanceRow, UserRow};
use repo_diesel::repositories::DieselUserRepository;
use repo_diesel::schema::{attendance, users};
use test_fixtures::TestDb;

use crate::support::{conformance, count_queries, migrated, new_user, password_hash as hash};

type Repository = DieselUserRepository<RefCell<DbConnection>>;

fn repository(database: &TestDb) -> Repository {
    DieselUserRepository::new(RefCell::new(migrated(database)))
}

/// Runs SQL on the repository's own connection (for arranging rows the API cannot make).
fn with_connection<R>(repository: &Repository, work: impl FnOnce(&mut DbConnection) -> R) -> R {
    use repo_diesel::repositories::Connections as _;
    let mut result = None;
    repository
        .connections()
        .with(|connection| {
            result = Some(work(connection));
            Ok(())
        })
        .expect("connection");
    result.expect("ran")
}

fn attendance_row(user: UserId, check_in: DateTime<Utc>) -> AttendanceRow {
    let now = DbTimestamp(domain::time::now());
    AttendanceRow {
        id: DbUuid(uuid::Uuid::now_v7()),
        user_id: DbUuid(*user.as_uuid()),
        check_in_time: DbTimestamp(check_in),
        check_out_time: Some(DbTimestamp(check_in + TimeDelta::hours(8))),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        deletion_batch_id: None,
    }
}

fn insert_attendance(repository: &Repository, row: &AttendanceRow) {
    with_connection(repository, |connection| {
        diesel::insert_into(attendance::table)
            .values(row)
            .execute(connection)
            .expect("insert attendance")
    });
}

fn live_attendance(repository: &Repository, user: UserId) -> usize {
    with_connection(repository, |connection| {
        attendance::table
            .filter(attendance::user_id.eq(DbUuid(*user.as_uuid())))
            .filter(attendance::deleted_at.is_null())
            .count()
            .get_result::<i64>(connection)
            .expect("count")
    })
    .try_into()
    .expect("small")
}

conformance!(users_are_created_read_and_changed, create_read_change);

fn create_read_change(database: &TestDb) {
    let users = repository(database);
    let ann = users
        .create(new_user("Ann@Example.com", "Ann Example"))
        .expect("create");
    assert_eq!(ann.email.as_str(), "ann@example.com");
    assert!(ann.is_active && ann.deleted_at.is_none());
    assert_eq!(
        users.get(ann.id, Scope::Live).expect("get"),
        ann,
        "what create returns is what is stored"
    );
    let by_email = users
        .get_by_email(&Email::parse("ANN@EXAMPLE.COM").expect("valid"), Scope::Live)
        .expect("by email");
    assert_eq!(by_email.id, ann.id);

    let duplicate = users
        .create(new_user("ann@example.com", "Another Ann"))
        .expect_err("duplicate");
    assert!(
        matches!(&duplicate, RepoError::Conflict { constraint, .. } if constraint == "uq_users_email"),
        "{duplicate}"
    );

    let renamed = users
        .update(
            ann.id,
            UserChanges {
                full_name: Some(FullName::parse("Ann B. Example").expect("valid")),
                ..UserChanges::default()
            },
        )
        .expect("update");
    assert_eq!(renamed.full_name.as_str(), "Ann B. Example");
    assert_eq!(renamed.email, ann.email, "unset fields stay");
    assert!(renamed.updated_at >= ann.updated_at && renamed.created_at == ann.created_at);

    assert!(!users.set_active(ann.id, false).expect("deactivate").is_active);
    assert!(users.set_active(ann.id, true).expect("reactivate").is_active);

    let unknown = UserId::new();
    for error in [
        users.get(unknown, Scope::Live).expect_err("unknown"),
        users.update(unknown, UserChanges::default()).expect_err("unknown"),
        users.set_active(unknown, false).expect_err("unknown"),
        users.soft_delete(unknown).expect_err("unknown"),
        users.restore(unknown).expect_err("unknown"),
        users.purge(unknown).expect_err("unknown"),
    ] {
        assert!(matches!(error, RepoError::NotFound { .. }), "{error}");
    }
    let bob = users.create(new_user("bob@example.com", "Bob")).expect("create");
    let taken = users
        .update(
            bob.id,
            UserChanges {
                email: Some(ann.email.clone()),
                ..UserChanges::default()
            },
        )
        .expect_err("email taken");
    assert!(
        matches!(&taken, RepoError::Conflict { constraint, .. } if constraint == "uq_users_email"),
        "{taken}"
    );
}

conformance!(
    a_soft_delete_cascades_and_a_restore_brings_back_exactly_its_batch,
    delete_and_restore
);

fn delete_and_restore(database: &TestDb) {
    let users = repository(database);
    let ann = users.create(new_user("ann@example.com", "Ann")).expect("create");
    let day = domain::time::now() - TimeDelta::days(3);
    let kept = [
        attendance_row(ann.id, day),
        attendance_row(ann.id, day + TimeDelta::days(1)),
    ];
    let deleted_earlier = AttendanceRow {
        deleted_at: Some(DbTimestamp(domain::time::now())),
        deletion_batch_id: Some(DbUuid(uuid::Uuid::now_v7())),
        ..attendance_row(ann.id, day - TimeDelta::days(1))
    };
    for row in kept.iter().chain([&deleted_earlier]) {
        insert_attendance(&users, row);
    }

    let deleted = users.soft_delete(ann.id).expect("soft delete");
    assert!(deleted.deleted_at.is_some());
    assert!(
        matches!(users.get(ann.id, Scope::Live), Err(RepoError::NotFound { .. })),
        "hidden by default"
    );
    assert_eq!(users.get(ann.id, Scope::OnlyDeleted).expect("only deleted").id, ann.id);
    assert_eq!(users.get(ann.id, Scope::WithDeleted).expect("with deleted").id, ann.id);
    assert_eq!(
        live_attendance(&users, ann.id),
        0,
        "the cascade took the live attendance"
    );
    assert!(
        matches!(users.soft_delete(ann.id), Err(RepoError::NotFound { .. })),
        "already deleted"
    );

    let restored = users.restore(ann.id).expect("restore");
    assert!(restored.deleted_at.is_none());
    assert_eq!(
        live_attendance(&users, ann.id),
        2,
        "exactly the rows the deletion took, not the earlier one"
    );
    assert!(
        matches!(users.restore(ann.id), Err(RepoError::NotFound { .. })),
        "not deleted"
    );
}

conformance!(restoring_a_user_whose_email_was_taken_is_a_conflict, restore_conflict);

fn restore_conflict(database: &TestDb) {
    let users = repository(database);
    let first = users.create(new_user("ann@example.com", "Ann")).expect("create");
    users.soft_delete(first.id).expect("delete");
    let second = users
        .create(new_user("ann@example.com", "Ann Again"))
        .expect("the address is free again");
    let error = users.restore(first.id).expect_err("conflict");
    assert!(
        matches!(&error, RepoError::Conflict { constraint, .. } if constraint == "uq_users_email"),
        "{error}"
    );
    assert!(
        users.get(first.id, Scope::OnlyDeleted).is_ok(),
        "still deleted: the refused restore changed nothing"
    );
    assert_eq!(
        users.get(second.id, Scope::Live).expect("live").full_name.as_str(),
        "Ann Again"
    );
}

conformance!(purges_delete_for_good_with_retention, purges);

fn purges(database: &TestDb) {
    let users = repository(database);
    let ann = users.create(new_user("ann@example.com", "Ann")).expect("create");
    insert_attendance(
        &users,
        &attendance_row(ann.id, domain::time::now() - TimeDelta::days(1)),
    );
    users.purge(ann.id).expect("purge");
    assert!(matches!(
        users.get(ann.id, Scope::WithDeleted),
        Err(RepoError::NotFound { .. })
    ));
    assert_eq!(live_attendance(&users, ann.id), 0);

    let old = users.create(new_user("old@example.com", "Old")).expect("create");
    let recent = users.create(new_user("recent@example.com", "Recent")).expect("create");
    let live = users.create(new_user("live@example.com", "Live")).expect("create");
    users.soft_delete(old.id).expect("delete");
    with_connection(&users, |connection| {
        diesel::update(users::table.filter(users::id.eq(DbUuid(*old.id.as_uuid()))))
            .set(users::deleted_at.eq(Some(DbTimestamp(domain::time::now() - TimeDelta::days(40)))))
            .execute(connection)
            .expect("backdate");
    });
    users.soft_delete(recent.id).expect("delete");
    let purged = users
        .purge_deleted_before(domain::time::now() - TimeDelta::days(30))
        .expect("retention");
    assert_eq!(purged, 1);
    assert!(users.get(recent.id, Scope::OnlyDeleted).is_ok());
    assert!(users.get(live.id, Scope::Live).is_ok());
}

conformance!(lists_apply_scopes_search_and_offset_pages, offset_lists);

fn offset_lists(database: &TestDb) {
    let users = repository(database);
    let mut created = Vec::new();
    for n in 0..25 {
        created.push(
            users
                .create(new_user(&format!("user{n:02}@example.com"), &format!("User {n:02}")))
                .expect("create"),
        );
    }
    let percent = users
        .create(new_user("percent@example.com", "100% Sure_Thing"))
        .expect("create");
    users.soft_delete(created[0].id).expect("delete");
    let all = |scope| UserFilter { scope, search: None };
    let page = |page, per_page| PageRequest::new(page, per_page).expect("valid page");

    assert_eq!(
        users.list(&all(Scope::Live), page(1, 10)).expect("list").total,
        Total::Exact(25)
    );
    assert_eq!(
        users.list(&all(Scope::WithDeleted), page(1, 10)).expect("list").total,
        Total::Exact(26)
    );
    let deleted = users.list(&all(Scope::OnlyDeleted), page(1, 10)).expect("list");
    assert_eq!((deleted.total, deleted.items[0].id), (Total::Exact(1), created[0].id));

    let third = users.list(&all(Scope::Live), page(3, 10)).expect("page 3");
    assert_eq!(
        (third.items.len(), third.total, third.total_pages(), third.has_next),
        (5, Total::Exact(25), Some(3), false)
    );
    let past_end = users.list(&all(Scope::Live), page(9, 10)).expect("past the end");
    assert_eq!((past_end.items.len(), past_end.total), (0, Total::Exact(25)));
    // Each kind of total, on a page that does not end the list and one past the end.
    let second = |mode| {
        users
            .list(&all(Scope::Live), page(2, 10).with_total(mode))
            .expect("page 2")
    };
    assert_eq!(
        (second(TotalMode::Skip).total, second(TotalMode::Skip).has_next),
        (Total::NotCounted, true)
    );
    assert_eq!(second(TotalMode::Exact).total, Total::Exact(25));
    let estimate = second(TotalMode::Estimate).total;
    match database.backend() {
        // The planner's estimate, never below the 21 rows the page proves.
        Backend::Postgres => assert!(matches!(estimate, Total::Estimate(n) if n >= 21), "{estimate:?}"),
        // SQLite keeps no estimates: it counts.
        Backend::Sqlite => assert_eq!(estimate, Total::Exact(25)),
    }
    let skipped_past_end = users
        .list(&all(Scope::Live), page(9, 10).with_total(TotalMode::Skip))
        .expect("past the end");
    assert_eq!(
        (skipped_past_end.total, skipped_past_end.has_next),
        (Total::NotCounted, false)
    );
    let ordered: Vec<UserId> = (1..=3)
        .flat_map(|n| users.list(&all(Scope::Live), page(n, 10)).expect("page").items)
        .map(|user| user.id)
        .collect();
    let expected: Vec<UserId> = created[1..].iter().chain([&percent]).map(|user| user.id).collect();
    assert_eq!(ordered, expected, "created order, every user once");

    let search = |text: &str| {
        let filter = UserFilter {
            scope: Scope::Live,
            search: Some(text.to_owned()),
        };
        users
            .list(&filter, page(1, 100))
            .expect("search")
            .items
            .into_iter()
            .map(|user| user.email.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(search("USER 1").len(), 10, "case-insensitive substring of the name");
    assert_eq!(search("user07@"), ["user07@example.com"]);
    assert_eq!(search("%"), ["percent@example.com"], "% is literal");
    assert_eq!(search("_"), ["percent@example.com"], "_ is literal");
    assert!(search("'; DROP TABLE users; --").is_empty());
    assert_eq!(
        users.list(&all(Scope::Live), page(1, 10)).expect("table intact").total,
        Total::Exact(25)
    );
}

/// Inserts `count` users that share one `created_at`, so only the id orders them.
fn users_sharing_a_timestamp(repository: &Repository, count: usize) -> Vec<UserId> {
    let at = DbTimestamp(domain::time::now());
    let mut ids = Vec::new();
    for n in 0..count {
        let id = UserId::new();
        let row = UserRow {
            id: DbUuid(*id.as_uuid()),
            email: format!("tie{n:02}@example.com"),
            full_name: format!("Tie {n:02}"),
            hashed_password: hash().as_phc().to_owned(),
            is_active: true,
            created_at: at,
            updated_at: at,
            deleted_at: None,
            deletion_batch_id: None,
        };
        with_connection(repository, |connection| {
            diesel::insert_into(users::table)
                .values(&row)
                .execute(connection)
                .expect("insert")
        });
        ids.push(id);
    }
    ids.sort();
    ids
}

conformance!(
    keyset_pages_walk_forward_and_back_without_skips_or_repeats,
    keyset_pages
);

fn keyset_pages(database: &TestDb) {
    let users = repository(database);
    let before = users.create(new_user("first@example.com", "First")).expect("create");
    let ties = users_sharing_a_timestamp(&users, 17);
    let after = users.create(new_user("last@example.com", "Last")).expect("create");
    let expected: Vec<UserId> = [before.id].into_iter().chain(ties).chain([after.id]).collect();
    let filter = UserFilter::default();

    let mut pages = Vec::new();
    let mut request = KeysetRequest::new(KeysetStart::First, 4).expect("valid");
    loop {
        let page = users.list_keyset(&filter, &request).expect("page");
        assert_eq!(page.has_previous(), !pages.is_empty());
        let ids: Vec<UserId> = page.items.iter().map(|user| user.id).collect();
        pages.push((ids, page.previous.clone()));
        match page.next {
            Some(next) => request = KeysetRequest::new(KeysetStart::After(next), 4).expect("valid"),
            None => break,
        }
    }
    let forward: Vec<UserId> = pages.iter().flat_map(|(ids, _)| ids.clone()).collect();
    assert_eq!(forward, expected, "every user once, in (created_at, id) order");
    assert_eq!(pages.len(), 5);

    // Back from the last page, page by page: the same pages in reverse.
    let mut previous = pages.last().and_then(|(_, previous)| previous.clone());
    for (ids, _) in pages.iter().rev().skip(1) {
        let cursor = previous.expect("a previous page");
        let page = users
            .list_keyset(
                &filter,
                &KeysetRequest::new(KeysetStart::Before(cursor), 4).expect("valid"),
            )
            .expect("page");
        let back: Vec<UserId> = page.items.iter().map(|user| user.id).collect();
        assert_eq!(&back, ids);
        assert!(page.has_next());
        previous = page.previous;
    }
    assert!(previous.is_none(), "the first page has no previous page");

    for garbage in [Cursor::from_text("garbage"), Cursor::from_text("")] {
        let error = users
            .list_keyset(
                &filter,
                &KeysetRequest::new(KeysetStart::After(garbage), 4).expect("valid"),
            )
            .expect_err("garbage");
        assert!(
            matches!(&error, RepoError::Validation { field, .. } if field == "cursor"),
            "{error}"
        );
    }
    let forward_cursor = users
        .list_keyset(&filter, &KeysetRequest::new(KeysetStart::First, 4).expect("valid"))
        .expect("page")
        .next;
    let wrong_way = KeysetRequest::new(KeysetStart::Before(forward_cursor.expect("next")), 4).expect("valid");
    assert!(matches!(
        users.list_keyset(&filter, &wrong_way),
        Err(RepoError::Validation { .. })
    ));
    let ids: BTreeSet<UserId> = forward.into_iter().collect();
    assert_eq!(ids.len(), 19);
}

conformance!(
    a_page_of_users_with_attendance_takes_two_queries_and_its_total_one_more,
    eager_loading
);

fn eager_loading(database: &TestDb) {
    let mut connection = migrated(database);
    let queries = count_queries(&mut connection);
    let users = DieselUserRepository::new(RefCell::new(connection));
    let day = domain::time::now() - TimeDelta::days(2);
    let mut created = Vec::new();
    for n in 0..20 {
        let user = users
            .create(new_user(&format!("user{n:02}@example.com"), &format!("User {n:02}")))
            .expect("create");
        insert_attendance(&users, &attendance_row(user.id, day));
        insert_attendance(&users, &attendance_row(user.id, day - TimeDelta::days(30)));
        created.push(user);
    }
    // A soft-deleted record must not leak into a live eager load.
    insert_attendance(
        &users,
        &AttendanceRow {
            deleted_at: Some(DbTimestamp(domain::time::now())),
            deletion_batch_id: Some(DbUuid(uuid::Uuid::now_v7())),
            ..attendance_row(created[0].id, day + TimeDelta::hours(1))
        },
    );
    let range = TimeRange::new(day - TimeDelta::days(1), day + TimeDelta::days(1)).expect("range");
    // Two queries whatever the page size (the page, then the attendance of all its users), and a
    // third for an exact total when the page does not show where the list ends.
    for (per_page, mode, expected_queries, expected_total) in [
        (5, TotalMode::Skip, 2, Total::NotCounted),
        (5, TotalMode::Exact, 3, Total::Exact(20)),
        (20, TotalMode::Skip, 2, Total::Exact(20)),
        (20, TotalMode::Exact, 2, Total::Exact(20)),
    ] {
        queries.store(0, Ordering::SeqCst);
        let page = users
            .list_with_attendance(
                &UserFilter::default(),
                PageRequest::new(1, per_page).expect("valid").with_total(mode),
                range,
            )
            .expect("eager load");
        assert_eq!(
            queries.load(Ordering::SeqCst),
            expected_queries,
            "queries for a page of {per_page} with {mode:?}"
        );
        assert_eq!(page.items.len(), usize::try_from(per_page).expect("small"));
        assert_eq!((page.total, page.has_next), (expected_total, per_page < 20));
        for item in &page.items {
            assert_eq!(
                item.attendance.len(),
                1,
                "only the record in range, never the deleted one"
            );
            assert!(
                item.attendance
                    .iter()
                    .all(|record| record.user_id == item.user.id && record.deleted_at.is_none())
            );
        }
    }
    let with_deleted = users
        .list_with_attendance(
            &UserFilter {
                scope: Scope::WithDeleted,
                search: None,
            },
            PageRequest::new(1, 1).expect("valid"),
            range,
        )
        .expect("eager load");
    assert_eq!(
        with_deleted.items[0].attendance.len(),
        2,
        "the scope reaches the eager load"
    );
}

conformance!(keyset_pages_respect_their_filter, keyset_filters);

fn keyset_filters(database: &TestDb) {
    let users = repository(database);
    let mut emilies = Vec::new();
    for n in 0..8 {
        let name = if n % 2 == 0 {
            format!("Émile Zola {n}")
        } else {
            format!("Other {n}")
        };
        let user = users
            .create(new_user(&format!("user{n}@example.com"), &name))
            .expect("create");
        if n % 2 == 0 {
            emilies.push(user.id);
        }
    }
    // Unicode case-insensitive search, the same on both backends.
    let emile = UserFilter {
        scope: Scope::Live,
        search: Some("ÉMILE".into()),
    };
    let first = users
        .list_keyset(&emile, &KeysetRequest::new(KeysetStart::First, 2).expect("valid"))
        .expect("page");
    let next = first.next.clone().expect("a second page");
    let second = users
        .list_keyset(
            &emile,
            &KeysetRequest::new(KeysetStart::After(next.clone()), 2).expect("valid"),
        )
        .expect("page");
    let ids: Vec<UserId> = first.items.iter().chain(&second.items).map(|user| user.id).collect();
    assert_eq!(ids, emilies, "four matches in two exact pages");
    assert!(!second.has_next(), "an exactly full last page says so");

    // A cursor belongs to its list: another filter or scope refuses it.
    for other in [
        UserFilter::default(),
        UserFilter {
            scope: Scope::WithDeleted,
            search: Some("émile".into()),
        },
    ] {
        let error = users
            .list_keyset(
                &other,
                &KeysetRequest::new(KeysetStart::After(next.clone()), 2).expect("valid"),
            )
            .expect_err("another list");
        assert!(
            matches!(&error, RepoError::Validation { field, .. } if field == "cursor"),
            "{error}"
        );
    }

    // Only-deleted scope pages too, and an empty list has no cursors.
    users.soft_delete(emilies[0]).expect("delete");
    let deleted = users
        .list_keyset(
            &UserFilter {
                scope: Scope::OnlyDeleted,
                search: None,
            },
            &KeysetRequest::new(KeysetStart::First, 5).expect("valid"),
        )
        .expect("page");
    assert_eq!(
        (deleted.items.len(), deleted.has_next(), deleted.has_previous()),
        (1, false, false)
    );
    let none = users
        .list_keyset(
            &UserFilter {
                scope: Scope::Live,
                search: Some("nobody".into()),
            },
            &KeysetRequest::new(KeysetStart::First, 5).expect("valid"),
        )
        .expect("page");
    assert!(none.items.is_empty() && none.next.is_none() && none.previous.is_none());

    // A NUL character cannot be searched for: a typed error, not a database error.
    let error = users
        .list(
            &UserFilter {
                scope: Scope::Live,
                search: Some("a\0b".into()),
            },
            PageRequest::new(1, 10).expect("valid"),
        )
        .expect_err("NUL");
    assert!(
        matches!(&error, RepoError::Validation { field, .. } if field == "search"),
        "{error}"
    );
}
