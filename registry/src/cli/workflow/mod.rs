//! `soa workflow ...`: load workflow definitions into the orchestrator, start
//! instances, and follow, list and cancel them, through the orchestrator's
//! API (`soa.orchestrator.v1.<verb>`).
//!
//! - `client.rs`: the typed client and how its errors become exit codes.
//! - `load.rs`: definitions read and checked locally first, then loaded;
//!   every problem as `file:line:col: pointer: message`.
//! - `start.rs`: a start, and with `--wait` the poll until the instance ends.
//! - `query.rs`: `definitions`, `list`, `show` and `cancel`, and their tables.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use contracts::orchestrator_api::InstanceStatus;
use contracts::{ServiceName, Version};
use tokio_util::sync::CancellationToken;

use super::orchestrator::parse_positive_duration;
use super::{Exit, NatsOptions, UsageError};

mod client;
mod load;
mod query;
mod start;

/// `soa workflow ...`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Check workflow definitions locally, then load them into the orchestrator.
    ///
    /// Syntax and format errors are found without a server and printed as
    /// `file:line:col: pointer: message`. Exits 0 when every file loaded (or
    /// was loaded before, unchanged), 1 when a definition is invalid or
    /// refused, 2 when a file cannot be read or no orchestrator answers.
    Load(LoadArgs),
    /// List the loaded workflow definitions.
    ///
    /// Exits 0 with the list, 2 when no orchestrator answers.
    Definitions(DefinitionsArgs),
    /// Start an instance of a loaded workflow; with --wait, follow it to its end.
    ///
    /// Exits 0 when started (with --wait: when it completed), 1 when the
    /// input is refused, the workflow is not loaded, or with --wait when the
    /// instance was compensated, cancelled or failed or did not end in time,
    /// 2 on bad arguments or when no orchestrator answers.
    Start(StartArgs),
    /// List instances, newest first, with the counts by status.
    ///
    /// Exits 0 with the list, 1 when filters match nothing, 2 when no
    /// orchestrator answers.
    List(ListArgs),
    /// Show one instance: its steps, compensation, output and history.
    ///
    /// Exits 0 when shown, 1 when there is no such instance, 2 when no
    /// orchestrator answers.
    Show(ShowArgs),
    /// Cancel a running instance: its completed steps are compensated, newest first.
    ///
    /// Exits 0 when the cancel was accepted, 1 when the instance had already
    /// ended (or was compensating) or does not exist, 2 when no orchestrator answers.
    Cancel(CancelArgs),
}

/// Arguments of `soa workflow load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Workflow definition files (JSON); `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of `soa workflow definitions`.
#[derive(Debug, Args)]
pub struct DefinitionsArgs {
    /// Print the definitions as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa workflow start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The workflow: `name` (its latest loaded version) or `name@version`.
    #[arg(value_name = "WORKFLOW")]
    pub workflow: String,
    /// The workflow's input, a JSON object (`{}` when neither this nor --input-file is given).
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    pub input: Option<String>,
    /// A file holding the input as JSON; `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    pub input_file: Option<PathBuf>,
    /// An idempotency key: starts with the same key start one instance, and
    /// later ones get it back.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// The flow's correlation id, carried by every call the instance makes.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Follow the instance until it ends, for at most TIMEOUT (`30s`, `2m`; 60s when not given).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "60s",
          value_parser = parse_positive_duration)]
    pub wait: Option<Duration>,
    /// Print one JSON object: {instance, workflow, created, status, output, reason}.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa workflow list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only instances of this workflow: `name` (any version) or `name@version`.
    #[arg(long, value_name = "NAME[@VERSION]")]
    pub workflow: Option<String>,
    /// Only instances with this status: running, compensating, completed,
    /// compensated, cancelled or failed.
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    pub status: Option<InstanceStatus>,
    /// At most this many instances (100 when not given).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: Option<u32>,
    /// Print the orchestrator's answer as JSON: {instances, total, by_status}.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa workflow show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The instance id, as `start` and `list` print it.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
    /// Print the instance as the orchestrator stores it: {instance, current}.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa workflow cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The instance id.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
    /// Why; kept in the instance's history.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Print the orchestrator's answer as JSON: {instance, status, accepted}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soa workflow ...`.
pub(super) async fn run(
    nats: &NatsOptions,
    command: &WorkflowCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    match command {
        WorkflowCommand::Load(args) => load::run(nats, args, out, err, shutdown).await,
        WorkflowCommand::Definitions(args) => query::run_definitions(nats, args, out, err, shutdown).await,
        WorkflowCommand::Start(args) => start::run(nats, args, out, err, shutdown).await,
        WorkflowCommand::List(args) => query::run_list(nats, args, out, err, shutdown).await,
        WorkflowCommand::Show(args) => query::run_show(nats, args, out, shutdown).await,
        WorkflowCommand::Cancel(args) => query::run_cancel(nats, args, out, err, shutdown).await,
    }
}

/// Reads a status as the orchestrator writes it.
fn parse_status(text: &str) -> Result<InstanceStatus, String> {
    InstanceStatus::parse(text).ok_or_else(|| {
        format!(
            "{text:?} is no instance status; use running, compensating, completed, compensated, cancelled or failed"
        )
    })
}

/// Checks a `name` or `name@version` argument, so a typo is a usage error
/// before anything is asked.
fn parse_workflow_ref(text: &str) -> Result<String, UsageError> {
    let (name, version) = match text.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    };
    ServiceName::parse(name).map_err(|error| UsageError(format!("{text:?} names no workflow: {error}")))?;
    if let Some(version) = version {
        Version::parse(version).map_err(|error| {
            UsageError(format!(
                "{text:?} names no workflow version: {error}; write name@1.2.0, or the name alone for the latest"
            ))
        })?;
    }
    Ok(text.to_owned())
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// `350 ms ago`, `4.2 s ago`, `12 min ago`, `3 h ago`, `5 days ago`.
fn ago(ms: u64) -> String {
    const SECOND: u64 = 1_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match ms {
        ms if ms < SECOND => format!("{ms} ms ago"),
        ms if ms < MINUTE => format!("{}.{} s ago", ms / SECOND, ms % SECOND / 100),
        ms if ms < HOUR => format!("{} min ago", ms / MINUTE),
        ms if ms < DAY => format!("{} h ago", ms / HOUR),
        ms if ms < 2 * DAY => "1 day ago".to_owned(),
        ms => format!("{} days ago", ms / DAY),
    }
}

/// A length of time for a person: `812 ms`, `4.2 s`, `3 min 20 s`.
fn took(ms: u64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{}.{} s", ms / 1_000, ms % 1_000 / 100),
        ms => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_arguments_are_a_name_or_a_name_and_version() {
        assert_eq!(parse_workflow_ref("fulfilment").unwrap(), "fulfilment");
        assert_eq!(parse_workflow_ref("fulfilment@1.2.0").unwrap(), "fulfilment@1.2.0");
        for bad in ["Fulfilment", "fulfilment@", "fulfilment@1", "ful_filment"] {
            assert!(parse_workflow_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_are_read_as_written() {
        assert_eq!(parse_status("compensated"), Ok(InstanceStatus::Compensated));
        assert!(parse_status("done").unwrap_err().contains("running, compensating"));
    }

    #[test]
    fn times_read_like_a_person_would_say_them() {
        assert_eq!(ago(350), "350 ms ago");
        assert_eq!(ago(4_250), "4.2 s ago");
        assert_eq!(ago(12 * 60_000 + 5), "12 min ago");
        assert_eq!(took(812), "812 ms");
        assert_eq!(took(4_250), "4.2 s");
        assert_eq!(took(200_000), "3 min 20 s");
    }
}
