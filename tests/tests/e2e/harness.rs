//! Tests of the test harness itself: the spawned nats-server works, persists and is cleaned up.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bus_services::server_binary::ServerBinaryError;
use futures::StreamExt;
use tests::harness::{HarnessError, NatsServer};

/// How long a test waits for a message or a reconnection before it fails.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_client_receives_what_it_publishes() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let client = server.client().await.unwrap();

    let mut subscriber = client.subscribe("harness.greeting").await.unwrap();
    client.publish("harness.greeting", "hello".into()).await.unwrap();
    client.flush().await.unwrap();

    let message = tokio::time::timeout(WAIT, subscriber.next()).await.unwrap().unwrap();
    assert_eq!(message.subject.as_str(), "harness.greeting");
    assert_eq!(message.payload.as_ref(), b"hello");
}

#[tokio::test]
async fn key_value_buckets_store_and_watch_values() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let jetstream = jetstream::new(server.client().await.unwrap());
    let store = jetstream
        .create_key_value(kv::Config {
            bucket: "harness".to_owned(),
            history: 5,
            ..Default::default()
        })
        .await
        .unwrap();

    // The watcher starts before the put, so it must see the put as a new value.
    let mut watcher = store.watch("colour").await.unwrap();
    store.put("colour", "blue".into()).await.unwrap();

    assert_eq!(store.get("colour").await.unwrap().unwrap().as_ref(), b"blue");
    let entry = tokio::time::timeout(WAIT, watcher.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(entry.key, "colour");
    assert_eq!(entry.value.as_ref(), b"blue");
    assert_eq!(entry.operation, kv::Operation::Put);
}

#[tokio::test]
async fn a_restarted_server_keeps_its_port_and_its_store() {
    tests::init_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let port = server.port();
    let old_client = server.client().await.unwrap();
    let store = jetstream::new(old_client.clone())
        .create_key_value(kv::Config {
            bucket: "durable".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    store.put("answer", "42".into()).await.unwrap();

    server.stop().unwrap();
    assert!(!server.is_running());
    assert!(matches!(server.client().await, Err(HarnessError::Stopped { .. })));
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert!(server.is_running());

    // A new client finds the value in the store that survived the restart.
    let new_store = jetstream::new(server.client().await.unwrap())
        .get_key_value("durable")
        .await
        .unwrap();
    assert_eq!(new_store.get("answer").await.unwrap().unwrap().as_ref(), b"42");

    // The old client reconnects by itself and sees the same value.
    tokio::time::timeout(WAIT, async {
        while old_client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(store.get("answer").await.unwrap().unwrap().as_ref(), b"42");
}

#[tokio::test]
async fn parallel_servers_get_their_own_ports() {
    tests::init_tracing();
    let (first, second) = tokio::join!(NatsServer::start(), NatsServer::start());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first.port(), second.port());
    assert_ne!(first.name(), second.name());

    // Each answers on its own port: a message published on one is not seen on the other.
    let first_client = first.client().await.unwrap();
    let second_client = second.client().await.unwrap();
    let mut on_second = second_client.subscribe("harness.where").await.unwrap();
    first_client.publish("harness.where", "first".into()).await.unwrap();
    first_client.flush().await.unwrap();
    second_client.publish("harness.where", "second".into()).await.unwrap();
    second_client.flush().await.unwrap();
    let message = tokio::time::timeout(WAIT, on_second.next()).await.unwrap().unwrap();
    assert_eq!(message.payload.as_ref(), b"second");
}

#[tokio::test]
async fn a_server_older_than_2_10_is_refused_with_a_clear_message() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    tests::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("nats-server");
    {
        let mut file = std::fs::File::create(&fake).unwrap();
        file.write_all(b"#!/bin/sh\necho 'nats-server: v2.9.10'\n").unwrap();
        file.set_permissions(std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let error = NatsServer::builder().binary(&fake).start().await.unwrap_err();

    assert!(
        matches!(error, HarnessError::Binary(ServerBinaryError::UnusableBinary { .. })),
        "{error:?}"
    );
    let message = error.to_string();
    for expected in [
        fake.to_string_lossy().as_ref(),
        "2.9.10",
        "too old",
        "2.10.0 or newer",
        "scripts/install-nats-server",
    ] {
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[tokio::test]
async fn dropping_a_server_removes_its_directory() {
    tests::init_tracing();
    if std::env::var_os(tests::harness::LOG_ENV_VAR).is_some() {
        // With logs asked for, the directory is kept on purpose.
        return;
    }
    let server = NatsServer::start().await.unwrap();
    let store_dir = server.store_dir();
    let log_file = server.log_file();
    assert!(log_file.is_file());
    drop(server);
    assert!(!store_dir.exists());
    assert!(!log_file.exists());
}
