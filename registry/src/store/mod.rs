//! Where the registry keeps contract versions: durable before a write is
//! acknowledged, read back whole on start to rebuild the catalogue.
//!
//! Three stores implement [`Store`]:
//! - [`EmbeddedStore`] (the default): a redb file under the data directory,
//!   nothing to set up; concurrent writes share one durable commit.
//! - [`KvStore`]: a JetStream KV bucket, so several registry replicas share
//!   one state on a NATS cluster; writes are create-only (revision
//!   compare-and-set) and each replica follows the bucket with a watch.
//! - [`MemoryStore`]: for tests; forgets everything when dropped.
//!
//! Only contract versions and service owners are stored. Live instances are
//! soft state: they beat every few seconds, so a restarted registry learns
//! them again within one heartbeat interval.

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use contracts::{ContractDocument, ContractId, ServiceName};

mod embedded;
mod kv;
mod memory;
#[cfg(test)]
mod test_support;

pub use embedded::EmbeddedStore;
pub use kv::KvStore;
pub use memory::MemoryStore;

/// One stored contract version. Immutable once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// The document.
    pub document: ContractDocument,
    /// The content digest of its canonical JSON (`ContractDocument::digest`).
    pub digest: String,
    /// When it was registered, in milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
    /// The service owner's credential as a digest (`sha256:<hex>`), or
    /// `None` when the first registration presented none. Every record of a
    /// service carries the same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ContractRecord {
    /// `service@version`.
    pub fn id(&self) -> ContractId {
        self.document.id()
    }
}

/// One stored record as its JSON bytes (the serialized [`ContractRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The store's key for it, to name it in errors.
    pub key: String,
    /// The record as JSON.
    pub json: Vec<u8>,
}

impl RawRecord {
    /// The bytes a store keeps for `record`, under `key`.
    pub fn encode(key: String, record: &ContractRecord) -> Result<Self, StoreError> {
        serde_json::to_vec(record)
            .map(|json| Self { key: key.clone(), json })
            .map_err(|err| StoreError::Corrupt {
                key,
                reason: format!("cannot be encoded: {err}"),
            })
    }

    /// The record, parsed.
    pub fn parse(&self) -> Result<ContractRecord, StoreError> {
        serde_json::from_slice(&self.json).map_err(|err| StoreError::Corrupt {
            key: self.key.clone(),
            reason: err.to_string(),
        })
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The record is new and now durable.
    Created,
    /// The same record (same id and digest) was already stored; nothing changed.
    AlreadyStored,
}

/// Why a store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another record is stored under the same `service@version`.
    #[error("{id} is already stored with digest {stored}; a version is immutable once stored")]
    Conflict {
        /// The contract version.
        id: ContractId,
        /// The digest already stored.
        stored: String,
    },
    /// The service is owned by another credential.
    #[error("service {service} is owned by another credential")]
    OwnerMismatch {
        /// The service.
        service: ServiceName,
    },
    /// A stored record could not be read back: the store is damaged or was
    /// written by an incompatible version.
    #[error("stored record {key} cannot be read: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be reached or written (disk, NATS); nothing was
    /// acknowledged.
    #[error("the {store} store failed: {reason}")]
    Unavailable {
        /// Which store.
        store: &'static str,
        /// What failed.
        reason: String,
    },
}

/// A place the registry keeps contract records.
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and messages: `embedded`, `kv`, `memory`.
    fn kind(&self) -> &'static str;

    /// Every stored record as the JSON the store holds, to rebuild the
    /// catalogue on start: parsing is left to the catalogue, which keeps the
    /// bytes instead of parsed documents.
    fn load_raw(&self) -> BoxFuture<'_, Result<Vec<RawRecord>, StoreError>>;

    /// Every stored record, parsed.
    fn load(&self) -> BoxFuture<'_, Result<Vec<ContractRecord>, StoreError>> {
        async move { self.load_raw().await?.iter().map(RawRecord::parse).collect() }.boxed()
    }

    /// Stores `record` durably before returning. Refuses a different record
    /// under the same id ([`StoreError::Conflict`]) and a record whose owner
    /// differs from the one stored for its service
    /// ([`StoreError::OwnerMismatch`]), atomically with the write.
    fn insert(&self, record: ContractRecord) -> BoxFuture<'_, Result<Inserted, StoreError>>;

    /// Records written by someone else (another replica) after the last
    /// [`Store::load`], as they arrive; `None` for stores only this process
    /// writes. Records this process inserted may come back too (the catalogue
    /// ignores what it already holds). The stream ends when the connection
    /// closes for good.
    #[allow(
        clippy::type_complexity,
        reason = "the trait's signature is fixed; every store spells it out"
    )]
    fn follow(
        &self,
    ) -> BoxFuture<'_, Result<Option<BoxStream<'static, Result<ContractRecord, StoreError>>>, StoreError>>;
}

/// What an insert does, decided from what is stored: `stored_owner` is the
/// owner entry of the record's service (`None` when the service has none yet)
/// and `stored_digest` the digest stored under the record's id. The owner is
/// checked first, so a credential that does not own the service learns
/// nothing more than that.
fn check_insert(
    record: &ContractRecord,
    stored_owner: Option<&Option<String>>,
    stored_digest: Option<&str>,
) -> Result<Inserted, StoreError> {
    if let Some(owner) = stored_owner
        && *owner != record.owner
    {
        return Err(StoreError::OwnerMismatch {
            service: record.document.service.clone(),
        });
    }
    match stored_digest {
        None => Ok(Inserted::Created),
        Some(stored) if stored == record.digest => Ok(Inserted::AlreadyStored),
        Some(stored) => Err(StoreError::Conflict {
            id: record.id(),
            stored: stored.to_owned(),
        }),
    }
}

/// The part of a stored record that an insert compares: read without parsing
/// the whole document.
#[derive(Deserialize)]
struct StoredDigest {
    digest: String,
}

/// An error with its causes, for [`StoreError::Unavailable`]'s reason.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
