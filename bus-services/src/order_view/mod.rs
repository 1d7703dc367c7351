//! `order-view`: the shop's read model (the query side of CQRS). A view of
//! every order (status, items, amounts, when each step happened, which mode
//! drove it) built only from the events the shop services publish, in both
//! modes; it never calls the services that own the orders.
//!
//! - `facts`: the sans-I/O core: an order's facts, how an event adds one,
//!   the [`OrderView`](contracts::shop::order_view::OrderView) derived from
//!   them, and the comparison with the owning services' records.
//! - `lag`: the lag histogram.
//! - `engine`: one durable consumer per shop event stream, the KV bucket
//!   [`VIEW_BUCKET`] (one key per order, written by compare-and-set), the
//!   in-memory index, the rebuild.
//!
//! The invariant: an order's view is a pure function of the set of its
//! events (see `facts`), so the live view and one rebuilt from the streams
//! are equal field for field, whatever order the events arrived in.

mod acks;
mod engine;
mod facts;
mod lag;

use std::sync::Arc;
use std::time::Duration;

use contracts::NameError;
use contracts::shop::order_view::{self, GetOrderView, GetViewStats, ListOrderViews, RebuildOrderView};
use tokio_util::sync::CancellationToken;

pub use facts::{Event, EventReadError, Fact, OrderFacts, Stamp, differences, utc_time_us};
pub use lag::LagHistogram;

use crate::runtime::{BuildError, EventError, RegistrationConfig, RunError, Service, ServiceConfig, ServiceError};
use crate::shop::StoreError;

/// The view's bucket: one key per order, its facts as JSON.
pub const VIEW_BUCKET: &str = "SOA_ORDER_VIEW";

/// How the order view runs.
#[derive(Debug, Clone)]
pub struct OrderViewConfig {
    /// Registration with the registry; `None` to run unregistered.
    pub registration: Option<RegistrationConfig>,
    /// How long a rebuild may take to catch up before it answers `UNAVAILABLE`.
    pub rebuild_timeout: Duration,
    /// Events applied at once per stream (events of one order may be among
    /// them: the writes are compare-and-set and the facts a join).
    pub max_in_flight: usize,
    /// Replicas of the bucket, and of the shop's event streams when the view
    /// creates them (3 on a three-node cluster).
    pub replicas: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

impl Default for OrderViewConfig {
    fn default() -> Self {
        Self {
            registration: Some(RegistrationConfig::default()),
            rebuild_timeout: Duration::from_secs(120),
            max_in_flight: 32,
            replicas: 1,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the order view could not run (or a rebuild did not finish).
#[derive(Debug, thiserror::Error)]
pub enum OrderViewError {
    /// A contract does not build.
    #[error("the order view's contracts do not build: {0}")]
    Contract(#[from] NameError),
    /// The service could not be built from its contract.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The service stopped with an error.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A shop event stream could not be set up.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The view's bucket could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// JetStream refused or did not answer.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A rebuild did not catch up with the streams in time.
    #[error("the rebuilt view did not catch up with the streams within {timeout:?}")]
    NotCaughtUp {
        /// How long it was given.
        timeout: Duration,
    },
}

impl From<OrderViewError> for ServiceError {
    fn from(error: OrderViewError) -> Self {
        tracing::warn!(error = %error, "The order view failed.");
        match error {
            OrderViewError::NotCaughtUp { .. } => ServiceError::unavailable(error.to_string()),
            _ => ServiceError::unavailable("the order view's store did not answer; try again"),
        }
    }
}

/// The order view service. Run one instance: the index that answers `get`
/// and `list` holds what this instance applied (and loaded at start), and a
/// second instance would share the durable consumers.
#[derive(Debug, Clone, Default)]
pub struct OrderViewService {
    config: OrderViewConfig,
}

impl OrderViewService {
    /// A view run by `config`.
    pub fn new(config: OrderViewConfig) -> Self {
        Self { config }
    }

    /// Runs the view until `shutdown`: loads the index from the bucket,
    /// follows every shop event stream, and answers `order-view@1`; then
    /// drains the service (it deregisters) and stops the consumers after
    /// the events in hand. The caller owns `nats` and drains it afterwards.
    pub async fn run(self, nats: async_nats::Client, shutdown: CancellationToken) -> Result<(), OrderViewError> {
        // A request that timed out (a cluster electing leaders) is made
        // again; told to stop meanwhile, nothing was taken.
        let open = crate::patience::until_done("opening the order view", crate::patience::SETUP_PATIENCE, || {
            engine::Engine::open(nats.clone(), self.config.clone())
        });
        let engine = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            engine = open => engine?,
        };
        let service = service(&engine, &self.config)?;
        engine.start().await;
        let served = service.run(nats, shutdown).await;
        engine.stop().await;
        Ok(served?)
    }
}

/// The operations, answered from the index (and, for `rebuild`, the streams).
fn service(engine: &Arc<engine::Engine>, config: &OrderViewConfig) -> Result<Service, OrderViewError> {
    let (for_get, for_list, for_rebuild, for_stats) = (
        Arc::clone(engine),
        Arc::clone(engine),
        Arc::clone(engine),
        Arc::clone(engine),
    );
    let service_config = ServiceConfig {
        registration: config.registration.clone(),
        // A rebuild answers once caught up: give it its time.
        handler_timeout: config.rebuild_timeout + Duration::from_secs(5),
        shutdown_timeout: config.shutdown_timeout,
        ..ServiceConfig::default()
    };
    Ok(Service::builder(order_view::contract()?)
        .config(service_config)
        .handle::<order_view::Get, _, _>(move |_context, request: GetOrderView| {
            let engine = Arc::clone(&for_get);
            async move {
                engine.get(&request.order_id).ok_or_else(|| {
                    ServiceError::not_found(format!("the order view has no order {}", request.order_id.0))
                })
            }
        })
        .handle::<order_view::List, _, _>(move |_context, request: ListOrderViews| {
            let engine = Arc::clone(&for_list);
            async move { Ok(engine.list(&request)) }
        })
        .handle::<order_view::Rebuild, _, _>(move |_context, _request: RebuildOrderView| {
            let engine = Arc::clone(&for_rebuild);
            async move {
                // To the end even when the caller stops waiting: a rebuild
                // stopped halfway would leave the view without consumers.
                let rebuild = tokio::spawn(async move { engine.rebuild().await });
                match rebuild.await {
                    Ok(report) => Ok(report?),
                    Err(error) => Err(ServiceError::internal(format!("the rebuild task failed: {error}"))),
                }
            }
        })
        .handle::<order_view::Stats, _, _>(move |_context, _request: GetViewStats| {
            let engine = Arc::clone(&for_stats);
            async move { Ok(engine.stats().await?) }
        })
        .build()?)
}
