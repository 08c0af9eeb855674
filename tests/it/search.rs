//! Substring search with its indexes (PostgreSQL's trigram index, SQLite's FTS5 candidates):
//! every search finds exactly the users that the database's own `lower` and a literal substring
//! keep, for letters whose case folding is unusual, for `LIKE` and FTS5 syntax, after every kind
//! of write and from any writer; and PostgreSQL plans every search statement for its pattern.

use std::cell::RefCell;
use std::collections::BTreeSet;

use database::{Backend, DbConnection};
use diesel::prelude::*;
use diesel::sql_types::Text;
use domain::{Email, FullName, UserChanges};
use repo::{KeysetRequest, KeysetStart, PageRequest, Scope, UserFilter, UserRepository};
use repo_diesel::repositories::{Connections as _, DieselUserRepository};
use test_fixtures::TestDb;

use crate::support::{conformance, migrated, new_user};

type Repository = DieselUserRepository<RefCell<DbConnection>>;

/// Emails and names whose letters fold in unusual ways, and text full of `LIKE` and FTS5 syntax.
const PEOPLE: &[(&str, &str)] = &[
    // Kelvin sign and Ångström sign: they fold to an ASCII k and to å.
    ("kelvin@example.com", "\u{212A}ELVIN \u{212B}ngstr\u{F6}m"),
    // Dotted capital I folds to i; capital sharp s to ß (never to ss).
    ("istanbul@example.com", "\u{130}STANBUL Stra\u{1E9E}e"),
    // Capital sigma folds to σ, never to the final ς.
    ("odysseus@example.com", "ΟΔΥΣΣΕΥΣ Οδυσσεύς"),
    // Ohm sign and Greek capital omega both fold to ω; capital theta symbol to θ; Georgian Mtavruli.
    (
        "ohm@example.com",
        "\u{2126}hm Ωmega \u{3F4}eta Mtavruli \u{1C90}\u{1C91}",
    ),
    (
        "syntax@example.com",
        r#"Ann "Quote" O'Neil *^:(NEAR AND OR NOT) 100%_Sure\Back"#,
    ),
    ("plain@example.com", "kelvin istanbul strasse"),
    ("k.o'neil+near@example.com", "K.O."),
];

/// Searches of three characters or more (looked up in the trigram indexes) in mixed case and in
/// every spelling of the unusual letters, shorter ones (which are not), and syntax.
const SEARCHES: &[&str] = &[
    // The Kelvin sign's class: k, K and the sign itself.
    "kel",
    "KEL",
    "\u{212A}EL",
    "eLvIn",
    "\u{212A}elvin@",
    "lvin \u{212B}",
    "ÅNGSTRÖM",
    "ångström",
    // Dotted capital I, dotless i, sharp s.
    "ist",
    "\u{130}ST",
    "IST",
    "\u{131}st",
    "straße",
    "STRA\u{1E9E}E",
    "aße",
    "strasse",
    "STRASSE",
    // Sigma against final sigma.
    "σσε",
    "ΣΣΕ",
    "ευσ",
    "ΕΥΣ",
    "εύς",
    "ΕΎΣ",
    "σ ο",
    // Ohm, omega, theta, Mtavruli.
    "ωhm",
    "\u{2126}HM",
    "ΩME",
    "θeta",
    "\u{398}ETA",
    "li \u{10D0}\u{10D1}",
    "LI \u{1C90}\u{1C91}",
    // LIKE metacharacters, quotes and FTS5 syntax, taken literally.
    "\"Qu",
    "e\" O",
    "\" O'",
    "'Ne",
    "O'N",
    "*^:",
    "^:(",
    "(NEAR",
    "NEAR",
    "near",
    "AND",
    "OR NOT",
    "NOT)",
    "T) 1",
    "0%_",
    "%_S",
    "_Su",
    "e\\B",
    "\\Ba",
    "k.o",
    "+ne",
    "@ex",
    // Nothing has these.
    "xyz",
    "\"\"\"",
    "%%%",
    "___",
    "kelvins",
    // Shorter than a trigram.
    "k",
    "K",
    "\u{212A}",
    "ß",
    "ς",
    "σς",
    "\"",
    "%",
    "_",
    "\\",
    ".o",
];

fn repository(database: &TestDb) -> Repository {
    DieselUserRepository::new(RefCell::new(migrated(database)))
}

/// The database's own `lower` of `text` (on SQLite: the function every connection registers).
fn folded(repository: &Repository, text: &str) -> String {
    #[derive(QueryableByName)]
    struct Folded {
        #[diesel(sql_type = Text)]
        folded: String,
    }
    let sql = match repository.connections().borrow().backend() {
        Backend::Postgres => "SELECT lower($1) AS folded",
        Backend::Sqlite => "SELECT lower(?) AS folded",
    };
    repository
        .connections()
        .with(|connection| {
            Ok(diesel::sql_query(sql)
                .bind::<Text, _>(text)
                .get_result::<Folded>(connection)
                .expect("lower")
                .folded)
        })
        .expect("connection")
}

/// The emails a search must find: of every user in `scope`, those whose email or name, folded by
/// the database, contains the folded search. This is what the search means without any index.
fn expected(repository: &Repository, scope: Scope, search: &str) -> BTreeSet<String> {
    let needle = folded(repository, search.trim());
    let everyone = repository
        .list(
            &UserFilter { scope, search: None },
            PageRequest::new(1, 100).expect("valid"),
        )
        .expect("list");
    everyone
        .items
        .into_iter()
        .filter(|user| {
            folded(repository, user.email.as_str()).contains(&needle)
                || folded(repository, user.full_name.as_str()).contains(&needle)
        })
        .map(|user| user.email.as_str().to_owned())
        .collect()
}

/// The emails the repository finds for `search` in `scope`, by an offset page and by a first
/// keyset page, which must agree.
fn found(repository: &Repository, scope: Scope, search: &str) -> BTreeSet<String> {
    let filter = UserFilter {
        scope,
        search: Some(search.to_owned()),
    };
    let emails = |users: Vec<domain::User>| -> BTreeSet<String> {
        users.into_iter().map(|user| user.email.as_str().to_owned()).collect()
    };
    let offset = repository
        .list(&filter, PageRequest::new(1, 100).expect("valid"))
        .unwrap_or_else(|error| panic!("search {search:?}: {error:?}"));
    let keyset = repository
        .list_keyset(&filter, &KeysetRequest::new(KeysetStart::First, 100).expect("valid"))
        .unwrap_or_else(|error| panic!("search {search:?}: {error:?}"));
    let offset = emails(offset.items);
    assert_eq!(offset, emails(keyset.items), "offset and keyset pages of {search:?}");
    offset
}

#[track_caller]
fn check(repository: &Repository, search: &str, expected_emails: &[&str]) {
    let expected_emails: BTreeSet<String> = expected_emails.iter().map(|email| (*email).to_owned()).collect();
    assert_eq!(
        found(repository, Scope::Live, search),
        expected_emails,
        "search {search:?}"
    );
}

/// Whether the database's `lower` folds these letters as `fold_case` does: SQLite's always does
/// (it is `fold_case`); PostgreSQL's does under a UTF-8 `LC_CTYPE`, not under `C`.
fn folds_unusual_letters(repository: &Repository) -> bool {
    folded(repository, "\u{212A}\u{130}\u{1E9E}\u{2126}\u{3F4}\u{1C90}Σ")
        == "k\u{69}\u{DF}\u{3C9}\u{3B8}\u{10D0}\u{3C3}"
}

conformance!(
    every_search_finds_exactly_what_the_database_folds_alike,
    exactly_what_the_database_folds_alike
);

fn exactly_what_the_database_folds_alike(database: &TestDb) {
    let repository = repository(database);
    for (email, name) in PEOPLE {
        repository.create(new_user(email, name)).expect("create");
    }
    let mut matching = 0;
    for search in SEARCHES {
        let expected = expected(&repository, Scope::Live, search);
        matching += usize::from(!expected.is_empty());
        assert_eq!(
            found(&repository, Scope::Live, search),
            expected,
            "search {search:?} on {:?}",
            database.backend()
        );
    }
    assert!(
        matching > 40,
        "only {matching} searches find anyone: the check proves little"
    );

    // What the searches mean, spelled out where every backend agrees.
    check(
        &repository,
        "NEAR",
        &["k.o'neil+near@example.com", "syntax@example.com"],
    );
    check(&repository, "\"Qu", &["syntax@example.com"]);
    check(&repository, "0%_", &["syntax@example.com"]);
    check(&repository, "e\\B", &["syntax@example.com"]);
    check(&repository, "%%%", &[]);
    check(&repository, "strasse", &["plain@example.com"]);
    if folds_unusual_letters(&repository) {
        check(&repository, "KEL", &["kelvin@example.com", "plain@example.com"]);
        check(&repository, "\u{212A}EL", &["kelvin@example.com", "plain@example.com"]);
        check(&repository, "IST", &["istanbul@example.com", "plain@example.com"]);
        check(&repository, "\u{131}st", &[]);
        check(&repository, "STRA\u{1E9E}E", &["istanbul@example.com"]);
        check(&repository, "ΕΥΣ", &["odysseus@example.com"]);
        check(&repository, "ΕΎΣ", &[]);
        check(&repository, "εύς", &["odysseus@example.com"]);
        check(&repository, "ωhm", &["ohm@example.com"]);
        check(&repository, "θeta", &["ohm@example.com"]);
        check(&repository, "li \u{10D0}\u{10D1}", &["ohm@example.com"]);
        check(&repository, "ÅNGSTRÖM", &["kelvin@example.com"]);
    }
}

conformance!(searches_follow_every_write, searches_follow_every_write);

/// The SQLite index is kept by triggers: a renamed user is found by its new name only, a new
/// email by the new email, a deleted user in the deleted scope, a purged one nowhere.
fn searches_follow_every_write(database: &TestDb) {
    let repository = repository(database);
    let ann = repository
        .create(new_user("ann@example.com", "Ann Ärlig"))
        .expect("create");
    repository
        .create(new_user("bob@example.com", "Bob Builder"))
        .expect("create");
    check(&repository, "ÄRL", &["ann@example.com"]);

    repository
        .update(
            ann.id,
            UserChanges {
                full_name: Some(FullName::parse("Ann Øster").expect("valid")),
                email: Some(Email::parse("ann.oster@example.com").expect("valid")),
                ..UserChanges::default()
            },
        )
        .expect("update");
    check(&repository, "ÄRL", &[]);
    check(&repository, "ØSTER", &["ann.oster@example.com"]);
    check(&repository, "ann.os", &["ann.oster@example.com"]);
    check(&repository, "ann@", &[]);

    repository.soft_delete(ann.id).expect("delete");
    check(&repository, "ØSTER", &[]);
    assert_eq!(
        found(&repository, Scope::OnlyDeleted, "øster"),
        BTreeSet::from(["ann.oster@example.com".to_owned()])
    );
    repository.restore(ann.id).expect("restore");
    check(&repository, "ØSTER", &["ann.oster@example.com"]);

    repository.purge(ann.id).expect("purge");
    assert_eq!(found(&repository, Scope::WithDeleted, "øster"), BTreeSet::new());
    // A new user can take the purged one's email, and is found by it.
    repository
        .create(new_user("ann.oster@example.com", "Ann Again"))
        .expect("create");
    check(&repository, "OSTER@", &["ann.oster@example.com"]);
    check(&repository, "bui", &["bob@example.com"]);
    if database.backend() == Backend::Sqlite {
        assert_eq!(
            index_entries(&repository),
            (2, 2, 2),
            "one key and one indexed row per user"
        );
    }
}

/// SQLite: the numbers of users, of keys and of rows in the FTS5 index.
fn index_entries(repository: &Repository) -> (i64, i64, i64) {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        users: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        keys: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        indexed: i64,
    }
    repository
        .connections()
        .with(|connection| {
            let counts: Counts = diesel::sql_query(
                "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM users_search_keys) AS keys,
                        (SELECT count(*) FROM users_search) AS indexed",
            )
            .get_result(connection)
            .expect("counts");
            Ok((counts.users, counts.keys, counts.indexed))
        })
        .expect("connection")
}

conformance!(a_search_most_users_match_is_answered_exactly, a_search_most_users_match);

/// Past 10,000 candidates SQLite skips the trigram candidates and reads users in page order, as
/// without the index (a page of a common search ends early): the answer stays exact.
fn a_search_most_users_match(database: &TestDb) {
    use database::sql_types::{DbTimestamp, DbUuid};
    use repo_diesel::bulk::{NewUserRow, insert_users};

    const COMMON: u64 = 10_050;
    let repository = repository(database);
    let start = domain::time::now() - chrono::TimeDelta::days(1);
    let hash = crate::support::password_hash();
    let rows: Vec<NewUserRow<'_>> = (0..COMMON + 3)
        .map(|index| {
            let at = DbTimestamp(start + chrono::TimeDelta::milliseconds(i64::try_from(index).expect("few")));
            let (email, full_name) = if index < COMMON {
                (format!("user{index}@example.com"), format!("Common Person {index}"))
            } else {
                (format!("rare{index}@example.com"), format!("Rare Xyzzy {index}"))
            };
            NewUserRow {
                id: DbUuid(uuid::Uuid::now_v7()),
                email,
                full_name,
                hashed_password: hash.as_phc(),
                is_active: true,
                created_at: at,
                updated_at: at,
                deleted_at: None,
                deletion_batch_id: None,
            }
        })
        .collect();
    repository
        .connections()
        .with(|connection| {
            insert_users(connection, &rows).expect("bulk insert");
            Ok(())
        })
        .expect("connection");
    for (search, matches) in [("MON PE", COMMON), ("on Person 1", 1_161), ("xyzzy", 3), ("xyzzz", 0)] {
        let filter = UserFilter {
            scope: Scope::Live,
            search: Some(search.to_owned()),
        };
        let page = repository
            .list(&filter, PageRequest::new(2, 100).expect("valid"))
            .expect("offset page");
        assert_eq!(page.total.exact(), Some(matches), "total of {search:?}");
        let folded = search.to_lowercase();
        let expected: Vec<&str> = rows
            .iter()
            .filter(|row| row.full_name.to_lowercase().contains(&folded))
            .map(|row| row.email.as_str())
            .skip(100)
            .take(100)
            .collect();
        let emails: Vec<&str> = page.items.iter().map(|user| user.email.as_str()).collect();
        assert_eq!(emails, expected, "second page of {search:?}");
        let first = repository
            .list_keyset(&filter, &KeysetRequest::new(KeysetStart::First, 100).expect("valid"))
            .expect("keyset page");
        assert_eq!(first.items.len(), usize::try_from(matches.min(100)).expect("small"));
    }
}

#[test]
fn rows_written_without_the_applications_lower_are_found_on_sqlite() {
    use diesel::connection::SimpleConnection as _;

    let database = TestDb::sqlite_file();
    let repository = repository(&database);
    // The sqlite3 shell's lower() folds ASCII only, and it registers no functions of ours: the
    // index must not depend on the writer's lower().
    let mut shell = SqliteConnection::establish(&database.target().expose_connection_string()).expect("open");
    shell
        .batch_execute(
            "INSERT INTO users (id, email, full_name, hashed_password)
             VALUES (randomblob(16), 'emile@example.com', 'ÉMILE ΩHM \u{212A}ÅRE', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA');
             UPDATE users SET full_name = 'ÉMILE ΩHM \u{212A}ÅRE ZOLA' WHERE email = 'emile@example.com';",
        )
        .expect("a write through a plain connection");
    for search in ["émile", "ÉMILE", "ωhm", "kåre zola", "\u{212A}Åre"] {
        check(&repository, search, &["emile@example.com"]);
    }
}

#[test]
fn searches_survive_renumbered_rowids_on_sqlite() {
    use diesel::connection::SimpleConnection as _;

    let database = TestDb::sqlite_file();
    let repository = repository(&database);
    for (email, name) in PEOPLE {
        repository.create(new_user(email, name)).expect("create");
    }
    // A .dump and restore (or VACUUM, which may) renumbers the rowids of a table without an
    // INTEGER PRIMARY KEY, such as users; the index must not be keyed by them.
    repository
        .connections()
        .with(|connection| {
            connection
                .batch_execute("UPDATE users SET rowid = rowid + 1000; UPDATE users SET rowid = 2001 - rowid;")
                .expect("renumber");
            Ok(())
        })
        .expect("connection");
    check(
        &repository,
        "NEAR",
        &["k.o'neil+near@example.com", "syntax@example.com"],
    );
    check(&repository, "KEL", &["kelvin@example.com", "plain@example.com"]);
    check(&repository, "ΣΣΕ", &["odysseus@example.com"]);
}

/// Search statements are never kept as prepared statements on PostgreSQL: after five runs a kept
/// statement may get a generic plan, which cannot tell a rare pattern (best found through the
/// trigram index) from a common or short one (best found by reading users in page order), and
/// reads a million-row index for a one-letter search.
#[test]
fn search_statements_are_planned_for_their_pattern_on_postgres() {
    #[derive(QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = Text)]
        statement: String,
    }
    let Some(database) = TestDb::postgres_migrated() else {
        return;
    };
    let repository = repository(&database);
    repository.create(new_user("ann@example.com", "Ann")).expect("create");
    for run in 0..8 {
        for search in [None, Some("ann"), Some("a")] {
            let filter = UserFilter {
                scope: Scope::Live,
                search: search.map(str::to_owned),
            };
            repository
                .list(&filter, PageRequest::new(1, 10).expect("valid"))
                .unwrap_or_else(|error| panic!("run {run}: {error:?}"));
            repository
                .list_keyset(&filter, &KeysetRequest::new(KeysetStart::First, 10).expect("valid"))
                .unwrap_or_else(|error| panic!("run {run}: {error:?}"));
        }
    }
    let prepared: Vec<String> = repository
        .connections()
        .with(|connection| {
            Ok(diesel::sql_query("SELECT statement FROM pg_prepared_statements")
                .load::<Prepared>(connection)
                .expect("prepared statements")
                .into_iter()
                .map(|prepared| prepared.statement)
                .collect())
        })
        .expect("connection");
    assert!(
        prepared.iter().any(|statement| statement.contains("\"users\"")),
        "lists without a search are kept: {prepared:#?}"
    );
    let searches: Vec<&String> = prepared.iter().filter(|statement| statement.contains("LIKE")).collect();
    assert!(searches.is_empty(), "search statements kept: {searches:#?}");
}
