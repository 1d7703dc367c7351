//! The contract a workflow is published under: the workflow as a service
//! with a `start` operation (whose request carries the definition's input
//! schema) and a `finished` event, so callers find, validate and call it
//! like any other service.

use serde_json::{Map, Value, json};

use super::model::WorkflowDefinition;
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::{MemberName, NameError, Subject};
use crate::operation::OperationType;
use crate::orchestrator_api::{StartWorkflowRequest, StartWorkflowResponse, WorkflowFinished};

/// Marker types tying a workflow contract's members to their messages.
pub mod ops {
    use super::*;

    crate::operations! {
        /// Start an instance of the workflow.
        Start = "start": StartWorkflowRequest => StartWorkflowResponse;
    }

    crate::events! {
        /// An instance of the workflow ended.
        Finished = "finished": WorkflowFinished;
    }
}

/// The tag every workflow contract carries, besides the definition's own.
pub const WORKFLOW_TAG: &str = "workflow";

/// The longest idempotency key a start request may carry.
pub const MAX_IDEMPOTENCY_KEY_CHARS: u64 = 256;

/// The workflow as a service: its generated contract. The `start` request is
/// [`StartWorkflowRequest`] with its `input` replaced by the definition's
/// input schema; the definition's `$defs` become the contract's (schemas
/// derived from Rust types are renamed when a name is taken).
pub fn workflow_contract(definition: &WorkflowDefinition) -> Result<ContractDocument, NameError> {
    let mut tags: Vec<&str> = definition.tags.iter().map(String::as_str).collect();
    if !tags.contains(&WORKFLOW_TAG) {
        tags.push(WORKFLOW_TAG);
    }
    let start_description = format!(
        "Start an instance of the {} workflow; the same idempotency key starts one instance",
        definition.name
    );
    let mut document = ContractBuilder::new(
        &definition.domain,
        definition.name.as_str(),
        &definition.version.to_string(),
        &definition.description,
        &definition.owner,
    )?
    .tags(&tags)
    .operation::<ops::Start>(OperationSpec {
        description: &start_description,
        errors: &[],
        idempotent: true,
    })?
    .event::<ops::Finished>("An instance ended: completed, compensated, cancelled or failed")?
    .build();

    let start = MemberName::parse(ops::Start::NAME)?;
    if let Some(operation) = document.operations.get_mut(&start) {
        let derived = take_definition(&operation.request, &mut document.defs);
        operation.request = start_request(derived, &definition.input);
    }
    make_room_for(&mut document, definition.defs.keys());
    document.defs.extend(definition.defs.clone());
    document.calls = definition.called_operations();
    document.consumes = definition
        .trigger
        .iter()
        .map(|trigger| trigger.event.clone().into())
        .collect();
    Ok(document)
}

/// The subject of a workflow's `start` operation: `<domain>.<name>.v<major>.start`.
pub fn start_subject(definition: &WorkflowDefinition) -> Result<Subject, NameError> {
    crate::subjects::member(
        &definition.domain,
        &definition.name,
        definition.version.major(),
        &MemberName::parse(ops::Start::NAME)?,
    )
}

/// The schema `schema` stands for: the shared definition it refers to
/// (taken out of `defs`, as it is about to be rewritten) or itself.
fn take_definition(schema: &Value, defs: &mut std::collections::BTreeMap<String, Value>) -> Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("#/$defs/"))
        .and_then(|name| defs.remove(name))
        .unwrap_or_else(|| schema.clone())
}

/// The derived start request with the workflow's input schema in place of
/// its free `input`, and its optional strings without `null`.
fn start_request(derived: Value, input: &Value) -> Value {
    let mut request = match derived {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    let mut properties = match request.remove("properties") {
        Some(Value::Object(properties)) => properties,
        _ => Map::new(),
    };
    let described = |properties: &Map<String, Value>, name: &str, fallback: &str| {
        properties
            .get(name)
            .and_then(|property| property.get("description"))
            .and_then(Value::as_str)
            .unwrap_or(fallback)
            .to_owned()
    };
    let idempotency = described(
        &properties,
        "idempotency_key",
        "Starts with the same key start one instance.",
    );
    let correlation = described(&properties, "correlation_id", "The flow's correlation id.");
    properties.insert("input".to_owned(), input.clone());
    properties.insert(
        "idempotency_key".to_owned(),
        json!({
            "description": idempotency,
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY_CHARS,
        }),
    );
    properties.insert(
        "correlation_id".to_owned(),
        json!({ "description": correlation, "type": "string" }),
    );
    request.insert("type".to_owned(), json!("object"));
    request.insert("properties".to_owned(), Value::Object(properties));
    request.insert("required".to_owned(), json!(["input"]));
    request.insert("additionalProperties".to_owned(), Value::Bool(false));
    Value::Object(request)
}

/// Renames the derived shared schemas whose names the definition's `$defs`
/// take, and rewrites the references to them.
fn make_room_for<'a>(document: &mut ContractDocument, taken: impl Iterator<Item = &'a String>) {
    let taken: Vec<&String> = taken.collect();
    let colliding: Vec<String> = document
        .defs
        .keys()
        .filter(|name| taken.contains(name))
        .cloned()
        .collect();
    for name in colliding {
        let Some(fresh) = (2..)
            .map(|n| format!("{name}{n}"))
            .find(|candidate| !taken.contains(&candidate) && !document.defs.contains_key(candidate))
        else {
            continue;
        };
        if let Some(schema) = document.defs.remove(&name) {
            document.defs.insert(fresh.clone(), schema);
        }
        let from = format!("#/$defs/{name}");
        let to = format!("#/$defs/{fresh}");
        let schemas = document
            .operations
            .values_mut()
            .flat_map(|operation| [&mut operation.request, &mut operation.response])
            .chain(document.events.values_mut().map(|event| &mut event.payload))
            .chain(document.defs.values_mut());
        for schema in schemas {
            rename_references(schema, &from, &to);
        }
    }
}

/// Rewrites every `$ref` to `from` (or inside it) as one to `to`.
fn rename_references(schema: &mut Value, from: &str, to: &str) {
    let mut pending: Vec<&mut Value> = vec![schema];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                for (key, member) in object.iter_mut() {
                    if key == "$ref"
                        && let Value::String(reference) = member
                        && let Some(rest) = reference.strip_prefix(from)
                        && (rest.is_empty() || rest.starts_with('/'))
                    {
                        *reference = format!("{to}{rest}");
                    } else {
                        pending.push(member);
                    }
                }
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::MessageKey;
    use crate::lint::{Severity, lint};
    use crate::parse::Limits;
    use crate::schema::{SchemaSet, compile_contract, compile_message};
    use crate::workflow::parse::parse_definition;

    const FULFILMENT: &str = include_str!("../../tests/data/workflows/fulfilment.v1.json");

    fn fulfilment() -> WorkflowDefinition {
        parse_definition("fulfilment.v1.json", FULFILMENT, &Limits::default()).unwrap()
    }

    #[track_caller]
    fn lints_clean(document: &ContractDocument) {
        let findings = lint(document, None, &SchemaSet::default());
        assert!(
            findings.iter().all(|finding| finding.severity != Severity::Error),
            "{findings:#?}"
        );
        compile_contract(document, &SchemaSet::default()).unwrap();
        // And it reads back as a contract document.
        ContractDocument::from_json_value("generated", &document.to_value(), None).unwrap();
    }

    #[test]
    fn the_fulfilment_contract_lints_clean_and_starts_on_its_subject() {
        let definition = fulfilment();
        let document = workflow_contract(&definition).unwrap();
        lints_clean(&document);
        assert_eq!(document.id().to_string(), "fulfilment@1.1.0");
        assert_eq!(document.tags, ["shop", "workflow"]);
        assert_eq!(start_subject(&definition).unwrap().as_str(), "shop.fulfilment.v1.start");
        let start = &document.operations[&MemberName::parse("start").unwrap()];
        assert_eq!(start.subject.as_str(), "shop.fulfilment.v1.start");
        assert!(start.idempotent);
        assert!(start.errors.is_empty());
        let finished = &document.events[&MemberName::parse("finished").unwrap()];
        assert_eq!(finished.subject.as_str(), "shop.fulfilment.v1.finished");
        let calls: Vec<String> = document.calls.iter().map(ToString::to_string).collect();
        assert_eq!(
            calls,
            [
                "inventory@1#release",
                "inventory@1#reserve",
                "notifications@1#send",
                "payments@1#charge",
                "payments@1#refund",
                "shipping@1#cancel",
                "shipping@1#schedule"
            ]
        );
        assert!(document.consumes.is_empty());
        for name in [
            "OrderId",
            "LineItem",
            "Money",
            "StartWorkflowResponse",
            "WorkflowFinished",
        ] {
            assert!(document.defs.contains_key(name), "{name}: {:?}", document.defs.keys());
        }
        assert!(!document.defs.contains_key("StartWorkflowRequest"));
    }

    #[test]
    fn the_start_request_carries_the_input_schema() {
        let document = workflow_contract(&fulfilment()).unwrap();
        let start = MemberName::parse("start").unwrap();
        let validator = compile_message(&document, &MessageKey::Request(start), &SchemaSet::default()).unwrap();
        let input = json!({
            "order_id": "ord-1",
            "customer_id": "cust-42",
            "items": [{"sku": "sku-kettle", "quantity": 1, "unit_price": {"amount_cents": 2999, "currency": "EUR"}}],
            "total": {"amount_cents": 2999, "currency": "EUR"}
        });
        assert!(validator.is_valid(&json!({"input": input, "idempotency_key": "ord-1", "correlation_id": "c-1"})));
        assert!(validator.is_valid(&json!({"input": input})));
        let mut bad_input = input.clone();
        bad_input["total"]["currency"] = json!("euro");
        assert!(!validator.is_valid(&json!({"input": bad_input})));
        assert!(!validator.is_valid(&json!({"input": input, "idempotency_key": ""})));
        assert!(!validator.is_valid(&json!({"input": input, "idempotency_key": "k".repeat(257)})));
        assert!(!validator.is_valid(&json!({"input": input, "priority": 1})));
        assert!(!validator.is_valid(&json!({"idempotency_key": "k"})));
    }

    #[test]
    fn derived_schemas_make_room_for_the_definitions_names() {
        let mut definition = fulfilment();
        definition.defs.insert(
            "InstanceStatus".to_owned(),
            json!({"type": "string", "description": "Mine."}),
        );
        definition.domain = "workflow".to_owned();
        definition.trigger = Some(super::super::model::Trigger {
            event: crate::names::ContractRef::parse("orders@1#placed").unwrap(),
            input: None,
        });
        let document = workflow_contract(&definition).unwrap();
        lints_clean(&document);
        assert_eq!(document.defs["InstanceStatus"], definition.defs["InstanceStatus"]);
        assert!(document.defs.contains_key("InstanceStatus2"));
        let text = document.to_value().to_string();
        assert!(text.contains("#/$defs/InstanceStatus2"), "{text}");
        assert_eq!(document.consumes.len(), 1);
        assert_eq!(document.consumes[0].event.to_string(), "orders@1#placed");
        assert_eq!(
            start_subject(&definition).unwrap().as_str(),
            "workflow.fulfilment.v1.start"
        );
    }
}
