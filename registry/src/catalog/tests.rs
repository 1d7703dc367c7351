//! The catalogue's rules and queries, without NATS or a store.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use contracts::registry_api::{
    BindingKind, ConsumersRequest, GetRequest, GraphRequest, HeartbeatRequest, ListRequest, ResolveRequest,
    SearchRequest,
};
use contracts::{ContractId, ErrorCode, MemberName, ServiceName, SubjectPattern};

use super::{Catalog, Registration, RegistrationRefusal};

fn shop_documents() -> Vec<Value> {
    crate::sample::shop_contracts()
        .iter()
        .map(contracts::ContractDocument::to_value)
        .collect()
}

fn document(service: &str) -> Value {
    shop_documents()
        .into_iter()
        .find(|document| document["service"] == service)
        .unwrap()
}

/// Registers like the server does, minus the store.
fn register(catalog: &Catalog, document: &Value, token: Option<&str>) -> Result<bool, RegistrationRefusal> {
    match catalog.prepare_registration(document, token, 1)? {
        Registration::AlreadyStored(_) => Ok(false),
        Registration::New { record, .. } => {
            assert!(catalog.insert(*record));
            Ok(true)
        }
    }
}

fn shop_catalog() -> Catalog {
    let catalog = Catalog::default();
    for document in shop_documents() {
        assert_eq!(register(&catalog, &document, Some("team-token")), Ok(true));
    }
    catalog
}

fn name(text: &str) -> ServiceName {
    ServiceName::parse(text).unwrap()
}

#[test]
fn registering_the_same_content_again_is_idempotent() {
    let catalog = shop_catalog();
    assert_eq!(catalog.version_count(), 5);
    for document in shop_documents() {
        assert_eq!(register(&catalog, &document, Some("team-token")), Ok(false));
    }
    assert_eq!(catalog.version_count(), 5);
}

#[test]
fn a_compatible_update_is_stored_and_becomes_the_latest() {
    let catalog = shop_catalog();
    let mut update = document("inventory");
    update["version"] = json!("1.2.0");
    update["$defs"]["ReserveStock"]["properties"]["note"] = json!({"type": "string", "description": "Optional."});
    assert_eq!(register(&catalog, &update, Some("team-token")), Ok(true));
    let latest = catalog
        .get(&GetRequest {
            service: name("inventory"),
            version: None,
            major: None,
        })
        .unwrap();
    assert_eq!(latest.document.version.to_string(), "1.2.0");
    let versions = catalog.list(&ListRequest::default(), Instant::now());
    let inventory = versions
        .services
        .iter()
        .find(|s| s.name.as_str() == "inventory")
        .unwrap();
    assert_eq!(inventory.versions.len(), 2);
}

#[test]
fn a_breaking_update_is_refused_with_every_change_explained() {
    let catalog = shop_catalog();
    let mut update = document("inventory");
    update["version"] = json!("1.2.0");
    update["$defs"]["ReserveStock"]["properties"]["warehouse"] = json!({"type": "string"});
    update["$defs"]["ReserveStock"]["required"] = json!(["order_id", "items", "warehouse"]);
    let refusal = register(&catalog, &update, Some("team-token")).unwrap_err();
    let body = refusal.body();
    assert_eq!(body.code, ErrorCode::Declared("INCOMPATIBLE".to_owned()));
    assert!(body.message.contains("inventory@1.2.0"), "{}", body.message);
    assert!(
        body.details
            .iter()
            .any(|detail| detail.pointer.starts_with("/operations/reserve/request")
                && detail.message.contains("request of reserve")
                && detail.message.contains("\"warehouse\" became required")),
        "{body:#?}"
    );
    assert_eq!(catalog.version_count(), 5, "nothing was stored");
}

#[test]
fn a_version_is_immutable() {
    let catalog = shop_catalog();
    let mut changed = document("inventory");
    changed["description"] = json!("Something else");
    let refusal = register(&catalog, &changed, Some("team-token")).unwrap_err();
    assert!(matches!(refusal, RegistrationRefusal::Conflict(ref message) if message.contains("immutable")));
}

#[test]
fn only_the_owner_registers_later_versions() {
    let catalog = shop_catalog();
    let mut update = document("payments");
    update["version"] = json!("1.2.1");
    let refusal = register(&catalog, &update, Some("intruder")).unwrap_err();
    assert_eq!(refusal.body().code, ErrorCode::Unauthorized);
    let refusal = register(&catalog, &update, None).unwrap_err();
    assert_eq!(refusal.body().code, ErrorCode::Unauthorized);
    assert_eq!(register(&catalog, &update, Some("team-token")), Ok(true));
}

#[test]
fn a_producer_may_not_break_its_consumers_even_under_none() {
    let catalog = shop_catalog();
    let mut update = document("orders");
    update["version"] = json!("1.3.0");
    update["compatibility"] = json!("NONE");
    update["$defs"]["OrderPlaced"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("items");
    update["$defs"]["OrderPlaced"]["required"] = json!(["order_id", "customer_id", "total", "mode"]);
    let refusal = register(&catalog, &update, Some("team-token")).unwrap_err();
    let RegistrationRefusal::Incompatible { changes, .. } = refusal else {
        panic!("expected incompatible, got {refusal:?}");
    };
    assert!(
        changes
            .iter()
            .any(|change| change.message.contains("consumed by inventory@1.1.0")),
        "{changes:#?}"
    );
}

#[test]
fn invalid_documents_are_refused_with_pointers_and_store_nothing() {
    let catalog = shop_catalog();
    let mut bad = document("shipping");
    bad["version"] = json!("1.2.0");
    bad["operations"]["schedule"]["subject"] = json!("shop.shipping.schedule");
    let refusal = register(&catalog, &bad, Some("team-token")).unwrap_err();
    let body = refusal.body();
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert!(
        body.details
            .iter()
            .any(|detail| detail.pointer == "/operations/schedule/subject"),
        "{body:#?}"
    );
    let refusal = register(&catalog, &json!({"service": 3}), None).unwrap_err();
    assert_eq!(refusal.body().code, ErrorCode::ValidationFailed);
    let mut remote = document("shipping");
    remote["version"] = json!("1.2.0");
    remote["$defs"]["Evil"] = json!({"$ref": "https://example.com/evil.json"});
    assert_eq!(
        register(&catalog, &remote, Some("team-token")).unwrap_err().body().code,
        ErrorCode::ValidationFailed
    );
    assert_eq!(catalog.version_count(), 5);
}

#[test]
fn subjects_resolve_exactly_and_with_wildcards() {
    let catalog = shop_catalog();
    let exact = catalog.resolve(&ResolveRequest {
        subject: SubjectPattern::parse("shop.inventory.v1.reserve").unwrap(),
    });
    assert_eq!(exact.bindings.len(), 1);
    assert_eq!(exact.bindings[0].kind, BindingKind::Operation);
    assert_eq!(exact.bindings[0].contract.to_string(), "inventory@1.1.0");
    let events = catalog.resolve(&ResolveRequest {
        subject: SubjectPattern::parse("shop.*.v1.placed").unwrap(),
    });
    assert_eq!(events.bindings.len(), 1);
    assert_eq!(events.bindings[0].kind, BindingKind::Event);
    let everything = catalog.resolve(&ResolveRequest {
        subject: SubjectPattern::parse("shop.>").unwrap(),
    });
    assert!(everything.bindings.len() > 20, "{}", everything.bindings.len());
    let nothing = catalog.resolve(&ResolveRequest {
        subject: SubjectPattern::parse("shop.nothing.v1.x").unwrap(),
    });
    assert!(nothing.bindings.is_empty());
}

#[test]
fn consumers_and_the_graph_follow_the_declarations() {
    let catalog = shop_catalog();
    let consumers = catalog
        .consumers(&ConsumersRequest {
            service: name("orders"),
            major: None,
            member: MemberName::parse("placed").unwrap(),
        })
        .unwrap();
    assert_eq!(consumers.reference, "orders@1#placed");
    assert_eq!(consumers.kind, BindingKind::Event);
    assert!(consumers.consumers.iter().any(|id| id.to_string() == "inventory@1.1.0"));
    let unknown = catalog
        .consumers(&ConsumersRequest {
            service: name("orders"),
            major: None,
            member: MemberName::parse("teleported").unwrap(),
        })
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);
    let graph = catalog.graph(&GraphRequest::default());
    assert_eq!(graph.nodes.len(), 5);
    // Only orders' references to the fulfilment workflow are unresolved: the
    // orchestrator registers its contract when it loads the definition.
    assert!(
        graph
            .edges
            .iter()
            .all(|edge| edge.resolved || edge.to.as_str() == "fulfilment"),
        "{:#?}",
        graph.edges
    );
    // Orders consumes inventory's out-of-stock; inventory consumes orders' placed.
    assert!(
        graph.warnings.iter().any(|warning| warning.contains("cycle")),
        "{:#?}",
        graph.warnings
    );
}

#[test]
fn search_combines_its_criteria() {
    let catalog = shop_catalog();
    let now = Instant::now();
    let by_tag = catalog.search(
        &SearchRequest {
            tag: Some("shop".to_owned()),
            ..SearchRequest::default()
        },
        now,
    );
    assert_eq!(by_tag.services.len(), 5);
    let by_text = catalog.search(
        &SearchRequest {
            text: Some("stock".to_owned()),
            ..SearchRequest::default()
        },
        now,
    );
    assert!(by_text.services.iter().any(|s| s.name.as_str() == "inventory"));
    let by_field = catalog.search(
        &SearchRequest {
            field: Some("amount_cents".to_owned()),
            subject: Some(SubjectPattern::parse("shop.payments.>").unwrap()),
            ..SearchRequest::default()
        },
        now,
    );
    assert_eq!(
        by_field.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["payments"]
    );
}

#[test]
fn heartbeats_need_a_registered_contract_and_report_drift() {
    let catalog = shop_catalog();
    let now = Instant::now();
    let stored = catalog
        .get(&GetRequest {
            service: name("inventory"),
            version: None,
            major: None,
        })
        .unwrap();
    let mut beat = HeartbeatRequest {
        instance_id: "i1".to_owned(),
        contract: ContractId::parse("inventory@1.1.0").unwrap(),
        digest: stored.digest.clone(),
        ttl_ms: 1_000,
    };
    let outcome = catalog.heartbeat(&beat, now, true).unwrap();
    assert!(outcome.first_beat && !outcome.drift);
    beat.instance_id = "i2".to_owned();
    beat.digest = "sha256:0000".to_owned();
    assert!(catalog.heartbeat(&beat, now, true).unwrap().drift);
    let listed = catalog.list(&ListRequest::default(), now + Duration::from_millis(10));
    let inventory = listed.services.iter().find(|s| s.name.as_str() == "inventory").unwrap();
    assert_eq!((inventory.instances, inventory.healthy, inventory.drifting), (2, 2, 1));
    beat.contract = ContractId::parse("inventory@9.0.0").unwrap();
    assert_eq!(
        catalog.heartbeat(&beat, now, true).unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[test]
fn listing_pages_by_name() {
    let catalog = shop_catalog();
    let now = Instant::now();
    let first = catalog.list(
        &ListRequest {
            after: None,
            limit: Some(2),
        },
        now,
    );
    assert_eq!(
        first.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["inventory", "notifications"]
    );
    let second = catalog.list(
        &ListRequest {
            after: first.next,
            limit: Some(2),
        },
        now,
    );
    assert_eq!(
        second.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["orders", "payments"]
    );
    let last = catalog.list(
        &ListRequest {
            after: second.next,
            limit: Some(2),
        },
        now,
    );
    assert_eq!(last.services.len(), 1);
    assert!(last.next.is_none());
}

#[test]
fn a_rebuilt_catalogue_answers_like_the_original() {
    let catalog = shop_catalog();
    let mut update = document("inventory");
    update["version"] = json!("1.2.0");
    update["description"] = json!("Stock levels, reservations and more");
    assert_eq!(register(&catalog, &update, Some("team-token")), Ok(true));
    let records: Vec<_> = catalog
        .service_names()
        .iter()
        .flat_map(|service| catalog.history(service))
        .map(|stored| crate::store::RawRecord::encode(stored.id.to_string(), &stored.record().unwrap()).unwrap())
        .collect();
    let rebuilt = Catalog::from_records(records, false, super::EvictionGuard::default()).unwrap();
    // Older versions are kept without a summary, and still served whole.
    let old = rebuilt
        .get(&GetRequest {
            service: name("inventory"),
            version: Some(contracts::Version::parse("1.1.0").unwrap()),
            major: None,
        })
        .unwrap();
    assert_eq!(old.document.version.to_string(), "1.1.0");
    assert_eq!(
        rebuilt.search(
            &SearchRequest {
                text: Some("stock".to_owned()),
                ..SearchRequest::default()
            },
            Instant::now()
        ),
        catalog.search(
            &SearchRequest {
                text: Some("stock".to_owned()),
                ..SearchRequest::default()
            },
            Instant::now()
        )
    );
    assert_eq!(rebuilt.version_count(), catalog.version_count());
    assert_eq!(
        rebuilt.graph(&GraphRequest::default()),
        catalog.graph(&GraphRequest::default())
    );
    let mut update = document("payments");
    update["version"] = json!("1.2.1");
    assert_eq!(
        register(&rebuilt, &update, Some("intruder")).unwrap_err().body().code,
        ErrorCode::Unauthorized,
        "ownership survives a rebuild"
    );
}

#[test]
fn the_raw_read_is_the_same_json_as_the_parsed_one() {
    let catalog = shop_catalog();
    let request = GetRequest {
        service: name("orders"),
        version: None,
        major: Some(1),
    };
    let parsed = serde_json::to_value(catalog.get(&request).unwrap()).unwrap();
    let (digest, raw) = catalog.get_json(&request).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), parsed);
    assert_eq!(parsed["digest"], digest);
}
