//! `soa discover` against a real nats-server: two runtime instances of the
//! inventory service answer with their endpoints and counters, in both
//! formats; a name narrows the sweep; an empty bus exits 1; a bad name or an
//! unreachable server exits 2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus_services::runtime::{Service, ServiceClient, ServiceConfig, ServiceError};
use contracts::shop::inventory::{self, GetStock, ReleaseStock, Reservation, ReserveStock, StockLevel, StockReleased};
use contracts::shop::{OrderId, StockLine};
use contracts::subjects::{self, DiscoveryVerb};
use expect_test::expect;
use registry::cli::Exit;
use serde_json::Value;
use tests::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::soa;

/// An inventory instance with a fixed id, so the output can be compared as a
/// whole: 5 units of everything, `OUT_OF_STOCK` beyond.
fn inventory(instance_id: &str) -> Service {
    let config = ServiceConfig {
        instance_id: instance_id.to_owned(),
        registration: None,
        ..ServiceConfig::default()
    };
    five_of_each_inventory(config, Arc::default())
}

/// An inventory service configured by `config` that holds 5 units of every
/// product, refuses more with `OUT_OF_STOCK`, and counts the reservation
/// requests it handles in `handled`.
pub(crate) fn five_of_each_inventory(config: ServiceConfig, handled: Arc<AtomicUsize>) -> Service {
    Service::builder(inventory::contract().unwrap())
        .config(config)
        .handle::<inventory::Reserve, _, _>(move |_ctx, request: ReserveStock| {
            let handled = Arc::clone(&handled);
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                if request.items.iter().any(|line| line.quantity > 5) {
                    return Err(ServiceError::declared("OUT_OF_STOCK", "only 5 units of each product"));
                }
                Ok(Reservation {
                    reservation_id: format!("res-{}", request.order_id.0),
                    order_id: request.order_id,
                    items: request.items,
                })
            }
        })
        .handle::<inventory::Release, _, _>(|_ctx, request: ReleaseStock| async move {
            Ok(StockReleased {
                order_id: request.order_id,
                released: true,
                mode: None,
            })
        })
        .handle::<inventory::Stock, _, _>(|_ctx, request: GetStock| async move {
            Ok(StockLevel {
                sku: request.sku,
                available: 5,
                reserved: 0,
            })
        })
        .build()
        .unwrap()
}

/// A running instance: cancel to stop it, then await the task.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Runs `service` on its own connection and waits until it answers its own
/// `$SRV.PING`, which it subscribes to after its operations.
async fn start(server: &NatsServer, service: Service) -> Running {
    let nats = server.client().await.unwrap();
    let shutdown = CancellationToken::new();
    let ping = subjects::discovery(DiscoveryVerb::Ping, Some("inventory"), Some(service.instance_id()));
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { service.run(nats, shutdown).await.unwrap() })
    };
    let probe = server.client().await.unwrap();
    for _ in 0..250 {
        if probe.request(ping.clone(), "".into()).await.is_ok() {
            return Running { shutdown, task };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the inventory instance did not come up");
}

fn reserve(order: &str, quantity: u32) -> ReserveStock {
    ReserveStock {
        order_id: OrderId(order.to_owned()),
        items: vec![StockLine {
            sku: "sku-kettle".to_owned(),
            quantity,
        }],
    }
}

/// Runs `soa --nats-url <url> discover <args>`, with a quiet period long
/// enough that a busy machine does not end a sweep before both instances answered.
async fn discover(url: &str, args: &[&str]) -> crate::cli::Run {
    let mut argv = vec!["--nats-url", url, "discover", "--quiet-ms", "1500"];
    argv.extend_from_slice(args);
    soa(&argv).await
}

#[tokio::test]
async fn two_instances_answer_with_their_endpoints_and_counters() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    // The calls are made while inv-a runs alone, so the counters are known.
    let first = start(&server, inventory("inv-a")).await;
    let client = ServiceClient::new(server.client().await.unwrap(), inventory::contract().unwrap());
    client.call::<inventory::Reserve>(&reserve("ord-1", 1)).await.unwrap();
    client.call::<inventory::Reserve>(&reserve("ord-2", 2)).await.unwrap();
    client
        .call::<inventory::Reserve>(&reserve("ord-3", 9))
        .await
        .unwrap_err();
    client
        .call::<inventory::Stock>(&GetStock {
            sku: "sku-mug".to_owned(),
        })
        .await
        .unwrap();
    let second = start(&server, inventory("inv-b")).await;

    let url = server.url();
    let run = discover(&url, &[]).await;
    assert_eq!(run.exit, Exit::Success, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr, "");
    expect![[r#"
        SERVICE    VERSION  INSTANCE  CONTRACT         ENDPOINTS
        inventory  1.2.0    inv-a     inventory@1.2.0  release (shop.inventory.v1.release) 0 requests, 0 errors; reserve (shop.inventory.v1.reserve) 3 requests, 1 error; stock (shop.inventory.v1.stock) 1 request, 0 errors
        inventory  1.2.0    inv-b     inventory@1.2.0  release (shop.inventory.v1.release) 0 requests, 0 errors; reserve (shop.inventory.v1.reserve) 0 requests, 0 errors; stock (shop.inventory.v1.stock) 0 requests, 0 errors

        2 instances of 1 service answered $SRV.INFO; 2 answered $SRV.STATS.
    "#]]
    .assert_eq(&run.stdout);

    // JSON: the raw replies, grouped by service and instance.
    let run = discover(&url, &["--service", "inventory", "--format", "json"]).await;
    assert_eq!(run.exit, Exit::Success, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["subjects"]["info"], "$SRV.INFO.inventory");
    assert_eq!(report["subjects"]["stats"], "$SRV.STATS.inventory");
    assert_eq!(report["unreadable"], serde_json::json!([]));
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["name"], "inventory");
    let instances = services[0]["instances"].as_array().unwrap();
    let ids: Vec<&str> = instances
        .iter()
        .map(|instance| instance["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["inv-a", "inv-b"]);
    for instance in instances {
        let info = &instance["info"];
        assert_eq!(info["type"], "io.nats.micro.v1.info_response");
        assert_eq!(info["id"], instance["id"]);
        assert_eq!(info["metadata"]["soa.contract"], "inventory@1.2.0");
        let subjects: Vec<&str> = info["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|endpoint| endpoint["subject"].as_str().unwrap())
            .collect();
        assert_eq!(
            subjects,
            [
                "shop.inventory.v1.release",
                "shop.inventory.v1.reserve",
                "shop.inventory.v1.stock"
            ]
        );
        assert_eq!(instance["stats"]["type"], "io.nats.micro.v1.stats_response");
    }
    let reserve_stats = instances[0]["stats"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|endpoint| endpoint["name"] == "reserve")
        .unwrap();
    assert_eq!(reserve_stats["num_requests"], 3);
    assert_eq!(reserve_stats["num_errors"], 1);
    assert!(
        reserve_stats["last_error"]
            .as_str()
            .unwrap()
            .starts_with("OUT_OF_STOCK")
    );

    // A name nothing answers to: exit 1 and a sentence saying so.
    let run = discover(&url, &["--service", "orders"]).await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        format!("No instance of orders answered $SRV.INFO.orders at {url}: nothing on that server subscribes to it.\n")
    );

    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn an_empty_bus_exits_1_with_a_sentence() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let url = server.url();
    let run = discover(&url, &[]).await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        format!("No service answered $SRV.INFO at {url}: nothing on that server subscribes to it.\n")
    );
    assert_eq!(run.stderr, "");

    // In JSON the output stays a document; the sentence goes to standard error.
    let run = discover(&url, &["--format", "json"]).await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["services"], serde_json::json!([]));
    assert!(
        run.stderr.starts_with("No service answered $SRV.INFO at "),
        "{}",
        run.stderr
    );

    // Something that listens on $SRV.INFO but never answers: the sweep ends
    // after the quiet period, and says so.
    let silent = server.client().await.unwrap();
    let _subscription = silent.subscribe("$SRV.INFO").await.unwrap();
    silent.flush().await.unwrap();
    let run = soa(&[
        "--nats-url",
        &url,
        "discover",
        "--quiet-ms",
        "300",
        "--timeout-ms",
        "2000",
    ])
    .await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        format!("No service answered $SRV.INFO at {url}: no reply came within 300 ms.\n")
    );
}

#[tokio::test]
async fn a_bad_name_or_an_unreachable_server_exits_2() {
    tests::init_tracing();
    let run = soa(&["discover", "--service", "inventory.*"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr,
        "error: \"inventory.*\" is not a NATS micro service name: use letters, digits, '-' and '_' only\n"
    );

    // Port 1 on loopback is privileged and has nothing listening in a test environment.
    let run = soa(&["--nats-url", "nats://127.0.0.1:1", "discover"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.starts_with(
            "error: cannot discover services without a NATS connection: could not reach a NATS server at nats://127.0.0.1:1"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");

    let run = soa(&["discover", "--timeout-ms", "0"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}{}", run.stdout, run.stderr);
}
