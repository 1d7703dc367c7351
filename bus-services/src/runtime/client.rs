//! The typed client: `client.call::<Op>(request)` with a timeout, typed
//! errors, retries with backoff for idempotent operations only, and the
//! flow's correlation id and trace context on every request.

use std::sync::Arc;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{HeaderMap, Request};
use contracts::envelope::headers;
use contracts::{ContractDocument, ErrorBody, ErrorCode, MemberName, OperationType};
use serde_json::Value;

use super::context::Propagation;
use crate::connection::refusals::{self, PermissionRefusal, RefusedAction};
use crate::wire::{self, Envelope};

/// How calls behave.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOptions {
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// Attempts in all for an idempotent operation (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Each retry waits this much longer than the one before.
    pub backoff_multiplier: f64,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            backoff_multiplier: 2.0,
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Why a call did not return a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The service answered with an error reply.
    #[error("{operation} failed: {body}")]
    Service {
        /// The operation called.
        operation: MemberName,
        /// The error reply, with validation details when there are any.
        body: ErrorBody,
    },
    /// Nobody serves the operation's subject.
    #[error("UNAVAILABLE: no instance of {service} answers on {subject}; is the service running?")]
    Unavailable {
        /// The service called.
        service: String,
        /// The subject nobody listens on.
        subject: String,
    },
    /// No reply came in time.
    #[error("TIMEOUT: no reply from {subject} within {timeout:?}")]
    Timeout {
        /// The subject called.
        subject: String,
        /// How long the client waited for the last attempt.
        timeout: Duration,
    },
    /// The contract has no such operation.
    #[error("{contract} has no operation {operation:?}")]
    UnknownOperation {
        /// The callee's contract.
        contract: String,
        /// The name asked for.
        operation: String,
    },
    /// The request could not be encoded, or the reply decoded.
    #[error("{0}")]
    Codec(String),
    /// The NATS server refused to let this connection send to the
    /// operation's subject (its user lacks the publish permission).
    #[error(
        "UNAUTHORIZED: {refusal}, so {service}#{operation} was not called; declare \
         {service}@{major}#{operation} in the caller's contract `calls` and grant the subject in \
         the caller's NATS permissions (`soa contract permissions` prints them)"
    )]
    Refused {
        /// The service called.
        service: String,
        /// Its major version.
        major: u64,
        /// The operation called.
        operation: MemberName,
        /// What the server refused.
        refusal: PermissionRefusal,
    },
    /// The connection failed in another way.
    #[error("NATS error calling {subject}: {message}")]
    Nats {
        /// The subject called.
        subject: String,
        /// What the client reported.
        message: String,
    },
}

impl CallError {
    /// The error code, as a caller would switch on it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Service { body, .. } => body.code.clone(),
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::Refused { .. } => ErrorCode::Unauthorized,
            Self::UnknownOperation { .. } => ErrorCode::NotFound,
            Self::Codec(_) | Self::Nats { .. } => ErrorCode::Internal,
        }
    }

    /// The error reply's body, or one built for a local failure.
    pub fn body(&self) -> ErrorBody {
        match self {
            Self::Service { body, .. } => body.clone(),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }

    /// Worth another attempt of an idempotent operation.
    fn retryable(&self) -> bool {
        matches!(self.code(), ErrorCode::Unavailable | ErrorCode::Timeout)
    }
}

/// A client of one service's contract.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    nats: async_nats::Client,
    refusals: refusals::Watcher,
    contract: Arc<ContractDocument>,
    options: CallOptions,
    propagation: Option<Propagation>,
    idempotency_key: Option<String>,
}

impl ServiceClient {
    /// A client of the service whose contract is `contract`.
    pub fn new(nats: async_nats::Client, contract: ContractDocument) -> Self {
        Self {
            refusals: refusals::Watcher::of(&nats),
            nats,
            contract: Arc::new(contract),
            options: CallOptions::default(),
            propagation: None,
            idempotency_key: None,
        }
    }

    /// The same client with other call options.
    pub fn with_options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// The same client, sending as part of a flow: its requests carry the
    /// flow's correlation id and a child span of its trace. Inside a handler:
    /// `client.in_flow(ctx.propagation())`.
    pub fn in_flow(&self, propagation: &Propagation) -> Self {
        Self {
            propagation: Some(propagation.clone()),
            ..self.clone()
        }
    }

    /// The same client, sending `key` as `Soa-Idempotency-Key` so the callee
    /// can tell a repeated request from a new one.
    pub fn with_idempotency_key(&self, key: impl Into<String>) -> Self {
        Self {
            idempotency_key: Some(key.into()),
            ..self.clone()
        }
    }

    /// The callee's contract.
    pub fn contract(&self) -> &ContractDocument {
        &self.contract
    }

    /// Calls `Op` with `request` and decodes its response.
    pub async fn call<Op: OperationType>(&self, request: &Op::Request) -> Result<Op::Response, CallError> {
        let payload = serde_json::to_vec(request)
            .map_err(|err| CallError::Codec(format!("could not encode the request: {err}")))?;
        let reply = self.call_bytes(Op::NAME, payload).await?;
        serde_json::from_slice(&reply).map_err(|err| {
            CallError::Codec(format!(
                "the reply of {} does not decode as its Rust type: {err}",
                Op::NAME
            ))
        })
    }

    /// Calls an operation by name with a JSON payload, for tools that know
    /// the contract but not the Rust types.
    pub async fn call_json(&self, operation: &str, request: &Value) -> Result<Value, CallError> {
        let payload = serde_json::to_vec(request)
            .map_err(|err| CallError::Codec(format!("could not encode the request: {err}")))?;
        let reply = self.call_bytes(operation, payload).await?;
        serde_json::from_slice(&reply)
            .map_err(|err| CallError::Codec(format!("the reply of {operation} is not JSON: {err}")))
    }

    /// Calls an operation with an encoded payload and returns the encoded
    /// response; retries idempotent operations that found nobody or timed out.
    pub async fn call_bytes(&self, operation: &str, payload: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let unknown = || CallError::UnknownOperation {
            contract: self.contract.id().to_string(),
            operation: operation.to_owned(),
        };
        let name = MemberName::parse(operation).map_err(|_| unknown())?;
        let declared = self.contract.operations.get(&name).ok_or_else(unknown)?;
        let attempts = if declared.idempotent {
            self.options.max_attempts.max(1)
        } else {
            1
        };
        let payload = bytes::Bytes::from(payload);
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 1;
        loop {
            let result = self.attempt(&name, declared.subject.as_str(), payload.clone()).await;
            match result {
                Err(error) if attempt < attempts && error.retryable() => {
                    tracing::debug!(operation = %name, attempt, error = %error, "Retrying an idempotent call.");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff
                        .mul_f64(self.options.backoff_multiplier)
                        .min(self.options.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        operation: &MemberName,
        subject: &str,
        payload: bytes::Bytes,
    ) -> Result<Vec<u8>, CallError> {
        let request = Request::new()
            .payload(payload)
            .headers(self.headers(operation))
            .timeout(Some(self.options.timeout));
        // A refused request is dropped by the server, which says so on the
        // connection: without the watch the caller would only time out.
        let refused = self.refusals.watch();
        let sent = tokio::select! {
            sent = self.nats.send_request(subject.to_owned(), request) => sent,
            refusal = refused.refused(RefusedAction::Publish, subject) => {
                return Err(CallError::Refused {
                    service: self.contract.service.to_string(),
                    major: self.contract.version.major(),
                    operation: operation.clone(),
                    refusal,
                });
            }
        };
        let reply = sent.map_err(|err| match err.kind() {
            RequestErrorKind::NoResponders => CallError::Unavailable {
                service: self.contract.service.to_string(),
                subject: subject.to_owned(),
            },
            RequestErrorKind::TimedOut => CallError::Timeout {
                subject: subject.to_owned(),
                timeout: self.options.timeout,
            },
            _ => CallError::Nats {
                subject: subject.to_owned(),
                message: err.to_string(),
            },
        })?;
        let is_error = wire::header(reply.headers.as_ref(), headers::SERVICE_ERROR_CODE).is_some();
        if is_error {
            let body = wire::decode_error(reply.headers.as_ref(), &reply.payload).unwrap_or_else(|| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    "the service sent an error reply that cannot be read",
                )
            });
            return Err(CallError::Service {
                operation: operation.clone(),
                body,
            });
        }
        Ok(reply.payload.to_vec())
    }

    fn headers(&self, operation: &MemberName) -> HeaderMap {
        let propagation = self.propagation.clone().unwrap_or_else(Propagation::new_root);
        let mut map = Envelope::operation(self.contract.id(), operation.clone())
            .with_correlation_id(propagation.correlation_id.clone())
            .to_headers();
        let span = propagation.trace.child();
        wire::insert_header(&mut map, headers::TRACEPARENT, &span.traceparent());
        if let Some(state) = span.tracestate() {
            wire::insert_header(&mut map, headers::TRACESTATE, state);
        }
        if let Some(key) = &self.idempotency_key {
            wire::insert_header(&mut map, headers::IDEMPOTENCY_KEY, key);
        }
        map
    }
}
