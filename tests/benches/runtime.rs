//! The runtime against raw async-nats, in one run on one nats-server, so the
//! ratios are fair on a noisy machine.
//!
//! `cargo bench -p tests --bench runtime` prints, for each round: request-reply
//! throughput with 64 requests in flight and p50 latency with one in flight,
//! raw and through the runtime (validation on both ways); and JetStream event
//! publish throughput with async acks, raw and through the runtime's
//! validating publisher; then the ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bus_services::runtime::{CallOptions, EventPublisher, Service, ServiceClient, ServiceConfig};
use contracts::SchemaSet;
use contracts::shop::inventory::{self, Reservation, ReserveStock, StockReserved};
use contracts::shop::{OrderId, StockLine};
use futures::StreamExt;
use tests::NatsServer;
use tokio_util::sync::CancellationToken;

// The allocator the `soa` binary ships with, for both sides of every
// comparison (glibc's malloc slows allocation-heavy code the most, which
// would flatter the raw baseline).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 64;
const THROUGHPUT_REQUESTS: usize = 20_000;
const LATENCY_REQUESTS: usize = 3_000;
const ROUNDS: usize = 3;
const PUBLISHES: usize = 20_000;
const PUBLISH_WINDOW: usize = 256;

fn request() -> ReserveStock {
    ReserveStock {
        order_id: OrderId("ord-bench-1".into()),
        items: vec![
            StockLine {
                sku: "sku-kettle".into(),
                quantity: 1,
            },
            StockLine {
                sku: "sku-mug".into(),
                quantity: 4,
            },
        ],
    }
}

fn reserved() -> StockReserved {
    StockReserved {
        order_id: OrderId("ord-bench-1".into()),
        reservation_id: "res-ord-bench-1".into(),
        items: request().items,
        mode: None,
        customer_id: None,
        total: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let server = NatsServer::start().await?;
    let shutdown = CancellationToken::new();

    // Raw async-nats: a queue subscription that decodes, builds the same
    // reply and encodes it, with no validation and no headers.
    let raw_server = server.client().await?;
    let mut raw_requests = raw_server.queue_subscribe("bench.raw.reserve", "raw".into()).await?;
    let raw_task = tokio::spawn({
        let nats = raw_server.clone();
        async move {
            while let Some(message) = raw_requests.next().await {
                let Some(reply) = message.reply else { continue };
                let Ok(request) = serde_json::from_slice::<ReserveStock>(&message.payload) else {
                    continue;
                };
                let response = Reservation {
                    reservation_id: format!("res-{}", request.order_id.0),
                    order_id: request.order_id,
                    items: request.items,
                };
                let Ok(payload) = serde_json::to_vec(&response) else {
                    continue;
                };
                let _ = nats.publish(reply, payload.into()).await;
            }
        }
    });

    // The same raw responder, but carrying the headers the runtime puts on
    // every message, both ways: the cost of the headers alone.
    let mut headed_requests = raw_server.queue_subscribe("bench.raw.headed", "raw".into()).await?;
    let headed_task = tokio::spawn({
        let nats = raw_server.clone();
        let headers = runtime_headers();
        async move {
            while let Some(message) = headed_requests.next().await {
                let Some(reply) = message.reply else { continue };
                let Ok(request) = serde_json::from_slice::<ReserveStock>(&message.payload) else {
                    continue;
                };
                let response = Reservation {
                    reservation_id: format!("res-{}", request.order_id.0),
                    order_id: request.order_id,
                    items: request.items,
                };
                let Ok(payload) = serde_json::to_vec(&response) else {
                    continue;
                };
                let _ = nats.publish_with_headers(reply, headers.clone(), payload.into()).await;
            }
        }
    });

    // The same handler through the runtime.
    let service = Service::builder(inventory::contract()?)
        .config(ServiceConfig {
            registration: None,
            ..ServiceConfig::default()
        })
        .handle::<inventory::Reserve, _, _>(|_ctx, request: ReserveStock| async move {
            Ok(Reservation {
                reservation_id: format!("res-{}", request.order_id.0),
                order_id: request.order_id,
                items: request.items,
            })
        })
        .handle_json("release", |_ctx, request| async move { Ok(request) })
        .handle_json("stock", |_ctx, request| async move { Ok(request) })
        .build()?;
    let service_nats = server.client().await?;
    let service_task = tokio::spawn(service.run(service_nats.clone(), shutdown.clone()));

    let raw_client = server.client().await?;
    let client = ServiceClient::new(server.client().await?, inventory::contract()?).with_options(CallOptions {
        max_attempts: 1,
        ..CallOptions::default()
    });

    // Warm up both paths (and wait for the service to subscribe).
    for _ in 0..200 {
        if client.call::<inventory::Reserve>(&request()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..2_000 {
        raw_call(&raw_client).await?;
        client.call::<inventory::Reserve>(&request()).await?;
    }

    let mut throughput_ratios = Vec::new();
    let mut latency_gaps = Vec::new();
    for round in 1..=ROUNDS {
        let raw_rate = throughput({
            let nats = raw_client.clone();
            move || {
                let nats = nats.clone();
                async move { raw_call(&nats).await }
            }
        })
        .await?;
        let headed_rate = throughput({
            let nats = raw_client.clone();
            move || {
                let nats = nats.clone();
                async move { raw_headed_call(&nats).await }
            }
        })
        .await?;
        let ours_rate = throughput({
            let client = client.clone();
            move || {
                let client = client.clone();
                async move {
                    client
                        .call::<inventory::Reserve>(&request())
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            }
        })
        .await?;
        let raw_p50 = latency(|| {
            let nats = raw_client.clone();
            async move { raw_call(&nats).await }
        })
        .await?;
        let headed_p50 = latency(|| {
            let nats = raw_client.clone();
            async move { raw_headed_call(&nats).await }
        })
        .await?;
        let ours_p50 = latency(|| {
            let client = client.clone();
            async move {
                client
                    .call::<inventory::Reserve>(&request())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        let ratio = ours_rate / raw_rate;
        let gap = ours_p50.as_secs_f64() * 1e6 - raw_p50.as_secs_f64() * 1e6;
        println!(
            "round {round}: {IN_FLIGHT} in flight: raw with the runtime's headers {headed_rate:.0} req/s, ratio to it {:.3}; \
             1 in flight p50: raw with the headers {:.1} us, gap to it {:.1} us",
            ours_rate / headed_rate,
            headed_p50.as_secs_f64() * 1e6,
            ours_p50.as_secs_f64() * 1e6 - headed_p50.as_secs_f64() * 1e6,
        );
        println!(
            "round {round}: {IN_FLIGHT} in flight: raw {raw_rate:.0} req/s, runtime {ours_rate:.0} req/s, ratio {ratio:.3} (goal >= 0.85); \
             1 in flight p50: raw {:.1} us, runtime {:.1} us, gap {gap:.1} us (goal <= 15)",
            raw_p50.as_secs_f64() * 1e6,
            ours_p50.as_secs_f64() * 1e6,
        );
        throughput_ratios.push(ratio);
        latency_gaps.push(gap);
    }
    let mut publish_ratios = Vec::new();
    let publisher = EventPublisher::new(server.client().await?, inventory::contract()?, &SchemaSet::default()).await?;
    let js = jetstream::new(server.client().await?);
    let event = serde_json::to_value(reserved())?;
    let event_bytes: bytes::Bytes = serde_json::to_vec(&event)?.into();
    for round in 1..=ROUNDS {
        let raw_rate = publish_rate(|| {
            let js = js.clone();
            let payload = event_bytes.clone();
            async move {
                js.publish("shop.inventory.v1.reserved", payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        let raw_with_id_rate = publish_rate(|| {
            let js = js.clone();
            let payload = event_bytes.clone();
            async move {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", nuid::next().to_string().as_str());
                js.publish_with_headers("shop.inventory.v1.reserved", headers, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        let ours_rate = publish_rate(|| {
            let publisher = publisher.clone();
            let event = event.clone();
            async move {
                publisher
                    .send("reserved", None, &event)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        let ratio = ours_rate / raw_rate;
        println!(
            "round {round}: JetStream publish, async acks ({PUBLISH_WINDOW} outstanding): raw {raw_rate:.0} msg/s, \
             raw with Nats-Msg-Id {raw_with_id_rate:.0} msg/s, runtime {ours_rate:.0} msg/s, ratio {ratio:.3} (goal >= 0.85), \
             ratio to raw with Nats-Msg-Id {:.3}",
            ours_rate / raw_with_id_rate
        );
        publish_ratios.push(ratio);
    }
    publish_ratios.sort_by(f64::total_cmp);
    println!(
        "median publish ratio over {ROUNDS} rounds: {:.3}",
        publish_ratios[ROUNDS / 2]
    );

    throughput_ratios.sort_by(f64::total_cmp);
    latency_gaps.sort_by(f64::total_cmp);
    println!(
        "median of {ROUNDS} rounds: throughput ratio {:.3}, p50 latency gap {:.1} us",
        throughput_ratios[ROUNDS / 2],
        latency_gaps[ROUNDS / 2]
    );

    shutdown.cancel();
    service_task.await??;
    raw_task.abort();
    headed_task.abort();
    Ok(())
}

/// What a caller does with raw async-nats: encode the request, send it,
/// decode the reply.
async fn raw_call(nats: &async_nats::Client) -> Result<(), String> {
    let payload = serde_json::to_vec(&request()).map_err(|e| e.to_string())?;
    let reply = nats
        .request("bench.raw.reserve", payload.into())
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice::<Reservation>(&reply.payload)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The five headers the runtime sends on a request and on its reply.
fn runtime_headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Soa-Contract", "inventory@1.0.0");
    headers.insert("Soa-Operation", "reserve");
    headers.insert("Nats-Msg-Id", "a3BiGtqh9j9B8snCE0YPyI");
    headers.insert("Soa-Correlation-Id", "ord-bench-1");
    // Not sampled, as the runtime's own traces start (a sampled one makes
    // nats-server map every message's headers).
    headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    headers
}

/// [`raw_call`] with the runtime's headers on the request.
async fn raw_headed_call(nats: &async_nats::Client) -> Result<(), String> {
    let payload = serde_json::to_vec(&request()).map_err(|e| e.to_string())?;
    let reply = nats
        .request_with_headers("bench.raw.headed", runtime_headers(), payload.into())
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice::<Reservation>(&reply.payload)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Events per second stored by JetStream, sending `PUBLISHES` with at most
/// `PUBLISH_WINDOW` acks outstanding.
async fn publish_rate<F, Fut>(send: F) -> Result<f64, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<jetstream::context::PublishAckFuture, String>>,
{
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::with_capacity(PUBLISH_WINDOW);
    for _ in 0..PUBLISHES {
        if pending.len() == PUBLISH_WINDOW
            && let Some(ack) = pending.pop_front()
        {
            let ack: jetstream::context::PublishAckFuture = ack;
            ack.await.map_err(|e| e.to_string())?;
        }
        pending.push_back(send().await?);
    }
    for ack in pending {
        ack.await.map_err(|e| e.to_string())?;
    }
    Ok(PUBLISHES as f64 / started.elapsed().as_secs_f64())
}

/// Requests per second with `IN_FLIGHT` callers sharing `THROUGHPUT_REQUESTS`.
async fn throughput<F, Fut>(call: F) -> Result<f64, String>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let call = Arc::clone(&call);
        workers.push(tokio::spawn(async move {
            for _ in 0..THROUGHPUT_REQUESTS / IN_FLIGHT {
                call().await?;
            }
            Ok::<(), String>(())
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    let done = (THROUGHPUT_REQUESTS / IN_FLIGHT) * IN_FLIGHT;
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Median latency of sequential calls.
async fn latency<F, Fut>(call: F) -> Result<Duration, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut samples = Vec::with_capacity(LATENCY_REQUESTS);
    for _ in 0..LATENCY_REQUESTS {
        let started = Instant::now();
        call().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}
