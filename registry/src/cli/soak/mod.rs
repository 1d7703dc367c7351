//! `soa soak --minutes N`: the shop as child processes under a steady load
//! of orders in both modes, with parts of it killed (SIGKILL) and started
//! again at seeded random times, then the books checked.
//!
//! A nats-server, `soa registry serve --store kv`, `soa orchestrator serve`
//! and one `soa shop serve <service>` per shop service run as children of
//! this process (the same `soa` binary, from [`std::env::current_exe`]).
//! The load is `bus_services::shop::OrderDriver`; the check is
//! `bus_services::shop::wait_settled`, the same the fault tests use. Not
//! part of CI: it runs for minutes.

mod processes;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bus_services::connection::{self, ConnectConfig};
use bus_services::runtime::{CallOptions, ServiceClient};
use bus_services::shop::{DriveConfig, OrderDriver, ShopService, unit_interval, wait_settled};
use clap::Args;
use tokio_util::sync::CancellationToken;

pub use processes::{ProcessError, ServerProcess, SoaProcess};

use super::demo::system;
use super::{Exit, UsageError};

/// Units of each product: never why an order fails.
const PLENTY: u64 = 1_000_000_000;

/// The products ordered.
const PRODUCTS: [&str; 6] = ["sku-kettle", "sku-mug", "sku-tea", "sku-teapot", "sku-cup", "sku-tray"];

/// The product nobody has.
const SOLD_OUT: &str = "sku-sold-out";

/// Arguments of `soa soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long to place orders and kill parts, in minutes.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub minutes: u64,
    /// Seeds when and what is killed, and what the orders hold.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Orders started per second, both modes together.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub rate: u32,
    /// The shortest time between two kills, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub kill_every_min: u64,
    /// The longest time between two kills, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub kill_every_max: u64,
    /// Share of payments declined (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub decline_rate: f64,
    /// Share of shipments that cannot be scheduled (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub shipping_failure_rate: f64,
    /// Share of orders that ask for a product nobody has (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub out_of_stock_rate: f64,
    /// How long to wait for the orders to settle after the load stops, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub settle_timeout: u64,
    /// Where the server's store and every process's log go; a new
    /// directory under the system's temporary directory by default, removed
    /// when every invariant holds.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What the soak can kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Server,
    Registry,
    Orchestrator,
    Service(ShopService),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server => f.write_str("nats-server"),
            Self::Registry => f.write_str("registry"),
            Self::Orchestrator => f.write_str("orchestrator"),
            Self::Service(service) => write!(f, "{service}"),
        }
    }
}

/// Every process of the soak.
struct Processes {
    binary: PathBuf,
    dir: PathBuf,
    server: ServerProcess,
    registry: Option<SoaProcess>,
    orchestrator: Option<SoaProcess>,
    services: BTreeMap<ShopService, SoaProcess>,
    shop_args: Vec<String>,
}

impl Processes {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn with_url(&self, args: &[&str]) -> Vec<String> {
        ["--nats-url", &self.server.url()]
            .into_iter()
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    async fn start_registry(&mut self) -> Result<(), ProcessError> {
        let args = self.with_url(&["registry", "serve", "--store", "kv"]);
        self.registry =
            Some(SoaProcess::start("the registry", &self.binary, &args, "registry:", &self.log("registry")).await?);
        Ok(())
    }

    async fn start_orchestrator(&mut self) -> Result<(), ProcessError> {
        let args = self.with_url(&["orchestrator", "serve", "--ack-wait", "2s"]);
        self.orchestrator = Some(
            SoaProcess::start(
                "the orchestrator",
                &self.binary,
                &args,
                "orchestrator ready",
                &self.log("orchestrator"),
            )
            .await?,
        );
        Ok(())
    }

    async fn start_service(&mut self, service: ShopService) -> Result<(), ProcessError> {
        let mut args = self.with_url(&["shop", "serve", service.name()]);
        args.extend(self.shop_args.iter().cloned());
        let process = SoaProcess::start(
            service.name(),
            &self.binary,
            &args,
            "shop: serving",
            &self.log(service.name()),
        )
        .await?;
        self.services.insert(service, process);
        Ok(())
    }

    /// Kills `target` with SIGKILL; `down` later, starts it again.
    async fn kill_and_restart(&mut self, target: Target, down: Duration) -> anyhow::Result<()> {
        match target {
            Target::Server => {
                self.server.kill().await?;
                tokio::time::sleep(down).await;
                self.server.restart().await?;
            }
            Target::Registry => {
                if let Some(process) = self.registry.take() {
                    process.kill().await?;
                }
                tokio::time::sleep(down).await;
                self.start_registry().await?;
            }
            Target::Orchestrator => {
                if let Some(process) = self.orchestrator.take() {
                    process.kill().await?;
                }
                tokio::time::sleep(down).await;
                self.start_orchestrator().await?;
            }
            Target::Service(service) => {
                if let Some(process) = self.services.remove(&service) {
                    process.kill().await?;
                }
                tokio::time::sleep(down).await;
                self.start_service(service).await?;
            }
        }
        Ok(())
    }

    /// Processes that exited without being killed by the soak.
    fn crashed(&mut self) -> Vec<String> {
        let mut crashed = Vec::new();
        if self.registry.as_mut().is_some_and(SoaProcess::has_exited) {
            crashed.push("registry".to_owned());
        }
        if self.orchestrator.as_mut().is_some_and(SoaProcess::has_exited) {
            crashed.push("orchestrator".to_owned());
        }
        for (service, process) in &mut self.services {
            if process.has_exited() {
                crashed.push(service.name().to_owned());
            }
        }
        crashed
    }

    /// Stops everything cleanly: the orchestrator, the services, the registry, the server.
    async fn stop(mut self) {
        let mut parts: Vec<SoaProcess> = self.orchestrator.take().into_iter().collect();
        parts.extend(std::mem::take(&mut self.services).into_values());
        parts.extend(self.registry.take());
        for part in parts {
            if let Err(error) = part.terminate().await {
                tracing::warn!(error = %error, "Could not stop a process of the soak.");
            }
        }
        if let Err(error) = self.server.shutdown().await {
            tracing::warn!(error = %error, "Could not stop the soak's nats-server.");
        }
    }
}

/// A seeded stream of numbers in `[0, 1)`.
struct Draws {
    seed: u64,
    count: u64,
}

impl Draws {
    fn next(&mut self, what: &str) -> f64 {
        self.count += 1;
        unit_interval(self.seed, what, &self.count.to_string())
    }

    fn between(&mut self, what: &str, low: Duration, high: Duration) -> Duration {
        low + (high.saturating_sub(low)).mul_f64(self.next(what))
    }
}

/// Runs `soa soak`.
pub(super) async fn run(args: &SoakArgs, out: &mut dyn Write, shutdown: CancellationToken) -> anyhow::Result<Exit> {
    for (name, rate) in [
        ("--decline-rate", args.decline_rate),
        ("--shipping-failure-rate", args.shipping_failure_rate),
        ("--out-of-stock-rate", args.out_of_stock_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(UsageError(format!("{name} must be between 0 and 1, not {rate}")).into());
        }
    }
    if args.rate == 0 {
        return Err(UsageError("--rate must be at least 1 order per second".to_owned()).into());
    }
    if args.kill_every_min == 0 || args.kill_every_min > args.kill_every_max {
        return Err(UsageError(format!(
            "--kill-every-min ({}) must be above 0 and at most --kill-every-max ({})",
            args.kill_every_min, args.kill_every_max
        ))
        .into());
    }
    let binary = std::env::current_exe().context("finding the soa binary to start the shop's processes with")?;
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("soa-soak-{}-{}", std::process::id(), now_ms())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let initial_stock: Vec<(String, u64)> = PRODUCTS
        .iter()
        .map(|sku| ((*sku).to_owned(), PLENTY))
        .chain(std::iter::once((SOLD_OUT.to_owned(), 0)))
        .collect();
    let mut shop_args = vec![
        "--seed".to_owned(),
        args.seed.to_string(),
        "--decline-rate".to_owned(),
        args.decline_rate.to_string(),
        "--shipping-failure-rate".to_owned(),
        args.shipping_failure_rate.to_string(),
    ];
    for (sku, units) in &initial_stock {
        shop_args.push("--stock".to_owned());
        shop_args.push(format!("{sku}={units}"));
    }

    writeln!(
        out,
        "soa soak: {} minute(s), {} orders/s, kills every {}-{} s, seed {}; logs in {}",
        args.minutes,
        args.rate,
        args.kill_every_min,
        args.kill_every_max,
        args.seed,
        dir.display()
    )?;
    out.flush()?;
    let server = ServerProcess::start(&dir.join("nats")).await?;
    let mut processes = Processes {
        binary,
        dir: dir.clone(),
        server,
        registry: None,
        orchestrator: None,
        services: BTreeMap::new(),
        shop_args,
    };
    let outcome = soak(args, &mut processes, &initial_stock, out, shutdown).await;
    processes.stop().await;
    let exit = outcome?;
    if exit == Exit::Success && temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(exit)
}

async fn soak(
    args: &SoakArgs,
    processes: &mut Processes,
    initial_stock: &[(String, u64)],
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let url = processes.server.url();
    processes.start_registry().await?;
    for service in ShopService::ALL {
        processes.start_service(service).await?;
    }
    processes.start_orchestrator().await?;
    let nats = connection::connect(&ConnectConfig {
        name: Some("soa-soak".to_owned()),
        ..ConnectConfig::for_url(url.clone())
    })
    .await?;
    load_fulfilment(&nats).await?;
    writeln!(
        out,
        "   nats-server at {url}, the registry, the orchestrator with fulfilment@1 and the five shop services are up."
    )?;
    out.flush()?;

    let driver = OrderDriver::start(
        nats.clone(),
        DriveConfig {
            prefix: format!("soak-{}", now_ms()),
            rate_per_second: f64::from(args.rate),
            skus: PRODUCTS.iter().map(|sku| (*sku).to_owned()).collect(),
            sold_out: Some(SOLD_OUT.to_owned()),
            out_of_stock_rate: args.out_of_stock_rate,
            seed: args.seed,
            call_timeout: Duration::from_secs(5),
            give_up_after: Duration::from_secs(120),
        },
    )?;
    let began = tokio::time::Instant::now();
    let end = began + Duration::from_secs(args.minutes * 60);
    let mut draws = Draws {
        seed: args.seed,
        count: 0,
    };
    let mut kills: BTreeMap<String, u64> = BTreeMap::new();
    let mut crashes: Vec<String> = Vec::new();
    let (low, high) = (
        Duration::from_secs(args.kill_every_min),
        Duration::from_secs(args.kill_every_max),
    );
    let mut next_kill = began + draws.between("soak/wait", low, high);
    let mut next_report = began + Duration::from_secs(30);
    let mut interrupted = false;
    while tokio::time::Instant::now() < end {
        let wake = next_kill.min(next_report).min(end);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = shutdown.cancelled() => {
                interrupted = true;
                break;
            }
        }
        let now = tokio::time::Instant::now();
        for crashed in processes.crashed() {
            crashes.push(format!(
                "{crashed} exited by itself at {} s",
                now.duration_since(began).as_secs()
            ));
        }
        if now >= next_kill && now < end {
            let target = pick_target(&mut draws);
            let down = match target {
                Target::Server => draws.between("soak/down/server", Duration::from_secs(1), Duration::from_secs(5)),
                _ => draws.between("soak/down", Duration::ZERO, Duration::from_secs(2)),
            };
            writeln!(
                out,
                "   {:>4} s  kill -9 {target}, back after {} ms",
                now.duration_since(began).as_secs(),
                down.as_millis()
            )?;
            out.flush()?;
            processes
                .kill_and_restart(target, down)
                .await
                .with_context(|| format!("restarting the {target} after killing it"))?;
            *kills.entry(target.to_string()).or_insert(0) += 1;
            next_kill = tokio::time::Instant::now() + draws.between("soak/wait", low, high);
        }
        if now >= next_report {
            let progress = driver.progress();
            writeln!(
                out,
                "   {:>4} s  {} orders started, {} acknowledged, {} place calls",
                now.duration_since(began).as_secs(),
                progress.started(),
                progress.acknowledged(),
                progress.attempts()
            )?;
            out.flush()?;
            next_report = now + Duration::from_secs(30);
        }
    }
    writeln!(
        out,
        "   {} the load; waiting for every acknowledged order to settle (at most {} s).",
        if interrupted {
            "Interrupted: stopping"
        } else {
            "Stopping"
        },
        args.settle_timeout
    )?;
    out.flush()?;
    let placements = driver.finish().await;
    let settling = tokio::time::Instant::now();
    let (invariants, _books) = wait_settled(
        &nats,
        &placements,
        initial_stock,
        Duration::from_secs(args.settle_timeout),
    )
    .await?;
    let settled_after = settling.elapsed();
    for crashed in processes.crashed() {
        crashes.push(format!("{crashed} exited by itself"));
    }
    let _ = nats.drain().await;

    writeln!(
        out,
        "\nsoa soak: {} s of load, settled {} s after it stopped, seed {}",
        settling.duration_since(began).as_secs(),
        settled_after.as_secs(),
        args.seed
    )?;
    write!(out, "{invariants}")?;
    writeln!(
        out,
        "unacknowledged       {} (given up; not judged)",
        placements.unacknowledged.len()
    )?;
    writeln!(out, "place calls          {}", placements.attempts)?;
    let total: u64 = kills.values().sum();
    let each: Vec<String> = kills.iter().map(|(what, count)| format!("{what} {count}")).collect();
    writeln!(out, "kills (SIGKILL)      {total}: {}", each.join(", "))?;
    for crash in &crashes {
        writeln!(out, "  crash: {crash}")?;
    }
    let ok = invariants.hold() && crashes.is_empty() && placements.unacknowledged.is_empty();
    writeln!(
        out,
        "{}",
        if ok {
            "soa soak: every invariant holds."
        } else {
            "soa soak: FAILED."
        }
    )?;
    out.flush()?;
    Ok(if ok { Exit::Success } else { Exit::Failure })
}

/// The server, the registry, the orchestrator or a shop service, each a
/// quarter of the time; the service is any of the five.
fn pick_target(draws: &mut Draws) -> Target {
    let pick = |draw: f64, count: usize| ((draw * count as f64) as usize).min(count - 1);
    match pick(draws.next("soak/target"), 4) {
        0 => Target::Server,
        1 => Target::Registry,
        2 => Target::Orchestrator,
        _ => Target::Service(ShopService::ALL[pick(draws.next("soak/service"), ShopService::ALL.len())]),
    }
}

/// Registers the shop's contracts (the services register them too, but the
/// workflow's load must find them now) and loads `fulfilment@1`.
async fn load_fulfilment(nats: &async_nats::Client) -> anyhow::Result<()> {
    let options = CallOptions {
        timeout: Duration::from_secs(5),
        max_attempts: 5,
        ..CallOptions::default()
    };
    let registry = ServiceClient::new(nats.clone(), contracts::registry_api::contract()?).with_options(options.clone());
    system::register_shop_contracts(&registry).await?;
    let orchestrator = ServiceClient::new(nats.clone(), contracts::orchestrator_api::contract()?).with_options(options);
    system::load_fulfilment(&orchestrator).await?;
    Ok(())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}
