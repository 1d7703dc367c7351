//! The inventory service: stock per product and one reservation per order.
//!
//! Stock never goes below zero, whatever runs at once: a product's record
//! holds its units on hand and the units held for each order in flight by
//! order id, and a hold is added only by a compare-and-set that sees enough
//! free units. Holding is idempotent per order (an order already holding a
//! product is left as it is), so two deliveries of one reservation never
//! take stock twice.
//!
//! The reservation record (one per order, created first) decides the
//! outcome: `pending` while the products are taken one by one, then `held`
//! once every one is, or `refused` with the shortage; holds are only given
//! back after the record says `refused` or `released`, so a concurrent
//! attempt at the same order cannot end `held` with a product missing. An
//! answer read from a `refused` or `released` record first gives back any
//! hold still there, which repairs an attempt that died half-way.
//!
//! A product's record stays small: when an order completes, its units leave
//! the shelves (`on_hand` and the hold go down together, `shipped` goes up)
//! and the reservation ends `shipped`. Each hold names the reservation
//! attempt that took it, and the settled reservation names the holds that
//! count, so a late attempt that still believed the reservation pending
//! cannot have its hold shipped or counted: it finds its hold is not the one
//! named and gives it back.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream;
use contracts::shop::inventory::{
    self, GetStock, ReleaseStock, Reservation, ReserveStock, StockLevel, StockReleased, StockReserved, StockShortage,
};
use contracts::shop::orders::{self, OrderCompleted, OrderPlaced};
use contracts::shop::payments::{self, PaymentDeclined};
use contracts::shop::shipping::{self, ShipmentFailed};
use contracts::shop::{FlowMode, OrderId, StockLine};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::ShopConfig;
use super::flow::{Announce, Tasks, driven_by_workflow, order_flow, publisher, service_config, set_up, spawn_consumer};
use super::state::{Bucket, Change, HotKeys, RESERVATIONS_BUCKET, STOCK_BUCKET, StoreError, now_ms, sku_key};
use crate::runtime::{EventContext, EventPublisher, Propagation, Service, ServiceError};

/// Rounds of reading and settling a reservation before giving up as `UNAVAILABLE`.
const MAX_ROUNDS: usize = 8;

/// One product's stock as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StockRecord {
    /// Stock keeping unit.
    pub(crate) sku: String,
    /// Units on the shelves, held or not.
    pub(crate) on_hand: u64,
    /// Units that left the shelves for completed orders.
    #[serde(default)]
    pub(crate) shipped: u64,
    /// Units held for orders in flight, by order id.
    pub(crate) holds: BTreeMap<String, Hold>,
}

/// The units one order holds of a product, and the attempt that took them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredHold")]
pub(crate) struct Hold {
    /// Units held.
    pub(crate) units: u64,
    /// The reservation attempt that took them (empty in records written
    /// before attempts were named).
    pub(crate) attempt: String,
}

/// A hold as stored now, or as a bare unit count by earlier versions.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredHold {
    Named { units: u64, attempt: String },
    Units(u64),
}

impl From<StoredHold> for Hold {
    fn from(stored: StoredHold) -> Self {
        match stored {
            StoredHold::Named { units, attempt } => Self { units, attempt },
            StoredHold::Units(units) => Self {
                units,
                attempt: String::new(),
            },
        }
    }
}

impl StockRecord {
    /// Units held for orders.
    pub(crate) fn held(&self) -> u64 {
        self.holds.values().fold(0, |sum, hold| sum.saturating_add(hold.units))
    }

    /// Units free to reserve.
    pub(crate) fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.held())
    }
}

/// Where an order's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReservationStatus {
    /// Products are being taken.
    Pending,
    /// Every product is held for the order.
    Held,
    /// A product ran short; nothing is held.
    Refused,
    /// What was held went back; nothing is held.
    Released,
    /// The order completed and what was held left the shelves.
    Shipped,
}

/// One order's reservation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReservationRecord {
    /// The order.
    pub(crate) order_id: OrderId,
    /// The reservation.
    pub(crate) reservation_id: String,
    /// What is (or was to be) held, one line per product.
    pub(crate) items: Vec<StockLine>,
    /// Where it stands.
    pub(crate) status: ReservationStatus,
    /// The product that ran short, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shortage: Option<StockShortage>,
    /// Whether the release gave stock back (it was held or being taken).
    #[serde(default)]
    pub(crate) released_held: bool,
    /// Once held: by SKU, the attempt whose hold is the order's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) attempts: BTreeMap<String, String>,
    /// When it last changed, ms since the Unix epoch.
    pub(crate) updated_at_ms: u64,
}

impl ReservationRecord {
    /// The attempt whose hold on `sku` counts (empty: holds from before attempts were named).
    fn attempt_for(&self, sku: &str) -> &str {
        self.attempts.get(sku).map_or("", String::as_str)
    }

    /// Units of every line together.
    pub(crate) fn units(&self) -> u64 {
        self.items
            .iter()
            .fold(0, |sum, line| sum.saturating_add(u64::from(line.quantity)))
    }
}

/// What reserving came to.
#[derive(Debug, Clone)]
pub(crate) enum Reserved {
    /// Every product is held (or was, and has shipped).
    Held(Reservation),
    /// A product ran short; nothing is held.
    Short(StockShortage),
    /// The order's stock was released before; it is not reserved again.
    Released,
}

/// What one attempt's pass over the products came to: by SKU, the attempt
/// whose hold is there, or the product that ran short.
type Taken = Result<BTreeMap<String, String>, StockShortage>;

/// The inventory's state.
#[derive(Clone)]
pub(crate) struct Inventory {
    /// Many orders change one product's record at once: the changes waiting
    /// for a product are written together, by compare-and-set.
    stock: Arc<HotKeys<StockRecord>>,
    reservations: Bucket,
}

impl Inventory {
    /// Opens (creating when missing) the inventory's buckets.
    pub(crate) async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, StoreError> {
        Ok(Self {
            stock: HotKeys::new(Bucket::open(js, STOCK_BUCKET, "soabus shop: stock per product", replicas).await?),
            reservations: Bucket::open(
                js,
                RESERVATIONS_BUCKET,
                "soabus shop: one stock reservation per order",
                replicas,
            )
            .await?,
        })
    }

    /// Puts `units` of each product on the shelves unless it has a stock
    /// record already (a restart keeps what the shop has).
    pub(crate) async fn seed(&self, initial: &[(String, u64)]) -> Result<(), StoreError> {
        for (sku, units) in initial {
            let record = StockRecord {
                sku: sku.clone(),
                on_hand: *units,
                shipped: 0,
                holds: BTreeMap::new(),
            };
            self.stock.bucket().create(&sku_key(sku), &record).await?;
        }
        Ok(())
    }

    /// Holds `items` for `order_id`, once per order whatever runs at once.
    /// It runs to the end even when the caller stops waiting (a handler
    /// timeout): stopping between two products would leave holds that no
    /// release sees.
    pub(crate) async fn reserve(&self, order_id: &OrderId, items: &[StockLine]) -> Result<Reserved, StoreError> {
        let (inventory, order, lines) = (self.clone(), order_id.clone(), items.to_vec());
        tokio::spawn(async move { inventory.reserve_to_the_end(&order, &lines).await })
            .await
            .map_err(|error| task_failed(&order_id.0, "reserving", &error))?
    }

    async fn reserve_to_the_end(&self, order_id: &OrderId, items: &[StockLine]) -> Result<Reserved, StoreError> {
        let key = order_id.0.as_str();
        let wanted = merge_lines(items);
        let attempt = nuid::next().to_string();
        // Products this attempt put a hold on.
        let mut added: Vec<String> = Vec::new();
        // The first round takes the order for a new one (the common case):
        // it takes the holds, then stores the outcome in one create, without
        // reading first. When a record is there already, the create fails
        // and the next round reads it. A release that finds no record looks
        // for the order's holds itself, so holds taken by an attempt that
        // stopped before its create are given back all the same.
        let mut guess_new = true;
        for _ in 0..MAX_ROUNDS {
            let existing = if std::mem::take(&mut guess_new) {
                None
            } else {
                self.reservations.get::<ReservationRecord>(key).await?
            };
            let (record, found_settled) = match existing {
                None => {
                    let taken = self.take(order_id, &wanted, &attempt, &mut added).await?;
                    let record = settled_record(order_id, &wanted, taken);
                    if !self.reservations.create(key, &record).await? {
                        // Someone stored this order's reservation first: read theirs.
                        continue;
                    }
                    (record, false)
                }
                // Written by an earlier version, which stored a reservation
                // before taking its holds.
                Some(record) if record.status == ReservationStatus::Pending => {
                    // Take what the record says (the first request's items), so
                    // every attempt at this order works towards the same holds.
                    let taken = self.take(order_id, &record.items, &attempt, &mut added).await?;
                    // Answer from the settled record, whoever settled it.
                    match self.settle(key, taken).await? {
                        Some(settled) => (settled, false),
                        None => continue,
                    }
                }
                Some(record) => (record, true),
            };
            match record.status {
                ReservationStatus::Held | ReservationStatus::Shipped => {
                    // A hold the record does not name is a late attempt's
                    // (this one's, or one that died before giving it back);
                    // this attempt's holds may be on products the record
                    // does not list (a request with other items).
                    let mut suspects: Vec<&str> = added.iter().map(String::as_str).collect();
                    if found_settled {
                        suspects.extend(record.items.iter().map(|line| line.sku.as_str()));
                        suspects.sort_unstable();
                        suspects.dedup();
                    }
                    for sku in suspects {
                        if !found_settled && record.attempt_for(sku) == attempt {
                            continue;
                        }
                        self.drop_unnamed(key, sku, record.attempt_for(sku)).await?;
                    }
                    return Ok(Reserved::Held(Reservation {
                        reservation_id: record.reservation_id,
                        order_id: record.order_id,
                        items: record.items,
                    }));
                }
                ReservationStatus::Refused => {
                    self.give_back(key, &record.items).await?;
                    self.give_back(key, &wanted).await?;
                    let shortage = record.shortage.unwrap_or_else(|| StockShortage {
                        order_id: order_id.clone(),
                        sku: wanted.first().map(|line| line.sku.clone()).unwrap_or_default(),
                        requested: wanted.first().map_or(0, |line| u64::from(line.quantity)),
                        available: 0,
                        mode: None,
                    });
                    return Ok(Reserved::Short(shortage));
                }
                ReservationStatus::Released => {
                    self.give_back(key, &record.items).await?;
                    self.give_back(key, &wanted).await?;
                    return Ok(Reserved::Released);
                }
                ReservationStatus::Pending => {}
            }
        }
        Err(StoreError {
            bucket: RESERVATIONS_BUCKET.to_owned(),
            doing: format!("reserving for {key}"),
            message: format!("the reservation did not settle in {MAX_ROUNDS} rounds"),
        })
    }

    /// Holds each line for `order_id` under `attempt`, product by product;
    /// the first product short of units stops it and is returned. Products
    /// it put a hold on are added to `added`.
    async fn take(
        &self,
        order_id: &OrderId,
        items: &[StockLine],
        attempt: &str,
        added: &mut Vec<String>,
    ) -> Result<Taken, StoreError> {
        let order = order_id.0.as_str();
        let mut attempts = BTreeMap::new();
        for line in items {
            let units = u64::from(line.quantity);
            let (order, attempt) = (order.to_owned(), attempt.to_owned());
            let outcome = self
                .stock
                .modify(
                    &sku_key(&line.sku),
                    move |current: Option<&StockRecord>| match current {
                        // A product the shop never stocked has nothing free.
                        None => Change::Keep(Err(0)),
                        Some(record) => match record.holds.get(&order) {
                            Some(hold) => Change::Keep(Ok((hold.attempt.clone(), false))),
                            None if record.available() >= units => {
                                let mut next = record.clone();
                                next.holds.insert(
                                    order.clone(),
                                    Hold {
                                        units,
                                        attempt: attempt.clone(),
                                    },
                                );
                                Change::Write(next, Ok((attempt.clone(), true)))
                            }
                            None => Change::Keep(Err(record.available())),
                        },
                    },
                )
                .await?;
            match outcome {
                Ok((holder, added_here)) => {
                    if added_here {
                        added.push(line.sku.clone());
                    }
                    attempts.insert(line.sku.clone(), holder);
                }
                Err(available) => {
                    return Ok(Err(StockShortage {
                        order_id: order_id.clone(),
                        sku: line.sku.clone(),
                        requested: units,
                        available,
                        mode: None,
                    }));
                }
            }
        }
        Ok(Ok(attempts))
    }

    /// Ends a pending reservation as held (naming the holds that count) or
    /// refused; a reservation someone else settled first is left as it is.
    /// Returns the record as it stands (`None`: it is gone).
    async fn settle(&self, key: &str, taken: Taken) -> Result<Option<ReservationRecord>, StoreError> {
        self.reservations
            .modify(key, |current: Option<&ReservationRecord>| match current {
                Some(record) if record.status == ReservationStatus::Pending => {
                    let mut next = record.clone();
                    match &taken {
                        Ok(attempts) => {
                            next.status = ReservationStatus::Held;
                            next.attempts.clone_from(attempts);
                        }
                        Err(shortage) => {
                            next.status = ReservationStatus::Refused;
                            next.shortage = Some(shortage.clone());
                        }
                    }
                    next.updated_at_ms = now_ms();
                    Change::Write(next.clone(), Some(next))
                }
                other => Change::Keep(other.cloned()),
            })
            .await
    }

    /// Removes `order`'s holds on the products of `items` (idempotent).
    async fn give_back(&self, order: &str, items: &[StockLine]) -> Result<(), StoreError> {
        for line in items {
            self.give_back_at(order, &sku_key(&line.sku)).await?;
        }
        Ok(())
    }

    /// Removes `order`'s holds on every product (idempotent): for a release
    /// that found no reservation naming the products.
    async fn give_back_everywhere(&self, order: &str) -> Result<(), StoreError> {
        for (key, stock) in self.stock.bucket().all::<StockRecord>().await? {
            if stock.holds.contains_key(order) {
                self.give_back_at(order, &key).await?;
            }
        }
        Ok(())
    }

    /// Removes `order`'s hold on the product stored under `key` (idempotent).
    async fn give_back_at(&self, order: &str, key: &str) -> Result<(), StoreError> {
        let order = order.to_owned();
        self.stock
            .modify(key, move |current: Option<&StockRecord>| match current {
                Some(record) if record.holds.contains_key(&order) => {
                    let mut next = record.clone();
                    next.holds.remove(&order);
                    Change::Write(next, ())
                }
                _ => Change::Keep(()),
            })
            .await
    }

    /// Removes `order`'s hold on `sku` unless the `named` attempt took it
    /// (idempotent).
    async fn drop_unnamed(&self, order: &str, sku: &str, named: &str) -> Result<(), StoreError> {
        let (order, named) = (order.to_owned(), named.to_owned());
        self.stock
            .modify(&sku_key(sku), move |current: Option<&StockRecord>| match current {
                Some(record) if record.holds.get(&order).is_some_and(|hold| hold.attempt != named) => {
                    let mut next = record.clone();
                    next.holds.remove(&order);
                    Change::Write(next, ())
                }
                _ => Change::Keep(()),
            })
            .await
    }

    /// Gives back what `order_id` holds, once: the record turns `released`
    /// first (so no attempt still under way can end `held`), then the holds go.
    /// A release before any reservation leaves a `released` record, so a
    /// late reservation is refused rather than taking stock nobody releases.
    /// A shipped order's stock has left and is not given back.
    pub(crate) async fn release(&self, order_id: &OrderId) -> Result<StockReleased, StoreError> {
        // To the end, like a reservation: a release stopped halfway keeps holds.
        let (inventory, order) = (self.clone(), order_id.clone());
        tokio::spawn(async move { inventory.release_to_the_end(&order).await })
            .await
            .map_err(|error| task_failed(&order_id.0, "releasing", &error))?
    }

    async fn release_to_the_end(&self, order_id: &OrderId) -> Result<StockReleased, StoreError> {
        let key = order_id.0.as_str();
        let (record, first) = self
            .reservations
            .modify(key, |current: Option<&ReservationRecord>| match current {
                None => {
                    let record = ReservationRecord {
                        order_id: order_id.clone(),
                        reservation_id: format!("res-{key}"),
                        items: Vec::new(),
                        status: ReservationStatus::Released,
                        shortage: None,
                        released_held: false,
                        attempts: BTreeMap::new(),
                        updated_at_ms: now_ms(),
                    };
                    Change::Write(record.clone(), (record, true))
                }
                Some(record) if matches!(record.status, ReservationStatus::Pending | ReservationStatus::Held) => {
                    let mut next = record.clone();
                    next.status = ReservationStatus::Released;
                    next.released_held = true;
                    next.updated_at_ms = now_ms();
                    Change::Write(next.clone(), (next, false))
                }
                Some(record) => Change::Keep((record.clone(), false)),
            })
            .await?;
        if record.status == ReservationStatus::Shipped {
            tracing::warn!(order = %key, "A release of an order whose stock has shipped; nothing goes back.");
        } else if first {
            // No reservation was stored: an attempt may have taken holds and
            // stopped before storing it (one still under way finds this
            // record and gives its holds back itself).
            self.give_back_everywhere(key).await?;
        } else {
            self.give_back(key, &record.items).await?;
        }
        Ok(StockReleased {
            order_id: order_id.clone(),
            released: record.released_held,
            mode: None,
        })
    }

    /// Takes a completed order's units off the shelves, once: the record
    /// turns `shipped` first, then each product's hold leaves with its units
    /// (a hold the record does not name is a late attempt's and just goes).
    /// Returns whether the order had stock held or shipped.
    pub(crate) async fn ship(&self, order_id: &OrderId) -> Result<bool, StoreError> {
        // To the end: a shipment stopped halfway keeps holds until redelivered.
        let (inventory, order) = (self.clone(), order_id.clone());
        tokio::spawn(async move { inventory.ship_to_the_end(&order).await })
            .await
            .map_err(|error| task_failed(&order_id.0, "shipping", &error))?
    }

    async fn ship_to_the_end(&self, order_id: &OrderId) -> Result<bool, StoreError> {
        let key = order_id.0.as_str();
        let record = self
            .reservations
            .modify(key, |current: Option<&ReservationRecord>| match current {
                Some(record) if record.status == ReservationStatus::Held => {
                    let mut next = record.clone();
                    next.status = ReservationStatus::Shipped;
                    next.updated_at_ms = now_ms();
                    Change::Write(next.clone(), Some(next))
                }
                other => Change::Keep(other.cloned()),
            })
            .await?;
        let Some(record) = record.filter(|record| record.status == ReservationStatus::Shipped) else {
            return Ok(false);
        };
        for line in &record.items {
            let (named, order) = (record.attempt_for(&line.sku).to_owned(), key.to_owned());
            self.stock
                .modify(&sku_key(&line.sku), move |current: Option<&StockRecord>| {
                    let Some(stock) = current else {
                        return Change::Keep(());
                    };
                    let Some(hold) = stock.holds.get(&order) else {
                        return Change::Keep(());
                    };
                    let mut next = stock.clone();
                    if hold.attempt == named {
                        next.on_hand = next.on_hand.saturating_sub(hold.units);
                        next.shipped = next.shipped.saturating_add(hold.units);
                    }
                    next.holds.remove(&order);
                    Change::Write(next, ())
                })
                .await?;
        }
        Ok(true)
    }

    /// A product's free and held units.
    pub(crate) async fn level(&self, sku: &str) -> Result<Option<StockLevel>, StoreError> {
        Ok(self
            .stock
            .bucket()
            .get::<StockRecord>(&sku_key(sku))
            .await?
            .map(|record| StockLevel {
                available: record.available(),
                reserved: record.held(),
                sku: record.sku,
            }))
    }
}

/// A new order's reservation as its first attempt settles it: `held`,
/// naming by product the attempt whose hold counts, or `refused` with the
/// product that ran short.
fn settled_record(order_id: &OrderId, items: &[StockLine], taken: Taken) -> ReservationRecord {
    let (status, shortage, attempts) = match taken {
        Ok(attempts) => (ReservationStatus::Held, None, attempts),
        Err(shortage) => (ReservationStatus::Refused, Some(shortage), BTreeMap::new()),
    };
    ReservationRecord {
        order_id: order_id.clone(),
        reservation_id: format!("res-{}", order_id.0),
        items: items.to_vec(),
        status,
        shortage,
        released_held: false,
        attempts,
        updated_at_ms: now_ms(),
    }
}

/// A reservation or release task that panicked or was cancelled.
fn task_failed(order: &str, doing: &str, error: &tokio::task::JoinError) -> StoreError {
    StoreError {
        bucket: RESERVATIONS_BUCKET.to_owned(),
        doing: format!("{doing} for {order}"),
        message: format!("the task failed: {error}"),
    }
}

/// One line per product, in SKU order, quantities of repeated products added.
fn merge_lines(items: &[StockLine]) -> Vec<StockLine> {
    let mut merged: BTreeMap<&str, u32> = BTreeMap::new();
    for line in items {
        let units = merged.entry(line.sku.as_str()).or_default();
        *units = units.saturating_add(line.quantity);
    }
    merged
        .into_iter()
        .map(|(sku, quantity)| StockLine {
            sku: sku.to_owned(),
            quantity,
        })
        .collect()
}

/// The lines of an order without prices.
fn stock_lines(placed: &OrderPlaced) -> Vec<StockLine> {
    placed
        .items
        .iter()
        .map(|item| StockLine {
            sku: item.sku.clone(),
            quantity: item.quantity,
        })
        .collect()
}

/// The `OUT_OF_STOCK` answer of a shortage.
fn out_of_stock(shortage: &StockShortage) -> ServiceError {
    ServiceError::declared(
        "OUT_OF_STOCK",
        format!(
            "{} units of {} asked for, {} free",
            shortage.requested, shortage.sku, shortage.available
        ),
    )
}

/// The operations: the state changes, each announced as an event of an
/// orchestrated order (mode `orchestrated`, which the choreography's
/// reactions ignore), before the answer.
fn service(reactions: &Arc<Reactions>, config: &ShopConfig) -> Result<Service, ShopError> {
    let (for_reserve, for_release, for_stock) = (Arc::clone(reactions), Arc::clone(reactions), Arc::clone(reactions));
    Ok(Service::builder(inventory::contract()?)
        .config(service_config(config))
        .handle::<inventory::Reserve, _, _>(move |context, request: ReserveStock| {
            let reactions = Arc::clone(&for_reserve);
            async move {
                let reserved = reactions.inventory.reserve(&request.order_id, &request.items).await?;
                reactions
                    .announce_reserved(
                        context.propagation(),
                        &request.order_id,
                        &reserved,
                        FlowMode::Orchestrated,
                        None,
                    )
                    .await?;
                match reserved {
                    Reserved::Held(reservation) => Ok(reservation),
                    Reserved::Short(shortage) => Err(out_of_stock(&shortage)),
                    Reserved::Released => Err(ServiceError::conflict(format!(
                        "the stock of order {} was released; a released order is not reserved again",
                        request.order_id.0
                    ))),
                }
            }
        })
        .handle::<inventory::Release, _, _>(move |context, request: ReleaseStock| {
            let reactions = Arc::clone(&for_release);
            async move {
                reactions
                    .release(context.propagation(), &request.order_id, FlowMode::Orchestrated)
                    .await
            }
        })
        .handle::<inventory::Stock, _, _>(move |_context, request: GetStock| {
            let reactions = Arc::clone(&for_stock);
            async move {
                reactions
                    .inventory
                    .level(&request.sku)
                    .await?
                    .ok_or_else(|| ServiceError::not_found(format!("the shop does not stock {}", request.sku)))
            }
        })
        .build()?)
}

/// The choreography: reserve for a placed order, give stock back when the
/// payment is declined or no shipment can be scheduled.
struct Reactions {
    inventory: Inventory,
    publisher: EventPublisher,
}

impl Reactions {
    async fn placed(&self, context: EventContext, placed: OrderPlaced) -> Result<(), ServiceError> {
        if placed.mode != FlowMode::Choreographed {
            return Ok(());
        }
        let reserved = self.inventory.reserve(&placed.order_id, &stock_lines(&placed)).await?;
        self.announce_reserved(
            context.propagation(),
            &placed.order_id,
            &reserved,
            FlowMode::Choreographed,
            Some(&placed),
        )
        .await
    }

    /// Announces what reserving for an order of `mode` came to. A
    /// reservation for a `placed` event carries on who pays and how much,
    /// which payments needs next in the choreography.
    async fn announce_reserved(
        &self,
        cause: &Propagation,
        order_id: &OrderId,
        reserved: &Reserved,
        mode: FlowMode,
        placed: Option<&OrderPlaced>,
    ) -> Result<(), ServiceError> {
        let order = order_id.0.as_str();
        let publisher = self.publisher.in_flow(&order_flow(cause, order));
        match reserved {
            Reserved::Held(reservation) => {
                publisher
                    .announce::<inventory::Reserved>(
                        order,
                        mode,
                        &StockReserved {
                            order_id: reservation.order_id.clone(),
                            reservation_id: reservation.reservation_id.clone(),
                            items: reservation.items.clone(),
                            mode: Some(mode),
                            customer_id: placed.map(|placed| placed.customer_id.clone()),
                            total: placed.map(|placed| placed.total.clone()),
                        },
                    )
                    .await
            }
            Reserved::Short(shortage) => {
                publisher
                    .announce::<inventory::OutOfStock>(
                        order,
                        mode,
                        &StockShortage {
                            mode: Some(mode),
                            ..shortage.clone()
                        },
                    )
                    .await
            }
            Reserved::Released => {
                tracing::warn!(order = %order, "The order was placed after its stock was released; nothing is reserved.");
                Ok(())
            }
        }
    }

    /// Gives back an order's stock and announces it in the order's `mode`.
    async fn release(
        &self,
        cause: &Propagation,
        order_id: &OrderId,
        mode: FlowMode,
    ) -> Result<StockReleased, ServiceError> {
        let released = StockReleased {
            mode: Some(mode),
            ..self.inventory.release(order_id).await?
        };
        self.publisher
            .in_flow(&order_flow(cause, &order_id.0))
            .announce::<inventory::Released>(&order_id.0, mode, &released)
            .await?;
        Ok(StockReleased { mode: None, ..released })
    }
}

/// Runs the inventory (its operations and its reactions) until `shutdown`.
pub(crate) async fn run(
    config: Arc<ShopConfig>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ShopError> {
    let js = jetstream::new(nats.clone());
    let inventory = set_up("opening inventory's buckets", || Inventory::open(&js, config.replicas)).await?;
    set_up("seeding inventory's stock", || inventory.seed(&config.initial_stock)).await?;
    let publisher = publisher(&nats, inventory::contract()?, config.replicas).await?;
    let reactions = Arc::new(Reactions { inventory, publisher });
    let service = service(&reactions, &config)?;
    let mut tasks = Tasks::new(&shutdown);
    let on_placed = Arc::clone(&reactions);
    spawn_consumer::<orders::Placed, _, _>(
        &mut tasks,
        &nats,
        &config,
        &orders::contract()?,
        "inventory-orders-placed",
        move |context, placed| {
            let reactions = Arc::clone(&on_placed);
            async move { reactions.placed(context, placed).await }
        },
    );
    let on_declined = Arc::clone(&reactions);
    spawn_consumer::<payments::Declined, _, _>(
        &mut tasks,
        &nats,
        &config,
        &payments::contract()?,
        "inventory-payments-declined",
        move |context, declined: PaymentDeclined| {
            let reactions = Arc::clone(&on_declined);
            async move {
                if driven_by_workflow(declined.mode) {
                    return Ok(());
                }
                let cause = context.propagation();
                reactions
                    .release(cause, &declined.order_id, FlowMode::Choreographed)
                    .await
                    .map(drop)
            }
        },
    );
    // Not a step of the choreography but the end of every order's life,
    // whichever mode drove it: its stock leaves the shelves.
    let on_completed = reactions.inventory.clone();
    spawn_consumer::<orders::Completed, _, _>(
        &mut tasks,
        &nats,
        &config,
        &orders::contract()?,
        "inventory-orders-completed",
        move |_context, completed: OrderCompleted| {
            let inventory = on_completed.clone();
            async move {
                inventory.ship(&completed.order_id).await?;
                Ok(())
            }
        },
    );
    let on_failed = reactions;
    spawn_consumer::<shipping::Failed, _, _>(
        &mut tasks,
        &nats,
        &config,
        &shipping::contract()?,
        "inventory-shipping-failed",
        move |context, failed: ShipmentFailed| {
            let reactions = Arc::clone(&on_failed);
            async move {
                if driven_by_workflow(failed.mode) {
                    return Ok(());
                }
                let cause = context.propagation();
                reactions
                    .release(cause, &failed.order_id, FlowMode::Choreographed)
                    .await
                    .map(drop)
            }
        },
    );
    tasks.serve(service, nats).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32) -> StockLine {
        StockLine {
            sku: sku.to_owned(),
            quantity,
        }
    }

    #[test]
    fn repeated_products_are_one_line_in_sku_order() {
        let merged = merge_lines(&[line("b", 1), line("a", 2), line("b", 3)]);
        assert_eq!(merged, vec![line("a", 2), line("b", 4)]);
    }

    fn hold(units: u64, attempt: &str) -> Hold {
        Hold {
            units,
            attempt: attempt.to_owned(),
        }
    }

    #[test]
    fn free_units_are_what_no_order_holds() {
        let record = StockRecord {
            sku: "a".to_owned(),
            on_hand: 10,
            shipped: 5,
            holds: BTreeMap::from([("o-1".to_owned(), hold(3, "x")), ("o-2".to_owned(), hold(4, "y"))]),
        };
        assert_eq!(record.held(), 7);
        assert_eq!(record.available(), 3);
    }

    #[test]
    fn records_of_earlier_versions_still_read() -> Result<(), serde_json::Error> {
        let record: StockRecord = serde_json::from_str(r#"{"sku":"a","on_hand":10,"holds":{"o-1":3}}"#)?;
        assert_eq!(record.shipped, 0);
        assert_eq!(record.holds.get("o-1"), Some(&hold(3, "")));
        let reservation: ReservationRecord = serde_json::from_str(
            r#"{"order_id":"o-1","reservation_id":"res-o-1","items":[{"sku":"a","quantity":3}],"status":"held","updated_at_ms":1}"#,
        )?;
        // Holds written before attempts were named are the ones that count.
        assert_eq!(reservation.attempt_for("a"), "");
        assert_eq!(reservation.units(), 3);
        Ok(())
    }

    #[test]
    fn holds_are_stored_with_their_attempt() -> Result<(), serde_json::Error> {
        let record = StockRecord {
            sku: "a".to_owned(),
            on_hand: 1,
            shipped: 0,
            holds: BTreeMap::from([("o-1".to_owned(), hold(1, "x"))]),
        };
        let again: StockRecord = serde_json::from_value(serde_json::to_value(&record)?)?;
        assert_eq!(again.holds, record.holds);
        Ok(())
    }
}
