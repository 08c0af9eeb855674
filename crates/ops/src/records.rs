//! The record of backup runs: one JSON line per backup, verification, restore, prune or
//! off-site copy, with when, the outcome and how long it took, appended to `records.jsonl` in
//! the backup directory and synced. Health checks read it to alert on an old or failed backup.

use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::BackupError;
use crate::manifest::BackupDirectory;

/// The file, in the backup directory.
pub const RECORDS_FILE: &str = "records.jsonl";

/// What was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A backup was taken.
    Backup,
    /// A backup was restored into a scratch database and checked against its manifest.
    Verify,
    /// A backup was restored into a target database.
    Restore,
    /// Backups were removed by the retention policy.
    Prune,
    /// A backup was copied to the object store and the copy checked.
    Offsite,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It could not run or did not finish.
    Failed,
    /// A verification ran and the backup does not match its manifest.
    Mismatch,
}

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// What was run.
    pub kind: Kind,
    /// The backup it concerned, when one.
    pub backup: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration_ms: u64,
    /// The error or the mismatches, when it did not succeed; what was done otherwise.
    pub detail: Option<String>,
}

impl Record {
    /// A record of a run that started at `start` and finished now.
    #[must_use]
    pub fn finished(
        kind: Kind,
        backup: Option<String>,
        outcome: Outcome,
        start: std::time::Instant,
        detail: Option<String>,
    ) -> Self {
        Self {
            at: Utc::now(),
            kind,
            backup,
            outcome,
            duration_ms: crate::elapsed_ms(start),
            detail,
        }
    }
}

impl BackupDirectory {
    /// Appends `record` to the record of runs and syncs it.
    pub fn append_record(&self, record: &Record) -> Result<(), BackupError> {
        self.create()?;
        let path = self.file(RECORDS_FILE);
        let mut line = serde_json::to_vec(record).expect("a record is plain data and always serialises");
        line.push(b'\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(&line)?;
                file.sync_all()
            })
            .map_err(|error| BackupError::io(format!("cannot append to {}", path.display()), error))
    }

    /// Every record, oldest first. A line that cannot be read (a run killed while writing it) is
    /// skipped with a warning.
    pub fn records(&self) -> Result<Vec<Record>, BackupError> {
        let path = self.file(RECORDS_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(BackupError::io(format!("cannot read {}", path.display()), error)),
        };
        let mut records = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|error| BackupError::io(format!("cannot read {}", path.display()), error))?;
            match serde_json::from_str::<Record>(&line) {
                Ok(record) => records.push(record),
                Err(error) => {
                    tracing::warn!(file = %path.display(), line = number + 1, %error, "skipped an unreadable record");
                }
            }
        }
        Ok(records)
    }

    /// The backups whose latest verification that ran to the end passed. A verification that
    /// could not run (a missing key, an unreachable server) says nothing about the backup and
    /// does not undo an earlier pass; one that found a mismatch does.
    pub fn verified(&self) -> Result<std::collections::BTreeSet<String>, BackupError> {
        let mut latest = std::collections::BTreeMap::new();
        for record in self.records()? {
            if record.kind == Kind::Verify
                && record.outcome != Outcome::Failed
                && let Some(backup) = record.backup
            {
                latest.insert(backup, record.outcome == Outcome::Ok);
            }
        }
        Ok(latest
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(backup, _)| backup)
            .collect())
    }
}
