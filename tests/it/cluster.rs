//! A private PostgreSQL cluster for tests that restart, kill or break a server: initialised in a
//! temporary directory (or started on a data directory made elsewhere, such as a restored backup),
//! run as the `postgres` user on a free loopback port, removed on drop.

use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use diesel::Connection as _;
use diesel::pg::PgConnection;
use tempfile::TempDir;

/// The longest any one command (`initdb`, `pg_ctl`, `pg_isready`, …) may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// `pg_ctl -t`: how long `pg_ctl` waits for a start or stop to complete.
const PG_CTL_WAIT_SECONDS: &str = "60";
/// How long `wait_ready` polls `pg_isready`.
const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// How long a killed postmaster and its backends may take to disappear.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a start is retried while the old server's shared memory or lock file lingers.
const RESTART_RETRY: Duration = Duration::from_secs(30);
/// How long a killed postmaster may stay a zombie before its lock files are removed by hand.
const ZOMBIE_WAIT: Duration = Duration::from_secs(5);
/// Attempts at the first start, each on a new port, in case another process took the port.
const PORT_ATTEMPTS: usize = 3;
const POLL: Duration = Duration::from_millis(10);

/// A PostgreSQL server of its own, for one test: trust authentication for `postgres`, TCP on
/// `127.0.0.1` only, `fsync` and `synchronous_commit` on (the defaults), so a commit that was
/// acknowledged is on disk.
pub struct PrivateCluster {
    directory: TempDir,
    /// The data directory, inside `directory`.
    data: PathBuf,
    bin: PathBuf,
    port: u16,
}

/// What a command printed and how it ended.
struct Outcome {
    status: ExitStatus,
    output: String,
}

impl PrivateCluster {
    /// Initialises a cluster in a new temporary directory and starts it.
    ///
    /// # Panics
    /// When the directory cannot be made, or `initdb` or the first start fails (the message
    /// carries the command's output and the tail of the server log).
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_settings(&[])
    }

    /// Initialises a cluster in a new temporary directory, appends `name = 'value'` for each of
    /// `settings` to its `postgresql.conf` (the value quoted for a configuration file: single
    /// quotes and backslashes doubled), and starts it. A base backup of the cluster carries the
    /// settings along, as it carries `postgresql.conf`.
    ///
    /// # Panics
    /// As [`Self::start`] does, and when a value holds a line break.
    #[must_use]
    pub fn start_with_settings(settings: &[(&str, &str)]) -> Self {
        Self::start_prepared(settings, |_| {})
    }

    /// As [`Self::start_with_settings`], and `prepare` may write files into the new data
    /// directory before the first start (a `pg_hba.conf`, certificates): they are handed to
    /// `postgres` with the rest, keeping the modes `prepare` gave them.
    ///
    /// # Panics
    /// As [`Self::start_with_settings`].
    #[must_use]
    pub fn start_prepared(settings: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Self {
        let directory = Self::scratch_directory();
        let data = directory.path().join("data");
        let cluster = Self {
            directory,
            data,
            bin: server_bin_dir(),
            port: free_port(),
        };
        cluster.initdb();
        if !settings.is_empty() {
            let conf_path = cluster.data.join("postgresql.conf");
            let mut conf = std::fs::read_to_string(&conf_path).expect("the new cluster's postgresql.conf");
            conf.push_str("\n# Settings of the test (PrivateCluster::start_with_settings)\n");
            for (name, value) in settings {
                assert!(
                    !value.contains(['\n', '\r']),
                    "the value of {name} holds a line break: {value:?}"
                );
                let quoted = value.replace('\\', "\\\\").replace('\'', "''");
                let _ = writeln!(conf, "{name} = '{quoted}'");
            }
            std::fs::write(&conf_path, conf).expect("write postgresql.conf");
        }
        prepare(&cluster.data);
        hand_to_postgres(&cluster.data);
        cluster.first_start()
    }

    /// The server's port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts a server on `data`, a data directory made elsewhere inside `directory` (for example
    /// a base backup prepared for recovery), once it and everything in it belong to `postgres`
    /// with mode 0700 on the data directory. `directory` should come from
    /// [`Self::scratch_directory`]; it is removed on drop, with the data directory.
    ///
    /// `pg_ctl start` waits until the server accepts connections, which a server in archive
    /// recovery does once it is consistent (`hot_standby` is on by default).
    ///
    /// # Panics
    /// When `data` is not inside `directory`, or the server does not start (the message carries
    /// the tail of the server log).
    #[must_use]
    pub fn start_on_data_dir(directory: TempDir, data: PathBuf) -> Self {
        assert!(
            data.starts_with(directory.path()) && data != directory.path(),
            "the data directory {} must lie inside {}, which is removed on drop",
            data.display(),
            directory.path().display()
        );
        hand_to_postgres(&data);
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 0700 on the data directory");
        Self {
            directory,
            data,
            bin: server_bin_dir(),
            port: free_port(),
        }
        .first_start()
    }

    /// A new temporary directory that belongs to `postgres`, for a cluster's files or for files a
    /// server must reach (a WAL archive). Removed when dropped.
    ///
    /// # Panics
    /// When the directory cannot be made or handed over.
    #[must_use]
    pub fn scratch_directory() -> TempDir {
        let directory = tempfile::Builder::new()
            .prefix("private-pg-")
            .tempdir()
            .expect("a temporary directory for the private cluster");
        hand_to_postgres(directory.path());
        directory
    }

    /// The directory of the server binaries (`pg_ctl`, `pg_basebackup`, …) this cluster runs.
    #[must_use]
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// `initdb` of the data directory, as `postgres`, with trust authentication.
    fn initdb(&self) {
        let initdb = self.bin.join("initdb");
        let data = self.data_dir();
        let outcome = self.run_as_postgres(
            &initdb,
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(
            outcome.status.success(),
            "initdb failed ({}):\n{}",
            outcome.status,
            outcome.output
        );
    }

    /// The first start, on a new port for each attempt while another process takes the port.
    fn first_start(mut self) -> Self {
        for attempt in 1..=PORT_ATTEMPTS {
            let log_start = self.log_len();
            let outcome = self.pg_ctl_start();
            if outcome.status.success() {
                return self;
            }
            let log = self.log_since(log_start);
            let port_taken = log.contains("could not bind") || log.contains("Address already in use");
            assert!(
                port_taken && attempt < PORT_ATTEMPTS,
                "the private cluster did not start on port {} ({}):\n{}\n--- server log ---\n{log}",
                self.port,
                outcome.status,
                outcome.output
            );
            self.port = free_port();
        }
        unreachable!("the loop above returns or panics");
    }

    /// A connection URL for `database` as the superuser `postgres`.
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A superuser connection to the maintenance database `postgres`.
    ///
    /// # Panics
    /// When the server does not accept the connection.
    #[must_use]
    pub fn admin(&self) -> PgConnection {
        PgConnection::establish(&self.url("postgres")).unwrap_or_else(|error| {
            panic!(
                "cannot connect to the private cluster on port {}: {error}\n--- server log ---\n{}",
                self.port,
                self.log_tail()
            )
        })
    }

    /// Stops the server in fast mode (clients are disconnected, a shutdown checkpoint is
    /// written) and starts it again.
    ///
    /// # Panics
    /// When `pg_ctl restart` fails or times out.
    pub fn restart_fast(&self) {
        let outcome = self.pg_ctl_server("restart", Some("fast"));
        self.expect_success("pg_ctl restart -m fast", &outcome);
    }

    /// Stops the server in fast mode (clients are disconnected) and leaves it stopped.
    ///
    /// # Panics
    /// When `pg_ctl stop` fails or times out.
    pub fn stop_fast(&self) {
        let outcome = self.pg_ctl_stop("fast");
        self.expect_success("pg_ctl stop -m fast", &outcome);
    }

    /// Starts the server again after [`Self::stop_fast`].
    ///
    /// # Panics
    /// When `pg_ctl start` fails or times out.
    pub fn start_again(&self) {
        let outcome = self.pg_ctl_start();
        self.expect_success("pg_ctl start", &outcome);
    }

    /// Stops the server in immediate mode (no checkpoint: the next start replays the WAL, as
    /// after a crash) and starts it again.
    ///
    /// # Panics
    /// When the stop or the start fails or times out.
    pub fn restart_immediate(&self) {
        let outcome = self.pg_ctl_stop("immediate");
        self.expect_success("pg_ctl stop -m immediate", &outcome);
        let outcome = self.pg_ctl_start();
        self.expect_success("pg_ctl start after an immediate stop", &outcome);
    }

    /// Kills the postmaster with SIGKILL, waits until it and every backend it had are gone, and
    /// starts the server again (retrying while the old shared memory is still in use).
    ///
    /// # Panics
    /// When there is no postmaster, it does not die, or the server does not start again.
    pub fn kill_postmaster(&self) {
        let pid = self.postmaster_pid();
        let children = children_of(pid);
        let kill = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success(), "kill -9 {pid} failed: {kill}");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            let survivors: Vec<u32> = children.iter().copied().filter(|child| is_alive(*child)).collect();
            if !is_alive(pid) && survivors.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after kill -9 of postmaster {pid}, still alive after {EXIT_TIMEOUT:?}: postmaster {}, backends \
                 {survivors:?}\n--- server log ---\n{}",
                is_alive(pid),
                self.log_tail()
            );
            thread::sleep(POLL);
        }
        // The dead postmaster stays a zombie until init reaps it (about a second here), and
        // meanwhile the server would take the pid in its lock files for a running postmaster.
        let deadline = Instant::now() + ZOMBIE_WAIT;
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            // Never reaped: it and its backends are gone, so the lock files are stale.
            let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
            let _ = std::fs::remove_file(self.directory.path().join(format!(".s.PGSQL.{}.lock", self.port)));
        }
        let deadline = Instant::now() + RESTART_RETRY;
        loop {
            let log_start = self.log_len();
            let outcome = self.pg_ctl_start();
            if outcome.status.success() {
                return;
            }
            let log = self.log_since(log_start);
            // The old backends' shared memory, or a lock file naming the old postmaster.
            let lingering = [log.as_str(), outcome.output.as_str()].iter().any(|text| {
                text.contains("pre-existing shared memory block is still in use") || text.contains("already exists")
            });
            assert!(
                lingering && Instant::now() < deadline,
                "the private cluster did not start after kill -9 ({}):\n{}\n--- server log ---\n{log}",
                outcome.status,
                outcome.output
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `pg_isready` until the server accepts connections; returns the moment it first did.
    ///
    /// # Panics
    /// When the server is not ready within a minute.
    #[must_use]
    pub fn wait_ready(&self) -> Instant {
        let pg_isready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let outcome = self.run(
                Command::new(&pg_isready).args(["-q", "-h", "127.0.0.1", "-p", &port, "-t", "1"]),
                "pg_isready",
            );
            if outcome.status.success() {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "the private cluster on port {port} was not ready within {READY_TIMEOUT:?} ({}): {}\n--- server \
                 log ---\n{}",
                outcome.status,
                outcome.output,
                self.log_tail()
            );
            thread::sleep(POLL);
        }
    }

    /// The last lines of the server log, for panic messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        const LINES: usize = 40;
        match std::fs::read_to_string(self.log_path()) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LINES)..].join("\n")
            }
            Err(error) => format!("(no server log: {error})"),
        }
    }

    /// The length of the server log so far, to read what follows with [`Self::log_since`].
    #[must_use]
    pub fn log_len(&self) -> usize {
        std::fs::read(self.log_path()).map_or(0, |log| log.len())
    }

    /// What the server logged after the first `start` bytes.
    #[must_use]
    pub fn log_since(&self, start: usize) -> String {
        std::fs::read(self.log_path())
            .map(|log| String::from_utf8_lossy(log.get(start..).unwrap_or_default()).into_owned())
            .unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    fn log_path(&self) -> PathBuf {
        self.directory.path().join("log")
    }

    /// The server's command-line options: port, loopback only, its socket in the cluster's
    /// directory, and `fsync` on (as it is by default) because the tests rely on it.
    fn server_options(&self) -> String {
        format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=on",
            self.port,
            self.directory.path().display()
        )
    }

    fn pg_ctl_start(&self) -> Outcome {
        self.pg_ctl_server("start", None)
    }

    /// `pg_ctl <action>` with the server's data directory, log and options, waiting for it.
    fn pg_ctl_server(&self, action: &str, mode: Option<&str>) -> Outcome {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let log = self.log_path();
        let options = self.server_options();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-o".as_ref(),
            options.as_ref(),
        ];
        if let Some(mode) = mode {
            args.extend::<[&std::ffi::OsStr; 2]>(["-m".as_ref(), mode.as_ref()]);
        }
        args.extend::<[&std::ffi::OsStr; 4]>([
            "-w".as_ref(),
            "-t".as_ref(),
            PG_CTL_WAIT_SECONDS.as_ref(),
            action.as_ref(),
        ]);
        self.run_as_postgres(&pg_ctl, &args)
    }

    fn pg_ctl_stop(&self, mode: &str) -> Outcome {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        self.run_as_postgres(
            &pg_ctl,
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                PG_CTL_WAIT_SECONDS.as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    /// The postmaster's pid: the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> u32 {
        let path = self.data_dir().join("postmaster.pid");
        let contents =
            std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        contents
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid on the first line of {}: {contents:?}", path.display()))
    }

    fn expect_success(&self, what: &str, outcome: &Outcome) {
        assert!(
            outcome.status.success(),
            "{what} failed on the private cluster (port {}) ({}):\n{}\n--- server log ---\n{}",
            self.port,
            outcome.status,
            outcome.output,
            self.log_tail()
        );
    }

    fn run_as_postgres(&self, program: &Path, args: &[&std::ffi::OsStr]) -> Outcome {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program).args(args);
        self.run(&mut command, &program.display().to_string())
    }

    /// Runs `command` to completion within `COMMAND_TIMEOUT`, its output going to a file (a
    /// server that `pg_ctl` starts must not inherit a pipe this process waits on).
    fn run(&self, command: &mut Command, what: &str) -> Outcome {
        self.try_run(command)
            .unwrap_or_else(|error| panic!("{what}: {error}\n--- server log ---\n{}", self.log_tail()))
    }

    fn try_run(&self, command: &mut Command) -> Result<Outcome, String> {
        let output_path = self.directory.path().join("command-output");
        let output = File::create(&output_path).map_err(|error| format!("cannot create the output file: {error}"))?;
        let errors = output
            .try_clone()
            .map_err(|error| format!("cannot clone the output file: {error}"))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(|error| format!("cannot run {command:?}: {error}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{command:?} did not finish within {COMMAND_TIMEOUT:?}"));
                }
                Err(error) => return Err(format!("cannot wait for {command:?}: {error}")),
            }
        };
        let output = std::fs::read_to_string(&output_path).unwrap_or_default();
        Ok(Outcome { status, output })
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Never panics: a panic here, while a failed test unwinds, would abort the process.
        let stopped = self.try_run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECONDS, "stop"]),
        );
        let stopped = stopped.is_ok_and(|outcome| outcome.status.success());
        if !stopped
            && let Some(pid) = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
                .ok()
                .and_then(|contents| contents.lines().next().and_then(|line| line.trim().parse::<u32>().ok()))
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // The temporary directory removes itself when `self.directory` drops.
    }
}

/// The PostgreSQL server binaries: `pg_config --bindir` when it names a directory with
/// `initdb`, else the newest `/usr/lib/postgresql/<version>/bin`.
fn server_bin_dir() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if bin.join("initdb").is_file() && bin.join("pg_ctl").is_file() {
            return bin;
        }
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL server binaries in /usr/lib/postgresql");
    versions
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .expect("initdb under /usr/lib/postgresql/<version>/bin")
}

/// `chown -R postgres:postgres path`: the server runs as `postgres` and must own its data
/// directory and reach what its commands use (a WAL archive).
///
/// # Panics
/// When `chown` cannot run or fails.
pub fn hand_to_postgres(path: &Path) {
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("chown runs");
    assert!(
        chown.success(),
        "chown -R postgres:postgres {} failed: {chown}",
        path.display()
    );
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("the listener's address").port()
}

/// Fields of `/proc/<pid>/stat` after the command name: state, ppid, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` is a running process (a zombie is not).
fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| !matches!(fields.first().map(String::as_str), Some("Z" | "X")))
}

/// The processes whose parent is `pid`: a postmaster's backends and auxiliary processes.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent = pid.to_string();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| stat_fields(*candidate).is_some_and(|fields| fields.get(1) == Some(&parent)))
        .collect()
}
