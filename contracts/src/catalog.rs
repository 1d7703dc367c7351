//! Contract documents built from Rust types: a builder that derives each
//! message's schema with schemars and gathers shared types into `$defs`.
//!
//! `soa contract export` writes what this builds to `contracts/catalog/`, and
//! a test fails when the checked-in documents drift from the code.

use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::Value;

use crate::document::{CompatibilityPolicy, ContractDocument, Event, FormatTag, Operation};
use crate::names::{ContractRef, MemberName, NameError, ServiceName, Version};
use crate::operation::{EventType, OperationType};

/// Builds one contract document from Rust message types.
pub struct ContractBuilder {
    document: ContractDocument,
    domain: String,
    generator: SchemaGenerator,
}

/// How an operation behaves beyond its message types.
#[derive(Debug, Clone, Default)]
pub struct OperationSpec<'a> {
    /// What the operation does.
    pub description: &'a str,
    /// Its own error codes.
    pub errors: &'a [&'a str],
    /// Whether repeating a call has the effect of one call.
    pub idempotent: bool,
}

impl ContractBuilder {
    /// Starts a contract for `service` at `version`, with subjects in `domain`.
    pub fn new(domain: &str, service: &str, version: &str, description: &str, owner: &str) -> Result<Self, NameError> {
        let generator = SchemaSettings::draft2020_12()
            .with(|settings| settings.meta_schema = None)
            .with_transform(ConstantsAsEnum)
            .into_generator();
        Ok(Self {
            document: ContractDocument {
                contract: FormatTag,
                service: ServiceName::parse(service)?,
                version: Version::parse(version)?,
                description: description.to_owned(),
                owner: owner.to_owned(),
                tags: Vec::new(),
                compatibility: CompatibilityPolicy::default(),
                operations: Default::default(),
                events: Default::default(),
                consumes: Vec::new(),
                calls: Vec::new(),
                defs: Default::default(),
            },
            domain: domain.to_owned(),
            generator,
        })
    }

    /// Adds search tags.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.document.tags.extend(tags.iter().map(|tag| (*tag).to_owned()));
        self
    }

    /// Sets the compatibility policy (BACKWARD by default).
    pub fn compatibility(mut self, policy: CompatibilityPolicy) -> Self {
        self.document.compatibility = policy;
        self
    }

    /// Adds the operation `Op`, its schemas derived from its request and
    /// response types.
    pub fn operation<Op: OperationType>(mut self, spec: OperationSpec<'_>) -> Result<Self, NameError> {
        let name = MemberName::parse(Op::NAME)?;
        let operation = Operation {
            subject: self.subject(&name)?,
            description: Some(spec.description.to_owned()),
            request: message_schema::<Op::Request>(&mut self.generator),
            response: message_schema::<Op::Response>(&mut self.generator),
            errors: spec.errors.iter().map(|code| (*code).to_owned()).collect(),
            idempotent: spec.idempotent,
        };
        self.document.operations.insert(name, operation);
        Ok(self)
    }

    /// Adds the event `Ev`, its schema derived from its payload type.
    pub fn event<Ev: EventType>(mut self, description: &str) -> Result<Self, NameError> {
        let name = MemberName::parse(Ev::NAME)?;
        let event = Event {
            subject: self.subject(&name)?,
            description: Some(description.to_owned()),
            payload: message_schema::<Ev::Payload>(&mut self.generator),
        };
        self.document.events.insert(name, event);
        Ok(self)
    }

    /// Declares an event of another service this one consumes (`orders@1#placed`).
    pub fn consumes(mut self, reference: &str) -> Result<Self, NameError> {
        self.document.consumes.push(ContractRef::parse(reference)?.into());
        Ok(self)
    }

    /// Declares an operation of another service this one calls.
    pub fn calls(mut self, reference: &str) -> Result<Self, NameError> {
        self.document.calls.push(ContractRef::parse(reference)?);
        Ok(self)
    }

    /// The finished document, with every shared type in `$defs`.
    pub fn build(mut self) -> ContractDocument {
        self.document.defs = self.generator.take_definitions(true).into_iter().collect();
        self.document
    }

    fn subject(&self, name: &MemberName) -> Result<crate::names::Subject, NameError> {
        crate::subjects::member(
            &self.domain,
            &self.document.service,
            self.document.version.major(),
            name,
        )
    }
}

/// Derives a message schema; named types become definitions of the generator
/// and the schema refers to them as `#/$defs/<Name>`.
fn message_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// Rewrites a `oneOf` whose arms are all documented constants (what schemars
/// derives for a unit enum with doc comments) as one `enum`, with the arms'
/// descriptions folded into the schema's description.
///
/// The two mean the same, but `enum` is one lookup where `oneOf` tries every
/// arm, and it reads better in a contract and in a compatibility diff.
#[derive(Debug, Clone)]
struct ConstantsAsEnum;

impl Transform for ConstantsAsEnum {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(object) = schema.as_object_mut() else { return };
        let Some(Value::Array(arms)) = object.get("oneOf") else {
            return;
        };
        let mut values: Vec<Value> = Vec::with_capacity(arms.len());
        let mut notes = Vec::with_capacity(arms.len());
        for arm in arms {
            let Some(arm) = arm.as_object() else { return };
            let plain = arm
                .keys()
                .all(|key| matches!(key.as_str(), "const" | "description" | "type"));
            let (Some(Value::String(value)), true) = (arm.get("const"), plain) else {
                return;
            };
            if arm.get("type").is_some_and(|kind| kind != "string") || values.iter().any(|seen| seen == value.as_str())
            {
                return;
            }
            values.push(Value::String(value.clone()));
            if let Some(Value::String(description)) = arm.get("description") {
                notes.push(format!("`{value}`: {}", description.trim_end_matches('.')));
            }
        }
        object.remove("oneOf");
        object.insert("type".to_owned(), Value::String("string".to_owned()));
        object.insert("enum".to_owned(), Value::Array(values));
        if !notes.is_empty() {
            let lead = object
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_end_matches('.');
            let description = if lead.is_empty() {
                notes.join("; ")
            } else {
                format!("{lead}: {}.", notes.join("; "))
            };
            object.insert("description".to_owned(), Value::String(description));
        }
    }
}

/// The file name a document is exported to: `<service>.v<major>.json`.
pub fn file_name(document: &ContractDocument) -> String {
    format!("{}.v{}.json", document.service, document.version.major())
}

/// Every document checked in under `contracts/catalog/`: the shop's five
/// services, the contract of its `fulfilment` workflow (generated from the
/// definition, as the orchestrator publishes it), its `order-view` read
/// model and the registry's own.
pub fn documents() -> Result<Vec<ContractDocument>, NameError> {
    let mut documents = crate::shop::contracts()?;
    documents.push(crate::shop::fulfilment::contract()?);
    documents.push(crate::shop::order_view::contract()?);
    documents.push(crate::registry_api::contract()?);
    Ok(documents)
}
