//! The output formats of `soa contract check` and `diff`, each one renderer
//! of the same [`Report`]: `human` for a terminal, `json` for scripts,
//! `github` for workflow annotations, `junit` for test dashboards and
//! `sarif` for code-scanning tools.

use std::io::{self, Write};

use clap::ValueEnum;

use super::report::{Diagnostic, DocumentReport, Kind, Report, plural};

mod github;
mod human;
mod json;
mod junit;
mod sarif;

/// The output formats of `soa contract check` and `soa contract diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Grouped by document, one `path:line:column: level[rule] ...` line per
    /// diagnostic, then a summary; coloured on a terminal.
    Human,
    /// One JSON object: the documents with their diagnostics, and a summary.
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...::...`),
    /// which annotate the lines in a pull request, then the summary.
    Github,
    /// JUnit XML: a test suite per document, a test case per check or change.
    Junit,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

impl ReportFormat {
    /// Whether the output is read by a program rather than a person, so an
    /// input error must also be said on standard error.
    pub(crate) fn is_machine_readable(self) -> bool {
        !matches!(self, Self::Human)
    }
}

/// Writes `report` in `format`; `color` asks for ANSI colours (human only).
pub(crate) fn render(report: &Report, format: ReportFormat, color: bool, out: &mut dyn Write) -> io::Result<()> {
    match format {
        ReportFormat::Human => human::render(report, color, out),
        ReportFormat::Json => json::render(report, out),
        ReportFormat::Github => github::render(report, out),
        ReportFormat::Junit => junit::render(report, out),
        ReportFormat::Sarif => sarif::render(report, out),
    }
}

/// The summary line: `5 documents, 1 error, 0 warnings, 2 notes, 1 ignored`
/// (notes and ignored only when there are some).
pub(crate) fn summary_line(report: &Report) -> String {
    let counts = report.counts();
    let mut line = format!(
        "{}, {}, {}",
        plural(counts.documents, "document"),
        plural(counts.errors, "error"),
        plural(counts.warnings, "warning")
    );
    if counts.notes > 0 {
        line.push_str(&format!(", {}", plural(counts.notes, "note")));
    }
    if counts.ignored > 0 {
        line.push_str(&format!(", {} ignored", counts.ignored));
    }
    line
}

/// The verdict line, when something was compared:
/// `against origin/main: strict incompatible, lenient compatible (3 compared, 1 new)`.
/// `word` spells a verdict (so the human format can colour it).
pub(crate) fn verdict_line(report: &Report, word: impl Fn(bool) -> String) -> Option<String> {
    let verdict = report.verdict()?;
    let base = report
        .against
        .clone()
        .or_else(|| {
            report
                .documents
                .iter()
                .find_map(|document| Some(document.comparison.as_ref()?.base.clone()))
        })
        .unwrap_or_default();
    let compared = report
        .documents
        .iter()
        .filter(|document| document.verdict().is_some())
        .count();
    let new = report
        .documents
        .iter()
        .filter(|document| {
            document
                .comparison
                .as_ref()
                .is_some_and(|comparison| comparison.outcome == super::report::ComparisonOutcome::NewDocument)
        })
        .count();
    let mut line = format!(
        "against {base}: strict {}, lenient {}",
        word(verdict.strict),
        word(verdict.lenient)
    );
    if report.command == super::report::CommandKind::Check {
        line.push_str(&format!(" ({compared} compared, {new} new)"));
    }
    if report.lenient {
        line.push_str("; --lenient: the lenient verdict decides");
    }
    Some(line)
}

/// What a reader of a failed report can do about an intended change.
pub(crate) fn ignore_advice(report: &Report) -> Option<String> {
    let fixable = report
        .diagnostics()
        .any(|diagnostic| diagnostic.fails() && diagnostic.kind != Kind::Input);
    fixable.then(|| {
        let file = report
            .ignore_file
            .as_deref()
            .unwrap_or(super::fingerprint::DEFAULT_IGNORE_FILE);
        format!("To accept a finding or change on purpose, add its fingerprint to {file}.")
    })
}

/// `compatible` or `incompatible`.
pub(crate) fn verdict_word(compatible: bool) -> String {
    if compatible { "compatible" } else { "incompatible" }.to_owned()
}

/// `error[SOA001 subject-shape]`, `error[type-narrowed]`, with `ignored `
/// in front when accepted.
pub(crate) fn tag(diagnostic: &Diagnostic) -> String {
    let mut tag = String::new();
    if diagnostic.ignored {
        tag.push_str("ignored ");
    }
    tag.push_str(diagnostic.level.as_str());
    tag.push('[');
    tag.push_str(&diagnostic.rule);
    if let Some(name) = &diagnostic.name {
        tag.push(' ');
        tag.push_str(name);
    }
    tag.push(']');
    tag
}

/// `breaking change at /pointer`, `at /pointer`, or nothing: what a line
/// says about the diagnostic between its tag and its message.
pub(crate) fn qualifier(diagnostic: &Diagnostic) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(class) = diagnostic.change_class() {
        parts.push(format!("{class} change"));
    }
    if let Some(pointer) = &diagnostic.pointer {
        let pointer = if pointer.is_empty() { "(document root)" } else { pointer };
        parts.push(format!("at {pointer}"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// `breaking change at /pointer: message`, or the message alone.
pub(crate) fn description(diagnostic: &Diagnostic) -> String {
    match qualifier(diagnostic) {
        Some(qualifier) => format!("{qualifier}: {}", diagnostic.message),
        None => diagnostic.message.clone(),
    }
}

/// `error[SOA001 subject-shape] at /pointer: message`,
/// `error[json-syntax]: message`: a diagnostic after its place. `paint`
/// styles the tag (the human format colours it).
pub(crate) fn tagged(diagnostic: &Diagnostic, paint: impl Fn(&str) -> String) -> String {
    let tag = paint(&tag(diagnostic));
    match qualifier(diagnostic) {
        Some(qualifier) => format!("{tag} {qualifier}: {}", diagnostic.message),
        None => format!("{tag}: {}", diagnostic.message),
    }
}

/// `path:line:column` (or `path` when there is no position).
pub(crate) fn place(path: &str, diagnostic: &Diagnostic) -> String {
    match diagnostic.position() {
        Some(position) => format!("{path}:{}:{}", position.line, position.column),
        None => path.to_owned(),
    }
}

/// Whether a fingerprint means anything for the diagnostic: input errors
/// cannot be accepted, so theirs is not shown to people.
pub(crate) fn shows_fingerprint(diagnostic: &Diagnostic) -> bool {
    diagnostic.kind != Kind::Input
}

/// `orders 1.1.0` or the path, naming a document in headers.
pub(crate) fn document_title(document: &DocumentReport) -> String {
    match &document.contract {
        Some(id) => format!("{} {} ({})", id.service, id.version, document.path),
        None => document.path.clone(),
    }
}
