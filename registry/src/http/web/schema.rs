//! Message schemas for people: a nested list of properties, each with its
//! type, a required mark, its description and its constraints (bounds,
//! pattern, enum, format, ...).
//!
//! Local references (`#/$defs/...`, resolved against the contract document as
//! the validator does) are followed and named, so a reader sees the shape of
//! `ReserveStock` rather than a `$ref`. A reference already being expanded on
//! the way down is shown as recursive instead of expanded again, and a budget
//! of rendered nodes keeps a schema that references a wide tree many times
//! from producing a page without end. References to other contracts
//! (`soa://...`) link to that service's page; nothing is fetched.

use maud::{Markup, html};
use serde_json::{Map, Value};

/// The most property and item entries one schema renders.
const MAX_NODES: usize = 400;
/// The deepest nesting rendered.
const MAX_DEPTH: usize = 24;

/// `schema` as a nested list, its local references resolved in `root` (the
/// contract document it belongs to).
pub(super) fn render(schema: &Value, root: &Value) -> Markup {
    let mut renderer = Renderer {
        root,
        expanding: Vec::new(),
        nodes: 0,
        truncated: false,
    };
    let body = renderer.node(None, false, schema, 0);
    html! {
        div.schema {
            (body)
            @if renderer.truncated {
                p.note { "This schema is too large to show in full; the contract's JSON has all of it." }
            }
        }
    }
}

struct Renderer<'a> {
    root: &'a Value,
    /// The references being expanded on the way from the root to here.
    expanding: Vec<String>,
    nodes: usize,
    truncated: bool,
}

/// A schema with its local references followed: the referenced schema's
/// keywords, with the referring schema's own keywords (a `description`
/// beside the `$ref`, say) on top.
struct Resolved {
    keywords: Map<String, Value>,
    /// `false` (nothing is valid) or `true` (anything is).
    boolean: Option<bool>,
    /// The names of the references followed, outermost first.
    names: Vec<String>,
    /// References pushed on `expanding`, popped once the node is rendered.
    pushed: usize,
    /// A reference that was not followed, and why.
    unfollowed: Option<Unfollowed>,
}

enum Unfollowed {
    /// Already being expanded above: the schema is recursive.
    Recursive(String),
    /// It points nowhere in the document.
    Missing(String),
    /// Another registered contract's schema: `soa://<service>@<major>#...`.
    Contract { reference: String, service: String },
    /// Anything else (refused by the registry's lint; shown as it is).
    Other(String),
}

/// Where a property or item sits under its parent.
enum Label<'a> {
    Property(&'a str),
    Pattern(&'a str),
    Other(&'static str),
    Position(usize),
    Option(usize),
}

impl Renderer<'_> {
    /// One schema: a line (name, required mark, type, reference names,
    /// constraints), its description, and the schemas nested in it.
    fn node(&mut self, label: Option<Label<'_>>, required: bool, schema: &Value, depth: usize) -> Markup {
        self.nodes += 1;
        if self.nodes > MAX_NODES || depth > MAX_DEPTH {
            self.truncated = true;
            return html! { span.note { "…" } };
        }
        let resolved = self.resolve(schema);
        let keywords = &resolved.keywords;
        let description = keywords
            .get("description")
            .or_else(|| keywords.get("title"))
            .and_then(Value::as_str);
        let markup = html! {
            div.line {
                @match &label {
                    Some(Label::Property(name)) => code.name { (name) },
                    Some(Label::Pattern(pattern)) => span.name { "names matching " code { (pattern) } },
                    Some(Label::Other(text)) => span.name { (text) },
                    Some(Label::Position(index)) => span.name { "item " (index) },
                    Some(Label::Option(index)) => span.name { "option " (index + 1) },
                    None => {},
                }
                @if required {
                    " " strong.required { "required" }
                }
                " " span.type { (type_label(&resolved)) }
                @for name in &resolved.names {
                    " " span.ref title="defined in $defs" { (name) }
                }
                @for fact in facts(keywords) {
                    " " span.fact { (fact) }
                }
            }
            @if let Some(description) = description {
                p.desc { (description) }
            }
            @match &resolved.unfollowed {
                Some(Unfollowed::Recursive(name)) => p.note { "Recursive: " code { (name) } " is shown above." },
                Some(Unfollowed::Missing(reference)) => p.note.warn { "The reference " code { (reference) } " points nowhere in this contract." },
                Some(Unfollowed::Contract { reference, service }) => p.note {
                    "Defined by " a href={ "/services/" (service) } { (service) } ": " code { (reference) }
                },
                Some(Unfollowed::Other(reference)) => p.note.warn { "Not followed: " code { (reference) } },
                None => {},
            }
            (self.children(keywords, depth))
        };
        for _ in 0..resolved.pushed {
            self.expanding.pop();
        }
        markup
    }

    /// The schemas nested in one: properties, items, alternatives.
    fn children(&mut self, keywords: &Map<String, Value>, depth: usize) -> Markup {
        let required: Vec<&str> = keywords
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut entries: Vec<Markup> = Vec::new();
        if let Some(properties) = keywords.get("properties").and_then(Value::as_object) {
            for (name, schema) in properties {
                let is_required = required.contains(&name.as_str());
                entries.push(self.node(Some(Label::Property(name)), is_required, schema, depth + 1));
            }
        }
        // Required names without a schema of their own must be there all the same.
        let declared = keywords.get("properties").and_then(Value::as_object);
        for name in required
            .iter()
            .filter(|name| declared.is_none_or(|properties| !properties.contains_key(**name)))
        {
            entries.push(self.node(Some(Label::Property(name)), true, &Value::Bool(true), depth + 1));
        }
        if let Some(patterns) = keywords.get("patternProperties").and_then(Value::as_object) {
            for (pattern, schema) in patterns {
                entries.push(self.node(Some(Label::Pattern(pattern)), false, schema, depth + 1));
            }
        }
        if let Some(schema @ Value::Object(_)) = keywords.get("additionalProperties") {
            entries.push(self.node(Some(Label::Other("other properties")), false, schema, depth + 1));
        }
        if let Some(positions) = keywords.get("prefixItems").and_then(Value::as_array) {
            for (index, schema) in positions.iter().enumerate() {
                entries.push(self.node(Some(Label::Position(index)), false, schema, depth + 1));
            }
        }
        if let Some(schema @ Value::Object(_)) = keywords.get("items")
            && is_worth_expanding(schema)
        {
            entries.push(self.node(Some(Label::Other("each item")), false, schema, depth + 1));
        }
        if let Some(schema @ Value::Object(_)) = keywords.get("contains") {
            entries.push(self.node(Some(Label::Other("contains")), false, schema, depth + 1));
        }
        for combinator in ["oneOf", "anyOf", "allOf"] {
            if let Some(options) = keywords.get(combinator).and_then(Value::as_array) {
                for (index, schema) in options.iter().enumerate() {
                    entries.push(self.node(Some(Label::Option(index)), false, schema, depth + 1));
                }
            }
        }
        for (keyword, label) in [
            ("not", "must not match"),
            ("if", "if"),
            ("then", "then"),
            ("else", "else"),
        ] {
            if let Some(schema) = keywords.get(keyword) {
                entries.push(self.node(Some(Label::Other(label)), false, schema, depth + 1));
            }
        }
        html! {
            @if !entries.is_empty() {
                ul.props {
                    @for entry in entries {
                        li { (entry) }
                    }
                }
            }
        }
    }

    /// Follows local references until a schema without one.
    fn resolve(&mut self, schema: &Value) -> Resolved {
        let mut resolved = Resolved {
            keywords: Map::new(),
            boolean: None,
            names: Vec::new(),
            pushed: 0,
            unfollowed: None,
        };
        match schema {
            Value::Object(keywords) => resolved.keywords = keywords.clone(),
            Value::Bool(value) => {
                resolved.boolean = Some(*value);
                return resolved;
            }
            _ => return resolved,
        }
        while let Some(reference) = resolved.keywords.remove("$ref") {
            let Some(reference) = reference.as_str().map(str::to_owned) else {
                break;
            };
            let Some(pointer) = reference.strip_prefix('#') else {
                resolved.unfollowed = Some(match contract_service(&reference) {
                    Some(service) => Unfollowed::Contract { reference, service },
                    None => Unfollowed::Other(reference),
                });
                break;
            };
            let name = reference_name(&reference);
            if self.expanding.contains(&reference) {
                resolved.unfollowed = Some(Unfollowed::Recursive(name));
                break;
            }
            match self.root.pointer(pointer) {
                Some(Value::Object(target)) => {
                    // The referring schema's keywords win; the target's own
                    // `$ref`, if it has one, is followed next.
                    let mut merged = target.clone();
                    merged.extend(std::mem::take(&mut resolved.keywords));
                    resolved.keywords = merged;
                    resolved.names.push(name);
                    self.expanding.push(reference);
                    resolved.pushed += 1;
                }
                Some(Value::Bool(value)) => {
                    resolved.boolean = Some(*value);
                    resolved.names.push(name);
                    break;
                }
                _ => {
                    resolved.unfollowed = Some(Unfollowed::Missing(reference));
                    break;
                }
            }
        }
        resolved
    }
}

/// Whether an array's item schema says more than its type, so it deserves
/// an entry of its own.
fn is_worth_expanding(items: &Value) -> bool {
    items.as_object().is_some_and(|keywords| {
        keywords
            .keys()
            .any(|keyword| keyword != "type" && keyword != "description" && keyword != "title")
    })
}

/// The last token of a local reference: `#/$defs/OrderId` is `OrderId`.
fn reference_name(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let name = last.replace("~1", "/").replace("~0", "~");
    if name.is_empty() || name == "#" {
        "the whole contract".to_owned()
    } else {
        name
    }
}

/// The service of `soa://<service>@<major>#...`, when it names a valid one.
fn contract_service(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix("soa://")?;
    let (service, _) = rest.split_once('@')?;
    contracts::ServiceName::parse(service)
        .ok()
        .map(|service| service.to_string())
}

/// The kind of value a schema accepts, in a few words.
fn type_label(resolved: &Resolved) -> String {
    match resolved.boolean {
        Some(true) => return "any value".to_owned(),
        Some(false) => return "no value (always invalid)".to_owned(),
        None => {}
    }
    let keywords = &resolved.keywords;
    let types: Vec<&str> = match keywords.get("type") {
        Some(Value::String(single)) => vec![single.as_str()],
        Some(Value::Array(several)) => several.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let of_items = || -> Option<String> {
        let items = keywords.get("items")?;
        Some(match items {
            Value::Object(item) => match (item.get("$ref").and_then(Value::as_str), item.get("type")) {
                (Some(reference), _) => reference_name(reference),
                (None, Some(Value::String(kind))) => kind.clone(),
                _ => "values".to_owned(),
            },
            Value::Bool(false) => "nothing".to_owned(),
            _ => "any value".to_owned(),
        })
    };
    if types.is_empty() {
        return if keywords.contains_key("const") {
            "constant".to_owned()
        } else if keywords.contains_key("enum") {
            "enumeration".to_owned()
        } else if keywords.contains_key("properties") {
            "object".to_owned()
        } else if keywords.contains_key("oneOf") {
            "exactly one of".to_owned()
        } else if keywords.contains_key("anyOf") {
            "any of".to_owned()
        } else if keywords.contains_key("allOf") {
            "all of".to_owned()
        } else {
            "any value".to_owned()
        };
    }
    types
        .iter()
        .map(|kind| match (*kind, of_items()) {
            ("array", Some(items)) => format!("array of {items}"),
            (kind, _) => kind.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The constraints of a schema, each a short phrase.
fn facts(keywords: &Map<String, Value>) -> Vec<Markup> {
    let mut facts = Vec::new();
    let number = |keyword: &str| {
        keywords
            .get(keyword)
            .filter(|value| value.is_number())
            .map(Value::to_string)
    };
    let range = |low: Option<String>, high: Option<String>, what: &str| -> Option<String> {
        match (low, high) {
            (Some(low), Some(high)) if low == high => Some(format!("{what} {low}")),
            (Some(low), Some(high)) => Some(format!("{what} {low}–{high}")),
            (Some(low), None) => Some(format!("{what} ≥ {low}")),
            (None, Some(high)) => Some(format!("{what} ≤ {high}")),
            (None, None) => None,
        }
    };
    for (keyword, symbol) in [
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ] {
        if let Some(bound) = number(keyword) {
            facts.push(html! { (symbol) " " (bound) });
        }
    }
    if let Some(step) = number("multipleOf") {
        facts.push(html! { "multiple of " (step) });
    }
    for (low, high, what) in [
        ("minLength", "maxLength", "length"),
        ("minItems", "maxItems", "items"),
        ("minProperties", "maxProperties", "properties"),
        ("minContains", "maxContains", "matches"),
    ] {
        if let Some(text) = range(number(low), number(high), what) {
            facts.push(html! { (text) });
        }
    }
    if keywords.get("uniqueItems") == Some(&Value::Bool(true)) {
        facts.push(html! { "unique items" });
    }
    if let Some(pattern) = keywords.get("pattern").and_then(Value::as_str) {
        facts.push(html! { "pattern " code { (pattern) } });
    }
    if let Some(format) = keywords.get("format").and_then(Value::as_str) {
        facts.push(html! { "format " (format) });
    }
    if let Some(value) = keywords.get("const") {
        facts.push(html! { "always " code { (value.to_string()) } });
    }
    if let Some(values) = keywords.get("enum").and_then(Value::as_array) {
        facts.push(html! {
            "one of "
            @for (index, value) in values.iter().enumerate() {
                @if index > 0 { ", " }
                code { (value.to_string()) }
            }
        });
    }
    if let Some(value) = keywords.get("default") {
        facts.push(html! { "default " code { (value.to_string()) } });
    }
    if keywords.get("additionalProperties") == Some(&Value::Bool(false))
        || keywords.get("unevaluatedProperties") == Some(&Value::Bool(false))
    {
        facts.push(html! { "no other properties" });
    }
    for (keyword, text) in [
        ("deprecated", "deprecated"),
        ("readOnly", "read-only"),
        ("writeOnly", "write-only"),
    ] {
        if keywords.get(keyword) == Some(&Value::Bool(true)) {
            facts.push(html! { (text) });
        }
    }
    if let Some(example) = keywords
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|all| all.first())
    {
        facts.push(html! { "e.g. " code { (example.to_string()) } });
    }
    facts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rendered(schema: &Value, root: &Value) -> String {
        render(schema, root).into_string()
    }

    #[test]
    fn properties_show_type_required_mark_description_and_constraints() {
        let root = json!({"$defs": {
            "OrderId": {"type": "string", "pattern": "^[a-z]+$", "description": "An order."},
            "Line": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1, "maximum": 9}}}
        }});
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["order_id"],
            "properties": {
                "order_id": {"$ref": "#/$defs/OrderId", "description": "The order it is for."},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}, "minItems": 1, "maxItems": 100},
                "speed": {"enum": ["slow", "fast"], "default": "slow"}
            }
        });
        let html = rendered(&schema, &root);
        for expected in [
            r#"<code class="name">order_id</code> <strong class="required">required</strong>"#,
            r#"<span class="ref" title="defined in $defs">OrderId</span>"#,
            // The description beside the `$ref` wins over the definition's.
            "The order it is for.",
            "pattern <code>^[a-z]+$</code>",
            "array of Line",
            "items 1–100",
            "≥ 1",
            "≤ 9",
            "one of <code>&quot;slow&quot;</code>, <code>&quot;fast&quot;</code>",
            "no other properties",
            "<code class=\"name\">qty</code>",
        ] {
            assert!(html.contains(expected), "{expected} missing in {html}");
        }
        assert!(!html.contains("An order."), "{html}");
        assert!(!html.contains("lines</code> <strong"), "{html}");
    }

    #[test]
    fn recursive_references_stop_and_missing_ones_are_named() {
        let root = json!({"$defs": {
            "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}},
            "Loop": {"$ref": "#/$defs/Loop"}
        }});
        let html = rendered(&json!({"$ref": "#/$defs/Node"}), &root);
        assert!(html.contains("Recursive: <code>Node</code>"), "{html}");
        assert_eq!(
            html.matches("<code class=\"name\">children</code>").count(),
            1,
            "{html}"
        );
        assert!(html.contains("array of Node"), "{html}");
        let html = rendered(&json!({"$ref": "#/$defs/Loop"}), &root);
        assert!(html.contains("Recursive"), "{html}");
        let html = rendered(&json!({"$ref": "#/$defs/Nowhere"}), &root);
        assert!(html.contains("points nowhere"), "{html}");
        let html = rendered(&json!({"$ref": "soa://orders@1#/$defs/OrderId"}), &root);
        assert!(html.contains(r#"<a href="/services/orders">orders</a>"#), "{html}");
    }

    #[test]
    fn a_wide_shared_tree_is_cut_off_by_the_budget() {
        // Ten properties that each reference the next level, five levels deep:
        // 10^5 entries if expanded naively.
        let mut defs = serde_json::Map::new();
        for level in 0..5 {
            let properties: serde_json::Map<String, Value> = (0..10)
                .map(|index| (format!("p{index}"), json!({"$ref": format!("#/$defs/L{}", level + 1)})))
                .collect();
            defs.insert(format!("L{level}"), json!({"type": "object", "properties": properties}));
        }
        defs.insert("L5".to_owned(), json!({"type": "string"}));
        let root = json!({"$defs": defs});
        let html = rendered(&json!({"$ref": "#/$defs/L0"}), &root);
        assert!(html.contains("too large to show in full"));
        assert!(html.len() < 400_000, "{}", html.len());
    }

    #[test]
    fn user_text_is_escaped() {
        let schema = json!({"type": "object", "description": "<script>alert(1)</script>",
            "properties": {"<b>": {"type": "string", "pattern": "</code><i>"}}});
        let html = rendered(&schema, &json!({}));
        assert!(
            !html.contains("<script>") && !html.contains("<b>") && !html.contains("<i>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    }
}
