//! Point-in-time recovery end to end (`ops::pitr`), in the shape of PostgreSQL's own
//! `src/test/recovery/t/003_recovery_targets.pl`: a private primary that archives its WAL, a base
//! backup, rows committed before and after a target time, and restores into new clusters on other
//! ports. The recovery to the target must hold the rows committed before it and none after; a
//! second recovery to a later target (the control) must hold both, which proves the test can tell
//! the two apart.

use std::io::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use ops::pitr::{self, RecoveryPlan};

use crate::cluster::{self, PrivateCluster};

/// Rows committed before the target: 5 transactions of 20.
const A_TRANSACTIONS: i32 = 5;
const A_ROWS_PER_TRANSACTION: i32 = 20;
/// Rows committed after the target and before the control's target: 3 transactions of 10.
const B_TRANSACTIONS: i32 = 3;
const B_ROWS_PER_TRANSACTION: i32 = 10;
/// Rows committed after the control's target, so that its replay reaches a commit after it
/// (without one, PostgreSQL 13+ stops with "recovery ended before configured recovery target
/// was reached").
const C_ROWS: i32 = 5;
/// The pause between a target time and the next commit, so that the timestamps differ clearly.
const GAP: Duration = Duration::from_millis(1100);
/// How long the switched-out WAL segment may take to reach the archive.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restored server may take to finish recovery and promote.
const PROMOTE_TIMEOUT: Duration = Duration::from_mins(1);
const POLL: Duration = Duration::from_millis(50);

#[derive(QueryableByName)]
struct At {
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

#[derive(QueryableByName)]
struct Archiver {
    #[diesel(sql_type = Nullable<Text>)]
    last_archived_wal: Option<String>,
    #[diesel(sql_type = BigInt)]
    failed_count: i64,
    #[diesel(sql_type = Nullable<Text>)]
    last_failed_wal: Option<String>,
}

#[derive(QueryableByName)]
struct InRecovery {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    in_recovery: bool,
}

/// The rows of each batch in a restored cluster.
#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    a: i64,
    #[diesel(sql_type = BigInt)]
    b: i64,
    #[diesel(sql_type = BigInt)]
    c: i64,
}

#[test]
fn point_in_time_recovery_restores_rows_before_the_target_and_not_after() {
    let work = PrivateCluster::scratch_directory();
    let archive = work.path().join("archive");
    std::fs::create_dir(&archive).expect("the WAL archive directory");
    cluster::hand_to_postgres(&archive);
    let archive_command = pitr::archive_command(&archive).expect("an archive path without a line break");
    let primary = PrivateCluster::start_with_settings(&[
        ("wal_level", "replica"),
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
    ]);
    let mut admin = primary.admin();
    admin
        .batch_execute("CREATE TABLE pitr_rows (id integer PRIMARY KEY, batch text NOT NULL)")
        .expect("create the table");

    let base = work.path().join("base");
    let backup =
        pitr::base_backup(Some(primary.bin_dir()), &primary.url("postgres"), &base).expect("a verified base backup");

    insert_batch(&mut admin, "A", 0, A_TRANSACTIONS, A_ROWS_PER_TRANSACTION);
    let target = server_now(&mut admin);
    thread::sleep(GAP);
    insert_batch(&mut admin, "B", 1000, B_TRANSACTIONS, B_ROWS_PER_TRANSACTION);
    let control_target = server_now(&mut admin);
    thread::sleep(GAP);
    insert_batch(&mut admin, "C", 2000, 1, C_ROWS);
    let segment = switch_wal_and_wait_until_archived(&mut admin, &primary, &archive);

    let (at_target, at_target_took) = recover(&base, &archive, target);
    let (at_control, at_control_took) = recover(&base, &archive, control_target);

    let _ = writeln!(
        std::io::stderr(),
        "pitr: base backup {} bytes ({:.1} MiB) in {:.2} s, started {} ({:?}); last archived segment {segment}\n\
         pitr: recovery to {} (after A, before B) took {:.2} s: {at_target:?}\n\
         pitr: recovery to {} (after B, before C) took {:.2} s: {at_control:?}",
        backup.size_bytes,
        mib(backup.size_bytes),
        backup.duration.as_secs_f64(),
        backup.start_time_label,
        backup.started_at,
        target.to_rfc3339(),
        at_target_took.as_secs_f64(),
        control_target.to_rfc3339(),
        at_control_took.as_secs_f64(),
    );

    let a_rows = i64::from(A_TRANSACTIONS * A_ROWS_PER_TRANSACTION);
    let b_rows = i64::from(B_TRANSACTIONS * B_ROWS_PER_TRANSACTION);
    assert!(backup.size_bytes > 0, "{backup:?}");
    assert!(
        backup.started_at.is_some_and(|started| started <= target),
        "the backup's start {:?} must be known and before the target {target}",
        backup.start_time_label
    );
    assert_eq!(
        at_target,
        Counts { a: a_rows, b: 0, c: 0 },
        "recovery to {target} must restore every row committed before it and none committed after it"
    );
    assert_eq!(
        at_control,
        Counts {
            a: a_rows,
            b: b_rows,
            c: 0
        },
        "the control recovery to {control_target} must restore the rows committed before it, B included"
    );
}

/// `transactions` transactions of `rows` rows of `batch`, ids from `first_id + 1`, each committed.
fn insert_batch(connection: &mut PgConnection, batch: &str, first_id: i32, transactions: i32, rows: i32) {
    for transaction in 0..transactions {
        let from = first_id + transaction * rows + 1;
        let to = from + rows - 1;
        connection
            .batch_execute(&format!(
                "INSERT INTO pitr_rows (id, batch) SELECT g, '{batch}' FROM generate_series({from}, {to}) AS g"
            ))
            .expect("insert a batch of rows");
    }
}

/// The server's clock, read after the last commit returned.
fn server_now(connection: &mut PgConnection) -> DateTime<FixedOffset> {
    diesel::sql_query("SELECT now() AS at")
        .get_result::<At>(connection)
        .expect("SELECT now()")
        .at
        .fixed_offset()
}

/// `pg_switch_wal()`, then waits until `pg_stat_archiver` reports the switched-out segment (or a
/// later one) archived and the file is in the archive. Returns the segment's name.
fn switch_wal_and_wait_until_archived(
    connection: &mut PgConnection,
    primary: &PrivateCluster,
    archive: &Path,
) -> String {
    let segment = diesel::sql_query("SELECT pg_walfile_name(pg_switch_wal()) AS name")
        .get_result::<Name>(connection)
        .expect("pg_switch_wal()")
        .name
        .expect("the name of the switched-out segment");
    let deadline = Instant::now() + ARCHIVE_TIMEOUT;
    loop {
        let archiver = diesel::sql_query(
            "SELECT last_archived_wal::text AS last_archived_wal, failed_count, last_failed_wal::text AS \
             last_failed_wal FROM pg_stat_archiver",
        )
        .get_result::<Archiver>(connection)
        .expect("read pg_stat_archiver");
        let reached = archiver
            .last_archived_wal
            .as_deref()
            .is_some_and(|last| last >= segment.as_str());
        if reached && archive.join(&segment).is_file() {
            return segment;
        }
        assert!(
            Instant::now() < deadline,
            "segment {segment} was not archived within {ARCHIVE_TIMEOUT:?}: last archived {:?}, {} failure(s), last \
             failed {:?}\n--- server log ---\n{}",
            archiver.last_archived_wal,
            archiver.failed_count,
            archiver.last_failed_wal,
            primary.log_tail()
        );
        thread::sleep(POLL);
    }
}

/// Restores `base` into a new cluster recovering to `target`, waits until it promoted, and counts
/// its rows; the cluster is stopped and removed on return. Returns the counts and how long the
/// preparation, start, replay and promotion took together.
fn recover(base: &Path, archive: &Path, target: DateTime<FixedOffset>) -> (Counts, Duration) {
    let directory = PrivateCluster::scratch_directory();
    let data = directory.path().join("data");
    let started = Instant::now();
    let prepared = pitr::prepare_recovery(&RecoveryPlan {
        base_backup: base.to_path_buf(),
        wal_archive: archive.to_path_buf(),
        data_dir: data.clone(),
        target_time: target,
        port: None,
    })
    .expect("prepare the recovery");
    assert!(
        prepared.next_steps.iter().any(|step| step.program.ends_with("pg_ctl")),
        "{prepared:?}"
    );
    let restored = PrivateCluster::start_on_data_dir(directory, data);
    let mut connection = wait_until_promoted(&restored);
    let took = started.elapsed();
    let stop_point = restored
        .log_since(0)
        .lines()
        .find(|line| line.contains("recovery stopping"))
        .map(str::to_owned);
    let _ = writeln!(
        std::io::stderr(),
        "pitr: restored to {target}: {}",
        stop_point
            .as_deref()
            .unwrap_or("(no \"recovery stopping\" line in the server log)")
    );
    let counts = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE batch = 'A') AS a, count(*) FILTER (WHERE batch = 'B') AS b, \
         count(*) FILTER (WHERE batch = 'C') AS c FROM pitr_rows",
    )
    .get_result::<Counts>(&mut connection)
    .unwrap_or_else(|error| {
        panic!(
            "count the restored rows: {error}\n--- server log ---\n{}",
            restored.log_tail()
        )
    });
    (counts, took)
}

/// Polls `pg_is_in_recovery()` until it is false; returns the connection that saw it.
fn wait_until_promoted(restored: &PrivateCluster) -> PgConnection {
    let deadline = Instant::now() + PROMOTE_TIMEOUT;
    let mut connection: Option<PgConnection> = None;
    loop {
        let status = match connection.as_mut() {
            None => match PgConnection::establish(&restored.url("postgres")) {
                Ok(established) => {
                    connection = Some(established);
                    continue;
                }
                Err(error) => format!("cannot connect: {error}"),
            },
            Some(open) => {
                match diesel::sql_query("SELECT pg_is_in_recovery() AS in_recovery").get_result::<InRecovery>(open) {
                    Ok(InRecovery { in_recovery: false }) => return connection.expect("the connection just used"),
                    Ok(InRecovery { in_recovery: true }) => "still in recovery".to_owned(),
                    Err(error) => {
                        connection = None;
                        format!("pg_is_in_recovery() failed: {error}")
                    }
                }
            }
        };
        assert!(
            Instant::now() < deadline,
            "the restored server did not finish recovery and promote within {PROMOTE_TIMEOUT:?} ({status})\n--- \
             server log ---\n{}",
            restored.log_since(0)
        );
        thread::sleep(POLL);
    }
}

#[expect(clippy::cast_precision_loss, reason = "a backup's size in MiB, for a report")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
