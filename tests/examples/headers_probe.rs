//! Scratch: raw request-reply with and without headers, for profiling.
use futures::StreamExt;
use std::time::{Duration, Instant};
use tests::NatsServer;

fn headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Soa-Contract", "inventory@1.0.0");
    headers.insert("Soa-Operation", "reserve");
    headers.insert("Nats-Msg-Id", "a3BiGtqh9j9B8snCE0YPyI");
    headers.insert("Soa-Correlation-Id", "ord-bench-1");
    headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    headers
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let secs: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let server = NatsServer::start().await?;
    let responder = server.client().await?;
    let mut subs = responder.queue_subscribe("probe", "q".into()).await?;
    let headed = mode.contains("headed");
    let reply_headed = mode.contains("reply");
    tokio::spawn({
        let nats = responder.clone();
        async move {
            while let Some(m) = subs.next().await {
                let Some(reply) = m.reply else { continue };
                if reply_headed {
                    let _ = nats.publish_with_headers(reply, headers(), m.payload).await;
                } else {
                    let _ = nats.publish(reply, m.payload).await;
                }
            }
        }
    });
    let client = server.client().await?;
    client.flush().await?;
    responder.flush().await?;
    println!("pid {} ready", std::process::id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..64 {
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let payload = bytes::Bytes::from_static(&[b'x'; 150]);
            while started.elapsed() < Duration::from_secs(secs) {
                let r = if headed {
                    client.request_with_headers("probe", headers(), payload.clone()).await
                } else {
                    client.request("probe", payload.clone()).await
                };
                if r.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await?;
    }
    println!("{mode}: {:.0} req/s", total as f64 / started.elapsed().as_secs_f64());
    Ok(())
}
