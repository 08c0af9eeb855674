#![doc = include_str!("../README.md")]

mod builders;
mod test_db;

pub use builders::{AttendanceBuilder, DEFAULT_PASSWORD, UserBuilder, default_password_hash};

pub use test_db::{TestDb, template_name};
