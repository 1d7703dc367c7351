//! `soa workflow definitions`, `list`, `show` and `cancel`: one call each
//! to the orchestrator, printed as tables (or as the answer's JSON).

use std::io::Write;

use contracts::orchestrator_api::{
    CancelRequest, DefinitionSummary, DefinitionsRequest, InstanceState, ListInstancesRequest, ListInstancesResponse,
    ShowRequest, StepState, StepStatus, ops,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::OrchestratorClient;
use super::{
    CancelArgs, DefinitionsArgs, Exit, ListArgs, NatsOptions, ShowArgs, UsageError, ago, now_ms, parse_workflow_ref,
    took,
};
use crate::cli::registry_client::{close, until_cancelled, write_json};
use crate::cli::table::write_table;

/// The longest input or output shown inline by `show` before it is cut.
const MAX_INLINE_CHARS: usize = 400;

/// Runs `soa workflow definitions`.
pub(super) async fn run_definitions(
    nats: &NatsOptions,
    args: &DefinitionsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let (orchestrator, client) = OrchestratorClient::connect(nats, "soa-workflow-definitions").await?;
    let answer = until_cancelled(&shutdown, orchestrator.call::<ops::Definitions>(&DefinitionsRequest {})).await;
    close(client).await;
    let definitions = answer?.definitions;
    if args.json {
        write_json(out, &definitions)?;
    } else if !definitions.is_empty() {
        write_table(
            out,
            0,
            &definition_rows(&definitions, now_ms()),
            &[false, true, false, false, false],
        )?;
    }
    if definitions.is_empty() {
        writeln!(
            err,
            "No workflow is loaded yet; load one with `soa workflow load FILE`."
        )?;
    }
    Ok(Exit::Success)
}

fn definition_rows(definitions: &[DefinitionSummary], now_ms: u64) -> Vec<[String; 5]> {
    let mut rows = vec![["WORKFLOW", "STEPS", "START SUBJECT", "LOADED", "DESCRIPTION"].map(str::to_owned)];
    rows.extend(definitions.iter().map(|definition| {
        [
            definition.workflow.clone(),
            definition.steps.to_string(),
            definition.start_subject.clone(),
            ago(now_ms.saturating_sub(definition.loaded_at_ms)),
            definition.description.clone(),
        ]
    }));
    rows
}

/// Runs `soa workflow list`.
pub(super) async fn run_list(
    nats: &NatsOptions,
    args: &ListArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let request = ListInstancesRequest {
        workflow: args.workflow.as_deref().map(parse_workflow_ref).transpose()?,
        status: args.status,
        limit: args.limit,
    };
    let (orchestrator, client) = OrchestratorClient::connect(nats, "soa-workflow-list").await?;
    let answer = until_cancelled(&shutdown, orchestrator.call::<ops::List>(&request)).await;
    close(client).await;
    let listed = answer?;
    let filtered = request.workflow.is_some() || request.status.is_some();
    if args.json {
        write_json(out, &listed)?;
    } else {
        write_instances(out, &listed, now_ms())?;
    }
    if listed.instances.is_empty() {
        writeln!(
            err,
            "{}",
            if filtered {
                "No instance matches the filters."
            } else {
                "No instance has been started yet; start one with `soa workflow start WORKFLOW`."
            }
        )?;
    }
    // No instance at all is an answer; a filtered listing that is empty found nothing.
    Ok(if listed.instances.is_empty() && filtered {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// The table of instances and the line of counts.
fn write_instances(out: &mut dyn Write, listed: &ListInstancesResponse, now_ms: u64) -> std::io::Result<()> {
    if listed.instances.is_empty() {
        return Ok(());
    }
    let mut rows = vec![["INSTANCE", "WORKFLOW", "STATUS", "CURRENT", "STARTED", "CORRELATION"].map(str::to_owned)];
    rows.extend(listed.instances.iter().map(|instance| {
        [
            instance.instance.clone(),
            instance.workflow.clone(),
            instance.status.to_string(),
            list_or_dash(&instance.current),
            ago(now_ms.saturating_sub(instance.created_at_ms)),
            instance.correlation_id.clone().unwrap_or_else(|| "-".to_owned()),
        ]
    }));
    write_table(out, 0, &rows, &[false; 6])?;
    let counts: Vec<String> = listed
        .by_status
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    writeln!(
        out,
        "\n{} of {} shown; by status: {}",
        listed.instances.len(),
        listed.total,
        list_or_dash(&counts)
    )
}

/// Runs `soa workflow show`.
pub(super) async fn run_show(
    nats: &NatsOptions,
    args: &ShowArgs,
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let request = ShowRequest {
        instance: non_empty(&args.instance, "INSTANCE")?,
    };
    let (orchestrator, client) = OrchestratorClient::connect(nats, "soa-workflow-show").await?;
    let answer = until_cancelled(&shutdown, orchestrator.call::<ops::Show>(&request)).await;
    close(client).await;
    let shown = answer?;
    if args.json {
        write_json(out, &shown)?;
    } else {
        write_instance(out, &shown.instance, &shown.current, now_ms())?;
    }
    Ok(Exit::Success)
}

/// The human view of one instance.
fn write_instance(out: &mut dyn Write, state: &InstanceState, current: &[String], now_ms: u64) -> anyhow::Result<()> {
    writeln!(out, "{}", state.id)?;
    let ended = if state.status.is_final() {
        format!(
            " (ended after {})",
            took(state.updated_at_ms.saturating_sub(state.created_at_ms))
        )
    } else {
        String::new()
    };
    let mut header = vec![
        ["workflow".to_owned(), state.workflow.clone()],
        ["status".to_owned(), state.status.to_string()],
        [
            "started".to_owned(),
            format!("{}{ended}", ago(now_ms.saturating_sub(state.created_at_ms))),
        ],
        ["current".to_owned(), list_or_dash(current)],
        [
            "correlation".to_owned(),
            state.correlation_id.clone().unwrap_or_else(|| "-".to_owned()),
        ],
    ];
    if let Some(key) = &state.idempotency_key {
        header.push(["key".to_owned(), key.clone()]);
    }
    header.push(["input".to_owned(), inline_json(&state.input)]);
    if let Some(reason) = &state.cancel_requested {
        header.push(["cancel".to_owned(), format!("requested: {reason}")]);
    }
    for (choice, case) in &state.choices {
        header.push([format!("choice {choice}"), case.clone()]);
    }
    write_table(out, 2, &header, &[false; 2])?;

    writeln!(out, "\nSteps")?;
    if state.steps.is_empty() {
        writeln!(out, "  (none started)")?;
    } else {
        let mut steps: Vec<(&String, &StepState)> = state.steps.iter().collect();
        steps.sort_by_key(|(id, step)| (step.started_at_ms, *id));
        let mut rows = vec![["STEP", "STATUS", "ATTEMPT", "STARTED", "ERROR"].map(str::to_owned)];
        rows.extend(steps.into_iter().map(|(id, step)| {
            [
                id.clone(),
                step_status(step),
                step.attempt.to_string(),
                offset(step.started_at_ms, state.created_at_ms),
                step.error.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
            ]
        }));
        write_table(out, 2, &rows, &[false, false, true, true, false])?;
    }

    if let Some(compensation) = &state.compensation {
        writeln!(out, "\nCompensation")?;
        let mut rows = vec![
            ["reason".to_owned(), compensation.reason.clone()],
            ["remaining".to_owned(), list_or_dash(&compensation.remaining)],
            ["attempt".to_owned(), compensation.attempt.to_string()],
        ];
        if let Some(error) = &compensation.error {
            rows.push(["last error".to_owned(), error.to_string()]);
        }
        write_table(out, 2, &rows, &[false; 2])?;
    }
    if let Some(output) = &state.output {
        writeln!(out, "\nOutput\n  {}", inline_json(output))?;
    }
    if let Some(reason) = &state.reason {
        writeln!(out, "\nReason\n  {reason}")?;
    }

    writeln!(out, "\nHistory (ms from the start)")?;
    if state.history.is_empty() {
        writeln!(out, "  (empty)")?;
    } else {
        let mut rows = vec![["AT", "EVENT", "STEP", "ATTEMPT", "DETAIL"].map(str::to_owned)];
        rows.extend(state.history.iter().map(|event| {
            [
                offset(event.at_ms, state.created_at_ms),
                event.kind.clone(),
                event.step.clone().unwrap_or_default(),
                event.attempt.map(|attempt| attempt.to_string()).unwrap_or_default(),
                event.detail.clone().unwrap_or_default(),
            ]
        }));
        write_table(out, 2, &rows, &[true, false, false, true, false])?;
    }
    Ok(())
}

/// A step's status, and when it waits to retry.
fn step_status(step: &StepState) -> String {
    let status = match step.status {
        StepStatus::Running if step.retry_at_ms.is_some() => "retrying",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Compensated => "compensated",
    };
    status.to_owned()
}

/// `+123` ms after `start`.
fn offset(at_ms: u64, start_ms: u64) -> String {
    format!("+{}", at_ms.saturating_sub(start_ms))
}

/// A value on one line, cut when long.
fn inline_json(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_INLINE_CHARS {
        return text;
    }
    let mut short: String = text.chars().take(MAX_INLINE_CHARS).collect();
    short.push_str("… (--json shows all of it)");
    short
}

/// Runs `soa workflow cancel`.
pub(super) async fn run_cancel(
    nats: &NatsOptions,
    args: &CancelArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let request = CancelRequest {
        instance: non_empty(&args.instance, "INSTANCE")?,
        reason: args.reason.clone(),
    };
    let (orchestrator, client) = OrchestratorClient::connect(nats, "soa-workflow-cancel").await?;
    let answer = until_cancelled(&shutdown, orchestrator.call::<ops::Cancel>(&request)).await;
    close(client).await;
    let cancelled = answer?;
    if args.json {
        write_json(out, &cancelled)?;
    } else if cancelled.accepted {
        writeln!(
            out,
            "cancel accepted for {} (it was {}); its completed steps are compensated next",
            cancelled.instance, cancelled.status
        )?;
    }
    if cancelled.accepted {
        return Ok(Exit::Success);
    }
    if cancelled.status.is_final() {
        writeln!(
            err,
            "{} already ended ({}); nothing to cancel",
            cancelled.instance, cancelled.status
        )?;
    } else {
        writeln!(
            err,
            "{} is already being cancelled or compensated ({}); nothing more to do",
            cancelled.instance, cancelled.status
        )?;
    }
    Ok(Exit::Failure)
}

fn non_empty(text: &str, what: &str) -> Result<String, UsageError> {
    if text.trim().is_empty() {
        return Err(UsageError(format!(
            "{what} is empty; `soa workflow list` shows the instance ids"
        )));
    }
    Ok(text.to_owned())
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use contracts::orchestrator_api::{HistoryEvent, InstanceStatus, InstanceSummary};
    use contracts::{ErrorBody, ErrorCode};
    use expect_test::expect;
    use serde_json::json;

    use super::*;

    fn event(at_ms: u64, kind: &str, step: Option<&str>, attempt: Option<u32>, detail: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            at_ms,
            kind: kind.to_owned(),
            step: step.map(str::to_owned),
            attempt,
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn an_instance_shows_its_steps_compensation_and_timeline() {
        let step = |status, attempt, started_at_ms, error: Option<ErrorBody>| StepState {
            status,
            attempt,
            started_at_ms,
            deadline_ms: started_at_ms + 2_000,
            retry_at_ms: None,
            output: None,
            error,
        };
        let state = InstanceState {
            id: "pay-1".to_owned(),
            workflow: "pay@1.0.0".to_owned(),
            status: InstanceStatus::Compensated,
            input: json!({"order": "o-1"}),
            correlation_id: Some("o-1".to_owned()),
            idempotency_key: None,
            traceparent: None,
            created_at_ms: 10_000,
            updated_at_ms: 10_420,
            steps: BTreeMap::from([
                ("reserve".to_owned(), step(StepStatus::Compensated, 1, 10_001, None)),
                (
                    "charge".to_owned(),
                    step(
                        StepStatus::Failed,
                        1,
                        10_150,
                        Some(ErrorBody::new(ErrorCode::Declared("REFUSED".to_owned()), "declined")),
                    ),
                ),
            ]),
            completed: vec!["reserve".to_owned()],
            choices: BTreeMap::new(),
            compensation: None,
            cancel_requested: None,
            output: None,
            reason: Some("step charge failed: REFUSED: declined".to_owned()),
            history: vec![
                event(10_000, "started", None, None, Some("pay@1.0.0")),
                event(10_001, "step-started", Some("reserve"), Some(1), None),
                event(10_140, "step-succeeded", Some("reserve"), Some(1), None),
                event(10_150, "step-started", Some("charge"), Some(1), None),
                event(
                    10_300,
                    "step-failed",
                    Some("charge"),
                    Some(1),
                    Some("REFUSED: declined"),
                ),
                event(10_420, "compensated", None, None, None),
            ],
        };
        let mut out = Vec::new();
        write_instance(&mut out, &state, &[], 12_500).unwrap();
        expect![[r#"
            pay-1
              workflow     pay@1.0.0
              status       compensated
              started      2.5 s ago (ended after 420 ms)
              current      -
              correlation  o-1
              input        {"order":"o-1"}

            Steps
              STEP     STATUS       ATTEMPT  STARTED  ERROR
              reserve  compensated        1       +1  -
              charge   failed             1     +150  REFUSED: declined

            Reason
              step charge failed: REFUSED: declined

            History (ms from the start)
                AT  EVENT           STEP     ATTEMPT  DETAIL
                +0  started                           pay@1.0.0
                +1  step-started    reserve        1
              +140  step-succeeded  reserve        1
              +150  step-started    charge         1
              +300  step-failed     charge         1  REFUSED: declined
              +420  compensated
        "#]]
        .assert_eq(&String::from_utf8(out).unwrap());
    }

    #[test]
    fn the_list_ends_with_the_counts() {
        let listed = ListInstancesResponse {
            instances: vec![InstanceSummary {
                instance: "pay-2".to_owned(),
                workflow: "pay@1.0.0".to_owned(),
                status: InstanceStatus::Running,
                current: vec!["charge".to_owned()],
                created_at_ms: 9_000,
                updated_at_ms: 9_500,
                correlation_id: None,
            }],
            total: 3,
            by_status: BTreeMap::from([("completed".to_owned(), 2), ("running".to_owned(), 1)]),
        };
        let mut out = Vec::new();
        write_instances(&mut out, &listed, 10_000).unwrap();
        expect![[r#"
            INSTANCE  WORKFLOW   STATUS   CURRENT  STARTED    CORRELATION
            pay-2     pay@1.0.0  running  charge   1.0 s ago  -

            1 of 3 shown; by status: 2 completed, 1 running
        "#]]
        .assert_eq(&String::from_utf8(out).unwrap());
    }
}
