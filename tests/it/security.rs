//! Least privilege, credentials and TLS on PostgreSQL, each proven by what the server refuses:
//! the roles of `security::setup_roles` on databases of their own (their roles dropped after),
//! credential rotation under load and TLS on clusters of their own.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use domain::{AuditContext, RegisterUser};
use migrator::{Migrate as _, MigratorError};
use repo_diesel::{Database, DatabaseConfig, DatabaseTarget, DieselStore};
use secrecy::SecretString;
use security::roles::{SetupOptions, set_password};
use security::{OperatorContext, RoleName, RoleNames, SecretDirectory};
use service::AttendanceService;
use test_fixtures::TestDb;

use crate::cluster::PrivateCluster;
use crate::support::Captured;

/// The password every role of these tests gets (the container's server asks for one).
const PASSWORD: &str = "security-test-password";

fn operator() -> OperatorContext {
    OperatorContext::operator("security-test").expect("a valid operator")
}

fn setup_options() -> SetupOptions {
    SetupOptions {
        owner_password: Some(SecretString::from(PASSWORD.to_owned())),
        readonly_password: Some(SecretString::from(PASSWORD.to_owned())),
        monitor_password: Some(SecretString::from(PASSWORD.to_owned())),
        context: operator(),
    }
}

/// A database of its own with roles of its own (a random prefix: roles are shared by the whole
/// server), set up by `security::setup_roles` as the administrator. Dropping it drops the
/// database, then the roles.
struct RoleSetup {
    database: Option<TestDb>,
    names: RoleNames,
}

impl RoleSetup {
    /// Set up, and migrated by the owner when `migrate`. `None` without PostgreSQL.
    fn new(migrate: bool) -> Option<Self> {
        let database = TestDb::postgres()?;
        let prefix = format!("sec_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let names = RoleNames::with_prefix(&prefix).expect("a valid prefix");
        let setup = Self {
            database: Some(database),
            names,
        };
        let report = security::setup_roles(&mut setup.database().connect(), &setup.names, &setup_options())
            .expect("roles set up");
        assert_eq!(report.created.len(), 6, "{report:?}");
        set_password(
            &mut setup.database().connect(),
            &setup.names.app_logins[0],
            &SecretString::from(PASSWORD.to_owned()),
        )
        .expect("a password for the login");
        if migrate {
            let report = setup
                .app_database()
                .migrate()
                .expect("migrated over the owner's connection");
            assert!(!report.applied.is_empty());
            // Again after the first migration, as docs/SECURITY.md says: it records itself in the
            // audit log, and narrows the read-only role's reading of users.
            let report = security::setup_roles(&mut setup.database().connect(), &setup.names, &setup_options())
                .expect("roles set up again");
            assert!(report.audited);
        }
        Some(setup)
    }

    fn database(&self) -> &TestDb {
        self.database.as_ref().expect("the database lives until drop")
    }

    /// The database's URL as `role`: libpq's `user` and `password` parameters win over the URL's own.
    fn url_as(&self, role: &RoleName) -> String {
        let url = self.database().target().expose_connection_string();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}user={role}&password={PASSWORD}")
    }

    fn connect_as(&self, role: &RoleName) -> PgConnection {
        PgConnection::establish(&self.url_as(role)).unwrap_or_else(|error| panic!("connect as {role}: {error}"))
    }

    /// The application's pool: its login in `DATABASE_URL`, and the owner's connection for
    /// migrations.
    fn app_config(&self) -> DatabaseConfig {
        let mut config = DatabaseConfig::new(
            DatabaseTarget::postgres_url(&self.url_as(&self.names.app_logins[0])).expect("a valid URL"),
        );
        config.migration_target =
            Some(DatabaseTarget::postgres_url(&self.url_as(&self.names.owner)).expect("a valid URL"));
        config
    }

    fn app_database(&self) -> Database {
        Database::connect(self.app_config()).expect("the application's pool")
    }
}

impl Drop for RoleSetup {
    fn drop(&mut self) {
        drop(self.database.take());
        let Some(mut admin) = TestDb::postgres_admin() else {
            return;
        };
        let names = &self.names;
        let prefix = names.owner.as_str().trim_end_matches("_owner");
        let (intruder, administrator) = (format!("{prefix}_intruder"), format!("{prefix}_admin"));
        for role in [
            names.app_logins[0].as_str(),
            names.app_logins[1].as_str(),
            names.app.as_str(),
            names.readonly.as_str(),
            names.monitor.as_str(),
            names.owner.as_str(),
            intruder.as_str(),
            administrator.as_str(),
        ] {
            // The database went first; nothing else of theirs is left on the server.
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""));
        }
    }
}

/// Runs `statement` in a transaction that is rolled back, and expects the server to refuse it
/// with a message containing `refusal`. Returns 1, to count denials.
#[track_caller]
fn denied(connection: &mut PgConnection, statement: &str, refusal: &str) -> usize {
    connection.batch_execute("BEGIN").expect("begin");
    let result = connection.batch_execute(statement);
    connection.batch_execute("ROLLBACK").expect("rollback");
    let error = result
        .map(|()| "")
        .expect_err(&format!("the server accepted: {statement}"));
    assert!(
        error.to_string().contains(refusal),
        "{statement}\n  refused with {error:?}, expected a message containing {refusal:?}"
    );
    1
}

/// Runs `statement` in a transaction that is rolled back, and expects it to succeed.
#[track_caller]
fn allowed(connection: &mut PgConnection, statement: &str) {
    connection.batch_execute("BEGIN").expect("begin");
    let result = connection.batch_execute(statement);
    connection.batch_execute("ROLLBACK").expect("rollback");
    result.unwrap_or_else(|error| panic!("refused: {statement}: {error}"));
}

/// A count read by `diesel::sql_query`.
#[derive(QueryableByName)]
struct Seen {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

const A_USER: &str = "INSERT INTO users (id, email, full_name, hashed_password) \
                      VALUES (gen_random_uuid(), 'ann@example.com', 'Ann', '$argon2id$v=19$x')";
const AN_ENTRY: &str = "INSERT INTO audit_log (id, actor, action, entity_type, entity_id) \
                        VALUES (gen_random_uuid(), 'none', 'test.entry', 'user', 'x')";

#[test]
#[expect(clippy::too_many_lines, reason = "a data table: one refused statement per line")]
fn the_application_role_may_only_read_and_write_rows_on_postgres() {
    let Some(setup) = RoleSetup::new(true) else {
        return;
    };
    let names = &setup.names;
    let mut app = setup.connect_as(&names.app_logins[0]);
    let mut count = 0;
    // PUBLIC holds nothing on the database or the schema.
    let public_grants: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT (SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a
                 WHERE d.datname = current_database() AND a.grantee = 0)
              + (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
                 WHERE n.nspname = 'public' AND a.grantee = 0)",
    )
    .get_result(&mut app)
    .expect("PUBLIC's grants");
    assert_eq!(public_grants, 0);
    // What the repositories need works.
    allowed(&mut app, A_USER);
    allowed(
        &mut app,
        &format!("{A_USER}; UPDATE users SET full_name = 'B'; DELETE FROM attendance; DELETE FROM users"),
    );
    allowed(&mut app, "SELECT * FROM __diesel_schema_migrations, __migration_state");
    allowed(&mut app, &format!("{AN_ENTRY}; SELECT * FROM audit_log"));
    // DDL.
    count += denied(
        &mut app,
        "CREATE TABLE stray (id int)",
        "permission denied for schema public",
    );
    count += denied(
        &mut app,
        "CREATE VIEW stray AS SELECT 1",
        "permission denied for schema public",
    );
    count += denied(
        &mut app,
        "CREATE FUNCTION stray() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "permission denied for schema public",
    );
    count += denied(
        &mut app,
        "ALTER TABLE users ADD COLUMN stray int",
        "must be owner of table users",
    );
    count += denied(
        &mut app,
        "ALTER TABLE attendance DROP CONSTRAINT fk_attendance_users",
        "must be owner of table attendance",
    );
    count += denied(
        &mut app,
        "CREATE INDEX idx_stray ON users (full_name)",
        "must be owner of table users",
    );
    count += denied(&mut app, "DROP TABLE attendance", "must be owner of table attendance");
    count += denied(&mut app, "DROP TABLE users CASCADE", "must be owner of table users");
    count += denied(
        &mut app,
        "ALTER TABLE users DISABLE TRIGGER trg_users_updated_at",
        "must be owner of table users",
    );
    count += denied(
        &mut app,
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "must be owner of table audit_log",
    );
    count += denied(&mut app, "CREATE SCHEMA stray", "permission denied for database");
    count += denied(
        &mut app,
        "CREATE TEMPORARY TABLE stray (id int)",
        "permission denied to create temporary tables",
    );
    count += denied(
        &mut app,
        "CREATE TABLE extensions.stray (id int)",
        "permission denied for schema extensions",
    );
    // TRUNCATE.
    count += denied(&mut app, "TRUNCATE users CASCADE", "permission denied for table users");
    count += denied(
        &mut app,
        "TRUNCATE attendance",
        "permission denied for table attendance",
    );
    // The runner's history: read, never written.
    count += denied(
        &mut app,
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('99999999999999')",
        "permission denied for table __diesel_schema_migrations",
    );
    count += denied(
        &mut app,
        "DELETE FROM __diesel_schema_migrations",
        "permission denied for table __diesel_schema_migrations",
    );
    count += denied(
        &mut app,
        "UPDATE __migration_state SET state = 'dirty'",
        "permission denied for table __migration_state",
    );
    count += denied(
        &mut app,
        "DELETE FROM __migration_state",
        "permission denied for table __migration_state",
    );
    count += denied(
        &mut app,
        "TRUNCATE __migration_state",
        "permission denied for table __migration_state",
    );
    // The audit log: insert and read, never change or delete, even through the purge's gate.
    count += denied(
        &mut app,
        "UPDATE audit_log SET actor = 'none'",
        "permission denied for table audit_log",
    );
    count += denied(
        &mut app,
        "DELETE FROM audit_log",
        "permission denied for table audit_log",
    );
    count += denied(&mut app, "TRUNCATE audit_log", "permission denied for table audit_log");
    count += denied(
        &mut app,
        "SELECT set_config('audit_log.purge_before', '9999-01-01', true); DELETE FROM audit_log",
        "permission denied for table audit_log",
    );
    // Becoming someone else.
    count += denied(
        &mut app,
        &format!("SET ROLE {}", names.owner.quoted()),
        "permission denied to set role",
    );
    count += denied(
        &mut app,
        &format!("GRANT {} TO CURRENT_USER", names.owner.quoted()),
        "must have admin option",
    );
    count += denied(&mut app, "CREATE ROLE stray", "permission denied to create role");

    // An entry the application dates itself gets the server's clock instead.
    app.batch_execute(
        "INSERT INTO audit_log (id, occurred_at, actor, action, entity_type, entity_id)
         VALUES (gen_random_uuid(), '1970-01-02', 'none', 'test.backdated', 'user', 'x'),
                (gen_random_uuid(), 'infinity', 'none', 'test.forever', 'user', 'x')",
    )
    .expect("the application writes entries");
    let misdated: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT count(*) FROM audit_log WHERE action LIKE 'test.%' AND abs(extract(epoch FROM now() - occurred_at)) > 60",
    )
    .get_result(&mut app)
    .expect("count");
    assert_eq!(misdated, 0, "entries of the application are dated by the server");
    // ... also when a temporary table of its session stands in for the catalog the trigger
    // reads (given TEMP by hand for this; the setup takes it away again).
    setup
        .database()
        .connect()
        .batch_execute(&format!(
            "GRANT TEMPORARY ON DATABASE \"{}\" TO {}",
            setup.database().postgres_name().expect("a PostgreSQL database"),
            names.app.quoted()
        ))
        .expect("grant TEMP");
    let mut app_with_temp = setup.connect_as(&names.app_logins[0]);
    app_with_temp
        .batch_execute(
            "CREATE TEMP TABLE pg_class (oid oid, relowner oid);
             INSERT INTO pg_temp.pg_class VALUES ('public.audit_log'::regclass, (SELECT oid FROM pg_roles WHERE rolname = current_user));
             INSERT INTO audit_log (id, occurred_at, actor, action, entity_type, entity_id)
             VALUES (gen_random_uuid(), '1970-01-02', 'none', 'test.shadowed', 'user', 'x')",
        )
        .expect("the application writes an entry beside its shadow catalog");
    let misdated: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT count(*) FROM public.audit_log WHERE action = 'test.shadowed' AND occurred_at < now() - interval '1 minute'",
    )
    .get_result(&mut app_with_temp)
    .expect("count");
    assert_eq!(misdated, 0, "a shadow pg_class does not fool the trigger");
    drop(app_with_temp);
    security::setup_roles(&mut setup.database().connect(), names, &setup_options()).expect("set up again");

    // The read-only role reads every column but the password hashes, and writes nothing.
    let mut readonly = setup.connect_as(&names.readonly);
    allowed(
        &mut readonly,
        "SELECT id, email, full_name, is_active, deleted_at FROM users",
    );
    count += denied(
        &mut readonly,
        "SELECT hashed_password FROM users",
        "permission denied for table users",
    );
    allowed(
        &mut readonly,
        "SELECT count(*) FROM users, attendance, audit_log, __diesel_schema_migrations",
    );
    for (statement, table) in [
        (A_USER, "users"),
        ("UPDATE users SET full_name = 'x'", "users"),
        ("DELETE FROM users", "users"),
        ("DELETE FROM attendance", "attendance"),
        ("TRUNCATE attendance", "attendance"),
        (AN_ENTRY, "audit_log"),
        ("DELETE FROM __migration_state", "__migration_state"),
    ] {
        count += denied(
            &mut readonly,
            statement,
            &format!("permission denied for table {table}"),
        );
    }
    count += denied(
        &mut readonly,
        "CREATE TABLE stray (id int)",
        "permission denied for schema public",
    );

    // The monitoring role reads the server's statistics, other sessions' query texts among them,
    // and the migration history; no table's data, and it writes nothing.
    let mut monitor = setup.connect_as(&names.monitor);
    allowed(
        &mut monitor,
        "SELECT * FROM __diesel_schema_migrations, __migration_state",
    );
    allowed(
        &mut monitor,
        "SELECT pg_database_size(current_database()), count(*) FROM pg_stat_user_tables",
    );
    let probe = format!("SELECT 'monitor probe {}'", uuid::Uuid::now_v7().simple());
    let mut watched = setup.connect_as(&names.app_logins[0]);
    watched.batch_execute(&probe).expect("a statement of another role");
    let seen_by = |connection: &mut PgConnection| -> i64 {
        diesel::sql_query("SELECT count(*) AS count FROM pg_stat_activity WHERE usename = $1 AND query = $2")
            .bind::<diesel::sql_types::Text, _>(names.app_logins[0].as_str())
            .bind::<diesel::sql_types::Text, _>(&probe)
            .get_result::<Seen>(connection)
            .expect("pg_stat_activity")
            .count
    };
    assert_eq!(seen_by(&mut monitor), 1, "pg_monitor shows other roles' query texts");
    assert_eq!(
        seen_by(&mut readonly),
        0,
        "without pg_monitor the text is <insufficient privilege>"
    );
    drop(watched);
    for (statement, table) in [
        ("SELECT id FROM users", "users"),
        ("SELECT count(*) FROM users", "users"),
        ("SELECT id FROM attendance", "attendance"),
        ("SELECT actor FROM audit_log", "audit_log"),
        (A_USER, "users"),
        ("UPDATE users SET full_name = 'x'", "users"),
        ("DELETE FROM attendance", "attendance"),
        (AN_ENTRY, "audit_log"),
        ("DELETE FROM __migration_state", "__migration_state"),
        (
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('99999999999999')",
            "__diesel_schema_migrations",
        ),
    ] {
        count += denied(&mut monitor, statement, &format!("permission denied for table {table}"));
    }
    count += denied(
        &mut monitor,
        "CREATE TABLE stray (id int)",
        "permission denied for schema public",
    );
    count += denied(
        &mut monitor,
        &format!("SET ROLE {}", names.owner.quoted()),
        "permission denied to set role",
    );

    // The owner's ordinary statements cannot change or remove an audit entry either.
    let mut owner = setup.connect_as(&names.owner);
    owner.batch_execute(AN_ENTRY).expect("an entry, committed");
    for statement in [
        "UPDATE audit_log SET actor = 'none'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        // The gate opens only for entries older than its cutoff: not for this one.
        "SELECT set_config('audit_log.purge_before', (now() - interval '1 day')::text, true); DELETE FROM audit_log",
    ] {
        count += denied(&mut owner, statement, "audit_log is append-only");
    }
    let owned_entries: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM audit_log")
        .get_result(&mut owner)
        .expect("count");
    assert!(owned_entries >= 1);
    let _ = writeln!(
        std::io::stderr(),
        "least privilege: {count} statements refused by the server, each with its expected error"
    );
    // Every case above ran (a refactoring that loses some would change the count).
    assert_eq!(count, 52);
}

#[test]
fn tables_of_later_migrations_are_reachable_without_a_new_grant_on_postgres() {
    let Some(setup) = RoleSetup::new(true) else {
        return;
    };
    let names = &setup.names;
    // A later migration, run by the owner as the runner runs them.
    setup
        .connect_as(&names.owner)
        .batch_execute(
            "CREATE TABLE later_feature (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL)",
        )
        .expect("the owner creates a table");
    let mut app = setup.connect_as(&names.app_logins[0]);
    app.batch_execute(
        "INSERT INTO later_feature (note) VALUES ('a'), ('b'); UPDATE later_feature SET note = 'c' WHERE note = 'a'; \
         DELETE FROM later_feature WHERE note = 'b'",
    )
    .expect("the application reads and writes the new table and its sequence without a new GRANT");
    denied(
        &mut app,
        "TRUNCATE later_feature",
        "permission denied for table later_feature",
    );
    denied(
        &mut app,
        "DROP TABLE later_feature",
        "must be owner of table later_feature",
    );
    let mut readonly = setup.connect_as(&names.readonly);
    allowed(&mut readonly, "SELECT * FROM later_feature");
    denied(
        &mut readonly,
        "INSERT INTO later_feature (note) VALUES ('x')",
        "permission denied for table later_feature",
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one widening of every kind, then the checks that it was undone"
)]
fn a_setup_run_again_changes_nothing_and_narrows_a_widened_role_on_postgres() {
    let Some(setup) = RoleSetup::new(true) else {
        return;
    };
    let names = &setup.names;
    let again = security::setup_roles(&mut setup.database().connect(), names, &setup_options()).expect("again");
    assert_eq!(again.created, Vec::<String>::new());
    // Passwords given again are set again; nothing else changes.
    assert!(
        again.changed.iter().all(|change| change.contains("new password")),
        "{:?}",
        again.changed
    );
    assert!(again.audited, "a migrated database has its audit log");

    // Someone widens the roles by hand, as happens on servers that live long: attributes,
    // memberships both ways, ADMIN OPTION, table, column and default grants to a role outside
    // the five, a connection limit, and a setting the login gave itself.
    let login = names.app_logins[0].quoted();
    let green = names.app_logins[1].quoted();
    let intruder = format!("{}_intruder", names.owner.as_str().trim_end_matches("_owner"));
    setup
        .database()
        .connect()
        .batch_execute(&format!(
            "ALTER ROLE {login} CREATEDB; GRANT {owner} TO {login}; GRANT ALL ON users TO {login}; \
             GRANT TRUNCATE ON attendance TO {app}; GRANT CREATE ON SCHEMA public TO PUBLIC; \
             GRANT UPDATE ON audit_log TO {app}; CREATE ROLE {intruder} LOGIN; GRANT {owner} TO {intruder}; \
             GRANT {app} TO {login} WITH ADMIN OPTION; GRANT UPDATE (actor) ON audit_log TO {intruder}; \
             GRANT SELECT ON attendance TO {intruder}; GRANT CREATE ON SCHEMA public TO {intruder}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT ALL ON TABLES TO {intruder}; \
             ALTER ROLE {green} CONNECTION LIMIT 0; ALTER ROLE {login} SET search_path = evil; \
             GRANT TEMPORARY ON DATABASE \"{database}\" TO {app}; GRANT CREATE ON DATABASE \"{database}\" TO {readonly}; \
             GRANT ALL ON DATABASE \"{database}\" TO {intruder}; GRANT USAGE ON SCHEMA public TO {intruder}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT TRUNCATE, TRIGGER ON TABLES TO {app} WITH GRANT OPTION; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT UPDATE ON SEQUENCES TO {readonly}; \
             GRANT SELECT ON users TO {app} WITH GRANT OPTION; SET ROLE {owner}; \
             CREATE PROCEDURE public.\"odd proc\"(int) LANGUAGE sql AS 'SELECT 1'; \
             GRANT EXECUTE ON PROCEDURE public.\"odd proc\"(int) TO {intruder}; RESET ROLE; \
             SET ROLE {login}; GRANT SELECT ON users TO {intruder}; RESET ROLE; \
             GRANT SELECT ON users, audit_log TO {monitor}; GRANT {owner} TO {monitor}; \
             GRANT pg_read_all_data TO {monitor}; GRANT pg_monitor TO {monitor} WITH ADMIN OPTION; \
             GRANT {monitor} TO {intruder}",
            owner = names.owner.quoted(),
            app = names.app.quoted(),
            readonly = names.readonly.quoted(),
            monitor = names.monitor.quoted(),
            database = setup.database().postgres_name().expect("a PostgreSQL database"),
        ))
        .expect("widen");
    let mut app = setup.connect_as(&names.app_logins[0]);
    allowed(&mut app, "TRUNCATE public.attendance");
    denied(&mut app, "SELECT 1 FROM users", "relation \"users\" does not exist");
    drop(app);
    let narrowed = security::setup_roles(&mut setup.database().connect(), names, &setup_options()).expect("narrowed");
    let changed = narrowed.changed.join("\n");
    for expected in [
        "NOCREATEDB".to_owned(),
        format!("REVOKE {} FROM {} CASCADE", names.owner, names.app_logins[0]),
        format!("REVOKE {} FROM {intruder} CASCADE", names.owner),
        format!(
            "REVOKE ADMIN OPTION FOR {} FROM {} CASCADE",
            names.app, names.app_logins[0]
        ),
        format!("REVOKE ALL (actor) ON public.audit_log FROM {intruder} CASCADE"),
        format!("REVOKE ALL ON TABLE public.attendance FROM {intruder} CASCADE"),
        format!("REVOKE ALL ON SCHEMA public FROM {intruder} CASCADE"),
        format!(
            "REVOKE CREATE, TEMPORARY ON DATABASE {} FROM {intruder} CASCADE",
            setup.database().postgres_name().expect("a PostgreSQL database")
        ),
        format!("REVOKE ALL ON ROUTINE \"odd proc\"(integer) FROM {intruder} CASCADE"),
        format!("REVOKE ALL ON TABLES FROM {intruder}"),
        format!("role {} set to LOGIN", names.app_logins[1]),
        format!("ALTER ROLE {}  RESET search_path", names.app_logins[0]),
        format!("REVOKE {} FROM {} CASCADE", names.owner, names.monitor),
        format!("REVOKE pg_read_all_data FROM {} CASCADE", names.monitor),
        format!("REVOKE ADMIN OPTION FOR pg_monitor FROM {} CASCADE", names.monitor),
        format!("REVOKE {} FROM {intruder} CASCADE", names.monitor),
    ] {
        assert!(changed.contains(&expected), "{expected} missing from:\n{changed}");
    }
    // The monitoring role keeps pg_monitor (and only that), and reads no data again.
    assert!(
        !changed.contains(&format!("REVOKE pg_monitor FROM {}", names.monitor)),
        "{changed}"
    );
    let mut monitor = setup.connect_as(&names.monitor);
    for (statement, table) in [
        ("SELECT id FROM users", "users"),
        ("SELECT actor FROM audit_log", "audit_log"),
    ] {
        denied(&mut monitor, statement, &format!("permission denied for table {table}"));
    }
    let memberships: Vec<String> = diesel::dsl::sql::<diesel::sql_types::Text>(&format!(
        "SELECT g.rolname::text || CASE WHEN am.admin_option THEN ' with admin option' ELSE '' END
         FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid
         WHERE am.member = '{}'::regrole ORDER BY 1",
        names.monitor
    ))
    .load(&mut monitor)
    .expect("the monitoring role's memberships");
    assert_eq!(memberships, ["pg_monitor"]);
    drop(monitor);
    // A membership in pg_monitor taken away by hand comes back.
    setup
        .database()
        .connect()
        .batch_execute(&format!("REVOKE pg_monitor FROM {}", names.monitor.quoted()))
        .expect("revoke pg_monitor");
    let restored = security::setup_roles(&mut setup.database().connect(), names, &setup_options()).expect("again");
    assert!(
        restored
            .changed
            .contains(&format!("role {} is a member of pg_monitor", names.monitor)),
        "{:?}",
        restored.changed
    );
    assert_eq!(
        narrowed.notes,
        Vec::<String>::new(),
        "the search_path was removed, not kept"
    );
    // The application and the read-only role hold again exactly what they need.
    let mut app = setup.connect_as(&names.app_logins[0]);
    denied(
        &mut app,
        "CREATE TEMP TABLE stray (id int)",
        "permission denied to create temporary tables",
    );
    let mut readonly = setup.connect_as(&names.readonly);
    denied(&mut readonly, "CREATE SCHEMA stray", "permission denied for database");
    setup
        .connect_as(&names.owner)
        .batch_execute("CREATE TABLE later_feature (id int PRIMARY KEY); CREATE SEQUENCE later_sequence")
        .expect("a later migration");
    denied(
        &mut app,
        "TRUNCATE later_feature",
        "permission denied for table later_feature",
    );
    denied(
        &mut readonly,
        "SELECT setval('later_sequence', 5)",
        "permission denied for sequence later_sequence",
    );
    // The intruder holds nothing any more; the green login may connect again.
    let mut admin = setup.database().connect();
    let grants: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "SELECT (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) x WHERE x.grantee = '{intruder}'::regrole)
              + (SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) x WHERE x.grantee = '{intruder}'::regrole)
              + (SELECT count(*) FROM pg_database d, aclexplode(d.datacl) x
                 WHERE d.datname = current_database() AND x.grantee = '{intruder}'::regrole AND x.privilege_type <> 'CONNECT')
              + (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) x WHERE x.grantee = '{intruder}'::regrole)
              + (SELECT count(*) FROM pg_attribute a, aclexplode(a.attacl) x WHERE x.grantee = '{intruder}'::regrole)
              + (SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) x WHERE x.grantee = '{intruder}'::regrole)
              + (SELECT count(*) FROM pg_auth_members WHERE member = '{intruder}'::regrole)"
    ))
    .get_result(&mut admin)
    .expect("count");
    assert_eq!(grants, 0);
    let _ = admin.batch_execute(&format!("DROP OWNED BY {intruder}; DROP ROLE {intruder}"));
    let mut app = setup.connect_as(&names.app_logins[0]);
    denied(
        &mut app,
        "TRUNCATE attendance",
        "permission denied for table attendance",
    );
    denied(&mut app, "TRUNCATE users", "permission denied for table users");
    denied(
        &mut app,
        "CREATE TABLE stray (id int)",
        "permission denied for schema public",
    );
    denied(
        &mut app,
        "UPDATE audit_log SET actor = 'none'",
        "permission denied for table audit_log",
    );
    denied(
        &mut app,
        &format!("SET ROLE {}", names.owner.quoted()),
        "permission denied to set role",
    );

    // Each run is audited, with its operator.
    let mut owner = setup.connect_as(&names.owner);
    let setups: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT count(*) FROM audit_log WHERE action = 'roles.setup' AND actor = 'operator:security-test'",
    )
    .get_result(&mut owner)
    .expect("count");
    assert_eq!(
        setups, 4,
        "the four runs after the migrations (the first ran before the audit log existed)"
    );
}

#[test]
fn an_administrator_with_createrole_and_createdb_may_set_up_the_roles_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let prefix = format!("sec_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let setup = RoleSetup {
        database: Some(database),
        names: RoleNames::with_prefix(&prefix).expect("a valid prefix"),
    };
    let administrator = RoleName::parse(&format!("{prefix}_admin")).expect("valid");
    let name = setup
        .database()
        .postgres_name()
        .expect("a PostgreSQL database")
        .to_owned();
    setup
        .database()
        .connect()
        .batch_execute(&format!(
            "CREATE ROLE {administrator} LOGIN CREATEROLE PASSWORD '{PASSWORD}'; ALTER DATABASE \"{name}\" OWNER TO {administrator}"
        ))
        .expect("a non-superuser administrator that owns the database");
    let as_administrator = || {
        let url = setup.url_as(&administrator);
        let config = DatabaseConfig::new(DatabaseTarget::postgres_url(&url).expect("valid"));
        database::connection::ConnectionManager::new(config.target, config.session, config.pool.connection_timeout)
            .establish()
            .expect("the administrator connects")
    };
    let refused = security::setup_roles(&mut as_administrator(), &setup.names, &setup_options())
        .expect_err("CREATEROLE alone cannot give the database to the owner")
        .to_string();
    assert!(refused.contains("CREATEROLE and CREATEDB"), "{refused}");
    setup
        .database()
        .connect()
        .batch_execute(&format!("ALTER ROLE {administrator} CREATEDB"))
        .expect("grant CREATEDB");
    let report = security::setup_roles(&mut as_administrator(), &setup.names, &setup_options()).expect("set up");
    assert_eq!(report.created.len(), 6, "{report:?}");
    set_password(
        &mut as_administrator(),
        &setup.names.app_logins[0],
        &SecretString::from(PASSWORD.to_owned()),
    )
    .expect("the administrator sets the login's password");
    setup.app_database().migrate().expect("the owner migrates");
    let again = security::setup_roles(&mut as_administrator(), &setup.names, &setup_options()).expect("again");
    assert!(again.created.is_empty() && again.audited, "{again:?}");
    let mut app = setup.connect_as(&setup.names.app_logins[0]);
    allowed(&mut app, A_USER);
    denied(&mut app, "TRUNCATE users", "permission denied for table users");
}

#[test]
fn the_audit_log_migration_takes_back_what_default_privileges_gave_even_to_public_on_postgres() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut connection = database.connect();
    connection
        .batch_execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO PUBLIC")
        .expect("careless default privileges");
    migrator::Migrator::embedded(
        database::Backend::Postgres,
        database::config::MigrationSettings::default(),
    )
    .run(&mut connection)
    .expect("the migrations apply");
    let kept: Vec<String> = diesel::dsl::sql::<diesel::sql_types::Text>(
        "SELECT DISTINCT x.privilege_type::text FROM pg_class c, aclexplode(c.relacl) x
         WHERE c.oid = 'audit_log'::regclass AND x.grantee = 0 ORDER BY 1",
    )
    .load(match &mut connection {
        database::DbConnection::Pg(pg) => pg,
        database::DbConnection::Sqlite(_) => unreachable!("a PostgreSQL test database"),
    })
    .expect("PUBLIC's privileges");
    assert_eq!(
        kept,
        ["INSERT", "SELECT"],
        "PUBLIC keeps no way to change the audit log"
    );
}

#[test]
fn pending_migrations_with_only_the_application_role_are_refused_naming_the_setting_on_postgres() {
    let Some(setup) = RoleSetup::new(false) else {
        return;
    };
    let mut config = setup.app_config();
    config.migration_target = None;
    let app_only = Database::connect(config).expect("the application's pool");
    let error = app_only.migrate().expect_err("the application role may not migrate");
    let message = error.to_string();
    assert!(
        matches!(&error, migrator::Error::Migrator(MigratorError::NeedsMigrationRole { pending, .. }) if *pending > 0),
        "{error:?}"
    );
    assert!(message.contains("DATABASE_MIGRATION_URL"), "{message}");
    assert!(message.contains(setup.names.app_logins[0].as_str()), "{message}");
    // Nothing was created by the refused run.
    let mut owner = setup.connect_as(&setup.names.owner);
    let tables: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '\\_\\_%'",
    )
    .get_result(&mut owner)
    .expect("count");
    assert_eq!(tables, 0);

    // With the owner's connection configured, the same start-up migrates; then the
    // application role alone starts at head.
    let report = setup
        .app_database()
        .migrate()
        .expect("migrated over DATABASE_MIGRATION_URL");
    assert!(!report.applied.is_empty() && !report.was_at_head);
    let owners: Vec<String> = diesel::dsl::sql::<diesel::sql_types::Text>(
        "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .load(&mut owner)
    .expect("owners");
    assert_eq!(owners, vec![setup.names.owner.to_string()]);
    let mut config = setup.app_config();
    config.migration_target = None;
    let at_head = Database::connect(config)
        .expect("pool")
        .migrate()
        .expect("at head, the application role starts");
    assert!(at_head.was_at_head);
}

#[test]
fn the_conformance_suite_runs_as_the_application_login_on_postgres() {
    #[derive(QueryableByName, Debug)]
    struct Who {
        #[diesel(sql_type = diesel::sql_types::Text)]
        role: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        superuser: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        may_create: bool,
    }
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let mut connection = match database.connect() {
        database::DbConnection::Pg(pg) => pg,
        database::DbConnection::Sqlite(_) => unreachable!("a PostgreSQL test database"),
    };
    let who: Who = diesel::sql_query(
        "SELECT current_user::text AS role, rolsuper AS superuser, has_schema_privilege('public', 'CREATE') AS may_create
         FROM pg_roles WHERE rolname = current_user",
    )
    .get_result(&mut connection)
    .expect("who");
    assert_eq!(who.role, TestDb::roles().app_logins[0].as_str(), "{who:?}");
    assert!(!who.superuser && !who.may_create, "{who:?}");
    denied(&mut connection, "TRUNCATE users", "permission denied for table users");
}

/// The user and password files of a secret directory right now.
fn credential_in(secrets: &SecretDirectory) -> (String, String) {
    let read = |path: PathBuf| std::fs::read_to_string(path).expect("a secret file");
    (read(secrets.user_file()), read(secrets.password_file()))
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario: set up, load, rotate, check")]
fn three_rotations_under_four_busy_threads_fail_no_call() {
    const THREADS: usize = 4;
    const ROTATIONS: usize = 3;
    let cluster = PrivateCluster::start_prepared(
        &[("password_encryption", "scram-sha-256"), ("log_connections", "on")],
        |data| {
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            )
            .expect("pg_hba.conf");
        },
    );
    cluster
        .admin()
        .batch_execute("CREATE DATABASE rotation")
        .expect("create the database");
    let admin_url = cluster.url("rotation");
    let names = RoleNames::with_prefix("rotation").expect("valid");
    let admin_config = DatabaseConfig::new(DatabaseTarget::postgres_url(&admin_url).expect("valid"));
    let admin_pool = Database::connect(admin_config).expect("the administrator's pool");
    security::setup_roles(&mut admin_pool.get().expect("connection"), &names, &setup_options()).expect("roles");
    let owner_url = format!(
        "postgres://{}:{PASSWORD}@127.0.0.1:{}/rotation",
        names.owner,
        cluster.port()
    );
    // Migrated by the owner first, so that every rotation below is audited.
    Database::connect(DatabaseConfig::new(
        DatabaseTarget::postgres_url(&owner_url).expect("valid"),
    ))
    .expect("the owner's pool")
    .migrate()
    .expect("migrated by the owner");
    let scratch = tempfile::tempdir().expect("a directory");
    let secrets = SecretDirectory::new(scratch.path().join("secret"));
    let first = security::rotate_credentials(
        &mut admin_pool.get().expect("connection"),
        &names,
        &secrets,
        Duration::ZERO,
        &operator(),
    )
    .expect("the first credential");
    assert_eq!(first.current, names.app_logins[0].as_str());

    // The application: host parts, the secret's files, short-lived connections (so that new
    // ones are opened all the time), and the owner for migrations.
    let port = cluster.port().to_string();
    let user_file = secrets.user_file().display().to_string();
    let password_file = secrets.password_file().display().to_string();
    let variables: BTreeMap<&str, &str> = [
        ("DATABASE_HOST", "127.0.0.1"),
        ("DATABASE_PORT", port.as_str()),
        ("DATABASE_NAME", "rotation"),
        ("DATABASE_USER_FILE", user_file.as_str()),
        ("DATABASE_PASSWORD_FILE", password_file.as_str()),
        ("DATABASE_MIGRATION_URL", owner_url.as_str()),
        ("DATABASE_POOL_MAX_SIZE", "4"),
        ("DATABASE_POOL_MAX_LIFETIME_MS", "200"),
        ("DATABASE_POOL_CONNECTION_TIMEOUT_MS", "5000"),
    ]
    .into_iter()
    .collect();
    let config =
        DatabaseConfig::from_lookup(|name| variables.get(name).map(|value| (*value).to_owned())).expect("valid");
    let database = Database::connect(config).expect("the application's pool");
    assert!(database.migrate().expect("at head").was_at_head);
    let service = Arc::new(AttendanceService::new(DieselStore::new(Arc::new(database))));
    let context = AuditContext::unattributed();
    let users: Vec<_> = (0..THREADS)
        .map(|thread| {
            service
                .register(
                    &context,
                    &RegisterUser {
                        email: format!("rotation{thread}@example.com"),
                        full_name: format!("Rotation {thread}"),
                        password: test_fixtures::DEFAULT_PASSWORD.into(),
                    },
                )
                .expect("register")
                .id
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let workers: Vec<_> = users
        .into_iter()
        .map(|user| {
            let (service, stop, calls, failures, first_failure) = (
                Arc::clone(&service),
                Arc::clone(&stop),
                Arc::clone(&calls),
                Arc::clone(&failures),
                Arc::clone(&first_failure),
            );
            std::thread::spawn(move || {
                let context = AuditContext::unattributed();
                let mut checked_in = false;
                while !stop.load(Ordering::SeqCst) {
                    let now = domain::time::now();
                    let result = if checked_in {
                        service.check_out(&context, user, now).map(drop)
                    } else {
                        service
                            .check_in(&context, user, now - chrono::TimeDelta::milliseconds(1))
                            .map(drop)
                    };
                    calls.fetch_add(1, Ordering::SeqCst);
                    match result {
                        Ok(()) => checked_in = !checked_in,
                        Err(error) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            first_failure
                                .lock()
                                .expect("lock")
                                .get_or_insert_with(|| error.to_string());
                        }
                    }
                }
            })
        })
        .collect();

    let mut refused_old = 0;
    let started = Instant::now();
    for _ in 0..ROTATIONS {
        std::thread::sleep(Duration::from_millis(700));
        let (old_user, old_password) = credential_in(&secrets);
        let report = security::rotate_credentials(
            &mut admin_pool.get().expect("connection"),
            &names,
            &secrets,
            Duration::from_millis(500),
            &operator(),
        )
        .expect("rotated");
        assert_eq!(report.previous.as_deref(), Some(old_user.as_str()));
        assert_ne!(report.current, old_user);
        // The old login's password is gone: the credential the application held no longer opens
        // a session.
        let old = format!(
            "postgres://{old_user}:{old_password}@127.0.0.1:{}/rotation",
            cluster.port()
        );
        match PgConnection::establish(&old) {
            Err(error) if error.to_string().contains("password authentication failed") => refused_old += 1,
            other => panic!("the expired credential of {old_user}: {:?}", other.map(|_| "connected")),
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().expect("a worker");
    }
    let log = cluster.log_since(0);
    let sessions = |login: &RoleName| log.matches(&format!("connection authorized: user={login} ")).count();
    let (blue, green) = (sessions(&names.app_logins[0]), sessions(&names.app_logins[1]));
    let (calls, failures) = (calls.load(Ordering::SeqCst), failures.load(Ordering::SeqCst));
    let _ = writeln!(
        std::io::stderr(),
        "credential rotation: {ROTATIONS} rotations in {:.1} s while {THREADS} threads called the service: \
         {calls} calls, {failures} failed; sessions opened as {} {blue}, as {} {green}; expired credentials \
         refused {refused_old} of {ROTATIONS}",
        started.elapsed().as_secs_f64(),
        names.app_logins[0],
        names.app_logins[1]
    );
    assert_eq!(failures, 0, "first failure: {:?}", first_failure.lock().expect("lock"));
    assert!(calls >= 100, "{calls} calls");
    assert_eq!(refused_old, ROTATIONS);
    assert!(blue >= 2 && green >= 2, "sessions by login: {blue} and {green}");
    // Each rotation is audited, with no secret in the entry.
    let entries: Vec<String> = diesel::dsl::sql::<diesel::sql_types::Text>(
        "SELECT action || ' ' || coalesce(new_values::text, '') FROM audit_log \
         WHERE action LIKE 'credentials.%' ORDER BY occurred_at, id",
    )
    .load(&mut PgConnection::establish(&admin_url).expect("admin"))
    .expect("entries");
    // The first credential (no previous login to expire), then a new login and an expiry each.
    assert_eq!(entries.len(), 1 + 2 * ROTATIONS, "{entries:?}");
    assert!(entries.iter().all(|entry| !entry.contains(&credential_in(&secrets).1)));

    // Two rotations at once: the second waits for the first (grace period included), so the
    // secret never switches back to a login that is about to lose its password.
    let started = Instant::now();
    let first = std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            security::rotate_credentials(
                &mut admin_pool.get().expect("connection"),
                &names,
                &secrets,
                Duration::from_millis(1500),
                &operator(),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let second = security::rotate_credentials(
            &mut admin_pool.get().expect("connection"),
            &names,
            &secrets,
            Duration::ZERO,
            &operator(),
        )
        .expect("the second rotation, after the first");
        let first = first
            .join()
            .expect("the first rotation's thread")
            .expect("the first rotation");
        assert_eq!(
            second.previous.as_deref(),
            Some(first.current.as_str()),
            "{first:?} then {second:?}"
        );
        first
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the second waited for the first"
    );
    let (user, password) = credential_in(&secrets);
    assert_ne!(user, first.current);
    PgConnection::establish(&format!(
        "postgres://{user}:{password}@127.0.0.1:{}/rotation",
        cluster.port()
    ))
    .expect("the login the secret names works");
}

/// Runs `openssl` with `args` in `directory`.
fn openssl(directory: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for `127.0.0.1` and `db.test` signed by it, and a client
/// certificate for `client_role`, in `directory`.
fn certificates(directory: &Path, client_role: &str) {
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=attendance test CA"];
    ca.extend(key);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(directory, &ca);
    std::fs::write(
        directory.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:db.test\n",
    )
    .expect("ext");
    for (name, subject, extensions) in [
        ("server", "/CN=db.test", Some("server.ext")),
        ("client", &*format!("/CN={client_role}"), None),
    ] {
        let mut request = vec!["req", "-subj", subject];
        request.extend(key);
        let key_file = format!("{name}.key");
        let csr_file = format!("{name}.csr");
        let crt_file = format!("{name}.crt");
        request.extend(["-keyout", &key_file, "-out", &csr_file]);
        openssl(directory, &request);
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &csr_file,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt_file,
        ];
        if let Some(extensions) = extensions {
            sign.extend(["-extfile", extensions]);
        }
        openssl(directory, &sign);
    }
    for key in ["ca.key", "server.key", "client.key"] {
        std::fs::set_permissions(directory.join(key), std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one cluster, the TLS cases one after the other")]
fn tls_verify_full_connects_and_refuses_what_it_must() {
    const CLIENT_ROLE: &str = "tls_client";
    #[derive(QueryableByName)]
    struct Encrypted {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        sessions: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        encrypted: i64,
    }
    let scratch = tempfile::tempdir().expect("a directory");
    let pki = scratch.path();
    certificates(pki, CLIENT_ROLE);
    let cluster = PrivateCluster::start_prepared(
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
            ("ssl_ca_file", "ca.crt"),
        ],
        |data| {
            for file in ["server.crt", "server.key", "ca.crt"] {
                std::fs::copy(pki.join(file), data.join(file)).expect("copy a certificate");
            }
            // TLS only over TCP; the client-certificate role proves itself by certificate.
            std::fs::write(
                data.join("pg_hba.conf"),
                format!(
                    "local all all trust\nhostssl all {CLIENT_ROLE} 127.0.0.1/32 cert\n\
                     hostssl all all 127.0.0.1/32 trust\n"
                ),
            )
            .expect("pg_hba.conf");
        },
    );
    cluster
        .admin()
        .batch_execute(&format!("CREATE ROLE {CLIENT_ROLE} LOGIN"))
        .expect("a role that logs in by certificate");
    let port = cluster.port().to_string();
    let ca = pki.join("ca.crt").display().to_string();
    let (client_crt, client_key) = (
        pki.join("client.crt").display().to_string(),
        pki.join("client.key").display().to_string(),
    );
    let config = |variables: &[(&str, &str)]| {
        let variables: BTreeMap<&str, &str> = variables.iter().copied().collect();
        DatabaseConfig::from_lookup(|name| variables.get(name).map(|value| (*value).to_owned())).expect("valid")
    };
    let verified = [
        ("DATABASE_HOST", "127.0.0.1"),
        ("DATABASE_PORT", port.as_str()),
        ("DATABASE_NAME", "postgres"),
        ("DATABASE_USER", "postgres"),
        ("DATABASE_SSLMODE", "verify-full"),
        ("DATABASE_SSLROOTCERT", ca.as_str()),
        ("DATABASE_APPLICATION_NAME", "tls-test"),
    ];
    let mut cases = Vec::new();

    // 1. verify-full with the CA connects, and every pooled connection is encrypted.
    let database = Database::connect(config(&verified)).expect("verify-full with the CA connects");
    let held: Vec<_> = (0..3).map(|_| database.get().expect("a pooled connection")).collect();
    let stats: Encrypted = diesel::sql_query(
        "SELECT count(*) AS sessions, count(*) FILTER (WHERE s.ssl) AS encrypted
         FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = 'tls-test'",
    )
    .get_result(&mut cluster.admin())
    .expect("pg_stat_ssl");
    assert_eq!((stats.sessions, stats.encrypted), (3, 3));
    drop(held);
    cases.push("verify-full with the CA: connected, 3 of 3 pooled sessions encrypted in pg_stat_ssl".to_owned());

    // 2. A certificate for another host name is refused, by name.
    let other_host = format!(
        "postgresql://postgres@other.test:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
    );
    let mut wrong_name = DatabaseConfig::new(DatabaseTarget::postgres_url(&other_host).expect("valid"));
    wrong_name.pool.connection_timeout = Duration::from_secs(2);
    let error = Database::connect(wrong_name)
        .err()
        .expect("a certificate for another host")
        .to_string();
    assert!(error.contains("does not match host name \"other.test\""), "{error}");
    cases.push(format!(
        "a certificate for 127.0.0.1 and db.test, reached as other.test: refused ({error})"
    ));

    // 3. The DNS name the certificate carries is accepted too.
    let by_name = format!(
        "postgresql://postgres@db.test:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
    );
    Database::connect(DatabaseConfig::new(
        DatabaseTarget::postgres_url(&by_name).expect("valid"),
    ))
    .expect("the certificate's DNS name verifies");
    cases.push("the same certificate reached as db.test: connected".to_owned());

    // 4. Without the CA, verify-full has nothing to verify with and refuses.
    let no_ca =
        format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt");
    let error = Database::connect(DatabaseConfig::new(
        DatabaseTarget::postgres_url(&no_ca).expect("valid"),
    ))
    .err()
    .expect("no CA")
    .to_string();
    assert!(
        error.contains("root certificate file") && error.contains("does not exist"),
        "{error}"
    );
    cases.push(format!("verify-full without the CA file: refused ({error})"));

    // 5. With a hostssl-only pg_hba.conf, a connection without TLS is refused.
    let plain = [
        ("DATABASE_HOST", "127.0.0.1"),
        ("DATABASE_PORT", port.as_str()),
        ("DATABASE_NAME", "postgres"),
        ("DATABASE_USER", "postgres"),
        ("DATABASE_SSLMODE", "disable"),
    ];
    let error = Database::connect(config(&plain))
        .err()
        .expect("sslmode=disable")
        .to_string();
    assert!(
        error.contains("no pg_hba.conf entry") && error.contains("no encryption"),
        "{error}"
    );
    cases.push(format!("sslmode=disable against hostssl only: refused ({error})"));

    // 6. A server that requires a client certificate: refused without one, connected with one.
    let mut as_client = verified.to_vec();
    as_client.retain(|(name, _)| *name != "DATABASE_USER");
    as_client.push(("DATABASE_USER", CLIENT_ROLE));
    let error = Database::connect(config(&as_client))
        .err()
        .expect("no client certificate")
        .to_string();
    assert!(error.contains("certificate"), "{error}");
    cases.push(format!(
        "cert authentication without a client certificate: refused ({error})"
    ));
    as_client.extend([
        ("DATABASE_SSLCERT", client_crt.as_str()),
        ("DATABASE_SSLKEY", client_key.as_str()),
    ]);
    let database = Database::connect(config(&as_client)).expect("the client certificate is accepted");
    let role: String = diesel::dsl::sql::<diesel::sql_types::Text>("SELECT current_user::text")
        .get_result(&mut *database.get().expect("connection"))
        .expect("who");
    assert_eq!(role, CLIENT_ROLE);
    cases.push("cert authentication with DATABASE_SSLCERT and DATABASE_SSLKEY: connected".to_owned());

    // 7. Start-up warns about a remote host reached below verify-full, and not at verify-full.
    let warned = |url: &str| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            Database::connect(DatabaseConfig::new(DatabaseTarget::postgres_url(url).expect("valid"))).expect("connects")
        });
        captured.text()
    };
    let require = format!("postgresql://postgres@db.test:{port}/postgres?hostaddr=127.0.0.1&sslmode=require");
    let logged = warned(&require);
    assert!(
        logged.contains("WARN") && logged.contains("host db.test is not on this machine and sslmode is require"),
        "{logged}"
    );
    assert!(!warned(&by_name).contains("WARN"), "verify-full is not warned about");
    cases.push("start-up with sslmode=require to db.test: warned; with verify-full: not".to_owned());
    let _ = writeln!(std::io::stderr(), "TLS cases:\n  {}", cases.join("\n  "));
}
