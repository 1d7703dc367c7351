//! The order view (the shop's read model) against a real nats-server: built
//! from the shop's events only, in both modes and through every kind of
//! failure, it matches what the owning services hold; a rebuild from the
//! streams gives the same view field for field; a restart loses nothing;
//! and `soa order-view` asks it through its contract.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;

use bus_services::order_view::{OrderViewConfig, OrderViewService, differences};
use bus_services::runtime::{CallOptions, ServiceClient};
use bus_services::shop::{Audit, ShopConfig};
use contracts::ErrorCode;
use contracts::shop::order_view::{
    self, GetOrderView, GetViewStats, ListOrderViews, OrderView, RebuildOrderView, ViewStats, ViewStatus,
};
use contracts::shop::{FailureReason, FlowMode, OrderId};
use registry::cli::Exit;
use tests::shop::{SOLD_OUT, ShopBus, order, shop_config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{assert_exit, soa_at};

/// How long a test waits for orders to settle and the view to catch up.
const SETTLE: Duration = Duration::from_secs(90);

/// The order view running in this process until stopped.
struct RunningView {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), bus_services::order_view::OrderViewError>>,
    client: ServiceClient,
}

impl RunningView {
    async fn start(bus: &ShopBus) -> Self {
        let nats = bus.server.client().await.unwrap();
        let shutdown = CancellationToken::new();
        let view = OrderViewService::new(OrderViewConfig {
            registration: None,
            shutdown_timeout: Duration::from_secs(5),
            ..OrderViewConfig::default()
        });
        let (token, connection) = (shutdown.clone(), nats.clone());
        let task = tokio::spawn(async move { view.run(connection, token).await });
        let client = ServiceClient::new(nats, order_view::contract().unwrap()).with_options(CallOptions {
            timeout: Duration::from_secs(60),
            max_attempts: 1,
            ..CallOptions::default()
        });
        let deadline = tokio::time::Instant::now() + SETTLE;
        while client.call::<order_view::Stats>(&GetViewStats {}).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "the order view never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { shutdown, task, client }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// The figures, once every stream is applied up to its last message.
    async fn caught_up(&self) -> ViewStats {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let stats = self.client.call::<order_view::Stats>(&GetViewStats {}).await.unwrap();
            if stats.caught_up {
                return stats;
            }
            assert!(tokio::time::Instant::now() < deadline, "never caught up: {stats:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every order of the view, page by page (`limit` at a time).
    async fn all(&self, limit: u32) -> BTreeMap<String, OrderView> {
        let mut views = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .client
                .call::<order_view::List>(&ListOrderViews {
                    limit: Some(limit),
                    cursor,
                    ..ListOrderViews::default()
                })
                .await
                .unwrap();
            for view in page.orders {
                assert!(
                    views.insert(view.order_id.0.clone(), view).is_none(),
                    "an order on two pages"
                );
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return views,
            }
        }
    }
}

/// A config that fails some orders, the same ones in both modes.
fn failing_config() -> ShopConfig {
    ShopConfig {
        decline_rate: 0.3,
        shipping_failure_rate: 0.3,
        outcome_prefixes: vec!["chor-".to_owned(), "orch-".to_owned()],
        ..shop_config(42)
    }
}

/// Suffixes (`<n>-<batch>`) whose order, in either mode, completes, is
/// declined, and cannot be shipped.
fn pick_outcomes(config: &ShopConfig, batch: usize) -> [String; 3] {
    let find = |wanted: &dyn Fn(&str) -> bool| {
        (0..1000)
            .map(|n| format!("{n}-{batch}"))
            .find(|n| wanted(&format!("chor-{n}")))
            .unwrap()
    };
    [
        find(&|id| !config.declines(id) && !config.shipping_fails(id)),
        find(&|id| config.declines(id)),
        find(&|id| !config.declines(id) && config.shipping_fails(id)),
    ]
}

fn prefix(mode: FlowMode) -> &'static str {
    match mode {
        FlowMode::Choreographed => "chor-",
        FlowMode::Orchestrated => "orch-",
    }
}

/// Places, in both modes, an order that completes, one declined, one that
/// cannot be shipped and one out of stock; returns their ids.
async fn place_every_outcome(bus: &ShopBus, outcomes: &[String; 3]) -> Vec<String> {
    let mut ids = Vec::new();
    for mode in [FlowMode::Choreographed, FlowMode::Orchestrated] {
        for n in outcomes {
            let id = format!("{}{n}", prefix(mode));
            bus.place(&order(&id, mode, &[("sku-kettle", 1, 2999), ("sku-mug", 2, 850)]))
                .await
                .unwrap();
            ids.push(id);
        }
        let id = format!("{}{}-short", prefix(mode), outcomes[0]);
        bus.place(&order(&id, mode, &[("sku-kettle", 1, 2999), (SOLD_OUT, 1, 100)]))
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// Asserts the view holds every order of `audit` as its owners do.
#[track_caller]
fn assert_matches(views: &BTreeMap<String, OrderView>, audit: &Audit, ids: &[String]) {
    for id in ids {
        let owned = &audit.orders[id];
        let view = views.get(id).unwrap_or_else(|| panic!("{id} missing from the view"));
        let wrong = differences(view, owned);
        assert!(wrong.is_empty(), "{wrong:#?}\nview: {view:#?}\nowners: {owned:#?}");
    }
}

#[tokio::test]
async fn the_view_follows_both_modes_through_every_failure_and_a_rebuild_matches_it() {
    tests::init_tracing();
    let config = failing_config();
    let outcomes = pick_outcomes(&config, 0);
    let bus = ShopBus::start(config).await.unwrap();
    let view = RunningView::start(&bus).await;
    let ids = place_every_outcome(&bus, &outcomes).await;
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let audit = bus.settled(&id_refs, SETTLE).await.unwrap();
    let stats = view.caught_up().await;
    assert_eq!(stats.dead_letters, 0, "{stats:#?}");
    assert!(stats.orchestrated.events >= 4 * 4, "{stats:#?}");
    assert!(stats.choreographed.events >= 4 * 4, "{stats:#?}");
    assert!(stats.lag.lag_p50_ms <= stats.lag.lag_p99_ms, "{stats:#?}");

    let views = view.all(500).await;
    assert_matches(&views, &audit, &ids);
    for mode in [FlowMode::Choreographed, FlowMode::Orchestrated] {
        let id = |suffix: &str| format!("{}{suffix}", prefix(mode));
        let done = &views[&id(&outcomes[0])];
        assert_eq!(done.status, ViewStatus::Completed, "{done:#?}");
        assert_eq!(done.mode, Some(mode));
        assert_eq!(done.total.as_ref().unwrap().amount_cents, 2999 + 2 * 850);
        assert_eq!(done.charged.as_ref().unwrap().amount_cents, 2999 + 2 * 850);
        assert!(done.shipment_id.is_some() && done.carrier.is_some(), "{done:#?}");
        for step in [
            &done.steps.placed,
            &done.steps.reserved,
            &done.steps.charged,
            &done.steps.scheduled,
            &done.steps.completed,
            &done.steps.confirmation_sent,
        ] {
            assert!(step.is_some(), "{done:#?}");
        }
        // Store times: placed before reserved before charged before scheduled.
        assert!(done.steps.placed < done.steps.reserved, "{done:#?}");
        assert!(done.steps.reserved < done.steps.charged, "{done:#?}");
        assert!(done.steps.charged < done.steps.scheduled, "{done:#?}");
        for (suffix, reason) in [
            (outcomes[1].clone(), FailureReason::PaymentDeclined),
            (outcomes[2].clone(), FailureReason::ShippingUnavailable),
            (format!("{}-short", outcomes[0]), FailureReason::OutOfStock),
        ] {
            let cancelled = &views[&id(&suffix)];
            assert_eq!(cancelled.status, ViewStatus::Cancelled, "{cancelled:#?}");
            assert_eq!(cancelled.failure, Some(reason), "{cancelled:#?}");
            assert_eq!(cancelled.mode, Some(mode));
            assert!(cancelled.steps.cancellation_sent.is_some(), "{cancelled:#?}");
        }
        let unshippable = &views[&id(&outcomes[2])];
        assert_eq!(unshippable.refunded, unshippable.charged, "{unshippable:#?}");
        assert_eq!(unshippable.stock_released, Some(true), "{unshippable:#?}");
    }

    // Queries: NOT_FOUND for an unknown order; filters by status and mode;
    // pages of one walk every order once, in order id order.
    let missing = view
        .client
        .call::<order_view::Get>(&GetOrderView {
            order_id: OrderId("never-placed".to_owned()),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound, "{missing}");
    let got = view
        .client
        .call::<order_view::Get>(&GetOrderView {
            order_id: OrderId(ids[0].clone()),
        })
        .await
        .unwrap();
    assert_eq!(got, views[&ids[0]]);
    let completed_orchestrated = view
        .client
        .call::<order_view::List>(&ListOrderViews {
            status: Some(ViewStatus::Completed),
            mode: Some(FlowMode::Orchestrated),
            ..ListOrderViews::default()
        })
        .await
        .unwrap();
    let listed: Vec<&str> = completed_orchestrated
        .orders
        .iter()
        .map(|view| view.order_id.0.as_str())
        .collect();
    assert_eq!(listed, [format!("orch-{}", outcomes[0])]);
    let one_by_one = view.all(1).await;
    assert_eq!(one_by_one, views);
    assert_eq!(one_by_one.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted: Vec<String> = views.keys().cloned().collect();
        sorted.sort();
        sorted
    });

    // A rebuild from the streams gives the same view, field for field.
    let report = view
        .client
        .call::<order_view::Rebuild>(&RebuildOrderView {})
        .await
        .unwrap();
    assert_eq!(report.orders, u64::try_from(views.len()).unwrap(), "{report:#?}");
    assert!(
        report
            .streams
            .iter()
            .all(|stream| stream.applied_through >= stream.last_sequence),
        "{report:#?}"
    );
    let rebuilt = view.all(500).await;
    assert_eq!(rebuilt, views, "the rebuilt view differs from the live one");

    // The same through the command line.
    let url = bus.server.url();
    let run = soa_at(&url, &["order-view", "get", &ids[0]]).await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout
            .starts_with(&format!("Order {}: completed (choreographed)", ids[0])),
        "{}",
        run.stdout
    );
    let run = soa_at(&url, &["order-view", "get", "never-placed"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stderr, "the order view has no order never-placed\n");
    let run = soa_at(
        &url,
        &[
            "order-view",
            "list",
            "--status",
            "cancelled",
            "--mode",
            "orchestrated",
            "--json",
        ],
    )
    .await;
    assert_exit(&run, Exit::Success);
    let page: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(page["orders"].as_array().unwrap().len(), 3, "{page:#}");
    let run = soa_at(&url, &["order-view", "list", "--status", "lost"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("--status \"lost\" is no status"), "{}", run.stderr);
    let run = soa_at(&url, &["order-view", "rebuild"]).await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout.starts_with("Rebuilt the order view from the streams in "),
        "{}",
        run.stdout
    );
    assert_eq!(view.all(500).await, views);
    let run = soa_at(&url, &["order-view", "stats", "--json"]).await;
    assert_exit(&run, Exit::Success);

    view.stop().await;
    bus.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_view_loses_nothing() {
    tests::init_tracing();
    let config = failing_config();
    let (first, second) = (pick_outcomes(&config, 1), pick_outcomes(&config, 2));
    let bus = ShopBus::start(config).await.unwrap();
    let view = RunningView::start(&bus).await;
    let mut ids = place_every_outcome(&bus, &first).await;
    view.stop().await;
    // Orders placed and ended while the view is down.
    ids.extend(place_every_outcome(&bus, &second).await);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let audit = bus.settled(&id_refs, SETTLE).await.unwrap();

    let view = RunningView::start(&bus).await;
    view.caught_up().await;
    let views = view.all(500).await;
    assert_eq!(views.len(), ids.len(), "{:?}", views.keys().collect::<Vec<_>>());
    assert_matches(&views, &audit, &ids);
    // What the restarted view holds is what a rebuild from the streams holds.
    view.client
        .call::<order_view::Rebuild>(&RebuildOrderView {})
        .await
        .unwrap();
    assert_eq!(view.all(500).await, views);
    view.stop().await;
    bus.stop().await.unwrap();
}

/// An event whose headers async-nats cannot read (a value with a lone
/// carriage return) kills the view's connection, and it would again after
/// every restart; the view started again moves it to the dead letters
/// unread, deletes it from its stream, and goes on with what follows.
#[tokio::test]
async fn a_restarted_view_sets_aside_an_event_the_client_library_cannot_read() {
    tests::init_tracing();
    let config = failing_config();
    let outcomes = pick_outcomes(&config, 1);
    let bus = ShopBus::start(config).await.unwrap();
    let view = RunningView::start(&bus).await;
    view.caught_up().await;
    // Only the view reads the notifications' events.
    crate::hostile::raw_publish_lone_carriage_return(&bus.server, "shop.notifications.v1.sent").await;
    // Its connection is dead now: stop it without waiting.
    view.shutdown.cancel();
    view.task.abort();

    let watcher = bus.server.client().await.unwrap();
    let mut dead_letters = watcher.subscribe("soa.dlq.>").await.unwrap();
    watcher.flush().await.unwrap();
    let view = RunningView::start(&bus).await;
    let letter = tokio::time::timeout(Duration::from_secs(20), dead_letters.next())
        .await
        .expect("the unreadable event never reached the dead letters")
        .unwrap();
    let reason = bus_services::wire::header(letter.headers.as_ref(), "Soa-Dead-Letter-Reason").unwrap_or_default();
    assert!(reason.contains("lone carriage return"), "{reason}");
    assert!(
        letter.subject.as_str().ends_with(".order-view-notifications"),
        "{}",
        letter.subject
    );

    let ids = place_every_outcome(&bus, &outcomes).await;
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let audit = bus.settled(&id_refs, SETTLE).await.unwrap();
    view.caught_up().await;
    let views = view.all(500).await;
    assert_matches(&views, &audit, &ids);
    view.stop().await;
    bus.stop().await.unwrap();
}

#[tokio::test]
async fn a_view_consumer_made_by_an_earlier_view_acks_all_at_once_with_a_higher_limit() {
    tests::init_tracing();
    let config = failing_config();
    let outcomes = pick_outcomes(&config, 3);
    let bus = ShopBus::start(config).await.unwrap();
    let js = async_nats::jetstream::new(bus.server.client().await.unwrap());
    let stream = js.get_stream("SOA_EVENTS_ORDERS_V1").await.unwrap();
    // As an earlier view made it: an ack per event, and the server's
    // default limit of unacked deliveries.
    let made = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("order-view-orders".to_owned()),
            description: Some("soabus order view: every event of the stream, from the first".to_owned()),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(5),
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(made.cached_info().config.max_ack_pending < 20_000);

    let view = RunningView::start(&bus).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("order-view-orders").await.unwrap();
        let config = consumer.info().await.unwrap().config.clone();
        if config.max_ack_pending == 20_000 && config.ack_policy == async_nats::jetstream::consumer::AckPolicy::All {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer was never made again: {config:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the view works on it.
    let ids = place_every_outcome(&bus, &outcomes).await;
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let audit = bus.settled(&id_refs, SETTLE).await.unwrap();
    view.caught_up().await;
    assert_matches(&view.all(500).await, &audit, &ids);
    view.stop().await;
    bus.stop().await.unwrap();
}
