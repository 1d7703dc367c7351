//! `soa workflow load FILE...`: each definition is read and checked here
//! first (JSON syntax, the definition format, the structural checks), so a
//! typo is reported at its line and column without a server; only the
//! definitions that pass are sent to the orchestrator, which checks them
//! against the registered contracts they call.
//!
//! The exit code is the worst of the files': 2 when a file cannot be read
//! (or no orchestrator answers), 1 when a definition is invalid or refused,
//! 0 when every file loaded or was loaded before unchanged.

use std::io::{Read, Write};
use std::path::Path;

use contracts::locate::{Position, locate, locate_nearest};
use contracts::orchestrator_api::{INVALID_DEFINITION, LoadRequest, LoadResponse, ops};
use contracts::{DocumentError, ErrorBody, Limits};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::{LOAD_TIMEOUT, OrchestratorCallError, OrchestratorClient, refusal};
use super::{Exit, LoadArgs, NatsOptions};
use crate::cli::registry_client::{close, until_cancelled};

/// What standard input is called in messages.
const STDIN_NAME: &str = "<stdin>";

/// A definition that passed the local checks, ready to send.
struct Checked {
    /// The file's name in messages.
    source_name: String,
    /// The text, to place the orchestrator's pointers in it.
    text: String,
    /// The definition as written (not re-serialized), so the pointers of
    /// the orchestrator's answer are pointers into this text.
    value: Value,
}

/// Runs `soa workflow load`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &LoadArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let mut exit = Exit::Success;
    let mut checked = Vec::new();
    let mut stdin_read = false;
    for path in &args.files {
        let (source_name, text) = match read_source(path, &mut stdin_read) {
            Ok(read) => read,
            Err(message) => {
                writeln!(err, "error: {message}")?;
                exit = worse(exit, Exit::Usage);
                continue;
            }
        };
        match check_locally(&source_name, &text) {
            Ok(value) => checked.push(Checked {
                source_name,
                text,
                value,
            }),
            Err(error) => {
                write_document_error(err, &source_name, &error)?;
                exit = worse(exit, Exit::Failure);
            }
        }
    }
    if checked.is_empty() {
        return Ok(exit);
    }
    let (orchestrator, client) = OrchestratorClient::connect(nats, "soa-workflow-load").await?;
    let orchestrator = orchestrator.with_timeout(LOAD_TIMEOUT);
    for definition in checked {
        let request = LoadRequest {
            definition: definition.value,
        };
        let answer = until_cancelled(&shutdown, async {
            Ok(orchestrator.try_call::<ops::Load>(&request).await)
        })
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(interrupted) => {
                close(client).await;
                return Err(interrupted);
            }
        };
        let outcome = match answer {
            Ok(loaded) => write_loaded(out, err, &definition.source_name, &loaded).map(|()| Exit::Success),
            Err(OrchestratorCallError::Refused(body)) => {
                write_refusal(err, &definition.source_name, &definition.text, &body).map(|()| Exit::Failure)
            }
            Err(error @ OrchestratorCallError::Other(_)) => {
                writeln!(err, "error: {}: not loaded: {error}", definition.source_name).map(|()| Exit::Failure)
            }
            Err(unanswered) => {
                // Nobody to send the other files to either.
                close(client).await;
                return Err(unanswered.into_anyhow());
            }
        };
        exit = worse(exit, outcome?);
    }
    close(client).await;
    Ok(exit)
}

/// The more serious of two outcomes: usage over failure over success.
fn worse(a: Exit, b: Exit) -> Exit {
    if a.code() >= b.code() { a } else { b }
}

/// The name and text of a file, or of standard input for `-` (once).
fn read_source(path: &Path, stdin_read: &mut bool) -> Result<(String, String), String> {
    if path.as_os_str() == "-" {
        if *stdin_read {
            return Err("standard input (-) is given more than once; it can be read only once".to_owned());
        }
        *stdin_read = true;
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| format!("cannot read the definition from standard input: {error}"))?;
        return Ok((STDIN_NAME.to_owned(), text));
    }
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "cannot read {}: {error}; give the path of a workflow definition (JSON), or - for standard input",
            path.display()
        )
    })?;
    Ok((path.display().to_string(), text))
}

/// Checks a definition as the orchestrator will, minus the contracts it
/// calls, and returns it as written.
fn check_locally(source_name: &str, text: &str) -> Result<Value, DocumentError> {
    contracts::workflow::parse_definition(source_name, text, &Limits::default())?;
    serde_json::from_str(text).map_err(|error| DocumentError::Syntax {
        source_name: source_name.to_owned(),
        position: Position {
            line: error.line(),
            column: error.column(),
        },
        message: error.to_string(),
    })
}

/// A pointer as shown: `(root)` for the whole definition.
fn shown_pointer(pointer: &str) -> &str {
    if pointer.is_empty() { "(root)" } else { pointer }
}

/// One problem as `file:line:col: pointer: message`, or `file: pointer:
/// message` when it has no place in the text.
fn write_problem(
    err: &mut dyn Write,
    source_name: &str,
    position: Option<Position>,
    pointer: &str,
    message: &str,
) -> std::io::Result<()> {
    match position {
        Some(Position { line, column }) => writeln!(
            err,
            "{source_name}:{line}:{column}: {}: {message}",
            shown_pointer(pointer)
        ),
        None => writeln!(err, "{source_name}: {}: {message}", shown_pointer(pointer)),
    }
}

/// A definition that failed the local checks: each problem at its place.
fn write_document_error(err: &mut dyn Write, source_name: &str, error: &DocumentError) -> std::io::Result<()> {
    match error {
        DocumentError::Invalid { problems, .. } => {
            for problem in problems {
                write_problem(err, source_name, problem.position, &problem.pointer, &problem.message)?;
            }
            writeln!(
                err,
                "error: {source_name} is not a valid workflow definition ({} problem(s)); nothing was sent to the orchestrator",
                problems.len()
            )
        }
        // These say where and what already.
        other => writeln!(err, "error: {other}"),
    }
}

/// Where a pointer of the orchestrator's answer stands in the text: the
/// value itself, or the nearest value around it that exists. Pointers into
/// something else (the registry's answer about the workflow's generated
/// contract) have no place in the definition and get none.
fn place(text: &str, pointer: &str) -> Option<Position> {
    if pointer.is_empty() {
        return None;
    }
    if let Some(position) = locate(text, pointer) {
        return Some(position);
    }
    let first = pointer.split('/').nth(1)?;
    locate(text, &format!("/{first}"))?;
    Some(locate_nearest(text, pointer))
}

/// A refusal: for `INVALID_DEFINITION`, each problem at its place in the file.
fn write_refusal(err: &mut dyn Write, source_name: &str, text: &str, body: &ErrorBody) -> std::io::Result<()> {
    if body.code.as_str() != INVALID_DEFINITION {
        return writeln!(err, "error: {source_name}: not loaded: {}", refusal(body));
    }
    let mut details: Vec<(Option<Position>, &contracts::ErrorDetail)> = body
        .details
        .iter()
        .map(|detail| (place(text, &detail.pointer), detail))
        .collect();
    // In the order of the file; problems without a place first, as the orchestrator gave them.
    details.sort_by_key(|(position, _)| *position);
    for (position, detail) in &details {
        write_problem(err, source_name, *position, &detail.pointer, &detail.message)?;
    }
    writeln!(
        err,
        "error: the orchestrator refused {source_name}: {}; nothing was loaded",
        body.message
    )
}

/// A loaded (or unchanged) definition, and its warnings.
fn write_loaded(
    out: &mut dyn Write,
    err: &mut dyn Write,
    source_name: &str,
    loaded: &LoadResponse,
) -> std::io::Result<()> {
    let verb = if loaded.created { "loaded" } else { "unchanged" };
    writeln!(out, "{verb} {} (start: {})", loaded.workflow, loaded.start_subject)?;
    for warning in &loaded.warnings {
        writeln!(err, "{source_name}: warning: {warning}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use contracts::{ErrorCode, ErrorDetail};

    use super::*;

    const TEXT: &str =
        "{\n  \"name\": \"w\",\n  \"steps\": [\n    {\"id\": \"a\", \"call\": \"ledger@1#aply\"}\n  ]\n}\n";

    #[test]
    fn pointers_of_the_answer_are_placed_in_the_file() {
        assert_eq!(place(TEXT, "/steps/0/call"), Some(Position { line: 4, column: 25 }));
        // A missing value: the nearest one around it.
        assert_eq!(place(TEXT, "/steps/0/input"), Some(Position { line: 4, column: 5 }));
        // Not about the definition at all, or about all of it: no place.
        assert_eq!(place(TEXT, "/operations/start/request"), None);
        assert_eq!(place(TEXT, ""), None);
    }

    #[test]
    fn an_invalid_definition_is_reported_line_by_line() {
        let body = ErrorBody {
            code: ErrorCode::Declared(INVALID_DEFINITION.to_owned()),
            message: "the workflow definition has 2 problem(s); see details".to_owned(),
            details: vec![
                ErrorDetail {
                    pointer: "/steps/0/call".to_owned(),
                    schema_path: None,
                    message: "ledger@1 has no operation \"aply\"".to_owned(),
                },
                ErrorDetail {
                    pointer: String::new(),
                    schema_path: None,
                    message: "the registry refused the workflow's contract".to_owned(),
                },
            ],
        };
        let mut err = Vec::new();
        write_refusal(&mut err, "w.json", TEXT, &body).unwrap();
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "w.json: (root): the registry refused the workflow's contract\n\
             w.json:4:25: /steps/0/call: ledger@1 has no operation \"aply\"\n\
             error: the orchestrator refused w.json: the workflow definition has 2 problem(s); see details; nothing was loaded\n"
        );

        let conflict = ErrorBody::new(ErrorCode::Conflict, "w@1.0.0 is already loaded with other content");
        let mut err = Vec::new();
        write_refusal(&mut err, "w.json", TEXT, &conflict).unwrap();
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "error: w.json: not loaded: w@1.0.0 is already loaded with other content\n"
        );
    }

    #[test]
    fn the_worst_outcome_wins() {
        assert_eq!(worse(Exit::Success, Exit::Failure), Exit::Failure);
        assert_eq!(worse(Exit::Usage, Exit::Failure), Exit::Usage);
        assert_eq!(worse(Exit::Success, Exit::Success), Exit::Success);
    }
}
