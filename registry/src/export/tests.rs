//! The exports without a registry: AsyncAPI documents of the shop's and the
//! registry's contracts checked against the official schema, reference and
//! dialect rewriting, and the graph drawings as snapshots.

use contracts::registry_api::{EdgeKind, GraphEdge, GraphNode, GraphResponse};
use contracts::{ContractDocument, ServiceName, Version};
use expect_test::{expect, expect_file};
use serde_json::{Value, json};

use super::asyncapi::{
    ContractMajor, ExportOptions, ServerAddress, dependencies_of, service_document, system_document, validate, warnings,
};
use super::graph::{dot, mermaid};

fn shop_contracts() -> Vec<ContractDocument> {
    crate::sample::shop_contracts()
}

fn shop_contract(service: &str) -> ContractDocument {
    shop_contracts()
        .into_iter()
        .find(|document| document.service.as_str() == service)
        .unwrap()
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap();
    text.push('\n');
    text
}

#[track_caller]
fn assert_valid(document: &Value) {
    if let Err(problems) = validate(document) {
        panic!(
            "not a valid AsyncAPI 3.0.0 document:\n{}\n{}",
            problems.join("\n"),
            pretty(document)
        );
    }
}

/// A contract from JSON, with the fields every test contract shares.
fn contract(service: &str, version: &str, rest: Value) -> ContractDocument {
    let mut document = json!({
        "contract": "soabus/v1",
        "service": service,
        "version": version,
        "description": format!("The {service} service"),
        "owner": "team",
    });
    let (Value::Object(document_fields), Value::Object(rest)) = (&mut document, rest) else {
        panic!("objects expected");
    };
    document_fields.extend(rest);
    serde_json::from_value(document).unwrap()
}

#[test]
fn every_shop_contract_and_the_registry_validate() {
    // With the fulfilment workflow's contract, which orders starts and consumes.
    let mut shop = shop_contracts();
    shop.push(contracts::shop::fulfilment::contract().unwrap());
    let mut all = shop.clone();
    all.push(contracts::registry_api::contract().unwrap());
    for document in &all {
        let exported = service_document(document, &shop, &ExportOptions::default());
        assert_valid(&exported);
        assert_eq!(warnings(&exported), Vec::<String>::new(), "{}", document.id());
        assert_eq!(exported["info"]["title"], document.service.as_str());
        assert_eq!(exported["info"]["version"], document.version.to_string());
    }
    let system = system_document(&all, &ExportOptions::default());
    assert_valid(&system);
    assert_eq!(warnings(&system), Vec::<String>::new());
    // An empty registry is an empty system, still a valid document.
    assert_valid(&system_document(&[], &ExportOptions::default()));
}

#[test]
fn the_inventory_document() {
    let exported = service_document(
        &shop_contract("inventory"),
        &shop_contracts(),
        &ExportOptions {
            server: Some(ServerAddress::parse("nats://nats.example.com:4222").unwrap()),
        },
    );
    assert_valid(&exported);
    expect_file!["snapshots/inventory.asyncapi.json"].assert_eq(&pretty(&exported));
}

#[test]
fn operations_are_served_in_the_service_queue_group_and_reply_to_an_inbox() {
    let exported = service_document(
        &shop_contract("inventory"),
        &shop_contracts(),
        &ExportOptions::default(),
    );
    let reserve = &exported["operations"]["reserve"];
    assert_eq!(reserve["action"], "receive");
    assert_eq!(reserve["channel"]["$ref"], "#/channels/reserve");
    assert_eq!(
        reserve["bindings"]["nats"],
        json!({"queue": "inventory", "bindingVersion": "0.1.0"})
    );
    assert_eq!(reserve["reply"]["channel"]["$ref"], "#/channels/reserve.reply");
    assert_eq!(exported["channels"]["reserve"]["address"], "shop.inventory.v1.reserve");
    assert_eq!(exported["channels"]["reserve.reply"]["address"], Value::Null);
    assert_eq!(
        exported["channels"]["reserve"]["messages"]["request"]["payload"],
        json!({"$ref": "#/components/schemas/ReserveStock"})
    );
    // The declared error joins the common ones.
    let codes = &exported["channels"]["reserve.reply"]["messages"]["error"]["payload"]["properties"]["code"]["enum"];
    assert!(codes.as_array().unwrap().contains(&json!("OUT_OF_STOCK")), "{codes}");
    assert!(
        codes.as_array().unwrap().contains(&json!("VALIDATION_FAILED")),
        "{codes}"
    );

    let reserved = &exported["operations"]["reserved"];
    assert_eq!(reserved["action"], "send");
    assert_eq!(
        exported["channels"]["reserved"]["x-soa-stream"],
        "SOA_EVENTS_INVENTORY_V1"
    );

    // A consumed event is received on the producer's channel, with the
    // producer's schemas under its prefix.
    let placed = &exported["operations"]["consume.orders.v1.placed"];
    assert_eq!(placed["action"], "receive");
    assert_eq!(placed["channel"]["$ref"], "#/channels/orders.v1.placed");
    assert_eq!(
        exported["channels"]["orders.v1.placed"]["address"],
        "shop.orders.v1.placed"
    );
    assert_eq!(
        exported["channels"]["orders.v1.placed"]["messages"]["placed"]["payload"],
        json!({"$ref": "#/components/schemas/orders.v1.OrderPlaced"})
    );
    assert!(exported["components"]["schemas"]["orders.v1.OrderPlaced"].is_object());
    // Only what is reached is taken from another contract.
    assert!(exported["components"]["schemas"]["orders.v1.PlaceOrder"].is_null());
    // The placeholder server.
    assert_eq!(exported["servers"]["nats"]["host"], "{host}");
    assert_eq!(
        exported["servers"]["nats"]["variables"]["host"]["default"],
        "localhost:4222"
    );
}

#[test]
fn a_consumed_event_without_its_producer_is_left_out_with_a_warning() {
    let exported = service_document(&shop_contract("inventory"), &[], &ExportOptions::default());
    assert_valid(&exported);
    assert!(exported["operations"]["consume.orders.v1.placed"].is_null());
    expect![[r##"
        [
            "inventory@1.1.0 consumes orders@1#placed, but the contract of orders@1 is not available; it is left out",
            "inventory@1.1.0 consumes payments@1#declined, but the contract of payments@1 is not available; it is left out",
            "inventory@1.1.0 consumes shipping@1#failed, but the contract of shipping@1 is not available; it is left out",
        ]
    "##]]
    .assert_debug_eq(&warnings(&exported));
}

#[test]
fn the_system_document_prefixes_every_name_and_shares_producer_channels() {
    let system = system_document(&shop_contracts(), &ExportOptions::default());
    assert_valid(&system);
    assert_eq!(system["info"]["title"], "soabus system");
    let version = system["info"]["version"].as_str().unwrap();
    assert!(version.starts_with("0.0.0+") && version.len() == 18, "{version}");
    assert_eq!(system["operations"]["inventory.v1.reserve"]["action"], "receive");
    assert_eq!(system["operations"]["orders.v1.placed"]["action"], "send");
    // Producer and consumer meet on one channel.
    assert_eq!(
        system["operations"]["inventory.v1.consume.orders.v1.placed"]["channel"]["$ref"],
        "#/channels/orders.v1.placed"
    );
    assert_eq!(
        system["operations"]["orders.v1.placed"]["channel"]["$ref"],
        "#/channels/orders.v1.placed"
    );
    assert_eq!(
        system["operations"]["inventory.v1.reserve"]["tags"],
        json!([{"name": "inventory"}])
    );
    assert!(system["components"]["schemas"]["inventory.v1.ReserveStock"].is_object());
    // The same contracts give the same document; another version another one.
    assert_eq!(system, system_document(&shop_contracts(), &ExportOptions::default()));
    let mut changed = shop_contracts();
    changed[0].version = Version::new(1, 0, 1);
    assert_ne!(
        system["info"]["version"],
        system_document(&changed, &ExportOptions::default())["info"]["version"]
    );
}

#[test]
fn references_into_other_contracts_become_prefixed_components() {
    let payments = contract(
        "payments",
        "1.2.0",
        json!({
            "$defs": {
                "Money": {
                    "type": "object",
                    "properties": {"amount": {"type": "integer"}, "currency": {"$ref": "#/$defs/Currency"}},
                },
                "Currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "Unused": {"type": "null"},
            },
        }),
    );
    let older = contract("payments", "1.0.0", json!({}));
    let billing = contract(
        "billing",
        "2.0.0",
        json!({
            "events": {
                "billed": {
                    "subject": "shop.billing.v2.billed",
                    "payload": {
                        "type": "object",
                        "properties": {
                            "total": {"$ref": "soa://payments@1#/$defs/Money"},
                            "currency": {"$ref": "soa://payments@1#/$defs/Money/properties/currency"},
                            "own": {"$ref": "soa://billing@2#/$defs/Money"},
                            "gone": {"$ref": "soa://ledger@1#/$defs/Entry", "description": "Kept."},
                        },
                    },
                },
            },
            "$defs": {"Money": {"type": "number"}},
        }),
    );
    assert_eq!(
        dependencies_of(&billing)
            .into_iter()
            .map(|key| key.to_string())
            .collect::<Vec<_>>(),
        ["ledger@1", "payments@1"]
    );
    let exported = service_document(&billing, &[older, payments], &ExportOptions::default());
    assert_valid(&exported);
    expect![[r##"
        {
          "properties": {
            "currency": {
              "$ref": "#/components/schemas/payments.v1.Money/properties/currency"
            },
            "gone": {
              "description": "Kept.",
              "x-soa-unresolved-ref": "soa://ledger@1#/$defs/Entry"
            },
            "own": {
              "$ref": "#/components/schemas/Money"
            },
            "total": {
              "$ref": "#/components/schemas/payments.v1.Money"
            }
          },
          "type": "object"
        }
    "##]]
    .assert_eq(&pretty(
        &exported["channels"]["billed"]["messages"]["billed"]["payload"],
    ));
    let schemas = &exported["components"]["schemas"];
    // The newest payments@1 is used, its own references followed, and only what is reached copied.
    assert_eq!(
        schemas["payments.v1.Money"]["properties"]["currency"],
        json!({"$ref": "#/components/schemas/payments.v1.Currency"})
    );
    assert!(schemas["payments.v1.Currency"].is_object());
    assert!(schemas["payments.v1.Unused"].is_null());
    assert_eq!(schemas["Money"], json!({"type": "number"}));
    expect![[r##"
        [
            "billing@2.0.0 /events/billed/payload/properties/gone: the reference soa://ledger@1#/$defs/Entry is left out: the contract ledger@1 is not available",
        ]
    "##]]
    .assert_debug_eq(&warnings(&exported));
}

#[test]
fn draft_2020_12_keywords_are_translated_for_asyncapi() {
    let document = contract(
        "points",
        "1.0.0",
        json!({
            "operations": {
                "add": {
                    "subject": "shop.points.v1.add",
                    "request": {
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                        "type": "object",
                        "properties": {
                            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"$ref": "#/$defs/Count"}], "items": false},
                            "count": {"$ref": "#/$defs/Count", "maximum": 10, "description": "At most ten."},
                            "note": {"$ref": "#/$defs/Count", "description": "Annotations stay beside the reference."},
                            "$ref": {"type": "string", "description": "A property named $ref is no reference."},
                        },
                        "dependentRequired": {"pair": ["count"]},
                        "dependentSchemas": {"count": {"required": ["note"]}, "pair": {"minProperties": 2}},
                        "unevaluatedProperties": false,
                        "default": {"$ref": "#/not/a/reference"},
                    },
                    "response": true,
                },
            },
            "$defs": {"Count": {"type": "integer", "minimum": 0}},
        }),
    );
    let exported = service_document(&document, &[], &ExportOptions::default());
    assert_valid(&exported);
    expect![[r##"
        {
          "default": {
            "$ref": "#/not/a/reference"
          },
          "dependencies": {
            "count": {
              "required": [
                "note"
              ]
            },
            "pair": {
              "allOf": [
                {
                  "minProperties": 2
                },
                {
                  "required": [
                    "count"
                  ]
                }
              ]
            }
          },
          "properties": {
            "$ref": {
              "description": "A property named $ref is no reference.",
              "type": "string"
            },
            "count": {
              "allOf": [
                {
                  "$ref": "#/components/schemas/Count"
                }
              ],
              "description": "At most ten.",
              "maximum": 10
            },
            "note": {
              "$ref": "#/components/schemas/Count",
              "description": "Annotations stay beside the reference."
            },
            "pair": {
              "additionalItems": false,
              "items": [
                {
                  "type": "string"
                },
                {
                  "$ref": "#/components/schemas/Count"
                }
              ],
              "type": "array"
            }
          },
          "type": "object",
          "unevaluatedProperties": false
        }
    "##]]
    .assert_eq(&pretty(&exported["channels"]["add"]["messages"]["request"]["payload"]));
    expect![[r##"
        [
            "points@1.0.0 /operations/add/request: `unevaluatedProperties` has no JSON Schema draft-07 counterpart; AsyncAPI tools will not enforce it",
        ]
    "##]]
    .assert_debug_eq(&warnings(&exported));
}

#[test]
fn calls_are_sent_with_a_reply_on_the_callee_channels() {
    let caller = contract(
        "checkout",
        "1.0.0",
        json!({"calls": ["inventory@1#reserve", "inventory@1#vanish"]}),
    );
    let exported = service_document(&caller, &[shop_contract("inventory")], &ExportOptions::default());
    assert_valid(&exported);
    let call = &exported["operations"]["call.inventory.v1.reserve"];
    assert_eq!(call["action"], "send");
    assert_eq!(call["channel"]["$ref"], "#/channels/inventory.v1.reserve");
    assert_eq!(
        call["reply"]["channel"]["$ref"],
        "#/channels/inventory.v1.reserve.reply"
    );
    assert!(call["bindings"].is_null(), "the queue group is the callee's business");
    assert_eq!(
        warnings(&exported),
        ["checkout@1.0.0 calls inventory@1#vanish, but inventory@1.1.0 declares no operation vanish; it is left out"]
    );
}

#[test]
fn a_broken_document_fails_validation() {
    let mut exported = service_document(
        &shop_contract("inventory"),
        &shop_contracts(),
        &ExportOptions::default(),
    );
    exported["operations"]["reserve"]["action"] = json!("subscribe");
    exported["servers"]["nats"].as_object_mut().unwrap().remove("protocol");
    let problems = validate(&exported).unwrap_err();
    let text = problems.join("\n");
    assert!(text.contains("/operations/reserve"), "{text}");
    assert!(text.contains("/servers/nats"), "{text}");
    assert!(validate(&json!({"asyncapi": "2.6.0", "info": {"title": "x", "version": "1"}})).is_err());

    // Valid against the schema, but pointing at nothing.
    let mut exported = service_document(
        &shop_contract("inventory"),
        &shop_contracts(),
        &ExportOptions::default(),
    );
    exported["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("StockLine");
    expect![[r#"
        [
            "/components/schemas/Reservation/properties/items/items/$ref: #/components/schemas/StockLine does not exist",
            "/components/schemas/ReserveStock/properties/items/items/$ref: #/components/schemas/StockLine does not exist",
            "/components/schemas/StockReserved/properties/items/items/$ref: #/components/schemas/StockLine does not exist",
        ]
    "#]]
    .assert_debug_eq(&validate(&exported).unwrap_err());
}

#[test]
fn server_addresses_parse_without_credentials() {
    let plain = ServerAddress::parse("nats://alice:secret@nats.example.com:4222").unwrap();
    assert_eq!(plain.host, "nats.example.com:4222");
    assert!(!plain.tls);
    assert!(ServerAddress::parse("tls://nats.example.com:4443").unwrap().tls);
    assert_eq!(ServerAddress::parse("localhost:4222").unwrap().host, "localhost:4222");
    for bad in [
        "http://example.com",
        "nats://",
        "nats://a:1,nats://b:2",
        "nats://host/path",
    ] {
        assert!(ServerAddress::parse(bad).is_err(), "{bad}");
    }
    let exported = service_document(
        &shop_contract("orders"),
        &[],
        &ExportOptions {
            server: Some(ServerAddress::parse("tls://nats.example.com:4443").unwrap()),
        },
    );
    assert_eq!(exported["servers"]["nats"]["host"], "nats.example.com:4443");
    assert_eq!(exported["servers"]["nats"]["x-soa-tls"], true);
}

fn name(text: &str) -> ServiceName {
    ServiceName::parse(text).unwrap()
}

fn edge(from: &str, to: &str, kind: EdgeKind, reference: &str, resolved: bool) -> GraphEdge {
    GraphEdge {
        from: name(from),
        to: name(to),
        kind,
        reference: reference.to_owned(),
        resolved,
    }
}

/// Orders calls inventory and consumes its events, inventory consumes
/// orders' (a cycle), billing calls a service nobody registered, and
/// shipping consumes an event of an older orders major.
fn sample_graph() -> GraphResponse {
    GraphResponse {
        nodes: vec![
            GraphNode {
                service: name("billing"),
                latest: Version::new(1, 0, 0),
            },
            GraphNode {
                service: name("inventory"),
                latest: Version::new(1, 3, 0),
            },
            GraphNode {
                service: name("orders"),
                latest: Version::new(2, 0, 1),
            },
            GraphNode {
                service: name("shipping"),
                latest: Version::new(1, 0, 0),
            },
        ],
        edges: vec![
            edge("orders", "inventory", EdgeKind::Calls, "inventory@1#reserve", true),
            edge("inventory", "orders", EdgeKind::Consumes, "orders@2#placed", true),
            edge("orders", "inventory", EdgeKind::Consumes, "inventory@1#reserved", true),
            edge("billing", "ledger", EdgeKind::Calls, "ledger@1#post", false),
            edge("shipping", "orders", EdgeKind::Consumes, "orders@1#paid", true),
        ],
        warnings: vec![
            "billing calls ledger@1#post, which no registered version declares".to_owned(),
            "event cycle: inventory -> orders -> inventory\n(second line)".to_owned(),
        ],
    }
}

#[test]
fn the_graph_in_mermaid() {
    expect![[r#"
        flowchart LR
            %% soa graph: calls point from the caller to the service called; consumes point from an event's producer to its consumer (the way events flow); dashed edges are references no registered version declares.
            %% warning: billing calls ledger@1#post, which no registered version declares
            %% warning: event cycle: inventory -> orders -> inventory (second line)
            svc_billing["billing@1.0.0"]
            svc_inventory["inventory@1.3.0"]
            svc_ledger["ledger (not registered)"]:::missing
            svc_orders["orders@2.0.1"]
            svc_shipping["shipping@1.0.0"]
            svc_billing -.->|"calls post"| svc_ledger
            svc_inventory ==>|"consumes reserved"| svc_orders
            svc_orders -->|"calls reserve"| svc_inventory
            svc_orders ==>|"consumes placed"| svc_inventory
            svc_orders ==>|"consumes paid (v1)"| svc_shipping
            classDef missing stroke-dasharray: 5 5
    "#]]
    .assert_eq(&mermaid(&sample_graph()));
}

#[test]
fn the_graph_in_dot() {
    expect![[r#"
        // soa graph: calls point from the caller to the service called; consumes point from an event's producer to its consumer (the way events flow); dashed edges are references no registered version declares.
        // warning: billing calls ledger@1#post, which no registered version declares
        // warning: event cycle: inventory -> orders -> inventory (second line)
        digraph soa {
            rankdir=LR;
            node [shape=box, style=rounded, fontname="Helvetica"];
            edge [fontname="Helvetica", fontsize=10];
            "billing" [label="billing@1.0.0"];
            "inventory" [label="inventory@1.3.0"];
            "ledger" [label="ledger (not registered)", style="rounded,dashed"];
            "orders" [label="orders@2.0.1"];
            "shipping" [label="shipping@1.0.0"];
            "billing" -> "ledger" [label="calls post", style=dashed];
            "inventory" -> "orders" [label="consumes reserved", style=bold];
            "orders" -> "inventory" [label="calls reserve"];
            "orders" -> "inventory" [label="consumes placed", style=bold];
            "orders" -> "shipping" [label="consumes paid (v1)", style=bold];
        }
    "#]]
    .assert_eq(&dot(&sample_graph()));
}

#[test]
fn graph_text_is_escaped_for_each_format() {
    let graph = GraphResponse {
        nodes: Vec::new(),
        edges: vec![edge("a", "b", EdgeKind::Calls, "not \"a\" <ref> #1 \\ x", false)],
        warnings: vec!["quote \" and\nnewline".to_owned()],
    };
    let mermaid = mermaid(&graph);
    assert!(
        mermaid.contains(r#"svc_a -.->|"calls not #quot;a#quot; #lt;ref#gt; #35;1 \ x"| svc_b"#),
        "{mermaid}"
    );
    assert!(mermaid.contains("%% warning: quote \" and newline\n"), "{mermaid}");
    let dot = dot(&graph);
    assert!(
        dot.contains(r#""a" -> "b" [label="calls not \"a\" <ref> #1 \\ x", style=dashed];"#),
        "{dot}"
    );
    assert!(dot.contains("// warning: quote \" and newline\n"), "{dot}");
}

#[test]
fn graph_output_does_not_depend_on_the_order_of_the_answer() {
    let graph = sample_graph();
    let mut shuffled = graph.clone();
    shuffled.nodes.reverse();
    shuffled.edges.reverse();
    assert_eq!(mermaid(&graph), mermaid(&shuffled));
    assert_eq!(dot(&graph), dot(&shuffled));
}

#[test]
fn contract_majors_display_as_references() {
    let key = ContractMajor {
        service: name("orders"),
        major: 2,
    };
    assert_eq!(key.to_string(), "orders@2");
}

#[test]
fn boolean_schemas_become_their_object_forms() {
    let document = contract(
        "anything",
        "1.0.0",
        json!({
            "operations": {"echo": {"subject": "shop.anything.v1.echo", "request": true, "response": false}},
            "$defs": {"Never": false},
        }),
    );
    let exported = service_document(&document, &[], &ExportOptions::default());
    assert_valid(&exported);
    assert_eq!(
        exported["channels"]["echo"]["messages"]["request"]["payload"],
        json!({})
    );
    assert_eq!(
        exported["channels"]["echo.reply"]["messages"]["response"]["payload"],
        json!({"not": {}})
    );
    assert_eq!(exported["components"]["schemas"]["Never"], json!({"not": {}}));
}
