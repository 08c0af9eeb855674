#![doc = include_str!("../README.md")]

mod cursor;
mod error;
mod page;
mod traits;

pub use cursor::{Cursor, Direction, Position};
pub use error::RepoError;
pub use page::{KeysetPage, KeysetRequest, KeysetStart, MAX_PAGE_SIZE, OffsetPage, PageRequest, Total, TotalMode};
pub use traits::{
    AttendanceRepository, AuditRepository, MAX_SEARCH_CHARS, Repositories, Scope, TimeRange, TransactionWork,
    UnitOfWork, UnitOfWorkExt, UserFilter, UserRepository,
};
#[cfg(any(test, feature = "mock"))]
pub use traits::{MockAttendanceRepository, MockAuditRepository, MockRepositories, MockUnitOfWork, MockUserRepository};

pub use domain::{AttendanceId, AuditContext, UserId};
