//! What travels around a payload: header names, error codes and the error
//! body every reply uses when something went wrong.

use serde::{Deserialize, Serialize};

use crate::names::NameError;

/// Header names the runtime sets on every message.
pub mod headers {
    /// The exact contract the sender speaks: `inventory@1.3.0`.
    pub const CONTRACT: &str = "Soa-Contract";
    /// The operation a request or reply belongs to.
    pub const OPERATION: &str = "Soa-Operation";
    /// The event a message carries.
    pub const EVENT: &str = "Soa-Event";
    /// A unique message id; JetStream de-duplicates on it.
    pub const MESSAGE_ID: &str = "Nats-Msg-Id";
    /// The business key that ties one flow's messages together.
    pub const CORRELATION_ID: &str = "Soa-Correlation-Id";
    /// The caller's key for one effect: a request repeated with the same key
    /// (a retried workflow step, say: `instance/step/attempt`) must not repeat it.
    pub const IDEMPOTENCY_KEY: &str = "Soa-Idempotency-Key";
    /// W3C Trace Context parent.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C Trace Context vendor state.
    pub const TRACESTATE: &str = "tracestate";
    /// NATS micro: the error description of a failed request.
    pub const SERVICE_ERROR: &str = "Nats-Service-Error";
    /// NATS micro: the numeric error code of a failed request.
    pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
    /// On a dead letter: why it was given up.
    pub const DEAD_LETTER_REASON: &str = "Soa-Dead-Letter-Reason";
    /// On a dead letter: the subject it was first published on.
    pub const DEAD_LETTER_SUBJECT: &str = "Soa-Dead-Letter-Subject";
    /// On a dead letter: the consumer that gave up on it.
    pub const DEAD_LETTER_CONSUMER: &str = "Soa-Dead-Letter-Consumer";
    /// On a dead letter: how many times it was delivered.
    pub const DEAD_LETTER_DELIVERIES: &str = "Soa-Dead-Letter-Deliveries";
    /// On a dead letter: its sequence in the original stream.
    pub const DEAD_LETTER_SEQUENCE: &str = "Soa-Dead-Letter-Sequence";
    /// On a dead letter: the `Nats-Msg-Id` the message was published with
    /// (the dead letter has an id of its own).
    pub const DEAD_LETTER_MESSAGE_ID: &str = "Soa-Dead-Letter-Message-Id";
    /// On a replayed dead letter: the `Nats-Msg-Id` the event was first
    /// published with, so a consumer counts the replay as the same event.
    pub const REPLAY_OF: &str = "Soa-Replay-Of";
}

/// The code of an error reply: one of the common codes or an operation's
/// own declared code (`OUT_OF_STOCK`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The message did not match its schema.
    ValidationFailed,
    /// The thing asked for does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The caller may not do this.
    Unauthorized,
    /// Nobody is serving the operation right now.
    Unavailable,
    /// No reply came in time.
    Timeout,
    /// Something broke on the service's side.
    Internal,
    /// A code the operation declares in its contract's `errors`.
    Declared(String),
}

impl ErrorCode {
    /// The common codes: any operation may answer with them, beside the
    /// codes it declares.
    pub const COMMON: [Self; 7] = [
        Self::ValidationFailed,
        Self::NotFound,
        Self::Conflict,
        Self::Unauthorized,
        Self::Unavailable,
        Self::Timeout,
        Self::Internal,
    ];

    /// The code as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
            Self::Internal => "INTERNAL",
            Self::Declared(code) => code,
        }
    }

    /// Parses a code: a common one, or an upper snake case declared one.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        Ok(match text {
            "VALIDATION_FAILED" => Self::ValidationFailed,
            "NOT_FOUND" => Self::NotFound,
            "CONFLICT" => Self::Conflict,
            "UNAUTHORIZED" => Self::Unauthorized,
            "UNAVAILABLE" => Self::Unavailable,
            "TIMEOUT" => Self::Timeout,
            "INTERNAL" => Self::Internal,
            other => {
                let well_formed = other.starts_with(|c: char| c.is_ascii_uppercase())
                    && other
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && other.len() <= 64;
                if !well_formed {
                    return Err(NameError::new(
                        "error code",
                        other,
                        "codes are UPPER_SNAKE_CASE, at most 64 characters, such as OUT_OF_STOCK",
                    ));
                }
                Self::Declared(other.to_owned())
            }
        })
    }

    /// The number sent in `Nats-Service-Error-Code`, HTTP-like so that tools
    /// that only read the number still tell the caller's fault from ours.
    pub fn status(&self) -> u16 {
        match self {
            Self::ValidationFailed => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Declared(_) => 422,
            Self::Internal => 500,
            Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// True for codes that say the caller's input was wrong, as opposed to
    /// something failing on the service's side.
    pub fn is_caller_error(&self) -> bool {
        self.status() < 500
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ErrorCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[A-Z][A-Z0-9_]*$" })
    }
}

/// One failing value of a message: where it is, which schema rule it broke,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// JSON pointer of the failing value in the message (`""` for the root).
    pub pointer: String,
    /// JSON pointer of the schema keyword that failed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_path: Option<String>,
    /// What is wrong, as a sentence.
    pub message: String,
}

/// The JSON body of every error reply:
/// `{"code": "VALIDATION_FAILED", "message": "...", "details": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// A sentence for a person; never internals.
    pub message: String,
    /// The failing values, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

impl ErrorBody {
    /// An error body without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// `at /items/0/quantity: <message>`, `at (root): <message>` for the
/// message as a whole.
impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "at {pointer}: {}", self.message)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        for detail in &self.details {
            write!(f, "; {detail}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in ["VALIDATION_FAILED", "NOT_FOUND", "OUT_OF_STOCK", "TIMEOUT"] {
            let parsed = ErrorCode::parse(code).unwrap();
            assert_eq!(parsed.as_str(), code);
        }
        assert_eq!(
            ErrorCode::parse("OUT_OF_STOCK").unwrap(),
            ErrorCode::Declared("OUT_OF_STOCK".into())
        );
        assert!(ErrorCode::parse("out-of-stock").is_err());
        for code in ErrorCode::COMMON {
            assert_eq!(ErrorCode::parse(code.as_str()).unwrap(), code);
        }
        assert!(ErrorCode::ValidationFailed.is_caller_error());
        assert!(!ErrorCode::Unavailable.is_caller_error());
    }

    #[test]
    fn error_bodies_read_as_one_line_with_each_pointer() {
        let detail = |pointer: &str, message: &str| ErrorDetail {
            pointer: pointer.into(),
            schema_path: None,
            message: message.into(),
        };
        let body = ErrorBody {
            code: ErrorCode::ValidationFailed,
            message: "the request does not match".into(),
            details: vec![detail("", "not an object"), detail("/items/0", "too small")],
        };
        assert_eq!(
            body.to_string(),
            "VALIDATION_FAILED: the request does not match; at (root): not an object; at /items/0: too small"
        );
    }

    #[test]
    fn error_body_wire_shape() {
        let body = ErrorBody {
            code: ErrorCode::ValidationFailed,
            message: "request of reserve does not match inventory@1.0.0".into(),
            details: vec![ErrorDetail {
                pointer: "/quantity".into(),
                schema_path: Some("/properties/quantity/minimum".into()),
                message: "0 is less than the minimum of 1".into(),
            }],
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["code"], "VALIDATION_FAILED");
        assert_eq!(json["details"][0]["pointer"], "/quantity");
        assert_eq!(serde_json::from_value::<ErrorBody>(json).unwrap(), body);
        let bare: ErrorBody = serde_json::from_str(r#"{"code":"INTERNAL","message":"x"}"#).unwrap();
        assert!(bare.details.is_empty());
    }
}
