#![doc = include_str!("../README.md")]

pub use domain::{AttendanceId, UserId};
