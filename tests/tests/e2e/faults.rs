//! Faults under load, with real processes: the registry (`soa registry
//! serve --store kv`, so registrations live in the server's store), the
//! orchestrator and each shop service (`soa shop serve <service>`) are
//! child processes, orders flow in both modes from a steady driver, and
//! then the NATS server is stopped and started again on the same port and
//! store, or each process is killed with SIGKILL and restarted. Afterwards
//! every acknowledged order has ended, completed or compensated, nobody was
//! charged twice, stock and money balance, every registration is still there
//! and every service is registered again.

use std::time::Duration;

use bus_services::shop::{DriveConfig, Invariants, OrderDriver, Placements, ShopService, wait_settled};
use tests::NatsServer;
use tests::faults::{Part, ShopProcesses, initial_stock, registrations, wait_registered};
use tests::shop::{SOLD_OUT, STOCKED};

/// Orders started per second, both modes together.
const RATE: f64 = 25.0;

/// How long the orders get to settle once the load stops: generous, for a loaded machine.
const SETTLE: Duration = Duration::from_secs(120);

/// How long the services get to be registered again (heartbeats every 5 s).
const REREGISTER: Duration = Duration::from_secs(30);

/// The services every instance listing must show once the shop is back.
const LIVE: [&str; 7] = [
    "orders",
    "inventory",
    "payments",
    "shipping",
    "notifications",
    "orchestrator",
    "registry",
];

fn driver(nats: async_nats::Client, prefix: &str) -> OrderDriver {
    OrderDriver::start(
        nats,
        DriveConfig {
            prefix: prefix.to_owned(),
            rate_per_second: RATE,
            skus: STOCKED.iter().map(|sku| (*sku).to_owned()).collect(),
            sold_out: Some(SOLD_OUT.to_owned()),
            out_of_stock_rate: 0.05,
            seed: 9,
            call_timeout: Duration::from_secs(3),
            give_up_after: Duration::from_secs(60),
        },
    )
    .unwrap()
}

/// Waits for the orders to settle and checks every invariant, printing
/// what is stuck (and where the processes logged) when one fails.
async fn assert_settled(nats: &async_nats::Client, placements: &Placements, shop: &ShopProcesses) -> Invariants {
    assert!(
        placements.unacknowledged.is_empty(),
        "orders never acknowledged: {:?}",
        placements.unacknowledged
    );
    let (invariants, _books) = wait_settled(nats, placements, &initial_stock(), SETTLE).await.unwrap();
    assert!(
        invariants.hold(),
        "the books do not hold after {SETTLE:?} (process logs in {}):\n{invariants}",
        shop.log_dir().display()
    );
    // Both modes ran, and some orders took each way to their end.
    assert!(
        invariants.orchestrated > 0 && invariants.choreographed > 0,
        "{invariants}"
    );
    assert!(invariants.completed > 0 && invariants.compensated > 0, "{invariants}");
    invariants
}

/// Every registration acknowledged before is still there, and every
/// service has an instance that beat since `since` (the last fault).
async fn assert_registered(
    nats: &async_nats::Client,
    before: &std::collections::BTreeMap<String, Vec<String>>,
    since: tokio::time::Instant,
) {
    let after = registrations(nats).await.unwrap();
    for (service, versions) in before {
        let now = after.get(service);
        assert!(
            now.is_some_and(|now| versions.iter().all(|version| now.contains(version))),
            "{service} {versions:?} was registered before and is {now:?} now"
        );
    }
    let live = wait_registered(nats, &LIVE, since, REREGISTER).await.unwrap();
    for service in LIVE {
        assert!(
            live.get(service).is_some_and(|count| *count > 0),
            "{service} has not beaten since the last fault, {REREGISTER:?} after it: {live:?}"
        );
    }
}

#[tokio::test]
async fn a_nats_server_restart_under_load_loses_no_order_and_no_registration() {
    tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let mut shop = ShopProcesses::start(&server, 21).await.unwrap();
    let nats = server.client().await.unwrap();
    // Registered before the outage: the shop's contracts, the registry's
    // own, the orchestrator's and the workflow's.
    let before = registrations(&nats).await.unwrap();
    for service in ShopService::ALL {
        assert!(before.contains_key(service.name()), "{before:?}");
    }
    assert!(before.contains_key("fulfilment"), "{before:?}");
    let live = wait_registered(&nats, &LIVE, tokio::time::Instant::now(), REREGISTER)
        .await
        .unwrap();
    assert!(LIVE.iter().all(|service| live.contains_key(*service)), "{live:?}");

    let load = driver(nats.clone(), "restart");
    assert!(load.wait_acknowledged(60, Duration::from_secs(30)).await);
    server.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.restart().await.unwrap();
    let restarted = tokio::time::Instant::now();
    let resumed = load.progress().acknowledged();
    // Orders keep coming after the restart, and are acknowledged again.
    assert!(
        load.wait_acknowledged(resumed + 100, Duration::from_secs(45)).await,
        "orders were not acknowledged after the restart (process logs in {})",
        shop.log_dir().display()
    );
    let placements = load.finish().await;
    // The outage was felt: orders placed during it were refused and placed again.
    assert!(
        placements.attempts > placements.acknowledged.len() as u64,
        "{} place calls for {} orders",
        placements.attempts,
        placements.acknowledged.len()
    );

    let invariants = assert_settled(&nats, &placements, &shop).await;
    eprintln!("after a server restart:\n{invariants}");
    assert_registered(&nats, &before, restarted).await;
    assert_eq!(shop.exited(), [], "a process died with the server");
    let unclean = shop.terminate().await.unwrap();
    assert_eq!(unclean, [], "these did not stop cleanly on SIGTERM");
}

#[tokio::test]
async fn killed_processes_lose_no_order_and_come_back() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let mut shop = ShopProcesses::start(&server, 22).await.unwrap();
    let nats = server.client().await.unwrap();
    let before = registrations(&nats).await.unwrap();

    let load = driver(nats.clone(), "kill");
    assert!(load.wait_acknowledged(40, Duration::from_secs(30)).await);
    let mut last_start = tokio::time::Instant::now();
    let mut parts = vec![Part::Registry, Part::Orchestrator];
    parts.extend(ShopService::ALL.map(Part::Service));
    for part in parts {
        shop.kill(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        shop.start_part(part).await.unwrap();
        last_start = tokio::time::Instant::now();
        let acknowledged = load.progress().acknowledged();
        assert!(
            load.wait_acknowledged(acknowledged + 20, Duration::from_secs(30)).await,
            "orders were not acknowledged after the {part} came back (process logs in {})",
            shop.log_dir().display()
        );
    }
    let placements = load.finish().await;

    let invariants = assert_settled(&nats, &placements, &shop).await;
    eprintln!("after killing every process in turn:\n{invariants}");
    // The last process started has beaten since; the others beat every 5 s.
    assert_registered(&nats, &before, last_start).await;
    assert_eq!(shop.exited(), [], "a process died by itself");
    let unclean = shop.terminate().await.unwrap();
    assert_eq!(unclean, [], "these did not stop cleanly on SIGTERM");
}

/// Runs `soa` in this process; returns its exit code and standard error.
async fn soa_in_process(args: &[&str]) -> (registry::cli::Exit, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = registry::cli::run(
        std::iter::once("soa").chain(args.iter().copied()),
        &mut out,
        &mut err,
        registry::cli::CancellationToken::new(),
    )
    .await;
    (exit, String::from_utf8_lossy(&err).into_owned())
}

#[tokio::test]
async fn shop_serve_and_soak_refuse_bad_arguments_with_exit_2() {
    for (args, expected) in [
        (&["shop", "serve", "billing"][..], "no shop service"),
        (&["shop", "serve", "--decline-rate", "2"][..], "from 0 to 1"),
        (&["shop", "serve", "--stock", "sku-mug"][..], "SKU=UNITS"),
        (&["soak", "--minutes", "0"][..], "--minutes"),
        (&["soak", "--rate", "0"][..], "--rate"),
        (
            &["soak", "--kill-every-min", "30", "--kill-every-max", "10"][..],
            "--kill-every-min",
        ),
    ] {
        let (exit, err) = soa_in_process(args).await;
        assert_eq!(exit, registry::cli::Exit::Usage, "soa {args:?}: {err}");
        assert!(err.contains(expected), "soa {args:?}: {err}");
    }
    // No server answers: a usage error that names the URL, not a hang.
    let (exit, err) = soa_in_process(&["--nats-url", "nats://127.0.0.1:1", "shop", "serve"]).await;
    assert_eq!(exit, registry::cli::Exit::Usage, "{err}");
    assert!(err.contains("nats://127.0.0.1:1"), "{err}");
}
