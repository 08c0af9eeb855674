#![doc = include_str!("../README.md")]

pub mod bench;
mod builders;
pub mod s3;
mod small_disk;
mod test_db;

pub use builders::{AttendanceBuilder, DEFAULT_PASSWORD, UserBuilder, default_password_hash};

pub use small_disk::SmallDisk;
pub use test_db::{TEST_ROLE_PREFIX, TestDb, template_name};
