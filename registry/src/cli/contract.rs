//! `soa contract ...`: the commands that work on contract documents as files,
//! without a server: `check` (the CI gate) and `export` (documents from the
//! Rust types, and drift detection).

use std::io::Write;

use clap::Subcommand;

use super::Exit;

mod check;
mod export;

pub use check::{CheckArgs, CheckFormat};
pub use export::ExportArgs;

/// The `soa contract` commands.
#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Check contract documents: format, subjects, references, schemas, examples.
    ///
    /// Exits 1 when any document has an error or cannot be read, 0 when there
    /// are only warnings, 2 when a path does not exist.
    Check(CheckArgs),
    /// Write the shop's contract documents from the Rust types, or check that
    /// the written ones have not drifted (--check).
    Export(ExportArgs),
}

/// Runs one `soa contract` command.
pub(super) fn run(command: &ContractCommand, out: &mut dyn Write) -> anyhow::Result<Exit> {
    match command {
        ContractCommand::Check(args) => check::run(args, out),
        ContractCommand::Export(args) => export::run(args, out),
    }
}
