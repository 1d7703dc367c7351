//! `soa shop serve`: run some or all of the shop's five services (and, when
//! asked, the order view) in one process until Ctrl-C or SIGTERM, then stop
//! them cleanly: each service drains and deregisters, each consumer
//! finishes the event in hand.
//!
//! `soa up` and `soa demo` run the shop inside one process with everything
//! else; this command lets each service be its own OS process, so it can be
//! killed (SIGKILL) and started again on its own, as the fault tests and
//! `soa soak` do. The state lives in JetStream, so a killed service loses
//! nothing: its durable consumers redeliver what it had not acked.

use std::io::Write;
use std::time::Duration;

use bus_services::order_view::{OrderViewConfig, OrderViewService};
use bus_services::runtime::RegistrationConfig;
use bus_services::shop::{Shop, ShopConfig, ShopService};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::registry_client::connect;
use super::{Exit, NatsOptions, UsageError};

/// How long the services may take to answer discovery after they started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long draining the connection may take at the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `soa shop ...`.
#[derive(Debug, Subcommand)]
pub enum ShopCommand {
    /// Run shop services (all five by default) on NATS until Ctrl-C or SIGTERM.
    ///
    /// Prints one line once every service answers discovery. Exits 0 after
    /// a clean shutdown, 1 when a service stops on an error, 2 on a bad
    /// argument or when no NATS connection can be made.
    Serve(ShopServeArgs),
}

/// Arguments of `soa shop serve`.
#[derive(Debug, Args)]
pub struct ShopServeArgs {
    /// The services to run: orders, inventory, payments, shipping,
    /// notifications; all five when none is named.
    #[arg(value_name = "SERVICE", value_parser = parse_service)]
    pub services: Vec<ShopService>,
    /// Also run the order view (the shop's read model).
    #[arg(long)]
    pub order_view: bool,
    /// Seeds which orders are declined or cannot be shipped (a rule on the order id).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Share of payments declined (0 to 1).
    #[arg(long, default_value_t = 0.05, value_parser = parse_rate)]
    pub decline_rate: f64,
    /// Share of shipments that cannot be scheduled (0 to 1).
    #[arg(long, default_value_t = 0.05, value_parser = parse_rate)]
    pub shipping_failure_rate: f64,
    /// Units put on the shelves for a product that has no stock record yet,
    /// as SKU=UNITS; repeat for more products. A restarted inventory keeps
    /// the stock it has.
    #[arg(long, value_name = "SKU=UNITS", value_parser = parse_stock)]
    pub stock: Vec<(String, u64)>,
    /// Copies of the shop's buckets and streams when they are created (3 on a three-node cluster).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub replicas: u64,
    /// Do not register with the registry, nor heartbeat.
    #[arg(long)]
    pub no_register: bool,
}

/// Reads a shop service's name.
fn parse_service(text: &str) -> Result<ShopService, String> {
    ShopService::parse(text).ok_or_else(|| {
        let names: Vec<&str> = ShopService::ALL.iter().map(|service| service.name()).collect();
        format!("{text:?} is no shop service; name one of {}", names.join(", "))
    })
}

/// Reads a share from 0 to 1.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

/// Reads `SKU=UNITS`.
fn parse_stock(text: &str) -> Result<(String, u64), String> {
    let (sku, units) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not SKU=UNITS, such as sku-mug=1000"))?;
    let units = units
        .parse::<u64>()
        .map_err(|_| format!("{units:?} in {text:?} is not a whole number of units"))?;
    if sku.trim().is_empty() {
        return Err(format!("{text:?} names no SKU before '='"));
    }
    Ok((sku.to_owned(), units))
}

/// Runs `soa shop serve`.
pub(super) async fn run(
    nats: &NatsOptions,
    command: &ShopCommand,
    stdout: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let ShopCommand::Serve(args) = command;
    let mut services = if args.services.is_empty() {
        ShopService::ALL.to_vec()
    } else {
        args.services.clone()
    };
    services.sort();
    services.dedup();
    let name = match services.as_slice() {
        [one] => format!("soa-shop-{}", one.name()),
        _ => "soa-shop".to_owned(),
    };
    let client = connect(nats, &name, "run the shop").await?;
    let registration = (!args.no_register).then(RegistrationConfig::default);
    let replicas = usize::try_from(args.replicas).map_err(|_| UsageError("--replicas is too large".to_owned()))?;
    let config = ShopConfig {
        seed: args.seed,
        decline_rate: args.decline_rate,
        shipping_failure_rate: args.shipping_failure_rate,
        initial_stock: args.stock.clone(),
        replicas,
        registration: registration.clone(),
        ..ShopConfig::default()
    };
    let stop = shutdown.child_token();
    let shop = Shop::new(config);
    let mut running = {
        let (client, stop, services) = (client.clone(), stop.clone(), services.clone());
        tokio::spawn(async move { shop.run_only(&services, client, stop).await })
    };
    let mut view = args.order_view.then(|| {
        let service = OrderViewService::new(OrderViewConfig {
            registration,
            replicas,
            ..OrderViewConfig::default()
        });
        tokio::spawn(service.run(client.clone(), stop.clone()))
    });

    // Shutdown first: once it has begun, the shop ending is expected.
    let ready = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        ready = Shop::wait_until_serving(&client, &services, READY_TIMEOUT) => Some(ready),
        ended = &mut running => {
            stop.cancel();
            return Err(stopped_early("the shop", ended));
        }
    };
    if let Some(Err(error)) = ready {
        stop.cancel();
        drain(&client).await;
        return Err(anyhow::Error::new(error).context("the shop's services did not start"));
    }
    if ready.is_some() {
        let names: Vec<&str> = services.iter().map(|service| service.name()).collect();
        writeln!(
            stdout,
            "shop: serving {}{} on {}",
            names.join(", "),
            if args.order_view { " and the order view" } else { "" },
            nats.nats_url
        )?;
        stdout.flush()?;
    }

    // Until Ctrl-C, or until a part stops on its own (an error).
    let mut failure = None;
    let mut shop_task = Some(running);
    // A part that ends cleanly once shutdown has begun is no failure: it may
    // finish before this select sees the cancellation.
    tokio::select! {
        biased;
        () = stop.cancelled() => {}
        ended = async { match shop_task.as_mut() { Some(task) => task.await, None => std::future::pending().await } } => {
            shop_task = None;
            if !(stop.is_cancelled() && matches!(ended, Ok(Ok(())))) {
                failure = Some(stopped_early("the shop", ended));
            }
        }
        ended = async { match view.as_mut() { Some(task) => task.await, None => std::future::pending().await } } => {
            view = None;
            if !(stop.is_cancelled() && matches!(ended, Ok(Ok(())))) {
                failure = Some(stopped_early("the order view", ended));
            }
        }
    }
    stop.cancel();
    // Each part has its own shutdown timeout; this only keeps a stuck one from hanging the process.
    let grace = ShopConfig::default().shutdown_timeout + Duration::from_secs(5);
    if let Some(task) = shop_task {
        match tokio::time::timeout(grace, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(ended) => {
                failure.get_or_insert(stopped_early("the shop", ended));
            }
            Err(_) => {
                failure.get_or_insert(anyhow::anyhow!("the shop did not stop within {grace:?}"));
            }
        }
    }
    if let Some(task) = view {
        match tokio::time::timeout(grace, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(ended) => {
                failure.get_or_insert(stopped_early("the order view", ended));
            }
            Err(_) => {
                failure.get_or_insert(anyhow::anyhow!("the order view did not stop within {grace:?}"));
            }
        }
    }
    drain(&client).await;
    if let Some(error) = failure {
        return Err(error);
    }
    writeln!(stdout, "shop: stopped")?;
    Ok(Exit::Success)
}

/// A part that ended before shutdown, as an error.
fn stopped_early<E>(what: &str, ended: Result<Result<(), E>, tokio::task::JoinError>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    match ended {
        Ok(Ok(())) => anyhow::anyhow!("{what} stopped before shutdown"),
        Ok(Err(error)) => anyhow::Error::new(error).context(format!("{what} stopped")),
        Err(error) => anyhow::anyhow!("{what}'s task failed: {error}"),
    }
}

/// Drains the connection, bounded in time.
async fn drain(client: &async_nats::Client) {
    if tokio::time::timeout(DRAIN_TIMEOUT, client.drain()).await.is_err() {
        tracing::warn!("Draining the NATS connection took too long; closing it anyway.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_with_clear_errors() {
        assert_eq!(parse_service("payments"), Ok(ShopService::Payments));
        assert!(parse_service("billing").unwrap_err().contains("orders, inventory"));
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("lots").is_err());
        assert_eq!(parse_stock("sku-mug=12"), Ok(("sku-mug".to_owned(), 12)));
        assert!(parse_stock("sku-mug").unwrap_err().contains("SKU=UNITS"));
        assert!(parse_stock("=3").is_err());
        assert!(parse_stock("sku-mug=-1").is_err());
    }
}
