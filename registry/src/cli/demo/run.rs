//! Running the orders of one mode: placing them with bounded concurrency,
//! counting every message on the bus meanwhile, following each order to its
//! end, and killing or restarting parts on the way when asked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bus_services::runtime::{CallOptions, ServiceClient};
use bus_services::shop::ShopService;
use contracts::shop::FlowMode;
use contracts::shop::orders::Place;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::orders::OrderSet;
use super::system::System;

/// How long the demo waits for the last orders once no order has ended for a while.
const QUIET_LIMIT: Duration = Duration::from_secs(30);

/// Faults to inject while a mode runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// Kill the orchestrator (and start a new one) this often.
    pub kill_orchestrator_every: Option<Duration>,
    /// Stop this service for a while, then start it again.
    pub restart_service: Option<ShopService>,
}

/// A time when part of the system was down.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Outage {
    /// What was down.
    pub what: String,
    /// From, ms since the mode's first order.
    pub from_ms: u64,
    /// Until.
    pub until_ms: u64,
}

/// What one mode's run measured on the bus; the orders' own states come
/// from the audit afterwards.
#[derive(Debug, Clone)]
pub(crate) struct ModeRun {
    /// The mode.
    pub mode: FlowMode,
    /// From the first order placed to the last one ended (or given up on).
    pub elapsed: Duration,
    /// Messages seen on the bus while the mode ran, by kind; `None` when
    /// they were not counted.
    pub messages: Option<BTreeMap<String, u64>>,
    /// Orders whose end was seen, and when (ms since the first order).
    pub ended_at_ms: Vec<u64>,
    /// Places refused or unanswered.
    pub place_errors: u64,
    /// What was down and when.
    pub outages: Vec<Outage>,
}

/// Places every order of `set` in `mode` with at most `concurrency` in
/// flight and waits until each has ended (or nothing ends for a while).
pub(crate) async fn run_mode(
    system: &Arc<Mutex<System>>,
    set: &OrderSet,
    mode: FlowMode,
    concurrency: usize,
    faults: &Faults,
    count_messages: bool,
    progress: bool,
) -> anyhow::Result<ModeRun> {
    let (nats, counter_config) = {
        let system = system.lock().await;
        (system.nats.clone(), system.connect_config("soa-demo-counter"))
    };
    let count = set.templates.len();
    // Every message on the bus, counted by kind on a connection of its own,
    // made with the same credentials and TLS options as every part.
    let watcher = bus_services::connection::connect(&counter_config)
        .await
        .context("connecting the message counter")?;
    // Not counting: nothing is subscribed to every subject.
    let mut everything = if count_messages {
        Some(watcher.subscribe(">").await?)
    } else {
        None
    };
    let ends_subject = match mode {
        FlowMode::Orchestrated => "shop.fulfilment.v1.finished",
        FlowMode::Choreographed => "shop.orders.v1.*",
    };
    let mut ends = watcher.subscribe(ends_subject).await?;
    watcher.flush().await?;
    let counts: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let counting = {
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let Some(everything) = everything.as_mut() else { return };
            while let Some(message) = everything.next().await {
                let kind = kind_of(message.subject.as_str());
                if let Ok(mut counts) = counts.lock() {
                    *counts.entry(kind.to_owned()).or_default() += 1;
                }
            }
        })
    };

    let bar = if progress {
        let bar = ProgressBar::new(count as u64);
        bar.set_style(
            ProgressStyle::with_template("   {prefix:>13} [{bar:40}] {pos}/{len} ended, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(mode_name(mode));
        bar
    } else {
        ProgressBar::hidden()
    };
    let began = Instant::now();
    let orders = ServiceClient::new(
        nats.clone(),
        contracts::shop::contracts()?
            .into_iter()
            .find(|document| document.service.as_str() == "orders")
            .context("the shop has no orders contract")?,
    )
    .with_options(CallOptions {
        timeout: Duration::from_secs(10),
        ..CallOptions::default()
    });
    let place_errors = Arc::new(AtomicU64::new(0));
    let placing = {
        let set = set.clone();
        let place_errors = Arc::clone(&place_errors);
        tokio::spawn(async move {
            let requests = set.templates.iter().map(|template| set.order(template, mode));
            futures::stream::iter(requests)
                .for_each_concurrent(concurrency.max(1), |order| {
                    let orders = orders.clone();
                    let place_errors = Arc::clone(&place_errors);
                    async move {
                        if let Err(error) = orders.call::<Place>(&order).await {
                            tracing::warn!(order = %order.order_id.0, error = %error, "Placing an order failed.");
                            place_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
        })
    };
    let stop_faults = CancellationToken::new();
    let outages: Arc<std::sync::Mutex<Vec<Outage>>> = Arc::default();
    let faulting = tokio::spawn(inject(
        Arc::clone(system),
        mode,
        faults.clone(),
        began,
        Arc::clone(&outages),
        stop_faults.clone(),
    ));

    let prefix = set.prefix(mode);
    let mut seen = std::collections::HashSet::new();
    let mut ended_at_ms = Vec::with_capacity(count);
    let mut last_end = Instant::now();
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_millis(500), ends.next()).await;
        match next {
            Ok(Some(message)) => {
                if let Some(order) = ended_order(mode, message.subject.as_str(), &message.payload)
                    && order.starts_with(&prefix)
                    && seen.insert(order)
                {
                    ended_at_ms.push(u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX));
                    last_end = Instant::now();
                    bar.inc(1);
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
        if count_messages {
            let messages: u64 = counts.lock().map(|counts| counts.values().sum()).unwrap_or(0);
            bar.set_message(format!("{messages} messages on the bus"));
        }
        if last_end.elapsed() > QUIET_LIMIT && placing.is_finished() {
            tracing::warn!(
                ended = seen.len(),
                count,
                "No order ended for a while; the rest count as stuck."
            );
            break;
        }
    }
    let elapsed = began.elapsed();
    bar.finish_and_clear();
    stop_faults.cancel();
    if let Err(error) = faulting.await {
        tracing::warn!(error = %error, "The fault injector failed.");
    }
    if let Err(error) = placing.await {
        tracing::warn!(error = %error, "Placing orders failed.");
    }
    // The last messages (acks of the last ends) arrive a moment later.
    watcher.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    counting.abort();
    let messages = count_messages.then(|| counts.lock().map(|counts| counts.clone()).unwrap_or_default());
    let outages = outages.lock().map(|outages| outages.clone()).unwrap_or_default();
    Ok(ModeRun {
        mode,
        elapsed,
        messages,
        ended_at_ms,
        place_errors: place_errors.load(Ordering::Relaxed),
        outages,
    })
}

/// The order an end message is about, if it is one.
fn ended_order(mode: FlowMode, subject: &str, payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match mode {
        FlowMode::Orchestrated => value.get("correlation_id")?.as_str().map(str::to_owned),
        FlowMode::Choreographed => {
            if subject.ends_with(".completed") || subject.ends_with(".cancelled") {
                value.get("order_id")?.as_str().map(str::to_owned)
            } else {
                None
            }
        }
    }
}

/// Kills the orchestrator every so often (orchestrated mode), and stops one
/// service for a while (both modes), recording when each was down.
async fn inject(
    system: Arc<Mutex<System>>,
    mode: FlowMode,
    faults: Faults,
    began: Instant,
    outages: Arc<std::sync::Mutex<Vec<Outage>>>,
    stop: CancellationToken,
) {
    let since = |instant: Instant| u64::try_from(instant.duration_since(began).as_millis()).unwrap_or(u64::MAX);
    let record = |what: String, from: Instant, until: Instant| {
        if let Ok(mut outages) = outages.lock() {
            outages.push(Outage {
                what,
                from_ms: since(from),
                until_ms: since(until),
            });
        }
    };
    let restart = async {
        let Some(service) = faults.restart_service else { return };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let down = Instant::now();
        system.lock().await.stop_service(service).await;
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
        if let Err(error) = system.lock().await.start_service(service).await {
            tracing::error!(error = %format!("{error:#}"), "Could not start the service again.");
        }
        record(format!("{} restarted", service.name()), down, Instant::now());
    };
    let kills = async {
        let Some(every) = faults
            .kill_orchestrator_every
            .filter(|_| mode == FlowMode::Orchestrated)
        else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let killed = Instant::now();
            let (ack_wait, nats) = {
                let mut system = system.lock().await;
                system.kill_orchestrator();
                let restarted = system.start_orchestrator().await;
                if let Err(error) = restarted {
                    tracing::error!(error = %format!("{error:#}"), "Could not start the orchestrator again.");
                }
                (system.ack_wait(), system.nats.clone())
            };
            // Its work comes back after the ack wait: until then, those orders wait.
            record("orchestrator killed".to_owned(), killed, killed + ack_wait);
            // The next kill counts from when the new one answers, so it gets to work.
            wait_until_answering(&nats, &stop).await;
        }
    };
    tokio::join!(restart, kills);
}

/// Returns once an orchestrator with a loaded workflow answers (or on `stop`).
async fn wait_until_answering(nats: &async_nats::Client, stop: &CancellationToken) {
    let Ok(contract) = contracts::orchestrator_api::contract() else {
        return;
    };
    let client = ServiceClient::new(nats.clone(), contract).with_options(CallOptions {
        timeout: Duration::from_secs(1),
        max_attempts: 1,
        ..CallOptions::default()
    });
    while !stop.is_cancelled() {
        let definitions = client
            .call::<contracts::orchestrator_api::ops::Definitions>(&Default::default())
            .await;
        if definitions.is_ok_and(|answer| !answer.definitions.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The kind of the order view's own messages: its bucket's writes, its
/// consumers' acks and pulls, its queries (its deliveries arrive on inboxes
/// like everyone's and count as replies).
pub(crate) const READ_MODEL: &str = "read model";

/// The kind of message a subject carries, for the per-order count.
fn kind_of(subject: &str) -> &'static str {
    if subject.starts_with("$KV.SOA_ORDER_VIEW.")
        || subject.starts_with("shop.order-view.")
        || (subject.starts_with("$JS.") && subject.contains(".order-view-"))
    {
        READ_MODEL
    } else if subject.starts_with("_INBOX.") {
        "replies"
    } else if subject.starts_with("$JS.ACK.") {
        "jetstream acks"
    } else if subject.starts_with("$KV.") {
        "kv writes"
    } else if subject.starts_with("$JS.") {
        "jetstream api"
    } else if subject.starts_with("$SRV.") || subject.starts_with("soa.registry.") {
        "discovery and registry"
    } else if subject.starts_with("soa.wf.") {
        "orchestrator work"
    } else if subject.starts_with("shop.") {
        "service messages"
    } else {
        "other"
    }
}

/// The mode's name, as printed.
pub(crate) fn mode_name(mode: FlowMode) -> &'static str {
    match mode {
        FlowMode::Orchestrated => "orchestrated",
        FlowMode::Choreographed => "choreographed",
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}
