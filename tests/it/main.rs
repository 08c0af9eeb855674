//! The workspace's one integration test binary. Every database test runs against SQLite and
//! PostgreSQL (found by `test_fixtures::TestDb`: `TEST_DATABASE_URL`, a container, or the local
//! server; none fails the PostgreSQL tests). `faults` runs PostgreSQL clusters of its own.

mod async_store;
mod attendance;
mod audit;
mod bad_input;
mod cluster;
mod constraints;
mod faults;
mod fixtures;
mod health;
mod http;
mod metrics;
mod migrations;
mod migrator;
mod pitr;
mod plans;
mod pool;
mod schema;
mod search;
mod security;
mod service;
mod support;
mod transactions;
mod users;
