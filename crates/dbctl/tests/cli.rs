//! The operator CLI as an operator uses it, on SQLite and PostgreSQL: the migration commands and
//! their exit codes, and backups proven by restore: verified, restored, refused when damaged,
//! encrypted, taken while writers write, failing without leaving a file that looks complete,
//! taken before migrating, and pruned by the retention policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use database::{Backend, DbConnection};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use migrator::MigrationSet;
use ops::manifest::{BackupDirectory, BackupFile, MANIFEST_FORMAT, Manifest};
use ops::records::{Kind, Outcome};
use repo::Repositories as _;
use secrecy::ExposeSecret as _;
use test_fixtures::TestDb;

/// A run of `dbctl` against `url` with only the variables given (every `DATABASE_*` and
/// `BACKUP_*` of the caller's environment removed).
fn dbctl_with(url: &str, environment: &[(&str, &str)], arguments: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbctl"));
    command.args(arguments).env("RUST_LOG", "warn");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("DATABASE_") || name.starts_with("BACKUP_")) {
        command.env_remove(name);
    }
    command.env("DATABASE_URL", url).envs(environment.iter().copied());
    command.output().expect("dbctl runs")
}

/// `dbctl` on `database`: the application's connection in `DATABASE_URL` and, on a database
/// set up with roles, the owner's in `DATABASE_MIGRATION_URL`, as a deployment configures it.
fn dbctl(database: &TestDb, environment: &[(&str, &str)], arguments: &[&str]) -> Output {
    let owner = database
        .owner_target()
        .map(database::DatabaseTarget::expose_connection_string);
    let mut environment = environment.to_vec();
    if let Some(owner) = &owner {
        environment.push(("DATABASE_MIGRATION_URL", owner));
    }
    dbctl_with(&database.target().expose_connection_string(), &environment, arguments)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

fn n_migrations() -> usize {
    MigrationSet::embedded(Backend::Sqlite).migrations().len()
}

/// Runs `check` on a SQLite file and on a PostgreSQL database.
macro_rules! on_both_backends {
    ($name:ident, $check:ident, $sqlite:expr, $postgres:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                $check(&$sqlite);
            }

            #[test]
            fn postgres() {
                if let Some(database) = $postgres {
                    $check(&database);
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Migration commands

on_both_backends!(operator_flow, operator_flow, TestDb::sqlite_file(), TestDb::postgres());

fn operator_flow(database: &TestDb) {
    let status = dbctl(database, &[], &["status"]);
    assert_exit(&status, 3);
    assert!(
        stdout(&status).contains("at head:         false"),
        "{}",
        stdout(&status)
    );
    let status = dbctl(database, &[], &["--json", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(json["at_head"], false);
    assert_eq!(json["status"]["pending"].as_array().map(Vec::len), Some(n_migrations()));

    let backups = Backups::new();
    let migrate = dbctl(database, &[backups.env()], &["migrate"]);
    assert_exit(&migrate, 0);
    assert!(
        backups.list().is_empty(),
        "a database with no applied migration has nothing to back up"
    );
    assert!(
        stdout(&migrate).contains(&format!("applied now:     {}", n_migrations())),
        "{}",
        stdout(&migrate)
    );
    let again = dbctl(database, &[], &["--json", "migrate"]);
    assert_exit(&again, 0);
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).expect("migrate --json is JSON");
    assert_eq!(json["report"]["was_at_head"], true);
    assert_eq!(json["backup"], serde_json::Value::Null, "nothing pending: no backup");
    assert_exit(&dbctl(database, &[], &["status"]), 0);

    for (command, expected) in [
        ("accept-checksum", "no migration named no_such_migration"),
        ("clear-dirty", "is not marked dirty"),
    ] {
        let output = dbctl(database, &[], &[command, "no_such_migration"]);
        assert_exit(&output, 1);
        assert!(stderr(&output).contains(expected), "{command}: {}", stderr(&output));
    }
    let output = dbctl(database, &[], &["baseline"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("already has a migration history"),
        "{}",
        stderr(&output)
    );

    // An edited migration needs an operator: exit code 4, not 3.
    let mut connection = database.connect();
    connection
        .batch_execute("UPDATE __migration_state SET up_checksum = 'edited' WHERE version = '20261122000100'")
        .expect("pretend the first migration was edited");
    let status = dbctl(database, &[], &["status"]);
    assert_exit(&status, 4);
    assert!(
        stdout(&status).contains("edited:          2026-11-22-000100_create_users"),
        "{}",
        stdout(&status)
    );
}

on_both_backends!(baseline, baseline_flow, TestDb::sqlite_file(), TestDb::postgres());

fn baseline_flow(database: &TestDb) {
    let mut connection = database.connect();
    for migration in MigrationSet::embedded(database.backend()).migrations() {
        connection
            .batch_execute(migration.up_sql())
            .expect("schema built by hand");
    }
    let refused = dbctl(database, &[], &["migrate", "--no-backup"]);
    assert_exit(&refused, 1);
    assert!(stderr(&refused).contains("dbctl baseline"), "{}", stderr(&refused));
    let baseline = dbctl(database, &[], &["baseline"]);
    assert_exit(&baseline, 0);
    assert!(
        stdout(&baseline).contains(&format!("recorded {} migrations", n_migrations())),
        "{}",
        stdout(&baseline)
    );
    assert_exit(&dbctl(database, &[], &["status"]), 0);
}

/// Short-lived processes on PostgreSQL (TLS negotiated by default) must exit cleanly: OpenSSL's
/// exit-time cleanup once raced the pool's connection threads and crashed about one run in
/// twenty. 120 runs, 8 at a time; any crash fails the test.
#[test]
fn short_lived_processes_exit_cleanly_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    assert_exit(&dbctl(&database, &[], &["migrate"]), 0);
    for _round in 0..15 {
        let children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_dbctl"))
                    .arg("migrate")
                    .env("DATABASE_URL", database.target().expose_connection_string())
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("dbctl starts")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("dbctl ends");
            assert!(
                output.status.success(),
                "dbctl exited with {:?}: {}",
                output.status,
                stderr(&output)
            );
        }
    }
}

#[derive(QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
struct DatabaseStats {
    #[diesel(sql_type = BigInt)]
    sessions: i64,
    #[diesel(sql_type = BigInt)]
    xact_commit: i64,
    #[diesel(sql_type = BigInt)]
    backends: i64,
}

/// `pg_stat_database`'s sessions and commits of `database` once its backends are gone and have
/// flushed their statistics: read until two readings 100 ms apart agree.
fn settled_stats(admin: &mut PgConnection, database: &str) -> DatabaseStats {
    let read = |admin: &mut PgConnection| {
        diesel::sql_query(
            "SELECT sessions, xact_commit, (SELECT count(*) FROM pg_stat_activity WHERE datname = $1) AS backends
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind::<Text, _>(database)
        .get_result::<DatabaseStats>(admin)
        .expect("read pg_stat_database")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = read(admin);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "statistics did not settle: {last:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = read(admin);
        if now.backends == 0 && now == last {
            return now;
        }
        last = now;
    }
}

/// `dbctl migrate` on a database at head is one server session: the connection that checks the
/// configuration is the pool's first and the only one.
#[test]
fn migrate_at_head_is_one_session_on_postgres() {
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let name = database.postgres_name().expect("a PostgreSQL database").to_owned();
    let mut admin = TestDb::postgres_admin().expect("an admin connection");
    let before = settled_stats(&mut admin, &name);
    let output = dbctl(&database, &[], &["migrate"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("applied now:     0"), "{}", stdout(&output));
    let after = settled_stats(&mut admin, &name);
    eprintln!(
        "dbctl migrate at head: {} session(s), {} transaction(s) committed",
        after.sessions - before.sessions,
        after.xact_commit - before.xact_commit
    );
    assert_eq!(
        after.sessions - before.sessions,
        1,
        "server sessions of dbctl migrate at head"
    );
}

#[test]
fn help_lists_each_commands_environment_and_the_exit_codes() {
    let output = Command::new(env!("CARGO_BIN_EXE_dbctl"))
        .arg("--help")
        .output()
        .expect("dbctl runs");
    assert_exit(&output, 0);
    for command in [
        "migrate",
        "status",
        "baseline",
        "accept-checksum",
        "clear-dirty",
        "backup",
        "verify",
        "restore",
        "backups",
        "prune",
        "base-backup",
        "roles",
        "audit",
        "maintain",
        "health",
        "metrics",
    ] {
        assert!(stdout(&output).contains(command), "{command}: {}", stdout(&output));
    }
    for (command, variables) in [
        ("status", &["DATABASE_URL", "DATABASE_POOL_MAX_SIZE", "RUST_LOG"][..]),
        (
            "migrate",
            &[
                "DATABASE_MIGRATION_LOCK_TIMEOUT_MS",
                "BACKUP_DIR",
                "BACKUP_AGE_RECIPIENTS",
            ][..],
        ),
        (
            "backup",
            &["BACKUP_AGE_RECIPIENTS", "BACKUP_PG_BIN_DIR", "BACKUP_S3_ENDPOINT"][..],
        ),
        ("verify", &["BACKUP_AGE_IDENTITY_FILE"][..]),
        (
            "prune",
            &["BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY"][..],
        ),
        ("roles setup", &["DATABASE_URL", "DBCTL_ACTOR"][..]),
        ("roles rotate", &["DATABASE_URL", "DBCTL_CORRELATION_ID"][..]),
        ("audit purge", &["AUDIT_RETENTION_DAYS", "DATABASE_MIGRATION_URL"][..]),
        (
            "maintain",
            &["USER_RETENTION_DAYS", "DATABASE_MIGRATION_URL", "DBCTL_ACTOR"][..],
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_dbctl"))
            .args(command.split(' ').chain(["--help"]))
            .output()
            .expect("dbctl runs");
        assert_exit(&output, 0);
        for variable in variables {
            assert!(
                stdout(&output).contains(variable),
                "{command} --help lacks {variable}: {}",
                stdout(&output)
            );
        }
        assert!(
            stdout(&output).contains("3  status: migrations are pending"),
            "{}",
            stdout(&output)
        );
    }
    let usage = Command::new(env!("CARGO_BIN_EXE_dbctl"))
        .arg("no-such-command")
        .output()
        .expect("dbctl runs");
    assert_exit(&usage, 2);
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let database = TestDb::sqlite_file();
    let output = dbctl(&database, &[("RUST_LOG", "info")], &["migrate"]);
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("applied migration"), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains('\u{1b}'),
        "colour codes in {:?}",
        stderr(&output)
    );
}

// ---------------------------------------------------------------------------------------------
// Backups

/// A migrated database with seed data in it.
fn seeded(database: &TestDb) {
    use migrator::Migrate as _;
    database.database().migrate().expect("migrate");
    let mut connection = database.connect();
    let config = seed::SeedConfig::new(60, 20, 7, false).expect("seed sizes");
    let hash = seed::seed_password_hash().expect("a hash");
    seed::seed_database(
        &mut connection,
        &config,
        seed::Clock::system(),
        hash.as_phc(),
        &mut seed::progress::Silent,
    )
    .expect("seed");
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    text: String,
}

/// Every user and attendance record, as text, in a fixed order: two databases hold the same
/// data when these are equal.
fn contents(connection: &mut DbConnection) -> Vec<String> {
    let query = match connection.backend() {
        Backend::Postgres => {
            "SELECT concat_ws('|', u.id::text, u.email, u.full_name, u.deleted_at::text, a.id::text, a.check_in_time::text, \
             a.check_out_time::text) AS text FROM users u LEFT JOIN attendance a ON a.user_id = u.id ORDER BY 1"
        }
        Backend::Sqlite => {
            "SELECT hex(u.id) || '|' || u.email || '|' || u.full_name || '|' || coalesce(u.deleted_at, '') \
             || '|' || coalesce(hex(a.id), '') || '|' || coalesce(a.check_in_time, '') || '|' || coalesce(a.check_out_time, '') \
             AS text FROM users u LEFT JOIN attendance a ON a.user_id = u.id ORDER BY 1"
        }
    };
    diesel::sql_query(query)
        .load::<Row>(connection)
        .expect("read the data")
        .into_iter()
        .map(|row| row.text)
        .collect()
}

/// A place for backups, with the variable that points `dbctl` at it.
struct Backups {
    directory: tempfile::TempDir,
}

impl Backups {
    fn new() -> Self {
        Self {
            directory: tempfile::Builder::new()
                .prefix("dbctl-backups-")
                .tempdir()
                .expect("a directory"),
        }
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }

    fn env(&self) -> (&'static str, &str) {
        ("BACKUP_DIR", self.directory.path().to_str().expect("a UTF-8 path"))
    }

    fn list(&self) -> Vec<Manifest> {
        BackupDirectory::new(self.path()).list().expect("the manifests")
    }

    fn only(&self) -> Manifest {
        let manifests = self.list();
        assert_eq!(manifests.len(), 1, "{manifests:?}");
        manifests.into_iter().next().expect("one")
    }

    /// Names in the directory other than backups, manifests and the record.
    fn strays(&self) -> Vec<String> {
        std::fs::read_dir(self.path())
            .expect("the directory")
            .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.') || name.contains("partial"))
            .collect()
    }
}

/// A new, empty database of the same backend to restore into, with its URL.
fn empty_like(database: &TestDb, scratch: &Path) -> (Option<TestDb>, String) {
    match database.backend() {
        Backend::Postgres => {
            let empty = TestDb::postgres().expect("PostgreSQL is available");
            let url = empty.target().expose_connection_string();
            (Some(empty), url)
        }
        Backend::Sqlite => (None, scratch.join("restored.sqlite3").to_string_lossy().into_owned()),
    }
}

fn connect_url(url: &str) -> DbConnection {
    let target = if url.starts_with("postgres") {
        database::DatabaseTarget::postgres_url(url).expect("a URL")
    } else {
        database::DatabaseTarget::sqlite_file(url)
    };
    database::connection::ConnectionManager::new(
        target,
        database::config::SessionSettings::default(),
        std::time::Duration::from_secs(5),
    )
    .establish()
    .expect("connect")
}

on_both_backends!(
    backups_are_verified_by_restore_and_restore_the_same_data,
    round_trip,
    TestDb::sqlite_file(),
    TestDb::postgres()
);

fn round_trip(database: &TestDb) {
    seeded(database);
    let backups = Backups::new();
    let output = dbctl(database, &[backups.env()], &["--json", "backup"]);
    assert_exit(&output, 0);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("backup --json is JSON");
    let checks = json["verification"]["checks"].as_array().expect("the checks").clone();
    let names: Vec<&str> = checks.iter().filter_map(|check| check["name"].as_str()).collect();
    let mut expected = vec!["file", "restore", "row counts", "schema digest", "migration history"];
    expected.push(if database.backend() == Backend::Postgres {
        "index integrity (amcheck)"
    } else {
        "integrity (integrity_check)"
    });
    assert_eq!(names, expected);
    assert!(checks.iter().all(|check| check["outcome"] == "passed"), "{checks:?}");

    // The manifest is what the database held.
    let manifest = backups.only();
    let mut connection = database.connect();
    let source = contents(&mut connection);
    let users = manifest.row_counts["users"];
    assert!(users >= 60, "{manifest:?}");
    let attendance_rows = manifest.row_counts["attendance"];
    assert!(attendance_rows > 0, "{manifest:?}");
    assert_eq!(manifest.migrations.len(), n_migrations());
    assert_eq!(manifest.backend, database.backend().to_string());
    assert!(!manifest.database.contains("secret"), "{}", manifest.database);
    for name in [
        manifest.file.name.clone(),
        format!("{}.manifest.json", manifest.id),
        "records.jsonl".to_owned(),
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(backups.path().join(&name))
                .expect("the file")
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{name} is readable by others: {mode:o}");
    }

    // A restore into an empty database brings back the same rows, at head.
    let scratch = tempfile::tempdir().expect("a directory");
    let (_target, url) = empty_like(database, scratch.path());
    let restored = dbctl_with(&url, &[backups.env()], &["restore"]);
    assert_exit(&restored, 0);
    assert!(
        stdout(&restored).contains("at head:         true"),
        "{}",
        stdout(&restored)
    );
    assert_eq!(contents(&mut connect_url(&url)), source, "the restored data");

    // A target that holds tables is refused, and keeps its data; --replace replaces it.
    diesel::sql_query("DELETE FROM attendance")
        .execute(&mut connection)
        .expect("delete");
    let refused = dbctl(database, &[backups.env()], &["restore"]);
    assert_exit(&refused, 1);
    assert!(stderr(&refused).contains("holds tables"), "{}", stderr(&refused));
    assert_ne!(contents(&mut connection), source, "the refused restore changed nothing");
    drop(connection);
    let replaced = dbctl(database, &[backups.env()], &["restore", "--replace"]);
    assert_exit(&replaced, 0);
    assert_eq!(contents(&mut database.connect()), source, "the replaced data");

    let listed = dbctl(database, &[backups.env()], &["backups"]);
    assert_exit(&listed, 0);
    assert!(stdout(&listed).contains(&manifest.id), "{}", stdout(&listed));
    assert!(stdout(&listed).contains("verify ok"), "{}", stdout(&listed));
}

on_both_backends!(
    a_damaged_backup_fails_verification_and_is_not_restored,
    damaged,
    TestDb::sqlite_file(),
    TestDb::postgres()
);

fn damaged(database: &TestDb) {
    seeded(database);
    let backups = Backups::new();
    assert_exit(&dbctl(database, &[backups.env()], &["backup", "--no-verify"]), 0);
    let manifest = backups.only();

    // A row count that the restored copy does not have: verify restores, counts, and says so.
    let directory = BackupDirectory::new(backups.path());
    let mut edited = manifest.clone();
    *edited.row_counts.get_mut("users").expect("users") += 1;
    directory.write_manifest(&edited).expect("edit the manifest");
    let verify = dbctl(database, &[backups.env()], &["verify"]);
    assert_exit(&verify, 5);
    assert!(stdout(&verify).contains("row counts"), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("FAILED"), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("in the copy"), "{}", stdout(&verify));
    directory.write_manifest(&manifest).expect("put the manifest back");
    assert_exit(&dbctl(database, &[backups.env()], &["verify"]), 0);

    // One flipped byte in the file.
    let path = backups.path().join(&manifest.file.name);
    let mut bytes = std::fs::read(&path).expect("the backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).expect("damage the backup");
    let verify = dbctl(database, &[backups.env()], &["--json", "verify"]);
    assert_exit(&verify, 5);
    let json: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("JSON");
    assert_eq!(json["checks"][0]["name"], "file");
    assert_eq!(json["checks"][0]["outcome"], "failed");
    let scratch = tempfile::tempdir().expect("a directory");
    let (_target, url) = empty_like(database, scratch.path());
    let restore = dbctl_with(&url, &[backups.env()], &["restore"]);
    assert_exit(&restore, 1);
    assert!(stderr(&restore).contains("is damaged"), "{}", stderr(&restore));

    let records = directory.records().expect("the record");
    let outcomes: Vec<(Kind, Outcome)> = records.iter().map(|record| (record.kind, record.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (Kind::Backup, Outcome::Ok),
            (Kind::Verify, Outcome::Mismatch),
            (Kind::Verify, Outcome::Ok),
            (Kind::Verify, Outcome::Mismatch),
            (Kind::Restore, Outcome::Failed),
        ]
    );
}

on_both_backends!(
    encrypted_backups_hold_no_plaintext_and_need_their_key,
    encrypted,
    TestDb::sqlite_file(),
    TestDb::postgres()
);

fn encrypted(database: &TestDb) {
    seeded(database);
    let backups = Backups::new();
    let keys = tempfile::tempdir().expect("a directory");
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_owned();
    let identity_file = keys.path().join("backup.key");
    std::fs::write(&identity_file, &secret).expect("write the key");
    let recipient = identity.to_public().to_string();
    let encrypt = [backups.env(), ("BACKUP_AGE_RECIPIENTS", recipient.as_str())];

    let without_key = dbctl(database, &encrypt, &["backup"]);
    assert_exit(&without_key, 1);
    assert!(
        stderr(&without_key).contains("BACKUP_AGE_IDENTITY_FILE"),
        "{}",
        stderr(&without_key)
    );
    let manifest = backups.only();
    assert_eq!(
        manifest
            .encryption
            .as_ref()
            .map(|encryption| encryption.recipients.clone()),
        Some(vec![recipient.clone()])
    );
    assert_eq!(
        Path::new(&manifest.file.name)
            .extension()
            .and_then(|extension| extension.to_str()),
        Some("age")
    );
    let bytes = std::fs::read(backups.path().join(&manifest.file.name)).expect("the backup");
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "an age file");
    for plaintext in [&b"PGDMP"[..], b"SQLite format 3", b"seed7.example"] {
        assert!(
            !bytes.windows(plaintext.len()).any(|window| window == plaintext),
            "plaintext in the encrypted backup"
        );
    }

    let key = identity_file.to_str().expect("UTF-8");
    let mut decrypt = encrypt.to_vec();
    decrypt.push(("BACKUP_AGE_IDENTITY_FILE", key));
    let verify = dbctl(database, &decrypt, &["verify"]);
    assert_exit(&verify, 0);
    let scratch = tempfile::tempdir().expect("a directory");
    let (_target, url) = empty_like(database, scratch.path());
    assert_exit(&dbctl_with(&url, &decrypt, &["restore"]), 0);
    assert_eq!(contents(&mut connect_url(&url)), contents(&mut database.connect()));

    let other = keys.path().join("other.key");
    std::fs::write(&other, age::x25519::Identity::generate().to_string().expose_secret()).expect("write");
    let wrong = dbctl(
        database,
        &[
            backups.env(),
            ("BACKUP_AGE_IDENTITY_FILE", other.to_str().expect("UTF-8")),
        ],
        &["verify"],
    );
    assert_exit(&wrong, 1);
    assert!(stderr(&wrong).contains("cannot decrypt"), "{}", stderr(&wrong));
    for output in [&without_key, &verify, &wrong] {
        assert!(
            !stderr(output).contains(&secret) && !stdout(output).contains(&secret),
            "the key was printed"
        );
    }
}

on_both_backends!(
    a_backup_taken_while_writers_write_matches_its_manifest,
    under_writes,
    TestDb::sqlite_file(),
    TestDb::postgres()
);

/// Writers insert users as fast as they can while the backup runs: the manifest's counts, taken
/// in the backup's own snapshot, must equal what the restored copy holds.
fn under_writes(database: &TestDb) {
    seeded(database);
    let backups = Backups::new();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let stop = Arc::clone(&stop);
            let written = Arc::clone(&written);
            let store = repo_diesel::DieselStore::new(Arc::new(database.database()));
            std::thread::spawn(move || {
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = format!("writer{writer}-{n}@example.com");
                    if test_fixtures::UserBuilder::new()
                        .email(email)
                        .build(store.users())
                        .is_ok()
                    {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    while written.load(Ordering::Relaxed) < 20 {
        std::thread::yield_now();
    }
    let output = dbctl(database, &[backups.env()], &["backup"]);
    let before_stop = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("a writer");
    }
    assert_exit(&output, 0);
    let manifest = backups.only();
    let after = written.load(Ordering::Relaxed);
    eprintln!(
        "{}: backup while writing: {} users in the snapshot, {after} written in all ({before_stop} before the backup ended)",
        database.backend(),
        manifest.row_counts["users"]
    );
    assert!(after > 20, "the writers wrote during the backup");
}

/// A `pg_dump` stand-in: prints a version, or writes half an archive and fails.
fn fake_pg_bin(directory: &Path, version: &str, fail: bool) -> PathBuf {
    let bin = directory.join("bin");
    std::fs::create_dir_all(&bin).expect("a bin directory");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{version}'; exit 0; fi\n{}\n",
        if fail {
            "printf 'PGDMP half an archive'; echo 'pg_dump: error: connection lost' >&2; exit 1"
        } else {
            "exec /usr/lib/postgresql/15/bin/pg_dump \"$@\""
        }
    );
    for tool in ["pg_dump", "pg_restore"] {
        let path = bin.join(tool);
        std::fs::write(&path, &script).expect("write the script");
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&path).expect("metadata").permissions(),
            0o755,
        );
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    bin
}

#[test]
fn a_failed_backup_leaves_nothing_that_looks_complete_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    seeded(&database);
    let backups = Backups::new();
    let tools = tempfile::tempdir().expect("a directory");
    let bin = fake_pg_bin(tools.path(), "pg_dump (PostgreSQL) 15.19", true);
    let output = dbctl(
        &database,
        &[backups.env(), ("BACKUP_PG_BIN_DIR", bin.to_str().expect("UTF-8"))],
        &["backup"],
    );
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("pg_dump failed"), "{}", stderr(&output));
    assert!(stderr(&output).contains("connection lost"), "{}", stderr(&output));
    assert!(backups.list().is_empty(), "no backup");
    assert_eq!(backups.strays(), Vec::<String>::new(), "no partial file");
    let records = BackupDirectory::new(backups.path()).records().expect("the record");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, Outcome::Failed);
    assert!(
        records[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("pg_dump failed"),
        "{records:?}"
    );
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_with_both_versions_named() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    seeded(&database);
    let backups = Backups::new();
    let tools = tempfile::tempdir().expect("a directory");
    let bin = fake_pg_bin(tools.path(), "pg_dump (PostgreSQL) 14.10", false);
    let output = dbctl(
        &database,
        &[backups.env(), ("BACKUP_PG_BIN_DIR", bin.to_str().expect("UTF-8"))],
        &["backup"],
    );
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("is version 14 and cannot handle a PostgreSQL server of version 15"),
        "{}",
        stderr(&output)
    );
    assert!(backups.list().is_empty());
}

on_both_backends!(
    migrate_backs_up_and_verifies_before_applying_pending_migrations,
    backup_before_migrating,
    TestDb::sqlite_file(),
    TestDb::postgres()
);

fn backup_before_migrating(database: &TestDb) {
    seeded(database);
    let set = MigrationSet::embedded(database.backend());
    // Two pending migrations: one backup, before the first.
    let names: Vec<String> = set
        .migrations()
        .iter()
        .rev()
        .take(2)
        .map(|migration| migration.name().to_owned())
        .collect();
    let head = names[0].clone();
    for name in &names {
        migrator::migrations::revert_migration(&mut database.connect(), &set, name).expect("revert");
    }
    assert_exit(&dbctl(database, &[], &["status"]), 3);

    let backups = Backups::new();
    if database.backend() == Backend::Postgres {
        // A backup that fails stops the migration.
        let tools = tempfile::tempdir().expect("a directory");
        let bin = fake_pg_bin(tools.path(), "pg_dump (PostgreSQL) 15.19", true);
        let output = dbctl(
            database,
            &[backups.env(), ("BACKUP_PG_BIN_DIR", bin.to_str().expect("UTF-8"))],
            &["migrate"],
        );
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains("no migration was applied"),
            "{}",
            stderr(&output)
        );
        assert_exit(&dbctl(database, &[], &["status"]), 3);
    }
    let output = dbctl(database, &[backups.env(), ("RUST_LOG", "info")], &["migrate"]);
    assert_exit(&output, 0);
    let manifest = backups.only();
    let line = format!(
        "before:          backup {} taken and verified before applying 2 migration(s)",
        manifest.id
    );
    assert!(stdout(&output).contains(&line), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("before applying migrations"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        manifest.migrations.len(),
        n_migrations() - 2,
        "the backup is from before the migrations"
    );
    assert!(!manifest.migrations.contains(&head));
    assert_exit(&dbctl(database, &[], &["status"]), 0);
}

/// Two years of daily backups, pruned with the default policy: 7 daily, 4 weekly and 12 monthly,
/// plus the newest verified one, which is old here.
#[test]
fn prune_keeps_seven_daily_four_weekly_twelve_monthly_and_the_newest_verified() {
    let backups = Backups::new();
    let directory = BackupDirectory::new(backups.path());
    directory.create().expect("the directory");
    let newest = chrono::DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
        .expect("a time")
        .to_utc();
    let mut verified_id = String::new();
    for day in 0..730 {
        let taken_at = newest - chrono::Duration::days(day);
        let id = taken_at.format("%Y%m%dT%H%M%S%3fZ").to_string();
        let name = format!("{id}.sqlite3");
        std::fs::write(directory.file(&name), b"synthetic").expect("a file");
        directory
            .write_manifest(&Manifest {
                format: MANIFEST_FORMAT,
                id: id.clone(),
                taken_at,
                backend: "sqlite".to_owned(),
                database: "synthetic".to_owned(),
                server_version: "3".to_owned(),
                tool: "test".to_owned(),
                migrations: Vec::new(),
                row_counts: std::collections::BTreeMap::new(),
                schema_digest: String::new(),
                file: BackupFile {
                    name,
                    size: 9,
                    sha256: String::new(),
                    format: "sqlite database".to_owned(),
                },
                encryption: None,
                duration_ms: 0,
            })
            .expect("a manifest");
        if day == 400 {
            verified_id = id;
        }
    }
    directory
        .append_record(&ops::records::Record {
            at: newest,
            kind: Kind::Verify,
            backup: Some(verified_id.clone()),
            outcome: Outcome::Ok,
            duration_ms: 1,
            detail: None,
        })
        .expect("a record");
    // A verification that could not run says nothing about the backup: it stays verified.
    directory
        .append_record(&ops::records::Record {
            at: newest,
            kind: Kind::Verify,
            backup: Some(verified_id.clone()),
            outcome: Outcome::Failed,
            duration_ms: 1,
            detail: Some("set BACKUP_AGE_IDENTITY_FILE".to_owned()),
        })
        .expect("a record");

    let dry_run = dbctl_with("unused.sqlite3", &[backups.env()], &["--json", "prune", "--dry-run"]);
    assert_exit(&dry_run, 0);
    let json: serde_json::Value = serde_json::from_slice(&dry_run.stdout).expect("JSON");
    let decisions = json["decisions"].as_array().expect("decisions");
    let kept: Vec<&str> = decisions
        .iter()
        .filter(|decision| decision["keep"] == true)
        .filter_map(|decision| decision["id"].as_str())
        .collect();
    assert_eq!(kept.len(), 20, "19 by the rules and the newest verified: {kept:?}");
    assert!(kept.contains(&verified_id.as_str()));
    assert_eq!(backups.list().len(), 730, "a dry run removes nothing");
    eprintln!(
        "prune over two years of daily backups: {} kept of {}",
        kept.len(),
        decisions.len()
    );

    let prune = dbctl_with("unused.sqlite3", &[backups.env()], &["prune"]);
    assert_exit(&prune, 0);
    assert!(
        stdout(&prune).contains("removed 710 of 730 backups"),
        "{}",
        stdout(&prune)
    );
    let left: Vec<String> = backups.list().into_iter().map(|manifest| manifest.id).collect();
    assert_eq!(left.len(), 20);
    let files = std::fs::read_dir(backups.path())
        .expect("the directory")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.file_name().to_string_lossy().ends_with(".sqlite3"))
        })
        .count();
    assert_eq!(files, 20, "the removed backups' files are gone too");
}

on_both_backends!(
    backups_are_copied_off_site_and_checked,
    off_site,
    TestDb::sqlite_file(),
    TestDb::postgres()
);

/// `backup` copies the file and its manifest to an S3-compatible store (moto, on loopback) and
/// checks each copy; `prune` removes the copies of the backups it removes.
fn off_site(database: &TestDb) {
    seeded(database);
    let server = test_fixtures::s3::S3Server::start("backups", false);
    let backups = Backups::new();
    let variables = server.variables("nightly");
    let mut environment: Vec<(&str, &str)> = variables.iter().map(|(name, value)| (*name, value.as_str())).collect();
    environment.push(backups.env());
    let output = dbctl(database, &environment, &["--json", "backup"]);
    assert_exit(&output, 0);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let manifest = backups.only();
    let copies = json["offsite"].as_array().expect("the copies").clone();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(copies[0]["key"], format!("nightly/{}", manifest.file.name));
    assert_eq!(copies[0]["size"], manifest.file.size);
    assert_eq!(copies[0]["sha256"], manifest.file.sha256.as_str());
    assert_eq!(copies[1]["key"], format!("nightly/{}.manifest.json", manifest.id));
    let config = ops::offsite::OffsiteConfig::from_lookup(|name| {
        variables
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| value.clone())
    })
    .expect("a configuration")
    .expect("a bucket");
    let listed = ops::offsite::list(&config).expect("the copies");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let records = BackupDirectory::new(backups.path()).records().expect("the record");
    assert!(
        records
            .iter()
            .any(|record| record.kind == Kind::Offsite && record.outcome == Outcome::Ok),
        "{records:?}"
    );

    // A store that refuses the copy fails the command, and the record says so.
    drop(server);
    let failed = dbctl(database, &environment, &["backup", "--no-verify"]);
    assert_exit(&failed, 1);
    assert!(
        stderr(&failed).contains("but its off-site copy failed"),
        "{}",
        stderr(&failed)
    );
    assert!(
        stdout(&failed).starts_with("backup "),
        "the report is printed: {}",
        stdout(&failed)
    );
    let records = BackupDirectory::new(backups.path()).records().expect("the record");
    let last = records.last().expect("a record");
    assert_eq!((last.kind, last.outcome), (Kind::Offsite, Outcome::Failed));
}

/// `restore --to-time` prepares a data directory from a base backup and a WAL archive (the
/// recovery itself, on a real cluster, is `tests/it/pitr.rs`): the settings, `recovery.signal`,
/// and the next steps; a target before the base backup started is refused.
#[test]
fn restore_to_a_time_prepares_a_recovery_from_a_base_backup() {
    let scratch = tempfile::tempdir().expect("a directory");
    let base = scratch.path().join("base");
    let archive = scratch.path().join("wal archive");
    std::fs::create_dir_all(&base).expect("a base backup directory");
    std::fs::create_dir_all(&archive).expect("an archive");
    std::fs::write(base.join("PG_VERSION"), "15\n").expect("PG_VERSION");
    std::fs::write(
        base.join("backup_label"),
        "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIME: 2026-12-01 10:00:00 UTC\n",
    )
    .expect("backup_label");
    std::fs::write(base.join("postgresql.auto.conf"), "# the cluster's own settings\n").expect("auto.conf");
    let data = scratch.path().join("recovered");
    let arguments = |time: &str| {
        vec![
            "--json".to_owned(),
            "restore".to_owned(),
            "--to-time".to_owned(),
            time.to_owned(),
            "--base-backup".to_owned(),
            base.display().to_string(),
            "--wal-archive".to_owned(),
            archive.display().to_string(),
            "--data-dir".to_owned(),
            data.display().to_string(),
            "--port".to_owned(),
            "55999".to_owned(),
        ]
    };
    let run = |time: &str| {
        let arguments = arguments(time);
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        dbctl_with("unused.sqlite3", &[], &arguments)
    };

    let too_early = run("2026-12-01T09:00:00+00:00");
    assert_exit(&too_early, 1);
    assert!(
        stderr(&too_early).contains("2026-12-01T09:00:00"),
        "{}",
        stderr(&too_early)
    );
    assert!(!data.exists(), "nothing was written for a refused target");

    let prepared = run("2026-12-01T12:30:00+01:00");
    assert_exit(&prepared, 0);
    let json: serde_json::Value = serde_json::from_slice(&prepared.stdout).expect("JSON");
    let settings = std::fs::read_to_string(data.join("postgresql.auto.conf")).expect("the settings");
    assert!(settings.starts_with("# the cluster's own settings\n"), "{settings}");
    assert!(
        settings.contains("recovery_target_time = '2026-12-01T12:30:00"),
        "{settings}"
    );
    assert!(settings.contains("+01:00'"), "{settings}");
    assert!(
        settings.contains("restore_command = 'cp \"") && settings.contains("wal archive/%f"),
        "{settings}"
    );
    assert!(settings.contains("recovery_target_action = 'promote'"), "{settings}");
    assert!(settings.contains("port = '55999'"), "{settings}");
    assert!(data.join("recovery.signal").is_file());
    let steps = json["next_steps"].as_array().expect("the next steps");
    assert!(
        steps
            .iter()
            .any(|step| step.as_str().is_some_and(|step| step.contains("pg_ctl"))),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|step| step.as_str().is_some_and(|step| step.contains("-p 55999"))),
        "{steps:?}"
    );

    let again = run("2026-12-01T12:30:00+01:00");
    assert_exit(&again, 1);
    assert!(
        stderr(&again).contains("not empty") || stderr(&again).contains("empty"),
        "{}",
        stderr(&again)
    );
}

/// Backup ids and manifests cannot point outside the backup directory: an id that is a path is
/// no backup, and a manifest naming another backup's file, or a file elsewhere, is refused
/// before anything reads, verifies or removes that file.
#[test]
fn backups_cannot_point_outside_their_directory() {
    let database = TestDb::sqlite_file();
    seeded(&database);
    let backups = Backups::new();
    assert_exit(&dbctl(&database, &[backups.env()], &["backup"]), 0);
    let manifest = backups.only();
    let outside = tempfile::tempdir().expect("a directory");
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, b"not a backup").expect("a file outside");
    std::fs::write(
        outside.path().join("x.manifest.json"),
        serde_json::to_vec(&manifest).expect("JSON"),
    )
    .expect("a manifest outside");
    let relative = format!("../{}/x", outside.path().file_name().expect("a name").to_string_lossy());
    for id in [relative.as_str(), &outside.path().join("x").to_string_lossy()] {
        let output = dbctl(&database, &[backups.env()], &["--json", "verify", id]);
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains("a backup id looks like"),
            "{}",
            stderr(&output)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("an error as JSON");
        assert!(
            json["error"].as_str().is_some_and(|error| error.contains("no backup")),
            "{json}"
        );
    }

    // A manifest in the directory whose file is elsewhere.
    let mut hostile = manifest.clone();
    hostile.id = "20200101T000000000Z".to_owned();
    hostile.taken_at = manifest.taken_at - chrono::Duration::days(400);
    hostile.file.name = format!(
        "../{}/victim.txt",
        outside.path().file_name().expect("a name").to_string_lossy()
    );
    std::fs::write(
        backups.path().join("20200101T000000000Z.manifest.json"),
        serde_json::to_vec(&hostile).expect("JSON"),
    )
    .expect("a hostile manifest");
    let keep_one = [
        backups.env(),
        ("BACKUP_KEEP_DAILY", "1"),
        ("BACKUP_KEEP_WEEKLY", "0"),
        ("BACKUP_KEEP_MONTHLY", "0"),
    ];
    let prune = dbctl(&database, &keep_one, &["prune"]);
    assert_exit(&prune, 1);
    assert!(
        stderr(&prune).contains("a manifest must describe its own backup"),
        "{}",
        stderr(&prune)
    );
    assert!(victim.exists(), "prune removed a file outside the backup directory");
    let verify = dbctl(&database, &[backups.env()], &["verify", "20200101T000000000Z"]);
    assert_exit(&verify, 1);
}

#[test]
fn another_sessions_temporary_table_does_not_stop_a_backup_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    seeded(&database);
    let mut other = database.connect();
    other
        .batch_execute("CREATE TEMPORARY TABLE scratch_of_another_session (x int)")
        .expect("a temporary table");
    let backups = Backups::new();
    let output = dbctl(&database, &[backups.env()], &["backup"]);
    assert_exit(&output, 0);
    assert!(
        !backups
            .only()
            .row_counts
            .keys()
            .any(|table| table.contains("scratch_of_another_session"))
    );
    drop(other);
}

/// `dbctl roles` and `dbctl audit` as an operator runs them on PostgreSQL: set up the roles as the
/// administrator, migrate as the owner, set up again (now audited), rotate twice, purge the
/// audit log as the owner. The roles (a prefix of their own) are dropped afterwards.
#[test]
#[expect(clippy::too_many_lines, reason = "one operator session, command by command")]
fn roles_rotation_and_audit_retention_from_the_command_line_on_postgres() {
    #[derive(QueryableByName)]
    struct Entry {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let admin_url = database.target().expose_connection_string();
    let prefix = format!("cli_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let names = security::RoleNames::with_prefix(&prefix).expect("valid");
    // Dropped last (after the database), also when an assertion fails: roles are the server's.
    let _roles = DropRoles(names.clone());
    let _database = database;
    let scratch = tempfile::tempdir().expect("a directory");
    let owner_password = scratch.path().join("owner-password");
    std::fs::write(&owner_password, "owner secret\n").expect("write");
    let owner_password_path = owner_password.display().to_string();
    let secret_dir = scratch.path().join("secret").display().to_string();
    let as_admin = |arguments: &[&str]| dbctl_with(&admin_url, &[("DBCTL_ACTOR", "ann")], arguments);
    let output = as_admin(&[
        "--json",
        "roles",
        "setup",
        "--prefix",
        &prefix,
        "--owner-password-file",
        &owner_password_path,
    ]);
    assert_exit(&output, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(report["created"].as_array().map(Vec::len), Some(6), "{report}");
    assert_eq!(report["audited"], false, "no audit log before the migrations");
    let owner_url = format!(
        "{admin_url}{}user={}&password=owner%20secret",
        if admin_url.contains('?') { '&' } else { '?' },
        names.owner
    );
    let output = dbctl_with(
        &admin_url,
        &[("DATABASE_MIGRATION_URL", &owner_url)],
        &["migrate", "--no-backup"],
    );
    assert_exit(&output, 0);
    // Backups of a database with roles verify, taken by the administrator or by the owner
    // (whose grants come back in a restore by another role, and who may create the scratch
    // database).
    let backups = scratch.path().join("backups").display().to_string();
    for environment in [vec![], vec![("DATABASE_MIGRATION_URL", owner_url.as_str())]] {
        let mut environment = environment;
        environment.push(("BACKUP_DIR", &backups));
        let output = dbctl_with(&admin_url, &environment, &["backup"]);
        assert_exit(&output, 0);
        assert!(stdout(&output).contains("schema digest"), "{}", stdout(&output));
    }
    // A release with a pending migration: `dbctl migrate` as the owner backs up, verifies, applies.
    connect_url(&owner_url)
        .batch_execute(
            "DROP TABLE audit_log; DROP FUNCTION audit_log_append_only(); DROP FUNCTION audit_log_stamp(); \
             DELETE FROM __diesel_schema_migrations WHERE version = '20261207000100'; \
             DELETE FROM __migration_state WHERE version = '20261207000100'",
        )
        .expect("the owner reverts the newest migration by hand");
    let output = dbctl_with(
        &admin_url,
        &[("DATABASE_MIGRATION_URL", &owner_url), ("BACKUP_DIR", &backups)],
        &["migrate"],
    );
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("before:") && stdout(&output).contains("applied now:     1"),
        "{}",
        stdout(&output)
    );
    let output = as_admin(&["roles", "setup", "--prefix", &prefix]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("created: nothing"), "{}", stdout(&output));
    assert!(stdout(&output).contains("audited: yes"), "{}", stdout(&output));
    for (round, expected) in [(1, names.app_logins[0].as_str()), (2, names.app_logins[1].as_str())] {
        let output = as_admin(&[
            "--correlation-id",
            "CHG-1",
            "roles",
            "rotate",
            "--prefix",
            &prefix,
            "--secret-dir",
            &secret_dir,
            "--grace-ms",
            "0",
        ]);
        assert_exit(&output, 0);
        assert!(
            stdout(&output).contains(&format!("now logs in as {expected}")),
            "round {round}: {}",
            stdout(&output)
        );
    }
    let output = dbctl_with(
        &admin_url,
        &[("DATABASE_MIGRATION_URL", &owner_url), ("DBCTL_ACTOR", "ann")],
        &["audit", "purge", "--older-than-days", "30"],
    );
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("removed 0 audit entries"),
        "{}",
        stdout(&output)
    );
    let mut connection = connect_url(&admin_url);
    let entries: Vec<String> = diesel::sql_query(
        "SELECT actor || ' ' || action || ' ' || coalesce(correlation_id, '-') AS line FROM audit_log ORDER BY occurred_at, id",
    )
    .load::<Entry>(&mut connection)
    .expect("entries")
    .into_iter()
    .map(|entry| entry.line)
    .collect();
    assert_eq!(
        entries,
        [
            "operator:ann roles.setup -",
            "operator:ann credentials.rotate CHG-1",
            "operator:ann credentials.rotate CHG-1",
            "operator:ann credentials.expire CHG-1",
            "operator:ann audit_log.retention_purge -",
        ]
    );
    drop(connection);
}

/// Drops a test's roles when it ends, however it ends.
struct DropRoles(security::RoleNames);

impl Drop for DropRoles {
    fn drop(&mut self) {
        let Some(mut admin) = TestDb::postgres_admin() else {
            return;
        };
        let names = &self.0;
        for role in [
            &names.app_logins[0],
            &names.app_logins[1],
            &names.app,
            &names.readonly,
            &names.monitor,
            &names.owner,
        ] {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", role.quoted()));
        }
    }
}

#[test]
fn roles_are_refused_on_sqlite_and_the_audit_purge_runs_there() {
    let database = TestDb::sqlite_file();
    let url = database.target().expose_connection_string();
    assert_exit(&dbctl_with(&url, &[], &["migrate", "--no-backup"]), 0);
    let output = dbctl_with(&url, &[("DBCTL_ACTOR", "ann")], &["roles", "setup", "--prefix", "x"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("needs PostgreSQL"), "{}", stderr(&output));
    let output = dbctl_with(&url, &[("DBCTL_ACTOR", "ann")], &["audit", "purge"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("removed 0 audit entries"),
        "{}",
        stdout(&output)
    );
    let output = dbctl_with(&url, &[("DBCTL_ACTOR", "two words")], &["audit", "purge"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("operator name"), "{}", stderr(&output));
    let output = dbctl_with(&url, &[], &["audit", "purge", "--older-than-days", "0"]);
    assert_exit(&output, 2);
}

// ---------------------------------------------------------------------------------------------
// Maintenance

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(connection: &mut DbConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(connection)
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .n
}

/// The users of a retention test, made through the repositories: `expired` soft-deleted 40 days
/// ago, one soft-deleted 5 days ago and one live. Returns the ids of the expired users and of
/// the two that a 30-day retention keeps.
fn users_for_retention(database: &TestDb, expired: usize) -> (Vec<String>, Vec<String>) {
    let store = repo_diesel::DieselStore::new(Arc::new(database.database()));
    let mut connection = database.connect();
    let mut deleted = |days: i64| {
        let user = test_fixtures::UserBuilder::new()
            .deleted()
            .build(store.users())
            .expect("a soft-deleted user");
        diesel::sql_query("UPDATE users SET deleted_at = $1 WHERE id = $2")
            .bind::<database::sql_types::Instant, _>(database::sql_types::DbTimestamp(
                chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6) - chrono::TimeDelta::days(days),
            ))
            .bind::<database::sql_types::Uuid, _>(database::sql_types::DbUuid(*user.id.as_uuid()))
            .execute(&mut connection)
            .expect("deleted days ago");
        user.id.to_string()
    };
    let expired: Vec<String> = (0..expired).map(|_| deleted(40)).collect();
    let recent = deleted(5);
    let live = test_fixtures::UserBuilder::new()
        .build(store.users())
        .expect("a live user");
    (expired, vec![recent, live.id.to_string()])
}

/// Whether the user `id` is stored, deleted or not.
fn stored(connection: &mut DbConnection, id: &str) -> bool {
    let id = uuid::Uuid::parse_str(id).expect("a user id");
    diesel::sql_query("SELECT count(*) AS n FROM users WHERE id = $1")
        .bind::<database::sql_types::Uuid, _>(database::sql_types::DbUuid(id))
        .get_result::<Count>(connection)
        .expect("count")
        .n
        == 1
}

/// The retention purge's audit entries: `actor correlation_id entity_id`, sorted.
fn retention_entries(connection: &mut DbConnection) -> Vec<String> {
    let mut entries: Vec<String> = diesel::sql_query(
        "SELECT actor || ' ' || coalesce(correlation_id, '-') || ' ' || entity_id AS text FROM audit_log \
         WHERE action = 'user.retention_purge'",
    )
    .load::<Row>(connection)
    .expect("entries")
    .into_iter()
    .map(|row| row.text)
    .collect();
    entries.sort();
    entries
}

/// Proof that statistics were gathered: on PostgreSQL the manual ANALYZE count of `users`
/// (`pg_stat_user_tables`, read in a new session), on SQLite the rows of `users` in `sqlite_stat1`
/// (0 while the table does not exist).
fn statistics(database: &TestDb) -> i64 {
    let mut connection = database.connect();
    match database.backend() {
        Backend::Postgres => count(
            &mut connection,
            "SELECT coalesce((SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'users'), 0) AS n",
        ),
        Backend::Sqlite => {
            if count(
                &mut connection,
                "SELECT count(*) AS n FROM sqlite_master WHERE name = 'sqlite_stat1'",
            ) == 0
            {
                0
            } else {
                count(
                    &mut connection,
                    "SELECT count(*) AS n FROM sqlite_stat1 WHERE tbl = 'users'",
                )
            }
        }
    }
}

fn maintain_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("maintain --json: {error}: {}", stdout(output)))
}

/// The step `name` of a maintain report.
#[track_caller]
fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|step| step["name"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {report}"))
}

fn migrated_sqlite_file() -> TestDb {
    use migrator::Migrate as _;
    let database = TestDb::sqlite_file();
    database.database().migrate().expect("migrate");
    database
}

on_both_backends!(
    maintain_purges_after_the_retention_audited_and_analyzes,
    maintain_flow,
    migrated_sqlite_file(),
    TestDb::postgres_migrated()
);

/// A dry run changes nothing; without a retention nobody is purged; with one, exactly the users
/// soft-deleted before the cutoff are, each audited as the operator, and statistics are fresh.
fn maintain_flow(database: &TestDb) {
    let (expired, kept) = users_for_retention(database, 2);
    let mut connection = database.connect();
    assert_eq!(statistics(database), 0, "no statistics before the first run");
    let actor = [("DBCTL_ACTOR", "ann")];

    let output = dbctl(
        database,
        &actor,
        &["--json", "maintain", "--dry-run", "--retention-days", "30"],
    );
    assert_exit(&output, 0);
    let report = maintain_json(&output);
    assert_eq!(step(&report, "retention_purge")["outcome"], "would_run", "{report}");
    assert_eq!(step(&report, "retention_purge")["counts"]["users"], 2, "{report}");
    assert_eq!(step(&report, "analyze")["outcome"], "would_run", "{report}");
    assert_eq!(
        count(&mut connection, "SELECT count(*) AS n FROM users"),
        4,
        "a dry run purges nobody"
    );
    assert!(retention_entries(&mut connection).is_empty());
    assert_eq!(statistics(database), 0, "a dry run analyzes nothing");
    let output = dbctl(database, &actor, &["maintain", "--dry-run", "--retention-days", "30"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("would run: ANALYZE"), "{}", stdout(&output));

    // No retention configured: the purge is skipped, and says so.
    let output = dbctl(database, &actor, &["--json", "maintain"]);
    assert_exit(&output, 0);
    let report = maintain_json(&output);
    assert_eq!(step(&report, "retention_purge")["outcome"], "skipped", "{report}");
    assert_eq!(count(&mut connection, "SELECT count(*) AS n FROM users"), 4);
    assert!(statistics(database) > 0, "ANALYZE gathered statistics");
    let before = statistics(database);

    let output = dbctl(
        database,
        &[("DBCTL_ACTOR", "ann"), ("USER_RETENTION_DAYS", "30")],
        &["--json", "--correlation-id", "CHG-7", "maintain"],
    );
    assert_exit(&output, 0);
    let report = maintain_json(&output);
    assert_eq!(step(&report, "retention_purge")["outcome"], "done", "{report}");
    assert_eq!(step(&report, "retention_purge")["counts"]["users"], 2, "{report}");
    assert_eq!(step(&report, "analyze")["outcome"], "done", "{report}");
    for id in &expired {
        assert!(!stored(&mut connection, id), "{id} was purged");
    }
    for id in &kept {
        assert!(stored(&mut connection, id), "{id} is kept");
    }
    let mut expected: Vec<String> = expired.iter().map(|id| format!("operator:ann CHG-7 {id}")).collect();
    expected.sort();
    assert_eq!(retention_entries(&mut connection), expected);
    match database.backend() {
        Backend::Postgres => {
            assert!(statistics(database) > before, "ANALYZE ran again");
            // As the owner (DATABASE_MIGRATION_URL), every table of the schema is analyzed.
            assert_eq!(step(&report, "analyze")["counts"]["tables_skipped"], 0, "{report}");
        }
        Backend::Sqlite => {
            assert_eq!(
                step(&report, "incremental_vacuum")["outcome"],
                "not_applicable",
                "{report}"
            );
        }
    }
}

/// On a SQLite file with `auto_vacuum = INCREMENTAL`, the free pages the purge leaves go back to
/// the file system.
#[test]
fn maintain_vacuums_incrementally_where_sqlite_is_set_up_for_it() {
    let database = TestDb::sqlite_file();
    database
        .connect()
        .batch_execute("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
        .expect("incremental auto-vacuum");
    {
        use migrator::Migrate as _;
        database.database().migrate().expect("migrate");
    }
    let (expired, _) = users_for_retention(&database, 300);
    let output = dbctl(
        &database,
        &[("DBCTL_ACTOR", "ann")],
        &["--json", "maintain", "--retention-days", "30"],
    );
    assert_exit(&output, 0);
    let report = maintain_json(&output);
    assert_eq!(
        step(&report, "retention_purge")["counts"]["users"],
        expired.len(),
        "{report}"
    );
    let vacuum = step(&report, "incremental_vacuum");
    assert_eq!(vacuum["outcome"], "done", "{report}");
    assert!(vacuum["counts"]["pages_freed"].as_u64() > Some(0), "{report}");
    assert_eq!(
        count(
            &mut database.connect(),
            "SELECT freelist_count AS n FROM pragma_freelist_count"
        ),
        0
    );
}

on_both_backends!(
    maintain_purges_with_a_pool_of_one_connection,
    maintain_pool_of_one,
    migrated_sqlite_file(),
    TestDb::postgres_migrated()
);

/// `DATABASE_POOL_MAX_SIZE=1` does not starve the purge: a run holds its session and the
/// purge's unit of work at once.
fn maintain_pool_of_one(database: &TestDb) {
    let (expired, kept) = users_for_retention(database, 2);
    let output = dbctl(
        database,
        &[
            ("DBCTL_ACTOR", "ann"),
            ("DATABASE_POOL_MAX_SIZE", "1"),
            ("DATABASE_POOL_CONNECTION_TIMEOUT_MS", "2000"),
        ],
        &["--json", "maintain", "--retention-days", "30"],
    );
    assert_exit(&output, 0);
    let report = maintain_json(&output);
    assert_eq!(step(&report, "retention_purge")["outcome"], "done", "{report}");
    assert_eq!(step(&report, "retention_purge")["counts"]["users"], 2, "{report}");
    let mut connection = database.connect();
    assert_eq!(retention_entries(&mut connection).len(), expired.len());
    for id in &expired {
        assert!(!stored(&mut connection, id), "{id} was purged");
    }
    for id in &kept {
        assert!(stored(&mut connection, id), "{id} is kept");
    }
}

/// A SQLite file that does not exist is refused, dry run or not, and nothing is created: not
/// the file, not its directory.
#[test]
fn maintain_refuses_a_missing_sqlite_file_and_creates_nothing() {
    let scratch = tempfile::tempdir().expect("a directory");
    let missing = scratch.path().join("missing.sqlite3");
    let in_missing_directory = scratch.path().join("absent").join("missing.sqlite3");
    for file in [&missing, &in_missing_directory] {
        let url = file.to_str().expect("a UTF-8 path");
        for arguments in [
            &["maintain", "--retention-days", "30"][..],
            &["maintain", "--dry-run"][..],
        ] {
            let output = dbctl_with(url, &[("DBCTL_ACTOR", "ann")], arguments);
            assert_exit(&output, 1);
            assert!(
                stderr(&output).contains(&format!(
                    "the SQLite database file {url} (set by DATABASE_URL) does not exist"
                )),
                "{}",
                stderr(&output)
            );
        }
    }
    let left: Vec<PathBuf> = std::fs::read_dir(scratch.path())
        .expect("the directory")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
}

/// The files of `directory` and their bytes.
fn files(directory: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(directory)
        .expect("the directory")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let bytes = std::fs::read(&path).expect("the file");
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// A dry run on a SQLite file in rollback-journal mode leaves it byte for byte as it was, and
/// leaves no `-wal`, `-shm` or journal file (nor any other) next to it (opening it as the pool
/// does would switch it to WAL).
#[test]
fn maintain_dry_run_leaves_a_rollback_journal_sqlite_file_byte_identical() {
    let database = migrated_sqlite_file();
    users_for_retention(&database, 2);
    let path = PathBuf::from(database.target().redacted());
    {
        let mut sqlite = SqliteConnection::establish(database.target().redacted()).expect("the file");
        sqlite
            .batch_execute("PRAGMA journal_mode = DELETE")
            .expect("rollback journal");
    }
    let directory = path.parent().expect("a directory");
    let before = files(directory);
    let companions: Vec<&PathBuf> = before
        .iter()
        .map(|(file, _)| file)
        .filter(|file| {
            ["-wal", "-shm", "-journal"]
                .iter()
                .any(|suffix| file.to_string_lossy().ends_with(suffix))
        })
        .collect();
    assert!(
        companions.is_empty(),
        "in rollback-journal mode, closed: {companions:?}"
    );
    let output = dbctl(
        &database,
        &[("DBCTL_ACTOR", "ann")],
        &["--json", "maintain", "--dry-run", "--retention-days", "30"],
    );
    assert_exit(&output, 0);
    let report = maintain_json(&output);
    assert_eq!(step(&report, "retention_purge")["outcome"], "would_run", "{report}");
    assert_eq!(step(&report, "retention_purge")["counts"]["users"], 2, "{report}");
    assert_eq!(
        step(&report, "incremental_vacuum")["outcome"],
        "not_applicable",
        "{report}"
    );
    assert!(
        files(directory) == before,
        "the dry run changed the directory or the file"
    );
}

/// The advisory lock of `dbctl maintain` ("maintain" in ASCII).
const MAINTAIN_LOCK: i64 = 0x6d61_696e_7461_696e;

fn spawn_maintain(database: &TestDb) -> std::process::Child {
    let owner = database
        .owner_target()
        .map(database::DatabaseTarget::expose_connection_string);
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbctl"));
    command
        .args(["--json", "maintain", "--retention-days", "30"])
        .env("RUST_LOG", "warn")
        .env("DBCTL_ACTOR", "ann")
        .env("DATABASE_URL", database.target().expose_connection_string())
        // A run may wait on a table lock (PostgreSQL) or the write lock (SQLite) while the other
        // starts: on a loaded machine that takes longer than the 5 s defaults.
        .env("DATABASE_LOCK_TIMEOUT_MS", "60000")
        .env("DATABASE_STATEMENT_TIMEOUT_MS", "120000")
        .env("DATABASE_SQLITE_BUSY_TIMEOUT_MS", "60000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(owner) = &owner {
        command.env("DATABASE_MIGRATION_URL", owner);
    }
    command.spawn().expect("dbctl starts")
}

/// Two runs at once on PostgreSQL: the second, started while the first holds the lock (blocked
/// behind a table lock in its purge), does nothing and exits 6; runs started together either
/// purge or say they skipped; nobody is purged twice, and there is one entry per purged user.
#[test]
fn overlapping_maintain_runs_are_safe_on_postgres() {
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let (expired, kept) = users_for_retention(&database, 20);
    // Another run holds the lock: nothing is done.
    let mut holder = database.connect();
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MAINTAIN_LOCK)
        .execute(&mut holder)
        .expect("lock");
    let output = dbctl(
        &database,
        &[("DBCTL_ACTOR", "ann")],
        &["maintain", "--retention-days", "30"],
    );
    assert_exit(&output, 6);
    assert!(
        stdout(&output).contains("another maintain is running"),
        "{}",
        stdout(&output)
    );
    let mut connection = database.connect();
    assert_eq!(count(&mut connection, "SELECT count(*) AS n FROM users"), 22);
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MAINTAIN_LOCK)
        .execute(&mut holder)
        .expect("unlock");

    // A real overlap: the first run holds the lock and waits in its purge for a table lock.
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN SHARE MODE")
        .expect("block writers of users");
    let first = spawn_maintain(&database);
    // Until the first run holds the lock: MAINTAIN_LOCK's high and low halves, in this database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(
        &mut connection,
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 1835100526 \
         AND objid = 1952541038 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = dbctl(
        &database,
        &[("DBCTL_ACTOR", "ann")],
        &["--json", "maintain", "--retention-days", "30"],
    );
    assert_exit(&second, 6);
    assert_eq!(step(&maintain_json(&second), "lock")["outcome"], "busy");
    holder.batch_execute("COMMIT").expect("release users");
    let first = first.wait_with_output().expect("the first run ends");
    assert_exit(&first, 0);
    assert_eq!(step(&maintain_json(&first), "retention_purge")["counts"]["users"], 20);

    // More expired users, two runs started together.
    let (more, _) = users_for_retention(&database, 10);
    let runs = [spawn_maintain(&database), spawn_maintain(&database)].map(|run| run.wait_with_output().expect("ends"));
    let mut purged = 0;
    for run in &runs {
        match run.status.code() {
            Some(0) => {
                purged += step(&maintain_json(run), "retention_purge")["counts"]["users"]
                    .as_u64()
                    .expect("n");
            }
            Some(6) => assert_eq!(step(&maintain_json(run), "lock")["outcome"], "busy"),
            _ => panic!("{}\n{}", stdout(run), stderr(run)),
        }
    }
    assert!(
        runs.iter().any(|run| run.status.code() == Some(0)),
        "one run did the work"
    );
    assert_eq!(purged, 10, "each user purged once");
    let entries = retention_entries(&mut connection);
    assert_eq!(entries.len(), expired.len() + more.len(), "one entry per purged user");
    for id in expired.iter().chain(&more) {
        assert!(!stored(&mut connection, id));
    }
    for id in &kept {
        assert!(stored(&mut connection, id));
    }
}

/// Whether the process `pid` has the file `path` open (Linux: `/proc/<pid>/fd`).
fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors
        .filter_map(Result::ok)
        .filter_map(|descriptor| std::fs::read_link(descriptor.path()).ok())
        .any(|target| target == path)
}

/// Two runs at once on SQLite, both waiting behind another writer: both succeed, one purges
/// every expired user, the other finds nobody left.
///
/// The overlap is observed, not assumed: while this test holds the write lock, both processes
/// are seen alive with the database file open. Neither can have purged by then (each run's
/// purge is a `BEGIN IMMEDIATE` transaction, even when it finds nobody, and the lock is held),
/// and both exit 0 after the lock is released, so both were in flight at once, each before or
/// in its purge's write transaction (the purge is a run's first write). Only `/proc` is read,
/// so this runs on Linux.
#[test]
fn overlapping_maintain_runs_are_safe_on_sqlite() {
    let database = migrated_sqlite_file();
    let (expired, kept) = users_for_retention(&database, 20);
    let file = std::fs::canonicalize(database.target().redacted()).expect("the database file");
    assert!(
        Path::new("/proc/self/fd").is_dir(),
        "this test observes the runs through /proc"
    );
    let mut writer = database.connect();
    writer.batch_execute("BEGIN IMMEDIATE").expect("another writer");
    let mut runs = [spawn_maintain(&database), spawn_maintain(&database)];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !runs.iter().all(|run| has_open(run.id(), &file)) {
        for run in &mut runs {
            assert!(
                run.try_wait().expect("the run's status").is_none(),
                "a run ended while another writer held the lock"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the runs never both opened the database"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for run in &mut runs {
        assert!(
            run.try_wait().expect("the run's status").is_none(),
            "both runs are in flight while the lock is held"
        );
    }
    writer.batch_execute("COMMIT").expect("the other writer ends");
    let runs = runs.map(|run| run.wait_with_output().expect("ends"));
    let mut purged = Vec::new();
    for run in &runs {
        assert_exit(run, 0);
        purged.push(
            step(&maintain_json(run), "retention_purge")["counts"]["users"]
                .as_u64()
                .expect("n"),
        );
    }
    purged.sort_unstable();
    assert_eq!(purged, [0, 20], "one run purged them all, once");
    let mut connection = database.connect();
    let mut expected: Vec<String> = expired.iter().map(|id| format!("operator:ann - {id}")).collect();
    expected.sort();
    assert_eq!(
        retention_entries(&mut connection),
        expected,
        "one entry per purged user"
    );
    for id in &expired {
        assert!(!stored(&mut connection, id), "{id} was purged");
    }
    for id in &kept {
        assert!(stored(&mut connection, id));
    }
}

// ---------------------------------------------------------------------------------------------
// Health

/// The first line of a health report: the status, then the performance data after ` | `.
fn health_line(output: &Output) -> String {
    stdout(output).lines().next().unwrap_or_default().to_owned()
}

/// A migrated SQLite file with a state directory and an empty backup directory for `health`.
struct HealthSetup {
    database: TestDb,
    state: tempfile::TempDir,
    backups: Backups,
}

impl HealthSetup {
    fn new() -> Self {
        let database = TestDb::sqlite_file();
        assert_exit(&dbctl(&database, &[], &["migrate", "--no-backup"]), 0);
        Self {
            database,
            state: tempfile::tempdir().expect("a state directory"),
            backups: Backups::new(),
        }
    }

    fn state_env(&self) -> (&'static str, &str) {
        ("HEALTH_STATE_DIR", self.state.path().to_str().expect("a UTF-8 path"))
    }

    fn run(&self, environment: &[(&str, &str)], arguments: &[&str]) -> Output {
        let mut all = vec![self.state_env(), self.backups.env()];
        all.extend_from_slice(environment);
        dbctl(&self.database, &all, arguments)
    }
}

#[test]
fn health_exits_with_the_monitoring_plugin_codes_and_no_other() {
    let setup = HealthSetup::new();
    let health = |environment: &[(&str, &str)], arguments: &[&str]| setup.run(environment, arguments);

    // 0 OK, with performance data as `'label'=value[UOM];warn;crit;min;max`.
    let ok = health(&[], &["health", "--check", "integrity", "--check", "free_pages"]);
    assert_exit(&ok, 0);
    let line = health_line(&ok);
    assert!(line.starts_with("HEALTH OK - "), "{line}");
    let (_, perfdata) = line.split_once(" | ").expect("performance data after ' | '");
    assert!(
        perfdata.starts_with("'integrity'=0;;1;0 'free_pages'=") && perfdata.ends_with("%;25;50;0;100"),
        "{perfdata}"
    );
    assert!(stdout(&ok).contains("\nintegrity            OK "), "{}", stdout(&ok));

    // 1 WARNING and 2 CRITICAL, by flag and by environment; a flag overrides the environment.
    let warning = health(&[], &["health", "--check", "free_pages", "--warning", "free_pages=0"]);
    assert_exit(&warning, 1);
    assert!(
        health_line(&warning).starts_with("HEALTH WARNING - free_pages WARNING"),
        "{}",
        stdout(&warning)
    );
    let critical = health(
        &[("HEALTH_FREE_PAGES_CRITICAL", "0")],
        &["health", "--check", "free_pages"],
    );
    assert_exit(&critical, 2);
    let overridden = health(
        &[("HEALTH_FREE_PAGES_CRITICAL", "0")],
        &["health", "--check", "free_pages", "--critical", "free_pages=none"],
    );
    assert_exit(&overridden, 0);
    // 2: no backup recorded in BACKUP_DIR.
    let backup = health(&[], &["health", "--check", "backup"]);
    assert_exit(&backup, 2);
    assert!(
        stdout(&backup).contains("no successful backup recorded"),
        "{}",
        stdout(&backup)
    );
    // 3: growth has no sample a day old yet.
    let growth = health(&[], &["health", "--check", "growth"]);
    assert_exit(&growth, 3);
    assert!(
        health_line(&growth).starts_with("HEALTH UNKNOWN - growth UNKNOWN"),
        "{}",
        stdout(&growth)
    );

    // 3, not clap's 2: usage and configuration errors.
    for (environment, arguments, expected) in [
        (
            vec![],
            vec!["health", "--check", "no_such"],
            "integrity, wal_size, free_pages",
        ),
        (
            vec![],
            vec!["health", "--check", "connections"],
            "not a check of sqlite",
        ),
        (vec![], vec!["health", "--warning", "free_pages=lots"], "not a number"),
        (
            vec![],
            vec!["health", "--warning", "free_pages"],
            "expected CHECK=VALUE",
        ),
        (
            vec![],
            vec!["health", "--check", "integrity", "--critical"],
            "expected CHECK=VALUE",
        ),
        (vec![], vec!["health", "--bogus"], "unexpected arguments: --bogus"),
        (
            vec![("HEALTH_WAL_SIZE_WARNING", "lots")],
            vec!["health"],
            "HEALTH_WAL_SIZE_WARNING",
        ),
        (
            vec![("DATABASE_STATEMENT_TIMEOUT_MS", "soon")],
            vec!["health"],
            "bad database configuration",
        ),
    ] {
        let output = health(&environment, &arguments);
        assert_exit(&output, 3);
        let line = health_line(&output);
        assert!(
            line.starts_with("HEALTH UNKNOWN - ") && line.contains(expected),
            "{arguments:?}: {line}"
        );
    }
}

#[test]
fn health_prints_health_json_and_an_unreachable_database_is_critical() {
    let setup = HealthSetup::new();
    let health = |environment: &[(&str, &str)], arguments: &[&str]| setup.run(environment, arguments);
    // --json: draft-inadarei health JSON with the Nagios names, one check with --check.
    let json = health(&[], &["--json", "health", "--check", "integrity"]);
    assert_exit(&json, 0);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("health --json is JSON");
    assert_eq!(value["status"], "pass");
    assert_eq!(value["nagiosStatus"], "OK");
    assert_eq!(
        value["checks"].as_object().map(serde_json::Map::len),
        Some(1),
        "{value}"
    );
    assert_eq!(value["checks"]["integrity:problems"][0]["observedValue"], 0.0);
    let json = health(&[], &["health", "--json", "--check", "backup"]);
    assert_exit(&json, 2);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("health --json is JSON");
    assert_eq!(
        (value["status"].as_str(), value["exitCode"].as_u64()),
        (Some("fail"), Some(2))
    );
    let usage = health(&[], &["--json", "health", "--check", "no_such"]);
    assert_exit(&usage, 3);
    let value: serde_json::Value = serde_json::from_slice(&usage.stdout).expect("an error is JSON too");
    assert_eq!(value["nagiosStatus"], "UNKNOWN");

    // 2: a database that cannot be reached.
    let unreachable = dbctl_with(
        "postgres://nobody@127.0.0.1:1/nothing",
        &[setup.state_env()],
        &["health"],
    );
    assert_exit(&unreachable, 2);
    assert!(
        health_line(&unreachable).starts_with("HEALTH CRITICAL - connection CRITICAL"),
        "{}",
        stdout(&unreachable)
    );

    let help = Command::new(env!("CARGO_BIN_EXE_dbctl"))
        .args(["health", "--help"])
        .output()
        .expect("dbctl runs");
    assert_exit(&help, 0);
    for expected in [
        "3  UNKNOWN",
        "HEALTH_STATE_DIR",
        "HEALTH_<CHECK>_WARNING",
        "replication_lag",
        "BACKUP_DIR",
    ] {
        assert!(stdout(&help).contains(expected), "{expected}: {}", stdout(&help));
    }
}

/// The value of the sample `series` (name and labels, as printed) in Prometheus text.
fn prometheus_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_prints_the_checks_and_the_pool_in_the_prometheus_text_format() {
    let setup = HealthSetup::new();
    let metrics = setup.run(&[], &["metrics", "--check", "integrity", "--check", "backup"]);
    assert_exit(&metrics, 0);
    let text = stdout(&metrics);
    // Every sample has its # TYPE, and every counter ends in _total.
    let mut typed = std::collections::BTreeMap::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            typed.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().expect("a name");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|base| typed.contains_key(*base)))
                .unwrap_or(name);
            let kind = typed
                .get(family)
                .unwrap_or_else(|| panic!("{name} has no # TYPE:\n{text}"));
            assert!(kind != "counter" || name.ends_with("_total"), "{name}");
        }
    }
    // The checks' statuses are the Nagios codes: integrity OK, no backup recorded CRITICAL.
    assert_eq!(
        prometheus_sample(&text, "dbctl_health_check_status{check=\"integrity\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        prometheus_sample(&text, "dbctl_health_check_status{check=\"backup\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        prometheus_sample(
            &text,
            "dbctl_health_check_threshold{check=\"backup\",level=\"warning\",unit=\"seconds\"}"
        ),
        Some(93_600.0)
    );
    // The pool that ran the checks: one connection, checked out once and back.
    assert_eq!(
        prometheus_sample(&text, "db_client_connection_max{pool_name=\"dbctl\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        prometheus_sample(&text, "db_client_connection_checkouts_total{pool_name=\"dbctl\"}"),
        Some(1.0)
    );
    let selects = prometheus_sample(
        &text,
        "db_client_operation_duration_seconds_count{pool_name=\"dbctl\",db_operation_name=\"select\"}",
    )
    .expect("the checks' statements are counted");
    assert!(selects >= 1.0, "{text}");

    // A database that cannot be reached: the connection check is CRITICAL, and no file is made.
    let scratch = tempfile::tempdir().expect("a directory");
    let missing = scratch.path().join("missing.sqlite3");
    let unreachable = dbctl_with(missing.to_str().expect("UTF-8"), &[setup.state_env()], &["metrics"]);
    assert_exit(&unreachable, 0);
    assert_eq!(
        prometheus_sample(&stdout(&unreachable), "dbctl_health_check_status{check=\"connection\"}"),
        Some(2.0),
        "{}",
        stdout(&unreachable)
    );
    assert!(!missing.exists(), "metrics created the database file");
    // A bad usage is UNKNOWN (3), as for health.
    assert_exit(&setup.run(&[], &["metrics", "--check", "no_such"]), 3);

    // `metrics` and `health` keep one history of sizes for `growth`: the same target key.
    assert_exit(&setup.run(&[], &["metrics", "--check", "growth"]), 0);
    setup.run(&[], &["health", "--check", "growth"]);
    let samples = std::fs::read_to_string(setup.state.path().join("size-samples.jsonl")).expect("the size samples");
    let targets: std::collections::BTreeSet<String> = samples
        .lines()
        .map(|line| {
            let sample: serde_json::Value = serde_json::from_str(line).expect("a sample is JSON");
            sample["target"].as_str().expect("a sample names its target").to_owned()
        })
        .collect();
    assert_eq!(samples.lines().count(), 2, "{samples}");
    assert_eq!(targets.len(), 1, "{samples}");
}
