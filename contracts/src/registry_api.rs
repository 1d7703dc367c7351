//! The registry's API messages, shared by the registry, the runtime and the
//! CLI. Each request names its verb (subject `soa.registry.v1.<verb>`) and
//! its response type, so a client cannot pair them wrongly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::ContractDocument;
use crate::lint::Finding;
use crate::names::{ContractId, MemberName, ServiceName, Subject, SubjectPattern, Version};

/// A registry API request: its verb and the response it gets.
pub trait RegistryRequest: Serialize + for<'de> Deserialize<'de> {
    /// The verb, the last token of the request subject.
    const VERB: &'static str;
    /// What a successful reply carries.
    type Response: Serialize + for<'de> Deserialize<'de>;

    /// `soa.registry.v1.<verb>`.
    fn subject() -> String {
        crate::subjects::registry_api(Self::VERB)
    }
}

/// Register a contract version. The document travels as JSON so the registry
/// reports problems in it with pointers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The contract document.
    pub document: Value,
    /// The owner credential: the first registration of a service records it,
    /// later versions must present the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

/// The registry's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The stored contract version.
    pub id: ContractId,
    /// Its content digest.
    pub digest: String,
    /// False when the same content was registered before (idempotent).
    pub created: bool,
    /// Warnings found while linting; errors refuse the registration instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Finding>,
}

impl RegistryRequest for RegisterRequest {
    const VERB: &'static str = "register";
    type Response = RegisterResponse;
}

/// A live instance saying it is still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Unique id of the instance (the NATS micro instance id).
    pub instance_id: String,
    /// The contract version it serves.
    pub contract: ContractId,
    /// The digest of the contract it serves, to detect drift.
    pub digest: String,
    /// How long the registry may keep the instance without another beat, in
    /// milliseconds.
    pub ttl_ms: u64,
}

/// The registry's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// True when the served digest matches no registered version of the contract.
    pub drift: bool,
}

impl RegistryRequest for HeartbeatRequest {
    const VERB: &'static str = "heartbeat";
    type Response = HeartbeatResponse;
}

/// An instance going away cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterRequest {
    /// The instance leaving.
    pub instance_id: String,
}

/// The registry's answer to a deregistration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterResponse {
    /// False when the instance was not known (already expired, say).
    pub removed: bool,
}

impl RegistryRequest for DeregisterRequest {
    const VERB: &'static str = "deregister";
    type Response = DeregisterResponse;
}

/// Fetch one contract version, or the latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The service.
    pub service: ServiceName,
    /// An exact version; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// The latest of this major, when no exact version is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<u64>,
}

/// One stored contract version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetResponse {
    /// The document.
    pub document: ContractDocument,
    /// Its content digest.
    pub digest: String,
}

impl RegistryRequest for GetRequest {
    const VERB: &'static str = "get";
    type Response = GetResponse;
}

/// List services, a page at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Start after this service name (from the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ServiceName>,
    /// Page size; the registry caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One line of a service listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// The service.
    pub name: ServiceName,
    /// Its latest version.
    pub latest: Version,
    /// Every registered version, oldest first.
    pub versions: Vec<Version>,
    /// The owning team.
    pub owner: String,
    /// What it does.
    pub description: String,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How many live instances it has.
    pub instances: u32,
}

/// A page of services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The services on this page, by name.
    pub services: Vec<ServiceSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ServiceName>,
}

impl RegistryRequest for ListRequest {
    const VERB: &'static str = "list";
    type Response = ListResponse;
}

/// Search by text, tag, owner or subject pattern; all given criteria must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Words to find in names and descriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A tag the service must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The owning team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A subject pattern (wildcards allowed) one of its subjects must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectPattern>,
}

/// Services matching a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// The matches, best first.
    pub services: Vec<ServiceSummary>,
}

impl RegistryRequest for SearchRequest {
    const VERB: &'static str = "search";
    type Response = SearchResponse;
}

/// Which operations and events a subject (or pattern) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveRequest {
    /// A subject or a pattern with wildcards.
    pub subject: SubjectPattern,
}

/// One subject bound to an operation or event of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectBinding {
    /// The subject.
    pub subject: Subject,
    /// The latest contract version that declares it.
    pub contract: ContractId,
    /// Whether it is an operation or an event.
    pub kind: BindingKind,
    /// The operation's or event's name.
    pub name: MemberName,
}

/// Whether a subject carries requests or events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    /// Request-reply.
    Operation,
    /// Published event.
    Event,
}

/// The bindings matching a resolve request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveResponse {
    /// Every matching binding, by subject.
    pub bindings: Vec<SubjectBinding>,
}

impl RegistryRequest for ResolveRequest {
    const VERB: &'static str = "resolve";
    type Response = ResolveResponse;
}

/// Check a candidate contract against the registry without storing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The candidate document.
    pub document: Value,
}

/// Whether the candidate would be accepted, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// True when registering it would succeed.
    pub accepted: bool,
    /// Lint findings on the candidate.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Breaking changes against registered versions and consumers, as
    /// sentences naming the message and pointer.
    #[serde(default)]
    pub breaking: Vec<BreakingChange>,
}

/// A change that would break a registered caller or consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakingChange {
    /// The message affected.
    pub message: String,
    /// JSON pointer of the change in the candidate document.
    pub pointer: String,
    /// What breaks and for whom.
    pub reason: String,
}

impl RegistryRequest for CheckRequest {
    const VERB: &'static str = "check";
    type Response = CheckResponse;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_know_their_subjects() {
        assert_eq!(RegisterRequest::subject(), "soa.registry.v1.register");
        assert_eq!(HeartbeatRequest::subject(), "soa.registry.v1.heartbeat");
        assert_eq!(DeregisterRequest::subject(), "soa.registry.v1.deregister");
        assert_eq!(GetRequest::subject(), "soa.registry.v1.get");
        assert_eq!(ListRequest::subject(), "soa.registry.v1.list");
        assert_eq!(SearchRequest::subject(), "soa.registry.v1.search");
        assert_eq!(ResolveRequest::subject(), "soa.registry.v1.resolve");
        assert_eq!(CheckRequest::subject(), "soa.registry.v1.check");
    }

    #[test]
    fn requests_parse_their_names() {
        let request: GetRequest = serde_json::from_str(r#"{"service": "inventory", "version": "1.2.0"}"#).unwrap();
        assert_eq!(request.version.unwrap().to_string(), "1.2.0");
        let err = serde_json::from_str::<GetRequest>(r#"{"service": "Inventory"}"#).unwrap_err();
        assert!(err.to_string().contains("service name"), "{err}");
        let search: SearchRequest = serde_json::from_str(r#"{"subject": "shop.*.v1.>"}"#).unwrap();
        assert!(search.subject.unwrap().has_wildcards());
    }
}
