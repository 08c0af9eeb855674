//! The diesel implementation of the repository traits: one file per aggregate, and here what
//! they share: where connections come from, the soft-delete scope, and the one place where
//! database errors become `RepoError`s.

mod attendance;
mod users;

use std::cell::RefCell;
use std::sync::Arc;

use diesel::Connection as _;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use repo::{AttendanceRepository, RepoError, Repositories, TransactionWork, UnitOfWork, UserRepository};

use crate::connection::DbConnection;
use crate::database::{Database, PoolError};

pub use attendance::DieselAttendanceRepository;
pub use users::DieselUserRepository;

/// Where a repository gets its connection: a pool (each call borrows one), or, inside a unit of
/// work, the transaction's connection.
pub trait Connections {
    /// Runs `work` on a connection.
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError>;
}

impl Connections for Database {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        let mut connection = self.get().map_err(|error| unavailable(&error))?;
        work(&mut connection)
    }
}

/// One connection, used by one caller at a time: a unit of work's transaction, or a test that
/// counts the queries a call makes.
impl Connections for RefCell<DbConnection> {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        let mut connection = self
            .try_borrow_mut()
            .map_err(|_| RepoError::Internal("the connection is already in use".into()))?;
        work(&mut connection)
    }
}

/// The connection of a transaction in progress.
impl Connections for RefCell<&mut DbConnection> {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        let mut connection = self
            .try_borrow_mut()
            .map_err(|_| RepoError::Internal("the connection is already in use".into()))?;
        work(&mut connection)
    }
}

impl<T: Connections + ?Sized> Connections for &T {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        (**self).with(work)
    }
}

impl<T: Connections> Connections for Arc<T> {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        (**self).with(work)
    }
}

/// The repositories over a pool, and units of work on it: what a service holds.
#[derive(Clone)]
pub struct DieselStore {
    database: Arc<Database>,
    users: DieselUserRepository<Arc<Database>>,
    attendance: DieselAttendanceRepository<Arc<Database>>,
}

impl DieselStore {
    /// Repositories that borrow a pooled connection per call.
    #[must_use]
    pub fn new(database: Arc<Database>) -> Self {
        Self {
            users: DieselUserRepository::new(Arc::clone(&database)),
            attendance: DieselAttendanceRepository::new(Arc::clone(&database)),
            database,
        }
    }

    /// The pool.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }
}

impl Repositories for DieselStore {
    fn users(&self) -> &dyn UserRepository {
        &self.users
    }

    fn attendance(&self) -> &dyn AttendanceRepository {
        &self.attendance
    }
}

/// The repositories of one transaction: every call uses the transaction's connection.
struct TransactionRepositories<'t, 'c> {
    users: DieselUserRepository<&'t RefCell<&'c mut DbConnection>>,
    attendance: DieselAttendanceRepository<&'t RefCell<&'c mut DbConnection>>,
}

impl Repositories for TransactionRepositories<'_, '_> {
    fn users(&self) -> &dyn UserRepository {
        &self.users
    }

    fn attendance(&self) -> &dyn AttendanceRepository {
        &self.attendance
    }
}

/// A transaction's outcome: the work's own error, or the database's.
enum TransactionError {
    Work(RepoError),
    Database(DieselError),
}

impl From<DieselError> for TransactionError {
    fn from(error: DieselError) -> Self {
        Self::Database(error)
    }
}

impl UnitOfWork for DieselStore {
    #[tracing::instrument(skip_all)]
    fn transaction(&self, work: &mut dyn TransactionWork) -> Result<(), RepoError> {
        let mut pooled = self.database.get().map_err(|error| unavailable(&error))?;
        let connection: &mut DbConnection = &mut pooled;
        // A repository call that runs its own transaction inside becomes a savepoint.
        connection
            .transaction::<(), TransactionError, _>(|connection| {
                let cell = RefCell::new(connection);
                let repositories = TransactionRepositories {
                    users: DieselUserRepository::new(&cell),
                    attendance: DieselAttendanceRepository::new(&cell),
                };
                work.run(&repositories).map_err(TransactionError::Work)
            })
            .map_err(|error| match error {
                TransactionError::Work(error) => error,
                TransactionError::Database(error) => map_error(error),
            })
    }
}

fn unavailable(error: &PoolError) -> RepoError {
    RepoError::Unavailable(error.to_string())
}

/// Maps a database error to a `RepoError`, by constraint name where there is one. The only place
/// that does.
pub(crate) fn map_error(error: DieselError) -> RepoError {
    let DieselError::DatabaseError(kind, info) = &error else {
        return match error {
            DieselError::NotFound => RepoError::Internal("a row expected to exist was not found".into()),
            other => RepoError::Internal(other.to_string()),
        };
    };
    let message = info.message();
    // PostgreSQL names the constraint; SQLite puts it (or the columns) in the message.
    let constraint = info
        .constraint_name()
        .map(str::to_owned)
        .or_else(|| sqlite_constraint(message));
    match kind {
        DatabaseErrorKind::UniqueViolation => RepoError::Conflict {
            constraint: constraint.unwrap_or_else(|| "unique".into()),
            message: conflict_message(message),
        },
        DatabaseErrorKind::CheckViolation => {
            let constraint = constraint.unwrap_or_default();
            RepoError::Validation {
                field: field_of(&constraint).to_owned(),
                message: format!("violates {constraint}"),
            }
        }
        DatabaseErrorKind::NotNullViolation => RepoError::Validation {
            field: info
                .column_name()
                .map(str::to_owned)
                .or_else(|| sqlite_column(message))
                .unwrap_or_default(),
            message: "is required".into(),
        },
        DatabaseErrorKind::ForeignKeyViolation => RepoError::Conflict {
            constraint: constraint.unwrap_or_else(|| "fk_attendance_users".into()),
            message: "refers to a row that does not exist".into(),
        },
        DatabaseErrorKind::ClosedConnection => RepoError::Unavailable(message.to_owned()),
        // PostgreSQL data exceptions (SQLSTATE class 22) that input the code did not catch.
        _ if message.contains("out of range")
            || message.contains("invalid byte sequence")
            || message.contains("invalid input syntax") =>
        {
            RepoError::validation("input", message)
        }
        _ if message.contains("statement timeout")
            || message.contains("lock timeout")
            || message.contains("database is locked") =>
        {
            RepoError::Timeout(message.to_owned())
        }
        _ => RepoError::Internal(message.to_owned()),
    }
}

/// SQLite's messages: a failed check names the check (`CHECK constraint failed: <name>`); a
/// failed unique index names its columns (`UNIQUE constraint failed: <table>.<column>`), which
/// identify the index.
fn sqlite_constraint(message: &str) -> Option<String> {
    if let Some(name) = message.strip_prefix("CHECK constraint failed: ") {
        return Some(name.trim().to_owned());
    }
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    Some(
        match columns.trim() {
            "users.email" => "uq_users_email",
            "attendance.user_id" => "uq_attendance_user_id",
            "users.id" => "pk_users",
            "attendance.id" => "pk_attendance",
            other => other,
        }
        .to_owned(),
    )
}

/// SQLite: `NOT NULL constraint failed: <table>.<column>`.
fn sqlite_column(message: &str) -> Option<String> {
    let column = message.strip_prefix("NOT NULL constraint failed: ")?;
    column.rsplit('.').next().map(str::to_owned)
}

fn conflict_message(message: &str) -> String {
    if message.contains("uq_users_email") || message.contains("users.email") {
        "a live user already has this email".into()
    } else if message.contains("uq_attendance_user_id") || message.contains("attendance.user_id") {
        "the user already has an open attendance".into()
    } else {
        "the row conflicts with an existing one".into()
    }
}

/// The input field a check constraint guards: `chk_users_email_format` guards `email`.
fn field_of(constraint: &str) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("chk_users_email", "email"),
        ("chk_users_full_name", "full_name"),
        ("chk_users_hashed_password", "password"),
        ("chk_attendance_check_out", "check_out_time"),
        ("chk_users_updated", "updated_at"),
        ("chk_attendance_updated", "updated_at"),
        ("chk_users_deletion", "deleted_at"),
        ("chk_attendance_deletion", "deleted_at"),
        ("chk_users_storage", "storage"),
        ("chk_attendance_storage", "storage"),
    ];
    FIELDS
        .iter()
        .find(|(prefix, _)| constraint.starts_with(prefix))
        .map_or("unknown", |(_, field)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_messages_name_their_constraints() {
        assert_eq!(
            sqlite_constraint("UNIQUE constraint failed: users.email").as_deref(),
            Some("uq_users_email")
        );
        assert_eq!(
            sqlite_constraint("CHECK constraint failed: chk_users_email_format").as_deref(),
            Some("chk_users_email_format")
        );
        assert_eq!(
            sqlite_column("NOT NULL constraint failed: users.full_name").as_deref(),
            Some("full_name")
        );
        assert_eq!(field_of("chk_attendance_check_out_after_check_in"), "check_out_time");
    }
}
