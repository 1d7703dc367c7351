//! A three-node NATS cluster ([`NatsCluster`]): the registry on its KV
//! store, two orchestrator replicas and the shop, every JetStream asset with
//! three replicas, each part connected with the seed list of all three
//! nodes. One node is killed (SIGKILL) and restarted while orders flow in
//! both modes; afterwards every acknowledged registration is still there,
//! every service is registered again, every order ended completed or
//! compensated, none was charged twice, and stock and money balance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bus_services::orchestrator::{Orchestrator, OrchestratorConfig};
use bus_services::runtime::{
    RegistrationConfig, ServiceClient, ServiceConfig, ensure_event_stream, ensure_event_stream_with_replicas,
};
use bus_services::shop::{Audit, Shop, ShopConfig, ShopService, audit};
use contracts::orchestrator_api::{ShowRequest, ops as orchestrator_ops};
use contracts::registry_api::{GetRequest, InstancesRequest, RegisterRequest, ops as registry_ops};
use contracts::shop::orders::{self, PlaceOrder};
use contracts::shop::{FlowMode, OrderStatus};
use contracts::{ServiceName, Version};
use futures::StreamExt;
use registry::catalog::Catalog;
use registry::server::{Registry, RegistryOptions};
use registry::store::KvStore;
use tests::NatsCluster;
use tests::registry::{SHOP_OWNER_TOKEN, register_shop, wait_until_answering};
use tests::shop::{PLENTY, STOCKED, load_fulfilment, order, shop_config};
use tests::workflows::{ledger_contract, test_config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Copies of every stream and bucket: one per node.
const REPLICAS: usize = 3;

/// The registry's KV bucket.
const REGISTRY_BUCKET: &str = "soa_registry_cluster";

/// The owner of the probe contract registered while the node is down.
const PROBE_OWNER: &str = "probe-team";

/// Time between two orders placed (about twelve a second).
const ORDER_INTERVAL: Duration = Duration::from_millis(80);

/// How long orders flow before the kill, while the node is down, and after it is back.
const BEFORE_KILL: Duration = Duration::from_secs(4);
const OUTAGE: Duration = Duration::from_secs(5);
const AFTER_RESTART: Duration = Duration::from_secs(3);

/// How long one order may take to be acknowledged (placed again until then)
/// and every order to settle; bounds against a hang, not timing goals: a
/// loaded machine (CI runs the e2e tests in parallel on two cores) slows
/// elections and the parts' set-up, which tries again for up to a minute.
const PLACE_DEADLINE: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(120);

/// How long a part may take to start (the workflow to load, the shop to
/// serve, every service to be listed); a bound against a hang as well.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A part of the system running in this process, as its own process would.
struct Part {
    name: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), String>>,
    nats: async_nats::Client,
}

impl Part {
    fn spawn<F, E>(name: &str, nats: async_nats::Client, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let shutdown = CancellationToken::new();
        let future = run(shutdown.clone());
        let task = tokio::spawn(async move { future.await.map_err(|error| error.to_string()) });
        Self {
            name: name.to_owned(),
            shutdown,
            task,
            nats,
        }
    }

    /// Fails the test, with the part's own error, when it stopped on its own.
    async fn assert_running(&mut self) {
        if self.task.is_finished() {
            let outcome = (&mut self.task).await;
            panic!("{} stopped on its own during the run: {outcome:?}", self.name);
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "{} did not stop cleanly: {stopped:?}",
            self.name
        );
        let _ = self.nats.drain().await;
    }
}

/// A registry replica on the shared KV bucket with three replicas, and its catalogue.
async fn start_registry(name: &str, nats: async_nats::Client) -> (Part, Arc<Catalog>) {
    let store = KvStore::open(jetstream::new(nats.clone()), REGISTRY_BUCKET, REPLICAS)
        .await
        .unwrap();
    let options = RegistryOptions {
        expiry_interval: Duration::from_millis(200),
        // Replicas on one store see every heartbeat, not only those they answer.
        observe_all_beats: true,
        service: ServiceConfig {
            registration: None,
            ..ServiceConfig::default()
        },
        ..RegistryOptions::default()
    };
    let registry = Registry::open(Arc::new(store), options).await.unwrap();
    let catalog = Arc::clone(registry.catalog());
    let part = Part::spawn(name, nats.clone(), |shutdown| registry.run(nats.clone(), shutdown));
    wait_until_answering(&ServiceClient::new(
        part.nats.clone(),
        contracts::registry_api::contract().unwrap(),
    ))
    .await
    .unwrap();
    (part, catalog)
}

fn orchestrator_config() -> OrchestratorConfig {
    OrchestratorConfig {
        replicas: REPLICAS,
        ..test_config()
    }
}

fn cluster_shop_config() -> ShopConfig {
    ShopConfig {
        decline_rate: 0.15,
        shipping_failure_rate: 0.1,
        replicas: REPLICAS,
        registration: Some(RegistrationConfig {
            heartbeat_interval: Duration::from_secs(1),
            ttl: Duration::from_secs(4),
            owner_token: Some(SHOP_OWNER_TOKEN.to_owned()),
            ..RegistrationConfig::default()
        }),
        ..shop_config(9)
    }
}

/// The `n`th order: modes alternate, quantities vary.
fn nth_order(n: u64) -> PlaceOrder {
    let (prefix, mode) = if n.is_multiple_of(2) {
        ("orch", FlowMode::Orchestrated)
    } else {
        ("chor", FlowMode::Choreographed)
    };
    let kettles = u32::try_from(1 + n % 2).unwrap();
    let mugs = u32::try_from(1 + n % 3).unwrap();
    order(
        &format!("{prefix}-{n}"),
        mode,
        &[("sku-kettle", kettles, 2999), ("sku-mug", mugs, 850)],
    )
}

/// Places `order` until the orders service acknowledges it (a client's
/// retry: the same order id, so placing it again changes nothing).
async fn place_until_acknowledged(client: ServiceClient, order: PlaceOrder) -> Result<PlaceOrder, String> {
    let deadline = tokio::time::Instant::now() + PLACE_DEADLINE;
    loop {
        match client.call::<orders::Place>(&order).await {
            Ok(_) => return Ok(order),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(order = %order.order_id.0, error = %error, "Placing again.");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(format!("{} was never acknowledged: {error}", order.order_id.0)),
        }
    }
}

/// Registers versions 1.0.0, 1.0.1, ... of the probe contract one after the
/// other until `stop`, each until acknowledged; returns the acknowledged ones.
async fn register_probes(client: ServiceClient, stop: CancellationToken) -> Vec<Version> {
    let base = ledger_contract().unwrap().to_value();
    let mut acknowledged = Vec::new();
    let mut patch = 0;
    while !stop.is_cancelled() {
        let version = Version::parse(&format!("1.0.{patch}")).unwrap();
        let mut document = base.clone();
        document["version"] = serde_json::json!(version.to_string());
        let request = RegisterRequest {
            document,
            owner_token: Some(PROBE_OWNER.to_owned()),
        };
        match client.call::<registry_ops::Register>(&request).await {
            Ok(_) => {
                acknowledged.push(version);
                patch += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            // Not acknowledged: register the same version again (stored or
            // not, the same digest is accepted).
            Err(error) => {
                tracing::debug!(%version, error = %error, "Registering again.");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    acknowledged
}

/// Every stream's name, replicas and leader.
async fn streams(js: &jetstream::Context) -> Vec<(String, usize, Option<String>)> {
    let mut names = js.stream_names();
    let mut out = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.unwrap();
        let info = js.get_stream(&name).await.unwrap().info().await.unwrap().clone();
        let leader = info.cluster.and_then(|cluster| cluster.leader);
        out.push((name, info.config.num_replicas, leader));
    }
    out.sort();
    out
}

/// Polls the books until every order in `placed` is settled and nothing is
/// wrong; on timeout, fails naming each stuck or wrong order with its books
/// and, when orchestrated, its workflow instance's history.
async fn settled(nats: &async_nats::Client, placed: &[PlaceOrder]) -> Audit {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let books = audit(nats.clone()).await;
        if let Ok(books) = &books {
            let stuck: Vec<&PlaceOrder> = placed
                .iter()
                .filter(|order| !books.orders.get(&order.order_id.0).is_some_and(|row| row.is_settled()))
                .collect();
            if stuck.is_empty() && books.violations().is_empty() && books.unsettled().is_empty() {
                return books.clone();
            }
            if tokio::time::Instant::now() > deadline {
                let mut rows = Vec::new();
                let orchestrator = ServiceClient::new(nats.clone(), contracts::orchestrator_api::contract().unwrap());
                for row in books.orders.values() {
                    let stuck_here = stuck.iter().any(|order| order.order_id.0 == row.order_id);
                    if !stuck_here && row.violations().is_empty() {
                        continue;
                    }
                    rows.push(format!("{row:?}"));
                    if let Some(instance) = &row.instance {
                        let shown = orchestrator
                            .call::<orchestrator_ops::Show>(&ShowRequest {
                                instance: instance.clone(),
                            })
                            .await;
                        rows.push(format!("  its instance: {shown:#?}"));
                    }
                }
                panic!(
                    "not settled within {SETTLE:?}: {} of {} orders stuck:\n{}\nunsettled in the books: {:?}\n\
                     violations: {:#?}",
                    stuck.len(),
                    placed.len(),
                    rows.join("\n"),
                    books.unsettled(),
                    books.violations()
                );
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("the books could not be read: {books:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the registry replica with `catalog` lists a healthy instance
/// of every shop service.
async fn wait_for_instances(catalog: &Catalog, which: &str) {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        let listed = catalog.list_instances(&InstancesRequest::default(), std::time::Instant::now());
        let missing: Vec<&str> = ShopService::ALL
            .iter()
            .map(|service| service.name())
            .filter(|name| {
                !listed
                    .instances
                    .iter()
                    .any(|instance| instance.healthy && instance.contract.service.as_str() == *name)
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{which} lists no healthy instance of {missing:?}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_and_restarted_while_orders_flow_loses_nothing() {
    tests::init_tracing();
    let mut cluster = NatsCluster::start().await.unwrap();

    // Each part has its own connection through the seed list, as its own process would.
    let (mut registry_a, catalog_a) =
        start_registry("registry replica a", cluster.client("registry-a").await.unwrap()).await;
    let registry = ServiceClient::new(
        cluster.client("test-registry-client").await.unwrap(),
        contracts::registry_api::contract().unwrap(),
    );
    register_shop(&registry).await.unwrap();
    let mut orchestrators = Vec::new();
    for replica in ["a", "b"] {
        let nats = cluster.client(&format!("orchestrator-{replica}")).await.unwrap();
        let orchestrator = Orchestrator::new(orchestrator_config());
        orchestrators.push(Part::spawn(
            &format!("orchestrator replica {replica}"),
            nats.clone(),
            |shutdown| orchestrator.run(nats, shutdown),
        ));
    }
    let orchestrator_api = ServiceClient::new(
        cluster.client("test-orchestrator-client").await.unwrap(),
        contracts::orchestrator_api::contract().unwrap(),
    );
    let load_deadline = tokio::time::Instant::now() + START_DEADLINE;
    while let Err(error) = load_fulfilment(&orchestrator_api).await {
        assert!(
            tokio::time::Instant::now() < load_deadline,
            "the workflow did not load: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shop_nats = cluster.client("shop").await.unwrap();
    let shop = Shop::new(cluster_shop_config());
    let mut shop_part = Part::spawn("the shop", shop_nats.clone(), |shutdown| {
        let nats = shop_nats.clone();
        async move { shop.run(nats, shutdown).await }
    });
    if let Err(error) = Shop::wait_until_serving(&shop_nats, &ShopService::ALL, START_DEADLINE).await {
        let task = if shop_part.task.is_finished() {
            format!("{:?}", (&mut shop_part.task).await)
        } else {
            "still running".to_owned()
        };
        panic!("the shop is not serving: {error}; its task: {task}");
    }

    // Orders flow; the probe contract is registered version after version.
    let nats = cluster.client("test-client").await.unwrap();
    let orders_client = ServiceClient::new(nats.clone(), orders::contract().unwrap());
    let stop_placing = CancellationToken::new();
    let placing = tokio::spawn({
        let stop = stop_placing.clone();
        let client = orders_client.clone();
        async move {
            let mut placed = Vec::new();
            let mut n = 0;
            while !stop.is_cancelled() {
                placed.push(tokio::spawn(place_until_acknowledged(client.clone(), nth_order(n))));
                n += 1;
                tokio::time::sleep(ORDER_INTERVAL).await;
            }
            placed
        }
    });
    let registering = tokio::spawn(register_probes(registry.clone(), stop_placing.clone()));
    tokio::time::sleep(BEFORE_KILL).await;

    // Every stream and bucket has three replicas, whoever created it.
    let js = jetstream::new(nats.clone());
    let before = streams(&js).await;
    let too_few: Vec<_> = before.iter().filter(|(_, replicas, _)| *replicas != REPLICAS).collect();
    assert!(too_few.is_empty(), "streams without {REPLICAS} replicas: {too_few:?}");

    // The victim: the node the shop is connected to.
    let victim = cluster
        .node_named(&shop_nats.server_info().server_name)
        .expect("the shop is connected to a node of the cluster");
    let victim_name = cluster.node(victim).unwrap().name().to_owned();
    let led: Vec<&str> = before
        .iter()
        .filter(|(_, _, leader)| leader.as_deref() == Some(victim_name.as_str()))
        .map(|(name, _, _)| name.as_str())
        .collect();
    eprintln!(
        "killing node {victim} ({victim_name}), the shop's, leader of {} of {} streams: {led:?}",
        led.len(),
        before.len()
    );
    cluster.kill(victim).unwrap();
    tokio::time::sleep(OUTAGE).await;
    cluster.restart(victim).await.unwrap();
    eprintln!("node {victim} is back");
    tokio::time::sleep(AFTER_RESTART).await;
    stop_placing.cancel();
    // A part that gave up during the outage is the first thing to report.
    for part in orchestrators.iter_mut().chain([&mut shop_part, &mut registry_a]) {
        part.assert_running().await;
    }

    // Every order placed before, during and after the outage was acknowledged...
    let mut placed = Vec::new();
    let mut never = Vec::new();
    for task in placing.await.unwrap() {
        match task.await.unwrap() {
            Ok(order) => placed.push(order),
            Err(error) => never.push(error),
        }
    }
    assert!(never.is_empty(), "orders never acknowledged: {never:#?}");
    let acknowledged_versions = registering.await.unwrap();
    eprintln!(
        "{} orders placed, {} probe versions registered",
        placed.len(),
        acknowledged_versions.len()
    );

    // ... and ended completed or compensated, once.
    let books = settled(&nats, &placed).await;
    let mut money_in = 0_i128;
    let mut shipped_expected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ended = BTreeMap::<&str, usize>::new();
    for order in &placed {
        let row = &books.orders[&order.order_id.0];
        let status = row.status.expect("a settled order has a status");
        assert!(
            matches!(status, OrderStatus::Completed | OrderStatus::Cancelled),
            "{} ended {status:?}",
            order.order_id.0
        );
        *ended
            .entry(if status == OrderStatus::Completed {
                "completed"
            } else {
                "compensated"
            })
            .or_default() += 1;
        // At most one charge, refunded if the order did not complete.
        assert!(
            row.charged_cents <= row.total_cents,
            "{} was charged {} for a total of {}",
            order.order_id.0,
            row.charged_cents,
            row.total_cents
        );
        if status == OrderStatus::Completed {
            money_in += i128::from(row.total_cents);
            for line in &order.items {
                *shipped_expected.entry(line.sku.as_str()).or_default() += u64::from(line.quantity);
            }
        }
    }
    eprintln!("orders: {ended:?}");
    assert_eq!(ended.values().sum::<usize>(), placed.len());
    // Money: what was kept is exactly the completed orders' totals.
    let kept: i128 = books
        .orders
        .values()
        .map(|row| i128::from(row.charged_cents) - i128::from(row.refunded_cents))
        .sum();
    assert_eq!(kept, money_in, "money kept against completed orders' totals");
    // Stock: nothing held, and what left the shelves is what completed orders took.
    for sku in STOCKED {
        let stock = &books.stock[sku];
        let expected = shipped_expected.get(sku).copied().unwrap_or(0);
        assert_eq!(
            (stock.held, stock.shipped, stock.on_hand + stock.shipped),
            (0, expected, PLENTY),
            "stock of {sku}: {stock:?}"
        );
    }

    // Every acknowledged registration is still there, on the replica that
    // ran through the outage and on a new one that loads the bucket through
    // the restarted node.
    let (mut registry_b, catalog_b) = start_registry(
        "registry replica b",
        tests::NatsServer::client(cluster.node(victim).unwrap()).await.unwrap(),
    )
    .await;
    let probe = ServiceName::parse("ledger").unwrap();
    for version in &acknowledged_versions {
        let request = GetRequest {
            service: probe.clone(),
            version: Some(version.clone()),
            major: None,
        };
        for (catalog, which) in [(&catalog_a, "replica a"), (&catalog_b, "replica b")] {
            let got = catalog.get(&request);
            assert!(
                got.is_ok(),
                "ledger@{version} was acknowledged but {which} lacks it: {got:?}"
            );
        }
        // And through the registry's API, whichever replica answers.
        registry.call::<registry_ops::Get>(&request).await.unwrap();
    }
    // Every service is registered again: both replicas list a healthy instance of each.
    wait_for_instances(&catalog_a, "replica a").await;
    wait_for_instances(&catalog_b, "replica b").await;

    // Nothing stopped on its own; then everything stops cleanly.
    let after = streams(&js).await;
    assert!(
        after
            .iter()
            .all(|(_, replicas, leader)| *replicas == REPLICAS && leader.is_some()),
        "every stream has {REPLICAS} replicas and a leader after the restart: {after:?}"
    );
    for part in orchestrators
        .iter_mut()
        .chain([&mut shop_part, &mut registry_a, &mut registry_b])
    {
        part.assert_running().await;
    }
    shop_part.stop().await;
    for part in orchestrators {
        part.stop().await;
    }
    registry_b.stop().await;
    registry_a.stop().await;
}

/// Publishes message `n` (its id `n`, so a repeat is dropped) until the
/// stream acknowledges it; fails after 30 s (no leader elected).
async fn publish_until_stored(js: &jetstream::Context, subject: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", n.to_string().as_str());
        let stored = match js
            .publish_with_headers(subject.to_owned(), headers, n.to_string().into())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match stored {
            Ok(()) => return,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "message {n} not stored within 30 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The harness's cluster and the replicas rule on their own: a stream
/// created with one replica is raised to three by a component asking for
/// three, never lowered by one asking for one, and keeps every message
/// through its leader's kill and restart.
#[tokio::test]
async fn an_event_stream_is_raised_to_three_replicas_and_survives_its_leaders_kill() {
    tests::init_tracing();
    let mut cluster = NatsCluster::start().await.unwrap();
    let nats = cluster.client("test").await.unwrap();
    let js = jetstream::new(nats.clone());
    let contract = contracts::shop::inventory::contract().unwrap();
    let name = ensure_event_stream(&js, &contract).await.unwrap();
    let replicas = |js: jetstream::Context, name: String| async move {
        js.get_stream(&name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .num_replicas
    };
    assert_eq!(replicas(js.clone(), name.clone()).await, 1);
    ensure_event_stream_with_replicas(&js, &contract, REPLICAS)
        .await
        .unwrap();
    assert_eq!(replicas(js.clone(), name.clone()).await, REPLICAS);
    ensure_event_stream(&js, &contract).await.unwrap();
    assert_eq!(replicas(js.clone(), name.clone()).await, REPLICAS, "never lowered");

    let subject = contract.events.values().next().unwrap().subject.to_string();
    for n in 0..10 {
        publish_until_stored(&js, &subject, n).await;
    }
    let leader = js
        .get_stream(&name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|cluster| cluster.leader)
        .unwrap();
    let victim = cluster.node_named(&leader).unwrap();
    cluster.kill(victim).unwrap();
    // A new leader is elected among the two left; publishing works again.
    for n in 10..20 {
        publish_until_stored(&js, &subject, n).await;
    }
    cluster.restart(victim).await.unwrap();
    let info = js.get_stream(&name).await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.state.messages, 20);
    // The restarted node is among the replicas again, and the stream reads through it.
    let through_victim = cluster.node(victim).unwrap().client().await.unwrap();
    let messages = jetstream::new(through_victim)
        .get_stream(&name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(messages, 20);
}

/// One server keeps one copy: asking for three is refused, and raising an
/// existing stream says what to do.
#[tokio::test]
async fn one_server_refuses_three_replicas_and_says_what_to_do() {
    let server = tests::NatsServer::start().await.unwrap();
    let js = jetstream::new(server.client().await.unwrap());
    let contract = contracts::shop::inventory::contract().unwrap();
    let created = ensure_event_stream_with_replicas(&js, &contract, REPLICAS).await;
    assert!(created.is_err(), "{created:?}");
    ensure_event_stream(&js, &contract).await.unwrap();
    let raised = ensure_event_stream_with_replicas(&js, &contract, REPLICAS)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        raised.contains("has 1 replica(s) and could not be raised to 3") && raised.contains("use --replicas 1"),
        "{raised}"
    );
}
