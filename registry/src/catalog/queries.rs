//! The catalogue's answers to the registry API's read verbs, and the
//! instance verbs (heartbeat, deregister) that only touch soft state.

use std::collections::BTreeSet;
use std::time::Instant;

use contracts::registry_api::{
    BindingKind, ConsumersRequest, ConsumersResponse, EdgeKind, GetRequest, GetResponse, GraphEdge, GraphNode,
    GraphRequest, GraphResponse, HeartbeatRequest, InstancesRequest, InstancesResponse, ListRequest, ListResponse,
    ResolveRequest, ResolveResponse, SearchRequest, SearchResponse, ServiceSummary, VersionInfo, VersionsRequest,
    VersionsResponse,
};
use contracts::{ContractDocument, ContractId, ErrorBody, ErrorCode, ServiceName};

use super::rules::reference_of;
use super::{Catalog, HeartbeatOutcome};

/// The default and the largest page of a listing.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest page a caller may ask for.
pub const MAX_PAGE: u32 = 1_000;

fn not_found(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, message)
}

impl Catalog {
    /// One contract version: exact, the latest of a major, or the latest.
    pub fn get(&self, request: &GetRequest) -> Result<GetResponse, ErrorBody> {
        let stored = self.find(request)?;
        Ok(GetResponse {
            document: stored.document()?,
            digest: stored.digest.clone(),
            registered_at_ms: stored.registered_at_ms,
        })
    }

    /// [`Catalog::get`] as the JSON of a `GetResponse`, written from the
    /// stored bytes without parsing the document, and the version's digest:
    /// the fast path for reads that only pass the document on.
    pub fn get_json(&self, request: &GetRequest) -> Result<(String, Vec<u8>), ErrorBody> {
        let stored = self.find(request)?;
        Ok((stored.digest.clone(), stored.response_json()?))
    }

    /// The version a get asks for.
    fn find(&self, request: &GetRequest) -> Result<std::sync::Arc<super::Stored>, ErrorBody> {
        let history = self.history(&request.service);
        if history.is_empty() {
            return Err(not_found(format!(
                "no service {} is registered; `soa services` lists the registered ones",
                request.service
            )));
        }
        let found = match (&request.version, request.major) {
            (Some(version), _) => history.iter().find(|stored| stored.version() == version),
            (None, Some(major)) => history.iter().rev().find(|stored| stored.version().major() == major),
            (None, None) => history.last(),
        };
        let Some(stored) = found else {
            let versions: Vec<String> = history.iter().map(|stored| stored.version().to_string()).collect();
            let asked = match (&request.version, request.major) {
                (Some(version), _) => format!("version {version}"),
                (None, Some(major)) => format!("major {major}"),
                (None, None) => "a version".to_owned(),
            };
            return Err(not_found(format!(
                "{} has no {asked}; registered: {}",
                request.service,
                versions.join(", ")
            )));
        };
        Ok(std::sync::Arc::clone(stored))
    }

    /// The latest version of each major of every service, as documents.
    pub fn head_documents(&self) -> Result<Vec<ContractDocument>, ErrorBody> {
        self.service_names()
            .iter()
            .flat_map(|service| self.heads(service))
            .map(|head| head.document())
            .collect()
    }

    /// Every version of a service, oldest first.
    pub fn versions(&self, request: &VersionsRequest) -> Result<VersionsResponse, ErrorBody> {
        let history = self.history(&request.service);
        if history.is_empty() {
            return Err(not_found(format!("no service {} is registered", request.service)));
        }
        Ok(VersionsResponse {
            service: request.service.clone(),
            versions: history
                .iter()
                .map(|stored| VersionInfo {
                    version: stored.version().clone(),
                    digest: stored.digest.clone(),
                    registered_at_ms: stored.registered_at_ms,
                })
                .collect(),
        })
    }

    /// One page of services by name.
    pub fn list(&self, request: &ListRequest, now: Instant) -> ListResponse {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
        // One more than the page tells whether another page follows.
        let mut names = self.service_names_after(request.after.as_ref(), limit + 1);
        let next = if names.len() > limit {
            names.truncate(limit);
            names.last().cloned()
        } else {
            None
        };
        let counts = self.instances().all_counts(now);
        ListResponse {
            services: names
                .iter()
                .filter_map(|name| self.summary(name, counts.get(name).copied().unwrap_or_default()))
                .collect(),
            next,
        }
    }

    /// The listing line of one service.
    pub fn summary(&self, service: &ServiceName, counts: (u32, u32, u32)) -> Option<ServiceSummary> {
        let history = self.history(service);
        let latest = history.last()?;
        let summary = latest.summary();
        Some(ServiceSummary {
            name: service.clone(),
            latest: latest.version().clone(),
            versions: history.iter().map(|stored| stored.version().clone()).collect(),
            owner: summary.team.clone(),
            description: summary.description.clone(),
            tags: summary.tags.clone(),
            instances: counts.0,
            healthy: counts.1,
            drifting: counts.2,
        })
    }

    /// Services matching every given criterion, by name.
    pub fn search(&self, request: &SearchRequest, now: Instant) -> SearchResponse {
        let mut candidates: Option<BTreeSet<ServiceName>> = None;
        let mut narrow = |set: BTreeSet<ServiceName>| {
            candidates = Some(match candidates.take() {
                Some(current) => current.intersection(&set).cloned().collect(),
                None => set,
            });
        };
        if let Some(tag) = &request.tag {
            narrow(self.tags.get(tag).map(|set| set.clone()).unwrap_or_default());
        }
        if let Some(field) = &request.field {
            narrow(self.fields.get(field).map(|set| set.clone()).unwrap_or_default());
        }
        if let Some(pattern) = &request.subject {
            let mut matching = BTreeSet::new();
            for entry in &self.subjects {
                if pattern.matches(entry.key()) {
                    matching.extend(entry.value().iter().map(|binding| binding.contract.service.clone()));
                }
            }
            narrow(matching);
        }
        let names: Vec<ServiceName> = match candidates {
            Some(set) => set.into_iter().collect(),
            None => self.service_names(),
        };
        let words: Vec<String> = request
            .text
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let owner = request.owner.as_deref().map(str::to_lowercase);
        let counts = self.instances().all_counts(now);
        let services = names
            .iter()
            .filter_map(|name| self.summary(name, counts.get(name).copied().unwrap_or_default()))
            .filter(|summary| {
                owner
                    .as_ref()
                    .is_none_or(|owner| &summary.owner.to_lowercase() == owner)
            })
            .filter(|summary| {
                if words.is_empty() {
                    return true;
                }
                let haystack = self.search_text(&summary.name);
                words.iter().all(|word| haystack.contains(word.as_str()))
            })
            .collect();
        SearchResponse { services }
    }

    /// The search text of the service's heads.
    fn search_text(&self, service: &ServiceName) -> String {
        let heads = self.heads(service);
        let texts: Vec<&str> = heads.iter().map(|head| head.summary().search_text.as_str()).collect();
        texts.join(" ")
    }

    /// The operations and events a subject or pattern belongs to.
    pub fn resolve(&self, request: &ResolveRequest) -> ResolveResponse {
        let pattern = &request.subject;
        let mut bindings = Vec::new();
        if pattern.has_wildcards() {
            for entry in &self.subjects {
                if pattern.matches(entry.key()) {
                    bindings.extend(entry.value().iter().cloned());
                }
            }
            bindings.sort_by(|a, b| (&a.subject, &a.contract).cmp(&(&b.subject, &b.contract)));
        } else if let Ok(subject) = contracts::Subject::parse(pattern.as_str())
            && let Some(found) = self.subjects.get(&subject)
        {
            bindings.extend(found.iter().cloned());
        }
        ResolveResponse { bindings }
    }

    /// Who consumes an event or calls an operation.
    pub fn consumers(&self, request: &ConsumersRequest) -> Result<ConsumersResponse, ErrorBody> {
        let heads = self.heads(&request.service);
        if heads.is_empty() {
            return Err(not_found(format!("no service {} is registered", request.service)));
        }
        let head = match request.major {
            Some(major) => heads
                .iter()
                .find(|head| head.version().major() == major)
                .ok_or_else(|| not_found(format!("{} has no major version {major}", request.service)))?,
            None => heads
                .last()
                .ok_or_else(|| not_found(format!("no service {} is registered", request.service)))?,
        };
        let major = head.version().major();
        let kind = if head.summary().has_event(&request.member) {
            BindingKind::Event
        } else if head.summary().has_operation(&request.member) {
            BindingKind::Operation
        } else {
            return Err(not_found(format!(
                "{} has no event or operation named {}",
                head.id, request.member
            )));
        };
        let key = (request.service.clone(), major, request.member.clone());
        let latest_ids = |services: Option<BTreeSet<ServiceName>>| -> Vec<ContractId> {
            services
                .unwrap_or_default()
                .iter()
                .filter_map(|service| self.latest(service))
                .map(|stored| stored.id.clone())
                .collect()
        };
        Ok(ConsumersResponse {
            reference: reference_of(&request.service, major, &request.member),
            kind,
            consumers: latest_ids(self.consumers.get(&key).map(|set| set.clone())),
            callers: latest_ids(self.callers.get(&key).map(|set| set.clone())),
        })
    }

    /// Who calls whom and who consumes whose events, with warnings for
    /// event cycles and dangling references.
    pub fn graph(&self, request: &GraphRequest) -> GraphResponse {
        let mut edges = BTreeSet::new();
        for (index, kind) in [(&self.consumers, EdgeKind::Consumes), (&self.callers, EdgeKind::Calls)] {
            for entry in index {
                let (to, major, member) = entry.key();
                let resolved = self.heads(to).iter().any(|head| {
                    head.version().major() == *major
                        && match kind {
                            EdgeKind::Consumes => head.summary().has_event(member),
                            EdgeKind::Calls => head.summary().has_operation(member),
                        }
                });
                for from in entry.value() {
                    edges.insert(GraphEdge {
                        from: from.clone(),
                        to: to.clone(),
                        kind,
                        reference: reference_of(to, *major, member),
                        resolved,
                    });
                }
            }
        }
        let edges: Vec<GraphEdge> = edges
            .into_iter()
            .filter(|edge| {
                request
                    .service
                    .as_ref()
                    .is_none_or(|service| &edge.from == service || &edge.to == service)
            })
            .collect();
        let mut warnings: Vec<String> = edges
            .iter()
            .filter(|edge| !edge.resolved)
            .map(|edge| {
                format!(
                    "{} {} {}, which no registered version declares",
                    edge.from,
                    match edge.kind {
                        EdgeKind::Calls => "calls",
                        EdgeKind::Consumes => "consumes",
                    },
                    edge.reference
                )
            })
            .collect();
        warnings.extend(event_cycles(&edges));
        let mut services: BTreeSet<ServiceName> = BTreeSet::new();
        match &request.service {
            Some(service) => {
                services.insert(service.clone());
            }
            None => services.extend(self.service_names()),
        }
        for edge in &edges {
            services.insert(edge.from.clone());
            services.insert(edge.to.clone());
        }
        let nodes = services
            .iter()
            .filter_map(|service| {
                self.latest(service).map(|stored| GraphNode {
                    service: service.clone(),
                    latest: stored.version().clone(),
                })
            })
            .collect();
        GraphResponse { nodes, edges, warnings }
    }

    /// Live instances.
    pub fn list_instances(&self, request: &InstancesRequest, now: Instant) -> InstancesResponse {
        InstancesResponse {
            instances: self.instances().list(request.service.as_ref(), now),
        }
    }

    /// Records a heartbeat. An instance of a contract version the registry
    /// does not hold gets `NOT_FOUND`, which tells it to register first.
    /// `announce` is false on replicas that only observe beats.
    pub fn heartbeat(
        &self,
        request: &HeartbeatRequest,
        now: Instant,
        announce: bool,
    ) -> Result<HeartbeatOutcome, ErrorBody> {
        if self
            .stored(&request.contract.service, &request.contract.version)
            .is_none()
        {
            return Err(not_found(format!(
                "{} is not registered; register the contract, then beat",
                request.contract
            )));
        }
        let drift = !self.is_registered_digest(&request.contract.service, &request.digest);
        Ok(self.instances().beat(request, drift, now, announce))
    }
}

/// Cycles in the event flow (A consumes B's events, B consumes A's), each as
/// a sentence. Call cycles are left alone: request-reply cycles are a design
/// smell, but event cycles can loop forever.
fn event_cycles(edges: &[GraphEdge]) -> Vec<String> {
    use std::collections::BTreeMap;
    // Edge producer → consumer: events flow from `to` to `from`.
    let mut next: BTreeMap<&ServiceName, BTreeSet<&ServiceName>> = BTreeMap::new();
    for edge in edges
        .iter()
        .filter(|edge| edge.kind == EdgeKind::Consumes && edge.resolved)
    {
        next.entry(&edge.to).or_default().insert(&edge.from);
    }
    let mut cycles: BTreeSet<Vec<&ServiceName>> = BTreeSet::new();
    for &start in next.keys() {
        // Depth-first search for paths back to `start` through larger names
        // only, so each cycle is found once, from its smallest member.
        let mut stack: Vec<(Vec<&ServiceName>, &ServiceName)> = vec![(vec![start], start)];
        while let Some((path, at)) = stack.pop() {
            for &following in next.get(at).into_iter().flatten() {
                if following == start {
                    cycles.insert(path.clone());
                } else if following > start && !path.contains(&following) && path.len() < 16 {
                    let mut longer = path.clone();
                    longer.push(following);
                    stack.push((longer, following));
                }
            }
        }
    }
    cycles
        .into_iter()
        .map(|cycle| {
            let mut names: Vec<String> = cycle.iter().map(|service| service.to_string()).collect();
            names.push(cycle[0].to_string());
            format!(
                "events flow in a cycle: {}; make sure one of them stops the loop",
                names.join(" → ")
            )
        })
        .collect()
}
