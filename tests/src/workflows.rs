//! A small service with effects for orchestrator tests (`ledger`), scripted
//! to fail, hang or slow down per step, and an in-process orchestrator.
//!
//! The ledger records each effect once per idempotency key, as a real
//! service must: a request repeated with the same key gets the first answer
//! and changes nothing, so the tests can count effects per instance and step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_services::orchestrator::{Orchestrator, OrchestratorConfig, OrchestratorError, OrchestratorStats};
use bus_services::runtime::{Service, ServiceClient, ServiceConfig, ServiceError};
use contracts::ContractDocument;
use contracts::orchestrator_api::{InstanceState, ShowRequest, ops};
use contracts::registry_api::{RegisterRequest, ops as registry_ops};
use registry::store::MemoryStore;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::NatsServer;
use crate::registry::RunningRegistry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The ledger's contract: `apply` a step's effect, `undo` it.
pub fn ledger_contract() -> Result<ContractDocument, BoxError> {
    let entry = json!({
        "type": "object",
        "required": ["step", "order"],
        "properties": {"step": {"type": "string"}, "order": {"type": "string"}, "amount": {"type": "integer"}},
        "additionalProperties": false
    });
    let document = json!({
        "contract": "soabus/v1",
        "service": "ledger",
        "version": "1.0.0",
        "description": "Effects the orchestrator tests count",
        "owner": "tests",
        "operations": {
            "apply": {
                "subject": "test.ledger.v1.apply",
                "description": "Apply a step's effect once per idempotency key",
                "request": entry,
                "response": {
                    "type": "object",
                    "required": ["step", "order", "effect"],
                    "properties": {"step": {"type": "string"}, "order": {"type": "string"}, "effect": {"type": "integer"}}
                },
                "errors": ["REFUSED"],
                "idempotent": true
            },
            "undo": {
                "subject": "test.ledger.v1.undo",
                "description": "Undo a step's effect",
                "request": {
                    "type": "object",
                    "required": ["step", "order", "effect"],
                    "properties": {"step": {"type": "string"}, "order": {"type": "string"}, "effect": {"type": "integer"}},
                    "additionalProperties": false
                },
                "response": {"type": "object", "required": ["undone"], "properties": {"undone": {"type": "boolean"}}},
                "errors": ["REFUSED"],
                "idempotent": true
            }
        }
    });
    Ok(ContractDocument::from_json_value("ledger", &document, None)?)
}

/// How the ledger answers `apply` for one step name.
#[derive(Debug, Clone)]
pub enum Script {
    /// Answer this error code the first `times` attempts (per order), then succeed.
    FailTimes {
        /// Failing attempts.
        times: u32,
        /// The code (`UNAVAILABLE`, `TIMEOUT` or `REFUSED`).
        code: String,
    },
    /// Always refuse with `REFUSED`.
    Refuse,
    /// Take this long before answering.
    Delay(Duration),
}

/// What the ledger saw and did.
#[derive(Debug, Default)]
pub struct LedgerLog {
    /// Effects applied, `(order, step)`, in order; one per distinct key.
    pub applied: Vec<(String, String)>,
    /// Effects undone, `(order, step)`, in order.
    pub undone: Vec<(String, String)>,
    /// Requests received per `(order, step)`, repeats included.
    pub requests: HashMap<(String, String), u32>,
    /// Answers per idempotency key.
    answers: HashMap<String, Result<Value, (String, String)>>,
    /// Failures already given per `(order, step)`.
    failures: HashMap<(String, String), u32>,
}

/// The scripted ledger service.
#[derive(Clone, Default)]
pub struct Ledger {
    log: Arc<Mutex<LedgerLog>>,
    scripts: Arc<Mutex<HashMap<String, Script>>>,
}

impl Ledger {
    /// Scripts `apply` for step `step`.
    pub fn script(&self, step: &str, script: Script) {
        if let Ok(mut scripts) = self.scripts.lock() {
            scripts.insert(step.to_owned(), script);
        }
    }

    /// Reads the log.
    pub fn read<T>(&self, read: impl FnOnce(&LedgerLog) -> T) -> T {
        match self.log.lock() {
            Ok(log) => read(&log),
            Err(poisoned) => read(&poisoned.into_inner()),
        }
    }

    /// The ledger as a service on the runtime (unregistered: the tests
    /// register its contract themselves).
    pub fn service(&self) -> Result<Service, BoxError> {
        self.service_with(ServiceConfig {
            registration: None,
            handler_timeout: Duration::from_secs(30),
            ..ServiceConfig::default()
        })
    }

    /// The ledger as a service on the runtime with `config` (to register
    /// itself, for one).
    pub fn service_with(&self, config: ServiceConfig) -> Result<Service, BoxError> {
        let apply = self.clone();
        let undo = self.clone();
        Ok(Service::builder(ledger_contract()?)
            .config(config)
            .handle_json("apply", move |context, request| {
                let ledger = apply.clone();
                async move {
                    ledger
                        .apply(context.idempotency_key().map(str::to_owned), request)
                        .await
                }
            })
            .handle_json("undo", move |context, request| {
                let ledger = undo.clone();
                async move { ledger.undo(context.idempotency_key().map(str::to_owned), request) }
            })
            .build()?)
    }

    async fn apply(&self, key: Option<String>, request: Value) -> Result<Value, ServiceError> {
        let step = request["step"].as_str().unwrap_or_default().to_owned();
        let order = request["order"].as_str().unwrap_or_default().to_owned();
        let script = self.scripts.lock().ok().and_then(|scripts| scripts.get(&step).cloned());
        if let Some(Script::Delay(delay)) = script {
            tokio::time::sleep(delay).await;
        }
        let mut log = self
            .log
            .lock()
            .map_err(|_| ServiceError::internal("the log is poisoned"))?;
        *log.requests.entry((order.clone(), step.clone())).or_default() += 1;
        if let Some(answer) = key.as_ref().and_then(|key| log.answers.get(key)) {
            return answer.clone().map_err(|(code, message)| error(&code, message));
        }
        let answer = match script {
            Some(Script::Refuse) => Err(("REFUSED".to_owned(), format!("{step} refused for {order}"))),
            Some(Script::FailTimes { times, code }) => {
                let failures = log.failures.entry((order.clone(), step.clone())).or_default();
                if *failures < times {
                    *failures += 1;
                    Err((code, format!("{step} failed for {order} ({failures} of {times})")))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        };
        let answer = answer.map(|()| {
            log.applied.push((order.clone(), step.clone()));
            json!({"step": step, "order": order, "effect": log.applied.len()})
        });
        if let Some(key) = key {
            log.answers.insert(key, answer.clone());
        }
        answer.map_err(|(code, message)| error(&code, message))
    }

    fn undo(&self, key: Option<String>, request: Value) -> Result<Value, ServiceError> {
        let step = request["step"].as_str().unwrap_or_default().to_owned();
        let order = request["order"].as_str().unwrap_or_default().to_owned();
        let mut log = self
            .log
            .lock()
            .map_err(|_| ServiceError::internal("the log is poisoned"))?;
        if let Some(key) = &key
            && log.answers.contains_key(key)
        {
            return Ok(json!({"undone": true}));
        }
        log.undone.push((order, step));
        if let Some(key) = key {
            log.answers.insert(key, Ok(json!({"undone": true})));
        }
        Ok(json!({"undone": true}))
    }
}

fn error(code: &str, message: String) -> ServiceError {
    match code {
        "UNAVAILABLE" => ServiceError::unavailable(message),
        "TIMEOUT" => ServiceError::from(contracts::ErrorBody::new(contracts::ErrorCode::Timeout, message)),
        other => ServiceError::declared(other, message),
    }
}

/// Registers the ledger's contract with the registry behind `registry`.
pub async fn register_ledger(registry: &ServiceClient) -> Result<(), BoxError> {
    registry
        .call::<registry_ops::Register>(&RegisterRequest {
            document: ledger_contract()?.to_value(),
            owner_token: None,
        })
        .await?;
    Ok(())
}

/// A call step of the ledger with a compensation, for test definitions.
pub fn ledger_step(id: &str, timeout: &str) -> Value {
    json!({
        "id": id,
        "call": "ledger@1#apply",
        "input": {"step": id, "order": "$input/order"},
        "timeout": timeout,
        "retry": {"attempts": 3, "initial_interval": "50ms", "multiplier": 2, "max_interval": "500ms", "jitter": 0.1},
        "compensate": {
            "call": "ledger@1#undo",
            "input": {"step": id, "order": "$input/order", "effect": format!("$steps/{id}/effect")}
        }
    })
}

/// A definition named `name` with `steps`, taking `{"order": string}`.
pub fn ledger_workflow(name: &str, steps: Vec<Value>) -> Value {
    json!({
        "workflow": "soabus/workflow/v1",
        "name": name,
        "version": "1.0.0",
        "description": "A test workflow over the ledger",
        "owner": "tests",
        "domain": "test",
        "input": {
            "type": "object",
            "required": ["order"],
            "properties": {"order": {"type": "string"}, "express": {"type": "boolean"}}
        },
        "steps": steps
    })
}

/// A server, a registry holding the ledger's contract, and the ledger
/// serving: what every orchestrator test starts from.
pub struct LedgerBus {
    /// The server.
    pub server: NatsServer,
    /// The registry (memory store).
    pub registry: RunningRegistry,
    /// The ledger, to script and read.
    pub ledger: Ledger,
    /// Stops the ledger when dropped.
    pub ledger_stop: tokio_util::sync::DropGuard,
}

impl LedgerBus {
    /// Starts them all.
    pub async fn start() -> Result<Self, BoxError> {
        crate::init_tracing();
        let server = NatsServer::start().await?;
        let registry =
            RunningRegistry::start(&server, Arc::new(MemoryStore::new()), crate::registry::test_options()).await?;
        register_ledger(&crate::registry::registry_client(&server).await?).await?;
        let ledger = Ledger::default();
        let stop = CancellationToken::new();
        let service = ledger.service()?;
        let nats = server.client().await?;
        let token = stop.clone();
        tokio::spawn(async move { service.run(nats, token).await });
        Ok(Self {
            server,
            registry,
            ledger,
            ledger_stop: stop.drop_guard(),
        })
    }
}

/// Orchestrator settings for tests: a short ack wait, so recovery is quick,
/// and no self-registration.
pub fn test_config() -> OrchestratorConfig {
    OrchestratorConfig {
        ack_wait: Duration::from_secs(2),
        sweep_interval: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(5),
        registration: None,
        ..OrchestratorConfig::default()
    }
}

/// An orchestrator replica running in this process.
pub struct RunningOrchestrator {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), OrchestratorError>>,
    stats: Arc<OrchestratorStats>,
}

impl RunningOrchestrator {
    /// Starts a replica on `server`; returns once its API answers.
    pub async fn start(server: &NatsServer, config: OrchestratorConfig) -> Result<Self, BoxError> {
        let orchestrator = Orchestrator::new(config);
        let stats = orchestrator.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(orchestrator.run(server.client().await?, shutdown.clone()));
        let client = orchestrator_client(server).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if client.call::<ops::Definitions>(&Default::default()).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err("the orchestrator did not answer within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { shutdown, task, stats })
    }

    /// The replica's counters.
    pub fn stats(&self) -> &OrchestratorStats {
        &self.stats
    }

    /// Stops it cleanly and waits.
    pub async fn stop(self) -> Result<(), BoxError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task).await???;
        Ok(())
    }

    /// Kills it: the task is aborted mid-whatever, as a killed process would be.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A client of the orchestrator's API on `server`.
pub async fn orchestrator_client(server: &NatsServer) -> Result<ServiceClient, BoxError> {
    Ok(ServiceClient::new(
        server.client().await?,
        contracts::orchestrator_api::contract()?,
    ))
}

/// Polls an instance until it ends; an error after `timeout`.
pub async fn wait_final(client: &ServiceClient, instance: &str, timeout: Duration) -> Result<InstanceState, BoxError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let shown = client
            .call::<ops::Show>(&ShowRequest {
                instance: instance.to_owned(),
            })
            .await?;
        if shown.instance.status.is_final() {
            return Ok(shown.instance);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{instance} did not end within {timeout:?}: {}",
                serde_json::to_string_pretty(&shown.instance).unwrap_or_default()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
