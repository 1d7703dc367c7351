//! A service built from a contract and one handler per operation: it
//! validates every request before its handler sees it and every response
//! before it leaves, answers NATS micro discovery, registers with the
//! registry, and shuts down by draining.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Message;
use contracts::envelope::headers;
use contracts::subjects::{self, DiscoveryVerb};
use contracts::{
    CompiledContract, ContractDocument, ContractId, ErrorBody, ErrorCode, ErrorDetail, MemberName, MessageKey,
    MessageValidator, OperationType, SchemaProblem, SchemaSet, compile_contract,
};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::context::{Context, Propagation};
use super::error::ServiceError;
use super::micro::{
    EndpointCounters, EndpointInfo, INFO_RESPONSE_TYPE, Identity, InfoResponse, PING_RESPONSE_TYPE, PingResponse,
    STATS_RESPONSE_TYPE, StatsResponse, now_rfc3339,
};
use super::registration::{self, RegistrationConfig};
use super::trace::TraceContext;
use crate::wire::{self, Envelope};

/// A handler as the runtime stores it: JSON in, JSON out.
type BoxedHandler = Arc<dyn Fn(Context, Value) -> BoxFuture<'static, Result<Value, ServiceError>> + Send + Sync>;

/// How a service runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// This instance's id (a fresh NUID by default).
    pub instance_id: String,
    /// The queue group instances share (the service name by default).
    pub queue_group: Option<String>,
    /// The longest a handler may run before the caller gets `TIMEOUT`. Keep
    /// it below callers' timeouts (5 s by default), or they give up first.
    pub handler_timeout: Duration,
    /// Requests handled at once per operation; more wait in the subscription.
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight handlers.
    pub shutdown_timeout: Duration,
    /// Registration with the registry; `None` to run unregistered.
    pub registration: Option<RegistrationConfig>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            instance_id: nuid::next().to_string(),
            queue_group: None,
            handler_timeout: Duration::from_secs(4),
            max_in_flight: 1024,
            shutdown_timeout: Duration::from_secs(10),
            registration: Some(RegistrationConfig::default()),
        }
    }
}

/// Why a service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The contract's schemas do not compile.
    #[error("the contract {contract} does not compile:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Contract {
        /// The contract.
        contract: String,
        /// Every problem.
        problems: Vec<SchemaProblem>,
    },
    /// An operation of the contract has no handler.
    #[error("{contract} declares operation {operation:?} but no handler was given for it; add .handle::<...>() for it")]
    MissingHandler {
        /// The contract.
        contract: String,
        /// The operation without a handler.
        operation: String,
    },
    /// A handler was given for an operation the contract does not declare.
    #[error("a handler was given for {operation:?}, which {contract} does not declare (it declares: {declared})")]
    UnknownOperation {
        /// The contract.
        contract: String,
        /// The handler's operation.
        operation: String,
        /// What the contract declares.
        declared: String,
    },
}

/// Why a running service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The server is older than soabus supports.
    #[error(transparent)]
    Server(#[from] crate::connection::ConnectError),
    /// A subscription ended while the service was running (the connection
    /// closed for good), so the service stopped.
    #[error(
        "a subscription ended while the service was running: the NATS connection closed for good, or \
         async-nats' connection task stopped (async-nats 0.51 panics on a message whose header value \
         holds a lone carriage return, nats-io/nats.rs#1612); restart the service"
    )]
    SubscriptionEnded,
    /// Subscribing failed.
    #[error("could not subscribe to {subject}: {message}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client reported.
        message: String,
    },
}

/// Collects a contract and its handlers; [`ServiceBuilder::build`] checks
/// they match.
pub struct ServiceBuilder {
    document: ContractDocument,
    external: SchemaSet,
    handlers: Vec<(String, BoxedHandler)>,
    config: ServiceConfig,
}

impl ServiceBuilder {
    /// Starts a service for `document`.
    pub fn new(document: ContractDocument) -> Self {
        Self {
            document,
            external: SchemaSet::default(),
            handlers: Vec::new(),
            config: ServiceConfig::default(),
        }
    }

    /// Contracts that `soa://` references in this one point into.
    pub fn schemas(mut self, external: SchemaSet) -> Self {
        self.external = external;
        self
    }

    /// Sets how the service runs.
    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// Handles operation `Op` with `handler`, a plain
    /// `async fn(Context, Request) -> Result<Response, ServiceError>`.
    pub fn handle<Op, F, Fut>(mut self, handler: F) -> Self
    where
        Op: OperationType,
        F: Fn(Context, Op::Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Op::Response, ServiceError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let boxed: BoxedHandler = Arc::new(move |context: Context, request: Value| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                // The request already matched the contract's schema. A type may
                // still be stricter than its schema (a name's spelling rules,
                // say): that is the caller's value, so it is told where.
                let request: Op::Request = serde_path_to_error::deserialize(request).map_err(|err| {
                    let pointer = contracts::parse::path_to_pointer(err.path());
                    let message = err.into_inner().to_string();
                    ServiceError::invalid(
                        format!("the request does not fit the operation: {message}"),
                        vec![contracts::ErrorDetail {
                            pointer,
                            schema_path: None,
                            message,
                        }],
                    )
                })?;
                let response = handler(context, request).await?;
                serde_json::to_value(response)
                    .map_err(|err| ServiceError::internal(format!("the response could not be encoded: {err}")))
            })
        });
        self.handlers.push((Op::NAME.to_owned(), boxed));
        self
    }

    /// Handles an operation by name with JSON in and out, for services
    /// without Rust types for their messages.
    pub fn handle_json<F, Fut>(mut self, operation: &str, handler: F) -> Self
    where
        F: Fn(Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ServiceError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let boxed: BoxedHandler = Arc::new(move |context, request| {
            let handler = Arc::clone(&handler);
            Box::pin(async move { handler(context, request).await })
        });
        self.handlers.push((operation.to_owned(), boxed));
        self
    }

    /// Compiles the contract and checks that every operation has exactly the
    /// handlers it needs.
    pub fn build(self) -> Result<Service, BuildError> {
        let contract = self.document.id().to_string();
        let compiled = compile_contract(&self.document, &self.external).map_err(|problems| BuildError::Contract {
            contract: contract.clone(),
            problems,
        })?;
        let mut handlers: HashMap<String, BoxedHandler> = HashMap::new();
        for (name, handler) in self.handlers {
            let known = MemberName::parse(&name).is_ok_and(|member| self.document.operations.contains_key(&member));
            if !known {
                let declared: Vec<&str> = self.document.operations.keys().map(MemberName::as_str).collect();
                return Err(BuildError::UnknownOperation {
                    contract,
                    operation: name,
                    declared: declared.join(", "),
                });
            }
            handlers.insert(name, handler);
        }
        let queue_group = self
            .config
            .queue_group
            .clone()
            .unwrap_or_else(|| self.document.service.to_string());
        let mut endpoints = Vec::new();
        for (name, operation) in &self.document.operations {
            let handler = handlers
                .remove(name.as_str())
                .ok_or_else(|| BuildError::MissingHandler {
                    contract: contract.clone(),
                    operation: name.to_string(),
                })?;
            let mut metadata = BTreeMap::from([("soa.operation".to_owned(), name.to_string())]);
            if operation.idempotent {
                metadata.insert("soa.idempotent".to_owned(), "true".to_owned());
            }
            endpoints.push(Endpoint {
                name: name.clone(),
                request: validator(&compiled, MessageKey::Request(name.clone()), &contract)?,
                response: validator(&compiled, MessageKey::Response(name.clone()), &contract)?,
                declared_errors: operation.errors.clone(),
                handler,
                counters: EndpointCounters::default(),
                info: EndpointInfo {
                    name: name.to_string(),
                    subject: operation.subject.to_string(),
                    queue_group: queue_group.clone(),
                    metadata,
                },
            });
        }
        let identity = Identity {
            name: self.document.service.to_string(),
            id: self.config.instance_id.clone(),
            version: self.document.version.to_string(),
            metadata: BTreeMap::from([
                ("soa.contract".to_owned(), contract),
                ("soa.digest".to_owned(), self.document.digest()),
            ]),
        };
        Ok(Service {
            inner: Arc::new(ServiceInner {
                contract_id: self.document.id(),
                document: self.document,
                identity,
                endpoints,
                config: self.config,
                started: now_rfc3339(),
            }),
        })
    }
}

fn validator(
    compiled: &CompiledContract,
    key: MessageKey,
    contract: &str,
) -> Result<Arc<MessageValidator>, BuildError> {
    compiled
        .validators
        .get(&key)
        .cloned()
        .ok_or_else(|| BuildError::Contract {
            contract: contract.to_owned(),
            problems: Vec::new(),
        })
}

/// One operation as served: its validators, handler and counters.
struct Endpoint {
    name: MemberName,
    request: Arc<MessageValidator>,
    response: Arc<MessageValidator>,
    declared_errors: Vec<String>,
    handler: BoxedHandler,
    counters: EndpointCounters,
    info: EndpointInfo,
}

struct ServiceInner {
    document: ContractDocument,
    /// The document's id, made once rather than per request.
    contract_id: ContractId,
    identity: Identity,
    endpoints: Vec<Endpoint>,
    config: ServiceConfig,
    started: String,
}

/// A built service, ready to [`run`](Service::run).
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceInner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("identity", &self.inner.identity)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts describing a service for `document`.
    pub fn builder(document: ContractDocument) -> ServiceBuilder {
        ServiceBuilder::new(document)
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.inner.identity.id
    }

    /// The contract served.
    pub fn contract(&self) -> &ContractDocument {
        &self.inner.document
    }

    /// The `$SRV.INFO` reply of this instance.
    pub fn info(&self) -> InfoResponse {
        InfoResponse {
            kind: INFO_RESPONSE_TYPE.to_owned(),
            identity: self.inner.identity.clone(),
            description: self.inner.document.description.clone(),
            endpoints: self
                .inner
                .endpoints
                .iter()
                .map(|endpoint| endpoint.info.clone())
                .collect(),
        }
    }

    /// The `$SRV.STATS` reply of this instance.
    pub fn stats(&self) -> StatsResponse {
        StatsResponse {
            kind: STATS_RESPONSE_TYPE.to_owned(),
            identity: self.inner.identity.clone(),
            started: self.inner.started.clone(),
            endpoints: self
                .inner
                .endpoints
                .iter()
                .map(|endpoint| endpoint.counters.snapshot(&endpoint.info))
                .collect(),
        }
    }

    /// Serves until `shutdown` is cancelled, then stops taking requests,
    /// finishes the ones in flight (up to the shutdown timeout), deregisters
    /// and flushes. The caller owns `nats` and drains it afterwards.
    pub async fn run(self, nats: async_nats::Client, shutdown: CancellationToken) -> Result<(), RunError> {
        let inner = &self.inner;
        if let Some(info) = nats.try_server_info() {
            crate::connection::check_server_version(&info.version)?;
        }
        let mut listeners = Vec::new();
        for (index, endpoint) in inner.endpoints.iter().enumerate() {
            let subject = endpoint.info.subject.clone();
            let subscriber = nats
                .queue_subscribe(subject.clone(), endpoint.info.queue_group.clone())
                .await
                .map_err(|err| RunError::Subscribe {
                    subject: subject.clone(),
                    message: err.to_string(),
                })?;
            listeners.push((Listener::Endpoint(index), subscriber));
        }
        let name = inner.identity.name.as_str();
        let id = inner.identity.id.as_str();
        for verb in [DiscoveryVerb::Ping, DiscoveryVerb::Info, DiscoveryVerb::Stats] {
            for subject in [
                subjects::discovery(verb, None, None),
                subjects::discovery(verb, Some(name), None),
                subjects::discovery(verb, Some(name), Some(id)),
            ] {
                let subscriber = nats
                    .subscribe(subject.clone())
                    .await
                    .map_err(|err| RunError::Subscribe {
                        subject: subject.clone(),
                        message: err.to_string(),
                    })?;
                listeners.push((Listener::Discovery(verb), subscriber));
            }
        }
        // Subscriptions are live once the server has seen them; a round trip proves it.
        if let Err(error) = wire::round_trip(&nats, Duration::from_secs(5)).await {
            tracing::warn!(error = %error, "The server did not confirm the subscriptions in time.");
        }
        tracing::info!(service = %inner.identity.metadata.get("soa.contract").map_or("", String::as_str), instance = id, "Service started.");

        let stop_listening = shutdown.child_token();
        let listener_ended = CancellationToken::new();
        let mut listening = Vec::new();
        for (listener, subscriber) in listeners {
            let service = self.clone();
            let nats = nats.clone();
            let stop = stop_listening.clone();
            let ended = listener_ended.clone();
            // Aborted when `run` is dropped: a service whose future is dropped
            // stops serving, as a killed process would.
            listening.push(AbortOnDropHandle::new(tokio::spawn(async move {
                service.listen(listener, subscriber, nats, stop).await;
                ended.cancel();
            })));
        }
        let registration = inner.config.registration.clone().map(|config| {
            let nats = nats.clone();
            let document = inner.document.clone();
            // Stops with the listeners, also when they end early.
            let stop = stop_listening.clone();
            AbortOnDropHandle::new(tokio::spawn(registration::keep_registered(
                nats,
                document,
                id.to_owned(),
                config,
                stop,
            )))
        });

        // A listener that ends before shutdown (the connection closed for good)
        // stops the whole service: an instance that cannot serve must not
        // keep heartbeating as if it could.
        let mut ended_early = false;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            () = listener_ended.cancelled() => {
                tracing::error!(instance = id, "A subscription ended before shutdown; stopping the service.");
                ended_early = true;
                stop_listening.cancel();
            }
        }
        tracing::info!(instance = id, "Shutting down: no new requests.");
        // Each listener unsubscribes, answers what was already delivered to
        // it and finishes its handlers; past the timeout the rest is dropped
        // and those callers time out.
        let drained = tokio::time::timeout(
            inner.config.shutdown_timeout,
            futures::future::join_all(listening.iter_mut()),
        )
        .await;
        match drained {
            Ok(results) => {
                for error in results.into_iter().filter_map(Result::err) {
                    tracing::error!(error = %error, "A subscription task failed.");
                }
            }
            Err(_) => {
                tracing::warn!(
                    timeout = ?inner.config.shutdown_timeout,
                    "Some handlers were still running when the shutdown timeout passed; their callers will time out."
                );
                for task in &listening {
                    task.abort();
                }
            }
        }
        if let Some(task) = registration
            && let Err(error) = task.await
        {
            tracing::error!(error = %error, "The registration task failed.");
        }
        match tokio::time::timeout(inner.config.shutdown_timeout, nats.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = %error, "Could not flush the last replies."),
            Err(_) => tracing::warn!("The server did not take the last replies in time; it is probably unreachable."),
        }
        tracing::info!(instance = id, "Service stopped.");
        if ended_early {
            return Err(RunError::SubscriptionEnded);
        }
        Ok(())
    }

    /// Reads one subscription and runs its handlers until told to stop;
    /// then unsubscribes, answers what the server had already delivered, and
    /// finishes the handlers in flight.
    ///
    /// Handlers run concurrently inside this task rather than as tasks of
    /// their own: a request then costs no extra hop between threads. A handler
    /// with heavy CPU work should move it to `spawn_blocking`.
    async fn listen(
        &self,
        listener: Listener,
        mut subscriber: async_nats::Subscriber,
        nats: async_nats::Client,
        stop: CancellationToken,
    ) {
        let max_in_flight = self.inner.config.max_in_flight.max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    // Draining (not unsubscribing) keeps the requests the server
                    // routed here before it saw the unsubscription.
                    if let Err(error) = subscriber.drain().await {
                        tracing::debug!(error = %error, "Draining the subscription failed; the connection is probably closing.");
                        break;
                    }
                }
                message = subscriber.next(), if in_flight.len() < max_in_flight => match message {
                    Some(message) => match listener {
                        Listener::Discovery(verb) => self.answer_discovery(&nats, verb, message).await,
                        Listener::Endpoint(index) => in_flight.push(self.handle_request(index, &nats, message)),
                    },
                    None => break,
                },
            }
        }
        while in_flight.next().await.is_some() {}
    }

    async fn answer_discovery(&self, nats: &async_nats::Client, verb: DiscoveryVerb, message: Message) {
        let Some(reply) = message.reply else { return };
        let body = match verb {
            DiscoveryVerb::Ping => serde_json::to_vec(&PingResponse {
                kind: PING_RESPONSE_TYPE.to_owned(),
                identity: self.inner.identity.clone(),
            }),
            DiscoveryVerb::Info => serde_json::to_vec(&self.info()),
            DiscoveryVerb::Stats => serde_json::to_vec(&self.stats()),
        };
        match body {
            Ok(body) => {
                if let Err(error) = nats.publish(reply, body.into()).await {
                    tracing::debug!(error = %error, "Could not answer a discovery request.");
                }
            }
            Err(error) => tracing::error!(error = %error, "Could not encode a discovery reply."),
        }
    }

    /// The one place a request becomes a reply: decode, validate, call the
    /// handler, validate the response, encode, or turn any failure into the
    /// error headers and body.
    async fn handle_request(&self, index: usize, nats: &async_nats::Client, message: Message) {
        let Some(endpoint) = self.inner.endpoints.get(index) else {
            return;
        };
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "Dropped a request without a reply subject; use request-reply to call operations.");
            return;
        };
        let started = Instant::now();
        let inbound = message.headers.as_ref();
        let trace = wire::header(inbound, headers::TRACEPARENT)
            .and_then(|parent| TraceContext::parse(parent, wire::header(inbound, headers::TRACESTATE)))
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let propagation = Propagation {
            correlation_id: wire::correlation_id(inbound),
            trace,
        };
        if propagation.correlation_id.is_none()
            && let Some(malformed) = wire::header(inbound, headers::CORRELATION_ID)
        {
            tracing::warn!(
                subject = %message.subject,
                bytes = malformed.len(),
                "Ignored a malformed Soa-Correlation-Id header; the request is served outside any flow."
            );
        }
        let idempotency_key = wire::header(inbound, headers::IDEMPOTENCY_KEY).map(str::to_owned);
        let span = tracing::info_span!(
            "soa.request",
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %endpoint.info.subject,
            messaging.consumer.group.name = %endpoint.info.queue_group,
            soa.operation = %endpoint.name,
            soa.correlation_id = propagation.correlation_id.as_ref().map_or("", |id| id.as_str()),
            trace_id = %propagation.trace.trace_id(),
            error.type = tracing::field::Empty,
        );
        // Validation and encoding run outside the handler's own guard: a panic
        // anywhere here still gets the caller a reply.
        let refusal = self.check_envelope(endpoint, inbound);
        let respond = async {
            match refusal {
                Some(body) => Err(body),
                None => {
                    self.respond(endpoint, &message.payload, &propagation, idempotency_key)
                        .await
                }
            }
        };
        let outcome = std::panic::AssertUnwindSafe(respond)
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|panic| {
                tracing::error!(parent: &span, panic = %panic_text(panic.as_ref()), "Handling a request panicked.");
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "the service failed to handle the request",
                ))
            });
        let mut headers = Envelope::operation(self.inner.contract_id.clone(), endpoint.name.clone())
            .with_correlation_id(propagation.correlation_id.clone())
            .to_headers();
        wire::insert_header(
            &mut headers,
            contracts::envelope::headers::TRACEPARENT,
            &propagation.trace.traceparent(),
        );
        let (payload, error) = match outcome {
            Ok(payload) => (payload, None),
            Err(body) => {
                span.record("error.type", body.code.as_str());
                wire::write_error_headers(&mut headers, &body);
                let payload = serde_json::to_vec(&body).unwrap_or_default();
                (payload, Some(format!("{}: {}", body.code, body.message)))
            }
        };
        endpoint.counters.record(started.elapsed(), error);
        if let Err(err) = nats
            .publish_with_headers(reply_to.clone(), headers, payload.into())
            .await
        {
            tracing::warn!(parent: &span, error = %err, "Could not send the reply.");
            // A reply over the server's size limit must still answer the caller.
            if err.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded {
                let body = ErrorBody::new(
                    ErrorCode::Internal,
                    "the reply is larger than the server's maximum payload",
                );
                let mut short = async_nats::HeaderMap::new();
                wire::write_error_headers(&mut short, &body);
                let payload = serde_json::to_vec(&body).unwrap_or_default();
                if let Err(err) = nats.publish_with_headers(reply_to, short, payload.into()).await {
                    tracing::warn!(parent: &span, error = %err, "Could not send the short error reply either.");
                }
            }
        }
    }

    fn check_envelope(&self, endpoint: &Endpoint, inbound: Option<&async_nats::HeaderMap>) -> Option<ErrorBody> {
        check_request_envelope(&self.inner.contract_id, &endpoint.name, &endpoint.info.subject, inbound)
    }

    async fn respond(
        &self,
        endpoint: &Endpoint,
        payload: &[u8],
        propagation: &Propagation,
        idempotency_key: Option<String>,
    ) -> Result<Vec<u8>, ErrorBody> {
        let request = endpoint.request.validate_bytes(payload).map_err(ErrorBody::from)?;
        let context = Context::new(
            self.inner.contract_id.clone(),
            endpoint.name.clone(),
            propagation.clone(),
            idempotency_key,
        );
        // A panicking handler must not take the reply with it: the caller gets INTERNAL.
        let handler = std::panic::AssertUnwindSafe((endpoint.handler)(context, request)).catch_unwind();
        let handled = tokio::time::timeout(self.inner.config.handler_timeout, handler).await;
        let response = match handled {
            Err(_) => {
                tracing::error!(timeout = ?self.inner.config.handler_timeout, "The handler did not finish in time.");
                return Err(ErrorBody::new(
                    ErrorCode::Timeout,
                    format!(
                        "{} did not finish within {:?}",
                        endpoint.name, self.inner.config.handler_timeout
                    ),
                ));
            }
            Ok(Err(panic)) => {
                tracing::error!(panic = %panic_text(panic.as_ref()), "The handler panicked.");
                return Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "the service failed to handle the request",
                ));
            }
            Ok(Ok(Err(error))) => return Err(self.error_reply(endpoint, error)),
            Ok(Ok(Ok(response))) => response,
        };
        if let Err(failure) = endpoint.response.validate(&response) {
            tracing::error!(error = %failure, "The handler's response breaks the service's own contract; answering INTERNAL instead.");
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "the service produced a response that breaks its contract",
            ));
        }
        serde_json::to_vec(&response).map_err(|err| {
            tracing::error!(error = %err, "Could not encode the response.");
            ErrorBody::new(ErrorCode::Internal, "the service failed to encode its response")
        })
    }

    /// The reply for a handler's error: undeclared codes and internal causes
    /// are logged, and the caller gets what the contract allows.
    fn error_reply(&self, endpoint: &Endpoint, error: ServiceError) -> ErrorBody {
        if let Some(cause) = error.cause() {
            tracing::error!(error = %cause, "The handler failed.");
        }
        if *error.code() == ErrorCode::Internal {
            // However it was built, an internal error tells the caller nothing of our insides.
            if error.cause().is_none() {
                tracing::error!(error = %error, "The handler failed.");
            }
            return ErrorBody::new(ErrorCode::Internal, "the service failed to handle the request");
        }
        if let ErrorCode::Declared(code) = error.code()
            && !endpoint.declared_errors.iter().any(|declared| declared == code)
        {
            tracing::error!(
                code = %code,
                declared = ?endpoint.declared_errors,
                "The handler returned an error code its contract does not declare; answering INTERNAL instead."
            );
            return ErrorBody::new(ErrorCode::Internal, "the service failed to handle the request");
        }
        error.to_body()
    }
}

/// Refuses a request whose soabus headers say it is meant for another
/// contract or operation: a misrouted or spoofed request is the caller's
/// error, answered clearly, and never reaches the handler. Any version of
/// the served major is accepted (compatibility keeps them
/// interchangeable); a request without the headers is judged on its
/// payload alone.
///
/// `served` is the contract the service serves, `operation` the endpoint's
/// operation and `subject` its subject (for the message). Pure, so it is
/// unit-tested and fuzzed without a connection.
pub fn check_request_envelope(
    served: &ContractId,
    operation: &MemberName,
    subject: &str,
    inbound: Option<&async_nats::HeaderMap>,
) -> Option<ErrorBody> {
    let refuse = |header: &str, named: &str, expected: String| {
        let named: String = named.chars().take(MAX_QUOTED_HEADER_CHARS).collect();
        let message = format!(
            "the request's {header} header names {named:?}, but {subject} is {expected}; send it to the subject of what it names"
        );
        tracing::warn!(header, subject = %subject, "Refused a request whose headers name another contract or operation.");
        Some(ErrorBody {
            code: ErrorCode::ValidationFailed,
            details: vec![ErrorDetail {
                pointer: String::new(),
                schema_path: None,
                message: message.clone(),
            }],
            message,
        })
    };
    if let Some(named) = wire::header(inbound, headers::CONTRACT) {
        let same_major =
            ContractId::parse(named).is_ok_and(|id| id.service == served.service && id.major() == served.major());
        if !same_major {
            return refuse(
                headers::CONTRACT,
                named,
                format!(
                    "served by {served} (any {}@{}.x.y is accepted)",
                    served.service,
                    served.major()
                ),
            );
        }
    }
    if let Some(named) = wire::header(inbound, headers::OPERATION)
        && named != operation.as_str()
    {
        return refuse(
            headers::OPERATION,
            named,
            format!("operation {:?} of {served}", operation.as_str()),
        );
    }
    None
}

/// The most characters of a refused header's value quoted back in the error:
/// a hostile value must not make the reply huge.
const MAX_QUOTED_HEADER_CHARS: usize = 80;

/// The text of a panic's payload, for the log.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// What a subscription is for.
#[derive(Debug, Clone, Copy)]
enum Listener {
    /// The operation at this index.
    Endpoint(usize),
    /// A discovery verb.
    Discovery(DiscoveryVerb),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(contract: Option<&str>, operation: Option<&str>) -> Option<String> {
        let mut map = async_nats::HeaderMap::new();
        if let Some(contract) = contract {
            wire::insert_header(&mut map, headers::CONTRACT, contract);
        }
        if let Some(operation) = operation {
            wire::insert_header(&mut map, headers::OPERATION, operation);
        }
        let served = ContractId::parse("orders@1.2.0").unwrap();
        let place = MemberName::parse("place").unwrap();
        check_request_envelope(&served, &place, "shop.orders.v1.place", Some(&map)).map(|body| {
            assert_eq!(body.code, ErrorCode::ValidationFailed);
            body.message
        })
    }

    #[test]
    fn the_request_check_accepts_the_served_major_and_refuses_anything_else() {
        assert_eq!(check(None, None), None);
        assert_eq!(check(Some("orders@1.0.0"), Some("place")), None);
        assert_eq!(check(Some("orders@1.9.3"), None), None);
        let other_major = check(Some("orders@2.0.0"), Some("place")).unwrap();
        assert!(other_major.contains("\"orders@2.0.0\""), "{other_major}");
        assert!(other_major.contains("any orders@1.x.y is accepted"), "{other_major}");
        assert!(check(Some("payments@1.0.0"), None).is_some());
        assert!(check(Some("garbage"), None).is_some());
        let other_operation = check(None, Some("cancel")).unwrap();
        assert!(other_operation.contains("operation \"place\""), "{other_operation}");
        let huge = check(Some(&"x".repeat(10_000)), None).unwrap();
        assert!(huge.len() < 400, "{} bytes", huge.len());
    }
}
