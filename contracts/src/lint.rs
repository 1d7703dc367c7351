//! Lint rules for contract documents, each with a stable id and name, so CI
//! output and ignore lists can refer to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::ContractDocument;
use crate::locate::{Position, locate_nearest};
use crate::names::Subject;
use crate::parse::shorten;
use crate::parse::{DocumentError, Limits};
use crate::schema::{
    CompileContext, SchemaProblemKind, SchemaSet, check_references_in, check_schemas_in, schema_roots,
};

/// A lint rule. The id (`SOA001`) and name never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Rule {
    /// A subject is not `<domain>.<service>.v<major>.<name>`.
    SubjectShape,
    /// A subject's service token is not the document's service.
    SubjectService,
    /// A subject does not carry the document's major version.
    SubjectMajor,
    /// A subject's last token is not the operation's or event's name.
    SubjectName,
    /// Subjects of one contract use different domains.
    SubjectDomain,
    /// Two operations or events share a subject.
    DuplicateSubject,
    /// A `$ref` points outside the document and the registry.
    RemoteRef,
    /// A `$ref` points to nothing.
    UnresolvedRef,
    /// A `$schema` other than 2020-12.
    UnknownDialect,
    /// An `$id` inside a contract schema.
    ForbiddenId,
    /// A schema is not valid JSON Schema.
    InvalidSchema,
    /// A schema could not be compiled.
    SchemaCompile,
    /// An operation has no description.
    OperationDescription,
    /// An event has no description.
    EventDescription,
    /// A declared example does not match its schema.
    InvalidExample,
}

/// How serious a finding is: errors fail `soa contract check`, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; does not fail the check.
    Warning,
    /// The document must be fixed.
    Error,
}

impl Rule {
    /// Every rule, in id order.
    pub const ALL: [Rule; 15] = [
        Rule::SubjectShape,
        Rule::SubjectService,
        Rule::SubjectMajor,
        Rule::SubjectName,
        Rule::SubjectDomain,
        Rule::DuplicateSubject,
        Rule::RemoteRef,
        Rule::UnresolvedRef,
        Rule::UnknownDialect,
        Rule::ForbiddenId,
        Rule::InvalidSchema,
        Rule::SchemaCompile,
        Rule::OperationDescription,
        Rule::EventDescription,
        Rule::InvalidExample,
    ];

    /// The stable id, such as `SOA001`.
    pub fn id(self) -> &'static str {
        self.describe().0
    }

    /// The stable name, such as `subject-shape`.
    pub fn name(self) -> &'static str {
        self.describe().1
    }

    /// How serious a finding of this rule is.
    pub fn severity(self) -> Severity {
        self.describe().2
    }

    fn describe(self) -> (&'static str, &'static str, Severity) {
        use Severity::{Error, Warning};
        match self {
            Rule::SubjectShape => ("SOA001", "subject-shape", Error),
            Rule::SubjectService => ("SOA002", "subject-service", Error),
            Rule::SubjectMajor => ("SOA003", "subject-major-version", Error),
            Rule::SubjectName => ("SOA004", "subject-name", Error),
            Rule::SubjectDomain => ("SOA005", "subject-domain", Warning),
            Rule::DuplicateSubject => ("SOA010", "duplicate-subject", Error),
            Rule::RemoteRef => ("SOA020", "remote-ref", Error),
            Rule::UnresolvedRef => ("SOA021", "unresolved-ref", Error),
            Rule::UnknownDialect => ("SOA022", "unknown-dialect", Error),
            Rule::ForbiddenId => ("SOA023", "forbidden-id", Error),
            Rule::InvalidSchema => ("SOA030", "invalid-schema", Error),
            Rule::SchemaCompile => ("SOA031", "schema-compile", Error),
            Rule::OperationDescription => ("SOA040", "operation-description", Error),
            Rule::EventDescription => ("SOA041", "event-description", Warning),
            Rule::InvalidExample => ("SOA050", "invalid-example", Error),
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.id(), self.name())
    }
}

/// One lint finding: which rule, where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    /// The rule that fired.
    pub rule: Rule,
    /// How serious it is.
    pub severity: Severity,
    /// JSON pointer of the offending value in the document.
    pub pointer: String,
    /// Line and column, when the document was read from text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}[{}]", self.rule)?;
        if let Some(position) = self.position {
            write!(f, " {position}")?;
        }
        write!(f, " at {}: {}", self.pointer, self.message)
    }
}

/// Lints a parsed document. `text`, when given, is its source and adds line
/// and column to each finding. `external` supplies the contracts that
/// `soa://` references may point into.
pub fn lint(document: &ContractDocument, text: Option<&str>, external: &SchemaSet) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |rule: Rule, pointer: String, message: String| {
        findings.push(Finding {
            rule,
            severity: rule.severity(),
            position: text.map(|text| locate_nearest(text, &pointer)),
            pointer,
            message,
        });
    };

    lint_subjects(document, &mut add);
    for (name, operation) in &document.operations {
        if operation
            .description
            .as_deref()
            .is_none_or(|text| text.trim().is_empty())
        {
            add(
                Rule::OperationDescription,
                format!("/operations/{name}"),
                format!(
                    "operation {name} has no description; say what it does in a sentence, callers read it in the registry"
                ),
            );
        }
    }
    for (name, event) in &document.events {
        if event.description.as_deref().is_none_or(|text| text.trim().is_empty()) {
            add(
                Rule::EventDescription,
                format!("/events/{name}"),
                format!("event {name} has no description; say what happened when it is published"),
            );
        }
    }

    // One conversion of the document serves every check and compilation.
    let context = CompileContext::new(document, external);
    let mut schema_problems = check_references_in(document, context.resource(), external);
    schema_problems.extend(check_schemas_in(document, context.resource()));
    let schemas_sound = schema_problems.is_empty();
    for problem in schema_problems {
        let rule = match problem.kind {
            SchemaProblemKind::RemoteRef => Rule::RemoteRef,
            SchemaProblemKind::UnresolvedRef => Rule::UnresolvedRef,
            SchemaProblemKind::UnknownDialect => Rule::UnknownDialect,
            SchemaProblemKind::ForbiddenId => Rule::ForbiddenId,
            SchemaProblemKind::InvalidSchema => Rule::InvalidSchema,
            SchemaProblemKind::CompileFailed => Rule::SchemaCompile,
        };
        add(rule, problem.pointer, problem.message);
    }
    if schemas_sound {
        lint_compiled(document, &context, &mut add);
    }
    findings.sort_by(|a, b| a.position.cmp(&b.position).then_with(|| a.pointer.cmp(&b.pointer)));
    findings
}

/// Compiles every message and checks every declared example (the standard
/// `examples` keyword of a message schema or a shared definition).
fn lint_compiled(document: &ContractDocument, context: &CompileContext, add: &mut impl FnMut(Rule, String, String)) {
    // Every message in one build first (the common case: they all compile);
    // one by one only to say which failed.
    let pointers: Vec<String> = document.messages().map(|(key, _)| key.pointer()).collect();
    if context.compile_all(&pointers).is_err() {
        for (key, _) in document.messages() {
            if let Err(problem) = context.compile_message(document, &key) {
                add(Rule::SchemaCompile, problem.pointer, problem.message);
            }
        }
    }
    for (pointer, schema) in schema_roots(context.resource()) {
        let Some(examples) = schema.get("examples").and_then(Value::as_array) else {
            continue;
        };
        let validator = match context.compile_pointer(&pointer) {
            Ok(validator) => validator,
            Err(message) => {
                add(Rule::SchemaCompile, pointer, message);
                continue;
            }
        };
        for (index, example) in examples.iter().enumerate() {
            let problems: Vec<String> = validator
                .iter_errors(example)
                .take(5)
                .map(|error| {
                    format!(
                        "at {:?}: {}",
                        error.instance_path().as_str(),
                        shorten(error.to_string())
                    )
                })
                .collect();
            if !problems.is_empty() {
                add(
                    Rule::InvalidExample,
                    format!("{pointer}/examples/{index}"),
                    format!(
                        "example {index} does not match the schema it illustrates: {}",
                        problems.join("; ")
                    ),
                );
            }
        }
    }
}

fn lint_subjects(document: &ContractDocument, add: &mut impl FnMut(Rule, String, String)) {
    let major = document.version.major();
    let mut by_subject: BTreeMap<&Subject, Vec<String>> = BTreeMap::new();
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    let members = document
        .operations
        .iter()
        .map(|(name, operation)| ("operations", name, &operation.subject))
        .chain(
            document
                .events
                .iter()
                .map(|(name, event)| ("events", name, &event.subject)),
        );
    for (section, name, subject) in members {
        let pointer = format!("/{section}/{name}/subject");
        by_subject.entry(subject).or_default().push(pointer.clone());
        let expected = format!("<domain>.{}.v{major}.{name}", document.service);
        let tokens: Vec<&str> = subject.tokens().collect();
        let [domain, service, version, last] = tokens.as_slice() else {
            add(
                Rule::SubjectShape,
                pointer,
                format!(
                    "subject {subject} has {} tokens; subjects are <domain>.<service>.v<major>.<name>, here {expected}",
                    tokens.len()
                ),
            );
            continue;
        };
        domains.entry((*domain).to_owned()).or_insert(pointer.clone());
        if *service != document.service.as_str() {
            add(
                Rule::SubjectService,
                pointer.clone(),
                format!(
                    "subject {subject} names service {service:?} but the document is {:?}; use {expected}",
                    document.service.as_str()
                ),
            );
        }
        if *version != format!("v{major}") {
            let found = match version.strip_prefix('v').and_then(|digits| digits.parse::<u64>().ok()) {
                Some(other) => format!("carries major version {other}"),
                None => format!("has {version:?} where the major version belongs"),
            };
            add(
                Rule::SubjectMajor,
                pointer.clone(),
                format!(
                    "subject {subject} {found}, but the document's version {} is major {major}; every subject carries its contract's major, here {expected}",
                    document.version
                ),
            );
        }
        if *last != name.as_str() {
            add(
                Rule::SubjectName,
                pointer,
                format!(
                    "subject {subject} ends in {last:?} but the {} is named {:?}; use {expected}",
                    &section[..section.len() - 1],
                    name.as_str()
                ),
            );
        }
    }
    for (subject, pointers) in by_subject {
        if let [first, rest @ ..] = pointers.as_slice() {
            for pointer in rest {
                add(
                    Rule::DuplicateSubject,
                    pointer.clone(),
                    format!(
                        "subject {subject} is already used at {first}; each operation and event needs its own subject"
                    ),
                );
            }
        }
    }
    if domains.len() > 1 {
        let listed: Vec<&str> = domains.keys().map(String::as_str).collect();
        for pointer in domains.values().skip(1) {
            add(
                Rule::SubjectDomain,
                pointer.clone(),
                format!(
                    "the contract's subjects use several domains ({}); one service usually lives in one domain",
                    listed.join(", ")
                ),
            );
        }
    }
}

/// True when any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|finding| finding.severity == Severity::Error)
}

/// Reads, validates and lints a document from text in one go: the first
/// check a CLI or the registry runs on anything it is given.
pub fn check_document(
    source_name: &str,
    text: &str,
    limits: &Limits,
    external: &SchemaSet,
) -> Result<(ContractDocument, Vec<Finding>), DocumentError> {
    let document = ContractDocument::parse(source_name, text, limits)?;
    let findings = lint(&document, Some(text), external);
    Ok((document, findings))
}
