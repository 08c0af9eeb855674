//! The reference HTTP service end to end, over real HTTP (reqwest) on a real listener, on both
//! backends: every route, every error status, hostile input answered 4xx with nothing changed,
//! a request timeout that rolls its unit of work back, and a PostgreSQL restart under load
//! answered 503 (never 500) with no acknowledged write lost.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use database::{Database, DatabaseConfig};
use diesel::connection::SimpleConnection as _;
use domain::{AuditEntity, UserId};
use http_service::body::{UserBody, UserKeysetPage, UserOffsetPage, UserWithAttendanceBody};
use http_service::problem::PROBLEM_JSON;
use http_service::{AppState, Settings};
use migrator::Migrate as _;
use repo::{KeysetRequest, KeysetStart, PageRequest, Repositories as _, Scope, TimeRange, UserFilter};
use repo_diesel::repositories::DieselStore;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use test_fixtures::TestDb;

use crate::cluster::PrivateCluster;
use crate::support::{conformance, on_both_backends};

/// The service on a listener of its own, on a runtime of its own; shut down when dropped.
struct TestServer {
    base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    fn start(database: Arc<Database>, settings: Settings) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            runtime.block_on(http_service::serve(
                listener,
                AppState::new(database),
                &settings,
                async move {
                    let _ = stop.await;
                },
            ))
        });
        Self {
            base,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops taking connections, waits for the requests in flight, and returns.
    fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .expect("the server thread")
                .expect("the server ends cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_mins(1))
        .build()
        .expect("an HTTP client")
}

fn json_of(response: Response) -> Value {
    response.json().expect("a JSON body")
}

/// Checks that `response` is a problem of `status` and `kind`, with nothing internal in it;
/// returns its body.
fn problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .expect("text")
        .to_owned();
    assert_eq!(content_type, PROBLEM_JSON);
    assert!(
        response.headers().contains_key("x-request-id"),
        "every answer names its request"
    );
    let text = response.text().expect("a body");
    for internal in [
        "SELECT",
        "INSERT",
        "UPDATE ",
        "diesel",
        "postgres://",
        "sqlite3",
        "pq:",
        "r2d2",
    ] {
        assert!(!text.contains(internal), "a problem shows {internal:?}: {text}");
    }
    let body: Value = serde_json::from_str(&text).expect("a JSON problem");
    assert_eq!(body["type"], format!("/problems/{kind}"), "{text}");
    assert_eq!(body["status"], status.as_u16(), "{text}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{text}");
    body
}

fn register(client: &Client, server: &TestServer, email: &str) -> UserBody {
    let response = client
        .post(server.url("/users"))
        .json(&json!({ "email": email, "full_name": "Ann Example", "password": "correct horse battery" }))
        .send()
        .expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("text")
        .to_owned();
    let text = response.text().expect("a body");
    for secret in ["password", "argon2", "hash"] {
        assert!(!text.contains(secret), "a user's body shows {secret:?}: {text}");
    }
    let user: UserBody = serde_json::from_str(&text).expect("a user");
    assert_eq!(location, format!("/users/{}", user.id));
    user
}

conformance!(every_route_answers_and_every_error_is_a_problem, every_route);

#[expect(
    clippy::too_many_lines,
    reason = "every route in one flow, one request after another"
)]
fn every_route(database: &TestDb) {
    let pool = Arc::new(database.database());
    pool.migrate().expect("migrate");
    let server = TestServer::start(Arc::clone(&pool), Settings::default());
    let client = client();

    let health = client.get(server.url("/healthz")).send().expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(json_of(health)["status"], "pass");
    let ready = client.get(server.url("/readyz")).send().expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);

    // Registration, with the client's request id as the audit entry's correlation id.
    let response = client
        .post(server.url("/users"))
        .header("x-request-id", "req-ann-1")
        .json(&json!({ "email": "Ann@Example.com", "full_name": "Ann Example", "password": "correct horse battery" }))
        .send()
        .expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-request-id"], "req-ann-1");
    let ann: UserBody = response.json().expect("a user");
    assert_eq!(ann.email, "ann@example.com");
    let store = DieselStore::new(Arc::clone(&pool));
    let ann_id: UserId = ann.id.parse().expect("a user id");
    let trail = store
        .audit()
        .trail(
            &AuditEntity::user(ann_id),
            &KeysetRequest::new(KeysetStart::First, 10).expect("request"),
        )
        .expect("trail");
    assert_eq!(trail.items.len(), 1);
    assert_eq!(trail.items[0].correlation_id.as_deref(), Some("req-ann-1"));
    assert_eq!(trail.items[0].actor.as_str(), "service:http");
    let bob = register(&client, &server, "bob@example.com");

    let duplicate = client
        .post(server.url("/users"))
        .json(&json!({ "email": "ann@example.com", "full_name": "Ann Again", "password": "correct horse battery" }))
        .send()
        .expect("register again");
    assert_eq!(
        problem(duplicate, StatusCode::CONFLICT, "conflict")["constraint"],
        "uq_users_email"
    );
    let invalid = client
        .post(server.url("/users"))
        .json(&json!({ "email": "not an address", "full_name": "Ann", "password": "correct horse battery" }))
        .send()
        .expect("register invalid");
    assert_eq!(
        problem(invalid, StatusCode::UNPROCESSABLE_ENTITY, "validation")["field"],
        "email"
    );

    let signed_in = client
        .post(server.url("/sessions"))
        .json(&json!({ "email": "ann@example.com", "password": "correct horse battery" }))
        .send()
        .expect("sign in");
    assert_eq!(signed_in.status(), StatusCode::OK);
    let wrong = client
        .post(server.url("/sessions"))
        .json(&json!({ "email": "ann@example.com", "password": "wrong horse battery" }))
        .send()
        .expect("sign in wrongly");
    problem(wrong, StatusCode::UNAUTHORIZED, "invalid-credentials");

    let checked_in = client
        .post(server.url(&format!("/users/{}/check-in", ann.id)))
        .send()
        .expect("check in");
    assert_eq!(checked_in.status(), StatusCode::CREATED);
    let again = client
        .post(server.url(&format!("/users/{}/check-in", ann.id)))
        .send()
        .expect("check in again");
    assert_eq!(
        problem(again, StatusCode::CONFLICT, "conflict")["constraint"],
        "uq_attendance_user_id"
    );
    let checked_out = client
        .post(server.url(&format!("/users/{}/check-out", ann.id)))
        .send()
        .expect("check out");
    assert_eq!(checked_out.status(), StatusCode::OK);
    assert!(json_of(checked_out)["check_out_time"].is_string());
    let nothing_open = client
        .post(server.url(&format!("/users/{}/check-out", ann.id)))
        .send()
        .expect("check out");
    problem(nothing_open, StatusCode::NOT_FOUND, "not-found");

    let with_attendance: UserWithAttendanceBody = client
        .get(server.url(&format!("/users/{}", ann.id)))
        .send()
        .expect("get")
        .json()
        .expect("a user with attendance");
    assert_eq!(with_attendance.user, ann);
    assert_eq!(with_attendance.attendance.len(), 1);

    // Keyset pages, with cursors in the JSON.
    let first: UserKeysetPage = client
        .get(server.url("/users?limit=1"))
        .send()
        .expect("list")
        .json()
        .expect("page");
    assert_eq!(first.items, std::slice::from_ref(&ann));
    let next = first.next_cursor.expect("a next page");
    let second: UserKeysetPage = client
        .get(server.url("/users"))
        .query(&[("limit", "1"), ("after", next.as_str())])
        .send()
        .expect("list")
        .json()
        .expect("page");
    assert_eq!(second.items, std::slice::from_ref(&bob));
    assert_eq!(second.next_cursor, None);
    let back: UserKeysetPage = client
        .get(server.url("/users"))
        .query(&[
            ("limit", "1"),
            ("before", second.previous_cursor.expect("a previous page").as_str()),
        ])
        .send()
        .expect("list")
        .json()
        .expect("page");
    assert_eq!(back.items, std::slice::from_ref(&ann));

    // Offset pages, with the total.
    let numbered: UserOffsetPage = client
        .get(server.url("/users/pages?page=2&per_page=1&total=exact"))
        .send()
        .expect("pages")
        .json()
        .expect("page");
    assert_eq!(
        (numbered.items, numbered.total, numbered.has_next),
        (vec![bob.clone()], Some(2), false)
    );

    // Soft delete and restore.
    let deleted = client
        .delete(server.url(&format!("/users/{}", bob.id)))
        .send()
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = client
        .get(server.url(&format!("/users/{}", bob.id)))
        .send()
        .expect("get deleted");
    problem(gone, StatusCode::NOT_FOUND, "not-found");
    let restored = client
        .post(server.url(&format!("/users/{}/restore", bob.id)))
        .send()
        .expect("restore");
    assert_eq!(restored.status(), StatusCode::OK);
    let back = client
        .get(server.url(&format!("/users/{}", bob.id)))
        .send()
        .expect("get restored");
    assert_eq!(back.status(), StatusCode::OK);

    let metrics = client.get(server.url("/metrics")).send().expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(
        metrics.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("text")
            .starts_with("text/plain")
    );
    let text = metrics.text().expect("text");
    assert!(text.contains("db_client_connection_checkouts_total"), "{text}");

    let openapi = json_of(client.get(server.url("/openapi.json")).send().expect("openapi"));
    for path in [
        "/users",
        "/users/pages",
        "/users/{id}",
        "/users/{id}/restore",
        "/users/{id}/check-in",
        "/users/{id}/check-out",
        "/sessions",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(openapi["paths"][path].is_object(), "the OpenAPI document lacks {path}");
    }
    let unknown = client.get(server.url("/nowhere")).send().expect("unknown route");
    problem(unknown, StatusCode::NOT_FOUND, "not-found");
    for (method, path) in [("PUT", "/users"), ("GET", "/sessions"), ("POST", "/healthz")] {
        let response = client
            .request(method.parse().expect("a method"), server.url(path))
            .send()
            .expect("a request");
        problem(response, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    }
}

conformance!(hostile_input_is_answered_4xx_and_changes_nothing, hostile_input);

/// What the database holds, to compare before and after the hostile requests.
fn census(store: &DieselStore, ids: &[UserId]) -> (u64, usize, Vec<usize>) {
    let users = store
        .users()
        .list(
            &UserFilter {
                scope: Scope::WithDeleted,
                ..UserFilter::default()
            },
            PageRequest::new(1, 100).expect("request"),
        )
        .expect("list");
    let range = TimeRange::new(
        chrono::DateTime::UNIX_EPOCH,
        domain::time::now() + chrono::TimeDelta::days(1),
    )
    .expect("range");
    let attendance = ids
        .iter()
        .map(|id| {
            store
                .attendance()
                .list_for_user(*id, range, Scope::WithDeleted)
                .expect("attendance")
                .len()
        })
        .sum();
    let trails = ids
        .iter()
        .map(|id| {
            store
                .audit()
                .trail(
                    &AuditEntity::user(*id),
                    &KeysetRequest::new(KeysetStart::First, 100).expect("request"),
                )
                .expect("trail")
                .items
                .len()
        })
        .collect();
    (users.total.value().expect("counted"), attendance, trails)
}

#[expect(clippy::too_many_lines, reason = "a table of hostile requests, one case per entry")]
fn hostile_input(database: &TestDb) {
    let pool = Arc::new(database.database());
    pool.migrate().expect("migrate");
    let server = TestServer::start(Arc::clone(&pool), Settings::default());
    let client = client();
    let ann = register(&client, &server, "ann@example.com");
    let ann_id: UserId = ann.id.parse().expect("an id");
    let store = DieselStore::new(Arc::clone(&pool));
    let before = census(&store, &[ann_id]);

    let post_body = |path: &str, body: Vec<u8>, content_type: &str| {
        client
            .post(server.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .expect("a request")
    };
    let malformed = post_body(
        "/users",
        b"{\"email\": \"eve@example.com\",".to_vec(),
        "application/json",
    );
    problem(malformed, StatusCode::BAD_REQUEST, "malformed");
    let not_json = post_body(
        "/users",
        b"email=eve@example.com".to_vec(),
        "application/x-www-form-urlencoded",
    );
    problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    // Just over the limit: the server then reads the whole body before it answers 413. A body
    // of megabytes is refused the same way, but the server closes the connection with the rest
    // unread, and the client may see the reset before it reads the answer.
    let mut huge = br#"{"email": "eve@example.com", "full_name": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', Settings::default().body_limit + 1024));
    huge.extend(br#"", "password": "correct horse battery"}"#);
    let too_large = post_body("/users", huge, "application/json");
    problem(too_large, StatusCode::PAYLOAD_TOO_LARGE, "too-large");
    let unknown_field = post_body(
        "/users",
        br#"{"email": "eve@example.com", "full_name": "Eve", "password": "correct horse battery", "is_admin": true}"#
            .to_vec(),
        "application/json",
    );
    problem(unknown_field, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let wrong_types = post_body(
        "/users",
        br#"{"email": 7, "full_name": [], "password": null}"#.to_vec(),
        "application/json",
    );
    problem(wrong_types, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let nul = post_body(
        "/users",
        br#"{"email": "eve\u0000@example.com", "full_name": "Eve", "password": "correct horse battery"}"#.to_vec(),
        "application/json",
    );
    problem(nul, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let long_name = post_body(
        "/users",
        serde_json::to_vec(
            &json!({ "email": "eve@example.com", "full_name": "e".repeat(5000), "password": "correct horse battery" }),
        )
        .expect("json"),
        "application/json",
    );
    problem(long_name, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let sign_in = post_body("/sessions", b"[]".to_vec(), "application/json");
    problem(sign_in, StatusCode::UNPROCESSABLE_ENTITY, "validation");

    for id in [
        "not-a-uuid",
        "1' OR '1'='1",
        "00000000-0000-0000-0000-00000000000g",
        &"9".repeat(4000),
    ] {
        for (method, path) in [
            ("GET", format!("/users/{}", urlencode(id))),
            ("DELETE", format!("/users/{}", urlencode(id))),
            ("POST", format!("/users/{}/check-in", urlencode(id))),
            ("POST", format!("/users/{}/restore", urlencode(id))),
        ] {
            let response = client
                .request(method.parse().expect("a method"), server.url(&path))
                .send()
                .expect("a request");
            assert!(
                response.status().is_client_error(),
                "{method} {path}: {}",
                response.status()
            );
            problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation");
        }
    }
    let nobody = client
        .post(server.url(&format!("/users/{}/check-in", UserId::new())))
        .send()
        .expect("check in nobody");
    problem(nobody, StatusCode::NOT_FOUND, "not-found");

    let forged = format!("{}x", "A".repeat(40));
    for cursor in ["garbage", "djE6", forged.as_str(), &"%".repeat(3000)] {
        let response = client
            .get(server.url("/users"))
            .query(&[("after", cursor)])
            .send()
            .expect("list");
        assert_eq!(
            problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation")["field"],
            "cursor"
        );
    }
    for query in ["limit=abc", "limit=-1", "page=99999999999", "unknown=1"] {
        let path = if query.starts_with("page") {
            "/users/pages"
        } else {
            "/users"
        };
        let response = client.get(server.url(&format!("{path}?{query}"))).send().expect("list");
        problem(response, StatusCode::BAD_REQUEST, "malformed");
    }
    for query in ["limit=0", &format!("search={}", "a".repeat(300))] {
        let response = client.get(server.url(&format!("/users?{query}"))).send().expect("list");
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    }
    for query in ["page=0", "per_page=0", "total=all"] {
        let response = client
            .get(server.url(&format!("/users/pages?{query}")))
            .send()
            .expect("pages");
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    }
    let both = client.get(server.url("/users?after=a&before=b")).send().expect("list");
    problem(both, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let period = client
        .get(server.url(&format!(
            "/users/{}?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
            ann.id
        )))
        .send()
        .expect("get");
    problem(period, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Instants chrono parses but no database stores, and one whose default period would start
    // before the year 1.
    for query in [
        "to=-262143-01-01T00:00:00Z",
        "from=-262143-01-01T00:00:00Z",
        "to=%2B262142-12-31T00:00:00Z",
        "from=%2B262142-12-31T00:00:00Z&to=%2B262142-12-31T00:00:00Z",
        "to=0001-01-02T00:00:00Z",
    ] {
        let response = client
            .get(server.url(&format!("/users/{}?{query}", ann.id)))
            .send()
            .expect("get");
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    }
    let forged_id = client
        .get(server.url(&format!("/users/{}", ann.id)))
        .header("x-request-id", "forged request id")
        .send()
        .expect("get");
    assert_ne!(
        forged_id.headers()["x-request-id"],
        "forged request id",
        "a request id that could forge log lines is replaced"
    );

    assert_eq!(census(&store, &[ann_id]), before, "hostile requests changed nothing");
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// On an SQLite file, not the in-memory database: a shared in-memory database takes table locks
// that ignore the busy timeout, and these tests hold a lock from a second connection.
on_both_backends!(
    a_request_past_its_timeout_is_504_and_its_unit_of_work_rolls_back,
    request_timeout
);

fn request_timeout(database: &TestDb) {
    let pool = Arc::new(database.database());
    pool.migrate().expect("migrate");
    let settings = Settings {
        request_timeout: Duration::from_millis(500),
        ..Settings::default()
    };
    let server = TestServer::start(Arc::clone(&pool), settings);
    let client = client();
    let ann = register(&client, &server, "ann@example.com");
    let ann_id: UserId = ann.id.parse().expect("an id");

    // Another session holds what the check-in needs: the user's row (PostgreSQL), the write
    // lock (SQLite).
    let mut holder = database.connect();
    hold_what_a_check_in_needs(database, &mut holder, ann_id);
    let started = Instant::now();
    let response = client
        .post(server.url(&format!("/users/{}/check-in", ann.id)))
        .send()
        .expect("check in");
    let waited = started.elapsed();
    problem(response, StatusCode::GATEWAY_TIMEOUT, "timeout");
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    holder.batch_execute("ROLLBACK").expect("release");

    // The unit of work runs on past the timeout, then rolls back instead of committing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.metrics().pool.in_use > 0 {
        assert!(Instant::now() < deadline, "the check-in never ended");
        thread::sleep(Duration::from_millis(20));
    }
    let store = DieselStore::new(Arc::clone(&pool));
    let range = TimeRange::new(chrono::DateTime::UNIX_EPOCH, domain::time::now()).expect("range");
    let records = store
        .attendance()
        .list_for_user(ann_id, range, Scope::WithDeleted)
        .expect("attendance");
    assert!(records.is_empty(), "a check-in answered 504 was committed: {records:?}");
    // And the connection came back out of its transaction: the next check-in commits.
    let checked_in = client
        .post(server.url(&format!("/users/{}/check-in", ann.id)))
        .send()
        .expect("check in");
    assert_eq!(checked_in.status(), StatusCode::CREATED);
    let records = store
        .attendance()
        .list_for_user(
            ann_id,
            TimeRange::new(chrono::DateTime::UNIX_EPOCH, domain::time::now()).expect("range"),
            Scope::Live,
        )
        .expect("attendance");
    assert_eq!(records.len(), 1);
}

conformance!(an_exhausted_pool_is_503_with_retry_after, exhausted_pool);

fn exhausted_pool(database: &TestDb) {
    let mut config: DatabaseConfig = database.config();
    config.pool.max_size = 1;
    config.pool.connection_timeout = Duration::from_millis(300);
    let pool = Arc::new(Database::connect(config).expect("a pool"));
    pool.migrate().expect("migrate");
    let server = TestServer::start(Arc::clone(&pool), Settings::default());
    let client = client();
    let ann = register(&client, &server, "ann@example.com");
    let held = pool.get().expect("the only connection");
    let response = client
        .get(server.url(&format!("/users/{}", ann.id)))
        .send()
        .expect("get");
    assert_eq!(response.headers()[reqwest::header::RETRY_AFTER], "1");
    problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // Readiness opens a connection of its own: a pool busy serving is still ready.
    let ready = client.get(server.url("/readyz")).send().expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let alive = client.get(server.url("/healthz")).send().expect("healthz");
    assert_eq!(alive.status(), StatusCode::OK, "liveness touches no database");
    drop(held);
    let response = client
        .get(server.url(&format!("/users/{}", ann.id)))
        .send()
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
}

on_both_backends!(
    shutdown_drains_requests_in_flight_and_closes_the_pool,
    graceful_shutdown
);

fn graceful_shutdown(database: &TestDb) {
    let pool = Arc::new(database.database());
    pool.migrate().expect("migrate");
    let mut server = TestServer::start(Arc::clone(&pool), Settings::default());
    let client = client();
    let ann = register(&client, &server, "ann@example.com");
    let ann_id: UserId = ann.id.parse().expect("an id");
    let mut holder = database.connect();
    hold_what_a_check_in_needs(database, &mut holder, ann_id);
    let in_flight = {
        let (client, url) = (client.clone(), server.url(&format!("/users/{}/check-in", ann.id)));
        thread::spawn(move || client.post(url).send().map(|response| response.status()))
    };
    // The check-in is waiting on the lock when the shutdown begins.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.metrics().pool.in_use == 0 {
        assert!(Instant::now() < deadline, "the check-in never started");
        thread::sleep(Duration::from_millis(10));
    }
    let base = server.base.clone();
    let stopper = thread::spawn(move || {
        server.stop();
        server
    });
    thread::sleep(Duration::from_millis(300));
    let refused = Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send();
    assert!(
        refused.as_ref().is_err_and(reqwest::Error::is_connect),
        "a shutting-down server took a new connection: {refused:?}"
    );
    holder.batch_execute("ROLLBACK").expect("release");
    assert_eq!(
        in_flight.join().expect("the request thread").expect("an answer"),
        StatusCode::CREATED
    );
    drop(stopper.join().expect("the server stopped"));
    // Every state the server held is gone: this is the last handle on the pool.
    let pool = Arc::into_inner(pool).expect("the server let go of the pool");
    assert_eq!(pool.metrics().pool.in_use, 0);
    drop(pool);
    if let Some(name) = database.postgres_name() {
        let mut admin = TestDb::postgres_admin().expect("an admin connection");
        let sessions: i64 = diesel::RunQueryDsl::get_result::<Count>(
            diesel::sql_query(
                "SELECT count(*) AS count FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind::<diesel::sql_types::Text, _>(name),
            &mut admin,
        )
        .expect("count")
        .count;
        // The holder's session is the one left.
        assert_eq!(sessions, 1, "the pool's connections were closed");
    }
}

/// Makes a check-in of `user` wait: `holder` locks the user's row (PostgreSQL, where the
/// attendance row's foreign key check needs a share lock on it) or takes the write lock (SQLite).
fn hold_what_a_check_in_needs(database: &TestDb, holder: &mut database::DbConnection, user: UserId) {
    match database.backend() {
        database::Backend::Postgres => {
            holder.batch_execute("BEGIN").expect("begin");
            diesel::RunQueryDsl::execute(
                diesel::sql_query("SELECT id FROM users WHERE id = CAST($1 AS uuid) FOR UPDATE")
                    .bind::<diesel::sql_types::Text, _>(user.to_string()),
                holder,
            )
            .expect("lock the user");
        }
        database::Backend::Sqlite => holder.batch_execute("BEGIN IMMEDIATE").expect("take the write lock"),
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

/// The ledger of the restart test: every registration and what it was answered.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<UserId>,
    statuses: std::collections::BTreeMap<u16, u64>,
    /// When each answer came, with its status.
    answers: Vec<(Instant, u16)>,
}

/// Four threads registering users through the service until `stop`, each answer in `ledger`.
fn spawn_writers(
    server: &TestServer,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<thread::JoinHandle<()>> {
    (0..4)
        .map(|writer| {
            let (ledger, stop, url) = (Arc::clone(ledger), Arc::clone(stop), server.url("/users"));
            thread::spawn(move || {
                let client = client();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    n += 1;
                    let email = format!("w{writer}-{n}@example.com");
                    let answer = client
                        .post(&url)
                        .json(&json!({ "email": email, "full_name": "Writer", "password": "correct horse battery" }))
                        .send();
                    let at = Instant::now();
                    let mut ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
                    match answer {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            *ledger.statuses.entry(status).or_default() += 1;
                            ledger.answers.push((at, status));
                            if status == 201 {
                                let user: UserBody = response.json().expect("a user");
                                ledger.acknowledged.push(user.id.parse().expect("an id"));
                            } else {
                                drop(ledger);
                                thread::sleep(Duration::from_millis(20));
                            }
                        }
                        Err(error) => panic!("the service did not answer: {error}"),
                    }
                }
            })
        })
        .collect()
}

#[test]
fn a_postgres_restart_is_503_never_500_and_loses_no_acknowledged_write() {
    let cluster = PrivateCluster::start();
    let url = cluster.url("postgres");
    let mut config = DatabaseConfig::new(database::DatabaseTarget::postgres_url(&url).expect("a URL"));
    config.pool.max_size = 4;
    config.pool.connection_timeout = Duration::from_millis(500);
    let pool = Arc::new(Database::connect(config).expect("a pool"));
    pool.migrate().expect("migrate");
    let server = TestServer::start(Arc::clone(&pool), Settings::default());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = spawn_writers(&server, &ledger, &stop);
    thread::sleep(Duration::from_millis(1500));
    cluster.stop_fast();
    let down_at = Instant::now();
    thread::sleep(Duration::from_secs(3));
    // `pg_ctl start` waits until the server accepts connections: it returns at its return.
    let restart_begun = Instant::now();
    cluster.start_again();
    let back_at = Instant::now();
    thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Release);
    for writer in writers {
        writer.join().expect("a writer");
    }
    let ledger = Arc::into_inner(ledger)
        .expect("the writers are done")
        .into_inner()
        .expect("the ledger");
    let down: Vec<u16> = ledger
        .answers
        .iter()
        .filter(|(at, _)| *at > down_at + Duration::from_millis(600) && *at < restart_begun)
        .map(|(_, status)| *status)
        .collect();
    let first_after = ledger
        .answers
        .iter()
        .find(|(at, status)| *at > restart_begun && *status == 201)
        .map(|(at, _)| (at.duration_since(restart_begun), at.saturating_duration_since(back_at)));
    let _ = writeln!(
        std::io::stdout().lock(),
        "HTTP under a PostgreSQL restart: answers by status {:?}; {} answers while down; first 201 {:?} after `pg_ctl \
         start` began and {:?} after it returned; {} writes acknowledged",
        ledger.statuses,
        down.len(),
        first_after.map(|(begun, _)| begun),
        first_after.map(|(_, returned)| returned),
        ledger.acknowledged.len()
    );
    assert!(
        !ledger.statuses.contains_key(&500),
        "a request was answered 500: {:?}",
        ledger.statuses
    );
    assert!(
        ledger.statuses.keys().all(|status| [201, 503].contains(status)),
        "answers other than 201 and 503: {:?}",
        ledger.statuses
    );
    assert!(
        !down.is_empty() && down.iter().all(|status| *status == 503),
        "while down: {down:?}"
    );
    let (_, first_after) = first_after.expect("the service served again");
    assert!(
        first_after < Duration::from_secs(1),
        "served again only {first_after:?} after the server's return"
    );

    let store = DieselStore::new(Arc::clone(&pool));
    let missing: Vec<_> = ledger
        .acknowledged
        .iter()
        .filter(|id| store.users().get(**id, Scope::Live).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged registrations lost: {missing:?}");
}
