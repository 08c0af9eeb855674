//! Test databases: one new database per test, on PostgreSQL or SQLite, removed when the test ends.
//!
//! PostgreSQL comes from, in this order: the server named by `TEST_DATABASE_URL`; a container
//! started through testcontainers, one per test process (feature `container`); a local server
//! found through libpq's defaults; or nowhere, in which case the PostgreSQL tests fail, saying
//! what was tried (only `REQUIRE_POSTGRES=0` lets them return early, with a banner).

use std::io::Write as _;
use std::sync::{Once, OnceLock};

use database::config::MigrationSettings;
use database::{Backend, Database, DatabaseConfig, DatabaseTarget, DbConnection};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use migrator::Migrator;
use migrator::migrations::{MigrationSet, checksum};
use secrecy::SecretString;
use security::roles::SetupOptions;
use security::{OperatorContext, RoleName, RoleNames};
use tempfile::TempDir;

fn test_roles() -> RoleNames {
    RoleNames::with_prefix(TEST_ROLE_PREFIX).expect("the test prefix is a valid role prefix")
}

/// A database for one test, removed when this value is dropped.
pub struct TestDb {
    /// Where the tests connect: on a migrated PostgreSQL database, as the application's login.
    target: DatabaseTarget,
    /// On a migrated PostgreSQL database, the schema's owner, which migrates it.
    owner: Option<DatabaseTarget>,
    cleanup: Cleanup,
}

/// The prefix of the roles the migrated PostgreSQL test databases are set up with
/// (`security::setup_roles`): `attendance_test_owner` owns the schema and migrates it, and the
/// tests connect as `attendance_test_app_blue`, a login of the application role
/// `attendance_test_app`, which may only read and write rows. Roles are shared by every database
/// of a server; the harness creates them once, with the template.
pub const TEST_ROLE_PREFIX: &str = "attendance_test";

/// The password of the test roles: the container's servers ask for one. Not a secret.
const TEST_ROLE_PASSWORD: &str = "attendance-test-password";

enum Cleanup {
    DropPostgres {
        server: &'static PostgresServer,
        name: String,
    },
    RemoveDirectory(#[expect(dead_code, reason = "held only so the directory lives as long as the database")] TempDir),
    Nothing,
}

impl TestDb {
    /// A new, empty PostgreSQL database (made from `template0`), for tests of migrations
    /// themselves. `None`, after saying so once, only when no PostgreSQL is available and `REQUIRE_POSTGRES=0`.
    ///
    /// # Panics
    /// When the server fails, or none is available (unless `REQUIRE_POSTGRES=0`).
    #[must_use]
    pub fn postgres() -> Option<Self> {
        let server = PostgresServer::get()?;
        Some(server.create_database("template0"))
    }

    /// A new PostgreSQL database with every migration applied, set up with least-privilege
    /// roles: a copy of a template database that is set up and migrated at most once per process
    /// (and kept on the server between runs, named by the digest of the embedded migrations, so
    /// an edited migration gets a new template). The database's [`TestDb::target`] connects as
    /// the application's login (`attendance_test_app_blue`: rows only, no DDL), and
    /// [`TestDb::owner_target`] as the schema's owner. `None`, after saying so once, only when
    /// no PostgreSQL is available and `REQUIRE_POSTGRES=0`.
    ///
    /// # Panics
    /// When the server fails, or none is available (unless `REQUIRE_POSTGRES=0`).
    #[must_use]
    pub fn postgres_migrated() -> Option<Self> {
        let server = PostgresServer::get()?;
        let template = server.template();
        let mut database = server.create_database(template);
        let name = database.postgres_name().expect("a PostgreSQL test database").to_owned();
        let names = test_roles();
        database.target = server.target_as(&names.app_logins[0], &name);
        database.owner = Some(server.target_as(&names.owner, &name));
        Some(database)
    }

    /// The roles of a migrated PostgreSQL test database (see [`TestDb::postgres_migrated`]).
    #[must_use]
    pub fn roles() -> RoleNames {
        test_roles()
    }

    /// On a migrated PostgreSQL database, the schema's owner (which may change the schema, and
    /// which the application's login may not); `None` otherwise.
    #[must_use]
    pub fn owner_target(&self) -> Option<&DatabaseTarget> {
        self.owner.as_ref()
    }

    /// On a migrated PostgreSQL database, this database as `role`, one of [`TestDb::roles`] (the
    /// monitoring login, say), with the test roles' password; `None` otherwise.
    #[must_use]
    pub fn target_as(&self, role: &RoleName) -> Option<DatabaseTarget> {
        let (Cleanup::DropPostgres { server, name }, Some(_)) = (&self.cleanup, &self.owner) else {
            return None;
        };
        Some(DatabaseTarget::postgres_url(&server.url_as(role, name)).expect("a test database URL is valid"))
    }

    /// A URL of this database's server for `database` as its administrator, a superuser or a
    /// role that may create databases and roles; `None` for SQLite.
    #[must_use]
    pub fn admin_url(&self, database: &str) -> Option<String> {
        match &self.cleanup {
            Cleanup::DropPostgres { server, .. } => Some(server.url_of(database)),
            _ => None,
        }
    }

    /// A new SQLite file in its own temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn sqlite_file() -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let target = DatabaseTarget::sqlite_file(directory.path().join("scratch.sqlite3"));
        Self {
            target,
            owner: None,
            cleanup: Cleanup::RemoveDirectory(directory),
        }
    }

    /// A private in-memory SQLite database (a file in RAM), removed when this value and every
    /// [`Database`] opened on it are dropped.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn sqlite_in_memory() -> Self {
        Self {
            target: DatabaseTarget::sqlite_in_memory().expect("a directory for an in-memory database"),
            owner: None,
            cleanup: Cleanup::Nothing,
        }
    }

    /// The database's name on its PostgreSQL server; `None` for SQLite.
    #[must_use]
    pub fn postgres_name(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::DropPostgres { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Opens a connection to the maintenance database of the PostgreSQL server the tests use;
    /// `None` when there is none (after saying so, as [`TestDb::postgres`] does).
    ///
    /// # Panics
    /// When the server fails, or none is available (unless `REQUIRE_POSTGRES=0`).
    #[must_use]
    pub fn postgres_admin() -> Option<PgConnection> {
        PostgresServer::get().map(PostgresServer::admin)
    }

    /// Which engine the database runs on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.target.backend()
    }

    /// Where the database is.
    #[must_use]
    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// A configuration for this database with default settings; on a migrated PostgreSQL
    /// database with the owner as the migration connection, as a service would be configured.
    #[must_use]
    pub fn config(&self) -> DatabaseConfig {
        let mut config = DatabaseConfig::new(self.target.clone());
        config.migration_target.clone_from(&self.owner);
        config
    }

    /// Opens a pool on this database.
    ///
    /// # Panics
    /// When the database cannot be opened.
    #[must_use]
    pub fn database(&self) -> Database {
        Database::connect(self.config()).unwrap_or_else(|error| panic!("cannot open test database: {error}"))
    }

    /// Opens one connection, set up as the pool would.
    ///
    /// # Panics
    /// When the database cannot be opened.
    #[must_use]
    pub fn connect(&self) -> DbConnection {
        let config = self.config();
        database::connection::ConnectionManager::new(config.target, config.session, config.pool.connection_timeout)
            .establish()
            .unwrap_or_else(|error| panic!("cannot open test database: {error}"))
    }
}

impl TestDb {
    /// Opens one connection as the schema's owner on a migrated PostgreSQL database (for a test
    /// that changes the schema, which the application's login may not), else as
    /// [`TestDb::connect`] does.
    ///
    /// # Panics
    /// When the database cannot be opened.
    #[must_use]
    pub fn connect_as_owner(&self) -> DbConnection {
        let config = self.config().for_migrations();
        database::connection::ConnectionManager::new(config.target, config.session, config.pool.connection_timeout)
            .establish()
            .unwrap_or_else(|error| panic!("cannot open test database as its owner: {error}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::DropPostgres { server, name } = &self.cleanup
            && let Err(error) = server.drop_database(name)
        {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {name}: {error}"
            );
        }
    }
}

/// The PostgreSQL server the tests of this process make their databases on.
struct PostgresServer {
    /// A URL for the server's maintenance database, with credentials.
    admin_url: String,
    /// Where the server is, for people: `TEST_DATABASE_URL` or the container's image.
    description: String,
    /// The migrated template, made on first use.
    template: OnceLock<String>,
    /// Keeps the container, and the process that removes it when this process ends, alive.
    #[cfg(feature = "container")]
    _container: Option<container::RunningContainer>,
}

impl PostgresServer {
    /// The server for this process, found once. `None` only when `REQUIRE_POSTGRES=0` asks to
    /// let PostgreSQL tests pass without a server; otherwise a missing server fails the test.
    fn get() -> Option<&'static Self> {
        static SERVER: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        match SERVER.get_or_init(Self::find) {
            Ok(server) => {
                static ONCE: Once = Once::new();
                // Past the harness's output capture, like the NOT RUN banner: which PostgreSQL ran
                // the tests is part of the result.
                ONCE.call_once(|| {
                    let _ = writeln!(std::io::stderr(), "PostgreSQL tests run on {}", server.description);
                });
                Some(server)
            }
            Err(reason) => {
                if std::env::var("REQUIRE_POSTGRES").is_ok_and(|value| value == "0") {
                    report_postgres_not_run(reason);
                    return None;
                }
                panic!(
                    "no PostgreSQL server for the PostgreSQL tests: {reason}. Start one, set TEST_DATABASE_URL, \
                     or leave these tests out with `cargo test --workspace -- --skip postgres` (the harness then \
                     counts them as filtered out)"
                );
            }
        }
    }

    /// `TEST_DATABASE_URL`; else a container (feature `container`); else a server on this
    /// machine found the way libpq finds one by default.
    fn find() -> Result<Self, String> {
        if let Some(url) = std::env::var("TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
            return Ok(Self::at(url, "the server of TEST_DATABASE_URL".to_owned()));
        }
        let mut reasons = vec!["TEST_DATABASE_URL is not set".to_owned()];
        #[cfg(feature = "container")]
        match container::start() {
            Ok(running) => {
                return Ok(Self {
                    description: format!("a testcontainers container of {} ({})", running.image, running.id),
                    admin_url: running.url.clone(),
                    template: OnceLock::new(),
                    _container: Some(running),
                });
            }
            Err(reason) => reasons.push(reason),
        }
        match local_server() {
            Ok(url) => {
                let description = format!(
                    "the local server at {url} (found through libpq's defaults; TEST_DATABASE_URL chooses another)"
                );
                Ok(Self::at(url, description))
            }
            Err(reason) => {
                reasons.push(reason);
                Err(reasons.join("; "))
            }
        }
    }

    fn at(admin_url: String, description: String) -> Self {
        Self {
            description,
            admin_url,
            template: OnceLock::new(),
            #[cfg(feature = "container")]
            _container: None,
        }
    }

    fn admin(&self) -> PgConnection {
        PgConnection::establish(&self.admin_url)
            .unwrap_or_else(|error| panic!("cannot connect to the test PostgreSQL server: {error}"))
    }

    fn url_of(&self, database: &str) -> String {
        let mut url = url::Url::parse(&self.admin_url).expect("the server URL is a valid URL");
        url.set_path(database);
        url.into()
    }

    fn create_database(&'static self, template: &str) -> TestDb {
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        // Identifiers cannot be bound parameters; both names are generated from [a-z0-9_] only.
        self.admin()
            .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
            .unwrap_or_else(|error| panic!("cannot create test database {name} from {template}: {error}"));
        let target = DatabaseTarget::postgres_url(&self.url_of(&name)).expect("a test database URL is valid");
        TestDb {
            target,
            owner: None,
            cleanup: Cleanup::DropPostgres { server: self, name },
        }
    }

    /// `database` on this server as `role`, with the test roles' password as libpq parameters
    /// (which take precedence over the URL's own user and password).
    fn url_as(&self, role: &RoleName, database: &str) -> String {
        let url = self.url_of(database);
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}user={role}&password={TEST_ROLE_PASSWORD}")
    }

    fn target_as(&self, role: &RoleName, database: &str) -> DatabaseTarget {
        DatabaseTarget::postgres_url(&self.url_as(role, database)).expect("a test database URL is valid")
    }

    fn drop_database(&self, name: &str) -> QueryResult<()> {
        let mut admin = PgConnection::establish(&self.admin_url)
            .map_err(|error| diesel::result::Error::QueryBuilderError(error.into()))?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
    }

    /// The name of the migrated template, making it if this server does not have it yet.
    fn template(&self) -> &str {
        self.template.get_or_init(|| {
            let name = template_name();
            self.ensure_template(&name)
                .unwrap_or_else(|error| panic!("cannot prepare template database {name}: {error}"));
            name
        })
    }

    /// Makes the template under an advisory lock, so concurrent test processes build it once.
    /// It is built under a unique temporary name, marked as a template and renamed into place
    /// last, so the template's name only ever names a finished template; a process that dies
    /// half-way leaves a `..._building_<uuid>` database behind, never a half-built template.
    fn ensure_template(&self, name: &str) -> Result<(), String> {
        let text = |error: diesel::result::Error| error.to_string();
        let mut admin = self.admin();
        lock_templates(&mut admin)?;
        let result = (|| {
            if database_exists(&mut admin, name).map_err(text)? {
                return Ok(());
            }
            let building = format!("{name}_building_{}", uuid::Uuid::now_v7().simple());
            admin
                .batch_execute(&format!("CREATE DATABASE \"{building}\" TEMPLATE template0"))
                .map_err(text)?;
            let built = self.migrate(&building).and_then(|()| {
                // One statement per call: several in one string run as one transaction, which
                // ALTER DATABASE refuses.
                admin
                    .batch_execute(&format!(
                        "ALTER DATABASE \"{building}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
                    ))
                    .and_then(|()| admin.batch_execute(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"")))
                    .map_err(text)
            });
            match built {
                Ok(()) => Ok(()),
                Err(error) => {
                    discard(&mut admin, &building);
                    // Another process whose lock lives in another maintenance database may have
                    // published the same template first.
                    if database_exists(&mut admin, name).map_err(text)? {
                        Ok(())
                    } else {
                        Err(error)
                    }
                }
            }
        })();
        let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(TEMPLATE_LOCK)
            .execute(&mut admin);
        result.and(unlocked.map(drop).map_err(text))
    }

    /// Sets `database` up with the test roles (as the administrator), applies every embedded
    /// migration through the start-up runner as the schema's owner, and sets the roles up again,
    /// as a deployment does (`dbctl roles setup`, `dbctl migrate` over `DATABASE_MIGRATION_URL`,
    /// `dbctl roles setup`).
    fn migrate(&self, database: &str) -> Result<(), String> {
        let text = |error: &dyn std::fmt::Display| error.to_string();
        let open = |url: &str| {
            let config = DatabaseConfig::new(DatabaseTarget::postgres_url(url).map_err(|error| text(&error))?);
            database::connection::ConnectionManager::new(config.target, config.session, config.pool.connection_timeout)
                .establish()
                .map_err(|error| text(&error))
        };
        let names = test_roles();
        let password = || Some(SecretString::from(TEST_ROLE_PASSWORD.to_owned()));
        let options = SetupOptions {
            owner_password: password(),
            readonly_password: password(),
            monitor_password: password(),
            context: OperatorContext::operator("test-fixtures").map_err(|error| text(&error))?,
        };
        let mut admin = open(&self.url_of(database))?;
        security::setup_roles(&mut admin, &names, &options).map_err(|error| text(&error))?;
        for login in &names.app_logins {
            security::roles::set_password(&mut admin, login, &SecretString::from(TEST_ROLE_PASSWORD.to_owned()))
                .map_err(|error| text(&error))?;
        }
        let mut owner = open(&self.url_as(&names.owner, database))?;
        Migrator::embedded(Backend::Postgres, MigrationSettings::default())
            .run(&mut owner)
            .map_err(|error| text(&error))?;
        drop(owner);
        // Again after the first migration, as docs/SECURITY.md says (the read-only role's
        // reading of users is narrowed once the table exists).
        security::setup_roles(&mut admin, &names, &options)
            .map(drop)
            .map_err(|error| text(&error))
    }
}

/// Advisory lock key for building templates: "tmpl" in ASCII, distinct from the migration
/// runner's key. Advisory locks are per database: processes whose URLs name different maintenance
/// databases do not exclude each other, which `ensure_template` tolerates.
const TEMPLATE_LOCK: i64 = 0x746d_706c;

/// How long a process waits for another one to finish building the template.
const TEMPLATE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_mins(2);

/// Takes [`TEMPLATE_LOCK`], polling (a blocked `pg_advisory_lock` would hang silently).
fn lock_templates(admin: &mut PgConnection) -> Result<(), String> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let deadline = std::time::Instant::now() + TEMPLATE_LOCK_WAIT;
    loop {
        let locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<BigInt, _>(TEMPLATE_LOCK)
            .get_result::<Locked>(admin)
            .map_err(|error| error.to_string())?;
        if locked.locked {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "another test process held the template lock for over {} s",
                TEMPLATE_LOCK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn database_exists(admin: &mut PgConnection, name: &str) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        found: i64,
    }
    diesel::sql_query("SELECT count(*) AS found FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result::<Found>(admin)
        .map(|found| found.found > 0)
}

/// Drops a half-built template, which may already be marked as one; best effort.
fn discard(admin: &mut PgConnection, name: &str) {
    let _ = admin.batch_execute(&format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE false"));
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
}

/// Part of the template digest: bump it when a template built by the same migrations would still
/// differ, for example when the runner's own bookkeeping tables change.
const TEMPLATE_FORMAT: &str =
    "template format 4: least-privilege roles with a monitor, migrated by the owner, set up again";

/// `test_template_<digest>`: the digest covers [`TEMPLATE_FORMAT`] and every embedded PostgreSQL
/// migration's name and both checksums, so any change to the migrations gets a fresh template.
#[must_use]
pub fn template_name() -> String {
    let summary = std::iter::once(TEMPLATE_FORMAT.to_owned())
        .chain(
            MigrationSet::embedded(Backend::Postgres)
                .migrations()
                .iter()
                .map(|migration| [migration.name(), migration.up_checksum(), migration.down_checksum()].join(" ")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let digest = checksum(&summary);
    format!("test_template_{}", &digest[..16])
}

/// A PostgreSQL server on this machine on which the tests may create databases, tried the way
/// libpq connects by default (its `PG*` variables, then Debian's socket directory, then
/// localhost), as the libpq default user and as `postgres`. Only URLs without passwords.
fn local_server() -> Result<String, String> {
    let candidates = [
        "postgresql:///postgres",
        "postgresql:///postgres?host=/var/run/postgresql",
        "postgresql://localhost/postgres",
        "postgresql://postgres@localhost/postgres",
        "postgresql:///postgres?host=/var/run/postgresql&user=postgres",
    ];
    let mut refused = Vec::new();
    for url in candidates {
        let with_timeout = format!("{url}{}connect_timeout=2", if url.contains('?') { '&' } else { '?' });
        match PgConnection::establish(&with_timeout) {
            Ok(mut connection) => match can_create_databases(&mut connection) {
                Ok(true) => return Ok(url.to_owned()),
                Ok(false) => refused.push(format!("{url}: the role may not create databases")),
                Err(error) => refused.push(format!("{url}: {error}")),
            },
            Err(error) => refused.push(format!("{url}: {}", error.to_string().trim())),
        }
    }
    Err(format!("no local server took a connection ({})", refused.join("; ")))
}

fn can_create_databases(connection: &mut PgConnection) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Allowed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        allowed: bool,
    }
    diesel::sql_query("SELECT rolcreatedb OR rolsuper AS allowed FROM pg_roles WHERE rolname = current_user")
        .get_result::<Allowed>(connection)
        .map(|row| row.allowed)
}

fn report_postgres_not_run(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Written to the process's stderr, not through eprintln!, so the test harness's output
        // capture does not hide it behind a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** PostgreSQL tests NOT RUN (REQUIRE_POSTGRES=0): {reason}. They returned early and count \
             as passed here; `cargo test --workspace -- --skip postgres` counts them as filtered out \
             instead. ***\n"
        );
    });
}

#[cfg(feature = "container")]
mod container {
    //! One PostgreSQL container per test process, removed when the process ends, however it ends.

    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    use std::process::{Child, ChildStdin, Command, Stdio};

    use testcontainers::runners::SyncRunner;
    use testcontainers::{Container, ImageExt};
    use testcontainers_modules::postgres::Postgres;

    /// The image used when `TEST_POSTGRES_IMAGE` / `TEST_POSTGRES_TAG` are not set.
    pub const DEFAULT_IMAGE: &str = "postgres";
    /// See [`DEFAULT_IMAGE`].
    pub const DEFAULT_TAG: &str = "18-alpine";

    pub struct RunningContainer {
        pub url: String,
        pub image: String,
        pub id: String,
        _container: Container<Postgres>,
        /// The reaper's stdin: when this process ends, for any reason, the pipe closes and the
        /// reaper removes the container (the pattern of testcontainers' Ryuk, without a daemon).
        _reaper: Option<(Child, ChildStdin)>,
    }

    pub fn start() -> Result<RunningContainer, String> {
        let setting = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let image = setting("TEST_POSTGRES_IMAGE", DEFAULT_IMAGE);
        let tag = setting("TEST_POSTGRES_TAG", DEFAULT_TAG);
        let container = Postgres::default()
            .with_name(image.clone())
            .with_tag(tag.clone())
            .start()
            .map_err(|error| {
                format!("TEST_DATABASE_URL is not set and no PostgreSQL container ({image}:{tag}) could start: {error}")
            })?;
        let host = container
            .get_host()
            .map_err(|error| format!("cannot tell where the PostgreSQL container runs: {error}"))?;
        let port = container
            .get_host_port_ipv4(5432)
            .map_err(|error| format!("the PostgreSQL container publishes no port: {error}"))?;
        let reaper = spawn_reaper(container.id());
        if reaper.is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "warning: no `docker` command to remove test container {} when the tests end",
                container.id()
            );
        }
        Ok(RunningContainer {
            image: format!("{image}:{tag}"),
            id: container.id().to_owned(),
            url: format!("postgres://postgres:postgres@{host}:{port}/postgres"),
            _container: container,
            _reaper: reaper,
        })
    }

    fn spawn_reaper(id: &str) -> Option<(Child, ChildStdin)> {
        Command::new("docker")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(std::process::ExitStatus::success)?;
        let mut child = Command::new("sh")
            .arg("-c")
            // Ctrl-C, `timeout` and CI cancellations signal the whole process group: the reaper
            // ignores them and runs in a group of its own, so it outlives the tests it cleans up.
            .arg(r#"trap '' INT TERM HUP QUIT; read _ignored; exec docker rm --force --volumes "$0" >/dev/null 2>&1"#)
            .arg(id)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        Some((child, stdin))
    }
}
