//! The diesel implementation of the repository traits: one file per aggregate, and here what
//! they share: where connections come from, the soft-delete scope, and the one place where
//! database errors become `RepoError`s.

mod attendance;
pub(crate) mod audit;
mod search;
mod users;

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError, QueryResult};
use domain::{
    Attendance, AttendanceId, AttendanceWithUser, AuditContext, AuditEntity, AuditEntry, CheckIn, CheckOut, DailyTotal,
    Email, NewUser, PasswordHash, User, UserChanges, UserId, UserWithAttendance,
};
use repo::{
    AttendanceRepository, AuditRepository, Cursor, Direction, KeysetPage, KeysetRequest, OffsetPage, PageRequest,
    Position, RepoError, Repositories, Scope, TimeRange, Total, TotalMode, TransactionWork, UnitOfWork, UserFilter,
    UserRepository,
};

use crate::cancellation::{caller_gone, caller_gone_error};
use crate::expressions::planned_rows;
use database::Backend;
use database::connection::DbConnection;
use database::transaction::{begin_savepoint, end_savepoint, write_transaction};
use database::{Database, PoolError, StatementKind};

pub use attendance::DieselAttendanceRepository;
pub use audit::DieselAuditRepository;
pub use users::DieselUserRepository;

/// The context of repository calls made outside a unit of work: no actor named.
static UNATTRIBUTED: LazyLock<AuditContext> = LazyLock::new(AuditContext::unattributed);

/// Where a repository gets its connection: a pool (each call borrows one), or, inside a unit of
/// work, the transaction's connection.
pub trait Connections {
    /// Runs `work` on a connection.
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError>;

    /// Runs `work`, which only reads (every statement a `SELECT`), on a connection: the
    /// statement metrics then count its statements without formatting their SQL, which would
    /// cost as much as an SQLite point read (`database::metrics::statements_of_kind`; checked
    /// against the SQL in debug builds, so every test run checks each call).
    fn read<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        database::metrics::statements_of_kind(StatementKind::Select, || self.with(work))
    }

    /// Who the calls are made for, written into their audit entries: the unit of work's
    /// context, or no actor outside one.
    fn audit_context(&self) -> &AuditContext {
        &UNATTRIBUTED
    }

    /// Runs the statements of `work` as one atomic step: in a write transaction of its own
    /// (`BEGIN IMMEDIATE` on SQLite), or, inside a unit of work, as part of the savepoint that
    /// already surrounds the repository call.
    fn atomic<R>(&self, work: impl FnOnce(&mut DbConnection) -> QueryResult<R>) -> Result<R, RepoError> {
        self.with(|connection| {
            write_transaction::<_, TransactionError>(connection, |connection| {
                work(connection).map_err(TransactionError::Database)
            })
            .map_err(TransactionError::into_repo)
        })
    }
}

impl Connections for Database {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        let mut connection = self.get().map_err(|error| unavailable(&error))?;
        let result = work(&mut connection);
        if matches!(result, Err(RepoError::Unavailable(_))) {
            // The server closed the connection: the pool must not hand it out again.
            connection.mark_lost();
        }
        result
    }
}

/// One connection, used by one caller at a time: a test that counts the queries a call makes.
impl Connections for RefCell<DbConnection> {
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

    fn audit_context(&self) -> &AuditContext {
        (**self).audit_context()
    }

    fn atomic<R>(&self, work: impl FnOnce(&mut DbConnection) -> QueryResult<R>) -> Result<R, RepoError> {
        (**self).atomic(work)
    }
}

impl<T: Connections> Connections for Arc<T> {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        (**self).with(work)
    }

    fn audit_context(&self) -> &AuditContext {
        (**self).audit_context()
    }

    fn atomic<R>(&self, work: impl FnOnce(&mut DbConnection) -> QueryResult<R>) -> Result<R, RepoError> {
        (**self).atomic(work)
    }
}

/// The repositories over a pool, and units of work on it: what a service holds.
#[derive(Clone)]
pub struct DieselStore {
    database: Arc<Database>,
    users: DieselUserRepository<Arc<Database>>,
    attendance: DieselAttendanceRepository<Arc<Database>>,
    audit: DieselAuditRepository<Arc<Database>>,
}

impl DieselStore {
    /// Repositories that borrow a pooled connection per call.
    #[must_use]
    pub fn new(database: Arc<Database>) -> Self {
        Self {
            users: DieselUserRepository::new(Arc::clone(&database)),
            attendance: DieselAttendanceRepository::new(Arc::clone(&database)),
            audit: DieselAuditRepository::new(Arc::clone(&database)),
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

    fn audit(&self) -> &dyn AuditRepository {
        &self.audit
    }
}

/// The connection of a unit of work in progress.
pub struct TransactionConnection<'c> {
    connection: RefCell<&'c mut DbConnection>,
    /// Who the unit of work acts for.
    context: &'c AuditContext,
    /// Set when a failed call could not be undone (its savepoint could not be rolled back or
    /// released): the transaction then holds effects nobody asked for, so every later call and
    /// the unit of work itself fail with this error, and nothing commits.
    poisoned: RefCell<Option<RepoError>>,
}

impl<'c> TransactionConnection<'c> {
    fn new(connection: &'c mut DbConnection, context: &'c AuditContext) -> Self {
        Self {
            connection: RefCell::new(connection),
            context,
            poisoned: RefCell::new(None),
        }
    }

    /// Runs one repository call in a savepoint of its own: released when the call succeeds,
    /// rolled back when it fails, so a failed call leaves nothing behind and the transaction
    /// usable (PostgreSQL would otherwise refuse every later statement and turn the COMMIT into a
    /// silent ROLLBACK). Costs two statements per call: `SAVEPOINT` and `RELEASE SAVEPOINT`.
    fn call<R>(&self, call: impl FnOnce() -> Result<R, RepoError>) -> Result<R, RepoError> {
        self.usable()?;
        self.with(|connection| begin_savepoint(connection).map_err(map_error))
            .inspect_err(|error| self.poison(error))?;
        let result = call();
        let ended = self.with(|connection| end_savepoint(connection, result.is_ok()).map_err(map_error));
        match (result, ended) {
            (result, Ok(())) => result,
            (Ok(_), Err(error)) => {
                self.poison(&error);
                Err(error)
            }
            // The call's own error says what went wrong (SQLite rolls the whole transaction back
            // by itself on a full disk); the transaction is lost with it.
            (Err(error), Err(rollback_error)) => {
                tracing::debug!(%rollback_error, %error, "a failed call's savepoint could not be rolled back");
                self.poison(&error);
                Err(error)
            }
        }
    }

    fn usable(&self) -> Result<(), RepoError> {
        match &*self.poisoned.borrow() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn poison(&self, error: &RepoError) {
        self.poisoned.borrow_mut().get_or_insert_with(|| error.clone());
    }
}

impl Connections for TransactionConnection<'_> {
    fn with<R>(&self, work: impl FnOnce(&mut DbConnection) -> Result<R, RepoError>) -> Result<R, RepoError> {
        let mut connection = self
            .connection
            .try_borrow_mut()
            .map_err(|_| RepoError::Internal("the connection is already in use".into()))?;
        work(&mut connection)
    }

    fn audit_context(&self) -> &AuditContext {
        self.context
    }

    fn atomic<R>(&self, work: impl FnOnce(&mut DbConnection) -> QueryResult<R>) -> Result<R, RepoError> {
        // Already inside the call's savepoint.
        self.with(|connection| work(connection).map_err(map_error))
    }
}

/// The repositories of one transaction: every call uses the transaction's connection, each in a
/// savepoint of its own.
struct TransactionRepositories<'t, 'c> {
    connection: &'t TransactionConnection<'c>,
    users: DieselUserRepository<&'t TransactionConnection<'c>>,
    attendance: DieselAttendanceRepository<&'t TransactionConnection<'c>>,
    audit: DieselAuditRepository<&'t TransactionConnection<'c>>,
}

impl Repositories for TransactionRepositories<'_, '_> {
    fn users(&self) -> &dyn UserRepository {
        self
    }

    fn attendance(&self) -> &dyn AttendanceRepository {
        self
    }

    fn audit(&self) -> &dyn AuditRepository {
        self
    }
}

/// Implements a repository trait for [`TransactionRepositories`] by running each call of the
/// repository in `$field` through [`TransactionConnection::call`].
macro_rules! each_call_in_a_savepoint {
    ($trait:ident, $field:ident, { $(fn $name:ident(&self $(, $arg:ident: $arg_type:ty)* $(,)?) -> $ret:ty;)* }) => {
        impl $trait for TransactionRepositories<'_, '_> {
            $(
                fn $name(&self $(, $arg: $arg_type)*) -> $ret {
                    self.connection.call(|| self.$field.$name($($arg),*))
                }
            )*
        }
    };
}

each_call_in_a_savepoint!(UserRepository, users, {
    fn create(&self, user: NewUser) -> Result<User, RepoError>;
    fn get(&self, id: UserId, scope: Scope) -> Result<User, RepoError>;
    fn get_by_email(&self, email: &Email, scope: Scope) -> Result<User, RepoError>;
    fn update(&self, id: UserId, changes: UserChanges) -> Result<User, RepoError>;
    fn replace_password_hash(
        &self,
        id: UserId,
        expected: &PasswordHash,
        replacement: PasswordHash,
    ) -> Result<bool, RepoError>;
    fn set_active(&self, id: UserId, active: bool) -> Result<User, RepoError>;
    fn soft_delete(&self, id: UserId) -> Result<User, RepoError>;
    fn restore(&self, id: UserId) -> Result<User, RepoError>;
    fn purge(&self, id: UserId) -> Result<(), RepoError>;
    fn purge_deleted_before(&self, cutoff: DateTime<Utc>) -> Result<u64, RepoError>;
    fn list(&self, filter: &UserFilter, page: PageRequest) -> Result<OffsetPage<User>, RepoError>;
    fn list_keyset(&self, filter: &UserFilter, page: &KeysetRequest) -> Result<KeysetPage<User>, RepoError>;
    fn list_with_attendance(
        &self,
        filter: &UserFilter,
        page: PageRequest,
        range: TimeRange,
    ) -> Result<OffsetPage<UserWithAttendance>, RepoError>;
});

each_call_in_a_savepoint!(AttendanceRepository, attendance, {
    fn check_in(&self, check_in: CheckIn) -> Result<Attendance, RepoError>;
    fn check_out(&self, check_out: CheckOut) -> Result<Attendance, RepoError>;
    fn get(&self, id: AttendanceId, scope: Scope) -> Result<Attendance, RepoError>;
    fn list_for_user(&self, user_id: UserId, range: TimeRange, scope: Scope) -> Result<Vec<Attendance>, RepoError>;
    fn currently_checked_in(&self) -> Result<Vec<AttendanceWithUser>, RepoError>;
    fn daily_totals(&self, user_id: UserId, range: TimeRange) -> Result<Vec<DailyTotal>, RepoError>;
    fn list_with_user(&self, scope: Scope, page: PageRequest) -> Result<OffsetPage<AttendanceWithUser>, RepoError>;
    fn soft_delete(&self, id: AttendanceId) -> Result<Attendance, RepoError>;
    fn restore(&self, id: AttendanceId) -> Result<Attendance, RepoError>;
});

each_call_in_a_savepoint!(AuditRepository, audit, {
    fn trail(&self, entity: &AuditEntity, page: &KeysetRequest) -> Result<KeysetPage<AuditEntry>, RepoError>;
});

/// A transaction's outcome: the work's own error, or the database's.
enum TransactionError {
    Work(RepoError),
    Database(DieselError),
}

impl TransactionError {
    fn into_repo(self) -> RepoError {
        match self {
            Self::Work(error) => error,
            Self::Database(error) => map_error(error),
        }
    }
}

impl From<DieselError> for TransactionError {
    fn from(error: DieselError) -> Self {
        Self::Database(error)
    }
}

impl std::fmt::Display for TransactionError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Work(error) => error.fmt(formatter),
            Self::Database(error) => error.fmt(formatter),
        }
    }
}

/// A unit of work: one pooled connection, one write transaction (`BEGIN IMMEDIATE` on SQLite),
/// each repository call in a savepoint. `Ok` only after a successful COMMIT.
impl UnitOfWork for DieselStore {
    #[tracing::instrument(skip_all, fields(actor = %context.actor()))]
    fn transaction(&self, context: &AuditContext, work: &mut dyn TransactionWork) -> Result<(), RepoError> {
        let mut pooled = self.database.get().map_err(|error| unavailable(&error))?;
        let result = write_transaction::<_, TransactionError>(&mut pooled, |connection| {
            let connection = TransactionConnection::new(connection, context);
            let repositories = TransactionRepositories {
                connection: &connection,
                users: DieselUserRepository::new(&connection),
                attendance: DieselAttendanceRepository::new(&connection),
                audit: DieselAuditRepository::new(&connection),
            };
            work.run(&repositories).map_err(TransactionError::Work)?;
            // The work may have carried on past a call whose savepoint could not be undone.
            connection.usable().map_err(TransactionError::Work)?;
            // An async caller that dropped its future gets nothing committed (`AsyncStore`).
            if caller_gone() {
                return Err(TransactionError::Work(caller_gone_error()));
            }
            Ok(())
        })
        .map_err(TransactionError::into_repo);
        if matches!(result, Err(RepoError::Unavailable(_))) {
            pooled.mark_lost();
        }
        result
    }
}

/// What an offset page's own rows tell about the end of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageEnd {
    /// The list ends on this page (or is empty): its total is the rows up to here.
    Here,
    /// Rows follow, or the page lies past the end: only a count tells the total.
    Unknown,
}

impl PageEnd {
    pub(crate) fn of<T>(rows: &[T], has_next: bool, offset: i64) -> Self {
        if !has_next && (!rows.is_empty() || offset == 0) {
            Self::Here
        } else {
            Self::Unknown
        }
    }
}

/// The total an offset page's request asks for, at the least cost: nothing when the page shows
/// where the list ends (`OffsetPage::new` then knows it) or when the caller skips it; the
/// planner's row estimate of the list's query (`explain`) for `Estimate` on PostgreSQL; an exact
/// `count` otherwise, and for `Estimate` on SQLite, which keeps no estimates.
pub(crate) fn count_total(
    connection: &mut DbConnection,
    request: PageRequest,
    end: PageEnd,
    count: impl FnOnce(&mut DbConnection) -> Result<i64, RepoError>,
    explain: impl FnOnce(&mut DbConnection) -> Result<String, RepoError>,
) -> Result<Total, RepoError> {
    let counted = |total: i64| u64::try_from(total).unwrap_or(0);
    match (request.total_mode(), end, connection.backend()) {
        (TotalMode::Skip, _, _) | (_, PageEnd::Here, _) => Ok(Total::NotCounted),
        (TotalMode::Estimate, PageEnd::Unknown, Backend::Postgres) => {
            // An EXPLAIN, inside a reading scope that declared its statements SELECTs.
            let plan = database::metrics::statements_of_kind(StatementKind::Other, || explain(connection))?;
            let estimate = planned_rows(&plan)
                .ok_or_else(|| RepoError::Internal("the planner's estimate is missing from EXPLAIN".into()))?;
            Ok(Total::Estimate(estimate))
        }
        (TotalMode::Exact | TotalMode::Estimate, PageEnd::Unknown, _) => Ok(Total::Exact(counted(count(connection)?))),
    }
}

/// A position a caller handed back in a cursor for the list described by `context`, which must
/// page the `expected` way.
pub(crate) fn expect_direction(cursor: &Cursor, expected: Direction, context: &str) -> Result<Position, RepoError> {
    let position = cursor.decode(context)?;
    if position.direction != expected {
        return Err(RepoError::validation(
            "cursor",
            "pages the other way: pass it as the other start",
        ));
    }
    Ok(position)
}

/// A keyset page of `items` (at most the page's limit, in the order the query read them), with
/// cursors from each item's `(timestamp, id)` position: `more` says the query found a row past
/// the limit, `backward` that it read towards earlier items (they are reversed here), and
/// `from_position` that the page started at a cursor.
pub(crate) fn keyset_page<T>(
    mut items: Vec<T>,
    more: bool,
    backward: bool,
    from_position: bool,
    position_of: impl Fn(&T) -> (DateTime<Utc>, uuid::Uuid),
    context: &str,
) -> KeysetPage<T> {
    if backward {
        items.reverse();
    }
    let cursor = |item: &T, direction| {
        let (created_at, id) = position_of(item);
        Cursor::encode(
            Position {
                created_at,
                id,
                direction,
            },
            context,
        )
    };
    let (has_next, has_previous) = if backward {
        (!items.is_empty(), more)
    } else {
        (more, from_position && !items.is_empty())
    };
    KeysetPage {
        next: items
            .last()
            .filter(|_| has_next)
            .map(|item| cursor(item, Direction::Forward)),
        previous: items
            .first()
            .filter(|_| has_previous)
            .map(|item| cursor(item, Direction::Backward)),
        items,
    }
}

fn unavailable(error: &PoolError) -> RepoError {
    RepoError::Unavailable(error.to_string())
}

/// Maps a database error to a `RepoError`, by constraint name where there is one. The only place
/// that does.
///
/// Constraint violations and lost connections are classified by diesel's error kind, which
/// PostgreSQL derives from the SQLSTATE and the connection status and SQLite from its result
/// code: that holds in any server language. diesel exposes no SQLSTATE beyond those kinds, so
/// timeouts, data exceptions and a full disk are recognised by the server's English message text
/// (SQLite's messages are never translated; PostgreSQL's follow `lc_messages`, see
/// ARCHITECTURE.md, known gaps).
pub(crate) fn map_error(error: DieselError) -> RepoError {
    let info = match error {
        DieselError::DatabaseError(kind, info) => (kind, info),
        // A COMMIT that failed and a rollback after it that failed too: the commit's error says why.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => return map_error(*commit_error),
        // diesel refuses to use a connection whose transaction state was lost (a rollback failed,
        // usually because the connection went away).
        DieselError::BrokenTransactionManager => {
            return RepoError::Unavailable("the connection's transaction was lost".into());
        }
        DieselError::NotFound => return RepoError::Internal("a row expected to exist was not found".into()),
        other => return RepoError::Internal(other.to_string()),
    };
    let (kind, info) = info;
    // libpq's own messages (a lost connection) span lines indented with tabs: one line here.
    let message = info.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let message = message.as_str();
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
        DatabaseErrorKind::SerializationFailure => RepoError::Conflict {
            constraint: "serialization".into(),
            message: "a concurrent transaction changed the same rows: retry".into(),
        },
        // A standby after a failover, or default_transaction_read_only: no write can succeed here
        // until the primary is back.
        DatabaseErrorKind::ReadOnlyTransaction => {
            RepoError::Unavailable(format!("the database is read-only: {message}"))
        }
        // The server closed the connection, or libpq has none left to send on ("no connection to
        // the server"): a lost connection, not a bug.
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            RepoError::Unavailable(message.to_owned())
        }
        // SQLite: SQLITE_FULL ("database or disk is full"); PostgreSQL: SQLSTATE 53100 disk_full,
        // "could not extend file ...: No space left on device", or a WAL write that failed.
        _ if message.contains("database or disk is full")
            || message.contains("No space left on device")
            || message.contains("could not extend file") =>
        {
            RepoError::StorageFull(message.to_owned())
        }
        // PostgreSQL data exceptions (SQLSTATE class 22) that input the code did not catch.
        _ if message.contains("out of range")
            || message.contains("invalid byte sequence")
            || message.contains("invalid input syntax") =>
        {
            RepoError::validation("input", message)
        }
        // PostgreSQL SQLSTATE 40P01: two transactions waited for each other and the server
        // ended this one. Like a serialization failure, retrying the transaction succeeds.
        _ if message.contains("deadlock detected") => RepoError::Conflict {
            constraint: "deadlock".into(),
            message: "a concurrent transaction held what this one needed: retry".into(),
        },
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
