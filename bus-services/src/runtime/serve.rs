//! The whole life of a service process: connect, run every service until
//! told to stop, then drain the connection.

use std::time::Duration;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::service::{RunError, Service};
use crate::connection::{ConnectConfig, ConnectError, connect};

/// Why a service process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The connection could not be made (or the server is too old).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A service failed to start.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Draining the connection at the end failed; some last messages may be lost.
    #[error("could not drain the NATS connection: {0}")]
    Drain(String),
}

/// Connects with `config` (URL list, credentials, nkey, token, TLS), runs
/// `services` until `shutdown` is cancelled, waits for each to finish its
/// in-flight work and deregister, then drains the connection.
pub async fn serve(
    config: &ConnectConfig,
    services: Vec<Service>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let nats = connect(config).await?;
    let runs = services.into_iter().map(|service| {
        let (nats, shutdown) = (nats.clone(), shutdown.clone());
        async move {
            let result = service.run(nats, shutdown.clone()).await;
            // A service that failed to start must not leave the others running.
            if result.is_err() {
                shutdown.cancel();
            }
            result
        }
    });
    let results = join_all(runs).await;
    let drained = drain(&nats).await;
    results.into_iter().collect::<Result<Vec<()>, RunError>>()?;
    drained
}

/// How long the last messages may take to leave when draining.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Drains the connection and waits until it is closed: `drain` itself only
/// starts the drain, and a process that exits right after would lose the
/// last acks and publishes.
///
/// The connection's state cannot tell: async-nats 0.51 leaves it at
/// `Connected` after a drain closes the connection. What does tell is its
/// connection task: once that has ended, a command such as `server_pool`
/// (answered by that task, without a round trip to the server) fails.
async fn drain(nats: &async_nats::Client) -> Result<(), ServeError> {
    nats.drain().await.map_err(|err| ServeError::Drain(err.to_string()))?;
    let closed = async {
        while nats.server_pool().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DRAIN_TIMEOUT, closed)
        .await
        .map_err(|_| ServeError::Drain(format!("the connection did not close within {DRAIN_TIMEOUT:?}")))
}
