#![doc = include_str!("../README.md")]

pub mod audit;
pub mod roles;
pub mod rotation;
mod statements;

use std::fmt;

pub use audit::{OperatorContext, purge_audit_log};
pub use roles::{RoleNames, SetupOptions, SetupReport, setup_roles};
pub use rotation::{RotationReport, SecretDirectory, rotate_credentials};

/// The name of the database the connection reaches (PostgreSQL): the default prefix of its
/// roles.
pub fn database_name(connection: &mut database::DbConnection) -> Result<String, SecurityError> {
    if !matches!(connection, database::DbConnection::Pg(_)) {
        return Err(SecurityError::NotPostgres("roles"));
    }
    Ok(statements::current_database(connection)?.1)
}

/// What the operator commands of this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// An input broke a rule (a role name, an actor).
    #[error("{0}")]
    Invalid(String),
    /// The operation exists on PostgreSQL only.
    #[error("{0} needs PostgreSQL: SQLite has no roles")]
    NotPostgres(&'static str),
    /// The connected role may not do this.
    #[error("{0}")]
    NotAllowed(String),
    /// A file of the secret directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A statement failed.
    #[error("{context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// What the database said.
        source: diesel::result::Error,
    },
    /// The migration runner's bookkeeping tables could not be prepared.
    #[error(transparent)]
    Migrator(#[from] migrator::MigratorError),
}

impl From<diesel::result::Error> for SecurityError {
    fn from(source: diesel::result::Error) -> Self {
        Self::Database {
            context: "a statement failed".to_owned(),
            source,
        }
    }
}

impl SecurityError {
    /// A database error with what was being done.
    pub(crate) fn database(context: impl Into<String>) -> impl FnOnce(diesel::result::Error) -> Self {
        let context = context.into();
        move |source| Self::Database { context, source }
    }
}

/// A PostgreSQL role name this crate creates or changes: 1 to 63 characters (PostgreSQL's limit)
/// of `a-z`, `0-9` and `_`, starting with a letter or `_`, not starting with `pg_` (reserved).
/// Plain enough that it never needs quoting, although it is always quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RoleName(String);

/// The longest [`RoleName`]: PostgreSQL's `NAMEDATALEN` less one.
pub const MAX_ROLE_NAME_LENGTH: usize = 63;

impl RoleName {
    /// Checks the rules.
    pub fn parse(name: &str) -> Result<Self, SecurityError> {
        let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let valid_rest = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_start || !valid_rest || name.len() > MAX_ROLE_NAME_LENGTH || name.starts_with("pg_") {
            return Err(SecurityError::Invalid(format!(
                "role name {name:?} must be 1 to {MAX_ROLE_NAME_LENGTH} characters of a-z, 0-9 and _, start with a \
                 letter or _, and not start with pg_"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an SQL identifier, in double quotes (it holds no quote to double).
    #[must_use]
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for good in ["attendance", "_x", "a1_b2", &"a".repeat(63)] {
            assert_eq!(RoleName::parse(good).expect("valid").quoted(), format!("\"{good}\""));
        }
        for bad in [
            "",
            "1abc",
            "Ann",
            "a-b",
            "a\"b",
            "pg_monitor",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(RoleName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
