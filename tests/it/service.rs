//! The service layer on the real diesel repositories, on both backends: the same operations its
//! unit tests drive through mocks, so the mocks cannot drift from what the database does.

use domain::AuditContext;
use migrator::Migrate as _;
use std::sync::Arc;

use chrono::TimeDelta;
use domain::RegisterUser;
use repo::{RepoError, Repositories as _, Scope};
use repo_diesel::repositories::DieselStore;
use service::{AttendanceService, ServiceError};
use test_fixtures::TestDb;

use crate::support::conformance;

fn registration(email: &str) -> RegisterUser {
    RegisterUser {
        email: email.into(),
        full_name: "Ann Example".into(),
        password: "correct horse".into(),
    }
}

conformance!(the_service_runs_on_the_diesel_repositories, service_flow);

fn service_flow(database: &TestDb) {
    let pool = database.database();
    pool.migrate().expect("migrate");
    let store = DieselStore::new(Arc::new(pool));
    let service = AttendanceService::new(store.clone());

    let ann = service
        .register(&AuditContext::unattributed(), &registration("Ann@Example.com"))
        .expect("register");
    assert_eq!(ann.email.as_str(), "ann@example.com");
    let duplicate = service
        .register(&AuditContext::unattributed(), &registration("ann@example.com"))
        .expect_err("duplicate");
    assert!(
        matches!(&duplicate, ServiceError::Repo(RepoError::Conflict { constraint, .. }) if constraint == "uq_users_email")
    );

    assert_eq!(
        service.change_password(
            &AuditContext::unattributed(),
            ann.id,
            "wrong horse",
            "new horse battery"
        ),
        Err(ServiceError::WrongPassword)
    );
    service
        .change_password(
            &AuditContext::unattributed(),
            ann.id,
            "correct horse",
            "new horse battery",
        )
        .expect("changed");
    let stored = store.users().get(ann.id, Scope::Live).expect("stored");
    assert!(
        stored
            .password_hash
            .verify(&domain::Password::parse("new horse battery").expect("valid"))
    );

    let morning = domain::time::now() - TimeDelta::hours(9);
    service
        .check_in(&AuditContext::unattributed(), ann.id, morning)
        .expect("check in");
    let second = service
        .check_in(&AuditContext::unattributed(), ann.id, morning + TimeDelta::minutes(5))
        .expect_err("second open check-in");
    assert!(
        matches!(second, ServiceError::Repo(RepoError::Conflict { .. })),
        "{second}"
    );
    service
        .check_out(&AuditContext::unattributed(), ann.id, morning + TimeDelta::hours(8))
        .expect("check out");

    service
        .deactivate(&AuditContext::unattributed(), ann.id)
        .expect("deactivate");
    assert_eq!(
        service.check_in(&AuditContext::unattributed(), ann.id, domain::time::now()),
        Err(ServiceError::Inactive(ann.id))
    );
    service
        .reactivate(&AuditContext::unattributed(), ann.id)
        .expect("reactivate");

    service.delete(&AuditContext::unattributed(), ann.id).expect("delete");
    assert!(matches!(
        service.check_in(&AuditContext::unattributed(), ann.id, domain::time::now()),
        Err(ServiceError::Repo(RepoError::NotFound { .. }))
    ));
    service.restore(&AuditContext::unattributed(), ann.id).expect("restore");

    let report = service
        .working_hours(
            &AuditContext::unattributed(),
            ann.id,
            morning - TimeDelta::hours(1),
            domain::time::now(),
        )
        .expect("report");
    assert_eq!(report.total_seconds, 8 * 3600, "{report:?}");
    assert_eq!(report.days.len(), 1);
}
