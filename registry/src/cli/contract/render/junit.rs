//! The JUnit XML format, for test dashboards (GitLab, Jenkins, Azure): a
//! test suite per document; in it a `contract check` case for reading and
//! linting, and for a comparison one case per change (or one
//! `compatible with ...` case when nothing changed). Errors are `<failure>`s,
//! ignored ones `<skipped>`, and warnings and notes passing cases with their
//! text in `<system-out>`.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::super::report::{ComparisonOutcome, Diagnostic, DocumentReport, Kind, Report};
use super::{place, shows_fingerprint, tagged};

/// One `<testcase>`.
struct Case {
    name: String,
    outcome: CaseOutcome,
    /// Text for `<system-out>`.
    output: String,
}

enum CaseOutcome {
    Passed,
    Failed {
        message: String,
        kind: String,
        body: String,
    },
    Skipped {
        message: String,
    },
}

pub(super) fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let suites: Vec<(&DocumentReport, Vec<Case>)> = report
        .documents
        .iter()
        .map(|document| (document, cases(document)))
        .collect();
    let all = suites.iter().flat_map(|(_, cases)| cases);
    let (tests, failures, skipped) = totals(all);
    let name = match report.command {
        super::super::report::CommandKind::Check => "soa contract check",
        super::super::report::CommandKind::Diff => "soa contract diff",
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">"
    );
    for (document, cases) in &suites {
        let (tests, failures, skipped) = totals(cases.iter());
        let classname = document
            .contract
            .as_ref()
            .map_or_else(|| document.path.clone(), |id| id.service.to_string());
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            escape(&super::document_title(document))
        );
        for case in cases {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"",
                escape(&classname),
                escape(&case.name),
                escape(document.annotation_path())
            );
            if matches!(case.outcome, CaseOutcome::Passed) && case.output.is_empty() {
                xml.push_str("/>\n");
                continue;
            }
            xml.push_str(">\n");
            match &case.outcome {
                CaseOutcome::Passed => {}
                CaseOutcome::Failed { message, kind, body } => {
                    let _ = writeln!(
                        xml,
                        "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                        escape(message),
                        escape(kind),
                        escape(body)
                    );
                }
                CaseOutcome::Skipped { message } => {
                    let _ = writeln!(xml, "      <skipped message=\"{}\"/>", escape(message));
                }
            }
            if !case.output.is_empty() {
                let _ = writeln!(xml, "      <system-out>{}</system-out>", escape(&case.output));
            }
            xml.push_str("    </testcase>\n");
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    out.write_all(xml.as_bytes())
}

/// Tests, failures and skipped among `cases`.
fn totals<'a>(cases: impl Iterator<Item = &'a Case>) -> (usize, usize, usize) {
    cases.fold((0, 0, 0), |(tests, failures, skipped), case| match case.outcome {
        CaseOutcome::Passed => (tests + 1, failures, skipped),
        CaseOutcome::Failed { .. } => (tests + 1, failures + 1, skipped),
        CaseOutcome::Skipped { .. } => (tests + 1, failures, skipped + 1),
    })
}

/// The test cases of one document.
fn cases(document: &DocumentReport) -> Vec<Case> {
    let line = |diagnostic: &Diagnostic| {
        let mut line = format!(
            "{}: {}",
            place(&document.path, diagnostic),
            tagged(diagnostic, str::to_owned)
        );
        if let Some(hint) = &diagnostic.hint {
            let _ = write!(line, "\n  hint: {hint}");
        }
        if shows_fingerprint(diagnostic) {
            let _ = write!(line, "\n  fingerprint: {}", diagnostic.fingerprint);
        }
        line
    };
    let mut cases = Vec::new();

    // Reading, format and lint: one check, of a document that is there.
    if document.removed {
        cases.extend(change_cases(document, &line));
        return cases;
    }
    let checks: Vec<&Diagnostic> = document
        .diagnostics
        .iter()
        .filter(|diagnostic| matches!(diagnostic.kind, Kind::Input | Kind::Format | Kind::Lint))
        .collect();
    let failing: Vec<&&Diagnostic> = checks.iter().filter(|diagnostic| diagnostic.fails()).collect();
    let passing: Vec<String> = checks
        .iter()
        .filter(|diagnostic| !diagnostic.fails())
        .map(|diagnostic| line(diagnostic))
        .collect();
    cases.push(Case {
        name: "contract check".to_owned(),
        outcome: match failing.first() {
            None => CaseOutcome::Passed,
            Some(first) => CaseOutcome::Failed {
                message: first.message.clone(),
                kind: kind_name(first.kind).to_owned(),
                body: failing
                    .iter()
                    .map(|diagnostic| line(diagnostic))
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        },
        output: passing.join("\n"),
    });

    cases.extend(change_cases(document, &line));
    cases
}

/// The cases of a document's comparison: one per change, or one saying it
/// is compatible or why nothing was compared.
fn change_cases(document: &DocumentReport, line: &dyn Fn(&Diagnostic) -> String) -> Vec<Case> {
    let mut cases = Vec::new();
    let Some(comparison) = &document.comparison else {
        return cases;
    };
    let compatibility = format!("compatibility with {}", comparison.base);
    let notes: Vec<&Diagnostic> = document
        .diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.kind == Kind::Comparison)
        .collect();
    match comparison.outcome {
        ComparisonOutcome::NewDocument | ComparisonOutcome::NotCompared => {
            let message = notes.first().map_or_else(
                || "nothing to compare".to_owned(),
                |diagnostic| diagnostic.message.clone(),
            );
            cases.push(Case {
                name: compatibility,
                outcome: CaseOutcome::Skipped { message },
                output: String::new(),
            });
        }
        ComparisonOutcome::Compared => {
            let changes: Vec<&Diagnostic> = document
                .diagnostics
                .iter()
                .filter(|diagnostic| diagnostic.kind == Kind::Change)
                .collect();
            if changes.is_empty() {
                cases.push(Case {
                    name: format!("compatible with {}", comparison.base),
                    outcome: CaseOutcome::Passed,
                    output: notes
                        .iter()
                        .map(|diagnostic| line(diagnostic))
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            for change in changes {
                let name = match &change.pointer {
                    Some(pointer) => format!("{} at {pointer}", change.rule),
                    None => change.rule.clone(),
                };
                let outcome = if change.ignored {
                    CaseOutcome::Skipped {
                        message: format!("accepted by the ignore file (fingerprint {})", change.fingerprint),
                    }
                } else if change.fails() {
                    CaseOutcome::Failed {
                        message: change.message.clone(),
                        kind: change.change_class().unwrap_or("change").to_owned(),
                        body: line(change),
                    }
                } else {
                    CaseOutcome::Passed
                };
                let output = if matches!(outcome, CaseOutcome::Passed) {
                    line(change)
                } else {
                    String::new()
                };
                cases.push(Case { name, outcome, output });
            }
        }
    }
    cases
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Input => "input",
        Kind::Format => "format",
        Kind::Lint => "lint",
        Kind::Change => "change",
        Kind::Comparison => "comparison",
    }
}

/// Escapes text for XML attributes and content, and replaces the control
/// characters XML 1.0 cannot hold at all.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(character),
            control if (control as u32) < 0x20 || matches!(control, '\u{FFFE}' | '\u{FFFF}') => {
                escaped.push('\u{FFFD}');
            }
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_forbidden_characters_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'\u{1}</a>\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{FFFD}&lt;/a&gt;\n"
        );
    }
}
