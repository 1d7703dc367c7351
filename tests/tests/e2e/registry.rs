//! The registry over NATS against a real server: registration rules, queries,
//! instances and their expiry, change events, restarts on every store, two
//! replicas on one KV bucket, and bad input.

use std::sync::Arc;
use std::time::Duration;

use bus_services::runtime::{CallError, RegistrationConfig, Service, ServiceClient, ServiceConfig};
use contracts::registry_api::{
    ChangeKind, ConsumersRequest, GetRequest, HeartbeatRequest, InstancesRequest, RegisterRequest, RegistryChange,
    ResolveRequest, ops,
};
use contracts::shop::inventory;
use contracts::{ErrorCode, MemberName, ServiceName, SubjectPattern};
use futures::StreamExt;
use registry::catalog::EvictionGuard;
use registry::server::RegistryOptions;
use registry::store::{EmbeddedStore, KvStore, MemoryStore, Store};
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{
    RunningRegistry, SHOP_OWNER_TOKEN, register_shop, registry_client, shop_bus, shop_document, test_options,
};
use tokio_util::sync::CancellationToken;

fn register(document: Value, token: &str) -> RegisterRequest {
    RegisterRequest {
        document,
        owner_token: Some(token.to_owned()),
    }
}

fn refused(result: Result<impl std::fmt::Debug, CallError>) -> contracts::ErrorBody {
    match result {
        Err(error) => error.body(),
        Ok(value) => panic!("expected an error reply, got {value:?}"),
    }
}

fn name(text: &str) -> ServiceName {
    ServiceName::parse(text).unwrap()
}

/// A server and a registry on a memory store, with a subscription to the
/// registry's change events made before it starts, so that none is missed,
/// and a client of the registry.
async fn watched_registry() -> (NatsServer, async_nats::Subscriber, RunningRegistry, ServiceClient) {
    let server = NatsServer::start().await.unwrap();
    let watcher = server.client().await.unwrap();
    let changes = watcher.subscribe("soa.registry.v1.events.>").await.unwrap();
    watcher.flush().await.unwrap();
    let registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), test_options())
        .await
        .unwrap();
    let client = registry_client(&server).await.unwrap();
    (server, changes, registry, client)
}

#[tokio::test]
async fn registration_rules_hold_over_nats_and_changes_are_announced() {
    let (_server, mut changes, registry, client) = watched_registry().await;
    register_shop(&client).await.unwrap();

    // The same content again: idempotent.
    let again = client
        .call::<ops::Register>(&register(shop_document("inventory").unwrap(), SHOP_OWNER_TOKEN))
        .await
        .unwrap();
    assert!(!again.created);

    // A compatible update.
    let mut update = shop_document("inventory").unwrap();
    update["version"] = json!("1.2.0");
    update["$defs"]["ReserveStock"]["properties"]["note"] = json!({"type": "string", "description": "Optional."});
    let stored = client
        .call::<ops::Register>(&register(update.clone(), SHOP_OWNER_TOKEN))
        .await
        .unwrap();
    assert_eq!(stored.id.to_string(), "inventory@1.2.0");

    // A breaking update, refused with its reasons.
    let mut breaking = update.clone();
    breaking["version"] = json!("1.3.0");
    breaking["$defs"]["ReserveStock"]["required"] = json!(["order_id", "items", "note"]);
    let body = refused(
        client
            .call::<ops::Register>(&register(breaking, SHOP_OWNER_TOKEN))
            .await,
    );
    assert_eq!(body.code.as_str(), "INCOMPATIBLE");
    assert!(
        body.details
            .iter()
            .any(|detail| detail.message.contains("\"note\" became required")),
        "{body:#?}"
    );

    // Ownership.
    let mut foreign = update.clone();
    foreign["version"] = json!("1.2.1");
    let body = refused(client.call::<ops::Register>(&register(foreign, "someone-else")).await);
    assert_eq!(body.code, ErrorCode::Unauthorized);

    // Queries see exactly what was accepted.
    let latest = client
        .call::<ops::Get>(&GetRequest {
            service: name("inventory"),
            version: None,
            major: None,
        })
        .await
        .unwrap();
    assert_eq!(latest.document.version.to_string(), "1.2.0");
    let resolved = client
        .call::<ops::Resolve>(&ResolveRequest {
            subject: SubjectPattern::parse("shop.*.v1.*").unwrap(),
        })
        .await
        .unwrap();
    assert!(resolved.bindings.len() > 10);
    let consumers = client
        .call::<ops::Consumers>(&ConsumersRequest {
            service: name("orders"),
            major: Some(1),
            member: MemberName::parse("placed").unwrap(),
        })
        .await
        .unwrap();
    assert!(consumers.consumers.iter().any(|id| id.to_string() == "inventory@1.2.0"));

    // Watchers saw one `registered` per stored version, and nothing for the refusals.
    let mut registered = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(300), changes.next()).await {
        let change: RegistryChange = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(message.subject.as_str(), change.kind.subject());
        if change.kind == ChangeKind::Registered {
            registered.push(change.contract.to_string());
        }
    }
    assert_eq!(registered.len(), 6, "{registered:?}");
    assert!(registered.contains(&"inventory@1.2.0".to_owned()));
    assert_eq!(registry.catalog().version_count(), 6);
    registry.stop().await.unwrap();
}

/// An inventory instance that registers itself and beats every 100 ms.
fn inventory_instance() -> Service {
    let config = ServiceConfig {
        registration: Some(RegistrationConfig {
            heartbeat_interval: Duration::from_millis(100),
            ttl: Duration::from_millis(400),
            request_timeout: Duration::from_millis(500),
            owner_token: Some(SHOP_OWNER_TOKEN.into()),
        }),
        ..ServiceConfig::default()
    };
    super::runtime::inventory_service(config, Arc::default())
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn instances(client: &ServiceClient, service: &str) -> Vec<contracts::registry_api::InstanceInfo> {
    client
        .call::<ops::Instances>(&InstancesRequest {
            service: Some(name(service)),
        })
        .await
        .unwrap()
        .instances
}

#[tokio::test]
async fn services_register_themselves_expire_and_come_back_after_a_registry_restart() {
    let (server, mut changes, registry, client) = watched_registry().await;

    // A runtime service registers its contract and beats.
    let service = inventory_instance();
    let instance_id = service.instance_id().to_owned();
    let stop_service = CancellationToken::new();
    let running = tokio::spawn(service.run(server.client().await.unwrap(), stop_service.clone()));
    wait_for("the instance to appear", async || {
        instances(&client, "inventory").await.len() == 1
    })
    .await;
    let listed = instances(&client, "inventory").await;
    assert_eq!(listed[0].instance_id, instance_id);
    assert!(listed[0].healthy && !listed[0].drift);

    // A heartbeat that goes silent expires; one that keeps beating does not.
    let nats = server.client().await.unwrap();
    let beat = HeartbeatRequest {
        instance_id: "silent".to_owned(),
        contract: inventory::contract().unwrap().id(),
        digest: "sha256:not-registered".to_owned(),
        ttl_ms: 200,
    };
    let reply = ServiceClient::new(nats.clone(), contracts::registry_api::contract().unwrap())
        .call::<ops::Heartbeat>(&beat)
        .await
        .unwrap();
    assert!(reply.drift, "a digest no version has is drift");
    wait_for("the silent instance to expire", async || {
        instances(&client, "inventory").await.len() == 1
    })
    .await;

    // The registry restarts with an empty memory store: the service's next
    // beat is refused as unknown, so it registers again by itself.
    registry.abort();
    let registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), test_options())
        .await
        .unwrap();
    wait_for("the service to register again", async || {
        registry.catalog().version_count() == 1 && instances(&client, "inventory").await.len() == 1
    })
    .await;

    // A clean shutdown deregisters.
    stop_service.cancel();
    running.await.unwrap().unwrap();
    assert!(instances(&client, "inventory").await.is_empty());

    let mut kinds = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(300), changes.next()).await {
        let change: RegistryChange = serde_json::from_slice(&message.payload).unwrap();
        kinds.push(change.kind);
    }
    for expected in [
        ChangeKind::Registered,
        ChangeKind::InstanceUp,
        ChangeKind::Drift,
        ChangeKind::InstanceExpired,
        ChangeKind::InstanceDown,
    ] {
        assert!(kinds.contains(&expected), "{expected:?} missing from {kinds:?}");
    }
    registry.stop().await.unwrap();
}

#[tokio::test]
async fn the_eviction_guard_keeps_the_fleet_when_all_beats_stop() {
    let server = NatsServer::start().await.unwrap();
    let options = RegistryOptions {
        guard: EvictionGuard::default(),
        ..test_options()
    };
    let registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), options)
        .await
        .unwrap();
    let client = registry_client(&server).await.unwrap();
    register_shop(&client).await.unwrap();
    let digest = tests::registry::shop_contract("inventory").unwrap().digest();
    let beat = |id: usize| HeartbeatRequest {
        instance_id: format!("i{id}"),
        contract: contracts::ContractId::parse("inventory@1.1.0").unwrap(),
        digest: digest.clone(),
        ttl_ms: 1_000,
    };
    let beats: Vec<HeartbeatRequest> = (0..20).map(beat).collect();
    futures::future::join_all(beats.iter().map(|beat| client.call::<ops::Heartbeat>(beat)))
        .await
        .into_iter()
        .for_each(|reply| assert!(reply.is_ok()));
    // Every beat stops (a network blip): the fleet is kept. The beats went
    // out together, but on a busy machine a few may land a sweep apart, and
    // the guard lets those few go: never more than half of the fleet.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let kept = instances(&client, "inventory").await;
    assert!(kept.len() >= 10, "most of the fleet was evicted: {} left", kept.len());
    assert!(kept.iter().all(|i| !i.healthy));
    // Beats resume for most: the three that stay silent expire.
    let beats: Vec<HeartbeatRequest> = (0..17).map(beat).collect();
    futures::future::join_all(beats.iter().map(|beat| client.call::<ops::Heartbeat>(beat)))
        .await
        .into_iter()
        .for_each(|reply| assert!(reply.is_ok()));
    wait_for("the silent three to expire", async || {
        instances(&client, "inventory").await.len() == 17
    })
    .await;
    registry.stop().await.unwrap();
}

async fn everything_survives_a_restart(open: impl AsyncFn() -> Arc<dyn Store>) {
    let server = NatsServer::start().await.unwrap();
    let registry = RunningRegistry::start(&server, open().await, test_options())
        .await
        .unwrap();
    let client = registry_client(&server).await.unwrap();
    register_shop(&client).await.unwrap();
    let mut update = shop_document("payments").unwrap();
    update["version"] = json!("1.2.1");
    client
        .call::<ops::Register>(&register(update.clone(), SHOP_OWNER_TOKEN))
        .await
        .unwrap();
    // Killed, not stopped: only what was acknowledged is durable.
    registry.abort();
    let reopened = RunningRegistry::start(&server, open().await, test_options())
        .await
        .unwrap();
    assert_eq!(reopened.catalog().version_count(), 6);
    let versions = client
        .call::<ops::Versions>(&contracts::registry_api::VersionsRequest {
            service: name("payments"),
        })
        .await
        .unwrap();
    assert_eq!(versions.versions.len(), 2);
    // Ownership survives too.
    update["version"] = json!("1.2.2");
    let body = refused(client.call::<ops::Register>(&register(update, "intruder")).await);
    assert_eq!(body.code, ErrorCode::Unauthorized);
    reopened.stop().await.unwrap();
}

#[tokio::test]
async fn the_embedded_store_keeps_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    everything_survives_a_restart(async || {
        // The killed registry's file handle goes away with its task; retry briefly.
        for _ in 0..100 {
            match EmbeddedStore::open(&path) {
                Ok(store) => return Arc::new(store) as Arc<dyn Store>,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Arc::new(EmbeddedStore::open(&path).unwrap())
    })
    .await;
}

#[tokio::test]
async fn the_kv_store_keeps_everything_acknowledged() {
    let server = NatsServer::start().await.unwrap();
    let nats = server.client().await.unwrap();
    let open = async || {
        let store = KvStore::open(async_nats::jetstream::new(nats.clone()), "registry_test", 1)
            .await
            .unwrap();
        Arc::new(store) as Arc<dyn Store>
    };
    let registry = RunningRegistry::start(&server, open().await, test_options())
        .await
        .unwrap();
    let client = registry_client(&server).await.unwrap();
    register_shop(&client).await.unwrap();
    registry.abort();
    let reopened = RunningRegistry::start(&server, open().await, test_options())
        .await
        .unwrap();
    assert_eq!(reopened.catalog().version_count(), 5);
    reopened.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_on_one_kv_bucket_see_each_others_writes_and_instances() {
    let server = NatsServer::start().await.unwrap();
    let nats = server.client().await.unwrap();
    let open = async || {
        let store = KvStore::open(async_nats::jetstream::new(nats.clone()), "shared", 1)
            .await
            .unwrap();
        Arc::new(store) as Arc<dyn Store>
    };
    let options = || RegistryOptions {
        observe_all_beats: true,
        ..test_options()
    };
    let first = RunningRegistry::start(&server, open().await, options()).await.unwrap();
    let second = RunningRegistry::start(&server, open().await, options()).await.unwrap();
    let client = registry_client(&server).await.unwrap();
    register_shop(&client).await.unwrap();
    wait_for("both replicas to hold every version", async || {
        first.catalog().version_count() == 5 && second.catalog().version_count() == 5
    })
    .await;
    let digest = tests::registry::shop_contract("inventory").unwrap().digest();
    for id in 0..10 {
        client
            .call::<ops::Heartbeat>(&HeartbeatRequest {
                instance_id: format!("i{id}"),
                contract: contracts::ContractId::parse("inventory@1.1.0").unwrap(),
                digest: digest.clone(),
                ttl_ms: 10_000,
            })
            .await
            .unwrap();
    }
    wait_for("both replicas to know every instance", async || {
        first.catalog().instance_count() == 10 && second.catalog().instance_count() == 10
    })
    .await;
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

#[tokio::test]
async fn services_register_again_after_the_nats_server_restarts() {
    let mut server = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("r.redb")).unwrap());
    let registry = RunningRegistry::start(&server, store, test_options()).await.unwrap();
    let client = registry_client(&server).await.unwrap();
    let stop_service = CancellationToken::new();
    let running = tokio::spawn(inventory_instance().run(server.client().await.unwrap(), stop_service.clone()));
    wait_for("the instance to appear", async || {
        instances(&client, "inventory").await.len() == 1
    })
    .await;
    server.restart().await.unwrap();
    // Everything reconnects; the instance keeps (or regains) its place.
    wait_for("the instance to beat again", async || {
        client
            .call::<ops::Instances>(&InstancesRequest::default())
            .await
            .is_ok_and(|reply| reply.instances.iter().any(|i| i.healthy))
    })
    .await;
    assert_eq!(registry.catalog().version_count(), 1);
    stop_service.cancel();
    running.await.unwrap().unwrap();
    registry.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (server, registry, client) = shop_bus().await.unwrap();
    let nats = server.client().await.unwrap();

    // Not JSON at all.
    let reply = nats
        .request("soa.registry.v1.register", "{not json".into())
        .await
        .unwrap();
    let body = bus_services::wire::decode_error(reply.headers.as_ref(), &reply.payload).unwrap();
    assert_eq!(body.code, ErrorCode::ValidationFailed);

    // A misspelt field.
    let body = refused(
        client
            .call_json("get", &json!({"service": "inventory", "verison": "1.0.0"}))
            .await,
    );
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert!(
        body.details.iter().any(|detail| detail.message.contains("verison")),
        "{body:#?}"
    );

    // A bad service name, which only the Rust type knows about.
    let body = refused(client.call_json("get", &json!({"service": "Inventory"})).await);
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert!(
        body.details.iter().any(|detail| detail.pointer == "/service"),
        "{body:#?}"
    );

    // An invalid schema in a document.
    let mut invalid = shop_document("shipping").unwrap();
    invalid["version"] = json!("1.3.0");
    invalid["$defs"]["Broken"] = json!({"type": "no-such-type"});
    let body = refused(client.call::<ops::Register>(&register(invalid, SHOP_OWNER_TOKEN)).await);
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert!(
        body.details
            .iter()
            .any(|detail| detail.pointer.contains("/$defs/Broken")),
        "{body:#?}"
    );

    // A document nested far too deep.
    let mut deep = json!({"type": "string"});
    for _ in 0..100 {
        deep = json!({"items": deep, "type": "array"});
    }
    let mut too_deep = shop_document("shipping").unwrap();
    too_deep["version"] = json!("1.3.0");
    too_deep["$defs"]["Deep"] = deep;
    let body = refused(
        client
            .call::<ops::Register>(&register(too_deep, SHOP_OWNER_TOKEN))
            .await,
    );
    assert_eq!(body.code, ErrorCode::ValidationFailed, "{body:#?}");

    // A huge document: refused before it reaches the registry, or by it.
    let mut huge = shop_document("shipping").unwrap();
    huge["version"] = json!("1.3.0");
    huge["description"] = json!("x".repeat(2 * 1024 * 1024));
    let result = client.call::<ops::Register>(&register(huge, SHOP_OWNER_TOKEN)).await;
    assert!(result.is_err(), "a 2 MiB document must not be registered");

    // An unknown service.
    let body = refused(
        client
            .call::<ops::Get>(&GetRequest {
                service: name("teleporter"),
                version: None,
                major: None,
            })
            .await,
    );
    assert_eq!(body.code, ErrorCode::NotFound);
    assert!(body.message.contains("teleporter"));

    assert_eq!(registry.catalog().version_count(), 5, "nothing was stored");
    registry.stop().await.unwrap();
}
