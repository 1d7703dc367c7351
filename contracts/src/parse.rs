//! Reading a contract document from text: size and depth limits, JSON syntax,
//! the contract meta-schema, then the typed model, in that order.
//!
//! Every failure names the source, the line and column and the JSON pointer of
//! the offending value, so a user can go straight to it.

use std::sync::OnceLock;

use serde_json::Value;

use crate::document::ContractDocument;
use crate::locate::{Position, depth_beyond, locate_nearest};

/// The JSON Schema (2020-12) of the contract document format, as shipped.
pub const CONTRACT_META_SCHEMA: &str = include_str!("../schema/contract.schema.json");

/// Bounds on what a document may be, so a hostile one cannot exhaust memory
/// or the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting of arrays and objects accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: 4 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// One thing wrong with a document, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// JSON pointer of the offending value (`""` for the whole document).
    pub pointer: String,
    /// Where the value stands in the text, when it was read from text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(position) = self.position {
            write!(f, "{position}: ")?;
        }
        let pointer = if self.pointer.is_empty() {
            "(document root)"
        } else {
            &self.pointer
        };
        write!(f, "at {pointer}: {}", self.message)
    }
}

/// Why a document could not be read. Each variant is one clear error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Larger than [`Limits::max_document_bytes`].
    #[error(
        "{source_name}: the document is {size} bytes, over the limit of {limit} bytes; a contract this large is almost certainly a mistake (split shared schemas into other contracts and refer to them with soa:// refs)"
    )]
    TooLarge {
        /// Where the document came from.
        source_name: String,
        /// Its size in bytes.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// Nested deeper than [`Limits::max_depth`].
    #[error(
        "{source_name}:{}:{}: the document nests arrays and objects deeper than {limit} levels; flatten it by moving schemas into $defs and referring to them with $ref",
        position.line, position.column
    )]
    TooDeep {
        /// Where the document came from.
        source_name: String,
        /// Where the limit was first passed.
        position: Position,
        /// The limit it broke.
        limit: usize,
    },
    /// Not JSON at all.
    #[error("{source_name}:{}:{}: not valid JSON: {message}", position.line, position.column)]
    Syntax {
        /// Where the document came from.
        source_name: String,
        /// Where the parser stopped.
        position: Position,
        /// What the parser expected.
        message: String,
    },
    /// JSON, but not a contract document.
    #[error("{source_name}: not a valid contract document:{}", list(problems))]
    Invalid {
        /// Where the document came from.
        source_name: String,
        /// Every problem found, each with its pointer and position.
        problems: Vec<Problem>,
    },
}

impl DocumentError {
    /// The problems with their places, whatever the kind of error.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::TooLarge { .. } => vec![Problem {
                pointer: String::new(),
                position: None,
                message: self.to_string(),
            }],
            Self::TooDeep { position, .. } | Self::Syntax { position, .. } => vec![Problem {
                pointer: String::new(),
                position: Some(*position),
                message: self.to_string(),
            }],
            Self::Invalid { problems, .. } => problems.clone(),
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|problem| format!("\n  - {problem}")).collect()
}

/// Longest excerpt of a validation message kept in a problem, so a message
/// that quotes a huge value stays readable.
const MAX_MESSAGE_CHARS: usize = 300;

pub(crate) fn shorten(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut short: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    short.push('…');
    short
}

impl ContractDocument {
    /// Reads a contract document from JSON text. `source_name` (a path, or
    /// `<stdin>`) is used in error messages.
    pub fn parse(source_name: &str, text: &str, limits: &Limits) -> Result<Self, DocumentError> {
        let value = parse_json(source_name, text, limits)?;
        Self::from_json_value(source_name, &value, Some(text))
    }

    /// Reads a contract document from an already parsed value, checking it
    /// against the contract meta-schema and the typed model. `text`, when
    /// given, is the value's source and is used to give line and column.
    pub fn from_json_value(source_name: &str, value: &Value, text: Option<&str>) -> Result<Self, DocumentError> {
        read_checked(source_name, value, text, meta_validator())
    }
}

/// A shipped JSON Schema that documents of one format are checked against
/// before the typed model reads them.
pub(crate) struct MetaSchema {
    /// The schema itself: the descriptions of failing keywords' schemas make
    /// the messages readable.
    schema: Value,
    validator: jsonschema::Validator,
    /// Where a reader learns the format, for messages: "the contract format
    /// in contracts/schema/contract.schema.json".
    format: &'static str,
}

impl MetaSchema {
    /// Compiles a shipped meta-schema; `name` ("contract") and `format`
    /// (where the format is described) are used in messages.
    pub(crate) fn compile(text: &str, name: &str, format: &'static str) -> Result<Self, String> {
        let schema: Value =
            serde_json::from_str(text).map_err(|err| format!("the shipped {name} meta-schema is not JSON: {err}"))?;
        let validator = jsonschema::draft202012::options()
            .offline()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .map_err(|err| format!("the shipped {name} meta-schema does not compile: {err}"))?;
        Ok(Self {
            schema,
            validator,
            format,
        })
    }

    /// Every way `value` breaks the meta-schema, each with its pointer and,
    /// when `text` is given, its position; sorted by position.
    fn problems(&self, value: &Value, text: Option<&str>) -> Vec<Problem> {
        // The fast path: most documents are valid, and errors cost more to collect.
        if self.validator.is_valid(value) {
            return Vec::new();
        }
        let place = |pointer: &str| text.map(|text| locate_nearest(text, pointer));
        let mut problems: Vec<Problem> = Vec::new();
        for error in self.validator.iter_errors(value) {
            let pointer = error.instance_path().as_str().to_owned();
            if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
                // Point at each unknown field itself rather than the object holding it.
                for field in unexpected {
                    let field_pointer = format!("{pointer}/{}", escape_pointer(field));
                    problems.push(Problem {
                        position: place(&field_pointer),
                        pointer: field_pointer,
                        message: format!("unknown field {field:?}; see {}", self.format),
                    });
                }
                continue;
            }
            problems.push(Problem {
                position: place(&pointer),
                message: self.describe(&error, &pointer),
                pointer,
            });
        }
        problems.sort_by(|a, b| a.position.cmp(&b.position).then(a.pointer.cmp(&b.pointer)));
        problems.dedup();
        problems
    }

    /// The message of one validation error, with what the schema says of
    /// itself where the validator's own words are not enough.
    fn describe(&self, error: &jsonschema::ValidationError<'_>, pointer: &str) -> String {
        use jsonschema::error::ValidationErrorKind as Kind;
        let keyword_path = error.schema_path().as_str();
        // The schema holding the failing keyword, and its description.
        let holder = keyword_path.rsplit_once('/').map_or("", |(holder, _)| holder);
        let description = self
            .schema
            .pointer(holder)
            .and_then(|schema| schema.get("description"))
            .and_then(Value::as_str)
            .map(|text| text.trim_end_matches('.'));
        // `dependentSchemas/<field>/...`: the rule applies because <field> is given.
        let because = keyword_path
            .split_once("/dependentSchemas/")
            .and_then(|(_, rest)| rest.split('/').next())
            .map(|field| field.replace("~1", "/").replace("~0", "~"));
        match (error.kind(), description, because) {
            (Kind::FalseSchema, _, Some(trigger)) => {
                let field = pointer.rsplit('/').next().unwrap_or_default();
                format!(
                    "{field:?} cannot be used together with {trigger:?}; see {}",
                    self.format
                )
            }
            (Kind::FalseSchema, _, None) => {
                let field = pointer.rsplit('/').next().unwrap_or_default();
                format!("{field:?} is not allowed here; see {}", self.format)
            }
            (Kind::Required { .. }, _, Some(trigger)) => {
                format!("{} when {trigger:?} is given", shorten(error.to_string()))
            }
            (Kind::AnyOf { .. } | Kind::OneOfNotValid { .. }, Some(description), _) => {
                format!("matches none of the allowed forms: {description}")
            }
            (Kind::Pattern { .. }, Some(description), _) => {
                format!("{}; expected {description}", shorten(error.to_string()))
            }
            _ => shorten(error.to_string()),
        }
    }
}

/// Reads a document of one format from a parsed value: the meta-schema
/// first (every problem with its pointer and position), then the typed
/// model, whose errors carry the pointer of the value it refused.
pub(crate) fn read_checked<T: serde::de::DeserializeOwned>(
    source_name: &str,
    value: &Value,
    text: Option<&str>,
    meta: Result<&MetaSchema, String>,
) -> Result<T, DocumentError> {
    let invalid = |problems| DocumentError::Invalid {
        source_name: source_name.to_owned(),
        problems,
    };
    let meta = meta.map_err(|message| {
        invalid(vec![Problem {
            pointer: String::new(),
            position: None,
            message,
        }])
    })?;
    let problems = meta.problems(value, text);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let pointer = path_to_pointer(err.path());
        let message = err.into_inner().to_string();
        invalid(vec![Problem {
            position: text.map(|text| locate_nearest(text, &pointer)),
            pointer,
            message,
        }])
    })
}

/// Parses JSON text within the limits, with a clear error on failure.
pub fn parse_json(source_name: &str, text: &str, limits: &Limits) -> Result<Value, DocumentError> {
    if text.len() > limits.max_document_bytes {
        return Err(DocumentError::TooLarge {
            source_name: source_name.to_owned(),
            size: text.len(),
            limit: limits.max_document_bytes,
        });
    }
    if let Some(position) = depth_beyond(text, limits.max_depth) {
        return Err(DocumentError::TooDeep {
            source_name: source_name.to_owned(),
            position,
            limit: limits.max_depth,
        });
    }
    serde_json::from_str(text).map_err(|err| {
        let full = err.to_string();
        // serde_json appends " at line L column C"; the position is reported on its own.
        let message = full
            .rsplit_once(" at line ")
            .map_or(full.as_str(), |(head, _)| head)
            .to_owned();
        DocumentError::Syntax {
            source_name: source_name.to_owned(),
            position: Position {
                line: err.line().max(1),
                column: err.column().max(1),
            },
            message,
        }
    })
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointer of a serde path (`items[0].sku` → `/items/0/sku`), for
/// errors about a value a type refused.
pub fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push('/');
                pointer.push_str(&escape_pointer(key));
            }
            Segment::Unknown => pointer.push_str("/?"),
        }
    }
    pointer
}

/// The compiled contract meta-schema, built once.
fn meta_validator() -> Result<&'static MetaSchema, String> {
    static META: OnceLock<Result<MetaSchema, String>> = OnceLock::new();
    META.get_or_init(|| {
        MetaSchema::compile(
            CONTRACT_META_SCHEMA,
            "contract",
            "the contract format in contracts/schema/contract.schema.json",
        )
    })
    .as_ref()
    .map_err(Clone::clone)
}
