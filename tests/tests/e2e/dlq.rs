//! `soa dlq list|show|replay` against a real nats-server: a durable consumer
//! whose handler refuses a poison event dead-letters it; the commands list
//! and show it (reason and original headers), and once the handler is fixed
//! a replay processes it once and removes it from the dead letters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use bus_services::runtime::{ConsumerConfig, EventContext, EventError, EventPublisher, ServiceError, consume};
use contracts::shop::inventory::{self, StockReserved};
use contracts::shop::{OrderId, StockLine};
use contracts::{SchemaSet, subjects};
use registry::cli::Exit;
use serde_json::Value;
use tests::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{assert_exit, soa, soa_at};

fn reserved(order: &str) -> StockReserved {
    StockReserved {
        order_id: OrderId(order.to_owned()),
        reservation_id: format!("res-{order}"),
        items: vec![StockLine {
            sku: "sku-kettle".into(),
            quantity: 1,
        }],
        mode: None,
        customer_id: None,
        total: None,
    }
}

/// What the handler processed (succeeded on): order id and the event's id
/// as the handler saw it.
type Processed = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Starts the durable consumer `shipping` of `inventory#reserved`; while
/// `broken` is set its handler refuses `ord-poison` with a business error
/// (dead-lettered at once).
async fn consumer(
    server: &NatsServer,
    broken: Arc<AtomicBool>,
) -> (Processed, CancellationToken, JoinHandle<Result<(), EventError>>) {
    let processed: Processed = Arc::default();
    let shutdown = CancellationToken::new();
    let nats = server.client().await.unwrap();
    let config = ConsumerConfig {
        max_deliveries: 3,
        backoff: vec![Duration::from_millis(20)],
        ack_wait: Duration::from_secs(2),
        ..ConsumerConfig::new("shipping")
    };
    let task = tokio::spawn({
        let processed = processed.clone();
        let shutdown = shutdown.clone();
        async move {
            consume::<inventory::Reserved, _, _>(
                nats,
                inventory::contract().unwrap(),
                config,
                move |ctx: EventContext, event: StockReserved| {
                    let order = event.order_id.0;
                    let result = if order == "ord-poison" && broken.load(Ordering::SeqCst) {
                        Err(ServiceError::conflict("the carrier refuses this parcel"))
                    } else {
                        processed
                            .lock()
                            .unwrap()
                            .push((order, ctx.message_id().map(str::to_owned)));
                        Ok(())
                    };
                    async move { result }
                },
                shutdown,
            )
            .await
        }
    });
    let js = jetstream::new(server.client().await.unwrap());
    let stream_name = subjects::event_stream(&"inventory".parse().unwrap(), 1);
    for _ in 0..200 {
        if let Ok(stream) = js.get_stream(&stream_name).await
            && stream.consumer_info("shipping").await.is_ok()
        {
            return (processed, shutdown, task);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the consumer did not start");
}

/// Waits up to 5 s for `condition`.
async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the condition did not come true in 5 s");
}

/// How many dead letters the stream holds.
async fn dead_letter_count(server: &NatsServer) -> u64 {
    let js = jetstream::new(server.client().await.unwrap());
    let mut stream = js.get_stream(subjects::DEAD_LETTER_STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

fn poison_count(processed: &Processed) -> usize {
    processed
        .lock()
        .unwrap()
        .iter()
        .filter(|(order, _)| *order == "ord-poison")
        .count()
}

#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let server = NatsServer::start().await.unwrap();
    let url = server.url();

    // No dead-letter stream yet: an empty listing, and nothing to show.
    let run = soa_at(&url, &["dlq", "list"]).await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.contains("No dead letters."), "{}", run.stdout);

    let broken = Arc::new(AtomicBool::new(true));
    let (processed, shutdown, task) = consumer(&server, broken.clone()).await;
    let publisher = EventPublisher::new(
        server.client().await.unwrap(),
        inventory::contract().unwrap(),
        &SchemaSet::default(),
    )
    .await
    .unwrap();
    publisher
        .publish_with_id::<inventory::Reserved>("poison-1", &reserved("ord-poison"))
        .await
        .unwrap();
    publisher
        .publish::<inventory::Reserved>(&reserved("ord-healthy"))
        .await
        .unwrap();
    wait_for(|| {
        processed
            .lock()
            .unwrap()
            .iter()
            .any(|(order, _)| order == "ord-healthy")
    })
    .await;
    for _ in 0..200 {
        if dead_letter_count(&server).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(dead_letter_count(&server).await, 1);

    // list: one line with the subject, consumer, deliveries and reason.
    let run = soa_at(&url, &["dlq", "list"]).await;
    assert_exit(&run, Exit::Success);
    let line = run
        .stdout
        .lines()
        .find(|line| line.contains("shop.inventory.v1.reserved"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains("shipping"), "{line}");
    assert!(line.contains("CONFLICT"), "{line}");
    let sequence = line.split_whitespace().next().unwrap().to_owned();
    assert!(sequence.parse::<u64>().is_ok(), "{line}");
    // Listing consumed nothing, and the filters narrow it.
    assert_eq!(dead_letter_count(&server).await, 1);
    let run = soa_at(&url, &["dlq", "list", "--consumer", "billing", "--json"]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(
        serde_json::from_str::<Value>(&run.stdout).unwrap(),
        Value::Array(vec![])
    );
    let run = soa_at(
        &url,
        &[
            "dlq",
            "list",
            "--stream",
            "SOA_EVENTS_INVENTORY_V1",
            "--consumer",
            "shipping",
            "--json",
        ],
    )
    .await;
    assert_exit(&run, Exit::Success);
    let listed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["consumer"], "shipping");
    assert_eq!(listed[0]["deliveries"], 1);

    // show: the reason, the original headers and the payload, pretty.
    let run = soa_at(&url, &["dlq", "show", &sequence]).await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.contains("the carrier refuses this parcel"), "{}", run.stdout);
    assert!(run.stdout.contains("Soa-Contract: inventory@1.2.0"), "{}", run.stdout);
    assert!(run.stdout.contains("Soa-Event: reserved"), "{}", run.stdout);
    assert!(run.stdout.contains("\"order_id\": \"ord-poison\""), "{}", run.stdout);
    let run = soa_at(&url, &["dlq", "show", &sequence, "--json"]).await;
    assert_exit(&run, Exit::Success);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["original_subject"], "shop.inventory.v1.reserved");
    assert_eq!(shown["headers"]["Soa-Event"][0], "reserved");
    assert_eq!(shown["payload"]["order_id"], "ord-poison");
    // The id it was published with is kept beside the dead letter's own.
    assert_eq!(shown["headers"]["Soa-Dead-Letter-Message-Id"][0], "poison-1");

    // A dry run changes nothing.
    let run = soa_at(&url, &["dlq", "replay", "--all", "--dry-run"]).await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.contains("would replay"), "{}", run.stdout);
    assert_eq!(dead_letter_count(&server).await, 1);

    // Fixed: the replay is processed once and the dead letter is gone.
    broken.store(false, Ordering::SeqCst);
    let run = soa_at(&url, &["dlq", "replay", &sequence]).await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout
            .contains(&format!("replayed {sequence} to shop.inventory.v1.reserved")),
        "{}",
        run.stdout
    );
    wait_for(|| poison_count(&processed) == 1).await;
    assert_eq!(dead_letter_count(&server).await, 0);
    // The handler sees the replay under the event's original id, so a
    // processed-key record counts it as the same event.
    let seen = processed.lock().unwrap().clone();
    let replayed = seen.iter().find(|(order, _)| order == "ord-poison").unwrap();
    assert_eq!(replayed.1.as_deref(), Some("poison-1"));
    // The original stream stored it again, under an id derived from the original.
    let js = jetstream::new(server.client().await.unwrap());
    let events = js
        .get_stream(subjects::event_stream(&"inventory".parse().unwrap(), 1))
        .await
        .unwrap();
    let stored = events.get_raw_message(3).await.unwrap();
    let id = bus_services::wire::header(Some(&stored.headers), "Nats-Msg-Id").unwrap();
    assert_eq!(id, format!("poison-1/replay/{sequence}"));
    assert_eq!(
        bus_services::wire::header(Some(&stored.headers), "Soa-Replay-Of"),
        Some("poison-1")
    );
    assert_eq!(
        bus_services::wire::header(Some(&stored.headers), "Soa-Event"),
        Some("reserved")
    );
    assert_eq!(
        bus_services::wire::header(Some(&stored.headers), "Soa-Dead-Letter-Reason"),
        None
    );
    let run = soa_at(&url, &["dlq", "list"]).await;
    assert!(run.stdout.contains("No dead letters."), "{}", run.stdout);

    // Replayed twice: the second finds no dead letter, and nothing runs again.
    let run = soa_at(&url, &["dlq", "replay", &sequence]).await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stderr.contains(&format!("no dead letter {sequence}")),
        "{}",
        run.stderr
    );
    let run = soa_at(&url, &["dlq", "replay", "--all"]).await;
    assert_exit(&run, Exit::Success);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(poison_count(&processed), 1, "the replay was processed once");

    // Bad sequences and missing ones.
    let run = soa_at(&url, &["dlq", "show", "999"]).await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stderr.contains("no dead letter 999"), "{}", run.stderr);
    let run = soa_at(&url, &["dlq", "show", "seven"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("invalid value 'seven'"), "{}", run.stderr);
    let run = soa_at(&url, &["dlq", "replay"]).await;
    assert_exit(&run, Exit::Usage);
    let run = soa_at(&url, &["dlq", "list", "--consumer", "a.b"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("no stream or consumer name"), "{}", run.stderr);

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_a_server_dlq_exits_2() {
    let run = soa(&["--nats-url", "nats://127.0.0.1:1", "dlq", "list"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("without a NATS connection"), "{}", run.stderr);
}
