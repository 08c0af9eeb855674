//! Timestamps: UTC, at the microsecond precision both databases keep.

use chrono::{DateTime, Datelike as _, DurationRound, TimeDelta, Utc};

use crate::ValidationError;

/// How far in the future a check-in or check-out may be, for clocks that disagree a little.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

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

/// Checks that an instant can be stored on both backends: years 1 to 9999 (SQLite keeps
/// timestamps as fixed-width text, which orders correctly only within four-digit years).
pub fn storable(instant: DateTime<Utc>, field: &'static str) -> Result<DateTime<Utc>, ValidationError> {
    if (1..=9999).contains(&instant.year()) {
        Ok(truncate_to_micros(instant))
    } else {
        Err(ValidationError::new(field, "must be between the years 1 and 9999"))
    }
}

/// Checks that an event time is storable and not in the future (beyond [`MAX_CLOCK_SKEW`]).
pub fn not_in_the_future(instant: DateTime<Utc>, field: &'static str) -> Result<DateTime<Utc>, ValidationError> {
    let instant = storable(instant, field)?;
    if instant > Utc::now() + MAX_CLOCK_SKEW {
        return Err(ValidationError::new(field, "must not be in the future"));
    }
    Ok(instant)
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

    #[test]
    fn event_times_are_storable_and_not_in_the_future() {
        assert!(storable(DateTime::<Utc>::MIN_UTC, "at").is_err());
        assert!(storable(DateTime::<Utc>::MAX_UTC, "at").is_err());
        assert!(not_in_the_future(now() + TimeDelta::hours(1), "at").is_err());
        assert!(
            not_in_the_future(now() + TimeDelta::minutes(1), "at").is_ok(),
            "within the skew"
        );
    }
}
