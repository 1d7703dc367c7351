//! The planner: given a definition and an instance's state, what happens
//! next. Pure functions of (definition, state, now), so every replica and
//! every restart reaches the same decision from the same committed state.
//!
//! The engine loops: [`plan`] (which may record bookkeeping such as a choice
//! made or an attempt started), commit, run what it asked for, [`apply_call`]
//! or [`apply_compensation`] with the outcome, and plan again.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::Duration;

use contracts::orchestrator_api::{
    CompensationState, HistoryEvent, InstanceState, InstanceStatus, StepState, StepStatus,
};
use contracts::workflow::{CallStep, Scope, Step, StepKind, WorkflowDefinition, evaluate_expression};
use contracts::{ErrorBody, ErrorCode};
use serde_json::Value;

/// What the engine must do next for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Call these steps now (several when parallel branches are runnable).
    Call(Vec<String>),
    /// Run the compensation of this completed step now.
    Compensate(String),
    /// Nothing to do before this time (ms since the epoch): a retry waits.
    Wait(u64),
    /// The instance just reached a final status.
    Finished,
    /// The instance had already ended.
    Idle,
}

/// How a list of steps stands.
enum Progress {
    Done,
    Runnable(Vec<String>),
    Waiting(u64),
    Failed(String),
}

/// Decides what happens next, recording in `state` what deciding settles
/// (attempts started or timed out, choices taken, compensation begun, the
/// final status). Returns the decision and whether `state` changed.
pub(crate) fn plan(definition: &WorkflowDefinition, state: &mut InstanceState, now: u64) -> (Next, bool) {
    if state.status.is_final() {
        return (Next::Idle, false);
    }
    let mut changed = false;
    if state.status == InstanceStatus::Running {
        if let Some(reason) = state.cancel_requested.clone() {
            // A step whose call may be under way (here or on a replica that
            // stopped) is settled first, called again with the same key, so
            // an effect it had is known and undone too.
            let in_flight: Vec<String> = state
                .steps
                .iter()
                .filter(|(_, step)| step.status == StepStatus::Running && step.retry_at_ms.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            if !in_flight.is_empty() {
                return (Next::Call(in_flight), changed);
            }
            // Steps waiting to retry had no effect: they are given up.
            let waiting: Vec<String> = state
                .steps
                .iter()
                .filter(|(_, step)| step.status == StepStatus::Running)
                .map(|(id, _)| id.clone())
                .collect();
            for id in waiting {
                if let Some(step) = state.steps.get_mut(&id) {
                    step.status = StepStatus::Failed;
                    step.retry_at_ms = None;
                }
                push(
                    state,
                    now,
                    "step-abandoned",
                    Some(&id),
                    None,
                    Some("cancelled while waiting to retry".to_owned()),
                );
            }
            begin_compensation(definition, state, format!("cancelled: {reason}"), now);
            changed = true;
        } else {
            match walk(definition, &definition.steps, state, now, &mut changed) {
                Progress::Done => {
                    finish_completed(definition, state, now);
                    return (Next::Finished, true);
                }
                Progress::Runnable(steps) => return (Next::Call(steps), changed),
                Progress::Waiting(at) => return (Next::Wait(at), changed),
                Progress::Failed(step) => {
                    let error = state
                        .steps
                        .get(&step)
                        .and_then(|s| s.error.as_ref())
                        .map_or_else(|| "no error recorded".to_owned(), describe);
                    begin_compensation(definition, state, format!("step {step} failed: {error}"), now);
                    changed = true;
                }
            }
        }
    }
    // Compensating.
    let Some(compensation) = state.compensation.clone() else {
        // Compensating without a record cannot happen; end it rather than loop.
        end(
            state,
            InstanceStatus::Failed,
            Some("compensating without a record".to_owned()),
            now,
        );
        return (Next::Finished, true);
    };
    let Some(step) = compensation.remaining.first().cloned() else {
        let status = if state.cancel_requested.is_some() {
            InstanceStatus::Cancelled
        } else {
            InstanceStatus::Compensated
        };
        let reason = Some(compensation.reason);
        end(state, status, reason, now);
        return (Next::Finished, true);
    };
    let Some((_, timeout, _)) = compensation_of(definition, &step) else {
        // Only steps with a compensation are queued; a definition cannot change.
        if let Some(record) = state.compensation.as_mut() {
            record.remaining.remove(0);
        }
        return plan_again(definition, state, now);
    };
    if let Some(at) = compensation.retry_at_ms {
        if now < at {
            return (Next::Wait(at), changed);
        }
        if let Some(record) = state.compensation.as_mut() {
            record.retry_at_ms = None;
            record.started_at_ms = now;
            record.deadline_ms = now.saturating_add(millis(timeout));
        }
        push(
            state,
            now,
            "compensation-started",
            Some(&step),
            Some(compensation.attempt),
            None,
        );
        return (Next::Compensate(step), true);
    }
    if now >= compensation.deadline_ms {
        // The attempt was under way when the orchestrator stopped and its time is up.
        let body = ErrorBody::new(ErrorCode::Timeout, "the compensation did not finish within its timeout");
        let attempt = compensation.attempt;
        apply_compensation(definition, state, &step, attempt, Err(body), now);
        return plan_again(definition, state, now);
    }
    (Next::Compensate(step), changed)
}

fn plan_again(definition: &WorkflowDefinition, state: &mut InstanceState, now: u64) -> (Next, bool) {
    let (next, _) = plan(definition, state, now);
    (next, true)
}

/// Walks a list of steps in order and reports how it stands.
fn walk(
    definition: &WorkflowDefinition,
    steps: &[Step],
    state: &mut InstanceState,
    now: u64,
    changed: &mut bool,
) -> Progress {
    for step in steps {
        match &step.kind {
            StepKind::Call(call) => match call_progress(definition, &step.id, call, state, now, changed) {
                Progress::Done => {}
                other => return other,
            },
            StepKind::Choice(choice) => {
                let taken = match state.choices.get(&step.id) {
                    Some(taken) => taken.clone(),
                    None => {
                        let outputs = outputs(state);
                        let scope = Scope {
                            input: &state.input,
                            steps: &outputs,
                            instance: &state.id,
                        };
                        let value = evaluate_expression(&choice.choice.on, &scope).unwrap_or(Value::Null);
                        let taken = choice
                            .choice
                            .cases
                            .iter()
                            .position(|case| case.equals == value)
                            .map_or_else(|| "default".to_owned(), |index| format!("case {index}"));
                        state.choices.insert(step.id.clone(), taken.clone());
                        push(
                            state,
                            now,
                            "choice",
                            Some(&step.id),
                            None,
                            Some(format!("{} = {value} → {taken}", choice.choice.on)),
                        );
                        *changed = true;
                        taken
                    }
                };
                let branch = match taken.strip_prefix("case ").and_then(|n| n.parse::<usize>().ok()) {
                    Some(index) => choice.choice.cases.get(index).map_or(&[][..], |case| &case.steps),
                    None => &choice.choice.default,
                };
                match walk(definition, branch, state, now, changed) {
                    Progress::Done => {}
                    other => return other,
                }
            }
            StepKind::Parallel(parallel) => {
                let mut runnable = Vec::new();
                let mut waiting: Option<u64> = None;
                for branch in parallel.parallel.values() {
                    match walk(definition, branch, state, now, changed) {
                        Progress::Done => {}
                        Progress::Failed(step) => return Progress::Failed(step),
                        Progress::Runnable(steps) => runnable.extend(steps),
                        Progress::Waiting(at) => waiting = Some(waiting.map_or(at, |w| w.min(at))),
                    }
                }
                if !runnable.is_empty() {
                    return Progress::Runnable(runnable);
                }
                if let Some(at) = waiting {
                    return Progress::Waiting(at);
                }
            }
        }
    }
    Progress::Done
}

fn call_progress(
    definition: &WorkflowDefinition,
    id: &str,
    call: &CallStep,
    state: &mut InstanceState,
    now: u64,
    changed: &mut bool,
) -> Progress {
    let timeout = millis(call.timeout.0);
    let Some(step) = state.steps.get_mut(id) else {
        state.steps.insert(
            id.to_owned(),
            StepState {
                status: StepStatus::Running,
                attempt: 1,
                started_at_ms: now,
                deadline_ms: now.saturating_add(timeout),
                retry_at_ms: None,
                output: None,
                error: None,
            },
        );
        push(
            state,
            now,
            "step-started",
            Some(id),
            Some(1),
            Some(call.call.to_string()),
        );
        *changed = true;
        return Progress::Runnable(vec![id.to_owned()]);
    };
    match step.status {
        StepStatus::Succeeded | StepStatus::Compensated => Progress::Done,
        StepStatus::Failed => Progress::Failed(id.to_owned()),
        StepStatus::Running => {
            if let Some(at) = step.retry_at_ms {
                if now < at {
                    return Progress::Waiting(at);
                }
                step.retry_at_ms = None;
                step.started_at_ms = now;
                step.deadline_ms = now.saturating_add(timeout);
                let attempt = step.attempt;
                push(
                    state,
                    now,
                    "step-started",
                    Some(id),
                    Some(attempt),
                    Some(call.call.to_string()),
                );
                *changed = true;
                return Progress::Runnable(vec![id.to_owned()]);
            }
            if now >= step.deadline_ms {
                // Under way when the orchestrator stopped, and out of time:
                // the timeout fires now, as it would have then.
                let attempt = step.attempt;
                let body = ErrorBody::new(
                    ErrorCode::Timeout,
                    format!("{} did not answer within {}", call.call, call.timeout),
                );
                apply_call(definition, state, id, attempt, Err(body), now);
                *changed = true;
                return call_progress(definition, id, call, state, now, changed);
            }
            Progress::Runnable(vec![id.to_owned()])
        }
    }
}

/// Records the outcome of attempt `attempt` of call step `id`. A stale
/// outcome (the step moved on: another replica recorded it first) changes
/// nothing. Returns whether the state changed.
pub(crate) fn apply_call(
    definition: &WorkflowDefinition,
    state: &mut InstanceState,
    id: &str,
    attempt: u32,
    outcome: Result<Value, ErrorBody>,
    now: u64,
) -> bool {
    let Some(call) = definition.call_step(id) else {
        return false;
    };
    let Some(step) = state.steps.get_mut(id) else {
        return false;
    };
    if step.status != StepStatus::Running || step.attempt != attempt || step.retry_at_ms.is_some() {
        return false;
    }
    match outcome {
        Ok(output) => {
            step.status = StepStatus::Succeeded;
            step.output = Some(output);
            step.error = None;
            state.completed.push(id.to_owned());
            push(state, now, "step-succeeded", Some(id), Some(attempt), None);
        }
        Err(body) => {
            let detail = describe(&body);
            if call.retry.retries(body.code.as_str()) && attempt < call.retry.attempts {
                let delay = call.retry.delay(attempt + 1, unit(&state.id, id, attempt));
                step.attempt = attempt + 1;
                step.retry_at_ms = Some(now.saturating_add(millis(delay)));
                step.error = Some(body);
                push(
                    state,
                    now,
                    "step-retrying",
                    Some(id),
                    Some(attempt),
                    Some(format!("{detail}; attempt {} in {delay:?}", attempt + 1)),
                );
            } else {
                step.status = StepStatus::Failed;
                step.error = Some(body);
                push(state, now, "step-failed", Some(id), Some(attempt), Some(detail));
            }
        }
    }
    true
}

/// Records the outcome of attempt `attempt` of the compensation of step
/// `id`; stale outcomes change nothing. Returns whether the state changed.
pub(crate) fn apply_compensation(
    definition: &WorkflowDefinition,
    state: &mut InstanceState,
    id: &str,
    attempt: u32,
    outcome: Result<Value, ErrorBody>,
    now: u64,
) -> bool {
    let Some((_, _, policy)) = compensation_of(definition, id) else {
        return false;
    };
    let Some(record) = state.compensation.as_mut() else {
        return false;
    };
    if record.remaining.first().map(String::as_str) != Some(id)
        || record.attempt != attempt
        || record.retry_at_ms.is_some()
    {
        return false;
    }
    match outcome {
        Ok(_) => {
            record.remaining.remove(0);
            record.attempt = 1;
            record.started_at_ms = now;
            record.deadline_ms = now.saturating_add(next_compensation_timeout(definition, &record.remaining));
            record.error = None;
            if let Some(step) = state.steps.get_mut(id) {
                step.status = StepStatus::Compensated;
            }
            push(state, now, "compensated", Some(id), Some(attempt), None);
        }
        Err(body) => {
            let detail = describe(&body);
            if policy.retries(body.code.as_str()) && attempt < policy.attempts {
                let delay = policy.delay(attempt + 1, unit(&state.id, id, attempt + 1000));
                record.attempt = attempt + 1;
                record.retry_at_ms = Some(now.saturating_add(millis(delay)));
                record.error = Some(body);
                push(
                    state,
                    now,
                    "compensation-retrying",
                    Some(id),
                    Some(attempt),
                    Some(format!("{detail}; attempt {} in {delay:?}", attempt + 1)),
                );
            } else {
                record.error = Some(body);
                let reason = format!("{}; then the compensation of step {id} failed: {detail}", record.reason);
                push(state, now, "compensation-failed", Some(id), Some(attempt), Some(detail));
                end(state, InstanceStatus::Failed, Some(reason), now);
            }
        }
    }
    true
}

/// The operation, timeout and retry policy that undo step `id`.
pub(crate) fn compensation_of(
    definition: &WorkflowDefinition,
    id: &str,
) -> Option<(contracts::ContractRef, Duration, contracts::workflow::RetryPolicy)> {
    let call = definition.call_step(id)?;
    let compensation = call.compensate.as_ref()?;
    Some((
        compensation.call.clone(),
        compensation.timeout.unwrap_or(call.timeout).0,
        compensation.retry.clone().unwrap_or_else(|| call.retry.clone()),
    ))
}

fn next_compensation_timeout(definition: &WorkflowDefinition, remaining: &[String]) -> u64 {
    remaining
        .first()
        .and_then(|next| compensation_of(definition, next))
        .map_or(0, |(_, timeout, _)| millis(timeout))
}

fn begin_compensation(definition: &WorkflowDefinition, state: &mut InstanceState, reason: String, now: u64) {
    // A step that failed on the service's side (a timeout, UNAVAILABLE,
    // INTERNAL) may still have taken effect: its reply was lost, not its
    // request, or the service did part of the work before failing (such as
    // holding stock and then not getting its event stored while JetStream
    // elected a leader). It is undone first, as the newest. Only a refusal of
    // the caller's input (a declared error, VALIDATION_FAILED, ...) promises
    // that nothing happened. Compensations are idempotent, so undoing what
    // never happened is safe. Its compensation must not need its output,
    // which it never had.
    let outputs = outputs(state);
    let scope = Scope {
        input: &state.input,
        steps: &outputs,
        instance: &state.id,
    };
    let uncertain: Vec<String> = state
        .steps
        .iter()
        .filter(|(_, step)| {
            step.status == StepStatus::Failed && step.error.as_ref().is_some_and(|error| !error.code.is_caller_error())
        })
        .filter_map(|(id, _)| {
            let compensation = definition.call_step(id)?.compensate.as_ref()?;
            compensation.input.evaluate(&scope).ok().map(|_| id.clone())
        })
        .collect();
    let remaining: Vec<String> = uncertain
        .iter()
        .chain(state.completed.iter().rev())
        .filter(|step| compensation_of(definition, step).is_some())
        .cloned()
        .collect();
    push(
        state,
        now,
        "compensation-begun",
        None,
        None,
        Some(format!(
            "{reason}; undoing {}",
            if remaining.is_empty() {
                "nothing".to_owned()
            } else {
                remaining.join(", ")
            }
        )),
    );
    state.status = InstanceStatus::Compensating;
    state.compensation = Some(CompensationState {
        reason,
        deadline_ms: now.saturating_add(next_compensation_timeout(definition, &remaining)),
        remaining,
        attempt: 1,
        started_at_ms: now,
        retry_at_ms: None,
        error: None,
    });
}

fn finish_completed(definition: &WorkflowDefinition, state: &mut InstanceState, now: u64) {
    let outputs = outputs(state);
    let (output, reason) = match &definition.output {
        None => (Value::Object(outputs.clone().into_iter().collect()), None),
        Some(mapping) => {
            let scope = Scope {
                input: &state.input,
                steps: &outputs,
                instance: &state.id,
            };
            match mapping.evaluate(&scope) {
                Ok(output) => (output, None),
                Err(error) => (Value::Null, Some(format!("the output mapping failed: {error}"))),
            }
        }
    };
    state.output = Some(output);
    end(state, InstanceStatus::Completed, reason, now);
}

fn end(state: &mut InstanceState, status: InstanceStatus, reason: Option<String>, now: u64) {
    state.status = status;
    state.reason = reason.clone();
    push(state, now, status.as_str(), None, None, reason);
}

/// The outputs of completed steps, by id: what `$steps/<id>` reads.
pub(crate) fn outputs(state: &InstanceState) -> BTreeMap<String, Value> {
    state
        .steps
        .iter()
        .filter_map(|(id, step)| step.output.clone().map(|output| (id.clone(), output)))
        .collect()
}

/// Adds an entry to the instance's history.
pub(crate) fn push(
    state: &mut InstanceState,
    now: u64,
    kind: &str,
    step: Option<&str>,
    attempt: Option<u32>,
    detail: Option<String>,
) {
    state.history.push(HistoryEvent {
        at_ms: now,
        kind: kind.to_owned(),
        step: step.map(str::to_owned),
        attempt,
        detail,
    });
}

fn describe(body: &ErrorBody) -> String {
    format!("{}: {}", body.code, body.message)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A number in `[0, 1)` for jitter, different per instance, step and attempt
/// and per process (the hasher's keys are random).
fn unit(instance: &str, step: &str, attempt: u32) -> f64 {
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let hash = KEYS
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one((instance, step, attempt));
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
