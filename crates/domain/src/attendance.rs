//! Attendance: a check-in, closed by a check-out.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::{AttendanceId, User, UserId};

/// An attendance record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attendance {
    /// Identity.
    pub id: AttendanceId,
    /// Who checked in.
    pub user_id: UserId,
    /// When they checked in.
    pub check_in_time: DateTime<Utc>,
    /// When they checked out; `None` while the record is open.
    pub check_out_time: Option<DateTime<Utc>>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When the record was soft-deleted, if it was.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Attendance {
    /// Whether the user has not checked out yet.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.check_out_time.is_none()
    }
}

/// A check-in to record. `validate` (validator crate) checks that it is not in the future; the
/// repository checks it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Validate)]
pub struct CheckIn {
    /// Who checks in.
    pub user_id: UserId,
    /// When.
    #[validate(custom(function = "not_in_the_future"))]
    pub at: DateTime<Utc>,
}

/// A check-out to record: closes the user's open attendance. `validate` checks that it is not in
/// the future; the repository checks that again, and that it is after the check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Validate)]
pub struct CheckOut {
    /// Who checks out.
    pub user_id: UserId,
    /// When; must be after the check-in.
    #[validate(custom(function = "not_in_the_future"))]
    pub at: DateTime<Utc>,
}

fn not_in_the_future(at: &DateTime<Utc>) -> Result<(), validator::ValidationError> {
    crate::time::not_in_the_future(*at, "at")
        .map(drop)
        .map_err(|error| validator::ValidationError::new("at").with_message(error.message.into()))
}

/// Time worked by one user on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DailyTotal {
    /// Whose total.
    pub user_id: UserId,
    /// The UTC day of the check-ins counted.
    pub day: NaiveDate,
    /// Seconds between check-in and check-out, summed over the day's closed records.
    pub seconds: i64,
}

/// A user with their attendance, loaded together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithAttendance {
    /// The user.
    pub user: User,
    /// Their attendance in the requested range, oldest check-in first.
    pub attendance: Vec<Attendance>,
}

/// An attendance record with its user, loaded together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttendanceWithUser {
    /// The record.
    pub attendance: Attendance,
    /// Whose it is.
    pub user: User,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_ins_deserialise_and_refuse_the_future() {
        let user_id = UserId::new();
        let now: CheckIn = serde_json::from_str(&format!(
            r#"{{"user_id": "{user_id}", "at": "{}"}}"#,
            Utc::now().to_rfc3339()
        ))
        .expect("json");
        assert!(now.validate().is_ok());
        let later = CheckOut {
            user_id,
            at: Utc::now() + chrono::TimeDelta::hours(1),
        };
        assert!(later.validate().expect_err("future").field_errors().contains_key("at"));
        assert!(serde_json::from_str::<CheckIn>(r#"{"user_id": "nope", "at": "2026-01-01T00:00:00Z"}"#).is_err());
    }
}
