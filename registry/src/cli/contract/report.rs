//! What `soa contract check` and `soa contract diff` found, as plain data:
//! documents, each with its diagnostics (lint findings, format problems,
//! compatibility changes, reading failures) and, when it was compared with
//! an earlier version, the comparison.
//!
//! Every output format is one renderer of a [`Report`] (see `render`), and the
//! exit code is decided here, once, from the same data:
//! 2 when some input could not be read at all, 1 when a document fails policy
//! (an error not accepted by the ignore file), 0 otherwise.

use contracts::compat::{Change, ContractChange, Effect, Role, Verdict};
use contracts::locate::{Position, locate_nearest};
use contracts::parse::escape_pointer;
use contracts::{ContractDocument, ContractId, DocumentError, Finding, Severity};
use serde::Serialize;
use serde_json::Value;

use super::fingerprint::{IgnoreList, fingerprint};
use crate::cli::Exit;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    /// For information: a compatible change, a new document.
    Note,
    /// Worth a look; does not fail.
    Warning,
    /// Fails the check (unless its fingerprint is ignored).
    Error,
}

impl Level {
    /// `error`, `warning`, `note`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Note => "note",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl From<Severity> for Level {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Warning => Self::Warning,
            Severity::Error => Self::Error,
        }
    }
}

/// What produced a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// The input could not be read at all (missing, not JSON, too large, too
    /// deep, not a JSON Schema): exit code 2, and never ignorable.
    Input,
    /// JSON, but not a valid contract document.
    Format,
    /// A lint rule.
    Lint,
    /// A change against the earlier version.
    Change,
    /// About the comparison itself: a new document, one that could not be compared.
    Comparison,
}

/// What a change diagnostic adds: how the checker judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ChangeDetail {
    /// Which side of the conversation the change concerns (`None` between bare schemas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<Role>,
    /// The operation or event it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) member: Option<String>,
    /// What it does to the accepted messages.
    pub(crate) effect: Effect,
    /// `true` breaks the policy, `false` does not, `null` cannot be decided.
    pub(crate) breaking: Option<bool>,
}

/// One line of output, whatever produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Diagnostic {
    pub(crate) level: Level,
    pub(crate) kind: Kind,
    /// A lint rule's id (`SOA001`), a change code (`type-narrowed`), or what
    /// kind of reading failure (`json-syntax`).
    pub(crate) rule: String,
    /// The lint rule's name (`subject-shape`), when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// JSON pointer of the place in the (new) document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pointer: Option<String>,
    /// JSON pointer of the same place in the old document, for a change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) old_pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) column: Option<usize>,
    pub(crate) message: String,
    /// How to fix it or make it safe, where there is a known way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) change: Option<ChangeDetail>,
    /// Stable across unrelated edits; what an ignore file lists.
    pub(crate) fingerprint: String,
    /// Accepted by the ignore file: reported, but does not fail.
    pub(crate) ignored: bool,
}

impl Diagnostic {
    /// A diagnostic with the fields every kind has; `scope` is the service
    /// name (or the file, when there is no contract) for the fingerprint.
    pub(crate) fn new(level: Level, kind: Kind, scope: &str, rule: &str, message: String) -> Self {
        Self {
            level,
            kind,
            rule: rule.to_owned(),
            name: None,
            pointer: None,
            old_pointer: None,
            line: None,
            column: None,
            message,
            hint: None,
            change: None,
            fingerprint: fingerprint(scope, rule, "", ""),
            ignored: false,
        }
    }

    /// Sets the place: the pointer, and its position in the text when known.
    /// The fingerprint follows the pointer (never the position).
    fn at(mut self, scope: &str, pointer: &str, old_pointer: Option<&str>, position: Option<Position>) -> Self {
        self.fingerprint = fingerprint(scope, &self.rule, pointer, old_pointer.unwrap_or(""));
        self.pointer = Some(pointer.to_owned());
        self.old_pointer = old_pointer.map(str::to_owned);
        self.line = position.map(|position| position.line);
        self.column = position.map(|position| position.column);
        self
    }

    /// A lint finding of a contract of service `scope`.
    pub(crate) fn from_finding(scope: &str, finding: &Finding) -> Self {
        let mut diagnostic = Self::new(
            finding.severity.into(),
            Kind::Lint,
            scope,
            finding.rule.id(),
            finding.message.clone(),
        )
        .at(scope, &finding.pointer, None, finding.position);
        diagnostic.name = Some(finding.rule.name().to_owned());
        diagnostic
    }

    /// The diagnostics of the text at `path` that could not be read as a
    /// contract document: one input error, or a format problem each.
    pub(crate) fn from_document_error(path: &str, error: &DocumentError) -> Vec<Self> {
        let path = &file_scope(path);
        let input = |rule: &str, position: Option<Position>| {
            let mut diagnostic = Self::new(Level::Error, Kind::Input, path, rule, without_location(error, position));
            diagnostic.line = position.map(|position| position.line);
            diagnostic.column = position.map(|position| position.column);
            vec![diagnostic]
        };
        match error {
            DocumentError::Syntax { position, .. } => input("json-syntax", Some(*position)),
            DocumentError::TooDeep { position, .. } => input("too-deep", Some(*position)),
            DocumentError::TooLarge { .. } => input("too-large", None),
            DocumentError::Invalid { problems, .. } => problems
                .iter()
                .map(|problem| {
                    Self::new(
                        Level::Error,
                        Kind::Format,
                        path,
                        "contract-format",
                        problem.message.clone(),
                    )
                    .at(path, &problem.pointer, None, problem.position)
                })
                .collect(),
        }
    }

    /// A change found by the compatibility checker, placed in the new
    /// document's text `new_text` (whose parsed value is `new_root`). Under
    /// `lenient`, a change the checker cannot decide is a warning instead of
    /// an error.
    pub(crate) fn from_change(
        scope: &str,
        (new_text, new_root): (&str, &Value),
        change: &Change,
        judged: Judged,
        lenient: bool,
    ) -> Self {
        let level = match judged.breaking {
            Some(true) => Level::Error,
            None if lenient => Level::Warning,
            None => Level::Error,
            Some(false) => Level::Note,
        };
        let position = locate_nearest(new_text, &physical_pointer(new_root, &change.pointer));
        let mut diagnostic = Self::new(
            level,
            Kind::Change,
            scope,
            &change.code.to_string(),
            change.message.clone(),
        )
        .at(scope, &change.pointer, Some(&change.old_pointer), Some(position));
        diagnostic.hint = change.hint.clone();
        diagnostic.change = Some(ChangeDetail {
            role: judged.role,
            member: judged.member,
            effect: change.effect,
            breaking: judged.breaking,
        });
        diagnostic
    }

    /// A change between two contract documents.
    pub(crate) fn from_contract_change(
        scope: &str,
        new: (&str, &Value),
        change: &ContractChange,
        lenient: bool,
    ) -> Self {
        let judged = Judged {
            role: Some(change.role),
            member: change.member.as_ref().map(ToString::to_string),
            breaking: change.breaking,
        };
        Self::from_change(scope, new, &change.change, judged, lenient)
    }

    /// Counts against the exit code: an error not accepted by the ignore file.
    pub(crate) fn fails(&self) -> bool {
        self.level == Level::Error && !self.ignored
    }

    /// The position, when known.
    pub(crate) fn position(&self) -> Option<Position> {
        Some(Position {
            line: self.line?,
            column: self.column?,
        })
    }

    /// `breaking`, `unclassified` or `compatible` for a change, else nothing.
    pub(crate) fn change_class(&self) -> Option<&'static str> {
        self.change.as_ref().map(|change| match change.breaking {
            Some(true) => "breaking",
            None => "unclassified",
            Some(false) => "compatible",
        })
    }
}

/// How the checker judged a change: for which role and member, and whether it breaks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Judged {
    /// The side of the conversation (`None` between bare schemas).
    pub(crate) role: Option<Role>,
    /// The operation or event.
    pub(crate) member: Option<String>,
    /// `Some(true)` breaks, `None` cannot be decided.
    pub(crate) breaking: Option<bool>,
}

/// Where the value at the checker's `pointer` is written in `root`.
///
/// The checker reports a change where a schema is used, and follows `$ref`s
/// to compare: `/operations/place/request/properties/id` (or
/// `/operations/place/request/$ref/properties/id`) when the request is
/// `{"$ref": "#/$defs/PlaceOrder"}`. That path is right for the reader, but
/// the line that changed is in `/$defs/PlaceOrder`. So where the pointer
/// goes on past (or through) a local `$ref`, the walk continues at the
/// reference's target; it ends at the deepest value that exists.
pub(crate) fn physical_pointer(root: &Value, pointer: &str) -> String {
    // A cycle of references cannot walk forever.
    const MAX_HOPS: usize = 64;
    let local_target = |node: &Value| {
        let target = percent_decode(node.get("$ref")?.as_str()?.strip_prefix('#')?);
        root.pointer(&target).is_some().then_some(target)
    };
    let mut node = root;
    let mut physical = String::new();
    let mut hops = 0;
    let segments = pointer
        .split('/')
        .skip(1)
        .map(|segment| segment.replace("~1", "/").replace("~0", "~"));
    for segment in segments {
        if segment == "$ref"
            && hops < MAX_HOPS
            && let Some(target) = local_target(node)
        {
            hops += 1;
            node = root.pointer(&target).unwrap_or(node);
            physical = target;
            continue;
        }
        loop {
            let child = match node {
                Value::Object(map) => map.get(&segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
                _ => None,
            };
            if let Some(child) = child {
                physical.push('/');
                physical.push_str(&escape_pointer(&segment));
                node = child;
                break;
            }
            let Some(target) = local_target(node).filter(|_| hops < MAX_HOPS) else {
                return physical;
            };
            hops += 1;
            node = root.pointer(&target).unwrap_or(node);
            physical = target;
        }
    }
    physical
}

/// Decodes `%XX` escapes, as a `$ref` fragment may hold them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The error's message without the `path:line:column: ` it starts with,
/// which the output prints in its own place.
fn without_location(error: &DocumentError, position: Option<Position>) -> String {
    let source_name = match error {
        DocumentError::TooLarge { source_name, .. }
        | DocumentError::TooDeep { source_name, .. }
        | DocumentError::Syntax { source_name, .. }
        | DocumentError::Invalid { source_name, .. } => source_name,
    };
    let text = error.to_string();
    let prefixes = [
        position.map(|position| format!("{source_name}:{}:{}: ", position.line, position.column)),
        Some(format!("{source_name}: ")),
    ];
    prefixes
        .into_iter()
        .flatten()
        .find_map(|prefix| text.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or(text)
}

/// How a document's comparison with its earlier version went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ComparisonOutcome {
    /// Compared; the changes are among the diagnostics.
    Compared,
    /// There is no earlier version to compare with.
    NewDocument,
    /// There is one, but it could not be compared (see the diagnostics).
    NotCompared,
}

/// What a document was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Comparison {
    /// The git revision (`origin/main`) or the old file.
    pub(crate) base: String,
    /// Where the earlier version was read from: the path at the revision, or the old file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) old_path: Option<String>,
    /// The earlier version (`orders@1.0.0`), when it was a contract.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) old_contract: Option<String>,
    /// The compatibility mode checked (`BACKWARD`, ... or `NONE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<String>,
    pub(crate) outcome: ComparisonOutcome,
}

/// What checking one document found.
#[derive(Debug, Clone)]
pub(crate) struct DocumentReport {
    /// The path as given (or found under a folder given).
    pub(crate) path: String,
    /// The path relative to the root of its git repository, when known: what
    /// CI annotations need to attach to the file.
    pub(crate) repo_path: Option<String>,
    /// The contract's id, when the document was read as one.
    pub(crate) contract: Option<ContractId>,
    /// Every diagnostic, in document order for each source (reading, lint, changes).
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// The comparison with an earlier version, when one was asked for.
    pub(crate) comparison: Option<Comparison>,
    /// The document existed at the revision compared with and is gone.
    pub(crate) removed: bool,
    /// The parsed document and its text, kept for a comparison after the lint.
    pub(crate) parsed: Option<(ContractDocument, String)>,
}

impl DocumentReport {
    /// A report of a document at `path` with nothing found yet.
    pub(crate) fn new(path: String) -> Self {
        Self {
            path,
            repo_path: None,
            contract: None,
            diagnostics: Vec::new(),
            comparison: None,
            removed: false,
            parsed: None,
        }
    }

    /// The service name when the document is a contract, else its file
    /// name: what fingerprints are scoped by.
    pub(crate) fn scope(&self) -> String {
        self.contract
            .as_ref()
            .map_or_else(|| file_scope(&self.path), |id| id.service.to_string())
    }

    /// The path CI tools should attach annotations to: relative to the
    /// repository root when known, else as given.
    pub(crate) fn annotation_path(&self) -> &str {
        self.repo_path.as_deref().unwrap_or(&self.path)
    }

    /// Strict and lenient verdicts of the comparison, counting only changes
    /// not accepted by the ignore file; `None` when nothing was compared.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        let compared = self
            .comparison
            .as_ref()
            .is_some_and(|comparison| comparison.outcome == ComparisonOutcome::Compared);
        compared.then(|| {
            let mut verdict = Verdict {
                strict: true,
                lenient: true,
            };
            for change in self.diagnostics.iter().filter(|diagnostic| !diagnostic.ignored) {
                match change.change.as_ref().map(|detail| detail.breaking) {
                    Some(Some(true)) => {
                        verdict.strict = false;
                        verdict.lenient = false;
                    }
                    Some(None) => verdict.strict = false,
                    Some(Some(false)) | None => {}
                }
            }
            verdict
        })
    }
}

/// Which command made a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CommandKind {
    /// `soa contract check`.
    Check,
    /// `soa contract diff`.
    Diff,
}

/// What a `soa contract check` or `diff` found. Render it with one of the
/// output formats; [`Report::exit`] is the exit code it calls for.
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) command: CommandKind,
    /// The git revision compared with (`check --against`).
    pub(crate) against: Option<String>,
    /// Changes the checker cannot decide are warnings rather than errors.
    pub(crate) lenient: bool,
    /// The ignore file applied, if any.
    pub(crate) ignore_file: Option<String>,
    pub(crate) documents: Vec<DocumentReport>,
}

/// How many diagnostics of each kind a report holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    pub(crate) documents: usize,
    pub(crate) errors: usize,
    pub(crate) warnings: usize,
    pub(crate) notes: usize,
    /// Diagnostics accepted by the ignore file (counted here only).
    pub(crate) ignored: usize,
}

impl Report {
    /// An empty report of `command`.
    pub(crate) fn new(command: CommandKind) -> Self {
        Self {
            command,
            against: None,
            lenient: false,
            ignore_file: None,
            documents: Vec::new(),
        }
    }

    /// How many documents were checked.
    pub fn document_count(&self) -> usize {
        self.documents.len()
    }

    /// Every diagnostic of every document.
    pub(crate) fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.documents.iter().flat_map(|document| &document.diagnostics)
    }

    /// The counts for the summary.
    pub(crate) fn counts(&self) -> Counts {
        let mut counts = Counts {
            documents: self.documents.len(),
            ..Counts::default()
        };
        for diagnostic in self.diagnostics() {
            if diagnostic.ignored {
                counts.ignored += 1;
                continue;
            }
            match diagnostic.level {
                Level::Error => counts.errors += 1,
                Level::Warning => counts.warnings += 1,
                Level::Note => counts.notes += 1,
            }
        }
        counts
    }

    /// Whether some input could not be read at all.
    pub(crate) fn has_input_error(&self) -> bool {
        self.diagnostics().any(|diagnostic| diagnostic.kind == Kind::Input)
    }

    /// The verdicts over every compared document; `None` when none was.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        self.documents
            .iter()
            .filter_map(DocumentReport::verdict)
            .reduce(|all, one| Verdict {
                strict: all.strict && one.strict,
                lenient: all.lenient && one.lenient,
            })
    }

    /// True when the check fails: an error not accepted by the ignore file.
    pub fn failed(&self) -> bool {
        self.diagnostics().any(Diagnostic::fails)
    }

    /// The exit code the report calls for: 2 when an input could not be
    /// read, 1 when a document fails, 0 when everything passed (warnings and
    /// compatible changes allowed).
    pub fn exit(&self) -> Exit {
        if self.has_input_error() {
            Exit::Usage
        } else if self.failed() {
            Exit::Failure
        } else {
            Exit::Success
        }
    }

    /// Marks the diagnostics whose fingerprint `ignore` lists as ignored.
    /// Input errors stay: a file that cannot be read is never accepted.
    pub(crate) fn apply_ignores(&mut self, ignore: &IgnoreList) {
        self.ignore_file = ignore.file.as_ref().map(|file| file.display().to_string());
        for diagnostic in self.documents.iter_mut().flat_map(|document| &mut document.diagnostics) {
            if diagnostic.kind != Kind::Input && ignore.contains(&diagnostic.fingerprint) {
                diagnostic.ignored = true;
            }
        }
    }
}

/// What fingerprints of a file that is no contract are scoped by: its file
/// name, which does not change with the folder the check runs from.
pub(crate) fn file_scope(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |name| name.to_string_lossy().into_owned())
}

/// The name of a compatibility policy as written in documents (`BACKWARD_TRANSITIVE`).
pub(crate) fn policy_name(policy: contracts::CompatibilityPolicy) -> String {
    serde_json::to_value(policy)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{policy:?}"))
}

/// `1 document`, `2 documents`.
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_through_local_refs_land_where_the_schema_is_written() {
        let root = serde_json::json!({
            "operations": {"place": {"request": {"$ref": "#/$defs/Place%20Order"}}},
            "$defs": {
                "Place Order": {"properties": {"id": {"$ref": "#/$defs/Id"}, "a/b": {}}},
                "Id": {"type": "string", "maxLength": 8},
                "Loop": {"$ref": "#/$defs/Loop"}
            }
        });
        assert_eq!(
            physical_pointer(&root, "/operations/place/request/properties/id/maxLength"),
            "/$defs/Id/maxLength"
        );
        assert_eq!(
            physical_pointer(&root, "/operations/place/request/properties/a~1b"),
            "/$defs/Place Order/properties/a~1b"
        );
        assert_eq!(
            physical_pointer(&root, "/operations/place/request/properties/gone/type"),
            "/$defs/Place Order/properties"
        );
        assert_eq!(
            physical_pointer(&root, "/operations/place/request/$ref/properties/id/$ref/maxLength"),
            "/$defs/Id/maxLength"
        );
        assert_eq!(
            physical_pointer(&root, "/operations/place/request/$ref"),
            "/$defs/Place Order"
        );
        assert_eq!(physical_pointer(&root, "/$defs/Loop/type"), "/$defs/Loop");
        assert_eq!(physical_pointer(&root, ""), "");
    }
}
