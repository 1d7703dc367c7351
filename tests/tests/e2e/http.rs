//! The registry's HTTP API on a real port beside its NATS API, as `soa
//! registry serve --http` runs them: one catalogue behind both, a
//! registration over HTTP announced and visible over NATS, graceful stop.

use std::sync::Arc;
use std::time::Duration;

use contracts::ServiceName;
use contracts::registry_api::{GetRequest, RegistryChange, ops};
use futures::StreamExt;
use registry::http::{CorsPolicy, HttpConfig, HttpState};
use registry::server::Registry;
use registry::store::MemoryStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{SHOP_OWNER_TOKEN, registry_client, serve_http_on_loopback, test_options, wait_until_answering};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "e2e-write-token";

/// `GET url`, its body as JSON.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_http_api_serves_the_same_catalogue_as_nats_on_a_real_port() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let nats = server.client().await.unwrap();
    let mut announcements = nats.subscribe("soa.registry.v1.events.registered").await.unwrap();
    nats.flush().await.unwrap();

    let registry = Arc::new(
        Registry::open(Arc::new(MemoryStore::new()), test_options())
            .await
            .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let state = HttpState::new(
        Arc::clone(&registry),
        HttpConfig {
            write_token: Some(TOKEN.to_owned()),
            cors: CorsPolicy::Disabled,
        },
    );
    let (base, http) = serve_http_on_loopback(state, shutdown.clone()).await.unwrap();
    let bus = tokio::spawn(Arc::clone(&registry).run_shared(nats.clone(), shutdown.clone()));
    // Registrations are announced once the registry runs on NATS.
    let bus_client = registry_client(&server).await.unwrap();
    wait_until_answering(&bus_client).await.unwrap();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = get_json(&client, &format!("{base}/healthz")).await;
    assert_eq!(
        health,
        json!({"status": "ok", "services": 0, "versions": 0, "instances": 0})
    );

    // Register the shop over HTTP.
    for document in tests::registry::shop_contracts().unwrap() {
        let reply = client
            .post(format!("{base}/v1/services"))
            .bearer_auth(TOKEN)
            .header("X-Soa-Owner-Token", SHOP_OWNER_TOKEN)
            .json(&document.to_value())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::CREATED);
        assert_eq!(
            reply.headers()["location"],
            format!("/v1/services/{}/versions/{}", document.service, document.version).as_str()
        );
    }
    // Each registration was announced on the bus, as a NATS registration is.
    let announced = tokio::time::timeout(Duration::from_secs(10), announcements.next())
        .await
        .unwrap()
        .unwrap();
    let change: RegistryChange = serde_json::from_slice(&announced.payload).unwrap();
    // The first announced is orders, the first registered.
    assert_eq!(change.contract.to_string(), "orders@1.2.0");

    // Without the token: 401 with the challenge.
    let refused = client
        .post(format!("{base}/v1/services"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer realm=\"soa-registry\"");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED");

    // What HTTP stored, NATS serves, from the same catalogue.
    let over_http = client.get(format!("{base}/v1/services/orders")).send().await.unwrap();
    assert_eq!(over_http.status(), StatusCode::OK);
    let etag = over_http.headers()["etag"].to_str().unwrap().to_owned();
    let over_http: Value = over_http.json().await.unwrap();
    let over_nats = bus_client
        .call::<ops::Get>(&GetRequest {
            service: ServiceName::parse("orders").unwrap(),
            version: None,
            major: None,
        })
        .await
        .unwrap();
    assert_eq!(over_http["digest"], over_nats.digest.as_str());
    assert_eq!(etag, format!("\"{}\"", over_nats.digest));
    let revalidated = client
        .get(format!("{base}/v1/services/orders"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    // A wildcard subject, percent-encoded as a URL needs `>` to be.
    let bindings = get_json(&client, &format!("{base}/v1/subjects/shop.orders.v1.%3E")).await;
    assert_eq!(bindings["bindings"].as_array().unwrap().len(), 6, "{bindings:#}");

    // The document, the metrics, and an unknown route.
    let document = get_json(&client, &format!("{base}/openapi.json")).await;
    assert_eq!(document["openapi"], "3.1.0");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"soa_registry_registrations_total{via="http",outcome="created"} 5"#),
        "{metrics}"
    );
    assert!(metrics.contains("soa_registry_versions 5"), "{metrics}");
    // The NATS API's requests are counted per verb (the set-up asked `list`).
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with(r#"soa_registry_nats_requests_total{verb="list"}"#)),
        "{metrics}"
    );
    let unknown = client.get(format!("{base}/v2/anything")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND");

    // One token stops both APIs, cleanly.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), http)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), bus)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}
