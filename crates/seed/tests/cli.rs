//! The seed binary as an operator uses it: `--migrate-only`, `--status` and its exit code, and
//! the operator operations, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL.

use std::process::{Command, Output};

use diesel::connection::SimpleConnection as _;
use repo_diesel::{Backend, MigrationSet};
use test_fixtures::TestDb;

fn seed(database: &TestDb, arguments: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seed"));
    command
        .args(arguments)
        .env("DATABASE_URL", database.target().expose_connection_string())
        .env("RUST_LOG", "warn");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("DATABASE_") && name != "DATABASE_URL") {
        command.env_remove(name);
    }
    command.output().expect("seed runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn operator_flow(database: &TestDb) {
    let status = seed(database, &["--status"]);
    assert_eq!(status.status.code(), Some(1), "not at head yet: {}", stdout(&status));
    assert!(
        stdout(&status).contains("at head:         false"),
        "{}",
        stdout(&status)
    );

    let migrate = seed(database, &["--migrate-only"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(stdout(&migrate).contains("applied now:     4"), "{}", stdout(&migrate));
    let again = seed(database, &["--migrate-only"]);
    assert!(stdout(&again).contains("applied now:     0"), "{}", stdout(&again));

    let status = seed(database, &["--status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));

    for (flag, expected) in [
        ("--accept-checksum", "no migration named no_such_migration"),
        ("--clear-dirty", "is not marked dirty"),
    ] {
        let output = seed(database, &[flag, "no_such_migration"]);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).contains(expected), "{flag}: {}", stderr(&output));
    }
    let output = seed(database, &["--baseline"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already has a migration history"),
        "{}",
        stderr(&output)
    );
}

fn baseline_flow(database: &TestDb) {
    let mut connection = database.connect();
    for migration in MigrationSet::embedded(database.backend()).migrations() {
        connection
            .batch_execute(migration.up_sql())
            .expect("schema built by hand");
    }
    let refused = seed(database, &["--migrate-only"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("seed --baseline"), "{}", stderr(&refused));
    let baseline = seed(database, &["--baseline"]);
    assert!(baseline.status.success(), "{}", stderr(&baseline));
    assert!(
        stdout(&baseline).contains("recorded 4 migrations"),
        "{}",
        stdout(&baseline)
    );
    assert!(
        stdout(&baseline).contains("applied now:     0"),
        "{}",
        stdout(&baseline)
    );
}

#[test]
fn operator_flow_on_sqlite() {
    operator_flow(&TestDb::sqlite_file());
}

#[test]
fn operator_flow_on_postgres() {
    if let Some(database) = TestDb::postgres() {
        assert_eq!(database.backend(), Backend::Postgres);
        operator_flow(&database);
    }
}

#[test]
fn baseline_on_sqlite() {
    baseline_flow(&TestDb::sqlite_file());
}

#[test]
fn baseline_on_postgres() {
    if let Some(database) = TestDb::postgres() {
        baseline_flow(&database);
    }
}

/// Short-lived processes on PostgreSQL (TLS negotiated by default) must exit cleanly: OpenSSL's
/// exit-time cleanup once raced the pool's connection threads and crashed about one run in
/// twenty. 120 runs, 8 at a time; any crash fails the test.
#[test]
fn short_lived_processes_exit_cleanly_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    assert!(seed(&database, &["--migrate-only"]).status.success());
    for _round in 0..15 {
        let children: Vec<_> = (0..8)
            .map(|_| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_seed"));
                command
                    .arg("--migrate-only")
                    .env("DATABASE_URL", database.target().expose_connection_string())
                    .env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                command.spawn().expect("seed starts")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("seed ends");
            assert!(
                output.status.success(),
                "seed exited with {:?}: {}",
                output.status,
                stderr(&output)
            );
        }
    }
}
