//! Writing the stream: bounded batches handed to `repo_diesel::bulk` (binary COPY on PostgreSQL,
//! multi-row INSERT on SQLite), the whole run in one transaction: `--reset`, the check for
//! another seed, then the users of `0..--users` not yet present, then their attendance.

use std::time::{Duration, Instant};

use database::DbConnection;
use database::sql_types::DbUuid;
use repo::RepoError;
use repo_diesel::bulk::{self, DomainPattern, NewAttendanceRow, NewUserRow, Purged};

use crate::generate::{self, Clock, EMAIL_DOMAIN_PREFIX, EMAIL_DOMAIN_SUFFIX, Generator};
use crate::progress::Progress;
use crate::{SeedConfig, SeedError, SeedReport, TableLoad};

/// Rows held before they are written: a batch is the only place rows accumulate.
pub const BATCH_ROWS: usize = 20_000;

/// Users whose attendance is merged into one time-ordered stream. The indexes on `id` (UUIDv7)
/// and `(created_at, id)` then take each group's records in key order, one sweep per group
/// rather than one per user: about a third faster on both backends, for a few hundred bytes
/// of generator state per user.
pub const MERGE_USERS: usize = 16_384;

/// On SQLite, records of the time-ordered stream are written in windows of this many, each
/// sorted by user and check-in: the `(user_id, check_in_time)` index then takes one sweep per
/// window instead of one per day, while the windows' ids and `created_at` keys stay in a narrow
/// range that fits in the page cache. Measured on a million records: 16.2 s against 18.4 s and
/// 16.3 s against 19.3 s, alternating runs; 200,000 was no faster and costs 12 MiB more. On
/// PostgreSQL it made no difference within the noise, so records go in time order there.
pub const SQLITE_WINDOW_ROWS: usize = 100_000;

/// Users read per page, and removed per statement: a page's cascade stays well inside the default
/// 30 s statement timeout even at the longest history (`--days 3650`, about 2,600 records a user,
/// so about 260,000 records per statement).
const RESET_PAGE: u32 = 100;

/// A bounded buffer: rows are pushed one at a time and handed to `flush` whenever `capacity` of
/// them are waiting, so no more than `capacity` rows are ever held.
#[derive(Debug)]
pub struct Batch<T> {
    rows: Vec<T>,
    capacity: usize,
    written: u64,
}

impl<T> Batch<T> {
    /// An empty batch of at most `capacity` rows (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            rows: Vec::with_capacity(capacity),
            capacity,
            written: 0,
        }
    }

    /// Adds `row`, flushing the batch when it is full.
    pub fn push<E>(&mut self, row: T, flush: &mut impl FnMut(&[T]) -> Result<usize, E>) -> Result<(), E> {
        self.rows.push(row);
        if self.rows.len() >= self.capacity {
            self.flush(flush)?;
        }
        Ok(())
    }

    /// Writes what is left.
    pub fn flush<E>(&mut self, flush: &mut impl FnMut(&[T]) -> Result<usize, E>) -> Result<(), E> {
        if !self.rows.is_empty() {
            let written = flush(&self.rows)?;
            self.written += u64::try_from(written).unwrap_or(u64::MAX);
            self.rows.clear();
        }
        Ok(())
    }

    /// Rows written so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// Runs the seed in one transaction on `connection`: removes seed-made users when `reset` asks,
/// refuses data of another seed, then writes the users of `0..config.users` that are not there
/// yet (a top-up; nothing on a re-run) and their attendance. Any error rolls the whole run back.
pub fn seed_database(
    connection: &mut DbConnection,
    config: &SeedConfig,
    clock: Clock,
    password_hash: &str,
    progress: &mut dyn Progress,
) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let mut report = bulk::with_bulk_settings(connection, |connection| {
        database::transaction::write_transaction::<_, SeedError>(connection, |connection| {
            let removed = if config.reset {
                remove_seed_users(connection)?
            } else {
                Purged::default()
            };
            refuse_other_seeds(connection, config.seed)?;
            let present = present_users(connection, config)?;
            let existing = present.iter().filter(|&&present| present).count();
            let generator = Generator::new(config.seed, config.days, clock, password_hash);
            let (users, attendance) = write(&generator, &present, progress, connection)?;
            Ok(SeedReport {
                config: *config,
                today: clock.today(),
                dry_run: false,
                existing_users: u64::try_from(existing).unwrap_or(u64::MAX),
                removed,
                users,
                attendance,
                elapsed: Duration::ZERO,
            })
        })
    })?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Generates what a seed of an empty database would write, and writes nothing.
#[must_use]
pub fn dry_run(config: &SeedConfig, clock: Clock, progress: &mut dyn Progress) -> SeedReport {
    let started = Instant::now();
    let generator = Generator::new(config.seed, config.days, clock, "$argon2id$dry-run");
    let counted = write(&generator, &vec![false; config.users as usize], progress, &mut Counter);
    let (users, attendance) = match counted {
        Ok(counts) => counts,
        Err(never) => match never {},
    };
    SeedReport {
        config: *config,
        today: clock.today(),
        dry_run: true,
        existing_users: 0,
        removed: Purged::default(),
        users,
        attendance,
        elapsed: started.elapsed(),
    }
}

/// Where batches go: the database, or a counter for dry runs and tests.
trait Sink {
    type Error;
    /// How many records to sort by user before writing them (1: none).
    fn window(&self) -> usize {
        1
    }
    fn users(&mut self, rows: &[NewUserRow<'_>]) -> Result<usize, Self::Error>;
    fn attendance(&mut self, rows: &[NewAttendanceRow]) -> Result<usize, Self::Error>;
}

impl Sink for DbConnection {
    type Error = RepoError;

    fn window(&self) -> usize {
        match self {
            DbConnection::Pg(_) => 1,
            DbConnection::Sqlite(_) => SQLITE_WINDOW_ROWS,
        }
    }

    fn users(&mut self, rows: &[NewUserRow<'_>]) -> Result<usize, RepoError> {
        bulk::insert_users(self, rows)
    }

    fn attendance(&mut self, rows: &[NewAttendanceRow]) -> Result<usize, RepoError> {
        bulk::insert_attendance(self, rows)
    }
}

/// Counts rows and writes nothing.
struct Counter;

impl Sink for Counter {
    type Error = std::convert::Infallible;

    fn users(&mut self, rows: &[NewUserRow<'_>]) -> Result<usize, Self::Error> {
        Ok(rows.len())
    }

    fn attendance(&mut self, rows: &[NewAttendanceRow]) -> Result<usize, Self::Error> {
        Ok(rows.len())
    }
}

/// Streams the users whose index is not `present`, then their attendance (so every user is
/// written before its records), through bounded batches into `sink`.
fn write<S: Sink + ?Sized>(
    generator: &Generator<'_>,
    present: &[bool],
    progress: &mut dyn Progress,
    sink: &mut S,
) -> Result<(TableLoad, TableLoad), S::Error> {
    let missing = || {
        (0_u64..)
            .zip(present)
            .filter(|(_, present)| !**present)
            .map(|(index, _)| index)
    };
    let total = missing().count() as u64;

    let started = Instant::now();
    progress.start("users", total);
    let mut batch = Batch::new(BATCH_ROWS);
    let mut flush = |rows: &[_]| sink.users(rows);
    for (done, index) in (1..).zip(missing()) {
        batch.push(generator.user(index), &mut flush)?;
        progress.update(done, done);
    }
    let user_load = finish_phase(&mut batch, &mut flush, progress, total, started)?;

    let started = Instant::now();
    progress.start("attendance", total);
    let mut batch = Batch::new(BATCH_ROWS);
    let window_rows = sink.window().max(1);
    let mut flush = |rows: &[_]| sink.attendance(rows);
    let mut generated = 0;
    let mut done = 0;
    let mut window = Vec::with_capacity(window_rows);
    let mut indices = missing();
    loop {
        let group: Vec<u64> = indices.by_ref().take(MERGE_USERS).collect();
        if group.is_empty() {
            break;
        }
        let size = group.len() as u64;
        // The merged stream is in time order: how far it is into the window tells how far
        // the group is.
        for record in generator.attendance_in_time_order(group) {
            if generated % 4096 == 0 {
                let into_group = size * generator.window_permille(record.created_at.0) / 1000;
                progress.update(done + into_group.min(size), generated);
            }
            window.push(record);
            if window.len() >= window_rows {
                write_sorted(&mut window, &mut batch, &mut flush)?;
            }
            generated += 1;
        }
        write_sorted(&mut window, &mut batch, &mut flush)?;
        done += size;
        progress.update(done, generated);
    }
    let attendance_load = finish_phase(&mut batch, &mut flush, progress, total, started)?;
    Ok((user_load, attendance_load))
}

/// Ends a table's phase: writes what is left of `batch`, completes its progress and says how
/// many rows it wrote in how long.
fn finish_phase<T, E>(
    batch: &mut Batch<T>,
    flush: &mut impl FnMut(&[T]) -> Result<usize, E>,
    progress: &mut dyn Progress,
    total: u64,
    started: Instant,
) -> Result<TableLoad, E> {
    batch.flush(flush)?;
    progress.update(total, batch.written());
    progress.finish();
    Ok(TableLoad {
        rows: batch.written(),
        elapsed: started.elapsed(),
    })
}

/// Pushes the records of `window` into `batch` sorted by user and check-in, leaving it empty.
fn write_sorted<E>(
    window: &mut Vec<NewAttendanceRow>,
    batch: &mut Batch<NewAttendanceRow>,
    flush: &mut impl FnMut(&[NewAttendanceRow]) -> Result<usize, E>,
) -> Result<(), E> {
    window.sort_unstable_by_key(|record| (record.user_id.0, record.check_in_time.0));
    for record in window.drain(..) {
        batch.push(record, flush)?;
    }
    Ok(())
}

/// Which of users `0..config.users` of the seed are in the database (soft-deleted ones too):
/// one flag per user, at most [`crate::MAX_USERS`] of them, read page by page.
fn present_users(connection: &mut DbConnection, config: &SeedConfig) -> Result<Vec<bool>, RepoError> {
    let mut present = vec![false; config.users as usize];
    let domain = generate::email_domain(config.seed);
    let pattern = DomainPattern {
        prefix: &domain,
        suffix: "",
    };
    let mut after = None;
    loop {
        let page = bulk::users_in_domains(connection, pattern, None, after, RESET_PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(present);
        };
        after = Some(*last);
        for (_, email) in &page {
            if let Some((seed, index)) = generate::parse_seed_email(email)
                && seed == config.seed
                && let Some(flag) = usize::try_from(index).ok().and_then(|index| present.get_mut(index))
            {
                *flag = true;
            }
        }
    }
}

/// Deletes every seed-made user of any seed (attendance follows by `ON DELETE CASCADE`): the
/// users whose email is one the generator makes, read page by page.
fn remove_seed_users(connection: &mut DbConnection) -> Result<Purged, RepoError> {
    let pattern = DomainPattern {
        prefix: EMAIL_DOMAIN_PREFIX,
        suffix: EMAIL_DOMAIN_SUFFIX,
    };
    let mut removed = Purged::default();
    let mut after = None;
    loop {
        let page = bulk::users_in_domains(connection, pattern, None, after, RESET_PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(removed);
        };
        after = Some(*last);
        let ids: Vec<DbUuid> = page
            .iter()
            .filter(|(_, email)| generate::parse_seed_email(email).is_some())
            .map(|(id, _)| *id)
            .collect();
        let purged = bulk::purge_users(connection, &ids)?;
        removed.users += purged.users;
        removed.attendance += purged.attendance;
    }
}

/// Fails when seed-made users of another seed are present.
fn refuse_other_seeds(connection: &mut DbConnection, seed: u64) -> Result<(), SeedError> {
    let pattern = DomainPattern {
        prefix: EMAIL_DOMAIN_PREFIX,
        suffix: EMAIL_DOMAIN_SUFFIX,
    };
    let own = generate::email_domain(seed);
    let mut after = None;
    loop {
        // Paged: look-alike addresses that are not the seed's must not hide another seed's users.
        let page = bulk::users_in_domains(connection, pattern, Some(&own), after, RESET_PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(*last);
        if let Some((found, _)) = page.iter().find_map(|(_, email)| generate::parse_seed_email(email)) {
            return Err(SeedError::OtherSeed { requested: seed, found });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_bounded_and_lose_nothing() {
        let mut sizes = Vec::new();
        let mut batch = Batch::new(10);
        let mut flush = |rows: &[u32]| -> Result<usize, ()> {
            sizes.push(rows.len());
            Ok(rows.len())
        };
        for row in 0..25 {
            batch.push(row, &mut flush).expect("no error");
        }
        batch.flush(&mut flush).expect("no error");
        assert_eq!(batch.written(), 25);
        assert_eq!(sizes, [10, 10, 5]);
    }

    #[test]
    fn a_failed_flush_stops_the_stream() {
        let mut batch = Batch::new(3);
        let mut calls = 0;
        let mut flush = |_: &[u32]| {
            calls += 1;
            Err("refused")
        };
        assert_eq!(batch.push(1, &mut flush), Ok(()));
        assert_eq!(batch.push(2, &mut flush), Ok(()));
        assert_eq!(batch.push(3, &mut flush), Err("refused"));
        assert_eq!(calls, 1);
        assert_eq!(batch.written(), 0);
    }

    /// Records the size of every batch.
    #[derive(Default)]
    struct Sizes {
        users: Vec<usize>,
        attendance: Vec<usize>,
    }

    impl Sink for Sizes {
        type Error = ();

        fn users(&mut self, rows: &[NewUserRow<'_>]) -> Result<usize, ()> {
            self.users.push(rows.len());
            Ok(rows.len())
        }

        fn attendance(&mut self, rows: &[NewAttendanceRow]) -> Result<usize, ()> {
            self.attendance.push(rows.len());
            Ok(rows.len())
        }
    }

    /// Keeps every attendance record, and sorts by user in windows of `window`.
    struct Collect {
        window: usize,
        attendance: Vec<NewAttendanceRow>,
    }

    impl Sink for Collect {
        type Error = ();

        fn window(&self) -> usize {
            self.window
        }

        fn users(&mut self, rows: &[NewUserRow<'_>]) -> Result<usize, ()> {
            Ok(rows.len())
        }

        fn attendance(&mut self, rows: &[NewAttendanceRow]) -> Result<usize, ()> {
            self.attendance.extend_from_slice(rows);
            Ok(rows.len())
        }
    }

    #[test]
    fn windows_sorted_by_user_write_the_same_records() {
        let clock = Clock::at(chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("valid"));
        let generator = Generator::new(5, 60, clock, "$argon2id$x");
        let collect = |window| {
            let mut sink = Collect {
                window,
                attendance: Vec::new(),
            };
            write(&generator, &[false; 300], &mut crate::progress::Silent, &mut sink).expect("no error");
            sink.attendance
        };
        let in_time_order = collect(1);
        let windowed = collect(1_000);
        assert!(in_time_order.len() > 3_000, "{}", in_time_order.len());
        assert!(
            in_time_order
                .windows(2)
                .all(|pair| pair[0].created_at <= pair[1].created_at),
            "without windows, records come in time order"
        );
        for chunk in windowed.chunks(1_000) {
            assert!(
                chunk
                    .windows(2)
                    .all(|pair| (pair[0].user_id.0, pair[0].check_in_time.0)
                        <= (pair[1].user_id.0, pair[1].check_in_time.0)),
                "each window is sorted by user and check-in"
            );
        }
        let key = |record: &NewAttendanceRow| record.id.0;
        let mut expected = in_time_order.clone();
        let mut actual = windowed.clone();
        expected.sort_unstable_by_key(key);
        actual.sort_unstable_by_key(key);
        assert_eq!(actual, expected, "the same records, none lost or repeated");
    }

    #[test]
    fn a_dry_run_streams_in_bounded_batches() {
        let clock = Clock::at(chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("valid"));
        let config = SeedConfig::new(500, 200, 5, false).expect("valid");
        let generator = Generator::new(5, 200, clock, "$argon2id$x");
        let mut sizes = Sizes::default();
        let (users, attendance) =
            write(&generator, &[false; 500], &mut crate::progress::Silent, &mut sizes).expect("no error");
        assert_eq!(users.rows, 500);
        assert_eq!(sizes.users, [500]);
        assert!(
            attendance.rows > 2 * u64::try_from(BATCH_ROWS).expect("small"),
            "{}",
            attendance.rows
        );
        assert!(sizes.attendance.iter().all(|&size| size <= BATCH_ROWS));
        assert_eq!(
            sizes.attendance.iter().sum::<usize>(),
            usize::try_from(attendance.rows).expect("small")
        );
        let report = dry_run(&config, clock, &mut crate::progress::Silent);
        assert_eq!((report.users.rows, report.attendance.rows), (500, attendance.rows));
    }
}
