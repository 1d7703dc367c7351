use std::collections::BTreeMap;

use contracts::orchestrator_api::{InstanceState, InstanceStatus, StepStatus};
use contracts::workflow::WorkflowDefinition;
use contracts::{ErrorBody, ErrorCode};
use serde_json::{Value, json};

use super::*;

fn definition(steps: Value) -> WorkflowDefinition {
    let document = json!({
        "workflow": "soabus/workflow/v1",
        "name": "test",
        "version": "1.0.0",
        "description": "planner tests",
        "input": {"type": "object"},
        "steps": steps,
    });
    WorkflowDefinition::from_json_value("test", &document, None).unwrap()
}

fn call(id: &str) -> Value {
    json!({
        "id": id,
        "call": "ledger@1#apply",
        "input": {"step": id, "order": "$input/order"},
        "timeout": "1s",
        "retry": {"attempts": 3, "initial_interval": "100ms", "multiplier": 2, "max_interval": "1s", "jitter": 0},
        "compensate": {"call": "ledger@1#undo", "input": {"step": id, "order": "$input/order", "effect": format!("$steps/{id}/effect")}}
    })
}

fn instance() -> InstanceState {
    InstanceState {
        id: "test-1".to_owned(),
        workflow: "test@1.0.0".to_owned(),
        status: InstanceStatus::Running,
        input: json!({"order": "o-1", "express": true}),
        correlation_id: None,
        idempotency_key: None,
        traceparent: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        steps: BTreeMap::new(),
        completed: Vec::new(),
        choices: BTreeMap::new(),
        compensation: None,
        cancel_requested: None,
        output: None,
        reason: None,
        history: Vec::new(),
    }
}

fn ok(step: &str) -> Result<Value, ErrorBody> {
    Ok(json!({"step": step, "effect": 1}))
}

fn fail(code: ErrorCode) -> Result<Value, ErrorBody> {
    Err(ErrorBody::new(code, "no"))
}

#[test]
fn a_sequence_runs_in_order_and_completes_with_every_output() {
    let definition = definition(json!([call("a"), call("b")]));
    let mut state = instance();
    assert_eq!(plan(&definition, &mut state, 0), (Next::Call(vec!["a".into()]), true));
    assert!(apply_call(&definition, &mut state, "a", 1, ok("a"), 10));
    assert_eq!(plan(&definition, &mut state, 10), (Next::Call(vec!["b".into()]), true));
    // The same outcome again (another replica's) changes nothing.
    assert!(!apply_call(&definition, &mut state, "a", 1, ok("a"), 11));
    assert!(apply_call(&definition, &mut state, "b", 1, ok("b"), 20));
    assert_eq!(plan(&definition, &mut state, 20), (Next::Finished, true));
    assert_eq!(state.status, InstanceStatus::Completed);
    assert_eq!(state.completed, ["a", "b"]);
    assert_eq!(
        state.output,
        Some(json!({"a": {"step": "a", "effect": 1}, "b": {"step": "b", "effect": 1}}))
    );
    assert_eq!(plan(&definition, &mut state, 30), (Next::Idle, false));
}

#[test]
fn a_retryable_error_waits_then_tries_again_with_the_next_attempt() {
    let definition = definition(json!([call("a")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    assert!(apply_call(
        &definition,
        &mut state,
        "a",
        1,
        fail(ErrorCode::Unavailable),
        5
    ));
    assert_eq!(state.steps["a"].attempt, 2);
    assert_eq!(plan(&definition, &mut state, 50), (Next::Wait(105), false));
    assert_eq!(plan(&definition, &mut state, 105), (Next::Call(vec!["a".into()]), true));
    assert!(apply_call(
        &definition,
        &mut state,
        "a",
        2,
        fail(ErrorCode::Timeout),
        110
    ));
    // 100 ms, then 200 ms.
    assert_eq!(plan(&definition, &mut state, 111), (Next::Wait(310), false));
    plan(&definition, &mut state, 310);
    assert!(apply_call(&definition, &mut state, "a", 3, ok("a"), 320));
    assert_eq!(plan(&definition, &mut state, 320).0, Next::Finished);
    assert_eq!(state.status, InstanceStatus::Completed);
}

#[test]
fn a_permanent_failure_compensates_completed_steps_newest_first() {
    let definition = definition(json!([call("a"), call("b"), call("c")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    apply_call(&definition, &mut state, "a", 1, ok("a"), 1);
    plan(&definition, &mut state, 1);
    apply_call(&definition, &mut state, "b", 1, ok("b"), 2);
    plan(&definition, &mut state, 2);
    apply_call(
        &definition,
        &mut state,
        "c",
        1,
        fail(ErrorCode::Declared("REFUSED".into())),
        3,
    );
    assert_eq!(plan(&definition, &mut state, 3), (Next::Compensate("b".into()), true));
    assert_eq!(state.status, InstanceStatus::Compensating);
    assert!(apply_compensation(&definition, &mut state, "b", 1, Ok(json!({})), 4));
    assert_eq!(plan(&definition, &mut state, 4).0, Next::Compensate("a".into()));
    assert!(apply_compensation(&definition, &mut state, "a", 1, Ok(json!({})), 5));
    assert_eq!(plan(&definition, &mut state, 5).0, Next::Finished);
    assert_eq!(state.status, InstanceStatus::Compensated);
    assert_eq!(state.steps["a"].status, StepStatus::Compensated);
    assert!(
        state.reason.as_deref().unwrap_or("").contains("step c failed"),
        "{:?}",
        state.reason
    );
}

#[test]
fn a_compensation_that_fails_for_good_ends_failed_with_the_reason() {
    let definition = definition(json!([call("a"), call("b")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    apply_call(&definition, &mut state, "a", 1, ok("a"), 1);
    plan(&definition, &mut state, 1);
    apply_call(&definition, &mut state, "b", 1, fail(ErrorCode::NotFound), 2);
    plan(&definition, &mut state, 2);
    assert!(apply_compensation(
        &definition,
        &mut state,
        "a",
        1,
        fail(ErrorCode::Declared("REFUSED".into())),
        3
    ));
    assert_eq!(state.status, InstanceStatus::Failed);
    assert!(
        state
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("compensation of step a failed")
    );
}

#[test]
fn an_attempt_past_its_deadline_times_out_when_planned_again() {
    let definition = definition(json!([call("a")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    // The orchestrator stopped mid-call; it comes back after the 1 s timeout.
    let (next, changed) = plan(&definition, &mut state, 5_000);
    assert!(changed);
    assert_eq!(next, Next::Wait(5_100));
    assert_eq!(state.steps["a"].attempt, 2);
    assert_eq!(
        state.steps["a"].error.as_ref().map(|e| e.code.clone()),
        Some(ErrorCode::Timeout)
    );
}

#[test]
fn a_choice_takes_the_matching_case_and_remembers_it() {
    let definition = definition(json!([
        {"id": "route", "choice": {"on": "$input/express", "cases": [
            {"equals": true, "steps": [call("fast")]},
            {"equals": false, "steps": [call("slow")]}
        ], "default": [call("other")]}},
        call("after")
    ]));
    let mut state = instance();
    assert_eq!(plan(&definition, &mut state, 0).0, Next::Call(vec!["fast".into()]));
    assert_eq!(state.choices["route"], "case 0");
    // The input does not matter any more: the choice was recorded.
    state.input = json!({"order": "o-1", "express": false});
    apply_call(&definition, &mut state, "fast", 1, ok("fast"), 1);
    assert_eq!(plan(&definition, &mut state, 1).0, Next::Call(vec!["after".into()]));
}

#[test]
fn parallel_branches_run_together_and_join() {
    let definition = definition(json!([
        {"id": "both", "parallel": {"left": [call("l1"), call("l2")], "right": [call("r1")]}},
        call("join")
    ]));
    let mut state = instance();
    assert_eq!(
        plan(&definition, &mut state, 0).0,
        Next::Call(vec!["l1".into(), "r1".into()])
    );
    apply_call(&definition, &mut state, "l1", 1, ok("l1"), 1);
    apply_call(&definition, &mut state, "r1", 1, ok("r1"), 1);
    assert_eq!(plan(&definition, &mut state, 1).0, Next::Call(vec!["l2".into()]));
    apply_call(&definition, &mut state, "l2", 1, ok("l2"), 2);
    assert_eq!(plan(&definition, &mut state, 2).0, Next::Call(vec!["join".into()]));
}

#[test]
fn a_cancel_compensates_and_ends_cancelled() {
    let definition = definition(json!([call("a"), call("b")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    apply_call(&definition, &mut state, "a", 1, ok("a"), 1);
    state.cancel_requested = Some("customer changed their mind".into());
    assert_eq!(plan(&definition, &mut state, 2).0, Next::Compensate("a".into()));
    apply_compensation(&definition, &mut state, "a", 1, Ok(json!({})), 3);
    assert_eq!(plan(&definition, &mut state, 3).0, Next::Finished);
    assert_eq!(state.status, InstanceStatus::Cancelled);
}

#[test]
fn a_cancel_settles_a_call_under_way_before_compensating() {
    let definition = definition(json!([call("a"), call("b")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    apply_call(&definition, &mut state, "a", 1, ok("a"), 1);
    plan(&definition, &mut state, 1);
    // b's call is under way when the cancel is recorded.
    state.cancel_requested = Some("stop".into());
    assert_eq!(plan(&definition, &mut state, 2).0, Next::Call(vec!["b".into()]));
    apply_call(&definition, &mut state, "b", 1, ok("b"), 3);
    assert_eq!(plan(&definition, &mut state, 3).0, Next::Compensate("b".into()));
}

#[test]
fn a_step_that_timed_out_for_good_is_undone_too() {
    let definition = definition(json!([call("a"), call("b")]));
    let mut state = instance();
    plan(&definition, &mut state, 0);
    apply_call(&definition, &mut state, "a", 1, ok("a"), 1);
    plan(&definition, &mut state, 1);
    for attempt in 1..=3 {
        apply_call(
            &definition,
            &mut state,
            "b",
            attempt,
            fail(ErrorCode::Timeout),
            10_000 * u64::from(attempt),
        );
        plan(&definition, &mut state, 10_000 * u64::from(attempt) + 5_000);
    }
    // b's request may have been done although its reply never came; but
    // this test's compensations need the step's output, which b never had.
    assert_eq!(state.compensation.as_ref().unwrap().remaining, ["a"]);
    let definition = definition_with_undo_by_order();
    let mut state = instance();
    plan(&definition, &mut state, 0);
    for attempt in 1..=3 {
        apply_call(
            &definition,
            &mut state,
            "b",
            attempt,
            fail(ErrorCode::Timeout),
            10_000 * u64::from(attempt),
        );
        plan(&definition, &mut state, 10_000 * u64::from(attempt) + 5_000);
    }
    assert_eq!(state.compensation.as_ref().unwrap().remaining, ["b"]);
}

#[test]
fn a_step_that_failed_for_good_on_the_service_side_is_undone_too_a_refused_one_is_not() {
    for (code, undone) in [
        (ErrorCode::Unavailable, vec!["b".to_owned()]),
        (ErrorCode::Internal, vec!["b".to_owned()]),
        (ErrorCode::Declared("REFUSED".into()), Vec::new()),
        (ErrorCode::ValidationFailed, Vec::new()),
    ] {
        let definition = definition_with_undo_by_order();
        let mut state = instance();
        plan(&definition, &mut state, 0);
        for attempt in 1..=3 {
            apply_call(
                &definition,
                &mut state,
                "b",
                attempt,
                fail(code.clone()),
                10_000 * u64::from(attempt),
            );
            plan(&definition, &mut state, 10_000 * u64::from(attempt) + 5_000);
        }
        // UNAVAILABLE after part of the work (stock held, its event not stored) leaves an effect.
        assert_eq!(state.compensation.as_ref().unwrap().remaining, undone, "{code}");
    }
}

fn definition_with_undo_by_order() -> WorkflowDefinition {
    let mut step = call("b");
    step["compensate"]["input"] = json!({"step": "b", "order": "$input/order", "effect": 0});
    definition(json!([step]))
}
