//! One stored contract version as the catalogue keeps it: the record's JSON
//! as the store holds it, LZ4-compressed, plus the few facts the indexes and
//! listings need, rather than the parsed document. A parsed document (its
//! schemas as `serde_json::Value` trees) takes several times the memory of
//! its text, and with tens of thousands of versions that decides whether the
//! registry fits in a few hundred megabytes. Whole documents are
//! decompressed and parsed again when a request needs one (a few
//! microseconds for the decompression).
//!
//! Only versions that are or were a head (the latest of their major) carry
//! a summary: the indexes, listings and searches read heads only, so a
//! catalogue loaded from the store summarizes its heads and nothing else.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use contracts::{ContractDocument, ContractId, ErrorBody, ErrorCode, MemberName, Subject, Version};

use super::MemberKey;
use crate::store::{ContractRecord, RawRecord, StoreError};

/// One stored contract version.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) id: ContractId,
    pub(crate) digest: String,
    pub(crate) registered_at_ms: u64,
    /// The owner credential's digest.
    pub(crate) owner: Option<String>,
    /// For heads (and versions stored since the load); `None` for older
    /// versions loaded from the store.
    summary: Option<Box<Summary>>,
    /// The record as JSON (the store's bytes), LZ4-compressed.
    json: Box<[u8]>,
}

/// A loaded record read up to its identity, before the catalogue knows
/// whether it is a head.
pub(crate) struct Loaded {
    pub(crate) id: ContractId,
    key: String,
    digest: String,
    registered_at_ms: u64,
    owner: Option<String>,
    json: Vec<u8>,
}

/// The identity fields of a document.
#[derive(Deserialize)]
struct Identity {
    service: contracts::ServiceName,
    version: Version,
}

/// A record's JSON read without building its document.
#[derive(Deserialize)]
struct RecordView<'a> {
    #[serde(borrow)]
    document: &'a RawValue,
    digest: String,
    registered_at_ms: u64,
    #[serde(default)]
    owner: Option<String>,
}

/// What listings, searches and indexes read of a version.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) description: String,
    /// The owning team, as the document names it.
    pub(crate) team: String,
    pub(crate) tags: Vec<String>,
    pub(crate) operations: Vec<(MemberName, Subject)>,
    pub(crate) events: Vec<(MemberName, Subject)>,
    pub(crate) consumes: Vec<MemberKey>,
    pub(crate) calls: Vec<MemberKey>,
    /// Every property name its schemas declare.
    pub(crate) fields: Vec<String>,
    /// Lowercased name, description, tags and member names and
    /// descriptions, for text search.
    pub(crate) search_text: String,
}

/// The summary of a version that has none (an older version loaded from
/// the store): empty, since nothing reads it.
static NO_SUMMARY: std::sync::LazyLock<Summary> = std::sync::LazyLock::new(Summary::default);

impl Loaded {
    /// Reads a raw record's identity, digest and owner, without parsing its document.
    pub(crate) fn read(raw: RawRecord) -> Result<Self, StoreError> {
        let corrupt = |err: serde_json::Error| StoreError::Corrupt {
            key: raw.key.clone(),
            reason: err.to_string(),
        };
        let view: RecordView<'_> = serde_json::from_slice(&raw.json).map_err(corrupt)?;
        let identity: Identity = serde_json::from_str(view.document.get()).map_err(corrupt)?;
        let (digest, registered_at_ms, owner) = (view.digest, view.registered_at_ms, view.owner);
        Ok(Self {
            id: ContractId {
                service: identity.service,
                version: identity.version,
            },
            key: raw.key,
            digest,
            registered_at_ms,
            owner,
            json: raw.json,
        })
    }

    /// Keeps the record, with a summary when it is a head (its document is
    /// then parsed once).
    pub(crate) fn keep(self, head: bool) -> Result<Stored, StoreError> {
        let summary = if head {
            let corrupt = |err: serde_json::Error| StoreError::Corrupt {
                key: self.key.clone(),
                reason: err.to_string(),
            };
            let view: RecordView<'_> = serde_json::from_slice(&self.json).map_err(corrupt)?;
            let document: ContractDocument = serde_json::from_str(view.document.get()).map_err(corrupt)?;
            Some(Box::new(Summary::of(&document)))
        } else {
            None
        };
        Ok(Stored {
            id: self.id,
            digest: self.digest,
            registered_at_ms: self.registered_at_ms,
            owner: self.owner,
            summary,
            json: lz4_flex::compress_prepend_size(&self.json).into_boxed_slice(),
        })
    }
}

impl Stored {
    /// Keeps a record just stored.
    pub(crate) fn new(record: ContractRecord) -> Self {
        // Plain data with string keys always serializes.
        let json = serde_json::to_vec(&record).unwrap_or_default();
        Self {
            id: record.document.id(),
            summary: Some(Box::new(Summary::of(&record.document))),
            digest: record.digest,
            registered_at_ms: record.registered_at_ms,
            owner: record.owner,
            json: lz4_flex::compress_prepend_size(&json).into_boxed_slice(),
        }
    }

    /// What the indexes read of this version (empty for an older version
    /// loaded from the store, which no index reads).
    pub(crate) fn summary(&self) -> &Summary {
        self.summary.as_deref().unwrap_or(&NO_SUMMARY)
    }

    /// The record's JSON, decompressed.
    fn json(&self) -> Result<Vec<u8>, ErrorBody> {
        lz4_flex::decompress_size_prepended(&self.json).map_err(|err| {
            tracing::error!(contract = %self.id, error = %err, "A stored document no longer decompresses.");
            ErrorBody::new(
                ErrorCode::Internal,
                format!("the stored document of {} cannot be read", self.id),
            )
        })
    }

    /// The version.
    pub(crate) fn version(&self) -> &Version {
        &self.id.version
    }

    /// The whole document, parsed from the kept text.
    pub(crate) fn document(&self) -> Result<ContractDocument, ErrorBody> {
        let json = self.json()?;
        let parsed = serde_json::from_slice::<RecordView<'_>>(&json)
            .and_then(|view| serde_json::from_str::<ContractDocument>(view.document.get()));
        parsed.map_err(|err| {
            tracing::error!(contract = %self.id, error = %err, "A stored document no longer parses.");
            ErrorBody::new(
                ErrorCode::Internal,
                format!("the stored document of {} cannot be read", self.id),
            )
        })
    }

    /// The JSON of a `GetResponse` for this version, from the kept bytes.
    pub(crate) fn response_json(&self) -> Result<Vec<u8>, ErrorBody> {
        #[derive(serde::Serialize)]
        struct Response<'a> {
            document: &'a RawValue,
            digest: &'a str,
            registered_at_ms: u64,
        }
        let unreadable = |err: serde_json::Error| {
            tracing::error!(contract = %self.id, error = %err, "A stored document no longer parses.");
            ErrorBody::new(
                ErrorCode::Internal,
                format!("the stored document of {} cannot be read", self.id),
            )
        };
        let json = self.json()?;
        let view: RecordView<'_> = serde_json::from_slice(&json).map_err(unreadable)?;
        serde_json::to_vec(&Response {
            document: view.document,
            digest: &self.digest,
            registered_at_ms: self.registered_at_ms,
        })
        .map_err(unreadable)
    }

    /// The record as a store keeps it.
    #[cfg(test)]
    pub(crate) fn record(&self) -> Result<ContractRecord, ErrorBody> {
        Ok(ContractRecord {
            document: self.document()?,
            digest: self.digest.clone(),
            registered_at_ms: self.registered_at_ms,
            owner: self.owner.clone(),
        })
    }
}

impl Summary {
    fn of(document: &ContractDocument) -> Self {
        let mut fields = BTreeSet::new();
        for (_, schema) in document.messages() {
            collect_property_names(schema, &mut fields);
        }
        for schema in document.defs.values() {
            collect_property_names(schema, &mut fields);
        }
        let mut search_text = format!("{} {}", document.service, document.description);
        for tag in &document.tags {
            search_text.push(' ');
            search_text.push_str(tag);
        }
        let members = document
            .operations
            .iter()
            .map(|(name, operation)| (name, operation.description.as_deref()))
            .chain(
                document
                    .events
                    .iter()
                    .map(|(name, event)| (name, event.description.as_deref())),
            );
        for (name, description) in members {
            search_text.push(' ');
            search_text.push_str(name.as_str());
            if let Some(description) = description {
                search_text.push(' ');
                search_text.push_str(description);
            }
        }
        Self {
            description: document.description.clone(),
            team: document.owner.clone(),
            tags: document.tags.clone(),
            operations: document
                .operations
                .iter()
                .map(|(name, operation)| (name.clone(), operation.subject.clone()))
                .collect(),
            events: document
                .events
                .iter()
                .map(|(name, event)| (name.clone(), event.subject.clone()))
                .collect(),
            consumes: document
                .consumes
                .iter()
                .map(|c| (c.event.service.clone(), c.event.major, c.event.member.clone()))
                .collect(),
            calls: document
                .calls
                .iter()
                .map(|c| (c.service.clone(), c.major, c.member.clone()))
                .collect(),
            fields: fields.into_iter().collect(),
            search_text: search_text.to_lowercase(),
        }
    }

    /// True when the version declares an operation named `name`.
    pub(crate) fn has_operation(&self, name: &MemberName) -> bool {
        self.operations.iter().any(|(member, _)| member == name)
    }

    /// True when the version declares an event named `name`.
    pub(crate) fn has_event(&self, name: &MemberName) -> bool {
        self.events.iter().any(|(member, _)| member == name)
    }
}

/// Every name under `properties` anywhere in `schema`.
fn collect_property_names(schema: &Value, names: &mut BTreeSet<String>) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object {
                if key == "properties"
                    && let Value::Object(properties) = value
                {
                    for (name, property) in properties {
                        names.insert(name.clone());
                        collect_property_names(property, names);
                    }
                    continue;
                }
                collect_property_names(value, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_property_names(item, names)),
        _ => {}
    }
}
