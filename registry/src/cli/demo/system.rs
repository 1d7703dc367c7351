//! The whole shop on one NATS system, as `soa demo` and `soa up` run it: a
//! nats-server (the one at `--nats-url`, or a child started here), the
//! registry on its embedded store (and its HTTP API when asked), the five
//! shop services, the order view (the shop's read model) and an
//! orchestrator with `fulfilment@1` loaded. Parts can be killed and started
//! again to show recovery.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::Client;
use bus_services::connection::{self, ConnectConfig, ConnectError};
use bus_services::local_server::{LocalNatsServer, LocalServerConfig};
use bus_services::orchestrator::{Orchestrator, OrchestratorConfig};
use bus_services::order_view::{OrderViewConfig, OrderViewService};
use bus_services::runtime::{CallOptions, ServiceClient, ServiceConfig};
use bus_services::shop::{Shop, ShopConfig, ShopService};
use contracts::orchestrator_api::{LoadRequest, LoadResponse, ops as orchestrator_ops};
use contracts::registry_api::{RegisterRequest, ops as registry_ops};
use contracts::shop::order_view::{self, GetViewStats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{NatsOptions, UsageError};
use crate::http::{CorsPolicy, HttpConfig, HttpState};
use crate::server::{Registry, RegistryOptions};
use crate::store::EmbeddedStore;

/// How long a start-up or shutdown step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct SystemOptions {
    /// Who runs the system, as its messages name it ("the demo", "soa up").
    pub who: &'static str,
    /// Where a nats-server started here and the registry keep their files.
    pub data_dir: PathBuf,
    /// Serve the registry's HTTP API (and web page) here.
    pub http: Option<SocketAddr>,
    /// The shop's settings.
    pub shop: ShopConfig,
    /// The orchestrator's settings.
    pub orchestrator: OrchestratorConfig,
}

/// A running part that can be stopped cleanly or killed.
struct Part {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Part {
    fn spawn<F>(name: &'static str, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let future = run(stop.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = future.await {
                tracing::error!(part = name, error = %format!("{error:#}"), "A part of the demo stopped with an error.");
            }
        });
        Self { stop, task }
    }

    /// Stops it cleanly, waiting at most [`STEP_TIMEOUT`].
    async fn stop(self) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STEP_TIMEOUT, self.task).await.is_err() {
            abort.abort();
        }
    }

    /// Stops it at once, as a killed process would: nothing is drained.
    fn kill(self) {
        self.task.abort();
    }
}

/// The running system.
pub(crate) struct System {
    /// The URL everything is connected to.
    pub url: String,
    /// A connection for callers (the demo's orders, queries).
    pub nats: Client,
    /// The registry's HTTP address, when served.
    pub http: Option<SocketAddr>,
    /// What the nats-server started here is, if one was.
    local: Option<LocalNatsServer>,
    /// One connection per part, so a killed part's connection is its own.
    config: ConnectConfig,
    options: SystemOptions,
    registry: Option<Part>,
    services: BTreeMap<&'static str, Part>,
    order_view: Option<Part>,
    orchestrator: Option<Part>,
}

impl System {
    /// Starts everything and returns once the orchestrator has `fulfilment`
    /// loaded and every shop service answers.
    pub(crate) async fn start(nats: &NatsOptions, options: SystemOptions, out: &mut dyn Write) -> anyhow::Result<Self> {
        let (url, nats_client, local, config) = connect_or_start(nats, &options, out).await?;
        let mut system = Self {
            url,
            nats: nats_client,
            http: None,
            local,
            config,
            options,
            registry: None,
            services: BTreeMap::new(),
            order_view: None,
            orchestrator: None,
        };
        if let Err(error) = system.start_parts(out).await {
            system.stop(&mut std::io::sink()).await;
            return Err(error);
        }
        Ok(system)
    }

    async fn start_parts(&mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        self.start_registry().await?;
        let registry =
            ServiceClient::new(self.nats.clone(), contracts::registry_api::contract()?).with_options(CallOptions {
                timeout: Duration::from_secs(5),
                max_attempts: 5,
                ..CallOptions::default()
            });
        wait_for(&registry, "the registry", |client| async move {
            client.call::<registry_ops::List>(&Default::default()).await.is_ok()
        })
        .await?;
        register_shop_contracts(&registry).await?;
        for service in ShopService::ALL {
            self.start_service(service).await?;
        }
        Shop::wait_until_serving(&self.nats, &ShopService::ALL, STEP_TIMEOUT)
            .await
            .context("the shop's services did not start")?;
        self.start_order_view().await?;
        let view = ServiceClient::new(self.nats.clone(), order_view::contract()?);
        wait_for(&view, "the order view", |client| async move {
            client.call::<order_view::Stats>(&GetViewStats {}).await.is_ok()
        })
        .await?;
        self.start_orchestrator().await?;
        let orchestrator = ServiceClient::new(self.nats.clone(), contracts::orchestrator_api::contract()?);
        wait_for(&orchestrator, "the orchestrator", |client| async move {
            client
                .call::<orchestrator_ops::Definitions>(&Default::default())
                .await
                .is_ok()
        })
        .await?;
        let loaded = load_fulfilment(&orchestrator).await?;
        writeln!(
            out,
            "   registry{}, orders, inventory, payments, shipping, notifications, the order view, and the orchestrator with {} are up.",
            self.http
                .map(|address| format!(" (http://{address})"))
                .unwrap_or_default(),
            loaded.workflow
        )?;
        Ok(())
    }

    async fn start_registry(&mut self) -> anyhow::Result<()> {
        let path = self.options.data_dir.join("registry.redb");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let store = Arc::new(EmbeddedStore::open(&path).with_context(|| format!("opening {}", path.display()))?);
        let options = RegistryOptions {
            service: ServiceConfig {
                // The registry stops last; deregistering from itself would
                // only wait for an answer that cannot come.
                registration: None,
                ..ServiceConfig::default()
            },
            ..RegistryOptions::default()
        };
        let registry = Arc::new(Registry::open(store, options).await?);
        let listener = match self.options.http {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|error| UsageError(format!("could not listen for HTTP on {address}: {error}")))?;
                self.http = Some(listener.local_addr()?);
                Some(listener)
            }
            None => None,
        };
        let nats = self.connect("soa-registry").await?;
        self.registry = Some(Part::spawn("registry", move |stop| async move {
            let both = stop.child_token();
            let nats_side = {
                let registry = Arc::clone(&registry);
                let both = both.clone();
                async move {
                    let result = registry.run_shared(nats.clone(), both.clone()).await;
                    both.cancel();
                    drain(&nats).await;
                    result.map_err(anyhow::Error::from)
                }
            };
            match listener {
                Some(listener) => {
                    let state = HttpState::new(
                        Arc::clone(&registry),
                        HttpConfig {
                            write_token: None,
                            cors: CorsPolicy::default(),
                        },
                    );
                    let http_side = async {
                        let result = crate::http::serve_http(listener, crate::http::router(state), both.clone()).await;
                        both.cancel();
                        result.map_err(anyhow::Error::from)
                    };
                    let (nats_result, http_result) = tokio::join!(nats_side, http_side);
                    nats_result.and(http_result)
                }
                None => nats_side.await,
            }
        }));
        Ok(())
    }

    /// Starts one shop service (again).
    pub(crate) async fn start_service(&mut self, service: ShopService) -> anyhow::Result<()> {
        let nats = self.connect(&format!("soa-shop-{}", service.name())).await?;
        let shop = Shop::new(self.options.shop.clone());
        let part = Part::spawn("shop service", move |stop| async move {
            let result = shop.run_only(&[service], nats.clone(), stop).await;
            drain(&nats).await;
            result.map_err(anyhow::Error::from)
        });
        if let Some(previous) = self.services.insert(service.name(), part) {
            previous.stop().await;
        }
        Ok(())
    }

    /// Stops one shop service cleanly (it drains and deregisters).
    pub(crate) async fn stop_service(&mut self, service: ShopService) {
        if let Some(part) = self.services.remove(service.name()) {
            part.stop().await;
        }
    }

    /// Starts the order view (the shop's read model).
    pub(crate) async fn start_order_view(&mut self) -> anyhow::Result<()> {
        let nats = self.connect("soa-order-view").await?;
        let view = OrderViewService::new(OrderViewConfig {
            registration: self.options.shop.registration.clone(),
            replicas: self.options.shop.replicas,
            ..OrderViewConfig::default()
        });
        let part = Part::spawn("order view", move |stop| async move {
            let result = view.run(nats.clone(), stop).await;
            drain(&nats).await;
            result.map_err(anyhow::Error::from)
        });
        if let Some(previous) = self.order_view.replace(part) {
            previous.stop().await;
        }
        Ok(())
    }

    /// Starts an orchestrator replica (again).
    pub(crate) async fn start_orchestrator(&mut self) -> anyhow::Result<()> {
        let nats = self.connect("soa-orchestrator").await?;
        let orchestrator = Orchestrator::new(self.options.orchestrator.clone());
        self.orchestrator = Some(Part::spawn("orchestrator", move |stop| async move {
            let result = orchestrator.run(nats.clone(), stop).await;
            drain(&nats).await;
            result.map_err(anyhow::Error::from)
        }));
        Ok(())
    }

    /// Kills the orchestrator: no drain, no hand-back, as a killed process.
    pub(crate) fn kill_orchestrator(&mut self) {
        if let Some(part) = self.orchestrator.take() {
            part.kill();
        }
    }

    /// The ack wait after which a killed orchestrator's work is taken over.
    pub(crate) fn ack_wait(&self) -> Duration {
        self.options.orchestrator.ack_wait
    }

    /// A new connection for a part, with the options everything uses.
    async fn connect(&self, name: &str) -> anyhow::Result<Client> {
        Ok(connection::connect(&self.connect_config(name)).await?)
    }

    /// The options every part connects with (URL, credentials, TLS), under
    /// the connection name `name`: a connection of its own made with
    /// anything less would be refused by a server that asks for credentials.
    pub(crate) fn connect_config(&self, name: &str) -> ConnectConfig {
        ConnectConfig {
            name: Some(name.to_owned()),
            ..self.config.clone()
        }
    }

    /// Stops everything in order: the orchestrator, the services, the order
    /// view, the registry, the callers' connection, then a nats-server
    /// started here.
    pub(crate) async fn stop(mut self, out: &mut dyn Write) {
        if let Some(part) = self.orchestrator.take() {
            part.stop().await;
        }
        for (_, part) in std::mem::take(&mut self.services) {
            part.stop().await;
        }
        if let Some(part) = self.order_view.take() {
            part.stop().await;
        }
        if let Some(part) = self.registry.take() {
            part.stop().await;
        }
        drain(&self.nats).await;
        if let Some(local) = self.local.take() {
            let pid = local.pid();
            match local.shutdown().await {
                Ok(_) => {
                    let _ = writeln!(
                        out,
                        "   Stopped the nats-server {} started (pid {pid}).",
                        self.options.who
                    );
                }
                Err(error) => {
                    let _ = writeln!(
                        out,
                        "   Could not stop the nats-server {} started (pid {pid}): {error}",
                        self.options.who
                    );
                }
            }
        }
    }
}

/// Connects to `--nats-url`, or starts the installed nats-server when
/// nothing answers there. A server that answers but is refused (too old,
/// wrong credentials) is an error: starting another would hide the problem.
async fn connect_or_start(
    nats: &NatsOptions,
    options: &SystemOptions,
    out: &mut dyn Write,
) -> anyhow::Result<(String, Client, Option<LocalNatsServer>, ConnectConfig)> {
    let config = nats.connect_config("soa-demo");
    match connection::connect(&config).await {
        Ok(client) => {
            let version = client.try_server_info().map(|info| info.version).unwrap_or_default();
            writeln!(out, "   Using nats-server {version} at {}.", nats.nats_url)?;
            Ok((nats.nats_url.clone(), client, None, config))
        }
        Err(ConnectError::Unreachable { url, .. }) => {
            let local = LocalNatsServer::start(LocalServerConfig::new(&options.data_dir))
                .await
                .with_context(|| format!("no NATS server answered at {url}, and none could be started here"))?;
            writeln!(
                out,
                "   No NATS server answered at {url}, so {} started nats-server {} (pid {}) at {};\n   \
                 its JetStream store and log are in {}.",
                options.who,
                local.version(),
                local.pid(),
                local.url(),
                local.dir().display()
            )?;
            // The credentials and TLS options were for the server that did not answer.
            let config = ConnectConfig {
                name: Some("soa-demo".to_owned()),
                ..ConnectConfig::for_url(local.url())
            };
            match connection::connect(&config).await {
                Ok(client) => Ok((local.url(), client, Some(local), config)),
                Err(error) => {
                    if let Err(stop) = local.shutdown().await {
                        tracing::warn!(error = %stop, "Could not stop the local nats-server.");
                    }
                    Err(error).with_context(|| format!("could not connect to the nats-server {} started", options.who))
                }
            }
        }
        Err(
            error @ (ConnectError::IncompleteUserAndPassword { .. } | ConnectError::IncompleteClientCertificate { .. }),
        ) => {
            Err(anyhow::Error::new(error).context(UsageError("the NATS connection options are incomplete".to_owned())))
        }
        Err(error) => Err(error.into()),
    }
}

/// Waits until `ready` says a part answers; an error after [`STEP_TIMEOUT`].
async fn wait_for<F, Fut>(client: &ServiceClient, what: &str, ready: F) -> anyhow::Result<()>
where
    F: Fn(ServiceClient) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    while !ready(client.clone()).await {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{what} did not answer within {STEP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Flushes and drains a connection, bounded in time; a down connection is left as it is.
/// Registers the shop's contracts with `registry`, so the workflow's load
/// finds them; the services register the same documents again when they
/// start.
pub(crate) async fn register_shop_contracts(registry: &ServiceClient) -> anyhow::Result<()> {
    for document in contracts::shop::contracts()? {
        registry
            .call::<registry_ops::Register>(&RegisterRequest {
                document: document.to_value(),
                owner_token: None,
            })
            .await
            .with_context(|| format!("registering {}", document.id()))?;
    }
    Ok(())
}

/// Loads the shop's `fulfilment` workflow into the orchestrator behind
/// `orchestrator` (its callees' contracts must be registered first).
pub(crate) async fn load_fulfilment(orchestrator: &ServiceClient) -> anyhow::Result<LoadResponse> {
    let definition: serde_json::Value = serde_json::from_str(contracts::shop::fulfilment::DEFINITION)
        .context("the fulfilment definition is not JSON")?;
    orchestrator
        .call::<orchestrator_ops::Load>(&LoadRequest { definition })
        .await
        .context("loading the fulfilment workflow")
}

pub(crate) async fn drain(client: &Client) {
    if client.connection_state() != async_nats::connection::State::Connected {
        return;
    }
    if tokio::time::timeout(STEP_TIMEOUT, client.flush()).await.is_err() {
        tracing::warn!("Flushing a connection timed out.");
    }
    if let Err(error) = client.drain().await {
        tracing::debug!(error = %error, "Could not drain a connection.");
    }
}
