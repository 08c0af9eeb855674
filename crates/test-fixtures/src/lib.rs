#![doc = include_str!("../README.md")]

mod scratch;

pub use scratch::ScratchDatabase;
