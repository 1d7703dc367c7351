//! Reading, checking and linting contract documents: every bad document
//! gives one clear error naming where the problem is, and none panics.

use contracts::lint::{Rule, has_errors};
use contracts::locate::Position;
use contracts::{DocumentError, Limits, SchemaSet, check_document};
use serde_json::{Value, json};

use crate::sample_document;

/// A finding as the tests compare it: rule, pointer, position, message.
type Found = (Rule, String, Option<Position>, String);

/// Checks `text` and returns the error text, or the findings as text.
fn check(text: &str) -> Result<Vec<Found>, DocumentError> {
    let (_, findings) = check_document("inventory.json", text, &Limits::default(), &SchemaSet::default())?;
    Ok(findings
        .into_iter()
        .map(|finding| (finding.rule, finding.pointer, finding.position, finding.message))
        .collect())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

/// Applies `edit` to the sample document and checks the result.
fn check_edited(edit: impl FnOnce(&mut Value)) -> Result<Vec<Found>, DocumentError> {
    let mut document = sample_document();
    edit(&mut document);
    check(&pretty(&document))
}

#[test]
fn the_sample_is_clean() {
    assert_eq!(check(&pretty(&sample_document())).unwrap(), vec![]);
}

#[test]
fn malformed_json_names_line_and_column() {
    let text = "{\n  \"contract\": \"soabus/v1\",\n  \"service\": \"inventory\"\n  \"version\": \"1.0.0\"\n}";
    let err = check(text).unwrap_err();
    let DocumentError::Syntax { position, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*position, Position { line: 4, column: 3 });
    assert_eq!(
        err.to_string(),
        "inventory.json:4:3: not valid JSON: expected `,` or `}`"
    );
    assert!(check("").unwrap_err().to_string().contains("not valid JSON"));
    assert!(check("[1, 2").unwrap_err().to_string().contains("not valid JSON"));
}

#[test]
fn wrong_types_name_the_pointer_and_line() {
    let err = check_edited(|doc| doc["operations"]["reserve"]["idempotent"] = json!("yes")).unwrap_err();
    let DocumentError::Invalid { problems, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].pointer, "/operations/reserve/idempotent");
    assert!(problems[0].message.contains("is not of type \"boolean\""), "{err}");
    let line = problems[0].position.unwrap().line;
    let text = pretty(&{
        let mut doc = sample_document();
        doc["operations"]["reserve"]["idempotent"] = json!("yes");
        doc
    });
    assert!(text.lines().nth(line - 1).unwrap().contains("\"idempotent\": \"yes\""));
    assert!(
        err.to_string()
            .starts_with("inventory.json: not a valid contract document"),
        "{err}"
    );
}

#[test]
fn missing_and_misspelt_required_fields() {
    let err = check_edited(|doc| {
        doc.as_object_mut().unwrap().remove("owner");
    })
    .unwrap_err();
    assert!(err.to_string().contains("\"owner\" is a required property"), "{err}");

    let err = check_edited(|doc| doc["version"] = json!("1.3")).unwrap_err();
    assert!(err.to_string().contains("at /version"), "{err}");
}

#[test]
fn unknown_fields_point_at_the_field() {
    let err = check_edited(|doc| doc["operations"]["reserve"]["timeout"] = json!(5)).unwrap_err();
    let DocumentError::Invalid { problems, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].pointer, "/operations/reserve/timeout");
    assert!(problems[0].message.contains("unknown field \"timeout\""), "{err}");

    let err = check_edited(|doc| doc["colour"] = json!("blue")).unwrap_err();
    assert!(
        err.to_string().contains("at /colour: unknown field \"colour\""),
        "{err}"
    );
}

#[test]
fn unknown_format_tag_is_refused() {
    let err = check_edited(|doc| doc["contract"] = json!("soabus/v2")).unwrap_err();
    assert!(err.to_string().contains("at /contract"), "{err}");
}

#[test]
fn bad_names_are_refused_by_their_rules() {
    let err = check_edited(|doc| doc["service"] = json!("Inventory")).unwrap_err();
    assert!(err.to_string().contains("at /service"), "{err}");
    let err = check_edited(|doc| doc["consumes"] = json!(["orders#placed"])).unwrap_err();
    assert!(err.to_string().contains("at /consumes/0"), "{err}");
    let err =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.inventory v1.reserve")).unwrap_err();
    assert!(err.to_string().contains("at /operations/reserve/subject"), "{err}");
    let err =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.inventory.*.reserve")).unwrap_err();
    assert!(err.to_string().contains("only allowed in patterns"), "{err}");
}

#[test]
fn remote_refs_are_refused_with_the_pointer() {
    for target in [
        "https://example.com/schemas/reservation.json",
        "http://example.com/s.json#/x",
        "file:///etc/passwd",
        "reservation.json",
    ] {
        let findings = check_edited(|doc| doc["operations"]["reserve"]["request"] = json!({"$ref": target})).unwrap();
        assert_eq!(findings.len(), 1, "{target}: {findings:#?}");
        let (rule, pointer, position, message) = &findings[0];
        assert_eq!(*rule, Rule::RemoteRef);
        assert_eq!(pointer, "/operations/reserve/request/$ref");
        assert!(position.is_some());
        assert!(message.contains("may only refer inside the document"), "{message}");
    }
}

#[test]
fn refs_must_resolve() {
    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["request"] = json!({"$ref": "#/$defs/Nope"})).unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, Rule::UnresolvedRef);
    assert!(findings[0].3.contains("points to nothing"));

    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["request"] = json!({"$ref": "soa://payments@1#/$defs/Money"}))
            .unwrap();
    assert_eq!(findings[0].0, Rule::UnresolvedRef);
    assert!(
        findings[0].3.contains("payments@1, which is not registered"),
        "{}",
        findings[0].3
    );
}

#[test]
fn cross_contract_refs_resolve_through_supplied_contracts() {
    let mut payments = sample_document();
    payments["service"] = json!("payments");
    payments["operations"] = json!({});
    payments["events"] = json!({});
    payments["$defs"] = json!({"Money": {"type": "integer", "minimum": 0}});
    let payments = contracts::ContractDocument::parse("payments.json", &pretty(&payments), &Limits::default()).unwrap();
    let mut external = SchemaSet::default();
    external.add_contract(&payments);

    let mut document = sample_document();
    document["operations"]["reserve"]["response"] = json!({"$ref": "soa://payments@1#/$defs/Money"});
    let (document, findings) =
        check_document("inventory.json", &pretty(&document), &Limits::default(), &external).unwrap();
    assert_eq!(findings, vec![]);
    let compiled = contracts::compile_contract(&document, &external).unwrap();
    let response = &compiled.validators[&contracts::MessageKey::Response("reserve".parse().unwrap())];
    assert!(response.is_valid(&json!(5)));
    assert!(!response.is_valid(&json!(-5)));
    assert!(!response.is_valid(&json!("five")));

    let mut missing = sample_document();
    missing["operations"]["reserve"]["response"] = json!({"$ref": "soa://payments@1#/$defs/Euro"});
    let (_, findings) = check_document("inventory.json", &pretty(&missing), &Limits::default(), &external).unwrap();
    assert_eq!(findings[0].rule, Rule::UnresolvedRef);
    assert!(
        findings[0].message.contains("has nothing at #/$defs/Euro"),
        "{}",
        findings[0].message
    );
}

#[test]
fn unknown_remote_schema_dialects_are_refused() {
    let findings = check_edited(|doc| {
        doc["$defs"]["Reservation"]["$schema"] = json!("https://example.com/my-meta-schema");
    })
    .unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, Rule::UnknownDialect);
    assert_eq!(findings[0].1, "/$defs/Reservation/$schema");

    let findings = check_edited(|doc| {
        doc["$defs"]["Reservation"]["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    })
    .unwrap();
    assert_eq!(findings, vec![]);
}

#[test]
fn ids_inside_contract_schemas_are_refused() {
    let findings =
        check_edited(|doc| doc["$defs"]["Reservation"]["$id"] = json!("https://example.com/r.json")).unwrap();
    assert_eq!(findings[0].0, Rule::ForbiddenId);
}

#[test]
fn subjects_without_the_major_version_are_refused() {
    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.inventory.reserve")).unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, Rule::SubjectShape);
    assert!(
        findings[0].3.contains("shop.inventory.v1.reserve") || findings[0].3.contains("<domain>.inventory.v1.reserve")
    );

    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.inventory.v2.reserve")).unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, Rule::SubjectMajor);
    assert!(findings[0].3.contains("carries major version 2"), "{}", findings[0].3);

    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.inventory.latest.reserve")).unwrap();
    assert_eq!(findings[0].0, Rule::SubjectMajor);
}

#[test]
fn other_subject_rules() {
    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.stock.v1.reserve")).unwrap();
    assert_eq!(
        findings.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![Rule::SubjectService]
    );
    let findings =
        check_edited(|doc| doc["operations"]["reserve"]["subject"] = json!("shop.inventory.v1.hold")).unwrap();
    assert_eq!(
        findings.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![Rule::SubjectName]
    );
    let findings =
        check_edited(|doc| doc["events"]["reserved"]["subject"] = json!("store.inventory.v1.reserved")).unwrap();
    assert_eq!(
        findings.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![Rule::SubjectDomain]
    );
    assert!(!has_errors(
        &check_document(
            "x",
            &pretty(&{
                let mut doc = sample_document();
                doc["events"]["reserved"]["subject"] = json!("store.inventory.v1.reserved");
                doc
            }),
            &Limits::default(),
            &SchemaSet::default()
        )
        .unwrap()
        .1
    ));
}

#[test]
fn duplicate_subjects_are_refused() {
    let findings = check_edited(|doc| {
        doc["events"]["reserve"] = json!({
            "subject": "shop.inventory.v1.reserve",
            "description": "clash",
            "payload": true
        });
    })
    .unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, Rule::DuplicateSubject);
    assert!(findings[0].3.contains("already used at"), "{}", findings[0].3);
}

#[test]
fn schemas_that_do_not_compile_are_refused() {
    let findings =
        check_edited(|doc| doc["$defs"]["Reservation"]["properties"]["quantity"]["type"] = json!("integr")).unwrap();
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| f.0 == Rule::InvalidSchema), "{findings:#?}");
    assert!(
        findings[0].1.starts_with("/$defs/Reservation/properties/quantity/type"),
        "{findings:#?}"
    );

    let findings =
        check_edited(|doc| doc["$defs"]["Reservation"]["properties"]["quantity"]["minimum"] = json!("one")).unwrap();
    assert!(
        findings.iter().all(|f| f.0 == Rule::InvalidSchema) && !findings.is_empty(),
        "{findings:#?}"
    );

    // A pattern the linear-time engine cannot compile (a back-reference).
    let findings =
        check_edited(|doc| doc["$defs"]["Reservation"]["properties"]["order_id"]["pattern"] = json!("^(a)\\1$"))
            .unwrap();
    assert_eq!(
        findings.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![Rule::SchemaCompile],
        "{findings:#?}"
    );
    assert!(findings[0].3.contains("does not compile"), "{}", findings[0].3);

    let findings =
        check_edited(|doc| doc["$defs"]["Reservation"]["properties"]["order_id"]["pattern"] = json!("([")).unwrap();
    assert!(
        !findings.is_empty()
            && findings
                .iter()
                .all(|f| matches!(f.0, Rule::SchemaCompile | Rule::InvalidSchema)),
        "{findings:#?}"
    );
}

#[test]
fn operations_need_descriptions() {
    let findings = check_edited(|doc| {
        doc["operations"]["reserve"]
            .as_object_mut()
            .unwrap()
            .remove("description");
    })
    .unwrap();
    assert_eq!(
        findings.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![Rule::OperationDescription]
    );
    assert_eq!(findings[0].1, "/operations/reserve");
}

#[test]
fn declared_examples_must_validate() {
    let findings = check_edited(|doc| {
        doc["$defs"]["Reservation"]["examples"] =
            json!([{"order_id": "o-1", "quantity": 2}, {"order_id": "o-1", "quantity": 0}]);
    })
    .unwrap();
    assert_eq!(
        findings.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![Rule::InvalidExample],
        "{findings:#?}"
    );
    assert_eq!(findings[0].1, "/$defs/Reservation/examples/1");
    assert!(findings[0].3.contains("/quantity"), "{}", findings[0].3);
}

#[test]
fn a_50_megabyte_document_is_refused_before_parsing() {
    let mut document = sample_document();
    document["description"] = json!("x".repeat(50 * 1024 * 1024));
    let err = check(&document.to_string()).unwrap_err();
    assert!(matches!(err, DocumentError::TooLarge { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("over the limit of 4194304 bytes"), "{message}");
    assert!(message.len() < 400);
}

#[test]
fn ten_thousand_deep_nesting_is_refused_without_overflow() {
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = check(&deep_array).unwrap_err();
    assert!(matches!(err, DocumentError::TooDeep { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("inventory.json:1:65: the document nests"),
        "{err}"
    );

    // Deep nesting inside an otherwise valid document, and unclosed nesting.
    // Built as text: a serde_json value this deep would overflow the stack itself.
    let nested = format!("{}1{}", "{\"not\":".repeat(10_000), "}".repeat(10_000));
    let text = format!(
        "{{\"contract\":\"soabus/v1\",\"service\":\"a\",\"version\":\"1.0.0\",\"description\":\"d\",\"owner\":\"o\",\"$defs\":{{\"X\":{nested}}}}}"
    );
    assert!(matches!(check(&text).unwrap_err(), DocumentError::TooDeep { .. }));
    assert!(matches!(
        check(&"{\"a\":".repeat(10_000)).unwrap_err(),
        DocumentError::TooDeep { .. }
    ));
}

#[test]
fn errors_list_every_problem_once() {
    let err = check_edited(|doc| {
        doc["version"] = json!(3);
        doc["owner"] = json!("");
        doc["tags"] = json!(["shop", "shop"]);
    })
    .unwrap_err();
    let problems = err.problems();
    let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
    assert!(
        pointers.contains(&"/version") && pointers.contains(&"/owner") && pointers.contains(&"/tags"),
        "{err}"
    );
    assert_eq!(err.to_string().matches("\n  - ").count(), problems.len());
}
