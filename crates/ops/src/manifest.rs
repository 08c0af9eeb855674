//! The manifest written beside every backup, and the directory that holds them.
//!
//! A backup is complete only when its manifest exists: the file is written under a temporary
//! name, synced and renamed, and the manifest after it the same way, so a backup that failed
//! halfway leaves nothing that [`BackupDirectory::list`] returns.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::BackupError;

/// The manifest format this code writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

const MANIFEST_SUFFIX: &str = ".manifest.json";
const PARTIAL_SUFFIX: &str = ".partial";

/// What a backup holds, written beside it as `<id>.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The backup's name: the UTC time it was taken, `20261201T170412123Z`.
    pub id: String,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
    /// `postgres` or `sqlite`.
    pub backend: String,
    /// The database, with any password redacted.
    pub database: String,
    /// The server's version (`15.19`), or SQLite's library version.
    pub server_version: String,
    /// The tool that wrote the file: `pg_dump (PostgreSQL) 15.19`, or `VACUUM INTO (SQLite 3.50.4)`.
    pub tool: String,
    /// The applied migrations at that moment, oldest first.
    pub migrations: Vec<String>,
    /// The exact row count of every table, counted in the snapshot the file holds.
    pub row_counts: BTreeMap<String, u64>,
    /// [`migrator::Catalog::digest`] of the schema in that snapshot.
    pub schema_digest: String,
    /// The backup file.
    pub file: BackupFile,
    /// How the file is encrypted, if it is.
    pub encryption: Option<Encryption>,
    /// How long taking the backup took.
    pub duration_ms: u64,
}

/// The backup file that a manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Its name in the backup directory.
    pub name: String,
    /// Its size in bytes, as written (encrypted, if it is).
    pub size: u64,
    /// The SHA-256 of its bytes as written (lower-case hex).
    pub sha256: String,
    /// `pg_dump custom` or `sqlite database`.
    pub format: String,
}

/// How a backup file is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always `age`.
    pub scheme: String,
    /// The public keys it is encrypted to.
    pub recipients: Vec<String>,
}

/// A directory of backups, their manifests and the record of runs.
#[derive(Debug, Clone)]
pub struct BackupDirectory {
    path: PathBuf,
}

impl BackupDirectory {
    /// The directory at `path` (created when a backup is first written).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory if it is missing.
    pub fn create(&self) -> Result<(), BackupError> {
        fs::create_dir_all(&self.path)
            .map_err(|error| BackupError::io(format!("cannot create {}", self.path.display()), error))
    }

    /// The path of a file in the directory.
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The temporary name a file is written under before it is complete.
    #[must_use]
    pub fn partial(&self, name: &str) -> PathBuf {
        self.path.join(format!(".{name}{PARTIAL_SUFFIX}"))
    }

    /// The manifest path of backup `id`.
    #[must_use]
    pub fn manifest_path(&self, id: &str) -> PathBuf {
        self.path.join(format!("{id}{MANIFEST_SUFFIX}"))
    }

    /// Every complete backup, newest first. A manifest that cannot be read is an error that
    /// names it, not a backup silently skipped.
    pub fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(BackupError::io(format!("cannot read {}", self.path.display()), error)),
        };
        let mut manifests = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|error| BackupError::io(format!("cannot read {}", self.path.display()), error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(MANIFEST_SUFFIX)
                && is_backup_id(id)
            {
                manifests.push(self.read(id)?);
            }
        }
        manifests.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then_with(|| b.id.cmp(&a.id)));
        Ok(manifests)
    }

    /// The manifest of backup `id`. Ids are what `backup` names backups (`20261201T170412123Z`);
    /// anything else, a path included, is no backup. A manifest whose own id or file name is not
    /// that backup's is refused: it cannot point a verification or a prune outside the directory.
    pub fn read(&self, id: &str) -> Result<Manifest, BackupError> {
        if !is_backup_id(id) {
            return Err(BackupError::NotFound(format!(
                "no backup {id:?} in {}: a backup id looks like 20261201T170412123Z",
                self.path.display()
            )));
        }
        let path = self.manifest_path(id);
        let text = fs::read_to_string(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                BackupError::NotFound(format!("no backup {id} in {}", self.path.display()))
            } else {
                BackupError::io(format!("cannot read {}", path.display()), error)
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|error| BackupError::Manifest(format!("{} is not a backup manifest: {error}", path.display())))?;
        let expected_names = [".dump", ".dump.age", ".sqlite3", ".sqlite3.age"].map(|suffix| format!("{id}{suffix}"));
        if manifest.id != id || !expected_names.contains(&manifest.file.name) {
            return Err(BackupError::Manifest(format!(
                "{} describes backup {:?} with file {:?}: a manifest must describe its own backup, in this directory",
                path.display(),
                manifest.id,
                manifest.file.name
            )));
        }
        if manifest.format != MANIFEST_FORMAT {
            return Err(BackupError::Manifest(format!(
                "{} has manifest format {}; this dbctl reads format {MANIFEST_FORMAT}",
                path.display(),
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Backup `id`, or the newest when `id` is `None`.
    pub fn find(&self, id: Option<&str>) -> Result<Manifest, BackupError> {
        match id {
            Some(id) => self.read(id),
            None => self
                .list()?
                .into_iter()
                .next()
                .ok_or_else(|| BackupError::NotFound(format!("no backup in {}", self.path.display()))),
        }
    }

    /// Writes `manifest` under a temporary name, syncs it and renames it into place: from then
    /// on the backup is complete.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let name = format!("{}{MANIFEST_SUFFIX}", manifest.id);
        let partial = self.partial(&name);
        let text = serde_json::to_vec_pretty(manifest).expect("a manifest is plain data and always serialises");
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::backup::PRIVATE)
                .open(&partial)?;
            file.write_all(&text)?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        write().map_err(|error| BackupError::io(format!("cannot write {}", partial.display()), error))?;
        self.commit(&partial, &name)
    }

    /// Renames a synced temporary file to `name` and syncs the directory, so the rename
    /// survives a crash.
    pub fn commit(&self, partial: &Path, name: &str) -> Result<(), BackupError> {
        let target = self.file(name);
        fs::rename(partial, &target).map_err(|error| {
            BackupError::io(
                format!("cannot rename {} to {}", partial.display(), target.display()),
                error,
            )
        })?;
        File::open(&self.path)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| BackupError::io(format!("cannot sync {}", self.path.display()), error))
    }

    /// Removes backup `id`: its manifest first (from then on it is no longer a backup), then
    /// its file.
    pub fn remove(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let manifest_path = self.manifest_path(&manifest.id);
        fs::remove_file(&manifest_path)
            .map_err(|error| BackupError::io(format!("cannot remove {}", manifest_path.display()), error))?;
        let file = self.file(&manifest.file.name);
        match fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(BackupError::io(format!("cannot remove {}", file.display()), error))
            }
            _ => Ok(()),
        }
    }
}

/// Whether `id` has the form `backup` gives ids: `YYYYMMDDTHHMMSSmmmZ`.
#[must_use]
pub fn is_backup_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 19
        && bytes[8] == b'T'
        && bytes[18] == b'Z'
        && bytes[..8].iter().chain(&bytes[9..18]).all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::is_backup_id;

    #[test]
    fn only_backup_ids_name_backups() {
        for (id, valid) in [
            ("20261201T170412123Z", true),
            ("../outside/x", false),
            ("/tmp/x", false),
            ("20261201T170412123Z/../../x", false),
            ("2026120XT170412123Z", false),
            ("", false),
        ] {
            assert_eq!(is_backup_id(id), valid, "{id}");
        }
    }
}
