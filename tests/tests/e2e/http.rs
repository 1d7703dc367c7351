//! The registry's HTTP API on a real port beside its NATS API, as `soa
//! registry serve --http` runs them: one catalogue behind both, a
//! registration over HTTP announced and visible over NATS, graceful stop.

use std::sync::Arc;
use std::time::Duration;

use contracts::registry_api::{GetRequest, RegistryChange, ops};
use contracts::{ServiceName, shop};
use futures::StreamExt;
use registry::http::{CorsPolicy, HttpConfig, HttpState, router, serve_http};
use registry::server::Registry;
use registry::store::MemoryStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{registry_client, test_options};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "e2e-write-token";

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let http = tokio::spawn(serve_http(listener, router(state), shutdown.clone()));
    let bus = tokio::spawn(Arc::clone(&registry).run_shared(nats.clone(), shutdown.clone()));
    // Registrations are announced once the registry runs on NATS.
    let bus_client = tests::registry::registry_client(&server).await.unwrap();
    for _ in 0..200 {
        if bus_client
            .call::<contracts::registry_api::ops::List>(&Default::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health: Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "services": 0, "versions": 0, "instances": 0})
    );

    // Register the shop over HTTP.
    for document in shop::contracts().unwrap() {
        let reply = client
            .post(format!("{base}/v1/services"))
            .bearer_auth(TOKEN)
            .header("X-Soa-Owner-Token", "shop-team")
            .json(&document.to_value())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::CREATED);
        assert_eq!(
            reply.headers()["location"],
            format!("/v1/services/{}/versions/1.0.0", document.service).as_str()
        );
    }
    // Each registration was announced on the bus, as a NATS registration is.
    let announced = tokio::time::timeout(Duration::from_secs(10), announcements.next())
        .await
        .unwrap()
        .unwrap();
    let change: RegistryChange = serde_json::from_slice(&announced.payload).unwrap();
    assert_eq!(change.contract.version.to_string(), "1.0.0");

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
    let bus_client = registry_client(&server).await.unwrap();
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
    let bindings: Value = client
        .get(format!("{base}/v1/subjects/shop.orders.v1.%3E"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bindings["bindings"].as_array().unwrap().len(), 6, "{bindings:#}");

    // The document, the metrics, and an unknown route.
    let document: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
