//! The demo shop against a real nats-server, both ways: orchestrated by the
//! fulfilment workflow and choreographed by events. The books (every
//! service's bucket, through `audit`) are checked after each run.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use bus_services::runtime::{EventPublisher, ServiceClient};
use bus_services::shop::{Audit, PaymentStatus, ReservationStatus, ShipmentStatus, ShopConfig, ShopService};
use contracts::orchestrator_api::{ListInstancesRequest, ops as orchestrator_ops};
use contracts::shop::inventory::{self, GetStock, ReserveStock};
use contracts::shop::notifications::{self, ListNotifications, NotificationKind};
use contracts::shop::payments::{self, ChargePayment, RefundPayment};
use contracts::shop::{FailureReason, FlowMode, Money, OrderId, OrderStatus, StockLine};
use futures::future::join_all;
use tests::shop::{RunningShop, SOLD_OUT, STOCKED, ShopBus, order, shop_config, shop_events, wait_settled};
use tests::workflows::orchestrator_client;

/// How long a test waits for its orders to settle.
const SETTLE: Duration = Duration::from_secs(90);

fn kettle_and_mugs(id: &str, mode: FlowMode) -> contracts::shop::orders::PlaceOrder {
    order(id, mode, &[("sku-kettle", 1, 2999), ("sku-mug", 2, 850)])
}

/// A config that fails some orders, the same ones in both modes.
fn failing_config(seed: u64, decline_rate: f64, shipping_failure_rate: f64) -> ShopConfig {
    ShopConfig {
        decline_rate,
        shipping_failure_rate,
        outcome_prefixes: vec!["chor-".to_owned(), "orch-".to_owned()],
        ..shop_config(seed)
    }
}

fn mode_prefix(mode: FlowMode) -> &'static str {
    match mode {
        FlowMode::Choreographed => "chor-",
        FlowMode::Orchestrated => "orch-",
    }
}

#[tokio::test]
async fn an_order_is_fulfilled_both_ways_and_every_service_shows_it() {
    tests::init_tracing();
    let bus = ShopBus::start(shop_config(1)).await.unwrap();
    for (id, mode) in [("chor-1", FlowMode::Choreographed), ("orch-1", FlowMode::Orchestrated)] {
        let accepted = bus.place(&kettle_and_mugs(id, mode)).await.unwrap();
        assert_eq!(accepted.status, OrderStatus::Placed);
        assert_eq!(accepted.total.amount_cents, 2999 + 2 * 850);
    }
    let books = bus.settled(&["chor-1", "orch-1"], SETTLE).await.unwrap();

    for id in ["chor-1", "orch-1"] {
        let audit = &books.orders[id];
        assert_eq!(audit.status, Some(OrderStatus::Completed), "{audit:#?}");
        // Once completed, its stock left the shelves.
        assert_eq!(audit.reservation, Some(ReservationStatus::Shipped));
        assert_eq!((audit.held_units, audit.shipped_units), (0, 3));
        assert_eq!(audit.payment, Some(PaymentStatus::Charged));
        assert_eq!((audit.charged_cents, audit.refunded_cents), (4699, 0));
        assert_eq!(audit.shipment, Some(ShipmentStatus::Scheduled));
        assert_eq!(audit.notifications, [NotificationKind::OrderConfirmed]);
        assert!(audit.latency_ms().is_some());
    }
    assert_eq!(books.orders["orch-1"].mode, Some(FlowMode::Orchestrated));
    assert!(books.orders["orch-1"].instance.is_some());
    assert_eq!(books.orders["chor-1"].instance, None);
    assert_eq!(books.orders["chor-1"].outcome(), books.orders["orch-1"].outcome());
    for (sku, shipped) in [("sku-kettle", 2), ("sku-mug", 4)] {
        let stock = &books.stock[sku];
        assert_eq!(
            (stock.held, stock.shipped, stock.on_hand),
            (0, shipped, tests::shop::PLENTY - shipped),
            "{stock:?}"
        );
        assert!(stock.holds.is_empty(), "{stock:?}");
    }

    // Each service answers for its own part.
    let orders = bus
        .orders
        .call::<contracts::shop::orders::Get>(&contracts::shop::orders::GetOrder {
            order_id: OrderId("orch-1".to_owned()),
        })
        .await
        .unwrap();
    assert_eq!(orders.status, OrderStatus::Completed);
    let inventory_client = ServiceClient::new(bus.nats.clone(), inventory::contract().unwrap());
    let mugs = inventory_client
        .call::<inventory::Stock>(&GetStock {
            sku: "sku-mug".to_owned(),
        })
        .await
        .unwrap();
    // The four mugs shipped: off the shelves, no longer reserved.
    assert_eq!((mugs.available, mugs.reserved), (tests::shop::PLENTY - 4, 0));
    let notifications_client = ServiceClient::new(bus.nats.clone(), notifications::contract().unwrap());
    let sent = notifications_client
        .call::<notifications::List>(&ListNotifications {
            order_id: Some(OrderId("chor-1".to_owned())),
        })
        .await
        .unwrap();
    assert_eq!(sent.notifications.len(), 1);
    assert_eq!(sent.notifications[0].message, "Your order is on its way.");
    assert_eq!(sent.notifications[0].customer_id, "cust-chor-1");

    // The choreography is one flow: every event carries the order id and
    // the trace of the place call; the orchestrated order's events all say
    // so, and set none of the choreography's reactions off.
    let events = shop_events(&bus.nats).await.unwrap();
    let chor: Vec<_> = events
        .iter()
        .filter(|event| event.correlation_id.as_deref() == Some("chor-1"))
        .collect();
    let subjects: Vec<&str> = chor.iter().map(|event| event.subject.as_str()).collect();
    for subject in [
        "shop.orders.v1.placed",
        "shop.inventory.v1.reserved",
        "shop.payments.v1.charged",
        "shop.shipping.v1.scheduled",
        "shop.orders.v1.completed",
        "shop.notifications.v1.sent",
    ] {
        assert_eq!(
            subjects.iter().filter(|seen| **seen == subject).count(),
            1,
            "{subject} in {subjects:?}"
        );
    }
    assert_eq!(chor.len(), 6, "{subjects:?}");
    let trace = chor[0].trace_id.clone();
    assert!(trace.is_some());
    assert!(chor.iter().all(|event| event.trace_id == trace), "{chor:#?}");
    let orch: Vec<_> = events
        .iter()
        .filter(|event| event.correlation_id.as_deref() == Some("orch-1") || event.payload["order_id"] == "orch-1")
        .collect();
    let orch_subjects: Vec<&str> = orch.iter().map(|event| event.subject.as_str()).collect();
    assert_eq!(orch_subjects.len(), 6, "{orch_subjects:?}");
    for subject in &subjects {
        assert!(
            orch_subjects.contains(subject),
            "{subject} missing in {orch_subjects:?}"
        );
    }
    assert!(
        orch.iter()
            .all(|event| event.payload["mode"] == "orchestrated" && event.correlation_id.as_deref() == Some("orch-1")),
        "{orch:#?}"
    );
    assert!(
        chor.iter().all(|event| event.payload["mode"] == "choreographed"),
        "{chor:#?}"
    );
    bus.stop().await.unwrap();
}

/// Ids `<n>` whose order (in either mode) completes, is declined, and
/// cannot be shipped, under `config`.
fn pick_outcomes(config: &ShopConfig) -> (String, String, String) {
    let find = |wanted: &dyn Fn(&str) -> bool| {
        (0..1000)
            .map(|n| n.to_string())
            .find(|n| wanted(&format!("chor-{n}")))
            .unwrap()
    };
    let ok = find(&|id| !config.declines(id) && !config.shipping_fails(id));
    let declined = find(&|id| config.declines(id));
    let unshippable = find(&|id| !config.declines(id) && config.shipping_fails(id));
    (ok, declined, unshippable)
}

#[tokio::test]
async fn each_failure_is_undone_both_ways() {
    tests::init_tracing();
    let config = failing_config(42, 0.3, 0.3);
    let (ok, declined, unshippable) = pick_outcomes(&config);
    let bus = ShopBus::start(config).await.unwrap();
    let mut ids = Vec::new();
    for mode in [FlowMode::Choreographed, FlowMode::Orchestrated] {
        let prefix = mode_prefix(mode);
        for n in [&ok, &declined, &unshippable] {
            ids.push(format!("{prefix}{n}"));
            bus.place(&kettle_and_mugs(&format!("{prefix}{n}"), mode))
                .await
                .unwrap();
        }
        // Out of stock: the kettle is taken first (SKU order), then given back.
        let id = format!("{prefix}{ok}-short");
        bus.place(&order(&id, mode, &[("sku-kettle", 1, 2999), (SOLD_OUT, 1, 100)]))
            .await
            .unwrap();
        ids.push(id);
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let books = bus.settled(&id_refs, SETTLE).await.unwrap();

    for prefix in ["chor-", "orch-"] {
        let audit = &books.orders[&format!("{prefix}{ok}")];
        assert_eq!(audit.status, Some(OrderStatus::Completed), "{audit:#?}");

        let audit = &books.orders[&format!("{prefix}{ok}-short")];
        assert_eq!(audit.status, Some(OrderStatus::Cancelled), "{audit:#?}");
        assert_eq!(audit.failure, Some(FailureReason::OutOfStock));
        assert_eq!(audit.reservation, Some(ReservationStatus::Refused));
        assert_eq!(audit.held_units, 0);
        assert_eq!(audit.payment, None);
        assert_eq!(audit.shipment, None);
        assert_eq!(audit.notifications, [NotificationKind::OrderCancelled]);

        let audit = &books.orders[&format!("{prefix}{declined}")];
        assert_eq!(audit.status, Some(OrderStatus::Cancelled), "{audit:#?}");
        assert_eq!(audit.failure, Some(FailureReason::PaymentDeclined));
        assert_eq!(audit.reservation, Some(ReservationStatus::Released));
        assert_eq!(audit.held_units, 0);
        assert_eq!(audit.payment, Some(PaymentStatus::Declined));
        assert_eq!(audit.charged_cents, 0);
        assert_eq!(audit.shipment, None);
        assert_eq!(audit.notifications, [NotificationKind::OrderCancelled]);

        let audit = &books.orders[&format!("{prefix}{unshippable}")];
        assert_eq!(audit.status, Some(OrderStatus::Cancelled), "{audit:#?}");
        assert_eq!(audit.failure, Some(FailureReason::ShippingUnavailable));
        assert_eq!(audit.reservation, Some(ReservationStatus::Released));
        assert_eq!(audit.held_units, 0);
        assert_eq!(audit.payment, Some(PaymentStatus::Refunded));
        assert_eq!((audit.charged_cents, audit.refunded_cents), (4699, 4699));
        assert_eq!(audit.shipment, Some(ShipmentStatus::Failed));
        assert_eq!(audit.notifications, [NotificationKind::OrderCancelled]);
    }
    for n in [&ok, &declined, &unshippable] {
        assert_eq!(
            books.orders[&format!("chor-{n}")].outcome(),
            books.orders[&format!("orch-{n}")].outcome()
        );
    }
    // Only the one completed order per mode took stock, and it shipped.
    assert_eq!(
        (books.stock["sku-kettle"].held, books.stock["sku-kettle"].shipped),
        (0, 2)
    );
    assert_eq!(books.stock[SOLD_OUT].held, 0);
    // The compensation events went out in both modes: a refund and releases.
    let events = shop_events(&bus.nats).await.unwrap();
    for mode in ["choreographed", "orchestrated"] {
        let count = |subject: &str| {
            events
                .iter()
                .filter(|event| event.subject == subject && event.payload["mode"] == mode)
                .count()
        };
        assert_eq!(count("shop.payments.v1.refunded"), 1, "{mode}");
        assert_eq!(count("shop.inventory.v1.released"), 2, "{mode}");
        assert_eq!(count("shop.inventory.v1.out-of-stock"), 1, "{mode}");
    }
    bus.stop().await.unwrap();
}

/// The `n`th order of the seeded set: one to three lines, now and then a
/// product the shop does not have.
/// Orders `chor-0`, `orch-0`, `chor-1`, ...: each seeded order in both modes.
fn seeded_both_ways(count: usize) -> impl Iterator<Item = contracts::shop::orders::PlaceOrder> {
    (0..count).flat_map(|n| {
        [FlowMode::Choreographed, FlowMode::Orchestrated]
            .map(|mode| seeded_order(n, mode))
            .into_iter()
    })
}

fn seeded_order(n: usize, mode: FlowMode) -> contracts::shop::orders::PlaceOrder {
    let id = format!("{}{n}", mode_prefix(mode));
    let mut lines: Vec<(&str, u32, u64)> = (0..=n % 3)
        .map(|line| {
            let sku = STOCKED[(n + line) % STOCKED.len()];
            (
                sku,
                u32::try_from(1 + (n + line) % 4).unwrap(),
                500 + 100 * (n as u64 % 7),
            )
        })
        .collect();
    if n % 9 == 4 {
        lines.push((SOLD_OUT, 1, 1999));
    }
    order(&id, mode, &lines)
}

#[tokio::test]
async fn the_same_seeded_orders_end_alike_in_both_modes() {
    tests::init_tracing();
    const ORDERS: usize = 50;
    let bus = ShopBus::start(failing_config(7, 0.2, 0.2)).await.unwrap();
    let placed = join_all(seeded_both_ways(ORDERS).map(|order| {
        let bus = &bus;
        async move { bus.place(&order).await.map(|_| order.order_id.0) }
    }))
    .await;
    let ids: Vec<String> = placed.into_iter().map(Result::unwrap).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let books = bus.settled(&id_refs, SETTLE).await.unwrap();

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..ORDERS {
        let chor = &books.orders[&format!("chor-{n}")];
        let orch = &books.orders[&format!("orch-{n}")];
        assert_eq!(chor.outcome(), orch.outcome(), "order {n}: {chor:#?}\n{orch:#?}");
        let kind = match (chor.status, chor.failure) {
            (Some(OrderStatus::Completed), _) => "completed".to_owned(),
            (_, Some(failure)) => format!("{failure:?}"),
            other => format!("{other:?}"),
        };
        *tally.entry(kind).or_default() += 1;
    }
    // The seed gives every kind of ending, so the comparison means something.
    for kind in ["completed", "OutOfStock", "PaymentDeclined", "ShippingUnavailable"] {
        assert!(tally.get(kind).is_some_and(|count| *count > 0), "{tally:?}");
    }
    bus.stop().await.unwrap();
}

/// Waits until the durable `consumer` of `stream` has nothing left to
/// deliver or to be acknowledged.
async fn wait_consumed(nats: &async_nats::Client, stream: &str, consumer: &str) {
    let js = jetstream::new(nats.clone());
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut handle: jetstream::consumer::PullConsumer = js
            .get_stream(stream)
            .await
            .unwrap()
            .get_consumer(consumer)
            .await
            .unwrap();
        let info = handle.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumer} still busy: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_repeated_event_and_a_retried_call_never_charge_twice() {
    tests::init_tracing();
    let bus = ShopBus::start(shop_config(3)).await.unwrap();
    let payments_client = ServiceClient::new(bus.nats.clone(), payments::contract().unwrap());
    let amount = Money {
        amount_cents: 1234,
        currency: "EUR".to_owned(),
    };
    let charge = ChargePayment {
        order_id: OrderId("direct-1".to_owned()),
        customer_id: "cust-1".to_owned(),
        amount: amount.clone(),
    };

    // Ten charges of one order at once, each with its own idempotency key.
    let receipts = join_all((0..10).map(|attempt| {
        let client = payments_client.with_idempotency_key(format!("direct-1/charge/{attempt}"));
        let charge = charge.clone();
        async move { client.call::<payments::Charge>(&charge).await }
    }))
    .await;
    let receipts: Vec<_> = receipts.into_iter().map(Result::unwrap).collect();
    assert!(receipts.iter().all(|receipt| *receipt == receipts[0]), "{receipts:#?}");
    // Two refunds with different keys give back once.
    for key in ["direct-1/refund/a", "direct-1/refund/b"] {
        let refund = payments_client
            .with_idempotency_key(key)
            .call::<payments::Refund>(&RefundPayment {
                order_id: OrderId("direct-1".to_owned()),
            })
            .await
            .unwrap();
        assert_eq!(refund.amount, amount);
    }
    // A charge with another amount is a conflict, not a second charge.
    let other = payments_client
        .call::<payments::Charge>(&ChargePayment {
            amount: Money {
                amount_cents: 99,
                currency: "EUR".to_owned(),
            },
            ..charge.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), contracts::ErrorCode::Conflict, "{other}");

    // An effect done before its event was handled (a delivery that charged and
    // died before publishing): the flow finds the charge and does not repeat it.
    payments_client
        .call::<payments::Charge>(&ChargePayment {
            order_id: OrderId("chor-pre".to_owned()),
            customer_id: "cust-chor-pre".to_owned(),
            amount: Money {
                amount_cents: 2999 + 2 * 850,
                currency: "EUR".to_owned(),
            },
        })
        .await
        .unwrap();
    bus.place(&kettle_and_mugs("chor-pre", FlowMode::Choreographed))
        .await
        .unwrap();
    // An orchestrated order placed again with another idempotency key starts one workflow.
    let orch = kettle_and_mugs("orch-again", FlowMode::Orchestrated);
    bus.place(&orch).await.unwrap();
    bus.orders
        .with_idempotency_key("a-different-key")
        .call::<contracts::shop::orders::Place>(&orch)
        .await
        .unwrap();
    bus.place(&kettle_and_mugs("chor-again", FlowMode::Choreographed))
        .await
        .unwrap();
    let settled = ["chor-pre", "orch-again", "chor-again"];
    let before = bus.settled(&settled, SETTLE).await.unwrap();

    // The events of chor-again, published again under new message ids so
    // JetStream cannot drop them as duplicates: every reaction runs again.
    let events = shop_events(&bus.nats).await.unwrap();
    let of = |subject: &str, order: &str| {
        events
            .iter()
            .find(|event| event.subject == subject && event.correlation_id.as_deref() == Some(order))
            .unwrap()
            .payload
            .clone()
    };
    let republish = [
        (
            contracts::shop::orders::contract().unwrap(),
            "placed",
            "shop.orders.v1.placed",
        ),
        (inventory::contract().unwrap(), "reserved", "shop.inventory.v1.reserved"),
        (payments::contract().unwrap(), "charged", "shop.payments.v1.charged"),
        (
            contracts::shop::shipping::contract().unwrap(),
            "scheduled",
            "shop.shipping.v1.scheduled",
        ),
        (
            contracts::shop::orders::contract().unwrap(),
            "completed",
            "shop.orders.v1.completed",
        ),
    ];
    for (contract, event, subject) in republish {
        let publisher = EventPublisher::new(bus.nats.clone(), contract, &contracts::SchemaSet::default())
            .await
            .unwrap();
        publisher
            .publish_json(event, Some(&format!("again-{event}")), &of(subject, "chor-again"))
            .await
            .unwrap();
    }
    // A `completed` as orders@1.0.0 wrote it (no customer id) cannot be told
    // to anyone, now or on a redelivery: it goes to the dead letters at once.
    let orders_publisher = EventPublisher::new(
        bus.nats.clone(),
        contracts::shop::orders::contract().unwrap(),
        &contracts::SchemaSet::default(),
    )
    .await
    .unwrap();
    orders_publisher
        .publish_json(
            "completed",
            Some("completed-without-customer"),
            &serde_json::json!({"order_id": "ghost-1", "shipment_id": "shp-ghost-1"}),
        )
        .await
        .unwrap();
    for (stream, consumer) in [
        ("SOA_EVENTS_ORDERS_V1", "inventory-orders-placed"),
        ("SOA_EVENTS_INVENTORY_V1", "payments-inventory-reserved"),
        ("SOA_EVENTS_PAYMENTS_V1", "shipping-payments-charged"),
        ("SOA_EVENTS_SHIPPING_V1", "orders-shipping-scheduled"),
        ("SOA_EVENTS_ORDERS_V1", "notifications-orders-completed"),
    ] {
        wait_consumed(&bus.nats, stream, consumer).await;
    }
    let after = wait_settled(&bus.nats, &settled, SETTLE).await.unwrap();
    let dead = jetstream::new(bus.nats.clone())
        .get_stream(contracts::subjects::DEAD_LETTER_STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&contracts::subjects::dead_letter(
            "SOA_EVENTS_ORDERS_V1",
            "notifications-orders-completed",
        ))
        .await
        .unwrap();
    let reason = dead
        .headers
        .get(contracts::envelope::headers::DEAD_LETTER_REASON)
        .unwrap();
    assert!(reason.as_str().contains("names no customer"), "{reason:?}");

    let direct = &after.orders["direct-1"];
    assert_eq!(direct.payment, Some(PaymentStatus::Refunded));
    assert_eq!((direct.charged_cents, direct.refunded_cents), (1234, 1234));
    for id in settled {
        assert_eq!(
            after.orders[id].status,
            Some(OrderStatus::Completed),
            "{:#?}",
            after.orders[id]
        );
        assert_eq!(after.orders[id].charged_cents, 4699);
        assert_eq!(after.orders[id].notifications, [NotificationKind::OrderConfirmed]);
        assert_eq!(after.orders[id].outcome(), before.orders[id].outcome());
    }
    assert_eq!(after.stock, before.stock, "a repeated event took stock again");
    // The repeated reactions published their events again under the first
    // message ids, which JetStream dropped: one of each per order.
    let events = shop_events(&bus.nats).await.unwrap();
    for order in ["chor-pre", "chor-again"] {
        for subject in [
            "shop.inventory.v1.reserved",
            "shop.payments.v1.charged",
            "shop.shipping.v1.scheduled",
            "shop.orders.v1.completed",
            "shop.notifications.v1.sent",
        ] {
            // Ours, republished on purpose, is the second copy of all but `sent`.
            let expected = if order == "chor-again" && subject != "shop.notifications.v1.sent" {
                2
            } else {
                1
            };
            // The direct charge of chor-pre announced itself as orchestrated,
            // under its own message id; the flow's events are the choreography's.
            let found = events
                .iter()
                .filter(|event| {
                    event.subject == subject
                        && event.payload["order_id"] == order
                        && event.payload["mode"] != "orchestrated"
                })
                .count();
            assert_eq!(found, expected, "{subject} of {order}");
        }
    }
    let orchestrator = orchestrator_client(&bus.server).await.unwrap();
    let instances = orchestrator
        .call::<orchestrator_ops::List>(&ListInstancesRequest {
            workflow: Some("fulfilment".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(instances.total, 1, "{instances:#?}");
    bus.stop().await.unwrap();
}

/// A reservation takes its holds before it stores itself: an attempt that
/// stopped in between (a crash) leaves holds that no reservation names. A
/// release of that order finds them and gives them back, and a reservation
/// coming after the release holds nothing either.
#[tokio::test]
async fn a_release_gives_back_holds_that_no_stored_reservation_names() {
    tests::init_tracing();
    let bus = ShopBus::start(shop_config(3)).await.unwrap();
    let js = jetstream::new(bus.nats.clone());
    let stock = js.get_key_value("SHOP_STOCK").await.unwrap();
    // As the stopped attempt left it: 2 mugs held for the order.
    let entry = stock.entry("s.sku-mug").await.unwrap().unwrap();
    let mut mugs: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    mugs["holds"]["crashed-1"] = serde_json::json!({"units": 2, "attempt": "stopped"});
    stock
        .update("s.sku-mug", serde_json::to_vec(&mugs).unwrap().into(), entry.revision)
        .await
        .unwrap();
    let inventory_client = ServiceClient::new(bus.nats.clone(), inventory::contract().unwrap());
    let level = |client: ServiceClient| async move {
        client
            .call::<inventory::Stock>(&GetStock {
                sku: "sku-mug".to_owned(),
            })
            .await
            .unwrap()
    };
    assert_eq!(level(inventory_client.clone()).await.reserved, 2);

    let released = inventory_client
        .call::<inventory::Release>(&inventory::ReleaseStock {
            order_id: OrderId("crashed-1".to_owned()),
        })
        .await
        .unwrap();
    assert!(!released.released, "no stored reservation held anything: {released:?}");
    assert_eq!(level(inventory_client.clone()).await.reserved, 0);
    // A late reservation of the released order takes nothing.
    let late = inventory_client
        .call::<inventory::Reserve>(&ReserveStock {
            order_id: OrderId("crashed-1".to_owned()),
            items: vec![StockLine {
                sku: "sku-mug".to_owned(),
                quantity: 2,
            }],
        })
        .await;
    assert!(late.is_err(), "{late:?}");
    assert_eq!(level(inventory_client).await.reserved, 0);
    bus.stop().await.unwrap();
}

#[tokio::test]
async fn stock_never_goes_below_zero_under_concurrent_orders() {
    tests::init_tracing();
    const ORDERS: usize = 100;
    const SCARCE: u64 = 40;
    let mut config = shop_config(5);
    config.initial_stock.push(("sku-scarce".to_owned(), SCARCE));
    let bus = ShopBus::start(config).await.unwrap();

    // Twenty reservations of one order at once hold its stock once.
    let inventory_client = ServiceClient::new(bus.nats.clone(), inventory::contract().unwrap());
    let reserve = ReserveStock {
        order_id: OrderId("direct-res".to_owned()),
        items: vec![StockLine {
            sku: "sku-teapot".to_owned(),
            quantity: 5,
        }],
    };
    let reservations = join_all((0..20).map(|attempt| {
        let client = inventory_client.with_idempotency_key(format!("direct-res/reserve/{attempt}"));
        let reserve = reserve.clone();
        async move { client.call::<inventory::Reserve>(&reserve).await }
    }))
    .await;
    assert!(reservations.iter().all(Result::is_ok), "{reservations:#?}");

    let quantity_of = |n: usize| u32::try_from(1 + n % 3).unwrap();
    let placed = join_all((0..ORDERS).map(|n| {
        let mode = if n % 2 == 0 {
            FlowMode::Choreographed
        } else {
            FlowMode::Orchestrated
        };
        let order = order(
            &format!("{}{n}", mode_prefix(mode)),
            mode,
            &[("sku-kettle", 1, 2999), ("sku-scarce", quantity_of(n), 500)],
        );
        let bus = &bus;
        async move { bus.place(&order).await.map(|_| (order.order_id.0, quantity_of(n))) }
    }))
    .await;
    let placed: Vec<(String, u32)> = placed.into_iter().map(Result::unwrap).collect();
    let ids: Vec<String> = placed.iter().map(|(id, _)| id.clone()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let books: Audit = bus.settled(&id_refs, SETTLE).await.unwrap();

    let scarce = &books.stock["sku-scarce"];
    assert!(scarce.available() >= 0, "{scarce:?}");
    // Every order has ended: nothing is held, what the completed ones
    // ordered has left the shelves, and no unit twice.
    assert_eq!(scarce.held, 0, "{scarce:?}");
    assert_eq!(scarce.on_hand + scarce.shipped, SCARCE, "{scarce:?}");
    let completed: Vec<_> = ids
        .iter()
        .map(|id| &books.orders[id])
        .filter(|audit| audit.status == Some(OrderStatus::Completed))
        .collect();
    let sold: u64 = placed
        .iter()
        .filter(|(id, _)| books.orders[id].status == Some(OrderStatus::Completed))
        .map(|(_, quantity)| u64::from(*quantity))
        .sum();
    assert_eq!(sold, scarce.shipped, "{scarce:?}");
    assert!(!completed.is_empty() && completed.len() < ORDERS, "{}", completed.len());
    for id in &ids {
        let audit = &books.orders[id];
        if audit.status == Some(OrderStatus::Cancelled) {
            assert_eq!(audit.failure, Some(FailureReason::OutOfStock), "{audit:#?}");
        }
    }
    // Kettles shipped: one per completed order; the teapots of the direct
    // reservation (never completed) held, once.
    assert_eq!(books.stock["sku-kettle"].shipped, completed.len() as u64);
    assert_eq!(books.stock["sku-kettle"].held, 0);
    assert_eq!(books.stock["sku-teapot"].held, 5);
    assert_eq!(books.orders["direct-res"].held_units, 5);
    bus.stop().await.unwrap();
}

#[tokio::test]
async fn a_stopped_service_catches_up_from_its_durable_consumers() {
    tests::init_tracing();
    let server = tests::NatsServer::start().await.unwrap();
    let others = [
        ShopService::Orders,
        ShopService::Inventory,
        ShopService::Shipping,
        ShopService::Notifications,
    ];
    let rest = RunningShop::start_only(&server, shop_config(9), &others).await.unwrap();
    let payments = RunningShop::start_only(&server, shop_config(9), &[ShopService::Payments])
        .await
        .unwrap();
    payments.stop().await.unwrap();

    let nats = server.client().await.unwrap();
    let orders = ServiceClient::new(nats.clone(), contracts::shop::orders::contract().unwrap());
    let ids: Vec<String> = (0..5).map(|n| format!("chor-{n}")).collect();
    for id in &ids {
        orders
            .call::<contracts::shop::orders::Place>(&kettle_and_mugs(id, FlowMode::Choreographed))
            .await
            .unwrap();
    }
    // Without payments the orders wait, reserved and unpaid.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = bus_services::shop::audit(nats.clone()).await.unwrap();
    for id in &ids {
        assert_eq!(waiting.orders[id].status, Some(OrderStatus::Placed));
        assert_eq!(waiting.orders[id].payment, None);
    }

    let payments = RunningShop::start_only(&server, shop_config(9), &[ShopService::Payments])
        .await
        .unwrap();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let books = wait_settled(&nats, &id_refs, SETTLE).await.unwrap();
    for id in &ids {
        assert_eq!(books.orders[id].status, Some(OrderStatus::Completed));
    }
    payments.stop().await.unwrap();
    rest.stop().await.unwrap();
}

/// Two instances of every service share the buckets and the durable
/// consumers, so each remembers values of keys the other then writes: a
/// change decided on a stale value must fail its compare-and-set and be
/// decided again on the value it replaces. Every order is placed twice (once
/// through each instance, most likely), and each reservation is also
/// released and reserved again at once through both.
#[tokio::test]
async fn two_instances_of_every_service_keep_the_books_together() {
    tests::init_tracing();
    const ORDERS: usize = 30;
    let config = failing_config(11, 0.2, 0.2);
    let bus = ShopBus::start(config.clone()).await.unwrap();
    let second = RunningShop::start(&bus.server, config).await.unwrap();

    let placed = join_all(seeded_both_ways(ORDERS).map(|order| {
        let bus = &bus;
        async move {
            let (first, again) = futures::join!(bus.place(&order), bus.place(&order));
            first.and(again).map(|_| order.order_id.0)
        }
    }))
    .await;
    let ids: Vec<String> = placed.into_iter().map(Result::unwrap).collect();

    // Orders of nobody's: each reserved, then released and reserved again
    // through whichever instances answer, many times over.
    let inventory_client = ServiceClient::new(bus.nats.clone(), inventory::contract().unwrap());
    let direct: Vec<String> = (0..5).map(|n| format!("direct-{n}")).collect();
    join_all(direct.iter().map(|id| {
        let client = inventory_client.clone();
        async move {
            let reserve = ReserveStock {
                order_id: OrderId(id.clone()),
                items: vec![StockLine {
                    sku: "sku-mug".to_owned(),
                    quantity: 2,
                }],
            };
            let release = inventory::ReleaseStock {
                order_id: OrderId(id.clone()),
            };
            for round in 0..4 {
                let reserver = client.with_idempotency_key(format!("{id}/reserve/{round}"));
                let (reserved, released) = futures::join!(
                    reserver.call::<inventory::Reserve>(&reserve),
                    client.call::<inventory::Release>(&release)
                );
                assert!(reserved.is_ok() || released.is_ok(), "{reserved:?} {released:?}");
            }
        }
    }))
    .await;

    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let books = bus.settled(&id_refs, SETTLE).await.unwrap();
    for n in 0..ORDERS {
        let chor = &books.orders[&format!("chor-{n}")];
        let orch = &books.orders[&format!("orch-{n}")];
        assert_eq!(chor.outcome(), orch.outcome(), "order {n}: {chor:#?}\n{orch:#?}");
    }
    // A released reservation holds nothing, whatever came after it.
    for id in &direct {
        assert_eq!(books.orders[id].held_units, 0, "{:#?}", books.orders[id]);
    }
    assert_eq!(books.stock["sku-mug"].held, 0, "{:?}", books.stock["sku-mug"]);
    second.stop().await.unwrap();
    bus.stop().await.unwrap();
}
