//! Where the orchestrator keeps things, all in JetStream: instance state in
//! a KV bucket written with revision compare-and-set, definitions in a KV
//! bucket written create-only, and work items in a work-queue stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use contracts::envelope::headers;
use contracts::orchestrator_api::InstanceState;
use contracts::subjects;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::OrchestratorError;
use crate::patience::{self, SETUP_PATIENCE};
use crate::recent::Recent;
use crate::wire;

/// The bucket of instance states, one key per instance.
pub const INSTANCES_BUCKET: &str = "SOA_WF_INSTANCES";
/// The bucket of loaded definitions, one key per `name@version`.
pub const DEFINITIONS_BUCKET: &str = "SOA_WF_DEFINITIONS";
/// The work-queue stream of instances to drive.
pub const WORK_STREAM: &str = "SOA_WF_WORK";
/// The stream of start messages (JetStream starts).
pub const STARTS_STREAM: &str = "SOA_WF_STARTS";
/// The durable consumer every replica shares on the work stream.
pub const WORK_CONSUMER: &str = "orchestrator";
/// The durable consumer every replica shares on the starts stream.
pub const STARTS_CONSUMER: &str = "orchestrator-starts";

/// How long JetStream drops a repeated work item or start message.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A loaded definition as stored: the document, its digest and the
/// contracts of every service it calls, so the orchestrator runs it without
/// asking the registry again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDefinition {
    /// The definition document.
    pub definition: Value,
    /// Its digest.
    pub digest: String,
    /// When it was loaded, ms since the Unix epoch.
    pub loaded_at_ms: u64,
    /// The contract documents it calls, as the registry served them at load.
    pub contracts: Vec<Value>,
}

/// The outcome of a create-only write.
pub(crate) enum Created<T> {
    /// Written.
    New,
    /// The key held this already.
    Exists(T),
}

/// How far [`Stores::instance_changes`] read.
pub(crate) enum Changes {
    /// Every change before this revision is read.
    ReadTo(u64),
    /// The bucket was made again since: read it again from revision 1.
    Restarted,
}

/// The JetStream handles the orchestrator works with.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) js: jetstream::Context,
    instances: kv::Store,
    definitions: kv::Store,
    /// The instances this process last read or wrote, so a drive can start
    /// from its own last commit without reading.
    recent: Arc<Recent>,
}

impl Stores {
    /// Opens (creating when missing) the buckets and streams, with `replicas`
    /// copies of each on a cluster. A request that timed out (a cluster
    /// electing leaders) is made again for up to [`SETUP_PATIENCE`].
    pub(crate) async fn open(js: jetstream::Context, replicas: usize) -> Result<Self, OrchestratorError> {
        let instances = bucket(
            &js,
            INSTANCES_BUCKET,
            "soabus orchestrator: workflow instances",
            replicas,
        )
        .await?;
        let definitions = bucket(
            &js,
            DEFINITIONS_BUCKET,
            "soabus orchestrator: workflow definitions",
            replicas,
        )
        .await?;
        for (name, subject) in [
            (WORK_STREAM, subjects::ORCHESTRATOR_WORK),
            (STARTS_STREAM, subjects::ORCHESTRATOR_STARTS),
        ] {
            let doing = format!("creating the stream {name}");
            patience::until_done(&doing, SETUP_PATIENCE, || work_queue(&js, name, subject, replicas)).await?;
        }
        Ok(Self {
            js,
            instances,
            definitions,
            recent: Arc::default(),
        })
    }

    /// The durable pull consumer on `stream` shared by every replica,
    /// opened (or created) for up to [`SETUP_PATIENCE`] while requests time
    /// out: the replicas create it at once, and on a cluster its RAFT group
    /// elects a leader first.
    pub(crate) async fn consumer(
        &self,
        stream: &str,
        durable: &str,
        ack_wait: Duration,
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, OrchestratorError> {
        let doing = format!("opening the consumer {durable} on {stream}");
        patience::until_done(&doing, SETUP_PATIENCE, || {
            self.consumer_once(stream, durable, ack_wait, max_ack_pending)
        })
        .await
    }

    async fn consumer_once(
        &self,
        stream: &str,
        durable: &str,
        ack_wait: Duration,
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, OrchestratorError> {
        let doing = || format!("opening the consumer {durable} on {stream}");
        let stream = self
            .js
            .get_stream(stream)
            .await
            .map_err(|error| OrchestratorError::jetstream(doing(), error))?;
        let config = consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            max_ack_pending,
            ..Default::default()
        };
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(durable, config.clone())
            .await
            .map_err(|error| OrchestratorError::jetstream(doing(), error))?;
        // Created earlier with other settings (the ack wait changed between
        // runs): the latest replica's settings apply to all.
        let current = consumer.cached_info().config.clone();
        if current.ack_wait != ack_wait || current.max_ack_pending != max_ack_pending {
            stream
                .update_consumer(config)
                .await
                .map_err(|error| OrchestratorError::jetstream(doing(), error))?;
            consumer = stream
                .get_consumer(durable)
                .await
                .map_err(|error| OrchestratorError::jetstream(doing(), error))?;
        }
        Ok(consumer)
    }

    /// An instance and its revision, as stored now.
    pub(crate) async fn instance(&self, id: &str) -> Result<Option<(InstanceState, u64)>, OrchestratorError> {
        let entry = self
            .instances
            .entry(id)
            .await
            .map_err(|error| OrchestratorError::jetstream(format!("reading instance {id}"), error))?;
        let Some(entry) = entry else {
            self.recent.forget(id);
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            self.recent.forget(id);
            return Ok(None);
        }
        let state = decode_instance(id, &entry.value)?;
        self.recent.remember(id, entry.value, entry.revision);
        Ok(Some((state, entry.revision)))
    }

    /// An instance and its revision as this process last read or wrote it,
    /// if it remembers it: possibly stale (another replica, or a cancel,
    /// wrote since), so only a compare-and-set at its revision, or a read,
    /// confirms it.
    pub(crate) fn remembered_instance(&self, id: &str) -> Option<(InstanceState, u64)> {
        let (value, revision) = self.recent.get(id)?;
        decode_instance(id, &value).ok().map(|state| (state, revision))
    }

    /// Stores a new instance, or finds the one already under its id.
    pub(crate) async fn create_instance(
        &self,
        state: &InstanceState,
    ) -> Result<Created<InstanceState>, OrchestratorError> {
        let value: bytes::Bytes = encode(state)?.into();
        match self.instances.create(&state.id, value.clone()).await {
            Ok(revision) => {
                self.recent.remember(&state.id, value, revision);
                Ok(Created::New)
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => match self.instance(&state.id).await? {
                Some((existing, _)) => Ok(Created::Exists(existing)),
                None => Err(OrchestratorError::jetstream(
                    format!("creating instance {}", state.id),
                    "the key exists but holds no instance",
                )),
            },
            Err(error) => Err(OrchestratorError::jetstream(
                format!("creating instance {}", state.id),
                error,
            )),
        }
    }

    /// Writes `state` if the stored revision is still `revision`: `Ok(None)`
    /// when someone else wrote first (read again and retry).
    pub(crate) async fn update_instance(
        &self,
        state: &InstanceState,
        revision: u64,
    ) -> Result<Option<u64>, OrchestratorError> {
        let value: bytes::Bytes = encode(state)?.into();
        match self.instances.update(&state.id, value.clone(), revision).await {
            Ok(revision) => {
                self.recent.remember(&state.id, value, revision);
                Ok(Some(revision))
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.recent.forget(&state.id);
                Ok(None)
            }
            Err(error) => Err(OrchestratorError::jetstream(
                format!("updating instance {}", state.id),
                error,
            )),
        }
    }

    /// Every stored instance (the latest state of each).
    pub(crate) async fn all_instances(&self) -> Result<Vec<InstanceState>, OrchestratorError> {
        let values = |error| OrchestratorError::jetstream("listing instances", error);
        latest_values(&self.js, INSTANCES_BUCKET, &self.instances, values)
            .await?
            .into_iter()
            .map(|(key, value)| decode_instance(&key, &value))
            .collect()
    }

    /// Reads the instances bucket's changes from revision `from` up to its
    /// last revision now, in order, handing each key with its value
    /// (`None`: deleted) to `visit`. Only each key's latest revision is
    /// stored, so this reads the instances changed since `from`, not every
    /// write. Returns the revision to read from next time, or
    /// [`Changes::Restarted`] when the bucket holds fewer revisions than
    /// were read before (it was made again).
    pub(crate) async fn instance_changes(
        &self,
        from: u64,
        mut visit: impl FnMut(&str, Option<&[u8]>),
    ) -> Result<Changes, OrchestratorError> {
        let fail = |error: String| OrchestratorError::jetstream("reading the instances' changes", error);
        let last = bucket_state(&self.js, INSTANCES_BUCKET, fail).await?.last_sequence;
        if last.saturating_add(1) < from {
            return Ok(Changes::Restarted);
        }
        if last < from {
            return Ok(Changes::ReadTo(from));
        }
        let mut watch = self
            .instances
            .watch_all_from_revision(from)
            .await
            .map_err(|error| fail(error.to_string()))?;
        let mut next = from;
        loop {
            let entry = match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
                Ok(Some(Ok(entry))) => entry,
                Ok(Some(Err(error))) => return Err(fail(error.to_string())),
                // Deleted revisions may leave nothing more to deliver.
                Ok(None) | Err(_) => break,
            };
            next = entry.revision.saturating_add(1);
            match entry.operation {
                kv::Operation::Put => visit(&entry.key, Some(&entry.value)),
                kv::Operation::Delete | kv::Operation::Purge => visit(&entry.key, None),
            }
            if entry.revision >= last || entry.delta == 0 {
                break;
            }
        }
        Ok(Changes::ReadTo(next))
    }

    /// Puts an instance on the work stream; `message_id` drops repeats.
    pub(crate) async fn enqueue(&self, instance: &str, message_id: &str) -> Result<(), OrchestratorError> {
        let mut map = async_nats::HeaderMap::new();
        wire::insert_header(&mut map, headers::MESSAGE_ID, message_id);
        let doing = || format!("queueing instance {instance}");
        self.js
            .publish_with_headers(subjects::ORCHESTRATOR_WORK, map, instance.to_owned().into())
            .await
            .map_err(|error| OrchestratorError::jetstream(doing(), error))?
            .await
            .map_err(|error| OrchestratorError::jetstream(doing(), error))?;
        Ok(())
    }

    /// A stored definition by `name@version`.
    pub(crate) async fn definition(&self, id: &str) -> Result<Option<StoredDefinition>, OrchestratorError> {
        let key = definition_key(id);
        let value = self
            .definitions
            .get(&key)
            .await
            .map_err(|error| OrchestratorError::jetstream(format!("reading definition {id}"), error))?;
        value.map(|value| decode_definition(id, &value)).transpose()
    }

    /// Stores a definition under `name@version` unless the key holds one.
    pub(crate) async fn create_definition(
        &self,
        id: &str,
        stored: &StoredDefinition,
    ) -> Result<Created<StoredDefinition>, OrchestratorError> {
        let key = definition_key(id);
        let value = serde_json::to_vec(stored).map_err(|error| OrchestratorError::Corrupt {
            what: "definition",
            key: id.to_owned(),
            message: error.to_string(),
        })?;
        match self.definitions.create(&key, value.into()).await {
            Ok(_) => Ok(Created::New),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => match self.definition(id).await? {
                Some(existing) => Ok(Created::Exists(existing)),
                None => Err(OrchestratorError::jetstream(
                    format!("storing definition {id}"),
                    "the key exists but holds no definition",
                )),
            },
            Err(error) => Err(OrchestratorError::jetstream(format!("storing definition {id}"), error)),
        }
    }

    /// Every stored definition.
    pub(crate) async fn all_definitions(&self) -> Result<Vec<StoredDefinition>, OrchestratorError> {
        let values = |error| OrchestratorError::jetstream("listing definitions", error);
        latest_values(&self.js, DEFINITIONS_BUCKET, &self.definitions, values)
            .await?
            .into_iter()
            .map(|(key, value)| decode_definition(&key, &value))
            .collect()
    }

    /// A watch on the definitions bucket: every stored one, then new ones.
    pub(crate) async fn watch_definitions(&self) -> Result<kv::Watch, OrchestratorError> {
        self.definitions
            .watch_with_history(">")
            .await
            .map_err(|error| OrchestratorError::jetstream("watching definitions", error))
    }
}

/// Definition keys: `name@1.2.0` → `name.1.2.0` (`@` is not a key character).
fn definition_key(id: &str) -> String {
    id.replace('@', ".")
}

/// Reads a stored definition.
pub(crate) fn decode_definition(key: &str, value: &[u8]) -> Result<StoredDefinition, OrchestratorError> {
    serde_json::from_slice(value).map_err(|error| OrchestratorError::Corrupt {
        what: "definition",
        key: key.to_owned(),
        message: error.to_string(),
    })
}

fn decode_instance(key: &str, value: &[u8]) -> Result<InstanceState, OrchestratorError> {
    serde_json::from_slice(value).map_err(|error| OrchestratorError::Corrupt {
        what: "instance",
        key: key.to_owned(),
        message: error.to_string(),
    })
}

fn encode(state: &InstanceState) -> Result<Vec<u8>, OrchestratorError> {
    serde_json::to_vec(state).map_err(|error| OrchestratorError::Corrupt {
        what: "instance",
        key: state.id.clone(),
        message: error.to_string(),
    })
}

/// The state of a bucket's stream now (the store's own status is the one
/// cached when it was opened).
async fn bucket_state(
    js: &jetstream::Context,
    bucket: &str,
    fail: impl Fn(String) -> OrchestratorError,
) -> Result<stream::State, OrchestratorError> {
    let mut stream = js
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(|error| fail(error.to_string()))?;
    Ok(stream
        .info()
        .await
        .map_err(|error| fail(error.to_string()))?
        .state
        .clone())
}

/// The latest value of every key of a bucket, read in one pass.
async fn latest_values(
    js: &jetstream::Context,
    bucket: &str,
    store: &kv::Store,
    fail: impl Fn(String) -> OrchestratorError,
) -> Result<Vec<(String, bytes::Bytes)>, OrchestratorError> {
    if bucket_state(js, bucket, &fail).await?.messages == 0 {
        return Ok(Vec::new());
    }
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|error| fail(error.to_string()))?;
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
        let entry = match next {
            Ok(Some(Ok(entry))) => entry,
            Ok(Some(Err(error))) => return Err(fail(error.to_string())),
            // Deleted keys may leave nothing to deliver: what came is all there is.
            Ok(None) | Err(_) => break,
        };
        let last = entry.delta == 0;
        if entry.operation == kv::Operation::Put {
            out.push((entry.key, entry.value));
        }
        if last {
            break;
        }
    }
    Ok(out)
}

/// Creates the work-queue stream `name` on `subject`, or raises the
/// existing one to `replicas`.
async fn work_queue(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
    replicas: usize,
) -> Result<(), OrchestratorError> {
    let created = js
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(|error| OrchestratorError::jetstream(format!("creating the stream {name}"), error))?;
    crate::replicas::raise_replicas(js, &created.cached_info().config, replicas)
        .await
        .map_err(|error| OrchestratorError::jetstream(format!("opening the stream {name}"), error))?;
    Ok(())
}

/// Opens the bucket `name`, creating it when missing, for up to
/// [`SETUP_PATIENCE`] while requests time out.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, OrchestratorError> {
    let doing = format!("opening the bucket {name}");
    patience::until_done(&doing, SETUP_PATIENCE, || bucket_once(js, name, description, replicas)).await
}

async fn bucket_once(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, OrchestratorError> {
    if let Ok(store) = js.get_key_value(name).await {
        crate::replicas::raise_replicas(js, &store.stream.cached_info().config, replicas)
            .await
            .map_err(|error| OrchestratorError::jetstream(format!("opening the bucket {name}"), error))?;
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.to_owned(),
        description: description.to_owned(),
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another replica may have created it meanwhile.
        Err(create) => js
            .get_key_value(name)
            .await
            .map_err(|_| OrchestratorError::jetstream(format!("creating the bucket {name}"), create)),
    }
}
