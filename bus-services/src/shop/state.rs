//! Where the shop keeps its state: one JetStream KV bucket per service,
//! JSON values, every change a create-only write or a compare-and-set on the
//! key's revision. What is held in memory between messages is only a guess
//! that spares a read (a compare-and-set on a stale one fails and the key is
//! read again), so any instance of a service can handle any message and a
//! restart loses nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::recent::Recent;
use crate::runtime::ServiceError;

/// The orders service's bucket: one order per key (its id).
pub const ORDERS_BUCKET: &str = "SHOP_ORDERS";
/// The inventory's stock: one product per key.
pub const STOCK_BUCKET: &str = "SHOP_STOCK";
/// The inventory's reservations: one per order.
pub const RESERVATIONS_BUCKET: &str = "SHOP_RESERVATIONS";
/// Payments: one charge per order (`charge.<order>`).
pub const PAYMENTS_BUCKET: &str = "SHOP_PAYMENTS";
/// Shipping: one shipment per order (`shipment.<order>`).
pub const SHIPMENTS_BUCKET: &str = "SHOP_SHIPMENTS";
/// Notifications: one per order and kind (`<order>.<kind>`).
pub const NOTIFICATIONS_BUCKET: &str = "SHOP_NOTIFICATIONS";

/// Compare-and-set attempts before a change gives up as `UNAVAILABLE`.
const MAX_ATTEMPTS: u32 = 500;

/// A bucket read or write that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("JetStream KV {bucket}: {doing}: {message}")]
pub struct StoreError {
    /// The bucket.
    pub bucket: String,
    /// What was being done.
    pub doing: String,
    /// What JetStream or the decoder reported.
    pub message: String,
}

impl From<StoreError> for ServiceError {
    /// A store failure is ours, and usually passes: the caller may retry
    /// (the orchestrator and the event consumers do), with the cause logged.
    fn from(error: StoreError) -> Self {
        tracing::warn!(error = %error, "The shop's store failed.");
        ServiceError::unavailable(format!("the {} store did not answer in time; try again", error.bucket))
    }
}

/// What a [`Bucket::modify`] step decides for the current value.
pub(crate) enum Change<T, R> {
    /// Write nothing and return this.
    Keep(R),
    /// Write this value (if nobody wrote in between) and return this.
    Write(T, R),
}

/// One service's bucket.
#[derive(Clone)]
pub(crate) struct Bucket {
    name: &'static str,
    js: jetstream::Context,
    /// Shared: a store's clone copies its stream's whole configuration.
    store: Arc<kv::Store>,
    /// What this instance last read or wrote of recent keys, shared by the
    /// bucket's clones, so [`Bucket::modify`] can write without reading first.
    recent: Arc<Recent>,
}

impl Bucket {
    /// Opens the bucket, creating it when missing.
    pub(crate) async fn open(
        js: &jetstream::Context,
        name: &'static str,
        description: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let fail = |error: &dyn std::fmt::Display| StoreError {
            bucket: name.to_owned(),
            doing: "opening the bucket".to_owned(),
            message: error.to_string(),
        };
        let bucket = |store| Self {
            name,
            js: js.clone(),
            store: Arc::new(store),
            recent: Arc::default(),
        };
        if let Ok(store) = js.get_key_value(name).await {
            crate::replicas::raise_replicas(js, &store.stream.cached_info().config, replicas.max(1))
                .await
                .map_err(|error| fail(&error))?;
            return Ok(bucket(store));
        }
        let config = kv::Config {
            bucket: name.to_owned(),
            description: description.to_owned(),
            history: 1,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        match js.create_key_value(config).await {
            Ok(store) => Ok(bucket(store)),
            // Another service or instance may have created it meanwhile.
            Err(create) => match js.get_key_value(name).await {
                Ok(store) => Ok(bucket(store)),
                Err(_) => Err(fail(&create)),
            },
        }
    }

    /// Opens an existing bucket for reading; `None` when it does not exist.
    pub(crate) async fn existing(js: &jetstream::Context, name: &'static str) -> Option<Self> {
        js.get_key_value(name).await.ok().map(|store| Self {
            name,
            js: js.clone(),
            store: Arc::new(store),
            recent: Arc::default(),
        })
    }

    fn error(&self, doing: impl Into<String>, message: impl std::fmt::Display) -> StoreError {
        StoreError {
            bucket: self.name.to_owned(),
            doing: doing.into(),
            message: message.to_string(),
        }
    }

    /// The value under `key` and its revision.
    pub(crate) async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>, StoreError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|error| self.error(format!("reading {key}"), error))?;
        let Some(entry) = entry else {
            self.forget(key);
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            self.forget(key);
            return Ok(None);
        }
        let value =
            serde_json::from_slice(&entry.value).map_err(|error| self.error(format!("decoding {key}"), error))?;
        self.remember(key, entry.value, entry.revision);
        Ok(Some((value, entry.revision)))
    }

    /// The value under `key`.
    pub(crate) async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self.read(key).await?.map(|(value, _)| value))
    }

    fn remember(&self, key: &str, value: bytes::Bytes, revision: u64) {
        self.recent.remember(key, value, revision);
    }

    fn forget(&self, key: &str) {
        self.recent.forget(key);
    }

    /// The value and revision of `key` as this instance last read or wrote
    /// it, if it remembers them (and they still decode).
    fn remembered<T: DeserializeOwned>(&self, key: &str) -> Option<(T, u64)> {
        let (bytes, revision) = self.recent.get(key)?;
        serde_json::from_slice(&bytes).ok().map(|value| (value, revision))
    }

    /// Stores `value` under `key` unless the key holds a value; true when
    /// this call stored it.
    pub(crate) async fn create<T: Serialize>(&self, key: &str, value: &T) -> Result<bool, StoreError> {
        Ok(self.put_if(key, value, None).await?.is_some())
    }

    /// Stores `value` under `key` if the key is still at `expected` (`None`:
    /// if it holds no value); the new revision, or `None` when someone else
    /// wrote first. For a caller that keeps the value and its revision in
    /// memory and so needs no read before each write.
    pub(crate) async fn put_if<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        expected: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        let bytes: bytes::Bytes = serde_json::to_vec(value)
            .map_err(|error| self.error(format!("encoding {key}"), error))?
            .into();
        let written = match expected {
            Some(revision) => match self.store.update(key, bytes.clone(), revision).await {
                Ok(written) => Some(written),
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => None,
                Err(error) => return Err(self.error(format!("updating {key}"), error)),
            },
            None => match self.store.create(key, bytes.clone()).await {
                Ok(written) => Some(written),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => None,
                Err(error) => return Err(self.error(format!("creating {key}"), error)),
            },
        };
        match written {
            Some(revision) => self.remember(key, bytes, revision),
            None => self.forget(key),
        }
        Ok(written)
    }

    /// Asks `decide` what to do with the value under `key` (`None` when
    /// there is none) and writes the answer with compare-and-set: created
    /// when the key was empty, updated at the revision the value had
    /// otherwise. When someone else wrote in between, it reads again and asks
    /// again, so a write always replaces the value `decide` saw.
    ///
    /// The common case costs one write and no read: `decide` first sees the
    /// value this instance last read or wrote (or, for a key it knows
    /// nothing of, no value). A stale guess fails the compare-and-set and is
    /// read afresh; an answer that keeps the value is only returned when
    /// `decide` saw the value read afresh, since a guess may be wrong.
    /// `decide` may therefore be asked more than once, and must only decide.
    pub(crate) async fn modify<T, R>(
        &self,
        key: &str,
        mut decide: impl FnMut(Option<&T>) -> Change<T, R>,
    ) -> Result<R, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        // What `decide` sees next, and whether it was read just now.
        let mut current: Option<(T, u64)> = self.remembered(key);
        let mut fresh = false;
        for attempt in 0..MAX_ATTEMPTS {
            let (value, revision) = match current.take() {
                Some((value, revision)) => (Some(value), Some(revision)),
                None => (None, None),
            };
            match decide(value.as_ref()) {
                Change::Keep(result) if fresh => return Ok(result),
                Change::Keep(_) => {}
                Change::Write(next, result) => {
                    if self.put_if(key, &next, revision).await?.is_some() {
                        return Ok(result);
                    }
                    if fresh {
                        // Someone else wrote between our read and our write.
                        tokio::time::sleep(contention_pause(attempt)).await;
                    }
                }
            }
            current = self.read(key).await?;
            fresh = true;
        }
        Err(self.error(
            format!("changing {key}"),
            format!("still contended after {MAX_ATTEMPTS} attempts"),
        ))
    }

    /// Every key and value of the bucket (the latest value of each).
    pub(crate) async fn all<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        // The store's own status is the one cached when it was opened: ask afresh.
        let mut stream = self
            .js
            .get_stream(format!("KV_{}", self.name))
            .await
            .map_err(|error| self.error("reading its stream", error))?;
        let info = stream
            .info()
            .await
            .map_err(|error| self.error("reading its stream", error))?;
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        let mut watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|error| self.error("listing the keys", error))?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
            let entry = match next {
                Ok(Some(Ok(entry))) => entry,
                Ok(Some(Err(error))) => return Err(self.error("listing the keys", error)),
                // Deleted keys may leave nothing to deliver: what came is all there is.
                Ok(None) | Err(_) => break,
            };
            let last = entry.delta == 0;
            if entry.operation == kv::Operation::Put {
                let value = serde_json::from_slice(&entry.value)
                    .map_err(|error| self.error(format!("decoding {}", entry.key), error))?;
                out.push((entry.key, value));
            }
            if last {
                break;
            }
        }
        Ok(out)
    }
}

/// A few keys that many changes of one instance go to at once (the stock
/// of each product). The changes of one key waiting together are made in one
/// write: each is decided on the value the ones before it leave, and the
/// last value is written by compare-and-set on the revision the first one
/// saw, so the write stands for all of them in that order or for none. The
/// value and revision this instance last wrote or read are remembered, so a
/// write needs no read first; another instance's write makes the
/// compare-and-set fail and the key is read again, so every decision still
/// sees the value it replaces. Changes that all keep the value are answered
/// from a value read afresh only, since a remembered one may be stale.
pub(crate) struct HotKeys<T> {
    bucket: Bucket,
    slots: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<Slot<T>>>>>,
}

/// One key's waiting changes and what is known of it.
struct Slot<T> {
    /// Changes not yet taken by the writer.
    waiting: Vec<Box<dyn Pending<T>>>,
    /// Whether a writer is draining `waiting`.
    writing: bool,
    /// The key's value and revision as last written or read here.
    known: Option<Known<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            writing: false,
            known: None,
        }
    }
}

/// A key's value (`None`: it holds none) at a revision (`None`: create it).
#[derive(Clone)]
struct Known<T> {
    value: Option<T>,
    revision: Option<u64>,
}

/// One change waiting for the write that makes it, with its caller's answer.
trait Pending<T>: Send {
    /// Decides on `current`; the value to write, or `None` to keep it.
    fn decide(&mut self, current: Option<&T>) -> Option<T>;
    /// The write stood (or nothing needed writing): answers the caller.
    fn done(self: Box<Self>);
    /// Answers the caller with `error`.
    fn fail(self: Box<Self>, error: StoreError);
}

/// A [`Pending`] change made of a caller's `decide` step.
struct Step<F, R> {
    decide: F,
    result: Option<R>,
    answer: tokio::sync::oneshot::Sender<Result<R, StoreError>>,
}

impl<T, R, F> Pending<T> for Step<F, R>
where
    F: FnMut(Option<&T>) -> Change<T, R> + Send,
    R: Send,
{
    fn decide(&mut self, current: Option<&T>) -> Option<T> {
        match (self.decide)(current) {
            Change::Keep(result) => {
                self.result = Some(result);
                None
            }
            Change::Write(next, result) => {
                self.result = Some(result);
                Some(next)
            }
        }
    }

    fn done(self: Box<Self>) {
        if let Some(result) = self.result {
            // A caller that stopped waiting needs no answer.
            let _ = self.answer.send(Ok(result));
        }
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.answer.send(Err(error));
    }
}

impl<T> HotKeys<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Changes to the keys of `bucket`.
    pub(crate) fn new(bucket: Bucket) -> Arc<Self> {
        Arc::new(Self {
            bucket,
            slots: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The bucket.
    pub(crate) fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    fn slot(&self, key: &str) -> Arc<std::sync::Mutex<Slot<T>>> {
        Arc::clone(lock(&self.slots).entry(key.to_owned()).or_default())
    }

    /// Like [`Bucket::modify`]: `decide` is asked what to do with the key's
    /// value (as the changes written with it before leave it) and its answer
    /// is written by compare-and-set. The write is made by a task of its own,
    /// so a caller that stops waiting stops no one else's change.
    pub(crate) async fn modify<R, F>(self: &Arc<Self>, key: &str, decide: F) -> Result<R, StoreError>
    where
        F: FnMut(Option<&T>) -> Change<T, R> + Send + 'static,
        R: Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let slot = self.slot(key);
        let start_writer = {
            let mut slot = lock(&slot);
            slot.waiting.push(Box::new(Step {
                decide,
                result: None,
                answer,
            }));
            !std::mem::replace(&mut slot.writing, true)
        };
        if start_writer {
            let (keys, key) = (Arc::clone(self), key.to_owned());
            tokio::spawn(async move { keys.write_waiting(&key, &slot).await });
        }
        answered.await.map_err(|_| {
            self.bucket
                .error(format!("changing {key}"), "the writer stopped before answering")
        })?
    }

    /// Writes the key's waiting changes, batch after batch, until none wait.
    async fn write_waiting(&self, key: &str, slot: &std::sync::Mutex<Slot<T>>) {
        // Should a decision panic, the next change starts a writer again.
        let _writing = Writing(slot);
        loop {
            let (mut batch, known) = {
                let mut slot = lock(slot);
                if slot.waiting.is_empty() {
                    slot.writing = false;
                    return;
                }
                (std::mem::take(&mut slot.waiting), slot.known.take())
            };
            let outcome = self.write_batch(key, &mut batch, known).await;
            let mut slot = lock(slot);
            match outcome {
                Ok(known) => {
                    slot.known = Some(known);
                    drop(slot);
                    batch.into_iter().for_each(Pending::done);
                }
                Err(error) => {
                    slot.known = None;
                    drop(slot);
                    batch.into_iter().for_each(|change| change.fail(error.clone()));
                }
            }
        }
    }

    /// Decides every change of `batch` in turn and writes the last value;
    /// the key as it then stands.
    async fn write_batch(
        &self,
        key: &str,
        batch: &mut [Box<dyn Pending<T>>],
        mut known: Option<Known<T>>,
    ) -> Result<Known<T>, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let fresh = known.is_none();
            let current = match known.take() {
                Some(current) => current,
                None => match self.bucket.read::<T>(key).await? {
                    Some((value, revision)) => Known {
                        value: Some(value),
                        revision: Some(revision),
                    },
                    // Created, not updated: creating also replaces a deleted value.
                    None => Known {
                        value: None,
                        revision: None,
                    },
                },
            };
            let mut value = current.value.clone();
            let mut changed = false;
            for change in batch.iter_mut() {
                if let Some(next) = change.decide(value.as_ref()) {
                    value = Some(next);
                    changed = true;
                }
            }
            let Some(next) = value.filter(|_| changed) else {
                if fresh {
                    return Ok(current);
                }
                // Remembered, perhaps stale: decide again on the value read afresh.
                continue;
            };
            if let Some(revision) = self.bucket.put_if(key, &next, current.revision).await? {
                return Ok(Known {
                    value: Some(next),
                    revision: Some(revision),
                });
            }
            tokio::time::sleep(contention_pause(attempt)).await;
        }
        Err(self.bucket.error(
            format!("changing {key}"),
            format!("still contended after {MAX_ATTEMPTS} attempts"),
        ))
    }
}

/// Marks a key's writer gone when it ends, however it ends.
struct Writing<'a, T>(&'a std::sync::Mutex<Slot<T>>);

impl<T> Drop for Writing<'_, T> {
    fn drop(&mut self) {
        let mut slot = lock(self.0);
        if slot.writing && std::thread::panicking() {
            slot.writing = false;
            slot.known = None;
        }
    }
}

/// The value behind `mutex`; a poisoned one only means a panic elsewhere
/// held it, and what it holds is still whole.
fn lock<V>(mutex: &std::sync::Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A short pause after losing a compare-and-set, longer with each loss and
/// jittered, so contenders for one key spread out instead of colliding again.
fn contention_pause(attempt: u32) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let ceiling_micros = 500_u64.saturating_mul(u64::from(attempt.min(20)) + 1);
    Duration::from_micros(u64::from(nanos) % ceiling_micros)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// The KV key of a product: the SKU itself when every character may stand
/// in a key (`s.<sku>`), otherwise its bytes in hex (`h.<hex>`), so no two
/// SKUs share a key.
pub(crate) fn sku_key(sku: &str) -> String {
    if !sku.is_empty() && sku.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        format!("s.{sku}")
    } else {
        let hex: String = sku.bytes().map(|byte| format!("{byte:02x}")).collect();
        format!("h.{hex}")
    }
}

/// Whether `text` is an order id as the shop's contracts define one
/// (`^[A-Za-z0-9_-]{1,64}$`): only such ids become keys.
pub(crate) fn is_order_id(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_become_distinct_valid_keys() {
        assert_eq!(sku_key("sku-mug_2"), "s.sku-mug_2");
        assert_eq!(sku_key("mug 2"), "h.6d75672032");
        assert_eq!(sku_key("é"), "h.c3a9");
        assert_ne!(sku_key("h.6d"), sku_key("m"));
    }

    #[test]
    fn order_ids_follow_the_contract_pattern() {
        assert!(is_order_id("ord-1_A"));
        assert!(!is_order_id(""));
        assert!(!is_order_id("a.b"));
        assert!(!is_order_id(&"x".repeat(65)));
    }
}
