//! What a handler knows about the message it handles: the flow it belongs to
//! (correlation id) and the trace span it runs in, handed on to every call
//! and event it makes.

use contracts::{ContractId, MemberName};

use super::trace::TraceContext;
use crate::wire::CorrelationId;

/// The flow and trace a message belongs to, carried from an incoming message
/// to the messages its handler sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    /// `Soa-Correlation-Id`, when the flow has one.
    pub correlation_id: Option<CorrelationId>,
    /// The W3C trace context of the current span.
    pub trace: TraceContext,
}

impl Propagation {
    /// A new flow: no correlation id yet and a new trace.
    pub fn new_root() -> Self {
        Self {
            correlation_id: None,
            trace: TraceContext::new_root(),
        }
    }

    /// The same flow with a correlation id.
    pub fn with_correlation_id(mut self, correlation_id: CorrelationId) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }
}

/// Handed to every handler: which operation of which contract it serves and
/// the flow and trace of the request.
#[derive(Debug, Clone)]
pub struct Context {
    contract: ContractId,
    operation: MemberName,
    propagation: Propagation,
    idempotency_key: Option<String>,
}

impl Context {
    pub(crate) fn new(
        contract: ContractId,
        operation: MemberName,
        propagation: Propagation,
        idempotency_key: Option<String>,
    ) -> Self {
        Self {
            contract,
            operation,
            propagation,
            idempotency_key,
        }
    }

    /// The request's `Soa-Idempotency-Key`: a handler with effects does them
    /// once per key, so a repeated request (a retried workflow step) gets the
    /// first answer again.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// The contract the service serves.
    pub fn contract(&self) -> &ContractId {
        &self.contract
    }

    /// The operation being handled.
    pub fn operation(&self) -> &MemberName {
        &self.operation
    }

    /// The request's correlation id, if it carried one.
    pub fn correlation_id(&self) -> Option<&CorrelationId> {
        self.propagation.correlation_id.as_ref()
    }

    /// The trace span this handler runs in.
    pub fn trace(&self) -> &TraceContext {
        &self.propagation.trace
    }

    /// What calls and events made by this handler inherit:
    /// `client.in_flow(ctx.propagation())`.
    pub fn propagation(&self) -> &Propagation {
        &self.propagation
    }
}
