//! Small models of what keywords mean, which the schema differ reasons with:
//! sets of JSON types, numeric bounds, which schema governs a property name,
//! whether alternatives can overlap, and how effects add up.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::change::Effect;
use crate::parse::escape_pointer;

/// One JSON type, as named by the `type` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    const ALL: [JsonType; 7] = [
        JsonType::Null,
        JsonType::Boolean,
        JsonType::Integer,
        JsonType::Number,
        JsonType::String,
        JsonType::Array,
        JsonType::Object,
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "null" => Self::Null,
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "string" => Self::String,
            "array" => Self::Array,
            "object" => Self::Object,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::String => "string",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    /// The type of a JSON value (integers are numbers with no fraction).
    fn of_value(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Boolean,
            Value::Number(number) if number.is_i64() || number.is_u64() => Self::Integer,
            Value::Number(number) if number.as_f64().is_some_and(|f| f.fract() == 0.0) => Self::Integer,
            Value::Number(_) => Self::Number,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }
}

/// The JSON types a schema allows; `integer` is part of `number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeSet {
    types: BTreeSet<JsonType>,
    /// True when no `type` keyword restricts the schema.
    any: bool,
}

impl TypeSet {
    /// The types `schema` allows by its `type` (and OpenAPI's `nullable`).
    pub(crate) fn of(schema: &Map<String, Value>) -> Self {
        let mut types = BTreeSet::new();
        match schema.get("type") {
            Some(Value::String(name)) => types.extend(JsonType::parse(name)),
            Some(Value::Array(names)) => types.extend(names.iter().filter_map(Value::as_str).filter_map(JsonType::parse)),
            _ => {
                return Self {
                    types: JsonType::ALL.into_iter().collect(),
                    any: true,
                };
            }
        }
        if schema.get("nullable") == Some(&Value::Bool(true)) {
            types.insert(JsonType::Null);
        }
        Self { types, any: false }
    }

    /// The types a list of values has.
    fn of_values<'v>(values: impl IntoIterator<Item = &'v Value>) -> Self {
        Self {
            types: values.into_iter().map(JsonType::of_value).collect(),
            any: false,
        }
    }

    /// True when some value of `kind` passes the `type` keyword.
    pub(crate) fn allows(&self, kind: JsonType) -> bool {
        self.types.contains(&kind) || (kind == JsonType::Integer && self.types.contains(&JsonType::Number))
    }

    /// True when every value this set allows, `other` allows too.
    pub(crate) fn is_subset_of(&self, other: &Self) -> bool {
        self.types.iter().all(|kind| other.allows(*kind))
    }

    fn intersects(&self, other: &Self) -> bool {
        self.types.iter().any(|kind| other.allows(*kind)) || other.types.iter().any(|kind| self.allows(*kind))
    }
}

impl std::fmt::Display for TypeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.any {
            return f.write_str("any type");
        }
        let names: Vec<&str> = self.types.iter().map(|kind| kind.name()).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// A lower or upper numeric bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub(crate) value: f64,
    pub(crate) exclusive: bool,
}

impl Bound {
    /// The effective lower (or upper) bound of `schema`, combining the
    /// inclusive and exclusive keywords (and draft-04's boolean form).
    pub(crate) fn of(schema: &Map<String, Value>, lower: bool) -> Option<Self> {
        let (inclusive, exclusive) = if lower {
            ("minimum", "exclusiveMinimum")
        } else {
            ("maximum", "exclusiveMaximum")
        };
        let inclusive_value = schema.get(inclusive).and_then(Value::as_f64);
        let mut bounds = Vec::new();
        match schema.get(exclusive) {
            Some(Value::Bool(true)) => bounds.extend(inclusive_value.map(|value| Self { value, exclusive: true })),
            Some(other) => {
                bounds.extend(inclusive_value.map(|value| Self { value, exclusive: false }));
                bounds.extend(other.as_f64().map(|value| Self { value, exclusive: true }));
            }
            None => bounds.extend(inclusive_value.map(|value| Self { value, exclusive: false })),
        }
        bounds.into_iter().reduce(|a, b| if b.tighter_than(a, lower) == Some(true) { b } else { a })
    }

    /// `Some(true)` when `self` allows fewer values than `other`,
    /// `Some(false)` when more, `None` when the same.
    pub(crate) fn tighter_than(self, other: Self, lower: bool) -> Option<bool> {
        if self.value == other.value {
            return (self.exclusive != other.exclusive).then_some(self.exclusive);
        }
        Some((self.value > other.value) == lower)
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.value, if self.exclusive { " (exclusive)" } else { "" })
    }
}

/// True when `divisor` divides `multiple`: every multiple of `multiple` is a
/// multiple of `divisor`.
pub(crate) fn divides(divisor: f64, multiple: f64) -> bool {
    let ratio = multiple / divisor;
    ratio >= 1.0 && (ratio - ratio.round()).abs() < 1e-9
}

/// `patternProperties` and `additionalProperties` of one object schema.
pub(crate) struct ContentModel<'a> {
    pointer: String,
    patterns: Vec<(Option<regex::Regex>, &'a String, &'a Value)>,
    additional: &'a Value,
}

static TRUE: Value = Value::Bool(true);

impl<'a> ContentModel<'a> {
    pub(crate) fn of(schema: &'a Map<String, Value>, pointer: &str) -> Self {
        let patterns = schema
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(pattern, subschema)| {
                let compiled = regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().ok();
                (compiled, pattern, subschema)
            })
            .collect();
        Self {
            pointer: pointer.to_owned(),
            patterns,
            additional: schema.get("additionalProperties").unwrap_or(&TRUE),
        }
    }

    /// Every schema that applies to a property called `name`, with its
    /// pointer: its own entry in `properties`, each matching pattern, or else
    /// `additionalProperties`. A pattern that does not compile may match, so
    /// it is listed too and the name is left unclassified.
    pub(crate) fn governing(&self, name: &str, properties: &'a Map<String, Value>) -> Vec<(&'a Value, String)> {
        let mut schemas = Vec::new();
        if let Some(own) = properties.get(name) {
            schemas.push((own, format!("{}/properties/{}", self.pointer, escape_pointer(name))));
        }
        for (compiled, pattern, subschema) in &self.patterns {
            if compiled.as_ref().is_none_or(|regex| regex.is_match(name)) {
                schemas.push((*subschema, format!("{}/patternProperties/{}", self.pointer, escape_pointer(pattern))));
            }
        }
        if schemas.is_empty() {
            schemas.push((self.additional, format!("{}/additionalProperties", self.pointer)));
        }
        schemas
    }
}

/// Sums up the effects of detailed changes into one, when they add up:
/// `None` when they do not (a widening next to an unclassified change keeps
/// different answers for each mode, so the details must stay).
pub(crate) fn combine(effects: impl IntoIterator<Item = Effect>) -> Option<Effect> {
    let (mut widens, mut narrows, mut changes, mut unclassified) = (false, false, false, false);
    for effect in effects {
        match effect {
            Effect::None => {}
            Effect::Widens => widens = true,
            Effect::Narrows => narrows = true,
            Effect::Changes => changes = true,
            Effect::Unclassified => unclassified = true,
        }
    }
    if changes || (widens && narrows) {
        return Some(Effect::Changes);
    }
    match (widens, narrows, unclassified) {
        (false, false, true) => Some(Effect::Unclassified),
        (_, _, true) => None,
        (true, _, _) => Some(Effect::Widens),
        (_, true, _) => Some(Effect::Narrows),
        _ => Some(Effect::None),
    }
}

/// What can tell alternatives apart: their JSON types, their allowed values,
/// and the allowed values of each required property.
struct Discriminator {
    types: TypeSet,
    values: Option<Vec<Value>>,
    tags: Vec<(String, Vec<Value>)>,
}

impl Discriminator {
    fn of(schema: &Value) -> Self {
        let Some(map) = schema.as_object() else {
            return Self {
                types: TypeSet::of(&Map::new()),
                values: None,
                tags: Vec::new(),
            };
        };
        let values = allowed_values(map);
        let types = match (&values, map.contains_key("type")) {
            (Some(values), false) => TypeSet::of_values(values),
            _ => TypeSet::of(map),
        };
        let required: BTreeSet<&str> =
            map.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let tags = map
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(name, _)| required.contains(name.as_str()))
            .filter_map(|(name, property)| Some((name.clone(), allowed_values(property.as_object()?)?)))
            .collect();
        Self { types, values, tags }
    }

    fn disjoint_from(&self, other: &Self) -> bool {
        if !self.types.intersects(&other.types) {
            return true;
        }
        if let (Some(a), Some(b)) = (&self.values, &other.values) {
            if a.iter().all(|value| !b.contains(value)) {
                return true;
            }
        }
        self.tags.iter().any(|(name, mine)| {
            other
                .tags
                .iter()
                .any(|(other_name, theirs)| other_name == name && mine.iter().all(|value| !theirs.contains(value)))
        })
    }
}

/// The values `enum`/`const` allow, if they restrict the schema.
fn allowed_values(map: &Map<String, Value>) -> Option<Vec<Value>> {
    match (map.get("enum").and_then(Value::as_array), map.get("const")) {
        (Some(items), Some(constant)) => Some(items.iter().filter(|item| *item == constant).cloned().collect()),
        (Some(items), None) => Some(items.clone()),
        (None, Some(constant)) => Some(vec![constant.clone()]),
        (None, None) => None,
    }
}

/// True when no instance can match two of the alternatives (`resolve`
/// follows references first), so `oneOf` behaves like `anyOf`.
pub(crate) fn disjoint<'v>(arms: &'v [Value], resolve: impl Fn(&'v Value) -> &'v Value) -> bool {
    let discriminators: Vec<Discriminator> = arms.iter().map(|arm| Discriminator::of(resolve(arm))).collect();
    discriminators
        .iter()
        .enumerate()
        .all(|(i, a)| discriminators[i + 1..].iter().all(|b| a.disjoint_from(b)))
}

/// Pairs up the alternatives of an old and a new combinator: equal ones
/// first, then the rest in order. Returns the pairs, the old ones left over
/// (removed) and the new ones left over (added).
pub(crate) fn pair_arms(old: &[Value], new: &[Value]) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    let mut new_taken = vec![false; new.len()];
    let mut old_left = Vec::new();
    for (i, arm) in old.iter().enumerate() {
        match (0..new.len()).find(|&j| !new_taken[j] && new[j] == *arm) {
            Some(j) => new_taken[j] = true,
            None => old_left.push(i),
        }
    }
    let new_left: Vec<usize> = (0..new.len()).filter(|&j| !new_taken[j]).collect();
    let paired = old_left.len().min(new_left.len());
    let pairs = old_left.iter().copied().zip(new_left.iter().copied()).take(paired).collect();
    (pairs, old_left[paired..].to_vec(), new_left[paired..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(schema: Value) -> TypeSet {
        TypeSet::of(schema.as_object().unwrap())
    }

    #[test]
    fn integer_is_part_of_number() {
        assert!(types(json!({"type": "integer"})).is_subset_of(&types(json!({"type": "number"}))));
        assert!(!types(json!({"type": "number"})).is_subset_of(&types(json!({"type": "integer"}))));
        assert!(types(json!({"type": "string"})).is_subset_of(&types(json!({}))));
        assert!(types(json!({"type": "string", "nullable": true})).allows(JsonType::Null));
    }

    #[test]
    fn bounds_combine_inclusive_and_exclusive() {
        let bound = Bound::of(json!({"minimum": 1, "exclusiveMinimum": 1}).as_object().unwrap(), true).unwrap();
        assert!(bound.exclusive);
        let draft4 = Bound::of(json!({"maximum": 5, "exclusiveMaximum": true}).as_object().unwrap(), false).unwrap();
        assert_eq!(draft4, Bound { value: 5.0, exclusive: true });
        let a = Bound { value: 1.0, exclusive: false };
        let b = Bound { value: 2.0, exclusive: false };
        assert_eq!(b.tighter_than(a, true), Some(true));
        assert_eq!(b.tighter_than(a, false), Some(false));
        assert_eq!(a.tighter_than(a, true), None);
    }

    #[test]
    fn effects_add_up() {
        assert_eq!(combine([Effect::Widens, Effect::None]), Some(Effect::Widens));
        assert_eq!(combine([Effect::Widens, Effect::Narrows]), Some(Effect::Changes));
        assert_eq!(combine([Effect::Widens, Effect::Unclassified]), None);
        assert_eq!(combine([]), Some(Effect::None));
    }

    #[test]
    fn alternatives_are_disjoint_by_type_value_or_tag() {
        fn identity(value: &Value) -> &Value {
            value
        }
        assert!(disjoint(&[json!({"type": "string"}), json!({"type": "null"})], identity));
        assert!(!disjoint(&[json!({"type": "number"}), json!({"type": "integer"})], identity));
        assert!(disjoint(&[json!({"const": "a"}), json!({"const": "b"})], identity));
        let tagged = [
            json!({"type": "object", "required": ["kind"], "properties": {"kind": {"const": "card"}}}),
            json!({"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cash"}}}),
        ];
        assert!(disjoint(&tagged, identity));
        assert!(!disjoint(&[json!({"type": "object"}), json!({"type": "object"})], identity));
    }

    #[test]
    fn arms_pair_equal_ones_first() {
        let old = [json!(1), json!(2), json!(3)];
        let new = [json!(3), json!(4), json!(1), json!(5)];
        let (pairs, removed, added) = pair_arms(&old, &new);
        assert_eq!(pairs, vec![(1, 1)]);
        assert!(removed.is_empty());
        assert_eq!(added, vec![3]);
    }
}
