//! The payments service: at most one charge per order and at most one
//! refund of it, whatever the idempotency keys of the calls or the
//! redeliveries of the events.
//!
//! The charge record (`charge.<order>`) is created once, by whoever decides
//! first: charged or declined (the decision is the seeded rule of
//! [`ShopConfig::declines`], after the gateway's latency). Every later
//! charge of the order answers from that record; a refund turns it
//! `refunded` by compare-and-set. A refund before any charge leaves a
//! `voided` record, so a late charge is declined instead of taking money
//! nobody gives back.

use std::sync::Arc;

use async_nats::jetstream;
use contracts::ErrorDetail;
use contracts::shop::inventory::{self, StockReserved};
use contracts::shop::payments::{
    self, ChargePayment, PaymentCharged, PaymentDeclined, PaymentReceipt, PaymentRefunded, RefundPayment, RefundReceipt,
};
use contracts::shop::shipping::{self, ShipmentFailed};
use contracts::shop::{FlowMode, Money, OrderId, StockLine};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::ShopConfig;
use super::flow::{Announce, Tasks, driven_by_workflow, order_flow, publisher, service_config, set_up, spawn_consumer};
use super::state::{Bucket, Change, PAYMENTS_BUCKET, StoreError, now_ms};
use crate::runtime::{EventContext, EventPublisher, Propagation, Service, ServiceError};

/// The ISO 4217 code for "no currency", for the amount of a refund of nothing.
const NO_CURRENCY: &str = "XXX";

/// Where an order's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentStatus {
    /// The customer was charged.
    Charged,
    /// The charge was declined; no money moved.
    Declined,
    /// The charge was given back.
    Refunded,
    /// Refunded before any charge: a later charge is declined.
    Voided,
}

/// One order's payment as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaymentRecord {
    /// The order.
    pub(crate) order_id: OrderId,
    /// Who pays (empty for a voided record).
    pub(crate) customer_id: String,
    /// What was charged (zero for a declined or voided one).
    pub(crate) amount: Money,
    /// Where it stands.
    pub(crate) status: PaymentStatus,
    /// The payment.
    pub(crate) payment_id: String,
    /// The refund, once refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refund_id: Option<String>,
    /// What went back, once refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refunded: Option<Money>,
    /// Why it was declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) decline_reason: Option<String>,
    /// When it last changed, ms since the Unix epoch.
    pub(crate) updated_at_ms: u64,
}

impl PaymentRecord {
    /// Minor units charged and not given back.
    pub(crate) fn charged_cents(&self) -> u64 {
        match self.status {
            PaymentStatus::Charged | PaymentStatus::Refunded => self.amount.amount_cents,
            PaymentStatus::Declined | PaymentStatus::Voided => 0,
        }
    }
}

/// The key of an order's charge.
pub(crate) fn charge_key(order: &str) -> String {
    format!("charge.{order}")
}

/// What charging came to.
#[derive(Debug, Clone)]
pub(crate) enum Charged {
    /// Charged (now or before).
    Paid(PaymentRecord),
    /// Declined (now or before), with the reason.
    Declined(String),
    /// The order was charged another amount before.
    Conflict(String),
}

/// The payments' state and gateway.
#[derive(Clone)]
pub(crate) struct Payments {
    payments: Bucket,
    config: Arc<ShopConfig>,
}

impl Payments {
    /// Opens (creating when missing) the payments bucket.
    pub(crate) async fn open(js: &jetstream::Context, config: Arc<ShopConfig>) -> Result<Self, StoreError> {
        Ok(Self {
            payments: Bucket::open(
                js,
                PAYMENTS_BUCKET,
                "soabus shop: one charge per order",
                config.replicas,
            )
            .await?,
            config,
        })
    }

    /// Charges `amount` for `order_id`, once per order.
    pub(crate) async fn charge(
        &self,
        order_id: &OrderId,
        customer_id: &str,
        amount: &Money,
    ) -> Result<Charged, StoreError> {
        let key = charge_key(&order_id.0);
        // The first round takes the order for one not charged yet (the
        // common case) and reads nothing; when a record is there already,
        // the create fails and the next round answers from it.
        let mut guess_new = true;
        for _ in 0..4 {
            if !std::mem::take(&mut guess_new)
                && let Some(record) = self.payments.get::<PaymentRecord>(&key).await?
            {
                return Ok(answer(record, amount));
            }
            // A new charge: the gateway takes its time, then decides by the seeded rule.
            tokio::time::sleep(self.config.payment_latency).await;
            let declined = self.config.declines(&order_id.0);
            let record = PaymentRecord {
                order_id: order_id.clone(),
                customer_id: customer_id.to_owned(),
                amount: if declined {
                    Money {
                        amount_cents: 0,
                        currency: amount.currency.clone(),
                    }
                } else {
                    amount.clone()
                },
                status: if declined {
                    PaymentStatus::Declined
                } else {
                    PaymentStatus::Charged
                },
                payment_id: format!("pay-{}", order_id.0),
                refund_id: None,
                refunded: None,
                decline_reason: declined.then(|| "the card issuer declined the charge".to_owned()),
                updated_at_ms: now_ms(),
            };
            if self.payments.create(&key, &record).await? {
                return Ok(answer(record, amount));
            }
            // Another attempt decided first: its record is the answer.
        }
        Err(StoreError {
            bucket: PAYMENTS_BUCKET.to_owned(),
            doing: format!("charging {}", order_id.0),
            message: "the charge record kept changing".to_owned(),
        })
    }

    /// Gives back what `order_id` was charged, once.
    pub(crate) async fn refund(&self, order_id: &OrderId) -> Result<PaymentRecord, StoreError> {
        let key = charge_key(&order_id.0);
        self.payments
            .modify(&key, |current: Option<&PaymentRecord>| match current {
                None => {
                    let voided = PaymentRecord {
                        order_id: order_id.clone(),
                        customer_id: String::new(),
                        amount: Money {
                            amount_cents: 0,
                            currency: NO_CURRENCY.to_owned(),
                        },
                        status: PaymentStatus::Voided,
                        payment_id: format!("pay-{}", order_id.0),
                        refund_id: None,
                        refunded: None,
                        decline_reason: None,
                        updated_at_ms: now_ms(),
                    };
                    Change::Write(voided.clone(), voided)
                }
                Some(record) if record.status == PaymentStatus::Charged => {
                    let mut next = record.clone();
                    next.status = PaymentStatus::Refunded;
                    next.refund_id = Some(format!("ref-{}", order_id.0));
                    next.refunded = Some(record.amount.clone());
                    next.updated_at_ms = now_ms();
                    Change::Write(next.clone(), next)
                }
                Some(record) => Change::Keep(record.clone()),
            })
            .await
    }
}

/// Why a choreographed `reserved` event cannot be charged: it does not say
/// who pays or how much (an inventory older than 1.2.0 published it). No
/// retry changes that, so it goes to the dead letters.
fn no_payer(reserved: &StockReserved) -> ServiceError {
    let missing = [
        ("/customer_id", reserved.customer_id.is_none()),
        ("/total", reserved.total.is_none()),
    ];
    ServiceError::invalid(
        format!(
            "the reservation of order {} does not say who pays or how much; inventory 1.2.0 or later carries \
             both from the order's `placed` event",
            reserved.order_id.0
        ),
        missing
            .into_iter()
            .filter(|(_, absent)| *absent)
            .map(|(pointer, _)| ErrorDetail {
                pointer: pointer.to_owned(),
                schema_path: None,
                message: "a choreographed reservation must carry this to be charged".to_owned(),
            })
            .collect(),
    )
}

/// The answer of a charge from the order's record.
fn answer(record: PaymentRecord, requested: &Money) -> Charged {
    match record.status {
        PaymentStatus::Charged | PaymentStatus::Refunded if record.amount != *requested => Charged::Conflict(format!(
            "order {} was charged {} {} already",
            record.order_id.0, record.amount.amount_cents, record.amount.currency
        )),
        PaymentStatus::Charged | PaymentStatus::Refunded => Charged::Paid(record),
        PaymentStatus::Declined => Charged::Declined(
            record
                .decline_reason
                .unwrap_or_else(|| "the charge was declined".to_owned()),
        ),
        PaymentStatus::Voided => Charged::Declined("the order was refunded before it was charged".to_owned()),
    }
}

/// The refund receipt of a record.
fn refund_receipt(record: &PaymentRecord) -> RefundReceipt {
    RefundReceipt {
        refund_id: record
            .refund_id
            .clone()
            .unwrap_or_else(|| format!("ref-{}", record.order_id.0)),
        order_id: record.order_id.clone(),
        amount: record.refunded.clone().unwrap_or_else(|| Money {
            amount_cents: 0,
            currency: record.amount.currency.clone(),
        }),
    }
}

/// The operations: the state changes, each announced as an event of an
/// orchestrated order (mode `orchestrated`, which the choreography's
/// reactions ignore), before the answer.
fn service(reactions: &Arc<Reactions>, config: &ShopConfig) -> Result<Service, ShopError> {
    let (for_charge, for_refund) = (Arc::clone(reactions), Arc::clone(reactions));
    Ok(Service::builder(payments::contract()?)
        .config(service_config(config))
        .handle::<payments::Charge, _, _>(move |context, request: ChargePayment| {
            let reactions = Arc::clone(&for_charge);
            async move {
                let charged = reactions
                    .payments
                    .charge(&request.order_id, &request.customer_id, &request.amount)
                    .await?;
                reactions
                    .announce_charge(
                        context.propagation(),
                        &request.order_id,
                        &charged,
                        FlowMode::Orchestrated,
                        None,
                    )
                    .await?;
                match charged {
                    Charged::Paid(record) => Ok(PaymentReceipt {
                        payment_id: record.payment_id,
                        order_id: record.order_id,
                        amount: record.amount,
                    }),
                    Charged::Declined(reason) => Err(ServiceError::declared("PAYMENT_DECLINED", reason)),
                    Charged::Conflict(message) => Err(ServiceError::conflict(message)),
                }
            }
        })
        .handle::<payments::Refund, _, _>(move |context, request: RefundPayment| {
            let reactions = Arc::clone(&for_refund);
            async move {
                let record = reactions
                    .refund(context.propagation(), &request.order_id, FlowMode::Orchestrated)
                    .await?;
                Ok(refund_receipt(&record))
            }
        })
        .build()?)
}

/// The choreography: charge an order once its stock is reserved (the
/// `reserved` event says who pays and how much), refund it when no shipment
/// can be scheduled.
struct Reactions {
    payments: Payments,
    publisher: EventPublisher,
}

impl Reactions {
    async fn reserved(&self, context: EventContext, reserved: StockReserved) -> Result<(), ServiceError> {
        if driven_by_workflow(reserved.mode) {
            return Ok(());
        }
        let (Some(customer_id), Some(total)) = (&reserved.customer_id, &reserved.total) else {
            return Err(no_payer(&reserved));
        };
        let charged = self.payments.charge(&reserved.order_id, customer_id, total).await?;
        self.announce_charge(
            context.propagation(),
            &reserved.order_id,
            &charged,
            FlowMode::Choreographed,
            Some(&reserved.items),
        )
        .await?;
        match charged {
            Charged::Conflict(message) => Err(ServiceError::conflict(message)),
            Charged::Paid(_) | Charged::Declined(_) => Ok(()),
        }
    }

    /// Announces what charging an order of `mode` came to (a conflict
    /// changed nothing and announces nothing). A charge for a `reserved`
    /// event carries on its `items`, which shipping needs next in the
    /// choreography.
    async fn announce_charge(
        &self,
        cause: &Propagation,
        order_id: &OrderId,
        charged: &Charged,
        mode: FlowMode,
        items: Option<&Vec<StockLine>>,
    ) -> Result<(), ServiceError> {
        let order = order_id.0.as_str();
        let publisher = self.publisher.in_flow(&order_flow(cause, order));
        match charged {
            Charged::Paid(record) => {
                publisher
                    .announce::<payments::Charged>(
                        order,
                        mode,
                        &PaymentCharged {
                            order_id: record.order_id.clone(),
                            customer_id: record.customer_id.clone(),
                            payment_id: record.payment_id.clone(),
                            amount: record.amount.clone(),
                            mode: Some(mode),
                            items: items.cloned(),
                        },
                    )
                    .await
            }
            Charged::Declined(reason) => {
                publisher
                    .announce::<payments::Declined>(
                        order,
                        mode,
                        &PaymentDeclined {
                            order_id: order_id.clone(),
                            reason: reason.clone(),
                            mode: Some(mode),
                        },
                    )
                    .await
            }
            Charged::Conflict(_) => Ok(()),
        }
    }

    /// Refunds an order of `mode` and announces a refund that gave money back.
    async fn refund(
        &self,
        cause: &Propagation,
        order_id: &OrderId,
        mode: FlowMode,
    ) -> Result<PaymentRecord, ServiceError> {
        let record = self.payments.refund(order_id).await?;
        if record.status != PaymentStatus::Refunded {
            return Ok(record);
        }
        let receipt = refund_receipt(&record);
        self.publisher
            .in_flow(&order_flow(cause, &order_id.0))
            .announce::<payments::Refunded>(
                &order_id.0,
                mode,
                &PaymentRefunded {
                    order_id: receipt.order_id,
                    customer_id: record.customer_id.clone(),
                    refund_id: receipt.refund_id,
                    amount: receipt.amount,
                    mode: Some(mode),
                },
            )
            .await?;
        Ok(record)
    }

    async fn failed(&self, context: EventContext, failed: ShipmentFailed) -> Result<(), ServiceError> {
        if driven_by_workflow(failed.mode) {
            return Ok(());
        }
        self.refund(context.propagation(), &failed.order_id, FlowMode::Choreographed)
            .await
            .map(drop)
    }
}

/// Runs payments (its operations and its reactions) until `shutdown`.
pub(crate) async fn run(
    config: Arc<ShopConfig>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ShopError> {
    let js = jetstream::new(nats.clone());
    let payments = set_up("opening payments' bucket", || Payments::open(&js, Arc::clone(&config))).await?;
    let publisher = publisher(&nats, payments::contract()?, config.replicas).await?;
    let reactions = Arc::new(Reactions { payments, publisher });
    let service = service(&reactions, &config)?;
    let mut tasks = Tasks::new(&shutdown);
    let on_reserved = Arc::clone(&reactions);
    spawn_consumer::<inventory::Reserved, _, _>(
        &mut tasks,
        &nats,
        &config,
        &inventory::contract()?,
        "payments-inventory-reserved",
        move |context, reserved| {
            let reactions = Arc::clone(&on_reserved);
            async move { reactions.reserved(context, reserved).await }
        },
    );
    let on_failed = reactions;
    spawn_consumer::<shipping::Failed, _, _>(
        &mut tasks,
        &nats,
        &config,
        &shipping::contract()?,
        "payments-shipping-failed",
        move |context, failed| {
            let reactions = Arc::clone(&on_failed);
            async move { reactions.failed(context, failed).await }
        },
    );
    tasks.serve(service, nats).await
}
