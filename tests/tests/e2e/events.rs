//! Events over JetStream against a real nats-server: de-duplication by
//! message id, validation on publish, durable consumers, retries, dead
//! letters, propagation and the processed-key record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use bus_services::runtime::{
    ConsumerConfig, EventContext, EventError, EventPublisher, ProcessedKeys, Propagation, ServiceError, TraceContext,
    consume,
};
use bus_services::wire::CorrelationId;
use contracts::shop::inventory::{self, StockReserved};
use contracts::shop::{OrderId, StockLine};
use contracts::{SchemaSet, subjects};
use futures::StreamExt;
use serde_json::json;
use tests::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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

type Seen = Arc<Mutex<Vec<(String, u64, Option<String>, String)>>>;

/// Starts a consumer of `inventory#reserved` whose handler records what it
/// saw and answers with `outcome(order_id)`.
async fn consumer(
    server: &NatsServer,
    config: ConsumerConfig,
    outcome: fn(&str) -> Result<(), ServiceError>,
) -> (Seen, CancellationToken, JoinHandle<Result<(), EventError>>) {
    let seen: Seen = Arc::default();
    let shutdown = CancellationToken::new();
    let durable = config.durable_name.clone();
    let nats = server.client().await.unwrap();
    let task = tokio::spawn({
        let seen = seen.clone();
        let shutdown = shutdown.clone();
        async move {
            consume::<inventory::Reserved, _, _>(
                nats,
                inventory::contract().unwrap(),
                config,
                move |ctx: EventContext, event: StockReserved| {
                    seen.lock().unwrap().push((
                        event.order_id.0.clone(),
                        ctx.delivery(),
                        ctx.propagation().correlation_id.as_ref().map(|id| id.to_string()),
                        ctx.propagation().trace.trace_id(),
                    ));
                    let result = outcome(&event.order_id.0);
                    async move { result }
                },
                shutdown,
            )
            .await
        }
    });
    // The consumer is ready once its durable consumer exists (the dead-letter
    // stream is created just before it).
    let js = jetstream::new(server.client().await.unwrap());
    let stream_name = subjects::event_stream(&"inventory".parse().unwrap(), 1);
    for _ in 0..200 {
        if let Ok(stream) = js.get_stream(&stream_name).await
            && stream.consumer_info(&durable).await.is_ok()
        {
            return (seen, shutdown, task);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the consumer {durable} did not start");
}

async fn publisher(server: &NatsServer) -> EventPublisher {
    EventPublisher::new(
        server.client().await.unwrap(),
        inventory::contract().unwrap(),
        &SchemaSet::default(),
    )
    .await
    .unwrap()
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the condition did not come true in 5 s");
}

fn fast(name: &str) -> ConsumerConfig {
    ConsumerConfig {
        max_deliveries: 3,
        backoff: vec![Duration::from_millis(20)],
        ack_wait: Duration::from_secs(2),
        ..ConsumerConfig::new(name)
    }
}

#[tokio::test]
async fn an_event_published_twice_with_one_id_is_delivered_once() {
    let server = NatsServer::start().await.unwrap();
    let publisher = publisher(&server).await;
    let (seen, shutdown, task) = consumer(&server, fast("billing"), |_| Ok(())).await;
    publisher
        .publish_with_id::<inventory::Reserved>("evt-1", &reserved("ord-1"))
        .await
        .unwrap();
    publisher
        .publish_with_id::<inventory::Reserved>("evt-1", &reserved("ord-1"))
        .await
        .unwrap();
    publisher
        .publish::<inventory::Reserved>(&reserved("ord-2"))
        .await
        .unwrap();
    wait_for(|| seen.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let orders: Vec<String> = seen.lock().unwrap().iter().map(|(order, ..)| order.clone()).collect();
    assert_eq!(orders, vec!["ord-1", "ord-2"]);
    let js = jetstream::new(server.client().await.unwrap());
    let mut stream = js
        .get_stream(subjects::event_stream(&"inventory".parse().unwrap(), 1))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_events_are_not_published() {
    let server = NatsServer::start().await.unwrap();
    let publisher = publisher(&server).await;
    let error = publisher
        .publish_json(
            "reserved",
            None,
            &json!({"order_id": "ord-1", "reservation_id": 5, "items": []}),
        )
        .await
        .unwrap_err();
    let EventError::Invalid(failure) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(failure.details[0].pointer, "/reservation_id");
    assert!(matches!(
        publisher
            .publish_json("teleported", None, &json!({}))
            .await
            .unwrap_err(),
        EventError::UnknownEvent { .. }
    ));
}

/// The dead letters stored for a consumer, with their headers.
async fn dead_letters(server: &NatsServer, expected: usize) -> Vec<async_nats::jetstream::Message> {
    let js = jetstream::new(server.client().await.unwrap());
    let mut stream = js.get_stream(subjects::DEAD_LETTER_STREAM).await.unwrap();
    for _ in 0..200 {
        if stream.info().await.unwrap().state.messages >= expected as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(expected)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut letters = Vec::new();
    while let Some(message) = messages.next().await {
        letters.push(message.unwrap());
    }
    letters
}

fn header<'a>(message: &'a async_nats::jetstream::Message, name: &str) -> Option<&'a str> {
    bus_services::wire::header(message.headers.as_ref(), name)
}

#[tokio::test]
async fn a_failing_handler_sends_the_event_to_the_dead_letters_after_max_deliveries() {
    let server = NatsServer::start().await.unwrap();
    let publisher = publisher(&server).await;
    let (seen, shutdown, task) = consumer(&server, fast("shipping"), |order| {
        if order == "ord-poison" {
            Err(ServiceError::unavailable("the carrier API is down"))
        } else {
            Ok(())
        }
    })
    .await;
    publisher
        .publish::<inventory::Reserved>(&reserved("ord-poison"))
        .await
        .unwrap();
    publisher
        .publish::<inventory::Reserved>(&reserved("ord-healthy"))
        .await
        .unwrap();
    wait_for(|| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(order, ..)| order == "ord-poison")
            .count()
            == 3
    })
    .await;
    let letters = dead_letters(&server, 1).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject.as_str(), "soa.dlq.SOA_EVENTS_INVENTORY_V1.shipping");
    assert_eq!(
        header(letter, "Soa-Dead-Letter-Subject"),
        Some("shop.inventory.v1.reserved")
    );
    assert_eq!(header(letter, "Soa-Dead-Letter-Consumer"), Some("shipping"));
    assert_eq!(header(letter, "Soa-Dead-Letter-Deliveries"), Some("3"));
    assert!(
        header(letter, "Soa-Dead-Letter-Reason")
            .unwrap()
            .starts_with("UNAVAILABLE"),
        "{:?}",
        header(letter, "Soa-Dead-Letter-Reason")
    );
    assert_eq!(
        header(letter, "Soa-Contract"),
        Some("inventory@1.2.0"),
        "the original headers are kept"
    );
    assert_eq!(header(letter, "Soa-Event"), Some("reserved"));
    let payload: StockReserved = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(payload.order_id.0, "ord-poison");
    let deliveries: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(order, ..)| order == "ord-poison")
        .map(|(_, delivery, ..)| *delivery)
        .collect();
    assert_eq!(deliveries, vec![1, 2, 3]);
    assert!(
        seen.lock().unwrap().iter().any(|(order, ..)| order == "ord-healthy"),
        "healthy events keep flowing"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn business_errors_and_invalid_events_are_dead_lettered_at_once() {
    let server = NatsServer::start().await.unwrap();
    let publisher = publisher(&server).await;
    let (seen, shutdown, task) = consumer(&server, fast("payments"), |order| {
        if order == "ord-refused" {
            Err(ServiceError::conflict("this order was cancelled"))
        } else {
            Ok(())
        }
    })
    .await;
    publisher
        .publish::<inventory::Reserved>(&reserved("ord-refused"))
        .await
        .unwrap();
    // An event that breaks the contract, published behind the runtime's back.
    let raw = server.client().await.unwrap();
    let js = jetstream::new(raw);
    js.publish("shop.inventory.v1.reserved", r#"{"order_id": "ord-bad"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let letters = dead_letters(&server, 2).await;
    assert_eq!(letters.len(), 2);
    let reasons: Vec<&str> = letters
        .iter()
        .map(|letter| header(letter, "Soa-Dead-Letter-Reason").unwrap())
        .collect();
    assert!(reasons[0].starts_with("CONFLICT"), "{reasons:?}");
    assert!(reasons[1].starts_with("VALIDATION_FAILED"), "{reasons:?}");
    assert!(
        letters
            .iter()
            .all(|letter| header(letter, "Soa-Dead-Letter-Deliveries") == Some("1"))
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the invalid event never reached the handler"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn correlation_and_trace_travel_with_the_event() {
    let server = NatsServer::start().await.unwrap();
    let trace = TraceContext::new_root();
    let flow = Propagation {
        correlation_id: Some(CorrelationId::parse("ord-9").unwrap()),
        trace: trace.clone(),
    };
    let publisher = publisher(&server).await.in_flow(&flow);
    let (seen, shutdown, task) = consumer(&server, fast("notifications"), |_| Ok(())).await;
    publisher
        .publish::<inventory::Reserved>(&reserved("ord-9"))
        .await
        .unwrap();
    wait_for(|| !seen.lock().unwrap().is_empty()).await;
    let (_, _, correlation, trace_id) = seen.lock().unwrap()[0].clone();
    assert_eq!(correlation.as_deref(), Some("ord-9"));
    assert_eq!(trace_id, trace.trace_id());
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn processed_keys_say_first_time_once() {
    let server = NatsServer::start().await.unwrap();
    let keys = ProcessedKeys::open(server.client().await.unwrap(), "billing", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(keys.first_time("ord-1/charge").await.unwrap());
    assert!(!keys.first_time("ord-1/charge").await.unwrap());
    let again = ProcessedKeys::open(server.client().await.unwrap(), "billing", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        !again.first_time("ord-1/charge").await.unwrap(),
        "the record is durable, not per process"
    );
    assert!(again.first_time("ord-2/charge").await.unwrap());
}
