//! `RepoError`: what a repository call can fail with, typed so that services can react.

/// A repository call failed. Bad input is always `NotFound`, `Conflict` or `Validation`, never
/// `Internal`.
///
/// Non-exhaustive: a match outside this crate needs a wildcard arm, which should treat an error it
/// does not know as a failure (`Internal`), never as success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No row with this key in the requested scope.
    #[error("{entity} {key} not found")]
    NotFound {
        /// `user`, `attendance`, …
        entity: &'static str,
        /// The key looked up.
        key: String,
    },
    /// A uniqueness or state rule of the database refused the write.
    #[error("conflict on {constraint}: {message}")]
    Conflict {
        /// The constraint or key, for example `uq_users_email`.
        constraint: String,
        /// What conflicts, for people.
        message: String,
    },
    /// An input broke a rule.
    #[error("{field}: {message}")]
    Validation {
        /// The input field, for example `email` or `cursor`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The statement ran past the statement timeout, or waited past the lock timeout.
    #[error("the database did not answer in time: {0}")]
    Timeout(String),
    /// No connection could be had: the pool is exhausted or the database is down.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database ran out of storage (a full disk, or SQLite's page limit): nothing of the call
    /// was written. Retrying helps only once an operator has freed space.
    #[error("the database is out of storage: {0}")]
    StorageFull(String),
    /// A fault in this code or an unexpected database state; never caused by bad input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RepoError {
    /// A `NotFound` for `entity` with `key`.
    pub fn not_found(entity: &'static str, key: &dyn std::fmt::Display) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
        }
    }

    /// A `Validation` error on `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<domain::ValidationError> for RepoError {
    fn from(error: domain::ValidationError) -> Self {
        Self::Validation {
            field: error.field.to_owned(),
            message: error.message,
        }
    }
}
