//! Contract documents built from Rust types: a builder that derives each
//! message's schema with schemars and gathers shared types into `$defs`.
//!
//! `soa contract export` writes what this builds to `contracts/catalog/`, and
//! a test fails when the checked-in documents drift from the code.

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::Value;

use crate::document::{CompatibilityPolicy, ContractDocument, Event, FormatTag, Operation};
use crate::names::{ContractRef, MemberName, NameError, ServiceName, Version};

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

    /// Adds an operation whose request and response are `Request` and `Response`.
    pub fn operation<Request: JsonSchema, Response: JsonSchema>(
        mut self,
        name: &str,
        spec: OperationSpec<'_>,
    ) -> Result<Self, NameError> {
        let name = MemberName::parse(name)?;
        let operation = Operation {
            subject: self.subject(&name)?,
            description: Some(spec.description.to_owned()),
            request: message_schema::<Request>(&mut self.generator),
            response: message_schema::<Response>(&mut self.generator),
            errors: spec.errors.iter().map(|code| (*code).to_owned()).collect(),
            idempotent: spec.idempotent,
        };
        self.document.operations.insert(name, operation);
        Ok(self)
    }

    /// Adds an event whose payload is `Payload`.
    pub fn event<Payload: JsonSchema>(mut self, name: &str, description: &str) -> Result<Self, NameError> {
        let name = MemberName::parse(name)?;
        let event = Event {
            subject: self.subject(&name)?,
            description: Some(description.to_owned()),
            payload: message_schema::<Payload>(&mut self.generator),
        };
        self.document.events.insert(name, event);
        Ok(self)
    }

    /// Declares an event of another service this one consumes (`orders@1#placed`).
    pub fn consumes(mut self, reference: &str) -> Result<Self, NameError> {
        self.document.consumes.push(ContractRef::parse(reference)?);
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
        crate::subjects::member(&self.domain, &self.document.service, self.document.version.major(), name)
    }
}

/// Derives a message schema; named types become definitions of the generator
/// and the schema refers to them as `#/$defs/<Name>`.
fn message_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// The file name a document is exported to: `<service>.v<major>.json`.
pub fn file_name(document: &ContractDocument) -> String {
    format!("{}.v{}.json", document.service, document.version.major())
}
