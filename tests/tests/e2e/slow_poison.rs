//! Slow and poison messages against a real nats-server: a handler that
//! hangs is timed out without holding up the others (requests and events),
//! and poison events in the shop's streams end as dead letters while orders
//! keep flowing and the books balance. How much a poisoned stream costs the
//! healthy orders is measured by `cargo bench -p tests --bench poison`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bus_services::runtime::{
    CallError, CallOptions, ConsumerConfig, EventContext, EventPublisher, Service, ServiceClient, ServiceConfig,
    ServiceError, consume,
};
use bus_services::shop::ShopConfig;
use bus_services::wire;
use contracts::envelope::headers;
use contracts::shop::inventory::{self, Reservation, ReserveStock, StockReserved};
use contracts::shop::{FlowMode, OrderId, StockLine};
use contracts::{ErrorCode, SchemaSet, subjects};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tests::NatsServer;
use tests::shop::{STOCKED, ShopBus, order, shop_config};
use tokio_util::sync::CancellationToken;

/// The order ids whose handlers never finish.
const HANGING: &str = "hang";

fn reserve(order: &str) -> ReserveStock {
    ReserveStock {
        order_id: OrderId(order.to_owned()),
        items: vec![StockLine {
            sku: "sku-kettle".into(),
            quantity: 1,
        }],
    }
}

fn reserved(order: &str, mode: Option<FlowMode>) -> StockReserved {
    StockReserved {
        order_id: OrderId(order.to_owned()),
        reservation_id: format!("res-{order}"),
        items: reserve(order).items,
        mode,
        customer_id: None,
        total: None,
    }
}

/// Waits for an event handler's future that never ends.
async fn hang() {
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn a_hanging_request_handler_is_timed_out_while_other_requests_are_answered() {
    let server = NatsServer::start().await.unwrap();
    let config = ServiceConfig {
        registration: None,
        handler_timeout: Duration::from_millis(500),
        ..ServiceConfig::default()
    };
    let service = Service::builder(inventory::contract().unwrap())
        .config(config)
        .handle::<inventory::Reserve, _, _>(|_ctx, request: ReserveStock| async move {
            if request.order_id.0.starts_with(HANGING) {
                hang().await;
            }
            Ok(Reservation {
                reservation_id: format!("res-{}", request.order_id.0),
                order_id: request.order_id,
                items: request.items,
            })
        })
        .handle_json("release", |_ctx, request: serde_json::Value| async move {
            Ok(serde_json::json!({"order_id": request["order_id"], "released": true}))
        })
        .handle_json("stock", |_ctx, request: serde_json::Value| async move {
            Ok(serde_json::json!({"sku": request["sku"], "available": 1, "reserved": 0}))
        })
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (service, nats, shutdown) = (service.clone(), server.client().await.unwrap(), shutdown.clone());
        async move { service.run(nats, shutdown).await }
    });
    let client =
        ServiceClient::new(server.client().await.unwrap(), inventory::contract().unwrap()).with_options(CallOptions {
            timeout: Duration::from_secs(5),
            max_attempts: 1,
            ..CallOptions::default()
        });
    // Up once a request is answered.
    let mut up = false;
    for _ in 0..100 {
        if client.call::<inventory::Reserve>(&reserve("probe")).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the service did not come up");

    // Eight hanging requests first, then 200 healthy ones while they hang.
    let hanging: Vec<_> = (0..8)
        .map(|index| {
            let client = client.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let result = client
                    .call::<inventory::Reserve>(&reserve(&format!("{HANGING}-{index}")))
                    .await;
                (result, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let healthy_started = tokio::time::Instant::now();
    let mut healthy: FuturesUnordered<_> = (0..200)
        .map(|index| {
            let client = client.clone();
            async move {
                client
                    .call::<inventory::Reserve>(&reserve(&format!("ord-{index}")))
                    .await
            }
        })
        .collect();
    let mut answered = 0;
    while let Some(result) = healthy.next().await {
        result.unwrap();
        answered += 1;
    }
    assert_eq!(answered, 200);
    let healthy_took = healthy_started.elapsed();

    for call in hanging {
        let (result, took) = call.await.unwrap();
        let Err(CallError::Service { body, .. }) = &result else {
            panic!("a hanging handler was answered with {result:?}");
        };
        assert_eq!(body.code, ErrorCode::Timeout, "{body:?}");
        assert!(body.message.contains("did not finish within"), "{body:?}");
        // Answered at the handler timeout, not at the caller's 5 s.
        assert!(took < Duration::from_secs(4), "answered after {took:?}");
    }
    // The healthy requests did not wait for the hanging ones' timeout
    // (a generous bound: they did not queue behind 500 ms timeouts one by one).
    assert!(
        healthy_took < Duration::from_secs(4),
        "200 healthy requests took {healthy_took:?} beside the hanging ones"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_hanging_event_handler_is_timed_out_and_dead_lettered_while_other_events_flow() {
    let server = NatsServer::start().await.unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let deliveries_of_hanging = Arc::new(Mutex::new(Vec::new()));
    let config = ConsumerConfig {
        max_deliveries: 2,
        backoff: vec![Duration::from_millis(50)],
        ack_wait: Duration::from_secs(5),
        handler_timeout: Duration::from_millis(400),
        max_in_flight: 4,
        ..ConsumerConfig::new("slow-shipping")
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (nats, shutdown) = (server.client().await.unwrap(), shutdown.clone());
        let (handled, hanging) = (handled.clone(), deliveries_of_hanging.clone());
        async move {
            consume::<inventory::Reserved, _, _>(
                nats,
                inventory::contract().unwrap(),
                config,
                move |ctx: EventContext, event: StockReserved| {
                    let (handled, hanging) = (handled.clone(), hanging.clone());
                    async move {
                        if event.order_id.0 == HANGING {
                            hanging.lock().unwrap().push(ctx.delivery());
                            hang().await;
                        }
                        handled.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), ServiceError>(())
                    }
                },
                shutdown,
            )
            .await
        }
    });
    let mut dead_letters = server.client().await.unwrap().subscribe("soa.dlq.>").await.unwrap();
    let publisher = EventPublisher::new(
        server.client().await.unwrap(),
        inventory::contract().unwrap(),
        &SchemaSet::default(),
    )
    .await
    .unwrap();
    publisher
        .publish::<inventory::Reserved>(&reserved(HANGING, None))
        .await
        .unwrap();
    for index in 0..300 {
        publisher
            .publish::<inventory::Reserved>(&reserved(&format!("ord-{index}"), None))
            .await
            .unwrap();
    }
    // Every healthy event is handled while the hanging one takes one of the
    // four slots at a time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handled.load(Ordering::SeqCst) < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 300 healthy events handled",
            handled.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The hanging one was timed out on each delivery, then dead-lettered.
    let letter = tokio::time::timeout(Duration::from_secs(10), dead_letters.next())
        .await
        .expect("no dead letter for the hanging event")
        .unwrap();
    let reason = wire::header(letter.headers.as_ref(), headers::DEAD_LETTER_REASON).unwrap_or_default();
    assert!(reason.starts_with("TIMEOUT"), "{reason}");
    assert!(reason.contains("gave up after 2 deliveries"), "{reason}");
    let payload: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(payload["order_id"], HANGING);
    assert_eq!(*deliveries_of_hanging.lock().unwrap(), vec![1, 2]);
    assert_eq!(
        handled.load(Ordering::SeqCst),
        300,
        "the hanging event was never handled"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// One poison event put on a shop stream, and where.
struct Poison {
    what: &'static str,
    subject: String,
    sequence: u64,
}

/// Publishes `payload` with `headers` straight to JetStream, past the
/// runtime's validation, as a broken or hostile producer would.
async fn inject(
    js: &jetstream::Context,
    what: &'static str,
    subject: String,
    headers: HeaderMap,
    payload: Vec<u8>,
) -> Poison {
    let ack = js
        .publish_with_headers(subject.clone(), headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    Poison {
        what,
        subject,
        sequence: ack.sequence,
    }
}

fn event_headers(contract: &str, event: &str, message_id: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(headers::CONTRACT, contract);
    map.insert(headers::EVENT, event);
    map.insert(headers::MESSAGE_ID, message_id);
    map
}

/// The dead letters stored so far, as `(original subject, original sequence)` → reasons.
async fn dead_letters(js: &jetstream::Context) -> BTreeMap<(String, u64), Vec<String>> {
    let mut letters: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
    let Ok(mut stream) = js.get_stream(subjects::DEAD_LETTER_STREAM).await else {
        return letters;
    };
    let state = stream.info().await.unwrap().state.clone();
    if state.messages == 0 {
        return letters;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let header = |name| {
            wire::header(Some(&message.headers), name)
                .unwrap_or_default()
                .to_owned()
        };
        let original = header(headers::DEAD_LETTER_SEQUENCE).parse().unwrap_or(0);
        letters
            .entry((header(headers::DEAD_LETTER_SUBJECT), original))
            .or_default()
            .push(format!(
                "{}: {}",
                header(headers::DEAD_LETTER_CONSUMER),
                header(headers::DEAD_LETTER_REASON)
            ));
    }
    letters
}

#[tokio::test]
async fn poison_events_become_dead_letters_while_orders_keep_flowing_and_the_books_balance() {
    // Fewer deliveries than the default 30 (about a minute of backoff), so
    // the order nobody placed is given up within the test; still enough for
    // a healthy reaction that waits for its order's earlier event.
    let config = ShopConfig {
        max_deliveries: 12,
        ..shop_config(29)
    };
    let bus = ShopBus::start(config).await.unwrap();
    let js = jetstream::new(bus.nats.clone());
    let placed = "shop.orders.v1.placed".to_owned();
    let reserved_subject = "shop.inventory.v1.reserved".to_owned();

    let orders: Vec<String> = (0..80).map(|index| format!("ord-poison-run-{index}")).collect();
    let mut placing: FuturesUnordered<_> = orders
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let mode = if index % 2 == 0 {
                FlowMode::Choreographed
            } else {
                FlowMode::Orchestrated
            };
            let order = order(id, mode, &[(STOCKED[index % STOCKED.len()], 1, 1_250)]);
            let bus = &bus;
            async move { bus.place(&order).await }
        })
        .collect();
    // Poison goes in while the orders are placed: three kinds, three of each.
    let mut poison = Vec::new();
    for round in 0..3 {
        // Breaks the orders contract: every consumer of `placed` refuses it.
        poison.push(
            inject(
                &js,
                "a placed event that breaks its schema",
                placed.clone(),
                event_headers("orders@1.2.0", "placed", &format!("poison-schema-{round}")),
                br#"{"order_id": 42, "items": "none"}"#.to_vec(),
            )
            .await,
        );
        // Valid, but names another event in its headers.
        let payload = serde_json::to_vec(&reserved(
            &format!("ghost-spoofed-{round}"),
            Some(FlowMode::Choreographed),
        ))
        .unwrap();
        poison.push(
            inject(
                &js,
                "a reserved event whose Soa-Event header says released",
                reserved_subject.clone(),
                event_headers("inventory@1.2.0", "released", &format!("poison-spoofed-{round}")),
                payload,
            )
            .await,
        );
        // Valid and well addressed, for an order nobody placed, and without
        // the payer a choreographed reservation carries: payments cannot
        // know whom to charge, and no retry changes that.
        let payload = serde_json::to_vec(&reserved(&format!("ghost-{round}"), Some(FlowMode::Choreographed))).unwrap();
        poison.push(
            inject(
                &js,
                "a reserved event of an order never placed",
                reserved_subject.clone(),
                event_headers("inventory@1.2.0", "reserved", &format!("poison-ghost-{round}")),
                payload,
            )
            .await,
        );
        for _ in 0..20 {
            placing.next().await.unwrap().unwrap();
        }
    }
    while let Some(accepted) = placing.next().await {
        accepted.unwrap();
    }
    drop(placing);

    // Every healthy order ends and the books balance.
    let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
    let books = bus.settled(&ids, Duration::from_secs(60)).await.unwrap();
    assert!(books.violations().is_empty(), "{:#?}", books.violations());
    for ghost in (0..3).flat_map(|round| [format!("ghost-{round}"), format!("ghost-spoofed-{round}")]) {
        assert!(!books.orders.contains_key(&ghost), "poison became order {ghost}");
    }

    // Every poison event is a dead letter, with the reason its kind calls for.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let letters = loop {
        let letters = dead_letters(&js).await;
        let missing: Vec<&Poison> = poison
            .iter()
            .filter(|poison| !letters.contains_key(&(poison.subject.clone(), poison.sequence)))
            .collect();
        if missing.is_empty() {
            break letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter for: {:?}\nstored: {letters:#?}",
            missing
                .iter()
                .map(|poison| (poison.what, poison.sequence))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let poisoned: BTreeSet<(String, u64)> = poison
        .iter()
        .map(|poison| (poison.subject.clone(), poison.sequence))
        .collect();
    for poison in &poison {
        let reasons = &letters[&(poison.subject.clone(), poison.sequence)];
        let expected = match poison.what {
            what if what.contains("breaks its schema") => "VALIDATION_FAILED",
            what if what.contains("Soa-Event") => "Soa-Event header names \"released\"",
            what if what.contains("never placed") => "does not say who pays or how much",
            _ => "gave up after",
        };
        assert!(
            reasons.iter().all(|reason| reason.contains(expected)),
            "{}: {reasons:#?}",
            poison.what
        );
    }
    // Nothing healthy was dead-lettered.
    let healthy: Vec<_> = letters.keys().filter(|key| !poisoned.contains(*key)).collect();
    assert!(
        healthy.is_empty(),
        "healthy events dead-lettered: {healthy:?}\n{letters:#?}"
    );
    bus.stop().await.unwrap();
}
