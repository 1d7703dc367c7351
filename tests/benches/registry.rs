//! The registry at scale, against the goals of its issue: with 10,000
//! registered services (3 versions each) and 30,000 live instances, resolve
//! over NATS p99 under 1 ms and at least 20,000 lookups/s; at least 1,000
//! durable registrations/s on the embedded store; restart to ready under
//! 1 s; resident memory under 300 MB.
//!
//! `cargo bench -p tests --bench registry` runs the registry in-process on a
//! harness nats-server with an embedded (redb) store in a temporary
//! directory, and prints:
//! - durable registrations/s over NATS, every version of every service sent
//!   64 at a time (all `1.0.0` first, then `1.1.0`, ...), and the same load
//!   in-process (rules, store, catalogue, no NATS) as a baseline, with the
//!   time spent in the rules and waiting for the store;
//! - heartbeats/s to bring up the live instances;
//! - the process's resident memory before the registry was created and once
//!   everything is loaded (the registry's share is the difference);
//! - resolve over NATS of exact subjects: latency with one call in flight
//!   (p50/p99/max) and lookups/s with 64 in flight, next to raw async-nats
//!   request-reply against a trivial responder in the same run, since the
//!   machine may be shared and noisy;
//! - restart to ready: the bench runs itself again as a fresh process that
//!   opens the same file (`Registry::open`: load and rebuild the catalogue)
//!   and serves it, timed until its first `list` answers over NATS, with its
//!   resident memory once loaded; then the same in this process, in parts;
//!
//! then a table of each figure against its goal. The figures are reported,
//! never asserted on; only the load itself is checked (every registration
//! accepted, every instance held, every resolve finding its operation).
//!
//! The scale is set by `SOA_BENCH_SERVICES` (10000), `SOA_BENCH_VERSIONS` (3)
//! and `SOA_BENCH_INSTANCES` (30000); for a quick run:
//! `SOA_BENCH_SERVICES=1000 SOA_BENCH_INSTANCES=3000 cargo bench -p tests --bench registry`.
//!
//! The documents are the shop's inventory contract renamed to `svc-00000`,
//! `svc-00001`, ..., with subjects `bench.<service>.v1.<member>`, no
//! dependencies, and each later minor version a compatible change (a new
//! operation description and one more optional request property).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus_services::runtime::{CallOptions, ServiceClient};
use contracts::registry_api::{HeartbeatRequest, ListRequest, RegisterRequest, RegisterResponse, ResolveRequest, ops};
use contracts::{ContractId, SubjectPattern};
use futures::{StreamExt, stream};
use registry::catalog::{Catalog, EvictionGuard, Registration, now_ms};
use registry::server::Registry;
use registry::store::{EmbeddedStore, Store};
use tests::NatsServer;
use tests::registry::{RunningRegistry, registry_client, test_options};
use tests::synthetic::{SyntheticCatalog, service_name, subject};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests in flight for loads and throughput.
const IN_FLIGHT: usize = 64;
/// Sequential resolves for the latency figure.
const LATENCY_CALLS: usize = 5_000;
/// How long each throughput measurement runs.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);
/// The operation every resolve looks up.
const RESOLVED_MEMBER: &str = tests::synthetic::CHANGED_OPERATION;

/// Set on the child process that measures a restart: the store's file...
const RESTART_FILE_ENV: &str = "SOA_BENCH_RESTART_FILE";
/// ... and the NATS server to serve on.
const RESTART_NATS_ENV: &str = "SOA_BENCH_RESTART_NATS";

/// How big a catalogue to build.
#[derive(Debug, Clone, Copy)]
struct Scale {
    services: usize,
    versions: usize,
    instances: usize,
}

impl Scale {
    fn from_env() -> Self {
        let read = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .map(|text| {
                    text.parse()
                        .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}"))
                })
                .unwrap_or(default)
        };
        let scale = Self {
            services: read("SOA_BENCH_SERVICES", 10_000),
            versions: read("SOA_BENCH_VERSIONS", 3),
            instances: read("SOA_BENCH_INSTANCES", 30_000),
        };
        assert!(
            scale.services > 0 && scale.versions > 0,
            "at least one service and one version"
        );
        scale
    }

    fn registrations(self) -> usize {
        self.services * self.versions
    }
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match (std::env::var_os(RESTART_FILE_ENV), std::env::var(RESTART_NATS_ENV)) {
        (Some(path), Ok(url)) => runtime.block_on(restarted(path.as_ref(), &url)),
        _ => runtime.block_on(run()),
    }
}

async fn run() -> Result<(), BoxError> {
    let scale = Scale::from_env();
    println!(
        "scale: {} services x {} versions = {} registrations, {} instances; {IN_FLIGHT} in flight",
        scale.services,
        scale.versions,
        scale.registrations(),
        scale.instances
    );
    let documents = SyntheticCatalog::new()?;
    probe(&documents, scale.versions)?;

    let server = NatsServer::start().await?;
    let client = registry_client(&server).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("registry.redb");
    let rss_before = rss_bytes();

    // Durable registrations over NATS.
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path)?);
    let running = RunningRegistry::start(&server, store, test_options()).await?;
    let started = Instant::now();
    let mut digests = Vec::new();
    for minor in 0..scale.versions {
        let round = Instant::now();
        digests = register_version(&client, &documents, scale.services, minor).await?;
        println!(
            "registered {} x {}: {:.0} registrations/s",
            scale.services,
            version_of(minor),
            scale.services as f64 / round.elapsed().as_secs_f64()
        );
    }
    let registrations_rate = scale.registrations() as f64 / started.elapsed().as_secs_f64();
    println!(
        "durable registrations over NATS (embedded store): {} in {:.2} s, {registrations_rate:.0}/s",
        scale.registrations(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        running.catalog().version_count(),
        scale.registrations(),
        "every version is held"
    );

    // Live instances.
    let started = Instant::now();
    beat_instances(&client, &digests, scale).await?;
    let beats_rate = scale.instances as f64 / started.elapsed().as_secs_f64();
    println!(
        "heartbeats: {} instances in {:.2} s, {beats_rate:.0}/s",
        scale.instances,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        running.catalog().instance_count(),
        scale.instances,
        "every instance is held"
    );

    // Resident memory.
    let rss_loaded = rss_bytes();
    println!(
        "resident memory: {:.1} MB before the registry, {:.1} MB loaded, the registry's share {:.1} MB",
        mb(rss_before),
        mb(rss_loaded),
        mb(rss_loaded.saturating_sub(rss_before))
    );

    // Resolve over NATS, next to raw request-reply.
    let latencies = resolve_latencies(&client, scale.services).await?;
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "resolve, 1 in flight, {LATENCY_CALLS} calls: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        micros(p50),
        micros(p99),
        micros(max)
    );
    let resolve_rate = resolve_throughput(&client, scale.services).await?;
    let raw_rate = raw_throughput(&server).await?;
    println!(
        "resolve, {IN_FLIGHT} in flight: {resolve_rate:.0} lookups/s; raw async-nats request-reply: {raw_rate:.0} req/s; ratio {:.3}",
        resolve_rate / raw_rate
    );

    // Restart to ready: in a fresh process, as a restarted registry would
    // be; then in this one, in parts and whole.
    running.stop().await?;
    let fresh = restart_in_child(&path, &server).await?;
    println!(
        "restart in a fresh process: Registry::open {:.0} ms, first list answered {:.0} ms after the process started \
         ({:.0} ms after main), resident memory once loaded {:.1} MB",
        millis(fresh.open),
        millis(fresh.ready),
        millis(fresh.ready_in_process),
        mb(fresh.rss)
    );
    let started = Instant::now();
    let store = EmbeddedStore::open(&path)?;
    let open_file_time = started.elapsed();
    let started = Instant::now();
    let records = store.load_raw().await?;
    let load_time = started.elapsed();
    let loaded = records.len();
    let started = Instant::now();
    let catalog = Catalog::from_records(records, false, EvictionGuard::default())?;
    let rebuild_time = started.elapsed();
    drop((catalog, store));
    println!(
        "restart in this process, in parts: open the file {:.0} ms, read {loaded} records (raw) {:.0} ms, \
         build the catalogue from them {:.0} ms ({:.1} MB file)",
        millis(open_file_time),
        millis(load_time),
        millis(rebuild_time),
        mb(std::fs::metadata(&path)?.len())
    );
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path)?);
    let running = RunningRegistry::start(&server, store, test_options()).await?;
    let ready_time = started.elapsed();
    println!(
        "restart in this process: open and serve until the first list answers {:.0} ms",
        millis(ready_time)
    );
    running.stop().await?;

    // The same registrations in-process, without NATS.
    let baseline = in_process_baseline(&documents, scale).await?;
    println!(
        "in-process baseline (rules + embedded store + catalogue, {IN_FLIGHT} in flight): {:.0} registrations/s; \
         per registration: rules {:.0} us, waiting for the store {:.0} us, catalogue insert {:.0} us",
        baseline.rate,
        micros(baseline.rules),
        micros(baseline.store),
        micros(baseline.catalog)
    );

    println!();
    let rows = [
        Row::at_least(
            "durable registrations/s (NATS, embedded)",
            registrations_rate,
            1_000.0,
            "/s",
        ),
        Row::info("  in-process baseline", baseline.rate, "/s"),
        Row::info("heartbeats/s", beats_rate, "/s"),
        Row::under("resolve p99, 1 in flight", micros(p99), 1_000.0, "us"),
        Row::info("  resolve p50", micros(p50), "us"),
        Row::at_least("resolve lookups/s, 64 in flight", resolve_rate, 20_000.0, "/s"),
        Row::info("  raw request-reply", raw_rate, "/s"),
        Row::under(
            "restart to ready (fresh process, to list)",
            millis(fresh.ready),
            1_000.0,
            "ms",
        ),
        Row::info("  of which Registry::open", millis(fresh.open), "ms"),
        Row::info("  in this process, to list", millis(ready_time), "ms"),
        Row::under("resident memory (process, all loaded)", mb(rss_loaded), 300.0, "MB"),
        Row::info("  registry's share", mb(rss_loaded.saturating_sub(rss_before)), "MB"),
        Row::info("  fresh process after restart", mb(fresh.rss), "MB"),
    ];
    println!("{:<42} | {:>12} | {:>12} | met?", "figure", "measured", "goal");
    println!("{:-<42}-|-{:-<12}-|-{:-<12}-|-----", "", "", "");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

fn version_of(minor: usize) -> String {
    format!("1.{minor}.0")
}

/// Registers every version of one service in a catalogue of its own, so a
/// document the rules refuse stops the bench before the load.
fn probe(documents: &SyntheticCatalog, versions: usize) -> Result<(), BoxError> {
    let catalog = Catalog::new(false, EvictionGuard::default());
    for minor in 0..versions {
        let document = documents.document(0, minor);
        let started = Instant::now();
        let registration = catalog
            .prepare_registration(&document, None, now_ms())
            .map_err(|refusal| format!("{} is refused: {:?}", version_of(minor), refusal.body()))?;
        let elapsed = started.elapsed();
        let Registration::New { record, response } = registration else {
            return Err("the probe found its document stored already".into());
        };
        if !response.warnings.is_empty() || !response.unclassified.is_empty() {
            println!(
                "probe: {} registers with warnings {:?} and unclassified changes {:?}",
                response.id, response.warnings, response.unclassified
            );
        }
        catalog.insert(*record);
        println!(
            "probe: {} registers cleanly ({} bytes of JSON, rules took {:.0} us)",
            response.id,
            serde_json::to_vec(&document)?.len(),
            micros(elapsed)
        );
    }
    Ok(())
}

/// Registers version `1.<minor>.0` of every service over NATS; returns the digests by service.
async fn register_version(
    client: &ServiceClient,
    documents: &SyntheticCatalog,
    services: usize,
    minor: usize,
) -> Result<Vec<String>, BoxError> {
    let mut digests = vec![String::new(); services];
    let mut replies = stream::iter(0..services)
        .map(|index| {
            let request = RegisterRequest {
                document: documents.document(index, minor),
                owner_token: None,
            };
            async move { (index, client.call::<ops::Register>(&request).await) }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some((index, reply)) = replies.next().await {
        let reply: RegisterResponse = reply.map_err(|err| format!("{}: {err}", service_name(index)))?;
        assert!(reply.created, "{} was new", reply.id);
        digests[index] = reply.digest;
    }
    Ok(digests)
}

/// Sends one heartbeat for each instance, spread over the services' latest versions.
async fn beat_instances(client: &ServiceClient, digests: &[String], scale: Scale) -> Result<(), BoxError> {
    let latest = version_of(scale.versions - 1);
    let mut replies = stream::iter(0..scale.instances)
        .map(|instance| {
            let service = instance % scale.services;
            let request = HeartbeatRequest {
                instance_id: format!("bench-instance-{instance:06}"),
                contract: ContractId::parse(&format!("{}@{latest}", service_name(service))).expect("a contract id"),
                digest: digests[service].clone(),
                ttl_ms: 60_000,
            };
            async move { client.call::<ops::Heartbeat>(&request).await }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(reply) = replies.next().await {
        assert!(!reply?.drift, "an instance serves a registered digest");
    }
    Ok(())
}

/// What the restarted child process measured.
struct Restart {
    /// `EmbeddedStore::open` and `Registry::open`.
    open: Duration,
    /// From spawning the process to the first `list` answer, seen from here.
    ready: Duration,
    /// From the child's `main` to the first `list` answer.
    ready_in_process: Duration,
    /// The child's resident memory with the catalogue loaded.
    rss: u64,
}

/// Runs this binary again to open the registry on `path` in a fresh
/// process, serve it on `server`, and report once `list` answers.
async fn restart_in_child(path: &std::path::Path, server: &NatsServer) -> Result<Restart, BoxError> {
    use tokio::io::AsyncBufReadExt;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .env(RESTART_FILE_ENV, path)
        .env(RESTART_NATS_ENV, server.url())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut report = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(figures) = line.strip_prefix("ready ") {
            let ready = started.elapsed();
            let figures: Vec<u64> = figures.split(' ').map(str::parse).collect::<Result<_, _>>()?;
            let [open_us, ready_us, rss] = figures[..] else {
                return Err(format!("the child reported {line:?}").into());
            };
            report = Some(Restart {
                open: Duration::from_micros(open_us),
                ready,
                ready_in_process: Duration::from_micros(ready_us),
                rss,
            });
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(format!("the restarted registry failed: {status}").into());
    }
    report.ok_or_else(|| "the restarted registry never answered".into())
}

/// The child's side of [`restart_in_child`]: opens the store, serves it,
/// prints `ready <open us> <ready us> <rss bytes>` once `list` answers, stops.
async fn restarted(path: &std::path::Path, url: &str) -> Result<(), BoxError> {
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(path)?);
    let registry = Registry::open(store, test_options()).await?;
    let open = started.elapsed();
    let nats = async_nats::connect(url).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(registry.run(nats.clone(), shutdown.clone()));
    // One attempt per call: a retry's backoff would blur the figure.
    let client = ServiceClient::new(nats, contracts::registry_api::contract()?).with_options(CallOptions {
        max_attempts: 1,
        ..CallOptions::default()
    });
    while client.call::<ops::List>(&ListRequest::default()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = started.elapsed();
    println!("ready {} {} {}", open.as_micros(), ready.as_micros(), rss_bytes());
    shutdown.cancel();
    task.await??;
    Ok(())
}

/// A small, fast, deterministic generator for picking services.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

fn resolve_request(random: &mut XorShift, services: usize) -> ResolveRequest {
    let service = service_name(random.below(services));
    ResolveRequest {
        subject: SubjectPattern::parse(&subject(&service, RESOLVED_MEMBER)).expect("a subject"),
    }
}

async fn resolve_once(client: &ServiceClient, request: &ResolveRequest) -> Result<(), BoxError> {
    let reply = client.call::<ops::Resolve>(request).await?;
    if reply.bindings.len() != 1 {
        return Err(format!("{} resolved to {:?}", request.subject.as_str(), reply.bindings).into());
    }
    Ok(())
}

/// Sorted latencies of sequential resolves of random exact subjects.
async fn resolve_latencies(client: &ServiceClient, services: usize) -> Result<Vec<Duration>, BoxError> {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        resolve_once(client, &resolve_request(&mut random, services)).await?;
    }
    let mut samples = Vec::with_capacity(LATENCY_CALLS);
    for _ in 0..LATENCY_CALLS {
        let request = resolve_request(&mut random, services);
        let started = Instant::now();
        resolve_once(client, &request).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}

/// Resolves per second with `IN_FLIGHT` callers for `THROUGHPUT_WINDOW`.
async fn resolve_throughput(client: &ServiceClient, services: usize) -> Result<f64, BoxError> {
    throughput(|worker| {
        let client = client.clone();
        let mut random = XorShift(0x2545_f491_4f6c_dd1d ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9));
        move || {
            let client = client.clone();
            let request = resolve_request(&mut random, services);
            async move { resolve_once(&client, &request).await }
        }
    })
    .await
}

/// Raw async-nats request-reply per second against a responder that answers
/// every request with the same small payload, with `IN_FLIGHT` callers.
async fn raw_throughput(server: &NatsServer) -> Result<f64, BoxError> {
    const RAW_SUBJECT: &str = "bench.raw.v1.echo";
    let responder = server.client().await?;
    let mut requests = responder.subscribe(RAW_SUBJECT).await?;
    responder.flush().await?;
    let task = tokio::spawn(async move {
        let answer = bytes::Bytes::from_static(br#"{"bindings":[]}"#);
        while let Some(message) = requests.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, answer.clone()).await;
            }
        }
    });
    let caller = server.client().await?;
    let request = bytes::Bytes::from_static(br#"{"subject":"bench.svc-00000.v1.reserve"}"#);
    let rate = throughput(|_| {
        let caller = caller.clone();
        let request = request.clone();
        move || {
            let caller = caller.clone();
            let request = request.clone();
            async move {
                caller.request(RAW_SUBJECT, request).await?;
                Ok(())
            }
        }
    })
    .await;
    task.abort();
    rate
}

/// Calls per second with `IN_FLIGHT` workers calling for `THROUGHPUT_WINDOW`
/// after a short warm-up; `worker` makes each worker's call.
async fn throughput<W, C, F>(worker: W) -> Result<f64, BoxError>
where
    W: Fn(usize) -> C,
    C: FnMut() -> F + Send + 'static,
    F: Future<Output = Result<(), BoxError>> + Send,
{
    let warm_up = Duration::from_millis(300);
    let begin = Instant::now() + warm_up;
    let end = begin + THROUGHPUT_WINDOW;
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(IN_FLIGHT);
    for index in 0..IN_FLIGHT {
        let mut call = worker(index);
        let done = Arc::clone(&done);
        workers.push(tokio::spawn(async move {
            loop {
                call().await?;
                let now = Instant::now();
                if now >= end {
                    return Ok::<(), BoxError>(());
                }
                if now >= begin {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / THROUGHPUT_WINDOW.as_secs_f64())
}

/// What the in-process registrations measured.
struct Baseline {
    rate: f64,
    /// Mean time in `prepare_registration`.
    rules: Duration,
    /// Mean wait for `Store::insert`.
    store: Duration,
    /// Mean time in `Catalog::insert`.
    catalog: Duration,
}

/// The registrations of the NATS load done in-process: the rules, the
/// embedded store (a fresh file) and the catalogue, as `Registry::register`
/// does them, `IN_FLIGHT` at a time on spawned tasks.
async fn in_process_baseline(documents: &SyntheticCatalog, scale: Scale) -> Result<Baseline, BoxError> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("baseline.redb"))?);
    let catalog = Arc::new(Catalog::new(false, EvictionGuard::default()));
    let rules = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let indexed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for minor in 0..scale.versions {
        let mut tasks = stream::iter(0..scale.services)
            .map(|index| {
                let document = documents.document(index, minor);
                let (store, catalog) = (Arc::clone(&store), Arc::clone(&catalog));
                let (rules, stored, indexed) = (Arc::clone(&rules), Arc::clone(&stored), Arc::clone(&indexed));
                tokio::spawn(async move {
                    let at = Instant::now();
                    let registration = catalog
                        .prepare_registration(&document, None, now_ms())
                        .map_err(|refusal| format!("{:?}", refusal.body()))?;
                    let Registration::New { record, .. } = registration else {
                        return Err::<(), BoxError>("stored already".into());
                    };
                    add(&rules, at.elapsed());
                    let at = Instant::now();
                    store.insert((*record).clone()).await?;
                    add(&stored, at.elapsed());
                    let at = Instant::now();
                    catalog.insert(*record);
                    add(&indexed, at.elapsed());
                    Ok(())
                })
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some(done) = tasks.next().await {
            done??;
        }
    }
    let elapsed = started.elapsed();
    let count = scale.registrations() as u32;
    let mean = |total: &AtomicU64| Duration::from_nanos(total.load(Ordering::Relaxed)) / count;
    Ok(Baseline {
        rate: f64::from(count) / elapsed.as_secs_f64(),
        rules: mean(&rules),
        store: mean(&stored),
        catalog: mean(&indexed),
    })
}

fn add(total: &AtomicU64, elapsed: Duration) {
    total.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// This process's resident set size, from `/proc/self/status` (0 elsewhere).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One line of the final table.
struct Row {
    figure: &'static str,
    measured: f64,
    unit: &'static str,
    /// The goal as text and whether it was met; `None` for context lines.
    goal: Option<(String, bool)>,
}

impl Row {
    fn at_least(figure: &'static str, measured: f64, goal: f64, unit: &'static str) -> Self {
        Self {
            figure,
            measured,
            unit,
            goal: Some((format!(">= {goal:.0} {unit}"), measured >= goal)),
        }
    }

    fn under(figure: &'static str, measured: f64, goal: f64, unit: &'static str) -> Self {
        Self {
            figure,
            measured,
            unit,
            goal: Some((format!("< {goal:.0} {unit}"), measured < goal)),
        }
    }

    fn info(figure: &'static str, measured: f64, unit: &'static str) -> Self {
        Self {
            figure,
            measured,
            unit,
            goal: None,
        }
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let measured = format!("{:.0} {}", self.measured, self.unit);
        match &self.goal {
            Some((goal, met)) => write!(
                f,
                "{:<42} | {measured:>12} | {goal:>12} | {}",
                self.figure,
                if *met { "yes" } else { "NO" }
            ),
            None => write!(f, "{:<42} | {measured:>12} | {:>12} |", self.figure, ""),
        }
    }
}
