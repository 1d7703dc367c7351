//! The orchestrator against a real nats-server: definitions, retries,
//! compensation, timeouts, choices and joins, kills, replicas, idempotent
//! starts and JetStream starts.

use std::time::Duration;

use bus_services::orchestrator::OrchestratorStats;
use bus_services::runtime::{CallError, ServiceClient};
use contracts::orchestrator_api::{
    CancelRequest, InstanceStatus, ListInstancesRequest, LoadRequest, StartRequest, StartWorkflowRequest,
    StartWorkflowResponse, ops,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{RunningRegistry, registry_client};
use tests::workflows::{
    Ledger, LedgerBus, RunningOrchestrator, Script, ledger_step, ledger_workflow, orchestrator_client, test_config,
    wait_final,
};

/// A server, a registry holding the ledger's contract, the ledger serving,
/// and an orchestrator.
struct Bus {
    server: NatsServer,
    _registry: RunningRegistry,
    ledger: Ledger,
    _ledger_stop: tokio_util::sync::DropGuard,
    orchestrator: Option<RunningOrchestrator>,
    client: ServiceClient,
}

async fn bus() -> Bus {
    let LedgerBus {
        server,
        registry,
        ledger,
        ledger_stop,
    } = LedgerBus::start().await.unwrap();
    let orchestrator = RunningOrchestrator::start(&server, test_config()).await.unwrap();
    let client = orchestrator_client(&server).await.unwrap();
    Bus {
        server,
        _registry: registry,
        ledger,
        _ledger_stop: ledger_stop,
        orchestrator: Some(orchestrator),
        client,
    }
}

impl Bus {
    async fn load(&self, definition: Value) {
        let loaded = self
            .client
            .call::<ops::Load>(&LoadRequest { definition })
            .await
            .unwrap();
        assert!(loaded.created, "{loaded:?}");
    }

    async fn start(&self, workflow: &str, order: &str) -> StartWorkflowResponse {
        self.client
            .call::<ops::Start>(&StartRequest {
                workflow: workflow.to_owned(),
                input: json!({"order": order}),
                idempotency_key: None,
                correlation_id: Some(order.to_owned()),
            })
            .await
            .unwrap()
    }

    fn applied(&self, order: &str) -> Vec<String> {
        self.ledger.read(|log| {
            log.applied
                .iter()
                .filter(|(o, _)| o == order)
                .map(|(_, step)| step.clone())
                .collect()
        })
    }

    fn undone(&self, order: &str) -> Vec<String> {
        self.ledger.read(|log| {
            log.undone
                .iter()
                .filter(|(o, _)| o == order)
                .map(|(_, step)| step.clone())
                .collect()
        })
    }
}

const WAIT: Duration = Duration::from_secs(20);

/// Publishes a start of `workflow` for `order` on its JetStream subject,
/// with `headers`, and waits until JetStream stores it.
async fn publish_start(
    js: &async_nats::jetstream::Context,
    workflow: &str,
    order: &str,
    headers: async_nats::HeaderMap,
) {
    js.publish_with_headers(
        contracts::subjects::orchestrator_start(workflow),
        headers,
        serde_json::to_vec(&StartWorkflowRequest {
            input: json!({"order": order}),
            idempotency_key: None,
            correlation_id: None,
        })
        .unwrap()
        .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[tokio::test]
async fn the_happy_path_runs_every_step_once_and_announces_the_end() {
    let bus = bus().await;
    bus.load(ledger_workflow(
        "happy",
        vec![
            ledger_step("s1", "2s"),
            ledger_step("s2", "2s"),
            ledger_step("s3", "2s"),
        ],
    ))
    .await;
    // Started through the workflow's own generated contract, like any service.
    let nats = bus.server.client().await.unwrap();
    let registry = registry_client(&bus.server).await.unwrap();
    let contract = registry
        .call::<contracts::registry_api::ops::Get>(&contracts::registry_api::GetRequest {
            service: contracts::ServiceName::parse("happy").unwrap(),
            version: None,
            major: Some(1),
        })
        .await
        .unwrap()
        .document;
    assert_eq!(
        contract.operations.values().next().unwrap().subject.as_str(),
        "test.happy.v1.start"
    );
    assert_eq!(contract.calls.len(), 2, "apply and undo: {:?}", contract.calls);
    let workflow = ServiceClient::new(nats.clone(), contract);
    let started: Value = workflow
        .call_json("start", &json!({"input": {"order": "o-1"}, "correlation_id": "o-1"}))
        .await
        .unwrap();
    let instance = started["instance"].as_str().unwrap().to_owned();
    let state = wait_final(&bus.client, &instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Completed, "{state:#?}");
    assert_eq!(bus.applied("o-1"), ["s1", "s2", "s3"]);
    assert_eq!(state.completed, ["s1", "s2", "s3"]);
    assert_eq!(state.output.as_ref().unwrap()["s3"]["step"], "s3");
    let kinds: Vec<&str> = state.history.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"completed"));
    // A bad input never starts an instance.
    let refused = workflow
        .call_json("start", &json!({"input": {"order": 7}}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), contracts::ErrorCode::ValidationFailed, "{refused}");
    // One finished event, carrying the correlation id.
    let js = async_nats::jetstream::new(nats);
    let mut stream = js.get_stream("SOA_EVENTS_HAPPY_V1").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.state.messages, 1);
    let message = stream.get_raw_message(info.state.first_sequence).await.unwrap();
    let finished: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(finished["status"], "completed");
    assert_eq!(finished["correlation_id"], "o-1");
}

#[tokio::test]
async fn a_retryable_error_succeeds_on_the_third_attempt() {
    let bus = bus().await;
    bus.ledger.script(
        "s2",
        Script::FailTimes {
            times: 2,
            code: "UNAVAILABLE".to_owned(),
        },
    );
    bus.load(ledger_workflow(
        "retry",
        vec![ledger_step("s1", "2s"), ledger_step("s2", "2s")],
    ))
    .await;
    let started = bus.start("retry", "o-2").await;
    let state = wait_final(&bus.client, &started.instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Completed, "{state:#?}");
    assert_eq!(state.steps["s2"].attempt, 3);
    let retries = state.history.iter().filter(|e| e.kind == "step-retrying").count();
    assert_eq!(retries, 2);
    assert_eq!(bus.applied("o-2"), ["s1", "s2"]);
    let requests = bus
        .ledger
        .read(|log| log.requests[&("o-2".to_owned(), "s2".to_owned())]);
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn a_permanent_failure_in_step_three_compensates_two_then_one() {
    let bus = bus().await;
    bus.ledger.script("s3", Script::Refuse);
    bus.load(ledger_workflow(
        "saga",
        vec![
            ledger_step("s1", "2s"),
            ledger_step("s2", "2s"),
            ledger_step("s3", "2s"),
        ],
    ))
    .await;
    let started = bus.start("saga", "o-3").await;
    let state = wait_final(&bus.client, &started.instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Compensated, "{state:#?}");
    assert_eq!(bus.applied("o-3"), ["s1", "s2"]);
    assert_eq!(bus.undone("o-3"), ["s2", "s1"]);
    let reason = state.reason.unwrap();
    assert!(
        reason.contains("step s3 failed") && reason.contains("REFUSED"),
        "{reason}"
    );
    // A declared business error is not retried.
    assert_eq!(state.steps["s3"].attempt, 1);
}

#[tokio::test]
async fn a_step_that_does_not_answer_in_time_fails_and_compensates() {
    let bus = bus().await;
    bus.ledger.script("slow", Script::Delay(Duration::from_secs(2)));
    let mut slow = ledger_step("slow", "300ms");
    slow["retry"] = json!({"attempts": 1});
    bus.load(ledger_workflow("timeout", vec![ledger_step("s1", "2s"), slow]))
        .await;
    let started = bus.start("timeout", "o-4").await;
    let state = wait_final(&bus.client, &started.instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Compensated, "{state:#?}");
    assert!(
        state.reason.as_deref().unwrap().contains("TIMEOUT"),
        "{:?}",
        state.reason
    );
    assert_eq!(bus.undone("o-4"), ["s1"]);
}

#[tokio::test]
async fn a_choice_picks_its_branch_and_parallel_branches_join() {
    let bus = bus().await;
    bus.ledger.script("left", Script::Delay(Duration::from_millis(200)));
    bus.ledger.script("right", Script::Delay(Duration::from_millis(200)));
    let definition = ledger_workflow(
        "shapes",
        vec![
            json!({"id": "route", "choice": {"on": "$input/express", "cases": [
                {"equals": true, "steps": [ledger_step("express", "2s")]}
            ], "default": [ledger_step("standard", "2s")]}}),
            json!({"id": "both", "parallel": {
                "a": [ledger_step("left", "2s")],
                "b": [ledger_step("right", "2s")]
            }}),
            ledger_step("joined", "2s"),
        ],
    );
    bus.load(definition).await;
    let express = bus
        .client
        .call::<ops::Start>(&StartRequest {
            workflow: "shapes@1.0.0".to_owned(),
            input: json!({"order": "o-5", "express": true}),
            idempotency_key: None,
            correlation_id: None,
        })
        .await
        .unwrap();
    let standard = bus.start("shapes", "o-6").await;
    let express = wait_final(&bus.client, &express.instance, WAIT).await.unwrap();
    let standard = wait_final(&bus.client, &standard.instance, WAIT).await.unwrap();
    assert_eq!(express.status, InstanceStatus::Completed, "{express:#?}");
    assert_eq!(standard.status, InstanceStatus::Completed, "{standard:#?}");
    assert_eq!(express.choices["route"], "case 0");
    assert_eq!(standard.choices["route"], "default");
    let express_steps = bus.applied("o-5");
    assert_eq!(express_steps.first().map(String::as_str), Some("express"));
    assert_eq!(express_steps.last().map(String::as_str), Some("joined"));
    assert_eq!(bus.applied("o-6").first().map(String::as_str), Some("standard"));
    // Both branches ran side by side: each started before either finished.
    let started_at = |id: &str| {
        express
            .history
            .iter()
            .find(|e| e.kind == "step-started" && e.step.as_deref() == Some(id))
            .unwrap()
            .at_ms
    };
    let finished_at = |id: &str| {
        express
            .history
            .iter()
            .find(|e| e.kind == "step-succeeded" && e.step.as_deref() == Some(id))
            .unwrap()
            .at_ms
    };
    assert!(started_at("right") < finished_at("left") && started_at("left") < finished_at("right"));
    assert!(started_at("joined") >= finished_at("left").max(finished_at("right")));
}

#[tokio::test]
async fn a_definition_with_an_unknown_operation_is_refused_at_load() {
    let bus = bus().await;
    let mut step = ledger_step("s1", "2s");
    step["call"] = json!("ledger@1#aply");
    let refused = bus
        .client
        .call::<ops::Load>(&LoadRequest {
            definition: ledger_workflow("typo", vec![step]),
        })
        .await
        .unwrap_err();
    let CallError::Service { body, .. } = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(body.code.as_str(), "INVALID_DEFINITION");
    let detail = body.details.iter().find(|d| d.pointer == "/steps/0/call").unwrap();
    assert!(detail.message.contains("aply"), "{detail}");
    // Nothing was stored or started.
    let definitions = bus.client.call::<ops::Definitions>(&Default::default()).await.unwrap();
    assert!(definitions.definitions.is_empty());
    // A loaded version never changes.
    bus.load(ledger_workflow("fixed", vec![ledger_step("s1", "2s")])).await;
    let again = bus
        .client
        .call::<ops::Load>(&LoadRequest {
            definition: ledger_workflow("fixed", vec![ledger_step("s1", "2s")]),
        })
        .await
        .unwrap();
    assert!(!again.created);
    let changed = bus
        .client
        .call::<ops::Load>(&LoadRequest {
            definition: ledger_workflow("fixed", vec![ledger_step("s1", "5s")]),
        })
        .await
        .unwrap_err();
    assert_eq!(changed.code(), contracts::ErrorCode::Conflict, "{changed}");
}

#[tokio::test]
async fn a_killed_orchestrator_resumes_every_instance_exactly_once() {
    let mut bus = bus().await;
    for step in ["s1", "s2", "s3"] {
        bus.ledger.script(step, Script::Delay(Duration::from_millis(150)));
    }
    bus.load(ledger_workflow(
        "durable",
        vec![
            ledger_step("s1", "3s"),
            ledger_step("s2", "3s"),
            ledger_step("s3", "3s"),
        ],
    ))
    .await;
    let mut instances = Vec::new();
    for n in 0..20 {
        instances.push(bus.start("durable", &format!("k-{n}")).await.instance);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    bus.orchestrator.take().unwrap().kill();
    let killed_at = std::time::Instant::now();
    let replacement = RunningOrchestrator::start(&bus.server, test_config()).await.unwrap();
    for instance in &instances {
        let state = wait_final(&bus.client, instance, WAIT).await.unwrap();
        assert_eq!(state.status, InstanceStatus::Completed, "{state:#?}");
    }
    let recovered_in = killed_at.elapsed();
    for n in 0..20 {
        assert_eq!(bus.applied(&format!("k-{n}")), ["s1", "s2", "s3"], "order k-{n}");
    }
    // Every instance ended once: one finished event each.
    let js = async_nats::jetstream::new(bus.server.client().await.unwrap());
    let info = js
        .get_stream("SOA_EVENTS_DURABLE_V1")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 20);
    // Recovery: the ack wait (2 s) plus the remaining steps, well within 2 s more.
    assert!(recovered_in < Duration::from_secs(6), "took {recovered_in:?}");
    assert!(OrchestratorStats::get(&replacement.stats().finished) > 0);
    replacement.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_share_the_work_and_finish_each_instance_once() {
    let mut bus = bus().await;
    bus.ledger.script("s1", Script::Delay(Duration::from_millis(50)));
    bus.load(ledger_workflow(
        "shared",
        vec![ledger_step("s1", "2s"), ledger_step("s2", "2s")],
    ))
    .await;
    let second = RunningOrchestrator::start(&bus.server, test_config()).await.unwrap();
    let mut instances = Vec::new();
    for n in 0..60 {
        instances.push(bus.start("shared", &format!("r-{n}")).await.instance);
    }
    for instance in &instances {
        let state = wait_final(&bus.client, instance, WAIT).await.unwrap();
        assert_eq!(state.status, InstanceStatus::Completed);
    }
    for n in 0..60 {
        assert_eq!(bus.applied(&format!("r-{n}")), ["s1", "s2"]);
    }
    let first = bus.orchestrator.take().unwrap();
    let (a, b) = (
        OrchestratorStats::get(&first.stats().finished),
        OrchestratorStats::get(&second.stats().finished),
    );
    assert_eq!(a + b, 60, "each instance finished by exactly one replica");
    assert!(a > 0 && b > 0, "both replicas worked: {a} and {b}");
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_repeated_start_with_the_same_key_starts_one_instance() {
    let bus = bus().await;
    bus.load(ledger_workflow("once", vec![ledger_step("s1", "2s")])).await;
    let request = StartRequest {
        workflow: "once".to_owned(),
        input: json!({"order": "o-7"}),
        idempotency_key: Some("checkout-7".to_owned()),
        correlation_id: None,
    };
    let start = || bus.client.call::<ops::Start>(&request);
    let (first, second) = tokio::join!(start(), start());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.instance, second.instance);
    assert!(
        first.created != second.created,
        "exactly one created: {first:?} {second:?}"
    );
    wait_final(&bus.client, &first.instance, WAIT).await.unwrap();
    let third = start().await.unwrap();
    assert_eq!(third.instance, first.instance);
    assert_eq!(third.status, InstanceStatus::Completed);
    assert_eq!(bus.applied("o-7"), ["s1"]);
    let listed = bus
        .client
        .call::<ops::List>(&ListInstancesRequest {
            workflow: Some("once".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    let everything = bus.client.call::<ops::List>(&ListInstancesRequest::default()).await;
    assert_eq!(listed.total, 1, "{listed:?} {everything:?}");
    assert_eq!(listed.by_status["completed"], 1);
}

#[tokio::test]
async fn a_jetstream_message_starts_an_instance_once_and_a_bad_one_is_a_dead_letter() {
    let bus = bus().await;
    bus.load(ledger_workflow("streamed", vec![ledger_step("s1", "2s")]))
        .await;
    let js = async_nats::jetstream::new(bus.server.client().await.unwrap());
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "order-8-placed");
        publish_start(&js, "streamed", "o-8", headers).await;
    }
    js.publish(
        contracts::subjects::orchestrator_start("streamed"),
        r#"{"input": {"order": 8}}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = bus
            .client
            .call::<ops::List>(&ListInstancesRequest {
                workflow: Some("streamed".to_owned()),
                status: Some(InstanceStatus::Completed),
                ..Default::default()
            })
            .await
            .unwrap();
        if listed.total == 1 && bus.applied("o-8") == ["s1"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = js.get_stream("SOA_DEAD_LETTERS").await.unwrap();
    let consumer = dead
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let letter = batch.next().await.unwrap().unwrap();
    let reason = letter
        .headers
        .as_ref()
        .unwrap()
        .get("Soa-Dead-Letter-Reason")
        .unwrap()
        .to_string();
    assert!(
        reason.contains("VALIDATION_FAILED") && reason.contains("/input/order"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_stale_memory_of_an_instance_never_starts_a_call() {
    let bus = bus().await;
    // s1 fails once, then waits two seconds before its retry.
    bus.ledger.script(
        "s1",
        Script::FailTimes {
            times: 1,
            code: "UNAVAILABLE".to_owned(),
        },
    );
    let mut step = ledger_step("s1", "2s");
    step["retry"]["initial_interval"] = json!("2s");
    step["retry"]["max_interval"] = json!("2s");
    step["retry"]["jitter"] = json!(0.0);
    bus.load(ledger_workflow("stale", vec![step])).await;
    let started = bus.start("stale", "o-stale").await;
    let requests = || {
        bus.ledger
            .read(|log| log.requests.get(&("o-stale".to_owned(), "s1".to_owned())).copied())
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while requests() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "s1 was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the retry waits, another replica's cancel is stored: the
    // orchestrator here still remembers the instance without it.
    let js = async_nats::jetstream::new(bus.server.client().await.unwrap());
    let instances = js.get_key_value("SOA_WF_INSTANCES").await.unwrap();
    loop {
        let entry = instances.entry(&started.instance).await.unwrap().unwrap();
        let mut state: Value = serde_json::from_slice(&entry.value).unwrap();
        // Once the failed attempt and the retry's time are committed.
        if !state["steps"]["s1"]["retry_at_ms"].is_u64() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the retry was never scheduled: {state:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        state["cancel_requested"] = json!("cancelled on another replica");
        let written = instances
            .update(
                &started.instance,
                serde_json::to_vec(&state).unwrap().into(),
                entry.revision,
            )
            .await;
        if written.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "could not store the cancel");
    }
    // Nothing asks the orchestrator meanwhile (a read would refresh its
    // memory) until the retry's time has passed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = wait_final(&bus.client, &started.instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Cancelled, "{state:#?}");
    // The retry was never made from the stale memory: nothing was applied
    // that the cancel would then leave undone.
    assert_eq!(requests(), 1);
    assert!(bus.applied("o-stale").is_empty(), "{:?}", bus.applied("o-stale"));
}

#[tokio::test]
async fn the_sweep_drives_an_instance_nobody_queued_and_leaves_ended_ones_alone() {
    let bus = bus().await;
    bus.load(ledger_workflow("swept", vec![ledger_step("s1", "2s")])).await;
    let first = bus.start("swept", "o-first").await;
    let ended = wait_final(&bus.client, &first.instance, WAIT).await.unwrap();
    assert_eq!(ended.status, InstanceStatus::Completed, "{ended:#?}");
    // Past the sweep's first round (every 2 s here), which read the bucket
    // from its start: the instance below comes as a change since.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // An instance stored and never queued (its starter stopped in between),
    // quiet for a minute.
    let mut orphan = serde_json::to_value(&ended).unwrap();
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for field in [
        "output",
        "reason",
        "compensation",
        "cancel_requested",
        "idempotency_key",
    ] {
        orphan.as_object_mut().unwrap().remove(field);
    }
    orphan["id"] = json!("orphan-1");
    orphan["status"] = json!("running");
    orphan["input"] = json!({"order": "o-orphan"});
    orphan["correlation_id"] = json!("o-orphan");
    orphan["steps"] = json!({});
    orphan["completed"] = json!([]);
    orphan["history"] = json!([]);
    orphan["created_at_ms"] = json!(now_ms - 60_000);
    orphan["updated_at_ms"] = json!(now_ms - 60_000);
    let js = async_nats::jetstream::new(bus.server.client().await.unwrap());
    let instances = js.get_key_value("SOA_WF_INSTANCES").await.unwrap();
    instances
        .create("orphan-1", serde_json::to_vec(&orphan).unwrap().into())
        .await
        .unwrap();
    let state = wait_final(&bus.client, "orphan-1", WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Completed, "{state:#?}");
    assert_eq!(bus.applied("o-orphan"), ["s1"]);
    // Rounds later, neither instance was driven again.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(bus.applied("o-first"), ["s1"]);
    assert_eq!(bus.applied("o-orphan"), ["s1"]);
}

#[tokio::test]
async fn a_deleted_starts_consumer_is_opened_again() {
    let bus = bus().await;
    bus.load(ledger_workflow("restarted", vec![ledger_step("s1", "2s")]))
        .await;
    let js = async_nats::jetstream::new(bus.server.client().await.unwrap());
    let starts = js.get_stream("SOA_WF_STARTS").await.unwrap();
    // The orchestrator made its consumer at start; someone deletes it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while starts.delete_consumer("orchestrator-starts").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the starts consumer never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish_start(&js, "restarted", "o-restarted", async_nats::HeaderMap::new()).await;
    // The orchestrator opens the consumer again and takes the start.
    loop {
        if bus.applied("o-restarted") == ["s1"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the start was never taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cancel_compensates_what_was_done() {
    let bus = bus().await;
    bus.ledger.script("s2", Script::Delay(Duration::from_millis(800)));
    bus.load(ledger_workflow(
        "cancellable",
        vec![ledger_step("s1", "2s"), ledger_step("s2", "3s")],
    ))
    .await;
    let started = bus.start("cancellable", "o-9").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = bus
        .client
        .call::<ops::Cancel>(&CancelRequest {
            instance: started.instance.clone(),
            reason: Some("the customer changed their mind".to_owned()),
        })
        .await
        .unwrap();
    assert!(cancelled.accepted);
    let state = wait_final(&bus.client, &started.instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Cancelled, "{state:#?}");
    // s2 finished its call after the cancel was recorded; both are undone, newest first.
    assert_eq!(bus.undone("o-9"), ["s2", "s1"]);
    let again = bus
        .client
        .call::<ops::Cancel>(&CancelRequest {
            instance: started.instance.clone(),
            reason: None,
        })
        .await
        .unwrap();
    assert!(!again.accepted);
}

#[tokio::test]
async fn an_event_trigger_starts_one_instance_per_event() {
    let bus = bus().await;
    tests::registry::register_shop(&registry_client(&bus.server).await.unwrap())
        .await
        .unwrap();
    let mut definition = ledger_workflow("triggered", vec![ledger_step("s1", "2s")]);
    definition["trigger"] = json!({"event": "orders@1#placed", "input": {"order": "$input/order_id"}});
    bus.load(definition).await;
    let orders = contracts::shop::contracts()
        .unwrap()
        .into_iter()
        .find(|document| document.service.as_str() == "orders")
        .unwrap();
    let publisher = bus_services::runtime::EventPublisher::new(
        bus.server.client().await.unwrap(),
        orders,
        &contracts::SchemaSet::default(),
    )
    .await
    .unwrap();
    let placed = json!({
        "order_id": "ord-10",
        "customer_id": "c-1",
        "items": [{"sku": "sku-mug", "quantity": 1, "unit_price": {"amount_cents": 900, "currency": "EUR"}}],
        "total": {"amount_cents": 900, "currency": "EUR"},
        "mode": "orchestrated"
    });
    publisher
        .publish_json("placed", Some("placed-ord-10"), &placed)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while bus.applied("ord-10") != ["s1"] {
        assert!(tokio::time::Instant::now() < deadline, "the trigger started nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = bus
        .client
        .call::<ops::List>(&ListInstancesRequest {
            workflow: Some("triggered".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    let shown = bus
        .client
        .call::<ops::Show>(&contracts::orchestrator_api::ShowRequest {
            instance: listed.instances[0].instance.clone(),
        })
        .await
        .unwrap();
    assert_eq!(shown.instance.input, json!({"order": "ord-10"}));
    assert_eq!(shown.instance.idempotency_key.as_deref(), Some("placed-ord-10"));
}
