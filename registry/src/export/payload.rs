//! Payload schemas moved out of contracts into an AsyncAPI document.
//!
//! A contract's schemas point at `#/$defs/X` of their own document and at
//! `soa://<service>@<major>#/$defs/X` of other contracts. In the AsyncAPI
//! document both become `#/components/schemas/<name>`, and each definition
//! referenced is copied into `components.schemas` once, its own references
//! rewritten the same way, however it was reached. Names are the definition's
//! name behind a prefix per contract (`orders.v1.OrderId`; none for the
//! document's own contract in a service document), made safe for AsyncAPI's
//! component key pattern and unique.
//!
//! AsyncAPI 3.0 schema objects are JSON Schema draft-07 supersets, while
//! contracts are written in 2020-12. The keywords whose meaning differs are
//! translated (`prefixItems`, `dependentRequired`, `dependentSchemas`, and a
//! `$ref` with constraining siblings, which draft-07 would ignore); keywords
//! draft-07 has no counterpart for are kept and reported.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use contracts::schema::SOA_SCHEME;
use contracts::schema_walk::for_each_subschema;
use contracts::{ContractDocument, ContractId, ServiceName};
use serde_json::{Map, Value, json};

use super::asyncapi::ContractMajor;

/// Where component schemas live in an AsyncAPI document.
pub(super) const COMPONENT_SCHEMAS: &str = "#/components/schemas/";

/// Keywords beside a `$ref` that only annotate, so leaving them beside it
/// loses nothing even where siblings of `$ref` are ignored.
const ANNOTATIONS: &[&str] = &[
    "$comment",
    "default",
    "deprecated",
    "description",
    "examples",
    "readOnly",
    "title",
    "writeOnly",
];

/// 2020-12 keywords draft-07 has no counterpart for: kept as they are, and
/// reported, since AsyncAPI tools will not enforce them.
const UNTRANSLATED: &[&str] = &[
    "$anchor",
    "$dynamicAnchor",
    "$dynamicRef",
    "$recursiveAnchor",
    "$recursiveRef",
    "contentSchema",
    "maxContains",
    "minContains",
    "unevaluatedItems",
    "unevaluatedProperties",
];

/// The `components.schemas` of a document being built, and what was found
/// wrong on the way.
#[derive(Debug)]
pub(super) struct Components {
    /// The contracts references may point into, as JSON, with their ids.
    documents: BTreeMap<ContractMajor, (ContractId, Value)>,
    /// The contract whose names go without a prefix, in a service document.
    own: Option<ContractMajor>,
    /// The component name of each schema taken in: by contract and the
    /// pointer of the schema in it (`/$defs/OrderId`).
    names: BTreeMap<(ContractMajor, String), String>,
    /// Every component name given out.
    used: BTreeSet<String>,
    /// Schemas named but not yet copied in.
    pending: Vec<(ContractMajor, String)>,
    /// The component schemas so far.
    schemas: Map<String, Value>,
    /// What could not be carried over, as sentences.
    warnings: Vec<String>,
}

impl Components {
    /// Components for a document built from `documents`; `own` is the
    /// contract of a service document, whose definitions keep their names.
    pub(super) fn new(documents: &BTreeMap<ContractMajor, &ContractDocument>, own: Option<ContractMajor>) -> Self {
        Self {
            documents: documents
                .iter()
                .map(|(key, document)| (key.clone(), (document.id(), document.to_value())))
                .collect(),
            own,
            names: BTreeMap::new(),
            used: BTreeSet::new(),
            pending: Vec::new(),
            schemas: Map::new(),
            warnings: Vec::new(),
        }
    }

    /// Adds a schema of soabus itself (the error body, the headers) under a
    /// fixed name; call it before anything else takes names.
    pub(super) fn insert_fixed(&mut self, name: &str, schema: Value) {
        self.used.insert(name.to_owned());
        self.schemas.insert(name.to_owned(), schema);
    }

    /// Takes in every definition of `key`'s contract, referenced or not.
    pub(super) fn include_definitions(&mut self, key: &ContractMajor) {
        let names: Vec<String> = match self.documents.get(key) {
            Some((_, Value::Object(document))) => match document.get("$defs") {
                Some(Value::Object(defs)) => defs.keys().cloned().collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for name in names {
            // The definition exists, so naming it cannot fail.
            let _ = self.allocate(key, &format!("/$defs/{}", escape_pointer(&name)));
        }
    }

    /// The name prefix of `key`'s definitions.
    pub(super) fn prefix(&self, key: &ContractMajor) -> String {
        if self.own.as_ref() == Some(key) {
            String::new()
        } else {
            format!("{}.v{}.", key.service, key.major)
        }
    }

    /// `schema`, a schema of `home`'s contract, as it goes into the
    /// AsyncAPI document: references re-pointed at components (which are
    /// taken in), 2020-12 keywords translated. `origin` names the schema in
    /// warnings (`inventory@1.0.0 /operations/reserve/request`).
    pub(super) fn rewrite(&mut self, home: &ContractMajor, schema: &Value, origin: &str) -> Value {
        let mut references = Vec::new();
        let mut subschemas = Vec::new();
        for_each_subschema(schema, "", |pointer, object| {
            if let Some(Value::String(target)) = object.get("$ref") {
                references.push((pointer.to_owned(), target.clone()));
            }
            subschemas.push(pointer.to_owned());
        });
        let mut rewritten = match schema {
            // AsyncAPI takes a payload or component that is not an object
            // for a multi-format schema; the object forms mean the same.
            Value::Bool(true) => json!({}),
            Value::Bool(false) => json!({ "not": {} }),
            other => other.clone(),
        };
        for (pointer, target) in references {
            let retargeted = self.retarget(home, &target);
            let Some(Value::Object(object)) = rewritten.pointer_mut(&pointer) else {
                continue;
            };
            match retargeted {
                Ok(reference) => {
                    object.insert("$ref".to_owned(), Value::String(reference));
                }
                Err(reason) => {
                    object.remove("$ref");
                    object.insert("x-soa-unresolved-ref".to_owned(), Value::String(target.clone()));
                    self.warnings.push(format!(
                        "{origin}{pointer}: the reference {target} is left out: {reason}"
                    ));
                }
            }
        }
        // Deepest first: translating a schema moves its subschemas, which
        // must have been translated already; its ancestors stay in place.
        subschemas.sort_by_key(|pointer| Reverse(pointer.matches('/').count()));
        for pointer in subschemas {
            if let Some(Value::Object(object)) = rewritten.pointer_mut(&pointer) {
                self.translate_to_draft07(object, &format!("{origin}{pointer}"));
            }
        }
        rewritten
    }

    /// The component schemas, every referenced one copied in, and the warnings.
    pub(super) fn finish(mut self) -> (Map<String, Value>, Vec<String>) {
        while let Some((key, pointer)) = self.pending.pop() {
            let Some((id, document)) = self.documents.get(&key) else {
                continue;
            };
            let (Some(schema), Some(name)) = (
                document.pointer(&pointer),
                self.names.get(&(key.clone(), pointer.clone())),
            ) else {
                continue;
            };
            let (schema, name, origin) = (schema.clone(), name.clone(), format!("{id} {pointer}"));
            let rewritten = self.rewrite(&key, &schema, &origin);
            self.schemas.insert(name, rewritten);
        }
        (self.schemas, self.warnings)
    }

    /// The component reference that replaces `target`, a reference inside
    /// `home`'s contract, or why there is none.
    fn retarget(&mut self, home: &ContractMajor, target: &str) -> Result<String, String> {
        let (key, fragment) = if let Some(rest) = target.strip_prefix(SOA_SCHEME) {
            let (base, fragment) = rest.split_once('#').unwrap_or((rest, ""));
            (parse_base(base)?, fragment)
        } else if let Some(fragment) = target.strip_prefix('#') {
            (home.clone(), fragment)
        } else {
            return Err("only `#...` and `soa://...` references can be carried over".to_owned());
        };
        let pointer = percent_decode(fragment).ok_or("its fragment is not valid percent-encoding")?;
        if pointer.is_empty() {
            return Err("it points at a whole contract document, which is no schema".to_owned());
        }
        if !pointer.starts_with('/') {
            return Err("it names an anchor; only JSON pointers can be carried over".to_owned());
        }
        let tokens: Vec<&str> = pointer[1..].split('/').collect();
        // A definition is taken in whole, and a pointer into it kept; any
        // other schema of the document is taken in as it is pointed at.
        let (unit, rest) = match tokens.as_slice() {
            ["$defs", name, rest @ ..] => (format!("/$defs/{name}"), join_pointer(rest)),
            _ => (pointer.clone(), String::new()),
        };
        let name = self.allocate(&key, &unit)?;
        if !rest.is_empty() {
            let exists = self
                .documents
                .get(&key)
                .and_then(|(_, document)| document.pointer(&format!("{unit}{rest}")))
                .is_some();
            if !exists {
                return Err(format!("{key} has nothing at {unit}{rest}"));
            }
        }
        Ok(format!("{COMPONENT_SCHEMAS}{name}{}", encode_fragment(&rest)))
    }

    /// The component name of the schema at `pointer` in `key`'s contract,
    /// given out (and the copy scheduled) the first time it is asked for.
    fn allocate(&mut self, key: &ContractMajor, pointer: &str) -> Result<String, String> {
        let unit = (key.clone(), pointer.to_owned());
        if let Some(name) = self.names.get(&unit) {
            return Ok(name.clone());
        }
        let (_, document) = self
            .documents
            .get(key)
            .ok_or_else(|| format!("the contract {key} is not available"))?;
        if document.pointer(pointer).is_none() {
            return Err(format!("{key} has nothing at {pointer}"));
        }
        let base = match pointer.strip_prefix("/$defs/") {
            Some(name) => unescape_pointer(name),
            None => pointer[1..]
                .split('/')
                .map(unescape_pointer)
                .collect::<Vec<_>>()
                .join("."),
        };
        let prefix = self.prefix(key);
        let name = unique(&mut self.used, &sanitize(&format!("{prefix}{base}")));
        self.names.insert(unit.clone(), name.clone());
        self.pending.push(unit);
        Ok(name)
    }

    /// Rewrites one schema object's 2020-12 keywords into draft-07 ones.
    fn translate_to_draft07(&mut self, object: &mut Map<String, Value>, origin: &str) {
        object.remove("$schema");
        if let Some(prefix_items) = object.remove("prefixItems") {
            if let Some(items) = object.remove("items") {
                object.insert("additionalItems".to_owned(), items);
            }
            object.insert("items".to_owned(), prefix_items);
        }
        let required = object.remove("dependentRequired");
        let schemas = object.remove("dependentSchemas");
        if required.is_some() || schemas.is_some() {
            let mut dependencies = Map::new();
            if let Some(Value::Object(required)) = required {
                dependencies.extend(required);
            }
            if let Some(Value::Object(schemas)) = schemas {
                for (property, schema) in schemas {
                    let merged = match dependencies.remove(&property) {
                        Some(names) => json!({"allOf": [schema, {"required": names}]}),
                        None => schema,
                    };
                    dependencies.insert(property, merged);
                }
            }
            object.insert("dependencies".to_owned(), Value::Object(dependencies));
        }
        for keyword in UNTRANSLATED {
            if object.contains_key(*keyword) {
                self.warnings.push(format!(
                    "{origin}: `{keyword}` has no JSON Schema draft-07 counterpart; AsyncAPI tools will not enforce it"
                ));
            }
        }
        let constrained = object.contains_key("$ref")
            && object.keys().any(|keyword| {
                keyword != "$ref" && !keyword.starts_with("x-") && !ANNOTATIONS.contains(&keyword.as_str())
            });
        if constrained {
            // draft-07 ignores every sibling of `$ref`; under `allOf` they all count.
            if let Some(reference) = object.remove("$ref") {
                let reference = json!({ "$ref": reference });
                match object.get_mut("allOf") {
                    Some(Value::Array(all)) => all.push(reference),
                    _ => {
                        object.insert("allOf".to_owned(), json!([reference]));
                    }
                }
            }
        }
    }
}

/// `inventory@1` of a `soa://inventory@1` reference.
fn parse_base(base: &str) -> Result<ContractMajor, String> {
    let invalid = || format!("{SOA_SCHEME}{base} is not {SOA_SCHEME}<service>@<major>");
    let (service, major) = base.split_once('@').ok_or_else(invalid)?;
    let service = ServiceName::parse(service).map_err(|_| invalid())?;
    let major = major.parse().map_err(|_| invalid())?;
    Ok(ContractMajor { service, major })
}

/// Makes `name` fit AsyncAPI's component key pattern (`^[\w\d\.\-_]+$`):
/// anything but ASCII letters, digits, `.`, `-` and `_` becomes `_`.
pub(super) fn sanitize(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "_".to_owned() } else { safe }
}

/// `name`, or `name_2`, `name_3`... whichever is not in `used` yet; marked used.
pub(super) fn unique(used: &mut BTreeSet<String>, name: &str) -> String {
    let mut candidate = name.to_owned();
    let mut counter = 1;
    while used.contains(&candidate) {
        counter += 1;
        candidate = format!("{name}_{counter}");
    }
    used.insert(candidate.clone());
    candidate
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape_pointer(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// `/a/b` of the tokens `a`, `b` (already escaped); empty for none.
fn join_pointer(tokens: &[&str]) -> String {
    tokens.iter().map(|token| format!("/{token}")).collect()
}

/// Decodes the `%XX` escapes of a URI fragment; `None` when they are not
/// valid escapes of UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// A JSON pointer as a URI fragment: what a fragment may not hold literally
/// is percent-encoded.
fn encode_fragment(pointer: &str) -> String {
    let mut encoded = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_round_trip_through_percent_encoding() {
        assert_eq!(percent_decode("/$defs/A%20B").as_deref(), Some("/$defs/A B"));
        assert_eq!(percent_decode("/%24defs/X").as_deref(), Some("/$defs/X"));
        assert_eq!(percent_decode("/bad%2"), None);
        assert_eq!(percent_decode("/bad%zz"), None);
        assert_eq!(encode_fragment("/properties/a b/~1x"), "/properties/a%20b/~1x");
    }

    #[test]
    fn names_are_safe_and_unique() {
        assert_eq!(sanitize("orders.v1.Wrapper<Money>"), "orders.v1.Wrapper_Money_");
        assert_eq!(sanitize(""), "_");
        let mut used = BTreeSet::new();
        assert_eq!(unique(&mut used, "X"), "X");
        assert_eq!(unique(&mut used, "X"), "X_2");
        assert_eq!(unique(&mut used, "X"), "X_3");
    }
}
