//! Credential rotation with no failed call: the application role has two logins, and a
//! rotation ([`rotate_credentials`]) gives the idle one a new random password, switches the
//! secret the application reads (`DATABASE_USER_FILE`, `DATABASE_PASSWORD_FILE`, read again for
//! every new connection) to it, waits a grace period for connections that read the old secret
//! just before the switch, and then removes the other login's password. Sessions that are open
//! keep working (a password is checked only when a session starts) and end within the pool's
//! `DATABASE_POOL_MAX_LIFETIME_MS`.
//!
//! The secret is a directory laid out as Kubernetes lays out a secret volume, so that the user
//! name and the password change together, in one atomic rename:
//!
//! ```text
//! DIR/user     -> ..data/user
//! DIR/password -> ..data/password
//! DIR/..data   -> ..2026_12_07_10_15_00_123456789   (replaced by a rename)
//! ```

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::sql_types::BigInt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Entry, OperatorContext, actions};
use crate::roles::{RoleNames, set_password};
use crate::statements::{self, role_exists, run};
use crate::{RoleName, SecurityError};
use database::DbConnection;
use database::transaction::write_transaction;

/// The files of a secret directory, as the application's variables name them.
const USER_FILE: &str = "user";
const PASSWORD_FILE: &str = "password";
const DATA_LINK: &str = "..data";

/// Random bytes in a generated password (43 characters of base64url: 256 bits).
const PASSWORD_BYTES: usize = 32;

/// The directory that holds the application's database credential: `user` and `password`,
/// which `DATABASE_USER_FILE` and `DATABASE_PASSWORD_FILE` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDirectory {
    path: PathBuf,
}

impl SecretDirectory {
    /// The secret directory at `path` (made on the first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file to name in `DATABASE_USER_FILE`.
    #[must_use]
    pub fn user_file(&self) -> PathBuf {
        self.path.join(USER_FILE)
    }

    /// The file to name in `DATABASE_PASSWORD_FILE`.
    #[must_use]
    pub fn password_file(&self) -> PathBuf {
        self.path.join(PASSWORD_FILE)
    }

    /// The user name the directory holds now; `None` before the first write.
    pub fn current_user(&self) -> Result<Option<String>, SecurityError> {
        match fs::read_to_string(self.user_file()) {
            Ok(text) => Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io(&self.user_file(), source)),
        }
    }

    /// Replaces the user name and password at once: both files are written into a new
    /// directory (mode 0700, files 0600) and synced, then `..data` is pointed at it by one
    /// `rename`, so a reader sees the old pair or the new pair, never a mix. Old directories
    /// are removed afterwards.
    pub fn write(&self, user: &str, password: &SecretString) -> Result<(), SecurityError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(&self.path).map_err(|source| io(&self.path, source))?;
        let stamp = chrono::Utc::now().format("..%Y_%m_%d_%H_%M_%S_%f").to_string();
        let data = self.path.join(&stamp);
        builder.recursive(false);
        builder.create(&data).map_err(|source| io(&data, source))?;
        write_private(&data.join(USER_FILE), user.as_bytes())?;
        write_private(&data.join(PASSWORD_FILE), password.expose_secret().as_bytes())?;
        sync_directory(&data)?;
        // The directory `..data` names now stays until the next switch: a reader that resolved
        // the link just before this one still finds its files.
        let previous = fs::read_link(self.path.join(DATA_LINK))
            .ok()
            .map(|target| target.to_string_lossy().into_owned());
        replace_link(&self.path.join(DATA_LINK), Path::new(&stamp))?;
        for file in [USER_FILE, PASSWORD_FILE] {
            let link = self.path.join(file);
            if !fs::symlink_metadata(&link).is_ok_and(|metadata| metadata.file_type().is_symlink()) {
                replace_link(&link, &Path::new(DATA_LINK).join(file))?;
            }
        }
        sync_directory(&self.path)?;
        for entry in fs::read_dir(&self.path).map_err(|source| io(&self.path, source))? {
            let entry = entry.map_err(|source| io(&self.path, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("..2") && name != stamp && Some(&name) != previous.as_ref() {
                fs::remove_dir_all(entry.path()).map_err(|source| io(&entry.path(), source))?;
            }
        }
        Ok(())
    }
}

fn io(path: &Path, source: std::io::Error) -> SecurityError {
    SecurityError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), SecurityError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io(path, source))?;
    file.write_all(contents).map_err(|source| io(path, source))?;
    file.sync_all().map_err(|source| io(path, source))
}

fn sync_directory(path: &Path) -> Result<(), SecurityError> {
    fs::File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| io(path, source))
}

/// Points `link` at `target` atomically: a new link under a temporary name, renamed over it.
fn replace_link(link: &Path, target: &Path) -> Result<(), SecurityError> {
    let temporary = link.with_file_name(format!(
        "{}.tmp",
        link.file_name().map(|name| name.to_string_lossy()).unwrap_or_default()
    ));
    let _ = fs::remove_file(&temporary);
    symlink(target, &temporary).map_err(|source| io(&temporary, source))?;
    fs::rename(&temporary, link).map_err(|source| io(link, source))
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// The login the application used before (`None` on the first rotation).
    pub previous: Option<String>,
    /// The login it uses now.
    pub current: String,
    /// The secret directory written.
    pub secret_directory: PathBuf,
    /// The login whose password was removed after the grace period.
    pub expired: Option<String>,
    /// Whether the audit entries were written (`false` before the first migration).
    pub audited: bool,
}

/// Rotates the application's credential: see the module documentation. The connection must be
/// a role that may change the logins' passwords (a superuser, or one with `CREATEROLE`).
/// `grace` is how long connections that read the old secret just before the switch have to
/// finish logging in.
pub fn rotate_credentials(
    connection: &mut DbConnection,
    names: &RoleNames,
    secrets: &SecretDirectory,
    grace: Duration,
    context: &OperatorContext,
) -> Result<RotationReport, SecurityError> {
    if !matches!(connection, DbConnection::Pg(_)) {
        return Err(SecurityError::NotPostgres("credential rotation"));
    }
    // One rotation at a time: a second one during the first's grace period would switch the
    // secret back to the login the first is about to expire, and leave no login that works.
    lock(connection, grace)?;
    let rotated = rotate_locked(connection, names, secrets, grace, context);
    let unlocked = diesel::RunQueryDsl::execute(
        diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(ROTATION_LOCK),
        connection,
    );
    let report = rotated?;
    unlocked.map_err(SecurityError::database("releasing the rotation lock"))?;
    Ok(report)
}

/// Serialises rotations of one database (a session advisory lock): "rotate" in ASCII.
const ROTATION_LOCK: i64 = 0x0000_726f_7461_7465;

/// How long a rotation waits for another one to finish, beyond that one's grace period.
const LOCK_WAIT: Duration = Duration::from_mins(1);

/// Takes [`ROTATION_LOCK`], polling for at most `grace` and a minute.
fn lock(connection: &mut DbConnection, grace: Duration) -> Result<(), SecurityError> {
    let deadline = std::time::Instant::now() + grace + LOCK_WAIT;
    loop {
        let locked = statements::fact(
            connection,
            "SELECT pg_try_advisory_lock(CAST($1 AS bigint)) AS value",
            &[&ROTATION_LOCK.to_string()],
        )?;
        if locked {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(SecurityError::NotAllowed(
                "another credential rotation of this database is still running: try again when it has finished"
                    .to_owned(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rotate_locked(
    connection: &mut DbConnection,
    names: &RoleNames,
    secrets: &SecretDirectory,
    grace: Duration,
    context: &OperatorContext,
) -> Result<RotationReport, SecurityError> {
    for login in &names.app_logins {
        if !role_exists(connection, login)? {
            return Err(SecurityError::NotAllowed(format!(
                "role {login} does not exist: run `dbctl roles setup` first"
            )));
        }
    }
    let previous = match secrets.current_user()? {
        None => None,
        Some(user) => Some(
            names
                .app_logins
                .iter()
                .find(|login| login.as_str() == user)
                .cloned()
                .ok_or_else(|| {
                    SecurityError::Invalid(format!(
                        "{} names {user:?}, which is not one of the application's logins {} and {}",
                        secrets.user_file().display(),
                        names.app_logins[0],
                        names.app_logins[1]
                    ))
                })?,
        ),
    };
    let next = match &previous {
        Some(previous) if *previous == names.app_logins[0] => names.app_logins[1].clone(),
        _ => names.app_logins[0].clone(),
    };
    let password = new_password()?;
    let audited = write_transaction(connection, |connection| {
        set_password(connection, &next, &password)?;
        let audited = audit::has_audit_log(connection)?;
        if audited {
            audit::record(
                connection,
                context,
                &Entry {
                    action: actions::CREDENTIALS_ROTATE,
                    entity_type: "role",
                    entity_id: names.app.as_str(),
                    old_values: Some(json!({ "login": previous.as_ref().map(RoleName::as_str) })),
                    new_values: Some(json!({ "login": next.as_str(), "password": "[redacted]" })),
                },
            )?;
        }
        Ok::<_, SecurityError>(audited)
    })?;
    secrets.write(next.as_str(), &password).map_err(|error| {
        SecurityError::Invalid(format!(
            "{next} has a new password (audited), but the secret directory could not be switched to it, so the \
             application still uses {}: {error}; run the rotation again",
            previous.as_ref().map_or("no login", RoleName::as_str)
        ))
    })?;
    tracing::info!(login = %next, secret = %secrets.path().display(), "the secret names the new login");
    let Some(previous) = previous else {
        return Ok(RotationReport {
            previous: None,
            current: next.to_string(),
            secret_directory: secrets.path().to_owned(),
            expired: None,
            audited,
        });
    };
    std::thread::sleep(grace);
    // Expire the previous login only if the secret still names the new one (nothing but a
    // rotation should switch it, and rotations hold the lock; a hand edit may not).
    let current = secrets.current_user()?;
    if current.as_deref() != Some(next.as_str()) {
        return Err(SecurityError::NotAllowed(format!(
            "{} names {current:?} instead of {next} after the grace period: {previous} keeps its password",
            secrets.user_file().display()
        )));
    }
    write_transaction(connection, |connection| {
        run(
            connection,
            &format!("ALTER ROLE {} WITH PASSWORD NULL", previous.quoted()),
        )?;
        if audited {
            audit::record(
                connection,
                context,
                &Entry {
                    action: actions::CREDENTIALS_EXPIRE,
                    entity_type: "role",
                    entity_id: names.app.as_str(),
                    old_values: Some(json!({ "login": previous.as_str(), "password": "[redacted]" })),
                    new_values: Some(json!({ "login": previous.as_str(), "password": null })),
                },
            )?;
        }
        Ok::<_, SecurityError>(())
    })?;
    Ok(RotationReport {
        previous: Some(previous.to_string()),
        current: next.to_string(),
        secret_directory: secrets.path().to_owned(),
        expired: Some(previous.to_string()),
        audited,
    })
}

/// 256 random bits from the operating system, as base64url.
fn new_password() -> Result<SecretString, SecurityError> {
    let mut bytes = [0_u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| SecurityError::Invalid(format!("the operating system gave no random bytes: {error}")))?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_secret_directory_switches_user_and_password_together() {
        let scratch = tempfile::tempdir().expect("a directory");
        let secrets = SecretDirectory::new(scratch.path().join("db"));
        assert_eq!(secrets.current_user().expect("readable"), None);
        secrets
            .write("app_blue", &SecretString::from("first".to_owned()))
            .expect("written");
        assert_eq!(secrets.current_user().expect("readable").as_deref(), Some("app_blue"));
        assert_eq!(fs::read_to_string(secrets.password_file()).expect("read"), "first");
        secrets
            .write("app_green", &SecretString::from("second".to_owned()))
            .expect("written");
        assert_eq!(secrets.current_user().expect("readable").as_deref(), Some("app_green"));
        assert_eq!(fs::read_to_string(secrets.password_file()).expect("read"), "second");
        secrets
            .write("app_blue", &SecretString::from("third".to_owned()))
            .expect("written");
        assert_eq!(fs::read_to_string(secrets.password_file()).expect("read"), "third");
        // Two data directories are left, private: the current one, and the one before it, for
        // a reader that resolved the link just before the switch. The files are links.
        let data: Vec<_> = fs::read_dir(secrets.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("..2"))
            .collect();
        assert_eq!(data.len(), 2, "{data:?}");
        let mode = |path: PathBuf| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(secrets.path().join(&data[0])), 0o700);
        assert_eq!(mode(secrets.password_file()), 0o600);
        assert!(
            fs::symlink_metadata(secrets.password_file())
                .expect("metadata")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn generated_passwords_are_long_and_different() {
        let first = new_password().expect("random");
        let second = new_password().expect("random");
        assert_eq!(first.expose_secret().len(), 43);
        assert_ne!(first.expose_secret(), second.expose_secret());
    }
}
