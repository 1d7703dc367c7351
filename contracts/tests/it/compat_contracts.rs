//! Contract against contract, role-aware, and producers against consumers.

use contracts::compat::{ChangeCode, Role, check_consumers, check_history};
use contracts::{CompatibilityPolicy, ContractDocument, Limits};
use serde_json::{Value, json};

use crate::sample_document;

fn document(edit: impl FnOnce(&mut Value)) -> ContractDocument {
    let mut value = sample_document();
    edit(&mut value);
    ContractDocument::parse("test.json", &value.to_string(), &Limits::default()).unwrap()
}

fn v1() -> ContractDocument {
    document(|_| {})
}

/// Role and change code of each change.
type Codes = Vec<(Role, ChangeCode)>;

/// The codes that break the policy for sure, and the undecided ones.
fn outcome(history: &[ContractDocument], candidate: &ContractDocument) -> (Codes, Codes) {
    let report = check_history(history, candidate);
    let breaking = report.breaking().map(|c| (c.role, c.change.code)).collect();
    let unclassified = report.unclassified().map(|c| (c.role, c.change.code)).collect();
    (breaking, unclassified)
}

#[test]
fn widening_a_request_is_backward_compatible_but_widening_a_response_is_not() {
    // The request (the reader side) may accept more.
    let wider_request = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["$defs"]["Reservation"]["properties"]["quantity"]["minimum"] = json!(0);
    });
    assert_eq!(outcome(&[v1()], &wider_request), (vec![], vec![]));

    // The response (the writer side) may not send more than old callers accept.
    let wider_response = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["operations"]["reserve"]["response"]["required"] = json!([]);
    });
    assert_eq!(
        outcome(&[v1()], &wider_response).0,
        vec![(Role::Response, ChangeCode::RequiredRemoved)]
    );

    // Narrowing a request breaks callers; narrowing a response is fine.
    let narrower_request = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["$defs"]["Reservation"]["properties"]["quantity"]["maximum"] = json!(10);
    });
    assert_eq!(
        outcome(&[v1()], &narrower_request).0,
        vec![(Role::Request, ChangeCode::BoundAdded)]
    );
    let narrower_event = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["events"]["reserved"]["payload"]["required"] = json!(["order_id"]);
    });
    assert_eq!(outcome(&[v1()], &narrower_event), (vec![], vec![]));
}

#[test]
fn forward_and_full_mirror_the_roles() {
    let wider_request = |policy: &str| {
        document(|doc| {
            doc["version"] = json!("1.4.0");
            doc["compatibility"] = json!(policy);
            doc["$defs"]["Reservation"]["properties"]["quantity"]["minimum"] = json!(0);
        })
    };
    assert_eq!(
        outcome(&[v1()], &wider_request("FORWARD")).0,
        vec![(Role::Request, ChangeCode::BoundLoosened)]
    );
    assert_eq!(
        outcome(&[v1()], &wider_request("FULL")).0,
        vec![(Role::Request, ChangeCode::BoundLoosened)]
    );
    assert_eq!(outcome(&[v1()], &wider_request("NONE")), (vec![], vec![]));
}

#[test]
fn removed_operations_events_and_moved_subjects_break() {
    let candidate = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["operations"]["reserve"]["subject"] = json!("shop.inventory.v1.hold");
        doc["events"] = json!({});
    });
    let (breaking, _) = outcome(&[v1()], &candidate);
    assert!(
        breaking.contains(&(Role::Contract, ChangeCode::SubjectChanged)),
        "{breaking:?}"
    );
    assert!(
        breaking.contains(&(Role::Contract, ChangeCode::EventRemoved)),
        "{breaking:?}"
    );

    let without_operation = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["operations"] = json!({});
    });
    assert_eq!(
        outcome(&[v1()], &without_operation).0,
        vec![(Role::Contract, ChangeCode::OperationRemoved)]
    );
}

#[test]
fn new_error_codes_and_dropped_idempotency_break_callers() {
    let candidate = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["operations"]["reserve"]["errors"] = json!(["OUT_OF_STOCK", "WAREHOUSE_CLOSED"]);
        doc["operations"]["reserve"]["idempotent"] = json!(false);
    });
    let (breaking, _) = outcome(&[v1()], &candidate);
    assert_eq!(
        breaking,
        vec![
            (Role::Response, ChangeCode::ErrorCodeAdded),
            (Role::Contract, ChangeCode::IdempotencyDropped)
        ]
    );
}

#[test]
fn a_version_must_increase_and_a_new_major_may_break_anything() {
    let same_version = document(|doc| doc["description"] = json!("changed text, same version"));
    assert_eq!(outcome(&[v1()], &same_version).0, vec![]);
    let lower = document(|doc| doc["version"] = json!("1.2.0"));
    assert_eq!(
        outcome(&[v1()], &lower).0,
        vec![(Role::Contract, ChangeCode::VersionNotIncreased)]
    );

    let v2 = document(|doc| {
        doc["version"] = json!("2.0.0");
        doc["operations"]["reserve"]["subject"] = json!("shop.inventory.v2.reserve");
        doc["events"]["reserved"]["subject"] = json!("shop.inventory.v2.reserved");
        doc["operations"]["reserve"]["request"] = json!({"type": "string"});
    });
    let report = check_history(&[v1()], &v2);
    assert!(report.changes.is_empty(), "no earlier version of major 2: {report:#?}");
}

#[test]
fn transitive_policies_check_every_earlier_version() {
    let v1_0 = document(|doc| {
        doc["version"] = json!("1.0.0");
        doc["$defs"]["Reservation"]["properties"]["quantity"]["minimum"] = json!(0);
    });
    let v1_3 = v1(); // quantity minimum 1: narrower than 1.0.0, a break that already shipped.
    let candidate = |policy: &str| {
        document(|doc| {
            doc["version"] = json!("1.4.0");
            doc["compatibility"] = json!(policy);
        })
    };
    assert_eq!(
        outcome(&[v1_0.clone(), v1_3.clone()], &candidate("BACKWARD")),
        (vec![], vec![])
    );
    let report = check_history(&[v1_3, v1_0], &candidate("BACKWARD_TRANSITIVE"));
    let breaking: Vec<String> = report
        .breaking()
        .map(|c| format!("{} {}", c.against, c.change.code))
        .collect();
    assert_eq!(breaking, vec!["inventory@1.0.0 bound-tightened"]);
    assert_eq!(report.policy, CompatibilityPolicy::BackwardTransitive);
}

#[test]
fn consumers_are_held_to_what_they_expect() {
    let producer_v1 = v1();
    let consumer = |expects: Option<Value>| {
        let mut value = sample_document();
        value["service"] = json!("billing");
        value["operations"] = json!({});
        value["events"] = json!({});
        value["consumes"] = match expects {
            Some(schema) => json!([{"event": "inventory@1#reserved", "expects": schema}]),
            None => json!(["inventory@1#reserved"]),
        };
        ContractDocument::parse("billing.json", &value.to_string(), &Limits::default()).unwrap()
    };
    let strict_consumer = consumer(Some(
        json!({"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}),
    ));
    let loose_consumer = consumer(None);

    // The producer stops promising order_id: the consumer that requires it breaks.
    let candidate = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["events"]["reserved"]["payload"] =
            json!({"type": "object", "properties": {"reservation_id": {"type": "string"}}});
    });
    let breaks = check_consumers(
        Some(&producer_v1),
        &candidate,
        &[strict_consumer.clone(), loose_consumer.clone()],
    );
    let summary: Vec<(String, Option<bool>)> = breaks.iter().map(|b| (b.consumer.to_string(), b.breaking)).collect();
    assert_eq!(summary.len(), 2, "{breaks:#?}");
    assert!(summary.contains(&("billing@1.3.0".to_owned(), Some(true))));
    assert!(breaks.iter().all(|b| b.event.as_str() == "reserved"));

    // A producer that still sends order_id as a string satisfies both.
    let compatible = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["events"]["reserved"]["payload"]["required"] = json!(["order_id"]);
    });
    assert_eq!(
        check_consumers(
            Some(&producer_v1),
            &compatible,
            &[strict_consumer.clone(), loose_consumer]
        ),
        vec![]
    );

    // Removing the event breaks every consumer.
    let removed = document(|doc| {
        doc["version"] = json!("1.4.0");
        doc["events"] = json!({});
    });
    let breaks = check_consumers(Some(&producer_v1), &removed, &[strict_consumer]);
    assert_eq!(breaks[0].changes[0].code, ChangeCode::EventRemoved);
}
