//! Database configuration read from the environment: which database, how to pool, which timeouts.
//!
//! Precedence: `DATABASE_URL`; else any `DATABASE_HOST`/`PORT`/`NAME`/`USER`/`PASSWORD`/`SSLMODE`
//! composes a PostgreSQL URL; else the embedded SQLite file [`DEFAULT_SQLITE_PATH`]. Empty values
//! count as unset. Passwords never reach `Debug`, `Display`, logs or error messages.

use std::env::VarError;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;

/// The embedded database used when nothing is configured, relative to the working directory.
pub const DEFAULT_SQLITE_PATH: &str = "data/attendance.sqlite3";

/// Every variable this module reads, in the order the README documents them.
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "DATABASE_SSLMODE",
    "DATABASE_SSLROOTCERT",
    "DATABASE_SSLCERT",
    "DATABASE_SSLKEY",
    "DATABASE_USER_FILE",
    "DATABASE_PASSWORD_FILE",
    "DATABASE_POOL_MAX_SIZE",
    "DATABASE_POOL_MIN_IDLE",
    "DATABASE_POOL_IDLE_TIMEOUT_MS",
    "DATABASE_POOL_CONNECTION_TIMEOUT_MS",
    "DATABASE_POOL_TEST_ON_CHECKOUT",
    "DATABASE_POOL_VALIDATE_IDLE_AFTER_MS",
    "DATABASE_POOL_MAX_LIFETIME_MS",
    "DATABASE_STATEMENT_TIMEOUT_MS",
    "DATABASE_LOCK_TIMEOUT_MS",
    "DATABASE_SQLITE_BUSY_TIMEOUT_MS",
    "DATABASE_APPLICATION_NAME",
    "DATABASE_SLOW_QUERY_MS",
    "DATABASE_QUERY_METRICS",
    "DATABASE_MIGRATION_URL",
    "DATABASE_MIGRATION_PASSWORD_FILE",
    "DATABASE_MIGRATION_LOCK_WAIT_MS",
    "DATABASE_MIGRATION_LOCK_TIMEOUT_MS",
    "DATABASE_MIGRATION_STATEMENT_TIMEOUT_MS",
];

const COMPOSED_VARIABLES: &[&str] = &[
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "DATABASE_SSLMODE",
    "DATABASE_SSLROOTCERT",
    "DATABASE_SSLCERT",
    "DATABASE_SSLKEY",
];

const SSL_MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A configuration problem, naming the variable at fault and never a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} {problem}")]
pub struct ConfigError {
    /// The environment variable (or, for values built in code, the setting) at fault.
    pub variable: &'static str,
    /// What is wrong with it, lower-case, without the value when the value may be secret.
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

/// Which database engine a [`DatabaseTarget`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL: production.
    Postgres,
    /// SQLite: the embedded default and the in-memory test database.
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        })
    }
}

/// Where the database is. Holds the driver's connection string as a secret; `Debug` and
/// `Display` show a redacted form.
#[derive(Clone)]
pub struct DatabaseTarget {
    backend: Backend,
    connection_string: SecretString,
    redacted: String,
    secrets: Vec<SecretString>,
    source: &'static str,
    /// For an in-memory database: the RAM-backed directory that holds it, removed when the last
    /// clone of this target is dropped.
    in_memory: Option<Arc<TempDir>>,
    /// Files the user name and the password are read from for every new connection.
    credential_files: CredentialFiles,
}

/// Files that hold a PostgreSQL user name and password (the convention of container secrets),
/// read again for every new connection, so that a rotated credential takes effect without a
/// restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialFiles {
    /// The user name's file and the variable that named it (`DATABASE_USER_FILE`).
    pub user: Option<(PathBuf, &'static str)>,
    /// The password's file and the variable that named it (`DATABASE_PASSWORD_FILE`,
    /// `DATABASE_MIGRATION_PASSWORD_FILE`).
    pub password: Option<(PathBuf, &'static str)>,
}

/// A connection string as the driver gets it, with the credentials read from their files just
/// now. Never log it.
pub struct ConnectionString {
    text: SecretString,
    /// The user name read from its file, if one was.
    user: Option<String>,
}

impl ConnectionString {
    /// The text for the driver.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }

    /// The user name read from `DATABASE_USER_FILE` for this connection, if that is set.
    #[must_use]
    pub fn user_from_file(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// How many times [`CredentialFiles::read`] reads the files again when the user name changed
/// while it read the password (a rotation swapped the files in between).
const CREDENTIAL_READ_ATTEMPTS: usize = 5;

impl CredentialFiles {
    fn is_empty(&self) -> bool {
        self.user.is_none() && self.password.is_none()
    }

    /// The user name and password, read so that they belong together: the user name is read
    /// before and after the password, and all three are read again when it changed in between.
    /// A rotation that swaps both files at once (`dbctl roles rotate` writes them as Kubernetes
    /// writes a secret volume: a new directory, then one atomic rename of the `..data` link) can
    /// then never hand out one login's name with the other's password.
    fn read(&self) -> Result<(Option<String>, Option<String>), ConfigError> {
        let read = |file: &Option<(PathBuf, &'static str)>| {
            file.as_ref()
                .map(|(path, variable)| read_secret(path, variable))
                .transpose()
        };
        for attempt in 1..=CREDENTIAL_READ_ATTEMPTS {
            let pair = read(&self.user).and_then(|user| Ok((user, read(&self.password)?, read(&self.user)?)));
            match pair {
                Ok((user, password, user_again)) if user == user_again => return Ok((user, password)),
                Ok(_) => {}
                // A file that went between resolving its directory and opening it (the directory
                // of an older rotation, removed): read the new one.
                Err(SecretFileError { missing: true, .. }) if attempt < CREDENTIAL_READ_ATTEMPTS => {}
                Err(SecretFileError { error, .. }) => return Err(error),
            }
        }
        let variable = self
            .user
            .as_ref()
            .map_or("DATABASE_USER_FILE", |(_, variable)| variable);
        Err(ConfigError::new(
            variable,
            format!("kept changing while it was read ({CREDENTIAL_READ_ATTEMPTS} attempts)"),
        ))
    }
}

/// The contents of a secret file without its final line break (`echo secret > file`); any other
/// whitespace belongs to the secret. Errors name the variable and the path, never the contents.
pub fn read_secret_file(path: &Path, variable: &'static str) -> Result<String, ConfigError> {
    read_secret(path, variable).map_err(|failed| failed.error)
}

/// Why a secret file could not be read: the error, and whether the file was missing.
struct SecretFileError {
    missing: bool,
    error: ConfigError,
}

impl From<ConfigError> for SecretFileError {
    fn from(error: ConfigError) -> Self {
        Self { missing: false, error }
    }
}

fn read_secret(path: &Path, variable: &'static str) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| SecretFileError {
        missing: error.kind() == std::io::ErrorKind::NotFound,
        error: ConfigError::new(variable, format!("cannot be read ({}): {error}", path.display())),
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(ConfigError::new(variable, format!("names an empty file ({})", path.display())).into());
    }
    if text.contains('\0') {
        return Err(ConfigError::new(variable, format!("holds a NUL character ({})", path.display())).into());
    }
    Ok(text.to_owned())
}

impl DatabaseTarget {
    /// A PostgreSQL URL (`postgres://` or `postgresql://`), as given in `DATABASE_URL`.
    pub fn postgres_url(url: &str) -> Result<Self, ConfigError> {
        Self::parse_postgres_url(url, "DATABASE_URL")
    }

    /// A SQLite database file, created if it does not exist (its directory must exist).
    pub fn sqlite_file(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_string_lossy().into_owned();
        Self {
            backend: Backend::Sqlite,
            connection_string: SecretString::from(path.clone()),
            redacted: path,
            secrets: Vec::new(),
            source: "DATABASE_URL",
            in_memory: None,
            credential_files: CredentialFiles::default(),
        }
    }

    /// A private in-memory SQLite database: a file in a RAM-backed temporary directory
    /// (`/dev/shm` where it exists, else the system's temporary directory), in WAL mode like the
    /// embedded default, removed when the last clone of this target (and every pool opened on it)
    /// is gone.
    ///
    /// SQLite's own in-memory databases differ from a file in ways tests would inherit: shared
    /// cache mode takes table locks that ignore `busy_timeout`, and the memdb VFS makes readers
    /// wait while another connection holds the write lock (a connection that had read the schema
    /// before the migrations then failed with "no such table" instead of waiting). A file in
    /// memory locks exactly as the embedded default does.
    pub fn sqlite_in_memory() -> Result<Self, ConfigError> {
        let shared_memory = Path::new("/dev/shm");
        let parent = if shared_memory.is_dir() {
            shared_memory.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let directory = tempfile::Builder::new()
            .prefix("repo-diesel-memory-")
            .tempdir_in(&parent)
            .map_err(|error| {
                ConfigError::new(
                    "DATABASE_URL",
                    format!(
                        "cannot make a directory for an in-memory database in {}: {error}",
                        parent.display()
                    ),
                )
            })?;
        let path = directory.path().join("memory.sqlite3").to_string_lossy().into_owned();
        Ok(Self {
            backend: Backend::Sqlite,
            connection_string: SecretString::from(path.clone()),
            redacted: path,
            secrets: Vec::new(),
            source: "DATABASE_URL",
            in_memory: Some(Arc::new(directory)),
            credential_files: CredentialFiles::default(),
        })
    }

    /// Which engine this target is.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The variable that chose this target: `DATABASE_URL`, `DATABASE_HOST` (for the composed
    /// URL) or `default` (the embedded SQLite file).
    #[must_use]
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// True for an in-memory SQLite database.
    #[must_use]
    pub fn is_in_memory(&self) -> bool {
        self.in_memory.is_some()
    }

    /// The connection string with any password replaced by `***`: safe for logs and errors.
    #[must_use]
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The connection string to hand to the driver, with the user name and password read from
    /// their files (`DATABASE_USER_FILE`, `DATABASE_PASSWORD_FILE`) just now, as the query
    /// parameters `user` and `password`, which libpq takes over the URL's own. Never log it.
    ///
    /// # Errors
    /// A credential file that cannot be read, is empty or holds a NUL character.
    pub fn connection_string(&self) -> Result<ConnectionString, ConfigError> {
        let base = self.connection_string.expose_secret();
        if self.credential_files.is_empty() {
            return Ok(ConnectionString {
                text: SecretString::from(base.to_owned()),
                user: None,
            });
        }
        let (user, password) = self.credential_files.read()?;
        let mut text = base.to_owned();
        for (name, value) in [("user", &user), ("password", &password)] {
            if let Some(value) = value {
                text.push(if text.contains('?') { '&' } else { '?' });
                text.push_str(name);
                text.push('=');
                text.push_str(&utf8_percent_encode(value, COMPONENT).to_string());
            }
        }
        Ok(ConnectionString {
            text: SecretString::from(text),
            user,
        })
    }

    /// [`Self::connection_string`] as text, for tests and tools that take a URL. Never log it.
    ///
    /// # Panics
    /// When a credential file cannot be read.
    #[must_use]
    pub fn expose_connection_string(&self) -> String {
        self.connection_string()
            .unwrap_or_else(|error| panic!("{error}"))
            .expose()
            .to_owned()
    }

    /// The files credentials are read from for every new connection.
    #[must_use]
    pub fn credential_files(&self) -> &CredentialFiles {
        &self.credential_files
    }

    /// This target with its user name and password read from `files` for every new connection.
    /// For PostgreSQL only: `ConfigError` on SQLite, and when the URL already holds a password
    /// and `files` name a password file too.
    pub fn with_credential_files(mut self, files: CredentialFiles) -> Result<Self, ConfigError> {
        if files.is_empty() {
            return Ok(self);
        }
        let variable = files
            .password
            .as_ref()
            .or(files.user.as_ref())
            .map_or("DATABASE_PASSWORD_FILE", |(_, variable)| *variable);
        if self.backend != Backend::Postgres {
            return Err(ConfigError::new(
                variable,
                "applies to PostgreSQL only, and the database is SQLite",
            ));
        }
        if files.password.is_some() && !self.secrets.is_empty() {
            return Err(ConfigError::new(
                variable,
                format!(
                    "is set, but {} already holds a password: give one or the other",
                    self.source
                ),
            ));
        }
        // Fail at start-up rather than at the first connection.
        files.read()?;
        if files.password.is_some() {
            self.redacted.push(if self.redacted.contains('?') { '&' } else { '?' });
            self.redacted.push_str("password=***");
        }
        self.credential_files = files;
        Ok(self)
    }

    /// Removes every password, raw or percent-encoded, from a message produced by a driver: those
    /// of the connection string and, read again now, the one in the password file.
    #[must_use]
    pub fn scrub(&self, message: &str) -> String {
        let mut scrubbed = message.to_owned();
        let from_file = self
            .credential_files
            .password
            .as_ref()
            .and_then(|(path, variable)| read_secret_file(path, variable).ok())
            .map(SecretString::from);
        for secret in self.secrets.iter().chain(from_file.as_ref()) {
            let raw = secret.expose_secret();
            scrubbed = scrubbed
                .replace(&utf8_percent_encode(raw, COMPONENT).to_string(), "***")
                .replace(raw, "***");
        }
        scrubbed
    }

    /// A warning when this PostgreSQL target reaches a host that is not this machine (not a
    /// loopback address, `localhost` or a socket directory) with an `sslmode` below
    /// `verify-full`: such a connection may be unencrypted (`disable`, `allow`, `prefer`) or go
    /// to an impostor (`require`, `verify-ca` with a public CA). `None` otherwise, and for SQLite.
    /// The host and `sslmode` are read from the URL (its last `host` and `sslmode` parameters
    /// win, as in libpq), else from `PGHOST` and `PGSSLMODE`, else libpq's defaults (a socket,
    /// `prefer`); an address to dial (`hostaddr`, `PGHOSTADDR`) off this machine counts too.
    #[must_use]
    pub fn tls_warning(&self) -> Option<String> {
        self.tls_warning_with(|name| std::env::var(name).ok())
    }

    fn tls_warning_with(&self, environment: impl Fn(&str) -> Option<String>) -> Option<String> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let url = self.connection_string.expose_secret();
        let parameter = |name: &str| last_query_parameter(url, name).map(percent_decode);
        let hosts = parameter("host")
            .or_else(|| url_hosts(url).filter(|hosts| !hosts.is_empty()))
            .or_else(|| environment("PGHOST"))
            .unwrap_or_default();
        let sslmode = parameter("sslmode")
            .or_else(|| environment("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".to_owned());
        if sslmode == "verify-full" {
            return None;
        }
        // libpq dials `hostaddr` when it is given, and verifies `host`: either one off this
        // machine is a connection that needs verify-full.
        let addresses = parameter("hostaddr")
            .or_else(|| environment("PGHOSTADDR"))
            .unwrap_or_default();
        let remote: Vec<&str> = hosts
            .split(',')
            .chain(addresses.split(','))
            .map(str::trim)
            .filter(|host| !host.is_empty() && !is_local_host(host))
            .collect();
        if remote.is_empty() {
            return None;
        }
        Some(format!(
            "PostgreSQL host {} is not on this machine and sslmode is {sslmode}: the connection may be \
             unencrypted or reach an impostor; set DATABASE_SSLMODE=verify-full (and DATABASE_SSLROOTCERT \
             to the server's CA), or sslmode=verify-full in {}",
            remote.join(", "),
            self.source
        ))
    }

    /// Finds the secrets in a PostgreSQL URL and builds its redacted form. The URL itself is left
    /// to libpq, whose error at start-up names the variable: URLs that libpq accepts but generic
    /// URL parsers reject (several hosts, an empty host with `?host=/socket`) keep working.
    fn parse_postgres_url(url: &str, variable: &'static str) -> Result<Self, ConfigError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(ConfigError::new(variable, "is not a postgres:// or postgresql:// URL"));
        };
        let mut secrets = Vec::new();
        let mut redacted = format!("{scheme}://");
        // The user information ends at the last '@', so a password with a raw '/', '?' or '@'
        // is still hidden (at worst more than the password is).
        let location = match rest.rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                if let Some((user, password)) = userinfo.split_once(':') {
                    secrets.push(password.to_owned());
                    secrets.push(percent_decode(password));
                    redacted.push_str(user);
                    redacted.push_str(":***@");
                } else {
                    redacted.push_str(userinfo);
                    redacted.push('@');
                }
                &rest[at + 1..]
            }
            None => rest,
        };
        match location.split_once('?') {
            Some((path, query)) => {
                redacted.push_str(path);
                redacted.push('?');
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some(("password", value)) => {
                            secrets.push(value.to_owned());
                            secrets.push(percent_decode(value));
                            "password=***".to_owned()
                        }
                        _ => pair.to_owned(),
                    })
                    .collect();
                redacted.push_str(&pairs.join("&"));
            }
            None => redacted.push_str(location),
        }
        Ok(Self {
            backend: Backend::Postgres,
            connection_string: SecretString::from(url.to_owned()),
            redacted,
            secrets: secrets
                .into_iter()
                .filter(|secret| !secret.is_empty())
                .map(SecretString::from)
                .collect(),
            source: variable,
            in_memory: None,
            credential_files: CredentialFiles::default(),
        })
    }
}

/// The last value of `name` in a URL's query, still percent-encoded.
pub(crate) fn last_query_parameter<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .rev()
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The host names of a libpq URL's authority (`host1:5432,host2`), decoded and without ports;
/// `None` when it has none.
fn url_hosts(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    let names: Vec<String> = hosts
        .split(',')
        .map(|host| {
            if let Some(bracketed) = host.strip_prefix('[') {
                bracketed.split(']').next().unwrap_or_default().to_owned()
            } else {
                percent_decode(host.split(':').next().unwrap_or_default())
            }
        })
        .filter(|host| !host.is_empty())
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// A socket directory (`/…`, or `@…` for an abstract socket), `localhost`, or a loopback address.
fn is_local_host(host: &str) -> bool {
    host.starts_with('/')
        || host.starts_with('@')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseTarget")
            .field("backend", &self.backend)
            .field("url", &self.redacted)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// r2d2 pool settings. Defaults follow the project guidelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DATABASE_POOL_MAX_SIZE`: most connections open at once (default 20).
    pub max_size: u32,
    /// `DATABASE_POOL_MIN_IDLE`: spare connections the pool keeps idle at all times, beside the
    /// ones in use (r2d2's `min_idle`; default 0). With 1, a single caller already holds two
    /// server sessions: r2d2 opens a spare as soon as the idle connection is checked out, and
    /// replaces it every `idle_timeout` while it stays unused. The start-up check does not need
    /// it: [`crate::Database::connect`] opens its first connection itself, so a bad configuration
    /// fails there, and hands that connection to the pool.
    pub min_idle: u32,
    /// `DATABASE_POOL_IDLE_TIMEOUT_MS`: an idle connection above `min_idle` is closed after this
    /// long (default 30 s).
    pub idle_timeout: Duration,
    /// `DATABASE_POOL_CONNECTION_TIMEOUT_MS`: how long a checkout (or start-up) waits for a
    /// connection before failing (default 2 s).
    pub connection_timeout: Duration,
    /// `DATABASE_POOL_TEST_ON_CHECKOUT`: validate connections before handing them out (default
    /// true): those idle for at least `validate_idle_after` get a ping, a round trip. `false`
    /// turns validation off entirely. Either way a call that finds its connection closed by the
    /// server gets `Unavailable` and the pool drops that connection (diesel reports a
    /// connection as broken only when its transaction state is, so the repositories mark it
    /// lost), so a dead connection fails at most one call.
    pub test_on_check_out: bool,
    /// `DATABASE_POOL_VALIDATE_IDLE_AFTER_MS`: with `test_on_check_out`, a connection is pinged
    /// before it is handed out only when it has been back in the pool at least this long
    /// (default 500 ms; 0 pings on every checkout). A connection used within the window skips
    /// the ping, as in the JVM's `HikariCP` (`aliveBypassWindowMs`): the ping doubled the round
    /// trips of a one-query call. If the server closed such a connection meanwhile, the one call
    /// on it fails with `Unavailable` and the connection is dropped.
    pub validate_idle_after: Duration,
    /// `DATABASE_POOL_MAX_LIFETIME_MS`: a connection this old is closed when it comes back to
    /// the pool (and an idle one by r2d2's reaper, every 30 s), so that sessions opened with a
    /// credential that was rotated since end within this long (default 30 min, r2d2's own).
    pub max_lifetime: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 20,
            min_idle: 0,
            idle_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(2),
            test_on_check_out: true,
            validate_idle_after: Duration::from_millis(500),
            max_lifetime: Duration::from_mins(30),
        }
    }
}

/// Settings applied to every new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: PostgreSQL `statement_timeout` (default 30 s; 0 disables).
    pub statement_timeout: Duration,
    /// `DATABASE_LOCK_TIMEOUT_MS`: PostgreSQL `lock_timeout` (default 5 s; 0 disables).
    pub lock_timeout: Duration,
    /// `DATABASE_SQLITE_BUSY_TIMEOUT_MS`: SQLite `busy_timeout` (default 5 s).
    pub sqlite_busy_timeout: Duration,
    /// `DATABASE_APPLICATION_NAME`: PostgreSQL `application_name`, shown in `pg_stat_activity`
    /// (default: the executable's name).
    pub application_name: String,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            application_name: default_application_name(),
        }
    }
}

/// What the pool measures (see [`crate::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `DATABASE_SLOW_QUERY_MS`: a statement that takes at least this long is counted as slow
    /// and logged at WARN with its SQL text and duration, never its bound values (default
    /// 1000 ms, the guidelines' threshold; 0 logs none).
    pub slow_query: Duration,
    /// `DATABASE_QUERY_METRICS`: time every statement into the duration histograms (default
    /// true). Off, statements are neither timed nor logged as slow; the pool is still counted.
    pub query_metrics: bool,
}

impl MetricsSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            slow_query: millis(get, "DATABASE_SLOW_QUERY_MS", 0)?.unwrap_or(defaults.slow_query),
            query_metrics: boolean(get, "DATABASE_QUERY_METRICS")?.unwrap_or(defaults.query_metrics),
        })
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            slow_query: Duration::from_secs(1),
            query_metrics: true,
        }
    }
}

/// Settings of the start-up migration runner, `migrator::Migrator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSettings {
    /// `DATABASE_MIGRATION_LOCK_WAIT_MS`: how long a runner waits for another runner's lock
    /// before giving up and naming the holder (default 60 s).
    pub lock_wait: Duration,
    /// How often a waiting runner tries the lock again (100 ms).
    pub lock_poll_interval: Duration,
    /// `DATABASE_MIGRATION_LOCK_TIMEOUT_MS`: PostgreSQL `lock_timeout` for migration sessions, so
    /// a migration never queues behind application locks for long (default 5 s).
    pub lock_timeout: Duration,
    /// `DATABASE_MIGRATION_STATEMENT_TIMEOUT_MS`: PostgreSQL `statement_timeout` for migration
    /// sessions (default 15 min; 0 disables).
    pub statement_timeout: Duration,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            lock_wait: Duration::from_mins(1),
            lock_poll_interval: Duration::from_millis(100),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_mins(15),
        }
    }
}

/// Everything needed to open a [`crate::Database`] and migrate it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Where the database is.
    pub target: DatabaseTarget,
    /// How connections are pooled.
    pub pool: PoolSettings,
    /// What every connection is set up with.
    pub session: SessionSettings,
    /// What the pool measures.
    pub metrics: MetricsSettings,
    /// How the start-up migration runner behaves.
    pub migration: MigrationSettings,
    /// `DATABASE_MIGRATION_URL` (with `DATABASE_MIGRATION_PASSWORD_FILE`): the connection
    /// migrations run over, as the role that owns the schema, when the application connects as
    /// a role that may not change it. `None`: migrations run over the application's connection.
    pub migration_target: Option<DatabaseTarget>,
}

impl DatabaseConfig {
    /// A configuration for `target` with default pool, session and migration settings.
    #[must_use]
    pub fn new(target: DatabaseTarget) -> Self {
        Self {
            target,
            pool: PoolSettings::default(),
            session: SessionSettings::default(),
            metrics: MetricsSettings::default(),
            migration: MigrationSettings::default(),
            migration_target: None,
        }
    }

    /// The configuration that migrations and operator commands use: this one with the
    /// migration target (`DATABASE_MIGRATION_URL`) as its target when one is set.
    #[must_use]
    pub fn for_migrations(&self) -> Self {
        let mut config = self.clone();
        if let Some(target) = config.migration_target.take() {
            config.target = target;
        }
        config
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        for &variable in VARIABLES {
            if let Err(VarError::NotUnicode(_)) = std::env::var(variable) {
                return Err(ConfigError::new(variable, "is not valid UTF-8"));
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, which returns a variable's value or `None`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let credential_files = CredentialFiles {
            user: get("DATABASE_USER_FILE").map(|path| (PathBuf::from(path), "DATABASE_USER_FILE")),
            password: get("DATABASE_PASSWORD_FILE").map(|path| (PathBuf::from(path), "DATABASE_PASSWORD_FILE")),
        };
        let target = if let Some(url) = get("DATABASE_URL") {
            let ignored: Vec<&str> = COMPOSED_VARIABLES
                .iter()
                .copied()
                .filter(|name| get(name).is_some())
                .collect();
            if !ignored.is_empty() {
                tracing::warn!(?ignored, "DATABASE_URL is set, so these variables are ignored");
            }
            parse_database_url(url.trim())?
        } else if COMPOSED_VARIABLES.iter().any(|name| get(name).is_some()) {
            compose_postgres_url(&get, &lookup)?
        } else {
            let mut target = DatabaseTarget::sqlite_file(DEFAULT_SQLITE_PATH);
            target.source = "default";
            target
        };
        let target = target.with_credential_files(credential_files)?;
        let migration_target = match get("DATABASE_MIGRATION_URL") {
            Some(url) => {
                let url = url.trim();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::new(
                        "DATABASE_MIGRATION_URL",
                        "must be a postgres:// or postgresql:// URL (SQLite needs no separate migration role)",
                    ));
                }
                if target.backend() != Backend::Postgres {
                    return Err(ConfigError::new(
                        "DATABASE_MIGRATION_URL",
                        "is set, but the database is SQLite: migrations run over its one connection",
                    ));
                }
                let files = CredentialFiles {
                    user: None,
                    password: get("DATABASE_MIGRATION_PASSWORD_FILE")
                        .map(|path| (PathBuf::from(path), "DATABASE_MIGRATION_PASSWORD_FILE")),
                };
                Some(DatabaseTarget::parse_postgres_url(url, "DATABASE_MIGRATION_URL")?.with_credential_files(files)?)
            }
            None if get("DATABASE_MIGRATION_PASSWORD_FILE").is_some() => {
                return Err(ConfigError::new(
                    "DATABASE_MIGRATION_PASSWORD_FILE",
                    "is set without DATABASE_MIGRATION_URL, the connection it is the password of",
                ));
            }
            None => None,
        };

        let defaults = PoolSettings::default();
        let pool = PoolSettings {
            max_size: number(&get, "DATABASE_POOL_MAX_SIZE", 1, 10_000)?.unwrap_or(defaults.max_size),
            min_idle: number(&get, "DATABASE_POOL_MIN_IDLE", 0, 10_000)?.unwrap_or(defaults.min_idle),
            idle_timeout: millis(&get, "DATABASE_POOL_IDLE_TIMEOUT_MS", 1)?.unwrap_or(defaults.idle_timeout),
            connection_timeout: millis(&get, "DATABASE_POOL_CONNECTION_TIMEOUT_MS", 1)?
                .unwrap_or(defaults.connection_timeout),
            test_on_check_out: boolean(&get, "DATABASE_POOL_TEST_ON_CHECKOUT")?.unwrap_or(defaults.test_on_check_out),
            validate_idle_after: millis(&get, "DATABASE_POOL_VALIDATE_IDLE_AFTER_MS", 0)?
                .unwrap_or(defaults.validate_idle_after),
            max_lifetime: millis(&get, "DATABASE_POOL_MAX_LIFETIME_MS", 1)?.unwrap_or(defaults.max_lifetime),
        };
        if pool.min_idle > pool.max_size {
            return Err(ConfigError::new(
                "DATABASE_POOL_MIN_IDLE",
                format!(
                    "({}) must not exceed DATABASE_POOL_MAX_SIZE ({})",
                    pool.min_idle, pool.max_size
                ),
            ));
        }

        let defaults = SessionSettings::default();
        let session = SessionSettings {
            statement_timeout: millis(&get, "DATABASE_STATEMENT_TIMEOUT_MS", 0)?.unwrap_or(defaults.statement_timeout),
            lock_timeout: millis(&get, "DATABASE_LOCK_TIMEOUT_MS", 0)?.unwrap_or(defaults.lock_timeout),
            sqlite_busy_timeout: millis(&get, "DATABASE_SQLITE_BUSY_TIMEOUT_MS", 0)?
                .unwrap_or(defaults.sqlite_busy_timeout),
            application_name: get("DATABASE_APPLICATION_NAME").unwrap_or(defaults.application_name),
        };
        let metrics = MetricsSettings::from_lookup(&get)?;
        let defaults = MigrationSettings::default();
        let migration = MigrationSettings {
            lock_wait: millis(&get, "DATABASE_MIGRATION_LOCK_WAIT_MS", 0)?.unwrap_or(defaults.lock_wait),
            lock_poll_interval: defaults.lock_poll_interval,
            lock_timeout: millis(&get, "DATABASE_MIGRATION_LOCK_TIMEOUT_MS", 0)?.unwrap_or(defaults.lock_timeout),
            statement_timeout: millis(&get, "DATABASE_MIGRATION_STATEMENT_TIMEOUT_MS", 0)?
                .unwrap_or(defaults.statement_timeout),
        };
        Ok(Self {
            target,
            pool,
            session,
            metrics,
            migration,
            migration_target,
        })
    }
}

fn parse_database_url(url: &str) -> Result<DatabaseTarget, ConfigError> {
    const VARIABLE: &str = "DATABASE_URL";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return DatabaseTarget::parse_postgres_url(url, VARIABLE);
    }
    if matches!(url, ":memory:" | "sqlite::memory:" | "sqlite://:memory:") {
        return DatabaseTarget::sqlite_in_memory();
    }
    if url.starts_with("file:") {
        // An SQLite URI filename, passed through as it is.
        return Ok(DatabaseTarget::sqlite_file(url));
    }
    let path = if let Some(path) = url.strip_prefix("sqlite://") {
        path
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        path
    } else if let Some(scheme) = url_scheme(url) {
        // Anything else that starts like a URL is a mistake, not a file name: treating it as a
        // path would create a stray SQLite file, and echo a password in the error.
        return Err(ConfigError::new(
            VARIABLE,
            format!("has unknown scheme \"{scheme}\": expected postgres://, postgresql://, sqlite:// or a file path"),
        ));
    } else {
        url
    };
    if path.is_empty() {
        return Err(ConfigError::new(VARIABLE, "names no SQLite file"));
    }
    Ok(DatabaseTarget::sqlite_file(PathBuf::from(path)))
}

/// The scheme of a value that starts like a URL (`letters:`), if it does. A single letter is a
/// Windows drive, not a scheme.
fn url_scheme(value: &str) -> Option<&str> {
    let (scheme, _) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let starts_with_letter = chars.next().is_some_and(|first| first.is_ascii_alphabetic());
    let rest_is_scheme = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (starts_with_letter && rest_is_scheme && scheme.len() > 1).then(|| &scheme[..scheme.len().min(20)])
}

fn compose_postgres_url(
    get: &impl Fn(&str) -> Option<String>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseTarget, ConfigError> {
    // Errors name the first variable set, which chose PostgreSQL.
    let source = COMPOSED_VARIABLES
        .iter()
        .copied()
        .find(|name| get(name).is_some())
        .unwrap_or("DATABASE_HOST");
    let host = get("DATABASE_HOST");
    let port = number(get, "DATABASE_PORT", 1, u32::from(u16::MAX))?;
    let name = get("DATABASE_NAME");
    let user = get("DATABASE_USER");
    // A password may be all spaces; only an empty one counts as unset.
    let password = lookup("DATABASE_PASSWORD").filter(|password| !password.is_empty());
    let sslmode = get("DATABASE_SSLMODE");
    if let Some(mode) = &sslmode
        && !SSL_MODES.contains(&mode.as_str())
    {
        return Err(ConfigError::new(
            "DATABASE_SSLMODE",
            format!("must be one of {}, got \"{mode}\"", SSL_MODES.join(", ")),
        ));
    }
    let tls_files: Vec<(&str, String)> = [
        ("sslrootcert", "DATABASE_SSLROOTCERT"),
        ("sslcert", "DATABASE_SSLCERT"),
        ("sslkey", "DATABASE_SSLKEY"),
    ]
    .into_iter()
    .filter_map(|(parameter, variable)| get(variable).map(|path| (parameter, path)))
    .collect();
    if let Some(host) = &host
        && !host.starts_with('/')
        && host.contains(['/', '?', '#', '@', ' '])
    {
        return Err(ConfigError::new(
            "DATABASE_HOST",
            "must be a host name, an IP address or a socket directory starting with /",
        ));
    }

    let build = |password: Option<&str>| {
        let mut url = String::from("postgresql://");
        if user.is_some() || password.is_some() {
            url.push_str(&encode(user.as_deref().unwrap_or("")));
            if let Some(password) = password {
                url.push(':');
                url.push_str(password);
            }
            url.push('@');
        }
        let mut query = Vec::new();
        match host.as_deref() {
            Some(socket_dir) if socket_dir.starts_with('/') => {
                query.push(format!("host={}", encode(socket_dir)));
            }
            Some(host) if host.parse::<Ipv6Addr>().is_ok() => {
                url.push('[');
                url.push_str(host);
                url.push(']');
            }
            Some(host) => url.push_str(&encode(host)),
            None => {}
        }
        if let Some(port) = port {
            url.push(':');
            url.push_str(&port.to_string());
        }
        url.push('/');
        if let Some(name) = &name {
            url.push_str(&encode(name));
        }
        if let Some(mode) = &sslmode {
            query.push(format!("sslmode={mode}"));
        }
        for (parameter, path) in &tls_files {
            query.push(format!("{parameter}={}", encode(path)));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    };
    let encoded_password = password.as_deref().map(encode);
    let connection_string = build(encoded_password.as_deref());
    let redacted = build(password.as_ref().map(|_| "***"));
    Ok(DatabaseTarget {
        backend: Backend::Postgres,
        connection_string: SecretString::from(connection_string),
        redacted,
        secrets: password.into_iter().map(SecretString::from).collect(),
        source,
        in_memory: None,
        credential_files: CredentialFiles::default(),
    })
}

fn encode(component: &str) -> String {
    utf8_percent_encode(component, COMPONENT).to_string()
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ConfigError> {
    let Some(text) = get(variable) else { return Ok(None) };
    match text.trim().parse::<u32>() {
        Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
        _ => Err(ConfigError::new(
            variable,
            format!("must be a whole number from {min} to {max}, got \"{}\"", text.trim()),
        )),
    }
}

fn millis(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u32,
) -> Result<Option<Duration>, ConfigError> {
    // At most a day: longer settings are mistakes, and PostgreSQL caps timeouts at i32::MAX ms.
    number(get, variable, min, 86_400_000).map(|value| value.map(|ms| Duration::from_millis(ms.into())))
}

fn boolean(get: &impl Fn(&str) -> Option<String>, variable: &'static str) -> Result<Option<bool>, ConfigError> {
    let Some(text) = get(variable) else { return Ok(None) };
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::new(
            variable,
            format!("must be true or false, got \"{}\"", text.trim()),
        )),
    }
}

fn default_application_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "repo-diesel".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<DatabaseConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        DatabaseConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[track_caller]
    fn check_target(vars: &[(&str, &str)], backend: Backend, connection: &str, redacted: &str) {
        let target = config(vars).expect("configuration is valid").target;
        assert_eq!(target.backend(), backend);
        assert_eq!(target.expose_connection_string(), connection);
        assert_eq!(target.redacted(), redacted);
    }

    #[track_caller]
    fn check_error(vars: &[(&str, &str)], variable: &str, problem_contains: &str) {
        let error = config(vars).expect_err("configuration is invalid");
        assert_eq!(error.variable, variable, "{error}");
        assert!(error.to_string().contains(problem_contains), "{error}");
    }

    #[test]
    fn targets() {
        check_target(&[], Backend::Sqlite, DEFAULT_SQLITE_PATH, DEFAULT_SQLITE_PATH);
        check_target(
            &[("DATABASE_URL", "  ")],
            Backend::Sqlite,
            DEFAULT_SQLITE_PATH,
            DEFAULT_SQLITE_PATH,
        );
        check_target(&[("DATABASE_URL", "app.db")], Backend::Sqlite, "app.db", "app.db");
        check_target(
            &[("DATABASE_URL", "sqlite://data/x.db")],
            Backend::Sqlite,
            "data/x.db",
            "data/x.db",
        );
        check_target(
            &[("DATABASE_URL", "sqlite:///tmp/x.db")],
            Backend::Sqlite,
            "/tmp/x.db",
            "/tmp/x.db",
        );
        check_target(&[("DATABASE_URL", "sqlite:x.db")], Backend::Sqlite, "x.db", "x.db");
        check_target(
            &[("DATABASE_URL", "postgres://app:pw@db:5432/app?sslmode=require")],
            Backend::Postgres,
            "postgres://app:pw@db:5432/app?sslmode=require",
            "postgres://app:***@db:5432/app?sslmode=require",
        );
        check_target(
            &[("DATABASE_URL", "postgresql://db/app?user=app&password=pw")],
            Backend::Postgres,
            "postgresql://db/app?user=app&password=pw",
            "postgresql://db/app?user=app&password=***",
        );
        check_target(
            &[
                ("DATABASE_HOST", "db.internal"),
                ("DATABASE_PORT", "6543"),
                ("DATABASE_NAME", "attendance"),
                ("DATABASE_USER", "app"),
                ("DATABASE_PASSWORD", "p@ss:w/o?r#d%"),
                ("DATABASE_SSLMODE", "verify-full"),
            ],
            Backend::Postgres,
            "postgresql://app:p%40ss%3Aw%2Fo%3Fr%23d%25@db.internal:6543/attendance?sslmode=verify-full",
            "postgresql://app:***@db.internal:6543/attendance?sslmode=verify-full",
        );
        // No user or password: libpq's defaults (PGUSER, ~/.pgpass, peer) apply.
        check_target(
            &[("DATABASE_HOST", "127.0.0.1"), ("DATABASE_NAME", "test")],
            Backend::Postgres,
            "postgresql://127.0.0.1/test",
            "postgresql://127.0.0.1/test",
        );
        check_target(
            &[("DATABASE_NAME", "test")],
            Backend::Postgres,
            "postgresql:///test",
            "postgresql:///test",
        );
        check_target(
            &[("DATABASE_HOST", "/var/run/postgresql"), ("DATABASE_NAME", "test")],
            Backend::Postgres,
            "postgresql:///test?host=%2Fvar%2Frun%2Fpostgresql",
            "postgresql:///test?host=%2Fvar%2Frun%2Fpostgresql",
        );
        check_target(
            &[("DATABASE_HOST", "::1"), ("DATABASE_USER", "ann é")],
            Backend::Postgres,
            "postgresql://ann%20%C3%A9@[::1]/",
            "postgresql://ann%20%C3%A9@[::1]/",
        );
        // DATABASE_URL wins over the parts.
        check_target(
            &[("DATABASE_URL", "sqlite://a.db"), ("DATABASE_HOST", "db")],
            Backend::Sqlite,
            "a.db",
            "a.db",
        );
        assert!(
            config(&[("DATABASE_URL", ":memory:")])
                .expect("valid")
                .target
                .is_in_memory()
        );
    }

    #[test]
    fn errors_name_the_variable() {
        check_error(
            &[("DATABASE_URL", "mysql://root@db/app")],
            "DATABASE_URL",
            "unknown scheme \"mysql\"",
        );
        check_error(
            &[("DATABASE_URL", "app:s3cr3t@db.internal/attendance")],
            "DATABASE_URL",
            "unknown scheme \"app\"",
        );
        check_error(
            &[("DATABASE_URL", "postgres:attendance")],
            "DATABASE_URL",
            "unknown scheme \"postgres\"",
        );
        check_error(&[("DATABASE_URL", "sqlite://")], "DATABASE_URL", "names no SQLite file");
        check_error(
            &[("DATABASE_PORT", "54x2")],
            "DATABASE_PORT",
            "whole number from 1 to 65535, got \"54x2\"",
        );
        check_error(&[("DATABASE_PORT", "70000")], "DATABASE_PORT", "got \"70000\"");
        check_error(&[("DATABASE_SSLMODE", "maybe")], "DATABASE_SSLMODE", "must be one of");
        check_error(&[("DATABASE_HOST", "db/x")], "DATABASE_HOST", "host name");
        check_error(
            &[("DATABASE_POOL_MAX_SIZE", "twenty")],
            "DATABASE_POOL_MAX_SIZE",
            "got \"twenty\"",
        );
        check_error(&[("DATABASE_POOL_MAX_SIZE", "0")], "DATABASE_POOL_MAX_SIZE", "from 1");
        check_error(
            &[("DATABASE_POOL_MAX_SIZE", "2"), ("DATABASE_POOL_MIN_IDLE", "3")],
            "DATABASE_POOL_MIN_IDLE",
            "exceed",
        );
        check_error(
            &[("DATABASE_POOL_IDLE_TIMEOUT_MS", "-1")],
            "DATABASE_POOL_IDLE_TIMEOUT_MS",
            "got \"-1\"",
        );
        check_error(
            &[("DATABASE_STATEMENT_TIMEOUT_MS", "1e3")],
            "DATABASE_STATEMENT_TIMEOUT_MS",
            "whole number",
        );
        check_error(
            &[("DATABASE_POOL_TEST_ON_CHECKOUT", "sometimes")],
            "DATABASE_POOL_TEST_ON_CHECKOUT",
            "true or false",
        );
        check_error(
            &[("DATABASE_POOL_VALIDATE_IDLE_AFTER_MS", "0.5s")],
            "DATABASE_POOL_VALIDATE_IDLE_AFTER_MS",
            "whole number from 0",
        );
    }

    #[test]
    fn settings_have_guideline_defaults_and_overrides() {
        let defaults = config(&[]).expect("valid");
        assert_eq!(defaults.pool, PoolSettings::default());
        assert_eq!(defaults.pool.max_size, 20);
        assert_eq!(defaults.pool.idle_timeout, Duration::from_secs(30));
        assert_eq!(defaults.pool.connection_timeout, Duration::from_secs(2));
        assert_eq!(defaults.pool.min_idle, 0);
        assert!(defaults.pool.test_on_check_out);
        assert_eq!(defaults.pool.validate_idle_after, Duration::from_millis(500));
        let tuned = config(&[
            ("DATABASE_POOL_MAX_SIZE", "5"),
            ("DATABASE_POOL_MIN_IDLE", "0"),
            ("DATABASE_POOL_IDLE_TIMEOUT_MS", "1000"),
            ("DATABASE_POOL_CONNECTION_TIMEOUT_MS", "250"),
            ("DATABASE_POOL_TEST_ON_CHECKOUT", "no"),
            ("DATABASE_POOL_VALIDATE_IDLE_AFTER_MS", "0"),
            ("DATABASE_POOL_MAX_LIFETIME_MS", "2000"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "1500"),
            ("DATABASE_LOCK_TIMEOUT_MS", "0"),
            ("DATABASE_SQLITE_BUSY_TIMEOUT_MS", "100"),
            ("DATABASE_APPLICATION_NAME", "billing"),
        ])
        .expect("valid");
        assert_eq!(
            tuned.pool,
            PoolSettings {
                max_size: 5,
                min_idle: 0,
                idle_timeout: Duration::from_secs(1),
                connection_timeout: Duration::from_millis(250),
                test_on_check_out: false,
                validate_idle_after: Duration::ZERO,
                max_lifetime: Duration::from_secs(2),
            }
        );
        assert_eq!(
            tuned.session,
            SessionSettings {
                statement_timeout: Duration::from_millis(1500),
                lock_timeout: Duration::ZERO,
                sqlite_busy_timeout: Duration::from_millis(100),
                application_name: "billing".to_owned(),
            }
        );
    }

    #[test]
    fn tls_files_travel_as_libpq_parameters() {
        check_target(
            &[
                ("DATABASE_HOST", "db.internal"),
                ("DATABASE_SSLMODE", "verify-full"),
                ("DATABASE_SSLROOTCERT", "/etc/ssl/db ca.pem"),
                ("DATABASE_SSLCERT", "/run/secrets/client.crt"),
                ("DATABASE_SSLKEY", "/run/secrets/client.key"),
            ],
            Backend::Postgres,
            "postgresql://db.internal/?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fdb%20ca.pem\
             &sslcert=%2Frun%2Fsecrets%2Fclient.crt&sslkey=%2Frun%2Fsecrets%2Fclient.key",
            "postgresql://db.internal/?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fdb%20ca.pem\
             &sslcert=%2Frun%2Fsecrets%2Fclient.crt&sslkey=%2Frun%2Fsecrets%2Fclient.key",
        );
    }

    #[test]
    fn credentials_are_read_from_their_files_for_every_connection() {
        let directory = tempfile::tempdir().expect("a directory");
        let user_file = directory.path().join("user");
        let password_file = directory.path().join("password");
        std::fs::write(&user_file, "app_blue\n").expect("write");
        std::fs::write(&password_file, "p@ss w/rd\n").expect("write");
        let user = user_file.to_string_lossy().into_owned();
        let password = password_file.to_string_lossy().into_owned();
        let target = config(&[
            ("DATABASE_HOST", "db.internal"),
            ("DATABASE_NAME", "attendance"),
            ("DATABASE_USER_FILE", &user),
            ("DATABASE_PASSWORD_FILE", &password),
        ])
        .expect("valid")
        .target;
        let connection = target.connection_string().expect("readable");
        assert_eq!(
            connection.expose(),
            "postgresql://db.internal/attendance?user=app_blue&password=p%40ss%20w%2Frd"
        );
        assert_eq!(connection.user_from_file(), Some("app_blue"));
        assert_eq!(target.redacted(), "postgresql://db.internal/attendance?password=***");
        assert_eq!(target.scrub("failed for p@ss w/rd"), "failed for ***");
        // A rotation: the next connection reads the new files.
        std::fs::write(&user_file, "app_green").expect("write");
        std::fs::write(&password_file, "s3cond").expect("write");
        assert_eq!(
            target.connection_string().expect("readable").expose(),
            "postgresql://db.internal/attendance?user=app_green&password=s3cond"
        );
        assert!(!format!("{target:?}").contains("s3cond"));
        // With DATABASE_URL, the files' values are parameters after the URL's own.
        let target = config(&[
            ("DATABASE_URL", "postgres://app@db/attendance?sslmode=verify-full"),
            ("DATABASE_PASSWORD_FILE", &password),
        ])
        .expect("valid")
        .target;
        assert_eq!(
            target.expose_connection_string(),
            "postgres://app@db/attendance?sslmode=verify-full&password=s3cond"
        );
        // A file that disappears fails the connection, naming the variable and not the secret.
        std::fs::remove_file(&password_file).expect("remove");
        let error = target.connection_string().err().expect("unreadable");
        assert_eq!(error.variable, "DATABASE_PASSWORD_FILE");
        assert!(error.to_string().contains("cannot be read"), "{error}");
    }

    #[test]
    fn credential_files_are_checked_at_start_up() {
        let directory = tempfile::tempdir().expect("a directory");
        let empty = directory.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let empty = empty.to_string_lossy().into_owned();
        let missing = directory.path().join("missing").to_string_lossy().into_owned();
        let secret = directory.path().join("secret");
        std::fs::write(&secret, "s3cr3t").expect("write");
        let secret = secret.to_string_lossy().into_owned();
        check_error(
            &[("DATABASE_HOST", "db"), ("DATABASE_PASSWORD_FILE", &missing)],
            "DATABASE_PASSWORD_FILE",
            "cannot be read",
        );
        check_error(
            &[("DATABASE_HOST", "db"), ("DATABASE_PASSWORD_FILE", &empty)],
            "DATABASE_PASSWORD_FILE",
            "empty file",
        );
        check_error(
            &[("DATABASE_HOST", "db"), ("DATABASE_USER_FILE", &empty)],
            "DATABASE_USER_FILE",
            "empty file",
        );
        check_error(
            &[("DATABASE_PASSWORD_FILE", &secret)],
            "DATABASE_PASSWORD_FILE",
            "SQLite",
        );
        check_error(
            &[
                ("DATABASE_URL", "postgres://app:pw@db/x"),
                ("DATABASE_PASSWORD_FILE", &secret),
            ],
            "DATABASE_PASSWORD_FILE",
            "already holds a password",
        );
        check_error(
            &[("DATABASE_HOST", "db"), ("DATABASE_MIGRATION_URL", "sqlite://x.db")],
            "DATABASE_MIGRATION_URL",
            "postgres://",
        );
        check_error(
            &[("DATABASE_MIGRATION_URL", "postgres://owner@db/x")],
            "DATABASE_MIGRATION_URL",
            "SQLite",
        );
        check_error(
            &[("DATABASE_HOST", "db"), ("DATABASE_MIGRATION_PASSWORD_FILE", &secret)],
            "DATABASE_MIGRATION_PASSWORD_FILE",
            "without DATABASE_MIGRATION_URL",
        );
        let config = config(&[
            ("DATABASE_HOST", "db"),
            ("DATABASE_USER", "app"),
            ("DATABASE_MIGRATION_URL", "postgres://owner@db/attendance"),
            ("DATABASE_MIGRATION_PASSWORD_FILE", &secret),
        ])
        .expect("valid");
        let migration = config.migration_target.as_ref().expect("a migration target");
        assert_eq!(migration.source(), "DATABASE_MIGRATION_URL");
        assert_eq!(
            migration.expose_connection_string(),
            "postgres://owner@db/attendance?password=s3cr3t"
        );
        assert_eq!(migration.redacted(), "postgres://owner@db/attendance?password=***");
        assert_eq!(
            config.for_migrations().target.expose_connection_string(),
            migration.expose_connection_string()
        );
        assert_eq!(config.pool.max_lifetime, Duration::from_mins(30));
    }

    #[track_caller]
    fn check_tls(vars: &[(&str, &str)], environment: &[(&str, &str)], warned_host: Option<&str>) {
        let target = config(vars).expect("valid").target;
        let warning = target.tls_warning_with(|name| {
            environment
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        });
        match warned_host {
            None => assert_eq!(warning, None, "{vars:?} {environment:?}"),
            Some(host) => {
                let warning = warning.unwrap_or_else(|| panic!("no warning for {vars:?} {environment:?}"));
                assert!(warning.contains(&format!("host {host} ")), "{warning}");
                assert!(warning.contains("verify-full"), "{warning}");
            }
        }
    }

    #[test]
    fn remote_hosts_without_verify_full_are_warned_about() {
        let url = |url: &'static str| [("DATABASE_URL", url)];
        check_tls(&url("postgres://app:pw@db.internal/x"), &[], Some("db.internal"));
        check_tls(
            &url("postgres://app:pw@db.internal/x?sslmode=require"),
            &[],
            Some("db.internal"),
        );
        check_tls(
            &url("postgres://app:pw@db.internal/x?sslmode=verify-ca"),
            &[],
            Some("db.internal"),
        );
        check_tls(&url("postgres://app:pw@db.internal/x?sslmode=verify-full"), &[], None);
        check_tls(
            &url("postgres://app@10.0.0.5:5432/x"),
            &[("PGSSLMODE", "verify-full")],
            None,
        );
        check_tls(
            &url("postgres://app@10.0.0.5:5432/x"),
            &[("PGSSLMODE", "require")],
            Some("10.0.0.5"),
        );
        // The name libpq verifies and the address it dials both count.
        check_tls(
            &url("postgres://app@db.internal/x?hostaddr=127.0.0.1"),
            &[],
            Some("db.internal"),
        );
        check_tls(
            &url("postgres://app@localhost/x?hostaddr=203.0.113.7&sslmode=disable"),
            &[],
            Some("203.0.113.7"),
        );
        check_tls(
            &url("postgres://app@localhost/x"),
            &[("PGHOSTADDR", "203.0.113.7")],
            Some("203.0.113.7"),
        );
        check_tls(&url("postgres://app@localhost/x?hostaddr=127.0.0.1"), &[], None);
        check_tls(&url("postgresql://h1:5432,h2:5433/x?sslmode=verify-full"), &[], None);
        check_tls(&url("postgresql://localhost,h2/x"), &[], Some("h2"));
        check_tls(&url("postgres://app@127.0.0.1:5432/x"), &[], None);
        check_tls(&url("postgres://app@[::1]:5432/x"), &[], None);
        check_tls(&url("postgres://app@localhost/x"), &[], None);
        check_tls(&url("postgres:///x?host=/var/run/postgresql"), &[], None);
        check_tls(&url("postgres:///x"), &[], None);
        check_tls(&url("postgres:///x"), &[("PGHOST", "db.internal")], Some("db.internal"));
        check_tls(
            &url("postgres://127.0.0.1/x?host=db.internal"),
            &[],
            Some("db.internal"),
        );
        check_tls(&[("DATABASE_HOST", "db.internal")], &[], Some("db.internal"));
        check_tls(
            &[("DATABASE_HOST", "db.internal"), ("DATABASE_SSLMODE", "verify-full")],
            &[],
            None,
        );
        check_tls(&[("DATABASE_HOST", "/run/postgresql")], &[], None);
        check_tls(&[("DATABASE_URL", "data/x.sqlite3")], &[], None);
    }

    #[test]
    fn secrets_stay_out_of_debug_display_and_errors() {
        let password = "s3cr3t@:/?#%";
        for vars in [
            vec![("DATABASE_URL", "postgres://app:s3cr3t%40%3A%2F%3F%23%25@db/app")],
            vec![
                ("DATABASE_USER", "app"),
                ("DATABASE_PASSWORD", password),
                ("DATABASE_HOST", "db"),
            ],
        ] {
            let config = config(&vars).expect("valid");
            for shown in [
                format!("{config:?}"),
                config.target.to_string(),
                config.target.redacted().to_owned(),
            ] {
                assert!(!shown.contains("s3cr3t"), "{shown}");
            }
            let driver_message = format!(
                "could not connect with {} or {}",
                password,
                utf8_percent_encode(password, COMPONENT)
            );
            assert_eq!(
                config.target.scrub(&driver_message),
                "could not connect with *** or ***"
            );
        }
        for url in [
            "postgres://app:s3cr3t@db:x/app",
            "postgres://app:s3cr/3t@db/app",
            "postgres://app:s3cr3t@/app?host=/var/run/postgresql",
            "postgres://app:s3cr3t@db/app?sslmode=require&password=s3cr3t2",
            "postgresql://h1:5432,h2:5432/app?user=app&password=s3cr3t",
        ] {
            let target = config(&[("DATABASE_URL", url)])
                .expect("libpq validates the rest")
                .target;
            assert!(!target.redacted().contains("s3cr"), "{}", target.redacted());
            assert_eq!(
                target.scrub(&format!("driver said {url}")).matches("s3cr").count(),
                0,
                "{url}"
            );
        }
        let error = config(&[("DATABASE_URL", "redis://:s3cr3t@cache")]).expect_err("bad scheme");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }
}
