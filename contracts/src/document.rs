//! The contract document model: one service version's operations, events,
//! dependencies and shared schema definitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names::{ContractId, ContractRef, MemberName, ServiceName, Subject, Version};

/// The format tag every contract document carries in its `contract` field.
pub const FORMAT_TAG: &str = "soabus/v1";

/// The JSON Schema dialect of every payload schema in a contract.
pub const SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One version of one service's contract, as published to the registry.
///
/// Field order here is the order in which exported documents are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractDocument {
    /// Always [`FORMAT_TAG`].
    pub contract: FormatTag,
    /// The service this contract belongs to.
    pub service: ServiceName,
    /// The version of this contract; its major is part of every subject.
    pub version: Version,
    /// What the service does, in a sentence.
    pub description: String,
    /// The team that owns the service.
    pub owner: String,
    /// Free tags to search by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How later versions of this major must stay compatible with this one.
    #[serde(default)]
    pub compatibility: CompatibilityPolicy,
    /// Request-reply operations, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operations: BTreeMap<MemberName, Operation>,
    /// Events the service publishes, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub events: BTreeMap<MemberName, Event>,
    /// Events of other services this service consumes, each with the
    /// schema it expects of them when declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumes: Vec<Consumption>,
    /// Operations of other services this service calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<ContractRef>,
    /// Schemas shared by this contract's messages and reusable by other
    /// contracts as `soa://<service>@<major>#/$defs/<Name>`.
    #[serde(rename = "$defs", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defs: BTreeMap<String, Value>,
}

/// The `contract` field: a marker that names the document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatTag;

impl Serialize for FormatTag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(FORMAT_TAG)
    }
}

impl<'de> Deserialize<'de> for FormatTag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        if text == FORMAT_TAG {
            Ok(Self)
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown contract format {text:?}; this version of soabus reads {FORMAT_TAG:?}"
            )))
        }
    }
}

/// A request-reply operation on its own subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The subject requests are sent to: `<domain>.<service>.v<major>.<name>`.
    pub subject: Subject,
    /// What the operation does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the request payload.
    pub request: Value,
    /// JSON Schema of the successful response payload.
    pub response: Value,
    /// The operation's own error codes, beyond the common ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// True when calling twice with the same request has the effect of
    /// calling once, so clients may retry it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// An event the service publishes to a JetStream stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The subject the event is published on.
    pub subject: Subject,
    /// What happened when this event is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the event payload.
    pub payload: Value,
}

/// How a new version within a major must relate to earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityPolicy {
    /// No check.
    None,
    /// New readers accept what old writers sent (checked against the last version).
    #[default]
    Backward,
    /// Old readers accept what new writers send (checked against the last version).
    Forward,
    /// Both backward and forward (checked against the last version).
    Full,
    /// Backward, against every earlier version of the major.
    BackwardTransitive,
    /// Forward, against every earlier version of the major.
    ForwardTransitive,
    /// Full, against every earlier version of the major.
    FullTransitive,
}

impl std::fmt::Display for CompatibilityPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::Forward => "FORWARD",
            Self::Full => "FULL",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::FullTransitive => "FULL_TRANSITIVE",
        })
    }
}

/// An event this service consumes: `"orders@1#placed"`, or
/// `{"event": "orders@1#placed", "expects": {schema}}` when the consumer
/// declares what it relies on, so the registry can tell the producer when a
/// change would break it.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumption {
    /// The event consumed.
    pub event: ContractRef,
    /// The schema the consumer expects the event to satisfy, if declared;
    /// `$ref`s in it resolve against the consumer's document.
    pub expects: Option<Value>,
}

/// The two spellings of a consumption on the wire.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ConsumptionForm {
    Plain(ContractRef),
    Declared {
        event: ContractRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expects: Option<Value>,
    },
}

impl Serialize for Consumption {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.expects {
            None => ConsumptionForm::Plain(self.event.clone()),
            Some(expects) => ConsumptionForm::Declared {
                event: self.event.clone(),
                expects: Some(expects.clone()),
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Consumption {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match ConsumptionForm::deserialize(deserializer)? {
            ConsumptionForm::Plain(event) => Self { event, expects: None },
            ConsumptionForm::Declared { event, expects } => Self { event, expects },
        })
    }
}

impl From<ContractRef> for Consumption {
    fn from(event: ContractRef) -> Self {
        Self { event, expects: None }
    }
}

/// Which message of a contract a schema belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKey {
    /// The request of an operation.
    Request(MemberName),
    /// The response of an operation.
    Response(MemberName),
    /// The payload of an event.
    Event(MemberName),
}

impl MessageKey {
    /// The JSON pointer of this message's schema inside the contract document.
    pub fn pointer(&self) -> String {
        match self {
            Self::Request(name) => format!("/operations/{name}/request"),
            Self::Response(name) => format!("/operations/{name}/response"),
            Self::Event(name) => format!("/events/{name}/payload"),
        }
    }
}

impl std::fmt::Display for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request(name) => write!(f, "request of {name}"),
            Self::Response(name) => write!(f, "response of {name}"),
            Self::Event(name) => write!(f, "event {name}"),
        }
    }
}

impl ContractDocument {
    /// `service@version` of this document.
    pub fn id(&self) -> ContractId {
        ContractId {
            service: self.service.clone(),
            version: self.version.clone(),
        }
    }

    /// Every message this contract declares, with its schema.
    pub fn messages(&self) -> impl Iterator<Item = (MessageKey, &Value)> {
        let operations = self.operations.iter().flat_map(|(name, operation)| {
            [
                (MessageKey::Request(name.clone()), &operation.request),
                (MessageKey::Response(name.clone()), &operation.response),
            ]
        });
        let events = self
            .events
            .iter()
            .map(|(name, event)| (MessageKey::Event(name.clone()), &event.payload));
        operations.chain(events)
    }

    /// The schema of one message, if the contract declares it.
    pub fn message_schema(&self, key: &MessageKey) -> Option<&Value> {
        match key {
            MessageKey::Request(name) => self.operations.get(name).map(|op| &op.request),
            MessageKey::Response(name) => self.operations.get(name).map(|op| &op.response),
            MessageKey::Event(name) => self.events.get(name).map(|event| &event.payload),
        }
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        // Serializing plain data with string keys into a Value cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The document as pretty JSON with a trailing newline, as it is written
    /// to `contracts/catalog/`.
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The content digest: `sha256:<hex>` of the canonical JSON (keys sorted,
    /// no insignificant whitespace). Equal documents have equal digests.
    pub fn digest(&self) -> String {
        crate::canonical::digest(&self.to_value())
    }
}
