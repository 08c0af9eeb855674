//! The audit log on both backends: every sensitive operation that commits has its entry, with
//! the unit of work's actor and correlation id and never a secret; one that rolls back has
//! none; entries cannot be changed or deleted, except by the retention purge, which is audited
//! itself.

use std::io::Write as _;
use std::sync::Arc;

use chrono::TimeDelta;
use diesel::connection::SimpleConnection as _;
use domain::audit::{REDACTED, actions};
use domain::{
    Actor, AuditContext, AuditEntity, AuditEntry, CorrelationId, PasswordHash, RegisterUser, UserChanges, UserId,
};
use migrator::Migrate as _;
use repo::{KeysetRequest, KeysetStart, RepoError, Repositories as _, UnitOfWorkExt as _};
use repo_diesel::Backend;
use repo_diesel::repositories::DieselStore;
use service::{AttendanceService, ServiceError};
use test_fixtures::TestDb;

use crate::support::{conformance, count_rows};

fn store(database: &TestDb) -> DieselStore {
    let pool = database.database();
    pool.migrate().expect("migrate");
    DieselStore::new(Arc::new(pool))
}

fn context() -> AuditContext {
    AuditContext::new(Actor::operator("ann").expect("valid"))
        .with_correlation_id(CorrelationId::parse("req-7").expect("valid"))
}

fn registration(email: &str) -> RegisterUser {
    RegisterUser {
        email: email.into(),
        full_name: "Audit Example".into(),
        password: "correct horse battery".into(),
    }
}

/// The whole trail of `entity`, read three entries per page.
fn trail(store: &DieselStore, entity: &AuditEntity) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    let mut start = KeysetStart::First;
    loop {
        let page = store
            .audit()
            .trail(entity, &KeysetRequest::new(start, 3).expect("valid"))
            .expect("a page of the trail");
        entries.extend(page.items);
        match page.next {
            Some(cursor) => start = KeysetStart::After(cursor),
            None => return entries,
        }
    }
}

fn actions_of(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.action.as_str()).collect()
}

/// A hash of `password` with parameters weaker than the current ones.
fn weak_hash(password: &str) -> PasswordHash {
    use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
    let hash = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8_192, 1, 1, None).expect("params"),
    )
    .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
    .expect("hash")
    .to_string();
    PasswordHash::parse(&hash).expect("a PHC string")
}

conformance!(every_sensitive_operation_commits_its_entry, sensitive_operations);

#[expect(clippy::too_many_lines, reason = "a user's whole life, operation by operation")]
fn sensitive_operations(database: &TestDb) {
    #[derive(diesel::QueryableByName)]
    struct Leaks {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        leaks: i64,
    }
    let store = store(database);
    let service = AttendanceService::new(store.clone());
    let context = context();
    let ann = service
        .register(&context, &registration("ann@example.com"))
        .expect("register");
    service
        .change_email(&context, ann.id, "ann.new@example.com")
        .expect("email change");
    service
        .change_password(&context, ann.id, "correct horse battery", "staple battery horse")
        .expect("password change");
    service.deactivate(&context, ann.id).expect("deactivate");
    service.reactivate(&context, ann.id).expect("reactivate");
    service.delete(&context, ann.id).expect("soft delete");
    service.restore(&context, ann.id).expect("restore");
    // A hash weaker than today's is replaced at the next sign-in.
    store
        .transact(&context, |repositories| {
            repositories.users().update(
                ann.id,
                UserChanges {
                    password_hash: Some(weak_hash("staple battery horse")),
                    ..UserChanges::default()
                },
            )
        })
        .expect("store a weak hash");
    let signed_in = service
        .authenticate(&context, "ann.new@example.com", "staple battery horse")
        .expect("sign in");
    assert!(!signed_in.password_hash.needs_rehash());
    service
        .authenticate(&context, "ann.new@example.com", "staple battery horse")
        .expect("sign in again: nothing left to re-hash");
    let entries = trail(&store, &AuditEntity::user(ann.id));
    assert_eq!(
        actions_of(&entries),
        [
            actions::USER_REGISTER,
            actions::USER_UPDATE,
            actions::USER_UPDATE,
            actions::USER_DEACTIVATE,
            actions::USER_REACTIVATE,
            actions::USER_SOFT_DELETE,
            actions::USER_RESTORE,
            actions::USER_UPDATE,
            actions::USER_PASSWORD_REHASH,
        ]
    );
    for entry in &entries {
        assert_eq!(entry.actor.as_str(), "operator:ann", "{entry:?}");
        assert_eq!(entry.correlation_id.as_deref(), Some("req-7"), "{entry:?}");
    }
    let json = |value: &Option<serde_json::Value>| value.clone().unwrap_or_default();
    assert_eq!(json(&entries[0].new_values)["email"], "ann@example.com");
    assert_eq!(json(&entries[0].new_values)["password"], REDACTED);
    assert_eq!(json(&entries[1].old_values)["email"], "ann@example.com");
    assert_eq!(json(&entries[1].new_values)["email"], "ann.new@example.com");
    assert_eq!(json(&entries[2].new_values)["password"], REDACTED);
    assert_eq!(json(&entries[3].old_values)["is_active"], true);
    assert_eq!(json(&entries[3].new_values)["is_active"], false);
    assert_eq!(json(&entries[5].old_values)["deleted_at"], serde_json::Value::Null);
    assert!(json(&entries[6].old_values)["deleted_at"].is_string());

    // The trail pages back as it pages forward, and a cursor of one trail is refused by another.
    let page = |start| {
        store
            .audit()
            .trail(
                &AuditEntity::user(ann.id),
                &KeysetRequest::new(start, 3).expect("valid"),
            )
            .expect("a page")
    };
    let first = page(KeysetStart::First);
    let second = page(KeysetStart::After(first.next.clone().expect("more")));
    let back = page(KeysetStart::Before(second.previous.clone().expect("a previous page")));
    assert_eq!(back.items, first.items);
    assert!(!back.has_previous() && back.has_next());
    let elsewhere = store.audit().trail(
        &AuditEntity::user(UserId::new()),
        &KeysetRequest::new(KeysetStart::After(first.next.expect("more")), 3).expect("valid"),
    );
    assert!(
        matches!(&elsewhere, Err(RepoError::Validation { field, .. }) if field == "cursor"),
        "{elsewhere:?}"
    );

    // Purges: the entry outlives the user, and holds no name or address.
    let bob = service
        .register(&context, &registration("bob@example.com"))
        .expect("bob");
    store.users().purge(bob.id).expect("purge");
    let bob_entries = trail(&store, &AuditEntity::user(bob.id));
    assert_eq!(actions_of(&bob_entries), [actions::USER_REGISTER, actions::USER_PURGE]);
    assert_eq!(
        bob_entries[1].actor.as_str(),
        "none",
        "a call outside a unit of work names no actor"
    );
    assert!(
        !bob_entries[1]
            .old_values
            .as_ref()
            .expect("old")
            .to_string()
            .contains("bob@")
    );
    let (carol, dave) = (
        service
            .register(&context, &registration("carol@example.com"))
            .expect("carol"),
        service
            .register(&context, &registration("dave@example.com"))
            .expect("dave"),
    );
    service.delete(&context, carol.id).expect("delete carol");
    service.delete(&context, dave.id).expect("delete dave");
    let purged = store
        .transact(&context, |repositories| {
            repositories
                .users()
                .purge_deleted_before(domain::time::now() + TimeDelta::seconds(1))
        })
        .expect("retention purge");
    assert_eq!(purged, 2);
    for user in [carol.id, dave.id] {
        let entries = trail(&store, &AuditEntity::user(user));
        assert_eq!(
            actions_of(&entries),
            [
                actions::USER_REGISTER,
                actions::USER_SOFT_DELETE,
                actions::USER_RETENTION_PURGE
            ]
        );
    }

    // No entry holds a password hash or a clear password, whatever its field.
    let mut connection = database.connect();
    let sql = match database.backend() {
        Backend::Postgres => {
            "SELECT count(*) AS leaks FROM audit_log WHERE concat(old_values::text, new_values::text) LIKE '%argon2%'
             OR concat(old_values::text, new_values::text) LIKE '%horse%'"
        }
        Backend::Sqlite => {
            "SELECT count(*) AS leaks FROM audit_log WHERE coalesce(old_values, '') || coalesce(new_values, '') LIKE '%argon2%'
             OR coalesce(old_values, '') || coalesce(new_values, '') LIKE '%horse%'"
        }
    };
    let leaks: Leaks = diesel::RunQueryDsl::get_result(diesel::sql_query(sql), &mut connection).expect("count");
    assert_eq!(leaks.leaks, 0);
    let _ = writeln!(
        std::io::stderr(),
        "audit ({:?}): one entry per operation: {} for Ann's life, 2 for a purged user, 3 for each user purged by retention",
        database.backend(),
        entries.len()
    );
}

conformance!(a_rolled_back_operation_leaves_no_entry, rolled_back);

fn rolled_back(database: &TestDb) {
    let store = store(database);
    let context = context();
    let entries = |store: &DieselStore| count_rows(&mut store.database().get().expect("connection"), "audit_log");
    let before = entries(&store);
    // The work fails after the change: both roll back.
    let refused: Result<(), RepoError> = store.transact(&context, |repositories| {
        repositories
            .users()
            .create(crate::support::new_user("rolled@example.com", "Rolled Back"))?;
        Err(RepoError::validation("test", "the work refuses after the change"))
    });
    assert!(refused.is_err());
    assert_eq!(entries(&store), before, "an operation that rolled back has no entry");

    // Inside a unit of work that commits, a call that fails (its savepoint rolled back) has no
    // entry, and the calls around it keep theirs.
    let (ann, conflict) = store
        .transact(&context, |repositories| {
            let ann = repositories
                .users()
                .create(crate::support::new_user("ann@example.com", "Ann"))?;
            let conflict = repositories
                .users()
                .create(crate::support::new_user("ann@example.com", "Another Ann"));
            repositories.users().set_active(ann.id, false)?;
            Ok::<_, RepoError>((ann, conflict))
        })
        .expect("commits");
    assert!(matches!(conflict, Err(RepoError::Conflict { .. })), "{conflict:?}");
    assert_eq!(
        actions_of(&trail(&store, &AuditEntity::user(ann.id))),
        [actions::USER_REGISTER, actions::USER_DEACTIVATE]
    );
    assert_eq!(entries(&store), before + 2);

    // A call outside a unit of work that fails (its own transaction rolled back) has no entry.
    let duplicate = store
        .users()
        .create(crate::support::new_user("ann@example.com", "Ann Again"));
    assert!(matches!(duplicate, Err(RepoError::Conflict { .. })), "{duplicate:?}");
    assert_eq!(entries(&store), before + 2);

    // A service operation refused by a rule writes nothing.
    let service = AttendanceService::new(store.clone());
    assert_eq!(
        service.change_password(&context, ann.id, "wrong horse battery", "new horse battery"),
        Err(ServiceError::WrongPassword)
    );
    assert_eq!(
        service.authenticate(&context, "nobody@example.com", "correct horse battery"),
        Err(ServiceError::InvalidCredentials)
    );
    assert_eq!(entries(&store), before + 2);
}

// The test reaches the owner through `TestDb::connect_as_owner` on PostgreSQL: the retention
// purge is the owner's, and the refusals below hold even for the owner.
conformance!(
    entries_cannot_be_changed_or_deleted_but_by_the_audited_purge,
    append_only
);

fn append_only(database: &TestDb) {
    let store = store(database);
    let context = context();
    let ann = AttendanceService::new(store.clone())
        .register(&context, &registration("ann@example.com"))
        .expect("register");
    let mut owner = database.connect_as_owner();
    // An entry two years old, as the retention purge will find it.
    let old_entry = match database.backend() {
        Backend::Postgres => {
            "INSERT INTO audit_log (id, occurred_at, actor, action, entity_type, entity_id)
             VALUES (gen_random_uuid(), now() - interval '730 days', 'none', 'test.old', 'user', 'old')"
        }
        Backend::Sqlite => {
            "INSERT INTO audit_log (id, occurred_at, actor, action, entity_type, entity_id)
             VALUES (randomblob(16), strftime('%Y-%m-%dT%H:%M:%f', 'now', '-730 days') || '000Z', 'none', 'test.old', 'user', 'old')"
        }
    };
    owner.batch_execute(old_entry).expect("an old entry");
    let mut refused = Vec::new();
    for statement in [
        "UPDATE audit_log SET actor = 'none'",
        "UPDATE audit_log SET old_values = NULL WHERE action = 'test.old'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE action = 'test.old'",
    ] {
        let error = owner.batch_execute(statement).expect_err(statement).to_string();
        assert!(error.contains("audit_log is append-only"), "{statement}: {error}");
        refused.push(statement);
    }
    if database.backend() == Backend::Postgres {
        let error = owner
            .batch_execute("TRUNCATE audit_log")
            .expect_err("truncate")
            .to_string();
        assert!(error.contains("audit_log is append-only"), "{error}");
        // The application's login may not run the purge at all.
        let error = security::purge_audit_log(
            &mut database.connect(),
            domain::time::now() - TimeDelta::days(400),
            &security::OperatorContext::operator("ann").expect("valid"),
        )
        .expect_err("the application role may not purge")
        .to_string();
        assert!(error.contains("permission denied for table audit_log"), "{error}");
    }
    let total = count_rows(&mut owner, "audit_log");

    // The retention purge removes exactly the old entry, and records itself.
    let report = security::purge_audit_log(
        &mut owner,
        domain::time::now() - TimeDelta::days(400),
        &security::OperatorContext::operator("ann")
            .expect("valid")
            .with_correlation_id("change-42")
            .expect("valid"),
    )
    .expect("the owner's retention purge");
    assert_eq!(report.purged, 1);
    assert_eq!(
        count_rows(&mut owner, "audit_log"),
        total,
        "one entry out, the purge's own in"
    );
    let purge_entries = trail(&store, &AuditEntity::new("audit_log", "audit_log").expect("valid"));
    assert_eq!(actions_of(&purge_entries), ["audit_log.retention_purge"]);
    assert_eq!(purge_entries[0].actor.as_str(), "operator:ann");
    assert_eq!(purge_entries[0].correlation_id.as_deref(), Some("change-42"));
    assert_eq!(
        purge_entries[0].new_values.as_ref().expect("values")["entries_purged"],
        1
    );
    assert_eq!(
        actions_of(&trail(&store, &AuditEntity::user(ann.id))),
        [actions::USER_REGISTER],
        "recent entries stay"
    );
    // The gate is closed again after the purge.
    let error = owner
        .batch_execute("DELETE FROM audit_log")
        .expect_err("closed")
        .to_string();
    assert!(error.contains("audit_log is append-only"), "{error}");
    // A cutoff less than a day ago is refused before anything runs.
    assert!(
        security::purge_audit_log(
            &mut owner,
            domain::time::now(),
            &security::OperatorContext::operator("ann").expect("valid")
        )
        .is_err()
    );
    let _ = writeln!(
        std::io::stderr(),
        "append-only ({:?}): {} statements of the owner refused (and TRUNCATE, on PostgreSQL)",
        database.backend(),
        refused.len()
    );
}
