//! The workflow definition model: a named, versioned list of steps that call
//! contract operations, choose on a value, or run branches in parallel.
//!
//! Definitions are read with [`super::parse_definition`], which checks the
//! text against `contracts/schema/workflow.schema.json` before this model
//! sees it, so serde's errors here are a second line of defence only.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::names::{ContractRef, ServiceName, Version};

/// The format tag every workflow definition carries in its `workflow` field.
pub const WORKFLOW_FORMAT_TAG: &str = "soabus/workflow/v1";

/// The subject domain of a workflow's generated contract when the definition
/// names none: `workflow.<name>.v<major>.start`.
pub const DEFAULT_WORKFLOW_DOMAIN: &str = "workflow";

/// One version of one workflow: its typed input, its steps and its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// Always [`WORKFLOW_FORMAT_TAG`].
    pub workflow: String,
    /// The workflow's name; also the service name of its generated contract.
    pub name: ServiceName,
    /// Its version; `name@version` never changes once loaded.
    pub version: Version,
    /// What the workflow does, in a sentence.
    pub description: String,
    /// The team that owns it.
    #[serde(default = "default_owner")]
    pub owner: String,
    /// The first token of the generated contract's subjects.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Free tags for the registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The JSON Schema (2020-12) of the workflow's input.
    pub input: Value,
    /// Schemas the input schema refers to as `#/$defs/<Name>`.
    #[serde(rename = "$defs", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defs: BTreeMap<String, Value>,
    /// An event that starts an instance per message, besides the `start` operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// The instance's output, mapped from its input and step outputs; every
    /// call step's output by id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Mapping>,
}

fn default_owner() -> String {
    "unknown".to_owned()
}

fn default_domain() -> String {
    DEFAULT_WORKFLOW_DOMAIN.to_owned()
}

/// Starts an instance for every message of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The event, as `service@major#event`.
    pub event: ContractRef,
    /// The instance's input mapped from the event's payload (`$input` is the
    /// payload); the payload itself when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Mapping>,
}

/// One step: an id unique in the whole definition, and what it does.
// Read through `StepFields`: serde's `flatten` into an untagged enum whose
// variants deny unknown fields loses every precise error (all a mistake says
// is "did not match any variant"), so the fields are read as one closed
// struct and the kind is decided by which of `call`, `choice` and `parallel`
// is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StepFields")]
pub struct Step {
    /// The step's id, unique across the definition; `$steps/<id>` reads its output.
    pub id: String,
    /// What the step does.
    #[serde(flatten)]
    pub kind: StepKind,
}

/// What a step does.
// Definitions hold tens of steps, read once at load: boxing the call step
// would buy nothing and make every match on a step noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepKind {
    /// Calls a contract operation.
    Call(CallStep),
    /// Runs the steps of the first case whose value matches.
    Choice(ChoiceStep),
    /// Runs branches side by side and waits for all of them.
    Parallel(ParallelStep),
}

/// Every field any kind of step may have, as written; [`Step`] is made from
/// it by which of `call`, `choice` and `parallel` it holds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFields {
    id: String,
    #[serde(default)]
    call: Option<ContractRef>,
    #[serde(default)]
    input: Option<Mapping>,
    #[serde(default)]
    timeout: Option<Interval>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    #[serde(default)]
    compensate: Option<Compensation>,
    #[serde(default)]
    choice: Option<Choice>,
    #[serde(default)]
    parallel: Option<BTreeMap<String, Vec<Step>>>,
}

impl TryFrom<StepFields> for Step {
    type Error = String;

    fn try_from(fields: StepFields) -> Result<Self, Self::Error> {
        let StepFields {
            id,
            call,
            input,
            timeout,
            retry,
            compensate,
            choice,
            parallel,
        } = fields;
        let call_only = [
            ("input", input.is_some()),
            ("timeout", timeout.is_some()),
            ("retry", retry.is_some()),
            ("compensate", compensate.is_some()),
        ];
        let not_call = if choice.is_some() { "choice" } else { "parallel" };
        let given: Vec<&str> = call_only
            .iter()
            .filter(|(_, given)| *given)
            .map(|(name, _)| *name)
            .collect();
        let kind = match (call, choice, parallel) {
            (Some(call), None, None) => {
                let input = input.ok_or_else(|| {
                    format!("call step {id:?} has no \"input\"; map its request, {{}} when it takes nothing")
                })?;
                let timeout = timeout.ok_or_else(|| {
                    format!("call step {id:?} has no \"timeout\"; every call step needs one, such as \"2s\"")
                })?;
                StepKind::Call(CallStep {
                    call,
                    input,
                    timeout,
                    retry: retry.unwrap_or_default(),
                    compensate,
                })
            }
            (None, Some(_), None) | (None, None, Some(_)) if !given.is_empty() => {
                return Err(format!(
                    "{not_call} step {id:?} has {}, which only call steps take",
                    given.join(", ")
                ));
            }
            (None, Some(choice), None) => StepKind::Choice(ChoiceStep { choice }),
            (None, None, Some(parallel)) => StepKind::Parallel(ParallelStep { parallel }),
            (None, None, None) => {
                return Err(format!(
                    "step {id:?} does nothing; give it exactly one of \"call\", \"choice\" or \"parallel\""
                ));
            }
            _ => {
                return Err(format!(
                    "step {id:?} has more than one of \"call\", \"choice\" and \"parallel\"; split it into several steps"
                ));
            }
        };
        Ok(Self { id, kind })
    }
}

/// A step that calls one contract operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallStep {
    /// The operation, as `service@major#operation`.
    pub call: ContractRef,
    /// The request, mapped from the workflow input and earlier step outputs.
    pub input: Mapping,
    /// How long one attempt may take (mandatory).
    pub timeout: Interval,
    /// When and how often a failed attempt is tried again.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What undoes this step when a later step fails for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<Compensation>,
}

/// The operation that undoes a completed call step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compensation {
    /// The operation, as `service@major#operation`.
    pub call: ContractRef,
    /// Its request; `$steps/<id>` of the step being undone is available.
    pub input: Mapping,
    /// How long one attempt may take; the step's timeout when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Interval>,
    /// Its retry policy; the step's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// A step that picks one list of steps by a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceStep {
    /// The choice's body.
    pub choice: Choice,
}

/// The value chosen on, the cases, and the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// An expression (`$input/...` or `$steps/<id>/...`) whose value is compared.
    pub on: String,
    /// Tried in order; the first whose `equals` matches runs.
    pub cases: Vec<ChoiceCase>,
    /// Runs when no case matches (nothing when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default: Vec<Step>,
}

/// One case of a choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceCase {
    /// The value that selects this case (JSON equality).
    pub equals: Value,
    /// The steps to run.
    pub steps: Vec<Step>,
}

/// A step that runs branches side by side and joins them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelStep {
    /// The branches by name, each a list of steps run in order.
    pub parallel: BTreeMap<String, Vec<Step>>,
}

/// When a failed attempt is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt.
    #[serde(default = "default_initial_interval")]
    pub initial_interval: Interval,
    /// Each wait is this many times the one before.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// The longest wait.
    #[serde(default = "default_max_interval")]
    pub max_interval: Interval,
    /// Each wait varies by up to this fraction either way (0 to 1).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// The error codes worth another attempt.
    #[serde(default = "default_retryable")]
    pub retryable: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            initial_interval: default_initial_interval(),
            multiplier: default_multiplier(),
            max_interval: default_max_interval(),
            jitter: default_jitter(),
            retryable: default_retryable(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}
fn default_initial_interval() -> Interval {
    Interval(Duration::from_millis(100))
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_interval() -> Interval {
    Interval(Duration::from_secs(10))
}
fn default_jitter() -> f64 {
    0.1
}
fn default_retryable() -> Vec<String> {
    vec!["UNAVAILABLE".to_owned(), "TIMEOUT".to_owned()]
}

impl RetryPolicy {
    /// The wait before attempt `next` (2 for the first retry), without jitter.
    pub fn base_delay(&self, next: u32) -> Duration {
        let exponent = next.saturating_sub(2).min(64) as i32;
        let scaled = self.initial_interval.0.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::from_secs_f64(scaled.min(self.max_interval.0.as_secs_f64()).max(0.0))
    }

    /// The wait before attempt `next`, with jitter drawn from `unit` (a number
    /// in `[0, 1)`): `base * (1 + jitter * (2 * unit - 1))`, at most the maximum.
    pub fn delay(&self, next: u32, unit: f64) -> Duration {
        let base = self.base_delay(next).as_secs_f64();
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * factor).clamp(0.0, self.max_interval.0.as_secs_f64()))
    }

    /// Whether an error with `code` is worth another attempt.
    pub fn retries(&self, code: &str) -> bool {
        self.retryable.iter().any(|retryable| retryable == code)
    }
}

/// A request template: JSON where a string starting with `$` is an
/// expression (see [`super::mapping`]); everything else is taken literally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mapping(pub Value);

/// A duration written as text: `250ms`, `2s`, `1m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval(pub Duration);

impl Interval {
    /// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let amount: u64 = digits.parse().map_err(|_| {
            format!("{text:?} is not a duration; write a whole number and a unit, such as 250ms, 2s or 1m")
        })?;
        let duration = match unit {
            "ms" => Duration::from_millis(amount),
            "s" => Duration::from_secs(amount),
            "m" => Duration::from_secs(amount.saturating_mul(60)),
            "h" => Duration::from_secs(amount.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "{text:?} has no known unit; use ms, s, m or h, such as 250ms or 2s"
                ));
            }
        };
        Ok(Self(duration))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl WorkflowDefinition {
    /// `name@version`, the definition's identity.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Every step, depth first in document order, with nested steps after
    /// the choice or parallel step that holds them.
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for step in steps {
                out.push(step);
                match &step.kind {
                    StepKind::Call(_) => {}
                    StepKind::Choice(choice) => {
                        for case in &choice.choice.cases {
                            walk(&case.steps, out);
                        }
                        walk(&choice.choice.default, out);
                    }
                    StepKind::Parallel(parallel) => {
                        for branch in parallel.parallel.values() {
                            walk(branch, out);
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// The call step with this id.
    pub fn call_step(&self, id: &str) -> Option<&CallStep> {
        self.all_steps().into_iter().find_map(|step| match &step.kind {
            StepKind::Call(call) if step.id == id => Some(call),
            _ => None,
        })
    }

    /// Every operation the workflow calls, steps and compensations, once each.
    pub fn called_operations(&self) -> Vec<ContractRef> {
        let mut refs = std::collections::BTreeSet::new();
        for step in self.all_steps() {
            if let StepKind::Call(call) = &step.kind {
                refs.insert(call.call.clone());
                if let Some(compensation) = &call.compensate {
                    refs.insert(compensation.call.clone());
                }
            }
        }
        refs.into_iter().collect()
    }

    /// The canonical JSON of the definition.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The `sha256:` digest of the canonical JSON: two loads of the same
    /// `name@version` must carry the same digest.
    pub fn digest(&self) -> String {
        crate::canonical::digest(&self.to_value())
    }
}
