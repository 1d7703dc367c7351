//! The orchestrator under load, on one nats-server on this machine.
//!
//! `cargo bench -p tests --bench orchestrator` prints:
//! - completed five-step workflows per second (durable state, every step a
//!   request-reply to a service, every state change a KV compare-and-set),
//!   with start-to-finish latency, and the same five calls per workflow
//!   chained by hand with raw async-nats requests in the same run (no
//!   durability) as the ratio's baseline;
//! - the orchestration overhead per step: from a round's replies to the next
//!   calls (planning, dispatch), plus how long the round's commit, which
//!   runs beside the calls, outlasted them; p50/p99;
//! - recovery after a kill: an orchestrator is aborted mid-run and another
//!   started; how long until every interrupted instance moved again, against
//!   the consumer's ack wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus_services::orchestrator::OrchestratorConfig;
use contracts::orchestrator_api::{ListInstancesRequest, LoadRequest, ShowRequest, StartRequest, ops};
use futures::StreamExt;
use registry::store::MemoryStore;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{RunningRegistry, registry_client, test_options};
use tests::workflows::{
    Ledger, RunningOrchestrator, Script, ledger_step, ledger_workflow, orchestrator_client, register_ledger,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const WORKFLOWS: usize = 10_000;
const WARMUP: usize = 1_000;
const PACED: usize = 5_000;
const WINDOW: usize = 256;
const RECOVERY_INSTANCES: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

fn five_steps(name: &str) -> Value {
    ledger_workflow(name, (1..=5).map(|n| ledger_step(&format!("s{n}"), "5s")).collect())
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = NatsServer::start().await?;
    let _registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), test_options()).await?;
    register_ledger(&registry_client(&server).await?).await?;
    let ledger = Ledger::default();
    let stop = CancellationToken::new();
    let service = ledger.service()?;
    let ledger_nats = server.client().await?;
    let token = stop.clone();
    tokio::spawn(async move { service.run(ledger_nats, token).await });

    let config = OrchestratorConfig {
        ack_wait: Duration::from_secs(30),
        max_in_flight: 2_048,
        registration: None,
        ..OrchestratorConfig::default()
    };
    let orchestrator = RunningOrchestrator::start(&server, config).await?;
    let client = orchestrator_client(&server).await?;
    client
        .call::<ops::Load>(&LoadRequest {
            definition: five_steps("bench"),
        })
        .await?;

    println!("# orchestrator: five-step workflows, durable state, nats-server on this machine");
    println!("load before: {}", load_average());
    let _ = throughput(&server, &client, "warm-up", WARMUP, None).await?;
    let stats = orchestrator.stats();
    let record = |on: bool| stats.record_overheads.store(on, std::sync::atomic::Ordering::Relaxed);
    let take = || -> Result<Vec<u32>, Box<dyn std::error::Error + Send + Sync>> {
        let mut samples = std::mem::take(&mut *stats.overheads.lock().map_err(|_| "poisoned")?);
        samples.sort_unstable();
        Ok(samples)
    };
    record(true);
    let (rate, latencies) = throughput(&server, &client, "saturated", WORKFLOWS, None).await?;
    let overheads = take()?;
    let (paced_rate, paced_latencies) = throughput(&server, &client, "paced at 1,000/s", PACED, Some(1_000.0)).await?;
    let paced_overheads = take()?;
    record(false);
    let raw_rate = raw_chain(&server, WORKFLOWS).await?;
    println!("load after: {}", load_average());
    println!();
    println!("| measure | figure | goal |");
    println!("|---|---|---|");
    println!("| completed workflows/s (5 steps), {WINDOW} in flight | {rate:.0} | >= 1,000 |");
    println!(
        "| saturated: start-to-finish latency p50 / p99 | {:.1} ms / {:.1} ms | |",
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0
    );
    println!(
        "| saturated: overhead per step p50 / p99 | {:.2} ms / {:.2} ms | |",
        percentile_u32(&overheads, 0.50) / 1000.0,
        percentile_u32(&overheads, 0.99) / 1000.0
    );
    println!("| paced: completed workflows/s | {paced_rate:.0} | sustains 1,000 |");
    println!(
        "| paced at 1,000/s: start-to-finish latency p50 / p99 | {:.1} ms / {:.1} ms | |",
        percentile(&paced_latencies, 0.50) / 1000.0,
        percentile(&paced_latencies, 0.99) / 1000.0
    );
    println!(
        "| paced at 1,000/s: overhead per step p50 / p99 | {:.2} ms / {:.2} ms | p99 < 5 ms |",
        percentile_u32(&paced_overheads, 0.50) / 1000.0,
        percentile_u32(&paced_overheads, 0.99) / 1000.0
    );
    println!("| raw async-nats: 5 chained requests per workflow, same window | {raw_rate:.0}/s | |");
    println!("| ratio orchestrated / raw chain | {:.2} | |", rate / raw_rate);
    orchestrator.stop().await?;

    recovery(&server, &ledger, &client).await?;
    stop.cancel();
    Ok(())
}

/// Runs `count` workflows with at most `WINDOW` in flight (a closed loop: a
/// new one starts when one finishes), at `pace` starts per second when
/// given, and waits for every `finished` event;
/// returns workflows/s and each workflow's latency in microseconds.
async fn throughput(
    server: &NatsServer,
    client: &bus_services::runtime::ServiceClient,
    label: &str,
    count: usize,
    pace: Option<f64>,
) -> Result<(f64, Vec<f64>), Box<dyn std::error::Error + Send + Sync>> {
    let nats = server.client().await?;
    let mut finished = nats.subscribe("test.bench.v1.finished").await?;
    nats.flush().await?;
    let started_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let began = Instant::now();
    let window = Arc::new(Semaphore::new(WINDOW));
    let run = label.to_owned();
    let starter = {
        let client = client.clone();
        let started_at = Arc::clone(&started_at);
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            for n in 0..count {
                if let Some(rate) = pace {
                    tokio::time::sleep_until(began + Duration::from_secs_f64(n as f64 / rate)).await;
                }
                let Ok(permit) = Arc::clone(&window).acquire_owned().await else {
                    return;
                };
                let client = client.clone();
                let started_at = Arc::clone(&started_at);
                let order = format!("{run}-{n}");
                tokio::spawn(async move {
                    let now = Instant::now();
                    let request = StartRequest {
                        workflow: "bench".to_owned(),
                        input: json!({"order": order}),
                        idempotency_key: None,
                        correlation_id: None,
                    };
                    match client.call::<ops::Start>(&request).await {
                        Ok(started) => {
                            if let Ok(mut map) = started_at.lock() {
                                map.insert(started.instance, now);
                            }
                        }
                        Err(error) => eprintln!("start failed: {error}"),
                    }
                    // Given back when a workflow finishes.
                    permit.forget();
                });
            }
        })
    };
    let mut latencies = Vec::with_capacity(count);
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while done < count {
        let message = tokio::time::timeout_at(deadline.into(), finished.next())
            .await
            .map_err(|_| format!("{label}: only {done} of {count} finished in time"))?
            .ok_or("the subscription ended")?;
        let event: Value = serde_json::from_slice(&message.payload)?;
        let instance = event["instance"].as_str().unwrap_or_default();
        if let Some(start) = started_at.lock().map_err(|_| "poisoned")?.get(instance) {
            latencies.push(start.elapsed().as_secs_f64() * 1e6);
        }
        if event["status"] != "completed" {
            return Err(format!("{instance} ended {}", event["status"]).into());
        }
        window.add_permits(1);
        done += 1;
    }
    let elapsed = began.elapsed();
    starter.await?;
    latencies.sort_by(f64::total_cmp);
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("{label}: {count} workflows in {elapsed:.2?} = {rate:.0}/s");
    Ok((rate, latencies))
}

/// The same five calls per workflow, chained by hand with raw async-nats
/// requests (no state, no durability), with the same number in flight.
async fn raw_chain(server: &NatsServer, count: usize) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let nats = server.client().await?;
    let window = Arc::new(Semaphore::new(WINDOW));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let permit = Arc::clone(&window).acquire_owned().await?;
        let nats = nats.clone();
        tasks.push(tokio::spawn(async move {
            for step in 1..=5 {
                let payload = json!({"step": format!("s{step}"), "order": format!("raw-{n}")}).to_string();
                if let Err(error) = nats.request("test.ledger.v1.apply", payload.into()).await {
                    eprintln!("raw request failed: {error}");
                }
            }
            drop(permit);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let rate = count as f64 / began.elapsed().as_secs_f64();
    println!("raw chain: {count} x 5 requests = {rate:.0} chains/s");
    Ok(rate)
}

/// Kills an orchestrator mid-run and measures how long until every
/// interrupted instance moves again under a fresh one.
async fn recovery(
    server: &NatsServer,
    ledger: &Ledger,
    client: &bus_services::runtime::ServiceClient,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ack_wait = Duration::from_secs(2);
    let config = || OrchestratorConfig {
        ack_wait,
        registration: None,
        ..OrchestratorConfig::default()
    };
    for step in ["r1", "r2", "r3", "r4", "r5"] {
        ledger.script(step, Script::Delay(Duration::from_millis(100)));
    }
    let victim = RunningOrchestrator::start(server, config()).await?;
    client
        .call::<ops::Load>(&LoadRequest {
            definition: ledger_workflow(
                "recover",
                ["r1", "r2", "r3", "r4", "r5"]
                    .iter()
                    .map(|id| ledger_step(id, "5s"))
                    .collect(),
            ),
        })
        .await?;
    let mut instances = Vec::new();
    for n in 0..RECOVERY_INSTANCES {
        let request = StartRequest {
            workflow: "recover".to_owned(),
            input: json!({"order": format!("recover-{n}")}),
            idempotency_key: None,
            correlation_id: None,
        };
        instances.push(client.call::<ops::Start>(&request).await?.instance);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    victim.kill();
    let killed = Instant::now();
    let killed_ms = now_ms();
    let replacement = RunningOrchestrator::start(server, config()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = client
            .call::<ops::List>(&ListInstancesRequest {
                workflow: Some("recover".to_owned()),
                status: Some(contracts::orchestrator_api::InstanceStatus::Completed),
                limit: Some(1),
            })
            .await?;
        if listed.total == RECOVERY_INSTANCES {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {RECOVERY_INSTANCES} recovered", listed.total).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_done = killed.elapsed();
    // For each instance interrupted by the kill: its first event after it.
    let mut worst = 0u64;
    let mut interrupted = 0;
    for instance in &instances {
        let shown = client
            .call::<ops::Show>(&ShowRequest {
                instance: instance.clone(),
            })
            .await?;
        let before_kill = shown.instance.history.iter().filter(|e| e.at_ms < killed_ms).count();
        let first_after = shown.instance.history.iter().find(|e| e.at_ms >= killed_ms);
        if let Some(event) = first_after
            && before_kill > 0
        {
            interrupted += 1;
            worst = worst.max(event.at_ms - killed_ms);
        }
    }
    println!();
    println!("| recovery after a kill ({RECOVERY_INSTANCES} instances, 5 x 100 ms steps) | figure | goal |");
    println!("|---|---|---|");
    println!(
        "| every interrupted instance ({interrupted}) moved again within | {worst} ms | < ack wait {} ms + 2,000 ms |",
        ack_wait.as_millis()
    );
    println!(
        "| all {RECOVERY_INSTANCES} completed within | {} ms | |",
        all_done.as_millis()
    );
    replacement.stop().await?;
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn percentile_u32(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[index.min(sorted.len() - 1)])
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
