//! The JSON format: one object with the documents, their comparisons and
//! diagnostics, and a summary with both verdicts and the exit code. Field
//! names are stable; fields without a value are left out.

use std::io::{self, Write};

use contracts::compat::Verdict;
use serde::Serialize;

use super::super::report::{CommandKind, Comparison, Counts, Diagnostic, Report};

#[derive(Serialize)]
struct JsonReport<'a> {
    command: CommandKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    against: Option<&'a str>,
    lenient: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_file: Option<&'a str>,
    documents: Vec<JsonDocument<'a>>,
    summary: JsonSummary,
}

#[derive(Serialize)]
struct JsonDocument<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<JsonComparison<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    diagnostics: &'a [Diagnostic],
}

#[derive(Serialize)]
struct JsonComparison<'a> {
    #[serde(flatten)]
    comparison: &'a Comparison,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
}

#[derive(Serialize)]
struct JsonSummary {
    #[serde(flatten)]
    counts: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
    exit_code: u8,
}

pub(super) fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let json = JsonReport {
        command: report.command,
        against: report.against.as_deref(),
        lenient: report.lenient,
        ignore_file: report.ignore_file.as_deref(),
        documents: report
            .documents
            .iter()
            .map(|document| JsonDocument {
                path: &document.path,
                repo_path: document.repo_path.as_deref(),
                service: document.contract.as_ref().map(|id| id.service.to_string()),
                version: document.contract.as_ref().map(|id| id.version.to_string()),
                comparison: document.comparison.as_ref().map(|comparison| JsonComparison {
                    comparison,
                    verdict: document.verdict(),
                }),
                removed: document.removed,
                diagnostics: &document.diagnostics,
            })
            .collect(),
        summary: JsonSummary {
            counts: report.counts(),
            verdict: report.verdict(),
            exit_code: report.exit().code(),
        },
    };
    serde_json::to_writer_pretty(&mut *out, &json).map_err(io::Error::other)?;
    writeln!(out)
}
