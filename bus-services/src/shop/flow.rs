//! What every shop service shares: the flow an order's messages carry, the
//! message ids that make a re-published event a duplicate JetStream drops,
//! and the choreography's durable consumers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use contracts::shop::FlowMode;
use contracts::{ContractDocument, EventType, SchemaSet};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::ShopConfig;
use crate::patience::{self, SETUP_PATIENCE};
use crate::runtime::{
    ConsumerConfig, EventContext, EventError, EventPublisher, Propagation, Service, ServiceConfig, ServiceError,
    consume,
};
use crate::wire::CorrelationId;

/// The flow of an order: its id as the correlation id, in the trace of the
/// message that caused this one.
pub(crate) fn order_flow(cause: &Propagation, order_id: &str) -> Propagation {
    Propagation {
        correlation_id: CorrelationId::parse(order_id)
            .ok()
            .or_else(|| cause.correlation_id.clone()),
        trace: cause.trace.clone(),
    }
}

/// The message id of an order's event: the same for every publication of
/// it, so a handler that runs again (a redelivery) or an operation called
/// again (a retry) publishes a duplicate JetStream drops within its window,
/// and a later copy changes nothing downstream (every reaction is keyed on
/// the order).
///
/// The event's `mode` is part of the id of an orchestrated one
/// (`<order>/<service>/<event>/orchestrated`): an operation called by hand
/// on a choreographed order (or before it was placed) announces its change
/// as orchestrated, and that announcement must not take the id of the
/// choreography's own event, which would then be dropped as a duplicate and
/// leave the flow waiting for it.
pub(crate) fn event_message_id(order_id: &str, service: &str, event: &str, mode: FlowMode) -> String {
    match mode {
        FlowMode::Choreographed => format!("{order_id}/{service}/{event}"),
        FlowMode::Orchestrated => format!("{order_id}/{service}/{event}/orchestrated"),
    }
}

/// Publishing an order's events under [`event_message_id`].
pub(crate) trait Announce {
    /// Publishes event `E` of `order`, driven in `mode`, under the order's
    /// message id for it; a failure is retried by whoever sent the message.
    async fn announce<E: EventType>(
        &self,
        order: &str,
        mode: FlowMode,
        payload: &E::Payload,
    ) -> Result<(), ServiceError>;
}

impl Announce for EventPublisher {
    async fn announce<E: EventType>(
        &self,
        order: &str,
        mode: FlowMode,
        payload: &E::Payload,
    ) -> Result<(), ServiceError> {
        let id = event_message_id(order, self.contract().service.as_str(), E::NAME, mode);
        self.publish_with_id::<E>(&id, payload).await.map_err(publish_failed)
    }
}

/// Whether a choreography reaction must leave an event alone: it announces a
/// change of an orchestrated order, which the workflow drives. An event
/// without a mode comes from a producer older than the field, which only
/// ever published for the choreography.
pub(crate) fn driven_by_workflow(mode: Option<FlowMode>) -> bool {
    mode == Some(FlowMode::Orchestrated)
}

/// How the shop's services run.
pub(crate) fn service_config(config: &ShopConfig) -> ServiceConfig {
    ServiceConfig {
        registration: config.registration.clone(),
        handler_timeout: config.handler_timeout,
        shutdown_timeout: config.shutdown_timeout,
        ..ServiceConfig::default()
    }
}

/// A publishing failure inside a handler: retried by whoever sent the message.
pub(crate) fn publish_failed(error: EventError) -> ServiceError {
    tracing::warn!(error = %error, "Could not publish an event.");
    ServiceError::unavailable("the event could not be published; try again")
}

/// Sets up what a shop service needs (its bucket, its stock), trying again
/// for up to [`SETUP_PATIENCE`] while JetStream requests time out: on a
/// cluster electing leaders (a node down or just back, a busy machine) a
/// request can time out although the same one moments later succeeds, and a
/// service must not stop for that.
pub(crate) async fn set_up<T, E, F, Fut>(doing: &str, attempt: F) -> Result<T, ShopError>
where
    E: std::fmt::Display + Into<ShopError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    patience::until_done(doing, SETUP_PATIENCE, attempt)
        .await
        .map_err(Into::into)
}

/// The publisher of `contract`'s events, its stream made with `replicas`
/// copies, set up as [`set_up`] does.
pub(crate) async fn publisher(
    nats: &async_nats::Client,
    contract: ContractDocument,
    replicas: usize,
) -> Result<EventPublisher, ShopError> {
    let doing = format!("making the event stream of {}", contract.service);
    set_up(&doing, || async {
        EventPublisher::with_replicas(nats.clone(), contract.clone(), &SchemaSet::default(), replicas).await
    })
    .await
}

/// Tasks that run together and stop together: the first to fail stops the
/// others, and each one's end before shutdown counts as a failure.
pub(crate) struct Tasks {
    set: JoinSet<(String, Result<(), ShopError>)>,
    stop: CancellationToken,
}

impl Tasks {
    /// Tasks stopped by `shutdown` (or by the first failure among them).
    pub(crate) fn new(shutdown: &CancellationToken) -> Self {
        Self {
            set: JoinSet::new(),
            stop: shutdown.child_token(),
        }
    }

    /// The token the tasks stop on.
    pub(crate) fn stop(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `task`, called `name` in errors.
    pub(crate) fn spawn(&mut self, name: String, task: impl Future<Output = Result<(), ShopError>> + Send + 'static) {
        self.set.spawn(async move { (name, task.await) });
    }

    /// Serves `service` beside the tasks already spawned (its consumers)
    /// until they stop, then waits for all of them, as [`Tasks::join`].
    pub(crate) async fn serve(mut self, service: Service, nats: async_nats::Client) -> Result<(), ShopError> {
        let stop = self.stop();
        let name = format!("the {} service", service.contract().service);
        self.spawn(
            name,
            async move { service.run(nats, stop).await.map_err(ShopError::from) },
        );
        self.join().await
    }

    /// Waits for every task; the first failure (or early end) is returned
    /// after the others have stopped.
    pub(crate) async fn join(mut self) -> Result<(), ShopError> {
        let mut first_error = None;
        while let Some(joined) = self.set.join_next().await {
            let failure = match joined {
                Ok((_, Ok(()))) if self.stop.is_cancelled() => None,
                Ok((name, Ok(()))) => Some(ShopError::Stopped { task: name }),
                Ok((_, Err(error))) => Some(error),
                Err(error) => Some(ShopError::Task(error.to_string())),
            };
            if let Some(error) = failure {
                tracing::error!(error = %error, "A shop task failed; stopping the others.");
                self.stop.cancel();
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The settings of a choreography consumer called `durable`.
fn consumer_config(config: &ShopConfig, durable: &str) -> ConsumerConfig {
    ConsumerConfig {
        max_deliveries: config.max_deliveries.max(1),
        backoff: vec![
            Duration::from_millis(50),
            Duration::from_millis(200),
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(2),
        ],
        handler_timeout: Duration::from_secs(4),
        // A delivery an instance took but did not settle (it stopped, or was
        // killed) comes back to another instance this soon.
        ack_wait: Duration::from_secs(5),
        replicas: config.replicas,
        ..ConsumerConfig::new(durable)
    }
}

/// How long a consumer keeps trying to set itself up (its stream, the
/// dead-letter stream, the durable consumer) before its service gives up.
///
/// On a cluster JetStream answers those requests only once the stream's and
/// the consumer's RAFT groups have leaders, which takes seconds while many
/// are created at once or a node is down, and the pullers of one durable
/// consumer create it concurrently; a request can then time out although a
/// second one, moments later, finds everything in place.
const CONSUMER_SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// Consumes `producer`'s event `E` with the durable consumer `durable`,
/// with [`ShopConfig::consumers_per_event`] pullers so one slow message does
/// not hold up the others. A puller whose set-up fails tries again (for
/// [`CONSUMER_SETUP_PATIENCE`]) instead of stopping the shop.
pub(crate) fn spawn_consumer<E, F, Fut>(
    tasks: &mut Tasks,
    nats: &async_nats::Client,
    config: &ShopConfig,
    producer: &ContractDocument,
    durable: &str,
    handler: F,
) where
    E: EventType,
    F: Fn(EventContext, E::Payload) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ServiceError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    for _ in 0..config.consumers_per_event.max(1) {
        let handler = Arc::clone(&handler);
        let (nats, producer, settings, stop) = (
            nats.clone(),
            producer.clone(),
            consumer_config(config, durable),
            tasks.stop(),
        );
        tasks.spawn(format!("the consumer {durable}"), async move {
            let started = tokio::time::Instant::now();
            let mut delay = Duration::from_millis(250);
            loop {
                let handler = Arc::clone(&handler);
                let run = consume::<E, _, _>(
                    nats.clone(),
                    producer.clone(),
                    settings.clone(),
                    move |context, payload| handler(context, payload),
                    stop.clone(),
                );
                // `consume` returns an error only while setting up.
                match run.await {
                    Ok(()) => return Ok(()),
                    // Told to stop while still setting up: nothing was taken, nothing is lost.
                    Err(_) if stop.is_cancelled() => return Ok(()),
                    Err(error) if started.elapsed() < CONSUMER_SETUP_PATIENCE => {
                        tracing::warn!(
                            consumer = %settings.durable_name,
                            error = %error,
                            retry_in = ?delay,
                            "The consumer could not be set up; trying again."
                        );
                        tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            () = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Err(error) => return Err(ShopError::from(error)),
                }
            }
        });
    }
}
