#![doc = include_str!("../README.md")]

use chrono::{DateTime, Utc};
use domain::{
    Attendance, AuditContext, CheckIn, CheckOut, DailyTotal, Email, Password, PasswordHash, RegisterUser, User,
    UserChanges, UserId,
};
use repo::{RepoError, Scope, TimeRange, UnitOfWork, UnitOfWorkExt as _};
use validator::Validate as _;

/// Why an operation did not happen.
///
/// Non-exhaustive: a match outside this crate needs a wildcard arm, which should answer an error
/// it does not know as an internal failure, never as success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A sign-in failed: the address is unknown, the password is wrong, or the user is
    /// deactivated or deleted. One answer for all of them, so that it does not tell which
    /// addresses have accounts.
    #[error("the email or the password is wrong")]
    InvalidCredentials,
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
    /// A service that runs its operations on `unit_of_work`. Makes the dummy password hash now
    /// (one argon2id hash per process), so that the first sign-in of an unknown address does not
    /// pay for it and stand out.
    pub fn new(unit_of_work: W) -> Self {
        let _ = PasswordHash::dummy();
        Self { unit_of_work }
    }

    /// Registers a user: validates, hashes the password, creates.
    #[tracing::instrument(skip(self, context, input), fields(email = %input.email, actor = %context.actor()))]
    pub fn register(&self, context: &AuditContext, input: &RegisterUser) -> Result<User, ServiceError> {
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
        self.unit_of_work.transact(context, |repositories| {
            Ok(repositories.users().create(new_user.clone())?)
        })
    }

    /// Changes a live user's password after verifying the current one.
    #[tracing::instrument(skip(self, context, current, new), fields(actor = %context.actor()))]
    pub fn change_password(
        &self,
        context: &AuditContext,
        user_id: UserId,
        current: &str,
        new: &str,
    ) -> Result<User, ServiceError> {
        let current = Password::parse(current).map_err(|_| ServiceError::WrongPassword)?;
        let new_hash = Password::parse(new)?.hash()?;
        self.unit_of_work.transact(context, |repositories| {
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

    /// Signs a user in: the live, active user with this email whose password this is.
    ///
    /// Every failure is [`ServiceError::InvalidCredentials`] and costs one argon2id
    /// verification: an unknown address is verified against [`PasswordHash::dummy`] (same
    /// parameters), and a deactivated or deleted user's password is verified before the answer,
    /// so the time taken does not tell which addresses have accounts. A stored hash weaker than
    /// the current parameters ([`PasswordHash::needs_rehash`]) is replaced after a successful
    /// sign-in, unless the password changed meanwhile (audited as `user.password_rehash`).
    /// Passwords longer than the maximum are refused without hashing.
    #[tracing::instrument(skip(self, context, email, password), fields(actor = %context.actor()))]
    pub fn authenticate(&self, context: &AuditContext, email: &str, password: &str) -> Result<User, ServiceError> {
        let Ok(password) = Password::parse(password) else {
            // Length rules only: they say nothing about the account, and a long input must not
            // cost an argon2 run.
            return Err(ServiceError::InvalidCredentials);
        };
        let Ok(email) = Email::parse(email) else {
            let _ = PasswordHash::dummy().verify(&password);
            return Err(ServiceError::InvalidCredentials);
        };
        // The read is a transaction of its own: the argon2 work below must not hold one open
        // (on SQLite a write transaction holds the database's write lock).
        let found = self.unit_of_work.transact(context, |repositories| {
            match repositories.users().get_by_email(&email, Scope::Live) {
                Ok(user) => Ok(Some(user)),
                Err(RepoError::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            }
        })?;
        let Some(user) = found else {
            let _ = PasswordHash::dummy().verify(&password);
            return Err(ServiceError::InvalidCredentials);
        };
        if !user.password_hash.verify(&password) || !user.is_active {
            return Err(ServiceError::InvalidCredentials);
        }
        if user.password_hash.needs_rehash() {
            let stronger = password.hash()?;
            if stronger.needs_rehash() {
                // Only with domain's `insecure-test-hash` feature (tests): the new hash would be
                // no stronger, so writing it would gain nothing and surprise a test's mocks.
                return Ok(user);
            }
            let expected = user.password_hash.clone();
            let replaced = self.unit_of_work.transact(context, |repositories| {
                repositories
                    .users()
                    .replace_password_hash(user.id, &expected, stronger.clone())
            })?;
            if replaced {
                return Ok(User {
                    password_hash: stronger,
                    ..user
                });
            }
        }
        Ok(user)
    }

    /// Changes a live user's email; `Conflict` on `uq_users_email` when another live user has it.
    #[tracing::instrument(skip(self, context, email), fields(actor = %context.actor()))]
    pub fn change_email(&self, context: &AuditContext, user_id: UserId, email: &str) -> Result<User, ServiceError> {
        let email = Email::parse(email)?;
        let changes = UserChanges {
            email: Some(email),
            ..UserChanges::default()
        };
        self.unit_of_work.transact(context, |repositories| {
            Ok(repositories.users().update(user_id, changes.clone())?)
        })
    }

    /// Deactivates a user: they keep their data but may not check in.
    pub fn deactivate(&self, context: &AuditContext, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work.transact(context, |repositories| {
            Ok(repositories.users().set_active(user_id, false)?)
        })
    }

    /// Reactivates a user.
    pub fn reactivate(&self, context: &AuditContext, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work.transact(context, |repositories| {
            Ok(repositories.users().set_active(user_id, true)?)
        })
    }

    /// Soft-deletes a user and their attendance.
    pub fn delete(&self, context: &AuditContext, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work
            .transact(context, |repositories| Ok(repositories.users().soft_delete(user_id)?))
    }

    /// Restores a soft-deleted user and the attendance that went with them.
    pub fn restore(&self, context: &AuditContext, user_id: UserId) -> Result<User, ServiceError> {
        self.unit_of_work
            .transact(context, |repositories| Ok(repositories.users().restore(user_id)?))
    }

    /// Checks a user in: only a live, active user; a second open check-in is a `Conflict`.
    #[tracing::instrument(skip(self, context), fields(actor = %context.actor()))]
    pub fn check_in(
        &self,
        context: &AuditContext,
        user_id: UserId,
        at: DateTime<Utc>,
    ) -> Result<Attendance, ServiceError> {
        self.unit_of_work.transact(context, |repositories| {
            let user = repositories.users().get(user_id, Scope::Live)?;
            if !user.is_active {
                return Err(ServiceError::Inactive(user_id));
            }
            Ok(repositories.attendance().check_in(CheckIn { user_id, at })?)
        })
    }

    /// Checks a user out: closes their open record.
    #[tracing::instrument(skip(self, context), fields(actor = %context.actor()))]
    pub fn check_out(
        &self,
        context: &AuditContext,
        user_id: UserId,
        at: DateTime<Utc>,
    ) -> Result<Attendance, ServiceError> {
        self.unit_of_work.transact(context, |repositories| {
            Ok(repositories.attendance().check_out(CheckOut { user_id, at })?)
        })
    }

    /// Time worked per UTC day, and in total, by a user over `[from, to)`.
    pub fn working_hours(
        &self,
        context: &AuditContext,
        user_id: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<WorkingHours, ServiceError> {
        let range = TimeRange::new(from, to)?;
        self.unit_of_work.transact(context, |repositories| {
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
    use domain::{Actor, CorrelationId, PasswordHash};
    use repo::{MockRepositories, MockUnitOfWork};
    use test_fixtures::{AttendanceBuilder, UserBuilder};

    use super::*;

    /// The context every test operation runs with: the mocked unit of work checks that it
    /// arrives unchanged.
    fn audit_context() -> AuditContext {
        AuditContext::new(Actor::operator("ann").expect("valid"))
            .with_correlation_id(CorrelationId::parse("req-1").expect("valid"))
    }

    fn hash_of(password: &str) -> PasswordHash {
        Password::parse(password).expect("valid").hash().expect("hash")
    }

    /// Ann, live, active or not, with this hash: as a mock returns her.
    fn user(active: bool, password_hash: PasswordHash) -> User {
        let ann = UserBuilder::new().email("ann@example.com").full_name("Ann");
        let ann = if active { ann } else { ann.inactive() };
        User {
            password_hash,
            ..ann.user().expect("valid")
        }
    }

    /// An open record, as a mock returns it.
    fn record(user_id: UserId, at: DateTime<Utc>) -> Attendance {
        AttendanceBuilder::new(user_id).checked_in_at(at).open().attendance()
    }

    /// A unit of work that runs the operation once against mocks set up by `setup`.
    fn unit_of_work(setup: impl Fn(&mut MockRepositories) + Send + 'static) -> MockUnitOfWork {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work
            .expect_transaction()
            .times(1)
            .returning(move |context, work| {
                assert_eq!(context, &audit_context(), "the service passes its caller's context on");
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
            service
                .register(&audit_context(), &input)
                .expect("registered")
                .email
                .as_str(),
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
        let error = service.register(&audit_context(), &input).expect_err("invalid");
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
        assert_eq!(
            service.register(&audit_context(), &input),
            Err(ServiceError::Repo(expected))
        );
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
            service.change_password(&audit_context(), id, "wrong password", "new password"),
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
        assert!(
            service
                .change_password(&audit_context(), id, "old password", "new password")
                .is_ok()
        );
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
            service.check_in(&audit_context(), id, domain::time::now()),
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
            service.check_in(&audit_context(), id, domain::time::now()),
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
        assert_eq!(
            service
                .check_in(&audit_context(), id, at)
                .expect("checked in")
                .check_in_time,
            at
        );
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
                    Ok(AttendanceBuilder::new(id)
                        .checked_in_at(check_out.at - TimeDelta::hours(8))
                        .lasting(TimeDelta::hours(8))
                        .attendance())
                });
        }));
        assert_eq!(
            service
                .check_out(&audit_context(), id, at)
                .expect("closed")
                .check_out_time,
            Some(at)
        );
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
            .working_hours(&audit_context(), id, now - TimeDelta::days(7), now)
            .expect("report");
        assert_eq!((report.days.len(), report.total_seconds), (2, 5_400));
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().never();
        assert!(
            AttendanceService::new(unit_of_work)
                .working_hours(&audit_context(), id, now, now - TimeDelta::days(1))
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
            assert_eq!(
                service.deactivate(&audit_context(), UserId::new()),
                Err(ServiceError::Repo(error))
            );
        }
    }

    /// Defect of an earlier release: the work's value was returned although the COMMIT failed.
    #[test]
    fn a_check_in_whose_commit_fails_is_an_error() {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().times(1).returning(|_, work| {
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
        let result =
            AttendanceService::new(unit_of_work).check_in(&audit_context(), UserId::new(), domain::time::now());
        assert!(
            matches!(result, Err(ServiceError::Repo(RepoError::Validation { .. }))),
            "{result:?}"
        );
    }

    fn ann_with(hash: PasswordHash, active: bool) -> User {
        user(active, hash)
    }

    /// A service whose unit of work answers `get_by_email` with `found`, and expects
    /// `replace_password_hash` `rehashes` times.
    fn sign_in_service(found: Result<User, RepoError>, rehashes: usize) -> AttendanceService<MockUnitOfWork> {
        let mut unit_of_work = MockUnitOfWork::new();
        let expected_hash = found.as_ref().ok().map(|user| user.password_hash.clone());
        unit_of_work
            .expect_transaction()
            .times(1 + rehashes)
            .returning(move |context, work| {
                assert_eq!(context, &audit_context());
                let mut repositories = MockRepositories::default();
                let found = found.clone();
                repositories
                    .users
                    .expect_get_by_email()
                    .withf(|email, scope| email.as_str() == "ann@example.com" && *scope == Scope::Live)
                    .returning(move |_, _| found.clone());
                let expected_hash = expected_hash.clone();
                repositories
                    .users
                    .expect_replace_password_hash()
                    .withf(move |_, expected, replacement| {
                        Some(expected) == expected_hash.as_ref()
                            && !replacement.needs_rehash()
                            && replacement.verify(&Password::parse("correct horse").expect("valid"))
                    })
                    .returning(|_, _, _| Ok(true));
                work.run(&repositories)
            });
        AttendanceService::new(unit_of_work)
    }

    #[test]
    fn sign_in_fails_alike_for_unknown_wrong_deactivated_and_deleted() {
        let cases: [(&str, Result<User, RepoError>, &str); 4] = [
            ("unknown", Err(RepoError::not_found("user", &"ann")), "correct horse"),
            (
                "wrong password",
                Ok(ann_with(hash_of("correct horse"), true)),
                "wrong horse!",
            ),
            (
                "deactivated",
                Ok(ann_with(hash_of("correct horse"), false)),
                "correct horse",
            ),
            // A deleted user is not in the live scope: the repository says NotFound.
            ("deleted", Err(RepoError::not_found("user", &"ann")), "correct horse"),
        ];
        for (case, found, password) in cases {
            let result = sign_in_service(found, 0).authenticate(&audit_context(), "Ann@Example.com", password);
            assert_eq!(result, Err(ServiceError::InvalidCredentials), "{case}");
        }
        let user = sign_in_service(Ok(ann_with(hash_of("correct horse"), true)), 0)
            .authenticate(&audit_context(), "ann@example.com", "correct horse")
            .expect("signed in");
        assert_eq!(user.email.as_str(), "ann@example.com");
    }

    #[test]
    fn sign_in_refuses_bad_input_without_asking_the_repository() {
        let mut unit_of_work = MockUnitOfWork::new();
        unit_of_work.expect_transaction().never();
        let service = AttendanceService::new(unit_of_work);
        for (email, password) in [
            ("ann@example.com", "short"),
            ("ann@example.com", &"x".repeat(10_000)[..]),
            ("not an email", "correct horse"),
        ] {
            assert_eq!(
                service.authenticate(&audit_context(), email, password),
                Err(ServiceError::InvalidCredentials),
                "{email} {}",
                password.len()
            );
        }
    }

    #[test]
    fn a_database_failure_during_sign_in_is_not_a_wrong_password() {
        let result = sign_in_service(Err(RepoError::Unavailable("down".into())), 0).authenticate(
            &audit_context(),
            "ann@example.com",
            "correct horse",
        );
        assert_eq!(result, Err(ServiceError::Repo(RepoError::Unavailable("down".into()))));
    }

    #[test]
    fn a_weak_hash_is_replaced_after_a_successful_sign_in() {
        use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
        let weak = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8_192, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
        .expect("hash")
        .to_string();
        let weak = PasswordHash::from_stored(weak);
        assert!(weak.needs_rehash());
        let user = sign_in_service(Ok(ann_with(weak.clone(), true)), 1)
            .authenticate(&audit_context(), "ann@example.com", "correct horse")
            .expect("signed in");
        assert!(
            !user.password_hash.needs_rehash(),
            "the returned user carries the new hash"
        );
        // A wrong password never re-hashes (the mock would count a second transaction).
        assert_eq!(
            sign_in_service(Ok(ann_with(weak, true)), 0).authenticate(
                &audit_context(),
                "ann@example.com",
                "wrong horse!"
            ),
            Err(ServiceError::InvalidCredentials)
        );
    }
}
