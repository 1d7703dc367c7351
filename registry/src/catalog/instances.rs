//! Live instances: each beats with a time to live; one that misses its beats
//! expires. But when beats stop everywhere at once, the registry itself is
//! the likelier culprit (it was paused, restarted, or cut off from the
//! network), so evictions are rationed: within a sliding window, no more
//! than a share of the fleet may be evicted, counting those evicted earlier
//! in the window. Instances go quiet at staggered times even in a blip
//! (their last beats were spread over an interval), so a per-sweep limit
//! alone would evict the whole fleet a slice at a time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use contracts::registry_api::{HeartbeatRequest, InstanceInfo};
use contracts::{ContractId, ServiceName};

/// How many instances may expire within a window of time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvictionGuard {
    /// Never evict more than this share of the fleet (0.0–1.0) within one
    /// window, counting the instances already evicted in it.
    pub max_fraction: f64,
    /// Up to this many evictions in a window are always allowed, so a small
    /// fleet can still lose its only instance.
    pub always_allowed: usize,
    /// The sliding window; longer than the instances' time to live, so one
    /// blip's staggered expiries fall into one window.
    pub window: Duration,
}

impl Default for EvictionGuard {
    fn default() -> Self {
        Self {
            max_fraction: 0.5,
            always_allowed: 3,
            window: Duration::from_secs(60),
        }
    }
}

/// One live instance.
#[derive(Debug, Clone)]
struct Instance {
    contract: ContractId,
    digest: String,
    ttl: Duration,
    last_beat: Instant,
    drift: bool,
    /// Whether this registry announced the instance (published
    /// `instance-up`); replicas that only observe beats do not.
    announced: bool,
}

/// What a heartbeat changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// The instance is new to this registry's announcements.
    pub first_beat: bool,
    /// It serves a digest that matches no stored version.
    pub drift: bool,
    /// Its drift state differs from its previous beat (or it is new and drifting).
    pub drift_changed: bool,
}

/// What one expiry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// The instances removed: id, contract, digest.
    pub expired: Vec<(String, ContractId, String)>,
    /// Overdue instances kept because too many were overdue at once.
    pub held_back: usize,
}

/// The instance table.
#[derive(Debug)]
pub(crate) struct Instances {
    table: DashMap<String, Instance>,
    guard: EvictionGuard,
    /// When each eviction of the current window happened, oldest first.
    evictions: Mutex<VecDeque<Instant>>,
}

impl Instances {
    pub(crate) fn new(guard: EvictionGuard) -> Self {
        Self {
            table: DashMap::new(),
            guard,
            evictions: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a beat. `announce` is true where the beat is answered (the
    /// registry replica that owns the reply), false where it is only observed.
    pub(crate) fn beat(
        &self,
        request: &HeartbeatRequest,
        drift: bool,
        now: Instant,
        announce: bool,
    ) -> HeartbeatOutcome {
        let ttl = Duration::from_millis(request.ttl_ms);
        let mut first_beat = false;
        let mut drift_changed = false;
        self.table
            .entry(request.instance_id.clone())
            .and_modify(|instance| {
                drift_changed = instance.drift != drift;
                if announce && !instance.announced {
                    first_beat = true;
                    instance.announced = true;
                    drift_changed = drift;
                }
                instance.contract = request.contract.clone();
                instance.digest.clone_from(&request.digest);
                instance.ttl = ttl;
                instance.last_beat = now;
                instance.drift = drift;
            })
            .or_insert_with(|| {
                first_beat = announce;
                drift_changed = drift;
                Instance {
                    contract: request.contract.clone(),
                    digest: request.digest.clone(),
                    ttl,
                    last_beat: now,
                    drift,
                    announced: announce,
                }
            });
        HeartbeatOutcome {
            first_beat,
            drift,
            drift_changed: drift_changed && announce,
        }
    }

    /// Removes an instance; returns its contract and digest when it was known.
    pub(crate) fn remove(&self, instance_id: &str) -> Option<(ContractId, String)> {
        self.table
            .remove(instance_id)
            .map(|(_, instance)| (instance.contract, instance.digest))
    }

    /// Removes the instances whose last beat is older than their time to
    /// live, oldest first, within the guard's budget: nobody when more than
    /// its share of the fleet is overdue in one sweep, and otherwise at most
    /// that share of the fleet (the instances held plus those evicted in the
    /// window) per window. The overdue instances over budget are kept and
    /// reported as held back; they expire once the window moves on, unless
    /// they beat again.
    pub(crate) fn expire(&self, now: Instant) -> ExpiryReport {
        let mut overdue: Vec<(Instant, String)> = self
            .table
            .iter()
            .filter(|entry| now.saturating_duration_since(entry.last_beat) > entry.ttl)
            .map(|entry| (entry.last_beat, entry.key().clone()))
            .collect();
        let mut report = ExpiryReport::default();
        if overdue.is_empty() {
            return report;
        }
        overdue.sort();
        let mut evictions = self.evictions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while evictions
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > self.guard.window)
        {
            evictions.pop_front();
        }
        let population = self.table.len() + evictions.len();
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a share of a fleet's size, rounded down"
        )]
        let share = (self.guard.max_fraction.clamp(0.0, 1.0) * population as f64).floor() as usize;
        // Most of the fleet silent in the same sweep: a blip, not a failure.
        if overdue.len() > share.max(self.guard.always_allowed) {
            report.held_back = overdue.len();
            return report;
        }
        let budget = share.max(self.guard.always_allowed).saturating_sub(evictions.len());
        for (_, id) in overdue.iter().take(budget) {
            // Beaten again since the scan? Keep it.
            if let Some((id, instance)) = self.table.remove_if(id, |_, instance| {
                now.saturating_duration_since(instance.last_beat) > instance.ttl
            }) {
                evictions.push_back(now);
                report.expired.push((id, instance.contract, instance.digest));
            }
        }
        report.held_back = overdue.len().saturating_sub(budget);
        report
    }

    /// Re-evaluates drift for the instances of `service` after a new version
    /// was stored; returns the ids that stopped drifting.
    pub(crate) fn recheck_drift(&self, service: &ServiceName, is_registered: impl Fn(&str) -> bool) -> Vec<String> {
        let mut cleared = Vec::new();
        for mut entry in self.table.iter_mut() {
            if &entry.contract.service == service && entry.drift && is_registered(&entry.digest) {
                entry.drift = false;
                cleared.push(entry.key().clone());
            }
        }
        cleared
    }

    /// Counts for every service at once, for listings.
    pub(crate) fn all_counts(&self, now: Instant) -> std::collections::HashMap<ServiceName, (u32, u32, u32)> {
        let mut counts: std::collections::HashMap<ServiceName, (u32, u32, u32)> = std::collections::HashMap::new();
        for entry in &self.table {
            let count = counts.entry(entry.contract.service.clone()).or_default();
            count.0 += 1;
            if now.saturating_duration_since(entry.last_beat) <= entry.ttl {
                count.1 += 1;
            }
            if entry.drift {
                count.2 += 1;
            }
        }
        counts
    }

    /// The instances of `service` (or all), by service then id.
    pub(crate) fn list(&self, service: Option<&ServiceName>, now: Instant) -> Vec<InstanceInfo> {
        let mut list: Vec<InstanceInfo> = self
            .table
            .iter()
            .filter(|entry| service.is_none_or(|service| &entry.contract.service == service))
            .map(|entry| {
                let age = now.saturating_duration_since(entry.last_beat);
                InstanceInfo {
                    instance_id: entry.key().clone(),
                    contract: entry.contract.clone(),
                    digest: entry.digest.clone(),
                    healthy: age <= entry.ttl,
                    drift: entry.drift,
                    last_beat_ms_ago: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    ttl_ms: u64::try_from(entry.ttl.as_millis()).unwrap_or(u64::MAX),
                }
            })
            .collect();
        list.sort_by(|a, b| (&a.contract.service, &a.instance_id).cmp(&(&b.contract.service, &b.instance_id)));
        list
    }

    /// How many instances are held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, ttl_ms: u64) -> HeartbeatRequest {
        HeartbeatRequest {
            instance_id: id.to_owned(),
            contract: ContractId::parse("inventory@1.0.0").unwrap(),
            digest: "sha256:aa".to_owned(),
            ttl_ms,
        }
    }

    #[test]
    fn a_missed_beat_expires_one_instance() {
        let instances = Instances::new(EvictionGuard::default());
        let start = Instant::now();
        for i in 0..10 {
            instances.beat(&beat(&format!("i{i}"), 1_000), false, start, true);
        }
        // Nine beat again, one does not.
        let later = start + Duration::from_millis(900);
        for i in 1..10 {
            instances.beat(&beat(&format!("i{i}"), 1_000), false, later, true);
        }
        let report = instances.expire(start + Duration::from_millis(1_500));
        assert_eq!(report.expired.len(), 1);
        assert_eq!(report.expired[0].0, "i0");
        assert_eq!(report.held_back, 0);
        assert_eq!(instances.len(), 9);
    }

    #[test]
    fn the_guard_keeps_the_fleet_when_beats_stop_everywhere() {
        let instances = Instances::new(EvictionGuard::default());
        let start = Instant::now();
        for i in 0..20 {
            instances.beat(&beat(&format!("i{i}"), 1_000), false, start, true);
        }
        let report = instances.expire(start + Duration::from_secs(5));
        assert!(report.expired.is_empty());
        assert_eq!(report.held_back, 20);
        assert_eq!(instances.len(), 20);
        // Beats resume for most; the ones that stay silent now expire.
        let resumed = start + Duration::from_secs(6);
        for i in 0..17 {
            instances.beat(&beat(&format!("i{i}"), 1_000), false, resumed, true);
        }
        let report = instances.expire(resumed + Duration::from_millis(10));
        assert_eq!(report.expired.len(), 3);
        assert_eq!(instances.len(), 17);
    }

    #[test]
    fn staggered_silence_never_evicts_most_of_the_fleet() {
        let instances = Instances::new(EvictionGuard::default());
        let start = Instant::now();
        // Last beats spread over a second, as a 1 s heartbeat interval leaves them.
        for i in 0..20u64 {
            instances.beat(
                &beat(&format!("i{i}"), 1_000),
                false,
                start + Duration::from_millis(i * 50),
                true,
            );
        }
        // Sweeps every 100 ms after the beats stopped everywhere.
        let mut expired = 0;
        for sweep in 0..40u64 {
            expired += instances
                .expire(start + Duration::from_millis(1_000 + sweep * 100))
                .expired
                .len();
        }
        assert_eq!(expired, 10, "half the fleet at most");
        assert_eq!(instances.len(), 10);
        // The silent rest is now the whole fleet: held (and listed as
        // unhealthy) until beats flow again, whatever the window.
        let later = start + Duration::from_secs(120);
        let report = instances.expire(later);
        assert_eq!((report.expired.len(), report.held_back), (0, 10));
    }

    #[test]
    fn a_small_fleet_can_lose_its_only_instance() {
        let instances = Instances::new(EvictionGuard::default());
        let start = Instant::now();
        instances.beat(&beat("only", 100), false, start, true);
        let report = instances.expire(start + Duration::from_secs(1));
        assert_eq!(report.expired.len(), 1);
    }

    #[test]
    fn observed_beats_are_announced_once_by_the_answering_replica() {
        let instances = Instances::new(EvictionGuard::default());
        let now = Instant::now();
        let observed = instances.beat(&beat("a", 1_000), true, now, false);
        assert!(!observed.first_beat && !observed.drift_changed);
        let answered = instances.beat(&beat("a", 1_000), true, now, true);
        assert!(answered.first_beat && answered.drift_changed);
        let again = instances.beat(&beat("a", 1_000), true, now, true);
        assert!(!again.first_beat && !again.drift_changed);
    }
}
