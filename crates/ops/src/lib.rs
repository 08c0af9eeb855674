#![doc = include_str!("../README.md")]

pub mod backup;
pub mod encryption;
pub mod health;
pub mod manifest;
pub mod offsite;
pub mod pitr;
pub mod records;
pub mod restore;
pub mod retention;
pub mod settings;
mod sql;
mod tools;
pub mod verify;

pub use backup::backup;
pub use manifest::{BackupDirectory, Manifest};
pub use restore::{RestoreReport, restore};
pub use settings::BackupSettings;
pub use verify::{Check, CheckOutcome, Verification, verify};

/// Why a backup, verification, restore or prune could not be done. Messages name the file, the
/// setting or the tool involved, and never hold a password or a private key.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A `BACKUP_*` setting is missing or invalid.
    #[error("{0}")]
    Settings(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The database could not be reached.
    #[error(transparent)]
    Pool(#[from] database::PoolError),
    /// A credential file of the configuration could not be read.
    #[error(transparent)]
    Config(#[from] database::ConfigError),
    /// A query of the backup itself failed.
    #[error("{context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// diesel's error.
        source: diesel::result::Error,
    },
    /// `pg_dump`, `pg_restore` or another tool is missing, too old, or failed.
    #[error("{0}")]
    Tool(String),
    /// The backup could not be encrypted.
    #[error("cannot encrypt the backup: {0}")]
    Encryption(String),
    /// The backup could not be decrypted (wrong key, or a damaged file).
    #[error("cannot decrypt the backup: {0}")]
    Decryption(String),
    /// A manifest could not be read.
    #[error("{0}")]
    Manifest(String),
    /// No such backup.
    #[error("{0}")]
    NotFound(String),
    /// The backup file is not the one its manifest describes.
    #[error("{0}")]
    Damaged(String),
    /// The operation was refused to protect data (a restore target that holds tables).
    #[error("{0}")]
    Refused(String),
    /// The off-site copy failed.
    #[error(transparent)]
    Offsite(#[from] offsite::OffsiteError),
}

impl BackupError {
    pub(crate) fn io(context: String, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }

    pub(crate) fn database(context: &str) -> impl FnOnce(diesel::result::Error) -> Self + '_ {
        move |source| Self::Database {
            context: context.to_owned(),
            source,
        }
    }
}

/// Milliseconds since `start`, for manifests and records.
pub(crate) fn elapsed_ms(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
