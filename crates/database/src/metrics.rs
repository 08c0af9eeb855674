//! What the pool and its connections measure, as a snapshot and in the Prometheus text format.
//!
//! - The pool is counted through r2d2's event handler ([`PoolEvents`]), never by calling
//!   `Pool::state()` on a checkout: that takes the pool's lock (crates.io reverted exactly that,
//!   PR 3829, and redid it with events, PR 3914). Every count is an atomic; connections in use
//!   and idle are differences of counters, so a snapshot takes no lock at all.
//! - Statements are timed through diesel's instrumentation ([`QueryTimer`], set on every
//!   connection the pool opens) into a histogram per kind of statement (`select`, `insert`,
//!   `update`, `delete`, `transaction` for BEGIN / COMMIT / ROLLBACK / SAVEPOINT, `other`).
//! - A statement that takes at least `DATABASE_SLOW_QUERY_MS` is logged through `tracing` at
//!   WARN, target `database::slow_query`, with its SQL text and its duration. The SQL text is
//!   what diesel sends, whose values are all bound parameters: the values themselves (which can
//!   hold personal data) are never logged, and neither is the connection URL.
//!
//! The names follow Prometheus conventions (seconds, `_total` counters) and OpenTelemetry's
//! database client conventions (`db.client.connection.*`, `db.client.operation.duration`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::r2d2::event::{AcquireEvent, CheckinEvent, CheckoutEvent, HandleEvent, ReleaseEvent, TimeoutEvent};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Upper bounds, in seconds, of the duration histograms' buckets: 100 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

thread_local! {
    /// The kind the statements of the current [`statements_of_kind`] scope are, on this thread.
    static EXPECTED_KIND: std::cell::Cell<Option<StatementKind>> = const { std::cell::Cell::new(None) };
}

/// Runs `work`, whose statements (apart from BEGIN, COMMIT, ROLLBACK and savepoints) are all of
/// `kind`, so that the statement metrics count them without reading their SQL text.
///
/// Reading a statement's kind means formatting its SQL, which costs as much as an SQLite point
/// read itself (about 2 µs against 5 µs); the repositories' reads declare their kind instead.
/// In debug builds (every test run) each declared kind is checked against the SQL text and a
/// wrong declaration panics; a statement that is slow is formatted for its log line anyway.
pub fn statements_of_kind<R>(kind: StatementKind, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<StatementKind>);
    impl Drop for Restore {
        fn drop(&mut self) {
            EXPECTED_KIND.with(|expected| expected.set(self.0));
        }
    }
    let _restore = Restore(EXPECTED_KIND.with(|expected| expected.replace(Some(kind))));
    work()
}

thread_local! {
    /// Set while a [`statements_with_secrets`] scope runs on this thread.
    static SECRET_TEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work`, whose statements hold a secret in their SQL text (an `ALTER ROLE … PASSWORD`
/// verifier, which SQL cannot bind): a slow one is logged with `sql="[withheld: holds a
/// secret]"` instead of its text. Restored on return and on panic.
pub fn statements_with_secrets<R>(work: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SECRET_TEXT.with(|secret| secret.set(self.0));
        }
    }
    let _restore = Restore(SECRET_TEXT.with(|secret| secret.replace(true)));
    work()
}

/// What the slow-query log writes for a statement of a [`statements_with_secrets`] scope.
pub const WITHHELD_SQL: &str = "[withheld: holds a secret]";

/// The `Content-Type` of [`Metrics::render_prometheus`]'s text.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a statement does, read from its first keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// `SELECT` (and `VALUES`, `SHOW`).
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`.
    Transaction,
    /// Anything else: `WITH`, DDL, `SET`, `PRAGMA`, `ANALYZE`, several statements at once.
    Other,
}

impl StatementKind {
    /// Every kind, in the order snapshots list them.
    pub const ALL: [Self; 6] = [
        Self::Select,
        Self::Insert,
        Self::Update,
        Self::Delete,
        Self::Transaction,
        Self::Other,
    ];

    /// The label value: `select`, `insert`, `update`, `delete`, `transaction` or `other`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Transaction => "transaction",
            Self::Other => "other",
        }
    }

    /// The kind of `sql`, from its first keyword (case-insensitive, after blanks and `(`).
    #[must_use]
    pub fn of(sql: &str) -> Self {
        let start = sql.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        let end = start.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(start.len());
        let keyword = &start[..end];
        let is = |word: &str| keyword.eq_ignore_ascii_case(word);
        if is("select") || is("values") || is("show") {
            Self::Select
        } else if is("insert") {
            Self::Insert
        } else if is("update") {
            Self::Update
        } else if is("delete") {
            Self::Delete
        } else if ["begin", "commit", "rollback", "savepoint", "release", "end"]
            .iter()
            .any(|word| is(word))
        {
            Self::Transaction
        } else {
            Self::Other
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the pool's manager gave a connection up (r2d2's reaper closes the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Its server closed it, or a call found it unusable.
    Lost,
    /// Older than the maximum lifetime when it came back.
    Expired,
    /// Failed the checkout's ping.
    Invalid,
}

/// Why the pool closed connections, as counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClosedConnections {
    /// Lost: its server closed it or a call on it found it unusable.
    pub lost: u64,
    /// Older than `DATABASE_POOL_MAX_LIFETIME_MS` when it came back.
    pub expired: u64,
    /// Failed the ping of the checkout validation.
    pub invalid: u64,
    /// Closed by r2d2's reaper: idle longer than `DATABASE_POOL_IDLE_TIMEOUT_MS`, or past its
    /// lifetime while idle.
    pub idle: u64,
}

impl ClosedConnections {
    /// Every closed connection.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.lost + self.expired + self.invalid + self.idle
    }
}

/// A duration histogram: how many observations, their sum, and the cumulative count at or
/// below each of [`DURATION_BUCKETS`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistogramSnapshot {
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
    /// `(upper bound in seconds, observations at or below it)`, as Prometheus' `le` buckets.
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramSnapshot {
    /// The mean, in seconds; `None` before the first observation.
    #[must_use]
    pub fn mean_seconds(&self) -> Option<f64> {
        #[expect(clippy::cast_precision_loss, reason = "a count above 2^52 loses only precision")]
        (self.count > 0).then(|| self.sum_seconds / self.count as f64)
    }
}

/// The pool's counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PoolSnapshot {
    /// `DATABASE_POOL_MAX_SIZE`.
    pub max_size: u32,
    /// Connections open now (in use and idle).
    pub open: u64,
    /// Connections checked out now.
    pub in_use: u64,
    /// Connections open and not checked out.
    pub idle: u64,
    /// Checkouts so far.
    pub checkouts: u64,
    /// Checkouts that gave up after `DATABASE_POOL_CONNECTION_TIMEOUT_MS`.
    pub checkout_timeouts: u64,
    /// Errors opening or validating a connection that r2d2 met (a refused connection, an
    /// unreachable server): told apart from timeouts, which r2d2 itself does not do.
    pub connection_errors: u64,
    /// Connections opened so far.
    pub opened: u64,
    /// Connections closed so far, and why.
    pub closed: ClosedConnections,
    /// How long each checkout waited for a connection.
    pub wait: HistogramSnapshot,
    /// How long each connection was held before it came back.
    pub use_time: HistogramSnapshot,
}

/// One kind of statement's counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatementSnapshot {
    /// The kind.
    pub kind: StatementKind,
    /// Durations of the statements run (failed ones included).
    pub duration: HistogramSnapshot,
    /// Statements that returned an error.
    pub errors: u64,
    /// Statements at or above the slow-query threshold.
    pub slow: u64,
}

/// Everything measured so far, read without a lock.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// The pool's `application_name`, the `pool_name` label.
    pub pool_name: String,
    /// The pool.
    pub pool: PoolSnapshot,
    /// Statements, one entry per [`StatementKind`], in [`StatementKind::ALL`]'s order.
    pub statements: Vec<StatementSnapshot>,
}

impl MetricsSnapshot {
    /// The counts of one kind of statement.
    #[must_use]
    pub fn statement(&self, kind: StatementKind) -> &StatementSnapshot {
        &self.statements[kind.index()]
    }
}

/// The measurements of one pool, shared by its event handler and every connection's
/// instrumentation; cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Counts>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("pool_name", &self.inner.pool_name)
            .finish_non_exhaustive()
    }
}

struct Counts {
    pool_name: String,
    max_size: u32,
    slow_query: Duration,
    acquired: AtomicU64,
    released: AtomicU64,
    checkouts: AtomicU64,
    checkins: AtomicU64,
    timeouts: AtomicU64,
    connection_errors: AtomicU64,
    closed_lost: AtomicU64,
    closed_expired: AtomicU64,
    closed_invalid: AtomicU64,
    closed_idle: AtomicU64,
    wait: AtomicHistogram,
    use_time: AtomicHistogram,
    statements: [StatementCounts; 6],
}

#[derive(Default)]
struct StatementCounts {
    duration: AtomicHistogram,
    errors: AtomicU64,
    slow: AtomicU64,
}

#[derive(Default)]
struct AtomicHistogram {
    /// Observations in each bucket alone (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS.partition_point(|bound| *bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = DURATION_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let above = self.buckets[DURATION_BUCKETS.len()].load(Ordering::Relaxed);
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds to seconds, for display")]
        let sum_seconds = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        HistogramSnapshot {
            // Read from the buckets, so that a snapshot taken during an observation is
            // consistent with itself.
            count: cumulative + above,
            sum_seconds,
            buckets,
        }
    }
}

impl Metrics {
    /// New, empty measurements for a pool of at most `max_size` connections named `pool_name`,
    /// logging statements that take at least `slow_query` (`Duration::ZERO`: none).
    #[must_use]
    pub fn new(pool_name: &str, max_size: u32, slow_query: Duration) -> Self {
        Self {
            inner: Arc::new(Counts {
                pool_name: pool_name.to_owned(),
                max_size,
                slow_query,
                acquired: AtomicU64::new(0),
                released: AtomicU64::new(0),
                checkouts: AtomicU64::new(0),
                checkins: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                connection_errors: AtomicU64::new(0),
                closed_lost: AtomicU64::new(0),
                closed_expired: AtomicU64::new(0),
                closed_invalid: AtomicU64::new(0),
                closed_idle: AtomicU64::new(0),
                wait: AtomicHistogram::default(),
                use_time: AtomicHistogram::default(),
                statements: Default::default(),
            }),
        }
    }

    /// The r2d2 event handler that counts this pool.
    #[must_use]
    pub fn pool_events(&self) -> PoolEvents {
        PoolEvents(self.clone())
    }

    /// The diesel instrumentation that times one connection's statements into these metrics.
    #[must_use]
    pub fn query_timer(&self) -> QueryTimer {
        QueryTimer {
            metrics: self.clone(),
            started: None,
            transaction_statement: false,
            sql: SqlText::default(),
            next: diesel::connection::get_default_instrumentation(),
        }
    }

    /// Everything measured so far.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        let counts = &self.inner;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        // Read the closings before the openings and the checkins before the checkouts: counts
        // only grow, so a difference read this way is never negative.
        let released = load(&counts.released);
        let checkins = load(&counts.checkins);
        let acquired = load(&counts.acquired);
        let checkouts = load(&counts.checkouts);
        let open = acquired.saturating_sub(released);
        let in_use = checkouts.saturating_sub(checkins).min(open);
        // Each reason is a counter of its own, counted when r2d2 hands the connection back to
        // be closed: none can go down between two snapshots.
        let closed = ClosedConnections {
            lost: load(&counts.closed_lost),
            expired: load(&counts.closed_expired),
            invalid: load(&counts.closed_invalid),
            idle: load(&counts.closed_idle),
        };
        MetricsSnapshot {
            pool_name: counts.pool_name.clone(),
            pool: PoolSnapshot {
                max_size: counts.max_size,
                open,
                in_use,
                idle: open - in_use,
                checkouts,
                checkout_timeouts: load(&counts.timeouts),
                connection_errors: load(&counts.connection_errors),
                opened: acquired,
                closed,
                wait: counts.wait.snapshot(),
                use_time: counts.use_time.snapshot(),
            },
            statements: StatementKind::ALL
                .iter()
                .map(|kind| {
                    let statement = &counts.statements[kind.index()];
                    StatementSnapshot {
                        kind: *kind,
                        duration: statement.duration.snapshot(),
                        errors: load(&statement.errors),
                        slow: load(&statement.slow),
                    }
                })
                .collect(),
        }
    }

    /// The metrics in the Prometheus text format (version 0.0.4), for a scrape or a script.
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub(crate) fn connection_closed(&self, reason: Option<CloseReason>) {
        let counter = match reason {
            Some(CloseReason::Lost) => &self.inner.closed_lost,
            Some(CloseReason::Expired) => &self.inner.closed_expired,
            Some(CloseReason::Invalid) => &self.inner.closed_invalid,
            None => &self.inner.closed_idle,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_error(&self) {
        self.inner.connection_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The pool's side of [`Metrics`], for r2d2's `event_handler`.
#[derive(Debug)]
pub struct PoolEvents(Metrics);

impl HandleEvent for PoolEvents {
    fn handle_acquire(&self, _: AcquireEvent) {
        self.0.inner.acquired.fetch_add(1, Ordering::Relaxed);
    }

    fn handle_release(&self, _: ReleaseEvent) {
        self.0.inner.released.fetch_add(1, Ordering::Relaxed);
    }

    fn handle_checkout(&self, event: CheckoutEvent) {
        self.0.inner.checkouts.fetch_add(1, Ordering::Relaxed);
        self.0.inner.wait.observe(event.duration());
    }

    fn handle_timeout(&self, event: TimeoutEvent) {
        self.0.inner.timeouts.fetch_add(1, Ordering::Relaxed);
        self.0.inner.wait.observe(event.timeout());
    }

    fn handle_checkin(&self, event: CheckinEvent) {
        self.0.inner.checkins.fetch_add(1, Ordering::Relaxed);
        self.0.inner.use_time.observe(event.duration());
    }
}

/// A connection's side of [`Metrics`]: diesel calls it around every statement.
pub struct QueryTimer {
    metrics: Metrics,
    started: Option<Instant>,
    /// diesel announced a transaction statement (BEGIN, COMMIT, ROLLBACK, a savepoint): the
    /// next statement is it.
    transaction_statement: bool,
    /// The SQL text of the statement that just finished, reused from statement to statement.
    sql: SqlText,
    /// diesel's default instrumentation (`diesel::connection::set_default_instrumentation`), a
    /// fresh one for this connection, which sees every event after this timer: a connection has
    /// one instrumentation, and the timer takes the default's place.
    next: Option<Box<dyn Instrumentation>>,
}

impl fmt::Debug for QueryTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryTimer")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// What diesel's query formatting writes between the SQL and the bound values.
const BINDS_MARKER: &str = " -- binds: ";

/// Receives diesel's formatting of a query (`<SQL> -- binds: [<values>]`) and keeps the SQL:
/// it stops the formatting with an error at the marker, so the bound values are never even
/// formatted, let alone kept. The SQL comes first and holds no value (every value is bound), so
/// cutting at the first marker keeps the values out, whatever they contain.
#[derive(Default)]
struct SqlText(String);

impl SqlText {
    fn read(&mut self, query: &dyn fmt::Display) -> &str {
        self.0.clear();
        // The error is this writer's own stop at the marker.
        let _ = fmt::write(self, format_args!("{query}"));
        &self.0
    }
}

impl fmt::Write for SqlText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.push_str(text);
        match self.0.find(BINDS_MARKER) {
            Some(end) => {
                self.0.truncate(end);
                Err(fmt::Error)
            }
            None => Ok(()),
        }
    }
}

impl QueryTimer {
    /// The kind of the statement that just finished: a transaction statement when diesel
    /// announced one, the scope's declared kind, or else read from the SQL text.
    fn kind(&mut self, query: &dyn fmt::Display) -> StatementKind {
        if std::mem::take(&mut self.transaction_statement) {
            return StatementKind::Transaction;
        }
        match EXPECTED_KIND.with(std::cell::Cell::get) {
            Some(expected) => {
                if cfg!(debug_assertions) {
                    let sql = self.sql.read(query);
                    assert_eq!(
                        StatementKind::of(sql),
                        expected,
                        "a statement run in a statements_of_kind({expected}) scope is not of that kind: {sql}"
                    );
                }
                expected
            }
            None => StatementKind::of(self.sql.read(query)),
        }
    }
}

impl Instrumentation for QueryTimer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        self.time(&event);
        if let Some(next) = &mut self.next {
            next.on_connection_event(event);
        }
    }
}

impl QueryTimer {
    fn time(&mut self, event: &InstrumentationEvent<'_>) {
        match *event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::BeginTransaction { .. }
            | InstrumentationEvent::CommitTransaction { .. }
            | InstrumentationEvent::RollbackTransaction { .. } => self.transaction_statement = true,
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let Some(started) = self.started.take() else { return };
                let elapsed = started.elapsed();
                let kind = self.kind(query);
                let counts = &self.metrics.inner;
                let statement = &counts.statements[kind.index()];
                statement.duration.observe(elapsed);
                if error.is_some() {
                    statement.errors.fetch_add(1, Ordering::Relaxed);
                }
                if !counts.slow_query.is_zero() && elapsed >= counts.slow_query {
                    statement.slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target: "database::slow_query",
                        pool = %counts.pool_name,
                        statement = kind.as_str(),
                        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                        threshold_ms = u64::try_from(counts.slow_query.as_millis()).unwrap_or(u64::MAX),
                        failed = error.is_some(),
                        sql = if SECRET_TEXT.with(std::cell::Cell::get) {
                            WITHHELD_SQL
                        } else {
                            self.sql.read(query)
                        },
                        "slow query"
                    );
                }
            }
            _ => {}
        }
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.snapshot();
        let pool = &snapshot.pool;
        let name = snapshot.pool_name.as_str();
        let by_pool = [("pool_name", name)];

        let mut family = encoder.encode_descriptor(
            "db_client_connection_count",
            "Connections of the pool, by state (used: checked out; idle: open and not)",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in [("used", pool.in_use), ("idle", pool.idle)] {
            let labels = [("pool_name", name), ("state", state)];
            ConstGauge::new(gauge(value)).encode(family.encode_family(&labels)?)?;
        }
        single_of(
            &mut encoder,
            (
                "db_client_connection_max",
                "Most connections the pool opens (DATABASE_POOL_MAX_SIZE)",
                MetricType::Gauge,
            ),
            &by_pool,
            u64::from(pool.max_size),
        )?;
        single_of(
            &mut encoder,
            (
                "db_client_connection_checkouts",
                "Connections handed out by the pool",
                MetricType::Counter,
            ),
            &by_pool,
            pool.checkouts,
        )?;
        single_of(
            &mut encoder,
            (
                "db_client_connection_timeouts",
                "Checkouts that gave up after DATABASE_POOL_CONNECTION_TIMEOUT_MS",
                MetricType::Counter,
            ),
            &by_pool,
            pool.checkout_timeouts,
        )?;
        single_of(
            &mut encoder,
            (
                "db_client_connection_errors",
                "Errors opening or validating a connection",
                MetricType::Counter,
            ),
            &by_pool,
            pool.connection_errors,
        )?;
        single_of(
            &mut encoder,
            (
                "db_client_connection_opened",
                "Connections the pool opened",
                MetricType::Counter,
            ),
            &by_pool,
            pool.opened,
        )?;
        let mut family = encoder.encode_descriptor(
            "db_client_connection_closed",
            "Connections the pool closed, by reason (lost, expired, invalid, idle)",
            None,
            MetricType::Counter,
        )?;
        let closed = &pool.closed;
        for (reason, value) in [
            ("lost", closed.lost),
            ("expired", closed.expired),
            ("invalid", closed.invalid),
            ("idle", closed.idle),
        ] {
            let labels = [("pool_name", name), ("reason", reason)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        histogram_of(
            &mut encoder,
            "db_client_connection_wait_time_seconds",
            "Time a checkout waited for a connection",
            &[(&by_pool, &pool.wait)],
        )?;
        histogram_of(
            &mut encoder,
            "db_client_connection_use_time_seconds",
            "Time a connection was held between checkout and return",
            &[(&by_pool, &pool.use_time)],
        )?;

        encode_statements(&snapshot, &mut encoder)
    }
}

fn encode_statements(snapshot: &MetricsSnapshot, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let name = snapshot.pool_name.as_str();
    let labels: Vec<[(&str, &str); 2]> = snapshot
        .statements
        .iter()
        .map(|statement| [("pool_name", name), ("db_operation_name", statement.kind.as_str())])
        .collect();
    let durations: Vec<(&[(&str, &str)], &HistogramSnapshot)> = labels
        .iter()
        .zip(&snapshot.statements)
        .map(|(labels, statement)| (labels.as_slice(), &statement.duration))
        .collect();
    histogram_of(
        encoder,
        "db_client_operation_duration_seconds",
        "Duration of statements, by kind",
        &durations,
    )?;
    let mut family = encoder.encode_descriptor(
        "db_client_operation_errors",
        "Statements that returned an error, by kind",
        None,
        MetricType::Counter,
    )?;
    for (labels, statement) in labels.iter().zip(&snapshot.statements) {
        ConstCounter::new(statement.errors).encode(family.encode_family(labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "db_client_operation_slow",
        "Statements at or above DATABASE_SLOW_QUERY_MS, by kind (each logged at WARN)",
        None,
        MetricType::Counter,
    )?;
    for (labels, statement) in labels.iter().zip(&snapshot.statements) {
        ConstCounter::new(statement.slow).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One series of a family of its own: a gauge or a counter.
fn single_of(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    labels: &[(&str, &str)],
    value: u64,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    let series = family.encode_family(&labels)?;
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(series),
        _ => ConstGauge::new(gauge(value)).encode(series),
    }
}

fn histogram_of(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], &HistogramSnapshot)],
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in series {
        // The encoder adds the buckets up itself: give it each bucket alone.
        // The +Inf bucket is given too: the OpenMetrics encoder (a service's own registry)
        // writes it only when given, the Prometheus one adds it only when missing.
        let mut previous = 0;
        let mut buckets: Vec<(f64, u64)> = histogram
            .buckets
            .iter()
            .map(|(bound, cumulative)| {
                let alone = cumulative - previous;
                previous = *cumulative;
                (*bound, alone)
            })
            .collect();
        buckets.push((f64::INFINITY, histogram.count - previous));
        family
            .encode_family(labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                histogram.sum_seconds,
                histogram.count,
                &buckets,
                None,
            )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_kinds_come_from_the_first_keyword() {
        for (sql, kind) in [
            ("SELECT 1", StatementKind::Select),
            ("  (select 1) union (select 2)", StatementKind::Select),
            ("INSERT INTO users", StatementKind::Insert),
            ("update users set", StatementKind::Update),
            ("DELETE FROM users", StatementKind::Delete),
            ("BEGIN", StatementKind::Transaction),
            ("SAVEPOINT diesel_savepoint_1", StatementKind::Transaction),
            ("RELEASE SAVEPOINT diesel_savepoint_1", StatementKind::Transaction),
            ("COMMIT", StatementKind::Transaction),
            ("WITH x AS (SELECT 1) SELECT * FROM x", StatementKind::Other),
            ("PRAGMA foreign_keys = ON", StatementKind::Other),
            ("", StatementKind::Other),
            ("selected", StatementKind::Other),
        ] {
            assert_eq!(StatementKind::of(sql), kind, "{sql:?}");
        }
    }

    #[test]
    fn the_sql_text_stops_before_the_bound_values() {
        struct Query;
        impl fmt::Display for Query {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "SELECT $1 -- binds: {:?}", ["secret -- binds: x"])
            }
        }
        let mut text = SqlText::default();
        assert_eq!(text.read(&Query), "SELECT $1");
        assert_eq!(
            text.read(&"BEGIN"),
            "BEGIN",
            "a statement without the marker is kept whole"
        );
    }

    #[test]
    fn histograms_count_each_observation_once_in_cumulative_buckets() {
        let histogram = AtomicHistogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_mins(1));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.buckets[0], (0.000_1, 1));
        // 1 ms lands in the bucket whose bound is 1 ms (le is "at or below").
        assert_eq!(snapshot.buckets[3], (0.001, 2));
        assert_eq!(snapshot.buckets.last(), Some(&(10.0, 2)));
        assert!((snapshot.sum_seconds - 60.001_05).abs() < 1e-9);
    }
}
