//! The demo shop for end-to-end tests: the five services in process, a
//! registry holding their contracts and an orchestrator with the fulfilment
//! workflow loaded (so both modes run on one server), orders to place, and
//! waiting for the books to settle.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bus_services::runtime::ServiceClient;
use bus_services::shop::{Audit, Shop, ShopConfig, ShopError, ShopService, audit};
use contracts::envelope::headers;
use contracts::orchestrator_api::{LoadRequest, ops as orchestrator_ops};
use contracts::shop::orders::{self, OrderAccepted, PlaceOrder};
use contracts::shop::{FlowMode, LineItem, Money, OrderId};
use registry::store::MemoryStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::NatsServer;
use crate::registry::{RunningRegistry, register_shop, registry_client, test_options};
use crate::workflows::{RunningOrchestrator, orchestrator_client, test_config};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Units of a product the shop never runs out of in a test.
pub const PLENTY: u64 = 1_000_000;

/// Products with plenty of stock.
pub const STOCKED: [&str; 3] = ["sku-kettle", "sku-mug", "sku-teapot"];

/// A product the shop has none of.
pub const SOLD_OUT: &str = "sku-sold-out";

/// Shop settings for tests: unregistered, no latency, plenty of the
/// [`STOCKED`] products and none of [`SOLD_OUT`].
pub fn shop_config(seed: u64) -> ShopConfig {
    let mut initial_stock: Vec<(String, u64)> = STOCKED.iter().map(|sku| ((*sku).to_owned(), PLENTY)).collect();
    initial_stock.push((SOLD_OUT.to_owned(), 0));
    ShopConfig {
        seed,
        initial_stock,
        registration: None,
        shutdown_timeout: Duration::from_secs(5),
        ..ShopConfig::default()
    }
}

/// The shop running in this process until stopped.
pub struct RunningShop {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ShopError>>,
}

impl RunningShop {
    /// Starts `services` of a shop run by `config` on `server`; returns once
    /// each answers discovery.
    pub async fn start_only(
        server: &NatsServer,
        config: ShopConfig,
        services: &[ShopService],
    ) -> Result<Self, BoxError> {
        let shop = Shop::new(config);
        let shutdown = CancellationToken::new();
        let (nats, token, chosen) = (server.client().await?, shutdown.clone(), services.to_vec());
        let task = tokio::spawn(async move { shop.run_only(&chosen, nats, token).await });
        Shop::wait_until_serving(&server.client().await?, services, Duration::from_secs(15)).await?;
        Ok(Self { shutdown, task })
    }

    /// Starts the whole shop.
    pub async fn start(server: &NatsServer, config: ShopConfig) -> Result<Self, BoxError> {
        Self::start_only(server, config, &ShopService::ALL).await
    }

    /// Stops it cleanly and waits.
    pub async fn stop(self) -> Result<(), BoxError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await???;
        Ok(())
    }
}

/// A server with a registry holding the shop's contracts, an orchestrator
/// with the fulfilment workflow loaded, and the shop.
pub struct ShopBus {
    /// The server.
    pub server: NatsServer,
    /// The registry (kept running).
    pub registry: RunningRegistry,
    /// The orchestrator.
    pub orchestrator: RunningOrchestrator,
    /// The shop.
    pub shop: Option<RunningShop>,
    /// A client of the orders service.
    pub orders: ServiceClient,
    /// A plain client, for the audit and the streams.
    pub nats: async_nats::Client,
}

impl ShopBus {
    /// Starts everything with the shop run by `config`.
    pub async fn start(config: ShopConfig) -> Result<Self, BoxError> {
        let server = NatsServer::start().await?;
        let registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), test_options()).await?;
        register_shop(&registry_client(&server).await?).await?;
        let orchestrator = RunningOrchestrator::start(&server, test_config()).await?;
        load_fulfilment(&orchestrator_client(&server).await?).await?;
        let shop = RunningShop::start(&server, config).await?;
        let nats = server.client().await?;
        Ok(Self {
            orders: ServiceClient::new(nats.clone(), orders::contract()?),
            nats,
            server,
            registry,
            orchestrator,
            shop: Some(shop),
        })
    }

    /// Places `order`.
    pub async fn place(&self, order: &PlaceOrder) -> Result<OrderAccepted, BoxError> {
        Ok(self.orders.call::<orders::Place>(order).await?)
    }

    /// The books once every one of `orders` has ended and no invariant is
    /// broken; an error with what is left after `timeout`.
    pub async fn settled(&self, orders: &[&str], timeout: Duration) -> Result<Audit, BoxError> {
        wait_settled(&self.nats, orders, timeout).await
    }

    /// Stops the shop, the orchestrator and the registry.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        if let Some(shop) = self.shop.take() {
            shop.stop().await?;
        }
        self.orchestrator.stop().await?;
        self.registry.stop().await?;
        Ok(())
    }
}

/// Loads the shop's fulfilment workflow into the orchestrator behind `client`.
pub async fn load_fulfilment(client: &ServiceClient) -> Result<(), BoxError> {
    let definition = serde_json::from_str(contracts::shop::fulfilment::DEFINITION)?;
    client
        .call::<orchestrator_ops::Load>(&LoadRequest { definition })
        .await?;
    Ok(())
}

/// Polls the books until every one of `orders` has settled (ended, and its
/// stock shipped if it completed) and nothing is wrong; an error naming what
/// is not after `timeout`.
pub async fn wait_settled(nats: &async_nats::Client, orders: &[&str], timeout: Duration) -> Result<Audit, BoxError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let books = audit(nats.clone()).await?;
        let open: Vec<&str> = orders
            .iter()
            .copied()
            .filter(|order| !books.orders.get(*order).is_some_and(|audit| audit.is_settled()))
            .collect();
        let wrong = books.violations();
        if open.is_empty() && wrong.is_empty() {
            return Ok(books);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "not settled within {timeout:?}: {} orders open ({:?}), violations: {wrong:#?}",
                open.len(),
                open.iter().take(10).collect::<Vec<_>>()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An order of `lines` (`(sku, quantity, unit price in cents)`) in EUR.
pub fn order(id: &str, mode: FlowMode, lines: &[(&str, u32, u64)]) -> PlaceOrder {
    PlaceOrder {
        order_id: OrderId(id.to_owned()),
        customer_id: format!("cust-{id}"),
        items: lines
            .iter()
            .map(|(sku, quantity, cents)| LineItem {
                sku: (*sku).to_owned(),
                quantity: *quantity,
                unit_price: Money {
                    amount_cents: *cents,
                    currency: "EUR".to_owned(),
                },
            })
            .collect(),
        mode,
    }
}

/// One stored event of the shop.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its subject.
    pub subject: String,
    /// `Soa-Correlation-Id`.
    pub correlation_id: Option<String>,
    /// The trace id of its `traceparent`.
    pub trace_id: Option<String>,
    /// `Nats-Msg-Id`.
    pub message_id: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
}

/// Every event stored in the shop services' streams, stream by stream in
/// publication order.
pub async fn shop_events(nats: &async_nats::Client) -> Result<Vec<StoredEvent>, BoxError> {
    let js = jetstream::new(nats.clone());
    let mut events = Vec::new();
    for service in ShopService::ALL {
        let name = format!("SOA_EVENTS_{}_V1", service.name().to_ascii_uppercase());
        let Ok(mut stream) = js.get_stream(&name).await else {
            continue;
        };
        let state = stream.info().await?.state.clone();
        for sequence in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let header = |name: &str| message.headers.get(name).map(|value| value.as_str().to_owned());
            events.push(StoredEvent {
                subject: message.subject.to_string(),
                correlation_id: header(headers::CORRELATION_ID),
                trace_id: header(headers::TRACEPARENT).and_then(|parent| parent.split('-').nth(1).map(str::to_owned)),
                message_id: header(headers::MESSAGE_ID),
                payload: serde_json::from_slice(&message.payload)?,
            });
        }
    }
    Ok(events)
}
