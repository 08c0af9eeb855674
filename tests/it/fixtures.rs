//! The test harness itself: `TestDb` gives each test an isolated database that is removed after
//! it, and the builders of `test-fixtures` make valid, unique data through the repositories, on
//! both backends.

use migrator::Migrate as _;
use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::TimeDelta;
use domain::Password;
use repo::{Repositories as _, Scope};
use repo_diesel::repositories::DieselStore;
use test_fixtures::{AttendanceBuilder, DEFAULT_PASSWORD, TestDb, UserBuilder};

use crate::support::conformance;

conformance!(builders_make_valid_unique_data, builders);

fn builders(database: &TestDb) {
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

#[derive(diesel::QueryableByName)]
struct Names {
    #[diesel(sql_type = diesel::sql_types::Text)]
    datname: String,
}

/// The databases on the test server, and which of them are templates nobody may connect to.
fn server_databases(admin: &mut diesel::PgConnection) -> (Vec<String>, Vec<String>) {
    use diesel::RunQueryDsl as _;
    let all = diesel::sql_query("SELECT datname FROM pg_database ORDER BY datname")
        .load::<Names>(admin)
        .expect("list databases");
    let locked_templates = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE datistemplate AND NOT datallowconn AND datname LIKE 'test_template_%'",
    )
    .load::<Names>(admin)
    .expect("list templates");
    (
        all.into_iter().map(|row| row.datname).collect(),
        locked_templates.into_iter().map(|row| row.datname).collect(),
    )
}

#[test]
fn migrated_postgres_test_databases_are_isolated_copies_of_a_locked_template_and_dropped_after() {
    let Some(mut admin) = TestDb::postgres_admin() else {
        return;
    };
    let first = TestDb::postgres_migrated().expect("postgres");
    let second = TestDb::postgres_migrated().expect("postgres");
    let names = [first.postgres_name().expect("pg"), second.postgres_name().expect("pg")].map(str::to_owned);
    assert_ne!(names[0], names[1]);

    // Each copy is already at head: the start-up runner has nothing to apply.
    for database in [&first, &second] {
        let mut connection = database.connect();
        let migrator = migrator::Migrator::embedded(database.backend(), database::config::MigrationSettings::default());
        assert!(migrator.status(&mut connection).expect("status").is_at_head());
        assert!(migrator.run(&mut connection).expect("run").applied.is_empty());
    }

    // A row written in one is not in the other.
    let store = DieselStore::new(Arc::new(first.database()));
    UserBuilder::new().build(store.users()).expect("user");
    let other = DieselStore::new(Arc::new(second.database()));
    let page = other
        .users()
        .list(
            &repo::UserFilter::default(),
            repo::PageRequest::new(1, 10).expect("page"),
        )
        .expect("list");
    assert_eq!(page.total, repo::Total::Exact(0), "test databases share no rows");
    drop((store, other));

    let (databases, templates) = server_databases(&mut admin);
    assert!(names.iter().all(|name| databases.contains(name)));
    assert!(
        templates.contains(&test_fixtures::template_name()),
        "the current migrations' template is locked against connections: {templates:?}"
    );

    drop((first, second));
    let (databases, _) = server_databases(&mut admin);
    assert!(
        names.iter().all(|name| !databases.contains(name)),
        "dropped test databases are gone from the server"
    );
}

#[test]
fn empty_postgres_test_databases_have_no_schema() {
    let Some(database) = TestDb::postgres() else {
        return;
    };
    let mut connection = database.connect();
    let status = migrator::Migrator::embedded(database.backend(), database::config::MigrationSettings::default())
        .status(&mut connection)
        .expect("status");
    assert!(status.applied.is_empty());
    assert!(!status.pending.is_empty());
}
