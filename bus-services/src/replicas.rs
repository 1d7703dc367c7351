//! Replicas of JetStream streams and key-value buckets: each component creates
//! its streams and buckets with the number of replicas it is configured for
//! (`replicas`, `--replicas N`; 1 by default, 3 on a three-node cluster), and
//! raises an existing one that has fewer. It never lowers one.
//!
//! Whoever starts first creates a stream, so a stream may exist with fewer
//! replicas than a component asks for: created by a component started
//! without `--replicas`, or before the deployment grew into a cluster. Left
//! at one replica it loses its messages with its node, so the component
//! raises it (an ordinary stream update; the server copies the messages to the
//! new peers) and logs that it did. Lowering is left to the operator
//! (`nats stream edit --replicas`): a component started with the default of 1
//! must not take copies away that another component asked for.
//!
//! Durable consumers are created without a replica count of their own, so
//! they follow their stream's.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Why an existing stream could not be raised to the replicas asked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "the stream {stream} has {found} replica(s) and could not be raised to {wanted}: {message}; \
     one server keeps one replica (use --replicas 1), a cluster needs {wanted} servers up"
)]
pub struct ReplicasError {
    /// The stream (a bucket's stream is `KV_<bucket>`).
    pub stream: String,
    /// The replicas it has.
    pub found: usize,
    /// The replicas asked for.
    pub wanted: usize,
    /// What JetStream answered.
    pub message: String,
}

/// Raises the stream whose configuration is `current` to `wanted` replicas
/// when it has fewer; returns whether it changed anything.
///
/// `current` is the configuration the caller just read (such as a stream's
/// `cached_info().config` right after `get_or_create_stream`), so a stream
/// that already has enough replicas costs no round trip.
pub async fn raise_replicas(
    js: &jetstream::Context,
    current: &stream::Config,
    wanted: usize,
) -> Result<bool, ReplicasError> {
    // The server reports a stream without a count as one replica.
    let found = current.num_replicas.max(1);
    if found >= wanted {
        return Ok(false);
    }
    let config = stream::Config {
        num_replicas: wanted,
        ..current.clone()
    };
    js.update_stream(&config).await.map_err(|error| ReplicasError {
        stream: current.name.clone(),
        found,
        wanted,
        message: error.to_string(),
    })?;
    let caught_up = wait_until_current(js, &current.name, wanted).await;
    tracing::info!(stream = %current.name, found, wanted, caught_up, "Raised the stream's replicas.");
    Ok(true)
}

/// How long [`raise_replicas`] waits for the new copies to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits until the stream has a leader and `wanted - 1` followers that are
/// current, so the component starts on a stream that answers (while the
/// copies are being made the stream may elect a leader again, and
/// publishing meanwhile times out); whether it got there in time.
async fn wait_until_current(js: &jetstream::Context, name: &str, wanted: usize) -> bool {
    let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let ready = match js.get_stream(name).await {
            Ok(mut stream) => stream
                .info()
                .await
                .ok()
                .and_then(|info| info.cluster.clone())
                .is_some_and(|cluster| {
                    cluster.leader.is_some()
                        && cluster.replicas.len() + 1 >= wanted
                        && cluster.replicas.iter().all(|peer| peer.current && !peer.offline)
                }),
            Err(_) => false,
        };
        if ready {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            tracing::warn!(stream = %name, wanted, "The stream's new copies did not catch up in time; going on.");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
