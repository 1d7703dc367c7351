//! The shipping service: at most one shipment per order. Whether one can be
//! scheduled is the seeded rule of [`ShopConfig::shipping_fails`]; the
//! first decision is stored create-only (`shipment.<order>`) and every later
//! call answers from it. A cancellation before any schedule leaves a
//! `cancelled` record, so a late schedule ships nothing.

use std::sync::Arc;

use async_nats::jetstream;
use contracts::ErrorDetail;
use contracts::shop::payments::{self, PaymentCharged};
use contracts::shop::shipping::{
    self, CancelShipment, ScheduleShipment, Shipment, ShipmentCancelled, ShipmentFailed, ShipmentScheduled,
};
use contracts::shop::{FlowMode, OrderId, StockLine};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::ShopConfig;
use super::flow::{Announce, Tasks, driven_by_workflow, order_flow, publisher, service_config, set_up, spawn_consumer};
use super::state::{Bucket, Change, SHIPMENTS_BUCKET, StoreError, now_ms};
use crate::runtime::{EventContext, EventPublisher, Propagation, Service, ServiceError};

/// Where an order's shipment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShipmentStatus {
    /// On its way.
    Scheduled,
    /// No shipment could be scheduled.
    Failed,
    /// Cancelled (after being scheduled, or before anything was).
    Cancelled,
}

/// One order's shipment as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShipmentRecord {
    /// The order.
    pub(crate) order_id: OrderId,
    /// The shipment.
    pub(crate) shipment_id: String,
    /// Who carries it.
    pub(crate) carrier: String,
    /// What is in the parcel.
    pub(crate) items: Vec<StockLine>,
    /// Where it stands.
    pub(crate) status: ShipmentStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Whether it was scheduled before it was cancelled.
    #[serde(default)]
    pub(crate) was_scheduled: bool,
    /// When it last changed, ms since the Unix epoch.
    pub(crate) updated_at_ms: u64,
}

/// The key of an order's shipment.
pub(crate) fn shipment_key(order: &str) -> String {
    format!("shipment.{order}")
}

/// What scheduling came to.
#[derive(Debug, Clone)]
pub(crate) enum Scheduled {
    /// On its way (now or before).
    Shipped(ShipmentRecord),
    /// No shipment can be scheduled, with the reason.
    Unavailable(String),
    /// The shipment was cancelled before.
    Cancelled,
}

/// The shipping service's state.
#[derive(Clone)]
pub(crate) struct Shipping {
    shipments: Bucket,
    config: Arc<ShopConfig>,
}

impl Shipping {
    /// Opens (creating when missing) the shipments bucket.
    pub(crate) async fn open(js: &jetstream::Context, config: Arc<ShopConfig>) -> Result<Self, StoreError> {
        Ok(Self {
            shipments: Bucket::open(
                js,
                SHIPMENTS_BUCKET,
                "soabus shop: one shipment per order",
                config.replicas,
            )
            .await?,
            config,
        })
    }

    /// Schedules `order_id`'s shipment, once per order.
    pub(crate) async fn schedule(&self, order_id: &OrderId, items: &[StockLine]) -> Result<Scheduled, StoreError> {
        let key = shipment_key(&order_id.0);
        let fails = self.config.shipping_fails(&order_id.0);
        let record = self
            .shipments
            .modify(&key, |current: Option<&ShipmentRecord>| match current {
                Some(record) => Change::Keep(record.clone()),
                None => {
                    let record = ShipmentRecord {
                        order_id: order_id.clone(),
                        shipment_id: format!("shp-{}", order_id.0),
                        carrier: self.config.carrier(&order_id.0).to_owned(),
                        items: items.to_vec(),
                        status: if fails {
                            ShipmentStatus::Failed
                        } else {
                            ShipmentStatus::Scheduled
                        },
                        reason: fails.then(|| "no carrier can collect the parcel".to_owned()),
                        was_scheduled: false,
                        updated_at_ms: now_ms(),
                    };
                    Change::Write(record.clone(), record)
                }
            })
            .await?;
        Ok(match record.status {
            ShipmentStatus::Scheduled => Scheduled::Shipped(record),
            ShipmentStatus::Failed => Scheduled::Unavailable(
                record
                    .reason
                    .unwrap_or_else(|| "no shipment can be scheduled".to_owned()),
            ),
            ShipmentStatus::Cancelled => Scheduled::Cancelled,
        })
    }

    /// Cancels `order_id`'s shipment, once.
    pub(crate) async fn cancel(&self, order_id: &OrderId) -> Result<ShipmentCancelled, StoreError> {
        let key = shipment_key(&order_id.0);
        let record = self
            .shipments
            .modify(&key, |current: Option<&ShipmentRecord>| match current {
                None => {
                    let record = ShipmentRecord {
                        order_id: order_id.clone(),
                        shipment_id: format!("shp-{}", order_id.0),
                        carrier: String::new(),
                        items: Vec::new(),
                        status: ShipmentStatus::Cancelled,
                        reason: Some("cancelled before it was scheduled".to_owned()),
                        was_scheduled: false,
                        updated_at_ms: now_ms(),
                    };
                    Change::Write(record.clone(), record)
                }
                Some(record) if record.status == ShipmentStatus::Scheduled => {
                    let mut next = record.clone();
                    next.status = ShipmentStatus::Cancelled;
                    next.was_scheduled = true;
                    next.updated_at_ms = now_ms();
                    Change::Write(next.clone(), next)
                }
                Some(record) => Change::Keep(record.clone()),
            })
            .await?;
        Ok(ShipmentCancelled {
            order_id: order_id.clone(),
            cancelled: record.was_scheduled,
        })
    }
}

/// The operations: the state changes, a schedule announced as an event of
/// an orchestrated order (mode `orchestrated`, which the choreography's
/// reactions ignore) before the answer. A cancellation has no event.
fn service(reactions: &Arc<Reactions>, config: &ShopConfig) -> Result<Service, ShopError> {
    let (for_schedule, for_cancel) = (Arc::clone(reactions), reactions.shipping.clone());
    Ok(Service::builder(shipping::contract()?)
        .config(service_config(config))
        .handle::<shipping::Schedule, _, _>(move |context, request: ScheduleShipment| {
            let reactions = Arc::clone(&for_schedule);
            async move {
                let scheduled = reactions.shipping.schedule(&request.order_id, &request.items).await?;
                reactions
                    .announce_schedule(
                        context.propagation(),
                        &request.order_id,
                        &scheduled,
                        FlowMode::Orchestrated,
                    )
                    .await?;
                match scheduled {
                    Scheduled::Shipped(record) => Ok(Shipment {
                        shipment_id: record.shipment_id,
                        order_id: record.order_id,
                        carrier: record.carrier,
                    }),
                    Scheduled::Unavailable(reason) => Err(ServiceError::declared("SHIPPING_UNAVAILABLE", reason)),
                    Scheduled::Cancelled => Err(ServiceError::conflict(format!(
                        "the shipment of order {} was cancelled; it is not scheduled again",
                        request.order_id.0
                    ))),
                }
            }
        })
        .handle::<shipping::Cancel, _, _>(move |_context, request: CancelShipment| {
            let shipping = for_cancel.clone();
            async move { Ok(shipping.cancel(&request.order_id).await?) }
        })
        .build()?)
}

/// The choreography: schedule an order's shipment once it is paid for (the
/// `charged` event says what the parcel holds).
struct Reactions {
    shipping: Shipping,
    publisher: EventPublisher,
}

impl Reactions {
    async fn charged(&self, context: EventContext, charged: PaymentCharged) -> Result<(), ServiceError> {
        if driven_by_workflow(charged.mode) {
            return Ok(());
        }
        let Some(items) = &charged.items else {
            return Err(no_parcel(&charged));
        };
        let scheduled = self.shipping.schedule(&charged.order_id, items).await?;
        self.announce_schedule(
            context.propagation(),
            &charged.order_id,
            &scheduled,
            FlowMode::Choreographed,
        )
        .await
    }

    /// Announces what scheduling the shipment of an order of `mode` came to.
    async fn announce_schedule(
        &self,
        cause: &Propagation,
        order_id: &OrderId,
        scheduled: &Scheduled,
        mode: FlowMode,
    ) -> Result<(), ServiceError> {
        let order = order_id.0.as_str();
        let publisher = self.publisher.in_flow(&order_flow(cause, order));
        match scheduled {
            Scheduled::Shipped(record) => {
                publisher
                    .announce::<shipping::Scheduled>(
                        order,
                        mode,
                        &ShipmentScheduled {
                            order_id: record.order_id.clone(),
                            shipment_id: record.shipment_id.clone(),
                            carrier: record.carrier.clone(),
                            mode: Some(mode),
                        },
                    )
                    .await
            }
            Scheduled::Unavailable(reason) => {
                publisher
                    .announce::<shipping::Failed>(
                        order,
                        mode,
                        &ShipmentFailed {
                            order_id: order_id.clone(),
                            reason: reason.clone(),
                            mode: Some(mode),
                        },
                    )
                    .await
            }
            Scheduled::Cancelled => {
                tracing::warn!(order = %order, "The order was paid for after its shipment was cancelled; nothing ships.");
                Ok(())
            }
        }
    }
}

/// Why a choreographed `charged` event cannot be shipped: it does not say
/// what the parcel holds (payments older than 1.3.0 published it). No retry
/// changes that, so it goes to the dead letters.
fn no_parcel(charged: &PaymentCharged) -> ServiceError {
    ServiceError::invalid(
        format!(
            "the charge of order {} does not say what the parcel holds; payments 1.3.0 or later carries the \
             items from the order's `reserved` event",
            charged.order_id.0
        ),
        vec![ErrorDetail {
            pointer: "/items".to_owned(),
            schema_path: None,
            message: "a choreographed charge must carry this to be shipped".to_owned(),
        }],
    )
}

/// Runs shipping (its operations and its reactions) until `shutdown`.
pub(crate) async fn run(
    config: Arc<ShopConfig>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ShopError> {
    let js = jetstream::new(nats.clone());
    let shipping = set_up("opening shipping's bucket", || Shipping::open(&js, Arc::clone(&config))).await?;
    let publisher = publisher(&nats, shipping::contract()?, config.replicas).await?;
    let reactions = Arc::new(Reactions { shipping, publisher });
    let service = service(&reactions, &config)?;
    let mut tasks = Tasks::new(&shutdown);
    let on_charged = reactions;
    spawn_consumer::<payments::Charged, _, _>(
        &mut tasks,
        &nats,
        &config,
        &payments::contract()?,
        "shipping-payments-charged",
        move |context, charged| {
            let reactions = Arc::clone(&on_charged);
            async move { reactions.charged(context, charged).await }
        },
    );
    tasks.serve(service, nats).await
}
