//! The read model after a demo run: once the order view has applied every
//! event on the streams, each order of the run as the view tells it is
//! compared with what the owning services hold (the audit), and the view's
//! lag behind the events is taken from its `stats`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bus_services::order_view::differences;
use bus_services::runtime::{CallOptions, ServiceClient};
use bus_services::shop::Audit;
use contracts::shop::FlowMode;
use contracts::shop::order_view::{self, GetViewStats, LagSummary, ListOrderViews, OrderView, ViewStats};
use serde::Serialize;

use super::orders::OrderSet;

/// How long the demo waits for the view to catch up with the streams.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The mismatches listed in the report at most (all are counted).
const MAX_LISTED: usize = 20;

/// What `report.json` says of the read model.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct OrderViewReport {
    /// The lag of every event the view applied live during the run (both
    /// modes together): apply time minus the time JetStream stored it.
    #[serde(flatten)]
    pub lag: LagSummary,
    /// The same per mode of the order the event was about.
    pub by_mode: BTreeMap<String, LagSummary>,
    /// Copies of facts already known (nothing changed).
    pub duplicates: u64,
    /// Events the view could not read.
    pub dead_letters: u64,
    /// Whether the view had applied every stream up to its last message
    /// when it was compared.
    pub caught_up: bool,
    /// How long the demo waited for that, ms.
    pub waited_ms: u64,
    /// Orders of this run compared with the owning services' records.
    pub orders_checked: usize,
    /// Differences between the view and the owning services (none expected).
    pub mismatch_count: usize,
    /// The first of them, one sentence each.
    pub mismatches: Vec<String>,
}

/// Waits for the view to catch up, reads it and compares it with `audit`.
pub(crate) async fn check(nats: &async_nats::Client, set: &OrderSet, audit: &Audit) -> anyhow::Result<OrderViewReport> {
    let view = ServiceClient::new(nats.clone(), order_view::contract()?).with_options(CallOptions {
        timeout: Duration::from_secs(10),
        max_attempts: 3,
        ..CallOptions::default()
    });
    let began = Instant::now();
    let stats: ViewStats = loop {
        let stats = view
            .call::<order_view::Stats>(&GetViewStats {})
            .await
            .context("asking the order view for its figures")?;
        if stats.caught_up || began.elapsed() > CATCH_UP {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let waited_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut views: BTreeMap<String, OrderView> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = view
            .call::<order_view::List>(&ListOrderViews {
                limit: Some(order_view::MAX_PAGE_SIZE),
                cursor,
                ..ListOrderViews::default()
            })
            .await
            .context("listing the order view")?;
        for order in page.orders {
            views.insert(order.order_id.0.clone(), order);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let prefixes = [set.prefix(FlowMode::Orchestrated), set.prefix(FlowMode::Choreographed)];
    let mut mismatches = Vec::new();
    let mut orders_checked = 0;
    for (order, owned) in &audit.orders {
        if !prefixes.iter().any(|prefix| order.starts_with(prefix.as_str())) {
            continue;
        }
        orders_checked += 1;
        match views.get(order) {
            Some(seen) => mismatches.extend(differences(seen, owned)),
            None => mismatches.push(format!("{order}: missing from the view")),
        }
    }
    let mismatch_count = mismatches.len();
    mismatches.truncate(MAX_LISTED);
    Ok(OrderViewReport {
        lag: stats.lag,
        by_mode: BTreeMap::from([
            ("orchestrated".to_owned(), stats.orchestrated),
            ("choreographed".to_owned(), stats.choreographed),
        ]),
        duplicates: stats.duplicates,
        dead_letters: stats.dead_letters,
        caught_up: stats.caught_up,
        waited_ms,
        orders_checked,
        mismatch_count,
        mismatches,
    })
}
