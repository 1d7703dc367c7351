//! Every subject string the system uses is spelled here and nowhere else.

use crate::names::{MemberName, ServiceName, Subject};

/// The domain token of the registry's subjects.
pub const REGISTRY_DOMAIN: &str = "soa";

/// The registry's service name in its own contract.
pub const REGISTRY_SERVICE: &str = "registry";

/// The prefix of the registry's request-reply API.
pub const REGISTRY_API_PREFIX: &str = "soa.registry.v1";

/// The prefix of the registry's change notifications.
pub const REGISTRY_EVENTS_PREFIX: &str = "soa.registry.v1.events";

/// The queue group registry replicas share.
pub const REGISTRY_QUEUE_GROUP: &str = "soa-registry";

/// The subject of the orchestrator's work items (one per instance to drive).
pub const ORCHESTRATOR_WORK: &str = "soa.wf.work";

/// The subjects of the orchestrator's JetStream start messages.
pub const ORCHESTRATOR_STARTS: &str = "soa.wf.start.>";

/// Where a JetStream message starts an instance of `workflow` (a name):
/// `soa.wf.start.<workflow>`.
pub fn orchestrator_start(workflow: &str) -> String {
    format!("soa.wf.start.{workflow}")
}

/// NATS micro (ADR-32) discovery verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiscoveryVerb {
    /// `$SRV.PING`: who is there.
    Ping,
    /// `$SRV.INFO`: name, version, endpoints and metadata.
    Info,
    /// `$SRV.STATS`: per-endpoint counters.
    Stats,
}

impl DiscoveryVerb {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "PING",
            Self::Info => "INFO",
            Self::Stats => "STATS",
        }
    }
}

/// `$SRV.<VERB>`, `$SRV.<VERB>.<service>` or `$SRV.<VERB>.<service>.<id>`:
/// the discovery subjects a service answers on.
pub fn discovery(verb: DiscoveryVerb, service: Option<&str>, instance_id: Option<&str>) -> String {
    let mut subject = format!("$SRV.{}", verb.as_str());
    if let Some(service) = service {
        subject.push('.');
        subject.push_str(service);
        if let Some(id) = instance_id {
            subject.push('.');
            subject.push_str(id);
        }
    }
    subject
}

/// The registry API subject of one verb: `soa.registry.v1.<verb>`.
pub fn registry_api(verb: &str) -> String {
    format!("{REGISTRY_API_PREFIX}.{verb}")
}

/// The subject a registry change of one kind is published on:
/// `soa.registry.v1.events.<kind>`.
pub fn registry_event(kind: &str) -> String {
    format!("{REGISTRY_EVENTS_PREFIX}.{kind}")
}

/// The subject of an operation or event: `<domain>.<service>.v<major>.<name>`.
pub fn member(
    domain: &str,
    service: &ServiceName,
    major: u64,
    name: &MemberName,
) -> Result<Subject, crate::names::NameError> {
    Subject::parse(&format!("{domain}.{service}.v{major}.{name}"))
}

/// The JetStream stream that holds a service major's events:
/// `SOA_EVENTS_<SERVICE>_V<major>` (stream names allow no dots or dashes).
pub fn event_stream(service: &ServiceName, major: u64) -> String {
    format!(
        "SOA_EVENTS_{}_V{major}",
        service.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// The stream that keeps dead letters of every consumer.
pub const DEAD_LETTER_STREAM: &str = "SOA_DEAD_LETTERS";

/// The subjects of the dead-letter stream.
pub const DEAD_LETTER_SUBJECTS: &str = "soa.dlq.>";

/// Where a consumer's dead letters go: `soa.dlq.<stream>.<consumer>`.
pub fn dead_letter(stream: &str, consumer: &str) -> String {
    format!("soa.dlq.{stream}.{consumer}")
}

/// The prefix of one service's reply inboxes: `_INBOX_<service>`. A service
/// connects with it (`ConnectConfig::inbox_prefix`) so its permissions can
/// let it read its own replies and nobody else's.
pub fn service_inbox_prefix(service: &ServiceName) -> String {
    format!("_INBOX_{service}")
}

/// A JetStream API subject: `$JS.API.<path>`, such as
/// `$JS.API.STREAM.INFO.SOA_EVENTS_ORDERS_V1`.
pub fn jetstream_api(path: &str) -> String {
    format!("$JS.API.{path}")
}

/// The subjects a durable consumer's acknowledgements go to:
/// `$JS.ACK.<stream>.<consumer>.>` (`consumer` may be `*`).
pub fn jetstream_acks(stream: &str, consumer: &str) -> String {
    format!("$JS.ACK.{stream}.{consumer}.>")
}

/// The flow-control replies of a stream's push consumers (a KV watch):
/// `$JS.FC.<stream>.>`.
pub fn jetstream_flow_control(stream: &str) -> String {
    format!("$JS.FC.{stream}.>")
}

/// The subjects of a key-value bucket's keys: `$KV.<bucket>.>`.
pub fn key_value_keys(bucket: &str) -> String {
    format!("$KV.{bucket}.>")
}

/// The stream behind a key-value bucket: `KV_<bucket>`.
pub fn key_value_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_subjects() {
        assert_eq!(discovery(DiscoveryVerb::Ping, None, None), "$SRV.PING");
        assert_eq!(
            discovery(DiscoveryVerb::Info, Some("inventory"), Some("abc")),
            "$SRV.INFO.inventory.abc"
        );
        assert_eq!(registry_api("register"), "soa.registry.v1.register");
        assert_eq!(registry_event("registered"), "soa.registry.v1.events.registered");
        let subject = member(
            "shop",
            &ServiceName::parse("inventory").unwrap(),
            1,
            &MemberName::parse("reserve").unwrap(),
        )
        .unwrap();
        assert_eq!(subject.as_str(), "shop.inventory.v1.reserve");
        assert_eq!(
            event_stream(&ServiceName::parse("order-view").unwrap(), 2),
            "SOA_EVENTS_ORDER_VIEW_V2"
        );
        assert_eq!(
            dead_letter("SOA_EVENTS_ORDERS_V1", "inventory"),
            "soa.dlq.SOA_EVENTS_ORDERS_V1.inventory"
        );
        let inventory = ServiceName::parse("inventory").unwrap();
        assert_eq!(service_inbox_prefix(&inventory), "_INBOX_inventory");
        assert_eq!(jetstream_api("STREAM.INFO.S"), "$JS.API.STREAM.INFO.S");
        assert_eq!(jetstream_acks("S", "*"), "$JS.ACK.S.*.>");
        assert_eq!(jetstream_flow_control("KV_b"), "$JS.FC.KV_b.>");
        assert_eq!(key_value_keys("b"), "$KV.b.>");
        assert_eq!(key_value_stream("b"), "KV_b");
    }
}
