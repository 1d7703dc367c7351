//! The catalogue: every stored contract version and the live instances, with
//! the indexes queries need. Sans I/O: the server feeds it records and
//! heartbeats and asks it questions; every answer is an owned value.
//!
//! Indexes are derived from the *heads* of each service: the latest version
//! of each major, since old and new majors run side by side. They are
//! rebuilt for one service whenever one of its versions is stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use contracts::registry_api::{BindingKind, SubjectBinding};
use contracts::{ContractDocument, ContractId, MemberName, ServiceName, Subject, Version};

use crate::store::{ContractRecord, RawRecord, StoreError};

mod instances;
mod queries;
mod rules;
mod stored;

pub use instances::{EvictionGuard, ExpiryReport, HeartbeatOutcome};
pub use queries::{DEFAULT_PAGE, MAX_PAGE};
pub use rules::{Registration, RegistrationRefusal, owner_digest};

use stored::Loaded;
pub(crate) use stored::Stored;

/// One service: its versions and its owner.
#[derive(Debug, Default)]
struct ServiceEntry {
    versions: BTreeMap<Version, Arc<Stored>>,
    owner: Option<String>,
}

impl ServiceEntry {
    /// The latest version of each major.
    fn heads(&self) -> Vec<Arc<Stored>> {
        let mut heads: BTreeMap<u64, Arc<Stored>> = BTreeMap::new();
        for (version, stored) in &self.versions {
            heads.insert(version.major(), Arc::clone(stored));
        }
        heads.into_values().collect()
    }

    fn latest(&self) -> Option<&Arc<Stored>> {
        self.versions.values().next_back()
    }
}

/// `service@major#member`, the key of the dependency indexes.
pub(crate) type MemberKey = (ServiceName, u64, MemberName);

/// What one service contributes to the indexes, remembered so it can be
/// taken out again when the service gets a new version.
#[derive(Debug, Default, Clone)]
struct Contribution {
    subjects: Vec<Subject>,
    tags: Vec<String>,
    consumes: Vec<MemberKey>,
    calls: Vec<MemberKey>,
    fields: Vec<String>,
}

/// Every contract version and live instance, indexed.
#[derive(Debug)]
pub struct Catalog {
    services: DashMap<ServiceName, ServiceEntry>,
    /// Service names in order, for paging.
    names: RwLock<BTreeSet<ServiceName>>,
    /// Every stored digest and the version it belongs to.
    digests: DashMap<String, ContractId>,
    /// Concrete subject → the heads that bind it.
    subjects: DashMap<Subject, Vec<SubjectBinding>>,
    /// Tag → services.
    tags: DashMap<String, BTreeSet<ServiceName>>,
    /// Event → the services whose heads consume it.
    consumers: DashMap<MemberKey, BTreeSet<ServiceName>>,
    /// Producer major → the services whose heads consume any of its events,
    /// so a registration finds its consumers without scanning every event.
    consumed_majors: DashMap<(ServiceName, u64), BTreeSet<ServiceName>>,
    /// Operation → the services whose heads call it.
    callers: DashMap<MemberKey, BTreeSet<ServiceName>>,
    /// Property name in any message schema → services.
    fields: DashMap<String, BTreeSet<ServiceName>>,
    contributions: DashMap<ServiceName, Contribution>,
    instances: instances::Instances,
    strict: bool,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new(false, EvictionGuard::default())
    }
}

impl Catalog {
    /// An empty catalogue. `strict` refuses registrations whose changes the
    /// checker cannot decide (the default accepts them and reports them);
    /// `guard` limits how many instances may expire at once.
    pub fn new(strict: bool, guard: EvictionGuard) -> Self {
        Self {
            services: DashMap::new(),
            names: RwLock::new(BTreeSet::new()),
            digests: DashMap::new(),
            subjects: DashMap::new(),
            tags: DashMap::new(),
            consumers: DashMap::new(),
            consumed_majors: DashMap::new(),
            callers: DashMap::new(),
            fields: DashMap::new(),
            contributions: DashMap::new(),
            instances: instances::Instances::new(guard),
            strict,
        }
    }

    /// A catalogue rebuilt from stored records (in any order). A record
    /// that cannot be read fails the whole load, naming its key: starting
    /// without it would silently lose an acknowledged version.
    pub fn from_records(records: Vec<RawRecord>, strict: bool, guard: EvictionGuard) -> Result<Self, StoreError> {
        let catalog = Self::new(strict, guard);
        let loaded = in_parallel(records, Loaded::read)
            .into_iter()
            .collect::<Result<Vec<Loaded>, StoreError>>()?;
        // The latest version of each major: only these are summarized.
        let mut heads: std::collections::HashMap<(&ServiceName, u64), &Version> = std::collections::HashMap::new();
        for record in &loaded {
            let head = heads
                .entry((&record.id.service, record.id.version.major()))
                .or_insert(&record.id.version);
            if *head < &record.id.version {
                *head = &record.id.version;
            }
        }
        let marked: Vec<(Loaded, bool)> = {
            let is_head: Vec<bool> = loaded
                .iter()
                .map(|record| heads.get(&(&record.id.service, record.id.version.major())) == Some(&&record.id.version))
                .collect();
            loaded.into_iter().zip(is_head).collect()
        };
        let mut touched: BTreeSet<ServiceName> = BTreeSet::new();
        for stored in in_parallel(marked, |(record, head)| record.keep(head)) {
            let stored = stored?;
            touched.insert(stored.id.service.clone());
            catalog.store(stored);
        }
        for service in touched {
            catalog.reindex(&service);
        }
        Ok(catalog)
    }

    /// Adds a stored record and updates the indexes. A record already held
    /// (same id) is ignored: versions are immutable. Returns whether it was new.
    pub fn insert(&self, record: ContractRecord) -> bool {
        let service = record.document.service.clone();
        if self.stored(&service, &record.document.version).is_some() {
            return false;
        }
        if !self.store(Stored::new(record)) {
            return false;
        }
        self.reindex(&service);
        true
    }

    /// How many contract versions are held.
    pub fn version_count(&self) -> usize {
        self.digests.len()
    }

    /// How many services are held.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// How many live instances are held.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// The live-instance table.
    pub(crate) fn instances(&self) -> &instances::Instances {
        &self.instances
    }

    fn store(&self, stored: Stored) -> bool {
        let id = stored.id.clone();
        let digest = stored.digest.clone();
        let service = id.service.clone();
        {
            let mut entry = self.services.entry(service.clone()).or_default();
            if entry.versions.contains_key(&id.version) {
                return false;
            }
            if entry.versions.is_empty() || entry.owner.is_none() {
                entry.owner.clone_from(&stored.owner);
            }
            entry.versions.insert(id.version.clone(), Arc::new(stored));
        }
        self.digests.insert(digest, id);
        if let Ok(mut names) = self.names.write() {
            names.insert(service);
        }
        true
    }

    /// Takes the service's old contribution out of every index and puts in
    /// the one of its current heads.
    fn reindex(&self, service: &ServiceName) {
        let heads = match self.services.get(service) {
            Some(entry) => entry.heads(),
            None => return,
        };
        if let Some((_, old)) = self.contributions.remove(service) {
            for subject in &old.subjects {
                let now_empty = self.subjects.get_mut(subject).is_some_and(|mut bindings| {
                    bindings.retain(|binding| &binding.contract.service != service);
                    bindings.is_empty()
                });
                if now_empty {
                    self.subjects.remove_if(subject, |_, bindings| bindings.is_empty());
                }
            }
            remove_from(&self.tags, &old.tags, service);
            remove_from(&self.consumers, &old.consumes, service);
            remove_from(&self.consumed_majors, &majors_of(&old.consumes), service);
            remove_from(&self.callers, &old.calls, service);
            remove_from(&self.fields, &old.fields, service);
        }
        let mut contribution = Contribution::default();
        for head in &heads {
            let summary = head.summary();
            for (name, subject) in &summary.operations {
                self.bind(subject, &head.id, BindingKind::Operation, name);
                contribution.subjects.push(subject.clone());
            }
            for (name, subject) in &summary.events {
                self.bind(subject, &head.id, BindingKind::Event, name);
                contribution.subjects.push(subject.clone());
            }
            contribution.tags.extend(summary.tags.iter().cloned());
            contribution.consumes.extend(summary.consumes.iter().cloned());
            contribution.calls.extend(summary.calls.iter().cloned());
            contribution.fields.extend(summary.fields.iter().cloned());
        }
        for (index, keys) in [(&self.tags, &contribution.tags), (&self.fields, &contribution.fields)] {
            for key in keys {
                index.entry(key.clone()).or_default().insert(service.clone());
            }
        }
        for (index, keys) in [
            (&self.consumers, &contribution.consumes),
            (&self.callers, &contribution.calls),
        ] {
            for key in keys {
                index.entry(key.clone()).or_default().insert(service.clone());
            }
        }
        for key in majors_of(&contribution.consumes) {
            self.consumed_majors.entry(key).or_default().insert(service.clone());
        }
        self.contributions.insert(service.clone(), contribution);
    }

    fn bind(&self, subject: &Subject, contract: &ContractId, kind: BindingKind, name: &MemberName) {
        let mut bindings = self.subjects.entry(subject.clone()).or_default();
        bindings.push(SubjectBinding {
            subject: subject.clone(),
            contract: contract.clone(),
            kind,
            name: name.clone(),
        });
        bindings.sort_by(|a, b| a.contract.cmp(&b.contract));
        // Most subjects have one binding; a grown vector would hold room for four.
        bindings.shrink_to_fit();
    }

    /// The stored record of `service@version`.
    pub(crate) fn stored(&self, service: &ServiceName, version: &Version) -> Option<Arc<Stored>> {
        self.services
            .get(service)
            .and_then(|entry| entry.versions.get(version).cloned())
    }

    /// Every stored version of `service`, oldest first.
    pub(crate) fn history(&self, service: &ServiceName) -> Vec<Arc<Stored>> {
        self.services
            .get(service)
            .map(|entry| entry.versions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The heads (latest of each major) of `service`.
    pub(crate) fn heads(&self, service: &ServiceName) -> Vec<Arc<Stored>> {
        self.services
            .get(service)
            .map(|entry| entry.heads())
            .unwrap_or_default()
    }

    /// The latest version of `service`.
    pub(crate) fn latest(&self, service: &ServiceName) -> Option<Arc<Stored>> {
        self.services.get(service).and_then(|entry| entry.latest().cloned())
    }

    /// The credential digest that owns `service`, if the service exists.
    pub(crate) fn owner_of(&self, service: &ServiceName) -> Option<Option<String>> {
        self.services.get(service).map(|entry| entry.owner.clone())
    }

    /// True when `digest` is the digest of a stored version of `service`.
    pub(crate) fn is_registered_digest(&self, service: &ServiceName, digest: &str) -> bool {
        self.digests.get(digest).is_some_and(|id| &id.service == service)
    }

    /// Every service name, in order.
    pub(crate) fn service_names(&self) -> Vec<ServiceName> {
        self.names
            .read()
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Service names after `after`, in order, at most `limit`.
    pub(crate) fn service_names_after(&self, after: Option<&ServiceName>, limit: usize) -> Vec<ServiceName> {
        let Ok(names) = self.names.read() else {
            return Vec::new();
        };
        match after {
            Some(after) => names
                .range::<ServiceName, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .take(limit)
                .cloned()
                .collect(),
            None => names.iter().take(limit).cloned().collect(),
        }
    }

    /// The latest heads of the services that consume an event of `producer`
    /// (any event of the given major).
    pub(crate) fn consumers_of_major(&self, producer: &ServiceName, major: u64) -> Vec<ContractDocument> {
        let mut services = self
            .consumed_majors
            .get(&(producer.clone(), major))
            .map(|services| services.clone())
            .unwrap_or_default();
        services.remove(producer);
        services
            .iter()
            .flat_map(|service| self.heads(service))
            .filter_map(|stored| stored.document().ok())
            .collect()
    }
}

/// The producer majors of consumed events.
fn majors_of(consumes: &[MemberKey]) -> Vec<(ServiceName, u64)> {
    let majors: BTreeSet<(ServiceName, u64)> = consumes
        .iter()
        .map(|(service, major, _)| (service.clone(), *major))
        .collect();
    majors.into_iter().collect()
}

fn remove_from<K: std::hash::Hash + Eq + Clone>(
    index: &DashMap<K, BTreeSet<ServiceName>>,
    keys: &[K],
    service: &ServiceName,
) {
    for key in keys {
        let now_empty = index.get_mut(key).is_some_and(|mut services| {
            services.remove(service);
            services.is_empty()
        });
        if now_empty {
            index.remove_if(key, |_, services| services.is_empty());
        }
    }
}

/// Maps `items` with `work` on every core, keeping their order: reading
/// tens of thousands of stored documents decides how fast a restart is.
fn in_parallel<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if threads < 2 || items.len() < 256 {
        return items.into_iter().map(work).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let next: Vec<T> = items.by_ref().take(chunk).collect();
        if next.is_empty() {
            break;
        }
        chunks.push(next);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let work = &work;
                scope.spawn(move || chunk.into_iter().map(work).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            // A worker that panicked hit a bug; losing its records silently would be worse.
            .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
