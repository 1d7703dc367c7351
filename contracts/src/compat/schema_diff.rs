//! Schema against schema: walks an old and a new JSON Schema side by side and
//! lists every change with what it does to the set of accepted instances.
//!
//! Each keyword is one conjunct of a schema, so a change that widens (or
//! narrows) every conjunct it touches widens (or narrows) the whole schema;
//! mixed effects are reported as they are and both directions break.
//! Alternatives (`anyOf`, `oneOf` whose alternatives cannot overlap, and the
//! nullable spellings) are compared alternative by alternative, a plain
//! schema standing for a union of one. Where the set of accepted values cannot
//! be compared exactly (regular expressions, a changed `if`, overlapping
//! `oneOf` alternatives, dynamic references) the change is `unclassified`,
//! never silently passed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::change::{Change, ChangeCode, Effect};
use super::model::{
    Bound, ContentModel, Governor, JsonType, TypeSet, allowed_values, combine, contains_value, disjoint, divides,
    json_equal, pair_indices,
};
use crate::parse::escape_pointer;

/// Annotations: changing them never changes which instances are accepted.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "$comment",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
];

/// Keywords that hold definitions rather than assertions; they matter only
/// through references, which are followed where they are used.
const DEFINITIONS: &[&str] = &["$defs", "definitions"];

/// Every assertion keyword the differ compares itself.
const HANDLED: &[&str] = &[
    "type",
    "nullable",
    "enum",
    "const",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "required",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "propertyNames",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "$recursiveAnchor",
    "unevaluatedProperties",
    "unevaluatedItems",
];

/// Keywords that may refuse `null` whatever the `type` says, so a `type`
/// list beside them cannot be split into a core and a `null` alternative.
const NULL_ENTANGLED: &[&str] = &[
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "unevaluatedProperties",
    "unevaluatedItems",
];

/// Lists every change from `old` to `new`; `$ref`s resolve within each schema.
pub fn diff_schemas(old: &Value, new: &Value) -> Vec<Change> {
    diff_schemas_at(old, "", new, "")
}

/// Lists every change from the schema at `old_pointer` in `old_root` to the
/// schema at `new_pointer` in `new_root`. Local `$ref`s resolve against the
/// roots, so a contract document's messages can be compared in place.
pub fn diff_schemas_at(old_root: &Value, old_pointer: &str, new_root: &Value, new_pointer: &str) -> Vec<Change> {
    diff_schemas_sharing(old_root, old_pointer, new_root, new_pointer, &mut 0)
}

/// [`diff_schemas_at`] drawing on a budget of [`MAX_STEPS`] shared by several
/// diffs: `spent` is what earlier ones took. A contract's messages share
/// one, so a document of many hostile schemas cannot take each one's share.
pub(crate) fn diff_schemas_sharing(
    old_root: &Value,
    old_pointer: &str,
    new_root: &Value,
    new_pointer: &str,
    spent: &mut usize,
) -> Vec<Change> {
    let (Some(old), Some(new)) = (old_root.pointer(old_pointer), new_root.pointer(new_pointer)) else {
        return vec![Change {
            code: ChangeCode::RefChanged,
            pointer: new_pointer.to_owned(),
            old_pointer: old_pointer.to_owned(),
            effect: Effect::Unclassified,
            message: "one of the schemas to compare does not exist".to_owned(),
            hint: None,
        }];
    };
    let mut differ = Differ {
        old_root,
        new_root,
        has_references: uses_references(old_root) || uses_references(new_root),
        reference_agreement: HashMap::new(),
        dynamic_agreement: None,
        visited: HashSet::new(),
        regexes: HashMap::new(),
        changes: Vec::new(),
        steps: *spent,
    };
    differ.compare(
        Side::new(old, old_pointer),
        Side::new(new, new_pointer),
        Polarity::Positive,
    );
    *spent = differ.steps;
    if differ.steps > MAX_STEPS {
        // What was found before the budget ran out may rest on probes cut
        // short, so none of it is reported as decided.
        return vec![Change {
            code: ChangeCode::TooComplexToCompare,
            pointer: new_pointer.to_owned(),
            old_pointer: old_pointer.to_owned(),
            effect: Effect::Unclassified,
            message: format!(
                "the schemas are too complex to compare within {MAX_STEPS} steps (alternatives nested in \
                 alternatives are compared pair by pair; a contract's messages share the steps); the checker \
                 cannot decide this change, review it by hand"
            ),
            hint: None,
        }];
    }
    differ.changes
}

/// The most comparison steps one diff may take: a schema compared with
/// another counts one, a probe also counts the pairs it saves. Alternatives
/// that pair with nothing are probed against every member of the other side,
/// and inside those probes the same happens again, so `anyOf`s nested in
/// `anyOf`s take time exponential in their depth; this bound turns a hostile
/// pair of schemas into an undecided change instead of a hang. Real schemas
/// stay far below it: the checker's own tests take under a hundred steps
/// per diff; anyOfs nested 14 deep take 65,533 (and 40 s while fuzzing).
const MAX_STEPS: usize = 50_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Polarity {
    Positive,
    /// Inside `not`: a wider inner schema is a narrower outer one.
    Negative,
}

impl Polarity {
    fn apply(self, effect: Effect) -> Effect {
        match self {
            Self::Positive => effect,
            Self::Negative => effect.inverted(),
        }
    }

    fn flipped(self) -> Self {
        match self {
            Self::Positive => Self::Negative,
            Self::Negative => Self::Positive,
        }
    }
}

/// A schema and where it stands.
#[derive(Clone, Copy)]
struct Side<'v, 'p> {
    value: &'v Value,
    pointer: &'p str,
}

impl<'v, 'p> Side<'v, 'p> {
    fn new(value: &'v Value, pointer: &'p str) -> Self {
        Self { value, pointer }
    }
}

/// How a list of alternatives (or of conjuncts) was written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    AnyOf,
    OneOf,
    AllOf,
    /// `type: [T, "null"]`, split into its core and `null`.
    TypeList,
    /// OpenAPI's `nullable: true`, split into its core and `null`.
    Nullable,
    /// A plain schema, standing for a list of one.
    Single,
}

/// One alternative (or conjunct) and where it stands.
struct Member<'v> {
    schema: Cow<'v, Value>,
    pointer: String,
}

/// A schema read as a list of alternatives, or of conjuncts.
struct Members<'v> {
    spelling: Spelling,
    members: Vec<Member<'v>>,
}

impl<'v> Members<'v> {
    fn borrowed(spelling: Spelling, items: &'v [Value], base: &str) -> Self {
        Self {
            spelling,
            members: items
                .iter()
                .enumerate()
                .map(|(index, item)| Member {
                    schema: Cow::Borrowed(item),
                    pointer: format!("{base}/{index}"),
                })
                .collect(),
        }
    }

    /// A plain schema as a list of one; `None` when the schema has
    /// alternatives of its own that are not a clean union.
    fn single(side: Side<'v, '_>, keywords: &[&str]) -> Option<Self> {
        let plain = match side.value {
            Value::Object(map) => keywords.iter().all(|keyword| !map.contains_key(*keyword)),
            Value::Bool(accepts) => *accepts,
            _ => false,
        };
        plain.then(|| Self {
            spelling: Spelling::Single,
            members: vec![Member {
                schema: Cow::Borrowed(side.value),
                pointer: side.pointer.to_owned(),
            }],
        })
    }
}

/// The schemas of an `allOf` that stands alone.
fn pure_all_of(value: &Value) -> Option<&Vec<Value>> {
    let map = value.as_object().filter(|map| only_besides(map, "allOf"))?;
    map.get("allOf")?.as_array()
}

/// A schema as a list of conjuncts: its pure `allOf`, or itself.
fn conjuncts<'v>(side: Side<'v, '_>, pure: Option<&'v Vec<Value>>) -> Option<Members<'v>> {
    match pure {
        Some(items) => Some(Members::borrowed(Spelling::AllOf, items, &child(side.pointer, "allOf"))),
        None => Members::single(side, &["allOf"]),
    }
}

fn is_annotation(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword)
}

fn is_definitions(keyword: &str) -> bool {
    DEFINITIONS.contains(&keyword)
}

/// True when `map` holds `keyword` and otherwise only annotations and definitions.
fn only_besides(map: &Map<String, Value>, keyword: &str) -> bool {
    map.contains_key(keyword)
        && map
            .keys()
            .all(|key| key == keyword || is_annotation(key) || is_definitions(key))
}

/// True when `arm` is `{"type": "null"}` (or `["null"]`), annotations aside.
fn is_null_schema(arm: &Value) -> bool {
    let null = Value::String("null".to_owned());
    arm.as_object().is_some_and(|map| {
        let only_null = match map.get("type") {
            Some(Value::Array(kinds)) => !kinds.is_empty() && kinds.iter().all(|kind| *kind == null),
            Some(kind) => *kind == null,
            None => false,
        };
        only_null && map.keys().all(|key| key == "type" || is_annotation(key))
    })
}

/// Visits every object inside `value` with its pointer below `pointer`.
fn walk<'v>(value: &'v Value, pointer: &str, visit: &mut dyn FnMut(&'v Map<String, Value>, &str)) {
    match value {
        Value::Object(map) => {
            visit(map, pointer);
            for (key, inner) in map {
                walk(inner, &child(pointer, key), visit);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &format!("{pointer}/{index}"), visit);
            }
        }
        _ => {}
    }
}

/// Visits every object inside `value`, without pointers.
fn each_object<'v>(value: &'v Value, visit: &mut dyn FnMut(&'v Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(map);
            for inner in map.values() {
                each_object(inner, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                each_object(item, visit);
            }
        }
        _ => {}
    }
}

fn uses_references(root: &Value) -> bool {
    let mut found = false;
    each_object(root, &mut |map| {
        found |= map.contains_key("$ref") || map.contains_key("$dynamicRef") || map.contains_key("$recursiveRef");
    });
    found
}

/// The schema a `$ref` points to inside `root` and its pointer: a JSON
/// pointer fragment, or a plain-name fragment naming exactly one `$anchor`
/// (or `$dynamicAnchor`). `None` for anything else (another document).
fn resolve_target<'v>(root: &'v Value, target: &str) -> Option<(&'v Value, String)> {
    let fragment = target.strip_prefix('#')?;
    if fragment.is_empty() || fragment.starts_with('/') {
        return root.pointer(fragment).map(|value| (value, fragment.to_owned()));
    }
    let mut found = Vec::new();
    walk(root, "", &mut |map, pointer| {
        let named = |keyword: &str| map.get(keyword).and_then(Value::as_str) == Some(fragment);
        if named("$anchor") || named("$dynamicAnchor") {
            found.push(pointer.to_owned());
        }
    });
    match found.as_slice() {
        [pointer] => root.pointer(pointer).map(|value| (value, pointer.clone())),
        _ => None,
    }
}

/// Follows a local `$ref` that stands alone (its only other keywords are
/// annotations and definitions), so `{"$ref": "#/$defs/A"}` compares like
/// `A` itself. Returns the schema reached and the pointer of the definition,
/// if any.
fn resolve_alone<'v>(value: &'v Value, root: &'v Value) -> (&'v Value, Option<String>) {
    let mut current = value;
    let mut target_pointer = None;
    for _ in 0..32 {
        let Some(object) = current.as_object() else { break };
        let Some(Value::String(target)) = object.get("$ref") else {
            break;
        };
        let alone = object
            .keys()
            .all(|key| key == "$ref" || is_annotation(key) || is_definitions(key));
        if !alone {
            break;
        }
        let Some((next, pointer)) = resolve_target(root, target) else {
            break;
        };
        target_pointer = Some(pointer);
        current = next;
    }
    (current, target_pointer)
}

/// The `$ref` of `value` when it cannot be followed within `root`.
fn dangling<'v>(value: &'v Value, root: &Value) -> Option<&'v str> {
    let target = reference_of(value)?;
    resolve_target(root, target).is_none().then_some(target)
}

fn reference_of(value: &Value) -> Option<&str> {
    value.as_object()?.get("$ref")?.as_str()
}

static EMPTY_MAP: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
static TRUE: Value = Value::Bool(true);

struct Differ<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// Whether either schema uses references at all; when neither does,
    /// equal values are equal schemas.
    has_references: bool,
    /// Whether a reference met inside equal values leads to equal schemas
    /// on both sides (everything reachable from it included).
    reference_agreement: HashMap<String, bool>,
    /// Whether the schemas a `$dynamicRef` may land on are equal on both sides.
    dynamic_agreement: Option<bool>,
    /// Pairs of schema pointers already compared, with the polarity: a
    /// recursive reference meets itself again and stops there (the pair is
    /// assumed equal, as in coinductive subtyping).
    visited: HashSet<(String, String, Polarity)>,
    /// Compiled `patternProperties` patterns, by their text.
    regexes: HashMap<String, Option<regex::Regex>>,
    changes: Vec<Change>,
    /// Work done so far, against [`MAX_STEPS`].
    steps: usize,
}

fn child(pointer: &str, segment: &str) -> String {
    format!("{pointer}/{}", escape_pointer(segment))
}

fn as_object(value: &Value) -> Option<&Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        Value::Bool(true) => Some(&EMPTY_MAP),
        _ => None,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// The types a schema really lets through: its `type`, and the types of its
/// `enum`/`const` values when those restrict it.
fn effective_types(value: &Value) -> TypeSet {
    let map = as_object(value).unwrap_or(&EMPTY_MAP);
    let types = TypeSet::of(map);
    match allowed_values(map) {
        Some(values) => types.restricted_to(&values),
        None => types,
    }
}

fn is_within(effect: Option<Effect>, allowed: Effect) -> bool {
    matches!(effect, Some(effect) if effect == Effect::None || effect == allowed)
}

impl<'a> Differ<'a> {
    fn record(&mut self, polarity: Polarity, code: ChangeCode, old: &str, new: &str, effect: Effect, message: String) {
        self.changes.push(Change {
            code,
            pointer: new.to_owned(),
            old_pointer: old.to_owned(),
            effect: polarity.apply(effect),
            message,
            hint: None,
        });
    }

    /// True when two schemas accept the same instances because they are the
    /// same text and every reference inside leads to the same schemas.
    fn same(&mut self, old: &Value, new: &Value) -> bool {
        json_equal(old, new) && (!self.has_references || self.references_agree(old))
    }

    fn references_agree(&mut self, value: &Value) -> bool {
        let (targets, dynamic) = references_in(value);
        if dynamic && !self.dynamic_anchors_agree() {
            return false;
        }
        targets.iter().all(|target| self.reference_agrees(target))
    }

    fn reference_agrees(&mut self, target: &str) -> bool {
        if let Some(known) = self.reference_agreement.get(target) {
            return *known;
        }
        // Only the answer for the whole reachable set is kept: an answer
        // given while a cycle is still open would be provisional.
        let mut seen = HashSet::new();
        let agrees = self.explore_reference(target, &mut seen);
        self.reference_agreement.insert(target.to_owned(), agrees);
        agrees
    }

    fn explore_reference(&mut self, target: &str, seen: &mut HashSet<String>) -> bool {
        if !seen.insert(target.to_owned()) {
            return true;
        }
        match (
            resolve_target(self.old_root, target),
            resolve_target(self.new_root, target),
        ) {
            (Some((old, _)), Some((new, _))) => {
                if !json_equal(old, new) {
                    return false;
                }
                let (targets, dynamic) = references_in(old);
                if dynamic && !self.dynamic_anchors_agree() {
                    return false;
                }
                targets.iter().all(|inner| self.explore_reference(inner, seen))
            }
            // Outside this document: the same text names the same schema here.
            (None, None) => true,
            _ => false,
        }
    }

    fn dynamic_anchors_agree(&mut self) -> bool {
        if let Some(known) = self.dynamic_agreement {
            return known;
        }
        let anchored = |root: &'a Value| {
            let mut found: Vec<&'a Value> = Vec::new();
            walk(root, "", &mut |map, pointer| {
                if map.contains_key("$dynamicAnchor") || map.get("$recursiveAnchor") == Some(&Value::Bool(true)) {
                    found.extend(root.pointer(pointer));
                }
            });
            found
        };
        let (old, new) = (anchored(self.old_root), anchored(self.new_root));
        let agrees = old.len() == new.len() && old.iter().zip(&new).all(|(a, b)| json_equal(a, b));
        self.dynamic_agreement = Some(agrees);
        agrees
    }

    /// Compares without recording anything: what `new` is to `old`, read
    /// positively. `None` when the details do not add up to one effect.
    fn probe(&mut self, old: Side<'_, '_>, new: Side<'_, '_>) -> Option<Effect> {
        self.steps = self.steps.saturating_add(self.visited.len());
        let saved_changes = std::mem::take(&mut self.changes);
        let saved_visited = self.visited.clone();
        self.compare(old, new, Polarity::Positive);
        let details = std::mem::replace(&mut self.changes, saved_changes);
        self.visited = saved_visited;
        combine(details.iter().map(|change| change.effect))
    }

    fn compare(&mut self, old: Side<'_, '_>, new: Side<'_, '_>, polarity: Polarity) {
        self.steps = self.steps.saturating_add(1);
        if self.steps > MAX_STEPS {
            return;
        }
        // The same `$ref` on both sides is compared in place: its siblings
        // one against the other, and its target with itself.
        let same_reference = reference_of(old.value).is_some() && reference_of(old.value) == reference_of(new.value);
        let (old_value, old_target) = if same_reference {
            (old.value, None)
        } else {
            resolve_alone(old.value, self.old_root)
        };
        let (new_value, new_target) = if same_reference {
            (new.value, None)
        } else {
            resolve_alone(new.value, self.new_root)
        };
        // Report at the place of use; follow the definition for the content.
        let old = Side::new(old_value, old.pointer);
        let new = Side::new(new_value, new.pointer);
        if self.same(old.value, new.value) {
            return;
        }
        if !same_reference {
            let (old_dangling, new_dangling) = (dangling(old.value, self.old_root), dangling(new.value, self.new_root));
            if old_dangling.is_some() || new_dangling.is_some() {
                self.record(
                    polarity,
                    ChangeCode::RefChanged,
                    &child(old.pointer, "$ref"),
                    &child(new.pointer, "$ref"),
                    Effect::Unclassified,
                    format!(
                        "$ref {} cannot be followed here, so {} cannot be compared with {}",
                        old_dangling.or(new_dangling).unwrap_or_default(),
                        short(old.value),
                        short(new.value)
                    ),
                );
                return;
            }
        }
        // A pair of schemas met again through a recursive reference is
        // assumed equal; pairs that cross no reference cannot recur. A
        // schema reached through a reference is known by its definition's
        // pointer, the other side by its text (its place of use keeps
        // changing as the recursion goes deeper).
        if old_target.is_some() || new_target.is_some() {
            let key = (
                identity(old.value, old_target),
                identity(new.value, new_target),
                polarity,
            );
            if !self.visited.insert(key) {
                return;
            }
        }
        match (old.value, new.value) {
            (_, Value::Bool(false)) => {
                self.record(
                    polarity,
                    ChangeCode::SchemaClosed,
                    old.pointer,
                    new.pointer,
                    Effect::Narrows,
                    "the schema now accepts nothing (false)".to_owned(),
                );
                return;
            }
            (Value::Bool(false), _) => {
                self.record(
                    polarity,
                    ChangeCode::SchemaOpened,
                    old.pointer,
                    new.pointer,
                    Effect::Widens,
                    "the schema accepted nothing (false) and now accepts values".to_owned(),
                );
                return;
            }
            _ => {}
        }
        if self.compare_as_unions(old, new, polarity) || self.compare_as_conjunctions(old, new, polarity) {
            return;
        }
        let (Some(old_map), Some(new_map)) = (as_object(old.value), as_object(new.value)) else {
            self.record(
                polarity,
                ChangeCode::UnknownKeywordChanged,
                old.pointer,
                new.pointer,
                Effect::Unclassified,
                format!(
                    "{} is not a schema; cannot compare it with {}",
                    short(old.value),
                    short(new.value)
                ),
            );
            return;
        };
        self.compare_objects(old, old_map, new, new_map, polarity);
    }

    /// A schema read as alternatives: a pure `anyOf`, a pure `oneOf` whose
    /// alternatives cannot overlap, or a nullable spelling (`type: [T,
    /// "null"]`, OpenAPI's `nullable`) split into its core and `null`.
    fn union_view<'v>(&self, side: Side<'v, '_>, root: &Value) -> Option<Members<'v>> {
        let map = side.value.as_object()?;
        if only_besides(map, "anyOf") {
            let arms = map.get("anyOf")?.as_array()?;
            return Some(Members::borrowed(Spelling::AnyOf, arms, &child(side.pointer, "anyOf")));
        }
        if only_besides(map, "oneOf") {
            let arms = map.get("oneOf")?.as_array()?;
            let exclusive_is_inclusive = disjoint(arms.iter(), |arm| resolve_alone(arm, root).0);
            return exclusive_is_inclusive
                .then(|| Members::borrowed(Spelling::OneOf, arms, &child(side.pointer, "oneOf")));
        }
        let known = |key: &String| {
            !NULL_ENTANGLED.contains(&key.as_str())
                && (HANDLED.contains(&key.as_str()) || is_annotation(key) || is_definitions(key))
        };
        if !map.keys().all(known) {
            return None;
        }
        let null = Value::String("null".to_owned());
        let (spelling, null_pointer, core_type) = match (map.get("type"), map.get("nullable")) {
            (Some(Value::Array(types)), _) if types.len() >= 2 && types.contains(&null) => {
                let rest: Vec<Value> = types.iter().filter(|kind| **kind != null).cloned().collect();
                let kind = match rest.as_slice() {
                    [one] => one.clone(),
                    _ => Value::Array(rest),
                };
                (Spelling::TypeList, child(side.pointer, "type"), kind)
            }
            (Some(kind), Some(Value::Bool(true)))
                if *kind != null && !kind.as_array().is_some_and(|kinds| kinds.contains(&null)) =>
            {
                (Spelling::Nullable, child(side.pointer, "nullable"), kind.clone())
            }
            _ => return None,
        };
        // `enum`/`const` without null refuse null whatever the type says.
        if allowed_values(map).is_some_and(|values| !contains_value(&values, &Value::Null)) {
            return None;
        }
        let mut core = map.clone();
        core.remove("nullable");
        core.insert("type".to_owned(), core_type);
        Some(Members {
            spelling,
            members: vec![
                Member {
                    schema: Cow::Owned(Value::Object(core)),
                    pointer: side.pointer.to_owned(),
                },
                Member {
                    schema: Cow::Owned(serde_json::json!({"type": "null"})),
                    pointer: null_pointer,
                },
            ],
        })
    }

    /// Unions compare alternative by alternative; a plain schema on the
    /// other side stands for a union of one. Returns false when neither side
    /// is a union.
    fn compare_as_unions(&mut self, old: Side<'_, '_>, new: Side<'_, '_>, polarity: Polarity) -> bool {
        let (old_union, new_union) = (self.union_view(old, self.old_root), self.union_view(new, self.new_root));
        if old_union.is_none() && new_union.is_none() {
            return false;
        }
        let plain = ["anyOf", "oneOf"];
        let (Some(old_union), Some(new_union)) = (
            old_union.or_else(|| Members::single(old, &plain)),
            new_union.or_else(|| Members::single(new, &plain)),
        ) else {
            return false;
        };
        self.compare_members(&old_union, &new_union, old.pointer, new.pointer, polarity);
        true
    }

    /// A pure `allOf` compares conjunct by conjunct; a plain schema on the
    /// other side stands for an `allOf` of one.
    fn compare_as_conjunctions(&mut self, old: Side<'_, '_>, new: Side<'_, '_>, polarity: Polarity) -> bool {
        let (old_pure, new_pure) = (pure_all_of(old.value), pure_all_of(new.value));
        if old_pure.is_none() && new_pure.is_none() {
            return false;
        }
        let (Some(old_members), Some(new_members)) = (conjuncts(old, old_pure), conjuncts(new, new_pure)) else {
            return false;
        };
        self.compare_members(&old_members, &new_members, old.pointer, new.pointer, polarity);
        true
    }

    /// Compares two lists of alternatives (or, when either is an `allOf`, of
    /// conjuncts): equal members pair first, then members of the same types,
    /// then a single member left on each side. A member left over is judged
    /// against every member of the other side: an alternative already
    /// covered by another, or a conjunct already implied by another,
    /// changes nothing.
    fn compare_members(
        &mut self,
        old: &Members<'_>,
        new: &Members<'_>,
        old_at: &str,
        new_at: &str,
        polarity: Polarity,
    ) {
        let conjunctive = old.spelling == Spelling::AllOf || new.spelling == Spelling::AllOf;
        let (old_root, new_root) = (self.old_root, self.new_root);
        let old_resolved: Vec<&Value> = old
            .members
            .iter()
            .map(|member| resolve_alone(&member.schema, old_root).0)
            .collect();
        let new_resolved: Vec<&Value> = new
            .members
            .iter()
            .map(|member| resolve_alone(&member.schema, new_root).0)
            .collect();
        let mut equal = Vec::new();
        for a in &old_resolved {
            let row: Vec<bool> = new_resolved.iter().map(|b| self.same(a, b)).collect();
            equal.push(row);
        }
        let old_types: Vec<TypeSet> = old_resolved.iter().map(|value| effective_types(value)).collect();
        let new_types: Vec<TypeSet> = new_resolved.iter().map(|value| effective_types(value)).collect();
        let old_null: Vec<bool> = old_resolved.iter().map(|value| is_null_schema(value)).collect();
        let new_null: Vec<bool> = new_resolved.iter().map(|value| is_null_schema(value)).collect();
        let mut by_equality = |i: usize, j: usize| equal[i][j];
        let mut by_null = |i: usize, j: usize| old_null[i] && new_null[j];
        let mut by_types = |i: usize, j: usize| !old_null[i] && !new_null[j] && old_types[i].same_as(&new_types[j]);
        let (mut pairs, mut removed, mut added) = pair_indices(
            old.members.len(),
            new.members.len(),
            &mut [&mut by_equality, &mut by_null, &mut by_types],
        );
        // One member left on each side is most likely the same one, edited.
        if let ([i], [j]) = (removed.as_slice(), added.as_slice()) {
            pairs.push((*i, *j));
            removed.clear();
            added.clear();
        }
        for (i, j) in pairs {
            let (old_member, new_member) = (&old.members[i], &new.members[j]);
            self.compare(
                Side::new(&old_member.schema, &old_member.pointer),
                Side::new(&new_member.schema, &new_member.pointer),
                polarity,
            );
        }
        for j in added {
            let member = &new.members[j];
            // An alternative inside an old one adds nothing; a conjunct that
            // an old conjunct implies takes nothing away.
            let redundant = old.members.iter().any(|other| {
                let effect = self.probe(
                    Side::new(&other.schema, &other.pointer),
                    Side::new(&member.schema, &member.pointer),
                );
                is_within(effect, if conjunctive { Effect::Widens } else { Effect::Narrows })
            });
            if new_null[j] && redundant {
                continue;
            }
            let effect = match (redundant, conjunctive) {
                (true, _) => Effect::None,
                (false, true) => Effect::Narrows,
                (false, false) => Effect::Widens,
            };
            let (code, message) = member_change(new.spelling, old.spelling, true, new_null[j], &member.schema);
            self.record(polarity, code, old_at, &member.pointer, effect, message);
        }
        for i in removed {
            let member = &old.members[i];
            let redundant = new.members.iter().any(|other| {
                let effect = self.probe(
                    Side::new(&member.schema, &member.pointer),
                    Side::new(&other.schema, &other.pointer),
                );
                is_within(effect, if conjunctive { Effect::Narrows } else { Effect::Widens })
            });
            if old_null[i] && redundant {
                continue;
            }
            let effect = match (redundant, conjunctive) {
                (true, _) => Effect::None,
                (false, true) => Effect::Widens,
                (false, false) => Effect::Narrows,
            };
            let (code, message) = member_change(old.spelling, new.spelling, false, old_null[i], &member.schema);
            self.record(polarity, code, &member.pointer, new_at, effect, message);
        }
    }

    fn compare_objects<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_values = allowed_values(o);
        let new_values = allowed_values(n);
        let old_types = old_values
            .as_ref()
            .map_or_else(|| TypeSet::of(o), |values| TypeSet::of(o).restricted_to(values));
        let new_types = new_values
            .as_ref()
            .map_or_else(|| TypeSet::of(n), |values| TypeSet::of(n).restricted_to(values));
        // When both sides list their values, the lists say everything `type` could.
        if old_values.is_none() || new_values.is_none() {
            self.compare_types(old, &old_types, new, &new_types, polarity);
        }
        self.compare_values(old, o, old_values.as_deref(), new, n, new_values.as_deref(), polarity);
        let both = |kind: JsonType| old_types.allows(kind) && new_types.allows(kind);
        if both(JsonType::Number) || both(JsonType::Integer) {
            self.compare_numbers(old, o, &old_types, new, n, &new_types, polarity);
        }
        if both(JsonType::String) {
            self.compare_count(old, o, new, n, "minLength", "maxLength", polarity);
            self.compare_pattern(old, o, new, n, polarity);
            self.compare_format(old, o, new, n, polarity);
        }
        if both(JsonType::Array) {
            self.compare_count(old, o, new, n, "minItems", "maxItems", polarity);
            self.compare_flag(old, o, new, n, "uniqueItems", polarity);
            self.compare_items(old, o, new, n, polarity);
            self.compare_contains(old, o, new, n, polarity);
        }
        if both(JsonType::Object) {
            self.compare_count(old, o, new, n, "minProperties", "maxProperties", polarity);
            self.compare_properties(old, o, new, n, polarity);
            self.compare_required(old, o, new, n, polarity);
            self.compare_dependent_required(old, o, new, n, polarity);
            self.compare_dependent_schemas(old, o, new, n, polarity);
            self.compare_optional_schema(old, o, new, n, "propertyNames", polarity);
        }
        self.compare_combinators(old, o, new, n, polarity);
        self.compare_not(old, o, new, n, polarity);
        self.compare_conditional(old, o, new, n, polarity);
        self.compare_references(old, o, new, n, polarity);
        for keyword in ["unevaluatedProperties", "unevaluatedItems"] {
            if !option_equal(o.get(keyword), n.get(keyword)) {
                self.record(
                    polarity,
                    ChangeCode::UnevaluatedChanged,
                    &child(old.pointer, keyword),
                    &child(new.pointer, keyword),
                    Effect::Unclassified,
                    format!("{keyword} changed; it depends on every other keyword's evaluation and is not compared"),
                );
            }
        }
        self.compare_annotations_and_unknowns(old, o, new, n, polarity);
    }

    fn compare_types<'v>(
        &mut self,
        old: Side<'v, '_>,
        old_types: &TypeSet,
        new: Side<'v, '_>,
        new_types: &TypeSet,
        polarity: Polarity,
    ) {
        let widened = old_types.is_subset_of(new_types);
        let narrowed = new_types.is_subset_of(old_types);
        let (code, effect) = match (widened, narrowed) {
            (true, true) => return,
            (true, false) => (ChangeCode::TypeWidened, Effect::Widens),
            (false, true) => (ChangeCode::TypeNarrowed, Effect::Narrows),
            (false, false) => (ChangeCode::TypeChanged, Effect::Changes),
        };
        self.record(
            polarity,
            code,
            &child(old.pointer, "type"),
            &child(new.pointer, "type"),
            effect,
            format!("type changed from {old_types} to {new_types}"),
        );
    }

    /// `enum` and `const`, compared as the sets of values they let through `type`.
    #[allow(clippy::too_many_arguments)]
    fn compare_values<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        old_values: Option<&[&Value]>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        new_values: Option<&[&Value]>,
        polarity: Polarity,
    ) {
        let uses_const = !o.contains_key("enum") && !n.contains_key("enum");
        let keyword = if uses_const { "const" } else { "enum" };
        let old_at = child(old.pointer, keyword);
        let new_at = child(new.pointer, keyword);
        match (old_values, new_values) {
            (None, None) => {}
            (None, Some(values)) => {
                let code = if uses_const {
                    ChangeCode::ConstAdded
                } else {
                    ChangeCode::EnumAdded
                };
                let shown: Vec<String> = values.iter().map(|value| short(value)).collect();
                self.record(
                    polarity,
                    code,
                    &old_at,
                    &new_at,
                    Effect::Narrows,
                    format!("only {} now allowed", shown.join(", ")),
                );
            }
            (Some(_), None) => {
                let code = if uses_const {
                    ChangeCode::ConstRemoved
                } else {
                    ChangeCode::EnumRemoved
                };
                self.record(
                    polarity,
                    code,
                    &old_at,
                    &new_at,
                    Effect::Widens,
                    format!("{keyword} removed: any value allowed"),
                );
            }
            (Some(old_values), Some(new_values)) => {
                let removed: Vec<String> = old_values
                    .iter()
                    .filter(|v| !contains_value(new_values, v))
                    .map(|v| short(v))
                    .collect();
                let added: Vec<String> = new_values
                    .iter()
                    .filter(|v| !contains_value(old_values, v))
                    .map(|v| short(v))
                    .collect();
                let (code, effect) = match (removed.is_empty(), added.is_empty()) {
                    (true, true) => return,
                    (true, false) if !uses_const => (ChangeCode::EnumWidened, Effect::Widens),
                    (false, true) if !uses_const => (ChangeCode::EnumNarrowed, Effect::Narrows),
                    (true, false) => (ChangeCode::ConstChanged, Effect::Widens),
                    (false, true) => (ChangeCode::ConstChanged, Effect::Narrows),
                    _ if uses_const => (ChangeCode::ConstChanged, Effect::Changes),
                    _ => (ChangeCode::EnumChanged, Effect::Changes),
                };
                let mut parts = Vec::new();
                if !removed.is_empty() {
                    parts.push(format!("removed {}", removed.join(", ")));
                }
                if !added.is_empty() {
                    parts.push(format!("added {}", added.join(", ")));
                }
                self.record(
                    polarity,
                    code,
                    &old_at,
                    &new_at,
                    effect,
                    format!("{keyword} {}", parts.join("; ")),
                );
            }
        }
    }

    /// Numeric bounds and `multipleOf`. Over integers only, bounds are read
    /// as inclusive integers and a `multipleOf` that divides 1 is no bound.
    #[allow(clippy::too_many_arguments)]
    fn compare_numbers<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        old_types: &TypeSet,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        new_types: &TypeSet,
        polarity: Polarity,
    ) {
        let (old_integers, new_integers) = (old_types.integers_only(), new_types.integers_only());
        for lower in [true, false] {
            let old_bound = Bound::of(o, lower);
            let new_bound = Bound::of(n, lower);
            let keyword = |bound: Option<Bound>| match (bound, lower) {
                (Some(Bound { exclusive: true, .. }), true) => "exclusiveMinimum",
                (_, true) => "minimum",
                (Some(Bound { exclusive: true, .. }), false) => "exclusiveMaximum",
                (_, false) => "maximum",
            };
            let old_at = child(old.pointer, keyword(old_bound));
            let new_at = child(new.pointer, keyword(new_bound));
            let read =
                |bound: Option<Bound>, integers: bool| bound.map(|b| if integers { b.for_integers(lower) } else { b });
            let (code, effect) = match (read(old_bound, old_integers), read(new_bound, new_integers)) {
                (None, None) => continue,
                (None, Some(_)) => (ChangeCode::BoundAdded, Effect::Narrows),
                (Some(_), None) => (ChangeCode::BoundRemoved, Effect::Widens),
                (Some(a), Some(b)) => match b.tighter_than(a, lower) {
                    Some(true) => (ChangeCode::BoundTightened, Effect::Narrows),
                    Some(false) => (ChangeCode::BoundLoosened, Effect::Widens),
                    None => continue,
                },
            };
            let describe = |bound: Option<Bound>| bound.map_or_else(|| "none".to_owned(), |b| b.to_string());
            self.record(
                polarity,
                code,
                &old_at,
                &new_at,
                effect,
                format!(
                    "{} bound changed from {} to {}",
                    if lower { "lower" } else { "upper" },
                    describe(old_bound),
                    describe(new_bound)
                ),
            );
        }
        let multiple = |map: &Map<String, Value>, integers: bool| {
            map.get("multipleOf")
                .and_then(Value::as_f64)
                .filter(|m| *m > 0.0)
                .filter(|m| !(integers && divides(*m, 1.0)))
        };
        let old_multiple = multiple(o, old_integers);
        let new_multiple = multiple(n, new_integers);
        let (code, effect) = match (old_multiple, new_multiple) {
            (None, None) => return,
            (None, Some(_)) => (ChangeCode::MultipleOfTightened, Effect::Narrows),
            (Some(_), None) => (ChangeCode::MultipleOfLoosened, Effect::Widens),
            (Some(a), Some(b)) if a == b => return,
            (Some(a), Some(b)) if divides(a, b) => (ChangeCode::MultipleOfTightened, Effect::Narrows),
            (Some(a), Some(b)) if divides(b, a) => (ChangeCode::MultipleOfLoosened, Effect::Widens),
            _ => (ChangeCode::MultipleOfChanged, Effect::Changes),
        };
        let show = |m: Option<f64>| m.map_or_else(|| "none".to_owned(), |m| m.to_string());
        self.record(
            polarity,
            code,
            &child(old.pointer, "multipleOf"),
            &child(new.pointer, "multipleOf"),
            effect,
            format!(
                "multipleOf changed from {} to {}",
                show(old_multiple),
                show(new_multiple)
            ),
        );
    }
    /// A `min*`/`max*` pair of counts (lengths, items, properties).
    #[allow(clippy::too_many_arguments)]
    fn compare_count<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        min_keyword: &str,
        max_keyword: &str,
        polarity: Polarity,
    ) {
        let read = |map: &Map<String, Value>, keyword: &str| map.get(keyword).and_then(Value::as_f64);
        for (keyword, is_min) in [(min_keyword, true), (max_keyword, false)] {
            let (a, b) = (read(o, keyword), read(n, keyword));
            // A minimum of 0 is no bound at all.
            let effective = |value: Option<f64>| if is_min { value.filter(|v| *v > 0.0) } else { value };
            let (code, effect) = match (effective(a), effective(b)) {
                (None, None) => continue,
                (None, Some(_)) => (ChangeCode::BoundAdded, Effect::Narrows),
                (Some(_), None) => (ChangeCode::BoundRemoved, Effect::Widens),
                (Some(x), Some(y)) if x == y => continue,
                (Some(x), Some(y)) if (y > x) == is_min => (ChangeCode::BoundTightened, Effect::Narrows),
                (Some(_), Some(_)) => (ChangeCode::BoundLoosened, Effect::Widens),
            };
            let show = |value: Option<f64>| value.map_or_else(|| "none".to_owned(), |v| v.to_string());
            self.record(
                polarity,
                code,
                &child(old.pointer, keyword),
                &child(new.pointer, keyword),
                effect,
                format!("{keyword} changed from {} to {}", show(a), show(b)),
            );
        }
    }

    fn compare_flag<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        keyword: &str,
        polarity: Polarity,
    ) {
        let on = |map: &Map<String, Value>| map.get(keyword).and_then(Value::as_bool).unwrap_or(false);
        let (code, effect) = match (on(o), on(n)) {
            (false, true) => (ChangeCode::UniqueItemsAdded, Effect::Narrows),
            (true, false) => (ChangeCode::UniqueItemsRemoved, Effect::Widens),
            _ => return,
        };
        self.record(
            polarity,
            code,
            &child(old.pointer, keyword),
            &child(new.pointer, keyword),
            effect,
            format!("{keyword} turned {}", if on(n) { "on" } else { "off" }),
        );
    }

    fn compare_pattern<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        polarity: Polarity,
    ) {
        let (code, effect, message) = match (o.get("pattern"), n.get("pattern")) {
            (None, None) => return,
            (a, b) if a == b => return,
            (None, Some(p)) => (
                ChangeCode::PatternAdded,
                Effect::Narrows,
                format!("pattern {} added", short(p)),
            ),
            (Some(p), None) => (
                ChangeCode::PatternRemoved,
                Effect::Widens,
                format!("pattern {} removed", short(p)),
            ),
            (Some(a), Some(b)) => (
                ChangeCode::PatternChanged,
                Effect::Unclassified,
                format!(
                    "pattern changed from {} to {}; regular expressions cannot be compared exactly",
                    short(a),
                    short(b)
                ),
            ),
        };
        self.record(
            polarity,
            code,
            &child(old.pointer, "pattern"),
            &child(new.pointer, "pattern"),
            effect,
            message,
        );
    }

    fn compare_format<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        polarity: Polarity,
    ) {
        /// Formats whose valid strings include every valid string of another.
        const WIDER: &[(&str, &str)] = &[
            ("email", "idn-email"),
            ("hostname", "idn-hostname"),
            ("uri", "iri"),
            ("uri-reference", "iri-reference"),
            ("uri", "uri-reference"),
            ("iri", "iri-reference"),
        ];
        let (a, b) = (
            o.get("format").and_then(Value::as_str),
            n.get("format").and_then(Value::as_str),
        );
        let (code, effect) = match (a, b) {
            (None, None) => return,
            (x, y) if x == y => return,
            (None, Some(_)) => (ChangeCode::FormatAdded, Effect::Narrows),
            (Some(_), None) => (ChangeCode::FormatRemoved, Effect::Widens),
            (Some(x), Some(y)) if WIDER.contains(&(x, y)) => (ChangeCode::FormatChanged, Effect::Widens),
            (Some(x), Some(y)) if WIDER.contains(&(y, x)) => (ChangeCode::FormatChanged, Effect::Narrows),
            (Some(_), Some(_)) => (ChangeCode::FormatChanged, Effect::Changes),
        };
        self.record(
            polarity,
            code,
            &child(old.pointer, "format"),
            &child(new.pointer, "format"),
            effect,
            format!("format changed from {} to {}", a.unwrap_or("none"), b.unwrap_or("none")),
        );
    }

    /// `prefixItems` and `items` (2020-12), or `items` as an array and
    /// `additionalItems` (draft-07): each position is compared with the
    /// schema that governs it on either side.
    fn compare_items<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let layout = |map: &'v Map<String, Value>, pointer: &str| -> (Vec<(&'v Value, String)>, (&'v Value, String)) {
            let (prefix_keyword, tail_keyword) = match map.get("items") {
                Some(Value::Array(_)) => ("items", "additionalItems"),
                _ => ("prefixItems", "items"),
            };
            let prefix = map
                .get(prefix_keyword)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| (item, format!("{pointer}/{prefix_keyword}/{i}")))
                        .collect()
                })
                .unwrap_or_default();
            let tail = (map.get(tail_keyword).unwrap_or(&TRUE), child(pointer, tail_keyword));
            (prefix, tail)
        };
        let (old_prefix, old_tail) = layout(o, old.pointer);
        let (new_prefix, new_tail) = layout(n, new.pointer);
        for index in 0..old_prefix.len().max(new_prefix.len()) {
            let (old_schema, old_at) = old_prefix.get(index).cloned().unwrap_or_else(|| old_tail.clone());
            let (new_schema, new_at) = new_prefix.get(index).cloned().unwrap_or_else(|| new_tail.clone());
            let summary = match (index < old_prefix.len(), index < new_prefix.len()) {
                (false, true) => Some((
                    ChangeCode::ItemPositionAdded,
                    format!("array position {index} now has a schema of its own"),
                )),
                (true, false) => Some((
                    ChangeCode::ItemPositionRemoved,
                    format!("array position {index} lost its own schema"),
                )),
                _ => None,
            };
            match summary {
                None => self.compare(Side::new(old_schema, &old_at), Side::new(new_schema, &new_at), polarity),
                Some((code, message)) => self.summarize(
                    Side::new(old_schema, &old_at),
                    Side::new(new_schema, &new_at),
                    polarity,
                    code,
                    message,
                    None,
                ),
            }
        }
        self.compare(
            Side::new(old_tail.0, &old_tail.1),
            Side::new(new_tail.0, &new_tail.1),
            polarity,
        );
    }

    /// `contains` with `minContains` (1 unless given) and `maxContains`.
    /// Without a cap a wider `contains` schema accepts more arrays; with
    /// `maxContains` a wider schema also counts more matches, so a changed
    /// schema can break either way and is left unclassified.
    fn compare_contains<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_at = child(old.pointer, "contains");
        let new_at = child(new.pointer, "contains");
        match (o.get("contains"), n.get("contains")) {
            (None, None) => {}
            (None, Some(_)) => self.record(
                polarity,
                ChangeCode::ContainsAdded,
                &old_at,
                &new_at,
                Effect::Narrows,
                "contains added".to_owned(),
            ),
            (Some(_), None) => self.record(
                polarity,
                ChangeCode::ContainsRemoved,
                &old_at,
                &new_at,
                Effect::Widens,
                "contains removed".to_owned(),
            ),
            (Some(a), Some(b)) => {
                let capped = o.contains_key("maxContains") || n.contains_key("maxContains");
                if capped && !self.same(a, b) {
                    self.record(
                        polarity,
                        ChangeCode::ContainsChanged,
                        &old_at,
                        &new_at,
                        Effect::Unclassified,
                        "the contains schema changed under a maxContains cap; more or fewer matches can break either way".to_owned(),
                    );
                } else {
                    self.compare(Side::new(a, &old_at), Side::new(b, &new_at), polarity);
                }
                let minimum = |map: &Map<String, Value>| map.get("minContains").and_then(Value::as_f64).unwrap_or(1.0);
                let (before, after) = (minimum(o), minimum(n));
                if before != after {
                    let (code, effect) = if after > before {
                        (ChangeCode::BoundTightened, Effect::Narrows)
                    } else {
                        (ChangeCode::BoundLoosened, Effect::Widens)
                    };
                    self.record(
                        polarity,
                        code,
                        &child(old.pointer, "minContains"),
                        &child(new.pointer, "minContains"),
                        effect,
                        format!("minContains changed from {before} to {after}"),
                    );
                }
                let maximum = |map: &Map<String, Value>| map.get("maxContains").and_then(Value::as_f64);
                let (code, effect) = match (maximum(o), maximum(n)) {
                    (None, None) => return,
                    (None, Some(_)) => (ChangeCode::BoundAdded, Effect::Narrows),
                    (Some(_), None) => (ChangeCode::BoundRemoved, Effect::Widens),
                    (Some(a), Some(b)) if a == b => return,
                    (Some(a), Some(b)) if b < a => (ChangeCode::BoundTightened, Effect::Narrows),
                    (Some(_), Some(_)) => (ChangeCode::BoundLoosened, Effect::Widens),
                };
                self.record(
                    polarity,
                    code,
                    &child(old.pointer, "maxContains"),
                    &child(new.pointer, "maxContains"),
                    effect,
                    "maxContains changed".to_owned(),
                );
            }
        }
    }

    /// The object content model: named properties, pattern properties and
    /// additional properties. Every name is governed on each side by its own
    /// schema, the patterns it matches, or else `additionalProperties`, all
    /// at once; names compare by what governs them, so open, closed and
    /// partially open models are handled exactly.
    fn compare_properties<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_props = o.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let new_props = n.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let names: BTreeSet<&String> = old_props.keys().chain(new_props.keys()).collect();
        if !names.is_empty() {
            let old_model = ContentModel::of(o, old.pointer, &mut self.regexes);
            let new_model = ContentModel::of(n, new.pointer, &mut self.regexes);
            for name in names {
                let old_governs = old_model.governing(name, old_props);
                let new_governs = new_model.governing(name, new_props);
                self.compare_property(old, new, name, &old_governs, &new_governs, polarity);
            }
        }
        self.compare_unnamed(old, o, new, n, polarity);
    }

    fn compare_property(
        &mut self,
        old: Side<'_, '_>,
        new: Side<'_, '_>,
        name: &str,
        old_governs: &[(Governor, &Value, String)],
        new_governs: &[(Governor, &Value, String)],
        polarity: Polarity,
    ) {
        let in_old = old_governs.iter().any(|(governor, ..)| *governor == Governor::Named);
        let in_new = new_governs.iter().any(|(governor, ..)| *governor == Governor::Named);
        if let ([(_, old_schema, old_at)], [(_, new_schema, new_at)]) = (old_governs, new_governs) {
            if in_old && in_new {
                self.compare(Side::new(old_schema, old_at), Side::new(new_schema, new_at), polarity);
                return;
            }
            let (code, message, hint) = moved_property(name, in_new, old_schema, old_at, new_schema, new_at);
            let here_old = if in_old {
                old_at.clone()
            } else {
                child(old.pointer, "properties")
            };
            let here_new = if in_new {
                new_at.clone()
            } else {
                child(new.pointer, "properties")
            };
            self.summarize(
                Side::new(old_schema, &here_old),
                Side::new(new_schema, &here_new),
                polarity,
                code,
                message,
                hint,
            );
            return;
        }
        // Several schemas apply at once: the same governors compare pairwise,
        // and the rest are conjuncts added or removed.
        let mut matched = Vec::new();
        let mut old_left: Vec<usize> = Vec::new();
        for (i, (governor, ..)) in old_governs.iter().enumerate() {
            match new_governs.iter().position(|(other, ..)| other == governor) {
                Some(j) => matched.push((i, j)),
                None => old_left.push(i),
            }
        }
        let new_left: Vec<usize> = (0..new_governs.len())
            .filter(|j| !matched.iter().any(|(_, m)| m == j))
            .collect();
        for &(i, j) in &matched {
            let ((_, a, a_at), (_, b, b_at)) = (&old_governs[i], &new_governs[j]);
            self.compare(Side::new(a, a_at), Side::new(b, b_at), polarity);
        }
        if old_left.is_empty() && new_left.is_empty() {
            return;
        }
        let code = match (in_old, in_new) {
            (false, true) => ChangeCode::PropertyAdded,
            (true, false) => ChangeCode::PropertyRemoved,
            _ => ChangeCode::PatternPropertiesChanged,
        };
        let here_old = child(&child(old.pointer, "properties"), name);
        let here_new = child(&child(new.pointer, "properties"), name);
        let message = format!("the schemas that apply to property {name:?} changed");
        self.summarize_with(code, &here_old, &here_new, message, None, |this| {
            if !old_left.is_empty() && !new_left.is_empty() {
                for &i in &old_left {
                    for &j in &new_left {
                        let ((_, a, a_at), (_, b, b_at)) = (&old_governs[i], &new_governs[j]);
                        this.compare(Side::new(a, a_at), Side::new(b, b_at), polarity);
                    }
                }
            } else if !new_left.is_empty() {
                for &j in &new_left {
                    let (_, added, added_at) = &new_governs[j];
                    let implied = matched.iter().any(|&(i, _)| {
                        let (_, kept, kept_at) = &old_governs[i];
                        is_within(
                            this.probe(Side::new(kept, kept_at), Side::new(added, added_at)),
                            Effect::Widens,
                        )
                    });
                    let effect = if implied { Effect::None } else { Effect::Narrows };
                    this.record(
                        polarity,
                        code,
                        &here_old,
                        added_at,
                        effect,
                        format!("{added_at} now applies to {name:?} too"),
                    );
                }
            } else {
                for &i in &old_left {
                    let (_, dropped, dropped_at) = &old_governs[i];
                    let implied = matched.iter().any(|&(_, j)| {
                        let (_, kept, kept_at) = &new_governs[j];
                        is_within(
                            this.probe(Side::new(dropped, dropped_at), Side::new(kept, kept_at)),
                            Effect::Narrows,
                        )
                    });
                    let effect = if implied { Effect::None } else { Effect::Widens };
                    this.record(
                        polarity,
                        code,
                        dropped_at,
                        &here_new,
                        effect,
                        format!("{dropped_at} no longer applies to {name:?}"),
                    );
                }
            }
        });
    }

    /// Names listed in neither `properties`: the common patterns compare
    /// pairwise and `additionalProperties` with itself. A pattern on one side
    /// only may match names that the other side governs by
    /// `additionalProperties`, by a pattern that is gone, or together with a
    /// common pattern; every such meeting is compared and the effects add up.
    fn compare_unnamed<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_patterns = o
            .get("patternProperties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY_MAP);
        let new_patterns = n
            .get("patternProperties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY_MAP);
        let old_additional = (
            o.get("additionalProperties").unwrap_or(&TRUE),
            child(old.pointer, "additionalProperties"),
        );
        let new_additional = (
            n.get("additionalProperties").unwrap_or(&TRUE),
            child(new.pointer, "additionalProperties"),
        );
        let old_base = child(old.pointer, "patternProperties");
        let new_base = child(new.pointer, "patternProperties");
        let mut common = Vec::new();
        let mut removed = Vec::new();
        for (pattern, schema) in old_patterns {
            let at = child(&old_base, pattern);
            match new_patterns.get(pattern) {
                Some(other) => common.push(((schema, at), (other, child(&new_base, pattern)))),
                None => removed.push((schema, at)),
            }
        }
        let added: Vec<(&Value, String)> = new_patterns
            .iter()
            .filter(|(pattern, _)| !old_patterns.contains_key(*pattern))
            .map(|(pattern, schema)| (schema, child(&new_base, pattern)))
            .collect();
        for ((a, a_at), (b, b_at)) in &common {
            self.compare(Side::new(a, a_at), Side::new(b, b_at), polarity);
        }
        self.compare(
            Side::new(old_additional.0, &old_additional.1),
            Side::new(new_additional.0, &new_additional.1),
            polarity,
        );
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let names = |list: &[(&Value, String)]| {
            list.iter()
                .map(|(_, at)| at.rsplit('/').next().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let message = match (added.is_empty(), removed.is_empty()) {
            (false, true) => format!("patternProperties gained {}", names(&added)),
            (true, false) => format!("patternProperties lost {}", names(&removed)),
            _ => format!(
                "patternProperties gained {} and lost {}",
                names(&added),
                names(&removed)
            ),
        };
        self.summarize_with(
            ChangeCode::PatternPropertiesChanged,
            &old_base,
            &new_base,
            message,
            None,
            |this| {
                for (a, a_at) in &added {
                    this.compare(
                        Side::new(old_additional.0, &old_additional.1),
                        Side::new(a, a_at),
                        polarity,
                    );
                    for (r, r_at) in &removed {
                        this.compare(Side::new(r, r_at), Side::new(a, a_at), polarity);
                    }
                    if !common.is_empty() {
                        // Beside a common pattern the new one is one more conjunct.
                        let implied = common.iter().all(|((c, c_at), _)| {
                            is_within(this.probe(Side::new(c, c_at), Side::new(a, a_at)), Effect::Widens)
                        });
                        let effect = if implied { Effect::None } else { Effect::Narrows };
                        this.record(
                            polarity,
                            ChangeCode::PatternPropertiesChanged,
                            &old_base,
                            a_at,
                            effect,
                            format!("{a_at} added"),
                        );
                    }
                }
                for (r, r_at) in &removed {
                    this.compare(
                        Side::new(r, r_at),
                        Side::new(new_additional.0, &new_additional.1),
                        polarity,
                    );
                    if !common.is_empty() {
                        let implied = common.iter().all(|(_, (c, c_at))| {
                            is_within(this.probe(Side::new(r, r_at), Side::new(c, c_at)), Effect::Narrows)
                        });
                        let effect = if implied { Effect::None } else { Effect::Widens };
                        this.record(
                            polarity,
                            ChangeCode::PatternPropertiesChanged,
                            r_at,
                            &new_base,
                            effect,
                            format!("{r_at} removed"),
                        );
                    }
                }
            },
        );
    }

    /// Compares two schemas and reports the result as one change of `code`
    /// whose effect sums up the detailed changes; when they do not sum up
    /// (a widening and an unclassified change, say) the details are kept.
    fn summarize(
        &mut self,
        old: Side<'_, '_>,
        new: Side<'_, '_>,
        polarity: Polarity,
        code: ChangeCode,
        message: String,
        hint: Option<String>,
    ) {
        self.summarize_with(code, old.pointer, new.pointer, message, hint, |this| {
            this.compare(old, new, polarity)
        });
    }

    /// Runs `body` and folds the changes it records into one change of
    /// `code`, as [`Self::summarize`] does.
    fn summarize_with(
        &mut self,
        code: ChangeCode,
        old_pointer: &str,
        new_pointer: &str,
        message: String,
        hint: Option<String>,
        body: impl FnOnce(&mut Self),
    ) {
        let saved = std::mem::take(&mut self.changes);
        body(self);
        let details = std::mem::replace(&mut self.changes, saved);
        match combine(details.iter().map(|change| change.effect)) {
            Some(effect) => self.changes.push(Change {
                code,
                pointer: new_pointer.to_owned(),
                old_pointer: old_pointer.to_owned(),
                effect,
                message,
                hint: if matches!(effect, Effect::Narrows | Effect::Widens | Effect::Changes) {
                    hint
                } else {
                    None
                },
            }),
            None => self.changes.extend(details),
        }
    }
    fn compare_required<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        polarity: Polarity,
    ) {
        let names = |map: &Map<String, Value>| -> BTreeSet<String> {
            map.get("required")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let (before, after) = (names(o), names(n));
        let old_at = child(old.pointer, "required");
        let new_at = child(new.pointer, "required");
        for name in after.difference(&before) {
            self.record(
                polarity,
                ChangeCode::RequiredAdded,
                &old_at,
                &new_at,
                Effect::Narrows,
                format!("property {name:?} became required; data without it is refused"),
            );
        }
        for name in before.difference(&after) {
            self.record(
                polarity,
                ChangeCode::RequiredRemoved,
                &old_at,
                &new_at,
                Effect::Widens,
                format!("property {name:?} is no longer required; readers must cope without it"),
            );
        }
    }

    fn compare_dependent_required<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        polarity: Polarity,
    ) {
        // Draft-07 `dependencies` with an array means what `dependentRequired` does.
        let pairs = |map: &Map<String, Value>| -> BTreeSet<(String, String)> {
            let mut pairs = BTreeSet::new();
            for keyword in ["dependentRequired", "dependencies"] {
                for (name, needs) in map.get(keyword).and_then(Value::as_object).into_iter().flatten() {
                    for needed in needs.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        pairs.insert((name.clone(), needed.to_owned()));
                    }
                }
            }
            pairs
        };
        let keyword_of = |map: &Map<String, Value>| {
            if map.contains_key("dependencies") && !map.contains_key("dependentRequired") {
                "dependencies"
            } else {
                "dependentRequired"
            }
        };
        let (before, after) = (pairs(o), pairs(n));
        let old_at = child(old.pointer, keyword_of(o));
        let new_at = child(new.pointer, keyword_of(n));
        for (name, needed) in after.difference(&before) {
            self.record(
                polarity,
                ChangeCode::DependentRequiredAdded,
                &old_at,
                &new_at,
                Effect::Narrows,
                format!("when {name:?} is present, {needed:?} is now required too"),
            );
        }
        for (name, needed) in before.difference(&after) {
            self.record(
                polarity,
                ChangeCode::DependentRequiredRemoved,
                &old_at,
                &new_at,
                Effect::Widens,
                format!("when {name:?} is present, {needed:?} is no longer required"),
            );
        }
    }

    /// `dependentSchemas`, and draft-07 `dependencies` whose value is a
    /// schema: each applies one more schema when its property is present.
    fn compare_dependent_schemas<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let entries = |map: &'v Map<String, Value>, pointer: &str| {
            let mut entries: BTreeMap<&'v String, Vec<(&'v Value, String)>> = BTreeMap::new();
            for keyword in ["dependentSchemas", "dependencies"] {
                for (name, schema) in map.get(keyword).and_then(Value::as_object).into_iter().flatten() {
                    if schema.is_object() || schema.is_boolean() {
                        entries
                            .entry(name)
                            .or_default()
                            .push((schema, child(&child(pointer, keyword), name)));
                    }
                }
            }
            entries
        };
        let (old_entries, new_entries) = (entries(o, old.pointer), entries(n, new.pointer));
        let old_base = child(old.pointer, "dependentSchemas");
        let new_base = child(new.pointer, "dependentSchemas");
        let names: BTreeSet<&String> = old_entries.keys().chain(new_entries.keys()).copied().collect();
        let none = Vec::new();
        for name in names {
            let before = old_entries.get(name).unwrap_or(&none);
            let after = new_entries.get(name).unwrap_or(&none);
            // Both keywords may name the same property; each entry is then
            // one more conjunct, compared in order.
            for index in 0..before.len().max(after.len()) {
                match (before.get(index), after.get(index)) {
                    (Some((a, a_at)), Some((b, b_at))) => {
                        self.compare(Side::new(a, a_at), Side::new(b, b_at), polarity)
                    }
                    (None, Some((b, b_at))) => self.summarize(
                        Side::new(&TRUE, &old_base),
                        Side::new(b, b_at),
                        polarity,
                        ChangeCode::DependentSchemaAdded,
                        format!("a schema now applies when {name:?} is present"),
                        None,
                    ),
                    (Some((a, a_at)), None) => self.summarize(
                        Side::new(a, a_at),
                        Side::new(&TRUE, &new_base),
                        polarity,
                        ChangeCode::DependentSchemaRemoved,
                        format!("the schema that applied when {name:?} is present was removed"),
                        None,
                    ),
                    (None, None) => {}
                }
            }
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn compare_optional_schema<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        keyword: &str,
        polarity: Polarity,
    ) {
        if o.get(keyword).is_none() && n.get(keyword).is_none() {
            return;
        }
        let old_at = child(old.pointer, keyword);
        let new_at = child(new.pointer, keyword);
        self.compare(
            Side::new(o.get(keyword).unwrap_or(&TRUE), &old_at),
            Side::new(n.get(keyword).unwrap_or(&TRUE), &new_at),
            polarity,
        );
    }

    /// `allOf`, `anyOf` and `oneOf` beside other keywords. A list present on
    /// one side only is one conjunct added or removed; lists on both sides
    /// compare member by member. A `oneOf` whose alternatives cannot overlap
    /// is an `anyOf`, so the two spellings compare with each other.
    fn compare_combinators<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let arms =
            |map: &'v Map<String, Value>, keyword: &str| map.get(keyword).and_then(Value::as_array).map(Vec::as_slice);
        let old_all = arms(o, "allOf");
        let new_all = arms(n, "allOf");
        self.compare_combinator_lists(old, old_all, new, new_all, "allOf", polarity);
        let old_union = self.disjunction(old, o, self.old_root);
        let new_union = self.disjunction(new, n, self.new_root);
        if let (Some(old_union), Some(new_union)) = (&old_union, &new_union) {
            self.compare_members(old_union, new_union, old.pointer, new.pointer, polarity);
            return;
        }
        // Exactly one match is at least one match: with the same
        // alternatives, oneOf becoming anyOf widens, and the reverse narrows.
        let (old_any, old_one, new_any, new_one) =
            (arms(o, "anyOf"), arms(o, "oneOf"), arms(n, "anyOf"), arms(n, "oneOf"));
        let swap = match (old_any, old_one, new_any, new_one) {
            (None, Some(a), Some(b), None) => Some((a, b, Effect::Widens, "oneOf became anyOf")),
            (Some(a), None, None, Some(b)) => Some((a, b, Effect::Narrows, "anyOf became oneOf")),
            _ => None,
        };
        if let Some((a, b, effect, what)) = swap
            && self.same_members(a, b)
        {
            self.record(
                polarity,
                ChangeCode::CombinatorChanged,
                &child(old.pointer, if effect == Effect::Widens { "oneOf" } else { "anyOf" }),
                &child(new.pointer, if effect == Effect::Widens { "anyOf" } else { "oneOf" }),
                effect,
                format!("{what} with the same alternatives"),
            );
            return;
        }
        self.compare_combinator_lists(old, old_any, new, new_any, "anyOf", polarity);
        self.compare_combinator_lists(old, old_one, new, new_one, "oneOf", polarity);
    }

    /// The alternatives of a map's `anyOf`, or of a `oneOf` whose
    /// alternatives cannot overlap, when it has exactly one of them.
    fn disjunction<'v>(&self, side: Side<'v, '_>, map: &'v Map<String, Value>, root: &Value) -> Option<Members<'v>> {
        match (
            map.get("anyOf").and_then(Value::as_array),
            map.get("oneOf").and_then(Value::as_array),
        ) {
            (Some(arms), None) => Some(Members::borrowed(Spelling::AnyOf, arms, &child(side.pointer, "anyOf"))),
            (None, Some(arms)) if disjoint(arms.iter(), |arm| resolve_alone(arm, root).0) => {
                Some(Members::borrowed(Spelling::OneOf, arms, &child(side.pointer, "oneOf")))
            }
            _ => None,
        }
    }

    /// True when two lists hold the same schemas, in any order.
    fn same_members(&mut self, old: &[Value], new: &[Value]) -> bool {
        let mut equal = Vec::new();
        for a in old {
            let row: Vec<bool> = new.iter().map(|b| self.same(a, b)).collect();
            equal.push(row);
        }
        let mut by_equality = |i: usize, j: usize| equal[i][j];
        let (_, removed, added) = pair_indices(old.len(), new.len(), &mut [&mut by_equality]);
        removed.is_empty() && added.is_empty()
    }

    fn compare_combinator_lists<'v>(
        &mut self,
        old: Side<'v, '_>,
        old_arms: Option<&'v [Value]>,
        new: Side<'v, '_>,
        new_arms: Option<&'v [Value]>,
        keyword: &str,
        polarity: Polarity,
    ) {
        let old_base = child(old.pointer, keyword);
        let new_base = child(new.pointer, keyword);
        let (old_arms, new_arms) = match (old_arms, new_arms) {
            (None, None) => return,
            (Some(a), Some(b)) => (a, b),
            (None, Some(_)) | (Some(_), None) => {
                // One more conjunct narrows, one fewer widens, whatever it says.
                let added = new_arms.is_some();
                let effect = if added { Effect::Narrows } else { Effect::Widens };
                self.record(
                    polarity,
                    ChangeCode::CombinatorChanged,
                    &old_base,
                    &new_base,
                    effect,
                    format!("{keyword} {}", if added { "added" } else { "removed" }),
                );
                return;
            }
        };
        if self.same_members(old_arms, new_arms) && old_arms.len() == new_arms.len() && keyword == "oneOf" {
            // The same alternatives in another order: exclusivity is unchanged.
            return;
        }
        let spelling = match keyword {
            "allOf" => Spelling::AllOf,
            "anyOf" => Spelling::AnyOf,
            _ => Spelling::OneOf,
        };
        // oneOf behaves like anyOf only while its alternatives cannot overlap.
        if spelling == Spelling::OneOf {
            let (old_root, new_root) = (self.old_root, self.new_root);
            let overlap = !disjoint(old_arms.iter(), |arm| resolve_alone(arm, old_root).0)
                || !disjoint(new_arms.iter(), |arm| resolve_alone(arm, new_root).0);
            if overlap {
                self.record(
                    polarity,
                    ChangeCode::CombinatorChanged,
                    &old_base,
                    &new_base,
                    Effect::Unclassified,
                    "oneOf alternatives changed and may overlap; exclusivity cannot be compared exactly".to_owned(),
                );
                return;
            }
        }
        let old_members = Members::borrowed(spelling, old_arms, &old_base);
        let new_members = Members::borrowed(spelling, new_arms, &new_base);
        self.compare_members(&old_members, &new_members, &old_base, &new_base, polarity);
    }

    fn compare_not<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_at = child(old.pointer, "not");
        let new_at = child(new.pointer, "not");
        match (o.get("not"), n.get("not")) {
            (None, None) => {}
            (None, Some(_)) => self.record(
                polarity,
                ChangeCode::NotAdded,
                &old_at,
                &new_at,
                Effect::Narrows,
                "not added".to_owned(),
            ),
            (Some(_), None) => self.record(
                polarity,
                ChangeCode::NotRemoved,
                &old_at,
                &new_at,
                Effect::Widens,
                "not removed".to_owned(),
            ),
            (Some(a), Some(b)) => self.compare(Side::new(a, &old_at), Side::new(b, &new_at), polarity.flipped()),
        }
    }

    /// `if`/`then`/`else`. Without `if` and a branch they assert nothing;
    /// with the same `if` each branch is a plain conjunct for the instances it
    /// applies to; a changed `if` moves instances between branches and is not
    /// decided. A whole conditional added (or removed) is one more (or one
    /// fewer) conjunct and could be called narrowing (widening), but the
    /// contract gate reports every change of `if` as unclassified, as its
    /// users were promised.
    fn compare_conditional<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let keywords = ["if", "then", "else"];
        let asserts =
            |map: &Map<String, Value>| map.contains_key("if") && (map.contains_key("then") || map.contains_key("else"));
        let at = |side: Side<'_, '_>| child(side.pointer, "if");
        let (effect, message) = match (asserts(o), asserts(n)) {
            (false, false) => {
                if keywords
                    .iter()
                    .all(|keyword| option_equal(o.get(*keyword), n.get(*keyword)))
                {
                    return;
                }
                (
                    Effect::None,
                    "if/then/else changed, but without if and a branch they assert nothing".to_owned(),
                )
            }
            (true, true) if o.get("if").zip(n.get("if")).is_some_and(|(a, b)| self.same(a, b)) => {
                for keyword in ["then", "else"] {
                    self.compare_optional_schema(old, o, new, n, keyword, polarity);
                }
                return;
            }
            _ => (
                Effect::Unclassified,
                "the if condition changed; which instances each branch applies to cannot be compared exactly"
                    .to_owned(),
            ),
        };
        self.record(
            polarity,
            ChangeCode::ConditionalChanged,
            &at(old),
            &at(new),
            effect,
            message,
        );
    }

    /// `$ref` beside other keywords: the referenced schema is one more conjunct.
    fn compare_references<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_at = child(old.pointer, "$ref");
        let new_at = child(new.pointer, "$ref");
        let old_ref = o.get("$ref").and_then(Value::as_str);
        let new_ref = n.get("$ref").and_then(Value::as_str);
        match (old_ref, new_ref) {
            (None, None) => {}
            (Some(a), Some(b)) if a == b && !a.starts_with('#') => {
                // A reference into another contract: that contract's own history is checked on its own.
            }
            (a, b) => {
                let old_target = match a {
                    None => Some((&TRUE, identity(&TRUE, None))),
                    Some(target) => {
                        resolve_target(self.old_root, target).map(|(value, pointer)| (value, format!("#{pointer}")))
                    }
                };
                let new_target = match b {
                    None => Some((&TRUE, identity(&TRUE, None))),
                    Some(target) => {
                        resolve_target(self.new_root, target).map(|(value, pointer)| (value, format!("#{pointer}")))
                    }
                };
                match (old_target, new_target) {
                    (Some((x, x_key)), Some((y, y_key))) => {
                        if a.is_some() || b.is_some() {
                            let key = (x_key, y_key, polarity);
                            if !self.visited.insert(key) {
                                return;
                            }
                        }
                        self.compare(Side::new(x, &old_at), Side::new(y, &new_at), polarity);
                    }
                    _ => self.record(
                        polarity,
                        ChangeCode::RefChanged,
                        &old_at,
                        &new_at,
                        Effect::Unclassified,
                        format!(
                            "$ref changed from {} to {} and cannot be followed here",
                            a.unwrap_or("none"),
                            b.unwrap_or("none")
                        ),
                    ),
                }
            }
        }
        for keyword in ["$dynamicRef", "$recursiveRef"] {
            let (a, b) = (o.get(keyword), n.get(keyword));
            if a.is_none() && b.is_none() {
                continue;
            }
            let message = if !option_equal(a, b) {
                format!("{keyword} changed; dynamic references are resolved at validation time and are not compared")
            } else if !self.dynamic_anchors_agree() {
                format!("the schemas {keyword} may resolve to changed; dynamic references are not compared")
            } else {
                continue;
            };
            self.record(
                polarity,
                ChangeCode::DynamicRefChanged,
                &child(old.pointer, keyword),
                &child(new.pointer, keyword),
                Effect::Unclassified,
                message,
            );
        }
    }

    fn compare_annotations_and_unknowns<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &Map<String, Value>,
        new: Side<'v, '_>,
        n: &Map<String, Value>,
        polarity: Polarity,
    ) {
        let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for keyword in keys {
            if option_equal(o.get(keyword), n.get(keyword))
                || HANDLED.contains(&keyword.as_str())
                || is_definitions(keyword)
            {
                continue;
            }
            let (code, effect, message) = if is_annotation(keyword) {
                (
                    ChangeCode::AnnotationChanged,
                    Effect::None,
                    format!("annotation {keyword} changed"),
                )
            } else {
                (
                    ChangeCode::UnknownKeywordChanged,
                    Effect::Unclassified,
                    format!("keyword {keyword:?} changed; the checker does not know what it asserts"),
                )
            };
            self.record(
                polarity,
                code,
                &child(old.pointer, keyword),
                &child(new.pointer, keyword),
                effect,
                message,
            );
        }
    }
}

/// What a schema is known by in the set of visited pairs: the pointer of
/// the definition it was reached through, or else its text.
fn identity(value: &Value, target: Option<String>) -> String {
    match target {
        Some(pointer) => format!("#{pointer}"),
        None => format!("={value}"),
    }
}

fn option_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => json_equal(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The `$ref` targets inside `value`, and whether it holds a dynamic reference.
fn references_in(value: &Value) -> (Vec<String>, bool) {
    let mut targets = Vec::new();
    let mut dynamic = false;
    each_object(value, &mut |map| {
        if let Some(Value::String(target)) = map.get("$ref") {
            targets.push(target.clone());
        }
        dynamic |= map.contains_key("$dynamicRef") || map.contains_key("$recursiveRef");
    });
    (targets, dynamic)
}

/// The code and message of a member added to (or removed from) a list
/// spelled `spelling`; `null` alternatives are type changes whatever the
/// spelling, and a plain schema takes the other side's spelling.
fn member_change(spelling: Spelling, other: Spelling, added: bool, null: bool, schema: &Value) -> (ChangeCode, String) {
    if null {
        return if added {
            (ChangeCode::TypeWidened, "null is now allowed".to_owned())
        } else {
            (ChangeCode::TypeNarrowed, "null is no longer allowed".to_owned())
        };
    }
    let spelling = if spelling == Spelling::Single { other } else { spelling };
    let (keyword, added_code, removed_code) = match spelling {
        Spelling::AnyOf => ("anyOf", ChangeCode::AnyOfArmAdded, ChangeCode::AnyOfArmRemoved),
        Spelling::OneOf => ("oneOf", ChangeCode::OneOfArmAdded, ChangeCode::OneOfArmRemoved),
        Spelling::AllOf => ("allOf", ChangeCode::AllOfArmAdded, ChangeCode::AllOfArmRemoved),
        Spelling::TypeList | Spelling::Nullable | Spelling::Single => {
            ("type", ChangeCode::TypeWidened, ChangeCode::TypeNarrowed)
        }
    };
    if added {
        (added_code, format!("{keyword} gained alternative {}", short(schema)))
    } else {
        (removed_code, format!("{keyword} lost alternative {}", short(schema)))
    }
}

/// The code, message and hint of a property that moved between its own
/// entry in `properties` and the rest of the content model.
fn moved_property(
    name: &str,
    added: bool,
    old_schema: &Value,
    old_at: &str,
    new_schema: &Value,
    new_at: &str,
) -> (ChangeCode, String, Option<String>) {
    let open_before = *old_schema == TRUE;
    let open_after = *new_schema == TRUE;
    if added {
        let before = if open_before {
            "any value (the content model was open)".to_owned()
        } else if *old_schema == Value::Bool(false) {
            "not allowed (the content model was closed)".to_owned()
        } else {
            format!("governed by {old_at}")
        };
        let hint = open_before.then(|| {
            format!(
                "old data may already carry {name:?} with any value, because the old schema left unknown properties open; to add it without breaking BACKWARD let its schema accept any value (or keep the type loose), or introduce it in a new major version"
            )
        });
        (
            ChangeCode::PropertyAdded,
            format!("property {name:?} added; it was {before}"),
            hint,
        )
    } else {
        let after = if open_after {
            "any value (the content model is open)".to_owned()
        } else if *new_schema == Value::Bool(false) {
            "not allowed (the content model is closed)".to_owned()
        } else {
            format!("governed by {new_at}")
        };
        let hint = open_after.then(|| {
            format!(
                "with the content model open, new writers may send {name:?} with any value, which old readers refuse; keep the property (mark it deprecated) instead of removing it"
            )
        });
        (
            ChangeCode::PropertyRemoved,
            format!("property {name:?} removed; it is now {after}"),
            hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `anyOf`s nested `depth` deep whose new side adds an alternative at
    /// every level: each added one is probed against every old one, at every
    /// level, so the work doubles with each level.
    fn nested_unions(depth: u64) -> (Value, Value) {
        let mut old = serde_json::json!({"type": "integer"});
        let mut new = old.clone();
        for level in 0..depth {
            old = serde_json::json!({"anyOf": [old, {"type": "integer", "minimum": level}]});
            new = serde_json::json!({"anyOf": [new, {"type": "integer", "maximum": level}, {"type": "string"}]});
        }
        (old, new)
    }

    #[test]
    fn deeply_nested_alternatives_end_undecided_instead_of_taking_exponential_time() {
        // Found while fuzzing the checker: 14 levels (1.7 KB) took 40 s, each level doubling it.
        let (old, new) = nested_unions(40);
        let changes = diff_schemas(&old, &new);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].code, ChangeCode::TooComplexToCompare);
        assert_eq!(changes[0].effect, Effect::Unclassified);
        assert!(
            changes[0].message.contains("review it by hand"),
            "{}",
            changes[0].message
        );
        // Both ways, and against itself (equal schemas end at once).
        assert_eq!(diff_schemas(&new, &old)[0].code, ChangeCode::TooComplexToCompare);
        assert_eq!(diff_schemas(&new, &new), Vec::new());

        // A few levels are still compared in full.
        let (old, new) = nested_unions(3);
        let changes = diff_schemas(&old, &new);
        assert!(!changes.is_empty());
        assert!(
            changes
                .iter()
                .all(|change| change.code != ChangeCode::TooComplexToCompare),
            "{changes:#?}"
        );
    }
}
