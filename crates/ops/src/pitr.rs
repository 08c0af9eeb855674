//! Point-in-time recovery for PostgreSQL, as PostgreSQL documents it ("Continuous Archiving and
//! Point-in-Time Recovery"): WAL segments archived by `archive_command`, a base backup taken with
//! `pg_basebackup`, and a recovery that replays the archive up to `recovery_target_time`.
//!
//! * [`archive_command`] is the primary's setting, `test ! -f "ARCH/%f" && cp "%p" "ARCH/%f"`
//!   (the example of the PostgreSQL documentation, with the archive's path quoted).
//! * [`base_backup`] runs `pg_basebackup --checkpoint=fast --wal-method=stream` and then
//!   `pg_verifybackup` on the result.
//! * [`prepare_recovery`] copies a base backup into a new data directory, appends the recovery
//!   settings to its `postgresql.auto.conf` and creates `recovery.signal`. It does not start the
//!   server: [`PreparedRecovery::next_steps`] are the commands the operator runs next.
//!
//! # What a recovery restores
//!
//! The recovered server replays every transaction that committed **before** the target time and
//! none that committed at or after it: `recovery_target_inclusive = 'false'` makes recovery stop
//! just before the first commit whose timestamp is at or after the target. It then promotes
//! (`recovery_target_action = 'promote'`) and accepts writes on a new timeline. If the archive
//! ends before a commit at or after the target was replayed, PostgreSQL 13 and later stop with
//! `FATAL: recovery ended before configured recovery target was reached` instead of promoting, so
//! the last transaction of interest must be followed by another commit, and the segment holding
//! it must be archived (`SELECT pg_switch_wal()` closes the current segment).
//!
//! The recovered server does not archive (`archive_mode = 'off'` is appended as well): it would
//! otherwise write its new timeline (a `.history` file within seconds of promoting, then WAL) into
//! the archive it was restored from, which is usually the primary's, and a later recovery from
//! that archive with the default `recovery_target_timeline = 'latest'` follows the newest
//! timeline it finds there, which could be a drill's. A recovered server that is to become the
//! new primary gets `archive_mode` and [`archive_command`] back by hand, then a restart.
//!
//! # Quoting
//!
//! Paths end up in two languages at once: a shell command (the server runs `restore_command` and
//! `archive_command` with `/bin/sh -c`) inside a `postgresql.conf` string. Each path is written
//! in shell double quotes, with `\`, `"`, `$` and `` ` `` escaped by a backslash and `%` doubled
//! (the server replaces `%f`, `%p` and `%%` before running the command). The whole command is
//! then a `postgresql.conf` string: single quotes and backslashes doubled, as `ALTER SYSTEM`
//! writes them. A path with a newline or carriage return cannot be written into a configuration
//! line and is refused, as is a path that is not UTF-8.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, TimeDelta};

const PG_BASEBACKUP: &str = "pg_basebackup";
const PG_CTL: &str = "pg_ctl";
const PG_VERIFYBACKUP: &str = "pg_verifybackup";
/// The file `pg_basebackup` writes at the top of a plain-format backup.
const BACKUP_LABEL: &str = "backup_label";
/// The most of a failed command's standard error kept in [`PitrError::CommandFailed`].
const STDERR_LIMIT: usize = 4000;
/// The widest permissions the recovered data directory gets: PostgreSQL refuses a data
/// directory that its group may write or the world may read (0700, or 0750 with group access).
const DATA_DIR_MODE_MASK: u32 = 0o750;
/// Files of the base backup that are not copied: `recovery.signal` is written anew, and a
/// `standby.signal` (from `pg_basebackup -R`) would make the server a standby that never promotes.
const NOT_COPIED: [&str; 3] = ["recovery.signal", "standby.signal", "postmaster.pid"];

/// Why a backup or the preparation of a recovery failed. No message contains a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PitrError {
    /// A PostgreSQL client program is not in the given directory or on `PATH`.
    #[error("{name} not found {searched}")]
    MissingBinary {
        /// The program, for example `pg_basebackup`.
        name: &'static str,
        /// Where it was looked for: `in /usr/lib/postgresql/15/bin` or `on PATH`.
        searched: String,
    },
    /// The connection URL cannot be used; the reason never repeats the URL.
    #[error("invalid connection url: {reason}")]
    InvalidConnectionUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A directory that must be new or empty has files in it.
    #[error("{} is not empty", path.display())]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A path that must be a directory is something else, or does not exist.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A directory is not a plain-format base backup of PostgreSQL 12 or later.
    #[error("{} is not a usable base backup: {reason}", path.display())]
    NotABaseBackup {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The data directory would be created inside the base backup it is copied from.
    #[error("the data directory {} lies inside the base backup {}", data_dir.display(), base_backup.display())]
    DataDirInsideBackup {
        /// The data directory.
        data_dir: PathBuf,
        /// The base backup.
        base_backup: PathBuf,
    },
    /// A path cannot be written into a `postgresql.conf` setting.
    #[error("{} cannot be used in a postgresql.conf setting: {reason}", path.display())]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// Why: it has a newline, or it is not UTF-8.
        reason: &'static str,
    },
    /// A value cannot be written into a `postgresql.conf` setting.
    #[error("the value of {name} cannot be written into postgresql.conf: it contains a line break")]
    UnsafeValue {
        /// The setting's name.
        name: String,
    },
    /// The recovery target lies before the base backup started, so no replay can reach it.
    #[error("the recovery target {target} is before the base backup started ({backup_start})")]
    TargetBeforeBackup {
        /// The requested target, RFC 3339.
        target: String,
        /// The backup's start, RFC 3339.
        backup_start: String,
    },
    /// `backup_label` lacks a line or has one that cannot be read.
    #[error("{} is malformed: {reason}", path.display())]
    MalformedBackupLabel {
        /// The `backup_label` file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The base backup holds a file that is neither a regular file, a directory nor a symlink.
    #[error("{} is not a regular file, directory or symbolic link", path.display())]
    UnsupportedFile {
        /// The file.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted, for example `read` or `create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program's path.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        /// The program's name.
        program: &'static str,
        /// How it ended.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
}

/// A verified base backup, as [`base_backup`] made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackup {
    /// The backup's directory.
    pub path: PathBuf,
    /// The size of its files in bytes, WAL included.
    pub size_bytes: u64,
    /// How long `pg_basebackup` and `pg_verifybackup` took together.
    pub duration: Duration,
    /// The `START TIME` of `backup_label` as written there, for example `2026-12-01 17:11:09 UTC`
    /// (the zone is the server's `log_timezone`, as an abbreviation).
    pub start_time_label: String,
    /// The same moment, when its zone abbreviation names an offset unambiguously (`UTC`, `GMT`
    /// or a numeric one such as `+0545`); `None` for abbreviations such as `CET` or `EST`.
    pub started_at: Option<DateTime<FixedOffset>>,
}

/// Takes a base backup of the server at `connection_url` into `target_dir` and verifies it.
///
/// Runs `pg_basebackup -D target_dir --checkpoint=fast --wal-method=stream --no-password -d URL`
/// and then `pg_verifybackup target_dir`. The programs are looked up in `pg_bin_dir` when given,
/// else on `PATH`; both are looked up before anything runs. A password in the URL (user info or
/// a `password` query parameter) is removed from it and passed in `PGPASSWORD` instead, so it
/// never appears in a process list. The URL must be a `postgres://` or `postgresql://` URL.
///
/// `target_dir` must not exist or be empty. When `pg_verifybackup` fails the backup is left in
/// place for inspection; the error says why it failed.
pub fn base_backup(
    pg_bin_dir: Option<&Path>,
    connection_url: &str,
    target_dir: &Path,
) -> Result<BaseBackup, PitrError> {
    let pg_basebackup = find_binary(pg_bin_dir, PG_BASEBACKUP)?;
    let pg_verifybackup = find_binary(pg_bin_dir, PG_VERIFYBACKUP)?;
    let (url, password) = split_password(connection_url)?;
    ensure_new_or_empty(target_dir)?;

    let started = Instant::now();
    let mut command = Command::new(&pg_basebackup);
    command
        .arg("-D")
        .arg(target_dir)
        .args(["--checkpoint=fast", "--wal-method=stream", "--no-password", "-d", &url]);
    if let Some(password) = &password {
        command.env("PGPASSWORD", password);
    }
    run(&mut command, PG_BASEBACKUP, &pg_basebackup)?;
    run(
        Command::new(&pg_verifybackup).arg(target_dir),
        PG_VERIFYBACKUP,
        &pg_verifybackup,
    )?;
    let duration = started.elapsed();

    let size_bytes = tree_size(target_dir)?;
    let (start_time_label, started_at) = read_start_time(&target_dir.join(BACKUP_LABEL))?;
    Ok(BaseBackup {
        path: target_dir.to_path_buf(),
        size_bytes,
        duration,
        start_time_label,
        started_at,
    })
}

/// What to recover, from where, into where, and up to when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// A plain-format base backup, as [`base_backup`] makes it. It is copied, never changed.
    pub base_backup: PathBuf,
    /// The directory `archive_command` copied WAL segments into.
    pub wal_archive: PathBuf,
    /// The new data directory: must not exist, or be empty.
    pub data_dir: PathBuf,
    /// Recovery replays the transactions that committed before this moment and none after.
    pub target_time: DateTime<FixedOffset>,
    /// The port the recovered server listens on (written to `postgresql.auto.conf`), so that it
    /// does not collide with the server the base backup came from; `None` keeps the backup's.
    pub port: Option<u16>,
}

/// A data directory ready to recover, as [`prepare_recovery`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRecovery {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The bytes copied from the base backup.
    pub copied_bytes: u64,
    /// The lines appended to `postgresql.auto.conf`, in order.
    pub settings: Vec<String>,
    /// What the operator runs next, in order.
    pub next_steps: Vec<NextStep>,
    /// What the operator should know that is not a command.
    pub notes: Vec<String>,
}

/// One command for the operator to run, as data: the CLI prints [`NextStep::command_line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    /// Why, in a few words.
    pub purpose: String,
    /// The program, for example `pg_ctl`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl NextStep {
    /// The command as a shell line: arguments with characters other than letters, digits and
    /// `/._-+=:,@%` are single-quoted.
    #[must_use]
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(shell_word)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for NextStep {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}  # {}", self.command_line(), self.purpose)
    }
}

/// Makes `plan.data_dir` a copy of the base backup that recovers to `plan.target_time` and
/// promotes when started; see the [module documentation](self) for what is restored.
///
/// Refuses an existing non-empty data directory, a base backup without `backup_label` or older
/// than PostgreSQL 12, a missing archive, a target before the backup started, and paths that
/// cannot be written into `postgresql.conf`. Everything is checked before anything is written.
/// The copy keeps files' permissions and symbolic links (a tablespace's link keeps its target)
/// and gives the data directory the backup's mode without group write or world access (0700 for
/// a backup of a cluster without group access). It then appends to `postgresql.auto.conf`:
///
/// ```text
/// restore_command = 'cp "<archive>/%f" "%p"'
/// recovery_target_time = '<target, RFC 3339 with offset>'
/// recovery_target_inclusive = 'false'
/// recovery_target_action = 'promote'
/// archive_mode = 'off'
/// ```
///
/// and creates `recovery.signal`. On failure, whatever it copied is removed again.
///
/// The archive's path is made absolute (the server runs `restore_command` in the data
/// directory). The files belong to the user running this; a server running as another user
/// needs them handed over first, which is the first of [`PreparedRecovery::next_steps`].
pub fn prepare_recovery(plan: &RecoveryPlan) -> Result<PreparedRecovery, PitrError> {
    let base_backup = &plan.base_backup;
    let label = base_backup.join(BACKUP_LABEL);
    if !base_backup.is_dir() {
        return Err(PitrError::NotADirectory {
            path: base_backup.clone(),
        });
    }
    if !label.is_file() {
        return Err(PitrError::NotABaseBackup {
            path: base_backup.clone(),
            reason: format!("it has no {BACKUP_LABEL} (only plain-format backups can be copied)"),
        });
    }
    check_server_version(base_backup)?;
    let archive = fs::canonicalize(&plan.wal_archive).map_err(|source| PitrError::Io {
        action: "find the wal archive",
        path: plan.wal_archive.clone(),
        source,
    })?;
    if !archive.is_dir() {
        return Err(PitrError::NotADirectory { path: archive });
    }
    let data_dir_text = conf_path(&plan.data_dir)?;
    let restore = restore_command(&archive)?;
    let target = format_target_time(plan.target_time);
    if let (_, Some(backup_start)) = read_start_time(&label)?
        && plan.target_time < backup_start
    {
        return Err(PitrError::TargetBeforeBackup {
            target,
            backup_start: backup_start.to_rfc3339(),
        });
    }
    let settings = vec![
        conf_line("restore_command", &restore)?,
        conf_line("recovery_target_time", &target)?,
        conf_line("recovery_target_inclusive", "false")?,
        conf_line("recovery_target_action", "promote")?,
        conf_line("archive_mode", "off")?,
    ];
    let mut settings = settings;
    if let Some(port) = plan.port {
        settings.push(conf_line("port", &port.to_string())?);
    }
    let created = ensure_new_or_empty(&plan.data_dir)?;
    refuse_nested(&plan.data_dir, base_backup)?;

    let data_dir_mode = fs::metadata(base_backup)
        .map_err(|source| io_error("read", base_backup, source))?
        .permissions()
        .mode()
        & DATA_DIR_MODE_MASK;
    let prepared = (|| {
        if created {
            if let Some(parent) = plan.data_dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|source| io_error("create", parent, source))?;
            }
            DirBuilder::new()
                .mode(data_dir_mode)
                .create(&plan.data_dir)
                .map_err(|source| io_error("create", &plan.data_dir, source))?;
        }
        fs::set_permissions(&plan.data_dir, fs::Permissions::from_mode(data_dir_mode))
            .map_err(|source| io_error("set the permissions of", &plan.data_dir, source))?;
        let copied_bytes = copy_tree(base_backup, &plan.data_dir, true)?;
        append_settings(&plan.data_dir.join("postgresql.auto.conf"), &settings, &target)?;
        let signal = plan.data_dir.join("recovery.signal");
        File::create(&signal).map_err(|source| io_error("create", &signal, source))?;
        Ok(copied_bytes)
    })();
    let copied_bytes = match prepared {
        Ok(bytes) => bytes,
        Err(error) => {
            undo_copy(&plan.data_dir, created);
            return Err(error);
        }
    };

    Ok(PreparedRecovery {
        data_dir: plan.data_dir.clone(),
        copied_bytes,
        settings,
        next_steps: next_steps(data_dir_text, plan.port),
        notes: vec![
            format!(
                "the server replays the archive up to {target}, stops before the first commit at or after it, and \
                 promotes; its log names the stop point (\"recovery stopping before commit of transaction ...\")"
            ),
            "if the archive ends before that point the server stops with \"recovery ended before configured \
             recovery target was reached\": archive more wal, or choose an earlier target"
                .to_owned(),
            "archive_mode is off on the recovered server; to make it the new primary, set archive_mode = on and \
             archive_command, then restart it"
                .to_owned(),
        ],
    })
}

/// The primary's `archive_command` for `archive_dir`, as the PostgreSQL documentation gives it:
/// `test ! -f "ARCH/%f" && cp "%p" "ARCH/%f"`, with the path quoted as the
/// [module documentation](self) describes. This is the setting's value; [`conf_line`] makes it a
/// `postgresql.conf` line, and `ALTER SYSTEM SET archive_command = …` takes it as a SQL string.
///
/// The path is used as given: it should be absolute, because the server runs the command in its
/// data directory. Refuses a path with a line break or that is not UTF-8.
pub fn archive_command(archive_dir: &Path) -> Result<String, PitrError> {
    let archive = shell_quoted_path(archive_dir)?;
    Ok(format!(r#"test ! -f "{archive}/%f" && cp "%p" "{archive}/%f""#))
}

/// `name = 'value'` for `postgresql.conf` or `postgresql.auto.conf`: the value's single quotes
/// and backslashes doubled, as `ALTER SYSTEM` writes them. Refuses a value with a line break,
/// which no configuration line can hold.
pub fn conf_line(name: &str, value: &str) -> Result<String, PitrError> {
    if value.contains(['\n', '\r']) {
        return Err(PitrError::UnsafeValue { name: name.to_owned() });
    }
    Ok(format!("{name} = '{}'", value.replace('\\', r"\\").replace('\'', "''")))
}

/// `cp "ARCH/%f" "%p"`, the archive's path quoted.
fn restore_command(archive: &Path) -> Result<String, PitrError> {
    let archive = shell_quoted_path(archive)?;
    Ok(format!(r#"cp "{archive}/%f" "%p""#))
}

/// The target as RFC 3339 with its offset, in whole microseconds (PostgreSQL's precision), rounded
/// up, so that "committed before the target" means the same to the server as to the caller.
fn format_target_time(target: DateTime<FixedOffset>) -> String {
    let sub_micros = i64::from(target.timestamp_subsec_nanos() % 1000);
    let rounded = if sub_micros == 0 {
        Some(target)
    } else {
        target.checked_add_signed(TimeDelta::nanoseconds(1000 - sub_micros))
    };
    rounded.unwrap_or(target).to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// A path as UTF-8 text for a configuration line: refuses line breaks and other encodings.
fn conf_path(path: &Path) -> Result<&str, PitrError> {
    let text = path.to_str().ok_or_else(|| PitrError::UnsafePath {
        path: path.to_path_buf(),
        reason: "it is not valid utf-8",
    })?;
    if text.contains(['\n', '\r']) {
        return Err(PitrError::UnsafePath {
            path: path.to_path_buf(),
            reason: "it contains a line break",
        });
    }
    Ok(text)
}

/// The path for the inside of shell double quotes in a command the server expands: `\`, `"`,
/// `$` and `` ` `` escaped, `%` doubled, a trailing `/` dropped (the caller appends `/%f`).
fn shell_quoted_path(path: &Path) -> Result<String, PitrError> {
    let text = conf_path(path)?;
    let trimmed = match text.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let mut quoted = String::with_capacity(trimmed.len() + 8);
    for character in trimmed.chars() {
        match character {
            '\\' | '"' | '$' | '`' => {
                quoted.push('\\');
                quoted.push(character);
            }
            '%' => quoted.push_str("%%"),
            other => quoted.push(other),
        }
    }
    Ok(if quoted == "/" { String::new() } else { quoted })
}

/// A word for a shell line, single-quoted unless it is plainly safe.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "/._-+=:,@%".contains(character));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn next_steps(data_dir: &str, port: Option<u16>) -> Vec<NextStep> {
    let program = |name: &'static str| {
        find_binary(None, name).map_or_else(|_| name.to_owned(), |path| path.display().to_string())
    };
    let mut psql = vec!["-h".to_owned(), "127.0.0.1".to_owned()];
    if let Some(port) = port {
        psql.extend(["-p".to_owned(), port.to_string()]);
    }
    psql.extend([
        "-U".to_owned(),
        "postgres".to_owned(),
        "-Atc".to_owned(),
        "SELECT pg_is_in_recovery()".to_owned(),
    ]);
    vec![
        NextStep {
            purpose: "hand the data directory to the server's user, if that is not the user who prepared it".to_owned(),
            program: "chown".to_owned(),
            args: vec!["-R".to_owned(), "postgres:postgres".to_owned(), data_dir.to_owned()],
        },
        NextStep {
            purpose: match port {
                Some(port) => format!(
                    "start the server as its user (runuser -u postgres -- …), on port {port}: it replays the archive \
                     up to the target, then promotes"
                ),
                None => "start the server as its user (runuser -u postgres -- …), after choosing a port of its own \
                         in postgresql.auto.conf if the backup's server runs on this host: it replays the archive up \
                         to the target, then promotes"
                    .to_owned(),
            },
            program: program(PG_CTL),
            args: vec![
                "-D".to_owned(),
                data_dir.to_owned(),
                "-l".to_owned(),
                format!("{data_dir}/recovery.log"),
                "start".to_owned(),
            ],
        },
        NextStep {
            purpose: "prints f once recovery has finished and the server promoted".to_owned(),
            program: "psql".to_owned(),
            args: psql,
        },
    ]
}

/// Splits a `postgres://` URL into the URL without a password and the password, percent-decoded.
fn split_password(connection_url: &str) -> Result<(String, Option<String>), PitrError> {
    crate::tools::split_password(connection_url).map_err(|reason| PitrError::InvalidConnectionUrl {
        reason: reason.to_owned(),
    })
}

/// The program in `bin_dir`, or on `PATH`.
fn find_binary(bin_dir: Option<&Path>, name: &'static str) -> Result<PathBuf, PitrError> {
    let is_executable = |path: &Path| {
        fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    if let Some(bin_dir) = bin_dir {
        let path = bin_dir.join(name);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(PitrError::MissingBinary {
                name,
                searched: format!("in {}", bin_dir.display()),
            })
        };
    }
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|directory| directory.join(name))
        .find(|path| is_executable(path));
    // Debian keeps the server-side programs (pg_verifybackup, pg_ctl) off PATH, under
    // /usr/lib/postgresql/<major>/bin: the newest major there.
    let debian = || {
        fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
                let path = entry.path().join("bin").join(name);
                is_executable(&path).then_some((major, path))
            })
            .max_by_key(|(major, _)| *major)
            .map(|(_, path)| path)
    };
    on_path.or_else(debian).ok_or(PitrError::MissingBinary {
        name,
        searched: "on PATH and in /usr/lib/postgresql/<major>/bin".to_owned(),
    })
}

/// Runs a client program to completion; its standard error is the message of a failure.
fn run(command: &mut Command, name: &'static str, program: &Path) -> Result<Output, PitrError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PitrError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    let start = stderr
        .char_indices()
        .map(|(index, _)| index)
        .find(|index| stderr.len() - index <= STDERR_LIMIT)
        .unwrap_or(stderr.len());
    Err(PitrError::CommandFailed {
        program: name,
        status: output.status.to_string(),
        stderr: stderr[start..].to_owned(),
    })
}

/// Ok(true) when `path` does not exist, Ok(false) when it is an empty directory.
fn ensure_new_or_empty(path: &Path) -> Result<bool, PitrError> {
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(io_error("inspect", path, source)),
        Ok(metadata) if !metadata.is_dir() => Err(PitrError::NotADirectory {
            path: path.to_path_buf(),
        }),
        Ok(_) => {
            let mut entries = fs::read_dir(path).map_err(|source| io_error("read", path, source))?;
            if entries.next().is_some() {
                Err(PitrError::NotEmpty {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(false)
            }
        }
    }
}

/// Refuses a data directory at or inside the base backup (the copy would never end).
fn refuse_nested(data_dir: &Path, base_backup: &Path) -> Result<(), PitrError> {
    let base = fs::canonicalize(base_backup).map_err(|source| io_error("find", base_backup, source))?;
    // The data directory may not exist yet: resolve its nearest existing ancestor.
    let mut existing = data_dir.to_path_buf();
    let mut rest = Vec::new();
    let resolved = loop {
        match fs::canonicalize(&existing) {
            Ok(resolved) => break Some(resolved),
            Err(_) => match (existing.file_name().map(OsStr::to_os_string), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = if parent.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        parent.to_path_buf()
                    };
                }
                _ => break None,
            },
        }
    };
    if let Some(mut resolved) = resolved {
        resolved.extend(rest.iter().rev());
        if resolved.starts_with(&base) {
            return Err(PitrError::DataDirInsideBackup {
                data_dir: data_dir.to_path_buf(),
                base_backup: base_backup.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Refuses a backup of a server older than 12, which used `recovery.conf` instead.
fn check_server_version(base_backup: &Path) -> Result<(), PitrError> {
    let path = base_backup.join("PG_VERSION");
    let version = fs::read_to_string(&path).map_err(|_| PitrError::NotABaseBackup {
        path: base_backup.to_path_buf(),
        reason: "it has no readable PG_VERSION".to_owned(),
    })?;
    match version
        .trim()
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
    {
        Some(major) if major >= 12 => Ok(()),
        Some(major) => Err(PitrError::NotABaseBackup {
            path: base_backup.to_path_buf(),
            reason: format!("it is from PostgreSQL {major}; before 12, recovery was configured in recovery.conf"),
        }),
        None => Err(PitrError::NotABaseBackup {
            path: base_backup.to_path_buf(),
            reason: format!("PG_VERSION holds {:?}", version.trim()),
        }),
    }
}

/// The `START TIME` line of `backup_label`: as written, and as a moment when its zone is clear.
fn read_start_time(label: &Path) -> Result<(String, Option<DateTime<FixedOffset>>), PitrError> {
    let contents = fs::read_to_string(label).map_err(|source| io_error("read", label, source))?;
    let malformed = |reason: String| PitrError::MalformedBackupLabel {
        path: label.to_path_buf(),
        reason,
    };
    let text = contents
        .lines()
        .find_map(|line| line.strip_prefix("START TIME:"))
        .map(str::trim)
        .ok_or_else(|| malformed("it has no START TIME line".to_owned()))?;
    let (local, zone) = text
        .rsplit_once(' ')
        .ok_or_else(|| malformed(format!("START TIME {text:?} has no time zone")))?;
    let local = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S")
        .map_err(|error| malformed(format!("START TIME {text:?}: {error}")))?;
    let started_at = zone_offset(zone).and_then(|offset| local.and_local_timezone(offset).single());
    Ok((text.to_owned(), started_at))
}

/// The offset a zone abbreviation stands for, when it stands for one only: `UTC`, `GMT`, `Z`, or
/// a numeric abbreviation such as `+03`, `-0330` or `+05:45`.
fn zone_offset(zone: &str) -> Option<FixedOffset> {
    if matches!(zone, "UTC" | "GMT" | "UCT" | "Z" | "Zulu" | "Universal") {
        return FixedOffset::east_opt(0);
    }
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits = digits.replacen(':', "", 1);
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    if minutes >= 60 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// The bytes of the regular files under `root` (symbolic links are not followed).
fn tree_size(root: &Path) -> Result<u64, PitrError> {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory).map_err(|source| io_error("read", &directory, source))? {
            let entry = entry.map_err(|source| io_error("read", &directory, source))?;
            let metadata = entry
                .metadata()
                .map_err(|source| io_error("inspect", &entry.path(), source))?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if metadata.is_file() {
                total += metadata.len();
            }
        }
    }
    Ok(total)
}

/// Copies the contents of `from` into the existing directory `to`: files with their permissions,
/// directories with theirs, symbolic links as links. Returns the bytes copied.
fn copy_tree(from: &Path, to: &Path, top: bool) -> Result<u64, PitrError> {
    let mut copied = 0;
    for entry in fs::read_dir(from).map_err(|source| io_error("read", from, source))? {
        let entry = entry.map_err(|source| io_error("read", from, source))?;
        let name = entry.file_name();
        if top && NOT_COPIED.iter().any(|skipped| name == OsStr::new(skipped)) {
            continue;
        }
        let source = entry.path();
        let destination = to.join(&name);
        let metadata = fs::symlink_metadata(&source).map_err(|error| io_error("inspect", &source, error))?;
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            fs::create_dir(&destination).map_err(|error| io_error("create", &destination, error))?;
            copied += copy_tree(&source, &destination, false)?;
            fs::set_permissions(&destination, metadata.permissions())
                .map_err(|error| io_error("set the permissions of", &destination, error))?;
        } else if file_type.is_file() {
            copied += fs::copy(&source, &destination).map_err(|error| io_error("copy", &source, error))?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(&source).map_err(|error| io_error("read", &source, error))?;
            symlink(&target, &destination).map_err(|error| io_error("create", &destination, error))?;
        } else {
            return Err(PitrError::UnsupportedFile { path: source });
        }
    }
    Ok(copied)
}

/// Appends the recovery settings under a comment, on a line of their own.
fn append_settings(path: &Path, settings: &[String], target: &str) -> Result<(), PitrError> {
    let existing = match fs::read(path) {
        Ok(contents) => contents,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(io_error("read", path, source)),
    };
    let mut text = String::new();
    if existing.last().is_some_and(|last| *last != b'\n') {
        text.push('\n');
    }
    text.push_str("# Point-in-time recovery to ");
    text.push_str(target);
    text.push_str(" (ops::pitr::prepare_recovery)\n");
    for setting in settings {
        text.push_str(setting);
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| io_error("open", path, source))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error("write", path, source))
}

/// Removes what a failed [`prepare_recovery`] copied; never fails (the error being returned
/// matters more than one from the clean-up).
fn undo_copy(data_dir: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(data_dir);
    } else if let Ok(entries) = fs::read_dir(data_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if entry.file_type().is_ok_and(|file_type| file_type.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> PitrError {
    PitrError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt as _;

    use chrono::TimeZone as _;

    use super::*;

    /// The value of a `name = '...'` line, de-escaped as PostgreSQL's configuration file parser
    /// does (`''` is `'`, a backslash escapes the next character).
    fn conf_value(line: &str) -> String {
        let (_, quoted) = line.split_once(" = '").expect("a quoted setting");
        let quoted = quoted.strip_suffix('\'').expect("a closing quote");
        let mut value = String::new();
        let mut characters = quoted.chars().peekable();
        while let Some(character) = characters.next() {
            match character {
                '\\' => value.push(characters.next().expect("a character after the backslash")),
                '\'' => {
                    assert_eq!(characters.next(), Some('\''), "a lone single quote in {line:?}");
                    value.push('\'');
                }
                other => value.push(other),
            }
        }
        value
    }

    /// What the server runs for `%f` = `file` and `%p` = `path`: placeholders are replaced left
    /// to right, `%%` being a `%`, as `replace_percent_placeholders` does.
    fn expand(command: &str, file: &str, path: &str) -> String {
        let mut expanded = String::new();
        let mut characters = command.chars();
        while let Some(character) = characters.next() {
            if character != '%' {
                expanded.push(character);
                continue;
            }
            match characters.next() {
                Some('f') => expanded.push_str(file),
                Some('p') => expanded.push_str(path),
                Some('%') | None => expanded.push('%'),
                Some(other) => {
                    expanded.push('%');
                    expanded.push(other);
                }
            }
        }
        expanded
    }

    #[test]
    fn a_single_quote_in_the_archive_path_is_doubled_in_the_configuration_line() {
        let restore = restore_command(Path::new("/srv/o'brien/wal")).expect("a path without a line break");
        assert_eq!(restore, r#"cp "/srv/o'brien/wal/%f" "%p""#);
        let line = conf_line("restore_command", &restore).expect("no line break");
        assert_eq!(line, r#"restore_command = 'cp "/srv/o''brien/wal/%f" "%p"'"#);
        assert_eq!(conf_value(&line), restore);

        let archive = archive_command(Path::new("/srv/o'brien/wal/")).expect("a path without a line break");
        assert_eq!(
            archive,
            r#"test ! -f "/srv/o'brien/wal/%f" && cp "%p" "/srv/o'brien/wal/%f""#
        );
        assert_eq!(
            conf_line("archive_command", &archive).expect("no line break"),
            r#"archive_command = 'test ! -f "/srv/o''brien/wal/%f" && cp "%p" "/srv/o''brien/wal/%f"'"#
        );
    }

    #[test]
    fn shell_and_placeholder_characters_in_the_path_are_escaped() {
        let restore = restore_command(Path::new(r#"/a b/"$x`\%f"#)).expect("no line break");
        assert_eq!(restore, r#"cp "/a b/\"\$x\`\\%%f/%f" "%p""#);
        let line = conf_line("restore_command", &restore).expect("no line break");
        assert_eq!(line, r#"restore_command = 'cp "/a b/\\"\\$x\\`\\\\%%f/%f" "%p"'"#);
        assert_eq!(conf_value(&line), restore);
    }

    #[test]
    fn the_commands_copy_through_a_real_shell_whatever_the_path_holds() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let archive = root.path().join(r#"arch 'it' "now" $HOME `x` \ 100%f"#);
        fs::create_dir(&archive).expect("the archive directory");
        let wal = root.path().join("pg_wal");
        fs::create_dir(&wal).expect("pg_wal");
        let segment = "000000010000000000000001";
        fs::write(wal.join(segment), b"wal").expect("a segment");

        let sh = |command: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(root.path())
                .status()
                .expect("sh runs")
                .success()
        };
        let archive_line =
            conf_line("archive_command", &archive_command(&archive).expect("archive_command")).expect("no line break");
        let archiving = expand(&conf_value(&archive_line), segment, &format!("pg_wal/{segment}"));
        assert!(sh(&archiving), "{archiving}");
        assert_eq!(fs::read(archive.join(segment)).expect("the archived copy"), b"wal");
        assert!(!sh(&archiving), "archive_command must refuse to overwrite: {archiving}");

        let restore_line =
            conf_line("restore_command", &restore_command(&archive).expect("restore_command")).expect("no line break");
        let restoring = expand(&conf_value(&restore_line), segment, "pg_wal/RECOVERYXLOG");
        assert!(sh(&restoring), "{restoring}");
        assert_eq!(fs::read(wal.join("RECOVERYXLOG")).expect("the restored copy"), b"wal");
    }

    #[test]
    fn a_path_with_a_line_break_is_refused() {
        for path in ["/srv/wal\narchive_mode = off", "/srv/wal\r"] {
            let error = archive_command(Path::new(path)).expect_err("a line break");
            assert!(
                matches!(
                    error,
                    PitrError::UnsafePath {
                        reason: "it contains a line break",
                        ..
                    }
                ),
                "{error:?}"
            );
            assert!(restore_command(Path::new(path)).is_err());
        }
        assert!(matches!(
            conf_line("recovery_target_time", "x\ny"),
            Err(PitrError::UnsafeValue { .. })
        ));
        let not_utf8 = PathBuf::from(OsString::from_vec(b"/srv/\xff".to_vec()));
        assert!(matches!(archive_command(&not_utf8), Err(PitrError::UnsafePath { .. })));
    }

    #[test]
    fn prepare_recovery_refuses_a_data_directory_with_a_line_break_before_writing() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let base = fake_base_backup(root.path());
        let data_dir = root.path().join("data\nrestore");
        let error = prepare_recovery(&plan(root.path(), &base, &data_dir)).expect_err("a line break");
        assert!(matches!(error, PitrError::UnsafePath { .. }), "{error:?}");
        assert!(!data_dir.exists());
    }

    #[test]
    fn the_target_time_keeps_its_offset_and_rounds_up_to_microseconds() {
        let offset = FixedOffset::east_opt(2 * 3600).expect("an offset");
        let at = offset.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).single().expect("a time");
        assert_eq!(format_target_time(at), "2026-12-01T18:00:00.000000+02:00");
        let at = at + TimeDelta::nanoseconds(1_500);
        assert_eq!(format_target_time(at), "2026-12-01T18:00:00.000002+02:00");
    }

    #[test]
    fn passwords_leave_the_url() {
        assert_eq!(
            split_password("postgres://app:s%40cr%27t@db:5432/app?sslmode=disable").expect("a url"),
            (
                "postgres://app@db:5432/app?sslmode=disable".to_owned(),
                Some("s@cr't".to_owned())
            )
        );
        assert_eq!(
            split_password("postgresql://app@db/app?password=p%26w&sslmode=require").expect("a url"),
            (
                "postgresql://app@db/app?sslmode=require".to_owned(),
                Some("p&w".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://app@db/app").expect("a url"),
            ("postgres://app@db/app".to_owned(), None)
        );
        let error = split_password("host=db password=secret").expect_err("not a url");
        assert!(!error.to_string().contains("secret"), "{error}");
        assert!(split_password("mysql://root:secret@db/app").is_err());
    }

    #[test]
    fn a_missing_binary_is_named() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let error = base_backup(
            Some(root.path()),
            "postgres://postgres@127.0.0.1/postgres",
            &root.path().join("b"),
        )
        .expect_err("no binaries");
        assert!(
            matches!(
                error,
                PitrError::MissingBinary {
                    name: "pg_basebackup",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("pg_basebackup not found in "), "{error}");
    }

    #[test]
    fn backup_label_start_times_are_read_when_the_zone_is_clear() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let label = root.path().join(BACKUP_LABEL);
        let read = |line: &str| {
            fs::write(
                &label,
                format!("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n{line}\n"),
            )
            .expect("a label");
            read_start_time(&label)
        };
        let (text, at) = read("START TIME: 2026-12-01 17:11:09 UTC").expect("a label");
        assert_eq!(text, "2026-12-01 17:11:09 UTC");
        assert_eq!(
            at.map(|at| at.to_rfc3339()),
            Some("2026-12-01T17:11:09+00:00".to_owned())
        );
        let (_, at) = read("START TIME: 2026-12-01 22:56:09 +0545").expect("a label");
        assert_eq!(
            at.map(|at| at.to_rfc3339()),
            Some("2026-12-01T22:56:09+05:45".to_owned())
        );
        let (text, at) = read("START TIME: 2026-12-01 18:11:09 CET").expect("a label");
        assert_eq!((text.as_str(), at), ("2026-12-01 18:11:09 CET", None));
        assert!(matches!(read("LABEL: x"), Err(PitrError::MalformedBackupLabel { .. })));
        assert!(matches!(
            read("START TIME: yesterday UTC"),
            Err(PitrError::MalformedBackupLabel { .. })
        ));
    }

    #[test]
    fn prepare_recovery_writes_the_settings_and_the_signal_and_keeps_0700() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let base = fake_base_backup(root.path());
        let data_dir = root.path().join("restored");
        let prepared = prepare_recovery(&plan(root.path(), &base, &data_dir)).expect("prepared");
        let mode = fs::metadata(&data_dir)
            .expect("the data directory")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            fs::metadata(data_dir.join("global"))
                .expect("a subdirectory")
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert!(data_dir.join("recovery.signal").is_file());
        assert!(!data_dir.join("standby.signal").exists());
        let conf = fs::read_to_string(data_dir.join("postgresql.auto.conf")).expect("the auto conf");
        let archive = fs::canonicalize(root.path().join("archive")).expect("the archive");
        assert!(
            conf.starts_with("# Do not edit\nwork_mem = '8MB'\n# Point-in-time recovery"),
            "{conf}"
        );
        for line in [
            format!(r#"restore_command = 'cp "{}/%f" "%p"'"#, archive.display()),
            "recovery_target_time = '2026-12-01T18:00:00.000000+01:00'".to_owned(),
            "recovery_target_inclusive = 'false'".to_owned(),
            "recovery_target_action = 'promote'".to_owned(),
            "archive_mode = 'off'".to_owned(),
        ] {
            assert!(
                conf.lines().any(|candidate| candidate == line),
                "{line:?} missing from:\n{conf}"
            );
            assert!(prepared.settings.contains(&line));
        }
        let start = &prepared.next_steps[1];
        // pg_ctl as found on PATH or under /usr/lib/postgresql, else by its name.
        assert!(
            start
                .command_line()
                .ends_with(&format!("pg_ctl -D {0} -l {0}/recovery.log start", data_dir.display())),
            "{}",
            start.command_line()
        );

        let again = prepare_recovery(&plan(root.path(), &base, &data_dir)).expect_err("not empty");
        assert!(matches!(again, PitrError::NotEmpty { .. }), "{again:?}");
        let nested = prepare_recovery(&plan(root.path(), &base, &base.join("inside"))).expect_err("nested");
        assert!(matches!(nested, PitrError::DataDirInsideBackup { .. }), "{nested:?}");
    }

    #[test]
    fn prepare_recovery_refuses_a_target_before_the_backup_and_a_directory_without_a_label() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let base = fake_base_backup(root.path());
        let mut early = plan(root.path(), &base, &root.path().join("restored"));
        early.target_time = FixedOffset::east_opt(0)
            .expect("utc")
            .with_ymd_and_hms(2026, 12, 1, 16, 0, 0)
            .single()
            .expect("a time");
        let error = prepare_recovery(&early).expect_err("before the backup");
        assert!(matches!(error, PitrError::TargetBeforeBackup { .. }), "{error:?}");
        assert!(!root.path().join("restored").exists());

        fs::remove_file(base.join(BACKUP_LABEL)).expect("remove the label");
        let error = prepare_recovery(&plan(root.path(), &base, &root.path().join("restored"))).expect_err("no label");
        assert!(matches!(error, PitrError::NotABaseBackup { .. }), "{error:?}");
    }

    fn fake_base_backup(root: &Path) -> PathBuf {
        let base = root.join("base");
        DirBuilder::new().mode(0o700).create(&base).expect("the base backup");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).expect("0700");
        DirBuilder::new()
            .mode(0o700)
            .create(base.join("global"))
            .expect("global");
        fs::write(base.join("PG_VERSION"), "15\n").expect("PG_VERSION");
        fs::write(
            base.join(BACKUP_LABEL),
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIME: 2026-12-01 17:00:00 UTC\n",
        )
        .expect("backup_label");
        // No newline at the end: the settings must still start on a line of their own.
        fs::write(base.join("postgresql.auto.conf"), "# Do not edit\nwork_mem = '8MB'").expect("auto conf");
        fs::write(base.join("standby.signal"), "").expect("standby.signal");
        fs::create_dir_all(root.join("archive")).expect("the archive");
        base
    }

    fn plan(root: &Path, base: &Path, data_dir: &Path) -> RecoveryPlan {
        RecoveryPlan {
            base_backup: base.to_path_buf(),
            wal_archive: root.join("archive"),
            data_dir: data_dir.to_path_buf(),
            port: None,
            target_time: FixedOffset::east_opt(3600)
                .expect("an offset")
                .with_ymd_and_hms(2026, 12, 1, 18, 0, 0)
                .single()
                .expect("a time"),
        }
    }
}
