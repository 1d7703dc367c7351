//! The orchestrator: durable workflows (sagas) that call contract operations
//! on the bus, retry, time out, and compensate in reverse order.
//!
//! - Definitions (`contracts::workflow`) are loaded through the
//!   orchestrator's own API (`soa.orchestrator.v1.load`), checked against the
//!   registry's contracts, stored create-only in JetStream KV
//!   ([`store::DEFINITIONS_BUCKET`]) and served as services with generated
//!   contracts: `<domain>.<workflow>.v<major>.start`.
//! - Instances live in JetStream KV ([`store::INSTANCES_BUCKET`]), written
//!   with revision compare-and-set; work items go through a work-queue
//!   stream whose durable consumer every replica shares, acked only after
//!   the state is committed. See `engine.rs` for the loop, `plan.rs` for
//!   the decisions.
//! - Starts come from the workflow's `start` operation, the orchestrator's
//!   `start` verb (by name), or a JetStream message on
//!   `soa.wf.start.<workflow>` (its `Nats-Msg-Id` is the idempotency key
//!   when the message names none).

mod api;
mod definitions;
mod engine;
mod error;
mod plan;
pub mod store;
mod sweep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use contracts::envelope::headers;
use contracts::{ServiceName, Version};
use dashmap::DashMap;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use error::OrchestratorError;

use crate::runtime::{Propagation, RegistrationConfig, ServiceClient, TraceContext};
use crate::wire;
use definitions::{Loaded, RunningWorkflow};

/// How an orchestrator replica runs.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Copies of the buckets and streams on a cluster (1 on one server, 3
    /// on a three-node cluster), the workflows' `finished` event streams
    /// included; existing ones with fewer are raised ([`crate::replicas`]).
    pub replicas: usize,
    /// How long the server waits before handing a silent replica's work
    /// item to another: recovery after a kill takes about this long.
    pub ack_wait: Duration,
    /// Instances this replica drives at once.
    pub max_in_flight: usize,
    /// How often stalled instances are looked for and queued again.
    pub sweep_interval: Duration,
    /// How long shutdown waits for rounds in flight.
    pub shutdown_timeout: Duration,
    /// Registration of the orchestrator's and the workflows' services.
    pub registration: Option<RegistrationConfig>,
    /// The owner credential presented when registering workflow contracts.
    pub owner_token: Option<String>,
    /// How long a registry call (at load) may take.
    pub registry_timeout: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            ack_wait: Duration::from_secs(10),
            max_in_flight: 1024,
            sweep_interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            registration: Some(RegistrationConfig::default()),
            owner_token: None,
            registry_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of one replica, readable while it runs.
#[derive(Debug, Default)]
pub struct OrchestratorStats {
    /// Work items this replica took.
    pub work_items: AtomicU64,
    /// Instances this replica brought to a final status.
    pub finished: AtomicU64,
    /// Calls (steps and compensations) this replica made.
    pub calls: AtomicU64,
    /// Whether to keep [`OrchestratorStats::overheads`] (for benchmarks).
    pub record_overheads: std::sync::atomic::AtomicBool,
    /// The orchestrator's own time per round, in microseconds: from the last
    /// replies (or taking the work item) to the next calls, plus how long the
    /// round's commit outlasted its calls.
    pub overheads: Mutex<Vec<u32>>,
}

impl OrchestratorStats {
    fn record_overhead(&self, elapsed: Duration) {
        if self.record_overheads.load(Ordering::Relaxed) {
            let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
            match self.overheads.lock() {
                Ok(mut samples) => samples.push(micros),
                Err(poisoned) => poisoned.into_inner().push(micros),
            }
        }
    }

    /// A counter's value now.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What every part of a replica shares.
pub(crate) struct Shared {
    stats: Arc<OrchestratorStats>,
    nats: async_nats::Client,
    stores: store::Stores,
    config: OrchestratorConfig,
    registry: ServiceClient,
    definitions: DashMap<String, Arc<Loaded>>,
    workflows: Mutex<HashMap<(ServiceName, u64), RunningWorkflow>>,
    shutdown: CancellationToken,
}

impl Shared {
    /// A loaded definition by `name@version`.
    fn definition(&self, id: &str) -> Option<Arc<Loaded>> {
        self.definitions.get(id).map(|entry| Arc::clone(entry.value()))
    }

    /// `name@version`, or `name` for its newest loaded version.
    fn resolve(&self, workflow: &str) -> Option<Arc<Loaded>> {
        if workflow.contains('@') {
            return self.definition(workflow);
        }
        let mut best: Option<(Version, Arc<Loaded>)> = None;
        for entry in &self.definitions {
            let loaded = entry.value();
            if loaded.definition.name.as_str() == workflow
                && best
                    .as_ref()
                    .is_none_or(|(version, _)| loaded.definition.version > *version)
            {
                best = Some((loaded.definition.version.clone(), Arc::clone(loaded)));
            }
        }
        best.map(|(_, loaded)| loaded)
    }
}

/// An orchestrator replica. Run several on one NATS system to share the work.
pub struct Orchestrator {
    config: OrchestratorConfig,
    stats: Arc<OrchestratorStats>,
}

impl Orchestrator {
    /// A replica configured by `config`.
    pub fn new(config: OrchestratorConfig) -> Self {
        Self {
            config,
            stats: Arc::default(),
        }
    }

    /// This replica's counters, live while it runs.
    pub fn stats(&self) -> Arc<OrchestratorStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown`: the API, the workflows' services, the work
    /// and start consumers and the sweep. On shutdown it stops taking work,
    /// lets rounds in flight commit and hand their items back, and stops the
    /// services (which deregister). The caller drains `nats` afterwards.
    /// Dropping the future stops everything at once, as a killed process would.
    pub async fn run(self, nats: async_nats::Client, shutdown: CancellationToken) -> Result<(), OrchestratorError> {
        if let Some(info) = nats.try_server_info() {
            crate::connection::check_server_version(&info.version)
                .map_err(|error| OrchestratorError::Setup(error.to_string()))?;
        }
        let js = jetstream::new(nats.clone());
        // Told to stop while JetStream does not answer yet: nothing was taken.
        let stores = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            stores = store::Stores::open(js, self.config.replicas) => stores?,
        };
        let registry_contract = contracts::registry_api::contract()
            .map_err(|error| OrchestratorError::Registry(format!("the registry's contract: {error}")))?;
        let registry = ServiceClient::new(nats.clone(), registry_contract).with_options(crate::runtime::CallOptions {
            timeout: self.config.registry_timeout,
            ..Default::default()
        });
        let shared = Arc::new(Shared {
            stats: self.stats,
            nats: nats.clone(),
            stores,
            config: self.config,
            registry,
            definitions: DashMap::new(),
            workflows: Mutex::new(HashMap::new()),
            shutdown: shutdown.child_token(),
        });
        let stored_definitions =
            crate::patience::until_done("listing definitions", crate::patience::SETUP_PATIENCE, || {
                shared.stores.all_definitions()
            })
            .await?;
        for stored in stored_definitions {
            if let Err(error) = definitions::activate(&shared, &stored).await {
                tracing::error!(error = %error, "A stored definition cannot be run.");
            }
        }
        let api = api::service(&shared)?;
        let stop = shared.shutdown.clone();
        let mut tasks = Vec::new();
        let api_stop = stop.clone();
        let api_nats = nats.clone();
        tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
            if let Err(error) = api.run(api_nats, api_stop).await {
                tracing::error!(error = %error, "The orchestrator's API stopped.");
            }
        })));
        tasks.push(AbortOnDropHandle::new(tokio::spawn(watch_definitions(
            Arc::clone(&shared),
            stop.clone(),
        ))));
        tasks.push(AbortOnDropHandle::new(tokio::spawn(take_starts(
            Arc::clone(&shared),
            stop.clone(),
        ))));
        tasks.push(AbortOnDropHandle::new(tokio::spawn(sweep::sweep(
            Arc::clone(&shared),
            stop.clone(),
        ))));
        tracing::info!(definitions = shared.definitions.len(), "Orchestrator started.");
        let worked = engine::work(Arc::clone(&shared), stop.clone()).await;
        stop.cancel();
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "An orchestrator task failed.");
            }
        }
        // The workflows' services deregister as they stop.
        let running: Vec<RunningWorkflow> = match shared.workflows.lock() {
            Ok(mut map) => map.drain().map(|(_, running)| running).collect(),
            Err(poisoned) => poisoned.into_inner().drain().map(|(_, running)| running).collect(),
        };
        for workflow in running {
            workflow.finish().await;
        }
        if let Err(error) = nats.flush().await {
            tracing::warn!(error = %error, "Could not flush at shutdown.");
        }
        tracing::info!("Orchestrator stopped.");
        worked
    }
}

/// Activates definitions other replicas load.
async fn watch_definitions(shared: Arc<Shared>, stop: CancellationToken) {
    let mut watch = loop {
        match shared.stores.watch_definitions().await {
            Ok(watch) => break watch,
            Err(error) => {
                tracing::warn!(error = %error, "Cannot watch definitions; trying again.");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let entry = tokio::select! {
            () = stop.cancelled() => return,
            entry = watch.next() => entry,
        };
        match entry {
            Some(Ok(entry)) if entry.operation == jetstream::kv::Operation::Put => {
                let activated = match store::decode_definition(&entry.key, &entry.value) {
                    Ok(stored) => definitions::activate(&shared, &stored).await.map(|_| ()),
                    Err(error) => Err(error),
                };
                if let Err(error) = activated {
                    tracing::error!(key = %entry.key, error = %error, "A loaded definition cannot be run here.");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => tracing::warn!(error = %error, "The definitions watch reported an error."),
            None => {
                tracing::warn!("The definitions watch ended.");
                return;
            }
        }
    }
}

/// How long the starts consumer waits before opening again after a failure, at first.
const STARTS_RETRY_FIRST: Duration = Duration::from_millis(250);

/// The longest wait before opening the starts consumer again.
const STARTS_RETRY_MAX: Duration = Duration::from_secs(5);

/// Starts instances from JetStream messages on `soa.wf.start.<workflow>`
/// until `stop`. A consumer that cannot be opened or read, or whose
/// message stream ends (the consumer was deleted, the server restarted), is
/// opened again after a pause that doubles up to [`STARTS_RETRY_MAX`], so
/// JetStream starts never stop for good while the orchestrator runs.
async fn take_starts(shared: Arc<Shared>, stop: CancellationToken) {
    let mut pause = STARTS_RETRY_FIRST;
    loop {
        let failure = match read_starts(&shared, &stop, &mut pause).await {
            Ok(()) => return,
            Err(failure) => failure,
        };
        tracing::warn!(error = %failure, retry_in = ?pause, "The starts consumer stopped; opening it again.");
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(STARTS_RETRY_MAX);
    }
}

/// One run of the starts consumer: `Ok` once told to stop, else why it
/// cannot go on. A message taken resets `pause` to its first value.
async fn read_starts(shared: &Shared, stop: &CancellationToken, pause: &mut Duration) -> Result<(), String> {
    let consumer = shared
        .stores
        .consumer(
            store::STARTS_STREAM,
            store::STARTS_CONSUMER,
            shared.config.ack_wait,
            1024,
        )
        .await
        .map_err(|error| format!("the consumer cannot be opened: {error}"))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(64)
        .messages()
        .await
        .map_err(|error| format!("the consumer cannot be read: {error}"))?;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = messages.next() => match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "The starts stream reported an error.");
                    continue;
                }
                None => return Err("its message stream ended".to_owned()),
            },
        };
        *pause = STARTS_RETRY_FIRST;
        let outcome = start_from_message(shared, &message).await;
        let settled = match outcome {
            Ok(()) => message.ack().await,
            Err(StartFailure::Retry(error)) => {
                tracing::warn!(error = %error, "A start message could not be handled now; retrying.");
                message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
            }
            Err(StartFailure::Refused(reason)) => {
                tracing::warn!(subject = %message.subject, reason = %reason, "Refused a start message; it goes to the dead letters.");
                match crate::runtime::dead_letter(
                    &shared.stores.js,
                    &message,
                    store::STARTS_STREAM,
                    store::STARTS_CONSUMER,
                    &reason,
                )
                .await
                {
                    Ok(()) => message.ack_with(AckKind::Term).await,
                    Err(error) => {
                        tracing::error!(error = %error, "Could not store the dead letter; the start message will be redelivered.");
                        message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
                    }
                }
            }
        };
        if let Err(error) = settled {
            tracing::warn!(error = %error, "Could not settle a start message; it will be redelivered.");
        }
    }
}

enum StartFailure {
    Retry(OrchestratorError),
    Refused(String),
}

async fn start_from_message(shared: &Shared, message: &jetstream::Message) -> Result<(), StartFailure> {
    let workflow = message
        .subject
        .as_str()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Some(loaded) = shared.resolve(&workflow) else {
        return Err(StartFailure::Refused(format!(
            "NOT_FOUND: no workflow {workflow:?} is loaded"
        )));
    };
    let mut request = api::decode_start(&message.payload).map_err(StartFailure::Refused)?;
    let inbound = message.headers.as_ref();
    if request.idempotency_key.is_none() {
        request.idempotency_key = wire::header(inbound, headers::MESSAGE_ID).map(str::to_owned);
    }
    let trace = wire::header(inbound, headers::TRACEPARENT)
        .and_then(|parent| TraceContext::parse(parent, wire::header(inbound, headers::TRACESTATE)))
        .map_or_else(TraceContext::new_root, |parent| parent.child());
    let propagation = Propagation {
        correlation_id: wire::correlation_id(inbound),
        trace,
    };
    match api::start_checked(shared, &loaded.id, request, &propagation, true).await {
        Ok(_) => Ok(()),
        Err(error @ (OrchestratorError::JetStream { .. } | OrchestratorError::Registry(_))) => {
            Err(StartFailure::Retry(error))
        }
        Err(error) => Err(StartFailure::Refused(api::start_failure(&error))),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}
