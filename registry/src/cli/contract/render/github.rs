//! The GitHub format: one workflow command per diagnostic
//! (`::error file=F,line=L,col=C,title=T::message`), which GitHub Actions
//! turns into annotations on the lines of a pull request, then the summary
//! as plain log lines.
//!
//! Errors are `::error`, warnings `::warning`, notes and ignored diagnostics
//! `::notice`. Values are escaped as the Actions runner expects: `%`, CR and
//! LF everywhere, and `:` and `,` in properties too.

use std::io::{self, Write};

use super::super::report::Report;
use super::super::report::{Diagnostic, Level};
use super::{description, ignore_advice, shows_fingerprint, summary_line, verdict_line, verdict_word};

pub(super) fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for document in &report.documents {
        for diagnostic in &document.diagnostics {
            writeln!(out, "{}", annotation(document.annotation_path(), diagnostic))?;
        }
    }
    writeln!(out, "{}", summary_line(report))?;
    if let Some(line) = verdict_line(report, verdict_word) {
        writeln!(out, "{line}")?;
    }
    if let Some(advice) = ignore_advice(report) {
        writeln!(out, "{advice}")?;
    }
    Ok(())
}

/// One workflow command.
fn annotation(file: &str, diagnostic: &Diagnostic) -> String {
    let command = match (diagnostic.ignored, diagnostic.level) {
        (false, Level::Error) => "error",
        (false, Level::Warning) => "warning",
        (true, _) | (false, Level::Note) => "notice",
    };
    let mut properties = vec![format!("file={}", escape_property(file))];
    if let Some(position) = diagnostic.position() {
        properties.push(format!("line={}", position.line));
        properties.push(format!("col={}", position.column));
    }
    properties.push(format!("title={}", escape_property(&title(diagnostic))));
    let mut message = description(diagnostic);
    if let Some(hint) = &diagnostic.hint {
        message.push_str(&format!("\nhint: {hint}"));
    }
    if shows_fingerprint(diagnostic) {
        message.push_str(&format!("\nfingerprint: {}", diagnostic.fingerprint));
    }
    format!("::{command} {}::{}", properties.join(","), escape_data(&message))
}

/// `SOA001 subject-shape`, `breaking change type-narrowed`, `json-syntax`;
/// `ignored ` in front when accepted.
fn title(diagnostic: &Diagnostic) -> String {
    let mut title = String::new();
    if diagnostic.ignored {
        title.push_str("ignored ");
    }
    if let Some(class) = diagnostic.change_class() {
        title.push_str(&format!("{class} change "));
    }
    title.push_str(&diagnostic.rule);
    if let Some(name) = &diagnostic.name {
        title.push(' ');
        title.push_str(name);
    }
    title
}

/// Escapes a command's message.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a command property's value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_properties_are_escaped_as_the_runner_expects() {
        assert_eq!(escape_data("50% off\r\nnext: a,b"), "50%25 off%0D%0Anext: a,b");
        assert_eq!(escape_property("C:\\a,b%\n"), "C%3A\\a%2Cb%25%0A");
    }
}
