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
/// timestamps as fixed-width text, which orders correctly only within four-digit years), and
/// returns it as both store it: truncated to microseconds, and a leap second (`23:59:60.5`)
/// moved to the same fraction of the next second (`00:00:00.5`), as PostgreSQL stores it, so that
/// what a write returns equals what a later read returns.
pub fn storable(instant: DateTime<Utc>, field: &'static str) -> Result<DateTime<Utc>, ValidationError> {
    let instant = without_leap_second(instant);
    if (1..=9999).contains(&instant.year()) {
        Ok(truncate_to_micros(instant))
    } else {
        Err(ValidationError::new(field, "must be between the years 1 and 9999"))
    }
}

/// chrono represents a leap second as a nanosecond count of one second or more.
fn without_leap_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    let nanoseconds = instant.timestamp_subsec_nanos();
    if nanoseconds < 1_000_000_000 {
        return instant;
    }
    instant
        .timestamp()
        .checked_add(1)
        .and_then(|seconds| DateTime::from_timestamp(seconds, nanoseconds - 1_000_000_000))
        .unwrap_or(instant)
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
    fn a_leap_second_is_stored_as_the_next_second() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_micro_opt(23, 59, 59, 1_500_000))
            .expect("a leap second")
            .and_utc();
        assert_eq!(leap.to_rfc3339(), "2016-12-31T23:59:60.500+00:00");
        assert_eq!(
            storable(leap, "at").expect("storable").to_rfc3339(),
            "2017-01-01T00:00:00.500+00:00"
        );
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
