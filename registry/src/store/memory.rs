//! [`MemoryStore`]: records in a map, for tests.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use contracts::{ContractId, ServiceName};

use super::{ContractRecord, Inserted, RawRecord, Store, StoreError, check_insert};

/// A store in memory: nothing survives the process. For tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<ContractId, ContractRecord>,
    owners: BTreeMap<ServiceName, Option<String>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is made whole under the lock, so a panic elsewhere
        // while it was held cannot have left it half-done.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert_now(&self, record: ContractRecord) -> Result<Inserted, StoreError> {
        let mut inner = self.lock();
        let id = record.id();
        let service = &record.document.service;
        let stored_digest = inner.records.get(&id).map(|stored| stored.digest.as_str());
        let inserted = check_insert(&record, inner.owners.get(service), stored_digest)?;
        if inserted == Inserted::Created {
            inner
                .owners
                .entry(service.clone())
                .or_insert_with(|| record.owner.clone());
            inner.records.insert(id, record);
        }
        Ok(inserted)
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn load_raw(&self) -> BoxFuture<'_, Result<Vec<RawRecord>, StoreError>> {
        let records = self
            .lock()
            .records
            .values()
            .map(|record| RawRecord::encode(record.id().to_string(), record))
            .collect();
        futures::future::ready(records).boxed()
    }

    fn insert(&self, record: ContractRecord) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        futures::future::ready(self.insert_now(record)).boxed()
    }

    fn follow(
        &self,
    ) -> BoxFuture<'_, Result<Option<BoxStream<'static, Result<ContractRecord, StoreError>>>, StoreError>> {
        futures::future::ready(Ok(None)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::test_support::{assert_stores_once_and_refuses_other_content, sample_record};

    #[tokio::test]
    async fn stores_once_and_refuses_a_different_record_under_the_same_id() {
        let store = MemoryStore::new();
        let record = sample_record("1.0.0", Some("sha256:owner"));
        assert_stores_once_and_refuses_other_content(&store, &record).await;
        assert_eq!(store.load().await.unwrap(), vec![record]);
    }

    #[tokio::test]
    async fn refuses_another_owner_and_stores_nothing() {
        let store = MemoryStore::new();
        store.insert(sample_record("1.0.0", None)).await.unwrap();
        let err = store
            .insert(sample_record("1.1.0", Some("sha256:intruder")))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::OwnerMismatch { .. }), "{err}");
        let err = store
            .insert(sample_record("1.0.0", Some("sha256:intruder")))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::OwnerMismatch { .. }), "{err}");
        assert_eq!(store.load().await.unwrap().len(), 1);
        assert_eq!(
            store.insert(sample_record("1.1.0", None)).await.unwrap(),
            Inserted::Created
        );
    }

    #[tokio::test]
    async fn concurrent_inserts_are_all_kept_and_nothing_follows() {
        let store = Arc::new(MemoryStore::new());
        let tasks: Vec<_> = (0..200)
            .map(|patch| {
                let store = store.clone();
                tokio::spawn(async move { store.insert(sample_record(&format!("1.0.{patch}"), None)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Inserted::Created);
        }
        assert_eq!(store.load().await.unwrap().len(), 200);
        assert!(store.follow().await.unwrap().is_none());
        assert_eq!(store.kind(), "memory");
    }
}
