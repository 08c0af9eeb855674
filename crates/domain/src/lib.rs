#![doc = include_str!("../README.md")]

mod attendance;
pub mod audit;
mod email;
mod error;
mod full_name;
mod id;
mod password;
mod text;
pub mod time;
mod user;

pub use attendance::{Attendance, AttendanceWithUser, CheckIn, CheckOut, DailyTotal, UserWithAttendance};
pub use audit::{Actor, AuditContext, AuditEntity, AuditEntry, CorrelationId};
pub use email::{Email, MAX_EMAIL_LENGTH};
pub use error::ValidationError;
pub use full_name::{FullName, MAX_FULL_NAME_LENGTH};
pub use id::{AttendanceId, UserId};
pub use password::{
    ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Password,
    PasswordHash,
};
pub use user::{NewUser, RegisterUser, UpdateUser, User, UserChanges};
