//! Builders (factories) for test data: valid, unique defaults (fake names, numbered emails), each
//! field overridable, built through the repository traits so that every row passes the same
//! rules as production data.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Attendance, AttendanceId, CheckIn, CheckOut, Email, FullName, NewUser, Password, PasswordHash, User, UserId,
};
use fake::Fake as _;
use fake::faker::name::en::{FirstName, LastName};
use repo::{AttendanceRepository, RepoError, UserRepository};

/// The password of every built user unless one is given.
pub const DEFAULT_PASSWORD: &str = "correct horse battery staple";

/// The hash of [`DEFAULT_PASSWORD`], computed once per process: argon2id is slow on purpose.
#[must_use]
pub fn default_password_hash() -> PasswordHash {
    static HASH: OnceLock<PasswordHash> = OnceLock::new();
    HASH.get_or_init(|| {
        Password::parse(DEFAULT_PASSWORD)
            .and_then(|password| password.hash())
            .expect("the default password is valid")
    })
    .clone()
}

/// A user to create: fake name, unique email, the default password, active and live.
#[derive(Debug, Clone)]
#[must_use]
pub struct UserBuilder {
    email: Option<String>,
    full_name: Option<String>,
    password: Option<String>,
    active: bool,
    deleted: bool,
}

impl Default for UserBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl UserBuilder {
    /// A user with valid, unique defaults.
    pub fn new() -> Self {
        Self {
            email: None,
            full_name: None,
            password: None,
            active: true,
            deleted: false,
        }
    }

    /// Uses this email.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Uses this name.
    pub fn full_name(mut self, full_name: impl Into<String>) -> Self {
        self.full_name = Some(full_name.into());
        self
    }

    /// Uses this password (hashed when built).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Builds a deactivated user.
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    /// Builds a soft-deleted user.
    pub fn deleted(mut self) -> Self {
        self.deleted = true;
        self
    }

    /// The validated input, without creating it.
    pub fn new_user(&self) -> Result<NewUser, RepoError> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(1);
        let first: String = FirstName().fake();
        let last: String = LastName().fake();
        let full_name = self.full_name.clone().unwrap_or_else(|| format!("{first} {last}"));
        let email = self.email.clone().unwrap_or_else(|| {
            let local: String = format!("{first}.{last}")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            format!(
                "{}.{}@example.com",
                local.to_ascii_lowercase(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            )
        });
        let password_hash = match &self.password {
            Some(password) => Password::parse(password)?.hash()?,
            None => default_password_hash(),
        };
        Ok(NewUser {
            email: Email::parse(&email)?,
            full_name: FullName::parse(&full_name)?,
            password_hash,
        })
    }

    /// The user in memory, without a database: for a mock's return value. A fresh id, `now` as
    /// its timestamps (and as `deleted_at` when deleted), and the builder's email, name, password
    /// and flags, checked by the same parsers as [`UserBuilder::build`]; no repository rule
    /// (uniqueness) is checked.
    pub fn user(&self) -> Result<User, RepoError> {
        let new_user = self.new_user()?;
        let now = domain::time::now();
        Ok(User {
            id: UserId::new(),
            email: new_user.email,
            full_name: new_user.full_name,
            password_hash: new_user.password_hash,
            is_active: self.active,
            created_at: now,
            updated_at: now,
            deleted_at: self.deleted.then_some(now),
        })
    }

    /// Creates the user through `users`, then deactivates or deletes it as asked.
    pub fn build(self, users: &dyn UserRepository) -> Result<User, RepoError> {
        let mut user = users.create(self.new_user()?)?;
        if !self.active {
            user = users.set_active(user.id, false)?;
        }
        if self.deleted {
            user = users.soft_delete(user.id)?;
        }
        Ok(user)
    }
}

/// An attendance record to create: a closed eight-hour shift that began yesterday at 09:00 UTC,
/// unless told otherwise.
#[derive(Debug, Clone)]
#[must_use]
pub struct AttendanceBuilder {
    user_id: UserId,
    check_in: DateTime<Utc>,
    check_out: Option<DateTime<Utc>>,
}

impl AttendanceBuilder {
    /// A closed shift for `user_id`.
    pub fn new(user_id: UserId) -> Self {
        let yesterday = (domain::time::now() - TimeDelta::days(1)).date_naive();
        let check_in = yesterday
            .and_hms_opt(9, 0, 0)
            .map_or_else(domain::time::now, |at| at.and_utc());
        Self {
            user_id,
            check_in,
            check_out: Some(check_in + TimeDelta::hours(8)),
        }
    }

    /// Checks in at `at`, keeping the shift's length.
    pub fn checked_in_at(mut self, at: DateTime<Utc>) -> Self {
        let length = self.check_out.map(|out| out - self.check_in);
        self.check_in = at;
        self.check_out = length.map(|length| at + length);
        self
    }

    /// A shift of `length`.
    pub fn lasting(mut self, length: TimeDelta) -> Self {
        self.check_out = Some(self.check_in + length);
        self
    }

    /// Leaves the record open (no check-out).
    pub fn open(mut self) -> Self {
        self.check_out = None;
        self
    }

    /// The record in memory, without a database: for a mock's return value. A fresh id, the
    /// builder's user, check-in and check-out, and `now` as its timestamps; no rule of the
    /// repository (check-in not in the future, one open record per user) is checked.
    #[must_use]
    pub fn attendance(&self) -> Attendance {
        let now = domain::time::now();
        Attendance {
            id: AttendanceId::new(),
            user_id: self.user_id,
            check_in_time: self.check_in,
            check_out_time: self.check_out,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    /// Checks in (and out) through `attendance`.
    pub fn build(self, attendance: &dyn AttendanceRepository) -> Result<Attendance, RepoError> {
        let record = attendance.check_in(CheckIn {
            user_id: self.user_id,
            at: self.check_in,
        })?;
        match self.check_out {
            Some(at) => attendance.check_out(CheckOut {
                user_id: self.user_id,
                at,
            }),
            None => Ok(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_memory_user_has_the_builders_values() {
        let ann = UserBuilder::new()
            .email("Ann@Example.com")
            .full_name("Ann")
            .inactive()
            .user()
            .expect("valid");
        assert_eq!((ann.email.as_str(), ann.full_name.as_str()), ("ann@example.com", "Ann"));
        assert!(!ann.is_active && !ann.is_deleted());
        assert_eq!(ann.created_at, ann.updated_at);
        assert!(
            ann.password_hash
                .verify(&Password::parse(DEFAULT_PASSWORD).expect("valid"))
        );
        let bob = UserBuilder::new().deleted().user().expect("valid");
        assert!(bob.is_active && bob.is_deleted());
        assert_ne!(bob.id, ann.id, "a fresh id each time");
        assert_ne!(bob.email, ann.email, "a unique email by default");
        let refused = UserBuilder::new().email("not an email").user().expect_err("invalid");
        assert!(
            matches!(&refused, RepoError::Validation { field, .. } if field == "email"),
            "{refused}"
        );
    }

    #[test]
    fn an_in_memory_record_has_the_builders_values() {
        let user_id = UserId::new();
        let at = domain::time::now() - TimeDelta::hours(2);
        let open = AttendanceBuilder::new(user_id).checked_in_at(at).open().attendance();
        assert_eq!((open.user_id, open.check_in_time), (user_id, at));
        assert!(open.is_open() && open.deleted_at.is_none());
        let closed = AttendanceBuilder::new(user_id)
            .checked_in_at(at)
            .lasting(TimeDelta::hours(1))
            .attendance();
        assert_eq!(closed.check_out_time, Some(at + TimeDelta::hours(1)));
        assert_ne!(closed.id, open.id);
    }
}
