//! Migrations: every `down.sql` restores exactly the schema before its `up.sql`, and the two
//! migration trees stay in lockstep.

use std::collections::BTreeSet;
use std::path::Path;

use repo_diesel::catalog::{Catalog, ConstraintKind};
use repo_diesel::{Backend, migrations};
use test_fixtures::ScratchDatabase;

use crate::support::{migrated, on_both_backends};

on_both_backends!(each_down_restores_the_schema_before_its_up, round_trip);

/// Applies the migrations one at a time; for each, reverts it and compares the catalog with the
/// one taken before it was applied, then re-applies it and compares with the one after.
fn round_trip(database: &ScratchDatabase) {
    let mut connection = database.connect();
    let all = migrations::migrations(database.backend()).expect("migrations list");
    assert!(all.len() >= 4, "expected the initial migrations, found {all:?}");
    for migration in &all {
        let before = Catalog::read(&mut connection).expect("catalog before");
        migrations::apply_migration(&mut connection, &migration.name).expect("up.sql applies");
        let after = Catalog::read(&mut connection).expect("catalog after");
        assert_ne!(before, after, "{} changes nothing", migration.name);

        migrations::revert_migration(&mut connection, &migration.name).expect("down.sql applies");
        let reverted = Catalog::read(&mut connection).expect("catalog reverted");
        assert_eq!(
            reverted, before,
            "down.sql of {} does not restore the schema before it",
            migration.name
        );

        migrations::apply_migration(&mut connection, &migration.name).expect("up.sql re-applies");
        let reapplied = Catalog::read(&mut connection).expect("catalog re-applied");
        assert_eq!(
            reapplied, after,
            "{} re-applied differs from its first application",
            migration.name
        );
    }
    let version = migrations::schema_version(&mut connection)
        .expect("version")
        .expect("a version");
    assert_eq!(Some(&version), all.last());
}

on_both_backends!(the_catalog_sees_every_kind_of_change, catalog_sensitivity);

/// The round trip is only as good as the catalog comparison: prove that it notices the kinds of
/// leftovers a careless `down.sql` leaves behind.
fn catalog_sensitivity(database: &ScratchDatabase) {
    use diesel::connection::SimpleConnection as _;
    use repo_diesel::DbConnection;

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

#[test]
fn migration_trees_have_the_same_migrations() {
    let names = |backend| -> Vec<String> {
        migrations::migrations(backend)
            .expect("list")
            .into_iter()
            .map(|migration| migration.name)
            .collect()
    };
    assert_eq!(names(Backend::Postgres), names(Backend::Sqlite));

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for tree in ["postgres", "sqlite"] {
        for entry in std::fs::read_dir(root.join(tree)).expect("migration tree") {
            let path = entry.expect("entry").path();
            for file in ["up.sql", "down.sql"] {
                let text = std::fs::read_to_string(path.join(file))
                    .unwrap_or_else(|_| panic!("{} has no {file}", path.display()));
                assert!(!text.trim().is_empty(), "{}/{file} is empty", path.display());
            }
        }
    }
}

/// Both trees build the same logical schema: tables, columns (name, order, nullability, default or
/// not, and the storage each backend uses for the same type), index definitions, constraints and
/// triggers. Needs PostgreSQL.
#[test]
fn migration_trees_build_the_same_logical_schema() {
    let Some(postgres) = ScratchDatabase::postgres() else {
        return;
    };
    let sqlite = ScratchDatabase::sqlite_file();
    let postgres = logical(
        &Catalog::read(&mut migrated(&postgres)).expect("catalog"),
        Backend::Postgres,
    );
    let sqlite = logical(
        &Catalog::read(&mut migrated(&sqlite)).expect("catalog"),
        Backend::Sqlite,
    );
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    assert!(
        only_postgres.is_empty() && only_sqlite.is_empty(),
        "the trees differ\nonly in postgres: {only_postgres:#?}\nonly in sqlite: {only_sqlite:#?}"
    );
}

/// One line per logical fact, with each backend's spelling mapped to a shared one.
fn logical(catalog: &Catalog, backend: Backend) -> BTreeSet<String> {
    let mut facts = BTreeSet::new();
    for table in &catalog.tables {
        facts.insert(format!("table {}", table.name));
        for (position, column) in table.columns.iter().enumerate() {
            let storage = match (backend, column.data_type.as_str()) {
                (Backend::Postgres, "uuid") | (Backend::Sqlite, "BLOB") => "uuid (BLOB on sqlite)",
                (Backend::Postgres, "boolean") | (Backend::Sqlite, "INTEGER") => "boolean (INTEGER on sqlite)",
                (Backend::Postgres, "timestamp with time zone") => "timestamp (TEXT on sqlite)",
                // SQLite keeps timestamps in TEXT columns, which the schema names *_at or *_time.
                (Backend::Sqlite, "TEXT") if column.name.ends_with("_at") || column.name.ends_with("_time") => {
                    "timestamp (TEXT on sqlite)"
                }
                (Backend::Postgres, "text") | (Backend::Sqlite, "TEXT") => "text",
                (_, other) => other,
            };
            facts.insert(format!(
                "column {}.{} #{position} {storage} nullable={} default={}",
                table.name,
                column.name,
                column.nullable,
                column.default.is_some()
            ));
        }
    }
    for index in &catalog.indexes {
        if index.primary {
            continue; // Named by the engine on SQLite; the primary key constraint is compared.
        }
        let predicate = index.predicate.as_deref().map(normalise_expression);
        facts.insert(format!(
            "index {} on {}({}) unique={} where {predicate:?}",
            index.name,
            index.table,
            index.columns.join(", "),
            index.unique
        ));
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
        facts.insert(format!(
            "constraint {} {:?} {} ({}) references {:?} on delete {:?}",
            constraint.table,
            constraint.kind,
            constraint.name,
            constraint.columns.join(", "),
            constraint.references,
            constraint.on_delete
        ));
    }
    for trigger in &catalog.triggers {
        facts.insert(format!("trigger {} on {}", trigger.name, trigger.table));
    }
    facts
}

/// `((a IS NULL) AND (b IS NULL))` and `a IS NULL AND b IS NULL` read the same.
fn normalise_expression(expression: &str) -> String {
    expression
        .replace(['(', ')'], " ")
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}
