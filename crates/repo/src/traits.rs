//! The repository traits. No database type appears in any signature.

use chrono::{DateTime, Utc};
use domain::{
    Attendance, AttendanceId, AttendanceWithUser, CheckIn, CheckOut, DailyTotal, Email, NewUser, User, UserChanges,
    UserId, UserWithAttendance,
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

/// Which users a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Soft-delete scope.
    pub scope: Scope,
    /// Case-insensitive substring of the name or the email.
    pub search: Option<String>,
}

/// Users: create, read, change, soft-delete with restore, purge, and list.
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
    /// Purges users soft-deleted before `cutoff` (retention); returns how many.
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

/// The repositories of one transaction.
pub trait Repositories {
    /// Users, inside the transaction.
    fn users(&self) -> &dyn UserRepository;
    /// Attendance, inside the transaction.
    fn attendance(&self) -> &dyn AttendanceRepository;
}

/// The body of a transaction. Any `FnMut(&dyn Repositories) -> Result<(), RepoError>` is one;
/// a closure returns values by assigning to variables it captured.
pub trait TransactionWork {
    /// Runs the repository calls of the transaction.
    fn run(&mut self, repositories: &dyn Repositories) -> Result<(), RepoError>;
}

impl<F: FnMut(&dyn Repositories) -> Result<(), RepoError>> TransactionWork for F {
    fn run(&mut self, repositories: &dyn Repositories) -> Result<(), RepoError> {
        self(repositories)
    }
}

/// Runs several repository calls in one transaction: committed when the work returns `Ok`,
/// rolled back when it returns an error (which is then returned).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait UnitOfWork {
    /// Runs `work` in a transaction.
    fn transaction(&self, work: &mut dyn TransactionWork) -> Result<(), RepoError>;
}

/// Mock repositories for one transaction, for services' unit tests: set expectations on
/// `users` and `attendance`, then hand it to a `MockUnitOfWork` that calls `work.run(&it)`.
#[cfg(any(test, feature = "mock"))]
#[derive(Default)]
pub struct MockRepositories {
    /// Expectations on user calls.
    pub users: MockUserRepository,
    /// Expectations on attendance calls.
    pub attendance: MockAttendanceRepository,
}

#[cfg(any(test, feature = "mock"))]
impl Repositories for MockRepositories {
    fn users(&self) -> &dyn UserRepository {
        &self.users
    }

    fn attendance(&self) -> &dyn AttendanceRepository {
        &self.attendance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service-shaped function: two calls in one transaction.
    fn deactivate_by_email(unit_of_work: &dyn UnitOfWork, email: &Email) -> Result<User, RepoError> {
        let mut deactivated = None;
        unit_of_work.transaction(&mut |repositories: &dyn Repositories| {
            let user = repositories.users().get_by_email(email, Scope::Live)?;
            deactivated = Some(repositories.users().set_active(user.id, false)?);
            Ok(())
        })?;
        deactivated.ok_or_else(|| RepoError::Internal("the transaction ran no work".into()))
    }

    #[test]
    fn mocks_drive_a_transaction_and_propagate_errors() {
        let email = Email::parse("ann@example.com").expect("valid");
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(|work| {
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
