//! `soa workflow start WORKFLOW`: start an instance through the
//! orchestrator's `start` verb and, with `--wait`, poll `show` until the
//! instance ends.
//!
//! Without `--wait` the exit code says whether the start was accepted; with
//! it, whether the instance completed (0) or was compensated, cancelled or
//! failed, or did not end in time (1).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use contracts::ErrorCode;
use contracts::orchestrator_api::{
    InstanceState, InstanceStatus, ShowRequest, StartRequest, StartWorkflowResponse, ops,
};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::{OrchestratorCallError, OrchestratorClient};
use super::{Exit, NatsOptions, StartArgs, UsageError, parse_workflow_ref, took};
use crate::cli::registry_client::{close, write_json};

/// The first pause between two polls of a waited-for instance.
const FIRST_POLL: Duration = Duration::from_millis(50);

/// The longest pause between two polls.
const MAX_POLL: Duration = Duration::from_millis(500);

/// What `start --json` prints.
#[derive(Debug, Serialize)]
struct StartReport {
    /// The instance id.
    instance: String,
    /// The definition it runs, `name@version`.
    workflow: String,
    /// False when the idempotency key had started it before.
    created: bool,
    /// Its status: at the start, or at the end of the wait.
    status: InstanceStatus,
    /// The output, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    /// Why it ended other than completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// How waiting for the instance ended.
enum Waited {
    /// It ended.
    Ended(Box<InstanceState>),
    /// It had not ended when the time was up; its last known state.
    TimedOut(Box<InstanceState>),
    /// Ctrl-C: the instance carries on without us.
    Interrupted,
}

/// Runs `soa workflow start`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &StartArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let workflow = parse_workflow_ref(&args.workflow)?;
    let input = read_input(args)?;
    if args.key.as_deref().is_some_and(str::is_empty) {
        return Err(UsageError("--key is empty; give an idempotency key or leave it out".to_owned()).into());
    }
    let request = StartRequest {
        workflow,
        input,
        idempotency_key: args.key.clone(),
        correlation_id: args.correlation_id.clone(),
    };
    let (orchestrator, client) = OrchestratorClient::connect(nats, "soa-workflow-start").await?;
    let result = start_and_wait(&orchestrator, &request, args, out, err, &shutdown).await;
    close(client).await;
    result
}

async fn start_and_wait(
    orchestrator: &OrchestratorClient,
    request: &StartRequest,
    args: &StartArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<Exit> {
    let started = tokio::select! {
        started = orchestrator.try_call::<ops::Start>(request) => started,
        () = shutdown.cancelled() => return Err(anyhow::anyhow!(
            "interrupted before the orchestrator answered; the instance may have started (`soa workflow list` shows it)"
        )),
    };
    let started = match started {
        Ok(started) => started,
        Err(OrchestratorCallError::Refused(body)) if body.code == ErrorCode::ValidationFailed => {
            writeln!(err, "error: the orchestrator refused the start: {}", body.message)?;
            for detail in &body.details {
                writeln!(err, "  {detail}")?;
            }
            return Ok(Exit::Failure);
        }
        Err(error) => return Err(error.into_anyhow()),
    };
    let Some(timeout) = args.wait else {
        if args.json {
            write_json(out, &report(&started, None))?;
        } else {
            write_started(out, &started, request.idempotency_key.as_deref())?;
        }
        return Ok(Exit::Success);
    };
    if !args.json {
        write_started(out, &started, request.idempotency_key.as_deref())?;
        out.flush()?;
    }
    match wait_for_end(orchestrator, &started.instance, timeout, shutdown).await? {
        Waited::Ended(state) => {
            if args.json {
                write_json(out, &report(&started, Some(&state)))?;
            } else {
                write_ended(out, &state)?;
            }
            Ok(if state.status == InstanceStatus::Completed {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
        Waited::TimedOut(state) => {
            if args.json {
                write_json(out, &report(&started, Some(&state)))?;
            }
            Err(anyhow::anyhow!(
                "{} did not end within {}; it is {} and carries on (`soa workflow show {}` follows it)",
                state.id,
                took(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
                state.status,
                state.id
            ))
        }
        Waited::Interrupted => Err(anyhow::anyhow!(
            "stopped waiting; {} carries on (`soa workflow show {}` follows it)",
            started.instance,
            started.instance
        )),
    }
}

/// The input: `--input`, `--input-file` (or `-`), or `{}`.
fn read_input(args: &StartArgs) -> Result<Value, UsageError> {
    let (text, origin) = match (&args.input, &args.input_file) {
        (Some(text), _) => (text.clone(), "--input".to_owned()),
        (None, Some(path)) => (read_input_file(path)?, path.display().to_string()),
        (None, None) => return Ok(Value::Object(serde_json::Map::new())),
    };
    serde_json::from_str(&text).map_err(|error| {
        UsageError(format!(
            "{origin} is not JSON: {error}; give the workflow's input as a JSON object, such as '{{\"order\": \"o-1\"}}'"
        ))
    })
}

fn read_input_file(path: &Path) -> Result<String, UsageError> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| UsageError(format!("cannot read the input from standard input: {error}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .map_err(|error| UsageError(format!("cannot read the input file {}: {error}", path.display())))
}

/// Polls `show` until the instance ends, `timeout` passes, or Ctrl-C.
async fn wait_for_end(
    orchestrator: &OrchestratorClient,
    instance: &str,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<Waited> {
    let deadline = tokio::time::Instant::now() + timeout;
    let request = ShowRequest {
        instance: instance.to_owned(),
    };
    let mut pause = FIRST_POLL;
    loop {
        let shown = tokio::select! {
            shown = orchestrator.call::<ops::Show>(&request) => shown?,
            () = shutdown.cancelled() => return Ok(Waited::Interrupted),
        };
        if shown.instance.status.is_final() {
            return Ok(Waited::Ended(Box::new(shown.instance)));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Waited::TimedOut(Box::new(shown.instance)));
        }
        tokio::select! {
            () = tokio::time::sleep(pause.min(deadline - now)) => {}
            () = shutdown.cancelled() => return Ok(Waited::Interrupted),
        }
        pause = (pause * 2).min(MAX_POLL);
    }
}

fn report(started: &StartWorkflowResponse, state: Option<&InstanceState>) -> StartReport {
    StartReport {
        instance: started.instance.clone(),
        workflow: started.workflow.clone(),
        created: started.created,
        status: state.map_or(started.status, |state| state.status),
        output: state.and_then(|state| state.output.clone()),
        reason: state.and_then(|state| state.reason.clone()),
    }
}

/// `started <id> (<workflow>)`, or that the key had started it before.
fn write_started(out: &mut dyn Write, started: &StartWorkflowResponse, key: Option<&str>) -> std::io::Result<()> {
    if started.created {
        writeln!(out, "started {} ({})", started.instance, started.workflow)
    } else {
        writeln!(
            out,
            "already started {} ({}, {}): the key {:?} started it before; nothing new was started",
            started.instance,
            started.workflow,
            started.status,
            key.unwrap_or_default()
        )
    }
}

/// How the instance ended, with its output or reason.
fn write_ended(out: &mut dyn Write, state: &InstanceState) -> anyhow::Result<()> {
    let duration = took(state.updated_at_ms.saturating_sub(state.created_at_ms));
    writeln!(out, "{} {} after {duration}", state.id, state.status)?;
    if let Some(output) = &state.output {
        writeln!(out, "output: {}", serde_json::to_string_pretty(output)?)?;
    }
    if let Some(reason) = &state.reason {
        writeln!(out, "reason: {reason}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn args(input: Option<&str>) -> StartArgs {
        StartArgs {
            workflow: "w".to_owned(),
            input: input.map(str::to_owned),
            input_file: None,
            key: None,
            correlation_id: None,
            wait: None,
            json: false,
        }
    }

    #[test]
    fn the_input_is_json_or_an_empty_object() {
        assert_eq!(read_input(&args(None)).unwrap(), json!({}));
        assert_eq!(
            read_input(&args(Some(r#"{"order": "o-1"}"#))).unwrap(),
            json!({"order": "o-1"})
        );
        let error = read_input(&args(Some("{order: 1}"))).unwrap_err();
        assert!(error.0.starts_with("--input is not JSON: "), "{error}");
    }

    #[test]
    fn the_end_shows_the_output_or_the_reason() {
        let mut state = InstanceState {
            id: "w-1".to_owned(),
            workflow: "w@1.0.0".to_owned(),
            status: InstanceStatus::Completed,
            input: json!({}),
            correlation_id: None,
            idempotency_key: None,
            traceparent: None,
            created_at_ms: 1_000,
            updated_at_ms: 1_450,
            steps: BTreeMap::new(),
            completed: Vec::new(),
            choices: BTreeMap::new(),
            compensation: None,
            cancel_requested: None,
            output: Some(json!({"s1": {"effect": 1}})),
            reason: None,
            history: Vec::new(),
        };
        let mut out = Vec::new();
        write_ended(&mut out, &state).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "w-1 completed after 450 ms\noutput: {\n  \"s1\": {\n    \"effect\": 1\n  }\n}\n"
        );
        state.status = InstanceStatus::Compensated;
        state.output = None;
        state.reason = Some("step s2 failed: REFUSED".to_owned());
        let mut out = Vec::new();
        write_ended(&mut out, &state).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "w-1 compensated after 450 ms\nreason: step s2 failed: REFUSED\n"
        );
    }
}
