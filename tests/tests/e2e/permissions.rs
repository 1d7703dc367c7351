//! Subject permissions from the contracts: a nats-server whose users and
//! permissions are exactly what `soa contract permissions` prints for two
//! small services. Within their permissions they register, heartbeat,
//! serve a call, publish and consume an event; outside them (a call the
//! caller did not declare, an event it does not own, a subscription to
//! another service's operation or replies) the server refuses and the
//! runtime reports it with the subject named: a call fails at once with
//! `UNAUTHORIZED` instead of timing out, and every refusal is kept on the
//! connection that made it. The shop's five services, each as its own
//! user with the permissions the catalog's contracts give (plus its state
//! buckets), run a choreographed order to completion and one to
//! cancellation without a single refusal.

use std::path::Path;
use std::time::{Duration, Instant};

use bus_services::connection::refusals::{self, RefusedAction};
use bus_services::connection::{self, ConnectConfig};
use bus_services::runtime::{
    CallError, CallOptions, ConsumerConfig, EventPublisher, RegistrationConfig, Service, ServiceClient, ServiceConfig,
    consume_json,
};
use contracts::registry_api::ops as registry_ops;
use contracts::{ContractDocument, ErrorCode, SchemaSet, subjects};
use registry::cli::Exit;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{RunningRegistry, registry_client, test_options};
use tokio_util::sync::CancellationToken;

use crate::cli::{assert_exit, soa};

/// A generous bound against hangs; everything here takes well under a second on a quiet machine.
const WITHIN: Duration = Duration::from_secs(10);

const ADMIN_PASSWORD: &str = "admin-pw";

fn greeter() -> Value {
    json!({
        "contract": "soabus/v1",
        "service": "greeter",
        "version": "1.0.0",
        "description": "Greets people",
        "owner": "acl-team",
        "operations": {
            "hello": {
                "subject": "acl.greeter.v1.hello",
                "description": "Greets one person",
                "request": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
                "response": {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]}
            },
            "secret": {
                "subject": "acl.greeter.v1.secret",
                "description": "Something only declared callers may ask",
                "request": {"type": "object"},
                "response": {"type": "object"}
            }
        },
        "events": {
            "greeted": {
                "subject": "acl.greeter.v1.greeted",
                "description": "Someone was greeted",
                "payload": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
            }
        }
    })
}

/// Calls `greeter#hello` (not `secret`) and consumes `greeted`.
fn caller() -> Value {
    json!({
        "contract": "soabus/v1",
        "service": "caller",
        "version": "1.0.0",
        "description": "Calls the greeter",
        "owner": "acl-team",
        "operations": {
            "poke": {
                "subject": "acl.caller.v1.poke",
                "description": "Pokes the caller",
                "request": {"type": "object"},
                "response": {"type": "object"}
            }
        },
        "events": {
            "noted": {
                "subject": "acl.caller.v1.noted",
                "description": "Something was noted",
                "payload": {"type": "object"}
            }
        },
        "calls": ["greeter@1#hello"],
        "consumes": ["greeter@1#greeted"]
    })
}

fn document(value: &Value) -> ContractDocument {
    ContractDocument::from_json_value("test", value, None).unwrap()
}

/// The server configuration: what `soa contract permissions <args>`
/// prints, with each password it reads from the environment defined in the
/// file instead ([`password`]), and an administrator (no permissions set:
/// everything) for the registry, the audit and the test.
async fn server_config(args: &[String]) -> String {
    let mut argv = vec!["contract".to_owned(), "permissions".to_owned()];
    argv.extend_from_slice(args);
    let run = soa(&argv).await;
    assert_exit(&run, Exit::Success);
    let generated = run.stdout;
    // Variables must be defined before they are used.
    let passwords: String = generated
        .lines()
        .filter_map(|line| line.split("password: $").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(|variable| format!("{variable}: \"pw-{variable}\"\n"))
        .collect();
    let with_admin = generated.replacen(
        "  users = [\n",
        &format!("  users = [\n    {{ user: \"admin\", password: \"{ADMIN_PASSWORD}\" }}\n"),
        1,
    );
    assert_ne!(with_admin, generated, "no users list in:\n{generated}");
    format!("{passwords}{with_admin}")
}

/// The password [`server_config`] gives `service`'s major-1 user.
fn password(service: &str) -> String {
    format!("pw-{}_V1_PASSWORD", service.to_ascii_uppercase().replace('-', "_"))
}

/// The two documents in `dir`, as arguments.
fn write_documents(dir: &Path) -> Vec<String> {
    [("greeter", greeter()), ("caller", caller())]
        .into_iter()
        .map(|(name, value)| {
            let path = dir.join(format!("{name}.v1.json"));
            std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
            path.display().to_string()
        })
        .collect()
}

async fn start_server(config: String) -> NatsServer {
    NatsServer::builder()
        .config(config)
        .client_auth(ConnectConfig {
            user: Some("admin".to_owned()),
            password: Some(ADMIN_PASSWORD.to_owned()),
            ..ConnectConfig::default()
        })
        .start()
        .await
        .unwrap()
}

/// How a service connects: its user, and the inbox prefix its permissions name.
fn service_config(server: &NatsServer, service: &str) -> ConnectConfig {
    let name = contracts::ServiceName::parse(service).unwrap();
    ConnectConfig {
        name: Some(service.to_owned()),
        user: Some(format!("{service}-v1")),
        password: Some(password(service)),
        inbox_prefix: Some(subjects::service_inbox_prefix(&name)),
        ..ConnectConfig::for_url(server.url())
    }
}

fn registered_quickly() -> ServiceConfig {
    ServiceConfig {
        registration: Some(RegistrationConfig {
            heartbeat_interval: Duration::from_millis(500),
            ..RegistrationConfig::default()
        }),
        ..ServiceConfig::default()
    }
}

/// Polls `check` until it returns `Some`; panics after [`WITHIN`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn services_work_within_their_contract_permissions_and_are_refused_outside_them() {
    tests::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(&write_documents(dir.path())).await;
    for expected in [
        "GREETER_V1_PERMISSIONS = {",
        "CALLER_V1_PERMISSIONS = {",
        "password: $CALLER_V1_PASSWORD",
        "\"acl.greeter.v1.hello\"",
    ] {
        assert!(config.contains(expected), "{expected} missing from:\n{config}");
    }
    let server = start_server(config).await;
    let registry = RunningRegistry::start(
        &server,
        std::sync::Arc::new(registry::store::MemoryStore::new()),
        test_options(),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();

    // The greeter: answers `hello` and announces `greeted`.
    let greeter_nats = connection::connect(&service_config(&server, "greeter")).await.unwrap();
    let greeted = EventPublisher::new(greeter_nats.clone(), document(&greeter()), &SchemaSet::default())
        .await
        .unwrap();
    let greeter_service = Service::builder(document(&greeter()))
        .config(registered_quickly())
        .handle_json("hello", move |_, request: Value| {
            let greeted = greeted.clone();
            async move {
                let name = request["name"].as_str().unwrap_or_default().to_owned();
                greeted
                    .publish_json("greeted", None, &json!({"name": name}))
                    .await
                    .map_err(|error| bus_services::runtime::ServiceError::internal(error.to_string()))?;
                Ok(json!({"greeting": format!("hello, {name}")}))
            }
        })
        .handle_json("secret", |_, _| async { Ok(json!({})) })
        .build()
        .unwrap();
    let greeter_task = tokio::spawn(greeter_service.run(greeter_nats.clone(), stop.clone()));

    // The caller: serves `poke`, consumes `greeted`.
    let caller_nats = connection::connect(&service_config(&server, "caller")).await.unwrap();
    let caller_service = Service::builder(document(&caller()))
        .config(registered_quickly())
        .handle_json("poke", |_, _| async { Ok(json!({})) })
        .build()
        .unwrap();
    let caller_task = tokio::spawn(caller_service.run(caller_nats.clone(), stop.clone()));
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer_task = tokio::spawn(consume_json(
        caller_nats.clone(),
        document(&greeter()),
        "greeted",
        ConsumerConfig::new("caller-greeter-greeted"),
        move |_, payload| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send(payload);
                Ok(())
            }
        },
        stop.clone(),
    ));

    // Registration and heartbeats go through: both are listed with an instance.
    let registry_api = registry_client(&server).await.unwrap();
    eventually("both services register and beat", || {
        let registry_api = registry_api.clone();
        async move {
            let list = registry_api
                .call::<registry_ops::List>(&Default::default())
                .await
                .ok()?;
            let live = |name: &str| {
                list.services
                    .iter()
                    .any(|service| service.name.as_str() == name && service.instances > 0)
            };
            (live("greeter") && live("caller")).then_some(())
        }
    })
    .await;

    // A declared call works, and the event it causes is published and consumed.
    let greeter_client = ServiceClient::new(caller_nats.clone(), document(&greeter())).with_options(CallOptions {
        timeout: Duration::from_secs(5),
        ..CallOptions::default()
    });
    let reply = eventually("the declared call answers", || {
        let greeter_client = greeter_client.clone();
        async move { greeter_client.call_json("hello", &json!({"name": "ada"})).await.ok() }
    })
    .await;
    assert_eq!(reply, json!({"greeting": "hello, ada"}));
    let event = tokio::time::timeout(WITHIN, seen_rx.recv()).await.unwrap().unwrap();
    assert_eq!(event, json!({"name": "ada"}));
    // Its own event too.
    let noted = EventPublisher::new(caller_nats.clone(), document(&caller()), &SchemaSet::default())
        .await
        .unwrap();
    noted.publish_json("noted", None, &json!({})).await.unwrap();

    // A call the caller's contract does not declare: refused at once, the subject named.
    let started = Instant::now();
    let refused = greeter_client.call_json("secret", &json!({})).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the refusal came only after {:?}: a timeout, not the server's refusal",
        started.elapsed()
    );
    assert!(matches!(&refused, CallError::Refused { .. }), "{refused:?}");
    assert_eq!(refused.code(), ErrorCode::Unauthorized);
    let message = refused.to_string();
    for expected in [
        "UNAUTHORIZED",
        "\"caller\"",
        "publish to \"acl.greeter.v1.secret\"",
        "greeter@1#secret",
        "`calls`",
    ] {
        assert!(message.contains(expected), "{expected} missing from: {message}");
    }

    // An event it does not own: the server drops it, the connection reports it.
    let stream_name = subjects::event_stream(&document(&greeter()).service, 1);
    let admin = async_nats::jetstream::new(server.client().await.unwrap());
    let stored_before = admin
        .get_stream(&stream_name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    let since = Instant::now();
    caller_nats
        .publish("acl.greeter.v1.greeted", br#"{"name":"mallory"}"#.as_slice().into())
        .await
        .unwrap();
    caller_nats.flush().await.unwrap();
    let refusal = eventually("the forged event's refusal is reported", || async {
        refusals::recent(&caller_nats, RefusedAction::Publish, "acl.greeter.v1.greeted", since)
    })
    .await;
    assert_eq!(refusal.connection.as_deref(), Some("caller"));
    assert!(
        refusal.to_string().contains("publish to \"acl.greeter.v1.greeted\""),
        "{refusal}"
    );
    let stored_after = admin
        .get_stream(&stream_name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(stored_after, stored_before, "the forged event was stored");

    // Reading another service's requests or replies: refused subscriptions.
    for subject in ["acl.greeter.v1.hello", "_INBOX_greeter.>"] {
        let since = Instant::now();
        let _subscription = caller_nats.subscribe(subject).await.unwrap();
        caller_nats.flush().await.unwrap();
        eventually("the subscription's refusal is reported", || async {
            refusals::recent(&caller_nats, RefusedAction::Subscribe, subject, since)
        })
        .await;
    }
    // Nothing was refused to the greeter, which kept within its permissions.
    assert!(
        refusals::recent(
            &greeter_nats,
            RefusedAction::Publish,
            "acl.greeter.v1.greeted",
            Instant::now() - WITHIN
        )
        .is_none()
    );

    stop.cancel();
    for task in [greeter_task, caller_task] {
        tokio::time::timeout(WITHIN, task).await.unwrap().unwrap().unwrap();
    }
    tokio::time::timeout(WITHIN, consumer_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    registry.stop().await.unwrap();
}

#[tokio::test]
async fn the_printed_configuration_of_the_whole_catalog_is_one_nats_server_accepts() {
    let catalog = tests::harness::workspace_root().join("contracts/catalog");
    let run = soa(&["contract", "permissions", catalog.to_str().unwrap()]).await;
    assert_exit(&run, Exit::Success);
    for user in [
        "orders-v1",
        "inventory-v1",
        "payments-v1",
        "shipping-v1",
        "notifications-v1",
    ] {
        assert!(
            run.stdout.contains(&format!("user: \"{user}\"")),
            "{user} missing:\n{}",
            run.stdout
        );
    }
    // The passwords come from the environment: define them for the check.
    let dir = tempfile::tempdir().unwrap();
    let variables: String = run
        .stdout
        .lines()
        .filter_map(|line| line.split("password: $").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(|variable| format!("{variable}: \"x\"\n"))
        .collect();
    let file = dir.path().join("server.conf");
    std::fs::write(&file, format!("{variables}{}", run.stdout)).unwrap();
    let binary = tests::harness::find_binary().unwrap();
    let checked = tokio::process::Command::new(binary)
        .arg("-c")
        .arg(&file)
        .arg("-t")
        .output()
        .await
        .unwrap();
    assert!(
        checked.status.success(),
        "nats-server refused the configuration: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A call to a service whose document is missing is a usage error naming it.
    let orders = catalog.join("orders.v1.json");
    let run = soa(&["contract", "permissions", orders.to_str().unwrap()]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("no contract document of"), "{}", run.stderr);
}

/// The shop's state buckets, by service: what `--kv` grants beyond the contracts.
const SHOP_BUCKETS: [(&str, &str); 6] = [
    ("orders", "SHOP_ORDERS"),
    ("inventory", "SHOP_STOCK"),
    ("inventory", "SHOP_RESERVATIONS"),
    ("payments", "SHOP_PAYMENTS"),
    ("shipping", "SHOP_SHIPMENTS"),
    ("notifications", "SHOP_NOTIFICATIONS"),
];

#[tokio::test]
async fn the_shop_runs_choreographed_with_each_service_under_the_permissions_of_its_contract() {
    use bus_services::shop::{Shop, ShopService};
    use contracts::shop::{FlowMode, OrderStatus, orders};
    use tests::shop::{SOLD_OUT, STOCKED, order, shop_config, wait_settled};

    tests::init_tracing();
    let catalog = tests::harness::workspace_root().join("contracts/catalog");
    let mut args = vec![catalog.display().to_string()];
    for (service, bucket) in SHOP_BUCKETS {
        args.push("--kv".to_owned());
        args.push(format!("{service}={bucket}"));
    }
    let server = start_server(server_config(&args).await).await;

    // Each service on a connection of its own, as its own user.
    let stop = CancellationToken::new();
    let shop = std::sync::Arc::new(Shop::new(shop_config(9)));
    let mut connections = Vec::new();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for service in ShopService::ALL {
        let nats = connection::connect(&service_config(&server, service.name()))
            .await
            .unwrap();
        connections.push((service.name(), nats.clone()));
        let (shop, stop) = (std::sync::Arc::clone(&shop), stop.clone());
        tasks.push(tokio::spawn(async move { shop.run_only(&[service], nats, stop).await }));
    }
    let admin = server.client().await.unwrap();
    Shop::wait_until_serving(&admin, &ShopService::ALL, WITHIN)
        .await
        .unwrap();

    // One order completes, one is cancelled for want of stock: every
    // service acts and announces, every reaction consumes.
    let orders_client = ServiceClient::new(admin.clone(), orders::contract().unwrap());
    let completes = order("acl-ok", FlowMode::Choreographed, &[(STOCKED[0], 1, 1_500)]);
    let cancelled = order("acl-none", FlowMode::Choreographed, &[(SOLD_OUT, 1, 900)]);
    for placed in [&completes, &cancelled] {
        orders_client.call::<orders::Place>(placed).await.unwrap();
    }
    let books = wait_settled(&admin, &["acl-ok", "acl-none"], WITHIN).await.unwrap();
    assert_eq!(books.orders["acl-ok"].status, Some(OrderStatus::Completed));
    assert_eq!(books.orders["acl-none"].status, Some(OrderStatus::Cancelled));

    // Nothing any service did was refused.
    for (service, nats) in &connections {
        let refused = refusals::since(nats, started);
        assert!(refused.is_empty(), "{service} was refused: {refused:#?}");
    }
    stop.cancel();
    for task in tasks {
        tokio::time::timeout(WITHIN, task).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_event_outside_the_publishers_permissions_fails_at_once_and_says_why() {
    tests::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // Permissions made from greeter 1.0.0; the service then runs 1.1.0,
    // which adds an event its user was never granted.
    let server = start_server(server_config(&write_documents(dir.path())).await).await;
    let mut newer = greeter();
    newer["version"] = json!("1.1.0");
    newer["events"]["waved"] = json!({
        "subject": "acl.greeter.v1.waved",
        "description": "Someone was waved at",
        "payload": {"type": "object"}
    });
    let nats = connection::connect(&service_config(&server, "greeter")).await.unwrap();
    let publisher = EventPublisher::new(nats, document(&newer), &SchemaSet::default())
        .await
        .unwrap();
    // Its granted event is stored.
    publisher
        .publish_json("greeted", None, &json!({"name": "ada"}))
        .await
        .unwrap();
    let started = Instant::now();
    let refused = publisher.publish_json("waved", None, &json!({})).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the refusal came only after {:?}: a timeout, not the server's refusal",
        started.elapsed()
    );
    assert!(
        matches!(&refused, bus_services::runtime::EventError::Refused { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    for expected in [
        "UNAUTHORIZED",
        "publish to \"acl.greeter.v1.waved\"",
        "\"waved\" of greeter@1.1.0 was not stored",
        "soa contract permissions",
    ] {
        assert!(message.contains(expected), "{expected} missing from: {message}");
    }
}
