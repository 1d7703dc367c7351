//! The registry's JetStream KV store against a real nats-server: create-only
//! writes, conflicts and owners, reloading, one replica following another,
//! and how long a load of a few thousand records takes.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use contracts::{ContractDocument, Limits, Version};
use futures::StreamExt;
use registry::store::{ContractRecord, Inserted, KvStore, Store, StoreError};
use tests::NatsServer;

const BUCKET: &str = "soa_registry_test";

fn record(version: &str, owner: Option<&str>) -> ContractRecord {
    let text = include_str!("../../../contracts/catalog/inventory.v1.json");
    let mut document = ContractDocument::parse("inventory.v1.json", text, &Limits::default()).unwrap();
    document.version = Version::parse(version).unwrap();
    ContractRecord {
        digest: document.digest(),
        document,
        registered_at_ms: 1_700_000_000_000,
        owner: owner.map(str::to_owned),
    }
}

async fn open(server: &NatsServer) -> KvStore {
    let js = jetstream::new(server.client().await.unwrap());
    KvStore::open(js, BUCKET, 1).await.unwrap()
}

#[tokio::test]
async fn kv_store_writes_once_refuses_conflicts_and_reloads_after_a_restart() {
    tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let original = record("1.0.0", Some("sha256:owner"));
    let build = record("1.1.0+build.7", Some("sha256:owner"));
    {
        let store = open(&server).await;
        assert_eq!(store.kind(), "kv");
        assert_eq!(store.bucket(), BUCKET);
        assert_eq!(store.insert(original.clone()).await.unwrap(), Inserted::Created);
        assert_eq!(store.insert(original.clone()).await.unwrap(), Inserted::AlreadyStored);
        assert_eq!(store.insert(build.clone()).await.unwrap(), Inserted::Created);

        let mut other = original.clone();
        other.document.description = "Something else".to_owned();
        other.digest = other.document.digest();
        let err = store.insert(other).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { stored, .. } if *stored == original.digest),
            "{err}"
        );

        for owner in [Some("sha256:intruder"), None] {
            let err = store.insert(record("2.0.0", owner)).await.unwrap_err();
            assert!(matches!(err, StoreError::OwnerMismatch { .. }), "{err}");
        }
    }

    server.restart().await.unwrap();
    let store = open(&server).await;
    let mut loaded = store.load().await.unwrap();
    loaded.sort_by_key(ContractRecord::id);
    assert_eq!(loaded, vec![original, build]);
}

#[tokio::test]
async fn a_replica_follows_what_another_one_writes() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let writer = open(&server).await;
    let follower = open(&server).await;
    let before = record("1.0.0", None);
    writer.insert(before.clone()).await.unwrap();

    assert_eq!(follower.load().await.unwrap(), vec![before]);
    let mut followed = follower
        .follow()
        .await
        .unwrap()
        .expect("the KV store follows its bucket");
    let after = record("1.1.0", None);
    writer.insert(after.clone()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), followed.next())
        .await
        .expect("the follower hears of the new record")
        .expect("the stream goes on")
        .unwrap();
    assert_eq!(next, after);
}

#[tokio::test]
async fn a_load_of_two_thousand_records_is_quick() {
    tests::init_tracing();
    const COUNT: u64 = 2_000;
    let server = NatsServer::start().await.unwrap();
    let store = open(&server).await;
    let base = record("1.0.0", None);
    let records: Vec<_> = (0..COUNT)
        .map(|patch| {
            let mut record = base.clone();
            record.document.version = Version::new(1, patch / 100, patch % 100);
            record.digest = record.document.digest();
            record
        })
        .collect();

    let started = Instant::now();
    let inserted: Vec<_> = futures::stream::iter(records)
        .map(|record| store.insert(record))
        .buffer_unordered(64)
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert!(
        inserted
            .into_iter()
            .all(|inserted| matches!(inserted, Ok(Inserted::Created)))
    );
    println!(
        "kv store: {COUNT} inserts (64 at a time) in {elapsed:?} ({:.0}/s)",
        COUNT as f64 / elapsed.as_secs_f64()
    );

    let reopened = open(&server).await;
    let started = Instant::now();
    let loaded = reopened.load().await.unwrap();
    println!("kv store: loaded {} records in {:?}", loaded.len(), started.elapsed());
    assert_eq!(loaded.len(), COUNT as usize);
}
