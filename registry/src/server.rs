//! The registry service: the catalogue and a store behind the NATS API
//! `soa.registry.v1.*`, built on the runtime like any other service, from
//! its own contract (`contracts::registry_api::contract`).
//!
//! Writes go to the store first and reach the catalogue only once they are
//! durable, so nothing is acknowledged that a restart would forget.
//! Registrations of one service are serialized; different services register
//! concurrently, which lets the embedded store commit them together.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use bus_services::runtime::{Context, Service, ServiceConfig, ServiceError};
use contracts::registry_api::{
    ChangeKind, DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse, RegisterRequest,
    RegisterResponse, RegistryChange, RegistryRequest, ops,
};
use contracts::{ContractId, ErrorBody, ErrorCode, ServiceName};
use futures::StreamExt;

use crate::catalog::{Catalog, EvictionGuard, Registration, now_ms};
use crate::metrics::{Metrics, Via};
use crate::store::{ContractRecord, Inserted, Store, StoreError};

/// How the registry runs, beyond its store.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Refuse registrations with changes the checker cannot decide.
    pub strict: bool,
    /// How many instances may expire at once.
    pub guard: EvictionGuard,
    /// How often overdue instances are looked for.
    pub expiry_interval: Duration,
    /// Follow every heartbeat, not only those this replica answers: needed
    /// when replicas share a store, so each knows every instance.
    pub observe_all_beats: bool,
    /// The runtime's settings for the registry service itself.
    pub service: ServiceConfig,
    /// Refuse every registration that would store something (`UNAUTHORIZED`,
    /// saying the registry is read-only), over NATS and HTTP alike. Reads,
    /// heartbeats and deregistrations of instances (soft state, never
    /// stored) go on, and registering a version exactly as stored is
    /// answered as usual (nothing is written), so services restart, beat
    /// and keep serving against a read-only registry.
    pub read_only: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            strict: false,
            guard: EvictionGuard::default(),
            expiry_interval: Duration::from_secs(1),
            observe_all_beats: false,
            service: ServiceConfig::default(),
            read_only: false,
        }
    }
}

/// Why the registry could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store could not be read.
    #[error("could not load the registry's store: {0}")]
    Load(#[source] StoreError),
    /// The registry's own contract does not build (a bug).
    #[error("the registry's own contract is invalid: {0}")]
    Contract(String),
    /// The service could not be built or run.
    #[error(transparent)]
    Build(#[from] bus_services::runtime::BuildError),
    /// The service stopped with an error.
    #[error(transparent)]
    Run(#[from] bus_services::runtime::RunError),
    /// Following the store or the heartbeats failed to start.
    #[error("could not follow {what}: {reason}")]
    Follow {
        /// What was to be followed.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// A loaded registry, ready to serve.
pub struct Registry {
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    options: RegistryOptions,
    /// Per-service write locks.
    writes: DashMap<ServiceName, Arc<tokio::sync::Mutex<()>>>,
    /// How long loading the store and rebuilding the catalogue took.
    load_time: Duration,
    /// Registrations by outcome (and the HTTP side's requests).
    metrics: Arc<Metrics>,
    /// Where changes are announced, once the registry runs on NATS.
    announcer: OnceLock<Announcer>,
    /// The registry's own service on the runtime while it runs: its
    /// per-verb counters feed the metrics. Cleared when the run ends (or is
    /// dropped), since the service's handlers hold the registry: keeping it
    /// longer would keep the registry, and its store, alive for good.
    service: std::sync::Mutex<Option<Service>>,
}

/// Forgets the registry's service when a run ends, however it ends.
struct ForgetService<'a>(&'a Registry);

impl Drop for ForgetService<'_> {
    fn drop(&mut self) {
        if let Ok(mut service) = self.0.service.lock() {
            service.take();
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.kind())
            .field("versions", &self.catalog.version_count())
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Loads every record of `store` into a new catalogue.
    pub async fn open(store: Arc<dyn Store>, options: RegistryOptions) -> Result<Self, RegistryError> {
        let started = Instant::now();
        let records = store.load_raw().await.map_err(RegistryError::Load)?;
        let (strict, guard) = (options.strict, options.guard);
        // Parsing tens of thousands of documents is CPU work: off the runtime's threads.
        let catalog = tokio::task::spawn_blocking(move || Catalog::from_records(records, strict, guard))
            .await
            .map_err(|err| {
                RegistryError::Load(StoreError::Unavailable {
                    store: "catalogue",
                    reason: format!("rebuilding the catalogue failed: {err}"),
                })
            })?
            .map_err(RegistryError::Load)?;
        let load_time = started.elapsed();
        tracing::info!(
            store = store.kind(),
            services = catalog.service_count(),
            versions = catalog.version_count(),
            load_ms = load_time.as_millis(),
            "The registry loaded its store."
        );
        Ok(Self {
            catalog: Arc::new(catalog),
            store,
            options,
            writes: DashMap::new(),
            load_time,
            metrics: Arc::new(Metrics::default()),
            announcer: OnceLock::new(),
            service: std::sync::Mutex::new(None),
        })
    }

    /// Whether the registry refuses every write ([`RegistryOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.options.read_only
    }

    /// The catalogue, for the HTTP API and for tests.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// How long [`Registry::open`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The registry's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics in the OpenMetrics text format, with the NATS API's
    /// per-verb counters brought up to date.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let stats = self
            .service
            .lock()
            .ok()
            .and_then(|service| service.as_ref().map(Service::stats));
        if let Some(stats) = stats {
            self.metrics.observe_nats(&stats);
        }
        self.metrics.encode(&self.catalog, Instant::now())
    }

    /// Registers `request` (received through `via`): every rule, then the
    /// store, then the catalogue; counts the outcome and, once the registry
    /// runs on NATS, announces a new version. Returns the reply (and whether
    /// the version is new) or the refusal.
    pub async fn register(&self, request: RegisterRequest, via: Via) -> Result<(RegisterResponse, bool), ErrorBody> {
        let named = named_version(&request.document);
        let outcome = self.register_quietly(request).await;
        if let Err(refusal) = &outcome
            && refusal.code == ErrorCode::Unauthorized
        {
            // An access refusal is worth an operator's attention; the
            // message names the rule, never the credential.
            log_refused_write(&named, via.as_str(), &refusal.message);
        }
        self.metrics.record_registration(via, &outcome);
        if let (Ok((response, true)), Some(announcer)) = (&outcome, self.announcer.get()) {
            announcer
                .send(ChangeKind::Registered, &response.id, &response.digest, None)
                .await;
        }
        outcome
    }

    async fn register_quietly(&self, request: RegisterRequest) -> Result<(RegisterResponse, bool), ErrorBody> {
        let service = request
            .document
            .get("service")
            .and_then(|value| value.as_str())
            .and_then(|name| ServiceName::parse(name).ok());
        // Serialize writes per service; an unreadable name fails in the rules.
        let lock = service.map(|service| Arc::clone(&self.writes.entry(service).or_default()));
        let _guard = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        // The rules are CPU work (parsing, linting, compiling schemas, diffs):
        // off the runtime's threads, so registrations of different services
        // use every core and other requests are not held up.
        let catalog = Arc::clone(&self.catalog);
        let RegisterRequest { document, owner_token } = request;
        let named = named_version(&document);
        let prepared = tokio::task::spawn_blocking(move || {
            catalog.prepare_registration(&document, owner_token.as_deref(), now_ms())
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "The registration rules failed to run.");
            ErrorBody::new(ErrorCode::Internal, "the registry failed to check the contract")
        })?;
        // Read-only: only a version exactly as stored is answered (nothing is written).
        if self.options.read_only && !matches!(prepared, Ok(Registration::AlreadyStored(_))) {
            return Err(read_only_refusal(&named));
        }
        let registration = prepared.map_err(|refusal| refusal.body())?;
        match registration {
            Registration::AlreadyStored(response) => Ok((response, false)),
            Registration::New { record, response } => {
                let inserted = self.store.insert((*record).clone()).await.map_err(store_error_body)?;
                self.accept(*record);
                // Another replica may have stored the same record a moment before.
                let created = inserted == Inserted::Created;
                Ok((RegisterResponse { created, ..response }, created))
            }
        }
    }

    /// Puts a durable record into the catalogue and clears the drift of
    /// instances that now serve a registered version.
    fn accept(&self, record: ContractRecord) {
        let service = record.document.service.clone();
        if self.catalog.insert(record) {
            let catalog = Arc::clone(&self.catalog);
            let cleared = self
                .catalog
                .instances()
                .recheck_drift(&service, |digest| catalog.is_registered_digest(&service, digest));
            if !cleared.is_empty() {
                tracing::info!(%service, instances = cleared.len(), "Instances no longer drift.");
            }
        }
    }

    /// Serves the NATS API on `nats` until `shutdown`, then drains and
    /// deregisters like any service.
    pub async fn run(self, nats: async_nats::Client, shutdown: CancellationToken) -> Result<(), RegistryError> {
        Arc::new(self).run_shared(nats, shutdown).await
    }

    /// [`Registry::run`] on a registry shared with another API (the HTTP
    /// one), so both answer from the same catalogue.
    pub async fn run_shared(
        self: Arc<Self>,
        nats: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), RegistryError> {
        let registry = self;
        // A registry already announcing (run twice) keeps its first connection.
        let _ = registry.announcer.set(Announcer { nats: nats.clone() });
        let contract = contracts::registry_api::contract().map_err(|err| RegistryError::Contract(err.to_string()))?;
        let background = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(stream) = registry.store.follow().await.map_err(|err| RegistryError::Follow {
            what: "the store",
            reason: err.to_string(),
        })? {
            tasks.spawn(follow_store(Arc::clone(&registry), stream, background.clone()));
        }
        tasks.spawn(expire_instances(
            Arc::clone(&registry),
            nats.clone(),
            background.clone(),
        ));
        if registry.options.observe_all_beats {
            let beats = nats
                .subscribe(HeartbeatRequest::subject())
                .await
                .map_err(|err| RegistryError::Follow {
                    what: "heartbeats",
                    reason: err.to_string(),
                })?;
            let leaves = nats
                .subscribe(DeregisterRequest::subject())
                .await
                .map_err(|err| RegistryError::Follow {
                    what: "deregistrations",
                    reason: err.to_string(),
                })?;
            tasks.spawn(observe_beats(Arc::clone(&registry), beats, leaves, background.clone()));
        }
        let service = build_service(&registry, contract, &nats)?;
        if let Ok(mut running) = registry.service.lock() {
            *running = Some(service.clone());
        }
        let _forget = ForgetService(&registry);
        let result = service.run(nats, shutdown).await;
        background.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(result?)
    }
}

/// The registry's handlers on the runtime.
fn build_service(
    registry: &Arc<Registry>,
    contract: contracts::ContractDocument,
    nats: &async_nats::Client,
) -> Result<Service, RegistryError> {
    let events = Announcer { nats: nats.clone() };
    let state = Arc::clone(registry);
    let builder = Service::builder(contract)
        .config(registry.options.service.clone())
        .handle::<ops::Register, _, _>(move |_: Context, request: RegisterRequest| {
            let state = Arc::clone(&state);
            async move {
                let (response, _) = state.register(request, Via::Nats).await.map_err(ServiceError::from)?;
                Ok(response)
            }
        });
    let state = Arc::clone(registry);
    let announce = events.clone();
    let builder = builder.handle::<ops::Heartbeat, _, _>(move |_: Context, request: HeartbeatRequest| {
        let (state, announce) = (Arc::clone(&state), announce.clone());
        async move {
            let outcome = state
                .catalog
                .heartbeat(&request, Instant::now(), true)
                .map_err(ServiceError::from)?;
            if outcome.first_beat {
                announce
                    .send(ChangeKind::InstanceUp, &request.contract, &request.digest, Some(&request.instance_id))
                    .await;
            }
            if outcome.drift_changed && outcome.drift {
                tracing::warn!(instance = %request.instance_id, contract = %request.contract, "An instance serves a contract that matches no registered version.");
                announce
                    .send(ChangeKind::Drift, &request.contract, &request.digest, Some(&request.instance_id))
                    .await;
            }
            Ok(HeartbeatResponse { drift: outcome.drift })
        }
    });
    let state = Arc::clone(registry);
    let announce = events;
    let builder = builder.handle::<ops::Deregister, _, _>(move |_: Context, request: DeregisterRequest| {
        let (state, announce) = (Arc::clone(&state), announce.clone());
        async move {
            let removed = state.catalog.instances().remove(&request.instance_id);
            if let Some((contract, digest)) = &removed {
                announce
                    .send(ChangeKind::InstanceDown, contract, digest, Some(&request.instance_id))
                    .await;
            }
            Ok(DeregisterResponse {
                removed: removed.is_some(),
            })
        }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Get, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { state.catalog.get(&request).map_err(ServiceError::from) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Versions, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { state.catalog.versions(&request).map_err(ServiceError::from) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::List, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { Ok(state.catalog.list(&request, Instant::now())) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Search, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { Ok(state.catalog.search(&request, Instant::now())) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Resolve, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { Ok(state.catalog.resolve(&request)) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Consumers, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { state.catalog.consumers(&request).map_err(ServiceError::from) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Graph, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { Ok(state.catalog.graph(&request)) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Instances, _, _>(move |_, request| {
        let state = Arc::clone(&state);
        async move { Ok(state.catalog.list_instances(&request, Instant::now())) }
    });
    let state = Arc::clone(registry);
    let builder = builder.handle::<ops::Check, _, _>(move |_, request: contracts::registry_api::CheckRequest| {
        let state = Arc::clone(&state);
        async move {
            Ok(state
                .catalog
                .check_candidate(&request.document, request.owner_token.as_deref()))
        }
    });
    Ok(builder.build()?)
}

/// Publishes registry changes on `soa.registry.v1.events.<kind>`.
#[derive(Clone)]
struct Announcer {
    nats: async_nats::Client,
}

impl Announcer {
    async fn send(&self, kind: ChangeKind, contract: &ContractId, digest: &str, instance_id: Option<&str>) {
        let change = RegistryChange {
            kind,
            contract: contract.clone(),
            digest: digest.to_owned(),
            instance_id: instance_id.map(str::to_owned),
            at_ms: now_ms(),
        };
        match serde_json::to_vec(&change) {
            Ok(payload) => {
                if let Err(err) = self.nats.publish(kind.subject(), payload.into()).await {
                    tracing::warn!(error = %err, kind = kind.as_str(), "Could not announce a registry change.");
                }
            }
            Err(err) => tracing::warn!(error = %err, "Could not encode a registry change."),
        }
    }
}

/// `service@version` as a registration's document names it, for messages
/// and logs (`?` for what it does not say or says wrongly).
pub(crate) fn named_version(document: &serde_json::Value) -> String {
    let text = |key: &str| {
        document
            .get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|text| text.len() <= 128 && !text.chars().any(char::is_control))
            .unwrap_or("?")
            .to_owned()
    };
    format!("{}@{}", text("service"), text("version"))
}

/// The refusal of a write to a read-only registry.
pub(crate) fn read_only_refusal(named: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Unauthorized,
        format!(
            "the registry is read-only (started with --read-only): {named} was not registered; \
             register with a registry that accepts writes"
        ),
    )
}

/// Logs a refused write at warn: which service version, through which API
/// (`nats` or `http`), and why, in the refusal's words (which never hold
/// a credential).
pub(crate) fn log_refused_write(named: &str, api: &str, reason: &str) {
    tracing::warn!(service = %named, api, reason, "Refused a registry write.");
}

/// The error reply for a store failure.
fn store_error_body(error: StoreError) -> ErrorBody {
    match &error {
        StoreError::Conflict { .. } => ErrorBody::new(ErrorCode::Conflict, error.to_string()),
        StoreError::OwnerMismatch { .. } => ErrorBody::new(ErrorCode::Unauthorized, error.to_string()),
        StoreError::Corrupt { .. } | StoreError::Unavailable { .. } => {
            tracing::error!(error = %error, "The store refused a write; nothing was acknowledged.");
            ErrorBody::new(
                ErrorCode::Unavailable,
                "the registry could not store the contract durably; nothing was registered, try again",
            )
        }
    }
}

/// Applies records other replicas stored.
async fn follow_store(
    registry: Arc<Registry>,
    mut stream: futures::stream::BoxStream<'static, Result<ContractRecord, StoreError>>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(record)) => registry.accept(record),
            Some(Err(err)) => tracing::error!(error = %err, "A record from the shared store could not be read."),
            None => {
                tracing::warn!("The shared store's watch ended; this replica no longer sees other replicas' writes.");
                return;
            }
        }
    }
}

/// Expires instances that stopped beating, within the eviction guard.
async fn expire_instances(registry: Arc<Registry>, nats: async_nats::Client, stop: CancellationToken) {
    let announce = Announcer { nats };
    let mut ticker = tokio::time::interval(registry.options.expiry_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut holding = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let report = registry.catalog.instances().expire(Instant::now());
        if report.held_back > 0 && !holding {
            tracing::warn!(
                overdue = report.held_back,
                "Most instances missed their heartbeats at once; keeping them until beats flow again (a registry pause or a network problem is likelier than a mass failure)."
            );
        }
        holding = report.held_back > 0;
        registry.metrics.record_expired(report.expired.len());
        for (instance_id, contract, digest) in report.expired {
            tracing::info!(instance = %instance_id, %contract, "An instance missed its heartbeats and expired.");
            announce
                .send(ChangeKind::InstanceExpired, &contract, &digest, Some(&instance_id))
                .await;
        }
    }
}

/// Follows every heartbeat and deregistration on the bus, including those
/// another replica answers, so every replica knows every instance.
async fn observe_beats(
    registry: Arc<Registry>,
    mut beats: async_nats::Subscriber,
    mut leaves: async_nats::Subscriber,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(message) = beats.next() => {
                if let Ok(request) = serde_json::from_slice::<HeartbeatRequest>(&message.payload) {
                    // An unknown contract is answered by the replica that owns the reply.
                    let _ = registry.catalog.heartbeat(&request, Instant::now(), false);
                }
            }
            Some(message) = leaves.next() => {
                if let Ok(request) = serde_json::from_slice::<DeregisterRequest>(&message.payload) {
                    registry.catalog.instances().remove(&request.instance_id);
                }
            }
            else => return,
        }
    }
}
