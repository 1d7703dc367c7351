//! The shop's books, read straight from every service's bucket: per order
//! what each service did, per product what is on hand and held, and the
//! invariants that must hold once the orders have settled.

use std::collections::BTreeMap;

use async_nats::jetstream;
use contracts::shop::notifications::NotificationKind;
use contracts::shop::{FailureReason, FlowMode, OrderStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ShopError;
use super::inventory::{ReservationRecord, ReservationStatus, StockRecord};
use super::notifications::NotificationRecord;
use super::orders::OrderRecord;
use super::payments::{PaymentRecord, PaymentStatus};
use super::shipping::{ShipmentRecord, ShipmentStatus};
use super::state::{
    Bucket, NOTIFICATIONS_BUCKET, ORDERS_BUCKET, PAYMENTS_BUCKET, RESERVATIONS_BUCKET, SHIPMENTS_BUCKET, STOCK_BUCKET,
};

/// Everything the shop's services hold, by order and by product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Every order any service knows of, by order id.
    pub orders: BTreeMap<String, OrderAudit>,
    /// Every stocked product, by SKU.
    pub stock: BTreeMap<String, StockAudit>,
}

/// What every service did for one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAudit {
    /// The order.
    pub order_id: String,
    /// How it is fulfilled (`None`: the orders service never saw it).
    pub mode: Option<FlowMode>,
    /// Where it stands.
    pub status: Option<OrderStatus>,
    /// Why it was cancelled.
    pub failure: Option<FailureReason>,
    /// What it costs, in minor units.
    pub total_cents: u64,
    /// Units ordered, all products together.
    pub ordered_units: u64,
    /// When it was placed, ms since the Unix epoch.
    pub placed_at_ms: Option<u64>,
    /// When it was completed or cancelled.
    pub finished_at_ms: Option<u64>,
    /// The fulfilment workflow instance, when orchestrated.
    pub instance: Option<String>,
    /// Its reservation.
    pub reservation: Option<ReservationStatus>,
    /// Units held for it now, all products together.
    pub held_units: u64,
    /// Units that left the shelves for it (once completed).
    pub shipped_units: u64,
    /// Its payment.
    pub payment: Option<PaymentStatus>,
    /// Minor units charged (refunded or not).
    pub charged_cents: u64,
    /// Minor units refunded.
    pub refunded_cents: u64,
    /// Its shipment.
    pub shipment: Option<ShipmentStatus>,
    /// What its customer was told, one entry per notification sent.
    pub notifications: Vec<NotificationKind>,
}

/// The business outcome of an order, the same whichever mode drove it:
/// what a customer and the books would see.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Outcome {
    /// Completed, cancelled, or still placed.
    pub status: Option<OrderStatus>,
    /// Why it was cancelled.
    pub failure: Option<FailureReason>,
    /// Units held for it or shipped to it: all it ordered once reserved,
    /// none once released.
    pub stock_units: u64,
    /// Minor units charged.
    pub charged_cents: u64,
    /// Minor units refunded.
    pub refunded_cents: u64,
    /// Whether a shipment is on its way.
    pub shipped: bool,
    /// What its customer was told.
    pub notifications: Vec<NotificationKind>,
}

impl OrderAudit {
    /// The order's business outcome.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            status: self.status,
            failure: self.failure,
            stock_units: self.held_units.saturating_add(self.shipped_units),
            charged_cents: self.charged_cents,
            refunded_cents: self.refunded_cents,
            shipped: self.shipment == Some(ShipmentStatus::Scheduled),
            notifications: self.notifications.clone(),
        }
    }

    /// Whether the order has ended (completed or cancelled).
    pub fn is_final(&self) -> bool {
        matches!(self.status, Some(OrderStatus::Completed | OrderStatus::Cancelled))
    }

    /// Whether nothing more is to happen to it: it has ended, and if it
    /// completed, its stock has left the shelves.
    pub fn is_settled(&self) -> bool {
        match self.status {
            Some(OrderStatus::Completed) => {
                self.reservation == Some(ReservationStatus::Shipped) && self.held_units == 0
            }
            Some(OrderStatus::Cancelled) => true,
            Some(OrderStatus::Placed) | None => false,
        }
    }

    /// How long it took from placed to its end, in ms.
    pub fn latency_ms(&self) -> Option<u64> {
        Some(self.finished_at_ms?.saturating_sub(self.placed_at_ms?))
    }

    /// What is wrong with this order, if it has ended; an order still under
    /// way may be half-done and is not judged.
    pub fn violations(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        let id = &self.order_id;
        let charged_not_refunded = self.payment == Some(PaymentStatus::Charged);
        let shipped = self.shipment == Some(ShipmentStatus::Scheduled);
        let count = |kind: NotificationKind| self.notifications.iter().filter(|sent| **sent == kind).count();
        match self.status {
            Some(OrderStatus::Completed) => {
                // Its units are held until the inventory hears it completed,
                // then they leave the shelves.
                let stocked = match self.reservation {
                    Some(ReservationStatus::Held) => self.held_units == self.ordered_units && self.shipped_units == 0,
                    Some(ReservationStatus::Shipped) => {
                        self.held_units == 0 && self.shipped_units == self.ordered_units
                    }
                    _ => false,
                };
                if !stocked {
                    wrong.push(format!(
                        "{id} is completed but holds {} and shipped {} of {} units (reservation {:?})",
                        self.held_units, self.shipped_units, self.ordered_units, self.reservation
                    ));
                }
                if !charged_not_refunded || self.charged_cents != self.total_cents || self.refunded_cents != 0 {
                    wrong.push(format!(
                        "{id} is completed but was charged {} of {} and refunded {} (payment {:?})",
                        self.charged_cents, self.total_cents, self.refunded_cents, self.payment
                    ));
                }
                if !shipped {
                    wrong.push(format!("{id} is completed but not shipped ({:?})", self.shipment));
                }
                if count(NotificationKind::OrderConfirmed) != 1 || count(NotificationKind::OrderCancelled) != 0 {
                    wrong.push(format!(
                        "{id} is completed but its customer was told {:?}",
                        self.notifications
                    ));
                }
            }
            Some(OrderStatus::Cancelled) => {
                if self.held_units != 0
                    || matches!(
                        self.reservation,
                        Some(ReservationStatus::Held | ReservationStatus::Shipped)
                    )
                {
                    wrong.push(format!(
                        "{id} is cancelled but still holds {} units (reservation {:?})",
                        self.held_units, self.reservation
                    ));
                }
                if charged_not_refunded || self.refunded_cents != self.charged_cents {
                    wrong.push(format!(
                        "{id} is cancelled but was charged {} and refunded {} (payment {:?})",
                        self.charged_cents, self.refunded_cents, self.payment
                    ));
                }
                if shipped {
                    wrong.push(format!("{id} is cancelled but its shipment is on its way"));
                }
                if self.failure.is_none() {
                    wrong.push(format!("{id} is cancelled without a reason"));
                }
                if count(NotificationKind::OrderCancelled) != 1 || count(NotificationKind::OrderConfirmed) != 0 {
                    wrong.push(format!(
                        "{id} is cancelled but its customer was told {:?}",
                        self.notifications
                    ));
                }
            }
            Some(OrderStatus::Placed) | None => {}
        }
        if charged_not_refunded && !shipped && self.is_final() {
            wrong.push(format!("{id} was charged, is not shipped and was not refunded"));
        }
        wrong
    }
}

/// One product's stock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockAudit {
    /// Stock keeping unit.
    pub sku: String,
    /// Units on the shelves, held or not.
    pub on_hand: u64,
    /// Units that left the shelves for completed orders.
    pub shipped: u64,
    /// Units held for orders.
    pub held: u64,
    /// Units held by order id.
    pub holds: BTreeMap<String, u64>,
}

impl StockAudit {
    /// Units free to reserve; negative would mean the shop sold more than it had.
    pub fn available(&self) -> i128 {
        i128::from(self.on_hand) - i128::from(self.held)
    }
}

impl Audit {
    /// Orders the orders service knows that are not settled yet: not ended,
    /// or completed with their stock not yet off the shelves.
    pub fn unsettled(&self) -> Vec<&str> {
        self.orders
            .values()
            .filter(|order| order.status.is_some() && !order.is_settled())
            .map(|order| order.order_id.as_str())
            .collect()
    }

    /// Every broken invariant: stock below zero anywhere, and per ended
    /// order, a completed one not reserved, charged, shipped and notified
    /// exactly once, a cancelled one still holding stock or money, anything
    /// charged and not shipped that was not refunded.
    pub fn violations(&self) -> Vec<String> {
        let mut wrong: Vec<String> = self
            .stock
            .values()
            .filter(|stock| stock.available() < 0)
            .map(|stock| {
                format!(
                    "{} is oversold: {} units held of {} on hand",
                    stock.sku, stock.held, stock.on_hand
                )
            })
            .collect();
        wrong.extend(self.orders.values().flat_map(OrderAudit::violations));
        wrong
    }
}

/// Reads every shop bucket (those that exist) into an [`Audit`].
pub async fn audit(nats: async_nats::Client) -> Result<Audit, ShopError> {
    let js = jetstream::new(nats);
    let mut audit = Audit::default();

    for (_, record) in read::<OrderRecord>(&js, ORDERS_BUCKET).await? {
        let order = entry(&mut audit, &record.order.order_id.0);
        order.mode = Some(record.order.mode);
        order.status = Some(record.order.status);
        order.failure = record.order.failure;
        order.total_cents = record.order.total.amount_cents;
        order.ordered_units = record
            .order
            .items
            .iter()
            .fold(0, |sum, item| sum.saturating_add(u64::from(item.quantity)));
        order.placed_at_ms = Some(record.placed_at_ms);
        order.finished_at_ms = record.finished_at_ms;
        order.instance = record.instance;
    }
    for (_, record) in read::<ReservationRecord>(&js, RESERVATIONS_BUCKET).await? {
        let order = entry(&mut audit, &record.order_id.0);
        order.reservation = Some(record.status);
        if record.status == ReservationStatus::Shipped {
            order.shipped_units = record.units();
        }
    }
    for (_, record) in read::<StockRecord>(&js, STOCK_BUCKET).await? {
        for (order, hold) in &record.holds {
            let held = &mut entry(&mut audit, order).held_units;
            *held = held.saturating_add(hold.units);
        }
        audit.stock.insert(
            record.sku.clone(),
            StockAudit {
                held: record.held(),
                shipped: record.shipped,
                holds: record
                    .holds
                    .iter()
                    .map(|(order, hold)| (order.clone(), hold.units))
                    .collect(),
                sku: record.sku,
                on_hand: record.on_hand,
            },
        );
    }
    for (key, value) in read::<Value>(&js, PAYMENTS_BUCKET).await? {
        if key.starts_with("charge.") {
            let record: PaymentRecord = decode(PAYMENTS_BUCKET, &key, value)?;
            let order = entry(&mut audit, &record.order_id.0);
            order.payment = Some(record.status);
            order.charged_cents = record.charged_cents();
            order.refunded_cents = record.refunded.as_ref().map_or(0, |money| money.amount_cents);
        }
    }
    for (key, value) in read::<Value>(&js, SHIPMENTS_BUCKET).await? {
        if key.starts_with("shipment.") {
            let record: ShipmentRecord = decode(SHIPMENTS_BUCKET, &key, value)?;
            entry(&mut audit, &record.order_id.0).shipment = Some(record.status);
        }
    }
    let mut sent = read::<NotificationRecord>(&js, NOTIFICATIONS_BUCKET).await?;
    sent.sort_by_key(|(_, record)| record.sent_at_ms);
    for (_, record) in sent {
        entry(&mut audit, &record.notification.order_id.0)
            .notifications
            .push(record.notification.kind);
    }
    Ok(audit)
}

fn entry<'a>(audit: &'a mut Audit, order: &str) -> &'a mut OrderAudit {
    audit.orders.entry(order.to_owned()).or_insert_with(|| OrderAudit {
        order_id: order.to_owned(),
        ..OrderAudit::default()
    })
}

async fn read<T: serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    name: &'static str,
) -> Result<Vec<(String, T)>, ShopError> {
    match Bucket::existing(js, name).await {
        Some(bucket) => Ok(bucket.all::<T>().await?),
        None => Ok(Vec::new()),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bucket: &str, key: &str, value: Value) -> Result<T, ShopError> {
    serde_json::from_value(value).map_err(|error| {
        ShopError::Store(super::state::StoreError {
            bucket: bucket.to_owned(),
            doing: format!("decoding {key}"),
            message: error.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed() -> OrderAudit {
        OrderAudit {
            order_id: "o-1".to_owned(),
            mode: Some(FlowMode::Choreographed),
            status: Some(OrderStatus::Completed),
            total_cents: 500,
            ordered_units: 2,
            reservation: Some(ReservationStatus::Held),
            held_units: 2,
            payment: Some(PaymentStatus::Charged),
            charged_cents: 500,
            shipment: Some(ShipmentStatus::Scheduled),
            notifications: vec![NotificationKind::OrderConfirmed],
            ..OrderAudit::default()
        }
    }

    fn cancelled_after_shipping_failed() -> OrderAudit {
        OrderAudit {
            status: Some(OrderStatus::Cancelled),
            failure: Some(FailureReason::ShippingUnavailable),
            reservation: Some(ReservationStatus::Released),
            held_units: 0,
            payment: Some(PaymentStatus::Refunded),
            refunded_cents: 500,
            shipment: Some(ShipmentStatus::Failed),
            notifications: vec![NotificationKind::OrderCancelled],
            ..completed()
        }
    }

    fn shipped() -> OrderAudit {
        OrderAudit {
            reservation: Some(ReservationStatus::Shipped),
            held_units: 0,
            shipped_units: 2,
            ..completed()
        }
    }

    #[test]
    fn a_whole_order_has_no_violations() {
        assert_eq!(completed().violations(), Vec::<String>::new());
        assert_eq!(shipped().violations(), Vec::<String>::new());
        assert_eq!(cancelled_after_shipping_failed().violations(), Vec::<String>::new());
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let twice_told = OrderAudit {
            notifications: vec![NotificationKind::OrderConfirmed, NotificationKind::OrderConfirmed],
            ..completed()
        };
        assert_eq!(twice_told.violations().len(), 1);
        let not_refunded = OrderAudit {
            payment: Some(PaymentStatus::Charged),
            refunded_cents: 0,
            ..cancelled_after_shipping_failed()
        };
        let found = not_refunded.violations();
        assert!(found.iter().any(|v| v.contains("not refunded")), "{found:?}");
        let still_held = OrderAudit {
            held_units: 1,
            ..cancelled_after_shipping_failed()
        };
        assert_eq!(still_held.violations().len(), 1);
        let in_flight = OrderAudit {
            status: Some(OrderStatus::Placed),
            shipment: None,
            ..completed()
        };
        assert!(in_flight.violations().is_empty());
        let shipped_short = OrderAudit {
            shipped_units: 1,
            ..shipped()
        };
        assert_eq!(shipped_short.violations().len(), 1);
        let shipped_and_held = OrderAudit {
            held_units: 2,
            ..shipped()
        };
        assert_eq!(shipped_and_held.violations().len(), 1);
    }

    #[test]
    fn an_order_counts_the_same_held_or_shipped() {
        assert_eq!(completed().outcome(), shipped().outcome());
        let mut audit = Audit::default();
        let shipping = OrderAudit {
            held_units: 2,
            ..shipped()
        };
        audit.orders.insert("o-1".to_owned(), shipping);
        audit.orders.insert(
            "o-2".to_owned(),
            OrderAudit {
                order_id: "o-2".to_owned(),
                ..completed()
            },
        );
        audit.orders.insert(
            "o-3".to_owned(),
            OrderAudit {
                order_id: "o-3".to_owned(),
                ..shipped()
            },
        );
        audit.orders.insert(
            "o-4".to_owned(),
            OrderAudit {
                order_id: "o-4".to_owned(),
                ..cancelled_after_shipping_failed()
            },
        );
        assert_eq!(audit.unsettled(), ["o-1", "o-2"]);
    }

    #[test]
    fn oversold_stock_is_a_violation() {
        let mut audit = Audit::default();
        audit.stock.insert(
            "a".to_owned(),
            StockAudit {
                sku: "a".to_owned(),
                on_hand: 1,
                shipped: 0,
                held: 2,
                holds: BTreeMap::new(),
            },
        );
        assert_eq!(audit.violations(), ["a is oversold: 2 units held of 1 on hand"]);
    }
}
