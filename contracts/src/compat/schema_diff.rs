//! Schema against schema: walks an old and a new JSON Schema side by side and
//! lists every change with what it does to the set of accepted instances.
//!
//! Each keyword is one conjunct of a schema, so a change that widens (or
//! narrows) every conjunct it touches widens (or narrows) the whole schema;
//! mixed effects are reported as they are and both directions break. Where
//! the set of accepted values cannot be compared exactly (regular
//! expressions, `if`, overlapping `oneOf` alternatives, dynamic references)
//! the change is `unclassified`, never silently passed.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::change::{Change, ChangeCode, Effect};
use super::model::{Bound, ContentModel, JsonType, TypeSet, combine, disjoint, divides, pair_arms};
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

/// Lists every change from `old` to `new`; `$ref`s resolve within each schema.
pub fn diff_schemas(old: &Value, new: &Value) -> Vec<Change> {
    diff_schemas_at(old, "", new, "")
}

/// Lists every change from the schema at `old_pointer` in `old_root` to the
/// schema at `new_pointer` in `new_root`. Local `$ref`s resolve against the
/// roots, so a contract document's messages can be compared in place.
pub fn diff_schemas_at(old_root: &Value, old_pointer: &str, new_root: &Value, new_pointer: &str) -> Vec<Change> {
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
        visited: HashSet::new(),
        changes: Vec::new(),
    };
    differ.compare(Side::new(old, old_pointer), Side::new(new, new_pointer), Polarity::Positive);
    differ.changes
}

#[derive(Clone, Copy, PartialEq, Eq)]
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

/// A nullable view split into core, pointer suffix and whether it was a union.
fn split_view<'v>(view: Option<(Cow<'v, Value>, String)>, value: &'v Value) -> (Cow<'v, Value>, String, bool) {
    match view {
        Some((core, suffix)) => (core, suffix, true),
        None => (Cow::Borrowed(value), String::new(), false),
    }
}

/// The non-null core of a nullable union and the pointer suffix of that
/// core, or `None` when `value` is not one.
fn nullable_view(value: &Value) -> Option<(Cow<'_, Value>, String)> {
    let map = value.as_object()?;
    let only_annotations_besides =
        |keyword: &str, map: &Map<String, Value>| map.keys().all(|key| key == keyword || ANNOTATIONS.contains(&key.as_str()));
    let is_null_schema = |arm: &Value| {
        arm.as_object().is_some_and(|arm| arm.get("type") == Some(&Value::String("null".to_owned())) && only_annotations_besides("type", arm))
    };
    for keyword in ["anyOf", "oneOf"] {
        if let Some(Value::Array(arms)) = map.get(keyword) {
            if let [first, second] = arms.as_slice() {
                if only_annotations_besides(keyword, map) {
                    match (is_null_schema(first), is_null_schema(second)) {
                        (true, false) => return Some((Cow::Borrowed(second), format!("/{keyword}/1"))),
                        (false, true) => return Some((Cow::Borrowed(first), format!("/{keyword}/0"))),
                        _ => {}
                    }
                }
            }
        }
    }
    if let Some(Value::Array(types)) = map.get("type") {
        let null = Value::String("null".to_owned());
        if types.len() >= 2 && types.contains(&null) {
            let rest: Vec<Value> = types.iter().filter(|kind| **kind != null).cloned().collect();
            let mut core = map.clone();
            let kind = match rest.as_slice() {
                [one] => one.clone(),
                _ => Value::Array(rest),
            };
            core.insert("type".to_owned(), kind);
            core.remove("nullable");
            return Some((Cow::Owned(Value::Object(core)), String::new()));
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true)) && map.contains_key("type") {
        let mut core = map.clone();
        core.remove("nullable");
        return Some((Cow::Owned(Value::Object(core)), String::new()));
    }
    None
}

/// True when a (resolved) schema lets `null` through its `type`.
fn allows_null(schema: &Value) -> bool {
    match schema {
        Value::Bool(accepts) => *accepts,
        Value::Object(map) => TypeSet::of(map).allows(JsonType::Null),
        _ => false,
    }
}

static EMPTY_MAP: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
static TRUE: Value = Value::Bool(true);

struct Differ<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// Pairs of schema pointers already compared: a recursive reference meets
    /// itself again and stops there (the pair is assumed equal, as in
    /// coinductive subtyping).
    visited: HashSet<(String, String)>,
    changes: Vec<Change>,
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

impl<'a> Differ<'a> {
    fn record(&mut self, polarity: Polarity, code: ChangeCode, old: &str, new: &str, effect: Effect, message: String) {
        self.record_with_hint(polarity, code, old, new, effect, message, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn record_with_hint(
        &mut self,
        polarity: Polarity,
        code: ChangeCode,
        old: &str,
        new: &str,
        effect: Effect,
        message: String,
        hint: Option<String>,
    ) {
        self.changes.push(Change {
            code,
            pointer: new.to_owned(),
            old_pointer: old.to_owned(),
            effect: polarity.apply(effect),
            message,
            hint,
        });
    }

    /// Follows a local `$ref` that stands alone (its only other keywords are
    /// annotations), so `{"$ref": "#/$defs/A"}` compares like `A` itself.
    /// Returns the schema reached and the pointer of the definition, if any.
    fn resolve_alone<'v>(value: &'v Value, root: &'v Value) -> (&'v Value, Option<String>) {
        let mut current = value;
        let mut target_pointer = None;
        for _ in 0..32 {
            let Some(object) = current.as_object() else { break };
            let Some(Value::String(target)) = object.get("$ref") else { break };
            let alone = object.keys().all(|key| key == "$ref" || ANNOTATIONS.contains(&key.as_str()));
            if !alone {
                break;
            }
            let Some(fragment) = target.strip_prefix('#').filter(|f| f.is_empty() || f.starts_with('/')) else { break };
            let Some(next) = root.pointer(fragment) else { break };
            target_pointer = Some(fragment.to_owned());
            current = next;
        }
        (current, target_pointer)
    }

    fn compare<'v>(&mut self, old: Side<'v, '_>, new: Side<'v, '_>, polarity: Polarity) {
        let (old_value, old_target) = Self::resolve_alone(old.value, self.old_root);
        let (new_value, new_target) = Self::resolve_alone(new.value, self.new_root);
        // Report at the place of use; follow the definition for the content.
        let old = Side::new(old_value, old.pointer);
        let new = Side::new(new_value, new.pointer);
        if old.value == new.value {
            return;
        }
        // A pair of definitions met again through a recursive reference is
        // assumed equal; pairs at plain places cannot recur.
        if old_target.is_some() || new_target.is_some() {
            let key = (
                old_target.map_or_else(|| old.pointer.to_owned(), |target| format!("#{target}")),
                new_target.map_or_else(|| new.pointer.to_owned(), |target| format!("#{target}")),
            );
            if !self.visited.insert(key) {
                return;
            }
        }
        if self.compare_nullable(old, new, polarity) {
            return;
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
        let (Some(old_map), Some(new_map)) = (as_object(old.value), as_object(new.value)) else {
            self.record(
                polarity,
                ChangeCode::UnknownKeywordChanged,
                old.pointer,
                new.pointer,
                Effect::Unclassified,
                format!("{} is not a schema; cannot compare it with {}", short(old.value), short(new.value)),
            );
            return;
        };
        self.compare_objects(old, old_map, new, new_map, polarity);
    }

    /// Nullable unions (`type: [T, "null"]`, `anyOf`/`oneOf` of a schema and
    /// `{"type": "null"}`, OpenAPI's `nullable`) compare by their non-null
    /// core plus whether null is allowed, so the spellings are
    /// interchangeable. Returns false when neither side is such a union.
    fn compare_nullable<'v>(&mut self, old: Side<'v, '_>, new: Side<'v, '_>, polarity: Polarity) -> bool {
        let (old_view, new_view) = (nullable_view(old.value), nullable_view(new.value));
        if old_view.is_none() && new_view.is_none() {
            return false;
        }
        let (old_core, old_suffix, old_flag) = split_view(old_view, old.value);
        let (new_core, new_suffix, new_flag) = split_view(new_view, new.value);
        let old_null = old_flag || allows_null(Self::resolve_alone(&old_core, self.old_root).0);
        let new_null = new_flag || allows_null(Self::resolve_alone(&new_core, self.new_root).0);
        if old_null != new_null {
            let (code, effect, message) = if new_null {
                (ChangeCode::TypeWidened, Effect::Widens, "null is now allowed")
            } else {
                (ChangeCode::TypeNarrowed, Effect::Narrows, "null is no longer allowed")
            };
            self.record(polarity, code, &child(old.pointer, "type"), &child(new.pointer, "type"), effect, message.to_owned());
        }
        let old_core_pointer = format!("{}{old_suffix}", old.pointer);
        let new_core_pointer = format!("{}{new_suffix}", new.pointer);
        self.compare(Side::new(&old_core, &old_core_pointer), Side::new(&new_core, &new_core_pointer), polarity);
        true
    }

    fn compare_objects<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        polarity: Polarity,
    ) {
        let old_types = TypeSet::of(o);
        let new_types = TypeSet::of(n);
        self.compare_types(old, &old_types, new, &new_types, polarity);
        self.compare_values(old, o, new, n, polarity);
        let both = |kind: JsonType| old_types.allows(kind) && new_types.allows(kind);
        if both(JsonType::Number) || both(JsonType::Integer) {
            self.compare_numbers(old, o, new, n, polarity);
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
            self.compare_schema_maps(old, o, new, n, "dependentSchemas", polarity);
            self.compare_optional_schema(old, o, new, n, "propertyNames", polarity);
        }
        self.compare_combinators(old, o, new, n, polarity);
        self.compare_not(old, o, new, n, polarity);
        self.compare_conditional(old, o, new, n, polarity);
        self.compare_references(old, o, new, n, polarity);
        for keyword in ["unevaluatedProperties", "unevaluatedItems"] {
            if o.get(keyword) != n.get(keyword) {
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

    fn compare_types<'v>(&mut self, old: Side<'v, '_>, old_types: &TypeSet, new: Side<'v, '_>, new_types: &TypeSet, polarity: Polarity) {
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

    /// `enum` and `const`, compared as the sets of values they allow.
    fn compare_values<'v>(&mut self, old: Side<'v, '_>, o: &Map<String, Value>, new: Side<'v, '_>, n: &Map<String, Value>, polarity: Polarity) {
        fn allowed(map: &Map<String, Value>) -> Option<Vec<&Value>> {
            let from_enum: Option<Vec<&Value>> = map.get("enum").and_then(Value::as_array).map(|items| items.iter().collect());
            match (from_enum, map.get("const")) {
                (Some(items), Some(constant)) => Some(items.into_iter().filter(|item| *item == constant).collect()),
                (Some(items), None) => Some(items),
                (None, Some(constant)) => Some(vec![constant]),
                (None, None) => None,
            }
        }
        let uses_const = !o.contains_key("enum") && !n.contains_key("enum");
        let keyword = if uses_const { "const" } else { "enum" };
        let old_at = child(old.pointer, keyword);
        let new_at = child(new.pointer, keyword);
        match (allowed(o), allowed(n)) {
            (None, None) => {}
            (None, Some(values)) => {
                let code = if uses_const { ChangeCode::ConstAdded } else { ChangeCode::EnumAdded };
                let shown: Vec<String> = values.iter().map(|value| short(value)).collect();
                self.record(polarity, code, &old_at, &new_at, Effect::Narrows, format!("only {} now allowed", shown.join(", ")));
            }
            (Some(_), None) => {
                let code = if uses_const { ChangeCode::ConstRemoved } else { ChangeCode::EnumRemoved };
                self.record(polarity, code, &old_at, &new_at, Effect::Widens, format!("{keyword} removed: any value allowed"));
            }
            (Some(old_values), Some(new_values)) => {
                let removed: Vec<String> = old_values.iter().filter(|v| !new_values.contains(v)).map(|v| short(v)).collect();
                let added: Vec<String> = new_values.iter().filter(|v| !old_values.contains(v)).map(|v| short(v)).collect();
                let (code, effect) = match (removed.is_empty(), added.is_empty()) {
                    (true, true) => return,
                    (true, false) if !uses_const => (ChangeCode::EnumWidened, Effect::Widens),
                    (false, true) if !uses_const => (ChangeCode::EnumNarrowed, Effect::Narrows),
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
                self.record(polarity, code, &old_at, &new_at, effect, format!("{keyword} {}", parts.join("; ")));
            }
        }
    }

    fn compare_numbers<'v>(&mut self, old: Side<'v, '_>, o: &Map<String, Value>, new: Side<'v, '_>, n: &Map<String, Value>, polarity: Polarity) {
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
            let (code, effect) = match (old_bound, new_bound) {
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
        let old_multiple = o.get("multipleOf").and_then(Value::as_f64).filter(|m| *m > 0.0);
        let new_multiple = n.get("multipleOf").and_then(Value::as_f64).filter(|m| *m > 0.0);
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
            format!("multipleOf changed from {} to {}", show(old_multiple), show(new_multiple)),
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

    fn compare_flag<'v>(&mut self, old: Side<'v, '_>, o: &Map<String, Value>, new: Side<'v, '_>, n: &Map<String, Value>, keyword: &str, polarity: Polarity) {
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

    fn compare_pattern<'v>(&mut self, old: Side<'v, '_>, o: &Map<String, Value>, new: Side<'v, '_>, n: &Map<String, Value>, polarity: Polarity) {
        let (code, effect, message) = match (o.get("pattern"), n.get("pattern")) {
            (None, None) => return,
            (a, b) if a == b => return,
            (None, Some(p)) => (ChangeCode::PatternAdded, Effect::Narrows, format!("pattern {} added", short(p))),
            (Some(p), None) => (ChangeCode::PatternRemoved, Effect::Widens, format!("pattern {} removed", short(p))),
            (Some(a), Some(b)) => (
                ChangeCode::PatternChanged,
                Effect::Unclassified,
                format!("pattern changed from {} to {}; regular expressions cannot be compared exactly", short(a), short(b)),
            ),
        };
        self.record(polarity, code, &child(old.pointer, "pattern"), &child(new.pointer, "pattern"), effect, message);
    }

    fn compare_format<'v>(&mut self, old: Side<'v, '_>, o: &Map<String, Value>, new: Side<'v, '_>, n: &Map<String, Value>, polarity: Polarity) {
        /// Formats whose valid strings include every valid string of another.
        const WIDER: &[(&str, &str)] = &[
            ("email", "idn-email"),
            ("hostname", "idn-hostname"),
            ("uri", "iri"),
            ("uri-reference", "iri-reference"),
            ("uri", "uri-reference"),
            ("iri", "iri-reference"),
        ];
        let (a, b) = (o.get("format").and_then(Value::as_str), n.get("format").and_then(Value::as_str));
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
    fn compare_items<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        let layout = |map: &'v Map<String, Value>, pointer: &str| -> (Vec<(&'v Value, String)>, (&'v Value, String)) {
            let (prefix_keyword, tail_keyword) = match map.get("items") {
                Some(Value::Array(_)) => ("items", "additionalItems"),
                _ => ("prefixItems", "items"),
            };
            let prefix = map
                .get(prefix_keyword)
                .and_then(Value::as_array)
                .map(|items| items.iter().enumerate().map(|(i, item)| (item, format!("{pointer}/{prefix_keyword}/{i}"))).collect())
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
                (false, true) => Some((ChangeCode::ItemPositionAdded, format!("array position {index} now has a schema of its own"))),
                (true, false) => Some((ChangeCode::ItemPositionRemoved, format!("array position {index} lost its own schema"))),
                _ => None,
            };
            match summary {
                None => self.compare(Side::new(old_schema, &old_at), Side::new(new_schema, &new_at), polarity),
                Some((code, message)) => {
                    self.summarize(Side::new(old_schema, &old_at), Side::new(new_schema, &new_at), polarity, code, message, None)
                }
            }
        }
        self.compare(Side::new(old_tail.0, &old_tail.1), Side::new(new_tail.0, &new_tail.1), polarity);
    }

    fn compare_contains<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        let old_at = child(old.pointer, "contains");
        let new_at = child(new.pointer, "contains");
        match (o.get("contains"), n.get("contains")) {
            (None, None) => {}
            (None, Some(_)) => {
                self.record(polarity, ChangeCode::ContainsAdded, &old_at, &new_at, Effect::Narrows, "contains added".to_owned())
            }
            (Some(_), None) => {
                self.record(polarity, ChangeCode::ContainsRemoved, &old_at, &new_at, Effect::Widens, "contains removed".to_owned())
            }
            (Some(a), Some(b)) => {
                self.compare(Side::new(a, &old_at), Side::new(b, &new_at), polarity);
                self.compare_count(old, o, new, n, "minContains", "maxContains", polarity);
            }
        }
    }

    /// The object content model: named properties, pattern properties and
    /// additional properties, compared name by name so that open and closed
    /// models are handled exactly.
    fn compare_properties<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        let old_props = o.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let new_props = n.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let old_model = ContentModel::of(o, old.pointer);
        let new_model = ContentModel::of(n, new.pointer);
        let names: BTreeSet<&String> = old_props.keys().chain(new_props.keys()).collect();
        for name in names {
            let old_governs = old_model.governing(name, old_props);
            let new_governs = new_model.governing(name, new_props);
            let (old_schema, old_at) = match old_governs.as_slice() {
                [one] => one.clone(),
                _ => {
                    self.unclassified_names(old, new, name, polarity);
                    continue;
                }
            };
            let (new_schema, new_at) = match new_governs.as_slice() {
                [one] => one.clone(),
                _ => {
                    self.unclassified_names(old, new, name, polarity);
                    continue;
                }
            };
            let (in_old, in_new) = (old_props.contains_key(name), new_props.contains_key(name));
            if in_old && in_new {
                self.compare(Side::new(old_schema, &old_at), Side::new(new_schema, &new_at), polarity);
                continue;
            }
            let open_before = old_schema == &TRUE;
            let open_after = new_schema == &TRUE;
            let (code, message, hint) = if in_new {
                let before = if open_before {
                    "any value (the content model was open)".to_owned()
                } else if old_schema == &Value::Bool(false) {
                    "not allowed (the content model was closed)".to_owned()
                } else {
                    format!("governed by {}", old_at)
                };
                let hint = open_before.then(|| {
                    format!(
                        "old data may already carry {name:?} with any value, because the old schema left unknown properties open; to add it without breaking BACKWARD let its schema accept any value (or keep the type loose), or introduce it in a new major version"
                    )
                });
                (ChangeCode::PropertyAdded, format!("property {name:?} added; it was {before}"), hint)
            } else {
                let after = if open_after {
                    "any value (the content model is open)".to_owned()
                } else if new_schema == &Value::Bool(false) {
                    "not allowed (the content model is closed)".to_owned()
                } else {
                    format!("governed by {}", new_at)
                };
                let hint = open_after.then(|| {
                    format!(
                        "with the content model open, new writers may send {name:?} with any value, which old readers refuse; keep the property (mark it deprecated) instead of removing it"
                    )
                });
                (ChangeCode::PropertyRemoved, format!("property {name:?} removed; it is now {after}"), hint)
            };
            let here_old = if in_old { old_at.clone() } else { child(old.pointer, "properties") };
            let here_new = if in_new { new_at.clone() } else { child(new.pointer, "properties") };
            self.summarize(Side::new(old_schema, &here_old), Side::new(new_schema, &here_new), polarity, code, message, hint);
        }
        // Names listed in neither `properties`: patterns, then the rest.
        let old_patterns = o.get("patternProperties").and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let new_patterns = n.get("patternProperties").and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        if old_patterns.keys().eq(new_patterns.keys()) {
            for (pattern, old_schema) in old_patterns {
                if let Some(new_schema) = new_patterns.get(pattern) {
                    let old_at = child(&child(old.pointer, "patternProperties"), pattern);
                    let new_at = child(&child(new.pointer, "patternProperties"), pattern);
                    self.compare(Side::new(old_schema, &old_at), Side::new(new_schema, &new_at), polarity);
                }
            }
            let old_at = child(old.pointer, "additionalProperties");
            let new_at = child(new.pointer, "additionalProperties");
            self.compare(
                Side::new(o.get("additionalProperties").unwrap_or(&TRUE), &old_at),
                Side::new(n.get("additionalProperties").unwrap_or(&TRUE), &new_at),
                polarity,
            );
        } else {
            self.record(
                polarity,
                ChangeCode::PatternPropertiesChanged,
                &child(old.pointer, "patternProperties"),
                &child(new.pointer, "patternProperties"),
                Effect::Unclassified,
                "the patternProperties patterns changed; which names they match cannot be compared exactly".to_owned(),
            );
        }
    }

    fn unclassified_names<'v>(&mut self, old: Side<'v, '_>, new: Side<'v, '_>, name: &str, polarity: Polarity) {
        self.record(
            polarity,
            ChangeCode::PatternPropertiesChanged,
            &child(&child(old.pointer, "properties"), name),
            &child(&child(new.pointer, "properties"), name),
            Effect::Unclassified,
            format!("property {name:?} is governed by several schemas (properties and patternProperties) and is not compared exactly"),
        );
    }

    /// Compares two schemas and reports the result as one change of `code`
    /// whose effect sums up the detailed changes; when they do not sum up
    /// (a widening and an unclassified change, say) the details are kept.
    fn summarize<'v>(
        &mut self,
        old: Side<'v, '_>,
        new: Side<'v, '_>,
        polarity: Polarity,
        code: ChangeCode,
        message: String,
        hint: Option<String>,
    ) {
        let saved = std::mem::take(&mut self.changes);
        self.compare(old, new, polarity);
        let details = std::mem::replace(&mut self.changes, saved);
        match combine(details.iter().map(|change| change.effect)) {
            Some(effect) => self.changes.push(Change {
                code,
                pointer: new.pointer.to_owned(),
                old_pointer: old.pointer.to_owned(),
                effect,
                message,
                hint: if matches!(effect, Effect::Narrows | Effect::Widens | Effect::Changes) { hint } else { None },
            }),
            None => self.changes.extend(details),
        }
    }

    fn compare_required<'v>(&mut self, old: Side<'v, '_>, o: &Map<String, Value>, new: Side<'v, '_>, n: &Map<String, Value>, polarity: Polarity) {
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
        let (before, after) = (pairs(o), pairs(n));
        let old_at = child(old.pointer, "dependentRequired");
        let new_at = child(new.pointer, "dependentRequired");
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

    #[allow(clippy::too_many_arguments)]
    fn compare_schema_maps<'v>(
        &mut self,
        old: Side<'v, '_>,
        o: &'v Map<String, Value>,
        new: Side<'v, '_>,
        n: &'v Map<String, Value>,
        keyword: &str,
        polarity: Polarity,
    ) {
        let old_map = o.get(keyword).and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let new_map = n.get(keyword).and_then(Value::as_object).unwrap_or(&EMPTY_MAP);
        let old_base = child(old.pointer, keyword);
        let new_base = child(new.pointer, keyword);
        let names: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
        for name in names {
            let old_at = child(&old_base, name);
            let new_at = child(&new_base, name);
            match (old_map.get(name), new_map.get(name)) {
                (Some(a), Some(b)) => self.compare(Side::new(a, &old_at), Side::new(b, &new_at), polarity),
                (None, Some(b)) => self.summarize(
                    Side::new(&TRUE, &old_base),
                    Side::new(b, &new_at),
                    polarity,
                    ChangeCode::DependentSchemaAdded,
                    format!("a schema now applies when {name:?} is present"),
                    None,
                ),
                (Some(a), None) => self.summarize(
                    Side::new(a, &old_at),
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

    fn compare_combinators<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        for keyword in ["allOf", "anyOf", "oneOf"] {
            let old_arms = o.get(keyword).and_then(Value::as_array).map(Vec::as_slice);
            let new_arms = n.get(keyword).and_then(Value::as_array).map(Vec::as_slice);
            let old_base = child(old.pointer, keyword);
            let new_base = child(new.pointer, keyword);
            let (old_arms, new_arms) = match (old_arms, new_arms) {
                (None, None) => continue,
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) => (a, b),
                (None, Some(_)) | (Some(_), None) => {
                    let added = new_arms.is_some();
                    let effect = match (keyword, added) {
                        ("allOf", true) | ("anyOf" | "oneOf", true) => Effect::Narrows,
                        _ => Effect::Widens,
                    };
                    self.record(
                        polarity,
                        ChangeCode::CombinatorChanged,
                        &old_base,
                        &new_base,
                        effect,
                        format!("{keyword} {}", if added { "added" } else { "removed" }),
                    );
                    continue;
                }
            };
            // oneOf behaves like anyOf only while its alternatives cannot overlap.
            let (old_root, new_root) = (self.old_root, self.new_root);
            let monotone = keyword != "oneOf"
                || (disjoint(old_arms, |arm| Self::resolve_alone(arm, old_root).0)
                    && disjoint(new_arms, |arm| Self::resolve_alone(arm, new_root).0));
            if !monotone {
                self.record(
                    polarity,
                    ChangeCode::CombinatorChanged,
                    &old_base,
                    &new_base,
                    Effect::Unclassified,
                    "oneOf alternatives changed and may overlap; exclusivity cannot be compared exactly".to_owned(),
                );
                continue;
            }
            let (pairs, removed, added) = pair_arms(old_arms, new_arms);
            for (i, j) in pairs {
                let old_at = format!("{old_base}/{i}");
                let new_at = format!("{new_base}/{j}");
                self.compare(Side::new(&old_arms[i], &old_at), Side::new(&new_arms[j], &new_at), polarity);
            }
            let (added_code, removed_code, added_effect) = match keyword {
                "allOf" => (ChangeCode::AllOfArmAdded, ChangeCode::AllOfArmRemoved, Effect::Narrows),
                "anyOf" => (ChangeCode::AnyOfArmAdded, ChangeCode::AnyOfArmRemoved, Effect::Widens),
                _ => (ChangeCode::OneOfArmAdded, ChangeCode::OneOfArmRemoved, Effect::Widens),
            };
            for j in added {
                self.record(
                    polarity,
                    added_code,
                    &old_base,
                    &format!("{new_base}/{j}"),
                    added_effect,
                    format!("{keyword} gained alternative {}", short(&new_arms[j])),
                );
            }
            for i in removed {
                self.record(
                    polarity,
                    removed_code,
                    &format!("{old_base}/{i}"),
                    &new_base,
                    added_effect.inverted(),
                    format!("{keyword} lost alternative {}", short(&old_arms[i])),
                );
            }
        }
    }

    fn compare_not<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        let old_at = child(old.pointer, "not");
        let new_at = child(new.pointer, "not");
        match (o.get("not"), n.get("not")) {
            (None, None) => {}
            (None, Some(_)) => self.record(polarity, ChangeCode::NotAdded, &old_at, &new_at, Effect::Narrows, "not added".to_owned()),
            (Some(_), None) => self.record(polarity, ChangeCode::NotRemoved, &old_at, &new_at, Effect::Widens, "not removed".to_owned()),
            (Some(a), Some(b)) => self.compare(Side::new(a, &old_at), Side::new(b, &new_at), polarity.flipped()),
        }
    }

    fn compare_conditional<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        let same = |keyword: &str| o.get(keyword) == n.get(keyword);
        if same("if") && same("then") && same("else") {
            return;
        }
        if same("if") && o.contains_key("if") {
            // With the condition unchanged, each branch is a plain conjunct for the instances it applies to.
            for keyword in ["then", "else"] {
                self.compare_optional_schema(old, o, new, n, keyword, polarity);
            }
            return;
        }
        self.record(
            polarity,
            ChangeCode::ConditionalChanged,
            &child(old.pointer, "if"),
            &child(new.pointer, "if"),
            Effect::Unclassified,
            "the if condition changed; which instances each branch applies to cannot be compared exactly".to_owned(),
        );
    }

    /// `$ref` beside other keywords: the referenced schema is one more conjunct.
    fn compare_references<'v>(&mut self, old: Side<'v, '_>, o: &'v Map<String, Value>, new: Side<'v, '_>, n: &'v Map<String, Value>, polarity: Polarity) {
        let old_at = child(old.pointer, "$ref");
        let new_at = child(new.pointer, "$ref");
        let old_ref = o.get("$ref").and_then(Value::as_str);
        let new_ref = n.get("$ref").and_then(Value::as_str);
        let resolve = |root: &'a Value, target: &str| -> Option<(&'a Value, String)> {
            let fragment = target.strip_prefix('#')?;
            root.pointer(fragment).map(|value| (value, fragment.to_owned()))
        };
        match (old_ref, new_ref) {
            (None, None) => {}
            (Some(a), Some(b)) if a == b && !a.starts_with('#') => {
                // A reference into another contract: that contract's own history is checked on its own.
            }
            (a, b) => {
                let old_target = match a {
                    None => Some((&TRUE, old_at.clone())),
                    Some(target) => resolve(self.old_root, target),
                };
                let new_target = match b {
                    None => Some((&TRUE, new_at.clone())),
                    Some(target) => resolve(self.new_root, target),
                };
                match (old_target, new_target) {
                    (Some((x, x_at)), Some((y, y_at))) => {
                        let x_at = if a.is_some() { x_at } else { old_at.clone() };
                        let y_at = if b.is_some() { y_at } else { new_at.clone() };
                        if a.is_some() || b.is_some() {
                            let key = (format!("#{x_at}"), format!("#{y_at}"));
                            if !self.visited.insert(key) {
                                return;
                            }
                        }
                        self.compare(Side::new(x, &x_at), Side::new(y, &y_at), polarity);
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
            if o.get(keyword) != n.get(keyword) {
                self.record(
                    polarity,
                    ChangeCode::DynamicRefChanged,
                    &child(old.pointer, keyword),
                    &child(new.pointer, keyword),
                    Effect::Unclassified,
                    format!("{keyword} changed; dynamic references are resolved at validation time and are not compared"),
                );
            }
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
            if o.get(keyword) == n.get(keyword) || HANDLED.contains(&keyword.as_str()) || DEFINITIONS.contains(&keyword.as_str()) {
                continue;
            }
            let (code, effect, message) = if ANNOTATIONS.contains(&keyword.as_str()) {
                (ChangeCode::AnnotationChanged, Effect::None, format!("annotation {keyword} changed"))
            } else {
                (
                    ChangeCode::UnknownKeywordChanged,
                    Effect::Unclassified,
                    format!("keyword {keyword:?} changed; the checker does not know what it asserts"),
                )
            };
            self.record(polarity, code, &child(old.pointer, keyword), &child(new.pointer, keyword), effect, message);
        }
    }
}
