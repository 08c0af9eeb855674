//! Timestamps: UTC, at the microsecond precision both databases keep.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// Drops the nanoseconds PostgreSQL does not store, so a value read back equals the one written
/// and keyset cursors compare exactly.
#[must_use]
pub fn truncate_to_micros(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(instant)
}

/// The current time at microsecond precision.
#[must_use]
pub fn now() -> DateTime<Utc> {
    truncate_to_micros(Utc::now())
}

#[cfg(test)]
mod tests {
    use chrono::Timelike as _;

    use super::*;

    #[test]
    fn truncates_to_microseconds() {
        let instant = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid");
        assert_eq!(truncate_to_micros(instant).nanosecond(), 123_456_000);
        assert_eq!(now().nanosecond() % 1000, 0);
    }
}
