//! What can go wrong in the orchestrator, and how each failure answers a caller.

use contracts::{ErrorBody, ErrorCode, ErrorDetail};

use crate::runtime::ServiceError;

/// Why an orchestrator call or task failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// JetStream (KV or a stream) failed; the operation may be retried.
    #[error("JetStream failed while {doing}: {message}")]
    JetStream {
        /// What the orchestrator was doing.
        doing: String,
        /// What the client reported.
        message: String,
    },
    /// Stored state could not be read back.
    #[error("the stored {what} {key:?} cannot be read: {message}")]
    Corrupt {
        /// What kind of record.
        what: &'static str,
        /// Its key.
        key: String,
        /// The decoding error.
        message: String,
    },
    /// No such workflow or instance.
    #[error("{0}")]
    NotFound(String),
    /// The same `name@version` was loaded before with other content.
    #[error("{0}")]
    Conflict(String),
    /// A definition failed its checks; one detail per problem.
    #[error("the workflow definition is not valid:{}", details.iter().map(|d| format!("\n  - {d}")).collect::<String>())]
    InvalidDefinition {
        /// Every problem, with its pointer into the definition.
        details: Vec<ErrorDetail>,
    },
    /// A start's input does not match the workflow's input schema.
    #[error("the input does not match {workflow}'s input schema:{}", details.iter().map(|d| format!("\n  - {d}")).collect::<String>())]
    InvalidInput {
        /// The workflow.
        workflow: String,
        /// Every failing value, with its pointer.
        details: Vec<ErrorDetail>,
    },
    /// The orchestrator cannot start: its own contract or service does not
    /// build, or the NATS server is too old.
    #[error("the orchestrator cannot start: {0}")]
    Setup(String),
    /// A request was wrong in another way.
    #[error("{0}")]
    BadRequest(String),
    /// The registry could not be asked.
    #[error("the registry could not be asked: {0}")]
    Registry(String),
}

impl OrchestratorError {
    /// A JetStream failure while doing something.
    pub(crate) fn jetstream(doing: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::JetStream {
            doing: doing.into(),
            message: error.to_string(),
        }
    }
}

impl From<OrchestratorError> for ServiceError {
    fn from(error: OrchestratorError) -> Self {
        match error {
            OrchestratorError::NotFound(message) => ServiceError::not_found(message),
            OrchestratorError::Conflict(message) => ServiceError::conflict(message),
            OrchestratorError::InvalidDefinition { details } => ServiceError::from(ErrorBody {
                code: ErrorCode::Declared(contracts::orchestrator_api::INVALID_DEFINITION.to_owned()),
                message: format!("the workflow definition has {} problem(s); see details", details.len()),
                details,
            }),
            OrchestratorError::InvalidInput { workflow, details } => {
                ServiceError::invalid(format!("the input does not match {workflow}'s input schema"), details)
            }
            OrchestratorError::BadRequest(message) => ServiceError::invalid(message, Vec::new()),
            OrchestratorError::Registry(message) => {
                ServiceError::unavailable(format!("the registry could not be asked: {message}"))
            }
            OrchestratorError::Setup(message) => ServiceError::internal(message),
            other @ (OrchestratorError::JetStream { .. } | OrchestratorError::Corrupt { .. }) => {
                ServiceError::unavailable(other.to_string())
            }
        }
    }
}
