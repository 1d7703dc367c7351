//! A steady load of orders: [`OrderDriver`] places orders at a fixed rate,
//! alternating the two modes (orchestrated by the fulfilment workflow,
//! choreographed by events; `orders.place` starts either), and retries
//! each placement until the orders service acknowledges it, as a real
//! client would while parts of the shop are down or restarting. What it
//! placed ([`Placements`]) is what the books are judged against afterwards
//! (`invariants`). The fault tests and `soa soak` share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use contracts::envelope::ErrorCode;
use contracts::shop::orders::{self, PlaceOrder};
use contracts::shop::{FlowMode, LineItem, Money, OrderId};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::unit_interval;
use super::invariants::Placements;
use crate::runtime::{CallError, CallOptions, ServiceClient};

/// How one load runs.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// Order ids are `<prefix>-<n>`; a new prefix per run keeps runs apart on one server.
    pub prefix: String,
    /// Orders started per second (both modes together).
    pub rate_per_second: f64,
    /// Products to order from (plenty of each should be on the shelves).
    pub skus: Vec<String>,
    /// A product nobody has; a share [`DriveConfig::out_of_stock_rate`] of the orders asks for it.
    pub sold_out: Option<String>,
    /// The share of orders that ask for the sold-out product.
    pub out_of_stock_rate: f64,
    /// Seeds what each order holds.
    pub seed: u64,
    /// How long one `place` call waits for its reply.
    pub call_timeout: Duration,
    /// How long an order is placed again before the driver gives up on it.
    pub give_up_after: Duration,
}

impl Default for DriveConfig {
    fn default() -> Self {
        Self {
            prefix: "load".to_owned(),
            rate_per_second: 20.0,
            skus: Vec::new(),
            sold_out: None,
            out_of_stock_rate: 0.0,
            seed: 1,
            call_timeout: Duration::from_secs(5),
            give_up_after: Duration::from_secs(120),
        }
    }
}

/// Counters of a running load, readable while it runs.
#[derive(Debug, Default)]
pub struct DriveProgress {
    started: AtomicU64,
    acknowledged: AtomicU64,
    attempts: AtomicU64,
}

impl DriveProgress {
    /// Orders started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Orders acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// `place` calls so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }
}

/// A load of orders running in the background until [`OrderDriver::finish`].
#[derive(Debug)]
pub struct OrderDriver {
    stop: CancellationToken,
    progress: Arc<DriveProgress>,
    task: JoinHandle<Placements>,
}

impl OrderDriver {
    /// Starts placing orders on `nats` as `config` says.
    pub fn start(nats: async_nats::Client, config: DriveConfig) -> Result<Self, ShopError> {
        let orders = ServiceClient::new(nats, orders::contract()?).with_options(CallOptions {
            timeout: config.call_timeout,
            // The driver retries itself, for as long as it is told to.
            max_attempts: 1,
            ..CallOptions::default()
        });
        let stop = CancellationToken::new();
        let progress = Arc::new(DriveProgress::default());
        let task = tokio::spawn(drive(orders, config, stop.clone(), Arc::clone(&progress)));
        Ok(Self { stop, progress, task })
    }

    /// Its counters.
    pub fn progress(&self) -> &DriveProgress {
        &self.progress
    }

    /// Waits until at least `count` orders are acknowledged; false after `timeout`.
    pub async fn wait_acknowledged(&self, count: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.progress.acknowledged() < count {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Stops starting orders, waits for those under way to be acknowledged
    /// (or given up on), and returns what was placed.
    pub async fn finish(self) -> Placements {
        self.stop.cancel();
        match self.task.await {
            Ok(placements) => placements,
            Err(error) => {
                tracing::error!(error = %error, "The order driver failed.");
                Placements::default()
            }
        }
    }
}

/// How one order's placement ended.
enum Placed {
    Acknowledged(String, FlowMode),
    GivenUp(String),
}

async fn drive(
    orders: ServiceClient,
    config: DriveConfig,
    stop: CancellationToken,
    progress: Arc<DriveProgress>,
) -> Placements {
    let period = Duration::from_secs_f64(1.0 / config.rate_per_second.max(0.001));
    let mut ticks = tokio::time::interval(period);
    // A late tick is not made up for with a burst: the rate stays steady.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let config = Arc::new(config);
    let mut placing = JoinSet::new();
    let mut placements = Placements::default();
    let mut number = 0_u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
            Some(done) = placing.join_next() => {
                record(&mut placements, done);
                continue;
            }
        }
        number += 1;
        progress.started.fetch_add(1, Ordering::Relaxed);
        let order = order(&config, number);
        placing.spawn(place(orders.clone(), order, Arc::clone(&config), Arc::clone(&progress)));
    }
    while let Some(done) = placing.join_next().await {
        record(&mut placements, done);
    }
    placements.attempts = progress.attempts();
    placements
}

fn record(placements: &mut Placements, done: Result<Placed, tokio::task::JoinError>) {
    match done {
        Ok(Placed::Acknowledged(id, mode)) => placements.acknowledged.push((id, mode)),
        Ok(Placed::GivenUp(id)) => placements.unacknowledged.push(id),
        Err(error) => tracing::error!(error = %error, "A placement task failed."),
    }
}

/// Places `order` until it is acknowledged, a refusal says placing it again
/// cannot help, or the driver's patience runs out.
async fn place(
    orders: ServiceClient,
    order: PlaceOrder,
    config: Arc<DriveConfig>,
    progress: Arc<DriveProgress>,
) -> Placed {
    let began = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        progress.attempts.fetch_add(1, Ordering::Relaxed);
        let error = match orders.call::<orders::Place>(&order).await {
            Ok(_) => {
                progress.acknowledged.fetch_add(1, Ordering::Relaxed);
                return Placed::Acknowledged(order.order_id.0, order.mode);
            }
            Err(error) => error,
        };
        let hopeless = matches!(
            &error,
            CallError::Service { body, .. }
                if matches!(body.code, ErrorCode::ValidationFailed | ErrorCode::Conflict)
        ) || matches!(error, CallError::Codec(_) | CallError::UnknownOperation { .. });
        if hopeless || began.elapsed() > config.give_up_after {
            tracing::warn!(order = %order.order_id.0, error = %error, "Gave up placing an order.");
            return Placed::GivenUp(order.order_id.0);
        }
        tracing::debug!(order = %order.order_id.0, error = %error, "Placing an order failed; placing it again.");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Order number `number` of the load: its mode alternates, its contents
/// are drawn from the seed.
fn order(config: &DriveConfig, number: u64) -> PlaceOrder {
    let id = format!("{}-{number}", config.prefix);
    let draw = |what: &str| unit_interval(config.seed, what, &id);
    let pick = |what: &str, count: usize| ((draw(what) * count as f64) as usize).min(count.saturating_sub(1));
    let mode = if number.is_multiple_of(2) {
        FlowMode::Orchestrated
    } else {
        FlowMode::Choreographed
    };
    let line = |sku: &str, quantity: u32, cents: u64| LineItem {
        sku: sku.to_owned(),
        quantity,
        unit_price: Money {
            amount_cents: cents,
            currency: "EUR".to_owned(),
        },
    };
    let mut items = Vec::new();
    if !config.skus.is_empty() {
        let lines = 1 + pick("drive/lines", 2);
        for index in 0..lines {
            let sku = &config.skus[pick(&format!("drive/sku/{index}"), config.skus.len())];
            if items.iter().any(|item: &LineItem| &item.sku == sku) {
                continue;
            }
            let quantity = 1 + pick(&format!("drive/quantity/{index}"), 3) as u32;
            let cents = 199 + 100 * pick(&format!("drive/price/{index}"), 50) as u64;
            items.push(line(sku, quantity, cents));
        }
    }
    if let Some(sold_out) = &config.sold_out
        && (items.is_empty() || draw("drive/out-of-stock") < config.out_of_stock_rate)
    {
        items.push(line(sold_out, 1, 999));
    }
    items.sort_by(|a, b| a.sku.cmp(&b.sku));
    PlaceOrder {
        customer_id: format!("cust-{}", pick("drive/customer", 500)),
        order_id: OrderId(id),
        items,
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_alternate_modes_and_are_the_same_for_the_same_seed() {
        let config = DriveConfig {
            prefix: "t".to_owned(),
            skus: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            sold_out: Some("gone".to_owned()),
            out_of_stock_rate: 0.2,
            ..DriveConfig::default()
        };
        let orders: Vec<PlaceOrder> = (1..=200).map(|n| order(&config, n)).collect();
        assert_eq!(orders[0].order_id.0, "t-1");
        assert_eq!(orders[0].mode, FlowMode::Choreographed);
        assert_eq!(orders[1].mode, FlowMode::Orchestrated);
        assert!(
            orders
                .iter()
                .all(|order| !order.items.is_empty() && order.items.len() <= 3)
        );
        let short = orders
            .iter()
            .filter(|order| order.items.iter().any(|item| item.sku == "gone"))
            .count();
        assert!((10..80).contains(&short), "{short} of 200 ask for the sold-out product");
        assert_eq!(orders, (1..=200).map(|n| order(&config, n)).collect::<Vec<_>>());
    }
}
