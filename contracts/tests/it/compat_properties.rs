//! Property tests of the compatibility checker against a real validator: when
//! the checker calls a pair of schemas compatible, instances generated from
//! one must validate against the other.
//!
//! Schema pairs come from base schemas changed by random mutations (types,
//! values, bounds, properties, content models, items, combinators, nullable
//! spellings, references...); the table's pairs run through the same oracle.
//! The oracle is the `jsonschema` crate with formats asserted, as soabus
//! validates them. `COMPAT_PROPTEST_CASES` raises the number of random pairs
//! and `COMPAT_PROPTEST_SEED` draws other ones.

use std::cell::Cell;
use std::collections::BTreeSet;

use contracts::compat::{Change, Mode, diff_schemas, verdict};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Value, json};

use crate::compat_table;

// ---- the oracle --------------------------------------------------------------

/// OpenAPI's `nullable: true` as the checker reads it: `null` joins `type`.
fn spell_nullable_as_type(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(kind)) if kind != "null" => {
                        let kind = Value::String(kind.clone());
                        map.insert("type".to_owned(), json!([kind, "null"]));
                    }
                    Some(Value::Array(kinds)) if !kinds.contains(&json!("null")) => kinds.push(json!("null")),
                    _ => {}
                }
            }
            map.values_mut().for_each(spell_nullable_as_type);
        }
        Value::Array(items) => items.iter_mut().for_each(spell_nullable_as_type),
        _ => {}
    }
}

/// Whether any object inside `value` satisfies `test`.
fn any_object(value: &Value, test: &dyn Fn(&Map<String, Value>) -> bool) -> bool {
    match value {
        Value::Object(map) => test(map) || map.values().any(|inner| any_object(inner, test)),
        Value::Array(items) => items.iter().any(|inner| any_object(inner, test)),
        _ => false,
    }
}

/// A validator for `schema` in the draft its spelling implies (the checker
/// reads draft-04 and draft-07 forms too), or `None` when it does not compile.
pub(crate) fn oracle(schema: &Value) -> Option<jsonschema::Validator> {
    let mut schema = schema.clone();
    spell_nullable_as_type(&mut schema);
    let draft4 = any_object(&schema, &|map| {
        map.get("exclusiveMinimum").is_some_and(Value::is_boolean)
            || map.get("exclusiveMaximum").is_some_and(Value::is_boolean)
    });
    let draft7 = any_object(&schema, &|map| {
        map.get("items").is_some_and(Value::is_array)
            || map.contains_key("additionalItems")
            || map.contains_key("dependencies")
    });
    let options = if draft4 {
        jsonschema::draft4::options()
    } else if draft7 {
        jsonschema::draft7::options()
    } else {
        jsonschema::draft202012::options()
    };
    options.should_validate_formats(true).build(&schema).ok()
}

// ---- a small random source -------------------------------------------------

/// SplitMix64: enough randomness for instances, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> Option<&'t T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

// ---- instances from a schema ------------------------------------------------

/// Names, values, numbers and strings gathered from both schemas of a pair,
/// so generated instances can carry what the other schema talks about.
struct Vocabulary {
    names: Vec<String>,
    values: Vec<Value>,
    numbers: Vec<f64>,
    strings: Vec<String>,
}

const BASE_STRINGS: &[&str] = &[
    "",
    "a",
    "ab",
    "abc",
    "hello",
    "ABC",
    "a1",
    "a_b",
    "123",
    "x",
    "x-a",
    "y-b",
    "2024-01-02",
    "2024-01-02T03:04:05Z",
    "a@b.co",
    "http://example.com/a",
    "a/b",
    "00000000-0000-0000-0000-000000000000",
    "10.0.0.1",
    "card",
    "cash",
];

fn vocabulary(schemas: &[&Value]) -> Vocabulary {
    let mut names: BTreeSet<String> = ["a", "b", "c", "id", "kind", "x-a", "y-b", "n-1"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    let mut values = vec![
        json!(null),
        json!(true),
        json!(0),
        json!(1),
        json!(-1),
        json!(2.5),
        json!("a"),
        json!([]),
        json!({}),
    ];
    let mut numbers = vec![0.0, 1.0, -1.0, 2.0, 3.0, 0.5, 4.0, 5.0, 6.0, 10.0, 1.5];
    let mut strings: Vec<String> = BASE_STRINGS.iter().map(|text| (*text).to_owned()).collect();
    fn visit(
        value: &Value,
        names: &mut BTreeSet<String>,
        values: &mut Vec<Value>,
        numbers: &mut Vec<f64>,
        strings: &mut Vec<String>,
    ) {
        match value {
            Value::Object(map) => {
                for keyword in ["properties", "dependentRequired", "dependentSchemas", "dependencies"] {
                    if let Some(Value::Object(entries)) = map.get(keyword) {
                        names.extend(entries.keys().cloned());
                    }
                }
                for keyword in ["required"] {
                    if let Some(Value::Array(items)) = map.get(keyword) {
                        names.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                }
                if let Some(Value::Object(entries)) = map.get("dependentRequired") {
                    for needs in entries.values() {
                        names.extend(
                            needs
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .map(str::to_owned),
                        );
                    }
                }
                if let Some(Value::Object(patterns)) = map.get("patternProperties") {
                    for pattern in patterns.keys() {
                        let prefix: String = pattern
                            .trim_start_matches('^')
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                            .collect();
                        names.insert(format!("{prefix}a"));
                        names.insert(format!("{prefix}1"));
                    }
                }
                if let Some(items) = map.get("enum").and_then(Value::as_array) {
                    values.extend(items.iter().cloned());
                }
                if let Some(constant) = map.get("const") {
                    values.push(constant.clone());
                }
                for keyword in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
                    if let Some(bound) = map.get(keyword).and_then(Value::as_f64) {
                        numbers.extend([bound, bound - 1.0, bound + 1.0, bound - 0.5, bound + 0.5]);
                    }
                }
                if let Some(step) = map.get("multipleOf").and_then(Value::as_f64) {
                    numbers.extend([step, 2.0 * step, 3.0 * step, 6.0 * step]);
                }
                for keyword in ["minLength", "maxLength"] {
                    if let Some(length) = map.get(keyword).and_then(Value::as_u64) {
                        for size in [length.saturating_sub(1), length, length + 1] {
                            strings.push("a".repeat(size as usize));
                        }
                    }
                }
                for inner in map.values() {
                    visit(inner, names, values, numbers, strings);
                }
            }
            Value::Array(items) => {
                for inner in items {
                    visit(inner, names, values, numbers, strings);
                }
            }
            _ => {}
        }
    }
    for schema in schemas {
        visit(schema, &mut names, &mut values, &mut numbers, &mut strings);
    }
    for value in &values {
        if let Some(text) = value.as_str() {
            strings.push(text.to_owned());
        }
    }
    Vocabulary {
        names: names.into_iter().collect(),
        values,
        numbers,
        strings,
    }
}

const TYPES: [&str; 7] = ["null", "boolean", "integer", "number", "string", "array", "object"];

fn resolve<'v>(root: &'v Value, target: &str) -> Option<&'v Value> {
    let fragment = target.strip_prefix('#')?;
    if fragment.is_empty() || fragment.starts_with('/') {
        return root.pointer(fragment);
    }
    fn find<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
        match value {
            Value::Object(map) => {
                let named = |keyword: &str| map.get(keyword).and_then(Value::as_str) == Some(name);
                if named("$anchor") || named("$dynamicAnchor") {
                    return Some(value);
                }
                map.values().find_map(|inner| find(inner, name))
            }
            Value::Array(items) => items.iter().find_map(|inner| find(inner, name)),
            _ => None,
        }
    }
    find(root, fragment)
}

/// `base` with the keywords of `extra` folded in: required names and
/// properties add up, other keywords of `extra` win when `base` lacks them
/// and `type` takes the more specific side.
fn merge(base: &Map<String, Value>, extra: &Value) -> Map<String, Value> {
    let mut merged = base.clone();
    let Some(extra) = extra.as_object() else { return merged };
    for (key, value) in extra {
        match (key.as_str(), merged.get_mut(key)) {
            ("required", Some(Value::Array(names))) => {
                for name in value.as_array().into_iter().flatten() {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
            ("properties", Some(Value::Object(properties))) => {
                for (name, schema) in value.as_object().into_iter().flatten() {
                    match properties.get(name) {
                        Some(existing) => {
                            let both = json!({"allOf": [existing.clone(), schema.clone()]});
                            properties.insert(name.clone(), both);
                        }
                        None => {
                            properties.insert(name.clone(), schema.clone());
                        }
                    }
                }
            }
            ("type", Some(_)) => {
                merged.insert(key.clone(), value.clone());
            }
            (_, Some(_)) => {}
            (_, None) => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    merged
}

struct Generator<'s> {
    rng: Rng,
    root: &'s Value,
    vocabulary: &'s Vocabulary,
}

impl Generator<'_> {
    /// Any value at all, from the vocabulary.
    fn wild(&mut self) -> Value {
        match self.rng.below(6) {
            0 => self.rng.pick(&self.vocabulary.values).cloned().unwrap_or(Value::Null),
            1 => self.number(None, None, None, false),
            2 => Value::String(self.rng.pick(&self.vocabulary.strings).cloned().unwrap_or_default()),
            3 => {
                let name = self.rng.pick(&self.vocabulary.names).cloned().unwrap_or_default();
                let value = self.rng.pick(&self.vocabulary.values).cloned().unwrap_or(Value::Null);
                json!({ name: value })
            }
            4 => json!([self.rng.pick(&self.vocabulary.values).cloned().unwrap_or(Value::Null)]),
            _ => Value::Bool(self.rng.chance(50)),
        }
    }

    fn number(
        &mut self,
        low: Option<(f64, bool)>,
        high: Option<(f64, bool)>,
        step: Option<f64>,
        integer: bool,
    ) -> Value {
        let below_high = |x: f64| high.is_none_or(|(bound, exclusive)| if exclusive { x < bound } else { x <= bound });
        let above_low = |x: f64| low.is_none_or(|(bound, exclusive)| if exclusive { x > bound } else { x >= bound });
        let mut candidates: Vec<f64> = Vec::new();
        let start = low.map_or(-3.0, |(bound, _)| bound.floor() - 1.0);
        let end = high
            .map_or(start + 12.0, |(bound, _)| bound.ceil() + 1.0)
            .min(start + 40.0);
        match step {
            Some(step) if step > 0.0 => {
                let mut k = (start / step).floor();
                while k * step <= end && candidates.len() < 64 {
                    candidates.push(k * step);
                    k += 1.0;
                }
            }
            _ => {
                let mut x = start;
                while x <= end {
                    candidates.push(x);
                    if !integer {
                        candidates.push(x + 0.5);
                    }
                    x += 1.0;
                }
            }
        }
        candidates.extend(self.vocabulary.numbers.iter().copied());
        let fitting: Vec<f64> = candidates
            .into_iter()
            .filter(|x| above_low(*x) && below_high(*x) && (!integer || x.fract() == 0.0))
            .filter(|x| step.is_none_or(|step| step <= 0.0 || ((x / step) - (x / step).round()).abs() < 1e-9))
            .collect();
        let x = self.rng.pick(&fitting).copied().unwrap_or(0.0);
        if x.fract() == 0.0 && x.abs() < 1e15 {
            json!(x as i64)
        } else {
            json!(x)
        }
    }

    fn instance(&mut self, schema: &Value, depth: usize) -> Value {
        if depth > 6 || self.rng.chance(4) {
            return self.wild();
        }
        let Some(map) = schema.as_object() else {
            return self.wild();
        };
        for keyword in ["$ref", "$dynamicRef"] {
            if let Some(target) = map.get(keyword).and_then(Value::as_str)
                && let Some(found) = resolve(self.root, target)
            {
                let mut rest = map.clone();
                rest.remove(keyword);
                let merged = merge(&rest, found);
                return self.instance(&Value::Object(merged), depth + 1);
            }
        }
        if let Some(arms) = map.get("allOf").and_then(Value::as_array) {
            let mut rest = map.clone();
            rest.remove("allOf");
            for arm in arms {
                let arm = arm
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|target| resolve(self.root, target))
                    .unwrap_or(arm);
                rest = merge(&rest, arm);
            }
            return self.instance(&Value::Object(rest), depth + 1);
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(arms) = map.get(keyword).and_then(Value::as_array) {
                let mut rest = map.clone();
                rest.remove(keyword);
                let Some(arm) = self.rng.pick(arms) else {
                    return self.wild();
                };
                let arm = arm
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|target| resolve(self.root, target))
                    .unwrap_or(arm);
                let merged = merge(&rest, arm);
                return self.instance(&Value::Object(merged), depth + 1);
            }
        }
        if map.contains_key("if") {
            let mut rest = map.clone();
            let (condition, then, otherwise) = (rest.remove("if"), rest.remove("then"), rest.remove("else"));
            let branch = if self.rng.chance(50) {
                condition.map(|condition| merge(&merge(&rest, &condition), then.as_ref().unwrap_or(&Value::Bool(true))))
            } else {
                otherwise.map(|otherwise| merge(&rest, &otherwise))
            };
            return self.instance(&Value::Object(branch.unwrap_or(rest)), depth + 1);
        }
        let listed: Option<Vec<Value>> = match (map.get("enum").and_then(Value::as_array), map.get("const")) {
            (_, Some(constant)) => Some(vec![constant.clone()]),
            (Some(items), None) => Some(items.clone()),
            _ => None,
        };
        if let Some(listed) = listed
            && !self.rng.chance(10)
        {
            return self.rng.pick(&listed).cloned().unwrap_or(Value::Null);
        }
        let mut kinds: Vec<String> = match map.get("type") {
            Some(Value::String(kind)) => vec![kind.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => {
                let has = |keywords: &[&str]| keywords.iter().any(|keyword| map.contains_key(*keyword));
                let mut guessed = Vec::new();
                if has(&[
                    "properties",
                    "required",
                    "additionalProperties",
                    "patternProperties",
                    "dependentRequired",
                    "dependentSchemas",
                    "propertyNames",
                    "minProperties",
                ]) {
                    guessed.push("object".to_owned());
                }
                if has(&[
                    "items",
                    "prefixItems",
                    "contains",
                    "minItems",
                    "maxItems",
                    "uniqueItems",
                ]) {
                    guessed.push("array".to_owned());
                }
                if has(&["minLength", "maxLength", "pattern", "format"]) {
                    guessed.push("string".to_owned());
                }
                if has(&[
                    "minimum",
                    "maximum",
                    "exclusiveMinimum",
                    "exclusiveMaximum",
                    "multipleOf",
                ]) {
                    guessed.push("number".to_owned());
                }
                if guessed.is_empty() || self.rng.chance(15) {
                    guessed.push((*self.rng.pick(&TYPES).unwrap_or(&"null")).to_owned());
                }
                guessed
            }
        };
        if map.get("nullable") == Some(&Value::Bool(true)) {
            kinds.push("null".to_owned());
        }
        let kind = self.rng.pick(&kinds).cloned().unwrap_or_else(|| "null".to_owned());
        match kind.as_str() {
            "null" => Value::Null,
            "boolean" => Value::Bool(self.rng.chance(50)),
            "integer" | "number" => {
                let bound = |inclusive: &str, exclusive: &str| {
                    let mut bound = map
                        .get(inclusive)
                        .and_then(Value::as_f64)
                        .map(|value| (value, map.get(exclusive) == Some(&Value::Bool(true))));
                    if let Some(value) = map.get(exclusive).and_then(Value::as_f64) {
                        bound = Some((value, true));
                    }
                    bound
                };
                let step = map.get("multipleOf").and_then(Value::as_f64);
                self.number(
                    bound("minimum", "exclusiveMinimum"),
                    bound("maximum", "exclusiveMaximum"),
                    step,
                    kind == "integer",
                )
            }
            "string" => self.string(map),
            "array" => self.array(map, depth),
            "object" => self.object(map, depth),
            _ => self.wild(),
        }
    }

    fn string(&mut self, map: &Map<String, Value>) -> Value {
        let mut pool: Vec<String> = self.vocabulary.strings.clone();
        if let Some(pattern) = map.get("pattern").and_then(Value::as_str)
            && let Ok(regex) = regex::Regex::new(pattern)
        {
            let matching: Vec<String> = pool.iter().filter(|text| regex.is_match(text)).cloned().collect();
            if !matching.is_empty() && !self.rng.chance(10) {
                pool = matching;
            }
        }
        let format_sample = match map.get("format").and_then(Value::as_str) {
            Some("date") => Some("2024-01-02"),
            Some("date-time") => Some("2024-01-02T03:04:05Z"),
            Some("email" | "idn-email") => Some("a@b.co"),
            Some("uri" | "iri" | "uri-reference" | "iri-reference") => Some("http://example.com/a"),
            Some("uuid") => Some("00000000-0000-0000-0000-000000000000"),
            Some("ipv4") => Some("10.0.0.1"),
            _ => None,
        };
        let mut text = match format_sample {
            Some(sample) if !self.rng.chance(10) => sample.to_owned(),
            _ => self.rng.pick(&pool).cloned().unwrap_or_default(),
        };
        let min = map.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = map.get("maxLength").and_then(Value::as_u64).map(|max| max as usize);
        if self.rng.chance(70) {
            let length = text.chars().count();
            if length < min {
                text.push_str(&"a".repeat(min - length));
            }
            if let Some(max) = max {
                text = text.chars().take(max).collect();
            }
        }
        Value::String(text)
    }

    fn array(&mut self, map: &Map<String, Value>, depth: usize) -> Value {
        let (prefix, tail): (Vec<Value>, Value) = match map.get("items") {
            Some(Value::Array(items)) => (
                items.clone(),
                map.get("additionalItems").cloned().unwrap_or(Value::Bool(true)),
            ),
            other => (
                map.get("prefixItems")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                other.cloned().unwrap_or(Value::Bool(true)),
            ),
        };
        let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = map
            .get("maxItems")
            .and_then(Value::as_u64)
            .map_or(min + 3, |max| max as usize)
            .min(min + 4);
        let mut length = min + self.rng.below(max.saturating_sub(min) + 1);
        if tail == Value::Bool(false) && self.rng.chance(80) {
            length = length.min(prefix.len());
        }
        let contains = map.get("contains");
        let mut items = Vec::new();
        for index in 0..length {
            let schema = prefix.get(index).unwrap_or(&tail);
            let item = match contains {
                Some(contains) if self.rng.chance(50) => self.instance(contains, depth + 1),
                _ => self.instance(schema, depth + 1),
            };
            let unique = map.get("uniqueItems") == Some(&Value::Bool(true));
            if unique && items.contains(&item) {
                continue;
            }
            items.push(item);
        }
        if let Some(contains) = contains
            && items.is_empty()
            && self.rng.chance(70)
        {
            items.push(self.instance(contains, depth + 1));
        }
        Value::Array(items)
    }

    fn object(&mut self, map: &Map<String, Value>, depth: usize) -> Value {
        let empty = Map::new();
        let properties = map.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let patterns: Vec<(regex::Regex, Value)> = map
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(pattern, schema)| Some((regex::Regex::new(pattern).ok()?, schema.clone())))
            .collect();
        let additional = map.get("additionalProperties").cloned().unwrap_or(Value::Bool(true));
        let mut names: BTreeSet<String> = map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        for name in properties.keys() {
            if self.rng.chance(60) {
                names.insert(name.clone());
            }
        }
        let extra = self.rng.below(3);
        for _ in 0..extra {
            if let Some(name) = self.rng.pick(&self.vocabulary.names) {
                names.insert(name.clone());
            }
        }
        if let Some(Value::Object(dependencies)) = map.get("dependentRequired").or_else(|| map.get("dependencies")) {
            for (name, needs) in dependencies {
                if names.contains(name) && self.rng.chance(85) {
                    names.extend(
                        needs
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_owned),
                    );
                }
            }
        }
        let min = map.get("minProperties").and_then(Value::as_u64).unwrap_or(0) as usize;
        while names.len() < min {
            let name = match self.rng.pick(&self.vocabulary.names) {
                Some(name) if !names.contains(name) => name.clone(),
                _ => format!("p{}", names.len()),
            };
            names.insert(name);
        }
        let mut object = Map::new();
        for name in names {
            let schema = match properties.get(&name) {
                Some(schema) => schema.clone(),
                None => match patterns.iter().find(|(regex, _)| regex.is_match(&name)) {
                    Some((_, schema)) => schema.clone(),
                    None => additional.clone(),
                },
            };
            if schema == Value::Bool(false) && self.rng.chance(80) {
                continue;
            }
            let value = self.instance(&schema, depth + 1);
            object.insert(name, value);
        }
        if let Some(max) = map.get("maxProperties").and_then(Value::as_u64) {
            while object.len() > max as usize {
                let Some(name) = object.keys().next_back().cloned() else {
                    break;
                };
                object.remove(&name);
            }
        }
        Value::Object(object)
    }
}

/// Checks one direction: instances generated from `from` that `from`
/// accepts must be accepted by `to`. Returns how many were checked, or the
/// first counterexample.
fn check_direction(
    from: &Value,
    to: &Value,
    vocabulary: &Vocabulary,
    seed: u64,
    attempts: usize,
) -> Result<usize, Value> {
    let (Some(from_validator), Some(to_validator)) = (oracle(from), oracle(to)) else {
        return Ok(0);
    };
    let mut generator = Generator {
        rng: Rng(seed),
        root: from,
        vocabulary,
    };
    let mut checked = 0;
    for _ in 0..attempts {
        let instance = generator.instance(from, 0);
        if from_validator.is_valid(&instance) {
            if !to_validator.is_valid(&instance) {
                return Err(instance);
            }
            checked += 1;
        }
    }
    Ok(checked)
}

fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|change| {
            format!(
                "\n    {} {:?} {} {}",
                change.code, change.effect, change.pointer, change.message
            )
        })
        .collect()
}

/// Runs both directions the checker calls compatible (strict verdict).
/// Returns (pairs compatible in some direction, instances checked).
fn check_pair(old: &Value, new: &Value, seed: u64, attempts: usize) -> Result<(usize, usize), String> {
    let changes = diff_schemas(old, new);
    let vocabulary = vocabulary(&[old, new]);
    let mut compatible = 0;
    let mut checked = 0;
    for (mode, from, to) in [(Mode::Backward, old, new), (Mode::Forward, new, old)] {
        if !verdict(&changes, mode).strict {
            continue;
        }
        compatible += 1;
        match check_direction(from, to, &vocabulary, seed ^ mode as u64, attempts) {
            Ok(count) => checked += count,
            Err(instance) => {
                return Err(format!(
                    "the checker calls this {mode} compatible, but {instance} is valid under the {} schema and not under the {}\n  old: {old}\n  new: {new}\n  changes:{}",
                    if mode == Mode::Backward { "old" } else { "new" },
                    if mode == Mode::Backward { "new" } else { "old" },
                    describe(&changes)
                ));
            }
        }
    }
    Ok((compatible, checked))
}

#[test]
fn the_table_agrees_with_the_validator() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (index, case) in compat_table::cases().iter().enumerate() {
        match check_pair(&case.old, &case.new, 0x5eed ^ index as u64, 200) {
            Ok((_, count)) => checked += count,
            Err(message) => failures.push(format!("{}: {message}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked > 5_000, "only {checked} instances were checked");
}

// ---- random schema pairs ------------------------------------------------------

fn bases() -> Vec<Value> {
    vec![
        json!({"type": "string", "minLength": 1, "maxLength": 8}),
        json!({"type": "object", "properties": {
            "n": {"type": "number", "minimum": 0, "exclusiveMaximum": 100},
            "s": {"type": "string", "minLength": 2, "maxLength": 5},
            "l": {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0, "maximum": 4}, "minItems": 1, "maxItems": 3}
        }, "required": ["n"]}),
        json!({"type": "integer", "minimum": 0, "maximum": 10}),
        json!({"type": "number", "multipleOf": 0.5}),
        json!({"enum": ["a", "b", 1, null]}),
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}),
        json!({"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "n": {"type": ["integer", "null"]}}, "additionalProperties": false}),
        json!({"type": "object", "patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": {"type": "integer"}}),
        json!({"type": "array", "items": {"type": "integer", "maximum": 5}, "maxItems": 4}),
        json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": false}),
        json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}),
        json!({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}}, {"required": ["a"]}]}),
        json!({"oneOf": [
            {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "card"}, "last4": {"type": "string"}}},
            {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cash"}}}
        ]}),
        json!({"type": "object", "properties": {"item": {"$ref": "#/$defs/Item"}, "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}}, "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}, "required": ["sku"]}}}),
        json!({"type": ["string", "null"], "maxLength": 3}),
        json!({"type": "object", "properties": {"v": {"type": "integer"}, "next": {"$ref": "#"}}}),
        json!({"type": "object", "properties": {"kind": {"enum": ["a", "b"]}}, "if": {"properties": {"kind": {"const": "a"}}, "required": ["kind"]}, "then": {"required": ["x"]}}),
        json!(true),
    ]
}

const NAMES: [&str; 6] = ["a", "b", "c", "x-a", "kind", "id"];
fn sample_value(p: u32) -> Value {
    [
        json!("a"),
        json!("b"),
        json!("c"),
        json!(1),
        json!(2),
        json!(null),
        json!(true),
        json!(2.5),
    ][p as usize % 8]
        .clone()
}
const PATTERNS: [&str; 4] = ["^a", "^[a-z]+$", "b", "^x-"];
const FORMATS: [&str; 5] = ["date", "date-time", "email", "uuid", "ipv4"];

fn simple(pick: u32) -> Value {
    let options = [
        json!({"type": "string"}),
        json!({"type": "integer", "minimum": 0}),
        json!({"type": ["string", "null"]}),
        json!({"enum": ["a", "b"]}),
        json!({}),
        json!({"type": "object", "properties": {"a": {"type": "string"}}}),
        json!({"type": "array", "items": {"type": "integer"}}),
        json!({"const": 1}),
        json!({"type": "number", "maximum": 3}),
        json!({"type": "boolean"}),
        json!({"type": "null"}),
        json!({"type": "string", "maxLength": 2}),
    ];
    options[pick as usize % options.len()].clone()
}

/// Pointers of every place a subschema stands.
fn sites(schema: &Value, pointer: String, out: &mut Vec<String>) {
    let Value::Object(map) = schema else {
        if schema.is_boolean() {
            out.push(pointer);
        }
        return;
    };
    out.push(pointer.clone());
    for keyword in [
        "additionalProperties",
        "items",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    ] {
        if let Some(inner) = map.get(keyword)
            && !inner.is_array()
        {
            sites(inner, format!("{pointer}/{keyword}"), out);
        }
    }
    for keyword in ["properties", "patternProperties", "$defs", "dependentSchemas"] {
        if let Some(Value::Object(entries)) = map.get(keyword) {
            for (name, inner) in entries {
                sites(
                    inner,
                    format!("{pointer}/{keyword}/{}", name.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf", "prefixItems"] {
        if let Some(Value::Array(items)) = map.get(keyword) {
            for (index, inner) in items.iter().enumerate() {
                sites(inner, format!("{pointer}/{keyword}/{index}"), out);
            }
        }
    }
}

fn type_names(map: &Map<String, Value>) -> Vec<Value> {
    match map.get("type") {
        Some(Value::Array(kinds)) => kinds.clone(),
        Some(kind) => vec![kind.clone()],
        None => Vec::new(),
    }
}

fn set_types(map: &mut Map<String, Value>, mut kinds: Vec<Value>) {
    kinds.dedup();
    match kinds.len() {
        0 => {
            map.remove("type");
        }
        1 => {
            map.insert("type".to_owned(), kinds.remove(0));
        }
        _ => {
            map.insert("type".to_owned(), Value::Array(kinds));
        }
    }
}

/// Toggles `keyword` between absent and `value`.
fn toggle(map: &mut Map<String, Value>, keyword: &str, value: Value) {
    if map.remove(keyword).is_none() {
        map.insert(keyword.to_owned(), value);
    }
}

/// Applies one mutation, chosen by `operation`, at the site `site` picks.
fn mutate(schema: &mut Value, operation: u8, site: u32, p: u32) {
    let mut places = Vec::new();
    sites(schema, String::new(), &mut places);
    let Some(place) = places.get(site as usize % places.len().max(1)).cloned() else {
        return;
    };
    let operations = 34;
    let operation = operation % operations;
    if operation == 33 {
        // Move the subschema into a definition and refer to it.
        if place.is_empty() {
            return;
        }
        let Some(moved) = schema.pointer(&place).cloned() else {
            return;
        };
        let name = format!("D{p}");
        let Some(root) = schema.as_object_mut() else { return };
        let definitions = root.entry("$defs").or_insert_with(|| json!({}));
        if let Some(definitions) = definitions.as_object_mut() {
            definitions.insert(name.clone(), moved);
        }
        if let Some(target) = schema.pointer_mut(&place) {
            *target = json!({"$ref": format!("#/$defs/{name}")});
        }
        return;
    }
    let Some(target) = schema.pointer_mut(&place) else {
        return;
    };
    if operation == 32 {
        *target = match p % 3 {
            0 => Value::Bool(true),
            1 => Value::Bool(false),
            _ => simple(p / 3),
        };
        return;
    }
    if target.is_boolean() {
        *target = json!({});
    }
    let Some(map) = target.as_object_mut() else { return };
    let pick_type = |p: u32| json!(TYPES[p as usize % TYPES.len()]);
    let number = |p: u32| json!([0, 1, 2, 3, 5, 10, -1][p as usize % 7]);
    match operation {
        0 => {
            let mut kinds = type_names(map);
            if !kinds.is_empty() {
                kinds.push(pick_type(p));
                set_types(map, kinds);
            }
        }
        1 => {
            map.remove("type");
        }
        2 => {
            map.insert("type".to_owned(), pick_type(p));
        }
        3 => {
            let mut kinds = type_names(map);
            if kinds.len() > 1 {
                kinds.remove(p as usize % kinds.len());
                set_types(map, kinds);
            }
        }
        4 => {
            let swapped: Vec<Value> = type_names(map)
                .into_iter()
                .map(|kind| match kind.as_str() {
                    Some("integer") => json!("number"),
                    Some("number") => json!("integer"),
                    _ => kind,
                })
                .collect();
            set_types(map, swapped);
        }
        5 => match p % 3 {
            0 => {
                let mut kinds = type_names(map);
                if !kinds.is_empty() {
                    kinds.push(json!("null"));
                    set_types(map, kinds);
                }
            }
            1 => {
                if map.contains_key("type") {
                    toggle(map, "nullable", json!(true));
                }
            }
            _ => {
                let inner = Value::Object(map.clone());
                map.clear();
                map.insert("anyOf".to_owned(), json!([inner, {"type": "null"}]));
            }
        },
        6 => match map.get_mut("enum").and_then(Value::as_array_mut) {
            Some(values) if p.is_multiple_of(2) => values.push(sample_value(p / 2)),
            Some(values) if values.len() > 1 => {
                values.remove(p as usize % values.len());
            }
            _ => {
                map.insert("enum".to_owned(), json!([sample_value(p), sample_value(p + 3)]));
            }
        },
        7 => toggle(map, "const", sample_value(p)),
        8 | 9 => {
            let keyword = if operation == 8 { "minimum" } else { "maximum" };
            match map.get(keyword).and_then(Value::as_f64) {
                Some(_) if p.is_multiple_of(5) => {
                    map.remove(keyword);
                }
                Some(value) => {
                    map.insert(keyword.to_owned(), json!(value + if p % 2 == 1 { 1.0 } else { -1.0 }));
                }
                None => {
                    map.insert(keyword.to_owned(), number(p));
                }
            }
        }
        10 => {
            let keyword = if p.is_multiple_of(2) {
                "exclusiveMinimum"
            } else {
                "exclusiveMaximum"
            };
            toggle(map, keyword, number(p / 2));
        }
        11 => {
            let steps = [json!(1), json!(2), json!(3), json!(4), json!(0.5), json!(0.25)];
            if map.contains_key("multipleOf") && p.is_multiple_of(3) {
                map.remove("multipleOf");
            } else {
                map.insert("multipleOf".to_owned(), steps[p as usize % steps.len()].clone());
            }
        }
        12 => {
            let keyword = [
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "exclusiveMinimum",
                "exclusiveMaximum",
            ][p as usize % 6];
            match map.get(keyword).and_then(Value::as_u64) {
                Some(_) if p.is_multiple_of(7) => {
                    map.remove(keyword);
                }
                Some(value) => {
                    map.insert(
                        keyword.to_owned(),
                        json!(if p.is_multiple_of(2) {
                            value + 1
                        } else {
                            value.saturating_sub(1)
                        }),
                    );
                }
                None => {
                    map.insert(keyword.to_owned(), json!(p / 6 % 5));
                }
            }
        }
        13 => {
            if map.contains_key("pattern") && p.is_multiple_of(2) {
                map.remove("pattern");
            } else {
                map.insert("pattern".to_owned(), json!(PATTERNS[p as usize % PATTERNS.len()]));
            }
        }
        14 => {
            if map.contains_key("format") && p.is_multiple_of(2) {
                map.remove("format");
            } else {
                map.insert("format".to_owned(), json!(FORMATS[p as usize % FORMATS.len()]));
            }
        }
        15 => {
            let properties = map.entry("properties").or_insert_with(|| json!({}));
            if let Some(properties) = properties.as_object_mut() {
                properties.insert(NAMES[p as usize % NAMES.len()].to_owned(), simple(p / 7));
            }
        }
        16 => {
            if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut)
                && let Some(name) = properties.keys().nth(p as usize % properties.len().max(1)).cloned()
            {
                properties.remove(&name);
            }
        }
        17 => {
            let name = json!(NAMES[p as usize % NAMES.len()]);
            let required = map.entry("required").or_insert_with(|| json!([]));
            if let Some(names) = required.as_array_mut() {
                match names.iter().position(|existing| *existing == name) {
                    Some(index) => {
                        names.remove(index);
                    }
                    None => names.push(name),
                }
            }
        }
        18 => {
            let options = [
                json!(false),
                json!({"type": "string"}),
                json!({"type": "integer"}),
                json!(true),
            ];
            if map.contains_key("additionalProperties") && p.is_multiple_of(2) {
                map.remove("additionalProperties");
            } else {
                map.insert(
                    "additionalProperties".to_owned(),
                    options[p as usize % options.len()].clone(),
                );
            }
        }
        19 => {
            let patterns = map.entry("patternProperties").or_insert_with(|| json!({}));
            if let Some(patterns) = patterns.as_object_mut() {
                let pattern = ["^x-", "^y-", "^n-", "a"][p as usize % 4];
                if patterns.remove(pattern).is_none() {
                    patterns.insert(pattern.to_owned(), simple(p / 4));
                }
            }
        }
        20 => match p % 3 {
            0 => toggle(map, "items", simple(p / 3)),
            1 => {
                let prefix = map.entry("prefixItems").or_insert_with(|| json!([]));
                if let Some(prefix) = prefix.as_array_mut() {
                    prefix.push(simple(p / 3));
                }
            }
            _ => {
                if let Some(prefix) = map.get_mut("prefixItems").and_then(Value::as_array_mut) {
                    prefix.pop();
                }
            }
        },
        21 => match p % 3 {
            0 => toggle(map, "minItems", json!(p / 3 % 3)),
            1 => toggle(map, "maxItems", json!(p / 3 % 4)),
            _ => toggle(map, "uniqueItems", json!(true)),
        },
        22 => match p % 3 {
            0 => toggle(map, "contains", simple(p / 3)),
            1 => toggle(map, "minContains", json!(p / 3 % 3)),
            _ => toggle(map, "maxContains", json!(1 + p / 3 % 2)),
        },
        23 | 24 => {
            let keyword = if operation == 23 { "anyOf" } else { "oneOf" };
            match map.get_mut(keyword).and_then(Value::as_array_mut) {
                Some(arms) if p.is_multiple_of(2) => arms.push(simple(p / 2)),
                Some(arms) if arms.len() > 1 => {
                    arms.remove(p as usize % arms.len());
                }
                _ => {
                    let inner = Value::Object(map.clone());
                    map.clear();
                    map.insert(keyword.to_owned(), json!([inner, simple(p / 2)]));
                }
            }
        }
        25 => match map.get_mut("allOf").and_then(Value::as_array_mut) {
            Some(arms) => arms.push(simple(p)),
            None => {
                map.insert("allOf".to_owned(), json!([simple(p)]));
            }
        },
        26 => toggle(map, "not", simple(p)),
        27 => {
            let keyword = ["title", "description", "default", "deprecated", "examples"][p as usize % 5];
            toggle(map, keyword, json!(format!("note {p}")));
        }
        28 => {
            let dependencies = map.entry("dependentRequired").or_insert_with(|| json!({}));
            if let Some(dependencies) = dependencies.as_object_mut() {
                let name = NAMES[p as usize % NAMES.len()];
                if dependencies.remove(name).is_none() {
                    dependencies.insert(name.to_owned(), json!([NAMES[(p as usize + 1) % NAMES.len()]]));
                }
            }
        }
        29 => match (map.contains_key("if"), p % 2) {
            (true, 0) => {
                map.insert("then".to_owned(), simple(p / 2));
            }
            (true, _) => {
                map.remove("if");
            }
            (false, _) => {
                map.insert("if".to_owned(), json!({"required": [NAMES[p as usize % NAMES.len()]]}));
                map.insert("then".to_owned(), simple(p / 2));
            }
        },
        30 => toggle(map, "x-extension", json!(p)),
        31 => {
            let properties = map.entry("properties").or_insert_with(|| json!({}));
            if let Some(property) = properties
                .as_object_mut()
                .and_then(|properties| properties.values_mut().nth(p as usize % 3))
            {
                mutate(property, (p % 14) as u8, 0, p / 14);
            }
        }
        _ => {}
    }
}

/// Applies the first mutation from `operation` on that changes the schema.
fn mutate_effectively(schema: &mut Value, operation: u8, site: u32, p: u32) {
    for attempt in 0..34 {
        let before = schema.clone();
        mutate(schema, operation.wrapping_add(attempt), site, p);
        if *schema != before {
            return;
        }
    }
}

/// A base schema, an old version after a few mutations and a new version
/// after a few more, and a seed for the instances.
fn schema_pairs() -> impl Strategy<Value = (Value, Value, u64)> {
    let mutations = || vec((any::<u8>(), any::<u32>(), any::<u32>()), 0..3);
    (
        0..bases().len(),
        mutations(),
        vec((any::<u8>(), any::<u32>(), any::<u32>()), 1..4),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(base, before, after, swap, seed)| {
            let mut old = bases()[base].clone();
            for (operation, site, p) in before {
                mutate_effectively(&mut old, operation, site, p);
            }
            let mut new = old.clone();
            for (operation, site, p) in after {
                mutate_effectively(&mut new, operation, site, p);
            }
            // Mutations mostly add keywords; swapping makes as many remove them.
            if swap { (new, old, seed) } else { (old, new, seed) }
        })
}

#[test]
fn random_pairs_called_compatible_accept_each_others_instances() {
    let cases = std::env::var("COMPAT_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    let config = Config {
        failure_persistence: None,
        ..Config::with_cases(cases)
    };
    // The same pairs on every run unless COMPAT_PROPTEST_SEED asks for others.
    let rng = match std::env::var("COMPAT_PROPTEST_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let compatible = Cell::new(0usize);
    let checked = Cell::new(0usize);
    let result = runner.run(&schema_pairs(), |(old, new, seed)| {
        match check_pair(&old, &new, seed, 40) {
            Ok((pairs, instances)) => {
                compatible.set(compatible.get() + pairs);
                checked.set(checked.get() + instances);
                Ok(())
            }
            Err(message) => Err(TestCaseError::fail(message)),
        }
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The property must not hold vacuously.
    assert!(
        compatible.get() >= cases as usize / 4,
        "only {} compatible directions",
        compatible.get()
    );
    assert!(
        checked.get() >= cases as usize * 4,
        "only {} instances checked",
        checked.get()
    );
}
