//! An in-process registry on a harness server, for tests that need one.

use std::sync::Arc;
use std::time::Duration;

use bus_services::runtime::{ServiceClient, ServiceConfig};
use registry::catalog::Catalog;
use registry::server::{Registry, RegistryError, RegistryOptions};
use registry::store::Store;
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
        let client = registry_client(server).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answered = client
                .call::<contracts::registry_api::ops::List>(&Default::default())
                .await;
            if answered.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("the registry did not answer within 10 s: {answered:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
