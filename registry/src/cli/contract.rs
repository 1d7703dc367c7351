//! `soa contract ...`: the commands that work on contract documents as files:
//! `check` (the CI gate; against a git revision, or a running registry with
//! `--against nats://...`), `diff` (two versions side by side) and `export`
//! (documents from the Rust types, and drift detection) and `permissions`
//! (the NATS permissions each service needs, from its contract).
//!
//! `check` and `diff` build one [`Report`] of plain data; the output formats
//! render it, and the report alone decides the exit code.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{Exit, NatsOptions, UsageError};

mod against;
mod against_registry;
mod check;
mod compare;
mod diff;
mod export;
mod fingerprint;
mod permissions;
mod render;
mod report;

pub use check::{CheckArgs, Source, check_sources};
pub use diff::{DiffArgs, ModeArg};
pub use export::ExportArgs;
pub use permissions::{PermissionsArgs, PermissionsFormat};
pub use render::ReportFormat;
pub use report::Report;

/// The `soa contract` commands.
#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Check contract documents: format, subjects, references, schemas,
    /// examples, and with --against REV compatibility with the same files at
    /// a git revision, or with --against nats://HOST:PORT whether a running
    /// registry would accept each one.
    ///
    /// Exits 0 when everything passes (warnings and compatible changes
    /// allowed), 1 when a document is invalid or has a lint error or a
    /// breaking change (or the registry would refuse it), 2 when an input
    /// cannot be read at all (a missing path, a file that is not JSON, an
    /// unknown git revision) or no registry answers.
    Check(CheckArgs),
    /// Compare two versions of a contract document, or two JSON Schemas
    /// (--schema), and report every change and whether it breaks.
    ///
    /// Exits 0 when compatible, 1 when a change breaks the mode (or cannot be
    /// decided, unless --lenient), 2 when an input cannot be read.
    Diff(DiffArgs),
    /// Write the shop's contract documents from the Rust types, or check that
    /// the written ones have not drifted (--check).
    Export(ExportArgs),
    /// Print the NATS permissions each service's instances need, derived
    /// from the contracts: subscribe to its own operations, discovery and
    /// inbox (`_INBOX_<service>`); publish its own events, the operations it
    /// declares in `calls`, the registry's register/heartbeat/deregister, and
    /// the JetStream API of its own stream, of durable consumers on the
    /// streams it `consumes` from and of the dead letters. Give every
    /// document the services call or consume from (a folder works).
    ///
    /// Exits 0 with a nats-server configuration (or JSON), 2 when a file
    /// cannot be read or parsed, or a call or consumption names a service
    /// whose document was not given.
    Permissions(PermissionsArgs),
}

/// How `check` and `diff` print and judge what they found.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    pub format: ReportFormat,
    /// Count changes the checker cannot decide (`not`, `if`/`then`, dynamic
    /// references) as warnings instead of errors: the lenient verdict decides.
    #[arg(long)]
    pub lenient: bool,
    /// A file of accepted fingerprints, one a line, `#` comments allowed:
    /// those diagnostics are reported as ignored and do not fail. Default:
    /// .soa-ignore in the current directory, when there is one.
    #[arg(long, value_name = "FILE")]
    pub ignore: Option<PathBuf>,
}

impl OutputArgs {
    fn ignore_list(&self) -> Result<fingerprint::IgnoreList, UsageError> {
        fingerprint::IgnoreList::load(self.ignore.as_deref())
    }
}

/// Runs one `soa contract` command. `color` asks the human format for ANSI
/// colours; `nats` holds the credentials for `check --against nats://...`.
pub(super) async fn run(
    command: &ContractCommand,
    nats: &NatsOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    color: bool,
) -> anyhow::Result<Exit> {
    match command {
        ContractCommand::Check(args) => check::run(args, nats, out, err, color).await,
        ContractCommand::Diff(args) => diff::run(args, out, err, color),
        ContractCommand::Export(args) => export::run(args, out),
        ContractCommand::Permissions(args) => permissions::run(args, out),
    }
}

/// Prints `report` and returns its exit code. In the formats a program
/// reads, an input that could not be read is also said on standard error,
/// where the person looking at the CI log sees it.
fn finish(
    report: &Report,
    output: &OutputArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    color: bool,
) -> anyhow::Result<Exit> {
    render::render(report, output.format, color, out).context("could not write the report")?;
    if output.format.is_machine_readable() {
        for document in &report.documents {
            for diagnostic in document
                .diagnostics
                .iter()
                .filter(|diagnostic| diagnostic.kind == report::Kind::Input)
            {
                // The report is written; a closed standard error loses only this echo.
                let _ = writeln!(
                    err,
                    "error: {}: {}",
                    render::place(&document.path, diagnostic),
                    diagnostic.message
                );
            }
        }
    }
    Ok(report.exit())
}
