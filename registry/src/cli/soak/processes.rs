//! Child processes for `soa soak` and the fault tests: a `soa` command
//! ([`SoaProcess`]: started, its ready line awaited, killed with SIGKILL or
//! stopped with SIGTERM) and a nats-server ([`ServerProcess`]: killed and
//! started again on the same port and store).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bus_services::local_server::{self, ServerLaunch};
use bus_services::server_binary;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a child may take to print its ready line or to exit after SIGTERM.
const WAIT: Duration = Duration::from_secs(60);

/// Why a child process could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The process could not be spawned or waited for.
    #[error("could not {action}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The process ended or stayed silent before it was ready.
    #[error("{what} was not ready: {reason}; the end of its log ({}):\n{log}", log_file.display())]
    NotReady {
        /// Which process.
        what: String,
        /// What happened.
        reason: String,
        /// Its log file.
        log_file: PathBuf,
        /// The end of the log.
        log: String,
    },
    /// No usable nats-server binary.
    #[error(transparent)]
    Binary(#[from] server_binary::ServerBinaryError),
}

/// A `soa` command running as a child process, its standard error in a log
/// file; killed when dropped.
#[derive(Debug)]
pub struct SoaProcess {
    what: String,
    child: Child,
    log_file: PathBuf,
}

impl SoaProcess {
    /// Runs `binary` (a `soa`) with `args` as `what` (a name for messages),
    /// logging its standard error to `log_file`, and returns once it prints
    /// a line on standard output that starts with `ready`.
    pub async fn start(
        what: &str,
        binary: &Path,
        args: &[String],
        ready: &str,
        log_file: &Path,
    ) -> Result<Self, ProcessError> {
        let what = what.to_owned();
        let io = |action: String| move |source| ProcessError::Io { action, source };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .map_err(io(format!("open {}", log_file.display())))?;
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start {}", binary.display())))?;
        let not_ready = |reason: String| ProcessError::NotReady {
            what: what.clone(),
            reason,
            log_file: log_file.to_owned(),
            log: local_server::log_tail(log_file),
        };
        let Some(stdout) = child.stdout.take() else {
            return Err(not_ready("its standard output was not captured".to_owned()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.starts_with(ready) => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("it exited".to_owned()),
                    Err(error) => return Err(format!("its output could not be read: {error}")),
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                let _ = child.start_kill();
                return Err(not_ready(reason));
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(not_ready(format!("no line starting with {ready:?} within {WAIT:?}")));
            }
        }
        // The rest of its output is read and dropped, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            what,
            child,
            log_file: log_file.to_owned(),
        })
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether it has exited (crashed, or was killed from outside).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills it with SIGKILL and waits for it: nothing is drained, acked or deregistered.
    pub async fn kill(mut self) -> Result<(), ProcessError> {
        let what = self.what.clone();
        self.child.kill().await.map_err(|source| ProcessError::Io {
            action: format!("kill {what}"),
            source,
        })
    }

    /// Asks it to stop with SIGTERM (a clean shutdown) and waits; kills it
    /// if it has not exited in time. Returns whether it exited with 0.
    pub async fn terminate(mut self) -> Result<bool, ProcessError> {
        let Some(pid) = self.child.id() else {
            return Ok(false);
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .status()
            .await
            .map_err(|source| ProcessError::Io {
                action: format!("send SIGTERM to {} (pid {pid})", self.what),
                source,
            })?;
        if !sent.success() {
            self.child.kill().await.map_err(|source| ProcessError::Io {
                action: format!("kill {}", self.what),
                source,
            })?;
            return Ok(false);
        }
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status.success()),
            Ok(Err(source)) => Err(ProcessError::Io {
                action: format!("wait for {}", self.what),
                source,
            }),
            Err(_) => {
                tracing::warn!(what = %self.what, log = %self.log_file.display(), "A process did not stop after SIGTERM; killing it.");
                let _ = self.child.kill().await;
                Ok(false)
            }
        }
    }
}

/// A nats-server child on a fixed port once it has one, with its store in
/// a directory of its own, so it can be killed and started again on the
/// same port and store; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts the installed nats-server (`$NATS_SERVER_BIN`, the project's
    /// pinned one, or `PATH`) with its store, log and ports file in `dir`,
    /// on a port the OS picks.
    pub async fn start(dir: &Path) -> Result<Self, ProcessError> {
        let binary = server_binary::find_binary()?;
        server_binary::check_binary_version(&binary).await?;
        std::fs::create_dir_all(dir).map_err(|source| ProcessError::Io {
            action: format!("create {}", dir.display()),
            source,
        })?;
        let mut server = Self {
            binary,
            dir: dir.to_owned(),
            port: 0,
            child: None,
        };
        server.spawn(None).await?;
        Ok(server)
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL and waits for it; its store stays.
    pub async fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.map_err(|source| ProcessError::Io {
                action: "kill nats-server".to_owned(),
                source,
            })?;
        }
        Ok(())
    }

    /// Starts it again on the same port with the same store (killing it first if it runs).
    pub async fn restart(&mut self) -> Result<(), ProcessError> {
        self.kill().await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.spawn(Some(self.port)).await {
                // The old socket may linger for a moment after the kill.
                Err(ProcessError::NotReady { log, .. })
                    if log.contains("address already in use") && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Stops it with SIGTERM, so it closes its store cleanly.
    pub async fn shutdown(&mut self) -> Result<(), ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        if tokio::time::timeout(WAIT, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
        Ok(())
    }

    async fn spawn(&mut self, port: Option<u16>) -> Result<(), ProcessError> {
        let log_file = self.dir.join(local_server::LOG_FILE_NAME);
        let io = |action: String| move |source| ProcessError::Io { action, source };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_file)
            .map_err(io(format!("open {}", log_file.display())))?;
        let launch = ServerLaunch {
            port,
            name: Some("soa-soak".to_owned()),
            store_dir: self.dir.join("jetstream"),
            ports_file_dir: self.dir.clone(),
        };
        let mut child = launch
            .spawn(&self.binary, log)
            .map_err(io(format!("start {}", self.binary.display())))?;
        let pid = child.id().unwrap_or_default();
        let waited = local_server::wait_for_client_port(&self.dir, pid, WAIT, || child.try_wait().ok().flatten()).await;
        match waited {
            Ok(found) => {
                self.port = found;
                self.child = Some(child);
                Ok(())
            }
            Err(reason) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(ProcessError::NotReady {
                    what: "nats-server".to_owned(),
                    reason: reason.to_string(),
                    log: local_server::log_tail(&log_file),
                    log_file,
                })
            }
        }
    }
}
