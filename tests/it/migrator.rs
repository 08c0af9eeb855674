//! The start-up migration runner in each of its states and failures, on both backends: an empty
//! database, one behind, one at head, one with a schema but no history; a failing migration,
//! a dirty one, an edited one, a held lock, migration session timeouts, and many processes
//! starting at once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use database::config::MigrationSettings;
use database::{Backend, DbConnection};
use diesel::connection::{Connection as _, InstrumentationEvent, SimpleConnection as _};
use diesel::prelude::*;
use diesel::sql_types::Text;
use migrator::catalog::Catalog;
use migrator::migrations::{self, MigrationSet, SqlMigration};
use migrator::runner::LOCK_KEY;
use migrator::{Migrator, MigratorError};
use tempfile::TempDir;
use test_fixtures::TestDb;

use crate::support::on_both_backends;

fn embedded(database: &TestDb) -> Migrator {
    Migrator::embedded(database.backend(), MigrationSettings::default())
}

fn migration(name: &str, up: &str, down: &str) -> SqlMigration {
    SqlMigration::new(name.to_owned(), up.to_owned(), down.to_owned(), true).expect("valid name")
}

fn outside_transaction(name: &str, up: &str, down: &str) -> SqlMigration {
    SqlMigration::new(name.to_owned(), up.to_owned(), down.to_owned(), false).expect("valid name")
}

fn create_widgets() -> SqlMigration {
    migration(
        "2000-01-01-000001_create_widgets",
        "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
        "DROP TABLE widgets;",
    )
}

fn set(migrations: Vec<SqlMigration>) -> MigrationSet {
    MigrationSet::new(migrations).expect("a valid migration set")
}

fn runner(migrations: Vec<SqlMigration>) -> Migrator {
    Migrator::new(set(migrations), MigrationSettings::default())
}

/// Writes a migration set as diesel migration folders, for the runner processes.
fn write_set(migrations: &[SqlMigration]) -> TempDir {
    let directory = tempfile::tempdir().expect("temporary directory");
    for migration in migrations {
        let folder = directory.path().join(migration.name());
        std::fs::create_dir(&folder).expect("folder");
        std::fs::write(folder.join("up.sql"), migration.up_sql()).expect("up.sql");
        std::fs::write(folder.join("down.sql"), migration.down_sql()).expect("down.sql");
        if !migration.run_in_transaction() {
            std::fs::write(folder.join("metadata.toml"), "run_in_transaction = false\n").expect("metadata");
        }
    }
    directory
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

fn text(connection: &mut DbConnection, sql: &str) -> String {
    diesel::sql_query(sql).get_result::<Value>(connection).expect(sql).value
}

fn table_names(connection: &mut DbConnection) -> Vec<String> {
    Catalog::read(connection)
        .expect("catalog")
        .tables
        .into_iter()
        .map(|table| table.name)
        .collect()
}

on_both_backends!(an_empty_database_gets_the_schema_and_its_history, empty_database);

fn empty_database(database: &TestDb) {
    let mut connection = database.connect();
    let migrator = embedded(database);
    let before = migrator.status(&mut connection).expect("status");
    assert!(!before.has_history && !before.is_at_head());
    assert_eq!(before.pending.len(), migrator.set().migrations().len());

    let report = migrator.run(&mut connection).expect("run");
    assert!(!report.was_at_head);
    let names: Vec<&str> = report
        .applied
        .iter()
        .map(|applied| applied.migration.name.as_str())
        .collect();
    let expected: Vec<&str> = migrator.set().migrations().iter().map(SqlMigration::name).collect();
    assert_eq!(names, expected);
    assert_eq!(report.version, migrator.set().head().map(SqlMigration::info));

    let status = migrator.status(&mut connection).expect("status");
    assert!(status.is_at_head(), "{status:?}");
    assert_eq!(
        migrations::applied_versions(&mut connection)
            .expect("diesel history")
            .len(),
        expected.len()
    );
    let with_duration = text(
        &mut connection,
        "SELECT CAST(count(duration_ms) AS TEXT) AS value FROM __migration_state WHERE state = 'applied'",
    );
    assert_eq!(
        with_duration,
        expected.len().to_string(),
        "every migration's duration is recorded"
    );
}

on_both_backends!(a_database_behind_gets_only_the_pending_migrations, behind_database);

fn behind_database(database: &TestDb) {
    let mut connection = database.connect();
    let full = embedded(database);
    let first_two = Migrator::new(set(full.set().migrations()[..2].to_vec()), MigrationSettings::default());
    assert_eq!(first_two.run(&mut connection).expect("first two").applied.len(), 2);

    let report = full.run(&mut connection).expect("the rest");
    let names: Vec<String> = report
        .applied
        .iter()
        .map(|applied| applied.migration.name.clone())
        .collect();
    let expected: Vec<String> = full.set().migrations()[2..]
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    assert_eq!(names, expected);
    assert!(full.status(&mut connection).expect("status").is_at_head());
}

on_both_backends!(a_database_at_head_costs_one_query, at_head);

fn at_head(database: &TestDb) {
    let mut connection = database.connect();
    let migrator = embedded(database);
    migrator.run(&mut connection).expect("first run");

    let queries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&queries);
    connection.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let report = migrator.run(&mut connection).expect("second run");
    assert!(report.was_at_head && report.applied.is_empty(), "{report:?}");
    assert_eq!(queries.load(Ordering::SeqCst), 1, "round trips at head");
}

on_both_backends!(
    migrations_applied_by_the_diesel_cli_get_their_checksums_recorded,
    applied_by_cli
);

fn applied_by_cli(database: &TestDb) {
    let mut connection = database.connect();
    let migrator = embedded(database);
    for migration in migrator.set().migrations() {
        migrations::apply_migration(&mut connection, migrator.set(), migration.name()).expect("as diesel does");
    }
    let status = migrator.status(&mut connection).expect("status");
    assert_eq!(status.unrecorded.len(), migrator.set().migrations().len());
    assert!(status.pending.is_empty());

    let report = migrator.run(&mut connection).expect("run");
    assert!(report.applied.is_empty());
    assert_eq!(report.checksums_recorded.len(), migrator.set().migrations().len());
    assert!(migrator.run(&mut connection).expect("again").was_at_head);
}

on_both_backends!(a_schema_without_history_is_refused_until_a_verified_baseline, baseline);

fn baseline(database: &TestDb) {
    let mut connection = database.connect();
    let migrator = embedded(database);
    // Built by hand (or by an older tool): the schema, no history.
    for migration in migrator.set().migrations() {
        connection.batch_execute(migration.up_sql()).expect("up.sql");
    }
    let error = migrator.run(&mut connection).expect_err("refused");
    assert!(
        matches!(&error, MigratorError::NeedsBaseline { tables } if tables.contains(&"users".to_owned())),
        "{error}"
    );
    assert!(error.to_string().contains("dbctl baseline"), "{error}");

    // A schema that differs from what the migrations create is not baselined.
    connection
        .batch_execute("DROP INDEX idx_users_deleted_at")
        .expect("drift");
    let error = migrator.baseline(&mut connection).expect_err("mismatch");
    assert!(
        matches!(&error, MigratorError::BaselineMismatch { differences } if differences.iter().any(|line| line.contains("idx_users_deleted_at"))),
        "{error}"
    );
    assert!(
        migrator.status(&mut connection).expect("status").applied.is_empty(),
        "nothing recorded"
    );
    assert!(
        !Catalog::read(&mut connection)
            .expect("catalog")
            .objects
            .iter()
            .any(|object| object.contains("probe")),
        "the probe is gone"
    );

    connection
        .batch_execute("CREATE INDEX idx_users_deleted_at ON users (deleted_at) WHERE deleted_at IS NOT NULL")
        .expect("repair");
    let recorded = migrator.baseline(&mut connection).expect("baseline");
    assert_eq!(recorded.len(), migrator.set().migrations().len());
    let report = migrator.run(&mut connection).expect("run after baseline");
    assert!(report.was_at_head, "{report:?}");
    assert!(matches!(
        migrator.baseline(&mut connection),
        Err(MigratorError::HistoryExists)
    ));
}

on_both_backends!(a_failing_migration_leaves_the_previous_version, failing_migration);

fn failing_migration(database: &TestDb) {
    let broken = migration(
        "2000-01-01-000002_broken",
        "CREATE TABLE gadgets (id INTEGER PRIMARY KEY);
         INSERT INTO widgets (id, name) VALUES (1, 'half-done');
         SELECT no_such_column FROM widgets;",
        "DROP TABLE gadgets;",
    );
    let mut connection = database.connect();
    let error = runner(vec![create_widgets(), broken])
        .run(&mut connection)
        .expect_err("broken");
    assert!(
        matches!(&error, MigratorError::Failed { migration, .. } if migration == "2000-01-01-000002_broken"),
        "{error}"
    );
    assert!(error.to_string().contains("no_such_column"), "{error}");

    // Exactly the schema and data of the first migration alone, and its history.
    let reference_database = if database.backend() == Backend::Postgres {
        TestDb::postgres().expect("postgres")
    } else {
        TestDb::sqlite_file()
    };
    let mut reference = reference_database.connect();
    runner(vec![create_widgets()]).run(&mut reference).expect("reference");
    assert_eq!(
        Catalog::read(&mut connection).expect("catalog"),
        Catalog::read(&mut reference).expect("catalog")
    );
    assert_eq!(
        text(&mut connection, "SELECT CAST(count(*) AS TEXT) AS value FROM widgets"),
        "0"
    );
    assert_eq!(
        migrations::applied_versions(&mut connection).expect("history"),
        vec!["20000101000001".to_owned()]
    );
    let status = runner(vec![create_widgets()]).status(&mut connection).expect("status");
    assert!(status.dirty.is_empty() && status.is_at_head());
}

on_both_backends!(
    a_failed_migration_outside_a_transaction_blocks_until_cleared,
    dirty_migration
);

fn dirty_migration(database: &TestDb) {
    let index = match database.backend() {
        Backend::Postgres => "CREATE INDEX CONCURRENTLY idx_widgets_missing ON widgets (no_such_column)",
        Backend::Sqlite => "CREATE INDEX idx_widgets_missing ON widgets (no_such_column)",
    };
    let bad = outside_transaction(
        "2000-01-01-000002_index_widgets",
        index,
        "DROP INDEX idx_widgets_missing",
    );
    let migrator = runner(vec![create_widgets(), bad]);
    let mut connection = database.connect();
    let error = migrator.run(&mut connection).expect_err("fails");
    assert!(matches!(error, MigratorError::Failed { .. }), "{error}");

    let error = migrator.run(&mut connection).expect_err("blocked");
    assert!(
        matches!(&error, MigratorError::Dirty { migration } if migration == "2000-01-01-000002_index_widgets"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("dbctl clear-dirty 2000-01-01-000002_index_widgets"),
        "{error}"
    );
    let status = migrator.status(&mut connection).expect("status");
    assert_eq!(status.dirty.len(), 1);
    assert!(!status.is_at_head());

    migrator
        .clear_dirty(&mut connection, "2000-01-01-000002_index_widgets")
        .expect("cleared");
    let status = migrator.status(&mut connection).expect("status");
    assert!(status.dirty.is_empty());
    assert_eq!(status.pending.len(), 1, "the migration runs again");
    assert!(
        matches!(migrator.run(&mut connection), Err(MigratorError::Failed { .. })),
        "still broken, so it fails again"
    );
    assert!(matches!(
        migrator.clear_dirty(&mut connection, "2000-01-01-000001_create_widgets"),
        Err(MigratorError::Operation(_))
    ));
}

on_both_backends!(an_edited_migration_is_refused_until_accepted, edited_migration);

fn edited_migration(database: &TestDb) {
    let original = create_widgets();
    let mut connection = database.connect();
    runner(vec![original.clone()]).run(&mut connection).expect("run");

    // Line endings and a byte-order mark are not edits.
    let reformatted = migration(
        original.name(),
        &format!("\u{feff}{}", original.up_sql().replace('\n', "\r\n")),
        original.down_sql(),
    );
    assert!(
        runner(vec![reformatted])
            .run(&mut connection)
            .expect("same checksum")
            .was_at_head
    );

    let edited_up = "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT);";
    for (file, edited) in [
        ("up.sql", migration(original.name(), edited_up, original.down_sql())),
        // After the accepted up.sql edit, an edit of down.sql alone.
        (
            "down.sql",
            migration(original.name(), edited_up, "DROP TABLE IF EXISTS widgets;"),
        ),
    ] {
        let migrator = runner(vec![edited]);
        let error = migrator.run(&mut connection).expect_err("edited");
        assert!(
            matches!(&error, MigratorError::ChecksumMismatch { migration, file: edited_file } if migration == original.name() && *edited_file == file),
            "{error}"
        );
        assert!(error.to_string().contains("dbctl accept-checksum"), "{error}");
        assert_eq!(
            migrator
                .status(&mut connection)
                .expect("status")
                .checksum_mismatches
                .len(),
            1
        );
        migrator
            .accept_checksum(&mut connection, original.name())
            .expect("accept");
        assert!(migrator.run(&mut connection).expect("accepted").was_at_head);
    }
}

#[test]
fn a_held_lock_times_out_naming_its_holder_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut holder = database.connect();
    holder
        .batch_execute("SET application_name = 'lock-holder-test'")
        .expect("name");
    diesel::sql_query("SELECT pg_advisory_lock($1)::text AS value")
        .bind::<diesel::sql_types::BigInt, _>(LOCK_KEY)
        .execute(&mut holder)
        .expect("lock");
    let holder_pid = text(&mut holder, "SELECT pg_backend_pid()::text AS value");

    let settings = MigrationSettings {
        lock_wait: Duration::from_millis(400),
        ..MigrationSettings::default()
    };
    let migrator = Migrator::embedded(Backend::Postgres, settings);
    let mut connection = database.connect();
    let started = Instant::now();
    let error = migrator.run(&mut connection).expect_err("lock held");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let message = error.to_string();
    assert!(matches!(error, MigratorError::LockTimeout { .. }), "{message}");
    assert!(
        message.contains(&format!("pid {holder_pid}")) && message.contains("lock-holder-test"),
        "{message}"
    );
    assert!(table_names(&mut connection).is_empty(), "nothing was applied");

    drop(holder);
    assert!(!migrator.run(&mut connection).expect("lock released").applied.is_empty());
}

#[test]
fn a_held_lock_times_out_naming_its_holder_on_sqlite() {
    use std::io::Write as _;

    let database = TestDb::sqlite_file();
    // Another runner holds the lock file beside the database and has written its name into it.
    let lock_path = format!("{}.migrate-lock", database.target().expose_connection_string());
    let mut holder = std::fs::File::create(&lock_path).expect("lock file");
    holder.lock().expect("lock");
    write!(holder, "pid 4242 (application \"lock-holder-test\")").expect("holder name");

    let settings = MigrationSettings {
        lock_wait: Duration::from_millis(300),
        ..MigrationSettings::default()
    };
    let migrator = Migrator::embedded(Backend::Sqlite, settings);
    let mut connection = database.connect();
    let error = migrator.run(&mut connection).expect_err("lock held");
    let message = error.to_string();
    assert!(matches!(error, MigratorError::LockTimeout { .. }), "{message}");
    assert!(
        message.contains("pid 4242") && message.contains("lock-holder-test"),
        "{message}"
    );
    drop(holder);
    assert!(!migrator.run(&mut connection).expect("lock released").applied.is_empty());
}

#[test]
fn migration_sessions_have_their_own_timeouts_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let record = migration(
        "2000-01-01-000002_record_settings",
        "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout,
                                     current_setting('statement_timeout') AS statement_timeout;",
        "DROP TABLE seen;",
    );
    let settings = MigrationSettings {
        lock_timeout: Duration::from_millis(1234),
        statement_timeout: Duration::from_millis(56789),
        ..MigrationSettings::default()
    };
    let mut connection = database.connect();
    Migrator::new(set(vec![create_widgets(), record]), settings.clone())
        .run(&mut connection)
        .expect("run");
    assert_eq!(
        text(
            &mut connection,
            "SELECT lock_timeout || ' ' || statement_timeout AS value FROM seen"
        ),
        "1234ms 56789ms"
    );
    // The connection's own settings (the pool's) are back afterwards.
    assert_eq!(
        text(&mut connection, "SELECT current_setting('statement_timeout') AS value"),
        "30s"
    );

    // A migration does not queue forever behind an application's lock.
    let mut application = database.connect();
    application
        .batch_execute("BEGIN; LOCK TABLE widgets IN ACCESS SHARE MODE")
        .expect("lock");
    let alter = migration(
        "2000-01-01-000003_add_color",
        "ALTER TABLE widgets ADD COLUMN color TEXT;",
        "ALTER TABLE widgets DROP COLUMN color;",
    );
    let settings = MigrationSettings {
        lock_timeout: Duration::from_millis(200),
        ..settings
    };
    let started = Instant::now();
    let error = Migrator::new(set(vec![create_widgets(), alter.clone()]), settings)
        .run(&mut connection)
        .expect_err("lock timeout");
    assert!(error.to_string().contains("lock timeout"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up after {:?}",
        started.elapsed()
    );
    application.batch_execute("ROLLBACK").expect("release");
}

on_both_backends!(
    a_migration_reverted_with_the_diesel_cli_is_applied_again,
    reverted_by_cli
);

fn reverted_by_cli(database: &TestDb) {
    let add_color = migration(
        "2000-01-01-000002_add_color",
        "ALTER TABLE widgets ADD COLUMN color TEXT;",
        "ALTER TABLE widgets DROP COLUMN color;",
    );
    let migrator = runner(vec![create_widgets(), add_color]);
    let mut connection = database.connect();
    migrator.run(&mut connection).expect("run");
    migrations::revert_migration(&mut connection, migrator.set(), "2000-01-01-000002_add_color")
        .expect("revert as the CLI does");

    let status = migrator.status(&mut connection).expect("status");
    assert!(!status.is_at_head(), "{status:?}");
    assert_eq!(status.pending.len(), 1);
    let report = migrator.run(&mut connection).expect("run again");
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert!(migrator.status(&mut connection).expect("status").is_at_head());
    connection
        .batch_execute("UPDATE widgets SET color = 'red'")
        .expect("the column is back");
}

on_both_backends!(a_dirty_marker_from_another_release_can_be_cleared, unknown_dirty);

fn unknown_dirty(database: &TestDb) {
    let migrator = runner(vec![create_widgets()]);
    let mut connection = database.connect();
    migrator.run(&mut connection).expect("run");
    connection
        .batch_execute(
            "INSERT INTO __migration_state (version, up_checksum, down_checksum, state) VALUES ('20990101000000', 'x', 'x', 'dirty')",
        )
        .expect("a marker left by a newer release");
    let error = migrator.run(&mut connection).expect_err("blocked");
    assert!(
        error.to_string().contains("dbctl clear-dirty 20990101000000"),
        "{error}"
    );
    migrator
        .clear_dirty(&mut connection, "20990101000000")
        .expect("the advice in the message works");
    assert!(migrator.run(&mut connection).is_ok());
}

#[test]
fn two_migrations_with_one_version_are_refused() {
    let error = MigrationSet::new(vec![
        create_widgets(),
        migration("2000-01-01-000001_also_first", "SELECT 1;", "SELECT 1;"),
    ])
    .expect_err("duplicate");
    assert!(error.to_string().contains("same version"), "{error}");
    let directory = write_set(&[
        create_widgets(),
        migration("2000-01-01-000001_also_first", "SELECT 1;", "SELECT 1;"),
    ]);
    assert!(MigrationSet::from_dir(directory.path()).is_err());
}

/// Starts `processes` runner processes together against one database and returns what each
/// printed; every process must succeed.
fn race(processes: usize, database: &str, set: &Path) -> Vec<String> {
    let start_at = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() + 700;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_migrate"))
                .arg(database)
                .arg(set)
                .env("START_AT_MS", start_at.to_string())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a runner process")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("runner finished");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "a runner failed: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
        })
        .collect()
}

fn applied_once_each(outputs: &[String], set: &MigrationSet) {
    let mut applied: Vec<String> = outputs
        .iter()
        .flat_map(|output| output.trim().trim_start_matches("applied:").split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    applied.sort();
    let expected: Vec<String> = set
        .migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    assert_eq!(
        applied, expected,
        "each migration applied exactly once across all processes: {outputs:?}"
    );
}

#[test]
fn eight_processes_migrate_an_empty_postgres_database_at_once() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let set = set(vec![
        create_widgets(),
        outside_transaction(
            "2000-01-01-000002_index_widgets_concurrently",
            "CREATE INDEX CONCURRENTLY idx_widgets_name ON widgets (name)",
            "DROP INDEX CONCURRENTLY idx_widgets_name",
        ),
        migration(
            "2000-01-01-000003_add_color",
            "ALTER TABLE widgets ADD COLUMN color TEXT;",
            "ALTER TABLE widgets DROP COLUMN color;",
        ),
    ]);
    let directory = write_set(set.migrations());
    let outputs = race(8, &database.target().expose_connection_string(), directory.path());
    applied_once_each(&outputs, &set);

    let mut connection = database.connect();
    assert_eq!(migrations::applied_versions(&mut connection).expect("history").len(), 3);
    assert_eq!(
        text(
            &mut connection,
            "SELECT string_agg(indisvalid::text, ',') AS value FROM pg_index WHERE indexrelid = 'idx_widgets_name'::regclass"
        ),
        "true",
        "the concurrently built index is valid"
    );
    let status = Migrator::new(set, MigrationSettings::default())
        .status(&mut connection)
        .expect("status");
    assert!(status.is_at_head() && status.dirty.is_empty(), "{status:?}");
}

#[test]
fn eight_processes_migrate_an_empty_sqlite_database_at_once() {
    let database = TestDb::sqlite_file();
    let set = set(vec![
        create_widgets(),
        migration(
            "2000-01-01-000002_add_color",
            "ALTER TABLE widgets ADD COLUMN color TEXT;",
            "ALTER TABLE widgets DROP COLUMN color;",
        ),
        outside_transaction(
            "2000-01-01-000003_index_widgets",
            "CREATE INDEX idx_widgets_name ON widgets (name)",
            "DROP INDEX idx_widgets_name",
        ),
    ]);
    let directory = write_set(set.migrations());
    let outputs = race(8, &database.target().expose_connection_string(), directory.path());
    applied_once_each(&outputs, &set);
    let mut connection = database.connect();
    let status = Migrator::new(set, MigrationSettings::default())
        .status(&mut connection)
        .expect("status");
    assert!(status.is_at_head(), "{status:?}");
}
