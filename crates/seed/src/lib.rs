#![doc = include_str!("../README.md")]

pub mod generate;
pub mod load;
pub mod progress;

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use repo::RepoError;
use repo_diesel::bulk::Purged;

pub use generate::{Clock, Generator};
pub use load::{dry_run, seed_database};

/// The password every seed user signs in with.
pub const SEED_PASSWORD: &str = "correct horse battery staple";

/// The hash of [`SEED_PASSWORD`], computed once per call: argon2id is slow on purpose, and every
/// seed user gets this hash.
pub fn seed_password_hash() -> Result<domain::PasswordHash, domain::ValidationError> {
    domain::Password::parse(SEED_PASSWORD)?.hash()
}

/// The most users one run may ask for (`--users`).
pub const MAX_USERS: u32 = 1_000_000;
/// The most days of history one run may ask for (`--days`, ten years).
pub const MAX_DAYS: u32 = 3_650;
/// The most attendance records one run may make, estimated as `users × days × 5/7` (working
/// days): about 10 GB on PostgreSQL, and hours of loading. Larger runs are refused up front.
pub const MAX_ESTIMATED_ATTENDANCE_ROWS: u64 = 50_000_000;

/// What to generate: validated, so every value of this type is a run the seed accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedConfig {
    /// Users to have (`--users`): a re-run tops up to this many.
    pub users: u32,
    /// Days of history before today (`--days`).
    pub days: u32,
    /// The random seed (`--seed`): the same seed gives the same data.
    pub seed: u64,
    /// Remove all seed-made users first (`--reset`).
    pub reset: bool,
}

impl SeedConfig {
    /// Checks the sizes: `users` in `1..=MAX_USERS`, `days` in `1..=MAX_DAYS`, and the estimated
    /// attendance rows at most [`MAX_ESTIMATED_ATTENDANCE_ROWS`].
    pub fn new(users: i64, days: i64, seed: u64, reset: bool) -> Result<Self, SeedError> {
        let users = u32::try_from(users)
            .ok()
            .filter(|users| (1..=MAX_USERS).contains(users))
            .ok_or(SeedError::Users(users))?;
        let days = u32::try_from(days)
            .ok()
            .filter(|days| (1..=MAX_DAYS).contains(days))
            .ok_or(SeedError::Days(days))?;
        let estimated = estimated_attendance_rows(users, days);
        if estimated > MAX_ESTIMATED_ATTENDANCE_ROWS {
            return Err(SeedError::TooManyRows { users, days, estimated });
        }
        Ok(Self {
            users,
            days,
            seed,
            reset,
        })
    }
}

/// The attendance records a run makes at most, about: one per working day per user.
#[must_use]
pub fn estimated_attendance_rows(users: u32, days: u32) -> u64 {
    u64::from(users) * u64::from(days) * 5 / 7
}

/// Why a seed run did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// `--users` out of range.
    #[error("--users must be from 1 to {MAX_USERS}, got {0}")]
    Users(i64),
    /// `--days` out of range.
    #[error("--days must be from 1 to {MAX_DAYS}, got {0}")]
    Days(i64),
    /// The run would be too large.
    #[error(
        "--users {users} with --days {days} would make about {estimated} attendance records, more than the \
         limit of {MAX_ESTIMATED_ATTENDANCE_ROWS}: ask for fewer users or days"
    )]
    TooManyRows {
        /// `--users`.
        users: u32,
        /// `--days`.
        days: u32,
        /// `users × days × 5/7`.
        estimated: u64,
    },
    /// The database holds seed data of another seed.
    #[error(
        "the database holds seed data made with --seed {found}, not --seed {requested}: pass --reset to replace \
         it, or --seed {found} to top it up"
    )]
    OtherSeed {
        /// `--seed`.
        requested: u64,
        /// The seed found in the database.
        found: u64,
    },
    /// The database refused a read or write.
    #[error(transparent)]
    Database(#[from] RepoError),
    /// The transaction could not begin, commit or roll back.
    #[error("transaction failed: {0}")]
    Transaction(#[from] diesel::result::Error),
}

/// Rows written to one table, and how long it took (generation included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableLoad {
    /// Rows inserted.
    pub rows: u64,
    /// Time spent on the table.
    pub elapsed: Duration,
}

/// What a seed run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// What was asked.
    pub config: SeedConfig,
    /// The UTC date the data is relative to.
    pub today: NaiveDate,
    /// Nothing was written: the counts are what an empty database would get.
    pub dry_run: bool,
    /// Seed-made users of this seed present before the run (after `--reset`).
    pub existing_users: u64,
    /// What `--reset` removed.
    pub removed: Purged,
    /// The `users` rows written.
    pub users: TableLoad,
    /// The `attendance` rows written.
    pub attendance: TableLoad,
    /// The whole run, transaction included.
    pub elapsed: Duration,
}

impl SeedReport {
    /// Rows written in all.
    #[must_use]
    pub fn total_rows(&self) -> u64 {
        self.users.rows + self.attendance.rows
    }
}

/// The summary printed after a run: what was asked, then a table of rows, seconds and rows per
/// second per table.
impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SeedConfig {
            users,
            days,
            seed,
            reset,
        } = self.config;
        writeln!(
            f,
            "seed:            --seed {seed} --users {users} --days {days}{}, dates relative to {} (UTC)",
            if reset { " --reset" } else { "" },
            self.today
        )?;
        if self.dry_run {
            writeln!(
                f,
                "dry run:         nothing was written; counts are for an empty database"
            )?;
        } else {
            if reset {
                writeln!(
                    f,
                    "reset:           removed {} seed users and {} attendance records",
                    self.removed.users, self.removed.attendance
                )?;
            }
            writeln!(f, "already there:   {} users of seed {seed}", self.existing_users)?;
            if self.total_rows() == 0 {
                writeln!(f, "nothing to insert: the database already has these users")?;
            }
        }
        let heading = if self.dry_run {
            "rows to insert"
        } else {
            "rows inserted"
        };
        writeln!(f, "{:<12} {heading:>14} {:>9} {:>11}", "table", "seconds", "rows/s")?;
        let total = TableLoad {
            rows: self.total_rows(),
            elapsed: self.elapsed,
        };
        for (name, load) in [("users", self.users), ("attendance", self.attendance), ("total", total)] {
            let seconds = load.elapsed.as_secs_f64();
            #[expect(clippy::cast_precision_loss, reason = "a rate for people to read")]
            let rate = if seconds > 0.0 { load.rows as f64 / seconds } else { 0.0 };
            writeln!(f, "{name:<12} {:>14} {seconds:>9.3} {rate:>11.0}", load.rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(users: i64, days: i64, expected: Result<(), &str>) {
        let actual = SeedConfig::new(users, days, 1, false)
            .map(|_| ())
            .map_err(|error| error.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "--users {users} --days {days}");
    }

    #[test]
    fn sizes_are_checked() {
        check(1, 1, Ok(()));
        check(100, 90, Ok(()));
        check(4000, 365, Ok(()));
        check(0, 90, Err("--users must be from 1 to 1000000, got 0"));
        check(-5, 90, Err("--users must be from 1 to 1000000, got -5"));
        check(1_000_001, 1, Err("--users must be from 1 to 1000000, got 1000001"));
        check(10, 0, Err("--days must be from 1 to 3650, got 0"));
        check(10, 3651, Err("--days must be from 1 to 3650, got 3651"));
        check(
            1_000_000,
            3650,
            Err(
                "--users 1000000 with --days 3650 would make about 2607142857 attendance records, more than the \
                 limit of 50000000: ask for fewer users or days",
            ),
        );
        check(200_000, 350, Ok(()));
        check(
            200_000,
            351,
            Err(
                "--users 200000 with --days 351 would make about 50142857 attendance records, \
                                 more than the limit of 50000000: ask for fewer users or days",
            ),
        );
    }
}
