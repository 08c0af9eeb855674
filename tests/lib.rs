//! This package holds only the workspace's integration test binary, `it` (`tests/it/main.rs`):
//! one binary for every cross-crate test, run against PostgreSQL and SQLite.
