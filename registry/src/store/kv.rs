//! [`KvStore`]: a JetStream KV bucket that several registry replicas share.
//!
//! Keys:
//! - `c.<service>.<version>`: a contract record as JSON, the version's `+`
//!   (build metadata) written as `_`, which KV keys allow and semantic
//!   versions never contain: `c.inventory.1.3.0`.
//! - `o.<service>`: the service's owner credential as JSON (`null` or
//!   `"sha256:..."`).
//!
//! Every write is a `create` (a compare-and-set on "no revision yet"), so two
//! replicas racing on the same key cannot both win, and the loser reads what
//! the winner stored. `load` reads the last value of every `c.*` key with one
//! ordered consumer; `follow` watches `c.>` from just after what `load` saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;

use bus_services::patience::{self, SETUP_PATIENCE};
use bus_services::replicas::raise_replicas;
use contracts::{ContractId, ServiceName};

use super::{ContractRecord, Inserted, RawRecord, Store, StoreError, StoredDigest, check_insert, error_chain};

const KIND: &str = "kv";

/// How long `load` waits for the next record before giving up.
const LOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The header JetStream KV marks deletes and purges with.
const KV_OPERATION_HEADER: &str = "KV-Operation";

/// A store on a JetStream KV bucket, shared by every registry replica that
/// opens the same bucket.
///
/// A write returns once JetStream has acknowledged it, that is once the
/// bucket's stream (and, with `replicas` > 1, a quorum of its replicas)
/// stored it. A single server flushes its files to disk every
/// `sync_interval` (two minutes by default), so with one replica only
/// `sync_interval: always` makes an acknowledged write survive a power loss.
/// [`Store::follow`] streams the records other replicas write.
///
/// It is tested end to end against a real nats-server in the `tests`
/// crate (`tests/tests/e2e/stores.rs`).
#[derive(Debug)]
pub struct KvStore {
    client: async_nats::Client,
    kv: kv::Store,
    /// The highest stream sequence `load` saw; `follow` starts after it.
    loaded_up_to: AtomicU64,
}

impl KvStore {
    /// Binds to the bucket `bucket`, creating it (one value per key,
    /// `replicas` copies in a cluster) when it does not exist, or raising an
    /// existing bucket with fewer copies ([`bus_services::replicas`]). A
    /// request that timed out (a cluster electing leaders) is made again for
    /// up to [`SETUP_PATIENCE`].
    pub async fn open(js: async_nats::jetstream::Context, bucket: &str, replicas: usize) -> Result<Self, StoreError> {
        let doing = format!("opening the bucket {bucket}");
        let kv = patience::until_done(&doing, SETUP_PATIENCE, || open_bucket(&js, bucket, replicas)).await?;
        Ok(Self {
            client: js.client(),
            kv,
            loaded_up_to: AtomicU64::new(0),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.kv.name
    }

    async fn insert_acked(&self, record: ContractRecord) -> Result<Inserted, StoreError> {
        self.claim_owner(&record).await?;
        let key = record_key(&record.id());
        let json = serde_json::to_vec(&record).map_err(|err| unavailable(format!("cannot encode {key}: {err}")))?;
        match self.kv.create(&key, json.into()).await {
            Ok(_) => Ok(Inserted::Created),
            Err(err) if err.kind() == CreateErrorKind::AlreadyExists => {
                let stored: StoredDigest = self.read(&key).await?;
                check_insert(&record, None, Some(&stored.digest))
            }
            Err(err) => Err(unavailable(format!("cannot write {key}: {}", error_chain(&err)))),
        }
    }

    /// Records the record's owner for its service, or checks it against the
    /// one already recorded.
    async fn claim_owner(&self, record: &ContractRecord) -> Result<(), StoreError> {
        let key = owner_key(&record.document.service);
        let json =
            serde_json::to_vec(&record.owner).map_err(|err| unavailable(format!("cannot encode {key}: {err}")))?;
        match self.kv.create(&key, json.into()).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == CreateErrorKind::AlreadyExists => {
                let stored: Option<String> = self.read(&key).await?;
                check_insert(record, Some(&stored), None).map(|_| ())
            }
            Err(err) => Err(unavailable(format!("cannot write {key}: {}", error_chain(&err)))),
        }
    }

    /// The value of a key that a `create` just found.
    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<T, StoreError> {
        let value = self
            .kv
            .get(key)
            .await
            .map_err(|err| unavailable(format!("cannot read {key}: {}", error_chain(&err))))?
            .ok_or_else(|| unavailable(format!("{key} was deleted while it was being written")))?;
        serde_json::from_slice(&value).map_err(|err| corrupt(key, &err))
    }

    async fn load_all(&self) -> Result<Vec<RawRecord>, StoreError> {
        let started = std::time::Instant::now();
        // A request that timed out (a cluster electing leaders) is made again.
        let (values, highest) =
            patience::until_done("loading the registry's bucket", SETUP_PATIENCE, || self.read_values()).await?;
        let records: Vec<RawRecord> = values.iter().map(raw_value).collect();
        tracing::debug!(records = records.len(), received = ?started.elapsed(), "Loaded the KV bucket.");
        self.loaded_up_to.fetch_max(highest, Ordering::SeqCst);
        Ok(records)
    }

    /// The last value of every `c.*` key, with one ordered consumer, and the
    /// highest stream sequence among them.
    async fn read_values(&self) -> Result<(Vec<jetstream::Message>, u64), StoreError> {
        let failed = |err: &dyn std::error::Error| unavailable(format!("cannot read the bucket: {}", error_chain(err)));
        let consumer = self
            .kv
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("soabus registry load".to_owned()),
                filter_subject: format!("{}c.>", self.kv.prefix),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|err| failed(&err))?;
        let mut values = Vec::new();
        let mut highest = 0;
        if consumer.cached_info().num_pending == 0 {
            return Ok((values, highest));
        }
        let mut messages = consumer.messages().await.map_err(|err| failed(&err))?;
        loop {
            let message = tokio::time::timeout(LOAD_IDLE_TIMEOUT, messages.next())
                .await
                .map_err(|_| unavailable(format!("no record arrived for {LOAD_IDLE_TIMEOUT:?} while loading")))?
                .ok_or_else(|| unavailable("the connection closed while loading".to_owned()))?
                .map_err(|err| failed(&err))?;
            let info = message.info().map_err(|err| failed(err.as_ref()))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            highest = highest.max(sequence);
            if is_put(message.headers.as_ref()) {
                values.push(message);
            }
            if pending == 0 {
                return Ok((values, highest));
            }
        }
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<ContractRecord, StoreError>>, StoreError> {
        let from = self.loaded_up_to.load(Ordering::SeqCst) + 1;
        // A request that timed out (a cluster electing leaders) is made again.
        let watch = patience::until_done("watching the registry's bucket", SETUP_PATIENCE, || async {
            self.kv
                .watch_from_revision("c.>", from)
                .await
                .map_err(|err| unavailable(format!("cannot watch the bucket: {}", error_chain(&err))))
        })
        .await?;
        let records = watch.filter_map(|entry| {
            futures::future::ready(match entry {
                Err(err) => Some(Err(unavailable(format!("the watch failed: {}", error_chain(&err))))),
                Ok(entry) if entry.operation != Operation::Put => None,
                Ok(entry) => Some(serde_json::from_slice(&entry.value).map_err(|err| corrupt(&entry.key, &err))),
            })
        });
        Ok(records.boxed())
    }
}

impl Store for KvStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn load_raw(&self) -> BoxFuture<'_, Result<Vec<RawRecord>, StoreError>> {
        self.load_all().boxed()
    }

    fn insert(&self, record: ContractRecord) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        self.insert_acked(record).boxed()
    }

    fn follow(
        &self,
    ) -> BoxFuture<'_, Result<Option<BoxStream<'static, Result<ContractRecord, StoreError>>>, StoreError>> {
        async move { self.watch().await.map(Some) }.boxed()
    }
}

/// One attempt at opening the bucket, creating it when missing.
async fn open_bucket(js: &jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, StoreError> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        raise_replicas(js, &kv.stream.cached_info().config, replicas)
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        return Ok(kv);
    }
    let config = kv::Config {
        bucket: bucket.to_owned(),
        description: "soabus registry: contract versions and service owners".to_owned(),
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        // Another replica may have created it meanwhile.
        Err(create) => js
            .get_key_value(bucket)
            .await
            .map_err(|_| unavailable(format!("cannot create the bucket {bucket}: {}", error_chain(&create)))),
    }
}

/// One value of the bucket's stream as the bytes of a record.
fn raw_value(message: &jetstream::Message) -> RawRecord {
    RawRecord {
        key: key_of(message).to_owned(),
        json: message.payload.to_vec(),
    }
}

/// The key of a value of the bucket's stream: its subject without the prefix.
fn key_of(message: &jetstream::Message) -> &str {
    let subject = message.subject.as_str();
    subject.splitn(3, '.').nth(2).unwrap_or(subject)
}

/// `c.<service>.<version>`, with the version's `+` as `_`.
fn record_key(id: &ContractId) -> String {
    format!("c.{}.{}", id.service, id.version.to_string().replace('+', "_"))
}

/// `o.<service>`.
fn owner_key(service: &ServiceName) -> String {
    format!("o.{service}")
}

/// Whether a message of the bucket's stream is a value, not a delete or
/// purge marker.
fn is_put(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|headers| headers.get(KV_OPERATION_HEADER))
        .is_none_or(|operation| operation.as_str() == "PUT")
}

fn unavailable(reason: String) -> StoreError {
    StoreError::Unavailable { store: KIND, reason }
}

fn corrupt(key: &str, err: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys() {
        let id = ContractId::parse("order-view@1.2.3-rc.1+build.7").unwrap();
        assert_eq!(record_key(&id), "c.order-view.1.2.3-rc.1_build.7");
        assert_eq!(owner_key(&id.service), "o.order-view");
    }
}
