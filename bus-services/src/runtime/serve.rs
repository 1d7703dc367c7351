//! The whole life of a service process: connect, run every service until
//! told to stop, then drain the connection.

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
    let drained = nats.drain().await.map_err(|err| ServeError::Drain(err.to_string()));
    results.into_iter().collect::<Result<Vec<()>, RunError>>()?;
    drained
}
