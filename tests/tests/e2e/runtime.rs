//! The service runtime against a real nats-server: typed calls, validation
//! both ways, errors, load sharing, NATS micro discovery, propagation,
//! graceful shutdown, reconnects and registration.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_services::runtime::{
    BuildError, CallError, CallOptions, Context, RegistrationConfig, Service, ServiceClient, ServiceConfig,
    ServiceError,
};
use contracts::shop::StockLine;
use contracts::shop::inventory::{self, GetStock, Reservation, ReserveStock, StockLevel};
use contracts::shop::notifications;
use contracts::{ContractDocument, ErrorCode};
use futures::StreamExt;
use serde_json::{Value, json};
use tests::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running service instance: cancel to stop it, then await the handle.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    service: Service,
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

fn quiet() -> ServiceConfig {
    ServiceConfig {
        registration: None,
        ..ServiceConfig::default()
    }
}

/// An inventory that holds 5 units of every product and records the
/// correlation ids and trace ids it saw.
/// Correlation id and trace id of each request a handler saw.
pub(crate) type Seen = Arc<Mutex<Vec<(Option<String>, String)>>>;

pub(crate) fn inventory_service(config: ServiceConfig, seen: Seen) -> Service {
    let record = move |ctx: &Context| {
        seen.lock()
            .unwrap()
            .push((ctx.correlation_id().map(|id| id.to_string()), ctx.trace().trace_id()));
    };
    let record_stock = record.clone();
    Service::builder(inventory::contract().unwrap())
        .config(config)
        .handle::<inventory::Reserve, _, _>(move |ctx, request: ReserveStock| {
            record(&ctx);
            async move {
                if request.items.iter().any(|line| line.quantity > 5) {
                    return Err(ServiceError::declared("OUT_OF_STOCK", "only 5 units of each product"));
                }
                if request.order_id.0 == "undeclared" {
                    return Err(ServiceError::declared("WAREHOUSE_ON_FIRE", "not in the contract"));
                }
                if request.order_id.0 == "panic" {
                    panic!("a handler bug");
                }
                if request.order_id.0 == "slow" {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                Ok(Reservation {
                    reservation_id: format!("res-{}", request.order_id.0),
                    order_id: request.order_id,
                    items: request.items,
                })
            }
        })
        .handle_json("release", |_ctx, request: Value| async move {
            if request["order_id"] == "broken" {
                // Breaks the contract: `released` must be a boolean.
                return Ok(json!({"order_id": "broken", "released": "yes"}));
            }
            Ok(json!({"order_id": request["order_id"], "released": true}))
        })
        .handle::<inventory::Stock, _, _>(move |ctx, request: GetStock| {
            record_stock(&ctx);
            async move {
                Ok(StockLevel {
                    sku: request.sku,
                    available: 5,
                    reserved: 0,
                })
            }
        })
        .build()
        .unwrap()
}

async fn start(server: &NatsServer, service: Service) -> Running {
    let nats = server.client().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = {
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { service.run(nats, shutdown).await.unwrap() })
    };
    // The service confirms its subscriptions with a round trip before it serves;
    // waiting for a PING answer proves it is up.
    let probe = server.client().await.unwrap();
    let subject = format!("$SRV.PING.inventory.{}", service.instance_id());
    for _ in 0..100 {
        if probe.request(subject.clone(), "".into()).await.is_ok() {
            return Running {
                shutdown,
                task,
                service,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the service did not come up");
}

fn reserve(order: &str, quantity: u32) -> ReserveStock {
    ReserveStock {
        order_id: contracts::shop::OrderId(order.to_owned()),
        items: vec![StockLine {
            sku: "sku-kettle".into(),
            quantity,
        }],
    }
}

async fn client(server: &NatsServer) -> ServiceClient {
    ServiceClient::new(server.client().await.unwrap(), inventory::contract().unwrap())
}

#[tokio::test]
async fn typed_round_trip() {
    let server = NatsServer::start().await.unwrap();
    let running = start(&server, inventory_service(quiet(), Arc::default())).await;
    let client = client(&server).await;
    let reservation = client.call::<inventory::Reserve>(&reserve("ord-1", 2)).await.unwrap();
    assert_eq!(reservation.reservation_id, "res-ord-1");
    assert_eq!(reservation.items[0].quantity, 2);
    let level = client
        .call::<inventory::Stock>(&GetStock { sku: "sku-mug".into() })
        .await
        .unwrap();
    assert_eq!(level.available, 5);
    running.stop().await;
}

#[tokio::test]
async fn invalid_requests_never_reach_the_handler_and_name_every_pointer() {
    let server = NatsServer::start().await.unwrap();
    let running = start(&server, inventory_service(quiet(), Arc::default())).await;
    let client = client(&server).await;
    let bad = json!({"order_id": "ord 1", "items": [{"sku": "", "quantity": 0}], "rush": true});
    let error = client.call_json("reserve", &bad).await.unwrap_err();
    let CallError::Service { body, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    let mut pointers: Vec<&str> = body.details.iter().map(|detail| detail.pointer.as_str()).collect();
    pointers.sort();
    assert_eq!(
        pointers,
        vec!["", "/items/0/quantity", "/items/0/sku", "/order_id"],
        "{body:#?}"
    );
    assert_eq!(
        running
            .service
            .stats()
            .endpoints
            .iter()
            .map(|e| e.num_errors)
            .sum::<u64>(),
        1
    );

    // Raw bytes that are not JSON get the same treatment.
    let raw = server.client().await.unwrap();
    let reply = raw
        .request("shop.inventory.v1.reserve", "not json".into())
        .await
        .unwrap();
    let body = bus_services::wire::decode_error(reply.headers.as_ref(), &reply.payload).unwrap();
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    let headers = reply.headers.unwrap();
    assert_eq!(headers.get("Nats-Service-Error-Code").unwrap().as_str(), "400");
    running.stop().await;
}

#[tokio::test]
async fn handler_errors_keep_to_the_contract() {
    let server = NatsServer::start().await.unwrap();
    let running = start(&server, inventory_service(quiet(), Arc::default())).await;
    let client = client(&server).await;
    let error = client
        .call::<inventory::Reserve>(&reserve("ord-2", 9))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Declared("OUT_OF_STOCK".into()));
    assert_eq!(error.body().message, "only 5 units of each product");

    let error = client
        .call::<inventory::Reserve>(&reserve("undeclared", 1))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Internal, "an undeclared code becomes INTERNAL");

    let error = client
        .call::<inventory::Reserve>(&reserve("panic", 1))
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        ErrorCode::Internal,
        "a panicking handler still gets its caller a reply"
    );

    let error = client
        .call_json("release", &json!({"order_id": "broken"}))
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        ErrorCode::Internal,
        "a response that breaks the contract is not sent"
    );
    assert_eq!(
        error.body().message,
        "the service produced a response that breaks its contract"
    );
    running.stop().await;
}

#[tokio::test]
async fn nobody_serving_is_unavailable() {
    let server = NatsServer::start().await.unwrap();
    let client = client(&server).await.with_options(CallOptions {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        ..CallOptions::default()
    });
    let error = client
        .call::<inventory::Reserve>(&reserve("ord-3", 1))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Unavailable);
    assert!(
        error
            .to_string()
            .contains("no instance of inventory answers on shop.inventory.v1.reserve"),
        "{error}"
    );
    let unknown = client.call_json("teleport", &json!({})).await.unwrap_err();
    assert!(matches!(unknown, CallError::UnknownOperation { .. }), "{unknown:?}");
}

#[tokio::test]
async fn two_instances_share_the_load() {
    let server = NatsServer::start().await.unwrap();
    let first = start(&server, inventory_service(quiet(), Arc::default())).await;
    let second = start(&server, inventory_service(quiet(), Arc::default())).await;
    let client = client(&server).await;
    for index in 0..60 {
        client
            .call::<inventory::Reserve>(&reserve(&format!("ord-{index}"), 1))
            .await
            .unwrap();
    }
    let served = |running: &Running| {
        running
            .service
            .stats()
            .endpoints
            .iter()
            .map(|e| e.num_requests)
            .sum::<u64>()
    };
    let (a, b) = (served(&first), served(&second));
    assert_eq!(a + b, 60);
    assert!(a > 0 && b > 0, "both instances served: {a} and {b}");

    // $SRV.STATS shows both instances with their own counts.
    let stats = gather(&server, "$SRV.STATS.inventory", 2).await;
    let mut counts: Vec<u64> = stats
        .iter()
        .map(|reply| {
            reply["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["num_requests"].as_u64().unwrap())
                .sum()
        })
        .collect();
    counts.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(counts, expected);
    first.stop().await;
    second.stop().await;
}

/// Sends one discovery request and gathers replies until `expected` came or
/// a quiet period passed (the ADR-32 scatter-gather).
async fn gather(server: &NatsServer, subject: &str, expected: usize) -> Vec<Value> {
    let nats = server.client().await.unwrap();
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply(subject.to_owned(), inbox, "".into())
        .await
        .unwrap();
    let mut gathered = Vec::new();
    while gathered.len() < expected {
        match tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
            Ok(Some(message)) => gathered.push(serde_json::from_slice(&message.payload).unwrap()),
            _ => break,
        }
    }
    // Nothing more should come.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), replies.next())
            .await
            .is_err()
    );
    gathered
}

/// The ADR-32 reply shapes, as JSON Schemas, written from the ADR.
fn adr32_schema(kind: &str) -> Value {
    let identity = json!({
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
        "id": {"type": "string", "minLength": 1},
        "version": {"type": "string", "pattern": "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)"},
        "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    });
    let mut properties = identity.as_object().unwrap().clone();
    properties.insert(
        "type".into(),
        json!({"const": format!("io.nats.micro.v1.{kind}_response")}),
    );
    let mut required = vec!["type", "name", "id", "version"];
    match kind {
        "info" => {
            properties.insert("description".into(), json!({"type": "string"}));
            properties.insert(
                "endpoints".into(),
                json!({"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "subject", "queue_group"],
                    "properties": {
                        "name": {"type": "string"}, "subject": {"type": "string"}, "queue_group": {"type": "string"},
                        "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
                    }
                }}),
            );
            required.push("endpoints");
        }
        "stats" => {
            properties.insert("started".into(), json!({"type": "string", "format": "date-time"}));
            properties.insert(
                "endpoints".into(),
                json!({"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "subject", "queue_group", "num_requests", "num_errors", "last_error", "processing_time", "average_processing_time"],
                    "properties": {
                        "name": {"type": "string"}, "subject": {"type": "string"}, "queue_group": {"type": "string"},
                        "num_requests": {"type": "integer", "minimum": 0}, "num_errors": {"type": "integer", "minimum": 0},
                        "last_error": {"type": "string"},
                        "processing_time": {"type": "integer", "minimum": 0},
                        "average_processing_time": {"type": "integer", "minimum": 0}
                    }
                }}),
            );
            required.extend(["started", "endpoints"]);
        }
        _ => {}
    }
    json!({"type": "object", "required": required, "properties": properties})
}

#[tokio::test]
async fn discovery_answers_ping_info_and_stats_as_adr_32_says() {
    let server = NatsServer::start().await.unwrap();
    let running = start(&server, inventory_service(quiet(), Arc::default())).await;
    client(&server)
        .await
        .call::<inventory::Reserve>(&reserve("ord-4", 9))
        .await
        .unwrap_err();
    let id = running.service.instance_id().to_owned();
    for kind in ["ping", "info", "stats"] {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&adr32_schema(kind))
            .unwrap();
        let verb = kind.to_uppercase();
        for subject in [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.inventory"),
            format!("$SRV.{verb}.inventory.{id}"),
        ] {
            let replies = gather(&server, &subject, 1).await;
            assert_eq!(replies.len(), 1, "{subject}");
            let reply = &replies[0];
            let errors: Vec<String> = validator.iter_errors(reply).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{subject}: {errors:?}\n{reply:#}");
            assert_eq!(reply["name"], "inventory");
            assert_eq!(reply["id"], id.as_str());
            assert_eq!(reply["version"], "1.2.0");
            assert_eq!(reply["metadata"]["soa.contract"], "inventory@1.2.0");
            assert!(reply["metadata"]["soa.digest"].as_str().unwrap().starts_with("sha256:"));
        }
    }
    let info = &gather(&server, "$SRV.INFO.inventory", 1).await[0];
    let subjects: BTreeMap<&str, &str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(subjects["reserve"], "shop.inventory.v1.reserve");
    assert_eq!(info["endpoints"][0]["queue_group"], "inventory");
    let stats = &gather(&server, "$SRV.STATS.inventory", 1).await[0];
    let reserve_stats = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "reserve")
        .unwrap();
    assert_eq!(reserve_stats["num_errors"], 1);
    assert!(
        reserve_stats["last_error"]
            .as_str()
            .unwrap()
            .starts_with("OUT_OF_STOCK")
    );
    running.stop().await;
}

#[tokio::test]
async fn correlation_and_trace_propagate_across_a_call() {
    let server = NatsServer::start().await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inventory_running = start(&server, inventory_service(quiet(), seen.clone())).await;
    // A notifications service whose `send` handler calls inventory in the same flow.
    let inventory_client = client(&server).await;
    let forwarded = Arc::new(Mutex::new(None));
    let forwarded_in_handler = forwarded.clone();
    let notifications_service = Service::builder(notifications::contract().unwrap())
        .config(quiet())
        .handle_json("send", move |ctx, request: Value| {
            let client = inventory_client.in_flow(ctx.propagation());
            let forwarded = forwarded_in_handler.clone();
            async move {
                *forwarded.lock().unwrap() =
                    Some((ctx.correlation_id().map(|c| c.to_string()), ctx.trace().trace_id()));
                client
                    .call::<inventory::Stock>(&GetStock {
                        sku: "sku-kettle".into(),
                    })
                    .await
                    .map_err(ServiceError::internal)?;
                Ok(json!({
                    "notification_id": "n-1", "order_id": request["order_id"], "customer_id": request["customer_id"],
                    "kind": request["kind"], "message": request["message"]
                }))
            }
        })
        .handle_json("list", |_ctx, _request: Value| async move {
            Ok(json!({"notifications": []}))
        })
        .build()
        .unwrap();
    let nats = server.client().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { notifications_service.run(nats, shutdown).await.unwrap() }
    });
    let caller = server.client().await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Soa-Correlation-Id", "ord-77");
    headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let payload = json!({"order_id": "ord-77", "customer_id": "c", "kind": "order-confirmed", "message": "on its way"});
    let mut reply = None;
    for _ in 0..100 {
        match caller
            .request_with_headers(
                "shop.notifications.v1.send",
                headers.clone(),
                payload.to_string().into(),
            )
            .await
        {
            Ok(message) => {
                reply = Some(message);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let reply = reply.unwrap();
    assert!(
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .is_none(),
        "{:?}",
        String::from_utf8_lossy(&reply.payload)
    );
    let reply_headers = reply.headers.unwrap();
    assert_eq!(reply_headers.get("Soa-Correlation-Id").unwrap().as_str(), "ord-77");
    assert!(
        reply_headers
            .get("traceparent")
            .unwrap()
            .as_str()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    );
    let expected = (Some("ord-77".to_owned()), "4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
    assert_eq!(forwarded.lock().unwrap().clone(), Some(expected.clone()));
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![expected],
        "inventory saw the same flow and trace"
    );
    shutdown.cancel();
    task.await.unwrap();
    inventory_running.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let server = NatsServer::start().await.unwrap();
    let running = start(&server, inventory_service(quiet(), Arc::default())).await;
    let client = client(&server).await;
    let call = tokio::spawn(async move { client.call::<inventory::Reserve>(&reserve("slow", 1)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.stop().await;
    let reservation = call.await.unwrap().unwrap();
    assert_eq!(reservation.reservation_id, "res-slow");
    // After shutdown nobody answers.
    let late =
        ServiceClient::new(server.client().await.unwrap(), inventory::contract().unwrap()).with_options(CallOptions {
            max_attempts: 1,
            ..CallOptions::default()
        });
    assert_eq!(
        late.call::<inventory::Reserve>(&reserve("late", 1))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unavailable
    );
}

#[tokio::test]
async fn calls_work_again_after_the_server_restarts() {
    let mut server = NatsServer::start().await.unwrap();
    let running = start(&server, inventory_service(quiet(), Arc::default())).await;
    let client = client(&server).await.with_options(CallOptions {
        timeout: Duration::from_secs(1),
        max_attempts: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..CallOptions::default()
    });
    client.call::<inventory::Reserve>(&reserve("before", 1)).await.unwrap();
    server.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await.unwrap();
    // Both the service's and the client's connections reconnect; the idempotent call retries meanwhile.
    let reservation = client.call::<inventory::Reserve>(&reserve("after", 1)).await.unwrap();
    assert_eq!(reservation.reservation_id, "res-after");
    running.stop().await;
}

#[tokio::test]
async fn building_refuses_missing_and_unknown_handlers() {
    let missing = Service::builder(inventory::contract().unwrap())
        .handle_json("reserve", |_ctx, request: Value| async move { Ok(request) })
        .build()
        .unwrap_err();
    assert!(matches!(missing, BuildError::MissingHandler { .. }), "{missing}");
    assert!(
        missing
            .to_string()
            .contains("declares operation \"release\" but no handler"),
        "{missing}"
    );
    let unknown = Service::builder(inventory::contract().unwrap())
        .handle_json("teleport", |_ctx, request: Value| async move { Ok(request) })
        .build()
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("\"teleport\", which inventory@1.2.0 does not declare"),
        "{unknown}"
    );
    let mut broken = inventory::contract().unwrap().to_value();
    broken["$defs"]["ReserveStock"]["properties"]["order_id"] = json!({"$ref": "https://example.com/order-id.json"});
    let broken = ContractDocument::from_json_value("broken", &broken, None).unwrap();
    let error = Service::builder(broken).build().unwrap_err();
    assert!(matches!(error, BuildError::Contract { .. }), "{error}");
}

/// A minimal stand-in for the registry's NATS API, recording what it is sent.
async fn registry_responder(server: &NatsServer, log: Arc<Mutex<Vec<(String, Value)>>>) -> JoinHandle<()> {
    let nats = server.client().await.unwrap();
    let mut requests = nats.subscribe("soa.registry.v1.*").await.unwrap();
    bus_services::wire::round_trip(&nats, Duration::from_secs(5))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let verb = message.subject.as_str().rsplit('.').next().unwrap().to_owned();
            let body: Value = serde_json::from_slice(&message.payload).unwrap();
            let reply = match verb.as_str() {
                "register" => json!({"id": "inventory@1.2.0", "digest": "sha256:x", "created": true}),
                "heartbeat" => json!({"drift": false}),
                "deregister" => json!({"removed": true}),
                _ => json!({}),
            };
            log.lock().unwrap().push((verb, body));
            if let Some(reply_to) = message.reply {
                nats.publish(reply_to, reply.to_string().into()).await.unwrap();
            }
        }
    })
}

#[tokio::test]
async fn registers_heartbeats_and_deregisters() {
    let server = NatsServer::start().await.unwrap();
    let config = ServiceConfig {
        registration: Some(RegistrationConfig {
            heartbeat_interval: Duration::from_millis(100),
            ttl: Duration::from_millis(400),
            request_timeout: Duration::from_millis(200),
            owner_token: Some("team-secret".into()),
        }),
        ..ServiceConfig::default()
    };
    // The registry is not there when the service starts: it keeps serving.
    let running = start(&server, inventory_service(config, Arc::default())).await;
    client(&server)
        .await
        .call::<inventory::Reserve>(&reserve("no-registry", 1))
        .await
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let responder = registry_responder(&server, log.clone()).await;
    for _ in 0..50 {
        if log
            .lock()
            .unwrap()
            .iter()
            .filter(|(verb, _)| verb == "heartbeat")
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    let log = log.lock().unwrap().clone();
    let verbs: Vec<&str> = log.iter().map(|(verb, _)| verb.as_str()).collect();
    assert_eq!(verbs.first(), Some(&"register"), "{verbs:?}");
    assert_eq!(verbs.last(), Some(&"deregister"), "{verbs:?}");
    assert!(
        verbs.iter().filter(|verb| **verb == "heartbeat").count() >= 2,
        "{verbs:?}"
    );
    let register = &log[0].1;
    assert_eq!(register["owner_token"], "team-secret");
    let document = ContractDocument::from_json_value("register", &register["document"], None).unwrap();
    assert_eq!(document, inventory::contract().unwrap());
    let heartbeat = &log[1].1;
    assert_eq!(heartbeat["contract"], "inventory@1.2.0");
    let deregistered = &log.last().unwrap().1;
    assert_eq!(heartbeat["instance_id"], deregistered["instance_id"]);
    assert_eq!(heartbeat["ttl_ms"], 400);
    responder.abort();
}
