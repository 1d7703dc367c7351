//! The sweep: queues instances that nobody drives (a start that stopped
//! between storing and queueing, or work lost with a stream).
//!
//! It keeps a watchlist of the instances not ended, built by reading the
//! instances bucket's changes since its last round: the first round reads
//! every instance once, later ones only what changed since. A round's cost
//! then follows the work done since the last round, not every instance the
//! bucket ever held (reading and decoding all of them every round took a
//! tenth of the process's CPU once tens of thousands had ended).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use contracts::orchestrator_api::InstanceStatus;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::store::{Changes, Stores};
use super::{OrchestratorError, Shared, now_ms};

/// Queues, every `sweep_interval`, the instances quiet for twice the ack
/// wait and not waiting for a retry; repeats across replicas carry the same
/// message id and are dropped.
pub(super) async fn sweep(shared: Arc<Shared>, stop: CancellationToken) {
    let quiet_ms = u64::try_from(shared.config.ack_wait.as_millis().saturating_mul(2)).unwrap_or(u64::MAX);
    let mut watchlist = Watchlist::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(shared.config.sweep_interval) => {}
        }
        if let Err(error) = watchlist.catch_up(&shared.stores).await {
            tracing::warn!(error = %error, "The sweep could not read the instances' changes; it tries again next round.");
            continue;
        }
        for (instance, updated_at_ms) in watchlist.quiet(now_ms(), quiet_ms) {
            let message_id = format!("{instance}/sweep/{updated_at_ms}");
            match shared.stores.enqueue(&instance, &message_id).await {
                Ok(()) => tracing::info!(instance = %instance, "Queued a quiet instance again."),
                Err(error) => {
                    tracing::warn!(instance = %instance, error = %error, "Could not queue a quiet instance.");
                }
            }
        }
    }
}

/// What the sweep knows of the instances that have not ended.
#[derive(Debug)]
struct Watchlist {
    /// The first revision of the instances bucket not read yet.
    next_revision: u64,
    /// Instances not ended, by id.
    open: HashMap<String, Open>,
}

impl Default for Watchlist {
    fn default() -> Self {
        Self {
            next_revision: 1,
            open: HashMap::new(),
        }
    }
}

/// What the sweep keeps of one instance not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    /// When it last changed, ms since the Unix epoch.
    updated_at_ms: u64,
    /// The latest time a step or compensation waits for before retrying.
    retry_at_ms: Option<u64>,
}

/// The fields of a stored instance the sweep reads; everything else is
/// skipped unread.
#[derive(Deserialize)]
struct Pulse {
    status: InstanceStatus,
    updated_at_ms: u64,
    #[serde(default)]
    steps: BTreeMap<String, Waits>,
    #[serde(default)]
    compensation: Option<Waits>,
}

/// A step's or compensation's retry time.
#[derive(Deserialize)]
struct Waits {
    #[serde(default)]
    retry_at_ms: Option<u64>,
}

impl Watchlist {
    /// Reads what changed in the instances bucket since the last round.
    async fn catch_up(&mut self, stores: &Stores) -> Result<(), OrchestratorError> {
        loop {
            let from = self.next_revision;
            match stores
                .instance_changes(from, |key, value| self.note(key, value))
                .await?
            {
                Changes::ReadTo(next) => {
                    self.next_revision = next;
                    return Ok(());
                }
                Changes::Restarted => {
                    tracing::info!("The instances bucket was made again; the sweep reads it from the start.");
                    *self = Self::default();
                }
            }
        }
    }

    /// Takes in one instance's latest value (`None`: deleted).
    fn note(&mut self, key: &str, value: Option<&[u8]>) {
        let pulse = match value.map(serde_json::from_slice::<Pulse>) {
            None => None,
            Some(Ok(pulse)) => Some(pulse),
            Some(Err(error)) => {
                tracing::warn!(instance = %key, error = %error, "The sweep cannot read a stored instance; it leaves it alone.");
                None
            }
        };
        match pulse.filter(|pulse| !pulse.status.is_final()) {
            Some(pulse) => {
                let retry_at_ms = pulse
                    .steps
                    .values()
                    .chain(pulse.compensation.as_ref())
                    .filter_map(|waits| waits.retry_at_ms)
                    .max();
                self.open.insert(
                    key.to_owned(),
                    Open {
                        updated_at_ms: pulse.updated_at_ms,
                        retry_at_ms,
                    },
                );
            }
            None => {
                self.open.remove(key);
            }
        }
    }

    /// The instances not ended that changed no later than `quiet_ms` before
    /// `now` and wait for no retry, with when they last changed.
    fn quiet(&self, now: u64, quiet_ms: u64) -> Vec<(String, u64)> {
        let mut quiet: Vec<(String, u64)> = self
            .open
            .iter()
            .filter(|(_, open)| {
                now.saturating_sub(open.updated_at_ms) >= quiet_ms && open.retry_at_ms.is_none_or(|at| at <= now)
            })
            .map(|(id, open)| (id.clone(), open.updated_at_ms))
            .collect();
        quiet.sort();
        quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(status: &str, updated_at_ms: u64, retry_at_ms: Option<u64>) -> Vec<u8> {
        let mut steps = serde_json::json!({
            "s1": {"status": "succeeded", "attempt": 1, "started_at_ms": 1, "deadline_ms": 2, "output": {"big": [1, 2, 3]}},
        });
        if let Some(at) = retry_at_ms {
            steps["s2"] = serde_json::json!({"status": "failed", "attempt": 1, "started_at_ms": 1, "deadline_ms": 2, "retry_at_ms": at});
        }
        serde_json::to_vec(&serde_json::json!({
            "id": "ignored", "workflow": "w@1", "status": status, "input": {"order": "o-1"},
            "created_at_ms": 1, "updated_at_ms": updated_at_ms, "steps": steps,
            "history": [{"at_ms": 1, "kind": "started"}],
        }))
        .unwrap_or_default()
    }

    #[test]
    fn only_instances_not_ended_quiet_long_enough_and_not_waiting_are_quiet() {
        let mut watchlist = Watchlist::default();
        watchlist.note("old", Some(&instance("running", 1_000, None)));
        watchlist.note("recent", Some(&instance("running", 9_500, None)));
        watchlist.note("done", Some(&instance("completed", 1_000, None)));
        watchlist.note("waiting", Some(&instance("running", 1_000, Some(20_000))));
        watchlist.note("waited", Some(&instance("compensating", 1_000, Some(5_000))));
        assert_eq!(
            watchlist.quiet(10_000, 2_000),
            vec![("old".to_owned(), 1_000), ("waited".to_owned(), 1_000)]
        );
    }

    #[test]
    fn a_later_value_replaces_the_earlier_and_an_end_or_a_deletion_forgets_it() {
        let mut watchlist = Watchlist::default();
        for key in ["a", "b", "c"] {
            watchlist.note(key, Some(&instance("running", 1_000, None)));
        }
        watchlist.note("a", Some(&instance("running", 9_000, None)));
        watchlist.note("b", Some(&instance("failed", 9_000, None)));
        watchlist.note("c", None);
        assert_eq!(watchlist.open.len(), 1);
        assert_eq!(watchlist.quiet(10_000, 2_000), Vec::new());
        assert_eq!(watchlist.quiet(12_000, 2_000), vec![("a".to_owned(), 9_000)]);
    }

    #[test]
    fn an_unreadable_value_is_left_alone() {
        let mut watchlist = Watchlist::default();
        watchlist.note("a", Some(&instance("running", 1_000, None)));
        watchlist.note("a", Some(b"not json"));
        watchlist.note("b", Some(&instance("a-status-from-the-future", 1_000, None)));
        assert!(watchlist.open.is_empty());
    }
}
