//! The PostgreSQL client tools a backup runs (`pg_dump`, `pg_restore`): where they are, whether
//! their version can handle the server's, and how they are given the connection without putting
//! a password on a command line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use percent_encoding::percent_decode_str;

use crate::BackupError;

/// A PostgreSQL client tool, found and checked.
pub(crate) struct Tool {
    path: PathBuf,
    /// What `--version` printed, for example `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)`.
    pub(crate) version: String,
    pub(crate) major: u32,
}

impl Tool {
    /// Finds `name` in `bin_dir`, else in Debian's directory for the server's major version,
    /// else on `PATH`, and reads its version.
    pub(crate) fn find(name: &str, bin_dir: Option<&Path>, server_major: u32) -> Result<Self, BackupError> {
        let debian = PathBuf::from(format!("/usr/lib/postgresql/{server_major}/bin")).join(name);
        let path = match bin_dir {
            Some(directory) => directory.join(name),
            None if debian.is_file() => debian,
            None => PathBuf::from(name),
        };
        let output = Command::new(&path).arg("--version").output().map_err(|error| {
            BackupError::Tool(format!(
                "cannot run {} ({error}): install the PostgreSQL {server_major} client tools or set BACKUP_PG_BIN_DIR",
                path.display()
            ))
        })?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let major = parse_major(&version).ok_or_else(|| {
            BackupError::Tool(format!(
                "cannot read the version of {} from {version:?}",
                path.display()
            ))
        })?;
        Ok(Self { path, version, major })
    }

    /// Refuses a tool older than the server: `pg_dump` cannot dump a newer server, and
    /// `pg_restore` cannot read an archive written by a newer `pg_dump`.
    pub(crate) fn require_at_least(&self, major: u32, what: &str) -> Result<(), BackupError> {
        if self.major < major {
            return Err(BackupError::Tool(format!(
                "{} is version {} and cannot handle {what} {major}: install the PostgreSQL {major} client tools \
                 (or newer) and point BACKUP_PG_BIN_DIR at them",
                self.path.display(),
                self.major
            )));
        }
        Ok(())
    }

    /// A command for this tool connected to `url`: the URL without its password goes in
    /// `--dbname`, and the password in `PGPASSWORD`, so it is not in the process list.
    pub(crate) fn command(&self, url: &str) -> Result<Command, BackupError> {
        let (url, password) = split_password(url).map_err(|reason| {
            BackupError::Settings(format!("the PostgreSQL connection string cannot be used: {reason}"))
        })?;
        let mut command = Command::new(&self.path);
        command.arg("--no-password").arg(format!("--dbname={url}"));
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        Ok(command)
    }
}

/// Splits a `postgres://` URL into the URL without its password (in the user info or a
/// `password` query parameter) and that password, percent-decoded: the password then goes to a
/// client tool in `PGPASSWORD`, never on its command line. The error is a reason that quotes no
/// part of the URL.
pub(crate) fn split_password(connection_url: &str) -> Result<(String, Option<String>), &'static str> {
    let invalid = |reason: &'static str| reason;
    // The parser's own message is not kept: it could quote part of the URL.
    let mut url = url::Url::parse(connection_url).map_err(|_| invalid("it is not a url"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(invalid("the scheme must be postgres:// or postgresql://"));
    }
    let decode = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| invalid("the password is not utf-8 once percent-decoded"))
    };
    let mut password = url.password().map(decode).transpose()?;
    if password.is_some() {
        url.set_password(None)
            .map_err(|()| invalid("the password cannot be removed from it"))?;
    }
    if let Some(query) = url.query().map(str::to_owned) {
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("password", value)) => password = Some(decode(value)?),
                _ if pair == "password" => password = Some(String::new()),
                _ => kept.push(pair),
            }
        }
        let kept = kept.join("&");
        url.set_query((!kept.is_empty()).then_some(kept.as_str()));
    }
    Ok((url.into(), password))
}

/// The major version in `pg_dump (PostgreSQL) 15.19 …` or `… 16beta1`.
fn parse_major(version: &str) -> Option<u32> {
    let number = version.split(')').nth(1)?.split_whitespace().next()?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A running tool whose standard error is collected on a thread, so that a chatty tool cannot
/// block on a full pipe while its output is being read.
pub(crate) struct Running {
    pub(crate) child: Child,
    stderr: Option<JoinHandle<String>>,
    name: String,
}

impl Running {
    /// Starts `command` with `stdin` and `stdout` as given and standard error collected.
    pub(crate) fn spawn(mut command: Command, name: &str, stdin: Stdio, stdout: Stdio) -> Result<Self, BackupError> {
        let mut child = command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| BackupError::Tool(format!("cannot start {name}: {error}")))?;
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                text
            })
        });
        Ok(Self {
            child,
            stderr,
            name: name.to_owned(),
        })
    }

    /// Waits for the tool; an exit other than 0 is an error carrying what it printed.
    pub(crate) fn finish(mut self) -> Result<(), BackupError> {
        let status = self
            .child
            .wait()
            .map_err(|error| BackupError::Tool(format!("{} did not finish: {error}", self.name)))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        if status.success() {
            if !stderr.trim().is_empty() {
                tracing::warn!(tool = %self.name, output = %stderr.trim(), "the tool printed warnings");
            }
            Ok(())
        } else {
            let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
            Err(BackupError::Tool(format!(
                "{} failed ({status}): {}",
                self.name,
                lines.join(" ")
            )))
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A tool abandoned on an error path is stopped rather than left running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn majors_are_read_from_what_the_tools_print() {
        for (text, major) in [
            ("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)", Some(15)),
            ("pg_restore (PostgreSQL) 16beta1", Some(16)),
            ("pg_dump (PostgreSQL) 9.6.24", Some(9)),
            ("something else", None),
        ] {
            assert_eq!(parse_major(text), major, "{text}");
        }
    }
}
