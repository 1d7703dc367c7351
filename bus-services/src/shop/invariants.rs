//! What must hold once a load of orders has settled, whatever was killed or
//! restarted meanwhile: every acknowledged order is known (none lost) and
//! has ended (none stuck), nobody was charged twice, stock and money
//! balance. [`check`] judges one [`Audit`]; [`wait_settled`] polls the books
//! until the orders have settled or a deadline passes, and returns the last
//! judgement either way, so a failure can say what is stuck and how.
//!
//! The fault tests and `soa soak` share it, so both check the same things.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_nats::jetstream;
use contracts::shop::payments::{self, PaymentCharged};
use contracts::shop::{FlowMode, OrderStatus};

use super::audit::{Audit, OrderAudit, audit};
use super::{ShopError, StoreError};

/// How many problem orders a summary shows in full.
const SHOWN: usize = 10;

/// The orders a load placed, as its driver saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placements {
    /// Orders whose `place` was acknowledged, with their mode.
    pub acknowledged: Vec<(String, FlowMode)>,
    /// Orders never acknowledged (the driver gave up): not judged, since
    /// the shop may never have stored them.
    pub unacknowledged: Vec<String>,
    /// `place` calls in all, retries included.
    pub attempts: u64,
}

/// The invariants checked on the books after a load, with what broke them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invariants {
    /// Orders the driver tried to place.
    pub placed: usize,
    /// Of them, acknowledged.
    pub acknowledged: usize,
    /// Acknowledged orchestrated orders.
    pub orchestrated: usize,
    /// Acknowledged choreographed orders.
    pub choreographed: usize,
    /// Acknowledged orders completed.
    pub completed: usize,
    /// Acknowledged orders cancelled, with every step undone.
    pub compensated: usize,
    /// Acknowledged orders the orders service does not know.
    pub lost: Vec<String>,
    /// Acknowledged orders not settled, with what every service holds of them.
    pub stuck: Vec<OrderAudit>,
    /// Orders charged more than once: a charge above the order's total, or
    /// more than one `charged` announcement.
    pub double_charges: Vec<String>,
    /// Stock that does not add up (oversold, held after settlement, shipped
    /// units that do not match the completed orders, units appearing or vanishing).
    pub stock: Vec<String>,
    /// Money that does not add up (charged minus refunded against the completed orders' totals).
    pub money: Vec<String>,
    /// Every other broken invariant of the audit (per order: notified
    /// twice, charged and not refunded, ...).
    pub violations: Vec<String>,
}

impl Invariants {
    /// Whether every invariant holds.
    pub fn hold(&self) -> bool {
        self.lost.is_empty()
            && self.stuck.is_empty()
            && self.double_charges.is_empty()
            && self.stock.is_empty()
            && self.money.is_empty()
            && self.violations.is_empty()
            && self.completed + self.compensated == self.acknowledged
    }
}

impl fmt::Display for Invariants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = |ok: bool| if ok { "ok" } else { "FAILED" };
        writeln!(
            f,
            "orders placed        {} ({} acknowledged: {} orchestrated, {} choreographed)",
            self.placed, self.acknowledged, self.orchestrated, self.choreographed
        )?;
        writeln!(f, "completed            {}", self.completed)?;
        writeln!(f, "compensated          {}", self.compensated)?;
        writeln!(
            f,
            "lost                 {}  {}",
            self.lost.len(),
            mark(self.lost.is_empty())
        )?;
        writeln!(
            f,
            "stuck                {}  {}",
            self.stuck.len(),
            mark(self.stuck.is_empty())
        )?;
        writeln!(
            f,
            "double charges       {}  {}",
            self.double_charges.len(),
            mark(self.double_charges.is_empty())
        )?;
        writeln!(f, "stock balanced       {}", mark(self.stock.is_empty()))?;
        writeln!(f, "money balanced       {}", mark(self.money.is_empty()))?;
        writeln!(
            f,
            "other violations     {}  {}",
            self.violations.len(),
            mark(self.violations.is_empty())
        )?;
        let listed = |f: &mut fmt::Formatter<'_>, what: &str, items: &[String]| -> fmt::Result {
            for item in items.iter().take(SHOWN) {
                writeln!(f, "  {what}: {item}")?;
            }
            if items.len() > SHOWN {
                writeln!(f, "  ... and {} more", items.len() - SHOWN)?;
            }
            Ok(())
        };
        listed(f, "lost", &self.lost)?;
        for order in self.stuck.iter().take(SHOWN) {
            writeln!(
                f,
                "  stuck: {} mode {:?} status {:?} reservation {:?} held {} shipped {} payment {:?} charged {} \
                 refunded {} shipment {:?} instance {:?} notified {:?}",
                order.order_id,
                order.mode,
                order.status,
                order.reservation,
                order.held_units,
                order.shipped_units,
                order.payment,
                order.charged_cents,
                order.refunded_cents,
                order.shipment,
                order.instance,
                order.notifications
            )?;
        }
        if self.stuck.len() > SHOWN {
            writeln!(f, "  ... and {} more stuck", self.stuck.len() - SHOWN)?;
        }
        listed(f, "double charge", &self.double_charges)?;
        listed(f, "stock", &self.stock)?;
        listed(f, "money", &self.money)?;
        listed(f, "violation", &self.violations)
    }
}

/// Judges the books `books` after a load that placed `placements`;
/// `initial_stock` is what the inventory started with (`(sku, units)`),
/// `charges` the number of `charged` announcements per order (from
/// [`charged_announcements`]).
pub fn check(
    books: &Audit,
    placements: &Placements,
    initial_stock: &[(String, u64)],
    charges: &BTreeMap<String, u64>,
) -> Invariants {
    let mut found = Invariants {
        placed: placements.acknowledged.len() + placements.unacknowledged.len(),
        acknowledged: placements.acknowledged.len(),
        ..Invariants::default()
    };
    for (id, mode) in &placements.acknowledged {
        match mode {
            FlowMode::Orchestrated => found.orchestrated += 1,
            FlowMode::Choreographed => found.choreographed += 1,
        }
        let Some(order) = books.orders.get(id).filter(|order| order.status.is_some()) else {
            found.lost.push(id.clone());
            continue;
        };
        if order.mode != Some(*mode) {
            found
                .violations
                .push(format!("{id} was placed {mode:?} but is stored {:?}", order.mode));
        }
        if !order.is_settled() {
            found.stuck.push(order.clone());
            continue;
        }
        match order.status {
            Some(OrderStatus::Completed) => found.completed += 1,
            Some(OrderStatus::Cancelled) => found.compensated += 1,
            Some(OrderStatus::Placed) | None => {}
        }
    }
    // Every order the shop knows counts for the books, acknowledged or not.
    for order in books.orders.values() {
        if order.charged_cents > order.total_cents && order.total_cents > 0 {
            found.double_charges.push(format!(
                "{} was charged {} for a total of {}",
                order.order_id, order.charged_cents, order.total_cents
            ));
        }
    }
    for (order, count) in charges {
        if *count > 1 {
            found
                .double_charges
                .push(format!("{order} was announced charged {count} times"));
        }
    }
    found.stock = stock_problems(books, initial_stock);
    found.money = money_problems(books);
    found.violations.extend(books.violations());
    found
}

/// Stock that does not add up once every order has settled.
fn stock_problems(books: &Audit, initial_stock: &[(String, u64)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (sku, initial) in initial_stock {
        let Some(stock) = books.stock.get(sku) else {
            continue;
        };
        if stock.available() < 0 {
            wrong.push(format!(
                "{sku} is oversold: {} held of {} on hand",
                stock.held, stock.on_hand
            ));
        }
        if stock.on_hand.saturating_add(stock.shipped) != *initial {
            wrong.push(format!(
                "{sku}: {} on hand and {} shipped, but {initial} were put on the shelves",
                stock.on_hand, stock.shipped
            ));
        }
    }
    let settled_and_holding: Vec<String> = books
        .stock
        .values()
        .flat_map(|stock| {
            stock.holds.keys().filter_map(|order| {
                books
                    .orders
                    .get(order)
                    .filter(|audit| audit.is_settled())
                    .map(|_| format!("{} still holds units of {} after it settled", order, stock.sku))
            })
        })
        .collect();
    wrong.extend(settled_and_holding);
    let shipped: u64 = books.stock.values().map(|stock| stock.shipped).sum();
    let shipped_to_orders: u64 = books
        .orders
        .values()
        .filter(|order| order.status == Some(OrderStatus::Completed))
        .map(|order| order.shipped_units)
        .sum();
    let unsettled = books
        .orders
        .values()
        .any(|order| order.status.is_some() && !order.is_settled());
    if !unsettled && shipped != shipped_to_orders {
        wrong.push(format!(
            "{shipped} units left the shelves, but the completed orders shipped {shipped_to_orders}"
        ));
    }
    wrong
}

/// Money that does not add up: per order what was kept must be its total
/// when it completed and nothing when it was cancelled, and overall the
/// money kept must be the completed orders' totals.
fn money_problems(books: &Audit) -> Vec<String> {
    let mut wrong = Vec::new();
    let (mut kept, mut owed) = (0_i128, 0_i128);
    for order in books.orders.values() {
        let net = i128::from(order.charged_cents) - i128::from(order.refunded_cents);
        match order.status {
            Some(OrderStatus::Completed) if order.is_settled() => {
                kept += net;
                owed += i128::from(order.total_cents);
                if net != i128::from(order.total_cents) {
                    wrong.push(format!(
                        "{} completed for {} but {} was kept",
                        order.order_id, order.total_cents, net
                    ));
                }
            }
            Some(OrderStatus::Cancelled) => {
                kept += net;
                if net != 0 {
                    wrong.push(format!("{} was cancelled but {} was kept", order.order_id, net));
                }
            }
            _ => {}
        }
    }
    if kept != owed {
        wrong.push(format!("the shop kept {kept} but the completed orders came to {owed}"));
    }
    wrong
}

/// How many `charged` events the payments stream holds per order, whatever
/// their mode: a charge is announced once per order, so more is a double charge.
pub async fn charged_announcements(nats: &async_nats::Client) -> Result<BTreeMap<String, u64>, ShopError> {
    let contract = payments::contract()?;
    let stream_name = contracts::subjects::event_stream(&contract.service, contract.version.major());
    let subject = contract
        .events
        .iter()
        .find(|(name, _)| name.as_str() == <payments::Charged as contracts::operation::EventType>::NAME)
        .map(|(_, event)| event.subject.as_str().to_owned())
        .unwrap_or_default();
    let failed = |doing: &str, error: &dyn fmt::Display| {
        ShopError::Store(StoreError {
            bucket: stream_name.clone(),
            doing: doing.to_owned(),
            message: error.to_string(),
        })
    };
    let js = jetstream::new(nats.clone());
    let mut counts = BTreeMap::new();
    let Ok(mut stream) = js.get_stream(&stream_name).await else {
        return Ok(counts);
    };
    let state = stream
        .info()
        .await
        .map_err(|error| failed("reading the stream's state", &error))?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(counts);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // A gap (a deleted message) is no charge.
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        if message.subject.as_str() != subject {
            continue;
        }
        let charged: PaymentCharged = serde_json::from_slice(&message.payload)
            .map_err(|error| failed(&format!("decoding charged event {sequence}"), &error))?;
        *counts.entry(charged.order_id.0).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Polls the books until every acknowledged order of `placements` has
/// settled and nothing is wrong, or `timeout` passes; returns the last
/// judgement either way (with the double charges counted from the stream)
/// and the books it was made on.
pub async fn wait_settled(
    nats: &async_nats::Client,
    placements: &Placements,
    initial_stock: &[(String, u64)],
    timeout: Duration,
) -> Result<(Invariants, Audit), ShopError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let acknowledged: BTreeSet<&str> = placements.acknowledged.iter().map(|(id, _)| id.as_str()).collect();
    loop {
        let books = audit(nats.clone()).await?;
        let open = acknowledged
            .iter()
            .any(|id| !books.orders.get(*id).is_some_and(OrderAudit::is_settled));
        let judged = check(&books, placements, initial_stock, &BTreeMap::new());
        if (!open && judged.hold()) || tokio::time::Instant::now() > deadline {
            let charges = charged_announcements(nats).await?;
            return Ok((check(&books, placements, initial_stock, &charges), books));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shop::{PaymentStatus, ReservationStatus, ShipmentStatus, StockAudit};
    use contracts::shop::notifications::NotificationKind;

    fn completed(id: &str) -> OrderAudit {
        OrderAudit {
            order_id: id.to_owned(),
            mode: Some(FlowMode::Choreographed),
            status: Some(OrderStatus::Completed),
            total_cents: 500,
            ordered_units: 2,
            reservation: Some(ReservationStatus::Shipped),
            shipped_units: 2,
            payment: Some(PaymentStatus::Charged),
            charged_cents: 500,
            shipment: Some(ShipmentStatus::Scheduled),
            notifications: vec![NotificationKind::OrderConfirmed],
            ..OrderAudit::default()
        }
    }

    fn books(orders: Vec<OrderAudit>, on_hand: u64, shipped: u64) -> Audit {
        let mut audit = Audit::default();
        for order in orders {
            audit.orders.insert(order.order_id.clone(), order);
        }
        audit.stock.insert(
            "sku".to_owned(),
            StockAudit {
                sku: "sku".to_owned(),
                on_hand,
                shipped,
                ..StockAudit::default()
            },
        );
        audit
    }

    fn placed(ids: &[&str]) -> Placements {
        Placements {
            acknowledged: ids
                .iter()
                .map(|id| ((*id).to_owned(), FlowMode::Choreographed))
                .collect(),
            ..Placements::default()
        }
    }

    #[test]
    fn settled_books_hold() {
        let audit = books(vec![completed("a"), completed("b")], 6, 4);
        let found = check(
            &audit,
            &placed(&["a", "b"]),
            &[("sku".to_owned(), 10)],
            &BTreeMap::new(),
        );
        assert!(found.hold(), "{found}");
        assert_eq!((found.completed, found.compensated), (2, 0));
        assert!(found.to_string().contains("lost                 0  ok"), "{found}");
    }

    #[test]
    fn each_broken_invariant_is_reported() {
        let stuck = OrderAudit {
            status: Some(OrderStatus::Placed),
            ..completed("stuck")
        };
        let twice = OrderAudit {
            charged_cents: 1000,
            ..completed("twice")
        };
        let audit = books(vec![completed("a"), stuck, twice], 6, 5);
        let charges = BTreeMap::from([("a".to_owned(), 2)]);
        let found = check(
            &audit,
            &placed(&["a", "stuck", "twice", "gone"]),
            &[("sku".to_owned(), 10)],
            &charges,
        );
        assert!(!found.hold());
        assert_eq!(found.lost, ["gone"]);
        assert_eq!(found.stuck.len(), 1);
        assert_eq!(found.double_charges.len(), 2, "{found}");
        assert!(
            found.stock.iter().any(|problem| problem.contains("but 10 were put")),
            "{found}"
        );
        assert!(!found.money.is_empty(), "{found}");
        let text = found.to_string();
        assert!(text.contains("stuck: stuck"), "{text}");
        assert!(text.contains("FAILED"), "{text}");
    }
}
