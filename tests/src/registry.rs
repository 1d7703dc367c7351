//! An in-process registry on a harness server, for tests that need one,
//! the shop's contracts to fill it with, and its HTTP API on a loopback port.

use std::sync::Arc;
use std::time::Duration;

use bus_services::runtime::{ServiceClient, ServiceConfig};
use contracts::ContractDocument;
use contracts::registry_api::{RegisterRequest, ops};
use registry::catalog::Catalog;
use registry::http::{HttpState, router, serve_http};
use registry::server::{Registry, RegistryError, RegistryOptions};
use registry::store::{MemoryStore, Store};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::NatsServer;

/// A registry serving on a test server until stopped.
pub struct RunningRegistry {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RegistryError>>,
    catalog: Arc<Catalog>,
}

impl RunningRegistry {
    /// Opens `store` and serves the registry API on `server` with `options`;
    /// returns once the API answers.
    pub async fn start(
        server: &NatsServer,
        store: Arc<dyn Store>,
        options: RegistryOptions,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let registry = Registry::open(store, options).await?;
        let catalog = Arc::clone(registry.catalog());
        let nats = server.client().await?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(registry.run(nats, shutdown.clone()));
        wait_until_answering(&registry_client(server).await?).await?;
        Ok(Self {
            shutdown,
            task,
            catalog,
        })
    }

    /// The registry's catalogue, to look inside.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Stops the registry cleanly and waits for it.
    pub async fn stop(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task).await???;
        Ok(())
    }

    /// Stops the registry abruptly, as a killed process would: no deregistration, no drain.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Registry options for tests: no self-registration heartbeat noise unless asked.
pub fn test_options() -> RegistryOptions {
    RegistryOptions {
        expiry_interval: Duration::from_millis(50),
        service: ServiceConfig {
            registration: None,
            ..ServiceConfig::default()
        },
        ..RegistryOptions::default()
    }
}

/// A typed client of the registry's API on `server`.
pub async fn registry_client(server: &NatsServer) -> Result<ServiceClient, Box<dyn std::error::Error + Send + Sync>> {
    Ok(ServiceClient::new(
        server.client().await?,
        contracts::registry_api::contract()?,
    ))
}

/// Returns once a registry answers `client` (a `list`); an error after 10 s.
pub async fn wait_until_answering(client: &ServiceClient) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answered = client.call::<ops::List>(&Default::default()).await;
        if answered.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the registry did not answer within 10 s: {answered:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The owner credential the tests register the shop's contracts with.
pub const SHOP_OWNER_TOKEN: &str = "shop-team";

/// The frozen shop contracts (`registry/tests/data/shop/`, the shop as it
/// stood at inventory 1.1.0, payments 1.2.0 and shipping 1.2.0), by file
/// name and text; the registry's own unit tests read the same files
/// (`registry/src/sample.rs`, test-only there).
const SHOP_SAMPLE: [(&str, &str); 5] = [
    (
        "orders.v1.json",
        include_str!("../../registry/tests/data/shop/orders.v1.json"),
    ),
    (
        "inventory.v1.json",
        include_str!("../../registry/tests/data/shop/inventory.v1.json"),
    ),
    (
        "payments.v1.json",
        include_str!("../../registry/tests/data/shop/payments.v1.json"),
    ),
    (
        "shipping.v1.json",
        include_str!("../../registry/tests/data/shop/shipping.v1.json"),
    ),
    (
        "notifications.v1.json",
        include_str!("../../registry/tests/data/shop/notifications.v1.json"),
    ),
];

/// The shop's contracts at a fixed point, for tests of the registry: they
/// check its rules, queries and pages on realistic documents and must not
/// change whenever the live shop's contracts take a new version (a live
/// service registering later is simply a newer, compatible version).
pub fn shop_contracts() -> Result<Vec<ContractDocument>, Box<dyn std::error::Error + Send + Sync>> {
    SHOP_SAMPLE
        .iter()
        .map(|(name, text)| {
            ContractDocument::parse(name, text, &contracts::Limits::default())
                .map_err(|error| format!("the frozen sample {name} does not parse: {error}").into())
        })
        .collect()
}

/// The sample shop contract of `service` ([`shop_contracts`]).
pub fn shop_contract(service: &str) -> Result<ContractDocument, Box<dyn std::error::Error + Send + Sync>> {
    shop_contracts()?
        .into_iter()
        .find(|document| document.service.as_str() == service)
        .ok_or_else(|| format!("the shop has no service {service}").into())
}

/// The sample shop contract of `service` ([`shop_contracts`]) as JSON, to
/// change before registering it.
pub fn shop_document(service: &str) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    shop_contracts()?
        .into_iter()
        .find(|document| document.service.as_str() == service)
        .map(|document| document.to_value())
        .ok_or_else(|| format!("the shop has no service {service}").into())
}

/// Registers every sample shop contract ([`shop_contracts`]) through
/// `client` as [`SHOP_OWNER_TOKEN`]; each must be new.
pub async fn register_shop(client: &ServiceClient) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for document in shop_contracts()? {
        let request = RegisterRequest {
            document: document.to_value(),
            owner_token: Some(SHOP_OWNER_TOKEN.to_owned()),
        };
        if !client.call::<ops::Register>(&request).await?.created {
            return Err(format!("{} was registered already", document.id()).into());
        }
    }
    Ok(())
}

/// A server with a registry on a memory store that holds the shop's
/// contracts ([`test_options`]), and a client of the registry.
pub async fn shop_bus() -> Result<(NatsServer, RunningRegistry, ServiceClient), Box<dyn std::error::Error + Send + Sync>>
{
    let server = NatsServer::start().await?;
    let registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), test_options()).await?;
    let client = registry_client(&server).await?;
    register_shop(&client).await?;
    Ok((server, registry, client))
}

/// Serves the HTTP API of `state` on a free loopback port until `shutdown`;
/// returns its base URL (`http://127.0.0.1:<port>`) and the serving task.
pub async fn serve_http_on_loopback(
    state: HttpState,
    shutdown: CancellationToken,
) -> Result<(String, JoinHandle<std::io::Result<()>>), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(serve_http(listener, router(state), shutdown));
    Ok((base, task))
}
