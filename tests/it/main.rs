//! The workspace's one integration test binary. Every database test runs against SQLite and,
//! when `TEST_DATABASE_URL` is set, PostgreSQL; `REQUIRE_POSTGRES=1` turns a missing server into
//! a failure (CI sets it).

mod attendance;
mod bad_input;
mod cluster;
mod constraints;
mod faults;
mod fixtures;
mod migrations;
mod migrator;
mod pool;
mod schema;
mod service;
mod support;
mod transactions;
mod users;
