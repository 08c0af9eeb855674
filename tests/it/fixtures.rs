//! The builders of `test-fixtures` make valid, unique data through the repositories, on both
//! backends.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::TimeDelta;
use domain::Password;
use repo::{Repositories as _, Scope};
use repo_diesel::repositories::DieselStore;
use test_fixtures::{AttendanceBuilder, DEFAULT_PASSWORD, ScratchDatabase, UserBuilder};

use crate::support::conformance;

conformance!(builders_make_valid_unique_data, builders);

fn builders(database: &ScratchDatabase) {
    let pool = database.database();
    pool.migrate().expect("migrate");
    let store = DieselStore::new(Arc::new(pool));
    let (users, attendance) = (store.users(), store.attendance());

    let built: Vec<_> = (0..30)
        .map(|_| UserBuilder::new().build(users).expect("a valid default user"))
        .collect();
    let emails: BTreeSet<&str> = built.iter().map(|user| user.email.as_str()).collect();
    assert_eq!(emails.len(), 30, "defaults are unique");
    assert!(
        built[0]
            .password_hash
            .verify(&Password::parse(DEFAULT_PASSWORD).expect("valid"))
    );

    let inactive = UserBuilder::new().inactive().build(users).expect("inactive");
    assert!(!inactive.is_active);
    let deleted = UserBuilder::new()
        .email("gone@example.com")
        .deleted()
        .build(users)
        .expect("deleted");
    assert!(users.get(deleted.id, Scope::OnlyDeleted).is_ok());
    let named = UserBuilder::new()
        .full_name("Zoë O'Brien")
        .password("another password")
        .build(users)
        .expect("named");
    assert_eq!(named.full_name.as_str(), "Zoë O'Brien");
    assert!(
        UserBuilder::new().email("not an email").build(users).is_err(),
        "overrides are validated too"
    );

    let shift = AttendanceBuilder::new(built[0].id)
        .lasting(TimeDelta::hours(6))
        .build(attendance)
        .expect("shift");
    assert_eq!(
        shift.check_out_time.map(|out| out - shift.check_in_time),
        Some(TimeDelta::hours(6))
    );
    let open = AttendanceBuilder::new(built[1].id)
        .checked_in_at(domain::time::now() - TimeDelta::hours(1))
        .open()
        .build(attendance)
        .expect("open");
    assert!(open.is_open());
}
