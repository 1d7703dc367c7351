//! The `soa` commands that use the registry, against a real nats-server and
//! an in-process registry holding the shop's contracts: `services`,
//! `describe`, `search`, `resolve`, `request` and `publish` (validated
//! before sending), and `contract check --against nats://...`. Without a
//! registry each of them exits 2 and says how to start one.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use bus_services::runtime::{RegistrationConfig, Service, ServiceClient, ServiceConfig};
use contracts::envelope::headers;
use contracts::registry_api::{InstancesRequest, RegisterRequest, ops};
use contracts::shop::inventory;
use contracts::{ServiceName, subjects};
use expect_test::expect;
use registry::cli::Exit;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::harness::workspace_root;
use tests::registry::{SHOP_OWNER_TOKEN, shop_bus};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::discover::five_of_each_inventory;
use crate::cli::{assert_exit, soa, soa_at};

fn catalog_dir() -> PathBuf {
    workspace_root().join("contracts/catalog")
}

#[tokio::test]
async fn the_registry_is_browsed_from_the_command_line() {
    tests::init_tracing();
    let (server, registry, _client) = shop_bus().await.unwrap();
    let url = server.url();

    let run = soa_at(&url, &["services"]).await;
    assert_exit(&run, Exit::Success);
    expect![[r#"
        NAME           LATEST  INSTANCES  OWNER            TAGS
        inventory      1.1.0   0/0        fulfilment-team  shop, stock
        notifications  1.1.0   0/0        fulfilment-team  shop, customers
        orders         1.2.0   0/0        fulfilment-team  shop, orders
        payments       1.2.0   0/0        fulfilment-team  shop, money
        shipping       1.2.0   0/0        fulfilment-team  shop, logistics
    "#]]
    .assert_eq(&run.stdout);
    assert_eq!(run.stderr, "");

    let run = soa_at(&url, &["services", "--json"]).await;
    assert_exit(&run, Exit::Success);
    let listed: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = listed.iter().map(|summary| summary["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["inventory", "notifications", "orders", "payments", "shipping"]);
    assert_eq!(listed[0]["latest"], "1.1.0");
    assert_eq!(listed[0]["instances"], 0);

    let run = soa_at(&url, &["services", "--tag", "money"]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(
        run.stdout.lines().nth(1).unwrap().starts_with("payments "),
        "{}",
        run.stdout
    );
    let run = soa_at(&url, &["services", "--owner", "fulfilment-team"]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stdout.lines().count(), 6, "{}", run.stdout);
    let run = soa_at(&url, &["services", "--tag", "no-such-tag"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "No registered service matches the filters.\n");

    // describe: the header, each operation and event with its subject and schema, dependents.
    let run = soa_at(&url, &["describe", "inventory"]).await;
    assert_exit(&run, Exit::Success);
    let out = &run.stdout;
    for expected in [
        "inventory@1.1.0\n  Stock levels and reservations\n",
        "  owner          fulfilment-team\n",
        "  compatibility  BACKWARD\n",
        "  versions       1.1.0 (shown, latest)\n",
        "Operations (* = required)\n",
        "  reserve  shop.inventory.v1.reserve  idempotent\n    Reserve stock for an order\n",
        "    request   ReserveStock {order_id*: OrderId, items*: StockLine[]}\n",
        "    response  Reservation {reservation_id*: string, order_id*: OrderId, items*: StockLine[], ...}\n",
        "    errors    OUT_OF_STOCK\n",
        "  stock  shop.inventory.v1.stock  idempotent\n",
        "    request   GetStock {sku*: string}\n",
        "Events (* = required)\n",
        "  reserved  shop.inventory.v1.reserved\n",
        "    consumers  payments@1.2.0, shipping@1.2.0\n",
        "  out-of-stock  shop.inventory.v1.out-of-stock\n",
        "    consumers  orders@1.2.0\n",
        "  consumes  orders@1#placed, payments@1#declined, shipping@1#failed\n",
        "No live instances.\n",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    assert!(out.contains("  digest         sha256:"), "{out}");

    let run = soa_at(&url, &["describe", "inventory@1", "--json"]).await;
    assert_exit(&run, Exit::Success);
    let described: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(described["document"]["service"], "inventory");
    assert!(described["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(described["versions"][0]["version"], "1.1.0");
    assert_eq!(described["instances"], json!([]));
    assert_eq!(
        described["consumers"]["reserved"],
        json!(["payments@1.2.0", "shipping@1.2.0"])
    );

    let run = soa_at(&url, &["describe", "nope"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: no service nope is registered; `soa services` lists the registered ones\n"
    );
    let run = soa_at(&url, &["describe", "inventory@2.0.0"]).await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stderr.contains("inventory has no version 2.0.0"), "{}", run.stderr);
    let run = soa_at(&url, &["describe", "Inventory"]).await;
    assert_exit(&run, Exit::Usage);

    // search: by tag, by words, by subject pattern and field; nothing found is exit 1.
    let run = soa_at(&url, &["search", "--tag", "shop"]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stdout.lines().count(), 6, "{}", run.stdout);
    let run = soa_at(&url, &["search", "stock"]).await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout.lines().nth(1).unwrap().starts_with("inventory "),
        "{}",
        run.stdout
    );
    let run = soa_at(&url, &["search", "--subject", "shop.payments.>", "--json"]).await;
    assert_exit(&run, Exit::Success);
    let found: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["name"], "payments");
    let run = soa_at(&url, &["search", "--field", "reservation_id"]).await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.contains("inventory"), "{}", run.stdout);
    let run = soa_at(&url, &["search", "teleport"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stderr, "No registered service matches.\n");
    let run = soa_at(&url, &["search", "--subject", "shop..x"]).await;
    assert_exit(&run, Exit::Usage);

    // resolve: a pattern lists bindings, an unknown subject is exit 1.
    let run = soa_at(&url, &["resolve", "shop.inventory.v1.>"]).await;
    assert_exit(&run, Exit::Success);
    expect![[r#"
        SUBJECT                         KIND       CONTRACT         NAME
        shop.inventory.v1.out-of-stock  event      inventory@1.1.0  out-of-stock
        shop.inventory.v1.release       operation  inventory@1.1.0  release
        shop.inventory.v1.released      event      inventory@1.1.0  released
        shop.inventory.v1.reserve       operation  inventory@1.1.0  reserve
        shop.inventory.v1.reserved      event      inventory@1.1.0  reserved
        shop.inventory.v1.stock         operation  inventory@1.1.0  stock
    "#]]
    .assert_eq(&run.stdout);
    let run = soa_at(&url, &["resolve", "shop.*.v1.>"]).await;
    assert_exit(&run, Exit::Success);
    for contract in [
        "inventory@1.1.0",
        "orders@1.2.0",
        "payments@1.2.0",
        "shipping@1.2.0",
        "notifications@1.1.0",
    ] {
        assert!(run.stdout.contains(contract), "{}", run.stdout);
    }
    let run = soa_at(&url, &["resolve", "shop.inventory.v1.reserve", "--json"]).await;
    assert_exit(&run, Exit::Success);
    let bindings: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        bindings,
        json!([{"subject": "shop.inventory.v1.reserve", "contract": "inventory@1.1.0", "kind": "operation", "name": "reserve"}])
    );
    let run = soa_at(&url, &["resolve", "shop.nothing.v1.x"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "No registered operation or event is shop.nothing.v1.x; `soa services` lists the registered services.\n"
    );

    registry.stop().await.unwrap();
}

/// An inventory instance that counts the reservations it handles: 5 units
/// of everything, `OUT_OF_STOCK` beyond. It registers and beats quickly.
fn inventory_service(handled: Arc<AtomicUsize>) -> Service {
    let config = ServiceConfig {
        instance_id: "inv-cli".to_owned(),
        registration: Some(RegistrationConfig {
            heartbeat_interval: Duration::from_millis(200),
            ttl: Duration::from_secs(5),
            ..RegistrationConfig::default()
        }),
        ..ServiceConfig::default()
    };
    five_of_each_inventory(config, handled)
}

/// Runs `service` until cancelled, once the registry lists it as a live instance.
async fn start_service(
    server: &NatsServer,
    registry: &ServiceClient,
    service: Service,
) -> (CancellationToken, JoinHandle<()>) {
    let nats = server.client().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { service.run(nats, shutdown).await.unwrap() })
    };
    let request = InstancesRequest {
        service: Some(ServiceName::parse("inventory").unwrap()),
    };
    for _ in 0..250 {
        let instances = registry.call::<ops::Instances>(&request).await.unwrap().instances;
        if instances.iter().any(|instance| instance.healthy) {
            return (shutdown, task);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("the inventory instance did not register");
}

#[tokio::test]
async fn request_and_publish_validate_before_sending() {
    tests::init_tracing();
    let (server, registry, client) = shop_bus().await.unwrap();
    // The live inventory (a later version than the sample registered) is
    // registered by its owner, so the instance's own registration finds it.
    let live = RegisterRequest {
        document: inventory::contract().unwrap().to_value(),
        owner_token: Some(SHOP_OWNER_TOKEN.to_owned()),
    };
    assert!(client.call::<ops::Register>(&live).await.unwrap().created);
    let url = server.url();
    let handled = Arc::new(AtomicUsize::new(0));
    let (shutdown, task) = start_service(&server, &client, inventory_service(Arc::clone(&handled))).await;

    // The live instance shows in the listing and the description.
    let run = soa_at(&url, &["services"]).await;
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("inventory ") && line.contains(" 1/1 ")),
        "{}",
        run.stdout
    );
    let run = soa_at(&url, &["describe", "inventory"]).await;
    assert!(run.stdout.contains("Instances (1)\n"), "{}", run.stdout);
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("  inv-cli  inventory@1.2.0  yes      no     ")),
        "{}",
        run.stdout
    );

    // A valid request: the reply, pretty.
    let reserve = r#"{"order_id": "ord-1", "items": [{"sku": "sku-kettle", "quantity": 2}]}"#;
    let run = soa_at(&url, &["request", "shop.inventory.v1.reserve", reserve]).await;
    assert_exit(&run, Exit::Success);
    let reply: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        reply,
        json!({"reservation_id": "res-ord-1", "order_id": "ord-1", "items": [{"sku": "sku-kettle", "quantity": 2}]})
    );
    assert!(run.stdout.starts_with("{\n  \""), "{}", run.stdout);
    assert_eq!(handled.load(Ordering::SeqCst), 1);

    // From a file, with --json.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reserve.json");
    std::fs::write(&file, reserve.replace("ord-1", "ord-2")).unwrap();
    let at_file = format!("@{}", file.display());
    let run = soa_at(
        &url,
        &[
            "request",
            "shop.inventory.v1.reserve",
            &at_file,
            "--json",
            "--correlation-id",
            "ord-2",
        ],
    )
    .await;
    assert_exit(&run, Exit::Success);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["contract"], "inventory@1.2.0");
    assert_eq!(answer["operation"], "reserve");
    assert_eq!(answer["correlation_id"], "ord-2");
    assert_eq!(answer["reply"]["reservation_id"], "res-ord-2");
    assert_eq!(handled.load(Ordering::SeqCst), 2);

    // An invalid request: every pointer, exit 1, and the service never sees it.
    let invalid = r#"{"order_id": "ord 3!", "items": [{"sku": "sku-kettle", "quantity": 0}]}"#;
    let run = soa_at(&url, &["request", "shop.inventory.v1.reserve", invalid]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    let mut lines = run.stderr.lines();
    assert_eq!(
        lines.next(),
        Some("error: the payload does not match the request of reserve of inventory@1.2.0; nothing was sent:")
    );
    let details: Vec<&str> = lines.collect();
    assert!(
        details.iter().any(|line| line.starts_with("  at /items/0/quantity: ")),
        "{}",
        run.stderr
    );
    assert!(
        details.iter().any(|line| line.starts_with("  at /order_id: ")),
        "{}",
        run.stderr
    );
    assert_eq!(handled.load(Ordering::SeqCst), 2);

    // The service's own error reply: its code and message, exit 1.
    let too_many = r#"{"order_id": "ord-4", "items": [{"sku": "sku-kettle", "quantity": 9}]}"#;
    let run = soa_at(&url, &["request", "shop.inventory.v1.reserve", too_many]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(
        run.stderr,
        "error: the service replied OUT_OF_STOCK: only 5 units of each product\n"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 3);

    // Wrong kind, unknown subject, bad JSON.
    let run = soa_at(&url, &["request", "shop.inventory.v1.reserved", "{}"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(
        run.stderr,
        "error: shop.inventory.v1.reserved is the event reserved of inventory@1.2.0, not an operation; use `soa publish`\n"
    );
    let run = soa_at(&url, &["request", "shop.nothing.v1.x", "{}"]).await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stderr
            .starts_with("error: no registered contract declares the subject shop.nothing.v1.x"),
        "{}",
        run.stderr
    );
    let run = soa_at(&url, &["request", "shop.inventory.v1.reserve", "{not json"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr.contains("the payload argument is not valid JSON"),
        "{}",
        run.stderr
    );

    // publish: a valid event lands in the stream with the runtime's headers.
    let js = jetstream::new(server.client().await.unwrap());
    let stream_name = bus_services::runtime::ensure_event_stream(&js, &inventory::contract().unwrap())
        .await
        .unwrap();
    let reserved =
        r#"{"order_id": "ord-1", "reservation_id": "res-ord-1", "items": [{"sku": "sku-kettle", "quantity": 2}]}"#;
    let run = soa_at(
        &url,
        &[
            "publish",
            "shop.inventory.v1.reserved",
            reserved,
            "--correlation-id",
            "ord-1",
            "--message-id",
            "msg-1",
        ],
    )
    .await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout.starts_with(&format!(
            "Published the event reserved of inventory@1.2.0 on shop.inventory.v1.reserved: stored in stream {stream_name} at sequence 1.\n  message id msg-1, correlation id ord-1, trace "
        )),
        "{}",
        run.stdout
    );
    let mut stream = js.get_stream(&stream_name).await.unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(stored.subject.as_str(), "shop.inventory.v1.reserved");
    let payload: Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(payload["reservation_id"], "res-ord-1");
    let header = |name: &str| stored.headers.get(name).map(|value| value.as_str().to_owned());
    assert_eq!(header(headers::CONTRACT).as_deref(), Some("inventory@1.2.0"));
    assert_eq!(header(headers::EVENT).as_deref(), Some("reserved"));
    assert_eq!(header(headers::MESSAGE_ID).as_deref(), Some("msg-1"));
    assert_eq!(header(headers::CORRELATION_ID).as_deref(), Some("ord-1"));
    assert!(header(headers::TRACEPARENT).unwrap().starts_with("00-"));

    // The same message id again: JetStream keeps the first.
    let run = soa_at(
        &url,
        &[
            "publish",
            "shop.inventory.v1.reserved",
            reserved,
            "--message-id",
            "msg-1",
            "--json",
        ],
    )
    .await;
    assert_exit(&run, Exit::Success);
    let published: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(published["stored"]["duplicate"], true);
    assert_eq!(published["contract"], "inventory@1.2.0");

    // An invalid event: exit 1 with the pointer, and nothing stored.
    let run = soa_at(
        &url,
        &[
            "publish",
            "shop.inventory.v1.reserved",
            r#"{"order_id": "ord-5", "items": "none"}"#,
        ],
    )
    .await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stderr.starts_with(
            "error: the payload does not match the event reserved of inventory@1.2.0; nothing was sent:\n"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\n  at /items: "), "{}", run.stderr);
    assert!(run.stderr.contains("\n  at (root): "), "{}", run.stderr);
    assert_eq!(stream.info().await.unwrap().state.messages, 1);

    // An operation's subject is no event; a subject no contract declares needs --no-validate.
    let run = soa_at(&url, &["publish", "shop.inventory.v1.reserve", "{}"]).await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stderr.contains("not an event; use `soa request`"), "{}", run.stderr);
    let run = soa_at(&url, &["publish", "test.raw.v1.note", r#"{"hello": 1}"#]).await;
    assert_exit(&run, Exit::Failure);
    let watcher = server.client().await.unwrap();
    let mut raw = watcher.subscribe("test.raw.v1.note").await.unwrap();
    watcher.flush().await.unwrap();
    let run = soa_at(
        &url,
        &["publish", "test.raw.v1.note", r#"{"hello": 1}"#, "--no-validate"],
    )
    .await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stderr
            .contains("warning: no registered contract declares test.raw.v1.note; sending it raw"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.starts_with(
            "Published the message on test.raw.v1.note as a plain NATS message: no JetStream stream captures the subject"
        ),
        "{}",
        run.stdout
    );
    let received = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&received.payload[..], br#"{"hello":1}"#);
    let received_headers = received.headers.unwrap();
    assert!(received_headers.get(headers::MESSAGE_ID).is_some());
    assert!(received_headers.get(headers::CONTRACT).is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
    registry.stop().await.unwrap();
}

#[tokio::test]
async fn contract_check_asks_the_registry() {
    tests::init_tracing();
    let (server, registry, _client) = shop_bus().await.unwrap();
    let against = server.url();
    let inventory_file = catalog_dir().join("inventory.v1.json");
    let inventory_path = inventory_file.to_str().unwrap();

    let run = soa(&["contract", "check", inventory_path, "--against", &against]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(
        run.stdout,
        format!(
            "1 document, 0 errors, 0 warnings\nagainst {against}: strict compatible, lenient compatible (1 compared, 0 new)\n"
        )
    );

    // The response of reserve loses a required field in 1.2.0: old callers break.
    let mut breaking: Value = serde_json::from_str(&std::fs::read_to_string(&inventory_file).unwrap()).unwrap();
    breaking["version"] = json!("1.2.0");
    breaking["$defs"]["Reservation"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("reservation_id");
    breaking["$defs"]["Reservation"]["required"] = json!(["order_id", "items"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.v1.json");
    std::fs::write(&file, serde_json::to_string_pretty(&breaking).unwrap()).unwrap();
    let path = file.to_str().unwrap();
    let run = soa(&["contract", "check", path, "--against", &against]).await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stdout.starts_with(&format!(
            "inventory 1.2.0 ({path}), against {against} (inventory@1.1.0, BACKWARD): strict incompatible, lenient incompatible\n"
        )),
        "{}",
        run.stdout
    );
    let errors: Vec<&str> = run.stdout.lines().filter(|line| line.contains(": error[")).collect();
    assert!(!errors.is_empty(), "{}", run.stdout);
    assert!(
        errors
            .iter()
            .all(|line| line.trim_start().starts_with(&format!("{path}:"))),
        "{}",
        run.stdout
    );
    assert!(
        errors
            .iter()
            .any(|line| line.contains("response of reserve") && line.contains("reservation_id")),
        "{}",
        run.stdout
    );

    // The same in the machine formats.
    let run = soa(&["contract", "check", path, "--against", &against, "--format", "json"]).await;
    assert_exit(&run, Exit::Failure);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["against"], against.as_str());
    assert_eq!(report["summary"]["exit_code"], 1);
    let diagnostics = report["documents"][0]["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics
            .iter()
            .any(|diagnostic| diagnostic["kind"] == "change" && diagnostic["level"] == "error"),
        "{report:#}"
    );
    let run = soa(&["contract", "check", path, "--against", &against, "--format", "github"]).await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stdout.starts_with("::error file="), "{}", run.stdout);

    // A compatible change passes; a service the registry does not know is new.
    let mut compatible: Value = serde_json::from_str(&std::fs::read_to_string(&inventory_file).unwrap()).unwrap();
    compatible["version"] = json!("1.2.0");
    compatible["$defs"]["ReserveStock"]["properties"]["note"] = json!({"type": "string"});
    let mut newcomer = compatible.clone();
    newcomer["service"] = json!("warehouse");
    for (name, operation) in newcomer["operations"].as_object_mut().unwrap() {
        operation["subject"] = json!(format!("shop.warehouse.v1.{name}"));
    }
    for (name, event) in newcomer["events"].as_object_mut().unwrap() {
        event["subject"] = json!(format!("shop.warehouse.v1.{name}"));
    }
    std::fs::write(&file, serde_json::to_string_pretty(&compatible).unwrap()).unwrap();
    let other = dir.path().join("warehouse.v1.json");
    std::fs::write(&other, serde_json::to_string_pretty(&newcomer).unwrap()).unwrap();
    let run = soa(&[
        "contract",
        "check",
        path,
        other.to_str().unwrap(),
        "--against",
        &against,
    ])
    .await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout.ends_with(&format!(
            "against {against}: strict compatible, lenient compatible (1 compared, 1 new)\n"
        )),
        "{}",
        run.stdout
    );

    // The same version with other content: the registry would refuse it.
    let mut same_version = compatible.clone();
    same_version["version"] = json!("1.1.0");
    std::fs::write(&file, serde_json::to_string_pretty(&same_version).unwrap()).unwrap();
    let run = soa(&["contract", "check", path, "--against", &against]).await;
    assert_exit(&run, Exit::Failure);

    registry.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_registry_the_commands_exit_2_and_say_how_to_start_one() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let url = server.url();
    let no_registry = |verb: &str| {
        format!(
            "error: no registry answered on {} at {url}; start one with `soa registry serve`\n",
            subjects::registry_api(verb)
        )
    };
    for (args, verb) in [
        (vec!["services"], "list"),
        (vec!["services", "--tag", "shop"], "search"),
        (vec!["describe", "inventory"], "get"),
        (vec!["search", "stock"], "search"),
        (vec!["resolve", "shop.>"], "resolve"),
        (vec!["request", "shop.inventory.v1.stock", r#"{"sku": "x"}"#], "resolve"),
        (vec!["publish", "shop.inventory.v1.reserved", "{}"], "resolve"),
    ] {
        let run = soa_at(&url, &args).await;
        assert_exit(&run, Exit::Usage);
        assert_eq!(run.stderr, no_registry(verb), "{args:?}");
    }
    let inventory = catalog_dir().join("inventory.v1.json");
    let run = soa(&["contract", "check", inventory.to_str().unwrap(), "--against", &url]).await;
    assert_exit(&run, Exit::Usage);
    assert_eq!(run.stderr, no_registry("check"));
    assert_eq!(run.stdout, "");

    // No NATS server at all.
    let mut stopped = NatsServer::start().await.unwrap();
    let gone = stopped.url();
    stopped.stop().unwrap();
    let run = soa_at(&gone, &["services"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot reach the registry without a NATS connection to {gone}: "
        )),
        "{}",
        run.stderr
    );
    let run = soa(&["contract", "check", inventory.to_str().unwrap(), "--against", &gone]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot check against the registry without a NATS connection to {gone}: "
        )),
        "{}",
        run.stderr
    );
}
