//! The migrated schema: naming convention, indexed foreign keys, comments, and an `updated_at`
//! that the database keeps current.

use database::DbConnection;
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use migrator::catalog::{Catalog, ConstraintKind};
use test_fixtures::TestDb;

use crate::support::{UserRow, insert_user, migrated, on_both_backends};

/// Every name that breaks `idx_<table>_<columns>` (`…_trgm` for a trigram index),
/// `uq_<table>_<columns>`, `pk_<table>`, `fk_<table>_<referenced table>`, `chk_<table>_<rule>` or
/// `trg_<table>_<purpose>`.
fn naming_violations(catalog: &Catalog) -> Vec<String> {
    let mut violations = Vec::new();
    let mut expect = |what: &str, name: &str, ok: bool, expected: String| {
        if !ok {
            violations.push(format!("{what} {name:?} should be {expected}"));
        }
    };
    let is_rule = |rule: &str| {
        !rule.is_empty()
            && rule
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    for index in &catalog.indexes {
        if index.primary {
            continue; // Checked through its constraint, pk_<table>.
        }
        // An expression key is named by its words (`lower(email)` is `lower_email`), and a trigram
        // index says so (`_trgm`): it serves other queries than a B-tree on the same keys.
        let columns: Vec<String> = index
            .columns
            .iter()
            .map(|column| {
                column
                    .split(|character: char| !character.is_alphanumeric() && character != '_')
                    .filter(|word| !word.is_empty())
                    .collect::<Vec<_>>()
                    .join("_")
            })
            .collect();
        let trigram = if index.definition.contains("gin_trgm_ops") {
            "_trgm"
        } else {
            ""
        };
        let expected = format!(
            "{}_{}_{}{trigram}",
            if index.unique { "uq" } else { "idx" },
            index.table,
            columns.join("_")
        );
        // Two indexes on the same columns for different soft-delete scopes name the scope.
        let scoped = match index
            .predicate
            .as_deref()
            .map(|predicate| predicate.to_lowercase().replace(['(', ')'], ""))
        {
            Some(predicate) if predicate == "deleted_at is null" => Some(format!("{expected}_live")),
            Some(predicate) if predicate == "deleted_at is not null" => Some(format!("{expected}_deleted")),
            _ => None,
        };
        let ok = index.name == expected || scoped.as_ref() == Some(&index.name);
        expect("index", &index.name, ok, expected.clone());
    }
    for constraint in &catalog.constraints {
        let table = &constraint.table;
        let name = &constraint.name;
        match constraint.kind {
            ConstraintKind::PrimaryKey => expect(
                "primary key",
                name,
                *name == format!("pk_{table}"),
                format!("pk_{table}"),
            ),
            ConstraintKind::ForeignKey => {
                let expected = format!("fk_{table}_{}", constraint.references.as_deref().unwrap_or("?"));
                expect("foreign key", name, *name == expected, expected.clone());
            }
            ConstraintKind::Unique => {
                let expected = format!("uq_{table}_{}", constraint.columns.join("_"));
                expect("unique constraint", name, *name == expected, expected.clone());
            }
            ConstraintKind::Check => {
                let ok = name.strip_prefix(&format!("chk_{table}_")).is_some_and(is_rule);
                expect("check", name, ok, format!("chk_{table}_<rule>"));
            }
            ConstraintKind::Other => expect("constraint", name, false, "one of the conventions".into()),
        }
    }
    for trigger in &catalog.triggers {
        let ok = trigger
            .name
            .strip_prefix(&format!("trg_{}_", trigger.table))
            .is_some_and(is_rule);
        expect("trigger", &trigger.name, ok, format!("trg_{}_<purpose>", trigger.table));
    }
    violations
}

/// Foreign keys with no full (non-partial) index whose leading columns are the key's columns:
/// each such key makes a cascade or join scan the whole child table.
fn unindexed_foreign_keys(catalog: &Catalog) -> Vec<String> {
    catalog
        .constraints
        .iter()
        .filter(|constraint| constraint.kind == ConstraintKind::ForeignKey)
        .filter(|key| {
            !catalog.indexes.iter().any(|index| {
                index.table == key.table && index.predicate.is_none() && index.columns.starts_with(&key.columns)
            })
        })
        .map(|key| format!("{} on {}({})", key.name, key.table, key.columns.join(", ")))
        .collect()
}

on_both_backends!(names_follow_the_convention, names_follow_the_convention);

fn names_follow_the_convention(database: &TestDb) {
    let mut connection = migrated(database);
    let catalog = Catalog::read(&mut connection).expect("catalog");
    assert!(
        catalog.indexes.len() >= 8 && catalog.constraints.len() >= 10,
        "schema not read: {catalog:#?}"
    );
    assert_eq!(naming_violations(&catalog), Vec::<String>::new());

    // The check itself must be able to fail.
    let (table_sql, index_sql) = match &connection {
        DbConnection::Pg(_) => (
            "CREATE TABLE badly_named (id uuid PRIMARY KEY, user_id uuid REFERENCES users (id), n int CHECK (n > 0))",
            "CREATE INDEX users_full_name_index ON users (full_name)",
        ),
        DbConnection::Sqlite(_) => (
            "CREATE TABLE badly_named (id BLOB PRIMARY KEY, user_id BLOB REFERENCES users (id), n INTEGER CHECK (n > 0))",
            "CREATE INDEX users_full_name_index ON users (full_name)",
        ),
    };
    connection.batch_execute(table_sql).expect("table");
    connection.batch_execute(index_sql).expect("index");
    let violations = naming_violations(&Catalog::read(&mut connection).expect("catalog"));
    let text = violations.join("\n");
    for expected in ["idx_users_full_name", "fk_badly_named_users", "chk_badly_named_<rule>"] {
        assert!(text.contains(expected), "{expected} not reported in:\n{text}");
    }
    if database.backend() == repo_diesel::Backend::Postgres {
        assert!(
            text.contains("pk_badly_named"),
            "unnamed primary key not reported in:\n{text}"
        );
        connection
            .batch_execute(
                "CREATE INDEX users_name_search ON users USING gin (lower(full_name) extensions.gin_trgm_ops)",
            )
            .expect("trigram index");
        let violations = naming_violations(&Catalog::read(&mut connection).expect("catalog")).join("\n");
        assert!(
            violations.contains("\"users_name_search\" should be idx_users_lower_full_name_trgm"),
            "badly named trigram index not reported in:\n{violations}"
        );
    }
}

on_both_backends!(every_foreign_key_has_an_index, every_foreign_key_has_an_index);

fn every_foreign_key_has_an_index(database: &TestDb) {
    let mut connection = migrated(database);
    let catalog = Catalog::read(&mut connection).expect("catalog");
    assert!(
        catalog
            .constraints
            .iter()
            .any(|constraint| constraint.kind == ConstraintKind::ForeignKey)
    );
    assert_eq!(unindexed_foreign_keys(&catalog), Vec::<String>::new());

    // The check itself must be able to fail.
    connection
        .batch_execute(match &connection {
            DbConnection::Pg(_) => {
                "CREATE TABLE notes (id uuid PRIMARY KEY, user_id uuid CONSTRAINT fk_notes_users REFERENCES users (id))"
            }
            DbConnection::Sqlite(_) => {
                "CREATE TABLE notes (id BLOB PRIMARY KEY, user_id BLOB CONSTRAINT fk_notes_users REFERENCES users (id))"
            }
        })
        .expect("table");
    // A partial index does not serve a cascade over all rows, however its WHERE is spelled.
    connection
        .batch_execute("CREATE INDEX idx_notes_user_id ON notes (user_id)\nWHERE user_id IS NOT NULL")
        .expect("partial index");
    let catalog = Catalog::read(&mut connection).expect("catalog");
    assert_eq!(
        unindexed_foreign_keys(&catalog),
        vec!["fk_notes_users on notes(user_id)".to_owned()]
    );
}

#[test]
fn every_postgres_table_and_column_has_a_comment() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let catalog = Catalog::read(&mut migrated(&database)).expect("catalog");
    assert!(!catalog.tables.is_empty());
    let mut missing = Vec::new();
    for table in &catalog.tables {
        if table.comment.as_deref().is_none_or(str::is_empty) {
            missing.push(table.name.clone());
        }
        for column in &table.columns {
            if column.comment.as_deref().is_none_or(str::is_empty) {
                missing.push(format!("{}.{}", table.name, column.name));
            }
        }
    }
    for routine in &catalog.routines {
        if routine.comment.is_none() {
            missing.push(format!("function {}", routine.name));
        }
    }
    assert_eq!(missing, Vec::<String>::new(), "objects without COMMENT ON");
}

#[derive(QueryableByName)]
struct Flags {
    #[diesel(sql_type = Bool)]
    advanced: bool,
    #[diesel(sql_type = Bool)]
    created_kept: bool,
}

on_both_backends!(updated_at_is_maintained_by_the_database, updated_at_is_maintained);

/// Any UPDATE that leaves `updated_at` alone gets the current time; an UPDATE that sets it keeps
/// its value; the value never falls before `created_at`.
fn updated_at_is_maintained(database: &TestDb) {
    let mut connection = migrated(database);
    insert_user(&mut connection, UserRow::new(1, "ann@example.com")).expect("insert");
    insert_user(&mut connection, UserRow::new(2, "bob@example.com")).expect("insert");
    let (backdate, rename, explicit, future, check) = match &connection {
        DbConnection::Pg(_) => (
            "UPDATE users SET created_at = '2020-01-01T00:00:00Z', updated_at = '2020-01-01T00:00:00Z'",
            "UPDATE users SET full_name = 'Ann Renamed' WHERE email = 'ann@example.com'",
            "UPDATE users SET full_name = 'Bob', updated_at = '2021-06-01T00:00:00Z' WHERE email = 'bob@example.com'",
            "UPDATE users SET created_at = '2999-01-01T00:00:00Z', updated_at = '2999-01-01T00:00:00Z', full_name = 'Bob'",
            "SELECT updated_at > '2020-06-01T00:00:00Z' AS advanced, created_at = '2020-01-01T00:00:00Z' AS created_kept FROM users WHERE email = $1",
        ),
        DbConnection::Sqlite(_) => (
            "UPDATE users SET created_at = '2020-01-01T00:00:00.000000Z', updated_at = '2020-01-01T00:00:00.000000Z'",
            "UPDATE users SET full_name = 'Ann Renamed' WHERE email = 'ann@example.com'",
            "UPDATE users SET full_name = 'Bob', updated_at = '2021-06-01T00:00:00.000000Z' WHERE email = 'bob@example.com'",
            "UPDATE users SET created_at = '2999-01-01T00:00:00.000000Z', updated_at = '2999-01-01T00:00:00.000000Z', full_name = 'Bob'",
            "SELECT updated_at > '2020-06-01T00:00:00.000000Z' AS advanced, created_at = '2020-01-01T00:00:00.000000Z' AS created_kept FROM users WHERE email = ?",
        ),
    };
    let flags = |connection: &mut DbConnection, email: &str| -> (bool, bool) {
        let flags: Flags = diesel::sql_query(check)
            .bind::<diesel::sql_types::Text, _>(email)
            .get_result(connection)
            .expect("flags");
        (flags.advanced, flags.created_kept)
    };

    connection.batch_execute(backdate).expect("backdate");
    assert_eq!(
        flags(&mut connection, "ann@example.com"),
        (false, true),
        "backdated row keeps the set value"
    );
    connection.batch_execute(rename).expect("rename");
    assert_eq!(
        flags(&mut connection, "ann@example.com"),
        (true, true),
        "a plain UPDATE moves updated_at to now"
    );
    connection.batch_execute(explicit).expect("explicit");
    assert_eq!(
        flags(&mut connection, "bob@example.com"),
        (true, true),
        "an explicit updated_at is kept"
    );

    // With created_at ahead of the database clock (an application host's skewed clock), the
    // trigger uses created_at rather than break chk_users_updated_after_created.
    connection.batch_execute(future).expect("future");
    connection
        .batch_execute("UPDATE users SET full_name = 'Bob Again' WHERE email = 'bob@example.com'")
        .expect("an UPDATE after a skewed created_at still succeeds");
}

on_both_backends!(rows_round_trip_through_the_schema_module, rows_round_trip);

/// `schema.rs` and the row structs match the migrated tables on both backends: every column is
/// written and read back unchanged, NULL and not, at microsecond precision, and timestamps sort
/// by time (on SQLite, as text).
fn rows_round_trip(database: &TestDb) {
    use chrono::TimeDelta;
    use database::sql_types::{DbTimestamp, DbUuid};
    use repo_diesel::models::{AttendanceRow, UserRow};
    use repo_diesel::schema::{attendance, users};

    let mut connection = migrated(database);
    let now = domain::time::now();
    let at = |offset: TimeDelta| DbTimestamp(now + offset);
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    let live = UserRow {
        id: DbUuid(uuid::Uuid::now_v7()),
        email: "ann@example.com".to_owned(),
        full_name: "Ann O'Neil".to_owned(),
        hashed_password: hash.to_owned(),
        is_active: true,
        created_at: at(TimeDelta::microseconds(1)),
        updated_at: at(TimeDelta::seconds(1)),
        deleted_at: None,
        deletion_batch_id: None,
    };
    let deleted = UserRow {
        id: DbUuid(uuid::Uuid::now_v7()),
        email: "bob@example.com".to_owned(),
        is_active: false,
        created_at: at(TimeDelta::zero()),
        updated_at: at(TimeDelta::zero()),
        deleted_at: Some(at(TimeDelta::hours(1))),
        deletion_batch_id: Some(DbUuid(uuid::Uuid::now_v7())),
        ..live.clone()
    };
    // One row per INSERT: diesel's multi-row VALUES is not available on the two-backend connection.
    for row in [&live, &deleted] {
        diesel::insert_into(users::table)
            .values(row)
            .execute(&mut connection)
            .expect("insert user");
    }
    let open = AttendanceRow {
        id: DbUuid(uuid::Uuid::now_v7()),
        user_id: live.id,
        check_in_time: at(TimeDelta::minutes(-90)),
        check_out_time: None,
        created_at: at(TimeDelta::zero()),
        updated_at: at(TimeDelta::zero()),
        deleted_at: None,
        deletion_batch_id: None,
    };
    let closed = AttendanceRow {
        id: DbUuid(uuid::Uuid::now_v7()),
        check_in_time: at(TimeDelta::days(-1)),
        check_out_time: Some(at(TimeDelta::days(-1) + TimeDelta::hours(8))),
        ..open.clone()
    };
    for row in [&open, &closed] {
        diesel::insert_into(attendance::table)
            .values(row)
            .execute(&mut connection)
            .expect("insert attendance");
    }

    let users_by_creation: Vec<UserRow> = users::table
        .select(UserRow::as_select())
        .order((users::created_at, users::id))
        .load(&mut connection)
        .expect("load users");
    assert_eq!(
        users_by_creation,
        vec![deleted, live],
        "a microsecond apart, in time order"
    );
    let by_check_in: Vec<AttendanceRow> = attendance::table
        .select(AttendanceRow::as_select())
        .order(attendance::check_in_time)
        .load(&mut connection)
        .expect("load attendance");
    assert_eq!(by_check_in, vec![closed, open]);
}
