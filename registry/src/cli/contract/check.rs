//! `soa contract check PATH...`: reads contract documents from files and
//! folders, checks each one and prints every finding with its place.
//!
//! Checking is two passes over documents parsed once: first every readable
//! document joins one [`SchemaSet`], so `soa://` references between the
//! documents given resolve; then each is linted against that set. The result
//! is a [`Report`] of plain data, and each output format is one renderer of
//! it, so formats such as GitHub annotations or SARIF are one function more.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use contracts::locate::Position;
use contracts::{ContractDocument, ContractId, DocumentError, Finding, Limits, SchemaSet, Severity, lint};
use serde::Serialize;

use crate::cli::{Exit, UsageError};

/// Arguments of `soa contract check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Contract documents, or folders in which every *.json file is one (searched recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
}

/// The output formats of `soa contract check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One `path:line:column: severity[rule] at pointer: message` line per
    /// finding, then a summary.
    Human,
    /// A JSON array with one object per document.
    Json,
}

/// Runs `soa contract check`.
pub(super) fn run(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let files = collect_files(&args.paths)?;
    let sources = files
        .iter()
        .map(|path| Source {
            path: path.display().to_string(),
            text: fs::read_to_string(path).map_err(|error| error.to_string()),
        })
        .collect();
    let report = check_sources(sources, &Limits::default());
    match args.format {
        CheckFormat::Human => render_human(&report, out),
        CheckFormat::Json => render_json(&report, out),
    }
    .context("could not write the report")?;
    Ok(if report.failed() { Exit::Failure } else { Exit::Success })
}

/// One document to check: where it came from and its text, or why the text
/// could not be read.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) path: String,
    pub(crate) text: Result<String, String>,
}

/// What checking a set of documents found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) documents: Vec<DocumentReport>,
}

/// What checking one document found.
#[derive(Debug)]
pub(crate) struct DocumentReport {
    pub(crate) path: String,
    pub(crate) outcome: Outcome,
}

/// A document was either read and linted, or could not be read at all.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Read as a contract document; the findings may be empty.
    Checked { id: ContractId, findings: Vec<Finding> },
    /// The file could not be read.
    Unreadable(String),
    /// The text is not a contract document.
    Invalid(DocumentError),
}

/// One line of output, whatever produced it: a lint finding or a reason the
/// document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Diagnostic {
    severity: Severity,
    /// A lint rule's id (`SOA001`), or what kind of reading failure.
    rule: String,
    /// The lint rule's name (`subject-shape`), when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    message: String,
}

impl Diagnostic {
    fn new(severity: Severity, rule: &str, position: Option<Position>, message: String) -> Self {
        Self {
            severity,
            rule: rule.to_owned(),
            name: None,
            pointer: None,
            line: position.map(|position| position.line),
            column: position.map(|position| position.column),
            message,
        }
    }

    fn from_finding(finding: &Finding) -> Self {
        Self {
            name: Some(finding.rule.name().to_owned()),
            pointer: Some(finding.pointer.clone()),
            ..Self::new(
                finding.severity,
                finding.rule.id(),
                finding.position,
                finding.message.clone(),
            )
        }
    }

    /// `path:line:column: error[SOA001 subject-shape] at /pointer: message`.
    fn human(&self, path: &str) -> String {
        let mut line = path.to_owned();
        if let (Some(row), Some(column)) = (self.line, self.column) {
            line.push_str(&format!(":{row}:{column}"));
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        line.push_str(&format!(": {severity}[{}", self.rule));
        if let Some(name) = &self.name {
            line.push_str(&format!(" {name}"));
        }
        line.push(']');
        if let Some(pointer) = &self.pointer {
            let pointer = if pointer.is_empty() { "(document root)" } else { pointer };
            line.push_str(&format!(" at {pointer}"));
        }
        line.push_str(&format!(": {}", self.message));
        line
    }
}

impl DocumentReport {
    /// Every diagnostic of the document, in document order.
    pub(crate) fn diagnostics(&self) -> Vec<Diagnostic> {
        match &self.outcome {
            Outcome::Checked { findings, .. } => findings.iter().map(Diagnostic::from_finding).collect(),
            Outcome::Unreadable(reason) => {
                vec![Diagnostic::new(
                    Severity::Error,
                    "unreadable",
                    None,
                    format!("could not read the file: {reason}"),
                )]
            }
            Outcome::Invalid(error) => document_error_diagnostics(&self.path, error),
        }
    }
}

/// The diagnostics of a document that could not be read as a contract.
fn document_error_diagnostics(path: &str, error: &DocumentError) -> Vec<Diagnostic> {
    let single = |rule: &str, position: Option<Position>| {
        vec![Diagnostic::new(
            Severity::Error,
            rule,
            position,
            without_location(error, path, position),
        )]
    };
    match error {
        DocumentError::Syntax { position, .. } => single("json-syntax", Some(*position)),
        DocumentError::TooDeep { position, .. } => single("too-deep", Some(*position)),
        DocumentError::TooLarge { .. } => single("too-large", None),
        DocumentError::Invalid { problems, .. } => problems
            .iter()
            .map(|problem| Diagnostic {
                pointer: Some(problem.pointer.clone()),
                ..Diagnostic::new(
                    Severity::Error,
                    "contract-format",
                    problem.position,
                    problem.message.clone(),
                )
            })
            .collect(),
    }
}

/// The error's message without the `path:line:column: ` it starts with, which
/// the output prints in its own place.
fn without_location(error: &DocumentError, path: &str, position: Option<Position>) -> String {
    let text = error.to_string();
    let prefixes = [
        position.map(|position| format!("{path}:{}:{}: ", position.line, position.column)),
        Some(format!("{path}: ")),
    ];
    prefixes
        .into_iter()
        .flatten()
        .find_map(|prefix| text.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or(text)
}

impl Report {
    /// How many diagnostics of `severity` the report holds.
    pub(crate) fn count(&self, severity: Severity) -> usize {
        self.documents
            .iter()
            .flat_map(DocumentReport::diagnostics)
            .filter(|diagnostic| diagnostic.severity == severity)
            .count()
    }

    /// True when the check fails: any error, including an unreadable document.
    pub(crate) fn failed(&self) -> bool {
        self.count(Severity::Error) > 0
    }
}

/// Checks the documents: parse each once, make all of them available to each
/// other's `soa://` references, then lint each.
pub(crate) fn check_sources(sources: Vec<Source>, limits: &Limits) -> Report {
    let parsed: Vec<(Source, Option<Result<ContractDocument, DocumentError>>)> = sources
        .into_iter()
        .map(|source| {
            let document = source
                .text
                .as_ref()
                .ok()
                .map(|text| ContractDocument::parse(&source.path, text, limits));
            (source, document)
        })
        .collect();
    let mut external = SchemaSet::default();
    for document in parsed
        .iter()
        .filter_map(|(_, document)| document.as_ref()?.as_ref().ok())
    {
        external.add_contract(document);
    }
    let documents = parsed
        .into_iter()
        .map(|(source, document)| {
            let outcome = match (source.text, document) {
                (Err(reason), _) => Outcome::Unreadable(reason),
                (Ok(text), Some(Ok(document))) => Outcome::Checked {
                    findings: lint(&document, Some(&text), &external),
                    id: document.id(),
                },
                (Ok(_), Some(Err(error))) => Outcome::Invalid(error),
                // Every readable source was parsed above.
                (Ok(_), None) => Outcome::Unreadable("the file was not parsed".to_owned()),
            };
            DocumentReport {
                path: source.path,
                outcome,
            }
        })
        .collect();
    Report { documents }
}

/// The files to check: each path that is a file, and every `*.json` file
/// under each path that is a folder (sorted, recursively). A path that does
/// not exist, or a folder without documents, is a usage error.
pub(crate) fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => missing.push(path.display().to_string()),
            Err(error) => {
                return Err(UsageError(format!("cannot read {}: {error}", path.display())));
            }
            Ok(metadata) if metadata.is_dir() => {
                let mut found = Vec::new();
                find_json_files(path, &mut found)
                    .map_err(|error| UsageError(format!("cannot search {}: {error}", path.display())))?;
                if found.is_empty() {
                    return Err(UsageError(format!(
                        "{} holds no *.json contract documents",
                        path.display()
                    )));
                }
                found.sort();
                files.extend(found);
            }
            Ok(_) => files.push(path.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(UsageError(format!("no such file or directory: {}", missing.join(", "))));
    }
    let mut seen = HashSet::new();
    files.retain(|file| seen.insert(file.clone()));
    Ok(files)
}

/// Adds every `*.json` file under `dir` to `found`. Symbolic links to folders
/// are not followed, so a link loop cannot make the search endless.
fn find_json_files(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            find_json_files(&path, found)?;
        } else if path.extension().is_some_and(|extension| extension == "json") && path.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

fn render_human(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for document in &report.documents {
        for diagnostic in document.diagnostics() {
            writeln!(out, "{}", diagnostic.human(&document.path))?;
        }
    }
    let (errors, warnings) = (report.count(Severity::Error), report.count(Severity::Warning));
    writeln!(
        out,
        "{}, {}, {}",
        plural(report.documents.len(), "document"),
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// The JSON form of one document's result.
#[derive(Debug, Serialize)]
struct JsonDocument<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    findings: Option<Vec<Diagnostic>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError>,
}

/// Why a document could not be read, in JSON.
#[derive(Debug, Serialize)]
struct JsonError {
    message: String,
    problems: Vec<Diagnostic>,
}

fn render_json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let documents: Vec<JsonDocument<'_>> = report
        .documents
        .iter()
        .map(|document| {
            let mut json = JsonDocument {
                path: &document.path,
                service: None,
                version: None,
                findings: None,
                error: None,
            };
            match &document.outcome {
                Outcome::Checked { id, .. } => {
                    json.service = Some(id.service.to_string());
                    json.version = Some(id.version.to_string());
                    json.findings = Some(document.diagnostics());
                }
                Outcome::Unreadable(reason) => {
                    json.error = Some(JsonError {
                        message: format!("could not read the file: {reason}"),
                        problems: document.diagnostics(),
                    });
                }
                Outcome::Invalid(error) => {
                    json.error = Some(JsonError {
                        message: error.to_string(),
                        problems: document.diagnostics(),
                    });
                }
            }
            json
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &documents).map_err(io::Error::other)?;
    writeln!(out)
}

/// `1 document`, `2 documents`.
fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: path.to_owned(),
            text: Ok(text.to_owned()),
        }
    }

    fn human(report: &Report) -> String {
        let mut out = Vec::new();
        render_human(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn orders_text() -> String {
        contracts::shop::orders::contract().unwrap().to_pretty_json()
    }

    #[test]
    fn clean_documents_print_only_the_summary() {
        let report = check_sources(vec![source("orders.v1.json", &orders_text())], &Limits::default());
        assert!(!report.failed());
        assert_eq!(human(&report), "1 document, 0 errors, 0 warnings\n");
    }

    #[test]
    fn references_between_the_documents_given_resolve() {
        let mut payments = contracts::shop::payments::contract().unwrap().to_value();
        payments["$defs"]["Price"] = serde_json::json!({"$ref": "soa://orders@1#/$defs/Money"});
        let payments = serde_json::to_string_pretty(&payments).unwrap();
        let alone = check_sources(vec![source("payments.json", &payments)], &Limits::default());
        assert!(alone.failed(), "{}", human(&alone));
        assert!(
            human(&alone).contains("error[SOA021 unresolved-ref]"),
            "{}",
            human(&alone)
        );

        let together = check_sources(
            vec![
                source("payments.json", &payments),
                source("orders.json", &orders_text()),
            ],
            &Limits::default(),
        );
        assert!(!together.failed(), "{}", human(&together));
    }

    #[test]
    fn a_finding_line_names_the_place_the_rule_and_the_pointer() {
        let text = orders_text().replace("\"shop.orders.v1.get\"", "\"shop.orders.get\"");
        let report = check_sources(vec![source("bad.json", &text)], &Limits::default());
        let output = human(&report);
        let line = output.lines().next().unwrap();
        assert!(
            line.starts_with("bad.json:")
                && line.contains(": error[SOA001 subject-shape] at /operations/get/subject: "),
            "{output}"
        );
        assert!(output.ends_with("\n1 document, 1 error, 0 warnings\n"), "{output}");
    }

    #[test]
    fn unreadable_and_malformed_documents_are_errors_with_their_place() {
        let report = check_sources(
            vec![
                source("broken.json", "{\n  \"contract\": \"soabus/v1\",\n  oops\n}"),
                Source {
                    path: "binary.json".to_owned(),
                    text: Err("stream did not contain valid UTF-8".to_owned()),
                },
                source("other.json", r#"{"contract": "soabus/v1", "colour": "blue"}"#),
            ],
            &Limits::default(),
        );
        assert!(report.failed());
        let output = human(&report);
        assert!(
            output.contains("broken.json:3:3: error[json-syntax]: not valid JSON: key must be a string\n"),
            "{output}"
        );
        assert!(
            output.contains(
                "binary.json: error[unreadable]: could not read the file: stream did not contain valid UTF-8\n"
            ),
            "{output}"
        );
        assert!(
            output.contains("other.json:1:37: error[contract-format] at /colour: unknown field \"colour\""),
            "{output}"
        );
    }

    #[test]
    fn the_json_format_has_one_object_per_document() {
        let report = check_sources(
            vec![source("orders.v1.json", &orders_text()), source("broken.json", "{")],
            &Limits::default(),
        );
        let mut out = Vec::new();
        render_json(&report, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json[0]["path"], "orders.v1.json");
        assert_eq!(json[0]["service"], "orders");
        assert_eq!(json[0]["version"], "1.0.0");
        assert_eq!(json[0]["findings"], serde_json::json!([]));
        assert_eq!(json[1]["path"], "broken.json");
        assert_eq!(json[1]["error"]["problems"][0]["rule"], "json-syntax");
        assert_eq!(json[1]["error"]["problems"][0]["line"], 1);
        assert!(
            json[1]["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("broken.json:1:")
        );
    }

    #[test]
    fn folders_are_searched_recursively_in_order_and_missing_paths_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("nested")).unwrap();
        for name in ["b.json", "a.json", "nested/c.json", "notes.txt"] {
            fs::write(dir.path().join(name), "{}").unwrap();
        }
        let files = collect_files(&[dir.path().to_owned(), dir.path().join("a.json")]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|file| file.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.json", "b.json", "nested/c.json"]);

        let missing = collect_files(&[dir.path().join("nope.json")]).unwrap_err();
        assert!(
            missing.to_string().starts_with("no such file or directory: "),
            "{missing}"
        );
        fs::create_dir(dir.path().join("empty")).unwrap();
        let empty = collect_files(&[dir.path().join("empty")]).unwrap_err();
        assert!(
            empty.to_string().ends_with("holds no *.json contract documents"),
            "{empty}"
        );
    }
}
