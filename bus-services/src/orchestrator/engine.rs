//! The engine: drives instances from their committed state.
//!
//! A work item (an instance id on the work stream) is taken by one replica
//! through the shared durable consumer. The replica loops: take the state
//! (the one it last committed, or read),
//! [`plan`], commit what planning settled together with the outcomes of the
//! last round (compare-and-set on the revision; on a conflict it reads again
//! and re-applies them, stale ones change nothing), run the calls the plan
//! asked for, and plan again. The work item is acked only once the instance
//! has ended (committed), or nak'd with a delay while a retry waits, so a
//! killed replica's instances are redelivered after the ack wait and resume
//! from their last commit. Calls carry `instance/step/attempt` as their
//! idempotency key, so a step repeated after a crash does not repeat its effect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use contracts::orchestrator_api::{InstanceState, InstanceStatus, WorkflowFinished};
use contracts::workflow::Scope;
use contracts::{ErrorBody, ErrorCode, ErrorDetail};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::definitions::Loaded;
use super::error::OrchestratorError;
use super::plan::{self, Next};
use super::{Shared, now_ms};
use crate::runtime::{CallOptions, Propagation, TraceContext};
use crate::wire::CorrelationId;

/// What to do with a work item once driving stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Done with it: the instance ended (or is not ours to drive).
    Ack,
    /// Deliver it again after this long.
    Later(Duration),
}

/// The outcome of one call of a round.
enum Outcome {
    Step {
        step: String,
        attempt: u32,
        result: Result<Value, ErrorBody>,
    },
    Compensation {
        step: String,
        attempt: u32,
        result: Result<Value, ErrorBody>,
    },
}

/// Reads the work stream and drives instances until `shutdown`, up to the
/// configured number at once.
pub(crate) async fn work(shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(), OrchestratorError> {
    let max_in_flight = shared.config.max_in_flight.max(1);
    let consumer = shared
        .stores
        .consumer(
            super::store::WORK_STREAM,
            super::store::WORK_CONSUMER,
            shared.config.ack_wait,
            i64::try_from(max_in_flight.saturating_mul(4)).unwrap_or(i64::MAX),
        )
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(max_in_flight.min(256))
        .messages()
        .await
        .map_err(|error| OrchestratorError::jetstream("reading the work stream", error))?;
    // Each item is a task of its own, so drives use every core; the set
    // aborts them all when this future is dropped (a kill).
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            message = messages.next(), if in_flight.len() < max_in_flight => match message {
                Some(Ok(message)) => {
                    in_flight.spawn(handle_work(Arc::clone(&shared), message, shutdown.clone()));
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "The work stream reported an error; it keeps going.");
                }
                None => break,
            },
        }
    }
    // Drives stop at their next commit and hand their items back.
    let finishing = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.config.shutdown_timeout, finishing)
        .await
        .is_err()
    {
        tracing::warn!("Some instances were still mid-call at shutdown; they resume after the ack wait.");
    }
    Ok(())
}

/// Drives one work item, telling the server it is still in progress while
/// calls run, and acks or naks it at the end.
async fn handle_work(shared: Arc<Shared>, message: async_nats::jetstream::Message, stopping: CancellationToken) {
    shared.stats.work_items.fetch_add(1, Ordering::Relaxed);
    let instance = String::from_utf8_lossy(&message.payload).into_owned();
    let span = tracing::info_span!("soa.workflow.drive", soa.instance = %instance);
    let drive = drive(&shared, &instance, &stopping).instrument(span.clone());
    tokio::pin!(drive);
    let mut progress = tokio::time::interval(shared.config.ack_wait / 3);
    progress.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut drive => break result,
            _ = progress.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(parent: &span, error = %error, "Could not extend the work item's ack wait.");
                }
            }
        }
    };
    let disposition = match result {
        Ok(disposition) => disposition,
        Err(error) => {
            tracing::warn!(parent: &span, error = %error, "Driving the instance failed; it will be tried again.");
            Disposition::Later(Duration::from_secs(1))
        }
    };
    let acked = match disposition {
        Disposition::Ack => message.ack().await,
        Disposition::Later(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
    };
    if let Err(error) = acked {
        tracing::warn!(parent: &span, error = %error, "Could not settle the work item; it will be redelivered.");
    }
}

/// Drives one instance as far as it can go now.
pub(crate) async fn drive(
    shared: &Shared,
    id: &str,
    stopping: &CancellationToken,
) -> Result<Disposition, OrchestratorError> {
    // The state this process last committed saves a read; it may be stale
    // (another replica or a cancel wrote since). A round planned from it
    // commits before its calls, so a stale one fails that compare-and-set
    // and is read again, as after any lost one; a round that would commit
    // nothing reads first.
    let remembered = shared.stores.remembered_instance(id);
    let mut fresh = remembered.is_none();
    let found = match remembered {
        Some(remembered) => Some(remembered),
        None => shared.stores.instance(id).await?,
    };
    let Some((mut state, mut revision)) = found else {
        tracing::warn!(
            instance = id,
            "A work item names an instance that is not stored; dropping it."
        );
        return Ok(Disposition::Ack);
    };
    let Some(loaded) = shared.definition(&state.workflow) else {
        // Loaded on another replica a moment ago: this one learns of it from its watch.
        tracing::info!(instance = id, workflow = %state.workflow, "The instance's workflow is not loaded here yet; trying again shortly.");
        return Ok(Disposition::Later(Duration::from_secs(1)));
    };
    let definition = &loaded.definition;
    let mut pending: Vec<Outcome> = Vec::new();
    // When the last round's replies came (or the item arrived): what follows
    // until the next call is the orchestrator's own overhead.
    let mut since_reply = std::time::Instant::now();
    loop {
        let now = now_ms();
        let mut changed = false;
        for outcome in &pending {
            changed |= match outcome {
                Outcome::Step { step, attempt, result } => {
                    plan::apply_call(definition, &mut state, step, *attempt, result.clone(), now)
                }
                Outcome::Compensation { step, attempt, result } => {
                    plan::apply_compensation(definition, &mut state, step, *attempt, result.clone(), now)
                }
            };
        }
        let (next, planned) = plan::plan(definition, &mut state, now);
        let mut dirty = changed || planned;
        if !dirty && !fresh {
            // Nothing to commit would confirm the remembered state: read it.
            (state, revision) = reload(shared, id).await?;
            fresh = true;
            continue;
        }
        if dirty {
            state.updated_at_ms = now;
        }
        let calls_next = matches!(next, Next::Call(_) | Next::Compensate(_));
        if dirty && (!calls_next || stopping.is_cancelled() || !fresh) {
            // Ending, waiting or handing back, or about to call from a
            // remembered state: the state is committed first. A call is
            // never made from a state no commit or read has confirmed, so a
            // stale memory cannot start a step the stored instance never
            // started (one a cancel stopped, say).
            match shared.stores.update_instance(&state, revision).await? {
                Some(committed) => {
                    // Confirmed: the round's calls follow without committing again.
                    revision = committed;
                    dirty = false;
                    pending.clear();
                }
                None => {
                    // Someone else wrote first (a cancel, another replica):
                    // read again; this round's outcomes are applied anew.
                    (state, revision) = reload(shared, id).await?;
                    fresh = true;
                    continue;
                }
            }
        }
        if stopping.is_cancelled() && !matches!(next, Next::Idle | Next::Finished) {
            // Shutting down: hand the item back so another replica goes on now.
            return Ok(Disposition::Later(Duration::ZERO));
        }
        let calls: Vec<_> = match &next {
            Next::Idle | Next::Finished => {
                if next == Next::Finished {
                    shared.stats.finished.fetch_add(1, Ordering::Relaxed);
                }
                if !announce(&loaded, &state).await {
                    // The end is committed but JetStream did not store its
                    // event (a stream without a leader for a moment): the item
                    // comes back, finds the instance ended and announces
                    // again under the same message id. Acking it would leave
                    // whoever waits for the event (the shop's orders) waiting for ever.
                    return Ok(Disposition::Later(ANNOUNCE_RETRY));
                }
                return Ok(Disposition::Ack);
            }
            Next::Wait(at) => return Ok(Disposition::Later(Duration::from_millis(at.saturating_sub(now)))),
            Next::Call(steps) => steps
                .iter()
                .map(|step| call_step(&loaded, &state, step).boxed())
                .collect(),
            Next::Compensate(step) => vec![compensate(&loaded, &state, step).boxed()],
        };
        let before_calls = since_reply.elapsed();
        shared.stats.calls.fetch_add(calls.len() as u64, Ordering::Relaxed);
        // The commit of what led to these calls runs beside them: a call
        // repeated after a crash before the commit carries the same
        // idempotency key, so the callee does it once, and the next round
        // starts only once both are done.
        let commit = async {
            let committed = if dirty {
                shared.stores.update_instance(&state, revision).await
            } else {
                Ok(Some(revision))
            };
            (committed, std::time::Instant::now())
        };
        let replies = async {
            let outcomes = futures::future::join_all(calls).await;
            (outcomes, std::time::Instant::now())
        };
        let ((committed, commit_done), (outcomes, replies_done)) = tokio::join!(commit, replies);
        since_reply = std::time::Instant::now();
        // The overhead of this step: deciding and dispatching, and whatever
        // the commit took beyond the calls.
        shared
            .stats
            .record_overhead(before_calls + commit_done.saturating_duration_since(replies_done));
        match committed? {
            Some(committed) => {
                revision = committed;
                fresh = true;
                pending = outcomes;
            }
            None => {
                // The outcomes that commit carried are applied again to
                // what is stored now, with this round's.
                (state, revision) = reload(shared, id).await?;
                fresh = true;
                pending.extend(outcomes);
            }
        }
    }
}

/// The instance as stored now, after a compare-and-set lost.
async fn reload(shared: &Shared, id: &str) -> Result<(InstanceState, u64), OrchestratorError> {
    shared
        .stores
        .instance(id)
        .await?
        .ok_or_else(|| OrchestratorError::NotFound(format!("instance {id} disappeared while being driven")))
}

/// How soon a work item whose instance ended comes back when its `finished`
/// event could not be stored.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(1);

/// Publishes the workflow's `finished` event; its message id is the
/// instance's, so announcing again (after a crash, or after a failed
/// publish) stores it once. False when JetStream did not store it, and
/// announcing again may succeed.
async fn announce(loaded: &Loaded, state: &InstanceState) -> bool {
    if !state.status.is_final() {
        return true;
    }
    let publisher = match loaded.events().await {
        Ok(publisher) => publisher,
        Err(error) => {
            // Without its event whoever waits for the end (the shop's
            // orders) would wait for ever: the item comes back to try again.
            tracing::warn!(instance = %state.id, error = %error, "The finished event stream could not be made; the end will be announced again.");
            return false;
        }
    };
    let finished = WorkflowFinished {
        instance: state.id.clone(),
        workflow: state.workflow.clone(),
        status: state.status,
        output: if state.status == InstanceStatus::Completed {
            state.output.clone()
        } else {
            None
        },
        reason: state.reason.clone(),
        correlation_id: state.correlation_id.clone(),
    };
    let payload = match serde_json::to_value(&finished) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(error = %error, "Could not encode the finished event.");
            return true;
        }
    };
    let message_id = format!("{}/finished", state.id);
    let publisher = publisher.in_flow(&propagation(state));
    match publisher.publish_json("finished", Some(&message_id), &payload).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(instance = %state.id, error = %error, "Could not publish the finished event; it will be announced again.");
            false
        }
    }
}

/// Runs the current attempt of call step `step`.
async fn call_step(loaded: &Loaded, state: &InstanceState, step: &str) -> Outcome {
    let (attempt, deadline) = state
        .steps
        .get(step)
        .map_or((1, 0), |record| (record.attempt, record.deadline_ms));
    let outcome = |result| Outcome::Step {
        step: step.to_owned(),
        attempt,
        result,
    };
    let Some(call) = loaded.definition.call_step(step) else {
        return outcome(Err(ErrorBody::new(
            ErrorCode::Internal,
            format!("the definition has no call step {step:?}"),
        )));
    };
    let key = format!("{}/{step}/{attempt}", state.id);
    let result = invoke(loaded, state, &call.call, &call.input, deadline, &key, step).await;
    outcome(result)
}

/// Runs the current attempt of the compensation of step `step`.
async fn compensate(loaded: &Loaded, state: &InstanceState, step: &str) -> Outcome {
    let (attempt, deadline) = state
        .compensation
        .as_ref()
        .map_or((1, 0), |record| (record.attempt, record.deadline_ms));
    let outcome = |result| Outcome::Compensation {
        step: step.to_owned(),
        attempt,
        result,
    };
    let Some(compensation) = loaded
        .definition
        .call_step(step)
        .and_then(|call| call.compensate.as_ref())
    else {
        return outcome(Ok(Value::Null));
    };
    let key = format!("{}/{step}/compensate/{attempt}", state.id);
    let result = invoke(
        loaded,
        state,
        &compensation.call,
        &compensation.input,
        deadline,
        &key,
        step,
    )
    .await;
    outcome(result)
}

/// Fills a request from the instance and calls the operation before the
/// attempt's deadline.
async fn invoke(
    loaded: &Loaded,
    state: &InstanceState,
    operation: &contracts::ContractRef,
    input: &contracts::workflow::Mapping,
    deadline_ms: u64,
    key: &str,
    step: &str,
) -> Result<Value, ErrorBody> {
    let outputs = plan::outputs(state);
    let scope = Scope {
        input: &state.input,
        steps: &outputs,
        instance: &state.id,
    };
    let request = input.evaluate(&scope).map_err(|error| ErrorBody {
        code: ErrorCode::ValidationFailed,
        message: format!("the input of step {step} could not be filled: {error}"),
        details: vec![ErrorDetail {
            pointer: error.pointer.clone(),
            schema_path: None,
            message: error.to_string(),
        }],
    })?;
    let left = deadline_ms.saturating_sub(now_ms());
    if left == 0 {
        return Err(ErrorBody::new(
            ErrorCode::Timeout,
            format!("{operation} did not answer in time"),
        ));
    }
    let Some(client) = loaded.clients.get(&(operation.service.clone(), operation.major)) else {
        return Err(ErrorBody::new(
            ErrorCode::Internal,
            format!(
                "no contract of {}@{} was loaded with the workflow",
                operation.service, operation.major
            ),
        ));
    };
    let client = client
        .clone()
        .with_options(CallOptions {
            timeout: Duration::from_millis(left),
            max_attempts: 1,
            ..CallOptions::default()
        })
        .in_flow(&propagation(state))
        .with_idempotency_key(key);
    client
        .call_json(operation.member.as_str(), &request)
        .await
        .map_err(|error| error.body())
}

/// The flow an instance's calls and events belong to.
pub(crate) fn propagation(state: &InstanceState) -> Propagation {
    let trace = state
        .traceparent
        .as_deref()
        .and_then(|parent| TraceContext::parse(parent, None))
        .unwrap_or_else(TraceContext::new_root);
    Propagation {
        correlation_id: state
            .correlation_id
            .as_deref()
            .and_then(|id| CorrelationId::parse(id).ok()),
        trace,
    }
}
