//! Benchmarks of the schema compatibility checker: two versions of an object
//! schema with 500 properties each (a mix of scalars, nullable values,
//! enums, nested objects, arrays, alternatives and references into `$defs`),
//! where some properties changed, some were added and some removed.
//!
//! Run with `cargo bench -p contracts --bench compat`. The goal for the
//! diff of the changed pair is under 5 ms.

use std::hint::black_box;

use contracts::compat::{Mode, diff_schemas, verdict};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

const PROPERTIES: usize = 500;

fn property(index: usize) -> Value {
    match index % 10 {
        0 => json!({"type": "string", "maxLength": 64, "description": format!("field {index}")}),
        1 => json!({"type": "integer", "minimum": 0}),
        2 => json!({"type": ["string", "null"], "format": "date-time"}),
        3 => json!({"enum": ["new", "paid", "shipped", "cancelled"]}),
        4 => json!({
            "type": "object",
            "properties": {
                "line": {"type": "string"},
                "count": {"type": "integer", "minimum": 1},
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "maxItems": 50}
            },
            "required": ["line"],
            "additionalProperties": false
        }),
        5 => json!({"$ref": "#/$defs/Money"}),
        6 => json!({"type": "array", "items": {"type": "string", "format": "date"}, "uniqueItems": true}),
        7 => json!({"anyOf": [{"type": "string", "pattern": "^[A-Z]{3}$"}, {"$ref": "#/$defs/Address"}]}),
        8 => json!({"type": "number", "multipleOf": 0.5, "exclusiveMinimum": 0}),
        _ => json!({"type": "object", "additionalProperties": {"type": "string"}, "patternProperties": {"^x-": {}}}),
    }
}

fn definitions() -> Value {
    json!({
        "Money": {
            "type": "object",
            "properties": {"amount_cents": {"type": "integer"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
            "required": ["amount_cents", "currency"],
            "additionalProperties": false
        },
        "Item": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}, "price": {"$ref": "#/$defs/Money"}},
            "required": ["sku", "quantity"]
        },
        "Address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string", "maxLength": 10}, "country": {"type": "string"}},
            "required": ["street"]
        },
        "Node": {
            "type": "object",
            "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}
        }
    })
}

fn old_schema() -> Value {
    let mut properties = Map::new();
    for index in 0..PROPERTIES {
        properties.insert(format!("p{index:03}"), property(index));
    }
    properties.insert("tree".to_owned(), json!({"$ref": "#/$defs/Node"}));
    let required: Vec<Value> = (0..PROPERTIES)
        .step_by(25)
        .map(|index| json!(format!("p{index:03}")))
        .collect();
    json!({"type": "object", "properties": properties, "required": required, "$defs": definitions()})
}

/// The next version: every seventh property edited, ten removed, ten added,
/// one more required name, and two shared definitions changed.
fn new_schema() -> Value {
    let mut schema = old_schema();
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return schema;
    };
    for index in (0..PROPERTIES).step_by(7) {
        let Some(Value::Object(property)) = properties.get_mut(&format!("p{index:03}")) else {
            continue;
        };
        match index % 10 {
            0 => property.insert("maxLength".to_owned(), json!(128)),
            1 => property.insert("minimum".to_owned(), json!(1)),
            2 => property.insert("title".to_owned(), json!("A timestamp")),
            3 => property.insert(
                "enum".to_owned(),
                json!(["new", "paid", "shipped", "cancelled", "returned"]),
            ),
            4 => property.insert("required".to_owned(), json!(["line", "count"])),
            6 => property.insert("maxItems".to_owned(), json!(20)),
            8 => property.insert("multipleOf".to_owned(), json!(0.25)),
            _ => property.insert("deprecated".to_owned(), json!(true)),
        };
    }
    for index in (3..PROPERTIES).step_by(50) {
        properties.remove(&format!("p{index:03}"));
    }
    for index in 0..10 {
        properties.insert(format!("added{index}"), property(index));
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.push(json!("p001"));
    }
    if let Some(definitions) = schema.get_mut("$defs") {
        definitions["Money"]["properties"]["amount_cents"]["minimum"] = json!(0);
        definitions["Node"]["properties"]["value"]["type"] = json!("number");
    }
    schema
}

fn compatibility(c: &mut Criterion) {
    let old = old_schema();
    let new = new_schema();
    let changes = diff_schemas(&old, &new);
    let text = serde_json::to_string(&old).unwrap_or_default();
    eprintln!(
        "schemas: {} properties, {} bytes; {} changes, BACKWARD {:?}, FORWARD {:?}",
        PROPERTIES,
        text.len(),
        changes.len(),
        verdict(&changes, Mode::Backward),
        verdict(&changes, Mode::Forward)
    );

    let mut group = c.benchmark_group("compat-500-properties");
    group.bench_function("diff/changed", |b| {
        b.iter(|| diff_schemas(black_box(&old), black_box(&new)))
    });
    group.bench_function("diff/identical", |b| {
        b.iter(|| diff_schemas(black_box(&old), black_box(&old)))
    });
    group.bench_function("diff+verdict/changed", |b| {
        b.iter(|| {
            let changes = diff_schemas(black_box(&old), black_box(&new));
            verdict(&changes, Mode::Full)
        })
    });
    group.finish();
}

criterion_group!(benches, compatibility);
criterion_main!(benches);
