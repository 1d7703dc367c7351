//! The orchestrator as the `soa workflow` commands see it: one NATS
//! connection, the runtime's typed client of the orchestrator's own
//! contract, and errors that say what to do.
//!
//! The exit codes agree with the registry commands': no NATS connection or
//! no orchestrator answering is a usage error (exit 2: the command cannot do
//! anything and the hint says what to start); a refusal (`NOT_FOUND`,
//! `CONFLICT`, `INVALID_DEFINITION`...) is a failure (exit 1).

use std::time::Duration;

use bus_services::runtime::{CallError, CallOptions, ServiceClient};
use contracts::{ErrorBody, ErrorCode, OperationType};

use crate::cli::registry_client::connect;
use crate::cli::{NatsOptions, UsageError};

/// How long the CLI waits for a reply to a query, a start or a cancel.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the CLI waits for a load, which asks the registry for every
/// contract the definition calls and registers the workflow's own.
pub(super) const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// Why an orchestrator call did not return an answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum OrchestratorCallError {
    /// Nothing listens on the orchestrator's subject.
    #[error("no orchestrator answered on {subject} at {url}; is `soa orchestrator serve` running?")]
    NoOrchestrator {
        /// The subject asked.
        subject: String,
        /// The NATS server asked.
        url: String,
    },
    /// An orchestrator listens but did not answer in time.
    #[error(
        "the orchestrator did not answer on {subject} at {url} within {timeout:?}; is it overloaded, or cut off from JetStream?"
    )]
    Timeout {
        /// The subject asked.
        subject: String,
        /// The NATS server asked.
        url: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The orchestrator answered with an error.
    #[error("{}", refusal(.0))]
    Refused(ErrorBody),
    /// The connection or the reply broke in another way.
    #[error("{0}")]
    Other(String),
}

/// A refusal as a sentence: the message of a `NOT_FOUND` or `CONFLICT`
/// (which say it all), the code and message of anything else, and each detail.
pub(super) fn refusal(body: &ErrorBody) -> String {
    let mut text = if matches!(body.code, ErrorCode::NotFound | ErrorCode::Conflict) {
        body.message.clone()
    } else {
        format!("the orchestrator refused: {}: {}", body.code, body.message)
    };
    for detail in &body.details {
        text.push_str(&format!("; {detail}"));
    }
    text
}

impl OrchestratorCallError {
    /// The error for a command to return: a usage error (exit 2) when no
    /// orchestrator answered, a failure (exit 1) otherwise.
    pub(super) fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::NoOrchestrator { .. } | Self::Timeout { .. } => anyhow::Error::new(UsageError(self.to_string())),
            other => anyhow::Error::new(other),
        }
    }
}

/// The orchestrator's NATS API, through the runtime's typed client of the
/// orchestrator's own contract.
#[derive(Debug, Clone)]
pub(super) struct OrchestratorClient {
    client: ServiceClient,
    url: String,
}

impl OrchestratorClient {
    /// A client of the orchestrator on `nats`, which is connected to `url` (named in errors).
    pub(super) fn new(nats: async_nats::Client, url: &str) -> anyhow::Result<Self> {
        let contract = contracts::orchestrator_api::contract()
            .map_err(|error| anyhow::anyhow!("the orchestrator's own contract does not build: {error}"))?;
        let client = ServiceClient::new(nats, contract).with_options(CallOptions {
            timeout: CALL_TIMEOUT,
            max_attempts: 2,
            ..CallOptions::default()
        });
        Ok(Self {
            client,
            url: url.to_owned(),
        })
    }

    /// Connects to the server of `nats` and makes a client of the orchestrator there.
    pub(super) async fn connect(nats: &NatsOptions, name: &str) -> anyhow::Result<(Self, async_nats::Client)> {
        let client = connect(nats, name, "reach the orchestrator").await?;
        Ok((Self::new(client.clone(), &nats.nats_url)?, client))
    }

    /// The same client, waiting `timeout` for each reply.
    pub(super) fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            client: self.client.clone().with_options(CallOptions {
                timeout,
                max_attempts: 2,
                ..CallOptions::default()
            }),
            url: self.url.clone(),
        }
    }

    /// Calls `Op`; the error says whether an orchestrator answered at all.
    pub(super) async fn try_call<Op: OperationType>(
        &self,
        request: &Op::Request,
    ) -> Result<Op::Response, OrchestratorCallError> {
        self.client.call::<Op>(request).await.map_err(|error| match error {
            CallError::Unavailable { subject, .. } => OrchestratorCallError::NoOrchestrator {
                subject,
                url: self.url.clone(),
            },
            CallError::Timeout { subject, timeout } => OrchestratorCallError::Timeout {
                subject,
                url: self.url.clone(),
                timeout,
            },
            CallError::Service { body, .. } => OrchestratorCallError::Refused(body),
            other => OrchestratorCallError::Other(format!("calling the orchestrator's {}: {other}", Op::NAME)),
        })
    }

    /// Calls `Op`, with the error ready for a command to return.
    pub(super) async fn call<Op: OperationType>(&self, request: &Op::Request) -> anyhow::Result<Op::Response> {
        self.try_call::<Op>(request)
            .await
            .map_err(OrchestratorCallError::into_anyhow)
    }
}

#[cfg(test)]
mod tests {
    use contracts::ErrorDetail;

    use super::*;

    #[test]
    fn no_orchestrator_is_a_usage_error_with_a_hint_and_a_refusal_a_failure() {
        let none = OrchestratorCallError::NoOrchestrator {
            subject: "soa.orchestrator.v1.list".to_owned(),
            url: "nats://127.0.0.1:4222".to_owned(),
        };
        assert_eq!(
            none.to_string(),
            "no orchestrator answered on soa.orchestrator.v1.list at nats://127.0.0.1:4222; is `soa orchestrator serve` running?"
        );
        assert!(none.into_anyhow().downcast_ref::<UsageError>().is_some());

        let missing = OrchestratorCallError::Refused(ErrorBody::new(ErrorCode::NotFound, "no instance \"x\""));
        assert_eq!(missing.to_string(), "no instance \"x\"");
        assert!(missing.into_anyhow().downcast_ref::<UsageError>().is_none());

        let invalid = OrchestratorCallError::Refused(ErrorBody {
            code: ErrorCode::ValidationFailed,
            message: "the input does not match w@1.0.0's input schema".to_owned(),
            details: vec![ErrorDetail {
                pointer: "/input/order".to_owned(),
                schema_path: None,
                message: "42 is not of type \"string\"".to_owned(),
            }],
        });
        assert_eq!(
            invalid.to_string(),
            "the orchestrator refused: VALIDATION_FAILED: the input does not match w@1.0.0's input schema; at /input/order: 42 is not of type \"string\""
        );
    }
}
