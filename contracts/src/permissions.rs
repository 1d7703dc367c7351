//! The NATS permissions a service instance needs, derived from contracts so
//! the layout cannot drift from what the services declare.
//!
//! A service may subscribe to its own operations, to NATS micro discovery
//! under its own name and to its own reply inbox (`_INBOX_<service>`); it may
//! publish only its own events, requests to the operations its contract
//! `calls` and to the registry's register, heartbeat and deregister verbs,
//! and the JetStream API requests for its own event stream, for durable
//! consumers on the streams of the events it `consumes` and for the
//! dead-letter stream (plus the key-value buckets it is given), and its own
//! inbox (the runtime's round trip that proves its subscriptions). Replies to
//! requests it received are allowed by `allow_responses`. Everything else is
//! refused by the server.
//!
//! The called operations' and consumed events' subjects come from the
//! callees' and producers' own documents (a reference names a service and a
//! major, not the subject's domain), so the documents of the whole system
//! are the input.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::document::ContractDocument;
use crate::names::{ContractId, ContractRef};
use crate::subjects::{self, DiscoveryVerb};

/// What the contract does not say and a service may still need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionOptions {
    /// Key-value buckets the service keeps state in (`ProcessedKeys`'
    /// `soa_processed_<name>`, a shop service's own bucket).
    pub kv_buckets: Vec<String>,
}

/// The permissions of one service major's instances, as subject lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePermissions {
    /// The contract they were derived from.
    pub contract: ContractId,
    /// The owner named in the contract, for the comment above the block.
    pub owner: String,
    /// The NATS user the block is meant for: `<service>-v<major>`.
    pub user: String,
    /// The inbox prefix the service's connection must use.
    pub inbox_prefix: String,
    /// Subjects it may publish to, sorted.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to, sorted.
    pub subscribe: Vec<String>,
    /// Whether it may reply to requests it received (always: it serves operations).
    pub allow_responses: bool,
}

/// Why a service's permissions could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// A called or consumed service's document was not given.
    #[error(
        "{contract} {verb} {reference}, but no contract document of {service} was given; add it \
         (the subject comes from the {role}'s document)"
    )]
    MissingDocument {
        /// The contract whose permissions were asked for (`service@version`).
        contract: String,
        /// `calls` or `consumes`.
        verb: &'static str,
        /// The reference (`service@major#member`).
        reference: String,
        /// The referenced service major, as `<service> major <major>`.
        service: String,
        /// `callee` or `producer`.
        role: &'static str,
    },
    /// The referenced document has no such operation or event.
    #[error("{contract} {verb} {reference}, but no given version of that service major declares {kind} {member:?}")]
    UnknownMember {
        /// The contract whose permissions were asked for (`service@version`).
        contract: String,
        /// `calls` or `consumes`.
        verb: &'static str,
        /// The reference (`service@major#member`).
        reference: String,
        /// `operation` or `event`.
        kind: &'static str,
        /// The member's name.
        member: String,
    },
    /// A key-value bucket name NATS would refuse.
    #[error("{bucket:?} is not a key-value bucket name: use letters, digits, '-' and '_' only")]
    InvalidBucket {
        /// The name given.
        bucket: String,
    },
}

/// The NATS user a service major's instances connect as: `<service>-v<major>`.
pub fn user_name(contract: &ContractId) -> String {
    format!("{}-v{}", contract.service, contract.major())
}

/// Derives the permissions of `document`'s instances; the subjects of the
/// operations it calls and the events it consumes are looked up in
/// `system` (the documents of the other services; the latest version of
/// the referenced major that declares the member is used).
pub fn service_permissions(
    document: &ContractDocument,
    system: &[ContractDocument],
    options: &PermissionOptions,
) -> Result<ServicePermissions, PermissionError> {
    let contract = document.id();
    let service = &document.service;
    let major = document.version.major();
    let inbox_prefix = subjects::service_inbox_prefix(service);
    let mut publish = BTreeSet::new();
    let mut subscribe = BTreeSet::new();

    // Serving: its operations (in its queue group), discovery, its replies.
    subscribe.extend(
        document
            .operations
            .values()
            .map(|operation| operation.subject.to_string()),
    );
    for verb in [DiscoveryVerb::Ping, DiscoveryVerb::Info, DiscoveryVerb::Stats] {
        subscribe.insert(subjects::discovery(verb, None, None));
        subscribe.insert(subjects::discovery(verb, Some(service.as_str()), None));
        subscribe.insert(subjects::discovery(verb, Some(service.as_str()), Some("*")));
    }
    subscribe.insert(format!("{inbox_prefix}.>"));
    // The runtime proves its subscriptions live with a message to its own inbox.
    publish.insert(format!("{inbox_prefix}.>"));

    // Registration.
    for verb in ["register", "heartbeat", "deregister"] {
        publish.insert(subjects::registry_api(verb));
    }

    // Its own events, and the stream that stores them.
    if !document.events.is_empty() {
        publish.extend(document.events.values().map(|event| event.subject.to_string()));
        let stream = subjects::event_stream(service, major);
        for action in ["INFO", "CREATE", "UPDATE"] {
            publish.insert(subjects::jetstream_api(&format!("STREAM.{action}.{stream}")));
        }
    }

    // Declared calls.
    for call in &document.calls {
        let callee = referenced(system, call, "calls", "callee", &contract)?;
        let operation = callee
            .iter()
            .find_map(|doc| doc.operations.get(&call.member))
            .ok_or_else(|| unknown_member(&contract, call, "calls", "operation"))?;
        publish.insert(operation.subject.to_string());
    }

    // Declared consumption: durable consumers on the producer's stream,
    // their acks, and dead letters.
    for consumption in &document.consumes {
        let reference = &consumption.event;
        let producer = referenced(system, reference, "consumes", "producer", &contract)?;
        if !producer.iter().any(|doc| doc.events.contains_key(&reference.member)) {
            return Err(unknown_member(&contract, reference, "consumes", "event"));
        }
        let stream = subjects::event_stream(&reference.service, reference.major);
        // The consumer finds the producer's stream, and creates it when it
        // starts first (with the producer's own subjects, from its document).
        publish.insert(subjects::jetstream_api(&format!("STREAM.INFO.{stream}")));
        publish.insert(subjects::jetstream_api(&format!("STREAM.CREATE.{stream}")));
        for path in [
            format!("CONSUMER.INFO.{stream}.*"),
            format!("CONSUMER.CREATE.{stream}.*"),
            format!("CONSUMER.CREATE.{stream}.*.>"),
            format!("CONSUMER.MSG.NEXT.{stream}.*"),
            // Reading what it was given and did not ack, and deleting an
            // event no client library can read once it is a dead letter.
            format!("STREAM.MSG.GET.{stream}"),
            format!("STREAM.MSG.DELETE.{stream}"),
        ] {
            publish.insert(subjects::jetstream_api(&path));
        }
        publish.insert(subjects::jetstream_acks(&stream, "*"));
        publish.insert(subjects::dead_letter(&stream, "*"));
    }
    if !document.consumes.is_empty() {
        for action in ["INFO", "CREATE"] {
            publish.insert(subjects::jetstream_api(&format!(
                "STREAM.{action}.{}",
                subjects::DEAD_LETTER_STREAM
            )));
        }
    }

    // Key-value buckets.
    for bucket in &options.kv_buckets {
        let well_formed = !bucket.is_empty()
            && bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !well_formed {
            return Err(PermissionError::InvalidBucket { bucket: bucket.clone() });
        }
        let stream = subjects::key_value_stream(bucket);
        publish.insert(subjects::key_value_keys(bucket));
        publish.insert(subjects::jetstream_api("INFO"));
        for path in [
            format!("STREAM.INFO.{stream}"),
            format!("STREAM.CREATE.{stream}"),
            format!("STREAM.MSG.GET.{stream}"),
            format!("DIRECT.GET.{stream}"),
            format!("DIRECT.GET.{stream}.>"),
            format!("CONSUMER.INFO.{stream}.>"),
            format!("CONSUMER.CREATE.{stream}"),
            format!("CONSUMER.CREATE.{stream}.>"),
            format!("CONSUMER.DELETE.{stream}.>"),
        ] {
            publish.insert(subjects::jetstream_api(&path));
        }
        publish.insert(subjects::jetstream_flow_control(&stream));
    }

    Ok(ServicePermissions {
        user: user_name(&contract),
        owner: document.owner.clone(),
        contract,
        inbox_prefix,
        publish: publish.into_iter().collect(),
        subscribe: subscribe.into_iter().collect(),
        allow_responses: true,
    })
}

/// The given documents of the referenced service major, latest first.
fn referenced<'a>(
    system: &'a [ContractDocument],
    reference: &ContractRef,
    verb: &'static str,
    role: &'static str,
    contract: &ContractId,
) -> Result<Vec<&'a ContractDocument>, PermissionError> {
    let mut found: Vec<&ContractDocument> = system
        .iter()
        .filter(|doc| doc.service == reference.service && doc.version.major() == reference.major)
        .collect();
    if found.is_empty() {
        return Err(PermissionError::MissingDocument {
            contract: contract.to_string(),
            verb,
            reference: reference.to_string(),
            service: format!("{} major {}", reference.service, reference.major),
            role,
        });
    }
    found.sort_by(|a, b| b.version.cmp(&a.version));
    Ok(found)
}

fn unknown_member(
    contract: &ContractId,
    reference: &ContractRef,
    verb: &'static str,
    kind: &'static str,
) -> PermissionError {
    PermissionError::UnknownMember {
        contract: contract.to_string(),
        verb,
        reference: reference.to_string(),
        kind,
        member: reference.member.to_string(),
    }
}

impl ServicePermissions {
    /// The name of the configuration variable that holds the block:
    /// `INVENTORY_V1_PERMISSIONS`.
    pub fn variable(&self) -> String {
        format!("{}_PERMISSIONS", self.user.to_ascii_uppercase().replace('-', "_"))
    }

    /// The name of the environment variable the generated user's password is
    /// read from: `INVENTORY_V1_PASSWORD`.
    pub fn password_variable(&self) -> String {
        format!("{}_PASSWORD", self.user.to_ascii_uppercase().replace('-', "_"))
    }

    /// The block as a nats-server configuration variable:
    /// `NAME = { publish: {allow: [...]}, subscribe: {allow: [...]}, allow_responses: true }`.
    pub fn config_variable(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "# {} (owner {}): connect as user {:?} with the inbox prefix {}",
            self.contract, self.owner, self.user, self.inbox_prefix
        );
        let _ = writeln!(text, "{} = {{", self.variable());
        for (kind, subjects) in [("publish", &self.publish), ("subscribe", &self.subscribe)] {
            let _ = writeln!(text, "  {kind}: {{");
            let _ = writeln!(text, "    allow: [");
            for subject in subjects {
                let _ = writeln!(text, "      {}", quoted(subject));
            }
            let _ = writeln!(text, "    ]");
            let _ = writeln!(text, "  }}");
        }
        let _ = writeln!(text, "  allow_responses: {}", self.allow_responses);
        let _ = writeln!(text, "}}");
        text
    }
}

/// How a generated user proves who it is, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPassword {
    /// `password: $NAME`: nats-server reads the environment variable `NAME`.
    Environment(String),
    /// `password: "text"`, for tests; never for production files.
    Literal(String),
}

/// A nats-server configuration: the permission variables of `users`, then an
/// `authorization` block with one user per service major.
pub fn nats_config(users: &[(ServicePermissions, UserPassword)]) -> String {
    let mut text = String::new();
    for (permissions, _) in users {
        text.push_str(&permissions.config_variable());
        text.push('\n');
    }
    text.push_str("authorization {\n  users = [\n");
    for (permissions, password) in users {
        let password = match password {
            UserPassword::Environment(name) => format!("${name}"),
            UserPassword::Literal(text) => quoted(text),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "    {{ user: {}, password: {password}, permissions: ${} }}",
            quoted(&permissions.user),
            permissions.variable()
        );
    }
    text.push_str("  ]\n}\n");
    text
}

/// A string in the configuration's double quotes (JSON escaping is a subset
/// the server reads).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    fn shop_documents() -> Vec<ContractDocument> {
        crate::catalog::documents().unwrap()
    }

    fn document(system: &[ContractDocument], service: &str) -> ContractDocument {
        system
            .iter()
            .find(|doc| doc.service.as_str() == service)
            .cloned()
            .unwrap()
    }

    #[test]
    fn a_service_publishes_its_own_events_and_its_declared_calls_only() {
        let system = shop_documents();
        let orders = document(&system, "orders");
        let permissions = service_permissions(&orders, &system, &PermissionOptions::default()).unwrap();
        assert_eq!(permissions.user, "orders-v1");
        assert_eq!(permissions.inbox_prefix, "_INBOX_orders");
        let publish: BTreeSet<&str> = permissions.publish.iter().map(String::as_str).collect();
        // Its events and the calls it declares.
        for subject in [
            "shop.orders.v1.placed",
            "shop.orders.v1.completed",
            "shop.fulfilment.v1.start",
            "shop.notifications.v1.send",
            "soa.registry.v1.register",
            "soa.registry.v1.heartbeat",
            "soa.registry.v1.deregister",
            "$JS.API.STREAM.CREATE.SOA_EVENTS_ORDERS_V1",
            "$JS.API.CONSUMER.MSG.NEXT.SOA_EVENTS_SHIPPING_V1.*",
            "$JS.ACK.SOA_EVENTS_SHIPPING_V1.*.>",
            "soa.dlq.SOA_EVENTS_SHIPPING_V1.*",
            "$JS.API.STREAM.CREATE.SOA_DEAD_LETTERS",
        ] {
            assert!(publish.contains(subject), "{subject} missing from {publish:#?}");
        }
        // Nobody else's events, no undeclared call, no registry write beyond its own.
        for subject in [
            "shop.payments.v1.charged",
            "shop.payments.v1.charge",
            "shop.inventory.v1.reserve",
            "$JS.API.STREAM.UPDATE.SOA_EVENTS_SHIPPING_V1",
            "$JS.API.STREAM.CREATE.SOA_EVENTS_PAYMENTS_V2",
            "soa.registry.v1.get",
        ] {
            assert!(!publish.contains(subject), "{subject} should not be allowed");
        }
        // Full wildcards only where a consumer's acks, a filter or its own inbox need them.
        let wildcards: Vec<&String> = permissions
            .publish
            .iter()
            .filter(|subject| subject.contains('>'))
            .filter(|subject| !subject.starts_with("$JS.ACK.") && !subject.starts_with("$JS.API.CONSUMER.CREATE."))
            .collect();
        assert_eq!(wildcards, ["_INBOX_orders.>"]);
        let subscribe: BTreeSet<&str> = permissions.subscribe.iter().map(String::as_str).collect();
        for subject in [
            "shop.orders.v1.place",
            "$SRV.PING",
            "$SRV.INFO.orders",
            "$SRV.STATS.orders.*",
            "_INBOX_orders.>",
        ] {
            assert!(subscribe.contains(subject), "{subject} missing from {subscribe:#?}");
        }
        assert!(
            !subscribe
                .iter()
                .any(|subject| subject.starts_with("_INBOX.") || *subject == ">")
        );
    }

    #[test]
    fn a_service_without_events_or_consumers_gets_no_stream_rights() {
        let system = shop_documents();
        let fulfilment = document(&system, "fulfilment");
        let permissions = service_permissions(&fulfilment, &system, &PermissionOptions::default()).unwrap();
        assert!(
            permissions
                .publish
                .iter()
                .all(|subject| !subject.contains("SOA_DEAD_LETTERS"))
        );
        let order_view = document(&system, "order-view");
        let permissions = service_permissions(&order_view, &system, &PermissionOptions::default()).unwrap();
        assert!(
            !permissions
                .publish
                .iter()
                .any(|subject| subject.contains("SOA_EVENTS_ORDER_VIEW_V1"))
        );
    }

    #[test]
    fn a_call_or_consumption_needs_the_other_document() {
        let system = shop_documents();
        let orders = document(&system, "orders");
        let without_fulfilment: Vec<ContractDocument> = system
            .iter()
            .filter(|doc| doc.service.as_str() != "fulfilment")
            .cloned()
            .collect();
        let error = service_permissions(&orders, &without_fulfilment, &PermissionOptions::default()).unwrap_err();
        assert!(matches!(error, PermissionError::MissingDocument { .. }), "{error:?}");
        assert!(error.to_string().contains("fulfilment major 1"), "{error}");

        let mut wrong = orders.clone();
        wrong.calls = vec![ContractRef::parse("payments@1#teleport").unwrap()];
        let error = service_permissions(&wrong, &system, &PermissionOptions::default()).unwrap_err();
        assert!(error.to_string().contains("declares operation \"teleport\""), "{error}");
    }

    #[test]
    fn buckets_are_checked_and_granted() {
        let system = shop_documents();
        let payments = document(&system, "payments");
        let options = PermissionOptions {
            kv_buckets: vec!["shop_payments".to_owned()],
        };
        let permissions = service_permissions(&payments, &system, &options).unwrap();
        assert!(permissions.publish.contains(&"$KV.shop_payments.>".to_owned()));
        assert!(
            permissions
                .publish
                .contains(&"$JS.API.DIRECT.GET.KV_shop_payments.>".to_owned())
        );
        let bad = PermissionOptions {
            kv_buckets: vec!["a.b".to_owned()],
        };
        assert!(matches!(
            service_permissions(&payments, &system, &bad),
            Err(PermissionError::InvalidBucket { .. })
        ));
    }

    #[test]
    fn renders_a_server_configuration() {
        let system = shop_documents();
        let inventory = document(&system, "inventory");
        let permissions = service_permissions(&inventory, &system, &PermissionOptions::default()).unwrap();
        let text = nats_config(&[(
            permissions.clone(),
            UserPassword::Environment(permissions.password_variable()),
        )]);
        assert!(text.contains("INVENTORY_V1_PERMISSIONS = {"), "{text}");
        assert!(text.contains("      \"shop.inventory.v1.released\"\n"), "{text}");
        assert!(text.contains("  allow_responses: true\n"), "{text}");
        assert!(
            text.contains(
                "{ user: \"inventory-v1\", password: $INVENTORY_V1_PASSWORD, permissions: $INVENTORY_V1_PERMISSIONS }"
            ),
            "{text}"
        );
    }
}
