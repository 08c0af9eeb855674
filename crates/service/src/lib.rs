#![doc = include_str!("../README.md")]

use chrono::{DateTime, Utc};
use domain::{Attendance, CheckIn, CheckOut, DailyTotal, Password, RegisterUser, User, UserChanges, UserId};
use repo::{RepoError, Scope, TimeRange, UnitOfWork, UnitOfWorkExt as _};
use validator::Validate as _;

/// Why an operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A repository refused or failed; its error says why.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The current password given to `change_password` is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// A deactivated user tried to check in.
    #[error("user {0} is deactivated and cannot check in")]
    Inactive(UserId),
}

impl From<domain::ValidationError> for ServiceError {
    fn from(error: domain::ValidationError) -> Self {
        Self::Repo(error.into())
    }
}

/// A user's working time over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// Whose hours.
    pub user_id: UserId,
    /// The period.
    pub from: DateTime<Utc>,
    /// End of the period, excluded.
    pub to: DateTime<Utc>,
    /// One entry per UTC day with closed attendance, oldest first.
    pub days: Vec<DailyTotal>,
    /// The sum of `days`, in seconds.
    pub total_seconds: i64,
}

/// The attendance service, over any `UnitOfWork` (the diesel store in production, mocks in unit
/// tests).
pub struct AttendanceService<W> {
    unit_of_work: W,
}

impl<W: UnitOfWork> AttendanceService<W> {
    /// A service that runs its operations on `unit_of_work`.
    pub fn new(unit_of_work: W) -> Self {
        Self { unit_of_work }
    }

    /// Registers a user: validates, hashes the password, creates.
    #[tracing::instrument(skip(self, input), fields(email = %input.email))]
    pub fn register(&self, input: &RegisterUser) -> Result<User, ServiceError> {
        if let Err(errors) = input.validate() {
            let field = errors
                .field_errors()
                .keys()
                .next()
                .map_or("input", |field| field.as_ref())
                .to_owned();
            return Err(RepoError::validation(field, errors.to_string()).into());
        }
        let (email, full_name, password) = input.parse()?;
        let password_hash = password.hash()?;
        let new_user = domain::NewUser {
            email,
            full_name,
            password_hash,
        };
        self.unit_of_work
            .transact(|repositories| Ok(repositories.users().create(new_user.clone())?))
    }

    /// Changes a live user's password after verifying the current one.
    #[tracing::instrument(skip(self, current, new))]
    pub fn change_password(&self, user_id: UserId, current: &str, new: &str) -> Result<User, ServiceError> {
        let current = Password::parse(current).map_err(|_| ServiceError::WrongPassword)?;
        let new_hash = Password::parse(new)?.hash()?;
        self.unit_of_work.transact(|repositories| {
            let user = repositories.users().get(user_id, Scope::Live)?;
            if !user.password_hash.verify(&current) {
                return Err(ServiceError::WrongPassword);
            }
            let changes = UserChanges {
                password_hash: Some(new_hash.clone()),
                ..UserChanges::default()
            };
            Ok(repositories.users().update(user_id, changes)?)
        })
    }

    /// Deactivates a user: they keep their data but may not check in.
    pub fn deactivate(&self, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work
            .transact(|repositories| Ok(repositories.users().set_active(user_id, false)?))
    }

    /// Reactivates a user.
    pub fn reactivate(&self, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work
            .transact(|repositories| Ok(repositories.users().set_active(user_id, true)?))
    }

    /// Soft-deletes a user and their attendance.
    pub fn delete(&self, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work
            .transact(|repositories| Ok(repositories.users().soft_delete(user_id)?))
    }

    /// Restores a soft-deleted user and the attendance that went with them.
    pub fn restore(&self, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work
            .transact(|repositories| Ok(repositories.users().restore(user_id)?))
    }

    /// Checks a user in: only a live, active user; a second open check-in is a `Conflict`.
    #[tracing::instrument(skip(self))]
    pub fn check_in(&self, user_id: UserId, at: DateTime<Utc>) -> Result<Attendance, ServiceError> {
        self.unit_of_work.transact(|repositories| {
            let user = repositories.users().get(user_id, Scope::Live)?;
            if !user.is_active {
                return Err(ServiceError::Inactive(user_id));
            }
            Ok(repositories.attendance().check_in(CheckIn { user_id, at })?)
        })
    }

    /// Checks a user out: closes their open record.
    #[tracing::instrument(skip(self))]
    pub fn check_out(&self, user_id: UserId, at: DateTime<Utc>) -> Result<Attendance, ServiceError> {
        self.unit_of_work
            .transact(|repositories| Ok(repositories.attendance().check_out(CheckOut { user_id, at })?))
    }

    /// Time worked per UTC day, and in total, by a user over `[from, to)`.
    pub fn working_hours(
        &self,
        user_id: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<WorkingHours, ServiceError> {
        let range = TimeRange::new(from, to)?;
        self.unit_of_work.transact(|repositories| {
            repositories.users().get(user_id, Scope::WithDeleted)?;
            let days = repositories.attendance().daily_totals(user_id, range)?;
            let total_seconds = days.iter().map(|day| day.seconds).sum();
            Ok(WorkingHours {
                user_id,
                from,
                to,
                days,
                total_seconds,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeDelta};
    use domain::{AttendanceId, Email, FullName, PasswordHash};
    use repo::{MockRepositories, MockUnitOfWork};

    use super::*;

    fn hash_of(password: &str) -> PasswordHash {
        Password::parse(password).expect("valid").hash().expect("hash")
    }

    fn user(active: bool, password_hash: PasswordHash) -> User {
        let now = domain::time::now();
        User {
            id: UserId::new(),
            email: Email::parse("ann@example.com").expect("valid"),
            full_name: FullName::parse("Ann").expect("valid"),
            password_hash,
            is_active: active,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    fn record(user_id: UserId, at: DateTime<Utc>) -> Attendance {
        Attendance {
            id: AttendanceId::new(),
            user_id,
            check_in_time: at,
            check_out_time: None,
            created_at: at,
            updated_at: at,
            deleted_at: None,
        }
    }

    /// A unit of work that runs the operation once against mocks set up by `setup`.
    fn unit_of_work(setup: impl Fn(&mut MockRepositories) + Send + 'static) -> MockUnitOfWork {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(move |work| {
            let mut repositories = MockRepositories::default();
            setup(&mut repositories);
            work.run(&repositories)
        });
        unit_of_work
    }

    #[test]
    fn register_validates_hashes_and_creates() {
        let service = AttendanceService::new(unit_of_work(|repositories| {
            repositories
                .users
                .expect_create()
                .withf(|new_user| {
                    new_user.email.as_str() == "ann@example.com"
                        && new_user.password_hash.as_phc().starts_with("$argon2id$")
                        && new_user
                            .password_hash
                            .verify(&Password::parse("correct horse").expect("valid"))
                })
                .times(1)
                .returning(|new_user| {
                    Ok(User {
                        email: new_user.email,
                        ..user(true, new_user.password_hash)
                    })
                });
        }));
        let input = RegisterUser {
            email: "Ann@Example.com".into(),
            full_name: "Ann".into(),
            password: "correct horse".into(),
        };
        assert_eq!(
            service.register(&input).expect("registered").email.as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn invalid_registrations_never_reach_the_repository() {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().never();
        let service = AttendanceService::new(unit_of_work);
        let input = RegisterUser {
            email: "nope".into(),
            full_name: "Ann".into(),
            password: "correct horse".into(),
        };
        let error = service.register(&input).expect_err("invalid");
        assert!(
            matches!(&error, ServiceError::Repo(RepoError::Validation { field, .. }) if field == "email"),
            "{error}"
        );
    }

    #[test]
    fn a_duplicate_email_is_the_repository_conflict() {
        let conflict = RepoError::Conflict {
            constraint: "uq_users_email".into(),
            message: "taken".into(),
        };
        let expected = conflict.clone();
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            let conflict = conflict.clone();
            repositories
                .users
                .expect_create()
                .times(1)
                .returning(move |_| Err(conflict.clone()));
        }));
        let input = RegisterUser {
            email: "ann@example.com".into(),
            full_name: "Ann".into(),
            password: "correct horse".into(),
        };
        assert_eq!(service.register(&input), Err(ServiceError::Repo(expected)));
    }

    #[test]
    fn change_password_verifies_the_current_one_first() {
        let ann = user(true, hash_of("old password"));
        let id = ann.id;
        let stored = ann.clone();
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            let stored = stored.clone();
            repositories
                .users
                .expect_get()
                .withf(move |user_id, scope| *user_id == id && *scope == Scope::Live)
                .returning(move |_, _| Ok(stored.clone()));
            repositories.users.expect_update().never();
        }));
        assert_eq!(
            service.change_password(id, "wrong password", "new password"),
            Err(ServiceError::WrongPassword)
        );

        let stored = ann.clone();
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            let stored = stored.clone();
            repositories
                .users
                .expect_get()
                .returning(move |_, _| Ok(stored.clone()));
            repositories
                .users
                .expect_update()
                .withf(move |user_id, changes| {
                    *user_id == id
                        && changes.email.is_none()
                        && changes
                            .password_hash
                            .as_ref()
                            .is_some_and(|hash| hash.verify(&Password::parse("new password").expect("valid")))
                })
                .times(1)
                .returning(|_, changes| Ok(user(true, changes.password_hash.expect("set"))));
        }));
        assert!(service.change_password(id, "old password", "new password").is_ok());
    }

    #[test]
    fn only_active_live_users_check_in() {
        let inactive = user(false, hash_of("old password"));
        let id = inactive.id;
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            let inactive = inactive.clone();
            repositories
                .users
                .expect_get()
                .returning(move |_, _| Ok(inactive.clone()));
            repositories.attendance.expect_check_in().never();
        }));
        assert_eq!(
            service.check_in(id, domain::time::now()),
            Err(ServiceError::Inactive(id))
        );

        let service = AttendanceService::new(unit_of_work(|repositories| {
            repositories
                .users
                .expect_get()
                .returning(|id, _| Err(RepoError::not_found("user", &id)));
            repositories.attendance.expect_check_in().never();
        }));
        assert!(matches!(
            service.check_in(id, domain::time::now()),
            Err(ServiceError::Repo(RepoError::NotFound { .. }))
        ));

        let active = user(true, hash_of("old password"));
        let (id, at) = (active.id, domain::time::now());
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            let active = active.clone();
            repositories
                .users
                .expect_get()
                .returning(move |_, _| Ok(active.clone()));
            repositories
                .attendance
                .expect_check_in()
                .withf(move |check_in| check_in.user_id == id && check_in.at == at)
                .times(1)
                .returning(|check_in| Ok(record(check_in.user_id, check_in.at)));
        }));
        assert_eq!(service.check_in(id, at).expect("checked in").check_in_time, at);
    }

    #[test]
    fn check_out_closes_the_open_record() {
        let (id, at) = (UserId::new(), domain::time::now());
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            repositories
                .attendance
                .expect_check_out()
                .withf(move |check_out| check_out.user_id == id && check_out.at == at)
                .times(1)
                .returning(move |check_out| {
                    Ok(Attendance {
                        check_out_time: Some(check_out.at),
                        ..record(id, at - TimeDelta::hours(8))
                    })
                });
        }));
        assert_eq!(service.check_out(id, at).expect("closed").check_out_time, Some(at));
    }

    #[test]
    fn working_hours_sum_the_days() {
        let ann = user(true, hash_of("old password"));
        let id = ann.id;
        let service = AttendanceService::new(unit_of_work(move |repositories| {
            let ann = ann.clone();
            repositories.users.expect_get().returning(move |_, _| Ok(ann.clone()));
            repositories
                .attendance
                .expect_daily_totals()
                .times(1)
                .returning(move |user_id, _| {
                    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).expect("valid");
                    Ok(vec![
                        DailyTotal {
                            user_id,
                            day: day(2),
                            seconds: 3_600,
                        },
                        DailyTotal {
                            user_id,
                            day: day(3),
                            seconds: 1_800,
                        },
                    ])
                });
        }));
        let now = domain::time::now();
        let report = service
            .working_hours(id, now - TimeDelta::days(7), now)
            .expect("report");
        assert_eq!((report.days.len(), report.total_seconds), (2, 5_400));
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().never();
        assert!(
            AttendanceService::new(unit_of_work)
                .working_hours(id, now, now - TimeDelta::days(1))
                .is_err()
        );
    }

    #[test]
    fn every_repository_error_propagates_unchanged() {
        let errors = [
            RepoError::not_found("user", &"x"),
            RepoError::Conflict {
                constraint: "uq_users_email".into(),
                message: "taken".into(),
            },
            RepoError::validation("email", "bad"),
            RepoError::Timeout("lock timeout".into()),
            RepoError::Unavailable("pool exhausted".into()),
            RepoError::Internal("bug".into()),
        ];
        for error in errors {
            let returned = error.clone();
            let service = AttendanceService::new(unit_of_work(move |repositories| {
                let returned = returned.clone();
                repositories
                    .users
                    .expect_set_active()
                    .times(1)
                    .returning(move |_, _| Err(returned.clone()));
            }));
            assert_eq!(service.deactivate(UserId::new()), Err(ServiceError::Repo(error)));
        }
    }

    /// Defect of an earlier release: the work's value was returned although the COMMIT failed.
    #[test]
    fn a_check_in_whose_commit_fails_is_an_error() {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(|work| {
            let mut repositories = MockRepositories::default();
            repositories
                .users
                .expect_get()
                .returning(|_, _| Ok(user(true, hash_of("correct horse"))));
            repositories
                .attendance
                .expect_check_in()
                .returning(|check_in| Ok(record(check_in.user_id, check_in.at)));
            work.run(&repositories)?;
            Err(RepoError::Validation {
                field: "attendance".into(),
                message: "a deferred constraint failed at COMMIT".into(),
            })
        });
        let result = AttendanceService::new(unit_of_work).check_in(UserId::new(), domain::time::now());
        assert!(
            matches!(result, Err(ServiceError::Repo(RepoError::Validation { .. }))),
            "{result:?}"
        );
    }
}
