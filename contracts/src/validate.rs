//! Validating messages against a compiled message schema: a fast yes/no
//! first, every failing value with its pointer only when the answer is no.

use serde_json::Value;

use crate::document::MessageKey;
use crate::envelope::{ErrorBody, ErrorCode, ErrorDetail};
use crate::locate::depth_beyond;
use crate::names::ContractId;
use crate::parse::shorten;

/// The compiled schema of one message of one contract version.
pub struct MessageValidator {
    contract: ContractId,
    key: MessageKey,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for MessageValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageValidator")
            .field("contract", &self.contract)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A message that does not match its schema: which message of which
/// contract, and every failing value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {message} does not match {contract}: {}", summary(details))]
pub struct ValidationFailure {
    /// The contract the message was checked against.
    pub contract: ContractId,
    /// Which message.
    pub message: MessageKey,
    /// Every failing value, with its pointer.
    pub details: Vec<ErrorDetail>,
}

fn summary(details: &[ErrorDetail]) -> String {
    let shown: Vec<String> = details.iter().take(3).map(ToString::to_string).collect();
    let more = details.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

impl From<ValidationFailure> for ErrorBody {
    fn from(failure: ValidationFailure) -> Self {
        Self {
            code: ErrorCode::ValidationFailed,
            message: format!("the {} does not match {}", failure.message, failure.contract),
            details: failure.details,
        }
    }
}

/// The deepest nesting of arrays and objects a message may have: serde_json's
/// own recursion limit, which keeps a hostile payload from exhausting the
/// stack.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// The most failing values listed for one message; a hostile message cannot
/// make the error reply huge.
const MAX_DETAILS: usize = 100;

impl MessageValidator {
    pub(crate) fn new(contract: ContractId, key: MessageKey, validator: jsonschema::Validator) -> Self {
        Self {
            contract,
            key,
            validator,
        }
    }

    /// The contract this schema belongs to.
    pub fn contract(&self) -> &ContractId {
        &self.contract
    }

    /// Which message of the contract this is.
    pub fn key(&self) -> &MessageKey {
        &self.key
    }

    /// True when `instance` matches the schema. The fast path: no error is
    /// built.
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Checks `instance`, returning every failing value when it does not match.
    pub fn validate(&self, instance: &Value) -> Result<(), ValidationFailure> {
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let details = self
            .validator
            .iter_errors(instance)
            .take(MAX_DETAILS)
            .map(|error| ErrorDetail {
                pointer: error.instance_path().as_str().to_owned(),
                schema_path: Some(error.schema_path().as_str().to_owned()),
                message: shorten(error.to_string()),
            })
            .collect();
        Err(self.failure(details))
    }

    /// Parses `payload` as JSON and checks it; a payload that is not JSON, or
    /// nests deeper than [`MAX_PAYLOAD_DEPTH`], is reported as one failing
    /// value at the root.
    pub fn validate_bytes(&self, payload: &[u8]) -> Result<Value, ValidationFailure> {
        let instance: Value = serde_json::from_slice(payload).map_err(|err| {
            // serde_json stops at its recursion limit and calls the payload
            // invalid; say what is actually wrong with it.
            let too_deep = std::str::from_utf8(payload)
                .ok()
                .and_then(|text| depth_beyond(text, MAX_PAYLOAD_DEPTH));
            let message = match too_deep {
                Some(position) => format!(
                    "the payload nests arrays and objects deeper than {MAX_PAYLOAD_DEPTH} levels (from {position})"
                ),
                None => format!("the payload is not valid JSON: {err}"),
            };
            self.failure(vec![ErrorDetail {
                pointer: String::new(),
                schema_path: None,
                message,
            }])
        })?;
        self.validate(&instance)?;
        Ok(instance)
    }

    fn failure(&self, details: Vec<ErrorDetail>) -> ValidationFailure {
        ValidationFailure {
            contract: self.contract.clone(),
            message: self.key.clone(),
            details,
        }
    }
}
