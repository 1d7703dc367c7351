//! AsyncAPI 3.0.0 documents of contracts: one per service version
//! ([`service_document`]) or one for the whole system ([`system_document`]),
//! and their validation against the official AsyncAPI 3.0.0 JSON Schema
//! ([`validate`], vendored in `registry/schema/`).
//!
//! How soabus maps onto AsyncAPI:
//! - one `nats` server; its host is given, or a `{host}` variable;
//! - each operation is a `receive` operation on a channel whose address is
//!   its subject, served in the NATS queue group named after the service
//!   (`bindings.nats.queue`); its `reply` goes to a channel with a `null`
//!   address, the requester's inbox, and is either the response or an error
//!   (the NATS micro error headers and the soabus error body);
//! - each event is a `send` operation on its subject's channel, which names
//!   the JetStream stream in `x-soa-stream`;
//! - each consumed event is a `receive` operation on the producer's channel,
//!   and each called operation a `send` operation with a reply on the
//!   callee's channels; both need the other contract, and are left out with
//!   a warning without it;
//! - every message carries the soabus headers and the correlation id;
//! - `#/$defs/X` and `soa://service@major#/$defs/X` become
//!   `#/components/schemas/...` (see the `payload` module).
//!
//! Whatever could not be carried over is listed, as sentences, in the
//! document's `x-soa-warnings` ([`warnings`]). Output is deterministic:
//! JSON objects are written with their keys sorted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use contracts::schema::soa_reference_target;
use contracts::schema_walk::for_each_subschema;
use contracts::{ContractDocument, ContractRef, ErrorCode, MemberName, ServiceName, envelope::headers, subjects};
use serde_json::{Map, Value, json};

use super::payload::{COMPONENT_SCHEMAS, Components, percent_decode, unique};

/// The AsyncAPI version of every document written here.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The official AsyncAPI 3.0.0 JSON Schema (draft-07), bundled with every
/// `$ref` local: `schemas/3.0.0-without-$id.json` of `@asyncapi/specs`
/// 6.11.1 (Apache-2.0); see `registry/schema/README.md`.
pub const ASYNCAPI_SCHEMA: &str = include_str!("../../schema/asyncapi-3.0.0.json");

/// The version of the NATS operation binding written.
const NATS_BINDING_VERSION: &str = "0.1.0";

/// The host a document names when it is given none, as a variable's default.
pub const PLACEHOLDER_HOST: &str = "localhost:4222";

/// The id of the one server in every document.
const SERVER: &str = "nats";

/// Component names of soabus's own schemas.
const HEADERS: &str = "soa.Headers";
const ERROR_HEADERS: &str = "soa.ErrorHeaders";
const ERROR_BODY: &str = "soa.ErrorBody";
const ERROR_DETAIL: &str = "soa.ErrorDetail";
const CORRELATION_ID: &str = "soa.CorrelationId";

/// A service's major version, the unit contract references and `soa://`
/// schema references name: `inventory@1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractMajor {
    /// The service.
    pub service: ServiceName,
    /// The major version of its contract.
    pub major: u64,
}

impl ContractMajor {
    /// The service major `document` is a version of.
    pub fn of(document: &ContractDocument) -> Self {
        Self {
            service: document.service.clone(),
            major: document.version.major(),
        }
    }

    /// The service major a contract reference points into.
    pub fn of_reference(reference: &ContractRef) -> Self {
        Self {
            service: reference.service.clone(),
            major: reference.major,
        }
    }
}

impl std::fmt::Display for ContractMajor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.service, self.major)
    }
}

/// The NATS server a document names: `host:port`, and whether it wants TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// `host:port` (or a host alone).
    pub host: String,
    /// True for a `tls://` URL.
    pub tls: bool,
}

impl ServerAddress {
    /// Reads `nats://host:port`, `tls://host:port` or `host:port`. User and
    /// password in the URL are dropped: a published document must not carry
    /// them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (rest, tls) = if let Some(rest) = text.strip_prefix("nats://") {
            (rest, false)
        } else if let Some(rest) = text.strip_prefix("tls://") {
            (rest, true)
        } else if text.contains("://") {
            return Err(format!(
                "{text:?} is no NATS server URL; use nats://host:port or tls://host:port"
            ));
        } else {
            (text, false)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let well_formed =
            !host.is_empty() && !host.contains(['/', ',', '{', '}']) && !host.chars().any(char::is_whitespace);
        if !well_formed {
            return Err(format!(
                "{text:?} is not one NATS server URL such as nats://nats.example.com:4222"
            ));
        }
        Ok(Self {
            host: host.to_owned(),
            tls,
        })
    }
}

/// How documents are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// The server to name; `None` writes a `{host}` variable whose default
    /// is [`PLACEHOLDER_HOST`].
    pub server: Option<ServerAddress>,
}

/// The AsyncAPI 3.0.0 document of one service version.
///
/// `dependencies` holds the other contracts it needs: the producers of the
/// events it consumes, the services it calls, and the contracts its schemas
/// reference with `soa://` ([`dependencies_of`] lists them); for each
/// service major the highest version given is used. Consumed events and
/// calls whose contract is missing are left out and listed in
/// `x-soa-warnings`.
pub fn service_document(
    document: &ContractDocument,
    dependencies: &[ContractDocument],
    options: &ExportOptions,
) -> Value {
    let own = ContractMajor::of(document);
    let mut documents = newest_by_major(dependencies);
    documents.insert(own.clone(), document);
    let mut builder = Builder::new(documents, Some(own.clone()));
    builder.components.include_definitions(&own);
    builder.add_contract(&own, document);
    let info = json!({
        "title": document.service.as_str(),
        "version": document.version.to_string(),
        "description": document.description,
        "contact": { "name": document.owner },
        "tags": document.tags.iter().map(|tag| json!({ "name": tag })).collect::<Vec<_>>(),
        "x-soa-contract": document.id().to_string(),
        "x-soa-digest": document.digest(),
        "x-soa-compatibility": document.compatibility.to_string(),
    });
    builder.finish(info, options)
}

/// One AsyncAPI 3.0.0 document for a whole system: every contract's
/// channels, operations and schemas, named with a `<service>.v<major>.`
/// prefix. For each service major the highest version given is used.
pub fn system_document(documents: &[ContractDocument], options: &ExportOptions) -> Value {
    let documents = newest_by_major(documents);
    let ids: Vec<String> = documents.values().map(|document| document.id().to_string()).collect();
    let digests: Vec<Value> = documents
        .values()
        .map(|document| json!([document.id().to_string(), document.digest()]))
        .collect();
    // The system has no version of its own; one derived from its contracts
    // changes whenever any of them does.
    let digest = contracts::canonical::digest(&Value::Array(digests));
    let short = digest.trim_start_matches("sha256:").get(..12).unwrap_or_default();
    let mut builder = Builder::new(documents.clone(), None);
    for key in documents.keys() {
        builder.components.include_definitions(key);
    }
    for (key, document) in &documents {
        builder.add_contract(key, document);
    }
    let services: BTreeSet<&str> = documents.keys().map(|key| key.service.as_str()).collect();
    let info = json!({
        "title": "soabus system",
        "version": format!("0.0.0+{short}"),
        "description": format!(
            "Every contract of the system: {}. Channels, operations and schemas are named `<service>.v<major>.<name>`.",
            if ids.is_empty() { "none".to_owned() } else { ids.join(", ") }
        ),
        "tags": services.iter().map(|service| json!({ "name": service })).collect::<Vec<_>>(),
        "x-soa-contracts": ids,
    });
    builder.finish(info, options)
}

/// The service majors `document` needs to be described whole: the
/// producers of the events it consumes, the services it calls, and every
/// contract its schemas reference, itself excepted.
pub fn dependencies_of(document: &ContractDocument) -> BTreeSet<ContractMajor> {
    let mut majors = schema_references_of(document);
    majors.extend(
        document
            .consumes
            .iter()
            .map(|consumption| &consumption.event)
            .chain(&document.calls)
            .map(ContractMajor::of_reference),
    );
    majors.remove(&ContractMajor::of(document));
    majors
}

/// The service majors `document`'s schemas reference with `soa://`,
/// itself excepted.
pub fn schema_references_of(document: &ContractDocument) -> BTreeSet<ContractMajor> {
    let mut majors = BTreeSet::new();
    let expectations = document
        .consumes
        .iter()
        .filter_map(|consumption| consumption.expects.as_ref());
    let schemas = document
        .messages()
        .map(|(_, schema)| schema)
        .chain(document.defs.values())
        .chain(expectations);
    for schema in schemas {
        for_each_subschema(schema, "", |_, object| {
            if let Some(Value::String(target)) = object.get("$ref")
                && let Some((service, major)) = soa_reference_target(target)
            {
                majors.insert(ContractMajor { service, major });
            }
        });
    }
    majors.remove(&ContractMajor::of(document));
    majors
}

/// The `x-soa-warnings` of a document written here: what could not be
/// carried over, as sentences.
pub fn warnings(document: &Value) -> Vec<String> {
    match document.get("x-soa-warnings") {
        Some(Value::Array(warnings)) => warnings
            .iter()
            .filter_map(|warning| warning.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The most problems [`validate`] reports.
const MAX_PROBLEMS: usize = 20;

/// The longest a reported problem gets; a failed `oneOf` quotes the whole value.
const MAX_PROBLEM_CHARS: usize = 400;

/// Checks `document` against the official AsyncAPI 3.0.0 JSON Schema,
/// offline, and checks that every local `$ref` in it points at something,
/// which the schema cannot tell. Each problem is `<instance pointer>: <message>`.
pub fn validate(document: &Value) -> Result<(), Vec<String>> {
    let validator = asyncapi_validator().map_err(|error| vec![error.clone()])?;
    let problems: Vec<String> = validator
        .iter_errors(document)
        .map(|error| {
            let at = error.instance_path().to_string();
            format!("{}: {error}", if at.is_empty() { "(root)" } else { &at })
        })
        .chain(dangling_references(document))
        .take(MAX_PROBLEMS)
        .map(|message| {
            if message.chars().count() > MAX_PROBLEM_CHARS {
                let mut short: String = message.chars().take(MAX_PROBLEM_CHARS).collect();
                short.push('…');
                short
            } else {
                message
            }
        })
        .collect();
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// Keywords whose values are data, not schemas or AsyncAPI objects: a
/// `$ref` inside them is no reference. Extensions (`x-...`) are free-form.
const DATA_KEYWORDS: &[&str] = &["const", "default", "enum", "examples"];

/// Every `$ref` to `#...` in `document` that points at nothing, as
/// `<pointer of the $ref>: <target> does not exist`.
fn dangling_references(document: &Value) -> Vec<String> {
    let mut dangling = Vec::new();
    let mut pending: Vec<(String, &Value)> = vec![(String::new(), document)];
    while let Some((pointer, value)) = pending.pop() {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    let here = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    if key == "$ref"
                        && let Value::String(target) = child
                        && let Some(fragment) = target.strip_prefix('#')
                    {
                        let resolved =
                            percent_decode(fragment).is_some_and(|target| document.pointer(&target).is_some());
                        if !resolved {
                            dangling.push(format!("{here}: {target} does not exist"));
                        }
                    } else if !DATA_KEYWORDS.contains(&key.as_str()) && !key.starts_with("x-") {
                        pending.push((here, child));
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    pending.push((format!("{pointer}/{index}"), item));
                }
            }
            _ => {}
        }
    }
    dangling.sort();
    dangling
}

/// The compiled AsyncAPI 3.0.0 schema, built once.
fn asyncapi_validator() -> Result<&'static jsonschema::Validator, &'static String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(ASYNCAPI_SCHEMA)
                .map_err(|error| format!("the vendored AsyncAPI schema is not JSON: {error}"))?;
            jsonschema::draft7::options()
                .offline()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|error| format!("the vendored AsyncAPI schema does not compile: {error}"))
        })
        .as_ref()
}

/// The highest version given of each service major.
fn newest_by_major(documents: &[ContractDocument]) -> BTreeMap<ContractMajor, &ContractDocument> {
    let mut newest: BTreeMap<ContractMajor, &ContractDocument> = BTreeMap::new();
    for document in documents {
        let entry = newest.entry(ContractMajor::of(document)).or_insert(document);
        if document.version > entry.version {
            *entry = document;
        }
    }
    newest
}

/// The channels of one operation: where requests go, and where replies do.
#[derive(Debug, Clone)]
struct OperationChannels {
    request: String,
    reply: String,
}

/// A document being built.
struct Builder<'a> {
    documents: BTreeMap<ContractMajor, &'a ContractDocument>,
    /// The contract of a service document, whose names go without a prefix.
    own: Option<ContractMajor>,
    components: Components,
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    /// Channel and operation ids given out.
    channel_ids: BTreeSet<String>,
    operation_ids: BTreeSet<String>,
    /// The channels made for each operation and event.
    operation_channels: BTreeMap<(ContractMajor, MemberName), OperationChannels>,
    event_channels: BTreeMap<(ContractMajor, MemberName), String>,
    warnings: Vec<String>,
}

impl<'a> Builder<'a> {
    fn new(documents: BTreeMap<ContractMajor, &'a ContractDocument>, own: Option<ContractMajor>) -> Self {
        let mut components = Components::new(&documents, own.clone());
        for (name, schema) in soa_schemas() {
            components.insert_fixed(name, schema);
        }
        Self {
            documents,
            own,
            components,
            channels: Map::new(),
            operations: Map::new(),
            channel_ids: BTreeSet::new(),
            operation_ids: BTreeSet::new(),
            operation_channels: BTreeMap::new(),
            event_channels: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// The prefix of `key`'s channel and operation names.
    fn prefix(&self, key: &ContractMajor) -> String {
        self.components.prefix(key)
    }

    /// The operations of one contract: what it serves, publishes, consumes and calls.
    fn add_contract(&mut self, key: &ContractMajor, document: &ContractDocument) {
        let prefix = self.prefix(key);
        let system = self.own.is_none();
        let tags = if system {
            json!([{ "name": document.service.as_str() }])
        } else {
            json!([])
        };
        for (name, operation) in &document.operations {
            let Some(channels) = self.operation_channels(key, name) else {
                continue;
            };
            let id = unique(&mut self.operation_ids, &format!("{prefix}{name}"));
            let mut object = json!({
                "action": "receive",
                "channel": channel_ref(&channels.request),
                "title": format!("{} {name}", document.service),
                "messages": [message_ref(&channels.request, "request")],
                "reply": reply(&channels),
                "bindings": {
                    "nats": { "queue": document.service.as_str(), "bindingVersion": NATS_BINDING_VERSION }
                },
                "x-soa-idempotent": operation.idempotent,
            });
            set_optional(&mut object, "summary", operation.description.as_deref());
            set_tags(&mut object, &tags);
            self.operations.insert(id, object);
        }
        for (name, event) in &document.events {
            let Some(channel) = self.event_channel(key, name) else {
                continue;
            };
            let id = unique(&mut self.operation_ids, &format!("{prefix}{name}"));
            let mut object = json!({
                "action": "send",
                "channel": channel_ref(&channel),
                "title": format!("{} publishes {name}", document.service),
                "messages": [message_ref(&channel, name.as_str())],
            });
            set_optional(&mut object, "summary", event.description.as_deref());
            set_tags(&mut object, &tags);
            self.operations.insert(id, object);
        }
        for consumption in &document.consumes {
            let reference = &consumption.event;
            let producer = ContractMajor::of_reference(reference);
            let Some(channel) = self.event_channel(&producer, &reference.member) else {
                self.warnings.push(format!(
                    "{} consumes {reference}, {}; it is left out",
                    document.id(),
                    self.missing(&producer, &reference.member, "event")
                ));
                continue;
            };
            let id = unique(
                &mut self.operation_ids,
                &format!(
                    "{prefix}consume.{}.v{}.{}",
                    producer.service, producer.major, reference.member
                ),
            );
            let mut object = json!({
                "action": "receive",
                "channel": channel_ref(&channel),
                "title": format!("{} consumes {reference}", document.service),
                "messages": [message_ref(&channel, reference.member.as_str())],
                "x-soa-consumes": reference.to_string(),
            });
            if let Some(expects) = &consumption.expects {
                let origin = format!("{} /consumes ({reference}) expects", document.id());
                let expects = self.components.rewrite(key, expects, &origin);
                object["x-soa-expects"] = expects;
            }
            set_tags(&mut object, &tags);
            self.operations.insert(id, object);
        }
        for reference in &document.calls {
            let callee = ContractMajor::of_reference(reference);
            let Some(channels) = self.operation_channels(&callee, &reference.member) else {
                self.warnings.push(format!(
                    "{} calls {reference}, {}; it is left out",
                    document.id(),
                    self.missing(&callee, &reference.member, "operation")
                ));
                continue;
            };
            let id = unique(
                &mut self.operation_ids,
                &format!("{prefix}call.{}.v{}.{}", callee.service, callee.major, reference.member),
            );
            let mut object = json!({
                "action": "send",
                "channel": channel_ref(&channels.request),
                "title": format!("{} calls {reference}", document.service),
                "messages": [message_ref(&channels.request, "request")],
                "reply": reply(&channels),
                "x-soa-calls": reference.to_string(),
            });
            set_tags(&mut object, &tags);
            self.operations.insert(id, object);
        }
    }

    /// Why a consumed event or called operation has no channel.
    fn missing(&self, key: &ContractMajor, member: &MemberName, kind: &str) -> String {
        match self.documents.get(key) {
            Some(document) => format!("but {} declares no {kind} {member}", document.id()),
            None => format!("but the contract of {key} is not available"),
        }
    }

    /// The request and reply channels of an operation, made the first time.
    fn operation_channels(&mut self, key: &ContractMajor, name: &MemberName) -> Option<OperationChannels> {
        let slot = (key.clone(), name.clone());
        if let Some(channels) = self.operation_channels.get(&slot) {
            return Some(channels.clone());
        }
        let document = *self.documents.get(key)?;
        let operation = document.operations.get(name)?;
        let prefix = self.prefix(key);
        let request = unique(&mut self.channel_ids, &format!("{prefix}{name}"));
        let reply = unique(&mut self.channel_ids, &format!("{request}.reply"));
        let origin = format!("{} /operations/{name}", document.id());
        let request_payload = self
            .components
            .rewrite(key, &operation.request, &format!("{origin}/request"));
        let response_payload = self
            .components
            .rewrite(key, &operation.response, &format!("{origin}/response"));
        let title = format!("{} {name}", document.service);
        let mut request_channel = json!({
            "address": operation.subject.as_str(),
            "title": title,
            "messages": {
                "request": message(
                    &format!("{name}.request"),
                    &format!("Request of {title}"),
                    operation.description.as_deref(),
                    HEADERS,
                    request_payload,
                ),
            },
        });
        set_optional(&mut request_channel, "description", operation.description.as_deref());
        let reply_channel = json!({
            "address": null,
            "title": format!("Replies of {title}"),
            "description": "The requester's inbox: the reply subject NATS gives each request. A reply is the response, or an error with the NATS micro error headers.",
            "messages": {
                "response": message(
                    &format!("{name}.response"),
                    &format!("Response of {title}"),
                    None,
                    HEADERS,
                    response_payload,
                ),
                "error": error_message(name, &title, &operation.errors),
            },
        });
        self.channels.insert(request.clone(), request_channel);
        self.channels.insert(reply.clone(), reply_channel);
        let channels = OperationChannels { request, reply };
        self.operation_channels.insert(slot, channels.clone());
        Some(channels)
    }

    /// The channel of an event, made the first time.
    fn event_channel(&mut self, key: &ContractMajor, name: &MemberName) -> Option<String> {
        let slot = (key.clone(), name.clone());
        if let Some(channel) = self.event_channels.get(&slot) {
            return Some(channel.clone());
        }
        let document = *self.documents.get(key)?;
        let event = document.events.get(name)?;
        let prefix = self.prefix(key);
        let id = unique(&mut self.channel_ids, &format!("{prefix}{name}"));
        let origin = format!("{} /events/{name}/payload", document.id());
        let payload = self.components.rewrite(key, &event.payload, &origin);
        let title = format!("{} {name}", document.service);
        let stream = subjects::event_stream(&document.service, key.major);
        let mut channel = json!({
            "address": event.subject.as_str(),
            "title": title,
            "messages": {
                name.as_str(): message(name.as_str(), &format!("Event {title}"), event.description.as_deref(), HEADERS, payload),
            },
            "x-soa-stream": stream,
        });
        let description = match &event.description {
            Some(description) => format!(
                "{}. Kept in the JetStream stream {stream}.",
                description.trim_end().trim_end_matches('.')
            ),
            None => format!("Kept in the JetStream stream {stream}."),
        };
        channel["description"] = Value::String(description);
        self.channels.insert(id.clone(), channel);
        self.event_channels.insert(slot, id.clone());
        Some(id)
    }

    /// The whole document.
    fn finish(self, info: Value, options: &ExportOptions) -> Value {
        let Self {
            components,
            channels,
            operations,
            mut warnings,
            ..
        } = self;
        let (schemas, schema_warnings) = components.finish();
        warnings.extend(schema_warnings);
        let mut seen = BTreeSet::new();
        warnings.retain(|warning| seen.insert(warning.clone()));
        let mut info = info;
        if let Some(Value::Array(tags)) = info.get("tags")
            && tags.is_empty()
            && let Value::Object(object) = &mut info
        {
            object.remove("tags");
        }
        let mut document = json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": info,
            "defaultContentType": "application/json",
            "servers": { SERVER: server(options) },
            "channels": channels,
            "operations": operations,
            "components": {
                "schemas": schemas,
                "correlationIds": {
                    CORRELATION_ID: {
                        "description": "The business key that ties one flow's messages together.",
                        "location": format!("$message.header#/{}", headers::CORRELATION_ID),
                    },
                },
            },
        });
        if !warnings.is_empty() {
            document["x-soa-warnings"] = json!(warnings);
        }
        document
    }
}

/// The server object.
fn server(options: &ExportOptions) -> Value {
    match &options.server {
        Some(address) => {
            let mut server = json!({
                "host": address.host,
                "protocol": "nats",
                "description": if address.tls { "The NATS server, over TLS." } else { "The NATS server." },
            });
            if address.tls {
                server["x-soa-tls"] = Value::Bool(true);
            }
            server
        }
        None => json!({
            "host": "{host}",
            "protocol": "nats",
            "description": "The NATS server; set the host variable to yours.",
            "variables": {
                "host": {
                    "default": PLACEHOLDER_HOST,
                    "description": "host:port of a NATS server of the system.",
                },
            },
        }),
    }
}

/// A message object.
fn message(name: &str, title: &str, summary: Option<&str>, headers: &str, payload: Value) -> Value {
    let mut message = json!({
        "name": name,
        "title": title,
        "contentType": "application/json",
        "headers": { "$ref": format!("{COMPONENT_SCHEMAS}{headers}") },
        "correlationId": { "$ref": format!("#/components/correlationIds/{CORRELATION_ID}") },
        "payload": payload,
    });
    set_optional(&mut message, "summary", summary);
    message
}

/// The error reply of an operation: the error body, with a code among the
/// common ones and the operation's own.
fn error_message(name: &MemberName, title: &str, declared: &[String]) -> Value {
    let mut codes: Vec<String> = ErrorCode::COMMON.iter().map(|code| code.as_str().to_owned()).collect();
    codes.extend(
        declared
            .iter()
            .filter(|code| !codes.contains(code))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let payload = json!({
        "allOf": [{ "$ref": format!("{COMPONENT_SCHEMAS}{ERROR_BODY}") }],
        "properties": { "code": { "enum": codes } },
    });
    let summary = if declared.is_empty() {
        "A common error.".to_owned()
    } else {
        format!(
            "A common error, or one of the operation's own: {}.",
            declared.join(", ")
        )
    };
    message(
        &format!("{name}.error"),
        &format!("Error of {title}"),
        Some(&summary),
        ERROR_HEADERS,
        payload,
    )
}

/// soabus's own schemas: the headers and the error body.
fn soa_schemas() -> [(&'static str, Value); 4] {
    let string = |description: &str| json!({ "type": "string", "description": description });
    [
        (
            HEADERS,
            json!({
                "type": "object",
                "description": "The headers the soabus runtime sets on every message.",
                "properties": {
                    (headers::CONTRACT): string("The exact contract the sender speaks: inventory@1.3.0."),
                    (headers::OPERATION): string("The operation a request or reply belongs to."),
                    (headers::EVENT): string("The event a message carries."),
                    (headers::MESSAGE_ID): string("A unique message id; JetStream de-duplicates on it."),
                    (headers::CORRELATION_ID): string("The business key that ties one flow's messages together."),
                    (headers::TRACEPARENT): string("W3C Trace Context parent."),
                    (headers::TRACESTATE): string("W3C Trace Context vendor state."),
                },
            }),
        ),
        (
            ERROR_HEADERS,
            json!({
                "type": "object",
                "description": "The NATS micro error headers of an error reply, besides the usual ones.",
                "required": [headers::SERVICE_ERROR, headers::SERVICE_ERROR_CODE],
                "properties": {
                    (headers::SERVICE_ERROR): string("The error's description."),
                    (headers::SERVICE_ERROR_CODE): {
                        "type": "string",
                        "pattern": "^[0-9]{3}$",
                        "description": "An HTTP-like status: 4xx for the caller's mistakes, 5xx for the service's.",
                    },
                    (headers::CONTRACT): string("The exact contract the sender speaks: inventory@1.3.0."),
                    (headers::OPERATION): string("The operation the reply belongs to."),
                    (headers::CORRELATION_ID): string("The business key that ties one flow's messages together."),
                },
            }),
        ),
        (
            ERROR_BODY,
            json!({
                "type": "object",
                "description": "The body of every error reply.",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "pattern": "^[A-Z][A-Z0-9_]*$",
                        "description": "What kind of failure this is.",
                    },
                    "message": string("A sentence for a person; never internals."),
                    "details": {
                        "type": "array",
                        "description": "The failing values, for validation errors.",
                        "items": { "$ref": format!("{COMPONENT_SCHEMAS}{ERROR_DETAIL}") },
                    },
                },
            }),
        ),
        (
            ERROR_DETAIL,
            json!({
                "type": "object",
                "description": "One failing value of a message.",
                "required": ["pointer", "message"],
                "properties": {
                    "pointer": string("JSON pointer of the failing value in the message (empty for the root)."),
                    "schema_path": string("JSON pointer of the schema keyword that failed, when known."),
                    "message": string("What is wrong, as a sentence."),
                },
            }),
        ),
    ]
}

/// `{"$ref": "#/channels/<id>"}`.
fn channel_ref(channel: &str) -> Value {
    json!({ "$ref": format!("#/channels/{channel}") })
}

/// `{"$ref": "#/channels/<id>/messages/<message>"}`.
fn message_ref(channel: &str, message: &str) -> Value {
    json!({ "$ref": format!("#/channels/{channel}/messages/{message}") })
}

/// The reply of a request: the response or an error, on the reply channel.
fn reply(channels: &OperationChannels) -> Value {
    json!({
        "channel": channel_ref(&channels.reply),
        "messages": [message_ref(&channels.reply, "response"), message_ref(&channels.reply, "error")],
    })
}

/// Sets `key` when there is a value.
fn set_optional(object: &mut Value, key: &str, value: Option<&str>) {
    if let (Some(value), Value::Object(object)) = (value, object) {
        object.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// Sets `tags` unless there are none.
fn set_tags(object: &mut Value, tags: &Value) {
    if let (Value::Array(list), Value::Object(object)) = (tags, object)
        && !list.is_empty()
    {
        object.insert("tags".to_owned(), tags.clone());
    }
}
