//! What poison events cost the healthy orders, in one run on one nats-server.
//!
//! `cargo bench -p tests --bench poison` runs the whole shop (choreographed
//! orders, as in `soa demo`) in rounds; each round places the same number of
//! orders twice, once on clean streams and once while poison events go into
//! them (one per 20 orders, in turn: a `placed` that breaks its schema, a
//! `reserved` whose `Soa-Event` header lies, and a `reserved` of an order
//! nobody placed, which payments retries with backoff for its 30 deliveries
//! before dead-lettering it). It prints healthy orders per second for both
//! and their ratio; the goal is a drop of less than 10% (ratio ≥ 0.90).
//! Each round waits until its poison is all dead letters before the next
//! clean run, so no clean run pays for an earlier run's retries.
//! Orders are kept at most `OPEN` at a time, so the figure is a sustained
//! rate, not how fast a backlog can be queued.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use contracts::envelope::headers;
use contracts::shop::inventory::StockReserved;
use contracts::shop::{FlowMode, OrderId, StockLine};
use futures::StreamExt;
use tests::shop::{STOCKED, ShopBus, order, shop_config};
use tokio::sync::{Mutex, Semaphore};

/// Orders per measured run.
const ORDERS: usize = 2_000;
/// Orders open (placed, not yet finished) at once.
const OPEN: usize = 64;
/// One poison event per this many orders.
const POISON_EVERY: usize = 20;
/// Clean/poisoned pairs.
const ROUNDS: usize = 5;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let bus = ShopBus::start(shop_config(7)).await?;
    let js = jetstream::new(bus.nats.clone());
    println!(
        "poison: {ORDERS} choreographed orders per run, {OPEN} open at a time, one poison event per {POISON_EVERY} orders while poisoned"
    );
    // Warm up: connections, consumers, the first reads of each key.
    measure(&bus, &js, "warm", 200, false).await?;
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let clean = measure(&bus, &js, &format!("r{round}c"), ORDERS, false).await?;
        let poisoned_run = format!("r{round}p");
        let poisoned = measure(&bus, &js, &poisoned_run, ORDERS, true).await?;
        // The next clean run starts only once this run's poison is all dead
        // letters: a never-placed order's event is retried for about a minute.
        let drained = Instant::now();
        drain(&js, &poisoned_run, ORDERS / POISON_EVERY).await?;
        let ratio = poisoned.rate / clean.rate;
        ratios.push(ratio);
        println!(
            "round {round}: clean {:.0} orders/s (p99 {:.0} ms), poisoned {:.0} orders/s (p99 {:.0} ms), ratio {ratio:.3}; poison all dead-lettered {:.1} s after the run",
            clean.rate,
            clean.p99_ms,
            poisoned.rate,
            poisoned.p99_ms,
            drained.elapsed().as_secs_f64()
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "poisoned / clean healthy throughput: median {median:.3} (min {:.3}, max {:.3}); goal >= 0.90",
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let books = bus_services::shop::audit(bus.nats.clone()).await?;
    let violations = books.violations();
    println!("books: {} orders, {} violations", books.orders.len(), violations.len());
    if !violations.is_empty() {
        return Err(format!("the books do not balance: {violations:#?}").into());
    }
    bus.stop().await
}

/// One measured run's figures.
struct Figures {
    rate: f64,
    p99_ms: f64,
}

/// Places `count` choreographed orders with ids `<run>-<n>`, at most [`OPEN`]
/// unfinished at a time, injecting poison when `poisoned`; returns healthy
/// orders per second (first placement to last end) and the p99 from
/// placement to end.
async fn measure(
    bus: &ShopBus,
    js: &jetstream::Context,
    run: &str,
    count: usize,
    poisoned: bool,
) -> Result<Figures, BoxError> {
    let open = Arc::new(Semaphore::new(OPEN));
    let placed_at: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let mut ends = bus.nats.subscribe("shop.orders.v1.>").await?;
    let prefix = format!("{run}-");
    let watcher = {
        let (open, placed_at, prefix) = (open.clone(), placed_at.clone(), prefix.clone());
        tokio::spawn(async move {
            let mut finished = HashSet::new();
            let mut latencies = Vec::with_capacity(count);
            while finished.len() < count {
                let Some(message) = ends.next().await else { break };
                if !(message.subject.ends_with(".completed") || message.subject.ends_with(".cancelled")) {
                    continue;
                }
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
                    continue;
                };
                let Some(id) = event["order_id"].as_str() else { continue };
                if id.starts_with(&prefix) && finished.insert(id.to_owned()) {
                    if let Some(at) = placed_at.lock().await.get(id) {
                        latencies.push(at.elapsed());
                    }
                    open.add_permits(1);
                }
            }
            (Instant::now(), latencies)
        })
    };
    let started = Instant::now();
    for index in 0..count {
        open.acquire().await?.forget();
        if poisoned && index % POISON_EVERY == POISON_EVERY / 2 {
            inject(js, run, index / POISON_EVERY).await?;
        }
        let id = format!("{prefix}{index}");
        let sku = STOCKED[index % STOCKED.len()];
        let order = order(&id, FlowMode::Choreographed, &[(sku, 1, 1_250)]);
        placed_at.lock().await.insert(id, Instant::now());
        let orders = bus.orders.clone();
        tokio::spawn(async move {
            if let Err(error) = orders.call::<contracts::shop::orders::Place>(&order).await {
                eprintln!("placing {} failed: {error}", order.order_id.0);
            }
        });
    }
    let (ended, mut latencies) = tokio::time::timeout(Duration::from_secs(300), watcher)
        .await
        .map_err(|_| format!("{run}: orders did not finish within 300 s"))??;
    latencies.sort();
    let p99 = latencies
        .get(latencies.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    Ok(Figures {
        rate: count as f64 / ended.duration_since(started).as_secs_f64(),
        p99_ms: p99.as_secs_f64() * 1_000.0,
    })
}

/// Waits until each of the `count` poison events of `run` is a dead letter
/// (found by the original message id the dead letter keeps).
async fn drain(js: &jetstream::Context, run: &str, count: usize) -> Result<(), BoxError> {
    let wanted: HashSet<String> = (0..count).map(|n| format!("poison-{run}-{n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = HashSet::new();
    let mut next = 1;
    loop {
        let mut stream = js.get_stream(contracts::subjects::DEAD_LETTER_STREAM).await?;
        let last = stream.info().await?.state.last_sequence;
        while next <= last {
            if let Ok(message) = stream.get_raw_message(next).await
                && let Some(id) = bus_services::wire::header(Some(&message.headers), headers::DEAD_LETTER_MESSAGE_ID)
                && wanted.contains(id)
            {
                seen.insert(id.to_owned());
            }
            next += 1;
        }
        if seen.len() == wanted.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{run}: only {} of {count} poison events dead-lettered in 180 s",
                seen.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Publishes poison event number `n` of `run` straight to JetStream, past
/// the runtime's validation, as a broken or hostile producer would.
async fn inject(js: &jetstream::Context, run: &str, n: usize) -> Result<(), BoxError> {
    let ghost = |order: String| StockReserved {
        order_id: OrderId(order.clone()),
        reservation_id: format!("res-{order}"),
        items: vec![StockLine {
            sku: STOCKED[0].to_owned(),
            quantity: 1,
        }],
        mode: Some(FlowMode::Choreographed),
        customer_id: None,
        total: None,
    };
    let (subject, contract, event, payload) = match n % 3 {
        0 => (
            "shop.orders.v1.placed",
            "orders@1.2.0",
            "placed",
            br#"{"order_id": 42, "items": "none"}"#.to_vec(),
        ),
        1 => (
            "shop.inventory.v1.reserved",
            "inventory@1.2.0",
            "released",
            serde_json::to_vec(&ghost(format!("ghost-spoofed-{run}-{n}")))?,
        ),
        _ => (
            "shop.inventory.v1.reserved",
            "inventory@1.2.0",
            "reserved",
            serde_json::to_vec(&ghost(format!("ghost-{run}-{n}")))?,
        ),
    };
    let mut map = HeaderMap::new();
    map.insert(headers::CONTRACT, contract);
    map.insert(headers::EVENT, event);
    map.insert(headers::MESSAGE_ID, format!("poison-{run}-{n}").as_str());
    js.publish_with_headers(subject, map, payload.into()).await?.await?;
    Ok(())
}
