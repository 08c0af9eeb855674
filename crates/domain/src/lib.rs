#![doc = include_str!("../README.md")]

mod attendance;
mod email;
mod error;
mod full_name;
mod id;
mod password;
mod text;
pub mod time;
mod user;

pub use attendance::{Attendance, AttendanceWithUser, CheckIn, CheckOut, DailyTotal, UserWithAttendance};
pub use email::{Email, MAX_EMAIL_LENGTH};
pub use error::ValidationError;
pub use full_name::{FullName, MAX_FULL_NAME_LENGTH};
pub use id::{AttendanceId, UserId};
pub use password::{MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Password, PasswordHash};
pub use user::{NewUser, RegisterUser, UpdateUser, User, UserChanges};
