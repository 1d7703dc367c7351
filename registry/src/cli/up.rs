//! `soa up`: the whole shop on one NATS system, to explore by hand until
//! Ctrl-C: the registry (with its HTTP API and web page), the five shop
//! services with a few products on the shelves, the order view (the shop's
//! read model), and an orchestrator with `fulfilment@1` loaded. It is `soa demo`'s [`System`] without the
//! measured runs: it prints where everything is and commands to try, then
//! waits for the shutdown token and stops every part in order.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bus_services::connection::ConnectError;
use bus_services::orchestrator::OrchestratorConfig;
use bus_services::shop::ShopConfig;
use clap::Args;
use contracts::shop::orders::{GetOrder, PlaceOrder};
use contracts::shop::{FlowMode, LineItem, Money, OrderId};
use tokio_util::sync::CancellationToken;

use super::demo::system::{System, SystemOptions};
use super::{Exit, NatsOptions, UsageError};

/// Units of each stocked product: plenty, so stock is never why an order fails.
const PLENTY: u64 = 1_000_000;

/// The products on the shelves: SKU and price in cents. The last one is sold out.
const PRODUCTS: [(&str, u64); 5] = [
    ("sku-kettle", 3_499),
    ("sku-mug", 899),
    ("sku-tea", 499),
    ("sku-teapot", 2_499),
    ("sku-sold-out", 1_999),
];

/// The product nobody has.
const SOLD_OUT: &str = "sku-sold-out";

/// Arguments of `soa up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Serve the registry's HTTP API and web page here; port 0 takes a free port (the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Where a nats-server started here and the registry keep their files.
    #[arg(long, value_name = "DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// Seeds which orders are declined or cannot be shipped (a rule on the order id).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Share of payments declined (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub decline_rate: f64,
    /// Share of shipments that cannot be scheduled (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub shipping_failure_rate: f64,
    /// Seconds before a silent orchestrator's work is taken over by another replica.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub ack_wait: u64,
    /// Copies of the shop's, the order view's and the orchestrator's
    /// JetStream streams and buckets (3 with `--nats-url` naming a
    /// three-node cluster); existing ones with fewer are raised.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub replicas: u64,
}

/// Runs `soa up` until `shutdown`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &UpArgs,
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    for (name, rate) in [
        ("--decline-rate", args.decline_rate),
        ("--shipping-failure-rate", args.shipping_failure_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(UsageError(format!("{name} must be between 0 and 1, not {rate}")).into());
        }
    }
    if args.ack_wait == 0 {
        return Err(UsageError("--ack-wait must be at least 1 second".to_owned()).into());
    }
    let shop = ShopConfig {
        seed: args.seed,
        decline_rate: args.decline_rate,
        shipping_failure_rate: args.shipping_failure_rate,
        initial_stock: PRODUCTS
            .iter()
            .map(|(sku, _)| (sku.to_string(), if *sku == SOLD_OUT { 0 } else { PLENTY }))
            .collect(),
        replicas: usize::try_from(args.replicas).unwrap_or(1),
        ..ShopConfig::default()
    };
    let options = SystemOptions {
        who: "soa up",
        data_dir: args.data_dir.clone(),
        http: Some(args.http),
        shop: shop.clone(),
        orchestrator: OrchestratorConfig {
            ack_wait: Duration::from_secs(args.ack_wait),
            replicas: shop.replicas,
            ..OrchestratorConfig::default()
        },
    };
    writeln!(
        out,
        "soa up: the shop's five services, the registry and the fulfilment orchestrator, until Ctrl-C\n"
    )?;
    out.flush()?;
    let system = match System::start(nats, options, out).await {
        Ok(system) => system,
        Err(error) => return Err(classify_start_error(error)),
    };
    let http = system.http.unwrap_or(args.http);
    let examples = Examples::new(&shop, &run_id());
    write_ready(out, &system.url, &connection_hints(nats), http, args, &examples)?;
    out.flush()?;

    shutdown.cancelled().await;
    writeln!(out, "\nsoa up: stopping.")?;
    out.flush()?;
    system.stop(out).await;
    writeln!(out, "soa up: stopped.")?;
    Ok(Exit::Success)
}

/// A failed start whose cause is the NATS connection (a bad URL, refused
/// credentials, TLS, a server too old) is a usage error: the options must
/// change before anything can run. Anything else stays a failure.
fn classify_start_error(error: anyhow::Error) -> anyhow::Error {
    let usage = error.downcast_ref::<UsageError>().is_some();
    let connection = error
        .chain()
        .any(|cause| cause.downcast_ref::<ConnectError>().is_some());
    if connection && !usage {
        error.context(UsageError(
            "could not use the NATS server; check --nats-url and the credential and TLS options".to_owned(),
        ))
    } else {
        error
    }
}

/// The example orders `soa up` suggests: one per mode, with ids that the
/// seeded rules let complete, fresh for each start.
#[derive(Debug, Clone)]
struct Examples {
    orchestrated: PlaceOrder,
    choreographed: PlaceOrder,
}

impl Examples {
    fn new(shop: &ShopConfig, run: &str) -> Self {
        let order = |mode: FlowMode, prefix: &str| {
            // The first id the seeded rules do not fail; with rates of 1
            // every id fails, and the first is as good as any.
            let id = (1..=1_000)
                .map(|n| format!("{prefix}-{run}-{n}"))
                .find(|id| !shop.declines(id) && !shop.shipping_fails(id))
                .unwrap_or_else(|| format!("{prefix}-{run}-1"));
            let line = |sku: &str, quantity: u32| {
                let cents = PRODUCTS
                    .iter()
                    .find(|(known, _)| *known == sku)
                    .map_or(100, |(_, cents)| *cents);
                LineItem {
                    sku: sku.to_owned(),
                    quantity,
                    unit_price: Money {
                        amount_cents: cents,
                        currency: "EUR".to_owned(),
                    },
                }
            };
            PlaceOrder {
                order_id: OrderId(id),
                customer_id: "cust-42".to_owned(),
                items: vec![line("sku-kettle", 1), line("sku-mug", 2)],
                mode,
            }
        };
        Self {
            orchestrated: order(FlowMode::Orchestrated, "orch"),
            choreographed: order(FlowMode::Choreographed, "chor"),
        }
    }
}

/// The lines that give another terminal's `soa` the same credentials and
/// TLS files as this one (secrets named, never printed).
fn connection_hints(nats: &NatsOptions) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(creds) = &nats.creds {
        hints.push(format!("export NATS_CREDS={}", creds.display()));
    }
    if let Some(nkey) = &nats.nkey {
        hints.push(format!("export NATS_NKEY={}", nkey.display()));
    }
    if let Some(user) = &nats.user {
        hints.push(format!(
            "export NATS_USER={user} NATS_PASSWORD=<the password given to soa up>"
        ));
    }
    if nats.token.is_some() {
        hints.push("export NATS_TOKEN=<the token given to soa up>".to_owned());
    }
    let tls: Vec<String> = [
        ("--tls-ca", &nats.tls_ca),
        ("--tls-cert", &nats.tls_cert),
        ("--tls-key", &nats.tls_key),
    ]
    .into_iter()
    .filter_map(|(flag, file)| file.as_ref().map(|file| format!("{flag} {}", file.display())))
    .collect();
    if !tls.is_empty() {
        hints.push(format!("alias soa='soa {}'", tls.join(" ")));
    }
    hints
}

/// Prints where everything is and what to try.
fn write_ready(
    out: &mut dyn Write,
    url: &str,
    connection: &[String],
    http: SocketAddr,
    args: &UpArgs,
    examples: &Examples,
) -> anyhow::Result<()> {
    let stocked: Vec<&str> = PRODUCTS
        .iter()
        .map(|(sku, _)| *sku)
        .filter(|sku| *sku != SOLD_OUT)
        .collect();
    writeln!(out)?;
    writeln!(out, "NATS       {url}")?;
    writeln!(
        out,
        "Registry   http://{http}/  (the web page; the API under /v1/, its OpenAPI document at /openapi.json)"
    )?;
    writeln!(
        out,
        "Products   {} (plenty of each), {SOLD_OUT} (none)",
        stocked.join(", ")
    )?;
    writeln!(
        out,
        "Failures   seed {}: {}% of payments declined, {}% of shipments unavailable, decided by order id",
        args.seed,
        args.decline_rate * 100.0,
        args.shipping_failure_rate * 100.0
    )?;
    let place = |order: &PlaceOrder| serde_json::to_string(order);
    let orchestrated = &examples.orchestrated.order_id.0;
    let choreographed = &examples.choreographed.order_id.0;
    let get = serde_json::to_string(&GetOrder {
        order_id: examples.orchestrated.order_id.clone(),
    })?;
    writeln!(out, "\nTry, from another terminal:")?;
    for command in std::iter::once(format!("export NATS_URL={url}"))
        .chain(connection.iter().cloned())
        .chain([
            "soa services".to_owned(),
            "soa describe orders".to_owned(),
            format!("soa request shop.orders.v1.place '{}'", place(&examples.orchestrated)?),
            format!("soa request shop.orders.v1.place '{}'", place(&examples.choreographed)?),
            format!("soa request shop.orders.v1.get '{get}'"),
            "soa workflow list".to_owned(),
            format!("soa order timeline {orchestrated}"),
            format!("soa order timeline {choreographed}"),
            format!("soa order-view get {orchestrated}"),
            "soa order-view list --status completed".to_owned(),
            "soa order-view stats".to_owned(),
            "soa order-view rebuild".to_owned(),
        ])
    {
        writeln!(out, "   {command}")?;
    }
    writeln!(
        out,
        "   (an order with {SOLD_OUT} is cancelled and its steps undone; the timeline shows how)"
    )?;
    writeln!(out, "\nsoa up: ready; Ctrl-C stops everything.")?;
    Ok(())
}

/// A short id for this start, so the example orders are new each time on a
/// server that kept earlier ones.
fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let mut n = millis;
    let mut text = String::new();
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    while n > 0 {
        text.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
    }
    text.chars().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_orders_complete_under_the_seeded_rules_and_are_valid() {
        let shop = ShopConfig {
            seed: 7,
            decline_rate: 0.5,
            shipping_failure_rate: 0.5,
            ..ShopConfig::default()
        };
        let examples = Examples::new(&shop, "abc");
        let contract = contracts::shop::orders::contract().unwrap();
        let compiled = contracts::compile_contract(&contract, &contracts::SchemaSet::default()).unwrap();
        let place = contracts::MessageKey::Request(contracts::MemberName::parse("place").unwrap());
        let validator = &compiled.validators[&place];
        for (order, mode) in [
            (&examples.orchestrated, FlowMode::Orchestrated),
            (&examples.choreographed, FlowMode::Choreographed),
        ] {
            assert_eq!(order.mode, mode);
            assert!(!shop.declines(&order.order_id.0) && !shop.shipping_fails(&order.order_id.0));
            validator.validate(&serde_json::to_value(order).unwrap()).unwrap();
        }
        assert!(examples.orchestrated.order_id.0.starts_with("orch-abc-"));
        assert!(examples.choreographed.order_id.0.starts_with("chor-abc-"));
    }

    fn options() -> NatsOptions {
        NatsOptions {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            creds: None,
            token: None,
            nkey: None,
            user: None,
            password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    #[test]
    fn another_terminal_is_told_the_same_credentials_without_the_secrets() {
        assert!(connection_hints(&options()).is_empty());
        let given = NatsOptions {
            creds: Some(PathBuf::from("/keys/app.creds")),
            user: Some("shop".to_owned()),
            password: Some("s3cret".to_owned()),
            token: Some("t0ken".to_owned()),
            tls_ca: Some(PathBuf::from("/tls/ca.pem")),
            tls_cert: Some(PathBuf::from("/tls/client.pem")),
            tls_key: Some(PathBuf::from("/tls/client.key")),
            ..options()
        };
        let hints = connection_hints(&given);
        assert_eq!(
            hints,
            [
                "export NATS_CREDS=/keys/app.creds",
                "export NATS_USER=shop NATS_PASSWORD=<the password given to soa up>",
                "export NATS_TOKEN=<the token given to soa up>",
                "alias soa='soa --tls-ca /tls/ca.pem --tls-cert /tls/client.pem --tls-key /tls/client.key'",
            ]
        );
        assert!(!hints.concat().contains("s3cret") && !hints.concat().contains("t0ken"));
    }
}
