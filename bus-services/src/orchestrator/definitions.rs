//! Loading definitions and keeping the loaded ones ready to run: the called
//! contracts' clients, the generated contract, its event publisher, and the
//! workflow's own service (its `start` operation) for the latest version of
//! each major.

use std::collections::HashMap;
use std::sync::Arc;

use contracts::orchestrator_api::{LoadResponse, StartWorkflowRequest};
use contracts::registry_api::{GetRequest, RegisterRequest, ops as registry_ops};
use contracts::workflow::{WorkflowDefinition, check_against_contracts, start_subject, workflow_contract};
use contracts::{
    ContractDocument, ErrorDetail, MessageKey, MessageValidator, SchemaSet, ServiceName, compile_contract,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::error::OrchestratorError;
use super::store::{Created, StoredDefinition};
use super::{Shared, now_ms};
use crate::patience::{self, SETUP_PATIENCE};
use crate::runtime::{
    CallError, ConsumerConfig, EventContext, EventError, EventPublisher, Service, ServiceClient, ServiceConfig,
    ServiceError, consume_json,
};

/// A definition ready to run.
pub(crate) struct Loaded {
    /// The definition.
    pub definition: WorkflowDefinition,
    /// `name@version`.
    pub id: String,
    /// Its digest.
    pub digest: String,
    /// When it was loaded.
    pub loaded_at_ms: u64,
    /// The workflow's generated contract.
    pub contract: ContractDocument,
    /// The subject of its `start` operation.
    pub start_subject: String,
    /// A client per called `service@major`.
    pub clients: HashMap<(ServiceName, u64), ServiceClient>,
    /// Publishes the `finished` event, once its stream is made: at build,
    /// or, when JetStream did not answer then, at the first announcement.
    events: tokio::sync::OnceCell<EventPublisher>,
    /// The connection the publisher is made on.
    nats: async_nats::Client,
    /// Copies of the `finished` event stream.
    replicas: usize,
    /// Checks a start request (and so the input) against the generated contract.
    pub start_validator: Arc<MessageValidator>,
}

/// A running workflow service: the latest loaded version of one major.
pub(crate) struct RunningWorkflow {
    version: contracts::Version,
    stop: CancellationToken,
    tasks: Vec<AbortOnDropHandle<()>>,
}

impl RunningWorkflow {
    /// Stops the service and waits until it has deregistered.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "A workflow's task failed.");
            }
        }
    }
}

impl Loaded {
    /// Builds the runtime pieces of a stored definition; the stream of its
    /// `finished` events gets `replicas` copies.
    pub(crate) async fn build(
        nats: &async_nats::Client,
        stored: &StoredDefinition,
        replicas: usize,
    ) -> Result<Self, OrchestratorError> {
        let definition =
            WorkflowDefinition::from_json_value("stored definition", &stored.definition, None).map_err(|error| {
                OrchestratorError::Corrupt {
                    what: "definition",
                    key: String::new(),
                    message: error.to_string(),
                }
            })?;
        let id = definition.id();
        let corrupt = |message: String| OrchestratorError::Corrupt {
            what: "definition",
            key: id.clone(),
            message,
        };
        let contract = workflow_contract(&definition).map_err(|error| corrupt(error.to_string()))?;
        let start_subject = start_subject(&definition)
            .map_err(|error| corrupt(error.to_string()))?
            .to_string();
        let compiled = compile_contract(&contract, &SchemaSet::default())
            .map_err(|problems| corrupt(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
        let start = contracts::MemberName::parse("start").map_err(|error| corrupt(error.to_string()))?;
        let start_validator = compiled
            .validators
            .get(&MessageKey::Request(start))
            .cloned()
            .ok_or_else(|| corrupt("the generated contract has no start request".to_owned()))?;
        let mut clients = HashMap::new();
        for value in &stored.contracts {
            let document = ContractDocument::from_json_value("stored contract", value, None)
                .map_err(|error| corrupt(error.to_string()))?;
            let key = (document.service.clone(), document.version.major());
            clients.insert(key, ServiceClient::new(nats.clone(), document));
        }
        let loaded = Self {
            digest: stored.digest.clone(),
            loaded_at_ms: stored.loaded_at_ms,
            definition,
            id,
            contract,
            start_subject,
            clients,
            events: tokio::sync::OnceCell::new(),
            nats: nats.clone(),
            replicas,
            start_validator,
        };
        // The stream is made now when JetStream answers; otherwise at the
        // first announcement, which waits for it.
        if let Err(error) = loaded.events().await {
            tracing::warn!(workflow = %loaded.id, error = %error, "The workflow's finished event stream could not be made yet; it is made at the first announcement.");
        }
        Ok(loaded)
    }

    /// The publisher of the workflow's `finished` event, making its stream
    /// first if that has not been done yet. An error (JetStream did not
    /// answer, a cluster electing leaders) leaves it to be made at the next call.
    pub(crate) async fn events(&self) -> Result<&EventPublisher, EventError> {
        self.events
            .get_or_try_init(|| async {
                EventPublisher::with_replicas(
                    self.nats.clone(),
                    self.contract.clone(),
                    &SchemaSet::default(),
                    self.replicas,
                )
                .await
            })
            .await
    }
}

/// Makes a stored definition runnable here, once, and serves its `start`
/// operation when it is the latest version of its major.
pub(crate) async fn activate(
    shared: &Arc<Shared>,
    stored: &StoredDefinition,
) -> Result<Arc<Loaded>, OrchestratorError> {
    let id = stored
        .definition
        .get("name")
        .and_then(Value::as_str)
        .zip(stored.definition.get("version").and_then(Value::as_str))
        .map(|(name, version)| format!("{name}@{version}"));
    if let Some(loaded) = id.as_deref().and_then(|id| shared.definition(id)) {
        return Ok(loaded);
    }
    let loaded = Arc::new(Loaded::build(&shared.nats, stored, shared.config.replicas).await?);
    let loaded = Arc::clone(
        shared
            .definitions
            .entry(loaded.id.clone())
            .or_insert_with(|| Arc::clone(&loaded))
            .value(),
    );
    serve_latest(shared, &loaded);
    tracing::info!(workflow = %loaded.id, subject = %loaded.start_subject, "Workflow ready.");
    Ok(loaded)
}

/// Starts the workflow service of `loaded` if it is the newest version of
/// its major, stopping the one it replaces.
fn serve_latest(shared: &Arc<Shared>, loaded: &Arc<Loaded>) {
    let definition = &loaded.definition;
    let key = (definition.name.clone(), definition.version.major());
    let mut running = match shared.workflows.lock() {
        Ok(running) => running,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(current) = running.get(&key)
        && current.version >= definition.version
    {
        return;
    }
    let stop = shared.shutdown.child_token();
    let service = build_service(shared, loaded);
    let task = match service {
        Ok(service) => {
            let nats = shared.nats.clone();
            let token = stop.clone();
            let id = loaded.id.clone();
            tokio::spawn(async move {
                if let Err(error) = service.run(nats, token).await {
                    tracing::error!(workflow = %id, error = %error, "The workflow's service stopped.");
                }
            })
        }
        Err(error) => {
            tracing::error!(workflow = %loaded.id, error = %error, "The workflow's service cannot be built.");
            return;
        }
    };
    let mut tasks = vec![AbortOnDropHandle::new(task)];
    if let Some(trigger) = trigger_task(shared, loaded, &stop) {
        tasks.push(AbortOnDropHandle::new(trigger));
    }
    if let Some(previous) = running.insert(
        key,
        RunningWorkflow {
            version: definition.version.clone(),
            stop,
            tasks,
        },
    ) {
        previous.stop.cancel();
    }
}

/// Starts an instance for every event of the workflow's trigger, through a
/// durable consumer the replicas share; the event's message id is the
/// idempotency key, so a redelivered event starts nothing new.
fn trigger_task(
    shared: &Arc<Shared>,
    loaded: &Arc<Loaded>,
    stop: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let trigger = loaded.definition.trigger.clone()?;
    let Some(producer) = loaded
        .clients
        .get(&(trigger.event.service.clone(), trigger.event.major))
        .map(|client| client.contract().clone())
    else {
        tracing::error!(workflow = %loaded.id, event = %trigger.event, "The trigger's producer contract was not loaded; the trigger is off.");
        return None;
    };
    let definition = &loaded.definition;
    let durable = format!("workflow-{}-v{}", definition.name, definition.version.major());
    let handler_shared = Arc::clone(shared);
    let workflow = loaded.id.clone();
    let nats = shared.nats.clone();
    let token = stop.clone();
    let replicas = shared.config.replicas;
    let event = trigger.event.member.to_string();
    Some(tokio::spawn(async move {
        let handler = move |context: EventContext, payload: Value| {
            let shared = Arc::clone(&handler_shared);
            let workflow = workflow.clone();
            let mapping = trigger.input.clone();
            async move {
                let input = match &mapping {
                    None => payload,
                    Some(mapping) => {
                        let steps = std::collections::BTreeMap::new();
                        let scope = contracts::workflow::Scope {
                            input: &payload,
                            steps: &steps,
                            instance: "",
                        };
                        mapping.evaluate(&scope).map_err(|error| {
                            ServiceError::invalid(format!("the trigger's input mapping failed: {error}"), Vec::new())
                        })?
                    }
                };
                let request = StartWorkflowRequest {
                    input,
                    idempotency_key: context.message_id().map(str::to_owned),
                    correlation_id: None,
                };
                super::api::start_checked(&shared, &workflow, request, context.propagation(), true).await?;
                Ok(())
            }
        };
        let config = ConsumerConfig {
            replicas,
            ..ConsumerConfig::new(durable)
        };
        // `consume_json` fails only while setting up; a request that timed
        // out (a cluster electing leaders) is made again.
        let doing = format!("setting up the trigger of {}", config.durable_name);
        let consumed = patience::until_done(&doing, SETUP_PATIENCE, || {
            consume_json(
                nats.clone(),
                producer.clone(),
                &event,
                config.clone(),
                handler.clone(),
                token.clone(),
            )
        })
        .await;
        if let Err(error) = consumed {
            tracing::error!(error = %error, "The workflow's trigger stopped.");
        }
    }))
}

/// The workflow as a service: its generated contract and the `start` handler.
fn build_service(shared: &Arc<Shared>, loaded: &Arc<Loaded>) -> Result<Service, crate::runtime::BuildError> {
    let handler_shared = Arc::clone(shared);
    let workflow = loaded.id.clone();
    let config = ServiceConfig {
        registration: shared.config.registration.clone(),
        ..ServiceConfig::default()
    };
    Service::builder(loaded.contract.clone())
        .config(config)
        .handle_json("start", move |context, request| {
            let shared = Arc::clone(&handler_shared);
            let workflow = workflow.clone();
            async move {
                let request: StartWorkflowRequest = serde_json::from_value(request).map_err(|error| {
                    ServiceError::invalid(format!("the start request does not decode: {error}"), Vec::new())
                })?;
                let started = super::api::start(&shared, &workflow, request, context.propagation()).await?;
                serde_json::to_value(started).map_err(ServiceError::internal)
            }
        })
        .build()
}

/// Loads a definition: checks it, checks every operation it calls against
/// the registry, registers its generated contract, stores it (create-only)
/// and makes it runnable here.
pub(crate) async fn load(shared: &Arc<Shared>, document: &Value) -> Result<LoadResponse, OrchestratorError> {
    let definition = WorkflowDefinition::from_json_value("definition", document, None).map_err(|error| {
        OrchestratorError::InvalidDefinition {
            details: problems(error),
        }
    })?;
    let id = definition.id();
    // A loaded version never changes: say so before asking anyone else.
    if let Some(existing) = shared.stores.definition(&id).await? {
        if existing.digest != definition.digest() {
            return Err(conflict(&id));
        }
        let loaded = activate(shared, &existing).await?;
        return Ok(LoadResponse {
            workflow: id,
            digest: loaded.digest.clone(),
            created: false,
            start_subject: loaded.start_subject.clone(),
            warnings: Vec::new(),
        });
    }
    let mut contracts: HashMap<(ServiceName, u64), ContractDocument> = HashMap::new();
    let mut wanted: Vec<(ServiceName, u64)> = definition
        .called_operations()
        .into_iter()
        .map(|reference| (reference.service, reference.major))
        .collect();
    if let Some(trigger) = &definition.trigger {
        wanted.push((trigger.event.service.clone(), trigger.event.major));
    }
    wanted.sort();
    wanted.dedup();
    for (service, major) in wanted {
        if let Some(document) = fetch_contract(shared, &service, major).await? {
            contracts.insert((service, major), document);
        }
    }
    let outcome = check_against_contracts(&definition, &|service: &ServiceName, major: u64| {
        contracts.get(&(service.clone(), major)).cloned()
    });
    if !outcome.errors.is_empty() {
        return Err(OrchestratorError::InvalidDefinition {
            details: outcome
                .errors
                .into_iter()
                .map(|problem| ErrorDetail {
                    pointer: problem.pointer,
                    schema_path: None,
                    message: problem.message,
                })
                .collect(),
        });
    }
    let warnings: Vec<String> = outcome
        .warnings
        .iter()
        .map(|problem| format!("at {}: {}", problem.pointer, problem.message))
        .collect();
    let generated = workflow_contract(&definition).map_err(|error| OrchestratorError::InvalidDefinition {
        details: vec![ErrorDetail {
            pointer: String::new(),
            schema_path: None,
            message: format!("the workflow's contract cannot be generated: {error}"),
        }],
    })?;
    register_contract(shared, &generated).await?;
    let stored = StoredDefinition {
        definition: definition.to_value(),
        digest: definition.digest(),
        loaded_at_ms: now_ms(),
        contracts: contracts.values().map(ContractDocument::to_value).collect(),
    };
    // Another replica may have stored the same definition meanwhile: then
    // its record (and its load time) is the one to run.
    let (created, stored) = match shared.stores.create_definition(&id, &stored).await? {
        Created::New => (true, stored),
        Created::Exists(existing) if existing.digest == stored.digest => (false, existing),
        Created::Exists(_) => return Err(conflict(&id)),
    };
    let loaded = activate(shared, &stored).await?;
    Ok(LoadResponse {
        workflow: id,
        digest: loaded.digest.clone(),
        created,
        start_subject: loaded.start_subject.clone(),
        warnings,
    })
}

fn conflict(id: &str) -> OrchestratorError {
    OrchestratorError::Conflict(format!(
        "{id} is already loaded with other content; a loaded version never changes, so load this one as a new version"
    ))
}

/// The latest contract of `service@major` from the registry; `None` when
/// the registry has none.
async fn fetch_contract(
    shared: &Shared,
    service: &ServiceName,
    major: u64,
) -> Result<Option<ContractDocument>, OrchestratorError> {
    let request = GetRequest {
        service: service.clone(),
        version: None,
        major: Some(major),
    };
    match shared.registry.call::<registry_ops::Get>(&request).await {
        Ok(response) => Ok(Some(response.document)),
        Err(CallError::Service { body, .. }) if body.code == contracts::ErrorCode::NotFound => Ok(None),
        Err(error) => Err(OrchestratorError::Registry(error.to_string())),
    }
}

/// Registers the workflow's generated contract, so a refusal (a breaking
/// change within the major) stops the load before anything is stored.
async fn register_contract(shared: &Shared, contract: &ContractDocument) -> Result<(), OrchestratorError> {
    let request = RegisterRequest {
        document: contract.to_value(),
        owner_token: shared.config.owner_token.clone(),
    };
    match shared.registry.call::<registry_ops::Register>(&request).await {
        Ok(_) => Ok(()),
        Err(CallError::Service { body, .. }) => Err(OrchestratorError::InvalidDefinition {
            details: std::iter::once(ErrorDetail {
                pointer: String::new(),
                schema_path: None,
                message: format!(
                    "the registry refused the workflow's contract {}: {}",
                    contract.id(),
                    body.message
                ),
            })
            .chain(body.details)
            .collect(),
        }),
        Err(error) => Err(OrchestratorError::Registry(error.to_string())),
    }
}

/// A document error as error details with pointers.
fn problems(error: contracts::DocumentError) -> Vec<ErrorDetail> {
    match error {
        contracts::DocumentError::Invalid { problems, .. } => problems
            .into_iter()
            .map(|problem| ErrorDetail {
                pointer: problem.pointer,
                schema_path: None,
                message: problem.message,
            })
            .collect(),
        other => vec![ErrorDetail {
            pointer: String::new(),
            schema_path: None,
            message: other.to_string(),
        }],
    }
}
