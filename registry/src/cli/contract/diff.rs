//! `soa contract diff OLD NEW`: compares two versions of a contract document
//! (role-aware, under the new document's policy or `--mode`), or two bare
//! JSON Schemas (`--schema`, BACKWARD unless `--mode` says otherwise), and
//! reports every change with its place in NEW and both verdicts.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use contracts::compat::{Mode, diff_schemas};
use contracts::locate::locate_nearest;
use contracts::parse::parse_json;
use contracts::{CompatibilityPolicy, ContractDocument, Limits};
use serde_json::Value;

use super::compare::{compare_into, in_document_order};
use super::report::{
    CommandKind, Comparison, ComparisonOutcome, Diagnostic, DocumentReport, Judged, Kind, Level, Report, file_scope,
};
use super::{OutputArgs, finish};
use crate::cli::{Exit, UsageError};

/// Arguments of `soa contract diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier version: a contract document, or a JSON Schema with --schema.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The new version.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Compare two bare JSON Schemas instead of two contract documents.
    #[arg(long)]
    pub schema: bool,
    /// The compatibility mode to check. Default: the new document's own
    /// policy; backward for --schema.
    ///
    /// For documents the mode is role-aware: under backward, requests must
    /// stay acceptable to the new version and responses and events to old
    /// readers. For schemas it is the schema-registry meaning: backward means
    /// data written with OLD validates against NEW.
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<ModeArg>,
    /// Output, verdict and ignore options.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A compatibility mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// New readers accept what old writers sent.
    Backward,
    /// Old readers accept what new writers send.
    Forward,
    /// Both.
    Full,
}

impl ModeArg {
    fn mode(self) -> Mode {
        match self {
            Self::Backward => Mode::Backward,
            Self::Forward => Mode::Forward,
            Self::Full => Mode::Full,
        }
    }

    fn policy(self) -> CompatibilityPolicy {
        match self {
            Self::Backward => CompatibilityPolicy::Backward,
            Self::Forward => CompatibilityPolicy::Forward,
            Self::Full => CompatibilityPolicy::Full,
        }
    }
}

/// Runs `soa contract diff`.
pub(super) fn run(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write, color: bool) -> anyhow::Result<Exit> {
    let ignore = args.output.ignore_list()?;
    let old_text = read_text(&args.old)?;
    let new_text = read_text(&args.new)?;
    let old_path = args.old.display().to_string();
    let new_path = args.new.display().to_string();
    let mut report = Report::new(CommandKind::Diff);
    report.lenient = args.output.lenient;
    let limits = Limits::default();
    report.documents = if args.schema {
        let mode = args.mode.map_or(Mode::Backward, ModeArg::mode);
        diff_schema_files(
            (&old_path, &old_text),
            (&new_path, &new_text),
            mode,
            report.lenient,
            &limits,
        )
    } else {
        let mode = args.mode.map(ModeArg::policy);
        diff_documents(
            (&old_path, &old_text),
            (&new_path, new_text),
            mode,
            report.lenient,
            &limits,
        )?
    };
    report.apply_ignores(&ignore);
    finish(&report, &args.output, out, err, color)
}

/// The text of `path`; a missing or unreadable file is a usage error.
fn read_text(path: &Path) -> Result<String, UsageError> {
    fs::read_to_string(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => UsageError(format!("no such file: {}", path.display())),
        _ => UsageError(format!("cannot read {}: {error}", path.display())),
    })
}

/// Compares two contract documents: one report for NEW with the changes, or
/// a report per document that cannot be read as a contract.
fn diff_documents(
    (old_path, old_text): (&str, &str),
    (new_path, new_text): (&str, String),
    policy: Option<CompatibilityPolicy>,
    lenient: bool,
    limits: &Limits,
) -> Result<Vec<DocumentReport>, UsageError> {
    let old = ContractDocument::parse(old_path, old_text, limits);
    let new = ContractDocument::parse(new_path, &new_text, limits);
    let (old, new) = match (old, new) {
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => {
            let unreadable = [(old_path, old.err()), (new_path, new.err())];
            return Ok(unreadable
                .into_iter()
                .filter_map(|(path, error)| {
                    let error = error?;
                    let mut report = DocumentReport::new(path.to_owned());
                    report.diagnostics = Diagnostic::from_document_error(path, &error);
                    Some(report)
                })
                .collect());
        }
    };
    if old.service != new.service {
        return Err(UsageError(format!(
            "{old_path} is a contract of {} and {new_path} of {}; diff compares two versions of one service",
            old.service, new.service
        )));
    }
    let policy = policy.unwrap_or(new.compatibility);
    let mut report = DocumentReport::new(new_path.to_owned());
    report.contract = Some(new.id());
    report.parsed = Some((new, new_text));
    compare_into(&mut report, old_path, old_path, &old, policy, lenient);
    Ok(vec![report])
}

/// Compares two bare JSON Schemas under `mode`.
fn diff_schema_files(
    (old_path, old_text): (&str, &str),
    (new_path, new_text): (&str, &str),
    mode: Mode,
    lenient: bool,
    limits: &Limits,
) -> Vec<DocumentReport> {
    let old = read_schema(old_path, old_text, limits);
    let new = read_schema(new_path, new_text, limits);
    let (old, new) = match (old, new) {
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => {
            let unreadable = [(old_path, old.err()), (new_path, new.err())];
            return unreadable
                .into_iter()
                .filter_map(|(path, diagnostics)| {
                    let mut report = DocumentReport::new(path.to_owned());
                    report.diagnostics = diagnostics?;
                    Some(report)
                })
                .collect();
        }
    };
    let mut report = DocumentReport::new(new_path.to_owned());
    let scope = report.scope();
    report.diagnostics = diff_schemas(&old, &new)
        .iter()
        .map(|change| {
            let judged = Judged {
                breaking: change.breaks(mode),
                ..Judged::default()
            };
            Diagnostic::from_change(&scope, (new_text, &new), change, judged, lenient)
        })
        .collect();
    in_document_order(&mut report.diagnostics);
    report.comparison = Some(Comparison {
        base: old_path.to_owned(),
        old_path: Some(old_path.to_owned()),
        old_contract: None,
        policy: Some(mode.to_string()),
        outcome: ComparisonOutcome::Compared,
    });
    vec![report]
}

/// Reads a JSON Schema: JSON within the limits, a dialect the checker
/// knows, valid against its meta-schema. Anything else is an input error,
/// returned as the diagnostics to report.
fn read_schema(path: &str, text: &str, limits: &Limits) -> Result<Value, Vec<Diagnostic>> {
    let value = parse_json(path, text, limits).map_err(|error| Diagnostic::from_document_error(path, &error))?;
    let not_a_schema = |pointer: &str, message: String| {
        let position = locate_nearest(text, pointer);
        let mut diagnostic = Diagnostic::new(Level::Error, Kind::Input, &file_scope(path), "not-a-schema", message);
        diagnostic.pointer = Some(pointer.to_owned());
        diagnostic.line = Some(position.line);
        diagnostic.column = Some(position.column);
        vec![diagnostic]
    };
    if jsonschema::Draft::default().detect(&value) == jsonschema::Draft::Unknown {
        let dialect = value.get("$schema").and_then(Value::as_str).unwrap_or_default();
        return Err(not_a_schema(
            "/$schema",
            format!(
                "not a JSON Schema soa knows: $schema {dialect:?} names no JSON Schema draft (contracts use https://json-schema.org/draft/2020-12/schema)"
            ),
        ));
    }
    if let Err(error) = jsonschema::meta::validate(&value) {
        let pointer = error.instance_path().as_str().to_owned();
        return Err(not_a_schema(&pointer, format!("not a JSON Schema: {error}")));
    }
    Ok(value)
}
