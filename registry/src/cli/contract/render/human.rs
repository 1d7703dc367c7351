//! The human format: a header per document that has something to say, a
//! `path:line:column: level[rule] ...` line per diagnostic (with its hint and
//! fingerprint), then the summary and the verdicts. Colour is ANSI, and only
//! when asked for (a terminal without `NO_COLOR`).

use std::io::{self, Write};

use super::super::report::{ComparisonOutcome, Diagnostic, Level, Report};
use super::{document_title, ignore_advice, place, shows_fingerprint, summary_line, tagged, verdict_line};

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
struct Paint {
    color: bool,
}

impl Paint {
    const BOLD: &'static str = "1";
    const DIM: &'static str = "2";
    const RED: &'static str = "1;31";
    const YELLOW: &'static str = "1;33";
    const CYAN: &'static str = "36";
    const GREEN: &'static str = "32";

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn level(self, diagnostic: &Diagnostic, text: &str) -> String {
        let code = match (diagnostic.ignored, diagnostic.level) {
            (true, _) => Self::DIM,
            (false, Level::Error) => Self::RED,
            (false, Level::Warning) => Self::YELLOW,
            (false, Level::Note) => Self::CYAN,
        };
        self.paint(code, text)
    }

    fn verdict(self, compatible: bool) -> String {
        if compatible {
            self.paint(Self::GREEN, "compatible")
        } else {
            self.paint(Self::RED, "incompatible")
        }
    }
}

pub(super) fn render(report: &Report, color: bool, out: &mut dyn Write) -> io::Result<()> {
    let paint = Paint { color };
    for document in report
        .documents
        .iter()
        .filter(|document| !document.diagnostics.is_empty())
    {
        let mut header = paint.paint(Paint::BOLD, &document_title(document));
        if let Some(comparison) = &document.comparison
            && comparison.outcome == ComparisonOutcome::Compared
        {
            header.push_str(&format!(", against {}", comparison.base));
            let details: Vec<&str> = [comparison.old_contract.as_deref(), comparison.policy.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if !details.is_empty() {
                header.push_str(&format!(" ({})", details.join(", ")));
            }
            if let Some(verdict) = document.verdict() {
                header.push_str(&format!(
                    ": strict {}, lenient {}",
                    paint.verdict(verdict.strict),
                    paint.verdict(verdict.lenient)
                ));
            }
        }
        writeln!(out, "{header}")?;
        for diagnostic in &document.diagnostics {
            let mut line = format!(
                "  {}: {}",
                place(&document.path, diagnostic),
                tagged(diagnostic, |tag| paint.level(diagnostic, tag))
            );
            if shows_fingerprint(diagnostic) {
                line.push_str(&paint.paint(Paint::DIM, &format!(" (fingerprint {})", diagnostic.fingerprint)));
            }
            writeln!(out, "{line}")?;
            if let Some(hint) = &diagnostic.hint {
                writeln!(out, "      hint: {hint}")?;
            }
        }
    }
    if report.documents.iter().any(|document| !document.diagnostics.is_empty()) {
        writeln!(out)?;
    }
    writeln!(out, "{}", summary_line(report))?;
    if let Some(line) = verdict_line(report, |compatible| paint.verdict(compatible)) {
        writeln!(out, "{line}")?;
    }
    if let Some(advice) = ignore_advice(report) {
        writeln!(out, "{advice}")?;
    }
    Ok(())
}
