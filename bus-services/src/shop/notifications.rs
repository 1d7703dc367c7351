//! The notifications service: tells a customer about an order at most once
//! per kind (`<order>.<kind>` is created once; a repeat answers with what
//! was sent), and lists what it sent.

use std::sync::Arc;

use async_nats::jetstream;
use contracts::shop::notifications::{
    self, ListNotifications, Notification, NotificationKind, NotificationLog, SendNotification,
};
use contracts::shop::orders::{self, OrderCancelled, OrderCompleted};
use contracts::shop::{FailureReason, FlowMode, OrderId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::ShopConfig;
use super::flow::{
    Tasks, driven_by_workflow, event_message_id, order_flow, publish_failed, publisher, service_config, set_up,
    spawn_consumer,
};
use super::state::{Bucket, NOTIFICATIONS_BUCKET, StoreError, now_ms};
use crate::runtime::{EventContext, EventPublisher, Propagation, Service, ServiceError};

/// What a customer is told when the order is on its way (the fulfilment
/// workflow's `notify` step sends the same words).
pub(crate) const CONFIRMED_MESSAGE: &str = "Your order is on its way.";

/// What a customer is told when the order is cancelled.
pub(crate) fn cancelled_message(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::OutOfStock => "Your order was cancelled: an item is out of stock. Nothing was charged.",
        FailureReason::PaymentDeclined => "Your order was cancelled: the payment was declined.",
        FailureReason::ShippingUnavailable => {
            "Your order was cancelled: it could not be shipped. Your payment was refunded."
        }
    }
}

/// A notification as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NotificationRecord {
    /// What was sent.
    pub(crate) notification: Notification,
    /// When, ms since the Unix epoch.
    pub(crate) sent_at_ms: u64,
}

/// The kind as it is spelt in keys and on the wire.
pub(crate) fn kind_name(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::OrderConfirmed => "order-confirmed",
        NotificationKind::OrderCancelled => "order-cancelled",
    }
}

/// The notifications' state.
#[derive(Clone)]
pub(crate) struct Notifications {
    sent: Bucket,
}

impl Notifications {
    /// Opens (creating when missing) the notifications bucket.
    pub(crate) async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, StoreError> {
        Ok(Self {
            sent: Bucket::open(
                js,
                NOTIFICATIONS_BUCKET,
                "soabus shop: one notification per order and kind",
                replicas,
            )
            .await?,
        })
    }

    /// Sends a notification once per order and kind; a repeat answers with
    /// the one sent first.
    pub(crate) async fn send(&self, request: SendNotification) -> Result<Notification, StoreError> {
        let kind = kind_name(request.kind);
        let key = format!("{}.{kind}", request.order_id.0);
        let record = NotificationRecord {
            notification: Notification {
                notification_id: format!("ntf-{}-{kind}", request.order_id.0),
                order_id: request.order_id,
                customer_id: request.customer_id,
                kind: request.kind,
                message: request.message,
                mode: None,
            },
            sent_at_ms: now_ms(),
        };
        for _ in 0..4 {
            if self.sent.create(&key, &record).await? {
                return Ok(record.notification);
            }
            if let Some(sent) = self.sent.get::<NotificationRecord>(&key).await? {
                return Ok(sent.notification);
            }
        }
        Err(StoreError {
            bucket: NOTIFICATIONS_BUCKET.to_owned(),
            doing: format!("sending {key}"),
            message: "the notification was neither stored nor readable".to_owned(),
        })
    }

    /// What was sent, oldest first, for one order or all.
    pub(crate) async fn list(&self, order_id: Option<&OrderId>) -> Result<Vec<NotificationRecord>, StoreError> {
        let mut records: Vec<NotificationRecord> = self
            .sent
            .all::<NotificationRecord>()
            .await?
            .into_iter()
            .map(|(_, record)| record)
            .filter(|record| order_id.is_none_or(|order| record.notification.order_id == *order))
            .collect();
        records.sort_by(|a, b| {
            (a.sent_at_ms, &a.notification.notification_id).cmp(&(b.sent_at_ms, &b.notification.notification_id))
        });
        Ok(records)
    }
}

/// The operations: a notification sent is announced as an event of an
/// orchestrated order (mode `orchestrated`, which nobody reacts to in the
/// choreography) before the answer.
fn service(reactions: &Arc<Reactions>, config: &ShopConfig) -> Result<Service, ShopError> {
    let (for_send, for_list) = (Arc::clone(reactions), reactions.notifications.clone());
    Ok(Service::builder(notifications::contract()?)
        .config(service_config(config))
        .handle::<notifications::Send, _, _>(move |context, request: SendNotification| {
            let reactions = Arc::clone(&for_send);
            async move {
                reactions
                    .send(context.propagation(), request, FlowMode::Orchestrated)
                    .await
            }
        })
        .handle::<notifications::List, _, _>(move |_context, request: ListNotifications| {
            let notifications = for_list.clone();
            async move {
                let records = notifications.list(request.order_id.as_ref()).await?;
                Ok(NotificationLog {
                    notifications: records.into_iter().map(|record| record.notification).collect(),
                })
            }
        })
        .build()?)
}

/// The choreography: tell the customer how the order ended.
struct Reactions {
    notifications: Notifications,
    publisher: EventPublisher,
}

impl Reactions {
    async fn tell(
        &self,
        context: EventContext,
        order_id: OrderId,
        customer_id: Option<String>,
        kind: NotificationKind,
        message: &str,
    ) -> Result<(), ServiceError> {
        let Some(customer_id) = customer_id.filter(|customer| !customer.is_empty()) else {
            // Will not change on redelivery: the dead letters keep it.
            return Err(ServiceError::invalid(
                format!(
                    "the event about order {} names no customer (orders@1.1.0 and later do)",
                    order_id.0
                ),
                Vec::new(),
            ));
        };
        let request = SendNotification {
            order_id,
            customer_id,
            kind,
            message: message.to_owned(),
        };
        self.send(context.propagation(), request, FlowMode::Choreographed)
            .await
            .map(drop)
    }

    /// Sends a notification about an order of `mode` and announces it.
    async fn send(
        &self,
        cause: &Propagation,
        request: SendNotification,
        mode: FlowMode,
    ) -> Result<Notification, ServiceError> {
        let order = request.order_id.0.clone();
        let kind = request.kind;
        let sent = self.notifications.send(request).await?;
        self.publisher
            .in_flow(&order_flow(cause, &order))
            .publish_with_id::<notifications::Sent>(
                &event_message_id(&order, "notifications", kind_name(kind), mode),
                &Notification {
                    mode: Some(mode),
                    ..sent.clone()
                },
            )
            .await
            .map_err(publish_failed)?;
        Ok(sent)
    }
}

/// Runs notifications (its operations and its reactions) until `shutdown`.
pub(crate) async fn run(
    config: Arc<ShopConfig>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ShopError> {
    let js = jetstream::new(nats.clone());
    let notifications = set_up("opening notifications' bucket", || {
        Notifications::open(&js, config.replicas)
    })
    .await?;
    let publisher = publisher(&nats, notifications::contract()?, config.replicas).await?;
    let reactions = Arc::new(Reactions {
        notifications,
        publisher,
    });
    let service = service(&reactions, &config)?;
    let mut tasks = Tasks::new(&shutdown);
    let on_completed = Arc::clone(&reactions);
    spawn_consumer::<orders::Completed, _, _>(
        &mut tasks,
        &nats,
        &config,
        &orders::contract()?,
        "notifications-orders-completed",
        move |context, completed: OrderCompleted| {
            let reactions = Arc::clone(&on_completed);
            async move {
                if driven_by_workflow(completed.mode) {
                    return Ok(());
                }
                reactions
                    .tell(
                        context,
                        completed.order_id,
                        completed.customer_id,
                        NotificationKind::OrderConfirmed,
                        CONFIRMED_MESSAGE,
                    )
                    .await
            }
        },
    );
    let on_cancelled = reactions;
    spawn_consumer::<orders::Cancelled, _, _>(
        &mut tasks,
        &nats,
        &config,
        &orders::contract()?,
        "notifications-orders-cancelled",
        move |context, cancelled: OrderCancelled| {
            let reactions = Arc::clone(&on_cancelled);
            async move {
                if driven_by_workflow(cancelled.mode) {
                    return Ok(());
                }
                reactions
                    .tell(
                        context,
                        cancelled.order_id,
                        cancelled.customer_id,
                        NotificationKind::OrderCancelled,
                        cancelled_message(cancelled.reason),
                    )
                    .await
            }
        },
    );
    tasks.serve(service, nats).await
}
