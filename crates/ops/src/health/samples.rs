//! The size samples `growth` keeps: one JSON line (time, target, database, bytes) per health run
//! in `size-samples.jsonl` in the state directory, pruned after [`RETENTION`]. Growth per day is
//! measured against the newest sample of the same target (server and database, see
//! [`target_key`]) that is at least [`MIN_BASELINE_AGE`] old, scaled linearly to 24 hours; until
//! there is one, `growth` is UNKNOWN. Samples written before targets were kept name only a
//! database, which servers share, so they are never a baseline.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use database::{Backend, DatabaseTarget};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// The samples file, in the state directory.
pub const SAMPLES_FILE: &str = "size-samples.jsonl";

/// How old a sample must be to serve as the baseline: 20 hours, so that a daily run a little
/// earlier than yesterday's still compares with it.
pub const MIN_BASELINE_AGE: TimeDelta = TimeDelta::hours(20);

/// Samples older than this are removed (pghero shows a 7-day change; one day more keeps a
/// baseline for a weekly look).
pub const RETENTION: TimeDelta = TimeDelta::days(8);

/// One measurement of a database's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeSample {
    /// When it was measured.
    pub at: DateTime<Utc>,
    /// Which database of which server, as [`target_key`] spells it; empty in samples written
    /// before targets were kept, which are never a baseline.
    #[serde(default)]
    pub target: String,
    /// The database: its name on PostgreSQL, its file on SQLite.
    pub database: String,
    /// Its size in bytes (`pg_database_size`; page count times page size on SQLite).
    pub bytes: i64,
}

/// Growth against a baseline sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Growth {
    /// The sample compared with.
    pub baseline: SizeSample,
    /// Seconds between the baseline and now.
    pub elapsed_seconds: f64,
    /// `(now - baseline) / baseline * 100`, scaled to one day.
    pub percent_per_day: f64,
}

/// The samples file of a state directory.
#[derive(Debug, Clone)]
pub struct SampleStore {
    directory: PathBuf,
}

impl SampleStore {
    /// The store in `directory` (created on the first write).
    #[must_use]
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        Self {
            directory: directory.into(),
        }
    }

    /// The samples file.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.directory.join(SAMPLES_FILE)
    }

    /// Every readable sample, oldest line first; unreadable lines (a run killed while writing)
    /// are skipped.
    pub fn read(&self) -> Result<Vec<SizeSample>, String> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|line| serde_json::from_str::<SizeSample>(line).ok())
                .collect()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(format!("cannot read {}: {error}", path.display())),
        }
    }

    /// Appends `sample` (tests write samples with old timestamps this way).
    pub fn append(&self, sample: &SizeSample) -> Result<(), String> {
        let path = self.path();
        std::fs::create_dir_all(&self.directory)
            .map_err(|error| format!("cannot create {}: {error}", self.directory.display()))?;
        let mut line = serde_json::to_string(sample).map_err(|error| error.to_string())?;
        line.push('\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .map_err(|error| format!("cannot append to {}: {error}", path.display()))
    }

    /// Reads the samples kept so far, then keeps `sample` and removes samples past
    /// [`RETENTION`]. Returns the samples as they were before `sample`.
    pub fn record(&self, sample: &SizeSample) -> Result<Vec<SizeSample>, String> {
        let history = self.read()?;
        let cutoff = sample.at - RETENTION;
        if history.iter().any(|old| old.at < cutoff) {
            let mut kept: Vec<&SizeSample> = history.iter().filter(|old| old.at >= cutoff).collect();
            kept.push(sample);
            self.rewrite(&kept)?;
        } else {
            self.append(sample)?;
        }
        Ok(history)
    }

    /// Replaces the file with `samples`, through a temporary file renamed over it.
    fn rewrite(&self, samples: &[&SizeSample]) -> Result<(), String> {
        let path = self.path();
        let mut text = String::new();
        for sample in samples {
            text.push_str(&serde_json::to_string(sample).map_err(|error| error.to_string())?);
            text.push('\n');
        }
        replace_file(&self.directory, &path, &text)
            .map_err(|error| format!("cannot rewrite {}: {error}", path.display()))
    }
}

/// The key samples of `target` are kept under: on PostgreSQL its hosts, port and database from
/// the URL (the `host`, `port` and `dbname` parameters win, as in libpq), without user or
/// password (`127.0.0.1:5432/app`); on SQLite the file's absolute path (as SQLite reports the
/// main file). Two servers with a database of the same name get different keys.
#[must_use]
pub fn target_key(target: &DatabaseTarget) -> String {
    match target.backend() {
        Backend::Sqlite => std::path::absolute(target.redacted())
            .map_or_else(|_| target.redacted().to_owned(), |path| path.display().to_string()),
        Backend::Postgres => postgres_key(target.redacted()),
    }
}

/// `hosts[:port]/database` of a PostgreSQL URL.
fn postgres_key(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let decode = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
    let mut hosts = decode(authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts));
    let mut database = decode(path);
    let mut port = None;
    for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        match name {
            "host" => hosts = decode(value),
            "port" => port = Some(decode(value)),
            "dbname" => database = decode(value),
            _ => {}
        }
    }
    if let Some(port) = port {
        hosts = format!("{hosts}:{port}");
    }
    format!("{hosts}/{database}")
}

/// Growth of `current` against the newest sample of its target in `history` that is at least
/// [`MIN_BASELINE_AGE`] older; `None` when there is none (or its size was zero).
#[must_use]
pub fn growth_per_day(history: &[SizeSample], current: &SizeSample) -> Option<Growth> {
    let baseline = history
        .iter()
        .filter(|old| {
            !old.target.is_empty()
                && old.target == current.target
                && current.at - old.at >= MIN_BASELINE_AGE
                && old.bytes > 0
        })
        .max_by_key(|old| old.at)?;
    let elapsed_seconds = super::float((current.at - baseline.at).num_milliseconds()) / 1000.0;
    let change = super::float(current.bytes - baseline.bytes) / super::float(baseline.bytes);
    Some(Growth {
        baseline: baseline.clone(),
        elapsed_seconds,
        percent_per_day: change * 100.0 * 86_400.0 / elapsed_seconds,
    })
}

/// Replaces `path` (in `directory`) with `text`, through a temporary file of this process renamed
/// over it: a reader sees the old file or the new one, never half of either.
pub(crate) fn replace_file(directory: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("state");
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

/// Where the replay positions of lagging replicas are kept, for `replication_lag`: a map from
/// each server (`server_key`) to its replicas' positions.
pub(crate) fn replicas_path(directory: &Path) -> PathBuf {
    directory.join("replica-positions.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(hours_ago: i64, bytes: i64, now: DateTime<Utc>) -> SizeSample {
        SizeSample {
            at: now - TimeDelta::hours(hours_ago),
            target: "db.example:5432/db".to_owned(),
            database: "db".to_owned(),
            bytes,
        }
    }

    #[test]
    fn growth_uses_the_newest_sample_old_enough_scaled_to_a_day() {
        let now = Utc::now();
        let current = sample(0, 1100, now);
        assert_eq!(growth_per_day(&[sample(2, 1000, now)], &current), None);
        let history = [sample(48, 500, now), sample(24, 1000, now), sample(1, 1090, now)];
        let growth = growth_per_day(&history, &current).expect("a baseline a day old");
        assert_eq!(growth.baseline.bytes, 1000);
        assert!((growth.percent_per_day - 10.0).abs() < 1e-6, "{growth:?}");
        let growth = growth_per_day(&[sample(48, 1000, now)], &current).expect("two days old");
        assert!((growth.percent_per_day - 5.0).abs() < 1e-6, "{growth:?}");
        let other = SizeSample {
            target: "db.example:5432/other".to_owned(),
            database: "other".to_owned(),
            ..sample(24, 1, now)
        };
        assert_eq!(growth_per_day(&[other], &current), None);
    }

    #[test]
    fn a_database_of_the_same_name_on_another_server_is_no_baseline() {
        let now = Utc::now();
        let current = sample(0, 1100, now);
        let elsewhere = SizeSample {
            target: "other.example:5432/db".to_owned(),
            ..sample(24, 10, now)
        };
        assert_eq!(growth_per_day(std::slice::from_ref(&elsewhere), &current), None);
        let before_targets: SizeSample =
            serde_json::from_str(r#"{"at":"2020-01-01T00:00:00Z","database":"db","bytes":10}"#).expect("an old line");
        let before_targets = SizeSample {
            at: now - TimeDelta::hours(24),
            ..before_targets
        };
        assert_eq!(growth_per_day(&[elsewhere, before_targets], &current), None);
        let growth = growth_per_day(&[sample(24, 1000, now)], &current).expect("its own sample");
        assert_eq!(growth.baseline.target, current.target);
    }

    #[track_caller]
    fn check_key(url: &str, expected: &str) {
        let target = DatabaseTarget::postgres_url(url).expect("a PostgreSQL URL");
        assert_eq!(target_key(&target), expected, "{url}");
    }

    #[test]
    fn target_keys_name_the_server_and_database_without_credentials() {
        check_key("postgres://app:secret@db1.example:5432/app", "db1.example:5432/app");
        check_key("postgres://app:secret@db2.example:5432/app", "db2.example:5432/app");
        check_key("postgresql://db1.example/app?sslmode=require", "db1.example/app");
        check_key(
            "postgres://monitor@db1.example:5432/app?user=other&password=x",
            "db1.example:5432/app",
        );
        check_key(
            "postgres:///app?host=%2Fvar%2Frun%2Fpostgresql&port=5433",
            "/var/run/postgresql:5433/app",
        );
        check_key("postgres://h1:5432,h2:5432/postgres?dbname=app", "h1:5432,h2:5432/app");
        assert_eq!(
            target_key(&DatabaseTarget::sqlite_file("/srv/data/app.sqlite3")),
            "/srv/data/app.sqlite3"
        );
    }

    #[test]
    fn old_samples_are_pruned_when_a_new_one_is_kept() {
        let directory = tempfile::tempdir().expect("a directory");
        let store = SampleStore::new(directory.path());
        let now = Utc::now();
        store.append(&sample(24 * 10, 1, now)).expect("append");
        store.append(&sample(24, 2, now)).expect("append");
        let history = store.record(&sample(0, 3, now)).expect("record");
        assert_eq!(history.len(), 2);
        let kept: Vec<i64> = store.read().expect("read").iter().map(|kept| kept.bytes).collect();
        assert_eq!(kept, [2, 3]);
    }
}
