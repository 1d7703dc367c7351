//! Validating messages against compiled contracts: every failing value with
//! its pointer, hostile patterns that cannot hang, and the validator cache.

use std::time::{Duration, Instant};

use contracts::shop::orders::PlaceOrder;
use contracts::{
    ContractDocument, ErrorBody, ErrorCode, Limits, MessageKey, SchemaSet, ValidatorCache, compile_contract, shop,
};
use serde_json::{Value, json};

use crate::sample_document;

fn orders() -> ContractDocument {
    shop::orders::contract().unwrap()
}

fn place() -> MessageKey {
    MessageKey::Request("place".parse().unwrap())
}

fn valid_order() -> Value {
    json!({
        "order_id": "ord-1",
        "customer_id": "cust-1",
        "mode": "choreographed",
        "items": [{"sku": "sku-1", "quantity": 2, "unit_price": {"amount_cents": 100, "currency": "EUR"}}]
    })
}

/// Validates `instance` as a place-order request and returns the failing
/// pointers, or an empty list when it is valid.
fn check(instance: Value) -> Vec<String> {
    let compiled = compile_contract(&orders(), &SchemaSet::default()).unwrap();
    let validator = &compiled.validators[&place()];
    match validator.validate(&instance) {
        Ok(()) => {
            assert!(validator.is_valid(&instance));
            vec![]
        }
        Err(failure) => {
            assert!(!validator.is_valid(&instance));
            failure.details.into_iter().map(|detail| detail.pointer).collect()
        }
    }
}

#[test]
fn a_valid_order_passes_and_the_rust_type_agrees() {
    assert_eq!(check(valid_order()), Vec::<String>::new());
    let typed: PlaceOrder = serde_json::from_value(valid_order()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), valid_order());
}

#[test]
fn every_failing_value_is_reported_with_its_pointer() {
    let mut order = valid_order();
    order["items"][0]["quantity"] = json!(0);
    order["items"][0]["unit_price"]["currency"] = json!("eur");
    order["mode"] = json!("teleported");
    order["coupon"] = json!("FREE");
    let mut pointers = check(order);
    pointers.sort();
    assert_eq!(
        pointers,
        vec!["", "/items/0/quantity", "/items/0/unit_price/currency", "/mode"]
    );

    assert_eq!(
        check(json!({"order_id": "ord-1"})),
        vec![""; 3],
        "three missing required fields"
    );
    assert_eq!(check(json!([])), vec![""]);
    let mut empty_items = valid_order();
    empty_items["items"] = json!([]);
    assert_eq!(check(empty_items), vec!["/items"]);
}

#[test]
fn failures_become_the_wire_error_body() {
    let compiled = compile_contract(&orders(), &SchemaSet::default()).unwrap();
    let validator = &compiled.validators[&place()];
    let mut order = valid_order();
    order["items"][0]["quantity"] = json!(-1);
    let failure = validator.validate(&order).unwrap_err();
    assert_eq!(
        failure.to_string(),
        "the request of place does not match orders@1.2.0: at /items/0/quantity: -1 is less than the minimum of 1"
    );
    let body = ErrorBody::from(failure);
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert_eq!(body.details.len(), 1);
    assert_eq!(body.details[0].pointer, "/items/0/quantity");
    assert!(
        body.details[0].schema_path.as_deref().unwrap().ends_with("/minimum"),
        "{:?}",
        body.details[0]
    );
}

#[test]
fn payloads_that_are_not_json_are_one_failure_at_the_root() {
    let compiled = compile_contract(&orders(), &SchemaSet::default()).unwrap();
    let validator = &compiled.validators[&place()];
    let failure = validator.validate_bytes(b"{not json").unwrap_err();
    assert_eq!(failure.details.len(), 1);
    assert_eq!(failure.details[0].pointer, "");
    assert!(failure.details[0].message.contains("not valid JSON"));
    let parsed = validator.validate_bytes(valid_order().to_string().as_bytes()).unwrap();
    assert_eq!(parsed, valid_order());
    // A payload nested past serde_json's recursion limit is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let failure = validator.validate_bytes(deep.as_bytes()).unwrap_err();
    assert!(
        failure.details[0]
            .message
            .contains("deeper than 127 levels (from line 1 column 128)"),
        "{failure}"
    );
}

#[test]
fn a_hostile_value_yields_a_bounded_error_list() {
    let compiled = compile_contract(&orders(), &SchemaSet::default()).unwrap();
    let validator = &compiled.validators[&place()];
    let mut order = valid_order();
    let bad_item = json!({"sku": "", "quantity": 0, "unit_price": {"amount_cents": -1, "currency": "x"}});
    order["items"] = Value::Array(vec![bad_item; 5_000]);
    let failure = validator.validate(&order).unwrap_err();
    assert_eq!(failure.details.len(), 100, "details are capped");
    assert!(failure.to_string().contains("more)"));
}

#[test]
fn catastrophic_patterns_run_in_linear_time() {
    let mut document = sample_document();
    document["$defs"]["Reservation"]["properties"]["order_id"]["pattern"] = json!("^(a+)+$");
    let document = ContractDocument::parse("inventory.json", &document.to_string(), &Limits::default()).unwrap();
    let compiled = compile_contract(&document, &SchemaSet::default()).unwrap();
    let validator = &compiled.validators[&MessageKey::Request("reserve".parse().unwrap())];
    let evil = format!("{}!", "a".repeat(100_000));
    let started = Instant::now();
    assert!(!validator.is_valid(&json!({"order_id": evil, "quantity": 1})));
    // A backtracking engine takes longer than the age of the universe here;
    // the linear-time one takes microseconds. The bound only catches a hang.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn formats_are_asserted() {
    let mut document = sample_document();
    document["$defs"]["Reservation"]["properties"]["when"] = json!({"type": "string", "format": "date-time"});
    let document = ContractDocument::parse("inventory.json", &document.to_string(), &Limits::default()).unwrap();
    let compiled = compile_contract(&document, &SchemaSet::default()).unwrap();
    let validator = &compiled.validators[&MessageKey::Request("reserve".parse().unwrap())];
    assert!(validator.is_valid(&json!({"order_id": "a", "quantity": 1, "when": "2026-11-27T10:00:00Z"})));
    let failure = validator
        .validate(&json!({"order_id": "a", "quantity": 1, "when": "tomorrow"}))
        .unwrap_err();
    assert_eq!(failure.details[0].pointer, "/when");
}

#[test]
fn the_cache_compiles_each_message_once() {
    let cache = ValidatorCache::default();
    let document = orders();
    let external = SchemaSet::default();
    let first = cache.get_or_compile(&document, &place(), &external).unwrap();
    let second = cache.get_or_compile(&document, &place(), &external).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(cache.len(), 1);
    assert_eq!(first.contract().to_string(), "orders@1.2.0");

    let missing = MessageKey::Request("refund".parse().unwrap());
    let problem = cache.get_or_compile(&document, &missing, &external).unwrap_err();
    assert!(
        problem.to_string().contains("declares no request of refund"),
        "{problem}"
    );

    let compiled = compile_contract(&document, &external).unwrap();
    cache.insert_contract(&compiled);
    assert_eq!(cache.len(), document.messages().count());
    cache.remove_contract(&document.id());
    assert!(cache.is_empty());
}

#[test]
fn every_shop_message_type_matches_its_own_schema() {
    // Serialize a value of each request type and check it against the
    // exported schema: the Rust types and the documents agree.
    let documents = shop::contracts().unwrap();
    let mut external = SchemaSet::default();
    for document in &documents {
        external.add_contract(document);
    }
    let samples: Vec<(&str, &str, Value)> = vec![
        ("orders", "place", valid_order()),
        ("orders", "get", json!({"order_id": "ord-1"})),
        ("orders", "list", json!({"status": "completed", "limit": 10})),
        (
            "inventory",
            "reserve",
            json!({"order_id": "ord-1", "items": [{"sku": "a", "quantity": 1}]}),
        ),
        ("inventory", "release", json!({"order_id": "ord-1"})),
        (
            "payments",
            "charge",
            json!({"order_id": "o", "customer_id": "c", "amount": {"amount_cents": 1, "currency": "EUR"}}),
        ),
        (
            "shipping",
            "schedule",
            json!({"order_id": "o", "items": [{"sku": "a", "quantity": 1}]}),
        ),
        (
            "notifications",
            "send",
            json!({"order_id": "o", "customer_id": "c", "kind": "order-confirmed", "message": "hi"}),
        ),
    ];
    for (service, operation, sample) in samples {
        let document = documents.iter().find(|d| d.service.as_str() == service).unwrap();
        let compiled = compile_contract(document, &external).unwrap();
        let validator = &compiled.validators[&MessageKey::Request(operation.parse().unwrap())];
        validator
            .validate(&sample)
            .unwrap_or_else(|failure| panic!("{service}#{operation}: {failure}"));
    }
}
