//! `soa demo`: order fulfilment twice, orchestrated and choreographed, on
//! the same seeded orders, side by side.
//!
//! It uses the server at `--nats-url` or starts the installed nats-server,
//! runs the registry on its embedded store, the five shop services and an
//! orchestrator with `fulfilment@1` and the order view ([`system`]); runs
//! the orders through each mode ([`run`]), audits every service's store,
//! checks the order view (the read model) against it and takes its lag
//! ([`view`]), and prints and writes the comparison ([`report`]):
//! `report.json` and a Mermaid diagram per mode drawn from the registry's
//! graph.

mod orders;
mod report;
mod run;
pub(crate) mod system;
mod view;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bus_services::orchestrator::OrchestratorConfig;
use bus_services::runtime::ServiceClient;
use bus_services::shop::{ShopConfig, ShopService};
use clap::Args;
use contracts::registry_api::{GraphRequest, ops as registry_ops};
use contracts::shop::FlowMode;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Exit, NatsOptions, UsageError};
use orders::OrderSet;
use run::{Faults, mode_name};
use system::{System, SystemOptions};

/// Arguments of `soa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders per mode.
    #[arg(long, default_value_t = 2_000)]
    pub orders: usize,
    /// Orders placed at once; the orchestrator drives up to four times as
    /// many workflow instances at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Share of payments declined (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub decline_rate: f64,
    /// Share of orders asking for a sold-out product (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub out_of_stock_rate: f64,
    /// Share of shipments that cannot be scheduled (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub shipping_failure_rate: f64,
    /// Seeds the orders and which of them fail.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where report.json and the Mermaid diagrams go.
    #[arg(long, value_name = "DIR", default_value = ".data/demo")]
    pub out: PathBuf,
    /// Where a nats-server started by the demo and the registry keep their files.
    #[arg(long, value_name = "DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// Kill the orchestrator this often (seconds) during the orchestrated run, and start a new one.
    #[arg(long, value_name = "SECS")]
    pub kill_orchestrator_every: Option<u64>,
    /// Stop this shop service for 3 s during each mode, then start it again.
    #[arg(long, value_name = "NAME")]
    pub restart_service: Option<String>,
    /// Seconds before a killed orchestrator's work is taken over.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub ack_wait: u64,
    /// Do not count the messages on the bus. The counter gets a copy of
    /// every message, which costs about a tenth of the throughput on a
    /// 2-core machine; use this to measure throughput and latency alone.
    #[arg(long)]
    pub no_message_count: bool,
}

/// Workflow instances the demo's orchestrator drives at once, per order
/// placed at once.
const ORCHESTRATOR_IN_FLIGHT_FACTOR: usize = 4;

/// Runs `soa demo`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &DemoArgs,
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    for (name, rate) in [
        ("--decline-rate", args.decline_rate),
        ("--out-of-stock-rate", args.out_of_stock_rate),
        ("--shipping-failure-rate", args.shipping_failure_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(UsageError(format!("{name} must be between 0 and 1, not {rate}")).into());
        }
    }
    if args.orders == 0 {
        return Err(UsageError("--orders must be at least 1".to_owned()).into());
    }
    let restart_service = match &args.restart_service {
        None => None,
        Some(name) => Some(ShopService::parse(name).ok_or_else(|| {
            UsageError(format!(
                "--restart-service {name:?} is no shop service; use one of orders, inventory, payments, shipping, notifications"
            ))
        })?),
    };
    let run_id = run_id();
    let set = OrderSet::generate(run_id.clone(), args.orders, args.seed, args.out_of_stock_rate);
    writeln!(
        out,
        "soa demo: {} orders fulfilled twice, by the fulfilment workflow (orchestrated) and by services reacting to events (choreographed)\n",
        args.orders
    )?;
    writeln!(out, "1. The system:")?;
    let options = SystemOptions {
        who: "the demo",
        data_dir: args.data_dir.clone(),
        http: None,
        shop: ShopConfig {
            seed: args.seed,
            decline_rate: args.decline_rate,
            shipping_failure_rate: args.shipping_failure_rate,
            outcome_prefixes: vec![set.prefix(FlowMode::Orchestrated), set.prefix(FlowMode::Choreographed)],
            initial_stock: set.stock(),
            ..ShopConfig::default()
        },
        orchestrator: OrchestratorConfig {
            ack_wait: Duration::from_secs(args.ack_wait.max(1)),
            // Instances driven at once. A placed order is handed over as soon
            // as its workflow starts, so with the placing bound itself the
            // work queue grew and the orchestrated latency was mostly queueing
            // (p50 2.4 s, against 0.23 s at four times it, which also gave
            // 1.2x the orders/s). Still bounded, so the services are not flooded.
            max_in_flight: args.concurrency.max(1).saturating_mul(ORCHESTRATOR_IN_FLIGHT_FACTOR),
            ..OrchestratorConfig::default()
        },
    };
    let system = System::start(nats, options, out).await?;
    let system = Arc::new(Mutex::new(system));
    let result = compare(&system, &set, args, restart_service, out, &shutdown).await;
    writeln!(out, "\n5. Shutting down.")?;
    match Arc::try_unwrap(system) {
        Ok(system) => system.into_inner().stop(out).await,
        Err(_) => writeln!(out, "   (a part is still in use; it stops with the process)")?,
    }
    result
}

async fn compare(
    system: &Arc<Mutex<System>>,
    set: &OrderSet,
    args: &DemoArgs,
    restart_service: Option<ShopService>,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<Exit> {
    let faults = Faults {
        kill_orchestrator_every: args.kill_orchestrator_every.map(Duration::from_secs),
        restart_service,
    };
    let load_before = load_average();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut runs = Vec::new();
    for (step, mode) in [(2, FlowMode::Orchestrated), (3, FlowMode::Choreographed)] {
        writeln!(out, "\n{step}. The {} flow:", mode_name(mode))?;
        out.flush()?;
        let run = tokio::select! {
            run = run::run_mode(system, set, mode, args.concurrency, &faults, !args.no_message_count, progress) => run?,
            () = shutdown.cancelled() => {
                writeln!(out, "   Interrupted.")?;
                return Ok(Exit::Failure);
            }
        };
        writeln!(
            out,
            "   {} of {} orders ended in {:.1} s.",
            run.ended_at_ms.len(),
            set.templates.len(),
            run.elapsed.as_secs_f64()
        )?;
        runs.push(run);
    }
    let load_after = load_average();
    writeln!(out, "\n4. The comparison:\n")?;
    let nats = system.lock().await.nats.clone();
    let audit = settled_audit(&nats, out).await?;
    let order_view = view::check(&nats, set, &audit).await?;
    let registry = ServiceClient::new(nats, contracts::registry_api::contract()?);
    let graph = registry
        .call::<registry_ops::Graph>(&GraphRequest::default())
        .await
        .context("reading the registry's graph")?;
    let settings = report::Settings {
        concurrency: args.concurrency,
        decline_rate: args.decline_rate,
        out_of_stock_rate: args.out_of_stock_rate,
        shipping_failure_rate: args.shipping_failure_rate,
        seed: args.seed,
        kill_orchestrator_every_s: args.kill_orchestrator_every,
        restart_service: args.restart_service.clone(),
    };
    let report = report::build(
        set,
        settings,
        [load_before, load_after],
        &runs,
        &audit,
        &graph,
        order_view,
    );
    report::print(&report, out)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    for mode in [FlowMode::Orchestrated, FlowMode::Choreographed] {
        let path = args.out.join(format!("{}.mmd", mode_name(mode)));
        let diagram = crate::export::graph::mermaid(&report::mode_graph(&graph, mode));
        std::fs::write(&path, diagram).with_context(|| format!("writing {}", path.display()))?;
    }
    writeln!(
        out,
        "\n   Written: {} and the Mermaid diagrams orchestrated.mmd, choreographed.mmd (from the registry's graph).",
        json.display()
    )?;
    let healthy = report.violations.is_empty()
        && report.outcome_mismatches.is_empty()
        && report.order_view.mismatch_count == 0
        && report.modes.values().all(|mode| mode.stuck == 0);
    Ok(if healthy { Exit::Success } else { Exit::Failure })
}

/// The audit, once the books have settled: a choreographed order ends as
/// soon as the orders service hears of its failure, while its refund and
/// release are other services' reactions still on their way (a service
/// restarted meanwhile gets them again after its consumers' ack wait).
async fn settled_audit(nats: &async_nats::Client, out: &mut dyn Write) -> anyhow::Result<bus_services::shop::Audit> {
    const SETTLE: Duration = Duration::from_secs(20);
    let began = std::time::Instant::now();
    loop {
        let audit = bus_services::shop::audit(nats.clone())
            .await
            .context("auditing the shop's stores")?;
        if audit.violations().is_empty() || began.elapsed() > SETTLE {
            if began.elapsed() > Duration::from_millis(500) {
                writeln!(
                    out,
                    "   (waited {:.1} s for the last compensations to land before auditing)\n",
                    began.elapsed().as_secs_f64()
                )?;
            }
            return Ok(audit);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A short id for this run, so its orders and products are its own on a
/// server that kept earlier runs.
fn run_id() -> String {
    let millis = run::now_ms();
    let mut n = millis;
    let mut text = String::new();
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    while n > 0 {
        text.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
    }
    text.chars().rev().collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
