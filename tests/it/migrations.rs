//! Migrations: every `down.sql` restores exactly the schema before its `up.sql`, and the two
//! migration trees stay in lockstep.

use std::collections::{BTreeMap, BTreeSet};

use database::{Backend, DbConnection};
use migrator::catalog::{Catalog, ConstraintKind};
use migrator::migrations::{self, MigrationSet, SqlMigration};
use test_fixtures::TestDb;

use crate::support::{migrated, on_both_backends};

on_both_backends!(each_down_restores_the_schema_before_its_up, round_trip);

/// Applies the migrations one at a time; for each, reverts it and compares the catalog with the
/// one taken before it was applied, then re-applies it and compares with the one after.
fn round_trip(database: &TestDb) {
    let mut connection = database.connect();
    let set = MigrationSet::embedded(database.backend());
    assert!(
        set.migrations().len() >= 4,
        "expected the initial migrations, found {set:?}"
    );
    for migration in set.migrations() {
        let name = migration.name();
        let before = Catalog::read(&mut connection).expect("catalog before");
        migrations::apply_migration(&mut connection, &set, name).expect("up.sql applies");
        let after = Catalog::read(&mut connection).expect("catalog after");
        assert_ne!(before, after, "{name} changes nothing");

        migrations::revert_migration(&mut connection, &set, name).expect("down.sql applies");
        let reverted = Catalog::read(&mut connection).expect("catalog reverted");
        assert_eq!(
            reverted, before,
            "down.sql of {name} does not restore the schema before it"
        );

        migrations::apply_migration(&mut connection, &set, name).expect("up.sql re-applies");
        let reapplied = Catalog::read(&mut connection).expect("catalog re-applied");
        assert_eq!(reapplied, after, "{name} re-applied differs from its first application");
    }
    let version = migrations::schema_version(&mut connection, &set)
        .expect("version")
        .expect("a version");
    assert_eq!(Some(version), set.head().map(SqlMigration::info));
}

on_both_backends!(the_catalog_sees_every_kind_of_change, catalog_sensitivity);

/// The round trip is only as good as the catalog comparison: prove that it notices the kinds of
/// leftovers a careless `down.sql` leaves behind.
fn catalog_sensitivity(database: &TestDb) {
    use diesel::connection::SimpleConnection as _;

    let mut connection = migrated(database);
    let baseline = Catalog::read(&mut connection).expect("catalog");
    let changes: &[(&str, &str)] = match &connection {
        DbConnection::Pg(_) => &[
            ("column", "ALTER TABLE users ADD COLUMN nickname text"),
            ("index", "CREATE INDEX idx_users_full_name ON users (full_name)"),
            ("comment", "COMMENT ON COLUMN users.email IS 'changed'"),
            ("default", "ALTER TABLE users ALTER COLUMN is_active SET DEFAULT false"),
            ("sequence", "CREATE SEQUENCE stray_sequence"),
            ("type", "CREATE TYPE stray_mood AS ENUM ('happy')"),
            ("check", "ALTER TABLE users DROP CONSTRAINT chk_users_full_name_trimmed"),
            (
                "check expression",
                "ALTER TABLE users DROP CONSTRAINT chk_users_full_name_length, ADD CONSTRAINT chk_users_full_name_length CHECK (length(full_name) <= 100)",
            ),
            (
                "not valid",
                "ALTER TABLE users DROP CONSTRAINT chk_users_full_name_length, ADD CONSTRAINT chk_users_full_name_length CHECK (length(full_name) >= 1 AND length(full_name) <= 200) NOT VALID",
            ),
            (
                "foreign key option",
                "ALTER TABLE attendance DROP CONSTRAINT fk_attendance_users, ADD CONSTRAINT fk_attendance_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE DEFERRABLE",
            ),
            (
                "disabled trigger",
                "ALTER TABLE users DISABLE TRIGGER trg_users_updated_at",
            ),
            ("row level security", "ALTER TABLE users ENABLE ROW LEVEL SECURITY"),
            ("policy", "CREATE POLICY own_rows ON users USING (true)"),
            (
                "collation",
                "ALTER TABLE users ALTER COLUMN full_name TYPE text COLLATE \"C\"",
            ),
            ("index comment", "COMMENT ON INDEX uq_users_email IS 'changed'"),
            (
                "constraint comment",
                "COMMENT ON CONSTRAINT chk_users_email_format ON users IS 'changed'",
            ),
            ("grant", "GRANT SELECT ON users TO PUBLIC"),
            ("rule", "CREATE RULE no_delete AS ON DELETE TO users DO INSTEAD NOTHING"),
            ("storage option", "ALTER TABLE users SET (fillfactor = 70)"),
            ("view", "CREATE VIEW live_users AS SELECT id FROM users"),
        ],
        DbConnection::Sqlite(_) => &[
            ("column", "ALTER TABLE users ADD COLUMN nickname TEXT"),
            ("index", "CREATE INDEX idx_users_full_name ON users (full_name)"),
            ("view", "CREATE VIEW stray_view AS SELECT 1"),
            (
                "trigger",
                "CREATE TRIGGER trg_users_stray AFTER INSERT ON users BEGIN SELECT 1; END",
            ),
        ],
    };
    for (kind, statement) in changes {
        connection
            .batch_execute(&format!("BEGIN; {statement}; "))
            .expect("change applies");
        let catalog = Catalog::read(&mut connection).expect("catalog");
        connection.batch_execute("ROLLBACK").expect("rollback");
        assert_ne!(
            catalog, baseline,
            "the catalog does not notice a {kind} change: {statement}"
        );
    }
}

/// Objects only PostgreSQL has, each by name (its facts, and those of everything on it, are
/// left out of the comparison): the trigram index of substring search
/// (`2026-12-01-000310_search_indexes_build`), and the audit log's triggers that refuse
/// `TRUNCATE` (SQLite has none) and stamp entries with the server's clock for writers other than
/// the owner (SQLite has no roles; `2026-12-07-000100_create_audit_log`).
const POSTGRES_ONLY: &[&str] = &[
    "index idx_users_lower_email_lower_full_name_trgm",
    "trigger trg_audit_log_no_truncate",
    // The server's clock for every writer but the owner: SQLite has no roles to tell them apart.
    "trigger trg_audit_log_stamp",
];

/// Objects only SQLite has, each by name: its index of substring search, an FTS5 table with the
/// key table that ties it to users and the triggers that keep it in step
/// (`2026-12-01-000300_search_indexes`, `…000310_search_indexes_build`).
const SQLITE_ONLY: &[&str] = &[
    "table users_search",
    "table users_search_keys",
    "index uq_users_search_keys_user_id",
    "trigger trg_users_search_delete",
    "trigger trg_users_search_insert",
    "trigger trg_users_search_update",
    // The audit log's retention purge opens this gate inside its own transaction; PostgreSQL
    // uses a transaction-local setting instead (`2026-12-07-000100_create_audit_log`).
    "table audit_log_purge_gate",
];

/// Both trees build the same logical schema after every migration, not only at the end: tables,
/// columns (name, order, nullability, default, and the storage each backend uses for the same
/// type), indexes with their predicates, constraints with their check expressions, except the
/// objects each backend has on its own, named one by one in [`POSTGRES_ONLY`] and
/// [`SQLITE_ONLY`]. Trigger bodies differ by nature (PL/pgSQL against SQLite's trigger
/// language); their behaviour is tested on both backends in
/// `schema::updated_at_is_maintained_by_the_database`.
#[test]
fn migration_trees_build_the_same_logical_schema() {
    use diesel::connection::SimpleConnection as _;

    let Some(postgres_database) = TestDb::postgres() else {
        return;
    };
    let sqlite_database = TestDb::sqlite_file();
    let mut postgres = postgres_database.connect();
    let mut sqlite = sqlite_database.connect();
    let postgres_set = MigrationSet::embedded(Backend::Postgres);
    let sqlite_set = MigrationSet::embedded(Backend::Sqlite);
    for migration in postgres_set.migrations() {
        let name = migration.name();
        migrations::apply_migration(&mut postgres, &postgres_set, name).expect("postgres migration");
        migrations::apply_migration(&mut sqlite, &sqlite_set, name).expect("sqlite migration");
        let (only_postgres, only_sqlite) = differences(&mut postgres, &mut sqlite);
        assert!(
            only_postgres.is_empty() && only_sqlite.is_empty(),
            "after {name} the trees differ\nonly in postgres: {only_postgres:#?}\nonly in sqlite: {only_sqlite:#?}"
        );
    }

    // Each object named as one backend's own exists there at head, and not on the other backend.
    let postgres_facts = logical(&Catalog::read(&mut postgres).expect("catalog"), Backend::Postgres);
    let sqlite_facts = logical(&Catalog::read(&mut sqlite).expect("catalog"), Backend::Sqlite);
    for (own, other, declared) in [
        (&postgres_facts, &sqlite_facts, POSTGRES_ONLY),
        (&sqlite_facts, &postgres_facts, SQLITE_ONLY),
    ] {
        for object in declared {
            assert!(
                own.values().flatten().any(|owner| owner == object),
                "{object} does not exist"
            );
            assert!(
                !other.values().flatten().any(|owner| owner == object),
                "{object} exists on both backends: it is not one backend's own"
            );
        }
    }

    // An object that only one backend has and that is not named still fails the comparison.
    sqlite
        .batch_execute(
            "CREATE INDEX idx_users_full_name ON users (full_name); \
             CREATE TABLE users_search_extra (id BLOB NOT NULL, CONSTRAINT pk_users_search_extra PRIMARY KEY (id)) STRICT",
        )
        .expect("undeclared objects");
    let (_, only_sqlite) = differences(&mut postgres, &mut sqlite);
    let reported = only_sqlite.join("\n");
    for expected in ["index idx_users_full_name", "table users_search_extra"] {
        assert!(reported.contains(expected), "{expected} not reported in:\n{reported}");
    }
}

/// The facts only PostgreSQL's and only SQLite's catalog holds, leaving out the objects each
/// backend has on its own.
fn differences(postgres: &mut DbConnection, sqlite: &mut DbConnection) -> (Vec<String>, Vec<String>) {
    let shared = |facts: BTreeMap<String, [String; 2]>, own: &[&str]| -> BTreeSet<String> {
        facts
            .into_iter()
            .filter(|(_, owners)| !owners.iter().any(|owner| own.contains(&owner.as_str())))
            .map(|(fact, _)| fact)
            .collect()
    };
    let postgres_facts = shared(
        logical(&Catalog::read(postgres).expect("catalog"), Backend::Postgres),
        POSTGRES_ONLY,
    );
    let sqlite_facts = shared(
        logical(&Catalog::read(sqlite).expect("catalog"), Backend::Sqlite),
        SQLITE_ONLY,
    );
    (
        postgres_facts.difference(&sqlite_facts).cloned().collect(),
        sqlite_facts.difference(&postgres_facts).cloned().collect(),
    )
}

/// One line per logical fact, with each backend's spelling mapped to a shared one, and the two
/// objects it belongs to: itself (`index <name>`, `trigger <name>`, or its table) and its table.
fn logical(catalog: &Catalog, backend: Backend) -> BTreeMap<String, [String; 2]> {
    let mut facts = BTreeMap::new();
    let table_object = |name: &str| format!("table {name}");
    for table in &catalog.tables {
        let owner = table_object(&table.name);
        facts.insert(owner.clone(), [owner.clone(), owner.clone()]);
        for (position, column) in table.columns.iter().enumerate() {
            let storage = match (backend, column.data_type.as_str()) {
                (Backend::Postgres, "uuid") | (Backend::Sqlite, "BLOB") => "uuid (BLOB on sqlite)",
                (Backend::Postgres, "boolean") | (Backend::Sqlite, "INTEGER") => "boolean (INTEGER on sqlite)",
                (Backend::Postgres, "timestamp with time zone") => "timestamp (TEXT on sqlite)",
                // SQLite keeps JSON in TEXT columns that json_valid checks, named *_values.
                (Backend::Postgres, "jsonb") => "json (TEXT on sqlite)",
                (Backend::Sqlite, "TEXT") if column.name.ends_with("_values") => "json (TEXT on sqlite)",
                // SQLite keeps timestamps in TEXT columns, which the schema names *_at or *_time.
                (Backend::Sqlite, "TEXT") if column.name.ends_with("_at") || column.name.ends_with("_time") => {
                    "timestamp (TEXT on sqlite)"
                }
                (Backend::Postgres, "text") | (Backend::Sqlite, "TEXT") => "text",
                (_, other) => other,
            };
            let default = column.default.as_deref().map(normalise_default);
            facts.insert(
                format!(
                    "column {}.{} #{position} {storage} nullable={} default={default:?}",
                    table.name, column.name, column.nullable
                ),
                [owner.clone(), owner.clone()],
            );
        }
    }
    for index in &catalog.indexes {
        if index.primary {
            continue; // Named by the engine on SQLite; the primary key constraint is compared.
        }
        let predicate = index.predicate.as_deref().map(normalise_expression);
        facts.insert(
            format!(
                "index {} on {}({}) unique={} where {predicate:?}",
                index.name,
                index.table,
                index.columns.join(", "),
                index.unique
            ),
            [format!("index {}", index.name), table_object(&index.table)],
        );
    }
    for constraint in &catalog.constraints {
        // SQLite stores UUIDs and timestamps in plain BLOB and TEXT columns; its extra checks
        // hold every writer to that storage. PostgreSQL's column types already do.
        if backend == Backend::Sqlite
            && constraint.kind == ConstraintKind::Check
            && constraint.name.ends_with("_storage_format")
        {
            continue;
        }
        let expression = match constraint.kind {
            ConstraintKind::Check => normalise_expression(constraint.definition.trim_start_matches("CHECK ")),
            _ => String::new(),
        };
        facts.insert(
            format!(
                "constraint {} {:?} {} ({}) references {:?} on delete {:?} {expression}",
                constraint.table,
                constraint.kind,
                constraint.name,
                constraint.columns.join(", "),
                constraint.references,
                constraint.on_delete
            ),
            [table_object(&constraint.table), table_object(&constraint.table)],
        );
    }
    for trigger in &catalog.triggers {
        facts.insert(
            format!("trigger {} on {}", trigger.name, trigger.table),
            [format!("trigger {}", trigger.name), table_object(&trigger.table)],
        );
    }
    facts
}

/// PostgreSQL prints expressions in its own spelling: `(a ~~ 'x'::text)` for `a LIKE 'x'`,
/// `TRIM(BOTH FROM a)` for `trim(a)`, with parentheses around every operation. Both spellings
/// are mapped to one: lower case, no casts, no parentheses.
fn normalise_expression(expression: &str) -> String {
    expression
        .replace("::timestamp with time zone", "")
        .replace("::text", "")
        .replace("!~~", " not like ")
        .replace("~~", " like ")
        .replace("TRIM(BOTH FROM ", "trim(")
        .replace(['(', ')'], " ")
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `true`/`1` and `now()`/SQLite's fixed-width UTC text of now read the same.
fn normalise_default(default: &str) -> String {
    match default {
        "true" => "1".to_owned(),
        "false" => "0".to_owned(),
        "now()" => "now".to_owned(),
        other if other.contains("strftime(") && other.contains("'now'") => "now".to_owned(),
        other => normalise_expression(other),
    }
}
