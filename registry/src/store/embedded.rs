//! [`EmbeddedStore`]: a redb file, written by one thread that commits every
//! pending insert in one durable transaction (group commit).
//!
//! A durable commit costs an fsync, and one fsync per registration would cap
//! the store at a few hundred writes a second. So `insert` only queues its
//! record and waits: the writer thread takes everything queued, checks each
//! record against the file and the records before it in the same batch,
//! writes the accepted ones, commits once and then answers every caller.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use tokio::sync::oneshot;

use super::{ContractRecord, Inserted, RawRecord, Store, StoreError, StoredDigest, check_insert, error_chain};

/// `service@version` -> the record as JSON.
const CONTRACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contracts");
/// Service name -> its owner credential as JSON (`null` or `"sha256:..."`).
const OWNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("owners");

/// The most inserts one transaction takes; the rest wait for the next.
const MAX_BATCH: usize = 4096;

const KIND: &str = "embedded";

/// The default store: a redb file under the registry's data directory.
///
/// Every acknowledged insert is on disk (an `Immediate` commit) before
/// `insert` returns; inserts that arrive together share one commit. Only one
/// process may open the file at a time.
#[derive(Debug)]
pub struct EmbeddedStore {
    path: PathBuf,
    db: Arc<Database>,
    /// `None` only while dropping, to stop the writer.
    queue: Option<mpsc::Sender<Pending>>,
    writer: Option<JoinHandle<()>>,
}

/// One insert waiting for the writer.
struct Pending {
    record: ContractRecord,
    /// The record as stored.
    json: Vec<u8>,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

impl EmbeddedStore {
    /// Opens the store at `path`, creating the file and its parent
    /// directories if needed, and starts its writer thread.
    ///
    /// Fails with [`StoreError::Unavailable`] when the file cannot be made or
    /// read as a redb database, or when another process (or another handle
    /// in this one) has it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| unavailable(format!("cannot create the directory {}: {err}", parent.display())))?;
        }
        // redb caches up to 1 GiB of pages by default and keeps what a load
        // touched; the catalogue holds everything it needs, so a small cache
        // for the B-tree's interior pages is enough.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|err| match err {
                DatabaseError::DatabaseAlreadyOpen => unavailable(format!(
                    "{} is already open; is another registry using this data directory?",
                    path.display()
                )),
                other => unavailable(format!("cannot open {}: {}", path.display(), error_chain(&other))),
            })?;
        create_tables(&db).map_err(|reason| unavailable(format!("cannot prepare {}: {reason}", path.display())))?;

        let db = Arc::new(db);
        let (queue, pending) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("registry-store-writer".to_owned())
            .spawn({
                let db = db.clone();
                move || run_writer(&db, &pending)
            })
            .map_err(|err| unavailable(format!("cannot start the writer thread: {err}")))?;
        Ok(Self {
            path: path.to_owned(),
            db,
            queue: Some(queue),
            writer: Some(writer),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn insert_durably(&self, record: ContractRecord) -> Result<Inserted, StoreError> {
        let json =
            serde_json::to_vec(&record).map_err(|err| unavailable(format!("cannot encode the record: {err}")))?;
        let (reply, answer) = oneshot::channel();
        let stopped = || unavailable("the writer thread has stopped".to_owned());
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(Pending { record, json, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // The writer ends once the queue is closed and drained; waiting for
        // it means the file is closed (its lock released) when this returns,
        // unless a `load` still reads it.
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn load_raw(&self) -> BoxFuture<'_, Result<Vec<RawRecord>, StoreError>> {
        let db = self.db.clone();
        async move {
            tokio::task::spawn_blocking(move || read_all(&db))
                .await
                .map_err(|err| unavailable(format!("the load task failed: {err}")))?
        }
        .boxed()
    }

    fn insert(&self, record: ContractRecord) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        self.insert_durably(record).boxed()
    }

    fn follow(
        &self,
    ) -> BoxFuture<'_, Result<Option<BoxStream<'static, Result<ContractRecord, StoreError>>>, StoreError>> {
        futures::future::ready(Ok(None)).boxed()
    }
}

/// redb's page cache: enough for the interior pages of a large catalogue.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

fn unavailable(reason: String) -> StoreError {
    StoreError::Unavailable { store: KIND, reason }
}

/// Makes both tables, so that readers find them in a new file.
fn create_tables(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|err| error_chain(&err))?;
    txn.open_table(CONTRACTS).map_err(|err| error_chain(&err))?;
    txn.open_table(OWNERS).map_err(|err| error_chain(&err))?;
    txn.commit().map_err(|err| error_chain(&err))
}

/// Every stored record, in key order.
fn read_all(db: &Database) -> Result<Vec<RawRecord>, StoreError> {
    let failed = |err: &dyn std::error::Error| unavailable(format!("cannot read: {}", error_chain(err)));
    let txn = db.begin_read().map_err(|err| failed(&err))?;
    let table = txn.open_table(CONTRACTS).map_err(|err| failed(&err))?;
    let mut records = Vec::with_capacity(usize::try_from(table.len().unwrap_or(0)).unwrap_or(0));
    for entry in table.iter().map_err(|err| failed(&err))? {
        let (key, value) = entry.map_err(|err| failed(&err))?;
        records.push(RawRecord {
            key: key.value().to_owned(),
            json: value.value().to_vec(),
        });
    }
    Ok(records)
}

/// The writer thread: one transaction per batch of queued inserts, until
/// the store is dropped.
fn run_writer(db: &Database, pending: &mpsc::Receiver<Pending>) {
    while let Ok(first) = pending.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        write_batch(db, batch);
    }
}

/// Checks and writes a batch in one transaction, commits it, then answers
/// every insert. If anything fails at the level of the transaction, every
/// insert of the batch is answered `Unavailable`.
fn write_batch(db: &Database, batch: Vec<Pending>) {
    let (records, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| ((pending.record, pending.json), pending.reply))
        .unzip();
    let answers = commit_batch(db, &records).unwrap_or_else(|reason| {
        let reason = format!("the write failed, nothing was stored: {reason}");
        records.iter().map(|_| Err(unavailable(reason.clone()))).collect()
    });
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that stopped waiting no longer needs its answer.
        let _ = reply.send(answer);
    }
}

/// The answers for `records`, once they are durable; `Err` when the
/// transaction as a whole failed.
fn commit_batch(
    db: &Database,
    records: &[(ContractRecord, Vec<u8>)],
) -> Result<Vec<Result<Inserted, StoreError>>, String> {
    let txn = db.begin_write().map_err(|err| error_chain(&err))?;
    let answers = write_records(&txn, records)?;
    if answers.iter().any(|answer| matches!(answer, Ok(Inserted::Created))) {
        txn.commit().map_err(|err| error_chain(&err))?;
    } else {
        txn.abort().map_err(|err| error_chain(&err))?;
    }
    Ok(answers)
}

/// Checks each record against the tables (which hold the batch's earlier
/// records too) and writes the accepted ones.
fn write_records(
    txn: &WriteTransaction,
    records: &[(ContractRecord, Vec<u8>)],
) -> Result<Vec<Result<Inserted, StoreError>>, String> {
    let mut contracts = txn.open_table(CONTRACTS).map_err(|err| error_chain(&err))?;
    let mut owners = txn.open_table(OWNERS).map_err(|err| error_chain(&err))?;
    let mut answers = Vec::with_capacity(records.len());
    for (record, json) in records {
        answers.push(write_record(&mut contracts, &mut owners, record, json)?);
    }
    Ok(answers)
}

/// One record: its answer, or `Err` when the file failed.
fn write_record(
    contracts: &mut Table<&str, &[u8]>,
    owners: &mut Table<&str, &[u8]>,
    record: &ContractRecord,
    json: &[u8],
) -> Result<Result<Inserted, StoreError>, String> {
    let key = record.id().to_string();
    let service = record.document.service.as_str();
    let stored_owner = match owners.get(service).map_err(|err| error_chain(&err))? {
        None => None,
        Some(owner) => match serde_json::from_slice::<Option<String>>(owner.value()) {
            Ok(owner) => Some(owner),
            Err(err) => return Ok(Err(corrupt(format!("owner of {service}"), &err))),
        },
    };
    let stored_digest = match contracts.get(key.as_str()).map_err(|err| error_chain(&err))? {
        None => None,
        Some(stored) => match serde_json::from_slice::<StoredDigest>(stored.value()) {
            Ok(stored) => Some(stored.digest),
            Err(err) => return Ok(Err(corrupt(key, &err))),
        },
    };
    let answer = check_insert(record, stored_owner.as_ref(), stored_digest.as_deref());
    if matches!(answer, Ok(Inserted::Created)) {
        if stored_owner.is_none() {
            let owner = serde_json::to_vec(&record.owner).map_err(|err| err.to_string())?;
            owners
                .insert(service, owner.as_slice())
                .map_err(|err| error_chain(&err))?;
        }
        contracts.insert(key.as_str(), json).map_err(|err| error_chain(&err))?;
    }
    Ok(answer)
}

fn corrupt(key: String, err: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        key,
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::store::test_support::{assert_stores_once_and_refuses_other_content, sample_record};

    fn file(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("data/registry.redb")
    }

    #[tokio::test]
    async fn stores_once_refuses_conflicts_and_keeps_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let record = sample_record("1.0.0", Some("sha256:owner"));
        {
            let store = EmbeddedStore::open(&file(&dir)).unwrap();
            assert_eq!(store.kind(), "embedded");
            assert_stores_once_and_refuses_other_content(&store, &record).await;

            let err = store
                .insert(sample_record("1.1.0", Some("sha256:intruder")))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::OwnerMismatch { .. }), "{err}");
            let err = store.insert(sample_record("1.1.0", None)).await.unwrap_err();
            assert!(matches!(err, StoreError::OwnerMismatch { .. }), "{err}");
            assert!(store.follow().await.unwrap().is_none());
        }
        let store = EmbeddedStore::open(&file(&dir)).unwrap();
        assert_eq!(store.load().await.unwrap(), vec![record.clone()]);
        assert_eq!(
            store
                .insert(sample_record("1.1.0", Some("sha256:owner")))
                .await
                .unwrap(),
            Inserted::Created
        );
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(&file(&dir)).unwrap();
        let err = EmbeddedStore::open(&file(&dir)).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("registry.redb") && message.contains("another registry"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(file(&dir).parent().unwrap()).unwrap();
        std::fs::write(
            file(&dir),
            b"not a database, but long enough to look like it might be one",
        )
        .unwrap();
        let err = EmbeddedStore::open(&file(&dir)).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(&file(&dir)).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(CONTRACTS)
                .unwrap()
                .insert("inventory@9.9.9", b"{".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(&file(&dir)).unwrap();
        let err = store.load().await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { key, .. } if key == "inventory@9.9.9"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn inserts_in_one_batch_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&file(&dir)).unwrap();
        // Straight to the writer's batch function, so the batch is known.
        let records: Vec<_> = [
            sample_record("1.0.0", Some("sha256:first")),
            sample_record("1.1.0", Some("sha256:second")),
            sample_record("1.0.0", Some("sha256:first")),
        ]
        .into_iter()
        .map(|record| {
            let json = serde_json::to_vec(&record).unwrap();
            (record, json)
        })
        .collect();
        let answers = commit_batch(&store.db, &records).unwrap();
        assert!(matches!(answers[0], Ok(Inserted::Created)));
        assert!(matches!(answers[1], Err(StoreError::OwnerMismatch { .. })));
        assert!(matches!(answers[2], Ok(Inserted::AlreadyStored)));
        assert_eq!(store.load().await.unwrap(), vec![records[0].0.clone()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_share_commits_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir);
        for (count, first_minor) in [(200, 0), (1_000, 1)] {
            let store = Arc::new(EmbeddedStore::open(&path).unwrap());
            let records: Vec<_> = (0..count)
                .map(|patch| sample_record(&format!("1.{first_minor}.{patch}"), None))
                .collect();
            let started = Instant::now();
            let tasks: Vec<_> = records
                .into_iter()
                .map(|record| {
                    let store = store.clone();
                    tokio::spawn(async move { store.insert(record).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap(), Inserted::Created);
            }
            let elapsed = started.elapsed();
            println!(
                "embedded store: {count} concurrent durable inserts in {elapsed:?} ({:.0}/s)",
                f64::from(count) / elapsed.as_secs_f64()
            );
            drop(store);
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let started = Instant::now();
        let loaded = store.load().await.unwrap();
        println!(
            "embedded store: loaded {} records in {:?}",
            loaded.len(),
            started.elapsed()
        );
        assert_eq!(loaded.len(), 1_200);

        // For comparison: one commit per insert.
        let started = Instant::now();
        for patch in 0..50 {
            store
                .insert(sample_record(&format!("1.2.{patch}"), None))
                .await
                .unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "embedded store: 50 inserts one after the other in {elapsed:?} ({:.0}/s)",
            50.0 / elapsed.as_secs_f64()
        );
    }
}
