//! Workflow definitions: the orchestrator's input language.
//!
//! - [`model`]: the definition's types (steps, retries, compensations).
//! - [`mapping`]: request templates and the expressions they use.

pub mod mapping;
pub mod model;

pub use mapping::{MappingError, Scope, evaluate_expression};
pub use model::{
    CallStep, Choice, ChoiceCase, ChoiceStep, Compensation, Interval, Mapping, ParallelStep, RetryPolicy, Step,
    StepKind, Trigger, WORKFLOW_FORMAT_TAG, WorkflowDefinition,
};
