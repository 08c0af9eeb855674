//! The repository traits. No database type appears in any signature.

use chrono::{DateTime, Utc};
use domain::{
    Attendance, AttendanceId, AttendanceWithUser, AuditContext, AuditEntity, AuditEntry, CheckIn, CheckOut, DailyTotal,
    Email, NewUser, PasswordHash, User, UserChanges, UserId, UserWithAttendance,
};

use crate::{KeysetPage, KeysetRequest, OffsetPage, PageRequest, RepoError};

/// Which rows a read sees with respect to soft deletion. Reads that fetch or list rows take one
/// (the default is `Live`), and eager loads and joins apply it to the rows they load alongside.
/// `currently_checked_in` and `daily_totals` count live rows only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Rows that are not soft-deleted.
    #[default]
    Live,
    /// All rows.
    WithDeleted,
    /// Soft-deleted rows only.
    OnlyDeleted,
}

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, included.
    pub from: DateTime<Utc>,
    /// End, excluded.
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// A range; `to` before `from`, or an end outside the years 1 to 9999, is a `Validation`
    /// error.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, RepoError> {
        let from = domain::time::storable(from, "from")?;
        let to = domain::time::storable(to, "to")?;
        if to < from {
            return Err(RepoError::validation("to", "must not be before from"));
        }
        Ok(Self { from, to })
    }
}

/// The longest search text a [`UserFilter`] takes, in characters; a longer one is a
/// `Validation` error on `search`.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Which users a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Soft-delete scope.
    pub scope: Scope,
    /// Case-insensitive substring of the name or the email, at most [`MAX_SEARCH_CHARS`]
    /// characters. Both sides are lower-cased by the database, one character at a time, so every
    /// stored name and email is found by any substring of itself in any letter case the backend
    /// folds (PostgreSQL: the database's `LC_CTYPE`; SQLite: Unicode's simple mapping).
    pub search: Option<String>,
}

/// Users: create, read, change, soft-delete with restore, purge, and list.
///
/// Every change here is audited: the implementation writes an entry into the audit log in the
/// same transaction as the change (`domain::audit::actions`), with the actor and correlation id
/// of the unit of work it runs in ([`UnitOfWork::transaction`]); a call made outside a unit of
/// work is recorded with the actor `none`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait UserRepository {
    /// Creates a user. `Conflict` on `uq_users_email` when a live user has the address.
    fn create(&self, user: NewUser) -> Result<User, RepoError>;
    /// The user with this id in `scope`.
    fn get(&self, id: UserId, scope: Scope) -> Result<User, RepoError>;
    /// The user with this address (case-insensitive) in `scope`.
    fn get_by_email(&self, email: &Email, scope: Scope) -> Result<User, RepoError>;
    /// Applies the changes that are set to a live user.
    fn update(&self, id: UserId, changes: UserChanges) -> Result<User, RepoError>;
    /// Replaces a live user's password hash with `replacement`, only if it is still `expected`
    /// (a sign-in that upgrades a weak hash must not undo a password change made meanwhile).
    /// Returns whether it was replaced.
    fn replace_password_hash(
        &self,
        id: UserId,
        expected: &PasswordHash,
        replacement: PasswordHash,
    ) -> Result<bool, RepoError>;
    /// Deactivates (`false`) or reactivates (`true`) a live user.
    fn set_active(&self, id: UserId, active: bool) -> Result<User, RepoError>;
    /// Soft-deletes a live user and, in the same transaction, their live attendance, all under
    /// one deletion batch.
    fn soft_delete(&self, id: UserId) -> Result<User, RepoError>;
    /// Restores a soft-deleted user and exactly the attendance their deletion took with them.
    /// `Conflict` when a live user now has the same address.
    fn restore(&self, id: UserId) -> Result<User, RepoError>;
    /// Deletes a user and their attendance for good, live or not.
    fn purge(&self, id: UserId) -> Result<(), RepoError>;
    /// Purges users soft-deleted before `cutoff` (retention); returns how many. `Validation` on
    /// `cutoff` outside the years 1 to 9999, as for every instant a repository takes.
    fn purge_deleted_before(&self, cutoff: DateTime<Utc>) -> Result<u64, RepoError>;
    /// A page of users ordered by `(created_at, id)`, with the total.
    fn list(&self, filter: &UserFilter, page: PageRequest) -> Result<OffsetPage<User>, RepoError>;
    /// A keyset page of users ordered by `(created_at, id)`.
    fn list_keyset(&self, filter: &UserFilter, page: &KeysetRequest) -> Result<KeysetPage<User>, RepoError>;
    /// A page of users with their attendance in `range`, in two queries whatever the page size;
    /// the filter's scope applies to the attendance too.
    fn list_with_attendance(
        &self,
        filter: &UserFilter,
        page: PageRequest,
        range: TimeRange,
    ) -> Result<OffsetPage<UserWithAttendance>, RepoError>;
}

/// Attendance: check in and out, read, totals, soft-delete with restore.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait AttendanceRepository {
    /// Opens an attendance record. `Conflict` on `uq_attendance_user_id` when the user already
    /// has an open one (enforced by the database, so concurrent check-ins cannot both succeed),
    /// and on `users.is_active` for a deactivated user; `NotFound` for an unknown or deleted user;
    /// `Validation` on `at` for a time in the future or outside the years 1 to 9999.
    fn check_in(&self, check_in: CheckIn) -> Result<Attendance, RepoError>;
    /// Closes the user's open record. `NotFound` when there is none; `Validation` on
    /// `check_out_time` when `at` is not after the check-in, and on `at` for a time in the future.
    fn check_out(&self, check_out: CheckOut) -> Result<Attendance, RepoError>;
    /// The record with this id in `scope`.
    fn get(&self, id: AttendanceId, scope: Scope) -> Result<Attendance, RepoError>;
    /// A user's records with a check-in in `range`, oldest first.
    fn list_for_user(&self, user_id: UserId, range: TimeRange, scope: Scope) -> Result<Vec<Attendance>, RepoError>;
    /// Open records of live users, with the user, in one query.
    fn currently_checked_in(&self) -> Result<Vec<AttendanceWithUser>, RepoError>;
    /// Seconds worked by a user, summed by the database over closed live records whose check-in
    /// is in `range`, grouped by the UTC day of the check-in (a shift past midnight counts for
    /// the day it began). Each record's duration is rounded to the nearest second.
    fn daily_totals(&self, user_id: UserId, range: TimeRange) -> Result<Vec<DailyTotal>, RepoError>;
    /// A page of records with their users, in one query.
    fn list_with_user(&self, scope: Scope, page: PageRequest) -> Result<OffsetPage<AttendanceWithUser>, RepoError>;
    /// Soft-deletes one record.
    fn soft_delete(&self, id: AttendanceId) -> Result<Attendance, RepoError>;
    /// Restores one soft-deleted record. `Conflict` when it went with its user (restore the user)
    /// or when its user is deleted now.
    fn restore(&self, id: AttendanceId) -> Result<Attendance, RepoError>;
}

/// The audit log, read side: entries are written by the repositories themselves, in the
/// transaction of the change they record, and are never changed or deleted.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait AuditRepository {
    /// The trail of one entity, oldest first, a keyset page at a time. An entity with no
    /// entries has an empty trail.
    fn trail(&self, entity: &AuditEntity, page: &KeysetRequest) -> Result<KeysetPage<AuditEntry>, RepoError>;
}

/// The repositories of one transaction.
pub trait Repositories {
    /// Users, inside the transaction.
    fn users(&self) -> &dyn UserRepository;
    /// Attendance, inside the transaction.
    fn attendance(&self) -> &dyn AttendanceRepository;
    /// The audit log, inside the transaction.
    fn audit(&self) -> &dyn AuditRepository;
}

/// The body of a transaction, as [`UnitOfWork::transaction`] takes it. Services normally use
/// [`UnitOfWorkExt::transact`], which returns the work's value; any
/// `FnMut(&dyn Repositories) -> Result<(), RepoError>` is a `TransactionWork` too.
pub trait TransactionWork {
    /// Runs the repository calls of the transaction.
    fn run(&mut self, repositories: &dyn Repositories) -> Result<(), RepoError>;
}

impl<F: FnMut(&dyn Repositories) -> Result<(), RepoError>> TransactionWork for F {
    fn run(&mut self, repositories: &dyn Repositories) -> Result<(), RepoError> {
        self(repositories)
    }
}

/// Runs several repository calls in one transaction.
///
/// The contract every implementation keeps:
/// - Every sensitive change made in the work is audited with `context`'s actor and correlation
///   id, in the same transaction: committed with it, or rolled back with it.
/// - `Ok(())` only when the work returned `Ok` **and the COMMIT succeeded**; a COMMIT that fails
///   (a deferred constraint, a serialization failure, a lost connection) is returned as the error.
///   After an `Unavailable` from the COMMIT itself the outcome is unknown: the server may have
///   committed before the connection went away.
/// - When the work returns an error the transaction is rolled back and that error is returned.
/// - Inside the transaction every repository call is atomic on its own: a call that fails leaves
///   nothing behind and the transaction usable, so the work may catch a typed error (a
///   `Conflict`, say) and carry on; what it commits is exactly the calls that succeeded.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait UnitOfWork {
    /// Runs `work` in a transaction on behalf of `context`'s actor. Use
    /// [`UnitOfWorkExt::transact`] to get a value out.
    fn transaction(&self, context: &AuditContext, work: &mut dyn TransactionWork) -> Result<(), RepoError>;
}

/// The one way to run a transaction that returns a value, for every [`UnitOfWork`]: the diesel
/// store, `dyn UnitOfWork` and the mocks alike.
pub trait UnitOfWorkExt: UnitOfWork {
    /// Runs `work` in one transaction on behalf of `context`'s actor and returns its value once
    /// the transaction has committed.
    ///
    /// - The work's `Ok(value)` is returned only if the COMMIT succeeded; otherwise the
    ///   transaction's error is.
    /// - The work's own error `E` rolls the transaction back and is returned unchanged, whatever
    ///   the rollback reported.
    fn transact<T, E>(
        &self,
        context: &AuditContext,
        mut work: impl FnMut(&dyn Repositories) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<RepoError>,
    {
        let mut value: Option<T> = None;
        let mut work_error: Option<E> = None;
        let outcome = self.transaction(
            context,
            &mut |repositories: &dyn Repositories| match work(repositories) {
                Ok(produced) => {
                    value = Some(produced);
                    work_error = None;
                    Ok(())
                }
                Err(error) => {
                    value = None;
                    work_error = Some(error);
                    Err(RepoError::Internal("rolled back: the work failed".into()))
                }
            },
        );
        if let Some(error) = work_error {
            return Err(error);
        }
        match (outcome, value) {
            (Ok(()), Some(value)) => Ok(value),
            (Err(error), _) => Err(error.into()),
            (Ok(()), None) => {
                Err(RepoError::Internal("the unit of work returned Ok without running the work".into()).into())
            }
        }
    }
}

impl<U: UnitOfWork + ?Sized> UnitOfWorkExt for U {}

/// Mock repositories for one transaction, for services' unit tests: set expectations on
/// `users` and `attendance`, then hand it to a `MockUnitOfWork` that calls `work.run(&it)`.
#[cfg(any(test, feature = "mock"))]
#[derive(Default)]
pub struct MockRepositories {
    /// Expectations on user calls.
    pub users: MockUserRepository,
    /// Expectations on attendance calls.
    pub attendance: MockAttendanceRepository,
    /// Expectations on audit log reads.
    pub audit: MockAuditRepository,
}

#[cfg(any(test, feature = "mock"))]
impl Repositories for MockRepositories {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A service-shaped function: two calls in one transaction.
    fn deactivate_by_email(unit_of_work: &dyn UnitOfWork, email: &Email) -> Result<User, RepoError> {
        unit_of_work.transact(&AuditContext::unattributed(), |repositories| {
            let user = repositories.users().get_by_email(email, Scope::Live)?;
            repositories.users().set_active(user.id, false)
        })
    }

    /// A unit of work that runs the work, then fails as a failed COMMIT would.
    fn failing_commit() -> MockUnitOfWork {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(|_, work| {
            let mut repositories = MockRepositories::default();
            repositories
                .users
                .expect_get_by_email()
                .returning(|email, _| Ok(user_with(email)));
            repositories
                .users
                .expect_set_active()
                .returning(|_, _| Ok(user_with(&ann())));
            work.run(&repositories)?;
            Err(RepoError::Unavailable("the connection closed during COMMIT".into()))
        });
        unit_of_work
    }

    fn ann() -> Email {
        Email::parse("ann@example.com").expect("valid")
    }

    fn user_with(email: &Email) -> User {
        let now = Utc::now();
        User {
            id: UserId::new(),
            email: email.clone(),
            full_name: domain::FullName::parse("Ann").expect("valid"),
            password_hash: domain::Password::parse("correct horse")
                .expect("valid")
                .hash()
                .expect("hash"),
            is_active: false,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    #[test]
    fn a_failed_commit_is_the_result_even_when_the_work_produced_a_value() {
        let error = deactivate_by_email(&failing_commit(), &ann()).expect_err("the commit failed");
        assert!(matches!(error, RepoError::Unavailable(_)), "{error:?}");
    }

    #[test]
    fn the_works_own_error_comes_back_unchanged() {
        #[derive(Debug, PartialEq)]
        enum ServiceError {
            Repo(RepoError),
            Refused,
        }
        impl From<RepoError> for ServiceError {
            fn from(error: RepoError) -> Self {
                Self::Repo(error)
            }
        }
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(|_, work| {
            // The rollback's own report does not replace the work's error.
            work.run(&MockRepositories::default())
                .and(Err(RepoError::Unavailable("rollback failed".into())))
        });
        let result: Result<(), ServiceError> =
            unit_of_work.transact(&AuditContext::unattributed(), |_| Err(ServiceError::Refused));
        assert_eq!(result, Err(ServiceError::Refused));
    }

    #[test]
    fn a_unit_of_work_that_skips_the_work_is_not_ok() {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().returning(|_, _| Ok(()));
        let result: Result<u32, RepoError> = unit_of_work.transact(&AuditContext::unattributed(), |_| Ok(1));
        assert!(matches!(result, Err(RepoError::Internal(_))), "{result:?}");
    }

    #[test]
    fn the_audit_trail_is_mocked_like_the_other_repositories() {
        let ann = UserId::new();
        let mut repositories = MockRepositories::default();
        repositories
            .audit
            .expect_trail()
            .withf(move |entity, _| *entity == AuditEntity::user(ann))
            .times(1)
            .returning(|_, _| {
                Ok(KeysetPage {
                    items: Vec::new(),
                    next: None,
                    previous: None,
                })
            });
        let page = repositories
            .audit()
            .trail(
                &AuditEntity::user(ann),
                &KeysetRequest::new(crate::KeysetStart::First, 10).expect("valid"),
            )
            .expect("a page");
        assert!(page.items.is_empty());
    }

    #[test]
    fn mocks_drive_a_transaction_and_propagate_errors() {
        let email = Email::parse("ann@example.com").expect("valid");
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(|_, work| {
            let mut repositories = MockRepositories::default();
            repositories
                .users
                .expect_get_by_email()
                .withf(|email, scope| email.as_str() == "ann@example.com" && *scope == Scope::Live)
                .times(1)
                .returning(|email, _| Err(RepoError::not_found("user", email)));
            repositories.users.expect_set_active().never();
            work.run(&repositories)
        });
        let error = deactivate_by_email(&unit_of_work, &email).expect_err("not found");
        assert_eq!(
            error,
            RepoError::NotFound {
                entity: "user",
                key: "ann@example.com".to_owned()
            }
        );
    }
}
