//! The language of soabus: contract documents and their checks, JSON Schema
//! validation of messages, the envelope every message travels in, the
//! registry API's message types, and the demo shop's contracts.
//!
//! This crate does no I/O and knows nothing of NATS or tokio: it is plain
//! data and functions, tested without a server.

pub mod cache;
pub mod canonical;
pub mod catalog;
pub mod compat;
pub mod document;
pub mod envelope;
pub mod lint;
pub mod locate;
pub mod names;
pub mod operation;
pub mod orchestrator_api;
pub mod parse;
pub mod permissions;
pub mod registry_api;
pub mod schema;
pub mod schema_walk;
pub mod shop;
pub mod subjects;
pub mod validate;
pub mod workflow;

pub use cache::ValidatorCache;
pub use document::{CompatibilityPolicy, ContractDocument, Event, MessageKey, Operation};
pub use envelope::{ErrorBody, ErrorCode, ErrorDetail};
pub use lint::{Finding, Rule, Severity, check_document, lint};
pub use names::{ContractId, ContractRef, MemberName, NameError, ServiceName, Subject, SubjectPattern, Version};
pub use operation::{EventType, OperationType};
pub use parse::{DocumentError, Limits, Problem};
pub use schema::{CompiledContract, SchemaProblem, SchemaSet, compile_contract, compile_message};
pub use validate::{MessageValidator, ValidationFailure};
