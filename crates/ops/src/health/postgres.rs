//! The PostgreSQL checks: queries over `pg_stat_activity`, `pg_locks`, `pg_stat_statements`,
//! `pg_stat_replication`, `pg_stat_database`, the index catalogs and `pg_database`, each readable
//! by a role with `pg_monitor`. Every value is bound; identifiers come from the catalog, quoted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable, Text};
use serde::{Deserialize, Serialize};

use super::{
    CheckName, CheckResult, Direction, HealthConfig, PerfData, Status, Thresholds, Unit, duration_words, float,
};

/// Runs one PostgreSQL check.
pub(super) fn run(
    connection: &mut PgConnection,
    check: CheckName,
    health: &HealthConfig,
    thresholds: Thresholds,
    now: DateTime<Utc>,
) -> CheckResult {
    let result = match check {
        CheckName::Connections => connections(connection, thresholds),
        CheckName::LongRunning => sessions(connection, check, thresholds, LONG_RUNNING, "active statement"),
        CheckName::IdleInTransaction => sessions(
            connection,
            check,
            thresholds,
            IDLE_IN_TRANSACTION,
            "session idle in transaction",
        ),
        CheckName::LockWaits => sessions(connection, check, thresholds, LOCK_WAITS, "wait for a lock"),
        CheckName::SlowStatements => slow_statements(connection, thresholds, health.slow_statements_min_calls),
        CheckName::ReplicationLag => replication_lag(connection, thresholds, health, now),
        CheckName::CacheHit => cache_hit(connection, thresholds, health.cache_hit_min_blocks),
        CheckName::InvalidIndexes => invalid_indexes(connection, thresholds),
        CheckName::UnusedIndexes => unused_indexes(connection, thresholds, health.unused_indexes_max_scans),
        CheckName::Wraparound => wraparound(connection, thresholds),
        other => Ok(CheckResult::without_value(
            other,
            thresholds,
            Status::Unknown,
            format!("{other} is not a PostgreSQL check"),
        )),
    };
    result.unwrap_or_else(|error| CheckResult::could_not_run(check, thresholds, &error))
}

/// The database's name and size, for `growth`.
pub(super) fn database_size(connection: &mut PgConnection) -> QueryResult<(String, i64)> {
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let size: Size = diesel::sql_query(
        "SELECT current_database()::text AS name, pg_catalog.pg_database_size(current_database())::bigint AS bytes",
    )
    .get_result(connection)?;
    Ok((size.name, size.bytes))
}

/// Where the database is as the server sees it (its address and port, or `local` over a Unix
/// socket, and the database's name), for `growth` run without a [`database::DatabaseTarget`].
pub(super) fn server_key(connection: &mut PgConnection) -> QueryResult<String> {
    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = Text)]
        key: String,
    }
    let key: Key = diesel::sql_query(
        "SELECT 'server ' || coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')
                  || '/' || current_database() AS key",
    )
    .get_result(connection)?;
    Ok(key.key)
}

#[derive(QueryableByName)]
struct ConnectionCounts {
    #[diesel(sql_type = BigInt)]
    used: i64,
    /// Sessions whose backend type this role may not see (without `pg_read_all_stats`).
    #[diesel(sql_type = BigInt)]
    hidden: i64,
    #[diesel(sql_type = BigInt)]
    max_connections: i64,
    #[diesel(sql_type = BigInt)]
    reserved: i64,
}

/// `connections`: client backends of the whole server against `max_connections` minus the slots
/// reserved for superusers (and, from PostgreSQL 16, for `pg_use_reserved_connections`): the
/// limit at which an ordinary role is refused. Superusers may go past 100 %.
fn connections(connection: &mut PgConnection, thresholds: Thresholds) -> QueryResult<CheckResult> {
    let row: ConnectionCounts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::bigint AS used,
                (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type IS NULL)::bigint AS hidden,
                current_setting('max_connections')::bigint AS max_connections,
                current_setting('superuser_reserved_connections')::bigint
                  + coalesce(current_setting('reserved_connections', true), '0')::bigint AS reserved",
    )
    .get_result(connection)?;
    let usable = row.max_connections - row.reserved;
    if usable <= 0 {
        return Ok(CheckResult::without_value(
            CheckName::Connections,
            thresholds,
            Status::Unknown,
            format!(
                "max_connections {} leaves no slot beside {} reserved ones",
                row.max_connections, row.reserved
            ),
        ));
    }
    let percent = float(row.used) * 100.0 / float(usable);
    let mut result = CheckResult::measured(
        CheckName::Connections,
        thresholds,
        percent,
        format!(
            "{} of {usable} connections in use ({percent:.1} %; max_connections {}, {} reserved)",
            row.used, row.max_connections, row.reserved
        ),
    );
    if row.hidden > 0 && result.status == Status::Ok {
        // Without pg_read_all_stats, other roles' sessions show no backend type, and neither
        // do background processes: which of them are connections cannot be told.
        result.status = Status::Unknown;
        result.summary = format!(
            "{} (at least); {} other session(s) hidden from this role may be connections too: {READ_ALL_STATS}",
            result.summary, row.hidden
        );
    }
    result.perfdata.push(PerfData {
        label: "connections_used".to_owned(),
        subject: None,
        value: float(row.used),
        unit: Unit::Count,
        thresholds: None,
        direction: Direction::Above,
        min: Some(0.0),
        max: Some(float(usable)),
    });
    Ok(result)
}

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Nullable<Double>)]
    seconds: Option<f64>,
    /// Another role's session this role may not inspect: without `pg_read_all_stats`,
    /// `pg_stat_activity` shows its pid, database and role but NULL for its `state`, its
    /// `backend_type` and its times.
    #[diesel(sql_type = Bool)]
    hidden: bool,
}

/// The privilege without which other roles' sessions are hidden, for messages.
const READ_ALL_STATS: &str = "grant pg_read_all_stats, part of pg_monitor";

/// Active statements of this database, longest first (this session excepted), and the sessions
/// of this database hidden from this role (their state and times read as NULL).
const LONG_RUNNING: &str = "SELECT pid, coalesce(usename::text, '') AS role,
        extract(epoch FROM clock_timestamp() - query_start)::float8 AS seconds,
        (state IS NULL AND backend_type IS NULL) AS hidden
    FROM pg_catalog.pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND ((state = 'active' AND backend_type = 'client backend') OR (state IS NULL AND backend_type IS NULL))
    ORDER BY seconds DESC NULLS LAST";

/// Sessions of this database idle inside a transaction, longest first, and the sessions of this
/// database hidden from this role.
const IDLE_IN_TRANSACTION: &str = "SELECT pid, coalesce(usename::text, '') AS role,
        extract(epoch FROM clock_timestamp() - state_change)::float8 AS seconds,
        (state IS NULL AND backend_type IS NULL) AS hidden
    FROM pg_catalog.pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND (state IN ('idle in transaction', 'idle in transaction (aborted)') OR (state IS NULL AND backend_type IS NULL))
    ORDER BY seconds DESC NULLS LAST";

/// Sessions of this database waiting for a lock, longest wait first (`pg_locks.waitstart`,
/// PostgreSQL 14+). `pg_locks` and the pid, database and role of `pg_stat_activity` are visible
/// to every role, so nothing here is hidden.
const LOCK_WAITS: &str = "SELECT l.pid, coalesce(a.usename::text, '') AS role,
        max(extract(epoch FROM clock_timestamp() - l.waitstart))::float8 AS seconds,
        false AS hidden
    FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
    WHERE NOT l.granted AND l.waitstart IS NOT NULL AND a.datname = current_database()
    GROUP BY l.pid, a.usename
    ORDER BY seconds DESC NULLS LAST";

/// `long_running`, `idle_in_transaction`, `lock_waits`: the longest duration among the sessions
/// `query` lists. Sessions hidden from this role (another role's, without `pg_read_all_stats`)
/// cannot be timed: with any of them and nothing visible past a threshold, the check is UNKNOWN
/// naming the privilege, never OK.
fn sessions(
    connection: &mut PgConnection,
    check: CheckName,
    thresholds: Thresholds,
    query: &str,
    what: &str,
) -> QueryResult<CheckResult> {
    let rows: Vec<Session> = diesel::sql_query(query).load(connection)?;
    let (hidden, visible): (Vec<Session>, Vec<Session>) = rows.into_iter().partition(|row| row.hidden);
    let longest = visible.iter().filter_map(|row| row.seconds).fold(0.0_f64, f64::max);
    let over: Vec<String> = visible
        .iter()
        .filter(|row| {
            row.seconds
                .is_some_and(|seconds| thresholds.classify(seconds, Direction::Above) != Status::Ok)
        })
        .take(5)
        .map(|row| {
            format!(
                "pid {} ({}) {}",
                row.pid,
                if row.role.is_empty() { "?" } else { &row.role },
                duration_words(row.seconds.unwrap_or_default())
            )
        })
        .collect();
    let summary = if visible.is_empty() {
        format!("no {what} in this database")
    } else if over.is_empty() {
        format!("{} × {what}, the longest {}", visible.len(), duration_words(longest))
    } else {
        format!(
            "{} × {what}, the longest {}; past the threshold: {}",
            visible.len(),
            duration_words(longest),
            over.join(", ")
        )
    };
    let mut result = CheckResult::measured(check, thresholds, longest, summary);
    if !hidden.is_empty() {
        let mut roles: Vec<&str> = hidden.iter().map(|row| row.role.as_str()).collect();
        roles.sort_unstable();
        roles.dedup();
        result = result.at_least(Status::Unknown);
        let _ = write!(
            result.summary,
            "; {} other session(s) of this database (roles {}) hidden from this role: their state and times \
             read as NULL ({READ_ALL_STATS})",
            hidden.len(),
            roles.join(", ")
        );
    }
    Ok(result)
}

/// `slow_statements`: the highest mean execution time among statements of this database called at
/// least `min_calls` times, from `pg_stat_statements`; UNKNOWN when it is not installed here.
fn slow_statements(connection: &mut PgConnection, thresholds: Thresholds, min_calls: i64) -> QueryResult<CheckResult> {
    #[derive(QueryableByName)]
    struct Schema {
        #[diesel(sql_type = Text)]
        schema: String,
    }
    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = BigInt)]
        calls: i64,
        #[diesel(sql_type = Double)]
        mean_seconds: f64,
        #[diesel(sql_type = Text)]
        query: String,
    }
    let name = CheckName::SlowStatements;
    let schema: Option<Schema> = diesel::sql_query(
        "SELECT n.nspname::text AS schema FROM pg_catalog.pg_extension e
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1",
    )
    .bind::<Text, _>("pg_stat_statements")
    .get_result(connection)
    .optional()?;
    let Some(schema) = schema else {
        return Ok(CheckResult::without_value(
            name,
            thresholds,
            Status::Unknown,
            "pg_stat_statements is not installed in this database (CREATE EXTENSION pg_stat_statements, with it in \
             shared_preload_libraries)",
        ));
    };
    let statements: Vec<Statement> = diesel::sql_query(format!(
        "SELECT coalesce(s.queryid::text, '') AS id, s.calls::bigint AS calls,
                (s.mean_exec_time / 1000)::float8 AS mean_seconds,
                left(regexp_replace(coalesce(s.query, ''), '\\s+', ' ', 'g'), 80) AS query
         FROM {}.pg_stat_statements s
         WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
           AND s.calls >= $1
         ORDER BY s.mean_exec_time DESC LIMIT 5",
        crate::sql::quote_identifier(&schema.schema)
    ))
    .bind::<BigInt, _>(min_calls)
    .load(connection)?;
    let slowest = statements.first().map_or(0.0, |statement| statement.mean_seconds);
    let over: Vec<String> = statements
        .iter()
        .filter(|statement| thresholds.classify(statement.mean_seconds, Direction::Above) != Status::Ok)
        .map(|statement| {
            format!(
                "queryid {} mean {:.3} s over {} calls: {}",
                statement.id, statement.mean_seconds, statement.calls, statement.query
            )
        })
        .collect();
    let summary = if statements.is_empty() {
        format!("no statement with at least {min_calls} calls")
    } else if over.is_empty() {
        format!("the slowest mean is {slowest:.3} s (statements with at least {min_calls} calls)")
    } else {
        format!("slow on average: {}", over.join("; "))
    };
    Ok(CheckResult::measured(name, thresholds, slowest, summary))
}

#[derive(QueryableByName)]
struct WalSender {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    state: Option<String>,
    #[diesel(sql_type = Nullable<Double>)]
    replay_lag: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    bytes_behind: Option<f64>,
    #[diesel(sql_type = Nullable<Text>)]
    flush_lsn: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    replay_lsn: Option<String>,
}

/// What a walsender of `pg_stat_replication` is, as far as this role can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalSenderKind {
    /// A standby: it reports the position it has replayed.
    Standby,
    /// Another role's walsender seen without `pg_read_all_stats`: every column but its pid reads
    /// as NULL, its `state` too, so it cannot be told from a standby.
    Hidden,
    /// A base backup being sent (`state` `backup`).
    BaseBackup,
    /// A WAL receiver that replays nothing: `pg_receivewal`, or the WAL stream of `pg_basebackup
    /// --wal-method=stream`. It reports how far it has flushed, never a replay position.
    NotAReplica,
    /// Connected with a visible state, but no position reported yet.
    Unreported,
}

impl WalSender {
    /// Tells a standby from what is not one: a replay position missing because this role may not
    /// see it (the `state` is hidden too) is not one missing because nothing replays.
    fn kind(&self) -> WalSenderKind {
        match (self.state.as_deref(), &self.flush_lsn, &self.replay_lsn) {
            (None, _, _) => WalSenderKind::Hidden,
            (Some("backup"), _, _) => WalSenderKind::BaseBackup,
            (Some(_), _, Some(_)) => WalSenderKind::Standby,
            (Some(_), Some(_), None) => WalSenderKind::NotAReplica,
            (Some(_), None, None) => WalSenderKind::Unreported,
        }
    }
}

/// A replica's replay position while it is behind, and since when it has not moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    replay_lsn: String,
    since: DateTime<Utc>,
}

/// One standby, measured.
struct StandbyLag {
    status: Status,
    lag: f64,
    note: String,
    /// Its replay position while it is behind, kept for the next run.
    position: Option<Position>,
    perfdata: [PerfData; 2],
}

/// `replication_lag`: per standby in `pg_stat_replication`, the larger of `replay_lag` and the
/// time its replay position has stood still while WAL was pending (`replay_lag` turns NULL when
/// the primary is idle, even for a paused replica). A replica behind with no `replay_lag` and no
/// earlier position is at least WARNING: its lag cannot be timed until the next run. Base backups
/// and WAL receivers that replay nothing are not replicas and are skipped; walsenders hidden from
/// this role make the check UNKNOWN. With `HEALTH_REPLICAS_EXPECTED`, fewer standbys streaming
/// than expected is CRITICAL: without it a replica that vanished is not noticed.
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the walsenders: their kinds, the standbys' lag, the expected count and the notes"
)]
fn replication_lag(
    connection: &mut PgConnection,
    thresholds: Thresholds,
    health: &HealthConfig,
    now: DateTime<Utc>,
) -> QueryResult<CheckResult> {
    #[derive(QueryableByName)]
    struct Recovery {
        #[diesel(sql_type = Bool)]
        in_recovery: bool,
    }
    let name = CheckName::ReplicationLag;
    let recovery: Recovery =
        diesel::sql_query("SELECT pg_catalog.pg_is_in_recovery() AS in_recovery").get_result(connection)?;
    if recovery.in_recovery {
        return Ok(CheckResult::without_value(
            name,
            thresholds,
            Status::Unknown,
            "this server is a standby: measure replication lag on the primary",
        ));
    }
    let senders: Vec<WalSender> = diesel::sql_query(
        "SELECT coalesce(nullif(application_name, ''), 'replica') || '@' || coalesce(host(client_addr), 'local')
                  || ':' || pid AS name,
                state,
                extract(epoch FROM replay_lag)::float8 AS replay_lag,
                pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::float8 AS bytes_behind,
                flush_lsn::text AS flush_lsn,
                replay_lsn::text AS replay_lsn
         FROM pg_catalog.pg_stat_replication ORDER BY 1",
    )
    .load(connection)?;
    // The file keeps each server's replicas apart (one state directory may serve several), and is
    // replaced whole through a rename, so a run reading it meanwhile never sees half of it.
    let server = server_key(connection)?;
    let path = super::samples::replicas_path(&health.state_dir);
    let mut servers: BTreeMap<String, BTreeMap<String, Position>> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let previous = servers.remove(&server).unwrap_or_default();
    let mut positions = BTreeMap::new();
    let mut status = Status::Ok;
    let mut worst: f64 = 0.0;
    let mut notes = Vec::new();
    let mut skipped = Vec::new();
    let mut perfdata = Vec::new();
    let (mut n_standbys, mut n_streaming, mut n_uncertain) = (0_usize, 0_usize, 0_usize);
    for sender in &senders {
        match sender.kind() {
            WalSenderKind::Hidden => {
                n_uncertain += 1;
                status = status.max(Status::Unknown);
                notes.push(format!(
                    "{}: state and positions hidden from this role ({READ_ALL_STATS})",
                    sender.name
                ));
            }
            WalSenderKind::Unreported => {
                n_uncertain += 1;
                status = status.max(Status::Unknown);
                notes.push(format!(
                    "{}: state {}, no position reported yet",
                    sender.name,
                    sender.state.as_deref().unwrap_or_default()
                ));
            }
            WalSenderKind::BaseBackup => skipped.push(format!("{} (a base backup)", sender.name)),
            WalSenderKind::NotAReplica => skipped.push(format!(
                "{} (receives WAL but replays none: pg_receivewal or pg_basebackup --wal-method=stream)",
                sender.name
            )),
            WalSenderKind::Standby => {
                n_standbys += 1;
                if sender.state.as_deref() == Some("streaming") {
                    n_streaming += 1;
                }
                let Some(standby) = standby_lag(sender, &previous, thresholds, now) else {
                    continue;
                };
                status = status.max(standby.status);
                worst = worst.max(standby.lag);
                notes.push(standby.note);
                if let Some(position) = standby.position {
                    positions.insert(sender.name.clone(), position);
                }
                perfdata.extend(standby.perfdata);
            }
        }
    }
    if n_standbys + n_uncertain == 0 {
        notes.push("no replicas connected (pg_stat_replication lists no standby)".to_owned());
        if health.replicas_expected.is_none() {
            notes.push("a replica that vanished is detected only with HEALTH_REPLICAS_EXPECTED".to_owned());
        }
    }
    if let Some(expected) = health.replicas_expected {
        let (count_status, count) = replica_count(expected, n_streaming, n_uncertain);
        status = status.max(count_status);
        notes.insert(0, count);
    }
    if !skipped.is_empty() {
        notes.push(format!("not replicas, skipped: {}", skipped.join(", ")));
    }
    if n_standbys > 0 {
        servers.insert(server, positions);
    }
    let text = serde_json::to_string(&servers).unwrap_or_else(|_| "{}".to_owned());
    if let Err(error) = std::fs::create_dir_all(&health.state_dir)
        .and_then(|()| super::samples::replace_file(&health.state_dir, &path, &text))
    {
        status = status.max(Status::Unknown);
        notes.push(format!(
            "cannot keep replay positions in {}: {error} (a stalled replica is timed only by replay_lag)",
            path.display()
        ));
    }
    let mut result = CheckResult::measured(name, thresholds, worst, notes.join("; "));
    result.status = status;
    result.perfdata.extend(perfdata);
    Ok(result)
}

/// The status `HEALTH_REPLICAS_EXPECTED` gives and its note: CRITICAL with fewer standbys
/// streaming than `expected` even counting the walsenders that cannot be judged (hidden, or no
/// position reported yet), UNKNOWN when those could make up the difference.
fn replica_count(expected: usize, n_streaming: usize, n_uncertain: usize) -> (Status, String) {
    let count = format!("{expected} replica(s) expected (HEALTH_REPLICAS_EXPECTED), {n_streaming} streaming");
    if n_streaming >= expected {
        (Status::Ok, count)
    } else if n_streaming + n_uncertain >= expected {
        (
            Status::Unknown,
            format!("{count} and {n_uncertain} that cannot be judged"),
        )
    } else {
        (Status::Critical, count)
    }
}

/// The lag of one standby: `replay_lag`, or how long its replay position has not moved while it
/// is behind (from the position an earlier run kept in `previous`); `None` without positions.
fn standby_lag(
    replica: &WalSender,
    previous: &BTreeMap<String, Position>,
    thresholds: Thresholds,
    now: DateTime<Utc>,
) -> Option<StandbyLag> {
    let (Some(bytes), Some(lsn)) = (replica.bytes_behind, replica.replay_lsn.as_ref()) else {
        return None;
    };
    let mut stalled = 0.0;
    let mut position = None;
    if bytes > 0.0 {
        let since = previous
            .get(&replica.name)
            .filter(|position| &position.replay_lsn == lsn)
            .map_or(now, |position| position.since);
        stalled = float((now - since).num_milliseconds().max(0)) / 1000.0;
        position = Some(Position {
            replay_lsn: lsn.clone(),
            since,
        });
    }
    let lag = replica.replay_lag.unwrap_or(0.0).max(stalled);
    let mut status = thresholds.classify(lag, Direction::Above);
    let mut note = format!(
        "{}: {} behind, {:.0} bytes{}",
        replica.name,
        duration_words(lag),
        bytes,
        replica.replay_lag.map_or_else(
            || ", no replay_lag".to_owned(),
            |seconds| format!(", replay_lag {seconds:.1} s")
        ),
    );
    if stalled > 0.0 {
        let _ = write!(note, ", replay stalled at {lsn} for {}", duration_words(stalled));
    }
    if bytes > 0.0 && replica.replay_lag.is_none() && stalled == 0.0 {
        status = status.max(Status::Warning);
        note.push_str(" (behind with no replay_lag: replay paused or stuck? timed from the next run)");
    }
    let state = replica.state.as_deref().unwrap_or_default();
    if state != "streaming" {
        status = status.max(Status::Warning);
        let _ = write!(note, ", state {state}");
    }
    Some(StandbyLag {
        status,
        lag,
        note,
        position,
        perfdata: [
            PerfData {
                label: format!("replication_lag_{}", label_safe(&replica.name)),
                subject: Some(replica.name.clone()),
                value: lag,
                unit: Unit::Seconds,
                thresholds: Some(thresholds),
                direction: Direction::Above,
                min: Some(0.0),
                max: None,
            },
            PerfData {
                label: format!("replication_bytes_{}", label_safe(&replica.name)),
                subject: Some(replica.name.clone()),
                value: bytes,
                unit: Unit::Bytes,
                thresholds: None,
                direction: Direction::Above,
                min: Some(0.0),
                max: None,
            },
        ],
    })
}

/// A perfdata label part with only letters, digits, `_`, `.`, `-`, `@` and `:`.
fn label_safe(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-' | '@' | ':') {
                character
            } else {
                '_'
            }
        })
        .collect()
}

/// `cache_hit`: `blks_hit / (blks_hit + blks_read)` of this database since its statistics were
/// reset; with fewer than `min_blocks` accesses there is too little to judge, and it is UNKNOWN.
fn cache_hit(connection: &mut PgConnection, thresholds: Thresholds, min_blocks: i64) -> QueryResult<CheckResult> {
    #[derive(QueryableByName)]
    struct Blocks {
        #[diesel(sql_type = BigInt)]
        hit: i64,
        #[diesel(sql_type = BigInt)]
        read: i64,
    }
    let blocks: Blocks = diesel::sql_query(
        "SELECT coalesce(blks_hit, 0)::bigint AS hit, coalesce(blks_read, 0)::bigint AS read
         FROM pg_catalog.pg_stat_database WHERE datname = current_database()",
    )
    .get_result(connection)?;
    let total = blocks.hit + blocks.read;
    let name = CheckName::CacheHit;
    if total < min_blocks.max(1) {
        return Ok(CheckResult::without_value(
            name,
            thresholds,
            Status::Unknown,
            format!(
                "too few block accesses to judge ({total} of {min_blocks}): HEALTH_CACHE_HIT_MIN_BLOCKS accesses since \
                 the statistics were reset are needed"
            ),
        ));
    }
    let ratio = float(blocks.hit) * 100.0 / float(total);
    Ok(CheckResult::measured(
        name,
        thresholds,
        ratio,
        format!(
            "{ratio:.2} % of {total} block accesses served from shared buffers ({} read from disk or the OS cache)",
            blocks.read
        ),
    ))
}

#[derive(QueryableByName)]
struct IndexName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// `invalid_indexes`: indexes of this database marked invalid (a failed `CREATE INDEX
/// CONCURRENTLY` leaves one), except one being built right now.
fn invalid_indexes(connection: &mut PgConnection, thresholds: Thresholds) -> QueryResult<CheckResult> {
    let invalid: Vec<IndexName> = diesel::sql_query(
        "SELECT format('%I.%I', n.nspname, c.relname) AS name
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT i.indisvalid
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
         ORDER BY 1",
    )
    .load(connection)?;
    let names: Vec<String> = invalid.into_iter().map(|index| index.name).collect();
    let summary = if names.is_empty() {
        "no invalid index".to_owned()
    } else {
        format!(
            "invalid: {} (DROP INDEX CONCURRENTLY, then create it again)",
            names.join(", ")
        )
    };
    Ok(CheckResult::measured(
        CheckName::InvalidIndexes,
        thresholds,
        float(i64::try_from(names.len()).unwrap_or(i64::MAX)),
        summary,
    ))
}

/// `unused_indexes`: valid indexes that enforce nothing (not unique, not primary, no exclusion
/// constraint) and were scanned fewer than `max_scans` times since the statistics were reset.
fn unused_indexes(connection: &mut PgConnection, thresholds: Thresholds, max_scans: i64) -> QueryResult<CheckResult> {
    let unused: Vec<IndexName> = diesel::sql_query(
        "SELECT format('%I.%I', s.schemaname, s.indexrelname) || ' (' || s.idx_scan || ' scans)' AS name
         FROM pg_catalog.pg_stat_user_indexes s
         JOIN pg_catalog.pg_index i ON i.indexrelid = s.indexrelid
         WHERE NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid AND s.idx_scan < $1
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid)
         ORDER BY 1",
    )
    .bind::<BigInt, _>(max_scans)
    .load(connection)?;
    let names: Vec<String> = unused.into_iter().map(|index| index.name).collect();
    let summary = if names.is_empty() {
        format!("every index that enforces nothing was scanned at least {max_scans} times")
    } else {
        let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        format!(
            "fewer than {max_scans} scans: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    Ok(CheckResult::measured(
        CheckName::UnusedIndexes,
        thresholds,
        float(i64::try_from(names.len()).unwrap_or(i64::MAX)),
        summary,
    ))
}

/// `wraparound`: the highest transaction-ID age of any database (`age(datfrozenxid)`), as
/// `check_postgres`'s `txn_wraparound`.
fn wraparound(connection: &mut PgConnection, thresholds: Thresholds) -> QueryResult<CheckResult> {
    #[derive(QueryableByName)]
    struct Age {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        age: i64,
    }
    let oldest: Age = diesel::sql_query(
        "SELECT datname::text AS name, age(datfrozenxid)::bigint AS age FROM pg_catalog.pg_database
         ORDER BY 2 DESC LIMIT 1",
    )
    .get_result(connection)?;
    let mut result = CheckResult::measured(
        CheckName::Wraparound,
        thresholds,
        float(oldest.age),
        format!(
            "the oldest unfrozen transaction id is {} transactions old, in database {} (wraparound at about 2.1 billion)",
            oldest.age, oldest.name
        ),
    );
    if let Some(own) = result.perfdata.first_mut() {
        own.max = Some(2_147_483_647.0);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_kind(state: Option<&str>, flush_lsn: Option<&str>, replay_lsn: Option<&str>, expected: WalSenderKind) {
        let sender = WalSender {
            name: "sender@local:1".to_owned(),
            state: state.map(str::to_owned),
            replay_lag: None,
            bytes_behind: replay_lsn.map(|_| 0.0),
            flush_lsn: flush_lsn.map(str::to_owned),
            replay_lsn: replay_lsn.map(str::to_owned),
        };
        assert_eq!(sender.kind(), expected, "{state:?} {flush_lsn:?} {replay_lsn:?}");
    }

    #[test]
    fn walsenders_without_a_replay_position_are_told_apart() {
        check_kind(
            Some("streaming"),
            Some("0/3000060"),
            Some("0/3000060"),
            WalSenderKind::Standby,
        );
        check_kind(
            Some("catchup"),
            Some("0/3000060"),
            Some("0/2000000"),
            WalSenderKind::Standby,
        );
        // pg_basebackup: the backup itself, then its WAL stream (flushed, never replayed).
        check_kind(Some("backup"), None, None, WalSenderKind::BaseBackup);
        check_kind(Some("streaming"), Some("0/3000060"), None, WalSenderKind::NotAReplica);
        // Without pg_read_all_stats every column but the pid is NULL, the state too.
        check_kind(None, None, None, WalSenderKind::Hidden);
        check_kind(Some("startup"), None, None, WalSenderKind::Unreported);
    }
}
