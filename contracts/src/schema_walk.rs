//! Walking a JSON Schema's subschemas by keyword, so that a property *named*
//! `$ref` is never mistaken for a reference.

use serde_json::{Map, Value};

use crate::parse::escape_pointer;

/// Keywords whose value is one subschema.
const SINGLE: &[&str] = &[
    "additionalProperties",
    "additionalItems",
    "contains",
    "contentSchema",
    "else",
    "if",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];

/// Keywords whose value is an array of subschemas.
const ARRAY: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value is an object of named subschemas.
const MAP: &[&str] = &[
    "$defs",
    "definitions",
    "dependentSchemas",
    "patternProperties",
    "properties",
];

/// Calls `visit` with the pointer and object of `schema` and of every
/// subschema below it (boolean schemas hold nothing and are skipped).
/// `pointer` is the pointer of `schema` itself. The walk is iterative, so a
/// deep schema cannot overflow the stack.
pub fn for_each_subschema<'a>(schema: &'a Value, pointer: &str, mut visit: impl FnMut(&str, &'a Map<String, Value>)) {
    let mut pending: Vec<(String, &'a Value)> = vec![(pointer.to_owned(), schema)];
    while let Some((pointer, value)) = pending.pop() {
        let Value::Object(object) = value else { continue };
        visit(&pointer, object);
        for (keyword, child) in object {
            let child_pointer = format!("{pointer}/{}", escape_pointer(keyword));
            if SINGLE.contains(&keyword.as_str()) {
                pending.push((child_pointer, child));
            } else if keyword == "items" {
                // `items` is one schema in 2020-12 and may be an array in draft-07.
                match child {
                    Value::Array(items) => push_array(&mut pending, &child_pointer, items),
                    other => pending.push((child_pointer, other)),
                }
            } else if ARRAY.contains(&keyword.as_str()) {
                if let Value::Array(items) = child {
                    push_array(&mut pending, &child_pointer, items);
                }
            } else if MAP.contains(&keyword.as_str()) {
                if let Value::Object(members) = child {
                    for (name, member) in members {
                        pending.push((format!("{child_pointer}/{}", escape_pointer(name)), member));
                    }
                }
            } else if keyword == "dependencies" {
                // draft-07: a dependency is either a subschema or a list of names.
                if let Value::Object(members) = child {
                    for (name, member) in members.iter().filter(|(_, member)| !member.is_array()) {
                        pending.push((format!("{child_pointer}/{}", escape_pointer(name)), member));
                    }
                }
            }
        }
    }
}

fn push_array<'a>(pending: &mut Vec<(String, &'a Value)>, pointer: &str, items: &'a [Value]) {
    for (index, item) in items.iter().enumerate() {
        pending.push((format!("{pointer}/{index}"), item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn visits_keyword_positions_only() {
        let schema = json!({
            "properties": {
                "$ref": {"type": "string"},
                "a/b": {"items": {"$ref": "#/$defs/X"}}
            },
            "anyOf": [{"$ref": "#/$defs/Y"}, true],
            "examples": [{"$ref": "not a ref"}],
            "$defs": {"X": {"type": "integer"}, "Y": {"not": {"const": 1}}}
        });
        let mut refs = Vec::new();
        let mut pointers = Vec::new();
        for_each_subschema(&schema, "/request", |pointer, object| {
            pointers.push(pointer.to_owned());
            if let Some(Value::String(target)) = object.get("$ref") {
                refs.push((pointer.to_owned(), target.clone()));
            }
        });
        refs.sort();
        assert_eq!(
            refs,
            vec![
                ("/request/anyOf/0".to_owned(), "#/$defs/Y".to_owned()),
                ("/request/properties/a~1b/items".to_owned(), "#/$defs/X".to_owned()),
            ]
        );
        assert!(pointers.contains(&"/request/$defs/Y/not".to_owned()));
        assert!(pointers.contains(&"/request/properties/$ref".to_owned()));
        assert!(!pointers.iter().any(|p| p.contains("examples")));
    }
}
