//! Reading a workflow definition from text: size and depth limits, JSON
//! syntax, the definition meta-schema, the typed model, then the structural
//! checks that need no registry (unique step ids, expressions that parse,
//! `$steps` references to steps that have run).
//!
//! Every problem names the JSON pointer of the offending value and, when the
//! definition was read from text, its line and column.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::mapping::{Expression, Template};
use super::model::{Mapping, Step, StepKind, WorkflowDefinition};
use crate::locate::locate_nearest;
use crate::parse::{DocumentError, Limits, MetaSchema, Problem, escape_pointer, parse_json, read_checked};

/// The JSON Schema (2020-12) of the workflow definition format, as shipped.
pub const WORKFLOW_META_SCHEMA: &str = include_str!("../../schema/workflow.schema.json");

/// Reads a workflow definition from JSON text and runs its structural checks.
/// `source_name` (a path, or `<stdin>`) is used in error messages.
pub fn parse_definition(source_name: &str, text: &str, limits: &Limits) -> Result<WorkflowDefinition, DocumentError> {
    let value = parse_json(source_name, text, limits)?;
    WorkflowDefinition::from_json_value(source_name, &value, Some(text))
}

impl WorkflowDefinition {
    /// Reads a definition from an already parsed value: the meta-schema, the
    /// typed model, then [`structural_problems`]. `text`, when given, is the
    /// value's source and is used to give line and column.
    pub fn from_json_value(source_name: &str, value: &Value, text: Option<&str>) -> Result<Self, DocumentError> {
        let definition: Self = read_checked(source_name, value, text, meta_schema())?;
        let mut problems = structural_problems(&definition);
        if problems.is_empty() {
            return Ok(definition);
        }
        if let Some(text) = text {
            for problem in &mut problems {
                problem.position = Some(locate_nearest(text, &problem.pointer));
            }
            problems.sort_by(|a, b| a.position.cmp(&b.position).then(a.pointer.cmp(&b.pointer)));
        }
        Err(DocumentError::Invalid {
            source_name: source_name.to_owned(),
            problems,
        })
    }
}

/// The compiled definition meta-schema, built once.
fn meta_schema() -> Result<&'static MetaSchema, String> {
    static META: OnceLock<Result<MetaSchema, String>> = OnceLock::new();
    META.get_or_init(|| {
        MetaSchema::compile(
            WORKFLOW_META_SCHEMA,
            "workflow",
            "the workflow format in contracts/schema/workflow.schema.json",
        )
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Where a step stands in a definition.
#[derive(Debug, Clone)]
pub(crate) struct Placement<'a> {
    /// The step.
    pub(crate) step: &'a Step,
    /// Its JSON pointer, such as `/steps/2/parallel/branch-a/0`.
    pub(crate) pointer: String,
    /// The choice cases and parallel branches that hold it, outermost first.
    pub(crate) branches: Vec<Branch<'a>>,
}

/// One choice case or parallel branch around a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Branch<'a> {
    /// The id of the choice or parallel step.
    pub(crate) container: &'a str,
    /// A parallel branch (all run) rather than a choice case (one runs).
    pub(crate) parallel: bool,
    /// `case 0`, `default`, or the parallel branch's name.
    pub(crate) label: String,
}

/// Every step of the definition with its place, depth first in document order.
pub(crate) fn placements(definition: &WorkflowDefinition) -> Vec<Placement<'_>> {
    fn walk<'a>(steps: &'a [Step], pointer: &str, branches: &[Branch<'a>], out: &mut Vec<Placement<'a>>) {
        for (index, step) in steps.iter().enumerate() {
            let here = format!("{pointer}/{index}");
            out.push(Placement {
                step,
                pointer: here.clone(),
                branches: branches.to_vec(),
            });
            let inner = |parallel, label: String| {
                let mut inner = branches.to_vec();
                inner.push(Branch {
                    container: &step.id,
                    parallel,
                    label,
                });
                inner
            };
            match &step.kind {
                StepKind::Call(_) => {}
                StepKind::Choice(choice) => {
                    for (case, body) in choice.choice.cases.iter().enumerate() {
                        let label = format!("case {case}");
                        walk(
                            &body.steps,
                            &format!("{here}/choice/cases/{case}/steps"),
                            &inner(false, label),
                            out,
                        );
                    }
                    let default = inner(false, "default".to_owned());
                    walk(&choice.choice.default, &format!("{here}/choice/default"), &default, out);
                }
                StepKind::Parallel(parallel) => {
                    for (name, branch) in &parallel.parallel {
                        let pointer = format!("{here}/parallel/{}", escape_pointer(name));
                        walk(branch, &pointer, &inner(true, name.clone()), out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&definition.steps, "/steps", &[], &mut out);
    out
}

/// Visits every string of a mapping with its pointer, without recursion.
fn for_each_string<'a>(mapping: &'a Value, pointer: &str, mut visit: impl FnMut(&'a str, &str)) {
    let mut pending: Vec<(String, &'a Value)> = vec![(pointer.to_owned(), mapping)];
    while let Some((pointer, value)) = pending.pop() {
        match value {
            Value::String(text) => visit(text, &pointer),
            Value::Object(members) => {
                for (name, member) in members.iter().rev() {
                    pending.push((format!("{pointer}/{}", escape_pointer(name)), member));
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    pending.push((format!("{pointer}/{index}"), item));
                }
            }
            _ => {}
        }
    }
}

/// The checks a definition must pass before any contract is looked at, each
/// problem with the pointer of the offending value (positions are left to
/// the caller, which has the text):
///
/// - the input schema is an object schema (`"type": "object"`);
/// - there is at least one step, every choice has a case, every parallel
///   step a branch and every case and branch a step;
/// - step ids are unique across the whole definition;
/// - every expression parses, and a `$steps/<id>` reference names a call
///   step that completed before on every path (`?` for one inside an
///   earlier choice, which may not have run).
pub fn structural_problems(definition: &WorkflowDefinition) -> Vec<Problem> {
    let placements = placements(definition);
    let mut checker = Checker {
        by_id: BTreeMap::new(),
        by_pointer: placements
            .iter()
            .map(|placement| (placement.pointer.as_str(), placement))
            .collect(),
        problems: Vec::new(),
    };
    if definition.input.get("type").and_then(Value::as_str) != Some("object") {
        checker.problem(
            "/input".to_owned(),
            "the input schema must be an object schema with \"type\": \"object\"; put the workflow's values in its properties"
                .to_owned(),
        );
    }
    if definition.steps.is_empty() {
        checker.problem("/steps".to_owned(), "a workflow needs at least one step".to_owned());
    }
    for placement in &placements {
        if let Some(first) = checker.by_id.get(placement.step.id.as_str()) {
            let message = format!(
                "step id {:?} is already used at {}; step ids are unique across the whole definition, nested steps included",
                placement.step.id, first.pointer
            );
            checker.problem(format!("{}/id", placement.pointer), message);
        } else {
            checker.by_id.insert(&placement.step.id, placement);
        }
        checker.check_not_empty(placement);
    }

    let mut available = Available::new();
    checker.check_steps(&definition.steps, "/steps", &mut available);
    if let Some(trigger) = &definition.trigger
        && let Some(input) = &trigger.input
    {
        checker.check_mapping(input, "/trigger/input", &Reader::Trigger, &Available::new());
    }
    if let Some(output) = &definition.output {
        checker.check_mapping(output, "/output", &Reader::Output, &available);
    }
    checker.problems
}

/// Whether a call step's output is there when a later step reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    /// It completed on every path to the reader.
    Always,
    /// It ran in a choice case that may not have been taken.
    Maybe,
}

type Available = BTreeMap<String, Availability>;

/// Who reads step outputs, for the rules and the messages.
enum Reader<'p, 'a> {
    /// A call step's input.
    Step(&'p Placement<'a>),
    /// A compensation's input: its own step's output may be read too.
    Compensation(&'p Placement<'a>),
    /// A choice's `on`.
    Choice(&'p Placement<'a>),
    /// The workflow's output, after every step.
    Output,
    /// The trigger's input, before any step.
    Trigger,
}

impl<'p, 'a> Reader<'p, 'a> {
    fn placement(&self) -> Option<&'p Placement<'a>> {
        match self {
            Self::Step(placement) | Self::Compensation(placement) | Self::Choice(placement) => Some(placement),
            Self::Output | Self::Trigger => None,
        }
    }
}

struct Checker<'p, 'a> {
    /// The first placement of each step id.
    by_id: BTreeMap<&'a str, &'p Placement<'a>>,
    /// Every placement by its pointer.
    by_pointer: BTreeMap<&'p str, &'p Placement<'a>>,
    problems: Vec<Problem>,
}

impl<'p, 'a> Checker<'p, 'a> {
    fn problem(&mut self, pointer: String, message: String) {
        self.problems.push(Problem {
            pointer,
            position: None,
            message,
        });
    }

    fn check_not_empty(&mut self, placement: &Placement<'_>) {
        let here = &placement.pointer;
        match &placement.step.kind {
            StepKind::Call(_) => {}
            StepKind::Choice(choice) => {
                if choice.choice.cases.is_empty() {
                    self.problem(
                        format!("{here}/choice/cases"),
                        "a choice needs at least one case; use the steps directly when there is nothing to choose"
                            .to_owned(),
                    );
                }
                for (index, case) in choice.choice.cases.iter().enumerate() {
                    if case.steps.is_empty() {
                        self.problem(
                            format!("{here}/choice/cases/{index}/steps"),
                            "a case needs at least one step".to_owned(),
                        );
                    }
                }
            }
            StepKind::Parallel(parallel) => {
                if parallel.parallel.is_empty() {
                    self.problem(
                        format!("{here}/parallel"),
                        "a parallel step needs at least one branch".to_owned(),
                    );
                }
                for (name, branch) in &parallel.parallel {
                    if branch.is_empty() {
                        self.problem(
                            format!("{here}/parallel/{}", escape_pointer(name)),
                            format!("branch {name:?} needs at least one step"),
                        );
                    }
                }
            }
        }
    }

    /// Checks the mappings of `steps` in order, adding each call step to
    /// `available` once it has run.
    fn check_steps(&mut self, steps: &[Step], pointer: &str, available: &mut Available) {
        for (index, step) in steps.iter().enumerate() {
            let here = format!("{pointer}/{index}");
            let Some(&placement) = self.by_pointer.get(here.as_str()) else {
                continue;
            };
            match &step.kind {
                StepKind::Call(call) => {
                    self.check_mapping(
                        &call.input,
                        &format!("{here}/input"),
                        &Reader::Step(placement),
                        available,
                    );
                    if let Some(compensation) = &call.compensate {
                        let mut with_own = available.clone();
                        with_own.insert(step.id.clone(), Availability::Always);
                        let reader = Reader::Compensation(placement);
                        self.check_mapping(
                            &compensation.input,
                            &format!("{here}/compensate/input"),
                            &reader,
                            &with_own,
                        );
                    }
                    available.insert(step.id.clone(), Availability::Always);
                }
                StepKind::Choice(choice) => {
                    let on = Mapping(Value::String(choice.choice.on.clone()));
                    let on_pointer = format!("{here}/choice/on");
                    if matches!(Template::parse(&choice.choice.on), Ok(Template::Literal(_))) {
                        self.problem(
                            on_pointer.clone(),
                            format!(
                                "{:?} is a literal, so the choice would always take the same case; choose on an expression such as $input/express",
                                choice.choice.on
                            ),
                        );
                    }
                    self.check_mapping(&on, &on_pointer, &Reader::Choice(placement), available);
                    let before = available.clone();
                    let bodies = choice
                        .choice
                        .cases
                        .iter()
                        .enumerate()
                        .map(|(case, body)| (format!("{here}/choice/cases/{case}/steps"), body.steps.as_slice()))
                        .chain([(format!("{here}/choice/default"), choice.choice.default.as_slice())]);
                    for (pointer, body) in bodies {
                        let mut inner = before.clone();
                        self.check_steps(body, &pointer, &mut inner);
                        // A case may not run: what it completed is there only maybe.
                        for id in inner.into_keys().filter(|id| !before.contains_key(id)) {
                            available.insert(id, Availability::Maybe);
                        }
                    }
                }
                StepKind::Parallel(parallel) => {
                    let before = available.clone();
                    for (name, branch) in &parallel.parallel {
                        // Each branch sees only what ran before the parallel step.
                        let mut inner = before.clone();
                        let pointer = format!("{here}/parallel/{}", escape_pointer(name));
                        self.check_steps(branch, &pointer, &mut inner);
                        // Every branch joins, so what each completed is there after.
                        for (id, availability) in inner {
                            available.entry(id).or_insert(availability);
                        }
                    }
                }
            }
        }
    }

    /// Checks every expression of a mapping: it parses, and the steps it
    /// reads have run.
    fn check_mapping(&mut self, mapping: &Mapping, pointer: &str, reader: &Reader<'p, 'a>, available: &Available) {
        let mut found: Vec<(String, String)> = Vec::new();
        for_each_string(&mapping.0, pointer, |text, at| match Template::parse(text) {
            Err(message) => found.push((at.to_owned(), message)),
            Ok(Template::Literal(_)) => {}
            Ok(Template::Expression { expression, optional }) => {
                if let Expression::Step { step, .. } = &expression
                    && let Some(message) = self.reference_problem(step, optional, reader, available)
                {
                    found.push((at.to_owned(), format!("{text}: {message}")));
                }
            }
        });
        for (at, message) in found {
            self.problem(at, message);
        }
    }

    /// Why `$steps/<id>` may not be read here, if it may not.
    fn reference_problem(
        &self,
        id: &str,
        optional: bool,
        reader: &Reader<'p, 'a>,
        available: &Available,
    ) -> Option<String> {
        if matches!(reader, Reader::Trigger) {
            return Some(
                "the trigger's input is mapped before any step runs; it reads only $input (the event's payload) and $instance"
                    .to_owned(),
            );
        }
        let reading = reader.placement();
        match available.get(id) {
            Some(Availability::Always) => return None,
            Some(Availability::Maybe) if optional => return None,
            Some(Availability::Maybe) => {
                let target = self.by_id.get(id)?;
                let reader_branches = reading
                    .map(|placement| placement.branches.as_slice())
                    .unwrap_or_default();
                let choice = target
                    .branches
                    .iter()
                    .find(|branch| !branch.parallel && !reader_branches.contains(branch))
                    .map_or("", |branch| branch.container);
                return Some(format!(
                    "step {id:?} runs inside choice {choice:?}, whose case holding it may not have been taken; end the expression with '?' so a missing value is allowed"
                ));
            }
            None => {}
        }
        let Some(target) = self.by_id.get(id) else {
            let calls: Vec<&str> = self
                .by_id
                .values()
                .filter(|placement| matches!(placement.step.kind, StepKind::Call(_)))
                .map(|placement| placement.step.id.as_str())
                .collect();
            return Some(format!(
                "no step has the id {id:?}; the call steps are: {}",
                calls.join(", ")
            ));
        };
        match &target.step.kind {
            StepKind::Call(_) => {}
            StepKind::Choice(_) | StepKind::Parallel(_) => {
                let kind = if matches!(target.step.kind, StepKind::Choice(_)) {
                    "choice"
                } else {
                    "parallel"
                };
                return Some(format!(
                    "step {id:?} is a {kind} step, which has no output; read one of the call steps inside it"
                ));
            }
        }
        let Some(reading) = reading else {
            // The output reads after every step: every call step is available.
            return None;
        };
        if reading.step.id == id {
            return Some("a step cannot read its own output; only its compensation can".to_owned());
        }
        let shared = reading
            .branches
            .iter()
            .zip(&target.branches)
            .take_while(|(a, b)| a == b)
            .count();
        if let (Some(mine), Some(theirs)) = (reading.branches.get(shared), target.branches.get(shared))
            && mine.container == theirs.container
        {
            return Some(if mine.parallel {
                format!(
                    "step {id:?} runs in branch {:?} of parallel step {:?}, beside this step's branch {:?}; branches run side by side, so read it after {:?}",
                    theirs.label, mine.container, mine.label, mine.container
                )
            } else {
                format!(
                    "step {id:?} is in {} of choice {:?} and this step in {}; only one of them runs",
                    theirs.label, mine.container, mine.label
                )
            });
        }
        Some(format!(
            "step {id:?} does not complete before this one; a step reads only call steps that come earlier in its own list or in a list around it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::locate::Position;

    /// A definition with a call, a choice and a parallel step.
    fn valid() -> Value {
        json!({
            "workflow": "soabus/workflow/v1",
            "name": "fulfilment",
            "version": "1.0.0",
            "description": "Reserve, charge, then ship and notify side by side",
            "owner": "fulfilment-team",
            "domain": "shop",
            "tags": ["shop"],
            "input": {
                "type": "object",
                "required": ["order_id", "express"],
                "properties": {
                    "order_id": {"type": "string"},
                    "express": {"type": "boolean"},
                    "coupon": {"$ref": "#/$defs/Coupon"}
                }
            },
            "$defs": {"Coupon": {"type": "string"}},
            "steps": [
                {
                    "id": "reserve",
                    "call": "inventory@1#reserve",
                    "input": {"order_id": "$input/order_id", "items": [{"sku": "A", "quantity": 1}]},
                    "timeout": "2s",
                    "retry": {"attempts": 3, "initial_interval": "100ms", "multiplier": 2, "max_interval": "1s", "jitter": 0.2, "retryable": ["UNAVAILABLE", "TIMEOUT"]},
                    "compensate": {"call": "inventory@1#release", "input": {"order_id": "$steps/reserve/order_id"}, "timeout": "2s"}
                },
                {
                    "id": "route",
                    "choice": {
                        "on": "$input/express",
                        "cases": [{"equals": true, "steps": [
                            {"id": "express", "call": "shipping@1#schedule", "input": {"order_id": "$input/order_id", "items": "$steps/reserve/items"}, "timeout": "1s"}
                        ]}],
                        "default": [
                            {"id": "standard", "call": "shipping@1#schedule", "input": {"order_id": "$input/order_id", "items": "$steps/reserve/items"}, "timeout": "5s"}
                        ]
                    }
                },
                {
                    "id": "both",
                    "parallel": {
                        "branch-a": [{"id": "notify", "call": "notifications@1#send", "input": {"order_id": "$input/order_id", "shipment": "$steps/express/shipment_id?"}, "timeout": "2s"}],
                        "branch-b": [{"id": "charge", "call": "payments@1#charge", "input": {"order_id": "$input/order_id"}, "timeout": "2s"}]
                    }
                },
                {"id": "last", "call": "notifications@1#list", "input": {"order_id": "$steps/charge/order_id", "n": "$steps/notify/notification_id"}, "timeout": "2s"}
            ],
            "output": {"reservation": "$steps/reserve/reservation_id", "shipment": "$steps/standard/shipment_id?"}
        })
    }

    fn parse(value: &Value) -> Result<WorkflowDefinition, DocumentError> {
        let text = serde_json::to_string_pretty(value).unwrap();
        parse_definition("fulfilment.json", &text, &Limits::default())
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> Value {
        let mut value = valid();
        edit(&mut value);
        value
    }

    /// The problems of an edited definition, as (pointer, message).
    fn problems_of(edit: impl FnOnce(&mut Value)) -> Vec<(String, String)> {
        let error = parse(&edited(edit)).unwrap_err();
        let DocumentError::Invalid { problems, .. } = &error else {
            panic!("{error:?}")
        };
        problems
            .iter()
            .map(|problem| (problem.pointer.clone(), problem.message.clone()))
            .collect()
    }

    /// Asserts one problem at `pointer` whose message holds `words`.
    #[track_caller]
    fn check(edit: impl FnOnce(&mut Value), pointer: &str, words: &str) {
        let problems = problems_of(edit);
        assert!(
            problems
                .iter()
                .any(|(at, message)| at == pointer && message.contains(words)),
            "wanted {words:?} at {pointer}, got {problems:#?}"
        );
    }

    #[test]
    fn a_definition_with_a_call_a_choice_and_a_parallel_step_parses() {
        let definition = parse(&valid()).unwrap();
        assert_eq!(definition.id(), "fulfilment@1.0.0");
        assert_eq!(definition.steps.len(), 4);
        let StepKind::Call(reserve) = &definition.steps[0].kind else {
            panic!("{:?}", definition.steps[0])
        };
        assert_eq!(reserve.call.to_string(), "inventory@1#reserve");
        assert_eq!(reserve.retry.attempts, 3);
        assert_eq!(reserve.retry.max_interval.to_string(), "1s");
        assert!(matches!(definition.steps[1].kind, StepKind::Choice(_)));
        assert!(matches!(definition.steps[2].kind, StepKind::Parallel(_)));
        let ids: Vec<&str> = definition.all_steps().iter().map(|step| step.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "reserve", "route", "express", "standard", "both", "notify", "charge", "last"
            ]
        );
        // What is written (and stored) reads back the same, checks included.
        let again = WorkflowDefinition::from_json_value("stored", &definition.to_value(), None).unwrap();
        assert_eq!(again, definition);
        assert_eq!(again.digest(), definition.digest());
    }

    #[test]
    fn a_call_step_defaults_its_retry_policy() {
        let definition = parse(&edited(|value| {
            value["steps"][0].as_object_mut().unwrap().remove("retry");
        }))
        .unwrap();
        let StepKind::Call(reserve) = &definition.steps[0].kind else {
            panic!()
        };
        assert_eq!(reserve.retry, Default::default());
    }

    #[test]
    fn unknown_fields_point_at_themselves_with_line_and_column() {
        let value = edited(|value| value["steps"][0]["timout"] = json!("2s"));
        let text = serde_json::to_string_pretty(&value).unwrap();
        let error = parse_definition("fulfilment.json", &text, &Limits::default()).unwrap_err();
        let DocumentError::Invalid { problems, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(problems.len(), 1, "{error}");
        assert_eq!(problems[0].pointer, "/steps/0/timout");
        assert!(problems[0].message.contains("unknown field \"timout\""), "{error}");
        assert!(problems[0].message.contains("workflow.schema.json"), "{error}");
        let Position { line, .. } = problems[0].position.unwrap();
        assert!(text.lines().nth(line - 1).unwrap().contains("\"timout\""));
        assert!(error.to_string().starts_with("fulfilment.json: "), "{error}");
    }

    #[test]
    fn a_call_step_needs_a_timeout() {
        check(
            |value| {
                value["steps"][0].as_object_mut().unwrap().remove("timeout");
            },
            "/steps/0",
            "\"timeout\" is a required property when \"call\" is given",
        );
    }

    #[test]
    fn a_step_does_exactly_one_thing() {
        check(
            |value| {
                value["steps"][0].as_object_mut().unwrap().remove("call");
            },
            "/steps/0",
            "exactly one of \"call\"",
        );
        check(
            |value| {
                value["steps"][1]["parallel"] =
                    json!({"a": [{"id": "x", "call": "a@1#b", "input": {}, "timeout": "1s"}]})
            },
            "/steps/1/parallel",
            "\"parallel\" cannot be used together with \"choice\"",
        );
        check(
            |value| value["steps"][1]["timeout"] = json!("1s"),
            "/steps/1/timeout",
            "cannot be used together with \"choice\"",
        );
    }

    #[test]
    fn bad_durations_and_numbers_are_refused_where_they_stand() {
        check(
            |value| value["steps"][0]["timeout"] = json!("2 sec"),
            "/steps/0/timeout",
            "expected a whole number and a unit",
        );
        check(
            |value| value["steps"][0]["retry"]["attempts"] = json!(0),
            "/steps/0/retry/attempts",
            "less than the minimum",
        );
        check(
            |value| value["steps"][0]["retry"]["jitter"] = json!(1.5),
            "/steps/0/retry/jitter",
            "greater than the maximum",
        );
        check(
            |value| value["steps"][0]["retry"]["multiplier"] = json!(0.5),
            "/steps/0/retry/multiplier",
            "less than the minimum",
        );
        check(
            |value| value["steps"][0]["id"] = json!("Reserve"),
            "/steps/0/id",
            "expected a step id",
        );
        check(
            |value| value["steps"][0]["call"] = json!("inventory#reserve"),
            "/steps/0/call",
            "expected service@major#name",
        );
    }

    #[test]
    fn step_ids_are_unique_across_the_definition() {
        check(
            |value| value["steps"][2]["parallel"]["branch-b"][0]["id"] = json!("reserve"),
            "/steps/2/parallel/branch-b/0/id",
            "step id \"reserve\" is already used at /steps/0",
        );
    }

    #[test]
    fn expressions_must_parse() {
        check(
            |value| value["steps"][0]["input"]["order_id"] = json!("$inputs/x"),
            "/steps/0/input/order_id",
            "is not an expression",
        );
        check(
            |value| value["output"] = json!({"a": ["$steps/"]}),
            "/output/a/0",
            "names no step",
        );
        check(
            |value| value["steps"][1]["choice"]["on"] = json!("$instanc"),
            "/steps/1/choice/on",
            "is not an expression",
        );
    }

    #[test]
    fn a_step_reads_only_steps_that_ran_before_it() {
        check(
            |value| value["steps"][0]["input"]["order_id"] = json!("$steps/charge/order_id"),
            "/steps/0/input/order_id",
            "step \"charge\" does not complete before this one",
        );
        check(
            |value| value["steps"][0]["input"]["order_id"] = json!("$steps/reserve/order_id"),
            "/steps/0/input/order_id",
            "cannot read its own output",
        );
        check(
            |value| value["steps"][0]["input"]["order_id"] = json!("$steps/nope/order_id"),
            "/steps/0/input/order_id",
            "no step has the id \"nope\"; the call steps are: charge, express, last, notify, reserve, standard",
        );
        check(
            |value| value["steps"][3]["input"]["order_id"] = json!("$steps/both"),
            "/steps/3/input/order_id",
            "is a parallel step, which has no output",
        );
    }

    #[test]
    fn a_sibling_parallel_branch_is_not_readable() {
        check(
            |value| value["steps"][2]["parallel"]["branch-b"][0]["input"]["x"] = json!("$steps/notify/order_id"),
            "/steps/2/parallel/branch-b/0/input/x",
            "runs in branch \"branch-a\" of parallel step \"both\", beside this step's branch \"branch-b\"",
        );
    }

    #[test]
    fn a_choice_case_step_needs_the_optional_form() {
        check(
            |value| value["steps"][3]["input"]["x"] = json!("$steps/express/shipment_id"),
            "/steps/3/input/x",
            "runs inside choice \"route\"",
        );
        check(
            |value| value["output"]["x"] = json!("$steps/standard/shipment_id"),
            "/output/x",
            "end the expression with '?'",
        );
        check(
            |value| {
                value["steps"][1]["choice"]["default"][0]["input"]["x"] = json!("$steps/express/shipment_id?");
            },
            "/steps/1/choice/default/0/input/x",
            "is in case 0 of choice \"route\" and this step in default",
        );
    }

    #[test]
    fn a_compensation_reads_its_own_step_and_the_trigger_reads_no_step() {
        check(
            |value| value["trigger"] = json!({"event": "orders@1#placed", "input": {"id": "$steps/reserve/order_id"}}),
            "/trigger/input/id",
            "before any step runs",
        );
        let problems = problems_of(|value| {
            value["steps"][0]["compensate"]["input"]["order_id"] = json!("$steps/charge/order_id");
        });
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "/steps/0/compensate/input/order_id");
    }

    #[test]
    fn lists_are_not_empty_and_the_input_is_an_object() {
        check(|value| value["steps"] = json!([]), "/steps", "less than 1 item");
        check(
            |value| value["steps"][1]["choice"]["cases"] = json!([]),
            "/steps/1/choice/cases",
            "less than 1 item",
        );
        check(
            |value| value["steps"][2]["parallel"] = json!({}),
            "/steps/2/parallel",
            "less than 1 propert",
        );
        check(
            |value| value["steps"][2]["parallel"]["branch-a"] = json!([]),
            "/steps/2/parallel/branch-a",
            "less than 1 item",
        );
        check(
            |value| value["input"] = json!({"$ref": "#/$defs/Coupon"}),
            "/input",
            "must be an object schema",
        );
    }

    #[test]
    fn structural_checks_hold_for_definitions_built_in_code() {
        let mut definition = parse(&valid()).unwrap();
        definition.steps[2] = Step {
            id: "both".to_owned(),
            kind: StepKind::Parallel(super::super::model::ParallelStep {
                parallel: BTreeMap::from([("a".to_owned(), Vec::new())]),
            }),
        };
        let problems = structural_problems(&definition);
        let pointers: Vec<&str> = problems.iter().map(|problem| problem.pointer.as_str()).collect();
        assert!(pointers.contains(&"/steps/2/parallel/a"), "{problems:?}");
        definition.steps.clear();
        let problems = structural_problems(&definition);
        assert!(
            problems.iter().any(|problem| problem.pointer == "/steps"),
            "{problems:?}"
        );
    }

    #[test]
    fn not_json_and_too_deep_are_refused_with_their_place() {
        let error = parse_definition("bad.json", "{\"workflow\": ", &Limits::default()).unwrap_err();
        assert!(matches!(error, DocumentError::Syntax { .. }), "{error:?}");
        assert!(error.to_string().starts_with("bad.json:1:"), "{error}");
        let deep = edited(|value| {
            let mut nested = json!(1);
            for _ in 0..80 {
                nested = json!([nested]);
            }
            value["output"] = nested;
        });
        let error = parse(&deep).unwrap_err();
        assert!(matches!(error, DocumentError::TooDeep { limit: 64, .. }), "{error:?}");
    }

    #[test]
    fn the_fixture_parses() {
        let text = include_str!("../../tests/data/workflows/fulfilment.v1.json");
        let definition = parse_definition("fulfilment.v1.json", text, &Limits::default()).unwrap();
        assert_eq!(definition.id(), "fulfilment@1.1.0");
        assert_eq!(definition.domain, "shop");
    }
}
