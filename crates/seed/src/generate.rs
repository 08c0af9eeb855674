//! The deterministic data stream: user `i` of seed `S` is a function of `(S, i)` and the run's
//! UTC date, produced one user (and one attendance record) at a time so memory stays bounded.
//!
//! Each user draws from three `ChaCha8` streams keyed by `(seed, index, stream)`: identity (name
//! and email, which depend on nothing else), plan (status, habits, hire, deactivation and deletion
//! dates) and attendance (one draw sequence over the days). `ChaCha8` is a named algorithm whose
//! output rand promises to keep across releases (unlike `StdRng`), so a seed means the same data
//! on every machine built from the same lock file (`fake`'s name lists are part of that).
//!
//! Times are relative to the run's "today" (UTC): closed shifts fall on the `days` days before
//! today; a few users have an open check-in today, before the moment of the run. Only those open
//! check-ins depend on the time of day the run starts (they are clamped to before it).
//! Ids are UUIDv7 built from the RNG: the timestamp is the row's `created_at` in milliseconds and
//! the other bits come from the stream, so the same seed on the same date gives the same ids.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Utc, Weekday};
use database::sql_types::{DbTimestamp, DbUuid};
use fake::Fake as _;
use fake::faker::name::en::{FirstName, LastName};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng as _};
use repo_diesel::bulk::{NewAttendanceRow, NewUserRow};

/// Seed-made users have emails at `seed<S>.example` (`.example` is reserved by RFC 2606, so no
/// real address is there): this prefix and suffix mark them.
pub const EMAIL_DOMAIN_PREFIX: &str = "seed";
/// See [`EMAIL_DOMAIN_PREFIX`].
pub const EMAIL_DOMAIN_SUFFIX: &str = ".example";

/// Share of users deactivated (`is_active = false`).
pub const INACTIVE_RATE: f64 = 0.05;
/// Share of users soft-deleted, with their attendance, as the repository's soft delete does it.
pub const DELETED_RATE: f64 = 0.03;
/// Share of live, active users with an open check-in today.
pub const OPEN_TODAY_RATE: f64 = 0.05;
/// Share of users who sometimes work on Saturdays.
pub const SATURDAY_WORKER_RATE: f64 = 0.05;
/// How often such a user works a given Saturday. Nobody works on Sundays.
pub const SATURDAY_SHIFT_RATE: f64 = 0.3;
/// Share of working days a user is absent (ill, errands), besides vacations.
pub const ABSENCE_RATE: f64 = 0.05;
/// Chance that a working day starts a vacation of one to two weeks.
pub const VACATION_START_RATE: f64 = 1.0 / 120.0;
/// Share of users hired during the history window rather than before it.
pub const HIRED_IN_WINDOW_RATE: f64 = 0.15;

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// The run's notion of now, at microsecond precision; "today" is its UTC date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    now: DateTime<Utc>,
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self::at(Utc::now())
    }

    /// A fixed instant (tests).
    #[must_use]
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now: domain::time::truncate_to_micros(now),
        }
    }

    /// Now.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Today's UTC date.
    #[must_use]
    pub fn today(&self) -> NaiveDate {
        self.now.date_naive()
    }
}

/// The email domain of seed `seed`'s users.
#[must_use]
pub fn email_domain(seed: u64) -> String {
    format!("{EMAIL_DOMAIN_PREFIX}{seed}{EMAIL_DOMAIN_SUFFIX}")
}

/// A user's name and email: a function of `(seed, index)` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `First Last`.
    pub full_name: String,
    /// `first.last.<index>@seed<seed>.example`, unique per `(seed, index)`.
    pub email: String,
}

/// The name and email of user `index` of seed `seed`.
#[must_use]
pub fn identity(seed: u64, index: u64) -> Identity {
    let mut rng = stream(seed, index, Stream::Identity);
    let first: String = FirstName().fake_with_rng(&mut rng);
    let last: String = LastName().fake_with_rng(&mut rng);
    let full_name = format!("{} {}", first.trim(), last.trim()).trim().to_owned();
    let full_name = if full_name.is_empty() {
        format!("User {index}")
    } else {
        full_name
    };
    let email = format!("{}.{}.{index}@{}", slug(&first), slug(&last), email_domain(seed));
    Identity { full_name, email }
}

/// The `(seed, index)` of a seed-made email: one this generator produces exactly, shape and name
/// included. Any other address, at a seed domain or not, is `None`: `--reset` deletes only users
/// for which this returns `Some`.
#[must_use]
pub fn parse_seed_email(email: &str) -> Option<(u64, u64)> {
    let (local, domain) = email.split_once('@')?;
    let digits = domain
        .strip_prefix(EMAIL_DOMAIN_PREFIX)?
        .strip_suffix(EMAIL_DOMAIN_SUFFIX)?;
    let seed = canonical_number(digits)?;
    let (_, index) = local.rsplit_once('.')?;
    let index = canonical_number(index)?;
    (identity(seed, index).email == email).then_some((seed, index))
}

/// A decimal number written as this generator writes it (no sign, no leading zeros).
fn canonical_number(digits: &str) -> Option<u64> {
    let number: u64 = digits.parse().ok()?;
    (number.to_string() == digits).then_some(number)
}

/// Lower-case ASCII letters and digits of a name, `x` when none are left.
fn slug(name: &str) -> String {
    let slug: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if slug.is_empty() { "x".to_owned() } else { slug }
}

#[derive(Clone, Copy)]
enum Stream {
    Identity = 0,
    Plan = 1,
    Attendance = 2,
}

/// The random stream `stream` of user `index` of seed `seed`. `ChaCha` is a keyed function, so
/// keying it with the three numbers themselves gives independent streams with no collisions.
fn stream(seed: u64, index: u64, stream: Stream) -> ChaCha8Rng {
    let mut key = [0_u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..24].copy_from_slice(&(stream as u64).to_le_bytes());
    key[24..].copy_from_slice(b"seed/v1\0");
    ChaCha8Rng::from_seed(key)
}

/// A UUIDv7 for an instant, with its other 74 bits from `rng`.
fn uuid_v7(at: DateTime<Utc>, rng: &mut ChaCha8Rng) -> DbUuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random: [u8; 10] = rng.random();
    DbUuid(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn micros(count: i64) -> TimeDelta {
    TimeDelta::microseconds(count)
}

/// The days of history given by `--days`, and everything a user's rows depend on besides the
/// user's index.
#[derive(Debug, Clone, Copy)]
pub struct Generator<'h> {
    seed: u64,
    days: u32,
    clock: Clock,
    password_hash: &'h str,
}

/// What a user's rows are made from: drawn from the plan stream.
#[derive(Debug, Clone, Copy)]
struct Plan {
    id: DbUuid,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The first day with shifts.
    first_day: NaiveDate,
    /// The day after the last day with shifts.
    end_day: NaiveDate,
    /// `deleted_at` and `deletion_batch_id`.
    deletion: Option<(DateTime<Utc>, DbUuid)>,
    open_today: bool,
    /// When the user usually checks in, after midnight.
    habitual_start: i64,
    /// How long the user's shifts usually last.
    habitual_length: i64,
    works_saturdays: bool,
}

impl<'h> Generator<'h> {
    /// A generator of seed `seed` with `days` days of history before the clock's today; every
    /// user gets `password_hash`.
    #[must_use]
    pub fn new(seed: u64, days: u32, clock: Clock, password_hash: &'h str) -> Self {
        Self {
            seed,
            days,
            clock,
            password_hash,
        }
    }

    /// The row of user `index`.
    #[must_use]
    pub fn user(&self, index: u64) -> NewUserRow<'h> {
        let plan = self.plan(index);
        let Identity { full_name, email } = identity(self.seed, index);
        NewUserRow {
            id: plan.id,
            email,
            full_name,
            hashed_password: self.password_hash,
            is_active: plan.is_active,
            created_at: DbTimestamp(plan.created_at),
            updated_at: DbTimestamp(plan.updated_at),
            deleted_at: plan.deletion.map(|(at, _)| DbTimestamp(at)),
            deletion_batch_id: plan.deletion.map(|(_, batch)| batch),
        }
    }

    /// The attendance records of user `index`, oldest first, made as they are read.
    #[must_use]
    pub fn attendance(&self, index: u64) -> Shifts {
        let plan = self.plan(index);
        Shifts {
            rng: stream(self.seed, index, Stream::Attendance),
            day: plan.first_day,
            plan,
            vacation_until: None,
            today_done: false,
            today: self.clock.today(),
            now: self.clock.now(),
        }
    }

    /// How far `instant` is into the history window, in thousandths (0 at its start, 1000 now).
    #[must_use]
    pub fn window_permille(&self, instant: DateTime<Utc>) -> u64 {
        let start = midnight(self.clock.today() - TimeDelta::days(i64::from(self.days)));
        let window = (self.clock.now() - start).num_seconds().max(1);
        let into = (instant - start).num_seconds().clamp(0, window);
        u64::try_from(into * 1000 / window).unwrap_or(0)
    }

    /// The attendance records of `users` (indexes), merged into `(created_at, id)` order. Holds one
    /// record and the generator state of each of them, nothing more.
    #[must_use]
    pub fn attendance_in_time_order(&self, users: impl IntoIterator<Item = u64>) -> Merged {
        let mut streams: Vec<Shifts> = users.into_iter().map(|index| self.attendance(index)).collect();
        let heads = streams
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, shifts)| shifts.next().map(|record| Reverse(Head::new(record, slot))))
            .collect();
        Merged { streams, heads }
    }

    fn plan(&self, index: u64) -> Plan {
        let mut rng = stream(self.seed, index, Stream::Plan);
        // Categories first, so they depend on (seed, index) only.
        let inactive = rng.random_bool(INACTIVE_RATE);
        let deleted = rng.random_bool(DELETED_RATE);
        let open_today = !inactive && !deleted && rng.random_bool(OPEN_TODAY_RATE);
        let works_saturdays = rng.random_bool(SATURDAY_WORKER_RATE);
        let hired_in_window = self.days >= 2 && rng.random_bool(HIRED_IN_WINDOW_RATE);
        let habitual_start = rng.random_range(7 * HOUR..=10 * HOUR);
        let habitual_length = rng.random_range(7 * HOUR + 30 * MINUTE..=9 * HOUR);

        let today = self.clock.today();
        let window_start = today - TimeDelta::days(i64::from(self.days));
        let office_hours = |rng: &mut ChaCha8Rng| micros(rng.random_range(8 * HOUR..17 * HOUR));
        let evening = |rng: &mut ChaCha8Rng| micros(rng.random_range(21 * HOUR..23 * HOUR));
        // Hired before the window (shifts from its first day) or on one of its days but the last
        // (shifts from the next day), so there is always at least one day for shifts.
        let (created_at, first_day) = if hired_in_window {
            let hired = window_start + TimeDelta::days(rng.random_range(0..i64::from(self.days) - 1));
            (midnight(hired) + office_hours(&mut rng), hired + TimeDelta::days(1))
        } else {
            let hired = window_start - TimeDelta::days(rng.random_range(1..=60));
            (midnight(hired) + office_hours(&mut rng), window_start)
        };
        let last_day = today - TimeDelta::days(1);
        let span = (last_day - first_day).num_days();
        let mut end_day = today;
        let mut updated_at = created_at;
        // Deactivation and deletion happen in the evening of a day with possible shifts, after
        // any shift of that day (shifts end by 20:00).
        let mut deactivated_on = None;
        if inactive {
            let day = first_day + TimeDelta::days(rng.random_range(0..=span));
            updated_at = midnight(day) + evening(&mut rng);
            end_day = day + TimeDelta::days(1);
            deactivated_on = Some((day, updated_at));
        }
        let deletion = if deleted {
            let earliest = deactivated_on.map_or(first_day, |(day, _)| day);
            let day = earliest + TimeDelta::days(rng.random_range(0..=(last_day - earliest).num_days()));
            let mut at = midnight(day) + evening(&mut rng);
            if let Some((_, deactivated_at)) = deactivated_on {
                at = at.max(deactivated_at + TimeDelta::minutes(1));
            }
            updated_at = at;
            end_day = end_day.min(day + TimeDelta::days(1));
            Some((at, uuid_v7(at, &mut rng)))
        } else {
            None
        };
        Plan {
            id: uuid_v7(created_at, &mut rng),
            is_active: !inactive,
            created_at,
            updated_at,
            first_day,
            end_day,
            deletion,
            open_today,
            habitual_start,
            habitual_length,
            works_saturdays,
        }
    }
}

/// The attendance records of one user, made one at a time.
#[derive(Debug)]
pub struct Shifts {
    rng: ChaCha8Rng,
    plan: Plan,
    day: NaiveDate,
    vacation_until: Option<NaiveDate>,
    today_done: bool,
    today: NaiveDate,
    now: DateTime<Utc>,
}

impl Shifts {
    /// Whether the user works on `day`; draws from the stream in the same order on every run.
    fn works_on(&mut self, day: NaiveDate) -> bool {
        match day.weekday() {
            Weekday::Sun => return false,
            Weekday::Sat if !(self.plan.works_saturdays && self.rng.random_bool(SATURDAY_SHIFT_RATE)) => {
                return false;
            }
            _ => {}
        }
        if self.vacation_until.is_some_and(|until| day < until) {
            return false;
        }
        if self.rng.random_bool(VACATION_START_RATE) {
            self.vacation_until = Some(day + TimeDelta::days(self.rng.random_range(7..=14)));
            return false;
        }
        !self.rng.random_bool(ABSENCE_RATE)
    }

    /// Check-in on `day`: the habitual time give or take half an hour.
    fn check_in_on(&mut self, day: NaiveDate) -> DateTime<Utc> {
        let jitter = self.rng.random_range(-30 * MINUTE..=30 * MINUTE);
        midnight(day) + micros(self.plan.habitual_start + jitter)
    }

    fn record(&mut self, check_in: DateTime<Utc>, check_out: Option<DateTime<Utc>>) -> NewAttendanceRow {
        let id = uuid_v7(check_in, &mut self.rng);
        let updated_at = check_out.unwrap_or(check_in);
        let (updated_at, deleted_at, deletion_batch_id) = match self.plan.deletion {
            // As the repository's soft delete leaves them: same instant and batch as the user.
            Some((at, batch)) => (at, Some(DbTimestamp(at)), Some(batch)),
            None => (updated_at, None, None),
        };
        NewAttendanceRow {
            id,
            user_id: self.plan.id,
            check_in_time: DbTimestamp(check_in),
            check_out_time: check_out.map(DbTimestamp),
            created_at: DbTimestamp(check_in),
            updated_at: DbTimestamp(updated_at),
            deleted_at,
            deletion_batch_id,
        }
    }
}

impl Iterator for Shifts {
    type Item = NewAttendanceRow;

    fn next(&mut self) -> Option<NewAttendanceRow> {
        while self.day < self.plan.end_day {
            let day = self.day;
            self.day = day + TimeDelta::days(1);
            if self.works_on(day) {
                let check_in = self.check_in_on(day);
                let length = self.plan.habitual_length + self.rng.random_range(-30 * MINUTE..=30 * MINUTE);
                return Some(self.record(check_in, Some(check_in + micros(length))));
            }
        }
        if self.plan.open_today && !self.today_done {
            self.today_done = true;
            // Checked in today and not yet out: at the habitual time, or a minute before the run
            // when that time is still ahead; none when the day began less than a minute ago.
            let planned = self.check_in_on(self.today);
            let check_in = planned.min(self.now - TimeDelta::minutes(1));
            if check_in >= midnight(self.today) && check_in > self.plan.created_at {
                return Some(self.record(check_in, None));
            }
        }
        None
    }
}

/// The next record of one user's stream, ordered by `(created_at, id)`.
#[derive(Debug)]
struct Head {
    key: (DbTimestamp, DbUuid),
    record: NewAttendanceRow,
    slot: usize,
}

impl Head {
    fn new(record: NewAttendanceRow, slot: usize) -> Self {
        Self {
            key: (record.created_at, record.id),
            record,
            slot,
        }
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// Several users' records merged in time order: see [`Generator::attendance_in_time_order`].
#[derive(Debug)]
pub struct Merged {
    streams: Vec<Shifts>,
    heads: BinaryHeap<Reverse<Head>>,
}

impl Iterator for Merged {
    type Item = NewAttendanceRow;

    fn next(&mut self) -> Option<NewAttendanceRow> {
        let Reverse(head) = self.heads.pop()?;
        if let Some(next) = self.streams[head.slot].next() {
            self.heads.push(Reverse(Head::new(next, head.slot)));
        }
        Some(head.record)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::Timelike as _;

    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    fn clock() -> Clock {
        Clock::at(
            DateTime::parse_from_rfc3339("2026-03-18T13:45:10.123456789Z")
                .expect("valid")
                .to_utc(),
        )
    }

    fn rows(seed: u64, days: u32, users: u64) -> (Vec<NewUserRow<'static>>, Vec<NewAttendanceRow>) {
        let generator = Generator::new(seed, days, clock(), HASH);
        let user_rows = (0..users).map(|index| generator.user(index)).collect();
        let attendance = (0..users).flat_map(|index| generator.attendance(index)).collect();
        (user_rows, attendance)
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        assert_eq!(rows(42, 30, 50), rows(42, 30, 50));
        let (users, _) = rows(43, 30, 50);
        assert_ne!(rows(42, 30, 50).0, users, "another seed, other data");
        // A user does not depend on how many users are generated, so top-ups extend a seed.
        assert_eq!(rows(42, 30, 20).0[..], rows(42, 30, 50).0[..20]);
    }

    /// `--reset`, top-ups and the other-seed check recognise seed users by regenerating their
    /// addresses: a dependency update that changes `fake`'s names or `rand`'s streams must fail
    /// here rather than silently orphan earlier seed data.
    #[test]
    fn seed_emails_are_pinned() {
        let emails: Vec<String> = (0..3).map(|index| identity(42, index).email).collect();
        assert_eq!(
            emails,
            [
                "daija.schmitt.0@seed42.example",
                "clemmie.ratke.1@seed42.example",
                "ralph.johnston.2@seed42.example"
            ]
        );
    }

    #[test]
    fn emails_are_unique_valid_and_recognised() {
        let (users, _) = rows(7, 10, 2000);
        let emails: HashSet<&str> = users.iter().map(|user| user.email.as_str()).collect();
        assert_eq!(emails.len(), users.len());
        for (index, user) in users.iter().enumerate() {
            assert!(domain::Email::parse(&user.email).is_ok_and(|email| email.as_str() == user.email));
            assert!(domain::FullName::parse(&user.full_name).is_ok(), "{}", user.full_name);
            assert_eq!(
                parse_seed_email(&user.email),
                Some((7, u64::try_from(index).expect("small")))
            );
        }
        for email in [
            "ann@seed7.example",
            "ann.lee.0@seed7.example",
            "x.y.1@seed07.example",
            "x.y.01@seed7.example",
            "someone@example.com",
            "a.b.1@seed.example",
            "a.b.1@seed-1.example",
        ] {
            assert_eq!(parse_seed_email(email), None, "{email}");
        }
    }

    #[test]
    fn rows_keep_the_schema_rules_and_look_real() {
        let now = clock().now();
        let (users, attendance) = rows(42, 120, 1000);
        let by_id: std::collections::HashMap<DbUuid, &NewUserRow<'_>> =
            users.iter().map(|user| (user.id, user)).collect();
        let mut open = HashSet::new();
        let mut saturdays = 0;
        for record in &attendance {
            let user = by_id[&record.user_id];
            assert!(record.created_at >= user.created_at);
            assert!(record.updated_at >= record.created_at);
            assert!(record.check_in_time.0 < now);
            // Open records are today's, whatever day today is; the clock's today is a Wednesday.
            assert_ne!(record.check_in_time.0.weekday(), Weekday::Sun);
            saturdays += usize::from(record.check_in_time.0.weekday() == Weekday::Sat);
            assert_eq!(record.check_in_time.0.nanosecond() % 1000, 0, "microseconds");
            assert_eq!(record.id.0.get_version_num(), 7);
            assert_eq!(
                u64::try_from(record.created_at.0.timestamp_millis()).ok(),
                record.id.0.get_timestamp().map(|at| {
                    let (seconds, nanos) = at.to_unix();
                    seconds * 1000 + u64::from(nanos) / 1_000_000
                })
            );
            assert_eq!(record.deleted_at.is_some(), record.deletion_batch_id.is_some());
            assert_eq!(record.deleted_at, user.deleted_at);
            assert_eq!(record.deletion_batch_id, user.deletion_batch_id);
            if let Some(out) = record.check_out_time {
                let minutes = (out.0 - record.check_in_time.0).num_minutes();
                assert!((7 * 60..=9 * 60 + 30).contains(&minutes), "{minutes} minutes");
                assert!(out.0 < now);
            } else {
                assert!(user.is_active && user.deleted_at.is_none());
                assert_eq!(record.check_in_time.0.date_naive(), clock().today());
                assert!(open.insert(record.user_id), "one open record per user");
            }
        }
        let inactive = users.iter().filter(|user| !user.is_active).count();
        let deleted = users.iter().filter(|user| user.deleted_at.is_some()).count();
        assert!((25..=80).contains(&inactive), "{inactive} inactive of 1000");
        assert!((12..=50).contains(&deleted), "{deleted} deleted of 1000");
        assert!((20..=80).contains(&open.len()), "{} open of 1000", open.len());
        assert!(
            saturdays > 0 && saturdays * 50 < attendance.len(),
            "{saturdays} Saturday shifts"
        );
        // About 120 days * 5/7 working days, less absences and vacations, per user.
        let per_user = attendance.len() / users.len();
        assert!((55..=85).contains(&per_user), "{per_user} records per user");
        for user in &users {
            assert!(user.updated_at >= user.created_at);
            assert!(user.created_at.0 < now && user.updated_at.0 < now);
            assert_eq!(user.deleted_at.is_some(), user.deletion_batch_id.is_some());
        }
    }

    #[test]
    fn merged_streams_are_the_same_records_in_time_order() {
        let generator = Generator::new(3, 40, clock(), HASH);
        let merged: Vec<NewAttendanceRow> = generator.attendance_in_time_order(10..60).collect();
        assert!(
            merged
                .windows(2)
                .all(|pair| (pair[0].created_at, pair[0].id) < (pair[1].created_at, pair[1].id))
        );
        let mut by_user: Vec<NewAttendanceRow> = (10..60).flat_map(|index| generator.attendance(index)).collect();
        by_user.sort_by_key(|record| (record.created_at, record.id));
        assert_eq!(merged, by_user);
        assert_eq!(generator.attendance_in_time_order(5..5).count(), 0);
    }

    #[test]
    fn one_day_of_history_still_works() {
        let (users, attendance) = rows(1, 1, 200);
        assert_eq!(users.len(), 200);
        assert!(attendance.iter().all(|record| record.check_in_time.0 < clock().now()));
    }
}
