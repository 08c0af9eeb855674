//! What the benchmarks share: many users loaded at once, and the spread of per-round figures.

use chrono::Utc;
use database::Database;
use database::sql_types::{DbTimestamp, DbUuid};
use domain::UserId;
use repo_diesel::bulk::{self, NewUserRow};

use crate::default_password_hash;

/// Inserts `count` live, active users with the emails `<label>.<n>@example.com` (one COPY on
/// PostgreSQL, multi-row INSERTs on SQLite); their ids, in insertion order.
///
/// # Panics
/// When no connection can be had or the insert fails.
#[must_use]
pub fn insert_users(database: &Database, count: usize, label: &str) -> Vec<UserId> {
    let hash = default_password_hash();
    let now = DbTimestamp(Utc::now());
    let rows: Vec<NewUserRow<'_>> = (0..count)
        .map(|index| NewUserRow {
            id: DbUuid(uuid::Uuid::now_v7()),
            email: format!("{label}.{index}@example.com"),
            full_name: format!("{label} user {index}"),
            hashed_password: hash.as_phc(),
            is_active: true,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            deletion_batch_id: None,
        })
        .collect();
    let mut connection = database.get().expect("a connection");
    let inserted = bulk::insert_users(&mut connection, &rows).expect("the users are inserted");
    assert_eq!(inserted, count, "every user was inserted");
    rows.iter().map(|row| UserId::from_uuid(row.id.0)).collect()
}

/// The median and range of per-round values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`.
    ///
    /// # Panics
    /// When `values` is empty.
    #[must_use]
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            f64::midpoint(sorted[middle - 1], sorted[middle])
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// `median [min–max]` with `decimals` decimals.
    #[must_use]
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.decimals$} [{:.decimals$}–{:.decimals$}]",
            self.median, self.min, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spreads_have_the_median_and_the_range() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(
            Spread::of(&[4.0, 1.0, 2.0, 3.0]),
            Spread {
                median: 2.5,
                min: 1.0,
                max: 4.0
            }
        );
    }
}
