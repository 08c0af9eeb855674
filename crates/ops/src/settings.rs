//! Where backups go and how they are made: the `BACKUP_*` variables.

use std::path::PathBuf;

use crate::BackupError;
use crate::encryption::{Identities, Recipients};
use crate::retention::RetentionPolicy;

/// The directory backups go to when `BACKUP_DIR` is not set: beside the embedded database, in a
/// directory git ignores.
pub const DEFAULT_BACKUP_DIR: &str = "data/backups";

/// Every variable [`BackupSettings::from_lookup`] reads, for `--help`.
pub const VARIABLES: &[&str] = &[
    "BACKUP_DIR",
    "BACKUP_PG_BIN_DIR",
    "BACKUP_AGE_RECIPIENTS",
    "BACKUP_AGE_RECIPIENTS_FILE",
    "BACKUP_AGE_IDENTITY_FILE",
    "BACKUP_KEEP_DAILY",
    "BACKUP_KEEP_WEEKLY",
    "BACKUP_KEEP_MONTHLY",
];

/// How backups are taken, kept and read back.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// `BACKUP_DIR`: the directory of backups, manifests and the record of runs (default
    /// `data/backups`).
    pub directory: PathBuf,
    /// `BACKUP_PG_BIN_DIR`: where `pg_dump` and `pg_restore` are. Unset: the server's major
    /// version under `/usr/lib/postgresql` (Debian's layout) when it exists, else `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
    /// `BACKUP_AGE_RECIPIENTS` (comma-separated `age1…` public keys) or
    /// `BACKUP_AGE_RECIPIENTS_FILE` (one per line): backups are encrypted to them when set.
    pub recipients: Option<Recipients>,
    /// `BACKUP_AGE_IDENTITY_FILE`: the file holding the private key that decrypts backups, read
    /// when a backup is verified or restored. Never logged.
    pub identity_file: Option<PathBuf>,
    /// `BACKUP_KEEP_DAILY`, `BACKUP_KEEP_WEEKLY`, `BACKUP_KEEP_MONTHLY` (7, 4, 12).
    pub retention: RetentionPolicy,
}

impl BackupSettings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Self, BackupError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BackupError> {
        let value = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let recipients = match (value("BACKUP_AGE_RECIPIENTS"), value("BACKUP_AGE_RECIPIENTS_FILE")) {
            (Some(_), Some(_)) => {
                return Err(BackupError::Settings(
                    "set BACKUP_AGE_RECIPIENTS or BACKUP_AGE_RECIPIENTS_FILE, not both".to_owned(),
                ));
            }
            (Some(list), None) => Some(Recipients::parse("BACKUP_AGE_RECIPIENTS", &list)?),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(&file).map_err(|error| {
                    BackupError::Settings(format!("cannot read BACKUP_AGE_RECIPIENTS_FILE {file}: {error}"))
                })?;
                Some(Recipients::parse("BACKUP_AGE_RECIPIENTS_FILE", &text)?)
            }
            (None, None) => None,
        };
        let count = |name: &str, default: u32| match value(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<u32>()
                .map_err(|_| BackupError::Settings(format!("{name} must be a whole number of backups, not {text:?}"))),
        };
        let defaults = RetentionPolicy::default();
        let retention = RetentionPolicy::new(
            count("BACKUP_KEEP_DAILY", defaults.daily)?,
            count("BACKUP_KEEP_WEEKLY", defaults.weekly)?,
            count("BACKUP_KEEP_MONTHLY", defaults.monthly)?,
        )
        .map_err(|error| BackupError::Settings(error.to_string()))?;
        Ok(Self {
            directory: PathBuf::from(value("BACKUP_DIR").unwrap_or_else(|| DEFAULT_BACKUP_DIR.to_owned())),
            pg_bin_dir: value("BACKUP_PG_BIN_DIR").map(PathBuf::from),
            recipients,
            identity_file: value("BACKUP_AGE_IDENTITY_FILE").map(PathBuf::from),
            retention,
        })
    }

    /// Settings for `directory` with every other setting at its default: no encryption.
    #[must_use]
    pub fn in_directory(directory: impl Into<PathBuf>) -> Self {
        Self {
            directory: directory.into(),
            pg_bin_dir: None,
            recipients: None,
            identity_file: None,
            retention: RetentionPolicy::default(),
        }
    }

    /// The identities that decrypt encrypted backups, read from `BACKUP_AGE_IDENTITY_FILE`.
    pub fn identities(&self) -> Result<Identities, BackupError> {
        let file = self.identity_file.as_ref().ok_or_else(|| {
            BackupError::Settings(
                "the backup is encrypted: set BACKUP_AGE_IDENTITY_FILE to the file of its key".to_owned(),
            )
        })?;
        Identities::from_file(file)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<BackupSettings, BackupError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        BackupSettings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_nothing() {
        let settings = settings(&[]).expect("defaults");
        assert_eq!(settings.directory, PathBuf::from(DEFAULT_BACKUP_DIR));
        assert!(settings.recipients.is_none());
        assert_eq!(settings.retention, RetentionPolicy::default());
    }

    #[test]
    fn bad_values_are_named() {
        for (pairs, expected) in [
            (
                vec![("BACKUP_KEEP_DAILY", "seven")],
                "BACKUP_KEEP_DAILY must be a whole number",
            ),
            (
                vec![
                    ("BACKUP_KEEP_DAILY", "0"),
                    ("BACKUP_KEEP_WEEKLY", "0"),
                    ("BACKUP_KEEP_MONTHLY", "0"),
                ],
                "keeps nothing",
            ),
            (vec![("BACKUP_AGE_RECIPIENTS", "not-a-key")], "BACKUP_AGE_RECIPIENTS"),
            (
                vec![("BACKUP_AGE_RECIPIENTS", "x"), ("BACKUP_AGE_RECIPIENTS_FILE", "y")],
                "not both",
            ),
        ] {
            let error = settings(&pairs).expect_err("refused").to_string();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
    }
}
