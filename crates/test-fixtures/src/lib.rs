#![doc = include_str!("../README.md")]

mod builders;
mod scratch;

pub use builders::{AttendanceBuilder, DEFAULT_PASSWORD, UserBuilder, default_password_hash};

pub use scratch::ScratchDatabase;
