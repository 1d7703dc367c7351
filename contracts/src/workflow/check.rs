//! The load-time check of a workflow definition against the contracts it
//! calls: every operation and the trigger's event exist, and every mapping
//! fits the request it fills where that can be told from the schemas.
//!
//! The type check walks the target schema (the callee's request, local
//! `#/$defs` references followed, `allOf` taken as a conjunction) beside the
//! template, and derives a schema for each expression from where it reads
//! (the workflow input, a step's response, the trigger's payload). It
//! reports a definite mismatch as an error and whatever it cannot decide
//! (no `type` on a side, `anyOf`/`oneOf`, references into other contracts)
//! as a warning. It is not a schema-subsumption checker: value constraints
//! (lengths, ranges, patterns, formats) are left to validation at run time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::mapping::{Expression, Template};
use super::model::{StepKind, WorkflowDefinition};
use super::parse::placements;
use crate::document::{ContractDocument, Event, Operation};
use crate::locate::locate_nearest;
use crate::names::{ContractRef, MemberName, ServiceName};
use crate::parse::{Problem, escape_pointer};

/// What the check found: errors refuse the definition, warnings are worth
/// a look (a mapping the schemas are too loose to judge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Definite problems, each with its pointer into the definition.
    pub errors: Vec<Problem>,
    /// What could not be decided, each with its pointer.
    pub warnings: Vec<Problem>,
}

impl CheckOutcome {
    /// True when nothing refuses the definition.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The same outcome with the line and column of each problem in the
    /// definition's `text`.
    pub fn with_positions(mut self, text: &str) -> Self {
        for problem in self.errors.iter_mut().chain(self.warnings.iter_mut()) {
            problem.position = Some(locate_nearest(text, &problem.pointer));
        }
        self
    }
}

/// Checks a definition against the contracts of the services it calls.
/// `contracts` answers the contract document of a service's major version
/// (the registry's latest of that major), `None` when none is registered.
pub fn check_against_contracts(
    definition: &WorkflowDefinition,
    contracts: &dyn Fn(&ServiceName, u64) -> Option<ContractDocument>,
) -> CheckOutcome {
    let mut references = definition.called_operations();
    references.extend(definition.trigger.iter().map(|trigger| trigger.event.clone()));
    let mut loaded: BTreeMap<(ServiceName, u64), Option<Loaded>> = BTreeMap::new();
    for reference in references {
        loaded
            .entry((reference.service.clone(), reference.major))
            .or_insert_with(|| {
                contracts(&reference.service, reference.major).map(|document| Loaded {
                    root: document.to_value(),
                    document,
                })
            });
    }
    let input_root = json!({ "$defs": definition.defs });
    let instance = json!({ "type": "string" });
    let mut checker = Checker {
        definition,
        loaded: &loaded,
        instance: &instance,
        outcome: CheckOutcome::default(),
    };
    let workflow_input = Source {
        view: View::of(&definition.input, &input_root),
        label: "the workflow input".to_owned(),
    };
    checker.check_steps(&workflow_input);
    checker.check_trigger(&input_root);
    if let Some(output) = &definition.output {
        let site = Site {
            target: "the workflow's output".to_owned(),
            input: Some(workflow_input.clone()),
        };
        checker.check_template(&output.0, None, "/output", &site, 0);
    }
    checker.outcome
}

/// A contract document and the same as a value, which `$ref`s resolve in.
struct Loaded {
    document: ContractDocument,
    root: Value,
}

/// What an expression's schema is derived from, and its name in messages.
#[derive(Clone)]
struct Source<'a> {
    view: View<'a>,
    label: String,
}

/// Where a template is filled: what it fills and what `$input` reads.
struct Site<'a> {
    /// "the request of inventory@1#reserve".
    target: String,
    /// What `$input` reads.
    input: Option<Source<'a>>,
}

/// Whether a source value that can never be there is an error (a mapping
/// would fail every time) or a warning (a choice compares it with `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    Error,
    Warning,
}

struct Checker<'c> {
    definition: &'c WorkflowDefinition,
    loaded: &'c BTreeMap<(ServiceName, u64), Option<Loaded>>,
    instance: &'c Value,
    outcome: CheckOutcome,
}

impl<'c> Checker<'c> {
    fn error(&mut self, pointer: &str, message: String) {
        self.outcome.errors.push(Problem {
            pointer: pointer.to_owned(),
            position: None,
            message,
        });
    }

    fn warning(&mut self, pointer: &str, message: String) {
        self.outcome.warnings.push(Problem {
            pointer: pointer.to_owned(),
            position: None,
            message,
        });
    }

    /// The contract of a reference's service major, reporting at `pointer`
    /// when it is unknown (`None` reports nothing).
    fn contract(&mut self, reference: &ContractRef, pointer: Option<&str>) -> Option<&'c Loaded> {
        let loaded = self.loaded.get(&(reference.service.clone(), reference.major));
        match loaded {
            Some(Some(loaded)) => Some(loaded),
            _ => {
                if let Some(pointer) = pointer {
                    self.error(
                        pointer,
                        format!(
                            "unknown service {:?} major {}: no contract is registered for it; register it first or fix the reference",
                            reference.service.as_str(),
                            reference.major
                        ),
                    );
                }
                None
            }
        }
    }

    /// The operation a reference names, reporting at `pointer` when it
    /// does not exist.
    fn operation(&mut self, reference: &ContractRef, pointer: Option<&str>) -> Option<(&'c Loaded, &'c Operation)> {
        let loaded = self.contract(reference, pointer)?;
        let found = loaded.document.operations.get(&reference.member);
        if found.is_none()
            && let Some(pointer) = pointer
        {
            self.no_such_member(loaded, reference, pointer, true);
        }
        Some((loaded, found?))
    }

    /// The event a reference names, reporting at `pointer` when it does not exist.
    fn event(&mut self, reference: &ContractRef, pointer: &str) -> Option<(&'c Loaded, &'c Event)> {
        let loaded = self.contract(reference, Some(pointer))?;
        let found = loaded.document.events.get(&reference.member);
        if found.is_none() {
            self.no_such_member(loaded, reference, pointer, false);
        }
        Some((loaded, found?))
    }

    /// Reports a reference to an operation (or event) its contract lacks,
    /// listing the ones it has.
    fn no_such_member(&mut self, loaded: &Loaded, reference: &ContractRef, pointer: &str, operation: bool) {
        let document = &loaded.document;
        let (wanted, names, other) = if operation {
            let other = document
                .events
                .contains_key(&reference.member)
                .then_some("is an event: a step calls operations, a trigger starts on events");
            ("operation", names_of(&document.operations), other)
        } else {
            let other = document
                .operations
                .contains_key(&reference.member)
                .then_some("is an operation: a trigger starts on events");
            ("event", names_of(&document.events), other)
        };
        let member = reference.member.as_str();
        let also = other.map(|other| format!(" ({member:?} {other})")).unwrap_or_default();
        let message = format!(
            "{}@{} has no {wanted} {member:?}; it has: {}{also}",
            reference.service,
            reference.major,
            listed(names.into_iter())
        );
        self.error(pointer, message);
    }

    /// Every call step's and compensation's operation and request, and every
    /// choice's `on`.
    fn check_steps(&mut self, workflow_input: &Source<'c>) {
        for placement in placements(self.definition) {
            let here = &placement.pointer;
            match &placement.step.kind {
                StepKind::Call(call) => {
                    let calls = [(&call.call, &call.input, format!("{here}/call"), format!("{here}/input"))]
                        .into_iter()
                        .chain(call.compensate.iter().map(|compensation| {
                            (
                                &compensation.call,
                                &compensation.input,
                                format!("{here}/compensate/call"),
                                format!("{here}/compensate/input"),
                            )
                        }));
                    for (reference, input, call_pointer, input_pointer) in calls {
                        let Some((loaded, operation)) = self.operation(reference, Some(&call_pointer)) else {
                            continue;
                        };
                        let site = Site {
                            target: format!("the request of {reference}"),
                            input: Some(workflow_input.clone()),
                        };
                        let target = View::of(&operation.request, &loaded.root);
                        self.check_template(&input.0, Some(&target), &input_pointer, &site, 0);
                    }
                }
                StepKind::Choice(choice) => {
                    if let Ok(Template::Expression { expression, optional }) = Template::parse(&choice.choice.on) {
                        let site = Site {
                            target: "the choice".to_owned(),
                            input: Some(workflow_input.clone()),
                        };
                        let at = format!("{here}/choice/on");
                        self.source(&expression, &choice.choice.on, optional, &at, &site, Missing::Warning);
                    }
                }
                StepKind::Parallel(_) => {}
            }
        }
    }

    /// The trigger's event exists, and its input mapping (the payload itself
    /// when absent) fits the workflow's input schema.
    fn check_trigger(&mut self, input_root: &'c Value) {
        let Some(trigger) = &self.definition.trigger else {
            return;
        };
        let Some((loaded, event)) = self.event(&trigger.event, "/trigger/event") else {
            return;
        };
        let payload = Source {
            view: View::of(&event.payload, &loaded.root),
            label: format!("the payload of {}", trigger.event),
        };
        let target = View::of(&self.definition.input, input_root);
        let site = Site {
            target: "the workflow input".to_owned(),
            input: Some(payload.clone()),
        };
        match &trigger.input {
            Some(input) => self.check_template(&input.0, Some(&target), "/trigger/input", &site, 0),
            // The payload itself is the input.
            None => self.compare(&payload.view, &target, "/trigger/event", &payload.label, &site, 0),
        }
    }

    /// Checks a template against the schema it fills (`None`: anything).
    fn check_template(&mut self, template: &Value, target: Option<&View<'c>>, at: &str, site: &Site<'c>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match template {
            Value::String(text) => match Template::parse(text) {
                // The structural checks report expressions that do not parse.
                Err(_) => {}
                Ok(Template::Literal(literal)) => self.check_literal(&Value::String(literal), target, at, site),
                Ok(Template::Expression { expression, optional }) => {
                    let source = self.source(&expression, text, optional, at, site, Missing::Error);
                    if let (Some(source), Some(target)) = (source, target) {
                        self.compare(&source, target, at, text, site, 0);
                    }
                }
            },
            Value::Object(members) => {
                let Some(target) = target else {
                    for (name, member) in members {
                        let here = format!("{at}/{}", escape_pointer(name));
                        self.check_template(member, None, &here, site, depth + 1);
                    }
                    return;
                };
                if let Some(types) = target.types()
                    && !types.contains("object")
                {
                    let message = format!(
                        "type mismatch: {} expects {} here, but the template gives an object",
                        site.target,
                        describe_types(&types)
                    );
                    self.error(at, message);
                    return;
                }
                for (name, member) in members {
                    let here = format!("{at}/{}", escape_pointer(name));
                    match target.member(name) {
                        Member::Declared(view) => self.check_template(member, Some(&view), &here, site, depth + 1),
                        Member::Forbidden => {
                            let message = format!(
                                "{} does not allow {name:?} here; it allows: {}",
                                site.target,
                                listed(target.declared().into_iter())
                            );
                            self.error(&here, message);
                        }
                        Member::Open | Member::Undecided(_) => {
                            self.check_template(member, None, &here, site, depth + 1)
                        }
                    }
                }
                for required in target.required() {
                    match members.get(required) {
                        None => {
                            let message = format!(
                                "{} requires {required:?} here, and the template does not give it; add it",
                                site.target
                            );
                            self.error(at, message);
                        }
                        Some(Value::String(text))
                            if matches!(Template::parse(text), Ok(Template::Expression { optional: true, .. })) =>
                        {
                            let message = format!(
                                "{} requires {required:?}, but {text} may be missing, and then the call is refused",
                                site.target
                            );
                            self.warning(&format!("{at}/{}", escape_pointer(required)), message);
                        }
                        Some(_) => {}
                    }
                }
            }
            Value::Array(items) => {
                if let Some(types) = target.and_then(View::types)
                    && !types.contains("array")
                {
                    let message = format!(
                        "type mismatch: {} expects {} here, but the template gives an array",
                        site.target,
                        describe_types(&types)
                    );
                    self.error(at, message);
                    return;
                }
                for (index, item) in items.iter().enumerate() {
                    let item_target = target.and_then(|target| target.item(Some(index)));
                    self.check_template(item, item_target.as_ref(), &format!("{at}/{index}"), site, depth + 1);
                }
            }
            literal => self.check_literal(literal, target, at, site),
        }
    }

    /// A literal's JSON type (and value, against `enum` and `const`) must be
    /// one the target accepts.
    fn check_literal(&mut self, literal: &Value, target: Option<&View<'c>>, at: &str, site: &Site<'c>) {
        let Some(target) = target else { return };
        let kind = json_type(literal);
        if let Some(types) = target.types()
            && !fits(kind, &types)
        {
            let message = format!(
                "type mismatch: {} expects {} here, but the literal {literal} is {}",
                site.target,
                describe_types(&types),
                with_article(kind)
            );
            self.error(at, message);
            return;
        }
        for part in &target.parts {
            let refused = match (part.get("enum"), part.get("const")) {
                (Some(Value::Array(options)), _) if !options.contains(literal) => {
                    Some(format!("one of {}", Value::Array(options.clone())))
                }
                (_, Some(constant)) if constant != literal => Some(constant.to_string()),
                _ => None,
            };
            if let Some(expected) = refused {
                let message = format!("{} expects {expected} here, not {literal}", site.target);
                self.error(at, message);
                return;
            }
        }
    }

    /// The schema of what an expression reads, walking its pointer through
    /// the source's schema; `None` when nothing can be said of it (problems
    /// on the way are reported at `at`).
    fn source(
        &mut self,
        expression: &Expression,
        text: &str,
        optional: bool,
        at: &str,
        site: &Site<'c>,
        missing: Missing,
    ) -> Option<View<'c>> {
        let (mut view, label, pointer) = match expression {
            Expression::Instance => return Some(View::of(self.instance, self.instance)),
            Expression::Input { pointer } => {
                let source = site.input.clone()?;
                (source.view, source.label, pointer.as_str())
            }
            Expression::Step { step, pointer } => {
                let call = self.definition.call_step(step)?;
                // An unknown operation is reported where the step names it.
                let (loaded, operation) = self.operation(&call.call, None)?;
                let label = format!("the response of {} (step {step:?})", call.call);
                (View::of(&operation.response, &loaded.root), label, pointer.as_str())
            }
        };
        let never_there = if optional || missing == Missing::Warning {
            Missing::Warning
        } else {
            Missing::Error
        };
        let mut walked = String::new();
        let mut warned_optional = optional;
        for raw in pointer.split('/').skip(1) {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            let place = if walked.is_empty() {
                label.clone()
            } else {
                format!("{label} at {walked}")
            };
            let types = view.types();
            if let Some(types) = &types
                && !types.contains("object")
                && !types.contains("array")
            {
                let message = format!("{text}: {place} is {}, so it has no {segment:?}", describe_types(types));
                self.report(never_there, at, message);
                return None;
            }
            if types.as_ref().is_some_and(|types| !types.contains("object")) {
                let Ok(index) = segment.parse::<usize>() else {
                    let message = format!("{text}: {place} is an array, so {segment:?} is not an index into it");
                    self.report(never_there, at, message);
                    return None;
                };
                view = view.item(Some(index))?;
            } else {
                match view.member(&segment) {
                    Member::Declared(member) => {
                        if !warned_optional && !view.required().contains(segment.as_str()) {
                            warned_optional = true;
                            let message = format!(
                                "{text}: {place} does not require {segment:?}; end the expression with '?' if it may be missing"
                            );
                            self.warning(at, message);
                        }
                        view = member;
                    }
                    Member::Forbidden => {
                        let message = format!(
                            "{text}: {place} has no {segment:?}; it has: {}",
                            listed(view.declared().into_iter())
                        );
                        self.report(never_there, at, message);
                        return None;
                    }
                    Member::Open => {
                        let message =
                            format!("{text}: cannot check what this reads: {place} does not declare {segment:?}");
                        self.warning(at, message);
                        return None;
                    }
                    Member::Undecided(reason) => {
                        let message = format!("{text}: cannot check what this reads: {place} {reason}");
                        self.warning(at, message);
                        return None;
                    }
                }
            }
            walked.push('/');
            walked.push_str(raw);
        }
        Some(view)
    }

    fn report(&mut self, missing: Missing, at: &str, message: String) {
        match missing {
            Missing::Error => self.error(at, message),
            Missing::Warning => self.warning(at, message),
        }
    }

    /// Compares what an expression reads with what the target accepts:
    /// types, then the members of objects and the items of arrays.
    fn compare(&mut self, source: &View<'c>, target: &View<'c>, at: &str, what: &str, site: &Site<'c>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let source_types = source.types();
        let target_types = target.types();
        match (&source_types, &target_types) {
            (_, None) => {
                if let Some(reason) = target.undecided() {
                    let message = format!("cannot check {what} against {} here: it {reason}", site.target);
                    self.warning(at, message);
                    return;
                }
            }
            (None, Some(expected)) => {
                let reason = source.undecided().unwrap_or("declares no type");
                let message = format!(
                    "cannot tell whether {what} is {}, as {} expects here: its schema {reason}",
                    describe_types(expected),
                    site.target
                );
                self.warning(at, message);
                return;
            }
            (Some(found), Some(expected)) => {
                let (fitting, other): (BTreeSet<&str>, BTreeSet<&str>) =
                    found.iter().partition(|kind| fits(kind, expected));
                // A number may be whole: that an integer is wanted cannot be told.
                let (partly, other): (BTreeSet<&str>, BTreeSet<&str>) = other
                    .into_iter()
                    .partition(|kind| *kind == "number" && expected.contains("integer"));
                if !partly.is_empty() {
                    let message = format!(
                        "{what} is a number, and {} expects an integer here: it is refused when it is not whole",
                        site.target
                    );
                    self.warning(at, message);
                }
                if fitting.is_empty() && partly.is_empty() {
                    if !found.is_empty() {
                        let message = format!(
                            "type mismatch: {} expects {} here, but {what} is {}",
                            site.target,
                            describe_types(expected),
                            describe_types(found)
                        );
                        self.error(at, message);
                    }
                    return;
                }
                if !other.is_empty() {
                    let message = format!(
                        "{what} may be {}, which {} does not accept here",
                        describe_types(&other),
                        site.target
                    );
                    self.warning(at, message);
                }
            }
        }
        let both = |kind: &str| {
            source_types.as_ref().is_some_and(|types| types.contains(kind))
                && target_types.as_ref().is_none_or(|types| types.contains(kind))
        };
        if both("object") {
            self.compare_members(source, target, at, what, site, depth);
        }
        if both("array")
            && let (Some(source_item), Some(target_item)) = (source.item(None), target.item(None))
        {
            let items = items_of(what);
            self.compare(&source_item, &target_item, at, &items, site, depth + 1);
        }
    }

    fn compare_members(
        &mut self,
        source: &View<'c>,
        target: &View<'c>,
        at: &str,
        what: &str,
        site: &Site<'c>,
        depth: usize,
    ) {
        let source_required = source.required();
        for name in target.required() {
            let message = match source.member(name) {
                Member::Declared(_) if source_required.contains(name) => continue,
                Member::Declared(_) => format!(
                    "{} requires {name:?} here, and {what} may lack it (its schema does not require it)",
                    site.target
                ),
                Member::Forbidden => {
                    let message = format!("{} requires {name:?} here, but {what} never has it", site.target);
                    self.error(at, message);
                    continue;
                }
                Member::Open | Member::Undecided(_) => format!(
                    "cannot tell whether {what} has {name:?}, which {} requires here",
                    site.target
                ),
            };
            self.warning(at, message);
        }
        for name in source.declared() {
            match (source.member(name), target.member(name)) {
                (_, Member::Forbidden) if source_required.contains(name) => {
                    let message = format!("{what} has {name:?}, which {} does not allow here", site.target);
                    self.error(at, message);
                }
                (_, Member::Forbidden) => {
                    let message = format!("{what} may have {name:?}, which {} does not allow here", site.target);
                    self.warning(at, message);
                }
                (Member::Declared(source_member), Member::Declared(target_member)) => {
                    let inner = member_of(what, name);
                    self.compare(&source_member, &target_member, at, &inner, site, depth + 1);
                }
                _ => {}
            }
        }
    }
}

/// How deep templates and schemas are followed; definitions are far shallower.
const MAX_DEPTH: usize = 32;

/// How many `$ref`s and `allOf` members one view follows, so a cycle ends.
const MAX_PARTS: usize = 64;

/// A schema seen as the conjunction of its parts: the schema itself, what
/// its local `$ref` points to, and its `allOf` members, followed transitively.
#[derive(Debug, Clone)]
struct View<'a> {
    root: &'a Value,
    parts: Vec<&'a Map<String, Value>>,
    /// A `false` schema is among the parts: nothing is accepted.
    never: bool,
    /// Why the parts may not say everything (`anyOf`, references elsewhere).
    undecided: Vec<String>,
}

/// What a schema says of one object member.
enum Member<'a> {
    /// Its schema (the conjunction of every part's say).
    Declared(View<'a>),
    /// A closed part refuses it.
    Forbidden,
    /// Nothing declares or refuses it.
    Open,
    /// It cannot be told, and why.
    Undecided(String),
}

impl<'a> View<'a> {
    fn of(schema: &'a Value, root: &'a Value) -> Self {
        Self::of_all([schema], root)
    }

    fn of_all(schemas: impl IntoIterator<Item = &'a Value>, root: &'a Value) -> Self {
        let mut view = Self {
            root,
            parts: Vec::new(),
            never: false,
            undecided: Vec::new(),
        };
        let mut pending: Vec<&'a Value> = schemas.into_iter().collect();
        while let Some(schema) = pending.pop() {
            match schema {
                Value::Bool(false) => view.never = true,
                Value::Object(object) => {
                    if view.parts.len() >= MAX_PARTS || view.parts.iter().any(|part| std::ptr::eq(*part, object)) {
                        continue;
                    }
                    view.parts.push(object);
                    if let Some(Value::String(reference)) = object.get("$ref") {
                        match resolve_local(reference, root) {
                            Ok(target) => pending.push(target),
                            Err(reason) => view.undecided.push(reason),
                        }
                    }
                    if let Some(Value::Array(members)) = object.get("allOf") {
                        pending.extend(members);
                    }
                    for keyword in ["anyOf", "oneOf"] {
                        if object.contains_key(keyword) {
                            view.undecided.push(format!("is a choice of schemas ({keyword})"));
                        }
                    }
                }
                _ => {}
            }
        }
        view
    }

    fn undecided(&self) -> Option<&str> {
        self.undecided.first().map(String::as_str)
    }

    /// The JSON types every part allows (`integer` within `number`); `None`
    /// when no part says.
    fn types(&self) -> Option<BTreeSet<&'static str>> {
        let mut types: Option<BTreeSet<&'static str>> = None;
        let mut narrow = |allowed: BTreeSet<&'static str>| {
            types = Some(match types.take() {
                None => allowed,
                Some(so_far) => intersect(&so_far, &allowed),
            });
        };
        for part in &self.parts {
            match part.get("type") {
                Some(Value::String(name)) => narrow(type_name(name).into_iter().collect()),
                Some(Value::Array(names)) => {
                    narrow(names.iter().filter_map(Value::as_str).filter_map(type_name).collect())
                }
                _ => {}
            }
            if let Some(constant) = part.get("const") {
                narrow(BTreeSet::from([json_type(constant)]));
            }
            if let Some(Value::Array(options)) = part.get("enum") {
                narrow(options.iter().map(json_type).collect());
            }
        }
        if self.never {
            return Some(BTreeSet::new());
        }
        types
    }

    fn member(&self, name: &str) -> Member<'a> {
        let mut schemas: Vec<&'a Value> = Vec::new();
        let mut forbidden = false;
        for part in &self.parts {
            if let Some(schema) = part.get("properties").and_then(|properties| properties.get(name)) {
                schemas.push(schema);
                continue;
            }
            let mut matched = false;
            if let Some(Value::Object(patterns)) = part.get("patternProperties") {
                for (pattern, schema) in patterns {
                    match regex::Regex::new(pattern) {
                        Ok(regex) if regex.is_match(name) => {
                            schemas.push(schema);
                            matched = true;
                        }
                        Ok(_) => {}
                        Err(_) => return Member::Undecided(format!("has a pattern it cannot read ({pattern:?})")),
                    }
                }
            }
            if matched {
                continue;
            }
            match part.get("additionalProperties") {
                Some(Value::Bool(false)) => forbidden = true,
                Some(schema @ Value::Object(_)) => schemas.push(schema),
                _ => {}
            }
        }
        if forbidden {
            return Member::Forbidden;
        }
        if schemas.is_empty() {
            return match self.undecided() {
                Some(reason) => Member::Undecided(reason.to_owned()),
                None => Member::Open,
            };
        }
        let view = Self::of_all(schemas, self.root);
        if view.never {
            Member::Forbidden
        } else {
            Member::Declared(view)
        }
    }

    fn required(&self) -> BTreeSet<&'a str> {
        self.parts
            .iter()
            .filter_map(|part| part.get("required").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    fn declared(&self) -> BTreeSet<&'a str> {
        self.parts
            .iter()
            .filter_map(|part| part.get("properties").and_then(Value::as_object))
            .flat_map(|properties| properties.keys().map(String::as_str))
            .collect()
    }

    /// The schema of the item at `index` (`None`: any item); `None` when
    /// nothing constrains it.
    fn item(&self, index: Option<usize>) -> Option<Self> {
        let mut schemas: Vec<&'a Value> = Vec::new();
        for part in &self.parts {
            let prefix = part.get("prefixItems").and_then(Value::as_array);
            match (index, prefix) {
                (Some(index), Some(prefix)) if index < prefix.len() => {
                    schemas.extend(prefix.get(index));
                    continue;
                }
                // Any item may be one of the prefix's: too loose to say.
                (None, Some(_)) => return None,
                _ => {}
            }
            if let Some(items) = part.get("items").filter(|items| !items.is_array()) {
                schemas.push(items);
            }
        }
        (!schemas.is_empty()).then(|| Self::of_all(schemas, self.root))
    }
}

/// The schema a local reference (`#/$defs/Money`) points to in `root`, or
/// why it is not followed.
fn resolve_local<'a>(reference: &str, root: &'a Value) -> Result<&'a Value, String> {
    let Some(fragment) = reference.strip_prefix('#') else {
        return Err(format!(
            "refers to {reference}, in another document, which this check does not follow"
        ));
    };
    let pointer = if fragment.contains('%') {
        crate::schema::percent_decode(fragment)
    } else {
        fragment.to_owned()
    };
    root.pointer(&pointer)
        .ok_or_else(|| format!("refers to {reference}, which does not exist"))
}

/// The JSON Schema type names, as static strings.
fn type_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "null" => "null",
        "boolean" => "boolean",
        "object" => "object",
        "array" => "array",
        "number" => "number",
        "string" => "string",
        "integer" => "integer",
        _ => return None,
    })
}

/// The JSON Schema type of a value; a whole number is an `integer`.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(number) if number.as_f64().is_some_and(|float| float.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
    }
}

/// True when a value of type `kind` is accepted by `allowed` (an integer is
/// a number).
fn fits(kind: &str, allowed: &BTreeSet<&str>) -> bool {
    allowed.contains(kind) || (kind == "integer" && allowed.contains("number"))
}

/// The types both sets allow (`integer` is what `number` and `integer` share).
fn intersect(a: &BTreeSet<&'static str>, b: &BTreeSet<&'static str>) -> BTreeSet<&'static str> {
    let mut both: BTreeSet<&'static str> = a.intersection(b).copied().collect();
    if (a.contains("integer") && b.contains("number")) || (a.contains("number") && b.contains("integer")) {
        both.insert("integer");
    }
    both
}

/// How a member of what an expression reads is named: `$input/total/currency`,
/// or `"currency" of the payload of orders@1#placed`.
fn member_of(what: &str, name: &str) -> String {
    if what.starts_with('$') {
        format!("{what}/{}", escape_pointer(name))
    } else {
        format!("{name:?} of {what}")
    }
}

/// How the items of what an expression reads are named: `$input/items/*`.
fn items_of(what: &str) -> String {
    if what.starts_with('$') {
        format!("{what}/*")
    } else {
        format!("the items of {what}")
    }
}

fn with_article(kind: &str) -> String {
    match kind {
        "object" | "array" | "integer" => format!("an {kind}"),
        "null" => "null".to_owned(),
        other => format!("a {other}"),
    }
}

/// "a string", "an object or null".
fn describe_types<S: AsRef<str>>(types: &BTreeSet<S>) -> String {
    if types.is_empty() {
        return "nothing (its schema accepts no value)".to_owned();
    }
    let named: Vec<String> = types.iter().map(|kind| with_article(kind.as_ref())).collect();
    named.join(" or ")
}

fn names_of<T>(members: &BTreeMap<MemberName, T>) -> Vec<&str> {
    members.keys().map(MemberName::as_str).collect()
}

fn listed<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Limits;
    use crate::workflow::parse::parse_definition;

    const FULFILMENT: &str = include_str!("../../tests/data/workflows/fulfilment.v1.json");

    fn shop() -> Vec<ContractDocument> {
        crate::catalog::documents().unwrap()
    }

    fn fulfilment() -> Value {
        serde_json::from_str(FULFILMENT).unwrap()
    }

    /// Parses (with the structural checks) and checks against the shop.
    fn outcome_of(value: &Value) -> CheckOutcome {
        let text = serde_json::to_string_pretty(value).unwrap();
        let definition = parse_definition("fulfilment.json", &text, &Limits::default()).unwrap();
        let documents = shop();
        let lookup = |service: &ServiceName, major: u64| {
            documents
                .iter()
                .find(|document| &document.service == service && document.version.major() == major)
                .cloned()
        };
        check_against_contracts(&definition, &lookup).with_positions(&text)
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> CheckOutcome {
        let mut value = fulfilment();
        edit(&mut value);
        outcome_of(&value)
    }

    #[track_caller]
    fn has(problems: &[Problem], pointer: &str, words: &str) {
        assert!(
            problems
                .iter()
                .any(|problem| problem.pointer == pointer && problem.message.contains(words)),
            "wanted {words:?} at {pointer}, got {problems:#?}"
        );
    }

    #[test]
    fn the_fulfilment_fixture_fits_the_shop_contracts() {
        let outcome = outcome_of(&fulfilment());
        assert_eq!(outcome, CheckOutcome::default());
        assert!(outcome.is_ok());
    }

    #[test]
    fn an_unknown_operation_lists_the_ones_there_are() {
        let outcome = edited(|value| value["steps"][0]["call"] = json!("inventory@1#reserv"));
        assert_eq!(outcome.errors.len(), 1, "{outcome:#?}");
        assert_eq!(outcome.errors[0].pointer, "/steps/0/call");
        assert_eq!(
            outcome.errors[0].message,
            "inventory@1 has no operation \"reserv\"; it has: release, reserve, stock"
        );
        assert!(outcome.errors[0].position.is_some());
        let outcome = edited(|value| value["steps"][0]["compensate"]["call"] = json!("inventory@1#reserved"));
        has(&outcome.errors, "/steps/0/compensate/call", "\"reserved\" is an event");
    }

    #[test]
    fn an_unknown_service_says_to_register_it() {
        let outcome = edited(|value| value["steps"][0]["call"] = json!("invntory@1#reserve"));
        has(
            &outcome.errors,
            "/steps/0/call",
            "unknown service \"invntory\" major 1: no contract is registered for it; register it first or fix the reference",
        );
        let outcome = edited(|value| value["steps"][1]["call"] = json!("payments@2#charge"));
        has(&outcome.errors, "/steps/1/call", "unknown service \"payments\" major 2");
    }

    #[test]
    fn a_type_mismatch_names_both_sides() {
        let outcome = edited(|value| value["steps"][1]["input"]["amount"] = json!("$input/order_id"));
        has(
            &outcome.errors,
            "/steps/1/input/amount",
            "type mismatch: the request of payments@1#charge expects an object here, but $input/order_id is a string",
        );
        let outcome = edited(|value| value["steps"][0]["input"]["order_id"] = json!(42));
        has(
            &outcome.errors,
            "/steps/0/input/order_id",
            "the literal 42 is an integer",
        );
        let outcome = edited(|value| value["steps"][3]["input"]["kind"] = json!("order-confirmd"));
        has(
            &outcome.errors,
            "/steps/3/input/kind",
            "expects one of [\"order-confirmed\"",
        );
        let outcome = edited(|value| {
            value["steps"][0]["input"]["items"] = json!([{"sku": "A", "quantity": "two"}]);
        });
        has(
            &outcome.errors,
            "/steps/0/input/items/0/quantity",
            "expects an integer here",
        );
        // Schemas are compared member by member and item by item.
        let outcome = edited(|value| {
            value["$defs"]["LineItem"]["properties"]["sku"] = json!({"type": "integer"});
        });
        has(
            &outcome.errors,
            "/steps/0/input/items",
            "the request of inventory@1#reserve expects a string here, but $input/items/*/sku is an integer",
        );
        // An integer fits a number; a number may be whole, so that is a warning.
        let outcome = edited(|value| value["$defs"]["Money"]["properties"]["amount_cents"]["type"] = json!("number"));
        assert!(outcome.errors.is_empty(), "{outcome:#?}");
        has(
            &outcome.warnings,
            "/steps/1/input/amount",
            "$input/total/amount_cents is a number",
        );
    }

    #[test]
    fn a_missing_required_property_is_an_error_and_an_optional_one_a_warning() {
        let outcome = edited(|value| {
            value["steps"][0]["input"].as_object_mut().unwrap().remove("items");
        });
        has(
            &outcome.errors,
            "/steps/0/input",
            "the request of inventory@1#reserve requires \"items\" here, and the template does not give it",
        );
        let outcome = edited(|value| value["steps"][1]["input"]["customer_id"] = json!("$input/customer_id?"));
        assert!(outcome.errors.is_empty(), "{outcome:#?}");
        has(&outcome.warnings, "/steps/1/input/customer_id", "may be missing");
        // A nested object's required members count too.
        let outcome = edited(|value| {
            value["$defs"]["Money"]["required"] = json!(["currency"]);
        });
        has(&outcome.warnings, "/steps/1/input/amount", "may lack it");
    }

    #[test]
    fn a_member_a_closed_request_does_not_allow_is_an_error() {
        let outcome = edited(|value| value["steps"][0]["input"]["note"] = json!("rush"));
        has(
            &outcome.errors,
            "/steps/0/input/note",
            "the request of inventory@1#reserve does not allow \"note\" here; it allows: items, order_id",
        );
    }

    #[test]
    fn reading_what_a_source_never_has_is_an_error() {
        let outcome = edited(|value| value["steps"][0]["input"]["order_id"] = json!("$input/order"));
        has(
            &outcome.errors,
            "/steps/0/input/order_id",
            "$input/order: the workflow input has no \"order\"; it has: customer_id, items, order_id, total",
        );
        // Step responses are open: an undeclared member cannot be told.
        let outcome = edited(|value| value["steps"][2]["input"]["order_id"] = json!("$steps/reserve/order"));
        assert!(outcome.errors.is_empty(), "{outcome:#?}");
        has(
            &outcome.warnings,
            "/steps/2/input/order_id",
            "does not declare \"order\"",
        );
        let outcome = edited(|value| value["output"]["x"] = json!("$input/order_id/first"));
        has(&outcome.errors, "/output/x", "is a string, so it has no \"first\"");
    }

    #[test]
    fn what_cannot_be_decided_is_a_warning() {
        // notifications@1#list's order_id is an anyOf (an optional OrderId).
        let outcome = edited(|value| {
            value["steps"][3]["compensate"] =
                json!({"call": "notifications@1#list", "input": {"order_id": "$input/order_id"}});
        });
        assert!(outcome.errors.is_empty(), "{outcome:#?}");
        has(
            &outcome.warnings,
            "/steps/3/compensate/input/order_id",
            "is a choice of schemas (anyOf)",
        );
        let outcome = edited(|value| value["input"]["properties"]["customer_id"] = json!({"description": "anything"}));
        has(&outcome.warnings, "/steps/1/input/customer_id", "declares no type");
    }

    #[test]
    fn a_choice_on_a_value_that_is_not_there_is_a_warning() {
        let outcome = edited(|value| {
            let steps = value["steps"].as_array_mut().unwrap();
            let notify = steps.pop().unwrap();
            steps.push(json!({"id": "route", "choice": {"on": "$input/express", "cases": [{"equals": true, "steps": [notify]}]}}));
        });
        assert!(outcome.errors.is_empty(), "{outcome:#?}");
        has(
            &outcome.warnings,
            "/steps/3/choice/on",
            "the workflow input has no \"express\"",
        );
    }

    #[test]
    fn the_trigger_names_an_event_whose_payload_fits_the_input() {
        let mapped = json!({
            "event": "orders@1#placed",
            "input": {"order_id": "$input/order_id", "customer_id": "$input/customer_id", "items": "$input/items", "total": "$input/total"}
        });
        let outcome = edited(|value| value["trigger"] = mapped);
        assert_eq!(outcome, CheckOutcome::default());
        // The whole payload carries "mode", which the closed input refuses.
        let outcome = edited(|value| value["trigger"] = json!({"event": "orders@1#placed"}));
        has(
            &outcome.errors,
            "/trigger/event",
            "the payload of orders@1#placed has \"mode\", which the workflow input does not allow here",
        );
        let outcome = edited(|value| value["trigger"] = json!({"event": "orders@1#place"}));
        has(
            &outcome.errors,
            "/trigger/event",
            "orders@1 has no event \"place\"; it has: cancelled, completed, placed (\"place\" is an operation",
        );
    }
}
