//! Compiling a contract's payload schemas: every reference checked and
//! resolved offline, every schema checked against the 2020-12 meta-schema,
//! patterns matched in linear time.
//!
//! A `$ref` inside a contract resolves against the document root
//! (`#/$defs/Reservation`) or into another registered contract
//! (`soa://payments@1#/$defs/Money`). Nothing is ever fetched: http(s), file
//! and relative references are refused with the contract and pointer named.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::document::{ContractDocument, MessageKey, SCHEMA_DIALECT};
use crate::names::{ContractId, ServiceName};
use crate::parse::shorten;
use crate::schema_walk::for_each_subschema;
use crate::validate::MessageValidator;

/// The scheme of references into registered contracts.
pub const SOA_SCHEME: &str = "soa://";

/// The base URI of a service's major version: `soa://inventory@1`.
pub fn contract_base_uri(service: &ServiceName, major: u64) -> String {
    format!("{SOA_SCHEME}{service}@{major}")
}

/// The service and major version a reference into a registered contract
/// names: `payments` and 1 for `soa://payments@1#/$defs/Money`. `None` for
/// any other reference, and for a `soa://` one that is not
/// `soa://<service>@<major>`.
pub fn soa_reference_target(reference: &str) -> Option<(ServiceName, u64)> {
    let rest = reference.strip_prefix(SOA_SCHEME)?;
    let base = rest.split_once('#').map_or(rest, |(base, _)| base);
    let (service, major) = base.split_once('@')?;
    Some((ServiceName::parse(service).ok()?, major.parse().ok()?))
}

/// The contracts that `soa://` references may point into, supplied by the
/// caller (the registry, or a CLI reading several documents).
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    /// Shared, so every compilation can hand the set to its retriever
    /// without copying it.
    resources: Arc<HashMap<String, Arc<Value>>>,
}

impl SchemaSet {
    /// Makes `document`'s `$defs` reachable as `soa://<service>@<major>#/$defs/...`.
    /// A later document of the same service and major replaces an earlier one.
    pub fn add_contract(&mut self, document: &ContractDocument) {
        Arc::make_mut(&mut self.resources).insert(
            contract_base_uri(&document.service, document.version.major()),
            Arc::new(resource_of(document)),
        );
    }

    /// True when `soa://<service>@<major>` is in the set.
    pub fn contains(&self, service: &ServiceName, major: u64) -> bool {
        self.resources.contains_key(&contract_base_uri(service, major))
    }

    fn get(&self, base_uri: &str) -> Option<&Arc<Value>> {
        self.resources.get(base_uri)
    }
}

/// The document as the JSON Schema resource that references resolve into.
fn resource_of(document: &ContractDocument) -> Value {
    let mut value = document.to_value();
    if let Value::Object(object) = &mut value {
        object.insert("$schema".to_owned(), Value::String(SCHEMA_DIALECT.to_owned()));
    }
    value
}

/// What kind of schema problem was found; each kind has a lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaProblemKind {
    /// A `$ref` to http(s), a file, or anything outside the document and the registry.
    RemoteRef,
    /// A `$ref` whose target does not exist.
    UnresolvedRef,
    /// A `$schema` other than JSON Schema 2020-12.
    UnknownDialect,
    /// An `$id` inside a contract schema, which would move references elsewhere.
    ForbiddenId,
    /// Not a valid JSON Schema.
    InvalidSchema,
    /// Valid JSON Schema that still could not be compiled (a bad regular
    /// expression, for instance).
    CompileFailed,
}

/// One problem with a contract's schemas, at a pointer in the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{contract} at {pointer}: {message}")]
pub struct SchemaProblem {
    /// The contract the schema belongs to.
    pub contract: ContractId,
    /// JSON pointer of the offending value in the contract document.
    pub pointer: String,
    /// What kind of problem.
    pub kind: SchemaProblemKind,
    /// What is wrong and what to do.
    pub message: String,
}

/// Checks every `$ref`, `$dynamicRef`, `$schema` and `$id` in the document's
/// schemas. References must resolve inside the document or into `external`.
pub fn check_references(document: &ContractDocument, external: &SchemaSet) -> Vec<SchemaProblem> {
    check_references_in(document, &document.to_value(), external)
}

/// [`check_references`] on the document already turned into a value.
pub(crate) fn check_references_in(
    document: &ContractDocument,
    root: &Value,
    external: &SchemaSet,
) -> Vec<SchemaProblem> {
    let own_base = contract_base_uri(&document.service, document.version.major());
    let mut problems = Vec::new();
    let mut problem = |pointer: String, kind, message: String| {
        problems.push(SchemaProblem {
            contract: document.id(),
            pointer,
            kind,
            message,
        });
    };
    for (pointer, message) in reference_cycles(root) {
        problem(pointer, SchemaProblemKind::UnresolvedRef, message);
    }
    for (pointer, schema) in schema_roots(root) {
        for_each_subschema(schema, &pointer, |pointer, object| {
            for keyword in ["$ref", "$dynamicRef", "$recursiveRef"] {
                let Some(target) = object.get(keyword) else { continue };
                let here = format!("{pointer}/{keyword}");
                let Value::String(target) = target else {
                    problem(
                        here,
                        SchemaProblemKind::InvalidSchema,
                        format!("{keyword} must be a string"),
                    );
                    continue;
                };
                if let Err((kind, message)) = resolve_reference(target, root, &own_base, external) {
                    problem(here, kind, message);
                }
            }
            if let Some(dialect) = object.get("$schema") {
                let known = dialect
                    .as_str()
                    .is_some_and(|uri| uri.trim_end_matches('#') == SCHEMA_DIALECT);
                if !known {
                    problem(
                        format!("{pointer}/$schema"),
                        SchemaProblemKind::UnknownDialect,
                        format!(
                            "$schema {dialect} is not supported; contract schemas are JSON Schema 2020-12 (\"{SCHEMA_DIALECT}\"), and no other meta-schema is fetched; remove $schema or use that one"
                        ),
                    );
                }
            }
            if object.contains_key("$id") {
                problem(
                    format!("{pointer}/$id"),
                    SchemaProblemKind::ForbiddenId,
                    "$id is not allowed inside a contract: it would make references resolve outside the document; the registry names every schema soa://<service>@<major>".to_owned(),
                );
            }
        });
    }
    problems
}

/// Keywords whose subschemas apply to the same value as their parent: a loop
/// through these and `$ref` never descends into the instance.
const IN_PLACE_ARRAYS: [&str; 3] = ["allOf", "anyOf", "oneOf"];
const IN_PLACE_SINGLE: [&str; 4] = ["not", "if", "then", "else"];

/// Every local `$ref` that closes a cycle of schemas applying to the same
/// value (`A` is `$ref` `B`, `B` is `allOf` [`$ref` `A`]): such a schema
/// never says anything of its own, and a validator can only go round. A
/// recursive schema that nests (a tree whose `children` are trees) passes
/// through `properties` or `items` and is no such cycle.
///
/// One iterative depth-first walk over the document's schemas, linear in
/// their number, whatever a hostile document holds.
fn reference_cycles(root: &Value) -> Vec<(String, String)> {
    // Each schema's in-place successors: (successor, the `$ref` pointer when the edge is a reference).
    let mut edges: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
    for (pointer, schema) in schema_roots(root) {
        for_each_subschema(schema, &pointer, |pointer, object| {
            let mut next = Vec::new();
            if let Some(Value::String(target)) = object.get("$ref")
                && let Some(target) = target.strip_prefix('#')
                && target.starts_with('/')
            {
                next.push((target.to_owned(), Some(format!("{pointer}/$ref"))));
            }
            for keyword in IN_PLACE_ARRAYS {
                if let Some(Value::Array(items)) = object.get(keyword) {
                    next.extend((0..items.len()).map(|index| (format!("{pointer}/{keyword}/{index}"), None)));
                }
            }
            for keyword in IN_PLACE_SINGLE {
                if object.contains_key(keyword) {
                    next.push((format!("{pointer}/{keyword}"), None));
                }
            }
            edges.insert(pointer.to_owned(), next);
        });
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut cycles = Vec::new();
    let mut starts: Vec<&String> = edges.keys().collect();
    starts.sort();
    for start in starts {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // The path from `start`, each node with the index of its next edge to follow.
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start.as_str(), Mark::OnPath);
        while let Some(&(node, next_edge)) = path.last() {
            let successors = edges.get(node).map_or(&[][..], Vec::as_slice);
            let Some((successor, via)) = successors.get(next_edge) else {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            };
            if let Some(last) = path.last_mut() {
                last.1 += 1;
            }
            // A `$ref` to something that is not a schema is reported elsewhere.
            let Some((successor, _)) = edges.get_key_value(successor.as_str()) else {
                continue;
            };
            match marks.get(successor.as_str()) {
                None => {
                    marks.insert(successor.as_str(), Mark::OnPath);
                    path.push((successor.as_str(), 0));
                }
                Some(Mark::OnPath) => {
                    let from = path
                        .iter()
                        .position(|(step, _)| *step == successor.as_str())
                        .unwrap_or(0);
                    let mut loop_text: Vec<&str> = path[from..].iter().map(|(step, _)| *step).collect();
                    loop_text.push(successor.as_str());
                    let at = via.clone().unwrap_or_else(|| successor.clone());
                    cycles.push((
                        at,
                        format!(
                            "$ref cycle: {} applies to the same value round and round and never reaches a schema of its own; a recursive schema must nest (refer back from inside properties or items), or remove the loop",
                            shorten(loop_text.join(" -> "))
                        ),
                    ));
                }
                Some(Mark::Done) => {}
            }
        }
    }
    cycles
}

/// The pointer and value of every schema root in the document: message
/// schemas and shared `$defs`.
pub(crate) fn schema_roots(root: &Value) -> Vec<(String, &Value)> {
    let mut roots = Vec::new();
    let members = |section: &str| root.get(section).and_then(Value::as_object).into_iter().flatten();
    for (name, operation) in members("operations") {
        for part in ["request", "response"] {
            if let Some(schema) = operation.get(part) {
                roots.push((format!("/operations/{name}/{part}"), schema));
            }
        }
    }
    for (name, event) in members("events") {
        if let Some(schema) = event.get("payload") {
            roots.push((format!("/events/{name}/payload"), schema));
        }
    }
    for (index, consumption) in root
        .get("consumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(schema) = consumption.get("expects") {
            roots.push((format!("/consumes/{index}/expects"), schema));
        }
    }
    for (name, schema) in members("$defs") {
        roots.push((format!("/$defs/{}", crate::parse::escape_pointer(name)), schema));
    }
    roots
}

fn resolve_reference(
    target: &str,
    root: &Value,
    own_base: &str,
    external: &SchemaSet,
) -> Result<(), (SchemaProblemKind, String)> {
    let unresolved = |message: String| Err((SchemaProblemKind::UnresolvedRef, message));
    if let Some(fragment) = target.strip_prefix('#') {
        return if resolves(root, fragment) {
            Ok(())
        } else {
            unresolved(format!(
                "{target:?} points to nothing in this document; references resolve against the document root, so shared schemas go in the top-level $defs and are referred to as #/$defs/<Name>"
            ))
        };
    }
    if let Some(rest) = target.strip_prefix(SOA_SCHEME) {
        let (base, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let base = format!("{SOA_SCHEME}{base}");
        let Some((service, major)) = soa_reference_target(target) else {
            return unresolved(format!(
                "{target:?} is not a contract reference; write soa://<service>@<major>#/$defs/<Name>, such as soa://payments@1#/$defs/Money"
            ));
        };
        let resource: &Value = if base == own_base {
            root
        } else {
            match external.get(&base) {
                Some(resource) => resource,
                None => {
                    return unresolved(format!(
                        "{target:?} refers to {service}@{major}, which is not registered (or was not supplied); register that contract first"
                    ));
                }
            }
        };
        return if resolves(resource, fragment) {
            Ok(())
        } else {
            unresolved(format!("{target:?}: {service}@{major} has nothing at #{fragment}"))
        };
    }
    Err((
        SchemaProblemKind::RemoteRef,
        format!(
            "{target:?} would be fetched from outside the registry; contract schemas may only refer inside the document (#/$defs/<Name>) or to a registered contract (soa://<service>@<major>#/$defs/<Name>); copy the schema into $defs or register it as a contract"
        ),
    ))
}

/// True when `fragment` (a JSON pointer or a plain-name anchor, without
/// `#`) names something in `resource`.
fn resolves(resource: &Value, fragment: &str) -> bool {
    let fragment = percent_decode(fragment);
    if fragment.is_empty() {
        return true;
    }
    if fragment.starts_with('/') {
        return resource.pointer(&fragment).is_some();
    }
    let mut found = false;
    for (pointer, schema) in schema_roots(resource) {
        for_each_subschema(schema, &pointer, |_, object| {
            for keyword in ["$anchor", "$dynamicAnchor"] {
                found |= object.get(keyword).and_then(Value::as_str) == Some(fragment.as_str());
            }
        });
    }
    found
}

/// Decodes `%XX` escapes in a URI fragment; anything malformed stays as is.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks every message schema and shared definition against the JSON
/// Schema 2020-12 meta-schema.
pub fn check_schemas(document: &ContractDocument) -> Vec<SchemaProblem> {
    check_schemas_in(document, &document.to_value())
}

/// [`check_schemas`] on the document already turned into a value.
pub(crate) fn check_schemas_in(document: &ContractDocument, root: &Value) -> Vec<SchemaProblem> {
    let meta = jsonschema::draft202012::meta::validator();
    let mut problems = Vec::new();
    for (pointer, schema) in schema_roots(root) {
        for error in meta.iter_errors(schema) {
            problems.push(SchemaProblem {
                contract: document.id(),
                pointer: format!("{pointer}{}", error.instance_path().as_str()),
                kind: SchemaProblemKind::InvalidSchema,
                message: format!("not a valid JSON Schema: {}", shorten(error.to_string())),
            });
        }
    }
    problems
}

/// Serves `soa://` resources to the schema compiler and refuses everything
/// else, so compilation never reaches the network or the file system.
#[derive(Clone)]
struct SoaRetriever {
    own_base: String,
    own: Arc<Value>,
    external: Arc<HashMap<String, Arc<Value>>>,
}

impl jsonschema::Retrieve for SoaRetriever {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let text = uri.as_str();
        let base = text.split_once('#').map_or(text, |(base, _)| base);
        let resource = if base == self.own_base {
            Some(&self.own)
        } else {
            self.external.get(base)
        };
        match resource {
            Some(resource) => Ok(Value::clone(resource)),
            None => Err(format!("{text} is not a registered contract and nothing else is fetched").into()),
        }
    }
}

/// What compiling any schema of one document needs, prepared once per
/// document: the document as a resource and the contracts it may refer to.
pub(crate) struct CompileContext {
    retriever: SoaRetriever,
}

impl CompileContext {
    pub(crate) fn new(document: &ContractDocument, external: &SchemaSet) -> Self {
        Self {
            retriever: SoaRetriever {
                own_base: contract_base_uri(&document.service, document.version.major()),
                own: Arc::new(resource_of(document)),
                external: Arc::clone(&external.resources),
            },
        }
    }

    /// The document as the resource references resolve into; also a plain
    /// value of the document (with `$schema` added) for other checks.
    pub(crate) fn resource(&self) -> &Value {
        &self.retriever.own
    }

    /// Compiles the schema at `pointer` in the document (a message schema or
    /// a shared definition); references resolve against the document root.
    pub(crate) fn compile_pointer(&self, pointer: &str) -> Result<jsonschema::Validator, String> {
        let entry = json!({ "$ref": format!("{}#{}", self.retriever.own_base, pointer_to_fragment(pointer)) });
        jsonschema::draft202012::options()
            .with_retriever(self.retriever.clone())
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .should_validate_formats(true)
            .build(&entry)
            .map_err(|err| format!("the schema does not compile: {}", shorten(err.to_string())))
    }

    /// Compiles every schema at `pointers` in one build: one indexing of
    /// the document instead of one per schema. `Ok` means each of them
    /// compiles; on `Err` compile them one by one to learn which failed.
    pub(crate) fn compile_all(&self, pointers: &[String]) -> Result<(), String> {
        let all: Vec<Value> = pointers
            .iter()
            .map(|pointer| json!({ "$ref": format!("{}#{}", self.retriever.own_base, pointer_to_fragment(pointer)) }))
            .collect();
        jsonschema::draft202012::options()
            .with_retriever(self.retriever.clone())
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .should_validate_formats(true)
            .build(&json!({ "anyOf": all }))
            .map(drop)
            .map_err(|err| shorten(err.to_string()))
    }

    pub(crate) fn compile_message(
        &self,
        document: &ContractDocument,
        key: &MessageKey,
    ) -> Result<MessageValidator, SchemaProblem> {
        let pointer = key.pointer();
        let problem = |kind, message: String| SchemaProblem {
            contract: document.id(),
            pointer: pointer.clone(),
            kind,
            message,
        };
        if document.message_schema(key).is_none() {
            return Err(problem(
                SchemaProblemKind::UnresolvedRef,
                format!("the contract declares no {key}"),
            ));
        }
        let validator = self
            .compile_pointer(&pointer)
            .map_err(|message| problem(SchemaProblemKind::CompileFailed, message))?;
        Ok(MessageValidator::new(document.id(), key.clone(), validator))
    }
}

/// Compiles the validator of one message of `document`. References must
/// already have passed [`check_references`]; this refuses them again, but
/// with a less precise message.
pub fn compile_message(
    document: &ContractDocument,
    key: &MessageKey,
    external: &SchemaSet,
) -> Result<MessageValidator, SchemaProblem> {
    CompileContext::new(document, external).compile_message(document, key)
}

/// Escapes a JSON pointer for use as a URI fragment.
fn pointer_to_fragment(pointer: &str) -> String {
    let mut fragment = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"/-._~$!&'()*+,;=:@".contains(&byte);
        if keep {
            fragment.push(char::from(byte));
        } else {
            fragment.push_str(&format!("%{byte:02X}"));
        }
    }
    fragment
}

/// Every message of a contract, compiled.
#[derive(Debug, Clone)]
pub struct CompiledContract {
    /// Which contract.
    pub id: ContractId,
    /// One validator per message.
    pub validators: HashMap<MessageKey, Arc<MessageValidator>>,
}

/// Checks references and schemas, then compiles every message. Returns every
/// problem found, not only the first.
pub fn compile_contract(
    document: &ContractDocument,
    external: &SchemaSet,
) -> Result<CompiledContract, Vec<SchemaProblem>> {
    let mut problems = check_references(document, external);
    problems.extend(check_schemas(document));
    if !problems.is_empty() {
        return Err(problems);
    }
    let context = CompileContext::new(document, external);
    let mut validators = HashMap::new();
    for (key, _) in document.messages() {
        match context.compile_message(document, &key) {
            Ok(validator) => {
                validators.insert(key, Arc::new(validator));
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(CompiledContract {
            id: document.id(),
            validators,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_cycles_that_never_nest_are_found_and_recursion_that_nests_is_not() {
        let document = json!({
            "operations": {"op": {"request": {"$ref": "#/$defs/A"}, "response": {"$ref": "#/$defs/Tree"}}},
            "$defs": {
                "A": {"allOf": [{"$ref": "#/$defs/B"}]},
                "B": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/A"}]},
                "Tree": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}}},
                "Self": {"$ref": "#/$defs/Self"}
            }
        });
        let cycles = reference_cycles(&document);
        let pointers: Vec<&str> = cycles.iter().map(|(pointer, _)| pointer.as_str()).collect();
        assert_eq!(pointers, ["/$defs/B/anyOf/1/$ref", "/$defs/Self/$ref"], "{cycles:?}");
        assert!(
            cycles[0].1.contains("/$defs/A -> /$defs/A/allOf/0 -> /$defs/B"),
            "{}",
            cycles[0].1
        );
    }

    #[test]
    fn soa_references_name_a_service_and_a_major() {
        let payments = ServiceName::parse("payments").unwrap();
        assert_eq!(
            soa_reference_target("soa://payments@1#/$defs/Money"),
            Some((payments.clone(), 1))
        );
        assert_eq!(soa_reference_target("soa://payments@2"), Some((payments, 2)));
        for other in [
            "#/$defs/Money",
            "https://example.com/money.json",
            "soa://payments#/$defs/Money",
            "soa://payments@1.2#/$defs/Money",
            "soa://Payments@1#/$defs/Money",
        ] {
            assert_eq!(soa_reference_target(other), None, "{other}");
        }
    }
}
