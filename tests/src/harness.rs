//! A real nats-server per test: spawned on a free port with its own JetStream store, killed and cleaned up on drop.
//!
//! Tests never rely on a server someone else started. Each [`NatsServer`]
//! runs its own process on `127.0.0.1` with `-p -1` (the OS picks the port,
//! so tests run in parallel without clashing) and learns the port from the
//! file the server writes into `--ports_file_dir`. The binary comes from
//! `$NATS_SERVER_BIN`, then the project's pinned install
//! (`scripts/install-nats-server`), then `PATH`, and must be 2.10 or newer;
//! [`bus_services::server_binary`] finds and checks it, as it does for `soa`.
//!
//! The arguments, the ports file and the log tail are shared with
//! [`bus_services::local_server`]; the process handling is not: the harness
//! holds a synchronous child so that `Drop` can kill it, and restarts it on
//! the same port.
//!
//! A server can be given a configuration file (`-c`), such as one that asks
//! for user/password, nkey, JWT or TLS authentication, and the credentials
//! its clients present ([`NatsServerBuilder::config`],
//! [`NatsServerBuilder::client_auth`]); [`NatsServer::client`] and
//! [`NatsServer::connect_config`] then connect with them.
//!
//! The server's log goes to a file in its temporary directory. It is thrown
//! away with the directory unless `SOA_TEST_LOG` is set; then the log is echoed
//! to the test's output when the server is dropped and the directory is kept.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus_services::connection::{self, ConnectConfig, ConnectError};
use bus_services::local_server::{LOG_FILE_NAME, ServerLaunch, StartupWaitError, log_tail, wait_for_client_port};
use bus_services::server_binary::{self, ServerBinaryError};
use semver::Version;
use tempfile::TempDir;

/// The environment variable that turns on test logs: the servers' logs and tracing output.
pub const LOG_ENV_VAR: &str = "SOA_TEST_LOG";

/// The environment variable that names the nats-server binary to use, ahead of any other.
pub const BINARY_ENV_VAR: &str = server_binary::BINARY_ENV_VAR;

/// How long a freshly spawned server may take to write its ports file.
///
/// Generous because the machine may be busy compiling or running other tests.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The name of the configuration file in the server's directory.
const CONFIG_FILE_NAME: &str = "server.conf";

/// How long [`NatsServer::restart`] keeps trying while the old port is still held.
const PORT_REUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a test server could not be found, started or reached.
///
/// `Debug` prints the message and its causes, so that a test's `unwrap()`
/// shows a readable explanation rather than a struct dump.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// No usable nats-server binary: none found, or one too old for soabus.
    #[error(transparent)]
    Binary(#[from] ServerBinaryError),

    /// A file or directory the harness needs could not be made or read.
    #[error("could not {action}")]
    Io {
        /// What the harness was doing, such as "create the server's temporary directory".
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// The server process could not be spawned.
    #[error("could not start {}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },

    /// The server exited before it was ready.
    #[error("nats-server exited ({status}) before it was ready; the end of its log:\n{log}")]
    ExitedEarly {
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log: String,
    },

    /// The server did not say which port it listens on in time.
    #[error(
        "nats-server did not write its ports file within {timeout:?} ({problem}); the end of its \
         log:\n{log}"
    )]
    StartupTimeout {
        /// How long the harness waited.
        timeout: Duration,
        /// What was last wrong with the ports file.
        problem: String,
        /// The end of its log.
        log: String,
    },

    /// A client was asked for while the server is stopped.
    #[error("the test nats-server on port {port} is stopped; call restart() first")]
    Stopped {
        /// The port it listened on.
        port: u16,
    },

    /// The server is running but a client could not connect to it.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(formatter, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Options for a [`NatsServer`], made by [`NatsServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct NatsServerBuilder {
    binary: Option<PathBuf>,
    name: Option<String>,
    startup_timeout: Option<Duration>,
    config: Option<String>,
    client_auth: Option<ConnectConfig>,
}

impl NatsServerBuilder {
    /// Uses this nats-server binary instead of looking one up.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// Names the server (`-n`); by default each gets a unique `soabus-test-…` name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How long to wait for the server to be ready; 20 seconds by default.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = Some(timeout);
        self
    }

    /// Starts the server with this configuration file (`-c`), written to
    /// `server.conf` in its directory. The harness's own flags (address,
    /// port, JetStream store, name, ports file) win over the file's.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// How clients of this server authenticate: the credential and TLS
    /// fields of `template` (its URL and name are replaced) are what
    /// [`NatsServer::connect_config`] and [`NatsServer::client`] use.
    pub fn client_auth(mut self, template: ConnectConfig) -> Self {
        self.client_auth = Some(template);
        self
    }

    /// Checks the binary's version, then starts the server and waits until it listens.
    pub async fn start(self) -> Result<NatsServer, HarnessError> {
        let binary = match self.binary {
            Some(binary) => binary,
            None => find_binary()?,
        };
        check_binary_version(&binary).await?;

        let temp_dir = tempfile::Builder::new()
            .prefix("soabus-nats-")
            .tempdir()
            .map_err(|source| HarnessError::Io {
                action: "create the server's temporary directory".to_owned(),
                source,
            })?;
        let name = self.name.unwrap_or_else(unique_server_name);
        let config_file = match self.config {
            Some(text) => {
                let path = temp_dir.path().join(CONFIG_FILE_NAME);
                fs::write(&path, text).map_err(|source| HarnessError::Io {
                    action: format!("write the server configuration {}", path.display()),
                    source,
                })?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer {
            config_file,
            client_auth: self.client_auth.unwrap_or_default(),
            binary,
            name,
            startup_timeout: self.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
            dir: temp_dir.path().to_owned(),
            temp_dir: Some(temp_dir),
            child: None,
            port: 0,
        };
        server.spawn_and_wait(None).await?;
        Ok(server)
    }
}

/// A nats-server process of the test's own, with JetStream on and a temporary store.
///
/// Dropping it kills the process and removes its directory, store included.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    /// The configuration file passed with `-c`, if any.
    config_file: Option<PathBuf>,
    /// The credential and TLS fields clients connect with.
    client_auth: ConnectConfig,
    name: String,
    startup_timeout: Duration,
    /// The temporary directory holding the store, the log and the ports files.
    dir: PathBuf,
    /// Owns `dir`; `None` only in `drop`, which may keep the directory.
    temp_dir: Option<TempDir>,
    /// `None` while stopped.
    child: Option<Child>,
    port: u16,
}

impl NatsServer {
    /// Options for a server; `NatsServer::builder().start().await` is [`NatsServer::start`].
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// Starts a server with the default options.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::builder().start().await
    }

    /// The URL clients connect to, such as `nats://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port, which stays the same across [`NatsServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's name (`-n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JetStream store directory, which survives [`NatsServer::stop`].
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("jetstream")
    }

    /// The file the server logs to.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(LOG_FILE_NAME)
    }

    /// Whether the process is running (it has not been stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// A client connected through [`bus_services::connection::connect`], as components connect.
    pub async fn client(&self) -> Result<async_nats::Client, HarnessError> {
        if self.child.is_none() {
            return Err(HarnessError::Stopped { port: self.port });
        }
        Ok(connection::connect(&self.connect_config()).await?)
    }

    /// How a client connects to this server: its URL, the credentials and
    /// TLS options given to [`NatsServerBuilder::client_auth`], and a
    /// connection name made from the server's.
    pub fn connect_config(&self) -> ConnectConfig {
        ConnectConfig {
            url: self.url(),
            name: Some(format!("{}-client", self.name)),
            ..self.client_auth.clone()
        }
    }

    /// The configuration file the server was started with, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// Kills the server and waits for it to exit, keeping its store for [`NatsServer::restart`].
    ///
    /// Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child).map_err(|source| HarnessError::Io {
                action: format!("kill nats-server (pid {})", child.id()),
                source,
            })?;
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same store, stopping it first if it runs.
    ///
    /// Clients connected before keep working: async-nats reconnects by itself.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        let port = self.port;
        let deadline = Instant::now() + PORT_REUSE_TIMEOUT;
        loop {
            match self.spawn_and_wait(Some(port)).await {
                // The old socket may linger for a moment after the kill.
                Err(HarnessError::ExitedEarly { log, .. })
                    if log.contains("address already in use") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Spawns the process on `port` (or a free one) and waits until its ports file names the client port.
    async fn spawn_and_wait(&mut self, port: Option<u16>) -> Result<(), HarnessError> {
        let log_file = self.log_file();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .map_err(|source| HarnessError::Io {
                action: format!("open the server log {}", log_file.display()),
                source,
            })?;
        let log_for_stdout = log.try_clone().map_err(|source| HarnessError::Io {
            action: "duplicate the server log's file handle".to_owned(),
            source,
        })?;
        let launch = ServerLaunch {
            port,
            name: Some(self.name.clone()),
            store_dir: self.store_dir(),
            ports_file_dir: self.dir.clone(),
        };
        let mut command = Command::new(&self.binary);
        if let Some(config_file) = &self.config_file {
            command.arg("-c").arg(config_file);
        }
        let child = command
            .args(launch.arguments())
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let pid = child.id();
        let child = self.child.insert(child);

        let waited =
            wait_for_client_port(&self.dir, pid, self.startup_timeout, || child.try_wait().ok().flatten()).await;
        match waited {
            Ok(port) => {
                self.port = port;
                tracing::debug!(name = %self.name, port, pid, "Test nats-server is ready.");
                Ok(())
            }
            Err(StartupWaitError::Exited(status)) => {
                self.child = None;
                Err(HarnessError::ExitedEarly {
                    status,
                    log: log_tail(&log_file),
                })
            }
            Err(StartupWaitError::TimedOut { timeout, problem }) => {
                if let Some(mut child) = self.child.take() {
                    // Best effort: the timeout is the error worth reporting.
                    let _ = kill_and_wait(&mut child);
                }
                Err(HarnessError::StartupTimeout {
                    timeout,
                    problem,
                    log: log_tail(&log_file),
                })
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing can be reported from `drop`; a process that will not die is the OS's problem.
            let _ = kill_and_wait(&mut child);
        }
        if std::env::var_os(LOG_ENV_VAR).is_some() {
            let log_file = self.log_file();
            let log = fs::read_to_string(&log_file).unwrap_or_default();
            eprintln!(
                "--- log of nats-server {} (port {}), kept at {} ---\n{log}--- end of log ---",
                self.name,
                self.port,
                log_file.display()
            );
            if let Some(temp_dir) = self.temp_dir.take() {
                let _ = temp_dir.keep();
            }
        }
        // Otherwise `temp_dir` drops here and removes the store and the log.
    }
}

/// Installs a tracing subscriber that writes to the test output, only when `SOA_TEST_LOG` is set.
///
/// The variable's value is a `tracing` filter such as `debug` or
/// `bus_services=trace`; `1` or an unparsable value means `info`. Calling it
/// again, from any test, does nothing.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let Some(value) = std::env::var_os(LOG_ENV_VAR) else {
            return;
        };
        let value = value.to_string_lossy();
        let filter = match value.trim() {
            "" | "1" | "true" => None,
            directives => tracing_subscriber::EnvFilter::try_new(directives).ok(),
        }
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be installed by the test itself; that one wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Finds the nats-server binary: `$NATS_SERVER_BIN`, the project's installed one, then `PATH`.
///
/// See [`bus_services::server_binary::find_binary`].
pub fn find_binary() -> Result<PathBuf, HarnessError> {
    Ok(server_binary::find_binary()?)
}

/// The workspace root, where `scripts/` and `.tools/` live.
pub fn workspace_root() -> PathBuf {
    server_binary::workspace_root()
}

/// Runs `<binary> --version` and refuses a server older than soabus needs.
///
/// See [`bus_services::server_binary::check_binary_version`].
pub async fn check_binary_version(binary: &Path) -> Result<Version, HarnessError> {
    Ok(server_binary::check_binary_version(binary).await?)
}

/// A unique server name, so that logs of parallel tests can be told apart.
fn unique_server_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "soabus-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills the process and reaps it.
fn kill_and_wait(child: &mut Child) -> std::io::Result<()> {
    // `kill` fails only if the process is gone already, which is what we want anyway.
    let _ = child.kill();
    child.wait().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_install_script() {
        assert!(workspace_root().join("scripts/install-nats-server").is_file());
    }
}
