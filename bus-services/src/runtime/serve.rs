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
///
/// A connection that dies under the services (async-nats' connection task
/// stopped: it panics on a header value with a lone carriage return,
/// nats-io/nats.rs#1612, which any client allowed to publish on an
/// operation's subject can send) is replaced: the services run again on a
/// new connection after a pause that doubles up to 30 s,
/// so a process built on `serve` keeps serving without a supervisor.
pub async fn serve(
    config: &ConnectConfig,
    services: Vec<Service>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let mut pause = FIRST_RECONNECT_PAUSE;
    loop {
        let nats = connect(config).await?;
        let started = std::time::Instant::now();
        // One round's services stop together: one that fails must not leave
        // the others running, and must not stop the caller's token.
        let round = shutdown.child_token();
        let runs = services.iter().cloned().map(|service| {
            let (nats, round) = (nats.clone(), round.clone());
            async move {
                let result = service.run(nats, round.clone()).await;
                if result.is_err() {
                    round.cancel();
                }
                result
            }
        });
        let results = join_all(runs).await;
        let lost = !shutdown.is_cancelled()
            && results
                .iter()
                .any(|result| matches!(result, Err(RunError::SubscriptionEnded)))
            && results
                .iter()
                .all(|result| matches!(result, Ok(()) | Err(RunError::SubscriptionEnded)));
        if !lost {
            let drained = drain(&nats).await;
            results.into_iter().collect::<Result<Vec<()>, RunError>>()?;
            return drained;
        }
        // The dead connection has nothing left to drain.
        drop(nats);
        if started.elapsed() > MAX_RECONNECT_PAUSE {
            // It served a good while: a new death is not part of a run of them.
            pause = FIRST_RECONNECT_PAUSE;
        }
        tracing::error!(
            pause = ?pause,
            "The NATS connection died under the services; connecting again."
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
    }
}

/// The pause before the first new connection after one died.
const FIRST_RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// The longest pause between new connections when they keep dying.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(30);

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
