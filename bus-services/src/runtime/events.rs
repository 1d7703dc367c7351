//! Events over JetStream: publishing validates the payload and sets
//! `Nats-Msg-Id` (JetStream de-duplicates on it) and the flow's headers;
//! consuming uses a durable consumer that acks after the handler succeeds,
//! naks with backoff on a retryable error, and moves a message to the
//! dead-letter stream when it cannot be handled.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use contracts::envelope::headers;
use contracts::subjects;
use contracts::{
    ContractDocument, ContractId, ErrorCode, EventType, MemberName, MessageKey, MessageValidator, SchemaSet,
    compile_contract,
};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::Propagation;
use super::error::ServiceError;
use super::trace::TraceContext;
use super::unreadable;
use crate::connection::refusals::{self, PermissionRefusal, RefusedAction};
use crate::wire::{self, Envelope};

/// How many messages a consumer pulls at a time.
const PREFETCH: usize = 8;

/// How long one pull request waits at the server. Short, because it also
/// bounds a stall: async-nats' pull stream can count messages of a request
/// that arrive before it learns the request was sent as still to come
/// (observed: a durable with hundreds of messages pending and no pull
/// request waiting), and asks again only once the request has expired
/// (plus 5 s); with its default 30 s expiry one puller then idled for 35 s.
pub const PULL_EXPIRY: Duration = Duration::from_secs(5);

/// The longest dead-letter reason kept in its header.
const MAX_REASON_CHARS: usize = 512;

/// How long JetStream remembers message ids to drop duplicates.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Why publishing or consuming events failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The contract does not declare the event.
    #[error("{contract} declares no event {event:?}")]
    UnknownEvent {
        /// The contract.
        contract: String,
        /// The event asked for.
        event: String,
    },
    /// The payload breaks the contract; nothing was published.
    #[error("not published: {0}")]
    Invalid(#[from] contracts::ValidationFailure),
    /// The contract's schemas do not compile.
    #[error("the contract {contract} does not compile: {message}")]
    Contract {
        /// The contract.
        contract: String,
        /// The first problem.
        message: String,
    },
    /// JetStream refused or did not answer.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The payload could not be encoded.
    #[error("could not encode the event: {0}")]
    Encode(String),
    /// The consumer's message stream ended before shutdown, so nothing more
    /// would be consumed.
    #[error(
        "the durable consumer {durable} stopped receiving before shutdown: the NATS connection closed \
         for good, or async-nats' connection task stopped (async-nats 0.51 panics on a message whose \
         header value holds a lone carriage return, nats-io/nats.rs#1612); restart the service"
    )]
    ConsumerEnded {
        /// The durable consumer.
        durable: String,
    },
    /// The NATS server refused to let this connection publish to the event's
    /// subject (its user lacks the publish permission); nothing was stored.
    #[error(
        "UNAUTHORIZED: {refusal}, so event {event:?} of {contract} was not stored; a service may \
         publish only its own contract's events, on the subjects its NATS permissions grant \
         (`soa contract permissions` prints them)"
    )]
    Refused {
        /// The publishing contract.
        contract: String,
        /// The event.
        event: String,
        /// What the server refused.
        refusal: PermissionRefusal,
    },
}

pub(crate) fn jetstream_error(error: impl std::fmt::Display) -> EventError {
    EventError::JetStream(error.to_string())
}

/// Compiles the event validators of a contract.
fn event_validators(
    contract: &ContractDocument,
    external: &SchemaSet,
) -> Result<HashMap<MemberName, Arc<MessageValidator>>, EventError> {
    let compiled = compile_contract(contract, external).map_err(|problems| EventError::Contract {
        contract: contract.id().to_string(),
        message: problems.first().map(ToString::to_string).unwrap_or_default(),
    })?;
    Ok(contract
        .events
        .keys()
        .filter_map(|name| {
            let validator = compiled.validators.get(&MessageKey::Event(name.clone()))?;
            Some((name.clone(), Arc::clone(validator)))
        })
        .collect())
}

/// Creates the stream of a contract's events, or adds subjects the contract
/// declares that an existing stream lacks (a new minor version's events).
pub async fn ensure_event_stream(js: &jetstream::Context, contract: &ContractDocument) -> Result<String, EventError> {
    ensure_event_stream_with_replicas(js, contract, 1).await
}

/// [`ensure_event_stream`] with `replicas` copies of the stream on a
/// cluster; an existing stream with fewer is raised ([`crate::replicas`]).
pub async fn ensure_event_stream_with_replicas(
    js: &jetstream::Context,
    contract: &ContractDocument,
    replicas: usize,
) -> Result<String, EventError> {
    let name = subjects::event_stream(&contract.service, contract.version.major());
    let wanted: Vec<String> = contract
        .events
        .values()
        .map(|event| event.subject.to_string())
        .collect();
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: wanted.clone(),
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(jetstream_error)?;
    crate::replicas::raise_replicas(js, &stream.cached_info().config, replicas)
        .await
        .map_err(jetstream_error)?;
    // Read-modify-write races with instances of other minor versions
    // starting at the same time: check again until every subject is there.
    for _ in 0..5 {
        let mut config = stream.info().await.map_err(jetstream_error)?.config.clone();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|subject| !config.subjects.contains(subject))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(name);
        }
        config.subjects.extend(missing);
        js.update_stream(config).await.map_err(jetstream_error)?;
    }
    let still_missing = stream.info().await.map_err(jetstream_error)?.config.subjects.clone();
    if wanted.iter().all(|subject| still_missing.contains(subject)) {
        return Ok(name);
    }
    Err(EventError::JetStream(format!(
        "could not add every event subject to stream {name}"
    )))
}

/// Publishes one contract's events.
#[derive(Clone)]
pub struct EventPublisher {
    refusals: refusals::Watcher,
    js: jetstream::Context,
    contract: Arc<ContractDocument>,
    validators: Arc<HashMap<MemberName, Arc<MessageValidator>>>,
    propagation: Option<Propagation>,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("contract", &self.contract.id())
            .finish_non_exhaustive()
    }
}

impl EventPublisher {
    /// A publisher of `contract`'s events; creates or updates their stream.
    pub async fn new(
        nats: async_nats::Client,
        contract: ContractDocument,
        external: &SchemaSet,
    ) -> Result<Self, EventError> {
        Self::with_replicas(nats, contract, external, 1).await
    }

    /// [`new`](Self::new) with `replicas` copies of the stream on a cluster.
    pub async fn with_replicas(
        nats: async_nats::Client,
        contract: ContractDocument,
        external: &SchemaSet,
        replicas: usize,
    ) -> Result<Self, EventError> {
        let js = jetstream::new(nats.clone());
        ensure_event_stream_with_replicas(&js, &contract, replicas).await?;
        Ok(Self {
            refusals: refusals::Watcher::of(&nats),
            validators: Arc::new(event_validators(&contract, external)?),
            js,
            contract: Arc::new(contract),
            propagation: None,
        })
    }

    /// The same publisher, publishing as part of a flow (correlation id and
    /// a child span of its trace).
    pub fn in_flow(&self, propagation: &Propagation) -> Self {
        Self {
            propagation: Some(propagation.clone()),
            ..self.clone()
        }
    }

    /// The contract whose events this publisher sends.
    pub fn contract(&self) -> &ContractDocument {
        &self.contract
    }

    /// Validates and publishes event `E` with a fresh message id, and waits
    /// until JetStream has stored it.
    pub async fn publish<E: EventType>(&self, payload: &E::Payload) -> Result<(), EventError> {
        self.publish_with_id::<E>(&wire::new_message_id(), payload).await
    }

    /// Like [`publish`](Self::publish) with a message id of the caller's
    /// choice: publishing twice with the same id stores the event once.
    pub async fn publish_with_id<E: EventType>(
        &self,
        message_id: &str,
        payload: &E::Payload,
    ) -> Result<(), EventError> {
        let value = serde_json::to_value(payload).map_err(|err| EventError::Encode(err.to_string()))?;
        self.publish_json(E::NAME, Some(message_id), &value).await
    }

    /// Validates and publishes an event by name, for tools without the Rust types.
    pub async fn publish_json(&self, event: &str, message_id: Option<&str>, payload: &Value) -> Result<(), EventError> {
        let (subject, map, body) = self.message(event, message_id, payload)?;
        // A refused publish is dropped by the server, which says so on the
        // connection: without the watch the caller would only time out.
        let refused = self.refusals.watch();
        let stored = async {
            self.js
                .publish_with_headers(subject.clone(), map, body.into())
                .await
                .map_err(jetstream_error)?
                .await
                .map_err(jetstream_error)
        };
        tokio::select! {
            stored = stored => stored.map(drop),
            refusal = refused.refused(RefusedAction::Publish, &subject) => Err(EventError::Refused {
                contract: self.contract.id().to_string(),
                event: event.to_owned(),
                refusal,
            }),
        }
    }

    /// Validates and sends an event without waiting for JetStream's ack;
    /// await the returned future to know it is stored. Many sends in flight
    /// is how to publish fast.
    pub async fn send(
        &self,
        event: &str,
        message_id: Option<&str>,
        payload: &Value,
    ) -> Result<jetstream::context::PublishAckFuture, EventError> {
        let (subject, map, body) = self.message(event, message_id, payload)?;
        self.js
            .publish_with_headers(subject, map, body.into())
            .await
            .map_err(jetstream_error)
    }

    /// The subject, headers and body of event `event` with `payload`, once
    /// the payload is valid.
    fn message(
        &self,
        event: &str,
        message_id: Option<&str>,
        payload: &Value,
    ) -> Result<(String, HeaderMap, Vec<u8>), EventError> {
        let unknown = || EventError::UnknownEvent {
            contract: self.contract.id().to_string(),
            event: event.to_owned(),
        };
        let name = MemberName::parse(event).map_err(|_| unknown())?;
        let declared = self.contract.events.get(&name).ok_or_else(unknown)?;
        let validator = self.validators.get(&name).ok_or_else(unknown)?;
        validator.validate(payload)?;
        let body = serde_json::to_vec(payload).map_err(|err| EventError::Encode(err.to_string()))?;
        let propagation = self.propagation.clone().unwrap_or_else(Propagation::new_root);
        let mut envelope =
            Envelope::event(self.contract.id(), name).with_correlation_id(propagation.correlation_id.clone());
        if let Some(id) = message_id {
            envelope.message_id = id.to_owned();
        }
        let mut map = envelope.to_headers();
        let span = propagation.trace.child();
        wire::insert_header(&mut map, headers::TRACEPARENT, &span.traceparent());
        if let Some(state) = span.tracestate() {
            wire::insert_header(&mut map, headers::TRACESTATE, state);
        }
        Ok((declared.subject.to_string(), map, body))
    }
}

/// How a durable consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Contracts that `soa://` references in the producer's contract point into.
    pub schemas: SchemaSet,
    /// The durable consumer's name: one per consuming service and event, so
    /// instances of the service share its messages.
    pub durable_name: String,
    /// Deliveries before a failing message goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Delay before each redelivery after a retryable failure (the last one
    /// repeats).
    pub backoff: Vec<Duration>,
    /// The longest a handler may run.
    pub handler_timeout: Duration,
    /// Deliveries handled at once (events of different flows are independent).
    pub max_in_flight: usize,
    /// Copies of the producer's stream and of the dead-letter stream when
    /// this consumer creates them, or raises them ([`crate::replicas`]); the
    /// durable consumer follows its stream's.
    pub replicas: usize,
}

impl ConsumerConfig {
    /// Defaults for a consumer called `durable_name`.
    pub fn new(durable_name: impl Into<String>) -> Self {
        Self {
            schemas: SchemaSet::default(),
            durable_name: durable_name.into(),
            max_deliveries: 5,
            ack_wait: Duration::from_secs(30),
            backoff: vec![
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_secs(2),
            ],
            handler_timeout: Duration::from_secs(25),
            max_in_flight: 64,
            replicas: 1,
        }
    }
}

/// What an event handler knows about the delivery.
#[derive(Debug, Clone)]
pub struct EventContext {
    producer: ContractId,
    event: MemberName,
    propagation: Propagation,
    delivery: u64,
    message_id: Option<String>,
}

impl EventContext {
    /// The producer's contract.
    pub fn producer(&self) -> &ContractId {
        &self.producer
    }

    /// The event's name.
    pub fn event(&self) -> &MemberName {
        &self.event
    }

    /// The flow and trace the event belongs to, for calls and events the
    /// handler makes.
    pub fn propagation(&self) -> &Propagation {
        &self.propagation
    }

    /// Which delivery this is (1 for the first), so a handler can tell a
    /// redelivery.
    pub fn delivery(&self) -> u64 {
        self.delivery
    }

    /// The event's `Nats-Msg-Id`, the natural key for [`ProcessedKeys`]; for
    /// a replayed dead letter, the id the event was first published with
    /// (`Soa-Replay-Of`), so a replay counts as the same event.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
}

/// What to do with a delivery after its handler ran.
enum Disposition {
    Ack,
    Retry(Duration),
    DeadLetter(String),
}

/// Consumes event `E` of `producer` with a durable consumer until `shutdown`.
/// Each payload is validated against the producer's contract first; an
/// invalid one goes straight to the dead-letter stream.
pub async fn consume<E, F, Fut>(
    nats: async_nats::Client,
    producer: ContractDocument,
    config: ConsumerConfig,
    handler: F,
    shutdown: CancellationToken,
) -> Result<(), EventError>
where
    E: EventType,
    F: Fn(EventContext, E::Payload) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ServiceError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    consume_json(
        nats,
        producer,
        E::NAME,
        config,
        move |context, value| {
            let handler = Arc::clone(&handler);
            async move {
                // The payload matched the schema; a Rust type stricter than
                // its schema is the producer's problem and will not change on
                // redelivery, so it goes to the dead letters.
                let payload: E::Payload = serde_json::from_value(value).map_err(|error| {
                    ServiceError::invalid(
                        format!("the event matched its schema but not the Rust type: {error}"),
                        Vec::new(),
                    )
                })?;
                handler(context, payload).await
            }
        },
        shutdown,
    )
    .await
}

/// Like [`consume`], for an event named at run time, with its payload as
/// JSON (already validated against the producer's contract).
pub async fn consume_json<F, Fut>(
    nats: async_nats::Client,
    producer: ContractDocument,
    event_name: &str,
    config: ConsumerConfig,
    handler: F,
    shutdown: CancellationToken,
) -> Result<(), EventError>
where
    F: Fn(EventContext, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ServiceError>> + Send + 'static,
{
    let js = jetstream::new(nats);
    let stream_name = ensure_event_stream_with_replicas(&js, &producer, config.replicas).await?;
    ensure_dead_letter_stream(&js, config.replicas).await?;
    let unknown = || EventError::UnknownEvent {
        contract: producer.id().to_string(),
        event: event_name.to_owned(),
    };
    let event = MemberName::parse(event_name).map_err(|_| unknown())?;
    let subject = producer.events.get(&event).ok_or_else(unknown)?.subject.to_string();
    let validators = event_validators(&producer, &config.schemas)?;
    let validator = validators.get(&event).cloned().ok_or_else(unknown)?;
    let stream = js.get_stream(&stream_name).await.map_err(jetstream_error)?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable_name,
            consumer::pull::Config {
                durable_name: Some(config.durable_name.clone()),
                filter_subject: subject.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // Only the runtime gives up on a message, after storing it as a
                // dead letter; the server never drops one on its own.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(jetstream_error)?;
    // What an earlier run was given and did not ack comes again: a message
    // async-nats cannot read among it would stop this run too.
    let window = unreadable::Window {
        stream: &stream_name,
        filter: &subject,
        durable: &config.durable_name,
    };
    unreadable::set_aside_or_warn(&js, &window, consumer.cached_info()).await;
    // Batches no larger than what is handled at once: a large prefetch would
    // sit past the ack wait and be redelivered while still queued here.
    let max_in_flight = config.max_in_flight.max(1);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(max_in_flight.max(PREFETCH))
        .expires(PULL_EXPIRY)
        .messages()
        .await
        .map_err(jetstream_error)?;
    let delivery = Delivery {
        js: &js,
        stream_name: &stream_name,
        producer: producer.id(),
        event: &event,
        validator: &validator,
        config: &config,
        handler: &handler,
    };
    // Deliveries of different flows are independent: up to `max_in_flight`
    // are handled at once (a flow's own events come one after the other).
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut ended_early = false;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            message = messages.next(), if in_flight.len() < max_in_flight => match message {
                Some(Ok(message)) => in_flight.push(delivery.process(message)),
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "The consumer's message stream reported an error; it keeps going.");
                }
                None => {
                    ended_early = !shutdown.is_cancelled();
                    break;
                }
            },
        }
    }
    // Finish what was taken; what is not acked comes back after the ack wait.
    while in_flight.next().await.is_some() {}
    if ended_early {
        tracing::error!(durable = %config.durable_name, "The consumer's message stream ended before shutdown.");
        return Err(EventError::ConsumerEnded {
            durable: config.durable_name.clone(),
        });
    }
    Ok(())
}

/// Stores `message` (taken from `stream` by `consumer`) in the dead-letter
/// stream, on `soa.dlq.<stream>.<consumer>`, with its own headers, the
/// reason and where it came from. The caller then terminates the original.
pub async fn dead_letter(
    js: &jetstream::Context,
    message: &jetstream::Message,
    stream: &str,
    consumer: &str,
    reason: &str,
) -> Result<(), EventError> {
    let info = message.info().ok();
    let origin = Origin {
        stream,
        consumer,
        subject: message.subject.as_str(),
        reason,
        deliveries: info.as_ref().map(|info| info.delivered),
        sequence: info.as_ref().map(|info| info.stream_sequence),
        message_id: None,
    };
    store_dead_letter(js, message.headers.as_ref(), message.payload.clone(), &origin).await
}

/// Where a dead letter came from and why.
pub(crate) struct Origin<'a> {
    /// The stream the original was taken from.
    pub(crate) stream: &'a str,
    /// The consumer that gave up on it.
    pub(crate) consumer: &'a str,
    /// The original's subject.
    pub(crate) subject: &'a str,
    /// Why it is a dead letter.
    pub(crate) reason: &'a str,
    /// How many times it was delivered, when known.
    pub(crate) deliveries: Option<i64>,
    /// Its sequence in `stream`, when known.
    pub(crate) sequence: Option<u64>,
    /// The dead letter's own `Nats-Msg-Id`; a fresh one when `None`.
    pub(crate) message_id: Option<String>,
}

/// Stores `payload` as a dead letter of `origin`, with the headers of
/// [`dead_letter_headers`].
pub(crate) async fn store_dead_letter(
    js: &jetstream::Context,
    original: Option<&HeaderMap>,
    payload: bytes::Bytes,
    origin: &Origin<'_>,
) -> Result<(), EventError> {
    ensure_dead_letter_stream(js, 1).await?;
    js.publish_with_headers(
        subjects::dead_letter(origin.stream, origin.consumer),
        dead_letter_headers(original, origin),
        payload,
    )
    .await
    .map_err(jetstream_error)?
    .await
    .map_err(jetstream_error)?;
    Ok(())
}

/// A dead letter's headers: the original's own, but none of JetStream's
/// publish expectations (`Nats-Expected-*`, `Nats-Rollup`, ...), which would
/// make the dead letter itself refused; the reason and where it came from;
/// the original's `Nats-Msg-Id` kept for a replay, and an id of its own (a
/// dead letter is a new message, not a duplicate to drop).
pub(crate) fn dead_letter_headers(original: Option<&HeaderMap>, origin: &Origin<'_>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, values) in original.iter().flat_map(|map| map.iter()) {
        if !name.to_string().to_ascii_lowercase().starts_with("nats-") {
            for value in values {
                map.append(name.clone(), value.clone());
            }
        }
    }
    let reason: String = origin.reason.chars().take(MAX_REASON_CHARS).collect();
    wire::insert_header(&mut map, headers::DEAD_LETTER_REASON, &reason);
    wire::insert_header(&mut map, headers::DEAD_LETTER_SUBJECT, origin.subject);
    wire::insert_header(&mut map, headers::DEAD_LETTER_CONSUMER, origin.consumer);
    if let Some(deliveries) = origin.deliveries {
        wire::insert_header(&mut map, headers::DEAD_LETTER_DELIVERIES, &deliveries.to_string());
    }
    if let Some(sequence) = origin.sequence {
        wire::insert_header(&mut map, headers::DEAD_LETTER_SEQUENCE, &sequence.to_string());
    }
    if let Some(id) = wire::header(original, headers::MESSAGE_ID) {
        wire::insert_header(&mut map, headers::DEAD_LETTER_MESSAGE_ID, id);
    }
    let own_id = origin.message_id.clone().unwrap_or_else(wire::new_message_id);
    wire::insert_header(&mut map, headers::MESSAGE_ID, &own_id);
    map
}

/// Creates the dead-letter stream when it is missing, with `replicas`
/// copies, or raises an existing one with fewer.
async fn ensure_dead_letter_stream(js: &jetstream::Context, replicas: usize) -> Result<(), EventError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: subjects::DEAD_LETTER_STREAM.to_owned(),
            subjects: vec![subjects::DEAD_LETTER_SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(jetstream_error)?;
    crate::replicas::raise_replicas(js, &stream.cached_info().config, replicas)
        .await
        .map_err(jetstream_error)?;
    Ok(())
}

/// What handling one delivery needs, borrowed from [`consume_json`].
struct Delivery<'a, F> {
    js: &'a jetstream::Context,
    stream_name: &'a str,
    producer: ContractId,
    event: &'a MemberName,
    validator: &'a MessageValidator,
    config: &'a ConsumerConfig,
    handler: &'a F,
}

impl<F, Fut> Delivery<'_, F>
where
    F: Fn(EventContext, Value) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    /// Validates and handles one message, then acks, naks or dead-letters it.
    async fn process(&self, message: jetstream::Message) {
        let delivery = message
            .info()
            .map(|info| u64::try_from(info.delivered).unwrap_or(1))
            .unwrap_or(1);
        let inbound = message.headers.as_ref();
        let trace = wire::header(inbound, headers::TRACEPARENT)
            .and_then(|parent| TraceContext::parse(parent, wire::header(inbound, headers::TRACESTATE)))
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let context = EventContext {
            producer: self.producer.clone(),
            event: self.event.clone(),
            propagation: Propagation {
                correlation_id: wire::correlation_id(inbound),
                trace,
            },
            delivery,
            message_id: wire::header(inbound, headers::REPLAY_OF)
                .or_else(|| wire::header(inbound, headers::MESSAGE_ID))
                .map(str::to_owned),
        };
        let span = tracing::info_span!(
            "soa.event",
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %message.subject,
            messaging.consumer.group.name = %self.config.durable_name,
            soa.event = %self.event,
            soa.delivery = delivery,
            soa.correlation_id = context.propagation.correlation_id.as_ref().map_or("", |id| id.as_str()),
            trace_id = %context.propagation.trace.trace_id(),
        );
        let disposition = match envelope_mismatch(&self.producer, self.event, &message.subject, inbound) {
            // Spoofed or misrouted: the caller's error, the same on every delivery.
            Some(reason) => Disposition::DeadLetter(reason),
            None => {
                handle_event(self.handler, self.validator, self.config, context, &message.payload)
                    .instrument(span.clone())
                    .await
            }
        };
        let outcome = match disposition {
            Disposition::Ack => message.ack().await,
            Disposition::Retry(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
            Disposition::DeadLetter(reason) => {
                tracing::warn!(parent: &span, reason = %reason, delivery, "Moving the event to the dead-letter stream.");
                match dead_letter(self.js, &message, self.stream_name, &self.config.durable_name, &reason).await {
                    // Only once the dead letter is stored is the original given up.
                    Ok(()) => message.ack_with(AckKind::Term).await,
                    Err(error) => {
                        tracing::error!(parent: &span, error = %error, "Could not store the dead letter; the event will be redelivered.");
                        message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
                    }
                }
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(parent: &span, error = %error, "Could not acknowledge the event; it will be redelivered.");
        }
    }
}

/// The longest header value quoted back in a dead letter's reason.
const MAX_QUOTED_HEADER_CHARS: usize = 80;

/// Why a delivery's headers contradict what it was consumed as, if they do:
/// a `Soa-Event` naming another event, or a `Soa-Contract` naming another
/// service or major than the stream's producer (any version of the major is
/// accepted). A message without the headers is judged on its payload alone.
fn envelope_mismatch(
    producer: &ContractId,
    event: &MemberName,
    subject: &str,
    inbound: Option<&HeaderMap>,
) -> Option<String> {
    let quote = |named: &str| -> String { named.chars().take(MAX_QUOTED_HEADER_CHARS).collect() };
    if let Some(named) = wire::header(inbound, headers::CONTRACT) {
        let same_major =
            ContractId::parse(named).is_ok_and(|id| id.service == producer.service && id.major() == producer.major());
        if !same_major {
            return Some(format!(
                "{}: the event's {} header names {:?}, but {subject} carries events of {}@{}; \
                 publish it with the producer's own contract",
                ErrorCode::ValidationFailed,
                headers::CONTRACT,
                quote(named),
                producer.service,
                producer.major()
            ));
        }
    }
    if let Some(named) = wire::header(inbound, headers::EVENT)
        && named != event.as_str()
    {
        return Some(format!(
            "{}: the event's {} header names {:?}, but {subject} carries {producer}'s event {:?}; \
             publish each event on its own subject",
            ErrorCode::ValidationFailed,
            headers::EVENT,
            quote(named),
            event.as_str()
        ));
    }
    None
}

async fn handle_event<F, Fut>(
    handler: &F,
    validator: &MessageValidator,
    config: &ConsumerConfig,
    context: EventContext,
    payload: &[u8],
) -> Disposition
where
    F: Fn(EventContext, Value) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    let payload = match validator.validate_bytes(payload) {
        Ok(value) => value,
        Err(failure) => return Disposition::DeadLetter(format!("VALIDATION_FAILED: {failure}")),
    };
    let delivery = context.delivery;
    let run = std::panic::AssertUnwindSafe(handler(context, payload)).catch_unwind();
    let error = match tokio::time::timeout(config.handler_timeout, run).await {
        Ok(Ok(Ok(()))) => return Disposition::Ack,
        Ok(Ok(Err(error))) => error,
        Ok(Err(_panic)) => ServiceError::internal("the handler panicked"),
        Err(_) => ServiceError::new_timeout(config.handler_timeout),
    };
    if let Some(cause) = error.cause() {
        tracing::error!(error = %cause, "The event handler failed.");
    }
    let reason = format!(
        "{}: {}",
        error.code(),
        error.cause().unwrap_or(&error.to_body().message)
    );
    // The caller's fault (a declared business error, a validation error) will not change on retry.
    let retryable = !error.code().is_caller_error() || *error.code() == ErrorCode::Timeout;
    if !retryable {
        return Disposition::DeadLetter(reason);
    }
    if delivery >= config.max_deliveries {
        return Disposition::DeadLetter(format!("{reason} (gave up after {delivery} deliveries)"));
    }
    let step = usize::try_from(delivery.saturating_sub(1)).unwrap_or(usize::MAX);
    let delay = config
        .backoff
        .get(step)
        .or(config.backoff.last())
        .copied()
        .unwrap_or(Duration::from_secs(1));
    tracing::warn!(reason = %reason, delivery, retry_in = ?delay, "The event handler failed; retrying later.");
    Disposition::Retry(delay)
}

/// A record of keys already processed (a JetStream KV bucket), so a handler
/// can make an effect happen once even when its event is redelivered.
#[derive(Clone)]
pub struct ProcessedKeys {
    /// Shared: a store's clone copies its stream's whole configuration.
    store: Arc<jetstream::kv::Store>,
}

impl std::fmt::Debug for ProcessedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessedKeys").finish_non_exhaustive()
    }
}

impl ProcessedKeys {
    /// Opens (or creates) the record `soa_processed_<name>`, keeping keys
    /// for `keep`.
    pub async fn open(nats: async_nats::Client, name: &str, keep: Duration) -> Result<Self, EventError> {
        let js = jetstream::new(nats);
        let bucket = format!("soa_processed_{}", sanitize(name));
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(jetstream::kv::Config {
                    bucket: bucket.clone(),
                    max_age: keep,
                    history: 1,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(jetstream_error)?,
        };
        Ok(Self { store: Arc::new(store) })
    }

    /// Records `key` and returns true the first time; false when it was
    /// recorded already (atomically: of two racing callers one gets true).
    /// If the effect the key guards then fails, call [`forget`](Self::forget)
    /// so a redelivery can try again.
    pub async fn first_time(&self, key: &str) -> Result<bool, EventError> {
        match self
            .store
            .create(encode_key(key), bytes::Bytes::from_static(b"1"))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == jetstream::kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(jetstream_error(error)),
        }
    }

    /// Removes `key`, for an effect that failed after [`first_time`](Self::first_time).
    pub async fn forget(&self, key: &str) -> Result<(), EventError> {
        self.store.purge(encode_key(key)).await.map_err(jetstream_error)
    }
}

/// Any text as a KV key, without two texts sharing a key: hex of its bytes
/// (KV keys allow only a few characters).
fn encode_key(key: &str) -> String {
    let hex: String = key.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("k{hex}")
}

/// Bucket names allow letters, digits, `-` and `_`; anything else becomes `_`
/// (the name is chosen by the service, not by its peers).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=/.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, *value);
        }
        map
    }

    fn mismatch(pairs: &[(&str, &str)]) -> Option<String> {
        let producer = ContractId::parse("inventory@1.3.0").unwrap();
        let event = MemberName::parse("reserved").unwrap();
        envelope_mismatch(&producer, &event, "shop.inventory.v1.reserved", Some(&headers(pairs)))
    }

    #[test]
    fn an_event_is_judged_on_its_payload_when_its_headers_agree_or_are_absent() {
        assert_eq!(mismatch(&[]), None);
        assert_eq!(
            mismatch(&[(headers::CONTRACT, "inventory@1.0.0"), (headers::EVENT, "reserved")]),
            None
        );
        assert_eq!(mismatch(&[(headers::CONTRACT, "inventory@1.9.2")]), None);
    }

    #[test]
    fn another_service_major_or_event_in_the_headers_is_refused_and_named() {
        let other_service = mismatch(&[(headers::CONTRACT, "payments@1.0.0")]).unwrap();
        assert!(other_service.starts_with("VALIDATION_FAILED"), "{other_service}");
        assert!(other_service.contains("\"payments@1.0.0\""), "{other_service}");
        assert!(other_service.contains("inventory@1"), "{other_service}");
        let other_major = mismatch(&[(headers::CONTRACT, "inventory@2.0.0")]).unwrap();
        assert!(other_major.contains("\"inventory@2.0.0\""), "{other_major}");
        assert!(mismatch(&[(headers::CONTRACT, "garbage")]).is_some());
        let other_event = mismatch(&[(headers::EVENT, "released")]).unwrap();
        assert!(other_event.contains("\"released\""), "{other_event}");
        assert!(other_event.contains("\"reserved\""), "{other_event}");
        let long = "x".repeat(10_000);
        let quoted = mismatch(&[(headers::EVENT, long.as_str())]).unwrap();
        assert!(quoted.len() < 400, "{}", quoted.len());
    }
}
