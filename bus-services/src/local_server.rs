//! A nats-server started as a child process, for `soa demo` and `soa up` when
//! no server answers at the configured URL, plus the launch pieces the test
//! harness shares with it.
//!
//! The child listens on `127.0.0.1` on a port the OS picks (`-p -1`), so it
//! never clashes with a server someone else runs, and tells us the port
//! through the ports file it writes into `--ports_file_dir`. Its JetStream
//! store and its log live in the data directory the caller names, so a second
//! `soa demo` finds the streams and buckets of the first.
//!
//! The test harness keeps its own process handling (a synchronous child it
//! can kill in `Drop`, a temporary directory, restarts on the same port); what
//! both share is here: [`ServerLaunch`] for the arguments,
//! [`wait_for_client_port`] and [`read_ports_file`] for learning the port, and
//! [`log_tail`] for error messages.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use semver::Version;
use tokio::process::{Child, Command};

use crate::server_binary::{self, ServerBinaryError};

/// The log file's name inside the server's directory.
pub const LOG_FILE_NAME: &str = "nats-server.log";

/// How often the ports file is looked for.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How much of the server's log goes into an error message.
const LOG_TAIL_BYTES: usize = 4_000;

/// The command line of a nats-server for soabus: loopback only, JetStream on,
/// and the ports file written where the caller will look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLaunch {
    /// The client port, or `None` for one the OS picks.
    pub port: Option<u16>,
    /// The server's name (`-n`), shown in its monitoring and logs.
    pub name: Option<String>,
    /// The JetStream store directory (`-sd`).
    pub store_dir: PathBuf,
    /// Where the server writes `<program>_<pid>.ports` (`--ports_file_dir`).
    pub ports_file_dir: PathBuf,
}

impl ServerLaunch {
    /// Starts `binary` with these arguments, its output going to `log`, in
    /// a process group of its own (a Ctrl-C in the terminal reaches only its
    /// parent, which stops it in order, after draining its clients), killed
    /// if its handle is dropped.
    pub fn spawn(&self, binary: &Path, log: fs::File) -> std::io::Result<Child> {
        let log_for_stdout = log.try_clone()?;
        Command::new(binary)
            .args(self.arguments())
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    }

    /// The arguments to pass to nats-server.
    pub fn arguments(&self) -> Vec<OsString> {
        let port = self.port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
        let mut arguments: Vec<OsString> = ["-a", "127.0.0.1", "-p", &port, "-js"]
            .into_iter()
            .map(OsString::from)
            .collect();
        if let Some(name) = &self.name {
            arguments.push("-n".into());
            arguments.push(name.into());
        }
        arguments.push("-sd".into());
        arguments.push(self.store_dir.clone().into_os_string());
        arguments.push("--ports_file_dir".into());
        arguments.push(self.ports_file_dir.clone().into_os_string());
        arguments
    }
}

/// Why a freshly spawned server did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum StartupWaitError {
    /// The process exited before it wrote its ports file.
    #[error("nats-server exited ({0}) before it was ready")]
    Exited(ExitStatus),
    /// The ports file did not name a client port in time.
    #[error("nats-server did not write its ports file within {timeout:?} ({problem})")]
    TimedOut {
        /// How long the caller waited.
        timeout: Duration,
        /// What was last wrong with the ports file.
        problem: String,
    },
}

/// Waits until the server with process id `pid` names its client port in its
/// ports file in `ports_file_dir`.
///
/// `exited` is asked on every poll whether the process has ended, so a server
/// that fails to start (a port in use, a locked store) is reported at once
/// rather than after the timeout. The caller kills the process on a timeout.
pub async fn wait_for_client_port(
    ports_file_dir: &Path,
    pid: u32,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<ExitStatus>,
) -> Result<u16, StartupWaitError> {
    let deadline = Instant::now() + timeout;
    loop {
        let problem = match read_ports_file(ports_file_dir, pid) {
            Ok(port) => return Ok(port),
            Err(not_yet) => not_yet,
        };
        if let Some(status) = exited() {
            return Err(StartupWaitError::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(StartupWaitError::TimedOut { timeout, problem });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Reads the client port from the ports file of the server with process id `pid`.
///
/// nats-server writes `<dir>/<program>_<pid>.ports` holding JSON like
/// `{"nats": ["nats://127.0.0.1:4222"], ...}`. A killed server leaves its file
/// behind, hence the match on the pid. The error says what is missing yet.
pub fn read_ports_file(dir: &Path, pid: u32) -> Result<u16, String> {
    #[derive(serde::Deserialize)]
    struct Ports {
        #[serde(default)]
        nats: Vec<String>,
    }

    let suffix = format!("_{pid}.ports");
    let entries = fs::read_dir(dir).map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let path = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(&suffix))
        })
        .ok_or_else(|| format!("no *{suffix} file in {}", dir.display()))?;
    // The server may be halfway through writing it; the caller tries again.
    let text = fs::read_to_string(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let ports: Ports =
        serde_json::from_str(&text).map_err(|error| format!("{} is not complete JSON yet: {error}", path.display()))?;
    ports
        .nats
        .iter()
        .find_map(|url| url.rsplit(':').next()?.parse::<u16>().ok())
        .ok_or_else(|| format!("{} names no client port: {text}", path.display()))
}

/// The last few kilobytes of a log file, for an error message.
pub fn log_tail(log_file: &Path) -> String {
    let bytes = match fs::read(log_file) {
        Ok(bytes) => bytes,
        Err(error) => return format!("(could not read {}: {error})", log_file.display()),
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return "(empty)".to_owned();
    }
    let start = text.len().saturating_sub(LOG_TAIL_BYTES);
    let start = (start..text.len())
        .find(|&index| text.is_char_boundary(index))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// How to start a [`LocalNatsServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalServerConfig {
    /// The project's data directory; the server keeps its store, log and
    /// ports file in `<data_dir>/nats`.
    pub data_dir: PathBuf,
    /// The binary to run; by default [`server_binary::find_binary`] looks one up.
    pub binary: Option<PathBuf>,
    /// The server's name (`-n`).
    pub name: String,
    /// How long the server may take to say which port it listens on.
    pub startup_timeout: Duration,
    /// How long [`LocalNatsServer::shutdown`] waits for the server to exit
    /// after asking it to, before it kills it.
    pub shutdown_timeout: Duration,
}

impl LocalServerConfig {
    /// A configuration that keeps the server's files under `data_dir`, with
    /// everything else at its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            binary: None,
            name: "soabus-local".to_owned(),
            startup_timeout: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a local server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalServerError {
    /// No usable nats-server binary.
    #[error(transparent)]
    Binary(#[from] ServerBinaryError),

    /// The server's directory or log could not be made.
    #[error("could not {action}")]
    Io {
        /// What was being done, such as "create the server directory .data/nats".
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// The process could not be spawned.
    #[error("could not start {}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },

    /// The server did not become ready; the message carries the end of its log.
    #[error("{reason}; the end of its log ({}):\n{log}", log_file.display())]
    NotReady {
        /// What went wrong.
        reason: StartupWaitError,
        /// The server's log file.
        log_file: PathBuf,
        /// The end of the log.
        log: String,
    },

    /// Waiting for the server to exit failed.
    #[error("could not wait for nats-server (pid {pid}) to exit")]
    Wait {
        /// The server's process id.
        pid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A nats-server running as a child of this process, with JetStream on.
///
/// Stop it with [`LocalNatsServer::shutdown`], which lets the server close
/// its store cleanly; dropping it instead kills the process outright.
#[derive(Debug)]
pub struct LocalNatsServer {
    child: Child,
    pid: u32,
    port: u16,
    version: Version,
    binary: PathBuf,
    dir: PathBuf,
    shutdown_timeout: Duration,
}

impl LocalNatsServer {
    /// Finds and checks the binary, starts the server and waits until it listens.
    pub async fn start(config: LocalServerConfig) -> Result<Self, LocalServerError> {
        let binary = match config.binary {
            Some(binary) => binary,
            None => server_binary::find_binary()?,
        };
        let version = server_binary::check_binary_version(&binary).await?;

        let dir = config.data_dir.join("nats");
        fs::create_dir_all(&dir).map_err(|source| LocalServerError::Io {
            action: format!("create the server directory {}", dir.display()),
            source,
        })?;
        remove_stale_ports_files(&dir);
        let log_file = dir.join(LOG_FILE_NAME);
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_file)
            .map_err(|source| LocalServerError::Io {
                action: format!("open the server log {}", log_file.display()),
                source,
            })?;
        let launch = ServerLaunch {
            port: None,
            name: Some(config.name),
            store_dir: dir.clone(),
            ports_file_dir: dir.clone(),
        };
        let mut child = launch.spawn(&binary, log).map_err(|source| LocalServerError::Spawn {
            binary: binary.clone(),
            source,
        })?;
        let Some(pid) = child.id() else {
            // `id` is None only once the child has been reaped, which nothing here did.
            let status = child
                .wait()
                .await
                .map_err(|source| LocalServerError::Wait { pid: 0, source })?;
            return Err(LocalServerError::NotReady {
                reason: StartupWaitError::Exited(status),
                log: log_tail(&log_file),
                log_file,
            });
        };

        let waited = wait_for_client_port(&dir, pid, config.startup_timeout, || child.try_wait().ok().flatten()).await;
        let port = match waited {
            Ok(port) => port,
            Err(reason) => {
                // Best effort: the startup failure is the error worth reporting.
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(LocalServerError::NotReady {
                    reason,
                    log: log_tail(&log_file),
                    log_file,
                });
            }
        };
        tracing::debug!(pid, port, %version, dir = %dir.display(), "Local nats-server is ready.");
        Ok(Self {
            child,
            pid,
            port,
            version,
            binary,
            dir,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The URL clients connect to, such as `nats://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port the OS picked.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The version the binary reported.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The directory holding the JetStream store, the log and the ports file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file the server logs to.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(LOG_FILE_NAME)
    }

    /// How the server exited, if it has (it crashed, or someone killed it);
    /// `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the server to stop (SIGTERM, so it closes its store cleanly) and
    /// waits for it; kills it if it has not exited within the shutdown timeout.
    pub async fn shutdown(mut self) -> Result<ExitStatus, LocalServerError> {
        let pid = self.pid;
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        if !self.terminate().await {
            // Without `kill` there is no polite way; a hard stop is still a stop.
            let _ = self.child.start_kill();
        }
        match tokio::time::timeout(self.shutdown_timeout, self.child.wait()).await {
            Ok(waited) => waited.map_err(|source| LocalServerError::Wait { pid, source }),
            Err(_elapsed) => {
                tracing::warn!(
                    pid,
                    timeout = ?self.shutdown_timeout,
                    "The local nats-server did not stop in time; killing it."
                );
                let _ = self.child.start_kill();
                self.child
                    .wait()
                    .await
                    .map_err(|source| LocalServerError::Wait { pid, source })
            }
        }
    }

    /// Sends SIGTERM with the `kill` program: this crate forbids `unsafe`, so
    /// it cannot call `kill(2)` itself, and tokio can only send SIGKILL.
    /// Returns whether the signal was sent.
    async fn terminate(&self) -> bool {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        match sent {
            Ok(status) if status.success() => true,
            Ok(status) => {
                tracing::debug!(pid = self.pid, %status, "`kill -TERM` failed.");
                false
            }
            Err(error) => {
                tracing::debug!(pid = self.pid, error = %error, "Could not run `kill`.");
                false
            }
        }
    }
}

/// Removes ports files that earlier servers left behind, so a reused process
/// id cannot make us read a dead server's port. The directory is ours alone.
fn remove_stale_ports_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        if path.extension().is_some_and(|extension| extension == "ports") {
            // Best effort: a file we cannot remove is still matched by pid.
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_ask_for_loopback_jetstream_and_a_ports_file() {
        let launch = ServerLaunch {
            port: None,
            name: Some("soabus-local".to_owned()),
            store_dir: PathBuf::from("/data/nats"),
            ports_file_dir: PathBuf::from("/data/ports"),
        };
        let arguments: Vec<String> = launch
            .arguments()
            .iter()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            arguments.join(" "),
            "-a 127.0.0.1 -p -1 -js -n soabus-local -sd /data/nats --ports_file_dir /data/ports"
        );
        let fixed = ServerLaunch {
            port: Some(4333),
            name: None,
            ..launch
        };
        let arguments: Vec<String> = fixed
            .arguments()
            .iter()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect();
        assert_eq!(arguments[..5], ["-a", "127.0.0.1", "-p", "4333", "-js"]);
        assert!(!arguments.contains(&"-n".to_owned()));
    }

    #[test]
    fn the_ports_file_of_the_right_process_names_the_client_port() {
        let dir = tempfile::tempdir().unwrap();
        // A killed server leaves its file behind; only the one with our pid counts.
        fs::write(
            dir.path().join("nats-server_100.ports"),
            r#"{"nats":["nats://127.0.0.1:1111"]}"#,
        )
        .unwrap();
        fs::write(
            dir.path().join("nats-server_200.ports"),
            r#"{"nats":["nats://127.0.0.1:2222"],"monitoring":["http://127.0.0.1:8222"]}"#,
        )
        .unwrap();
        assert_eq!(read_ports_file(dir.path(), 200), Ok(2222));
    }

    #[test]
    fn a_missing_or_half_written_ports_file_is_not_ready_yet() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_ports_file(dir.path(), 300).unwrap_err();
        assert!(missing.contains("_300.ports"), "{missing}");

        fs::write(dir.path().join("nats-server_300.ports"), r#"{"nats":["nats:"#).unwrap();
        let partial = read_ports_file(dir.path(), 300).unwrap_err();
        assert!(partial.contains("not complete JSON"), "{partial}");
    }

    #[tokio::test]
    async fn waiting_stops_when_the_process_exits_or_time_runs_out() {
        use std::os::unix::process::ExitStatusExt;

        let dir = tempfile::tempdir().unwrap();
        let exited = wait_for_client_port(dir.path(), 400, Duration::from_secs(5), || {
            Some(ExitStatus::from_raw(1 << 8))
        })
        .await
        .unwrap_err();
        assert!(matches!(exited, StartupWaitError::Exited(_)), "{exited}");

        let timed_out = wait_for_client_port(dir.path(), 400, Duration::from_millis(50), || None)
            .await
            .unwrap_err();
        assert!(timed_out.to_string().contains("_400.ports"), "{timed_out}");

        fs::write(
            dir.path().join("nats-server_400.ports"),
            r#"{"nats":["nats://127.0.0.1:4444"]}"#,
        )
        .unwrap();
        let port = wait_for_client_port(dir.path(), 400, Duration::from_secs(5), || None)
            .await
            .unwrap();
        assert_eq!(port, 4444);
    }

    #[test]
    fn the_log_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log_file = dir.path().join(LOG_FILE_NAME);
        assert!(log_tail(&log_file).contains("could not read"));
        fs::write(&log_file, "").unwrap();
        assert_eq!(log_tail(&log_file), "(empty)");
        let long = format!("{}the end\n", "é".repeat(LOG_TAIL_BYTES));
        fs::write(&log_file, &long).unwrap();
        let tail = log_tail(&log_file);
        assert!(tail.ends_with("the end\n"));
        assert!(tail.len() <= LOG_TAIL_BYTES);
    }

    #[test]
    fn stale_ports_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("nats-server_1.ports"), "{}").unwrap();
        fs::write(dir.path().join(LOG_FILE_NAME), "log").unwrap();
        remove_stale_ports_files(dir.path());
        assert!(!dir.path().join("nats-server_1.ports").exists());
        assert!(dir.path().join(LOG_FILE_NAME).exists());
    }

    #[tokio::test]
    async fn a_local_server_starts_listens_and_stops_cleanly() {
        // Needs the installed server, as the e2e tests do: `scripts/install-nats-server`.
        let dir = tempfile::tempdir().unwrap();
        let server = LocalNatsServer::start(LocalServerConfig::new(dir.path()))
            .await
            .unwrap();
        assert!(server.port() > 0);
        assert!(server.url().starts_with("nats://127.0.0.1:"));
        let client = crate::connection::connect(&crate::connection::ConnectConfig::for_url(server.url()))
            .await
            .unwrap();
        crate::wire::round_trip(&client, Duration::from_secs(5)).await.unwrap();
        client.drain().await.unwrap();
        let log_file = server.log_file();
        let status = server.shutdown().await.unwrap();
        // SIGTERM is a clean stop for nats-server.
        let log = fs::read_to_string(log_file).unwrap();
        assert!(
            log.contains("Server Exiting") || log.contains("Initiating Shutdown"),
            "{status:?}: {log}"
        );
        assert!(dir.path().join("nats/jetstream").is_dir());
    }
}
