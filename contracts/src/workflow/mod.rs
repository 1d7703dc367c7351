//! Workflow definitions: the orchestrator's input language.
//!
//! - [`model`]: the definition's types (steps, retries, compensations).
//! - [`mapping`]: request templates and the expressions they use.
//! - [`parse`]: reading a definition, with its meta-schema and structural checks.
//! - [`check`]: the load-time check of a definition against the contracts it calls.
//! - [`contract`]: the contract a workflow is published under, as a service.

pub mod check;
pub mod contract;
pub mod mapping;
pub mod model;
pub mod parse;

pub use check::{CheckOutcome, check_against_contracts};
pub use contract::{start_subject, workflow_contract};
pub use mapping::{MappingError, Scope, evaluate_expression};
pub use model::{
    CallStep, Choice, ChoiceCase, ChoiceStep, Compensation, Interval, Mapping, ParallelStep, RetryPolicy, Step,
    StepKind, Trigger, WORKFLOW_FORMAT_TAG, WorkflowDefinition,
};
pub use parse::{WORKFLOW_META_SCHEMA, parse_definition, structural_problems};
