//! The Python example service (`examples/python-loyalty`) as a child process
//! of a test: found, started against a test's nats-server, waited for until it
//! answers discovery, stopped with SIGTERM, and killed on drop.
//!
//! The interpreter is `$SOA_PYTHON`, then the project's `.tools/py-venv`
//! (what `scripts/install-python-example` makes). When neither is there the
//! tests fail and say to run that script: a test of the polyglot protocol
//! that silently skips would prove nothing.
//!
//! The service's log goes to a file in its temporary directory, shown by
//! [`LoyaltyService::logs`] (tests put it in their failure messages) and
//! echoed when the process is dropped if `SOA_TEST_LOG` is set.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use contracts::subjects::{self, DiscoveryVerb};
use contracts::{ContractDocument, DocumentError, Limits};
use tempfile::TempDir;

use crate::harness::{LOG_ENV_VAR, workspace_root};

/// The environment variable naming the Python interpreter to run the example with.
pub const PYTHON_ENV_VAR: &str = "SOA_PYTHON";

/// Where the example lives, from the workspace root.
pub const EXAMPLE_DIR: &str = "examples/python-loyalty";

/// Why the Python service could not be found, started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// No interpreter: `$SOA_PYTHON` unset (or pointing at nothing) and no venv.
    #[error(
        "no Python for the example service: {tried}; run scripts/install-python-example \
         (it creates .tools/py-venv and prints the python path to put in ${PYTHON_ENV_VAR})"
    )]
    NotInstalled {
        /// What was looked at.
        tried: String,
    },
    /// The interpreter runs but lacks nats-py or jsonschema.
    #[error("{python} cannot import nats and jsonschema ({stderr}); run scripts/install-python-example")]
    MissingPackages {
        /// The interpreter.
        python: PathBuf,
        /// What it said.
        stderr: String,
    },
    /// A file or process operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The example's contract document does not parse.
    #[error(transparent)]
    Contract(#[from] DocumentError),
    /// The service exited before it answered.
    #[error("the Python service exited ({status}) before it answered; its log:\n{log}")]
    ExitedEarly {
        /// How it exited.
        status: ExitStatus,
        /// Its log.
        log: String,
    },
    /// The service did not answer discovery in time.
    #[error("the Python service did not answer {subject} within {timeout:?}; its log:\n{log}")]
    NotAnswering {
        /// The discovery subject asked.
        subject: String,
        /// How long the test waited.
        timeout: Duration,
        /// Its log.
        log: String,
    },
    /// The service did not stop after SIGTERM in time.
    #[error("the Python service did not stop within {timeout:?} of SIGTERM; its log:\n{log}")]
    DidNotStop {
        /// How long the test waited.
        timeout: Duration,
        /// Its log.
        log: String,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> PythonError {
    let action = action.into();
    move |source| PythonError::Io { action, source }
}

/// The interpreter to run the example with: `$SOA_PYTHON`, then
/// `.tools/py-venv/bin/python`; checked to import nats and jsonschema.
pub fn interpreter() -> Result<PathBuf, PythonError> {
    let venv = workspace_root().join(".tools/py-venv/bin/python");
    let python = match std::env::var_os(PYTHON_ENV_VAR).filter(|value| !value.is_empty()) {
        Some(value) => {
            let path = PathBuf::from(value);
            if !path.is_file() {
                return Err(PythonError::NotInstalled {
                    tried: format!("${PYTHON_ENV_VAR} is {} and no such file exists", path.display()),
                });
            }
            path
        }
        None if venv.is_file() => venv,
        None => {
            return Err(PythonError::NotInstalled {
                tried: format!("${PYTHON_ENV_VAR} is unset and {} does not exist", venv.display()),
            });
        }
    };
    let output = Command::new(&python)
        .args(["-c", "import nats, jsonschema"])
        .output()
        .map_err(io(format!("run {}", python.display())))?;
    if !output.status.success() {
        return Err(PythonError::MissingPackages {
            python,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(python)
}

/// The example's directory.
pub fn example_dir() -> PathBuf {
    workspace_root().join(EXAMPLE_DIR)
}

/// The example's contract document, `loyalty.v1.json`, as text.
pub fn contract_text() -> Result<String, PythonError> {
    let path = example_dir().join("loyalty.v1.json");
    std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))
}

/// The example's contract document, parsed as the registry parses it.
pub fn contract() -> Result<ContractDocument, PythonError> {
    Ok(ContractDocument::parse(
        "loyalty.v1.json",
        &contract_text()?,
        &Limits::default(),
    )?)
}

/// How to run the Python service.
#[derive(Debug, Clone)]
pub struct LoyaltyConfig {
    /// The NATS server to connect to.
    pub nats_url: String,
    /// The instance id it reports.
    pub instance_id: String,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// The registry's time to live for it.
    pub ttl: Duration,
}

impl LoyaltyConfig {
    /// Quick beats, for tests on `nats_url` as `instance_id`.
    pub fn new(nats_url: impl Into<String>, instance_id: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            instance_id: instance_id.into(),
            heartbeat_interval: Duration::from_millis(500),
            ttl: Duration::from_secs(5),
        }
    }
}

/// The Python loyalty service running as a child process; killed on drop.
pub struct LoyaltyService {
    child: Option<Child>,
    config: LoyaltyConfig,
    log: PathBuf,
    // Removed on drop, with the log, unless `SOA_TEST_LOG` keeps it.
    dir: Option<TempDir>,
}

impl LoyaltyService {
    /// Starts `loyalty.py` with `python` and waits until it answers
    /// `$SRV.PING.loyalty.<instance>` on `nats`.
    pub async fn start(python: &Path, config: LoyaltyConfig, nats: &async_nats::Client) -> Result<Self, PythonError> {
        let dir = tempfile::Builder::new()
            .prefix("soabus-python-")
            .tempdir()
            .map_err(io("create the Python service's temporary directory"))?;
        let log = dir.path().join("loyalty.log");
        let stderr = File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let stdout = stderr.try_clone().map_err(io("share the log file"))?;
        let child = Command::new(python)
            .arg(example_dir().join("loyalty.py"))
            .args(["--nats-url", &config.nats_url])
            .args(["--instance-id", &config.instance_id])
            .args([
                "--heartbeat-interval",
                &config.heartbeat_interval.as_secs_f64().to_string(),
            ])
            .args(["--ttl", &config.ttl.as_secs_f64().to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("start {}", python.display())))?;
        let mut service = Self {
            child: Some(child),
            config,
            log,
            dir: Some(dir),
        };
        service.wait_until_answering(nats, Duration::from_secs(20)).await?;
        Ok(service)
    }

    /// Its instance id.
    pub fn instance_id(&self) -> &str {
        &self.config.instance_id
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|err| format!("(no log: {err})"))
    }

    async fn wait_until_answering(&mut self, nats: &async_nats::Client, timeout: Duration) -> Result<(), PythonError> {
        let subject = subjects::discovery(DiscoveryVerb::Ping, Some("loyalty"), Some(&self.config.instance_id));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Err(PythonError::ExitedEarly {
                    status,
                    log: self.logs(),
                });
            }
            let ping = nats.request(subject.clone(), "".into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), ping).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(PythonError::NotAnswering {
                    subject,
                    timeout,
                    log: self.logs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exit_status(&mut self) -> Result<Option<ExitStatus>, PythonError> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map_err(io("check on the Python service")),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM and waits for it to exit; its exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, PythonError> {
        let Some(child) = self.child.as_mut() else {
            return Err(PythonError::Io {
                action: "stop the Python service".to_owned(),
                source: std::io::Error::other("it was stopped already"),
            });
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(io(format!("send SIGTERM to {pid}")))?;
        if !sent.success() {
            return Err(PythonError::Io {
                action: format!("send SIGTERM to {pid}"),
                source: std::io::Error::other(format!("kill exited with {sent}")),
            });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                self.child = None;
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(PythonError::DidNotStop {
                    timeout,
                    log: self.logs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LoyaltyService {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if the process is gone already.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os(LOG_ENV_VAR).is_some() {
            eprintln!(
                "--- loyalty.py {} ({}) ---\n{}",
                self.config.instance_id,
                self.log.display(),
                self.logs()
            );
            if let Some(dir) = self.dir.take() {
                // Kept for a look after the test.
                let _ = dir.keep();
            }
        }
    }
}
