//! The orchestrator's API messages and the state of a workflow instance,
//! shared by the orchestrator, the workflows' generated contracts and the
//! CLI. The orchestrator's own contract ([`contract`]) is derived from these
//! types; its verbs answer on `soa.orchestrator.v1.<verb>`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::envelope::ErrorBody;
use crate::names::NameError;
use crate::operations;

/// The version of the orchestrator's own contract.
pub const CONTRACT_VERSION: &str = "1.0.0";

/// The orchestrator's service name.
pub const SERVICE: &str = "orchestrator";

/// The error code of a workflow definition that fails its checks at load:
/// each detail is one problem with its pointer into the definition.
pub const INVALID_DEFINITION: &str = "INVALID_DEFINITION";

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Steps are being run.
    Running,
    /// A step failed for good (or a cancel came): completed steps are being undone.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed for good and every completed step was undone.
    Compensated,
    /// Cancelled on request; every completed step was undone.
    Cancelled,
    /// A compensation failed for good; the reason says which.
    Failed,
}

impl InstanceStatus {
    /// True once the instance will never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Compensated | Self::Cancelled | Self::Failed
        )
    }

    /// The status as written in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// Reads a status as written by [`InstanceStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Compensating,
            Self::Completed,
            Self::Compensated,
            Self::Cancelled,
            Self::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one call step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// An attempt is under way (or waits for its retry time).
    Running,
    /// It succeeded; its output is kept.
    Succeeded,
    /// It failed for good.
    Failed,
    /// It had succeeded and was undone.
    Compensated,
}

/// One call step of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepState {
    /// Where the step is.
    pub status: StepStatus,
    /// The current (or last) attempt, from 1.
    pub attempt: u32,
    /// When the current attempt started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When the current attempt times out, ms since the Unix epoch.
    pub deadline_ms: u64,
    /// When the next attempt may start, while waiting to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    /// The operation's response, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Undoing completed steps, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompensationState {
    /// Why compensation started.
    pub reason: String,
    /// Steps still to undo, the next one first.
    pub remaining: Vec<String>,
    /// The current attempt of the first remaining step's compensation.
    pub attempt: u32,
    /// When that attempt started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When that attempt times out.
    pub deadline_ms: u64,
    /// When the next attempt may start, while waiting to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    /// The last error of a compensation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One thing that happened to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEvent {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// What: `started`, `step-started`, `step-succeeded`, `step-failed`,
    /// `step-retrying`, `choice`, `compensation-started`, `compensated`,
    /// `compensation-failed`, `cancel-requested`, `completed`, `failed`...
    pub kind: String,
    /// The step concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The attempt concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// More about it: an error, a choice made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A workflow instance: everything the orchestrator keeps of it. Stored in
/// JetStream KV and answered as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceState {
    /// The instance id.
    pub id: String,
    /// The definition it runs, `name@version`.
    pub workflow: String,
    /// Where it is.
    pub status: InstanceStatus,
    /// The workflow's input.
    pub input: Value,
    /// The flow's correlation id, carried by every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The key it was started with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` of the start, so every call is one trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// When it was started, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
    /// Call steps that started, by id.
    #[serde(default)]
    pub steps: BTreeMap<String, StepState>,
    /// Call steps in the order they succeeded (compensation runs backwards).
    #[serde(default)]
    pub completed: Vec<String>,
    /// The case each choice step took (`case <n>` or `default`).
    #[serde(default)]
    pub choices: BTreeMap<String, String>,
    /// While compensating: what is left to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<CompensationState>,
    /// A cancel asked for and not yet acted on, with its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<String>,
    /// The output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it ended other than completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, in order.
    #[serde(default)]
    pub history: Vec<HistoryEvent>,
}

impl InstanceState {
    /// The call steps under way now.
    pub fn current_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, step)| step.status == StepStatus::Running)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Start an instance through a workflow's own contract (`<domain>.<name>.v<major>.start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflowRequest {
    /// The workflow's input, checked against its input schema.
    pub input: Value,
    /// Starts with the same key start one instance: later ones get it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The flow's correlation id (the message's `Soa-Correlation-Id` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// The instance a start created or found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StartWorkflowResponse {
    /// The instance id.
    pub instance: String,
    /// The definition it runs, `name@version`.
    pub workflow: String,
    /// False when the idempotency key had started it before.
    pub created: bool,
    /// Its status now.
    pub status: InstanceStatus,
}

/// The event a workflow publishes when an instance ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowFinished {
    /// The instance id.
    pub instance: String,
    /// The definition it ran, `name@version`.
    pub workflow: String,
    /// How it ended: completed, compensated, cancelled or failed.
    pub status: InstanceStatus,
    /// The output, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why, when it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The flow's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// Load a workflow definition; `name@version` never changes afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// The definition document.
    pub definition: Value,
}

/// A loaded definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadResponse {
    /// `name@version`.
    pub workflow: String,
    /// The definition's content digest.
    pub digest: String,
    /// False when the same definition had been loaded before.
    pub created: bool,
    /// The subject of the workflow's `start` operation.
    pub start_subject: String,
    /// Mapping checks that could not be made (a schema too loose to tell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// List the loaded definitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionsRequest {}

/// One loaded definition, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DefinitionSummary {
    /// `name@version`.
    pub workflow: String,
    /// What it does.
    pub description: String,
    /// Its content digest.
    pub digest: String,
    /// Its steps, nested ones included.
    pub steps: usize,
    /// The subject of its `start` operation.
    pub start_subject: String,
    /// When it was loaded, ms since the Unix epoch.
    pub loaded_at_ms: u64,
}

/// The loaded definitions, by name then version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DefinitionsResponse {
    /// Every loaded definition.
    pub definitions: Vec<DefinitionSummary>,
}

/// Start an instance of a loaded workflow by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// `name@version`, or `name` for its latest version.
    pub workflow: String,
    /// The workflow's input.
    pub input: Value,
    /// Starts with the same key start one instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The flow's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// Read one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowRequest {
    /// The instance id.
    pub instance: String,
}

/// One instance as stored, and the steps under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShowResponse {
    /// The instance.
    pub instance: InstanceState,
    /// Call steps under way now.
    pub current: Vec<String>,
}

/// List instances, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInstancesRequest {
    /// Only this workflow (`name` or `name@version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Only instances with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<InstanceStatus>,
    /// At most this many (100 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub limit: Option<u32>,
}

/// One instance, in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceSummary {
    /// The instance id.
    pub instance: String,
    /// `name@version`.
    pub workflow: String,
    /// Where it is.
    pub status: InstanceStatus,
    /// Call steps under way.
    pub current: Vec<String>,
    /// When it started, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
    /// Its correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// Matching instances and counts by status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListInstancesResponse {
    /// The instances, newest first, at most the limit.
    pub instances: Vec<InstanceSummary>,
    /// How many matched in all, before the limit.
    pub total: usize,
    /// Matching instances by status.
    pub by_status: BTreeMap<String, usize>,
}

/// Cancel an instance: undo its completed steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// The instance id.
    pub instance: String,
    /// Why; kept in its history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The cancelled instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CancelResponse {
    /// The instance id.
    pub instance: String,
    /// Its status when the cancel was recorded (it compensates next).
    pub status: InstanceStatus,
    /// False when it had already ended and nothing was done.
    pub accepted: bool,
}

/// Marker types tying each verb to its messages.
pub mod ops {
    use super::*;

    operations! {
        /// Load a definition.
        Load = "load": LoadRequest => LoadResponse;
        /// The loaded definitions.
        Definitions = "definitions": DefinitionsRequest => DefinitionsResponse;
        /// Start an instance.
        Start = "start": StartRequest => StartWorkflowResponse;
        /// One instance.
        Show = "show": ShowRequest => ShowResponse;
        /// Instances by workflow and status.
        List = "list": ListInstancesRequest => ListInstancesResponse;
        /// Cancel an instance.
        Cancel = "cancel": CancelRequest => CancelResponse;
    }
}

/// The orchestrator's contract, derived from the types above.
pub fn contract() -> Result<ContractDocument, NameError> {
    let read = |description| OperationSpec {
        description,
        errors: &[],
        idempotent: true,
    };
    Ok(ContractBuilder::new(
        crate::subjects::REGISTRY_DOMAIN,
        SERVICE,
        CONTRACT_VERSION,
        "The soabus orchestrator: durable workflows that call contract operations, retry, time out and compensate",
        "soabus",
    )?
    .tags(&["soabus", "orchestrator"])
    .operation::<ops::Load>(OperationSpec {
        description: "Load a workflow definition after checking it and every operation it calls; name@version never changes",
        errors: &[INVALID_DEFINITION],
        idempotent: true,
    })?
    .operation::<ops::Definitions>(read("The loaded workflow definitions"))?
    .operation::<ops::Start>(OperationSpec {
        description: "Start an instance of a loaded workflow; the same idempotency key starts one instance",
        errors: &[],
        idempotent: true,
    })?
    .operation::<ops::Show>(read("One instance: status, steps under way, history"))?
    .operation::<ops::List>(read("Instances by workflow and status, newest first"))?
    .operation::<ops::Cancel>(OperationSpec {
        description: "Cancel an instance: its completed steps are compensated",
        errors: &[],
        idempotent: true,
    })?
    .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_binds_every_verb() {
        let contract = contract().unwrap();
        assert_eq!(contract.id().to_string(), "orchestrator@1.0.0");
        let subjects: Vec<String> = contract
            .operations
            .values()
            .map(|operation| operation.subject.to_string())
            .collect();
        assert!(
            subjects.contains(&"soa.orchestrator.v1.start".to_owned()),
            "{subjects:?}"
        );
        let findings = crate::lint::lint(&contract, None, &crate::schema::SchemaSet::default());
        assert!(
            findings
                .iter()
                .all(|finding| finding.severity != crate::lint::Severity::Error),
            "{findings:?}"
        );
    }

    #[test]
    fn statuses_read_back() {
        for status in [
            InstanceStatus::Running,
            InstanceStatus::Compensated,
            InstanceStatus::Failed,
        ] {
            assert_eq!(InstanceStatus::parse(status.as_str()), Some(status));
        }
        assert!(InstanceStatus::Cancelled.is_final());
        assert!(!InstanceStatus::Compensating.is_final());
    }
}
