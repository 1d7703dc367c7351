//! The orchestrator's API, served on the runtime from its own contract
//! (`soa.orchestrator.v1.<verb>`), and the start, cancel and query logic the
//! workflows' own services and the JetStream starts share.

use std::collections::BTreeMap;
use std::sync::Arc;

use contracts::ErrorDetail;
use contracts::orchestrator_api::{
    CancelRequest, CancelResponse, DefinitionSummary, DefinitionsResponse, InstanceState, InstanceStatus,
    InstanceSummary, ListInstancesRequest, ListInstancesResponse, ShowResponse, StartRequest, StartWorkflowRequest,
    StartWorkflowResponse, ops,
};
use serde_json::{Value, json};

use super::error::OrchestratorError;
use super::plan;
use super::store::Created;
use super::{Shared, now_ms};
use crate::runtime::{Propagation, Service, ServiceConfig, ServiceError};

/// The longest idempotency key accepted.
const MAX_KEY_CHARS: usize = 256;

/// The orchestrator's own service.
pub(crate) fn service(shared: &Arc<Shared>) -> Result<Service, OrchestratorError> {
    let contract = contracts::orchestrator_api::contract()
        .map_err(|error| OrchestratorError::Setup(format!("its contract does not build: {error}")))?;
    let config = ServiceConfig {
        registration: shared.config.registration.clone(),
        queue_group: Some("soa-orchestrator".to_owned()),
        ..ServiceConfig::default()
    };
    let shared = || Arc::clone(shared);
    Service::builder(contract)
        .config(config)
        .handle::<ops::Load, _, _>({
            let shared = shared();
            move |_, request| {
                let shared = Arc::clone(&shared);
                async move { Ok(super::definitions::load(&shared, &request.definition).await?) }
            }
        })
        .handle::<ops::Definitions, _, _>({
            let shared = shared();
            move |_, _| {
                let shared = Arc::clone(&shared);
                async move { Ok(definitions(&shared)) }
            }
        })
        .handle::<ops::Start, _, _>({
            let shared = shared();
            move |context, request: StartRequest| {
                let shared = Arc::clone(&shared);
                async move {
                    let loaded = shared.resolve(&request.workflow).ok_or_else(|| {
                        ServiceError::not_found(format!(
                            "no workflow {:?} is loaded; load it with `soa workflow load FILE`",
                            request.workflow
                        ))
                    })?;
                    let start = StartWorkflowRequest {
                        input: request.input,
                        idempotency_key: request.idempotency_key,
                        correlation_id: request.correlation_id,
                    };
                    Ok(start_checked(&shared, &loaded.id, start, context.propagation(), true).await?)
                }
            }
        })
        .handle::<ops::Show, _, _>({
            let shared = shared();
            move |_, request| {
                let shared = Arc::clone(&shared);
                async move {
                    let (instance, _) = shared.stores.instance(&request.instance).await?.ok_or_else(|| {
                        ServiceError::not_found(format!(
                            "no instance {:?}; `soa workflow list` shows them",
                            request.instance
                        ))
                    })?;
                    let current = instance.current_steps();
                    Ok(ShowResponse { instance, current })
                }
            }
        })
        .handle::<ops::List, _, _>({
            let shared = shared();
            move |_, request| {
                let shared = Arc::clone(&shared);
                async move { Ok(list(&shared, &request).await?) }
            }
        })
        .handle::<ops::Cancel, _, _>({
            let shared = shared();
            move |_, request| {
                let shared = Arc::clone(&shared);
                async move { Ok(cancel(&shared, &request).await?) }
            }
        })
        .build()
        .map_err(|error| OrchestratorError::Setup(format!("its service does not build: {error}")))
}

fn definitions(shared: &Shared) -> DefinitionsResponse {
    let mut definitions: Vec<DefinitionSummary> = shared
        .definitions
        .iter()
        .map(|entry| {
            let loaded = entry.value();
            DefinitionSummary {
                workflow: loaded.id.clone(),
                description: loaded.definition.description.clone(),
                digest: loaded.digest.clone(),
                steps: loaded.definition.all_steps().len(),
                start_subject: loaded.start_subject.clone(),
                loaded_at_ms: loaded.loaded_at_ms,
            }
        })
        .collect();
    definitions.sort_by(|a, b| a.workflow.cmp(&b.workflow));
    DefinitionsResponse { definitions }
}

/// Starts an instance of `workflow` (`name@version`, loaded) from a request
/// that already matched the workflow's `start` schema.
pub(crate) async fn start(
    shared: &Shared,
    workflow: &str,
    request: StartWorkflowRequest,
    propagation: &Propagation,
) -> Result<StartWorkflowResponse, OrchestratorError> {
    start_checked(shared, workflow, request, propagation, false).await
}

/// Starts an instance; `validate` checks the request against the workflow's
/// start schema first (for paths that did not come through its contract).
pub(crate) async fn start_checked(
    shared: &Shared,
    workflow: &str,
    request: StartWorkflowRequest,
    propagation: &Propagation,
    validate: bool,
) -> Result<StartWorkflowResponse, OrchestratorError> {
    let loaded = shared
        .definition(workflow)
        .ok_or_else(|| OrchestratorError::NotFound(format!("no workflow {workflow:?} is loaded")))?;
    if validate {
        let value = serde_json::to_value(&request)
            .map_err(|error| OrchestratorError::BadRequest(format!("the start request does not encode: {error}")))?;
        if let Err(failure) = loaded.start_validator.validate(&value) {
            let body = contracts::ErrorBody::from(failure);
            return Err(OrchestratorError::InvalidInput {
                workflow: workflow.to_owned(),
                details: body.details,
            });
        }
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.chars().count() > MAX_KEY_CHARS)
    {
        return Err(OrchestratorError::BadRequest(format!(
            "an idempotency key has 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    let name = loaded.definition.name.as_str();
    let id = match &request.idempotency_key {
        // The same key always names the same instance, so a repeated start finds it.
        Some(key) => {
            let digest = contracts::canonical::digest(&Value::String(key.clone()));
            let hex = digest.trim_start_matches("sha256:");
            format!("{name}-k{}", hex.get(..32).unwrap_or(hex))
        }
        None => format!("{name}-{}", nuid::next()),
    };
    let now = now_ms();
    let correlation_id = request
        .correlation_id
        .clone()
        .or_else(|| propagation.correlation_id.as_ref().map(|id| id.as_str().to_owned()))
        .unwrap_or_else(|| id.clone());
    let mut state = InstanceState {
        id: id.clone(),
        workflow: loaded.id.clone(),
        status: InstanceStatus::Running,
        input: request.input,
        correlation_id: Some(correlation_id),
        idempotency_key: request.idempotency_key,
        traceparent: Some(propagation.trace.traceparent()),
        created_at_ms: now,
        updated_at_ms: now,
        steps: BTreeMap::new(),
        completed: Vec::new(),
        choices: BTreeMap::new(),
        compensation: None,
        cancel_requested: None,
        output: None,
        reason: None,
        history: Vec::new(),
    };
    plan::push(&mut state, now, "started", None, None, Some(loaded.id.clone()));
    // No step starts here: the first drive starts them, so the time an
    // instance waits in the work queue (a backlog) does not eat into its
    // first attempt's timeout. That drive commits the start beside the call.
    let (created, status) = match shared.stores.create_instance(&state).await? {
        Created::New => (true, state.status),
        Created::Exists(existing) => (false, existing.status),
    };
    if !status.is_final() {
        // Queued again for a repeated start too: the first may have stopped
        // between storing the instance and queueing it. Repeats within the
        // stream's window are dropped.
        shared.stores.enqueue(&id, &format!("{id}/start")).await?;
    }
    Ok(StartWorkflowResponse {
        instance: id,
        workflow: loaded.id.clone(),
        created,
        status,
    })
}

/// Instances by workflow and status, newest first.
async fn list(shared: &Shared, request: &ListInstancesRequest) -> Result<ListInstancesResponse, OrchestratorError> {
    let limit = request.limit.unwrap_or(100).clamp(1, 10_000) as usize;
    let mut matching: Vec<InstanceState> = shared
        .stores
        .all_instances()
        .await?
        .into_iter()
        .filter(|instance| match &request.workflow {
            None => true,
            Some(workflow) if workflow.contains('@') => &instance.workflow == workflow,
            Some(name) => instance.workflow.split_once('@').map(|(n, _)| n) == Some(name.as_str()),
        })
        .collect();
    let mut by_status = BTreeMap::new();
    for instance in &matching {
        *by_status.entry(instance.status.as_str().to_owned()).or_insert(0) += 1;
    }
    if let Some(status) = request.status {
        matching.retain(|instance| instance.status == status);
    }
    let total = matching.len();
    matching.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then_with(|| a.id.cmp(&b.id)));
    let instances = matching
        .into_iter()
        .take(limit)
        .map(|instance| InstanceSummary {
            current: instance.current_steps(),
            instance: instance.id,
            workflow: instance.workflow,
            status: instance.status,
            created_at_ms: instance.created_at_ms,
            updated_at_ms: instance.updated_at_ms,
            correlation_id: instance.correlation_id,
        })
        .collect();
    Ok(ListInstancesResponse {
        instances,
        total,
        by_status,
    })
}

/// Records a cancel (compare-and-set) and queues the instance, whose driver
/// then compensates its completed steps.
async fn cancel(shared: &Shared, request: &CancelRequest) -> Result<CancelResponse, OrchestratorError> {
    let reason = request
        .reason
        .clone()
        .unwrap_or_else(|| "cancelled on request".to_owned());
    loop {
        let (mut state, revision) = shared.stores.instance(&request.instance).await?.ok_or_else(|| {
            OrchestratorError::NotFound(format!(
                "no instance {:?}; `soa workflow list` shows them",
                request.instance
            ))
        })?;
        if state.status.is_final() || state.cancel_requested.is_some() || state.status == InstanceStatus::Compensating {
            return Ok(CancelResponse {
                instance: state.id,
                status: state.status,
                accepted: false,
            });
        }
        let now = now_ms();
        state.cancel_requested = Some(reason.clone());
        state.updated_at_ms = now;
        plan::push(&mut state, now, "cancel-requested", None, None, Some(reason.clone()));
        if let Some(committed) = shared.stores.update_instance(&state, revision).await? {
            shared
                .stores
                .enqueue(&state.id, &format!("{}/cancel/{committed}", state.id))
                .await?;
            return Ok(CancelResponse {
                instance: state.id,
                status: state.status,
                accepted: true,
            });
        }
    }
}

/// A bad start message's reason, as the dead-letter header carries it.
pub(crate) fn start_failure(error: &OrchestratorError) -> String {
    match error {
        OrchestratorError::InvalidInput { details, .. } => format!(
            "VALIDATION_FAILED: {}",
            details
                .iter()
                .map(ErrorDetail::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.to_string(),
    }
}

/// The JSON of a start message's payload, or why it is not one.
pub(crate) fn decode_start(payload: &[u8]) -> Result<StartWorkflowRequest, String> {
    serde_json::from_slice(payload).map_err(|error| {
        format!(
            "VALIDATION_FAILED: a start message carries {}; got: {error}",
            json!({"input": {}, "idempotency_key": "optional", "correlation_id": "optional"})
        )
    })
}
