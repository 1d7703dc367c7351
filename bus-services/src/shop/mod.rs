//! The demo shop: orders, inventory, payments, shipping and notifications
//! on the service runtime, each with its state in a JetStream KV bucket, and
//! order fulfilment two ways. An orchestrated order is driven by the
//! `fulfilment` workflow (the orchestrator calls the services' operations);
//! a choreographed one by the services reacting to each other's events from
//! durable consumers. Every change is announced on the bus whichever way
//! drove it (an operation's event says `mode: orchestrated`, a reaction's
//! `choreographed`), so a read model can follow every order from the
//! events alone; each reaction ignores events of orchestrated orders, so the
//! two ways never mix.
//!
//! Every effect is keyed on the order id, not on a message or an idempotency
//! key: one reservation, one charge, one refund, one shipment per order and
//! one notification per order and kind, however often a call is retried or
//! an event redelivered. Which orders are declined or cannot be shipped is a
//! seeded rule ([`ShopConfig`]), so the same orders end the same way in both
//! modes; running out of stock is a matter of stock levels.
//!
//! - `config`: [`ShopConfig`] and the seeded failure rules.
//! - `state`: the KV buckets, compare-and-set and create-only writes.
//! - `flow`: correlation, message ids, consumers, tasks.
//! - `orders`, `inventory`, `payments`, `shipping`, `notifications`: one
//!   service each, its state and its reactions.
//! - `audit`: the books, read from every bucket, and the invariants.
//! - `drive`: a steady load of orders in both modes, each placed until acknowledged.
//! - `invariants`: what must hold once a load has settled (none lost or
//!   stuck, no double charge, stock and money balanced), and the wait for it.
//! - `timeline`: one order read back: its record, and its events scanned
//!   from the streams by correlation id.

mod audit;
mod config;
mod drive;
mod flow;
mod invariants;
mod inventory;
mod notifications;
mod orders;
mod payments;
mod shipping;
pub(crate) mod state;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use contracts::NameError;
use contracts::subjects::{self, DiscoveryVerb};
use tokio_util::sync::CancellationToken;

pub use audit::{Audit, OrderAudit, Outcome, StockAudit, audit};
pub use config::{ShopConfig, unit_interval};
pub use drive::{DriveConfig, DriveProgress, OrderDriver};
pub use invariants::{Invariants, Placements, charged_announcements, check, wait_settled};
pub use inventory::ReservationStatus;
pub use payments::PaymentStatus;
pub use shipping::ShipmentStatus;
pub use state::{
    NOTIFICATIONS_BUCKET, ORDERS_BUCKET, PAYMENTS_BUCKET, RESERVATIONS_BUCKET, SHIPMENTS_BUCKET, STOCK_BUCKET,
    StoreError,
};
pub use timeline::{
    EventScan, EventStream, FlowEvent, StoredOrder, StreamScan, TimelineError, event_streams, scan_events,
    stored_order, utc_time,
};

use crate::runtime::{BuildError, EventError, RunError};

/// Why the shop (or one of its services) could not run.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// A shop contract does not build.
    #[error("the shop's contracts do not build: {0}")]
    Contract(#[from] NameError),
    /// A service could not be built from its contract.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A service stopped with an error.
    #[error(transparent)]
    Run(#[from] RunError),
    /// An event stream or consumer could not be set up.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A bucket could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task ended before shutdown without an error (its subscription closed).
    #[error("{task} stopped before shutdown; the NATS connection is probably closed")]
    Stopped {
        /// Which task.
        task: String,
    },
    /// A task panicked or was cancelled.
    #[error("a shop task failed: {0}")]
    Task(String),
    /// Services did not answer in time.
    #[error("{services} did not answer within {timeout:?}")]
    NotServing {
        /// The silent services.
        services: String,
        /// How long they were given.
        timeout: Duration,
    },
}

/// One of the shop's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShopService {
    /// Takes orders and records how they end.
    Orders,
    /// Stock and reservations.
    Inventory,
    /// Charges and refunds.
    Payments,
    /// Shipments.
    Shipping,
    /// What customers are told.
    Notifications,
}

impl ShopService {
    /// Every service, in the order an order meets them.
    pub const ALL: [Self; 5] = [
        Self::Orders,
        Self::Inventory,
        Self::Payments,
        Self::Shipping,
        Self::Notifications,
    ];

    /// The service's name, as in its contract.
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Inventory => "inventory",
            Self::Payments => "payments",
            Self::Shipping => "shipping",
            Self::Notifications => "notifications",
        }
    }

    /// The service called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|service| service.name() == name)
    }
}

impl std::fmt::Display for ShopService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The shop: its five services, run together or one by one.
#[derive(Debug, Clone)]
pub struct Shop {
    config: Arc<ShopConfig>,
}

impl Shop {
    /// A shop run by `config`.
    pub fn new(config: ShopConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// How it runs.
    pub fn config(&self) -> &ShopConfig {
        &self.config
    }

    /// Runs all five services and their reactions until `shutdown`, then
    /// stops them cleanly (each service drains and deregisters, each
    /// consumer finishes the event in hand). The caller owns `nats` and
    /// drains it afterwards.
    pub async fn run(self, nats: async_nats::Client, shutdown: CancellationToken) -> Result<(), ShopError> {
        self.run_only(&ShopService::ALL, nats, shutdown).await
    }

    /// Runs only `services` (each once, whatever the repeats) until
    /// `shutdown`: to stop and restart one service while the others run.
    /// The first service to fail stops the others and its error is returned.
    pub async fn run_only(
        &self,
        services: &[ShopService],
        nats: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), ShopError> {
        let mut chosen = services.to_vec();
        chosen.sort();
        chosen.dedup();
        let mut tasks = flow::Tasks::new(&shutdown);
        for service in chosen {
            let (config, nats, stop) = (Arc::clone(&self.config), nats.clone(), tasks.stop());
            let run = async move {
                match service {
                    ShopService::Orders => orders::run(config, nats, stop).await,
                    ShopService::Inventory => inventory::run(config, nats, stop).await,
                    ShopService::Payments => payments::run(config, nats, stop).await,
                    ShopService::Shipping => shipping::run(config, nats, stop).await,
                    ShopService::Notifications => notifications::run(config, nats, stop).await,
                }
            };
            tasks.spawn(format!("the {service} service"), run);
        }
        tasks.join().await
    }

    /// Returns once an instance of each of `services` answers NATS micro
    /// discovery (`$SRV.PING.<name>`); an error after `timeout`. Events
    /// published meanwhile are not lost: the durable consumers start from
    /// the beginning of their streams.
    pub async fn wait_until_serving(
        nats: &async_nats::Client,
        services: &[ShopService],
        timeout: Duration,
    ) -> Result<(), ShopError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut waiting: Vec<ShopService> = services.to_vec();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for service in waiting {
                let subject = subjects::discovery(DiscoveryVerb::Ping, Some(service.name()), None);
                let answered =
                    tokio::time::timeout(Duration::from_millis(500), nats.request(subject, Vec::new().into())).await;
                if !matches!(answered, Ok(Ok(_))) {
                    still.push(service);
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<&str> = waiting.iter().map(|service| service.name()).collect();
                return Err(ShopError::NotServing {
                    services: names.join(", "),
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }
}
