//! Patience with JetStream while a cluster elects leaders: a component sets
//! up its streams, buckets and consumers again when a request timed out,
//! instead of stopping.
//!
//! On a cluster JetStream answers a request about a stream or a consumer only
//! once the meta group and the asset's own RAFT group have leaders. While a
//! node is down or just back, while many assets are created at once, or on a
//! busy machine, that takes seconds, and the client's request (5 s by
//! default) times out although the same request moments later succeeds (the
//! first one often did its work: the second finds the stream in place).
//! Waiting longer per request would hold up every request of a healthy
//! system; trying again is what rides out an election.
//!
//! Only failures that trying again may cure are retried ([`is_transient`]);
//! a wrong configuration (three replicas on one server, a stream whose
//! subjects overlap another's) is reported at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How long a component keeps setting up its JetStream assets before it
/// gives up: longer than a node's restart and the elections that follow.
pub const SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// The first pause between two attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What JetStream and the client say when the cluster is between leaders or
/// a node is unreachable, in lower case: the words of async-nats' timeouts
/// and of the server's "temporarily unavailable" (10008), "no suitable peers
/// for placement" (10005), "insufficient resources" (10023, a cluster with a
/// node down) and leaderless answers.
const TRANSIENT: &[&str] = &[
    "timed out",
    "timeout",
    "no responders",
    "temporarily unavailable",
    "no suitable peers",
    "insufficient resources",
    "leader",
    "offline",
    "disconnected",
    "connection closed",
    "broken pipe",
    "connection reset",
];

/// Whether a failure, as displayed, may go away by itself (a request timed
/// out, the stream has no leader for a moment); false for a failure that
/// asks for someone to change something.
pub fn is_transient(message: &str) -> bool {
    let message = message.to_lowercase();
    TRANSIENT.iter().any(|word| message.contains(word))
}

/// Runs `attempt` until it succeeds, fails in a way that is not
/// [`is_transient`], or `patience` has passed; returns the last outcome.
/// Each retry is logged with `doing` (what was being set up) and the error.
pub async fn until_done<T, E, F, Fut>(doing: &str, patience: Duration, mut attempt: F) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() < patience && is_transient(&error.to_string()) => {
                tracing::warn!(doing, error = %error, retry_in = ?pause, "JetStream did not answer; trying again.");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_elections_are_transient_configuration_is_not() {
        for message in [
            "JetStream failed while creating the stream SOA_WF_STARTS: jetstream request timed out",
            "jetstream error: JetStream system temporarily unavailable (code 503, error code 10008)",
            "no suitable peers for placement",
            "insufficient resources",
            "stream has no leader",
            "no responders",
        ] {
            assert!(is_transient(message), "{message}");
        }
        for message in [
            "replicas > 1 not supported in non-clustered mode",
            "subjects overlap with an existing stream",
            "stream name already in use with a different configuration",
        ] {
            assert!(!is_transient(message), "{message}");
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_it_passes() {
        let mut calls = 0;
        let result: Result<u32, String> = until_done("testing", SETUP_PATIENCE, || {
            calls += 1;
            let outcome = if calls < 3 {
                Err("timed out".to_owned())
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_returned_at_once_and_patience_ends() {
        let mut calls = 0;
        let result: Result<(), String> = until_done("testing", SETUP_PATIENCE, || {
            calls += 1;
            async { Err("replicas > 1 not supported in non-clustered mode".to_owned()) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
        let started = tokio::time::Instant::now();
        let patience = Duration::from_millis(300);
        let result: Result<(), String> =
            until_done("testing", patience, || async { Err("timed out".to_owned()) }).await;
        assert!(result.is_err());
        assert!(started.elapsed() >= patience);
    }
}
