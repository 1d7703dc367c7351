//! Mappings: request templates filled from the workflow's input and the
//! outputs of earlier steps.
//!
//! A mapping is JSON. Objects and arrays are walked; numbers, booleans and
//! null are taken as they are; a string is an **expression** when it starts
//! with `$`:
//!
//! | expression | value |
//! |---|---|
//! | `$input` | the workflow's input |
//! | `$input/<pointer>` | a value inside it (JSON pointer, RFC 6901) |
//! | `$steps/<id>` | the output of call step `<id>` |
//! | `$steps/<id>/<pointer>` | a value inside it |
//! | `$instance` | the instance id |
//! | `$$text` | the literal string `$text` |
//!
//! An expression that ends in `?` is optional: when its value is missing, an
//! object member holding it is left out (elsewhere it is `null`). A missing
//! value without `?` is an error naming the expression and where it sits.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::model::Mapping;

/// What expressions read from while a mapping is filled.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The workflow's input.
    pub input: &'a Value,
    /// The outputs of completed call steps, by step id.
    pub steps: &'a BTreeMap<String, Value>,
    /// The instance id.
    pub instance: &'a str,
}

/// A mapping that could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the mapping at {pointer:?} ({expression}) {problem}")]
pub struct MappingError {
    /// Where in the mapping the expression sits (a JSON pointer into it).
    pub pointer: String,
    /// The expression.
    pub expression: String,
    /// What went wrong.
    pub problem: String,
}

/// An expression, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `$input[/pointer]`.
    Input {
        /// The pointer inside the input ("" for all of it).
        pointer: String,
    },
    /// `$steps/<id>[/pointer]`.
    Step {
        /// The step id.
        step: String,
        /// The pointer inside its output ("" for all of it).
        pointer: String,
    },
    /// `$instance`.
    Instance,
}

/// A template string: an expression (and whether it is optional), or a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// Read a value.
    Expression {
        /// What to read.
        expression: Expression,
        /// Missing is allowed (`?` at the end).
        optional: bool,
    },
    /// Use this text as it is.
    Literal(String),
}

impl Template {
    /// Reads a template string: `$...` is an expression, `$$...` a literal
    /// starting with `$`, anything else a literal.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('$') else {
            return Ok(Self::Literal(text.to_owned()));
        };
        if rest.starts_with('$') {
            return Ok(Self::Literal(rest.to_owned()));
        }
        let (rest, optional) = match rest.strip_suffix('?') {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (head, pointer) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let expression = match head {
            "input" => Expression::Input {
                pointer: pointer.to_owned(),
            },
            "instance" if pointer.is_empty() => Expression::Instance,
            "steps" => {
                let after = pointer.strip_prefix('/').unwrap_or("");
                let (step, inner) = match after.find('/') {
                    Some(at) => after.split_at(at),
                    None => (after, ""),
                };
                if step.is_empty() {
                    return Err(format!(
                        "{text:?} names no step; write $steps/<step id> or $steps/<step id>/<pointer>"
                    ));
                }
                Expression::Step {
                    step: step.to_owned(),
                    pointer: inner.to_owned(),
                }
            }
            _ => {
                return Err(format!(
                    "{text:?} is not an expression; use $input/..., $steps/<id>/..., $instance, or $$ for a literal '$'"
                ));
            }
        };
        Ok(Self::Expression { expression, optional })
    }
}

impl Expression {
    /// The value the expression reads, if it is there.
    pub fn read<'a>(&self, scope: &Scope<'a>) -> Result<Option<Value>, String> {
        Ok(match self {
            Self::Input { pointer } => scope.input.pointer(pointer).cloned(),
            Self::Step { step, pointer } => match scope.steps.get(step) {
                Some(output) => output.pointer(pointer).cloned(),
                None => return Err(format!("step {step:?} has no output (it has not completed)")),
            },
            Self::Instance => Some(Value::String(scope.instance.to_owned())),
        })
    }
}

impl Mapping {
    /// Fills the template from `scope`.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<Value, MappingError> {
        fill(&self.0, scope, "").map(|value| value.unwrap_or(Value::Null))
    }
}

/// Evaluates one expression string (a choice's `on`) in `scope`; missing is `null`.
pub fn evaluate_expression(text: &str, scope: &Scope<'_>) -> Result<Value, MappingError> {
    fill(&Value::String(text.to_owned()), scope, "").map(|value| value.unwrap_or(Value::Null))
}

/// `None` when an optional expression found nothing.
fn fill(template: &Value, scope: &Scope<'_>, at: &str) -> Result<Option<Value>, MappingError> {
    match template {
        Value::String(text) => {
            let parsed = Template::parse(text).map_err(|problem| MappingError {
                pointer: at.to_owned(),
                expression: text.clone(),
                problem,
            })?;
            match parsed {
                Template::Literal(literal) => Ok(Some(Value::String(literal))),
                Template::Expression { expression, optional } => {
                    let found = expression.read(scope).map_err(|problem| MappingError {
                        pointer: at.to_owned(),
                        expression: text.clone(),
                        problem,
                    });
                    match found {
                        Ok(Some(value)) => Ok(Some(value)),
                        Ok(None) | Err(_) if optional => Ok(None),
                        Ok(None) => Err(MappingError {
                            pointer: at.to_owned(),
                            expression: text.clone(),
                            problem: "found no value there; end the expression with '?' if it may be missing"
                                .to_owned(),
                        }),
                        Err(error) => Err(error),
                    }
                }
            }
        }
        Value::Object(members) => {
            let mut out = Map::with_capacity(members.len());
            for (name, member) in members {
                let here = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                if let Some(value) = fill(member, scope, &here)? {
                    out.insert(name.clone(), value);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                out.push(fill(item, scope, &format!("{at}/{index}"))?.unwrap_or(Value::Null));
            }
            Ok(Some(Value::Array(out)))
        }
        other => Ok(Some(other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope_with<'a>(input: &'a Value, steps: &'a BTreeMap<String, Value>) -> Scope<'a> {
        Scope {
            input,
            steps,
            instance: "fulfilment-1",
        }
    }

    #[test]
    fn fills_expressions_literals_and_optional_members() {
        let input = json!({"order_id": "o-1", "items": [{"sku": "A", "qty": 2}]});
        let steps = BTreeMap::from([("reserve".to_owned(), json!({"reservation_id": "r-9"}))]);
        let mapping = Mapping(json!({
            "order": "$input/order_id",
            "first_sku": "$input/items/0/sku",
            "reservation": "$steps/reserve/reservation_id",
            "whole": "$steps/reserve",
            "instance": "$instance",
            "price": "$$5",
            "note": "plain",
            "coupon": "$input/coupon?",
            "n": 3,
            "list": ["$input/order_id", true]
        }));
        let value = mapping.evaluate(&scope_with(&input, &steps)).unwrap();
        assert_eq!(
            value,
            json!({
                "order": "o-1",
                "first_sku": "A",
                "reservation": "r-9",
                "whole": {"reservation_id": "r-9"},
                "instance": "fulfilment-1",
                "price": "$5",
                "note": "plain",
                "n": 3,
                "list": ["o-1", true]
            })
        );
    }

    #[test]
    fn a_missing_value_names_the_expression_and_where_it_sits() {
        let input = json!({});
        let steps = BTreeMap::new();
        let error = Mapping(json!({"a": {"b": "$input/nope"}}))
            .evaluate(&scope_with(&input, &steps))
            .unwrap_err();
        assert_eq!(error.pointer, "/a/b");
        assert_eq!(error.expression, "$input/nope");
        let error = Mapping(json!("$steps/charge/id"))
            .evaluate(&scope_with(&input, &steps))
            .unwrap_err();
        assert!(error.problem.contains("charge"), "{error}");
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in ["$inputs/x", "$steps", "$steps/", "$instance/x", "$"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn choice_values_read_like_mappings() {
        let input = json!({"express": true});
        let steps = BTreeMap::new();
        let scope = scope_with(&input, &steps);
        assert_eq!(evaluate_expression("$input/express", &scope).unwrap(), json!(true));
        assert_eq!(evaluate_expression("$input/missing?", &scope).unwrap(), Value::Null);
    }
}
