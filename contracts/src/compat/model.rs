//! Small models of what keywords mean, which the schema differ reasons with:
//! sets of JSON types, numeric bounds, which schema governs a property name,
//! whether alternatives can overlap, and how effects add up.

use std::collections::{BTreeSet, HashMap};

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
            Some(Value::Array(names)) => {
                types.extend(names.iter().filter_map(Value::as_str).filter_map(JsonType::parse))
            }
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

    /// The types that really pass when `enum`/`const` allow only `values`:
    /// the types of those values that this set allows.
    pub(crate) fn restricted_to(&self, values: &[&Value]) -> Self {
        Self {
            types: values
                .iter()
                .map(|value| JsonType::of_value(value))
                .filter(|kind| self.allows(*kind))
                .collect(),
            any: false,
        }
    }

    /// True when the only numbers allowed are integers, so numeric keywords
    /// can be read with integer arithmetic.
    pub(crate) fn integers_only(&self) -> bool {
        !self.any && self.types.contains(&JsonType::Integer) && !self.types.contains(&JsonType::Number)
    }

    /// True when the set allows exactly the same values as `other`.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.is_subset_of(other) && other.is_subset_of(self)
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
                bounds.extend(inclusive_value.map(|value| Self {
                    value,
                    exclusive: false,
                }));
                bounds.extend(other.as_f64().map(|value| Self { value, exclusive: true }));
            }
            None => bounds.extend(inclusive_value.map(|value| Self {
                value,
                exclusive: false,
            })),
        }
        bounds
            .into_iter()
            .reduce(|a, b| if b.tighter_than(a, lower) == Some(true) { b } else { a })
    }

    /// The same bound read over integers only: inclusive, on an integer.
    /// For integers `x > 0` is `x >= 1` and `x <= 9.5` is `x <= 9`.
    pub(crate) fn for_integers(self, lower: bool) -> Self {
        let value = match (lower, self.exclusive) {
            (true, true) => self.value.floor() + 1.0,
            (true, false) => self.value.ceil(),
            (false, true) => self.value.ceil() - 1.0,
            (false, false) => self.value.floor(),
        };
        Self {
            value,
            exclusive: false,
        }
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

/// JSON equality as JSON Schema defines it: numbers compare by value, so
/// `1` and `1.0` are equal; everything else compares structurally.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| json_equal(value, other)))
        }
        _ => a == b,
    }
}

/// True when `values` holds a value equal to `value`.
pub(crate) fn contains_value(values: &[&Value], value: &Value) -> bool {
    values.iter().any(|candidate| json_equal(candidate, value))
}

/// The values `enum` and `const` let through `type`, or `None` when neither
/// restricts the schema. Repeated values are listed once.
pub(crate) fn allowed_values(map: &Map<String, Value>) -> Option<Vec<&Value>> {
    let listed: Vec<&Value> = match (map.get("enum").and_then(Value::as_array), map.get("const")) {
        (Some(items), Some(constant)) => items.iter().filter(|item| json_equal(item, constant)).collect(),
        (Some(items), None) => items.iter().collect(),
        (None, Some(constant)) => vec![constant],
        (None, None) => return None,
    };
    let types = TypeSet::of(map);
    let mut values: Vec<&Value> = Vec::new();
    for value in listed {
        if types.allows(JsonType::of_value(value)) && !contains_value(&values, value) {
            values.push(value);
        }
    }
    Some(values)
}

/// Which keyword makes a schema apply to a property name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Governor {
    /// Its own entry in `properties`.
    Named,
    /// A `patternProperties` entry whose pattern matches (or may match) it.
    Pattern(String),
    /// `additionalProperties`, when nothing else applies.
    Additional,
}

/// `patternProperties` and `additionalProperties` of one object schema.
pub(crate) struct ContentModel<'a> {
    pointer: String,
    patterns: Vec<(Option<regex::Regex>, &'a String, &'a Value)>,
    additional: &'a Value,
}

static TRUE: Value = Value::Bool(true);

impl<'a> ContentModel<'a> {
    /// The content model of `schema`; `regexes` keeps compiled patterns
    /// across calls, since the same patterns recur in a schema.
    pub(crate) fn of(
        schema: &'a Map<String, Value>,
        pointer: &str,
        regexes: &mut HashMap<String, Option<regex::Regex>>,
    ) -> Self {
        let patterns = schema
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(pattern, subschema)| {
                let compiled = regexes
                    .entry(pattern.clone())
                    .or_insert_with(|| regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().ok())
                    .clone();
                (compiled, pattern, subschema)
            })
            .collect();
        Self {
            pointer: pointer.to_owned(),
            patterns,
            additional: schema.get("additionalProperties").unwrap_or(&TRUE),
        }
    }

    /// Every schema that applies to a property called `name` (they all
    /// apply at once), with what makes it apply and its pointer: its own
    /// entry in `properties`, each matching pattern, or else
    /// `additionalProperties`. A pattern that does not compile may match, so
    /// it is listed too.
    pub(crate) fn governing(
        &self,
        name: &str,
        properties: &'a Map<String, Value>,
    ) -> Vec<(Governor, &'a Value, String)> {
        let mut schemas = Vec::new();
        if let Some(own) = properties.get(name) {
            schemas.push((
                Governor::Named,
                own,
                format!("{}/properties/{}", self.pointer, escape_pointer(name)),
            ));
        }
        for (compiled, pattern, subschema) in &self.patterns {
            if compiled.as_ref().is_none_or(|regex| regex.is_match(name)) {
                schemas.push((
                    Governor::Pattern((*pattern).clone()),
                    *subschema,
                    format!("{}/patternProperties/{}", self.pointer, escape_pointer(pattern)),
                ));
            }
        }
        if schemas.is_empty() {
            schemas.push((
                Governor::Additional,
                self.additional,
                format!("{}/additionalProperties", self.pointer),
            ));
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
struct Discriminator<'v> {
    types: TypeSet,
    values: Option<Vec<&'v Value>>,
    tags: Vec<(String, Vec<&'v Value>)>,
}

impl<'v> Discriminator<'v> {
    fn of(schema: &'v Value) -> Self {
        let Some(map) = schema.as_object() else {
            return Self {
                types: TypeSet::of(&Map::new()),
                values: None,
                tags: Vec::new(),
            };
        };
        let values = allowed_values(map);
        let types = match &values {
            Some(values) => TypeSet::of_values(values.iter().copied()),
            None => TypeSet::of(map),
        };
        let required: BTreeSet<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
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
        if let (Some(a), Some(b)) = (&self.values, &other.values)
            && a.iter().all(|value| !contains_value(b, value))
        {
            return true;
        }
        self.tags.iter().any(|(name, mine)| {
            other.tags.iter().any(|(other_name, theirs)| {
                other_name == name && mine.iter().all(|value| !contains_value(theirs, value))
            })
        })
    }
}

/// True when no instance can match two of the alternatives (`resolve`
/// follows references first), so `oneOf` behaves like `anyOf`.
pub(crate) fn disjoint<'v, 'r>(
    arms: impl IntoIterator<Item = &'v Value>,
    resolve: impl Fn(&'v Value) -> &'r Value,
) -> bool {
    let discriminators: Vec<Discriminator> = arms.into_iter().map(|arm| Discriminator::of(resolve(arm))).collect();
    discriminators
        .iter()
        .enumerate()
        .all(|(i, a)| discriminators[i + 1..].iter().all(|b| a.disjoint_from(b)))
}

/// Pairs up the members of an old and a new list (alternatives of an
/// `anyOf`, schemas of an `allOf`): each matcher in turn pairs the members
/// still free, first match first. Returns the pairs and the old and new
/// members left over.
pub(crate) fn pair_indices(
    old_len: usize,
    new_len: usize,
    matchers: &mut [&mut dyn FnMut(usize, usize) -> bool],
) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    let mut old_taken = vec![false; old_len];
    let mut new_taken = vec![false; new_len];
    let mut pairs = Vec::new();
    for matcher in matchers.iter_mut() {
        for (i, taken) in old_taken.iter_mut().enumerate() {
            if *taken {
                continue;
            }
            if let Some(j) = (0..new_len).find(|&j| !new_taken[j] && matcher(i, j)) {
                *taken = true;
                new_taken[j] = true;
                pairs.push((i, j));
            }
        }
    }
    let old_left = (0..old_len).filter(|&i| !old_taken[i]).collect();
    let new_left = (0..new_len).filter(|&j| !new_taken[j]).collect();
    (pairs, old_left, new_left)
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
        let draft4 = Bound::of(
            json!({"maximum": 5, "exclusiveMaximum": true}).as_object().unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(
            draft4,
            Bound {
                value: 5.0,
                exclusive: true
            }
        );
        let a = Bound {
            value: 1.0,
            exclusive: false,
        };
        let b = Bound {
            value: 2.0,
            exclusive: false,
        };
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
        assert!(disjoint(
            &[json!({"type": "string"}), json!({"type": "null"})],
            identity
        ));
        assert!(!disjoint(
            &[json!({"type": "number"}), json!({"type": "integer"})],
            identity
        ));
        assert!(disjoint(&[json!({"const": "a"}), json!({"const": "b"})], identity));
        assert!(!disjoint(&[json!({"const": 1}), json!({"const": 1.0})], identity));
        let tagged = [
            json!({"type": "object", "required": ["kind"], "properties": {"kind": {"const": "card"}}}),
            json!({"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cash"}}}),
        ];
        assert!(disjoint(&tagged, identity));
        assert!(!disjoint(
            &[json!({"type": "object"}), json!({"type": "object"})],
            identity
        ));
    }

    #[test]
    fn members_pair_by_each_matcher_in_turn() {
        let old = [1, 2, 3];
        let new = [3, 4, 1, 5];
        let mut equal = |i: usize, j: usize| old[i] == new[j];
        let mut parity = |i: usize, j: usize| old[i] % 2 == new[j] % 2;
        let (pairs, removed, added) = pair_indices(3, 4, &mut [&mut equal, &mut parity]);
        assert_eq!(pairs, vec![(0, 2), (2, 0), (1, 1)]);
        assert!(removed.is_empty());
        assert_eq!(added, vec![3]);
    }

    #[test]
    fn json_equality_compares_numbers_by_value() {
        assert!(json_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!(1), &json!(1.5)));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn allowed_values_pass_the_type() {
        let map = json!({"type": "string", "enum": ["a", 1, null, "a"]});
        assert_eq!(allowed_values(map.as_object().unwrap()), Some(vec![&json!("a")]));
        let integers = json!({"type": "number", "enum": [1.0, 2]});
        assert_eq!(
            allowed_values(integers.as_object().unwrap()).map(|values| values.len()),
            Some(2)
        );
    }

    #[test]
    fn integer_bounds_round_inwards() {
        let bound = |value: f64, exclusive: bool| Bound { value, exclusive };
        assert_eq!(bound(0.0, true).for_integers(true), bound(1.0, false));
        assert_eq!(bound(0.5, true).for_integers(true), bound(1.0, false));
        assert_eq!(bound(9.5, false).for_integers(false), bound(9.0, false));
        assert_eq!(bound(10.0, true).for_integers(false), bound(9.0, false));
    }
}
