//! The read model's core, without I/O: what the view keeps of one order (the
//! facts the events announced), how an event adds its fact, and the
//! [`OrderView`] derived from them.
//!
//! The view of an order is a pure function of the *set* of its events. The
//! events of one order come from five streams in no guaranteed order, and a
//! rebuild reads them in another order than the live consumers did, so
//! nothing may depend on the order of arrival: each event sets only its own
//! fact, stamped with the time JetStream stored it; of two copies of one
//! fact (a duplicate stored after the de-duplication window, or an
//! orchestrated and a choreographed announcement of one change) the earlier
//! (by store time, then stream sequence) wins; the status is derived from
//! which facts are present with a fixed precedence. Adding facts is then a
//! join: associative, commutative and idempotent, so any two replicas that
//! saw the same events hold the same view, field for field.

use contracts::shop::inventory::{StockReleased, StockReserved, StockShortage};
use contracts::shop::notifications::{Notification, NotificationKind};
use contracts::shop::order_view::{OrderView, StepTimes, ViewStatus};
use contracts::shop::orders::{OrderCancelled, OrderCompleted, OrderPlaced};
use contracts::shop::payments::{PaymentCharged, PaymentDeclined, PaymentRefunded};
use contracts::shop::shipping::{ShipmentFailed, ShipmentScheduled};
use contracts::shop::{FailureReason, FlowMode, OrderId, OrderStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::shop::{OrderAudit, PaymentStatus, ReservationStatus, ShipmentStatus};

/// Where and when JetStream stored an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When it was stored, microseconds since the Unix epoch.
    pub at_us: u64,
    /// Its sequence in its stream (each kind of fact comes from one stream).
    pub sequence: u64,
}

/// One fact: an event's payload and when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact<T> {
    /// When it was stored.
    pub stamp: Stamp,
    /// What the event said.
    pub payload: T,
}

/// Everything the view knows of one order: at most one fact per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// `orders#placed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<Fact<OrderPlaced>>,
    /// `inventory#reserved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Fact<StockReserved>>,
    /// `inventory#out-of-stock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_stock: Option<Fact<StockShortage>>,
    /// `inventory#released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Fact<StockReleased>>,
    /// `payments#charged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<Fact<PaymentCharged>>,
    /// `payments#declined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined: Option<Fact<PaymentDeclined>>,
    /// `payments#refunded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<Fact<PaymentRefunded>>,
    /// `shipping#scheduled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<Fact<ShipmentScheduled>>,
    /// `shipping#failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_failed: Option<Fact<ShipmentFailed>>,
    /// `orders#completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Fact<OrderCompleted>>,
    /// `orders#cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Fact<OrderCancelled>>,
    /// `notifications#sent` of kind `order-confirmed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_sent: Option<Fact<Notification>>,
    /// `notifications#sent` of kind `order-cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_sent: Option<Fact<Notification>>,
}

/// A shop event, read into the fact it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `orders#placed`.
    Placed(OrderPlaced),
    /// `orders#completed`.
    Completed(OrderCompleted),
    /// `orders#cancelled`.
    Cancelled(OrderCancelled),
    /// `inventory#reserved`.
    Reserved(StockReserved),
    /// `inventory#out-of-stock`.
    OutOfStock(StockShortage),
    /// `inventory#released`.
    Released(StockReleased),
    /// `payments#charged`.
    Charged(PaymentCharged),
    /// `payments#declined`.
    Declined(PaymentDeclined),
    /// `payments#refunded`.
    Refunded(PaymentRefunded),
    /// `shipping#scheduled`.
    Scheduled(ShipmentScheduled),
    /// `shipping#failed`.
    ShippingFailed(ShipmentFailed),
    /// `notifications#sent`.
    Sent(Notification),
}

/// Why an event could not be read into a fact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventReadError {
    /// No shop service announces an event of that name.
    #[error("{service}#{event} is no event the order view knows")]
    Unknown {
        /// The producer.
        service: String,
        /// The event.
        event: String,
    },
    /// The payload is not what the event's contract says.
    #[error("{service}#{event} does not decode: {message}")]
    Payload {
        /// The producer.
        service: String,
        /// The event.
        event: String,
        /// What the decoder said.
        message: String,
    },
}

impl Event {
    /// Reads the `payload` of event `event` of `service`.
    pub fn read(service: &str, event: &str, payload: &[u8]) -> Result<Self, EventReadError> {
        fn decode<T: DeserializeOwned>(service: &str, event: &str, payload: &[u8]) -> Result<T, EventReadError> {
            serde_json::from_slice(payload).map_err(|error| EventReadError::Payload {
                service: service.to_owned(),
                event: event.to_owned(),
                message: error.to_string(),
            })
        }
        let read = match (service, event) {
            ("orders", "placed") => Self::Placed(decode(service, event, payload)?),
            ("orders", "completed") => Self::Completed(decode(service, event, payload)?),
            ("orders", "cancelled") => Self::Cancelled(decode(service, event, payload)?),
            ("inventory", "reserved") => Self::Reserved(decode(service, event, payload)?),
            ("inventory", "out-of-stock") => Self::OutOfStock(decode(service, event, payload)?),
            ("inventory", "released") => Self::Released(decode(service, event, payload)?),
            ("payments", "charged") => Self::Charged(decode(service, event, payload)?),
            ("payments", "declined") => Self::Declined(decode(service, event, payload)?),
            ("payments", "refunded") => Self::Refunded(decode(service, event, payload)?),
            ("shipping", "scheduled") => Self::Scheduled(decode(service, event, payload)?),
            ("shipping", "failed") => Self::ShippingFailed(decode(service, event, payload)?),
            ("notifications", "sent") => Self::Sent(decode(service, event, payload)?),
            _ => {
                return Err(EventReadError::Unknown {
                    service: service.to_owned(),
                    event: event.to_owned(),
                });
            }
        };
        Ok(read)
    }

    /// The order the event is about.
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Placed(event) => &event.order_id,
            Self::Completed(event) => &event.order_id,
            Self::Cancelled(event) => &event.order_id,
            Self::Reserved(event) => &event.order_id,
            Self::OutOfStock(event) => &event.order_id,
            Self::Released(event) => &event.order_id,
            Self::Charged(event) => &event.order_id,
            Self::Declined(event) => &event.order_id,
            Self::Refunded(event) => &event.order_id,
            Self::Scheduled(event) => &event.order_id,
            Self::ShippingFailed(event) => &event.order_id,
            Self::Sent(event) => &event.order_id,
        }
    }

    /// The mode the event names (`placed` always does; others since the
    /// shop contracts' minor versions that added it).
    pub fn mode(&self) -> Option<FlowMode> {
        match self {
            Self::Placed(event) => Some(event.mode),
            Self::Completed(event) => event.mode,
            Self::Cancelled(event) => event.mode,
            Self::Reserved(event) => event.mode,
            Self::OutOfStock(event) => event.mode,
            Self::Released(event) => event.mode,
            Self::Charged(event) => event.mode,
            Self::Declined(event) => event.mode,
            Self::Refunded(event) => event.mode,
            Self::Scheduled(event) => event.mode,
            Self::ShippingFailed(event) => event.mode,
            Self::Sent(event) => event.mode,
        }
    }
}

/// Keeps the earlier of the fact in `slot` and `payload` stored at `stamp`;
/// true when `slot` changed.
fn keep_earliest<T>(slot: &mut Option<Fact<T>>, stamp: Stamp, payload: T) -> bool {
    match slot {
        Some(known) if known.stamp <= stamp => false,
        _ => {
            *slot = Some(Fact { stamp, payload });
            true
        }
    }
}

/// [`keep_earliest`] for another view's fact.
fn join<T: Clone>(slot: &mut Option<Fact<T>>, other: Option<&Fact<T>>) -> bool {
    match other {
        Some(fact) => keep_earliest(slot, fact.stamp, fact.payload.clone()),
        None => false,
    }
}

impl OrderFacts {
    /// Adds `event`, stored at `stamp`; true when the facts changed (false
    /// for a copy of a fact already known as early or earlier).
    pub fn apply(&mut self, event: Event, stamp: Stamp) -> bool {
        match event {
            Event::Placed(payload) => keep_earliest(&mut self.placed, stamp, payload),
            Event::Completed(payload) => keep_earliest(&mut self.completed, stamp, payload),
            Event::Cancelled(payload) => keep_earliest(&mut self.cancelled, stamp, payload),
            Event::Reserved(payload) => keep_earliest(&mut self.reserved, stamp, payload),
            Event::OutOfStock(payload) => keep_earliest(&mut self.out_of_stock, stamp, payload),
            Event::Released(payload) => keep_earliest(&mut self.released, stamp, payload),
            Event::Charged(payload) => keep_earliest(&mut self.charged, stamp, payload),
            Event::Declined(payload) => keep_earliest(&mut self.declined, stamp, payload),
            Event::Refunded(payload) => keep_earliest(&mut self.refunded, stamp, payload),
            Event::Scheduled(payload) => keep_earliest(&mut self.scheduled, stamp, payload),
            Event::ShippingFailed(payload) => keep_earliest(&mut self.shipping_failed, stamp, payload),
            Event::Sent(payload) => match payload.kind {
                NotificationKind::OrderConfirmed => keep_earliest(&mut self.confirmation_sent, stamp, payload),
                NotificationKind::OrderCancelled => keep_earliest(&mut self.cancellation_sent, stamp, payload),
            },
        }
    }

    /// Adds every fact of `other`; true when anything changed.
    pub fn merge(&mut self, other: &Self) -> bool {
        // Every slot is joined: `|` does not short-circuit.
        join(&mut self.placed, other.placed.as_ref())
            | join(&mut self.reserved, other.reserved.as_ref())
            | join(&mut self.out_of_stock, other.out_of_stock.as_ref())
            | join(&mut self.released, other.released.as_ref())
            | join(&mut self.charged, other.charged.as_ref())
            | join(&mut self.declined, other.declined.as_ref())
            | join(&mut self.refunded, other.refunded.as_ref())
            | join(&mut self.scheduled, other.scheduled.as_ref())
            | join(&mut self.shipping_failed, other.shipping_failed.as_ref())
            | join(&mut self.completed, other.completed.as_ref())
            | join(&mut self.cancelled, other.cancelled.as_ref())
            | join(&mut self.confirmation_sent, other.confirmation_sent.as_ref())
            | join(&mut self.cancellation_sent, other.cancellation_sent.as_ref())
    }

    /// The stamps and modes of every fact held, for the mode and the count.
    fn stamps(&self) -> Vec<(Stamp, Option<FlowMode>)> {
        fn with<T>(fact: Option<&Fact<T>>, mode: impl Fn(&T) -> Option<FlowMode>) -> Option<(Stamp, Option<FlowMode>)> {
            fact.map(|fact| (fact.stamp, mode(&fact.payload)))
        }
        [
            with(self.placed.as_ref(), |payload| Some(payload.mode)),
            with(self.reserved.as_ref(), |payload| payload.mode),
            with(self.out_of_stock.as_ref(), |payload| payload.mode),
            with(self.released.as_ref(), |payload| payload.mode),
            with(self.charged.as_ref(), |payload| payload.mode),
            with(self.declined.as_ref(), |payload| payload.mode),
            with(self.refunded.as_ref(), |payload| payload.mode),
            with(self.scheduled.as_ref(), |payload| payload.mode),
            with(self.shipping_failed.as_ref(), |payload| payload.mode),
            with(self.completed.as_ref(), |payload| payload.mode),
            with(self.cancelled.as_ref(), |payload| payload.mode),
            with(self.confirmation_sent.as_ref(), |payload| payload.mode),
            with(self.cancellation_sent.as_ref(), |payload| payload.mode),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// How the order is fulfilled: as `placed` says, else as the earliest
    /// fact that names a mode says.
    pub fn mode(&self) -> Option<FlowMode> {
        if let Some(placed) = &self.placed {
            return Some(placed.payload.mode);
        }
        let mut named: Vec<(Stamp, FlowMode)> = self
            .stamps()
            .into_iter()
            .filter_map(|(stamp, mode)| Some((stamp, mode?)))
            .collect();
        named.sort_by_key(|(stamp, _)| *stamp);
        named.first().map(|(_, mode)| *mode)
    }

    /// Whether the order's flow has settled: it ended and its customer was
    /// told (the last event of either flow). A compensation may still come
    /// after, but seldom does.
    pub fn settled(&self) -> bool {
        (self.completed.is_some() && self.confirmation_sent.is_some())
            || (self.cancelled.is_some() && self.cancellation_sent.is_some())
    }

    /// Where the order stands: the first of `cancelled`, `completed`,
    /// `cancelling` (a failure or a compensation is known), `shipped`,
    /// `paid`, `reserved`, `placed` whose fact is present.
    pub fn status(&self) -> ViewStatus {
        let compensating = self.out_of_stock.is_some()
            || self.declined.is_some()
            || self.shipping_failed.is_some()
            || self.refunded.is_some()
            || self.released.is_some();
        if self.cancelled.is_some() {
            ViewStatus::Cancelled
        } else if self.completed.is_some() {
            ViewStatus::Completed
        } else if compensating {
            ViewStatus::Cancelling
        } else if self.scheduled.is_some() {
            ViewStatus::Shipped
        } else if self.charged.is_some() {
            ViewStatus::Paid
        } else if self.reserved.is_some() {
            ViewStatus::Reserved
        } else {
            ViewStatus::Placed
        }
    }

    /// Why it was cancelled: as `cancelled` says, else the failure known.
    pub fn failure(&self) -> Option<FailureReason> {
        if let Some(cancelled) = &self.cancelled {
            return Some(cancelled.payload.reason);
        }
        if self.out_of_stock.is_some() {
            Some(FailureReason::OutOfStock)
        } else if self.declined.is_some() {
            Some(FailureReason::PaymentDeclined)
        } else if self.shipping_failed.is_some() {
            Some(FailureReason::ShippingUnavailable)
        } else {
            None
        }
    }

    /// The query answer for order `order_id`.
    pub fn view(&self, order_id: &OrderId) -> OrderView {
        let placed = self.placed.as_ref().map(|fact| &fact.payload);
        let customer_id = placed
            .map(|placed| placed.customer_id.clone())
            .or_else(|| self.charged.as_ref().map(|fact| fact.payload.customer_id.clone()))
            .or_else(|| self.refunded.as_ref().map(|fact| fact.payload.customer_id.clone()))
            .or_else(|| {
                self.completed
                    .as_ref()
                    .and_then(|fact| fact.payload.customer_id.clone())
            })
            .or_else(|| {
                self.cancelled
                    .as_ref()
                    .and_then(|fact| fact.payload.customer_id.clone())
            });
        let mut notifications = Vec::new();
        if self.confirmation_sent.is_some() {
            notifications.push(NotificationKind::OrderConfirmed);
        }
        if self.cancellation_sent.is_some() {
            notifications.push(NotificationKind::OrderCancelled);
        }
        OrderView {
            order_id: order_id.clone(),
            status: self.status(),
            mode: self.mode(),
            customer_id,
            items: placed.map(|placed| placed.items.clone()).unwrap_or_default(),
            total: placed.map(|placed| placed.total.clone()),
            failure: self.failure(),
            reservation_id: self.reserved.as_ref().map(|fact| fact.payload.reservation_id.clone()),
            stock_released: self.released.as_ref().map(|fact| fact.payload.released),
            payment_id: self.charged.as_ref().map(|fact| fact.payload.payment_id.clone()),
            charged: self.charged.as_ref().map(|fact| fact.payload.amount.clone()),
            refunded: self.refunded.as_ref().map(|fact| fact.payload.amount.clone()),
            shipment_id: self
                .scheduled
                .as_ref()
                .map(|fact| fact.payload.shipment_id.clone())
                .or_else(|| self.completed.as_ref().map(|fact| fact.payload.shipment_id.clone()))
                .filter(|id| !id.is_empty()),
            carrier: self.scheduled.as_ref().map(|fact| fact.payload.carrier.clone()),
            notifications,
            steps: StepTimes {
                placed: time(self.placed.as_ref()),
                reserved: time(self.reserved.as_ref()),
                out_of_stock: time(self.out_of_stock.as_ref()),
                released: time(self.released.as_ref()),
                charged: time(self.charged.as_ref()),
                declined: time(self.declined.as_ref()),
                refunded: time(self.refunded.as_ref()),
                scheduled: time(self.scheduled.as_ref()),
                shipping_failed: time(self.shipping_failed.as_ref()),
                completed: time(self.completed.as_ref()),
                cancelled: time(self.cancelled.as_ref()),
                confirmation_sent: time(self.confirmation_sent.as_ref()),
                cancellation_sent: time(self.cancellation_sent.as_ref()),
            },
            facts: u32::try_from(self.stamps().len()).unwrap_or(u32::MAX),
        }
    }
}

fn time<T>(fact: Option<&Fact<T>>) -> Option<String> {
    fact.map(|fact| utc_time_us(fact.stamp.at_us))
}

/// `at_us` (µs since the Unix epoch) as RFC 3339 UTC with microseconds.
pub fn utc_time_us(at_us: u64) -> String {
    let nanos = i128::from(at_us).saturating_mul(1_000);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.microsecond()
        ),
        // Beyond the year 9999: no server stamps that.
        Err(_) => format!("{at_us} µs since the epoch"),
    }
}

/// Where the view and the owning services' records of one order disagree,
/// one sentence each; empty when they agree. Only what the events announce
/// is compared: a shipment cancelled by a compensation (which the shipping
/// contract has no event for) and a refund of nothing (no money moved, no
/// event) are taken as the view sees them.
pub fn differences(view: &OrderView, audit: &OrderAudit) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |what: &str, seen: String, owned: String| {
        if seen != owned {
            wrong.push(format!(
                "{}: {what} is {seen} in the view but {owned} in the owning service",
                view.order_id.0
            ));
        }
    };
    check("the mode", format!("{:?}", view.mode), format!("{:?}", audit.mode));
    let status = match view.status {
        _ if audit.status.is_none() && view.steps.placed.is_none() => None,
        ViewStatus::Completed => Some(OrderStatus::Completed),
        ViewStatus::Cancelled => Some(OrderStatus::Cancelled),
        _ => Some(OrderStatus::Placed),
    };
    check("the status", format!("{status:?}"), format!("{:?}", audit.status));
    if audit.status == Some(OrderStatus::Cancelled) {
        check(
            "the failure",
            format!("{:?}", view.failure),
            format!("{:?}", audit.failure),
        );
    }
    if audit.status.is_some() {
        let total = view.total.as_ref().map_or(0, |total| total.amount_cents);
        check("the total (cents)", total.to_string(), audit.total_cents.to_string());
        let units: u64 = view.items.iter().map(|item| u64::from(item.quantity)).sum();
        check("the units ordered", units.to_string(), audit.ordered_units.to_string());
    }
    let reservation = if view.steps.released.is_some() {
        Some(ReservationStatus::Released)
    } else if view.steps.out_of_stock.is_some() {
        Some(ReservationStatus::Refused)
    } else if view.steps.reserved.is_some() {
        // A completed order's stock leaves the shelves when the inventory
        // hears it completed; the books compared are settled ones.
        if view.status == ViewStatus::Completed {
            Some(ReservationStatus::Shipped)
        } else {
            Some(ReservationStatus::Held)
        }
    } else {
        None
    };
    check(
        "the reservation",
        format!("{reservation:?}"),
        format!("{:?}", audit.reservation),
    );
    let payment = if view.steps.refunded.is_some() {
        Some(PaymentStatus::Refunded)
    } else if view.steps.declined.is_some() {
        Some(PaymentStatus::Declined)
    } else if view.steps.charged.is_some() {
        Some(PaymentStatus::Charged)
    } else {
        None
    };
    // A refund before any charge voids the payment without an event; a
    // charge arriving after it is declined (and says so).
    let voided =
        audit.payment == Some(PaymentStatus::Voided) && matches!(payment, None | Some(PaymentStatus::Declined));
    if !voided {
        check("the payment", format!("{payment:?}"), format!("{:?}", audit.payment));
    }
    let charged = view.charged.as_ref().map_or(0, |money| money.amount_cents);
    check(
        "the charge (cents)",
        charged.to_string(),
        audit.charged_cents.to_string(),
    );
    let refunded = view.refunded.as_ref().map_or(0, |money| money.amount_cents);
    check(
        "the refund (cents)",
        refunded.to_string(),
        audit.refunded_cents.to_string(),
    );
    if audit.shipment != Some(ShipmentStatus::Cancelled) {
        let shipment = if view.steps.shipping_failed.is_some() {
            Some(ShipmentStatus::Failed)
        } else if view.steps.scheduled.is_some() {
            Some(ShipmentStatus::Scheduled)
        } else {
            None
        };
        check("the shipment", format!("{shipment:?}"), format!("{:?}", audit.shipment));
    }
    let mut told = audit.notifications.clone();
    told.sort_by_key(|kind| matches!(kind, NotificationKind::OrderCancelled));
    check(
        "what the customer was told",
        format!("{:?}", view.notifications),
        format!("{told:?}"),
    );
    wrong
}

#[cfg(test)]
mod tests {
    use contracts::shop::{LineItem, Money};

    use super::*;

    fn money(cents: u64) -> Money {
        Money {
            amount_cents: cents,
            currency: "EUR".to_owned(),
        }
    }

    fn stamp(at_us: u64, sequence: u64) -> Stamp {
        Stamp { at_us, sequence }
    }

    /// The events of a choreographed order whose shipment failed, with
    /// their stamps.
    fn unshippable() -> Vec<(Event, Stamp)> {
        let order = OrderId("o-1".to_owned());
        let mode = Some(FlowMode::Choreographed);
        vec![
            (
                Event::Placed(OrderPlaced {
                    order_id: order.clone(),
                    customer_id: "c-1".to_owned(),
                    items: vec![LineItem {
                        sku: "sku-kettle".to_owned(),
                        quantity: 2,
                        unit_price: money(1000),
                    }],
                    total: money(2000),
                    mode: FlowMode::Choreographed,
                }),
                stamp(1_000, 1),
            ),
            (
                Event::Reserved(StockReserved {
                    order_id: order.clone(),
                    reservation_id: "res-o-1".to_owned(),
                    items: Vec::new(),
                    mode,
                    customer_id: None,
                    total: None,
                }),
                stamp(2_000, 1),
            ),
            (
                Event::Charged(PaymentCharged {
                    order_id: order.clone(),
                    customer_id: "c-1".to_owned(),
                    payment_id: "pay-o-1".to_owned(),
                    amount: money(2000),
                    mode,
                    items: None,
                }),
                stamp(3_000, 1),
            ),
            (
                Event::ShippingFailed(ShipmentFailed {
                    order_id: order.clone(),
                    reason: "no carrier".to_owned(),
                    mode,
                }),
                stamp(4_000, 1),
            ),
            (
                Event::Cancelled(OrderCancelled {
                    order_id: order.clone(),
                    reason: FailureReason::ShippingUnavailable,
                    customer_id: Some("c-1".to_owned()),
                    mode,
                }),
                stamp(5_000, 2),
            ),
            (
                Event::Refunded(PaymentRefunded {
                    order_id: order.clone(),
                    customer_id: "c-1".to_owned(),
                    refund_id: "ref-o-1".to_owned(),
                    amount: money(2000),
                    mode,
                }),
                stamp(5_500, 2),
            ),
            (
                Event::Released(StockReleased {
                    order_id: order.clone(),
                    released: true,
                    mode,
                }),
                stamp(5_600, 2),
            ),
            (
                Event::Sent(Notification {
                    notification_id: "ntf".to_owned(),
                    order_id: order,
                    customer_id: "c-1".to_owned(),
                    kind: NotificationKind::OrderCancelled,
                    message: "sorry".to_owned(),
                    mode,
                }),
                stamp(6_000, 1),
            ),
        ]
    }

    fn fold(events: &[(Event, Stamp)]) -> OrderFacts {
        let mut facts = OrderFacts::default();
        for (event, stamp) in events {
            facts.apply(event.clone(), *stamp);
        }
        facts
    }

    #[test]
    fn the_view_is_the_same_whatever_order_the_events_come_in() {
        let events = unshippable();
        let expected = fold(&events);
        let view = expected.view(&OrderId("o-1".to_owned()));
        assert_eq!(view.status, ViewStatus::Cancelled);
        assert_eq!(view.failure, Some(FailureReason::ShippingUnavailable));
        assert_eq!(view.mode, Some(FlowMode::Choreographed));
        assert_eq!(view.charged, Some(money(2000)));
        assert_eq!(view.refunded, Some(money(2000)));
        assert_eq!(view.stock_released, Some(true));
        assert_eq!(view.notifications, [NotificationKind::OrderCancelled]);
        assert_eq!(view.steps.placed.as_deref(), Some("1970-01-01T00:00:00.001000Z"));
        assert_eq!(view.facts, 8);
        // Every rotation and the reversal, with each event delivered twice.
        for shift in 0..events.len() {
            let mut order = events.clone();
            order.rotate_left(shift);
            let mut twice = order.clone();
            twice.extend(order.iter().rev().cloned());
            assert_eq!(fold(&twice), expected, "rotated by {shift}");
        }
    }

    #[test]
    fn of_two_copies_of_a_fact_the_earlier_wins_and_merging_is_a_join() {
        let events = unshippable();
        let (first, second) = events.split_at(3);
        let (mut left, right) = (fold(first), fold(second));
        let mut other = right.clone();
        assert!(left.merge(&right));
        assert!(!left.merge(&right), "merging again changes nothing");
        assert!(other.merge(&fold(first)));
        assert_eq!(left, other);
        assert_eq!(left, fold(&events));

        // A later copy changes nothing; an earlier one replaces it.
        let (charged, at) = events[2].clone();
        assert!(!left.apply(charged.clone(), stamp(at.at_us + 10, 9)));
        assert!(left.apply(charged, stamp(at.at_us - 10, 9)));
        assert_eq!(left.charged.as_ref().map(|fact| fact.stamp.sequence), Some(9));
    }

    #[test]
    fn the_status_follows_a_fixed_precedence() {
        let events = unshippable();
        let statuses: Vec<ViewStatus> = (1..=events.len()).map(|n| fold(&events[..n]).status()).collect();
        assert_eq!(
            statuses,
            [
                ViewStatus::Placed,
                ViewStatus::Reserved,
                ViewStatus::Paid,
                ViewStatus::Cancelling,
                ViewStatus::Cancelled,
                ViewStatus::Cancelled,
                ViewStatus::Cancelled,
                ViewStatus::Cancelled,
            ]
        );
        // Without `placed`, the mode comes from the earliest fact naming one.
        let late = fold(&events[1..3]);
        assert_eq!(late.mode(), Some(FlowMode::Choreographed));
        assert_eq!(late.view(&OrderId("o-1".to_owned())).items, []);
    }

    #[test]
    fn unknown_and_malformed_events_are_errors() {
        assert!(matches!(
            Event::read("orders", "teleported", b"{}"),
            Err(EventReadError::Unknown { .. })
        ));
        assert!(matches!(
            Event::read("orders", "placed", b"{\"order_id\": 3}"),
            Err(EventReadError::Payload { .. })
        ));
        let read = Event::read(
            "payments",
            "declined",
            br#"{"order_id": "o-9", "reason": "no", "mode": "orchestrated"}"#,
        )
        .unwrap();
        assert_eq!(read.order_id().0, "o-9");
        assert_eq!(read.mode(), Some(FlowMode::Orchestrated));
    }

    #[test]
    fn times_have_microseconds() {
        assert_eq!(utc_time_us(1_738_326_896_789_012), "2025-01-31T12:34:56.789012Z");
    }
}
