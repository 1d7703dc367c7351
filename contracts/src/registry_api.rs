//! The registry's API messages, shared by the registry, the runtime and the
//! CLI. Each request names its verb (subject `soa.registry.v1.<verb>`) and
//! its response type, so a client cannot pair them wrongly.
//!
//! Requests are closed (`deny_unknown_fields`), so a misspelt field is a
//! validation error rather than a silently ignored filter; responses stay
//! open so a later registry may add fields. The registry's own contract
//! ([`contract`]) is derived from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::lint::Finding;
use crate::names::{ContractId, MemberName, NameError, ServiceName, Subject, SubjectPattern, Version};
use crate::operations;

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

/// The error code of a registration refused because it breaks the service's
/// compatibility policy or a registered consumer; each detail is one
/// breaking change.
pub const INCOMPATIBLE: &str = "INCOMPATIBLE";

/// Register a contract version. The document travels as JSON so the registry
/// reports problems in it with pointers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The contract document.
    pub document: Value,
    /// The owner credential: the first registration of a service records it,
    /// later versions must present the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

/// The registry's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// Changes the checker could not decide (lenient verdict); they did not
    /// refuse the registration but deserve a look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unclassified: Vec<BreakingChange>,
}

impl RegistryRequest for RegisterRequest {
    const VERB: &'static str = "register";
    type Response = RegisterResponse;
}

/// A live instance saying it is still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatResponse {
    /// True when the served digest matches no registered version of the contract.
    pub drift: bool,
}

impl RegistryRequest for HeartbeatRequest {
    const VERB: &'static str = "heartbeat";
    type Response = HeartbeatResponse;
}

/// An instance going away cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeregisterRequest {
    /// The instance leaving.
    pub instance_id: String,
}

/// The registry's answer to a deregistration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeregisterResponse {
    /// False when the instance was not known (already expired, say).
    pub removed: bool,
}

impl RegistryRequest for DeregisterRequest {
    const VERB: &'static str = "deregister";
    type Response = DeregisterResponse;
}

/// Fetch one contract version, or the latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetResponse {
    /// The document.
    #[schemars(with = "Value")]
    pub document: ContractDocument,
    /// Its content digest.
    pub digest: String,
    /// When it was registered, in milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
}

impl RegistryRequest for GetRequest {
    const VERB: &'static str = "get";
    type Response = GetResponse;
}

/// Every registered version of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionsRequest {
    /// The service.
    pub service: ServiceName,
}

/// One registered version, without its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionInfo {
    /// The version.
    pub version: Version,
    /// Its content digest.
    pub digest: String,
    /// When it was registered, in milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
}

/// The versions of a service, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionsResponse {
    /// The service.
    pub service: ServiceName,
    /// Its versions, oldest first.
    pub versions: Vec<VersionInfo>,
}

impl RegistryRequest for VersionsRequest {
    const VERB: &'static str = "versions";
    type Response = VersionsResponse;
}

/// List services, a page at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// Start after this service name (from the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ServiceName>,
    /// Page size; the registry caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One line of a service listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// How many live instances it has (healthy or overdue, not yet expired).
    pub instances: u32,
    /// How many of them beat within their time to live.
    pub healthy: u32,
    /// How many of them serve a contract that matches no registered version.
    pub drifting: u32,
}

/// A page of services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// Search by text, tag, owner, subject pattern or schema field name; all
/// given criteria must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Words to find in names and descriptions (every word must appear).
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
    /// A property name that one of its message schemas declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Services matching a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SearchResponse {
    /// The matches, by name.
    pub services: Vec<ServiceSummary>,
}

impl RegistryRequest for SearchRequest {
    const VERB: &'static str = "search";
    type Response = SearchResponse;
}

/// Which operations and events a subject (or pattern) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// A subject or a pattern with wildcards.
    pub subject: SubjectPattern,
}

/// One subject bound to an operation or event of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    /// Request-reply.
    Operation,
    /// Published event.
    Event,
}

/// The bindings matching a resolve request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResolveResponse {
    /// Every matching binding, by subject.
    pub bindings: Vec<SubjectBinding>,
}

impl RegistryRequest for ResolveRequest {
    const VERB: &'static str = "resolve";
    type Response = ResolveResponse;
}

/// Who consumes an event (or calls an operation) of a service major.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumersRequest {
    /// The producing service.
    pub service: ServiceName,
    /// Its major version; the latest registered major when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<u64>,
    /// The event (or operation) name.
    pub member: MemberName,
}

/// The dependents of one event or operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsumersResponse {
    /// `service@major#member`, as contracts refer to it.
    pub reference: String,
    /// Whether the member is an event or an operation of the producer's
    /// latest version of that major.
    pub kind: BindingKind,
    /// The latest version of each service that declares it consumes the
    /// event (in `consumes`), by name.
    pub consumers: Vec<ContractId>,
    /// The latest version of each service that declares it calls the
    /// operation (in `calls`), by name.
    pub callers: Vec<ContractId>,
}

impl RegistryRequest for ConsumersRequest {
    const VERB: &'static str = "consumers";
    type Response = ConsumersResponse;
}

/// The dependency graph: who calls whom, who consumes whose events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphRequest {
    /// Only the edges that touch this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
}

/// One service in the graph (its latest version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GraphNode {
    /// The service.
    pub service: ServiceName,
    /// Its latest version.
    pub latest: Version,
}

/// How one service depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// `from` calls an operation of `to`.
    Calls,
    /// `from` consumes an event `to` publishes.
    Consumes,
}

/// One dependency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct GraphEdge {
    /// The dependent service.
    pub from: ServiceName,
    /// The service depended on.
    pub to: ServiceName,
    /// Calls or consumes.
    pub kind: EdgeKind,
    /// `service@major#member` depended on.
    pub reference: String,
    /// False when `to` has no registered major with that member.
    pub resolved: bool,
}

/// The graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GraphResponse {
    /// Services, by name.
    pub nodes: Vec<GraphNode>,
    /// Dependencies, sorted.
    pub edges: Vec<GraphEdge>,
    /// Cycles in event flows and dangling references, as sentences.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl RegistryRequest for GraphRequest {
    const VERB: &'static str = "graph";
    type Response = GraphResponse;
}

/// The live instances of one service, or of all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancesRequest {
    /// Only this service's instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
}

/// One live instance as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceInfo {
    /// Its id.
    pub instance_id: String,
    /// The contract version it serves.
    pub contract: ContractId,
    /// The digest of the contract it serves.
    pub digest: String,
    /// True when its last beat is within its time to live.
    pub healthy: bool,
    /// True when its digest matches no registered version.
    pub drift: bool,
    /// Milliseconds since its last beat.
    pub last_beat_ms_ago: u64,
    /// Its time to live in milliseconds.
    pub ttl_ms: u64,
}

/// The instances, by service then id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstancesResponse {
    /// The instances.
    pub instances: Vec<InstanceInfo>,
}

impl RegistryRequest for InstancesRequest {
    const VERB: &'static str = "instances";
    type Response = InstancesResponse;
}

/// Check a candidate contract against the registry without storing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The candidate document.
    pub document: Value,
    /// The credential a registration would present; ownership is checked
    /// only when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

/// Whether the candidate would be accepted, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResponse {
    /// True when registering it would succeed.
    pub accepted: bool,
    /// The stored versions it was compared with.
    #[serde(default)]
    pub against: Vec<ContractId>,
    /// Lint findings on the candidate.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Breaking changes against registered versions and consumers, as
    /// sentences naming the message and pointer.
    #[serde(default)]
    pub breaking: Vec<BreakingChange>,
    /// Changes the checker could not decide.
    #[serde(default)]
    pub unclassified: Vec<BreakingChange>,
    /// Other reasons it would be refused (a different document under the
    /// same version, another owner).
    #[serde(default)]
    pub refusals: Vec<String>,
}

/// A change that would break a registered caller or consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BreakingChange {
    /// The message affected (`request of reserve`, `event reserved`, or the
    /// consumer).
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

/// A change the registry announces on `soa.registry.v1.events.<kind>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegistryChange {
    /// What happened; also the last subject token.
    pub kind: ChangeKind,
    /// The contract concerned.
    pub contract: ContractId,
    /// The contract's digest (registered, or served by the instance).
    pub digest: String,
    /// The instance concerned, for instance changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The kinds of registry change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A new contract version was stored.
    Registered,
    /// An instance beat for the first time.
    InstanceUp,
    /// An instance deregistered.
    InstanceDown,
    /// An instance missed its beats and was dropped.
    InstanceExpired,
    /// An instance serves a contract that matches no registered version.
    Drift,
}

impl ChangeKind {
    /// The subject token: `registered`, `instance-up`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::InstanceUp => "instance-up",
            Self::InstanceDown => "instance-down",
            Self::InstanceExpired => "instance-expired",
            Self::Drift => "drift",
        }
    }

    /// `soa.registry.v1.events.<kind>`.
    pub fn subject(self) -> String {
        crate::subjects::registry_event(self.as_str())
    }
}

/// Typed markers of the registry's operations, for `ServiceClient::call`.
pub mod ops {
    use super::*;

    operations! {
        /// Store a contract version.
        Register = "register": RegisterRequest => RegisterResponse;
        /// An instance is alive.
        Heartbeat = "heartbeat": HeartbeatRequest => HeartbeatResponse;
        /// An instance leaves.
        Deregister = "deregister": DeregisterRequest => DeregisterResponse;
        /// One contract version.
        Get = "get": GetRequest => GetResponse;
        /// A service's versions.
        Versions = "versions": VersionsRequest => VersionsResponse;
        /// A page of services.
        List = "list": ListRequest => ListResponse;
        /// Services matching criteria.
        Search = "search": SearchRequest => SearchResponse;
        /// Subject to operation or event.
        Resolve = "resolve": ResolveRequest => ResolveResponse;
        /// Dependents of an event or operation.
        Consumers = "consumers": ConsumersRequest => ConsumersResponse;
        /// The dependency graph.
        Graph = "graph": GraphRequest => GraphResponse;
        /// Live instances.
        Instances = "instances": InstancesRequest => InstancesResponse;
        /// A dry-run registration.
        Check = "check": CheckRequest => CheckResponse;
    }
}

/// The version of the registry's own contract.
pub const CONTRACT_VERSION: &str = "1.0.0";

/// The registry's own contract (`registry@1.0.0`, subjects
/// `soa.registry.v1.<verb>`), derived from the types above. The registry
/// serves it, validates every request and reply against it, and registers it
/// with itself.
pub fn contract() -> Result<ContractDocument, NameError> {
    let read = |description| OperationSpec {
        description,
        errors: &[],
        idempotent: true,
    };
    Ok(ContractBuilder::new(
        crate::subjects::REGISTRY_DOMAIN,
        crate::subjects::REGISTRY_SERVICE,
        CONTRACT_VERSION,
        "The soabus registry: every contract version, the live instances of each service, and who depends on whom",
        "soabus",
    )?
    .tags(&["soabus", "registry"])
    .operation::<ops::Register>(OperationSpec {
        description: "Store a new contract version after checking its document, its owner, its compatibility policy and its consumers; the same content again is a no-op",
        errors: &[INCOMPATIBLE],
        idempotent: true,
    })?
    .operation::<ops::Heartbeat>(read("Say an instance is alive and which contract it serves; answers whether it drifts"))?
    .operation::<ops::Deregister>(read("Remove an instance that shuts down cleanly"))?
    .operation::<ops::Get>(read("One contract version: exact, latest of a major, or latest"))?
    .operation::<ops::Versions>(read("Every registered version of a service, oldest first"))?
    .operation::<ops::List>(read("Services by name, a page at a time"))?
    .operation::<ops::Search>(read("Services matching text, tag, owner, subject pattern and schema field"))?
    .operation::<ops::Resolve>(read("The operations and events a subject or wildcard pattern belongs to"))?
    .operation::<ops::Consumers>(read("Who consumes an event or calls an operation"))?
    .operation::<ops::Graph>(read("Who calls whom and who consumes whose events"))?
    .operation::<ops::Instances>(read("Live instances, their health and drift"))?
    .operation::<ops::Check>(read("Check a candidate document as a registration would, storing nothing"))?
    .build())
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
        assert_eq!(VersionsRequest::subject(), "soa.registry.v1.versions");
        assert_eq!(ListRequest::subject(), "soa.registry.v1.list");
        assert_eq!(SearchRequest::subject(), "soa.registry.v1.search");
        assert_eq!(ResolveRequest::subject(), "soa.registry.v1.resolve");
        assert_eq!(ConsumersRequest::subject(), "soa.registry.v1.consumers");
        assert_eq!(GraphRequest::subject(), "soa.registry.v1.graph");
        assert_eq!(InstancesRequest::subject(), "soa.registry.v1.instances");
        assert_eq!(CheckRequest::subject(), "soa.registry.v1.check");
        assert_eq!(
            ChangeKind::InstanceExpired.subject(),
            "soa.registry.v1.events.instance-expired"
        );
    }

    #[test]
    fn the_contract_binds_every_verb_to_its_subject() {
        let contract = contract().unwrap();
        assert_eq!(contract.id().to_string(), "registry@1.0.0");
        for verb in [
            "register",
            "heartbeat",
            "deregister",
            "get",
            "versions",
            "list",
            "search",
            "resolve",
            "consumers",
            "graph",
            "instances",
            "check",
        ] {
            let operation = &contract.operations[&MemberName::parse(verb).unwrap()];
            assert_eq!(operation.subject.as_str(), crate::subjects::registry_api(verb));
        }
    }

    #[test]
    fn requests_parse_their_names() {
        let request: GetRequest = serde_json::from_str(r#"{"service": "inventory", "version": "1.2.0"}"#).unwrap();
        assert_eq!(request.version.unwrap().to_string(), "1.2.0");
        let err = serde_json::from_str::<GetRequest>(r#"{"service": "Inventory"}"#).unwrap_err();
        assert!(err.to_string().contains("service name"), "{err}");
        let search: SearchRequest = serde_json::from_str(r#"{"subject": "shop.*.v1.>"}"#).unwrap();
        assert!(search.subject.unwrap().has_wildcards());
        let err = serde_json::from_str::<SearchRequest>(r#"{"tags": "shop"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
